"""`sinkwatch flux budget`: the carbon budget of a half-hourly CSV (docs/budget.md: "Inputs", "Outputs and names").

Glue only: reading and checks in `gateway.flux.budget.files`, the chain in `gateway.flux.budget.pipeline`.
Exit 0 with the files written; exit 2 when the input cannot give a budget (the message names the column or row and
the fix).
"""

from __future__ import annotations

import calendar
import dataclasses
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer


def _parse_ustar(value: str) -> str | float:
    if value in ("auto", "none"):
        return value
    try:
        return float(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r}: give auto, none or a threshold in m s-1 (e.g. 0.2)") from None


def _coverage(year: str, records: float, step_s: float) -> str:
    """" (partial year: D of N days)" when the input covers less than the calendar year, so that a sum over part of
    a year is not read as an annual budget; "" for a whole year."""
    days = 366 if calendar.isleap(int(year)) else 365
    covered = records * step_s / 86400.0
    if covered >= days:
        return ""
    text = f"{covered:.1f}" if 0.0 < round(covered, 1) < days else f"{covered:.3f}"  # not "366.0 of 366" nor "0.0"
    return f" (partial year: {text} of {days} days, not an annual budget)"


def budget(
    input_csv: Annotated[Path, typer.Argument(help="half-hourly table: TIMESTAMP_START/TIMESTAMP_END (YYYYMMDDHHMM) "
                                                   "or Year, DoY, Hour; NEE or FC, SW_IN, TA, VPD, optional USTAR; "
                                                   "-9999 missing; a FLUXNET2015/ONEFlux product gives NEE_VUT_REF "
                                                   "where NEE_VUT_REF_QC is 0")],
    lat: Annotated[float, typer.Option(help="site latitude, degrees north")],
    lon: Annotated[float, typer.Option(help="site longitude, degrees east")],
    utc_offset: Annotated[float, typer.Option("--utc-offset", help="hours the time stamps' clock is ahead of UTC")],
    out: Annotated[Path, typer.Option(help="half-hourly output CSV (one row per input row)")],
    ustar: Annotated[str, typer.Option(help="auto (moving-point test + bootstrap), none (NEE already filtered) or a "
                                            "threshold in m s-1")] = "auto",
    daily: Annotated[Path | None, typer.Option(help="write daily sums (gC m-2, tCO2e ha-1) to this CSV")] = None,
    monthly: Annotated[Path | None, typer.Option(help="write monthly sums to this CSV")] = None,
    annual: Annotated[Path | None, typer.Option(help="write annual sums with uncertainty and the u* threshold "
                                                     "distribution to this CSV")] = None,
    ustar_draws: Annotated[Path | None, typer.Option(help="write every bootstrap u* threshold to this CSV")] = None,
    met: Annotated[Path | None, typer.Option(help="CSV with SW_IN/TA/VPD/USTAR for the columns INPUT lacks")] = None,
    storage_height: Annotated[float | None, typer.Option(help="compute SC from CO2/TA/PA at this height (m) when "
                                                              "INPUT has FC without SC")] = None,
    bootstrap: Annotated[int, typer.Option(help="u* bootstrap draws (auto)", min=100)] = 100,
    seed: Annotated[int, typer.Option(help="seed of the u* bootstrap")] = 0,
    year: Annotated[int | None, typer.Option(help="the year of a file with DoY and Hour but no Year column")] = None,
    record: Annotated[Path | None, typer.Option(help="write the run record (JSON): the inputs' SHA-256, settings, "
                                                   "notes and each output's SHA-256, for a verifier and for "
                                                   "sinkwatch report --budget-record")] = None,
    despike: Annotated[float | None, typer.Option(help="remove NEE spikes beyond Z x MAD/0.6745 of the second "
                                                        "differences (Papale et al. 2006: 4 to 7; off by default)",
                                                   min=0.5, max=20)] = None,
    max_flux_flag: Annotated[int, typer.Option(help="remove NEE whose quality flag (FC_SSITC_TEST, qcNEE: 0/1/2) is "
                                                    "above this", min=0, max=2)] = 1,
    ustar_plateau: Annotated[float, typer.Option(help="the u* moving-point test's plateau criterion: 1.0 ONEFlux's "
                                                      "rule (default), 0.95 REddyProc's default plateauCrit, to "
                                                      "compare with a REddyProc-made product", min=0.5, max=1.0)] = 1.0,
) -> None:
    """Carbon budget of a site-year: u* filtering, MDS gap filling, partitioning, daily/monthly/annual sums."""
    from gateway.flux.budget.files import (
        HALFHOURLY_COLUMNS,
        BudgetFileError,
        read_budget_csv,
        run_record,
        write_aggregates_csv,
        write_halfhourly_csv,
    )
    from gateway.flux.budget.pipeline import (
        ENGINE_NAME,
        ENGINE_VERSION,
        BudgetInputError,
        BudgetSettings,
        UstarNotFoundError,
        run_budget,
    )
    from gateway.outputs import check_output_files

    mode = _parse_ustar(ustar)
    try:
        check_output_files([("--out", out), ("--daily", daily), ("--monthly", monthly), ("--annual", annual),
                            ("--ustar-draws", ustar_draws), ("--record", record)],
                           inputs=[("INPUT", input_csv), ("--met", met)])
        data = read_budget_csv(input_csv, met=met, storage_height_m=storage_height, year=year,
                               max_flux_flag=max_flux_flag)
        cols = data.columns
        if mode != "none" and "USTAR" not in cols:
            raise BudgetFileError(f"{input_csv}: no USTAR column for --ustar {ustar}; add USTAR (m s-1), or use "
                                  "--ustar none if NEE is already u*-filtered")
        settings_run = BudgetSettings(ustar=mode, n_bootstrap=bootstrap, seed=seed, despike_z=despike,
                                      ustar_plateau=ustar_plateau)
        try:
            result = run_budget(data.time_start_s, cols["NEE"], cols["SW_IN"], cols["TA"], cols["VPD"],
                                cols.get("USTAR"), lat=lat, lon=lon, utc_offset_h=utc_offset, settings=settings_run)
        except UstarNotFoundError as exc:
            if data.prefiltered is None or mode != "auto":
                raise
            # ONEFlux removed the nights below its own thresholds: no further level-off is no further filtering
            result = run_budget(data.time_start_s, cols["NEE"], cols["SW_IN"], cols["TA"], cols["VPD"],
                                cols.get("USTAR"), lat=lat, lon=lon, utc_offset_h=utc_offset,
                                settings=dataclasses.replace(settings_run, ustar="none"))
            found = str(exc).removeprefix("USTAR: ").split("; ")[0]
            data.notes.append(
                f"u*: {found} — in the measured nights of {data.prefiltered}, "
                "which ONEFlux already u*-filtered at its own threshold: no further u* filtering (as --ustar none); "
                "the u* uncertainty term is not estimated (give --ustar VALUE to filter at a threshold of your own)")
    except (BudgetFileError, BudgetInputError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for note in data.notes + result.notes:
        typer.echo(f"note: {note}", err=True)
    for i, label in enumerate(result.annual.label):
        v = result.annual.values
        coverage = _coverage(str(label), float(v["N_RECORDS"][i]), data.step_s)
        if math.isfinite(float(v["NEE_F"][i])):
            total = (f"NEE {v['NEE_F'][i]:.1f} ± {v['NEE_F_UNC'][i]:.1f} gC m-2 "
                     f"({v['NEE_F_TCO2E'][i]:.2f} ± {v['NEE_F_UNC_TCO2E'][i]:.2f} tCO2e ha-1)")
        else:  # a gap too long to fill: no sum rather than a sum over part of the year
            total = f"NEE missing ({v['N_UNFILLED'][i]:.0f} records not gap-filled, see the notes)"
        parts = [f"{name} {v[name][i]:.0f}" if math.isfinite(float(v[name][i])) else f"{name} missing"
                 for name in ("RECO_NT", "GPP_NT") if name in v]
        typer.echo(f"{label}{coverage}: {total}, gaps {100 * v['GAP_FRACTION'][i]:.0f} %"
                   + (f", {', '.join(parts)} gC m-2" if parts else ""))
    thr = result.scalars.get("USTAR_THRESHOLD")
    if isinstance(thr, float) and thr == thr:
        extra = ""
        if result.ustar is not None:
            s = result.ustar.summary()
            extra = f" (bootstrap p05 {s['p05']:.3f}, p50 {s['p50']:.3f}, p95 {s['p95']:.3f}, n {s['n']:.0f})"
        typer.echo(f"u* threshold {thr:.3f} m s-1{extra}")
    for y in result.ustar_years:
        s = y.summary
        typer.echo(f"u* threshold {y.year} {y.threshold:.3f} m s-1 "
                   + (f"(bootstrap p05 {s['p05']:.3f}, p50 {s['p50']:.3f}, p95 {s['p95']:.3f}, n {s['n']:.0f})"
                      if y.own else f"(taken from {y.source})"))
    try:
        hh = {k: v[data.rows] for k, v in result.hh.items()}
        names = [n for n in HALFHOURLY_COLUMNS if n in hh]
        with out.open("w", encoding="utf-8", newline="") as fh:
            write_halfhourly_csv(fh, data.stamps, hh, names)
        for path, agg in ((daily, result.daily), (monthly, result.monthly)):
            if path is not None:
                with path.open("w", encoding="utf-8", newline="") as fh:
                    write_aggregates_csv(fh, agg)
        if annual is not None:
            with annual.open("w", encoding="utf-8", newline="") as fh:
                write_aggregates_csv(fh, result.annual, extra=result.annual_extra())
        if ustar_draws is not None and result.ustar_years:  # each year's own draws, a YEAR column before them
            ustar_draws.write_text("YEAR,USTAR_THRESHOLD\n" + "".join(
                f"{y.year},{v:.6g}\n" for y in result.ustar_years if y.own for v in y.draws.tolist()),
                encoding="utf-8")
        elif ustar_draws is not None:
            draws: list[float] = result.ustar.bootstrap.tolist() if result.ustar is not None else []
            ustar_draws.write_text("USTAR_THRESHOLD\n" + "".join(f"{v:.6g}\n" for v in draws), encoding="utf-8")
        if record is not None:
            settings = {"lat": lat, "lon": lon, "utc_offset_h": utc_offset, "ustar": mode, "bootstrap": bootstrap,
                        "seed": seed, "despike_z": despike, "max_flux_flag": max_flux_flag,
                        "storage_height_m": storage_height, "year": year,
                        # only when not ONEFlux's rule, so the records of runs before the option keep their hash
                        **({"ustar_plateau": ustar_plateau} if ustar_plateau != 1.0 else {})}
            written = [(option, path) for option, path in (("--out", out), ("--daily", daily), ("--monthly", monthly),
                                                           ("--annual", annual), ("--ustar-draws", ustar_draws))
                       if path is not None]
            doc = run_record(data, engine=f"{ENGINE_NAME} {ENGINE_VERSION}", settings=settings,
                             notes=[*data.notes, *result.notes], outputs=written, annual=result.annual,
                             created=datetime.now(UTC),
                             ustar_years=[(y.year, y.source, y.threshold) for y in result.ustar_years])
            record.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    except OSError as exc:  # checked writable before; a full disk or a folder removed meanwhile
        typer.echo(f"error: cannot write {exc.filename}: {exc.strerror}; the budget above was computed but not all "
                   "of it saved: free space or choose another path and run again", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote {out}")
