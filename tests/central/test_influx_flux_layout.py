"""InfluxStore's flux record layout under a read of a few variables (`variables=`): records written before the
`meta` field existed (and before `names_id`) stay readable beside new ones; several result sets and sites of one
station are merged in the order of `query_fluxes` across chunks; a `meta` of another version is refused by name.
Real influxd (the store contract suites cover what every store shares)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import timedelta
from typing import TypeVar

import httpx
import pytest
from influxdb_client import Point, WritePrecision

from gateway.central.store import InfluxStore, StoreError, influx_reads
from gateway.central.store.base import to_ns
from gateway.central.store.influx_reads import names_digest
from gateway.central.store.reads import flux_row_of, select_values
from gateway.contract import FluxRecord, is_integer_variable
from gateway.testing.services import InfluxInstance

from .helpers import T0, flux_record

pytestmark = pytest.mark.integration

T = TypeVar("T")
WANTED = ["LE", "FC", "NEE", "FC_SSITC_TEST"]


def flat(chunks: Iterable[Sequence[T]]) -> list[T]:
    return [row for chunk in chunks for row in chunk]


@pytest.fixture
def store(influxd: InfluxInstance) -> Iterator[InfluxStore]:
    instance = InfluxStore(influxd.url, database="layout")
    yield instance
    instance.close()


def old_line(record: FluxRecord, *, with_names_id: bool) -> str:
    """A record as the store wrote it before `meta` (and, without `names_id`, before that field too)."""
    point = Point("fluxes")
    for tag in ("site", "station", "engine_version", "settings_hash"):
        point.tag(tag, getattr(record, tag))
    point.field("period_s", (record.end - record.start).total_seconds())
    point.field("status", record.status)
    point.field("reasons", json.dumps(list(record.reasons), ensure_ascii=False))
    names = ",".join(record.values)
    point.field("names", names)
    if with_names_id:
        point.field("names_id", names_digest(names))
    point.field("nulls", ",".join(n for n, v in record.values.items() if v is None))
    for name, value in record.values.items():
        if value is not None:
            point.field(name, int(value) if is_integer_variable(name) else float(value))
    point.time(to_ns(record.end), WritePrecision.NS)
    return str(point.to_line_protocol())


def write_lines(store: InfluxStore, lines: list[str]) -> None:
    httpx.post(f"{store.url}/query", data={"q": f'CREATE DATABASE "{store.database}"'}).raise_for_status()
    response = httpx.post(f"{store.url}/write", params={"db": store.database, "precision": "ns"},
                          content="\n".join(lines).encode())
    assert response.status_code == 204, response.text


def records(count: int, **kwargs: object) -> list[FluxRecord]:
    return [flux_record(end=T0 + timedelta(minutes=30 * i),
                        values={"FC": -1.5 * i, "H": 100.0 + i, "LE": None if i % 4 == 0 else 40.0 + i,
                                "FC_SSITC_TEST": i % 3},
                        status="partial" if i % 5 == 0 else "ok",
                        reasons=[f"co2; \"lag\" {i}"] if i % 5 == 0 else [], **kwargs)  # type: ignore[arg-type]
            for i in range(1, count + 1)]


def expected(store: InfluxStore, end_ns: int) -> list[object]:
    end = T0 + timedelta(microseconds=end_ns // 1000)
    return [row._replace(values=select_values(row.values, WANTED))
            for row in (flux_row_of(r) for r in store.query_fluxes("st1", T0, end))]


def test_records_written_before_meta_and_names_id_read_beside_new_ones(store: InfluxStore) -> None:
    written = records(30)
    old = [old_line(r, with_names_id=i % 2 == 0) for i, r in enumerate(written[:20])]
    write_lines(store, old)
    store.write_fluxes(written[20:])

    rows = flat(store.iter_fluxes("st1", T0, written[-1].end, variables=WANTED))

    assert len(rows) == 30
    assert rows == expected(store, to_ns(written[-1].end))
    assert [r.values for r in rows[:4]] == [select_values(dict(r.values), WANTED) for r in written[:4]]
    assert rows[4].status == "partial" and rows[4].reasons == ['co2; "lag" 5']
    assert rows[3].values["LE"] is None and "NEE" not in rows[3].values


def test_an_old_record_rewritten_in_the_new_layout_shows_only_the_new_values(store: InfluxStore) -> None:
    [first] = records(1)
    write_lines(store, [old_line(first, with_names_id=False)])
    store.write_fluxes([first.model_copy(update={"values": {"FC": -2.5, "LE": None}, "status": "failed"})])

    [row] = flat(store.iter_fluxes("st1", T0, first.end, variables=WANTED))

    assert (row.values, row.status) == ({"LE": None, "FC": -2.5}, "failed")


def test_result_sets_and_sites_merge_in_query_order_across_chunks(store: InfluxStore,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(influx_reads, "SELECTED_CHUNK_ROWS", 7)
    written = [*records(40, settings_hash="aaaaaaaaaaaaaaaa"), *records(25, settings_hash="0000000000000000"),
               *records(30, site="site2", engine_version="sinkwatch-ec 0.2.0")]
    store.write_fluxes(written)
    end = T0 + timedelta(hours=24)

    chunks = list(store.iter_fluxes("st1", T0, end, variables=WANTED))
    only_a = flat(store.iter_fluxes("st1", T0, end, "aaaaaaaaaaaaaaaa", variables=WANTED))

    assert all(len(c) <= 7 for c in chunks) and len(chunks) >= 95 // 7
    rows = flat(chunks)
    assert rows == expected(store, to_ns(end))
    assert {(r.site, r.engine_version, r.settings_hash) for r in rows} == {
        ("site1", "sinkwatch-ec 0.1.0", "aaaaaaaaaaaaaaaa"), ("site1", "sinkwatch-ec 0.1.0", "0000000000000000"),
        ("site2", "sinkwatch-ec 0.2.0", "0123456789abcdef")}
    assert [r.end_ns for r in only_a] == [to_ns(r.end) for r in written[:40]]
    assert {r.settings_hash for r in only_a} == {"aaaaaaaaaaaaaaaa"}


def test_a_meta_of_another_version_is_refused_by_name(store: InfluxStore) -> None:
    [first] = records(1)
    store.write_fluxes([first])
    write_lines(store, [f'fluxes,engine_version=sinkwatch-ec\\ 0.1.0,settings_hash=0123456789abcdef,site=site1,'
                        f'station=st1 meta="2;x" {to_ns(first.end)}'])

    with pytest.raises(StoreError, match="meta version '2'"):
        flat(store.iter_fluxes("st1", T0, first.end, variables=WANTED))
