"""SqliteStore's alert events and reading statistics (`gateway.central.store.alerts`).

    alert_events  one row per state change; key (rule, site, station, subject, time_ns)

`reading_stats` reads the readings table through its primary key (station, variable, time_ns, ...): one range per
variable, however long the history is.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.central.store.alerts import AlertEvent, ReadingStats
from gateway.central.store.base import StoreUnavailable, check_window, from_ns, to_ns

ALERT_SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_events (
    rule TEXT NOT NULL,
    site TEXT NOT NULL,
    station TEXT NOT NULL,
    subject TEXT NOT NULL,
    time_ns INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('firing', 'ok')),
    value REAL,
    threshold REAL,
    message TEXT NOT NULL,
    PRIMARY KEY (rule, site, station, subject, time_ns)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS alert_events_by_time ON alert_events(time_ns);
"""

_COLUMNS = "rule, site, station, subject, time_ns, state, value, threshold, message"


def _event(row: tuple[Any, ...]) -> AlertEvent:
    rule, site, station, subject, time_ns, state, value, threshold, message = row
    return AlertEvent(rule=rule, site=site, station=station, subject=subject, state=state, time=from_ns(int(time_ns)),
                      value=None if value is None else float(value),
                      threshold=None if threshold is None else float(threshold), message=message)


class SqliteAlertsMixin:
    """Alert methods of SqliteStore; they share its connection and lock."""

    path: Path
    _conn: sqlite3.Connection
    _lock: threading.Lock

    def _create_alert_tables(self) -> None:
        for statement in ALERT_SCHEMA.split(";"):
            if statement.strip():
                self._conn.execute(statement)

    def _alert_rows(self, sql: str, params: Sequence[object]) -> list[Any]:
        with self._lock:
            try:
                return list(self._conn.execute(sql, tuple(params)).fetchall())
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"SQLite database {self.path} failed a query: {exc}") from exc

    def write_alert_events(self, events: list[AlertEvent]) -> None:
        rows = [(e.rule, e.site, e.station, e.subject, to_ns(e.time), e.state, e.value, e.threshold, e.message)
                for e in events]
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    self._conn.executemany(f"INSERT OR REPLACE INTO alert_events ({_COLUMNS}) "
                                           "VALUES (?,?,?,?,?,?,?,?,?)", rows)
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"SQLite database {self.path} refused the write: {exc}; will retry") from exc

    def alert_events(self, start: datetime, end: datetime, *, station: str | None = None) -> list[AlertEvent]:
        check_window(start, end, "mean")
        rows = self._alert_rows(
            f"SELECT {_COLUMNS} FROM alert_events WHERE time_ns >= ? AND time_ns < ? AND (? IS NULL OR station = ?) "
            "ORDER BY time_ns, rule, site, station, subject", (to_ns(start), to_ns(end), station, station))
        return [_event(row) for row in rows]

    def latest_alert_events(self) -> list[AlertEvent]:
        rows = self._alert_rows(
            f"SELECT {_COLUMNS} FROM alert_events AS e WHERE time_ns = (SELECT MAX(time_ns) FROM alert_events AS l "
            "WHERE l.rule = e.rule AND l.site = e.site AND l.station = e.station AND l.subject = e.subject) "
            "ORDER BY rule, site, station, subject", ())
        return [_event(row) for row in rows]

    def reading_stats(self, station: str, variables: Sequence[str], start: datetime, end: datetime, *,
                      max_qc: int = 1) -> list[ReadingStats]:
        check_window(start, end, "mean")
        names = sorted(set(variables))
        if not names:
            return []
        marks = ",".join("?" * len(names))
        rows = self._alert_rows(
            "SELECT site, sensor, variable, MIN(unit), COUNT(value), MIN(value), MAX(value), AVG(value) FROM readings "
            f"WHERE station = ? AND variable IN ({marks}) AND time_ns >= ? AND time_ns < ? AND value IS NOT NULL "
            "AND qc <= ? GROUP BY site, sensor, variable ORDER BY site, sensor, variable",
            (station, *names, to_ns(start), to_ns(end), int(max_qc)))
        return [ReadingStats(site=site, sensor=sensor, variable=variable, unit=unit, count=int(n),
                             minimum=float(lo), maximum=float(hi), mean=float(mean))
                for site, sensor, variable, unit, n, lo, hi, mean in rows]
