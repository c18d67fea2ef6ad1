"""The scheduler and failure policy, with fake drivers at our own driver boundary (no broker: the publisher just
fails to connect, which is itself a case the daemon must survive)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import pytest

from gateway.driver_api import DeviceError, FailureKind, SensorConfig
from gateway.edge.config import BufferConfig, MqttConfig, StationConfig, StationConfigBase
from gateway.edge.daemon import StationDaemon
from gateway.model import Reading
from gateway.testing.factories import make_readings
from gateway.testing.services import free_port


class CountingDriver:
    Config: ClassVar[type[SensorConfig]] = SensorConfig
    fail_polls: ClassVar[set[int]] = set()

    def __init__(self, config: SensorConfig, *, station: str) -> None:
        self.config = config
        self.station = station
        self.calls = 0

    def open(self) -> None:
        pass

    def poll(self) -> list[Reading]:
        self.calls += 1
        if self.calls in self.fail_polls:
            raise DeviceError(FailureKind.TIMEOUT, f"{self.config.name}: no reply", "check wiring")
        return make_readings(1, start=float(self.calls), station=self.station, sensor=self.config.name)

    def close(self) -> None:
        pass


class DeadDriver(CountingDriver):
    def open(self) -> None:
        raise DeviceError(FailureKind.NO_PORT, f"{self.config.name}: /dev/ttyUSB9 does not exist", "plug it in")


class BuggyDriver(CountingDriver):
    def poll(self) -> list[Reading]:
        self.calls += 1
        raise ZeroDivisionError("driver bug")


def make_daemon(tmp_path: Path, *drivers: tuple[type, str, float]) -> StationDaemon:
    base = StationConfigBase(
        site="site-a", station="st01",
        mqtt=MqttConfig(host="127.0.0.1", port=free_port()),
        buffer=BufferConfig(path=tmp_path / "buffer.sqlite"),
        sensors=[{"name": name} for _, name, _ in drivers],
    )
    sensors = [(cls, SensorConfig(name=name, driver="fake", interval_s=interval)) for cls, name, interval in drivers]
    return StationDaemon(StationConfig(base, sensors, None))


def run_for(daemon: StationDaemon, seconds: float) -> None:
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    timer.start()
    daemon.run(stop, drain_timeout_s=0.1)
    timer.cancel()


def run_until(daemon: StationDaemon, done: Callable[[], bool], timeout_s: float = 30.0) -> float:
    """Run until `done()` holds (looked at every 20 ms) or `timeout_s` passes; the seconds it ran. A loaded machine
    polls late, so a test waits for what it checks instead of counting what a fixed time gave."""
    stop = threading.Event()
    started = time.monotonic()

    def watch() -> None:
        while not stop.wait(0.02):
            if done() or time.monotonic() - started > timeout_s:
                stop.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    daemon.run(stop, drain_timeout_s=0.1)
    stop.set()
    watcher.join()
    return time.monotonic() - started


def test_a_dead_and_a_buggy_sensor_do_not_stop_a_healthy_one(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    daemon = make_daemon(tmp_path, (CountingDriver, "good", 0.05), (DeadDriver, "dead", 0.05),
                         (BuggyDriver, "buggy", 0.05))
    caplog.set_level(logging.INFO, logger="sinkwatch.edge")
    good, dead, buggy = (r.health for r in daemon.runners)
    run_until(daemon, lambda: (good.readings >= 15 and dead.errors.get("no_port", 0) >= 2
                               and buggy.errors.get("driver_bug", 0) >= 2))
    good, dead, buggy = (r.health for r in daemon.runners)
    assert good.readings >= 15
    assert good.errors == {}
    assert dead.available is False and dead.errors.get("no_port", 0) >= 2
    assert buggy.available is False and buggy.errors.get("driver_bug", 0) >= 2
    # a state change is logged once, not on every failed poll
    unavailable = [r for r in caplog.records if "dead unavailable" in r.getMessage()]
    assert len(unavailable) == 1
    assert "plug it in" in unavailable[0].getMessage()
    # no broker: every reading read is still on disk
    buffer = daemon.buffer.__class__(daemon.config.buffer.path)
    assert buffer.pending_readings() == good.readings


def test_failing_device_backs_off_and_recovery_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    class Flaky(CountingDriver):
        fail_polls: ClassVar[set[int]] = {2, 3, 4}

    daemon = make_daemon(tmp_path, (Flaky, "flaky", 0.05))
    caplog.set_level(logging.INFO, logger="sinkwatch.edge")
    elapsed = run_until(daemon, lambda: daemon.runners[0].health.polls >= 8)
    health = daemon.runners[0].health
    assert health.errors == {"timeout": 3}
    assert health.available is True
    assert any("flaky is back after 3 failed polls" in r.getMessage() for r in caplog.records)
    # backoff: failures 1, 2, 3 wait 0.05, 0.1, 0.2 s instead of 3 x 0.05 s, so fewer polls than slots
    assert health.polls < elapsed / 0.05


def test_schedule_is_drift_free(tmp_path: Path) -> None:
    class Slow(CountingDriver):
        def poll(self) -> list[Reading]:
            threading.Event().wait(0.03)  # each poll takes 60% of the interval
            return super().poll()

    daemon = make_daemon(tmp_path, (Slow, "slow", 0.05))
    run_for(daemon, 2.0)
    # a scheduler that waits one interval *after* each poll would manage only 2.0 / 0.08 = 25 slots; a drift-free one
    # keeps every slot, polled or (on a loaded machine, too late to poll) counted as missed
    health = daemon.runners[0].health
    assert health.polls + health.missed_slots >= 36
