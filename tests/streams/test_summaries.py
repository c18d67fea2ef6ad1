"""The output-rate check of interval summaries: a drifting instrument clock is flagged, the host's scheduling latency
on a short interval is not."""

from __future__ import annotations

import pytest

from gateway.driver_api import StreamColumn
from gateway.edge.streams.summaries import ARRIVAL_LATENCY_S, IntervalSummary, summary_readings
from gateway.model import QualityFlag


def _summary(arrivals: list[float]) -> IntervalSummary:
    summary = IntervalSummary(1, start=0.0)
    for mono in arrivals:
        summary.add((1.0,), mono, None, None)
    return summary


def _flag(summary: IntervalSummary, interval_s: float, frequency_hz: float) -> QualityFlag:
    readings = summary_readings(summary, station="st1", sensor="sonic", columns=[StreamColumn("U", "m s-1")],
                                end=interval_s, clock_synced=True, interval_s=interval_s,
                                frequency_hz=frequency_hz, rate_tolerance=0.01, u_index=None, v_index=None)
    return readings[0].qc


def test_a_late_first_frame_on_a_short_interval_is_not_a_drifting_clock() -> None:
    # 40 Hz over 1 s, the first frame read 15 ms late: the measured rate is ~1.5 % fast
    arrivals = [0.015] + [k / 40 for k in range(1, 40)]
    assert _flag(_summary(arrivals), interval_s=1, frequency_hz=40) is QualityFlag.GOOD


@pytest.mark.parametrize("drift", [0.02, -0.02])
def test_a_clock_two_percent_off_over_a_minute_is_flagged(drift: float) -> None:
    arrivals = [k / (20 * (1 + drift)) for k in range(int(60 * 20 * (1 + drift)))]
    assert _flag(_summary(arrivals), interval_s=60, frequency_hz=20) is QualityFlag.SUSPECT


def test_the_latency_allowance_shrinks_with_the_interval() -> None:
    # a 1.5 % error over a minute is beyond anything scheduling latency explains
    arrivals = [k / (20 * 1.015) for k in range(int(60 * 20 * 1.015))]
    assert 2 * ARRIVAL_LATENCY_S / 60 < 0.005
    assert _flag(_summary(arrivals), interval_s=60, frequency_hz=20) is QualityFlag.SUSPECT
