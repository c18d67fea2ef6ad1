"""InfluxStore's soil and stems products (`gateway.central.store.products`).

Point schema (one pair of measurements per product, `soil` and `stems`)::

    measurement  soil_runs | stems_runs   (one point per run)
    tags         site, station, year, engine_version, settings_hash
    fields       computed_ns, first_ns, last_ns (integer), complete (bool),
                 meta (string, JSON: settings, notes, utc offset, tables with their range, rows and column names)
    time         the start of the year on the station's standard-time clock, in UTC

    measurement  soil | stems             (one point per table row)
    tags         site, station, year, engine_version, settings_hash, table
    fields       one float per variable with a value (flags and counts too, so no later run meets a field type
                 conflict), nulls (string: the variables without value, comma-separated)
    time         the row's time (UTC)

A rewrite writes every row again; InfluxDB merges the fields of a rewritten point, so `nulls` decides what a read
returns as missing, and reads take only the tables and ranges the run record names. The run record is written after
its rows, so a reader finds a run only once all of it is there.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from influxdb_client import Point, WritePrecision

from gateway.central.store.base import from_ns, to_ns
from gateway.central.store.budget import clean
from gateway.central.store.influx_budget import year_start
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

_RUN_TAGS = ("site", "station", "year", "engine_version", "settings_hash")
_WRITE_CHUNK = 5000
_READ_PAGE = 5000


def _run_key(run: ProductRun) -> tuple[str, str, str, str, str]:
    return run.site, run.station, str(run.year), run.engine_version, run.settings_hash


def run_to_line(run: ProductRun, meta: dict[str, Any]) -> str:
    point = Point(f"{run.product}_runs")
    for tag, value in zip(_RUN_TAGS, _run_key(run), strict=True):
        point.tag(tag, value)
    point.field("computed_ns", to_ns(run.computed_at))
    point.field("first_ns", to_ns(run.first))
    point.field("last_ns", to_ns(run.last))
    point.field("complete", run.complete)
    point.field("meta", json.dumps(meta, allow_nan=False, separators=(",", ":")))
    point.time(to_ns(year_start(run.year, run.utc_offset_h)), WritePrecision.NS)
    return str(point.to_line_protocol())


def table_to_lines(run: ProductRun, table: ProductTable) -> list[str]:
    key = _run_key(run)
    names = list(table.values)
    lines = []
    for i, time in enumerate(table.times):
        point = Point(run.product)
        for tag, value in zip(_RUN_TAGS, key, strict=True):
            point.tag(tag, value)
        point.tag("table", table.name)
        nulls: list[str] = []
        for name in names:
            number = clean(table.values[name][i])
            if number is None:
                nulls.append(name)
            else:
                point.field(name, number)
        point.field("nulls", ",".join(nulls))
        point.time(to_ns(time), WritePrecision.NS)
        lines.append(str(point.to_line_protocol()))
    return lines


class InfluxProductsMixin:
    """Soil/stems methods of InfluxStore; they use its write path and its bound-parameter queries."""

    if TYPE_CHECKING:
        retention_policy: str | None

        def _query(self, query: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]: ...

        def _write_body(self, body: str) -> None: ...

    def _product_source(self, measurement: str) -> str:
        if self.retention_policy is None:
            return measurement
        from gateway.central.store.influx import quote_identifier  # the module that mixes this class in

        return f"{quote_identifier(self.retention_policy)}.{measurement}"

    def write_product(self, product: StationProduct) -> None:
        check_product(product)
        run = product.run
        tables = list(product.tables.values())
        meta = run_meta(run, tables, to_ns)
        lines = [line for table in tables for line in table_to_lines(run, table)]
        for i in range(0, len(lines), _WRITE_CHUNK):
            self._write_body("\n".join(lines[i:i + _WRITE_CHUNK]))
        self._write_body(run_to_line(run, meta))  # last: the run is found only once its rows are all there

    def product_runs(self, product: Product, station: str, year: int | None = None) -> list[ProductRun]:
        query = (f"SELECT computed_ns, first_ns, last_ns, complete, meta FROM "
                 f"{self._product_source(f'{product}_runs')} WHERE station = $station")
        params = {"station": station}
        if year is not None:
            query += " AND year = $year"
            params["year"] = str(year)
        query += " GROUP BY site, year, engine_version, settings_hash"
        runs = []
        for series in self._query(query, params):
            tags = series.get("tags") or {}
            for row in series.get("values") or []:
                item = dict(zip(series["columns"], row, strict=True))
                meta = json.loads(item["meta"] or "{}")
                runs.append(ProductRun(
                    product=product, site=str(tags.get("site", "")), station=station, year=int(tags.get("year", 0)),
                    engine_version=str(tags.get("engine_version", "")),
                    settings_hash=str(tags.get("settings_hash", "")), computed_at=from_ns(int(item["computed_ns"])),
                    first=from_ns(int(item["first_ns"])), last=from_ns(int(item["last_ns"])),
                    complete=bool(item["complete"]), utc_offset_h=float(meta.get("utc_offset_h", 0.0)),
                    settings=dict(meta.get("settings") or {}), notes=[str(n) for n in meta.get("notes") or []],
                    tables=tables_from_meta(meta, from_ns),
                    inputs=inputs_from_meta(meta)))
        runs.sort(key=lambda r: (r.year, r.settings_hash, r.engine_version, r.site))
        return runs

    def product_table(self, run: ProductRun, table: str) -> ProductTable:
        params = dict(zip(_RUN_TAGS, _run_key(run), strict=True))
        found = self._query(
            f"SELECT meta FROM {self._product_source(f'{run.product}_runs')} WHERE site = $site AND "
            "station = $station AND year = $year AND engine_version = $engine_version AND "
            "settings_hash = $settings_hash", params)
        meta: dict[str, Any] = {}
        for series in found:
            for row in series.get("values") or []:
                meta = json.loads(row[series["columns"].index("meta")] or "{}")
        span = (meta.get("tables") or {}).get(table)
        if not span:
            return ProductTable(table, [], {})
        first, last, _n, names = span
        values: dict[str, list[float | None]] = {str(n): [] for n in names}
        times: list[datetime] = []
        params["table"] = table
        after = int(first) - 1
        while True:
            query = (f"SELECT * FROM {self._product_source(run.product)} WHERE site = $site AND station = $station "
                     "AND year = $year AND engine_version = $engine_version AND settings_hash = $settings_hash AND "
                     f'"table" = $table AND time > {after} AND time <= {int(last)} LIMIT {_READ_PAGE}')
            page = [dict(zip(series["columns"], row, strict=True))
                    for series in self._query(query, params) for row in series.get("values") or []]
            for item in page:
                nulls = set(str(item.get("nulls") or "").split(","))
                times.append(from_ns(int(item["time"])))
                for name in values:
                    raw = item.get(name)
                    values[name].append(None if name in nulls or raw is None else float(raw))
            if len(page) < _READ_PAGE:
                break
            after = int(page[-1]["time"])
        return ProductTable(table, times, values)
