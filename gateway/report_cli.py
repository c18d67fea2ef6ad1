"""`sinkwatch report`: the site carbon report as a self-contained HTML page and a PDF (docs/report.md).

Glue only: the data object is built by `gateway.report.files` (from files) or by `gateway.central.report_data` (from
the central store: ``--station S --year Y -c central.yaml``), rendered by `gateway.report.html` and
`gateway.report.pdf`. Exit 0 with the files
written; exit 2 when the inputs cannot make a report (the message names the file, column or row and the fix) or
the renderer is not installed (the message gives the `pip install` line of the report extra, `gateway.extras`).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gateway.extras import MissingExtra, require_extra
from gateway.outputs import OutputPathError, check_output_folder

if TYPE_CHECKING:
    from gateway.report.data import SiteReportData


class ReportFormat(StrEnum):
    html = "html"
    pdf = "pdf"
    both = "both"


def report(
    out_dir: Annotated[Path, typer.Option("--out-dir", help="folder for <site>_<year>_carbon_report.html/.pdf "
                                                            "(created if missing)")],
    site: Annotated[str | None, typer.Option(help="site identifier (files; from the store: the stored runs')")
                    ] = None,
    budget: Annotated[Path | None, typer.Option(help="half-hourly output of sinkwatch flux budget --out")] = None,
    daily: Annotated[Path | None, typer.Option(help="its --daily file (else computed from --budget)")] = None,
    monthly: Annotated[Path | None, typer.Option(help="its --monthly file (else computed)")] = None,
    annual: Annotated[Path | None, typer.Option(help="its --annual file (u* mode and percentiles; else computed)")
                      ] = None,
    ustar_draws: Annotated[Path | None, typer.Option(help="its --ustar-draws file (u* bootstrap distribution)")
                           ] = None,
    budget_record: Annotated[Path | None, typer.Option(help="its --record file: checked against the budget files, "
                                                            "its engine, settings, inputs and notes go into the "
                                                            "provenance")] = None,
    soil: Annotated[Path | None, typer.Option(help="soil efflux CSV: FC_SOIL_GRAD / FC_SOIL_CH_<c> with _UNC, TS")
                    ] = None,
    stems: Annotated[Path | None, typer.Option(help="stems CSV: TIMESTAMP, GRO_<tree>, TWD_<tree> (µm)")] = None,
    stem_carbon: Annotated[Path | None, typer.Option(help="plot carbon CSV: PLOT, START, END, C_AGB_INC(_SD), "
                                                          "CO2E_AGB_INC(_SD), N_TREES")] = None,
    year: Annotated[int | None, typer.Option(help="calendar year to report (default: the budget's)")] = None,
    name: Annotated[str, typer.Option(help="site name shown in the report")] = "",
    lat: Annotated[float | None, typer.Option(help="site latitude, degrees north")] = None,
    lon: Annotated[float | None, typer.Option(help="site longitude, degrees east")] = None,
    utc_offset: Annotated[float | None, typer.Option("--utc-offset", help="hours the station clock is ahead of UTC")
                          ] = None,
    station: Annotated[list[str] | None, typer.Option(help="station that delivered the data (repeat for several)")
                       ] = None,
    fmt: Annotated[ReportFormat, typer.Option("--format", help="html, pdf or both")] = ReportFormat.both,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="central config: build the report from the "
                                                                        "central store for --station and --year")
                      ] = None,
    budget_settings_hash: Annotated[str | None, typer.Option(help="store: the budget run to use when the year has "
                                                                  "several")] = None,
    soil_settings_hash: Annotated[str | None, typer.Option(help="store: the soil run, when several")] = None,
    stems_settings_hash: Annotated[str | None, typer.Option(help="store: the stems run, when several")] = None,
) -> None:
    """Site carbon report: annual budget table with uncertainties, plots and provenance, as HTML and PDF; from the
    budget, soil and stems files, or from the central store (--station S --year Y -c central.yaml)."""
    from gateway.report.data import ReportDataError

    try:
        check_output_folder("--out-dir", out_dir)
    except OutputPathError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        if config is not None:
            given = [option for option, value in (
                ("--budget", budget), ("--daily", daily), ("--monthly", monthly), ("--annual", annual),
                ("--ustar-draws", ustar_draws), ("--budget-record", budget_record), ("--soil", soil),
                ("--stems", stems), ("--stem-carbon", stem_carbon)) if value is not None]
            if given:
                typer.echo(f"error: {given[0]} is a file-mode option; with -c the report is built from the store "
                           "(leave out the files, or leave out -c, --station and --year)", err=True)
                raise typer.Exit(2)
            data = _from_store(config, station or [], year, site, name, (budget_settings_hash, soil_settings_hash,
                                                                           stems_settings_hash))
        else:
            from gateway.report.files import ReportFiles, build_from_files

            stored = [option for option, value in (
                ("--budget-settings-hash", budget_settings_hash), ("--soil-settings-hash", soil_settings_hash),
                ("--stems-settings-hash", stems_settings_hash)) if value is not None]
            if stored:  # were ignored without a word: the files are one run each
                typer.echo(f"error: {stored[0]} chooses a run in the store; it needs -c central.yaml with --station "
                           "and --year (from files, each file is one run: give the files of the run you want)",
                           err=True)
                raise typer.Exit(2)
            if site is None:
                typer.echo("error: give --site (the files do not name it), or build from the store with --station, "
                           "--year and -c central.yaml", err=True)
                raise typer.Exit(2)
            files = ReportFiles(budget, daily, monthly, annual, ustar_draws, soil, stems, stem_carbon,
                                budget_record)
            data = build_from_files(files, site=site, year=year, name=name, lat=lat, lon=lon,
                                    utc_offset_h=utc_offset, stations=station or ())
    except ReportDataError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        require_extra("report", "sinkwatch report")
    except MissingExtra as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    from gateway.report.figures import build_figures, report_style
    from gateway.report.html import write_html
    from gateway.report.pdf import write_pdf
    from gateway.report.summary import ReportSummary

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{data.site.site}_{data.site.year}_carbon_report"
    with report_style():
        figures = build_figures(ReportSummary(data))
    written = []
    if fmt in (ReportFormat.html, ReportFormat.both):
        written.append(write_html(data, out_dir / f"{stem}.html", figures=figures))
    if fmt in (ReportFormat.pdf, ReportFormat.both):
        written.append(write_pdf(data, out_dir / f"{stem}.pdf", figures=figures))
    summary = ReportSummary(data)
    for row in summary.rows:
        typer.echo(f"{row.label}: {row.gc_text} gC m-2 ({row.tco2e_text} tCO2e ha-1)")
    for note in data.provenance.notes:
        typer.echo(f"note: {note}", err=True)
    for path in written:
        typer.echo(f"wrote {path}")


def _from_store(config: Path, stations: list[str], year: int | None, site: str | None, name: str,
                hashes: tuple[str | None, str | None, str | None]) -> SiteReportData:
    """The report's data object from the central store (gateway/central/report_data.py)."""
    if len(stations) != 1 or year is None:
        typer.echo("error: from the store, give one --station and the --year (e.g. --station st01 --year 2025 -c "
                   "central.yaml)", err=True)
        raise typer.Exit(2)
    try:
        require_extra("central", "sinkwatch report -c")
    except MissingExtra as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    from gateway.central.api_names import unknown_station_problem
    from gateway.central.config import load_central_config
    from gateway.central.report_data import Choice, build_report_data
    from gateway.central.service import open_store
    from gateway.central.store import StoreError
    from gateway.configfile import ConfigError

    try:
        central = load_central_config(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        store = open_store(central.storage)
    except StoreError as exc:
        typer.echo(f"error: storage: {exc}", err=True)
        raise typer.Exit(1) from None
    try:
        problem = unknown_station_problem(store, stations[0])
        if problem is not None:
            typer.echo(f"error: {problem}", err=True)
            raise typer.Exit(2)
        return build_report_data(store, stations[0], year, central, choice=Choice(*hashes), site=site, name=name)
    except StoreError as exc:
        typer.echo(f"error: storage: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        store.close()
