"""A thousand-station catch-up's messages through one ingest worker's code in this process, without the broker and
the simulated stations: where the time of the central side goes, against direct writes of the same readings.

`bench/network_load.py` runs the whole network on this machine's two cores: the stations' simulator, Mosquitto, the
worker and influxd share them, and its ratio moves with all four. Here the same items (the same stations' rates,
signed and chained the same way: `network_load.Station`) are handed to an `Ingestor` of a shared subscription with
its chain marks and the host's write guard, in groups of `--group` messages as its worker takes them from a full
queue, and written to a real influxd:

    ours         the worker's two stages as `Ingestor._work` runs them: a group checked and placed while the group
                 before it is written by the store thread; wall time, the process's CPU, influxd's CPU, and the
                 store's requests by kind (count, bytes, wall: what the store thread waited for)
    baseline     the same readings as line protocol POSTed to /write in requests of 5,000 lines from one client
                 (network_load's baseline), into a fresh database of the same influxd
    replayed     every /write request the store made (readings, ledger items, health reports, chain events: the
                 same lines in the same requests), POSTed again from one client into another fresh database:
                 what the database takes of what the ingest writes, without the ingest

    .venv/bin/python bench/ingest_catchup.py [--stations 200] [--backlog-min 5] [--group 100]

No assertion: docs/performance.md keeps the figures.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import shutil
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
import network_load as load

from gateway.central.chainmarks import CHAIN_MARKS_FILE, ChainMarks
from gateway.central.config import MqttSettings
from gateway.central.ingest import Ingestor, _Delivery
from gateway.central.service import tune_collector
from gateway.central.store import (
    InfluxStore,
    StoredReading,
    keepalive,
)
from gateway.central.store.lineprotocol import ReadingLines
from gateway.central.store.writeguard import GUARD_FILE
from gateway.testing.services import running_influxd


def catch_up(count: int, backlog_min: float, work: Path) -> tuple[list[Any], list[tuple[str, bytes, str]], int, Path,
                                                                   list[float]]:
    """The stations' outage backlog as network_load makes it, and its messages in an order a shared queue could
    hold them: every chain in order, the stations interleaved."""
    keys, registry = load.make_keys(count, work / "keys")
    stations = [load.Station(i + 1, keys[i], random.Random(f"catchup-{i}")) for i in range(count)]
    end = math.ceil(time.time() / load.POLL_S) * load.POLL_S
    times = [end - backlog_min * 60 + k * load.POLL_S for k in range(int(backlog_min * 60 / load.POLL_S))]
    for station in stations:
        for t in times:
            station.measure(t + station.phase, live=False)
            if int((t + station.phase) // load.POLL_S) % 6 == station.health_slot:
                station.report(t + station.phase, live=False)
        station.drain(live=False)
    messages = load.interleaved(stations)
    return stations, messages, sum(s.sent_readings for s in stations), registry, times


def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Requests:
    """The store's POSTs by path, thread and measurements written: count, bytes, lines, wall."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str, str], list[float]] = {}
        self.writes: list[tuple[str, bytes]] = []  # every /write, in order
        self._post = keepalive.KeepAliveHttp.post

    def __enter__(self) -> Requests:
        original = self._post

        def post(http: keepalive.KeepAliveHttp, path: str, body: bytes, content_type: str) -> Any:
            started = time.perf_counter()
            try:
                return original(http, path, body, content_type)
            finally:
                wall = time.perf_counter() - started
                lines = body.split(b"\n") if path.startswith("/write") else []
                if lines:
                    self.writes.append((path, body))
                kinds = ",".join(sorted({line.split(b",", 1)[0].decode() for line in lines})) or "-"
                thread = "store" if threading.current_thread().name.startswith("sinkwatch-store") else "worker"
                entry = self.seen.setdefault((path.split("?")[0], thread, kinds), [0, 0, 0, 0.0])
                entry[0] += 1
                entry[1] += len(body)
                entry[2] += len(lines)
                entry[3] += wall

        keepalive.KeepAliveHttp.post = post  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *_: object) -> None:
        keepalive.KeepAliveHttp.post = self._post  # type: ignore[method-assign]


def ours(messages: list[tuple[str, bytes, str]], data_dir: Path, url: str, group_size: int,
         influxd_pid: int, database: str = "ours") -> dict[str, float]:
    store = InfluxStore(url, database=database, write_guard=data_dir / GUARD_FILE)
    ingestor = Ingestor(MqttSettings(host="127.0.0.1", port=1), store, data_dir, role="data", shared_group="bench",
                        signatures="required")
    ingestor.chain.marks = ChainMarks(data_dir / CHAIN_MARKS_FILE)
    store_cpu = [0.0]
    write_group = ingestor._write_group

    def timed(group: Any) -> Any:
        started = time.thread_time()
        try:
            return write_group(group)
        finally:
            store_cpu[0] += time.thread_time() - started

    ingestor._write_group = timed  # type: ignore[method-assign]
    influxd0, cpu0, wall0 = process_cpu_s(influxd_pid), time.process_time(), time.perf_counter()
    writing = None
    for start in range(0, len(messages), group_size):
        deliveries = [_Delivery(0, topic, payload, 0, 1, envelope)
                      for topic, payload, envelope in messages[start:start + group_size]]
        done, writing = ingestor._advance(deliveries, writing)  # as `Ingestor._work` does with a full queue
        assert done
    assert writing is None or ingestor._complete(writing)
    result = {"wall": time.perf_counter() - wall0, "cpu": time.process_time() - cpu0,
              "influxd": process_cpu_s(influxd_pid) - influxd0, "store_cpu": store_cpu[0]}
    counters = ingestor.counters()
    problems = {k: counters[k] for k in ("malformed", "untrusted", "readings_set_aside") if counters[k]}
    if problems or counters["dead_lettered"]:
        raise SystemExit(f"the worker refused items: {problems}, dead-lettered {counters['dead_lettered']}")
    ingestor.chain.marks.close()
    store.close()
    return result


def direct(stations: list[Any], times: list[float], url: str, influxd_pid: int) -> dict[str, float]:
    lines = ReadingLines()
    body: list[str] = []
    bodies = []
    for station in stations:
        rng = random.Random(0)
        for t in times:
            for reading in load.tick_readings(station.name, t + station.phase, rng):
                body.append(lines.line(StoredReading(load.SITE, reading)))
                if len(body) == 5000:
                    bodies.append("\n".join(body).encode())
                    body = []
    if body:
        bodies.append("\n".join(body).encode())
    with httpx.Client(base_url=url, timeout=120) as http:
        http.post("/query", params={"q": "CREATE DATABASE direct"}).raise_for_status()
        influxd0, wall0 = process_cpu_s(influxd_pid), time.perf_counter()
        for part in bodies:
            http.post("/write", params={"db": "direct", "precision": "ns"}, content=part).raise_for_status()
        return {"wall": time.perf_counter() - wall0, "influxd": process_cpu_s(influxd_pid) - influxd0,
                "bytes": sum(len(b) for b in bodies), "requests": len(bodies)}


def replayed(writes: list[tuple[str, bytes]], url: str, influxd_pid: int, source: str = "ours",
             database: str = "replayed") -> dict[str, float]:
    """The recorded /write requests of database `source` POSTed again, in order, from one client into `database`."""
    paths = [path.replace(f"db={source}&", f"db={database}&") for path, _ in writes]
    if any(f"db={database}&" not in path for path in paths):
        raise SystemExit(f"a recorded write is not of database {source}: {writes[0][0]}")
    with httpx.Client(base_url=url, timeout=120) as http:
        http.post("/query", params={"q": f"CREATE DATABASE {database}"}).raise_for_status()
        influxd0, wall0 = process_cpu_s(influxd_pid), time.perf_counter()
        for path, (_, body) in zip(paths, writes, strict=True):
            http.post(path, content=body).raise_for_status()
        return {"wall": time.perf_counter() - wall0, "influxd": process_cpu_s(influxd_pid) - influxd0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stations", type=int, default=200)
    parser.add_argument("--backlog-min", type=float, default=5.0)
    parser.add_argument("--group", type=int, default=100, help="messages a group (the worker's max_group)")
    args = parser.parse_args()
    print(f"ingest catch-up in-process, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="sinkwatch-catchup-") as tmp:
        work = Path(tmp)
        stations, messages, readings, registry, times = catch_up(args.stations, args.backlog_min, work)
        print(f"  {args.stations} stations, {args.backlog_min:g} min each: {len(messages):,} messages, "
              f"{readings:,} readings; groups of {args.group}")
        data_dir = work / "central"
        (data_dir / "trust").mkdir(parents=True)
        shutil.copy(registry, data_dir / "trust" / registry.name)
        tune_collector()
        with running_influxd(work / "influxd") as influx:
            assert influx.pid is not None
            with Requests() as requests:
                mine = ours(messages, data_dir, influx.url, args.group, influx.pid)
            baseline = direct(stations, times, influx.url, influx.pid)
            again = replayed(requests.writes, influx.url, influx.pid)
        rate, base_rate = readings / mine["wall"], readings / baseline["wall"]
        print(f"  ours: {mine['wall']:.2f} s, {rate:,.0f} readings/s; CPU {mine['cpu']:.2f} s "
              f"({1000 * mine['cpu'] / len(messages):.2f} ms a message, {1e6 * mine['cpu'] / readings:.1f} ms per "
              f"1000 readings; the store thread {mine['store_cpu']:.2f} s of it); influxd CPU {mine['influxd']:.2f} s")
        print("  the store's requests (path, thread, measurements: count, kB, lines, wall):")
        for (path, thread, kinds), (n, size, lines, wall) in sorted(requests.seen.items(), key=lambda kv: -kv[1][3]):
            print(f"    {path:<7} {thread:<7} {kinds[:48]:<48} {int(n):>5} {size / 1e3:>9,.0f} {int(lines):>8,} "
                  f"{wall:>6.2f} s")
        print(f"  baseline, the readings POSTed straight to /write (5,000 lines a request, {baseline['requests']} "
              f"requests, {baseline['bytes'] / 1e3:,.0f} kB): {baseline['wall']:.2f} s, {base_rate:,.0f} readings/s; "
              f"influxd CPU {baseline['influxd']:.2f} s")
        print(f"  replayed, the store's {len(requests.writes)} /write requests POSTed again from one client: "
              f"{again['wall']:.2f} s, {readings / again['wall']:,.0f} readings/s; "
              f"influxd CPU {again['influxd']:.2f} s")
        print(f"  ours = {rate / base_rate:.2f} x the baseline; influxd's CPU for ours = "
              f"{mine['influxd'] / baseline['influxd']:.2f} x its CPU for the baseline; ours = "
              f"{again['wall'] / mine['wall']:.2f} x the same writes replayed")


if __name__ == "__main__":
    main()
