"""The central service logs state changes, not traffic: no line per InfluxDB request, no line per repeated bad
message."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.central.config import MqttSettings
from gateway.central.ingest import Ingestor
from gateway.central.store import InfluxStore, SqliteStore
from gateway.contract import readings_topic
from gateway.logs import QUIET_LIBRARY_LOGGERS, setup_logging
from gateway.testing.services import InfluxInstance

from .helpers import T0, series, stored

HOUR = timedelta(hours=1)


@pytest.fixture
def service_logging() -> Iterator[None]:
    """The central command's logging set-up, undone afterwards for the other tests."""
    levels = {name: logging.getLogger(name).level for name in QUIET_LIBRARY_LOGGERS}
    setup_logging("INFO")
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.integration
def test_storing_and_querying_log_no_line_per_request(influxd: InfluxInstance, service_logging: None,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    store = InfluxStore(influxd.url, database="quiet")
    with caplog.at_level(logging.INFO):
        for minute in range(20):
            store.write(stored("site1", series("st1", [float(minute)], start=T0 + minute * HOUR / 60)))
        assert len(store.query_series("st1", "CO2", T0, T0 + HOUR)) == 20
    store.close()

    assert [f"{r.name}: {r.getMessage()}" for r in caplog.records] == []


def test_a_station_repeating_a_bad_message_is_logged_once_a_minute(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    store = SqliteStore(tmp_path / "store.sqlite")
    ingestor = Ingestor(MqttSettings(port=1), store, tmp_path / "data")
    with caplog.at_level(logging.INFO, logger="gateway.central.ingest"):
        for _ in range(50):
            ingestor.handle(readings_topic("site1", "st1"), b"not json")
    store.close()

    assert ingestor.counters()["dead_lettered"] == 50  # every one kept and counted ...
    assert len(caplog.records) == 1  # ... one line said so
    assert "not_json" in caplog.records[0].getMessage()
