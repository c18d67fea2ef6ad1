"""Gill WindMaster / WindMaster Pro, mode M1 (UVW, continuous, ASCII), as data (Gill "WindMaster and
WindMaster Pro" manual 1561-PS-0001 Issue 11, sec. 7 and 11.4).

Frame layout (SOS and sonic temperature enabled, no analog inputs, no PRT)::

    <STX> N , ±UUU.UU , ±VVV.VV , ±WWW.WW , M , ±CCC.CC , ±TTT.TT , SS , <ETX> XX <CR><LF>
          │    U         V         W       │    SOS       Ts       │          └ XOR of every byte strictly
          node letter                     units                  status hex   between STX and ETX, 2 hex digits

`J1` (normal resolution) prints 2 decimals for U/V/W, `J2` (high) prints 3; SOS and Ts always have 2.

Optional fields the manual documents (sec. 7, 11.4) and a unit may be configured to send::

    ... , SS , [A1 , A2 , A3 , A4 ,] [±PP.PPC ,] <ETX> ...     up to 4 analog inputs (V), then the PRT (degC, `C`)
    <STX> N , U , V , W , M , SS , <ETX> ...                    SOS and Ts switched off

The optional tail is checked (numbers, at most `MAX_OPTIONAL_FIELDS`) and not recorded: the columns are the sonic's.
Without SOS and Ts those two columns are None. The status is told from SOS by its form (exactly 2 hex digits, no
decimal point; one digit is taken as well), so a frame without SOS/Ts but with analog inputs is never read as one
with them.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.driver_api import StreamColumn

STX = 0x02
STATUS_WIDTH = 2  # the manual prints 2 hex digits; 1 is taken too (a status is never signed and has no point)
MAX_OPTIONAL_FIELDS = 5  # A1..A4 and the PRT temperature
PRT_SUFFIX = b"C"
ETX = 0x03
TERMINATOR = b"\r\n"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One comma-separated field of the frame: its column (None = framing field) and print format."""

    name: str
    column: StreamColumn | None
    normal_format: str  # J1
    high_format: str  # J2


FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("node", None, "{}", "{}"),
    FieldSpec("U", StreamColumn("U", "m s-1"), "{:+07.2f}", "{:+08.3f}"),
    FieldSpec("V", StreamColumn("V", "m s-1"), "{:+07.2f}", "{:+08.3f}"),
    FieldSpec("W", StreamColumn("W", "m s-1"), "{:+07.2f}", "{:+08.3f}"),
    FieldSpec("units", None, "{}", "{}"),
    FieldSpec("SOS", StreamColumn("SOS", "m s-1"), "{:+07.2f}", "{:+07.2f}"),
    FieldSpec("T_SONIC", StreamColumn("T_SONIC", "degC"), "{:+07.2f}", "{:+07.2f}"),
    FieldSpec("status", StreamColumn("DIAG_SONIC", "1"), "{:02X}", "{:02X}"),
)
COLUMNS: tuple[StreamColumn, ...] = tuple(f.column for f in FIELDS if f.column is not None)

# The units letter (`U` setting) and its factor to m s-1; values are converted so the columns are always m s-1.
UNIT_FACTORS: dict[str, float] = {
    "M": 1.0,  # U1 metres per second
    "N": 1852.0 / 3600.0,  # U2 knots
    "P": 1609.344 / 3600.0,  # U3 miles per hour
    "K": 1000.0 / 3600.0,  # U4 kilometres per hour
    "F": 0.3048 / 60.0,  # U5 feet per minute
}

# Status codes (WindSonic family, manual sec. 11.5; WindMaster 0A/0B not verified).
STATUS_MEANING: dict[int, str] = {
    0x00: "OK",
    0x01: "axis 1 failed",
    0x02: "axis 2 failed",
    0x04: "axes 1 and 2 failed",
    0x08: "NVM checksum failed",
    0x09: "ROM checksum failed",
    0x0A: "[U] WindMaster-specific",
    0x0B: "[U] WindMaster-specific",
}

# [U] When a path fails the instrument keeps its frame layout; we treat |value| >= this as "no value", which is what
# our simulator emits under the `nan` fault. Verify on a unit with a blocked path.
MISSING_MAGNITUDE = 999.0


def is_status(field: bytes) -> bool:
    """The field has the status's form: 1 or 2 letters/digits, no sign, no decimal point (hex checked later)."""
    return 0 < len(field) <= STATUS_WIDTH and field.isalnum()


def checksum(body: bytes) -> int:
    """XOR of the bytes strictly between STX and ETX.

    Folded as one integer, its upper half XORed onto its lower half until one byte is left: a few big-integer
    operations per frame instead of a Python call per byte (20 frames a second, every second of the year)."""
    value = int.from_bytes(body, "little")
    width = len(body)
    while width > 1:
        half = (width + 1) // 2
        value = (value & ((1 << (8 * half)) - 1)) ^ (value >> (8 * half))
        width = half
    return value


def build_frame(node: str, u: float, v: float, w: float, sos: float, ts: float, status: int, *,
                high_resolution: bool = True, units: str = "M", bad_checksum: bool = False,
                sos_and_ts: bool = True, analog_v: tuple[float, ...] = (), prt_c: float | None = None) -> bytes:
    """One M1 frame; `sos_and_ts=False`, `analog_v` and `prt_c` build the optional layouts (module docstring)."""
    values: dict[str, object] = {"node": node, "U": u, "V": v, "W": w, "units": units, "SOS": sos, "T_SONIC": ts,
                                 "status": status}
    parts = [(f.high_format if high_resolution else f.normal_format).format(values[f.name]) for f in FIELDS
             if sos_and_ts or f.name not in ("SOS", "T_SONIC")]
    parts += [f"{volts:+07.4f}" for volts in analog_v]
    if prt_c is not None:
        parts.append(f"{prt_c:+06.2f}C")
    body = (",".join(parts) + ",").encode("ascii")
    check = checksum(body) ^ (0xFF if bad_checksum else 0)
    return bytes([STX]) + body + bytes([ETX]) + f"{check:02X}".encode("ascii") + TERMINATOR
