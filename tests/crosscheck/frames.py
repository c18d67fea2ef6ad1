"""Clean-room frame builders for the cross-check tests: written from the instruments' documentation, not from our
drivers or simulators, so a misreading shared by a driver and its simulator shows here.

Sources, by manual title and section:

- Gill "WindMaster and WindMaster Pro" manual 1561-PS-0001 Issue 11, sec. 7 and 11.4: M1 ASCII UVW frame,
  `<STX>` node, U, V, W, units, speed of sound, sonic temperature, status, optional analog inputs and PRT, `<ETX>`,
  XOR of the bytes strictly between STX and ETX as 2 hex digits, CR LF.
- Campbell Scientific CSAT3B instruction manual (signature, p. 55) and LSST ts_ess_common `campbell_csat3b.py`:
  `Ux,Uy,Uz,Ts,Diag,Counter,Signature` CR, signature seeded 0xAAAA.
- Campbell Scientific IRGASON manual Table 8-1, EC150 manual App. C.1, EC155 manual sec. 7.2.5: 15 elements,
  CR LF, `NAN` for missing values.
- LI-COR LI-7500RS/LI-7200RS instruction manual App. D (configuration grammar): `(Data (Label value)...)` records,
  `(Ack ...)`, `(Error ...)`, `(Diagnostics ...)` messages, LF terminated, exponent notation.
"""

from __future__ import annotations

STX, ETX = b"\x02", b"\x03"


def xor_checksum(body: bytes) -> int:
    """Gill's checksum: XOR of every byte strictly between STX and ETX (a plain loop on purpose)."""
    value = 0
    for byte in body:
        value ^= byte
    return value


def gill_frame(fields: list[str], *, trailing_comma: bool = True, lower_hex: bool = False,
               ending: bytes = b"\r\n", corrupt: bool = False) -> bytes:
    """A WindMaster ASCII frame of the given comma-separated fields (node letter first)."""
    body = ",".join(fields).encode("ascii") + (b"," if trailing_comma else b"")
    check = xor_checksum(body) ^ (0x5A if corrupt else 0)
    digits = f"{check:02x}" if lower_hex else f"{check:02X}"
    return STX + body + ETX + digits.encode("ascii") + ending


def campbell_signature(data: bytes, seed: int = 0xAAAA) -> int:
    """Campbell Scientific's 16-bit signature in the form the CRBasic documentation gives it: per byte, the seed
    is shifted left by one within 9 bits, the carry added back, then the old high byte and the data byte added
    into the low byte, while the old low byte becomes the high byte."""
    for byte in data:
        previous = seed
        seed = (seed << 1) & 0x01FF
        if seed >= 0x100:
            seed += 1
        seed = ((seed + (previous >> 8) + byte) & 0x00FF) | ((previous << 8) & 0xFF00)
    return seed


def csat3b_record(ux: str, uy: str, uz: str, ts: str, diag: int, counter: int, *, span: str = "through_diag",
                  upper_hex: bool = False, ending: bytes = b"\r", corrupt: bool = False) -> bytes:
    """One CSAT3B record; `span` "through_diag" signs Ux..Diag (LSST), "through_counter" Ux..Counter (manual)."""
    head = [ux, uy, uz, ts, str(diag)]
    signed = ",".join(head if span == "through_diag" else [*head, str(counter)]).encode("ascii")
    sig = campbell_signature(signed) ^ (0x0101 if corrupt else 0)
    text = f"{sig:04X}" if upper_hex else f"{sig:04x}"
    return ",".join([*head, str(counter), text]).encode("ascii") + ending


def ec100_record(elements: list[str], *, first: int = 6, last: int = 14, ending: bytes = b"\r\n",
                 corrupt: bool = False) -> bytes:
    """One EC100 record of elements 1..14 (as text); the signature covers elements `first`..`last` (1-based)
    joined by their commas (EC155 manual sec. 7.2.5: from element 6 through the counter)."""
    assert len(elements) == 14
    sig = campbell_signature(",".join(elements[first - 1:last]).encode("ascii")) ^ (0x0101 if corrupt else 0)
    return ",".join([*elements, f"{sig:04x}"]).encode("ascii") + ending
