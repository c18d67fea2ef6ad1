"""Stamping the records of a stream read in bursts: the instrument's cadence, anchored on arrival.

The runner reads a stream every `read_interval_s` (default 1 s), a second's records per wake-up, instead of waking
once per 20 Hz record (what the wake-ups cost: docs/performance.md, EDGE). Every record of a read arrived at or before
the moment of the read (`arrival`, monotonic), but the host no longer knows when each one did. What it does know is
the instrument's output rate (`frequency_hz`): consecutive records leave the instrument one period apart. So the
records of a burst are stamped one period apart, and the burst is placed as late as its arrival allows:

- the cadence continues from the previous burst: the k records of this one get `last + p, ..., last + k p`
  (`p = 1 / frequency_hz`, `last` the previous record's stamp), so a stream read at any interval gets the stamps an
  exact 20 Hz clock would give it, and a stall of the host (a burst of a second's records) is spread over the second
  it covered instead of piling onto one instant;
- never later than the arrival: if `last + k p` would be later than `arrival` (the previous stamps were late, or the
  instrument runs faster than its nominal rate), the burst ends at `arrival` instead, so the stamps ratchet down to
  the earliest arrivals seen — the best estimate the host has of when the instrument sent them;
- a whole period or more between `last + k p` and `arrival` is time the cadence cannot account for: records the
  instrument never sent or that were lost (or an instrument slower than its nominal rate). The burst moves later by
  whole periods, so the gap stays a gap on the 20 Hz grid: a lost record is an empty slot, counted as missing by
  the EC grid (`gateway.flux.rawperiods.place_on_grid`) — placed at the start of the burst, since the host cannot
  tell where in the burst it was;
- never earlier than the previous stamp (plus `MIN_STEP_S`): stamps increase. This rule wins over the one before:
  a burst read less than `count` times `MIN_STEP_S` after the previous one (the rest of a chunk the transport
  delivered in two reads) ends up to that many microseconds after its arrival rather than tie.

The reads are not at a fixed phase to the instrument's output (`ReadSchedule`): each one moves by a random fraction
of a period, so the stamps find the earliest arrivals within a few seconds of a connection; reads at a fixed phase
would see the records always equally late, and two instruments' stamps would keep different lateness (their
alignment, which the EC time-lag search depends on, off by up to a period).

Why this is honest: every stamp is at most the moment the host read the record (microseconds aside, above), as a
per-record arrival stamp is, and on a stream at its nominal rate it is late by less than one period plus the host's
scheduling latency (the record after the burst's last had not arrived yet, so that one arrived less than a period before
the read). A per-record arrival stamp is late by the scheduling latency alone; the period (50 ms at 20 Hz) is what
batching costs, bounded, and the EC processing aligns records by their order on the grid anyway (one record per 1/fs, as
EddyPro reads a raw file). The rate check of the interval summaries allows one period at either end of an interval for
it (`summaries.ARRIVAL_LATENCY_S`). Stamps are on the monotonic clock, so clock steps are detected and flagged as before
(`gateway/clock.py`).
"""

from __future__ import annotations

import math
import random

# stamps of consecutive records differ at least by this much, so they stay strictly increasing even when a burst
# has to be squeezed between the previous stamp and its arrival (an instrument faster than its nominal rate, a host
# stall). Two microseconds, not one: the raw archive keeps unix time in whole microseconds, and a monotonic stamp
# mapped to unix time (~1.8e9 s, where float64 resolves ~0.24 us) and scaled may move by up to ~0.5 us, so stamps
# one microsecond apart could land on the same microsecond (seen under load: tests/streams/test_runner.py)
MIN_STEP_S = 2e-6


class CadenceStamper:
    """Monotonic stamps for the records of each read, one `period_s` apart (module doc); `reset()` after a
    reconnect, when the cadence starts over."""

    def __init__(self, frequency_hz: float) -> None:
        if not frequency_hz > 0:
            raise ValueError(f"frequency_hz must be > 0, got {frequency_hz}")
        self.period_s = 1.0 / frequency_hz
        self.last: float | None = None
        self.lost_periods = 0  # whole periods the cadence could not account for (records lost or never sent)

    def reset(self) -> None:
        self.last = None

    def stamps(self, count: int, arrival: float) -> list[float]:
        """Stamps of `count` consecutive records that arrived at or before `arrival` (monotonic seconds)."""
        if count <= 0:
            return []
        p = self.period_s
        last = self.last
        if last is None:
            end = arrival
        else:
            end = last + count * p
            if end > arrival:
                end = arrival
            elif arrival - end >= p:
                gap = math.floor((arrival - end) / p)
                self.lost_periods += gap
                end += gap * p
        first = end - (count - 1) * p
        if last is not None and first <= last:
            floor = last + MIN_STEP_S
            # both sequences increase, so does their maximum. Capped at the arrival first and floored after, so
            # that they increase even when a burst arrived less than `count` times MIN_STEP_S after the previous
            # one (the rest of a chunk the transport delivered in two reads, seen under load): then the last
            # stamps pass the arrival by at most `count` times MIN_STEP_S, microseconds, far inside the
            # scheduling latency an arrival stamp carries anyway
            stamps = [max(min(first + i * p, arrival), floor + i * MIN_STEP_S) for i in range(count)]
        else:
            stamps = [first + i * p for i in range(count)]
            stamps[-1] = end
        self.last = stamps[-1]
        return stamps


class ReadSchedule:
    """When a stream is read: every `interval_s` on average, each read moved by up to half a period either way
    (module doc), on a fixed schedule so that a late wake-up does not shift the following ones (after a stall of more
than an interval the schedule starts over)."""

    def __init__(self, interval_s: float, frequency_hz: float, start: float, rng: random.Random | None = None) -> None:
        self.interval_s = interval_s
        self.dither_s = min(1.0 / frequency_hz, interval_s)
        self._uniform = (rng or random.Random()).random
        self.due = start + interval_s

    def advance(self, now: float) -> float:
        """The next read's time, after the read at `now` (monotonic seconds)."""
        step = self.interval_s + (self._uniform() - 0.5) * self.dither_s
        due = self.due + step
        self.due = due if due > now else now + step  # after a stall longer than an interval: start over from now
        return self.due
