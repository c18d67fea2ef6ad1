"""Our line protocol of readings is byte for byte influxdb-client's `Point`, the reference serialiser."""

from __future__ import annotations

import base64
import dataclasses
import json
import math
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from influxdb_client import Point, WritePrecision

from gateway.central.batchjson import reading_columns
from gateway.central.store import StoredReading
from gateway.central.store.base import to_ns
from gateway.central.store.lineprotocol import FieldValue, ReadingLines, point_line
from gateway.contract import ChannelBacklog, ReadingBatch, SensorHealth, StationHealth
from gateway.model import QualityFlag, Reading, TimeSource

from .helpers import T0, reading


def reading_point_line(item: StoredReading) -> str:
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
#: the awkward texts a reading's unit may still be (the wire contract refuses controls and backslashes in units);
#: the tag escaping of a backslash and a tab stays tested through AWKWARD_UNITS as site and kind tags below
READING_UNITS = [u for u in AWKWARD_UNITS if "\\" not in u and "\t" not in u]
AWKWARD_REASONS = [None, "", "warming up", 'said "hi"', "back\\slash", "comma, equals=space", "line\nbreak", "é"]


def test_every_awkward_reading_serialises_exactly_like_point() -> None:
    lines = ReadingLines()
    items = []
    for i, value in enumerate(AWKWARD_VALUES):
        for j, unit in enumerate(READING_UNITS):
            reason = AWKWARD_REASONS[(i + j) % len(AWKWARD_REASONS)]
            qc = QualityFlag.MISSING if value is None else QualityFlag((i + j) % 3)
            items.append(StoredReading("site.1" if j % 2 else "site-2", Reading(
                station="st_1", sensor=f"probe{j}", variable="CO2_1_1_1", value=value, unit=unit,
                time=T0 + timedelta(microseconds=i * 1_000_003 + j), time_source=list(TimeSource)[j % 3],
                clock_synced=bool(i % 2), qc=qc, qc_reason=reason)))

    ours = [lines.line(item) for item in items]

    assert ours == [reading_point_line(item) for item in items]
    assert lines.body(items) == "\n".join(ours)  # the second time every tag set comes from the cache


def test_a_full_cache_is_emptied_and_the_lines_stay_right() -> None:
    lines = ReadingLines(max_cached=3)
    items = [StoredReading("site1", reading(sensor=f"s{i % 5}", time=T0 + timedelta(seconds=i), value=float(i)))
             for i in range(20)]

    assert [lines.line(item) for item in items] == [reading_point_line(item) for item in items]


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_value_that_is_not_finite_is_left_out(value: float) -> None:
    item = StoredReading("site1", Reading.model_construct(**{**dict(reading()), "value": value}))

    assert "value=" not in ReadingLines().line(item)
    assert ReadingLines().line(item) == reading_point_line(item)


def reference_line(measurement: str, tags: dict[str, str | None], fields: dict[str, FieldValue], ns: int) -> str:
    point = Point(measurement)
    for key, text in tags.items():
        point.tag(key, text)
    for key, value in fields.items():
        point.field(key, value)
    return str(point.time(ns, WritePrecision.NS).to_line_protocol())


AWKWARD_FIELDS: list[FieldValue] = [*[v for v in AWKWARD_VALUES if v is not None], math.nan, math.inf, 0, -7, 2**62,
                                    True, False, None, *[r for r in AWKWARD_REASONS if r is not None]]


@pytest.mark.parametrize("measurement", ["ledger", "health sensors,x", "chain_events"])
def test_any_point_serialises_exactly_like_point(measurement: str) -> None:
    for offset, unit in enumerate(AWKWARD_UNITS):
        tags = {"site": unit, "station": "st1", "channel": None, "kind": AWKWARD_UNITS[-1 - offset], "a b=": "c"}
        fields = {f"f{i} ,={offset}": value for i, value in enumerate(AWKWARD_FIELDS)}
        assert point_line(measurement, tags, fields, 1_800_000_000_123_456_789 + offset) == reference_line(
            measurement, tags, fields, 1_800_000_000_123_456_789 + offset)
    # no field with a value: no line, as Point gives
    assert point_line(measurement, {"site": "s"}, {"v": None, "w": math.nan}, 5) == "" == reference_line(
        measurement, {"site": "s"}, {"v": None, "w": math.nan}, 5)


def reference_health_lines(health: StationHealth) -> list[str]:
    """A report's lines as influxdb-client's `Point` writes its points, in `health_to_lines`' order."""
    ns = to_ns(health.time)
    station: dict[str, str | None] = {"site": health.site, "station": health.station}
    lines = [reference_line("health", station, {
        name: getattr(health, name) for name in type(health).model_fields
        if name not in ("schema_version", "site", "station", "time", "buffers", "sensors")}, ns)]
    lines += [reference_line("health_buffers", {**station, "channel": backlog.channel}, {
        "index": index, "unit": backlog.unit, "pending": backlog.pending, "oldest_age_s": backlog.oldest_age_s,
        "refusing": backlog.refusing}, ns) for index, backlog in enumerate(health.buffers)]
    for index, sensor in enumerate(health.sensors):
        lines.append(reference_line("health_sensors", {**station, "sensor": sensor.name}, {
            "index": index, "driver": sensor.driver, "kind": sensor.kind, "state": sensor.state,
            "errors_total": sum(sensor.errors.values()),
            "errors": json.dumps(sensor.errors, separators=(",", ":"), sort_keys=True),
            "variables": ",".join(sensor.variables),
            "available": int(sensor.available) if sensor.available is not None else None,
            "availability": sensor.availability, "last_error": sensor.last_error}, ns))
        lines += [reference_line("health_sensor_errors", {**station, "sensor": sensor.name, "kind": kind},
                                 {"count": count}, ns) for kind, count in sorted(sensor.errors.items())]
    return lines


@pytest.mark.parametrize("cache_size", [2, 100_000])
def test_a_stations_sensor_lines_follow_every_change_between_reports(cache_size: int,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A sensor's line is kept between a station's reports (`influx_health._SENSOR_LINES`): whatever changes from
    one report to the next, or when the cache is full, each report's lines are Point's."""
    from gateway.central.store import influx_health

    from .test_store_contract import as_health_fields
    from .test_store_health_contract import report

    monkeypatch.setattr(influx_health, "MAX_CACHED_SENSOR_LINES", cache_size)
    monkeypatch.setattr(influx_health, "_SENSOR_LINES", {})

    def sensor(name: str = "a", **changes: object) -> SensorHealth:
        fields: dict[str, object] = {"name": name, "driver": "gmp252", "kind": "polled", "state": "available",
                                     "available": True, "availability": 1.0, "errors": {}, "last_error": None,
                                     "variables": ["CO2"]}
        return SensorHealth.model_validate({**fields, **changes})

    steps = [[sensor(), sensor("b")], [sensor(), sensor("b")], [sensor(availability=0.0), sensor("b")],
             [sensor(availability=-0.0), sensor("b")], [sensor(availability=None), sensor("b", available=None)],
             [sensor(errors={"timeout": 1, "crc": 2}), sensor("b", available=False)],
             [sensor(errors={"crc": 2, "timeout": 1}), sensor("b", available=False)],
             [sensor(errors={"crc": 3, "timeout": 1}, last_error='no "reply"'), sensor("b", state="x, y=z")],
             [sensor("b"), sensor()], [sensor(variables=["CO2", "T"]), sensor("b", driver="d \\")],
             [sensor(variables=["CO2", "T_1"]), sensor("b", kind="stream")], [sensor()]]
    for i, sensors in enumerate(steps):
        for health in (report(i, sensors=sensors), report(i, station="plot-08", sensors=sensors)):
            assert influx_health.health_to_lines(health) == reference_health_lines(health), (i, health.station)
            assert influx_health.health_to_lines(as_health_fields(health)) == reference_health_lines(health)


def test_health_reports_and_ledger_items_serialise_like_point() -> None:
    from gateway.central.store.influx_health import health_to_lines
    from gateway.central.store.influx_ledger import ledger_to_line

    from .test_store_contract import as_health_fields, ledger_item
    from .test_store_health_contract import report, sparse

    rich = report(3, clock_offset_s=-2.5e-7, load_1m=0.1, daemon_cpu_share=1 / 3, disk_free_bytes=2**53 + 1)
    # every free-text field with the characters line protocol escapes (tags and strings), and a value ending in one
    awkward = report(4, daemon_version='0.1 "x",y=z\\', buffers=[
        ChannelBacklog(channel="raw", unit="files", pending=2**40, oldest_age_s=1e-7, refusing='Not, "authorized"\\'),
        ChannelBacklog(channel="health", unit="reports", pending=0)], sensors=[
        SensorHealth(name="a", driver='d "q" \\', kind="stream", state="x=y, z\nw\t", available=None,
                     availability=None, errors={"timeout": 3, "crc": 0}, last_error='no "reply"\\, = ',
                     variables=["CO2", "H2O"]),
        SensorHealth(name="b", driver="gmp252", kind="polled", state="available", available=False,
                     availability=0.0, errors={}, last_error=None, variables=[])])
    for health in (rich, awkward, sparse(1)):
        lines = health_to_lines(health)
        assert lines == reference_health_lines(health)
        assert health_to_lines(as_health_fields(health)) == lines  # the ingest's way: the report's fields, no model
    awkward_item = dataclasses.replace(ledger_item(3, payload=bytes(range(256)) * 4), channel="health x,y=z",
                                       set_aside='{"0": "said \\"hi\\" \\\\"}', content='c "q" \\',
                                       epoch="e=1, 2\\", data_start=-5, data_end=2**62)
    for item in (ledger_item(1, payload=b'{"x": 1}'), ledger_item(2, payload=None, previous=ledger_item(1)),
                 awkward_item):
        fields: dict[str, FieldValue] = {
            name: getattr(item, name) for name in ("epoch", "prev_digest", "key_id", "payload_sha256", "content",
                                                   "signature", "digest", "set_aside", "seq", "prev_seq", "prev_at",
                                                   "received", "data_start", "data_end")}
        if item.payload is not None:
            fields["payload"] = base64.b64encode(item.payload).decode("ascii")
        assert ledger_to_line(item) == reference_line("ledger", {"site": item.site, "station": item.station,
                                                                 "channel": item.channel}, fields, item.at)


@settings(max_examples=200, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True),
                          st.floats(min_value=-1e6, max_value=1e6).map(lambda v: round(v, 3))),
                min_size=1, max_size=40),
       st.lists(st.sampled_from([None, "warm-up", 'said "hi"']), min_size=1, max_size=3))
def test_a_batch_of_lines_is_what_point_writes_whatever_its_values(values: list[float | None],
                                                                    reasons: list[str | None]) -> None:
    """The lines of a batch are made in columns (orjson writes the numbers; `str` where it would write them
    otherwise): whatever the mix of values in a batch, each line is Point's."""
    items = []
    for i, value in enumerate(values):
        missing = value is None or not math.isfinite(value)
        items.append(StoredReading("site1" if i % 7 else "site2", Reading.model_construct(**{
            **dict(reading(sensor=f"s{i % 3}", time=T0 + timedelta(seconds=i), value=None if missing else value)),
            "value": value, "qc": QualityFlag.MISSING if missing else QualityFlag(i % 3),
            "qc_reason": reasons[i % len(reasons)]})))
    lines = ReadingLines()
    some_times = {id(item): to_ns(item.reading.time) for item in items[::2]}  # the caller has some of them

    assert lines.lines(items, some_times) == [reading_point_line(item) for item in items]
    assert lines.lines(items[:1]) == [reading_point_line(items[0])]


def test_the_usual_batch_goes_through_orjson_and_matches_point() -> None:
    """Values as stations send them (no exponent): the column is written by orjson, not by `str` per value."""
    items = [StoredReading("site1", reading(time=T0 + timedelta(seconds=i), value=v))
             for i, v in enumerate([400.0, 401.5, -0.0, 0.0001, 123456789.98765433, 1 / 3, 12.25, 1e15])]
    from gateway.central.store import lineprotocol

    assert lineprotocol.orjson.dumps([i.reading.value for i in items]).find(b"e") == -1
    assert ReadingLines().lines(items) == [reading_point_line(item) for item in items]


def test_a_batch_given_as_columns_serialises_exactly_like_its_readings() -> None:
    """The ingest hands the InfluxDB store a batch as columns (gateway/central/batchjson.py): the same lines."""
    lines = ReadingLines()
    readings = []
    for i, value in enumerate(AWKWARD_VALUES):
        for j, unit in enumerate(READING_UNITS):
            reason = AWKWARD_REASONS[(i + j) % len(AWKWARD_REASONS)]
            readings.append(Reading(
                station="st_1", sensor=f"probe{j}", variable="CO2_1_1_1", value=value, unit=unit,
                time=T0 + timedelta(microseconds=i * 1_000_003 + j), time_source=list(TimeSource)[j % 3],
                clock_synced=bool(i % 2), qc=QualityFlag.MISSING if value is None else QualityFlag((i + j) % 3),
                qc_reason=reason))
    batch = ReadingBatch(site="site.1", station="st_1", seq=3, sent=T0, readings=readings)
    columns = reading_columns(batch.model_dump_json())
    assert columns is not None

    expected = [reading_point_line(StoredReading("site.1", r)) for r in readings]
    assert lines.column_lines(columns) == expected  # every tag set new
    assert lines.column_lines(columns) == expected  # every one from the cache
    assert ReadingLines(max_cached=3).column_lines(columns) == expected  # the cache emptied on the way
