"""Vaisala GMP252 holding-register map, declared as data and compiled once into read blocks.

Source: Vaisala GMP252 User Guide M211897EN-D, Appendix A (Modbus registers), status registers per M211897EN-E,
configuration registers from the GMP251 User Guide M211799EN-K. Addresses are 0-based wire addresses.

Wire layout of one 32-bit value (Vaisala sends the least-significant word first, "CDAB")::

    register n      register n+1
    [ C  D ]        [ A  B ]         value bytes, big-endian: A B C D
    low word        high word        e.g. 412.5 ppm = 0x43CE4000 -> registers 0x4000, 0x43CE

Sentinels: a float with no value is a quiet NaN (0x7FC00000), an int16 with no value is 0x8000; the device
sends them as normal replies, never as Modbus exceptions, so decoding turns them into None here.

pymodbus' `convert_from_registers(word_order="little")` reverses the whole register list, so decoding several
floats in one call swaps them (pymodbus issues #2675, #2544); this module decodes one register pair at a time.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum


class DataType(StrEnum):
    FLOAT32 = "float32"
    INT16 = "int16"
    UINT16 = "uint16"
    UINT32 = "uint32"

    @property
    def register_count(self) -> int:
        return _REGISTER_COUNT[self]


# looked up for every point of every read (a tuple membership test of enum members compares them as strings)
_REGISTER_COUNT = {t: 2 if t in (DataType.FLOAT32, DataType.UINT32) else 1 for t in DataType}


class WordOrder(StrEnum):
    LOW_FIRST = "low_first"  # Vaisala, Campbell default ("CDAB")
    HIGH_FIRST = "high_first"  # "ABCD"


INT16_SENTINEL = 0x8000
QNAN_BITS = 0x7FC00000


@dataclass(frozen=True, slots=True)
class Point:
    """One value in the register map. `variable` is set for points that become published readings."""

    name: str
    address: int
    type: DataType
    unit: str
    description: str
    variable: str | None = None
    word_order: WordOrder = WordOrder.LOW_FIRST
    scale: float = 1.0
    writable: bool = False

    @property
    def count(self) -> int:
        return self.type.register_count

    @property
    def addresses(self) -> range:
        return range(self.address, self.address + self.count)


_F, _I16, _U16, _U32 = DataType.FLOAT32, DataType.INT16, DataType.UINT16, DataType.UINT32

# The full map as documented; the simulator serves every point, the driver polls the subset it needs.
POINTS: tuple[Point, ...] = (
    Point("co2", 0x0000, _F, "umol mol-1", "measured CO2 (ppm == umol/mol)", variable="CO2"),
    Point("temperature", 0x0004, _F, "degC", "measured probe temperature", variable="T_PROBE"),
    Point("co2_int", 0x0100, _I16, "umol mol-1", "measured CO2, saturates near 32 000 ppm"),
    Point("co2_int_x10", 0x0101, _I16, "umol mol-1", "measured CO2 / 10 (value x 10 = ppm)", scale=10.0),
    Point("comp_pressure_eeprom", 0x0200, _F, "hPa", "power-up compensation pressure (EEPROM)"),
    Point("comp_temperature_eeprom", 0x0202, _F, "degC", "power-up compensation temperature (EEPROM)"),
    Point("comp_rh_eeprom", 0x0204, _F, "%", "power-up compensation relative humidity (EEPROM)"),
    Point("comp_o2_eeprom", 0x0206, _F, "%", "power-up compensation oxygen (EEPROM)"),
    Point("comp_pressure", 0x0208, _F, "hPa", "volatile compensation pressure", writable=True),
    Point("comp_temperature", 0x020A, _F, "degC", "volatile compensation temperature", writable=True),
    Point("comp_rh", 0x020C, _F, "%", "volatile compensation relative humidity", writable=True),
    Point("comp_o2", 0x020E, _F, "%", "volatile compensation oxygen", writable=True),
    Point("modbus_address", 0x0300, _I16, "", "Modbus slave address 1..247"),
    Point("bit_rate", 0x0301, _I16, "", "bit rate enum 0=4800 1=9600 2=19200 3=38400 4=57600 5=115200"),
    Point("parity", 0x0302, _I16, "", "parity enum 0=none 1=even 2=odd"),
    Point("stop_bits", 0x0303, _I16, "", "stop bits (register 772, unverified)"),
    Point("reserved_0304", 0x0304, _U16, "", "not documented"),
    Point("reserved_0305", 0x0305, _U16, "", "not documented"),
    Point("reserved_0306", 0x0306, _U16, "", "not documented"),
    Point("reserved_0307", 0x0307, _U16, "", "not documented"),
    Point("co2_filter", 0x0308, _I16, "", "CO2 filtering factor 0..100, 100 = no filtering"),
    Point("device_status", 0x0800, _U16, "", "device status: 0 OK, +1 critical, +2 error, +4 warning"),
    Point("co2_status", 0x0801, _U16, "", "CO2 status: 0 OK, 2 unreliable (start-up), 256 not ready"),
    Point("reserved_0802", 0x0802, _U16, "", "not documented"),
    Point("error_code", 0x0803, _U32, "", "active error bits, see ERROR_BITS"),
)

DEVICE_STATUS_BITS: dict[int, str] = {1: "critical", 2: "error", 4: "warning"}
CO2_STATUS_MEANING: dict[int, str] = {0: "ok", 2: "reading unreliable (start-up)", 256: "not ready (start-up)"}
ERROR_BITS: dict[int, str] = {
    0x0001: "firmware memory CRC (critical)",
    0x0002: "parameter memory CRC (critical)",
    0x0010: "supply voltage low",
    0x0040: "low IR signal",
    0x1000: "CO2 reading out of range",
    0x2000: "heater failure",
    0x4000: "IR source temperature out of range",
}
MODBUS_EXCEPTION_MEANING: dict[int, str] = {
    1: "illegal function",
    2: "illegal data address (register not in the device's map)",
    3: "illegal data value",
    4: "server device failure",
    6: "server device busy",
}


class RegisterMapError(ValueError):
    """The declared map is inconsistent; raised at import or driver construction, never while polling."""


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One FC03 transaction: `count` registers from `address`, decoded into `points`."""

    address: int
    count: int
    points: tuple[Point, ...]

    def decode(self, registers: Sequence[int]) -> dict[str, float | int | None]:
        if len(registers) != self.count:
            raise ValueError(f"block at 0x{self.address:04X} expects {self.count} registers, got {len(registers)}")
        out: dict[str, float | int | None] = {}
        for point in self.points:
            offset = point.address - self.address
            out[point.name] = decode_point(point, registers[offset : offset + point.count])
        return out


def validate_points(points: Iterable[Point]) -> tuple[Point, ...]:
    points = tuple(points)
    seen_names: set[str] = set()
    owner: dict[int, str] = {}
    for point in points:
        if point.name in seen_names:
            raise RegisterMapError(f"register point {point.name!r} is declared twice")
        seen_names.add(point.name)
        if not 0 <= point.address <= 0xFFFF - point.count + 1:
            raise RegisterMapError(f"register point {point.name!r}: address 0x{point.address:X} out of range")
        for addr in point.addresses:
            if addr in owner:
                raise RegisterMapError(f"register points {owner[addr]!r} and {point.name!r} overlap at 0x{addr:04X}")
            owner[addr] = point.name
    return points


# Modbus allows up to 125 registers per FC03 read.
MAX_READ_REGISTERS = 125


def compile_blocks(points: Iterable[Point]) -> tuple[ReadBlock, ...]:
    """Group points into as few reads as possible, merging only back-to-back points.

    Gaps are never bridged: a real probe answers exception 02 for an undocumented register, and a float must be
    read in one transaction, so a block never splits a point.
    """
    ordered = sorted(validate_points(points), key=lambda p: p.address)
    blocks: list[ReadBlock] = []
    current: list[Point] = []
    for point in ordered:
        if current:
            start = current[0].address
            end = current[-1].address + current[-1].count
            if point.address == end and end + point.count - start <= MAX_READ_REGISTERS:
                current.append(point)
                continue
            blocks.append(ReadBlock(start, end - start, tuple(current)))
        current = [point]
    if current:
        start = current[0].address
        blocks.append(ReadBlock(start, current[-1].address + current[-1].count - start, tuple(current)))
    return tuple(blocks)


def points_by_name(names: Iterable[str]) -> tuple[Point, ...]:
    missing = [n for n in names if n not in POINT_BY_NAME]
    if missing:
        raise RegisterMapError(f"unknown register point(s) {missing}; known: {sorted(POINT_BY_NAME)}")
    return tuple(POINT_BY_NAME[n] for n in names)


def _join32(registers: Sequence[int], order: WordOrder) -> bytes:
    first, second = registers
    hi, lo = (second, first) if order is WordOrder.LOW_FIRST else (first, second)
    return struct.pack(">HH", hi, lo)


def _split32(raw: bytes, order: WordOrder) -> list[int]:
    hi, lo = struct.unpack(">HH", raw)
    return [lo, hi] if order is WordOrder.LOW_FIRST else [hi, lo]


def decode_float32(registers: Sequence[int], order: WordOrder = WordOrder.LOW_FIRST) -> float | None:
    """Two registers as sent on the wire -> float, or None for NaN (the device's "no value")."""
    (value,) = struct.unpack(">f", _join32(registers, order))
    return None if math.isnan(value) else float(value)


def encode_float32(value: float, order: WordOrder = WordOrder.LOW_FIRST) -> list[int]:
    """float -> two registers in wire order; NaN is encoded as the quiet NaN the probe sends."""
    raw = struct.pack(">I", QNAN_BITS) if math.isnan(value) else struct.pack(">f", value)
    return _split32(raw, order)


def float32_roundtrip(value: float) -> float:
    """The exact value a reader decodes after `value` was sent as float32."""
    return float(struct.unpack(">f", struct.pack(">f", value))[0])


def decode_point(point: Point, registers: Sequence[int]) -> float | int | None:
    if len(registers) != point.count:
        raise ValueError(f"{point.name} needs {point.count} registers, got {len(registers)}")
    if point.type is DataType.FLOAT32:
        value = decode_float32(registers, point.word_order)
        return None if value is None else value * point.scale
    if point.type is DataType.UINT32:
        return int(struct.unpack(">I", _join32(registers, point.word_order))[0])
    if point.type is DataType.INT16:
        if registers[0] == INT16_SENTINEL:
            return None
        (signed,) = struct.unpack(">h", struct.pack(">H", registers[0]))
        return signed * point.scale if point.scale != 1.0 else signed
    return int(registers[0])


def encode_point(point: Point, value: float | int | None) -> list[int]:
    """Inverse of decode_point, used by the simulator; None becomes the device's sentinel."""
    if point.type is DataType.FLOAT32:
        return encode_float32(math.nan if value is None else value / point.scale, point.word_order)
    if point.type is DataType.UINT32:
        return _split32(struct.pack(">I", int(value or 0) & 0xFFFFFFFF), point.word_order)
    if point.type is DataType.INT16:
        if value is None:
            return [INT16_SENTINEL]
        scaled = round(value / point.scale)
        # Saturate rather than wrap: the probe's int16 CO2 register saturates near 32 000 ppm.
        scaled = max(-32767, min(32767, scaled))
        return [scaled & 0xFFFF]
    return [int(value or 0) & 0xFFFF]


def describe_bits(value: int, table: dict[int, str]) -> str:
    names = [name for bit, name in table.items() if value & bit]
    unknown = value & ~sum(table)
    if unknown:
        names.append(f"unknown bits 0x{unknown:X}")
    return ", ".join(names) if names else "none"


POINTS = validate_points(POINTS)
POINT_BY_NAME: dict[str, Point] = {p.name: p for p in POINTS}
# Every wire address the probe answers; anything else gets exception 02.
MAPPED_ADDRESSES: frozenset[int] = frozenset(a for p in POINTS for a in p.addresses)
