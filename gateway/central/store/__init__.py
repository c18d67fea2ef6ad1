"""Storage backends for the central service; see `base` for the contract they share.

`InfluxStore` is imported on first use (PEP 562): its module imports influxdb-client, the largest import of the
central service, which a central service on SQLite or VictoriaMetrics and the ingest workers of those never need
(docs/performance.md, "Start-up of the sinkwatch command")."""

from typing import TYPE_CHECKING, Any

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
from gateway.central.store.products import PRODUCTS, Product, ProductRun, ProductTable, StationProduct
from gateway.central.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from gateway.central.store.influx import InfluxStore


def __getattr__(name: str) -> Any:
    if name == "InfluxStore":
        from gateway.central.store.influx import InfluxStore

        return InfluxStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
