"""Bytes that must never change, made by fast paths and compared here with the definitions they replaced.

The digests a run keeps of its inputs are verified later against runs already stored (`sinkwatch audit`, the
report's provenance): a record's canonical text written without the model's dump, times formatted a column at a
time, window means' lines joined in one text. The stored rows of budget, soil and stems tables are the text
`json.dumps` makes of their cleaned cells: `json_rows` writes a column of floats by orjson where its text is repr's.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import struct
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.central.store.base import SeriesPoint
from gateway.central.store.budget import WindowMean, clean, json_rows
from gateway.central.store.provenance import (
    _DIGESTED_FIELDS,
    InputRecorder,
    flux_record_digest,
    flux_record_digests,
    lines_sha256,
    means_digest,
    points_digest,
    records_digest,
)
from gateway.contract import FluxRecord
from gateway.model import format_time, format_times

from .test_store_provenance_contract import ServedItems

AWKWARD_FLOATS = [0.0, -0.0, 5e-324, -5e-324, 1e-5, 1e16, 1e22, 1.7976931348623157e308, -1e-300, 0.1 + 0.2,
                  123456789.123456789, 2.0, -3.0]


def canonical_text(data: Any) -> str:
    """The definition: JSON with sorted keys, no spaces, UTF-8 as is, no NaN; -0.0 as 0.0."""
    def plain(value: Any) -> Any:
        if isinstance(value, float):
            return 0.0 if value == 0 else value
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value
    return json.dumps(plain(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def reference_record_digest(record: FluxRecord) -> str:
    return hashlib.sha256(canonical_text(record.model_dump(mode="json", exclude={"seq"})).encode()).hexdigest()


def reference_records_digest(records: list[FluxRecord]) -> str:
    ordered = sorted(records, key=lambda r: (r.end, r.settings_hash, r.engine_version, r.site))
    return lines_sha256(f"{r.model_dump(mode='json')['end']} {reference_record_digest(r)}" for r in ordered)


def number(value: float | None) -> str:
    return "null" if value is None or not math.isfinite(value) else repr(float(value) + 0.0)


def reference_means_digest(means: list[WindowMean]) -> str:
    from gateway.central.store.base import to_ns

    return lines_sha256(f"{to_ns(m.start)} {number(m.mean)} {m.count}" for m in sorted(means, key=lambda m: m.start))


def reference_points_digest(points: list[SeriesPoint]) -> str:
    from gateway.central.store.base import to_ns

    return lines_sha256(f"{to_ns(p.time)} {number(p.value)} {'null' if p.qc is None else int(p.qc)}" for p in points)


times = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                     timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                                                timezone(timedelta(hours=-11))]))
TEXTS = ["", '"quoted"\\back', "\u2028\u2029", "\x00\x1f\x7f", "µmol m⁻² s⁻¹", "🌲", "é", "a\tb\nc", "\ud7ff\ue000"]
FLAGS = ["FC_SSITC_TEST", "H_SSITC_TEST", "N_RECORDS", "CO2_NUM_SPIKES", "CO2_TLAG_DEFAULT"]


def drawn_record(rng: random.Random) -> FluxRecord:
    """A record with what the canonical text must get right: awkward and random floats, None, flags and counts,
    unicode and escapes in its reasons, any time zone and microseconds, years with fewer than four digits."""
    def number() -> float | None:
        kind = rng.random()
        if kind < 0.1:
            return None
        if kind < 0.4:
            return rng.choice(AWKWARD_FLOATS)
        if kind < 0.6:
            return struct.unpack("<d", rng.randbytes(8))[0] if rng.random() < 0.5 else rng.uniform(-1e3, 1e3)
        return rng.uniform(-1e6, 1e6) * 10.0 ** rng.randint(-30, 30)

    year = rng.choice([rng.randint(1, 999), rng.randint(1000, 9998), 2024])
    zone = rng.choice([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-11))])
    start = datetime(year, rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23), rng.randint(0, 59),
                     rng.randint(0, 59), rng.choice([0, rng.randint(0, 999_999)]), tzinfo=zone)
    values: dict[str, Any] = {}
    for _ in range(rng.randint(0, 14)):
        value = number()
        values["".join(rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_", k=rng.randint(0, 8))).join("FX")
               ] = value if value is None or math.isfinite(value) else None
    for name in rng.sample(FLAGS, rng.randint(0, 3)):
        values[name] = rng.choice([None, 0, 1, 2, rng.randint(0, 2**40)])
    reasons = ["".join(rng.choices(TEXTS, k=rng.randint(1, 3))) + chr(rng.randint(32, 0xD7FF))
               for _ in range(rng.randint(0, 3))]
    return FluxRecord(
        site=rng.choice(["s", "hainich", "Site.1_b-2"]), station=rng.choice(["st1", "plot-07", "A.b_c"]),
        start=start, end=start + rng.choice([timedelta(minutes=30), timedelta(microseconds=1), timedelta(days=1)]),
        status=rng.choice(["ok", "partial", "failed"]), reasons=reasons,
        engine_version=rng.choice(["sinkwatch-ec 1.4.0", " ~!\"#$%&'()*+,-./", "e"]),
        settings_hash=rng.choice(["0123abcd", "deadbeefdeadbeef"]), values=values,
        seq=rng.choice([None, rng.randint(0, 10**6)]))


def test_the_fast_digest_knows_every_field_the_model_has() -> None:
    # a new field makes the fast path step aside (and this test fail until it is written there)
    assert tuple(name for name in FluxRecord.model_fields if name != "seq") == _DIGESTED_FIELDS


@pytest.mark.parametrize("seed", range(4))
def test_record_digests_are_those_of_the_canonical_definition(seed: int) -> None:
    rng = random.Random(seed)
    records = [drawn_record(rng) for _ in range(300)]
    expected = [reference_record_digest(r) for r in records]

    assert flux_record_digests(records) == expected
    assert [flux_record_digest(r) for r in records] == expected
    assert records_digest(records) == reference_records_digest(records)
    modern = [r for r in records if r.start.year >= 1000]  # the column-wise time texts, not the fallback
    assert records_digest(modern) == reference_records_digest(modern)
    assert flux_record_digests(modern) == [reference_record_digest(r) for r in modern]


def test_negative_zero_huge_ints_and_exponents_a_copy_may_carry_are_digested_as_defined() -> None:
    # model_copy does not validate: a record may carry -0.0 beside 0 (a flag) and floats that look whole
    start = datetime(2024, 6, 1, 12, tzinfo=UTC)
    record = FluxRecord(site="s", station="st1", start=start, end=start + timedelta(minutes=30), status="ok",
                        engine_version="sinkwatch-ec 1", settings_hash="0123abcd", values={"FC": 1.0})
    copies = [record.model_copy(update={"values": values}) for values in (
        {"FC": -0.0, "FC_SSITC_TEST": 0, "H": None}, {"FC": 0.0, "LE": 2.0, "N_RECORDS": 0},
        {"FC": -1e-320, "ZL": -0.0}, {}, {"N_RECORDS": 2**70, "FC": 1.5}, {"FC": 1e-5, "H": 1e16, "LE": 0.5})]

    assert flux_record_digests(copies) == [reference_record_digest(r) for r in copies]
    assert records_digest(copies) == reference_records_digest(copies)
    assert flux_record_digests(copies[:1]) == flux_record_digests([copies[0].model_copy(
        update={"values": {"FC": 0.0, "FC_SSITC_TEST": 0, "H": None}})])


@settings(max_examples=50, deadline=None)
@given(st.lists(times | st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31),
                                     timezones=st.just(UTC)), max_size=20))
def test_times_formatted_a_column_at_a_time_are_format_time(values: list[datetime]) -> None:
    assert format_times(values) == [format_time(v) for v in values]


def test_times_outside_the_column_writers_years_are_written_as_format_time_writes_them() -> None:
    early = [datetime(2024, 1, 1, tzinfo=UTC), datetime(999, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
             datetime(1, 1, 1, tzinfo=UTC)]
    naive = [datetime(2024, 1, 1, 12), datetime(2024, 7, 1, 12, 0, 0, 5)]  # format_time: local time

    assert format_times(early) == [format_time(v) for v in early]
    assert format_times(naive) == [format_time(v) for v in naive]
    assert format_times([]) == []


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.datetimes(min_value=datetime(1678, 1, 1), max_value=datetime(2262, 1, 1),
                                       timezones=st.just(UTC)),
                          st.sampled_from([*AWKWARD_FLOATS, math.nan, math.inf, -math.inf]) | st.floats(),
                          st.integers(0, 10**6)), max_size=30))
def test_window_means_digest_is_the_line_by_line_definition(items: list[tuple[datetime, float, int]]) -> None:
    means = [WindowMean(t, v, n) for t, v, n in items]

    assert means_digest(means) == reference_means_digest(means)


def bit_pattern_floats(rng: random.Random, n: int) -> list[float | None]:
    """Any double at all (NaN and ±inf included), the neighbours of the bounds where orjson's form and repr's
    part, and None."""
    bounds = [b * s for b in (1e-4, 1e16) for s in (1, -1)]
    near = [math.nextafter(b, t) for b in bounds for t in (0.0, math.inf, -math.inf)] + bounds
    return [None if rng.random() < 0.05 else rng.choice(near) if rng.random() < 0.1
            else struct.unpack("<d", rng.randbytes(8))[0] if rng.random() < 0.5
            else rng.uniform(-1, 1) * 10.0 ** rng.uniform(-8, 20) for _ in range(n)]


@pytest.mark.parametrize("seed", range(3))
def test_table_rows_of_any_floats_are_the_bytes_json_dumps_writes(seed: int) -> None:
    rng = random.Random(seed)
    n = 4000
    columns = [bit_pattern_floats(rng, n) for _ in range(5)]

    assert json_rows(columns, n) == [json.dumps([clean(c[i]) for c in columns], allow_nan=False) for i in range(n)]


@pytest.mark.parametrize("seed", range(2))
def test_series_lines_of_any_numbers_are_the_line_by_line_definition(seed: int) -> None:
    # InputRecorder hashes a call's lines as one text, the numbers a column at a time (column_texts, -0.0 as 0.0)
    rng = random.Random(seed)
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    values = [*bit_pattern_floats(rng, 3000), -0.0, 0.0, 3, True, None]
    points = [SeriesPoint(t0 + timedelta(seconds=10 * i, microseconds=i), v, rng.choice([None, 0, 1, 2, 3]))
              for i, v in enumerate(values)]
    floats_only = [p for p in points if p.value is None or type(p.value) is float]
    means = [WindowMean(p.time, math.nan if p.value is None else float(p.value), i) for i, p in enumerate(points)]

    assert points_digest(points) == reference_points_digest(points)
    recorder = InputRecorder(ServedItems(points, means))
    recorder.query_series("st1", "CO2", t0, t0 + timedelta(days=1), site="s", sensor="g")
    recorder.window_means("st1", "CO2", t0, t0 + timedelta(days=1), timedelta(minutes=30), site="s", sensor="g")
    assert recorder.inputs["s/g/CO2 readings"]["sha256"] == reference_points_digest(points)
    assert recorder.inputs["s/g/CO2 means 1800s"]["sha256"] == reference_means_digest(means)
    assert means_digest(means) == reference_means_digest(means)
    recorder = InputRecorder(ServedItems(floats_only, means))
    recorder.query_series("st1", "CO2", t0, t0 + timedelta(days=1), site="s", sensor="g")
    assert recorder.inputs["s/g/CO2 readings"]["sha256"] == reference_points_digest(floats_only)
