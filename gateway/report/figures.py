"""The report's plots (matplotlib, object API: no pyplot, no GUI backend, no global state).

Each function takes the :class:`~gateway.report.summary.ReportSummary` and returns a ``Figure`` on an A4
landscape page, or None when the component was not measured (the renderers then say "not measured"). With
``rasterize`` True (the default), dense artists (the fingerprint image, a year of soil points, dendrometer curves at
10 min) are rasterised inside the vector output and the cumulative NEE curve is drawn through at most
:data:`MAX_POINTS` of its records (always including the last): a year of half hours as vector paths makes a slow,
heavy PDF and SVG (bench/report.py measures the difference).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib import colors
from matplotlib.figure import Figure

from gateway.flux.soil.annual import lloyd_taylor
from gateway.report.summary import ReportSummary, fmt

__all__ = ["FIGURES", "PAGE_SIZE_IN", "RC", "build_figures", "report_style"]

PAGE_SIZE_IN = (11.69, 8.27)
MAX_POINTS = 2000
"""Vertices of a vector curve at most (a curve with more is thinned or rasterised)."""
RC: dict[str, Any] = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "pdf.fonttype": 42,  # TrueType text in the PDF: selectable, and pdftotext reads it
    "svg.fonttype": "none",  # text as <text> in the SVG: small pages, searchable
    "svg.hashsalt": "sinkwatch",  # stable element ids, so one data object gives one page
    "pdf.compression": 6,
}


def report_style(svg_salt: str | None = None) -> AbstractContextManager[None]:
    """matplotlib settings of the report (:data:`RC`), for making and saving its figures; ``svg_salt`` makes the
    element ids of one SVG differ from another's on the same page."""
    rc: Any = {**RC, "svg.hashsalt": svg_salt} if svg_salt else RC
    return mpl.rc_context(rc)


def _page(title: str) -> Figure:
    fig = Figure(figsize=PAGE_SIZE_IN, layout="constrained")
    fig.suptitle(title, fontsize=13, fontweight="bold")
    return fig


def _days(time_s: np.ndarray, year_start: float) -> np.ndarray:
    result: np.ndarray = (time_s - year_start) / 86400.0
    return result


def _month_ticks(ax: object, year: int) -> None:
    starts = [(datetime(year, m, 1, tzinfo=UTC) - datetime(year, 1, 1, tzinfo=UTC)).days for m in range(1, 13)]
    ax.set_xticks(starts)  # type: ignore[attr-defined]
    ax.set_xticklabels(["J", "F", "M", "A", "M", "J", "J", "A", "S", "O", "N", "D"])  # type: ignore[attr-defined]


def cumulative_nee(s: ReportSummary, rasterize: bool = True) -> Figure | None:
    c = s.cumulative
    year = s.data.site.year
    start = datetime(year, 1, 1, tzinfo=UTC).timestamp()
    fig = _page(f"Cumulative NEE {year}")
    ax = fig.add_subplot()
    # at most MAX_POINTS vertices per curve, always ending with the last record: a page is ~1000 px wide, and the
    # year's 17 520 half hours as three vector paths make most of the HTML's size (bench/report.py)
    every = max(1, -(-c.nee.size // MAX_POINTS)) if rasterize else 1
    pick = np.arange(c.nee.size - 1, -1, -every)[::-1]
    d = _days(c.time_s[pick], start)
    nee, band = c.nee[pick], c.band[pick]
    ax.fill_between(d, nee - band, nee + band, color="tab:green", alpha=0.25, linewidth=0,
                    label=f"± 1 σ ({c.terms})")
    ax.fill_between(d, nee - 2 * band, nee + 2 * band, color="tab:green", alpha=0.12, linewidth=0,
                    label="± 2 σ")
    ax.plot(d, nee, color="darkgreen", linewidth=1.5, label="NEE_F")
    ax.axhline(0, color="black", linewidth=0.8)
    _month_ticks(ax, year)
    ax.set_xlim(0, d[-1] if d.size else 365)
    ax.set_ylabel("cumulative NEE (gC m-2)")
    ax.legend(loc="lower left")
    final = float(c.nee[-1]) if c.nee.size else float("nan")
    ax.set_title(f"end of period: {fmt(final)} ± {fmt(float(c.band[-1]) if c.band.size else None)} gC m-2 "
                 "(negative = uptake)")
    return fig


def fingerprint(s: ReportSummary, rasterize: bool = True) -> Figure | None:
    year = s.data.site.year
    fig = _page(f"Fingerprint of half-hourly NEE {year}")
    names = [n for n in ("NEE", "NEE_F") if n in s.budget.hh]
    grids = [s.fingerprint(n)[0] for n in names]
    finite = np.concatenate([g[np.isfinite(g)] for g in grids]) if grids else np.empty(0)
    lim = float(np.percentile(np.abs(finite), 99)) if finite.size else 1.0
    norm = colors.TwoSlopeNorm(vmin=-lim, vcenter=0.0, vmax=lim) if lim > 0 else None
    axes = fig.subplots(1, len(names), sharey=True, squeeze=False)[0]
    image = None
    for ax, name, grid in zip(axes, names, grids, strict=True):
        per_day = grid.shape[1]
        image = ax.imshow(grid, aspect="auto", origin="lower", cmap="RdBu_r", norm=norm, interpolation="nearest",
                          extent=(0, 24, 0, grid.shape[0]))
        image.set_rasterized(rasterize)
        ax.set_xlabel("time of day (h, station standard time)")
        ax.set_xticks(range(0, 25, 6))
        ax.grid(False)
        what = "measured (gaps white)" if name == "NEE" else "gap-filled"
        ax.set_title(f"{name}: {what}, {per_day} records a day")
    axes[0].set_ylabel("day of year")
    if image is not None:
        fig.colorbar(image, ax=list(axes), label="NEE (µmol m-2 s-1)", shrink=0.9)
    return fig


def gap_fraction(s: ReportSummary, rasterize: bool = True) -> Figure | None:
    labels, frac = s.gap_fraction_by_month
    fig = _page(f"Gap fraction of NEE by month {s.data.site.year}")
    ax = fig.add_subplot()
    x = np.arange(len(labels))
    ax.bar(x, 100 * frac, color="tab:orange")
    for xi, f in zip(x, frac, strict=True):
        ax.text(float(xi), 100 * f + 1, f"{100 * f:.0f} %", ha="center", fontsize=9)
    ax.set_xticks(x)
    ax.set_xticklabels([lab[:4] + "-" + lab[4:] for lab in labels], rotation=45)
    ax.set_ylim(0, 105)
    ax.set_ylabel("gap-filled half hours (%)")
    annual = s.annual("GAP_FRACTION")
    ax.set_title(f"annual gap fraction {fmt(None if annual is None else 100 * annual, 0)} % "
                 "(gaps and u*-filtered nights, filled by MDS)")
    return fig


def ustar_distribution(s: ReportSummary, rasterize: bool = True) -> Figure | None:
    u = s.budget.ustar
    fig = _page("u* threshold")
    ax = fig.add_subplot()
    if u.mode == "auto" and u.draws.size:
        draws = u.draws[np.isfinite(u.draws)]
        ax.hist(draws, bins=min(30, max(5, draws.size // 4)), color="tab:blue", alpha=0.7,
                label=f"bootstrap ({draws.size} draws)")
        ax.axvline(u.threshold, color="black", linewidth=2, label=f"threshold used {u.threshold:.3f} m s-1")
        for q, v in sorted(u.percentiles.items()):
            ax.axvline(v, color="tab:red", linestyle="--", linewidth=1)
            ax.text(v, ax.get_ylim()[1] * 0.95, f" p{q:02.0f} {v:.3f}", color="tab:red", fontsize=9, rotation=90,
                    va="top")
        ax.set_xlabel("u* threshold (m s-1)")
        ax.set_ylabel("bootstrap draws")
        ax.legend(loc="upper right")
        ax.set_title("moving-point test (Papale et al. 2006) with bootstrap")
    else:
        ax.axis("off")
        if u.mode == "value":
            text = f"u* threshold given: {u.threshold:.3f} m s-1 (not estimated from the data: no distribution)"
        elif u.mode == "none":
            text = ("no u* filtering in the budget (NEE taken as already filtered): threshold distribution not "
                    "estimated")
        else:
            spread = ", ".join(f"p{q:02.0f} {v:.3f}" for q, v in sorted(u.percentiles.items()))
            text = (f"u* threshold {u.threshold:.3f} m s-1 (moving-point test with bootstrap); the bootstrap draws "
                    "are not among the inputs" + (f": percentiles {spread} m s-1" if spread else ""))
        ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=12, wrap=True)
    return fig


def soil_vs_temperature(s: ReportSummary, rasterize: bool = True) -> Figure | None:
    series = s.soil_series()
    if not series:
        return None
    fig = _page(f"Soil CO2 efflux against soil temperature {s.data.site.year}")
    ax, ax_t = fig.subplots(1, 2, width_ratios=[1, 1.4])
    year_start = datetime(s.data.site.year, 1, 1, tzinfo=UTC).timestamp()
    for k, ser in enumerate(series):
        colour = f"C{k}"
        if ser.ts is not None:
            ok = np.isfinite(ser.ts) & np.isfinite(ser.flux)
            points = ax.scatter(ser.ts[ok], ser.flux[ok], s=3, alpha=0.3, color=colour, linewidths=0,
                                label=f"{ser.name} ({ser.ts_name})")
            points.set_rasterized(rasterize)
            res = s.soil_sums[ser.name]
            if np.isfinite(res.r10) and ok.any():
                tt = np.linspace(float(np.min(ser.ts[ok])), float(np.max(ser.ts[ok])), 100)
                ax.plot(tt, lloyd_taylor(tt, res.r10, res.e0), color=colour, linewidth=2,
                        label=f"Lloyd–Taylor: R10 {res.r10:.2f}, E0 {res.e0:.0f} K")
        line = ax_t.plot(_days(ser.time_s, year_start), ser.flux, color=colour, linewidth=0.6, label=ser.name)[0]
        line.set_rasterized(rasterize and ser.time_s.size > MAX_POINTS)
    ax.set_xlabel("soil temperature (°C)")
    ax.set_ylabel("soil CO2 efflux (µmol m-2 s-1)")
    ax.legend(loc="upper left", fontsize=8)
    ax_t.set_ylabel("soil CO2 efflux (µmol m-2 s-1)")
    ax_t.set_xlabel("month")
    _month_ticks(ax_t, s.data.site.year)
    ax_t.legend(loc="upper left", fontsize=8)
    return fig


def stems(s: ReportSummary, rasterize: bool = True) -> Figure | None:
    if not s.data.stems:
        return None
    year = s.data.site.year
    year_start = datetime(year, 1, 1, tzinfo=UTC).timestamp()
    fig = _page(f"Stem growth (GRO) and tree water deficit (TWD) {year}")
    ax_g, ax_w = fig.subplots(2, 1, sharex=True)
    for k, st in enumerate(s.data.stems):
        d = _days(st.time_s, year_start)
        label = st.tree + (f" ({st.species})" if st.species else "")
        dense = rasterize and d.size > MAX_POINTS
        ax_g.plot(d, st.gro_um, color=f"C{k}", linewidth=1, label=label)[0].set_rasterized(dense)
        ax_w.plot(d, st.twd_um, color=f"C{k}", linewidth=0.6)[0].set_rasterized(dense)
    ax_g.set_ylabel(f"GRO (µm, {s.data.stems[0].quantity})")
    ax_g.legend(loc="upper left", fontsize=8, ncols=2)
    ax_g.set_title("zero-growth concept (Zweifel et al. 2016)")
    ax_w.set_ylabel("TWD (µm)")
    ax_w.invert_yaxis()
    _month_ticks(ax_w, year)
    ax_w.set_xlabel("month")
    return fig


FIGURES: dict[str, tuple[str, Callable[[ReportSummary, bool], Figure | None]]] = {
    "nee": ("Cumulative NEE", cumulative_nee),
    "fingerprint": ("Fingerprint of half-hourly NEE", fingerprint),
    "gaps": ("Gap fraction by month", gap_fraction),
    "ustar": ("u* threshold distribution", ustar_distribution),
    "soil": ("Soil CO2 efflux and soil temperature", soil_vs_temperature),
    "stems": ("Stem growth and tree water deficit", stems),
}
"""Section id → (heading, figure function), in the order of the report."""


def build_figures(s: ReportSummary, rasterize: bool = True) -> dict[str, Figure | None]:
    """Every figure of the report by section id (None: not measured)."""
    return {key: fn(s, rasterize) for key, (_, fn) in FIGURES.items()}
