"""Vaisala HMP155 serial-line grammar (ASCII on RS-485), declared as data; sources per item in README.md.

The probe sits on the line in POLL mode with an address 0..99 (set once with a terminal, see README.md):

    request:  [ESC] "SEND aa" CR             ESC first drops any half-typed command (resync)
    reply:    the FORM line, CR LF           only the probe with address aa answers

The driver installs its own FORM once after each (re)start, inside OPEN/CLOSE (POLL mode accepts other
commands only for an opened line):

    [ESC] "OPEN aa" CR   -> "... line opened for operator commands" CR LF   (a STOP-mode session for aa)
    [ESC] "FORM <spec>" CR -> prompt or nothing                              (the FORM is kept in the probe)
    [ESC] "CLOSE" CR     -> "line closed" CR LF                              (back to POLL)

Its FORM makes every reply self-describing and checkable:

    FORM "HMP" ADDR " " 3.2 RH " " 3.2 T U5 " " ERR " " STAT " " CS2 #r #n
    ->   HMP05  45.23  18.20'C    0000 N F7 CR LF

ADDR = the probe's 2-digit address (so a reply is never taken from the wrong probe), RH in %, T with its unit
(U5: 'C in metric units, the factory setting; 'F after UNIT N, converted to degC), ERR = four 0/1 error flags
for T, Ta (additional T probe), RH and memory, STAT = the heating status letter (N none, h warmed probe, H purge
heating, S purge cooling, X sensor heating), CS2 = modulus-256 sum of the bytes sent before it, two hex digits.
A value the probe cannot give is printed as stars (`***.**`) [U].
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

ESC = b"\x1b"
CR = b"\r"
TAG = "HMP"
FORM_SPEC = f'"{TAG}" ADDR " " 3.2 RH " " 3.2 T U5 " " ERR " " STAT " " CS2 #r #n'
FORM_MAX_CHARS = 73  # the probe takes at most 73 characters after the command word
ERR_FLAGS = ("T", "Ta", "RH", "MEM")
ERR_MEANING = {
    "T": "temperature measurement error",
    "Ta": "additional T-probe measurement error",
    "RH": "humidity measurement error",
    "MEM": "memory error",
}
STAT_MEANING = {
    "N": "no heating",
    "h": "warmed probe active",
    "H": "chemical purge: heating",
    "S": "chemical purge: cooling",
    "X": "extra sensor heating active",
}
# Heating states during which the RH reading does not describe the ambient air [U: the manual's wording was not
# read; a purge heats the sensor far above ambient, Xheat heats it to keep it dry].
RH_UNREPRESENTATIVE_STAT = frozenset("HSX")

# Variants the user guide allows and the reply still carries whole (docs/reliability.md, 2026-12-06 "HMP155, SR30,
# chamber"): the T unit printed by U5 (`'C`, or `'F` after `UNIT N`; absent when a FORM without U5 is in place),
# STAT as the 7-character field of revision C ("h 115", "H 159.0": letter, then power or temperature), ADDR printed
# space-filled (" 5"), and the line ended by CR LF, CR or LF.
_LINE_RE = re.compile(
    rb"HMP ?(?P<addr>\d{1,2}) +(?P<rh>\S+) +(?P<t>[-+\d.*]+) *(?P<unit>(?:'|\xb0|\xc2\xb0)?[CF])? +(?P<err>[01]{4})"
    rb" +(?P<stat>\S)(?: +(?P<stat_value>\d+(?:\.\d*)?))? +(?P<cs>[0-9A-Fa-f]{2})(?:\r\n|\r|\n)"
)
_LINE_END = re.compile(rb"[\r\n]")


class GrammarError(ValueError):
    """A reply that is not the FORM line we asked for; `reason` labels it (format, checksum, address)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def command(text: str) -> bytes:
    """A command line as the driver sends it: ESC (resync) + text + CR."""
    return ESC + text.encode("ascii") + CR


def send_command(address: int) -> bytes:
    return command(f"SEND {address}")


def open_command(address: int) -> bytes:
    return command(f"OPEN {address}")


CLOSE_COMMAND = command("CLOSE")
FORM_COMMAND = command(f"FORM {FORM_SPEC}")
# The same FORM without the unit field, for a probe (or simulator) that refuses U5: T is then taken as degC, the
# factory setting (docs/reliability.md, "HMP155, SR30, chamber").
FORM_SPEC_WITHOUT_UNIT = FORM_SPEC.replace(" U5", "")
FORM_COMMAND_WITHOUT_UNIT = command(f"FORM {FORM_SPEC_WITHOUT_UNIT}")


def checksum_cs2(data: bytes) -> str:
    """CS2: the modulus-256 sum of `data`, as two upper-case hex digits."""
    return f"{sum(data) % 256:02X}"


def send_reply_complete(received: bytes) -> bool:
    """A whole text line other than the echo of our SEND has arrived: our FORM line, or something the parser will
    refuse at once (instead of waiting for a line that is not coming)."""
    *whole, _partial = _LINE_END.split(received)
    # An echo of SEND (a probe with ECHO ON) is no reply, with or without our resync ESC in front, and with a
    # bare CR after it: lines end at CR or LF.
    return any(text and not text.upper().startswith(b"SEND") for text in (w.strip(b" \t\x1b") for w in whole))


def reply_containing(word: bytes) -> Callable[[bytes], bool]:
    """Complete once `word` (case-insensitive) or a prompt has arrived: OPEN answers "... line opened ...", CLOSE
    "line closed". A late reply still on the line before it does not end the wait."""

    def complete(received: bytes) -> bool:
        return word in received.lower() or received.rstrip(b" ").endswith(b">")

    return complete


def line_reply_complete(received: bytes) -> bool:
    """A configuration command's answer is complete at a prompt or at the end of a text line."""
    text = received.rstrip(b" ")
    return text.endswith(b">") or (text.endswith(b"\n") and bool(text.strip()))


@dataclass(frozen=True, slots=True)
class SendValues:
    address: int
    rh: float | None  # %, None when printed as stars
    t: float | None  # degC (converted when the probe printed degF)
    errors: tuple[str, ...]  # names from ERR_FLAGS whose flag is 1
    stat: str
    unit_printed: bool = False  # the reply carried T's unit (the FORM with U5 is in place)


def _number(name: str, token: bytes, line: bytes) -> float | None:
    if set(token) <= set(b"*.-+"):
        return None
    try:
        return float(token)
    except ValueError:
        raise GrammarError("format", f"{name} is not a number: {token!r} in {line!r}") from None


def parse_send(reply: bytes, address: int, *, verify_checksum: bool = True) -> SendValues:
    """The values of one SEND reply from the probe at `address`; GrammarError when it is not ours or not whole."""
    match = _LINE_RE.search(reply)
    if match is None:
        raise GrammarError("format", f"no FORM line ({TAG}aa RH T ERR STAT CS2) in the reply {reply!r}")
    line = match.group(0)
    if int(match.group("addr")) != address:
        raise GrammarError("address", f"asked address {address}, the reply carries {match.group('addr').decode()}")
    if verify_checksum:
        covered = line[: match.start("cs") - match.start()]
        expected = checksum_cs2(covered)
        if match.group("cs").decode().upper() != expected:
            raise GrammarError("checksum", f"checksum {match.group('cs').decode()} != {expected} in {line!r}")
    flags = match.group("err").decode()
    t = _number("T", match.group("t"), line)
    if t is not None and (match.group("unit") or b"C").endswith(b"F"):
        t = (t - 32.0) * 5.0 / 9.0  # UNIT N: the probe prints T in degF (User Guide, "UNIT command")
    return SendValues(
        address=address,
        rh=_number("RH", match.group("rh"), line),
        t=t,
        errors=tuple(name for name, flag in zip(ERR_FLAGS, flags, strict=True) if flag == "1"),
        stat=match.group("stat").decode(),
        unit_printed=match.group("unit") is not None,
    )
