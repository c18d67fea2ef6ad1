"""Text instruments' records end at any line end: every stream driver reads its own simulator's records whichever
of CR, LF or CR LF ends them, cut into reads of any size (`transport.FrameSplitter`)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from drivers.csat3b.driver import CSAT3BConfig, CSAT3BDriver
from drivers.csat3b.simulator import CSAT3BSimulator
from drivers.irgason.driver import IrgasonConfig, IrgasonDriver
from drivers.irgason.simulator import IrgasonSimulator
from drivers.li7500.driver import LI7500Config, LI7500Driver
from drivers.li7500.simulator import LI7500Simulator
from drivers.windmaster.driver import WindMasterConfig, WindMasterDriver
from drivers.windmaster.simulator import WindMasterSimulator
from gateway.edge.streams.transport import LINE_ENDS, FrameSplitter

RECORDS = 120

# (driver, its config, the simulator): each driver declares its manual's terminator
INSTRUMENTS: dict[str, tuple[Any, Any, Any]] = {
    "csat3b": (CSAT3BDriver, CSAT3BConfig, CSAT3BSimulator),
    "irgason": (IrgasonDriver, IrgasonConfig, IrgasonSimulator),
    "li7500": (LI7500Driver, LI7500Config, LI7500Simulator),
    "windmaster": (WindMasterDriver, WindMasterConfig, WindMasterSimulator),
}


def _chunks(data: bytes, rng: random.Random) -> list[bytes]:
    out, at = [], 0
    while at < len(data):
        size = rng.randint(1, 300)
        out.append(data[at:at + size])
        at += size
    return out


def _split(terminator: bytes, data: bytes, seed: int) -> tuple[list[bytes], int]:
    splitter = FrameSplitter(terminator, 4096)
    frames = [frame for chunk in _chunks(data, random.Random(seed)) for frame in splitter.feed(chunk)]
    return frames, splitter.overflows


@pytest.mark.parametrize("line_end", [b"\r", b"\n", b"\r\n"], ids=["CR", "LF", "CRLF"])
@pytest.mark.parametrize("instrument", sorted(INSTRUMENTS))
def test_records_with_any_line_end_decode_to_the_simulators_values(instrument: str, line_end: bytes) -> None:
    driver_class, config_class, simulator_class = INSTRUMENTS[instrument]
    config = config_class.model_validate({"name": instrument, "port": "/dev/null"})
    simulator = simulator_class("tcp://127.0.0.1:0", seed=3)
    terminator = driver_class.terminator
    assert terminator in LINE_ENDS
    wire, truth = b"", []
    for index in range(1000, 1000 + RECORDS):
        frame = simulator.frame(index, index / 20)
        assert frame.endswith(simulator.terminator)
        wire += frame[:-len(simulator.terminator)] + line_end
        truth.append(simulator._pending_values)  # what frame() encoded
    frames, overflows = _split(terminator, wire, seed=len(line_end))
    assert overflows == 0
    assert len(frames) == RECORDS
    driver = driver_class(config, station="st1")
    assert [driver.parse(frame) for frame in frames] == truth


def test_a_cr_lf_cut_between_two_reads_gives_no_empty_frame() -> None:
    splitter = FrameSplitter(b"\r", 64)
    assert splitter.feed(b"a,1\r") == [b"a,1"]
    assert splitter.feed(b"\nb,2\r") == [b"b,2"]
    assert splitter.feed(b"\n\n\r\nc,3") == []
    assert splitter.feed(b"\r\n") == [b"c,3"]


def test_an_overlong_line_is_dropped_whichever_line_end_follows_it() -> None:
    for line_end in LINE_ENDS:
        splitter = FrameSplitter(b"\r\n", 16)
        frames = splitter.feed(b"x" * 40) + splitter.feed(b"tail" + line_end + b"ok" + line_end)
        assert frames == [b"ok"], line_end
        assert splitter.overflows == 1


def test_a_binary_terminator_is_split_at_exactly_itself() -> None:
    """Only text line ends are widened: a two-byte marker splits where it stands, empty frames included."""
    splitter = FrameSplitter(b"\x55\xaa", 64)
    assert splitter.feed(b"\x01\r\x02\n\x55\xaa\x55\xaa\x03") == [b"\x01\r\x02\n", b""]
