"""The short chaos run in CI: the real station, Mosquitto (shipped config), central service and InfluxDB as separate
processes, every fault kind injected once (13 faults) and the station killed four times in the middle of a buffer
write; then the exact reconciliation of what the counting probes and the counting WindMaster served against what
InfluxDB holds: readings, the stream's interval summaries and the station's flux records; and of the stream's records
against the station's raw archive files (docs/reliability.md, "Chaos runs"). bench/chaos.py runs the long version.
No timing is asserted: drain times are only printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.rawarchive.archive import FLUSH_AFTER_S, FLUSH_EVERY
from gateway.testing.chaos import FAULT_KINDS, MIDWRITE, ChaosPlan, SiteSettings, run_chaos
from gateway.testing.chaos.archiveledger import kill_window
from gateway.testing.chaos.streamledger import STREAM_SLACK_S

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# the station's receipt timeout shortened; the counting WindMaster at 20 Hz, summaries every 5 s, the station's flux
# runner on it with 30-s periods (waiting at most 5 s for a period's records)
SETTINGS = SiteSettings(receipt_timeout_s=5.0, stream_hz=20.0, summary_interval_s=5.0, flux_period_s=30.0,
                        flux_max_wait_s=5.0)


@pytest.mark.timeout(900)
def test_committed_readings_are_stored_exactly_once_and_unaltered_through_every_fault(tmp_path: Path) -> None:
    plan = ChaosPlan(rounds=1, midwrite_kills=4, seed=8, outage_s=(1.0, 3.0), settle_s=(0.2, 0.5),
                     drain_timeout_s=120, site=SETTINGS)
    report = run_chaos(tmp_path, plan, progress=print)
    print(report.render())
    kinds = report.by_kind()
    assert {kind: len(records) for kind, records in kinds.items()} == {**{kind: 1 for kind in FAULT_KINDS},
                                                                        MIDWRITE: 4}
    result = report.reconciliation
    assert result.served_polls > 100  # the probes were read all along
    assert result.examples == []
    assert (result.lost, result.duplicated, result.altered) == (0, 0, 0)
    assert result.stored_readings == result.committed_readings
    # what may be excused at all is bounded by the faults that can cause it: a poll or two per kill or pull
    assert result.in_flight_at_kill + result.served_to_dead_station <= 3 * (1 + 4)
    assert result.in_flight_at_pull <= 3 * 1
    assert report.station_exit_code == 0
    # the stream instrument's interval summaries: every one the station closed stored once, each the exact summary
    # of the records it counts, and the stream alive after the last fault
    stream = result.stream
    assert stream is not None and stream.examples == []
    assert stream.summaries_stored > 10 and stream.counted_after_faults > 0
    assert (stream.lost_records, stream.duplicated, stream.altered) == (0, 0, 0)
    assert stream.records_counted == stream.committed_records
    # excused only: the interval open in a killed station's memory, one per station kill at most
    kills = 1 + 4
    assert stream.kills_that_cut_an_interval <= kills
    assert stream.in_flight_at_kill + stream.served_to_dead_station <= kills * (
        SETTINGS.summary_interval_s + STREAM_SLACK_S) * SETTINGS.stream_hz
    # the raw archive: every record the station read is in its files exactly once, in order, unaltered, read back
    # with the project's reader (the .part files killed stations left included); excused only the records a kill
    # took before its writer flushed them, at most a kill window of records at each kill
    archive = result.archive
    assert archive is not None and archive.examples == []
    assert archive.files >= kills and archive.files_unreadable == 0
    assert archive.archived_records > 0 and archive.archived_after_faults > 0
    assert (archive.lost, archive.duplicated, archive.altered, archive.out_of_order) == (0, 0, 0, 0)
    assert archive.archived_records == archive.committed_records
    assert archive.kills_that_lost_records <= kills
    assert archive.most_lost_at_one_kill <= kill_window(FLUSH_EVERY, FLUSH_AFTER_S, SETTINGS.stream_hz) * (
        SETTINGS.stream_hz)
    # the flux runner: every averaging period from the station's first start to the instrument's last record has
    # exactly one flux record stored centrally, whatever the kills did to its records
    flux = result.flux
    assert flux is not None and flux.expected >= 1
    assert (flux.missing, flux.duplicated) == (0, 0), flux.examples
    # or none, counted, where the archive holds no record of the period (every one of them excused above)
    assert flux.stored + flux.no_raw_data == flux.expected
