"""Gill WindMaster / WindMaster Pro 3-D sonic anemometer in M1 (UVW continuous ASCII) mode: the frame grammar.

The stream runner (gateway/edge/streams/) owns the port, splits the byte stream at CR LF, stamps every frame on
arrival and calls `parse`; this module only checks and decodes one frame. The layout is data in `grammar.py`.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import Field

from drivers.windmaster import grammar
from gateway.driver_api import BadRecord, StreamColumn, StreamConfig


class WindMasterConfig(StreamConfig):
    """One WindMaster in a station config; `sample.yaml` documents every key."""

    driver: Literal["windmaster"] = "windmaster"
    baudrate: int = Field(default=38400, ge=1200, le=921600,
                          description="factory 19200; the manual asks for >= 38400 at 20 Hz")
    node: str = Field(default="Q", pattern=r"^[A-Z]$", description="the unit's node letter (factory Q)")
    exit_config_mode_on_connect: bool = Field(
        default=True, description="send Q<CR><LF> after connecting, in case a technician left configuration mode")
    height_m: float | None = Field(default=None, description="measurement height above ground, m (archive metadata)")
    north_offset_deg: float | None = Field(default=None, description="azimuth of the sonic's +x (U) axis, degrees")
    firmware: str = Field(default="", max_length=40,
                          description="the unit's firmware version as its D2 command reports it (archive metadata); "
                                      "flux processing fixes the w-boost bug of 2329.x.y with x < 700 (Gill KN1509v3)")


def _number(field: bytes, name: str) -> float:
    try:
        value = float(field)
    except ValueError:
        raise BadRecord("format", f"{name} field {field!r} is not a number") from None
    if not math.isfinite(value):
        raise BadRecord("format", f"{name} field {field!r} is not finite")
    return value


_STX = bytes([grammar.STX])
_ETX = bytes([grammar.ETX])
_FIELD_COUNT = len(grammar.FIELDS)
_UNIT_FACTORS = {letter.encode("ascii"): factor for letter, factor in grammar.UNIT_FACTORS.items()}


def _split_optional(fields: list[bytes]) -> tuple[list[bytes], bool]:
    """A frame in one of the optional layouts (grammar docstring) -> its 8 core fields (SOS and Ts as b"" when
    switched off) and whether SOS/Ts are present; BadRecord("format") for anything else."""
    core = 5  # node, U, V, W, units
    if len(fields) > core and grammar.is_status(fields[core]):
        has_sos_ts, status_at = False, core  # SOS and Ts switched off: the status follows the units letter
    else:
        has_sos_ts, status_at = True, core + 2
    if len(fields) <= status_at or not grammar.is_status(fields[status_at]):
        raise BadRecord("format", f"{len(fields)} fields with no hex status where M1 puts it; expected "
                                  f"{_FIELD_COUNT} (M1 with SOS+Ts), optionally followed by analog inputs and PRT")
    tail = fields[status_at + 1:]
    if len(tail) > grammar.MAX_OPTIONAL_FIELDS:
        raise BadRecord("format", f"{len(tail)} fields after the status; at most {grammar.MAX_OPTIONAL_FIELDS} "
                                  "(analog inputs A1..A4 and the PRT)")
    for i, extra in enumerate(tail):
        text = extra[:-1] if i == len(tail) - 1 and extra.endswith(grammar.PRT_SUFFIX) else extra
        _number(text, f"optional field {i + 1} after the status")
    sos_ts = fields[core:core + 2] if has_sos_ts else [b"", b""]
    return [*fields[:core], *sos_ts, fields[status_at]], has_sos_ts


def _numbers(fields: list[bytes]) -> tuple[float, float, float, float, float]:
    """U, V, W, SOS, Ts checked one by one: BadRecord naming the first that is not a finite number."""
    u, v, w, sos, ts = (_number(fields[i], name) for i, name in ((1, "U"), (2, "V"), (3, "W"), (5, "SOS"),
                                                                  (6, "T_SONIC")))
    return u, v, w, sos, ts


class WindMasterDriver:
    """gateway.driver_api.StreamDriver for the Gill WindMaster (Pro), M1 mode (SOS+Ts, analog inputs, PRT optional)."""

    Config: ClassVar[type[StreamConfig]] = WindMasterConfig
    columns: ClassVar[tuple[StreamColumn, ...]] = grammar.COLUMNS
    terminator: ClassVar[bytes] = grammar.TERMINATOR

    def __init__(self, config: StreamConfig, *, station: str) -> None:
        if not isinstance(config, WindMasterConfig):
            config = WindMasterConfig.model_validate(config.model_dump())
        self.config: WindMasterConfig = config
        self.station = station
        self._node = config.node.encode("ascii")

    def __repr__(self) -> str:
        return f"WindMasterDriver({self.config.name!r}, port={self.config.port!r})"

    def start_commands(self) -> list[bytes]:
        return [b"Q\r\n"] if self.config.exit_config_mode_on_connect else []

    def parse(self, frame: bytes) -> tuple[float | None, ...]:
        # Twenty frames a second, every second of the year: the common frame takes one path of bytes methods and
        # five bare float() calls; only a frame that fails a check is decoded again for the error's wording.
        frame = frame.rstrip(b"\r\n")
        start = frame.rfind(_STX)  # garbage before STX is line noise, not part of the frame
        if start < 0:
            raise BadRecord("format", f"no STX in {frame[:40]!r}")
        end = frame.find(_ETX, start)
        if end < 0 or len(frame) != end + 3:
            raise BadRecord("format", f"no ETX followed by 2 checksum digits in {frame[start:start + 60]!r}")
        body = frame[start + 1:end]
        try:
            expected = int(frame[end + 1:end + 3], 16)
        except ValueError:
            raise BadRecord("format", f"checksum {frame[end + 1:end + 3]!r} is not hex") from None
        actual = grammar.checksum(body)
        if actual != expected:
            raise BadRecord("checksum", f"XOR checksum {actual:02X} != sent {expected:02X}")
        fields = body.split(b",")
        if fields and fields[-1] == b"":
            fields.pop()
        has_sos_ts = True
        # the common frame: 8 fields, a status last, SOS (with its decimal point) in the sixth
        if len(fields) != _FIELD_COUNT or not grammar.is_status(fields[7]) or b"." not in fields[5]:
            fields, has_sos_ts = _split_optional(fields)
            if not has_sos_ts:
                fields[5] = fields[6] = b"0.0"  # placeholders, reported as None below
        if b"." not in fields[1]:  # M1 prints U with its decimals; M2 (polar, the factory mode) a whole direction
            raise BadRecord("format", f"U field {fields[1][:12]!r} has no decimal point: a polar (M2, the factory "
                                      "mode) frame gives direction and speed there; set the unit to M1 (UVW)")
        if fields[0] != self._node:
            node = fields[0].decode("ascii", "replace")
            raise BadRecord("format", f"node letter {node!r}, configured {self.config.node!r}")
        factor = _UNIT_FACTORS.get(fields[4])
        if factor is None:
            raise BadRecord("format", f"unknown units letter {fields[4].decode('ascii', 'replace')!r}")
        try:
            status = int(fields[7], 16)
        except ValueError:
            raise BadRecord("format", f"status {fields[7]!r} is not hex") from None
        try:
            u, v, w = float(fields[1]), float(fields[2]), float(fields[3])
            sos, ts = float(fields[5]), float(fields[6])
        except ValueError:
            u = v = w = sos = ts = math.nan  # one of them is not a number: _numbers names it
        if not math.isfinite(u + v + w + sos + ts):  # a NaN or an infinity among them (or a sum that overflowed)
            u, v, w, sos, ts = _numbers(fields)
        missing = grammar.MISSING_MAGNITUDE
        return (None if abs(u) >= missing else u * factor, None if abs(v) >= missing else v * factor,
                None if abs(w) >= missing else w * factor,
                None if abs(sos) >= missing or not has_sos_ts else sos,
                None if abs(ts) >= missing or not has_sos_ts else ts, float(status))
