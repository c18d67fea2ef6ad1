"""Health reports through the ingestor (gateway/central/ingest.py): stored and confirmed in a receipt; a report
that can never be stored is dead-lettered with its reason and named in the receipt's dead_lettered ranges."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.central.config import MqttSettings
from gateway.central.ingest import Ingestor
from gateway.central.store import SqliteStore
from gateway.contract import encode_health, health_topic
from gateway.model import format_time, utc_now

from .test_store_health_contract import report

TOPIC = health_topic("hainich", "plot-07")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    instance = SqliteStore(tmp_path / "central.sqlite")
    yield instance
    instance.close()


@pytest.fixture
def ingestor(store: SqliteStore, tmp_path: Path) -> Ingestor:
    return Ingestor(MqttSettings(port=1), store, tmp_path / "data")


def test_a_report_is_stored_and_confirmed(ingestor: Ingestor, store: SqliteStore) -> None:
    sent = report(7, time=utc_now())
    ingestor.handle(TOPIC, encode_health(sent))
    ingestor.handle(TOPIC, encode_health(sent))  # a redelivery
    assert store.latest_health() == [sent]
    [receipt] = ingestor._receipts.take()
    assert (receipt.channel, receipt.stored, receipt.dead_lettered) == ("health", [(7, 7)], [])
    assert ingestor.counters()["health_reports_stored"] == 2


@pytest.mark.parametrize(
    ("topic", "change", "reason"),
    [
        (health_topic("hainich", "plot-08"), {}, "topic_mismatch"),
        (TOPIC, {"time": format_time(utc_now() + timedelta(days=2))}, "implausible_time"),
        (TOPIC, {"time": "1990-01-01T00:00:00.000000Z"}, "implausible_time"),
        (TOPIC, {"disk_free_bytes": -1}, "schema"),
        (TOPIC, {"uptime_s": "long"}, "schema"),
    ],
)
def test_a_report_that_can_never_be_stored_is_dead_lettered(ingestor: Ingestor, store: SqliteStore, topic: str,
                                                            change: dict[str, object], reason: str,
                                                            tmp_path: Path) -> None:
    payload = {**json.loads(encode_health(report(3, time=utc_now()))), **change}
    ingestor.handle(topic, json.dumps(payload).encode())
    assert store.latest_health() == []
    assert ingestor.counters()["malformed"] == {reason: 1}
    [letter] = [json.loads(line) for line in (tmp_path / "data" / "dead-letter.jsonl").read_text().splitlines()]
    assert letter["reason"] == reason and letter["topic"] == topic
    [receipt] = ingestor._receipts.take()
    assert receipt.channel == "health" and receipt.dead_lettered == [(3, 3)]
