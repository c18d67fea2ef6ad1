"""The simulator's bytes, checked frame by frame without any port (example frames in the layout of GMP252 User Guide
M211897EN-D App. A)."""

from __future__ import annotations

import math
import struct
import time

import pytest

from drivers.gmp252 import registers as reg
from drivers.gmp252 import rtu
from drivers.gmp252.simulator import FAULTS, GMP252Simulator, SignalModel, parse_tcp_endpoint
from drivers.gmp252.tests.test_registers import (
    EXCEPTION_02_RESPONSE,
    READ_CO2_412_5_RESPONSE,
    READ_CO2_REQUEST,
    STATUS_ALL_OK_RESPONSE,
    STATUS_REQUEST,
    registers_of,
)

FLAT_412_5 = SignalModel(base_ppm=412.5, amplitude_ppm=0.0, noise_ppm=0.0)


def make_sim(**kwargs: object) -> GMP252Simulator:
    # Never started: process_rtu_frame is the whole protocol core, so no port is needed.
    return GMP252Simulator("/dev/null", **kwargs)  # type: ignore[arg-type]


def test_answers_the_example_request_with_the_example_response_byte_for_byte() -> None:
    sim = make_sim(signal=FLAT_412_5)
    assert sim.process_rtu_frame(READ_CO2_REQUEST) == READ_CO2_412_5_RESPONSE
    assert sim.served_co2 == [412.5]


def test_status_example_and_exception_example() -> None:
    sim = make_sim()
    assert sim.process_rtu_frame(STATUS_REQUEST) == STATUS_ALL_OK_RESPONSE
    # 0x0002 is not in the documented map: exception 02, exactly the example frame.
    assert sim.process_rtu_frame(rtu.read_request(0xF0, 3, 0x0002, 2)) == EXCEPTION_02_RESPONSE
    # A read that starts inside the map but runs past its end is refused as a whole.
    assert sim.process_rtu_frame(rtu.read_request(0xF0, 3, 0x0804, 2)) == EXCEPTION_02_RESPONSE


def test_served_log_holds_the_exact_float32_the_reader_decodes() -> None:
    sim = make_sim(seed=7)
    decoded = []
    for _ in range(5):
        reply = sim.process_rtu_frame(READ_CO2_REQUEST)
        assert reply is not None
        (value,) = struct.unpack(">f", struct.pack(">HH", *reversed(registers_of(reply))))
        decoded.append(value)
    assert sim.served_co2 == decoded
    assert len(set(decoded)) == 5  # noise: consecutive samples differ


def test_signal_is_plausible_soil_co2_and_temperature() -> None:
    sim = make_sim(seed=3)
    day = [h * 3600.0 for h in range(24)]
    for t in day:
        sim.wall_clock = lambda t=t: t  # type: ignore[misc]
        sim.process_rtu_frame(READ_CO2_REQUEST)
        sim.process_rtu_frame(rtu.read_request(0xF0, 3, 0x0004, 2))
    co2 = sim.served_co2
    temps = sim.served_temperature
    assert min(co2) >= 2000 and max(co2) <= 6000
    assert max(co2) - min(co2) > 2000  # a diurnal cycle, not a constant
    assert co2.index(max(co2)) in range(13, 18)  # afternoon peak
    assert all(-5 < t < 35 for t in temps)


def test_same_seed_same_noise() -> None:
    clock = lambda: 1_700_000_000.0  # noqa: E731
    first = make_sim(seed=11, wall_clock=clock)
    second = make_sim(seed=11, wall_clock=clock)
    for sim in (first, second):
        for _ in range(3):
            sim.process_rtu_frame(READ_CO2_REQUEST)
    assert first.served_co2 == second.served_co2


def test_int16_registers_follow_the_float_and_carry_the_sentinel_when_nan() -> None:
    sim = make_sim(signal=SignalModel(base_ppm=46510.0, amplitude_ppm=0.0, noise_ppm=0.0))
    reply = sim.process_rtu_frame(rtu.read_request(0xF0, 3, 0x0100, 2))
    assert reply is not None
    assert registers_of(reply) == [32767, 4651]
    sim.set_fault("nan")
    reply = sim.process_rtu_frame(rtu.read_request(0xF0, 3, 0x0100, 2))
    assert reply is not None
    assert registers_of(reply) == [0x8000, 0x8000]
    reply = sim.process_rtu_frame(READ_CO2_REQUEST)
    assert reply is not None
    assert registers_of(reply) == [0x0000, 0x7FC0]
    assert math.isnan(sim.served_co2[-1])


def test_static_registers_hold_documented_defaults() -> None:
    sim = make_sim(address=17, stopbits=2)
    assert sim.register("modbus_address") == 17
    assert sim.register("bit_rate") == 2  # 19200
    assert sim.register("parity") == 0
    assert sim.register("comp_pressure") == pytest.approx(1013.25)
    assert sim.register("comp_temperature_eeprom") == 25.0


def test_fc16_writes_volatile_compensation_and_refuses_the_rest() -> None:
    sim = make_sim()
    words = reg.encode_float32(985.5)
    write = rtu.add_crc(struct.pack(">BBHHB2H", 0xF0, 0x10, 0x0208, 2, 4, *words))
    assert sim.process_rtu_frame(write) == rtu.add_crc(struct.pack(">BBHH", 0xF0, 0x10, 0x0208, 2))
    assert sim.register("comp_pressure") == 985.5
    readback = sim.process_rtu_frame(rtu.read_request(0xF0, 3, 0x0208, 2))
    assert readback is not None and registers_of(readback) == words
    refused = rtu.add_crc(struct.pack(">BBHHB2H", 0xF0, 0x10, 0x0000, 2, 4, *words))
    assert sim.process_rtu_frame(refused) == rtu.exception_response(0xF0, 0x10, 2)
    bad_count = rtu.add_crc(struct.pack(">BBHHB2H", 0xF0, 0x10, 0x0208, 2, 3, *words))
    assert sim.process_rtu_frame(bad_count) == rtu.exception_response(0xF0, 0x10, 3)


def test_unsupported_function_gets_exception_01() -> None:
    sim = make_sim()
    request = rtu.add_crc(bytes((0xF0, 0x2B, 0x0E, 0x01, 0x00)))
    assert sim.process_rtu_frame(request) == rtu.exception_response(0xF0, 0x2B, 1)


def test_silent_to_other_addresses_and_to_corrupt_requests() -> None:
    sim = make_sim()
    assert sim.process_rtu_frame(rtu.read_request(0x01, 3, 0, 2)) is None
    assert sim.process_rtu_frame(READ_CO2_REQUEST[:-1] + b"\x00") is None
    assert sim.requests == 0
    assert sim.served_co2 == []


def test_fault_modes_on_the_wire() -> None:
    sim = make_sim()
    sim.set_fault("no_reply")
    assert sim.process_rtu_frame(READ_CO2_REQUEST) is None
    sim.set_fault("bad_crc")
    reply = sim.process_rtu_frame(READ_CO2_REQUEST)
    assert reply is not None and reply[:3] == READ_CO2_REQUEST[:2] + b"\x04"
    assert not rtu.crc_ok(reply)
    assert sim.served_co2 == []  # nothing intact left the simulator yet
    sim.set_fault("device_error")
    reply = sim.process_rtu_frame(rtu.read_request(0xF0, 3, 0x0800, 5))
    assert reply is not None
    status = registers_of(reply)
    assert status[0] == 2 and status[3:] == reg.encode_point(reg.POINT_BY_NAME["error_code"], 0x4000)
    with pytest.raises(ValueError, match="unknown fault"):
        sim.set_fault("gremlins")
    assert set(FAULTS) == {"none", "no_reply", "bad_crc", "nan", "device_error"}


def test_warm_up_reports_not_ready_then_unreliable_then_ok() -> None:
    sim = make_sim(warmup_s=0.4, not_ready_s=0.2)

    def co2_status_and_value() -> tuple[int, list[int]]:
        status = sim.process_rtu_frame(rtu.read_request(0xF0, 3, 0x0801, 1))
        value = sim.process_rtu_frame(READ_CO2_REQUEST)
        assert status is not None and value is not None
        return registers_of(status)[0], registers_of(value)

    status, words = co2_status_and_value()
    assert status == 256 and words == [0x0000, 0x7FC0]
    time.sleep(0.25)
    status, words = co2_status_and_value()
    assert status == 2 and words != [0x0000, 0x7FC0]
    time.sleep(0.2)
    assert co2_status_and_value()[0] == 0
    sim.power_cycle()
    assert co2_status_and_value()[0] == 256


def test_tcp_endpoint_parsing() -> None:
    assert parse_tcp_endpoint("tcp://127.0.0.1:5020") == ("127.0.0.1", 5020)
    assert parse_tcp_endpoint("localhost:0") == ("localhost", 0)
    with pytest.raises(ValueError, match="tcp://HOST:PORT"):
        parse_tcp_endpoint("tcp://nohost")


def test_rejects_an_address_outside_the_modbus_range() -> None:
    with pytest.raises(ValueError, match=r"1\.\.247"):
        make_sim(address=0)
