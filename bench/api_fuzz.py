"""Schemathesis against the served OpenAPI document, at benchmark length: every operation of the central API with
`--examples` generated requests each, on a SQLite store holding readings and flux records and, with `--influx`, on
a private InfluxDB started for the run (Debian's influxd, loopback only).

Checked for every response: not a server error (5xx) and conformance to the document (status code documented,
content type, body schema). Printed per store: requests, requests/s, responses by status code, failures by check.
The CI version (tests/central/test_api_schemathesis.py) runs the same with a few dozen examples per operation.

    .venv/bin/python bench/api_fuzz.py [--examples 2000] [--influx] [--seed N]

No assertion is made: the figures go to docs/reliability.md with the date and the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import schemathesis  # noqa: E402
from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from gateway.central.access import AccessControl  # noqa: E402
from gateway.central.api import create_app  # noqa: E402
from gateway.central.store import Store  # noqa: E402
from gateway.central.store.influx import InfluxStore  # noqa: E402
from gateway.central.store.sqlite import SqliteStore  # noqa: E402
from gateway.testing.central import recording_commands  # noqa: E402
from tests.central.test_api_schemathesis import seeded  # noqa: E402

# these tests are about data, not access: the API is built in development mode, explicitly
DEV = AccessControl.development()


def fuzz_operation(operation: Any, examples: int, run_seed: int, statuses: Counter[int], failures: Counter[str],
                   first_failure: dict[str, str]) -> int:
    """`examples` generated requests to one operation; returns how many were sent."""
    sent = 0

    @seed(run_seed)
    @settings(max_examples=examples, phases=[Phase.explicit, Phase.generate], deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def call(case: Any) -> None:
        nonlocal sent
        sent += 1
        try:
            response = case.call()
        except Exception as exc:  # the app raised: TestClient re-raises what would have been a 500
            key = f"{operation.label}: exception {type(exc).__name__}"
            failures[key] += 1
            first_failure.setdefault(key, f"{exc}"[:200])
            return
        statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except AssertionError as exc:  # schemathesis' failure group: count it and go on
            key = f"{operation.label}: {type(exc).__name__}"
            failures[key] += 1
            first_failure.setdefault(key, f"{exc}"[:300])

    call()
    return sent


def run(store: Store, examples: int, run_seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sinkwatch-api-fuzz-commands-") as commands_dir:
        commands, _ = recording_commands(Path(commands_dir))
        return _run(store, create_app(seeded(store), commands=commands, access=DEV), examples, run_seed)


def _run(store: Store, app: Any, examples: int, run_seed: int) -> dict[str, Any]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    statuses: Counter[int] = Counter()
    failures: Counter[str] = Counter()
    first_failure: dict[str, str] = {}
    requests = 0
    started = time.perf_counter()
    for result in schema.get_all_operations():
        requests += fuzz_operation(result.ok(), examples, run_seed, statuses, failures,  # type: ignore[union-attr]
                                   first_failure)
    elapsed = time.perf_counter() - started
    return {"requests": requests, "seconds": elapsed, "statuses": statuses, "failures": failures,
            "first": first_failure}


def report(name: str, result: dict[str, Any]) -> None:
    statuses = ", ".join(f"{code} x{n}" for code, n in sorted(result["statuses"].items()))
    print(f"{name}: {result['requests']} requests in {result['seconds']:.0f} s "
          f"({result['requests'] / result['seconds']:.0f}/s); responses {statuses}; "
          f"server errors {sum(n for c, n in result['statuses'].items() if c >= 500)}; "
          f"failed checks {sum(result['failures'].values())}", flush=True)
    for key, count in result["failures"].items():
        print(f"    FAILED {count}x {key}: {result['first'][key]}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=2000, help="generated requests per operation")
    parser.add_argument("--influx", action="store_true", help="also run against a private InfluxDB")
    parser.add_argument("--seed", type=int, default=20261205)
    args = parser.parse_args()
    print(f"sinkwatch API fuzzing (Schemathesis {schemathesis.__version__}), {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
          f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {args.examples} "
          f"examples per operation, seed {args.seed}")
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sinkwatch-api-fuzz-")))
        sqlite = SqliteStore(tmp / "api.sqlite")
        stack.callback(sqlite.close)
        report("sqlite", run(sqlite, args.examples, args.seed))
        if args.influx:
            from gateway.testing.services import running_influxd

            influxd = stack.enter_context(running_influxd(tmp / "influxd"))
            influx = InfluxStore(influxd.url, database="api_fuzz")
            stack.callback(influx.close)
            report("influxdb", run(influx, args.examples, args.seed))


if __name__ == "__main__":
    main()
