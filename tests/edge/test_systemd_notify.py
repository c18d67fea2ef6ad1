"""sd_notify readiness and the watchdog (gateway/edge/systemd.py): the daemon says READY=1 once running and pings
WATCHDOG=1 only while none of its loops is hung, so systemd restarts a hung daemon (deploy/station/)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from gateway.edge.systemd import Liveness, Watchdog, notify, watchdog_interval_s
from gateway.net import free_port


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A datagram socket in the abstract namespace, named in NOTIFY_SOCKET as systemd does."""
    name = f"sinkwatch-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    yield sock
    sock.close()


def test_notify_sends_one_datagram_to_the_socket_systemd_names(notify_socket: socket.socket) -> None:
    assert notify("READY=1")
    assert notify_socket.recv(4096) == b"READY=1"


def test_notify_over_a_socket_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert notify("STATUS=hello\nWATCHDOG=1")
        assert sock.recv(4096) == b"STATUS=hello\nWATCHDOG=1"


def test_notify_without_systemd_does_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not notify("READY=1")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert not notify("READY=1")  # a socket that is gone is no crash


def test_watchdog_interval_comes_from_systemd_for_this_process_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert watchdog_interval_s() is None
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    assert watchdog_interval_s() == 60.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval_s() == 60.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert watchdog_interval_s() is None


def test_liveness_names_the_loops_silent_past_their_limit() -> None:
    clock = FakeClock()
    liveness = Liveness(clock)
    beat_writer = liveness.register("buffer-writer", 30)
    liveness.register("delivery", 10)
    clock.now += 20
    beat_writer()
    assert liveness.hung() == [("delivery", 20.0)]
    clock.now += 15
    assert liveness.hung() == [("delivery", 35.0)]
    clock.now += 16
    assert [name for name, _ in liveness.hung()] == ["delivery", "buffer-writer"]
    liveness.unregister("delivery")
    beat_writer()
    assert liveness.hung() == []


def test_the_watchdog_pings_only_while_no_loop_is_hung(notify_socket: socket.socket,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    liveness = Liveness(clock)
    beat = liveness.register("buffer-writer", 30)
    watchdog = Watchdog(liveness, interval_s=60, status=lambda: "connected")
    assert watchdog.check()
    assert notify_socket.recv(4096) == b"WATCHDOG=1\nSTATUS=connected"
    clock.now += 31
    with caplog.at_level(logging.ERROR, logger="sinkwatch.edge.systemd"):
        assert not watchdog.check()
        assert not watchdog.check()
    assert notify_socket.recv(4096).startswith(b"STATUS=hung: buffer-writer silent for 31 s")
    notify_socket.settimeout(0.2)
    with pytest.raises(TimeoutError):
        notify_socket.recv(4096)  # no ping, and the state change was said once
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
    assert "withholding the watchdog ping" in caplog.records[0].message
    beat()
    assert watchdog.check()
    notify_socket.settimeout(5)
    assert notify_socket.recv(4096).startswith(b"WATCHDOG=1")
    assert (watchdog.pings, watchdog.withheld) == (2, 2)


# --- a real daemon process -------------------------------------------------------------------------------------


def _messages(sock: socket.socket, until: float) -> list[str]:
    out: list[str] = []
    while time.monotonic() < until:
        sock.settimeout(max(0.01, until - time.monotonic()))
        try:
            out.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    return out


def _wait_message(sock: socket.socket, prefix: str, timeout_s: float) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            message = sock.recv(4096).decode()
        except TimeoutError:
            break
        seen.append(message)
        if message.startswith(prefix):
            return seen
    raise AssertionError(f"no {prefix!r} within {timeout_s} s; got {seen}")


@pytest.mark.integration
@pytest.mark.slow
def test_a_daemon_with_a_hung_loop_stops_pinging_and_resumes_when_it_moves(tmp_path: Path,
                                                                           notify_socket: socket.socket) -> None:
    buffer = tmp_path / "buffer.sqlite"
    config = tmp_path / "station.yaml"
    config.write_text(yaml.safe_dump({
        "site": "hainich", "station": "tower01",
        "mqtt": {"host": "127.0.0.1", "port": free_port()},  # no broker: not a hang, the pings go on
        "buffer": {"path": str(buffer)},
        "watchdog": {"hung_after_s": 2},
        "sensors": [{"name": "co2_a", "driver": "gmp252", "port": str(tmp_path / "no-such-adapter"),
                     "interval_s": 0.5}],
    }), encoding="utf-8")
    env = {**os.environ, "SINKWATCH_LOG_LEVEL": "INFO", "WATCHDOG_USEC": "400000"}
    env.pop("WATCHDOG_PID", None)
    log_path = tmp_path / "daemon.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "gateway.cli", "station", "run", "-c", str(config)],
                                   stdout=log_file, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_message(notify_socket, "READY=1", 60)
        pings = [m for m in _messages(notify_socket, time.monotonic() + 2) if m.startswith("WATCHDOG=1")]
        assert len(pings) >= 3, pings  # every 0.2 s while healthy
        assert "STATUS=broker unreachable; 0/1 polled sensors answering" in pings[-1]

        # The status writer's next file is a FIFO nobody reads: its write blocks, as on a dead SD card.
        fifo = tmp_path / f".{buffer.name}.status.json.{process.pid}.tmp"
        deadline = time.monotonic() + 10
        while True:
            try:
                os.mkfifo(fifo)
                break
            except FileExistsError:  # the writer is between its write and its rename: try again
                assert time.monotonic() < deadline
                time.sleep(0.01)
        # ask for a snapshot, as `sinkwatch live` does (it writes only when asked, and once a minute)
        wake = os.open(tmp_path / f"{buffer.name}.status.json.wake", os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(wake, b"?")
        finally:
            os.close(wake)
        _wait_message(notify_socket, "STATUS=hung: status-writer silent", 15)
        withheld = _messages(notify_socket, time.monotonic() + 1.5)
        assert not [m for m in withheld if m.startswith("WATCHDOG=1")], withheld

        # Read the FIFO: the write completes, the loop beats again, the pings resume.
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    if os.read(reader, 65536) == b"":
                        break
                except BlockingIOError:
                    pass
                time.sleep(0.01)
        finally:
            os.close(reader)
        _wait_message(notify_socket, "WATCHDOG=1", 10)
        process.send_signal(signal.SIGTERM)
        _wait_message(notify_socket, "STOPPING=1", 10)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log_path.read_text(encoding="utf-8", errors="replace")
    assert "daemon not healthy: status-writer silent for" in text and "withholding the watchdog ping" in text
    assert "daemon healthy again; watchdog pings resume" in text
    assert "Traceback" not in text
