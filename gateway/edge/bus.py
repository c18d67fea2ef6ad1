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

Clock steps: a driver stamps its readings with the gateway's wall clock when the reply arrives. Each SensorRunner
watches that clock through its own `gateway.clock.ClockMapper` (the same step detection as the stream runners,
one mechanism), checked after every poll. The readings of the first successful poll after a step are flagged
(qc SUSPECT, `clock_synced` False, the step in `qc_reason`), as a stream flags the summary interval the step falls
into; after a backward step, so is every later reading stamped no later than the latest one sent before the step,
because its time is ambiguous against those. A device's own clock (`time_source` device) is not affected.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from gateway.clock import ClockMapper, ClockStep
from gateway.driver_api import DeviceError, Driver, RtuSerialLine, SensorConfig, SerialSettings
from gateway.model import QualityFlag, Reading, TimeSource, utc_now

log = logging.getLogger("sinkwatch.edge")

MAX_RETRY_BACKOFF_S = 60.0
BEAT_S = 5.0  # the longest a poll loop waits for its next slot without beating its liveness
# The readings of a round (the sensors due together, polled back to back) go to the buffer writer together, when
# the round ends, so a round costs one commit (one fsync) and one notice to delivery instead of one per poll; a
# reading waits in the poll thread at most this long for its round to end.
ROUND_HOLD_S = 0.5


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
    clock_steps: int = 0
    readings_flagged_for_clock: int = 0


class SensorRunner:
    """One configured sensor: its driver instance, whether it is open, and its health."""

    def __init__(self, driver_class: type[Driver], config: SensorConfig, station: str, *,
                 clock: ClockMapper | None = None) -> None:
        self.config = config
        self.driver = driver_class(config, station=station)
        self.is_open = False
        self.health = SensorHealth(name=config.name, driver=config.driver)
        self.clock = clock or ClockMapper()
        self._steps: list[ClockStep] = []  # detected, not yet flagged on a reading
        self._latest_sent: datetime | None = None
        self._overlap_until: datetime | None = None  # after a backward step: the latest time sent before it
        self._overlap_step: ClockStep | None = None

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
        finally:
            self._watch_clock()
        readings = self._flag_for_clock(readings)
        self.health.readings += len(readings)
        self.health.last_ok = utc_now()
        if self.health.available is not True:
            if self.health.available is False:
                log.info("sensor %s is back after %d failed polls", self.config.name,
                         self.health.consecutive_failures)
            self.health.available = True
        self.health.consecutive_failures = 0
        return readings

    def _watch_clock(self) -> None:
        step = self.clock.resync(force=True)
        if step is None:
            return
        self.health.clock_steps += 1
        self._steps.append(step)
        if step.size_s < 0 and self._latest_sent is not None:
            latest = self._latest_sent if self._overlap_until is None else max(self._overlap_until, self._latest_sent)
            self._overlap_until, self._overlap_step = latest, step
        log.warning("sensor %s: %s; the next readings are flagged", self.config.name, step.describe())

    def _flag_for_clock(self, readings: list[Reading]) -> list[Reading]:
        """Readings stamped across a clock step (this poll) or into times already sent (after a step back)."""
        if not readings:
            return readings
        steps, self._steps = self._steps, []
        if steps or self._overlap_until is not None:  # else, the usual poll, nothing to look at per reading
            readings = [self._flagged(reading, steps) for reading in readings]
        latest = max(r.time for r in readings)
        self._latest_sent = latest if self._latest_sent is None else max(self._latest_sent, latest)
        if self._overlap_until is not None and self._latest_sent > self._overlap_until:
            self._overlap_until = self._overlap_step = None  # caught up: times are new again
        return readings

    def _flagged(self, reading: Reading, steps: list[ClockStep]) -> Reading:
        if reading.time_source is TimeSource.DEVICE:
            return reading
        reasons = [step.describe() for step in steps]
        if self._overlap_until is not None and reading.time <= self._overlap_until:
            assert self._overlap_step is not None
            reasons.append(f"time overlaps readings sent before the {self._overlap_step.describe()}")
        if not reasons:
            return reading
        self.health.readings_flagged_for_clock += 1
        return _flag(reading, "; ".join(reasons))

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
        return min(interval * 2 ** min(failures - 1, 30), max(interval, MAX_RETRY_BACKOFF_S))

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


def _flag(reading: Reading, why: str) -> Reading:
    """SUSPECT (or worse, as it was), unsynchronised, with `why` added to the reason; MISSING stays MISSING."""
    qc = reading.qc if reading.qc in (QualityFlag.BAD, QualityFlag.MISSING) else QualityFlag.SUSPECT
    reason = "; ".join(filter(None, [reading.qc_reason, why]))[:200]
    return reading.model_copy(update={"qc": qc, "clock_synced": False, "qc_reason": reason})


class PollScheduler:
    """Polls a group of runners one at a time, each at start + k·interval on the monotonic clock.

    A late poll does not push later slots back; slots missed entirely are counted, not queued (an interval shorter
    than a poll polls back to back). A failing sensor waits `retry_delay()` instead. The readings of sensors polled
    back to back are handed to `store` together when the loop is about to wait or one of them is due again (at the
    latest after `ROUND_HOLD_S`).
    """

    def __init__(self, runners: list[SensorRunner], store: Callable[[list[Reading]], None]) -> None:
        self.runners = runners
        self.store = store
        # called on every turn of the loop, at least every BEAT_S while waiting for a slot: the daemon's watchdog
        # (gateway/edge/systemd.py) takes a silent loop for a hung one
        self.beat: Callable[[], None] = lambda: None
        self.beat_every_s = BEAT_S  # the daemon lowers it to a fraction of its watchdog's hung_after_s

    def run(self, stop: threading.Event) -> None:
        if not self.runners:
            stop.wait()
            return
        start = time.monotonic()
        due: list[tuple[float, int]] = [(start, index) for index in range(len(self.runners))]
        heapq.heapify(due)
        held: list[Reading] = []  # this round's readings so far
        held_from: set[int] = set()  # the runners polled in this round
        held_since = 0.0
        try:
            while not stop.is_set():
                self.beat()
                when, index = due[0]
                now = time.monotonic()
                delay = when - now
                # the round ends when the loop is about to wait or a sensor of it is due again
                if held and (delay > 0 or index in held_from or now - held_since >= ROUND_HOLD_S):
                    self.store(held)
                    held = []
                    held_from.clear()
                if delay > 0:
                    if stop.wait(min(delay, self.beat_every_s)):
                        break
                    continue
                heapq.heappop(due)
                runner = self.runners[index]
                readings = runner.poll()
                if readings:
                    if not held:
                        held_since = time.monotonic()
                    held.extend(readings)
                    held_from.add(index)
                self._schedule(due, when, index, runner)
        finally:
            if held:
                self.store(held)

    @staticmethod
    def _schedule(due: list[tuple[float, int]], when: float, index: int, runner: SensorRunner) -> None:
        """Put the runner polled for slot `when` back in the heap at its next slot."""
        now = time.monotonic()
        interval = runner.config.interval_s
        next_due = when + runner.retry_delay()
        if next_due <= now:
            if runner.health.consecutive_failures == 0:
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
