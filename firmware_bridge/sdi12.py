"""SDI-12 replies read through the board (SDI-12 Specification v1.4; METER TEROS 11/12
Integrator Guide 18224): measurement replies, data values, the
optional CRC-16/ARC, and the TEROS 11/12 conversion."""

from __future__ import annotations

import math
import re

# A value: a mandatory sign (it also separates the values), then digits with an optional decimal point.
_VALUE_RE = re.compile(r"[+-](?:\d+\.?\d*|\.\d+)")


class Sdi12Error(ValueError):
    pass


def crc16_arc(text: str) -> int:
    """CRC-16/ARC (init 0, reflected poly 0xA001) as SDI-12 uses it."""
    crc = 0
    for byte in text.encode("ascii"):
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def crc_chars(crc: int) -> str:
    return "".join(chr(0x40 | part) for part in (crc >> 12, (crc >> 6) & 0x3F, crc & 0x3F))


def strip_reply(reply: str, address: str, with_crc: bool = False) -> str:
    """The reply without CR LF (and CRC, verified), checked to come from `address`."""
    if not reply.endswith("\r\n"):
        raise Sdi12Error(f"reply {reply!r} does not end with CR LF (truncated?)")
    text = reply[:-2]
    if not text.isascii():
        raise Sdi12Error(f"reply {reply!r} holds non-ASCII characters (line noise or a wrong baud rate)")
    if not text.startswith(address):
        raise Sdi12Error(f"reply {reply!r} is not from address {address!r}")
    if with_crc:
        if len(text) < 4 or crc_chars(crc16_arc(text[:-3])) != text[-3:]:
            raise Sdi12Error(f"reply {reply!r} failed the SDI-12 CRC check")
        text = text[:-3]
    return text[len(address):]


def parse_measure(reply: str, address: str) -> tuple[int, int]:
    """`atttn` -> (seconds until ready, number of values)."""
    body = strip_reply(reply, address)
    if not re.fullmatch(r"\d{4}", body):
        raise Sdi12Error(f"measurement reply {reply!r} is not a{'ttt'}n")
    return int(body[:3]), int(body[3])


def parse_values(reply: str, address: str, with_crc: bool = False) -> list[float]:
    body = strip_reply(reply, address, with_crc)
    values = _VALUE_RE.findall(body)
    if "".join(values) != body:
        raise Sdi12Error(f"data reply {reply!r} is not a sequence of +/- values")
    numbers = [float(v) for v in values]
    if not all(math.isfinite(n) for n in numbers):
        raise Sdi12Error(f"data reply {reply!r} holds a value too large for a float")
    return numbers


def teros12_vwc(raw: float) -> float:
    """TEROS 12 mineral-soil calibration, m3/m3 (METER manual §4.1): 3.879e-4 x RAW - 0.6956."""
    return 3.879e-4 * raw - 0.6956
