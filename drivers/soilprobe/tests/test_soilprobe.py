"""Soil probe: the register layouts as data, the simulator's example frames byte for byte (composed in each layout), and
driver <-> simulator over a socat PTY (real pyserial) with every fault mode."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from drivers.soilprobe import registers as reg
from drivers.soilprobe.driver import SoilProbeConfig, SoilProbeDriver
from drivers.soilprobe.simulator import FAULTS, SoilProbeSimulator
from gateway.driver_api import DeviceError, FailureKind
from gateway.model import QualityFlag, Reading
from gateway.simulation.rtu_line import RtuLineSimulator
from gateway.testing.serial_pty import socat_ptys_or_skip

EXAMPLE_A = (bytes.fromhex("01 03 00 00 00 02 C4 0B"), bytes.fromhex("01 03 04 01 3B FF E9 0A 7C"))
EXAMPLE_B = (bytes.fromhex("01 03 00 00 00 03 05 CB"), bytes.fromhex("01 03 06 04 D2 0A BE 01 A4 FB 34"))


def test_simulator_reproduces_the_layout_a_example_byte_for_byte() -> None:
    sim = SoilProbeSimulator(layout="A", fixed={"swc": 31.5, "ts": -2.3})
    assert sim.process_rtu_frame(EXAMPLE_A[0]) == EXAMPLE_A[1]


def test_simulator_reproduces_the_layout_b_example_byte_for_byte() -> None:
    sim = SoilProbeSimulator(layout="B", fixed={"ts": 12.34, "swc": 27.50, "ec": 420})
    assert sim.process_rtu_frame(EXAMPLE_B[0]) == EXAMPLE_B[1]


@pytest.mark.parametrize(("layout", "frame", "expected"), [
    ("A", EXAMPLE_A[1], {"swc": 31.5, "ts": -2.3}),
    ("B", EXAMPLE_B[1], {"ts": 12.34, "swc": 27.5, "ec": 420.0}),
])
def test_example_replies_decode_to_the_documented_values(layout: str, frame: bytes, expected: dict[str, float]) -> None:
    words = [int.from_bytes(frame[3 + 2 * i : 5 + 2 * i], "big") for i in range(frame[2] // 2)]
    decoded = reg.decode(reg.Layout(layout), words, read_ec=len(words) > 2)
    assert decoded == pytest.approx(expected)


def test_negative_temperature_is_twos_complement() -> None:
    assert reg.TS_A.decode(0xFF9B) == pytest.approx(-10.1)
    assert reg.TS_B.decode(reg.TS_B.encode(-12.5)) == pytest.approx(-12.5)


def test_other_addresses_and_bad_crc_requests_get_silence() -> None:
    sim = SoilProbeSimulator(address=2)
    assert sim.process_rtu_frame(EXAMPLE_A[0]) is None
    corrupted = EXAMPLE_A[0][:-1] + bytes((EXAMPLE_A[0][-1] ^ 1,))
    assert SoilProbeSimulator().process_rtu_frame(corrupted) is None


def test_config_requires_a_layout_and_refuses_unknown_ones() -> None:
    with pytest.raises(ValidationError) as info:
        SoilProbeConfig.model_validate({"name": "s", "port": "/dev/ttyUSB0"})
    assert "layout" in str(info.value)
    with pytest.raises(ValidationError):
        SoilProbeConfig.model_validate({"name": "s", "port": "/dev/ttyUSB0", "layout": "C"})
    cfg = SoilProbeConfig.model_validate({"name": "s", "port": "/dev/ttyUSB0", "layout": "B"})
    assert cfg.serial_settings().describe() == "9600 8N1"


# --- over a pseudo-terminal ------------------------------------------------------------------------------------


ptys = pytest.fixture(socat_ptys_or_skip, name="ptys")


def make_driver(port: str, layout: str, **overrides: Any) -> SoilProbeDriver:
    settings = {"name": "swc", "port": port, "layout": layout, "timeout_s": 0.2, "retries": 0, **overrides}
    return SoilProbeDriver(SoilProbeConfig.model_validate(settings), station="st1")


def by_variable(readings: list[Reading]) -> dict[str, Reading]:
    return {r.variable: r for r in readings}


@pytest.mark.integration
@pytest.mark.parametrize("layout", ["A", "B"])
@pytest.mark.parametrize("function", [3, 4])
def test_values_read_equal_the_values_served(ptys: tuple[str, str], layout: str, function: int) -> None:
    probe = SoilProbeSimulator(layout=layout, seed=3)
    with RtuLineSimulator(ptys[0], [probe], baudrate=9600, stopbits=1):
        driver = make_driver(ptys[1], layout, function=function, variable_suffix="_1_2_1")
        try:
            polled = [by_variable(driver.poll()) for _ in range(5)]
        finally:
            driver.close()
    assert len(probe.served) == 5
    for readings, served in zip(polled, probe.served, strict=True):
        assert set(readings) == {"SWC_1_2_1", "TS_1_2_1", "EC_SOIL_1_2_1"}
        assert readings["SWC_1_2_1"].value == pytest.approx(served["swc"])
        assert readings["TS_1_2_1"].value == pytest.approx(served["ts"])
        assert readings["EC_SOIL_1_2_1"].value == pytest.approx(served["ec"])
        assert readings["SWC_1_2_1"].unit == "%" and readings["TS_1_2_1"].unit == "degC"
        assert all(r.qc is QualityFlag.GOOD for r in readings.values())


@pytest.mark.integration
@pytest.mark.parametrize(("fault", "kind", "hint_word"), [
    ("no_reply", FailureKind.TIMEOUT, "baud rate"),
    ("bad_crc", FailureKind.CRC, "termination"),
    ("fc04_only", FailureKind.PROTOCOL, "function: 4"),
])
def test_fault_modes_surface_as_device_errors(ptys: tuple[str, str], fault: str, kind: FailureKind,
                                              hint_word: str) -> None:
    probe = SoilProbeSimulator(layout="A", fault=fault)
    with RtuLineSimulator(ptys[0], [probe], baudrate=9600, stopbits=1):
        driver = make_driver(ptys[1], "A")
        try:
            with pytest.raises(DeviceError) as info:
                driver.poll()
        finally:
            driver.close()
    assert info.value.kind is kind
    assert "swc" in info.value.message and info.value.hint and hint_word in info.value.hint


@pytest.mark.integration
def test_out_of_range_values_are_published_bad_with_a_reason(ptys: tuple[str, str]) -> None:
    probe = SoilProbeSimulator(layout="B", fault="out_of_range")
    with RtuLineSimulator(ptys[0], [probe], baudrate=9600, stopbits=1):
        driver = make_driver(ptys[1], "B")
        try:
            readings = by_variable(driver.poll())
        finally:
            driver.close()
    assert readings["SWC"].qc is QualityFlag.BAD and readings["TS"].qc is QualityFlag.BAD
    assert readings["SWC"].qc_reason is not None and "wrong `layout`" in readings["SWC"].qc_reason


def test_every_fault_mode_is_covered_above() -> None:
    covered = {"none", "no_reply", "bad_crc", "fc04_only", "out_of_range"}
    assert set(FAULTS) == covered
