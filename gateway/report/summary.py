"""What the report shows, derived from a :class:`~gateway.report.data.SiteReportData` only: the annual budget table,
the cumulative NEE with its uncertainty band, gap fraction by month, the NEE fingerprint, soil efflux sums.

No plotting here (numbers only, no matplotlib), so the HTML and PDF renderers show the same numbers and a test can
compare the rendered text with these values. Units as in :mod:`gateway.report.data`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from gateway.flux.budget.aggregate import Z_90, gc_per_record, to_tco2e_ha
from gateway.flux.soil.annual import EffluxSum, efflux_sum
from gateway.report.data import BudgetData, SiteReportData, SoilEffluxSeries

__all__ = [
    "BudgetRow",
    "Cumulative",
    "ReportSummary",
    "TextTable",
    "budget_table",
    "fmt",
    "fmt_pm",
    "provenance_tables",
    "stamp",
]

FloatArray = NDArray[np.float64]
GC_M2_PER_MG_HA = 100.0  # 1 Mg ha-1 = 1e6 g / 1e4 m2


def stamp(time_s: float) -> str:
    """``YYYYMMDDHHMM`` of a time on the station's clock (seconds since its epoch)."""
    return datetime.fromtimestamp(float(time_s), tz=UTC).strftime("%Y%m%d%H%M")


def fmt(value: float | None, digits: int = 1) -> str:
    """A number as the report prints it (ASCII minus, fixed decimals)."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}"


def fmt_pm(value: float | None, unc: float | None, digits: int = 1) -> str:
    """``value ± unc``; without an uncertainty the value alone."""
    if unc is None or not math.isfinite(unc):
        return fmt(value, digits)
    return f"{fmt(value, digits)} ± {fmt(unc, digits)}"


@dataclass(frozen=True)
class BudgetRow:
    """One row of the annual budget table. ``status``: ``measured`` (numbers given), ``not measured`` (the
    component has no data), ``not computed`` (data, but no sum: ``note`` says why). Values in gC m-2 and
    tCO2e ha-1 for the reported period; ``*_unc`` 1 σ, None when not estimated. ``sign``: how to read the sign."""

    key: str
    label: str
    status: str
    gc_m2: float | None = None
    gc_unc: float | None = None
    tco2e: float | None = None
    tco2e_unc: float | None = None
    sign: str = ""
    note: str = ""

    @property
    def gc_text(self) -> str:
        return fmt_pm(self.gc_m2, self.gc_unc) if self.status == "measured" else self.status

    @property
    def tco2e_text(self) -> str:
        return fmt_pm(self.tco2e, self.tco2e_unc, 2) if self.status == "measured" else self.status


@dataclass(frozen=True)
class Cumulative:
    """Cumulative NEE (gC m-2) at the end of each record (``time_s`` = record end) with its 1-σ ``band``;
    ``terms`` names what the band holds."""

    time_s: FloatArray
    nee: FloatArray
    band: FloatArray
    terms: str


def _year_bounds(year: int) -> tuple[float, float]:
    start = datetime(year, 1, 1, tzinfo=UTC).timestamp()
    end = datetime(year + 1, 1, 1, tzinfo=UTC).timestamp()
    return start, end


class ReportSummary:
    """The derived content of one report (computed on first use, then kept)."""

    def __init__(self, data: SiteReportData) -> None:
        self.data = data
        self.budget: BudgetData = data.budget_data
        self.year_label = str(data.site.year)
        self.year_index = self.budget.annual.label.index(self.year_label)

    def annual(self, name: str) -> float | None:
        """The annual aggregate ``name`` of the reported year, None when the budget has no such column."""
        values = self.budget.annual.values.get(name)
        return None if values is None else float(values[self.year_index])

    # --- the table ---------------------------------------------------------------------------------------------

    @cached_property
    def soil_sums(self) -> dict[str, EffluxSum]:
        start, end = _year_bounds(self.data.site.year)
        out: dict[str, EffluxSum] = {}
        for s in self.data.soil:
            out[s.name] = efflux_sum(s.time_s, s.flux, s.flux_unc, s.ts, start_s=start, end_s=end,
                                     period_s=s.period_s, stamped_at_end=s.method == "chamber")
        return out

    def _nee_row(self) -> BudgetRow:
        nee, unc = self.annual("NEE_F"), self.annual("NEE_F_UNC")
        terms = []
        for name, label in (("NEE_F_RANDUNC", "random"), ("NEE_F_USTARUNC", "u*"), ("NEE_F_GFUNC", "gap filling")):
            v = self.annual(name)
            if v is not None:
                terms.append(f"{label} {fmt(v)}")
        if nee is None or not math.isfinite(nee):
            unfilled = self.annual("N_UNFILLED")
            return BudgetRow("NEE", "Net ecosystem exchange (NEE_F)", "not computed",
                             note=f"{fmt(unfilled, 0)} half hours could not be gap-filled; a sum over them would be "
                                  "partial")
        return BudgetRow("NEE", "Net ecosystem exchange (NEE_F)", "measured", nee, unc, self.annual("NEE_F_TCO2E"),
                         self.annual("NEE_F_UNC_TCO2E"), "negative = uptake by the ecosystem",
                         "1 σ = random ⊕ u* ⊕ gap filling: " + ", ".join(terms) + " gC m-2")

    def _partition_rows(self) -> list[BudgetRow]:
        rows = []
        for flux, what in (("GPP", "Gross primary production"), ("RECO", "Ecosystem respiration")):
            for method, mlabel in (("NT", "nighttime"), ("DT", "daytime")):
                name = f"{flux}_{method}"
                value = self.annual(name)
                other = self.annual(f"{flux}_{'DT' if method == 'NT' else 'NT'}")
                label = f"{what}, {mlabel} partitioning ({name})"
                if value is None:
                    rows.append(BudgetRow(name, label, "not computed",
                                          note="the budget was run without this partitioning"))
                    continue
                if not math.isfinite(value):
                    rows.append(BudgetRow(name, label, "not computed",
                                          note="partitioning left records without a value (see the budget notes)"))
                    continue
                spread = abs(value - other) / 2.0 if other is not None and math.isfinite(other) else None
                rows.append(BudgetRow(name, label, "measured", value, spread, float(to_tco2e_ha(value)),
                                      None if spread is None else float(to_tco2e_ha(spread)),
                                      "positive (a gross flux)",
                                      "± half the difference between nighttime and daytime partitioning"
                                      if spread is not None else "uncertainty not estimated (one method only)"))
        return rows

    def _soil_rows(self) -> list[BudgetRow]:
        if not self.data.soil:
            return [BudgetRow("FC_SOIL", "Soil CO2 efflux", "not measured",
                              note="no soil CO2 profile or chamber data in this report")]
        rows = []
        for s in self.data.soil:
            res = self.soil_sums[s.name]
            label = f"Soil CO2 efflux, {'gradient method' if s.method == 'gradient' else 'chamber'} ({s.name})"
            if not math.isfinite(res.total_gc_m2):
                rows.append(BudgetRow(s.name, label, "not computed", note=res.reason))
                continue
            share = 100.0 * res.n_measured / res.n_slots
            rows.append(BudgetRow(
                s.name, label, "measured", res.total_gc_m2, res.unc_gc_m2, float(to_tco2e_ha(res.total_gc_m2)),
                float(to_tco2e_ha(res.unc_gc_m2)), "positive = efflux to the atmosphere",
                f"{share:.0f} % of {s.period_s / 60:.0f}-min slots measured, gaps filled from {s.ts_name} "
                f"(Lloyd–Taylor R10 {fmt(res.r10, 2)} µmol m-2 s-1, E0 {fmt(res.e0, 0)} K)"))
        return rows

    def _stem_rows(self) -> list[BudgetRow]:
        if not self.data.stem_carbon:
            return [BudgetRow("C_AGB_INC", "Stem carbon increment", "not measured",
                              note="no tree list with dendrometer increments in this report")]
        return [BudgetRow(
            f"C_AGB_INC:{c.plot}", f"Stem carbon increment, plot {c.plot} (C_AGB_INC)", "measured",
            c.c_inc_mg_ha * GC_M2_PER_MG_HA, c.c_inc_sd * GC_M2_PER_MG_HA, c.co2e_inc_t_ha, c.co2e_inc_sd,
            "positive = carbon stored in wood",
            f"{c.start}–{c.end}, {c.n_trees} trees, Monte-Carlo sd" + (f"; {c.method}" if c.method else ""))
            for c in self.data.stem_carbon]

    @cached_property
    def rows(self) -> list[BudgetRow]:
        """The annual budget table, in the order printed."""
        return [self._nee_row(), *self._partition_rows(), *self._soil_rows(), *self._stem_rows()]

    # --- series for the plots ----------------------------------------------------------------------------------

    @cached_property
    def cumulative(self) -> Cumulative:
        """Cumulative NEE_F over the reported year with the band of the annual uncertainty's terms accumulated
        record by record: random (independent records), gap filling (correlated within a gap, independent between
        gaps), u* (half the 5-95 % scenario spread over 1.645) — the annual value's terms, so the band's end equals
        the annual NEE_F_UNC."""
        b = self.budget
        start, end = _year_bounds(self.data.site.year)
        sel = (b.time_s >= start) & (b.time_s < end)
        hh = {k: v[sel] for k, v in b.hh.items()}
        step = b.step_s
        nee_gc = gc_per_record(hh["NEE_F"], step)
        cum = np.cumsum(nee_gc)
        rand = np.sqrt(np.cumsum(np.nan_to_num(gc_per_record(hh["NEE_F_RANDUNC"], step)) ** 2))
        var = rand**2
        terms = ["random"]
        if "NEE_F_FSD" in hh and "NEE_F_FNUM" in hh:
            qc = hh["NEE_F_QC"]
            filled = np.isfinite(qc) & (qc > 0)
            with np.errstate(invalid="ignore", divide="ignore"):
                se = np.where(filled, gc_per_record(hh["NEE_F_FSD"], step) / np.sqrt(hh["NEE_F_FNUM"]), 0.0)
            se = np.nan_to_num(se)
            run_start = filled & ~np.concatenate(([False], filled[:-1]))
            within = np.cumsum(se)
            # partial sum of the current gap, and the squared sums of the gaps already closed
            gap_base = np.maximum.accumulate(np.where(run_start, within - se, 0.0))
            current = np.where(filled, within - gap_base, 0.0)
            closed_sq = np.zeros_like(se)
            ends = filled & ~np.concatenate((filled[1:], [False]))
            closed_sq[ends] = current[ends] ** 2
            closed = np.cumsum(closed_sq) - closed_sq
            var = var + closed + current**2
            terms.append("gap filling")
        if "NEE_U05_F" in hh and "NEE_U95_F" in hh:
            u = np.abs(np.cumsum(gc_per_record(hh["NEE_U95_F"], step))
                       - np.cumsum(gc_per_record(hh["NEE_U05_F"], step))) / (2.0 * Z_90)
            var = var + u**2
            terms.append("u*")
        return Cumulative(b.time_s[sel] + step, cum, np.sqrt(var), " ⊕ ".join(terms))

    @cached_property
    def gap_fraction_by_month(self) -> tuple[list[str], FloatArray]:
        """``(YYYYMM labels, share of gap-filled NEE records)`` of the reported year's months."""
        m = self.budget.monthly
        keep = [i for i, lab in enumerate(m.label) if lab.startswith(self.year_label)]
        return [m.label[i] for i in keep], np.asarray(m.values["GAP_FRACTION"], dtype=np.float64)[keep]

    def fingerprint(self, name: str = "NEE_F") -> tuple[FloatArray, float, int]:
        """Half-hourly ``name`` as a (days × records per day) matrix over the reported year, NaN where missing;
        with the first day's start (s) and the records per day."""
        b = self.budget
        start, end = _year_bounds(self.data.site.year)
        per_day = round(86400.0 / b.step_s)
        n_days = round((end - start) / 86400.0)
        grid = np.full((n_days, per_day), np.nan)
        sel = (b.time_s >= start) & (b.time_s < end)
        k = np.round((b.time_s[sel] - start) / b.step_s).astype(np.intp)
        grid.flat[k] = b.hh[name][sel]
        return grid, start, per_day

    def soil_series(self) -> list[SoilEffluxSeries]:
        return list(self.data.soil)


@dataclass(frozen=True)
class TextTable:
    """A table of text for a renderer: ``title``, ``header``, ``rows`` (strings), ``widths`` (relative column
    widths)."""

    title: str
    header: tuple[str, ...]
    rows: Sequence[tuple[str, ...]]
    widths: tuple[float, ...]


def budget_table(summary: ReportSummary) -> TextTable:
    """The annual budget as text, exactly as both renderers print it."""
    rows = [(r.label, r.gc_text, r.tco2e_text, r.sign, r.note) for r in summary.rows]
    return TextTable(f"Annual budget {summary.year_label}",
                     ("component", "gC m-2", "tCO2e ha-1", "sign", "how"), rows, (0.26, 0.13, 0.11, 0.17, 0.33))


def provenance_tables(summary: ReportSummary) -> list[TextTable]:
    """The provenance section as text tables: site, stations and sensors, inputs with digests, coverage, engines
    and settings."""
    data = summary.data
    p = data.provenance
    site = data.site
    site_rows = [("site", site.site + (f" ({site.name})" if site.name else "")), ("year", str(site.year))]
    for label, value in (("latitude (°N)", site.lat), ("longitude (°E)", site.lon),
                         ("elevation (m a.s.l.)", site.elevation_m), ("UTC offset of the station clock (h)",
                                                                       site.utc_offset_h)):
        site_rows.append((label, "not given" if value is None else f"{value:g}"))
    if site.description:
        site_rows.append(("description", site.description))
    site_rows.append(("report content digest (sha256)", data.content_digest()))
    site_rows.append(("generated (UTC)", p.generated_at or "not recorded"))
    tables = [TextTable("Site and report", ("item", "value"), site_rows, (0.3, 0.7))]
    station_rows = [(st.station, sensor, ", ".join(variables)) for st in p.stations
                    for sensor, variables in (st.sensors.items() or {"(sensors not recorded)": ()}.items())]
    tables.append(TextTable("Stations and sensors", ("station", "sensor", "variables"),
                            station_rows or [("not recorded in the inputs", "", "")], (0.25, 0.3, 0.45)))
    tables.append(TextTable("Inputs (ask for exactly these data again)",
                            ("role", "source", "sha256", "records", "first", "last"),
                            [(i.role, i.source, i.sha256, str(i.records), i.first, i.last) for i in p.inputs]
                            or [("none recorded", "", "", "", "", "")], (0.12, 0.15, 0.48, 0.07, 0.09, 0.09)))
    tables.append(TextTable("Data coverage", ("variable", "first", "last", "present / expected", "coverage"),
                            [(c.variable, c.first, c.last, f"{c.present} / {c.expected}", f"{100 * c.fraction:.1f} %")
                             for c in p.coverage] or [("not recorded", "", "", "", "")],
                            (0.3, 0.17, 0.17, 0.2, 0.16)))
    settings = [("engine", k, v) for k, v in p.engines.items()]
    settings += [("settings hash", k, v) for k, v in p.settings_hashes.items()]
    b = summary.budget
    settings += [("budget", k, v if isinstance(v, str) else f"{v:.6g}") for k, v in b.scalars.items()]
    tables.append(TextTable("Engines and settings", ("kind", "component", "value"),
                            settings or [("not recorded", "", "")], (0.2, 0.35, 0.45)))
    notes = [("budget", n) for n in b.notes] + [("report", n) for n in p.notes]
    if notes:
        tables.append(TextTable("Notes", ("from", "note"), notes, (0.12, 0.88)))
    return tables
