"""Our line protocol of readings is byte for byte influxdb-client's `Point`, the reference serialiser."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from influxdb_client import Point, WritePrecision

from gateway.central.store import StoredReading
from gateway.central.store.base import to_ns
from gateway.central.store.lineprotocol import ReadingLines
from gateway.model import QualityFlag, Reading, TimeSource

from .helpers import T0, reading


def point_line(item: StoredReading) -> str:
    """What InfluxStore wrote through influxdb-client before it serialised lines itself."""
    r = item.reading
    point = (Point("readings").tag("site", item.site).tag("station", r.station).tag("sensor", r.sensor)
             .tag("variable", r.variable).tag("unit", r.unit).tag("time_source", r.time_source.value)
             .field("qc", int(r.qc)).field("clock_synced", r.clock_synced).time(to_ns(r.time), WritePrecision.NS))
    if r.value is not None and math.isfinite(r.value):
        point.field("value", float(r.value))
    if r.qc_reason:
        point.field("qc_reason", r.qc_reason)
    return str(point.to_line_protocol())


AWKWARD_VALUES = [0.1, 1 / 3, 412.123456789012, -40.0, 0.0, -0.0, 1e-300, 1.7976931348623157e308, 2.5e-7,
                  123456789.98765433, 5e-324, 1e16, 12.0, None]
AWKWARD_UNITS = ["umol mol-1", "W m-2", "a,b=c d", "ends with \\", "tab\there", "", "%", "°C", 'quote"d']
AWKWARD_REASONS = [None, "", "warming up", 'said "hi"', "back\\slash", "comma, equals=space", "line\nbreak", "é"]


def test_every_awkward_reading_serialises_exactly_like_point() -> None:
    lines = ReadingLines()
    items = []
    for i, value in enumerate(AWKWARD_VALUES):
        for j, unit in enumerate(AWKWARD_UNITS):
            reason = AWKWARD_REASONS[(i + j) % len(AWKWARD_REASONS)]
            qc = QualityFlag.MISSING if value is None else QualityFlag((i + j) % 3)
            items.append(StoredReading("site.1" if j % 2 else "site-2", Reading(
                station="st_1", sensor=f"probe{j}", variable="CO2_1_1_1", value=value, unit=unit,
                time=T0 + timedelta(microseconds=i * 1_000_003 + j), time_source=list(TimeSource)[j % 3],
                clock_synced=bool(i % 2), qc=qc, qc_reason=reason)))

    ours = [lines.line(item) for item in items]

    assert ours == [point_line(item) for item in items]
    assert lines.body(items) == "\n".join(ours)  # the second time every tag set comes from the cache


def test_a_full_cache_is_emptied_and_the_lines_stay_right() -> None:
    lines = ReadingLines(max_cached=3)
    items = [StoredReading("site1", reading(sensor=f"s{i % 5}", time=T0 + timedelta(seconds=i), value=float(i)))
             for i in range(20)]

    assert [lines.line(item) for item in items] == [point_line(item) for item in items]


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_value_that_is_not_finite_is_left_out(value: float) -> None:
    item = StoredReading("site1", Reading.model_construct(**{**dict(reading()), "value": value}))

    assert "value=" not in ReadingLines().line(item)
    assert ReadingLines().line(item) == point_line(item)
