"""`sinkwatch live`: the station's latest values, rates, errors and availability, from the daemon's status file.

The daemon (gateway/edge/daemon.py) owns every port; `live` must never open one. So the daemon's `StatusWriter`
thread rewrites `<buffer path>.status.json` (temp file + fsync-free rename: a reader sees the old or the new
snapshot, never half of one), and `live` only reads that file. A snapshot older than `STALE_AFTER_S`, or one the
daemon marked `running: false` when it stopped, is reported as such with the fix, never shown as live data.

How often: every `WRITE_PERIOD_S` (1 s) while someone reads it, else every `IDLE_WRITE_PERIOD_S` (5 s). A reader
(`read_status`: `sinkwatch live`, `station check`, a remote check command) touches `<status file>.watch`; the writer
looks at that file's time (one `stat`) whenever it writes, so a reader is noticed within `IDLE_WRITE_PERIOD_S`, and
then writes every second for `WATCHED_FOR_S` after the latest touch. While nobody reads, the writer wakes only to
write, every 5 s (it used to wake every second to look at the watch file: 3600 wake-ups an hour, a third of its
CPU). A snapshot of a 9-sensor station costs ~0.3 ms of CPU (0.43 ms before its sensors' "where" and reading times
were kept between snapshots); every 5 s instead of every second while nobody reads it saves most of that
(docs/performance.md, EDGE). A reader that may not write beside the buffer still gets the 5-s snapshots.

Snapshot (schema 1)::

    {"schema": 1, "written": <unix s>, "running": true, "pid": 1234, "site": ..., "station": ...,
     "broker_connected": true, "buffered_readings": 0, "readings_received": 1234,
     "sensors": [{"name", "driver", "kind": "polled"|"stream", "where", "available": true|false|null,
                  "state", "reason", "fix", "rate", "rate_unit", "availability", "errors": {kind: n},
                  "latest": [{"variable", "value", "unit", "time", "qc"}]}]}

Rates and availability are over the last `RATE_WINDOW_S` seconds: readings/s and the share of polls answered for a
polled sensor; records/s and the share of the configured output rate received for a stream.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
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
WRITE_PERIOD_S = 1.0  # while someone reads the snapshot
IDLE_WRITE_PERIOD_S = 5.0  # while nobody does
WATCHED_FOR_S = 10.0  # a reader's touch of the watch file counts this long
RATE_WINDOW_S = 10.0
STALE_AFTER_S = 15.0  # three idle periods: a loaded host may write one late, a stuck daemon misses several


def status_path(buffer_path: Path | str) -> Path:
    """Where the daemon with this buffer writes its status snapshot."""
    return Path(f"{buffer_path}.status.json")


def status_path_of(config: StationConfig) -> Path:
    return status_path(config.buffer.path)


def watch_path(status: Path) -> Path:
    """The file a reader touches to have the snapshot written every second."""
    return status.with_name(f"{status.name}.watch")


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
    """Builds and writes the daemon's status snapshot; `run` rewrites it every `period_s` while a reader has touched
    the watch file within `watched_for_s`, else every `idle_period_s`, until `stop`."""

    def __init__(self, daemon: StationDaemon, path: Path | None = None, period_s: float = WRITE_PERIOD_S,
                 idle_period_s: float = IDLE_WRITE_PERIOD_S, watched_for_s: float = WATCHED_FOR_S) -> None:
        self.daemon = daemon
        self.path = path or status_path_of(daemon.config)
        self.watch = watch_path(self.path)
        self.period_s = period_s
        self.idle_period_s = idle_period_s
        self.watched_for_s = watched_for_s
        self.writes = 0
        self._samples: deque[_Sample] = deque()
        self._write_failed = False
        # Kept between snapshots (docs/performance.md, EDGE): a sensor's "where" is fixed by its config, yet a
        # getattr of a field a pydantic config lacks costs ~10 µs (a raised and caught AttributeError), ~180 µs of a
        # 9-sensor snapshot; and a latest reading's time is formatted again only when the reading changed.
        self._where: dict[int, tuple[Any, str]] = {}  # id(config) -> (config, where)
        self._times: dict[tuple[str, str], tuple[datetime, str]] = {}  # (sensor, variable) -> (time, formatted)

    def watched(self) -> bool:
        """A reader touched the watch file within `watched_for_s`."""
        try:
            return time.time() - self.watch.stat().st_mtime < self.watched_for_s
        except OSError:
            return False

    def run(self, stop: threading.Event, beat: Callable[[], None] | None = None,
            beat_every_s: float = math.inf) -> None:
        """Write a snapshot, then wait a period while a reader watches, else an idle period; until `stop`.

        The wait is on the stop event (about twice a plain sleep's CPU per wake-up, bench/stream_reads.py, at most
        720 wake-ups an hour while idle): a stop is seen at once, so the daemon's last snapshot (`running: false`)
        is never overwritten by a late one. `beat` (the daemon's watchdog) is called at least every `beat_every_s`,
        between writes too when the period is longer."""
        while not stop.is_set():
            if beat is not None:
                beat()
            self.write()
            wait_s = self.period_s if self.watched() else self.idle_period_s
            while wait_s > beat_every_s and beat is not None:
                if stop.wait(beat_every_s):
                    return
                beat()
                wait_s -= beat_every_s
            if stop.wait(wait_s):
                return

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


def read_status(config: StationConfig, *, stale_after_s: float = STALE_AFTER_S, now: float | None = None
                ) -> dict[str, Any]:
    """The daemon's current snapshot for this station config; StatusUnavailable if missing, stale or stopped.
    Touches the watch file, so the daemon writes every second for the next `WATCHED_FOR_S`."""
    path = status_path_of(config)
    watch = watch_path(path)
    with contextlib.suppress(OSError):  # no right to write beside the buffer: the idle snapshots still serve
        watch.touch()
    run_hint = f"is `sinkwatch station run -c {config.source}` running?" if config.source else \
        "is `sinkwatch station run` running with this config?"
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
    if age > stale_after_s:
        raise StatusUnavailable(f"the status file {path} is stale: last written {age:.0f} s ago ({written}); "
                                f"the daemon is not running or is stuck; {run_hint}")
    snapshot["age_s"] = max(0.0, age)
    return snapshot


def _value(entry: dict[str, Any]) -> str:
    value = entry.get("value")
    text = "null" if value is None else f"{value:.6g}"
    flag = "" if entry.get("qc", 0) == int(QualityFlag.GOOD) else f" [qc {entry.get('qc')}]"
    return f"{text} {entry.get('unit', '')}{flag}"


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
