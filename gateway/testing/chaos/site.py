"""The whole chain as separate, real processes that a chaos run can kill, freeze and unplug.

    counting GMP252 probes ── socat PTY pair ── `sinkwatch station run` ── Mosquitto (shipped conf + ACL)
    (gateway/testing/counting_sensor.py)         (station.yaml)                    │
    counting WindMaster ── TCP ──────────────────┘      InfluxDB 1.x ── `sinkwatch central serve` (central.yaml)
    (gateway/testing/counting_stream.py)

Every process runs from its own command line with a real config file in the run's folder, on free loopback
ports; each keeps its log there (`station.log`, `central.log`, `sensor.log`, `stream.log`, broker and influxd logs).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from gateway.testing.central import provisioned_key
from gateway.testing.chaos.wal import WalState, inspect_wal
from gateway.testing.counting_sensor import poll_of_co2
from gateway.testing.counting_stream import records_of
from gateway.testing.serial_pty import SocatLine
from gateway.testing.services import InfluxInstance, MosquittoServer, ServiceError, running_influxd
from gateway.testing.shipped_broker import CENTRAL_USER, shipped_mosquitto

SITE = "chaos"
STATION = "st01"
DATABASE = "sinkwatch"
STREAM_SENSOR = "sonic"
FLUX_SITE = {"altitude": 100.0, "latitude": 51.0, "canopy_height": 20.0}  # site facts the flux engine needs
FLUX_SONIC_HEIGHT_M = 30.0


def sensor_name(address: int) -> str:
    return f"co2_a{address}"


@dataclass(frozen=True)
class SiteSettings:
    probes: tuple[int, ...] = (240, 241, 242)
    poll_interval_s: float = 0.3
    receipt_timeout_s: float = 30.0  # the station's default (buffer.receipt_timeout_s)
    # the counting WindMaster on TCP (records a second; 0: no stream instrument) and the station's summary interval
    stream_hz: float = 20.0
    summary_interval_s: float = 5.0
    # the station's flux runner on the stream (the counting WindMaster as a sonic alone: H, TAU, USTAR), its
    # averaging period in seconds (a divisor of 1800, at least 30; 0: no flux runner)
    flux_period_s: float = 0.0
    flux_max_wait_s: float = 10.0  # flux.max_wait_s: how long a period waits for its records after its end


@dataclass
class _Child:
    """One child process started from a command line, its output appended to a log file."""

    name: str
    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)
    starts: int = 0

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, argv: list[str] | None = None) -> None:
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self._close_log()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed when the process ends
        self._log.write(f"\n=== {self.name} start {self.starts + 1} at {time.time():.3f}\n".encode())
        self._log.flush()
        env = {**os.environ, "SINKWATCH_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(argv or self.argv, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self.starts += 1

    def kill(self) -> None:
        """SIGKILL, and reap it."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)
        self._close_log()

    def freeze(self) -> None:
        """SIGSTOP: the process hangs with its sockets, ports and files open."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def terminate(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM and wait; returns the exit code (None if it had to be killed)."""
        if self.process is None:
            return None
        code: int | None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                code = self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                code = None
        else:
            code = self.process.returncode
        self._close_log()
        return code

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def python_command(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]


class ChaosSite:
    """Starts and stops the chain's processes; `start()` brings all of them up, `close()` ends whatever runs."""

    def __init__(self, folder: Path, settings: SiteSettings | None = None) -> None:
        self.folder = folder
        self.settings = settings or SiteSettings()
        folder.mkdir(parents=True, exist_ok=True)
        self.passwords = {CENTRAL_USER: "chaos-central-secret", STATION: "chaos-station-secret"}
        self.served_log = folder / "served.jsonl"
        self.stream_log = folder / "served-stream.jsonl"
        self.stream_port = f"tcp://127.0.0.1:{_free_port()}"
        self.buffer_path = folder / "station" / "buffer.sqlite"
        self.started_wall = 0.0
        self.archive_dir = folder / "station" / "raw"  # the stream's raw archive
        self.line = SocatLine(folder / "line")
        self.broker: MosquittoServer | None = None
        self.influx: InfluxInstance | None = None
        self._influx_context: object | None = None
        self.sensor = _Child("sensor", python_command(
            "gateway.testing.counting_sensor", "--port", str(self.line.link_b), "--addresses",
            ",".join(str(a) for a in self.settings.probes), "--log", str(self.served_log)), folder / "sensor.log")
        self.stream = _Child("stream", python_command(
            "gateway.testing.counting_stream", "--port", self.stream_port, "--log", str(self.stream_log),
            "--frequency", str(self.settings.stream_hz)), folder / "stream.log")
        self.station = _Child("station", python_command(
            "gateway.cli", "station", "run", "-c", str(folder / "station.yaml")), folder / "station.log")
        self.central = _Child("central", python_command(
            "gateway.cli", "central", "serve", "-c", str(folder / "central.yaml")), folder / "central.log")

    # --- bring-up and tear-down --------------------------------------------------------------------------------

    def start(self) -> None:
        self.started_wall = time.time()  # before the station's first start: its flux runner's first period follows
        context = running_influxd(self.folder / "influxd")
        self.influx = context.__enter__()
        self._influx_context = context
        self.broker = shipped_mosquitto(self.folder / "broker", self.passwords, site=SITE)
        self.broker.start()
        self._write_configs()
        self.central.start()
        self.line.start()
        self.sensor.start()
        if self.settings.stream_hz:
            self.stream.start()
        self.station.start()

    @property
    def children(self) -> tuple[_Child, ...]:
        return (self.station, self.sensor, self.stream, self.central)

    def close(self) -> None:
        for child in self.children:
            if child.running:
                child.kill()
        self.line.stop()
        if self.broker is not None:
            self.broker.stop()
        if self._influx_context is not None:
            self._influx_context.__exit__(None, None, None)  # type: ignore[attr-defined]
            self._influx_context = None

    def _write_configs(self) -> None:
        assert self.broker is not None and self.influx is not None
        settings = self.settings
        # the station signs every item and the central service verifies it (docs/security.md); provisioned as
        # `sinkwatch station provision` would: a key for the station, its public half registered centrally
        key = provisioned_key(self.folder / "central-data", SITE, STATION, self.folder / "station" / "signing.key")
        station: dict[str, Any] = {
            "site": SITE,
            "station": STATION,
            "signing_key": str(key),
            "mqtt": {"host": self.broker.host, "port": self.broker.port, "username": STATION,
                     "password": self.passwords[STATION], "keepalive_s": 5},
            "buffer": {"path": str(self.buffer_path), "receipt_timeout_s": settings.receipt_timeout_s},
            "sensors": [
                {"name": sensor_name(address), "driver": "gmp252", "port": str(self.line.link_a), "address": address,
                 "interval_s": settings.poll_interval_s, "timeout_s": 1.0, "retries": 1, "read_temperature": True,
                 "status_every_n_polls": 1}
                for address in settings.probes
            ],
        }
        if settings.stream_hz:
            station["sensors"].append({"name": STREAM_SENSOR, "driver": "windmaster", "port": self.stream_port,
                                       "frequency_hz": settings.stream_hz})
            station["streams"] = {"summary_interval_s": settings.summary_interval_s,
                                  "archive_dir": str(self.archive_dir)}
            if settings.flux_period_s:
                station["sensors"][-1]["height_m"] = FLUX_SONIC_HEIGHT_M
                station["flux"] = {"sonic": STREAM_SENSOR, "averaging_min": settings.flux_period_s / 60,
                                   "metadata": dict(FLUX_SITE), "max_wait_s": settings.flux_max_wait_s}
        central = {
            "mqtt": {"host": self.broker.host, "port": self.broker.port, "username": CENTRAL_USER,
                     "password": self.passwords[CENTRAL_USER], "keepalive": 5},
            "storage": {"kind": "influxdb", "url": self.influx.url, "database": DATABASE},
            "api": {"host": "127.0.0.1", "port": 0},
            "data_dir": str(self.folder / "central-data"),
        }
        for name, content in (("station.yaml", station), ("central.yaml", central)):
            path = self.folder / name
            path.touch(mode=0o600)  # they hold the broker passwords
            path.write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")

    def check_running(self) -> None:
        """Raise, with the end of its log, if a process the harness did not stop has ended."""
        for child in self.children:
            if child.process is not None and not child.running:
                tail = child.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
                raise RuntimeError(f"{child.name} exited with code {child.process.returncode}:\n" + "\n".join(tail))

    # --- the station under a mid-write kill ----------------------------------------------------------------------

    def start_station_killed_at_write(self, write_number: int) -> None:
        """Start the station under strace, which kills it (SIGKILL) on entry to its `write_number`-th pwrite64
        system call: SQLite writes the buffer's WAL frames and checkpoints with pwrite64, and nothing else in the
        station does, so the kill lands inside a write of the buffer. Counted per thread by strace."""
        strace = shutil.which("strace")
        if strace is None:
            raise ServiceError("strace is not installed (Debian package strace)")
        self.station.start([strace, "-f", "-qq", "-o", os.devnull, "-e", "trace=pwrite64", "-e",
                            f"inject=pwrite64:signal=KILL:when={write_number}", *self.station.argv])

    # --- what the killed station left ---------------------------------------------------------------------------

    def buffer_frontier(self, into: Path) -> tuple[dict[str, int], WalState]:
        """Copy the buffer a killed station left (database and WAL, as its next start will find them) into `into`;
        return, per sensor, the highest poll number of a CO2 reading it holds, and the state of its WAL."""
        into.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal"):
            source = Path(f"{self.buffer_path}{suffix}")
            if source.exists():
                shutil.copy2(source, into / f"buffer.sqlite{suffix}")
        # before the copy is opened: closing the last connection checkpoints the WAL and deletes it
        wal = inspect_wal(into / "buffer.sqlite-wal")
        highest: dict[str, int] = {}
        if not (into / "buffer.sqlite").exists():
            return highest, wal
        db = sqlite3.connect(into / "buffer.sqlite")
        try:
            rows = db.execute("SELECT json_extract(body, '$.sensor'), json_extract(body, '$.value') FROM readings "
                              "WHERE json_extract(body, '$.variable') = 'CO2'").fetchall()
            stream = db.execute("SELECT json_extract(body, '$.time'), json_extract(body, '$.variable'), "
                                "json_extract(body, '$.value') FROM readings WHERE json_extract(body, '$.sensor') = ? "
                                "AND json_extract(body, '$.variable') IN ('U', 'U_N')", (STREAM_SENSOR,)).fetchall()
        except sqlite3.OperationalError:  # killed before its first commit created the tables
            rows, stream = [], []
        finally:
            db.close()
        for sensor, value in rows:
            n = poll_of_co2(value)
            if n is not None:
                highest[sensor] = max(highest.get(sensor, 0), n)
        summaries: dict[str, dict[str, float]] = {}
        for stamp, variable, value in stream:
            summaries.setdefault(str(stamp), {})[variable] = value
        for summary in summaries.values():
            counted = records_of(summary.get("U"), summary.get("U_N"))
            if counted is not None:
                highest[STREAM_SENSOR] = max(highest.get(STREAM_SENSOR, 0), counted[1])
        return highest, wal

    def wait_station_exit(self, timeout_s: float) -> int | None:
        assert self.station.process is not None
        try:
            return self.station.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None
