"""Storage backends for the central service; see `base` for the contract they share."""

from gateway.central.store.base import (
    AGGREGATES,
    Aggregate,
    FluxResultSet,
    QueryTooLarge,
    ReadingConflict,
    RejectedReading,
    SeriesPoint,
    SeriesSource,
    StationInfo,
    Store,
    StoredReading,
    StoreError,
    StoreRejected,
    StoreUnavailable,
    WriteOutcome,
)
from gateway.central.store.influx import InfluxStore
from gateway.central.store.sqlite import SqliteStore

__all__ = [
    "AGGREGATES",
    "Aggregate",
    "FluxResultSet",
    "InfluxStore",
    "QueryTooLarge",
    "ReadingConflict",
    "RejectedReading",
    "SeriesPoint",
    "SeriesSource",
    "SqliteStore",
    "StationInfo",
    "Store",
    "StoreError",
    "StoreRejected",
    "StoreUnavailable",
    "StoredReading",
    "WriteOutcome",
]
