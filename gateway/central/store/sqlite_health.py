"""SqliteStore's health tables (`gateway.central.store.health`).

    health_reports  one row per report; key (station, time_ns, site); the report as its wire JSON (exact round trip)
    health_latest   the newest report's key per (site, station), so "every station's latest report" is one
                    small-table join however long the history is

Created if missing when the store opens (new tables: no older layout needs migrating for them).
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime
from pathlib import Path

from gateway.central.store.base import QueryTooLarge, StoreUnavailable, check_window, to_ns
from gateway.contract import StationHealth, encode_health

HEALTH_SCHEMA = """
CREATE TABLE IF NOT EXISTS health_reports (
    site TEXT NOT NULL,
    station TEXT NOT NULL,
    time_ns INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (station, time_ns, site)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS health_latest (
    site TEXT NOT NULL,
    station TEXT NOT NULL,
    time_ns INTEGER NOT NULL,
    PRIMARY KEY (site, station)
) WITHOUT ROWID;
"""


class SqliteHealthMixin:
    """Health methods of SqliteStore; they share its connection and lock."""

    path: Path
    _conn: sqlite3.Connection
    _lock: threading.Lock

    def _create_health_tables(self) -> None:
        for statement in HEALTH_SCHEMA.split(";"):
            if statement.strip():
                self._conn.execute(statement)

    def write_health(self, reports: list[StationHealth]) -> None:
        rows = [(r.site, r.station, to_ns(r.time), encode_health(r).decode()) for r in reports]
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    self._conn.executemany("INSERT OR IGNORE INTO health_reports (site, station, time_ns, body) "
                                           "VALUES (?, ?, ?, ?)", rows)
                    self._conn.executemany(
                        "INSERT INTO health_latest (site, station, time_ns) VALUES (?, ?, ?) "
                        "ON CONFLICT (site, station) DO UPDATE SET time_ns = excluded.time_ns "
                        "WHERE excluded.time_ns > health_latest.time_ns", [row[:3] for row in rows])
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"SQLite database {self.path} refused the write: {exc}; will retry") from exc

    def _health_rows(self, sql: str, params: dict[str, object]) -> list[StationHealth]:
        with self._lock:
            try:
                rows = self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"SQLite database {self.path} failed a query: {exc}") from exc
        return [StationHealth.model_validate_json(body) for (body,) in rows]

    def latest_health(self, *, station: str | None = None, site: str | None = None) -> list[StationHealth]:
        return self._health_rows(
            "SELECT r.body FROM health_latest AS l JOIN health_reports AS r "
            "ON r.station = l.station AND r.time_ns = l.time_ns AND r.site = l.site "
            "WHERE (:station IS NULL OR l.station = :station) AND (:site IS NULL OR l.site = :site) "
            "ORDER BY l.site, l.station", {"station": station, "site": site})

    def query_health(self, station: str, start: datetime, end: datetime, *, site: str | None = None,
                     limit: int | None = None) -> list[StationHealth]:
        check_window(start, end, "mean")
        sql = ("SELECT body FROM health_reports WHERE station = :station AND time_ns >= :start AND time_ns < :end "
               "AND (:site IS NULL OR site = :site) ORDER BY time_ns, site")
        if limit is not None:
            sql += f" LIMIT {int(limit) + 1}"
        found = self._health_rows(sql, {"station": station, "start": to_ns(start), "end": to_ns(end), "site": site})
        if limit is not None and len(found) > limit:
            raise QueryTooLarge(f"more than {limit} health reports match")
        return found
