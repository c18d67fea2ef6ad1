"""Campbell CSAT3B 3-D sonic anemometer, unprompted RS-485 ASCII output: the frame grammar.

The stream runner (gateway/edge/streams/) owns the port, splits at CR, stamps each record on arrival and calls
`parse`. Checks: 7 fields, signature (span: `grammar.SIGNATURE_SPAN`), counter continuity. A counter that repeats
the previous one is a duplicated record (BadRecord "counter"); a counter that jumps means records were lost on the
line: the record is kept and the loss is counted in `lost_records`.

Which bytes the signature covers is not settled (grammar.py). With `signature_span_fallback` (default) a record
whose signature fails under the configured span but matches under the other one is accepted, the driver switches
to that span, counts the switch in `signature_span_switches` and logs a warning naming the `signature_span` to set:
otherwise a unit (or an independent simulator) following the other reading would lose every record as `checksum`.
Every accepted record still carries a signature that matched one of the two documented rules.
"""

from __future__ import annotations

import logging
import math
from typing import ClassVar, Literal

from pydantic import Field

from drivers.csat3b import grammar
from gateway.driver_api import BadRecord, StreamColumn, StreamConfig

log = logging.getLogger(__name__)


class CSAT3BConfig(StreamConfig):
    """One CSAT3B in a station config; `sample.yaml` documents every key."""

    driver: Literal["csat3b"] = "csat3b"
    baudrate: int = Field(default=115200, ge=1200, le=921600, description="CSAT3B RS-485 default 115200 8N1")
    signature_span: grammar.SignatureSpan = Field(
        default=grammar.SIGNATURE_SPAN, description="bytes the signature covers: through_diag (observed) or "
                                                    "through_counter (manual text)")
    signature_span_fallback: bool = Field(
        default=True, description="accept (and switch to) the other span when a record's signature matches only "
                                  "under it; the switch is logged and counted")
    height_m: float | None = Field(default=None, description="measurement height above ground, m (archive metadata)")
    north_offset_deg: float | None = Field(default=None, description="azimuth of the sonic's +x (Ux) axis, degrees")


def _value(field: bytes, name: str) -> float | None:
    if field.upper() == grammar.MISSING:
        return None
    try:
        value = float(field)
    except ValueError:
        raise BadRecord("format", f"{name} {field!r} is not a number") from None
    return value if math.isfinite(value) else None


_FIELD_COUNT = len(grammar.FIELD_NAMES)


def _values(fields: list[bytes], diag: int) -> tuple[float | None, ...]:
    """Ux, Uy, Uz, Ts one by one (None for NAN or another non-finite value), and Diag; BadRecord naming the first
    field that is not a number."""
    values = [_value(f, n) for f, n in zip(fields[:4], grammar.FIELD_NAMES, strict=False)]
    return (*values, float(diag))


class CSAT3BDriver:
    """gateway.driver_api.StreamDriver for the Campbell CSAT3B (unprompted ASCII)."""

    Config: ClassVar[type[StreamConfig]] = CSAT3BConfig
    columns: ClassVar[tuple[StreamColumn, ...]] = grammar.COLUMNS
    terminator: ClassVar[bytes] = grammar.TERMINATOR

    def __init__(self, config: StreamConfig, *, station: str) -> None:
        if not isinstance(config, CSAT3BConfig):
            config = CSAT3BConfig.model_validate(config.model_dump())
        self.config: CSAT3BConfig = config
        self.station = station
        self.lost_records = 0
        self._last_counter: int | None = None
        self._through_diag = config.signature_span == "through_diag"
        self.signature_span_switches = 0
        """Times a record matched only the other signature span and the driver switched to it."""

    def __repr__(self) -> str:
        return f"CSAT3BDriver({self.config.name!r}, port={self.config.port!r})"

    def start_commands(self) -> list[bytes]:
        return []  # the CSAT3B streams unprompted once configured (Device Configuration Utility)

    def reset(self) -> None:
        """Forget the counter (after a reconnect the first record starts a new run)."""
        self._last_counter = None

    def _other_span_or_raise(self, record: bytes, actual: int, sent: int) -> None:
        """The signature failed under the active span: switch if it matches under the other, else BadRecord."""
        span: grammar.SignatureSpan = "through_diag" if self._through_diag else "through_counter"
        other: grammar.SignatureSpan = "through_counter" if self._through_diag else "through_diag"
        if self.config.signature_span_fallback:
            fields = record.split(b",")
            if grammar.signature(grammar.signed_part(fields, other)) == sent:
                self._through_diag = not self._through_diag
                self.signature_span_switches += 1
                log.warning("CSAT3B %r: records are signed %s, not %s; switched (switch %d). Set signature_span: "
                            "%s in the station config to start with it", self.config.name, other, span,
                            self.signature_span_switches, other)
                return
        raise BadRecord("checksum", f"signature {actual:04x} != sent {sent:04x} ({span})")

    def parse(self, frame: bytes) -> tuple[float | None, ...]:
        # Twenty records a second, every second of the year: the common record takes one path of bytes methods and
        # four bare float() calls, checked for finiteness by their sum; a value that is not a finite number is
        # looked at again, field by field, for the error's wording or its None.
        record = frame.strip(b"\r\n")
        fields = record.split(b",")
        if len(fields) != _FIELD_COUNT:
            raise BadRecord("format", f"{len(fields)} fields, expected {_FIELD_COUNT}: {frame[:60]!r}")
        try:
            sent = int(fields[6], 16)
            counter = int(fields[5])
            diag = int(fields[4])
        except ValueError:
            raise BadRecord("format", f"diag/counter/signature not integers: {frame[:60]!r}") from None
        # the bytes the signature covers are the record's head up to the counter (or the signature): a slice of
        # the record, the very bytes `grammar.signed_part` joins from the fields
        signed = record[:record.rindex(b",", 0, record.rindex(b","))] if self._through_diag \
            else record[:record.rindex(b",")]
        actual = grammar.signature(signed)
        if actual != sent:
            self._other_span_or_raise(record, actual, sent)
        if not 0 <= counter < grammar.COUNTER_MODULUS:
            raise BadRecord("format", f"counter {counter} outside 0..{grammar.COUNTER_MODULUS - 1}")
        if self._last_counter is not None:
            step = (counter - self._last_counter) % grammar.COUNTER_MODULUS
            if step == 0:
                raise BadRecord("counter", f"counter {counter} repeats: duplicated record")
            self.lost_records += step - 1
        self._last_counter = counter
        try:
            ux, uy, uz, ts = float(fields[0]), float(fields[1]), float(fields[2]), float(fields[3])
        except ValueError:
            return _values(fields, diag)  # raises BadRecord naming the first field that is not a number
        if not math.isfinite(ux + uy + uz + ts):  # a NAN among them (or finite values whose sum overflowed)
            return _values(fields, diag)
        return ux, uy, uz, ts, float(diag)
