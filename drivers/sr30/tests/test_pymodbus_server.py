"""The driver against a slave that is not ours: pymodbus' serial server on a socat PTY serving the SR30-D1 map
(32-bit values most significant word first, scaling-factor registers, the diagnostics block), through the station's
RS-485 master. At 8N1, not the factory 8E1: pymodbus' serial server set to even parity receives nothing on a
pseudo-terminal (which carries no parity bits), so parity is not what these tests are about."""

from __future__ import annotations

import pytest

from drivers.sr30.driver import SR30Config, SR30Driver
from gateway.driver_api import RtuSerialLine, SerialSettings
from gateway.model import QualityFlag
from gateway.testing.pymodbus_server import pymodbus_rtu_server
from gateway.testing.serial_pty import socat_ptys_or_skip

pytestmark = pytest.mark.integration


def sr30_map(irradiance_raw: int, body_temperature_raw: int, *, fan_rpm: int) -> dict[int, int]:
    words = {0x00: 1, 0x01: 5}
    for address, raw in ((0x02, irradiance_raw), (0x04, irradiance_raw + 150)):
        raw &= 0xFFFFFFFF
        words.update({address: raw >> 16, address + 1: raw & 0xFFFF})  # most significant word first
    words.update({0x06: body_temperature_raw & 0xFFFF, 0x07: 1234, 0x08: 100, 0x09: 100, 0x0A: 0, 0x0B: 0})
    words.update({0x62: 1500, 0x63: 2210, 0xC2: 30, 0xC3: 0, 0xC4: fan_rpm, 0xC5: 0, 0xC6: 0})
    return words


ptys = pytest.fixture(socat_ptys_or_skip, name="ptys")


@pytest.mark.parametrize("function", [3, 4])
def test_irradiance_and_body_temperature_served_by_pymodbus(ptys: tuple[str, str], function: int) -> None:
    driver = SR30Driver(SR30Config.model_validate({"name": "sw_in", "port": ptys[1], "function": function,
                                                   "timeout_s": 2.0, "diagnostics_every_n_polls": 1,
                                                   "parity": "N"}),
                        station="st1")
    line = RtuSerialLine(SerialSettings(ptys[1], 19200, 8, "N", 1))
    driver.attach(line)
    try:
        with pymodbus_rtu_server(ptys[0], {1: sr30_map(97359, -512, fan_rpm=4000)}):
            polls = [{r.variable: (r.value, r.qc) for r in driver.poll()} for _ in range(2)]
    finally:
        line.close()
    assert polls == [{"SW_IN": (973.59, QualityFlag.GOOD), "T_PROBE": (-5.12, QualityFlag.GOOD)}] * 2


def test_a_stopped_ventilator_served_by_pymodbus_makes_sw_in_suspect(ptys: tuple[str, str]) -> None:
    driver = SR30Driver(SR30Config.model_validate({"name": "sw_in", "port": ptys[1], "timeout_s": 2.0,
                                                   "diagnostics_every_n_polls": 1, "parity": "N"}),
                        station="st1")
    line = RtuSerialLine(SerialSettings(ptys[1], 19200, 8, "N", 1))
    driver.attach(line)
    try:
        with pymodbus_rtu_server(ptys[0], {1: sr30_map(50000, 2000, fan_rpm=0)}):
            readings = {r.variable: r for r in driver.poll()}
    finally:
        line.close()
    assert readings["SW_IN"].value == 500.0 and readings["SW_IN"].qc is QualityFlag.SUSPECT
    assert readings["SW_IN"].qc_reason is not None and "ventilator" in readings["SW_IN"].qc_reason
