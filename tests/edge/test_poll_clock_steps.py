"""Polled readings and system clock steps: flagged like the streams' summaries, by the same ClockMapper.

The driver here is a stand-in at our own boundary (the Driver protocol): it stamps each reading with the fake wall
clock when polled, as a real driver stamps with the gateway's clock when the reply arrives."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

import pytest

from gateway.clock import ClockMapper
from gateway.driver_api import Driver, SensorConfig
from gateway.edge.bus import SensorRunner
from gateway.model import QualityFlag, Reading, TimeSource


class Clocks:
    def __init__(self) -> None:
        self.mono = 1000.0
        self.real = 1_795_600_800.0  # 2026-11-25T10:00:00Z

    def tick(self, seconds: float) -> None:
        self.mono += seconds
        self.real += seconds


class WallClockProbe:
    """Answers each poll with one value stamped by `clocks.real`; `script` may change what it reports."""

    Config = SensorConfig
    clocks: Clocks
    value: float | None = 400.0
    source = TimeSource.GATEWAY

    def __init__(self, config: SensorConfig, *, station: str) -> None:
        self.station = station

    def open(self) -> None:
        pass

    def poll(self) -> list[Reading]:
        value = self.value
        return [Reading(station=self.station, sensor="probe", variable="CO2", value=value, unit="umol mol-1",
                        time=datetime.fromtimestamp(self.clocks.real, UTC), time_source=self.source,
                        clock_synced=True, qc=QualityFlag.GOOD if value is not None else QualityFlag.MISSING)]

    def close(self) -> None:
        pass


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


@pytest.fixture
def runner(clocks: Clocks) -> SensorRunner:
    WallClockProbe.clocks = clocks
    mapper = ClockMapper(monotonic=lambda: clocks.mono, realtime=lambda: clocks.real, synced=lambda: True)
    return SensorRunner(cast("type[Driver]", WallClockProbe), SensorConfig(name="probe", driver="fake", interval_s=10),
                        "st1", clock=mapper)


def poll_every_10_s(runner: SensorRunner, clocks: Clocks, polls: int) -> list[Reading]:
    readings = []
    for _ in range(polls):
        clocks.tick(10)
        readings.extend(runner.poll())
    return readings


def test_without_a_step_nothing_is_flagged(runner: SensorRunner, clocks: Clocks) -> None:
    readings = poll_every_10_s(runner, clocks, 5)
    assert [(r.qc, r.clock_synced, r.qc_reason) for r in readings] == [(QualityFlag.GOOD, True, None)] * 5
    assert runner.health.clock_steps == 0


def test_the_poll_after_a_forward_step_is_flagged(runner: SensorRunner, clocks: Clocks) -> None:
    before = poll_every_10_s(runner, clocks, 2)
    clocks.real += 300.0  # NTP steps the clock 5 minutes forward between two polls
    after = poll_every_10_s(runner, clocks, 3)

    assert all(r.qc is QualityFlag.GOOD for r in before)
    first, *rest = after
    assert (first.qc, first.clock_synced) == (QualityFlag.SUSPECT, False)
    assert first.qc_reason is not None and "system clock stepped +300.000 s" in first.qc_reason
    assert [(r.qc, r.clock_synced) for r in rest] == [(QualityFlag.GOOD, True)] * 2
    assert runner.health.clock_steps == 1


def test_after_a_backward_step_readings_over_times_already_sent_are_flagged(runner: SensorRunner,
                                                                             clocks: Clocks) -> None:
    before = poll_every_10_s(runner, clocks, 3)
    clocks.real -= 35.0  # back by 3.5 polls
    after = poll_every_10_s(runner, clocks, 6)

    latest_before = before[-1].time
    overlapping = [r for r in after if r.time <= latest_before]
    new = [r for r in after if r.time > latest_before]
    assert len(overlapping) == 3 and len(new) == 3
    assert all(r.qc is QualityFlag.SUSPECT and not r.clock_synced for r in overlapping)
    assert all("overlaps readings sent before the system clock stepped -35.000 s" in (r.qc_reason or "")
               for r in overlapping)
    assert [(r.qc, r.clock_synced, r.qc_reason) for r in new] == [(QualityFlag.GOOD, True, None)] * 3
    assert runner.health.readings_flagged_for_clock == 3


def test_missing_stays_missing_and_a_device_clock_is_not_flagged(runner: SensorRunner, clocks: Clocks) -> None:
    poll_every_10_s(runner, clocks, 1)
    WallClockProbe.value = None
    try:
        clocks.real += 60.0
        [gap] = poll_every_10_s(runner, clocks, 1)
        WallClockProbe.value, WallClockProbe.source = 1.0, TimeSource.DEVICE
        clocks.real += 60.0
        [own_clock] = poll_every_10_s(runner, clocks, 1)
    finally:
        WallClockProbe.value, WallClockProbe.source = 400.0, TimeSource.GATEWAY
    assert (gap.value, gap.qc, gap.clock_synced) == (None, QualityFlag.MISSING, False)
    assert gap.qc_reason is not None and "stepped +60.000 s" in gap.qc_reason
    assert (own_clock.qc, own_clock.clock_synced, own_clock.qc_reason) == (QualityFlag.GOOD, True, None)


def test_a_step_during_a_failing_poll_flags_the_next_readings(runner: SensorRunner, clocks: Clocks) -> None:
    poll_every_10_s(runner, clocks, 1)

    def broken() -> list[Reading]:
        from gateway.driver_api import DeviceError, FailureKind

        raise DeviceError(FailureKind.TIMEOUT, "no reply")

    runner.driver.poll = broken  # type: ignore[method-assign]
    clocks.real += 120.0
    assert poll_every_10_s(runner, clocks, 1) == []
    del runner.driver.poll  # back to the class's poll
    [after] = poll_every_10_s(runner, clocks, 1)
    assert after.qc is QualityFlag.SUSPECT and "stepped +120.000 s" in (after.qc_reason or "")
