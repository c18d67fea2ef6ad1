"""Two 20 Hz streams read once a second: one thread per stream (as the daemon reads) against one thread for both.

What one thread for both EC streams would save, before anyone builds it (issue 13, "Edge efficiency"): the daemon's
stream runners each sleep until their next read (`streams.read_interval_s`, 1 s), then take what arrived without
waiting (`recv(MSG_DONTWAIT)`) and split it into records. One thread for both would sleep once a second and read
both sockets; the records, their parsing and archiving would be the same. So this bench reads a Gill WindMaster and
a Campbell CSAT3B simulator (TCP, `--frequency` Hz) both ways, nothing but the reads and the split, each way in a
child process of its own, both at the same time on the same streams (same load), for `--seconds`, and prints the
CPU of each and the difference extrapolated to a station-hour.

    .venv/bin/python bench/stream_threads.py [--seconds 120]

No assertion is made; the figures go to docs/performance.md with the date and machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path


def _connect(endpoint: str) -> socket.socket:
    host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
    return socket.create_connection((host, int(port)))


def _take(sock: socket.socket, rest: bytes) -> tuple[int, bytes]:
    """Records (CR-terminated lines) of everything that arrived, without waiting; the unfinished tail."""
    pieces = [rest]
    while True:
        try:
            data = sock.recv(65536, socket.MSG_DONTWAIT)
        except BlockingIOError:
            break
        if not data:
            raise ConnectionError("the simulator closed the stream")
        pieces.append(data)
        if len(data) < 65536:
            break
    parts = b"".join(pieces).split(b"\r")
    return len(parts) - 1, parts[-1]


def child(mode: str, endpoints: list[str], warmup_s: float, seconds: float) -> None:
    socks = [_connect(e) for e in endpoints]
    counts = [0] * len(socks)
    end = time.monotonic() + warmup_s + seconds
    marks: dict[str, float] = {}

    def reader(indices: list[int]) -> None:
        rests = [b""] * len(socks)
        due = time.monotonic() + 1.0
        while due < end:
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # as the runner waits (runner.py `_pump`)
            due += 1.0
            for i in indices:
                n, rests[i] = _take(socks[i], rests[i])
                counts[i] += n

    def start_window() -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        marks["cpu"] = usage.ru_utime + usage.ru_stime
        marks["records"] = sum(counts)

    threading.Timer(warmup_s, start_window).start()
    groups = [[i] for i in range(len(socks))] if mode == "threads" else [list(range(len(socks)))]
    threads = [threading.Thread(target=reader, args=(g,)) for g in groups]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"mode": mode, "cpu_s": usage.ru_utime + usage.ru_stime - marks["cpu"],
                      "records": sum(counts) - marks["records"], "threads": len(threads),
                      "wakeups": usage.ru_nvcsw}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--warmup-s", type=float, default=5.0)
    parser.add_argument("--frequency", type=float, default=20.0)
    args = parser.parse_args()
    from drivers.csat3b.simulator import CSAT3BSimulator
    from drivers.windmaster.simulator import WindMasterSimulator

    sims = [WindMasterSimulator("tcp://127.0.0.1:0", frequency_hz=args.frequency, seed=1),
            CSAT3BSimulator("tcp://127.0.0.1:0", frequency_hz=args.frequency, seed=1)]
    for sim in sims:
        sim.start()
    try:
        endpoints = json.dumps([s.tcp_endpoint for s in sims])
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        children = [subprocess.Popen([sys.executable, __file__, "--child", mode, endpoints, str(args.warmup_s),
                                      str(args.seconds)], stdout=subprocess.PIPE, text=True, env=env)
                    for mode in ("threads", "one")]
        results = {}
        for proc in children:
            out = json.loads(proc.communicate(timeout=args.warmup_s + args.seconds + 60)[0].strip().splitlines()[-1])
            results[out["mode"]] = out
    finally:
        for sim in sims:
            sim.stop()
    hours = args.seconds / 3600
    print(f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC; {platform.machine()} {os.cpu_count()} cores, load "
          f"average {os.getloadavg()[0]:.1f}, Python {platform.python_version()}; WindMaster and CSAT3B simulators at "
          f"{args.frequency:g} Hz over TCP, read once a second, {args.seconds:g} s")
    for mode, label in (("threads", "one thread per stream (the daemon's way)"), ("one", "one thread for both")):
        r = results[mode]
        print(f"{label}: {r['cpu_s']:.3f} CPU-s = {r['cpu_s'] / hours:.2f} CPU-s per station-hour "
              f"({r['records']} records, {r['threads']} reading thread(s))")
    saved = (results["threads"]["cpu_s"] - results["one"]["cpu_s"]) / hours
    print(f"one thread for both saves {saved:.2f} CPU-s per station-hour "
          f"({results['one']['cpu_s'] / max(results['threads']['cpu_s'], 1e-9):.2f} x)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], json.loads(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]))
    else:
        main()
