"""Streamed reads (gateway.central.store.reads), every store: `iter_series`/`iter_fluxes` give exactly what
`query_series`/`query_fluxes` give, chunk after chunk, in their order; `variables` restricts a record's values and
never shows a value its record no longer carries; `flux_columns` names the sets and variables before any row. Same
fixtures as test_store_contract.py (SQLite, and a real influxd under the integration mark)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import TypeVar

import pytest

from gateway.central.store import AGGREGATES, Aggregate, Store
from gateway.central.store.base import to_ns
from gateway.central.store.reads import CHUNK_ROWS, flux_row_of, select_values
from gateway.contract import FluxRecord

from .helpers import T0, ameriflux_by_cells, flux_record, reading, series, stored
from .test_store_contract import AWKWARD_FLOATS, backend, store

__all__ = ["backend", "store"]  # the fixtures, re-exported so pytest finds them here

HOUR = timedelta(hours=1)
T = TypeVar("T")


def flat(chunks: Iterable[Sequence[T]]) -> list[T]:
    return [row for chunk in chunks for row in chunk]


@pytest.fixture(autouse=True)
def small_series_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """InfluxDB reads a series in chunks of SERIES_CHUNK_ROWS: here CHUNK_ROWS, as the other stores, so a test's
    few thousand points make several chunks."""
    from gateway.central.store import influx_reads

    monkeypatch.setattr(influx_reads, "SERIES_CHUNK_ROWS", CHUNK_ROWS)


def test_raw_series_streams_every_point_of_many_chunks(store: Store) -> None:
    count = 2 * CHUNK_ROWS + 3
    values = [AWKWARD_FLOATS[i % len(AWKWARD_FLOATS)] for i in range(count)]
    store.write(stored("site1", series("st1", values, step=timedelta(seconds=1))))
    end = T0 + timedelta(seconds=count)

    chunks = list(store.iter_series("st1", "CO2", T0, end, site="site1", sensor="gmp252"))

    assert len(chunks) >= 3 and all(len(c) <= CHUNK_ROWS for c in chunks)
    expected = store.query_series("st1", "CO2", T0, end, site="site1", sensor="gmp252")
    assert [(p.time, p.value, p.qc) for p in expected] == [
        (T0 + timedelta(seconds=i), v, 3 if v is None else 0) for i, v in enumerate(values)]
    assert [tuple(r) for r in flat(chunks)] == [(to_ns(p.time), p.value, p.qc) for p in expected]


#: values whose text InfluxDB (Go), orjson and repr write alike, and values whose texts differ among them
ALIKE_FLOATS: list[float | None] = [0.0001, -0.5, 123.0, 0.30000000000000004, 12345678901234.5, 414.6568, None, 1e15]
UNLIKE_FLOATS: list[float | None] = [0.00005, -0.0, 1e16, 1e20, 1.5e-6, 5e-7, 1e-300, 1.7976931348623157e308, 2.5e-7]


def test_raw_series_chunks_encode_as_their_rows(store: Store, backend: str) -> None:
    from gateway.central.store.reads import PointColumns
    from gateway.central.streaming import series_csv, series_json

    values = ([412.0 + i / 8 for i in range(CHUNK_ROWS)]
              + [ALIKE_FLOATS[i % len(ALIKE_FLOATS)] for i in range(CHUNK_ROWS)]
              + [UNLIKE_FLOATS[i % len(UNLIKE_FLOATS)] for i in range(CHUNK_ROWS)])
    store.write(stored("site1", series("st1", values, step=timedelta(seconds=1))))
    end = T0 + timedelta(seconds=len(values))

    chunks = list(store.iter_series("st1", "CO2", T0, end, site="site1", sensor="gmp252"))
    as_rows = [[tuple(r) for r in chunk] for chunk in chunks]

    assert [r[1] for r in flat(as_rows)] == values
    assert b"".join(series_json({"x": 1}, chunks)) == b"".join(series_json({"x": 1}, as_rows))
    assert b"".join(series_csv(chunks)) == b"".join(series_csv(as_rows))
    if backend == "influx":  # its text is passed on where it is orjson's and repr's, and parsed where it is not
        kinds = [isinstance(chunk, PointColumns) for chunk in chunks]
        assert kinds[:2] == [True, True] and kinds[-1] is False


@pytest.mark.parametrize("aggregate", AGGREGATES)
def test_aggregated_series_equals_query_series(store: Store, aggregate: Aggregate) -> None:
    finite = [v for v in AWKWARD_FLOATS if v is None or abs(v) < 1e300]  # a mean of the largest float overflows
    values = [finite[i % len(finite)] for i in range(700)]
    store.write(stored("site1", series("st1", values)))
    end = T0 + 2 * HOUR

    rows = flat(store.iter_series("st1", "CO2", T0, end, timedelta(minutes=10), aggregate))

    points = store.query_series("st1", "CO2", T0, end, timedelta(minutes=10), aggregate)
    assert [tuple(r) for r in rows] == [(to_ns(p.time), p.value, p.qc) for p in points]
    assert len(rows) == 12


def test_series_of_nothing_is_no_chunk(store: Store) -> None:
    assert flat(store.iter_series("nobody", "CO2", T0, T0 + HOUR)) == []
    store.write(stored("site1", [reading(value=1.0)]))
    assert flat(store.iter_series("st1", "CO2", T0, T0 + HOUR, sensor="other")) == []


def records_of_two_sets() -> list[FluxRecord]:
    a = [flux_record(end=T0 + timedelta(minutes=30 * i), settings_hash="aaaaaaaaaaaaaaaa",
                     values={"FC": -1.5 * i, "H": 100.0 + i, "LE": None, "FC_SSITC_TEST": i % 3, "N_RECORDS": 36000},
                     status="partial" if i % 5 == 0 else "ok", reasons=["co2: \"lag\", at limit"] if i % 5 == 0 else [])
         for i in range(1, 41)]
    b = [flux_record(end=T0 + timedelta(minutes=30 * i), settings_hash="0000000000000000",
                     values={"FC": 2.0 * i, "TAU": 0.25}) for i in range(1, 41, 2)]
    return [*a, *b]


def test_fluxes_stream_equals_query_fluxes_in_its_order(store: Store) -> None:
    records = records_of_two_sets()
    store.write_fluxes(records)
    end = T0 + 24 * HOUR

    rows = flat(store.iter_fluxes("st1", T0, end))

    assert rows == [flux_row_of(r) for r in store.query_fluxes("st1", T0, end)]
    assert len(rows) == 60
    # ties on the period end ordered by settings hash: the other set's record first
    assert [(r.end_ns, r.settings_hash) for r in rows[:3]] == sorted((r.end_ns, r.settings_hash) for r in rows[:3])
    only_b = flat(store.iter_fluxes("st1", T0, end, "0000000000000000"))
    assert [r.values for r in only_b] == [{"FC": 2.0 * i, "TAU": 0.25} for i in range(1, 41, 2)]


def test_variables_restrict_values_in_the_order_asked(store: Store) -> None:
    records = records_of_two_sets()
    store.write_fluxes(records)
    end = T0 + 24 * HOUR
    wanted = ["LE", "FC", "NEE", "FC_SSITC_TEST"]

    rows = flat(store.iter_fluxes("st1", T0, end, variables=wanted))

    expected = [flux_row_of(r) for r in store.query_fluxes("st1", T0, end)]
    assert rows == [e._replace(values=select_values(e.values, wanted)) for e in expected]
    first_a = next(r for r in rows if r.settings_hash == "aaaaaaaaaaaaaaaa")
    assert list(first_a.values) == ["LE", "FC", "FC_SSITC_TEST"]  # NEE: not carried, so not shown
    assert first_a.values["LE"] is None and isinstance(first_a.values["FC_SSITC_TEST"], int)


@pytest.fixture
def small_flux_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """InfluxDB reads flux records in chunks of 10, so a test's few dozen records make several."""
    from gateway.central.store import influx_reads

    monkeypatch.setattr(influx_reads, "FLUX_CHUNK_ROWS", 10)
    monkeypatch.setattr(influx_reads, "SELECTED_CHUNK_ROWS", 10)


@pytest.mark.usefixtures("small_flux_chunks")
def test_flux_chunks_encode_as_their_rows(store: Store, backend: str) -> None:
    """A store may hand a chunk on as the texts it read (InfluxDB: `FluxTexts`); written as JSON, CSV and AmeriFlux
    it gives the bytes of its records parsed. Chunks of numbers whose text InfluxDB (Go) and orjson write alike,
    of reasons with quotes or backslashes, of partial records and of a variable dropped by a rewrite pass the texts
    on; a chunk with any number they write otherwise (minus zero, 1e20, 1.5e-6, exponents) has its numbers written
    again by orjson."""
    from gateway.central.store.reads import FluxTexts
    from gateway.central.streaming import ameriflux_csv, fluxes_csv, fluxes_json

    # repr's text differs for 5e-05 and 1e16, orjson's not; AmeriFlux rounds a tie at the ninth digit to even
    alike = [*ALIKE_FLOATS, 0.00005, 1e16, -1.25, 36000.0, 1234567.125, 999999999.5, 0.000099999999995]
    reasons = [['lag "at limit"'], ["a \\ b", 'c\\"d'], ["ok, <fine> & 80 %"]]
    records = [flux_record(end=T0 + timedelta(minutes=30 * i), status="partial" if i % 4 == 0 else "ok",
                           reasons=reasons[(i - 1) // 10] if i % 4 == 0 else [],
                           values={"FC": None if i % 4 == 0 else alike[i % len(alike)], "H": 100.0 + i / 8,
                                   "LE": -0.1 * i, "FC_SSITC_TEST": i % 3, "N_RECORDS": 36000})
               for i in range(1, 31)]
    # numbers Go and orjson write otherwise: without an exponent (Go: -0, 100000000000000000000, 0.0000015), with
    unlike = [[-0.0, 1e20, 1.5e-6], [5e-7, 1e-300, 1.7976931348623157e308]]
    records += [flux_record(end=T0 + timedelta(minutes=30 * i), values={
        "FC": unlike[(i - 31) // 10][i % 3], "H": 1.0, "N_RECORDS": 36000}) for i in range(31, 51)]
    store.write_fluxes(records)
    # rewrites: InfluxDB keeps the fields they drop (H, FC) or make null (FC: only `meta` says so)
    store.write_fluxes([flux_record(end=T0 + timedelta(minutes=30 * 7), values={"LE": 2.5}),
                        flux_record(end=T0 + timedelta(minutes=30 * 9), values={"FC": None, "LE": 1.0, "H": 3.0})])
    end = T0 + 24 * HOUR
    cols = ["FC", "FC_SSITC_TEST", "H", "LE", "N_RECORDS"]

    for variables in (None, ["LE", "FC", "NEE", "FC_SSITC_TEST"]):
        chunks = list(store.iter_fluxes("st1", T0, end, variables=variables))
        as_rows = [list(chunk) for chunk in chunks]

        expected = [flux_row_of(r) for r in store.query_fluxes("st1", T0, end)]
        assert flat(as_rows) == [e._replace(values=select_values(e.values, variables)) for e in expected]
        assert b"".join(fluxes_json({"x": 1}, chunks)) == b"".join(fluxes_json({"x": 1}, as_rows))
        assert b"".join(fluxes_csv(cols, chunks)) == b"".join(fluxes_csv(cols, as_rows))
        assert b"".join(ameriflux_csv(cols, chunks)) == b"".join(ameriflux_csv(cols, as_rows))
        assert b"".join(ameriflux_csv(cols, chunks)) == ameriflux_by_cells(cols, flat(as_rows))
        if backend == "influx":  # its text passed on where it is orjson's, and written again by orjson where not
            assert [isinstance(chunk, FluxTexts) for chunk in chunks] == [True] * 5


def test_a_rewrite_that_drops_a_variable_never_shows_its_old_value(store: Store) -> None:
    end_time = T0 + timedelta(minutes=30)
    store.write_fluxes([flux_record(values={"FC": -3.0, "H": 120.0, "LE": 55.0})])
    store.write_fluxes([flux_record(values={"FC": -2.5, "LE": None}, status="partial", reasons=["sonic"])])

    whole = flat(store.iter_fluxes("st1", T0, end_time))
    chosen = flat(store.iter_fluxes("st1", T0, end_time, variables=["H", "LE", "FC"]))

    assert [r.values for r in whole] == [{"FC": -2.5, "LE": None}]
    assert [r.values for r in chosen] == [{"LE": None, "FC": -2.5}]
    assert [r.status for r in chosen] == ["partial"]


def test_flux_columns_names_sets_and_variables(store: Store) -> None:
    store.write_fluxes(records_of_two_sets())
    store.write_fluxes([flux_record("st2", values={"ZL": 0.1})])
    end = T0 + 24 * HOUR

    every = store.flux_columns("st1", T0, end)
    one = store.flux_columns("st1", T0, end, "0000000000000000")
    early = store.flux_columns("st1", T0, T0 + timedelta(minutes=30))

    assert every.sets == [("0000000000000000", "sinkwatch-ec 0.1.0"), ("aaaaaaaaaaaaaaaa", "sinkwatch-ec 0.1.0")]
    assert every.variables == {"FC", "H", "LE", "FC_SSITC_TEST", "N_RECORDS", "TAU"}
    assert (one.sets, one.variables) == ([("0000000000000000", "sinkwatch-ec 0.1.0")], {"FC", "TAU"})
    assert len(early.sets) == 2
    nothing = store.flux_columns("nobody", T0, end)
    assert (nothing.sets, nothing.variables) == ([], set())


def test_abandoning_a_stream_releases_it(store: Store) -> None:
    store.write(stored("site1", series("st1", [1.0] * (CHUNK_ROWS + 5), step=timedelta(seconds=1))))
    for _ in range(120):  # more than the HTTP client's pool: each abandoned stream gave its connection back
        chunks = store.iter_series("st1", "CO2", T0, T0 + 2 * HOUR)
        assert len(next(chunks)) > 0
        chunks.close()  # type: ignore[attr-defined]
    store.write(stored("site1", [reading(time=T0 + 3 * HOUR, value=2.0)]))  # the writer is not blocked either
    assert [(r[1], r[2]) for r in flat(store.iter_series("st1", "CO2", T0 + 3 * HOUR, T0 + 4 * HOUR))] == [(2.0, 0)]
