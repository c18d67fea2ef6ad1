"""Interval summaries of a stream: every `summary_interval_s` (aligned to UTC), for every column the mean (`<COL>`),
standard deviation (`<COL>_SD`) and count of values (`<COL>_N`), plus the mean horizontal wind speed `WS` when the
instrument has U and V, as `Reading`s stamped at the interval's end (AmeriFlux TIMESTAMP_END convention).

An interval is flagged (qc SUSPECT, `clock_synced` False, with the reason) when the system clock stepped inside it,
and SUSPECT when the instrument's output rate differs from its configured `frequency_hz` by more than
`rate_tolerance` (a drifting instrument clock) plus the resolution of the rate estimate: the rate is measured on the
records' stamps, which carry the host's scheduling latency (up to `ARRIVAL_LATENCY_S` at either end of the
interval), so a short interval allows `2 * ARRIVAL_LATENCY_S / span` more (4 % at 1 s, 0.07 % at 60 s). Records read
in bursts are stamped one nominal period apart (`stamping.py`): at the nominal rate the stamps are evenly spaced and
the measured rate is exact; an instrument off its rate is followed at each burst's arrival, its stamps off by less
than one period, so the rate it shows is off by at most 2 periods per interval (0.17 % at 20 Hz over the default
60 s, against the 1 % tolerance). Dropped records are named in `qc_reason` and only reduce the counts.

A summary is final once sent (its identity is sensor + variable + interval end, `docs/architecture.md`): after the
clock steps back, frames stamped inside an interval already sent are counted in the first interval not yet sent
(`restamped`), which is flagged SUSPECT and says so, so no interval is ever summarised twice.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

from gateway.clock import ClockStep
from gateway.driver_api import StreamColumn
from gateway.model import QualityFlag, Reading, TimeSource

# how late a frame may be read after it arrived on a busy host (a scheduling delay, not the instrument's rate)
ARRIVAL_LATENCY_S = 0.02


class IntervalSummary:
    """Running sums for one interval (a Welford update would be steadier; shifted sums are enough at 20 Hz and
    keep the per-frame cost at a few additions)."""

    def __init__(self, width: int, start: float) -> None:
        self.start = start
        self.n = [0] * width
        self.shift: list[float | None] = [None] * width
        self.s1 = [0.0] * width
        self.s2 = [0.0] * width
        self.ws_n = 0
        self.ws_sum = 0.0
        self.frames = 0
        self.first_mono: float | None = None
        self.last_mono = 0.0
        self.steps: list[ClockStep] = []
        self.bad: Counter[str] = Counter()
        self.restamped = 0  # frames stamped before `start`, in an interval already sent (the clock stepped back)

    def add(self, values: tuple[float | None, ...], mono: float, u_index: int | None, v_index: int | None) -> None:
        self.frames += 1
        if self.first_mono is None:
            self.first_mono = mono
        self.last_mono = mono
        n, shift, s1, s2 = self.n, self.shift, self.s1, self.s2
        for i, value in enumerate(values):
            if value is None:
                continue
            k = shift[i]
            if k is None:
                shift[i] = k = value
            d = value - k
            n[i] += 1
            s1[i] += d
            s2[i] += d * d
        if u_index is not None and v_index is not None:
            u, v = values[u_index], values[v_index]
            if u is not None and v is not None:
                self.ws_n += 1
                self.ws_sum += math.hypot(u, v)

    def add_many(self, rows: Sequence[tuple[float | None, ...]], first_mono: float, last_mono: float,
                 u_index: int | None, v_index: int | None) -> None:
        """`add` for each of `rows` in order (stamped from `first_mono` to `last_mono`), column by column: every
        column's sums take the same additions in the same order, so the result is `add`'s to the last bit, at a
        Python step per value instead of a call and a loop set-up per record."""
        self.frames += len(rows)
        if self.first_mono is None:
            self.first_mono = first_mono
        self.last_mono = last_mono
        n, shift, s1, s2 = self.n, self.shift, self.s1, self.s2
        columns = list(zip(*rows, strict=True))
        for i, column in enumerate(columns):
            k = shift[i]
            count, a, b = n[i], s1[i], s2[i]
            for value in column:
                if value is None:
                    continue
                if k is None:
                    shift[i] = k = value
                d = value - k
                count += 1
                a += d
                b += d * d
            n[i], s1[i], s2[i] = count, a, b
        if u_index is not None and v_index is not None:
            hypot = math.hypot
            ws_n, ws_sum = self.ws_n, self.ws_sum
            for u, v in zip(columns[u_index], columns[v_index], strict=True):
                if u is not None and v is not None:
                    ws_n += 1
                    ws_sum += hypot(u, v)
            self.ws_n, self.ws_sum = ws_n, ws_sum

    def mean_sd(self, i: int) -> tuple[float | None, float | None]:
        n = self.n[i]
        if n == 0:
            return None, None
        k = self.shift[i] or 0.0
        mean = k + self.s1[i] / n
        if n < 2:
            return mean, None
        var = max(0.0, (self.s2[i] - self.s1[i] * self.s1[i] / n) / (n - 1))
        return mean, math.sqrt(var)


def summary_readings(
    summary: IntervalSummary,
    *,
    station: str,
    sensor: str,
    columns: Sequence[StreamColumn],
    end: float,
    clock_synced: bool,
    interval_s: float,
    frequency_hz: float,
    rate_tolerance: float,
    u_index: int | None,
    v_index: int | None,
) -> list[Reading]:
    """The readings of one closed interval ending at `end` (UTC seconds); `clock_synced` is the kernel's sync state
    when it closed (module doc for the flags)."""
    synced = clock_synced and not summary.steps and not summary.restamped
    reasons: list[str] = [s.describe() for s in summary.steps]
    if not clock_synced:
        reasons.append("system clock not synchronised")
    rate_problem = False
    span = summary.last_mono - (summary.first_mono if summary.first_mono is not None else summary.last_mono)
    if summary.frames >= 10 and span >= interval_s / 2:
        rate = (summary.frames - 1) / span
        deviation = rate / frequency_hz - 1.0
        if abs(deviation) > rate_tolerance + 2 * ARRIVAL_LATENCY_S / span:
            rate_problem = True
            reasons.append(f"output rate {rate:.2f} Hz is {deviation:+.1%} off the configured "
                           f"{frequency_hz:g} Hz (instrument clock drift?)")
    if summary.restamped:
        reasons.append(f"{summary.restamped} records stamped in intervals already sent (clock stepped back) "
                       "are counted here")
    if summary.bad:
        reasons.append("dropped " + ", ".join(f"{n} {r}" for r, n in sorted(summary.bad.items())))
    # a clock step or a wrong output rate makes the values suspect; dropped records only reduce the counts
    flag = QualityFlag.SUSPECT if (summary.steps or rate_problem or summary.restamped) else QualityFlag.GOOD
    reason = "; ".join(reasons)[:200] or None
    time_ = datetime.fromtimestamp(end, UTC)
    readings: list[Reading] = []

    def add(variable: str, value: float | None, unit: str) -> None:
        readings.append(Reading(
            station=station, sensor=sensor, variable=variable, value=value, unit=unit,
            time=time_, time_source=TimeSource.GATEWAY, clock_synced=synced,
            qc=QualityFlag.MISSING if value is None else flag,
            qc_reason=("no value in the interval" + (f"; {reason}" if reason else ""))[:200]
            if value is None else reason,
        ))

    for i, column in enumerate(columns):
        mean, sd = summary.mean_sd(i)
        add(column.name, mean, column.unit)
        add(f"{column.name}_SD", sd, column.unit)
        add(f"{column.name}_N", float(summary.n[i]), "1")
    if u_index is not None and v_index is not None:
        add("WS", summary.ws_sum / summary.ws_n if summary.ws_n else None, columns[u_index].unit)
    return readings
