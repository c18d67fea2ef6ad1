"""InfluxStore's budget measurements (`gateway.central.store.budget`).

Point schema::

    measurement  budget_runs   (one point per run)
    tags         site, station, year, engine_version, settings_hash
    fields       computed_ns, first_end_ns, last_end_ns (integer), complete (bool),
                 meta (string, JSON: settings, scalars, u* bootstrap draws, notes, row ranges, column names)
    time         the start of the year on the station's standard-time clock, in UTC

    measurement  budget        (one point per period of a run)
    tags         site, station, year, engine_version, settings_hash, resolution (HH, DD, MM, YY)
    fields       one float per variable with a value (NEE_F, NEE_F_QC, GPP_NT, ...; gC m-2 sums for DD/MM/YY),
                 label (string: YYYYMMDDHHMM, YYYYMMDD, YYYYMM, YYYY on the station's clock),
                 nulls (string: the variables without value, comma-separated)
    time         HH: the end of the half hour; DD/MM/YY: the start of the period (UTC)

Every variable is a float field, flags and counts too, so no later run can hit a field type conflict. A rewrite of
a run writes every row again; InfluxDB merges the fields of a rewritten point, so `nulls` decides which variables a
read returns as missing, and reads take only the rows inside the ranges the run record names (rows an older run
had beyond them stay on disk, unread). The run record is written after its rows.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from influxdb_client import Point, WritePrecision

from gateway.central.store.base import every_ns, from_ns, to_ns
from gateway.central.store.budget import (
    BUDGET_MEASUREMENT,
    BUDGET_RUN_MEASUREMENT,
    BudgetRun,
    BudgetTable,
    Resolution,
    StationBudget,
    WindowMean,
    check_table,
    clean,
    run_from_meta,
    table_ranges,
)

_RUN_TAGS = ("site", "station", "year", "engine_version", "settings_hash")
_ROW_TAGS = (*_RUN_TAGS, "resolution")
_WRITE_CHUNK = 5000  # points per HTTP write
_READ_PAGE = 5000  # rows per query, so a server's max-row-limit never truncates a year silently


def year_start(year: int, utc_offset_h: float) -> datetime:
    """Midnight of 1 January on the station's standard-time clock, in UTC."""
    return datetime(year, 1, 1, tzinfo=UTC) - timedelta(hours=utc_offset_h)


def run_to_line(run: BudgetRun, meta: dict[str, Any]) -> str:
    point = Point(BUDGET_RUN_MEASUREMENT)
    for tag, value in zip(_RUN_TAGS, _run_key(run), strict=True):
        point.tag(tag, value)
    point.field("computed_ns", to_ns(run.computed_at))
    point.field("first_end_ns", to_ns(run.first_end))
    point.field("last_end_ns", to_ns(run.last_end))
    point.field("complete", run.complete)
    point.field("meta", json.dumps(meta, allow_nan=False, separators=(",", ":")))
    point.time(to_ns(year_start(run.year, run.utc_offset_h)), WritePrecision.NS)
    return str(point.to_line_protocol())


def table_to_lines(run: BudgetRun, table: BudgetTable) -> list[str]:
    key = (*_run_key(run), table.resolution)
    names = list(table.values)
    lines = []
    for i, (time, label) in enumerate(zip(table.times, table.labels, strict=True)):
        point = Point(BUDGET_MEASUREMENT)
        for tag, value in zip(_ROW_TAGS, key, strict=True):
            point.tag(tag, value)
        point.field("label", label)
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


def _run_key(run: BudgetRun) -> tuple[str, str, str, str, str]:
    return run.site, run.station, str(run.year), run.engine_version, run.settings_hash


class InfluxBudgetMixin:
    """Budget methods of InfluxStore; they use its write path and its bound-parameter queries."""

    if TYPE_CHECKING:
        retention_policy: str | None

        def _query(self, query: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]: ...

        def _write_body(self, body: str) -> None: ...

        def _source(self) -> str: ...

    def _budget_source(self, measurement: str) -> str:
        if self.retention_policy is None:
            return measurement
        from gateway.central.store.influx import quote_identifier  # the module that mixes this class in

        return f"{quote_identifier(self.retention_policy)}.{measurement}"

    def write_budget(self, budget: StationBudget) -> None:
        run = budget.run
        tables = list(budget.tables.values())
        for table in tables:
            check_table(table)
        meta = {**run.meta(), "ranges": {k: [to_ns(a), to_ns(b), n] for k, (a, b, n) in table_ranges(tables).items()},
                "columns": {t.resolution: list(t.values) for t in tables}}
        lines = [line for table in tables for line in table_to_lines(run, table)]
        for i in range(0, len(lines), _WRITE_CHUNK):
            self._write_body("\n".join(lines[i:i + _WRITE_CHUNK]))
        # last: a reader finds the run only once all of its rows are there
        self._write_body(run_to_line(run, meta))

    def budget_runs(self, station: str, year: int | None = None) -> list[BudgetRun]:
        query = (f"SELECT computed_ns, first_end_ns, last_end_ns, complete, meta FROM "
                 f"{self._budget_source(BUDGET_RUN_MEASUREMENT)} WHERE station = $station")
        params = {"station": station}
        if year is not None:
            query += " AND year = $year"
            params["year"] = str(year)
        query += " GROUP BY site, year, engine_version, settings_hash"
        runs = []
        for series in self._query(query, params):
            tags = series.get("tags") or {}
            columns = series["columns"]
            for row in series.get("values") or []:
                item = dict(zip(columns, row, strict=True))
                runs.append(run_from_meta(
                    site=str(tags.get("site", "")), station=station, year=int(tags.get("year", 0)),
                    engine_version=str(tags.get("engine_version", "")),
                    settings_hash=str(tags.get("settings_hash", "")), computed_at=from_ns(int(item["computed_ns"])),
                    first_end=from_ns(int(item["first_end_ns"])), last_end=from_ns(int(item["last_end_ns"])),
                    complete=bool(item["complete"]), meta=json.loads(item["meta"] or "{}")))
        runs.sort(key=lambda r: (r.year, r.settings_hash, r.engine_version, r.site))
        return runs

    def budget_table(self, run: BudgetRun, resolution: Resolution) -> BudgetTable:
        params = dict(zip(_RUN_TAGS, _run_key(run), strict=True))
        found = self._query(
            f"SELECT meta FROM {self._budget_source(BUDGET_RUN_MEASUREMENT)} WHERE site = $site AND "
            "station = $station AND year = $year AND engine_version = $engine_version AND "
            "settings_hash = $settings_hash", params)
        meta: dict[str, Any] = {}
        for series in found:
            for row in series.get("values") or []:
                meta = json.loads(row[series["columns"].index("meta")] or "{}")
        names: list[str] = meta.get("columns", {}).get(resolution, [])
        span = meta.get("ranges", {}).get(resolution)
        values: dict[str, list[float | None]] = {n: [] for n in names}
        times: list[datetime] = []
        labels: list[str] = []
        if not span:
            return BudgetTable(resolution, times, labels, values)
        params["resolution"] = resolution
        after = span[0] - 1
        while True:
            query = (f"SELECT * FROM {self._budget_source(BUDGET_MEASUREMENT)} WHERE site = $site AND "
                     "station = $station AND year = $year AND engine_version = $engine_version AND "
                     "settings_hash = $settings_hash AND resolution = $resolution "
                     f"AND time > {int(after)} AND time <= {int(span[1])} LIMIT {_READ_PAGE}")
            page = [dict(zip(series["columns"], row, strict=True))
                    for series in self._query(query, params) for row in series.get("values") or []]
            for item in page:
                nulls = set(str(item.get("nulls") or "").split(","))
                times.append(from_ns(int(item["time"])))
                labels.append(str(item.get("label") or ""))
                for name in names:
                    raw = item.get(name)
                    values[name].append(None if name in nulls or raw is None else float(raw))
            if len(page) < _READ_PAGE:
                break
            after = int(page[-1]["time"])
        return BudgetTable(resolution, times, labels, values)

    def window_means(self, station: str, variable: str, start: datetime, end: datetime, every: timedelta, *,
                     site: str, sensor: str) -> list[WindowMean]:
        seconds = every_ns(every) // 1_000_000_000
        query = (f"SELECT mean(value), count(value) FROM {self._source()} WHERE station = $station AND "
                 "variable = $variable AND site = $site AND sensor = $sensor AND qc <= 1 "
                 f"AND time >= {int(to_ns(start))} AND time < {int(to_ns(end))} GROUP BY time({seconds}s) fill(none)")
        means = []
        for series in self._query(query, {"station": station, "variable": variable, "site": site,
                                          "sensor": sensor}):
            for t, mean, count in series.get("values") or []:
                if mean is not None and count:
                    means.append(WindowMean(from_ns(int(t)), float(mean), int(count)))
        return means
