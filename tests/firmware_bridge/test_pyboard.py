"""The Python board (firmware_bridge/pyboard.py) against the protocol's exchange vectors byte for byte — the vectors
the C firmware passes (tests/firmware_bridge/test_vectors.py) — and the host driver against it over a socat PTY, as
the simavr tests run it against the real firmware."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from firmware_bridge import protocol as p
from firmware_bridge.driver import FirmwareBridgeConfig, FirmwareBridgeDriver
from firmware_bridge.link import BridgeLink
from firmware_bridge.pyboard import PythonBoard, stem_signal
from firmware_bridge.sdi12 import crc16_arc, crc_chars
from gateway.model import QualityFlag, TimeSource
from gateway.testing.serial_pty import socat_pty_pair

VECTORS = json.loads((Path(p.__file__).parent / "vectors" / "protocol-v1.json").read_text())
EXC_MV = 2500
RANGE_UM = 11000.0  # ecomatik_dr1


def vector_board(exchange: dict[str, Any]) -> tuple[PythonBoard, list[tuple[int, str]]]:
    setup = VECTORS["board"]
    answers: list[tuple[int, str]] = []
    board = PythonBoard(boot_id=setup["boot_id"], reset_cause=setup["reset_cause"], board_id=setup["board_id"],
                        sdi12=lambda _command, _timeout: answers.pop(0))
    board.hold_millis(setup["millis"])
    return board, answers


@pytest.mark.parametrize("exchange", VECTORS["exchanges"], ids=lambda v: v["name"])
def test_the_python_board_answers_every_vector_byte_for_byte(exchange: dict[str, Any]) -> None:
    board, answers = vector_board(exchange)
    checked = 0
    for step in exchange["steps"]:
        op = step["op"]
        if op == "send":
            assert board.receive(bytes.fromhex(step["wire"])).hex() == step["expect"], step
            checked += 1
        elif op == "hello":
            assert board.hello().hex() == step["expect"]
            checked += 1
        elif op == "millis":
            board.hold_millis(step["value"])
        elif op == "adc":
            board.set_adc(step["channel"], step["value"])
        elif op == "poll":
            board.poll()
        elif op == "sdi12":
            answers.append((step["status"], step["reply"]))
        else:
            raise AssertionError(f"unknown vector op {op!r}")
    assert checked > 0


@pytest.fixture
def board(tmp_path: Path) -> Iterator[PythonBoard]:
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed (Debian package socat)")
    with socat_pty_pair(tmp_path) as (board_end, host_end), PythonBoard(board_end, board_id="SWFB0001") as running:
        running.port = host_end  # where the host opens it, as EmulatedBoard.port
        yield running


def make_driver(board: PythonBoard, **extra: object) -> FirmwareBridgeDriver:
    config = FirmwareBridgeConfig.model_validate({
        "name": "dendro", "driver": "firmware_bridge", "port": board.port, "sample_interval_ms": 200,
        "analog": [{"channel": 0, "model": "ecomatik_dr1", "variable_suffix": "_1_1_1"},
                   {"channel": 1, "model": "ecomatik_dr1", "reference_um": 0.0}], **extra})
    return FirmwareBridgeDriver(config, station="tower01", host_clock_synced=lambda: True)


def tolerance_um() -> float:
    return 2 * RANGE_UM / (EXC_MV * 1024 / 5000)  # two ADC counts of the wiper, as the simavr test


@pytest.mark.integration
def test_dendrometers_through_the_python_board(board: PythonBoard) -> None:
    board.set_voltage(7, EXC_MV)
    board.set_voltage(0, 1000)
    board.set_voltage(1, 1500)
    driver = make_driver(board)
    driver.open()
    before = datetime.now(UTC)
    time.sleep(0.5)
    first = driver.poll()
    board.set_voltage(0, 1010)  # +44 um of radius
    time.sleep(0.6)
    second = driver.poll()
    after = datetime.now(UTC)
    assert driver.identity is not None and driver.identity.board_id == "SWFB0001"
    driver.close()
    radius = [r for r in first + second if r.variable == "STEM_RAD_CHG_1_1_1"]
    absolute = [r for r in first + second if r.variable == "STEM_RAD_CHG"]
    assert len(radius) >= 4 and len(absolute) >= 4
    assert radius[0].value == 0.0
    assert radius[-1].value == pytest.approx((1010 - 1000) / EXC_MV * RANGE_UM, abs=tolerance_um())
    assert absolute[-1].value == pytest.approx(1500 / EXC_MV * RANGE_UM, abs=tolerance_um())
    times = [r.time for r in radius]
    assert times == sorted(times) and len(set(times)) == len(times)  # acknowledged records are not sent twice
    assert all(before - timedelta(seconds=0.5) <= t <= after for t in times)
    assert all(r.time_source == TimeSource.BOARD and r.clock_synced and r.qc == QualityFlag.GOOD for r in radius)


@pytest.mark.integration
def test_a_stem_signal_is_followed_and_an_unpolled_ring_overflows_counted(board: PythonBoard) -> None:
    board.set_voltage(7, EXC_MV)
    board.set_signal(0, stem_signal(RANGE_UM, EXC_MV, lambda t: 5000.0 + 100.0 * (t % 10.0)))
    driver = make_driver(board, analog=[{"channel": 0, "model": "ecomatik_dr1", "reference_um": 0.0}])
    driver.open()
    time.sleep(0.6)
    readings = driver.poll()
    assert readings and all(5000 - tolerance_um() <= (r.value or 0) <= 6000 + tolerance_um() for r in readings)
    time.sleep(24 * 0.2 + 1.5)  # more records than the ring holds
    link = BridgeLink(board.port, timeout_s=0.5, retries=0)
    driver.close()
    link.open()
    status = p.BoardStatus.decode(link.request(p.MsgType.STATUS).frame.body)
    link.close()
    assert status.pending_records == 24 and status.counters["records_dropped"] > 0


class SplittingTeros12:
    """A TEROS 12 at address 0 that puts its values in D0 and D1, as SDI-12 v1.4 sec. 4.4.8 allows (an
    independent simulator may do so; our firmware harness answers D0 only). CRC on every data reply after aMC!."""

    def __init__(self, parts: tuple[str, ...], *, crc_commands: bool = True) -> None:
        self.parts = parts
        self.crc_commands = crc_commands  # False: silent to aMC!, as a sensor without the optional CRC commands
        self.crc = False
        self.commands: list[str] = []

    def __call__(self, command: str, _timeout_ms: int) -> tuple[int, str]:
        self.commands.append(command)
        if command == "0M!" or (command == "0MC!" and self.crc_commands):
            self.crc = command == "0MC!"
            return p.Sdi12Status.OK, "00003\r\n"
        if command.startswith("0D") and command.endswith("!"):
            index = int(command[2:-1])
            text = "0" + (self.parts[index] if index < len(self.parts) else "")
            return p.Sdi12Status.OK, text + (crc_chars(crc16_arc(text)) if self.crc else "") + "\r\n"
        return p.Sdi12Status.NO_REPLY, ""


def sdi12_readings(tmp_path: Path, sensor: SplittingTeros12, polls: int = 1) -> dict[str, Any]:
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed (Debian package socat)")
    with socat_pty_pair(tmp_path) as (board_end, host_end), PythonBoard(board_end, sdi12=sensor):
        config = FirmwareBridgeConfig.model_validate({
            "name": "dendro", "driver": "firmware_bridge", "port": host_end, "sample_interval_ms": 200,
            "sdi12_timeout_ms": 100, "sdi12": [{"address": "0", "model": "teros12"}]})
        driver = FirmwareBridgeDriver(config, station="tower01", host_clock_synced=lambda: True)
        driver.open()
        try:
            readings = [r for _ in range(polls) for r in driver.poll()]
        finally:
            driver.close()
    return {r.variable: r for r in readings if r.sensor.endswith(".sdi0")}


@pytest.mark.integration
def test_sdi12_values_spread_over_d0_and_d1_are_all_read(tmp_path: Path) -> None:
    sensor = SplittingTeros12(("+2009.87+22.3", "+112"))
    readings = sdi12_readings(tmp_path, sensor)
    assert [c for c in sensor.commands if "D" in c] == ["0D0!", "0D1!"]
    assert readings["SWC"].value == pytest.approx(100 * (3.879e-4 * 2009.87 - 0.6956), abs=1e-3)
    assert readings["TS"].value == 22.3 and readings["EC_SOIL"].value == 112.0
    assert all(r.qc is QualityFlag.GOOD for r in readings.values())


@pytest.mark.integration
def test_sdi12_values_missing_from_every_d_reply_are_a_missing_reading_with_the_reason(tmp_path: Path) -> None:
    sensor = SplittingTeros12(("+2009.87+22.3",))  # D1 answers "0" + CRC: no more values
    readings = sdi12_readings(tmp_path, sensor)
    assert [c for c in sensor.commands if "D" in c] == ["0D0!", "0D1!"]
    assert readings and all(r.value is None and r.qc is QualityFlag.MISSING for r in readings.values())
    assert all("2 of the 3 values" in (r.qc_reason or "") for r in readings.values())


@pytest.mark.integration
def test_a_sensor_silent_to_amc_is_measured_with_am_and_without_crc(tmp_path: Path) -> None:
    sensor = SplittingTeros12(("+2009.87+22.3+112",), crc_commands=False)
    readings = sdi12_readings(tmp_path, sensor, polls=2)
    assert sensor.commands == ["0MC!", "0M!", "0D0!", "0M!", "0D0!"]  # the fallback is remembered
    assert readings["TS"].value == 22.3 and readings["EC_SOIL"].value == 112.0
    assert all(r.qc is QualityFlag.GOOD for r in readings.values())
