"""IrgasonSimulator without a transport: lines parse to the logged values, counter and lag as documented."""

from __future__ import annotations

from drivers.irgason.driver import M_CO2, M_H2O, IrgasonConfig, IrgasonDriver
from drivers.irgason.simulator import IrgasonSimulator
from gateway.driver_api import BadRecord
from gateway.simulation.turbulence import TurbulenceSpec


def driver(**overrides: object) -> IrgasonDriver:
    return IrgasonDriver(IrgasonConfig.model_validate({"name": "ec", "port": "/dev/x", **overrides}), station="s")


def emit(sim: IrgasonSimulator, index: int) -> tuple[bytes, tuple[float | None, ...]]:
    frame = sim.frame(index, index / sim.frequency_hz)
    return frame, sim._pending_values


def test_lines_parse_to_the_logged_values_with_a_rolling_counter() -> None:
    sim = IrgasonSimulator("tcp://127.0.0.1:0", frequency_hz=20, seed=5)
    drv = driver()
    for index in range(1000, 1200):
        frame, logged = emit(sim, index)
        elements = frame.rstrip(b"\r\n").split(b",")
        assert len(elements) == 15 and int(elements[13]) == index % 64
        assert drv.parse(frame) == logged
    assert (drv.counter_gaps, drv.lost_records) == (0, 0)


def test_units_on_the_wire_are_mass_densities_of_the_fields_molar_densities() -> None:
    sim = IrgasonSimulator("tcp://127.0.0.1:0", frequency_hz=20)
    frame, _ = emit(sim, 77)
    elements = frame.split(b",")
    co2, h2o = sim.gas(77)
    assert abs(float(elements[5]) - co2 * M_CO2) <= 0.0005  # mg m-3, 3 decimals
    assert abs(float(elements[6]) - h2o * M_H2O / 1000) <= 0.000005  # g m-3, 5 decimals
    ts = sim.sonic(77)[3]
    assert abs(float(elements[3]) - (ts - 273.15)) <= 0.00005  # degC


def test_the_gas_is_not_lagged_behind_the_sonic_by_default() -> None:
    assert IrgasonSimulator("tcp://127.0.0.1:0").field.spec.lag_s == 0.0
    lagged = IrgasonSimulator("tcp://127.0.0.1:0", spec=TurbulenceSpec(lag_s=0.25), frequency_hz=20)
    assert lagged.field.spec.lag_samples == 5


def test_other_signature_spans_and_counter_ranges_are_served_consistently() -> None:
    sim = IrgasonSimulator("tcp://127.0.0.1:0", signature_span="all_before_counter", counter_modulus=1000)
    frame, logged = emit(sim, 12345)
    assert driver(signature_span="all_before_counter", counter_modulus=1000).parse(frame) == logged
    try:
        driver(signature_span_fallback=False).parse(frame)
    except BadRecord as bad:
        assert bad.reason == "checksum"
    else:
        raise AssertionError("a record signed over another span was accepted")
    assert driver(counter_modulus=1000).parse(frame) == logged  # the fallback finds the simulator's span


def test_nan_fault_sends_nan_text_and_corrupt_breaks_the_signature() -> None:
    sim = IrgasonSimulator("tcp://127.0.0.1:0", fault="nan", fault_ratio=1.0)
    frame, logged = emit(sim, 3)
    assert b"NAN" in frame and logged.count(None) == 1
    assert driver().parse(frame) == logged
    try:
        driver().parse(sim.corrupt(frame))
    except BadRecord as bad:
        assert bad.reason == "checksum"
    else:
        raise AssertionError("a corrupted record was accepted")
