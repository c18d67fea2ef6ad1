"""The daemon's wiring of serial lines: sensors sharing a port go to one SerialBus thread, other sensors to the
direct scheduler, and every reading polled on either ends up in the disk buffer (through the buffer writer)."""

from __future__ import annotations

import logging
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from drivers.gmp252.simulator import GMP252Simulator, profile_simulators
from drivers.soilprobe.simulator import SoilProbeSimulator
from gateway.driver_api import SensorConfig
from gateway.edge.buffer import ReadingBuffer
from gateway.edge.bus import PollScheduler, SensorRunner
from gateway.edge.config import parse_station_config
from gateway.edge.daemon import StationDaemon
from gateway.net import free_port
from gateway.simulation.rtu_line import RtuLineSimulator
from gateway.testing.serial_pty import socat_pty_pair
from tests.edge.test_daemon import CountingDriver, make_daemon, run_until

pytestmark = pytest.mark.integration


def test_a_line_and_a_tcp_probe_deliver_every_reading_to_the_buffer(tmp_path: Path) -> None:
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed (Debian package socat)")
    with socat_pty_pair(tmp_path / "pty") as (sim_end, port), \
            RtuLineSimulator(sim_end, [*profile_simulators({240: 0.1, 241: 0.4}), SoilProbeSimulator()]), \
            GMP252Simulator("tcp://127.0.0.1:0", seed=3) as tcp_probe:
        common = {"interval_s": 0.05, "timeout_s": 0.4}
        config = parse_station_config({
            "site": "s", "station": "st1",
            "mqtt": {"host": "127.0.0.1", "port": free_port()},  # no broker: everything stays buffered
            "buffer": {"path": str(tmp_path / "buffer.sqlite")},
            "sensors": [
                {"name": "co2_10cm", "driver": "gmp252", "port": port, "address": 240, **common},
                {"name": "co2_40cm", "driver": "gmp252", "port": port, "address": 241, **common},
                {"name": "swc", "driver": "soilprobe", "port": port, "layout": "A", "baudrate": 19200,
                 "stopbits": 2, **common},
                {"name": "co2_air", "driver": "gmp252", "port": tcp_probe.tcp_endpoint, **common},
            ],
        })
        daemon = StationDaemon(config)
        assert [[r.config.name for r in bus.runners] for bus in daemon.buses] == [["co2_10cm", "co2_40cm", "swc"]]
        assert [r.config.name for r in daemon.direct.runners] == ["co2_air"]
        stop = threading.Event()
        thread = threading.Thread(target=daemon.run, args=(stop,), kwargs={"drain_timeout_s": 0.1})
        thread.start()
        deadline = time.monotonic() + 20
        while not all(r.health.polls >= 5 for r in daemon.runners) and time.monotonic() < deadline:
            time.sleep(0.02)
        health = daemon.health()
        stop.set()
        thread.join(timeout=30)
    assert all(r.health.polls >= 5 and r.health.errors == {} for r in daemon.runners), health["sensors"]
    lines = health["lines"]
    assert isinstance(lines, list) and lines[0]["port"] == port and lines[0]["available"] is True
    buffer = ReadingBuffer(tmp_path / "buffer.sqlite")
    try:
        assert buffer.pending_readings() == sum(r.health.readings for r in daemon.runners)
    finally:
        buffer.close()


def test_readings_are_held_while_the_disk_refuses_and_saved_when_it_accepts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    daemon = make_daemon(tmp_path, (CountingDriver, "good", 0.02))
    real_append = daemon.buffer.append
    refusals = {"left": 5}

    def flaky_append(readings: list[Any]) -> int:
        if refusals["left"]:
            refusals["left"] -= 1
            raise sqlite3.OperationalError("database or disk is full")
        return real_append(readings)

    monkeypatch.setattr(daemon.buffer, "append", flaky_append)
    caplog.set_level(logging.INFO, logger="sinkwatch.edge")
    # until the disk has refused five times and then taken readings (a loaded machine polls late)
    run_until(daemon, lambda: refusals["left"] == 0 and daemon.runners[0].health.readings >= 10)
    assert daemon.buffer_errors == 5
    buffer = ReadingBuffer(tmp_path / "buffer.sqlite")
    try:
        assert buffer.pending_readings() == daemon.runners[0].health.readings > 0
    finally:
        buffer.close()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("cannot write the buffer" in m for m in messages) == 1
    assert sum("writable again" in m for m in messages) == 1


def test_a_round_of_sensors_due_together_reaches_the_writer_as_one_batch() -> None:
    # four sensors due at the same slots, polled back to back: each round's readings are handed over once, in poll
    # order (one commit and one delivery notice per round), and nothing polled is left behind at the stop
    runners = [SensorRunner(CountingDriver, SensorConfig(name=f"s{i}", driver="fake", interval_s=0.3), "st01")
               for i in range(4)]
    batches: list[list[Any]] = []
    scheduler = PollScheduler(runners, batches.append)
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(stop,))
    thread.start()
    deadline = time.monotonic() + 20
    while len(batches) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    thread.join(timeout=10)
    assert len(batches) >= 3
    for batch in batches[:3]:
        assert [r.sensor for r in batch] == ["s0", "s1", "s2", "s3"]
    assert sum(len(b) for b in batches) == sum(r.health.readings for r in runners)
