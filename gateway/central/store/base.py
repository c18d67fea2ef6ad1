"""The storage contract every backend honours, checked by one shared suite (tests/central/test_store_contract.py).

Semantics all backends share:

- **Idempotent writes.** A reading is identified by (station, sensor, variable, time); writing it again replaces
  it, so a redelivered MQTT batch never duplicates data (InfluxDB's measurement+tags+timestamp rule, which we
  reproduce in SQLite with a unique key).
- **Half-open windows.** `query_series` returns readings with `start <= time < end`.
- **Aggregation windows** are aligned to the Unix epoch (InfluxDB's `GROUP BY time()` rule); a window is
  reported at its start time, and empty windows are left out. The value is the aggregate of the non-missing
  values; `qc` is the worst (highest) flag in the window.
- **Untrusted query parameters.** Station and variable are compared as opaque strings; a hostile one finds
  nothing and never changes the query.
- **Flux records** (`gateway.contract.FluxRecord`, one averaging period) are identified by
  (station, engine_version, settings_hash, period end): writing one again replaces it whole (a variable that became
  null reads back as null), while results of other settings or engine versions for the same period coexist.
  `query_fluxes` returns the periods whose *end* lies in (start, end] (end-labelled periods: 10:00..11:00 gives the
  periods ending 10:30 and 11:00), ordered by end, then settings_hash, then engine_version.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol, get_args

from gateway.contract import FluxRecord
from gateway.model import Reading

Aggregate = Literal["mean", "min", "max", "count", "last"]
AGGREGATES: tuple[str, ...] = get_args(Aggregate)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class StoreError(Exception):
    """Base of storage failures."""


class StoreUnavailable(StoreError):
    """The database is down, unreachable or refusing us; retrying later may succeed."""


class StoreRejected(StoreError):
    """The database understood the write and refused its content; retrying the same data will not help."""


class QueryTooLarge(StoreError):
    """A raw query matched more points than the caller's limit."""


@dataclass(frozen=True)
class StoredReading:
    """A reading with the site it came from (the batch carries the site, the reading only the station)."""

    site: str
    reading: Reading


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


class Store(Protocol):
    def write(self, batch_points: list[StoredReading]) -> None:
        """Store all readings or raise StoreUnavailable / StoreRejected; safe to repeat."""

    def query_series(
        self,
        station: str,
        variable: str,
        start: datetime,
        end: datetime,
        every: timedelta | None = None,
        aggregate: Aggregate = "mean",
        *,
        limit: int | None = None,
    ) -> list[SeriesPoint]:
        """Raw points (every=None) or one point per non-empty window; raises QueryTooLarge past `limit` points."""

    def stations(self) -> list[StationInfo]: ...

    def write_fluxes(self, records: list[FluxRecord]) -> None:
        """Store all flux records or raise StoreUnavailable / StoreRejected; safe to repeat (see the module doc)."""

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


def to_ns(value: datetime) -> int:
    """Exact integer nanoseconds since the epoch (float seconds would lose microseconds)."""
    if value.tzinfo is None:
        raise ValueError("timestamp has no time zone")
    return (value - EPOCH) // timedelta(microseconds=1) * 1000


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


def merge_station_rows(rows: Iterable[tuple[str, str, str, str, int]]) -> list[StationInfo]:
    """(site, station, variable, unit, last_ns) rows -> one StationInfo per station, sorted."""
    merged: dict[tuple[str, str], tuple[int, dict[str, str]]] = {}
    for site, station, variable, unit, last_ns in rows:
        previous_ns, variables = merged.get((site, station), (last_ns, {}))
        variables[variable] = unit
        merged[(site, station)] = (max(previous_ns, last_ns), variables)
    return [
        StationInfo(site=site, station=station, last_reading=from_ns(last_ns), variables=variables)
        for (site, station), (last_ns, variables) in sorted(merged.items())
    ]
