"""Storage backends for the central service; see `base` for the contract they share."""

from gateway.central.store.base import (
    AGGREGATES,
    Aggregate,
    FluxResultSet,
    QueryTooLarge,
    SeriesPoint,
    StationInfo,
    Store,
    StoredReading,
    StoreError,
    StoreRejected,
    StoreUnavailable,
)
from gateway.central.store.influx import InfluxStore
from gateway.central.store.sqlite import SqliteStore

__all__ = [
    "AGGREGATES",
    "Aggregate",
    "FluxResultSet",
    "InfluxStore",
    "QueryTooLarge",
    "SeriesPoint",
    "SqliteStore",
    "StationInfo",
    "Store",
    "StoreError",
    "StoreRejected",
    "StoreUnavailable",
    "StoredReading",
]
