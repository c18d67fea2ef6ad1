"""Vaisala GMP343 serial-line grammar (ASCII, RS-232 or RS-485), declared as data.

Sources: Vaisala GMP231 "Serial line output commands" and GMP251 "Serial commands" (the same command family);
tum-esm/hermes `edge-node/src/hardware/gmp343_sensor.py` (a public Raspberry Pi driver). Marked [U] where no manual
is behind it.

    command:   [ESC] word [SP args] CR          ESC first discards a half-typed command (resync)
    reply:     [echo of the command CR LF]      only while `echo on` (the power-on default)
               text lines CR LF
               '>'                              the prompt: the reply is complete
    parameter: 'name (unit) : old ? '           a parameter command without a value asks for one and waits
    echo off:  'ECHO       : OFF' CR LF '>'      the confirmation (wording and spacing [U]; matched loosely)

A prompt is a '>' at the start of a line (after LF, or after a bare CR) or right after another prompt: with echo
off, `s` and `form` answer with a bare '>', so two replies read together look like '>>'. The probe answers commands
in the order they came, one reply each; a reply that comes after its exchange gave up (a slow probe, a loaded host)
is read by the next one. `split_replies` cuts what was read into whole replies, and each command's `*_reply` picks
its own reply by what it says, so a late reply ahead of it is recognised and dropped instead of being taken for the
answer.

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
PROMPT_RE = re.compile(rb"(?:^|[\r\n])>\s*$")
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


def split_replies(received: bytes) -> tuple[list[bytes], bytes]:
    """What the probe printed, cut into whole replies (each ending with its prompt, or a parameter question that
    waits for a value) and the rest, still being printed."""
    replies: list[bytes] = []
    start = line_start = 0
    for at, byte in enumerate(received):
        if byte in (0x0A, 0x0D):  # CR LF as documented; a bare CR ends a line too (a unit or simulator set so)
            line_start = at + 1
        elif byte == 0x3E and not received[max(start, line_start):at].strip():  # '>' with nothing before it
            replies.append(received[start:at + 1])
            start = line_start = at + 1
    rest = received[start:]
    if PARAMETER_PROMPT_RE.search(rest):
        return [*replies, rest], b""
    return replies, rest


def reply_complete(received: bytes) -> bool:
    """A whole reply has been read: a prompt, or a parameter question waiting for a value."""
    return bool(split_replies(received)[0])


def reply_lines(reply: bytes) -> list[str]:
    """The text lines of one reply, stripped, without its prompt and blank lines."""
    body = reply[:-1] if reply.endswith(b">") else reply
    return [line.strip() for line in _text(body).splitlines() if line.strip()]


# Vaisala's confirmation of `echo on|off`; the simulator prints "ECHO       : OFF", other firmware "Echo : OFF" [U]
ECHO_STATE_RE = re.compile(r"echo\s*:\s*(on|off)", re.IGNORECASE)
# The command lines the driver sends, as the probe echoes them while echo is on
ECHOED_COMMANDS = frozenset(c.lower() for c in ("s", "echo off", FORM_COMMAND.decode(), "send", "errs"))


def echo_state(reply: bytes) -> str | None:
    """'on' or 'off' when the reply is the confirmation of an `echo` command, else None."""
    lines = reply_lines(reply)
    match = ECHO_STATE_RE.fullmatch(lines[-1]) if lines else None
    return match.group(1).lower() if match else None


def _says_nothing(reply: bytes) -> bool:
    """A reply without news: a bare prompt, echoed command lines only, or an echo confirmation. The answer to
    `s` or `echo off`, never to `send` or `errs`."""
    lines = reply_lines(reply)
    return all(line.lower() in ECHOED_COMMANDS for line in lines) or echo_state(reply) is not None


# Which of the whole replies read so far answers the command just sent (None: not arrived yet). Replies before it
# belong to earlier commands and came late; each picker knows its own command's reply by its content.


def first_reply(replies: list[bytes]) -> int | None:
    """`s`: a bare prompt (echo off) cannot be told from a late one, so the first reply is taken; the `echo off`
    after it resynchronises."""
    return 0 if replies else None


def echo_off_reply(replies: list[bytes], *, bare_prompt_ok: bool = False) -> int | None:
    """`echo off`: the reply that confirms it. Everything before it answered earlier commands, so from here on
    every reply is the answer to the command just sent.

    The confirmation's text is documented nowhere we could read: a probe that prints none answers, with echo on,
    its echo of `echo off` alone (a reply no other command gives: taken), and with echo already off a bare prompt,
    which cannot be told from a late one; `bare_prompt_ok` takes that too, for a probe known not to confirm
    (the driver learns it from an `echo off` exchange that ended without a confirmation)."""
    for i, reply in enumerate(replies):
        if echo_state(reply) == "off":
            return i
    for i, reply in enumerate(replies):
        lines = [line.lower() for line in reply_lines(reply)]
        if lines == ["echo off"] or (bare_prompt_ok and not lines):
            return i
    return None


def form_reply(replies: list[bytes]) -> int | None:
    """`form <fields>`: a bare prompt with echo off (or a question or an error); not an echo confirmation left over
    from an abandoned resync, nor the echo of another command."""
    others = ECHOED_COMMANDS - {FORM_COMMAND.decode().lower()}

    def late(reply: bytes) -> bool:
        lines = reply_lines(reply)
        return echo_state(reply) is not None or (bool(lines) and all(line.lower() in others for line in lines))

    return next((i for i, reply in enumerate(replies) if not late(reply)), None)


def send_reply(replies: list[bytes]) -> int | None:
    """`send`: the first reply that says something; a bare prompt or echo confirmation ahead of it is late."""
    return next((i for i, reply in enumerate(replies) if not _says_nothing(reply)), None)


def errs_reply(replies: list[bytes], tag: str = FORM_TAG) -> int | None:
    """`errs`: the first reply that says something and is not a measurement line."""
    return next((i for i, reply in enumerate(replies)
                 if not _says_nothing(reply) and not any(tag in line for line in reply_lines(reply))), None)


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
