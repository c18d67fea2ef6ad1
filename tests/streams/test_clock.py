"""Clock provenance: monotonic -> UTC mapping, step detection, and a step flagging the summary it falls into."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.csat3b.driver import CSAT3BConfig, CSAT3BDriver
from drivers.csat3b.simulator import CSAT3BSimulator
from gateway.clock import ClockMapper
from gateway.driver_api import kernel_clock_synced
from gateway.model import QualityFlag

from .helpers import RunnerHarness, wait_for


class FakeClocks:
    def __init__(self) -> None:
        self.mono = 100.0
        self.real = 1_700_000_000.0

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.real += seconds


def make(fake: FakeClocks) -> ClockMapper:
    return ClockMapper(monotonic=lambda: fake.mono, realtime=lambda: fake.real, synced=lambda: True,
                       step_threshold_s=0.05, resync_interval_s=1.0)


def test_maps_monotonic_to_utc() -> None:
    fake = FakeClocks()
    mapper = make(fake)
    assert mapper.to_utc(fake.mono + 2.5) == pytest.approx(fake.real + 2.5)


def test_slew_below_threshold_is_followed_without_a_step() -> None:
    fake = FakeClocks()
    mapper = make(fake)
    for _ in range(10):
        fake.advance(1.0)
        fake.real += 0.0005  # 500 ppm, NTP's maximum slew
        assert mapper.resync() is None
    assert mapper.to_utc(fake.mono) == pytest.approx(fake.real)
    assert mapper.steps == [] and mapper.state.epoch == 0


@pytest.mark.parametrize("size", [3.0, -0.2])
def test_a_step_is_detected_with_its_size_and_starts_a_new_epoch(size: float) -> None:
    fake = FakeClocks()
    mapper = make(fake)
    fake.advance(1.0)
    before = mapper.to_utc(fake.mono)
    fake.real += size
    step = mapper.resync()
    assert step is not None and step.size_s == pytest.approx(size)
    assert step.before_utc == pytest.approx(before)
    assert mapper.state.epoch == 1
    assert mapper.to_utc(fake.mono) == pytest.approx(fake.real)  # stamps after the step use the new reference


def test_a_reference_read_across_a_preemption_is_read_again() -> None:
    # the first try of a resync is preempted for 40 ms between its monotonic reads (a loaded host): its midpoint is
    # 20 ms off, which the mapping would take as slew and move UTC stamps back by a 50-Hz period; the next try,
    # undisturbed, is the one kept
    fake = FakeClocks()
    mapper = make(fake)
    fake.advance(1.0)
    reads = 0

    def monotonic() -> float:
        nonlocal reads
        reads += 1
        if reads == 3:  # (1: resync's own look) the first try's second monotonic read, 40 ms after realtime
            fake.advance(0.04)
        return fake.mono

    mapper.monotonic = monotonic
    assert mapper.resync() is None
    assert reads == 5, "read again, once"
    assert mapper.to_utc(fake.mono) == pytest.approx(fake.real, abs=1e-9)


def test_resync_is_rate_limited() -> None:
    fake = FakeClocks()
    mapper = make(fake)
    fake.mono += 0.5
    fake.real += 10
    assert mapper.resync() is None  # too early to look
    fake.mono += 0.6
    assert mapper.resync() is not None


def test_kernel_clock_synced_answers_a_bool() -> None:
    assert kernel_clock_synced() in (True, False)


@pytest.mark.integration
def test_a_clock_step_flags_the_summary_and_closes_the_archive_file(tmp_path: Path) -> None:
    import time

    offset = [0.0]
    clock = ClockMapper(realtime=lambda: time.time() + offset[0], synced=lambda: True, resync_interval_s=0.1)
    with CSAT3BSimulator("tcp://127.0.0.1:0", frequency_hz=50) as sim, \
            RunnerHarness(CSAT3BDriver, CSAT3BConfig(name="csat", port=sim.tcp_endpoint, frequency_hz=50),
                          tmp_path / "raw", summary_interval_s=3600, clock=clock) as harness:
        wait_for(lambda: harness.runner.health.good >= 20, what="records")
        offset[0] = 5.0
        wait_for(lambda: harness.runner.health.clock_steps == 1, what="the step noticed")
        wait_for(lambda: harness.runner.health.archive_files >= 1, what="the archive file closed at the step")
        good = harness.runner.health.good
        wait_for(lambda: harness.runner.health.good >= good + 20, what="records after the step")
    flagged = [r for r in harness.readings if r.variable == "U"]
    assert flagged and flagged[0].clock_synced is False and flagged[0].qc is QualityFlag.SUSPECT
    assert flagged[0].qc_reason is not None and "stepped +5" in flagged[0].qc_reason
    assert len(harness.closed) >= 2  # one file before the step, one after


@pytest.mark.integration
def test_after_a_backward_step_no_summary_interval_is_sent_twice(tmp_path: Path) -> None:
    import time

    offset = [0.0]
    clock = ClockMapper(realtime=lambda: time.time() + offset[0], synced=lambda: True, resync_interval_s=0.1)
    with CSAT3BSimulator("tcp://127.0.0.1:0", frequency_hz=50) as sim, \
            RunnerHarness(CSAT3BDriver, CSAT3BConfig(name="csat", port=sim.tcp_endpoint, frequency_hz=50),
                          tmp_path / "raw", summary_interval_s=1, clock=clock) as harness:
        wait_for(lambda: harness.runner.health.summaries >= 2, what="two complete summaries")
        offset[0] = -2.5  # back over the intervals just sent
        wait_for(lambda: harness.runner.health.clock_steps == 1, what="the step noticed")
        sent = harness.runner.health.summaries
        wait_for(lambda: harness.runner.health.summaries >= sent + 3, what="summaries after the step")
    ends = [r.time for r in harness.readings if r.variable == "U"]
    assert ends == sorted(set(ends)), "an interval end was summarised twice or out of order"
    after_step = [r for r in harness.readings if r.variable == "U" and "stepped -2.5" in (r.qc_reason or "")]
    assert after_step and after_step[0].qc is QualityFlag.SUSPECT and after_step[0].clock_synced is False
    assert any("already sent (clock stepped back)" in (r.qc_reason or "") for r in harness.readings
               if r.variable == "U")
