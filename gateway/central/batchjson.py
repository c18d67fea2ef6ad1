"""A readings batch validated column by column: the central service's hot path, where every reading it stores is
validated (`Ingestor._prepare_readings` in gateway/central/ingest.py) and written (the InfluxDB store).

`ReadingBatch.model_validate_json` runs pydantic's validation per reading and per field; `gateway.contract.
validate_batch_json` runs the same checks in pydantic-core's own code, but still makes a `Reading` per reading,
which the ingest wraps in a `StoredReading` and the store takes apart again into an identity and a line. Here the
payload is parsed by orjson (a C parser) and each *field* of all readings is checked at once: the distinct
station, sensor and variable names and units of a batch (a few, each checked once), the types of a column as a set,
the times by one regular expression over the column joined, the flags and time sources by dictionary look-ups, the
cross-field rule by two C loops. The result is `ReadingColumns`, which the InfluxDB store writes as it is
(`gateway.central.store.columns`); no model per reading is made.

Every check is the model's own rule or stricter (`Reading`, `ReadingBatch`, `gateway.model`): what this accepts the
model accepts, with the same values; what it does not accept (None) goes the model's way, so a refused batch gets
the model's error texts and a batch the model would take for a reason too awkward to check here (an integer flag
written 1.0, a time with second 60) is still taken. tests/test_contract_native.py draws awkward values for every
field and compares the columns with the model's batch.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from datetime import datetime
from functools import partial
from itertools import repeat
from typing import Any

import orjson

from gateway.central.store.base import to_ns_all
from gateway.central.store.columns import ReadingColumns
from gateway.contract import ReadingBatch, validate_batch_json
from gateway.model import IDENTIFIER_RE, NATIVE_WIRE_TIME_PATTERN, UNIT_RE, QualityFlag, Reading, TimeSource

_READING_FIELDS = tuple(Reading.model_fields)  # qc_reason, the one optional field, last
_READING_KEY_SETS = {frozenset(_READING_FIELDS), frozenset(name for name, field in Reading.model_fields.items()
                                                           if field.is_required())}
_BATCH_FIELDS = frozenset(ReadingBatch.model_fields)
_REQUIRED_BATCH_FIELDS = frozenset(name for name, f in ReadingBatch.model_fields.items() if f.is_required())


def _field_limit(field: str, name: str) -> Any:
    """`Reading.<field>`'s constraint `name` (min_length, max_length, pattern): the column checks use the model's
    own limits, not copies of them."""
    return next(getattr(m, name) for m in Reading.model_fields[field].metadata if getattr(m, name, None) is not None)


# a pattern without its anchors, for `fullmatch` (Python's `$` would let a final newline by)
_VARIABLE_RE = re.compile(_field_limit("variable", "pattern").removeprefix("^").removesuffix("$"))
_VARIABLE_LENGTHS = range(_field_limit("variable", "min_length"), _field_limit("variable", "max_length") + 1)
_MAX_UNIT: int = _field_limit("unit", "max_length")
_MAX_QC_REASON: int = _field_limit("qc_reason", "max_length")
#: a column of wire times joined by newlines: one match for a whole batch instead of one call per reading
_WIRE_TIMES_RE = re.compile(f"(?:{NATIVE_WIRE_TIME_PATTERN.removeprefix('^').removesuffix('$')}\n)*")
_TIME_SOURCES = frozenset(source.value for source in TimeSource)
_FLAGS = frozenset(map(int, QualityFlag))
_MISSING = int(QualityFlag.MISSING)
_NUMBER_TYPES = {float, int, type(None)}
_REASON_TYPES = {str, type(None)}
_not_none = partial(operator.is_not, None)


def reading_columns(payload: bytes | str) -> ReadingColumns | None:
    """The batch's readings as columns when every check here passes (then they are the model's readings), else
    None (ask the model: `validate_batch_json`)."""
    try:
        fields = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if type(fields) is not dict or not _REQUIRED_BATCH_FIELDS <= fields.keys() <= _BATCH_FIELDS:
        return None
    readings = fields["readings"]
    site, station, seq, version = fields["site"], fields["station"], fields["seq"], fields.get("schema_version", 1)
    if (type(readings) is not list or not readings or type(seq) is not int or seq < 0 or type(version) is not int
            or version != 1 or type(site) is not str or type(station) is not str or not _identifiers({site, station})):
        return None
    try:
        sent = _wire_times([fields["sent"]])
        return _columns(site, station, seq, sent, readings, partial(validate_batch_json, payload))
    except (TypeError, ValueError, KeyError):  # an unhashable value, a time that is no date, an unknown flag
        return None


def _identifiers(values: set[Any]) -> bool:
    return all(type(value) is str and IDENTIFIER_RE.fullmatch(value) for value in values)


def _wire_times(texts: list[Any]) -> list[datetime]:
    """The times of a column of wire times, read as `gateway.model.native_schema` reads one; ValueError if one is
    not a wire time (its format, or no such date: Feb 30, year 0)."""
    if set(map(type, texts)) != {str}:
        raise ValueError("not a column of texts")
    joined = "\n".join(texts) + "\n"
    if joined.count("\n") != len(texts) or _WIRE_TIMES_RE.fullmatch(joined) is None:
        raise ValueError("not a column of wire times")
    return list(map(datetime.fromisoformat, texts))


def _columns(site: str, station: str, seq: int, sent: list[datetime], items: list[Any],
             model: Callable[[], ReadingBatch]) -> ReadingColumns | None:
    if set(map(type, items)) != {dict}:
        return None
    if not set(map(frozenset, items)) <= _READING_KEY_SETS:  # each reading's keys: the model's, no other
        return None
    stations, sensors, variables, values, units, times, sources, synced, flags = (
        list(map(operator.itemgetter(name), items)) for name in _READING_FIELDS[:-1])
    reasons = list(map(dict.get, items, repeat("qc_reason")))
    if not (_identifiers(set(stations)) and _identifiers(set(sensors))
            and all(type(v) is str and len(v) in _VARIABLE_LENGTHS and _VARIABLE_RE.fullmatch(v)
                    for v in set(variables))
            and all(type(u) is str and len(u) <= _MAX_UNIT and UNIT_RE.fullmatch(u) for u in set(units))
            and set(map(type, synced)) == {bool} and set(map(type, flags)) == {int}
            and set(map(type, values)) <= _NUMBER_TYPES and set(map(type, reasons)) <= _REASON_TYPES
            and max(map(len, filter(None, reasons)), default=0) <= _MAX_QC_REASON
            and set(sources) <= _TIME_SOURCES and set(flags) <= _FLAGS):
        return None
    numbers = list(filter(_not_none, values))
    if not all(map(math.isfinite, numbers)):
        return None
    # the model's cross-field rule (gateway.model.value_matches_qc): null exactly when MISSING
    if list(map(operator.is_, values, repeat(None))) != list(map(operator.eq, flags, repeat(_MISSING))):
        return None
    if int in set(map(type, numbers)):  # a JSON integer is a float to the model
        values = [float(v) if type(v) is int else v for v in values]
    stamps = _wire_times(times)
    times_ns = list(to_ns_all(stamps))
    return ReadingColumns(site, station, seq, sent[0], stations, sensors, variables, values, units, sources, synced,
                          flags, reasons, times_ns, min(times_ns), max(times_ns), model)
