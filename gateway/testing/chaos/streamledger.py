"""What the counting WindMaster served against the stream summaries InfluxDB holds: the exact reconciliation of the
station's interval summaries at the end of a chaos run (docs/reliability.md, "Chaos runs").

Terms:

- *served record*: a frame the counting WindMaster (`gateway/testing/counting_stream.py`) handed whole to the
  station's connection; record k carries U = k/1000.
- *stored summary*: the readings of the stream sensor in InfluxDB under one time (the interval's end): U, U_SD,
  U_N, ... and WS. Its U and U_N name the records it counted, first..last (`records_of`); every one of its values
  must be the exact summary of those records (`expected_summary`, to the last bits of floating-point summation),
  every record in it must have been served, and within `TIME_TOLERANCE_S` of the interval.
- *in flight at a station kill*: a served record that no stored summary counts, served at most one summary interval
  plus `STREAM_SLACK_S` before the kill (the interval open in the killed process's memory, the read before it, the
  commit after it) or to the dead process, and above the kill's frontier: the highest record counted by a summary in
  the buffer file the killed process left, or by any stored summary of a record served before the kill (the station
  closes intervals in order and its buffer writer commits in order, so a later record's summary stored proves the
  earlier one's was committed).
- *committed records* = served - in flight; *lost*: a committed record no stored summary counts (each run of
  consecutive lost records is at least one lost summary); *duplicated*: a summary identity (sensor, variable, time)
  stored more than once, or a summary counting a record another stored summary counts; *altered*: a stored summary
  whose values, units, variables, site or time are not those of the records it counts, or that counts a record
  never served.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.testing.chaos.site import SITE, STREAM_SENSOR
from gateway.testing.counting_stream import (
    ServedRecord,
    close_enough,
    expected_summary,
    read_served_records,
    records_of,
)

if TYPE_CHECKING:
    from gateway.testing.chaos.ledger import Faults

# the read interval (1 s) and the commit after the close (COMMIT_WINDOW_S of the polled readings)
STREAM_SLACK_S = 3.0
# how far a counted record's served time may lie outside its interval: stamps follow the instrument's cadence back
# from the read that took the record (at most a read interval after it arrived)
TIME_TOLERANCE_S = 3.0


@dataclass
class StreamReconciliation:
    served_records: int = 0
    summaries_stored: int = 0  # distinct interval ends of the stream sensor in the store
    records_counted: int = 0  # the sum of U_N over stored summaries that fit their records
    in_flight_at_kill: int = 0  # records of an interval open in a station's memory when it was killed
    served_to_dead_station: int = 0
    kills_that_cut_an_interval: int = 0
    committed_records: int = 0
    committed_summaries: int = 0  # stored + lost
    lost_records: int = 0
    lost_summaries: int = 0
    duplicated: int = 0
    altered: int = 0
    largest_offset_s: float = 0.0  # of a counted record's served time outside its interval
    # records served after the last fault was undone that stored summaries count: the stream came back from all
    counted_after_faults: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return (self.lost_records == 0 and self.duplicated == 0 and self.altered == 0
                and self.records_counted == self.committed_records)

    def note(self, text: str) -> None:
        if len(self.examples) < 20:
            self.examples.append(text)


@dataclass(frozen=True)
class _Interval:
    first: int
    last: int
    time_ns: int


def stream_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [row for row in rows if row.get("sensor") == STREAM_SENSOR]


class StreamLedger:
    """The stream's served log and its stored summaries; `covered()` tells which served records a stored summary
    counts (the final drain waits for every committed one)."""

    def __init__(self, served_log: Path, faults: Faults, interval_s: float) -> None:
        self.served_log = served_log
        self.faults = faults
        self.interval_s = interval_s
        self.served: dict[int, ServedRecord] = {}
        self._offset = 0

    def read_served(self) -> None:
        records, self._offset = read_served_records(self.served_log, self._offset)
        for record in records:
            self.served[record.k] = record

    def excused(self, record: ServedRecord, counted: set[int]) -> str | None:
        """"dead" (served to a killed station), "kill" (in an interval a kill cut short) or None."""
        for kill in self.faults.kills:
            if not kill.at - self.interval_s - STREAM_SLACK_S <= record.monotonic <= kill.restarted:
                continue
            if record.monotonic > kill.at:
                return "dead"
            if record.k <= kill.frontier.get(STREAM_SENSOR, 0):
                continue
            if any(k > record.k and k in counted and self.served[k].monotonic <= kill.at
                   for k in range(record.k + 1, record.k + int(40 * self.interval_s + 2000))
                   if k in self.served):
                continue
            return "kill"
        return None

    def waiting(self, rows: list[dict[str, Any]]) -> int:
        """Committed records served so far that no stored summary counts yet."""
        self.read_served()
        counted: set[int] = set()
        for interval in _intervals(stream_rows(rows), None):
            counted.update(range(interval.first, interval.last + 1))
        return sum(1 for k, record in self.served.items()
                   if k not in counted and self.excused(record, counted) is None)


def _summaries(rows: list[dict[str, Any]]) -> dict[int, dict[str, dict[str, Any]]]:
    by_time: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in rows:
        by_time[int(row["time"])].setdefault(str(row.get("variable")), row)
    return by_time


def _intervals(rows: list[dict[str, Any]], result: StreamReconciliation | None) -> list[_Interval]:
    """The stored summaries that name their records; with `result`, every other one counted as altered."""
    intervals = []
    for time_ns, summary in sorted(_summaries(rows).items()):
        u, n = summary.get("U", {}).get("value"), summary.get("U_N", {}).get("value")
        counted = records_of(u, n)
        if counted is None:
            if result is not None:
                result.altered += 1
                result.note(f"summary at {time_ns} names no run of records (U {u!r}, U_N {n!r})")
            continue
        intervals.append(_Interval(counted[0], counted[1], time_ns))
    return intervals


def reconcile_stream(served_log: Path, rows: list[dict[str, Any]], faults: Faults, interval_s: float,
                     faults_over: float | None = None) -> StreamReconciliation:
    """The exact account of the stream's summaries: `rows` are every stored reading of the station (all tags and
    fields, as `InfluxReader.readings` returns them); `faults_over` the monotonic time the last fault was undone."""
    ledger = StreamLedger(served_log, faults, interval_s)
    ledger.read_served()
    served = ledger.served
    mine = stream_rows(rows)
    result = StreamReconciliation(served_records=len(served))
    identities = Counter((r.get("site"), r.get("station"), r.get("variable"), int(r["time"])) for r in mine)
    for identity, count in identities.items():
        if count > 1:
            result.duplicated += count - 1
            result.note(f"summary identity {identity} stored {count} times")
    summaries = _summaries(mine)
    result.summaries_stored = len(summaries)
    times: dict[int, int] = {}  # record -> end of the summary that counts it
    for interval in _intervals(mine, result):
        summary = summaries[interval.time_ns]
        end = interval.time_ns / 1e9
        problems = []
        expected = expected_summary(interval.first, interval.last)
        if set(summary) != set(expected):
            problems.append(f"variables {sorted(set(summary) ^ set(expected))} differ")
        for variable, (value, unit) in expected.items():
            row = summary.get(variable)
            if row is None:
                continue
            if row.get("unit") != unit or not close_enough(row.get("value"), value):
                problems.append(f"{variable} {row.get('value')!r} {row.get('unit')!r}, expected {value!r} {unit!r}")
        if any(row.get("site") != SITE for row in summary.values()):
            problems.append("another site")
        never = [k for k in range(interval.first, interval.last + 1) if k not in served]
        if never:
            problems.append(f"{len(never)} records never served (first {never[0]})")
        else:
            offsets = [max(end - interval_s - served[k].wall, served[k].wall - end, 0.0)
                       for k in (interval.first, interval.last)]
            result.largest_offset_s = max(result.largest_offset_s, *offsets)
            if max(offsets) > TIME_TOLERANCE_S:
                problems.append(f"records served {max(offsets):.2f} s outside the interval ending {end:.3f}")
        if problems:
            result.altered += 1
            result.note(f"summary {interval.first}..{interval.last} at {interval.time_ns}: {'; '.join(problems)}")
            continue
        again = [k for k in range(interval.first, interval.last + 1) if k in times]
        if again:
            result.duplicated += 1
            result.note(f"summary {interval.first}..{interval.last} at {interval.time_ns} counts {len(again)} "
                        f"records the summary at {times[again[0]]} counts too")
            continue
        for k in range(interval.first, interval.last + 1):
            times[k] = interval.time_ns
        result.records_counted += interval.last - interval.first + 1
    counted = set(times)
    cutting: set[int] = set()
    committed = 0
    previous_lost = -2
    for k in sorted(served):
        record = served[k]
        if k in counted:
            committed += 1
            if faults_over is not None and record.monotonic > faults_over:
                result.counted_after_faults += 1
            continue
        why = ledger.excused(record, counted)
        if why == "dead":
            result.served_to_dead_station += 1
            continue
        if why == "kill":
            result.in_flight_at_kill += 1
            cutting.update(i for i, kill in enumerate(faults.kills)
                           if kill.at - interval_s - STREAM_SLACK_S <= record.monotonic <= kill.at)
            continue
        committed += 1
        result.lost_records += 1
        if k != previous_lost + 1:
            result.lost_summaries += 1
            near = [f"station kill {kill.at - record.monotonic:+.3f} s after it" for kill in faults.kills
                    if abs(kill.at - record.monotonic) < 30]
            result.note(f"record {k} served at {record.wall:.3f} is in no stored summary; "
                        f"{'; '.join(near) or 'no station kill within 30 s'}")
        previous_lost = k
    result.committed_records = committed
    result.kills_that_cut_an_interval = len(cutting)
    result.committed_summaries = result.summaries_stored + result.lost_summaries
    return result
