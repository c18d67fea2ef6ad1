"""A readings batch as columns: what a store that takes them (`takes_columns`, the InfluxDB store) writes without a
`Reading` object per reading.

The central service validates every reading it stores; making a pydantic `Reading`, a `StoredReading` and an
identity tuple per reading, and taking them apart again for the line protocol, was most of its CPU
(docs/performance.md, INGEST). `gateway.central.batchjson` checks a payload field by field and hands the store the
columns the lines are made of. The models are made only when something needs them (a reading the database refuses,
a store that takes no columns): from the same payload, by the model itself (`batch()`), so they are the model's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import repeat
from typing import TYPE_CHECKING, Protocol

from gateway.central.store.base import ReadingIdentity, StoredReading, WriteOutcome
from gateway.central.store.ledger import LedgerItem

if TYPE_CHECKING:
    from gateway.contract import ReadingBatch


@dataclass(eq=False)
class ReadingColumns:
    """The readings of one batch, column by column, in the batch's order; every value as the model has it (a
    float or None, an int flag, a time source's text, a time in ns since the epoch)."""

    site: str
    station: str
    seq: int
    sent: datetime
    stations: list[str]
    sensors: list[str]
    variables: list[str]
    values: list[float | None]
    units: list[str]
    time_sources: list[str]
    clock_synced: list[bool]
    qcs: list[int]
    qc_reasons: list[str | None]
    times_ns: list[int]
    first_ns: int
    last_ns: int
    model: Callable[[], ReadingBatch]  # the model's batch of the same payload
    _batch: ReadingBatch | None = field(default=None, repr=False)
    _points: list[StoredReading] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.times_ns)

    def batch(self) -> ReadingBatch:
        if self._batch is None:
            self._batch = self.model()
        return self._batch

    def points(self) -> list[StoredReading]:
        """The readings as `StoredReading`s, made once (the same ones every call: callers match them by id)."""
        if self._points is None:
            self._points = [StoredReading(self.site, reading) for reading in self.batch().readings]
        return self._points

    def identities(self) -> list[ReadingIdentity]:
        sites = repeat(self.site, len(self.times_ns))
        return list(zip(sites, self.stations, self.sensors, self.variables, self.times_ns, strict=True))

    def repeats_an_identity(self) -> bool:
        """Whether two readings share an identity (the station is the batch's for all of them)."""
        return len(set(zip(self.sensors, self.variables, self.times_ns, strict=True))) != len(self.times_ns)


ColumnsRequest = tuple[list[StoredReading] | ReadingColumns, LedgerItem | None]


#: (site, station) -> (its write-guard slot as seen before the query, its mark then): `TakesColumns.marks_ahead`
MarksAhead = dict[tuple[str, str], tuple[object, int]]


class TakesColumns(Protocol):
    """A store whose `write_many` takes a batch's readings as `ReadingColumns` as well as `StoredReading`s, and the
    readings marks of stations learned ahead of the write (`marks_ahead`: gateway/central/store/writeguard.py)."""

    takes_columns: bool

    def marks_ahead(self, stations: Iterable[tuple[str, str]]) -> MarksAhead: ...

    def write_many(self, batches: Sequence[ColumnsRequest], *, ahead: MarksAhead | None = None
                   ) -> list[WriteOutcome]: ...
