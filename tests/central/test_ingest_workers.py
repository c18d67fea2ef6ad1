"""Two ingest workers on one MQTT v5 shared subscription of a real Mosquitto, one store (SQLite, or a real influxd):
a station's signed batches, published fast and partly resent, are split between the workers. Each worker places
items with its own `ChainTracker(shared=True)` (gateway/central/chain.py): no false gap, reorder or replay, every
item exactly once in the ledger, every reading stored once, and the audit finds the record whole."""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.central import ingest as ingest_module
from gateway.central.audit import verify_station
from gateway.central.chain import ChainTracker
from gateway.central.config import MqttSettings
from gateway.central.ingest import Ingestor
from gateway.central.rawstore import RawArchive
from gateway.central.service import wait_for
from gateway.central.store import InfluxStore, SqliteStore, Store
from gateway.central.store.base import from_ns
from gateway.contract import ReadingBatch, StationState, StationStatus, readings_topic, status_topic
from gateway.edge.signer import ChainSigner
from gateway.model import utc_now
from gateway.testing.services import InfluxInstance, MosquittoInstance
from gateway.trust.keys import KeyRegistry, generate_key
from gateway.trust.signing import USER_PROPERTY

from .helpers import T0, series

pytestmark = pytest.mark.integration

BATCHES = 300
PER_BATCH = 5
RESENT = 40
TOPIC = readings_topic("site1", "st1")
GROUP = "sinkwatch-central"


@pytest.fixture(params=["sqlite", "influx"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[Store]]:
    """One store per worker (as separate processes would open it), all on one database."""
    if request.param == "sqlite":
        opened: list[Store] = [SqliteStore(tmp_path / "central.sqlite") for _ in range(3)]
    else:
        url = request.getfixturevalue("influxd").url
        # one write guard, as the processes of one host share it (gateway/central/store/writeguard.py)
        opened = [InfluxStore(url, database="workers", write_guard=tmp_path / "write-guard") for _ in range(3)]
    yield opened
    for store in opened:
        store.close()


def shared(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both workers subscribe through the shared subscription `$share/<group>/...` (MQTT v5 4.8.2)."""
    for name in ("READINGS_SUBSCRIPTION", "STATUS_SUBSCRIPTION", "FLUXES_SUBSCRIPTION", "RAW_SUBSCRIPTION",
                 "HEALTH_SUBSCRIPTION"):
        monkeypatch.setattr(ingest_module, name, f"$share/{GROUP}/{getattr(ingest_module, name)}")


def subscribed(station: mqtt.Client, workers: list[Ingestor]) -> None:
    """Wait until every worker's subscription is in place: status messages until each worker has had one."""
    status = StationStatus(site="site1", station="st1", state=StationState.ONLINE, since=T0).model_dump_json()
    for _ in range(100):
        if all(w.counters()["messages_received"] for w in workers):
            return
        station.publish(status_topic("site1", "st1"), status, qos=1).wait_for_publish(timeout=5)
        time.sleep(0.05)
    raise AssertionError("the workers did not all receive from the shared subscription")


def publish(client: mqtt.Client, payload: bytes, envelope: str) -> mqtt.MQTTMessageInfo:
    properties = Properties(PacketTypes.PUBLISH)
    properties.UserProperty = (USER_PROPERTY, envelope)
    return client.publish(TOPIC, payload, qos=1, properties=properties)


def test_two_workers_on_a_shared_subscription_raise_no_false_alarms_and_store_each_item_once(
        mosquitto: MosquittoInstance, stores: list[Store], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared(monkeypatch)
    data_dir = tmp_path / "central"
    key = generate_key(tmp_path / "st1.key")
    KeyRegistry(data_dir).register("site1", "st1", key.public_key())
    signer = ChainSigner(key, tmp_path / "st1.buffer")
    workers = []
    for store in stores[:2]:
        settings = MqttSettings(host=mosquitto.host, port=mosquitto.port, client_id=f"central-{uuid.uuid4().hex[:8]}")
        worker = Ingestor(settings, store, data_dir, signatures="required", retry_initial_s=0.01, retry_max_s=0.2)
        worker.chain = ChainTracker(store, shared=True)  # several workers: each places against the store's ledger
        workers.append(worker)
    station = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"st1-{uuid.uuid4().hex[:8]}",
                          protocol=mqtt.MQTTv5)
    station.max_inflight_messages_set(100)
    station.connect(mosquitto.host, mosquitto.port)
    station.loop_start()
    expected = BATCHES * PER_BATCH
    try:
        for worker in workers:
            worker.start()
        assert wait_for(lambda: all(w.mqtt_connected for w in workers), 10)
        subscribed(station, workers)
        sent: dict[int, tuple[bytes, str]] = {}
        infos = []
        for seq in range(BATCHES):
            readings = series("st1", [400.0 + seq + i / 7 for i in range(PER_BATCH)],
                              start=T0 + seq * PER_BATCH * timedelta(seconds=10))
            payload = ReadingBatch(site="site1", station="st1", seq=seq, sent=T0, readings=readings
                                   ).model_dump_json().encode()
            sent[seq] = (payload, signer.envelope("readings", TOPIC, seq, payload))
            infos.append(publish(station, *sent[seq]))
        # receipts that were lost: the station sends those items again, byte for byte, to whichever worker
        for seq in random.Random(7).sample(range(BATCHES), RESENT):
            infos.append(publish(station, sent[seq][0], signer.envelope("readings", TOPIC, seq, sent[seq][0])))
        for info in infos:
            info.wait_for_publish(timeout=10)
        audit_store = stores[2]
        assert wait_for(lambda: sum(w.counters()["batches_stored"] for w in workers) == BATCHES + RESENT, 60), \
            [w.counters() for w in workers]
        assert wait_for(lambda: all(w.queue_depth == 0 for w in workers), 10)
    finally:
        for worker in workers:
            worker.stop()
        station.loop_stop()
        station.disconnect()
        signer.close()

    counters = [w.counters() for w in workers]
    assert all(c["batches_stored"] > BATCHES // 10 for c in counters), counters  # the subscription was shared
    events: Counter[str] = Counter()
    for c in counters:
        events.update(c["chain_events"])
        assert c["untrusted"] == {}
    recorded = audit_store.chain_events("st1", 0, 2**62)
    unexpected = [e.detail for e in recorded if e.kind not in ("chain_start", "duplicate")]
    # no gap, reorder, replay or fork, neither counted nor recorded
    assert unexpected == [] and set(events) <= {"chain_start", "duplicate"}, (unexpected, events)
    assert events["chain_start"] == Counter(e.kind for e in recorded)["chain_start"] == 1
    assert 0 < events["duplicate"] <= RESENT  # a resend that overtook its original is the new one
    # exactly once: every item one ledger entry, every reading one point
    assert [i.seq for i in audit_store.ledger_items("st1", 0, 2**62)] == list(range(BATCHES))
    stored = audit_store.query_series("st1", "CO2", T0, T0 + BATCHES * PER_BATCH * timedelta(seconds=10))
    assert len(stored) == expected
    now = utc_now()
    report = verify_station(audit_store, KeyRegistry(data_dir), RawArchive(data_dir / "raw"), "st1",
                            now - timedelta(hours=1), now + timedelta(hours=1))
    assert report.intact, report.lines()
    assert report.readings_checked == expected


def test_a_ledger_entry_met_half_written_is_absent_for_placing_and_broken_for_the_audit(
        influxd: InfluxInstance, tmp_path: Path) -> None:
    """InfluxDB shows a point's fields as they arrive: a worker may read an entry another is writing. Placing must
    not take it for a stored item (a fork with digest None); the audit must not take it for a whole one."""
    store = InfluxStore(influxd.url, database="partial")
    at = 1_800_000_000_000_000_007
    line = f'ledger,channel=readings,site=site1,station=st1 seq=3i,epoch="0123456789abcdef" {at}'
    httpx.post(f"{influxd.url}/query", params={"q": "CREATE DATABASE partial"}).raise_for_status()
    httpx.post(f"{influxd.url}/write", params={"db": "partial"}, content=line).raise_for_status()
    try:
        assert store.ledger_at("site1", "st1", "readings", at) is None
        assert store.ledger_after("site1", "st1", "readings", at - 1) is None
        assert store.ledger_last("site1", "st1", "readings") is None
        [entry] = store.ledger_items("st1", 0, 2**62)
        report = verify_station(store, KeyRegistry(tmp_path), RawArchive(tmp_path / "raw"), "st1",
                                from_ns(at - 1), from_ns(at + 1000))
    finally:
        store.close()
    assert entry.seq == 3
    assert [(f.kind, f.seq) for f in report.breaks][:1] == [("unknown_key", 3)]
