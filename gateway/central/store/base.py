"""The storage contract every backend honours, checked by one shared suite (tests/central/test_store_contract.py).

Semantics all backends share:

- **Identity of a reading.** A stored reading is identified by exactly (site, station, sensor, variable, time),
  time at the microsecond the wire carries. Nothing else is part of it: unit, time_source, value, qc, clock_synced
  and qc_reason are its content. A stream summary is a reading like any other (variable `U`, `U_SD`, `U_N`, `WS`,
  ...; time = the end of its interval).
- **Write once.** Writing a reading whose identity the store does not hold stores it. Writing one it holds with the
  same content changes nothing (a redelivered batch is idempotent: `WriteOutcome.duplicates`). Writing one it holds
  with *other* content changes nothing either: the first reading stays and the newcomer comes back in
  `WriteOutcome.conflicts` beside the stored one, for the caller to keep aside and count. So a different reading
  never overwrites another, a summary is final once stored, and InfluxDB's merging of fields on a rewrite (a null
  value keeping the old number under the new qc) cannot happen. A reading the database refuses (InfluxDB: a field
  type conflict) comes back in `WriteOutcome.rejected` with the reason; the other readings of the call are stored.
  SQLite decides by its primary key. InfluxDB cannot refuse an overwrite, so the InfluxStore decides before it
  writes, under a per-station lock and high-water mark shared by every writer on the host
  (`gateway.central.store.writeguard`): readings stamped after the mark are new without a query, earlier ones are
  looked up. It assumes every writer of readings to one database shares that guard (one host).
- **Half-open windows.** `query_series` returns readings with `start <= time < end`.
- **Aggregation windows** are aligned to the Unix epoch (InfluxDB's `GROUP BY time()` rule); a window is
  reported at its start time, and empty windows are left out. The value is the aggregate of the non-missing
  values; `qc` is the worst (highest) flag in the window.
- **One series per query.** `query_series` filters on station and variable and, when given, site and sensor;
  `series_sources` says which (site, sensor) pairs hold a variable in a window, so a caller never mixes two sensors
  unknowingly (the HTTP API refuses an ambiguous request and names the choices).
- **Untrusted query parameters.** Site, station, sensor and variable are compared as opaque strings; a hostile one
  finds nothing and never changes the query.
- **Flux records** (`gateway.contract.FluxRecord`, one averaging period) are identified by
  (site, station, engine_version, settings_hash, period end). They are results of a computation, not
  measurements: writing one again replaces it whole (a variable that became null reads back as null), because the
  same engine version and settings over a more complete raw archive give the better result of the same
  computation, while results of other settings or engine versions for the same period coexist.
  `query_fluxes` returns the periods whose *end* lies in (start, end] (end-labelled periods: 10:00..11:00 gives the
  periods ending 10:30 and 11:00), ordered by end, then settings_hash, then engine_version.
- **Budget runs** (the carbon budget of a station-year and its rows) are derived results like flux records:
  see `gateway.central.store.budget` for their identity; the methods are those of `BudgetStore`.
- **Soil and stems runs** (a station-year's soil efflux, chamber fluxes, dendrometer products and stem carbon) are
  derived results too: `gateway.central.store.products`, the methods of `ProductStore`.
- **Health reports** (`gateway.contract.StationHealth`) are identified by (site, station, time): see
  `gateway.central.store.health`; the methods are those of `HealthStore`.
- **Streamed reads** (`iter_series`, `iter_fluxes`, `flux_columns`): the rows of `query_series` and
  `query_fluxes` in chunks, for the HTTP API: see `gateway.central.store.reads`, the methods of `StreamingReads`.
- **Alert events** (state changes of the central service's alert rules) are identified by (rule, site, station,
  subject, time): see `gateway.central.store.alerts`; the methods are those of `AlertStore`.
- **Provenance** of recomputed flux records (the raw files they came from, the digest of the record) is identified
  like the record and replaced with it: `gateway.central.store.provenance`, the methods of `ProvenanceStore`.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import repeat
from typing import Literal, NamedTuple, Protocol, get_args

from gateway.central.store.alerts import AlertStore
from gateway.central.store.budget import BudgetStore
from gateway.central.store.health import HealthStore
from gateway.central.store.ledger import LedgerItem, LedgerStore
from gateway.central.store.products import ProductStore
from gateway.central.store.provenance import ProvenanceStore
from gateway.central.store.reads import StreamingReads
from gateway.contract import FluxRecord
from gateway.model import Reading

Aggregate = Literal["mean", "min", "max", "count", "last"]
AGGREGATES: tuple[str, ...] = get_args(Aggregate)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


class StoreError(Exception):
    """Base of storage failures."""


class StoreUnavailable(StoreError):
    """The database is down, unreachable or refusing us; retrying later may succeed."""


class StoreRejected(StoreError):
    """The database understood the write and refused its content; retrying the same data will not help."""


class QueryTooLarge(StoreError):
    """A raw query matched more points than the caller's limit."""


class StoredReading(NamedTuple):
    """A reading with the site it came from (the batch carries the site, the reading only the station). A named
    tuple: the ingestor makes one per reading, and a tuple is made several times faster than a frozen dataclass."""

    site: str
    reading: Reading


ReadingIdentity = tuple[str, str, str, str, int]  # site, station, sensor, variable, time in ns
WriteRequest = tuple[list[StoredReading], LedgerItem | None]  # a batch's readings and the ledger item that carried them


def reading_identity(item: StoredReading) -> ReadingIdentity:
    r = item.reading
    return (item.site, r.station, r.sensor, r.variable, to_ns(r.time))


def reading_identities(items: Sequence[StoredReading]) -> list[ReadingIdentity]:
    """`reading_identity` of every item, in one loop without a call per reading (a writer's every reading)."""
    readings = list(map(_READING, items))
    try:
        return list(zip(map(_SITE, items), map(_STATION, readings), map(_SENSOR, readings),
                        map(_VARIABLE, readings), to_ns_all(map(_TIME, readings)), strict=True))
    except TypeError:  # a time without a zone: to_ns says so
        return [reading_identity(item) for item in items]


_SITE, _READING = operator.itemgetter(0), operator.itemgetter(1)  # of a StoredReading
_STATION, _SENSOR = operator.attrgetter("station"), operator.attrgetter("sensor")
_VARIABLE, _TIME = operator.attrgetter("variable"), operator.attrgetter("time")


def reading_content(item: StoredReading) -> tuple[object, ...]:
    """Everything a reading holds besides its identity; equal content means the same reading."""
    r = item.reading
    value = r.value if r.value is not None and math.isfinite(r.value) else None
    # str()/plain comparisons: a held point may predate today's enums (shown as it is, never validated again)
    return (r.unit, str(r.time_source), value, r.qc, bool(r.clock_synced), r.qc_reason or None)


@dataclass(frozen=True)
class ReadingConflict:
    """A reading whose identity the store already holds with other content: not written."""

    incoming: StoredReading
    stored: StoredReading


@dataclass(frozen=True)
class RejectedReading:
    """A reading the database refused (retrying it will not help); the others of the write were stored."""

    reading: StoredReading
    reason: str


@dataclass(frozen=True)
class WriteOutcome:
    """What one `Store.write` did with each reading it was given."""

    written: int = 0  # new identities, now stored
    duplicates: int = 0  # identities already stored with the same content: nothing to do
    conflicts: tuple[ReadingConflict, ...] = ()
    rejected: tuple[RejectedReading, ...] = ()


class ReadingClassifier:
    """Sorts readings into new ones, duplicates and conflicts against what a store holds (`held`, identity ->
    stored reading, filled by the backend). A reading accepted earlier in the same call counts as held, so a batch
    that repeats an identity is classified like a redelivery."""

    def __init__(self, held: dict[ReadingIdentity, StoredReading]) -> None:
        self.held = held
        self.new: list[StoredReading] = []
        self.duplicates = 0
        self.conflicts: list[ReadingConflict] = []

    def add(self, item: StoredReading, key: ReadingIdentity | None = None) -> bool:
        """True when `item` is new and should be written; `key`: its identity, when the caller has it already."""
        if key is None:
            key = reading_identity(item)
        stored = self.held.get(key)
        if stored is None:
            self.held[key] = item
            self.new.append(item)
            return True
        if reading_content(stored) == reading_content(item):
            self.duplicates += 1
        else:
            self.conflicts.append(ReadingConflict(incoming=item, stored=stored))
        return False

    def add_all(self, items: Sequence[StoredReading], keys: Sequence[ReadingIdentity]) -> list[ReadingIdentity]:
        """`add` every item (`keys`: their identities); returns the identities of those that are new, in order.
        When none is held and no two share an identity (a batch of new readings: the common case) in a few bulk
        steps instead of a step per reading."""
        fresh = dict(zip(keys, items, strict=True))
        if len(fresh) == len(keys) and self.held.keys().isdisjoint(fresh.keys()):
            self.held.update(fresh)
            self.new.extend(items)
            return list(keys)
        return [key for item, key in zip(items, keys, strict=True) if self.add(item, key)]

    def outcome(self, rejected: list[RejectedReading] | None = None) -> WriteOutcome:
        refused = rejected or []
        return WriteOutcome(written=len(self.new) - len(refused), duplicates=self.duplicates,
                            conflicts=tuple(self.conflicts), rejected=tuple(refused))


@dataclass(frozen=True)
class SeriesSource:
    """Who reported a variable of a station in a window: one (site, sensor), and the unit it used."""

    site: str
    sensor: str
    unit: str


@dataclass(frozen=True)
class SeriesPoint:
    time: datetime
    value: float | None
    qc: int | None


@dataclass(frozen=True)
class StationInfo:
    site: str
    station: str
    last_reading: datetime
    variables: dict[str, str] = field(default_factory=dict)  # variable -> unit
    sensors: dict[str, dict[str, str]] = field(default_factory=dict)  # sensor -> variable -> unit


@dataclass(frozen=True)
class FluxResultSet:
    """One set of flux results of a station: same engine version and settings hash."""

    site: str
    station: str
    engine_version: str
    settings_hash: str
    periods: int
    first_end: datetime
    last_end: datetime


class Store(BudgetStore, ProductStore, HealthStore, LedgerStore, AlertStore, ProvenanceStore, StreamingReads,
            Protocol):
    def write(self, batch_points: list[StoredReading], *, ledger: LedgerItem | None = None) -> WriteOutcome:
        """Store every new reading; report duplicates, conflicts and rejected readings (see the module doc).
        Raises StoreUnavailable only (nothing or only some new readings stored: repeating the call is safe).
        `ledger`: the signed item that carried them (`gateway.central.store.ledger`), written with them."""

    def write_many(self, batches: Sequence[WriteRequest]) -> list[WriteOutcome]:
        """`write` of several batches at once (the ingestor's group of messages): one outcome per batch, in order.
        The same rules; an identity repeated in a later batch of the call is classified like a redelivery, and a
        batch's ledger item is written with its readings. Raises StoreUnavailable only (repeating it is safe)."""

    def query_series(
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
        limit: int | None = None,
    ) -> list[SeriesPoint]:
        """Raw points (every=None) or one point per non-empty window; raises QueryTooLarge past `limit` points.
        `site`/`sensor` None match any: use `series_sources` first to know whether that mixes series."""

    def series_sources(self, station: str, variable: str, start: datetime, end: datetime) -> list[SeriesSource]:
        """The (site, sensor, unit) that hold readings of `variable` of `station` in [start, end), sorted."""

    def stations(self) -> list[StationInfo]: ...

    def write_fluxes(self, records: list[FluxRecord], *, ledger: LedgerItem | None = None) -> None:
        """Store all flux records or raise StoreUnavailable / StoreRejected; safe to repeat (see the module doc).
        `ledger`: the signed item that carried them, written with them."""

    def query_fluxes(
        self,
        station: str,
        start: datetime,
        end: datetime,
        settings_hash: str | None = None,
        *,
        limit: int | None = None,
    ) -> list[FluxRecord]:
        """Records of periods ending in (start, end], of one result set or all; QueryTooLarge past `limit`."""

    def flux_result_sets(self, station: str) -> list[FluxResultSet]:
        """The result sets stored for a station, ordered by settings_hash, engine_version."""

    def ping(self) -> bool: ...

    def close(self) -> None: ...


#: The instants every store can hold: nanoseconds since 1970 in a signed 64-bit integer (InfluxDB's time range; the
#: SQLite store keeps the same integers), to the whole second inside it. A time outside cannot be written or queried.
EARLIEST_TIME = datetime(1677, 9, 21, 0, 12, 44, tzinfo=UTC)
LATEST_TIME = datetime(2262, 4, 11, 23, 47, 16, tzinfo=UTC)
TIME_RANGE_TEXT = "1677-09-21T00:12:44Z to 2262-04-11T23:47:16Z"


def storable_time(value: datetime) -> bool:
    return EARLIEST_TIME <= value <= LATEST_TIME


def to_ns(value: datetime) -> int:
    """Exact integer nanoseconds since the epoch (float seconds would lose microseconds)."""
    if value.tzinfo is None:
        raise ValueError("timestamp has no time zone")
    return (value - EPOCH) // MICROSECOND * 1000


def to_ns_all(times: Iterable[datetime]) -> Iterator[int]:
    """`to_ns` of each time in three C loops (- EPOCH, // 1 µs, * 1000), no call per time: a batch's or a series'
    every time. A time without a zone raises TypeError (from the subtraction) as it is reached."""
    since = map(operator.sub, times, repeat(EPOCH))
    return map(operator.mul, map(operator.floordiv, since, repeat(MICROSECOND)), repeat(1000))


def from_ns(value: int) -> datetime:
    """Back to a UTC datetime; Python keeps microseconds, which is the precision readings carry."""
    return EPOCH + timedelta(microseconds=value // 1000)


def every_ns(every: timedelta) -> int:
    """Validated window length in nanoseconds; whole seconds only, so it renders exactly in any backend."""
    if every <= timedelta(0):
        raise ValueError("every must be positive")
    if every % timedelta(seconds=1):
        raise ValueError("every must be a whole number of seconds")
    return every // timedelta(seconds=1) * 1_000_000_000


def check_window(start: datetime, end: datetime, aggregate: str) -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end need a time zone")
    if end <= start:
        raise ValueError("end must be after start")
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {', '.join(AGGREGATES)}")


def merge_station_rows(rows: Iterable[tuple[str, str, str, str, str, int]]) -> list[StationInfo]:
    """(site, station, sensor, variable, unit, last_ns) rows -> one StationInfo per station, sorted."""
    merged: dict[tuple[str, str], tuple[int, dict[str, str], dict[str, dict[str, str]]]] = {}
    for site, station, sensor, variable, unit, last_ns in sorted(rows):
        previous_ns, variables, sensors = merged.get((site, station), (last_ns, {}, {}))
        variables[variable] = unit
        sensors.setdefault(sensor, {})[variable] = unit
        merged[(site, station)] = (max(previous_ns, last_ns), variables, sensors)
    return [
        StationInfo(site=site, station=station, last_reading=from_ns(last_ns), variables=variables,
                    sensors=sensors)
        for (site, station), (last_ns, variables, sensors) in sorted(merged.items())
    ]
