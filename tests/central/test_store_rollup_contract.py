"""The hourly rollup (gateway/central/store/influx_rollup.py): hourly reads through it equal the readings' own
answer, bit for bit, after late readings, resends, conflicts, a changed unit, a reading written while its hour is
recomputed (another process) and a job killed half-way. The equality tests run on every store (SQLite and
VictoriaMetrics have no rollup: there they check the plain hourly read against the list query); the rest need
InfluxDB. Same fixtures as test_store_contract.py, whose InfluxStore reads through the rollup."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import cast

import pytest

from gateway.central.service import wait_for
from gateway.central.store import AGGREGATES, Aggregate, InfluxStore, Store
from gateway.central.store.base import to_ns
from gateway.central.store.influx_rollup import (
    DIRTY_MEASUREMENT,
    HOUR_NS,
    ROLLUP_MEASUREMENT,
    RollupReport,
)
from gateway.model import Reading
from gateway.testing.services import InfluxInstance

from .helpers import T0, reading, series, stored
from .test_store_contract import AWKWARD_FLOATS, backend, store

__all__ = ["backend", "store"]  # the fixtures, re-exported so pytest finds them here

HOUR = timedelta(hours=1)
EVERY_AGGREGATE = cast(tuple[Aggregate, ...], AGGREGATES)
STEP = timedelta(seconds=10)
# two stretches a week apart: a read of both spans several of InfluxDB's shards (7 days each by default)
EARLY = T0 - timedelta(days=12)
LATE = T0 - timedelta(days=3)
FINITE: list[float | None] = [v for v in AWKWARD_FLOATS if v is None or abs(v) < 1e300]  # no overflowing mean


def values_of(hours: int, offset: int = 0) -> list[float | None]:
    values = [FINITE[(i + offset) % len(FINITE)] for i in range(hours * 360)]
    values[360:720] = [None] * 360  # an hour of missing values only: a row with a qc and no value
    return values


def write_two_stretches(store: Store) -> list[Reading]:
    readings = [*series("st1", values_of(4), start=EARLY), *series("st1", values_of(3, 5), start=LATE)]
    store.write(stored("site1", readings))
    return readings


def roll_up(store: Store) -> RollupReport | None:
    return store.roll_up() if isinstance(store, InfluxStore) else None


def hourly(store: Store, start: datetime, end: datetime, aggregate: Aggregate = "mean") -> list[tuple[object, ...]]:
    return [tuple(row) for chunk in store.iter_series("st1", "CO2", start, end, HOUR, aggregate, site="site1",
                                                     sensor="gmp252") for row in chunk]


def raw_hourly(store: Store, start: datetime, end: datetime, aggregate: Aggregate = "mean") -> list[tuple[object, ...]]:
    """The readings' own answer (the list query never reads the rollup)."""
    return [(to_ns(p.time), p.value, p.qc) for p in store.query_series("st1", "CO2", start, end, HOUR, aggregate,
                                                                       site="site1", sensor="gmp252")]


def assert_hourly_equal(store: Store, start: datetime, end: datetime) -> None:
    for aggregate in EVERY_AGGREGATE:
        expected = raw_hourly(store, start, end, aggregate)
        assert expected, aggregate
        assert hourly(store, start, end, aggregate) == expected, aggregate


# an unaligned range over both stretches: partial first and last hours come from the readings
START = EARLY + timedelta(minutes=7)
END = LATE + 3 * HOUR - timedelta(minutes=13)


def test_hourly_reads_equal_the_readings_after_the_rollup(store: Store) -> None:
    write_two_stretches(store)
    report = roll_up(store)

    if report is not None:
        assert report.hours_rolled == 7 and report.mixed == 0
    assert_hourly_equal(store, START, END)
    assert_hourly_equal(store, EARLY, LATE + 3 * HOUR)  # aligned: every hour from the rollup


def test_late_readings_resends_and_conflicts_keep_hourly_reads_exact(store: Store) -> None:
    readings = write_two_stretches(store)
    roll_up(store)
    # late: new readings between the stored ones of a rolled-up hour; a resend of stored ones; a conflict
    between = [reading(time=EARLY + 2 * HOUR + timedelta(seconds=5 + 10 * i), value=1000.0 + i) for i in range(30)]
    outcome = store.write(stored("site1", [*between, *readings[:50],
                                           reading(time=readings[60].time, value=-1.0)]))
    assert (outcome.written, outcome.duplicates, len(outcome.conflicts)) == (30, 50, 1)

    assert_hourly_equal(store, START, END)  # the late hour from the readings until the job has run
    roll_up(store)
    assert_hourly_equal(store, START, END)
    assert_hourly_equal(store, EARLY, LATE + 3 * HOUR)


@pytest.mark.parametrize("every", [timedelta(hours=2), timedelta(hours=3), timedelta(days=1)])
def test_windows_of_several_hours_equal_the_readings(store: Store, every: timedelta) -> None:
    readings = write_two_stretches(store)
    roll_up(store)
    # a late reading in a rolled-up hour, a resend and a conflict: the window holding them from the readings
    store.write(stored("site1", [reading(time=EARLY + 2 * HOUR + timedelta(seconds=5), value=1e6), *readings[:10],
                                 reading(time=readings[20].time, value=-1.0)]))
    for start, end in ((START, END), (EARLY - timedelta(days=1), LATE + timedelta(days=1))):
        for aggregate in EVERY_AGGREGATE:
            expected = [(to_ns(p.time), p.value, p.qc) for p in store.query_series(
                "st1", "CO2", start, end, every, aggregate, site="site1", sensor="gmp252")]
            assert expected, aggregate
            assert [tuple(row) for chunk in store.iter_series("st1", "CO2", start, end, every, aggregate,
                                                              site="site1", sensor="gmp252")
                    for row in chunk] == expected, aggregate


def test_an_hour_with_two_units_keeps_hourly_reads_exact(store: Store) -> None:
    write_two_stretches(store)
    # the same sensor's variable in another unit within one hour: a second InfluxDB series in that hour
    other = [reading(time=EARLY + 3 * HOUR + timedelta(seconds=3 + 10 * i), value=0.4 + i, unit="ppm")
             for i in range(20)]
    store.write(stored("site1", other))
    report = roll_up(store)

    if report is not None:
        assert report.mixed == 1
    assert_hourly_equal(store, START, END)


# --- InfluxDB: what the rollup does, where the equality alone cannot tell ------------------------------------------

influx_only = pytest.mark.parametrize("backend", [pytest.param("influx", marks=pytest.mark.integration)])


def marks_of(store: InfluxStore) -> dict[int, int]:
    found = store._query(f"SELECT gen FROM {DIRTY_MEASUREMENT} WHERE station = 'st1'")
    return {int(t): int(g) for series_ in found for t, g in series_.get("values") or ()}


def set_row_mean(store: InfluxStore, hour_ns: int, mean: float) -> None:
    store._write_body(f"{ROLLUP_MEASUREMENT},sensor=gmp252,site=site1,station=st1,variable=CO2 mean={mean} {hour_ns}")


@influx_only
def test_clean_hours_come_from_the_rollup_and_marked_ones_from_the_readings(store: Store) -> None:
    assert isinstance(store, InfluxStore)
    write_two_stretches(store)
    store.roll_up()
    hour = to_ns(EARLY + 2 * HOUR)
    assert set(marks_of(store).values()) == {0}  # the first write's marks, recomputed and cleared
    set_row_mean(store, hour, 12345.5)  # a row no reading made: seen only if the read uses the rollup

    assert (hour, 12345.5) in [row[:2] for row in hourly(store, EARLY, LATE)]

    store.write(stored("site1", [reading(time=EARLY + 2 * HOUR + timedelta(seconds=1), value=7.0)]))  # late
    assert marks_of(store)[hour] > 0
    assert hourly(store, EARLY, LATE) == raw_hourly(store, EARLY, LATE)
    store.roll_up()
    assert marks_of(store)[hour] == 0
    assert hourly(store, EARLY, LATE) == raw_hourly(store, EARLY, LATE)


@influx_only
def test_windows_of_several_hours_but_means_come_from_the_rollup(store: Store) -> None:
    assert isinstance(store, InfluxStore)
    write_two_stretches(store)
    store.roll_up()
    set_row_max = (f"{ROLLUP_MEASUREMENT},sensor=gmp252,site=site1,station=st1,variable=CO2 max=1e300 "
                   f"{to_ns(EARLY + 2 * HOUR)}")
    store._write_body(set_row_max)  # a maximum no reading has: seen only through the rollup
    start, end = EARLY, EARLY + 4 * HOUR

    def rows(aggregate: Aggregate) -> list[tuple[object, ...]]:
        return [tuple(row) for chunk in store.iter_series("st1", "CO2", start, end, 2 * HOUR, aggregate,
                                                           site="site1", sensor="gmp252") for row in chunk]

    assert (to_ns(EARLY + 2 * HOUR), 1e300) in [row[:2] for row in rows("max")]
    means = [(to_ns(p.time), p.value, p.qc) for p in store.query_series("st1", "CO2", start, end, 2 * HOUR,
                                                                        site="site1", sensor="gmp252")]
    assert rows("mean") == means  # a mean over two hours always from the readings


@influx_only
def test_only_late_readings_mark_their_hour(store: Store, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    assert isinstance(store, InfluxStore)
    now = T0 + 90 * timedelta(minutes=1)
    live = InfluxStore(store.url, database=store.database, write_guard=tmp_path / "write-guard",
                       clock=lambda: now.timestamp())
    try:
        # 11:30: the hour 10:00-11:00 is not late yet (MARK_LAG: hours before 10:00 are); 08:xx is
        live.write(stored("site1", series("st1", [1.0, 2.0], start=T0 + timedelta(minutes=50))))
        assert marks_of(store) == {}
        live.write(stored("site1", series("st1", [3.0], start=T0 - 2 * HOUR + timedelta(minutes=5))))
        assert list(marks_of(store)) == [to_ns(T0 - 2 * HOUR)]
    finally:
        live.close()


@influx_only
def test_hours_of_two_units_are_always_read_from_the_readings(store: Store) -> None:
    assert isinstance(store, InfluxStore)
    write_two_stretches(store)
    store.write(stored("site1", [reading(time=EARLY + 3 * HOUR + timedelta(seconds=3), value=0.4, unit="ppm")]))
    store.roll_up()
    hour = to_ns(EARLY + 3 * HOUR)

    assert marks_of(store)[hour] == -1
    set_row_mean(store, hour, 12345.5)
    assert hourly(store, EARLY, LATE) == raw_hourly(store, EARLY, LATE)


WRITER = """
import sys
from datetime import datetime
from pathlib import Path
from gateway.central.store import InfluxStore, StoredReading
from gateway.model import QualityFlag, Reading, TimeSource

url, guard, time_text = sys.argv[1:4]
store = InfluxStore(url, database="contract", write_guard=Path(guard))
item = Reading(station="st1", sensor="gmp252", variable="CO2", value=99.0, unit="umol mol-1",
               time=datetime.fromisoformat(time_text), time_source=TimeSource.GATEWAY, clock_synced=True,
               qc=QualityFlag.GOOD)
print(store.write([StoredReading(site="site1", reading=item)]).written)
store.close()
"""


@influx_only
def test_a_reading_written_while_its_hour_is_recomputed_keeps_the_hour_marked(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(store, InfluxStore)
    write_two_stretches(store)
    store.roll_up()
    late_hour = EARLY + HOUR
    store.write(stored("site1", [reading(time=late_hour + timedelta(seconds=2), value=5.0)]))
    compute = store._compute
    written: list[str] = []

    def compute_then_another_process_writes(*args: object) -> object:
        answer = compute(*args)  # type: ignore[arg-type]
        if not written:  # another ingest worker stores a late reading of the hour just recomputed
            child = subprocess.run([sys.executable, "-c", WRITER, store.url, str(tmp_path / "write-guard"),
                                    (late_hour + timedelta(seconds=4)).isoformat()],
                                   capture_output=True, text=True, timeout=60, check=True)
            written.append(child.stdout.strip())
        return answer

    monkeypatch.setattr(store, "_compute", compute_then_another_process_writes)
    report = store.roll_up()

    assert written == ["1"] and report.marks_kept == 1
    assert marks_of(store)[to_ns(late_hour)] > 0  # the hour's row is stale, and it says so
    assert hourly(store, EARLY, LATE) == raw_hourly(store, EARLY, LATE)
    monkeypatch.undo()
    store.roll_up()
    assert marks_of(store)[to_ns(late_hour)] == 0
    assert hourly(store, EARLY, LATE) == raw_hourly(store, EARLY, LATE)


@influx_only
@pytest.mark.parametrize("killed_at", ["before the state", "before the marks are cleared"])
def test_a_job_killed_half_way_leaves_nothing_stale(store: Store, monkeypatch: pytest.MonkeyPatch,
                                                     killed_at: str) -> None:
    assert isinstance(store, InfluxStore)
    write_two_stretches(store)
    if killed_at == "before the marks are cleared":
        store.roll_up()
        store.write(stored("site1", [reading(time=EARLY + HOUR + timedelta(seconds=2), value=5.0)]))
    write_body = store._write_body

    def killed(body: str) -> None:
        if (killed_at == "before the state" and body.startswith("readings_rollup,")) or (
                killed_at == "before the marks are cleared" and body.startswith(f"{DIRTY_MEASUREMENT},")):
            raise KeyboardInterrupt  # what the process does next never happens
        write_body(body)

    monkeypatch.setattr(store, "_write_body", killed)
    with pytest.raises(KeyboardInterrupt):
        store.roll_up()
    monkeypatch.undo()
    assert hourly(store, START, END) == raw_hourly(store, START, END)
    if killed_at == "before the state":
        set_row_mean(store, to_ns(EARLY + 2 * HOUR), 12345.5)  # rows written, `through` not: rows not served
        assert hourly(store, START, END) == raw_hourly(store, START, END)
    store.roll_up()
    assert set(marks_of(store).values()) == {0}
    assert_hourly_equal(store, START, END)


@influx_only
def test_the_job_waits_for_a_writer_holding_the_station(store: Store, tmp_path: Path) -> None:
    """A writer that decided before the job's barrier (so did not mark its reading: not late on its clock) has
    written when the job reads the hours."""
    assert isinstance(store, InfluxStore)
    # written as they came in: on the writer's clock nothing is late, so nothing is marked
    live = InfluxStore(store.url, database=store.database, write_guard=tmp_path / "write-guard",
                       clock=lambda: EARLY.timestamp())
    try:
        live.write(stored("site1", series("st1", values_of(4), start=EARLY)))
    finally:
        live.close()
    assert marks_of(store) == {}
    hour = to_ns(EARLY + 2 * HOUR)
    done = threading.Event()

    def run_job() -> None:
        store.roll_up()
        done.set()

    job = threading.Thread(target=run_job)
    with store._guard.hold([("site1", "st1")]):
        job.start()
        assert not done.wait(1.0)  # it cannot pass the barrier while the station is held
        line = ("readings,sensor=gmp252,site=site1,station=st1,time_source=gateway,unit=umol\\ mol-1,"
                f"variable=CO2 clock_synced=true,qc=0i,value=1e15 {hour + 7 * 10**9}")
        store._write_body(line)  # the unmarked write of a writer that decided before the barrier
    job.join(60)
    assert done.is_set()
    assert marks_of(store) == {}
    assert (hour, 1e15) in [row[:2] for row in hourly(store, EARLY, EARLY + 4 * HOUR, "max")]
    assert_hourly_equal(store, EARLY, EARLY + 4 * HOUR)


@influx_only
def test_a_read_with_many_marked_runs_reads_the_readings(store: Store) -> None:
    assert isinstance(store, InfluxStore)
    start = EARLY - timedelta(days=4)
    store.write(stored("site1", series("st1", [float(i) for i in range(200)], start=start, step=HOUR)))
    store.roll_up()
    # every other hour marked again: more separate runs than a read merges
    store.write(stored("site1", [reading(time=start + 2 * i * HOUR + timedelta(seconds=1), value=-1.0)
                                 for i in range(100)]))
    assert len([g for g in marks_of(store).values() if g > 0]) == 100
    assert hourly(store, start, start + 200 * HOUR) == raw_hourly(store, start, start + 200 * HOUR)
    assert HOUR_NS == 3600 * 10**9


@pytest.mark.integration
def test_the_rollup_lives_in_the_store_retention_policy(influxd: InfluxInstance, tmp_path: Path) -> None:
    url = influxd.url
    admin = InfluxStore(url, database="kept")
    admin._query_many(['CREATE DATABASE "kept"', 'CREATE RETENTION POLICY "ten_years" ON "kept" DURATION 3650d '
                       "REPLICATION 1"])
    admin.close()
    store = InfluxStore(url, database="kept", retention_policy="ten_years", write_guard=tmp_path / "guard",
                        rollup_reads=True)
    try:
        write_two_stretches(store)
        assert store.roll_up().hours_rolled == 7
        assert store._query('SELECT count("mean") FROM "ten_years".readings_1h')
        assert not store._query("SELECT count(mean) FROM readings_1h")  # nothing in the default policy
        assert_hourly_equal(store, START, END)
    finally:
        store.close()


JOB = """
import sys
import time
from pathlib import Path
from gateway.central.store import InfluxStore

store = InfluxStore(sys.argv[1], database="contract", write_guard=Path(sys.argv[2]))
write_rows = store._write_rows

def slowly(*args):
    write_rows(*args)
    time.sleep(0.3)  # long enough to be killed between two weeks

store._write_rows = slowly
store.roll_up()
"""


@influx_only
def test_a_job_killed_with_sigkill_leaves_nothing_stale(store: Store, tmp_path: Path) -> None:
    assert isinstance(store, InfluxStore)
    start = T0 - timedelta(days=60)  # nine weeks: the job writes its state nine times
    store.write(stored("site1", series("st1", [float(i % 17) + 0.1 for i in range(60 * 24 * 6)], start=start,
                                       step=timedelta(minutes=10))))
    job = subprocess.Popen([sys.executable, "-c", JOB, store.url, str(tmp_path / "write-guard")])
    try:
        # killed once it has written its state for the first week (and is rolling the next)
        assert wait_for(lambda: bool(store._query("SELECT last(through) FROM readings_rollup")) or
                        job.poll() is not None, 60)
        job.kill()
    finally:
        job.wait(30)
    end = T0 - timedelta(days=1)

    assert job.returncode == -9  # killed, not finished
    assert hourly(store, start, end) == raw_hourly(store, start, end)
    store.roll_up()  # the guard's locks died with the job; a new run completes what it left
    assert set(marks_of(store).values()) == {0}
    assert_hourly_equal(store, start + timedelta(minutes=7), end)
