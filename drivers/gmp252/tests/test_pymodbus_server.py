"""The driver against a slave that is not ours: pymodbus' serial server on a socat PTY, serving the GMP252 map of
User Guide M211897EN-D App. A (floats low word first), through the station's shared RS-485 line and through the
driver's own pymodbus client; and pymodbus' Modbus TCP server on loopback."""

from __future__ import annotations

import struct

import pytest

from drivers.gmp252.driver import GMP252Config, GMP252Driver
from gateway.driver_api import RtuSerialLine, SerialSettings
from gateway.model import QualityFlag
from gateway.testing.pymodbus_server import RegisterMap, pymodbus_rtu_server
from gateway.testing.serial_pty import socat_ptys_or_skip

pytestmark = pytest.mark.integration

ADDRESS = 240


def low_word_first(value: float) -> list[int]:
    """The manual's wire order: 412.5 ppm = 0x43CE4000 is sent as 0x4000, 0x43CE."""
    high, low = struct.unpack(">HH", struct.pack(">f", value))
    return [low, high]


def gmp252_map(co2: float, temperature: float, *, device_status: int | None = 0, co2_status: int = 0,
               error_code: int = 0) -> RegisterMap:
    words = dict(enumerate(low_word_first(co2)))
    words.update({4 + i: w for i, w in enumerate(low_word_first(temperature))})
    words.update({0x0100: round(co2) & 0xFFFF, 0x0101: round(temperature * 10) & 0xFFFF})
    if device_status is not None:  # a map without the status registers when None
        words.update({0x0800: device_status, 0x0801: co2_status, 0x0802: 0,
                      0x0803: error_code & 0xFFFF, 0x0804: error_code >> 16})
    return words


ptys = pytest.fixture(socat_ptys_or_skip, name="ptys")


def poll(port: str, shared_line: bool, polls: int = 3) -> list[dict[str, tuple[float | None, QualityFlag, str | None]]]:
    driver = GMP252Driver(GMP252Config.model_validate({"name": "co2", "port": port, "timeout_s": 2.0}),
                          station="st1", clock_synced=lambda: True)
    line = RtuSerialLine(SerialSettings(port, 19200, 8, "N", 2)) if shared_line else None
    if line is not None:
        driver.attach(line)
    try:
        return [{r.variable: (r.value, r.qc, r.qc_reason) for r in driver.poll()} for _ in range(polls)]
    finally:
        driver.close()
        if line is not None:
            line.close()


@pytest.mark.parametrize("shared_line", [True, False], ids=["station_line", "own_client"])
def test_values_served_by_pymodbus_are_read(ptys: tuple[str, str], shared_line: bool) -> None:
    with pymodbus_rtu_server(ptys[0], {ADDRESS: gmp252_map(412.5, 18.25)}, stopbits=2) as server:
        polls = poll(ptys[1], shared_line)
    assert polls == [{"CO2": (412.5, QualityFlag.GOOD, None), "T_PROBE": (18.25, QualityFlag.GOOD, None)}] * 3
    assert server.requests >= 3 * 3  # CO2, temperature and status each poll


def test_a_warning_status_served_by_pymodbus_flags_both_values(ptys: tuple[str, str]) -> None:
    served = gmp252_map(600.0, 21.5, device_status=4, error_code=0x4000)
    with pymodbus_rtu_server(ptys[0], {ADDRESS: served}, stopbits=2):
        polls = poll(ptys[1], shared_line=True, polls=1)
    for variable, value in (("CO2", 600.0), ("T_PROBE", 21.5)):
        got, flag, reason = polls[0][variable]
        assert (got, flag) == (value, QualityFlag.SUSPECT)
        assert reason is not None and "device status 4" in reason and "0x00004000" in reason


def test_a_pymodbus_map_without_status_registers_still_gives_the_values(ptys: tuple[str, str]) -> None:
    with pymodbus_rtu_server(ptys[0], {ADDRESS: gmp252_map(455.0, 9.5, device_status=None)}, stopbits=2):
        polls = poll(ptys[1], shared_line=True)
    for one in polls:
        assert one["CO2"][:2] == (455.0, QualityFlag.SUSPECT)
        assert one["T_PROBE"][:2] == (9.5, QualityFlag.SUSPECT)
        assert "0x0800" in str(one["CO2"][2])



def test_values_served_by_pymodbus_over_modbus_tcp_are_read() -> None:
    """A serial-to-Ethernet gateway, or an independent simulator serving Modbus TCP: the driver's `tcp://` port."""
    from gateway.net import free_port

    port = f"tcp://127.0.0.1:{free_port()}"
    with pymodbus_rtu_server(port, {ADDRESS: gmp252_map(398.75, -2.5)}) as server:
        driver = GMP252Driver(GMP252Config.model_validate({"name": "co2", "port": port, "timeout_s": 2.0}),
                              station="st1", clock_synced=lambda: True)
        try:
            polls = [{r.variable: (r.value, r.qc) for r in driver.poll()} for _ in range(2)]
        finally:
            driver.close()
    assert polls == [{"CO2": (398.75, QualityFlag.GOOD), "T_PROBE": (-2.5, QualityFlag.GOOD)}] * 2
    assert server.requests >= 2 * 3
