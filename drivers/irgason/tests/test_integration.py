"""IrgasonDriver's grammar <-> IrgasonSimulator through real pyserial ports on a socat PTY pair and over TCP, for
every fault mode of the simulator base."""

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

from drivers.irgason.driver import IrgasonConfig, IrgasonDriver
from drivers.irgason.simulator import IrgasonSimulator
from gateway.testing.serial_pty import socat_pty_pair
from gateway.testing.stream_io import Closed, check_frames, connect, read_frames

pytestmark = pytest.mark.integration

RATE_HZ = 50.0
FRAMES = 40
TIMEOUT_S = 10.0  # a bound on waiting, never asserted


def make_driver(**overrides: Any) -> IrgasonDriver:
    return IrgasonDriver(IrgasonConfig.model_validate({"name": "ec", "port": "/dev/null", **overrides}),
                         station="st1")


@contextmanager
def serial_link(tmp_path: Path, **sim_options: Any) -> Iterator[tuple[IrgasonSimulator, serial.Serial]]:
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed (Debian package socat)")
    with socat_pty_pair(tmp_path) as (sim_end, driver_end), \
            serial.Serial(driver_end, 115200, timeout=0.05) as port, \
            IrgasonSimulator(sim_end, frequency_hz=RATE_HZ, seed=11, **sim_options) as sim:
        yield sim, port


@contextmanager
def tcp_link(**sim_options: Any) -> Iterator[tuple[IrgasonSimulator, socket.socket]]:
    with IrgasonSimulator("tcp://127.0.0.1:0", frequency_hz=RATE_HZ, seed=11, **sim_options) as sim, \
            connect(sim.tcp_endpoint) as sock:
        yield sim, sock


@contextmanager
def link(transport: str, tmp_path: Path, **sim_options: Any) -> Iterator[tuple[IrgasonSimulator, Any]]:
    if transport == "pty":
        with serial_link(tmp_path, **sim_options) as pair:
            yield pair
    else:
        with tcp_link(**sim_options) as pair:
            yield pair


def consecutive(indices: list[int]) -> bool:
    return bool(indices) and indices == list(range(indices[0], indices[0] + len(indices)))


@pytest.mark.parametrize("transport", ["pty", "tcp"])
@pytest.mark.parametrize("fault", ["none", "bad_checksum", "garbage", "nan", "slow", "clock_drift"])
def test_fault_modes_give_the_right_reason_or_missing_values(transport: str, fault: str, tmp_path: Path) -> None:
    drv = make_driver()
    options: dict[str, Any] = {"fault": fault, "fault_ratio": 0.5, "jitter_s": 0.03}
    with link(transport, tmp_path, **options) as (sim, port):
        frames = read_frames(port, drv.terminator, FRAMES, TIMEOUT_S)
    outcome = check_frames(drv, frames, sim.served, corrupt_reason="checksum")
    assert consecutive(outcome.indices)
    if fault == "bad_checksum":
        assert outcome.corrupted_seen > 0 and outcome.reasons == {"checksum": outcome.corrupted_seen}
        # a dropped record leaves a hole in the counter of the good ones: counted, not refused
        good = {f.index for f in sim.served if f.intact} & set(outcome.indices)
        between = [f for f in sim.served if not f.intact and min(good) < f.index < max(good)]
        assert drv.lost_records == len(between) and drv.counter_gaps >= 1
    elif fault == "garbage":
        assert outcome.unserved > 0 and outcome.reasons == {"format": outcome.unserved}
    else:
        assert not outcome.reasons and len(outcome.values) == FRAMES
    if fault in ("none", "nan", "slow", "clock_drift", "garbage"):
        assert (drv.counter_gaps, drv.lost_records) == (0, 0)
    if fault == "nan":
        assert any(None in values for values in outcome.values)
    else:
        assert all(None not in values for values in outcome.values)


def test_silence_under_no_output_shows_as_a_counted_gap_in_good_records(tmp_path: Path) -> None:
    drv = make_driver()
    with serial_link(tmp_path) as (sim, port):
        before = read_frames(port, drv.terminator, 10, TIMEOUT_S)
        sim.set_fault("no_output")
        read_frames(port, drv.terminator, 2, 0.2)  # a frame may be on its way
        silent = read_frames(port, drv.terminator, 1, 0.5)
        sim.set_fault("none")
        after = read_frames(port, drv.terminator, 10, TIMEOUT_S)
    assert silent == []
    outcome = check_frames(drv, before + after, sim.served, corrupt_reason="checksum")
    assert len(outcome.values) == 20 and not outcome.reasons
    skipped = outcome.indices[10] - outcome.indices[9] - 1  # samples the instrument measured but did not send
    assert skipped > 0 and drv.counter_gaps == 1 and drv.lost_records == skipped % 64


def test_serial_disconnect_and_return_loses_no_parsed_value(tmp_path: Path) -> None:
    drv = make_driver()
    with serial_link(tmp_path, disconnect_s=0.3) as (sim, port):
        frames = read_frames(port, drv.terminator, 10, TIMEOUT_S)
        sim.set_fault("disconnect")
        frames += read_frames(port, drv.terminator, 20, TIMEOUT_S)
    outcome = check_frames(drv, frames, sim.served, corrupt_reason="checksum")
    assert sim.reconnects == 1 and len(outcome.values) == 30 and not outcome.reasons


def test_tcp_disconnect_then_reconnect() -> None:
    drv = make_driver()
    frames: list[bytes] = []
    with IrgasonSimulator("tcp://127.0.0.1:0", frequency_hz=RATE_HZ, disconnect_s=0.3) as sim:
        sock = connect(sim.tcp_endpoint)
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
        first = check_frames(drv, frames, sim.served, corrupt_reason="checksum")
        drv.reset()  # what the runner does after a reconnect
        with sock:
            later = read_frames(sock, drv.terminator, 10, TIMEOUT_S)
    second = check_frames(drv, later, sim.served, corrupt_reason="checksum")
    assert len(first.values) + len(second.values) == 20 and sim.reconnects == 1
    assert (drv.counter_gaps, drv.lost_records) == (0, 0)


def test_sinkwatch_simulate_irgason_serves_a_pty_until_interrupted() -> None:
    # the console script, as an operator runs it: the entry point is registered and main() serves
    process = subprocess.Popen([str(Path(sys.executable).with_name("sinkwatch")), "simulate", "irgason", "--port",
                                "pty"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()
        match = re.search(r"port at (\S+)$", first_line.strip())
        assert match, f"unexpected first line {first_line!r}"
        drv = make_driver()
        with serial.Serial(match.group(1), 115200, timeout=0.05) as port:
            frames = read_frames(port, drv.terminator, 30, TIMEOUT_S)
        parsed = [drv.parse(frame) for frame in frames[1:]]  # the first may be the tail of a frame
        assert len(parsed) == 29 and drv.counter_gaps == 0
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=30)  # a loaded host may take seconds to stop
        assert process.returncode == 0 and "stopped after" in out
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
