"""`sinkwatch demo`: the whole chain on one machine, with nothing but Python installed.

    GMP252 simulator --(Modbus RTU over a pseudo-terminal pair)--> edge daemon --(disk buffer, MQTT QoS 1)-->
    broker (embedded amqtt, or --broker) --> central ingestor --> store (embedded SQLite, or --influx-url)
    --> HTTP API (FastAPI on a free port)

Every piece is the production code path; only the broker and the store are embedded defaults. The closing
summary counts readings through the public HTTP API, so a stored reading is one a researcher could fetch.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from gateway.edge.config import parse_station_config
from gateway.edge.daemon import StationDaemon
from gateway.model import utc_now

log = logging.getLogger("sinkwatch.demo")

DEMO_SITE = "demo-forest"
DEMO_STATION = "st01"
DEMO_SENSOR = "soil_co2_30cm"
DEMO_VARIABLES = ("CO2_1_1_1", "T_PROBE_1_1_1")


@dataclass
class DemoSummary:
    seconds: float
    readings_read: int
    readings_acknowledged: int
    readings_stored: int
    sensor_errors: int
    api_url: str

    def line(self) -> str:
        return (f"demo finished after {self.seconds:.0f} s: {self.readings_read} readings read, "
                f"{self.readings_acknowledged} acknowledged by the broker, {self.readings_stored} readings stored "
                f"and served by {self.api_url}, {self.sensor_errors} sensor errors")


def parse_broker_url(url: str) -> tuple[str, int]:
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise ValueError(f"--broker {url!r}: expected mqtt://HOST[:PORT]")
    return parts.hostname, parts.port or 1883


@contextlib.contextmanager
def _broker(url: str | None) -> Iterator[tuple[str, int]]:
    if url:
        yield parse_broker_url(url)
        return
    from gateway.broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        yield broker.host, broker.port


@contextlib.contextmanager
def _central(broker: tuple[str, int], data_dir: Path, influx_url: str | None) -> Iterator[str]:
    from gateway.central.config import CentralConfig
    from gateway.central.service import run_central

    storage: dict[str, object] = (
        {"kind": "influxdb", "url": influx_url, "database": "sinkwatch_demo"} if influx_url
        else {"kind": "sqlite", "path": str(data_dir / "central.sqlite")}
    )
    config = CentralConfig.model_validate({
        "mqtt": {"host": broker[0], "port": broker[1], "client_id": f"sinkwatch-central-demo-{int(time.time())}"},
        "storage": storage,
        "api": {"host": "127.0.0.1", "port": 0},
        "data_dir": str(data_dir / "central"),
    })
    stop = threading.Event()
    bound: list[int] = []
    ready = threading.Event()
    failure: list[BaseException] = []

    def on_ready(port: int) -> None:
        bound.append(port)
        ready.set()

    def serve() -> None:
        try:
            run_central(config, stop_event=stop, ready_callback=on_ready)
        except BaseException as exc:
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=serve, name="central", daemon=True)
    thread.start()
    if not ready.wait(30) or failure:
        stop.set()
        raise RuntimeError(f"central service did not start: {failure[0] if failure else 'timed out'}")
    try:
        yield f"http://127.0.0.1:{bound[0]}"
    finally:
        stop.set()
        thread.join(timeout=15)


@contextlib.contextmanager
def _simulated_probe(seed: int) -> Iterator[str]:
    from drivers.gmp252.simulator import GMP252Simulator
    from gateway.testing.serial_pty import python_pty_pair

    with python_pty_pair() as (simulator_end, driver_end), GMP252Simulator(simulator_end, seed=seed):
        yield driver_end


def count_stored(api_url: str, start_margin: timedelta = timedelta(hours=1)) -> int:
    now = utc_now()
    total = 0
    with httpx.Client(base_url=api_url, timeout=10) as client:
        for variable in DEMO_VARIABLES:
            response = client.get("/api/v1/series", params={
                "station": DEMO_STATION, "variable": variable,
                "start": (now - start_margin).isoformat(), "end": (now + start_margin).isoformat(),
            })
            response.raise_for_status()
            total += len(response.json()["points"])
    return total


def run_demo(duration_s: float | None, *, broker_url: str | None = None, influx_url: str | None = None,
             data_dir: Path | None = None, interval_s: float = 1.0, seed: int = 0,
             stop: threading.Event | None = None, echo: bool = True) -> DemoSummary:
    stop = stop or threading.Event()
    owned_dir = data_dir is None
    work = Path(tempfile.mkdtemp(prefix="sinkwatch-demo-")) if data_dir is None else data_dir
    work.mkdir(parents=True, exist_ok=True)
    say = print if echo else log.info
    started = time.monotonic()
    try:
        with _broker(broker_url) as broker, _central(broker, work, influx_url) as api_url, \
                _simulated_probe(seed) as probe_port:
            say(f"broker:   mqtt://{broker[0]}:{broker[1]}")
            say(f"API:      {api_url}/api/v1/stations   docs: {api_url}/docs")
            say(f"series:   {api_url}/api/v1/series?station={DEMO_STATION}&variable={DEMO_VARIABLES[0]}"
                f"&start=...&end=...")
            say(f"probe:    simulated GMP252 on {probe_port}; data in {work}")
            station = parse_station_config({
                "site": DEMO_SITE, "station": DEMO_STATION,
                "mqtt": {"host": broker[0], "port": broker[1]},
                "buffer": {"path": str(work / "station-buffer.sqlite"), "publish_interval_s": 0.5},
                "sensors": [{"name": DEMO_SENSOR, "driver": "gmp252", "port": probe_port,
                             "interval_s": interval_s, "variable_suffix": "_1_1_1"}],
            }, "<demo station>")
            daemon = StationDaemon(station)
            station_thread = threading.Thread(target=daemon.run, args=(stop,), name="station", daemon=True)
            station_thread.start()
            if duration_s is None:
                say("running until Ctrl-C")
            stop.wait(duration_s)
            stop.set()
            station_thread.join(timeout=30)
            read = sum(r.health.readings for r in daemon.runners)
            acknowledged = daemon.publisher.counters.readings_acknowledged
            errors = sum(sum(r.health.errors.values()) for r in daemon.runners)
            # the central service acks to the broker only after storing, but the broker acks the station as soon
            # as it has the message: give the last batches a moment to reach the store
            stored = 0
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                stored = count_stored(api_url)
                if stored >= acknowledged:
                    break
                time.sleep(0.2)
            return DemoSummary(time.monotonic() - started, read, acknowledged, stored, errors, api_url)
    finally:
        if owned_dir:
            shutil.rmtree(work, ignore_errors=True)
