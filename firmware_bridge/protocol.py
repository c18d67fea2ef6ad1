"""The firmware-bridge wire protocol, version 1 (docs/firmware-bridge-protocol.md is the specification).

Frame layout, before COBS encoding::

    +---------+------+-----+------------------+------------------------+
    | version | type | seq | body (0..120 B)  | CRC-16/CCITT-FALSE (LE) |
    |  u8 = 1 |  u8  | u8  | message specific |   over version..body    |
    +---------+------+-----+------------------+------------------------+

On the wire each frame is COBS-encoded and ends with one 0x00 byte, so a receiver resynchronises on the next 0x00
after garbage. All integers are little-endian. The same byte sequences are checked by the C firmware's host-gcc
unit tests (firmware_bridge/vectors/*.json).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TypeVar

PROTOCOL_VERSION = 1
MAX_BODY = 120
HEADER = 3
MIN_FRAME = HEADER + 2
MAX_FRAME = HEADER + MAX_BODY + 2
MAX_ENCODED = MAX_FRAME + 2  # COBS adds one byte per 254; plus the 0x00 delimiter
MAX_RECORDS_PER_REPLY = 9
RECORD_SIZE = 12
MAX_SDI12_COMMAND = 32
MAX_FW_CHUNK = 64


class MsgType(IntEnum):
    IDENTIFY = 0x01
    TIME = 0x02
    CONFIG_SET = 0x03
    CONFIG_GET = 0x04
    RECORDS = 0x05
    SDI12 = 0x06
    STATUS = 0x07
    FW_BEGIN = 0x08
    FW_CHUNK = 0x09
    FW_COMMIT = 0x0A
    IDENTIFY_REPLY = 0x81
    TIME_REPLY = 0x82
    CONFIG_REPLY = 0x84
    RECORDS_REPLY = 0x85
    SDI12_REPLY = 0x86
    STATUS_REPLY = 0x87
    ACK = 0x90
    ERROR = 0x91
    HELLO = 0xC0


class ErrorCode(IntEnum):
    UNKNOWN_TYPE = 1
    BAD_LENGTH = 2
    BAD_VERSION = 3
    BAD_ARGUMENT = 4
    FW_SEQUENCE = 5
    FW_VERIFY = 6
    FW_SIZE = 7


class ChannelKind(IntEnum):
    ANALOG_RATIOMETRIC = 1
    SDI12_BUS = 2


class Sdi12Status(IntEnum):
    OK = 0
    NO_REPLY = 1
    PARITY = 2
    OVERFLOW = 3


RECORD_FLAG_OVERRANGE = 0x01
RECORD_FLAG_LOW_EXCITATION = 0x02


class ProtocolError(ValueError):
    """A frame or body that cannot be decoded; `kind` is the counter it belongs to."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


# --- CRC and COBS ------------------------------------------------------------------------------------------------


def crc16_ccitt(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final XOR ("123456789" -> 0x29B1)."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing (Cheshire & Baker 1999), without the trailing delimiter."""
    out = bytearray([0])
    code_index, code = 0, 1
    for index, byte in enumerate(data):
        if byte == 0:
            out[code_index] = code
            code_index, code = len(out), 1
            out.append(0)
            continue
        out.append(byte)
        code += 1
        if code == 0xFF and index + 1 < len(data):  # a full block at the very end needs no empty block after it
            out[code_index] = code
            code_index, code = len(out), 1
            out.append(0)
    out[code_index] = code
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Inverse of cobs_encode (input without the delimiter); raises ProtocolError("framing") if malformed."""
    out = bytearray()
    index = 0
    while index < len(data):
        code = data[index]
        if code == 0:
            raise ProtocolError("framing", "COBS block code 0 inside a frame")
        end = index + code
        if end > len(data):
            raise ProtocolError("framing", "COBS block runs past the end of the frame (truncated frame)")
        block = data[index + 1:end]
        if 0 in block:
            raise ProtocolError("framing", "0x00 inside a COBS block")
        out += block
        index = end
        if code != 0xFF and index < len(data):
            out.append(0)
    return bytes(out)


# --- frames ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    type: int
    seq: int
    body: bytes = b""
    version: int = PROTOCOL_VERSION

    def payload(self) -> bytes:
        if len(self.body) > MAX_BODY:
            raise ValueError(f"body of {len(self.body)} bytes exceeds the maximum {MAX_BODY}")
        head = bytes([self.version & 0xFF, self.type & 0xFF, self.seq & 0xFF]) + self.body
        return head + struct.pack("<H", crc16_ccitt(head))

    def encode(self) -> bytes:
        """The frame as sent on the wire: COBS(payload) + 0x00."""
        return cobs_encode(self.payload()) + b"\x00"


def decode_payload(payload: bytes) -> Frame:
    """A COBS-decoded frame -> Frame; raises ProtocolError("short"/"crc")."""
    if len(payload) < MIN_FRAME:
        raise ProtocolError("short", f"frame of {len(payload)} bytes is shorter than the minimum {MIN_FRAME}")
    (crc,) = struct.unpack_from("<H", payload, len(payload) - 2)
    if crc16_ccitt(payload[:-2]) != crc:
        raise ProtocolError("crc", "frame CRC mismatch")
    return Frame(version=payload[0], type=payload[1], seq=payload[2], body=bytes(payload[3:-2]))


@dataclass
class StreamCounters:
    frames: int = 0
    crc_errors: int = 0
    framing_errors: int = 0
    short_frames: int = 0
    overflows: int = 0


@dataclass
class StreamDecoder:
    """Splits a byte stream into frames at 0x00; bad frames are counted and skipped, never raised."""

    counters: StreamCounters = field(default_factory=StreamCounters)
    _buffer: bytearray = field(default_factory=bytearray)
    _overflowed: bool = False

    def feed(self, data: bytes) -> list[Frame]:
        frames: list[Frame] = []
        for byte in data:
            if byte != 0:
                if len(self._buffer) >= MAX_ENCODED:
                    if not self._overflowed:
                        self.counters.overflows += 1
                        self._overflowed = True
                    continue
                self._buffer.append(byte)
                continue
            encoded, overflowed = bytes(self._buffer), self._overflowed
            self._buffer.clear()
            self._overflowed = False
            if not encoded or overflowed:
                continue
            try:
                frame = decode_payload(cobs_decode(encoded))
            except ProtocolError as exc:
                if exc.kind == "crc":
                    self.counters.crc_errors += 1
                elif exc.kind == "short":
                    self.counters.short_frames += 1
                else:
                    self.counters.framing_errors += 1
                continue
            self.counters.frames += 1
            frames.append(frame)
        return frames

    def reset(self) -> None:
        self._buffer.clear()
        self._overflowed = False


# --- message bodies ----------------------------------------------------------------------------------------------


def _need(body: bytes, size: int, what: str, exact: bool = True) -> None:
    if len(body) < size or (exact and len(body) != size):
        raise ProtocolError("length", f"{what}: body of {len(body)} bytes, expected {'' if exact else '>= '}{size}")


_E = TypeVar("_E", bound=IntEnum)


def _enum(kind: type[_E], value: int, what: str) -> _E:
    try:
        return kind(value)
    except ValueError:
        known = ", ".join(f"{m.value} {m.name}" for m in kind)
        raise ProtocolError("value", f"unknown {what} {value} (known: {known})") from None


@dataclass(frozen=True, slots=True)
class Identity:
    board_id: str
    firmware: tuple[int, int, int]
    protocol: int
    boot_id: int
    channels: tuple[tuple[int, ChannelKind], ...]

    def encode(self) -> bytes:
        board = self.board_id.encode("ascii")[:8].ljust(8, b"\x00")
        out = board + bytes([*self.firmware, self.protocol]) + struct.pack("<HB", self.boot_id, len(self.channels))
        for number, kind in self.channels:
            out += bytes([number, int(kind)])
        return out

    @classmethod
    def decode(cls, body: bytes) -> Identity:
        _need(body, 15, "identify reply", exact=False)
        board_id = body[:8].rstrip(b"\x00").decode("ascii", "replace")
        boot_id, count = struct.unpack_from("<HB", body, 12)
        _need(body, 15 + 2 * count, "identify reply")
        channels = tuple((body[15 + 2 * i], _enum(ChannelKind, body[16 + 2 * i], "channel kind")) for i in range(count))
        return cls(board_id, (body[8], body[9], body[10]), body[11], boot_id, channels)


@dataclass(frozen=True, slots=True)
class TimeReply:
    boot_id: int
    ticks_ms: int

    def encode(self) -> bytes:
        return struct.pack("<HI", self.boot_id, self.ticks_ms)

    @classmethod
    def decode(cls, body: bytes) -> TimeReply:
        _need(body, 6, "time reply")
        return cls(*struct.unpack("<HI", body))


def encode_time_request(set_ticks_ms: int | None = None) -> bytes:
    return b"" if set_ticks_ms is None else struct.pack("<I", set_ticks_ms & 0xFFFFFFFF)


@dataclass(frozen=True, slots=True)
class BoardConfig:
    interval_ms: int
    channel_mask: int
    sdi12_addresses: str = ""

    def encode(self) -> bytes:
        addresses = self.sdi12_addresses.encode("ascii")
        return struct.pack("<IBB", self.interval_ms, self.channel_mask, len(addresses)) + addresses

    @classmethod
    def decode(cls, body: bytes) -> BoardConfig:
        _need(body, 6, "config", exact=False)
        interval, mask, count = struct.unpack_from("<IBB", body)
        _need(body, 6 + count, "config")
        return cls(interval, mask, body[6:6 + count].decode("ascii", "replace"))


def encode_records_request(ack_seq: int | None, max_records: int = MAX_RECORDS_PER_REPLY) -> bytes:
    return struct.pack("<BHB", 0 if ack_seq is None else 1, (ack_seq or 0) & 0xFFFF, max_records)


@dataclass(frozen=True, slots=True)
class Record:
    seq: int
    channel: int
    flags: int
    ticks_ms: int
    raw: int
    excitation: int

    def encode(self) -> bytes:
        return struct.pack("<HBBIHH", self.seq, self.channel, self.flags, self.ticks_ms, self.raw, self.excitation)


@dataclass(frozen=True, slots=True)
class RecordsReply:
    boot_id: int
    dropped: int
    records: tuple[Record, ...]

    def encode(self) -> bytes:
        return struct.pack("<HHB", self.boot_id, self.dropped, len(self.records)) + b"".join(
            r.encode() for r in self.records)

    @classmethod
    def decode(cls, body: bytes) -> RecordsReply:
        _need(body, 5, "records reply", exact=False)
        boot_id, dropped, count = struct.unpack_from("<HHB", body)
        _need(body, 5 + RECORD_SIZE * count, "records reply")
        records = tuple(Record(*struct.unpack_from("<HBBIHH", body, 5 + RECORD_SIZE * i)) for i in range(count))
        return cls(boot_id, dropped, records)


def encode_sdi12_request(command: str, timeout_ms: int) -> bytes:
    raw = command.encode("ascii")
    if not 1 <= len(raw) <= MAX_SDI12_COMMAND or not raw.endswith(b"!"):
        raise ValueError(f"SDI-12 command {command!r} must be 1..{MAX_SDI12_COMMAND} characters ending in '!'")
    return struct.pack("<H", timeout_ms) + raw


@dataclass(frozen=True, slots=True)
class Sdi12Reply:
    boot_id: int
    ticks_ms: int
    status: Sdi12Status
    reply: str

    def encode(self) -> bytes:
        return struct.pack("<HIB", self.boot_id, self.ticks_ms, int(self.status)) + self.reply.encode("ascii")

    @classmethod
    def decode(cls, body: bytes) -> Sdi12Reply:
        _need(body, 7, "SDI-12 reply", exact=False)
        boot_id, ticks, status = struct.unpack_from("<HIB", body)
        return cls(boot_id, ticks, _enum(Sdi12Status, status, "SDI-12 status"), body[7:].decode("ascii", "replace"))


STATUS_FIELDS = ("rx_frames", "crc_errors", "framing_errors", "overflows", "unknown_type", "version_mismatch",
                 "records_dropped")


@dataclass(frozen=True, slots=True)
class BoardStatus:
    boot_id: int
    reset_cause: int
    counters: dict[str, int]
    pending_records: int

    def encode(self) -> bytes:
        values = [self.counters[name] for name in STATUS_FIELDS]
        return struct.pack("<HB7HB", self.boot_id, self.reset_cause, *values, self.pending_records)

    @classmethod
    def decode(cls, body: bytes) -> BoardStatus:
        _need(body, 18, "status reply")
        boot_id, cause, *values, pending = struct.unpack("<HB7HB", body)
        return cls(boot_id, cause, dict(zip(STATUS_FIELDS, values, strict=True)), pending)


@dataclass(frozen=True, slots=True)
class Hello:
    boot_id: int
    reset_cause: int
    protocol: int

    def encode(self) -> bytes:
        return struct.pack("<HBB", self.boot_id, self.reset_cause, self.protocol)

    @classmethod
    def decode(cls, body: bytes) -> Hello:
        _need(body, 4, "hello")
        return cls(*struct.unpack("<HBB", body))


@dataclass(frozen=True, slots=True)
class BoardError:
    code: int
    request_type: int
    argument: int

    def encode(self) -> bytes:
        return struct.pack("<BBI", self.code, self.request_type, self.argument)

    @classmethod
    def decode(cls, body: bytes) -> BoardError:
        _need(body, 6, "error")
        return cls(*struct.unpack("<BBI", body))

    def describe(self) -> str:
        try:
            name = ErrorCode(self.code).name
        except ValueError:
            name = f"code {self.code}"
        return f"board refused request 0x{self.request_type:02X}: {name} (argument {self.argument})"


def encode_fw_begin(size: int, image_crc: int) -> bytes:
    return struct.pack("<IH", size, image_crc)


def encode_fw_chunk(offset: int, data: bytes) -> bytes:
    if not 1 <= len(data) <= MAX_FW_CHUNK:
        raise ValueError(f"firmware chunk of {len(data)} bytes; use 1..{MAX_FW_CHUNK}")
    return struct.pack("<I", offset) + data


# The reply type each request expects (ACK for the rest).
REPLY_TYPE: dict[MsgType, MsgType] = {
    MsgType.IDENTIFY: MsgType.IDENTIFY_REPLY,
    MsgType.TIME: MsgType.TIME_REPLY,
    MsgType.CONFIG_GET: MsgType.CONFIG_REPLY,
    MsgType.RECORDS: MsgType.RECORDS_REPLY,
    MsgType.SDI12: MsgType.SDI12_REPLY,
    MsgType.STATUS: MsgType.STATUS_REPLY,
    MsgType.CONFIG_SET: MsgType.ACK,
    MsgType.FW_BEGIN: MsgType.ACK,
    MsgType.FW_CHUNK: MsgType.ACK,
    MsgType.FW_COMMIT: MsgType.ACK,
}
