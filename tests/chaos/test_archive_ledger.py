"""The chaos reconciliation of a stream's raw archive (gateway/testing/chaos/archiveledger.py): archive files written
by the station's own writer and read back by its own reader; a record lost, archived twice, altered or out of
order is counted, and only the records a station kill or a full disk provably took (and the station counted) are
excused."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from gateway.rawarchive import ArchiveWriter, file_period_start
from gateway.testing.chaos.archiveledger import (
    ArchiveReconciliation,
    DiskRefusal,
    archive_files,
    archive_frontier,
    reconcile_archive,
)
from gateway.testing.chaos.ledger import Faults, StationKill
from gateway.testing.chaos.site import STREAM_SENSOR
from gateway.testing.counting_stream import COLUMNS, ServedRecord, record_values

WALL0 = 1_800_000_000.0  # record k served at monotonic k/10 s, wall clock WALL0 + k/10
WINDOW_S = 5.0  # the kill window of these tests: 50 records


def served(tmp_path: Path, records: range) -> Path:
    log = tmp_path / "served-stream.jsonl"
    log.write_text("".join(ServedRecord(k, k / 10, WALL0 + k / 10).to_json() + "\n" for k in records),
                   encoding="utf-8")
    return log


def archive(folder: Path, records: list[int], *, close: bool = True, flush_every: int = 10,
            metadata: dict[str, object] | None = None,
            change: Mapping[int, tuple[float, ...]] | None = None, stamp_offset: float = 0.05) -> Path:
    """One archive file of `records` as the station writes it (stamped `stamp_offset` after each was served); not
    closed: left as `.part` with its flushed chunks, as a killed writer leaves it."""
    writer = ArchiveWriter(folder, STREAM_SENSOR, file_period_start(WALL0), COLUMNS, metadata or {},
                           flush_every=flush_every)
    for k in records:
        writer.write(WALL0 + k / 10 + stamp_offset, (change or {}).get(k, record_values(k)))
    if close:
        return writer.close({"closed": "stopped", "unarchived_records": 0})
    writer.abandon()  # the records kept for the next chunk never reach the file
    return writer.part_path


def reconcile(tmp_path: Path, records: range, faults: Faults | None = None,
              refusals: list[DiskRefusal] | None = None) -> ArchiveReconciliation:
    return reconcile_archive(served(tmp_path, records), tmp_path / "raw", STREAM_SENSOR, faults or Faults(),
                             kill_window_s=WINDOW_S, refusals=refusals)


def test_every_served_record_archived_once_in_order_is_exact(tmp_path: Path) -> None:
    archive(tmp_path / "raw", list(range(1, 41)))
    archive(tmp_path / "raw", list(range(41, 101)))  # a second file of the half hour: _1
    result = reconcile(tmp_path, range(1, 101))
    assert result.exact, result.examples
    assert (result.files, result.files_closed, result.archived_records, result.committed_records) == (2, 2, 100, 100)
    assert [p.name for p in archive_files(tmp_path / "raw", STREAM_SENSOR)][1].endswith("_1.swr")


def test_a_record_missing_from_the_archive_is_lost(tmp_path: Path) -> None:
    archive(tmp_path / "raw", [k for k in range(1, 101) if k != 57])
    result = reconcile(tmp_path, range(1, 101))
    assert (result.lost, result.committed_records, result.exact) == (1, 100, False)
    assert "records 57..57" in result.examples[0]


def test_a_record_archived_twice_is_duplicated(tmp_path: Path) -> None:
    archive(tmp_path / "raw", list(range(1, 51)))
    archive(tmp_path / "raw", list(range(50, 101)))  # a restart that wrote record 50 again
    result = reconcile(tmp_path, range(1, 101))
    assert (result.duplicated, result.lost, result.exact) == (1, 0, False)


def test_altered_records_are_counted(tmp_path: Path) -> None:
    u, v, w, sos, ts, diag = record_values(10)
    changed = {10: (u, v, w, sos, ts + 0.01, diag)}  # a value off
    archive(tmp_path / "raw", list(range(1, 61)), change=changed)
    result = reconcile(tmp_path, range(1, 61))
    assert (result.altered, result.exact) == (1, False)
    # a U that names no served record, and stamps far from when the records were served
    (tmp_path / "raw" / "b").mkdir(parents=True)
    archive(tmp_path / "raw" / "b", list(range(1, 11)), change={5: (0.0105, *record_values(5)[1:])})
    assert reconcile_archive(served(tmp_path, range(1, 11)), tmp_path / "raw" / "b", STREAM_SENSOR, Faults(),
                             kill_window_s=WINDOW_S).altered == 1
    (tmp_path / "raw" / "c").mkdir()
    archive(tmp_path / "raw" / "c", list(range(1, 11)), stamp_offset=30.0)
    assert reconcile_archive(served(tmp_path, range(1, 11)), tmp_path / "raw" / "c", STREAM_SENSOR, Faults(),
                             kill_window_s=WINDOW_S).altered == 10


def test_records_out_of_order_are_counted(tmp_path: Path) -> None:
    archive(tmp_path / "raw", [*range(1, 21), 25, *range(21, 25), *range(26, 41)])
    result = reconcile(tmp_path, range(1, 41))
    assert result.out_of_order == 4 and result.lost == 0 and not result.exact


def test_a_kill_excuses_only_the_unflushed_records_above_its_frontier(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    # the killed writer flushed 1..80 (chunks of 10) and held 81..87; the next process archived 90..120
    archive(raw, list(range(1, 88)), close=False)
    assert archive_frontier(raw, STREAM_SENSOR) == 80  # read back up to the last whole chunk
    archive(raw, list(range(90, 121)))
    kill = StationKill(at=8.75, frontier={}, restarted=8.95, archive_frontier=80)
    result = reconcile(tmp_path, range(1, 121), Faults(kills=[kill]))
    assert result.exact, result.examples
    assert (result.in_flight_at_kill, result.served_to_dead_station, result.most_lost_at_one_kill) == (7, 2, 7)
    assert (result.files_cut, result.files_closed) == (1, 1)
    # not when the kill's frontier says they had been archived, nor beyond the window before the kill
    assert reconcile(tmp_path, range(1, 121), Faults(kills=[StationKill(
        at=8.75, frontier={}, restarted=8.95, archive_frontier=87)])).lost == 7
    assert reconcile(tmp_path, range(1, 121), Faults(kills=[StationKill(
        at=20.0, frontier={}, restarted=20.1, archive_frontier=80)])).lost == 9


def test_a_torn_last_block_is_read_up_to_the_last_whole_chunk(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    part = archive(raw, list(range(1, 51)), close=False)
    whole = part.read_bytes()
    part.write_bytes(whole + whole[-37:-3])  # a block cut short after the last chunk
    kill = StationKill(at=5.02, frontier={}, restarted=5.02, archive_frontier=50)
    result = reconcile(tmp_path, range(1, 51), Faults(kills=[kill]))
    assert result.exact and (result.files_cut, result.files_torn, result.archived_records) == (1, 1, 50)


def test_a_full_disk_excuses_only_what_the_station_counted(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    archive(raw, list(range(1, 41)))
    # 41..60 refused during the fault; the next file's header counts them
    archive(raw, list(range(61, 101)), metadata={"unarchived_records": 20})
    refusal = [DiskRefusal(4.2, 5.9)]
    result = reconcile(tmp_path, range(1, 101), refusals=refusal)
    assert result.exact and (result.refused_by_disk, result.counted_unarchived) == (20, 20)
    (raw / "b").mkdir()
    archive(raw / "b", list(range(1, 41)))
    archive(raw / "b", list(range(61, 101)), metadata={"unarchived_records": 15})
    short = reconcile_archive(served(tmp_path, range(1, 101)), raw / "b", STREAM_SENSOR, Faults(),
                              kill_window_s=WINDOW_S, refusals=refusal)
    assert (short.lost, short.refused_by_disk, short.exact) == (5, 15, False)
