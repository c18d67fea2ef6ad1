"""Cadence stamping of records read in bursts (gateway/edge/streams/stamping.py): stamps increase, are one period
apart, never later than the read; a host stall is spread back over the time it covered; a lost record stays an empty
slot on the EC grid. The instrument is simulated by exact send times; the reads by chosen read moments."""

from __future__ import annotations

import random

import numpy as np
import pytest

from gateway.edge.streams.stamping import CadenceStamper, ReadSchedule
from gateway.flux.rawperiods import grid_phase, place_on_grid

FS = 20.0
P = 1.0 / FS


def read_in_bursts(sent: list[float], reads: list[float], stamper: CadenceStamper) -> tuple[list[float], list[float]]:
    """Stamps of the records `sent` (their arrival times) read at the moments `reads`, and each one's read; the
    instrument sends on after the last read (the records after it are not read)."""
    stamps: list[float] = []
    read_at: list[float] = []
    i = 0
    for moment in reads:
        burst = []
        while i < len(sent) and sent[i] <= moment:
            burst.append(sent[i])
            i += 1
        stamps += stamper.stamps(len(burst), moment)
        read_at += [moment] * len(burst)
    assert i < len(sent), "the instrument sends beyond the last read"
    return stamps, read_at


def reads_every(interval: float, until: float, offset: float = 0.013) -> list[float]:
    return [offset + k * interval for k in range(1, int(until / interval))]


def test_a_burst_is_stamped_one_period_apart_ending_at_its_arrival() -> None:
    stamper = CadenceStamper(FS)
    assert stamper.stamps(4, 10.0) == pytest.approx([10.0 - 3 * P, 10.0 - 2 * P, 10.0 - P, 10.0])
    assert stamper.stamps(0, 10.1) == []


@pytest.mark.parametrize("jitter_s", [0.0, 0.02])
def test_bursts_at_the_nominal_rate_get_the_instruments_cadence(jitter_s: float) -> None:
    # records arrive 3 ms after each 50-ms tick for a minute, read every 0.2 s at an unrelated phase, each read
    # late by up to `jitter_s` (the host's scheduling)
    sent = [0.003 + k * P for k in range(1200)]
    rng = np.random.default_rng(7)
    reads = [r + float(rng.uniform(0, jitter_s)) for r in reads_every(0.2, 60.0)]
    stamps, read_at = read_in_bursts(sent, reads, CadenceStamper(FS))
    steps = np.diff(stamps)
    assert np.all(steps > 0), "strictly increasing"
    assert all(s <= r for s, r in zip(stamps, read_at, strict=True)), "none later than its read"
    lateness = np.array(stamps) - np.array(sent[:len(stamps)])
    assert lateness.min() >= -1e-9, "none before the record was sent"
    assert lateness.max() < P, "late by less than one period"
    # the stamps ratchet onto the earliest arrivals seen and otherwise stay one period apart
    assert np.mean(np.isclose(steps, P, atol=1e-9)) > 0.99
    assert lateness[-100:].max() - lateness[-100:].min() < 1e-9


def test_the_stamps_sit_on_the_ec_grid_one_record_per_slot() -> None:
    sent = [0.003 + k * P for k in range(1200)]
    stamps, _ = read_in_bursts(sent, reads_every(0.2, 60.0), CadenceStamper(FS))
    times = np.array(stamps[40:])
    start = float(np.floor(times[0]))
    n = int((times[-1] - start) * FS) + 1
    phase = grid_phase(times, start, FS)
    _, slots, doubled, moved = place_on_grid(times, start, FS, n, phase)
    assert doubled == 0 and moved == 0
    assert slots.size == times.size and np.unique(slots).size == times.size


def test_a_host_stall_is_spread_back_over_the_time_it_covered() -> None:
    sent = [0.003 + k * P for k in range(200)]
    reads = [r for r in reads_every(0.2, 10.0) if not 3.0 < r < 4.5]  # the host slept 1.5 s
    stamps, read_at = read_in_bursts(sent, reads, CadenceStamper(FS))
    burst = [i for i, r in enumerate(read_at) if r == min(r for r in reads if r > 4.5)]
    assert len(burst) >= 30
    assert all(s <= r for s, r in zip(stamps, read_at, strict=True))
    # the burst's records keep their cadence: one period apart, as sent, not piled onto the read
    assert np.diff([stamps[i] for i in burst]) == pytest.approx(P, abs=1e-9)
    assert np.array(stamps)[burst] - np.array(sent)[burst] == pytest.approx(stamps[burst[0]] - sent[burst[0]])


def test_a_record_lost_in_a_burst_stays_a_missing_slot() -> None:
    sent = [0.003 + k * P for k in range(400)]
    lost = 250
    kept = sent[:lost] + sent[lost + 1:]
    stamper = CadenceStamper(FS)
    stamps, read_at = read_in_bursts(kept, reads_every(0.2, 20.0), stamper)
    assert all(s <= r for s, r in zip(stamps, read_at, strict=True))
    assert stamper.lost_periods == 1
    times = np.array(stamps[100:])
    start = float(np.floor(times[0]))
    n = round((times[-1] - start) * FS) + 1
    phase = grid_phase(times, start, FS)
    _, slots, doubled, _ = place_on_grid(times, start, FS, n, phase)
    assert doubled == 0
    span = int(slots[-1] - slots[0]) + 1
    assert span - slots.size == 1, "exactly one empty slot between the first and the last record"
    assert np.diff(slots).max() == 2


def test_a_fast_instrument_is_never_stamped_after_its_reads() -> None:
    # 5 % faster than nominal: the cadence would run ahead of the arrivals; stamps stay at or before each read
    sent = [0.001 + k * P / 1.05 for k in range(1260)]
    stamps, read_at = read_in_bursts(sent, reads_every(0.2, 60.0), CadenceStamper(FS))
    assert all(s <= r for s, r in zip(stamps, read_at, strict=True))
    assert np.all(np.diff(stamps) > 0)
    rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    assert rate == pytest.approx(FS * 1.05, rel=0.005), "the rate check still sees the instrument's own rate"


def test_a_slow_instrument_shows_its_own_rate() -> None:
    sent = [0.001 + k * P / 0.97 for k in range(1164)]
    stamper = CadenceStamper(FS)
    stamps, read_at = read_in_bursts(sent, reads_every(0.2, 60.0), stamper)
    assert all(s <= r for s, r in zip(stamps, read_at, strict=True))
    rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    assert rate == pytest.approx(FS * 0.97, rel=0.005)
    assert stamper.lost_periods > 0  # the slots it never filled


def test_a_chunk_read_in_two_reads_microseconds_apart_still_gets_increasing_stamps() -> None:
    # the transport delivered a stalled second's records as one chunk and the read took part of it; the next read,
    # 10 us later, takes the other 30: there is no room for 30 stamps between the last one and that read, so they
    # pass it by microseconds instead of tying (seen under load in CI: the archive's times did not increase)
    from gateway.edge.streams.stamping import MIN_STEP_S
    stamper = CadenceStamper(FS)
    first = stamper.stamps(20, 100.0)
    second = stamper.stamps(30, 100.00001)
    steps = np.diff(first + second)
    assert np.all(steps >= MIN_STEP_S * (1 - 1e-6)), "strictly increasing, at least MIN_STEP_S apart"
    assert second[-1] - 100.00001 <= 30 * MIN_STEP_S, "past the read by microseconds at most"


def test_reset_starts_the_cadence_over() -> None:
    stamper = CadenceStamper(FS)
    stamper.stamps(3, 1.0)
    stamper.reset()
    assert stamper.stamps(2, 0.5) == pytest.approx([0.5 - P, 0.5])  # a new connection: no floor from before


def test_a_frequency_must_be_positive() -> None:
    with pytest.raises(ValueError, match="frequency_hz"):
        CadenceStamper(0.0)


def test_two_instruments_read_on_dithered_schedules_end_up_aligned() -> None:
    # both instruments send at the same instants; each runner reads on its own schedule, started at its own phase.
    # Their stamps must come to the same lateness (the EC time lag between them depends on it).
    sent = [0.003 + k * P for k in range(600)]
    lateness = []
    for seed, start in ((1, 0.0371), (2, 0.0112)):
        schedule = ReadSchedule(0.2, FS, start, rng=random.Random(seed))
        reads = []
        while schedule.due < 29.0:
            reads.append(schedule.due)
            schedule.advance(schedule.due)
        stamps, _ = read_in_bursts(sent, reads, CadenceStamper(FS))
        lateness.append(np.array(stamps[-100:]) - np.array(sent[len(stamps) - 100:len(stamps)]))
    assert abs(float(np.mean(lateness[0])) - float(np.mean(lateness[1]))) < 0.05 * P


def test_reads_at_a_fixed_phase_would_not_align_them() -> None:
    # the reason for the dither: reads every 4 periods exactly keep each runner's first lateness for ever
    sent = [0.003 + k * P for k in range(600)]
    lateness = []
    for start in (0.0371, 0.0112):
        reads = [start + k * 0.2 for k in range(1, 140)]
        stamps, _ = read_in_bursts(sent, reads, CadenceStamper(FS))
        lateness.append(float(np.mean(np.array(stamps[-100:]) - np.array(sent[len(stamps) - 100:len(stamps)]))))
    assert abs(lateness[0] - lateness[1]) > 0.3 * P


def test_the_read_schedule_keeps_its_mean_interval_and_restarts_after_a_stall() -> None:
    schedule = ReadSchedule(0.2, FS, 0.0, rng=random.Random(3))
    moments = [schedule.due]
    for _ in range(999):
        moments.append(schedule.advance(moments[-1]))
    steps = np.diff(moments)
    assert steps.min() >= 0.2 - P / 2 and steps.max() <= 0.2 + P / 2
    assert float(np.mean(steps)) == pytest.approx(0.2, abs=0.005)
    after_stall = schedule.advance(moments[-1] + 3.0)
    assert moments[-1] + 3.0 < after_stall <= moments[-1] + 3.0 + 0.2 + P / 2


def test_squeezed_stamps_stay_distinct_and_ordered_in_the_archives_microseconds() -> None:
    # a burst with more records than fit between the previous stamp and its read (a host stall, a fast instrument)
    # starts MIN_STEP_S after the previous stamp; the archive keeps unix time in whole microseconds
    # (gateway/rawarchive/columnar.py), where float64 resolves only ~0.24 us: the step must survive that rounding
    rng = random.Random(7)
    stamper = CadenceStamper(FS)
    monotonic = [*stamper.stamps(1, 1000.0)]
    arrival = 1000.0
    for _ in range(2000):
        arrival += 1.0 + rng.uniform(-0.01, 0.01)
        monotonic += stamper.stamps(int(FS) + 1 + rng.randrange(3), arrival)  # one to three records too many
    offset = 1_764_064_800.0 + rng.random()  # the clock's monotonic -> unix mapping
    micros = np.array([round((t + offset) * 1_000_000.0) for t in monotonic])
    assert np.all(np.diff(monotonic) > 0)
    assert np.all(np.diff(micros) > 0), np.flatnonzero(np.diff(micros) <= 0)[:10]
