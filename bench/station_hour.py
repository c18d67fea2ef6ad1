"""One accelerated station-hour of the edge daemon: its CPU seconds and peak RSS, against a bare reader baseline.

Station: a Gill WindMaster and a Campbell CSAT3B simulator streaming at 20 Hz (TCP, as behind serial-to-Ethernet
converters, so a baseline reader can take the very same streams as a second client), plus `--probes` GMP252
simulators polled every 10 s, all on one RS-485 line (a socat PTY pair served by gateway/simulation/rtu_line.py, owned
by the daemon's SerialBus; no baud-rate pacing) or, with `--modbus tcp`, each on its own Modbus TCP endpoint.
Time is accelerated `--speedup` times: the streams send at 20·S Hz
(simulated time advances 1/20 s per frame) and the probes are polled every 10/S s, so one simulated hour of work
is done in 3600/S seconds. The edge daemon runs in a child process (StationDaemon with a private Mosquitto,
buffer on disk, raw archive on, summaries on), so its CPU (`getrusage`) and peak RSS (`VmHWM`) are its own.

Baseline, same run, another child process: a bare loop that connects to the same two streams and splits lines
(`socket.recv` + `bytes.split`), i.e. the cost of receiving the bytes at all.

    .venv/bin/python bench/station_hour.py [--speedup 30] [--probes 12]

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
import subprocess
import sys
import tempfile
import threading
import time
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


def child_daemon(config_path: str, seconds: float) -> None:
    import faulthandler
    import signal

    from gateway.edge.config import load_station_config
    from gateway.edge.daemon import StationDaemon

    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` prints every thread's stack if it ever hangs
    config = load_station_config(config_path)
    daemon = StationDaemon(config)
    stop = threading.Event()
    cpu0 = cpu_s()

    def finish() -> None:
        # measured when the simulated hour ends, before shutdown (draining the buffer is not station-hour work)
        health: dict[str, Any] = {
            "streams": [{k: s[k] for k in ("name", "state", "good", "bad", "frames", "summaries", "archive_files")}
                        for s in daemon.streams.health()],
            "polls": sum(r.health.polls for r in daemon.runners),
            "readings": sum(r.health.readings for r in daemon.runners),
            "broker_connected": daemon.delivery.connected,
            "delivery": {"signing": daemon.signer.health() if daemon.signer is not None else None,
                         "readings_confirmed": daemon.delivery.counters("readings").confirmed},
        }
        print(json.dumps({"cpu_s": cpu_s() - cpu0, "cpu_total_s": cpu_s(), "peak_rss_mb": peak_rss_mb(),
                          "health": health}), flush=True)
        stop.set()
        # if shutdown hangs, still end the child
        threading.Timer(30, lambda: (print("shutdown did not finish in 30 s", file=sys.stderr, flush=True),
                                     os._exit(3))).start()

    threading.Timer(seconds, finish).start()
    daemon.run(stop, drain_timeout_s=5)
    os._exit(0)


def child_baseline(endpoints: list[str], seconds: float) -> None:
    socks = []
    for endpoint in endpoints:
        host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
        sock = socket.create_connection((host, int(port)))
        sock.settimeout(0.25)
        socks.append(sock)
    cpu0 = cpu_s()
    lines = 0
    rests = [b""] * len(socks)
    deadline = time.monotonic() + seconds
    import selectors

    selector = selectors.DefaultSelector()
    for i, sock in enumerate(socks):
        selector.register(sock, selectors.EVENT_READ, i)
    while time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.25):
            i = key.data
            data = socks[i].recv(4096)
            parts = (rests[i] + data).split(b"\r")
            rests[i] = parts.pop()
            lines += len(parts)
    print(json.dumps({"cpu_s": cpu_s() - cpu0, "lines": lines, "peak_rss_mb": peak_rss_mb()}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--speedup", type=float, default=30.0)
    parser.add_argument("--probes", type=int, default=12)
    parser.add_argument("--frequency", type=float, default=20.0)
    parser.add_argument("--modbus", choices=("rtu", "tcp"), default="rtu",
                        help="probes on one RS-485 line (socat PTY, SerialBus) or each on Modbus TCP")
    args = parser.parse_args()
    from drivers.csat3b.simulator import CSAT3BSimulator
    from drivers.gmp252.simulator import GMP252Simulator, profile_simulators
    from drivers.windmaster.simulator import WindMasterSimulator
    from gateway.simulation.rtu_line import RtuLineSimulator
    from gateway.testing.serial_pty import socat_pty_pair
    from gateway.testing.services import running_mosquitto

    seconds = SIM_HOUR_S / args.speedup
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
            # the field layout: every probe on one RS-485 line (19200 8N2), owned by the daemon's SerialBus
            sim_end, line_port = stack.enter_context(socat_pty_pair(Path(tmp) / "line"))
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
                         "interval_s": 10.0 / args.speedup} for i, p in enumerate(probes)]
        else:
            sensors += [{"name": f"soil_co2_{i}", "driver": "gmp252", "port": line_port, "address": FIRST_ADDRESS + i,
                         "baudrate": 19200, "stopbits": 2, "interval_s": 10.0 / args.speedup}
                        for i in range(args.probes)]
        import yaml

        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        from gateway.trust.keys import generate_key

        key_path = Path(tmp) / "station.key"
        generate_key(key_path)
        runs: dict[str, dict[str, Any]] = {}
        # unsigned, then signed: the same station on the same simulators, one after the other (2 cores)
        for name, signing in (("unsigned", None), ("signed", key_path)):
            config_path = Path(tmp) / f"station-{name}.yaml"
            config_path.write_text(yaml.safe_dump({
                "site": "bench", "station": "st01",
                **({"signing_key": str(signing)} if signing is not None else {}),
                "mqtt": {"host": broker.host, "port": broker.port},
                "buffer": {"path": str(Path(tmp) / f"buffer-{name}.sqlite")},
                "streams": {"archive_dir": str(Path(tmp) / f"raw-{name}"), "summary_interval_s": 60,
                            "uplink": "summaries"},
                "sensors": sensors,
            }))
            daemon = subprocess.Popen([sys.executable, __file__, "--child-daemon", str(config_path), str(seconds)],
                                      stdout=subprocess.PIPE, text=True, env=env)
            baseline = subprocess.Popen(
                [sys.executable, __file__, "--child-baseline", json.dumps([s.tcp_endpoint for s in sims_stream]),
                 str(seconds)], stdout=subprocess.PIPE, text=True, env=env)
            runs[name] = json.loads(daemon.communicate(timeout=seconds + 120)[0].strip().splitlines()[0])
            runs[name]["returncode"] = daemon.returncode
            runs[name]["baseline"] = json.loads(baseline.communicate(timeout=seconds + 120)[0].strip()
                                                .splitlines()[-1])
        ours = runs["unsigned"]
        base = ours["baseline"]
        for sim in sims_stream:
            sim.stop()
        stack.close()
        served = [sim.frames_written for sim in sims_stream]
    frames_per_hour = 2 * args.frequency * SIM_HOUR_S
    print(f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    print(f"simulated hour in {seconds:.0f} s (speedup {args.speedup:g}); frames served {served} "
          f"(expected ~{frames_per_hour / 2:.0f} each)")
    print(f"edge daemon: {ours['cpu_s']:.1f} CPU-s per station-hour (+{ours['cpu_total_s'] - ours['cpu_s']:.1f} s "
          f"start-up), peak RSS {ours['peak_rss_mb']:.1f} MB")
    print(f"  health: {json.dumps(ours['health'])}")
    if ours["returncode"]:
        print(f"  the daemon did not shut down cleanly (exit {ours['returncode']}); see its stderr")
    print(f"baseline bare reader: {base['cpu_s']:.1f} CPU-s for {base['lines']} lines, peak RSS "
          f"{base['peak_rss_mb']:.1f} MB")
    signed = runs["signed"]
    delivery = signed["health"].get("delivery", {}) if isinstance(signed["health"], dict) else {}
    print(f"edge daemon, signing every item (Ed25519, chain links in the buffer file): {signed['cpu_s']:.1f} CPU-s "
          f"per station-hour = {100 * (signed['cpu_s'] / ours['cpu_s'] - 1):+.1f} % against the unsigned run; peak "
          f"RSS {signed['peak_rss_mb']:.1f} MB; signing: {json.dumps(delivery.get('signing'))}")
    if signed["returncode"]:
        print(f"  the signed daemon did not shut down cleanly (exit {signed['returncode']})")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child-daemon":
        child_daemon(sys.argv[2], float(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--child-baseline":
        child_baseline(json.loads(sys.argv[2]), float(sys.argv[3]))
    else:
        main()
