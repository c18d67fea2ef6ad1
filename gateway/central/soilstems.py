"""The central soil and stems jobs: a station-year's soil CO2 efflux, chamber fluxes, dendrometer GRO/TWD and stem
carbon from the station's stored readings (docs/soil-stems.md, "In the running system").

    soil:   store.window_means (CO2, TS, SWC per depth, per period)  -> gateway.flux.soil.gradient
            store.query_series (chamber CO2 + LID_CLOSED, raw)       -> gateway.flux.soil.chamber
    stems:  store.query_series (dendrometer, raw)                    -> gateway.flux.stems.dendro
            tree list (config or CSV) + annual DBH increments        -> gateway.flux.stems.allometry.plot_biomass
    store.write_product -> one run per (product, site, station, year, engine version, settings hash)

Run by `sinkwatch central soil|stems --station S --year Y -c central.yaml` and on a schedule inside `sinkwatch
central serve` (`soil.every`, `stems.every`; `ProductScheduler`). Rules:

- **Which readings.** Each input is named `sensor/VARIABLE` in central.yaml; readings with qc GOOD or SUSPECT and a
  value are used. A gradient period's input is the mean of its readings; a period with fewer readings than
  `min_coverage` × the median count of that input is missing (so a gap is a missing period, never a mean of a few).
  SWC in % is divided by 100; soil temperatures are °C. A CO2 value of a chamber is paired with the lid state stamped
  at the same instant (the chamber driver reads both in one poll).
- **The record.** The year of the station's standard-time clock, up to now: a year in progress is computed over what
  has arrived. `complete` when the data reach from the year's first to its last day.
- **Provenance.** Each job reads the store through an `InputRecorder` (gateway/central/store/provenance.py): the
  run keeps every series it read (sensor, variable, kind, number of items, first and last time, SHA-256), and the
  same job over the same store gives the same digests.
- **Stem carbon.** The tree list's DBH is the DBH at the start of the year; a dendrometer tree's DBH increment is its
  GRO at the end of the record (zero-growth growth since the year's first value) as a diameter change; a tree
  without a dendrometer (or without readings) takes the median relative increment (ΔD/DBH) of its plot's instrumented
  trees, said in the notes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from gateway import __version__
from gateway.central.budget import year_bounds
from gateway.central.periodic import PeriodicJob
from gateway.central.soilstems_config import (
    ChamberSettings,
    Plot,
    Profile,
    SoilJobConfig,
    StationSoilSettings,
    StationStemsSettings,
    StemsJobConfig,
)
from gateway.central.store import (
    Product,
    ProductRun,
    ProductTable,
    StationProduct,
    Store,
    StoreError,
    StoreUnavailable,
)
from gateway.central.store.provenance import InputRecorder
from gateway.flux.soil.chamber import Chamber, ChamberAccuracy, chamber_fluxes, detect_closures
from gateway.flux.soil.gradient import ProbeAccuracy, ProbeCompensation, soil_efflux_gradient
from gateway.flux.stems.allometry import default_species_table, parse_species_table, plot_biomass
from gateway.flux.stems.dendro import clean_dendrometer, daily_stats, to_diameter_change, zero_growth
from gateway.model import utc_now

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
SOIL_ENGINE = f"sinkwatch-soil {__version__}"
STEMS_ENGINE = f"sinkwatch-stems {__version__}"
CHAMBER_CHUNK = timedelta(days=7)
CHAMBER_MARGIN = timedelta(hours=1)
MAX_RAW_POINTS = 2_000_000
QUANTITY_PREFIX = {"radius": "STEM_RAD", "circumference": "STEM_CIRC", "diameter": "STEM_DIAM"}


class SoilStemsJobError(ValueError):
    """This station-year cannot give the product now; the message names the station, the input and the fix."""


@dataclass(frozen=True)
class Source:
    site: str
    sensor: str
    variable: str
    unit: str

    def describe(self) -> str:
        return f"{self.sensor}/{self.variable}"


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(float(seconds), tz=UTC)


def settings_hash(record: dict[str, Any]) -> str:
    """First 16 hex digits of the SHA-256 of the canonical JSON (as the flux engine's settings hash)."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def resolve(store: Store, station: str, year: int, spec: str, start: datetime, end: datetime, site: str | None,
            site_key: str) -> Source | None:
    """The stored series `spec` (sensor/VARIABLE) names, None when it holds nothing in [start, end); refuses to
    guess between two sites (`site_key` is the config key that chooses)."""
    sensor, variable = spec.split("/", 1)
    found = [s for s in store.series_sources(station, variable, start, end)
             if s.sensor == sensor and (site is None or s.site == site)]
    sites = sorted({s.site for s in found})
    if len(sites) > 1:
        raise SoilStemsJobError(f"station {station}, {year}: {spec} is stored for sites {', '.join(sites)}; choose "
                                f"one with {site_key}")
    if not found:
        return None
    units = sorted({s.unit for s in found})
    return Source(found[0].site, sensor, variable, units[0])


def _require(source: Source | None, station: str, year: int, spec: str, what: str, fix: str) -> Source:
    if source is None:
        raise SoilStemsJobError(f"station {station}, {year}: no readings of {spec} ({what}) in the year; {fix}")
    return source


def _run_bounds(year: int, utc_offset_h: float, now: datetime, station: str) -> tuple[datetime, datetime]:
    start, end = year_bounds(year, utc_offset_h)
    if start >= now:
        raise SoilStemsJobError(f"station {station}, {year}: the year has not begun on the station's clock")
    return start, min(end, now)


def _complete(first: datetime, last: datetime, year: int, utc_offset_h: float) -> bool:
    start, end = year_bounds(year, utc_offset_h)
    return first - start <= timedelta(days=1) and end - last <= timedelta(days=1)


def _column(values: FloatArray) -> list[float | None]:
    # tolist, not float() per numpy element: a year's gradient table is 17,520 rows of 30 columns
    numbers = np.asarray(values, dtype=np.float64)
    return [v if ok else None for v, ok in zip(numbers.tolist(), np.isfinite(numbers).tolist(), strict=True)]


# --- soil: the gradient method ------------------------------------------------------------------------------------


def _period_means(store: Store, station: str, source: Source, start: datetime, end: datetime, period: timedelta,
                  grid_start_s: float, n: int) -> tuple[FloatArray, FloatArray]:
    """Means and counts of `source` on the period grid (index by period start); NaN / 0 where empty."""
    means = np.full(n, np.nan)
    counts = np.zeros(n)
    step = period.total_seconds()
    for item in store.window_means(station, source.variable, start, end, period, site=source.site,
                                   sensor=source.sensor):
        index = round((item.start.timestamp() - grid_start_s) / step)
        if 0 <= index < n:
            means[index], counts[index] = item.mean, item.count
    return means, counts


def _covered(means: FloatArray, counts: FloatArray, min_coverage: float) -> FloatArray:
    present = counts > 0
    if not present.any():
        return means
    need = min_coverage * float(np.median(counts[present]))
    return np.where(counts >= need, means, np.nan)


def _swc_fraction(values: FloatArray, source: Source, station: str, year: int) -> FloatArray:
    if source.unit == "%":
        return values / 100.0
    if source.unit in ("m3 m-3", "m3/m3"):
        return values
    raise SoilStemsJobError(f"station {station}, {year}: {source.describe()} is in {source.unit!r}; soil water "
                            "content must be in % (AmeriFlux SWC) or m3 m-3")


def gradient_table(store: Store, station: str, year: int, settings: StationSoilSettings, profile: Profile,
                   period: timedelta, start: datetime, end: datetime, key: str, notes: list[str]) -> ProductTable:
    """The gradient-method table of one profile: a row per period with data, stamped at the period's end."""
    site_key = f"soil.per_station.{station}.site"
    step = period.total_seconds()
    grid_start = float(np.floor(start.timestamp() / step) * step)
    n = int(np.ceil((end.timestamp() - grid_start) / step))
    depths = [p.depth_m for p in profile.probes]
    k = len(depths)
    co2 = np.full((n, k), np.nan)
    ts = np.full((n, k), np.nan)
    swc = np.full((n, k), np.nan)
    t_probe = np.full((n, k), np.nan)
    any_co2 = np.zeros(n, dtype=bool)
    used: dict[str, str] = {}
    for j, probe in enumerate(profile.probes):
        where = f"{key}.probes[{j}] (depth {probe.depth_m:g} m)"
        co2_src = _require(resolve(store, station, year, probe.co2, start, end, settings.site, site_key), station, year,
                           probe.co2, f"CO2 at {probe.depth_m:g} m", f"check {where}.co2")
        assert probe.ts is not None  # the config refuses a probe without temperature
        ts_src = _require(resolve(store, station, year, probe.ts, start, end, settings.site, site_key), station, year,
                          probe.ts, f"soil temperature at {probe.depth_m:g} m",
                          f"a probe with no temperature gives no flux: check {where}.ts (every CO2 depth needs its "
                          "soil temperature)")
        swc_spec = probe.swc or profile.swc
        assert swc_spec is not None
        swc_src = _require(resolve(store, station, year, swc_spec, start, end, settings.site, site_key), station, year,
                           swc_spec, f"soil water content at {probe.depth_m:g} m", f"check {where}.swc or {key}.swc")
        if ts_src.unit != "degC":
            raise SoilStemsJobError(f"station {station}, {year}: {ts_src.describe()} is in {ts_src.unit!r}; soil "
                                    "temperature must be in degC")
        means, counts = _period_means(store, station, co2_src, start, end, period, grid_start, n)
        any_co2 |= counts > 0
        co2[:, j] = _covered(means, counts, profile.min_coverage)
        ts[:, j] = _covered(*_period_means(store, station, ts_src, start, end, period, grid_start, n),
                            profile.min_coverage)
        swc_means = _covered(*_period_means(store, station, swc_src, start, end, period, grid_start, n),
                             profile.min_coverage)
        swc[:, j] = _swc_fraction(swc_means, swc_src, station, year)
        if probe.t_probe is not None:
            tp_src = _require(resolve(store, station, year, probe.t_probe, start, end, settings.site, site_key),
                              station, year, probe.t_probe, "probe temperature", f"check {where}.t_probe")
            t_probe[:, j] = _covered(*_period_means(store, station, tp_src, start, end, period, grid_start, n),
                                     profile.min_coverage)
        else:
            t_probe[:, j] = ts[:, j]
        used[f"{probe.depth_m:g} m"] = f"CO2 {co2_src.describe()}, TS {ts_src.describe()}, SWC {swc_src.describe()}"
    if not any_co2.any():
        raise SoilStemsJobError(f"station {station}, {year}: profile {profile.name} has no CO2 readings in the year")
    reference = ts[:, 0]
    if profile.reference_ts is not None:
        ref_src = _require(resolve(store, station, year, profile.reference_ts, start, end, settings.site, site_key),
                           station, year, profile.reference_ts, "reference soil temperature",
                           f"check {key}.reference_ts")
        reference = _covered(*_period_means(store, station, ref_src, start, end, period, grid_start, n),
                             profile.min_coverage)
    # a row for every period with CO2 or with the reference temperature: a gap in the profile keeps its temperature
    # (NaN efflux, flagged missing input), so the annual sum can fill it from the temperature response
    rows = np.flatnonzero(any_co2 | np.isfinite(reference))
    atm = None
    if profile.atmosphere is not None:
        atm_src = _require(resolve(store, station, year, profile.atmosphere, start, end, settings.site, site_key),
                           station, year, profile.atmosphere, "CO2 above the soil", f"check {key}.atmosphere")
        atm = _covered(*_period_means(store, station, atm_src, start, end, period, grid_start, n),
                       profile.min_coverage)[rows]
    compensation = None if profile.compensation_pa is None else ProbeCompensation(p_pa=profile.compensation_pa)
    try:
        result = soil_efflux_gradient(
            np.array(depths), co2[rows], ts[rows], swc[rows], profile.pressure_pa, profile.soil.soil_site(),
            method=profile.method, diffusivity_model=profile.diffusivity_model,  # type: ignore[arg-type]
            d0_model=profile.d0_model, compensation=compensation, t_probe_c=t_probe[rows], co2_atm_ppm=atm,
            accuracy=ProbeAccuracy(**profile.accuracy.model_dump()))
    except ValueError as exc:
        raise SoilStemsJobError(f"station {station}, {year}: profile {profile.name}: {exc}") from None
    p = int(profile.name)
    values = {name: _column(column) for name, column in result.series(profile=p).items()}
    values["TS"] = _column(reference[rows])
    for j in range(k):
        values[f"TS_{p}_{j + 1}_1"] = _column(ts[rows, j])
        values[f"SWC_{p}_{j + 1}_1"] = _column(100.0 * swc[rows, j])
    missing = int((~np.isfinite(result.flux)).sum())
    notes.append(f"profile {profile.name}: {rows.size} periods of {period.total_seconds() / 60:g} min, {missing} "
                 f"without a flux (missing input or coverage); TS = "
                 f"{profile.reference_ts or 'the shallowest probe temperature'}; inputs: "
                 + "; ".join(f"{d}: {s}" for d, s in used.items()))
    times = [_utc(grid_start + (i + 1) * step) for i in rows]
    return ProductTable(f"gradient_{profile.name}", times, values)


# --- soil: automated chambers -------------------------------------------------------------------------------------


def _raw(store: Store, station: str, source: Source, start: datetime, end: datetime) -> tuple[FloatArray, FloatArray]:
    points = store.query_series(station, source.variable, start, end, site=source.site, sensor=source.sensor,
                                limit=MAX_RAW_POINTS)
    keep = [(p.time.timestamp(), p.value) for p in points if p.value is not None and (p.qc or 0) <= 1]
    if not keep:
        return np.empty(0), np.empty(0)
    arr = np.array(keep, dtype=np.float64)
    return arr[:, 0], arr[:, 1]


def chamber_table(store: Store, station: str, year: int, settings: StationSoilSettings, chamber: ChamberSettings,
                  start: datetime, end: datetime, key: str, notes: list[str]) -> ProductTable:
    """One row per closure ending in [start, end), stamped at the closure's end (docs/soil-stems.md section 2)."""
    site_key = f"soil.per_station.{station}.site"
    co2_src = _require(resolve(store, station, year, chamber.co2, start, end, settings.site, site_key), station, year,
                       chamber.co2, "chamber CO2", f"check {key}.co2")
    lid_src = _require(resolve(store, station, year, chamber.lid, start, end, settings.site, site_key), station, year,
                       chamber.lid, "chamber lid state", f"check {key}.lid (the chamber driver's LID_CLOSED)")
    t_src = None
    if chamber.temperature is not None:
        t_src = resolve(store, station, year, chamber.temperature, start, end, settings.site, site_key)
    ts_src = None
    if chamber.ts is not None:
        ts_src = resolve(store, station, year, chamber.ts, start, end, settings.site, site_key)
    geometry = Chamber(chamber.volume_m3, chamber.area_m2)
    columns: dict[str, list[float]] = {}
    ends: list[float] = []
    c = int(chamber.name)
    chunk_start = start
    while chunk_start < end:
        c0, c1 = chunk_start, min(chunk_start + CHAMBER_CHUNK, end)
        chunk_start = c1
        lo, hi = c0 - CHAMBER_MARGIN, min(c1 + CHAMBER_MARGIN, end)
        t, x = _raw(store, station, co2_src, lo, hi)
        lt, lv = _raw(store, station, lid_src, lo, hi)
        if t.size == 0 or lt.size == 0:
            continue
        state = dict(zip(lt.tolist(), lv.tolist(), strict=True))
        closed = np.array([state.get(v, np.nan) for v in t.tolist()])
        found = detect_closures(t, closed)
        # each closure once: in the chunk its end falls in (the margins only complete closures at the edges)
        inside = (found.end_s >= c0.timestamp()) & ((found.end_s < c1.timestamp()) | (c1 == end))
        if not inside.any():
            continue
        closures = type(found)(found.start_s[inside], found.end_s[inside])
        t_air = np.full(closures.start_s.size, chamber.t_air_c)
        if t_src is not None:
            tt, tv = _raw(store, station, t_src, lo, hi)
            if tt.size:
                a = np.searchsorted(tt, closures.start_s)
                b = np.searchsorted(tt, closures.end_s, side="right")
                sums = np.concatenate([[0.0], np.cumsum(tv)])
                with np.errstate(invalid="ignore", divide="ignore"):
                    mean = (sums[b] - sums[a]) / (b - a)
                t_air = np.where(b > a, mean, t_air)
        result = chamber_fluxes(t, x, closures, geometry, chamber.pressure_pa, t_air,
                                dead_band_s=chamber.dead_band_s, min_points=chamber.min_points,
                                min_closure_s=chamber.min_closure_s, r2_min=chamber.r2_min,
                                accuracy=ChamberAccuracy(noise_ppm=chamber.noise_ppm))
        series = result.series(chamber=c)
        series[f"FC_SOIL_CH_{c}_N"] = result.n.astype(np.float64)
        series[f"FC_SOIL_CH_{c}_DURATION"] = closures.duration_s
        series[f"FC_SOIL_CH_{c}_TA"] = t_air
        series[f"FC_SOIL_CH_{c}_METHOD"] = result.method.astype(np.float64)
        for name, column in series.items():
            columns.setdefault(name, []).extend(column.tolist())
        ends.extend(closures.end_s.tolist())
    if not ends:
        raise SoilStemsJobError(f"station {station}, {year}: chamber {chamber.name} ({co2_src.sensor}) has no closure "
                                f"in the year: no {lid_src.variable} = 1 among the readings paired with its CO2; check "
                                "the lid schedule and the limit switch")
    order = np.argsort(ends)
    end_s = np.array(ends)[order]
    values = {name: _column(np.array(col)[order]) for name, col in columns.items()}
    if ts_src is not None:
        half_hour = timedelta(minutes=30)
        means = store.window_means(station, ts_src.variable, start, end, half_hour, site=ts_src.site,
                                   sensor=ts_src.sensor)
        if means:
            mid = np.array([m.start.timestamp() + 900.0 for m in means])
            tsv = np.array([m.mean for m in means])
            near = np.abs(mid[np.clip(np.searchsorted(mid, end_s), 0, mid.size - 1)] - end_s) <= 3600
            values["TS"] = _column(np.where(near, np.interp(end_s, mid, tsv), np.nan))
    short = int(np.sum((np.array(values[f"FC_SOIL_CH_{c}_QC"], dtype=float).astype(int) & 1) == 1))
    notes.append(f"chamber {chamber.name}: {end_s.size} closures ({co2_src.describe()} with {lid_src.describe()}), "
                 f"{short} too short for a flux (flagged, no value)")
    return ProductTable(f"chamber_{chamber.name}", [_utc(v) for v in end_s], values)


def compute_station_soil(store: Store, station: str, year: int, job: SoilJobConfig, *,
                         now: datetime | None = None) -> StationProduct:
    """The soil product of one station-year from the store, not yet written; SoilStemsJobError when it cannot be
    had (no such station in the config, an input without readings, bad metadata)."""
    settings = job.per_station.get(station)
    if settings is None or (not settings.profiles and not settings.chambers):
        raise SoilStemsJobError(f"station {station}: no soil profile or chamber configured; add soil.per_station."
                                f"{station}.profiles / .chambers to the central config")
    moment = now or utc_now()
    start, end = _run_bounds(year, settings.utc_offset_h, moment, station)
    recorder = InputRecorder(store)
    store = cast(Store, recorder)  # the run keeps what it read
    notes: list[str] = []
    tables: dict[str, ProductTable] = {}
    period = timedelta(minutes=job.period_min)
    failures: list[str] = []
    # One broken chamber or profile must not withhold the others' results: each is computed on its own, and the run
    # fails only when none gives a table (the notes name the ones that did not).
    for index, profile in enumerate(settings.profiles):
        key = f"soil.per_station.{station}.profiles[{index}]"
        try:
            table = gradient_table(store, station, year, settings, profile, period, start, end, key, notes)
        except SoilStemsJobError as exc:
            failures.append(f"profile {profile.name}: {exc}")
            continue
        tables[table.name] = table
    for index, chamber in enumerate(settings.chambers):
        key = f"soil.per_station.{station}.chambers[{index}]"
        try:
            table = chamber_table(store, station, year, settings, chamber, start, end, key, notes)
        except SoilStemsJobError as exc:
            failures.append(f"chamber {chamber.name}: {exc}")
            continue
        tables[table.name] = table
    if not tables:
        raise SoilStemsJobError("; ".join(f.split(": ", 1)[1] for f in failures))
    notes.extend(f"not computed: {f}" for f in failures)
    site = _site(store, station, settings.site, start, end, settings, year)
    firsts = [t.times[0] for t in tables.values()]
    lasts = [t.times[-1] for t in tables.values()]
    record = {"engine": SOIL_ENGINE, "period_min": job.period_min, "station": settings.model_dump(mode="json")}
    run = ProductRun(
        product="soil", site=site, station=station, year=year, engine_version=SOIL_ENGINE,
        settings_hash=settings_hash(record), computed_at=moment, first=min(firsts), last=max(lasts),
        complete=_complete(min(firsts), max(lasts), year, settings.utc_offset_h), utc_offset_h=settings.utc_offset_h,
        settings=record, notes=notes, inputs=recorder.inputs)
    return StationProduct(run, tables)


def _site(store: Store, station: str, configured: str | None, start: datetime, end: datetime,
          settings: StationSoilSettings | StationStemsSettings, year: int) -> str:
    if configured is not None:
        return configured
    specs = [probe.co2 for p in getattr(settings, "profiles", []) for probe in p.probes]
    specs += [c.co2 for c in getattr(settings, "chambers", [])]
    specs += [t.dendrometer for plot in getattr(settings, "plots", []) for t in plot.trees if t.dendrometer]
    for spec in specs:
        source = resolve(store, station, year, spec, start, end, None, f"per_station.{station}.site")
        if source is not None:
            return source.site
    raise SoilStemsJobError(f"station {station}, {year}: none of its configured inputs has readings in the year")


# --- stems ---------------------------------------------------------------------------------------------------------


@dataclass
class TreeResult:
    tree: str
    increment_cm: float  # NaN: no readings
    first: datetime | None
    last: datetime | None


def _frost_temperature(store: Store, station: str, year: int, settings: StationStemsSettings, start: datetime,
                       end: datetime, t: FloatArray) -> FloatArray | None:
    if settings.frost_temperature is None:
        return None
    source = resolve(store, station, year, settings.frost_temperature, start, end, settings.site,
                     f"stems.per_station.{station}.site")
    if source is None:
        return None
    means = store.window_means(station, source.variable, start, end, timedelta(hours=1), site=source.site,
                               sensor=source.sensor)
    if not means:
        return None
    mid = np.array([m.start.timestamp() + 1800.0 for m in means])
    values = np.array([m.mean for m in means])
    out = np.interp(t, mid, values)
    pos = np.clip(np.searchsorted(mid, t), 0, mid.size - 1)
    near = np.minimum(np.abs(mid[pos] - t), np.abs(mid[np.clip(pos - 1, 0, mid.size - 1)] - t)) <= 3 * 3600
    result: FloatArray = np.where(near, out, np.nan)
    return result


def tree_tables(store: Store, station: str, year: int, settings: StationStemsSettings, plot: Plot, start: datetime,
                end: datetime, tables: dict[str, ProductTable], notes: list[str]) -> list[TreeResult]:
    results = []
    for tree in plot.trees:
        if tree.dendrometer is None:
            results.append(TreeResult(tree.tree, np.nan, None, None))
            continue
        source = resolve(store, station, year, tree.dendrometer, start, end, settings.site,
                         f"stems.per_station.{station}.site")
        t, v = (np.empty(0), np.empty(0)) if source is None else _raw(store, station, source, start, end)
        if source is not None and source.unit != "um":
            raise SoilStemsJobError(f"station {station}, {year}: {source.describe()} is in {source.unit!r}; "
                                    "dendrometer changes must be in um")
        if t.size < 10:
            notes.append(f"tree {tree.tree}: {t.size} readings of {tree.dendrometer} in the year: no dendrometer "
                         "products; its increment is taken from the plot's instrumented trees")
            results.append(TreeResult(tree.tree, np.nan, None, None))
            continue
        c = settings.cleaning
        clean = clean_dendrometer(t, v, temperature_c=_frost_temperature(store, station, year, settings, start, end,
                                                                        t),
                                  tol_out=c.tol_out, tol_jump=c.tol_jump, window_days=c.window_days,
                                  max_spike_samples=c.max_spike_samples, frost_temp_c=c.frost_temp_c,
                                  frost_factor=c.frost_factor)
        gro, twd = zero_growth(clean.value)
        quantity = tree.measured_quantity()
        prefix = QUANTITY_PREFIX[quantity]
        tables[f"tree_{tree.tree}"] = ProductTable(f"tree_{tree.tree}", [_utc(s) for s in t], {
            f"{prefix}_CLEAN_{tree.tree}": _column(clean.value), f"STEM_FLAG_{tree.tree}": _column(
                clean.flags.astype(np.float64)), f"GRO_{tree.tree}": _column(gro), f"TWD_{tree.tree}": _column(twd)})
        daily = daily_stats(t, clean.value, utc_offset_s=settings.utc_offset_h * 3600.0)
        tables[f"daily_{tree.tree}"] = ProductTable(f"daily_{tree.tree}", [_utc(s) for s in daily.day_start_s], {
            f"STEM_MAX_{tree.tree}": _column(daily.max), f"STEM_MIN_{tree.tree}": _column(daily.min),
            f"STEM_AMP_{tree.tree}": _column(daily.amplitude), f"STEM_MDS_{tree.tree}": _column(daily.mds),
            f"STEM_INC_{tree.tree}": _column(daily.increment), f"STEM_COVERAGE_{tree.tree}": _column(daily.coverage)})
        growth_um = float(np.nanmax(gro)) if np.isfinite(gro).any() else np.nan
        increment_cm = float(to_diameter_change(np.array([growth_um]), quantity)[0]) / 1e4
        jumps = f", {clean.jump_index.size} jumps corrected" if clean.jump_index.size else ""
        notes.append(f"tree {tree.tree} ({tree.species}, {tree.dendrometer}, {quantity}): GRO {growth_um:.0f} um "
                     f"-> DBH increment {increment_cm:.3f} cm; {clean.n_outliers} outliers removed{jumps}")
        results.append(TreeResult(tree.tree, increment_cm, _utc(t[0]), _utc(t[-1])))
    return results


def plot_table(station: str, year: int, settings: StationStemsSettings, plot: Plot, results: list[TreeResult],
               year_start: datetime, notes: list[str]) -> tuple[ProductTable, datetime, datetime]:
    dbh = np.array([t.dbh_cm for t in plot.trees])
    inc = np.array([r.increment_cm for r in results])
    measured = np.isfinite(inc)
    if not measured.any():
        raise SoilStemsJobError(f"station {station}, {year}: plot {plot.name} has no dendrometer readings for any of "
                                f"its {len(plot.trees)} trees in the year; give at least one tree a dendrometer "
                                "(stems.per_station.<station>.plots[].trees[].dendrometer) that reports")
    relative = float(np.median(inc[measured] / dbh[measured]))
    if (~measured).any():
        names = ", ".join(t.tree for t, m in zip(plot.trees, measured, strict=True) if not m)
        notes.append(f"plot {plot.name}: {int((~measured).sum())} trees without dendrometer readings ({names}) take "
                     f"the median relative increment of the {int(measured.sum())} instrumented ones "
                     f"({100 * relative:.3f} % of DBH)")
    inc = np.where(measured, inc, relative * dbh)
    heights = [t.height_m for t in plot.trees]
    densities = [t.wood_density for t in plot.trees]
    table = default_species_table()
    if settings.species_table is not None:
        table = {**table, **parse_species_table(settings.species_table.read_text(encoding="utf-8"))}
    try:
        result = plot_biomass(
            [t.species for t in plot.trees], dbh, plot.area_m2, dbh_increment_cm=inc,
            height_m=np.array(heights, dtype=float) if all(h is not None for h in heights) else None,
            wood_density=np.array(densities, dtype=float) if all(d is not None for d in densities) else None,
            table=table, carbon_fraction=plot.carbon_fraction, carbon_fraction_sd=plot.carbon_fraction_sd,
            increment_sd_cm=plot.increment_sd_cm, n_draws=plot.n_draws, seed=plot.seed)
    except ValueError as exc:
        raise SoilStemsJobError(f"station {station}, {year}: plot {plot.name}: {exc}") from None
    firsts = [r.first for r in results if r.first is not None]
    lasts = [r.last for r in results if r.last is not None]
    offset = timedelta(hours=settings.utc_offset_h)
    values: dict[str, list[float | None]] = {name: [float(v)] for name, v in result.series().items()}
    values.update({"N_TREES": [float(result.n_trees)], "N_INSTRUMENTED": [float(measured.sum())],
                   "N_EXTRAPOLATED": [float(result.n_extrapolated)], "AREA_M2": [plot.area_m2],
                   "START_DATE": [float((min(firsts) + offset).strftime("%Y%m%d"))],
                   "END_DATE": [float((max(lasts) + offset).strftime("%Y%m%d"))]})
    notes.append(f"plot {plot.name}: {result.n_trees} trees on {plot.area_m2:g} m2: C_AGB_INC "
                 f"{result.carbon_increment_mg_ha:.3f} ± {result.mc['C_AGB_INC'][1]:.3f} Mg C ha-1 "
                 f"({result.n_draws} Monte-Carlo draws, seed {result.seed})")
    return ProductTable(f"plot_{plot.name}", [year_start], values), min(firsts), max(lasts)


def compute_station_stems(store: Store, station: str, year: int, job: StemsJobConfig, *,
                          now: datetime | None = None) -> StationProduct:
    settings = job.per_station.get(station)
    if settings is None:
        raise SoilStemsJobError(f"station {station}: no plots configured; add stems.per_station.{station}.plots to "
                                "the central config")
    moment = now or utc_now()
    start, end = _run_bounds(year, settings.utc_offset_h, moment, station)
    recorder = InputRecorder(store)
    store = cast(Store, recorder)  # the run keeps what it read
    notes: list[str] = []
    tables: dict[str, ProductTable] = {}
    firsts: list[datetime] = []
    lasts: list[datetime] = []
    for plot in settings.plots:
        results = tree_tables(store, station, year, settings, plot, start, end, tables, notes)
        table, first, last = plot_table(station, year, settings, plot, results, year_bounds(year, settings.utc_offset_h)
                                        [0], notes)
        tables[table.name] = table
        firsts.append(first)
        lasts.append(last)
    site = _site(store, station, settings.site, start, end, settings, year)
    record = {"engine": STEMS_ENGINE, "station": settings.model_dump(mode="json")}
    run = ProductRun(
        product="stems", site=site, station=station, year=year, engine_version=STEMS_ENGINE,
        settings_hash=settings_hash(record), computed_at=moment, first=min(firsts), last=max(lasts),
        complete=_complete(min(firsts), max(lasts), year, settings.utc_offset_h), utc_offset_h=settings.utc_offset_h,
        settings=record, notes=notes, inputs=recorder.inputs)
    return StationProduct(run, tables)


# --- running and describing -----------------------------------------------------------------------------------------


def compute(product: Product, store: Store, station: str, year: int, soil: SoilJobConfig, stems: StemsJobConfig,
            *, now: datetime | None = None) -> StationProduct:
    if product == "soil":
        return compute_station_soil(store, station, year, soil, now=now)
    return compute_station_stems(store, station, year, stems, now=now)


def run_station_product(product: Product, store: Store, station: str, year: int, soil: SoilJobConfig,
                        stems: StemsJobConfig, *, now: datetime | None = None) -> StationProduct:
    """Compute and store (replacing the run of the same settings); StoreError when the store refuses."""
    result = compute(product, store, station, year, soil, stems, now=now)
    store.write_product(result)
    return result


def describe(result: StationProduct) -> list[str]:
    """Lines for logs and the command: per table its rows and the headline numbers."""
    run = result.run
    kind = "complete year" if run.complete else f"record {run.first:%Y-%m-%d}..{run.last:%Y-%m-%d}"
    lines = [f"station {run.station} {run.year} {run.product} ({kind}), settings_hash {run.settings_hash}"]
    for name, table in result.tables.items():
        if name.startswith("gradient_"):
            flux = np.array([np.nan if v is None else v for v in table.values["FC_SOIL_GRAD"]])
            lines.append(f"{name}: {len(table)} periods, FC_SOIL_GRAD mean {np.nanmean(flux):.2f} umol m-2 s-1 "
                         f"({int(np.isfinite(flux).sum())} with a value)")
        elif name.startswith("chamber_"):
            c = name.split("_", 1)[1]
            flux = np.array([np.nan if v is None else v for v in table.values[f"FC_SOIL_CH_{c}"]])
            lines.append(f"{name}: {len(table)} closures, FC_SOIL_CH_{c} mean {np.nanmean(flux):.2f} umol m-2 s-1 "
                         f"({int(np.isfinite(flux).sum())} with a value)")
        elif name.startswith("tree_"):
            tree = name.split("_", 1)[1]
            gro = [v for v in table.values[f"GRO_{tree}"] if v is not None]
            twd = [v for v in table.values[f"TWD_{tree}"] if v is not None]
            lines.append(f"{name}: {len(table)} samples, GRO {gro[-1] if gro else float('nan'):.0f} um, TWD max "
                         f"{max(twd) if twd else float('nan'):.0f} um")
        elif name.startswith("plot_"):
            v = {k: col[0] for k, col in table.values.items()}
            lines.append(f"{name}: C_AGB_INC {v['C_AGB_INC']:.3f} ± {v['C_AGB_INC_SD']:.3f} Mg C ha-1 "
                         f"({v['CO2E_AGB_INC']:.2f} ± {v['CO2E_AGB_INC_SD']:.2f} t CO2e ha-1), AGB {v['AGB']:.0f} "
                         f"Mg ha-1, {v['N_TREES']:.0f} trees")
    return lines


def table_csv(run: ProductRun, table: ProductTable) -> str:
    """A stored table as CSV: TIMESTAMP (the row's time on the station's clock, YYYYMMDDHHMM; a gradient period
    also as TIMESTAMP_START/TIMESTAMP_END), then every column; -9999 missing."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    offset = timedelta(hours=run.utc_offset_h)
    names = list(table.values)
    period = timedelta(minutes=int(run.settings.get("period_min", 30)))
    gradient = table.name.startswith("gradient_")
    writer.writerow(["TIMESTAMP_START", "TIMESTAMP_END", *names] if gradient else ["TIMESTAMP", *names])
    for i, time in enumerate(table.times):
        local = time + offset
        stamps = [(local - period).strftime("%Y%m%d%H%M"), local.strftime("%Y%m%d%H%M")] if gradient else \
            [local.strftime("%Y%m%d%H%M")]
        cells = ["-9999" if (v := table.values[n][i]) is None else repr(v) for n in names]
        writer.writerow([*stamps, *cells])
    return out.getvalue()


# --- the schedule ---------------------------------------------------------------------------------------------------


def years_due(now: datetime, utc_offset_h: float, previous_year_days: int) -> list[int]:
    local = now + timedelta(hours=utc_offset_h)
    years = [local.year]
    if local - datetime(local.year, 1, 1, tzinfo=UTC) < timedelta(days=previous_year_days):
        years.insert(0, local.year - 1)
    return years


@dataclass
class StationState:
    last_attempt: str | None = None
    last_success: str | None = None
    last_error: str | None = None
    runs_ok: int = 0
    runs_failed: int = 0


class ProductScheduler(PeriodicJob):
    """Recomputes one product (soil or stems) for every station of its `per_station` every `every` (first at start)
    in a thread of its own; a failing station-year is logged once per distinct message, counted and tried again at
    the next round (after `retry_s` when the store was unavailable)."""

    def __init__(self, product: Product, store: Store, soil: SoilJobConfig, stems: StemsJobConfig, *,
                 clock: Callable[[], datetime] = utc_now, retry_s: float = 60.0) -> None:
        job: SoilJobConfig | StemsJobConfig = soil if product == "soil" else stems
        interval = job.interval()
        if interval is None:
            raise ValueError(f"{product}.every is not set: the schedule is off")
        self.product: Product = product
        self.store = store
        self.soil, self.stems = soil, stems
        self.job = job
        super().__init__(f"{product}-scheduler", interval.total_seconds(), retry_s)
        self.clock = clock
        self.rounds = 0
        self.stations: dict[str, StationState] = {}
        self._lock = threading.Lock()

    def run_round(self) -> bool:
        """One round over every configured station and due year; True when the store was unavailable."""
        outage = False
        offsets = {station: s.utc_offset_h for station, s in self.job.per_station.items()}
        for station, offset in sorted(offsets.items()):
            if self._stop.is_set():
                break
            for year in years_due(self.clock(), offset, self.job.previous_year_days):
                outage |= self._run_one(station, year)
        with self._lock:
            self.rounds += 1
        return outage

    def _run_one(self, station: str, year: int) -> bool:
        key = f"{station}/{year}"
        now = self.clock()
        error: str | None = None
        outage = False
        try:
            result = run_station_product(self.product, self.store, station, year, self.soil, self.stems, now=now)
            log.info("%s: %s", self.product, "; ".join(describe(result)))
        except SoilStemsJobError as exc:
            error = str(exc)
        except StoreUnavailable as exc:
            error, outage = f"store unavailable: {exc}", True
        except StoreError as exc:
            error = f"store error: {exc}"
        except Exception as exc:  # a bug in the chain must not end the schedule
            log.exception("%s: station %s, %s failed", self.product, station, year)
            error = f"unexpected error: {exc!r}"
        with self._lock:
            state = self.stations.setdefault(key, StationState())
            state.last_attempt = now.isoformat()
            if error is None:
                state.last_success, state.last_error = now.isoformat(), None
                state.runs_ok += 1
            else:
                if error != state.last_error:
                    log.warning("%s: %s", self.product, error)
                state.last_error = error
                state.runs_failed += 1
        return outage

    def counters(self) -> dict[str, Any]:
        with self._lock:
            return {"every_s": self.interval_s, "rounds": self.rounds,
                    "stations": {k: vars(v).copy() for k, v in sorted(self.stations.items())}}
