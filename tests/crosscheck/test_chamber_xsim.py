"""The chamber's GMP252 against a clean-room slave (tests/crosscheck/rawrtu.py): what a conforming GMP252 may send
(GMP252 User Guide M211897EN-D App. A and M211897EN-E "Status registers": floats low word first, a quiet NaN for no
value, start-up CO2 status, exception 02 for a register outside the map), with a minimal digital I/O module beside
it whose limit-switch input follows the lid output, as the station's RS-485 master drives them."""

from __future__ import annotations

import struct

import pytest

from drivers.chamber.driver import ChamberConfig, ChamberDriver
from gateway.driver_api import RtuSerialLine, SerialSettings
from gateway.model import QualityFlag
from gateway.testing.serial_pty import socat_ptys_or_skip
from tests.crosscheck.rawrtu import RawSlave, framed

pytestmark = pytest.mark.integration

ptys = pytest.fixture(socat_ptys_or_skip, name="ptys")
IO, PROBE = 1, 240
QNAN = (0x0000, 0x7FC0)


def cdab(value: float) -> tuple[int, int]:
    high, low = struct.unpack(">HH", struct.pack(">f", value))
    return low, high


class Chamber:
    """The two slaves' answers: GMP252 registers (address -> word; absent = exception 02) and one lid output whose
    limit switch (DI1) follows it."""

    def __init__(self, probe: dict[int, int]) -> None:
        self.probe = probe
        self.coil = False

    def answer(self, request: bytes) -> bytes | None:
        address, function = request[0], request[1]
        start, count = struct.unpack(">HH", request[2:6])
        if address == IO:
            if function == 5:  # write single coil: the module echoes the request
                self.coil = request[4] == 0xFF
                return request
            if function == 2:
                return framed(bytes([IO, 2, 1, int(self.coil)]))
            if function == 3 and count == 1:  # control mode register: normal
                return framed(bytes([IO, 3, 2, 0, 0]))
            return framed(bytes([IO, function | 0x80, 1]))
        if address == PROBE and function == 3:
            if not all(a in self.probe for a in range(start, start + count)):
                return framed(bytes([PROBE, 0x83, 2]))
            data = b"".join(struct.pack(">H", self.probe[a]) for a in range(start, start + count))
            return framed(bytes([PROBE, 3, len(data)]) + data)
        return None


def probe_map(co2: tuple[int, int], temperature: tuple[int, int] | None, device: int = 0,
              co2_status: int = 0) -> dict[int, int]:
    words = {0: co2[0], 1: co2[1], 0x0800: device, 0x0801: co2_status}
    if temperature is not None:
        words.update({4: temperature[0], 5: temperature[1]})
    return words


def poll(ptys: tuple[str, str], served: Chamber) -> dict[str, tuple[float | None, QualityFlag, str | None]]:
    instrument_end, port = ptys
    config = ChamberConfig.model_validate({
        "name": "ch1", "port": port, "parity": "N", "io_address": IO, "analyzer_address": PROBE,
        "every_s": 3600.0, "closure_s": 300.0, "timeout_s": 1.0, "status_every_n_polls": 1})
    # 10 s into a closure: the lid is commanded closed and every poll records
    driver = ChamberDriver(config, station="st1", wall_clock=lambda: 3600.0 * 500_000 + 10.0,
                           clock_synced=lambda: True)
    line = RtuSerialLine(SerialSettings(port, 19200, 8, "N", 1))
    driver.attach(line)
    try:
        with RawSlave(instrument_end, served.answer, stopbits=1):
            readings = driver.poll()
    finally:
        line.close()
    return {r.variable: (r.value, r.qc, r.qc_reason) for r in readings}


def test_values_and_lid_state_of_a_conforming_probe(ptys: tuple[str, str]) -> None:
    read = poll(ptys, Chamber(probe_map(cdab(455.5), cdab(12.25))))
    assert read["CO2"][:2] == (455.5, QualityFlag.GOOD)
    assert read["T_PROBE"][:2] == (12.25, QualityFlag.GOOD)
    assert read["LID_CLOSED"][:2] == (1.0, QualityFlag.GOOD)


def test_a_quiet_nan_is_missing_and_start_up_status_suspect(ptys: tuple[str, str]) -> None:
    read = poll(ptys, Chamber(probe_map(QNAN, cdab(12.25), co2_status=256)))
    assert read["CO2"][:2] == (None, QualityFlag.MISSING)
    assert read["T_PROBE"][:2] == (12.25, QualityFlag.GOOD)
    read = poll(ptys, Chamber(probe_map(cdab(455.5), cdab(12.25), co2_status=2)))
    assert read["CO2"][:2] == (455.5, QualityFlag.SUSPECT)


def test_an_error_status_makes_the_probes_values_bad(ptys: tuple[str, str]) -> None:
    read = poll(ptys, Chamber(probe_map(cdab(455.5), cdab(12.25), device=2)))
    assert read["CO2"][:2] == (455.5, QualityFlag.BAD)
    assert read["T_PROBE"][:2] == (12.25, QualityFlag.BAD)


def test_a_probe_without_the_temperature_register_still_gives_co2(ptys: tuple[str, str]) -> None:
    read = poll(ptys, Chamber(probe_map(cdab(455.5), None)))
    assert read["CO2"][:2] == (455.5, QualityFlag.GOOD)
    value, flag, reason = read["T_PROBE"]
    assert (value, flag) == (None, QualityFlag.MISSING) and "exception 02" in str(reason)
