"""The packed daily copy of InfluxStore's flux records: a year of a few variables without decoding 17,520 rows.

InfluxDB 1.6 spends 0.05-0.07 s of CPU to read a station-year of one flux field (17,520 rows), 0.08-0.09 s for four
(docs/performance.md, "API AT SCALE"): per row, not per byte. The copy keeps, per station, result set and day, one
point holding the day's records as the flux read made them: for each variable the text of each record's value
(the JSON text orjson writes for the number the read of the records gives, `FluxTexts.cells`), and the records'
ends and bookkeeping. A read serves a day from it where the day is known to be current, and from the records
everywhere else, so the records it yields are exactly (text for text) those the read of the records yields, and so
are the bodies written from them.

Measurements (same database and retention policy as `fluxes`)::

    fluxes_1d      tags site, station, engine_version, settings_hash; time = the day's end D + 1 d (the day holds
                   the records ending in (D, D + 1 d], as a read's range (start, end] does)
                   field bk: JSON {"n": nonce, "t": [[first end ns, step ns, count] ...], "k": [kind index ...],
                       "kinds": [kind JSON ...]}: the records' ends as runs of equal steps, and each record's
                       bookkeeping, a kind being [names_id, nulls, period ns, status, reasons] (the names of a
                       `names_id` are looked up as the read of the records looks them up, once per process)
                   one field per variable some record of the day holds (the record's names): "<nonce>|" and the
                       records' value texts joined by commas ("null" where the record holds none)
    fluxes_dirty   tags site, station; time = the day's start D; field gen (integer):
                     > 0  a record of the day was written after the day may have been packed
                       0  clean again (repacked, and nothing written meanwhile)
                      -1  never served from the copy (a record the read does not give as texts, such as one written
                          before `meta` existed, or bookkeeping too large for one field)
    fluxes_pack    tags site, station; field through (integer ns): every day of the station ending at or before it
                   has been packed; time = through

Why it is exact: the four rules of the hourly rollup (influx_rollup.py), with days for hours.

1. **Writers mark late records** (`flux_late_marks`, called by `InfluxStore.write_fluxes` under the write guard's
   lock of the stations, in a /write of their own sent before the records): every record ending at or before
   `floor_hour(now) - MARK_LAG` marks its station-day with a fresh generation (a new record, a rewritten one, a
   recomputed result set: InfluxDB overwrites a point's fields, so any write can change a packed day).
2. **The job packs only old days, after a barrier** (`pack_fluxes`, run by `roll_up`): per station it takes and
   releases the station's guard lock, then packs the days ending at or before `floor_hour(now) - ROLL_LAG`; a
   writer deciding after the barrier sees a clock at most ROLL_LAG - MARK_LAG earlier, so any record of a packed
   day is late for it. `through` advances only after the days' points are written.
3. **Marks are cleared only if unchanged**: the job reads a marked day's generation, repacks the day, and then,
   holding the station's lock, clears the mark only if the generation is still the one it read.
4. **Reads serve a day from the copy only** when the day lies wholly inside the range asked for, wholly before the
   station's `through`, and has no mark with gen != 0; and only if every field the day's records need carries the
   nonce of the day's bookkeeping (a point half rewritten, or a field left from an earlier packing, is never
   served: that day is read from the records). Everything else (the range's partial first and last days, the open
   tail, marked days) is read from the records, and the two are merged in time order.

The copy is written from the read of every variable (`_selected_series` with JSON's texts, one result set at a
time); the read of a few variables gives the same texts for the same numbers (MessagePack's doubles and integers
written as the JSON read writes them: test_store_packed_reads.py). A retention policy that drops a shard drops the
records of (D, D + 1 d) but not the day's point when D + 1 d falls in the next shard group: a store whose retention
policy expires flux records must not read through the copy (`rollup_reads`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack
import numpy as np
import orjson

from gateway.central.store.influx_rollup import (
    MARK_LAG_NS,
    ROLL_LAG_NS,
    FluxPackReport,
    _runs,
    _tags,
    floor_hour,
)
from gateway.central.store.reads import FLUX_CHUNK_ROWS, FluxRow, FluxTexts, RecordKind

if TYPE_CHECKING:
    import contextlib

    from gateway.central.store.writeguard import Marks

PACK_MEASUREMENT = "fluxes_1d"
PACK_DIRTY_MEASUREMENT = "fluxes_dirty"
PACK_STATE_MEASUREMENT = "fluxes_pack"
DAY_NS = 86_400 * 1_000_000_000
#: days packed per query of a station's records (a month of 92 variables: ~1,500 records held at once)
PACK_SLICE_DAYS = 28
#: a day's bookkeeping longer than this is not packed (InfluxDB 1.x keeps a string field up to 64 KiB)
MAX_BOOKKEEPING = 60_000
#: a read of fewer whole days than this reads the records only (the copy's state costs a round trip's share)
MIN_PACKED_DAYS = 2
#: day points per chunk of a read of the copy of a few variables (a day's field is ~0.7 kB); a read of more
#: variables takes proportionally fewer days a chunk (`pack_chunk_days`: every variable, 2 days): a year of every
#: variable in chunks of 64 days took the server to 160 MB of RSS, against ~120 MB for any other read
PACK_CHUNK_DAYS = 64
#: points per /write of the job (a day's point of 92 variables is ~60 kB)
_POINTS_PER_WRITE = 50
_CLEAN, _NEVER = 0, -1
#: a day's point as read: the records' ends (int64), the day's kinds, each record's index into them, and each
#: variable's text (the records' value texts joined by commas)
_DayTexts = tuple[Any, list[RecordKind], list[int], dict[str, str]]
_BOOKKEEPING = "bk"


def pack_chunk_days(wanted: Sequence[str] | None) -> int:
    """Day points per chunk of a read of the copy: ~256 fields' texts (~200 kB) a chunk."""
    fields = 92 if wanted is None else max(4, len(wanted))
    return max(2, PACK_CHUNK_DAYS * 4 // fields)


def floor_day(time_ns: int) -> int:
    return time_ns - time_ns % DAY_NS


def day_of_end(end_ns: int) -> int:
    """The start D of the day (D, D + 1 d] a record ending at `end_ns` belongs to."""
    return floor_day(end_ns - 1)


def _string_field(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class _Day:
    """One result set's records of one day, as the copy holds them."""

    ends: list[int]
    kinds: list[int]  # index into the day's kind texts
    kind_texts: list[str]
    values: dict[str, list[bytes]]  # variable -> each record's value text

    def point(self, site: str, station: str, engine_version: str, settings_hash: str, day: int) -> str | None:
        nonce = secrets.token_hex(8)
        bookkeeping = orjson.dumps({"n": nonce, "t": _time_runs(self.ends), "k": self.kinds,
                                    "kinds": self.kind_texts}).decode()
        if len(bookkeeping) > MAX_BOOKKEEPING:
            return None
        fields = [f"{_BOOKKEEPING}={_string_field(bookkeeping)}"]
        for name, texts in sorted(self.values.items()):
            fields.append(f'{name}="{nonce}|{b",".join(texts).decode()}"')
        tags = ",".join(f"{key}={value}" for key, value in (
            ("engine_version", _escape(engine_version)), ("settings_hash", _escape(settings_hash)),
            ("site", _escape(site)), ("station", _escape(station))) if value)
        return f"{PACK_MEASUREMENT},{tags} {','.join(fields)} {day + DAY_NS}"


def _escape(value: str) -> str:
    from gateway.central.store.lineprotocol import escape_tag_value

    return escape_tag_value(value)


def _kind_text(kind: RecordKind) -> str:
    from gateway.central.store.influx_reads import names_digest

    return orjson.dumps([names_digest(",".join(kind.names)), sorted(kind.nulls), kind.period_ns, kind.status,
                         kind.reasons]).decode()


def _kind_of(text: str, wanted: list[str] | None, names_of: Callable[[str], tuple[str, ...]]) -> RecordKind:
    """The kind the read of the records gives a record of this bookkeeping, asked for `wanted` (`_Way`)."""
    names_id, nulls, period_ns, status, reasons = orjson.loads(text)
    names: Sequence[str] = names_of(names_id)
    if wanted is not None:
        held = set(names)
        names = [n for n in wanted if n in held]
    chosen = tuple(names)
    return RecordKind(chosen, frozenset(n for n in nulls if n in chosen), int(period_ns), status, reasons)


def _time_runs(ends: list[int]) -> list[list[int]]:
    """Times as runs [first, step, count] of equal steps (a day of half hours: one run)."""
    runs: list[list[int]] = []
    for end in ends:
        if runs:
            first, step, count = runs[-1]
            if count == 1 and end > first:
                runs[-1] = [first, end - first, 2]
                continue
            if count > 1 and end == first + step * count:
                runs[-1][2] = count + 1
                continue
        runs.append([end, 0, 1])
    return runs


def _times_of(runs: list[list[int]]) -> Any:
    """The times of `_time_runs`, as int64."""
    parts = [np.arange(first, first + step * count, step, dtype=np.int64) if step
             else np.full(count, first, dtype=np.int64) for first, step, count in runs]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


class InfluxFluxPackMixin:
    """The packed flux copy of InfluxStore: late marks for `write_fluxes`, the job `pack_fluxes`, and the read."""

    if TYPE_CHECKING:
        rollup_reads: bool
        _clock: Callable[[], float]

        def _query(self, query: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]: ...

        def _query_many(self, statements: list[str],
                        params: dict[str, str] | None = None) -> list[list[dict[str, Any]]]: ...

        def _write_body(self, body: str) -> None: ...

        def _packed_chunks(self, query: str, params: dict[str, str],
                           chunk_rows: int) -> Iterator[bytes | dict[str, Any]]: ...

        def _chunk_series(self, line: bytes | dict[str, Any]) -> list[dict[str, Any]] | None: ...

        def _names_of(self, names_id: str, station: str, time_ns: int) -> tuple[str, ...]: ...

        def _flux_source(self) -> str: ...

        def _rollup_source(self, measurement: str) -> str: ...

        def _through(self, site: str, station: str, measurement: str = ...) -> int | None: ...

        def _hold(self, stations: Sequence[tuple[str, str]]) -> contextlib.AbstractContextManager[Marks]: ...

        def _selected_series(self, station: str, site: str, engine_version: str, settings_hash: str, where: str,
                             params: dict[str, str], wanted: list[str] | None) -> Iterator[Sequence[FluxRow]]: ...

    # --- writers: rule 1 --------------------------------------------------------------------------------------------

    def flux_late_marks(self, keys: Sequence[tuple[str, str, int]]) -> str:
        """The /write body marking the station-days of the records about to be written that are late (rule 1), or
        "" when none is; `keys`: their (site, station, end ns). Call it under the guard's lock of their stations
        and send it before the records."""
        before = floor_hour(int(self._clock() * 1e9)) - MARK_LAG_NS
        days = sorted({(site, station, day_of_end(end)) for site, station, end in keys if end <= before})
        if not days:
            return ""
        gen = secrets.randbits(62) + 1
        return "\n".join(f"{PACK_DIRTY_MEASUREMENT},{_tags(site, station)} gen={gen}i {day}"
                         for site, station, day in days)

    # --- the job: rules 2 and 3 -------------------------------------------------------------------------------------

    def pack_fluxes(self, *, stop: Callable[[], bool] = lambda: False) -> FluxPackReport:
        """Pack every station's closed days of flux records and repack its marked ones (module doc). Safe to run at
        any time, in any process sharing the write guard, and to kill at any point; `stop()` ends it between
        stations."""
        report = FluxPackReport()
        found = self._query(f"SELECT last(period_s) FROM {self._flux_source()} GROUP BY site, station")
        stations = sorted({(str((s.get("tags") or {}).get("site", "")), str((s.get("tags") or {}).get("station", "")))
                           for s in found if s.get("values")})
        for site, station in stations:
            if stop():
                break
            self._pack_station(site, station, report)
            report.stations += 1
        return report

    def _pack_station(self, site: str, station: str, report: FluxPackReport) -> None:
        with self._hold([(site, station)]):
            pass  # the barrier of rule 2: every writer that decided before now has finished its write
        horizon = floor_day(floor_hour(int(self._clock() * 1e9)) - ROLL_LAG_NS)
        params = {"site": site, "station": station}
        through = self._through(site, station, PACK_STATE_MEASUREMENT)
        if through is None:
            first = self._query(f"SELECT first(period_s) FROM {self._flux_source()} WHERE site = $site "
                                "AND station = $station", params)
            times = [int(row[0]) for series in first for row in series.get("values") or ()]
            if not times:
                return
            through = day_of_end(min(times))
        while through < horizon:
            upto = min(horizon, through + PACK_SLICE_DAYS * DAY_NS)
            packed, never = self._pack_days(site, station, through, upto)
            if never:
                with self._hold([(site, station)]):
                    self._write_pack_marks(site, station, dict.fromkeys(never, _NEVER))
            report.days_packed += len(packed | never)
            report.never += len(never)
            self._write_body(f"{PACK_STATE_MEASUREMENT},{_tags(site, station)} through={upto}i {upto}")
            through = upto
        marked = self._pack_marks_of(site, station, None, through, positive=True)
        if not marked:
            return
        never_now: set[int] = set()
        for first_day, last_day in _runs(sorted(marked), DAY_NS):
            _, never = self._pack_days(site, station, first_day, last_day + DAY_NS)
            never_now |= never
        report.days_repacked += len(marked)
        with self._hold([(site, station)]):
            now = self._pack_marks_of(site, station, min(marked), through, positive=True)
            unchanged = {day: (_NEVER if day in never_now else _CLEAN) for day, gen in marked.items()
                         if now.get(day) == gen}
            self._write_pack_marks(site, station, unchanged)
        report.marks_cleared += len(unchanged)
        report.marks_kept += len(marked) - len(unchanged)
        report.never += sum(1 for day in unchanged if day in never_now)

    def _pack_days(self, site: str, station: str, first_day: int, end_day: int) -> tuple[set[int], set[int]]:
        """Write the points of the days [first_day, end_day) (their records ending in (first_day, end_day]) of
        every result set; the days packed, and those the copy cannot hold."""
        where = f"WHERE station = $station AND time > {int(first_day)} AND time <= {int(end_day)}"
        params = {"station": station, "site": site}
        found = self._query(f"SELECT last(period_s) FROM {self._flux_source()} {where} AND site = $site "
                            "GROUP BY engine_version, settings_hash", params)
        sets = sorted({(str(tags.get("engine_version", "")), str(tags.get("settings_hash", "")))
                       for series in found if series.get("values") for tags in [series.get("tags") or {}]})
        packed: set[int] = set()
        never: set[int] = set()
        lines: list[tuple[int, str]] = []
        for engine_version, settings_hash in sets:
            days: dict[int, _Day] = {}
            kind_index: dict[int, dict[str, int]] = {}  # day -> kind text -> its index in the day
            for chunk in self._selected_series(station, site, engine_version, settings_hash, where,
                                               {"station": station}, None):
                if not isinstance(chunk, FluxTexts):
                    never.update(day_of_end(row.end_ns) for row in chunk)
                    continue
                texts_of = [_kind_text(kind) for kind in chunk.kinds]
                cells, width, column_of = chunk.cells, chunk.width, chunk.column_of
                for r, (end_ns, k) in enumerate(zip(chunk.end_ns.tolist(), chunk.kind_of, strict=True)):
                    day_start = day_of_end(end_ns)
                    day = days.get(day_start)
                    if day is None:
                        day = days[day_start] = _Day([], [], [], {})
                        kind_index[day_start] = {}
                    index = kind_index[day_start]
                    text = texts_of[k]
                    if text not in index:
                        index[text] = len(day.kind_texts)
                        day.kind_texts.append(text)
                    count = len(day.ends)
                    day.ends.append(end_ns)
                    day.kinds.append(index[text])
                    kind = chunk.kinds[k]
                    for name in kind.names:
                        values = day.values.get(name)
                        if values is None:
                            values = day.values[name] = [b"null"] * count
                        column = column_of.get(name, -1)
                        values.append(cells[r * width + column] if column >= 0 and name not in kind.nulls
                                      else b"null")
                    for values in day.values.values():  # a variable this record does not hold
                        if len(values) == count:
                            values.append(b"null")
            for day_start, day in days.items():
                point = day.point(site, station, engine_version, settings_hash, day_start)
                if point is None:
                    never.add(day_start)
                else:
                    lines.append((day_start, point))
                    packed.add(day_start)
        for first in range(0, len(lines), _POINTS_PER_WRITE):
            self._write_body("\n".join(line for day, line in lines[first:first + _POINTS_PER_WRITE]))
        return packed - never, never

    def _write_pack_marks(self, site: str, station: str, marks: dict[int, int]) -> None:
        lines = [f"{PACK_DIRTY_MEASUREMENT},{_tags(site, station)} gen={gen}i {day}"
                 for day, gen in sorted(marks.items())]
        for first in range(0, len(lines), 5_000):
            self._write_body("\n".join(lines[first:first + 5_000]))

    def _pack_marks_of(self, site: str, station: str, start_ns: int | None, end_ns: int, *,
                       positive: bool = False) -> dict[int, int]:
        where = f"WHERE site = $site AND station = $station AND time < {int(end_ns)}"
        if start_ns is not None:
            where += f" AND time >= {int(start_ns)}"
        where += " AND gen > 0" if positive else " AND gen != 0"
        found = self._query(f"SELECT gen FROM {self._rollup_source(PACK_DIRTY_MEASUREMENT)} {where}",
                            {"site": site, "station": station})
        return {int(t): int(g) for series in found for t, g in series.get("values") or ()}

    # --- reads: rule 4 ----------------------------------------------------------------------------------------------

    def _pack_statements(self, start_ns: int, end_ns: int) -> list[str] | None:
        """The statements a read of (start, end] sends with its result-set query for the copy's state and marks,
        or None when the range holds too few whole days to read any from the copy."""
        first, last = _ceil_day(start_ns), floor_day(end_ns)
        if not self.rollup_reads or last - first < MIN_PACKED_DAYS * DAY_NS:
            return None
        return [f"SELECT last(through) FROM {self._rollup_source(PACK_STATE_MEASUREMENT)} WHERE station = $station "
                "GROUP BY site",
                f"SELECT gen FROM {self._rollup_source(PACK_DIRTY_MEASUREMENT)} WHERE station = $station "
                f"AND time >= {int(first)} AND time < {int(last)} AND gen != 0 GROUP BY site"]

    def _packed_or_raw(self, station: str, site: str, engine_version: str, settings_hash: str, start_ns: int,
                       end_ns: int, settings_param: str | None, wanted: list[str] | None,
                       state: list[dict[str, Any]], marks: list[dict[str, Any]]) -> Iterator[Sequence[FluxRow]]:
        """One result set's records of (start, end]: whole clean days before `through` from the copy, the rest
        from the records (rule 4), in time order."""
        through = max((int(row[1]) for series in state if (series.get("tags") or {}).get("site", "") == site
                       for row in series.get("values") or () if row[1] is not None), default=None)
        dirty = {int(row[0]) for series in marks if (series.get("tags") or {}).get("site", "") == site
                 for row in series.get("values") or ()}
        first = _ceil_day(start_ns)
        last = floor_day(min(end_ns, through)) if through is not None else first
        # segments in time order: (from, to, from the copy)
        segments: list[tuple[int, int, bool]] = []
        if last - first < DAY_NS:
            segments.append((start_ns, end_ns, False))
        else:
            segments.append((start_ns, first, False))
            day = first
            while day < last:
                clean = day not in dirty
                upto = day + DAY_NS
                while upto < last and (upto not in dirty) == clean:
                    upto += DAY_NS
                segments.append((day, upto, clean))
                day = upto
            segments.append((last, end_ns, False))
        for begin, finish, packed in segments:
            if finish <= begin:
                continue
            if packed:
                yield from self._from_copy(station, site, engine_version, settings_hash, begin, finish,
                                           settings_param, wanted)
            else:
                yield from self._raw_flux_segment(station, site, engine_version, settings_hash, begin, finish,
                                                  settings_param, wanted)

    def _raw_flux_segment(self, station: str, site: str, engine_version: str, settings_hash: str, begin: int,
                          finish: int, settings_param: str | None,
                          wanted: list[str] | None) -> Iterator[Sequence[FluxRow]]:
        where = f"WHERE station = $station AND time > {int(begin)} AND time <= {int(finish)}"
        params = {"station": station}
        if settings_param is not None:
            where += " AND settings_hash = $settings_hash"
            params["settings_hash"] = settings_param
        yield from self._selected_series(station, site, engine_version, settings_hash, where, params, wanted)

    def _from_copy(self, station: str, site: str, engine_version: str, settings_hash: str, first_day: int,
                   end_day: int, settings_param: str | None,
                   wanted: list[str] | None) -> Iterator[Sequence[FluxRow]]:
        """The records of the days [first_day, end_day) from their points; a day whose point is missing a field
        its records need, or holds one of another packing, from the records."""
        from gateway.central.store.influx_reads import SELECTED_CHUNK_ROWS, _field_identifier

        fields = "/^[A-Z]/" if wanted is None else ", ".join(_field_identifier(n) for n in wanted)
        query = (f"SELECT {fields}, {_BOOKKEEPING} FROM {self._rollup_source(PACK_MEASUREMENT)} "
                 "WHERE station = $station AND site = $site AND engine_version = $engine_version "
                 f"AND settings_hash = $settings_hash AND time > {int(first_day)} AND time <= {int(end_day)}")
        params = {"station": station, "site": site, "engine_version": engine_version, "settings_hash": settings_hash}
        size = FLUX_CHUNK_ROWS if wanted is None else SELECTED_CHUNK_ROWS
        kinds_of: dict[str, tuple[RecordKind, frozenset[str]]] = {}
        held: list[_DayTexts] = []
        rows_held = 0
        for packed_chunk in self._packed_chunks(query, params, pack_chunk_days(wanted)):
            # MessagePack: InfluxDB writes the strings as they are (its JSON escapes every quote of them)
            chunk = self._chunk_series(msgpack.unpackb(packed_chunk, raw=False) if isinstance(packed_chunk, bytes)
                                       else packed_chunk)
            if chunk is None:
                return
            for series in chunk:
                columns = series["columns"]
                b_i = columns.index(_BOOKKEEPING)
                value_columns = [(i, name) for i, name in enumerate(columns) if name not in ("time", _BOOKKEEPING)]
                for row in series.get("values") or ():
                    day = self._day_texts(row, b_i, value_columns, wanted, kinds_of, station)
                    day_end = int(row[0])
                    if day is None:
                        if held:
                            yield _texts(site, station, engine_version, settings_hash, held, wanted)
                            held, rows_held = [], 0
                        yield from self._raw_flux_segment(station, site, engine_version, settings_hash,
                                                          day_end - DAY_NS, day_end, settings_param, wanted)
                        continue
                    held.append(day)
                    rows_held += len(day[0])
                    if rows_held >= size:
                        yield _texts(site, station, engine_version, settings_hash, held, wanted)
                        held, rows_held = [], 0
        if held:
            yield _texts(site, station, engine_version, settings_hash, held, wanted)

    def _day_texts(self, row: list[Any], b_i: int, value_columns: list[tuple[int, str]], wanted: list[str] | None,
                   kinds_of: dict[str, tuple[RecordKind, frozenset[str]]], station: str) -> _DayTexts | None:
        """One day's point as (ends, each record's kind, each variable's texts), or None when it cannot be served
        (rule 4: a field its records need is missing or of another packing)."""
        bookkeeping = row[b_i]
        if not isinstance(bookkeeping, str):
            return None
        try:
            book = orjson.loads(bookkeeping)
            nonce, ends, kind_at, kind_texts = book["n"], _times_of(book["t"]), book["k"], book["kinds"]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        count = len(ends)
        if len(kind_at) != count or (count and not 0 <= min(kind_at) <= max(kind_at) < len(kind_texts)):
            return None
        kinds = []
        needed: set[str] = set()
        for k, text in enumerate(kind_texts):
            known = kinds_of.get(text)
            if known is None:
                # the names of a names_id: from the cache, else from a record of the day that has it
                at = int(ends[kind_at.index(k)]) if k in kind_at else 0

                def names_of(names_id: str, at: int = at) -> tuple[str, ...]:
                    return self._names_of(names_id, station, at)

                kind = _kind_of(text, wanted, names_of)
                # with the variables whose texts its records are written from
                known = kinds_of[text] = (kind, frozenset(kind.names) - kind.nulls)
            kinds.append(known[0])
            needed |= known[1]
        prefix = f"{nonce}|"
        values: dict[str, str] = {}
        for i, name in value_columns:
            text = row[i]
            if not isinstance(text, str) or not text.startswith(prefix):
                continue  # none, or of another packing: served only if no record needs it
            if text.count(",") != count - 1:
                return None
            values[name] = text[len(prefix):]
        if not needed <= values.keys():
            return None
        return ends, kinds, kind_at, values


_NULLS: dict[int, str] = {}


def _nulls(count: int) -> str:
    text = _NULLS.get(count)
    if text is None:
        text = _NULLS[count] = ",".join(["null"] * count)
    return text


def _texts(site: str, station: str, engine_version: str, settings_hash: str,
           days: list[_DayTexts],
           wanted: list[str] | None) -> FluxTexts:
    """Days of one result set as one chunk of texts, laid out as the read of the records lays out its own: a row's
    time and meta cells (`null` here) around its values."""
    if wanted is not None:
        names = [n for n in wanted if any(n in day[3] for day in days)]
    else:
        names = sorted(set().union(*(day[3].keys() for day in days)))
    width = len(names) + 2
    count = sum(len(day[0]) for day in days)
    cells: list[bytes] = [b"null"] * (count * width)
    for j, name in enumerate(names):
        # the chunk's texts of a variable split at once (each day's count was checked)
        cells[j + 1::width] = ",".join([values.get(name) or _nulls(len(ends)) for ends, _, _, values in days]
                                       ).encode().split(b",")
    kinds: list[RecordKind] = []
    index: dict[int, int] = {}
    kind_of: list[int] = []
    for ends, day_kinds, kind_at, _ in days:
        at = []
        for kind in day_kinds:
            found = index.get(id(kind))
            if found is None:
                found = index[id(kind)] = len(kinds)
                kinds.append(kind)
            at.append(found)
        kind_of += [at[0]] * len(ends) if len(at) == 1 else [at[k] for k in kind_at]
    end_ns = days[0][0] if len(days) == 1 else np.concatenate([day[0] for day in days])
    column_of = {"time": 0, **{name: j + 1 for j, name in enumerate(names)}, "meta": width - 1}
    return FluxTexts(site, station, engine_version, settings_hash, end_ns, kinds, kind_of, cells, width, column_of)


def _ceil_day(time_ns: int) -> int:
    return -floor_day(-time_ns)
