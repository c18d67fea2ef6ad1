"""The packed daily copy of the flux records (gateway/central/store/influx_fluxpack.py): the API's flux bodies
(JSON, CSV, AmeriFlux; every variable, a few, with duplicates and unknown ones; one result set or all) are byte for
byte the same whether whole days come from the copy or every record from the records, after the job, after a late
record, a recomputed record and a new result set in a packed day, with partial days at the range's ends, a job
killed half-way and points of another packing. Against a real influxd."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.central.access import AccessControl
from gateway.central.api import create_app
from gateway.central.store import InfluxStore
from gateway.central.store.base import to_ns
from gateway.central.store.influx_fluxpack import (
    DAY_NS,
    PACK_DIRTY_MEASUREMENT,
    PACK_MEASUREMENT,
    PACK_STATE_MEASUREMENT,
)
from gateway.contract import FluxRecord
from gateway.model import format_time
from gateway.testing.services import InfluxInstance

from .helpers import flux_record
from .test_store_packed_reads import AWKWARD

pytestmark = pytest.mark.integration

DEV = AccessControl.development()
DAY0 = datetime(2026, 10, 1, tzinfo=UTC)
DAY = timedelta(days=1)
DAYS = 8
NOW = DAY0 + 40 * DAY  # every day of the data is old enough to be packed
HASH_A, HASH_B = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"
REASONS = [['lag "at limit"'], ["a \\ b", 'c\\"d'], ["ok, <fine> & 80 %"]]


def record(i: int, settings_hash: str = HASH_A, engine_version: str = "sinkwatch-ec 0.1.0",
           scale: float = 1.0) -> FluxRecord:
    """The i-th half-hour's record: awkward numbers, integers, nulls, records lacking variables, reasons."""
    values: dict[str, int | float | None] = {
        "FC": AWKWARD[i % len(AWKWARD)], "H": (100.0 + i / 8) * scale, "LE": float(i), "NEE": i / 3 if i % 6 else None,
        "FC_SSITC_TEST": i % 3, "N_RECORDS": 36000, "TAU": -0.0 if i % 4 == 0 else None, "USTAR": 0.1 * (i % 9)}
    if i % 7 == 0:  # a record of fewer variables
        values = {"FC": values["FC"], "H": values["H"], "N_RECORDS": 18000}
    return flux_record(end=DAY0 + (i + 1) * timedelta(minutes=30), settings_hash=settings_hash,
                       engine_version=engine_version, status="partial" if i % 5 == 0 else "ok",
                       reasons=REASONS[i % 3] if i % 5 == 0 else [], values=values)


@pytest.fixture
def store(influxd: InfluxInstance, tmp_path: Path) -> Iterator[InfluxStore]:
    # written as they came in: on the writer's clock no record is late, so no day is marked
    live = InfluxStore(influxd.url, database="fluxpack", write_guard=tmp_path / "write-guard",
                       clock=lambda: DAY0.timestamp())
    # two result sets in days 2 and 3 (every other half hour), a third of another engine on day 5
    live.write_fluxes([record(i) for i in range(DAYS * 48)])
    live.write_fluxes([record(i, HASH_B) for i in range(2 * 48, 4 * 48, 2)])
    live.write_fluxes([record(i, HASH_B, "sinkwatch-ec 0.2.0", 2.0) for i in range(5 * 48, 6 * 48, 3)])
    live.close()
    instance = InfluxStore(influxd.url, database="fluxpack", write_guard=tmp_path / "write-guard",
                           rollup_reads=True, clock=lambda: NOW.timestamp())
    yield instance
    instance.close()


@pytest.fixture
def client(store: InfluxStore) -> Iterator[TestClient]:
    with TestClient(create_app(store, access=DEV)) as instance:
        yield instance


class Served:
    """Counts the days a store serves from the copy."""

    def __init__(self, store: InfluxStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.days = 0
        day_texts = store._day_texts

        def counted(*args: Any) -> Any:
            found = day_texts(*args)
            self.days += found is not None
            return found

        monkeypatch.setattr(store, "_day_texts", counted)


def body(client: TestClient, start: datetime, end: datetime, **params: str) -> bytes:
    response = client.get("/api/v1/fluxes", params={"station": "st1", "start": format_time(start),
                                                     "end": format_time(end), **params})
    assert response.status_code == 200, response.text
    return response.content


def both(client: TestClient, store: InfluxStore, start: datetime, end: datetime, **params: str) -> tuple[bytes, bytes]:
    """The body through the copy and the body from the records alone."""
    store.rollup_reads = True
    store.__dict__.pop("_names_by_id", None)  # the names of each names_id looked up as a fresh server does
    packed = body(client, start, end, **params)
    store.rollup_reads = False
    try:
        return packed, body(client, start, end, **params)
    finally:
        store.rollup_reads = True


SELECTIONS: list[dict[str, str]] = [
    {}, {"variables": "NEE,H,LE,FC"}, {"variables": "LE,FC,N_RECORDS,TAU,FC_SSITC_TEST,USTAR,H"},
    {"variables": "FC,FC,NOT_STORED"}, {"settings_hash": HASH_A}, {"settings_hash": HASH_B, "variables": "H,FC"},
    {"format": "csv"}, {"format": "csv", "variables": "NEE,H,LE,FC"}, {"format": "ameriflux", "settings_hash": HASH_A},
    {"format": "ameriflux", "settings_hash": HASH_A, "variables": "FC,H,N_RECORDS"},
]
RANGES = [
    (DAY0, DAY0 + DAYS * DAY),  # aligned: every day from the copy
    (DAY0 + timedelta(hours=7, minutes=13), DAY0 + 6 * DAY + timedelta(hours=5)),  # partial first and last days
    (DAY0 - 3 * DAY, DAY0 + 12 * DAY),  # wider than the data
    (DAY0 + 2 * DAY + timedelta(minutes=30), DAY0 + 4 * DAY),  # a day's first record left out: partial
]


def test_bodies_through_the_copy_are_the_records_bodies(client: TestClient, store: InfluxStore,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    report = store.roll_up()
    assert (report.flux.days_packed, report.flux.days_repacked, report.flux.never) == (DAYS, 0, 0)
    assert marks_of(store) == {}
    served = Served(store, monkeypatch)
    for start, end in RANGES:
        for params in SELECTIONS:
            packed, records = both(client, store, start, end, **params)
            assert packed == records, (start, end, params)
            assert len(packed) > 200, params
    assert served.days > 0
    # the aligned year-like read serves every day of every result set from the copy
    served.days = 0
    assert both(client, store, DAY0, DAY0 + DAYS * DAY, variables="NEE,H,LE,FC")[0]
    assert served.days == DAYS + 2 + 1


def test_a_range_of_partial_days_only_reads_the_records(client: TestClient, store: InfluxStore,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    store.roll_up()
    served = Served(store, monkeypatch)
    start, end = DAY0 + DAY + timedelta(hours=1), DAY0 + 3 * DAY - timedelta(hours=1)  # one whole day only
    packed, records = both(client, store, start, end, variables="NEE,H,LE,FC")
    assert packed == records and served.days == 0
    start, end = DAY0 + DAY + timedelta(hours=1), DAY0 + 4 * DAY + timedelta(hours=1)  # days 2 and 3 whole
    packed, records = both(client, store, start, end, variables="NEE,H,LE,FC")
    assert packed == records and served.days == 4  # days 2 and 3 of each result set (HASH_B's too)


def marks_of(store: InfluxStore) -> dict[int, int]:
    found = store._query(f"SELECT gen FROM {PACK_DIRTY_MEASUREMENT} WHERE station = 'st1'")
    return {int(t): int(g) for series in found for t, g in series.get("values") or ()}


def poison(store: InfluxStore, day: datetime, variable: str = "H", settings_hash: str = HASH_A) -> None:
    """Rewrite one variable of a day's point with numbers no record has, under the point's own nonce: seen only
    through the copy."""
    end = to_ns(day) + DAY_NS
    found = store._query(f"SELECT bk FROM {PACK_MEASUREMENT} WHERE settings_hash = '{settings_hash}' "
                         f"AND time = {end}")
    book = json.loads(found[0]["values"][0][1])
    count = sum(run[2] for run in book["t"])  # the records' ends as runs [first, step, count]
    texts = ",".join(["123456.5"] * count)
    store._write_body(f'{PACK_MEASUREMENT},engine_version=sinkwatch-ec\\ 0.1.0,settings_hash={settings_hash},'
                      f'site=site1,station=st1 {variable}="{book["n"]}|{texts}" {end}')


@pytest.mark.parametrize("change", ["late record", "recomputed record", "new result set"])
def test_a_day_written_after_the_job_is_read_from_the_records_until_repacked(
        client: TestClient, store: InfluxStore, change: str) -> None:
    store.roll_up()
    day = DAY0 + 4 * DAY
    poison(store, day)
    assert b"123456.5" in body(client, DAY0, DAY0 + DAYS * DAY, variables="H")  # the copy is read
    if change == "late record":  # a half hour's record that never came, between the stored ones
        late = record(4 * 48 + 10)
        store.write_fluxes([late.model_copy(update={"end": late.end - timedelta(minutes=15),
                                                    "start": late.start - timedelta(minutes=15)})])
    elif change == "recomputed record":  # the same record's values written again
        store.write_fluxes([record(4 * 48 + 10, scale=3.0)])
    else:  # another settings hash's result for the day (a recompute)
        store.write_fluxes([record(4 * 48 + 10, "cccccccccccccccc")])
    assert marks_of(store)[to_ns(day)] > 0
    for params in SELECTIONS[:4]:
        packed, records = both(client, store, DAY0, DAY0 + DAYS * DAY, **params)
        assert packed == records and b"123456.5" not in packed, params
    report = store.roll_up()
    assert report.flux.days_repacked == 1 and report.flux.marks_cleared == 1
    assert marks_of(store)[to_ns(day)] == 0
    for params in SELECTIONS:
        packed, records = both(client, store, DAY0 - DAY, DAY0 + DAYS * DAY, **params)
        assert packed == records, params
    assert b"123456.5" not in packed


def test_only_late_records_mark_their_day(store: InfluxStore, influxd: InfluxInstance, tmp_path: Path) -> None:
    now = DAY0 + 20 * DAY + timedelta(hours=2, minutes=10)
    live = InfluxStore(influxd.url, database="fluxpack", write_guard=tmp_path / "write-guard",
                       clock=lambda: now.timestamp())
    before = marks_of(store)
    try:
        # late before 01:00 (floor_hour(now) - MARK_LAG): a record ending 00:30 is, one ending 01:30 is not
        live.write_fluxes([flux_record(end=DAY0 + 20 * DAY + timedelta(minutes=90))])
        assert marks_of(store) == before
        live.write_fluxes([flux_record(end=DAY0 + 20 * DAY + timedelta(minutes=30))])
        assert set(marks_of(store)) - set(before) == {to_ns(DAY0 + 20 * DAY)}
        live.write_fluxes([flux_record(end=DAY0 + 20 * DAY)])  # ends at midnight: the day before's record
        assert set(marks_of(store)) - set(before) == {to_ns(DAY0 + 20 * DAY), to_ns(DAY0 + 19 * DAY)}
    finally:
        live.close()


def test_a_point_of_another_packing_is_never_served(client: TestClient, store: InfluxStore) -> None:
    store.roll_up()
    day_end = to_ns(DAY0 + 3 * DAY) + DAY_NS
    # a field half rewritten (another packing's nonce): the day from the records
    store._write_body(f'{PACK_MEASUREMENT},engine_version=sinkwatch-ec\\ 0.1.0,settings_hash={HASH_A},'
                      f'site=site1,station=st1 H="0123456789abcdef|{",".join(["654321.25"] * 48)}" {day_end}')
    for params in SELECTIONS[:6]:
        packed, records = both(client, store, DAY0, DAY0 + DAYS * DAY, **params)
        assert packed == records and b"654321.25" not in packed, params


def test_a_day_the_copy_cannot_hold_is_read_from_the_records(client: TestClient, store: InfluxStore) -> None:
    long = ["x" * 2000 + str(i) for i in range(48)]  # 48 kinds of 2 kB: bookkeeping too large for one field
    store.write_fluxes([record(i).model_copy(update={"reasons": [long[i % 48]], "status": "partial"})
                        for i in range(6 * 48, 7 * 48)])
    report = store.roll_up()
    assert report.flux.never == 1 and marks_of(store)[to_ns(DAY0 + 6 * DAY)] == -1
    for params in SELECTIONS[:3]:
        packed, records = both(client, store, DAY0, DAY0 + DAYS * DAY, **params)
        assert packed == records, params


@pytest.mark.parametrize("killed_at", ["before the state", "before the marks are cleared"])
def test_a_job_killed_half_way_leaves_nothing_stale(client: TestClient, store: InfluxStore,
                                                     monkeypatch: pytest.MonkeyPatch, killed_at: str) -> None:
    if killed_at == "before the marks are cleared":
        store.roll_up()
        store.write_fluxes([record(3 * 48 + 5, scale=5.0)])  # day 3 marked
    write_body = store._write_body

    def killed(body: str) -> None:
        if (killed_at == "before the state" and body.startswith(f"{PACK_STATE_MEASUREMENT},")) or (
                killed_at == "before the marks are cleared" and body.startswith(f"{PACK_DIRTY_MEASUREMENT},")):
            raise KeyboardInterrupt  # what the process does next never happens
        write_body(body)

    monkeypatch.setattr(store, "_write_body", killed)
    with pytest.raises(KeyboardInterrupt):
        store.pack_fluxes()
    monkeypatch.undo()
    poison(store, DAY0 + 3 * DAY)
    if killed_at == "before the state":  # points written, `through` not: not served
        assert not store._query(f"SELECT last(through) FROM {PACK_STATE_MEASUREMENT}") and marks_of(store) == {}
    else:  # the day repacked, its mark not cleared: still from the records
        assert marks_of(store)[to_ns(DAY0 + 3 * DAY)] > 0
    for params in SELECTIONS[:4]:
        packed, records = both(client, store, DAY0, DAY0 + DAYS * DAY, **params)
        assert packed == records and b"123456.5" not in packed, params
    store.roll_up()
    assert set(marks_of(store).values()) <= {0}
    for params in SELECTIONS:
        packed, records = both(client, store, DAY0, DAY0 + DAYS * DAY, **params)
        assert packed == records, params


def test_a_record_written_while_its_day_is_repacked_keeps_the_day_marked(
        client: TestClient, store: InfluxStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.roll_up()
    day = DAY0 + 2 * DAY
    store.write_fluxes([record(2 * 48 + 3, scale=2.0)])
    pack_days = store._pack_days
    written: list[int] = []

    def pack_then_another_writer_writes(*args: Any) -> Any:
        answer = pack_days(*args)
        if not written:  # a recompute stores the day's record again while the job packs it
            store.write_fluxes([record(2 * 48 + 3, scale=7.0)])
            written.append(1)
        return answer

    monkeypatch.setattr(store, "_pack_days", pack_then_another_writer_writes)
    report = store.roll_up()

    assert written == [1] and report.flux.marks_kept == 1 and report.flux.marks_cleared == 0
    assert marks_of(store)[to_ns(day)] > 0  # the day's point is stale, and it says so
    for params in SELECTIONS[:4]:
        packed, records = both(client, store, DAY0, DAY0 + DAYS * DAY, **params)
        assert packed == records, params
    monkeypatch.undo()
    store.roll_up()
    assert marks_of(store)[to_ns(day)] == 0
    for params in SELECTIONS[:4]:
        packed, records = both(client, store, DAY0, DAY0 + DAYS * DAY, **params)
        assert packed == records, params


def test_a_day_with_a_record_written_before_meta_is_read_from_the_records(client: TestClient,
                                                                          store: InfluxStore) -> None:
    from .test_influx_flux_layout import old_line

    # day 1's 20th record as the store wrote it before `meta` (a new result set: its records only in that layout)
    store._write_body(old_line(record(48 + 20, "dddddddddddddddd"), with_names_id=False))
    report = store.roll_up()
    assert report.flux.never == 1 and marks_of(store)[to_ns(DAY0 + DAY)] == -1
    for params in SELECTIONS[:6]:
        packed, records = both(client, store, DAY0, DAY0 + DAYS * DAY, **params)
        assert packed == records, params
        assert (b"dddddddddddddddd" in packed) == ("settings_hash" not in params), params
