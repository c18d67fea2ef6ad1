"""The shared data model: what a reading is, and the value types every layer uses (identifiers, UTC times, quality
flags, time sources).

One `Reading` is one value of one variable from one sensor at one instant, with the provenance of its timestamp and
a quality flag. Drivers produce readings; the messages that carry them between station and central service
(`ReadingBatch`, `StationStatus`, ...) and their topics are the wire contract, `gateway.contract`.

Variable names follow the AmeriFlux/FLUXNET BASE conventions where one exists (`CO2`, `TS`, `SWC`, ...); see
`gateway.variables` for the registry with units. The wire format of `Reading` is specified, as JSON Schema, in
`docs/asyncapi.yaml`; `tests/test_contract.py` validates every payload the code emits against that document.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_serializer, model_validator

# A topic segment must never contain MQTT wildcards or separators; InfluxDB tag values are safe with these too.
IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
IDENTIFIER_RE = re.compile(IDENTIFIER_PATTERN)

# Identifiers already found valid: a central service checks the same few thousand station and sensor names in every
# message, and a set look-up costs a fraction of the pattern match. Bounded; emptied when full.
_VALID_IDENTIFIERS: set[str] = set()
_MAX_VALID_IDENTIFIERS = 100_000


def _check_identifier(value: str) -> str:
    if value in _VALID_IDENTIFIERS:
        return value
    if not IDENTIFIER_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid identifier: use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit (no spaces, '/', '+' or '#')"
        )
    if len(_VALID_IDENTIFIERS) >= _MAX_VALID_IDENTIFIERS:
        _VALID_IDENTIFIERS.clear()
    _VALID_IDENTIFIERS.add(value)
    return value


Identifier = Annotated[str, AfterValidator(_check_identifier)]


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp has no time zone; sinkwatch timestamps are UTC, e.g. 2026-11-25T10:00:00Z")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 or 9999-12-31T23:59:59-01:00: no such UTC time
        raise ValueError("timestamp is outside the range of UTC dates (0001..9999) once its offset is applied") \
            from None


# The wire's one time format (docs/asyncapi.yaml UtcTime): Z, seconds, at most six fractional digits.
WIRE_TIME_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z$"
_WIRE_TIME_RE = re.compile(WIRE_TIME_PATTERN)


def _wire_time(value: object) -> object:
    """Text must be the wire's own format; pydantic's lax mode would also take epoch seconds, numeric offsets or
    minutes without seconds. A datetime from our own code passes (any zone: it is converted to UTC)."""
    if isinstance(value, str):
        if not _WIRE_TIME_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a UTC time like 2026-11-25T10:00:00.000000Z (RFC 3339 with Z)")
        return value
    if not isinstance(value, datetime):
        raise ValueError(f"a time is an RFC 3339 string like 2026-11-25T10:00:00Z, not {type(value).__name__}")
    return value


def _json_number(value: object) -> object:
    """A number on the wire is a JSON number: pydantic's lax mode would also take "12" or true for one."""
    if isinstance(value, str | bytes | bytearray | bool):
        raise ValueError(f"must be a number, not {type(value).__name__} {value!r}")
    return value


UtcDatetime = Annotated[datetime, BeforeValidator(_wire_time), AfterValidator(_as_utc)]
WireFloat = Annotated[float, BeforeValidator(_json_number), Field(allow_inf_nan=False)]
WireInt = Annotated[int, BeforeValidator(_json_number)]
WireBool = Annotated[bool, Field(strict=True)]


class QualityFlag(IntEnum):
    """Per-reading quality, in the spirit of the 0/1/2 flag scheme used across flux networks.

    GOOD: the device reported no problem. SUSPECT: usable with care (warm-up, a device warning).
    BAD: do not use (device error, out of range). MISSING: the device had no value (NaN or 0x8000 sentinel);
    the reading is kept so the gap is explicit rather than silent.
    """

    GOOD = 0
    SUSPECT = 1
    BAD = 2
    MISSING = 3


class TimeSource(StrEnum):
    """Which clock stamped a reading."""

    GATEWAY = "gateway"  # the station node's clock, at the moment the reply arrived
    DEVICE = "device"  # the instrument's own clock
    BOARD = "board"  # a microcontroller front end's clock, mapped to UTC


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with microseconds and a trailing Z, the one time format on the wire."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class WireModel(BaseModel):
    """Base of every model that travels: unknown keys refused, instances immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Reading(WireModel):
    station: Identifier
    sensor: Identifier
    variable: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_]+$")
    value: WireFloat | None = Field(description="None when the device reported no value (then qc is MISSING)")
    unit: str = Field(max_length=32)
    time: UtcDatetime
    time_source: TimeSource
    clock_synced: WireBool = Field(description="whether the stamping clock was synchronised (NTP/PPS/board sync)")
    qc: Annotated[QualityFlag, BeforeValidator(_json_number)]
    qc_reason: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _missing_iff_no_value(self) -> Reading:
        # a gap must stay explicit: a null value is always flagged MISSING, and MISSING never carries a number
        if (self.value is None) != (self.qc == QualityFlag.MISSING):
            raise ValueError("value must be null exactly when qc is 3 (MISSING)")
        return self

    @field_serializer("time")
    def _serialize_time(self, value: datetime) -> str:
        return format_time(value)
