"""Embedded SQLite store: the demo's default and fine for one site; same contract as InfluxStore.

The primary keys are the identities of `base` (readings: site, station, sensor, variable, time; flux records: site,
station, engine version, settings hash, period end), ordered so that the queries' filters (station, variable, time)
are a prefix of them. `series` holds one row per series of `readings` (site, station, sensor, variable, unit) with
its newest time, kept in the transaction that inserts the readings, so `stations()` reads as many rows as there are
series instead of grouping every stored reading. The budget tables (`budget_runs`, `budget_rows`) are in
`sqlite_budget`. Commits are `synchronous=FULL`: the ingestor acknowledges a message to the broker once `write`
returns, so a committed reading must survive a power cut, not only a crash of the process.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.central.store.base import (
    Aggregate,
    FluxResultSet,
    QueryTooLarge,
    ReadingClassifier,
    ReadingIdentity,
    RejectedReading,
    SeriesPoint,
    SeriesSource,
    StationInfo,
    StoredReading,
    StoreUnavailable,
    WriteOutcome,
    WriteRequest,
    check_window,
    every_ns,
    from_ns,
    merge_station_rows,
    reading_identities,
    reading_identity,
    to_ns,
)
from gateway.central.store.ledger import LedgerItem
from gateway.central.store.sqlite_alerts import SqliteAlertsMixin
from gateway.central.store.sqlite_budget import SqliteBudgetMixin
from gateway.central.store.sqlite_health import SqliteHealthMixin
from gateway.central.store.sqlite_ledger import SqliteLedgerMixin
from gateway.central.store.sqlite_products import SqliteProductsMixin
from gateway.central.store.sqlite_provenance import SqliteProvenanceMixin
from gateway.central.store.sqlite_reads import SqliteReadsMixin
from gateway.contract import FluxRecord
from gateway.model import QualityFlag, Reading, TimeSource

# PRAGMA user_version of the current layout, migrated on open: 0 is the first one (keys without the site), 2 the
# one without the `series` table.
SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE readings (
    site TEXT NOT NULL,
    station TEXT NOT NULL,
    sensor TEXT NOT NULL,
    variable TEXT NOT NULL,
    unit TEXT NOT NULL,
    time_ns INTEGER NOT NULL,
    time_source TEXT NOT NULL,
    value REAL,
    qc INTEGER NOT NULL CHECK (qc BETWEEN 0 AND 3),
    clock_synced INTEGER NOT NULL CHECK (clock_synced IN (0, 1)),
    qc_reason TEXT,
    CHECK ((value IS NULL) = (qc = 3)),
    PRIMARY KEY (station, variable, time_ns, sensor, site)
) WITHOUT ROWID;
CREATE TABLE fluxes (
    site TEXT NOT NULL,
    station TEXT NOT NULL,
    engine_version TEXT NOT NULL,
    settings_hash TEXT NOT NULL,
    end_ns INTEGER NOT NULL,
    start_ns INTEGER NOT NULL,
    status TEXT NOT NULL,
    reasons TEXT NOT NULL,          -- JSON list of strings
    flux_values TEXT NOT NULL,      -- JSON object name -> number or null (repr round-trips floats exactly)
    PRIMARY KEY (station, end_ns, settings_hash, engine_version, site)
) WITHOUT ROWID;
"""

# Only ever raised, by the readings a write inserts: a refused or held identity leaves it alone, as it does the
# readings, so it stays what `GROUP BY ... MAX(time_ns)` over `readings` would answer.
_SERIES_SCHEMA = """
CREATE TABLE series (
    site TEXT NOT NULL,
    station TEXT NOT NULL,
    sensor TEXT NOT NULL,
    variable TEXT NOT NULL,
    unit TEXT NOT NULL,
    last_ns INTEGER NOT NULL,
    PRIMARY KEY (site, station, sensor, variable, unit)
) WITHOUT ROWID
"""
_SERIES_COLUMNS = "site, station, sensor, variable, unit"
_SERIES_UPSERT = (f"INSERT INTO series ({_SERIES_COLUMNS}, last_ns) VALUES (?,?,?,?,?,?) "
                  f"ON CONFLICT ({_SERIES_COLUMNS}) DO UPDATE SET last_ns = MAX(last_ns, excluded.last_ns)")

SeriesKey = tuple[str, str, str, str, str]  # site, station, sensor, variable, unit

_READING_COLUMNS = ("site, station, sensor, variable, unit, time_ns, time_source, value, qc, clock_synced, "
                    "qc_reason")
_FLUX_COLUMNS = "site, station, engine_version, settings_hash, end_ns, start_ns, status, reasons, flux_values"

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


class SqliteStore(SqliteBudgetMixin, SqliteProductsMixin, SqliteHealthMixin, SqliteLedgerMixin, SqliteAlertsMixin,
                  SqliteProvenanceMixin, SqliteReadsMixin):
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
            self._conn.execute("PRAGMA synchronous=FULL")
            self._migrate()
            self._create_budget_tables()  # gateway/central/store/sqlite_budget.py
            self._create_product_tables()  # gateway/central/store/sqlite_products.py
            self._create_health_tables()  # gateway/central/store/sqlite_health.py
            self._create_ledger_tables()  # gateway/central/store/sqlite_ledger.py
            self._create_provenance_tables()  # gateway/central/store/sqlite_provenance.py
            self._create_alert_tables()  # gateway/central/store/sqlite_alerts.py
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite database {self.path}: {exc}") from exc

    def _migrate(self) -> None:
        """Create the tables, or bring a database of an earlier layout to the current one with its data."""
        conn = self._conn
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"schema version {version} is newer than this sinkwatch ({SCHEMA_VERSION})")
        conn.execute("BEGIN IMMEDIATE")
        try:
            # read again under the write lock: another process opening the same file may have migrated it meanwhile
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version < 2:
                self._migrate_keys(version)
            if version < 3:
                conn.execute(_SERIES_SCHEMA)
                # once per database: the one full scan of the readings that stations() no longer makes
                conn.execute(f"INSERT INTO series ({_SERIES_COLUMNS}, last_ns) "
                             f"SELECT {_SERIES_COLUMNS}, MAX(time_ns) FROM readings GROUP BY {_SERIES_COLUMNS}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _migrate_keys(self, version: int) -> None:
        """Create `readings` and `fluxes`, moving the rows of the first layout (keys without the site) over."""
        conn = self._conn
        old_tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for table in ("readings", "fluxes"):
            if table in old_tables:
                conn.execute(f"ALTER TABLE {table} RENAME TO {table}_v{version}")
        # statement by statement: executescript would commit our transaction first
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        # the old keys were a subset of the new ones, so every old row fits the new key
        if "readings" in old_tables:
            conn.execute(f"INSERT INTO readings ({_READING_COLUMNS}) SELECT {_READING_COLUMNS} "
                         f"FROM readings_v{version}")
            conn.execute(f"DROP TABLE readings_v{version}")
        if "fluxes" in old_tables:
            conn.execute(f"INSERT INTO fluxes ({_FLUX_COLUMNS}) SELECT {_FLUX_COLUMNS} FROM fluxes_v{version}")
            conn.execute(f"DROP TABLE fluxes_v{version}")

    def write(self, batch_points: list[StoredReading], *, ledger: LedgerItem | None = None) -> WriteOutcome:
        return self.write_many([(batch_points, ledger)])[0]

    def write_many(self, batches: Sequence[WriteRequest]) -> list[WriteOutcome]:
        """All batches in one transaction: one commit (and fsync) for the ingestor's whole group of messages."""
        held: dict[ReadingIdentity, StoredReading] = {}  # shared: an identity an earlier batch took counts as held
        newest: dict[SeriesKey, int] = {}  # the newest time this call inserted per series
        classifiers: list[ReadingClassifier] = []
        rejected: list[list[RejectedReading]] = []
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    for points, ledger in batches:
                        classifier = ReadingClassifier(held)
                        refused: list[RejectedReading] = []
                        if not self._insert_all_new(points, classifier, newest):
                            for item in points:
                                self._write_one(item, classifier, refused, newest)
                        if ledger is not None:
                            self._insert_ledger([ledger])
                        classifiers.append(classifier)
                        rejected.append(refused)
                    # one row per series the call touched, not per reading
                    self._conn.executemany(_SERIES_UPSERT, [(*series, last) for series, last in newest.items()])
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"SQLite database {self.path} refused the write: {exc}; will retry") from exc
        return [classifier.outcome(refused) for classifier, refused in zip(classifiers, rejected, strict=True)]

    def _insert_all_new(self, points: list[StoredReading], classifier: ReadingClassifier,
                        newest: dict[SeriesKey, int]) -> bool:
        """The common case in one statement: a batch whose identities are all new (none repeated, none held by the
        store or by this call). True when every reading was inserted; False when the batch was left untouched (a
        savepoint undone) for `_write_one` to classify reading by reading: an identity the store holds, a reading a
        CHECK refuses. A statement per reading cost a simulated station-year's 360,000 readings 25 s."""
        if len(points) < 2:
            return False
        keys = reading_identities(points)
        if len(set(keys)) != len(keys) or not classifier.held.keys().isdisjoint(keys):
            return False
        rows = []
        for (site, r), key in zip(points, keys, strict=True):
            value = r.value if r.value is not None and math.isfinite(r.value) else None
            rows.append((site, r.station, r.sensor, r.variable, r.unit, key[4], r.time_source.value, value,
                         int(r.qc), int(r.clock_synced), r.qc_reason))
        conn = self._conn
        conn.execute("SAVEPOINT all_new")
        before = conn.total_changes  # the readings table has no triggers: each inserted row counts once
        try:
            conn.executemany(f"INSERT INTO readings ({_READING_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
                             "ON CONFLICT DO NOTHING", rows)
            inserted = conn.total_changes - before
        except sqlite3.IntegrityError:
            inserted = -1
        if inserted != len(rows):
            conn.execute("ROLLBACK TO all_new")
            conn.execute("RELEASE all_new")
            return False
        conn.execute("RELEASE all_new")
        classifier.add_all(points, keys)
        for row in rows:
            series, last = row[:5], newest.get(row[:5])
            if last is None or last < row[5]:
                newest[series] = row[5]
        return True

    def _write_one(self, item: StoredReading, classifier: ReadingClassifier, rejected: list[RejectedReading],
                   newest: dict[SeriesKey, int]) -> None:
        key = reading_identity(item)
        if key in classifier.held:  # repeated within this call
            classifier.add(item)
            return
        r = item.reading
        value = r.value if r.value is not None and math.isfinite(r.value) else None
        try:
            # the key decides: a new identity is inserted at once, a held one is left alone and looked at below
            cursor = self._conn.execute(
                f"INSERT INTO readings ({_READING_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                (item.site, r.station, r.sensor, r.variable, r.unit, key[4], r.time_source.value, value, int(r.qc),
                 int(r.clock_synced), r.qc_reason),
            )
        except sqlite3.IntegrityError as exc:
            # a CHECK constraint: this reading can never be stored; the others of the batch still are. Counted
            # among the new readings (as InfluxDB's refusals are), then taken out of what is held.
            classifier.add(item)
            del classifier.held[key]
            rejected.append(RejectedReading(item, f"SQLite refused it: {exc}"))
            return
        if cursor.rowcount == 1:
            classifier.add(item)  # not held: counted as new
            series = (item.site, r.station, r.sensor, r.variable, r.unit)
            last = newest.get(series)
            if last is None or last < key[4]:
                newest[series] = key[4]
            return
        row = self._conn.execute(
            f"SELECT {_READING_COLUMNS} FROM readings WHERE site=? AND station=? AND sensor=? AND variable=? "
            "AND time_ns=?", key).fetchone()
        classifier.held[key] = _row_to_stored(row)
        classifier.add(item)

    def query_series(
        self,
        station: str,
        variable: str,
        start: datetime,
        end: datetime,
        every: timedelta | None = None,
        aggregate: Aggregate = "mean",
        *,
        site: str | None = None,
        sensor: str | None = None,
        limit: int | None = None,
    ) -> list[SeriesPoint]:
        check_window(start, end, aggregate)
        sql, params = series_sql(station, variable, to_ns(start), to_ns(end),
                                 None if every is None else every_ns(every), aggregate, site, sensor)
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

    def series_sources(self, station: str, variable: str, start: datetime, end: datetime) -> list[SeriesSource]:
        check_window(start, end, "mean")
        rows = self._fetch(
            "SELECT DISTINCT site, sensor, unit FROM readings WHERE station = :station AND variable = :variable "
            "AND time_ns >= :start AND time_ns < :end ORDER BY site, sensor, unit",
            {"station": station, "variable": variable, "start": to_ns(start), "end": to_ns(end)},
        )
        return [SeriesSource(site=site, sensor=sensor, unit=unit) for site, sensor, unit in rows]

    def stations(self) -> list[StationInfo]:
        rows = self._fetch(
            f"SELECT {_SERIES_COLUMNS}, last_ns FROM series", {},
        )
        return merge_station_rows(rows)

    # --- flux records ---------------------------------------------------------------------------------------------

    def write_fluxes(self, records: list[FluxRecord], *, ledger: LedgerItem | None = None) -> None:
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
                        f"INSERT OR REPLACE INTO fluxes ({_FLUX_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)", rows)
                    if ledger is not None:
                        self._insert_ledger([ledger])
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



def series_sql(station: str, variable: str, start_ns: int, end_ns: int, window_ns: int | None, aggregate: str,
               site: str | None, sensor: str | None) -> tuple[str, dict[str, object]]:
    """The statement of query_series / iter_series: raw points in time order, or one row per non-empty window."""
    params: dict[str, object] = {
        "station": station, "variable": variable, "start": start_ns, "end": end_ns, "site": site, "sensor": sensor,
    }
    where = ("station = :station AND variable = :variable AND time_ns >= :start AND time_ns < :end "
             "AND (:site IS NULL OR site = :site) AND (:sensor IS NULL OR sensor = :sensor)")
    if window_ns is None:
        return f"SELECT time_ns, value, qc FROM readings WHERE {where} ORDER BY time_ns, sensor, site", params
    params["every"] = window_ns
    return (
        "WITH w AS (SELECT time_ns - (time_ns % :every) AS bucket, time_ns, value, qc FROM readings "
        f"WHERE {where}) "
        f"SELECT bucket, {_AGGREGATE_SQL[aggregate]}, MAX(qc) FROM w GROUP BY bucket ORDER BY bucket"
    ), params


def _row_to_stored(row: tuple[Any, ...]) -> StoredReading:
    """A stored row (in `_READING_COLUMNS` order) as the reading it holds."""
    site, station, sensor, variable, unit, time_ns, time_source, value, qc, clock_synced, qc_reason = row
    # model_construct: what the store holds is shown as it is, even if it predates today's validation rules
    reading = Reading.model_construct(
        station=station, sensor=sensor, variable=variable, value=None if value is None else float(value), unit=unit,
        time=from_ns(int(time_ns)), time_source=TimeSource(time_source), clock_synced=bool(clock_synced),
        qc=QualityFlag(int(qc)), qc_reason=qc_reason,
    )
    return StoredReading(site=site, reading=reading)
