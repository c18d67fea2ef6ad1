"""InfluxDB line protocol of readings, serialised by us: each distinct tag set is escaped once, not once per point.

A station's readings repeat a few dozen tag sets (site, station, sensor, variable, unit, time source) over and over;
influxdb-client's `Point` escapes and sorts every tag of every point again (~15 µs a reading, most of the central
hop's CPU before this module). Here the escaped `readings,<tags>` prefix of a tag set is kept in a bounded cache and
a point costs its fields and its timestamp only.

The output is byte for byte what `Point` writes for the same reading (tests/central/test_lineprotocol.py compares
them over awkward values), following the line protocol reference of InfluxDB 1.x ("Line Protocol syntax"):

    readings,sensor=<s>,site=<s>,station=<s>,time_source=<s>,unit=<s>,variable=<s> <fields> <ns>
    fields: clock_synced=<b>,qc=<i>i[,qc_reason="<s>"][,value=<f>]

- tag keys sorted (InfluxDB's own order; it sorts otherwise), a tag with an empty value left out (InfluxDB refuses
  empty tag values); commas, equals signs, spaces and the control characters newline, tab and carriage return are
  escaped with a backslash, and a value ending in a backslash gets a space after it;
- field keys sorted; a float as Python's shortest round-trip `str`, without a trailing `.0`; a value that is missing
  or not finite is left out (the reading is MISSING); an integer with `i`; a bool as `true`/`false`; a string in
  double quotes with `"` and `\\` escaped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from operator import attrgetter, itemgetter

import orjson

from gateway.central.store.base import StoredReading, to_ns
from gateway.central.store.columns import ReadingColumns
from gateway.model import Reading

MEASUREMENT = "readings"

_ESCAPE_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_ESCAPE_STRING = str.maketrans({'"': r"\"", "\\": r"\\"})
#: Distinct tag sets kept escaped; a network of 1,000 stations has some tens of thousands. Past this the cache is
#: emptied and refilled, which costs one escape per tag set again, never a wrong line.
MAX_CACHED_TAG_SETS = 200_000

TagSet = tuple[str, str, str, str, str, str]  # site, station, sensor, variable, unit, time_source


def escape_tag_value(value: str) -> str:
    escaped = value.translate(_ESCAPE_KEY)
    return escaped + " " if escaped.endswith("\\") else escaped


def format_float(value: float) -> str:
    text = str(value)
    return text[:-2] if text.endswith(".0") else text


def _prefix(tags: TagSet) -> str:
    site, station, sensor, variable, unit, time_source = tags
    pairs = (("sensor", sensor), ("site", site), ("station", station), ("time_source", time_source), ("unit", unit),
             ("variable", variable))
    escaped = [f"{key}={escape_tag_value(value)}" for key, value in pairs if value]
    return MEASUREMENT + ("," + ",".join(escaped) if escaped else "") + " "


_TAG_FIELDS = attrgetter("station", "sensor", "variable", "unit", "time_source")
_FLAG_FIELDS = attrgetter("clock_synced", "qc")
_READING = itemgetter(1)  # of a StoredReading
_SITE = itemgetter(0)
_VALUE = attrgetter("value")
_REASON = attrgetter("qc_reason")
_TIME = attrgetter("time")
_FLOAT_OR_NONE = {float, type(None)}


class ReadingLines:
    """Serialises readings; keeps the escaped prefix of every tag set it has seen (bounded). One per store.

    `lines` runs for every reading the central service stores, so it works in columns: each part of the lines
    (prefix, flags, value, time) is made for all readings at once by C loops (`map`, orjson for the numbers), and
    the lines are joined from the columns; Python runs per reading only where a column needs it (a reading with a
    `qc_reason`, a tag set not seen before, a number orjson writes otherwise than `str`)."""

    def __init__(self, max_cached: int = MAX_CACHED_TAG_SETS) -> None:
        self.max_cached = max_cached
        # site -> (station, sensor, variable, unit, time_source) -> "readings,<tags> "; time_source is a StrEnum
        # (equal to its text and hashed like it) or, in a held point, the text
        self._prefixes: dict[str, dict[tuple[object, ...], str]] = {}
        self._cached = 0
        # "clock_synced=<b>,qc=<i>i" by (clock_synced, qc): a handful of texts, every reading one of them
        self._flags: dict[tuple[object, object], str] = {}

    def line(self, item: StoredReading, time_ns: int | None = None) -> str:
        """One reading's line; `time_ns`: its time in ns, when the caller has it already."""
        return self.lines([item], None if time_ns is None else {id(item): time_ns})[0]

    def lines(self, items: list[StoredReading], times: dict[int, int] | None = None) -> list[str]:
        """The readings' lines; `times`: id(item) -> its time in ns, for those the caller has it of already."""
        if not items:
            return []
        readings = list(map(_READING, items))
        columns = [self._prefix_column(items, readings), self._flag_column(readings)]
        reasons = list(map(_REASON, readings))
        if any(reasons):
            columns.append([f',qc_reason="{reason.translate(_ESCAPE_STRING)}"' if reason else ""
                            for reason in reasons])
        columns += [_value_column(list(map(_VALUE, readings))), _time_column(items, readings, times)]
        return list(map("".join, zip(*columns, strict=True)))

    def body(self, items: list[StoredReading]) -> str:
        return "\n".join(self.lines(items))

    def column_lines(self, columns: ReadingColumns) -> list[str]:
        """The lines of a batch given as columns (`gateway.central.store.columns`): the same bytes `lines` makes of
        the same readings as models (tests/central/test_lineprotocol.py)."""
        cache = self._site_cache(columns.site)
        tags = list(zip(columns.stations, columns.sensors, columns.variables, columns.units, columns.time_sources,
                        strict=True))
        prefixes: list[str | None] = list(map(cache.get, tags))
        if None in prefixes:
            for index, key in enumerate(tags):
                if prefixes[index] is None:
                    if self._cached >= self.max_cached:
                        self._prefixes.clear()
                        self._cached = 0
                        cache = self._site_cache(columns.site)
                    prefix = cache.get(key)
                    if prefix is None:
                        station, sensor, variable, unit, time_source = key
                        prefix = cache[key] = _prefix((columns.site, station, sensor, variable, unit,
                                                       str(time_source)))
                        self._cached += 1
                    prefixes[index] = prefix
        flags: list[str | None] = list(map(self._flags.get, zip(columns.clock_synced, columns.qcs, strict=True)))
        if None in flags:
            for index, flag_key in enumerate(zip(columns.clock_synced, columns.qcs, strict=True)):
                if flags[index] is None:
                    flags[index] = self._flags[flag_key] = _flags_text(*flag_key)
        parts: list[list[str]] = [prefixes, flags]  # type: ignore[list-item]
        if any(columns.qc_reasons):
            parts.append([f',qc_reason="{reason.translate(_ESCAPE_STRING)}"' if reason else ""
                          for reason in columns.qc_reasons])
        parts += [_value_column(columns.values), _stamp_column(columns.times_ns)]
        return list(map("".join, zip(*parts, strict=True)))

    def _prefix_column(self, items: list[StoredReading], readings: list[Reading]) -> list[str]:
        sites = set(map(_SITE, items))
        if len(sites) == 1:
            (site,) = sites
            column: list[str | None] = list(map(self._site_cache(site).get, map(_TAG_FIELDS, readings)))
            if None not in column:
                return column  # type: ignore[return-value]
        else:
            column = [None] * len(items)
        for index, item in enumerate(items):
            if column[index] is None:
                tags = _TAG_FIELDS(item.reading)
                cache = self._site_cache(item.site)
                prefix = cache.get(tags)
                if prefix is None:
                    if self._cached >= self.max_cached:
                        self._prefixes.clear()
                        self._cached = 0
                        cache = self._site_cache(item.site)
                    station, sensor, variable, unit, time_source = tags
                    prefix = cache[tags] = _prefix((item.site, station, sensor, variable, unit, str(time_source)))
                    self._cached += 1
                column[index] = prefix
        return column  # type: ignore[return-value]

    def _site_cache(self, site: str) -> dict[tuple[object, ...], str]:
        cache = self._prefixes.get(site)
        if cache is None:
            cache = self._prefixes[site] = {}
        return cache

    def _flag_column(self, readings: list[Reading]) -> list[str]:
        flags = self._flags
        column: list[str | None] = list(map(flags.get, map(_FLAG_FIELDS, readings)))
        if None in column:
            for index, reading in enumerate(readings):
                if column[index] is None:
                    key = _FLAG_FIELDS(reading)
                    column[index] = flags[key] = _flags_text(reading.clock_synced, reading.qc)
        return column  # type: ignore[return-value]


def _flags_text(clock_synced: object, qc: object) -> str:
    return f"clock_synced={'true' if clock_synced else 'false'},qc={int(qc)}i"  # type: ignore[call-overload]


def _value_column(values: list[float | None]) -> list[str]:
    """",value=<f>" of each value ("" when it is missing or not finite): orjson writes the shortest round-trip
    digits like `str`, in positional form where `str` does; where it writes an exponent, or positional digits for
    a magnitude below 1e-4 (`str` then writes an exponent), the whole column is written by `format_float`."""
    text = orjson.dumps(values).decode() if set(map(type, values)) <= _FLOAT_OR_NONE else "e"
    if "e" in text or "0.0000" in text:
        return [f",value={format_float(float(v))}" if v is not None and math.isfinite(v) else "" for v in values]
    # "[400.0,401.5,null]" -> ",value=400", ",value=401.5", "" (orjson writes NaN and inf as null, like None)
    joined = (text[1:-1] + ",").replace(".0,", ",")[:-1]
    return (",value=" + joined.replace(",", "\x00,value=")).replace(",value=null", "").split("\x00")


def _time_column(items: list[StoredReading], readings: list[Reading], times: dict[int, int] | None) -> list[str]:
    """" <ns>" of each reading: from `times` (id(item) -> ns) where it has them, else computed."""
    known: list[int | None] = list(map(times.get, map(id, items))) if times is not None else [None] * len(items)
    stamps = [to_ns(t) if ns is None else ns for ns, t in zip(known, map(_TIME, readings), strict=True)] \
        if None in known else known
    return _stamp_column(stamps)  # type: ignore[arg-type]


def _stamp_column(stamps: list[int]) -> list[str]:
    """" <ns>" of each time in ns."""
    try:
        return (" " + orjson.dumps(stamps).decode()[1:-1].replace(",", "\x00 ")).split("\x00")
    except orjson.JSONEncodeError:  # past 64 bits (no store holds such a time; it is refused there, not here)
        return [f" {ns}" for ns in stamps]


_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})

FieldValue = float | int | bool | str | None


def escape_key(key: str) -> str:
    """A tag or field key escaped (module doc)."""
    return key.translate(_ESCAPE_KEY)


def escape_measurement(name: str) -> str:
    """A measurement name escaped: commas, spaces and control characters (an equals sign stays)."""
    return name.translate(_ESCAPE_MEASUREMENT)


def field_text(value: FieldValue) -> str | None:
    """A field value as line protocol writes it (module doc); None for one left out (missing or not finite)."""
    if value is None:
        return None
    if isinstance(value, float):
        return format_float(value) if math.isfinite(value) else None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    return string_text(value)


def string_text(value: str) -> str:
    """A string field's value as line protocol writes it: in double quotes, `"` and `\\` escaped."""
    # most strings need no escape (names, base64, hex digests): two searches cost less than a translation
    if '"' in value or "\\" in value:
        return f'"{value.translate(_ESCAPE_STRING)}"'
    return f'"{value}"'


def fields_text(pairs: Iterable[tuple[str, FieldValue]]) -> str:
    """`key=value,...` of the pairs, in their order (keys already escaped, each with its `=`), those without a value
    left out (`field_text`)."""
    return ",".join([key + text for key, value in pairs if (text := field_text(value)) is not None])


def point_line(measurement: str, tags: dict[str, str | None], fields: dict[str, FieldValue], time_ns: int) -> str:
    """One point's line, byte for byte what influxdb-client's `Point` writes for the same measurement, tags, fields
    and nanosecond time (the rules in the module doc; "" when no field has a value, as `Point` gives), at a third of
    its cost: the ledger item of every signed item and the dozen points of every health report go through here."""
    tag_text = ",".join([f"{key.translate(_ESCAPE_KEY)}={escape_tag_value(value)}"
                         for key, value in sorted(tags.items()) if value is not None and key and value])
    field_set = fields_text([(f"{key.translate(_ESCAPE_KEY)}=", value) for key, value in sorted(fields.items())])
    if not field_set:
        return ""
    head = measurement.translate(_ESCAPE_MEASUREMENT)
    return f"{head}{',' if tag_text else ''}{tag_text} {field_set} {int(time_ns)}"
