"""RS-485 bus throughput: several GMP252 on one line at 19200 8N2, through a paced line, polled as fast as possible.

    bench process:  paced_rs485_line.py (paces every character; subprocess) <- RtuLineSimulator with N simulated GMP252
    child process:  the measured side, on the other end of the paced line:
        baseline  a bare pymodbus ModbusSerialClient reading 2 registers from each address in turn, tight loop
        bus       the production path: StationDaemon (SerialBus thread -> buffer writer -> SQLite buffer) with every
                  probe at interval_s 0.001 (shorter than a transaction: polled back to back); readings are
                  counted as rows in the SQLite buffer afterwards

The line's theoretical maximum for one 2-register read is 1 / ((8 + 9 + 2 x 3.5) characters x 11 bits / 19200)
= 72.7 transactions/s. Reported per run: transactions/s and that fraction, readings/s delivered to the buffer (and
the check that it equals the readings the daemon polled), CPU per transaction of the polling thread (utime+stime
from /proc for that thread) and its sleeps per transaction (voluntary context switches: every wake-up, including
those the kernel gives a thread in `select` for each burst of characters and that it goes back to sleep from without
returning to Python), the whole child process's CPU, and the child's peak RSS. Each run is a fresh child
process and a fresh paced line, so RSS and CPU are not mixed between runs. Run:

    .venv/bin/python bench/rs485_bus.py [--seconds 20] [--probes 4]

No assertion is made: the figures go to docs/performance.md with the date and machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RS485_LINE = Path(__file__).resolve().parent / "paced_rs485_line.py"
BAUD = 19200
BITS_PER_CHAR = 11
THEORETICAL_TPS = 1 / ((8 + 9 + 2 * 3.5) * BITS_PER_CHAR / BAUD)
FIRST_ADDRESS = 240


def thread_cpu_s(native_id: int) -> float:
    """utime + stime of one thread of this process, from /proc (Linux)."""
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def thread_switches(native_id: int) -> int:
    """Voluntary context switches of one thread (/proc): every time it slept and was woken, in the kernel or not."""
    for line in Path(f"/proc/self/task/{native_id}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    return 0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the measured side (child process) --------------------------------------------------------------------------


def child_baseline(port: str, probes: int, seconds: float) -> dict[str, Any]:
    from pymodbus.client import ModbusSerialClient
    from pymodbus.exceptions import ModbusException

    client = ModbusSerialClient(port, baudrate=BAUD, bytesize=8, parity="N", stopbits=2, timeout=1.0, retries=0)
    client.connect()
    transactions = errors = 0
    tid = threading.get_native_id()
    cpu0, wall0, switches0 = time.thread_time(), time.perf_counter(), thread_switches(tid)
    while time.perf_counter() - wall0 < seconds:
        transactions += 1
        try:
            response = client.read_holding_registers(0, count=2, device_id=FIRST_ADDRESS + transactions % probes)
        except ModbusException:
            errors += 1
            continue
        errors += response.isError()
    wall, cpu = time.perf_counter() - wall0, time.thread_time() - cpu0
    switches = thread_switches(tid) - switches0
    client.close()
    return {"transactions": transactions, "errors": errors, "wall_s": wall, "thread_cpu_s": cpu, "switches": switches,
            "process_cpu_s": time.process_time(), "peak_rss_mb": peak_rss_mb()}


def child_bus(port: str, probes: int, seconds: float, variant: str) -> dict[str, Any]:
    from gateway.edge.config import parse_station_config
    from gateway.edge.daemon import StationDaemon
    from gateway.net import free_port

    options: dict[str, Any] = {}
    if variant == "co2_only":
        options = {"read_temperature": False, "status_every_n_polls": 10}
    with tempfile.TemporaryDirectory() as tmp:
        buffer_path = Path(tmp) / "buffer.sqlite"
        config = parse_station_config({
            "site": "bench", "station": "st1",
            "mqtt": {"host": "127.0.0.1", "port": free_port()},  # nobody listens: readings stay in the buffer
            "buffer": {"path": str(buffer_path)},
            "sensors": [{"name": f"co2_{i}", "driver": "gmp252", "port": port, "address": FIRST_ADDRESS + i,
                         "interval_s": 0.001, "timeout_s": 1.0, "retries": 0, **options} for i in range(probes)],
        })
        daemon = StationDaemon(config)
        stop = threading.Event()
        runner = threading.Thread(target=daemon.run, args=(stop,), kwargs={"drain_timeout_s": 0.1})
        cpu0 = time.process_time()
        runner.start()
        (bus,) = daemon.buses
        while not bus.line.counters.transactions:
            time.sleep(0.01)
        bus_thread = next(t for t in threading.enumerate() if t.name.startswith("bus:"))
        assert bus_thread.native_id is not None
        tid = bus_thread.native_id
        tx0, thread_cpu0, wall0 = bus.line.counters.transactions, thread_cpu_s(tid), time.perf_counter()
        switches0 = thread_switches(tid)
        time.sleep(seconds)
        tx1, thread_cpu1, wall1 = bus.line.counters.transactions, thread_cpu_s(tid), time.perf_counter()
        switches = thread_switches(tid) - switches0
        stop.set()
        runner.join()
        process_cpu = time.process_time() - cpu0
        polled = sum(r.health.readings for r in daemon.runners)
        errors = sum(sum(r.health.errors.values()) for r in daemon.runners)
        with sqlite3.connect(buffer_path) as db:
            rows = db.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
            distinct = db.execute("SELECT COUNT(DISTINCT body) FROM readings").fetchone()[0]
        total_tx = bus.line.counters.transactions
    return {"transactions": tx1 - tx0, "wall_s": wall1 - wall0, "thread_cpu_s": thread_cpu1 - thread_cpu0,
            "switches": switches,
            "total_transactions": total_tx, "process_cpu_s": process_cpu, "readings_polled": polled,
            "buffer_rows": rows, "distinct_rows": distinct, "errors": errors, "peak_rss_mb": peak_rss_mb()}


# --- the orchestrating side ---------------------------------------------------------------------------------------


def run_case(case: str, probes: int, seconds: float, tmp: Path) -> dict[str, Any]:
    from drivers.gmp252.simulator import profile_simulators
    from gateway.simulation.rtu_line import RtuLineSimulator

    link_a, link_b, stats = tmp / f"{case}_a", tmp / f"{case}_b", tmp / f"{case}_stats.json"
    line = subprocess.Popen([sys.executable, str(RS485_LINE), str(BAUD), str(link_a), str(link_b), str(stats),
                             str(BITS_PER_CHAR)])
    try:
        deadline = time.monotonic() + 10
        while not (link_a.exists() and link_b.exists()):
            if time.monotonic() > deadline:
                raise RuntimeError("paced_rs485_line.py did not create its links")
            time.sleep(0.01)
        depths = {FIRST_ADDRESS + i: 0.1 * (i + 1) for i in range(probes)}
        with RtuLineSimulator(str(link_a), list(profile_simulators(depths)), baudrate=BAUD, stopbits=2,
                              keep_events=False):
            out = subprocess.run(
                [sys.executable, __file__, "--child", case, "--port", str(link_b), "--probes", str(probes),
                 "--seconds", str(seconds)],
                capture_output=True, text=True,
            )
        if out.returncode:
            raise RuntimeError(f"child {case} failed:\n{out.stderr}")
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        result["line_stats"] = json.loads(stats.read_text()) if stats.exists() else {}
        return result
    finally:
        line.terminate()
        line.wait()


def describe(case: str, r: dict[str, Any]) -> str:
    tps = r["transactions"] / r["wall_s"]
    text = (f"{case:10s} {tps:6.1f} transactions/s = {tps / THEORETICAL_TPS:.3f} of the line's {THEORETICAL_TPS:.1f}; "
            f"polling thread CPU {1000 * r['thread_cpu_s'] / max(r['transactions'], 1):.3f} ms/transaction, "
            f"{r['switches'] / max(r['transactions'], 1):.1f} sleeps/transaction; "
            f"peak RSS {r['peak_rss_mb']:.1f} MB")
    if "buffer_rows" in r:
        seconds_total = r["wall_s"]
        text += (f"\n{'':10s} readings: {r['readings_polled']} polled, {r['buffer_rows']} rows in the buffer "
                 f"({r['distinct_rows']} distinct), {r['buffer_rows'] / seconds_total:.1f} readings/s over the "
                 f"measured window ({r['readings_polled'] / max(r['total_transactions'], 1):.2f} readings per "
                 f"transaction), whole child process CPU {1000 * r['process_cpu_s'] / r['total_transactions']:.3f} "
                 f"ms/transaction, {r['errors']} device errors")
    else:
        text += f"; {r['errors']} error replies"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--probes", type=int, default=4)
    parser.add_argument("--child", choices=["baseline", "bus", "co2_only"])
    parser.add_argument("--port")
    args = parser.parse_args()
    if args.child:
        if args.child == "baseline":
            result = child_baseline(args.port, args.probes, args.seconds)
        else:
            result = child_bus(args.port, args.probes, args.seconds, args.child)
        print(json.dumps(result))
        return
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()} {platform.processor() or ''} "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}; {args.probes} GMP252 at 19200 8N2 through "
          f"{RS485_LINE.name}, {args.seconds:.0f} s per case")
    with tempfile.TemporaryDirectory() as tmp:
        for case in ("baseline", "bus", "co2_only"):
            print(describe(case, run_case(case, args.probes, args.seconds, Path(tmp))), flush=True)


if __name__ == "__main__":
    main()
