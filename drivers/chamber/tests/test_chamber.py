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


# --- variants the module's wiki and the GMP252 guide allow, fed in process (docs/reliability.md, 2026-12-06) ------


class DevicesLine:
    """A SerialLine whose devices answer in process: the request's bytes go to every simulated device, the first
    reply comes back (a unit-test fake of our own boundary, gateway.driver_api.SerialLine)."""

    def __init__(self, devices: list[Any]) -> None:
        from gateway.driver_api import SerialSettings

        self.settings = SerialSettings("in-process", 19200, 8, "E", 1)
        self.devices = devices
        self.requests: list[bytes] = []

    def transact(self, request: bytes, *, complete: Any, timeout_s: float) -> bytes:
        self.requests.append(request)
        for device in self.devices:
            reply = device.process_rtu_frame(request)
            if reply is not None:
                assert complete(reply)
                return bytes(reply)
        raise DeviceError(FailureKind.TIMEOUT, f"no reply to {request.hex(' ')}")

    def read_registers(self, device: int, address: int, count: int, *, function: int = 3, timeout_s: float,
                       retries: int = 0) -> list[int]:
        reply = self.transact(rtu.read_request(device, function, address, count), complete=lambda _b: True,
                              timeout_s=timeout_s)
        if reply[1] == function | 0x80:
            raise rtu.ModbusExceptionReply(device, function, reply[2])
        return [int.from_bytes(reply[3 + 2 * i: 5 + 2 * i], "big") for i in range(count)]


class Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def run_in_process(io: IoModuleSimulator, probe: Any, model: ChamberModel, clock: Clock, seconds: float,
                   **extra: Any) -> tuple[ChamberDriver, list[Reading]]:
    """Poll once a second for `seconds` of simulated time, a closure starting 2 s in (closure 10 s, travel 2 s)."""
    cfg = ChamberConfig.model_validate({
        "name": "chamber_1", "port": "in-process", "every_s": 60.0, "offset_s": (clock.now + 2.0) % 60.0 or None,
        "closure_s": 10.0, "ambient_s": 2.0, "idle_every_s": None, "lid_travel_s": 4.0, "timeout_s": 0.1,
        "retries": 0, **extra})
    driver = ChamberDriver(cfg, station="st1", wall_clock=clock, clock_synced=lambda: True)
    driver.attach(DevicesLine([io, probe]))
    readings: list[Reading] = []
    for _ in range(int(seconds)):
        readings += driver.poll()
        clock.now += 1.0
    return driver, readings


def in_process_chamber(**devices: Any) -> tuple[ChamberModel, Clock, IoModuleSimulator, Any]:
    clock = Clock(1_800_000_000.0)
    model = ChamberModel(wall_clock=clock, travel_s=2.0, seed=1)
    io, probe = chamber_devices(model, **devices)
    return model, clock, io, probe


def lid_states(readings: list[Reading]) -> list[float | None]:
    return [r.value for r in readings if r.variable == "LID_CLOSED"]


def test_variant_in_process_baseline_closes_and_reads_every_co2() -> None:
    model, clock, io, probe = in_process_chamber()
    driver, readings = run_in_process(io, probe, model, clock, 16)
    assert 1.0 in lid_states(readings) and lid_states(readings)[-1] == 0.0 and len(model.closures) == 1
    assert all(r.qc is QualityFlag.GOOD for r in readings) and driver.refused_reads == 0


def test_variant_module_without_fc05_is_driven_with_fc15() -> None:
    model, clock, io, probe = in_process_chamber()
    io.functions = frozenset({rtu.FC_READ_COILS, rtu.FC_READ_DISCRETE_INPUTS, rtu.FC_READ_HOLDING,
                              rtu.FC_WRITE_MULTIPLE_COILS})
    driver, readings = run_in_process(io, probe, model, clock, 16)
    assert len(model.closures) == 1 and model.closures[0].opened_at is not None  # closed, then opened again
    assert 1.0 in lid_states(readings) and all(r.qc is QualityFlag.GOOD for r in readings)
    assert driver.refused_reads == 1 and "FC 15" in next(iter(driver.refusals.values()))


def test_variant_module_without_control_mode_registers_still_runs_the_chamber() -> None:
    model, clock, io, probe = in_process_chamber()
    io.holding = {a: v for a, v in io.holding.items() if a < reg.CONTROL_MODE_START
                  or a >= reg.CONTROL_MODE_START + reg.IO_CHANNELS}
    driver, readings = run_in_process(io, probe, model, clock, 16)
    assert len(model.closures) == 1 and 1.0 in lid_states(readings)
    assert any("0x1000" in what for what in driver.refusals) and driver.refused_reads == 1


def test_variant_module_reading_only_eight_inputs_at_once() -> None:
    model, clock, io, probe = in_process_chamber()
    io.input_count = 8
    _driver, readings = run_in_process(io, probe, model, clock, 16)
    assert 1.0 in lid_states(readings) and all(r.qc is QualityFlag.GOOD for r in readings)


def test_variant_normally_closed_switches_at_both_ends_are_read_with_both_keys() -> None:
    model, clock, io, probe = in_process_chamber(open_input=2, normally_closed=True)
    _driver, wrong = run_in_process(io, probe, model, clock, 16, open_input=2)
    model, clock, io, probe = in_process_chamber(open_input=2, normally_closed=True)
    _driver, right = run_in_process(io, probe, model, clock, 16, open_input=2, closed_input_inverted=True,
                                    open_input_inverted=True)
    states = lid_states(right)
    assert states[0] == 0.0 and 1.0 in states
    assert states.count(None) <= 4  # "both or neither" only while the lid travels (2 s each way)
    assert QualityFlag.SUSPECT not in {r.qc for r in right}  # the lid followed every command
    assert QualityFlag.SUSPECT in {r.qc for r in wrong}  # the same switches without the keys: flagged, not misread


def test_variant_module_refusing_fc02_is_named() -> None:
    model, clock, io, probe = in_process_chamber()
    io.functions = frozenset({rtu.FC_READ_COILS, rtu.FC_WRITE_SINGLE_COIL, rtu.FC_READ_HOLDING})
    with pytest.raises(DeviceError) as info:
        run_in_process(io, probe, model, clock, 1)
    assert info.value.kind is FailureKind.PROTOCOL and info.value.hint and "FC 02" in info.value.hint


@pytest.mark.parametrize(("without", "variable", "flag", "words"), [
    (frozenset({0x0004, 0x0005}), "T_PROBE", QualityFlag.MISSING, "0x0004"),
    (frozenset({reg.STATUS_START, reg.STATUS_START + 1}), "CO2", QualityFlag.SUSPECT, "status"),
])
def test_variant_gmp252_without_temperature_or_status_registers_keeps_co2(
    without: frozenset[int], variable: str, flag: QualityFlag, words: str
) -> None:
    model, clock, io, probe = in_process_chamber()
    probe.mapped = probe.mapped - without
    driver, readings = run_in_process(io, probe, model, clock, 16)
    co2 = [r for r in readings if r.variable == "CO2"]
    assert len(co2) == len(probe.served_co2) > 10
    assert [r.value for r in co2] == [value for _t, value in probe.served_co2]
    affected = [r for r in readings if r.variable == variable]
    assert all(r.qc is flag and r.qc_reason and words in r.qc_reason for r in affected)
    assert driver.refused_reads == 1
