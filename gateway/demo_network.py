"""A network of demo stations written into a store: what the Grafana dashboards, the alert rules, the status page
and their benchmarks run on (tests/test_dashboards.py, bench/operations.py).

The live demo (`sinkwatch demo`) runs one station for minutes; dashboards and their query times need several
stations over days. This writes, for `stations` stations named like the demo's (`st01`, `st02`, ...) at the demo's
site, `days` days ending at `end`:

- readings of the demo station's sensors and variables (the same names: a GMP252 soil CO2 profile with probe
  temperatures, the soil probe's TS and SWC, the HMP155's TA, RH, VPD, the SR30's SW_IN, the LI-7500's summaries
  CO2, H2O, CO2SS, DIAG with _SD and _N, dendrometers STEM_RAD_CHG) every `every_s`, smooth diurnal signals with
  seeded noise;
- half-hourly flux records with the engine's names (FC, H, LE, USTAR, FC_SSITC_TEST 0/1/2 more often 2 at night,
  CO2_TLAG, H2O_TLAG, FETCH_MAX/70/90, WS, WD, ZL);
- a health report every `health_every_s` (outboxes, clock, disk, CPU, memory, sensors with their error counts);
- so the alert rules have something to find, station 2 has a stuck probe (its 30 cm CO2 repeats one value) and
  mostly flag-2 flux periods (a tower in the wrong place),
  station 3 an unsynchronised clock, a dirty analyzer window (CO2SS ~55 %) and a readings backlog that grows;
- then, as the demo does, a simulated last year for the first station run through the central budget job and the
  soil and stems jobs (gateway/demo_budget.py, gateway/demo_soilstems.py), and one round of the alert rules at
  `end`, whose state changes are stored (measurement `alerts`).

Deterministic for a seed (the clock of the alert round is `end`), so a benchmark's store is the same every run.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from gateway import __version__
from gateway.central.alerts import AlertEvaluator
from gateway.central.alerts_config import AlertsConfig
from gateway.central.budget import run_station_budget
from gateway.central.budget_config import BudgetJobConfig
from gateway.central.config import CentralConfig
from gateway.central.soilstems import run_station_product
from gateway.central.store import Store, StoredReading
from gateway.contract import ChannelBacklog, FluxRecord, SensorHealth, StationHealth
from gateway.demo import (
    AIR_PROBE,
    ANALYZER,
    DEMO_LONGITUDE,
    DEMO_SITE,
    DEMO_SITE_METADATA,
    DEMO_SOIL_NAMES,
    DEMO_UTC_OFFSET_H,
    DENDRO,
    PROFILE,
    PYRANOMETER,
    SOIL_PROBE,
)
from gateway.demo_soilstems import central_sections
from gateway.demo_soilstems import simulated_year as soil_simulated_year
from gateway.model import QualityFlag, Reading, TimeSource
from gateway.simulation.fluxyear import SyntheticYear, flux_records, met_readings, synthetic_year

WRITE_CHUNK = 5000
ENGINE = "sinkwatch-ec demo-network"
SETTINGS_HASH = "5eed0000c0ffee00"


@dataclass(frozen=True)
class Series:
    sensor: str
    variable: str
    unit: str
    make: Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]  # (day fraction, hours since start, rng)


def _diurnal(day: np.ndarray, mean: float, amplitude: float, peak_h: float = 14.0) -> np.ndarray:
    return mean + amplitude * np.cos(2 * np.pi * (day - peak_h / 24.0))


def _sun(day: np.ndarray) -> np.ndarray:
    return np.maximum(0.0, 850.0 * np.sin(2 * np.pi * (day - 0.25)))


Signal = Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]


def _wave(mean: float, amplitude: float, peak_h: float, noise: float) -> Signal:
    def make(day: np.ndarray, hours: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return _diurnal(day, mean, amplitude, peak_h) + rng.normal(0, noise, day.size)
    return make


def _stem(growth_um_per_h: float) -> Signal:
    """Growth plus the daily shrinking and swelling of a stem (um)."""
    def make(day: np.ndarray, hours: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return growth_um_per_h * hours - 12.0 * np.cos(2 * np.pi * (day - 0.2)) + rng.normal(0, 0.5, day.size)
    return make


def demo_series() -> list[Series]:
    """The demo station's polled and summary series (names as gateway/demo.py configures them)."""
    series: list[Series] = []
    for (name, _address, depth, q), base in zip(PROFILE, (1200.0, 2600.0, 4300.0), strict=True):
        series.append(Series(name, f"CO2{q}", "umol mol-1", _wave(base, 150.0 / (1 + 4 * depth), 17.0 + 8 * depth,
                                                                  8.0)))
        series.append(Series(name, f"T_PROBE{q}", "degC", _wave(9.0, 2.5 / (1 + 5 * depth), 16.0 + 10 * depth,
                                                                 0.05)))
    soil, _address, q = SOIL_PROBE
    series += [
        Series(soil, f"TS{q}", "degC", lambda d, h, r: _diurnal(d, 9.5, 1.8, 17.0) + r.normal(0, 0.03, d.size)),
        Series(soil, f"SWC{q}", "%", lambda d, h, r: 28.0 - 0.02 * h + r.normal(0, 0.05, d.size)),
    ]
    air, _address, q = AIR_PROBE
    series += [
        Series(air, f"TA{q}", "degC", lambda d, h, r: _diurnal(d, 11.0, 5.0) + r.normal(0, 0.1, d.size)),
        Series(air, f"RH{q}", "%", lambda d, h, r: np.clip(_diurnal(d, 75.0, -18.0) + r.normal(0, 0.5, d.size), 5,
                                                         100)),
        Series(air, f"VPD{q}", "hPa", lambda d, h, r: np.maximum(0, _diurnal(d, 4.0, 3.5) + r.normal(0, 0.1,
                                                                                                      d.size))),
    ]
    sw, _address, q = PYRANOMETER
    series.append(Series(sw, f"SW_IN{q}", "W m-2", lambda d, h, r: _sun(d) * (1 + r.normal(0, 0.03, d.size))))
    series += [
        Series(ANALYZER, "CO2", "mmol m-3", lambda d, h, r: 16.6 + r.normal(0, 0.05, d.size)),
        Series(ANALYZER, "H2O", "mmol m-3", lambda d, h, r: _diurnal(d, 520.0, 60.0) + r.normal(0, 3, d.size)),
        Series(ANALYZER, "CO2SS", "%", lambda d, h, r: 96.0 + 1.5 * np.sin(h / 7.0) + r.normal(0, 0.3, d.size)),
        Series(ANALYZER, "CO2SS_N", "1", lambda d, h, r: np.full(d.size, 200.0)),
        Series(ANALYZER, "DIAG", "1", lambda d, h, r: np.full(d.size, 249.0)),
    ]
    dendro, qualifiers = DENDRO
    for k, q in enumerate(qualifiers):
        series.append(Series(dendro, f"STEM_RAD_CHG{q}", "um", _stem(2.0 * (k + 1))))
    return series


def _readings(series: Series, station: str, times: np.ndarray, values: np.ndarray) -> Iterator[Reading]:
    for t, v in zip(times, values, strict=True):
        yield Reading(station=station, sensor=series.sensor, variable=series.variable, value=float(v),
                      unit=series.unit, time=datetime.fromtimestamp(float(t), UTC), time_source=TimeSource.GATEWAY,
                      clock_synced=True, qc=QualityFlag.GOOD)


def _flux_records(station: str, start: float, end: float, rng: np.random.Generator,
                  poor: bool = False) -> list[FluxRecord]:
    records = []
    first = math.ceil(start / 1800.0) * 1800.0
    for t_end in np.arange(first, end + 1e-6, 1800.0):
        day = (t_end / 86400.0 + DEMO_UTC_OFFSET_H / 24.0) % 1.0
        sun = float(_sun(np.array([day]))[0])
        night = sun < 5.0
        ustar = max(0.05, 0.35 + 0.25 * sun / 850.0 + rng.normal(0, 0.06))
        odds = ([0.05, 0.1, 0.85] if night else [0.2, 0.2, 0.6]) if poor else (
            [0.35, 0.30, 0.35] if night else [0.75, 0.2, 0.05])
        flag = int(rng.choice([0, 1, 2], p=odds))
        fc = (3.5 if night else 3.5 - 22.0 * sun / (sun + 300.0)) + rng.normal(0, 1.2)
        end_dt = datetime.fromtimestamp(float(t_end), UTC)
        records.append(FluxRecord(
            site=DEMO_SITE, station=station, start=end_dt - timedelta(minutes=30), end=end_dt, status="ok",
            engine_version=ENGINE, settings_hash=SETTINGS_HASH, values={
                "FC": fc, "FC_SSITC_TEST": flag, "H": 0.45 * sun - 20 + rng.normal(0, 10),
                "H_SSITC_TEST": min(flag, 1), "LE": 0.3 * sun + 10 + rng.normal(0, 8), "LE_SSITC_TEST": flag,
                "USTAR": ustar, "CO2_TLAG": 0.15 + 0.05 * int(rng.integers(0, 3)),
                "H2O_TLAG": 0.2 + 0.1 * int(rng.integers(0, 3)),
                "FETCH_MAX": 60 + 120 * (0.5 - min(ustar, 0.5)) + rng.normal(0, 5),
                "FETCH_70": 220 + rng.normal(0, 15), "FETCH_90": 480 + rng.normal(0, 30),
                "WS": 1.0 + 3 * ustar + abs(rng.normal(0, 0.3)), "WD": float(rng.uniform(180, 280)),
                "ZL": (0.2 if night else -0.4) + rng.normal(0, 0.05)}))
    return records


def _health(station: str, index: int, t: float, start: float, series: list[Series], problems: set[str],
            rng: np.random.Generator, k: int) -> StationHealth:
    elapsed = t - start
    growing = "backlog" in problems
    sensors: dict[str, list[str]] = {}
    for s in series:
        sensors.setdefault(s.sensor, []).append(s.variable)
    health_sensors = [
        SensorHealth(name=name, driver="li7500" if name == ANALYZER else name.split("_")[0][:64],
                     kind="stream" if name == ANALYZER else "polled", state="connected" if name == ANALYZER
                     else "available", available=True, availability=1.0 if i % 4 else 0.98,
                     errors={"timeout": k // 30 + i} if i % 3 == 0 else {}, variables=sorted(variables))
        for i, (name, variables) in enumerate(sorted(sensors.items()))
    ]
    return StationHealth(
        site=DEMO_SITE, station=station, time=datetime.fromtimestamp(t, UTC), interval_s=60.0,
        daemon_version=__version__[:64], uptime_s=elapsed, host_uptime_s=elapsed + 3600.0 * (index + 1),
        clock_synced="clock" not in problems,
        clock_offset_s=float(rng.normal(0, 2e-4)) if "clock" not in problems else 0.0,
        clock_max_error_s=0.01 if "clock" not in problems else 16.0,
        disk_free_bytes=int(max(2e9, 20e9 - 1e4 * elapsed)), disk_total_bytes=32_000_000_000,
        cpu_temperature_c=float(45 + 6 * math.sin(t / 86400 * 2 * math.pi) + rng.normal(0, 0.5)),
        load_1m=float(abs(rng.normal(0.3, 0.1))), load_5m=0.25, load_15m=0.2, cpu_count=4,
        daemon_cpu_share=float(abs(rng.normal(0.01, 0.002))), memory_total_bytes=4_000_000_000,
        memory_available_bytes=int(3.1e9 + rng.normal(0, 2e7)), daemon_rss_bytes=int(9e7 + 1e3 * k),
        supply_voltage_v=float(12.6 - 0.4 * math.sin(t / 86400 * 2 * math.pi) + rng.normal(0, 0.02)),
        buffers=[
            ChannelBacklog(channel="readings", unit="readings",
                           pending=int(40 * k) if growing else int(rng.integers(0, 30)),
                           oldest_age_s=60.0 * k if growing else 1.0),
            ChannelBacklog(channel="fluxes", unit="records", pending=0),
            ChannelBacklog(channel="health", unit="reports", pending=1, oldest_age_s=0.0),
        ],
        sensors=health_sensors)


@dataclass
class NetworkData:
    """What `write_network` wrote."""

    stations: list[str]
    start: datetime
    end: datetime
    readings: int = 0
    flux_records: int = 0
    health_reports: int = 0
    alert_changes: int = 0
    budget_year: int | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def station_days(self) -> float:
        return len(self.stations) * (self.end - self.start).total_seconds() / 86400.0


def station_names(n: int) -> list[str]:
    return [f"st{i + 1:02d}" for i in range(n)]


def write_network(store: Store, *, stations: int = 3, days: float = 1.0, end: datetime | None = None,
                  every_s: float = 60.0, health_every_s: float = 60.0, seed: int = 0, budget: bool = True,
                  soilstems: bool = True, alerts: bool = True, simulated_days: int | None = None,
                  progress: Callable[[str], None] | None = None) -> NetworkData:
    """Write the network (module doc) into `store`; returns what it wrote. `simulated_days`: keep only the first
    days of the simulated year for the budget, soil and stems jobs (a year in progress, as the central service
    computes it every day), which makes them several times faster; None keeps the whole year."""
    started = time.monotonic()
    say: Callable[[str], None] = progress or (lambda _message: None)
    end_dt = (end or datetime.now(UTC)).replace(microsecond=0)
    end_s = end_dt.timestamp()
    start_s = end_s - days * 86400.0
    names = station_names(stations)
    data = NetworkData(names, datetime.fromtimestamp(start_s, UTC), end_dt)
    series = demo_series()
    for index, station in enumerate(names):
        rng = np.random.default_rng(seed * 1000 + index)
        problems = {1: {"stuck", "flags"}, 2: {"clock", "dirty", "backlog"}}.get(index, set())
        times = np.arange(math.ceil(start_s / every_s) * every_s, end_s, every_s)
        day = (times / 86400.0 + DEMO_UTC_OFFSET_H / 24.0) % 1.0
        hours = (times - start_s) / 3600.0
        batch: list[StoredReading] = []
        for s in series:
            values = s.make(day, hours, rng)
            if "stuck" in problems and s.variable == f"CO2{PROFILE[1][3]}":
                values = np.full(times.size, 2612.0)
            if "dirty" in problems and s.variable == "CO2SS":
                values = values - 41.0
            for reading in _readings(s, station, times, values):
                batch.append(StoredReading(DEMO_SITE, reading))
                if len(batch) >= WRITE_CHUNK:
                    data.readings += store.write(batch).written
                    batch = []
        if batch:
            data.readings += store.write(batch).written
        records = _flux_records(station, start_s, end_s, rng, poor="flags" in problems)
        for i in range(0, len(records), WRITE_CHUNK):
            store.write_fluxes(records[i:i + WRITE_CHUNK])
        data.flux_records += len(records)
        reports = [_health(station, index, float(t), start_s, series, problems, rng, k)
                   for k, t in enumerate(np.arange(math.ceil(start_s / health_every_s) * health_every_s, end_s,
                                                   health_every_s))]
        for i in range(0, len(reports), 500):
            store.write_health(reports[i:i + 500])
        data.health_reports += len(reports)
        say(f"{station}: {times.size * len(series)} readings, {len(records)} flux periods, {len(reports)} "
            "health reports")
    if budget:
        data.budget_year = _budget_year(store, names[0], end_dt, seed, simulated_days)
        say(f"{names[0]}: carbon budget of the simulated year {data.budget_year}")
    if soilstems:
        _soilstems_year(store, names[0], end_dt, seed, simulated_days)
        say(f"{names[0]}: soil and stems of the simulated year")
    if alerts:
        evaluator = AlertEvaluator(store, AlertsConfig(), clock=lambda: end_dt)
        data.alert_changes = len(evaluator.evaluate())
        say(f"alert rules: {data.alert_changes} state changes stored")
    data.seconds = time.monotonic() - started
    return data


def _limit(days: int | None, year: int) -> datetime | None:
    return datetime(year, 1, 1, tzinfo=UTC) + timedelta(days=days) if days is not None else None


def _within(days: int | None, year: int) -> Callable[[datetime], bool]:
    limit = _limit(days, year)
    return lambda t: limit is None or t < limit


def _until(simulated: SyntheticYear, limit: datetime | None) -> SyntheticYear:
    """The half hours of `simulated` that end by `limit` (UTC), every array alike: what the records and readings
    kept below come from, so that only those are made (the rest of the year's objects were made to be dropped)."""
    if limit is None:
        return simulated
    ends = simulated.time_start_s + 1800.0 - simulated.utc_offset_h * 3600.0  # as fluxyear's record ends
    part = slice(0, int(np.searchsorted(ends, limit.timestamp(), side="right")))
    return dataclasses.replace(simulated, **{f.name: getattr(simulated, f.name)[part]
                                             for f in dataclasses.fields(simulated)
                                             if isinstance(getattr(simulated, f.name), np.ndarray)})


def _budget_year(store: Store, station: str, end: datetime, seed: int, days: int | None = None) -> int:
    """As gateway/demo_budget.py: a simulated last year of half-hourly fluxes and met readings, the real job."""
    year = end.year - 1
    keep = _within(days, year)
    simulated = _until(synthetic_year(year, seed=seed, lat=DEMO_SITE_METADATA["latitude"], lon=DEMO_LONGITUDE,
                                      utc_offset_h=DEMO_UTC_OFFSET_H), _limit(days, year))
    store.write_fluxes([r for r in flux_records(simulated, site=DEMO_SITE, station=station) if keep(r.end)])
    readings = [r for r in met_readings(simulated, station=station, radiation_sensor=PYRANOMETER[0],
                                        air_sensor=AIR_PROBE[0], suffix=PYRANOMETER[2]) if keep(r.time)]
    for i in range(0, len(readings), WRITE_CHUNK):
        store.write([StoredReading(DEMO_SITE, r) for r in readings[i:i + WRITE_CHUNK]])
    job = BudgetJobConfig.model_validate({"per_station": {station: {
        "latitude": DEMO_SITE_METADATA["latitude"], "longitude": DEMO_LONGITUDE, "utc_offset_h": DEMO_UTC_OFFSET_H,
        "site": DEMO_SITE}}})
    run_station_budget(store, station, year, job)
    return year


def _soilstems_year(store: Store, station: str, end: datetime, seed: int, days: int | None = None) -> None:
    """As gateway/demo_soilstems.py: a simulated last year of the soil profile, chamber and dendrometers, the jobs."""
    year = end.year - 1
    keep = _within(days, year)
    # simulated up to the limit (soilyear's year in progress), not a whole year's readings made to be dropped
    simulated = soil_simulated_year(DEMO_SOIL_NAMES, station, year, DEMO_UTC_OFFSET_H, seed, until=_limit(days, year))
    readings = [r for r in simulated.readings if keep(r.time)]
    for i in range(0, len(readings), WRITE_CHUNK):
        store.write([StoredReading(DEMO_SITE, r) for r in readings[i:i + WRITE_CHUNK]])
    central = CentralConfig.model_validate({"storage": {"kind": "sqlite", "path": "unused.sqlite"},
                                            **central_sections(DEMO_SOIL_NAMES, station, DEMO_UTC_OFFSET_H)})
    for product in ("soil", "stems"):
        run_station_product(product, store, station, year, central.soil, central.stems)


__all__ = ["NetworkData", "Series", "demo_series", "station_names", "write_network"]
