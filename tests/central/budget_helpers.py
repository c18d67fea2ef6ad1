"""A simulated station-year in a store: what the central budget job tests start from."""

from __future__ import annotations

import dataclasses
import functools
import math
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import numpy as np

from gateway.central.budget_config import BudgetJobConfig
from gateway.central.store import BudgetTable, Store, StoredReading
from gateway.model import Reading
from gateway.simulation.fluxyear import SyntheticYear, flux_records, met_readings, synthetic_year

SITE, STATION, YEAR = "site1", "st1", 2024
FACTOR = 1800 * 12.011e-6  # µmol m-2 s-1 per half hour -> gC m-2


@functools.cache
def simulated_year() -> SyntheticYear:
    return synthetic_year(YEAR, seed=5)


def first_days(year: SyntheticYear, days: int, *, skip_days: int = 0) -> SyntheticYear:
    """The year's records of days skip_days .. skip_days + days (every array field sliced alike)."""
    part = slice(skip_days * 48, (skip_days + days) * 48)
    changes = {f.name: getattr(year, f.name)[part] for f in dataclasses.fields(year)
               if isinstance(getattr(year, f.name), np.ndarray)}
    return dataclasses.replace(year, **changes)


def fill_store(store: Store, year: SyntheticYear, *, site: str = SITE, station: str = STATION,
               with_vpd: bool = True) -> None:
    store.write_fluxes(flux_records(year, site=site, station=station))
    readings = met_readings(year, station=station)
    if not with_vpd:
        readings = [r for r in readings if not r.variable.startswith("VPD")]
    store.write([StoredReading(site, r) for r in readings])


def job(**changes: Any) -> BudgetJobConfig:
    year = simulated_year()
    data: dict[str, Any] = {"ustar": "0.25", "defaults": {"latitude": year.lat, "longitude": year.lon,
                                                          "utc_offset_h": year.utc_offset_h}}
    for key, value in changes.items():
        if key in ("defaults", "per_station") and isinstance(value, dict):
            data[key] = {**data.get(key, {}), **value}
        else:
            data[key] = value
    return BudgetJobConfig.model_validate(data)


def end_of(year: SyntheticYear) -> datetime:
    """The UTC end of the last half hour of `year`."""
    return datetime.fromtimestamp(float(year.time_start_s[-1]) + 1800 - year.utc_offset_h * 3600, tz=UTC)


def shifted_reading(reading: Reading, **changes: Any) -> Reading:
    return reading.model_copy(update=changes)


def after(year: SyntheticYear, hours: float = 1.0) -> datetime:
    return end_of(year) + timedelta(hours=hours)


def first_row(table: BudgetTable) -> dict[str, float]:
    """Row 0 of a table as floats (NaN = missing)."""
    return {name: math.nan if column[0] is None else float(column[0]) for name, column in table.values.items()}


RunT = TypeVar("RunT")
TableT = TypeVar("TableT")


def older_engine_copy(run: RunT, tables: dict[str, TableT]) -> tuple[RunT, dict[str, TableT]]:
    """A budget, soil or stems run as an older version of its engine would have stored it under the same settings
    hash: engine version 0.0.1 (older than the run's, which is checked), every value one more."""
    name, _, number = run.engine_version.rpartition(" ")  # type: ignore[attr-defined]
    assert tuple(int(p) for p in number.split(".")) > (0, 0, 1)
    older = dataclasses.replace(run, engine_version=f"{name} 0.0.1")  # type: ignore[type-var]
    shifted = {k: dataclasses.replace(t, values={n: [v if v is None else v + 1.0 for v in c]  # type: ignore[type-var]
                                                 for n, c in t.values.items()})  # type: ignore[attr-defined]
               for k, t in tables.items()}
    return older, shifted
