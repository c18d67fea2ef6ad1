"""The shipped broker configuration (deploy/mosquitto/sinkwatch.conf + sinkwatch.acl) on a real Mosquitto.

The substitutions (paths, ports, log destination, TLS files) are in gateway/testing/shipped_broker.py; every
substitution must find its line, so a change to the shipped files that breaks the substitution fails the test
rather than silently testing something else. The central service's password line is made with mosquitto_passwd, as
the config's comments tell an operator to; the stations' lines and ACL blocks as `sinkwatch station provision`
writes them (gateway/central/provision.py), so Mosquitto itself checks their hashes and topics.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import SecretStr

from gateway.contract import (
    RECEIPTS_SUBSCRIPTION,
    Receipt,
    command_results_topic,
    commands_topic,
    fluxes_topic,
    health_topic,
    raw_topic,
    readings_topic,
    receipts_topic,
    status_topic,
)
from gateway.edge.buffer import ReadingBuffer
from gateway.edge.config import MqttConfig
from gateway.edge.delivery import Delivery, DeliverySettings
from gateway.edge.outbox import ReadingsOutbox
from gateway.edge.telemetry import HealthOutbox, HealthSampler
from gateway.model import utc_now
from gateway.testing.factories import make_readings
from gateway.testing.mqtt import Capture, wait_for
from gateway.testing.services import MosquittoServer
from gateway.testing.shipped_broker import shipped_mosquitto

pytestmark = pytest.mark.integration

SITE = "hainich"
PASSWORDS = {"sinkwatch-central": "central-secret", "st01": "st01-secret", "st02": "st02-secret"}


@dataclass
class Site:
    broker: MosquittoServer
    tmp: Path

    def mqtt(self, user: str, password: str | None = None) -> MqttConfig:
        return MqttConfig(host=self.broker.host, port=self.broker.port, username=user,
                          password=SecretStr(password if password is not None else PASSWORDS[user]), keepalive_s=5)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    server = shipped_mosquitto(tmp_path / "broker", PASSWORDS, site=SITE)
    server.start()
    try:
        yield Site(server, tmp_path)
    finally:
        server.stop()


class V5Client:
    """A bare MQTT 5 client that reports each PUBACK's reason code."""

    def __init__(self, site: Site, user: str, client_id: str | None = None) -> None:
        self.acks: dict[int, tuple[int, str]] = {}
        self.messages: list[mqtt.MQTTMessage] = []
        self.suback: list[int] = []
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"test-{user}",
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(user, PASSWORDS[user])
        self.client.on_connect = lambda *a: self._connected.set()
        self.client.on_publish = self._on_publish
        self.client.on_message = lambda c, u, m: self.messages.append(m)
        self.client.on_subscribe = self._on_subscribe
        self.client.connect(site.broker.host, site.broker.port)
        self.client.loop_start()
        assert self._connected.wait(5)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self.acks[mid] = (int(reason.value), str(reason))

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        self.suback = [int(r.value) for r in reasons]
        self._subscribed.set()

    def puback(self, topic: str, payload: bytes = b"{}") -> int:
        info = self.client.publish(topic, payload, qos=1)
        assert wait_for(lambda: info.mid in self.acks, 5), f"no PUBACK for {topic}"
        return self.acks[info.mid][0]

    def subscribe(self, topic: str) -> None:
        self._subscribed.clear()
        self.client.subscribe(topic, options=SubscribeOptions(qos=1))
        assert self._subscribed.wait(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


SUCCESS, NO_SUBSCRIBERS, NOT_AUTHORIZED = 0x00, 0x10, 0x87
ACCEPTED = {SUCCESS, NO_SUBSCRIBERS}


def test_every_station_channel_goes_through_for_its_own_station_only(site: Site) -> None:
    # finding 1: the ACL shipped before allowed only readings and status, and MQTT 3.1.1 hid the refusal; a
    # provisioned station's block names its site too, so it cannot publish as itself under another site
    station = V5Client(site, "st01")
    try:
        for topic in (readings_topic(SITE, "st01"), status_topic(SITE, "st01"), fluxes_topic(SITE, "st01"),
                      raw_topic(SITE, "st01"), health_topic(SITE, "st01"), command_results_topic(SITE, "st01")):
            assert station.puback(topic) in ACCEPTED, topic
        for topic in (readings_topic(SITE, "st02"), status_topic(SITE, "st02"), fluxes_topic(SITE, "st02"),
                      raw_topic(SITE, "st02"), health_topic(SITE, "st02"), command_results_topic(SITE, "st02"),
                      receipts_topic(SITE, "st01"), commands_topic(SITE, "st01"), commands_topic(SITE, "st02"),
                      readings_topic("another-site", "st01"), status_topic("another-site", "st01")):
            assert station.puback(topic) == NOT_AUTHORIZED, topic
    finally:
        station.close()


def test_the_central_service_reads_everything_and_writes_only_receipts_and_commands(site: Site) -> None:
    central = V5Client(site, "sinkwatch-central")
    station = V5Client(site, "st01")
    try:
        central.subscribe("sinkwatch/v1/#")
        for topic in (readings_topic(SITE, "st01"), fluxes_topic(SITE, "st01"), raw_topic(SITE, "st01"),
                      health_topic(SITE, "st01"), command_results_topic(SITE, "st01")):
            assert station.puback(topic, b'{"from":"st01"}') == SUCCESS
        assert wait_for(lambda: len(central.messages) >= 5, 5)
        for topic in (readings_topic(SITE, "st01"), status_topic(SITE, "st01"), fluxes_topic(SITE, "st01"),
                      health_topic(SITE, "st01"), command_results_topic(SITE, "st01")):
            assert central.puback(topic) == NOT_AUTHORIZED, topic
        assert central.puback(receipts_topic(SITE, "st01")) in ACCEPTED
        assert central.puback(commands_topic(SITE, "st01")) in ACCEPTED
    finally:
        central.close()
        station.close()


def test_receipts_reach_only_their_station(site: Site) -> None:
    mine, other = V5Client(site, "st01"), V5Client(site, "st02")
    central = V5Client(site, "sinkwatch-central")
    try:
        mine.subscribe(receipts_topic(SITE, "st01"))
        other.subscribe(RECEIPTS_SUBSCRIPTION)  # tries to listen to every station's receipts
        other.subscribe(receipts_topic(SITE, "st01"))
        receipt = Receipt(site=SITE, station="st01", channel="readings", stored=[(0, 4)], sent=utc_now())
        assert central.puback(receipts_topic(SITE, "st01"), receipt.model_dump_json().encode()) == SUCCESS
        assert wait_for(lambda: len(mine.messages) == 1, 5)
        assert Receipt.model_validate_json(mine.messages[0].payload) == receipt
        central.puback(receipts_topic(SITE, "st01"), receipt.model_dump_json().encode())
        assert wait_for(lambda: len(mine.messages) == 2, 5)
        assert other.messages == []
    finally:
        for client in (mine, other, central):
            client.close()


def test_commands_reach_only_their_station(site: Site) -> None:
    mine, other = V5Client(site, "st01"), V5Client(site, "st02")
    central = V5Client(site, "sinkwatch-central")
    try:
        mine.subscribe(commands_topic(SITE, "st01"))
        other.subscribe("sinkwatch/v1/+/+/commands")  # tries to listen to every station's commands
        other.subscribe(commands_topic(SITE, "st01"))
        assert central.puback(commands_topic(SITE, "st01"), b'{"kind":"check"}') == SUCCESS
        assert wait_for(lambda: len(mine.messages) == 1, 5)
        # a station cannot send a command, not even to itself: only the central service writes commands
        assert other.puback(commands_topic(SITE, "st01")) == NOT_AUTHORIZED
        assert mine.puback(commands_topic(SITE, "st01")) == NOT_AUTHORIZED
        assert central.puback(commands_topic(SITE, "st01"), b'{"kind":"restart"}') == SUCCESS
        assert wait_for(lambda: len(mine.messages) == 2, 5)
        assert [m.payload for m in mine.messages] == [b'{"kind":"check"}', b'{"kind":"restart"}']
        assert other.messages == []
    finally:
        for client in (mine, other, central):
            client.close()


def test_a_station_posing_as_another_is_refused_and_keeps_its_readings(site: Site) -> None:
    # st02's credentials, st01's topics: every batch is refused with 0x87, counted, reported and kept
    buffer = ReadingBuffer(site.tmp / "buffer.sqlite")
    buffer.append(make_readings(12))
    delivery = Delivery(SITE, "st01", site.mqtt("st02"), DeliverySettings(refusal_retry_s=0.3))
    delivery.add_channel(ReadingsOutbox(buffer, SITE, "st01", batch_size=4))
    delivery.start()
    try:
        def refusals() -> int:
            return sum(delivery.counters("readings").refusals.values())
        assert wait_for(lambda: refusals() >= 6, 10)  # three batches, each refused at least twice
        health = delivery.health()["channels"]["readings"]  # type: ignore[index]
        assert health["refusing"] == "Not authorized" and set(health["refusals"]) == {"Not authorized"}
        assert health["pending"] == 12 and health["confirmed"] == 0 and health["accepted"] == 0
    finally:
        delivery.stop()
    assert buffer.pending_readings() == 12
    buffer.close()


@pytest.mark.parametrize("workers", [0, 2], ids=["one-ingestor", "two-shared-workers"])
def test_every_channel_reaches_the_central_store_through_the_shipped_config(site: Site, workers: int) -> None:
    from datetime import UTC, datetime, timedelta

    from gateway.central.config import MqttSettings
    from gateway.central.ingest import Ingestor
    from gateway.central.store import SqliteStore
    from gateway.contract import FluxRecord
    from gateway.edge.fluxrunner import FluxOutbox
    from gateway.edge.streams.uplink import RawOutbox
    from gateway.rawarchive import ArchiveWriter

    t0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    store = SqliteStore(site.tmp / "store.sqlite")
    def central(client_id: str, **options: Any) -> Ingestor:
        return Ingestor(MqttSettings(host=site.broker.host, port=site.broker.port, username="sinkwatch-central",
                                     password=SecretStr(PASSWORDS["sinkwatch-central"]), client_id=client_id),
                        store, site.tmp / "central", **options)

    # the shipped ACL must let the central user's ingest workers subscribe to $share/<group>/sinkwatch/v1/...
    ingestors = [central("sinkwatch-central")] if not workers else [
        central(f"sinkwatch-central-w{i}", role="data", shared_group="sinkwatch-ingest") for i in range(workers)]
    capture = Capture(site.broker.host, site.broker.port, ("sinkwatch/v1/#",), username="sinkwatch-central",
                      password=PASSWORDS["sinkwatch-central"], client_id="capture-central")
    buffer = ReadingBuffer(site.tmp / "buffer.sqlite")
    buffer.append(make_readings(20, station="st01"))
    fluxes = FluxOutbox(site.tmp / "buffer.sqlite", SITE, "st01")
    for i in range(2):
        start = t0 + timedelta(minutes=30 * i)
        fluxes.add(FluxRecord(site=SITE, station="st01", start=start, end=start + timedelta(minutes=30), status="ok",
                              engine_version="sinkwatch-ec 0.1.0", settings_hash="0123456789abcdef",
                              values={"FC": -2.0}), (start + timedelta(minutes=30)).timestamp())
    raw = RawOutbox(SITE, "st01", site.tmp / "raw" / "outbox", site.tmp / "buffer.sqlite")
    writer = ArchiveWriter(site.tmp / "raw", "csat", int(t0.timestamp()), [("U", "m s-1")],
                           {"site": SITE, "station": "st01", "sensor": "csat"})
    for i in range(20):
        writer.write(t0.timestamp() + i / 20, [float(i)])
    raw.enqueue(writer.close({"closed": "test"}))
    delivery = Delivery(SITE, "st01", site.mqtt("st01"))
    health = HealthOutbox(site.tmp / "buffer.sqlite", SITE, "st01")
    for _ in range(2):
        health.add(HealthSampler(SITE, "st01", interval_s=60.0, disk_path=site.tmp).sample(buffers=[], sensors=[]))
    for outbox in (ReadingsOutbox(buffer, SITE, "st01", batch_size=5), fluxes, raw, health):
        delivery.add_channel(outbox)
    for ingestor in ingestors:
        ingestor.start()
    assert wait_for(lambda: all(i.mqtt_connected for i in ingestors), 10)
    delivery.start()
    try:
        assert delivery.wait_confirmed(20), delivery.health()
        every = [i.counters() for i in ingestors]
        assert tuple(sum(c[name] for c in every) for name in (
            "readings_stored", "flux_records_stored", "raw_files_archived", "health_reports_stored")) == (20, 2, 1, 2)
        channels = ("readings", "fluxes", "raw", "health")
        assert [delivery.counters(c).confirmed_units for c in channels] == [20, 2, 1, 2]
        assert sum(sum(delivery.counters(c).refusals.values()) for c in channels) == 0
        assert len(store.latest_health()) == 1
        assert wait_for(lambda: any(m.topic.endswith("/status") for m in capture.messages), 5)  # online status
    finally:
        delivery.stop()
        for ingestor in ingestors:
            ingestor.stop()
        capture.close()
        for closable in (buffer, fluxes, raw, health, store):
            closable.close()
