"""CPU one start of the `sinkwatch` command (and of an import of the central API) costs, against a bare interpreter
measured in the same run.

Every command a technician types on a station, and every interpreter the test suite, the demo and the central
service's worker pool start, pays this before it does any work. Measured as user + system CPU of the child process
(wait4's rusage), not wall time, so a busy machine inflates it less:

    baseline         python -c pass
    version          sinkwatch version
    help             sinkwatch --help
    station validate sinkwatch station validate -c station.yaml (a one-sensor config, as in tests/test_packaging.py)
    central api      python -c "import gateway.central.api"

--tree DIR runs the same commands a second time, interleaved, against the sources in DIR (another checkout, e.g. a
worktree of the commit before a change, its bytecode compiled: `python -m compileall -q -j 0 DIR/gateway DIR/drivers
DIR/firmware_bridge`) by putting DIR first on PYTHONPATH; the installed packages stay the same.

Run:

    .venv/bin/python bench/cli_start.py [--repeat 7] [--tree BEFORE_TREE]

Prints the median and the lowest CPU seconds of each command and the median less the baseline's. No assertion: the
figures go to docs/performance.md with date, machine and load.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

STATION_YAML = """\
site: hainich
station: tower01
mqtt: {host: 127.0.0.1, port: 1883}
buffer: {path: buffer.sqlite}
sensors:
  - {name: soil_co2, driver: gmp252, port: /dev/ttyUSB0, address: 240, interval_s: 10}
"""


def commands(sinkwatch: Path) -> dict[str, list[str]]:
    return {
        "baseline (python -c pass)": [sys.executable, "-c", "pass"],
        "sinkwatch version": [str(sinkwatch), "version"],
        "sinkwatch --help": [str(sinkwatch), "--help"],
        "sinkwatch station validate": [str(sinkwatch), "station", "validate", "-c", "station.yaml"],
        "import gateway.central.api": [sys.executable, "-c", "import gateway.central.api"],
    }


def cpu_of(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    """User + system CPU seconds of one run of argv (the child alone: wait4 reports its own rusage)."""
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    stderr = process.stderr.read().decode() if process.stderr else ""
    if process.stderr:
        process.stderr.close()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({process.returncode}): {stderr}")
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7, help="runs of each command (default 7)")
    parser.add_argument("--tree", type=Path, help="also run the commands against the sources in this directory")
    args = parser.parse_args()
    sinkwatch = Path(sys.executable).with_name("sinkwatch")
    trees: dict[str, dict[str, str]] = {"this tree": dict(os.environ)}
    if args.tree is not None:
        trees[f"--tree {args.tree}"] = {**os.environ, "PYTHONPATH": str(args.tree.resolve())}
    runs: dict[tuple[str, str], list[float]] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cli-start-") as tmp:
        cwd = Path(tmp)
        (cwd / "station.yaml").write_text(STATION_YAML, encoding="utf-8")
        for _ in range(args.repeat):  # interleaved: a change of load meanwhile falls on every command alike
            for tree, env in trees.items():
                for name, argv in commands(sinkwatch).items():
                    runs.setdefault((tree, name), []).append(cpu_of(argv, cwd, env))
    load = os.getloadavg()
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}, PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}, "
          f"{args.repeat} runs each, {time.monotonic() - started:.0f} s, load {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f} at the end (own CPU {resource.getrusage(resource.RUSAGE_SELF).ru_utime:.1f} s)")
    for tree in trees:
        print(f"\n{tree}: CPU s (user + sys) per start   median   lowest   median - baseline")
        baseline = statistics.median(runs[(tree, "baseline (python -c pass)")])
        for name in commands(sinkwatch):
            values = runs[(tree, name)]
            median = statistics.median(values)
            print(f"  {name:<30} {median:7.3f}  {min(values):7.3f}  {median - baseline:7.3f}")


if __name__ == "__main__":
    main()
