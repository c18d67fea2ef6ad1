"""What write-once costs: `Store.write` (reads what it holds at the batch's times, writes only new identities) against
the plain write it replaced, in the same run, on a private influxd and on SQLite.

    influx  ours:      InfluxStore.write (write guard: readings newer than the station's mark need no /query; /write)
            baseline:  the same readings serialised and POSTed to /write (what InfluxStore.write did before: last
                       write wins, fields merged)
            resend:    InfluxStore.write of batches already stored (a redelivery: all at or before the mark, so the
                       held identities are looked up, nothing written)
    sqlite  ours:      SqliteStore.write (a lookup per reading in one transaction, insert if new)
            baseline:  INSERT OR REPLACE of the same rows by executemany in one transaction (what it did before)
            resend:    SqliteStore.write of batches already stored

Run:

    .venv/bin/python bench/store_identity.py [--readings 100000] [--batch 500]

Readings are a station's mix (10 sensors, a reading every second each); every path gets its own time range so no
path finds another's data. No assertion is made: the figures go to docs/performance.md with date and machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from gateway.central.store import InfluxStore, SqliteStore, StoredReading
from gateway.central.store.base import to_ns
from gateway.central.store.influx import reading_to_line
from gateway.model import QualityFlag, Reading, TimeSource
from gateway.testing.services import running_influxd

SENSORS = 10


def batches(count: int, size: int, start: datetime) -> list[list[StoredReading]]:
    readings = [
        StoredReading("bench", Reading(
            station="st1", sensor=f"probe{i % SENSORS}", variable="CO2", value=400.0 + (i % 997) / 7, unit="umol mol-1",
            time=start + timedelta(seconds=i // SENSORS), time_source=TimeSource.GATEWAY, clock_synced=True,
            qc=QualityFlag.GOOD))
        for i in range(count)
    ]
    return [readings[i:i + size] for i in range(0, count, size)]


def timed(label: str, count: int, run: Callable[[], None]) -> float:
    wall0, cpu0 = time.perf_counter(), time.process_time()
    run()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    print(f"  {label:52s} {count / wall:10,.0f} readings/s {1000 * cpu / count * 1000:8.1f} ms CPU/1000 rd")
    return count / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    n, size = args.readings, args.batch
    t0 = datetime(2026, 11, 25, tzinfo=UTC)
    ours_data, base_data = batches(n, size, t0), batches(n, size, t0 + timedelta(days=30))
    print(f"sinkwatch write-once benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}; {n:,} readings in batches of {size}")
    with tempfile.TemporaryDirectory() as tmp:
        with running_influxd(Path(tmp) / "influxd") as influxd:
            store = InfluxStore(influxd.url, database="bench")
            store.write(ours_data[0][:1])  # creates the database outside the timing
            http = httpx.Client(base_url=influxd.url, timeout=30)

            def post_all() -> None:
                for batch in base_data:
                    body = "\n".join(reading_to_line(r) for r in batch).encode()
                    http.post("/write", params={"db": "bench", "precision": "ns"}, content=body).raise_for_status()

            def write_all() -> None:
                for batch in ours_data:
                    store.write(batch)

            print("influx (private influxd on loopback):")
            base = timed("baseline: serialise + POST /write (the old write)", n, post_all)
            ours = timed("ours: InfluxStore.write (mark, write new)", n, write_all)
            timed("resend: InfluxStore.write of stored batches", n, write_all)
            print(f"  ours / baseline = {ours / base:.2f}")
            http.close()
            store.close()
        sqlite_path = Path(tmp) / "store.sqlite"
        lite = SqliteStore(sqlite_path)
        conn = sqlite3.connect(sqlite_path, isolation_level=None)
        conn.execute("PRAGMA synchronous=FULL")

        def replace_all() -> None:
            for batch in base_data:
                rows = [(i.site, i.reading.station, i.reading.sensor, i.reading.variable, i.reading.unit,
                         to_ns(i.reading.time), i.reading.time_source.value, i.reading.value, int(i.reading.qc),
                         1, None) for i in batch]
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany("INSERT OR REPLACE INTO readings VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
                conn.execute("COMMIT")

        def lite_all() -> None:
            for batch in ours_data:
                lite.write(batch)

        print("sqlite (synchronous=FULL, both):")
        base = timed("baseline: INSERT OR REPLACE, executemany", n, replace_all)
        ours = timed("ours: SqliteStore.write (look up, insert new)", n, lite_all)
        timed("resend: SqliteStore.write of stored batches", n, lite_all)
        print(f"  ours / baseline = {ours / base:.2f}")
        conn.close()
        lite.close()


if __name__ == "__main__":
    main()
