"""`sinkwatch live`: the station's latest values, rates, errors and availability, from the daemon's status file.

The daemon (gateway/edge/daemon.py) owns every port; `live` must never open one. So the daemon's `StatusWriter`
thread rewrites `<buffer path>.status.json` (temp file + fsync-free rename: a reader sees the old or the new
snapshot, never half of one), and `live` only reads that file. A snapshot older than `STALE_AFTER_S`, or one the
daemon marked `running: false` when it stopped, is reported as such with the fix, never shown as live data.

When: when a reader asks, and every `IDLE_WRITE_PERIOD_S` (60 s) besides. A reader (`read_status`: `sinkwatch
live`, `station check`, a remote check command) writes a byte into the FIFO `<status file>.wake`, which the writer
holds open and sleeps on (`select`), and waits up to `ANSWER_WAIT_S` for a snapshot written after its request; the
writer answers at once, but at most once per `WRITE_PERIOD_S` (1 s: `live` asks every second). So the thread wakes
only to write, and while nobody reads, once a minute instead of every 5 s (a snapshot of a 14-sensor station is
~1.5 ms of CPU here: 720 an hour were ~1 CPU-s per station-hour; docs/performance.md, EDGE) plus its watchdog
beats. A FIFO that nobody holds open (`ENXIO`) means the daemon is not running, whatever the file says; a reader
that may not write into the FIFO (mode 0620: the daemon's user and group) reads the file as it is, judged stale
after `STALE_AFTER_S`. Where no FIFO can be made, the writer falls back to a snapshot every
`FALLBACK_PERIOD_S`.

Snapshot (schema 1)::

    {"schema": 1, "written": <unix s>, "running": true, "pid": 1234, "site": ..., "station": ...,
     "broker_connected": true, "buffered_readings": 0, "readings_received": 1234,
     "sensors": [{"name", "driver", "kind": "polled"|"stream", "where", "available": true|false|null,
                  "state", "reason", "fix", "rate", "rate_unit", "availability", "errors": {kind: n},
                  "latest": [{"variable", "value", "unit", "time", "qc"}]}]}

Rates and availability are over the last `RATE_WINDOW_S` seconds, or since the snapshot before when that is older
(the first snapshot a reader asks for after an idle spell: at most `IDLE_WRITE_PERIOD_S`; `rate_window_s` says
which): readings/s and the share of polls answered for a polled sensor; records/s and the share of the configured
output rate received for a stream.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import select
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.model import QualityFlag, format_time

if TYPE_CHECKING:
    from gateway.edge.config import StationConfig
    from gateway.edge.daemon import StationDaemon

log = logging.getLogger("sinkwatch.edge.live")

SCHEMA = 1
WRITE_PERIOD_S = 1.0  # the shortest time between two snapshots readers ask for
IDLE_WRITE_PERIOD_S = 60.0  # the longest between two snapshots
FALLBACK_PERIOD_S = 5.0  # between two snapshots where no FIFO can be made (readers cannot ask)
ANSWER_WAIT_S = 3.0  # how long a reader that asked waits for the snapshot (the daemon answers within ms)
RATE_WINDOW_S = 10.0
# for a reader that could not ask: three idle periods (a loaded host may write one late, a stuck daemon misses several)
STALE_AFTER_S = 3 * IDLE_WRITE_PERIOD_S
WAKE_MODE = 0o620  # the daemon's user and group may ask for a snapshot (the state directory is 0750)


def status_path(buffer_path: Path | str) -> Path:
    """Where the daemon with this buffer writes its status snapshot."""
    return Path(f"{buffer_path}.status.json")


def status_path_of(config: StationConfig) -> Path:
    return status_path(config.buffer.path)


def wake_path(status: Path) -> Path:
    """The FIFO a reader writes into to ask for a fresh snapshot."""
    return status.with_name(f"{status.name}.wake")


def _where(config: Any) -> str:
    port = str(getattr(config, "port", ""))
    address = getattr(config, "address", None)
    return f"{port} @{address}" if isinstance(address, int) else port


@dataclass
class _Sample:
    mono: float
    counts: dict[str, tuple[int, int, int]]  # sensor -> (readings or good records, polls, failed polls)


@dataclass
class _Window:
    rate: float | None  # readings/s or records/s
    polls: int  # polls in the window (polled sensors)
    failed: int  # failed polls in the window


class StatusWriter:
    """Builds and writes the daemon's status snapshot; `run` writes one at once, then whenever a reader asks through
    the wake FIFO (at most every `period_s`) and every `idle_period_s` besides, until `stop` (module doc)."""

    def __init__(self, daemon: StationDaemon, path: Path | None = None, period_s: float = WRITE_PERIOD_S,
                 idle_period_s: float = IDLE_WRITE_PERIOD_S) -> None:
        self.daemon = daemon
        self.path = path or status_path_of(daemon.config)
        self.wake = wake_path(self.path)
        self.period_s = period_s
        self.idle_period_s = idle_period_s
        self.writes = 0
        self.asked = 0  # wake-ups by a reader's request
        self._wake_fd: int | None = None
        self._wake_lock = threading.Lock()  # `interrupt` never writes into a descriptor closed (and reused) meanwhile
        self._samples: deque[_Sample] = deque()
        self._write_failed = False
        # Kept between snapshots (docs/performance.md, EDGE): a sensor's "where" is fixed by its config, yet a
        # getattr of a field a pydantic config lacks costs ~10 µs (a raised and caught AttributeError), ~180 µs of a
        # 9-sensor snapshot; and a latest reading's time is formatted again only when the reading changed.
        self._where: dict[int, tuple[Any, str]] = {}  # id(config) -> (config, where)
        self._times: dict[tuple[str, str], tuple[datetime, str]] = {}  # (sensor, variable) -> (time, formatted)

    def _open_wake(self) -> None:
        """Make the wake FIFO (again: a leftover of an earlier run is reused, anything else in its place replaced)
        and hold it open for reading and writing: a FIFO with no writer would read as end-of-file (ready) forever,
        and `interrupt` writes into it."""
        try:
            try:
                if not stat.S_ISFIFO(os.lstat(self.wake).st_mode):
                    os.unlink(self.wake)
                    os.mkfifo(self.wake, WAKE_MODE)
            except FileNotFoundError:
                os.mkfifo(self.wake, WAKE_MODE)
            os.chmod(self.wake, WAKE_MODE)  # the daemon's umask (0027) would take the group's write
            self._wake_fd = os.open(self.wake, os.O_RDWR | os.O_NONBLOCK)
        except (OSError, AttributeError) as exc:  # AttributeError: no os.mkfifo on this platform
            log.warning("cannot make the FIFO %s (%s): readers cannot ask for a snapshot; writing one every %.0f s",
                        self.wake, exc, FALLBACK_PERIOD_S)
            self._wake_fd = None

    def interrupt(self) -> None:
        """End the writer's wait at once (the daemon calls it after setting the stop event)."""
        with self._wake_lock:
            if self._wake_fd is not None:
                with contextlib.suppress(OSError):  # a full FIFO wakes it as well
                    os.write(self._wake_fd, b"!")

    def _sleep(self, stop: threading.Event, timeout_s: float) -> bool:
        """Sleep until a reader asks (True), `timeout_s` passes, or `interrupt` (False)."""
        fd = self._wake_fd
        if fd is None:
            stop.wait(timeout_s)
            return False
        ready, _, _ = select.select([fd], [], [], timeout_s)
        if not ready:
            return False
        with contextlib.suppress(BlockingIOError):
            while len(os.read(fd, 4096)) == 4096:  # every request so far is answered by one snapshot
                pass
        return not stop.is_set()

    def run(self, stop: threading.Event, beat: Callable[[], None] | None = None,
            beat_every_s: float = math.inf) -> None:
        """Write a snapshot, then one whenever a reader asks (not sooner than `period_s` after the last) and every
        `idle_period_s` besides, until `stop` (followed by `interrupt`, which ends a wait at once, so the daemon's
        last snapshot, `running: false`, is never overwritten by a late one). `beat` (the daemon's watchdog) is
        called at least every `beat_every_s`, between snapshots too."""
        self._open_wake()
        idle_s = self.idle_period_s if self._wake_fd is not None else min(self.idle_period_s, FALLBACK_PERIOD_S)
        try:
            last = -math.inf
            asked = True  # the first snapshot at once
            while not stop.is_set():
                if beat is not None:
                    beat()
                now = time.monotonic()
                if (asked and now - last >= self.period_s) or now - last >= idle_s:
                    self.write()
                    last, asked = time.monotonic(), False
                due = last + (self.period_s if asked else idle_s)
                if self._sleep(stop, max(0.0, min(due - time.monotonic(), beat_every_s))):
                    asked = True
                    self.asked += 1
        finally:
            with self._wake_lock:
                if self._wake_fd is not None:
                    os.close(self._wake_fd)
                    self._wake_fd = None

    def _counts(self) -> dict[str, tuple[int, int, int]]:
        counts: dict[str, tuple[int, int, int]] = {}
        for runner in self.daemon.runners:
            h = runner.health
            counts[h.name] = (h.readings, h.polls, sum(h.errors.values()))
        for stream in self.daemon.streams.runners:
            counts[stream.health.name] = (stream.health.good, 0, 0)
        return counts

    def _windows(self) -> tuple[dict[str, _Window], float]:
        """Per sensor: what happened over the last RATE_WINDOW_S seconds (less just after the start)."""
        now = time.monotonic()
        counts = self._counts()
        self._samples.append(_Sample(now, counts))
        while len(self._samples) > 2 and now - self._samples[1].mono >= RATE_WINDOW_S:
            self._samples.popleft()
        first = self._samples[0]
        span = now - first.mono
        windows: dict[str, _Window] = {}
        for name, (value, polls, failed) in counts.items():
            old_value, old_polls, old_failed = first.counts.get(name, (0, 0, 0))
            windows[name] = _Window((value - old_value) / span if span >= 0.5 else None,
                                    polls - old_polls, failed - old_failed)
        return windows, span

    def snapshot(self, running: bool = True) -> dict[str, Any]:
        daemon = self.daemon
        windows, span = self._windows()
        sensors: list[dict[str, Any]] = []
        for runner in daemon.runners:
            h = runner.health
            window = windows[h.name]
            sensors.append({
                "name": h.name, "driver": h.driver, "kind": "polled", "where": self._where_of(runner.config),
                "available": h.available,
                "state": "waiting for the first poll" if h.available is None else
                         ("available" if h.available else "unavailable"),
                "reason": h.last_error if h.available is False else None,
                "rate": window.rate, "rate_unit": "readings/s",
                "availability": max(0, window.polls - window.failed) / window.polls if window.polls else None,
                "errors": dict(h.errors), "polls": h.polls,
                "latest": self._latest(h.name),
            })
        for stream in daemon.streams.runners:
            sh = stream.health
            rate = windows[sh.name].rate
            frequency = float(getattr(stream.config, "frequency_hz", 0.0) or 0.0)
            errors = dict(sh.bad)
            if sh.disconnects:
                errors["disconnect"] = sh.disconnects
            sensors.append({
                "name": sh.name, "driver": sh.driver, "kind": "stream", "where": self._where_of(stream.config),
                "available": None if sh.state == "starting" else sh.state == "connected",
                "state": sh.state,
                "reason": None if sh.state in ("connected", "starting") else sh.last_error,
                "rate": rate, "rate_unit": "records/s",
                "availability": min(1.0, rate / frequency) if rate is not None and frequency > 0 else None,
                "errors": errors, "records": sh.good, "summaries": sh.summaries,
                "latest": self._latest(sh.name, means_only=True),
            })
        return {
            "schema": SCHEMA, "written": time.time(), "running": running, "pid": os.getpid(),
            "site": daemon.config.site, "station": daemon.config.station,
            "broker_connected": daemon.delivery.connected,
            "buffered_readings": self._buffered(),
            "readings_received": daemon.readings_received,
            "readings_confirmed": daemon.delivery.counters("readings").confirmed_units,
            "delivery": daemon.delivery.health(),
            "rate_window_s": round(span, 2),
            "sensors": sensors,
        }

    def _buffered(self) -> int | None:
        try:
            return self.daemon.buffer.pending_readings()
        except Exception:  # the buffer's own writer reports disk problems; the snapshot just leaves it out
            return None

    def _where_of(self, config: Any) -> str:
        cached = self._where.get(id(config))
        if cached is None or cached[0] is not config:  # the id of a config replaced since may be reused
            cached = self._where[id(config)] = (config, _where(config))
        return cached[1]

    def _time_of(self, sensor: str, variable: str, value: datetime) -> str:
        cached = self._times.get((sensor, variable))
        if cached is None or cached[0] != value:
            cached = self._times[(sensor, variable)] = (value, format_time(value))
        return cached[1]

    def _latest(self, sensor: str, means_only: bool = False) -> list[dict[str, Any]]:
        readings = dict(self.daemon.latest.get(sensor, {}))
        out = []
        for variable, reading in readings.items():
            if means_only and (variable.endswith("_SD") or variable.endswith("_N")):
                continue
            out.append({"variable": variable, "value": reading.value, "unit": reading.unit,
                        "time": self._time_of(sensor, variable, reading.time), "qc": int(reading.qc),
                        "qc_reason": reading.qc_reason})
        return out

    def write(self, running: bool = True) -> None:
        """Write the snapshot atomically (temp file in the same folder, then rename)."""
        try:
            data = json.dumps(self.snapshot(running), default=str).encode()
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            # No fsync: the file is advisory, rewritten every few seconds, and a crash that loses the last one leaves
            # an older snapshot that `read_status` reports as stale; a whole file (rename) is all a reader needs.
            # os.open/os.write: a text-mode open builds an encoder and buffer for one write.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            try:
                if os.write(fd, data) != len(data):  # a full disk: never rename half a snapshot into place
                    raise OSError(f"wrote only part of {len(data)} bytes (disk full?)")
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            self.writes += 1
        except Exception as exc:  # never let the status file stop the station
            if not self._write_failed:
                log.warning("cannot write the status file %s: %s (sinkwatch live will call it stale)",
                            self.path, exc)
                self._write_failed = True
            return
        self._write_failed = False


# --- the reader -------------------------------------------------------------------------------------------------------


class StatusUnavailable(Exception):
    """No usable status snapshot: the message says why and what to do."""


def _ask(wake: Path) -> bool | None:
    """Ask the daemon for a fresh snapshot: True when asked; False when no daemon holds the FIFO open (not
    running); None when this reader cannot ask (no FIFO: a daemon of an earlier version or none; no right to write)."""
    try:
        fd = os.open(wake, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        return False if exc.errno == errno.ENXIO else None
    try:
        os.write(fd, b"?")
    except BlockingIOError:
        pass  # the FIFO is full of requests the daemon has not read yet: it will write anyway
    except OSError:
        return None
    finally:
        os.close(fd)
    return True


def read_status(config: StationConfig, *, stale_after_s: float = STALE_AFTER_S, now: float | None = None,
                answer_wait_s: float = ANSWER_WAIT_S) -> dict[str, Any]:
    """The daemon's current snapshot for this station config; StatusUnavailable if missing, stale or stopped.
    Asks the daemon for a fresh one first (module doc) and waits up to `answer_wait_s` for it."""
    path = status_path_of(config)
    run_hint = f"is `sinkwatch station run -c {config.source}` running?" if config.source else \
        "is `sinkwatch station run` running with this config?"
    # a file's time is the kernel's coarse clock, up to a tick behind time.time(): a snapshot written right after
    # the request may carry a time a few ms before it
    asked_at = time.time() - 0.1
    asked = _ask(wake_path(path)) if path.exists() else None
    if asked:
        # the daemon answers within milliseconds; a few stats while it does
        deadline = time.monotonic() + answer_wait_s
        while True:
            try:
                if path.stat().st_mtime >= asked_at:
                    break
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise StatusUnavailable(f"the station daemon did not answer a request for its status within "
                                        f"{answer_wait_s:g} s (status file {path}): it is stuck or overloaded; "
                                        f"see its log (journalctl -u sinkwatch-station)")
            time.sleep(0.01)
    try:
        snapshot = json.loads(path.read_text())
    except FileNotFoundError:
        raise StatusUnavailable(f"no status file {path}: the station daemon has not run with this config; "
                                f"{run_hint}") from None
    except (OSError, ValueError) as exc:
        raise StatusUnavailable(f"cannot read the status file {path}: {exc}; {run_hint}") from None
    if not isinstance(snapshot, dict) or snapshot.get("schema") != SCHEMA:
        raise StatusUnavailable(f"{path} is not a status file of this sinkwatch version; {run_hint}")
    age = (time.time() if now is None else now) - float(snapshot.get("written", 0))
    written = datetime.fromtimestamp(float(snapshot.get("written", 0)), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if not snapshot.get("running", False):
        raise StatusUnavailable(f"the station daemon stopped at {written} (status file {path}); {run_hint}")
    if asked is False:  # its FIFO has no reader: the process that wrote this is gone (killed, crashed)
        raise StatusUnavailable(f"the station daemon is not running: its status file {path} was last written at "
                                f"{written} by a process that is gone; {run_hint}")
    if age > stale_after_s:
        raise StatusUnavailable(f"the status file {path} is stale: last written {age:.0f} s ago ({written}); "
                                f"the daemon is not running or is stuck; {run_hint}")
    snapshot["age_s"] = max(0.0, age)
    return snapshot


def with_unit(value: str, unit: str | None) -> str:
    """`value unit`, without the unit of a count, a flag or a diagnostic word (UDUNITS' "1"): `DIAG_SONIC = 0 1` and
    `LID_CLOSED = 1 1` read as two numbers."""
    return f"{value} {unit}" if unit and unit != "1" else value


def _value(entry: dict[str, Any]) -> str:
    value = entry.get("value")
    text = "null" if value is None else f"{value:.6g}"
    flag = "" if entry.get("qc", 0) == int(QualityFlag.GOOD) else f" [qc {entry.get('qc')}]"
    return f"{with_unit(text, entry.get('unit'))}{flag}"


def _errors(errors: dict[str, int]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in sorted(errors.items()) if n) or "-"


def render_status(snapshot: dict[str, Any]) -> str:
    """A plain-text table: one row per sensor and variable, then the reason for every unavailable sensor."""
    written = datetime.fromtimestamp(float(snapshot["written"]), UTC).strftime("%H:%M:%S UTC")
    header = (f"station {snapshot['site']}/{snapshot['station']}  status of {written} "
              f"({snapshot.get('age_s', 0.0):.1f} s ago)  broker "
              f"{'connected' if snapshot.get('broker_connected') else 'NOT connected'}  "
              f"{snapshot.get('buffered_readings', '?')} readings buffered  "
              f"rates over {snapshot.get('rate_window_s', 0):.0f} s")
    rows: list[tuple[str, ...]] = [("sensor", "variable", "latest value", "rate", "avail", "state", "errors")]
    notes: list[str] = []
    for sensor in snapshot["sensors"]:
        rate = sensor.get("rate")
        rate_text = "-" if rate is None else f"{rate:.2f} {sensor.get('rate_unit', '')}"
        availability = sensor.get("availability")
        avail_text = "-" if availability is None else f"{availability:.0%}"
        state = "ok" if sensor.get("available") else ("starting" if sensor.get("available") is None
                                                       else "UNAVAILABLE")
        latest = sensor.get("latest") or [{"variable": "-", "value": None, "unit": "", "qc": 3}]
        for index, entry in enumerate(latest):
            first = index == 0
            rows.append((
                sensor["name"] if first else "", entry["variable"],
                _value(entry) if entry["variable"] != "-" else "-",
                rate_text if first else "", avail_text if first else "", state if first else "",
                _errors(sensor.get("errors", {})) if first else "",
            ))
        if sensor.get("available") is False:
            notes.append(f"{sensor['name']} ({sensor.get('where', '')}) is unavailable: "
                         f"{sensor.get('reason') or sensor.get('state')}")
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [header, ""]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    available = sum(1 for s in snapshot["sensors"] if s.get("available"))
    lines.append("")
    lines.append(f"{available} of {len(snapshot['sensors'])} sensors available")
    lines += notes
    return "\n".join(lines)


def live_loop(config: StationConfig, *, once: bool, period_s: float = 1.0, out: Any = None,
              stop: threading.Event | None = None) -> int:
    """Print the table every `period_s` until `stop` (Ctrl-C); with `once`, print it once. Returns the exit code:
    0 while the status is live, 1 when it is missing, stale or stopped."""
    import sys

    stream = out or sys.stdout
    stop = stop or threading.Event()
    code = 0
    while True:
        try:
            text = render_status(read_status(config))
            code = 0
        except StatusUnavailable as exc:
            text = f"no live status: {exc}"
            code = 1
        if once:
            print(text, file=stream)
            return code
        clear = "\x1b[H\x1b[2J" if getattr(stream, "isatty", lambda: False)() else ""
        print(f"{clear}{text}\n(Ctrl-C to stop)", file=stream, flush=True)
        if stop.wait(period_s):
            return code


__all__ = ["StatusUnavailable", "StatusWriter", "live_loop", "read_status", "render_status", "status_path",
           "status_path_of"]
