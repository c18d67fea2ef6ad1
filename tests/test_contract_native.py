"""`validate_batch_json` (the central service's validation of a readings batch in pydantic-core's own checks) agrees
with `ReadingBatch.model_validate_json` on every payload: the same batch when valid (values, time zones, fields
set), the same `ValidationError` text when not. The contract's own accept/refuse cases run through both in
tests/test_contract.py; here awkward values are drawn for every field of a batch and of a reading."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.central.batchjson import reading_columns
from gateway.central.healthjson import health_fields
from gateway.central.ingest import Malformed, parse_health, parse_health_fields
from gateway.central.store.base import to_ns
from gateway.central.store.health import HealthFields
from gateway.central.store.influx_health import health_to_lines
from gateway.contract import ReadingBatch, StationHealth, validate_batch_json
from gateway.contract.readings import _batch_fields_validator
from gateway.model import QualityFlag, Reading, TimeSource

T0 = datetime(2026, 11, 25, 10, 0, 0, 104512, tzinfo=UTC)


def good_batch(readings: int = 3) -> dict[str, Any]:
    batch = ReadingBatch(site="hainich", station="plot-07", seq=41, sent=T0, readings=[
        Reading(station="plot-07", sensor="gmp252-a", variable="CO2", value=400.5 + i, unit="umol mol-1",
                time=T0 + timedelta(seconds=i), time_source=TimeSource.GATEWAY, clock_synced=True,
                qc=QualityFlag.GOOD)
        for i in range(readings)])
    result: dict[str, Any] = json.loads(batch.model_dump_json())
    return result


TIMES = st.one_of(
    st.sampled_from(["2026-11-25T10:00:00Z", "2026-11-25T10:00:00.5Z", "2026-11-25T10:00:00.123456Z",
                     "2026-11-25T10:00:00.1234567Z", "2026-11-25T10:00:00+00:00", "2026-11-25t10:00:00Z",
                     "2026-11-25 10:00:00Z", "2026-11-25T24:00:00Z", "2026-11-25T23:59:60Z", "2026-02-29T10:00:00Z",
                     "2024-02-29T10:00:00Z", "0000-01-01T00:00:00Z", "0001-01-01T00:00:00Z",
                     "9999-12-31T23:59:59.999999Z", "2026-11-25T10:00Z", "2026-11-25T10:00:00.Z", "1795600800",
                     "2026-11-25T10:00:00.000000Z\n", "２０２６-11-25T10:00:00Z"]),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(
        lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")),
    st.integers(), st.floats(), st.none(), st.booleans())
IDENTIFIERS = st.one_of(
    st.sampled_from(["plot-07", "a", "p" * 64, "p" * 65, "plot 07", "-plot", "plot/07", "plot-07\n", "", "ｐlot",
                     "plot.07_a", "Ä"]),
    st.text(max_size=70), st.integers(), st.none())
NUMBERS: st.SearchStrategy[Any] = st.one_of(
    st.integers(min_value=-(10**400), max_value=10**400), st.floats(allow_nan=True),
    st.sampled_from(["12", "12.5", True, False, None, [1.0], {}, 1.0, 2.0, 3.0, 0, 3, 4, -1, 1e308]))
ANY_JSON = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=40))

READING_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "station": IDENTIFIERS, "sensor": IDENTIFIERS, "time": TIMES, "value": NUMBERS, "qc": NUMBERS,
    "variable": st.one_of(ANY_JSON, st.sampled_from(["CO2", "V" * 64, "V" * 65, "CO2-1", "", "CO2\n"])),
    "unit": st.one_of(ANY_JSON, st.just("u" * 33)),
    "time_source": st.one_of(ANY_JSON, st.sampled_from(list(TimeSource))),
    "clock_synced": st.one_of(ANY_JSON, st.sampled_from([1, 0, "true"])),
    "qc_reason": st.one_of(ANY_JSON, st.just("r" * 201)),
}
BATCH_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "site": IDENTIFIERS, "station": IDENTIFIERS, "seq": NUMBERS, "sent": TIMES,
    "schema_version": st.one_of(NUMBERS, st.just("1")),
}
ABSENT = object()


@st.composite
def payloads(draw: st.DrawFn) -> str:
    batch = good_batch()
    for _ in range(draw(st.integers(0, 3))):
        if draw(st.booleans()):
            key = draw(st.sampled_from([*BATCH_FIELDS, "readings", "extra"]))
            if key == "readings":
                batch["readings"] = draw(st.sampled_from([[], None, {}, "x"]))
                continue
            strategy = BATCH_FIELDS.get(key, ANY_JSON)
            target = batch
        else:
            if not isinstance(batch["readings"], list) or not batch["readings"]:
                continue
            target = draw(st.sampled_from(batch["readings"]))
            key = draw(st.sampled_from([*READING_FIELDS, "extra"]))
            strategy = READING_FIELDS.get(key, ANY_JSON)
        value = draw(st.one_of(strategy, st.just(ABSENT)))
        if value is ABSENT:
            target.pop(key, None)
        else:
            target[key] = value
    return json.dumps(batch, allow_nan=True)


def batch_with(reading: dict[str, Any] | None = None, **fields: Any) -> str:
    """The good batch's payload with `fields` of the batch and `reading` fields of its first reading replaced."""
    batch = good_batch()
    batch.update(fields)
    batch["readings"][0].update(reading or {})
    return json.dumps(batch, allow_nan=True)


def awkward_batches(test: Any) -> Any:
    """Explicit examples for the two property tests of a readings batch: every refusal (pydantic error type and
    place) that 1,500 drawn payloads reached and 500 did not in either test (docs/reliability.md, "Suite time
    (2026-12-06)"), so that 500 drawn payloads and these reach all of them."""
    for payload in (batch_with(sent="2026-11-25T23:59:60Z"), batch_with(sent="0000-01-01T00:00:00Z"),
                    batch_with(seq=1e308), batch_with({"value": float("nan")}), batch_with({"variable": "V" * 65}),
                    batch_with({"variable": ""}), batch_with({"time": "2026-11-25T23:59:60Z"})):
        test = example(payload)(test)
    return test


def outcome(validate: Any, payload: str) -> tuple[str, Any]:
    try:
        batch = validate(payload)
    except pydantic.ValidationError as exc:
        return "refused", str(exc)
    # everything that makes two batches the same to the code that uses them, time zones and fields set included
    readings = [(r, r.model_fields_set, r.time.tzinfo, type(r.qc), type(r.time_source)) for r in batch.readings]
    return "accepted", (batch, batch.model_fields_set, batch.sent.tzinfo, readings)


@settings(max_examples=500, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(payloads())
@awkward_batches
def test_the_native_path_accepts_and_refuses_what_the_model_does(payload: str) -> None:
    assert outcome(validate_batch_json, payload) == outcome(ReadingBatch.model_validate_json, payload)


@pytest.mark.parametrize("time", ["2026-11-25T10:00:00Z", "2026-11-25T10:00:00.5Z", "2026-11-25T10:00:00.12Z",
                                  "2026-11-25T10:00:00.123Z", "2026-11-25T10:00:00.1234Z",
                                  "2026-11-25T10:00:00.12345Z", "2026-11-25T10:00:00.123456Z",
                                  "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"])
def test_every_wire_time_is_read_natively_as_the_model_reads_it(time: str) -> None:
    payload = good_batch(1)
    payload["readings"][0]["time"] = payload["sent"] = time
    text = json.dumps(payload)
    _batch_fields_validator().validate_json(text)  # taken by the native checks, not left to the model
    assert outcome(validate_batch_json, text) == outcome(ReadingBatch.model_validate_json, text)


def test_a_valid_batch_is_validated_by_pydantic_core_alone() -> None:
    """The speed of the central ingest rests on this: a valid batch passes the native checks (no Python call per
    field), and a bad one is refused there by pydantic-core's own constraint before the model is asked."""
    payload = good_batch()
    payload["readings"][1]["value"], payload["readings"][1]["qc"] = None, int(QualityFlag.MISSING)
    payload["readings"][2]["qc_reason"] = "warm-up"
    fields = _batch_fields_validator().validate_json(json.dumps(payload))
    assert [type(r) for r in fields["readings"]] == [Reading] * 3
    payload["readings"][0]["station"] = "plot 07"
    with pytest.raises(pydantic.ValidationError) as native:
        _batch_fields_validator().validate_json(json.dumps(payload))
    assert native.value.errors()[0]["type"] == "string_pattern_mismatch"
    with pytest.raises(pydantic.ValidationError) as error:
        validate_batch_json(json.dumps(payload))
    assert "'plot 07' is not a valid identifier" in str(error.value)  # the model's words, naming the fix


def test_a_value_that_does_not_match_its_flag_is_refused_with_the_models_words() -> None:
    payload = good_batch()
    payload["readings"][2]["value"] = None
    _batch_fields_validator().validate_json(json.dumps(payload))  # the cross-field rule is checked after it
    with pytest.raises(pydantic.ValidationError, match="value must be null exactly when qc is 3"):
        validate_batch_json(json.dumps(payload))


def python_validators(schema: Any) -> list[str]:
    """The Python validators left in a core schema (but `datetime.fromisoformat`, pydantic-core's own parse of a
    time text), by name."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            function = node.get("function")
            if isinstance(function, dict) and function.get("function") != datetime.fromisoformat:
                found.append(getattr(function.get("function"), "__qualname__", repr(function)))
            for key, value in node.items():
                if key not in ("cls", "serialization", "metadata"):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(schema)
    return found


def test_no_python_validator_is_left_in_the_native_checks() -> None:
    """A Python validator added to `Reading` or `ReadingBatch` stays correct on the native path (it is kept there
    as it is) but costs a Python call per reading: `gateway.model.native_schema` should learn its native form."""
    from gateway.model import native_schema

    schema = native_schema(ReadingBatch.__pydantic_core_schema__, drop=frozenset({"Reading._missing_iff_no_value"}))
    assert python_validators(schema) == []


# --- the central service's column checks (gateway/central/batchjson.py) -------------------------------------------


def columns_outcome(payload: str) -> tuple[str, Any] | None:
    """What the column checks make of a payload, in the model's terms; None when they leave it to the model."""
    columns = reading_columns(payload)
    if columns is None:
        return None
    readings = [(station, sensor, variable, value, type(value), unit, source, synced, qc, reason, ns)
                for station, sensor, variable, value, unit, source, synced, qc, reason, ns in zip(
                    columns.stations, columns.sensors, columns.variables, columns.values, columns.units,
                    columns.time_sources, columns.clock_synced, columns.qcs, columns.qc_reasons, columns.times_ns,
                    strict=True)]
    return "accepted", (columns.site, columns.station, columns.seq, columns.sent, columns.sent.tzinfo, readings,
                        (columns.first_ns, columns.last_ns))


def model_columns(payload: str) -> tuple[str, Any]:
    try:
        batch = ReadingBatch.model_validate_json(payload)
    except pydantic.ValidationError as exc:
        return "refused", str(exc)
    readings = [(r.station, r.sensor, r.variable, r.value, type(r.value), r.unit, r.time_source.value,
                 r.clock_synced, int(r.qc), r.qc_reason, to_ns(r.time)) for r in batch.readings]
    stamps = [to_ns(r.time) for r in batch.readings]
    return "accepted", (batch.site, batch.station, batch.seq, batch.sent, batch.sent.tzinfo, readings,
                        (min(stamps), max(stamps)))


@settings(max_examples=500, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(payloads())
@awkward_batches
def test_the_column_checks_take_only_what_the_model_takes_and_read_it_as_the_model_does(payload: str) -> None:
    ours = columns_outcome(payload)
    if ours is not None:
        assert ours == model_columns(payload)
        assert reading_columns(payload).batch() == ReadingBatch.model_validate_json(payload)  # type: ignore[union-attr]


@pytest.mark.parametrize("change", [
    {}, {"value": None, "qc": 3}, {"qc_reason": "warm-up"}, {"qc_reason": None}, {"value": 400},
    {"time": "2026-11-25T10:00:00Z"}, {"time": "2026-11-25T10:00:00.5Z"}, {"time_source": "board"},
    {"clock_synced": False, "qc": 2}, {"variable": "V" * 64}, {"unit": "u" * 32}, {"qc_reason": "r" * 200}])
def test_a_valid_batch_is_taken_by_the_column_checks(change: dict[str, Any]) -> None:
    """The speed of the central ingest rests on this: the batches stations send pass the column checks, so no
    model is made of their readings."""
    payload = good_batch()
    payload["readings"][1].update(change)
    if "qc_reason" in change and change["qc_reason"] is None:
        del payload["readings"][1]["qc_reason"]  # the optional field left out
    text = json.dumps(payload)
    assert reading_columns(text) is not None
    assert columns_outcome(text) == model_columns(text)


# --- a health report checked without a model (gateway/central/healthjson.py) --------------------------------------


def good_report() -> dict[str, Any]:
    from .central.test_store_health_contract import example

    return example()


def model_fields(report: StationHealth) -> dict[str, Any]:
    """A model's fields as `HealthFields` holds them: plain dicts and lists, every field."""
    fields = dict(vars(report))
    fields["buffers"] = [dict(vars(backlog)) for backlog in report.buffers]
    fields["sensors"] = [dict(vars(sensor)) for sensor in report.sensors]
    return fields


def typed(value: Any) -> Any:
    """A value with the type of every number in it, so that 1 and 1.0 (or True) are told apart."""
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed(item) for item in value]
    return (type(value), value, getattr(value, "tzinfo", None))


def health_outcome(parse: Any, payload: str) -> tuple[str, Any]:
    """What the central service makes of a health payload on `sinkwatch/v1/hainich/plot-07/health`: the report's
    fields with their types (and their lines), or the reason and words it is dead-lettered with."""
    try:
        report = parse("hainich", "plot-07", payload.encode())
    except Malformed as exc:
        return "refused", (exc.reason, exc.problem)
    fields = report.fields if isinstance(report, HealthFields) else model_fields(report)
    return "accepted", (typed(fields), report.seq, report.time, report.time.tzinfo, health_to_lines(report))


HEALTH_TEXTS = st.one_of(ANY_JSON, st.sampled_from(["", "x" * 64, "x" * 65, "x" * 200, "x" * 201, "ok\n", 'a "q" \\']))
HEALTH_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "site": IDENTIFIERS, "station": st.one_of(IDENTIFIERS, st.just("plot-08")), "seq": NUMBERS, "time": TIMES,
    "schema_version": st.one_of(NUMBERS, st.just("1")), "daemon_version": HEALTH_TEXTS,
    "clock_synced": st.one_of(ANY_JSON, st.sampled_from([1, 0, "true"])),
    **{name: NUMBERS for name in ("interval_s", "uptime_s", "host_uptime_s", "clock_offset_s", "clock_max_error_s",
                                  "disk_free_bytes", "cpu_temperature_c", "load_1m", "cpu_count", "daemon_cpu_share",
                                  "daemon_rss_bytes", "supply_voltage_v", "reports_dropped")},
    "buffers": st.sampled_from([[], None, {}, "x", [{}] * 17]),
    "sensors": st.sampled_from([[], None, {}, "x"]),
}
BUFFER_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "channel": st.one_of(ANY_JSON, st.sampled_from(["raw", "status", "Readings"])),
    "unit": st.one_of(ANY_JSON, st.sampled_from(["files", "bytes"])), "pending": NUMBERS, "oldest_age_s": NUMBERS,
    "refusing": HEALTH_TEXTS,
}
SENSOR_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "name": IDENTIFIERS, "driver": HEALTH_TEXTS, "kind": st.one_of(ANY_JSON, st.sampled_from(["stream", "poll"])),
    "state": HEALTH_TEXTS, "available": st.one_of(ANY_JSON, st.sampled_from([1, 0, "true"])),
    "availability": st.one_of(NUMBERS, st.sampled_from([1.0000001, -0.0, 0.5])), "last_error": HEALTH_TEXTS,
    "errors": st.one_of(st.dictionaries(st.one_of(st.sampled_from(["timeout", "bad kind", "k" * 65, "", "crc.1"]),
                                                  st.text(max_size=5)), NUMBERS, max_size=3), ANY_JSON),
    "variables": st.one_of(st.lists(st.one_of(st.sampled_from(["CO2", "CO2-1", "", "V" * 65]), ANY_JSON),
                                    max_size=3), st.just(["CO2"] * 501), ANY_JSON),
}


HEALTH_DRAWS = 300  # with HEALTH_REFUSALS: the refusals, lines and branches of 1,500 draws


@st.composite
def health_payloads(draw: st.DrawFn) -> str:
    report = good_report()
    for _ in range(draw(st.integers(0, 3))):
        place = draw(st.sampled_from(["report", "buffer", "sensor"]))
        if place == "report":
            target, fields = report, HEALTH_FIELDS
        elif place == "buffer" and isinstance(report.get("buffers"), list) and report["buffers"]:
            target, fields = draw(st.sampled_from(report["buffers"])), BUFFER_FIELDS
        elif place == "sensor" and isinstance(report.get("sensors"), list) and report["sensors"]:
            target, fields = draw(st.sampled_from(report["sensors"])), SENSOR_FIELDS
        else:
            continue
        if not isinstance(target, dict):
            continue
        key = draw(st.sampled_from([*fields, "extra"]))
        value = draw(st.one_of(fields.get(key, ANY_JSON), st.just(ABSENT)))
        if value is ABSENT:
            target.pop(key, None)
        else:
            target[key] = value
    return json.dumps(report, allow_nan=True)


def assert_health_outcomes_agree(payload: str) -> None:
    """Whatever the native checks take, the model takes with the same values (and lines); whatever they refuse is
    refused with the model's reason and words, naming the field and the fix."""
    assert health_outcome(parse_health_fields, payload) == health_outcome(parse_health, payload)
    fields = health_fields(payload)
    if fields is not None:
        assert typed(fields.fields) == typed(model_fields(StationHealth.model_validate_json(payload)))


@settings(max_examples=HEALTH_DRAWS, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(health_payloads())
def test_a_health_report_is_taken_or_refused_as_the_model_does(payload: str) -> None:
    assert_health_outcomes_agree(payload)


# Every refusal (pydantic error type and place; list indices and error-count keys folded) that 1,500 drawn reports
# reached, each by one changed field of the good report (`ABSENT`: the field left out), found by running the 1,500
# draws and diffing their payloads against the good report (docs/reliability.md, "Suite time (2026-12-06)"). The
# outcome of each is the model's, compared as the property test compares it; the draws above add combinations.
HEALTH_REFUSALS: list[tuple[Any, str, Any]] = [
    ("report", 'buffers', 'x'),
    ("report", 'buffers', [{}] * 17),
    ("report", 'clock_max_error_s', 10**400),
    ("report", 'clock_max_error_s', -1.1069662721050803e-14),
    ("report", 'clock_max_error_s', '12'),
    ("report", 'clock_offset_s', -(10**400)),
    ("report", 'clock_offset_s', True),
    ("report", 'clock_synced', None),
    ("report", 'clock_synced', ABSENT),
    ("report", 'cpu_count', -9.366267047408318e-258),
    ("report", 'cpu_count', -1.0015790706411074e+215),
    ("report", 'cpu_count', -(10**400)),
    ("report", 'cpu_count', True),
    ("report", 'cpu_temperature_c', -(10**400)),
    ("report", 'cpu_temperature_c', '12'),
    ("report", 'daemon_cpu_share', -(10**400)),
    ("report", 'daemon_cpu_share', -2.0130045572207162e-293),
    ("report", 'daemon_cpu_share', '12.5'),
    ("report", 'daemon_rss_bytes', -(10**400)),
    ("report", 'daemon_rss_bytes', -1.1069662721050803e-14),
    ("report", 'daemon_rss_bytes', 9.699734131417727e+269),
    ("report", 'daemon_rss_bytes', '12'),
    ("report", 'daemon_rss_bytes', [1.0]),
    ("report", 'daemon_version', True),
    ("report", 'daemon_version', ''),
    ("report", 'daemon_version', ABSENT),
    ("report", 'disk_free_bytes', -(10**400)),
    ("report", 'disk_free_bytes', 6.805676308016497e-213),
    ("report", 'disk_free_bytes', '12'),
    ("report", 'extra', 264),
    ("report", 'host_uptime_s', True),
    ("report", 'host_uptime_s', -(10**400)),
    ("report", 'interval_s', -2.775364700290607e+16),
    ("report", 'interval_s', [1.0]),
    ("report", 'interval_s', ABSENT),
    ("report", 'load_1m', -1.1985526129448452e+235),
    ("report", 'load_1m', '12'),
    ("report", 'load_1m', -(10**400)),
    ("report", 'reports_dropped', -1),
    ("report", 'reports_dropped', 7.817908161573198e-287),
    ("report", 'reports_dropped', [1.0]),
    ("report", 'reports_dropped', -2.118410249269723e+53),
    ("report", 'schema_version', 0),
    ("report", 'schema_version', 10**400),
    ("report", 'sensors', None),
    ("report", 'seq', '12'),
    ("report", 'seq', [1.0]),
    ("report", 'seq', -0.5),
    ("report", 'seq', -(10**400)),
    ("report", 'seq', -2.0551978349924313e+307),
    ("report", 'site', ABSENT),
    ("report", 'site', 'plot 07'),
    ("report", 'site', 1),
    ("report", 'station', 'plot/07'),
    ("report", 'station', 2),
    ("report", 'station', ABSENT),
    ("report", 'supply_voltage_v', 10**400),
    ("report", 'supply_voltage_v', '12.5'),
    ("report", 'time', '2026-02-29T10:00:00Z'),
    ("report", 'time', False),
    ("report", 'time', ABSENT),
    ("report", 'uptime_s', True),
    ("report", 'uptime_s', ABSENT),
    ("report", 'uptime_s', 10**400),
    (("buffers", 0), 'channel', None),
    (("buffers", 0), 'channel', ABSENT),
    (("buffers", 0), 'extra', True),
    (("buffers", 0), 'oldest_age_s', True),
    (("buffers", 0), 'oldest_age_s', -(10**400)),
    (("buffers", 2), 'oldest_age_s', -2.4310629892004725e-176),
    (("buffers", 0), 'pending', 2.225073858507203e-309),
    (("buffers", 1), 'pending', ABSENT),
    (("buffers", 1), 'pending', {}),
    (("buffers", 1), 'pending', '12'),
    (("buffers", 1), 'pending', -(10**400)),
    (("buffers", 2), 'pending', 2.84943809751096e+153),
    (("buffers", 0), 'refusing', True),
    (("buffers", 1), 'unit', None),
    (("buffers", 1), 'unit', ABSENT),
    (("sensors", 0), 'availability', -3.6431515230547852e-211),
    (("sensors", 1), 'availability', {}),
    (("sensors", 1), 'availability', 1.0000001),
    (("sensors", 1), 'availability', '12'),
    (("sensors", 0), 'available', -1.5924815073888222e-174),
    (("sensors", 1), 'available', ABSENT),
    (("sensors", 0), 'driver', ABSENT),
    (("sensors", 0), 'driver', 5.824766326644982e+16),
    (("sensors", 0), 'driver', 'x' * 201),
    (("sensors", 1), 'driver', ''),
    (("sensors", 0), 'errors', {'': -(10**400), 'k' * 65: [1.0], 'crc.1': 3.0}),
    (("sensors", 0), 'errors', -10000000.0),
    (("sensors", 1), 'errors', {'crc.1': -2.9420686979666326e-47, '\x9f6\U0010a0c1î\U00075c36': -(10**400)}),
    (("sensors", 0), 'extra', -509),
    (("sensors", 0), 'kind', ABSENT),
    (("sensors", 0), 'kind', False),
    (("sensors", 0), 'last_error', 5.824766326644982e+16),
    (("sensors", 1), 'last_error', 'x' * 201),
    (("sensors", 0), 'name', None),
    (("sensors", 1), 'name', ABSENT),
    (("sensors", 1), 'name', '-plot'),
    (("sensors", 0), 'state', -5.97109864181472e-259),
    (("sensors", 0), 'state', ABSENT),
    (("sensors", 0), 'state', 'x' * 200),
    (("sensors", 0), 'state', ''),
    (("sensors", 0), 'variables', [False, 31510586213, 'Ã']),
    (("sensors", 0), 'variables', ['CO2'] * 501),
    (("sensors", 1), 'variables', None),
]


@pytest.mark.parametrize(("place", "key", "value"), HEALTH_REFUSALS)
def test_a_health_field_with_an_awkward_value_is_told_apart_as_the_model_tells_it(place: Any, key: str,
                                                                                   value: Any) -> None:
    report = good_report()
    target = report if place == "report" else report[place[0]][place[1]]
    if value is ABSENT:
        del target[key]
    else:
        target[key] = value
    assert_health_outcomes_agree(json.dumps(report, allow_nan=True))


@pytest.mark.parametrize(("change", "taken_natively", "words"), [
    ({}, True, None),
    ({"seq": None}, True, None),
    ({"time": "2026-11-25T10:00:00Z"}, True, None),
    ({"disk_free_bytes": 2**62, "clock_offset_s": -2.5e-7, "interval_s": 60}, True, None),
    ({"sensors": [], "buffers": []}, True, None),
    ({"reports_dropped": 3.0}, False, None),  # the model's lax int: taken, by the model
    ({"time": "2026-11-25T24:00:00Z"}, False, "time: Input should be a valid datetime"),  # left to the model
    ({"extra": 1}, False, "extra: Extra inputs are not permitted"),
    ({"seq": -1}, False, "seq: Input should be greater than or equal to 0"),
    ({"interval_s": 0}, False, "interval_s: Input should be greater than 0"),
    ({"uptime_s": "12"}, False, "uptime_s: Value error, must be a number, not str '12'"),
    ({"clock_synced": 1}, False, "clock_synced: Input should be a valid boolean"),
    ({"cpu_count": 0}, False, "cpu_count: Input should be greater than or equal to 1"),
    ({"load_1m": 1e400}, False, "load_1m: Input should be a finite number"),
    ({"site": "hai nich"}, False, "site: Value error, 'hai nich' is not a valid identifier"),
    ({"station": "plot-08"}, True, "health report says site 'hainich' station 'plot-08' but was published for"),
    ({"time": "2026-11-25T10:00:00+01:00"}, False, "is not a UTC time like 2026-11-25T10:00:00.000000Z"),
    ({"time": "0001-01-01T00:00:00Z"}, False, "is outside the time range a store can hold"),
    ({"schema_version": 2}, False, "schema_version: Input should be 1"),
    ({"buffers": [{"channel": "nope", "unit": "files", "pending": 0}]}, False, "buffers.0.channel: Input should be"),
    ({"buffers": [{"channel": "raw", "unit": "files", "pending": -1}]}, False,
     "buffers.0.pending: Input should be greater than or equal to 0"),
    ({"sensors": [{"name": "a", "driver": "d", "kind": "polled", "state": "s", "available": None,
                   "errors": {"bad kind": 1}}]}, False, "sensors.0.errors.bad kind.[key]: String should match pattern"),
    ({"sensors": [{"name": "a", "driver": "d", "kind": "polled", "state": "s", "available": None,
                   "availability": 1.5}]}, False, "sensors.0.availability: Input should be less than or equal to 1"),
    ({"sensors": [{"name": "a", "driver": "d", "kind": "polled", "state": "s"}]}, False,
     "sensors.0.available: Field required"),
])
def test_awkward_health_reports_are_told_apart_as_the_model_tells_them(change: dict[str, Any], taken_natively: bool,
                                                                       words: str | None) -> None:
    text = json.dumps({**good_report(), **change})
    assert (health_fields(text) is not None) == taken_natively
    ours, models = health_outcome(parse_health_fields, text), health_outcome(parse_health, text)
    assert ours == models
    if words is None:
        assert ours[0] == "accepted"
    else:
        assert ours[0] == "refused" and words in ours[1][1], ours


@pytest.mark.parametrize("payload", [b"", b"not json", b"[]", b'{"site": "hainich"}', b"\xff"])
def test_a_health_payload_that_is_no_report_is_refused_with_the_models_words(payload: bytes) -> None:
    with pytest.raises(Malformed) as ours:
        parse_health_fields("hainich", "plot-07", payload)
    with pytest.raises(Malformed) as models:
        parse_health("hainich", "plot-07", payload)
    assert (ours.value.reason, ours.value.problem) == (models.value.reason, models.value.problem)


def test_no_python_validator_is_left_in_the_native_health_checks() -> None:
    """The speed of a health report rests on this: a Python validator added to `StationHealth` or its parts stays
    correct on the native path but costs a call per field; `gateway.model.native_schema` should learn its form."""
    from gateway.model import native_schema

    assert python_validators(native_schema(StationHealth.__pydantic_core_schema__)) == []
