"""One contract, every store: the same tests run against SqliteStore and InfluxStore on a real influxd."""

from __future__ import annotations

import dataclasses
import sqlite3
import statistics
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.central.batchjson import reading_columns
from gateway.central.healthjson import health_fields
from gateway.central.store import (
    InfluxStore,
    QueryTooLarge,
    SqliteStore,
    Store,
    StoreUnavailable,
)
from gateway.central.store.base import (
    StationInfo,
    StoredReading,
    WriteOutcome,
    merge_station_rows,
    reading_content,
    reading_identity,
    to_ns,
)
from gateway.central.store.columns import ColumnsRequest, MarksAhead, ReadingColumns
from gateway.central.store.health import HealthFields
from gateway.central.store.ledger import ChainEvent, LedgerItem, compress_payload
from gateway.central.store.sqlite import SCHEMA_VERSION
from gateway.central.store.victoria import VictoriaStore
from gateway.contract import ReadingBatch, StationHealth, encode_health
from gateway.model import QualityFlag, Reading
from gateway.testing.services import running_influxd

from .helpers import T0, flux_record, reading, series, stored

BACKENDS = ["sqlite", pytest.param("influx", marks=pytest.mark.integration),
            pytest.param("influx-columns", marks=pytest.mark.integration),
            pytest.param("victoria", marks=pytest.mark.integration)]
HOUR = timedelta(hours=1)
DIRECT: dict[str, Callable[[list[float]], float]] = {
    "mean": statistics.fmean,
    "min": min,
    "max": max,
    "count": lambda values: float(len(values)),
    "last": lambda values: values[-1],
}

# Values chosen to catch lossy float formatting anywhere between write and read.
AWKWARD_FLOATS: list[float | None] = [
    0.1, 1 / 3, 412.123456789012, -40.0, 0.0, 1e-300, 1.7976931348623157e308, None, 2.5e-7, 123456789.98765433,
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def open_store(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if backend == "sqlite":
        return SqliteStore(tmp_path / "readings.sqlite")
    if backend == "victoria":
        victoria = request.getfixturevalue("victoria")
        return VictoriaStore(victoria.url, side_path=tmp_path / "side.sqlite")
    influxd = request.getfixturevalue("influxd")
    # every writer of one database on this host shares the write guard, as the central service's processes do;
    # hourly reads through the rollup where it is current (test_store_rollup_contract.py)
    kind = ColumnsInfluxStore if backend == "influx-columns" else InfluxStore
    return kind(influxd.url, database="contract", write_guard=tmp_path / "write-guard", rollup_reads=True)


class ColumnsInfluxStore(InfluxStore):
    """The InfluxDB store given every batch it can be given so as `ReadingColumns`, as the ingest gives them
    (gateway/central/batchjson.py), with the marks of their stations learned ahead as the ingest worker learns them
    (`marks_ahead`): the whole contract holds for readings written so."""

    def write_many(self, batches: Sequence[ColumnsRequest], *, ahead: MarksAhead | None = None
                   ) -> list[WriteOutcome]:
        batches = [(as_columns(points), ledger) for points, ledger in batches]
        stations: set[tuple[str, str]] = set()
        for points, _ in batches:
            if isinstance(points, ReadingColumns):
                stations.add((points.site, points.station))
            else:
                stations.update((point.site, point.reading.station) for point in points)
        return super().write_many(batches, ahead=self.marks_ahead(stations) if ahead is None else ahead)

    def write_health(self, reports: list[StationHealth]) -> None:
        """Health reports as the ingest gives them to this store (gateway/central/healthjson.py): their fields, no
        model; the health contract suite holds for them (tests/central/test_store_health_contract.py)."""
        self.write_health_fields([as_health_fields(report) for report in reports])


def as_health_fields(report: StationHealth) -> HealthFields:
    fields = health_fields(encode_health(report))
    assert fields is not None, "a report the model made passes the native checks"
    return fields


def as_columns(points: list[StoredReading] | ReadingColumns) -> list[StoredReading] | ReadingColumns:
    """The readings as the ingest would have them from a batch of their own station, when they are one's."""
    if isinstance(points, ReadingColumns) or not points or len({(p.site, p.reading.station) for p in points}) > 1:
        return points
    batch = ReadingBatch(site=points[0].site, station=points[0].reading.station, seq=7, sent=T0,
                         readings=[p.reading for p in points])
    columns = reading_columns(batch.model_dump_json())
    assert columns is not None, "a batch of the model's readings passes the column checks"
    return columns


@pytest.fixture
def store(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    instance = open_store(backend, request, tmp_path)
    yield instance
    instance.close()


def test_round_trip_is_exact(store: Store) -> None:
    readings = series("st1", AWKWARD_FLOATS)
    store.write(stored("site1", readings))

    points = store.query_series("st1", "CO2", T0, T0 + HOUR)

    assert [(p.time, p.value, p.qc) for p in points] == [(r.time, r.value, int(r.qc)) for r in readings]


def test_microsecond_timestamps_survive(store: Store) -> None:
    readings = [reading(time=T0 + timedelta(microseconds=us), value=float(us)) for us in (1, 999_999, 123_457)]
    store.write(stored("site1", readings))

    points = store.query_series("st1", "CO2", T0, T0 + HOUR)

    assert sorted((p.time, p.value) for p in points) == sorted((r.time, r.value) for r in readings)


def test_a_resent_batch_is_idempotent(store: Store) -> None:
    readings = series("st1", [1.0, None, 3.0])
    first = store.write(stored("site1", readings))
    again = store.write(stored("site1", readings))

    assert (first.written, first.duplicates, first.conflicts) == (3, 0, ())
    assert (again.written, again.duplicates, again.conflicts) == (0, 3, ())
    points = store.query_series("st1", "CO2", T0, T0 + HOUR)
    assert [(p.value, p.qc) for p in points] == [(1.0, 0), (None, 3), (3.0, 0)]


@pytest.mark.parametrize(
    "later",
    [
        pytest.param(dict(value=20.0, qc=QualityFlag.SUSPECT), id="other-value-and-qc"),
        pytest.param(dict(value=None), id="null-value"),  # InfluxDB would keep 2.0 under qc 3
        pytest.param(dict(value=2.0, qc_reason="warming up"), id="other-reason"),
        pytest.param(dict(value=2.0, unit="ppm"), id="other-unit"),  # another tag set: a second InfluxDB point
    ],
)
def test_a_different_reading_never_overwrites_the_stored_one(store: Store, later: dict[str, Any]) -> None:
    readings = series("st1", [1.0, 2.0, 3.0])
    store.write(stored("site1", readings))
    different = reading(time=readings[1].time, **later)

    outcome = store.write(stored("site1", [different]))

    assert (outcome.written, outcome.duplicates) == (0, 0)
    [conflict] = outcome.conflicts
    assert conflict.incoming.reading == different
    assert (conflict.stored.reading.value, conflict.stored.reading.qc, conflict.stored.reading.unit) == (
        2.0, QualityFlag.GOOD, readings[1].unit)
    points = store.query_series("st1", "CO2", T0, T0 + HOUR)
    assert [(p.value, p.qc) for p in points] == [(1.0, 0), (2.0, 0), (3.0, 0)]
    assert {(s.sensor, s.unit) for s in store.series_sources("st1", "CO2", T0, T0 + HOUR)} == {
        ("gmp252", readings[1].unit)}


def test_a_stored_null_is_not_filled_in_later(store: Store) -> None:
    gap = reading(value=None)
    store.write(stored("site1", [gap]))

    outcome = store.write(stored("site1", [reading(value=5.0)]))

    assert len(outcome.conflicts) == 1
    assert [(p.value, p.qc) for p in store.query_series("st1", "CO2", T0, T0 + HOUR)] == [(None, 3)]


def test_a_batch_repeating_an_identity_keeps_the_first_and_reports_the_second(store: Store) -> None:
    first, second = reading(value=1.0), reading(value=2.0)

    outcome = store.write(stored("site1", [first, first, second]))

    assert (outcome.written, outcome.duplicates, len(outcome.conflicts)) == (1, 1, 1)
    assert outcome.conflicts[0].incoming.reading == second
    assert [p.value for p in store.query_series("st1", "CO2", T0, T0 + HOUR)] == [1.0]


def test_write_many_classifies_across_batches_and_reports_each_batch(store: Store) -> None:
    first = series("st1", [1.0, 2.0])
    # a redelivery of one reading, another reading under a held identity, a new one
    second = [first[1], reading(time=first[0].time, value=9.0), reading(time=T0 + HOUR / 2, value=3.0)]

    outcomes = store.write_many([(stored("site1", first), None), (stored("site1", second), None)])

    assert [(o.written, o.duplicates, len(o.conflicts)) for o in outcomes] == [(2, 0, 0), (1, 1, 1)]
    assert outcomes[1].conflicts[0].stored.reading.value == 1.0
    assert [p.value for p in store.query_series("st1", "CO2", T0, T0 + HOUR)] == [1.0, 2.0, 3.0]


def test_the_first_write_of_several_stations_into_an_empty_store(store: Store) -> None:
    # InfluxDB answers a request of several statements on a database that does not exist yet with one error
    outcomes = store.write_many([(stored("site1", series(f"st{i}", [float(i)])), None) for i in range(3)])

    assert [o.written for o in outcomes] == [1, 1, 1]
    assert [p.value for p in store.query_series("st2", "CO2", T0, T0 + HOUR)] == [2.0]


def test_readings_older_than_the_newest_stored_are_still_checked(store: Store) -> None:
    # a later batch stored before an earlier one (several ingest workers, a resend after a lost receipt)
    late = series("st1", [5.0, 6.0], start=T0 + timedelta(minutes=5))
    store.write(stored("site1", late))
    early = series("st1", [1.0, 2.0])

    outcome = store.write(stored("site1", [*early, reading(time=late[0].time, value=50.0), late[1]]))

    assert (outcome.written, outcome.duplicates, len(outcome.conflicts)) == (2, 1, 1)
    assert [p.value for p in store.query_series("st1", "CO2", T0, T0 + HOUR)] == [1.0, 2.0, 5.0, 6.0]


def test_a_second_writer_of_the_database_never_overwrites_what_the_first_wrote(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, store: Store
) -> None:
    # two ingest workers: the second knows the station from an earlier reading, the first then stores a newer one;
    # a different reading of that newer instant reaching the second must not overwrite it
    second = open_store(backend, request, tmp_path)
    try:
        second.write(stored("site1", [reading(time=T0, value=1.0)]))
        store.write(stored("site1", [reading(time=T0 + timedelta(seconds=10), value=2.0)]))

        outcome = second.write(stored("site1", [reading(time=T0 + timedelta(seconds=10), value=99.0)]))

        assert (outcome.written, len(outcome.conflicts)) == (0, 1)
        assert [p.value for p in store.query_series("st1", "CO2", T0, T0 + HOUR)] == [1.0, 2.0]
    finally:
        second.close()


def test_write_once_holds_for_a_writer_started_after_the_data_were_stored(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, store: Store
) -> None:
    store.write(stored("site1", series("st1", [1.0, 2.0])))
    store.close()
    restarted = open_store(backend, request, tmp_path)
    try:
        outcome = restarted.write(stored("site1", [reading(time=T0 + timedelta(seconds=10), value=20.0),
                                                   reading(time=T0 + timedelta(seconds=20), value=3.0)]))

        assert (outcome.written, len(outcome.conflicts)) == (1, 1)
        assert [p.value for p in restarted.query_series("st1", "CO2", T0, T0 + HOUR)] == [1.0, 2.0, 3.0]
    finally:
        restarted.close()


def test_the_site_is_part_of_the_identity(store: Store) -> None:
    here, there = reading(value=1.0), reading(value=2.0)
    store.write(stored("site1", [here]))

    outcome = store.write(stored("site2", [there]))

    assert (outcome.written, outcome.conflicts) == (1, ())
    assert [p.value for p in store.query_series("st1", "CO2", T0, T0 + HOUR, site="site1")] == [1.0]
    assert [p.value for p in store.query_series("st1", "CO2", T0, T0 + HOUR, site="site2")] == [2.0]
    assert [(s.site, s.sensor) for s in store.series_sources("st1", "CO2", T0, T0 + HOUR)] == [
        ("site1", "gmp252"), ("site2", "gmp252")]


def test_two_sensors_reporting_one_variable_are_kept_apart(store: Store) -> None:
    upper = [reading(time=T0 + i * timedelta(seconds=10), value=400.0 + i, sensor="co2_10cm") for i in range(3)]
    lower = [reading(time=T0 + i * timedelta(seconds=10), value=900.0 + i, sensor="co2_30cm", unit="ppm")
             for i in range(3)]
    store.write(stored("site1", upper + lower))

    assert [p.value for p in store.query_series("st1", "CO2", T0, T0 + HOUR, sensor="co2_10cm")] == [
        400.0, 401.0, 402.0]
    assert [p.value for p in store.query_series("st1", "CO2", T0, T0 + HOUR, sensor="co2_30cm",
                                                every=timedelta(hours=1), aggregate="max")] == [902.0]
    assert [(s.sensor, s.unit) for s in store.series_sources("st1", "CO2", T0, T0 + HOUR)] == [
        ("co2_10cm", "umol mol-1"), ("co2_30cm", "ppm")]
    # a window in which only one of them reported names only that one
    assert store.series_sources("st1", "CO2", T0 + HOUR, T0 + 2 * HOUR) == []
    [info] = store.stations()
    assert info.sensors == {"co2_10cm": {"CO2": "umol mol-1"}, "co2_30cm": {"CO2": "ppm"}}


def test_time_window_is_half_open(store: Store) -> None:
    step = timedelta(seconds=10)
    readings = series("st1", [float(i) for i in range(10)], step=step)
    store.write(stored("site1", readings))

    points = store.query_series("st1", "CO2", T0 + 2 * step, T0 + 5 * step)

    assert [p.time for p in points] == [r.time for r in readings[2:5]]


def test_other_stations_and_variables_are_not_mixed_in(store: Store) -> None:
    store.write(stored("site1", series("st1", [1.0, 2.0])))
    store.write(stored("site1", series("st2", [10.0, 20.0])))
    store.write(stored("site1", series("st1", [5.0], variable="TS")))

    assert [p.value for p in store.query_series("st1", "CO2", T0, T0 + HOUR)] == [1.0, 2.0]
    assert [p.value for p in store.query_series("st1", "TS", T0, T0 + HOUR)] == [5.0]


@pytest.mark.parametrize("aggregate", ["mean", "min", "max", "count", "last"])
def test_aggregation_windows_match_a_direct_computation(store: Store, aggregate: str) -> None:
    # 70 readings 1 min apart from T0+5min: 8 ten-minute windows, the first and last partial; some values missing.
    start = T0 + timedelta(minutes=5)
    values: list[float | None] = [None if i % 7 == 3 else (i * 1.25) % 17 for i in range(70)]
    readings = series("st1", values, start=start, step=timedelta(minutes=1))
    readings[12] = reading(time=readings[12].time, value=3.0, qc=QualityFlag.BAD)
    store.write(stored("site1", readings))
    every = timedelta(minutes=10)

    points = store.query_series("st1", "CO2", T0, T0 + 2 * HOUR, every=every, aggregate=aggregate)  # type: ignore[arg-type]

    windows: dict[datetime, list[Reading]] = {}
    for r in readings:
        window_start = T0 + (r.time - T0) // every * every  # T0 is on a 10-minute boundary
        windows.setdefault(window_start, []).append(r)
    expected = []
    for window_start, members in sorted(windows.items()):
        present = [r.value for r in members if r.value is not None]
        expected.append((window_start, pytest.approx(DIRECT[aggregate](present), rel=1e-12),
                         max(int(r.qc) for r in members)))
    assert len(expected) == 8
    assert [(p.time, p.value, p.qc) for p in points] == expected


def test_stations_lists_each_station_with_last_time_and_variables(store: Store) -> None:
    co2 = series("st1", [1.0, 2.0, 3.0])
    ts = series("st1", [5.0], variable="TS", start=T0 + timedelta(minutes=5))
    other = series("st2", [7.0])
    store.write(stored("site1", co2 + ts))
    store.write(stored("site2", other))

    infos = {(i.site, i.station): i for i in store.stations()}

    assert set(infos) == {("site1", "st1"), ("site2", "st2")}
    assert infos[("site1", "st1")].last_reading == ts[0].time
    assert infos[("site1", "st1")].variables == {"CO2": co2[0].unit, "TS": ts[0].unit}
    assert infos[("site2", "st2")].last_reading == other[-1].time


def test_stations_follow_writes_in_several_batches_and_ignore_what_is_not_stored(store: Store) -> None:
    early = series("st1", [1.0, 2.0])
    late = series("st1", [3.0], start=T0 + HOUR)
    store.write(stored("site1", early))
    store.write_many([(stored("site1", late), None), (stored("site1", series("st1", [4.0], variable="TS")), None)])
    # delivered out of order: older readings of a series after newer ones leave its newest time
    store.write(stored("site1", series("st1", [0.5], start=T0 + timedelta(minutes=30))))
    # a resend, and a different reading under a held identity: nothing of them is stored, so nothing changes
    store.write(stored("site1", late))
    conflict = store.write(stored("site1", [reading(time=late[0].time, value=9.0, unit="ppm")]))
    assert len(conflict.conflicts) == 1

    [info] = store.stations()

    assert info.last_reading == late[0].time
    assert info.variables == {"CO2": "umol mol-1", "TS": "umol mol-1"}
    assert info.sensors == {"gmp252": {"CO2": "umol mol-1", "TS": "umol mol-1"}}


def test_empty_store_answers_with_nothing(store: Store) -> None:
    assert store.query_series("st1", "CO2", T0, T0 + HOUR) == []
    assert store.stations() == []
    assert store.ping() is True


@pytest.mark.parametrize(
    "station, variable",
    [
        ("' OR 1=1", "CO2"),
        ("st1' OR '1'='1", "CO2"),
        ('st1" OR "1"="1', "CO2"),
        ("st1\\", "CO2"),
        ("st1\\' OR 1=1 --", "CO2"),
        ("st1", "CO2' OR variable =~ /.*/ --"),
        ("st1; DROP DATABASE contract", "CO2"),
        ("$station", "$variable"),
    ],
)
def test_hostile_query_strings_find_nothing_and_break_nothing(store: Store, station: str, variable: str) -> None:
    store.write(stored("site1", series("st1", [1.0, 2.0])))

    assert store.query_series(station, variable, T0, T0 + HOUR) == []
    assert store.query_series(station, variable, T0, T0 + HOUR, every=timedelta(minutes=1)) == []
    # The data is still there: nothing was dropped or rewritten.
    assert [p.value for p in store.query_series("st1", "CO2", T0, T0 + HOUR)] == [1.0, 2.0]


def test_limit_raises_query_too_large(store: Store) -> None:
    store.write(stored("site1", series("st1", [float(i) for i in range(5)])))

    assert len(store.query_series("st1", "CO2", T0, T0 + HOUR, limit=5)) == 5
    with pytest.raises(QueryTooLarge):
        store.query_series("st1", "CO2", T0, T0 + HOUR, limit=4)


# --- unavailability: each backend made unavailable in the way it really fails ----------------------------------


@contextmanager
def _sqlite_outage(tmp_path: Path) -> Iterator[tuple[Store, Callable[[], None]]]:
    """Another process holding the write lock past our busy timeout is how SQLite becomes unavailable."""
    path = tmp_path / "locked.sqlite"
    store = SqliteStore(path, busy_timeout_s=0.1)
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")

        def release() -> None:
            blocker.execute("ROLLBACK")

        yield store, release
    finally:
        blocker.close()
        store.close()


@contextmanager
def _influx_outage(tmp_path: Path) -> Iterator[tuple[Store, Callable[[], None]]]:
    with running_influxd(tmp_path / "influxd-outage") as influxd:
        store = InfluxStore(influxd.url, database="outage", timeout_s=2)
        try:
            store.write(stored("site1", series("st1", [1.0])))
            influxd.stop()
            yield store, influxd.start
        finally:
            store.close()


Outage = Callable[[Path], AbstractContextManager[tuple[Store, Callable[[], None]]]]


@pytest.mark.parametrize(
    "outage",
    [
        pytest.param(_sqlite_outage, id="sqlite"),
        pytest.param(_influx_outage, id="influx", marks=pytest.mark.integration),
    ],
)
def test_write_raises_store_unavailable_during_an_outage_and_works_after(outage: Outage, tmp_path: Path) -> None:
    late = series("st1", [2.0], start=T0 + timedelta(minutes=1))
    with outage(tmp_path) as (store, recover):
        with pytest.raises(StoreUnavailable) as excinfo:
            store.write(stored("site1", late))
        assert "will retry" in str(excinfo.value) or "unreachable" in str(excinfo.value)
        recover()
        store.write(stored("site1", late))
        assert [p.value for p in store.query_series("st1", "CO2", T0 + timedelta(minutes=1), T0 + HOUR)] == [2.0]


@pytest.mark.integration
def test_influx_queries_and_ping_report_an_outage(tmp_path: Path) -> None:
    with running_influxd(tmp_path / "influxd") as influxd:
        store = InfluxStore(influxd.url, database="outage", timeout_s=2)
        influxd.stop()
        assert store.ping() is False
        with pytest.raises(StoreUnavailable):
            store.query_series("st1", "CO2", T0, T0 + HOUR)
        with pytest.raises(StoreUnavailable):
            store.stations()
        store.close()


# --- flux records ---------------------------------------------------------------------------------------------------

HASH_A, HASH_B = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"


def test_flux_records_round_trip_exactly(store: Store) -> None:
    awkward = {f"X{i}": v for i, v in enumerate(AWKWARD_FLOATS)}
    records = [
        flux_record(end=T0 + timedelta(minutes=30)),
        flux_record(end=T0 + HOUR, values={**awkward, "FC_SSITC_TEST": 2, "N_USED": 35999}, status="partial",
                    reasons=["co2: 4000 of 36000 records missing; its flux is not computed", "ünïcode, \"quotes\""]),
    ]
    store.write_fluxes(records)

    assert store.query_fluxes("st1", T0, T0 + HOUR) == records


def test_rewriting_a_flux_record_replaces_it_whole(store: Store) -> None:
    first = flux_record(values={"FC": -3.0, "H": 100.0, "FC_SSITC_TEST": 0})
    store.write_fluxes([first])
    store.write_fluxes([first])
    corrected = flux_record(values={"FC": None, "LE": 50.0, "FC_SSITC_TEST": 2}, status="partial",
                            reasons=["FC not computed"])
    store.write_fluxes([corrected])

    assert store.query_fluxes("st1", T0, T0 + HOUR) == [corrected]


def test_result_sets_of_different_settings_coexist_and_are_listed(store: Store) -> None:
    ends = [T0 + timedelta(minutes=30 * i) for i in range(1, 5)]
    a = [flux_record(end=e, settings_hash=HASH_A, values={"FC": -float(i)}) for i, e in enumerate(ends)]
    b = [flux_record(end=e, settings_hash=HASH_B, values={"FC": 10.0 + i}) for i, e in enumerate(ends[1:3])]
    store.write_fluxes(a + b)

    assert store.query_fluxes("st1", T0, T0 + 3 * HOUR, settings_hash=HASH_A) == a
    assert store.query_fluxes("st1", T0, T0 + 3 * HOUR, settings_hash=HASH_B) == b
    both = store.query_fluxes("st1", T0, T0 + 3 * HOUR)
    assert [(r.end, r.settings_hash) for r in both] == sorted([(r.end, r.settings_hash) for r in a + b])
    sets = store.flux_result_sets("st1")
    assert [(s.settings_hash, s.engine_version, s.periods, s.first_end, s.last_end, s.site) for s in sets] == [
        (HASH_A, "sinkwatch-ec 0.1.0", 4, ends[0], ends[3], "site1"),
        (HASH_B, "sinkwatch-ec 0.1.0", 2, ends[1], ends[2], "site1"),
    ]


def test_another_engine_version_is_another_result_set(store: Store) -> None:
    old = flux_record(engine_version="sinkwatch-ec 0.1.0", values={"FC": -1.0})
    new = flux_record(engine_version="sinkwatch-ec 0.2.0", values={"FC": -1.5})
    store.write_fluxes([old, new])

    assert store.query_fluxes("st1", T0, T0 + HOUR) == [old, new]
    assert [s.engine_version for s in store.flux_result_sets("st1")] == ["sinkwatch-ec 0.1.0", "sinkwatch-ec 0.2.0"]


def test_flux_window_selects_periods_by_their_end(store: Store) -> None:
    records = [flux_record(end=T0 + timedelta(minutes=30 * i)) for i in range(5)]  # ends T0 .. T0+2h
    store.write_fluxes(records)

    # (start, end]: the period ending at start belongs to the window before.
    assert [r.end for r in store.query_fluxes("st1", T0, T0 + HOUR)] == [r.end for r in records[1:3]]


def test_flux_records_of_other_stations_are_not_mixed_in(store: Store) -> None:
    mine, other = flux_record("st1"), flux_record("st2", values={"FC": 99.0})
    store.write_fluxes([mine, other])

    assert store.query_fluxes("st1", T0, T0 + HOUR) == [mine]
    assert [s.station for s in store.flux_result_sets("st2")] == ["st2"]


@pytest.mark.parametrize("hostile", ["' OR 1=1", 'st1" OR "1"="1', "st1\\' OR 1=1 --", "$station", "/.*/"])
def test_hostile_flux_query_strings_find_nothing(store: Store, hostile: str) -> None:
    store.write_fluxes([flux_record()])

    assert store.query_fluxes(hostile, T0, T0 + HOUR) == []
    assert store.query_fluxes("st1", T0, T0 + HOUR, settings_hash=hostile) == []
    assert store.flux_result_sets(hostile) == []
    assert len(store.query_fluxes("st1", T0, T0 + HOUR)) == 1


def test_flux_limit_raises_query_too_large(store: Store) -> None:
    store.write_fluxes([flux_record(end=T0 + timedelta(minutes=30 * i)) for i in range(1, 4)])

    assert len(store.query_fluxes("st1", T0, T0 + 2 * HOUR, limit=3)) == 3
    with pytest.raises(QueryTooLarge):
        store.query_fluxes("st1", T0, T0 + 2 * HOUR, limit=2)


def test_empty_store_has_no_flux_records(store: Store) -> None:
    assert store.query_fluxes("st1", T0, T0 + HOUR) == []
    assert store.flux_result_sets("st1") == []


# --- refused readings, durability, migration ---------------------------------------------------------------------


def _refused_reading(backend: str, store: Store) -> Reading:
    """A reading this backend's database refuses, made refusable the way it happens in that database."""
    if backend in ("influx", "influx-columns"):
        # InfluxDB types a field per shard by its first write: a qc_reason once written as an integer makes every
        # later string qc_reason in that shard a "field type conflict" (HTTP 400, partial write).
        assert isinstance(store, InfluxStore)
        httpx.post(f"{store.url}/query", data={"q": f'CREATE DATABASE "{store.database}"'}).raise_for_status()
        response = httpx.post(f"{store.url}/write", params={"db": store.database, "precision": "ns"},
                              content=f"readings,station=other qc_reason=7i {to_ns(T0)}".encode())
        assert response.status_code == 204, response.text
        return reading(time=T0 + timedelta(seconds=20), value=5.0, qc=QualityFlag.SUSPECT, qc_reason="warming up")
    if backend == "victoria":
        # VictoriaMetrics' timestamps start at 1970: a time before cannot be held (the ingestor would not pass one
        # on, being before 2000; the store still refuses it alone)
        return reading(time=datetime(1969, 12, 31, 23, 59, tzinfo=UTC), value=5.0)
    # SQLite's CHECK constraints hold the model's rule (a null value exactly when qc is MISSING) even for a reading
    # that bypassed validation
    return Reading.model_construct(**{**dict(reading(time=T0 + timedelta(seconds=20))), "value": None})


def test_a_reading_the_database_refuses_is_reported_and_the_others_are_stored(backend: str, store: Store) -> None:
    good = series("st1", [1.0, 2.0]) + series("st1", [4.0], start=T0 + timedelta(seconds=30))
    refused = _refused_reading(backend, store)

    outcome = store.write(stored("site1", [good[0], good[1], refused, good[2]]))

    assert (outcome.written, outcome.duplicates, outcome.conflicts) == (3, 0, ())
    [rejected] = outcome.rejected
    assert rejected.reading.reading == refused
    assert rejected.reason
    assert [p.value for p in store.query_series("st1", "CO2", T0, T0 + HOUR)] == [1.0, 2.0, 4.0]
    # the refused one can be sent again (after a fix) and is not a conflict with anything
    assert store.write(stored("site1", good)).duplicates == 3


def test_sqlite_commits_are_durable(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "durable.sqlite")
    try:
        # 2 = FULL: the WAL is fsynced at every commit, so an acknowledged reading survives a power cut
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    finally:
        store.close()


FIRST_LAYOUT = """
CREATE TABLE readings (
    site TEXT NOT NULL, station TEXT NOT NULL, sensor TEXT NOT NULL, variable TEXT NOT NULL, unit TEXT NOT NULL,
    time_ns INTEGER NOT NULL, time_source TEXT NOT NULL, value REAL, qc INTEGER NOT NULL,
    clock_synced INTEGER NOT NULL, qc_reason TEXT, PRIMARY KEY (station, variable, time_ns, sensor)
) WITHOUT ROWID;
CREATE TABLE fluxes (
    site TEXT NOT NULL, station TEXT NOT NULL, engine_version TEXT NOT NULL, settings_hash TEXT NOT NULL,
    end_ns INTEGER NOT NULL, start_ns INTEGER NOT NULL, status TEXT NOT NULL, reasons TEXT NOT NULL,
    flux_values TEXT NOT NULL, PRIMARY KEY (station, end_ns, settings_hash, engine_version)
) WITHOUT ROWID;
"""


def test_a_database_of_the_first_layout_is_migrated_with_its_data(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.executescript(FIRST_LAYOUT)
    old.execute("INSERT INTO readings VALUES ('site1','st1','gmp252','CO2','umol mol-1',?,'gateway',1.5,0,1,NULL)",
                (to_ns(T0),))
    old.execute("INSERT INTO fluxes VALUES ('site1','st1','e','0123456789abcdef',?,?,'ok','[]','{\"FC\": -1.0}')",
                (to_ns(T0), to_ns(T0 - HOUR / 2)))
    old.commit()
    old.close()

    store = SqliteStore(path)
    try:
        assert [p.value for p in store.query_series("st1", "CO2", T0, T0 + HOUR)] == [1.5]
        [info] = store.stations()
        assert (info.site, info.station, info.last_reading, info.variables) == ("site1", "st1", T0,
                                                                                 {"CO2": "umol mol-1"})
        assert [r.values for r in store.query_fluxes("st1", T0 - HOUR, T0)] == [{"FC": -1.0}]
        # the new key holds the site: the same reading from another site is another reading
        assert store.write(stored("site2", [reading(value=2.0)])).written == 1
        store.write_fluxes([flux_record(end=T0, site="site2", settings_hash="0123456789abcdef",
                                        engine_version="e")])
        assert sorted(r.site for r in store.query_fluxes("st1", T0 - HOUR, T0)) == ["site1", "site2"]
    finally:
        store.close()
    reopened = SqliteStore(path)  # already current: opened as it is
    try:
        assert len(reopened.query_series("st1", "CO2", T0, T0 + HOUR)) == 2
    finally:
        reopened.close()


def stations_by_grouping(path: Path) -> list[StationInfo]:
    """What stations() answered before the `series` table: every stored reading grouped by series."""
    with closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT site, station, sensor, variable, unit, MAX(time_ns) FROM readings "
                          "GROUP BY site, station, sensor, variable, unit").fetchall()
    return merge_station_rows(rows)


def test_sqlite_stations_equal_the_grouping_of_the_readings_after_mixed_writes(tmp_path: Path) -> None:
    path = tmp_path / "mixed.sqlite"
    store = SqliteStore(path)
    try:
        minute = timedelta(minutes=1)
        first = stored("site1", series("st1", [1.0, None, 3.0], step=minute))
        other_site = stored("site2", series("st1", [5.0], start=T0 + 2 * HOUR))
        store.write_many([(first, None), (other_site, None), (stored("site1", series("st2", [7.0])), None)])
        # the sensor's unit changes: a series of its own, beside the first
        store.write(stored("site1", [reading(time=T0 + HOUR, value=600.0, unit="ppm")]))
        # one call: a resend, a conflict, a reading SQLite refuses at the newest time yet, and an older new one
        refused = Reading.model_construct(**{**dict(reading(time=T0 + 5 * HOUR)), "value": None})
        outcome = store.write(first[:1] + stored("site1", [reading(time=T0 + minute, value=2.0), refused,
                                                           reading(time=T0 - HOUR, value=0.1, sensor="li850")]))
        assert (outcome.written, outcome.duplicates, len(outcome.conflicts), len(outcome.rejected)) == (1, 1, 1, 1)

        infos = store.stations()

        assert infos == stations_by_grouping(path)
        assert {(i.site, i.station): i.last_reading for i in infos} == {
            ("site1", "st1"): T0 + HOUR, ("site1", "st2"): T0, ("site2", "st1"): T0 + 2 * HOUR}
        assert set(infos[0].sensors) == {"gmp252", "li850"}
        # the table itself, row for row (the merged answer shows one unit per variable)
        with closing(sqlite3.connect(path)) as db:
            rows = sorted(db.execute("SELECT * FROM series"))
            assert rows == sorted(db.execute("SELECT site, station, sensor, variable, unit, MAX(time_ns) FROM readings "
                                             "GROUP BY site, station, sensor, variable, unit"))
        assert [(unit, last) for site, station, sensor, _, unit, last in rows
                if (site, station, sensor) == ("site1", "st1", "gmp252")] == [
            ("ppm", to_ns(T0 + HOUR)), ("umol mol-1", to_ns(T0 + 2 * minute))]
    finally:
        store.close()


def test_sqlite_a_batch_of_new_readings_with_one_the_store_holds_is_classified_reading_by_reading(
        tmp_path: Path) -> None:
    # SqliteStore inserts a batch of new identities in one statement; one identity it holds already (with other
    # content) must undo that and leave the batch to the reading-by-reading path: a conflict, nothing overwritten
    path = tmp_path / "held.sqlite"
    store = SqliteStore(path)
    try:
        store.write(stored("site1", [reading(time=T0 + 20 * timedelta(seconds=10), value=1.0)]))
        batch = stored("site1", series("st1", [float(i) for i in range(40)]))

        outcome = store.write(batch)

        assert (outcome.written, outcome.duplicates, len(outcome.conflicts)) == (39, 0, 1)
        assert outcome.conflicts[0].stored.reading.value == 1.0
        values = [p.value for p in store.query_series("st1", "CO2", T0, T0 + HOUR)]
        assert values == [float(i) for i in range(20)] + [1.0] + [float(i) for i in range(21, 40)]
        assert store.stations() == stations_by_grouping(path)
        assert store.write(batch).duplicates == 39
    finally:
        store.close()


def test_a_rolled_back_write_leaves_the_stations_as_they_were(tmp_path: Path) -> None:
    path = tmp_path / "rollback.sqlite"
    store = SqliteStore(path)
    try:
        store.write(stored("site1", series("st1", [1.0])))
        before = store.stations()
        # a ledger item the database cannot take (NOT NULL) fails the whole call after its readings went in
        broken = dataclasses.replace(ledger_item(1), signature=None)  # type: ignore[arg-type]
        with pytest.raises(StoreUnavailable):
            store.write(stored("site1", series("st1", [2.0], start=T0 + HOUR, variable="TS")), ledger=broken)

        assert store.stations() == before == stations_by_grouping(path)
    finally:
        store.close()


def test_a_database_without_the_series_table_gets_it_filled_from_its_readings(tmp_path: Path) -> None:
    path = tmp_path / "v2.sqlite"
    store = SqliteStore(path)
    store.write(stored("site1", series("st1", [1.0, 2.0]) + series("st1", [3.0], variable="TS", start=T0 + HOUR)))
    store.write(stored("site2", series("st9", [4.0])))
    store.close()
    with closing(sqlite3.connect(path)) as db:  # as the layout before the table left it
        db.execute("DROP TABLE series")
        db.execute("PRAGMA user_version = 2")
        db.commit()

    migrated = SqliteStore(path)
    try:
        with closing(sqlite3.connect(path)) as db:
            assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        assert migrated.stations() == stations_by_grouping(path)
        assert [(i.site, i.station, i.last_reading) for i in migrated.stations()] == [
            ("site1", "st1", T0 + HOUR), ("site2", "st9", T0)]
        # and kept from then on
        migrated.write(stored("site2", series("st9", [5.0], start=T0 + 3 * HOUR)))
        assert migrated.stations() == stations_by_grouping(path)
        assert migrated.stations()[1].last_reading == T0 + 3 * HOUR
    finally:
        migrated.close()


# --- the ledger of signed items (gateway/central/store/ledger.py) ----------------------------------------------------


def ledger_item(seq: int, *, channel: str = "readings", station: str = "st1", payload: bytes | None = b"{}",
                previous: LedgerItem | None = None) -> LedgerItem:
    at = to_ns(T0) + seq * 1_000_000_007  # the station's signing time: odd nanoseconds must survive
    return LedgerItem(
        site="site1", station=station, channel=channel, at=at, epoch="0123456789abcdef", seq=seq,
        prev_seq=previous.seq if previous else None, prev_at=previous.at if previous else None,
        prev_digest=previous.digest if previous else None, key_id="fedcba9876543210",
        payload_sha256=f"{seq:064x}", content="-", signature="c2ln" * 22, digest=f"{seq + 1000:064x}",
        received=at + 5, data_start=at - 10**9, data_end=at - 1,
        payload=compress_payload(payload) if payload is not None else None)


def test_a_ledger_item_is_written_with_its_readings_and_reads_back_exactly(store: Store) -> None:
    readings = series("st1", AWKWARD_FLOATS)
    payload = b'{"readings": "the exact signed bytes \\u00e9"}'
    first = ledger_item(1, payload=payload)
    second = ledger_item(2, previous=first)
    store.write(stored("site1", readings[:5]), ledger=first)
    store.write(stored("site1", readings[5:]), ledger=second)

    assert store.ledger_at("site1", "st1", "readings", first.at) == first
    assert store.ledger_at("site1", "st1", "readings", first.at + 1) is None
    assert store.ledger_after("site1", "st1", "readings", first.at) == second
    assert store.ledger_after("site1", "st1", "readings", second.at) is None
    assert store.ledger_last("site1", "st1", "readings") == second
    assert store.ledger_last("site1", "st1", "fluxes") is None
    assert store.ledger_from("site1", "st1", "readings", first.at, 3) == [first, second]
    assert store.ledger_from("site1", "st1", "readings", first.at + 1, 3) == [second]
    assert store.ledger_from("site1", "st1", "readings", first.at, 1) == [first]
    assert store.ledger_from("site1", "st1", "fluxes", 0, 3) == []
    read = store.ledger_items("st1", first.at, second.at + 1)
    assert read == [first, second]
    assert read[0].payload_bytes() == payload
    assert store.ledger_items("st1", first.at + 1, second.at) == []
    assert store.ledger_items("st1", 0, second.at + 1, site="other") == []


def test_ledger_windows_are_the_windows_of_ledger_from_in_one_call(store: Store) -> None:
    first = ledger_item(1, payload=b'{"a kilobyte of readings": 1}')
    second = ledger_item(2, previous=first)
    other = ledger_item(3, station="st2")
    store.write([], ledger=first)
    store.write([], ledger=second)
    store.write_ledger([other])
    store.note_set_aside(second, '{"0":"implausible_time"}')
    starts = [("site1", "st1", "readings", first.at), ("site1", "st2", "readings", 0),
              ("site1", "st1", "readings", first.at + 1), ("site1", "st1", "fluxes", 0),
              ("site2", "st1", "readings", 0), ("site1", "st1", "readings", first.at)]

    windows = store.ledger_windows(starts, 3)

    def placing(item: LedgerItem) -> LedgerItem:  # what placing needs: the payload and set-aside note may be left out
        return dataclasses.replace(item, payload=None, set_aside=None)

    expected = [store.ledger_from(*start, 3) for start in starts]
    assert [[placing(i) for i in window] for window in windows] == [[placing(i) for i in w] for w in expected]
    assert [[i.seq for i in window] for window in windows] == [[1, 2], [3], [2], [], [], [1, 2]]
    assert [[placing(i) for i in w] for w in store.ledger_windows(starts[:1], 1)] == [[placing(first)]]


def test_ledger_newest_ats_are_ledger_newest_at_of_each_chain_in_one_call(store: Store) -> None:
    first = ledger_item(1)
    second = ledger_item(2, previous=first)
    store.write([], ledger=first)
    store.write([], ledger=second)
    store.write_ledger([ledger_item(3, station="st2")])
    chains = [("site1", "st1", "readings"), ("site1", "st2", "readings"), ("site1", "st1", "fluxes"),
              ("site2", "st1", "readings"), ("site1", "st1", "readings")]

    newest = store.ledger_newest_ats(chains)

    assert newest == [store.ledger_newest_at(*chain) for chain in chains]
    assert newest == [second.at, ledger_item(3, station="st2").at, None, None, second.at]
    assert store.ledger_newest_ats([]) == []


def test_ledger_items_of_every_channel_and_a_set_aside_note(store: Store) -> None:
    flux = ledger_item(3, channel="fluxes")
    raw = ledger_item(4, channel="raw", payload=None)
    readings = ledger_item(5)
    store.write_fluxes([flux_record("st1", end=T0 + HOUR)], ledger=flux)
    store.write_ledger([raw])
    store.write([], ledger=readings)
    store.note_set_aside(readings, '{"0":"implausible_time"}')

    items = store.ledger_items("st1", 0, readings.at + 1)
    assert [i.channel for i in items] == ["fluxes", "raw", "readings"]
    assert items[1].payload is None
    assert items[2].set_aside == '{"0":"implausible_time"}'
    assert store.query_fluxes("st1", T0, T0 + HOUR)  # the record went with its ledger item


def test_chain_events_are_kept_once_per_item_and_kind(store: Store) -> None:
    item = ledger_item(7)
    events = [ChainEvent("site1", "st1", "readings", "duplicate", item.at, 7, item.digest, item.received + n,
                         f"arrived again ({n})") for n in (1, 2)]
    gap = ChainEvent("site1", "st1", "readings", "gap", item.at, 7, item.digest, item.received, "item 6 missing")
    store.write_chain_events([events[0], gap])
    store.write_chain_events([events[1]])

    found = store.chain_events("st1", item.at, item.at + 1)
    assert sorted((e.kind, e.detail) for e in found) == [("duplicate", "arrived again (2)"), ("gap", "item 6 missing")]
    assert store.chain_events("st1", item.at + 1, item.at + 2) == []


def test_held_readings_show_what_the_store_holds_for_an_audit(store: Store) -> None:
    readings = [*series("st1", AWKWARD_FLOATS), reading(time=T0 + HOUR, value=1.5, qc_reason="warm-up")]
    store.write(stored("site1", readings))
    absent = stored("site1", [reading(time=T0 + 2 * HOUR, value=1.0)])

    held = store.held_readings([*stored("site1", readings), *absent])

    assert len(held) == len(readings)
    for item in stored("site1", readings):
        assert reading_content(held[reading_identity(item)]) == reading_content(item)
