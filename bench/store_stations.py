"""`SqliteStore.stations()` (what `GET /api/v1/stations` and the status page read) on a network's worth of readings:
the `series` table against the grouping of every stored reading that it replaced, in the same run.

    .venv/bin/python bench/store_stations.py [--stations 10] [--days 10] [--repeat 5]

1. The network demo's readings (gateway/demo_network.py: 20 series a minute per station, with its flux records and
   health reports; no budget, soil, stems or alert runs) written through `SqliteStore.write`, the path that keeps
   the `series` table.
2. ours: `SqliteStore.stations()` (one row per series); baseline: the former statement, `MAX(time_ns)` of
   `readings` grouped by series, merged the same way, on the store's own connection. Median of `repeat` each; the
   two answers must be equal.
3. The one-off migration of an existing database: the same file as the layout before the table left it (table
   dropped, `user_version` 2), opened by `SqliteStore`, which fills the table from the readings.

No assertion on times: the figures go to docs/performance.md with the date and machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from gateway.central.store import SqliteStore
from gateway.central.store.base import StationInfo, merge_station_rows
from gateway.demo_network import write_network


def median_ms(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stations", type=int, default=10)
    parser.add_argument("--days", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"sinkwatch stations() benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}; "
          f"{args.stations} stations x {args.days:g} days")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "network.sqlite"
        store = SqliteStore(path)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        data = write_network(store, stations=args.stations, days=args.days, budget=False, soilstems=False,
                             alerts=False)
        print(f"  written: {data.readings:,} readings, {data.flux_records:,} flux records in "
              f"{time.perf_counter() - wall0:.0f} s ({time.process_time() - cpu0:.0f} s CPU)")

        def grouped() -> list[StationInfo]:
            return merge_station_rows(store._fetch(
                "SELECT site, station, sensor, variable, unit, MAX(time_ns) FROM readings "
                "GROUP BY site, station, sensor, variable, unit", {}))

        if store.stations() != grouped():
            raise SystemExit("the series table and the grouping of the readings disagree")
        series = store._fetch("SELECT COUNT(*) FROM series", {})[0][0]
        base = median_ms(grouped, args.repeat)
        ours = median_ms(store.stations, args.repeat)
        print(f"  baseline: GROUP BY over every reading      {base:10.1f} ms (median of {args.repeat})")
        print(f"  ours: stations() from the series table      {ours:10.1f} ms ({series} series)")
        print(f"  baseline / ours = {base / ours:,.0f}")
        store.close()

        with sqlite3.connect(path) as db:
            db.execute("DROP TABLE series")
            db.execute("PRAGMA user_version = 2")
        db.close()
        started = time.perf_counter()
        migrated = SqliteStore(path)
        print(f"  migration: open of the file without the table (fills it) {time.perf_counter() - started:.2f} s")
        migrated.close()


if __name__ == "__main__":
    main()
