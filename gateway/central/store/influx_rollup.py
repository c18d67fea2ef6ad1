"""The hourly rollup of InfluxStore: a year of readings aggregated to hours without decoding the year.

`GROUP BY time(1h)` over a station-year of 10-s readings costs InfluxDB 1.6 ~0.85 s of CPU (it decodes 3.15 M
points; docs/performance.md, "API AT SCALE"). The rollup keeps InfluxDB's own answer for every hour of every series
and serves an hourly read from it where that answer is known to be current, and from the readings everywhere else,
so a read through the rollup returns exactly (bit for bit) what the same read of the readings returns.

Measurements (same database and retention policy as `readings`)::

    readings_1h      tags site, station, sensor, variable; time = the hour's start
                     fields mean, min, max, count, last (each left out when InfluxDB's answer is null), qc (max):
                     what `SELECT mean(value), min(value), max(value), count(value), last(value), max(qc)
                     ... GROUP BY time(1h), *` gives for that hour, floats written as their shortest round-trip text
    readings_dirty   tags site, station, sensor, variable; time = the hour's start; field gen (integer):
                     > 0  the hour got readings after it may have been rolled up (the writer's random generation)
                       0  clean again (the rollup job recomputed it and no reading came in meanwhile)
                      -1  never served from the rollup (readings of more than one unit or time source in the hour:
                          InfluxDB's mean then depends on the order it merges the series in, see below)
    readings_rollup  tags site, station; field through (integer ns): every hour of the station before it has been
                     rolled up; time = through (the newest point is the state)

Why it is exact, in four rules:

1. **Writers mark late readings** (`late_marks`, called by `InfluxStore.write_many` under the write guard's lock
   of the stations, in a /write request of their own sent before the readings): every new reading stamped before
   `floor_hour(now) - MARK_LAG` marks its series-hour with a fresh generation. A failed readings write after it
   leaves a needless mark (a recompute), never a missing one. Resends and conflicts write nothing and mark nothing.
2. **The job rolls only old hours, after a barrier** (`roll_up`): for each station it takes and releases the
   station's guard lock, then rolls the hours from its `through` up to `floor_hour(now) - ROLL_LAG`. Every writer
   that decided before the barrier has finished its write (it held the lock until then), so the job's query sees
   its readings; every writer deciding after it sees a clock at least as late, so a reading before the new
   `through` is late for it (ROLL_LAG > MARK_LAG by two hours: a clock stepped back by less than that changes
   nothing) and gets marked. `through` advances only after the hours' rows are written.
3. **Marks are cleared only if unchanged**: the job reads a marked hour's generation, recomputes the hour, writes its
   row, and then, holding the station's lock, clears the mark only if the generation is still the one it read (a
   reading that came in meanwhile set another one and is recomputed next time). A job killed anywhere leaves
   marks set or `through` behind: work done again, never a stale hour served.
4. **Reads serve an hour from the rollup only** when the hour lies wholly inside the range asked for, wholly before
   the station's `through`, and has no mark with gen != 0. Everything else (the range's partial first and last
   hours, the open tail, marked hours) is read from the readings, and the two are merged in time order.

InfluxDB's mean of an hour depends on the order in which it sums the points: for one series that is time order in
any query; when one sensor's variable has two series in an hour (a changed unit or time source: the tags), the order
of merging them is InfluxDB's choice, so such hours are marked -1 and always read from the readings. A rollup row is
served for `every` = 1 h, and for whole multiples of it (2 h, 1 d, ...) for min, max, count and last, which InfluxDB
combines exactly from the hourly rows (the min of the minima, the sum of the counts, the last hour's last, the max of
the qc); a window with a marked hour is read whole from the readings. A mean over several hours is always read from
the readings: it cannot be rebuilt bit for bit from hourly means (InfluxDB sums the points in another order).
"""

from __future__ import annotations

import bisect
import logging
import operator
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from gateway.central.store.base import Aggregate, ReadingIdentity
from gateway.central.store.lineprotocol import escape_tag_value, format_float
from gateway.central.store.reads import SeriesRow

if TYPE_CHECKING:
    import contextlib

    from gateway.central.store.writeguard import Marks, WriteGuard

log = logging.getLogger(__name__)

ROLLUP_MEASUREMENT = "readings_1h"
DIRTY_MEASUREMENT = "readings_dirty"
STATE_MEASUREMENT = "readings_rollup"
HOUR_NS = 3600 * 1_000_000_000
#: a reading stamped before floor_hour(now) - MARK_LAG marks its hour (writers)
MARK_LAG_NS = 1 * HOUR_NS
#: the job rolls hours before floor_hour(now) - ROLL_LAG; two hours more than MARK_LAG (see rule 2)
ROLL_LAG_NS = 3 * HOUR_NS
#: hours the job rolls up per query of a station (a week of 41 series: ~7,000 rows held at once)
ROLL_SLICE_NS = 7 * 24 * HOUR_NS
#: a read with more separate runs of marked hours than this reads the whole range from the readings
MAX_DIRTY_RUNS = 64
#: rows per /write of the job
_ROWS_PER_WRITE = 5_000
_AGGREGATE_FIELDS: dict[str, str] = {"mean": "mean", "min": "min", "max": "max", "count": "count", "last": "last"}
#: how a window of several hours is made of its hourly rows, exactly (no mean: a mean of means is not InfluxDB's)
_COMBINED: dict[str, str] = {"min": "min", "max": "max", "count": "sum", "last": "last"}
_CLEAN, _MIXED = 0, -1

Series = tuple[str, str]  # sensor, variable


def floor_hour(time_ns: int) -> int:
    return time_ns - time_ns % HOUR_NS


@dataclass
class FluxPackReport:
    """What one `pack_fluxes` (influx_fluxpack.py) did."""

    stations: int = 0
    days_packed: int = 0  # station-days newly packed (past the old `through`)
    days_repacked: int = 0  # marked station-days packed again
    marks_cleared: int = 0
    marks_kept: int = 0  # written to while repacked: done again next time
    never: int = 0  # station-days the copy cannot hold: always read from the records


@dataclass
class RollupReport:
    """What one `roll_up` did: the hourly rollup's work, and the packed flux copy's (`flux`)."""

    stations: int = 0
    hours_rolled: int = 0  # series-hours newly rolled up (rows written past the old `through`)
    hours_recomputed: int = 0  # marked series-hours recomputed
    marks_cleared: int = 0
    marks_kept: int = 0  # changed while recomputed: done again next time
    mixed: int = 0  # series-hours with several units or time sources: always read from the readings
    flux: FluxPackReport = field(default_factory=FluxPackReport)


def _tags(site: str, station: str, sensor: str = "", variable: str = "") -> str:
    pairs = (("sensor", sensor), ("site", site), ("station", station), ("variable", variable))
    return ",".join(f"{key}={escape_tag_value(value)}" for key, value in pairs if value)


def _number(value: Any) -> str | None:
    """A field's text for a JSON number InfluxDB answered (its shortest round-trip text read back exactly)."""
    if value is None:
        return None
    return format_float(float(value))


class InfluxRollupMixin:
    """The rollup of InfluxStore: late marks for `write_many`, the job `roll_up`, and the hourly read."""

    if TYPE_CHECKING:
        url: str
        retention_policy: str | None
        rollup_reads: bool
        _guard: WriteGuard
        _clock: Callable[[], float]

        def _query(self, query: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]: ...

        def _query_many(self, statements: list[str],
                        params: dict[str, str] | None = None) -> list[list[dict[str, Any]]]: ...

        def _write_body(self, body: str) -> None: ...

        def _stream(self, query: str, params: dict[str, str],
                    chunk_rows: int = ...) -> Iterator[list[dict[str, Any]]]: ...

        def _stream_lines(self, query: str, params: dict[str, str], chunk_rows: int = ...) -> Iterator[bytes]: ...

        def _chunk_series(self, line: bytes) -> list[dict[str, Any]] | None: ...

        def _series_rows(self, query: str, params: dict[str, str]) -> Iterator[Sequence[SeriesRow]]: ...

        def _source(self) -> str: ...

        def _raw_iter_series(self, station: str, variable: str, start_ns: int, end_ns: int,
                             every_ns: int | None, aggregate: Aggregate, site: str | None,
                             sensor: str | None) -> Iterator[Sequence[SeriesRow]]: ...

        def _hold(self, stations: Sequence[tuple[str, str]]) -> contextlib.AbstractContextManager[Marks]: ...

        def pack_fluxes(self, *, stop: Callable[[], bool] = ...) -> FluxPackReport: ...

    def _rollup_source(self, measurement: str) -> str:
        from gateway.central.store.influx import quote_identifier

        if self.retention_policy is None:
            return measurement
        return f"{quote_identifier(self.retention_policy)}.{measurement}"

    # --- writers: rule 1 --------------------------------------------------------------------------------------------

    def late_before(self) -> int:
        """The time in ns before which a reading written now is late (rule 1)."""
        return floor_hour(int(self._clock() * 1e9)) - MARK_LAG_NS

    def late_marks(self, keys: Sequence[ReadingIdentity]) -> str:
        """The /write body marking the series-hours of the readings about to be written that are late (rule 1), or
        "" when none is; `keys`: their identities. Call it under the guard's lock of their stations and send it
        before the readings."""
        before = self.late_before()
        if not keys or min(map(itemgetter(4), keys)) >= before:
            return ""
        late = [key for key in keys if key[4] < before] if max(map(itemgetter(4), keys)) >= before else keys
        # each late reading's series-hour, in C loops over the columns of the identities
        sites, stations, sensors, variables, stamps = zip(*late, strict=True)
        hour_of = map(operator.sub, stamps, map(operator.mod, stamps, repeat(HOUR_NS)))
        hours = set(zip(sites, stations, sensors, variables, hour_of, strict=True))
        gen = secrets.randbits(62) + 1
        return "\n".join(f"{DIRTY_MEASUREMENT},{_tags(site, station, sensor, variable)} gen={gen}i {hour}"
                         for site, station, sensor, variable, hour in sorted(hours))

    # --- the job: rules 2 and 3 -------------------------------------------------------------------------------------

    def roll_up(self, *, stop: Callable[[], bool] = lambda: False) -> RollupReport:
        """Roll up every station's closed hours and recompute its marked ones (module doc), then pack the flux
        records' closed days and repack the marked ones (`pack_fluxes`, influx_fluxpack.py). Safe to run at any
        time, in any process sharing the write guard, and to kill at any point; `stop()` ends it between stations.
        """
        report = RollupReport()
        found = self._query(f"SELECT last(qc) FROM {self._source()} GROUP BY site, station")
        stations = sorted({(str((s.get("tags") or {}).get("site", "")), str((s.get("tags") or {}).get("station", "")))
                           for s in found if s.get("values")})
        for site, station in stations:
            if stop():
                break
            self._roll_station(site, station, report)
            report.stations += 1
        if not stop():
            report.flux = self.pack_fluxes(stop=stop)
        return report

    def _roll_station(self, site: str, station: str, report: RollupReport) -> None:
        with self._hold([(site, station)]):
            pass  # the barrier of rule 2: every writer that decided before now has finished its write
        horizon = floor_hour(int(self._clock() * 1e9)) - ROLL_LAG_NS
        params = {"site": site, "station": station}
        through = self._through(site, station)
        if through is None:
            first = self._query(f"SELECT first(qc) FROM {self._source()} WHERE site = $site AND station = $station",
                                params)
            times = [int(row[0]) for series in first for row in series.get("values") or ()]
            if not times:
                return
            through = floor_hour(min(times))
        while through < horizon:
            # a slice at a time: a station's first run may roll up years, and each slice's rows are held in memory
            upto = min(horizon, through + ROLL_SLICE_NS)
            new_rows, new_mixed = self._compute(site, station, None, through, upto)
            self._write_rows(site, station, new_rows)
            if new_mixed:
                with self._hold([(site, station)]):
                    self._write_marks(site, station, dict.fromkeys(new_mixed, _MIXED))
            report.hours_rolled += len(new_rows) + len(new_mixed)
            report.mixed += len(new_mixed)
            self._write_body(f"{STATE_MEASUREMENT},{_tags(site, station)} through={upto}i {upto}")
            through = upto
        marked = self._marks_of(site, station, None, None, through, positive=True)
        if not marked:
            return
        by_series: dict[Series, list[int]] = {}
        for (sensor, variable, hour) in marked:
            by_series.setdefault((sensor, variable), []).append(hour)
        rows: dict[tuple[str, str, int], dict[str, Any]] = {}
        mixed: set[tuple[str, str, int]] = set()
        for series_key, hours in sorted(by_series.items()):
            for first_hour, last_hour in _runs(sorted(hours)):
                got, got_mixed = self._compute(site, station, series_key, first_hour, last_hour + HOUR_NS)
                rows.update(got)
                mixed |= got_mixed
        self._write_rows(site, station, rows)
        report.hours_recomputed += len(marked)
        with self._hold([(site, station)]):
            now = self._marks_of(site, station, None, min(h for *_, h in marked), through, positive=True)
            unchanged = {key: (_MIXED if key in mixed else _CLEAN) for key, gen in marked.items()
                         if now.get(key) == gen}
            self._write_marks(site, station, unchanged)
        report.marks_cleared += len(unchanged)
        report.marks_kept += len(marked) - len(unchanged)
        report.mixed += sum(1 for key in unchanged if key in mixed)

    def _through(self, site: str, station: str, measurement: str = STATE_MEASUREMENT) -> int | None:
        """The station's `through` in a state measurement (the rollup's, or the packed flux copy's)."""
        found = self._query(f"SELECT last(through) FROM {self._rollup_source(measurement)} "
                            "WHERE site = $site AND station = $station", {"site": site, "station": station})
        values = [int(row[1]) for series in found for row in series.get("values") or () if row[1] is not None]
        return max(values) if values else None

    def _compute(self, site: str, station: str, series_key: Series | None, start_ns: int, end_ns: int
                 ) -> tuple[dict[tuple[str, str, int], dict[str, Any]], set[tuple[str, str, int]]]:
        """InfluxDB's hourly answers of [start, end) per (sensor, variable, hour), and the hours of more than one
        series (unit, time source) of a sensor's variable."""
        where = (f"WHERE site = $site AND station = $station AND time >= {int(start_ns)} AND time < {int(end_ns)}")
        params = {"site": site, "station": station}
        if series_key is not None:
            where += " AND sensor = $sensor AND variable = $variable"
            params |= {"sensor": series_key[0], "variable": series_key[1]}
        query = (f"SELECT mean(value) AS mean, min(value) AS min, max(value) AS max, count(value) AS count, "
                 f"last(value) AS last, max(qc) AS qc FROM {self._source()} {where} GROUP BY time(1h), * fill(none)")
        rows: dict[tuple[str, str, int], dict[str, Any]] = {}
        mixed: set[tuple[str, str, int]] = set()
        for chunk in self._stream(query, params):
            for series in chunk:
                tags = series.get("tags") or {}
                sensor, variable = str(tags.get("sensor", "")), str(tags.get("variable", ""))
                columns = series["columns"]
                for values in series.get("values") or ():
                    row = dict(zip(columns, values, strict=True))
                    key = (sensor, variable, int(row["time"]))
                    if key in rows or key in mixed:
                        rows.pop(key, None)
                        mixed.add(key)
                    else:
                        rows[key] = row
        return rows, mixed

    def _write_rows(self, site: str, station: str, rows: dict[tuple[str, str, int], dict[str, Any]]) -> None:
        lines = []
        for (sensor, variable, hour), row in sorted(rows.items()):
            fields = [f"{name}={text}" for name in ("mean", "min", "max", "last")
                      if (text := _number(row.get(name))) is not None]
            if row.get("count") is not None:
                fields.append(f"count={int(row['count'])}i")
            if row.get("qc") is not None:
                fields.append(f"qc={int(row['qc'])}i")
            if not fields:
                continue  # no reading in the hour (never answered with fill(none))
            lines.append(f"{ROLLUP_MEASUREMENT},{_tags(site, station, sensor, variable)} {','.join(fields)} {hour}")
        for first in range(0, len(lines), _ROWS_PER_WRITE):
            self._write_body("\n".join(lines[first:first + _ROWS_PER_WRITE]))

    def _write_marks(self, site: str, station: str, marks: dict[tuple[str, str, int], int]) -> None:
        lines = [f"{DIRTY_MEASUREMENT},{_tags(site, station, sensor, variable)} gen={gen}i {hour}"
                 for (sensor, variable, hour), gen in sorted(marks.items())]
        for first in range(0, len(lines), _ROWS_PER_WRITE):
            self._write_body("\n".join(lines[first:first + _ROWS_PER_WRITE]))

    def _marks_of(self, site: str, station: str, series_key: Series | None, start_ns: int | None, end_ns: int,
                  *, positive: bool = False) -> dict[tuple[str, str, int], int]:
        """Marks with gen != 0 (> 0 with `positive`) of [start, end), by (sensor, variable, hour)."""
        where = f"WHERE site = $site AND station = $station AND time < {int(end_ns)}"
        if start_ns is not None:
            where += f" AND time >= {int(start_ns)}"
        params = {"site": site, "station": station}
        if series_key is not None:
            where += " AND sensor = $sensor AND variable = $variable"
            params |= {"sensor": series_key[0], "variable": series_key[1]}
        where += " AND gen > 0" if positive else " AND gen != 0"
        found = self._query(f"SELECT gen FROM {self._rollup_source(DIRTY_MEASUREMENT)} {where} "
                            "GROUP BY sensor, variable", params)
        marks: dict[tuple[str, str, int], int] = {}
        for series in found:
            tags = series.get("tags") or {}
            sensor, variable = str(tags.get("sensor", "")), str(tags.get("variable", ""))
            for time_ns, gen in series.get("values") or ():
                marks[(sensor, variable, int(time_ns))] = int(gen)
        return marks

    # --- reads: rule 4 ----------------------------------------------------------------------------------------------

    def _rolled_iter_series(self, station: str, variable: str, start_ns: int, end_ns: int, window_ns: int,
                            aggregate: Aggregate, site: str, sensor: str) -> Iterator[Sequence[SeriesRow]]:
        """Windows of whole hours of one series: those whose hours are all clean from the rollup, the others from
        the readings (rule 4). A window of several hours is combined from its hourly rows by InfluxDB (the min of
        the minima, the sum of the counts, ...), which is exact for every aggregate but the mean; `iter_series`
        sends a mean over several hours to the readings."""
        raw = self._raw_iter_series
        first, floor_end = _ceil_to(start_ns, window_ns), _floor_to(end_ns, window_ns)
        if floor_end <= first:
            yield from raw(station, variable, start_ns, end_ns, window_ns, aggregate, site, sensor)
            return
        # the state and the marks in one request (the marks of hours past `through` are not needed, but asking for
        # them saves a round trip)
        params = {"site": site, "station": station, "sensor": sensor, "variable": variable}
        state, marks = self._query_many([
            f"SELECT last(through) FROM {self._rollup_source(STATE_MEASUREMENT)} WHERE site = $site "
            "AND station = $station",
            f"SELECT gen FROM {self._rollup_source(DIRTY_MEASUREMENT)} WHERE site = $site AND station = $station "
            f"AND sensor = $sensor AND variable = $variable AND time >= {int(first)} AND time < {int(floor_end)} "
            "AND gen != 0",
        ], params)
        through = max((int(row[1]) for series in state for row in series.get("values") or () if row[1] is not None),
                      default=first)
        last = _floor_to(min(floor_end, through), window_ns)
        if last <= first:
            yield from raw(station, variable, start_ns, end_ns, window_ns, aggregate, site, sensor)
            return
        # a window with a marked hour is read whole from the readings
        dirty = sorted({_floor_to(int(row[0]), window_ns) for series in marks for row in series.get("values") or ()
                        if row[0] < last})
        runs = _runs(dirty, window_ns)
        if len(runs) > MAX_DIRTY_RUNS:
            yield from raw(station, variable, start_ns, end_ns, window_ns, aggregate, site, sensor)
            return
        if start_ns < first:
            yield from raw(station, variable, start_ns, first, window_ns, aggregate, site, sensor)
        field = _AGGREGATE_FIELDS[aggregate]
        where = (f"WHERE site = $site AND station = $station AND sensor = $sensor AND variable = $variable "
                 f"AND time >= {int(first)} AND time < {int(last)}")
        if window_ns == HOUR_NS:
            query = f'SELECT "{field}" AS value, qc FROM {self._rollup_source(ROLLUP_MEASUREMENT)} {where}'
        else:
            query = (f'SELECT {_COMBINED[aggregate]}("{field}") AS value, max(qc) AS qc '
                     f"FROM {self._rollup_source(ROLLUP_MEASUREMENT)} {where} "
                     f"GROUP BY time({window_ns // 1_000_000_000}s) fill(none)")
        pending = list(runs)  # (first window, last window) of each run of marked windows, in time order
        # a year of hourly means is 8,760 rows: read as the raw reads are, kept as InfluxDB's text (docs/performance.md)
        for rows in self._series_rows(query, params):
            if not runs:
                yield rows  # InfluxDB's own text or rows: no copy per row
                continue
            out: list[SeriesRow] = []
            for row in rows:
                time_ns = row[0]
                while pending and pending[0][0] <= time_ns:
                    run_first, run_last = pending.pop(0)
                    if out:
                        yield out
                        out = []
                    yield from raw(station, variable, run_first, run_last + window_ns, window_ns, aggregate,
                                   site, sensor)
                if not _inside(time_ns, runs):
                    out.append(row)
            if out:
                yield out
        for run_first, run_last in pending:
            yield from raw(station, variable, run_first, run_last + window_ns, window_ns, aggregate, site, sensor)
        if last < end_ns:
            yield from raw(station, variable, last, end_ns, window_ns, aggregate, site, sensor)


def _floor_to(time_ns: int, step: int) -> int:
    return time_ns - time_ns % step


def _ceil_to(time_ns: int, step: int) -> int:
    return -_floor_to(-time_ns, step)


def _runs(hours: list[int], step: int = HOUR_NS) -> list[tuple[int, int]]:
    """Sorted window starts -> (first, last) of each run of consecutive windows of `step`."""
    runs: list[tuple[int, int]] = []
    for hour in hours:
        if runs and hour - runs[-1][1] <= step:
            runs[-1] = (runs[-1][0], hour)
        else:
            runs.append((hour, hour))
    return runs


def _inside(time_ns: int, runs: list[tuple[int, int]]) -> bool:
    index = bisect.bisect_right(runs, (time_ns, 1 << 62)) - 1
    return index >= 0 and runs[index][0] <= time_ns <= runs[index][1]
