"""Timestamp provenance on the station node: is the system clock synchronised, and a monotonic -> UTC mapping that
notices when the wall clock steps.

Why a mapping: a 20 Hz record is stamped when its line end arrives. Reading the wall clock (`time.time()`) per
record would put every NTP step or manual `date -s` straight into the data: a half hour could contain the same
second twice or a gap that never happened. Instead each frame is stamped on the monotonic clock (which never steps)
and mapped to UTC through a reference pair (monotonic, realtime) captured at most every `resync_interval_s`. When a
new pair disagrees with the old one by more than `step_threshold_s` (|Δrealtime − Δmonotonic|), the wall clock
has stepped: the step is recorded (`ClockStep`) and the mapper moves to the new reference, so frames before and
after it are each stamped consistently, and whoever aggregates them (summaries, archive files) can refuse to mix
them silently. Slewing (NTP's gradual correction, at most 500 ppm) stays far below the threshold and is followed
at every resync.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.driver_api.clock import kernel_clock_synced

# a reference pair is read again (up to CAPTURE_TRIES times) if its two monotonic reads were further apart than this
CAPTURE_GOOD_S = 0.0005
CAPTURE_TRIES = 5


@dataclass(frozen=True, slots=True)
class ClockStep:
    """The wall clock jumped by `size_s` (positive: forward) somewhere between two reference captures."""

    monotonic: float  # monotonic time at which the step was noticed
    size_s: float
    before_utc: float  # the old mapping's UTC at `monotonic`
    after_utc: float  # the new mapping's UTC at `monotonic`

    def describe(self) -> str:
        when = datetime.fromtimestamp(self.after_utc, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"system clock stepped {self.size_s:+.3f} s at {when}"


@dataclass(frozen=True, slots=True)
class ClockState:
    """Provenance of the current mapping: what a stamp is worth."""

    synced: bool  # the kernel reported the system clock synchronised at the last check
    epoch: int  # increments at every detected step; stamps of different epochs must not be mixed silently


class ClockMapper:
    """Maps monotonic arrival times to UTC (unix seconds); thread-safe.

    `resync()` (cheap; call it whenever convenient, it rate-limits itself) captures a new reference pair, detects
    steps and re-reads the kernel's sync state every `sync_check_s`. `to_utc(monotonic)` maps a time stamp.
    Clocks are injectable for tests and for accelerated benchmarks.
    """

    def __init__(
        self,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        realtime: Callable[[], float] = time.time,
        synced: Callable[[], bool] = kernel_clock_synced,
        step_threshold_s: float = 0.05,
        resync_interval_s: float = 1.0,
        sync_check_s: float = 60.0,
    ) -> None:
        self.monotonic = monotonic
        self.realtime = realtime
        self._synced_fn = synced
        self.step_threshold_s = step_threshold_s
        self.resync_interval_s = resync_interval_s
        self.sync_check_s = sync_check_s
        self._lock = threading.Lock()
        self.steps: list[ClockStep] = []
        self._epoch = 0
        # (monotonic, realtime), replaced whole: one attribute read is atomic, so `to_utc` (every record of a
        # 20 Hz stream) needs no lock
        self._ref: tuple[float, float] = self._capture()
        self._synced = bool(synced())
        self._synced_checked = self._ref[0]

    def _capture(self) -> tuple[float, float]:
        # read monotonic on both sides of realtime and use the midpoint, so a preemption between the two reads
        # cannot masquerade as a step. The midpoint is still off by up to half the time between the monotonic
        # reads, and that error moves the mapping (below the step threshold it is taken as slew): a 40-ms
        # preemption on a loaded host moved UTC stamps back by a 50-Hz period, so the archive's times went
        # backwards (CI, 2026-12-06). So the pair read with the least time between its monotonic reads of up to
        # CAPTURE_TRIES is kept, and a pair read within CAPTURE_GOOD_S is kept at once (the usual case: one try).
        best: tuple[float, float, float] | None = None
        for _ in range(CAPTURE_TRIES):
            before = self.monotonic()
            real = self.realtime()
            after = self.monotonic()
            spread = after - before
            if best is None or spread < best[0]:
                best = (spread, (before + after) / 2.0, real)
            if spread <= CAPTURE_GOOD_S:
                break
        assert best is not None
        return best[1], best[2]

    @property
    def state(self) -> ClockState:
        with self._lock:
            return ClockState(self._synced, self._epoch)

    def to_utc(self, monotonic: float) -> float:
        ref_mono, ref_real = self._ref
        return ref_real + (monotonic - ref_mono)

    def resync(self, force: bool = False) -> ClockStep | None:
        """Capture a new reference pair if `resync_interval_s` has passed; return the step if one is detected."""
        now = self.monotonic()
        if not force and now - self._ref[0] < self.resync_interval_s:
            return None
        mono, real = self._capture()
        step: ClockStep | None = None
        with self._lock:
            ref_mono, ref_real = self._ref
            predicted = ref_real + (mono - ref_mono)
            error = real - predicted
            if abs(error) > self.step_threshold_s:
                step = ClockStep(monotonic=mono, size_s=error, before_utc=predicted, after_utc=real)
                self.steps.append(step)
                self._epoch += 1
            self._ref = (mono, real)
            check_sync = step is not None or mono - self._synced_checked >= self.sync_check_s
        if check_sync:
            synced = bool(self._synced_fn())
            with self._lock:
                self._synced = synced
                self._synced_checked = mono
        return step
