"""`sinkwatch flux`: compute fluxes from raw files, as researchers do with EddyPro."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gateway.configfile import ConfigError

if TYPE_CHECKING:
    from gateway.flux.ec.settings import ProcessingSettings

app = typer.Typer(help="Flux computation from raw high-frequency data.", no_args_is_help=True,
                  pretty_exceptions_enable=False)


@app.callback()
def _flux() -> None:
    """Flux computation from raw high-frequency data."""


def load_method_files(st: ProcessingSettings, settings: Path | None, data_dir: Path | None) -> tuple[Any, Any]:
    """The planar-fit sectors and the spectral assessment the settings name (None when not selected); relative
    paths are taken relative to the settings file, EddyPro's `DATA_DIR` placeholder is replaced by `data_dir`.
    Raises ConfigError naming an unreadable file."""
    from gateway.flux.ec.engine import PlanarFitSetup
    from gateway.flux.ec.settings import Rotation, SpectralCorrection

    def resolve(name: str) -> Path:
        if name.startswith("DATA_DIR") and data_dir is not None:
            return data_dir / name.removeprefix("DATA_DIR").lstrip("/\\")
        path = Path(name)
        return path if path.is_absolute() or settings is None else settings.parent / path

    pf = None
    if st.rot_meth in (Rotation.PLANAR_FIT, Rotation.PLANAR_FIT_NO_BIAS):
        from gateway.flux.ec.planarfit import parse_eddypro_planar_fit

        assert st.planar_fit_file is not None
        pf_path = resolve(st.planar_fit_file)
        try:
            parsed = parse_eddypro_planar_fit(pf_path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{pf_path}: cannot read the planar-fit file: {exc.strerror}") from None
        pf = PlanarFitSetup(parsed.sectors, subtract_b0=st.rot_meth == Rotation.PLANAR_FIT)
    assessment = None
    if st.hf_meth == SpectralCorrection.FRATINI_2012:
        from gateway.flux.ec.spectral import parse_spectral_assessment

        assert st.spectral_assessment_file is not None
        sa_path = resolve(st.spectral_assessment_file)
        try:
            assessment = parse_spectral_assessment(sa_path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{sa_path}: cannot read the spectral assessment: {exc.strerror}") from None
    return pf, assessment


@app.command("ec")
def ec(
    raw_files: Annotated[list[Path], typer.Argument(help="raw ASCII files, one or more averaging periods each")],
    metadata: Annotated[Path, typer.Option(help="site/instrument metadata: EddyPro .metadata or YAML")],
    out: Annotated[Path, typer.Option(help="AmeriFlux BASE-format CSV to write")],
    settings: Annotated[Path | None, typer.Option(help="processing settings: EddyPro .eddypro or YAML "
                                                        "(default: the engine defaults)")] = None,
    base_only: Annotated[bool, typer.Option(help="only AmeriFlux/FLUXNET standard columns")] = False,
    data_dir: Annotated[Path | None, typer.Option(help="folder that replaces EddyPro's DATA_DIR placeholder in the "
                                                       "planar-fit and spectral-assessment paths")] = None,
) -> None:
    """Eddy-covariance fluxes for every averaging period of the raw files, one row per period in --out."""
    from gateway.flux.ec.engine import ConfigurationError, check_configuration, process_period
    from gateway.flux.files import load_metadata, load_settings, read_raw_file, write_ameriflux_csv

    try:
        md = load_metadata(metadata)
        st = load_settings(settings)
        check_configuration(md, st)
        pf, assessment = load_method_files(st, settings, data_dir)
    except (ConfigError, ConfigurationError, ValueError) as exc:
        typer.echo(f"flux ec: {exc}", err=True)
        raise typer.Exit(2) from None
    results = []
    for path in raw_files:
        for period in read_raw_file(path, md, st):
            results.append(process_period(period, st, planar_fit=pf, spectral_assessment=assessment))
    results.sort(key=lambda r: r.end)
    write_ameriflux_csv(results, out, base_only=base_only)
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "partial", "failed")}
    typer.echo(f"{len(results)} periods from {len(raw_files)} file(s): {counts['ok']} ok, {counts['partial']} "
               f"partial, {counts['failed']} failed -> {out}")
    for r in results:
        if r.status != "ok":
            typer.echo(f"  {r.end:%Y-%m-%d %H:%M} {r.source}: {r.status}: {'; '.join(r.reasons)}", err=True)
    if results and counts["failed"] == len(results):
        raise typer.Exit(1)


@app.command("recompute")
def recompute(
    station: Annotated[str, typer.Option(help="station id whose uplinked raw files to process")],
    from_: Annotated[str, typer.Option("--from", help="first period start, RFC 3339 with zone, e.g. "
                                                      "2026-11-25T00:00:00Z")],
    to: Annotated[str, typer.Option(help="last period end, RFC 3339 with zone")],
    config: Annotated[Path, typer.Option("--config", "-c", help="central config (storage, data_dir)")],
    metadata: Annotated[Path | None, typer.Option(help="site facts the archive does not hold (altitude, latitude, "
                                                       "canopy_height, ...): YAML with SiteMetadata keys or an "
                                                       "EddyPro .metadata")] = None,
    settings: Annotated[Path | None, typer.Option(help="processing settings: EddyPro .eddypro or YAML "
                                                       "(default: the engine defaults)")] = None,
    site: Annotated[str | None, typer.Option(help="site of the station (only if it has raw files under several)")]
    = None,
    sonic: Annotated[str | None, typer.Option(help="sensor name of the sonic (if the station has several)")] = None,
    analyzer: Annotated[str | None, typer.Option(help="sensor name of the gas analyzer (if several)")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="replaces DATA_DIR in planar-fit/spectral-assessment "
                                                       "paths")] = None,
) -> None:
    """Reprocess a station's fluxes centrally from its archived raw files; results go to the central store with
    their engine version and settings hash (results of other settings stay)."""
    from gateway.central.config import load_central_config
    from gateway.central.params import ParameterError, parse_timestamp
    from gateway.central.rawstore import RAW_DIR, RawArchive
    from gateway.central.store import StoreError
    from gateway.flux.files import load_settings
    from gateway.flux.recompute import RecomputeError, find_sensors, load_site_metadata, period_bounds
    from gateway.flux.recompute import recompute as run

    try:
        start = parse_timestamp(from_, "--from")
        end = parse_timestamp(to, "--to")
        if end <= start:
            raise ParameterError("--to", f"{to} is not after --from {from_}")
        central = load_central_config(config)
        st = load_settings(settings)
        site_md = load_site_metadata(metadata)
        pf, assessment = load_method_files(st, settings, data_dir)
        archive = RawArchive(central.data_dir / RAW_DIR)
        sensors = find_sensors(archive, station, site=site, sonic=sonic, analyzer=analyzer)
    except ParameterError as exc:
        typer.echo(f"flux recompute: {exc.parameter}: {exc.message}", err=True)
        raise typer.Exit(2) from None
    except (ConfigError, RecomputeError, ValueError) as exc:
        typer.echo(f"flux recompute: {exc}", err=True)
        raise typer.Exit(2) from None
    from gateway.central.service import open_store

    periods = len(period_bounds(start, end, st.avrg_len))
    typer.echo(f"station {station} (site {sensors.site}): sonic {sensors.sonic}, analyzer "
               f"{sensors.analyzer or '(none)'}; {periods} periods of {st.avrg_len:g} min")
    store = open_store(central.storage)
    try:
        with typer.progressbar(length=periods, label="recompute", show_pos=True) as bar:
            summary = run(archive, store, station, start, end, site_metadata=site_md, settings=st,
                          planar_fit=pf, spectral_assessment=assessment, progress=bar.update, sensors=sensors)
    except ValueError as exc:  # RecomputeError, or settings the engine cannot honour with this metadata
        typer.echo(f"flux recompute: {exc}", err=True)
        raise typer.Exit(2) from None
    except StoreError as exc:
        typer.echo(f"flux recompute: storage: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        store.close()
    typer.echo(f"{summary.processed} periods processed: {summary.ok} ok, {summary.partial} partial, "
               f"{summary.failed} failed; {summary.no_raw_data} without raw data (not stored); "
               f"{summary.stored} stored as settings_hash {summary.settings_hash or '-'} ({summary.engine_version})")
    for reason, count in summary.failure_reasons.most_common():
        typer.echo(f"  failed ({count}): {reason}", err=True)
    if summary.processed and summary.failed == summary.processed:
        raise typer.Exit(1)
