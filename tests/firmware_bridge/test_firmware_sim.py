"""The host driver against the real firmware running under simavr: voltages on the emulated ADC and an emulated
SDI-12 sensor go through the firmware's own code to the host. Bad input, reset and rollover included."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import serial

from firmware_bridge import protocol as p
from firmware_bridge.driver import FirmwareBridgeConfig, FirmwareBridgeDriver
from firmware_bridge.link import BoardRefused, BridgeLink
from firmware_bridge.simulator import EmulatedBoard, FirmwareBuild, build_once
from gateway.driver_api import DeviceError, FailureKind
from gateway.model import QualityFlag, TimeSource

pytestmark = pytest.mark.integration

EXC_MV = 2500
RANGE_UM = 11000.0  # ecomatik_dr1
# how far a reading's host time may stray from the moments around its sampling: the clock mapping's error, which a
# loaded machine widens (the checks are against jumps of seconds to days, not against the mapping's accuracy)
CLOCK_SLACK = timedelta(seconds=1)


@pytest.fixture(scope="session")
def firmware_build() -> FirmwareBuild:
    return build_once()


@pytest.fixture
def board(firmware_build: FirmwareBuild) -> Iterator[EmulatedBoard]:
    with EmulatedBoard(firmware_build.harness, firmware_build.elf) as emulated:
        yield emulated


def expected_change_um(mv: int, reference_mv: int) -> float:
    return (mv - reference_mv) / EXC_MV * RANGE_UM


def tolerance_um() -> float:
    # two ADC counts (10 bit against a 5 V AVcc) of the wiper, relative to the excitation's counts
    return 2 * RANGE_UM / (EXC_MV * 1024 / 5000)


def make_driver(board: EmulatedBoard, **extra: object) -> FirmwareBridgeDriver:
    config = FirmwareBridgeConfig.model_validate({
        "name": "dendro", "driver": "firmware_bridge", "port": board.port, "sample_interval_ms": 200,
        "analog": [{"channel": 0, "model": "ecomatik_dr1", "variable_suffix": "_1_1_1"},
                   {"channel": 1, "model": "ecomatik_dr1", "reference_um": 0.0}],
        "sdi12": [{"address": "0", "model": "teros12"}], **extra})
    return FirmwareBridgeDriver(config, station="tower01", host_clock_synced=lambda: True)


def test_dendrometers_and_sdi12_through_the_firmware(board: EmulatedBoard) -> None:
    board.set_voltage(7, EXC_MV)
    board.set_voltage(0, 1000)
    board.set_voltage(1, 1500)
    board.set_sdi12("0", "+2009.87+22.3+112")
    driver = make_driver(board)
    driver.open()
    before = datetime.now(UTC)
    time.sleep(0.5)
    first = driver.poll()
    board.set_voltage(0, 1010)  # +44 um of radius
    time.sleep(0.6)
    second = driver.poll()
    after = datetime.now(UTC)
    driver.close()
    radius = [r for r in first + second if r.variable == "STEM_RAD_CHG_1_1_1"]
    absolute = [r for r in first + second if r.variable == "STEM_RAD_CHG"]
    assert len(radius) >= 4 and len(absolute) >= 4
    assert radius[0].value == 0.0  # the first reading is the reference
    assert radius[-1].value == pytest.approx(expected_change_um(1010, 1000), abs=tolerance_um())
    assert absolute[-1].value == pytest.approx(1500 / EXC_MV * RANGE_UM, abs=tolerance_um())
    times = [r.time for r in radius]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert all(before - timedelta(seconds=0.5) <= t <= after for t in times)
    assert all(r.time_source == TimeSource.BOARD and r.clock_synced and r.qc == QualityFlag.GOOD for r in radius)
    soil = {r.variable: r for r in first if r.sensor == "dendro.sdi0"}
    assert soil["SWC"].value == pytest.approx(100 * (3.879e-4 * 2009.87 - 0.6956), abs=1e-3)
    assert soil["TS"].value == 22.3 and soil["EC_SOIL"].value == 112.0
    assert before <= soil["TS"].time <= after


def test_missing_sdi12_sensor_is_an_explicit_gap(board: EmulatedBoard) -> None:
    board.set_voltage(7, EXC_MV)
    driver = make_driver(board, sdi12_timeout_ms=100)
    driver.open()
    readings = driver.poll()
    soil = [r for r in readings if r.sensor == "dendro.sdi0"]
    assert {r.variable for r in soil} == {"SWC", "TS", "EC_SOIL"}
    assert all(r.value is None and r.qc == QualityFlag.MISSING and "NO_REPLY" in (r.qc_reason or "") for r in soil)
    driver.close()


def test_garbage_crc_errors_unknown_type_and_version_are_counted_not_fatal(board: EmulatedBoard) -> None:
    link = BridgeLink(board.port, timeout_s=0.5, retries=0)
    link.open()
    assert link._serial is not None
    link._serial.write(b"\x13\x37\xff\xfe\x00\x02\x41\x00")  # garbage, a short frame
    bad = bytearray(p.Frame(p.MsgType.IDENTIFY, 9).encode())
    bad[2] ^= 0x10
    link._serial.write(b"\x00" + bytes(bad))  # a CRC error
    link._serial.write(b"\x00" + p.Frame(p.MsgType.IDENTIFY, 10).encode()[:4])  # truncated
    with pytest.raises(BoardRefused) as unknown:
        link.request(0x55)  # type: ignore[arg-type]
    assert unknown.value.error.code == p.ErrorCode.UNKNOWN_TYPE
    link._serial.write(b"\x00" + p.Frame(p.MsgType.IDENTIFY, 11, version=2).encode())
    time.sleep(0.2)
    with pytest.raises(BoardRefused):  # the v2 frame's answer is stale by now; the board refuses v2 anyway
        link.request(p.MsgType.RECORDS, b"\x00")
    status = p.BoardStatus.decode(link.request(p.MsgType.STATUS).frame.body)
    link.close()
    assert status.counters["crc_errors"] == 1
    assert status.counters["framing_errors"] == 3  # garbage, short frame, truncated frame
    assert status.counters["unknown_type"] == 1 and status.counters["version_mismatch"] == 1


def test_host_refuses_a_board_speaking_another_version(board: EmulatedBoard) -> None:
    # a board answering in protocol 2 is simulated by echoing a v2 frame into the host's decoder
    driver = make_driver(board)
    driver.open()
    driver.link.decoder.feed(b"")
    link = driver.link
    original = link.drain

    def drain_v2() -> list[p.Frame]:
        link.decoder.counters.frames += 0
        return [f for f in link.decoder.feed(p.Frame(p.MsgType.TIME_REPLY, 1, bytes(6), version=2).encode())
                if not link._unsolicited(f)] + original()

    link.drain = drain_v2  # type: ignore[method-assign]
    with pytest.raises(DeviceError) as failure:
        driver.poll()
    assert failure.value.kind == FailureKind.PROTOCOL and "protocol version 2" in str(failure.value)
    assert link.counters.version_mismatch == 1
    driver.close()


def test_board_reset_mid_session_is_detected_and_never_mis_stamped(board: EmulatedBoard) -> None:
    board.set_voltage(7, EXC_MV)
    board.set_voltage(0, 1000)
    driver = make_driver(board, sdi12=[])
    driver.open()
    time.sleep(0.5)
    driver.poll()
    boot_before = driver.clock.boot_id
    reset_at = datetime.now(UTC)
    board.reset()
    time.sleep(0.6)
    after_reset = driver.poll()  # re-synchronises, re-configures; no record of the old boot is mapped
    time.sleep(0.6)
    later = driver.poll()
    now = datetime.now(UTC)
    assert driver.clock.boot_id != boot_before and driver.clock.counters.resets == 1
    assert driver.link.counters.hellos >= 1
    for reading in after_reset + later:
        # sampled after the reset (a second's slack for the clock mapping on a loaded machine), never by old boot
        assert reset_at - CLOCK_SLACK <= reading.time <= now + CLOCK_SLACK
    assert later, "sampling resumed after the reset"
    driver.close()


def test_board_clock_rollover(board: EmulatedBoard) -> None:
    board.set_voltage(7, EXC_MV)
    board.set_voltage(0, 1000)
    driver = make_driver(board, sdi12=[], sample_interval_ms=100)
    driver.open()
    set_at = datetime.now(UTC)
    driver.link.request(p.MsgType.TIME, p.encode_time_request(0xFFFFFFFF - 600))  # 0.6 s before the wrap
    driver.clock.forget()
    driver.poll()
    time.sleep(1.2)
    readings = driver.poll()
    now = datetime.now(UTC)
    assert driver.clock.counters.rollovers == 1
    times = [r.time for r in readings if r.variable == "STEM_RAD_CHG_1_1_1"]
    assert len(times) >= 8 and times == sorted(times)
    assert all(set_at - CLOCK_SLACK <= t <= now + CLOCK_SLACK for t in times)  # none 49.7 days off
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert all(0.05 <= g <= 0.2 for g in gaps), gaps  # no jump of 49.7 days at the wrap
    driver.close()


def test_port_that_goes_away_is_no_port_and_reconnects(board: EmulatedBoard) -> None:
    driver = make_driver(board, sdi12=[])
    driver.link.port = "/dev/does-not-exist"
    with pytest.raises(DeviceError) as failure:
        driver.open()
    assert failure.value.kind == FailureKind.NO_PORT
    driver.link.port = board.port
    driver.open()
    assert driver.identity is not None and driver.identity.board_id == "SWFB0001"
    driver.close()
    with serial.Serial(board.port, 38400, timeout=0.1):
        pass
