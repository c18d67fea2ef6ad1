"""The HTTP API over a station-year in InfluxDB, each endpoint against its store queries' own time in the same run.

Data: bench/station_year.py (2 × 3,153,600 readings at 10 s, 17,520 flux records of 92 variables), loaded once into
a private influxd whose data directory is kept (`--data-dir`), so later runs start at once.

The API runs as `uvicorn` in a child process over an `InfluxStore` (the real server, the real HTTP path); the bench
is its client. For every case:

    ours      GET of the endpoint, whole body read (httpx, streamed and discarded)
    baseline  the InfluxQL statements the endpoint's store calls send, POSTed straight to influxd's /query one after
              the other with the store's own parameters (chunked=true, chunk_size, no gzip, the answer's format:
              MessagePack for a few flux variables), whole bodies read as the store reads them (`http.client` on a
              kept connection: httpx costs ~35 µs of CPU per HTTP chunk, and InfluxDB writes MessagePack in ~2 kB
              chunks)

    before    the same GET to a second server of the same code as it ran before this work's last change: uvicorn
              with h11 and asyncio's loop, hourly reads without the rollup; or, with `--before-code CHECKOUT`,
              the server of that checkout's code (e.g. main before a change) as production runs it

Ours, before and the baseline alternate request by request (load on the shared machine hits all alike). Reported: median
and p95 wall time, the ratio of the medians, the CPU time the server process and influxd spent per request (from
/proc: steadier than wall time when the machine is shared), the client's (this process's) CPU per request, and the
server's peak RSS during the case (VmHWM, reset before each request through /proc/<pid>/clear_refs). Every body is
checked once (record and point counts). No figure is asserted: they go to docs/performance.md and docs/scaling.md.

Before the servers start, the hourly rollup's job (`InfluxStore.roll_up`, gateway/central/store/influx_rollup.py) runs
once over the data (the first run rolls up the year and packs its flux records by day, influx_fluxpack.py: its time
is printed; later runs find nothing to do).

    .venv/bin/python bench/api_scale.py [--data-dir DIR] [--repeat 15] [--heavy-repeat 3] [--no-before]
"""

from __future__ import annotations

import argparse
import csv
import http.client
import io
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import station_year

from gateway.central.store.influx_fluxpack import pack_chunk_days
from gateway.central.store.influx_reads import SELECTED_CHUNK_ROWS, SERIES_CHUNK_ROWS
from gateway.central.store.reads import FLUX_CHUNK_ROWS
from gateway.net import free_port
from gateway.testing.services import running_influxd

DATABASE = "station_year_2025"
YEAR_START, YEAR_END = "2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z"
S_NS = 1_735_689_600_000_000_000
E_NS = 1_767_225_600_000_000_000
JAN_END_NS = S_NS + 31 * 86_400 * 1_000_000_000
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
# how soon influxd moves a shard's cache into TSM files: a station-year is read from files, as in production
DATA_SETTINGS = '  cache-snapshot-write-cold-duration = "5s"\n  compact-full-write-cold-duration = "30s"\n'


@dataclass
class Query:
    text: str
    params: dict[str, str]
    chunked: bool = True
    chunk_size: int | None = None  # the store's own for this statement (None: CHUNK_ROWS)
    accept: str | None = None  # the answer's format the store asks for (None: JSON)


@dataclass
class Case:
    name: str
    path: str
    params: dict[str, str]
    baseline: list[Query]
    check: Callable[[bytes], str]  # -> a short description; raises when the body is wrong
    heavy: bool = False
    # the statements the store sent before a change of layout or query, measured beside the baseline
    earlier: list[Query] = field(default_factory=list)
    earlier_wall: list[float] = field(default_factory=list)
    earlier_db_cpu: list[float] = field(default_factory=list)
    before_wall: list[float] = field(default_factory=list)
    before_server_cpu: list[float] = field(default_factory=list)
    ours_wall: list[float] = field(default_factory=list)
    base_wall: list[float] = field(default_factory=list)
    ours_server_cpu: list[float] = field(default_factory=list)
    ours_db_cpu: list[float] = field(default_factory=list)
    base_db_cpu: list[float] = field(default_factory=list)
    # this process's CPU (the client reading the body) per request: on 2 cores it competes with the server and influxd
    ours_client_cpu: list[float] = field(default_factory=list)
    base_client_cpu: list[float] = field(default_factory=list)
    peak_rss: list[int] = field(default_factory=list)
    size: int = 0
    described: str = ""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def reset_peak_rss(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def wait_for_tsm(url: str, timeout_s: float = 180.0) -> None:
    """Until influxd's caches are empty: every shard of the year is in TSM files."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stats = httpx.get(f"{url}/debug/vars", timeout=30.0).json()
        cached = sum(int(v.get("values", {}).get("memBytes", 0)) for k, v in stats.items()
                     if k.startswith("tsm1_cache") and DATABASE in str(v.get("tags", {}).get("database", "")))
        if cached == 0:
            return
        time.sleep(2.0)
    print("  (influxd still had data in its cache; continuing)")


# --- checks of the bodies ------------------------------------------------------------------------------------------

def check_fluxes_json(count: int, variables: int | None) -> Callable[[bytes], str]:
    def check(body: bytes) -> str:
        records = json.loads(body)["records"]
        if len(records) != count:
            raise AssertionError(f"{len(records)} records, expected {count}")
        widest = max(len(r["values"]) for r in records)
        if variables is not None and widest != variables:
            raise AssertionError(f"{widest} variables in a record, expected {variables}")
        return f"{len(records):,} records, up to {widest} variables"
    return check


def check_csv(rows: int) -> Callable[[bytes], str]:
    def check(body: bytes) -> str:
        table = list(csv.reader(io.StringIO(body.decode())))
        if len(table) - 1 != rows:
            raise AssertionError(f"{len(table) - 1} rows, expected {rows}")
        return f"{rows:,} rows x {len(table[0])} columns"
    return check


def check_points(count: int) -> Callable[[bytes], str]:
    def check(body: bytes) -> str:
        points = json.loads(body)["points"]
        if len(points) != count:
            raise AssertionError(f"{len(points)} points, expected {count}")
        return f"{count:,} points"
    return check


def cases() -> list[Case]:
    station = {"station": "st1"}
    year_fluxes = f"WHERE station = $station AND time > {S_NS} AND time <= {E_NS}"
    sources = Query("SELECT last(qc) FROM readings WHERE station = $station AND variable = $variable AND time >= "
                    "{s} AND time < {e} GROUP BY site, sensor, unit", {"station": "st1", "variable": "CO2"},
                    chunked=False)
    series_params = {"station": "st1", "variable": "CO2", "site": "site1", "sensor": "gmp252"}

    def series_where(end_ns: int) -> str:
        return (f"WHERE station = $station AND variable = $variable AND time >= {S_NS} AND time < {end_ns} "
                "AND site = $site AND sensor = $sensor")

    def sources_of(end_ns: int) -> Query:
        return Query(sources.text.format(s=S_NS, e=end_ns), sources.params, chunked=False)

    columns = [
        Query(f"SELECT count(period_s) FROM fluxes {year_fluxes} GROUP BY engine_version, settings_hash", station,
              chunked=False),
        Query(f"SELECT names_id, period_s FROM fluxes {year_fluxes}", station),
    ]
    selected = ", ".join(f'"{n}"' for n in ("NEE", "H", "LE", "FC"))
    one_set = {"station": "st1", "site": "site1", "engine_version": station_year.ENGINE_VERSION,
               "settings_hash": station_year.SETTINGS_HASH}
    readings_year = station_year.readings_count()
    with_hash = {**station, "settings_hash": station_year.SETTINGS_HASH}
    one_set_columns = [Query(c.text.replace("$station", "$station AND settings_hash = $settings_hash"), with_hash,
                             c.chunked) for c in columns]
    # whole records: the result sets, then one query per set of the variables' fields (upper case first)
    result_sets = Query(f"SELECT last(period_s) FROM fluxes {year_fluxes} GROUP BY site, engine_version, "
                        "settings_hash", station, chunked=False)
    every_variable = Query(f"SELECT /^[A-Z]/, period_s, meta FROM fluxes {year_fluxes} AND site = $site AND "
                           "engine_version = $engine_version AND settings_hash = $settings_hash", one_set,
                           chunk_size=FLUX_CHUNK_ROWS)
    # through the packed flux copy (gateway/central/store/influx_fluxpack.py): the result sets with the copy's
    # state and marks in one request, then the year's 365 day points of the variables asked for
    sets_and_pack = Query(f"{result_sets.text};\n"
                          "SELECT last(through) FROM fluxes_pack WHERE station = $station GROUP BY site;\n"
                          f"SELECT gen FROM fluxes_dirty WHERE station = $station AND time >= {S_NS} "
                          f"AND time < {E_NS} AND gen != 0 GROUP BY site", station, chunked=False)

    def days_of(fields: str, wanted: list[str] | None = None) -> Query:
        return Query(f"SELECT {fields}, bk FROM fluxes_1d WHERE station = $station AND site = $site AND "
                     "engine_version = $engine_version AND settings_hash = $settings_hash AND "
                     f"time > {S_NS} AND time <= {E_NS}", one_set, chunk_size=pack_chunk_days(wanted),
                     accept="application/x-msgpack")
    return [
        Case("fluxes, year, JSON, every variable", "/api/v1/fluxes",
             {"station": "st1", "start": YEAR_START, "end": YEAR_END},
             [sets_and_pack, days_of("/^[A-Z]/")], check_fluxes_json(17_520, 92),
             earlier=[result_sets, every_variable]),
        Case("fluxes, year, CSV, every variable", "/api/v1/fluxes",
             {"station": "st1", "start": YEAR_START, "end": YEAR_END, "format": "csv"},
             [*columns, sets_and_pack, days_of("/^[A-Z]/")], check_csv(17_520),
             earlier=[*columns, result_sets, every_variable]),
        Case("fluxes, year, AmeriFlux BASE", "/api/v1/fluxes",
             {"station": "st1", "start": YEAR_START, "end": YEAR_END, "format": "ameriflux",
              "settings_hash": station_year.SETTINGS_HASH},
             [*one_set_columns,
              Query(sets_and_pack.text.replace("$station AND time >", "$station AND settings_hash = $settings_hash "
                                               "AND time >", 1), with_hash, chunked=False),
              days_of("/^[A-Z]/")],
             check_csv(17_520),
             earlier=[*one_set_columns,
                      Query(result_sets.text.replace("$station", "$station AND settings_hash = $settings_hash"),
                            with_hash, chunked=False),
                      Query(f"SELECT /^[A-Z]/, period_s, meta FROM fluxes {year_fluxes} AND settings_hash = "
                            "$settings_hash AND site = $site AND engine_version = $engine_version", one_set,
                            chunk_size=FLUX_CHUNK_ROWS)]),
        Case("fluxes, year, NEE,H,LE,FC (JSON)", "/api/v1/fluxes",
             {"station": "st1", "start": YEAR_START, "end": YEAR_END, "variables": "NEE,H,LE,FC"},
             [sets_and_pack, days_of(selected, ["NEE", "H", "LE", "FC"])],
             check_fluxes_json(17_520, 4),
             # the statements over the records, as the store asked before the packed copy
             earlier=[Query(f"SELECT last(period_s) FROM fluxes {year_fluxes} GROUP BY site, engine_version, "
                            "settings_hash", station, chunked=False),
                      Query(f"SELECT {selected}, period_s, meta FROM fluxes {year_fluxes} AND site = $site AND "
                            "engine_version = $engine_version AND settings_hash = $settings_hash", one_set,
                            chunk_size=SELECTED_CHUNK_ROWS, accept="application/x-msgpack")]),
        Case("series, year of 10 s CO2 -> hourly means (JSON)", "/api/v1/series",
             {"station": "st1", "variable": "CO2", "start": YEAR_START, "end": YEAR_END, "every": "1h"},
             # through the rollup: its state and marks in one request, then the year's rows of readings_1h
             [sources_of(E_NS),
              Query("SELECT last(through) FROM readings_rollup WHERE site = $site AND station = $station;\n"
                    "SELECT gen FROM readings_dirty WHERE site = $site AND station = $station AND sensor = $sensor "
                    f"AND variable = $variable AND time >= {S_NS} AND time < {E_NS} AND gen != 0", series_params,
                    chunked=False),
              Query('SELECT "mean" AS value, qc FROM readings_1h WHERE site = $site AND station = $station AND '
                    f"sensor = $sensor AND variable = $variable AND time >= {S_NS} AND time < {E_NS}",
                    series_params)],
             check_points(8_760),
             earlier=[sources_of(E_NS), Query("SELECT mean(value) AS value, max(qc) AS qc FROM readings "
                                              f"{series_where(E_NS)} GROUP BY time(3600s) fill(none)",
                                              series_params, chunk_size=SERIES_CHUNK_ROWS)]),
        Case("series, raw January (267,840 points, JSON)", "/api/v1/series",
             {"station": "st1", "variable": "CO2", "start": YEAR_START, "end": "2025-02-01T00:00:00Z"},
             [sources_of(JAN_END_NS), Query(f"SELECT value, qc FROM readings {series_where(JAN_END_NS)}",
                                            series_params, chunk_size=SERIES_CHUNK_ROWS)],
             check_points(31 * 8640)),
        Case("series, raw year (3,153,600 points, JSON)", "/api/v1/series",
             {"station": "st1", "variable": "CO2", "start": YEAR_START, "end": YEAR_END},
             [sources_of(E_NS), Query(f"SELECT value, qc FROM readings {series_where(E_NS)}", series_params,
                                        chunk_size=SERIES_CHUNK_ROWS)],
             check_points(readings_year), heavy=True),
        Case("series, raw year (3,153,600 points, CSV)", "/api/v1/series",
             {"station": "st1", "variable": "CO2", "start": YEAR_START, "end": YEAR_END, "format": "csv"},
             [sources_of(E_NS), Query(f"SELECT value, qc FROM readings {series_where(E_NS)}", series_params,
                                        chunk_size=SERIES_CHUNK_ROWS)],
             check_csv(readings_year), heavy=True),
    ]


# --- running -------------------------------------------------------------------------------------------------------

def fetch(client: httpx.Client, method: str, url: str, **kwargs: Any) -> bytes:
    parts = []
    with client.stream(method, url, **kwargs) as response:
        if response.status_code != 200:
            response.read()
            raise RuntimeError(f"{method} {url}: {response.status_code} {response.text[:300]}")
        for block in response.iter_bytes():
            parts.append(block)
    return b"".join(parts)


_DB_CONNECTIONS: dict[str, http.client.HTTPConnection] = {}


def run_baseline(client: httpx.Client, db_url: str, queries: list[Query]) -> None:
    from gateway.central.store.reads import CHUNK_ROWS

    connection = _DB_CONNECTIONS.get(db_url)
    if connection is None:
        parts = urlsplit(db_url)
        connection = _DB_CONNECTIONS[db_url] = http.client.HTTPConnection(parts.hostname or "", parts.port,
                                                                           timeout=600)
    for q in queries:
        data = {"db": DATABASE, "q": q.text, "epoch": "ns", "params": json.dumps(q.params)}
        if q.chunked:
            data |= {"chunked": "true", "chunk_size": str(q.chunk_size or CHUNK_ROWS)}
        headers = {"Accept-Encoding": "identity", "Content-Type": "application/x-www-form-urlencoded"}
        if q.accept is not None:
            headers["Accept"] = q.accept
        connection.request("POST", "/query", body=urlencode(data), headers=headers)
        response = connection.getresponse()
        while response.read1(1 << 16):
            pass
        if response.status != 200:
            raise RuntimeError(f"influxd answered {response.status} to {q.text[:100]}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def measure(case: Case, client: httpx.Client, api: str, db_url: str, server_pid: int, db_pid: int,
            repeat: int, before: tuple[str, int] | None = None) -> None:
    body = fetch(client, "GET", f"{api}{case.path}", params=case.params)
    case.size = len(body)
    case.described = case.check(body)
    if before is not None:
        before_body = fetch(client, "GET", f"{before[0]}{case.path}", params=case.params)
        if before_body != body:
            at = next((i for i, (x, y) in enumerate(zip(body, before_body, strict=False)) if x != y),
                      min(len(body), len(before_body)))
            raise AssertionError(f"{case.name}: the server before this change answered other bytes ({len(body):,} "
                                 f"and {len(before_body):,}, first different at {at:,}: "
                                 f"{body[max(0, at - 200):at + 100]!r} and {before_body[max(0, at - 200):at + 100]!r})")
        del before_body
    del body
    run_baseline(client, db_url, case.baseline)  # warm the same caches for both
    for _ in range(repeat):
        db0, c0 = cpu_seconds(db_pid), time.process_time()
        t0 = time.perf_counter()
        run_baseline(client, db_url, case.baseline)
        case.base_wall.append(time.perf_counter() - t0)
        case.base_db_cpu.append(cpu_seconds(db_pid) - db0)
        case.base_client_cpu.append(time.process_time() - c0)

        if case.earlier:
            db0 = cpu_seconds(db_pid)
            t0 = time.perf_counter()
            run_baseline(client, db_url, case.earlier)
            case.earlier_wall.append(time.perf_counter() - t0)
            case.earlier_db_cpu.append(cpu_seconds(db_pid) - db0)

        if before is not None:
            b0 = cpu_seconds(before[1])
            t0 = time.perf_counter()
            fetch(client, "GET", f"{before[0]}{case.path}", params=case.params)
            case.before_wall.append(time.perf_counter() - t0)
            case.before_server_cpu.append(cpu_seconds(before[1]) - b0)

        reset_peak_rss(server_pid)
        db0, s0, c0 = cpu_seconds(db_pid), cpu_seconds(server_pid), time.process_time()
        t0 = time.perf_counter()
        fetch(client, "GET", f"{api}{case.path}", params=case.params)
        case.ours_wall.append(time.perf_counter() - t0)
        case.ours_client_cpu.append(time.process_time() - c0)
        case.ours_server_cpu.append(cpu_seconds(server_pid) - s0)
        case.ours_db_cpu.append(cpu_seconds(db_pid) - db0)
        case.peak_rss.append(peak_rss(server_pid))


def report(all_cases: list[Case]) -> None:
    print()
    print("| endpoint | body | ours: median / p95 (s) | store queries straight to influxd: median (s) | ratio | "
          "server CPU per request (s) | influxd CPU: ours / baseline (s) | client CPU: ours / baseline (s) | "
          "server peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for c in all_cases:
        ours, base = statistics.median(c.ours_wall), statistics.median(c.base_wall)
        print(f"| {c.name} ({len(c.ours_wall)} runs) | {c.size / 1e6:.1f} MB, {c.described} | "
              f"{ours:.3f} / {percentile(c.ours_wall, 0.95):.3f} | {base:.3f} | {ours / base:.2f} | "
              f"{statistics.median(c.ours_server_cpu):.2f} | {statistics.median(c.ours_db_cpu):.2f} / "
              f"{statistics.median(c.base_db_cpu):.2f} | {statistics.median(c.ours_client_cpu):.3f} / "
              f"{statistics.median(c.base_client_cpu):.3f} | {max(c.peak_rss) / 1e6:.0f} |")
    if any(c.before_wall for c in all_cases):
        print()
        print("| endpoint | before: median / p95 (s) | after: median / p95 (s) | ratio to the store's statements: "
              "before -> after | server CPU per request: before -> after (s) |")
        print("|---|---|---|---|---|")
        for c in all_cases:
            if not c.before_wall:
                continue
            base = statistics.median(c.base_wall)
            before, ours = statistics.median(c.before_wall), statistics.median(c.ours_wall)
            own = f" ({before / statistics.median(c.earlier_wall):.2f} to its own)" if c.earlier_wall else ""
            print(f"| {c.name} | {before:.3f} / {percentile(c.before_wall, 0.95):.3f} | {ours:.3f} / "
                  f"{percentile(c.ours_wall, 0.95):.3f} | {before / base:.2f}{own} -> {ours / base:.2f} | "
                  f"{statistics.median(c.before_server_cpu):.3f} -> {statistics.median(c.ours_server_cpu):.3f} |")
    for c in all_cases:
        if c.earlier_wall:
            print(f"{c.name}: the store's statements before its last change, straight to influxd in the same run: "
                  f"median {statistics.median(c.earlier_wall):.3f} s, p95 {percentile(c.earlier_wall, 0.95):.3f} s, "
                  f"influxd CPU {sum(c.earlier_db_cpu) / len(c.earlier_db_cpu):.3f} s (mean); now "
                  f"{statistics.median(c.base_wall):.3f} s, {sum(c.base_db_cpu) / len(c.base_db_cpu):.3f} s")


def serve(url: str, database: str, port: int, mode: str) -> None:
    import uvicorn

    from gateway.central.access import AccessControl
    from gateway.central.api import create_app
    from gateway.central.store import InfluxStore

    before = mode == "before"
    store = InfluxStore(url, database=database, timeout_s=120.0, rollup_reads=not before)
    # no tokens: what is measured is the answer's cost (a token check is one hash and one SQLite lookup per request)
    app = create_app(store, access=AccessControl.development())
    if before:  # the HTTP server as it was: pure-Python h11 on asyncio's own loop
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", http="h11", loop="asyncio")
    else:  # as the central service runs it: uvicorn's choice, httptools and uvloop when installed
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def start_server(db_url: str, mode: str, code: Path | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """The API in a child process; with `code`, the sinkwatch of that checkout (its own bench's server, as
    production serves it) instead of this one."""
    port = free_port()
    script, env = Path(__file__), None
    if code is not None:
        script, env = code / "bench" / "api_scale.py", {**os.environ, "PYTHONPATH": str(code)}
    server = subprocess.Popen([sys.executable, str(script), "--serve", db_url, DATABASE, str(port), mode], env=env)
    api = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{api}/api/v1/health", timeout=10).status_code == 200:
                return server, api
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            raise RuntimeError(f"the API server ({mode}) did not start")
        time.sleep(0.2)


def roll_up_once(db_url: str, db_pid: int, repack: bool = False) -> None:
    from gateway.central.store import InfluxStore
    from gateway.central.store.influx_fluxpack import (
        PACK_DIRTY_MEASUREMENT,
        PACK_MEASUREMENT,
        PACK_STATE_MEASUREMENT,
    )

    store = InfluxStore(db_url, database=DATABASE, timeout_s=600.0)
    try:
        if repack:  # the packed flux copy made again (after a change of its layout)
            store._query_many([f"DROP MEASUREMENT {m}" for m in (PACK_MEASUREMENT, PACK_DIRTY_MEASUREMENT,
                                                                   PACK_STATE_MEASUREMENT)])
        db0, c0, t0 = cpu_seconds(db_pid), time.process_time(), time.perf_counter()
        report = store.roll_up()
        print(f"hourly rollup job: {time.perf_counter() - t0:.1f} s, influxd CPU {cpu_seconds(db_pid) - db0:.1f} s, "
              f"job CPU {time.process_time() - c0:.1f} s: {report}")
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "sinkwatch-api-scale",
                        help="influxd's data directory, kept between runs (the station-year loads once)")
    parser.add_argument("--repeat", type=int, default=15, help="requests per case and side")
    parser.add_argument("--heavy-repeat", type=int, default=3, help="the same for the raw years")
    parser.add_argument("--only", help="run the cases whose name contains this text (several: separated by |)")
    parser.add_argument("--no-before", action="store_true",
                        help="skip the second server (h11, asyncio's loop, no rollup) measured beside ours")
    parser.add_argument("--before-code", type=Path, metavar="CHECKOUT",
                        help="the second server runs the code of this checkout (e.g. a worktree of main), "
                             "served as production serves it, instead of h11, asyncio's loop and no rollup")
    parser.add_argument("--repack", action="store_true",
                        help="drop the packed flux copy before the job runs, so that it packs the year again")
    parser.add_argument("--serve", nargs=4, metavar=("URL", "DATABASE", "PORT", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], args.serve[1], int(args.serve[2]), args.serve[3])
        return
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, load "
          f"average {os.getloadavg()[0]:.1f} at the start")
    with running_influxd(args.data_dir / "influxd", data_settings=DATA_SETTINGS) as db:
        assert db._process is not None
        db_pid = db._process.pid
        if station_year.loaded(db.url, DATABASE):
            print(f"station-year already in {args.data_dir}")
            if not station_year.fluxes_current(db.url, DATABASE):
                station_year.rewrite_fluxes(db.url, DATABASE)
                print("  its flux records rewritten in the current layout (the meta field)")
        else:
            year = station_year.load(db.url, DATABASE)
            print(f"loaded {year.readings:,} readings and {year.flux_records:,} flux records in {year.seconds:.0f} s "
                  f"({year.readings / year.seconds:,.0f} readings/s, verified)")
        wait_for_tsm(db.url)
        roll_up_once(db.url, db_pid, args.repack)
        wait_for_tsm(db.url)
        server, api = start_server(db.url, "after")
        try:
            before = (None if args.no_before else start_server(db.url, "after", args.before_code.resolve())
                      if args.before_code is not None else start_server(db.url, "before"))
        except BaseException:
            server.kill()
            raise
        try:
            with httpx.Client(timeout=600.0) as client:
                print(f"server idle RSS {peak_rss(server.pid) / 1e6:.0f} MB")
                wanted = None if args.only is None else args.only.split("|")
                selected = [c for c in cases() if wanted is None or any(w in c.name for w in wanted)]
                for case in selected:
                    measure(case, client, api, db.url, server.pid, db_pid,
                            args.heavy_repeat if case.heavy else args.repeat,
                            None if before is None else (before[1], before[0].pid))
                    print(f"  {case.name}: ours {statistics.median(case.ours_wall):.3f} s, baseline "
                          f"{statistics.median(case.base_wall):.3f} s, peak RSS {max(case.peak_rss) / 1e6:.0f} MB",
                          flush=True)
            report(selected)
            print(f"load average {os.getloadavg()[0]:.1f} at the end")
        finally:
            for process in (server, *(() if before is None else (before[0],))):
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)


if __name__ == "__main__":
    main()
