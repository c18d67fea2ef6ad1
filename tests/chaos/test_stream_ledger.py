"""The chaos reconciliation of a stream's interval summaries: it finds a lost, a duplicated and an altered summary,
and excuses only the interval a station kill provably cut short (gateway/testing/chaos/streamledger.py); the
counting WindMaster's frames decode, through the real driver, to the values the reconciliation expects."""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

from drivers.windmaster.driver import WindMasterConfig, WindMasterDriver
from gateway.testing.chaos.ledger import Faults, StationKill
from gateway.testing.chaos.site import SITE, STATION, STREAM_SENSOR
from gateway.testing.chaos.streamledger import reconcile_stream
from gateway.testing.counting_stream import CountingWindMaster, ServedRecord, expected_summary, record_values

INTERVAL_S = 1.0
WALL0 = 1_800_000_000.0


def served(tmp_path: Path, records: range) -> Path:
    """Record k served at monotonic k/10 s (10 a second), wall-clock WALL0 + k/10."""
    log = tmp_path / "served-stream.jsonl"
    log.write_text("".join(ServedRecord(k, k / 10, WALL0 + k / 10).to_json() + "\n" for k in records),
                   encoding="utf-8")
    return log


def summary(first: int, last: int, *, end: float | None = None, **changes: Any) -> list[dict[str, Any]]:
    """The rows InfluxDB holds for the station's summary of records first..last (ending just after the last)."""
    stamp = round(((end if end is not None else WALL0 + last / 10 + 0.05)) * 1e9)
    rows = []
    for variable, (value, unit) in expected_summary(first, last).items():
        row = {"site": SITE, "station": STATION, "sensor": STREAM_SENSOR, "variable": variable, "unit": unit,
               "value": value, "time": stamp, "qc": 0, "time_source": "gateway"}
        if variable in changes:
            change = changes[variable]
            if change is None:
                continue
            row.update(change)
        rows.append(row)
    return rows


def test_every_record_in_one_stored_summary_is_exact(tmp_path: Path) -> None:
    rows = summary(1, 10) + summary(11, 20) + summary(21, 30)
    result = reconcile_stream(served(tmp_path, range(1, 31)), rows, Faults(), INTERVAL_S)
    assert result.exact, result.examples
    assert (result.summaries_stored, result.committed_summaries, result.records_counted) == (3, 3, 30)


def test_a_missing_summary_is_lost_unless_a_kill_cut_its_interval(tmp_path: Path) -> None:
    log = served(tmp_path, range(1, 31))
    rows = summary(1, 10) + summary(21, 30)
    result = reconcile_stream(log, rows, Faults(), INTERVAL_S)
    assert (result.lost_records, result.lost_summaries, result.exact) == (10, 1, False)
    assert result.committed_summaries == 3
    # a station killed just after record 20 was served, its buffer holding the summary of 1..10: 11..20 were in
    # the interval open in its memory
    kill = StationKill(at=2.02, frontier={STREAM_SENSOR: 10})
    result = reconcile_stream(log, rows, Faults(kills=[kill]), INTERVAL_S)
    assert (result.lost_records, result.in_flight_at_kill, result.exact) == (0, 10, True)
    # not when the buffer it left held them (committed, then lost), nor when the kill came long after
    assert reconcile_stream(log, rows, Faults(kills=[StationKill(at=2.02, frontier={STREAM_SENSOR: 20})]),
                            INTERVAL_S).lost_records == 10
    assert reconcile_stream(log, rows, Faults(kills=[StationKill(at=60.0, frontier={})]), INTERVAL_S).lost_records == 10


def test_a_gap_is_not_excused_when_a_later_summary_of_the_killed_station_was_stored(tmp_path: Path) -> None:
    rows = summary(1, 10) + summary(21, 30)
    # killed after record 30 was served: 21..30 stored proves the earlier interval had been closed and committed
    result = reconcile_stream(served(tmp_path, range(1, 31)), rows,
                              Faults(kills=[StationKill(at=3.05, frontier={})]), INTERVAL_S)
    assert (result.lost_records, result.in_flight_at_kill) == (10, 0)


def test_records_sent_to_a_dead_station_are_in_flight(tmp_path: Path) -> None:
    rows = summary(1, 10) + summary(16, 25)
    kill = StationKill(at=1.05, frontier={STREAM_SENSOR: 10}, restarted=1.55)  # 11..15 sent while it was dead
    result = reconcile_stream(served(tmp_path, range(1, 26)), rows, Faults(kills=[kill]), INTERVAL_S)
    assert (result.served_to_dead_station, result.lost_records, result.exact) == (5, 0, True)


def test_summaries_stored_twice_are_duplicated(tmp_path: Path) -> None:
    log = served(tmp_path, range(1, 21))
    # the same summary again under another interval end, and one row again under its identity (another unit tag)
    again = summary(11, 20, end=WALL0 + 2.5)
    repeated = summary(1, 10)[0] | {"unit": "km h-1"}
    result = reconcile_stream(log, summary(1, 10) + summary(11, 20) + again + [repeated], Faults(), INTERVAL_S)
    assert result.duplicated == 2 and not result.exact
    # overlapping counts: a summary counting records another one counts
    result = reconcile_stream(log, summary(1, 10) + summary(6, 15, end=WALL0 + 1.9) + summary(16, 20), Faults(),
                              INTERVAL_S)
    assert result.duplicated >= 1 and not result.exact


def test_altered_summaries_are_counted(tmp_path: Path) -> None:
    log = served(tmp_path, range(1, 61))
    float32 = struct.unpack("f", struct.pack("f", expected_summary(11, 20)["U_SD"][0] or 0.0))[0]
    rows = (summary(1, 10, T_SONIC={"value": 15.01})  # a value off
            + summary(11, 20, U_SD={"value": float32})  # rounded to float32 on the way
            + summary(21, 30, WS=None)  # a variable missing
            + summary(31, 40, W={"unit": "cm s-1"})  # another unit
            + summary(41, 50, end=WALL0 + 30.0)  # stamped far from when its records were served
            + summary(51, 60, U_N={"value": 11.0}))  # a count that fits no run of records
    result = reconcile_stream(log, rows, Faults(), INTERVAL_S)
    assert result.altered == 6 and not result.exact, result.examples
    # a summary of records with one missing inside does not fit a run: the spread of 1..9 and 11 is too wide
    mean = sum(record_values(k)[0] for k in (*range(1, 10), 11)) / 10
    rows = summary(1, 10, U={"value": mean})
    assert reconcile_stream(served(tmp_path, range(1, 12)), rows, Faults(), INTERVAL_S).altered == 1
    # and records never served
    assert reconcile_stream(served(tmp_path, range(1, 6)), summary(1, 10), Faults(), INTERVAL_S).altered == 1


def test_the_counting_windmaster_frames_decode_to_the_record_values(tmp_path: Path) -> None:
    driver = WindMasterDriver(WindMasterConfig(name=STREAM_SENSOR, port="tcp://127.0.0.1:4001"), station=STATION)
    instrument = CountingWindMaster("tcp://127.0.0.1:0", tmp_path / "log.jsonl")
    try:
        for k in (1, 2, 999, 123_456, 998_999):
            instrument.k = k - 1
            assert driver.parse(instrument.frame(0, 0.0)) == record_values(k)
    finally:
        instrument.close()
    assert math.isclose(expected_summary(1, 100)["U"][0] or 0.0, 0.0505)
