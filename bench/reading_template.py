"""What a GMP252 poll's Python costs warm, and what its readings cost made by `Reading(...)` (the model's validator)
against `ReadingTemplate.reading` (fixed fields validated once): thread CPU per call, best of `--repeat` rounds.

    .venv/bin/python bench/reading_template.py [--calls 20000] [--repeat 5]

The poll runs through the daemon's `SensorRunner` on an in-process line that answers at once (no serial port, no
sleep), so it is the Python a transaction's thread runs around the exchange, warm; on the station the same code runs
after a sleep, cold, and costs several times more (docs/performance.md). No assertion is made.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from drivers.gmp252 import registers as reg
from drivers.gmp252.driver import GMP252Config, GMP252Driver
from gateway.edge.bus import SensorRunner
from gateway.model import QualityFlag, Reading, ReadingTemplate, TimeSource, utc_now


class AnsweringLine:
    """A `SerialLine` whose probe answers every read at once: CO2 412.5 ppm, 21.2 degC, status OK."""

    settings = None

    def read_registers(self, device: int, address: int, count: int, **_: Any) -> list[int]:
        if address == 0x0000:
            return reg.encode_float32(412.5)
        if address == 0x0004:
            return reg.encode_float32(21.2)
        return [0] * count


def per_call_us(call: Callable[[], object], calls: int, repeat: int) -> float:
    call()
    return min(timeit.repeat(call, number=calls, repeat=repeat, timer=time.thread_time)) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()} {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}; load {os.getloadavg()[0]:.1f}; µs of thread CPU per call, best of "
          f"{args.repeat} rounds of {args.calls}")
    fixed: dict[str, Any] = {"station": "bench", "sensor": "co2_1", "variable": "CO2", "unit": "umol mol-1",
                             "time_source": TimeSource.GATEWAY}
    template = ReadingTemplate(**fixed)
    now = utc_now()
    changing: dict[str, Any] = {"value": 412.5, "time": now, "clock_synced": True, "qc": QualityFlag.GOOD,
                                "qc_reason": None}
    model = per_call_us(lambda: Reading(**fixed, **changing), args.calls, args.repeat)
    made = per_call_us(lambda: template.reading(**changing), args.calls, args.repeat)
    print(f"a reading   Reading(...) {model:6.2f}   ReadingTemplate.reading {made:6.2f}   saved {model - made:6.2f}")
    runner = SensorRunner(GMP252Driver, GMP252Config(name="co2_1", port="/dev/bench", address=240), "bench")
    runner.driver.attach(AnsweringLine())  # type: ignore[attr-defined]
    runner.is_open = True
    poll = per_call_us(runner.poll, args.calls, args.repeat)
    print(f"a poll      SensorRunner.poll of a GMP252 (3 reads, 2 readings) {poll:6.2f}")


if __name__ == "__main__":
    main()
