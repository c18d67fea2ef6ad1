"""SqliteStore's soil and stems products (`gateway.central.store.products`): a run and its rows replaced in one
transaction.

    product_runs  one row per run; key (product, station, year, settings_hash, engine_version, site)
    product_rows  one row per table row of a run; key = the run's + (table_name, time_ns); the values as a JSON array
                  in the order of the table's column names (kept once, in the run's meta)

The tables are created if missing when the store opens (new tables: no layout of an older database to migrate).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from gateway.central.store.base import StoreUnavailable, from_ns, to_ns
from gateway.central.store.budget import json_rows
from gateway.central.store.products import (
    Product,
    ProductRun,
    ProductTable,
    StationProduct,
    check_product,
    inputs_from_meta,
    run_meta,
    tables_from_meta,
)

PRODUCT_SCHEMA = """
CREATE TABLE IF NOT EXISTS product_runs (
    product TEXT NOT NULL CHECK (product IN ('soil', 'stems')),
    site TEXT NOT NULL,
    station TEXT NOT NULL,
    year INTEGER NOT NULL,
    engine_version TEXT NOT NULL,
    settings_hash TEXT NOT NULL,
    computed_ns INTEGER NOT NULL,
    first_ns INTEGER NOT NULL,
    last_ns INTEGER NOT NULL,
    complete INTEGER NOT NULL CHECK (complete IN (0, 1)),
    meta TEXT NOT NULL,               -- JSON: settings, notes, utc offset, tables (range, rows, column names)
    PRIMARY KEY (product, station, year, settings_hash, engine_version, site)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS product_rows (
    product TEXT NOT NULL,
    site TEXT NOT NULL,
    station TEXT NOT NULL,
    year INTEGER NOT NULL,
    engine_version TEXT NOT NULL,
    settings_hash TEXT NOT NULL,
    table_name TEXT NOT NULL,
    time_ns INTEGER NOT NULL,
    row_values TEXT NOT NULL,         -- JSON array, null = missing
    PRIMARY KEY (product, station, year, settings_hash, engine_version, site, table_name, time_ns)
) WITHOUT ROWID;
"""

_RUN_KEY = "product = ? AND station = ? AND year = ? AND settings_hash = ? AND engine_version = ? AND site = ?"


def _key(run: ProductRun) -> list[Any]:
    return [run.product, run.station, run.year, run.settings_hash, run.engine_version, run.site]


class SqliteProductsMixin:
    """Soil/stems methods of SqliteStore; they share its connection and lock."""

    path: Path
    _conn: sqlite3.Connection
    _lock: threading.Lock

    def _create_product_tables(self) -> None:
        for statement in PRODUCT_SCHEMA.split(";"):
            if statement.strip():
                self._conn.execute(statement)

    def write_product(self, product: StationProduct) -> None:
        check_product(product)
        run = product.run
        tables = list(product.tables.values())
        meta = run_meta(run, tables, to_ns)
        key = _key(run)
        rows: list[tuple[Any, ...]] = []
        for table in tables:
            texts = json_rows(list(table.values.values()), len(table.times))
            rows.extend((run.product, run.site, run.station, run.year, run.engine_version, run.settings_hash,
                         table.name, to_ns(time), text) for time, text in zip(table.times, texts, strict=True))
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    self._conn.execute(f"DELETE FROM product_rows WHERE {_RUN_KEY}", key)
                    self._conn.execute(
                        "INSERT OR REPLACE INTO product_runs (product, site, station, year, engine_version, "
                        "settings_hash, computed_ns, first_ns, last_ns, complete, meta) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                        (run.product, run.site, run.station, run.year, run.engine_version, run.settings_hash,
                         to_ns(run.computed_at), to_ns(run.first), to_ns(run.last), int(run.complete),
                         json.dumps(meta, allow_nan=False)))
                    self._conn.executemany(
                        "INSERT INTO product_rows (product, site, station, year, engine_version, settings_hash, "
                        "table_name, time_ns, row_values) VALUES (?,?,?,?,?,?,?,?,?)", rows)
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"SQLite database {self.path} refused the {run.product} write: {exc}; will "
                                       "retry") from exc

    def product_runs(self, product: Product, station: str, year: int | None = None) -> list[ProductRun]:
        sql = ("SELECT site, station, year, engine_version, settings_hash, computed_ns, first_ns, last_ns, complete, "
               "meta FROM product_runs WHERE product = ? AND station = ?")
        params: list[Any] = [product, station]
        if year is not None:
            sql += " AND year = ?"
            params.append(year)
        sql += " ORDER BY year, settings_hash, engine_version, site"
        runs = []
        for site, st, y, ev, sh, c, f, la, done, meta_text in self._product_fetch(sql, params):
            meta = json.loads(meta_text)
            runs.append(ProductRun(
                product=product, site=site, station=st, year=int(y), engine_version=ev, settings_hash=sh,
                computed_at=from_ns(c), first=from_ns(f), last=from_ns(la), complete=bool(done),
                utc_offset_h=float(meta.get("utc_offset_h", 0.0)), settings=dict(meta.get("settings") or {}),
                notes=[str(n) for n in meta.get("notes") or []], tables=tables_from_meta(meta, from_ns),
                inputs=inputs_from_meta(meta)))
        return runs

    def product_table(self, run: ProductRun, table: str) -> ProductTable:
        key = _key(run)
        found = self._product_fetch(f"SELECT meta FROM product_runs WHERE {_RUN_KEY}", key)
        meta: dict[str, Any] = json.loads(found[0][0]) if found else {}
        span = (meta.get("tables") or {}).get(table)
        if not span:
            return ProductTable(table, [], {})
        first, last, _n, names = span
        values: dict[str, list[float | None]] = {str(n): [] for n in names}
        rows = self._product_fetch(
            f"SELECT time_ns, row_values FROM product_rows WHERE {_RUN_KEY} AND table_name = ? AND time_ns >= ? AND "
            "time_ns <= ? ORDER BY time_ns", [*key, table, first, last])
        for _t, cells in rows:
            for name, cell in zip(values, json.loads(cells), strict=True):
                values[name].append(None if cell is None else float(cell))
        return ProductTable(table, [from_ns(t) for t, _c in rows], values)

    def _product_fetch(self, sql: str, params: list[Any]) -> list[Any]:
        with self._lock:
            try:
                return list(self._conn.execute(sql, params).fetchall())
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"SQLite database {self.path} failed a query: {exc}") from exc
