"""`sinkwatch flux`: compute fluxes from raw files, as researchers do with EddyPro (`ec`). `sinkwatch flux recompute`
is a central job and is defined in `gateway.central.cli`; `gateway/cli.py` mounts it here."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gateway.configfile import ConfigError
from gateway.outputs import check_output_files

if TYPE_CHECKING:
    pass

FLUX_HELP = ("Fluxes: eddy covariance from raw high-frequency files (ec), reprocessed centrally from the raw archive "
             "(recompute), and the carbon budget from half-hourly fluxes (budget).")
app = typer.Typer(help=FLUX_HELP, no_args_is_help=True, pretty_exceptions_enable=False)


@app.callback(help=FLUX_HELP)
def _flux() -> None:
    pass


@app.command("ec")
def ec(
    raw_files: Annotated[list[Path], typer.Argument(help="raw ASCII files, one or more averaging periods each")],
    metadata: Annotated[Path, typer.Option(help="site/instrument metadata: EddyPro .metadata or YAML")],
    out: Annotated[Path, typer.Option(help="AmeriFlux BASE-format CSV to write")],
    settings: Annotated[Path | None, typer.Option(help="processing settings: EddyPro .eddypro or YAML "
                                                        "(default: the engine defaults)")] = None,
    base_only: Annotated[bool, typer.Option(help="only AmeriFlux/FLUXNET standard columns")] = False,
    output_format: Annotated[str, typer.Option("--format", help="ameriflux (AmeriFlux BASE CSV), eddypro-full "
                                                                 "(EddyPro's full output), fluxnet (EddyPro's fluxnet "
                                                                 "file)")] = "ameriflux",
    data_dir: Annotated[Path | None, typer.Option(help="folder that replaces EddyPro's DATA_DIR placeholder in the "
                                                       "planar-fit and spectral-assessment paths")] = None,
) -> None:
    """Eddy-covariance fluxes for every averaging period of the raw files, one row per period in --out."""
    from gateway.flux.ec.engine import (
        IN_SITU_METHODS,
        ConfigurationError,
        check_configuration,
        fit_planar_fit,
        in_situ_assessment,
        instrument_notes,
        optimise_time_lags,
        process_period,
        sonic_frame_means,
    )
    from gateway.flux.ec.settings import Rotation, TimeLag
    from gateway.flux.files import (
        load_metadata,
        load_method_files,
        load_settings,
        read_raw_file,
        write_ameriflux_csv,
        write_eddypro_fluxnet,
        write_eddypro_full_output,
    )

    if output_format not in ("ameriflux", "eddypro-full", "fluxnet"):
        typer.echo(f"flux ec: --format {output_format}: use ameriflux, eddypro-full or fluxnet", err=True)
        raise typer.Exit(2)
    if base_only and output_format != "ameriflux":  # was ignored without a word
        typer.echo(f"flux ec: --base-only is for --format ameriflux; --format {output_format} writes EddyPro's own "
                   "columns: leave --base-only out, or write --format ameriflux", err=True)
        raise typer.Exit(2)

    try:
        check_output_files([("--out", out)], inputs=[("--metadata", metadata), ("--settings", settings),
                                                     *(("RAW_FILES", raw) for raw in raw_files)])
        md = load_metadata(metadata)
        st = load_settings(settings)
        check_configuration(md, st)
        pf, assessment = load_method_files(st, settings, data_dir)
    except (ConfigError, ConfigurationError, ValueError) as exc:
        typer.echo(f"flux ec: {exc}", err=True)
        raise typer.Exit(2) from None
    missing = [p for p in raw_files if not p.is_file()]
    if missing:  # a mistyped name or a folder: said before any work, not as a failed period labelled 1970
        listed = ", ".join(f"{p} ({'a folder' if p.is_dir() else 'not a file' if p.exists() else 'not found'})"
                           for p in missing)
        typer.echo(f"flux ec: raw files: {listed}; give the raw data files themselves, e.g. raw/*.csv.gz", err=True)
        raise typer.Exit(2)
    for note in instrument_notes(md, st):  # what became of options EddyPro applies to some instruments only
        typer.echo(note)
    periods = [period for path in raw_files for period in read_raw_file(path, md, st)
               if not ((st.process_from is not None and period.end <= st.process_from) or
                       (st.process_to is not None and period.end > st.process_to))]  # EddyPro pr_subset
    if pf is None and st.rot_meth in (Rotation.PLANAR_FIT, Rotation.PLANAR_FIT_NO_BIAS):
        chosen = [p for p in periods if (st.pf_fit_from is None or p.end > st.pf_fit_from)
                  and (st.pf_fit_to is None or p.end <= st.pf_fit_to)]  # EddyPro pf_subset
        means = [m for p in chosen if (m := sonic_frame_means(p, st)) is not None]
        try:
            pf, notes = fit_planar_fit(means, st)
        except ValueError as exc:
            typer.echo(f"flux ec: {exc}; give more periods or a planar-fit file", err=True)
            raise typer.Exit(2) from None
        typer.echo(f"planar fit fitted over {len(means)} periods ({st.pf_sectors} sectors)")
        for note in notes:
            typer.echo(f"  {note}", err=True)
    lags = None
    if st.tlag_meth == TimeLag.AUTOMATIC:
        try:
            lags = optimise_time_lags(periods, st, pf)
        except ValueError as exc:
            typer.echo(f"flux ec: {exc}; give more periods or use covariance_maximization_with_default", err=True)
            raise typer.Exit(2) from None
        typer.echo("time lags optimised: " + "; ".join(
            f"{g.upper()} {w.nominal_s:.2f} s in [{w.min_s:.2f}, {w.max_s:.2f}] ({lags.counts[g]} periods)"
            for g, w in lags.gases.items()))
    if assessment is None and st.hf_meth in IN_SITU_METHODS:
        try:
            assessment = in_situ_assessment(periods, st, pf, lags)
        except ValueError as exc:
            typer.echo(f"flux ec: {exc}; give more periods or a spectral-assessment file", err=True)
            raise typer.Exit(2) from None
        typer.echo("spectral assessment in situ: " + "; ".join(
            [f"H2O fc {c[3]:.3g} Hz at RH {c[0]:g}-{c[1]:g} % ({c[4]} spectra)" for c in assessment.h2o_classes
             if c[4]] + [f"{g} fc {v[0][1]:.3g} Hz" for g, v in assessment.gas_monthly.items()]))
        for g, n in assessment.selection.items():
            typer.echo(f"  {g.upper()}: {n['used']} of {n['periods']} periods' spectra used; left out: {n['flux']} "
                       f"outside the flux limits, {n['vm97']} with a hard statistical flag, {n['foken']} with a "
                       "Foken flag of an excluded class")
        if st.sa_use_vm_flags and st.despike == "none" and not any(
                getattr(st.statistical_tests, f"test_{t}") for t in ("al", "ar", "do", "sk", "ds", "tl", "aa", "ns")):
            typer.echo("  sa_use_vm_flags is on but no statistical test is selected: no period is left out for "
                       "statistical flags (select the tests, e.g. test_ar = 1)", err=True)
    results = [process_period(period, st, planar_fit=pf, spectral_assessment=assessment, time_lags=lags)
               for period in periods]
    results.sort(key=lambda r: r.end)
    try:
        if output_format == "eddypro-full":
            write_eddypro_full_output(results, out, md)
        elif output_format == "fluxnet":
            write_eddypro_fluxnet(results, out, md, st)
        else:
            write_ameriflux_csv(results, out, base_only=base_only)
    except OSError as exc:  # checked writable before; a full disk or a folder removed meanwhile
        typer.echo(f"flux ec: cannot write {out}: {exc.strerror}; free space or choose another --out", err=True)
        raise typer.Exit(1) from None
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "partial", "failed")}
    typer.echo(f"{len(results)} periods from {len(raw_files)} file(s): {counts['ok']} ok, {counts['partial']} "
               f"partial, {counts['failed']} failed -> {out}")
    for r in results:
        if r.status != "ok":
            typer.echo(f"  {r.end:%Y-%m-%d %H:%M} {r.source}: {r.status}: {'; '.join(r.reasons)}", err=True)
    if results and counts["failed"] == len(results):
        raise typer.Exit(1)
