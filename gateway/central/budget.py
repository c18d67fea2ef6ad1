"""The central budget job: a station-year's carbon budget from the station's stored fluxes and met readings.

    store.flux_result_sets / query_fluxes  -> FC (flag-filtered), SC or storage from CO2/TA/PA, USTAR per half hour
    store.stations / window_means          -> SW_IN, TA, VPD (or VPD from RH and TA) as half-hour means
    gateway.flux.budget.pipeline.run_budget (u* filter, MDS, random uncertainty, NT/DT partitioning, sums)
    store.write_budget                      -> one run per (site, station, year, engine version, settings hash)

Run by `sinkwatch flux budget --station S --year Y -c central.yaml` and on a schedule inside `sinkwatch central
serve` (`budget.every`, `BudgetScheduler`). docs/budget.md, "In the running system", states the rules; in short:

- **Which fluxes.** The station's flux result set (engine version + settings hash) that has records in the year; when
  several have, `budget.per_station.<station>.flux_settings_hash` chooses (the job refuses to guess and names them).
  One settings hash with records of several versions of one engine (the engine upgraded within the year) is one
  set: per half hour the newest version's record.
  Only 30-min periods ending on the half-hour grid are used. FC with a Mauder-Foken flag (`FC_SSITC_TEST`) above
  `max_flux_flag` (default 1: flag 2 removed) is missing. NEE = FC + SC: SC from the records when they carry it, else
  from their CO2, TA and PA at `storage_height_m` (single level), else NEE = FC, said in the notes.
- **Which met sensors.** Readings whose variable is SW_IN, TA, VPD (RH) with or without an AmeriFlux position
  qualifier; when several sensors (or qualifiers) report one variable in the year, `sensors: {TA: sensor}` or
  `{TA: sensor/TA_1_2_1}` chooses. Half-hour means of the readings with qc GOOD or SUSPECT, aligned with the flux
  periods (the window [end - 30 min, end)); a half hour with fewer readings than `min_coverage` × the median count
  is missing. Without a VPD sensor VPD is computed from the half-hour means of RH and TA
  (`gateway.variables.vapour_pressure_deficit_hpa`); without RH either, the pipeline's reduced method runs (NEE
  filled on SW_IN alone, no daytime partitioning), as for a file without them, and the notes say so.
- **Provenance.** The run keeps what it read (`BudgetRun.inputs`, gateway/central/store/provenance.py): the flux
  records (result set, count, first and last end, SHA-256 over their digests) and each met source's half-hour means
  (sensor, variable, count, SHA-256); `budget_input_digests` reads them again from the store to compare.
- **The record.** From the first to the last half hour of the year for which the station delivered a flux record
  (ok, partial or failed). Gaps inside it are filled; the half hours after the last record — the rest of a year in
  progress — are not part of it: nothing is filled there and nothing of them is in the sums. A year in progress
  therefore gives the running total from the first record to the last, with the uncertainty of that sum alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gateway.central.budget_config import BudgetJobConfig, StationBudgetSettings
from gateway.central.engines import engine_order
from gateway.central.fanout import LocalRunner, Runner
from gateway.central.periodic import PeriodicJob
from gateway.central.store import (
    BudgetRun,
    BudgetTable,
    FluxResultSet,
    StationBudget,
    Store,
    StoreError,
    StoreUnavailable,
    WindowMean,
)
from gateway.central.store.base import to_ns_all
from gateway.central.store.provenance import means_digest, records_digest
from gateway.contract import FluxRecord
from gateway.flux.budget.aggregate import Aggregates
from gateway.flux.budget.files import HALFHOURLY_COLUMNS
from gateway.flux.budget.pipeline import (
    ENGINE_NAME,
    ENGINE_VERSION,
    MIN_DAYS,
    BudgetInputError,
    BudgetResult,
    BudgetSettings,
    run_budget,
)
from gateway.flux.budget.storage import storage_single_level
from gateway.model import format_time, utc_now
from gateway.variables import base_name, vapour_pressure_deficit_hpa

log = logging.getLogger(__name__)

HALF_HOUR = timedelta(minutes=30)
STEP_S = 1800
MAX_FLUX_RECORDS = 200_000
#: between the engine versions of one flux set across an upgrade, newest first ("sinkwatch-ec 0.4.0, …0.3.0")
ENGINE_SEPARATOR = ", "
BUDGET_ENGINE = f"{ENGINE_NAME} {ENGINE_VERSION}"
MET_UNITS = {"SW_IN": "W m-2", "TA": "degC", "VPD": "hPa", "RH": "%"}
INPUT_COLUMNS = ("FC", "SC", "NEE", "USTAR", "SW_IN", "TA", "VPD")


class BudgetJobError(ValueError):
    """This station-year cannot give a budget now; the message names the station, the problem and the fix."""


@dataclass(frozen=True)
class MetSource:
    """Where one driver of the budget comes from: a sensor's variable, or derived (VPD from RH and TA)."""

    sensor: str
    variable: str
    unit: str

    def describe(self) -> str:
        return f"{self.sensor}/{self.variable}"


@dataclass
class StationYearInput:
    """A station-year's half-hourly inputs on one grid: ``ends_s`` (UTC seconds, every 1800 s), NaN = missing."""

    site: str
    station: str
    year: int
    settings: StationBudgetSettings
    flux_set: FluxResultSet
    ends_s: NDArray[np.float64]
    columns: dict[str, NDArray[np.float64]]
    met: dict[str, str]
    notes: list[str] = field(default_factory=list)
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # digests of what was read (provenance)

    @property
    def first_end(self) -> datetime:
        return _utc(self.ends_s[0])

    @property
    def last_end(self) -> datetime:
        return _utc(self.ends_s[-1])


def year_bounds(year: int, utc_offset_h: float) -> tuple[datetime, datetime]:
    """The year on the station's standard-time clock as a UTC interval [start, end)."""
    offset = timedelta(hours=utc_offset_h)
    return datetime(year, 1, 1, tzinfo=UTC) - offset, datetime(year + 1, 1, 1, tzinfo=UTC) - offset


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(float(seconds), tz=UTC)


def _key(station: str) -> str:
    return f"budget.per_station.{station}"


# --- inputs ------------------------------------------------------------------------------------------------------


def engine_versions(flux_set: FluxResultSet) -> list[str]:
    """The engine versions a chosen set stands for, newest first (one, or several of an upgrade: choose_flux_set)."""
    return flux_set.engine_version.split(ENGINE_SEPARATOR)


def _upgrades_of_one_set(sets: list[FluxResultSet]) -> bool:
    """Several sets of one site and settings hash from versions of one engine: one set across an upgrade."""
    orders = [engine_order(s.engine_version) for s in sets]
    return (len({(s.site, s.settings_hash) for s in sets}) == 1 and None not in orders
            and len({o[0] for o in orders if o is not None}) == 1)


def choose_flux_set(store: Store, station: str, year: int, settings: StationBudgetSettings) -> FluxResultSet:
    """The station's flux result set of the year (module docstring). A settings hash whose records come from several
    versions of one engine (the station or `sinkwatch flux recompute` upgraded within the year) is one set: its
    `engine_version` lists them newest first (ENGINE_SEPARATOR) and per half hour the newest version's record is
    used (`newest_per_period`)."""
    start, end = year_bounds(year, settings.utc_offset_h)
    sets = [s for s in store.flux_result_sets(station)
            if s.last_end > start and s.first_end <= end and (settings.site is None or s.site == settings.site)]
    listed = "; ".join(f"{s.settings_hash} ({s.engine_version}, site {s.site}, {s.periods} periods "
                       f"{s.first_end:%Y-%m-%d}..{s.last_end:%Y-%m-%d})" for s in sets)
    if settings.flux_settings_hash is not None:
        chosen = [s for s in sets if s.settings_hash == settings.flux_settings_hash]
        if not chosen:
            raise BudgetJobError(
                f"station {station}, {year}: no flux records with settings hash {settings.flux_settings_hash}"
                + (f"; the year has {listed}" if sets else "") + f"; check {_key(station)}.flux_settings_hash")
        sets = chosen
    if not sets:
        raise BudgetJobError(f"station {station}, {year}: no flux records stored for this year; the budget needs the "
                             "station's half-hourly fluxes (its flux runner, or sinkwatch flux recompute)")
    if len(sets) > 1 and _upgrades_of_one_set(sets):
        newest_first = sorted(sets, key=lambda s: engine_order(s.engine_version) or ("", ()), reverse=True)
        return FluxResultSet(sets[0].site, station, ENGINE_SEPARATOR.join(s.engine_version for s in newest_first),
                             sets[0].settings_hash, sum(s.periods for s in sets), min(s.first_end for s in sets),
                             max(s.last_end for s in sets))
    if len(sets) > 1:
        raise BudgetJobError(
            f"station {station}, {year}: {len(sets)} flux result sets have records in the year: {listed}; choose "
            f"one with {_key(station)}.flux_settings_hash (and .site when two sites share the station id)")
    return sets[0]


def newest_per_period(records: list[FluxRecord], flux_set: FluxResultSet) -> list[FluxRecord]:
    """The set's records, one per period end: of several engine versions' records for one period, the newest
    version's (its engine computes what the older one did, or better: the reason the version was raised)."""
    rank = {version: i for i, version in enumerate(engine_versions(flux_set))}
    best: dict[datetime, FluxRecord] = {}
    for record in records:
        if record.site != flux_set.site or record.engine_version not in rank:
            continue
        kept = best.get(record.end)
        if kept is None or rank[record.engine_version] < rank[kept.engine_version]:
            best[record.end] = record
    return [best[end] for end in sorted(best)]


def _set_records(store: Store, station: str, start: datetime, end: datetime,
                 flux_set: FluxResultSet) -> list[FluxRecord]:
    return newest_per_period(store.query_fluxes(station, start, end, flux_set.settings_hash,
                                                limit=MAX_FLUX_RECORDS * len(engine_versions(flux_set))), flux_set)


def _met_candidates(store: Store, site: str, station: str, base: str, start: datetime,
                    end: datetime) -> list[MetSource]:
    found = []
    for info in store.stations():
        if info.site != site or info.station != station:
            continue
        variables = sorted({v for per_sensor in info.sensors.values() for v in per_sensor if base_name(v) == base})
        for variable in variables:
            for source in store.series_sources(station, variable, start, end):
                if source.site == site:
                    found.append(MetSource(source.sensor, variable, source.unit))
    return sorted(set(found), key=lambda m: (m.sensor, m.variable))


def choose_met_source(store: Store, site: str, station: str, year: int, base: str,
                      settings: StationBudgetSettings, start: datetime, end: datetime) -> MetSource | None:
    """The one sensor variable that gives `base`, None when the station has none in the year."""
    candidates = _met_candidates(store, site, station, base, start, end)
    listed = ", ".join(c.describe() for c in candidates) or "none"
    choice = settings.sensors.get(base)
    if choice is not None:
        sensor, _, variable = choice.partition("/")
        candidates = [c for c in candidates if c.sensor == sensor and (not variable or c.variable == variable)]
        if not candidates:
            raise BudgetJobError(f"station {station}, {year}: {_key(station)}.sensors.{base} = {choice}, but that "
                                 f"reports no {base} in the year (reporting {base}: {listed})")
    if len(candidates) > 1:
        raise BudgetJobError(
            f"station {station}, {year}: {base} is reported by {listed}; choose one with "
            f"{_key(station)}.sensors.{base}: <sensor> or <sensor>/<variable>, e.g. {candidates[0].describe()}")
    if not candidates:
        return None
    source = candidates[0]
    if source.unit != MET_UNITS[base]:
        raise BudgetJobError(f"station {station}, {year}: {source.describe()} is in {source.unit!r}, the budget "
                             f"needs {base} in {MET_UNITS[base]}")
    return source


def _met_means(store: Store, site: str, station: str, sensor: str, variable: str, first_end: datetime,
               last_end: datetime) -> list[WindowMean]:
    """The half-hour means of one met source over the record [first end - 30 min, last end): what the budget reads,
    and what `budget_input_digests` reads again."""
    return store.window_means(station, variable, first_end - HALF_HOUR, last_end, HALF_HOUR, site=site,
                              sensor=sensor)


def met_input(sensor: str, variable: str, means: list[WindowMean]) -> dict[str, Any]:
    """A met source as an input of a run (gateway/central/store/provenance.py)."""
    return {"sensor": sensor, "variable": variable, "windows": len(means),
            "first": format_time(means[0].start) if means else None,
            "last": format_time(means[-1].start) if means else None, "sha256": means_digest(means)}


def flux_input(flux_set: FluxResultSet, records: list[FluxRecord]) -> dict[str, Any]:
    """The flux records a run used as one input (gateway/central/store/provenance.py)."""
    ends = [r.end for r in records]
    return {"site": flux_set.site, "engine_version": flux_set.engine_version, "settings_hash": flux_set.settings_hash,
            "records": len(records), "first_end": format_time(min(ends)) if ends else None,
            "last_end": format_time(max(ends)) if ends else None, "sha256": records_digest(records)}


def _usable(records: list[FluxRecord]) -> list[FluxRecord]:
    return [r for r in records if r.end - r.start == HALF_HOUR and r.end.timestamp() % STEP_S == 0]


def _half_hour_means(store: Store, site: str, station: str, source: MetSource, ends_s: NDArray[np.float64],
                     min_coverage: float, notes: list[str], inputs: dict[str, dict[str, Any]],
                     name: str) -> NDArray[np.float64]:
    out = np.full(ends_s.size, np.nan)
    means = _met_means(store, site, station, source.sensor, source.variable, _utc(ends_s[0]), _utc(ends_s[-1]))
    inputs[name] = met_input(source.sensor, source.variable, means)
    if not means:
        return out
    # start.timestamp() a column at a time: whole microseconds (exact in a float64) / 1e6, as datetime divides
    start_s = np.fromiter(to_ns_all(m.start for m in means), dtype=np.int64, count=len(means)) // 1000 / 1e6
    index = np.round((start_s + STEP_S - ends_s[0]) / STEP_S).astype(np.intp)
    counts = np.fromiter((m.count for m in means), dtype=np.float64, count=len(means))
    values = np.fromiter((m.mean for m in means), dtype=np.float64, count=len(means))
    enough = counts >= min_coverage * float(np.median(counts))
    inside = (index >= 0) & (index < ends_s.size)
    out[index[inside & enough]] = values[inside & enough]
    dropped = int((inside & ~enough).sum())
    if dropped:
        notes.append(f"{source.describe()}: {dropped} half hours with fewer than {min_coverage:g} x the median "
                     f"{float(np.median(counts)):g} readings taken as missing")
    return out


def load_station_year(store: Store, station: str, year: int, settings: StationBudgetSettings, *,
                      now: datetime | None = None) -> StationYearInput:
    """Gather a station-year's half-hourly inputs from the store (module docstring); BudgetJobError when the year
    cannot give a budget (no fluxes, several result sets, no met sensor, too short)."""
    start, end = year_bounds(year, settings.utc_offset_h)
    moment = now or utc_now()
    if start >= moment:
        raise BudgetJobError(f"station {station}, {year}: the year has not begun on the station's clock")
    flux_set = choose_flux_set(store, station, year, settings)
    site = flux_set.site
    records = _set_records(store, station, start, end, flux_set)
    usable = _usable(records)
    notes: list[str] = []
    if not usable:
        lengths = sorted({round((r.end - r.start).total_seconds() / 60, 2) for r in records})
        raise BudgetJobError(f"station {station}, {year}: flux set {flux_set.settings_hash} has no 30-min periods on "
                             f"the half-hour grid (its periods: {lengths} min); the budget needs half-hourly fluxes")
    if len(usable) < len(records):
        notes.append(f"{len(records) - len(usable)} flux records not 30-min periods on the half-hour grid ignored")
    if len(engine_versions(flux_set)) > 1:
        counts = {v: sum(r.engine_version == v for r in usable) for v in engine_versions(flux_set)}
        notes.append("flux records of " + ", ".join(f"{v} ({n} half hours)" for v, n in counts.items())
                     + ": one settings hash across an engine upgrade; per half hour the newest version's record")
    ends = np.array([r.end.timestamp() for r in usable])
    first, last = float(ends.min()), float(ends.max())
    n = round((last - first) / STEP_S) + 1
    if n < MIN_DAYS * 48:
        raise BudgetJobError(f"station {station}, {year}: the flux records span {n / 48:.1f} days "
                             f"({_utc(first):%Y-%m-%d %H:%M}..{_utc(last):%Y-%m-%d %H:%M} UTC); a budget needs at "
                             f"least {MIN_DAYS} days")
    ends_s = first + STEP_S * np.arange(n, dtype=np.float64)
    read: dict[str, dict[str, Any]] = {"fluxes": flux_input(flux_set, usable)}
    index = np.round((ends - first) / STEP_S).astype(np.intp)
    cols: dict[str, NDArray[np.float64]] = {}
    for name in ("FC", "FC_SSITC_TEST", "SC", "NEE", "USTAR", "CO2", "TA", "PA"):
        values = np.array([np.nan if (v := r.values.get(name)) is None else float(v) for r in usable])
        if np.isfinite(values).any():
            cols[name] = np.full(n, np.nan)
            cols[name][index] = values
    if "FC" not in cols and "NEE" not in cols:
        raise BudgetJobError(f"station {station}, {year}: the flux records of set {flux_set.settings_hash} have no "
                             "FC value; the budget needs the CO2 flux (an analyzer on the station)")
    inputs: dict[str, NDArray[np.float64]] = {"USTAR": cols.get("USTAR", np.full(n, np.nan))}
    if "NEE" in cols:
        inputs["NEE"] = cols["NEE"]
        notes.append("NEE as stored in the flux records")
    else:
        fc = cols["FC"].copy()
        if "FC_SSITC_TEST" in cols:
            bad = cols["FC_SSITC_TEST"] > settings.max_flux_flag
            if bad.any():
                notes.append(f"{int(bad.sum())} FC values with FC_SSITC_TEST > {settings.max_flux_flag} removed")
            fc[bad] = np.nan
        inputs["FC"] = fc
        if "SC" in cols:
            sc = cols["SC"]
            notes.append("NEE = FC + SC (SC from the flux records)")
        elif settings.storage_height_m is not None and {"CO2", "TA", "PA"} <= cols.keys():
            sc = storage_single_level(cols["CO2"], cols["TA"], cols["PA"], settings.storage_height_m, period_s=STEP_S)
            notes.append(f"NEE = FC + SC, SC from the analyzer's CO2 at {settings.storage_height_m:g} m (single "
                         "level)")
        else:
            sc = np.full(n, np.nan)
            why = ("no CO2/TA/PA in the records" if settings.storage_height_m is not None
                   else f"set {_key(station)}.storage_height_m to compute it from the analyzer's CO2")
            notes.append(f"NEE = FC: no storage term ({why})")
        inputs["SC"] = sc
        inputs["NEE"] = np.where(np.isfinite(sc), fc + np.nan_to_num(sc), fc)
    met: dict[str, str] = {}
    window = (_utc(first) - HALF_HOUR, _utc(last))
    sources = {base: choose_met_source(store, site, station, year, base, settings, *window)
               for base in ("SW_IN", "TA", "VPD")}
    for base in ("SW_IN", "TA"):
        if sources[base] is None:
            device = "a pyranometer (e.g. SR30)" if base == "SW_IN" else "an air temperature probe (e.g. HMP155)"
            raise BudgetJobError(f"station {station}, {year}: no {base} readings at site {site} in the year; the "
                                 f"budget needs {base} ({MET_UNITS[base]}) from {device}")
    for base in ("SW_IN", "TA", "VPD"):
        source = sources[base]
        if source is not None:
            inputs[base] = _half_hour_means(store, site, station, source, ends_s, settings.min_coverage, notes, read,
                                            base)
            met[base] = source.describe()
    if sources["VPD"] is None:
        rh = choose_met_source(store, site, station, year, "RH", settings, *window)
        if rh is None:
            # as `sinkwatch flux budget` does with a file without VPD and RH: the pipeline's reduced method (MDS on
            # SW_IN alone, Reichstein et al. 2005 Appendix A; no daytime partitioning), said in its note
            inputs["VPD"] = np.full(ends_s.size, np.nan)
            met["VPD"] = "none"
            notes.append(f"no VPD or RH readings at site {site} in the year: the reduced method below; an air "
                         "temperature and humidity probe (e.g. an HMP155) gives the full one")
            return StationYearInput(site, station, year, settings, flux_set, ends_s, inputs, met, notes, read)
        rh_means = _half_hour_means(store, site, station, rh, ends_s, settings.min_coverage, notes, read, "RH")
        inputs["VPD"] = vapour_pressure_deficit_hpa(inputs["TA"], rh_means)
        met["VPD"] = f"from {met['TA']} and {rh.describe()}"
        notes.append("VPD computed from the half-hour means of TA and RH")
    return StationYearInput(site, station, year, settings, flux_set, ends_s, inputs, met, notes, read)


def budget_input_digests(store: Store, run: BudgetRun) -> dict[str, dict[str, Any]]:
    """The inputs of a stored run as the store holds them now, read as the job read them: the same flux result
    set over the run's record, the same met sources' half-hour means. Equal to `run.inputs`: the run was computed
    from what the store holds; otherwise records or readings were added, changed or removed since."""
    flux_set = (run.inputs.get("fluxes") or {})
    found = FluxResultSet(run.site, run.station, str(flux_set.get("engine_version")),
                          str(flux_set.get("settings_hash")), 0, run.first_end, run.last_end)
    records = _set_records(store, run.station, run.first_end - timedelta(microseconds=1), run.last_end, found)
    now: dict[str, dict[str, Any]] = {"fluxes": flux_input(found, _usable(records))}
    for name, source in run.inputs.items():
        if name != "fluxes":
            sensor, variable = str(source.get("sensor")), str(source.get("variable"))
            now[name] = met_input(sensor, variable, _met_means(store, run.site, run.station, sensor, variable,
                                                               run.first_end, run.last_end))
    return now


# --- the run -----------------------------------------------------------------------------------------------------


def budget_settings(job: BudgetJobConfig, ustar: str | float | None = None) -> BudgetSettings:
    return BudgetSettings(ustar=job.ustar_mode() if ustar is None else ustar, n_bootstrap=job.bootstrap,
                          seed=job.seed, partition=job.partition, despike_z=job.despike_z)


def settings_record(data: StationYearInput, chain: BudgetSettings) -> dict[str, Any]:
    """Everything that decides the result besides the engine and the data: what the settings hash is of."""
    st = data.settings
    # spike detection enters the hash only when on, so the budgets stored before it existed keep theirs
    despike = {} if chain.despike_z is None else {"despike_z": chain.despike_z,
                                                   "despike_window_days": chain.despike_window_days}
    return {**despike,
        "ustar": chain.ustar, "bootstrap": chain.n_bootstrap, "seed": chain.seed,
        "scenarios": list(chain.scenarios), "partition": chain.partition,
        "latitude": st.latitude, "longitude": st.longitude, "utc_offset_h": st.utc_offset_h,
        "flux_set": {"engine_version": data.flux_set.engine_version, "settings_hash": data.flux_set.settings_hash},
        "max_flux_flag": st.max_flux_flag, "storage_height_m": st.storage_height_m,
        "min_coverage": st.min_coverage, "met": dict(sorted(data.met.items())),
    }


def settings_hash(record: dict[str, Any]) -> str:
    """First 16 hex digits of the SHA-256 of the canonical JSON (as the flux engine's settings hash)."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _aggregate_table(resolution: str, agg: Aggregates, utc_offset_h: float) -> BudgetTable:
    fmt = {"DD": "%Y%m%d", "MM": "%Y%m", "YY": "%Y"}[resolution]
    offset = timedelta(hours=utc_offset_h)
    times = [datetime.strptime(label, fmt).replace(tzinfo=UTC) - offset for label in agg.label]
    values = {name: [float(v) for v in column] for name, column in agg.values.items()}
    return BudgetTable(resolution, times, list(agg.label), values)  # type: ignore[arg-type]


def build_station_budget(data: StationYearInput, result: BudgetResult, chain: BudgetSettings,
                         computed_at: datetime) -> StationBudget:
    offset = timedelta(hours=data.settings.utc_offset_h)
    ends = [_utc(t) for t in data.ends_s]
    hh_values: dict[str, list[float | None]] = {}
    for name in INPUT_COLUMNS:
        if name in data.columns:
            hh_values[name] = [float(v) for v in data.columns[name]]
    for name in HALFHOURLY_COLUMNS:
        if name in result.hh and name not in hh_values:
            hh_values[name] = [float(v) for v in result.hh[name]]
    labels = [(t - HALF_HOUR + offset).strftime("%Y%m%d%H%M") for t in ends]
    tables = {"HH": BudgetTable("HH", ends, labels, hh_values)}
    for resolution, agg in (("DD", result.daily), ("MM", result.monthly), ("YY", result.annual)):
        tables[resolution] = _aggregate_table(resolution, agg, data.settings.utc_offset_h)
    start, end = year_bounds(data.year, data.settings.utc_offset_h)
    complete = ends[0] == start + HALF_HOUR and ends[-1] == end
    notes = list(data.notes)
    if not complete:
        notes.append(
            f"record {ends[0] - HALF_HOUR:%Y-%m-%d %H:%M}..{ends[-1]:%Y-%m-%d %H:%M} UTC of the year: the sums and "
            "their uncertainty are those of this record alone; half hours before its first and after its last flux "
            "record are not filled and not summed")
    notes.extend(result.notes)
    record = settings_record(data, chain)
    draws = result.ustar.bootstrap.tolist() if result.ustar is not None else []
    run = BudgetRun(
        site=data.site, station=data.station, year=data.year, engine_version=BUDGET_ENGINE,
        settings_hash=settings_hash(record), computed_at=computed_at, first_end=ends[0], last_end=ends[-1],
        complete=complete, utc_offset_h=data.settings.utc_offset_h, settings=record, scalars=dict(result.scalars),
        ustar_draws=[float(v) for v in draws], notes=notes, inputs=data.inputs,
    )
    return StationBudget(run, tables)


@dataclass(frozen=True)
class BudgetTask:
    """What the budget of one station-year is computed from: its inputs read from the store and the chain's
    settings. `compute_budget` turns it into the run, in this process or on a Dask worker."""

    data: StationYearInput
    chain: BudgetSettings
    moment: datetime


def prepare_station_budget(store: Store, station: str, year: int, job: BudgetJobConfig, *,
                           now: datetime | None = None, ustar: str | float | None = None) -> BudgetTask:
    """Read a station-year's inputs from the store; BudgetJobError when it cannot give a budget."""
    settings = job.station_settings(station)
    if settings.latitude is None or settings.longitude is None:
        raise BudgetJobError(f"station {station}: no coordinates; set {_key(station)}.latitude and .longitude (or "
                             "budget.defaults) in the central config")
    moment = now or utc_now()
    data = load_station_year(store, station, year, settings, now=moment)
    chain = budget_settings(job, ustar)
    if chain.ustar != "none" and not np.isfinite(data.columns["USTAR"]).any():
        raise BudgetJobError(f"station {station}, {year}: the flux records have no USTAR; u* filtering needs it "
                             "(or budget.ustar: none when NEE is already filtered)")
    return BudgetTask(data, chain, moment)


def compute_budget(task: BudgetTask) -> StationBudget:
    """The budget run of a prepared station-year (no store: pure computation)."""
    data, chain, settings = task.data, task.chain, task.data.settings
    assert settings.latitude is not None and settings.longitude is not None  # checked when prepared
    t_start = data.ends_s - STEP_S + settings.utc_offset_h * 3600.0
    try:
        result = run_budget(t_start, data.columns["NEE"], data.columns["SW_IN"], data.columns["TA"],
                            data.columns["VPD"], None if chain.ustar == "none" else data.columns["USTAR"],
                            lat=settings.latitude, lon=settings.longitude, utc_offset_h=settings.utc_offset_h,
                            settings=chain)
    except BudgetInputError as exc:
        # the chain names the command's options; here the same choice is the config's key
        message = str(exc).replace("--ustar ", "budget.ustar: ")
        raise BudgetJobError(f"station {data.station}, {data.year}: {message}") from None
    return build_station_budget(data, result, chain, task.moment)


def compute_station_budget(store: Store, station: str, year: int, job: BudgetJobConfig, *,
                           now: datetime | None = None, ustar: str | float | None = None) -> StationBudget:
    """The budget of one station-year from the store, not yet written; BudgetJobError when it cannot be had."""
    return compute_budget(prepare_station_budget(store, station, year, job, now=now, ustar=ustar))


def run_station_budget(store: Store, station: str, year: int, job: BudgetJobConfig, *,
                       now: datetime | None = None, ustar: str | float | None = None) -> StationBudget:
    """Compute and store (replacing the run of the same settings); StoreError when the store refuses."""
    budget = compute_station_budget(store, station, year, job, now=now, ustar=ustar)
    store.write_budget(budget)
    return budget


@dataclass(frozen=True)
class BudgetOutcome:
    """One station-year of `run_budgets`: the stored run, or why there is none."""

    station: str
    year: int
    budget: StationBudget | None = None
    error: BudgetJobError | None = None


def _compute_outcome(item: tuple[str, int, BudgetTask | BudgetJobError]) -> BudgetOutcome:
    station, year, task = item
    if isinstance(task, BudgetJobError):
        return BudgetOutcome(station, year, error=task)
    try:
        return BudgetOutcome(station, year, budget=compute_budget(task))
    except BudgetJobError as exc:
        return BudgetOutcome(station, year, error=exc)


def run_budgets(store: Store, station_years: Iterable[tuple[str, int]], job: BudgetJobConfig, *,
                runner: Runner | None = None, now: datetime | None = None,
                ustar: str | float | None = None) -> Iterator[BudgetOutcome]:
    """The budgets of many station-years: inputs read here (one station-year at a time, as the runner asks for
    the next), computed through `runner` (gateway/central/fanout.py: this process by default, or a Dask cluster),
    each run written here as it completes; a station-year that cannot give a budget is reported, not fatal."""
    moment = now or utc_now()

    def prepared() -> Iterator[tuple[str, int, BudgetTask | BudgetJobError]]:
        for station, year in station_years:
            try:
                yield station, year, prepare_station_budget(store, station, year, job, now=moment, ustar=ustar)
            except BudgetJobError as exc:
                yield station, year, exc

    for outcome in (runner or LocalRunner()).run(_compute_outcome, prepared()):
        if outcome.budget is not None:
            store.write_budget(outcome.budget)
        yield outcome


def describe(budget: StationBudget) -> str:
    """One line on the annual (or running) total, for logs and the command."""
    run = budget.run
    yy = budget.tables["YY"]
    if not len(yy):
        return f"station {run.station} {run.year}: no annual row"
    v = {k: col[0] for k, col in yy.values.items()}

    def num(name: str, fmt: str = ".1f") -> str:
        value = v.get(name)
        return "missing" if value is None or not np.isfinite(value) else format(value, fmt)

    kind = "annual" if run.complete else f"running total to {run.last_end:%Y-%m-%d %H:%M} UTC"
    return (f"station {run.station} {run.year} ({kind}): NEE {num('NEE_F')} ± {num('NEE_F_UNC')} gC m-2 "
            f"({num('NEE_F_TCO2E', '.2f')} ± {num('NEE_F_UNC_TCO2E', '.2f')} tCO2e ha-1), "
            f"GPP_NT {num('GPP_NT', '.0f')}, RECO_NT {num('RECO_NT', '.0f')}, GPP_DT {num('GPP_DT', '.0f')}, "
            f"RECO_DT {num('RECO_DT', '.0f')} gC m-2, "
            f"gaps {100 * (v.get('GAP_FRACTION') or 0):.0f} %")


# --- the schedule -------------------------------------------------------------------------------------------------


def years_due(now: datetime, utc_offset_h: float, previous_year_days: int) -> list[int]:
    """The current year of the station's clock, and the previous one during its first `previous_year_days` days
    (late deliveries of a station's buffer still complete it)."""
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


class BudgetScheduler(PeriodicJob):
    """Recomputes the budgets of `budget.stations` every `budget.every` (first at start) in a thread of its own;
    a station that fails is logged (once per distinct message), counted and tried again at the next round, or
    after `retry_s` when the store was unavailable."""

    def __init__(self, store: Store, job: BudgetJobConfig, *, clock: Callable[[], datetime] = utc_now,
                 retry_s: float = 60.0) -> None:
        interval = job.interval()
        if interval is None:
            raise ValueError("budget.every is not set: the schedule is off")
        self.store = store
        self.job = job
        super().__init__("budget-scheduler", interval.total_seconds(), retry_s)
        self.clock = clock
        self.rounds = 0
        self.stations: dict[str, StationState] = {}
        self._lock = threading.Lock()

    def station_names(self) -> list[str]:
        if self.job.stations != "all":
            return list(self.job.stations)
        return sorted({info.station for info in self.store.stations()})

    def run_round(self) -> bool:
        """One round over every station and due year; True when the store was unavailable."""
        outage = False
        try:
            names = self.station_names()
        except StoreUnavailable as exc:
            log.warning("budget schedule: store unavailable (%s); next try in %.0f s", exc, self.retry_s)
            return True
        for station in names:
            if self._stop.is_set():
                break
            settings = self.job.station_settings(station)
            for year in years_due(self.clock(), settings.utc_offset_h, self.job.previous_year_days):
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
            budget = run_station_budget(self.store, station, year, self.job, now=now)
            log.info("budget: %s (settings_hash %s)", describe(budget), budget.run.settings_hash)
        except BudgetJobError as exc:
            error = str(exc)
        except StoreUnavailable as exc:
            error, outage = f"store unavailable: {exc}", True
        except StoreError as exc:
            error = f"store error: {exc}"
        except Exception as exc:  # a bug in the chain must not end the schedule
            log.exception("budget: station %s, %s failed", station, year)
            error = f"unexpected error: {exc!r}"
        with self._lock:
            state = self.stations.setdefault(key, StationState())
            state.last_attempt = now.isoformat()
            if error is None:
                state.last_success, state.last_error = now.isoformat(), None
                state.runs_ok += 1
            else:
                if error != state.last_error:
                    log.warning("budget: %s", error)
                state.last_error = error
                state.runs_failed += 1
        return outage

    def counters(self) -> dict[str, Any]:
        with self._lock:
            return {"every_s": self.interval_s, "rounds": self.rounds,
                    "stations": {k: vars(v).copy() for k, v in sorted(self.stations.items())}}


# --- files ------------------------------------------------------------------------------------------------------


def table_csv(run: BudgetRun, table: BudgetTable) -> str:
    """A stored table in the files `sinkwatch flux budget` writes: HH as its OUT file (TIMESTAMP_START/END on the
    station's clock), DD/MM/YY as its --daily/--monthly/--annual files (YY with the u* threshold distribution);
    -9999 missing."""
    import io

    from gateway.flux.budget.files import write_aggregates_csv, write_halfhourly_csv

    out = io.StringIO()
    arrays = {name: np.array([np.nan if v is None else v for v in column], dtype=np.float64)
              for name, column in table.values.items()}
    if table.resolution == "HH":
        stamps = [(label, (datetime.strptime(label, "%Y%m%d%H%M") + HALF_HOUR).strftime("%Y%m%d%H%M"))
                  for label in table.labels]
        write_halfhourly_csv(out, stamps, arrays, list(arrays))
    else:
        extra = dict(run.scalars) if table.resolution == "YY" else None
        write_aggregates_csv(out, Aggregates(list(table.labels), arrays), extra=extra)
    return out.getvalue()
