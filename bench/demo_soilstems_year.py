"""The soil/stems year `sinkwatch demo` computes before its live station, phase by phase.

    simulate    gateway.demo_soilstems.simulated_year: 360,005 readings of the demo station's soil profile, soil
                probe, chamber and dendrometers for one year
    store       the embedded SQLite store's writes of them, in batches of 5,000 as the demo writes them
    soil, stems run_station_product with the demo's central config, as the service's schedule runs them

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/demo_soilstems_year.py

The baseline is the same script run against an older checkout in the same session (PYTHONPATH=<checkout>), as in
docs/performance.md "SOIL/STEMS YEAR OF THE DEMO". Prints wall and CPU seconds per phase; no assertion.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import gateway
from gateway import demo
from gateway.central.config import StorageSettings
from gateway.central.service import open_store
from gateway.central.soilstems import run_station_product
from gateway.central.store import StoredReading
from gateway.demo_soilstems import simulated_year


def main() -> None:
    print(f"gateway from {Path(gateway.__file__).parent}")
    work = Path(tempfile.mkdtemp())
    central = demo._demo_central(work, None)
    storage = StorageSettings.model_validate(demo.demo_storage(work, None))
    started = time.perf_counter(), time.process_time()
    lap = started

    def done(name: str, since: tuple[float, float]) -> tuple[float, float]:
        now = time.perf_counter(), time.process_time()
        print(f"  {name:9s} {now[0] - since[0]:6.1f} s wall {now[1] - since[1]:6.1f} s CPU", flush=True)
        return now

    year = simulated_year(demo.DEMO_SOIL_NAMES, demo.DEMO_STATION, 2025, demo.DEMO_UTC_OFFSET_H, 0)
    lap = done("simulate", lap)
    store = open_store(storage)
    try:
        for i in range(0, len(year.readings), 5000):
            store.write([StoredReading(demo.DEMO_SITE, r) for r in year.readings[i:i + 5000]])
        lap = done("store", lap)
        for product in ("soil", "stems"):
            run_station_product(product, store, demo.DEMO_STATION, 2025, central.soil, central.stems)
            lap = done(product, lap)
    finally:
        store.close()
    done("total", started)


if __name__ == "__main__":
    main()
