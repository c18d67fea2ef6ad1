"""GMP343: the grammar on its own, the simulator's command interpreter, and driver <-> simulator over a socat PTY
(real pyserial) including every fault mode, prompt handling and the ESC resync."""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.gmp343 import grammar
from drivers.gmp343.driver import GMP343Config, GMP343Driver
from drivers.gmp343.simulator import BANNER, FAULTS, GMP343Simulator
from gateway.configfile import ConfigError
from gateway.driver_api import DeviceError, FailureKind
from gateway.edge.config import parse_station_config
from gateway.model import QualityFlag, Reading
from gateway.testing.serial_pty import socat_pty_pair

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


# --- over a pseudo-terminal ------------------------------------------------------------------------------------


@pytest.fixture
def ptys(tmp_path: Path) -> Iterator[tuple[str, str]]:
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed (Debian package socat)")
    with socat_pty_pair(tmp_path) as pair:
        yield pair


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
            assert by_variable(driver.poll())["CO2"].value is not None
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
