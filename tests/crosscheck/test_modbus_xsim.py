"""Modbus devices against a slave that is not ours (pymodbus' serial server on a socat PTY), serving what a
conforming device may legitimately send, through the station's RS-485 master as the daemon drives it.

Sources: Vaisala GMP252 User Guide M211897EN-D App. A (CO2 float at register 1, low word first, the worked example
`D47A 43E8` = 465.66 ppm) and M211897EN-E "Status registers"; Vaisala GMW80 User Guide M211748EN-G App. A (an
unavailable float is a quiet NaN, sent as a normal reply); Vaisala GMW90 guide (exception replies); ComWinTop THC-S
manual (soil probe layout A, signed temperature x10); the Modbus RTU ground rules (exception 02 for a register
outside the device's map)."""

from __future__ import annotations

import struct

import pytest

from drivers.gmp252.driver import GMP252Config, GMP252Driver
from drivers.soilprobe.driver import SoilProbeConfig, SoilProbeDriver
from drivers.sr30.driver import SR30Config, SR30Driver
from gateway.driver_api import DeviceError, RtuSerialLine, SerialSettings
from gateway.model import QualityFlag
from gateway.testing.pymodbus_server import pymodbus_rtu_server
from gateway.testing.serial_pty import socat_ptys_or_skip
from tests.crosscheck.rawrtu import RawSlave, framed

pytestmark = pytest.mark.integration

ptys = pytest.fixture(socat_ptys_or_skip, name="ptys")

QNAN = (0x0000, 0x7FC0)  # 0x7FC00000, low word first


def cdab(value: float) -> tuple[int, int]:
    high, low = struct.unpack(">HH", struct.pack(">f", value))
    return low, high


def gmp252(co2: tuple[int, int], temperature: tuple[int, int] | None, *, device_status: int = 0,
           co2_status: int = 0, error_code: int = 0) -> dict[int, int]:
    words = {0: co2[0], 1: co2[1]}
    if temperature is not None:  # register 5 is not in the manual's table: a probe may refuse it
        words.update({4: temperature[0], 5: temperature[1]})
    words.update({0x0800: device_status, 0x0801: co2_status, 0x0802: 0, 0x0803: error_code & 0xFFFF,
                  0x0804: error_code >> 16})
    return words


Polled = dict[str, tuple[float | None, QualityFlag, str | None]]


def poll_gmp252(port: str, address: int, polls: int = 2) -> list[Polled]:
    driver = GMP252Driver(GMP252Config.model_validate({"name": "co2", "port": port, "address": address,
                                                      "timeout_s": 2.0}), station="st1", clock_synced=lambda: True)
    line = RtuSerialLine(SerialSettings(port, 19200, 8, "N", 2))
    driver.attach(line)
    try:
        return [{r.variable: (r.value, r.qc, r.qc_reason) for r in driver.poll()} for _ in range(polls)]
    finally:
        line.close()


def test_gmp252_the_manuals_worked_example_at_another_address(ptys: tuple[str, str]) -> None:
    served = gmp252((0xD47A, 0x43E8), cdab(-7.5))
    with pymodbus_rtu_server(ptys[0], {17: served}, stopbits=2):
        polls = poll_gmp252(ptys[1], 17)
    co2, flag, _ = polls[-1]["CO2"]
    assert co2 == pytest.approx(465.66, abs=0.005) and flag is QualityFlag.GOOD
    assert polls[-1]["T_PROBE"][:2] == (-7.5, QualityFlag.GOOD)


def test_gmp252_a_quiet_nan_is_a_missing_value_not_a_number(ptys: tuple[str, str]) -> None:
    with pymodbus_rtu_server(ptys[0], {240: gmp252(QNAN, QNAN, co2_status=256)}, stopbits=2):
        polls = poll_gmp252(ptys[1], 240)
    for variable in ("CO2", "T_PROBE"):
        value, flag, reason = polls[-1][variable]
        assert (value, flag) == (None, QualityFlag.MISSING) and reason


@pytest.mark.parametrize(("co2_status", "device_status", "co2_flag", "t_flag"), [
    (2, 0, QualityFlag.SUSPECT, QualityFlag.GOOD),  # start-up: reading unreliable
    (256, 0, QualityFlag.SUSPECT, QualityFlag.GOOD),  # start-up: not ready
    (0, 2, QualityFlag.BAD, QualityFlag.BAD),  # error
    (0, 1, QualityFlag.BAD, QualityFlag.BAD),  # critical
    (0, 6, QualityFlag.BAD, QualityFlag.BAD),  # error + warning, summed
])
def test_gmp252_status_registers_set_the_quality(ptys: tuple[str, str], co2_status: int, device_status: int,
                                                 co2_flag: QualityFlag, t_flag: QualityFlag) -> None:
    served = gmp252(cdab(612.25), cdab(20.5), co2_status=co2_status, device_status=device_status,
                    error_code=0x2000 if device_status else 0)
    with pymodbus_rtu_server(ptys[0], {240: served}, stopbits=2):
        polls = poll_gmp252(ptys[1], 240, polls=1)
    assert polls[0]["CO2"][:2] == (612.25, co2_flag)
    assert polls[0]["T_PROBE"][:2] == (20.5, t_flag)
    if device_status:
        assert "0x00002000" in str(polls[0]["CO2"][2])


def test_gmp252_without_the_temperature_register_still_gives_co2(ptys: tuple[str, str]) -> None:
    with pymodbus_rtu_server(ptys[0], {240: gmp252(cdab(401.0), None)}, stopbits=2):
        polls = poll_gmp252(ptys[1], 240)
    assert polls[-1]["CO2"][:2] == (401.0, QualityFlag.GOOD)
    value, flag, reason = polls[-1]["T_PROBE"]
    assert (value, flag) == (None, QualityFlag.MISSING) and "exception 02" in str(reason)


def soil_poll(port: str, registers: dict[int, int], **config: object) -> list[tuple[str, float, QualityFlag]]:
    line = RtuSerialLine(SerialSettings(port, 9600, 8, "N", 1))
    driver = SoilProbeDriver(SoilProbeConfig.model_validate({"name": "soil", "port": port, "layout": "A",
                                                            "timeout_s": 2.0, **config}), station="st1")
    driver.attach(line)
    try:
        return [(r.variable, r.value, r.qc) for r in driver.poll() if r.value is not None]
    finally:
        line.close()


def test_soil_probe_layout_a_negative_temperature(ptys: tuple[str, str]) -> None:
    """THC-S: temperature x10 in two's complement; 0xFF9B is -10.1 degC."""
    with pymodbus_rtu_server(ptys[0], {1: {0: 0x013B, 1: 0xFF9B, 2: 0x0000, 3: 0, 4: 0}}, baudrate=9600):
        read = soil_poll(ptys[1], {})
    assert read == [("SWC", 31.5, QualityFlag.GOOD), ("TS", -10.1, QualityFlag.GOOD),
                    ("EC_SOIL", 0.0, QualityFlag.GOOD)]


def test_soil_probe_with_two_registers_refuses_the_ec_read_clearly(ptys: tuple[str, str]) -> None:
    """A probe whose map ends at the temperature (the reference's layout-A example reads two registers) answers
    exception 02 to a read of three: a clear error, and with read_ec false the two values."""
    two = {0: 0x013B, 1: 0xFFE9}
    with pymodbus_rtu_server(ptys[0], {1: two}, baudrate=9600):
        with pytest.raises(DeviceError) as info:
            soil_poll(ptys[1], two)
        read = soil_poll(ptys[1], two, read_ec=False)
    assert "02" in info.value.message or "illegal data address" in info.value.message.lower()
    assert "read_ec" in str(info.value.hint)
    assert read == [("SWC", 31.5, QualityFlag.GOOD), ("TS", -2.3, QualityFlag.GOOD)]


def test_sr30_a_slave_without_its_map_is_a_clear_error(ptys: tuple[str, str]) -> None:
    """Modbus ground rules: a register outside the device's map is answered with exception 02, never a value."""
    line = RtuSerialLine(SerialSettings(ptys[1], 19200, 8, "N", 1))
    driver = SR30Driver(SR30Config.model_validate({"name": "sw_in", "port": ptys[1], "timeout_s": 2.0,
                                                   "parity": "N"}), station="st1")
    driver.attach(line)
    try:
        with pymodbus_rtu_server(ptys[0], {1: {0x0100: 0}}), pytest.raises(DeviceError) as info:
            driver.poll()
    finally:
        line.close()
    assert "exception" in info.value.message.lower()


def test_the_reference_example_frames_are_what_our_crc_makes() -> None:
    """Our clean-room CRC gives the reference's EXAMPLE frames byte for byte (request, reply, exception)."""
    assert framed(bytes.fromhex("F0 03 00 00 00 02")) == bytes.fromhex("F0 03 00 00 00 02 D1 2A")
    assert framed(bytes.fromhex("F0 03 04 40 00 43 CE")) == bytes.fromhex("F0 03 04 40 00 43 CE BF 98")
    assert framed(bytes.fromhex("F0 83 02")) == bytes.fromhex("F0 83 02 91 02")


@pytest.mark.parametrize("code", [1, 3, 4, 6])
def test_gmp252_other_exception_replies_are_clear_errors(ptys: tuple[str, str], code: int) -> None:
    """Exception 01/03 (the ground rules' table) and 04/06 (device failure, busy) to the CO2 read: the poll fails
    with the exception named, never a value."""
    def answer(request: bytes) -> bytes:
        return framed(bytes([request[0], request[1] | 0x80, code]))

    with RawSlave(ptys[0], answer) as slave, pytest.raises(DeviceError) as info:
        poll_gmp252(ptys[1], 240, polls=1)
    assert f"exception {code:02d}" in info.value.message
    assert slave.requests and slave.requests[0][:2] == bytes([240, 3])


def test_gmp252_a_reply_from_another_address_is_not_taken(ptys: tuple[str, str]) -> None:
    """Another slave answering in the probe's place (a duplicate address on the bus, or an echo): 412.5 ppm from
    address 241 must not become probe 240's reading."""
    def answer(request: bytes) -> bytes:
        return framed(bytes([241, 3, 4, 0x40, 0x00, 0x43, 0xCE]))

    with RawSlave(ptys[0], answer), pytest.raises(DeviceError):
        poll_gmp252(ptys[1], 240, polls=1)
