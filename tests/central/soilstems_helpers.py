"""A store holding simulated soil and dendrometer readings with a known truth (gateway/simulation/soilyear.py), and
the central config that reads them: shared by the soil/stems job, API and report tests."""

from __future__ import annotations

import functools
import pickle
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.central.soilstems import run_station_product
from gateway.central.soilstems_config import SoilJobConfig, StemsJobConfig
from gateway.central.store import SqliteStore, StationProduct, StoredReading
from gateway.simulation.soilyear import ProbeSpec, SoilYear, demo_trees, soil_year

SITE, STATION, YEAR = "site1", "st1", 2025
PROBES = [ProbeSpec(0.1, "co2_10", "CO2_1_1_1", "T_PROBE_1_1_1"), ProbeSpec(0.3, "co2_30", "CO2_1_2_1",
                                                                             "T_PROBE_1_2_1"),
          ProbeSpec(0.6, "co2_60", "CO2_1_3_1", "T_PROBE_1_3_1")]
SWC = ("swc_10", "SWC_1_1_1")
CHAMBER = ("chamber_1", "CO2_4_1_1", "LID_CLOSED_4_1_1", "T_PROBE_4_1_1")
DENDRO = ("dendro", ["STEM_RAD_CHG_1_1_1", "STEM_RAD_CHG_2_1_1", "STEM_RAD_CHG_3_1_1"])
LATER = datetime(2026, 3, 1, tzinfo=UTC)  # "now" for a past year


def profile_config(**overrides: Any) -> dict[str, Any]:
    return {"name": "1", "method": "profile_fit", "swc": f"{SWC[0]}/{SWC[1]}", "soil": {"bulk_density": 1.2},
            "pressure_pa": 99000,
            "probes": [{"depth_m": p.depth_m, "co2": f"{p.sensor}/{p.co2_variable}",
                        "ts": f"{p.sensor}/{p.t_variable}"} for p in PROBES], **overrides}


def chamber_config(**overrides: Any) -> dict[str, Any]:
    sensor, co2, lid, t = CHAMBER
    return {"name": "1", "co2": f"{sensor}/{co2}", "lid": f"{sensor}/{lid}", "temperature": f"{sensor}/{t}",
            "volume_m3": 0.0042, "area_m2": 0.0318, "pressure_pa": 99000, **overrides}


def soil_settings(**station: Any) -> dict[str, Any]:
    return {"utc_offset_h": 0, "profiles": [profile_config()], "chambers": [chamber_config()], **station}


def stems_settings(year: SoilYear, **plot: Any) -> dict[str, Any]:
    trees = [{"tree": t.tree, "species": t.species, "dbh_cm": t.dbh_cm,
              **({"dendrometer": f"{t.sensor}/{t.variable}"} if t.sensor else {})} for t in year.trees]
    return {"utc_offset_h": 0, "plots": [{"name": "1", "area_m2": 400.0, "n_draws": 300, "trees": trees, **plot}]}


def soil_job(**station: Any) -> SoilJobConfig:
    return SoilJobConfig.model_validate({"per_station": {STATION: soil_settings(**station)}})


def stems_job(year: SoilYear, **plot: Any) -> StemsJobConfig:
    return StemsJobConfig.model_validate({"per_station": {STATION: stems_settings(year, **plot)}})


@functools.cache  # the same arrays and readings for every module of a worker; nobody changes them
def simulated_soil(until: datetime = datetime(YEAR, 2, 15, tzinfo=UTC)) -> SoilYear:
    """45 days of the soil profile and chamber (no dendrometers)."""
    return soil_year(YEAR, station=STATION, probes=PROBES, swc_sensor=SWC[0], swc_variable=SWC[1], trees=[],
                     chamber=CHAMBER, until=until, seed=3)


@functools.cache
def simulated_stems() -> SoilYear:
    """A whole year of three dendrometers (no soil profile) and a five-tree plot."""
    return soil_year(YEAR, station=STATION, probes=[], swc_sensor=SWC[0], swc_variable=SWC[1],
                     trees=demo_trees(DENDRO[0], DENDRO[1], seed=3), seed=3)


def fill(store: SqliteStore, year: SoilYear) -> None:
    for i in range(0, len(year.readings), 5000):
        store.write([StoredReading(SITE, r) for r in year.readings[i:i + 5000]])


def filled_store(path: Path, *years: SoilYear) -> SqliteStore:
    store = SqliteStore(path)
    for year in years:
        fill(store, year)
    return store


@dataclass(frozen=True)
class SoilStemsStores:
    """Where the shared stores are; take a copy, never open these."""

    filled: Path  # simulated_soil() and simulated_stems() readings, nothing computed
    computed: Path  # the same, with the soil and stems runs of the jobs' default settings stored
    soil: StationProduct  # what the soil job returned when it stored its run in `computed`
    stems: StationProduct  # likewise the stems job

    def copy(self, source: Path, target: Path) -> SqliteStore:
        """A store of its own at `target` holding what `source` (`filled` or `computed`) holds."""
        copy_database(source, target)
        return SqliteStore(target)


def copy_database(source: Path, target: Path) -> None:
    """SQLite's online backup: the whole database, whatever its journal mode left in side files."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def make_soilstems_stores(folder: Path) -> None:
    stems_year = simulated_stems()
    filled_store(folder / "filled.sqlite", simulated_soil(), stems_year).close()
    copy_database(folder / "filled.sqlite", folder / "computed.sqlite")
    store = SqliteStore(folder / "computed.sqlite")
    try:
        products = [run_station_product(product, store, STATION, YEAR, soil_job(), stems_job(stems_year), now=LATER)
                    for product in ("soil", "stems")]
    finally:
        store.close()
    (folder / "products.pickle").write_bytes(pickle.dumps(products))


def read_soilstems_stores(folder: Path) -> SoilStemsStores:
    soil, stems = pickle.loads((folder / "products.pickle").read_bytes())
    return SoilStemsStores(folder / "filled.sqlite", folder / "computed.sqlite", soil, stems)
