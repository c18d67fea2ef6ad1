"""Property-based fuzzing of every parser of outside input, at benchmark length.

The targets, their input strategies (valid, structure-aware mutations, random) and their declared errors are
`tests/fuzz/targets.py`, the same ones CI runs for a few hundred examples each. Here each target gets 100,000 inputs:
Hypothesis generates every `--mutants + 1`-th (generation only, no example database) and each generated input is
followed by `--mutants` byte-level mutants of it (`mutate_any`: flips, cuts, splices, nasty tokens), which costs a
fraction of Hypothesis' generation per input. An undeclared exception is recorded with where it was raised and the
run goes on, so one run lists every finding. Printed per target: inputs, inputs/s, accepted, each declared error
class with its count, and the undeclared exceptions (the goal: none).

    .venv/bin/python bench/fuzz.py [--examples 100000] [--only NAME ...] [--seed N]

No assertion is made: the figures go to docs/reliability.md with the date and the machine.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import random
import sys
import time
import traceback
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402

from tests.fuzz.targets import Target, build_targets  # noqa: E402


def where(exc: BaseException) -> str:
    """file:line of the innermost frame inside this repository (where the parser let it escape)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(str(REPO))
              and "/tests/fuzz/" not in f.filename]
    frame = frames[-1] if frames else traceback.extract_tb(exc.__traceback__)[-1]
    name = frame.filename
    if name.startswith(str(REPO)):
        name = str(Path(name).relative_to(REPO))
    return f"{name}:{frame.lineno}"


def run_target(target: Target, examples: int, mutants: int, run_seed: int) -> dict[str, Any]:
    outcomes: Counter[str] = Counter()
    undeclared: dict[str, tuple[int, str]] = {}
    rng = random.Random(run_seed)
    generated = -(-examples // (mutants + 1))
    drawn = [0]

    def one(value: object) -> None:
        try:
            outcome = target.exercise(value)
        except Exception as exc:  # the finding: count it, keep the first input, go on
            key = f"{type(exc).__name__} at {where(exc)}"
            count, first = undeclared.get(key, (0, repr(value)[:200]))
            undeclared[key] = (count + 1, first)
            outcomes["UNDECLARED"] += 1
            return
        outcomes[outcome or "accepted"] += 1

    @seed(run_seed)
    @settings(max_examples=generated, phases=[Phase.generate], deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(target.inputs)
    def feed(value: object) -> None:
        drawn[0] += 1
        one(value)
        for _ in range(mutants):
            if sum(outcomes.values()) >= examples:
                return
            one(target.mutant(value, rng))

    started = time.perf_counter()
    feed()
    elapsed = time.perf_counter() - started
    total = sum(outcomes.values())
    return {"name": target.name, "inputs": total, "generated": drawn[0], "seconds": elapsed,
            "rate": total / elapsed if elapsed else 0.0,
            "outcomes": outcomes, "undeclared": undeclared,
            "declared": ", ".join(t.__name__ for t in target.declared) or "(none)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=100_000, help="inputs per parser")
    parser.add_argument("--only", nargs="*", default=None, help="target names (default: all)")
    parser.add_argument("--mutants", type=int, default=9, help="byte-level mutants run after each generated input")
    parser.add_argument("--seed", type=int, default=20261204)
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # the ingestor logs every dead letter; the counts are what matter here
    targets = [t for t in build_targets() if args.only is None or t.name in args.only]
    import hypothesis

    print(f"sinkwatch parser fuzzing, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, Hypothesis {hypothesis.__version__}, "
          f"{args.examples} inputs per parser ({args.mutants} mutants after each generated one), "
          f"seed {args.seed}")
    print(f"{'parser':28} {'inputs':>8} {'generated':>9} {'inputs/s':>9} {'accepted':>9}  declared errors (count)  "
          "| undeclared")
    results = []
    for target in targets:
        result = run_target(target, args.examples, args.mutants, args.seed)
        results.append(result)
        outcomes: Counter[str] = result["outcomes"]
        refused = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()) if k not in ("accepted", "UNDECLARED"))
        print(f"{result['name']:28} {result['inputs']:>8} {result['generated']:>9} {result['rate']:>9.0f} "
              f"{outcomes['accepted']:>9}  "
              f"{refused or '-'}  | {outcomes['UNDECLARED']}", flush=True)
        for key, (count, first) in result["undeclared"].items():
            print(f"    UNDECLARED {count}x {key}; first input: {first}", flush=True)
    total = sum(r["inputs"] for r in results)
    bad = sum(r["outcomes"]["UNDECLARED"] for r in results)
    seconds = sum(r["seconds"] for r in results)
    print(f"total: {total} inputs over {len(results)} parsers in {seconds:.0f} s, {bad} undeclared exceptions")


if __name__ == "__main__":
    main()
