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

import math
import operator
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from enum import IntEnum, StrEnum
from itertools import repeat
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_serializer, model_validator
from pydantic_core import CoreSchema, core_schema

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


#: A unit is plain text ("umol mol-1", "degC", "W m-2"): no control character (C0, DEL, C1), no line or paragraph
#: separator, no bidirectional control and no backslash. Each of them was stored as sent and came back otherwise (or
#: not at all) from a store: a newline or a final backslash in a unit are InfluxDB line-protocol escapes, controls
#: break CSV and log lines, a right-to-left override reverses the text around it on the status page.
UNIT_PATTERN = r"^[^\x00-\x1f\x7f-\x9f\\\u2028\u2029\u202a-\u202e\u2066-\u2069]*$"
UNIT_RE = re.compile(UNIT_PATTERN)


def _check_unit(value: str) -> str:
    if not UNIT_RE.fullmatch(value):
        raise ValueError(
            f"unit {value!r} holds a control character, a line separator, a bidirectional control or a backslash; "
            "write the unit as plain text, e.g. 'umol mol-1' or 'degC'"
        )
    return value


Unit = Annotated[str, AfterValidator(_check_unit)]


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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_YEAR_1000_US = (datetime(1000, 1, 1, tzinfo=UTC) - _EPOCH) // _MICROSECOND


def format_times(values: Sequence[datetime]) -> list[str]:
    """`format_time` of each time, a column at a time by numpy's ISO 8601 writer instead of a `strftime` per time
    (~15 µs each): the same text for aware times in the years 1000..9999 (strftime does not pad earlier years to
    four digits); a list with a time outside them or without a zone is written one at a time."""
    import numpy as np

    try:
        since = map(operator.sub, values, repeat(_EPOCH))
        us = np.fromiter(map(operator.floordiv, since, repeat(_MICROSECOND)), dtype=np.int64, count=len(values))
    except TypeError:  # a naive time: format_time takes it as local time
        return [format_time(v) for v in values]
    if not len(us):
        return []
    if int(us.min()) < _YEAR_1000_US:
        return [format_time(v) for v in values]
    return np.char.add(np.datetime_as_string(us.astype("datetime64[us]"), unit="us"), "Z").tolist()


class WireModel(BaseModel):
    """Base of every model that travels: unknown keys refused, instances immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Reading(WireModel):
    station: Identifier
    sensor: Identifier
    variable: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_]+$")
    value: WireFloat | None = Field(description="None when the device reported no value (then qc is MISSING)")
    unit: Unit = Field(max_length=32)
    time: UtcDatetime
    time_source: TimeSource
    clock_synced: WireBool = Field(description="whether the stamping clock was synchronised (NTP/PPS/board sync)")
    qc: Annotated[QualityFlag, BeforeValidator(_json_number)]
    qc_reason: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _missing_iff_no_value(self) -> Reading:
        # a gap must stay explicit: a null value is always flagged MISSING, and MISSING never carries a number
        if not value_matches_qc(self):
            raise ValueError("value must be null exactly when qc is 3 (MISSING)")
        return self

    @field_serializer("time")
    def _serialize_time(self, value: datetime) -> str:
        return format_time(value)


def value_matches_qc(reading: Reading) -> bool:
    """The rule `Reading` holds across two fields: a null value exactly when qc is MISSING."""
    return (reading.value is None) == (reading.qc == QualityFlag.MISSING)


_set_slot = object.__setattr__  # a frozen model refuses its own __setattr__; pydantic's own __copy__ does this


class ReadingTemplate:
    """The readings of one variable of one sensor, its fixed fields (station, sensor, variable, unit, time source)
    validated once by `Reading`, when the template is made (a driver's start-up).

    A poll then gives the five fields that change; `reading()` checks them by the model's own rules, in Python
    (`value` a finite float or None, None exactly when `qc` is MISSING; `time` a datetime in `UTC`; `clock_synced`
    a bool; `qc` a QualityFlag; `qc_reason` None or at most 200 characters) and builds the instance as pydantic's
    `model_copy` does, without running the validator: ~3 µs instead of ~12.5 for a `Reading(...)` (a poll of a
    GMP252 makes two; bench/rs485_bus.py). Anything else (an int value, another zone, a wrong type) goes to
    `Reading(...)`, which converts it as always or raises the model's own error.
    `tests/test_reading_template.py` holds the two ways equal, instance, fields set and JSON, so a pydantic that
    keeps its instances otherwise fails there.
    """

    __slots__ = ("_fixed",)

    def __init__(self, *, station: str, sensor: str, variable: str, unit: str, time_source: TimeSource) -> None:
        checked = Reading(station=station, sensor=sensor, variable=variable, value=None, unit=unit,
                          time=datetime(2000, 1, 1, tzinfo=UTC), time_source=time_source, clock_synced=False,
                          qc=QualityFlag.MISSING, qc_reason=None)
        self._fixed = (checked.station, checked.sensor, checked.variable, checked.unit, checked.time_source)

    def reading(self, value: float | None, time: datetime, clock_synced: bool, qc: QualityFlag,
                qc_reason: str | None) -> Reading:
        station, sensor, variable, unit, time_source = self._fixed
        if (type(time) is datetime and time.tzinfo is UTC and type(clock_synced) is bool
                and type(qc) is QualityFlag and (qc_reason is None or (type(qc_reason) is str
                                                                       and len(qc_reason) <= 200))
                and ((value is None and qc is QualityFlag.MISSING)
                     or (type(value) is float and qc is not QualityFlag.MISSING and math.isfinite(value)))):
            made = Reading.__new__(Reading)
            # the fields in the model's order, as a validated instance holds them, so its JSON is the same text
            _set_slot(made, "__dict__", {"station": station, "sensor": sensor, "variable": variable, "value": value,
                                         "unit": unit, "time": time, "time_source": time_source,
                                         "clock_synced": clock_synced, "qc": qc, "qc_reason": qc_reason})
            _set_slot(made, "__pydantic_fields_set__", set(_READING_FIELDS))
            _set_slot(made, "__pydantic_extra__", None)
            _set_slot(made, "__pydantic_private__", None)
            return made
        return Reading(station=station, sensor=sensor, variable=variable, value=value, unit=unit, time=time,
                       time_source=time_source, clock_synced=clock_synced, qc=qc, qc_reason=qc_reason)


_READING_FIELDS = tuple(Reading.model_fields)


# --- the same rules in pydantic-core's own terms, for the central service's hot path ------------------------------

#: The wire time as `native_schema` checks it: the wire's format with the hour, minutes and seconds in range, so
#: that `datetime.fromisoformat` (C, no Python frame) makes of it exactly what pydantic and `_as_utc` make: the same
#: instant in `datetime.UTC` (hour 24 and second 60, which some parsers take, are refused here and left to the model).
NATIVE_WIRE_TIME_PATTERN = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?Z$")


def _validator_of(node: dict[str, Any]) -> Any:
    if node.get("type") in ("function-before", "function-after"):
        return node["function"]["function"]
    return None


def native_schema(schema: CoreSchema, drop: frozenset[str] = frozenset()) -> CoreSchema:
    """A model's pydantic-core schema with this module's Python validators replaced by pydantic-core's own checks,
    each as strict as the validator or stricter, never more lenient, and giving the same value:

    - an identifier: a JSON string matching `IDENTIFIER_PATTERN` (`_check_identifier`);
    - a unit: a JSON string matching `UNIT_PATTERN` (`_check_unit`), its length limit kept;
    - a wire time: a JSON string of `NATIVE_WIRE_TIME_PATTERN`, made a `datetime` in UTC by `datetime.fromisoformat`
      (`_wire_time`, pydantic's datetime, `_as_utc`);
    - a JSON number: a strict float or int, which refuses strings and booleans (`_json_number`); an integer enum
      takes a strict int first; a float refuses inf and NaN (pydantic's own `allow_inf_nan=False` check).

    `drop`: qualified names of model validators to leave out, which the caller then checks itself (an "after" one
    that needs the whole model). Anything else is kept as it is (correct, only not faster). So what the returned
    schema accepts the model accepts, with the same result; what it refuses may still be valid (a qc of 1.0, a time
    with second 60 that pydantic takes) and must go to the model, whose error texts are the contract's: see
    `gateway.contract.readings.validate_batch_json`."""
    return _native(schema, drop)


#: pydantic's Python checks of `Field(ge=...)` and the like, which it applies after a `BeforeValidator` (a WireFloat,
#: a WireInt), by the constraint each one checks
_BOUND_CHECKS = {"greater_than_validator": "gt", "greater_than_or_equal_validator": "ge",
                 "less_than_validator": "lt", "less_than_or_equal_validator": "le"}


def _number_bound(function: Any) -> dict[str, Any] | None:
    """`{"ge": 0}` for pydantic's `partial(greater_than_or_equal_validator, ge=0)`, else None."""
    check = getattr(function, "func", None)
    if getattr(check, "__module__", None) != "pydantic._internal._validators":
        return None
    name = _BOUND_CHECKS.get(getattr(check, "__name__", ""))
    keywords = getattr(function, "keywords", {})
    if name is None or set(keywords) != {name} or type(keywords[name]) not in (int, float):
        return None
    return {name: keywords[name]}


def _native(node: Any, drop: frozenset[str]) -> Any:
    if isinstance(node, list):
        return [_native(item, drop) for item in node]
    if not isinstance(node, dict):
        return node
    function = _validator_of(node)
    if function is _check_identifier and node["schema"] == {"type": "str"}:
        return core_schema.str_schema(pattern=IDENTIFIER_PATTERN, strict=True)
    if function is _check_unit and node["schema"].get("type") == "str":
        return {**node["schema"], "pattern": UNIT_PATTERN, "strict": True}
    if function is _as_utc and _validator_of(node["schema"]) is _wire_time:
        return core_schema.chain_schema([core_schema.str_schema(pattern=NATIVE_WIRE_TIME_PATTERN, strict=True),
                                         core_schema.no_info_plain_validator_function(datetime.fromisoformat)])
    if function is _json_number:
        inner = node["schema"]
        if inner.get("type") in ("int", "float"):
            return {**inner, "strict": True}
        if inner.get("type") == "enum" and inner.get("sub_type") == "int":
            return core_schema.chain_schema([core_schema.int_schema(strict=True), inner])
    if getattr(function, "__name__", None) == "forbid_inf_nan_check" and node["type"] == "function-after":
        inner = _native(node["schema"], drop)
        if inner.get("type") == "float" and inner.get("strict"):
            return {**inner, "allow_inf_nan": False}
    bound = _number_bound(function)
    if bound is not None and node["type"] == "function-after":
        inner = _native(node["schema"], drop)
        if inner.get("type") in ("int", "float") and inner.get("strict"):
            return {**inner, **bound}
    if getattr(function, "__qualname__", None) in drop and node["type"] == "function-after":
        return _native(node["schema"], drop)
    # the rest as it is; a model's class, validators and serialisers are not schemas to walk
    return {key: value if key in ("cls", "function", "serialization", "metadata") else _native(value, drop)
            for key, value in node.items()}
