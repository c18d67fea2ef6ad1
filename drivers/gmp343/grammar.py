"""Vaisala GMP343 serial-line grammar (ASCII, RS-232 or RS-485), declared as data.

Sources: Vaisala GMP231 "Serial line output commands" and GMP251 "Serial commands" (the same command family);
tum-esm/hermes `edge-node/src/hardware/gmp343_sensor.py` (a public Raspberry Pi driver). Marked [U] where no manual
is behind it.

    command:   [ESC] word [SP args] CR          ESC first discards a half-typed command (resync)
    reply:     [echo of the command CR LF]      only while `echo on` (the power-on default)
               text lines CR LF
               '>'                              the prompt: the reply is complete
    parameter: 'name (unit) : old ? '           a parameter command without a value asks for one and waits

The driver sets `form CO2RAWUC CO2RAW CO2 T " (R C C+F T)"` (as hermes does), so a `send` reply is

    "  423.18   421.95   422.40    18.72 (R C C+F T)\\r\\n>"

i.e. the FORM fields in order, whitespace separated, then the literal tag that makes the line recognisable.
A field the probe cannot measure is printed as stars (e.g. `***.**`) [U]; it becomes a missing value.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

ESC = b"\x1b"
CR = b"\r"
PROMPT_RE = re.compile(rb"(?:^|\n)>\s*$")
PARAMETER_PROMPT_RE = re.compile(rb"\?\s*$")
ERRS_OK = "OK: No errors detected."


@dataclass(frozen=True, slots=True)
class FormField:
    name: str
    unit: str
    description: str
    variable: str | None = None  # published as this variable (None: read but not published)


FIELDS: dict[str, FormField] = {
    f.name: f
    for f in (
        FormField("CO2RAWUC", "umol mol-1", "raw CO2, not compensated for T/P/RH/O2"),
        FormField("CO2RAW", "umol mol-1", "CO2 compensated for T/P/RH/O2, not filtered"),
        FormField("CO2", "umol mol-1", "CO2 compensated and filtered (average/smooth/median settings)", "CO2"),
        FormField("T", "degC", "probe temperature", "T_PROBE"),
    )
}
FORM: tuple[str, ...] = ("CO2RAWUC", "CO2RAW", "CO2", "T")
FORM_TAG = "(R C C+F T)"
FORM_COMMAND = ("form " + " ".join(FORM) + f' " {FORM_TAG}"').encode()


def command(text: bytes | str) -> bytes:
    """A command line as the driver sends it: ESC (resync) + text + CR."""
    raw = text.encode() if isinstance(text, str) else text
    return ESC + raw + CR


def reply_complete(received: bytes) -> bool:
    """The prompt ended the reply, or a parameter question is waiting for a value."""
    return bool(PROMPT_RE.search(received) or PARAMETER_PROMPT_RE.search(received))


class GrammarError(ValueError):
    pass


# A value as the probe prints it: optional sign, digits with an optional decimal point, optional exponent. Stricter
# than float(), which also takes `inf`, `nan`, `1_000` and non-ASCII digits.
_NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _text(reply: bytes) -> str:
    return reply.decode("ascii", errors="replace")


def parse_send(reply: bytes, form: tuple[str, ...] = FORM, tag: str = FORM_TAG) -> dict[str, float | None]:
    """The values of one `send` reply, by FORM field name; None for a field printed as stars."""
    if PARAMETER_PROMPT_RE.search(reply) and not PROMPT_RE.search(reply):
        raise GrammarError(f"the probe is waiting for a parameter value ({_text(reply)!r})")
    for line in _text(reply).splitlines():
        if tag not in line:
            continue
        tokens = line.split(tag, 1)[0].split()
        if len(tokens) != len(form):
            raise GrammarError(f"expected {len(form)} values before {tag!r}, got {len(tokens)}: {line!r}")
        values: dict[str, float | None] = {}
        for name, token in zip(form, tokens, strict=True):
            if set(token) <= set("*.-+"):
                values[name] = None
                continue
            value = float(token) if _NUMBER_RE.fullmatch(token) else math.nan
            if not math.isfinite(value):
                raise GrammarError(f"{name} is not a finite number: {token!r} in {line!r}")
            values[name] = value
        return values
    raise GrammarError(f"no line with the form tag {tag!r} in the reply {_text(reply)!r}")


def parse_errs(reply: bytes) -> str | None:
    """None when the probe reports no errors, else the error text it printed."""
    lines = [ln.strip() for ln in _text(reply).splitlines()]
    lines = [ln for ln in lines if ln and ln != ">" and not ln.endswith("errs")]
    text = " ".join(lines).strip()
    if text.startswith("OK"):
        return None
    return text or "errs gave no answer text"
