"""The station edge daemon: polls every configured sensor on a drift-free schedule, buffers every reading on
disk, and runs the publisher that drains the buffer to the broker.

Failure policy (STYLE.md principle 4): a device failure is that device's alone. It is counted by kind, logged once
when the device becomes unavailable and once when it is back (not on every failed poll), retried with a capped
backoff, and never stops the other sensors or the daemon.
"""

from __future__ import annotations

import heapq
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

from gateway.driver_api import DeviceError, Driver, SensorConfig
from gateway.edge.buffer import ReadingBuffer
from gateway.edge.config import StationConfig
from gateway.edge.publisher import Publisher
from gateway.model import Reading, utc_now

log = logging.getLogger("sinkwatch.edge")

MAX_RETRY_BACKOFF_S = 60.0


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
        if self.health.consecutive_failures == 0:
            return interval
        return min(interval * 2 ** (self.health.consecutive_failures - 1), max(interval, MAX_RETRY_BACKOFF_S))

    def _close_quietly(self) -> None:
        try:
            self.driver.close()
        except Exception:
            log.debug("sensor %s: close after failure raised", self.config.name, exc_info=True)
        self.is_open = False

    def close(self) -> None:
        if self.is_open:
            self._close_quietly()


class StationDaemon:
    def __init__(self, config: StationConfig) -> None:
        self.config = config
        self.buffer = ReadingBuffer(config.buffer.path)
        self.runners = [SensorRunner(cls, cfg, config.station) for cls, cfg in config.sensors]
        self.publisher = Publisher(config.site, config.station, config.mqtt, config.buffer, self.buffer)
        self.buffer_errors = 0
        # readings already read but not yet committed to disk (only while the disk refuses writes)
        self._unbuffered: list[Reading] = []

    def health(self) -> dict[str, object]:
        return {
            "site": self.config.site,
            "station": self.config.station,
            "broker_connected": self.publisher.connected,
            "buffered_readings": self.buffer.pending_readings() + len(self._unbuffered),
            "buffer_errors": self.buffer_errors,
            "publisher": vars(self.publisher.counters),
            "sensors": [vars(r.health) for r in self.runners],
        }

    def _store(self, readings: list[Reading]) -> None:
        pending = self._unbuffered + readings
        if not pending:
            return
        try:
            self.buffer.append(pending)
        except sqlite3.Error as exc:
            self.buffer_errors += 1
            if not self._unbuffered:
                log.error("cannot write the buffer %s: %s (check free disk space and permissions); "
                          "holding %d readings in memory and retrying", self.buffer.path, exc, len(pending))
            self._unbuffered = pending
            return
        if self._unbuffered:
            log.info("buffer %s writable again; %d held readings saved", self.buffer.path, len(self._unbuffered))
        self._unbuffered = []
        self.publisher.notify()

    def run(self, stop: threading.Event, drain_timeout_s: float = 5.0) -> None:
        log.info("station %s/%s starting: %d sensors, buffer %s holds %d readings",
                 self.config.site, self.config.station, len(self.runners), self.buffer.path,
                 self.buffer.pending_readings())
        self.publisher.start()
        publisher_thread = threading.Thread(target=self.publisher.run, args=(stop,), name="publisher",
                                            daemon=True)
        publisher_thread.start()
        try:
            self._schedule(stop)
        finally:
            for runner in self.runners:
                runner.close()
            self._store([])
            if self.publisher.connected:
                self.publisher.wait_drained(drain_timeout_s)
            stop.set()
            self.publisher.notify()
            publisher_thread.join(timeout=5)
            self.publisher.stop()
            left = self.buffer.pending_readings()
            self.buffer.close()
            log.info("station stopped; %d readings remain buffered for the next start", left)

    def _schedule(self, stop: threading.Event) -> None:
        # Drift-free: each sensor's slots are start + k * interval on the monotonic clock; a late poll does not
        # push later slots back, and slots missed entirely are counted, not queued up.
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
            self._store(runner.poll())
            step = runner.retry_delay()
            interval = runner.config.interval_s
            next_due = when + step
            now = time.monotonic()
            if next_due <= now:
                skipped = int((now - next_due) // interval) + 1
                runner.health.missed_slots += skipped
                next_due += skipped * interval
            heapq.heappush(due, (next_due, index))
