"""The report as one self-contained HTML page: inline CSS, plots as inline SVG (a raster inside a plot as a data:
URI), no script, no external request. A Content-Security-Policy that allows only inline styles and data: images
makes a browser refuse (and log) anything else, so a page that would reach out fails the browser test.

Section ids (stable, the browser test looks for them): ``budget``, ``nee``, ``fingerprint``, ``gaps``, ``ustar``,
``soil``, ``stems``, ``provenance``.
"""

from __future__ import annotations

import io
import re
from html import escape
from pathlib import Path

from matplotlib.figure import Figure

from gateway.report.data import SiteReportData
from gateway.report.figures import FIGURES, build_figures, report_style
from gateway.report.summary import ReportSummary, TextTable, budget_table, provenance_tables

__all__ = ["SECTION_IDS", "render_html", "write_html"]

SECTION_IDS = ("budget", *FIGURES, "provenance")
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
NOT_MEASURED = {
    "soil": "Soil CO2 efflux: not measured (no soil CO2 profile or chamber data in this report).",
    "stems": "Stem growth and tree water deficit: not measured (no dendrometer data in this report).",
}
STYLE = """
body { font-family: "DejaVu Sans", Arial, sans-serif; margin: 0 auto; max-width: 1100px; padding: 1em 2em;
       color: #1a1a1a; line-height: 1.4; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #2e7d32; padding-bottom: 0.2em; margin-top: 1.6em; }
nav a { margin-right: 1em; color: #2e7d32; }
table { border-collapse: collapse; width: 100%; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.5em; text-align: left; vertical-align: top; }
th { background: #e8f5e9; } td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.code, .code { font-family: "DejaVu Sans Mono", monospace; font-size: 0.85em; word-break: break-all; }
.not-measured { color: #8a4b00; font-style: italic; }
figure { margin: 0; } figure svg { width: 100%; height: auto; }
.meta { color: #555; }
"""


def _svg(fig: Figure, key: str) -> str:
    buf = io.StringIO()
    with report_style(f"sinkwatch-{key}"):  # ids unique across the page's plots
        fig.savefig(buf, format="svg")
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _table(t: TextTable, numeric: tuple[int, ...] = (), code: tuple[int, ...] = ()) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in t.header)
    body = []
    for row in t.rows:
        cells = []
        for i, cell in enumerate(row):
            cls = " class=\"num\"" if i in numeric else " class=\"code\"" if i in code else ""
            if cell in ("not measured", "not computed"):
                cls = " class=\"not-measured\""
            cells.append(f"<td{cls}>{escape(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_html(data: SiteReportData, *, figures: dict[str, Figure | None] | None = None,
                rasterize: bool = True) -> str:
    """The report page as a string (figures made here unless given, e.g. shared with the PDF)."""
    summary = ReportSummary(data)
    with report_style():
        figs = figures if figures is not None else build_figures(summary, rasterize)
    site = data.site
    title = f"Site carbon report {site.site} {site.year}"
    nav = "".join(f"<a href=\"#{key}\">{escape(label)}</a>" for key, label in
                  [("budget", "Annual budget"), *((k, v[0]) for k, v in FIGURES.items()), ("provenance", "Provenance")])
    parts = [
        "<!DOCTYPE html>",
        "<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<header><h1>{escape(title)}</h1>",
        f"<p class=\"meta\">{escape(site.name or site.site)}"
        + (f" · {site.lat:g}° N, {site.lon:g}° E" if site.lat is not None and site.lon is not None else "")
        + f" · generated {escape(data.provenance.generated_at or 'n/a')} · content digest "
          f"<span class=\"code\">{data.content_digest()}</span></p>",
        f"<nav>{nav}</nav></header>",
    ]
    table = budget_table(summary)
    parts.append(f"<section id=\"budget\"><h2>{escape(table.title)}</h2>")
    parts.append(_table(table, numeric=(1, 2)))
    parts.append("<p class=\"meta\">Uncertainties are 1 σ. gC m-2 over the reported period; tCO2e ha-1 = gC m-2 × "
                 "44.01/12.011 × 0.01. NEE is the ecosystem's net exchange with the atmosphere; soil efflux and "
                 "GPP/RECO are parts of it, the stem increment is the carbon kept in wood.</p></section>")
    for key, (heading, _) in FIGURES.items():
        parts.append(f"<section id=\"{key}\"><h2>{escape(heading)}</h2>")
        fig = figs.get(key)
        if fig is None:
            parts.append(f"<p class=\"not-measured\">{escape(NOT_MEASURED.get(key, 'not measured'))}</p>")
        else:
            parts.append(f"<figure>{_svg(fig, key)}</figure>")
        parts.append("</section>")
    parts.append("<section id=\"provenance\"><h2>Provenance</h2>")
    for t in provenance_tables(summary):
        parts.append(f"<h3>{escape(t.title)}</h3>")
        code = (2,) if t.title.startswith("Inputs") else (1,) if t.title.startswith("Site") else ()
        parts.append(_table(t, code=code))
    parts.append("</section></body></html>")
    page = "\n".join(parts)
    # matplotlib writes an XML comment and metadata into each SVG; drop the creation date so a page is reproducible
    return re.sub(r"<dc:date>[^<]*</dc:date>", "", page)


def write_html(data: SiteReportData, path: Path | str, **kwargs: object) -> Path:
    """Write :func:`render_html` to ``path`` (UTF-8)."""
    out = Path(path)
    out.write_text(render_html(data, **kwargs), encoding="utf-8")  # type: ignore[arg-type]
    return out
