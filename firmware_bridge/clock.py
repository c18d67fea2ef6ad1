"""Board clock -> UTC: offset and drift estimated from time-sync exchanges, rollover unwrapping, reset detection.

The board counts milliseconds since reset in a u32 (it wraps after 49.7 days). Each TIME exchange gives one
sample: the board's count and the host's UTC at the middle of the round trip (error <= RTT/2). A least-squares
line through the recent samples maps board time to UTC; with one sample, or samples spanning under `min_span_s`,
the rate is taken as 1 (offset only). The mapping belongs to one boot of the board: a different `boot_id`, or
a count lagging the host clock by over a second, means the board reset, and every older sample is dropped.
`to_utc` refuses (returns None) for a boot it has no samples of, so a record is never stamped from another boot's
mapping.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

WRAP = 1 << 32
HALF_WRAP = 1 << 31
BACKWARDS_TOLERANCE_MS = 1000


@dataclass(frozen=True, slots=True)
class SyncSample:
    board_ms: int  # unwrapped
    host_s: float  # UTC, POSIX seconds, mid-point of the exchange
    rtt_s: float


@dataclass
class ClockCounters:
    samples: int = 0
    rejected_rtt: int = 0
    resets: int = 0
    rollovers: int = 0
    refused_stamps: int = 0


@dataclass
class BoardClock:
    max_rtt_s: float = 0.1
    window: int = 32
    min_span_s: float = 5.0
    max_drift_ppm: float = 1000.0
    boot_id: int | None = None
    counters: ClockCounters = field(default_factory=ClockCounters)
    _samples: deque[SyncSample] = field(default_factory=deque)

    def forget(self) -> None:
        """Drop the mapping (after the host set the board's counter, or lost track of the board)."""
        self._samples.clear()
        self.boot_id = None

    def unwrap(self, ticks_ms: int) -> int:
        """The unwrapped count nearest to the latest sample (valid within +-24.8 days of it)."""
        if not self._samples:
            return ticks_ms
        reference = self._samples[-1].board_ms
        delta = (ticks_ms - reference) % WRAP
        if delta >= HALF_WRAP:
            delta -= WRAP
        return reference + delta

    def _expected_ms(self, host_s: float) -> float:
        """Where the board count should be now, from the latest sample and host time (1 % rate allowance)."""
        last = self._samples[-1]
        elapsed_ms = max(0.0, (host_s - last.host_s) * 1000.0)
        return last.board_ms + 0.99 * elapsed_ms

    def observe(self, boot_id: int, ticks_ms: int, sent_s: float, received_s: float) -> str | None:
        """Add one TIME exchange; returns "reset" when it shows the board restarted, "rollover" when the u32
        counter wrapped since the previous sample, else None."""
        rtt = received_s - sent_s
        event: str | None = None
        if self.boot_id is not None and boot_id != self.boot_id:
            self.counters.resets += 1
            self._samples.clear()
            event = "reset"
        board_ms = self.unwrap(ticks_ms)
        if self._samples and board_ms < self._expected_ms((sent_s + received_s) / 2) - BACKWARDS_TOLERANCE_MS:
            self.counters.resets += 1
            self._samples.clear()
            board_ms = ticks_ms
            event = "reset"
        self.boot_id = boot_id
        if rtt < 0 or rtt > self.max_rtt_s:
            self.counters.rejected_rtt += 1
            return event
        if self._samples and board_ms // WRAP > self._samples[-1].board_ms // WRAP:
            self.counters.rollovers += 1
            event = event or "rollover"
        self._samples.append(SyncSample(board_ms, (sent_s + received_s) / 2, rtt))
        while len(self._samples) > self.window:
            self._samples.popleft()
        self.counters.samples += 1
        return event

    def _fit(self) -> tuple[float, float, float]:
        """(board_ms reference, host seconds at it, host seconds per board ms)."""
        samples = list(self._samples)
        best = min(samples, key=lambda s: s.rtt_s)
        span = (samples[-1].host_s - samples[0].host_s) if len(samples) > 1 else 0.0
        if span < self.min_span_s:
            return float(best.board_ms), best.host_s, 0.001
        mean_x = sum(s.board_ms for s in samples) / len(samples)
        mean_y = sum(s.host_s for s in samples) / len(samples)
        sxx = sum((s.board_ms - mean_x) ** 2 for s in samples)
        sxy = sum((s.board_ms - mean_x) * (s.host_s - mean_y) for s in samples)
        return mean_x, mean_y, sxy / sxx

    @property
    def drift_ppm(self) -> float | None:
        """How much faster the host runs than the board clock, in parts per million (None until measurable)."""
        if len(self._samples) < 2:
            return None
        _, _, rate = self._fit()
        return (rate * 1000.0 - 1.0) * 1e6

    @property
    def synced(self) -> bool:
        if not self._samples:
            return False
        drift = self.drift_ppm
        return drift is None or abs(drift) <= self.max_drift_ppm

    def to_utc(self, boot_id: int, ticks_ms: int) -> datetime | None:
        """UTC of a board timestamp from boot `boot_id`, or None when this clock has no mapping for that boot."""
        if boot_id != self.boot_id or not self._samples:
            self.counters.refused_stamps += 1
            return None
        x0, y0, rate = self._fit()
        return datetime.fromtimestamp(y0 + (self.unwrap(ticks_ms) - x0) * rate, UTC)
