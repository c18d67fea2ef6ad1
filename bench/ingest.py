"""Throughput of the walking skeleton's two hops, each against a baseline measured in the same run.

    edge:    disk buffer -> MQTT 5 (QoS 1) -> receipt -> deleted vs  bare paho QoS 1 publishes of the same payloads
             (the receipts come from gateway.testing.receipts.ReceiptEcho, which answers at once without a store, so
             the figure is the cost of the delivery mechanism itself: PUBACK pacing, receipts, deletes)
    central: MQTT -> Ingestor -> InfluxDB (ack after write)     vs  POSTing the same line protocol straight to /write

Both use private Mosquitto and influxd instances (Debian packages) on loopback, like the tests. Run:

    .venv/bin/python bench/ingest.py [--readings 100000] [--batch 500]

It prints readings/s for each path, the ratio to its baseline, and this process's CPU time per 1000 readings.
No assertion is made: the figures go to docs/performance.md with the date and machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.central.config import MqttSettings
from gateway.central.ingest import Ingestor
from gateway.central.store import InfluxStore, StoredReading
from gateway.central.store.influx import reading_to_line
from gateway.contract import ReadingBatch, readings_topic
from gateway.edge.buffer import ReadingBuffer
from gateway.edge.config import MqttConfig
from gateway.edge.delivery import Delivery, DeliverySettings, OutboxItem
from gateway.edge.outbox import ReadingsOutbox
from gateway.edge.signer import ChainSigner
from gateway.model import utc_now
from gateway.testing.factories import make_readings
from gateway.testing.receipts import ReceiptEcho
from gateway.testing.services import running_influxd, running_mosquitto
from gateway.trust.keys import KeyRegistry, generate_key
from gateway.trust.signing import USER_PROPERTY


class Measure:
    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def stop(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def wait_until(predicate: Callable[[], bool], timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark step did not finish")
        time.sleep(0.005)


def report(name: str, count: int, wall: float, cpu: float, baseline_rate: float | None = None) -> float:
    rate = count / wall
    ratio = f"  = {rate / baseline_rate:.2f} x baseline" if baseline_rate else ""
    print(f"  {name:<46} {rate:>10,.0f} readings/s   {1000 * cpu / count * 1000:>7.1f} ms CPU/1000 rd{ratio}")
    return rate


def make_batches(total: int, batch: int) -> list[ReadingBatch]:
    readings = make_readings(total, station="st01")
    return [ReadingBatch(site="bench", station="st01", seq=i // batch, sent=utc_now(), readings=readings[i:i + batch])
            for i in range(0, total, batch)]


def bench_edge(host: str, port: int, batches: list[ReadingBatch], work: Path) -> None:
    total = sum(len(b.readings) for b in batches)
    payloads = [b.model_dump_json().encode() for b in batches]

    # baseline: bare paho, QoS 1, wait for every PUBACK
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-baseline", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(10)
    acked = [0]
    client.on_publish = lambda *_: acked.__setitem__(0, acked[0] + 1)
    client.connect(host, port)
    client.loop_start()
    m = Measure()
    for payload in payloads:
        client.publish("bench/baseline", payload, qos=1)
    wait_until(lambda: acked[0] == len(payloads))
    wall, cpu = m.stop()
    client.loop_stop()
    client.disconnect()
    baseline = report("baseline: paho QoS 1 publish, same payloads", total, wall, cpu)

    # ours: readings appended to the disk buffer, claimed, published, deleted on the receipt
    buffer = ReadingBuffer(work / "edge.sqlite")
    readings = [r for b in batches for r in b.readings]
    m = Measure()
    buffer.append(readings)
    wall_append, cpu_append = m.stop()
    report("edge buffer append (commit to disk)", total, wall_append, cpu_append)
    echo = ReceiptEcho(host, port, ("readings",), client_id="bench-receipts")
    outbox = GatedOutbox(buffer, "bench", "st01", len(batches[0].readings))
    delivery = Delivery("bench", "st01", MqttConfig(host=host, port=port), DeliverySettings(max_in_flight=10))
    delivery.add_channel(outbox)
    delivery.start()
    wait_until(lambda: delivery.connected and delivery.health()["receipts_subscribed"] is True, 10)
    m = Measure()
    outbox.open = True  # connected and subscribed: from here on only the delivery itself is timed
    delivery.notify()
    wait_until(lambda: buffer.pending_readings() == 0)
    wall, cpu = m.stop()
    delivery.stop()
    echo.close()
    buffer.close()
    report("ours: buffer -> MQTT 5 -> receipt -> delete", total, wall, cpu, baseline)
    print("    (CPU includes the bench's own receipt echo, which stands in for the central service)")


class GatedOutbox(ReadingsOutbox):
    """Hands nothing out until `open`, so the connection set-up stays out of the timing."""

    open = False

    def claim(self, limit: int, exclude: set[int]) -> list[OutboxItem]:
        return super().claim(limit, exclude) if self.open else []


def bench_central(host: str, port: int, influx_url: str, batches: list[ReadingBatch], work: Path) -> None:
    total = sum(len(b.readings) for b in batches)

    # baseline: the same points as line protocol, POSTed straight to /write, one request per batch
    bodies = ["\n".join(reading_to_line(StoredReading("bench", r)) for r in b.readings).encode() for b in batches]
    with httpx.Client(base_url=influx_url, timeout=60) as http:
        http.post("/query", params={"q": "CREATE DATABASE baseline"}).raise_for_status()
        m = Measure()
        for body in bodies:
            http.post("/write", params={"db": "baseline", "precision": "ns"}, content=body).raise_for_status()
        wall, cpu = m.stop()
    baseline = report("baseline: line protocol POST /write", total, wall, cpu)

    store = InfluxStore(influx_url, database="ours")
    ingestor = Ingestor(MqttSettings(host=host, port=port, client_id="bench-central"), store, work / "central")
    ingestor.start()
    wait_until(lambda: ingestor.mqtt_connected, 10)
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-station", protocol=mqtt.MQTTv5)
    publisher.max_inflight_messages_set(100)
    publisher.connect(host, port)
    publisher.loop_start()
    topic = readings_topic("bench", "st01")
    payloads = [b.model_dump_json().encode() for b in batches]
    m = Measure()
    for payload in payloads:
        publisher.publish(topic, payload, qos=1)
    wait_until(lambda: ingestor.counters()["readings_stored"] >= total)
    wall, cpu = m.stop()
    publisher.loop_stop()
    publisher.disconnect()
    ingestor.stop()
    unsigned = report("ours: MQTT -> Ingestor -> InfluxDB, ack after write", total, wall, cpu, baseline)
    print("    (CPU here includes the bench's own publisher; the central process alone uses less)")
    bench_central_signed(host, port, influx_url, batches, work, unsigned)


def bench_central_signed(host: str, port: int, influx_url: str, batches: list[ReadingBatch], work: Path,
                         unsigned_rate: float) -> None:
    """The same hop with signatures required: every batch signed (before the clock starts: that is the station's
    cost, bench/station_hour.py) and verified, placed in its chain and written with its ledger item."""
    total = sum(len(b.readings) for b in batches)
    key = generate_key(work / "st01.key")
    KeyRegistry(work / "central-signed").register("bench", "st01", key.public_key())
    signer = ChainSigner(key, work / "st01-chain.sqlite")
    topic = readings_topic("bench", "st01")
    payloads = [b.model_dump_json().encode() for b in batches]
    started = time.process_time()
    envelopes = [signer.envelope("readings", topic, b.seq, p) for b, p in zip(batches, payloads, strict=True)]
    sign_cpu = time.process_time() - started
    signer.close()
    print(f"  station side, signing {len(batches)} batches (link kept in SQLite, fsync each): "
          f"{1000 * sign_cpu / len(batches):.2f} ms CPU per batch")
    store = InfluxStore(influx_url, database="signed")
    ingestor = Ingestor(MqttSettings(host=host, port=port, client_id="bench-central-signed"), store,
                        work / "central-signed", signatures="required")
    ingestor.start()
    wait_until(lambda: ingestor.mqtt_connected, 10)
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-station-signed", protocol=mqtt.MQTTv5)
    publisher.max_inflight_messages_set(100)
    publisher.connect(host, port)
    publisher.loop_start()
    m = Measure()
    for payload, envelope in zip(payloads, envelopes, strict=True):
        properties = Properties(PacketTypes.PUBLISH)
        properties.UserProperty = (USER_PROPERTY, envelope)
        publisher.publish(topic, payload, qos=1, properties=properties)
    wait_until(lambda: ingestor.counters()["readings_stored"] >= total)
    wall, cpu = m.stop()
    publisher.loop_stop()
    publisher.disconnect()
    counters = ingestor.counters()
    ingestor.stop()
    report("ours, signed: verify + chain + ledger, same hop", total, wall, cpu, unsigned_rate)
    print(f"    (ratio to the unsigned run above; signed items {counters['signed_items']}, untrusted "
          f"{counters['untrusted']}, chain events {counters['chain_events']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    print(f"sinkwatch ingest benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}; {args.readings:,} readings in batches of "
          f"{args.batch}")
    batches = make_batches(args.readings, args.batch)
    with tempfile.TemporaryDirectory(prefix="sinkwatch-bench-") as tmp:
        work = Path(tmp)
        with running_mosquitto(work / "mosquitto") as broker, running_influxd(work / "influxd") as influx:
            print("edge hop (station -> broker):")
            bench_edge(broker.host, broker.port, batches, work)
            print("central hop (broker -> InfluxDB):")
            bench_central(broker.host, broker.port, influx.url, batches, work)


if __name__ == "__main__":
    main()
