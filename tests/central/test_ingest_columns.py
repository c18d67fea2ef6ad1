"""The ingest's column path (gateway/central/batchjson.py → `ReadingColumns` → `InfluxStore.write_many`) keeps every
rule of the model path on a real influxd: exactly-once identities, conflicts and refused readings set aside with
their index, redeliveries in one group counted, implausible times set aside by the model's loop."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from gateway.central import ingest as ingest_module
from gateway.central.config import MqttSettings
from gateway.central.ingest import Ingestor
from gateway.central.store import InfluxStore
from gateway.central.store.base import ReadingIdentity, StoredReading, to_ns
from gateway.contract import readings_topic
from gateway.model import QualityFlag
from gateway.testing.services import InfluxInstance

from .helpers import T0, assert_the_changed_second_reading_was_set_aside, batch, dead_letters, reading, series, stored

pytestmark = pytest.mark.integration
HOUR = timedelta(hours=1)
TOPIC = readings_topic("site1", "st1")


@pytest.fixture
def store(influxd: InfluxInstance, tmp_path: Path) -> Iterator[InfluxStore]:
    instance = InfluxStore(influxd.url, database="columns", write_guard=tmp_path / "write-guard")
    yield instance
    instance.close()


@pytest.fixture
def ingestor(store: InfluxStore, tmp_path: Path) -> Ingestor:
    return Ingestor(MqttSettings(port=1), store, tmp_path / "data")


def payload(seq: int, readings: list) -> bytes:
    return batch("site1", "st1", seq, readings).model_dump_json().encode()


def test_a_valid_batch_goes_the_column_way_and_is_stored_exactly(
        ingestor: Ingestor, store: InfluxStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_model(*args: object) -> None:
        raise AssertionError("a valid batch of a store that takes columns is not made into models")

    monkeypatch.setattr(ingest_module, "parse_batch", no_model)
    readings = series("st1", [1.5, None, 2.25])

    assert ingestor.handle_group([(TOPIC, payload(1, readings), None)]) is True

    assert [(p.time, p.value, p.qc) for p in store.query_series("st1", "CO2", T0, T0 + HOUR)] == [
        (r.time, r.value, r.qc) for r in readings]
    assert ingestor.counters()["readings_stored"] == 3


def test_a_redelivery_in_the_same_group_is_a_duplicate_and_stored_once(ingestor: Ingestor,
                                                                       store: InfluxStore) -> None:
    first = payload(1, series("st1", [1.0, 2.0]))

    assert ingestor.handle_group([(TOPIC, first, None), (TOPIC, first, None)]) is True

    counters = ingestor.counters()
    assert (counters["readings_stored"], counters["duplicate_readings"], counters["duplicate_batches"]) == (2, 2, 1)
    assert [p.value for p in store.query_series("st1", "CO2", T0, T0 + HOUR)] == [1.0, 2.0]


def test_other_content_under_a_stored_identity_is_set_aside_with_its_index(ingestor: Ingestor,
                                                                           store: InfluxStore) -> None:
    first = series("st1", [1.0, 2.0])
    changed = [first[0], reading(time=first[1].time, value=None)]

    assert ingestor.handle_group([(TOPIC, payload(1, first), None)]) is True
    assert ingestor.handle_group([(TOPIC, payload(2, changed), None)]) is True

    assert_the_changed_second_reading_was_set_aside(ingestor, store)


def test_a_reading_influxdb_refuses_is_set_aside_with_its_index_and_the_others_stored(
        ingestor: Ingestor, store: InfluxStore, influxd: InfluxInstance) -> None:
    # InfluxDB types a field per shard by its first write: a qc_reason once an integer refuses every string one
    httpx.post(f"{influxd.url}/query", data={"q": 'CREATE DATABASE "columns"'}).raise_for_status()
    httpx.post(f"{influxd.url}/write", params={"db": "columns", "precision": "ns"},
               content=f"readings,station=other qc_reason=7i {to_ns(T0)}".encode()).raise_for_status()
    readings = series("st1", [1.0, 2.0, 3.0])
    readings[1] = reading(time=readings[1].time, value=2.0, qc=QualityFlag.SUSPECT, qc_reason="warming up")

    assert ingestor.handle_group([(TOPIC, payload(41, readings), None)]) is True

    assert [p.value for p in store.query_series("st1", "CO2", T0, T0 + HOUR)] == [1.0, 3.0]
    counters = ingestor.counters()
    assert (counters["readings_stored"], counters["readings_set_aside"]) == (2, {"rejected_by_store": 1})
    [record] = dead_letters(ingestor)
    assert (record["reason"], record["batch"]["seq"], record["batch"]["readings"]) == ("rejected_by_store", 41, 3)
    [entry] = record["set_aside"]
    assert (entry["index"], entry["reading"]["qc_reason"]) == (1, "warming up")


def test_an_implausible_time_takes_the_model_way_and_only_that_reading_is_set_aside(ingestor: Ingestor,
                                                                                   store: InfluxStore) -> None:
    good = series("st1", [1.0])
    wrong = reading(time=T0.replace(year=1999), value=5.0)

    assert ingestor.handle_group([(TOPIC, payload(3, [good[0], wrong]), None)]) is True

    assert [p.value for p in store.query_series("st1", "CO2", T0, T0 + HOUR)] == [1.0]
    assert ingestor.counters()["readings_set_aside"] == {"implausible_time": 1}
    [record] = dead_letters(ingestor)
    assert record["set_aside"][0]["index"] == 1


def test_a_batch_beginning_at_the_instant_the_one_before_ended_needs_no_look_up(
        ingestor: Ingestor, store: InfluxStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A station's drain cuts the readings of one instant between two batches: the second begins at its station's
    mark. The store wrote that instant's readings itself and nobody wrote the station since, so the readings of
    other sensors and variables there are new without asking the database; the same ones again are looked up."""
    t1 = T0 + timedelta(seconds=10)
    first = [reading(time=T0, value=1.0), reading(time=t1, value=2.0)]
    second = [reading(time=t1, variable="H2O", value=3.0), reading(time=t1 + timedelta(seconds=10), value=4.0)]
    looked_up: list[int] = []
    held = store._held

    def counted(items: list[StoredReading]) -> dict[ReadingIdentity, StoredReading]:
        looked_up.append(len(items))
        return held(items)

    monkeypatch.setattr(store, "_held", counted)

    assert ingestor.handle_group([(TOPIC, payload(1, first), None)]) is True
    assert ingestor.handle_group([(TOPIC, payload(2, second), None)]) is True
    assert looked_up == []
    assert ingestor.handle_group([(TOPIC, payload(3, [reading(time=t1, variable="H2O", value=3.0)]), None)]) is True

    assert looked_up == [1]
    counters = ingestor.counters()
    assert (counters["readings_stored"], counters["duplicate_readings"]) == (4, 1)
    assert [p.value for p in store.query_series("st1", "CO2", T0, T0 + HOUR)] == [1.0, 2.0, 4.0]
    assert [p.value for p in store.query_series("st1", "H2O", T0, T0 + HOUR)] == [3.0]


def test_a_reading_another_writer_stored_at_the_mark_instant_is_found_as_a_conflict(
        ingestor: Ingestor, store: InfluxStore, influxd: InfluxInstance, tmp_path: Path) -> None:
    """Another writer of the host (a second worker) stores a reading at the station's mark instant without raising
    the mark; the store that wrote that instant before must not take its own knowledge of it for the truth: other
    content for that identity is a conflict, the stored reading kept."""
    t1 = T0 + timedelta(seconds=10)
    assert ingestor.handle_group([(TOPIC, payload(1, [reading(time=T0, value=1.0), reading(time=t1, value=2.0)]),
                                   None)]) is True
    other = InfluxStore(influxd.url, database="columns", write_guard=tmp_path / "write-guard")
    try:
        [outcome] = other.write_many([(stored("site1", [reading(time=t1, variable="H2O", value=5.0)]), None)])
    finally:
        other.close()
    assert outcome.written == 1

    assert ingestor.handle_group([(TOPIC, payload(2, [reading(time=t1, variable="H2O", value=6.0),
                                                      reading(time=t1 + timedelta(seconds=10), value=7.0)]),
                                   None)]) is True

    assert ingestor.counters()["readings_set_aside"] == {"conflict": 1}
    assert [p.value for p in store.query_series("st1", "H2O", T0, T0 + HOUR)] == [5.0]
    assert [p.value for p in store.query_series("st1", "CO2", T0, T0 + HOUR)] == [1.0, 2.0, 7.0]


def test_a_value_beyond_any_measured_quantity_takes_the_model_way_and_is_set_aside(
        ingestor: Ingestor, store: InfluxStore) -> None:
    """Two readings of 1e308 made every hourly mean of their range a 500 (InfluxDB cannot write +Inf in JSON)."""
    good = series("st1", [1.0])
    huge = [reading(time=T0 + timedelta(seconds=20 + i), value=1e308) for i in range(2)]

    assert ingestor.handle_group([(TOPIC, payload(4, [good[0], *huge]), None)]) is True

    assert [p.value for p in store.query_series("st1", "CO2", T0, T0 + HOUR, every=HOUR)] == [1.0]
    assert ingestor.counters()["readings_set_aside"] == {"implausible_value": 2}
    [record] = dead_letters(ingestor)
    assert [entry["index"] for entry in record["set_aside"]] == [1, 2]


@pytest.mark.parametrize("unit", ["ppm\\", "ppm\nreadings,station=x value=5 0", "p\x00m", "\u202eppm", 'a,b=c d"e\\'])
def test_a_unit_that_is_not_plain_text_is_refused_naming_the_unit_and_the_fix(ingestor: Ingestor,
                                                                               store: InfluxStore, unit: str) -> None:
    """Hostile inputs by hand (docs/reliability.md): such units were stored, and InfluxDB gave them back otherwise
    ('ppm\\\\' as 'ppm ', a newline as a backslash and an n) or with controls that break CSV and log lines."""
    document = json.loads(payload(5, series("st1", [1.0])))
    document["readings"][0]["unit"] = unit

    assert ingestor.handle_group([(TOPIC, json.dumps(document).encode(), None)]) is True

    assert store.query_series("st1", "CO2", T0, T0 + HOUR) == []
    assert ingestor.counters()["malformed"] == {"schema": 1}
    [record] = dead_letters(ingestor)
    assert "readings.0.unit" in record["problem"] and "write the unit as plain text" in record["problem"]
