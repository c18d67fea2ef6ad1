"""What the counting WindMaster served against the station's raw archive files: the exact reconciliation of the
stream's raw archive at the end of a chaos run (docs/reliability.md, "Chaos runs").

The archive files are read with the project's own reader (`gateway.rawarchive.read_archive`), closed ones and the
`.part` files killed processes left, in the order they were written: by half hour, then by the `_1`, `_2`, ... a
restart appends. Record k carries U = k/1000 (`counting_stream.record_values`), so every archived record names the
served record it is.

Terms:

- *archived record*: a row of an archive file; *altered* when its values are not exactly those of its record
  (U, V, W, SOS, T_SONIC, DIAG_SONIC, bit for bit as the driver decodes them), when it names a record never served,
  or when its TIME lies more than `TIME_TOLERANCE_S` from when its record was served; *out of order* when its record
  number or its TIME is not above the previous archived record's (across files in the order they were written);
  *duplicated* when its record was archived before.
- *in flight at a station kill*: a served record that no file holds, served at most `kill_window_s` before the kill
  and above the kill's *archive frontier* — the highest record in the archive files as the killed process left them
  (read right after the kill). The writer hands the kernel whole chunks (every `ArchiveWriter` flush) and a
  SIGKILL leaves the page cache to the kernel, so what a killed station loses is only what had not been flushed:
  the records kept for the next chunk, those of the read being handled, and what still waited unread in the
  kernel's socket buffer. The window is what that can hold (`kill_window`); the records excused at each kill are
  counted, and their largest number at one kill is reported against the bound.
- *served to a dead station*: served after the kill, before the next station process was started.
- *refused by a full disk*: a served record that no file holds, served from `kill_window_s` before a
  `station-disk-full` fault (records kept in memory for the chunk the refused write gave up) until
  `REFUSED_SLACK_S` after it (the archive tries a new file every `ARCHIVE_RETRY_S`). Excused only as far as the
  station counted them: the `unarchived_records` of the next file's header (or footer). More missing than counted
  is lost.
- *committed* = served - excused (excused records archived anyway count as committed); *lost*: a committed record
  no file holds.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.edge.streams.archiving import ARCHIVE_RETRY_S
from gateway.rawarchive import SUFFIXES, read_archive
from gateway.testing.counting_stream import COLUMNS, ServedRecord, read_served_records, record_values

if TYPE_CHECKING:
    from gateway.testing.chaos.ledger import Faults

# how far an archived TIME may lie from when its record was served: the station stamps a read's records from the
# instrument's cadence back from their arrival, never after the read (at most a read interval after the serving)
TIME_TOLERANCE_S = 3.0
# what a killed station may still hold unflushed beyond its archive writer's chunk: the read being handled (1 s), the
# kernel's socket buffer behind it, a commit's delay
KILL_SLACK_S = 3.0
REFUSED_SLACK_S = ARCHIVE_RETRY_S + 3.0
_NAME = re.compile(r"^(?P<sensor>.+)_(?P<stamp>\d{8}T\d{4}Z)(?:_(?P<part>\d+))?(?P<suffix>\.swr|\.csv\.gz)"
                   r"(?P<open>\.part)?$")


def kill_window(flush_records: int, flush_after_s: float | None, frequency_hz: float) -> float:
    """Seconds of records a killed station can hold that its archive files do not: one chunk's worth (a chunk is
    flushed at `flush_records` records, or `flush_after_s` after its first record when that is set) and the slack."""
    chunk_s = flush_records / frequency_hz
    if flush_after_s is not None:
        chunk_s = min(chunk_s, flush_after_s)
    return chunk_s + KILL_SLACK_S


@dataclass(frozen=True)
class DiskRefusal:
    """A `station-disk-full` fault: monotonic times it began and was undone."""

    start: float
    end: float


@dataclass
class ArchiveReconciliation:
    served_records: int = 0
    files: int = 0  # archive files of the stream sensor
    files_closed: int = 0  # with a footer
    files_cut: int = 0  # left open (`.part`) by a killed or refused writer: read up to their last whole chunk
    files_torn: int = 0  # of those, ending in a block cut short (a kill inside its write)
    files_unreadable: int = 0  # the reader refused them (an empty `.part` counts here: no header, no records)
    archived_records: int = 0  # rows in all files
    in_flight_at_kill: int = 0
    kills_that_lost_records: int = 0
    most_lost_at_one_kill: int = 0
    served_to_dead_station: int = 0
    refused_by_disk: int = 0  # missing in a disk-full window and counted by the station
    counted_unarchived: int = 0  # the station's own count (headers and footers of its files)
    committed_records: int = 0
    lost: int = 0
    duplicated: int = 0
    altered: int = 0
    out_of_order: int = 0
    largest_time_offset_s: float = 0.0
    archived_after_faults: int = 0  # records served after the last fault that the archive holds
    examples: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return (self.lost == 0 and self.duplicated == 0 and self.altered == 0 and self.out_of_order == 0
                and self.files_unreadable == 0)

    def note(self, text: str) -> None:
        if len(self.examples) < 20:
            self.examples.append(text)


def archive_files(folder: Path, sensor: str) -> list[Path]:
    """The sensor's archive files in `folder` (closed and `.part`), in the order the station wrote them."""
    found = []
    for path in folder.glob(f"{sensor}_*") if folder.is_dir() else ():
        match = _NAME.match(path.name)
        if match is None or match["sensor"] != sensor or match["suffix"] not in SUFFIXES:
            continue
        found.append(((match["stamp"], int(match["part"] or 0)), path))
    return [path for _, path in sorted(found)]


def record_number(u: float) -> int | None:
    """k of a record whose U is k/1000 exactly (as the driver decodes the three printed decimals); else None."""
    if math.isnan(u) or u <= 0:
        return None
    k = round(u * 1000)
    return k if record_values(k)[0] == u else None


def archived_records(folder: Path, sensor: str) -> tuple[list[float], set[int]]:
    """The stamps (sorted) and numbers of the records the archive files hold now; unreadable files hold none."""
    stamps: list[float] = []
    numbers: set[int] = set()
    for path in archive_files(folder, sensor):
        try:
            data = read_archive(path)
        except (OSError, ValueError):
            continue
        stamps += data.time.tolist()
        for u in data.columns.get("U", ()):
            k = record_number(float(u))
            if k is not None:
                numbers.add(k)
    return sorted(stamps), numbers


def archive_frontier(folder: Path, sensor: str) -> int:
    """The highest record the archive files hold now (0: none)."""
    return max(archived_records(folder, sensor)[1], default=0)


def reconcile_archive(served_log: Path, folder: Path, sensor: str, faults: Faults, *, kill_window_s: float,
                      refusals: list[DiskRefusal] | None = None,
                      faults_over: float | None = None) -> ArchiveReconciliation:
    """The exact account of the stream's raw archive in `folder`; `faults.kills` carry each kill's
    `archive_frontier`; `faults_over` is the monotonic time the last fault was undone."""
    records, _ = read_served_records(served_log)
    served: dict[int, ServedRecord] = {r.k: r for r in records}
    result = ArchiveReconciliation(served_records=len(served))
    archived: Counter[int] = Counter()
    previous_k, previous_time = 0, float("-inf")
    for path in archive_files(folder, sensor):
        result.files += 1
        try:
            data = read_archive(path)
        except (OSError, ValueError) as exc:
            if path.name.endswith(".part") and path.stat().st_size == 0:
                result.note(f"{path.name}: empty (its writer was killed or refused before the header)")
            else:
                result.note(f"{path.name}: refused by the reader: {exc}")
            result.files_unreadable += 1
            continue
        # the records the station could not archive before this file (its header since the count must survive a
        # kill; the footer of a file written before that)
        count = data.header.get("unarchived_records", (data.footer or {}).get("unarchived_records", 0))
        result.counted_unarchived += count if isinstance(count, int) else 0
        if data.footer is not None:
            result.files_closed += 1
        else:
            result.files_cut += 1
            if not data.complete and path.stat().st_size and _ends_torn(path):
                result.files_torn += 1
        if [name for name, _ in COLUMNS] != list(data.columns) or dict(COLUMNS) != data.units:
            result.altered += len(data.time)
            result.note(f"{path.name}: columns {data.units} are not the WindMaster's")
            continue
        values = [data.columns[name] for name, _ in COLUMNS]
        for i, stamp in enumerate(data.time.tolist()):
            result.archived_records += 1
            row = tuple(float(column[i]) for column in values)
            k = record_number(row[0])
            if k is None or k not in served:
                result.altered += 1
                result.note(f"{path.name} row {i + 1}: U {row[0]!r} names no served record")
                continue
            archived[k] += 1
            if archived[k] > 1:
                result.duplicated += 1
                result.note(f"{path.name} row {i + 1}: record {k} archived again")
                continue
            if row != record_values(k):
                result.altered += 1
                result.note(f"{path.name} row {i + 1}: record {k} holds {row}, served {record_values(k)}")
            offset = abs(stamp - served[k].wall)
            result.largest_time_offset_s = max(result.largest_time_offset_s, offset)
            if offset > TIME_TOLERANCE_S:
                result.altered += 1
                result.note(f"{path.name} row {i + 1}: record {k} stamped {stamp - served[k].wall:+.3f} s from "
                            "when it was served")
            if k <= previous_k or stamp <= previous_time:
                result.out_of_order += 1
                result.note(f"{path.name} row {i + 1}: record {k} at {stamp:.6f} after record {previous_k} at "
                            f"{previous_time:.6f}")
            previous_k, previous_time = max(previous_k, k), max(previous_time, stamp)
    _account_missing(result, served, archived, faults, kill_window_s, refusals or [], faults_over)
    return result


def _ends_torn(path: Path) -> bool:
    """Whether the file ends in a block cut short (rather than after its last whole chunk)."""
    from gateway.rawarchive.columnar import Blocks

    return not Blocks(path.read_bytes(), str(path)).intact


def _account_missing(result: ArchiveReconciliation, served: dict[int, ServedRecord], archived: Counter[int],
                     faults: Faults, kill_window_s: float, refusals: list[DiskRefusal],
                     faults_over: float | None) -> None:
    at_kill: Counter[int] = Counter()
    refused = 0
    lost_runs: list[tuple[int, int]] = []
    committed = 0
    for k in sorted(served):
        record = served[k]
        if archived[k]:
            committed += 1
            if faults_over is not None and record.monotonic > faults_over:
                result.archived_after_faults += 1
            continue
        why = _excused(record, faults, kill_window_s)
        if why == "dead":
            result.served_to_dead_station += 1
            continue
        if isinstance(why, int):
            at_kill[why] += 1
            continue
        if any(r.start - kill_window_s <= record.monotonic <= r.end + REFUSED_SLACK_S for r in refusals):
            refused += 1
            continue
        committed += 1
        result.lost += 1
        if lost_runs and lost_runs[-1][1] == k - 1:
            lost_runs[-1] = (lost_runs[-1][0], k)
        else:
            lost_runs.append((k, k))
    # refused records are excused only as far as the station counted them
    result.refused_by_disk = min(refused, result.counted_unarchived)
    if refused > result.counted_unarchived:
        result.lost += refused - result.counted_unarchived
        committed += refused - result.counted_unarchived
        result.note(f"{refused} records missing around a full disk, the station counted "
                    f"{result.counted_unarchived} not archived")
    for first, last in lost_runs:
        near = [f"station kill {kill.at - served[first].monotonic:+.3f} s after it" for kill in faults.kills
                if abs(kill.at - served[first].monotonic) < 30]
        result.note(f"records {first}..{last} (served at {served[first].wall:.3f}) are in no archive file; "
                    f"{'; '.join(near) or 'no station kill within 30 s'}")
    result.in_flight_at_kill = sum(at_kill.values())
    result.kills_that_lost_records = len(at_kill)
    result.most_lost_at_one_kill = max(at_kill.values(), default=0)
    result.committed_records = committed


def _excused(record: ServedRecord, faults: Faults, kill_window_s: float) -> str | int | None:
    """"dead" (served to a killed station), the index of the kill whose unflushed records it was, or None."""
    for index, kill in enumerate(faults.kills):
        if not kill.at - kill_window_s <= record.monotonic <= kill.restarted:
            continue
        if record.monotonic > kill.at:
            return "dead"
        if record.k > kill.archive_frontier:
            return index
    return None
