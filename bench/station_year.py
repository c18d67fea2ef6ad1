"""A station-year in InfluxDB, loaded fast: the data set of the API-at-scale bench (bench/api_scale.py, issue 13).

    readings  two 10-s series of station st1 at site1 for the calendar year 2025, 3,153,600 readings each:
              gmp252/CO2 (umol mol-1) and hmp155/TA (degC); about 0.5 % missing (qc 3, no value), 1 % suspect
    fluxes    17,520 half-hourly flux records of one result set, 92 variables each: the engine's CO2/H2O outputs
              (gateway.flux.ec.result.OUTPUT_VARIABLES without CH4/N2O) and NEE; about 3 % partial with FC, NEE
              and their flags null

Line protocol is written here and POSTed straight to influxd's /write in batches of 50,000 lines from two threads,
in the exact layout `InfluxStore` writes (`gateway/central/store/influx.py`: tags, field types, `names`/`nulls`);
`load` then reads a few records and readings back through `InfluxStore` and compares them with what it generated, so
the layout cannot drift unnoticed. Values come from a seeded generator: every run loads the same year.

    .venv/bin/python bench/station_year.py --url http://127.0.0.1:8086 [--database bench]

(or through bench/api_scale.py, which starts a private influxd and keeps its data directory between runs).
"""

from __future__ import annotations

import argparse
import json
import math
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np

from gateway.central.store import InfluxStore
from gateway.central.store.base import from_ns, to_ns
from gateway.central.store.influx_reads import flux_meta, names_digest
from gateway.contract import FluxRecord, is_integer_variable
from gateway.flux.ec.result import OUTPUT_VARIABLES

SITE, STATION = "site1", "st1"
YEAR = 2025
START = datetime(YEAR, 1, 1, tzinfo=UTC)
END = datetime(YEAR + 1, 1, 1, tzinfo=UTC)
STEP_S = 10
HALF_HOUR_S = 1800
SERIES = (("gmp252", "CO2", "umol mol-1"), ("hmp155", "TA", "degC"))
ENGINE_VERSION = "sinkwatch-ec 0.3.0"
SETTINGS_HASH = "3f2a9c0d1e4b5a6f"
_GASES = ("CH4", "N2O")
FLUX_NAMES: tuple[str, ...] = (
    *[n for n in OUTPUT_VARIABLES if not any(g in n for g in _GASES) and n not in ("N_RECORDS", "N_USED")][:89],
    "N_RECORDS", "N_USED", "NEE",
)
# what a partial period lacks (the gas analyzer's CO2 failed)
PARTIAL_NULLS = ("FC", "FC_SSITC_TEST", "NEE", "FC_RANDUNC", "FC_SCF", "FC_UNCORR", "CO2", "CO2_SIGMA")
BATCH_LINES = 50_000
SEED = 2025


@dataclass(frozen=True)
class StationYear:
    readings: int
    flux_records: int
    seconds: float


def readings_count() -> int:
    return int((END - START).total_seconds()) // STEP_S


def _escape_tag(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _string_field(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def reading_values(series_index: int) -> tuple[np.ndarray, np.ndarray]:
    """(values with NaN for missing, qc) of one series: a seeded daily cycle plus a random walk."""
    count = readings_count()
    rng = np.random.default_rng(SEED + series_index)
    t = np.arange(count) * STEP_S
    day = np.sin(2 * np.pi * t / 86400.0)
    season = np.sin(2 * np.pi * t / (365 * 86400.0))
    walk = np.cumsum(rng.normal(0.0, 0.05, count))
    walk -= np.linspace(0.0, walk[-1], count)  # no drift over the year
    if series_index == 0:
        values = 415.0 + 12.0 * day - 8.0 * season + walk + rng.normal(0.0, 0.4, count)
    else:
        values = 9.0 + 5.0 * day + 10.0 * season + walk + rng.normal(0.0, 0.1, count)
    values = np.round(values, 4)
    qc = np.zeros(count, dtype=np.int64)
    qc[rng.random(count) < 0.01] = 1
    missing = rng.random(count) < 0.005
    qc[missing] = 3
    values[missing] = np.nan
    return values, qc


def reading_lines(series_index: int) -> Iterator[str]:
    """Batches of line protocol of one series, as `InfluxStore` writes a reading."""
    sensor, variable, unit = SERIES[series_index]
    prefix = (f"readings,sensor={_escape_tag(sensor)},site={_escape_tag(SITE)},station={_escape_tag(STATION)},"
              f"time_source=gateway,unit={_escape_tag(unit)},variable={_escape_tag(variable)} clock_synced=true,")
    values, qcs = reading_values(series_index)
    start_ns = to_ns(START)
    step_ns = STEP_S * 1_000_000_000
    count = len(values)
    for first in range(0, count, BATCH_LINES):
        last = min(first + BATCH_LINES, count)
        lines = []
        for i in range(first, last):
            value = values[i]
            stamp = start_ns + i * step_ns
            if math.isnan(value):
                lines.append(f"{prefix}qc=3i {stamp}")
            else:
                lines.append(f"{prefix}qc={qcs[i]}i,value={float(value)!r} {stamp}")
        yield "\n".join(lines)


def flux_record(index: int, rng: np.random.Generator) -> FluxRecord:
    """Record `index` (0 = the period ending 00:30 on 1 January) of the year."""
    end = START + timedelta(seconds=HALF_HOUR_S * (index + 1))
    partial = rng.random() < 0.03
    hour = (end - timedelta(minutes=15)).hour
    daylight = max(0.0, math.sin(math.pi * (hour - 6) / 12.0))
    values: dict[str, int | float | None] = {}
    draws = rng.normal(0.0, 1.0, len(FLUX_NAMES))
    for name, draw in zip(FLUX_NAMES, draws, strict=True):
        if partial and name in PARTIAL_NULLS:
            values[name] = None
        elif name == "N_RECORDS":
            values[name] = 36000
        elif name == "N_USED":
            values[name] = 36000 - int(abs(draw) * 50)
        elif is_integer_variable(name):
            values[name] = int(abs(draw)) % 3
        elif name in ("FC", "NEE"):
            values[name] = round(2.5 - 14.0 * daylight + 1.5 * float(draw), 6)
        elif name == "H":
            values[name] = round(-20.0 + 280.0 * daylight + 15.0 * float(draw), 4)
        elif name == "LE":
            values[name] = round(5.0 + 190.0 * daylight + 10.0 * float(draw), 4)
        else:
            values[name] = float(draw)  # full-precision floats: the worst case for text formats
    return FluxRecord(site=SITE, station=STATION, start=end - timedelta(seconds=HALF_HOUR_S), end=end,
                      status="partial" if partial else "ok",
                      reasons=["co2: signal strength below 80 %"] if partial else [],
                      engine_version=ENGINE_VERSION, settings_hash=SETTINGS_HASH, values=values)


def flux_records() -> Iterator[FluxRecord]:
    rng = np.random.default_rng(SEED + 100)
    for index in range(int((END - START).total_seconds()) // HALF_HOUR_S):
        yield flux_record(index, rng)


def flux_line(record: FluxRecord) -> str:
    """The line `InfluxStore.write_fluxes` writes for `record` (gateway/central/store/influx.py, `flux_to_line`)."""
    tags = ",".join(f"{tag}={_escape_tag(getattr(record, tag))}"
                    for tag in ("engine_version", "settings_hash", "site", "station"))
    period_s = (record.end - record.start).total_seconds()
    reasons = json.dumps(list(record.reasons), ensure_ascii=False)
    names_id = names_digest(",".join(record.values))
    nulls = ",".join(n for n, v in record.values.items() if v is None)
    fields = [
        f"period_s={period_s!r}",
        f"status={_string_field(record.status)}",
        f"reasons={_string_field(reasons)}",
        f"names={_string_field(','.join(record.values))}",
        f"names_id={_string_field(names_id)}",
        f"nulls={_string_field(nulls)}",
        f"meta={_string_field(flux_meta(names_id, period_s, record.status, nulls, reasons))}",
    ]
    for name, value in record.values.items():
        if value is not None:
            fields.append(f"{name}={int(value)}i" if is_integer_variable(name) else f"{name}={float(value)!r}")
    return f"fluxes,{tags} {','.join(fields)} {to_ns(record.end)}"


def flux_lines() -> Iterator[str]:
    batch: list[str] = []
    for record in flux_records():
        batch.append(flux_line(record))
        if len(batch) == 5_000:  # 92 fields a line: about as many bytes as 50,000 readings
            yield "\n".join(batch)
            batch = []
    if batch:
        yield "\n".join(batch)


def _post_all(url: str, database: str, bodies: Iterator[str], threads: int = 2) -> None:
    pending: queue.Queue[str | None] = queue.Queue(maxsize=threads * 2)
    errors: list[str] = []

    def send() -> None:
        with httpx.Client(base_url=url, timeout=300.0) as client:
            while (body := pending.get()) is not None:
                response = client.post("/write", params={"db": database, "precision": "ns"},
                                       content=body.encode("utf-8"))
                if response.status_code != 204:
                    errors.append(f"{response.status_code}: {response.text[:300]}")

    workers = [threading.Thread(target=send, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for body in bodies:
        if errors:
            break
        pending.put(body)
    for _ in workers:
        pending.put(None)
    for worker in workers:
        worker.join()
    if errors:
        raise RuntimeError(f"influxd refused a write: {errors[0]}")


def load(url: str, database: str = "bench") -> StationYear:
    """Write the station-year into `database` of the influxd at `url`, then check a sample through InfluxStore."""
    began = time.perf_counter()
    httpx.post(f"{url}/query", data={"q": f'CREATE DATABASE "{database}"'}, timeout=30.0).raise_for_status()
    _post_all(url, database, flux_lines())
    for index in range(len(SERIES)):
        _post_all(url, database, reading_lines(index))
    seconds = time.perf_counter() - began
    verify(url, database)
    return StationYear(readings=readings_count() * len(SERIES), flux_records=17_520, seconds=seconds)


def verify(url: str, database: str) -> None:
    """A sample read back through the store equals what was generated (raises AssertionError otherwise)."""
    store = InfluxStore(url, database=database, timeout_s=120.0)
    try:
        records = list(flux_records())
        for index in (0, 1, 9_000, len(records) - 1):
            expected = records[index]
            [got] = store.query_fluxes(STATION, expected.end - timedelta(seconds=1), expected.end)
            if got != expected:
                raise AssertionError(f"flux record {index} reads back as {got!r}, generated {expected!r}")
        partial = next(r for r in records if r.status == "partial")
        [got] = store.query_fluxes(STATION, partial.end - timedelta(seconds=1), partial.end)
        if got != partial:
            raise AssertionError(f"partial record reads back as {got!r}, generated {partial!r}")
        for index, (sensor, variable, _unit) in enumerate(SERIES):
            values, qcs = reading_values(index)
            for i in (0, 1, 100_000, len(values) - 1):
                stamp = START + timedelta(seconds=STEP_S * i)
                points = store.query_series(STATION, variable, stamp, stamp + timedelta(seconds=1), sensor=sensor)
                expected_value = None if math.isnan(values[i]) else float(values[i])
                if [(p.time, p.value, p.qc) for p in points] != [(stamp, expected_value, int(qcs[i]))]:
                    raise AssertionError(f"{sensor}/{variable} reading {i} reads back as {points}")
        counted = httpx.post(f"{url}/query", data={"db": database, "q": "SELECT count(qc) FROM readings",
                                                   "epoch": "ns"}, timeout=120.0).json()
        total = counted["results"][0]["series"][0]["values"][0][1]
        if total != readings_count() * len(SERIES):
            raise AssertionError(f"{total} readings stored, {readings_count() * len(SERIES)} generated")
    finally:
        store.close()


def fluxes_current(url: str, database: str = "bench") -> bool:
    """True when the last flux record has the store's current layout (its `meta` field)."""
    response = httpx.post(f"{url}/query", data={
        "db": database, "epoch": "ns", "q": f"SELECT count(meta) FROM fluxes WHERE time = {to_ns(END)}"},
                          timeout=30.0).json()
    results = response.get("results") or []
    return bool(results and results[0].get("series"))


def rewrite_fluxes(url: str, database: str = "bench") -> None:
    """Write the flux records again in the store's current layout (what a recompute would do)."""
    _post_all(url, database, flux_lines())
    verify(url, database)


def loaded(url: str, database: str = "bench") -> bool:
    """True when `database` already holds the whole station-year (the last reading and record are there)."""
    last = to_ns(END) - STEP_S * 1_000_000_000
    response = httpx.post(f"{url}/query", data={
        "db": database, "epoch": "ns",
        "q": f"SELECT count(qc) FROM readings WHERE time >= {last}; SELECT count(names_id) FROM fluxes "
             f"WHERE time = {to_ns(END)}"}, timeout=30.0).json()
    results = response.get("results") or []
    return len(results) == 2 and all(r.get("series") for r in results) and (
        results[0]["series"][0]["values"][0][1] == len(SERIES))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="influxd, e.g. http://127.0.0.1:8086")
    parser.add_argument("--database", default="bench")
    args = parser.parse_args()
    if loaded(args.url, args.database):
        print(f"{args.database} already holds the station-year")
        return
    year = load(args.url, args.database)
    print(f"loaded {year.readings:,} readings and {year.flux_records:,} flux records in {year.seconds:.1f} s "
          f"({year.readings / year.seconds:,.0f} readings/s); first {from_ns(to_ns(START))}, sample verified")


if __name__ == "__main__":
    main()
