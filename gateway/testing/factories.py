"""Builders of model objects for tests and benchmarks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.model import QualityFlag, Reading, TimeSource


def make_readings(count: int, start: float = 400.0, *, station: str = "st01", sensor: str = "co2",
                  t0: datetime = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)) -> list[Reading]:
    """`count` GOOD CO2 readings one second apart, values start, start+1, ..."""
    return [
        Reading(station=station, sensor=sensor, variable="CO2", value=start + i, unit="umol mol-1",
                time=t0 + timedelta(seconds=i), time_source=TimeSource.GATEWAY, clock_synced=True,
                qc=QualityFlag.GOOD)
        for i in range(count)
    ]
