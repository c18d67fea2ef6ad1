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
import subprocess
import time
from collections.abc import Iterator
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
    """Send a minimal MQTT 3.1.1 CONNECT and check for a successful CONNACK; readiness without a client library."""
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
    return reply == b"\x20\x02\x00\x00"


@contextlib.contextmanager
def running_mosquitto(tmp_dir: Path | str) -> Iterator[MosquittoInstance]:
    """A private mosquitto on a free loopback port, persistence in `tmp_dir`, stopped on exit."""
    binary = _find_binary(MOSQUITTO_BINARY, "mosquitto", "mosquitto")
    base = Path(tmp_dir)
    base.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config_path = base / "mosquitto.conf"
    log_path = base / "mosquitto.log"
    config_path.write_text(
        "\n".join(
            [
                f"listener {port} 127.0.0.1",
                "allow_anonymous true",
                "persistence true",
                f"persistence_location {base}/",
                "max_queued_messages 100000",
                # Run as root (CI does), mosquitto would otherwise drop to user `mosquitto`, which cannot write
                # into a root-owned temp dir; as a non-root user this line changes nothing.
                "user root",
                f"log_dest file {log_path}",
                "log_type error",
                "log_type warning",
                "",
            ]
        ),
        encoding="utf-8",
    )
    with open(base / "mosquitto.stdout", "wb") as out:
        process = subprocess.Popen([binary, "-c", str(config_path)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + _STARTUP_TIMEOUT_S
        while not _mqtt_connack("127.0.0.1", port):
            if process.poll() is not None:
                raise ServiceError(
                    f"mosquitto exited with code {process.returncode} during start-up:\n{_log_tail(log_path)}\n"
                    f"{_log_tail(base / 'mosquitto.stdout')}"
                )
            if time.monotonic() > deadline:
                raise ServiceError(f"mosquitto did not accept MQTT connections on port {port} within "
                                   f"{_STARTUP_TIMEOUT_S:.0f} s:\n{_log_tail(log_path)}")
            time.sleep(0.05)
        yield MosquittoInstance(host="127.0.0.1", port=port)
    finally:
        _terminate(process)


# --- InfluxDB 1.x ----------------------------------------------------------------------------------------------


@dataclass
class InfluxInstance:
    """A private influxd; `stop()` and `start()` keep the same ports and data dir, so data survives a restart."""

    url: str
    port: int
    rpc_port: int
    base_dir: Path
    binary: str
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

    def write_config(self) -> None:
        base = self.base_dir
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

[monitor]
  store-enabled = false

[http]
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false

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
            return httpx.get(f"{self.url}/ping", timeout=1.0).status_code == 204
        except httpx.HTTPError:
            return False

    def start(self) -> None:
        if self.running:
            return
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [self.binary, "-config", str(self.config_path)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + _STARTUP_TIMEOUT_S
        while not self._ping():
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise ServiceError(f"influxd exited with code {code} during start-up:\n{_log_tail(self.log_path)}")
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceError(f"influxd did not answer GET /ping on port {self.port} within "
                                   f"{_STARTUP_TIMEOUT_S:.0f} s:\n{_log_tail(self.log_path)}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._process is not None:
            _terminate(self._process)
            self._process = None


@contextlib.contextmanager
def running_influxd(tmp_dir: Path | str) -> Iterator[InfluxInstance]:
    """A private influxd 1.x on free loopback ports with its data in `tmp_dir`, stopped on exit."""
    binary = _find_binary(INFLUXD_BINARY, "influxd", "influxdb")
    base = Path(tmp_dir)
    base.mkdir(parents=True, exist_ok=True)
    port = free_port()
    instance = InfluxInstance(
        url=f"http://127.0.0.1:{port}", port=port, rpc_port=free_port(), base_dir=base, binary=binary
    )
    instance.write_config()
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()
