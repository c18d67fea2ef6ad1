"""The carbon budget of `sinkwatch demo`, on a simulated year with a known truth.

A demo runs for seconds to minutes, too short for a budget of its live station (a budget needs at least two weeks of
half-hourly fluxes, a year to mean anything). So the demo stores a *simulated* year — half-hourly flux records and
met readings from `gateway.simulation.fluxyear`, whose NEE, GPP and RECO follow prescribed models (light response,
Lloyd–Taylor respiration, a u* threshold, random error and gaps of a known pattern) — for the demo station, in the
last full calendar year so it never meets the live readings, and runs it through the central budget job
(`gateway.central.budget.run_station_budget`) exactly as the service's schedule does. The figures printed are read
back through the HTTP API (`GET /api/v1/budget`), next to the simulation's truth.

Tolerances the demo test holds it to (tests/test_demo.py): annual NEE within max(3 σ, 15 gC m-2) of the truth
(σ = NEE_F_UNC), GPP_NT and RECO_NT within 8 % — the chain's own bars on a synthetic year (docs/budget.md,
validation) with room for the simulated year of the demo's seed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from gateway.central.budget import run_station_budget
from gateway.central.budget_config import BudgetJobConfig
from gateway.central.config import StorageSettings
from gateway.central.service import open_store
from gateway.central.store import StoredReading
from gateway.model import utc_now
from gateway.simulation.fluxyear import flux_records, met_readings, synthetic_year, truth_gc_m2

NEE_TOLERANCE_GC = 15.0
NEE_TOLERANCE_SIGMA = 3.0
PARTITION_TOLERANCE = 0.08


@dataclass
class DemoBudget:
    """The demo's budget as the API served it, and the simulation's truth (gC m-2)."""

    year: int
    settings_hash: str
    truth: dict[str, float]
    served: dict[str, float | None]
    ustar: dict[str, Any]
    ustar_truth: float
    seconds: float
    url: str
    notes: list[str] = field(default_factory=list)

    def value(self, name: str) -> float:
        found = self.served.get(name)
        return float("nan") if found is None else float(found)

    def within_tolerance(self) -> bool:
        nee, sigma = self.value("NEE_F"), self.value("NEE_F_UNC")
        nee_ok = abs(nee - self.truth["NEE"]) <= max(NEE_TOLERANCE_SIGMA * sigma, NEE_TOLERANCE_GC)
        gpp_ok = abs(self.value("GPP_NT") / self.truth["GPP"] - 1) <= PARTITION_TOLERANCE
        reco_ok = abs(self.value("RECO_NT") / self.truth["RECO"] - 1) <= PARTITION_TOLERANCE
        return nee_ok and gpp_ok and reco_ok

    def lines(self) -> list[str]:
        t = self.truth
        return [
            f"simulated year {self.year} (gateway/simulation/fluxyear.py, not the live station: a budget needs a "
            f"year of half-hourly fluxes) through the central budget job in {self.seconds:.1f} s",
            f"NEE    {self.value('NEE_F'):7.1f} ± {self.value('NEE_F_UNC'):.1f} gC m-2   truth {t['NEE']:7.1f}   "
            f"({self.value('NEE_F_TCO2E'):.2f} ± {self.value('NEE_F_UNC_TCO2E'):.2f} tCO2e ha-1)",
            f"GPP    {self.value('GPP_NT'):7.0f} (NT), {self.value('GPP_DT'):.0f} (DT) gC m-2   truth {t['GPP']:7.0f}",
            f"RECO   {self.value('RECO_NT'):7.0f} (NT), {self.value('RECO_DT'):.0f} (DT) gC m-2   truth "
            f"{t['RECO']:7.0f}",
            f"u*     threshold {self.ustar.get('threshold') or float('nan'):.3f} m s-1 (bootstrap p05 "
            f"{self.ustar.get('p05') or float('nan'):.3f} .. p95 {self.ustar.get('p95') or float('nan'):.3f}), "
            f"prescribed {self.ustar_truth:.3f}; gaps {100 * self.value('GAP_FRACTION'):.0f} %",
            f"served at {self.url} (resolution=HH|DD|MM|YY, format=csv)",
        ]


def run_demo_budget(storage: StorageSettings, api_url: str, *, site: str, station: str, latitude: float,
                    longitude: float, utc_offset_h: float, radiation_sensor: str, air_sensor: str, suffix: str,
                    seed: int = 0, year: int | None = None) -> DemoBudget:
    """Store a simulated year for `station` (the last full year unless `year`), run the central budget job on it
    and read the annual row back from the API at `api_url`."""
    started = time.monotonic()
    target = year if year is not None else utc_now().year - 1
    simulated = synthetic_year(target, seed=seed, lat=latitude, lon=longitude, utc_offset_h=utc_offset_h)
    job = BudgetJobConfig.model_validate({"per_station": {station: {
        "latitude": latitude, "longitude": longitude, "utc_offset_h": utc_offset_h, "site": site}}})
    store = open_store(storage)
    try:
        store.write_fluxes(flux_records(simulated, site=site, station=station))
        readings = met_readings(simulated, station=station, radiation_sensor=radiation_sensor, air_sensor=air_sensor,
                                suffix=suffix)
        for i in range(0, len(readings), 5000):
            store.write([StoredReading(site, r) for r in readings[i:i + 5000]])
        budget = run_station_budget(store, station, target, job)
    finally:
        store.close()
    url = f"{api_url}/api/v1/budget?station={station}&year={target}"
    with httpx.Client(timeout=30) as client:
        response = client.get(f"{api_url}/api/v1/budget", params={
            "station": station, "year": target, "settings_hash": budget.run.settings_hash})
        response.raise_for_status()
        body = response.json()
    (row,) = body["rows"]
    return DemoBudget(year=target, settings_hash=budget.run.settings_hash, truth=truth_gc_m2(simulated),
                      served=row["values"], ustar=body["ustar"], ustar_truth=simulated.ustar_threshold,
                      seconds=time.monotonic() - started, url=url, notes=body["notes"])
