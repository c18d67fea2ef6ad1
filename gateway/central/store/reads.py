"""Streamed reads: what the HTTP API reads a long range through, chunk by chunk, so that neither the server's
memory nor the time to the first byte grows with the range (issue 13, "API at scale").

`query_series` and `query_fluxes` (gateway.central.store.base) return whole lists of validated objects; they are
what the jobs use (budget, soil, stems, alerts, audit). The methods here return the same rows as plain tuples in
chunks of at most a few thousand rows, in the same order, with the same semantics:

- `iter_series` yields chunks of `SeriesRow` (lists, or `PointColumns` that an encoder can write without a step per
  point) (time in integer nanoseconds, value, qc) in time order: raw readings in
  [start, end) or one row per non-empty window (windows aligned to the epoch, reported at their start), exactly the
  points `query_series` returns, without its limit (a whole-numbered value may come as an int).
- `iter_fluxes` yields lists of `FluxRow` ordered by period end, then settings_hash, then engine_version, exactly the
  records `query_fluxes` returns; with `variables`, each row's `values` holds only those of the named variables
  the record carries, in the order asked (a variable the record lacks is left out, as in the whole record).
- `flux_columns` says, before any row is read, which result sets and which variables the records of a range carry,
  so a CSV header can be written first.

A chunk is read from the database only when the previous one has been consumed (InfluxDB: `/query` with
`chunked=true`, read incrementally; SQLite: a cursor of its own connection, so a slow client never holds the lock the
ingestor writes under). Abandoning an iterator (closing the generator) releases its connection. Errors before the
first chunk are raised from the first `next()`; later ones from the `next()` that meets them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from gateway.central.store.base import Aggregate
    from gateway.contract import FluxRecord

#: (time in ns since the epoch, value or None, qc or None): a tuple or a list, as the database's client library
#: gives it (no copy per point); a whole-numbered value may be an int (InfluxDB's JSON writes 416.0 as 416)
SeriesRow = Sequence[Any]

class PointColumns(Sequence[SeriesRow]):
    """A chunk of points as columns, as a store can hand them on without an object per point: `times` (numpy int64,
    ns), and `values` and `qcs`, the JSON text of each (b"null" for None) exactly as orjson writes the number the
    text stands for and, null aside, as `repr` writes it (the store checks that before it yields one; InfluxDB's
    text mostly is). As a sequence it is the rows (time, value, qc), parsed on first use."""

    __slots__ = ("_rows", "qcs", "times", "values")

    def __init__(self, times: Any, values: list[bytes], qcs: list[bytes]) -> None:
        self.times, self.values, self.qcs = times, values, qcs
        self._rows: list[SeriesRow] | None = None

    def rows(self) -> list[SeriesRow]:
        if self._rows is None:
            import orjson

            values = orjson.loads(b"[" + b",".join(self.values) + b"]")
            qcs = orjson.loads(b"[" + b",".join(self.qcs) + b"]")
            self._rows = list(zip(self.times.tolist(), values, qcs, strict=True))
        return self._rows

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, index: Any) -> Any:
        return self.rows()[index]

    def __iter__(self) -> Iterator[SeriesRow]:
        return iter(self.rows())


#: rows per chunk the stores aim for (InfluxDB's chunk_size; SQLite's fetchmany). Small on purpose: a station-month
#: of raw points cost the server 0.34 s of CPU in chunks of 5,000 rows and 0.18 s in 500 (blocks of hundreds of
#: kilobytes cost the allocator and the caches more than the per-chunk overhead saves; docs/performance.md)
CHUNK_ROWS = 500
#: the same for flux records (~100 values each: a chunk of ~280 kB of JSON from InfluxDB; 500 cost a fifth more)
FLUX_CHUNK_ROWS = 100


class FluxRow(NamedTuple):
    """One stored flux record as read, unvalidated (it was validated when written)."""

    site: str
    station: str
    start_ns: int
    end_ns: int
    status: str
    reasons: list[str]
    engine_version: str
    settings_hash: str
    values: dict[str, int | float | None]


class RecordKind(NamedTuple):
    """What the records of one bookkeeping (InfluxDB: one `meta` text) read under one request share: the names of
    their `values` in order (only those asked for), which of them are null whatever the store holds, and the
    period's length, status and reasons."""

    names: tuple[str, ...]
    nulls: frozenset[str]
    period_ns: int
    status: str
    reasons: list[str]


class FluxTexts(Sequence[FluxRow]):
    """A chunk of flux records of one result set (site, station, engine version and settings hash shared), as a
    store can hand them on without a dict per record: `end_ns` (numpy int64), each record's kind (`kinds`, and
    `kind_of`, an index into them per record), and the text of every cell of the rows it read, `width` a row, in
    `cells`, where `column_of` says which cell of a row holds a variable. Each number's text is the JSON text orjson
    writes for the number it stands for (b"null" for None; the store checks that before it yields one), so an
    encoder writes it as it is. As a sequence it is the `FluxRow`s, parsed on first use."""

    __slots__ = ("_rows", "cells", "column_of", "end_ns", "engine_version", "kind_of", "kinds", "settings_hash",
                 "site", "station", "width")

    def __init__(self, site: str, station: str, engine_version: str, settings_hash: str, end_ns: Any,
                 kinds: list[RecordKind], kind_of: list[int], cells: list[bytes], width: int,
                 column_of: dict[str, int]) -> None:
        self.site, self.station, self.engine_version, self.settings_hash = site, station, engine_version, settings_hash
        self.end_ns, self.kinds, self.kind_of, self.cells, self.width = end_ns, kinds, kind_of, cells, width
        self.column_of = column_of
        self._rows: list[FluxRow] | None = None

    def start_ns(self) -> Any:
        import numpy as np

        periods = np.array([k.period_ns for k in self.kinds], dtype=np.int64)
        return self.end_ns - periods[np.array(self.kind_of, dtype=np.intp)]

    def value_columns(self, kind: RecordKind, names: Sequence[str]) -> list[int]:
        """The cell of each of `names` in a row of `kind`: -1 where the record's value is null (a name it lacks,
        lists among its nulls, or no column read)."""
        held = set(kind.names) - kind.nulls
        return [self.column_of.get(n, -1) if n in held else -1 for n in names]

    def laid(self, slots: list[list[int | bytes]], cells: list[bytes] | None = None) -> list[bytes]:
        """Pieces of text, `len(slots[0])` a record: record r's piece i is `slots[kind of r][i]`, a constant text
        or the text of that cell of its row (of `cells` instead of the chunk's own, when given: the same cells,
        other texts). Filled slot by slot for all records at once (a slice assignment each); records of another
        kind than the chunk's most common one are then patched where their slots differ (partial records: their
        nulls), so there is no Python step per value."""
        import numpy as np

        kind_of = self.kind_of
        count, width, stride = len(kind_of), self.width, len(slots[0])
        cells = self.cells if cells is None else cells
        # the records' kinds as an array, once: their rows found by numpy, not by a pass of Python per kind
        kinds = np.array(kind_of, np.intp) if len(slots) > 1 else None
        base = int(np.bincount(kinds, minlength=len(slots)).argmax()) if kinds is not None else 0
        parts: list[bytes] = [b""] * (count * stride)
        for i, slot in enumerate(slots[base]):
            parts[i::stride] = [slot] * count if isinstance(slot, bytes) else cells[slot::width]
        for k, kind_slots in enumerate(slots):
            changed = [(i, slot) for i, (slot, usual) in enumerate(zip(kind_slots, slots[base], strict=True))
                       if slot != usual]
            if k == base or not changed or kinds is None:
                continue
            for r in np.flatnonzero(kinds == k).tolist():
                row, at = r * width, r * stride
                for i, slot in changed:
                    parts[at + i] = slot if isinstance(slot, bytes) else cells[row + slot]
        return parts

    def value_lists(self, names: Sequence[Sequence[str]]) -> list[list[Any]]:
        """Each record's values of `names[kind]` as orjson parses them (None where null), from one parse of the
        chunk's texts laid out as a JSON array of arrays."""
        import orjson

        most = max(len(n) for n in names)
        slots: list[list[int | bytes]] = []
        for kind, wanted in zip(self.kinds, names, strict=True):
            kind_slots: list[int | bytes] = [b",["]
            for j, column in enumerate(self.value_columns(kind, wanted)):
                kind_slots += [b"," if j else b"", column if column >= 0 else b"null"]
            slots.append([*kind_slots, *[b""] * (2 * (most - len(wanted))), b"]"])
        text = b"".join(self.laid(slots))
        return orjson.loads(b"[" + text[1:] + b"]")

    def rows(self) -> list[FluxRow]:
        if self._rows is None:
            kinds = self.kinds
            values = self.value_lists([k.names for k in kinds])
            self._rows = [
                FluxRow(self.site, self.station, end_ns - kind.period_ns, end_ns, kind.status, kind.reasons,
                        self.engine_version, self.settings_hash, dict(zip(kind.names, row, strict=True)))
                for end_ns, kind, row in zip(self.end_ns.tolist(), [kinds[k] for k in self.kind_of], values,
                                             strict=True)]
        return self._rows

    def __len__(self) -> int:
        return len(self.kind_of)

    def __getitem__(self, index: Any) -> Any:
        return self.rows()[index]

    def __iter__(self) -> Iterator[FluxRow]:
        return iter(self.rows())


@dataclass(frozen=True)
class FluxColumns:
    """What the records of a range carry: result sets as (settings_hash, engine_version), sorted, and the union of
    their variable names (in no particular order)."""

    sets: list[tuple[str, str]]
    variables: set[str]


def flux_row_of(record: FluxRecord) -> FluxRow:
    from gateway.central.store.base import to_ns

    return FluxRow(site=record.site, station=record.station, start_ns=to_ns(record.start), end_ns=to_ns(record.end),
                   status=record.status, reasons=list(record.reasons), engine_version=record.engine_version,
                   settings_hash=record.settings_hash, values=dict(record.values))


def flux_order(row: FluxRow) -> tuple[int, str, str]:
    """The order of `query_fluxes`: period end, settings hash, engine version."""
    return (row.end_ns, row.settings_hash, row.engine_version)


def select_values(values: dict[str, int | float | None], variables: Sequence[str] | None
                  ) -> dict[str, int | float | None]:
    """`values` restricted to `variables` (in their order; those the record lacks left out), or all of them."""
    if variables is None:
        return values
    return {name: values[name] for name in variables if name in values}


class StreamingReads(Protocol):
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
        """The points of `query_series` (no limit), in chunks (lists of rows, or `PointColumns`), in time order."""

    def iter_fluxes(
        self,
        station: str,
        start: datetime,
        end: datetime,
        settings_hash: str | None = None,
        *,
        variables: Sequence[str] | None = None,
    ) -> Iterator[Sequence[FluxRow]]:
        """The records of `query_fluxes` (no limit), in chunks, in its order; `variables` restricts `values`."""

    def flux_columns(self, station: str, start: datetime, end: datetime,
                     settings_hash: str | None = None) -> FluxColumns:
        """The result sets and variables of the records `iter_fluxes` would return."""
