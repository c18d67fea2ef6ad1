"""Automated chamber: the bit functions' frames byte for byte, the schedule, the config's refusals, and the driver
against the simulated I/O module and GMP252 over a socat PTY (real pyserial): the lid follows the schedule, every CO2
value carries the lid state, the headspace CO2 is the simulator's known curve and the chamber science recovers the
true flux from the driver's readings; a stuck lid, a module in linkage mode and a silent module are named."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from drivers.chamber import registers as reg
from drivers.chamber.driver import ChamberConfig, ChamberDriver
from drivers.chamber.simulator import ChamberModel, IoModuleSimulator, chamber_devices
from gateway.configfile import ConfigError
from gateway.driver_api import DeviceError, FailureKind, rtu
from gateway.edge.config import parse_station_config
from gateway.flux.soil.chamber import Chamber, chamber_fluxes, detect_closures
from gateway.model import QualityFlag, Reading
from gateway.simulation.rtu_line import RtuLineSimulator
from gateway.testing.serial_pty import socat_pty_pair

# Frames in the layout of the Modbus Application Protocol V1.1b3 §6.1/6.2/6.5 for the module at address 1 (the
# Waveshare wiki shows the same requests); CRCs computed by us.
READ_INPUTS = bytes.fromhex("01 02 00 00 00 08 79 CC")
READ_COILS = bytes.fromhex("01 01 00 00 00 08 3D CC")
COIL_1_ON = bytes.fromhex("01 05 00 00 FF 00 8C 3A")
COIL_1_OFF = bytes.fromhex("01 05 00 00 00 00 CD CA")


def test_request_builders_give_the_documented_frames() -> None:
    assert rtu.read_request(1, rtu.FC_READ_DISCRETE_INPUTS, 0, 8) == READ_INPUTS
    assert rtu.read_request(1, rtu.FC_READ_COILS, 0, 8) == READ_COILS
    assert rtu.write_coil_request(1, 0, True) == COIL_1_ON
    assert rtu.write_coil_request(1, 0, False) == COIL_1_OFF
    for frame in (READ_INPUTS, READ_COILS, COIL_1_ON):
        assert rtu.request_length(frame) == len(frame)


def test_bits_pack_lowest_bit_first_and_round_trip() -> None:
    bits = [True, False, True, True, False, False, False, False, True]
    assert rtu.pack_bits(bits) == bytes((0b00001101, 0b00000001))
    assert rtu.unpack_bits(rtu.pack_bits(bits), len(bits)) == bits


def test_io_module_simulator_answers_the_frames_byte_for_byte() -> None:
    states = [True, False, False, False, False, False, False, True]
    module = IoModuleSimulator(inputs=lambda: states)
    reply = module.process_rtu_frame(READ_INPUTS)
    assert reply == rtu.add_crc(bytes.fromhex("01 02 01 81"))
    assert rtu.response_length(reply) == len(reply) == 6
    assert module.process_rtu_frame(COIL_1_ON) == COIL_1_ON  # FC 05 echoes the request
    assert module.coils[0] is True
    assert module.process_rtu_frame(READ_COILS) == rtu.add_crc(bytes.fromhex("01 01 01 01"))
    # an illegal coil value (neither FF00 nor 0000) is exception 03
    bad = rtu.add_crc(bytes.fromhex("01 05 00 00 12 34"))
    assert module.process_rtu_frame(bad) == rtu.exception_response(1, 5, 3)
    assert module.process_rtu_frame(rtu.read_request(2, 2, 0, 8)) is None  # another address: silence


def test_the_schedule_closes_on_the_period_and_records_around_closures() -> None:
    cfg = ChamberConfig.model_validate({"name": "c", "port": "/dev/x", "every_s": 3600, "offset_s": 600,
                                        "closure_s": 300, "ambient_s": 30})
    hour = 1_764_064_800.0  # a full hour
    assert not cfg.lid_should_be_closed(hour + 599)
    assert cfg.lid_should_be_closed(hour + 600) and cfg.lid_should_be_closed(hour + 899)
    assert not cfg.lid_should_be_closed(hour + 900)
    assert cfg.near_closure(hour + 575) and cfg.near_closure(hour + 925) and not cfg.near_closure(hour + 935)


@pytest.mark.parametrize(("change", "message"), [
    ({"analyzer_address": 1}, "need their own addresses"),
    ({"open_input": 1}, "two inputs"),
    ({"closure_s": 3590}, "shorter than every_s"),
    ({"offset_s": 3600}, "less than every_s"),
    ({"lid_travel_s": 400}, "shorter than closure_s"),
    ({"interval_s": 10}, "less than or equal to 5"),
])
def test_config_refuses_what_cannot_work_and_says_why(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ChamberConfig.model_validate({"name": "c", "port": "/dev/x", **change})


def test_the_station_config_refuses_a_chamber_address_already_on_the_line(tmp_path: Path) -> None:
    sensors = [{"name": "co2_10cm", "driver": "gmp252", "port": "/dev/ttyUSB0", "address": 240, "baudrate": 19200,
                "parity": "E", "stopbits": 1},
               {"name": "chamber_1", "driver": "chamber", "port": "/dev/ttyUSB0"}]
    with pytest.raises(ConfigError, match="both use address 240"):
        parse_station_config({"site": "s", "station": "st", "mqtt": {}, "buffer": {"path": str(tmp_path / "b")},
                              "sensors": sensors}, tmp_path / "station.yaml")


# --- over a pseudo-terminal ------------------------------------------------------------------------------------


@pytest.fixture
def ptys(tmp_path: Path) -> Iterator[tuple[str, str]]:
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed (Debian package socat)")
    with socat_pty_pair(tmp_path) as pair:
        yield pair


def config(port: str, *, closure_s: float = 4.0, every_s: float = 12.0, start_in_s: float = 1.0,
           **extra: Any) -> ChamberConfig:
    """A fast schedule whose next closure starts `start_in_s` from now."""
    offset = (time.time() + start_in_s) % every_s or None
    return ChamberConfig.model_validate({
        "name": "chamber_1", "port": port, "interval_s": 0.2, "every_s": every_s, "offset_s": offset,
        "closure_s": closure_s, "ambient_s": 0.5, "idle_every_s": None, "lid_travel_s": 1.0, "timeout_s": 0.3,
        "retries": 0, "variable_suffix": "_1_1_1", **extra})


def run_for(driver: ChamberDriver, seconds: float, interval_s: float = 0.2) -> list[Reading]:
    readings: list[Reading] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        readings += driver.poll()
        time.sleep(interval_s)
    return readings


def by_variable(readings: list[Reading], variable: str) -> list[Reading]:
    return [r for r in readings if r.variable == variable]


@pytest.mark.integration
def test_closure_follows_the_schedule_and_recovers_the_true_flux(ptys: tuple[str, str]) -> None:
    sim_port, driver_port = ptys
    model = ChamberModel(flux_umol_m2_s=2.5, kappa_s=0.0, noise_ppm=0.0, travel_s=0.4)
    io, probe = chamber_devices(model)
    cfg = config(driver_port)
    driver = ChamberDriver(cfg, station="st1", clock_synced=lambda: True)
    with RtuLineSimulator(sim_port, [io, probe], baudrate=19200, parity="E", stopbits=1):
        driver.open()
        readings = run_for(driver, 6.5)
        driver.close()
        assert io.coils[0] is False  # close() opened the lid
    lid = by_variable(readings, "LID_CLOSED_1_1_1")
    co2 = by_variable(readings, "CO2_1_1_1")
    temperature = by_variable(readings, "T_PROBE_1_1_1")
    # one instant per recording poll: each CO2 value has the lid state (and temperature) of its own time stamp
    assert [r.time for r in co2] == [r.time for r in lid] == [r.time for r in temperature]
    states = [r.value for r in lid]
    assert 0.0 in states and 1.0 in states
    closed_runs = np.flatnonzero(np.diff(np.array(states, dtype=float)) != 0)
    assert len(closed_runs) == 2  # opened -> closed -> opened: exactly one closure in 6.5 s
    assert len(model.closures) == 1 and model.closures[0].opened_at is not None
    # the values are the simulator's known curve at their time stamps (no noise; float32 and ms of timing)
    for r in co2:
        assert r.value == pytest.approx(model.true_co2(r.time.timestamp()), abs=0.05)
        assert r.qc == QualityFlag.GOOD and r.unit == "umol mol-1"
    # and the chamber science recovers the true flux from the readings as the central job gets them
    t = np.array([r.time.timestamp() for r in co2])
    x = np.array([r.value for r in co2], dtype=float)
    closed = np.array([r.value for r in lid], dtype=float)
    closures = detect_closures(t, closed)
    assert closures.start_s.size == 1
    result = chamber_fluxes(t, x, closures, Chamber(model.volume_m3, model.area_m2), model.p_pa, model.t_c,
                            dead_band_s=0.5, min_points=5, min_closure_s=2.0)
    assert result.flux[0] == pytest.approx(model.closures[0].flux, rel=0.03)
    assert result.qc[0] & 1 == 0  # not too short


@pytest.mark.integration
def test_a_stuck_lid_makes_the_readings_suspect_with_the_reason(ptys: tuple[str, str]) -> None:
    sim_port, driver_port = ptys
    model = ChamberModel(noise_ppm=0.0)
    io, probe = chamber_devices(model, fault="stuck_lid")
    driver = ChamberDriver(config(driver_port, start_in_s=0.2), station="st1")
    with RtuLineSimulator(sim_port, [io, probe], baudrate=19200, parity="E", stopbits=1):
        readings = run_for(driver, 2.5)
        driver.close()
    assert io.coils[0] is False
    late = [r for r in by_variable(readings, "CO2_1_1_1") if r.qc == QualityFlag.SUSPECT]
    assert late, "a lid stuck open for longer than lid_travel_s must flag the CO2"
    assert "commanded closed" in (late[-1].qc_reason or "") and "actuator" in (late[-1].qc_reason or "")
    assert all(r.value == 0.0 for r in by_variable(readings, "LID_CLOSED_1_1_1"))
    assert driver.lid_faults == 1  # logged and counted once, not every poll


@pytest.mark.integration
def test_a_module_in_linkage_mode_is_refused_naming_the_register(ptys: tuple[str, str]) -> None:
    sim_port, driver_port = ptys
    io, probe = chamber_devices(ChamberModel(), fault="linkage_mode")
    driver = ChamberDriver(config(driver_port), station="st1")
    with RtuLineSimulator(sim_port, [io, probe], baudrate=19200, parity="E", stopbits=1), \
            pytest.raises(DeviceError) as info:
        driver.poll()
    assert info.value.kind is FailureKind.DEVICE
    assert "0x1000" in str(info.value) and "linkage" in str(info.value)
    assert io.coils[0] is False  # refused before it touched the lid


@pytest.mark.integration
def test_a_silent_module_is_a_timeout_naming_the_module(ptys: tuple[str, str]) -> None:
    sim_port, driver_port = ptys
    io, probe = chamber_devices(ChamberModel(), fault="no_reply")
    driver = ChamberDriver(config(driver_port), station="st1")
    with RtuLineSimulator(sim_port, [io, probe], baudrate=19200, parity="E", stopbits=1), \
            pytest.raises(DeviceError) as info:
        driver.poll()
    assert info.value.kind is FailureKind.TIMEOUT
    assert "I/O module" in str(info.value) and "io_address 1" in str(info.value)


def test_float_registers_are_low_word_first() -> None:
    # GMP252 User Guide M211897EN-D App. A: 0x43E8D47A = 465.66 ppm arrives as D47A, 43E8
    value = reg.decode_float([0xD47A, 0x43E8])
    assert value is not None and value == pytest.approx(465.66, abs=0.01)
    assert reg.encode_float(value) == [0xD47A, 0x43E8]
    assert reg.decode_float(reg.encode_float(float("nan"))) is None
