"""Health reports through the ingestor (gateway/central/ingest.py): stored and confirmed in a receipt; a report
that can never be stored is dead-lettered with its reason and named in the receipt's dead_lettered ranges. Both
ways a report takes: the model (SqliteStore), and its fields checked without a model for a store that takes them
(`takes_health_fields`, the InfluxDB store; gateway/central/healthjson.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.central.config import MqttSettings
from gateway.central.ingest import Ingestor
from gateway.central.store import SqliteStore
from gateway.central.store.health import HealthFields
from gateway.contract import StationHealth, encode_health, health_topic
from gateway.model import format_time, utc_now

from .test_store_health_contract import report

TOPIC = health_topic("hainich", "plot-07")


class FieldsTakingStore(SqliteStore):
    """A SqliteStore that takes health reports as the InfluxDB store does, as `HealthFields` (and keeps them as
    models, made from the fields by the model: the fields are the model's)."""

    takes_health_fields = True

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.given: list[type] = []

    def write_health_fields(self, reports: list[HealthFields | StationHealth]) -> None:
        self.given += [type(report) for report in reports]
        self.write_health([StationHealth.model_validate(report.fields) if isinstance(report, HealthFields)
                           else report for report in reports])


@pytest.fixture(params=["model", "fields"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqliteStore]:
    kind = FieldsTakingStore if request.param == "fields" else SqliteStore
    instance = kind(tmp_path / "central.sqlite")
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
    if isinstance(store, FieldsTakingStore):
        assert store.given == [HealthFields, HealthFields]  # no model made on the way


@pytest.mark.parametrize(
    ("topic", "change", "reason"),
    [
        (health_topic("hainich", "plot-08"), {}, "topic_mismatch"),
        (TOPIC, {"time": format_time(utc_now() + timedelta(days=2))}, "implausible_time"),
        (TOPIC, {"time": "1990-01-01T00:00:00.000000Z"}, "implausible_time"),
        (TOPIC, {"disk_free_bytes": -1}, "schema"),
        (TOPIC, {"uptime_s": "long"}, "schema"),
        (TOPIC, {"sensors": [{"name": "a b"}]}, "schema"),
        (TOPIC, {"time": "0001-01-01T00:00:00Z"}, "schema"),
        (TOPIC, {"unknown": 1}, "schema"),
        # hostile inputs by hand (docs/reliability.md): stored and shown as the node's figures (a CPU at 1e308 degC)
        (TOPIC, {"cpu_temperature_c": 1e308}, "implausible_value"),
        (TOPIC, {"clock_offset_s": -2e30}, "implausible_value"),
        (TOPIC, {"disk_total_bytes": 10**31}, "implausible_value"),
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


def test_an_implausible_figure_is_named_in_the_dead_letter(ingestor: Ingestor, tmp_path: Path) -> None:
    payload = {**json.loads(encode_health(report(3, time=utc_now()))), "load_1m": 1e300}
    ingestor.handle(TOPIC, json.dumps(payload).encode())
    [letter] = [json.loads(line) for line in (tmp_path / "data" / "dead-letter.jsonl").read_text().splitlines()]
    assert "load_1m: value 1e+300 is beyond +-1e+30" in letter["problem"]
