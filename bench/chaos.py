"""Chaos run: the real station, broker, central service and InfluxDB as separate processes, one fault after another
injected into them, and at the end an exact reconciliation of what the counting probes served against what
InfluxDB holds (committed = stored, 0 lost, 0 duplicated, 0 altered) with the drain time after each fault.

    counting GMP252 probes (own process) ── socat PTYs ── sinkwatch station run ── Mosquitto (shipped conf + ACL)
    counting WindMaster, 20 Hz (own process) ── TCP ──────────┘   InfluxDB 1.x ── sinkwatch central serve ──┘

The stream's interval summaries (every 5 s) are reconciled too: every interval the station closed stored once, its
means, SDs and counts those of exactly the records it counted; so are its raw archive files (every record the station
read in them once, in order, unaltered) and the station's flux records (one per 30-s averaging period).

Default: 5 rounds of the 13 fault kinds (65 faults) plus 100 kills of the station in the middle of a buffer write,
spread between them; outages of 2-15 s. About 30-40 minutes on two cores. Run:

    .venv/bin/python bench/chaos.py [--rounds 5] [--midwrite 100] [--seed 0] [--keep DIR]

Method, definitions and recorded figures: docs/reliability.md, "Chaos runs". No assertion is made here: the figures
go there with the date and the machine; tests/test_chaos.py runs a short version in CI and asserts the
reconciliation.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from gateway.testing.chaos import FAULT_KINDS, ChaosPlan, SiteSettings, run_chaos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the fault kinds (default 5: 65 faults)")
    parser.add_argument("--kinds", nargs="+", choices=FAULT_KINDS, default=FAULT_KINDS, help="fault kinds (all)")
    parser.add_argument("--midwrite", type=int, default=100, help="mid-write station kills, spread between them")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--outage", type=float, nargs=2, default=(2.0, 15.0), metavar=("MIN", "MAX"),
                        help="seconds a process stays down or frozen, or the line unplugged")
    parser.add_argument("--receipt-timeout", type=float, default=30.0,
                        help="the station's buffer.receipt_timeout_s (its default: 30)")
    parser.add_argument("--stream-hz", type=float, default=20.0,
                        help="records a second of the counting WindMaster on TCP (0: no stream instrument)")
    parser.add_argument("--summary-interval", type=float, default=5.0,
                        help="the station's streams.summary_interval_s (default 5)")
    parser.add_argument("--flux-period", type=float, default=30.0,
                        help="the station's flux runner on the stream, its averaging period in s (a divisor of "
                             "1800, at least 30; 0: no flux runner)")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (logs, served log, kill snapshots)")
    args = parser.parse_args()
    plan = ChaosPlan(rounds=args.rounds, kinds=tuple(args.kinds), midwrite_kills=args.midwrite, seed=args.seed,
                     outage_s=tuple(args.outage),
                     site=SiteSettings(receipt_timeout_s=args.receipt_timeout, stream_hz=args.stream_hz,
                                       summary_interval_s=args.summary_interval,
                                       flux_period_s=args.flux_period))
    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="sinkwatch-chaos-") as tmp:
        folder = args.keep or Path(tmp)
        report = run_chaos(folder, plan, progress=lambda line: print(line, flush=True))
        (folder / "report.json").write_text(json.dumps(dataclasses.asdict(report), indent=1, default=str),
                                            encoding="utf-8")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent, check=False).stdout.strip()
    print()
    print(report.render())
    print()
    print(f"{started:%Y-%m-%d %H:%M} UTC, commit {commit or 'unknown'}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, load average at the end {os.getloadavg()[0]:.1f}, Python "
          f"{platform.python_version()}; {time.strftime('%H:%M:%S', time.gmtime(report.duration_s))} in all")


if __name__ == "__main__":
    main()
