"""Real Mosquitto + influxd: paho publisher -> Ingestor -> InfluxStore -> HTTP API."""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from gateway.central.access import AccessControl
from gateway.central.api import create_app
from gateway.central.config import ApiSettings, CentralConfig, MqttSettings, StorageSettings, TrustSettings
from gateway.central.ingest import Ingestor
from gateway.central.service import run_central, wait_for
from gateway.central.store import InfluxStore
from gateway.contract import ReadingBatch, StationState, StationStatus, readings_topic, status_topic
from gateway.model import format_time
from gateway.testing.central import bearer, issue_token
from gateway.testing.services import InfluxInstance, MosquittoInstance

from .helpers import T0, batch, series

# these tests are about data, not access: the API is built in development mode, explicitly
DEV = AccessControl.development()

pytestmark = pytest.mark.integration

HOUR = timedelta(hours=1)


class Publisher:
    """A station-side paho client that waits for the broker's PUBACK of each message."""

    def __init__(self, broker: MosquittoInstance) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-pub-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout=5)
        assert info.is_published()

    def batch(self, value: ReadingBatch) -> None:
        self.publish(readings_topic(value.site, value.station), value.model_dump_json())

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(mosquitto: MosquittoInstance) -> Iterator[Publisher]:
    instance = Publisher(mosquitto)
    yield instance
    instance.close()


def make_ingestor(mosquitto: MosquittoInstance, store: InfluxStore, tmp_path: Path) -> Ingestor:
    settings = MqttSettings(host=mosquitto.host, port=mosquitto.port, client_id=f"central-{uuid.uuid4().hex[:8]}")
    return Ingestor(settings, store, tmp_path / "data", retry_initial_s=0.1, retry_max_s=0.5)


def test_published_batches_come_back_exactly_through_the_api(
    mosquitto: MosquittoInstance, influxd: InfluxInstance, publisher: Publisher, tmp_path: Path
) -> None:
    store = InfluxStore(influxd.url, database="e2e")
    # the largest magnitude a reading may have (beyond ±1e30 it is set aside as implausible_value)
    values: list[list[float | None]] = [[0.1, 1 / 3, None], [412.123456789012, -2.5e-7, 9.999999999999999e29]]
    batches = [
        batch("site1", "st1", seq, series("st1", chunk, start=T0 + seq * timedelta(minutes=1)))
        for seq, chunk in enumerate(values)
    ]
    with make_ingestor(mosquitto, store, tmp_path) as ingestor:
        assert wait_for(lambda: ingestor.mqtt_connected, 10)
        status = StationStatus(site="site1", station="st1", state=StationState.ONLINE, since=T0)
        publisher.publish(status_topic("site1", "st1"), status.model_dump_json(), retain=True)
        for item in batches:
            publisher.batch(item)
        assert wait_for(lambda: ingestor.counters()["batches_stored"] == len(batches), 10)

        with TestClient(create_app(store, ingestor, access=DEV)) as client:
            body = client.get("/api/v1/series", params={
                "station": "st1", "variable": "CO2", "start": format_time(T0), "end": format_time(T0 + HOUR)}).json()
            stations = client.get("/api/v1/stations").json()
            health = client.get("/api/v1/health").json()

    published = [r for item in batches for r in item.readings]
    assert body["points"] == [{"time": format_time(r.time), "value": r.value, "qc": int(r.qc)} for r in published]
    assert [(s["station"], s["state"], s["variables"]) for s in stations] == [("st1", "online", {"CO2": "umol mol-1"})]
    assert health["status"] == "ok" and health["counters"]["readings_stored"] == len(published)
    store.close()


def test_influx_outage_loses_nothing_and_duplicates_nothing(
    mosquitto: MosquittoInstance, influxd: InfluxInstance, publisher: Publisher, tmp_path: Path
) -> None:
    store = InfluxStore(influxd.url, database="outage", timeout_s=2)
    seq = itertools.count()
    minute = itertools.count()

    def next_batch() -> ReadingBatch:
        start = T0 + next(minute) * timedelta(minutes=1)
        return batch("site1", "st1", next(seq), series("st1", [float(i) + 0.25 for i in range(5)], start=start))

    sent: list[ReadingBatch] = []
    with make_ingestor(mosquitto, store, tmp_path) as ingestor:
        assert wait_for(lambda: ingestor.mqtt_connected, 10)
        for _ in range(3):
            sent.append(next_batch())
            publisher.batch(sent[-1])
        assert wait_for(lambda: ingestor.counters()["batches_stored"] == 3, 10)

        influxd.stop()
        for _ in range(30):  # more than the broker's in-flight window, so some wait on the broker
            sent.append(next_batch())
            publisher.batch(sent[-1])
        assert wait_for(lambda: ingestor.counters()["storage_retries"] >= 2, 10)
        assert not ingestor.storage_available
        influxd.start()

        assert wait_for(lambda: ingestor.counters()["batches_stored"] >= len(sent), 30)
        assert wait_for(lambda: ingestor.queue_depth == 0, 5)
        counters = ingestor.counters()

    points = store.query_series("st1", "CO2", T0, T0 + 2 * HOUR)
    expected = sorted((r.time, r.value) for item in sent for r in item.readings)
    assert sorted((p.time, p.value) for p in points) == expected  # every reading, each exactly once
    assert counters["storage_outages"] == 1
    assert counters["malformed"] == {}
    store.close()


def test_malformed_payloads_are_dead_lettered_and_ingestion_continues(
    mosquitto: MosquittoInstance, influxd: InfluxInstance, publisher: Publisher, tmp_path: Path
) -> None:
    store = InfluxStore(influxd.url, database="malformed")
    good = batch("site1", "st1", 1, series("st1", [7.5]))
    with make_ingestor(mosquitto, store, tmp_path) as ingestor:
        assert wait_for(lambda: ingestor.mqtt_connected, 10)
        publisher.publish(readings_topic("site1", "st1"), b"\x00\x01 not json at all")
        publisher.publish(readings_topic("site1", "st1"), json.dumps({"schema_version": 1, "site": "site1"}))
        publisher.publish(readings_topic("site1", "elsewhere"), good.model_dump_json())
        publisher.batch(good)
        assert wait_for(lambda: ingestor.counters()["batches_stored"] == 1, 10)
        counters = ingestor.counters()
        dead = [json.loads(line) for line in ingestor.dead_letter_path.read_text(encoding="utf-8").splitlines()]

    assert counters["malformed"] == {"not_json": 1, "schema": 1, "topic_mismatch": 1}
    assert [d["reason"] for d in dead] == ["not_json", "schema", "topic_mismatch"]
    assert dead[2]["topic"] == readings_topic("site1", "elsewhere")
    assert [p.value for p in store.query_series("st1", "CO2", T0, T0 + HOUR)] == [7.5]
    store.close()


def test_unacknowledged_messages_wait_on_the_broker_for_the_next_start(
    mosquitto: MosquittoInstance, influxd: InfluxInstance, publisher: Publisher, tmp_path: Path
) -> None:
    store = InfluxStore(influxd.url, database="session")
    ingestor = make_ingestor(mosquitto, store, tmp_path)
    with ingestor:  # first start creates the persistent session and its subscriptions
        assert wait_for(lambda: ingestor.mqtt_connected, 10)
    later = batch("site1", "st1", 5, series("st1", [1.0, 2.0]))
    publisher.batch(later)  # published while the central service is down

    restarted = Ingestor(ingestor.settings, store, tmp_path / "data")
    with restarted:
        assert wait_for(lambda: restarted.counters()["batches_stored"] == 1, 10)
    assert [p.value for p in store.query_series("st1", "CO2", T0, T0 + HOUR)] == [1.0, 2.0]
    store.close()


def test_run_central_serves_on_a_free_port_and_stops_on_the_event(
    mosquitto: MosquittoInstance, publisher: Publisher, tmp_path: Path
) -> None:
    config = CentralConfig(
        mqtt=MqttSettings(host=mosquitto.host, port=mosquitto.port, client_id=f"central-{uuid.uuid4().hex[:8]}"),
        storage=StorageSettings(kind="sqlite", path=tmp_path / "central.sqlite"),
        api=ApiSettings(port=0),
        data_dir=tmp_path / "data",
        trust=TrustSettings(signatures="optional"),  # this test's publisher is no station with a key
    )
    stop = threading.Event()
    ports: list[int] = []
    thread = threading.Thread(target=run_central, args=(config,),
                              kwargs={"stop_event": stop, "ready_callback": ports.append})
    thread.start()
    try:
        assert wait_for(lambda: bool(ports), 10)
        assert ports[0] != 0
        with httpx.Client(base_url=f"http://127.0.0.1:{ports[0]}", timeout=5,
                          headers=bearer(issue_token(config.data_dir))) as api:
            assert wait_for(lambda: api.get("/api/v1/health").json()["mqtt_connected"], 10)
            publisher.batch(batch("site1", "st1", 1, series("st1", [3.25])))
            assert wait_for(lambda: api.get("/api/v1/health").json()["counters"]["batches_stored"] == 1, 10)
            response = api.get("/api/v1/series", params={
                "station": "st1", "variable": "CO2", "start": format_time(T0), "end": format_time(T0 + HOUR)})
        assert [p["value"] for p in response.json()["points"]] == [3.25]
    finally:
        stop.set()
        thread.join(15)
    assert not thread.is_alive()
