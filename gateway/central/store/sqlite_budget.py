"""SqliteStore's budget tables (`gateway.central.store.budget`): a run and its rows replaced in one transaction.

    budget_runs  one row per run; key (station, year, settings_hash, engine_version, site)
    budget_rows  one row per period of a run; key = the run's + (resolution, time_ns); the values as a JSON array
                 in the order of the run's column names for that resolution (kept once, in the run's meta)

The tables are created if missing when the store opens, beside the readings and fluxes tables (they are new
tables, so no layout of an older database needs migrating for them).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.central.store.base import StoreUnavailable, every_ns, from_ns, to_ns
from gateway.central.store.budget import (
    BudgetRun,
    BudgetTable,
    Resolution,
    StationBudget,
    WindowMean,
    check_table,
    json_rows,
    run_from_meta,
    table_ranges,
)

BUDGET_SCHEMA = """
CREATE TABLE IF NOT EXISTS budget_runs (
    site TEXT NOT NULL,
    station TEXT NOT NULL,
    year INTEGER NOT NULL,
    engine_version TEXT NOT NULL,
    settings_hash TEXT NOT NULL,
    computed_ns INTEGER NOT NULL,
    first_end_ns INTEGER NOT NULL,
    last_end_ns INTEGER NOT NULL,
    complete INTEGER NOT NULL CHECK (complete IN (0, 1)),
    meta TEXT NOT NULL,               -- JSON: settings, scalars, u* draws, notes, ranges, column names
    PRIMARY KEY (station, year, settings_hash, engine_version, site)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS budget_rows (
    site TEXT NOT NULL,
    station TEXT NOT NULL,
    year INTEGER NOT NULL,
    engine_version TEXT NOT NULL,
    settings_hash TEXT NOT NULL,
    resolution TEXT NOT NULL CHECK (resolution IN ('HH', 'DD', 'MM', 'YY')),
    time_ns INTEGER NOT NULL,
    label TEXT NOT NULL,
    row_values TEXT NOT NULL,         -- JSON array, null = missing
    PRIMARY KEY (station, year, settings_hash, engine_version, site, resolution, time_ns)
) WITHOUT ROWID;
"""

_RUN_KEY = "station = ? AND year = ? AND settings_hash = ? AND engine_version = ? AND site = ?"


class SqliteBudgetMixin:
    """Budget methods of SqliteStore; they share its connection and lock."""

    path: Path
    _conn: sqlite3.Connection
    _lock: threading.Lock

    def _create_budget_tables(self) -> None:
        for statement in BUDGET_SCHEMA.split(";"):
            if statement.strip():
                self._conn.execute(statement)

    def write_budget(self, budget: StationBudget) -> None:
        run = budget.run
        tables = list(budget.tables.values())
        for table in tables:
            check_table(table)
        meta = {**run.meta(), "ranges": {k: [to_ns(a), to_ns(b), n] for k, (a, b, n) in table_ranges(tables).items()},
                "columns": {t.resolution: list(t.values) for t in tables}}
        key = (run.station, run.year, run.settings_hash, run.engine_version, run.site)
        rows: list[tuple[Any, ...]] = []
        for table in tables:
            texts = json_rows(list(table.values.values()), len(table.times))
            rows.extend((run.site, run.station, run.year, run.engine_version, run.settings_hash, table.resolution,
                         to_ns(time), label, text)
                        for time, label, text in zip(table.times, table.labels, texts, strict=True))
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    self._conn.execute(f"DELETE FROM budget_rows WHERE {_RUN_KEY}", key)
                    self._conn.execute(
                        "INSERT OR REPLACE INTO budget_runs (site, station, year, engine_version, settings_hash, "
                        "computed_ns, first_end_ns, last_end_ns, complete, meta) VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (run.site, run.station, run.year, run.engine_version, run.settings_hash,
                         to_ns(run.computed_at), to_ns(run.first_end), to_ns(run.last_end), int(run.complete),
                         json.dumps(meta, allow_nan=False)))
                    self._conn.executemany(
                        "INSERT INTO budget_rows (site, station, year, engine_version, settings_hash, resolution, "
                        "time_ns, label, row_values) VALUES (?,?,?,?,?,?,?,?,?)", rows)
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"SQLite database {self.path} refused the budget write: {exc}; will retry") \
                    from exc

    def budget_runs(self, station: str, year: int | None = None) -> list[BudgetRun]:
        sql = ("SELECT site, station, year, engine_version, settings_hash, computed_ns, first_end_ns, last_end_ns, "
               "complete, meta FROM budget_runs WHERE station = ?")
        params: list[Any] = [station]
        if year is not None:
            sql += " AND year = ?"
            params.append(year)
        sql += " ORDER BY year, settings_hash, engine_version, site"
        return [
            run_from_meta(site=site, station=st, year=int(y), engine_version=ev, settings_hash=sh,
                          computed_at=from_ns(c), first_end=from_ns(f), last_end=from_ns(e), complete=bool(done),
                          meta=json.loads(meta))
            for site, st, y, ev, sh, c, f, e, done, meta in self._budget_fetch(sql, params)
        ]

    def budget_table(self, run: BudgetRun, resolution: Resolution) -> BudgetTable:
        key = [run.station, run.year, run.settings_hash, run.engine_version, run.site]
        found = self._budget_fetch(f"SELECT meta FROM budget_runs WHERE {_RUN_KEY}", key)
        meta: dict[str, Any] = json.loads(found[0][0]) if found else {}
        names: list[str] = meta.get("columns", {}).get(resolution, [])
        span = meta.get("ranges", {}).get(resolution)
        values: dict[str, list[float | None]] = {n: [] for n in names}
        if not span:
            return BudgetTable(resolution, [], [], values)
        rows = self._budget_fetch(
            f"SELECT time_ns, label, row_values FROM budget_rows WHERE {_RUN_KEY} AND resolution = ? "
            "AND time_ns >= ? AND time_ns <= ? ORDER BY time_ns", [*key, resolution, span[0], span[1]])
        for _t, _label, cells in rows:
            for name, cell in zip(names, json.loads(cells), strict=True):
                values[name].append(None if cell is None else float(cell))
        return BudgetTable(resolution, [from_ns(t) for t, _l, _c in rows], [str(lab) for _t, lab, _c in rows], values)

    def window_means(self, station: str, variable: str, start: datetime, end: datetime, every: timedelta, *,
                     site: str, sensor: str) -> list[WindowMean]:
        rows = self._budget_fetch(
            "SELECT time_ns - (time_ns % ?) AS bucket, AVG(value), COUNT(value) FROM readings "
            "WHERE station = ? AND variable = ? AND time_ns >= ? AND time_ns < ? AND site = ? AND sensor = ? "
            "AND qc <= 1 AND value IS NOT NULL GROUP BY bucket ORDER BY bucket",
            [every_ns(every), station, variable, to_ns(start), to_ns(end), site, sensor])
        return [WindowMean(from_ns(int(b)), float(m), int(n)) for b, m, n in rows]

    def _budget_fetch(self, sql: str, params: list[Any]) -> list[Any]:
        with self._lock:
            try:
                return list(self._conn.execute(sql, params).fetchall())
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"SQLite database {self.path} failed a query: {exc}") from exc
