"""LI7500Driver's grammar <-> LI7500Simulator through real pyserial ports on a socat PTY pair and over TCP (the
instrument's port 7200 style), for every fault mode of the simulator base."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import serial

from drivers.li7500.driver import LI7500Config, LI7500Driver
from drivers.li7500.simulator import LI7500Simulator
from gateway.driver_api import BadRecord
from gateway.testing.serial_pty import socat_pty_pair
from gateway.testing.stream_io import Closed, check_frames, connect, read_frames

pytestmark = pytest.mark.integration

RATE_HZ = 50.0  # faster than the instrument's 20 Hz so each test needs well under a second of frames
FRAMES = 40
TIMEOUT_S = 10.0  # a bound on waiting, never asserted


def make_driver(port: str, **overrides: Any) -> LI7500Driver:
    settings: dict[str, Any] = {"name": "irga", "port": port, "frequency_hz": 20, **overrides}
    return LI7500Driver(LI7500Config.model_validate(settings), station="st1")


@contextmanager
def serial_link(tmp_path: Path, **sim_options: Any) -> Iterator[tuple[LI7500Simulator, serial.Serial]]:
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed (Debian package socat)")
    with socat_pty_pair(tmp_path) as (sim_end, driver_end), \
            serial.Serial(driver_end, 115200, timeout=0.05) as port:
        sim = LI7500Simulator(sim_end, frequency_hz=RATE_HZ, seed=3, **sim_options)
        with sim:
            yield sim, port


@contextmanager
def tcp_link(**sim_options: Any) -> Iterator[tuple[LI7500Simulator, socket.socket]]:
    with LI7500Simulator("tcp://127.0.0.1:0", frequency_hz=RATE_HZ, seed=3, **sim_options) as sim, \
            connect(sim.tcp_endpoint) as sock:
        yield sim, sock


@contextmanager
def link(transport: str, tmp_path: Path, **sim_options: Any) -> Iterator[tuple[LI7500Simulator, Any]]:
    if transport == "pty":
        with serial_link(tmp_path, **sim_options) as pair:
            yield pair
    else:
        with tcp_link(**sim_options) as pair:
            yield pair


def send(port: serial.Serial | socket.socket, data: bytes) -> None:
    if isinstance(port, serial.Serial):
        port.write(data)
    else:
        port.sendall(data)


@pytest.mark.parametrize("transport", ["pty", "tcp"])
def test_start_command_is_acknowledged_and_values_equal_the_served_log(transport: str, tmp_path: Path) -> None:
    drv = make_driver("/dev/null" if transport == "pty" else "tcp://127.0.0.1:7200")
    with link(transport, tmp_path) as (sim, port):
        for command in drv.start_commands():
            send(port, command)
        frames = read_frames(port, drv.terminator, FRAMES, TIMEOUT_S)
    outcome = check_frames(drv, frames, sim.served, corrupt_reason="format", unserved_reasons=("not_data",))
    assert sim.commands == [c.rstrip(b"\n") for c in drv.start_commands()]
    assert drv.messages["Ack"] == 1 and outcome.reasons == {"not_data": 1}
    assert len(outcome.values) == FRAMES - 1
    assert outcome.indices == list(range(outcome.indices[0], outcome.indices[0] + len(outcome.indices)))
    assert len({v[1] for v in outcome.values}) > 1  # CO2 varies: the field, not a constant


def test_labels_false_with_a_custom_order_over_tcp() -> None:
    drv = make_driver("tcp://127.0.0.1:7200", labels=False, outputs=["Pres", "CO2D", "H2OD", "DiagVal", "Ndx"])
    with tcp_link() as (sim, sock):
        pending = bytearray()
        sock.sendall(drv.start_commands()[0])
        frames = read_frames(sock, drv.terminator, FRAMES, TIMEOUT_S, pending)
    outcome = check_frames(drv, frames, sim.served, corrupt_reason="format", unserved_reasons=("not_data",))
    tab_records = [f for f in frames if b"\t" in f]
    assert len(tab_records) > FRAMES // 2  # labelled records sent before the command are accepted too
    assert all(v[3] is None and v[5] is None for v in outcome.values[-len(tab_records):])  # Temp, CO2SS off
    assert sim.outputs == ["Pres", "CO2D", "H2OD", "DiagVal", "Ndx"]


@pytest.mark.parametrize("transport", ["pty", "tcp"])
@pytest.mark.parametrize("fault", ["none", "bad_checksum", "garbage", "nan", "slow", "clock_drift"])
def test_fault_modes_give_the_right_reason_or_missing_values(transport: str, fault: str, tmp_path: Path) -> None:
    drv = make_driver("/dev/null")
    options: dict[str, Any] = {"fault": fault, "fault_ratio": 0.5, "jitter_s": 0.03}
    with link(transport, tmp_path, **options) as (sim, port):
        frames = read_frames(port, drv.terminator, FRAMES, TIMEOUT_S)
    outcome = check_frames(drv, frames, sim.served, corrupt_reason="format")
    # every frame served while we listened arrived, in order, and was either parsed or refused as it should be
    assert outcome.indices == list(range(outcome.indices[0], outcome.indices[0] + len(outcome.indices)))
    if fault == "bad_checksum":
        assert outcome.corrupted_seen > 0 and outcome.reasons == {"format": outcome.corrupted_seen}
    elif fault == "garbage":
        assert outcome.unserved > 0 and outcome.reasons == {"format": outcome.unserved}
    else:
        assert not outcome.reasons and len(outcome.values) == FRAMES
    if fault == "nan":
        assert any(None in values[1:5] for values in outcome.values)
    else:
        assert all(None not in values for values in outcome.values)


def test_no_output_is_silence_and_output_resumes(tmp_path: Path) -> None:
    drv = make_driver("/dev/null")
    with serial_link(tmp_path) as (sim, port):
        before = read_frames(port, drv.terminator, 10, TIMEOUT_S)
        sim.set_fault("no_output")
        read_frames(port, drv.terminator, 2, 0.2)  # a frame may be on its way
        silent = read_frames(port, drv.terminator, 1, 0.5)
        sim.set_fault("none")
        after = read_frames(port, drv.terminator, 10, TIMEOUT_S)
    assert silent == []
    outcome = check_frames(drv, before + after, sim.served, corrupt_reason="format")
    assert len(outcome.values) == 20 and not outcome.reasons


def test_tcp_disconnect_then_reconnect_gets_the_start_command_again() -> None:
    drv = make_driver("tcp://127.0.0.1:7200")
    frames: list[bytes] = []
    with LI7500Simulator("tcp://127.0.0.1:0", frequency_hz=RATE_HZ, disconnect_s=0.3) as sim:
        sock = connect(sim.tcp_endpoint)
        sock.sendall(drv.start_commands()[0])
        frames += read_frames(sock, drv.terminator, 10, TIMEOUT_S)
        sim.set_fault("disconnect")
        with pytest.raises(Closed):
            read_frames(sock, drv.terminator, 10_000, TIMEOUT_S)
        sock.close()
        deadline = time.monotonic() + TIMEOUT_S
        # wait until the server is back: a connect in the instant its old listener closes would be reset
        while sim.reconnects == 0:
            assert time.monotonic() < deadline, "the simulator's TCP server did not come back"
            time.sleep(0.02)
        sock = connect(sim.tcp_endpoint)
        with sock:
            sock.sendall(drv.start_commands()[0])
            frames += read_frames(sock, drv.terminator, 10, TIMEOUT_S)
    outcome = check_frames(drv, frames, sim.served, corrupt_reason="format", unserved_reasons=("not_data",))
    assert sim.reconnects == 1 and drv.messages["Ack"] == 2
    assert len(outcome.values) == 18  # 20 frames minus the two (Ack ...) replies


def test_sinkwatch_simulate_li7500_serves_a_pty_until_interrupted() -> None:
    # the console script, as an operator runs it: the entry point is registered and main() serves
    process = subprocess.Popen([str(Path(sys.executable).with_name("sinkwatch")), "simulate", "li7500", "--port",
                                "pty", "--fault", "nan"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()
        match = re.search(r"port at (\S+)$", first_line.strip())
        assert match, f"unexpected first line {first_line!r}"
        drv = make_driver(match.group(1))
        with serial.Serial(match.group(1), 115200, timeout=0.05) as port:
            port.write(drv.start_commands()[0])
            frames = read_frames(port, drv.terminator, 30, TIMEOUT_S)
        results = []
        for position, frame in enumerate(frames):
            try:
                results.append(drv.parse(frame))
            except BadRecord as bad:
                # only the first frame may be the tail of a record written before we opened the port
                assert bad.reason == "not_data" or (position == 0 and bad.reason == "format"), bad.message
        assert drv.messages["Ack"] == 1 and len(results) >= len(frames) - 2
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=30)  # a loaded host may take seconds to stop
        assert process.returncode == 0 and "stopped after" in out
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
