"""The report as a PDF (matplotlib's PdfPages): a title page with the annual budget table, one page per plot
(a component that was not measured gets a page saying so), and the provenance tables. Text is TrueType
(``pdf.fonttype`` 42), so it is selectable and ``pdftotext`` reads the numbers back.
"""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from gateway.report.data import SiteReportData
from gateway.report.figures import FIGURES, PAGE_SIZE_IN, build_figures, report_style
from gateway.report.html import NOT_MEASURED
from gateway.report.summary import ReportSummary, TextTable, budget_table, provenance_tables

__all__ = ["write_pdf"]

LINE_HEIGHT = 0.024  # axes fraction per text line at the table font size
CHARS_PER_WIDTH = 150  # characters across the full page width at the table font size


def _wrap(text: str, width_fraction: float) -> str:
    chars = max(8, int(width_fraction * CHARS_PER_WIDTH))
    return "\n".join(textwrap.wrap(text, chars, break_long_words=True) or [""])


def _draw_table(ax: Axes, t: TextTable, top: float, font_size: float = 8.0) -> float:
    """Draw ``t`` from ``top`` (axes fraction) downwards; return the bottom."""
    ax.text(0.0, top, t.title, fontsize=11, fontweight="bold", va="bottom", transform=ax.transAxes)
    rows = [t.header, *t.rows]
    wrapped = [[_wrap(cell, w) for cell, w in zip(row, t.widths, strict=True)] for row in rows]
    heights = [LINE_HEIGHT * (max(c.count("\n") for c in row) + 1) + 0.006 for row in wrapped]
    y = top - 0.005
    for r, (row, h) in enumerate(zip(wrapped, heights, strict=True)):
        x = 0.0
        for cell, w in zip(row, t.widths, strict=True):
            ax.add_patch(Rectangle((x, y - h), w, h, transform=ax.transAxes, fill=r == 0,
                                               facecolor="#e8f5e9", edgecolor="#bbbbbb", linewidth=0.5))
            ax.text(x + 0.004, y - 0.004, cell, fontsize=font_size, va="top", ha="left", transform=ax.transAxes,
                    fontweight="bold" if r == 0 else "normal", family="DejaVu Sans")
            x += w
        y -= h
    return y


def _text_page(title: str) -> tuple[Figure, Axes]:
    fig = Figure(figsize=PAGE_SIZE_IN)
    ax = fig.add_axes((0.05, 0.05, 0.9, 0.85))
    ax.axis("off")
    fig.suptitle(title, fontsize=13, fontweight="bold", y=0.96)
    return fig, ax


def _row_height(row: tuple[str, ...], widths: tuple[float, ...]) -> float:
    lines = max(_wrap(cell, w).count("\n") for cell, w in zip(row, widths, strict=True)) + 1
    return LINE_HEIGHT * lines + 0.006


def _table_pages(tables: list[TextTable], title: str) -> list[Figure]:
    """As many pages as the tables need (a table longer than a page is split between rows)."""
    pages: list[Figure] = []
    fig, ax = _text_page(title)
    top = 1.0
    for t in tables:
        rows = list(t.rows)
        first = True
        while rows:
            room = top - 0.02 - _row_height(t.header, t.widths)
            take, used = 0, 0.0
            for row in rows:
                used += _row_height(row, t.widths)
                if used > room:
                    break
                take += 1
            if take == 0 and top < 0.99:  # not even one row fits under the tables above: next page
                pages.append(fig)
                fig, ax = _text_page(title)
                top = 1.0
                continue
            take = max(take, 1)
            part = TextTable(t.title if first else f"{t.title} (continued)", t.header, rows[:take], t.widths)
            top = _draw_table(ax, part, top) - 0.05
            rows, first = rows[take:], False
            if rows:
                pages.append(fig)
                fig, ax = _text_page(title)
                top = 1.0
    pages.append(fig)
    return pages


def _not_measured_page(key: str) -> Figure:
    fig, ax = _text_page(FIGURES[key][0])
    ax.text(0.5, 0.5, NOT_MEASURED.get(key, "not measured"), ha="center", va="center", fontsize=14,
            color="#8a4b00", transform=ax.transAxes)
    return fig


def write_pdf(data: SiteReportData, path: Path | str, *, figures: dict[str, Figure | None] | None = None,
              rasterize: bool = True) -> Path:
    """Write the PDF report to ``path``; returns the path."""
    summary = ReportSummary(data)
    out = Path(path)
    site = data.site
    with report_style():
        figs = figures if figures is not None else build_figures(summary, rasterize)
        title = f"Site carbon report {site.site} {site.year}"
        first = _table_pages([budget_table(summary)], title)
        ax0 = first[0].axes[0]
        ax0.text(0.0, 1.04, f"{site.name or site.site} · content digest {data.content_digest()}", fontsize=8,
                 transform=ax0.transAxes, color="#555555")
        created = datetime.fromisoformat(data.provenance.generated_at) if data.provenance.generated_at else None
        metadata = {"Title": title, "Subject": f"carbon budget of {site.site} in {site.year}",
                    "Creator": "sinkwatch report", "CreationDate": created or datetime(site.year, 1, 1, tzinfo=UTC)}
        with PdfPages(out, metadata=metadata) as pdf:
            for fig in first:
                pdf.savefig(fig)
            for key in FIGURES:
                plot = figs.get(key)
                pdf.savefig(plot if plot is not None else _not_measured_page(key))
            for fig in _table_pages(provenance_tables(summary), "Provenance"):
                pdf.savefig(fig)
    return out
