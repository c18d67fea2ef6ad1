"""Storage backends for the central service; see `base` for the contract they share."""

from gateway.central.store.alerts import AlertEvent, AlertStore, ReadingStats
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
from gateway.central.store.budget import (
    RESOLUTIONS,
    BudgetRun,
    BudgetTable,
    Resolution,
    StationBudget,
    WindowMean,
)
from gateway.central.store.health import HealthStore
from gateway.central.store.influx import InfluxStore
from gateway.central.store.products import PRODUCTS, Product, ProductRun, ProductTable, StationProduct
from gateway.central.store.sqlite import SqliteStore

__all__ = [
    "AGGREGATES",
    "PRODUCTS",
    "RESOLUTIONS",
    "Aggregate",
    "AlertEvent",
    "AlertStore",
    "BudgetRun",
    "BudgetTable",
    "FluxResultSet",
    "HealthStore",
    "InfluxStore",
    "Product",
    "ProductRun",
    "ProductTable",
    "QueryTooLarge",
    "ReadingConflict",
    "ReadingStats",
    "RejectedReading",
    "Resolution",
    "SeriesPoint",
    "SeriesSource",
    "SqliteStore",
    "StationBudget",
    "StationInfo",
    "StationProduct",
    "Store",
    "StoreError",
    "StoreRejected",
    "StoreUnavailable",
    "StoredReading",
    "WindowMean",
    "WriteOutcome",
]
