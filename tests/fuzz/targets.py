"""Every parser of outside input, as a fuzz target: what it is fed, what it may raise, what it must return.

A parser may refuse an input only with the errors it declares (`declared`); anything else escaping it (IndexError,
UnicodeDecodeError, OverflowError, RecursionError, a pydantic ValidationError from a model it builds, ...) is a bug.
What it returns is checked too (`check`): the values a driver hands on are finite numbers or None, a Modbus read
gives `count` 16-bit registers, a decoded firmware frame passed its CRC.

Inputs are Hypothesis strategies that mix three kinds: valid inputs built from the format's own fields (so the
parser is exercised past its checksum), the same with structure-aware mutations (a field replaced by a nasty token
with the checksum recomputed, bytes flipped, cut, spliced), and plain random bytes or text. `tests/fuzz/` runs each
target for a few hundred examples in CI; `bench/fuzz.py` runs each for 100,000 or more.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import gzip
import json
import math
import random
import shutil
import tempfile
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

# --- shared building blocks ---------------------------------------------------------------------------------------

#: Tokens that have broken number and text parsers before: non-finite spellings, overflowing magnitudes, digit
#: strings past Python's int limit, underscores and non-ASCII digits that float() accepts, separators, control bytes.
NASTY_TOKENS: tuple[str, ...] = (
    "", " ", "nan", "NaN", "NAN", "-nan", "inf", "-inf", "Infinity", "+inf", "1e400", "-1e400", "1e-400", "1e308",
    "9" * 400, "-" + "9" * 400, "1" * 5000, "0x1F", "1_000", " 1", "1 ", "+", "-", ".", "+.", "-.", "1e", "e1",
    "\u0663", "\u0661\u0662", "\u00b2", "\x00", "\xff", "\u00e9", "(", ")", "()", '"', "\t", ",", "\r", "\n", "*",
    "****", "-0", "0" * 30 + "1", "65536", "-32769", "4294967296", "18446744073709551616",
)

nasty_text = st.sampled_from(NASTY_TOKENS)
small_text = st.text(max_size=12)
any_token = st.one_of(nasty_text, small_text, st.floats(allow_nan=True, allow_infinity=True).map(repr),
                      st.integers(min_value=-(10**30), max_value=10**30).map(str))


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` after 1-4 random edits: flip a byte, delete a span, insert bytes, duplicate a span, cut the end."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(("flip", "delete", "insert", "duplicate", "truncate", "nasty")))
        pos = draw(st.integers(0, len(out))) if out else 0
        if op == "flip" and out:
            i = min(pos, len(out) - 1)
            out[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "delete" and out:
            del out[pos:pos + draw(st.integers(1, 8))]
        elif op == "insert":
            out[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "duplicate" and out:
            out[pos:pos] = out[pos:pos + draw(st.integers(1, 16))]
        elif op == "truncate":
            del out[pos:]
        else:
            out[pos:pos] = draw(nasty_text).encode("utf-8", "surrogatepass")
    return bytes(out)


def _mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        pos = rng.randint(0, len(out))
        if op == 0 and out:
            out[min(pos, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and out:
            del out[pos:pos + rng.randint(1, 8)]
        elif op == 2:
            out[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif op == 3 and out:
            out[pos:pos] = out[pos:pos + rng.randint(1, 16)]
        elif op == 4:
            del out[pos:]
        else:
            out[pos:pos] = rng.choice(NASTY_TOKENS).encode("utf-8", "surrogatepass")
    return bytes(out)


def mutate_any(value: Any, rng: random.Random) -> Any:
    """A byte-level mutant of a generated input, for volume in the benchmark: the bytes or text inside `value`
    (one of them, for a tuple or list) edited as `mutated` does; other parts unchanged."""
    if isinstance(value, bytes):
        return _mutate_bytes(value, rng)
    if isinstance(value, str):
        return _mutate_bytes(value.encode("utf-8", "surrogatepass"), rng).decode("utf-8", "replace")
    if isinstance(value, tuple | list):
        spots = [i for i, item in enumerate(value) if isinstance(item, bytes | str | tuple | list)]
        if not spots:
            return value
        i = rng.choice(spots)
        items = list(value)
        items[i] = mutate_any(items[i], rng)
        return type(value)(items) if isinstance(value, list) else tuple(items)
    return value


def with_mutations(valid: st.SearchStrategy[bytes], *, random: st.SearchStrategy[bytes] | None = None,
                   ) -> st.SearchStrategy[bytes]:
    """Valid inputs, mutated valid inputs, and random bytes, about 1/3 each."""
    return st.one_of(valid, valid.flatmap(mutated), random if random is not None else st.binary(max_size=200))


def finite_or_none(values: Any, what: str) -> None:
    for value in values:
        assert value is None or (isinstance(value, float) and math.isfinite(value)), f"{what}: {value!r}"


@dataclass
class Target:
    """One parser under fuzz: `run(input)` calls it; `declared` are the errors it may refuse input with."""

    name: str
    inputs: st.SearchStrategy[Any]
    run: Callable[[Any], Any]
    declared: tuple[type[BaseException], ...]
    check: Callable[[Any, Any], None] = lambda _input, _output: None
    outside: tuple[int, ...] | None = None
    refuses: bool = True
    """False for a target whose input cannot make it raise (a driver polled through a line that always answers
    reports bad values as quality flags; the ingestor dead-letters instead of raising)."""
    """For a tuple input: the positions that come from outside (the rest is our own configuration, e.g. the
    device address asked for); `mutant` edits only those. None: the whole input comes from outside."""

    def mutant(self, value: Any, rng: random.Random) -> Any:
        if self.outside is None or not isinstance(value, tuple):
            return mutate_any(value, rng)
        items = list(value)
        i = rng.choice(self.outside)
        items[i] = mutate_any(items[i], rng)
        return tuple(items)

    def exercise(self, value: Any) -> str | None:
        """Feed one input; None if it was accepted (and its output passed `check`), else the declared error's
        class name. An undeclared exception propagates: that is the finding."""
        try:
            output = self.run(value)
        except self.declared as exc:
            return type(exc).__name__
        self.check(value, output)
        return None


# --- Modbus RTU ---------------------------------------------------------------------------------------------------


def _rtu_line() -> Any:
    from gateway.driver_api import RtuSerialLine, SerialSettings

    return RtuSerialLine(SerialSettings(port="fuzz-no-such-port", baudrate=19200, stopbits=2))


@st.composite
def rtu_replies(draw: st.DrawFn) -> tuple[bytes, int, int, int]:
    """(reply, device, function, count): the reply to `count` registers from `device`, possibly mutated."""
    from gateway.driver_api import rtu

    device = draw(st.integers(1, 247))
    function = draw(st.sampled_from((3, 4)))
    count = draw(st.integers(1, 125))
    registers = draw(st.lists(st.integers(0, 0xFFFF), min_size=count, max_size=count))
    kind = draw(st.sampled_from(("good", "exception", "other_device", "other_count", "mutated", "random")))
    if kind == "good":
        reply = rtu.read_response(device, function, registers)
    elif kind == "exception":
        reply = rtu.exception_response(device, function, draw(st.integers(0, 255)))
    elif kind == "other_device":
        reply = rtu.read_response(draw(st.integers(0, 255)), function, registers)
    elif kind == "other_count":
        reply = rtu.read_response(device, function, registers[: draw(st.integers(0, count))])
    elif kind == "mutated":
        reply = draw(mutated(rtu.read_response(device, function, registers)))
    else:
        reply = draw(st.binary(max_size=260))
    return reply, device, function, count


def _decode_rtu(arg: tuple[bytes, int, int, int]) -> list[int]:
    reply, device, function, count = arg
    result: list[int] = _RTU_LINE._decode_read(reply, device, function, count, 1.0)
    return result


def _check_registers(arg: tuple[bytes, int, int, int], registers: list[int]) -> None:
    assert len(registers) == arg[3] and all(0 <= r <= 0xFFFF for r in registers), registers


def _frame_lengths(buffer: bytes) -> tuple[int | None, int | None]:
    from gateway.driver_api import rtu

    return rtu.request_length(buffer), rtu.response_length(buffer)


def _check_lengths(buffer: bytes, lengths: tuple[int | None, int | None]) -> None:
    for length in lengths:
        assert length is None or 4 <= length <= 300, length


class FakeLine:
    """A SerialLine whose replies come from the fuzzer: registers for reads, bytes for ASCII transactions."""

    def __init__(self, registers: list[list[int]] | None = None, replies: list[bytes] | None = None) -> None:
        from gateway.driver_api import SerialSettings

        self.settings = SerialSettings(port="fuzz", baudrate=19200)
        self._registers = list(registers or [])
        self._replies = list(replies or [])

    def read_registers(self, device: int, address: int, count: int, *, function: int = 3, timeout_s: float,
                       retries: int = 0) -> list[int]:
        words = self._registers.pop(0) if self._registers else []
        # The SerialLine contract: exactly `count` 16-bit registers (RtuSerialLine checks the byte count).
        return (words + [0] * count)[:count]

    def transact(self, request: bytes, *, complete: Callable[[bytes], bool], timeout_s: float) -> bytes:
        from gateway.driver_api import DeviceError, FailureKind

        reply = self._replies.pop(0) if self._replies else b">"
        if not complete(reply):
            raise DeviceError(FailureKind.TIMEOUT, "fuzz: incomplete reply", "")
        return reply


#: Register pairs a float32 decoder must survive: quiet/signalling NaN, +-inf, denormals, -0, the max float.
FLOAT_WORD_PAIRS = ((0x0000, 0x7FC0), (0x0001, 0x7F80), (0x0000, 0x7F80), (0x0000, 0xFF80), (0x0001, 0x0000),
                    (0x0000, 0x8000), (0xFFFF, 0x7F7F), (0x0000, 0x0000), (0x8000, 0x8000))


@st.composite
def register_blocks(draw: st.DrawFn, blocks: int) -> list[list[int]]:
    out = []
    for _ in range(blocks):
        words = draw(st.lists(st.one_of(st.integers(0, 0xFFFF), st.sampled_from((0, 0x8000, 0x7FFF, 0xFFFF))),
                              min_size=0, max_size=12))
        if draw(st.booleans()):
            pair = draw(st.sampled_from(FLOAT_WORD_PAIRS))
            at = draw(st.integers(0, 10))
            words = (words + [0] * 12)[:12]
            words[at:at + 2] = pair
        out.append(words)
    return out


def _gmp252_poll(blocks: list[list[int]]) -> Any:
    from drivers.gmp252.driver import GMP252Config, GMP252Driver

    driver = GMP252Driver(GMP252Config(name="co2", port="/dev/fuzz", address=240), station="st1")
    driver.attach(FakeLine(registers=blocks))
    return driver.poll()


def _soilprobe_poll(arg: tuple[bool, list[list[int]]]) -> Any:
    from drivers.soilprobe.driver import SoilProbeDriver

    layout_a, blocks = arg
    config = SoilProbeDriver.Config.model_validate({"name": "soil", "driver": "soilprobe", "port": "/dev/fuzz",
                                                    "layout": "A" if layout_a else "B"})
    driver = SoilProbeDriver(config, station="st1")
    driver.attach(FakeLine(registers=blocks))
    return driver.poll()


def _check_readings(_input: Any, readings: Any) -> None:
    from gateway.model import Reading

    assert isinstance(readings, list) and readings
    for reading in readings:
        assert isinstance(reading, Reading)
        # built through the model's validators: a finite value or None with qc MISSING
        Reading.model_validate(reading.model_dump())


# --- stream grammars ------------------------------------------------------------------------------------------------

coordinate = st.one_of(st.floats(-60, 60, allow_nan=False), st.sampled_from((0.0, -0.0, 999.99, -999.99)))


@st.composite
def windmaster_frames(draw: st.DrawFn) -> bytes:
    from drivers.windmaster import grammar

    if draw(st.booleans()):
        return grammar.build_frame(draw(st.sampled_from("QQQA")), draw(coordinate), draw(coordinate),
                                   draw(coordinate), draw(st.floats(300, 380)), draw(st.floats(-40, 50)),
                                   draw(st.integers(0, 0xFF)), high_resolution=draw(st.booleans()),
                                   units=draw(st.sampled_from("MMMNPKFX")),
                                   bad_checksum=draw(st.integers(0, 4)) == 0)
    # field-level: any tokens, a correct checksum over them
    fields = draw(st.lists(any_token, min_size=0, max_size=10))
    body = (",".join(fields) + draw(st.sampled_from(("", ",")))).encode("utf-8", "surrogatepass")
    check = grammar.checksum(body)
    return (draw(st.binary(max_size=3)) + bytes([grammar.STX]) + body + bytes([grammar.ETX]) +
            f"{check:02X}".encode() + draw(st.sampled_from((b"\r\n", b"", b"\n"))))


def _windmaster_parse(frame: bytes) -> Any:
    return _WINDMASTER.parse(frame)


@st.composite
def csat3b_records(draw: st.DrawFn) -> list[bytes]:
    from drivers.csat3b import grammar

    records = []
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            records.append(grammar.build_record(draw(st.none() | coordinate), draw(st.none() | coordinate),
                                                draw(st.none() | coordinate), draw(st.none() | st.floats(-40, 50)),
                                                draw(st.integers(0, 2**16)), draw(st.integers(0, 200)),
                                                bad_signature=draw(st.booleans())))
            continue
        fields = [t.encode("utf-8", "surrogatepass") for t in draw(st.lists(any_token, min_size=6, max_size=6))]
        signature = grammar.signature(grammar.signed_part(fields))
        records.append(b",".join([*fields, f"{signature:04x}".encode()]) + b"\r")
    return records


def _csat3b_parse(records: list[bytes]) -> list[Any]:
    from drivers.csat3b.driver import CSAT3BDriver

    driver = CSAT3BDriver(CSAT3BDriver.Config.model_validate({"name": "sonic", "driver": "csat3b",
                                                             "port": "/dev/fuzz"}), station="st1")
    return _parse_all(driver, records)


def _parse_all(driver: Any, records: list[bytes]) -> list[Any]:
    """Every record through one driver (its counter state carries over); a bad record before the last is kept as
    its error, the last record's error propagates, so the target's outcome is the last record's."""
    out: list[Any] = []
    for record in records[:-1]:
        try:
            out.append(driver.parse(record))
        except _bad_record() as exc:
            out.append(exc)
    out.append(driver.parse(records[-1]))
    return out


def _bad_record() -> type[Exception]:
    from gateway.driver_api import BadRecord

    return BadRecord


def _check_stream_values(_input: Any, output: Any) -> None:
    rows = output if isinstance(output, list) else [output]
    for row in rows:
        if isinstance(row, Exception):
            continue
        assert isinstance(row, tuple)
        finite_or_none(row, "stream value")


LI7500_LABELS = ("Ndx", "DiagVal", "CO2D", "H2OD", "Temp", "Pres", "CO2SS", "CO2Raw", "Aux", "Cooler", "data")


@st.composite
def li7500_lines(draw: st.DrawFn) -> tuple[bool, bytes]:
    from drivers.li7500 import sexpr

    labels = draw(st.booleans())
    kind = draw(st.sampled_from(("data", "tab", "message", "nested", "random")))
    number = st.floats(-1e30, 1e30).map(sexpr.format_number)
    value = st.one_of(number, number, number, st.floats().map(repr), any_token)
    if kind == "data":
        items = [(draw(st.sampled_from(LI7500_LABELS)), draw(value)) for _ in range(draw(st.integers(1, 9)))]
        text = "(Data " + "".join(f"({k} {v})" for k, v in items) + ")"
    elif kind == "tab":
        text = "\t".join(draw(st.lists(value, min_size=0, max_size=8)))
    elif kind == "message":
        text = f"({draw(st.sampled_from(('Ack', 'Error', 'Diagnostics', 'Data', 'data', 'X')))} {draw(value)})"
    elif kind == "nested":
        depth = draw(st.integers(1, 3000))
        text = "(" * depth + draw(value) + ")" * draw(st.integers(0, depth))
    else:
        return labels, draw(st.binary(max_size=200))
    raw = (text + draw(st.sampled_from(("\n", "\r\n", "")))).encode("utf-8", "surrogatepass")
    return labels, draw(mutated(raw)) if draw(st.booleans()) else raw


def _li7500_parse(arg: tuple[bool, bytes]) -> Any:
    labels, line = arg
    return (_LI7500_LABELLED if labels else _LI7500_TAB).parse(line)


def _sexpr_parse(text: str) -> Any:
    from drivers.li7500 import sexpr

    return sexpr.parse(text)


@st.composite
def sexpr_texts(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.one_of(st.sampled_from(("(", ")", '"', " ", "\t", "\n")), any_token), max_size=30))
    if draw(st.booleans()):
        depth = draw(st.integers(1, 5000))
        return "(" * depth + "".join(parts) + ")" * depth
    return "".join(parts)


@st.composite
def irgason_lines(draw: st.DrawFn) -> list[bytes]:
    from drivers.irgason.driver import campbell_signature

    lines = []
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            elements = [repr(draw(st.floats(-50, 50))) for _ in range(13)] + [str(draw(st.integers(0, 63)))]
            elements[4] = elements[7] = elements[12] = str(draw(st.integers(0, 3)))
            for _ in range(draw(st.integers(0, 3))):
                elements[draw(st.integers(0, 13))] = draw(any_token)
        else:
            elements = draw(st.lists(any_token, min_size=12, max_size=16))
        # the default span (elements 6..14); non-ASCII text gets the signature of its UTF-8 bytes
        signature = campbell_signature(",".join(elements[5:14]).encode("utf-8", "surrogatepass"))
        sig = draw(st.sampled_from((f"{signature:04x}", f"{signature:04X}", "zzzz", "")))
        line = ",".join([*elements, sig]).encode("utf-8", "surrogatepass") + b"\r\n"
        lines.append(draw(mutated(line)) if draw(st.integers(0, 3)) == 0 else line)
    return lines


def _irgason_parse(lines: list[bytes]) -> list[Any]:
    from drivers.irgason.driver import IrgasonConfig, IrgasonDriver

    driver = IrgasonDriver(IrgasonConfig(name="irga", port="/dev/fuzz"), station="st1")
    return _parse_all(driver, lines)


@st.composite
def gmp343_replies(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """(send reply, errs reply)."""
    from drivers.gmp343 import grammar

    if draw(st.booleans()):
        values = [draw(st.one_of(st.floats(-100, 5000).map(lambda v: f"{v:8.2f}"), any_token))
                  for _ in range(draw(st.integers(3, 5)))]
        send = ("  " + "  ".join(values) + " " + grammar.FORM_TAG + "\r\n>").encode("utf-8", "surrogatepass")
        send = draw(mutated(send)) if draw(st.booleans()) else send
    else:
        send = draw(st.binary(max_size=120)) + b">"
    errs = draw(st.one_of(st.just(b"OK: No errors detected.\r\n>"),
                          st.text(max_size=400).map(lambda t: t.encode("utf-8", "surrogatepass") + b"\r\n>"),
                          st.binary(max_size=300).map(lambda b: b + b">")))
    return send, errs


def _gmp343_grammar(arg: tuple[bytes, bytes]) -> Any:
    from drivers.gmp343 import grammar

    send, errs = arg
    grammar.parse_errs(errs)
    return tuple(grammar.parse_send(send).values())


def _gmp343_poll(arg: tuple[bytes, bytes]) -> Any:
    from drivers.gmp343.driver import GMP343Driver

    send, errs = arg
    config = GMP343Driver.Config.model_validate({"name": "co2air", "driver": "gmp343", "port": "/dev/fuzz"})
    driver = GMP343Driver(config, station="st1")
    # configure: s, echo off, form; then send and errs
    driver.attach(FakeLine(replies=[b">", b"ECHO       : OFF\r\n>", b">", send, errs]))
    return driver.poll()


# --- firmware bridge ------------------------------------------------------------------------------------------------


@st.composite
def bridge_frames(draw: st.DrawFn) -> tuple[int, bytes]:
    """(message type, wire bytes): a COBS frame with a valid CRC around a body of the declared size, or not."""
    from firmware_bridge import protocol as p

    msg_type = draw(st.sampled_from([int(t) for t in p.MsgType] + [0, 0xFF]))
    body = draw(st.binary(max_size=p.MAX_BODY))
    if draw(st.booleans()):  # a body whose length fields agree with its size, values anything
        count = draw(st.integers(0, 12))
        body = {
            int(p.MsgType.IDENTIFY_REPLY): lambda: draw(st.binary(min_size=12, max_size=12)) + bytes([0, 0, count]) +
            draw(st.binary(min_size=2 * count, max_size=2 * count)),
            int(p.MsgType.RECORDS_REPLY): lambda: bytes([1, 0, 0, 0, count]) + draw(
                st.binary(min_size=12 * count, max_size=12 * count)),
            int(p.MsgType.CONFIG_REPLY): lambda: bytes([1, 0, 0, 0, 0, count]) + draw(
                st.binary(min_size=count, max_size=count)),
        }.get(msg_type, lambda: body)()[: p.MAX_BODY]
    wire = p.Frame(type=msg_type, seq=draw(st.integers(0, 255)), body=body,
                   version=draw(st.sampled_from((1, 1, 1, 0, 2)))).encode()
    if draw(st.integers(0, 2)) == 0:
        wire = draw(mutated(wire))
    return msg_type, wire + draw(st.binary(max_size=20))


_BODY_DECODERS: dict[int, str] = {0x81: "Identity", 0x82: "TimeReply", 0x84: "BoardConfig", 0x85: "RecordsReply",
                                  0x86: "Sdi12Reply", 0x87: "BoardStatus", 0xC0: "Hello", 0x91: "BoardError"}


def _bridge_decode(arg: tuple[int, bytes]) -> list[Any]:
    from firmware_bridge import protocol as p

    _type, wire = arg
    decoder = p.StreamDecoder()
    frames = decoder.feed(wire)  # never raises: bad frames are counted
    out: list[Any] = []
    for frame in frames:
        name = _BODY_DECODERS.get(frame.type)
        if name is not None:
            out.append(getattr(p, name).decode(frame.body))
    return out


def _bridge_single(arg: tuple[int, bytes]) -> Any:
    """One frame without the stream decoder: cobs_decode, decode_payload and the body decoder raise ProtocolError."""
    from firmware_bridge import protocol as p

    _type, wire = arg
    frame = p.decode_payload(p.cobs_decode(wire.split(b"\x00", 1)[0]))
    name = _BODY_DECODERS.get(frame.type)
    return getattr(p, name).decode(frame.body) if name else frame


@st.composite
def sdi12_replies(draw: st.DrawFn) -> tuple[str, str, bool]:
    from firmware_bridge.sdi12 import crc16_arc, crc_chars

    address = draw(st.sampled_from("0123aZ"))
    with_crc = draw(st.booleans())
    tokens = draw(st.lists(st.one_of(st.floats(-1e4, 1e4).map(lambda v: f"{v:+.3f}"), any_token), max_size=6))
    text = address + "".join(t if t[:1] in "+-" else "+" + t for t in tokens)
    if with_crc:
        try:
            text += crc_chars(crc16_arc(text))
        except UnicodeEncodeError:
            text += "@@@"
    reply = text + draw(st.sampled_from(("\r\n", "\r\n", "", "\n")))
    if draw(st.integers(0, 3)) == 0:
        reply = draw(mutated(reply.encode("utf-8", "surrogatepass"))).decode("ascii", "replace")
    return reply, address, with_crc


def _sdi12_parse(arg: tuple[str, str, bool]) -> Any:
    from firmware_bridge.sdi12 import parse_measure, parse_values

    reply, address, with_crc = arg
    values = parse_values(reply, address, with_crc)
    try:
        parse_measure(reply, address)
    except _sdi12_error():
        pass
    return values


def _sdi12_error() -> type[Exception]:
    from firmware_bridge.sdi12 import Sdi12Error

    return Sdi12Error


def _check_sdi12(_input: Any, values: list[float]) -> None:
    finite_or_none(values, "SDI-12 value")


# --- MQTT payloads as the central ingestor parses them ----------------------------------------------------------------

json_scalar = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
                        st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
json_values = st.recursive(json_scalar, lambda inner: st.lists(inner, max_size=4) |
                           st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
times = st.one_of(st.sampled_from(("2026-11-25T10:00:00.000000Z", "2026-11-25T10:00:00Z", "0001-01-01T00:00:00Z",
                                   "9999-12-31T23:59:59.999999Z", "1600-01-01T00:00:00Z", "2300-01-01T00:00:00Z",
                                   "1677-09-21T00:12:43Z", "2262-04-11T23:47:17Z", "2026-11-25T10:00:00",
                                   "2026-11-25T10:00:00+14:00", "9999-12-31T23:59:59-23:59",
                                   "0001-01-01T00:00:00+23:59", "2026-02-30T00:00:00Z", "")),
                  st.datetimes().map(lambda d: d.isoformat() + "Z"), small_text)
numbers = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(10**400), 10**400),
                    st.sampled_from((0, -0.0, 1e308, -1e308, 5e-324)))


#: Valid RFC 3339 times at the edges: before, at and after the range a store can hold, and far outside it.
EDGE_TIMES = ("0001-01-01T00:00:00Z", "1600-01-01T00:00:00Z", "1677-09-21T00:12:43Z", "1677-09-21T00:12:44Z",
              "1970-01-01T00:00:00Z", "2026-11-25T10:00:00.123456Z", "2262-04-11T23:47:16Z", "2262-04-11T23:47:17Z",
              "2300-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z")
edge_times = st.one_of(st.sampled_from(EDGE_TIMES),
                       st.datetimes(datetime(1678, 1, 1), datetime(2261, 12, 31)).map(lambda d: d.isoformat() + "Z"),
                       st.datetimes().map(lambda d: d.isoformat() + "Z"))


@st.composite
def reading_dicts(draw: st.DrawFn, station: str) -> dict[str, Any]:
    if draw(st.integers(0, 3)):  # a valid reading but for its time and value: it reaches the store
        finite = draw(st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)))
        return {"station": station, "sensor": "gmp252", "variable": "CO2", "value": finite, "unit": "umol mol-1",
                "time": draw(edge_times), "time_source": "gateway", "clock_synced": True,
                "qc": 3 if finite is None else draw(st.integers(0, 2))}
    value = draw(st.one_of(st.none(), numbers, st.just("12")))
    return {"station": draw(st.sampled_from((station, station, "other", ""))),
            "sensor": draw(st.sampled_from(("gmp252", "s" * 64, "s" * 65, "a/b"))),
            "variable": draw(st.sampled_from(("CO2", "TS_1_1_1", "x" * 64, "x" * 65, "CO2-1"))),
            "value": value, "unit": draw(st.sampled_from(("umol mol-1", "", "u" * 33))),
            "time": draw(times), "time_source": draw(st.sampled_from(("gateway", "device", "board", "x"))),
            "clock_synced": draw(st.sampled_from((True, False, 1, "yes"))),
            "qc": draw(st.sampled_from((0, 1, 2, 3, 4, -1))) if draw(st.integers(0, 4)) else (3 if value is None
                                                                                                else 0),
            "qc_reason": draw(st.one_of(st.none(), st.text(max_size=210)))}


@st.composite
def mqtt_messages(draw: st.DrawFn) -> tuple[str, bytes]:
    from gateway.rawarchive.archive import HEADER_PREFIX

    site, station = "site1", draw(st.sampled_from(("st1", "st2")))
    kind = draw(st.sampled_from(("readings", "status", "fluxes", "raw", "other")))
    topic_station = station if draw(st.integers(0, 5)) else "st9"
    topic = f"sinkwatch/v1/{site}/{topic_station}/{kind}"
    if draw(st.integers(0, 9)) == 0:
        topic = draw(st.sampled_from(("sinkwatch/v1/site1/st1", "sinkwatch/v1/+/st1/readings", "x",
                                      "sinkwatch/v1/site1/st1/readings/extra", "")))
    doc: Any
    if kind == "readings":
        doc = {"schema_version": 1, "site": site, "station": station, "seq": draw(st.one_of(
            st.integers(0, 2**63 - 1), st.integers(-(10**30), 10**30))),
            "sent": draw(st.one_of(st.just("2026-11-25T10:00:00Z"), times)),
            "readings": draw(st.lists(reading_dicts(station), min_size=0, max_size=4))}
    elif kind == "status":
        doc = {"schema_version": 1, "site": site, "station": station,
               "state": draw(st.sampled_from(("online", "offline", "x"))), "since": draw(times),
               "software_version": draw(st.none() | small_text), "reason": draw(st.none() | st.text(max_size=210))}
    elif kind == "fluxes":
        start, end = draw(times), draw(times)
        if draw(st.booleans()):  # a well-formed period at any instant
            end_time = draw(st.datetimes(min_value=datetime(1, 1, 2)))
            start, end = (end_time - timedelta(minutes=30)).isoformat() + "Z", end_time.isoformat() + "Z"
        values = draw(st.dictionaries(st.sampled_from(("FC", "H", "LE", "FC_SSITC_TEST", "N_RECORDS", "fc", "X")),
                                      st.one_of(st.none(), numbers, st.just(1.5)), max_size=6))
        doc = {"schema_version": 1, "site": site, "station": station, "start": start, "end": end,
               "status": draw(st.sampled_from(("ok", "partial", "failed", "x"))),
               "reasons": draw(st.lists(st.text(max_size=30), max_size=3)),
               "engine_version": draw(st.sampled_from(("sinkwatch-ec 0.1.0", "", "\u00e9"))),
               "settings_hash": draw(st.sampled_from(("0123456789abcdef", "0123", "ZZZZZZZZZZZZZZZZ"))),
               "values": values}
    elif kind == "raw":
        sensor = draw(st.sampled_from(("sonic", "irga")))
        header = draw(st.one_of(
            st.fixed_dictionaries({"format": st.just("sinkwatch-raw"), "site": st.sampled_from((site, "x")),
                                   "station": st.sampled_from((station, "x")),
                                   "sensor": st.sampled_from((sensor, "x"))}).map(json.dumps),
            json_values.map(json.dumps), st.integers(1, 3000).map(lambda n: "[" * n + "]" * n), small_text))
        text = (HEADER_PREFIX + header + "\n" + draw(st.text(max_size=60))).encode("utf-8", "surrogatepass")
        data = gzip.compress(text, mtime=0)
        if draw(st.integers(0, 3)) == 0:
            data = draw(mutated(data))
        encoded = base64.b64encode(data).decode()
        doc = {"schema_version": 1, "site": site, "station": station, "sensor": sensor,
               "file": draw(st.sampled_from((f"{sensor}_20261125T1000Z.csv.gz", f"{sensor}_20261125T1000Z_2.csv.gz",
                                             "other_20261125T1000Z.csv.gz", "../x.csv.gz"))),
               "format": "sinkwatch-raw/1", "encoding": "gzip+base64",
               "size": len(data) if draw(st.integers(0, 5)) else draw(st.integers(-1, 10**6)),
               "data": encoded if draw(st.integers(0, 5)) else draw(st.sampled_from(("", "!!", "QQ==", "QQ")))}
    else:
        doc = draw(json_values)
    if draw(st.integers(0, 4)) == 0 and isinstance(doc, dict) and doc:  # one key replaced by anything
        doc[draw(st.sampled_from(sorted(doc)))] = draw(json_values)
    payload = json.dumps(doc).encode()
    shape = draw(st.integers(0, 9))
    if shape == 0:
        payload = draw(mutated(payload))
    elif shape == 1:
        payload = draw(st.binary(max_size=100))
    elif shape == 2:
        payload = b"[" * draw(st.integers(1, 100_000))
    return topic, payload


def _remove_harness_files(store: Any, root: Path) -> None:
    with contextlib.suppress(Exception):  # a clean-up at collection time must not raise into an unrelated test
        store.close()
    shutil.rmtree(root, ignore_errors=True)


class IngestHarness:
    """An Ingestor on a real SQLite store in a temporary folder, never connected to a broker: `handle` is the
    synchronous path every delivered message takes."""

    def __init__(self) -> None:
        from gateway.central.config import MqttSettings
        from gateway.central.ingest import Ingestor
        from gateway.central.store.sqlite import SqliteStore

        base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None  # fsync per dead letter is cheap there
        root = Path(tempfile.mkdtemp(prefix="sinkwatch-fuzz-", dir=base))
        self.store = SqliteStore(root / "store.sqlite")
        self.ingestor = Ingestor(MqttSettings(), self.store, root / "data")
        # removed when the harness is collected, quietly: a TemporaryDirectory's implicit clean-up warned (and could
        # fail) inside whichever test the garbage collector happened to run in
        weakref.finalize(self, _remove_harness_files, self.store, root)

    OUTCOMES = ("batches_stored", "status_updates", "flux_records_stored", "raw_files_archived", "raw_duplicates")

    def _accounted(self) -> int:
        # a whole message dead-lettered counts under `malformed` (by reason); the readings a stored batch sets aside
        # are dead-lettered too (`readings_set_aside`), but their message is a stored batch
        counters = self.ingestor.counters()
        return sum(counters[name] for name in self.OUTCOMES) + sum(counters["malformed"].values())

    def handle(self, message: tuple[str, bytes]) -> None:
        """Nothing lost, nothing silent: every message ends stored (or archived), dead-lettered, or both (a batch
        stored but for readings set aside into the dead-letter file)."""
        before = self._accounted()
        self.ingestor.handle(*message)
        topic, payload = message
        if not (topic.endswith("/status") and not payload):  # an empty retained status clears, by design
            assert self._accounted() > before, f"message neither stored nor dead-lettered: {message!r:.200}"
        # keep the dead-letter file from growing over a long run
        if self.ingestor.dead_letter_path.exists() and self.ingestor.dead_letter_path.stat().st_size > 50_000_000:
            self.ingestor.dead_letter_path.unlink()


def _parse_payload(message: tuple[str, bytes]) -> Any:
    from gateway.central import ingest

    topic, payload = message
    parts = topic.split("/")
    site, station, kind = [*parts, "", "", "", "", ""][2:5]
    parser = {"readings": ingest.parse_batch, "status": ingest.parse_status, "fluxes": ingest.parse_flux_record,
              "raw": ingest.parse_raw_chunk}.get(kind, ingest.parse_batch)
    return parser(site, station, payload)


# --- configuration files ------------------------------------------------------------------------------------------

STATION_YAML = """\
site: hainich
station: tower01
mqtt: {host: 127.0.0.1, port: 1883}
buffer: {path: /var/lib/sinkwatch/buffer.sqlite}
sensors:
  - {name: soil_co2_30cm, driver: gmp252, port: /dev/ttyUSB0, address: 240, interval_s: 10}
  - {name: soil, driver: soilprobe, port: /dev/ttyUSB1, address: 1, layout: A, interval_s: 30}
  - {name: sonic, driver: windmaster, port: tcp://127.0.0.1:9001, frequency_hz: 20}
"""
CENTRAL_YAML = """\
mqtt: {host: 127.0.0.1, port: 1883}
storage: {kind: sqlite, path: ./data/sinkwatch.sqlite}
api: {host: 127.0.0.1, port: 8080}
data_dir: ./data/central
"""


YAML_TOKENS = (":", "-", "[", "]", "{", "}", "\n", "  ", "&a", "*a", "!!python/object:os.system", "!!binary",
               "? ", "|", "<<: *a", "!!int", "!!float", "%YAML 1.1", "---", "...")


@st.composite
def yaml_texts(draw: st.DrawFn, base: str) -> bytes:
    # "deep" is rare on purpose: even refused at MAX_YAML_DEPTH, PyYAML's scanner spends ~0.3 s on a 1,000-level list
    kind = draw(st.sampled_from(("mutated", "lines", "random", "tokens") * 5 + ("deep",)))
    if kind == "mutated":
        return draw(mutated(base.encode()))
    if kind == "lines":  # a value replaced by a nasty token, or a line dropped/duplicated
        lines = base.splitlines()
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(("value", "drop", "dup")))
        if op == "value" and ":" in lines[i]:
            key = lines[i].split(":", 1)[0]
            lines[i] = f"{key}: {draw(any_token)}"
        elif op == "drop":
            del lines[i]
        else:
            lines.insert(i, lines[i])
        return "\n".join(lines).encode("utf-8", "surrogatepass")
    if kind == "deep":
        depth = draw(st.integers(900, 1500))
        return ("site: " + "[" * depth + "]" * depth).encode()
    if kind == "tokens":
        parts = draw(st.lists(st.one_of(st.sampled_from(YAML_TOKENS), any_token), max_size=30))
        return "".join(parts).encode("utf-8", "surrogatepass")
    return draw(st.binary(max_size=200))


class _FileHarness:
    """Writes each input to one file in a temporary folder and calls a loader on its path."""

    def __init__(self, name: str, loader: Callable[[Path], Any]) -> None:
        base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
        self._tmp = tempfile.TemporaryDirectory(prefix="sinkwatch-fuzz-", dir=base)
        self.path = Path(self._tmp.name) / name
        self.loader = loader

    def load(self, data: bytes) -> Any:
        self.path.write_bytes(data)
        return self.loader(self.path)


def _station_loader(path: Path) -> Any:
    from gateway.edge.config import load_station_config

    return load_station_config(path)


def _central_loader(path: Path) -> Any:
    from gateway.central.config import load_central_config

    return load_central_config(path)


def _metadata_loader(path: Path) -> Any:
    from gateway.flux.files import load_metadata

    return load_metadata(path)


def _settings_loader(path: Path) -> Any:
    from gateway.flux.files import load_settings

    return load_settings(path)


REPO_ROOT = Path(__file__).resolve().parents[2]
_EDDYPRO = REPO_ROOT / "tests" / "data" / "ec-raw" / "eddypro" / "R1_dr_ba_maxcov_wpl_30min"
_EXAMPLES = REPO_ROOT / "gateway" / "flux" / "examples"


@st.composite
def ini_texts(draw: st.DrawFn, base: str) -> bytes:
    lines = base.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        if "=" in lines[i] and draw(st.booleans()):
            key = lines[i].split("=", 1)[0]
            lines[i] = f"{key}={draw(any_token)}"
        else:
            lines[i] = draw(st.one_of(any_token, st.sampled_from(("[Site]", "[", "]", "=", "%(x)s", "x=1\n x"))))
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    return draw(mutated(data)) if draw(st.integers(0, 3)) == 0 else data


# --- raw archive files and EddyPro method files (central recompute, `sinkwatch flux ec`) ----------------------------


@st.composite
def raw_archive_files(draw: st.DrawFn) -> bytes:
    """A station raw archive file (docs/raw-archive.md): gzip of header, column line, records, footer — each part
    possibly replaced, the text mutated, or the gzip stream cut (a `.part` file after a power loss)."""
    from gateway.rawarchive.archive import CSV_FORMAT_VERSION, FOOTER_PREFIX, FORMAT_NAME, HEADER_PREFIX

    header: Any = {"format": FORMAT_NAME, "version": CSV_FORMAT_VERSION, "sensor": "sonic",
                   "period_start": "2026-11-25T10:00:00Z", "period_s": 1800,
                   "columns": [{"name": "U", "unit": "m s-1"}, {"name": "W", "unit": "m s-1"}]}
    if draw(st.integers(0, 3)) == 0:
        header = draw(st.one_of(json_values, st.just({**header, "columns": draw(json_values)})))
    header_text = json.dumps(header)
    if draw(st.integers(0, 9)) == 0:
        header_text = "[" * draw(st.integers(1, 5000))
    rows = [f"{1764064800 + i / 20:.6f},{draw(st.one_of(st.floats(-30, 30).map(repr), any_token))},"
            f"{draw(st.floats(-5, 5))!r}" for i in range(draw(st.integers(0, 6)))]
    footer = draw(st.one_of(st.just('{"records": 3}'), json_values.map(json.dumps), st.just("")))
    parts = [HEADER_PREFIX + header_text, "TIME,U,W", *rows]
    if draw(st.booleans()):
        parts.append(FOOTER_PREFIX + footer)
    text = "\n".join(parts[: draw(st.integers(1, len(parts)))] if draw(st.integers(0, 4)) == 0 else parts) + "\n"
    raw = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 3)) == 0:
        raw = draw(mutated(raw))
    data = gzip.compress(raw, mtime=0)
    if draw(st.integers(0, 4)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return data


@st.composite
def raw_archive_v2_files(draw: st.DrawFn) -> bytes:
    """A format 2 raw archive file (docs/raw-archive.md): header block, chunks of drawn values (floats of any kind,
    fixed decimals, missing), footer — a header replaced, a chunk's payload mutated under a valid CRC (so the
    decoder, not only the CRC, meets it), zlib'd chunks, the whole file mutated or cut."""
    from gateway.rawarchive import columnar

    header: Any = {"format": "sinkwatch-raw", "version": 2, "sensor": "sonic",
                   "columns": [{"name": "U", "unit": "m s-1"}, {"name": "W", "unit": "m s-1"}]}
    if draw(st.integers(0, 4)) == 0:
        header = draw(st.one_of(json_values, st.just({**header, "columns": draw(json_values)})))
    blocks = [columnar.block(columnar.HEADER_KIND, json.dumps(header).encode())]
    value = st.one_of(st.none(), st.floats(), st.floats(-30, 30).map(lambda v: round(v, 3)))
    for _ in range(draw(st.integers(0, 3))):
        n = draw(st.integers(0, 6))
        times = [1764064800 + i / 20 + draw(st.sampled_from((0.0, 0.0, 5000.0))) for i in range(n)]
        rows = [(draw(value), draw(value)) for _ in range(n)]
        data = columnar.chunk_block(times, rows, 2, draw(st.sampled_from((0, 0, 1))))
        if draw(st.integers(0, 3)) == 0:
            data = columnar.block(columnar.CHUNK_KIND, draw(mutated(data[columnar.BLOCK.size:])))
        blocks.append(data)
    if draw(st.booleans()):
        blocks.append(columnar.json_block(columnar.FOOTER_KIND, {"records": 3}))
    raw = b"".join(blocks)
    if draw(st.integers(0, 3)) == 0:
        raw = draw(mutated(raw))
    return raw


def _archive_reader(path: Path) -> Any:
    from gateway.rawarchive.archive import read_archive

    return read_archive(path)


def _planar_fit_loader(path: Path) -> Any:
    from gateway.flux.ec.planarfit import parse_eddypro_planar_fit

    return parse_eddypro_planar_fit(path.read_bytes().decode("utf-8", "replace"))


def _spectral_loader(path: Path) -> Any:
    from gateway.flux.ec.spectral import parse_spectral_assessment

    return parse_spectral_assessment(path.read_bytes().decode("utf-8", "replace"))


@st.composite
def text_file_mutants(draw: st.DrawFn, base: str) -> bytes:
    """Lines of a known-good file with numbers replaced by nasty tokens, lines dropped or repeated, bytes edited."""
    lines = base.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(("token", "drop", "dup", "cut")))
        if op == "token":
            words = lines[i].split()
            if words:
                words[draw(st.integers(0, len(words) - 1))] = draw(any_token)
            lines[i] = " ".join(words)
        elif op == "drop":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        else:
            lines = lines[:i]
        if not lines:
            lines = [""]
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    return draw(mutated(data)) if draw(st.integers(0, 3)) == 0 else data


def _ec_raw_excerpt() -> list[str]:
    """The header and first 600 records (30 s) of the DE-HoH raw file (tests/data/ec-raw)."""
    with gzip.open(REPO_ROOT / "tests" / "data" / "ec-raw" / "DE-HoH_EC_201907301200_v01.csv.gz", "rt") as fh:
        return [fh.readline().rstrip("\n") for _ in range(601)]


@st.composite
def ec_raw_files(draw: st.DrawFn, base: list[str]) -> bytes:
    """A raw eddy-covariance file as `sinkwatch flux ec` reads it: cells replaced by nasty tokens, records dropped,
    repeated or cut, bytes edited, or gzip-compressed as it is."""
    lines = list(base)
    for _ in range(draw(st.integers(0, 6))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(("cell", "cell", "drop", "dup", "cut", "line")))
        if op == "cell":
            cells = lines[i].split(",")
            cells[draw(st.integers(0, len(cells) - 1))] = draw(any_token)
            lines[i] = ",".join(cells)
        elif op == "drop":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "cut":
            lines = lines[:i]
        else:
            lines[i] = draw(any_token)
        if not lines:
            lines = [""]
    data = ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(mutated(data))
    return gzip.compress(data, mtime=0) if kind == 1 else data


@functools.cache
def _ec_site() -> tuple[Any, Any]:
    """DE-HoH's metadata and EddyPro run R1's settings, read once, with files and periods of 30 s, so that the
    excerpt is a whole period and every step of the engine runs on it."""
    from gateway.flux.files import load_metadata, load_settings

    md = load_metadata(_EXAMPLES / "DE-HoH.metadata.yaml").model_copy(update={"file_duration": 0.5})
    settings = load_settings(_EXAMPLES / "DE-HoH_R1.settings.yaml").model_copy(update={"avrg_len": 0.5})
    return md, settings


def _ec_loader(path: Path) -> Any:
    """The command's path through one raw file: read, every period processed (EddyPro run R1's settings), the
    results written. numpy's RuntimeWarnings are errors here: a value that warns would reach the user's terminal
    and, worse, a NaN or inf into a flux without a reason."""
    import io
    import warnings

    from gateway.flux.ec.engine import process_period
    from gateway.flux.files import read_raw_file, write_ameriflux_csv

    md, settings = _ec_site()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        results = [process_period(period, settings) for period in read_raw_file(path, md, settings)]
        write_ameriflux_csv(results, io.StringIO())
    return results


def _check_ec_results(_input: bytes, results: Any) -> None:
    assert results, "no period"
    for r in results:
        assert r.status in ("ok", "partial", "failed"), r.status
        if r.status != "ok":
            assert r.reasons, f"a {r.status} period without a reason"


def _budget_tables() -> list[str]:
    """Three days of plausible half-hourly records in each input layout `sinkwatch flux budget` reads
    (gateway/flux/budget/files.py): FLUXNET start and end (bare and as an AmeriFlux BASE file), europe-fluxdata end
    only with qualified and _PI names and a quality flag, the online tool's tab-separated Year/DoY/Hour with a units
    row and RH for VPD, a FLUXNET2015/ONEFlux product (NEE_VUT_REF with its _QC, the _F drivers)."""
    start = datetime(2021, 6, 1)
    rows = []
    for i in range(3 * 48):
        sun = max(0.0, math.sin(((i % 48) / 2.0 - 6.0) / 12.0 * math.pi))
        end = start + timedelta(minutes=30 * (i + 1))
        rows.append((end, f"{3 - 12 * sun:.3f}", f"{700 * sun:.1f}", f"{12 + 6 * sun:.2f}", f"{2 + 10 * sun:.2f}",
                     f"{90 - 40 * sun:.1f}", str(i % 3)))
    fluxnet = ["TIMESTAMP_START,TIMESTAMP_END,NEE,SW_IN,TA,VPD,USTAR"] + [
        f"{e - timedelta(minutes=30):%Y%m%d%H%M},{e:%Y%m%d%H%M},{n},{sw},{ta},{vpd},0.3"
        for e, n, sw, ta, vpd, _, _ in rows]
    europe = ["TIMESTAMP_END,FC_1_1_1,FC_SSITC_TEST_1_1_1,NEE_PI_1_1_1,SW_IN_1_1_1,TA_1_1_1,VPD_PI_1_1_1"] + [
        f"{e:%Y%m%d%H%M},{n},{flag},{n},{sw},{ta},{vpd}" for e, n, sw, ta, vpd, _, flag in rows]
    tool = ["Year\tDoY\tHour\tNEE\tqcNEE\tRg\tTair\trH\tUstar", "-\t-\t-\tumolm-2s-1\t-\tWm-2\tdegC\t%\tms-1"]
    for e, n, sw, ta, _, rh, flag in rows:
        begin = e - timedelta(minutes=30)
        hour = (e - datetime(begin.year, begin.month, begin.day)).total_seconds() / 3600
        tool.append(f"{begin.year}\t{begin.timetuple().tm_yday}\t{hour:g}\t{n}\t{flag}\t{sw}\t{ta}\t{rh}\t0.3")
    ameriflux_base = ["# Site: US-Xyz", "# Version: 1-5", *fluxnet]
    product = ["TIMESTAMP_START,TIMESTAMP_END,NEE_VUT_REF,NEE_VUT_REF_QC,SW_IN_F,TA_F,VPD_F,USTAR"] + [
        f"{e - timedelta(minutes=30):%Y%m%d%H%M},{e:%Y%m%d%H%M},{n},{flag},{sw},{ta},{vpd},0.3"
        for e, n, sw, ta, vpd, _, flag in rows]
    return ["\n".join(t) + "\n" for t in (fluxnet, europe, tool, ameriflux_base, product)]


def budget_input_files() -> st.SearchStrategy[bytes]:
    """A budget input table of any layout: as it is, gzip-compressed, or with lines and bytes mutated."""
    tables = st.sampled_from(_budget_tables())
    return st.one_of(tables.map(str.encode), tables.map(lambda t: gzip.compress(t.encode(), mtime=0)),
                     tables.flatmap(text_file_mutants))


def _budget_loader(path: Path) -> Any:
    from gateway.flux.budget.files import read_budget_csv

    return read_budget_csv(path)


# --- the registry ---------------------------------------------------------------------------------------------------

_RTU_LINE: Any = None
_WINDMASTER: Any = None
_LI7500_LABELLED: Any = None
_LI7500_TAB: Any = None


def _init_drivers() -> None:
    global _RTU_LINE, _WINDMASTER, _LI7500_LABELLED, _LI7500_TAB
    from drivers.li7500.driver import LI7500Driver
    from drivers.windmaster.driver import WindMasterDriver

    _RTU_LINE = _rtu_line()
    _WINDMASTER = WindMasterDriver(WindMasterDriver.Config.model_validate(
        {"name": "sonic", "driver": "windmaster", "port": "/dev/fuzz"}), station="st1")
    _LI7500_LABELLED = LI7500Driver(LI7500Driver.Config.model_validate(
        {"name": "irga", "driver": "li7500", "port": "/dev/fuzz"}), station="st1")
    _LI7500_TAB = LI7500Driver(LI7500Driver.Config.model_validate(
        {"name": "irga", "driver": "li7500", "port": "/dev/fuzz", "labels": False,
         "outputs": ["Ndx", "DiagVal", "CO2D", "H2OD", "Temp", "Pres"]}), station="st1")


def build_targets() -> list[Target]:
    """Every target, with its harness objects created (temporary folders, a store) — call once per process."""
    from drivers.gmp343.grammar import GrammarError
    from drivers.li7500.sexpr import SExprError
    from firmware_bridge.protocol import ProtocolError
    from firmware_bridge.sdi12 import Sdi12Error
    from gateway.central.ingest import Malformed
    from gateway.central.store import StoreUnavailable
    from gateway.configfile import ConfigError
    from gateway.driver_api import BadRecord, DeviceError
    from gateway.flux.budget.files import BudgetFileError

    _init_drivers()
    ingest = IngestHarness()
    station = _FileHarness("station.yaml", _station_loader)
    central = _FileHarness("central.yaml", _central_loader)
    metadata = _FileHarness("site.metadata", _metadata_loader)
    settings = _FileHarness("run.eddypro", _settings_loader)
    metadata_yaml = _FileHarness("site.yaml", _metadata_loader)
    archive = _FileHarness("sonic_20261125T1000Z.csv.gz", _archive_reader)
    archive_v2 = _FileHarness("sonic_20261125T1000Z.swr", _archive_reader)
    planar_fit = _FileHarness("planar_fit.txt", _planar_fit_loader)
    spectral = _FileHarness("spectral_assessment.txt", _spectral_loader)
    budget_input = _FileHarness("budget_input.csv", _budget_loader)
    ec_raw = _FileHarness("DE-HoH_EC_201907301200_v01.csv", _ec_loader)
    reference = REPO_ROOT / "tests" / "data" / "ec-raw"
    layouts = st.booleans()
    return [
        Target("modbus_rtu_frame_length", with_mutations(st.binary(min_size=0, max_size=12)), _frame_lengths, (),
               _check_lengths, refuses=False),
        Target("modbus_rtu_read_reply", rtu_replies(), _decode_rtu, (DeviceError,), _check_registers, (0,)),
        Target("gmp252_registers", register_blocks(3), _gmp252_poll, (DeviceError,), _check_readings, refuses=False),
        Target("soilprobe_registers", st.tuples(layouts, register_blocks(1)), _soilprobe_poll, (DeviceError,),
               _check_readings, refuses=False),
        Target("windmaster_frame", with_mutations(windmaster_frames()), _windmaster_parse, (BadRecord,),
               _check_stream_values),
        Target("csat3b_record", csat3b_records(), _csat3b_parse, (BadRecord,), _check_stream_values),
        Target("li7500_record", li7500_lines(), _li7500_parse, (BadRecord,), _check_stream_values, (1,)),
        Target("li7500_sexpr", sexpr_texts(), _sexpr_parse, (SExprError,)),
        Target("irgason_record", irgason_lines(), _irgason_parse, (BadRecord,), _check_stream_values),
        Target("gmp343_grammar", gmp343_replies(), _gmp343_grammar, (GrammarError,), _check_stream_values),
        Target("gmp343_reply", gmp343_replies(), _gmp343_poll, (DeviceError,), _check_readings),
        Target("firmware_bridge_stream", bridge_frames(), _bridge_decode, (ProtocolError,), outside=(1,)),
        Target("firmware_bridge_frame", bridge_frames(), _bridge_single, (ProtocolError,), outside=(1,)),
        Target("firmware_bridge_sdi12", sdi12_replies(), _sdi12_parse, (Sdi12Error,), _check_sdi12, (0,)),
        Target("mqtt_payload_parse", mqtt_messages(), _parse_payload, (Malformed,), outside=(1,)),
        Target("mqtt_ingest_handle", mqtt_messages(), ingest.handle, (StoreUnavailable,), outside=(1,),
               refuses=False),
        Target("station_yaml", yaml_texts(STATION_YAML), station.load, (ConfigError,)),
        Target("central_yaml", yaml_texts(CENTRAL_YAML), central.load, (ConfigError,)),
        Target("eddypro_metadata", ini_texts((_EDDYPRO / "input_DE-HoH.metadata").read_text()), metadata.load,
               (ConfigError,)),
        Target("eddypro_project", ini_texts((_EDDYPRO / "eddypro_settings_echo.eddypro").read_text()),
               settings.load, (ConfigError,)),
        Target("flux_metadata_yaml", yaml_texts((_EXAMPLES / "DE-HoH.metadata.yaml").read_text()),
               metadata_yaml.load, (ConfigError,)),
        Target("raw_archive_file", raw_archive_files(), archive.load, (OSError, ValueError)),
        Target("raw_archive_file_v2", raw_archive_v2_files(), archive_v2.load, (OSError, ValueError)),
        Target("eddypro_planar_fit", text_file_mutants((reference / "planar_fit.txt").read_text()), planar_fit.load,
               (ValueError,)),
        Target("eddypro_spectral_assessment",
               text_file_mutants((reference / "spectral_assessment.txt").read_text()), spectral.load, (ValueError,)),
        Target("budget_input_file", budget_input_files(), budget_input.load, (BudgetFileError,)),
        Target("ec_raw_file", ec_raw_files(_ec_raw_excerpt()), ec_raw.load, (), _check_ec_results, refuses=False),
    ]
