"""Ingestor message handling without a broker: storing, dead-lettering, duplicates, status, retry."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.central.config import MqttSettings
from gateway.central.ingest import Ingestor, parse_batch
from gateway.central.store import SqliteStore, StoreUnavailable
from gateway.central.store.base import RejectedReading, WriteOutcome, WriteRequest
from gateway.contract import StationState, StationStatus, readings_topic, status_topic
from gateway.model import QualityFlag, utc_now

from .helpers import T0, assert_the_changed_second_reading_was_set_aside, batch, dead_letters, reading, series

HOUR = timedelta(hours=1)


@pytest.fixture
def store(tmp_path: Path):
    instance = SqliteStore(tmp_path / "ingest.sqlite")
    yield instance
    instance.close()


@pytest.fixture
def ingestor(store: SqliteStore, tmp_path: Path) -> Ingestor:
    # Never started: handle() is exercised directly, no broker needed.
    return Ingestor(MqttSettings(port=1), store, tmp_path / "data", retry_initial_s=0.01, retry_max_s=0.05)


def test_a_valid_batch_is_stored(ingestor: Ingestor, store: SqliteStore) -> None:
    readings = series("st1", [1.5, None, 2.25])
    ingestor.handle(readings_topic("site1", "st1"), batch("site1", "st1", 1, readings).model_dump_json().encode())

    assert [p.value for p in store.query_series("st1", "CO2", T0, T0 + HOUR)] == [r.value for r in readings]
    counters = ingestor.counters()
    assert (counters["batches_stored"], counters["readings_stored"], counters["malformed"]) == (1, 3, {})


def test_a_repeated_batch_is_counted_as_duplicate_and_stored_once(ingestor: Ingestor, store: SqliteStore) -> None:
    payload = batch("site1", "st1", 7, series("st1", [1.0, 2.0])).model_dump_json().encode()
    for _ in range(3):
        ingestor.handle(readings_topic("site1", "st1"), payload)

    assert len(store.query_series("st1", "CO2", T0, T0 + HOUR)) == 2
    assert ingestor.counters()["duplicate_batches"] == 2


@pytest.mark.parametrize(
    "topic, payload, reason, problem",
    [
        (readings_topic("site1", "st1"), b"\x00\xff garbage", "not_json", "not valid JSON"),
        (readings_topic("site1", "st1"), b'{"seq": 1}', "schema", "not a ReadingBatch"),
        (readings_topic("site1", "st1"), b"[]", "schema", "not a ReadingBatch"),
        (readings_topic("site1", "other"), None, "topic_mismatch", "published for site 'site1' station 'other'"),
        (readings_topic("site9", "st1"), None, "topic_mismatch", "site 'site9'"),
        ("sinkwatch/v1/site1/readings", b"{}", "bad_topic", "not of the form"),
        (status_topic("site1", "st1"), b'{"state": "maybe"}', "schema", "not a StationStatus"),
    ],
)
def test_malformed_messages_are_counted_logged_and_dead_lettered(
    ingestor: Ingestor, store: SqliteStore, caplog: pytest.LogCaptureFixture,
    topic: str, payload: bytes | None, reason: str, problem: str,
) -> None:
    body = payload if payload is not None else batch("site1", "st1", 1, series("st1", [1.0])).model_dump_json().encode()
    with caplog.at_level(logging.ERROR, logger="gateway.central.ingest"):
        ingestor.handle(topic, body)

    assert ingestor.counters()["malformed"] == {reason: 1}
    assert ingestor.counters()["dead_lettered"] == 1
    [record] = dead_letters(ingestor)
    assert (record["topic"], record["reason"]) == (topic, reason)
    assert problem in record["problem"]
    stored_payload = record["payload"].encode() if record["payload_encoding"] == "utf-8" else None
    assert stored_payload == body or record["payload_encoding"] == "base64"
    [message] = [r.getMessage() for r in caplog.records]
    assert topic in message and problem in message
    assert store.stations() == []


def test_binary_garbage_is_dead_lettered_as_base64(ingestor: Ingestor) -> None:
    import base64

    ingestor.handle(readings_topic("site1", "st1"), b"\xff\xfe\x00")
    [record] = dead_letters(ingestor)
    assert record["payload_encoding"] == "base64"
    assert base64.b64decode(record["payload"]) == b"\xff\xfe\x00"


def test_readings_of_another_station_inside_a_batch_are_a_topic_mismatch() -> None:
    from gateway.central.ingest import Malformed

    payload = batch("site1", "st1", 1, series("st2", [1.0])).model_dump_json().encode()
    with pytest.raises(Malformed) as excinfo:
        parse_batch("site1", "st1", payload)
    assert excinfo.value.reason == "topic_mismatch"


def test_status_messages_update_and_clear_the_registry(ingestor: Ingestor) -> None:
    status = StationStatus(site="site1", station="st1", state=StationState.OFFLINE, since=utc_now())
    ingestor.handle(status_topic("site1", "st1"), status.model_dump_json().encode())
    assert ingestor.station_statuses() == {("site1", "st1"): status}

    ingestor.handle(status_topic("site1", "st1"), b"")
    assert ingestor.station_statuses() == {}


class FlakyStore(SqliteStore):
    """Refuses the first `failures` writes, like a database that is restarting."""

    def __init__(self, path: Path, failures: int) -> None:
        super().__init__(path)
        self.failures = failures
        self.attempts = 0

    def write_many(self, batches: Sequence[WriteRequest]) -> list[WriteOutcome]:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise StoreUnavailable("database restarting")
        return super().write_many(batches)


def test_store_outage_is_retried_with_backoff_and_logged_once_each_way(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = FlakyStore(tmp_path / "flaky.sqlite", failures=4)
    ingestor = Ingestor(MqttSettings(port=1), store, tmp_path / "data", retry_initial_s=0.01, retry_max_s=0.02)
    payload = batch("site1", "st1", 1, series("st1", [1.0])).model_dump_json().encode()

    with caplog.at_level(logging.INFO, logger="gateway.central.ingest"):
        assert ingestor.handle_with_retry(readings_topic("site1", "st1"), payload) is True

    assert store.attempts == 5
    counters = ingestor.counters()
    assert (counters["storage_outages"], counters["storage_retries"], counters["batches_stored"]) == (1, 4, 1)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("storage unavailable: database restarting" in m for m in messages) == 1
    assert sum(m.startswith("storage back after") for m in messages) == 1
    assert ingestor.storage_available
    store.close()


class SurprisingStore(SqliteStore):
    """Raises something no store should (a bug, an answer nobody foresaw) on the first writes."""

    def __init__(self, path: Path, failures: int) -> None:
        super().__init__(path)
        self.failures = failures

    def write_many(self, batches: Sequence[WriteRequest]) -> list[WriteOutcome]:
        if self.failures:
            self.failures -= 1
            raise KeyError("results")
        return super().write_many(batches)


def test_an_unexpected_error_is_retried_not_fatal_and_not_acked_early(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SurprisingStore(tmp_path / "s.sqlite", failures=2)
    ingestor = Ingestor(MqttSettings(port=1), store, tmp_path / "data", retry_initial_s=0.01, retry_max_s=0.02)
    payload = batch("site1", "st1", 1, series("st1", [1.0])).model_dump_json().encode()

    with caplog.at_level(logging.ERROR, logger="gateway.central.ingest"):
        assert ingestor.handle_with_retry(readings_topic("site1", "st1"), payload) is True

    assert [p.value for p in store.query_series("st1", "CO2", T0, T0 + HOUR)] == [1.0]
    assert ingestor.counters()["internal_errors"] == 2
    assert any(r.exc_info and "failed unexpectedly" in r.getMessage() for r in caplog.records)
    store.close()


def test_stopping_during_an_outage_leaves_the_message_unacknowledged(tmp_path: Path) -> None:
    store = FlakyStore(tmp_path / "flaky.sqlite", failures=10**9)
    ingestor = Ingestor(MqttSettings(port=1), store, tmp_path / "data", retry_initial_s=0.01, retry_max_s=0.02)
    payload = batch("site1", "st1", 1, series("st1", [1.0])).model_dump_json().encode()
    result: list[bool] = []
    worker = threading.Thread(target=lambda: result.append(ingestor.handle_with_retry(
        readings_topic("site1", "st1"), payload)))
    worker.start()
    ingestor.stop(timeout_s=1)
    worker.join(5)

    assert result == [False]
    assert not ingestor.storage_available
    store.close()


class RejectingStore(SqliteStore):
    """A database that refuses readings carrying a qc_reason (as InfluxDB does after a field type conflict)."""

    def write_many(self, batches: Sequence[WriteRequest]) -> list[WriteOutcome]:
        outcomes = super().write_many([([item for item in points if not item.reading.qc_reason], ledger)
                                       for points, ledger in batches])
        return [replace(outcome, rejected=tuple(RejectedReading(item, "field type conflict on qc_reason")
                                                for item in points if item.reading.qc_reason))
                for outcome, (points, _) in zip(outcomes, batches, strict=True)]


def test_only_the_readings_the_store_rejects_are_dead_lettered_with_their_batch(tmp_path: Path) -> None:
    store = RejectingStore(tmp_path / "reject.sqlite")
    ingestor = Ingestor(MqttSettings(port=1), store, tmp_path / "data")
    readings = series("st1", [1.0, 2.0, 3.0])
    readings[1] = reading(time=readings[1].time, value=2.0, qc=QualityFlag.SUSPECT, qc_reason="warming up")
    payload = batch("site1", "st1", 41, readings).model_dump_json().encode()

    assert ingestor.handle_with_retry(readings_topic("site1", "st1"), payload) is True

    assert [p.value for p in store.query_series("st1", "CO2", T0, T0 + HOUR)] == [1.0, 3.0]
    counters = ingestor.counters()
    assert (counters["readings_stored"], counters["readings_set_aside"], counters["malformed"]) == (
        2, {"rejected_by_store": 1}, {})
    [record] = dead_letters(ingestor)
    assert record["reason"] == "rejected_by_store"
    assert record["batch"]["seq"] == 41 and record["batch"]["readings"] == 3
    [entry] = record["set_aside"]
    assert (entry["index"], entry["problem"], entry["reading"]["qc_reason"]) == (
        1, "field type conflict on qc_reason", "warming up")
    assert "payload" not in record  # the good readings are stored, not kept again here
    store.close()


def test_a_conflicting_reading_is_kept_aside_beside_the_stored_one(ingestor: Ingestor, store: SqliteStore) -> None:
    first = series("st1", [1.0, 2.0])
    ingestor.handle(readings_topic("site1", "st1"), batch("site1", "st1", 1, first).model_dump_json().encode())
    changed = [first[0], reading(time=first[1].time, value=None)]

    ingestor.handle(readings_topic("site1", "st1"), batch("site1", "st1", 2, changed).model_dump_json().encode())

    assert_the_changed_second_reading_was_set_aside(ingestor, store)


@pytest.mark.parametrize("year", [1900, 1970, 1999, 2200])
def test_readings_stamped_outside_the_plausible_window_are_set_aside(
    ingestor: Ingestor, store: SqliteStore, year: int
) -> None:
    good = series("st1", [1.0])
    wrong = reading(time=T0.replace(year=year), value=5.0)
    payload = batch("site1", "st1", 3, [good[0], wrong]).model_dump_json().encode()

    ingestor.handle(readings_topic("site1", "st1"), payload)

    assert [p.value for p in store.query_series("st1", "CO2", T0, T0 + HOUR)] == [1.0]
    assert store.query_series("st1", "CO2", wrong.time, wrong.time + HOUR) == []
    assert ingestor.counters()["readings_set_aside"] == {"implausible_time": 1}
    [record] = dead_letters(ingestor)
    assert record["reason"] == "implausible_time"
    assert str(year) in record["set_aside"][0]["problem"]


def test_a_reading_a_day_ahead_is_still_plausible(ingestor: Ingestor, store: SqliteStore) -> None:
    soon = reading(time=utc_now() + timedelta(hours=23), value=5.0)
    ingestor.handle(readings_topic("site1", "st1"), batch("site1", "st1", 3, [soon]).model_dump_json().encode())
    assert ingestor.counters()["readings_stored"] == 1


def test_malformed_message_is_not_acked_while_its_dead_letter_cannot_be_written(
    store: SqliteStore, tmp_path: Path
) -> None:
    blocked = tmp_path / "data"
    blocked.write_text("a file where the data directory should be", encoding="utf-8")
    ingestor = Ingestor(MqttSettings(port=1), store, blocked, retry_initial_s=0.01, retry_max_s=0.02)
    with pytest.raises(StoreUnavailable, match="dead-letter file"):
        ingestor.handle(readings_topic("site1", "st1"), b"garbage")
    # nothing counted as dead-lettered: the message stays with the broker (handle_with_retry does not ack it)
    assert ingestor.counters()["dead_lettered"] == 0
    assert ingestor.counters()["malformed"] == {}


def test_a_group_is_stored_in_one_write_with_each_batch_confirmed_and_set_aside_on_its_own(tmp_path: Path) -> None:
    store = FlakyStore(tmp_path / "group.sqlite", failures=2)  # the group's write waits out a short outage
    ingestor = Ingestor(MqttSettings(port=1), store, tmp_path / "data", retry_initial_s=0.01, retry_max_s=0.02)
    first = series("st1", [1.0, 2.0])
    other = series("st2", [7.0])
    changed = [reading(time=first[1].time, value=20.0), reading(time=T0 + HOUR / 2, value=3.0)]
    group = [(readings_topic("site1", "st1"), batch("site1", "st1", 1, first).model_dump_json().encode(), None),
             (readings_topic("site1", "st2"), batch("site1", "st2", 1, other).model_dump_json().encode(), None),
             (readings_topic("site1", "st1"), b"{not json", None),
             (readings_topic("site1", "st1"), batch("site1", "st1", 1, first).model_dump_json().encode(), None),
             (readings_topic("site1", "st1"), batch("site1", "st1", 2, changed).model_dump_json().encode(), None)]

    assert ingestor.handle_group(group) is True

    assert store.attempts == 3  # one write for the whole group, tried three times
    assert [p.value for p in store.query_series("st1", "CO2", T0, T0 + HOUR)] == [1.0, 2.0, 3.0]
    assert [p.value for p in store.query_series("st2", "CO2", T0, T0 + HOUR)] == [7.0]
    counters = ingestor.counters()
    assert (counters["batches_stored"], counters["readings_stored"], counters["duplicate_readings"],
            counters["duplicate_batches"], counters["readings_set_aside"], counters["malformed"]) == (
        4, 4, 2, 1, {"conflict": 1}, {"not_json": 1})
    [bad, conflict] = dead_letters(ingestor)
    assert bad["reason"] == "not_json"
    assert (conflict["reason"], conflict["batch"]["seq"], conflict["set_aside"][0]["index"]) == ("conflict", 2, 0)
    receipts = {(r.station, r.channel): r.stored for r in ingestor._receipts.take()}
    assert receipts == {("st1", "readings"): [(1, 2)], ("st2", "readings"): [(1, 1)]}
    store.close()


@pytest.mark.parametrize("value", [1e308, -1e308, 1.0000001e30, -2e30])
def test_a_value_beyond_any_measured_quantity_is_set_aside(ingestor: Ingestor, store: SqliteStore,
                                                            value: float) -> None:
    """Hostile inputs by hand (docs/reliability.md): two readings of 1e308 were stored GOOD and the hourly mean of
    their hour was null on SQLite and a 500 on InfluxDB (it cannot write the +Inf its sum overflows to)."""
    good = series("st1", [1.0, 2.0, 1e30, -1e30])
    wrong = reading(time=T0 + timedelta(minutes=5), value=value)
    payload = batch("site1", "st1", 3, [*good, wrong]).model_dump_json().encode()

    ingestor.handle(readings_topic("site1", "st1"), payload)

    assert [p.value for p in store.query_series("st1", "CO2", T0, T0 + HOUR)] == [1.0, 2.0, 1e30, -1e30]
    assert ingestor.counters()["readings_set_aside"] == {"implausible_value": 1}
    [record] = dead_letters(ingestor)
    assert record["reason"] == "implausible_value"
    [entry] = record["set_aside"]
    assert entry["index"] == 4
    assert "1e+30" in entry["problem"] and "value null, qc 3" in entry["problem"]


def test_a_broker_that_cannot_be_reached_is_said_once_and_counted_each_attempt(
        store: SqliteStore, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """First-day walkthrough (docs/reliability.md): `central serve` with a wrong mqtt.port or a broker that was down
    logged nothing (paho's connection failures went to debug) and /health counted nothing."""
    from gateway.net import free_port
    from gateway.testing.mqtt import wait_for

    port = free_port()  # nothing listens there
    ingestor = Ingestor(MqttSettings(host="127.0.0.1", port=port), store, tmp_path / "data")
    with caplog.at_level(logging.WARNING, logger="gateway.central.ingest"):
        ingestor.start()
        try:
            assert wait_for(lambda: ingestor.counters()["mqtt_connect_failures"] >= 2, 15), ingestor.counters()
        finally:
            ingestor.stop()
    said = [r.getMessage() for r in caplog.records if "cannot reach the MQTT broker" in r.getMessage()]
    assert len(said) == 1, said
    assert f"127.0.0.1:{port}" in said[0] and "mqtt.host and mqtt.port" in said[0] and "retrying" in said[0]
    assert not ingestor.mqtt_connected
