"""Shared fixtures: private Mosquitto and InfluxDB instances, started per test (both start in well under a second),
so a test that stops or fills one never affects another."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.testing.services import (
    InfluxInstance,
    MosquittoInstance,
    VictoriaInstance,
    running_influxd,
    running_mosquitto,
    running_victoria,
)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoInstance]:
    with running_mosquitto(tmp_path / "mosquitto") as instance:
        yield instance


@pytest.fixture
def influxd(tmp_path: Path) -> Iterator[InfluxInstance]:
    with running_influxd(tmp_path / "influxd") as instance:
        yield instance


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaInstance]:
    with running_victoria(tmp_path / "victoria") as instance:
        yield instance
