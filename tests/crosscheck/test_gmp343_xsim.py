"""Vaisala GMP343 against a clean-room probe over a PTY (tests/crosscheck/asciiprobe.py), through the driver's
public poll as the station runs it. Sources: Vaisala GMP231 "Serial line output commands" and GMP251 "Serial
commands" (the command family: `send`, `s`, `echo`, `form`, `errs`, the `>` prompt); the tum-esm/hermes GMP343
driver for the FORM `CO2RAWUC CO2RAW CO2 T " (R C C+F T)"` and its reply layout."""

from __future__ import annotations

import time

import pytest

from drivers.gmp343.driver import GMP343Config, GMP343Driver
from gateway.driver_api import DeviceError
from gateway.model import QualityFlag
from gateway.testing.serial_pty import socat_ptys_or_skip
from tests.crosscheck.asciiprobe import Answer, AsciiProbe

pytestmark = pytest.mark.integration

ptys = pytest.fixture(socat_ptys_or_skip, name="ptys")
TAG = "(R C C+F T)"


def answers(send: str, errs: str = "OK: No errors detected.",
            echo_reply: str | None = "ECHO : OFF") -> dict[str, Answer]:
    return {
        "s": lambda line: "",
        "echo": lambda line: echo_reply if echo_reply is not None else "",
        "form": lambda line: "",
        "send": lambda line: send,
        "errs": lambda line: errs,
    }


def poll(port: str, polls: int = 2) -> list[dict[str, tuple[float | None, QualityFlag, str | None]]]:
    driver = GMP343Driver(GMP343Config.model_validate({"name": "co2", "port": port, "timeout_s": 2.0,
                                                      "errs_every_n_polls": 1}), station="st1")
    out = []
    try:
        for _ in range(polls):
            try:
                out.append({r.variable: (r.value, r.qc, r.qc_reason) for r in driver.poll()})
            except DeviceError:
                out.append({})  # a poll that failed cleanly, with a reason; never a wrong number
        return out
    finally:
        driver.close()


@pytest.mark.parametrize("eol", ["\r\n", "\n"], ids=["crlf", "lf"])
@pytest.mark.parametrize("echo", [True, False], ids=["echo_on", "echo_off"])
def test_the_reference_reply_is_read_to_its_values(ptys: tuple[str, str], echo: bool, eol: str) -> None:
    send = f"  423.18   421.95   422.40   18.72 {TAG}"  # the reference's EXAMPLE reply to `send`
    with AsciiProbe(ptys[1], answers(send), echo=echo, eol=eol) as probe:
        polls = poll(ptys[0])
    assert polls[-1] == {"CO2": (422.40, QualityFlag.GOOD, None), "T_PROBE": (18.72, QualityFlag.GOOD, None)}
    assert "send" in probe.commands


def test_a_power_on_banner_before_the_first_command_costs_no_wrong_value(ptys: tuple[str, str]) -> None:
    banner = "GMP343 - Version STD 2.00\nCopyright: Vaisala Oyj 2004 - 2006\n>"
    send = f"  410.00   409.50   409.75   -3.25 {TAG}"
    with AsciiProbe(ptys[1], answers(send), banner=banner):
        polls = poll(ptys[0], polls=3)
    assert all(p in ({}, {"CO2": (409.75, QualityFlag.GOOD, None), "T_PROBE": (-3.25, QualityFlag.GOOD, None)})
               for p in polls), polls
    assert polls[-1]  # read once the probe is in step


def test_a_value_printed_as_stars_is_missing(ptys: tuple[str, str]) -> None:
    send = f"  ***.**   ***.**   ***.**   18.72 {TAG}"
    with AsciiProbe(ptys[1], answers(send)):
        polls = poll(ptys[0])
    value, flag, reason = polls[-1]["CO2"]
    assert (value, flag) == (None, QualityFlag.MISSING) and reason
    assert polls[-1]["T_PROBE"][:2] == (18.72, QualityFlag.GOOD)


def test_errors_reported_by_errs_make_the_values_bad(ptys: tuple[str, str]) -> None:
    send = f"  423.18   421.95   422.40   18.72 {TAG}"
    with AsciiProbe(ptys[1], answers(send, errs="E1 IR source temperature out of range")):
        polls = poll(ptys[0])
    value, flag, reason = polls[-1]["CO2"]
    assert (value, flag) == (422.40, QualityFlag.BAD)
    assert reason is not None and "IR source temperature" in reason


@pytest.mark.parametrize("echo", [True, False], ids=["echo_on", "echo_off"])
def test_echo_off_answered_by_the_prompt_alone(ptys: tuple[str, str], echo: bool) -> None:
    """The reference names `echo off` but not the text the probe prints to confirm it; a probe that answers with
    the prompt alone (after its echo of the command, while echo is on) must still be read. With echo already off
    its bare prompt cannot be told from a late one: the first configuration times out, cleanly, and the next
    takes the prompt."""
    send = f"  423.18   421.95   422.40   18.72 {TAG}"
    with AsciiProbe(ptys[1], answers(send, echo_reply=None), echo=echo):
        polls = poll(ptys[0], polls=3)
    good = {"CO2": (422.40, QualityFlag.GOOD, None), "T_PROBE": (18.72, QualityFlag.GOOD, None)}
    assert polls == ([good] * 3 if echo else [{}, good, good])


def test_a_probe_left_streaming_in_run_mode_is_stopped_and_polled(ptys: tuple[str, str]) -> None:
    """`r` output running when the station starts (lines of a previous value keep coming until `s`)."""
    send = f"  423.18   421.95   422.40   18.72 {TAG}"
    streamed = f"  999.00   999.00   999.00   99.00 {TAG}"  # what the run output says: must not be taken
    with AsciiProbe(ptys[1], answers(send), run_line=streamed) as probe:
        time.sleep(0.2)  # some lines already waiting before the driver opens the port
        polls = poll(ptys[0], polls=3)
    assert polls[-1] == {"CO2": (422.40, QualityFlag.GOOD, None), "T_PROBE": (18.72, QualityFlag.GOOD, None)}
    assert all(p.get("CO2", (None,))[0] != 999.0 for p in polls), polls
    assert probe.run_line is None
