"""CPU per 20 Hz record of one stream runner by its read interval, against a bare reader of the same stream.

A CSAT3B simulator streams at `--frequency` Hz over TCP; a `StreamRunner` (parse, cadence stamps, summaries, raw
archive) reads it every `read_interval_s` for each interval asked for, and its thread's CPU time
(`time.thread_time`, nanosecond resolution) is divided by the records it took in. Baseline in the same run: a bare
reader of the same simulator that wakes for every record (`recv` + `split`, nothing else), which is what reading
costs when each record is its own wake-up. Also: the CPU of one wake-up of an otherwise idle thread, waiting on a
`threading.Event` with a timeout against `time.sleep` (`--wakes` of each, 50 ms apart).

    .venv/bin/python bench/stream_reads.py [--seconds 40] [--intervals 0.2 0.5 1.0]

No assertion is made; the figures go to docs/performance.md with the date and machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import tempfile
import threading
import time
from pathlib import Path


def bare_reader(endpoint: str, seconds: float) -> tuple[float, int]:
    """(thread CPU seconds, records) of a blocking recv per record, after a 2-s warm-up."""
    host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
    result: dict[str, float] = {}

    def run() -> None:
        with socket.create_connection((host, int(port))) as sock:
            sock.settimeout(0.5)
            rest, lines = b"", 0
            started = time.monotonic()
            cpu0: float | None = None
            while time.monotonic() < started + 2.0 + seconds:
                if cpu0 is None and time.monotonic() >= started + 2.0:
                    cpu0, lines = time.thread_time(), 0
                try:
                    data = sock.recv(4096)
                except TimeoutError:
                    continue
                parts = (rest + data).split(b"\r")
                rest = parts.pop()
                lines += len(parts)
            result["cpu"] = time.thread_time() - (cpu0 or 0.0)
            result["lines"] = lines

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return result["cpu"], int(result["lines"])


def wake_cost(kind: str, wakes: int) -> float:
    """Thread CPU seconds per wake-up of a thread that only waits 50 ms at a time."""
    event = threading.Event()
    result: list[float] = []

    def run() -> None:
        started = time.thread_time()
        for _ in range(wakes):
            if kind == "event":
                event.wait(0.05)
            else:
                time.sleep(0.05)
        result.append((time.thread_time() - started) / wakes)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return result[0]


def runner_reads(endpoint: str, frequency: float, interval: float, seconds: float) -> tuple[float, int, int]:
    """(thread CPU seconds, records, reads) of a StreamRunner reading every `interval`, after a 3-s warm-up."""
    from drivers.csat3b.driver import CSAT3BConfig, CSAT3BDriver
    from gateway.clock import ClockMapper
    from gateway.edge.streams.runner import StreamRunner, StreamSettings

    config = CSAT3BConfig.model_validate({"name": "csat", "port": endpoint, "frequency_hz": frequency})
    with tempfile.TemporaryDirectory() as tmp:
        runner = StreamRunner(CSAT3BDriver, config, station="st", site="bench",
                              settings=StreamSettings(archive_dir=Path(tmp) / "raw", read_interval_s=interval),
                              sink=lambda readings: None, clock=ClockMapper(synced=lambda: True))
        marks: list[tuple[float, int]] = []
        handle = runner._handle

        def counted(frames: list[bytes], mono: float) -> None:
            marks.append((time.thread_time(), runner.health.good))  # the runner's own thread: its CPU so far
            handle(frames, mono)

        runner._handle = counted  # type: ignore[method-assign]
        runner.start()
        time.sleep(3.0 + seconds)
        runner.stop()
    inside = [m for m in marks if m[1] >= marks[0][1] + 3.0 * frequency]
    (cpu0, good0), (cpu1, good1) = inside[0], inside[-1]
    return cpu1 - cpu0, good1 - good0, len(inside) - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--frequency", type=float, default=20.0)
    parser.add_argument("--intervals", type=float, nargs="+", default=[0.2, 0.5, 1.0])
    parser.add_argument("--wakes", type=int, default=300)
    args = parser.parse_args()
    from drivers.csat3b.simulator import CSAT3BSimulator

    print(f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC; {platform.machine()} {os.cpu_count()} cores, load "
          f"average {os.getloadavg()[0]:.1f}, Python {platform.python_version()}; CSAT3B simulator at "
          f"{args.frequency:g} Hz over TCP, {args.seconds:g} s per case")
    with CSAT3BSimulator("tcp://127.0.0.1:0", frequency_hz=args.frequency, seed=1) as sim:
        cpu, lines = bare_reader(sim.tcp_endpoint, args.seconds)
        base = cpu / max(lines, 1)
        print(f"baseline bare reader, a wake-up per record: {1e6 * base:.1f} us CPU per record ({lines} records)")
        for interval in args.intervals:
            cpu, records, reads = runner_reads(sim.tcp_endpoint, args.frequency, interval, args.seconds)
            per_record = cpu / max(records, 1)
            print(f"runner, a read every {interval:g} s: {1e6 * per_record:.1f} us CPU per record ({records} records, "
                  f"{reads} reads, {1e6 * cpu / max(reads, 1):.0f} us per read) = {per_record / base:.2f} x the "
                  f"bare reader; {per_record * 2 * args.frequency * 3600:.1f} CPU-s per station-hour for two "
                  f"streams")

    event, sleep = wake_cost("event", args.wakes), wake_cost("sleep", args.wakes)
    print(f"one wake-up of an idle thread: threading.Event.wait(timeout) {1e6 * event:.0f} us CPU, time.sleep "
          f"{1e6 * sleep:.0f} us ({event / sleep:.1f}x)")


if __name__ == "__main__":
    main()
