"""The chaos reconciliation itself: it finds a lost, a duplicated and an altered reading, and excuses only what a
kill or a pulled line provably took (gateway/testing/chaos/ledger.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from gateway.testing.chaos.ledger import Faults, LinePull, StationKill, reconcile
from gateway.testing.chaos.site import SITE, STATION
from gateway.testing.chaos.wal import inspect_wal
from gateway.testing.counting_sensor import ServedPoll, co2_of, temperature_of

SENSOR = "co2_a240"


class Store:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def readings(self, since_ns: int = 0) -> list[dict[str, Any]]:
        return [row for row in self.rows if row["time"] >= since_ns]

    def add(self, n: int, *, time_ns: int | None = None, co2: float | None = None, temperature: float | None = None,
            unit: str = "umol mol-1", variables: tuple[str, ...] = ("CO2", "T_PROBE")) -> None:
        stamp = time_ns if time_ns is not None else n * 1_000_000_000
        common = {"site": SITE, "station": STATION, "sensor": SENSOR, "time": stamp, "qc": 0,
                  "time_source": "gateway"}
        if "CO2" in variables:
            self.rows.append({**common, "variable": "CO2", "unit": unit, "value": co2 if co2 is not None
                              else co2_of(n)})
        if "T_PROBE" in variables:
            self.rows.append({**common, "variable": "T_PROBE", "unit": "degC",
                              "value": temperature if temperature is not None else temperature_of(n)})


def served(tmp_path: Path, polls: range) -> Path:
    log = tmp_path / "served.jsonl"
    log.write_text("".join(ServedPoll(240, n, co2_of(n), temperature_of(n), float(n), 1e9 + n).to_json() + "\n"
                           for n in polls), encoding="utf-8")
    return log


def test_everything_served_and_stored_once_is_exact(tmp_path: Path) -> None:
    store = Store()
    for n in range(1, 11):
        store.add(n)
    result = reconcile(served(tmp_path, range(1, 11)), store, Faults())
    assert result.exact and (result.committed_readings, result.stored_readings) == (20, 20)


def test_a_missing_reading_is_lost_unless_a_fault_explains_it(tmp_path: Path) -> None:
    store = Store()
    for n in (1, 2, 3, 5, 6):
        store.add(n)
    store.add(4, variables=("CO2",))  # its temperature reading never arrived
    log = served(tmp_path, range(1, 8))
    result = reconcile(log, store, Faults())
    assert (result.lost, result.exact) == (1 + 2, False)  # T_PROBE of 4, both readings of 7
    # a station killed at t = 7.5 that had committed up to poll 6: poll 7 was in flight
    result = reconcile(log, store, Faults(kills=[StationKill(at=7.5, frontier={SENSOR: 6})]))
    assert (result.lost, result.in_flight_at_kill) == (1, 1)
    # but not when the buffer it left held poll 7 (committed, then lost), nor when the kill came long after
    assert reconcile(log, store, Faults(kills=[StationKill(at=7.5, frontier={SENSOR: 7})])).lost == 3
    assert reconcile(log, store, Faults(kills=[StationKill(at=30.0, frontier={})])).lost == 3


def test_a_poll_is_not_excused_when_a_later_one_was_stored(tmp_path: Path) -> None:
    store = Store()
    for n in (1, 2, 4):
        store.add(n)
    # poll 3 missing, poll 4 stored and served before the kill: 3 was committed (the writer keeps order)
    result = reconcile(served(tmp_path, range(1, 5)), store, Faults(kills=[StationKill(at=4.5, frontier={})]))
    assert (result.lost, result.in_flight_at_kill) == (2, 0)


def test_a_reply_to_a_dead_station_and_a_pulled_line_are_in_flight(tmp_path: Path) -> None:
    store = Store()
    for n in (1, 2, 4):
        store.add(n)
    log = served(tmp_path, range(1, 5))
    kill = StationKill(at=2.9, frontier={SENSOR: 2}, restarted=3.5)  # poll 3 answered at 3.0, after the death
    assert reconcile(log, store, Faults(kills=[kill])).served_to_dead_station == 1
    assert reconcile(log, store, Faults(pulls=[LinePull(3.2, 3.8)])).in_flight_at_pull == 1
    assert reconcile(log, store, Faults(pulls=[LinePull(8.0, 9.0)])).lost == 2


def test_duplicates_by_identity_and_by_poll_are_counted(tmp_path: Path) -> None:
    store = Store()
    for n in (1, 2, 3):
        store.add(n)
    store.add(2, unit="ppm", variables=("CO2",))  # same identity, another series (unit is a tag in InfluxDB)
    store.add(3, time_ns=99_000_000_000)  # the same poll stored again under another time
    result = reconcile(served(tmp_path, range(1, 4)), store, Faults())
    # one repeated identity, and poll 3's two readings once more
    assert (result.duplicated, result.altered) == (1 + 2, 1) and not result.exact  # the unit ppm is an alteration


def test_altered_values_units_and_unknown_readings_are_counted(tmp_path: Path) -> None:
    store = Store()
    store.add(1, temperature=temperature_of(1) + 0.001)
    store.add(2, unit="ppm")
    store.add(3, co2=round(co2_of(3), 2))  # rounded on the way: decodes to no poll
    store.add(4, co2=co2_of(40))  # a value never served
    result = reconcile(served(tmp_path, range(1, 5)), store, Faults())
    assert result.altered >= 4 and not result.exact


def test_a_wal_with_a_transaction_cut_short_is_recognised(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "b.sqlite", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA cache_size=1")  # spill an open transaction's pages into the WAL
    db.execute("CREATE TABLE t(x)")
    db.execute("INSERT INTO t VALUES (1)")
    committed = inspect_wal(tmp_path / "b.sqlite-wal")
    assert committed.frames > 0 and not committed.torn
    db.execute("BEGIN")
    db.executemany("INSERT INTO t VALUES (?)", [("x" * 3000,)] * 50)
    # what a process killed now would leave: frames of an uncommitted transaction after the last commit
    torn = inspect_wal(tmp_path / "b.sqlite-wal")
    assert torn.torn and torn.committed_frames == committed.frames
    db.execute("COMMIT")
    assert not inspect_wal(tmp_path / "b.sqlite-wal").torn
    db.close()
