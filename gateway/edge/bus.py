"""One owner per serial line, and the drift-free poll scheduler every group of sensors runs.

    SerialBus (one thread per port)
      ├─ RtuSerialLine      the only open file descriptor of that port (`gateway.driver_api.serial_line`); one
      │                     transaction at a time, t3.5 silence before every request, stale bytes discarded, a
      │                     vanished adapter closed and reopened with capped backoff
      └─ PollScheduler      slots at start + k·interval (monotonic), per-device backoff, missed slots counted
           └─ SensorRunner  one device: its driver, health, "unavailable"/"back" logged once per state change

Why one owner: two masters (or two threads) on one RS-485 line make frames collide, and both lose. Why a thread per
line: lines are electrically independent, so one slow line never slows another. Why backoff per device: a dead
device's timeouts are line time nobody else can use, so a failing device is tried at interval·2^(n-1) (capped)
while the healthy devices keep their slots.

The line itself is the driver API's `RtuSerialLine`, so a driver that is not on a bus can open the same kind of line.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from gateway.driver_api import DeviceError, Driver, RtuSerialLine, SensorConfig, SerialSettings
from gateway.model import Reading, utc_now

log = logging.getLogger("sinkwatch.edge")

MAX_RETRY_BACKOFF_S = 60.0
# Backoff base for sensors polled back to back (interval 0), where the interval cannot be the base.
CONTINUOUS_BACKOFF_BASE_S = 0.1
# --- one device and its health ----------------------------------------------------------------------------------


@dataclass
class SensorHealth:
    name: str
    driver: str
    available: bool | None = None  # None until the first poll
    polls: int = 0
    readings: int = 0
    missed_slots: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    consecutive_failures: int = 0
    last_error: str | None = None
    last_ok: datetime | None = None


class SensorRunner:
    """One configured sensor: its driver instance, whether it is open, and its health."""

    def __init__(self, driver_class: type[Driver], config: SensorConfig, station: str) -> None:
        self.config = config
        self.driver = driver_class(config, station=station)
        self.is_open = False
        self.health = SensorHealth(name=config.name, driver=config.driver)

    def poll(self) -> list[Reading]:
        self.health.polls += 1
        try:
            if not self.is_open:
                self.driver.open()
                self.is_open = True
            readings = self.driver.poll()
        except DeviceError as exc:
            self._failed(exc.kind.value, str(exc))
            return []
        except Exception as exc:  # a driver bug must not take the station down
            log.exception("sensor %s: driver %s raised unexpectedly", self.config.name, self.config.driver)
            self._failed("driver_bug", f"{type(exc).__name__}: {exc}")
            self._close_quietly()
            return []
        self.health.readings += len(readings)
        self.health.last_ok = utc_now()
        if self.health.available is not True:
            if self.health.available is False:
                log.info("sensor %s is back after %d failed polls", self.config.name,
                         self.health.consecutive_failures)
            self.health.available = True
        self.health.consecutive_failures = 0
        return readings

    def _failed(self, kind: str, message: str) -> None:
        self.health.errors[kind] = self.health.errors.get(kind, 0) + 1
        self.health.consecutive_failures += 1
        self.health.last_error = message
        if self.health.available is not False:
            log.error("sensor %s unavailable: %s", self.config.name, message)
            self.health.available = False

    def retry_delay(self) -> float:
        """Seconds to the next attempt: the interval while healthy, doubling while failing, capped."""
        interval = self.config.interval_s
        failures = self.health.consecutive_failures
        if failures == 0:
            return interval
        base = interval or CONTINUOUS_BACKOFF_BASE_S
        return min(base * 2 ** min(failures - 1, 30), max(base, MAX_RETRY_BACKOFF_S))

    def _close_quietly(self) -> None:
        try:
            self.driver.close()
        except Exception:
            log.debug("sensor %s: close after failure raised", self.config.name, exc_info=True)
        self.is_open = False

    def close(self) -> None:
        if self.is_open:
            self._close_quietly()


# --- scheduling -----------------------------------------------------------------------------------------------


class PollScheduler:
    """Polls a group of runners one at a time, each at start + k·interval on the monotonic clock.

    A late poll does not push later slots back; slots missed entirely are counted, not queued. Interval 0 polls
    back to back (round robin among such sensors). A failing sensor waits `retry_delay()` instead.
    """

    def __init__(self, runners: list[SensorRunner], store: Callable[[list[Reading]], None]) -> None:
        self.runners = runners
        self.store = store

    def run(self, stop: threading.Event) -> None:
        if not self.runners:
            stop.wait()
            return
        start = time.monotonic()
        due: list[tuple[float, int]] = [(start, index) for index in range(len(self.runners))]
        heapq.heapify(due)
        while not stop.is_set():
            when, index = due[0]
            delay = when - time.monotonic()
            if delay > 0:
                if stop.wait(delay):
                    break
                continue
            heapq.heappop(due)
            runner = self.runners[index]
            self.store(runner.poll())
            now = time.monotonic()
            interval = runner.config.interval_s
            next_due = when + runner.retry_delay()
            if next_due <= now:
                if interval > 0 and runner.health.consecutive_failures == 0:
                    skipped = int((now - next_due) // interval) + 1
                    runner.health.missed_slots += skipped
                    next_due += skipped * interval
                else:
                    next_due = now
            heapq.heappush(due, (next_due, index))


class SerialBus:
    """Every sensor wired to one serial port, polled through that port's single `RtuSerialLine`."""

    def __init__(
        self,
        settings: SerialSettings,
        runners: list[SensorRunner],
        store: Callable[[list[Reading]], None],
        *,
        line: RtuSerialLine | None = None,
    ) -> None:
        self.settings = settings
        self.line = line or RtuSerialLine(settings)
        self.runners = runners
        for runner in runners:
            attach = getattr(runner.driver, "attach", None)
            if not callable(attach):
                raise TypeError(f"driver {runner.config.driver} of sensor {runner.config.name} cannot share a line")
            attach(self.line)
        self.scheduler = PollScheduler(runners, store)

    def run(self, stop: threading.Event) -> None:
        log.info("serial line %s (%s): %d sensors", self.settings.port, self.settings.describe(), len(self.runners))
        try:
            self.scheduler.run(stop)
        finally:
            for runner in self.runners:
                runner.close()
            self.line.close()

    def health(self) -> dict[str, object]:
        return {
            "port": self.settings.port,
            "settings": self.settings.describe(),
            "available": self.line.available,
            **vars(self.line.counters),
            "sensors": [r.config.name for r in self.runners],
        }
