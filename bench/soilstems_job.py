"""The central soil and stems jobs on a station-year from SQLite, against the science alone in the same run.

    data        the demo's simulated year (gateway/simulation/soilyear.py): 3 GMP252 depths + soil T + SWC
                half-hourly, one chamber closed every 6 h (10-s samples), 3 dendrometers half-hourly, a 5-tree plot
    job         compute_station_soil (profile_fit with its uncertainty, chamber fits) and compute_station_stems,
                reading everything back through the Store protocol
    baseline    the same science on the same arrays without the store: soil_efflux_gradient on the half-hour
                matrix, chamber_fluxes on the raw closure series, clean/zero-growth per tree; the difference is
                what the store reads and the glue cost

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/soilstems_job.py [--repeat 3]

Prints wall and CPU seconds (medians). No assertion: the figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from gateway.central.soilstems import compute_station_soil, compute_station_stems
from gateway.central.soilstems_config import SoilJobConfig, StemsJobConfig
from gateway.central.store import SqliteStore, StoredReading
from gateway.demo_soilstems import DemoSoilNames, central_sections, simulated_year
from gateway.flux.soil.chamber import Chamber, chamber_fluxes, detect_closures
from gateway.flux.soil.diffusivity import SoilSite
from gateway.flux.soil.gradient import ProbeAccuracy, soil_efflux_gradient
from gateway.flux.stems.dendro import clean_dendrometer, zero_growth

NAMES = DemoSoilNames(probes=(("co2_10", 0.1, "_1_1_1"), ("co2_30", 0.3, "_1_2_1"), ("co2_60", 0.6, "_1_3_1")),
                      swc="swc/SWC_1_1_1", ts="swc/TS_1_1_1", chamber=("chamber_1", "_4_1_1"),
                      dendrometer=("dendro", ("STEM_RAD_CHG_1_1_1", "STEM_RAD_CHG_2_1_1", "STEM_RAD_CHG_3_1_1")),
                      frost_temperature="ta/TA_1_1_1")
YEAR = 2025
NOW = datetime(2026, 3, 1, tzinfo=UTC)


def timed(action: Callable[[], object], repeat: int) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        action()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus)


def baseline(year: object, sections: dict[str, dict[str, object]]) -> Callable[[], object]:
    readings = year.readings  # type: ignore[attr-defined]
    by: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for r in readings:
        by.setdefault((r.sensor, r.variable), []).append((r.time.timestamp(), r.value))
    series = {k: np.array(v) for k, v in by.items()}
    grid = np.array(sorted({t for t, _ in by[("co2_10", "CO2_1_1_1")]}))

    def on(key: tuple[str, str]) -> np.ndarray:
        t, v = series[key][:, 0], series[key][:, 1]
        return np.interp(grid, t, v)

    co2 = np.column_stack([on((s, f"CO2{q}")) for s, _d, q in NAMES.probes])
    ts = np.column_stack([on((s, f"T_PROBE{q}")) for s, _d, q in NAMES.probes])
    swc = on(("swc", "SWC_1_1_1"))[:, None] / 100.0 * np.ones((1, 3))
    t_ch, x_ch = series[("chamber_1", "CO2_4_1_1")].T
    lid = series[("chamber_1", "LID_CLOSED_4_1_1")][:, 1]
    trees = [series[("dendro", v)] for v in NAMES.dendrometer[1]]

    def run() -> None:
        soil_efflux_gradient(np.array([0.1, 0.3, 0.6]), co2, ts, swc, 99000.0, SoilSite(bulk_density=1.2, clay=0.18),
                             method="profile_fit", t_probe_c=ts, accuracy=ProbeAccuracy(5.0, 0.005))
        chamber_fluxes(t_ch, x_ch, detect_closures(t_ch, lid), Chamber(0.0042, 0.0318), 99000.0, 15.0,
                       dead_band_s=10.0, min_closure_s=30.0)
        for tree in trees:
            zero_growth(clean_dendrometer(tree[:, 0], tree[:, 1]).value)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    year = simulated_year(NAMES, "st01", YEAR, 0.0, 0)
    sections = central_sections(NAMES, "st01", 0.0)
    soil = SoilJobConfig.model_validate(sections["soil"])
    stems = StemsJobConfig.model_validate(sections["stems"])
    with tempfile.TemporaryDirectory() as folder:
        store = SqliteStore(Path(folder) / "bench.sqlite")
        for i in range(0, len(year.readings), 5000):
            store.write([StoredReading("site", r) for r in year.readings[i:i + 5000]])
        rows = [("soil job (store → gradient profile_fit + chamber fits)",
                 timed(lambda: compute_station_soil(store, "st01", YEAR, soil, now=NOW), args.repeat)),
                ("stems job (store → cleaning, zero growth, daily, plot carbon)",
                 timed(lambda: compute_station_stems(store, "st01", YEAR, stems, now=NOW), args.repeat)),
                ("baseline: the same science on in-memory arrays", timed(baseline(year, sections), args.repeat))]
        store.close()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; {len(year.readings)} readings of {YEAR}")
    for label, (wall, cpu) in rows:
        print(f"{label:65s} wall {wall:6.2f} s   CPU {cpu:6.2f} s")


if __name__ == "__main__":
    main()
