"""Operations: dashboard query times, the status page's first load, and what health telemetry costs a station.

    .venv/bin/python bench/operations.py [--stations 10] [--days 10] [--repeat 5] [--sqlite]

1. A real influxd (private, loopback) gets `stations` × `days` station-days of the network demo data
   (gateway/demo_network.py: readings of the demo station's 20 series every minute, half-hourly fluxes, a health
   report a minute, the demo's simulated year through the budget, soil and stems jobs, one round of the alert rules).
2. Every panel query and variable query of every dashboard in dashboards/ runs as Grafana would send it (the
   dashboard's own time range, every station selected, an interval of ~100 points), `repeat` times; the median of
   each is reported. Peers in the same run: `SHOW DATABASES`, the server's floor for one round trip, and the
   overview's former share-flagged query (the mean of an indicator over every raw reading in a subquery), the
   baseline of the two counts that replaced it (dashboards/README.md).
3. The central service (uvicorn, loopback) over that store: the status page's first load (the page, its CSS, JS and
   icon, as a browser fetches them; the first request after start and the median of `repeat` more), against
   GET /api/v1/stations on the same store, the API's existing peer. With --sqlite the same on an SQLite store
   holding the same data.
4. Telemetry: CPU time of one health report on a station daemon with the demo station's nine sensors (take the
   report, encode, queue in the outbox: `TelemetryRunner.report_once`), as a share of the 60 s interval, against
   the daemon's status snapshot (`StatusWriter.write`, every second) measured the same way.

No assertion: the figures go to docs/performance.md with the date and machine. Goals (issue 12): every panel query
≤ 300 ms and the first load ≤ 1 s on 100 station-days; telemetry ≤ 1 % of a station's CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.central.config import CentralConfig  # noqa: E402
from gateway.central.service import run_central  # noqa: E402
from gateway.central.store import InfluxStore, SqliteStore, Store  # noqa: E402
from gateway.demo_network import write_network  # noqa: E402
from gateway.driver_api import SensorConfig  # noqa: E402
from gateway.edge.config import BufferConfig, MqttConfig, StationConfig, StationConfigBase  # noqa: E402
from gateway.edge.daemon import StationDaemon  # noqa: E402
from gateway.edge.live import StatusWriter  # noqa: E402
from gateway.model import QualityFlag, Reading, TimeSource, utc_now  # noqa: E402
from gateway.net import free_port  # noqa: E402
from gateway.testing.central import bearer, issue_token  # noqa: E402
from gateway.testing.services import running_influxd  # noqa: E402


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.machine()} {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"load average {load:.1f} at start")


# --- 2. dashboard queries ------------------------------------------------------------------------------------------


def _range(spec: str) -> str:
    value = spec.removeprefix("now-")
    return f"{int(value[:-1]) * 365}d" if value.endswith("y") else value


def _seconds(duration: str) -> int:
    return int(duration[:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[duration[-1]]


def _substitute(query: str, window: str, values: dict[str, list[str]]) -> str:
    query = query.replace("$timeFilter", f"time > now() - {window}")
    query = query.replace("$__interval", f"{max(60, _seconds(window) // 100)}s")
    for name in sorted(values, key=len, reverse=True):
        query = query.replace(f"${name}", "(" + "|".join(values[name]) + ")")
    return query


def _query(client: httpx.Client, query: str) -> tuple[float, list[dict[str, Any]]]:
    started = time.perf_counter()
    response = client.post("/query", data={"db": "sinkwatch", "q": query, "epoch": "ns"})
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    result = response.json()["results"][0]
    if "error" in result:
        raise RuntimeError(f"{query}: {result['error']}")
    return elapsed, result.get("series") or []


#: the overview's share-flagged panel before it became two counts and a Grafana expression: the baseline
FORMER_FLAGGED_SHARE = (
    'SELECT mean("flagged") FROM (SELECT "qc" * (11 - 6 * "qc" + "qc" * "qc") / 6 AS "flagged" FROM "readings" '
    'WHERE "site" =~ /^$site$/ AND "station" =~ /^$station$/ AND $timeFilter) WHERE $timeFilter '
    'GROUP BY time($__interval), "station" fill(null)')


def _median_ms(client: httpx.Client, query: str, repeat: int) -> tuple[float, int]:
    times, rows = [], 0
    for _ in range(repeat):
        elapsed, series = _query(client, query)
        times.append(elapsed)
        rows = sum(len(s.get("values") or []) for s in series)
    return statistics.median(times) * 1000, rows


def dashboard_queries(url: str, repeat: int) -> tuple[list[tuple[str, float, int]], dict[str, float]]:
    """(dashboard: panel/target, median ms, rows) of every query, and the peers' medians in ms."""
    timings: list[tuple[str, float, int]] = []
    peers: dict[str, float] = {}
    with httpx.Client(base_url=url, timeout=120) as client:
        peers["SHOW DATABASES (floor)"] = statistics.median(
            _query(client, "SHOW DATABASES")[0] for _ in range(max(5, repeat))) * 1000
        for path in sorted((ROOT / "dashboards").glob("*.json")):
            dashboard = json.loads(path.read_text(encoding="utf-8"))
            window = _range(dashboard["time"]["from"])
            values: dict[str, list[str]] = {}
            jobs: list[tuple[str, str]] = []
            for variable in dashboard["templating"]["list"]:
                if variable["type"] != "query":
                    continue
                query = _substitute(variable["query"], window, values)
                _elapsed, series = _query(client, query)
                found = [row[1] for s in series for row in s.get("values") or []] or ["none"]
                values[variable["name"]] = found if variable.get("multi", True) else found[:1]  # Grafana: the first
                jobs.append((f"{path.stem}: variable {variable['name']}", query))
            if path.stem == "sinkwatch-overview":
                peers["overview share flagged, former subquery (baseline)"] = _median_ms(
                    client, _substitute(FORMER_FLAGGED_SHARE, window, values), repeat)[0]
            for panel in dashboard["panels"]:
                for target in panel.get("targets", []):
                    if "query" not in target:  # a Grafana expression: computed by Grafana from the others
                        continue
                    jobs.append((f"{path.stem}: {panel['title']} {target['refId']}",
                                 _substitute(target["query"], _range(panel.get("timeFrom", window)), values)))
            for name, query in jobs:
                timings.append((name, *_median_ms(client, query, repeat)))
    return timings, peers


# --- 3. the status page -------------------------------------------------------------------------------------------


def status_page(store: Store, repeat: int, tmp: Path, label: str) -> dict[str, float]:
    """First load of / with its assets, cold and warm, and GET /api/v1/stations, in ms."""
    config = CentralConfig.model_validate({
        "mqtt": {"host": "127.0.0.1", "port": free_port()},  # no broker: the page needs none
        "storage": {"kind": "sqlite", "path": str(tmp / "unused.sqlite")},
        "api": {"host": "127.0.0.1", "port": 0}, "data_dir": str(tmp / f"central-{label}"),
        "alerts": {"every_s": 3600}})
    # the API's data routes and the status page want one, as deployed (the page: an operator's)
    token = issue_token(tmp / f"central-{label}", "operator", "bench")
    stop, ready, bound = threading.Event(), threading.Event(), []

    def on_ready(port: int) -> None:
        bound.append(port)
        ready.set()

    thread = threading.Thread(target=run_central, args=(config,),
                              kwargs={"stop_event": stop, "ready_callback": on_ready, "store": store})
    thread.start()
    try:
        if not ready.wait(60):
            raise RuntimeError("the central service did not start")
        time.sleep(2)  # the alert round at start reads the store too: not part of a page load
        figures: dict[str, float] = {}
        with httpx.Client(base_url=f"http://127.0.0.1:{bound[0]}", timeout=120) as client:

            def load() -> float:
                started = time.perf_counter()
                page = client.get("/", headers=bearer(token))
                page.raise_for_status()
                for asset in ("/static/status.css", "/static/status.js", "/static/favicon.svg"):
                    client.get(asset).raise_for_status()
                return (time.perf_counter() - started) * 1000

            figures["first load, cold"] = load()
            figures["first load, median"] = statistics.median(load() for _ in range(repeat))

            def stations() -> float:
                started = time.perf_counter()
                client.get("/api/v1/stations", headers=bearer(token)).raise_for_status()
                return (time.perf_counter() - started) * 1000

            figures["peer: GET /api/v1/stations, median"] = statistics.median(stations() for _ in range(repeat))
            figures["page bytes"] = float(len(client.get("/", headers=bearer(token)).content))
        return figures
    finally:
        stop.set()
        thread.join(60)


# --- 4. telemetry --------------------------------------------------------------------------------------------------


class _Sensor:
    """A sensor of the demo station's kind that answers at once: the daemon's side of telemetry is what is timed."""

    Config: ClassVar[type[SensorConfig]] = SensorConfig

    def __init__(self, config: SensorConfig, *, station: str) -> None:
        self.config, self.station = config, station

    def open(self) -> None:
        pass

    def poll(self) -> list[Reading]:
        return [Reading(station=self.station, sensor=self.config.name, variable=f"CO2_1_{i}_1", value=400.0 + i,
                        unit="umol mol-1", time=utc_now(), time_source=TimeSource.GATEWAY, clock_synced=True,
                        qc=QualityFlag.GOOD) for i in range(1, 3)]

    def close(self) -> None:
        pass


def telemetry(reports: int, tmp: Path) -> dict[str, float]:
    names = ["soil_co2_10cm", "soil_co2_30cm", "soil_co2_60cm", "soil_swc_10cm", "co2_canopy", "sw_in", "ta_rh",
             "chamber_1", "dendro"]
    base = StationConfigBase(site="demo-forest", station="st01", mqtt=MqttConfig(host="127.0.0.1", port=free_port()),
                             buffer=BufferConfig(path=tmp / "buffer.sqlite"), sensors=[{"name": n} for n in names])
    daemon = StationDaemon(StationConfig(base, [(_Sensor, SensorConfig(name=n, driver="fake", interval_s=1.0))
                                                for n in names], None))
    for sensor in daemon.runners:  # every sensor polled once: their health and latest values are filled in
        daemon._store(sensor.poll())
    assert daemon.telemetry is not None
    runner = daemon.telemetry
    runner.report_once()  # first report: opens the thermal zones' files, warms caches
    started = time.process_time()
    for _ in range(reports):
        runner.report_once()
    per_report = (time.process_time() - started) / reports
    status = StatusWriter(daemon, path=tmp / "status.json")
    status.write()
    started = time.process_time()
    for _ in range(reports):
        status.write()
    per_snapshot = (time.process_time() - started) / reports
    size = len(runner.outbox.reload(runner.outbox.claim(1, set())[0].seq) or b"")
    daemon.telemetry.outbox.close()
    daemon.buffer.close()
    interval = daemon.config.telemetry.interval_s
    return {"CPU ms per report": per_report * 1000, "share of one core at the 60 s interval": per_report / interval,
            "report bytes": float(size), "peer: status snapshot CPU ms": per_snapshot * 1000,
            "peer: status snapshots' share (one a second)": per_snapshot / 1.0}


# --- main -------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stations", type=int, default=10)
    parser.add_argument("--days", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sqlite", action="store_true", help="also time the status page on an SQLite store")
    parser.add_argument("--simulated-days", type=int, default=None,
                        help="days of the simulated year through the budget, soil and stems jobs (default: all)")
    parser.add_argument("--reports", type=int, default=200, help="health reports timed for the telemetry figure")
    args = parser.parse_args(argv)
    print(f"machine: {machine()}")

    def say(message: str) -> None:
        print(f"  writing: {message}", flush=True)

    print(f"data: {args.stations} stations x {args.days:g} days = {args.stations * args.days:g} station-days")
    with tempfile.TemporaryDirectory(prefix="sinkwatch-bench-ops-") as work:
        tmp = Path(work)
        figures = telemetry(args.reports, tmp)
        print("\ntelemetry (one health report, the demo station's nine sensors):")
        for name, value in figures.items():
            print(f"  {name}: {value:.4g}")
        with running_influxd(tmp / "influxd") as influxd:
            store = InfluxStore(influxd.url, database="sinkwatch", timeout_s=120)
            data = write_network(store, stations=args.stations, days=args.days,
                                 simulated_days=args.simulated_days, progress=say)
            print(f"written in {data.seconds:.0f} s: {data.readings} readings, {data.flux_records} flux records, "
                  f"{data.health_reports} health reports, {data.alert_changes} alert changes")
            timings, peers = dashboard_queries(influxd.url, args.repeat)
            print(f"\ndashboard queries ({len(timings)}; median of {args.repeat} each):")
            for name, ms in peers.items():
                print(f"  peer: {name}: {ms:.1f} ms")
            for name, ms, rows in sorted(timings, key=lambda t: -t[1]):
                print(f"  {ms:8.1f} ms  {rows:6d} rows  {name}")
            worst = max(t[1] for t in timings)
            print(f"  slowest {worst:.1f} ms, median {statistics.median(t[1] for t in timings):.1f} ms, "
                  f"{sum(1 for t in timings if t[1] > 300)} above 300 ms")
            page = status_page(store, args.repeat, tmp, "influxdb")
            print("\nstatus page on InfluxDB:")
            for name, value in page.items():
                print(f"  {name}: {value:.1f}")
            store.close()
        if args.sqlite:
            sqlite = SqliteStore(tmp / "central.sqlite")
            data = write_network(sqlite, stations=args.stations, days=args.days,
                                 simulated_days=args.simulated_days, progress=say)
            print(f"SQLite written in {data.seconds:.0f} s")
            page = status_page(sqlite, args.repeat, tmp, "sqlite")
            print("\nstatus page on SQLite:")
            for name, value in page.items():
                print(f"  {name}: {value:.1f}")
            sqlite.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
