"""Embedded SQLite store: the demo's default and fine for one site; same contract as InfluxStore."""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.central.store.base import (
    Aggregate,
    FluxResultSet,
    QueryTooLarge,
    SeriesPoint,
    StationInfo,
    StoredReading,
    StoreUnavailable,
    check_window,
    every_ns,
    from_ns,
    merge_station_rows,
    to_ns,
)
from gateway.contract import FluxRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    site TEXT NOT NULL,
    station TEXT NOT NULL,
    sensor TEXT NOT NULL,
    variable TEXT NOT NULL,
    unit TEXT NOT NULL,
    time_ns INTEGER NOT NULL,
    time_source TEXT NOT NULL,
    value REAL,
    qc INTEGER NOT NULL,
    clock_synced INTEGER NOT NULL,
    qc_reason TEXT,
    PRIMARY KEY (station, variable, time_ns, sensor)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fluxes (
    site TEXT NOT NULL,
    station TEXT NOT NULL,
    engine_version TEXT NOT NULL,
    settings_hash TEXT NOT NULL,
    end_ns INTEGER NOT NULL,
    start_ns INTEGER NOT NULL,
    status TEXT NOT NULL,
    reasons TEXT NOT NULL,          -- JSON list of strings
    flux_values TEXT NOT NULL,      -- JSON object name -> number or null (repr round-trips floats exactly)
    PRIMARY KEY (station, end_ns, settings_hash, engine_version)
) WITHOUT ROWID;
"""

# The aggregate SQL per name; a fixed table, so the query text never contains caller input.
_AGGREGATE_SQL: dict[str, str] = {
    "mean": "AVG(value)",
    "min": "MIN(value)",
    "max": "MAX(value)",
    "count": "COUNT(value)",
    # The latest non-missing value of the window, like InfluxDB's last(value).
    "last": "(SELECT w2.value FROM w AS w2 WHERE w2.bucket = w.bucket AND w2.value IS NOT NULL "
    "ORDER BY w2.time_ns DESC LIMIT 1)",
}


class SqliteStore:
    """One connection shared under a lock: SQLite serialises writers anyway, and this keeps it thread-safe for
    the ingest worker and the API's threads. `busy_timeout_s` bounds how long a write waits for a lock held by
    another process before reporting the store unavailable."""

    def __init__(self, path: Path | str, *, busy_timeout_s: float = 5.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(
                self.path, timeout=busy_timeout_s, check_same_thread=False, isolation_level=None
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite database {self.path}: {exc}") from exc

    def write(self, batch_points: list[StoredReading]) -> None:
        rows = []
        for item in batch_points:
            r = item.reading
            value = r.value if r.value is not None and math.isfinite(r.value) else None
            rows.append(
                (item.site, r.station, r.sensor, r.variable, r.unit, to_ns(r.time), r.time_source.value, value,
                 int(r.qc), int(r.clock_synced), r.qc_reason)
            )
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    self._conn.executemany(
                        "INSERT OR REPLACE INTO readings (site, station, sensor, variable, unit, time_ns, "
                        "time_source, value, qc, clock_synced, qc_reason) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                        rows,
                    )
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"SQLite database {self.path} refused the write: {exc}; will retry") from exc

    def query_series(
        self,
        station: str,
        variable: str,
        start: datetime,
        end: datetime,
        every: timedelta | None = None,
        aggregate: Aggregate = "mean",
        *,
        limit: int | None = None,
    ) -> list[SeriesPoint]:
        check_window(start, end, aggregate)
        params: dict[str, object] = {
            "station": station, "variable": variable, "start": to_ns(start), "end": to_ns(end),
        }
        if every is None:
            sql = (
                "SELECT time_ns, value, qc FROM readings WHERE station = :station AND variable = :variable "
                "AND time_ns >= :start AND time_ns < :end ORDER BY time_ns, sensor"
            )
        else:
            params["every"] = every_ns(every)
            sql = (
                "WITH w AS (SELECT time_ns - (time_ns % :every) AS bucket, time_ns, value, qc FROM readings "
                "WHERE station = :station AND variable = :variable AND time_ns >= :start AND time_ns < :end) "
                f"SELECT bucket, {_AGGREGATE_SQL[aggregate]}, MAX(qc) FROM w GROUP BY bucket ORDER BY bucket"
            )
        if limit is not None:
            sql += f" LIMIT {int(limit) + 1}"
        with self._lock:
            try:
                rows = self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"SQLite database {self.path} failed a query: {exc}") from exc
        if limit is not None and len(rows) > limit:
            raise QueryTooLarge(f"more than {limit} points match")
        return [
            SeriesPoint(time=from_ns(t), value=None if v is None else float(v), qc=None if q is None else int(q))
            for t, v, q in rows
        ]

    def stations(self) -> list[StationInfo]:
        with self._lock:
            try:
                rows = self._conn.execute(
                    "SELECT site, station, variable, unit, MAX(time_ns) FROM readings "
                    "GROUP BY site, station, variable, unit ORDER BY site, station, variable"
                ).fetchall()
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"SQLite database {self.path} failed a query: {exc}") from exc
        return merge_station_rows(rows)

    # --- flux records ---------------------------------------------------------------------------------------------

    def write_fluxes(self, records: list[FluxRecord]) -> None:
        rows = [
            (r.site, r.station, r.engine_version, r.settings_hash, to_ns(r.end), to_ns(r.start), r.status,
             json.dumps(list(r.reasons)), json.dumps(r.values, allow_nan=False))
            for r in records
        ]
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    self._conn.executemany(
                        "INSERT OR REPLACE INTO fluxes (site, station, engine_version, settings_hash, end_ns, "
                        "start_ns, status, reasons, flux_values) VALUES (?,?,?,?,?,?,?,?,?)",
                        rows,
                    )
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"SQLite database {self.path} refused the write: {exc}; will retry") from exc

    def query_fluxes(
        self,
        station: str,
        start: datetime,
        end: datetime,
        settings_hash: str | None = None,
        *,
        limit: int | None = None,
    ) -> list[FluxRecord]:
        check_window(start, end, "mean")
        sql = (
            "SELECT site, station, engine_version, settings_hash, end_ns, start_ns, status, reasons, flux_values "
            "FROM fluxes WHERE station = :station AND end_ns > :start AND end_ns <= :end"
        )
        params: dict[str, object] = {"station": station, "start": to_ns(start), "end": to_ns(end)}
        if settings_hash is not None:
            sql += " AND settings_hash = :settings_hash"
            params["settings_hash"] = settings_hash
        sql += " ORDER BY end_ns, settings_hash, engine_version"
        if limit is not None:
            sql += f" LIMIT {int(limit) + 1}"
        rows = self._fetch(sql, params)
        if limit is not None and len(rows) > limit:
            raise QueryTooLarge(f"more than {limit} flux records match")
        return [
            FluxRecord(site=site, station=st, engine_version=ev, settings_hash=sh, end=from_ns(e), start=from_ns(s),
                       status=status, reasons=json.loads(reasons), values=json.loads(values))
            for site, st, ev, sh, e, s, status, reasons, values in rows
        ]

    def flux_result_sets(self, station: str) -> list[FluxResultSet]:
        rows = self._fetch(
            "SELECT site, station, engine_version, settings_hash, COUNT(*), MIN(end_ns), MAX(end_ns) FROM fluxes "
            "WHERE station = :station GROUP BY site, station, engine_version, settings_hash "
            "ORDER BY settings_hash, engine_version, site",
            {"station": station},
        )
        return [
            FluxResultSet(site=site, station=st, engine_version=ev, settings_hash=sh, periods=int(n),
                          first_end=from_ns(first), last_end=from_ns(last))
            for site, st, ev, sh, n, first, last in rows
        ]

    def _fetch(self, sql: str, params: dict[str, object]) -> list[Any]:
        with self._lock:
            try:
                return list(self._conn.execute(sql, params).fetchall())
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"SQLite database {self.path} failed a query: {exc}") from exc

    def ping(self) -> bool:
        with self._lock:
            try:
                self._conn.execute("SELECT 1").fetchone()
            except sqlite3.Error:
                return False
        return True

    def close(self) -> None:
        with self._lock:
            self._conn.close()

