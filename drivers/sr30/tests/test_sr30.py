"""SR30-D1: the register map as data (against the worked example of the Hukseflux manual), the quality rules, the
simulator's protocol and signal, and driver <-> simulator over a socat PTY with the bus's own RTU master and with
pymodbus as an independent master."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from pymodbus.client import ModbusSerialClient

from drivers.sr30 import registers as reg
from drivers.sr30.driver import SW_IN_PHYSICALLY_POSSIBLE, Diagnostics, SR30Config, SR30Driver, assess
from drivers.sr30.simulator import FAULTS, SR30Simulator
from gateway.driver_api import DeviceError, FailureKind, RtuSerialLine, rtu
from gateway.model import QualityFlag, Reading, TimeSource
from gateway.simulation.rtu_line import RtuLineSimulator
from gateway.simulation.weather import MetSignal
from gateway.testing.serial_pty import socat_pty_pair

# Hukseflux SR05-D1A3-PV manual v1801 §6.6: master request and sensor response at address 64 (0x40) for the
# standard Hukseflux map (there offset by 0x1000): address, serial settings code 5, irradiance MSW 0x0001, LSW
# 0x7C4F. The CRCs are the manual's.
MANUAL_REQUEST = bytes.fromhex("40 03 10 00 00 04 4F D8")
MANUAL_RESPONSE = bytes.fromhex("40 03 08 00 40 00 05 00 01 7C 4F 79 DA")


def test_the_manuals_example_frames_carry_valid_crcs_and_decode_to_973_59_w_m2() -> None:
    assert rtu.crc_ok(MANUAL_REQUEST) and rtu.crc_ok(MANUAL_RESPONSE)
    words = [int.from_bytes(MANUAL_RESPONSE[3 + 2 * i : 5 + 2 * i], "big") for i in range(4)]
    (block,) = reg.compile_blocks(reg.points_by_name(["modbus_address", "serial_settings", "irradiance"]))
    raw = block.raw(words)
    assert raw == {"modbus_address": 64, "serial_settings": 5, "irradiance": 97359}
    assert reg.scaled(reg.POINT_BY_NAME["irradiance"], raw["irradiance"], {}) == pytest.approx(973.59)


def test_simulator_answers_the_manuals_request_on_the_sr30_map_with_the_manuals_data() -> None:
    sim = SR30Simulator(address=64, fixed={"irradiance": 97359})
    reply = sim.process_rtu_frame(rtu.read_request(64, 3, 0x0000, 4))
    assert reply == rtu.add_crc(MANUAL_RESPONSE[:-2])  # same data bytes; the manual's frame sits 0x1000 higher


def test_32_bit_values_are_most_significant_word_first_and_signed() -> None:
    assert reg.decode_raw(reg.DataType.S32, [0x0001, 0x7C4F]) == 97359
    assert reg.decode_raw(reg.DataType.S32, [0xFFFF, 0xFE0C]) == -500
    assert reg.decode_raw(reg.DataType.S16, [0xFF38]) == -200
    for type_, value in [(reg.DataType.S32, -123456), (reg.DataType.U32, 20250115), (reg.DataType.FLOAT32, 10.5),
                         (reg.DataType.S16, -4000), (reg.DataType.U16, 65535)]:
        assert reg.decode_raw(type_, reg.encode_raw(type_, value)) == value


def test_blocks_respect_the_five_register_limit_and_never_split_a_32_bit_value() -> None:
    (measurement,) = reg.compile_blocks(reg.points_by_name(reg.MEASUREMENT_POINTS))
    assert (measurement.address, measurement.count) == (0x02, 5)
    every = reg.compile_blocks(reg.POINTS)
    assert all(b.count <= reg.MAX_READ_REGISTERS for b in every)
    covered = [a for b in every for a in range(b.address, b.address + b.count)]
    assert sorted(covered) == sorted(reg.MAPPED_ADDRESSES)  # each mapped register read exactly once
    diagnostics = reg.compile_blocks(reg.points_by_name(reg.DIAGNOSTIC_POINTS))
    assert [(b.address, b.count) for b in diagnostics] == [(0x62, 1), (0xC2, 3)]


def test_scaling_uses_the_devices_scaling_factor_register() -> None:
    point = reg.POINT_BY_NAME["irradiance"]
    assert reg.scaled(point, 97359, {}) == pytest.approx(973.59)  # factory default 100
    assert reg.scaled(point, 97359, {"scale_irradiance": 1000}) == pytest.approx(97.359)


# --- quality ----------------------------------------------------------------------------------------------------


def config(**overrides: Any) -> SR30Config:
    return SR30Config.model_validate({"name": "sw", "port": "/dev/null", **overrides})


HEALTHY = Diagnostics(internal_rh=12.0, tilt_deg=0.2, fan_rpm=4800)


@pytest.mark.parametrize(("irradiance", "flag"), [
    (850.0, QualityFlag.GOOD), (-1.5, QualityFlag.GOOD), (-3.0, QualityFlag.SUSPECT), (-4.5, QualityFlag.BAD),
    (1800.0, QualityFlag.SUSPECT), (2300.0, QualityFlag.BAD),
])
def test_bsrn_limits_grade_the_irradiance(irradiance: float, flag: QualityFlag) -> None:
    verdict = assess(irradiance, 20.0, HEALTHY, config())
    assert verdict.irradiance_flag is flag
    assert (verdict.irradiance_reason is None) == (flag is QualityFlag.GOOD)
    assert SW_IN_PHYSICALLY_POSSIBLE[1] == pytest.approx(1.5 * 1368 / 0.9833**2 + 100)


@pytest.mark.parametrize(("diagnostics", "words"), [
    (Diagnostics(12.0, 5.0, 4800), "tilt 5"),
    (Diagnostics(75.0, 0.2, 4800), "internal humidity 75"),
    (Diagnostics(12.0, 0.2, 0), "ventilator stopped"),
])
def test_diagnostics_make_sw_in_suspect_with_the_reason(diagnostics: Diagnostics, words: str) -> None:
    verdict = assess(500.0, 20.0, diagnostics, config())
    assert verdict.irradiance_flag is QualityFlag.SUSPECT
    assert verdict.irradiance_reason is not None and words in verdict.irradiance_reason
    assert verdict.temperature_flag is QualityFlag.GOOD


def test_a_tilted_mount_and_an_unventilated_sensor_are_configured_not_flagged() -> None:
    poa = assess(500.0, 20.0, Diagnostics(12.0, 30.4, 0), config(expected_tilt_deg=30, ventilated=False))
    assert poa.irradiance_flag is QualityFlag.GOOD


def test_body_temperature_outside_the_rated_range_is_suspect_for_both() -> None:
    verdict = assess(300.0, -45.0, HEALTHY, config())
    assert verdict.irradiance_flag is verdict.temperature_flag is QualityFlag.SUSPECT
    assert verdict.temperature_reason is not None and "-45" in verdict.temperature_reason


# --- the simulator ----------------------------------------------------------------------------------------------


def test_simulator_refuses_what_the_device_refuses_and_ignores_other_addresses() -> None:
    sim = SR30Simulator(address=7)
    too_long = sim.process_rtu_frame(rtu.read_request(7, 3, 0x02, 6))
    assert too_long == rtu.exception_response(7, 3, rtu.EXC_ILLEGAL_VALUE)
    unmapped = sim.process_rtu_frame(rtu.read_request(7, 4, 0x50, 1))
    assert unmapped == rtu.exception_response(7, 4, rtu.EXC_ILLEGAL_ADDRESS)
    write = rtu.add_crc(bytes.fromhex("07 06 00 00 00 02"))
    assert sim.process_rtu_frame(write) == rtu.exception_response(7, 6, rtu.EXC_ILLEGAL_FUNCTION)
    assert sim.process_rtu_frame(rtu.read_request(8, 3, 0x02, 5)) is None


def test_fc03_and_fc04_serve_the_same_registers() -> None:
    sim = SR30Simulator(fixed={"irradiance": 51234, "body_temperature": 2345})
    holding = sim.process_rtu_frame(rtu.read_request(1, 3, 0x02, 5))
    inputs = sim.process_rtu_frame(rtu.read_request(1, 4, 0x02, 5))
    assert holding is not None and inputs is not None and holding[2:7] == inputs[2:7]


def at(iso: str) -> float:
    return datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp()


def test_simulated_irradiance_follows_the_sun() -> None:
    clock = {"now": at("2025-06-21T11:20:00")}  # ~solar noon at 10.5 E
    sim = SR30Simulator(signal=MetSignal(cloudiness=0.0), wall_clock=lambda: clock["now"])
    values = []
    for moment in ("2025-06-21T11:20:00", "2025-06-21T23:20:00", "2025-12-21T11:20:00"):
        clock["now"] = at(moment)
        sim.registers(0x02, 5)
        values.append(sim.served[-1]["irradiance"])
    summer_noon, midnight, winter_noon = values
    # Haurwitz clear sky at the June solstice, 51 N: sun 62.4 deg high -> ~900 W m-2; in December 15.6 deg
    assert 850 < summer_noon < 1000
    assert -2 < midnight < 1
    assert 150 < winter_noon < 300


# --- over a pseudo-terminal --------------------------------------------------------------------------------------


@pytest.fixture
def ptys(tmp_path: Path) -> Iterator[tuple[str, str]]:
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed (Debian package socat)")
    with socat_pty_pair(tmp_path) as pair:
        yield pair


@pytest.fixture
def line(ptys: tuple[str, str]) -> Iterator[RtuSerialLine]:
    driver_line = RtuSerialLine(config(port=ptys[1]).serial_settings(), reopen_backoff_s=(0.0, 0.0))
    yield driver_line
    driver_line.close()


def make_driver(line: RtuSerialLine, **overrides: Any) -> SR30Driver:
    settings = {"port": line.settings.port, "timeout_s": 0.2, "retries": 0, **overrides}
    driver = SR30Driver(config(**settings), station="st1", clock_synced=lambda: True)
    driver.attach(line)
    driver.open()
    return driver


def by_variable(readings: list[Reading]) -> dict[str, Reading]:
    return {r.variable: r for r in readings}


@pytest.mark.integration
@pytest.mark.parametrize("function", [3, 4])
def test_values_read_equal_the_values_served(ptys: tuple[str, str], line: RtuSerialLine, function: int) -> None:
    sim = SR30Simulator(seed=3)
    with RtuLineSimulator(ptys[0], [sim], baudrate=19200, parity="E", stopbits=1):
        driver = make_driver(line, function=function, variable_suffix="_1_1_1", diagnostics_every_n_polls=2)
        polled = [by_variable(driver.poll()) for _ in range(4)]
    assert len(sim.served) == 4
    # scaling factors once (one read), the measurement 4 times, the diagnostics (2 reads) on polls 1 and 3
    assert sim.requests == 1 + 4 + 2 * 2
    for readings, served in zip(polled, sim.served, strict=True):
        assert set(readings) == {"SW_IN_1_1_1", "T_PROBE_1_1_1"}
        assert readings["SW_IN_1_1_1"].value == pytest.approx(served["irradiance"])
        assert readings["T_PROBE_1_1_1"].value == pytest.approx(served["body_temperature"])
        assert readings["SW_IN_1_1_1"].unit == "W m-2" and readings["T_PROBE_1_1_1"].unit == "degC"
        assert all(r.qc is QualityFlag.GOOD and r.time_source is TimeSource.GATEWAY for r in readings.values())


@pytest.mark.integration
@pytest.mark.parametrize(("fault", "kind", "hint_word"), [
    ("no_reply", FailureKind.TIMEOUT, "19200 8E1"),
    ("bad_crc", FailureKind.CRC, "termination"),
])
def test_line_faults_surface_as_device_errors_then_recover(ptys: tuple[str, str], line: RtuSerialLine, fault: str,
                                                          kind: FailureKind, hint_word: str) -> None:
    sim = SR30Simulator(fault=fault)
    with RtuLineSimulator(ptys[0], [sim], baudrate=19200, parity="E", stopbits=1):
        driver = make_driver(line)
        with pytest.raises(DeviceError) as info:
            driver.poll()
        sim.set_fault("none")
        recovered = by_variable(driver.poll())
    assert info.value.kind is kind
    assert "SR30 'sw'" in info.value.message and info.value.hint and hint_word in info.value.hint
    assert recovered["SW_IN"].value == pytest.approx(sim.served[-1]["irradiance"])


@pytest.mark.integration
@pytest.mark.parametrize(("fault", "flag", "reason"), [
    ("out_of_range", QualityFlag.BAD, "physically possible"),
    ("tilted", QualityFlag.SUSPECT, "tilt 6.5"),
    ("fan_stopped", QualityFlag.SUSPECT, "ventilator stopped"),
    ("humid", QualityFlag.SUSPECT, "internal humidity 80"),
])
def test_device_faults_set_the_quality_flag(ptys: tuple[str, str], line: RtuSerialLine, fault: str,
                                            flag: QualityFlag, reason: str) -> None:
    sim = SR30Simulator(fault=fault)
    with RtuLineSimulator(ptys[0], [sim], baudrate=19200, parity="E", stopbits=1):
        readings = by_variable(make_driver(line).poll())
    assert readings["SW_IN"].qc is flag
    assert readings["SW_IN"].qc_reason is not None and reason in readings["SW_IN"].qc_reason


@pytest.mark.integration
def test_a_zero_scaling_factor_is_refused_not_divided_by(ptys: tuple[str, str], line: RtuSerialLine) -> None:
    sim = SR30Simulator(fixed={"scale_irradiance": 0})
    with RtuLineSimulator(ptys[0], [sim], baudrate=19200, parity="E", stopbits=1), \
            pytest.raises(DeviceError) as info:
        make_driver(line).poll()
    assert info.value.kind is FailureKind.PROTOCOL and "scale_irradiance" in info.value.message


@pytest.mark.integration
def test_pymodbus_as_an_independent_master_reads_what_the_simulator_serves(ptys: tuple[str, str]) -> None:
    # 8N1 (the SR30 can be set to it): a PTY carries no parity bit, and Linux refuses (EINVAL) the second
    # tcsetattr asking for parity on a PTY, which pymodbus issues when it sets its inter-byte timeout.
    sim = SR30Simulator(seed=9)
    with RtuLineSimulator(ptys[0], [sim], baudrate=19200, parity="N", stopbits=1):
        client = ModbusSerialClient(ptys[1], baudrate=19200, parity="N", stopbits=1, bytesize=8, timeout=1)
        assert client.connect()
        try:
            measurement = client.read_holding_registers(0x02, count=5, device_id=1)
            serial = client.read_input_registers(0x28, count=3, device_id=1)
            refused = client.read_holding_registers(0x02, count=6, device_id=1)
        finally:
            client.close()
    assert not measurement.isError() and not serial.isError()
    irradiance = client.convert_from_registers(measurement.registers[0:2], client.DATATYPE.INT32)
    assert isinstance(irradiance, int)
    assert irradiance / 100 == pytest.approx(sim.served[-1]["irradiance"])
    sensitivity = client.convert_from_registers(serial.registers[1:3], client.DATATYPE.FLOAT32)
    assert serial.registers[0] == 30123 and sensitivity == pytest.approx(10.0)
    assert refused.isError() and refused.exception_code == rtu.EXC_ILLEGAL_VALUE


def test_an_unattached_driver_opens_a_line_of_its_own_and_names_a_missing_port(tmp_path: Path) -> None:
    driver = SR30Driver(config(port=str(tmp_path / "ttyUSB9")), station="st1")
    with pytest.raises(DeviceError) as info:
        driver.poll()
    driver.close()
    assert info.value.kind is FailureKind.NO_PORT and "ttyUSB9" in info.value.message


def test_config_names_the_faulty_key() -> None:
    with pytest.raises(ValidationError, match="address"):
        SR30Config.model_validate({"name": "s", "port": "/dev/ttyUSB0", "address": 0})
    assert config().serial_settings().describe() == "19200 8E1"


def test_every_fault_mode_is_exercised_above() -> None:
    assert set(FAULTS) == {"none", "no_reply", "bad_crc", "out_of_range", "tilted", "fan_stopped", "humid"}


@pytest.mark.integration
def test_station_check_reads_an_sr30_sharing_its_line_with_a_soil_probe(ptys: tuple[str, str],
                                                                        tmp_path: Path) -> None:
    import yaml
    from typer.testing import CliRunner

    from drivers.soilprobe.simulator import SoilProbeSimulator
    from gateway.cli import app

    common = {"port": ptys[1], "baudrate": 19200, "parity": "E", "stopbits": 1, "timeout_s": 0.3, "retries": 0}
    station = tmp_path / "station.yaml"
    station.write_text(yaml.safe_dump({
        "site": "forest", "station": "st1", "buffer": {"path": str(tmp_path / "buffer.sqlite")},
        "sensors": [{"name": "sw_in_tower", "driver": "sr30", "address": 3, "variable_suffix": "_1_1_1", **common},
                    {"name": "swc_10cm", "driver": "soilprobe", "address": 1, "layout": "A", **common}],
    }))
    with RtuLineSimulator(ptys[0], [SR30Simulator(address=3), SoilProbeSimulator(layout="A")], baudrate=19200,
                          parity="E", stopbits=1):
        result = CliRunner().invoke(app, ["station", "check", "-c", str(station)])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith("sw_in_tower"))
    assert " PASS " in row and "SW_IN_1_1_1 = " in row and "W m-2" in row
    assert "2 of 2 sensors pass" in result.output


@pytest.mark.integration
def test_standalone_the_driver_reads_over_a_line_of_its_own(ptys: tuple[str, str]) -> None:
    sim = SR30Simulator(seed=4)
    with RtuLineSimulator(ptys[0], [sim], baudrate=19200, parity="E", stopbits=1):
        driver = SR30Driver(config(port=ptys[1], timeout_s=0.3), station="st1")
        try:
            readings = by_variable(driver.poll())
        finally:
            driver.close()
    assert readings["SW_IN"].value == pytest.approx(sim.served[-1]["irradiance"])


# --- variants the manuals allow and our simulator did not send (docs/reliability.md, 2026-12-06) -----------------


def serve(sim: SR30Simulator, ptys: tuple[str, str]) -> RtuLineSimulator:
    return RtuLineSimulator(ptys[0], [sim], baudrate=19200, parity="E", stopbits=1)


@pytest.mark.integration
@pytest.mark.parametrize(("implemented", "configured"), [(rtu.FC_READ_INPUT, 3), (rtu.FC_READ_HOLDING, 4)])
def test_variant_a_unit_implementing_one_read_function_is_read_with_it(
    ptys: tuple[str, str], line: RtuSerialLine, implemented: int, configured: int
) -> None:
    sim = SR30Simulator(seed=4, functions=frozenset({implemented}))
    with serve(sim, ptys):
        driver = make_driver(line, function=configured)
        polled = [by_variable(driver.poll()) for _ in range(2)]
    assert driver.function_switches == 1 and driver._function == implemented
    for readings, served in zip(polled, sim.served, strict=True):
        assert readings["SW_IN"].value == pytest.approx(served["irradiance"])
        assert readings["SW_IN"].qc is QualityFlag.GOOD


@pytest.mark.integration
@pytest.mark.parametrize("absent", [
    frozenset({"internal_humidity"}),
    frozenset({"tilt_angle", "reserved_00c3", "fan_speed"}),
    frozenset({"internal_humidity", "tilt_angle", "reserved_00c3", "fan_speed"}),
])
def test_variant_exception_02_for_the_diagnostic_registers_keeps_sw_in(
    ptys: tuple[str, str], line: RtuSerialLine, absent: frozenset[str]
) -> None:
    sim = SR30Simulator(seed=5, without_points=absent, fault="tilted")
    with serve(sim, ptys):
        driver = make_driver(line, diagnostics_every_n_polls=1)
        polled = [by_variable(driver.poll()) for _ in range(3)]
    for readings, served in zip(polled, sim.served, strict=True):
        assert readings["SW_IN"].value == pytest.approx(served["irradiance"])
    assert driver.refused_reads == len({reg.POINT_BY_NAME[n].address >= 0xC2 for n in absent})  # once per block
    assert all("exception 02" in reason for reason in driver.refusals.values())
    tilt_refused = "tilt_angle" in absent
    assert (polled[-1]["SW_IN"].qc is QualityFlag.GOOD) is tilt_refused  # the tilt is judged only when read


@pytest.mark.integration
def test_variant_exception_02_for_the_scaling_factors_reads_with_the_factory_100_as_suspect(
    ptys: tuple[str, str], line: RtuSerialLine
) -> None:
    sim = SR30Simulator(seed=6, without_points=frozenset({"scale_irradiance", "scale_temperature"}))
    with serve(sim, ptys):
        readings = by_variable(make_driver(line).poll())
    assert readings["SW_IN"].value == pytest.approx(sim.served[-1]["irradiance"])
    assert readings["T_PROBE"].value == pytest.approx(sim.served[-1]["body_temperature"])
    for reading in readings.values():
        assert reading.qc is QualityFlag.SUSPECT and reading.qc_reason and "factory 100" in reading.qc_reason


@pytest.mark.integration
def test_variant_scaling_factors_other_than_100_are_honoured(ptys: tuple[str, str], line: RtuSerialLine) -> None:
    sim = SR30Simulator(fixed={"irradiance": 4321, "scale_irradiance": 10, "body_temperature": -123,
                               "scale_temperature": 10})
    with serve(sim, ptys):
        readings = by_variable(make_driver(line).poll())
    assert readings["SW_IN"].value == pytest.approx(432.1) and readings["T_PROBE"].value == pytest.approx(-12.3)


@pytest.mark.integration
@pytest.mark.parametrize("irradiance", [973.59, 12.5, -1.2])
def test_variant_least_significant_word_first_is_flagged_with_the_key_then_read(
    ptys: tuple[str, str], line: RtuSerialLine, irradiance: float
) -> None:
    sim = SR30Simulator(lsw_first=True, fixed={"irradiance": round(irradiance * 100)})
    with serve(sim, ptys):
        wrong = by_variable(make_driver(line).poll())["SW_IN"]
        right = by_variable(make_driver(line, word_order="lsw_first").poll())["SW_IN"]
    assert wrong.qc is QualityFlag.BAD and wrong.qc_reason and "word_order: lsw_first" in wrong.qc_reason
    assert right.value == pytest.approx(irradiance) and right.qc is not QualityFlag.BAD

