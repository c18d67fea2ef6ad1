"""`StreamRunner`: one streaming sensor, owning its transport and nothing else touching it; the daemon reads all of
its streams in one thread at the same moments (`read_together`), a test or a lone sensor in a thread of its own.

    connect (backoff 0.5 s .. 30 s; a vanished USB adapter is reopened when its device node returns)
      -> write driver.start_commands()
      -> every `read_interval_s` (1 s) read what arrived -> split at driver.terminator (`transport.FrameSplitter`)
      -> driver.parse(frame): values, or BadRecord -> counted by reason, dropped (logged on state changes only)
      -> stamp the burst's records from the instrument's cadence, anchored on their arrival, on the monotonic clock
         (`stamping.CadenceStamper`), mapped to UTC (gateway/clock.py)
      -> (a) the raw archive (`archiving.StreamArchive`)  (b) the interval summaries (`summaries`)
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import serial

from gateway.clock import ClockMapper, ClockStep
from gateway.driver_api import NOT_DATA, BadRecord, StreamConfig, StreamDriver
from gateway.edge.streams.archiving import StreamArchive
from gateway.edge.streams.stamping import CadenceStamper, ReadSchedule
from gateway.edge.streams.summaries import IntervalSummary, summary_readings
from gateway.edge.streams.transport import FrameSplitter, Transport
from gateway.model import Reading

log = logging.getLogger("sinkwatch.edge.streams")

UplinkMode = Literal["all", "none", "summaries"]
MIN_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0


@dataclass(frozen=True)
class StreamSettings:
    """Station-wide stream settings (the `streams:` section of station.yaml)."""

    archive_dir: Path
    summary_interval_s: float = 60.0
    uplink: UplinkMode = "summaries"
    rate_tolerance: float = 0.01  # relative deviation of the output rate that flags an interval
    silence_s: float = 2.0  # no frame for this long while connected: the sensor is "silent" (logged once)
    max_frame_bytes: int = 4096
    read_chunk: int = 4096
    # a read of everything that arrived every this many seconds (records stamped from the instrument's cadence,
    # stamping.py) instead of a wake-up per record
    read_interval_s: float = 1.0


@dataclass
class StreamHealth:
    name: str
    driver: str
    state: str = "starting"  # starting, connected, silent, disconnected
    connects: int = 0
    disconnects: int = 0
    frames: int = 0
    good: int = 0
    bad: dict[str, int] = field(default_factory=dict)
    messages: int = 0  # instrument messages that are not data (acks, diagnostics): expected, never an error
    overflows: int = 0
    summaries: int = 0
    archive_files: int = 0
    clock_steps: int = 0
    last_error: str | None = None
    last_frame_utc: float | None = None


class StreamRunner:
    """One streaming sensor. `sink` receives summary readings (the daemon's buffer append); `on_archive_closed`
    receives each closed archive file (the raw uplink's enqueue). Both are called from the runner's thread."""

    def __init__(
        self,
        driver_class: type[StreamDriver],
        config: StreamConfig,
        *,
        station: str,
        site: str,
        settings: StreamSettings,
        sink: Callable[[list[Reading]], None],
        clock: ClockMapper | None = None,
        on_archive_closed: Callable[[Path], None] | None = None,
    ) -> None:
        self.driver_class = driver_class
        self.config = config
        self.station = station
        self.site = site
        self.settings = settings
        self.sink = sink
        self.clock = clock or ClockMapper()
        self.on_archive_closed = on_archive_closed
        self.driver = driver_class(config, station=station)
        self.columns = driver_class.columns
        self.health = StreamHealth(name=config.name, driver=config.driver)
        self._names = [c.name for c in self.columns]
        self._u = self._names.index("U") if "U" in self._names else None
        self._v = self._names.index("V") if "V" in self._names else None
        self._transport = Transport(config)
        self._splitter = FrameSplitter(driver_class.terminator, settings.max_frame_bytes)
        self._stamper = CadenceStamper(config.frequency_hz)
        self._archive = StreamArchive(settings.archive_dir, site=site, station=station, config=config,
                                      driver_class=driver_class, driver=self.driver, clock=self.clock,
                                      on_closed=self._archive_closed)
        self._summary: IntervalSummary | None = None
        self._sent_until: float | None = None  # end of the latest summary sent: no interval before it reopens
        self._pending_steps: list[ClockStep] = []
        self._bad_logged: set[str] = set()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._linked = False
        self.retry_at = 0.0  # monotonic: when to try to connect next, while not linked
        self._backoff = MIN_BACKOFF_S
        self._last_frame = 0.0  # monotonic: when the latest frame arrived (or the link came up)

    # life cycle
    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, args=(self._stop,), name=f"stream-{self.config.name}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    def run(self, stop: threading.Event) -> None:
        """This sensor alone in the calling thread, until `stop` (`read_together` for several in one)."""
        read_together([self], stop)

    # the turns `read_together` takes: connect when due, then a read at each of its reads
    @property
    def linked(self) -> bool:
        return self._linked

    def link(self) -> None:
        """Connect; after a failure the next attempt is due after the backoff, which doubles up to its cap."""
        if self._connect():
            self._linked = True
            self._backoff = MIN_BACKOFF_S
            self._last_frame = self.clock.monotonic()
            return
        self.retry_at = self.clock.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, MAX_BACKOFF_S)
        self._housekeeping(self.clock.monotonic())

    def read_once(self) -> None:
        """Take what arrived since the last read and handle its records; a lost link is to be linked again now."""
        try:
            data = self._transport.read_available(self.settings.read_chunk)
        except (OSError, serial.SerialException) as exc:
            self.health.disconnects += 1
            self._transport.close()
            self._linked = False
            self.retry_at = self.clock.monotonic()
            self._set_state("disconnected", f"{self.config.port} lost: {exc}")
            return
        now = self.clock.monotonic()
        if data:
            frames = self._splitter.feed(data)
            if self._splitter.overflows != self.health.overflows:
                self._count_bad("overflow")
                self.health.overflows = self._splitter.overflows
            if frames:
                self._last_frame = now
                if self.health.state != "connected":
                    self._set_state("connected", None)
                self._handle(frames, now)
        elif now - self._last_frame > self.settings.silence_s and self.health.state == "connected":
            self._set_state("silent", f"no data from {self.config.port} for {self.settings.silence_s:g} s")
        self._housekeeping(now)

    def finish(self) -> None:
        """Stopped: the link closed, the open summary sent, the archive file closed."""
        self._transport.close()
        self._linked = False
        now = self.clock.monotonic()
        self._close_summary(now, final=True)
        self._archive.finish(self.clock.to_utc(now))

    def _connect(self) -> bool:
        try:
            self._transport.open(timeout_s=0.0)
            for command in self.driver.start_commands():
                self._transport.write(command)
        except (OSError, serial.SerialException, ValueError) as exc:
            self._transport.close()
            self._set_state("disconnected", f"cannot open {self.config.port}: {exc}")
            return False
        self.health.connects += 1
        self._splitter.reset()
        self._stamper.reset()
        reset = getattr(self.driver, "reset", None)
        if callable(reset):
            reset()
        self._set_state("connected", None)
        return True

    def _handle(self, frames: list[bytes], mono: float) -> None:
        """The frames of one read, all arrived by `mono`."""
        parse = self.driver.parse
        # records in the instrument's output order: their values, or None for a bad one (it held its place in the
        # cadence); instrument messages that are not data are not records
        records: list[tuple[float | None, ...] | None] = []
        for frame in frames:
            if not frame:
                continue
            self.health.frames += 1
            try:
                records.append(parse(frame))
            except BadRecord as exc:
                if exc.reason == NOT_DATA:
                    self.health.messages += 1
                    log.debug("sensor %s: instrument message %s", self.config.name, exc.message)
                else:
                    self._count_bad(exc.reason, exc.message)
                    records.append(None)
            except Exception as exc:  # a driver bug must not stop the stream
                log.exception("sensor %s: parse raised unexpectedly", self.config.name)
                self._count_bad("driver_bug", f"{type(exc).__name__}: {exc}")
                records.append(None)
        if not records:
            return
        to_utc = self.clock.to_utc
        interval = self.settings.summary_interval_s
        floor = math.floor
        # Records that go into the open summary interval (not one already sent) are gathered and handed to it and
        # to the archive together (`_record_many`); any other record (the first of an interval, one after the
        # clock stepped back) takes `_record` on its own, after those gathered before it.
        rows: list[tuple[float | None, ...]] = []
        utcs: list[float] = []
        monos: list[float] = []
        utc = 0.0
        for values, stamp in zip(records, self._stamper.stamps(len(records), mono), strict=True):
            if values is None:
                continue
            if self._bad_logged:
                log.info("sensor %s: good records again after %s errors", self.config.name,
                         "/".join(sorted(self._bad_logged)))
                self._bad_logged.clear()
            self.health.good += 1
            utc = to_utc(stamp)
            summary = self._summary
            if (summary is not None and floor(utc / interval) * interval == summary.start
                    and (self._sent_until is None or summary.start >= self._sent_until)):
                rows.append(values)
                utcs.append(utc)
                monos.append(stamp)
                continue
            if rows:
                self._record_many(rows, utcs, monos)
                rows, utcs, monos = [], [], []
            self._record(values, utc, stamp)
        if rows:
            self._record_many(rows, utcs, monos)
        if utc:
            self.health.last_frame_utc = utc

    def _record_many(self, rows: list[tuple[float | None, ...]], utcs: list[float], monos: list[float]) -> None:
        """`_record` for records of the open summary interval, none restamped: the same sums and archive rows."""
        assert self._summary is not None
        self._summary.add_many(rows, monos[0], monos[-1], self._u, self._v)
        self._archive.write_many(utcs, rows)

    def _record(self, values: tuple[float | None, ...], utc: float, mono: float) -> None:
        start = self._interval_start(utc)
        # A summary is final once sent: a frame stamped inside an interval already sent (the clock stepped back)
        # is counted in the first interval not sent yet, which is flagged for it, instead of reopening the old one
        # under the same identity (sensor, variable, interval end).
        restamped = self._sent_until is not None and start < self._sent_until
        if restamped:
            assert self._sent_until is not None
            start = self._sent_until
        summary = self._summary
        if summary is None or start != summary.start:
            self._close_summary(mono)
            summary = self._summary = IntervalSummary(len(values), start)
            summary.steps.extend(self._pending_steps)
            self._pending_steps.clear()
        if restamped:
            summary.restamped += 1
        summary.add(values, mono, self._u, self._v)
        self._archive.write(utc, values)

    def _count_bad(self, reason: str, message: str | None = None) -> None:
        self.health.bad[reason] = self.health.bad.get(reason, 0) + 1
        self._archive.count_bad(reason)
        if self._summary is not None:
            self._summary.bad[reason] += 1
        # logged once per reason until a good record arrives again, not on every line
        if reason not in self._bad_logged:
            log.warning("sensor %s: dropping bad record (%s)%s", self.config.name, reason,
                        f": {message[:120]}" if message else "")
            self._bad_logged.add(reason)

    def _set_state(self, state: str, error: str | None) -> None:
        if state == self.health.state:
            self.health.last_error = error or self.health.last_error
            return
        previous = self.health.state
        self.health.state = state
        if error:
            self.health.last_error = error
            log.error("sensor %s %s: %s", self.config.name, state, error)
        elif previous != "starting":
            log.info("sensor %s is back (%s)", self.config.name, state)

    def _housekeeping(self, mono: float) -> None:
        step = self.clock.resync()
        if step is not None:
            self.health.clock_steps += 1
            log.warning("sensor %s: %s; the open summary interval is flagged and the archive file closed",
                        self.config.name, step.describe())
            if self._summary is not None:
                self._summary.steps.append(step)
            else:
                self._pending_steps.append(step)  # flags the next interval, whose frames follow the step
            self._archive.clock_step(step)
        summary = self._summary
        if summary is not None and self.clock.to_utc(mono) >= summary.start + self.settings.summary_interval_s + 0.5:
            self._close_summary(mono)  # the instrument went quiet: report the interval anyway

    # summaries
    def _interval_start(self, utc: float) -> float:
        interval = self.settings.summary_interval_s
        return math.floor(utc / interval) * interval

    def _close_summary(self, mono: float, final: bool = False) -> None:
        summary = self._summary
        self._summary = None
        if summary is None or summary.frames == 0 or self.settings.uplink == "none":
            return
        end = summary.start + self.settings.summary_interval_s
        now = self.clock.to_utc(mono)
        if final and now > summary.start:
            end = min(end, now)  # stopping: the interval ends now (not while catching up after a step back)
        self._sent_until = end if self._sent_until is None else max(self._sent_until, end)
        readings = summary_readings(
            summary, station=self.station, sensor=self.config.name, columns=self.columns, end=end,
            clock_synced=self.clock.state.synced, interval_s=self.settings.summary_interval_s,
            frequency_hz=self.config.frequency_hz, rate_tolerance=self.settings.rate_tolerance,
            u_index=self._u, v_index=self._v)
        self.health.summaries += 1
        self.sink(readings)

    def _archive_closed(self, path: Path) -> None:
        self.health.archive_files += 1
        if self.on_archive_closed is not None:
            self.on_archive_closed(path)


def read_together(runners: list[StreamRunner], stop: threading.Event, beat: Callable[[], None] | None = None,
                  beat_every_s: float = 5.0) -> None:
    """Run `runners` in the calling thread until `stop`: every linked one read at the same moments, so a read of all
    of them costs one wake-up of the thread (the cost of a read that does not depend on what it holds,
    bench/stream_reads.py), and each one that is not linked connected again after its own backoff. `beat` is
    called on every turn, at least every `beat_every_s` while none is linked (the daemon's liveness: a streams
    thread that ended or hangs stops beating, and the watchdog names it, gateway/edge/systemd.py).

    The reads follow one `ReadSchedule` of the station's `read_interval_s`, dithered by the shortest period among
    them (stamping.py: a read moved by up to half a period either way); a slower instrument's reads then cover
    less than its whole period, so its stamps settle less close to the earliest arrivals, still never later than
    the read and, at the nominal rate, late by less than one period. A connect that blocks (a TCP instrument that
    does not answer: up to 5 s) delays the others' reads by as much; their bytes wait in the kernel's buffers and
    their records keep the instrument's cadence (stamping.py: a burst is stamped back from its arrival)."""
    if not runners:
        stop.wait()
        return
    monotonic = runners[0].clock.monotonic
    interval = runners[0].settings.read_interval_s
    frequency = max(r.config.frequency_hz for r in runners)
    schedule: ReadSchedule | None = None
    try:
        while not stop.is_set():
            if beat is not None:
                beat()
            for runner in runners:
                if not runner.linked and monotonic() >= runner.retry_at:
                    runner.link()
            linked = [runner for runner in runners if runner.linked]
            if not linked:
                schedule = None
            elif schedule is None:
                schedule = ReadSchedule(interval, frequency, monotonic())
            retry = min((runner.retry_at for runner in runners if not runner.linked), default=math.inf)
            due = min(schedule.due if schedule is not None else math.inf, retry)
            delay = due - monotonic()
            if delay > 0:
                if linked:
                    # a plain sleep: waiting on the stop event costs about twice the CPU per wake-up (a lock
                    # allocated and acquired with a timeout; bench/stream_reads.py); a stop is seen within an interval
                    time.sleep(delay)
                elif stop.wait(min(delay, beat_every_s)):
                    return
                if stop.is_set():
                    return
            if schedule is not None and monotonic() >= schedule.due:
                schedule.advance(monotonic())
                for runner in linked:
                    runner.read_once()
    finally:
        for runner in runners:
            runner.finish()
