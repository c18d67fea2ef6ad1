"""GMP343: the grammar on its own, the simulator's command interpreter, and driver <-> simulator over a socat PTY
(real pyserial) including every fault mode, prompt handling and the ESC resync."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from drivers.gmp343 import grammar
from drivers.gmp343.driver import GMP343Config, GMP343Driver
from drivers.gmp343.simulator import BANNER, FAULTS, GMP343Simulator
from gateway.configfile import ConfigError
from gateway.driver_api import DeviceError, FailureKind, SerialSettings
from gateway.edge.config import parse_station_config
from gateway.model import QualityFlag, Reading
from gateway.testing.serial_pty import socat_ptys_or_skip

EXAMPLE_SEND = b"  423.18   421.95   422.40   18.72 (R C C+F T)\r\n>"


def test_the_documented_example_reply_parses() -> None:
    assert grammar.parse_send(EXAMPLE_SEND) == {"CO2RAWUC": 423.18, "CO2RAW": 421.95, "CO2": 422.40, "T": 18.72}


def test_echoed_command_and_stars_are_handled() -> None:
    reply = b"send\r\n  ***.**   421.95   422.40   18.72 (R C C+F T)\r\n>"
    values = grammar.parse_send(reply)
    assert values["CO2RAWUC"] is None and values["CO2"] == 422.40


@pytest.mark.parametrize("reply", [
    b"  423.18   421.95 (R C C+F T)\r\n>",  # too few values
    b"Unknown command\r\n>",  # no tag
    b"  4x3.18   421.95   422.40   18.72 (R C C+F T)\r\n>",  # not a number
    b"Pressure (hPa) : 1013.0 ? ",  # the probe is waiting for a value
])
def test_unusable_replies_raise_grammar_errors(reply: bytes) -> None:
    with pytest.raises(grammar.GrammarError):
        grammar.parse_send(reply)


def test_prompt_and_parameter_question_complete_a_reply() -> None:
    assert grammar.reply_complete(b"send\r\n 1 2 3 4 (R C C+F T)\r\n>")
    assert grammar.reply_complete(b"Pressure (hPa) : 1013.0 ? ")
    assert not grammar.reply_complete(b"send\r\n 1 2 3")
    assert grammar.parse_errs(b"errs\r\nOK: No errors detected.\r\n>") is None
    assert grammar.parse_errs(b"E: IR source failure\r\n>") == "E: IR source failure"


def test_replies_are_cut_at_prompts_including_two_prompts_read_together() -> None:
    # with echo off, a late bare `>` and the next reply's `>` arrive as `>>`: two replies, not one unfinished one
    assert grammar.split_replies(b"echo off\r\nECHO       : OFF\r\n>>") == (
        [b"echo off\r\nECHO       : OFF\r\n>", b">"], b"")
    assert grammar.split_replies(b">  423.18   421.95 (R C") == ([b">"], b"  423.18   421.95 (R C")
    # a '>' inside a line is text, not a prompt; a parameter question is a whole reply
    assert grammar.split_replies(b"a>b\r\n>") == ([b"a>b\r\n>"], b"")
    assert grammar.split_replies(b">Pressure (hPa) : 1013.0 ? ") == ([b">", b"Pressure (hPa) : 1013.0 ? "], b"")
    assert grammar.reply_complete(b">>") and not grammar.reply_complete(b"send\r\n 1 2")


def test_each_command_knows_its_reply_behind_late_ones() -> None:
    late_s, confirmation, bare = b"s\r\n>", b"echo off\r\nECHO       : OFF\r\n>", b">"
    measurement = b"  423.18   421.95   422.40   18.72 (R C C+F T)\r\n>"
    assert grammar.first_reply([bare, late_s]) == 0
    assert grammar.echo_off_reply([bare, late_s, measurement]) is None  # not arrived yet: keep reading
    assert grammar.echo_off_reply([bare, late_s, b"Echo : OFF\r\n>"]) == 2
    assert grammar.form_reply([confirmation, late_s, bare]) == 2
    assert grammar.send_reply([bare, confirmation, late_s, measurement]) == 3
    assert grammar.send_reply([bare, b"Unknown command\r\n>"]) == 1  # a wrong answer is still the answer
    assert grammar.errs_reply([bare, measurement, b"OK: No errors detected.\r\n>"]) == 2
    assert grammar.echo_state(confirmation) == "off" and grammar.echo_state(measurement) is None


def test_simulator_echo_form_and_parameter_question() -> None:
    sim = GMP343Simulator("unused")
    assert sim.handle_line(b"echo off") == b"echo off\r\nECHO       : OFF\r\n>"
    assert sim.handle_line(grammar.FORM_COMMAND) == b">"
    values = grammar.parse_send(sim.handle_line(b"send"))
    assert set(values) == set(grammar.FORM) and 380 < (values["CO2"] or 0) < 460
    assert sim.handle_line(b"p").endswith(b"? ")
    assert sim.handle_line(b"990") == b">" and sim.pressure_hpa == 990.0
    assert sim.handle_line(b"form FOO") == b"Unknown quantity FOO\r\n>"
    assert sim.handle_line(b"r") == b"" and sim.running and sim.handle_line(b"send") == b""
    assert sim.handle_line(b"s") == b">" and not sim.running


def test_a_gmp343_cannot_share_its_port() -> None:
    data = {"site": "s", "station": "st", "buffer": {"path": "/var/lib/sinkwatch/never-opened.sqlite"}, "sensors": [
        {"name": "a", "driver": "gmp343", "port": "/dev/ttyUSB0"},
        {"name": "b", "driver": "gmp252", "port": "/dev/ttyUSB0", "baudrate": 19200, "stopbits": 1},
    ]}
    with pytest.raises(ConfigError, match=r"sensors\[1\]\.port: .*cannot share a serial line"):
        parse_station_config(data, "station.yaml")


class LaggingLine:
    """A SerialLine in front of the simulator's command interpreter whose replies come late: it starts with
    `late` replies (to commands before the driver's) still on their way, and hands over what has arrived either
    one reply per read or all at once. An exchange that finds no whole reply fails as RtuSerialLine does."""

    def __init__(self, sim: GMP343Simulator, late: list[bytes], *, all_at_once: bool) -> None:
        self.settings = SerialSettings("/dev/ttyLAG", 19200)
        self.sim = sim
        self.in_flight = list(late)
        self.all_at_once = all_at_once

    def read_registers(self, device: int, address: int, count: int, *, function: int = 3, timeout_s: float,
                       retries: int = 0) -> list[int]:
        raise AssertionError("the GMP343 has no registers")

    def transact(self, request: bytes, *, complete: Callable[[bytes], bool], timeout_s: float) -> bytes:
        assert request.startswith(grammar.ESC) and request.endswith(grammar.CR)
        self.in_flight.append(self.sim.handle_line(request[1:-1]))
        received = b""
        while self.in_flight and not complete(received):
            received += self.in_flight.pop(0)
            if self.all_at_once:
                received += b"".join(self.in_flight)
                self.in_flight.clear()
        if not complete(received):
            raise DeviceError(FailureKind.TIMEOUT, f"no complete reply to {request!r} (received {received!r})")
        return received


LATE_REPLIES = {
    "banner": [BANNER],  # the power-on banner, read after the first command went out
    "measurement": [EXAMPLE_SEND],  # a `send` whose poll had timed out
    "confirmation": [b"ECHO       : OFF\r\n>"],  # an `echo off` whose resync had timed out
    "all three": [BANNER, EXAMPLE_SEND, b"ECHO       : OFF\r\n>"],
}


@pytest.mark.parametrize("all_at_once", [False, True], ids=["one-reply-per-read", "all-at-once"])
@pytest.mark.parametrize("late", LATE_REPLIES.values(), ids=LATE_REPLIES.keys())
def test_late_replies_ahead_of_the_configuration_are_dropped_and_counted(late: list[bytes], all_at_once: bool) -> None:
    sim = GMP343Simulator("unused", seed=3)  # not started: its command interpreter answers through the line
    line = LaggingLine(sim, late, all_at_once=all_at_once)
    driver = make_driver("/dev/ttyLAG", errs_every_n_polls=1)
    driver.attach(line)
    polled = [by_variable(driver.poll()) for _ in range(3)]
    assert [p["CO2"].value for p in polled] == [s["CO2"] for s in sim.served]  # this poll's value, every time
    assert all(r.qc is QualityFlag.GOOD for p in polled for r in p.values())
    assert sim.commands == ["s", "echo off", grammar.FORM_COMMAND.decode()] + ["send", "errs"] * 3
    # each late reply, and the `s` answer the early return left behind, is dropped once; nothing is left over
    assert driver.late_replies == len(late) and not line.in_flight


def test_an_echo_off_that_is_never_confirmed_is_a_timeout_naming_the_confirmation() -> None:
    sim = GMP343Simulator("unused")
    driver = make_driver("/dev/ttyLAG")
    driver.attach(LaggingLine(sim, [], all_at_once=False))
    sim.handle_line = lambda line: b">"  # type: ignore[method-assign]  # firmware that answers only with its prompt
    with pytest.raises(DeviceError) as info:
        driver.poll()
    assert info.value.kind is FailureKind.TIMEOUT and "`echo off` confirmation" in (info.value.hint or "")


# --- over a pseudo-terminal ------------------------------------------------------------------------------------


ptys = pytest.fixture(socat_ptys_or_skip, name="ptys")


def make_driver(port: str, **overrides: Any) -> GMP343Driver:
    # 2 s: a loaded CI machine can delay a PTY round trip by a good fraction of a second; only the fault tests
    # need a timeout below the simulator's 0.5 s "slow" answer, and they ask for it.
    settings = {"name": "co2_canopy", "port": port, "timeout_s": 2.0, **overrides}
    return GMP343Driver(GMP343Config.model_validate(settings), station="st1")


def by_variable(readings: list[Reading]) -> dict[str, Reading]:
    return {r.variable: r for r in readings}


@pytest.mark.integration
def test_driver_configures_the_probe_and_reads_what_it_served(ptys: tuple[str, str]) -> None:
    with GMP343Simulator(ptys[0], seed=5) as sim:
        driver = make_driver(ptys[1], variable_suffix="_1_3_1")
        try:
            polled = [by_variable(driver.poll()) for _ in range(4)]
        finally:
            driver.close()
    assert sim.commands[:3] == ["s", "echo off", grammar.FORM_COMMAND.decode()]
    assert sim.commands.count("send") == 4 and sim.commands.count("errs") == 1
    assert [r["CO2_1_3_1"].value for r in polled] == [s["CO2"] for s in sim.served]
    assert [r["T_PROBE_1_3_1"].value for r in polled] == [s["T"] for s in sim.served]
    assert all(r.qc is QualityFlag.GOOD and r.unit in ("umol mol-1", "degC") for p in polled for r in p.values())


@pytest.mark.integration
def test_late_banner_and_slow_replies_do_not_put_the_driver_one_reply_behind(ptys: tuple[str, str]) -> None:
    # The race seen under load, made deterministic: the banner's prompt comes after `s` went out and every reply
    # 0.2 s late, so `s` is answered early by the banner and each later reply arrives while the next exchange
    # waits. Taking the first prompt, the driver read the `echo off` confirmation as the `form` reply and timed out
    # on `...OFF\r\n>>` (or took `form`'s bare `>` for the `send` reply).
    with GMP343Simulator(ptys[0], seed=7, reply_delay_s=0.2, late_banner=True) as sim:
        driver = make_driver(ptys[1])
        try:
            polled = [by_variable(driver.poll()) for _ in range(2)]
        finally:
            driver.close()
    assert sim.commands == ["s", "echo off", grammar.FORM_COMMAND.decode(), "send", "errs", "send"]
    assert [p["CO2"].value for p in polled] == [s["CO2"] for s in sim.served]


@pytest.mark.integration
def test_a_probe_left_streaming_is_stopped_and_its_lines_dropped(ptys: tuple[str, str]) -> None:
    with GMP343Simulator(ptys[0], seed=9, interval_s=0.01) as sim:
        sim.handle_line(b"r")  # someone started the output in a terminal and left
        driver = make_driver(ptys[1])
        try:
            readings = by_variable(driver.poll())
        finally:
            driver.close()
    assert not sim.running and sim.commands[:2] == ["r", "s"]
    assert readings["CO2"].value == sim.served[-1]["CO2"]  # the `send`, not a line streamed before the stop


@pytest.mark.integration
def test_a_probe_left_waiting_for_a_parameter_is_resynchronised(ptys: tuple[str, str]) -> None:
    with GMP343Simulator(ptys[0]) as sim:
        sim.handle_line(b"p")  # someone typed `p` in a terminal and walked away
        driver = make_driver(ptys[1])
        try:
            readings = by_variable(driver.poll())
        finally:
            driver.close()
    assert readings["CO2"].value is not None
    assert sim.pressure_hpa == 1013.0  # the ESC dropped the half-typed command instead of setting a pressure


@pytest.mark.integration
@pytest.mark.parametrize(("fault", "kind"), [
    ("no_reply", FailureKind.TIMEOUT),
    ("garbage", FailureKind.PROTOCOL),
    ("slow", FailureKind.TIMEOUT),
])
def test_faults_surface_as_device_errors_and_the_driver_recovers(ptys: tuple[str, str], fault: str,
                                                                  kind: FailureKind) -> None:
    with GMP343Simulator(ptys[0], fault=fault) as sim:
        driver = make_driver(ptys[1], timeout_s=0.3)
        try:
            with pytest.raises(DeviceError) as info:
                driver.poll()
            assert info.value.kind is kind and "co2_canopy" in info.value.message and info.value.hint
            sim.set_fault("none")
            driver.config.timeout_s = 2.0  # room for a slow reply still in flight
            # the value of this poll's `send`, not a late reply from the failed one
            assert by_variable(driver.poll())["CO2"].value == sim.served[-1]["CO2"]
        finally:
            driver.close()


@pytest.mark.integration
def test_stars_become_missing_and_errs_makes_readings_bad(ptys: tuple[str, str]) -> None:
    with GMP343Simulator(ptys[0], fault="nan") as sim:
        driver = make_driver(ptys[1], errs_every_n_polls=1)
        try:
            co2 = by_variable(driver.poll())["CO2"]
            assert co2.value is None and co2.qc is QualityFlag.MISSING
            assert math.isnan(sim.served[-1]["CO2"])
            sim.set_fault("errs")
            readings = by_variable(driver.poll())
        finally:
            driver.close()
    assert readings["CO2"].qc is QualityFlag.BAD
    assert readings["CO2"].qc_reason is not None and "IR source failure" in readings["CO2"].qc_reason


def test_every_fault_mode_is_exercised_above() -> None:
    assert set(FAULTS) == {"none", "no_reply", "garbage", "nan", "errs", "slow"}
    assert BANNER.startswith(b"GMP343 - Version STD ")


class CrOnlyLine(LaggingLine):
    """The simulator's replies with every CR LF sent as a bare CR (a unit, or an independent simulator, whose lines
    end with CR only), handed over whole."""

    def transact(self, request: bytes, *, complete: Callable[[bytes], bool], timeout_s: float) -> bytes:
        received = self.sim.handle_line(request[1:-1]).replace(b"\r\n", b"\r")
        if not complete(received):
            raise DeviceError(FailureKind.TIMEOUT, f"no complete reply to {request!r} (received {received!r})")
        return received


def test_replies_whose_lines_end_with_a_bare_cr_are_read() -> None:
    assert grammar.split_replies(EXAMPLE_SEND.replace(b"\r\n", b"\r")) == ([EXAMPLE_SEND.replace(b"\r\n", b"\r")], b"")
    sim = GMP343Simulator("unused", seed=5)
    driver = make_driver("/dev/ttyLAG", errs_every_n_polls=1)
    driver.attach(CrOnlyLine(sim, [], all_at_once=True))
    polled = [by_variable(driver.poll()) for _ in range(3)]
    assert [p["CO2"].value for p in polled] == [s["CO2"] for s in sim.served]
    assert all(r.qc is QualityFlag.GOOD for p in polled for r in p.values())


def test_echo_off_without_a_confirmation_is_taken_by_its_echo_or_once_known_by_its_prompt() -> None:
    """The confirmation's text is not documented in the sources we have: a probe printing none answers `echo off`
    with the echo of the command (echo on) or a bare prompt (echo off)."""
    assert grammar.echo_off_reply([b"s\r\n>", b"echo off\r\n>"]) == 1
    assert grammar.echo_off_reply([b"ECHO off\r\n>"]) == 0
    assert grammar.echo_off_reply([b">"]) is None  # a bare prompt may be a late one: not taken by default
    assert grammar.echo_off_reply([b">"], bare_prompt_ok=True) == 0
    assert grammar.echo_off_reply([b">", b"echo off\r\nECHO : OFF\r\n>"], bare_prompt_ok=True) == 1
