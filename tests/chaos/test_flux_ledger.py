"""The chaos reconciliation of the station's flux records (gateway/testing/chaos/fluxledger.py): every expected
averaging period has exactly one stored record; a missing or a duplicated one is counted, and a record of a period
whose raw data the archive holds whole says how many records it used."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.rawarchive import ArchiveWriter, file_period_start
from gateway.testing.chaos.fluxledger import STARTUP_S, expected_ends, reconcile_fluxes
from gateway.testing.chaos.site import STREAM_SENSOR
from gateway.testing.counting_stream import COLUMNS, ServedRecord, record_values

PERIOD_S = 30.0
T0 = 1_800_000_000.0  # a multiple of 30 s and of 1800 s
HZ = 10


def run(tmp_path: Path, records: range, *, archived: set[int] | None = None) -> tuple[Path, Path]:
    """Record k served at T0 + k/10 s and archived (stamped 0.05 s later) unless left out of `archived`."""
    log = tmp_path / "served-stream.jsonl"
    log.write_text("".join(ServedRecord(k, k / HZ, T0 + k / HZ).to_json() + "\n" for k in records), encoding="utf-8")
    writer = ArchiveWriter(tmp_path / "raw", STREAM_SENSOR, file_period_start(T0), COLUMNS, {})
    for k in records:
        if archived is None or k in archived:
            writer.write(T0 + k / HZ + 0.05, record_values(k))
    writer.close({"closed": "stopped"})
    return log, tmp_path / "raw"


def flux(end: float, n: float, status: str = "ok", settings_hash: str = "a" * 12) -> dict[str, Any]:
    return {"time": round(end * 1e9), "status": status, "N_RECORDS": n, "settings_hash": settings_hash}


def records_in(start: float, end: float) -> int:
    """Records stamped T0 + k/10 + 0.05 inside [start, end)."""
    return sum(1 for k in range(1, 2000) if start <= T0 + k / HZ + 0.05 < end)


def test_the_expected_periods_follow_the_start_up_and_end_with_the_stream() -> None:
    # the runner's first period is the first that starts after its start (here T0); the last ends before the stop
    assert expected_ends(PERIOD_S, T0 - STARTUP_S, T0 + 125) == [T0 + 30, T0 + 60, T0 + 90, T0 + 120]
    assert expected_ends(PERIOD_S, T0 - STARTUP_S + 1, T0 + 119) == [T0 + 60, T0 + 90]


def test_one_record_per_expected_period_is_exact(tmp_path: Path) -> None:
    log, raw = run(tmp_path, range(1, 1500))  # served until T0 + 150 s
    ends = expected_ends(PERIOD_S, T0 - STARTUP_S, T0 + 149.9)
    rows = [flux(end, records_in(end - PERIOD_S, end)) for end in ends] + [flux(T0 + 150, 10, "failed")]
    result = reconcile_fluxes(rows, PERIOD_S, T0 - STARTUP_S, T0 + 149.9, log, raw, STREAM_SENSOR)
    assert result.exact and result.examples == []
    assert (result.expected, result.stored, result.outside, result.complete) == (4, 4, 1, 4)
    assert result.statuses == {"ok": 4}


def test_a_missing_and_a_duplicated_period_are_counted(tmp_path: Path) -> None:
    log, raw = run(tmp_path, range(1, 1500))
    ends = expected_ends(PERIOD_S, T0 - STARTUP_S, T0 + 149.9)
    rows = [flux(end, records_in(end - PERIOD_S, end)) for end in ends[1:]]
    rows.append(flux(ends[2], 300.0, settings_hash="b" * 12))  # the same period under other settings
    result = reconcile_fluxes(rows, PERIOD_S, T0 - STARTUP_S, T0 + 149.9, log, raw, STREAM_SENSOR)
    assert (result.missing, result.duplicated, result.exact) == (1, 1, False)


def test_a_period_the_archive_holds_no_record_of_is_not_computed_not_missing(tmp_path: Path) -> None:
    archived = set(range(1, 1500)) - set(range(590, 910))  # nothing stamped in [T0 + 60, T0 + 90)
    log, raw = run(tmp_path, range(1, 1500), archived=archived)
    ends = expected_ends(PERIOD_S, T0 - STARTUP_S, T0 + 149.9)
    rows = [flux(end, 600.0) for end in ends if end != T0 + 90]
    result = reconcile_fluxes(rows, PERIOD_S, T0 - STARTUP_S, T0 + 149.9, log, raw, STREAM_SENSOR)
    assert result.exact and (result.no_raw_data, result.missing, result.stored) == (1, 0, 3)
    # a period with archived records must have its record
    rows = [flux(end, 600.0) for end in ends if end != T0 + 60]
    result = reconcile_fluxes(rows, PERIOD_S, T0 - STARTUP_S, T0 + 149.9, log, raw, STREAM_SENSOR)
    assert (result.no_raw_data, result.missing, result.exact) == (0, 1, False)


def test_a_period_with_records_missing_from_the_archive_is_not_complete(tmp_path: Path) -> None:
    archived = set(range(1, 1500)) - {700}  # T0 + 70 s: inside the period ending T0 + 90
    log, raw = run(tmp_path, range(1, 1500), archived=archived)
    ends = expected_ends(PERIOD_S, T0 - STARTUP_S, T0 + 149.9)
    rows = [flux(end, records_in(end - PERIOD_S, end) - (end == T0 + 90), "partial" if end == T0 + 90 else "ok")
            for end in ends]
    result = reconcile_fluxes(rows, PERIOD_S, T0 - STARTUP_S, T0 + 149.9, log, raw, STREAM_SENSOR)
    assert result.exact and (result.complete, result.complete_not_ok) == (3, 0)
    # a complete period stored as not ok is reported
    rows[0] = flux(ends[0], records_in(ends[0] - PERIOD_S, ends[0]), "failed")
    result = reconcile_fluxes(rows, PERIOD_S, T0 - STARTUP_S, T0 + 149.9, log, raw, STREAM_SENSOR)
    assert result.exact and result.complete_not_ok == 1 and len(result.examples) == 1
