"""Real Mosquitto and InfluxDB 1.x instances for tests and demos, each private to one temp dir.

Both run from the Debian packages (`mosquitto`, `influxdb`) on free loopback ports with a generated config, so
tests never depend on a system service or on each other. `running_influxd` returns a handle that can stop and
start the same instance again on the same data dir, which outage tests need.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from gateway.net import free_port

MOSQUITTO_BINARY = "/usr/sbin/mosquitto"
INFLUXD_BINARY = "/usr/bin/influxd"
_INSTALL_HINT = "install the Debian package {package}, or run the README's test command"
_STARTUP_TIMEOUT_S = 20.0


class ServiceError(RuntimeError):
    """A test service could not be started; the message says why and what to do."""


def _find_binary(default: str, name: str, package: str) -> str:
    if os.access(default, os.X_OK):
        return default
    found = shutil.which(name)
    if found is None:
        raise ServiceError(f"{name} not found at {default} or on PATH: " + _INSTALL_HINT.format(package=package))
    return found


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _wait_until_ready(process: subprocess.Popen[bytes], ready: Callable[[], bool], *, name: str, awaited: str,
                      logs: Sequence[Path]) -> None:
    """Return once `ready()` holds; ServiceError with the logs' tails when `process` exits first or `awaited` has not
    happened within the start-up timeout (the caller stops the process)."""
    deadline = time.monotonic() + _STARTUP_TIMEOUT_S
    while not ready():
        if process.poll() is not None:
            problem = f"exited with code {process.returncode} during start-up"
        elif time.monotonic() > deadline:
            problem = f"did not {awaited} within {_STARTUP_TIMEOUT_S:.0f} s"
        else:
            time.sleep(0.05)
            continue
        tails = "\n".join(_log_tail(log) for log in logs)
        raise ServiceError(f"{name} {problem}:\n{tails}")


def _terminate(process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout_s)


# --- Mosquitto -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MosquittoInstance:
    host: str
    port: int


def _mqtt_connack(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """Send a minimal MQTT 3.1.1 CONNECT and check for a CONNACK (of any return code: a broker that refuses
    anonymous clients is up too); readiness without a client library."""
    client_id = b"sinkwatch-readiness"
    variable_header = b"\x00\x04MQTT\x04\x02\x00\x0a"
    payload = len(client_id).to_bytes(2, "big") + client_id
    body = variable_header + payload
    packet = bytes([0x10, len(body)]) + body
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(packet)
            reply = sock.recv(4)
            sock.sendall(b"\xe0\x00")  # DISCONNECT, so the broker does not log an unexpected drop
    except OSError:
        return False
    return reply[:2] == b"\x20\x02"


def default_mosquitto_config(base: Path, port: int, *, persistence: bool = True) -> str:
    """The test broker: anonymous, loopback, persistence in `base` (or none)."""
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        f"persistence {'true' if persistence else 'false'}",
        f"persistence_location {base}/",
        "max_queued_messages 100000",
        f"log_dest file {base / 'mosquitto.log'}",
        "log_type error",
        "log_type warning",
    ]
    return "\n".join(lines) + "\n"


@dataclass
class MosquittoServer:
    """A private mosquitto that tests can kill (-9, as a power cut would) and start again on the same port.

    `config` is the whole configuration file; as root (CI runs as root) `user root` is appended, since mosquitto
    would otherwise drop to user `mosquitto`, which cannot write into a root-owned temp dir."""

    base_dir: Path
    port: int
    config: str
    binary: str
    host: str = "127.0.0.1"
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def config_path(self) -> Path:
        return self.base_dir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "mosquitto.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        text = self.config + ("user root\n" if os.geteuid() == 0 else "")
        self.config_path.write_text(text, encoding="utf-8")
        with open(self.base_dir / "mosquitto.stdout", "ab") as out:
            self._process = subprocess.Popen([self.binary, "-c", str(self.config_path)], stdout=out,
                                             stderr=subprocess.STDOUT)
        try:
            _wait_until_ready(self._process, lambda: _mqtt_connack(self.host, self.port), name="mosquitto",
                              awaited=f"accept MQTT connections on port {self.port}",
                              logs=(self.log_path, self.base_dir / "mosquitto.stdout"))
        except ServiceError:
            self.stop()
            raise

    def freeze(self) -> None:
        """SIGSTOP: the broker hangs with its connections open (no RST, no answer), as a network partition or a
        stalled host looks to its clients until their keep-alive runs out."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, no final save of the persistence file."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None

    def stop(self) -> None:
        if self._process is not None:
            _terminate(self._process)
            self._process = None


@contextlib.contextmanager
def mosquitto_server(tmp_dir: Path | str, *, persistence: bool = True, config: str | None = None,
                     port: int | None = None) -> Iterator[MosquittoServer]:
    """A started `MosquittoServer` on a free loopback port (or `port`), stopped on exit. `config` replaces the
    default test configuration (it must listen on `port`)."""
    binary = _find_binary(MOSQUITTO_BINARY, "mosquitto", "mosquitto")
    base = Path(tmp_dir)
    base.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    server = MosquittoServer(base, port, config or default_mosquitto_config(base, port, persistence=persistence),
                             binary)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def running_mosquitto(tmp_dir: Path | str) -> Iterator[MosquittoInstance]:
    """A private mosquitto on a free loopback port, persistence in `tmp_dir`, stopped on exit."""
    with mosquitto_server(tmp_dir) as server:
        yield MosquittoInstance(host=server.host, port=server.port)


# --- InfluxDB 1.x ----------------------------------------------------------------------------------------------


@dataclass
class InfluxInstance:
    """A private influxd; `stop()` and `start()` keep the same ports and data dir, so data survives a restart."""

    url: str
    port: int
    rpc_port: int
    base_dir: Path
    binary: str
    https: tuple[Path, Path] | None = None  # (certificate, key): serve HTTPS only
    ca_file: Path | None = None  # the CA that signed the HTTPS certificate, for the readiness ping
    data_settings: str = ""  # more lines of the [data] section, e.g. 'cache-snapshot-write-cold-duration = "5s"'
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def config_path(self) -> Path:
        return self.base_dir / "influxdb.conf"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "influxd.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The influxd process id while it runs (benchmarks read its CPU time from /proc)."""
        return self._process.pid if self.running and self._process is not None else None

    def write_config(self) -> None:
        base = self.base_dir
        https = "" if self.https is None else (f'  https-enabled = true\n  https-certificate = "{self.https[0]}"\n'
                                                 f'  https-private-key = "{self.https[1]}"\n')
        self.config_path.write_text(
            f"""reporting-disabled = true
bind-address = "127.0.0.1:{self.rpc_port}"

[meta]
  dir = "{base}/meta"
  logging-enabled = false

[data]
  dir = "{base}/data"
  wal-dir = "{base}/wal"
  query-log-enabled = false
  trace-logging-enabled = false
{self.data_settings}
[monitor]
  store-enabled = false

[http]
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
{https}
[logging]
  level = "error"
  suppress-logo = true

[continuous_queries]
  enabled = false

[subscriber]
  enabled = false
""",
            encoding="utf-8",
        )

    def _ping(self) -> bool:
        try:
            verify: ssl.SSLContext | bool = True
            if self.ca_file is not None:
                verify = ssl.create_default_context(cafile=str(self.ca_file))
            return httpx.get(f"{self.url}/ping", timeout=1.0, verify=verify).status_code == 204
        except httpx.HTTPError:
            return False

    def start(self) -> None:
        if self.running:
            return
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [self.binary, "-config", str(self.config_path)], stdout=log, stderr=subprocess.STDOUT
            )
        try:
            _wait_until_ready(self._process, self._ping, name="influxd",
                              awaited=f"answer GET /ping on port {self.port}", logs=(self.log_path,))
        except ServiceError:
            self.stop()
            raise

    def stop(self) -> None:
        if self._process is not None:
            self.thaw()  # a frozen process cannot handle SIGTERM
            _terminate(self._process)
            self._process = None

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would: no clean shutdown (InfluxDB replays its WAL on start)."""
        if self._process is not None:
            self.thaw()
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None

    def freeze(self) -> None:
        """SIGSTOP: the database hangs with its sockets open (connections accepted by the kernel, never answered),
        the way a swapping or stalled server looks to a client."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)


@contextlib.contextmanager
def running_influxd(tmp_dir: Path | str, *, https: tuple[Path, Path] | None = None, ca_file: Path | None = None,
                    host: str = "127.0.0.1", data_settings: str = "") -> Iterator[InfluxInstance]:
    """A private influxd 1.x on free loopback ports with its data in `tmp_dir`, stopped on exit. With `https`
    (certificate, key; `ca_file` their CA) it serves HTTPS only, at https://`host`:port. `data_settings`: more
    lines for the [data] section of its configuration (benches: how soon the cache goes to TSM files)."""
    binary = _find_binary(INFLUXD_BINARY, "influxd", "influxdb")
    base = Path(tmp_dir)
    base.mkdir(parents=True, exist_ok=True)
    port = free_port()
    scheme = "https" if https is not None else "http"
    instance = InfluxInstance(
        url=f"{scheme}://{host}:{port}", port=port, rpc_port=free_port(), base_dir=base, binary=binary, https=https,
        ca_file=ca_file, data_settings=data_settings,
    )
    instance.write_config()
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()


# --- VictoriaMetrics (single node) ---------------------------------------------------------------------------------

VICTORIA_BINARY = "/usr/bin/victoria-metrics"


@dataclass
class VictoriaInstance:
    """A private single-node VictoriaMetrics: every sample kept (retention 100 years), queries see data at once
    (no latency offset), its data in `base_dir`."""

    url: str
    port: int
    base_dir: Path
    binary: str
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.base_dir / "victoria-metrics.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self) -> None:
        if self.running:
            return
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [self.binary, f"-storageDataPath={self.base_dir / 'data'}", f"-httpListenAddr=127.0.0.1:{self.port}",
                 "-retentionPeriod=100y", "-search.latencyOffset=0s", "-loggerLevel=ERROR"],
                stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_until_ready(self._process, self._ready, name="victoria-metrics",
                              awaited=f"answer GET /health on port {self.port}", logs=(self.log_path,))
        except ServiceError:
            self.stop()
            raise

    def stop(self) -> None:
        if self._process is not None:
            _terminate(self._process)
            self._process = None


@contextlib.contextmanager
def running_victoria(tmp_dir: Path | str) -> Iterator[VictoriaInstance]:
    """A private single-node VictoriaMetrics on a free loopback port with its data in `tmp_dir`, stopped on exit."""
    binary = _find_binary(VICTORIA_BINARY, "victoria-metrics", "victoria-metrics")
    base = Path(tmp_dir)
    base.mkdir(parents=True, exist_ok=True)
    port = free_port()
    instance = VictoriaInstance(url=f"http://127.0.0.1:{port}", port=port, base_dir=base, binary=binary)
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()
