"""Hukseflux SR30-D1 register map, declared as data and compiled once into read blocks.

Sources (full citations and what each row rests on: README.md, "Register map and sources"):

- [M] Hukseflux SR30 User Manual v1804, §7.2 "Network communication: function codes, registers, coils"
  (Table 7.2.1 supported function codes: 0x03 read holding registers among them; "the instrument does not
  distinguish between input register and holding register").
- [M-family] Hukseflux SR05-D1A3-PV User Manual v1801, §6.4 Tables 6.4.1-6.4.4 and §6.6 (the "standard Hukseflux
  Modbus output" that the SR-series digital pyranometers share: registers, types, scaling, MSW first, serial
  settings code 5 = 19200 8E1, default address 1); Campbell Scientific SR20-D2 and SR05 product manuals, "RS-485
  register map" tables (register numbers 3, 5, 7-11, 41, 42, 47, 99, 1-based).
- [C] a public SR30-D1 Modbus poller (TypeScript, `devices/pyranometer.ts`) reading input registers 2-6, 10-11,
  40-42, 46-47, 98-99, 194-196 and 198 with the scalings used below.
- [U] not verified against an SR30-D1 manual page or a real unit.

Addresses are 0-based wire addresses (manual register number - 1). 32-bit values are sent **most-significant word
first** ("ABCD"), unlike Vaisala's CDAB; both words of one value must be read in the same request.

    register n      register n+1
    [ A  B ]        [ C  D ]         value bytes, big-endian: A B C D
    MSW             LSW              e.g. 973.59 W m-2 = 97359 x 0.01 -> registers 0x0001, 0x7C4F
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum


class DataType(StrEnum):
    S16 = "s16"
    U16 = "u16"
    S32 = "s32"
    U32 = "u32"
    FLOAT32 = "float32"

    @property
    def register_count(self) -> int:
        return 1 if self in (DataType.S16, DataType.U16) else 2


class Confidence(StrEnum):
    MANUAL = "M"  # SR30 manual
    FAMILY = "M-family"  # a Hukseflux/Campbell manual of a sibling SR-series digital pyranometer
    CODE = "C"  # public third-party code for the SR30-D1
    UNVERIFIED = "U"


@dataclass(frozen=True, slots=True)
class Point:
    """One value of the map: raw register(s) -> `raw / divisor` in `unit`.

    `divisor_register` names the point holding the divisor (the SR30's scaling-factor registers) when the
    divisor is not fixed; `divisor` is then the factory default, used until that register has been read.
    """

    name: str
    address: int
    type: DataType
    unit: str
    description: str
    confidence: Confidence
    divisor: float = 1.0
    divisor_register: str | None = None
    writable: bool = False

    @property
    def count(self) -> int:
        return self.type.register_count

    @property
    def addresses(self) -> range:
        return range(self.address, self.address + self.count)


_S16, _U16, _S32, _U32, _F = DataType.S16, DataType.U16, DataType.S32, DataType.U32, DataType.FLOAT32
_M, _FAM, _C, _U = Confidence.MANUAL, Confidence.FAMILY, Confidence.CODE, Confidence.UNVERIFIED

POINTS: tuple[Point, ...] = (
    Point("modbus_address", 0x00, _U16, "", "Modbus slave address 1..247, factory default 1", _FAM, writable=True),
    Point("serial_settings", 0x01, _U16, "", "serial settings code, factory default 5 = 19200 8E1", _FAM,
          writable=True),
    Point("irradiance", 0x02, _S32, "W m-2", "irradiance, temperature compensated", _FAM,
          divisor=100.0, divisor_register="scale_irradiance"),
    Point("irradiance_uncompensated", 0x04, _S32, "W m-2", "irradiance, not temperature compensated", _FAM,
          divisor=100.0, divisor_register="scale_irradiance"),
    Point("body_temperature", 0x06, _S16, "degC", "sensor body temperature", _FAM,
          divisor=100.0, divisor_register="scale_temperature"),
    Point("sensor_resistance", 0x07, _U16, "ohm", "thermopile electrical resistance", _FAM, divisor=10.0),
    Point("scale_irradiance", 0x08, _U16, "", "divisor of the irradiance registers, default 100", _FAM),
    Point("scale_temperature", 0x09, _U16, "", "divisor of the body temperature register, default 100", _FAM),
    Point("sensor_voltage", 0x0A, _S32, "nV", "thermopile voltage output", _FAM),
    Point("serial_number", 0x28, _U16, "", "sensor serial number", _FAM),
    Point("sensitivity", 0x29, _F, "uV W-1 m2", "calibrated sensitivity (float, MSW first [U])", _FAM),
    Point("calibration_date", 0x2E, _U32, "", "calibration date as the number YYYYMMDD", _FAM),
    Point("internal_humidity", 0x62, _U16, "%", "relative humidity inside the instrument body", _FAM,
          divisor=100.0),
    Point("internal_humidity_temperature", 0x63, _S16, "degC", "temperature at the internal humidity sensor", _C,
          divisor=100.0),
    Point("tilt_angle", 0xC2, _U16, "deg", "tilt of the sensor relative to horizontal", _C, divisor=100.0),
    Point("reserved_00c3", 0xC3, _U16, "", "read with the tilt block, meaning not known", _U),
    Point("fan_speed", 0xC4, _U16, "rpm", "internal ventilator speed", _C),
    Point("heater_current", 0xC6, _U16, "", "heater current (unit not documented to us)", _U),
)

POINT_BY_NAME: dict[str, Point] = {p.name: p for p in POINTS}
MAPPED_ADDRESSES: frozenset[int] = frozenset(a for p in POINTS for a in p.addresses)
# SR05-D1A3-PV manual Table 9.11.3 note 1: "up to five 16 bit registers can be requested in one request"; the
# public SR30-D1 poller never asks for more either. Whether the SR30 accepts longer reads is [U].
MAX_READ_REGISTERS = 5
DEFAULT_ADDRESS = 1
# Register 0x01 codes as far as the SR05 manual's example shows them: 5 = 19200 8E1 (the factory setting).
DEFAULT_SERIAL = (19200, 8, "E", 1)

# The blocks the driver polls: the measurement every poll, the scaling factors once after each (re)start, the
# diagnostics every few polls.
MEASUREMENT_POINTS = ("irradiance", "irradiance_uncompensated", "body_temperature")
SCALE_POINTS = ("scale_irradiance", "scale_temperature")
DIAGNOSTIC_POINTS = ("internal_humidity", "tilt_angle", "reserved_00c3", "fan_speed")


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read request covering contiguous points."""

    address: int
    count: int
    points: tuple[Point, ...]

    def raw(self, words: Sequence[int], *, lsw_first: bool = False) -> dict[str, int | float]:
        """The undivided value of every point in the block, from the block's registers (`lsw_first`: 32-bit
        values sent least-significant word first, the `word_order: lsw_first` of a non-standard unit)."""
        if len(words) != self.count:
            raise ValueError(f"block at 0x{self.address:04X} expects {self.count} registers, got {len(words)}")
        out: dict[str, int | float] = {}
        for point in self.points:
            offset = point.address - self.address
            out[point.name] = decode_raw(point.type, words[offset : offset + point.count], lsw_first=lsw_first)
        return out


def compile_blocks(points: Iterable[Point], max_registers: int = MAX_READ_REGISTERS) -> tuple[ReadBlock, ...]:
    """Group points into the fewest reads of contiguous, mapped registers, none longer than `max_registers`;
    a 32-bit point is never split across two reads."""
    ordered = sorted(points, key=lambda p: p.address)
    blocks: list[ReadBlock] = []
    current: list[Point] = []
    for point in ordered:
        if point.count > max_registers:
            raise ValueError(f"{point.name} needs {point.count} registers, more than one read may carry")
        if current:
            start = current[0].address
            end = current[-1].address + current[-1].count
            gap = range(end, point.address)
            contiguous = all(a in MAPPED_ADDRESSES for a in gap)
            if contiguous and point.address + point.count - start <= max_registers:
                current.append(point)
                continue
            blocks.append(_block(current))
        current = [point]
    if current:
        blocks.append(_block(current))
    return tuple(blocks)


def _block(points: list[Point]) -> ReadBlock:
    start = points[0].address
    return ReadBlock(start, points[-1].address + points[-1].count - start, tuple(points))


def points_by_name(names: Iterable[str]) -> list[Point]:
    return [POINT_BY_NAME[name] for name in names]


def decode_raw(type_: DataType, words: Sequence[int], *, lsw_first: bool = False) -> int | float:
    if type_ is DataType.U16:
        return int(words[0])
    if type_ is DataType.S16:
        return int(struct.unpack(">h", struct.pack(">H", words[0]))[0])
    high, low = (words[1], words[0]) if lsw_first else (words[0], words[1])
    packed = struct.pack(">HH", high, low)  # most-significant word first (the manual's order) unless told otherwise
    if type_ is DataType.S32:
        return int(struct.unpack(">i", packed)[0])
    if type_ is DataType.U32:
        return int(struct.unpack(">I", packed)[0])
    return float(struct.unpack(">f", packed)[0])


def encode_raw(type_: DataType, raw: int | float, *, lsw_first: bool = False) -> list[int]:
    """Inverse of decode_raw (the simulator's side); integers wrap as a device's registers would."""
    if type_ is DataType.FLOAT32:
        high, low = struct.unpack(">HH", struct.pack(">f", float(raw)))
        return [low, high] if lsw_first else [high, low]
    value = int(raw)
    if type_ in (DataType.U16, DataType.S16):
        return [value & 0xFFFF]
    value &= 0xFFFFFFFF
    return [value & 0xFFFF, value >> 16] if lsw_first else [value >> 16, value & 0xFFFF]


def scaled(point: Point, raw: int | float, divisors: dict[str, int]) -> float:
    """raw / divisor, the divisor from its scaling register when one has been read (0 is refused upstream)."""
    divisor = float(divisors.get(point.divisor_register, point.divisor)) if point.divisor_register else point.divisor
    return raw / divisor
