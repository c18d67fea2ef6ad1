"""A station-hour of the edge daemon: its CPU seconds and peak RSS, every poll delivered, against a bare reader.

Station: a Gill WindMaster and a Campbell CSAT3B simulator streaming at 20 Hz (TCP, as behind serial-to-Ethernet
converters, so a baseline reader can take the very same streams as a second client), plus `--probes` GMP252
simulators polled every 10 s (their defaults: CO2, probe temperature and status, 3 Modbus transactions per poll), all
on one RS-485 line at 19200 8N2 through `bench/paced_rs485_line.py`, which gives every character its wire time (so
the line's capacity is a real line's), owned by the daemon's SerialBus; or, with `--modbus tcp`, each on its own
Modbus TCP endpoint. The daemon runs in a child process (StationDaemon: streams with raw archive and 60 s summaries,
disk buffer, delivery over a private Mosquitto, health telemetry, every item signed unless `--unsigned`), and a
`ReceiptEcho` (gateway/testing/receipts.py) stands in for the central service, so items are confirmed and deleted
as in the field instead of being resent for want of a receipt.

How a station-hour is measured (`--speedup 1`, the default): in real time, over `--window-s` seconds after a
warm-up (start-up, first connections, the first summary interval are not counted), extrapolated by 3600/window.
Every rate is the real one, so every poll the schedule asks for fits on the line and is made; the bench prints
polls due against polls made and readings polled against readings in the buffer or confirmed. `--speedup S` > 1
runs the streams S times faster and polls every 10/S s, as the first version of this bench did; the line then
carries at most its capacity (72.7 two-register transactions/s), so from about S = 6 on not every poll is made —
the bench says how many were.

Baseline, same run, another child process: a bare loop that connects to the same two streams and splits lines
(`socket.recv` + `bytes.split`), i.e. the cost of receiving the bytes at all; and a third child, the same bare
reader with one thread per stream in a blocking `recv` (as the daemon's stream runners read), which shows what the
threads themselves cost when both instruments' records arrive at the same instant.

    .venv/bin/python bench/station_hour.py [--window-s 600] [--probes 12] [--unsigned] [--speedup 1]

No assertion is made; the figures go to docs/performance.md with the date and machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SIM_HOUR_S = 3600.0
FIRST_ADDRESS = 230  # 12 probes: 230..241


def peak_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def thread_cpu() -> dict[str, float]:
    """CPU seconds of each live thread of this process by its Python name, from the kernel's per-thread CPU clock
    (Linux: clock id ((~tid) << 3) | 6, CPUCLOCK_SCHED of that thread), to the nanosecond; /proc's utime and stime
    count 10-ms ticks, ±0.2 CPU-s per station-hour per thread in a 180-s window."""
    out: dict[str, float] = {}
    for thread in threading.enumerate():
        if thread.native_id is None:
            continue
        try:
            cpu = time.clock_gettime(((~thread.native_id) << 3) | 6)
        except OSError:  # ended meanwhile
            continue
        name = thread.name.split("(")[0].rstrip("-0123456789") or thread.name
        out[name] = out.get(name, 0.0) + cpu
    return out


def thread_wakeups() -> dict[str, int]:
    """Voluntary context switches of each live thread by its Python name (Linux /proc): how often it went to sleep
    and was woken, which is most of what an idle-ish thread costs."""
    out: dict[str, int] = {}
    for thread in threading.enumerate():
        try:
            status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
        except OSError:
            continue
        switches = next(int(line.split()[1]) for line in status.splitlines()
                        if line.startswith("voluntary_ctxt_switches:"))
        name = thread.name.split("(")[0].rstrip("-0123456789") or thread.name
        out[name] = out.get(name, 0) + switches
    return out


def child_daemon(config_path: str, warmup_s: float, window_s: float) -> None:
    import faulthandler
    import signal

    from gateway.edge.config import load_station_config
    from gateway.edge.daemon import StationDaemon

    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` prints every thread's stack if it ever hangs
    config = load_station_config(config_path)
    daemon = StationDaemon(config)
    stop = threading.Event()
    marks: dict[str, Any] = {}

    def counts() -> dict[str, Any]:
        return {"cpu_s": cpu_s(), "polls": sum(r.health.polls for r in daemon.runners),
                "polls_ok": sum(r.health.polls - sum(r.health.errors.values()) for r in daemon.runners),
                "readings": sum(r.health.readings for r in daemon.runners),
                "frames": sum(s["good"] for s in daemon.streams.health())}

    def start_window() -> None:
        marks["start"] = counts()
        marks["threads"] = thread_cpu()
        marks["wakeups"] = thread_wakeups()
        threading.Timer(window_s, finish).start()

    def finish() -> None:
        # measured when the window ends, before shutdown (draining the buffer is not station-hour work)
        end = counts()
        first = marks["start"]
        threads = {name: round(cpu - marks["threads"].get(name, 0.0), 4) for name, cpu in thread_cpu().items()}
        wakeups = {name: n - marks["wakeups"].get(name, 0) for name, n in thread_wakeups().items()}
        health: dict[str, Any] = {
            "streams": [{k: s[k] for k in ("name", "state", "good", "bad", "frames", "summaries", "archive_files")}
                        for s in daemon.streams.health()],
            "window": {k: end[k] - first[k] for k in end},
            "threads_cpu_s": dict(sorted(threads.items(), key=lambda kv: -kv[1])),
            "threads_wakeups": dict(sorted(wakeups.items(), key=lambda kv: -kv[1])),
            "polls_total": end["polls"], "readings_total": end["readings"],
            "errors": {r.config.name: r.health.errors for r in daemon.runners if r.health.errors},
            "missed_slots": sum(r.health.missed_slots for r in daemon.runners),
            "broker_connected": daemon.delivery.connected,
            "delivery": {"signing": daemon.signer.health() if daemon.signer is not None else None,
                         "readings_confirmed": daemon.delivery.counters("readings").confirmed},
        }
        print(json.dumps({"cpu_s": end["cpu_s"] - first["cpu_s"], "cpu_total_s": end["cpu_s"],
                          "peak_rss_mb": peak_rss_mb(), "health": health}), flush=True)
        stop.set()
        # if shutdown hangs, still end the child
        threading.Timer(30, lambda: (print("shutdown did not finish in 30 s", file=sys.stderr, flush=True),
                                     os._exit(3))).start()

    threading.Timer(warmup_s, start_window).start()
    daemon.run(stop, drain_timeout_s=5)
    os._exit(0)


def child_baseline(endpoints: list[str], warmup_s: float, seconds: float) -> None:
    import selectors

    socks = []
    for endpoint in endpoints:
        host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
        sock = socket.create_connection((host, int(port)))
        sock.settimeout(0.25)
        socks.append(sock)
    selector = selectors.DefaultSelector()
    for i, sock in enumerate(socks):
        selector.register(sock, selectors.EVENT_READ, i)
    lines = 0
    rests = [b""] * len(socks)
    started = time.monotonic()
    cpu0: float | None = None
    while time.monotonic() < started + warmup_s + seconds:
        if cpu0 is None and time.monotonic() >= started + warmup_s:
            cpu0, lines = cpu_s(), 0
        for key, _ in selector.select(timeout=0.25):
            i = key.data
            data = socks[i].recv(4096)
            parts = (rests[i] + data).split(b"\r")
            rests[i] = parts.pop()
            lines += len(parts)
    print(json.dumps({"cpu_s": cpu_s() - (cpu0 or 0.0), "lines": lines, "peak_rss_mb": peak_rss_mb()}), flush=True)


def child_baseline_threads(endpoints: list[str], warmup_s: float, seconds: float) -> None:
    """The bare reader with one thread per stream, each in a blocking `recv` with the kernel's receive timeout (as
    the daemon's stream runners read): against the one-thread reader it shows what the threads themselves cost
    when two instruments' records arrive together (the interpreter lock handed between them)."""
    import struct

    lines = [0] * len(endpoints)
    started = time.monotonic()
    end = started + warmup_s + seconds
    marks: dict[str, float] = {}

    def read(i: int, endpoint: str) -> None:
        host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
        sock = socket.create_connection((host, int(port)))
        sock.settimeout(None)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 250_000))
        rest = b""
        counted = False
        while time.monotonic() < end:
            if not counted and time.monotonic() >= started + warmup_s:
                counted, lines[i] = True, 0
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                continue
            parts = (rest + data).split(b"\r")
            rest = parts.pop()
            lines[i] += len(parts)

    threads = [threading.Thread(target=read, args=(i, e), daemon=True) for i, e in enumerate(endpoints)]
    for thread in threads:
        thread.start()
    time.sleep(warmup_s)
    marks["cpu0"] = cpu_s()
    for thread in threads:
        thread.join()
    print(json.dumps({"cpu_s": cpu_s() - marks["cpu0"], "lines": sum(lines), "peak_rss_mb": peak_rss_mb()}),
          flush=True)


def paced_line(tmp: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    """bench/paced_rs485_line.py at 19200 baud, 11 bits per character (8N2): (process, simulator end, daemon end)."""
    link_a, link_b, stats = tmp / "line_a", tmp / "line_b", tmp / "line_stats.json"
    process = subprocess.Popen([sys.executable, str(Path(__file__).resolve().parent / "paced_rs485_line.py"),
                                "19200", str(link_a), str(link_b), str(stats), "11"])
    deadline = time.monotonic() + 10
    while not (link_a.exists() and link_b.exists()):
        if time.monotonic() > deadline:
            raise RuntimeError("paced_rs485_line.py did not create its links")
        time.sleep(0.01)
    return process, str(link_a), str(link_b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--window-s", type=float, default=600.0, help="measured seconds (after the warm-up)")
    parser.add_argument("--warmup-s", type=float, default=75.0)
    parser.add_argument("--speedup", type=float, default=1.0)
    parser.add_argument("--probes", type=int, default=12)
    parser.add_argument("--frequency", type=float, default=20.0)
    parser.add_argument("--unsigned", action="store_true", help="the daemon signs nothing (default: every item)")
    parser.add_argument("--modbus", choices=("rtu", "tcp"), default="rtu",
                        help="probes on one paced RS-485 line (SerialBus) or each on Modbus TCP")
    args = parser.parse_args()
    from drivers.csat3b.simulator import CSAT3BSimulator
    from drivers.gmp252.simulator import GMP252Simulator, profile_simulators
    from drivers.windmaster.simulator import WindMasterSimulator
    from gateway.simulation.rtu_line import RtuLineSimulator
    from gateway.testing.receipts import ReceiptEcho
    from gateway.testing.services import running_mosquitto
    from gateway.trust.keys import generate_key

    sim_seconds = args.window_s * args.speedup  # simulated seconds the window stands for
    hours = sim_seconds / SIM_HOUR_S
    interval_s = 10.0 / args.speedup
    with tempfile.TemporaryDirectory() as tmp, running_mosquitto(Path(tmp) / "mosquitto") as broker:
        sims_stream = [
            WindMasterSimulator("tcp://127.0.0.1:0", frequency_hz=args.frequency, speedup=args.speedup, seed=1),
            CSAT3BSimulator("tcp://127.0.0.1:0", frequency_hz=args.frequency, speedup=args.speedup, seed=1),
        ]
        stack = contextlib.ExitStack()
        probes: list[GMP252Simulator] = []
        line_port = ""
        if args.modbus == "tcp":
            probes = [GMP252Simulator("tcp://127.0.0.1:0", address=240, tcp=True, seed=i) for i in range(args.probes)]
            for probe in probes:
                stack.enter_context(probe)
        elif args.probes:
            line, sim_end, line_port = paced_line(Path(tmp))
            stack.callback(line.wait)
            stack.callback(line.terminate)
            depths = {FIRST_ADDRESS + i: 0.1 * (i + 1) for i in range(args.probes)}
            stack.enter_context(RtuLineSimulator(sim_end, list(profile_simulators(depths)), baudrate=19200,
                                                 stopbits=2, keep_events=False))
        for sim in sims_stream:
            sim.start()
        sensors: list[dict[str, Any]] = [
            {"name": "sonic", "driver": "windmaster", "port": sims_stream[0].tcp_endpoint,
             "frequency_hz": args.frequency, "height_m": 25.0},
            {"name": "csat", "driver": "csat3b", "port": sims_stream[1].tcp_endpoint,
             "frequency_hz": args.frequency, "height_m": 25.0},
        ]
        if args.modbus == "tcp":
            sensors += [{"name": f"soil_co2_{i}", "driver": "gmp252", "port": p.tcp_endpoint, "address": 240,
                         "interval_s": interval_s} for i, p in enumerate(probes)]
        else:
            sensors += [{"name": f"soil_co2_{i}", "driver": "gmp252", "port": line_port, "address": FIRST_ADDRESS + i,
                         "baudrate": 19200, "stopbits": 2, "interval_s": interval_s}
                        for i in range(args.probes)]
        import yaml

        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        key_path = Path(tmp) / "station.key"
        generate_key(key_path)
        echo = ReceiptEcho(broker.host, broker.port, ("readings", "fluxes", "raw", "health"),
                           client_id="bench-central")
        config_path = Path(tmp) / "station.yaml"
        config_path.write_text(yaml.safe_dump({
            "site": "bench", "station": "st01",
            **({} if args.unsigned else {"signing_key": str(key_path)}),
            "mqtt": {"host": broker.host, "port": broker.port},
            "buffer": {"path": str(Path(tmp) / "buffer.sqlite")},
            "streams": {"archive_dir": str(Path(tmp) / "raw"), "summary_interval_s": 60, "uplink": "summaries"},
            "sensors": sensors,
        }))
        daemon = subprocess.Popen([sys.executable, __file__, "--child-daemon", str(config_path),
                                   str(args.warmup_s), str(args.window_s)], stdout=subprocess.PIPE, text=True, env=env)
        baseline = subprocess.Popen(
            [sys.executable, __file__, "--child-baseline", json.dumps([s.tcp_endpoint for s in sims_stream]),
             str(args.warmup_s), str(args.window_s)], stdout=subprocess.PIPE, text=True, env=env)
        baseline_threads = subprocess.Popen(
            [sys.executable, __file__, "--child-baseline-threads", json.dumps([s.tcp_endpoint for s in sims_stream]),
             str(args.warmup_s), str(args.window_s)], stdout=subprocess.PIPE, text=True, env=env)
        timeout = args.warmup_s + args.window_s + 180
        ours = json.loads(daemon.communicate(timeout=timeout)[0].strip().splitlines()[0])
        ours["returncode"] = daemon.returncode
        base = json.loads(baseline.communicate(timeout=timeout)[0].strip().splitlines()[-1])
        threaded = json.loads(baseline_threads.communicate(timeout=timeout)[0].strip().splitlines()[-1])
        echo.close()
        for sim in sims_stream:
            sim.stop()
        stack.close()
        with sqlite3.connect(Path(tmp) / "buffer.sqlite") as db:
            unconfirmed = db.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
    window = ours["health"]["window"]
    due = args.probes * args.window_s / interval_s
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; machine: {platform.machine()} {platform.processor() or ''} "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, Python {platform.python_version()}")
    print(f"window {args.window_s:.0f} s (speedup {args.speedup:g}: {hours:.3f} station-hours) after "
          f"{args.warmup_s:.0f} s warm-up; {'unsigned' if args.unsigned else 'every item signed'}; "
          f"{args.probes} GMP252 on {'the paced RS-485 line' if args.modbus == 'rtu' else 'Modbus TCP'} every "
          f"{interval_s:g} s")
    print(f"edge daemon: {ours['cpu_s']:.2f} CPU-s in the window = {ours['cpu_s'] / hours:.1f} CPU-s per "
          f"station-hour; peak RSS {ours['peak_rss_mb']:.1f} MB")
    print(f"  polls in the window: {window['polls']} made of {due:.0f} due ({window['polls_ok']} answered), "
          f"{window['readings']} readings; stream records {window['frames']} of "
          f"{2 * args.frequency * sim_seconds:.0f} due; whole run: {ours['health']['polls_total']} polls, "
          f"{ours['health']['readings_total']} readings polled, {ours['health']['delivery']['readings_confirmed']} "
          f"readings confirmed by receipt (summaries included), {unconfirmed} left in the buffer at the end; "
          f"missed slots {ours['health']['missed_slots']}, errors {json.dumps(ours['health']['errors'])}")
    print(f"  CPU-s in the window by thread: {json.dumps(ours['health']['threads_cpu_s'])}")
    print(f"  CPU-s per station-hour by thread: "
          f"{json.dumps({k: round(v / hours, 2) for k, v in ours['health']['threads_cpu_s'].items()})}")
    print(f"  wake-ups (voluntary context switches) per station-hour by thread: "
          f"{json.dumps({k: round(v / hours) for k, v in ours['health']['threads_wakeups'].items()})}")
    print(f"  health: {json.dumps(ours['health']['streams'])}; signing: "
          f"{json.dumps(ours['health']['delivery']['signing'])}")
    if ours["returncode"]:
        print(f"  the daemon did not shut down cleanly (exit {ours['returncode']}); see its stderr")
    print(f"baseline bare reader (same streams, same window): {base['cpu_s']:.2f} CPU-s = "
          f"{base['cpu_s'] / hours:.1f} CPU-s per station-hour for {base['lines']} lines, peak RSS "
          f"{base['peak_rss_mb']:.1f} MB; ours / baseline = {ours['cpu_s'] / max(base['cpu_s'], 1e-9):.2f}")
    print(f"bare reader with one thread per stream (blocking recv, as the daemon reads): {threaded['cpu_s']:.2f} "
          f"CPU-s = {threaded['cpu_s'] / hours:.1f} CPU-s per station-hour for {threaded['lines']} lines; "
          f"threads / one thread = {threaded['cpu_s'] / max(base['cpu_s'], 1e-9):.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child-daemon":
        child_daemon(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--child-baseline-threads":
        child_baseline_threads(json.loads(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--child-baseline":
        child_baseline(json.loads(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]))
    else:
        main()
