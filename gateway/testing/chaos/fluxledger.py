"""The station's flux records against its averaging periods: the reconciliation of the edge flux runner at the end of
a chaos run (docs/reliability.md, "Chaos runs").

The station computes one `FluxRecord` per averaging period of its sonic's raw archive (gateway/edge/fluxrunner.py)
and delivers it on the fluxes channel; InfluxDB keeps it as one point of the `fluxes` measurement at the period's
end. Terms:

- *expected period*: one that starts at least `STARTUP_S` after the station's first start (the runner's first period
  is the first that starts after its daemon first started) and ends no later than the counting WindMaster's last
  record. Every expected period must have exactly one stored record: after a kill or a full disk the runner resumes
  after the last period its outbox holds and computes the missed ones from the archive, and a period whose records
  are not all there is still sent, as `partial` or `failed` with its reasons.
- *not computed, no raw data*: an expected period without a stored record whose time the archive holds no record
  of: the runner, started after such a period ended, counts it `no_raw_data` and sends nothing (the station was
  off, or every record of it was refused by a full disk or taken by kills before its chunk was written — the archive
  reconciliation accounts for each of those records).
- *missing*: any other expected period without a stored record; *duplicated*: a period end stored more than once (under
  another settings hash or engine version: InfluxDB keeps one point per series and time, so a resend of the same
  record overwrites itself and is no duplicate).
- *complete raw data*: every record the counting WindMaster served within the period (and a second either side) is
  in the raw archive (the archive reconciliation's account); the status of their records is reported (the engine
  grids a period, so its `N_RECORDS` is the grid's length and says nothing about the records used).
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.testing.chaos.archiveledger import archived_records
from gateway.testing.counting_stream import read_served_records

STARTUP_S = 10.0  # the station's start-up, interpreter and flux engine imports included


@dataclass
class FluxReconciliation:
    period_s: float = 0.0
    expected: int = 0
    stored: int = 0  # expected periods with a stored record
    statuses: dict[str, int] = field(default_factory=dict)  # of those records
    no_raw_data: int = 0  # expected periods not computed: the archive holds no record of their time
    missing: int = 0
    duplicated: int = 0
    outside: int = 0  # records of periods before the first or after the last expected one
    complete: int = 0  # expected periods whose raw data the archive holds whole
    complete_not_ok: int = 0  # of those, stored with a status other than ok
    examples: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return self.missing == 0 and self.duplicated == 0

    def note(self, text: str) -> None:
        if len(self.examples) < 20:
            self.examples.append(text)


def expected_ends(period_s: float, first_start_wall: float, stream_stop_wall: float) -> list[float]:
    """Ends (unix s) of the periods every one of which must have one stored record."""
    first = math.ceil((first_start_wall + STARTUP_S) / period_s) * period_s + period_s
    last = math.floor(stream_stop_wall / period_s) * period_s
    return [float(end) for end in range(int(first), int(last) + 1, int(period_s))]


def reconcile_fluxes(rows: list[dict[str, Any]], period_s: float, first_start_wall: float, stream_stop_wall: float,
                     served_log: Path, archive_dir: Path, sensor: str) -> FluxReconciliation:
    """`rows`: every point of the station in InfluxDB's `fluxes` (time in ns: the period's end)."""
    result = FluxReconciliation(period_s=period_s)
    ends = expected_ends(period_s, first_start_wall, stream_stop_wall)
    result.expected = len(ends)
    by_end: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_end[round(int(row["time"]) / 1e9)].append(row)
    stamps, archived = archived_records(archive_dir, sensor)
    served, _ = read_served_records(served_log)
    statuses: Counter[str] = Counter()
    wanted = {round(end) for end in ends}
    result.outside = sum(1 for end in by_end if end not in wanted)
    for end in ends:
        held = by_end.get(round(end), [])
        if not held and bisect.bisect_left(stamps, end) == bisect.bisect_left(stamps, end - period_s):
            result.no_raw_data += 1
            continue
        if not held:
            result.missing += 1
            result.note(f"period ending {end:.0f} has no stored flux record")
            continue
        if len(held) > 1:
            result.duplicated += len(held) - 1
            result.note(f"period ending {end:.0f} stored {len(held)} times")
        result.stored += 1
        record = held[0]
        status = str(record.get("status"))
        statuses[status] += 1
        start = end - period_s
        if any(start - 1 <= r.wall < end + 1 and r.k not in archived for r in served):
            continue
        result.complete += 1
        if status != "ok":
            result.complete_not_ok += 1
            result.note(f"period ending {end:.0f}: raw data complete, status {status}: {record.get('reasons')}")
    result.statuses = dict(statuses)
    return result
