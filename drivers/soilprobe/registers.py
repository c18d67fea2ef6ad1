"""Register layouts of generic RS-485 soil moisture / temperature / EC probes, declared as data.

Sources: layout A — ComWinTop THC-S manual, DFRobot SEN0601/SEN0604 wiki pages, JXCT JXBS-3001-TR (an unofficial
register map); layout B — Seeed SenseCAP S-Temp&VWC&EC-02 user manual sec. 5.2–5.3, Womaster ES103 product sheet. Every
value is one 16-bit register, big-endian, read with FC 03 (holding) or FC 04 (input); both are accepted by these probes.

    layout A "moisture first"        layout B "temperature first"
    0x0000 VWC  x10  unsigned %      0x0000 temperature x100 signed degC
    0x0001 temp x10  signed degC     0x0001 VWC x100 unsigned %
    0x0002 EC   x1   unsigned uS/cm  0x0002 EC x1 unsigned uS/cm
    0x0003 pH x10 / salinity         0x0003 salinity, 0x0004 TDS, 0x0005 permittivity x100
    0x0004 TDS

Signed values are two's complement: 0xFF9B in layout A is -101 / 10 = -10.1 degC.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import StrEnum


class Layout(StrEnum):
    A = "A"
    B = "B"


@dataclass(frozen=True, slots=True)
class Value:
    """One register: `raw / divisor` in `unit`, published as `variable`, plausible within [low, high]."""

    name: str
    offset: int
    divisor: float
    signed: bool
    unit: str
    variable: str
    low: float
    high: float

    def decode(self, word: int) -> float:
        raw = struct.unpack(">h", struct.pack(">H", word))[0] if self.signed else word
        return raw / self.divisor

    def encode(self, value: float) -> int:
        """Inverse of decode (the simulator's side); out-of-range raw values wrap as a faulty probe's would."""
        return round(value * self.divisor) & 0xFFFF

    def plausible(self, value: float) -> bool:
        return self.low <= value <= self.high


SWC_A = Value("swc", 0, 10.0, False, "%", "SWC", 0.0, 100.0)
TS_A = Value("ts", 1, 10.0, True, "degC", "TS", -40.0, 80.0)
SWC_B = Value("swc", 1, 100.0, False, "%", "SWC", 0.0, 100.0)
TS_B = Value("ts", 0, 100.0, True, "degC", "TS", -40.0, 80.0)
EC = Value("ec", 2, 1.0, False, "uS cm-1", "EC_SOIL", 0.0, 20000.0)

# The values each layout maps, in register order; EC is the third register in both.
VALUES: dict[Layout, tuple[Value, ...]] = {
    Layout.A: (SWC_A, TS_A, EC),
    Layout.B: (TS_B, SWC_B, EC),
}
# Registers the probe answers (beyond the three we poll: pH/salinity/TDS/permittivity), for the simulator.
REGISTER_COUNT: dict[Layout, int] = {Layout.A: 5, Layout.B: 6}
DEFAULT_BAUDRATE: dict[Layout, int] = {Layout.A: 4800, Layout.B: 9600}


def read_span(layout: Layout, read_ec: bool) -> tuple[int, int]:
    """(start, count) of the one read that covers every polled value."""
    values = [v for v in VALUES[layout] if read_ec or v is not EC]
    return 0, max(v.offset for v in values) + 1


def decode(layout: Layout, words: list[int], read_ec: bool) -> dict[str, float]:
    return {v.name: v.decode(words[v.offset]) for v in VALUES[layout] if read_ec or v is not EC}
