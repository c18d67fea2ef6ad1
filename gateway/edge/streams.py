"""High-rate streaming instruments (10-20 Hz sonic anemometers and gas analyzers) on the edge daemon.

One `StreamRunner` thread per stream sensor owns its transport (serial port or TCP), and nothing else touches it:

    connect (backoff 0.5 s .. 30 s; a vanished USB adapter is reopened when its device node returns)
      -> write driver.start_commands()
      -> read chunks -> split at driver.terminator (bounded: a line longer than `max_frame_bytes` is garbage, dropped,
         and the splitter resyncs at the next terminator)
      -> stamp each frame with its arrival on the monotonic clock, mapped to UTC (gateway/clock.py)
      -> driver.parse(frame): values, or BadRecord -> counted by reason, dropped (logged on state changes only)
      -> (a) the raw archive (gateway/rawarchive, one file per half hour)  (b) the interval summaries

Summaries: every `summary_interval_s` (aligned to UTC), for every column the mean (`<COL>`), standard deviation
(`<COL>_SD`) and count of values (`<COL>_N`), plus the mean horizontal wind speed `WS` when the instrument has
U and V, become `Reading`s stamped at the interval's end (AmeriFlux TIMESTAMP_END convention) and go into the
station buffer like any polled reading. An interval is flagged (qc SUSPECT, `clock_synced` False, with the reason)
when the system clock stepped inside it, and SUSPECT when the instrument's output rate differs from its configured
`frequency_hz` by more than `rate_tolerance` (a drifting instrument clock).

Raw uplink (`uplink: all`): every closed archive file is linked into `<archive_dir>/outbox/` and published by
`RawUplink` at QoS 1 on `sinkwatch/v1/<site>/<station>/raw`; the link is deleted in the PUBACK callback only, so a
chunk survives broker outages and restarts exactly like the reading buffer.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import paho.mqtt.client as mqtt
import serial
from paho.mqtt.enums import CallbackAPIVersion

from gateway.clock import ClockMapper, ClockStep
from gateway.contract import raw_payload, raw_topic
from gateway.driver_api import NOT_DATA, BadRecord, StreamConfig, StreamDriver, is_stream_driver
from gateway.model import QualityFlag, Reading, TimeSource, format_time
from gateway.rawarchive import ArchiveWriter, file_period_start

if TYPE_CHECKING:
    from gateway.edge.config import StationConfig

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


# --- transport ------------------------------------------------------------------------------------------------------


class Transport:
    """A byte stream to one instrument: a serial port (pyserial) or a TCP socket."""

    def __init__(self, config: StreamConfig) -> None:
        self.config = config
        self._serial: serial.Serial | None = None
        self._socket: socket.socket | None = None

    @property
    def is_tcp(self) -> bool:
        return self.config.port.startswith("tcp://")

    def open(self, timeout_s: float) -> None:
        cfg = self.config
        if self.is_tcp:
            host, _, number = cfg.port.removeprefix("tcp://").rpartition(":")
            sock = socket.create_connection((host, int(number)), timeout=5.0)
            sock.settimeout(timeout_s)
            self._socket = sock
        else:
            if not os.path.exists(cfg.port):
                raise FileNotFoundError(f"{cfg.port} does not exist")
            self._serial = serial.Serial(cfg.port, baudrate=cfg.baudrate, bytesize=cfg.bytesize, parity=cfg.parity,
                                         stopbits=cfg.stopbits, timeout=timeout_s, write_timeout=1.0)

    def read(self, size: int) -> bytes:
        """Up to `size` bytes, b"" after the timeout; raises OSError/SerialException when the link is gone."""
        if self._socket is not None:
            try:
                data = self._socket.recv(size)
            except TimeoutError:
                return b""
            if not data:
                raise ConnectionError("the instrument closed the connection")
            return data
        assert self._serial is not None
        port = self._serial
        first = port.read(1)  # waits up to the timeout for the first byte
        if not first:
            return b""
        waiting = port.in_waiting
        return first + port.read(min(waiting, size)) if waiting else first

    def write(self, data: bytes) -> None:
        if self._socket is not None:
            self._socket.sendall(data)
        elif self._serial is not None:
            self._serial.write(data)

    def close(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()
            self._socket = None
        if self._serial is not None:
            with contextlib.suppress(Exception):
                self._serial.close()
            self._serial = None


class FrameSplitter:
    """Splits a byte stream at `terminator` with a bounded buffer: bytes beyond `max_bytes` without a terminator are
    dropped (counted in `overflows`) and the splitter resyncs at the next terminator."""

    def __init__(self, terminator: bytes, max_bytes: int) -> None:
        self.terminator = terminator
        self.max_bytes = max_bytes
        self.overflows = 0
        self._buffer = b""
        self._discarding = False

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer + data
        parts = buffer.split(self.terminator)
        self._buffer = parts.pop()
        if self._discarding and parts:
            parts.pop(0)  # the tail of an overlong line
            self._discarding = False
        if len(self._buffer) > self.max_bytes:
            self._buffer = b""
            self._discarding = True
            self.overflows += 1
        if any(len(p) > self.max_bytes for p in parts):
            kept = [p for p in parts if len(p) <= self.max_bytes]
            self.overflows += len(parts) - len(kept)
            parts = kept
        return parts

    def reset(self) -> None:
        self._buffer = b""
        self._discarding = False


# --- summaries ------------------------------------------------------------------------------------------------------


class _Summary:
    """Running sums for one interval (a Welford update would be steadier; shifted sums are enough at 20 Hz and
    keep the per-frame cost at a few additions)."""

    def __init__(self, width: int, start: float) -> None:
        self.start = start
        self.n = [0] * width
        self.shift: list[float | None] = [None] * width
        self.s1 = [0.0] * width
        self.s2 = [0.0] * width
        self.ws_n = 0
        self.ws_sum = 0.0
        self.frames = 0
        self.first_mono: float | None = None
        self.last_mono = 0.0
        self.steps: list[ClockStep] = []
        self.bad: Counter[str] = Counter()

    def add(self, values: tuple[float | None, ...], mono: float, u_index: int | None, v_index: int | None) -> None:
        self.frames += 1
        if self.first_mono is None:
            self.first_mono = mono
        self.last_mono = mono
        n, shift, s1, s2 = self.n, self.shift, self.s1, self.s2
        for i, value in enumerate(values):
            if value is None:
                continue
            k = shift[i]
            if k is None:
                shift[i] = k = value
            d = value - k
            n[i] += 1
            s1[i] += d
            s2[i] += d * d
        if u_index is not None and v_index is not None:
            u, v = values[u_index], values[v_index]
            if u is not None and v is not None:
                self.ws_n += 1
                self.ws_sum += math.hypot(u, v)

    def mean_sd(self, i: int) -> tuple[float | None, float | None]:
        n = self.n[i]
        if n == 0:
            return None, None
        k = self.shift[i] or 0.0
        mean = k + self.s1[i] / n
        if n < 2:
            return mean, None
        var = max(0.0, (self.s2[i] - self.s1[i] * self.s1[i] / n) / (n - 1))
        return mean, math.sqrt(var)


# --- the runner -----------------------------------------------------------------------------------------------------


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
        self._archive: ArchiveWriter | None = None
        self._archive_bad: Counter[str] = Counter()
        self._archive_steps: list[ClockStep] = []
        self._summary: _Summary | None = None
        self._bad_logged: set[str] = set()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

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
        backoff = MIN_BACKOFF_S
        try:
            while not stop.is_set():
                if not self._connect():
                    stop.wait(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
                    self._housekeeping(self.clock.monotonic())
                    continue
                backoff = MIN_BACKOFF_S
                self._pump(stop)
        finally:
            self._transport.close()
            now = self.clock.monotonic()
            self._close_summary(now, final=True)
            self._close_archive("stopped")

    def _connect(self) -> bool:
        try:
            self._transport.open(timeout_s=0.25)
            for command in self.driver.start_commands():
                self._transport.write(command)
        except (OSError, serial.SerialException, ValueError) as exc:
            self._transport.close()
            self._set_state("disconnected", f"cannot open {self.config.port}: {exc}")
            return False
        self.health.connects += 1
        self._splitter.reset()
        reset = getattr(self.driver, "reset", None)
        if callable(reset):
            reset()
        self._set_state("connected", None)
        return True

    def _pump(self, stop: threading.Event) -> None:
        last_frame = self.clock.monotonic()
        while not stop.is_set():
            try:
                data = self._transport.read(self.settings.read_chunk)
            except (OSError, serial.SerialException) as exc:
                self.health.disconnects += 1
                self._transport.close()
                self._set_state("disconnected", f"{self.config.port} lost: {exc}")
                return
            now = self.clock.monotonic()
            if data:
                frames = self._splitter.feed(data)
                if self._splitter.overflows != self.health.overflows:
                    self._count_bad("overflow")
                    self.health.overflows = self._splitter.overflows
                if frames:
                    last_frame = now
                    if self.health.state != "connected":
                        self._set_state("connected", None)
                    self._handle(frames, now)
            elif now - last_frame > self.settings.silence_s and self.health.state == "connected":
                self._set_state("silent", f"no data from {self.config.port} for {self.settings.silence_s:g} s")
            self._housekeeping(now)

    def _handle(self, frames: list[bytes], mono: float) -> None:
        utc = self.clock.to_utc(mono)
        parse = self.driver.parse
        for frame in frames:
            if not frame:
                continue
            self.health.frames += 1
            try:
                values = parse(frame)
            except BadRecord as exc:
                if exc.reason == NOT_DATA:
                    self.health.messages += 1
                    log.debug("sensor %s: instrument message %s", self.config.name, exc.message)
                else:
                    self._count_bad(exc.reason, exc.message)
                continue
            except Exception as exc:  # a driver bug must not stop the stream
                log.exception("sensor %s: parse raised unexpectedly", self.config.name)
                self._count_bad("driver_bug", f"{type(exc).__name__}: {exc}")
                continue
            if self._bad_logged:
                log.info("sensor %s: good records again after %s errors", self.config.name,
                         "/".join(sorted(self._bad_logged)))
                self._bad_logged.clear()
            self.health.good += 1
            self._record(values, utc, mono)
        self.health.last_frame_utc = utc

    def _record(self, values: tuple[float | None, ...], utc: float, mono: float) -> None:
        summary = self._summary
        if summary is None or utc >= summary.start + self.settings.summary_interval_s or utc < summary.start:
            self._close_summary(mono)
            summary = self._summary = _Summary(len(values), self._interval_start(utc))
        summary.add(values, mono, self._u, self._v)
        archive = self._archive
        if archive is None or not archive.period_start <= utc < archive.period_end:
            self._close_archive("rotation")
            archive = self._open_archive(utc)
        archive.write(utc, values)

    def _count_bad(self, reason: str, message: str | None = None) -> None:
        self.health.bad[reason] = self.health.bad.get(reason, 0) + 1
        self._archive_bad[reason] += 1
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
            self._archive_steps.append(step)
            self._close_archive("clock_step")
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
        if final:
            end = min(end, self.clock.to_utc(mono))
        state = self.clock.state
        synced = state.synced and not summary.steps
        reasons: list[str] = [s.describe() for s in summary.steps]
        if not state.synced:
            reasons.append("system clock not synchronised")
        rate_problem = False
        span = summary.last_mono - (summary.first_mono or summary.last_mono)
        if summary.frames >= 10 and span >= self.settings.summary_interval_s / 2:
            rate = (summary.frames - 1) / span
            deviation = rate / self.config.frequency_hz - 1.0
            if abs(deviation) > self.settings.rate_tolerance:
                rate_problem = True
                reasons.append(f"output rate {rate:.2f} Hz is {deviation:+.1%} off the configured "
                               f"{self.config.frequency_hz:g} Hz (instrument clock drift?)")
        if summary.bad:
            reasons.append("dropped " + ", ".join(f"{n} {r}" for r, n in sorted(summary.bad.items())))
        # a clock step or a wrong output rate makes the values suspect; dropped records only reduce the counts
        flag = QualityFlag.SUSPECT if (summary.steps or rate_problem) else QualityFlag.GOOD
        reason = "; ".join(reasons)[:200] or None
        time_ = datetime.fromtimestamp(end, UTC)
        readings: list[Reading] = []

        def add(variable: str, value: float | None, unit: str) -> None:
            readings.append(Reading(
                station=self.station, sensor=self.config.name, variable=variable, value=value, unit=unit,
                time=time_, time_source=TimeSource.GATEWAY, clock_synced=synced,
                qc=QualityFlag.MISSING if value is None else flag,
                qc_reason=("no value in the interval" + (f"; {reason}" if reason else ""))[:200]
                if value is None else reason,
            ))

        for i, column in enumerate(self.columns):
            mean, sd = summary.mean_sd(i)
            add(column.name, mean, column.unit)
            add(f"{column.name}_SD", sd, column.unit)
            add(f"{column.name}_N", float(summary.n[i]), "1")
        if self._u is not None and self._v is not None:
            add("WS", summary.ws_sum / summary.ws_n if summary.ws_n else None, self.columns[self._u].unit)
        self.health.summaries += 1
        self.sink(readings)

    # archive
    def _metadata(self) -> dict[str, Any]:
        cfg = self.config
        instrument = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in ("name",)}
        state = self.clock.state
        return {
            "site": self.site,
            "station": self.station,
            "instrument": {"driver": cfg.driver, "model": self.driver_class.__name__.removesuffix("Driver"),
                           **instrument},
            "frequency_hz": cfg.frequency_hz,
            "clock": {"time_source": TimeSource.GATEWAY.value, "stamped": "arrival, monotonic mapped to UTC",
                      "synced_at_open": state.synced, "epoch": state.epoch,
                      "step_threshold_s": self.clock.step_threshold_s},
            "created": format_time(datetime.now(UTC)),
        }

    def _open_archive(self, utc: float) -> ArchiveWriter:
        writer = ArchiveWriter(self.settings.archive_dir, self.config.name, file_period_start(utc),
                               [(c.name, c.unit) for c in self.columns], self._metadata())
        self._archive = writer
        self._archive_bad = Counter()
        self._archive_steps = []
        return writer

    def _close_archive(self, why: str) -> None:
        writer = self._archive
        if writer is None:
            return
        self._archive = None
        footer = {
            "closed": why,
            "first_time": writer.first_time,
            "last_time": writer.last_time,
            "bad_records": dict(self._archive_bad),
            "lost_records": getattr(self.driver, "lost_records", None),
            "clock_steps": [{"size_s": s.size_s, "after_utc": s.after_utc} for s in self._archive_steps],
            "clock_synced_at_close": self.clock.state.synced,
        }
        try:
            path = writer.close(footer)
        except OSError as exc:
            log.error("sensor %s: cannot close archive file %s: %s", self.config.name, writer.part_path, exc)
            return
        self.health.archive_files += 1
        if self.on_archive_closed is not None:
            self.on_archive_closed(path)


# --- raw uplink -----------------------------------------------------------------------------------------------------


class RawUplink:
    """Publishes closed archive files from `outbox` (hard links) at QoS 1; unlinks each only on its PUBACK."""

    def __init__(self, site: str, station: str, outbox: Path, *, host: str, port: int, client_id: str,
                 username: str | None = None, password: str | None = None, tls: bool = False,
                 keepalive_s: int = 30, max_in_flight: int = 2) -> None:
        self.site = site
        self.station = station
        self.outbox = outbox
        outbox.mkdir(parents=True, exist_ok=True)
        self.topic = raw_topic(site, station)
        self.published = 0
        self.acknowledged = 0
        self._max_in_flight = max_in_flight
        self._lock = threading.Lock()
        self._in_flight: dict[int, Path] = {}
        self._publishing: set[Path] = set()
        self._early_acks: set[int] = set()
        self._wake = threading.Event()
        self._connected = threading.Event()
        self._host, self._port, self._keepalive = host, port, keepalive_s
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                             clean_session=True)
        if username:
            client.username_pw_set(username, password)
        if tls:
            client.tls_set()
        client.max_inflight_messages_set(max_in_flight)
        client.reconnect_delay_set(min_delay=1, max_delay=60)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._client = client

    def enqueue(self, path: Path) -> None:
        """Called with a closed archive file: a hard link in the outbox keeps it until the broker acked it."""
        link = self.outbox / path.name
        try:
            os.link(path, link)
        except FileExistsError:
            pass
        except OSError:
            link.write_bytes(path.read_bytes())  # another file system: copy
        self._wake.set()

    def pending(self) -> list[Path]:
        return sorted(self.outbox.glob("*.csv.gz"))

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            with self._lock:
                self._in_flight.clear()  # clean session: what was in flight is published again
                self._early_acks.clear()
            self._connected.set()
            self._wake.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connected.clear()

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        # paho calls this holding its own message lock, so it must never wait for a lock held across publish()
        # (that is a deadlock); a PUBACK that beats the bookkeeping of its mid is parked in _early_acks
        with self._lock:
            path = self._in_flight.pop(mid, None)
            if path is None:
                self._early_acks.add(mid)
        if path is not None:
            self._acknowledged(path)

    def _acknowledged(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        self.acknowledged += 1
        self._wake.set()

    def drain_once(self) -> int:
        handed = 0
        if not self._connected.is_set():
            return 0
        for path in self.pending():
            with self._lock:
                if len(self._in_flight) + len(self._publishing) >= self._max_in_flight:
                    break
                if path in self._in_flight.values() or path in self._publishing:
                    continue
                self._publishing.add(path)
            try:
                payload = raw_payload(self.site, self.station, path)
                info = self._client.publish(self.topic, payload, qos=1)  # never under self._lock, see _on_publish
            except (OSError, ValueError) as exc:
                log.error("raw uplink: cannot publish %s: %s", path, exc)
                with self._lock:
                    self._publishing.discard(path)
                continue
            with self._lock:
                self._publishing.discard(path)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    break
                early = info.mid in self._early_acks
                self._early_acks.discard(info.mid)
                if not early:
                    self._in_flight[info.mid] = path
            if early:
                self._acknowledged(path)
            self.published += 1
            handed += 1
        return handed

    def run(self, stop: threading.Event) -> None:
        self._client.connect_async(self._host, self._port, keepalive=self._keepalive)
        self._client.loop_start()
        try:
            while not stop.is_set():
                self.drain_once()
                self._wake.wait(1.0)
                self._wake.clear()
        finally:
            self._client.disconnect()
            self._client.loop_stop()


# --- the daemon's view ----------------------------------------------------------------------------------------------


class StreamGroup:
    """Every stream sensor of a station: one runner thread each (own clock mapper, so each notices clock steps
    itself), plus the raw uplink when `streams.uplink` is `all`. The daemon starts it beside the polled sensors."""

    def __init__(self, config: StationConfig, sink: Callable[[list[Reading]], None]) -> None:
        streams = config.streams
        archive_dir = streams.archive_dir or Path(config.buffer.path).parent / "raw"
        self.settings = StreamSettings(archive_dir=archive_dir, summary_interval_s=streams.summary_interval_s,
                                       uplink=streams.uplink)
        self.uplink: RawUplink | None = None
        stream_sensors = [(cls, cfg) for cls, cfg in config.sensors if is_stream_driver(cls)]
        if stream_sensors and streams.uplink == "all":
            mqtt_cfg = config.mqtt
            self.uplink = RawUplink(
                config.site, config.station, archive_dir / "outbox", host=mqtt_cfg.host, port=mqtt_cfg.port,
                client_id=f"{mqtt_cfg.client_id or f'sinkwatch-{config.site}-{config.station}'}-raw",
                username=mqtt_cfg.username, password=mqtt_cfg.password, tls=mqtt_cfg.tls,
                keepalive_s=mqtt_cfg.keepalive_s)
        self.runners = [
            StreamRunner(cast("type[StreamDriver]", cls), cast(StreamConfig, cfg), station=config.station,
                         site=config.site, settings=self.settings, sink=sink,
                         on_archive_closed=self.uplink.enqueue if self.uplink else None)
            for cls, cfg in stream_sensors
        ]
        self._uplink_thread: threading.Thread | None = None

    def start(self, stop: threading.Event) -> None:
        for runner in self.runners:
            runner.start()
        if self.uplink is not None:
            self._uplink_thread = threading.Thread(target=self.uplink.run, args=(stop,), name="raw-uplink",
                                                   daemon=True)
            self._uplink_thread.start()

    def stop(self) -> None:
        for runner in self.runners:
            runner.stop()
        if self._uplink_thread is not None:
            self._uplink_thread.join(timeout=5)

    def health(self) -> list[dict[str, object]]:
        return [vars(r.health) for r in self.runners]
