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

from gateway.central.store.base import StoredReading, to_ns

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


class ReadingLines:
    """Serialises readings; keeps the escaped prefix of every tag set it has seen (bounded). One per store."""

    def __init__(self, max_cached: int = MAX_CACHED_TAG_SETS) -> None:
        self.max_cached = max_cached
        self._prefixes: dict[TagSet, str] = {}

    def line(self, item: StoredReading, time_ns: int | None = None) -> str:
        """One reading's line; `time_ns`: its time in ns, when the caller has it already."""
        r = item.reading
        tags = (item.site, r.station, r.sensor, r.variable, r.unit, str(r.time_source.value))
        prefix = self._prefixes.get(tags)
        if prefix is None:
            if len(self._prefixes) >= self.max_cached:
                self._prefixes.clear()
            prefix = self._prefixes[tags] = _prefix(tags)
        fields = f"clock_synced={'true' if r.clock_synced else 'false'},qc={int(r.qc)}i"
        if r.qc_reason:
            fields += f',qc_reason="{r.qc_reason.translate(_ESCAPE_STRING)}"'
        value = r.value
        if value is not None and math.isfinite(value):
            fields += f",value={format_float(float(value))}"
        return f"{prefix}{fields} {to_ns(r.time) if time_ns is None else time_ns}"

    def body(self, items: list[StoredReading]) -> str:
        return "\n".join([self.line(item) for item in items])


_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})

FieldValue = float | int | bool | str | None


def point_line(measurement: str, tags: dict[str, str | None], fields: dict[str, FieldValue], time_ns: int) -> str:
    """One point's line, byte for byte what influxdb-client's `Point` writes for the same measurement, tags, fields
    and nanosecond time (the rules in the module doc; "" when no field has a value, as `Point` gives), at a third of
    its cost: the ledger item of every signed item and the dozen points of every health report go through here."""
    tag_text = ",".join([f"{key.translate(_ESCAPE_KEY)}={escape_tag_value(value)}"
                         for key, value in sorted(tags.items()) if value is not None and key and value])
    parts = []
    for key, value in sorted(fields.items()):
        if value is None:
            continue
        if isinstance(value, float):
            if not math.isfinite(value):
                continue
            text = format_float(value)
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int):
            text = f"{value}i"
        else:
            text = f'"{value.translate(_ESCAPE_STRING)}"'
        parts.append(f"{key.translate(_ESCAPE_KEY)}={text}")
    if not parts:
        return ""
    head = measurement.translate(_ESCAPE_MEASUREMENT)
    return f"{head}{',' if tag_text else ''}{tag_text} {','.join(parts)} {int(time_ns)}"
