"""Campbell CSAT3B unprompted ASCII output, as data (Campbell Scientific CSAT3B instruction manual, signature
p. 55; LSST ts_ess_common `campbell_csat3b.py`).

Record (CR terminated)::

    Ux , Uy , Uz , Ts , Diag , Counter , Signature <CR>
    m/s  m/s  m/s degC  int    0..63     4 lower-case hex digits

Signature: Campbell's 16-bit shift-and-add signature seeded with 0xAAAA (`signature`). Which bytes it covers is the one
open question: the manual's text says the whole record up to the signature, the LSST driver found on hardware that it
covers `Ux` through the diagnostic field **only** (not the counter). `SIGNATURE_SPAN` selects the rule; the simulator
uses the same constant, and the tests pin both known answers (for the example record
`1.23456,-0.54321,0.08765,21.8473,0,17`: `bc5f` with the LSST rule, `dd98` with the manual's). Verify against a real
unit before trusting either.
"""

from __future__ import annotations

from typing import Literal

from gateway.driver_api import StreamColumn

TERMINATOR = b"\r"
SIGNATURE_SEED = 0xAAAA
COUNTER_MODULUS = 64
MISSING = b"NAN"  # Campbell's missing-value text

# "through_diag": Ux..Diag (LSST, observed on hardware); "through_counter": Ux..Counter (manual text).
SignatureSpan = Literal["through_diag", "through_counter"]
SIGNATURE_SPAN: SignatureSpan = "through_diag"

FIELD_NAMES = ("Ux", "Uy", "Uz", "Ts", "Diag", "Counter", "Signature")
COLUMNS: tuple[StreamColumn, ...] = (
    StreamColumn("U", "m s-1"),
    StreamColumn("V", "m s-1"),
    StreamColumn("W", "m s-1"),
    StreamColumn("T_SONIC", "degC"),
    StreamColumn("DIAG_SONIC", "1"),
)
VALUE_FORMAT = "{:.5f}"  # Ux/Uy/Uz; the EXAMPLE prints 5 decimals
TS_FORMAT = "{:.4f}"


#: (lsb << 1) + (1 if lsb's top bit is set), mod 256, is lsb rotated left by one bit: a table look-up per byte
#: instead of a shift, a test and an addition (the signature runs on every byte of 72,000 records an hour)
_ROTATE_LEFT = bytes(((x << 1) | (x >> 7)) & 0xFF for x in range(256))


def signature(data: bytes, seed: int = SIGNATURE_SEED) -> int:
    """Campbell's signature: for each byte b, new = (lsb << 1) + msb + b (+1 if lsb's top bit was set), mod 256;
    the pair (msb, lsb) shifts by one byte."""
    msb, lsb = seed >> 8, seed & 0xFF
    rotate_left = _ROTATE_LEFT
    for byte in data:
        msb, lsb = lsb, (rotate_left[lsb] + msb + byte) & 0xFF
    return (msb << 8) | lsb


def signed_part(fields: list[bytes], span: SignatureSpan = SIGNATURE_SPAN) -> bytes:
    """The bytes the signature covers, from the record's first six fields."""
    return b",".join(fields[:5] if span == "through_diag" else fields[:6])


def build_record(ux: float | None, uy: float | None, uz: float | None, ts: float | None, diag: int, counter: int,
                 *, span: SignatureSpan = SIGNATURE_SPAN, bad_signature: bool = False) -> bytes:
    def text(value: float | None, fmt: str) -> bytes:
        return MISSING if value is None else fmt.format(value).encode("ascii")

    fields = [text(ux, VALUE_FORMAT), text(uy, VALUE_FORMAT), text(uz, VALUE_FORMAT), text(ts, TS_FORMAT),
              str(diag).encode(), str(counter % COUNTER_MODULUS).encode()]
    sig = signature(signed_part(fields, span)) ^ (0x0F0F if bad_signature else 0)
    return b",".join([*fields, f"{sig:04x}".encode()]) + TERMINATOR
