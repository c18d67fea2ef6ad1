"""The stream simulator base: pacing, transports, fault modes and the served log, with a minimal line grammar."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import serial

from gateway.simulation.stream_simulator import FAULTS, StreamSimulator
from gateway.testing.serial_pty import socat_pty_pair


class CsvSonic(StreamSimulator):
    """u,v,w,ts_c,checksum-digit: the simplest grammar that has a checksum and a missing-value sentinel."""

    name = "csvsonic"

    def frame(self, index: int, unix_time: float) -> bytes:
        u, v, w, ts = self.sonic(index)
        values = self.maybe_nan((round(float(u), 3), round(float(v), 3), round(float(w), 3),
                                 round(float(ts) - 273.15, 3)))
        self.record(values)
        body = ",".join("NAN" if x is None else f"{x:.3f}" for x in values).encode()
        return body + b"," + str(sum(body) % 10).encode() + b"\r\n"

    def on_command(self, line: bytes) -> bytes | None:
        if line == b"STOP":
            self.paused = True
            return b"STOPPED\r\n"
        if line == b"GO":
            self.paused = False
        return None


def decode(line: bytes) -> tuple[float | None, ...] | None:
    body, _, digit = line.rstrip(b"\r\n").rpartition(b",")
    if str(sum(body) % 10).encode() != digit:
        return None
    return tuple(None if x == b"NAN" else float(x) for x in body.split(b","))


def read_lines(read: serial.Serial | socket.socket, until: float) -> list[bytes]:
    data = b""
    while time.monotonic() < until:
        chunk = read.read(4096) if isinstance(read, serial.Serial) else _recv(read)
        data += chunk
    return [line for line in data.split(b"\r\n") if line]


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(4096)
    except TimeoutError:
        return b""


def test_every_fault_mode_is_documented() -> None:
    assert set(FAULTS) == {"none", "no_output", "bad_checksum", "garbage", "slow", "nan", "disconnect",
                           "clock_drift"}


@pytest.mark.integration
def test_serves_frames_over_a_socat_pty_that_decode_to_the_logged_values(tmp_path: Path) -> None:
    with socat_pty_pair(tmp_path) as (a, b), CsvSonic(b, frequency_hz=50, seed=3) as sim, \
            serial.Serial(a, 115200, timeout=0.05) as port:
        lines = read_lines(port, time.monotonic() + 1.0)
    decoded = [decode(line + b"\r\n") for line in lines]
    served = sim.served_values()
    assert len(decoded) >= 20
    # the reader may have missed the first frames (opened late) but must then see them in order
    assert decoded[0] is not None
    start = served.index(decoded[0])
    assert decoded == served[start:start + len(decoded)]


@pytest.mark.integration
def test_tcp_serves_several_clients_and_answers_commands_to_the_asking_client() -> None:
    with CsvSonic("tcp://127.0.0.1:0", frequency_hz=50) as sim:
        host, port = sim.tcp_endpoint.removeprefix("tcp://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=0.05) as one, \
                socket.create_connection((host, int(port)), timeout=0.05) as two:
            first = read_lines(one, time.monotonic() + 0.5)
            second = read_lines(two, time.monotonic() + 0.1)
            one.sendall(b"STOP\r")
            replies = read_lines(one, time.monotonic() + 0.3)
            assert b"STOPPED" in replies
            assert sim.paused
    assert first and second
    assert sim.commands == [b"STOP"]


@pytest.mark.integration
def test_frames_are_paced_from_sample_indices_without_gaps() -> None:
    with CsvSonic("tcp://127.0.0.1:0", frequency_hz=100, speedup=5) as sim:
        time.sleep(0.5)
    indices = [f.index for f in sim.served]
    assert len(indices) > 50
    assert indices == list(range(indices[0], indices[0] + len(indices)))
    # simulated time advances by one sample period per frame, whatever the speed-up (to the float resolution of a
    # Unix time near 1.8e9 s, ~2.4e-7 s)
    assert sim.served[1].unix_time - sim.served[0].unix_time == pytest.approx(0.01, abs=1e-6)


@pytest.mark.integration
def test_bad_checksum_and_nan_faults_are_logged_as_such() -> None:
    with CsvSonic("tcp://127.0.0.1:0", frequency_hz=200, fault="bad_checksum", fault_ratio=0.5) as sim:
        time.sleep(0.3)
        sim.set_fault("nan")
        time.sleep(0.3)
    served = sim.served
    corrupted = [f for f in served if not f.intact]
    assert corrupted and all(decode(f.data) is None for f in corrupted)
    assert all(decode(f.data) == f.values for f in served if f.intact)
    assert any(None in f.values for f in served)


@pytest.mark.integration
def test_own_pty_disconnect_removes_the_port_and_brings_it_back(tmp_path: Path) -> None:
    link = tmp_path / "ttyUSB_sim"
    with CsvSonic(f"pty:{link}", frequency_hz=50, disconnect_s=0.5) as sim:
        assert link.exists()
        sim.set_fault("disconnect")
        deadline = time.monotonic() + 2
        while link.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not link.exists()
        while not link.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert link.exists()
        # the port comes back first, then the simulator counts the reconnect and clears the fault
        while (sim.fault, sim.reconnects) != ("none", 1) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sim.fault == "none" and sim.reconnects == 1
        with serial.Serial(str(link), timeout=0.05) as port:
            assert read_lines(port, time.monotonic() + 0.3)


@pytest.mark.integration
def test_clock_drift_runs_the_device_clock_and_the_rate_fast() -> None:
    with CsvSonic("tcp://127.0.0.1:0", frequency_hz=100, fault="clock_drift", drift_ppm=100_000) as sim:
        time.sleep(0.5)
        later = sim.device_time(sim.served[-1].unix_time) - sim.served[-1].unix_time
    assert later > 0
