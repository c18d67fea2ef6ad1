"""`sinkwatch report`: the site carbon report as a self-contained HTML page and a PDF (docs/report.md).

Glue only: the data object is built by `gateway.report.files` (from files; a store-based builder will take
``--station``/``--year``/``-c``), rendered by `gateway.report.html` and `gateway.report.pdf`. Exit 0 with the files
written; exit 2 when the inputs cannot make a report (the message names the file, column or row and the fix) or
the renderer is not installed (the message gives the `pip install` line of the report extra, `gateway.extras`).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from gateway.extras import MissingExtra, require_extra


class ReportFormat(StrEnum):
    html = "html"
    pdf = "pdf"
    both = "both"


def report(
    out_dir: Annotated[Path, typer.Option("--out-dir", help="folder for <site>_<year>_carbon_report.html/.pdf "
                                                            "(created if missing)")],
    site: Annotated[str, typer.Option(help="site identifier")],
    budget: Annotated[Path | None, typer.Option(help="half-hourly output of sinkwatch flux budget --out")] = None,
    daily: Annotated[Path | None, typer.Option(help="its --daily file (else computed from --budget)")] = None,
    monthly: Annotated[Path | None, typer.Option(help="its --monthly file (else computed)")] = None,
    annual: Annotated[Path | None, typer.Option(help="its --annual file (u* mode and percentiles; else computed)")
                      ] = None,
    ustar_draws: Annotated[Path | None, typer.Option(help="its --ustar-draws file (u* bootstrap distribution)")
                           ] = None,
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
) -> None:
    """Site carbon report: annual budget table with uncertainties, plots and provenance, as HTML and PDF."""
    from gateway.report.data import ReportDataError
    from gateway.report.files import ReportFiles, build_from_files

    files = ReportFiles(budget, daily, monthly, annual, ustar_draws, soil, stems, stem_carbon)
    try:
        data = build_from_files(files, site=site, year=year, name=name, lat=lat, lon=lon, utc_offset_h=utc_offset,
                                stations=station or ())
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
