"""Throughput of the walking skeleton's two hops, each against a baseline measured in the same run.

    edge:    disk buffer -> MQTT 5 (QoS 1) -> receipt -> deleted vs  bare paho QoS 1 publishes of the same payloads
             (the receipts come from gateway.testing.receipts.ReceiptEcho, which answers at once without a store, so
             the figure is the cost of the delivery mechanism itself: PUBACK pacing, receipts, deletes)
    central: MQTT -> Ingestor -> InfluxDB (ack after write, receipts published), unsigned and signed
             vs  the same line protocol POSTed straight to /write, one request per batch and in requests of
             10,000 lines

Both use private Mosquitto and influxd instances (Debian packages) on loopback, like the tests. On the central hop
the station publishes from a child process, so this process's CPU time is the central service's alone, and the
influxd's CPU time (from /proc) is printed beside it for every path. Run:

    .venv/bin/python bench/ingest.py [--readings 100000] [--batch 500] [--hops edge central]

It prints readings/s for each path, the ratio to its baseline, and CPU time per 1000 readings.
No assertion is made: the figures go to docs/performance.md with the date and machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.central.config import MqttSettings
from gateway.central.ingest import Ingestor
from gateway.central.service import tune_collector
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
from gateway.testing.services import InfluxInstance, running_influxd, running_mosquitto
from gateway.trust.keys import KeyRegistry, generate_key, load_private_key


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


def report(name: str, count: int, wall: float, cpu: float, baseline_rate: float | None = None,
           db_cpu: float | None = None) -> float:
    rate = count / wall
    ratio = f"  = {rate / baseline_rate:.2f} x baseline" if baseline_rate else ""
    database = f", InfluxDB {1e6 * db_cpu / count:.1f} ms CPU/1000 rd" if db_cpu is not None else ""
    print(f"  {name:<52} {rate:>10,.0f} readings/s   {1e6 * cpu / count:>6.1f} ms CPU/1000 rd{database}{ratio}")
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


def process_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of another process so far (/proc/<pid>/stat); 0 when unknown."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


PUBLISHER = """
import sys, paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
messages = []
with open(path, "rb") as f:
    while header := f.read(12):
        topic_len, payload_len, envelope_len = (int.from_bytes(header[i:i + 4], "big") for i in (0, 4, 8))
        messages.append((f.read(topic_len).decode(), f.read(payload_len), f.read(envelope_len).decode()))
client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-station", protocol=mqtt.MQTTv5)
client.max_inflight_messages_set(100)
client.max_queued_messages_set(0)
client.connect(host, port)
client.loop_start()
print("ready", flush=True)
sys.stdin.readline()
infos = []
for topic, payload, envelope in messages:
    properties = None
    if envelope:
        properties = Properties(PacketTypes.PUBLISH)
        properties.UserProperty = ("sinkwatch-sig", envelope)
    infos.append(client.publish(topic, payload, qos=1, properties=properties))
for info in infos:
    info.wait_for_publish()
client.disconnect()
client.loop_stop()
"""


def publish_from_child(host: str, port: int, messages: list[tuple[str, bytes, str]], work: Path,
                       start: Callable[[], None]) -> subprocess.Popen[str]:
    """A station in its own process, so this process's CPU time is the central service's alone: it connects,
    then publishes every message at QoS 1 once `start` has run (the clock starts there)."""
    path = work / "messages.bin"
    with open(path, "wb") as out:
        for topic, payload, envelope in messages:
            parts = (topic.encode(), payload, envelope.encode())
            out.write(b"".join(len(part).to_bytes(4, "big") for part in parts) + b"".join(parts))
    child = subprocess.Popen([sys.executable, "-c", PUBLISHER, host, str(port), str(path)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    if child.stdout.readline().strip() != "ready":
        raise RuntimeError("the publishing station did not connect")
    start()
    child.stdin.write("go\n")
    child.stdin.flush()
    return child


@dataclass
class CentralData:
    """What the central hop is fed, as bytes and strings only: holding the parsed readings would make this
    process's garbage collector walk 100,000 objects again and again and bill it to the ingestor."""

    payloads: list[bytes]  # one ReadingBatch per message
    seqs: list[int]
    lines: list[list[str]]  # the same readings as line protocol, per batch
    total: int

    @classmethod
    def of(cls, batches: list[ReadingBatch]) -> CentralData:
        return cls([b.model_dump_json().encode() for b in batches], [b.seq for b in batches],
                   [[reading_to_line(StoredReading("bench", r)) for r in b.readings] for b in batches],
                   sum(len(b.readings) for b in batches))


def bench_central(host: str, port: int, influx: InfluxInstance, data: CentralData, work: Path, repeat: int) -> None:
    """The baselines and ours (unsigned, signed) one after the other, `repeat` rounds, each into fresh databases;
    on a machine others share, the medians over rounds are the figures to compare."""
    total = data.total
    # baselines: the same points as line protocol, POSTed straight to /write: one request per batch (as the
    # stations send them), and in requests of 10,000 lines (the most InfluxDB takes per request of ours)
    per_batch = ["\n".join(batch_lines).encode() for batch_lines in data.lines]
    flat = [line for batch_lines in data.lines for line in batch_lines]
    grouped = ["\n".join(flat[i:i + 10_000]).encode() for i in range(0, len(flat), 10_000)]
    topic = readings_topic("bench", "st01")
    unsigned = [(topic, payload, "") for payload in data.payloads]
    signed = signed_messages(data, work)
    rounds: dict[str, list[float]] = {}
    for round_ in range(repeat):
        print(f" round {round_ + 1} of {repeat}:")
        rates = {}
        for name, bodies in (("per batch", per_batch), ("10,000 lines", grouped)):
            database = f"baseline_{name.split()[0].replace(',', '')}_{round_}"
            rates[name] = post_baseline(influx, database, bodies, f"baseline: line protocol POST /write, {name}",
                                        total)
        ours = run_ours("ours: MQTT -> Ingestor -> InfluxDB, ack after write", host, port, influx, unsigned, total,
                        work, f"ours_{round_}", rates)
        rates["ours"] = ours
        rates["signed"] = run_ours("ours, signed: verify + chain + ledger, same hop", host, port, influx, signed,
                                   total, work, f"signed_{round_}", {"unsigned run above": ours},
                                   station_key=work / "st01.key", signatures="required")
        for name, rate in rates.items():
            rounds.setdefault(name, []).append(rate)
    if repeat > 1:
        median = {name: statistics.median(values) for name, values in rounds.items()}
        print(f" medians of {repeat} rounds: " + ", ".join(f"{name} {rate:,.0f} readings/s"
                                                           for name, rate in median.items()))
        print(f"  ours / baseline per batch = {median['ours'] / median['per batch']:.2f}, ours / baseline 10,000 "
              f"lines = {median['ours'] / median['10,000 lines']:.2f}, signed / unsigned = "
              f"{median['signed'] / median['ours']:.2f}")


def post_baseline(influx: InfluxInstance, database: str, bodies: list[bytes], label: str, total: int) -> float:
    with httpx.Client(base_url=influx.url, timeout=60) as http:
        http.post("/query", params={"q": f"CREATE DATABASE {database}"}).raise_for_status()
        db_cpu = process_cpu_s(influx.pid)
        m = Measure()
        for body in bodies:
            http.post("/write", params={"db": database, "precision": "ns"}, content=body).raise_for_status()
        wall, cpu = m.stop()
        db_cpu = process_cpu_s(influx.pid) - db_cpu
    return report(label, total, wall, cpu, db_cpu=db_cpu)


def run_ours(label: str, host: str, port: int, influx: InfluxInstance, messages: list[tuple[str, bytes, str]],
             total: int, work: Path, database: str, baselines: dict[str, float], station_key: Path | None = None,
             **ingestor_options: Any) -> float:
    if station_key is not None:  # provisioned with this central service, as `sinkwatch station provision` does
        KeyRegistry(work / database).register("bench", "st01", load_private_key(station_key).public_key())
    store = InfluxStore(influx.url, database=database)
    ingestor = Ingestor(MqttSettings(host=host, port=port, client_id=f"bench-{database}"), store,
                        work / database, **ingestor_options)
    ingestor.start()
    wait_until(lambda: ingestor.mqtt_connected, 10)
    clock: list[Measure] = []
    db_cpu = [0.0]

    def start() -> None:
        db_cpu[0] = process_cpu_s(influx.pid)
        clock.append(Measure())

    child = publish_from_child(host, port, messages, work, start)
    wait_until(lambda: ingestor.counters()["readings_stored"] >= total)
    wall, cpu = clock[0].stop()
    db = process_cpu_s(influx.pid) - db_cpu[0]
    child.wait(60)
    counters = ingestor.counters()
    ingestor.stop()
    store.close()
    rate = report(label, total, wall, cpu, db_cpu=db)
    for name, baseline in baselines.items():
        print(f"    = {rate / baseline:.2f} x the baseline {name}")
    print(f"    (this process is the central service alone: the station publishes from its own process; "
          f"signed items {counters['signed_items']}, chain events {counters['chain_events']})")
    return rate


def signed_messages(data: CentralData, work: Path) -> list[tuple[str, bytes, str]]:
    """Every batch signed by a registered station key (before any clock starts: that is the station's cost,
    bench/station_hour.py), for the signed run: verified, placed in its chain and written with its ledger item."""
    signer = ChainSigner(generate_key(work / "st01.key"), work / "st01-chain.sqlite")
    topic = readings_topic("bench", "st01")
    started = time.process_time()
    envelopes = [signer.envelope("readings", topic, seq, payload)
                 for seq, payload in zip(data.seqs, data.payloads, strict=True)]
    sign_cpu = time.process_time() - started
    signer.close()
    print(f"  station side, signing {len(envelopes)} batches (link kept in SQLite, fsync each): "
          f"{1000 * sign_cpu / len(envelopes):.2f} ms CPU per batch")
    return [(topic, payload, envelope) for payload, envelope in zip(data.payloads, envelopes, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--hops", nargs="+", choices=("edge", "central"), default=["edge", "central"])
    parser.add_argument("--repeat", type=int, default=1, help="rounds of the central hop (medians printed)")
    args = parser.parse_args()
    print(f"sinkwatch ingest benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}; {args.readings:,} readings in batches of "
          f"{args.batch}")
    batches = make_batches(args.readings, args.batch)
    with tempfile.TemporaryDirectory(prefix="sinkwatch-bench-") as tmp:
        work = Path(tmp)
        with running_mosquitto(work / "mosquitto") as broker, running_influxd(work / "influxd") as influx:
            if "edge" in args.hops:
                print("edge hop (station -> broker):")
                bench_edge(broker.host, broker.port, batches, work)
            if "central" not in args.hops:
                return
            print("central hop (broker -> InfluxDB):")
            data = CentralData.of(batches)
            del batches
            tune_collector()  # as `sinkwatch central serve` does in its process
            bench_central(broker.host, broker.port, influx, data, work, args.repeat)


if __name__ == "__main__":
    main()
