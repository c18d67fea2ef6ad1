"""Stored soil and stem products of a station-year: what every store keeps of a soil or stems run, and how it is
identified.

A product run (`ProductRun`) is the result of the central soil/stems job (gateway/central/soilstems.py) for one
station, one calendar year of the station's standard-time clock and one product:

- ``soil``: a table per soil CO2 profile (``gradient_<p>``: the gradient-method efflux of each averaging period,
  stamped at the period's end, with its uncertainty terms, QC, diffusivities, layer fluxes and the soil temperature
  and water content used) and per automated chamber (``chamber_<c>``: one row per closure, stamped at its end);
- ``stems``: a table per tree (``tree_<t>``: the cleaned dendrometer series with its flags, GRO and TWD at the
  sample times), its daily statistics (``daily_<t>``: one row per local day, stamped at its start) and one per plot
  (``plot_<p>``: one row, stamped at the start of the year: AGB, carbon and CO2e and their increments over the
  record, with Monte-Carlo standard deviations).

Names are those of docs/soil-stems.md ("Output names"). Identity (the same in both stores, checked by
tests/central/test_store_products_contract.py):

- a run: (product, site, station, year, engine_version, settings_hash);
- a row of a run: the run's identity + table + time (UTC).

Like flux records and budget runs, a run is a derived result: writing it again (the job recomputes a year in
progress every day) replaces it whole — tables and facts; a table or a row the new run lacks is no longer read, a
value that became missing reads back as missing. Runs of other settings or engine versions coexist.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, get_args

Product = Literal["soil", "stems"]
PRODUCTS: tuple[str, ...] = get_args(Product)
TABLE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_TABLE_NAME_RE = re.compile(TABLE_NAME_PATTERN)


@dataclass(frozen=True)
class ProductTable:
    """The rows of one table of a run, as columns: ``times`` (UTC, strictly increasing), ``values`` variable -> one
    value per row (None = missing)."""

    name: str
    times: list[datetime]
    values: dict[str, list[float | None]]

    def __post_init__(self) -> None:
        if not _TABLE_NAME_RE.match(self.name):
            raise ValueError(f"product table name {self.name!r}: use letters, digits, '_', '.', '-' (at most 64)")
        if any(len(v) != len(self.times) for v in self.values.values()):
            raise ValueError(f"product table {self.name}: every column needs one value per row")
        if any(b <= a for a, b in zip(self.times, self.times[1:], strict=False)):
            raise ValueError(f"product table {self.name}: times must be strictly increasing")

    def __len__(self) -> int:
        return len(self.times)


@dataclass(frozen=True)
class ProductRun:
    """What a store keeps of one run besides its rows. ``first``/``last``: the first and last time of the data the
    run is computed from (UTC); ``complete``: they span the year. ``settings``: everything the settings hash is of.
    ``tables``: table name -> (first time, last time, rows, column names) of the stored rows (filled by the store
    when it reads a run back)."""

    product: Product
    site: str
    station: str
    year: int
    engine_version: str
    settings_hash: str
    computed_at: datetime
    first: datetime
    last: datetime
    complete: bool
    utc_offset_h: float
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    tables: dict[str, tuple[datetime, datetime, int, list[str]]] = field(default_factory=dict)
    # what it was computed from: every series the job read, with its SHA-256 (gateway/central/store/provenance.py)
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.product not in PRODUCTS:
            raise ValueError(f"product must be one of {', '.join(PRODUCTS)}, not {self.product!r}")


@dataclass(frozen=True)
class StationProduct:
    """One run with its tables: the unit `write_product` stores."""

    run: ProductRun
    tables: dict[str, ProductTable]


class ProductStore(Protocol):
    """The soil/stems part of `Store` (every backend has it)."""

    def write_product(self, product: StationProduct) -> None:
        """Store the run and its tables, replacing the run of the same identity whole; StoreUnavailable /
        StoreRejected when it could not. Safe to repeat."""

    def product_runs(self, product: Product, station: str, year: int | None = None) -> list[ProductRun]:
        """The runs of one product stored for a station (one year or all), ordered by year, settings_hash,
        engine_version, site; each with its `tables`."""

    def product_table(self, run: ProductRun, table: str) -> ProductTable:
        """The rows of one table of a stored run, in time order (empty when the run has no such table)."""


def table_meta(tables: Sequence[ProductTable], to_ns: Any) -> dict[str, list[Any]]:
    """name -> [first ns, last ns, rows, column names] of the tables with rows: what a run's record keeps."""
    return {t.name: [to_ns(t.times[0]), to_ns(t.times[-1]), len(t), list(t.values)] for t in tables if len(t)}


def tables_from_meta(meta: dict[str, Any], from_ns: Any) -> dict[str, tuple[datetime, datetime, int, list[str]]]:
    return {name: (from_ns(int(a)), from_ns(int(b)), int(n), [str(c) for c in cols])
            for name, (a, b, n, cols) in (meta.get("tables") or {}).items()}


def run_meta(run: ProductRun, tables: Sequence[ProductTable], to_ns: Any) -> dict[str, Any]:
    """The JSON-able facts both stores keep in one text field."""
    return {"settings": run.settings, "notes": list(run.notes), "utc_offset_h": run.utc_offset_h,
            "tables": table_meta(tables, to_ns), "inputs": run.inputs}


def inputs_from_meta(meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(name): dict(entry) for name, entry in (meta.get("inputs") or {}).items()}


def check_product(product: StationProduct) -> None:
    for name, table in product.tables.items():
        if name != table.name:
            raise ValueError(f"product table keyed {name!r} is named {table.name!r}")
