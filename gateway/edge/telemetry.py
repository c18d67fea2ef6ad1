"""Health telemetry: every `telemetry.interval_s` the station takes a `StationHealth` report of itself
(gateway/contract/health.py) and hands it to its one delivery path like any other channel.

    telemetry thread ──every interval──▶ HealthSampler.sample(): /proc, /sys, statvfs, adjtimex, the daemon's
        │                                 outboxes (delivery health) and sensors (runner health)
        ▼
    HealthOutbox (table `health_outbox` of the buffer file) ──▶ Delivery ──▶ central: Store.write_health, Receipt
        ▲ a report leaves only on its receipt, like readings

Why the same path and not a lossy fire-and-forget publish: the operator's question after an outage is "what
happened to the station while it was away?", and the reports taken during the outage answer it only if they
arrive. Unlike readings, health is diagnostic, so its outbox is bounded (`telemetry.max_backlog`, a week at the
default interval): past it, the oldest reports are dropped and the count travels in every later report
(`reports_dropped`), so the loss is never silent.

Everything read here is a cheap file or syscall (no subprocess): a report costs well under a millisecond of CPU
(bench/telemetry.py). A figure the node cannot give (no thermal zone, not Linux) is None, never a guess.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway import __version__
from gateway.contract import ChannelBacklog, SensorHealth, StationHealth, encode_health, health_topic
from gateway.contract.health import BacklogUnit
from gateway.contract.receipts import Channel
from gateway.driver_api.clock import kernel_clock
from gateway.edge.delivery import OutboxItem
from gateway.model import utc_now

if TYPE_CHECKING:
    from gateway.edge.daemon import StationDaemon

log = logging.getLogger("sinkwatch.edge.telemetry")

# Thermal zones that are the CPU/SoC on the boards we run on (Raspberry Pi: cpu-thermal; x86: x86_pkg_temp),
# preferred in this order over any other zone.
CPU_THERMAL_TYPES = ("cpu-thermal", "cpu_thermal", "soc_thermal", "soc-thermal", "x86_pkg_temp", "coretemp")
BACKLOG_UNITS: dict[str, BacklogUnit] = {"readings": "readings", "records": "records", "files": "files",
                                         "reports": "reports", "results": "results"}


# --- what the node tells about itself ------------------------------------------------------------------------------


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def load_average(proc: Path) -> tuple[float, float, float] | None:
    text = _read(proc / "loadavg")
    try:
        one, five, fifteen = (float(x) for x in (text or "").split()[:3])
    except ValueError:
        return None
    return one, five, fifteen


def memory(proc: Path) -> tuple[int | None, int | None]:
    """(MemTotal, MemAvailable) in bytes from /proc/meminfo (kB there)."""
    values: dict[str, int] = {}
    for line in (_read(proc / "meminfo") or "").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if key in ("MemTotal", "MemAvailable") and parts and parts[0].isdigit():
            values[key] = int(parts[0]) * 1024
    return values.get("MemTotal"), values.get("MemAvailable")


def resident_bytes(proc: Path) -> int | None:
    for line in (_read(proc / "self" / "status") or "").splitlines():
        if line.startswith("VmRSS:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024
    return None


def host_uptime(proc: Path) -> float | None:
    text = _read(proc / "uptime")
    try:
        return float((text or "").split()[0])
    except (ValueError, IndexError):
        return None


def cpu_temperature(sys_root: Path) -> float | None:
    """The CPU/SoC thermal zone in degC (millidegrees in sysfs); another zone only when no CPU zone exists."""
    zones: list[tuple[int, str, Path]] = []
    for zone in sorted((sys_root / "class" / "thermal").glob("thermal_zone*")):
        kind = (_read(zone / "type") or "").strip()
        rank = CPU_THERMAL_TYPES.index(kind) if kind in CPU_THERMAL_TYPES else len(CPU_THERMAL_TYPES)
        zones.append((rank, zone.name, zone))
    for _rank, _name, zone in sorted(zones):
        text = _read(zone / "temp")
        try:
            return int((text or "").strip()) / 1000.0
        except ValueError:
            continue
    return None


def disk_space(path: Path) -> tuple[int | None, int | None]:
    """(free for us, total) bytes of the file system holding `path`."""
    try:
        stat = os.statvfs(path)
    except OSError:
        return None, None
    return stat.f_bavail * stat.f_frsize, stat.f_blocks * stat.f_frsize


class HealthSampler:
    """Takes one `StationHealth` report from the node and what the daemon hands in (outboxes, sensors)."""

    def __init__(self, site: str, station: str, *, interval_s: float, disk_path: Path,
                 proc_root: Path = Path("/proc"), sys_root: Path = Path("/sys"),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.site = site
        self.station = station
        self.interval_s = interval_s
        self.disk_path = disk_path
        self.proc_root = proc_root
        self.sys_root = sys_root
        self._clock = clock
        self._started = clock()
        self._last_cpu: tuple[float, float] | None = None  # (monotonic, process CPU seconds) at the last report

    def _cpu_share(self) -> float | None:
        now, used = self._clock(), time.process_time()
        last, self._last_cpu = self._last_cpu, (now, used)
        if last is None or now - last[0] <= 0:
            return None
        return max(0.0, (used - last[1]) / (now - last[0]))

    def sample(self, *, buffers: Sequence[ChannelBacklog], sensors: Sequence[SensorHealth],
               supply_voltage_v: float | None = None, reports_dropped: int = 0, buffer_write_errors: int = 0,
               readings_held_in_memory: int = 0) -> StationHealth:
        load = load_average(self.proc_root)
        total, available = memory(self.proc_root)
        free, size = disk_space(self.disk_path)
        clock = kernel_clock()
        return StationHealth(
            site=self.site, station=self.station, time=utc_now(), interval_s=self.interval_s,
            daemon_version=__version__[:64], uptime_s=max(0.0, self._clock() - self._started),
            host_uptime_s=host_uptime(self.proc_root), clock_synced=clock.synced, clock_offset_s=clock.offset_s,
            clock_max_error_s=clock.max_error_s, disk_free_bytes=free, disk_total_bytes=size,
            cpu_temperature_c=cpu_temperature(self.sys_root),
            load_1m=load[0] if load else None, load_5m=load[1] if load else None,
            load_15m=load[2] if load else None, cpu_count=os.cpu_count(), daemon_cpu_share=self._cpu_share(),
            memory_total_bytes=total, memory_available_bytes=available,
            daemon_rss_bytes=resident_bytes(self.proc_root), supply_voltage_v=supply_voltage_v,
            reports_dropped=reports_dropped, buffer_write_errors=buffer_write_errors,
            readings_held_in_memory=readings_held_in_memory, buffers=list(buffers), sensors=list(sensors),
        )


# --- the outbox -----------------------------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS health_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    taken REAL NOT NULL,
    body TEXT NOT NULL
);
"""


class HealthOutbox:
    """The health channel's outbox (an `OutboxSource` of gateway/edge/delivery.py): reports waiting for their
    receipt in a table of the station's buffer file (own connection; WAL, synchronous=FULL). The row id is the
    report's `seq` (AUTOINCREMENT: never reused). At most `max_backlog` reports are kept: adding one more drops the
    oldest, counted in `dropped`."""

    channel: Channel = "health"
    unit = "reports"

    def __init__(self, path: Path | str, site: str, station: str, *, max_backlog: int = 10080) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.topic = health_topic(site, station)
        self.max_backlog = max_backlog
        self.dropped = 0
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        # counted once, then kept by every commit (this connection is the table's only writer): the status
        # snapshot reads the backlog every few seconds
        self._pending = int(self._db.execute("SELECT COUNT(*) FROM health_outbox").fetchone()[0])

    def add(self, report: StationHealth) -> int:
        """Queue a report (its seq is assigned here); returns the seq."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._db.execute("INSERT INTO health_outbox(taken, body) VALUES (?, ?)",
                                          (report.time.timestamp(), encode_health(report).decode()))
                seq = int(cursor.lastrowid or 0)
                excess = self._pending + 1 - self.max_backlog
                dropped = 0
                if excess > 0:
                    dropped = self._db.execute("DELETE FROM health_outbox WHERE seq IN (SELECT seq FROM health_outbox "
                                               "ORDER BY seq LIMIT ?)", (excess,)).rowcount
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._pending += 1 - dropped
        if excess > 0:
            if self.dropped == 0:
                log.warning("health outbox full (%d reports without receipt): dropping the oldest; the count "
                            "travels in every report as reports_dropped", self.max_backlog)
            self.dropped += excess
        return seq

    @staticmethod
    def _payload(seq: int, body: str) -> bytes:
        return encode_health(StationHealth.model_validate_json(body).model_copy(update={"seq": seq}))

    def claim(self, limit: int, exclude: set[int]) -> list[OutboxItem]:
        with self._lock:
            rows = self._db.execute("SELECT seq, body FROM health_outbox ORDER BY seq LIMIT ?",
                                    (limit + len(exclude),)).fetchall()
        return [OutboxItem(int(s), self._payload(int(s), body)) for s, body in rows if s not in exclude][:limit]

    def reload(self, seq: int) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM health_outbox WHERE seq=?", (seq,)).fetchone()
        return self._payload(seq, row[0]) if row else None

    def confirm(self, ranges: Sequence[tuple[int, int]]) -> tuple[int, int]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            deleted = sum(self._db.execute("DELETE FROM health_outbox WHERE seq BETWEEN ? AND ?", r).rowcount
                          for r in ranges)
            self._db.execute("COMMIT")
            self._pending -= deleted
        return deleted, deleted

    def pending(self) -> int:
        """Reports waiting for their receipt, kept in memory: COUNT(*) of `health_outbox`."""
        return self._pending

    def oldest_time(self) -> float | None:
        if self._pending == 0:  # the common case at a station that keeps up: no query
            return None
        with self._lock:
            row = self._db.execute("SELECT taken FROM health_outbox ORDER BY seq LIMIT 1").fetchone()
        return float(row[0]) if row else None

    def close(self) -> None:
        with self._lock:
            self._db.close()


# --- the daemon's side ----------------------------------------------------------------------------------------------


def backlogs(delivery_health: dict[str, Any]) -> list[ChannelBacklog]:
    """Every outbox's backlog from `Delivery.health()`."""
    found: list[ChannelBacklog] = []
    channels = delivery_health.get("channels")
    for name, entry in (channels.items() if isinstance(channels, dict) else []):
        unit = BACKLOG_UNITS.get(str(entry.get("unit")), "readings")
        age = entry.get("oldest_pending_age_s")
        refusing = entry.get("refusing")
        found.append(ChannelBacklog(channel=name, unit=unit, pending=int(entry.get("pending") or 0),
                                    oldest_age_s=max(0.0, float(age)) if age is not None else None,
                                    refusing=str(refusing)[:200] if refusing else None))
    return found


@dataclass
class _Counts:
    done: int  # polls (polled) or good records (stream)
    failed: int  # failed polls (polled)
    mono: float


class TelemetryRunner:
    """The daemon's `telemetry` thread: a report at start, then one every `interval_s` (drift-free)."""

    def __init__(self, daemon: StationDaemon, outbox: HealthOutbox, sampler: HealthSampler,
                 notify: Callable[[], None] | None = None) -> None:
        self.daemon = daemon
        self.outbox = outbox
        self.sampler = sampler
        self.notify = notify
        self.reports = 0
        self.failures = 0
        self._previous: dict[str, _Counts] = {}
        self._failing = False
        self._held: deque[StationHealth] = deque()  # taken, refused by the outbox's disk, queued first next time

    def run(self, stop: threading.Event) -> None:
        start = time.monotonic()
        k = 0
        while not stop.is_set():
            self.report_once()
            k += 1
            if stop.wait(max(0.0, start + k * self.sampler.interval_s - time.monotonic())):
                return

    def report_once(self) -> StationHealth | None:
        """Take a report and queue it; never raises (telemetry must not stop the station). A report the outbox
        refuses (its file's disk full, read-only or failing) is held in memory and queued, in order, before the
        next one: the reports taken while the disk refused are what tells the operator afterwards what happened
        (`readings_held_in_memory`, `buffer_write_errors`). At most the outbox's `max_backlog` are held; past it the
        oldest is dropped and counted in `reports_dropped`, as the outbox itself does."""
        try:
            report = self.take()
        except Exception as exc:
            self._failed("cannot take a health report", exc)
            return None
        self._held.append(report)
        if len(self._held) > self.outbox.max_backlog:
            self._held.popleft()
            self.outbox.dropped += 1
        try:
            while self._held:
                self.outbox.add(self._held[0])
                self._held.popleft()
        except Exception as exc:
            self._failed(f"cannot queue a health report ({len(self._held)} held in memory)", exc)
            return None
        if self._failing:
            log.info("health reports are queued again")
            self._failing = False
        self.reports += 1
        if self.notify is not None:
            self.notify()
        return report

    def _failed(self, what: str, exc: Exception) -> None:
        self.failures += 1
        if not self._failing:
            log.error("%s: %s (retried every %.0f s)", what, exc, self.sampler.interval_s,
                      exc_info=not isinstance(exc, sqlite3.Error | OSError))
            self._failing = True

    @property
    def held(self) -> int:
        """Reports taken but not yet in the outbox (its disk refused them)."""
        return len(self._held)

    def take(self) -> StationHealth:
        daemon = self.daemon
        return self.sampler.sample(buffers=backlogs(daemon.delivery.health()), sensors=self.sensors(),
                                   supply_voltage_v=self.supply_voltage(), reports_dropped=self.outbox.dropped,
                                   buffer_write_errors=daemon.buffer_errors,
                                   readings_held_in_memory=daemon.readings_held_in_memory)

    def _availability(self, name: str, done: int, failed: int, expected: float | None) -> float | None:
        """Share since the previous report: polls answered of polls made, or records of the records expected."""
        now = time.monotonic()
        last = self._previous.get(name)
        self._previous[name] = _Counts(done, failed, now)
        if last is None:
            return None
        if expected is None:  # polled
            polls = done - last.done
            return max(0.0, min(1.0, (polls - (failed - last.failed)) / polls)) if polls > 0 else None
        due = expected * (now - last.mono)
        return max(0.0, min(1.0, (done - last.done) / due)) if due > 0 else None

    def sensors(self) -> list[SensorHealth]:
        daemon = self.daemon
        latest = daemon.latest
        found: list[SensorHealth] = []
        for runner in daemon.runners:
            h = runner.health
            state = ("waiting for the first poll" if h.available is None
                     else "available" if h.available else "unavailable")
            found.append(SensorHealth(
                name=h.name, driver=h.driver[:64], kind="polled", state=state, available=h.available,
                availability=self._availability(h.name, h.polls, sum(h.errors.values()), None),
                errors=dict(h.errors), last_error=(h.last_error or None) and str(h.last_error)[:200],
                variables=sorted(latest.get(h.name, {}))[:500],
            ))
        for stream in daemon.streams.runners:
            sh = stream.health
            frequency = float(getattr(stream.config, "frequency_hz", 0.0) or 0.0)
            errors = dict(sh.bad)
            if sh.disconnects:
                errors["disconnect"] = sh.disconnects
            found.append(SensorHealth(
                name=sh.name, driver=sh.driver[:64], kind="stream", state=sh.state[:40],
                available=None if sh.state == "starting" else sh.state == "connected",
                availability=self._availability(sh.name, sh.good, 0, frequency if frequency > 0 else None)
                if frequency > 0 else None,
                errors=errors, last_error=(sh.last_error or None) and str(sh.last_error)[:200],
                variables=sorted(latest.get(sh.name, {}))[:500],
            ))
        return found

    def supply_voltage(self) -> float | None:
        """The latest good reading of the configured supply-voltage source, if it is recent."""
        source = self.daemon.config.telemetry.supply_voltage
        if source is None:
            return None
        reading = self.daemon.latest.get(source.sensor, {}).get(source.variable)
        if reading is None or reading.value is None or reading.qc >= 2:
            return None
        if (utc_now() - reading.time).total_seconds() > 2 * self.sampler.interval_s:
            return None  # a stale value would hide a dead supply sensor
        return float(reading.value)
