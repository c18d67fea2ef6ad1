"""SqliteStore's provenance of derived results (`gateway.central.store.provenance`).

    flux_inputs  one row per recomputed flux record; key (station, end_ns, settings_hash, engine_version, site);
                 record_sha256, files (JSON list of [sensor, name, sha256])
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime
from pathlib import Path

from gateway.central.store.base import StoreUnavailable, from_ns, to_ns
from gateway.central.store.provenance import FluxInputs, files_from_json

PROVENANCE_SCHEMA = """
CREATE TABLE IF NOT EXISTS flux_inputs (
    site TEXT NOT NULL,
    station TEXT NOT NULL,
    engine_version TEXT NOT NULL,
    settings_hash TEXT NOT NULL,
    end_ns INTEGER NOT NULL,
    record_sha256 TEXT NOT NULL,
    files TEXT NOT NULL,
    PRIMARY KEY (station, end_ns, settings_hash, engine_version, site)
) WITHOUT ROWID;
"""

_COLUMNS = "site, station, engine_version, settings_hash, end_ns, record_sha256, files"


class SqliteProvenanceMixin:
    """Provenance methods of SqliteStore; they share its connection and lock."""

    path: Path
    _conn: sqlite3.Connection
    _lock: threading.Lock

    def _create_provenance_tables(self) -> None:
        self._conn.executescript(PROVENANCE_SCHEMA)

    def write_flux_inputs(self, inputs: list[FluxInputs]) -> None:
        rows = [(i.site, i.station, i.engine_version, i.settings_hash, to_ns(i.end), i.record_sha256, i.files_json())
                for i in inputs]
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    self._conn.executemany(f"INSERT OR REPLACE INTO flux_inputs ({_COLUMNS}) VALUES (?,?,?,?,?,?,?)",
                                           rows)
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"SQLite database {self.path} refused the write: {exc}; will retry") from exc

    def flux_inputs(self, station: str, start: datetime, end: datetime, *,
                    site: str | None = None) -> list[FluxInputs]:
        where, params = "station = ? AND end_ns > ? AND end_ns <= ?", [station, to_ns(start), to_ns(end)]
        if site is not None:
            where += " AND site = ?"
            params.append(site)
        with self._lock:
            try:
                rows = self._conn.execute(f"SELECT {_COLUMNS} FROM flux_inputs WHERE {where} "
                                          "ORDER BY end_ns, settings_hash, engine_version, site", params).fetchall()
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"SQLite database {self.path} failed a query: {exc}") from exc
        return [FluxInputs(site=row[0], station=row[1], engine_version=row[2], settings_hash=row[3],
                           end=from_ns(int(row[4])), record_sha256=row[5], files=files_from_json(row[6]))
                for row in rows]
