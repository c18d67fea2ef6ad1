"""Soil and stems of `sinkwatch demo`: a simulated year with a known truth, and the live station's products.

A demo runs minutes; a soil efflux sum, a growth season and a stem carbon increment need a year. So the demo stores
a *simulated* year of the demo station's soil CO2 profile (three GMP252 with their temperatures, the soil probe's
water content), chamber closures and dendrometers (`gateway.simulation.soilyear`: the efflux follows Lloyd–Taylor,
the profile the steady-state diffusion of a known source, the chamber's headspace a known HMR curve, the stems a
known growth and water deficit) under the same sensor and variable names as the live station, in the last full
calendar year, and runs the central soil and stems jobs on it with the demo's central config, exactly as the
service's schedule does. The figures printed are read back through the HTTP API next to the simulation's truth.

After the live station stopped, the same jobs run over the current year's live readings: the chamber's fluxes are
compared with the simulated chamber's true flux of each closure (drivers/chamber/simulator.py).

Tolerances the demo test holds it to (tests/test_demo.py): the gradient method's annual efflux within 3 % of the
true sum, the chamber fluxes' median error below 3 %, every tree's GRO within 15 µm of its true growth,
the plot's stem carbon increment within 3 Monte-Carlo σ of the allometry applied to the true increments.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import numpy as np

from gateway.central.budget import year_bounds
from gateway.central.config import CentralConfig, StorageSettings
from gateway.central.service import open_store
from gateway.central.soilstems import SoilStemsJobError, run_station_product
from gateway.central.store import StoredReading
from gateway.flux.soil.annual import efflux_sum
from gateway.flux.stems.allometry import plot_biomass
from gateway.model import utc_now
from gateway.simulation.soilyear import ProbeSpec, SoilYear, TreeSpec, demo_trees, soil_year

SOIL_TOLERANCE = 0.03
CHAMBER_TOLERANCE = 0.03
GRO_TOLERANCE_UM = 15.0
CARBON_TOLERANCE_SIGMA = 3.0
PLOT_AREA_M2 = 400.0
SEED_TREES = 0


@dataclass(frozen=True)
class DemoSoilNames:
    """The live demo station's sensor and variable names the soil and stems jobs read."""

    probes: tuple[tuple[str, float, str], ...]  # (sensor, depth m, qualifier) of the GMP252 profile
    swc: str  # sensor/VARIABLE of the soil probe's water content
    ts: str  # sensor/VARIABLE of the soil probe's temperature (the efflux's reference temperature)
    chamber: tuple[str, str]  # (sensor, qualifier) of the automated chamber
    dendrometer: tuple[str, tuple[str, ...]]  # (sensor, variables) of the firmware bridge's dendrometers
    frost_temperature: str  # sensor/VARIABLE of the air temperature


def soil_settings(names: DemoSoilNames, utc_offset_h: float) -> dict[str, Any]:
    """`soil:` of the demo's central.yaml."""
    sensor, suffix = names.chamber
    return {"per_station": {}, "period_min": 30, "__station__": {
        "utc_offset_h": utc_offset_h,
        "profiles": [{"name": "1", "method": "profile_fit", "pressure_pa": 99000.0, "swc": names.swc,
                      "reference_ts": names.ts,
                      # probes calibrated against each other in the field: 5 ppm + 0.5 % (the datasheet's 40 ppm +
                      # 2 % taken as independent per depth would swamp the gradient)
                      "accuracy": {"co2_abs_ppm": 5.0, "co2_rel": 0.005},
                      "soil": {"bulk_density": 1.2, "clay": 0.18},
                      "probes": [{"depth_m": depth, "co2": f"{s}/CO2{q}", "ts": f"{s}/T_PROBE{q}"}
                                 for s, depth, q in names.probes]}],
        "chambers": [{"name": "1", "co2": f"{sensor}/CO2{suffix}", "lid": f"{sensor}/LID_CLOSED{suffix}",
                      "temperature": f"{sensor}/T_PROBE{suffix}",
                      "ts": names.ts, "volume_m3": 0.0042,
                      "area_m2": 0.0318, "pressure_pa": 99000.0, "dead_band_s": 10.0, "min_closure_s": 30.0}]}}


def trees(names: DemoSoilNames) -> list[TreeSpec]:
    return demo_trees(names.dendrometer[0], list(names.dendrometer[1]), seed=SEED_TREES)


def stems_settings(names: DemoSoilNames, utc_offset_h: float) -> dict[str, Any]:
    """`stems:` of the demo's central.yaml: one plot of five trees, three with a dendrometer."""
    listed = [{"tree": t.tree, "species": t.species, "dbh_cm": t.dbh_cm,
               **({"dendrometer": f"{t.sensor}/{t.variable}"} if t.sensor else {})} for t in trees(names)]
    return {"per_station": {}, "__station__": {
        "utc_offset_h": utc_offset_h, "frost_temperature": names.frost_temperature,
        "plots": [{"name": "1", "area_m2": PLOT_AREA_M2, "trees": listed}]}}


def central_sections(names: DemoSoilNames, station: str, utc_offset_h: float) -> dict[str, Any]:
    """The `soil:` and `stems:` sections of the demo's central config for `station`."""
    out = {}
    for key, section in (("soil", soil_settings(names, utc_offset_h)), ("stems", stems_settings(names,
                                                                                                 utc_offset_h))):
        section["per_station"] = {station: section.pop("__station__")}
        out[key] = section
    return out


@dataclass
class DemoSoilStems:
    """The simulated year's soil and stems as the API served them, beside the truth."""

    year: int
    seconds: float
    soil_sum: tuple[float, float]  # annual gradient-method efflux and its 1 σ, gC m-2
    soil_unc_parts: tuple[float, float]  # the σ from the diffusivity models' spread alone, from the measurement alone
    soil_truth: float
    soil_median_error: float
    chamber_median_error: float
    chamber_closures: int
    gro: dict[str, tuple[float, float]]  # tree -> (served GRO at the year's end, true growth), µm
    twd_max: dict[str, tuple[float, float]]
    carbon: tuple[float, float, float]  # plot C_AGB_INC, its sd, Mg C ha-1; CO2e t ha-1
    carbon_truth: float
    urls: list[str]
    live: list[str] = field(default_factory=list)

    def within_tolerance(self) -> bool:
        total = self.soil_sum[0]
        soil_ok = abs(total - self.soil_truth) <= SOIL_TOLERANCE * self.soil_truth
        gro_ok = all(abs(a - b) <= GRO_TOLERANCE_UM for a, b in self.gro.values())
        carbon_ok = abs(self.carbon[0] - self.carbon_truth) <= CARBON_TOLERANCE_SIGMA * self.carbon[1]
        return soil_ok and self.chamber_median_error <= CHAMBER_TOLERANCE and gro_ok and carbon_ok

    def lines(self) -> list[str]:
        total, sigma = self.soil_sum
        out = [f"simulated year {self.year} of soil profile, chamber and dendrometers (gateway/simulation/soilyear.py"
               f") through the central soil and stems jobs in {self.seconds:.1f} s",
               f"soil efflux (gradient, profile_fit) {total:7.1f} ± {sigma:.1f} gC m-2   truth {self.soil_truth:7.1f}"
               f"   (half-hourly median error {100 * self.soil_median_error:.1f} %)",
               f"  the ± is systematic: ± {self.soil_unc_parts[0]:.1f} the spread of the diffusivity models that "
               f"apply, ± {self.soil_unc_parts[1]:.1f} the probes' calibration; choosing one model on site evidence "
               "narrows it (docs/soil-stems.md)",
               f"chamber 1: {self.chamber_closures} closures, median error against each closure's true flux "
               f"{100 * self.chamber_median_error:.1f} %"]
        for tree, (gro, true) in self.gro.items():
            twd, twd_true = self.twd_max[tree]
            out.append(f"tree {tree}: GRO {gro:6.0f} um (truth {true:6.0f}), TWD max {twd:4.0f} um (truth "
                       f"{twd_true:4.0f})")
        c, sd, co2e = self.carbon
        out.append(f"plot 1: stem carbon increment {c:.3f} ± {sd:.3f} Mg C ha-1 ({co2e:.2f} t CO2e ha-1), truth "
                   f"{self.carbon_truth:.3f}")
        out.extend(f"served at {url}" for url in self.urls)
        return out


def simulated_year(names: DemoSoilNames, station: str, year: int, utc_offset_h: float, seed: int,
                   until: datetime | None = None) -> SoilYear:
    """The demo station's simulated soil, chamber and dendrometer year; `until`: a year in progress (soilyear)."""
    sensor, suffix = names.chamber
    swc_sensor, swc_variable = names.swc.split("/")
    return soil_year(year, station=station, utc_offset_h=utc_offset_h, seed=seed,
                     probes=[ProbeSpec(depth, s, f"CO2{q}", f"T_PROBE{q}") for s, depth, q in names.probes],
                     swc_sensor=swc_sensor, swc_variable=swc_variable, trees=trees(names),
                     ts_variable=names.ts.split("/")[1],
                     chamber=(sensor, f"CO2{suffix}", f"LID_CLOSED{suffix}", f"T_PROBE{suffix}"), until=until)


def _rows(client: httpx.Client, product: str, station: str, year: int, table: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/{product}", params={"station": station, "year": year, "table": table})
    response.raise_for_status()
    rows: list[dict[str, Any]] = response.json()["rows"]
    return rows


def _column(rows: list[dict[str, Any]], name: str) -> np.ndarray:
    return np.array([np.nan if (v := r["values"].get(name)) is None else v for r in rows], dtype=float)


def _times(rows: list[dict[str, Any]]) -> np.ndarray:
    return np.array([datetime.fromisoformat(r["time"].replace("Z", "+00:00")).timestamp() for r in rows])


def run_demo_soilstems(storage: StorageSettings, api_url: str, central: CentralConfig, names: DemoSoilNames, *,
                       site: str, station: str, utc_offset_h: float, seed: int = 0,
                       year: int | None = None) -> DemoSoilStems:
    """Store a simulated year for `station` (the last full year unless `year`), run the soil and stems jobs on it
    and read the results back from the API at `api_url`."""
    started = time.monotonic()
    target = year if year is not None else utc_now().year - 1
    simulated = simulated_year(names, station, target, utc_offset_h, seed)
    store = open_store(storage)
    try:
        for i in range(0, len(simulated.readings), 5000):
            store.write([StoredReading(site, r) for r in simulated.readings[i:i + 5000]])
        for product in ("soil", "stems"):
            run_station_product(product, store, station, target, central.soil, central.stems)
    finally:
        store.close()
    start, end = (b.timestamp() for b in year_bounds(target, utc_offset_h))
    with httpx.Client(base_url=api_url, timeout=60) as client:
        gradient = _rows(client, "soil", station, target, "gradient_1")
        chamber = _rows(client, "soil", station, target, "chamber_1")
        plot = _rows(client, "stems", station, target, "plot_1")
        tree_rows = {t: _rows(client, "stems", station, target, f"tree_{t}") for t in simulated.dendro_truth}
    ends = _times(gradient)
    flux = _column(gradient, "FC_SOIL_GRAD")
    ts = _column(gradient, "TS")
    total = efflux_sum(ends - 1800.0, flux, _column(gradient, "FC_SOIL_GRAD_UNC"), ts, start_s=start, end_s=end,
                       period_s=1800.0)
    parts = tuple(efflux_sum(ends - 1800.0, flux, _column(gradient, name), ts, start_s=start, end_s=end,
                             period_s=1800.0).unc_gc_m2
                  for name in ("FC_SOIL_GRAD_UNC_MODEL", "FC_SOIL_GRAD_UNC_MEAS"))
    index = np.round((ends - 1800.0 - simulated.time_s[0]) / 1800.0).astype(int)
    ok = np.isfinite(flux) & (index >= 0) & (index < simulated.time_s.size)
    soil_error = float(np.median(np.abs(flux[ok] / simulated.flux_true[index[ok]] - 1)))
    truth = dict(simulated.chamber_truth)
    closure_ends = np.array(sorted(truth))
    ch_flux = _column(chamber, "FC_SOIL_CH_1")
    expected = np.array([truth[float(closure_ends[np.argmin(np.abs(closure_ends - e))])] for e in _times(chamber)])
    chamber_error = float(np.nanmedian(np.abs(ch_flux / expected - 1)))
    gro, twd = {}, {}
    for tree, (_t, gro_true, twd_true) in simulated.dendro_truth.items():
        rows = tree_rows[tree]
        gro[tree] = (float(np.nanmax(_column(rows, f"GRO_{tree}"))), float(gro_true[-1]))
        twd[tree] = (float(np.nanmax(_column(rows, f"TWD_{tree}"))), float(np.max(twd_true)))
    (row,) = plot
    v = row["values"]
    listed = simulated.trees
    true_plot = plot_biomass([t.species for t in listed], np.array([t.dbh_cm for t in listed]), PLOT_AREA_M2,
                             dbh_increment_cm=np.array([t.increment_cm for t in listed]))
    urls = [f"{api_url}/api/v1/soil?station={station}&year={target}&table=gradient_1 (and chamber_1; format=csv)",
            f"{api_url}/api/v1/stems?station={station}&year={target}&table=plot_1 (tree_t1, daily_t1, ...)"]
    return DemoSoilStems(
        year=target, seconds=time.monotonic() - started, soil_sum=(total.total_gc_m2, total.unc_gc_m2),
        soil_unc_parts=(parts[0], parts[1]),
        soil_truth=truth_between(simulated, start, end), soil_median_error=soil_error,
        chamber_median_error=chamber_error, chamber_closures=len(chamber), gro=gro, twd_max=twd,
        carbon=(float(v["C_AGB_INC"]), float(v["C_AGB_INC_SD"]), float(v["CO2E_AGB_INC"])),
        carbon_truth=float(true_plot.carbon_increment_mg_ha), urls=urls)


def truth_between(simulated: SoilYear, start_s: float, end_s: float) -> float:
    """The true efflux summed over [start, end), gC m-2."""
    inside = (simulated.time_s >= start_s) & (simulated.time_s < end_s)
    return float(simulated.flux_true[inside].sum() * 1800.0 * 12.011e-6)


def live_lines(storage: StorageSettings, central: CentralConfig, station: str, chamber_truth: list[tuple[float,
               float]], *, now: datetime | None = None) -> list[str]:
    """The soil and stems jobs over the live station's current year, once the station stopped: what they computed,
    the chamber's closures against their true flux, or why they could not (the demo ran too briefly)."""
    moment = now or utc_now()
    offset = central.soil.per_station[station].utc_offset_h
    year = (moment + timedelta(hours=offset)).year
    store = open_store(storage)
    lines: list[str] = []
    try:
        for product in ("soil", "stems"):
            try:
                result = run_station_product(product, store, station, year, central.soil, central.stems,
                                             now=moment)
            except SoilStemsJobError as exc:
                lines.append(f"live {year}: {product} not computed: {exc}")
                continue
            for name, table in result.tables.items():
                if name.startswith("chamber_"):
                    lines.append(_chamber_line(year, name, table.times, table.values["FC_SOIL_CH_1"], chamber_truth))
                elif name.startswith("gradient_"):
                    flux = [v for v in table.values["FC_SOIL_GRAD"] if v is not None]
                    lines.append(f"live {year}: {name}: {len(table)} period(s), FC_SOIL_GRAD "
                                 + (f"{flux[-1]:.2f} umol m-2 s-1" if flux else "missing (too little data yet)"))
                elif name.startswith("tree_"):
                    tree = name.split("_", 1)[1]
                    gro = [v for v in table.values[f"GRO_{tree}"] if v is not None]
                    lines.append(f"live {year}: {name}: {len(table)} samples, GRO {gro[-1] if gro else 0:.1f} um")
                elif name.startswith("plot_"):
                    lines.append(f"live {year}: {name}: stem carbon increment so far "
                                 f"{table.values['C_AGB_INC'][0] or 0:.4f} Mg C ha-1")
    finally:
        store.close()
    return lines


def _chamber_line(year: int, name: str, times: list[datetime], flux: list[float | None],
                  truth: list[tuple[float, float]]) -> str:
    closed = np.array([c[0] for c in truth])
    pairs = []
    for t, f in zip(times, flux, strict=True):
        earlier = np.flatnonzero(closed <= t.timestamp())  # the closure a row ends is the last one to close before it
        if f is not None and earlier.size:
            pairs.append((f, truth[int(earlier[-1])][1]))
    if not pairs:
        return f"live {year}: {name}: {len(times)} closure(s), none long enough for a flux yet (each needs 30 s)"
    text = ", ".join(f"{f:.2f} (truth {true:.2f})" for f, true in pairs[-3:])
    return f"live {year}: {name}: {len(pairs)} closure(s) with a flux, umol m-2 s-1: {text}"


def closures_of(model: Any) -> list[tuple[float, float]]:
    """(instant the lid reached closed, true flux) of every closure a ChamberModel logged."""
    return [(c.closed_at, c.flux) for c in getattr(model, "closures", [])]


