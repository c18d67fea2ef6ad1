"""The store-based builder of the site carbon report's data object (docs/report.md): one station-year's stored
budget run, soil run and stems run, and the provenance of every number, read through the `Store` protocol.

    store.budget_runs / budget_table (HH, DD, MM, YY)   -> BudgetData (half-hourly arrays, sums, u* distribution)
    store.product_runs / product_table (soil)           -> SoilEffluxSeries per profile and chamber
    store.product_runs / product_table (stems)          -> StemSeries per tree, StemCarbon per plot
    store.stations                                      -> Provenance.stations (sensors and their variables)

Provenance: the engine version and settings hash of every stored run; coverage per variable; and for every table
read an `InputDigest` whose `source` is the HTTP request that returns exactly those records again
(`/api/v1/budget?...`, `/api/v1/soil?...`, `/api/v1/stems?...`) and whose `sha256` is over the canonical records:
the `rows` of that request's JSON answer, each as `json.dumps(row, sort_keys=True, separators=(",", ":"))`, joined
by newlines — a verifier recomputes it from the API (tests/central/test_report_data.py does).

When the year has several runs of one kind (other settings), the caller chooses by settings hash; the builder never
mixes or guesses. A missing soil or stems run is a "not measured" row, a missing budget run an error naming the
command that computes it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gateway import __version__
from gateway.central.budget import year_bounds
from gateway.central.config import CentralConfig
from gateway.central.engines import newest_engine_runs
from gateway.central.store import BudgetRun, BudgetTable, ProductRun, ProductTable, Store
from gateway.flux.budget.aggregate import Aggregates
from gateway.model import format_time
from gateway.report.data import (
    BudgetData,
    Coverage,
    InputDigest,
    Provenance,
    ReportDataError,
    SiteInfo,
    SiteReportData,
    SoilEffluxSeries,
    StationInfo,
    StemCarbon,
    StemSeries,
    UstarDistribution,
)

FloatArray = NDArray[np.float64]


class ReportBuildError(ReportDataError):
    """The store cannot make this report; the message names what is missing and the command or option that fixes
    it."""


@dataclass(frozen=True)
class Choice:
    """Which stored run of each kind to use when a year has several (settings hashes, as /sets lists them)."""

    budget: str | None = None
    soil: str | None = None
    stems: str | None = None


# one encoder for every row: json.dumps with options makes a new one per call, a third of a year's digest
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False)


def canonical_digest(rows: list[dict[str, Any]]) -> str:
    """SHA-256 of records as the API's JSON `rows` carry them, one canonical JSON text per line (module doc)."""
    text = "\n".join(map(_CANONICAL.encode, rows))
    return hashlib.sha256(text.encode()).hexdigest()


def budget_rows(table: BudgetTable) -> list[dict[str, Any]]:
    """A stored budget table as /api/v1/budget's `rows`."""
    names = list(table.values)
    return [{"time": format_time(t), "label": label, "values": {n: table.values[n][i] for n in names}}
            for i, (t, label) in enumerate(zip(table.times, table.labels, strict=True))]


def product_rows(table: ProductTable) -> list[dict[str, Any]]:
    """A stored soil/stems table as /api/v1/soil's and /api/v1/stems's `rows`."""
    names = list(table.values)
    return [{"time": format_time(t), "values": {n: table.values[n][i] for n in names}}
            for i, t in enumerate(table.times)]


def _array(values: list[float | None]) -> FloatArray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _local(times: list[datetime], utc_offset_h: float) -> FloatArray:
    """UTC instants -> seconds since the epoch of the station's standard-time clock (the report's time axis)."""
    return np.array([t.timestamp() for t in times], dtype=np.float64) + utc_offset_h * 3600.0


def _stamp(local_s: float) -> str:
    return datetime.fromtimestamp(float(local_s), tz=UTC).strftime("%Y%m%d%H%M")


def _one(runs: list[Any], kind: str, station: str, year: int, chosen: str | None, option: str) -> Any | None:
    runs = newest_engine_runs(runs)  # a run an engine upgrade computed again replaces the old one here
    if chosen is not None:
        runs = [r for r in runs if r.settings_hash == chosen]
        if not runs:
            raise ReportBuildError(f"{kind}: station {station} has no run for {year} with settings hash {chosen}; "
                                   f"see /api/v1/{kind}/sets?station={station}")
    if len(runs) > 1:
        listed = ", ".join(f"{r.settings_hash} ({r.engine_version}, computed {format_time(r.computed_at)})"
                           for r in runs)
        raise ReportBuildError(f"{kind}: station {station} has {len(runs)} runs for {year}: {listed}; choose one "
                               f"with {option}")
    return runs[0] if runs else None


class _Inputs:
    """Collects an InputDigest per store query, and coverage rows."""

    def __init__(self) -> None:
        self.digests: list[InputDigest] = []
        self.coverage: list[Coverage] = []

    def add(self, role: str, source: str, rows: list[dict[str, Any]], local: FloatArray) -> None:
        first = _stamp(float(local[0])) if local.size else ""
        last = _stamp(float(local[-1])) if local.size else ""
        self.digests.append(InputDigest(role, source, canonical_digest(rows), len(rows), first, last))

    def kept(self, role: str, source: str, entry: dict[str, Any], items: str, utc_offset_h: float) -> None:
        """An input a stored run keeps with its SHA-256 (gateway/central/store/provenance.py): what the job read from
        the store to compute it."""
        sha = str(entry.get("sha256", ""))
        if len(sha) != 64:
            return

        def local(stamp: Any) -> str:
            if not stamp:
                return ""
            return _stamp(datetime.fromisoformat(str(stamp)).timestamp() + utc_offset_h * 3600.0)

        self.digests.append(InputDigest(role, source, sha, int(entry.get(items) or 0), local(entry.get("first")),
                                        local(entry.get("last"))))

    def cover(self, name: str, local: FloatArray, values: FloatArray, start: float, end: float, step: float) -> None:
        inside = (local >= start) & (local < end)
        present = local[inside][np.isfinite(values[inside])]
        self.coverage.append(Coverage(name, _stamp(float(present[0])) if present.size else "",
                                      _stamp(float(present[-1])) if present.size else "",
                                      round((end - start) / step), int(present.size)))


def _budget(store: Store, run: BudgetRun, inputs: _Inputs, start: float, end: float) -> BudgetData:
    query = f"/api/v1/budget?station={run.station}&year={run.year}&settings_hash={run.settings_hash}&site={run.site}"
    tables = {r: store.budget_table(run, r) for r in ("HH", "DD", "MM", "YY")}
    hh = tables["HH"]
    if len(hh) < 2:
        raise ReportBuildError(f"budget {run.settings_hash} of station {run.station} {run.year} has {len(hh)} "
                               "half-hourly rows; recompute it (sinkwatch flux budget --station ...)")
    time_s = _local(hh.times, run.utc_offset_h) - 1800.0  # record starts on the station's clock
    arrays = {name: _array(values) for name, values in hh.values.items()}
    for resolution, table in tables.items():
        local = time_s if resolution == "HH" else _local(table.times, run.utc_offset_h)
        inputs.add(f"budget, {resolution} rows", f"{query}&resolution={resolution}", budget_rows(table), local)
    for name, entry in sorted(run.inputs.items()):
        if name == "fluxes":
            source = (f"/api/v1/fluxes?station={run.station}&settings_hash={entry.get('settings_hash')}"
                      f"&start={format_time(run.first_end - timedelta(minutes=30))}&end={format_time(run.last_end)}")
            inputs.kept("budget input, flux records (SHA-256 over each record's canonical digest)", source,
                        {**entry, "first": entry.get("first_end"), "last": entry.get("last_end")}, "records",
                        run.utc_offset_h)
        else:
            inputs.kept(f"budget input, {name} half-hour means of good readings",
                        f"{run.site}/{entry.get('sensor')}/{entry.get('variable')}", entry, "windows", run.utc_offset_h)
    aggregates = {r: Aggregates(list(tables[r].labels), {n: _array(v) for n, v in tables[r].values.items()})
                  for r in ("DD", "MM", "YY")}
    scalars: dict[str, float | str] = dict(run.scalars)
    mode = scalars.get("USTAR_MODE")
    threshold = scalars.get("USTAR_THRESHOLD")
    percentiles = {q: float(v) for q, key in ((5.0, "USTAR_THRESHOLD_P05"), (50.0, "USTAR_THRESHOLD_P50"),
                                             (95.0, "USTAR_THRESHOLD_P95"))
                   if isinstance(v := scalars.get(key), float) and np.isfinite(v)}
    ustar = UstarDistribution(mode if mode in ("auto", "value", "none") else "auto",  # type: ignore[arg-type]
                              float(threshold) if isinstance(threshold, float) else float("nan"),
                              np.array(run.ustar_draws, dtype=np.float64), percentiles)
    if "NEE" in arrays and "NEE_F_QC" in arrays:
        inputs.cover("NEE (measured, after u* filtering: NEE_F_QC 0)", time_s,
                     np.where(arrays["NEE_F_QC"] == 0, 1.0, np.nan), start, end, 1800.0)
    for name in ("NEE_F", "TA_F", "SW_IN_F", "VPD_F"):
        if name in arrays:
            inputs.cover(name, time_s, arrays[name], start, end, 1800.0)
    return BudgetData(time_s, 1800.0, arrays, aggregates["DD"], aggregates["MM"], aggregates["YY"], ustar, scalars,
                      list(run.notes))


def _product_source(run: ProductRun, table: str) -> str:
    return (f"/api/v1/{run.product}?station={run.station}&year={run.year}&table={table}"
            f"&settings_hash={run.settings_hash}&site={run.site}")


def _soil(store: Store, run: ProductRun, inputs: _Inputs, start: float, end: float) -> list[SoilEffluxSeries]:
    series = []
    gradients = sorted(n for n in run.tables if n.startswith("gradient_"))
    period = float(run.settings.get("period_min", 30)) * 60.0
    for key, entry in sorted(run.inputs.items()):
        inputs.kept(f"{run.product} input, {entry.get('kind')}", key, entry, "items", run.utc_offset_h)
    for name in sorted(run.tables):
        table = store.product_table(run, name)
        local = _local(table.times, run.utc_offset_h)
        inputs.add(f"soil, {name}", _product_source(run, name), product_rows(table), local)
        if name.startswith("gradient_"):
            p = name.split("_", 1)[1]
            label = "FC_SOIL_GRAD" if len(gradients) == 1 else f"FC_SOIL_GRAD_{p}"
            ts_name = "TS" if "TS" in table.values else f"TS_{p}_1_1"
            s = SoilEffluxSeries(label, "gradient", local - period, period, _array(table.values["FC_SOIL_GRAD"]),
                                 _array(table.values["FC_SOIL_GRAD_UNC"]), _array(table.values[ts_name]), ts_name,
                                 _array(table.values["FC_SOIL_GRAD_QC"]))
        elif name.startswith("chamber_"):
            c = name.split("_", 1)[1]
            flux = _array(table.values[f"FC_SOIL_CH_{c}"])
            valid = local[np.isfinite(flux)]
            step = float(np.median(np.diff(valid))) if valid.size > 1 else 3600.0
            ts = _array(table.values["TS"]) if "TS" in table.values else None
            s = SoilEffluxSeries(f"FC_SOIL_CH_{c}", "chamber", local, step, flux,
                                 _array(table.values[f"FC_SOIL_CH_{c}_UNC"]), ts, "TS",
                                 _array(table.values[f"FC_SOIL_CH_{c}_QC"]))
        else:
            continue
        series.append(s)
        inputs.cover(s.name, s.time_s, s.flux, start, end, s.period_s)
        if s.ts is not None:
            inputs.cover(f"{s.ts_name} (with {s.name})", s.time_s, s.ts, start, end, s.period_s)
    return series


def _stems(store: Store, run: ProductRun, inputs: _Inputs, start: float,
           end: float) -> tuple[list[StemSeries], list[StemCarbon]]:
    trees = {t["tree"]: t for plot in run.settings.get("station", {}).get("plots", []) for t in plot.get("trees", [])}
    series: list[StemSeries] = []
    carbon: list[StemCarbon] = []
    for key, entry in sorted(run.inputs.items()):
        inputs.kept(f"{run.product} input, {entry.get('kind')}", key, entry, "items", run.utc_offset_h)
    for name in sorted(run.tables):
        table = store.product_table(run, name)
        local = _local(table.times, run.utc_offset_h)
        if name.startswith("daily_"):
            continue  # daily statistics are served, not drawn: the report shows GRO and TWD
        inputs.add(f"stems, {name}", _product_source(run, name), product_rows(table), local)
        if name.startswith("tree_"):
            tree = name.split("_", 1)[1]
            entry = trees.get(tree, {})
            quantity = next((q for q, prefix in (("circumference", "STEM_CIRC"), ("diameter", "STEM_DIAM"))
                             if f"{prefix}_CLEAN_{tree}" in table.values), "radius")
            s = StemSeries(tree, local, _array(table.values[f"GRO_{tree}"]), _array(table.values[f"TWD_{tree}"]),
                           str(entry.get("species", "")), quantity)  # type: ignore[arg-type]
            series.append(s)
            step = float(np.median(np.diff(local))) if local.size > 1 else 600.0
            inputs.cover(f"GRO_{tree}", local, s.gro_um, start, end, step)
        elif name.startswith("plot_"):
            v = {k: float("nan") if col[0] is None else float(col[0]) for k, col in table.values.items()}
            instrumented, n = int(v.get("N_INSTRUMENTED", 0)), int(v.get("N_TREES", 0))
            carbon.append(StemCarbon(
                name.split("_", 1)[1], f"{int(v['START_DATE']):08d}", f"{int(v['END_DATE']):08d}", v["C_AGB_INC"],
                v["C_AGB_INC_SD"], v["CO2E_AGB_INC"], v["CO2E_AGB_INC_SD"], n,
                f"allometry on DBH + dendrometer increments ({instrumented} of {n} trees instrumented), "
                f"{run.engine_version}"))
    return series, carbon


def build_report_data(store: Store, station: str, year: int, central: CentralConfig | None = None, *,
                      choice: Choice = Choice(), site: str | None = None, name: str = "",
                      generated_at: datetime | None = None) -> SiteReportData:
    """The report's data object for one station-year from the store (module docstring). `central`: site facts
    (latitude, longitude, UTC offset) from `budget.per_station`; the stored runs give the rest."""
    budget_runs = [r for r in store.budget_runs(station, year) if site is None or r.site == site]
    budget_run: BudgetRun | None = _one(budget_runs, "budget", station, year, choice.budget, "--budget-settings-hash")
    if budget_run is None:
        raise ReportBuildError(f"budget: no carbon budget of station {station} for {year} in the store; compute it "
                               f"with `sinkwatch flux budget --station {station} --year {year} -c central.yaml`")
    site_id = budget_run.site
    start_s, end_s = (b.timestamp() + budget_run.utc_offset_h * 3600.0
                      for b in year_bounds(year, budget_run.utc_offset_h))
    inputs = _Inputs()
    budget = _budget(store, budget_run, inputs, start_s, end_s)
    engines = {"report": f"sinkwatch {__version__}", "budget": budget_run.engine_version}
    hashes = {"budget": budget_run.settings_hash}
    flux_set = budget_run.settings.get("flux_set") or {}
    if flux_set:
        engines["flux records"] = str(flux_set.get("engine_version", ""))
        hashes["flux records"] = str(flux_set.get("settings_hash", ""))
    notes = [f"built from the store: station {station}, site {site_id}, {year}"]
    products: dict[str, ProductRun | None] = {}
    for product, chosen, option in (("soil", choice.soil, "--soil-settings-hash"),
                                    ("stems", choice.stems, "--stems-settings-hash")):
        runs = [r for r in store.product_runs(product, station, year) if r.site == site_id]  # type: ignore[arg-type]
        products[product] = _one(runs, product, station, year, chosen, option)
        run = products[product]
        if run is None:
            notes.append(f"no {product} run stored for {year}: compute it with `sinkwatch central {product} --station "
                         f"{station} --year {year} -c central.yaml`")
            continue
        engines[product] = run.engine_version
        hashes[product] = run.settings_hash
        if not run.complete:
            notes.append(f"{product}: the data cover {run.first:%Y-%m-%d}..{run.last:%Y-%m-%d} only")
    soil = _soil(store, products["soil"], inputs, start_s, end_s) if products["soil"] else []
    stems, carbon = (_stems(store, products["stems"], inputs, start_s, end_s) if products["stems"]
                     else ([], []))
    known = [info for info in store.stations() if info.station == station and info.site == site_id]
    stations = [StationInfo(station, {sensor: sorted(variables) for sensor, variables in sorted(
        known[0].sensors.items())})] if known else [StationInfo(station)]
    when = (generated_at or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    lat = lon = None
    offset = budget_run.utc_offset_h
    if central is not None:
        facts = central.budget.station_settings(station)
        lat, lon = facts.latitude, facts.longitude
    lat = lat if lat is not None else budget_run.settings.get("latitude")
    lon = lon if lon is not None else budget_run.settings.get("longitude")
    provenance = Provenance(stations=stations, coverage=inputs.coverage, engines=engines, settings_hashes=hashes,
                            inputs=inputs.digests, generated_at=when.isoformat().replace("+00:00", "Z"),
                            notes=notes)
    info = SiteInfo(site=site_id, year=year, name=name, lat=lat, lon=lon, utc_offset_h=offset,
                    description=f"station {station}")
    return SiteReportData(info, budget, provenance, soil, stems, carbon)
