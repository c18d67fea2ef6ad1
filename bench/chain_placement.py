"""What placing signed items in their chains costs with several ingest workers: `ChainTracker(shared=True)` looks
every item up in the ledger, `ChainTracker()` (one worker) follows its chain's head in memory. Same items, same
run, on SQLite and a private influxd.

    exclusive:  one tracker, items in order: the head in memory, no query on the usual path
    shared:     the same items with a shared tracker: one ledger lookup per item (the item or the next one), the
                predecessor known from this worker's own last item
    shared, alternating: two shared trackers taking turns (as two workers on one shared subscription): the
                predecessor stored by the other worker, so a second lookup per item

Each path places and stores (`Store.write` of the item's ledger entry, no readings, then `stored`) N items of its
own station; the figures are the whole cycle and the placement alone, wall time and CPU per item. Signing and
verification happen before the clock starts. No assertion is made: docs/performance.md keeps the figures.

    .venv/bin/python bench/chain_placement.py [--items 2000]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from gateway.central.chain import ChainTracker, VerifiedItem, Verifier
from gateway.central.store import InfluxStore, SqliteStore, Store
from gateway.contract import readings_topic
from gateway.edge.signer import ChainSigner
from gateway.testing.services import running_influxd
from gateway.trust.keys import KeyRegistry, generate_key


def signed_items(folder: Path, station: str, count: int) -> list[VerifiedItem]:
    key = generate_key(folder / f"{station}.key")
    registry = KeyRegistry(folder / "central")
    registry.register("bench", station, key.public_key())
    verifier = Verifier(registry, required=True)
    signer = ChainSigner(key, folder / f"{station}.buffer")
    topic = readings_topic("bench", station)
    items = []
    for seq in range(count):
        payload = f'{{"seq":{seq}}}'.encode()
        envelope = signer.envelope("readings", topic, seq, payload)
        item = verifier.verify("bench", station, "readings", topic, payload, envelope, time.time_ns())
        assert item is not None
        items.append(item)
    signer.close()
    return items


def cycle(store: Store, trackers: list[ChainTracker], items: list[VerifiedItem]) -> tuple[float, float, float]:
    """(wall s, CPU s, placement wall s) of placing and storing every item, trackers taking turns."""
    placing = 0.0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for index, item in enumerate(items):
        tracker = trackers[index % len(trackers)]
        t0 = time.perf_counter()
        placement = tracker.place(item)
        placing += time.perf_counter() - t0
        store.write([], ledger=item.ledger(b"{}") if placement.new else None)
        tracker.stored(item)
        assert not [e for e in placement.events if e.kind != "chain_start"], placement.events
    return time.perf_counter() - wall0, time.process_time() - cpu0, placing


def run(label: str, store: Store, folder: Path, count: int) -> None:
    print(f"{label}: {count} items per path")
    for name, trackers in (("exclusive (one worker)", lambda: [ChainTracker(store)]),
                           ("shared", lambda: [ChainTracker(store, shared=True)]),
                           ("shared, two trackers alternating",
                            lambda: [ChainTracker(store, shared=True), ChainTracker(store, shared=True)])):
        items = signed_items(folder, f"st-{name.split()[0].strip(',')}-{len(trackers())}", count)
        wall, cpu, placing = cycle(store, trackers(), items)
        print(f"  {name:34s} {1e6 * wall / count:9.0f} us/item ({1e6 * cpu / count:7.0f} us CPU), placement "
              f"{1e6 * placing / count:7.0f} us/item")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    args = parser.parse_args()
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sqlite = SqliteStore(folder / "bench.sqlite")
        try:
            run("sqlite", sqlite, folder / "s", args.items)
        finally:
            sqlite.close()
        with running_influxd(folder / "influxd") as influxd:
            influx = InfluxStore(influxd.url, database="bench")
            try:
                run("influx", influx, folder / "i", args.items)
            finally:
                influx.close()


if __name__ == "__main__":
    main()
