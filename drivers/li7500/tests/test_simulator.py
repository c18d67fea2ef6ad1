"""LI7500Simulator without a transport: its records parse to the values it logs, and it answers commands."""

from __future__ import annotations

from drivers.li7500.driver import LI7500Config, LI7500Driver
from drivers.li7500.simulator import LI7500Simulator
from gateway.driver_api import BadRecord


def driver(**overrides: object) -> LI7500Driver:
    return LI7500Driver(LI7500Config.model_validate({"name": "irga", "port": "tcp://h:7200", **overrides}),
                        station="st1")


def emit(sim: LI7500Simulator, index: int) -> tuple[bytes, tuple[float | None, ...]]:
    frame = sim.frame(index, index / sim.frequency_hz)
    return frame, sim._pending_values


def test_records_follow_the_turbulence_field_and_parse_to_the_logged_values() -> None:
    sim = LI7500Simulator("tcp://127.0.0.1:0", frequency_hz=20, seed=7)
    drv = driver()
    for index in range(5000, 5200):
        frame, logged = emit(sim, index)
        assert frame.startswith(b"(Data (Ndx ") and frame.endswith(b"))\n")
        assert drv.parse(frame) == logged
        co2, h2o = sim.gas(index)
        assert logged[1] is not None and abs(logged[1] - co2) < 1e-6 * co2  # 8 significant digits
        assert logged[2] is not None and abs(logged[2] - h2o) < 1e-6 * h2o


def test_the_nan_fault_blanks_one_value_and_corrupt_truncates() -> None:
    sim = LI7500Simulator("tcp://127.0.0.1:0", fault="nan", fault_ratio=1.0)
    frame, logged = emit(sim, 100)
    assert b" nan)" in frame and logged.count(None) == 1
    assert driver().parse(frame) == logged
    try:
        driver().parse(sim.corrupt(frame))
    except BadRecord as bad:
        assert bad.reason == "format"
    else:
        raise AssertionError("a truncated record was accepted")


def test_outputs_command_switches_labels_and_order_and_is_acknowledged() -> None:
    sim = LI7500Simulator("tcp://127.0.0.1:0", frequency_hz=10)
    drv = driver(labels=False, outputs=["H2OD", "CO2D", "DiagVal"], frequency_hz=20)
    (command,) = drv.start_commands()
    assert sim.on_command(command.rstrip(b"\n")) == b"(Ack(val TRUE))\n"
    assert (sim.labels, sim.outputs, sim.requested_frequency_hz) == (False, ["H2OD", "CO2D", "DiagVal"], 20.0)
    frame, logged = emit(sim, 42)
    assert frame.count(b"\t") == 2 and not frame.startswith(b"(")
    assert drv.parse(frame) == logged
    assert logged[3:] == (None, None, None)  # Temp, Pres, CO2SS switched off


def test_unparsable_commands_get_an_error_message_the_driver_counts() -> None:
    sim = LI7500Simulator("tcp://127.0.0.1:0")
    reply = sim.on_command(b"(Outputs(RS232(Freq 10)")
    assert reply is not None and reply.startswith(b"(Error")
    drv = driver()
    try:
        drv.parse(reply)
    except BadRecord as bad:
        assert bad.reason == "not_data"
    assert drv.messages["Error"] == 1 and drv.last_error == reply.decode().strip()
