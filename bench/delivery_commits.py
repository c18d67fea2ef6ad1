"""What the delivery thread's buffer work costs per item: the claim that forms a reading batch, the signer's new link,
the delete on the receipt and the drop of the link, on one buffer file as the station daemon opens it.

The delivery thread of a station (gateway/edge/delivery.py) does, for every reading batch: `ReadingsOutbox.claim`
(a new batch, a commit), `ChainSigner.envelope` (its new link, a commit), and on the central service's receipt
`ReadingsOutbox.confirm` (the delete, a commit) and `ChainSigner.forget`. Which of those commits pays an fsync
(`synchronous=FULL`) is what this bench shows: it runs that sequence for `--items` batches of `--readings` readings
each on a buffer file in a temporary folder (on the disk of `--dir`), with the buffer writer's append of the next
poll round between two items as in the daemon (not counted), and prints the CPU (`time.thread_time`) and the
voluntary context switches (/proc/thread-self/status) of the calls above, per item.

The bench imports the checkout it lies in (its parent folder goes first on `sys.path`), so the same file run from
a checkout of the code before a change and from one after it, back to back, compares the two in one run:

    sh -c 'python ../before/bench/delivery_commits.py; python ../after/bench/delivery_commits.py'

The buffer is opened as `StationDaemon` opens it for a signed station (`durable_claims=False` where the buffer
knows that keyword). No assertion is made; the figures go to docs/performance.md with the date and machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.edge.buffer import ReadingBuffer
from gateway.edge.outbox import ReadingsOutbox
from gateway.edge.signer import ChainSigner
from gateway.testing.factories import make_readings
from gateway.trust.keys import generate_key

SITE, STATION = "bench", "st01"


def wakeups() -> int:
    """Voluntary context switches of the calling thread so far."""
    with open("/proc/thread-self/status") as status:
        for line in status:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    return 0


def open_buffer(path: Path) -> ReadingBuffer:
    try:
        return ReadingBuffer(path, durable_claims=False)  # type: ignore[call-arg,unused-ignore]
    except TypeError:  # a checkout from before the keyword: every claim durable on its own
        return ReadingBuffer(path)


def run(folder: Path, items: int, readings: int) -> dict[str, float]:
    path = folder / "buffer.sqlite"
    buffer = open_buffer(path)
    signer = ChainSigner(generate_key(folder / "station.key"), path)
    outbox = ReadingsOutbox(buffer, SITE, STATION, batch_size=readings)
    rounds = [make_readings(readings, start=float(i * readings), station=STATION) for i in range(items + 1)]
    cpu = {"claim": 0.0, "link": 0.0, "confirm": 0.0}
    switches = dict.fromkeys(cpu, 0)

    @contextlib.contextmanager
    def timed(step: str) -> Iterator[None]:
        w0, c0 = wakeups(), time.thread_time()
        yield
        cpu[step] += time.thread_time() - c0
        switches[step] += wakeups() - w0

    buffer.append(rounds[0])
    for i in range(items):
        with timed("claim"):
            [item] = outbox.claim(1, set())
        with timed("link"):
            signer.envelope("readings", outbox.topic, item.seq, item.payload)
        buffer.append(rounds[i + 1])  # the writer's next round, made while the receipt travels (not counted)
        with timed("confirm"):
            outbox.confirm([(item.seq, item.seq)])
            signer.forget("readings", [(item.seq, item.seq)])
    signer.close()
    buffer.close()
    out: dict[str, float] = {}
    for step in cpu:
        out[f"{step}_us"] = round(cpu[step] / items * 1e6, 1)
        out[f"{step}_switches"] = round(switches[step] / items, 2)
    out["item_us"] = round(sum(cpu.values()) / items * 1e6, 1)
    out["item_switches"] = round(sum(switches.values()) / items, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--readings", type=int, default=36, help="readings per batch (a poll round of 12 GMP252)")
    parser.add_argument("--rounds", type=int, default=3, help="runs on a fresh file each; the figures of each")
    parser.add_argument("--dir", default=None, help="folder for the buffer files (default: the system's temp)")
    args = parser.parse_args()
    checkout = Path(__file__).resolve().parents[1]
    commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    print(f"checkout {checkout} at {commit}; {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; load {os.getloadavg()[0]:.1f}")
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            result = run(Path(tmp), args.items, args.readings)
        # per station-hour at the bench station's ~360 reading batches an hour (docs/performance.md)
        result["cpu_s_per_station_hour_at_360_items"] = round(result["item_us"] * 360 / 1e6, 3)
        print(json.dumps(result))


if __name__ == "__main__":
    main()
