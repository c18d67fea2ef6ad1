"""Streamed reads of SqliteStore (`gateway.central.store.reads`): each iterator reads through a read-only connection
of its own, `fetchmany` at a time, so a slow HTTP client holds neither the store's lock nor its writer (WAL: readers
and the writer do not block each other)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from gateway.central.store.base import Aggregate, StoreUnavailable, check_window, every_ns, to_ns
from gateway.central.store.reads import CHUNK_ROWS, FLUX_CHUNK_ROWS, FluxColumns, FluxRow, SeriesRow, select_values


class SqliteReadsMixin:
    """The streamed reads of SqliteStore."""

    if TYPE_CHECKING:
        path: Path
        _conn: sqlite3.Connection
        _lock: threading.Lock

    def _read_chunks(self, sql: str, params: dict[str, object], chunk_rows: int = CHUNK_ROWS) -> Iterator[list[Any]]:
        if str(self.path) == ":memory:":
            # a database in memory has no file a second connection could open: read it whole through the store's
            # own connection, under its lock (never held across a yield)
            with self._lock:
                try:
                    rows = self._conn.execute(sql, params).fetchall()
                except sqlite3.Error as exc:
                    raise StoreUnavailable(f"SQLite database {self.path} failed a query: {exc}") from exc
            for first in range(0, len(rows), chunk_rows):
                yield rows[first:first + chunk_rows]
            return
        try:
            conn = sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite database {self.path} for reading: {exc}") from exc
        try:
            cursor = conn.execute(sql, params)
            while rows := cursor.fetchmany(chunk_rows):
                yield rows
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite database {self.path} failed a query: {exc}") from exc
        finally:
            conn.close()

    def iter_series(
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
    ) -> Iterator[Sequence[SeriesRow]]:
        from gateway.central.store.sqlite import series_sql

        check_window(start, end, aggregate)
        sql, params = series_sql(station, variable, to_ns(start), to_ns(end),
                                 None if every is None else every_ns(every), aggregate, site, sensor)
        yield from self._read_chunks(sql, params)

    def iter_fluxes(
        self,
        station: str,
        start: datetime,
        end: datetime,
        settings_hash: str | None = None,
        *,
        variables: Sequence[str] | None = None,
    ) -> Iterator[list[FluxRow]]:
        check_window(start, end, "mean")
        where, params = _flux_where(station, start, end, settings_hash)
        sql = ("SELECT site, station, start_ns, end_ns, status, reasons, engine_version, settings_hash, flux_values "
               f"FROM fluxes WHERE {where} ORDER BY end_ns, settings_hash, engine_version")
        wanted = None if variables is None else list(dict.fromkeys(variables))
        loads = orjson.loads
        for rows in self._read_chunks(sql, params, FLUX_CHUNK_ROWS):
            yield [FluxRow(site, st, s, e, status, loads(reasons), ev, sh, select_values(loads(values), wanted))
                   for site, st, s, e, status, reasons, ev, sh, values in rows]

    def flux_columns(self, station: str, start: datetime, end: datetime,
                     settings_hash: str | None = None) -> FluxColumns:
        check_window(start, end, "mean")
        where, params = _flux_where(station, start, end, settings_hash)
        sets = [(sh, ev) for rows in self._read_chunks(
            f"SELECT DISTINCT settings_hash, engine_version FROM fluxes WHERE {where} ORDER BY 1, 2", params)
            for sh, ev in rows]
        variables = {key for rows in self._read_chunks(
            f"SELECT DISTINCT j.key FROM fluxes, json_each(fluxes.flux_values) AS j WHERE {where}", params)
            for (key,) in rows}
        return FluxColumns(sets=sets, variables=variables)


def _flux_where(station: str, start: datetime, end: datetime,
                settings_hash: str | None) -> tuple[str, dict[str, object]]:
    where = "station = :station AND end_ns > :start AND end_ns <= :end"
    params: dict[str, object] = {"station": station, "start": to_ns(start), "end": to_ns(end)}
    if settings_hash is not None:
        where += " AND settings_hash = :settings_hash"
        params["settings_hash"] = settings_hash
    return where, params
