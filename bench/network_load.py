"""Network-scale load: a thousand simulated stations against a real Mosquitto, `sinkwatch central ingest` workers and
a real InfluxDB on this machine, ending with an exact reconciliation (what the stations sent = what is stored).

Every station is a client of its own (MQTT 5, its own client id and receipts subscription) speaking the delivery
contract as `gateway/edge/delivery.py` does: items of the `readings`, `fluxes` and `health` channels with their
per-channel seq, each signed with the station's Ed25519 key and chained to the item before it (registered with the
central service as `sinkwatch station provision` does), at most `max_unconfirmed` items out without a receipt, an
item deleted only on the central receipt and sent again when none came within `receipt_timeout_s` (put off while the
channel's receipts show the central service still working towards it, as the station's delivery does). The stations run
in this one process on one thread (paho's external event loop over a selector), so the load generator costs a
fraction of a core. What a station sends follows a full station's real rates (docs/performance.md, station hour):

    readings, polled every 10 s      12 series: a soil CO2 profile (3 GMP252: CO2, probe T), soil T and water content,
                                     air T, RH, VPD, shortwave radiation
    readings, EC summaries, 60 s     27 series: sonic U, V, W, T_SONIC, WS and analyzer CO2, H2O with _SD and _N,
                                     analyzer signal strength and diagnostics
    readings, dendrometers, 60 s     2 series
    fluxes                           one record of 14 variables every half hour (sent at a random minute)
    health                           one StationHealth report a minute (8 sensors, 3 outboxes)

A station drains its buffer every 10 s (a batch of 12 readings, 41 at the minute), and a catch-up after an
outage in batches of up to 500 readings (`batch_size`). Per run (1 worker, then 2):

    catch-up     every station connects with `--backlog-min` minutes of items waiting (an outage of the central
                 service or of the uplink), and sends them as fast as its window and the receipts allow: the drain
                 rate is the ingest's throughput (messages/s, readings/s, per worker); baselines in the same run: the
                 same readings as line protocol POSTed straight to InfluxDB's /write in requests of 5,000, and the
                 /write requests one worker's code makes of the same messages (recorded in this process, then
                 replayed from one client: what InfluxDB takes of what the ingest writes, `replayed_baseline`)
    live         `--live-s` seconds of real-time traffic of every station: ingest lag (first PUBLISH of an item to
                 its receipt at the station) p50/p99, the broker's stored messages ($SYS, every second), the
                 workers' queues
    reconcile    per station, the readings in InfluxDB = the readings sent (each identity sent once), flux records,
                 health reports, ledger items = items sent; the workers' counters: nothing set aside, dead-lettered
                 or refused
    size         series cardinality of the database; its disk after InfluxDB's snapshot and full compaction, per
                 station-year (extrapolated from the run's station-time: an upper bound for short runs, whose
                 per-series overhead is spread over few points)

    .venv/bin/python bench/network_load.py [--stations 1000] [--backlog-min 10] [--live-s 120] [--workers 1 2]

No assertion but the reconciliation (the run fails when it does not match); docs/scaling.md keeps the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import random
import selectors
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
import paho.mqtt.client as mqtt
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway import __version__
from gateway.central.store import StoredReading
from gateway.central.store.ledger import compress_payload
from gateway.central.store.lineprotocol import ReadingLines
from gateway.central.workers import read_statuses
from gateway.contract import (
    ChannelBacklog,
    FluxRecord,
    ReadingBatch,
    Receipt,
    SensorHealth,
    StationHealth,
    encode_flux_record,
    fluxes_topic,
    health_topic,
    readings_topic,
    receipts_topic,
)
from gateway.model import QualityFlag, Reading, TimeSource
from gateway.net import free_port
from gateway.testing.services import InfluxInstance, MosquittoServer, mosquitto_server, running_influxd
from gateway.trust.keys import KeyRegistry, key_id
from gateway.trust.signing import NO_CONTENT, USER_PROPERTY, Link, envelope_text, sign

SITE = "loadnet"
POLL_S = 10.0
MINUTE_S = 60.0
FLUX_S = 1800.0
BATCH_SIZE = 500  # station.yaml delivery.batch_size default
MAX_UNCONFIRMED = 100  # delivery.max_unconfirmed default
RECEIPT_TIMEOUT_S = 30.0  # delivery.receipt_timeout_s default, doubling per resend
MAX_RESEND_S = 300.0
SESSION_EXPIRY_S = 86400
CHANNELS = ("health", "fluxes", "readings")
STORE_TOPIC = "$SYS/broker/store/messages/count"  # messages the broker holds: queued for clients and in flight

# (sensor, variable, unit, mean, amplitude)
POLLED = [
    *[(f"gmp252_{d}", f"CO2_{i}_1_1", "umol mol-1", 1200.0 + 1500 * i, 150.0) for i, d in enumerate((5, 15, 30), 1)],
    *[(f"gmp252_{d}", f"T_PROBE_{i}_1_1", "degC", 9.0, 2.0) for i, d in enumerate((5, 15, 30), 1)],
    ("soil", "TS_1_1_1", "degC", 9.5, 1.8), ("soil", "SWC_1_1_1", "%", 28.0, 0.5),
    ("hmp155", "TA_1_1_1", "degC", 11.0, 5.0), ("hmp155", "RH_1_1_1", "%", 75.0, 18.0),
    ("hmp155", "VPD_1_1_1", "hPa", 4.0, 3.0), ("sr30", "SW_IN_1_1_1", "W m-2", 300.0, 300.0),
]
SUMMARIES = [
    *[("csat3b", f"{v}{suffix}", unit, mean, 0.5) for v, unit, mean in
      (("U", "m s-1", 2.0), ("V", "m s-1", 0.5), ("W", "m s-1", 0.0), ("T_SONIC", "degC", 11.0), ("WS", "m s-1", 2.2))
      for suffix in ("", "_SD", "_N")],
    *[("li7500", f"{v}{suffix}", unit, mean, 1.0) for v, unit, mean in
      (("CO2", "mmol m-3", 16.6), ("H2O", "mmol m-3", 520.0), ("CO2SS", "%", 96.0)) for suffix in ("", "_SD", "_N")],
    ("li7500", "DIAG", "1", 249.0, 0.0), ("li7500", "CO2SS_MIN", "%", 95.0, 1.0), ("li7500", "PA", "kPa", 98.0, 0.3),
]
DENDROMETERS = [("dendro", "STEM_RAD_CHG_1_1_1", "um", 0.0, 12.0), ("dendro", "STEM_RAD_CHG_2_1_1", "um", 0.0, 12.0)]
HEALTH_SENSORS: list[tuple[str, Literal["polled", "stream"]]] = sorted(
    {(s[0], "stream" if s[0] in ("csat3b", "li7500") else "polled") for s in POLLED + SUMMARIES + DENDROMETERS})


def readings_per_station_hour() -> int:
    return int(len(POLLED) * 3600 / POLL_S + (len(SUMMARIES) + len(DENDROMETERS)) * 3600 / MINUTE_S)


# --- what a station measures -----------------------------------------------------------------------------------


def tick_readings(station: str, t: float, rng: random.Random) -> list[Reading]:
    """The readings a station's buffer receives at poll instant `t` (s since 1970, on the 10-s grid of its phase):
    its polled series, and at its minute mark the EC summaries and the dendrometers."""
    when = datetime.fromtimestamp(t, UTC)
    day = (t % 86400.0) / 86400.0
    series = POLLED + (SUMMARIES + DENDROMETERS if int(t // POLL_S) % 6 == 0 else [])
    return [Reading(station=station, sensor=sensor, variable=variable, unit=unit,
                    value=round(mean + amplitude * math.cos(2 * math.pi * (day - 0.6)) + rng.gauss(0, 0.01 + amplitude
                                                                                                   / 50), 4),
                    time=when, time_source=TimeSource.GATEWAY, clock_synced=True, qc=QualityFlag.GOOD)
            for sensor, variable, unit, mean, amplitude in series]


def flux_record(station: str, end: float, rng: random.Random) -> FluxRecord:
    end_dt = datetime.fromtimestamp(end, UTC)
    ustar = max(0.05, rng.gauss(0.4, 0.1))
    return FluxRecord(site=SITE, station=station, start=end_dt - timedelta(minutes=30), end=end_dt, status="ok",
                      engine_version="sinkwatch-ec load", settings_hash="10ad10ad10ad10ad", values={
                          "FC": rng.gauss(-4, 3), "FC_SSITC_TEST": rng.choice((0, 1, 2)), "H": rng.gauss(120, 40),
                          "H_SSITC_TEST": rng.choice((0, 1)), "LE": rng.gauss(80, 30), "LE_SSITC_TEST": 0,
                          "USTAR": ustar, "CO2_TLAG": 0.2, "H2O_TLAG": 0.3, "FETCH_MAX": rng.gauss(70, 5),
                          "FETCH_70": rng.gauss(220, 15), "FETCH_90": rng.gauss(480, 30), "WS": 1 + 3 * ustar,
                          "WD": rng.uniform(180, 280)})


def health_report(station: str, t: float, uptime_s: float, pending: int, rng: random.Random) -> StationHealth:
    return StationHealth(
        site=SITE, station=station, time=datetime.fromtimestamp(t, UTC), interval_s=60.0,
        daemon_version=__version__[:64], uptime_s=uptime_s, host_uptime_s=uptime_s + 86400.0, clock_synced=True,
        clock_offset_s=rng.gauss(0, 2e-4), clock_max_error_s=0.01, disk_free_bytes=20_000_000_000,
        disk_total_bytes=32_000_000_000, cpu_temperature_c=rng.gauss(48, 2), load_1m=abs(rng.gauss(0.3, 0.1)),
        load_5m=0.25, load_15m=0.2, cpu_count=4, daemon_cpu_share=abs(rng.gauss(0.01, 0.002)),
        memory_total_bytes=4_000_000_000, memory_available_bytes=3_100_000_000, daemon_rss_bytes=60_000_000,
        supply_voltage_v=rng.gauss(12.6, 0.05),
        buffers=[ChannelBacklog(channel="readings", unit="readings", pending=pending, oldest_age_s=1.0),
                 ChannelBacklog(channel="fluxes", unit="records", pending=0),
                 ChannelBacklog(channel="health", unit="reports", pending=1, oldest_age_s=0.0)],
        sensors=[SensorHealth(name=name, driver=name, kind=kind, state="connected" if kind == "stream" else "available",
                              available=True, availability=1.0, errors={}) for name, kind in HEALTH_SENSORS])


# --- a simulated station: outboxes, signing, the delivery window, receipts -------------------------------------


@dataclass
class Item:
    channel: str
    seq: int
    payload: bytes
    envelope: str
    units: int  # readings in a batch, 1 otherwise
    live: bool  # made during the live phase (its lag is measured)
    first_sent: float = 0.0
    due: float = math.inf  # when to send again without a receipt
    sends: int = 0
    taken: float = 0.0  # when its latest copy was sent


@dataclass
class Chain:
    epoch: str
    head: tuple[int, int, str] | None = None  # seq, at, digest of the last item signed


class Station:
    def __init__(self, index: int, key: Ed25519PrivateKey, rng: random.Random) -> None:
        self.name = f"st{index:04d}"
        self.key = key
        self.key_id = key_id(key.public_key())
        self.rng = rng
        self.phase = rng.uniform(0, POLL_S)  # its polls' place in the 10-s grid
        self.flux_phase = rng.uniform(0, FLUX_S)  # when after a half-hour's end its flux record is ready
        # its health reports' 10-s slot in the minute (the interval runs from the daemon's start; the EC summaries
        # are on the minute of the clock, every station's at once)
        self.health_slot = rng.randrange(int(MINUTE_S / POLL_S))
        self.ledger_payload_bytes = 0  # what the central ledger keeps of its payloads (zlib, base64 in InfluxDB)
        self.topics = {"readings": readings_topic(SITE, self.name), "fluxes": fluxes_topic(SITE, self.name),
                       "health": health_topic(SITE, self.name)}
        self.chains = {c: Chain(os.urandom(8).hex()) for c in CHANNELS}
        self.next_seq = dict.fromkeys(CHANNELS, 0)
        self.waiting: dict[str, deque[Item]] = {c: deque() for c in CHANNELS}  # in the outbox, not yet sent
        self.out: dict[tuple[str, int], Item] = {}  # sent, no receipt yet
        # per channel: when a receipt last confirmed items, the highest seq confirmed (a resend waits while the
        # central service is working towards the item: gateway/edge/delivery.py)
        self.last_receipt = dict.fromkeys(CHANNELS, -math.inf)
        self.highest_confirmed = dict.fromkeys(CHANNELS, -1)
        self.buffer: list[Reading] = []  # readings not yet in a batch
        self.sent_readings = 0  # readings made (each a distinct identity)
        self.sent_items = dict.fromkeys(CHANNELS, 0)
        self.client: mqtt.Client | None = None
        self.subscribed = False

    def add(self, channel: str, payload: bytes, units: int, live: bool) -> None:
        seq = self.next_seq[channel]
        self.next_seq[channel] += 1
        chain = self.chains[channel]
        now = time.time_ns()
        if chain.head is None:
            link = Link(chain.epoch, seq, now)
        else:
            link = Link(chain.epoch, seq, max(now, chain.head[1] + 1), chain.head[0], chain.head[1], chain.head[2])
        signed = sign(self.key, self.topics[channel], channel, link, payload, NO_CONTENT, key_id=self.key_id)
        chain.head = (seq, link.at, signed.digest)
        self.waiting[channel].append(Item(channel, seq, payload, envelope_text(signed.envelope), units, live))
        if channel in ("readings", "fluxes"):
            self.ledger_payload_bytes += 4 * math.ceil(len(compress_payload(payload)) / 3)
        self.sent_items[channel] += 1

    def measure(self, t: float, live: bool) -> None:
        readings = tick_readings(self.name, t, self.rng)
        self.buffer.extend(readings)
        self.sent_readings += len(readings)

    def drain(self, live: bool) -> None:
        """The delivery's buffer drain: whatever is in the buffer, in batches of at most `BATCH_SIZE`."""
        while self.buffer:
            part, self.buffer = self.buffer[:BATCH_SIZE], self.buffer[BATCH_SIZE:]
            seq = self.next_seq["readings"]
            batch = ReadingBatch(site=SITE, station=self.name, seq=seq, sent=datetime.now(UTC), readings=part)
            self.add("readings", batch.model_dump_json().encode(), len(part), live)

    def report(self, t: float, live: bool) -> None:
        report = health_report(self.name, t, 3600.0 + t % 86400, len(self.buffer), self.rng)
        report = report.model_copy(update={"seq": self.next_seq["health"]})
        self.add("health", report.model_dump_json().encode(), 1, live)

    def flux(self, end: float, live: bool) -> None:
        record = flux_record(self.name, end, self.rng).model_copy(update={"seq": self.next_seq["fluxes"]})
        self.add("fluxes", encode_flux_record(record), 1, live)

    def pump(self, now: float, stats: Stats) -> None:
        """Send what is due again, then new items while the window has room."""
        client = self.client
        if client is None or not client.is_connected():
            return
        for item in list(self.out.values()):
            if item.due <= now:
                if (now - self.last_receipt[item.channel] < RECEIPT_TIMEOUT_S
                        and self.highest_confirmed[item.channel] < item.seq and now - item.taken < MAX_RESEND_S):
                    item.due = now + RECEIPT_TIMEOUT_S  # still ahead in the central service's queue
                    stats.resends_put_off += 1
                    continue
                self._publish(item, now, stats)
        for channel in CHANNELS:
            queue = self.waiting[channel]
            while queue and len(self.out) < MAX_UNCONFIRMED:
                item = queue.popleft()
                self.out[(channel, item.seq)] = item
                self._publish(item, now, stats)

    def _publish(self, item: Item, now: float, stats: Stats) -> None:
        assert self.client is not None
        properties = Properties(PacketTypes.PUBLISH)
        properties.MessageExpiryInterval = 7 * 86400
        properties.UserProperty = (USER_PROPERTY, item.envelope)
        self.client.publish(self.topics[item.channel], item.payload, qos=1, properties=properties)
        if item.sends == 0:
            item.first_sent = now
        else:
            stats.resends += 1
        item.sends += 1
        item.taken = now
        item.due = now + min(RECEIPT_TIMEOUT_S * 2 ** (item.sends - 1), MAX_RESEND_S)
        stats.published += 1

    def on_receipt(self, payload: bytes, stats: Stats) -> None:
        receipt = Receipt.model_validate_json(payload)
        now = time.monotonic()
        for seq in receipt.dead_lettered_seqs():
            stats.dead_lettered += 1
            self.out.pop((receipt.channel, seq), None)
        for seq in receipt.stored_seqs():
            item = self.out.pop((receipt.channel, seq), None)
            if item is None:
                stats.stale_receipts += 1
                continue
            self.last_receipt[item.channel] = now
            self.highest_confirmed[item.channel] = max(self.highest_confirmed[item.channel], seq)
            stats.confirmed_items += 1
            stats.confirmed_readings += item.units if item.channel == "readings" else 0
            if item.live:
                stats.lags.append(now - item.first_sent)

    def pending(self) -> int:
        return len(self.out) + sum(len(q) for q in self.waiting.values()) + (1 if self.buffer else 0)


@dataclass
class Stats:
    published: int = 0
    resends: int = 0
    resends_put_off: int = 0
    confirmed_items: int = 0
    confirmed_readings: int = 0
    dead_lettered: int = 0
    stale_receipts: int = 0
    lags: list[float] = field(default_factory=list)


# --- the stations' event loop: one thread, a selector over every client's socket ---------------------------------


class Network:
    """Every station's paho client on one selector (paho's external event loop: `loop_read`, `loop_write`,
    `loop_misc`), so a thousand connections cost no thousand threads."""

    def __init__(self, stations: list[Station], host: str, port: int) -> None:
        self.stations = stations
        self.host, self.port = host, port
        self.selector = selectors.DefaultSelector()
        self.stats = Stats()
        self.sys: dict[str, list[float]] = {}
        self.sys_topics: set[str] = set()  # the broker's own retained $SYS messages, part of its store
        self._last_misc = 0.0

    def _watch(self, client: mqtt.Client) -> None:
        def opened(c: mqtt.Client, _userdata: Any, sock: Any) -> None:
            self.selector.register(sock, selectors.EVENT_READ, c)

        def closed(c: mqtt.Client, _userdata: Any, sock: Any) -> None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(sock)

        def want_write(c: mqtt.Client, _userdata: Any, sock: Any) -> None:
            self.selector.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)

        def written(c: mqtt.Client, _userdata: Any, sock: Any) -> None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.modify(sock, selectors.EVENT_READ, c)

        client.on_socket_open = opened
        client.on_socket_close = closed
        client.on_socket_register_write = want_write
        client.on_socket_unregister_write = written

    def connect(self) -> None:
        for station in self.stations:
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=station.name, protocol=mqtt.MQTTv5)
            client.max_queued_messages_set(0)
            client.max_inflight_messages_set(MAX_UNCONFIRMED)
            self._watch(client)

            def on_connect(c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any, s: Station = station) -> None:
                if not rc.is_failure:
                    c.subscribe([(receipts_topic(SITE, s.name), SubscribeOptions(qos=1))])

            def on_subscribe(_c: mqtt.Client, _u: Any, _mid: Any, _rc: Any, _p: Any, s: Station = station) -> None:
                s.subscribed = True

            def on_message(_c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage, s: Station = station) -> None:
                s.on_receipt(bytes(message.payload), self.stats)

            client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = SESSION_EXPIRY_S
            client.connect(self.host, self.port, keepalive=60, clean_start=False, properties=properties)
            station.client = client
        # the broker's own figures
        monitor = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="load-monitor", protocol=mqtt.MQTTv5)
        self._watch(monitor)
        monitor.on_connect = lambda c, *_: c.subscribe([("$SYS/#", 0)])

        def on_sys(_c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
            self.sys_topics.add(message.topic)
            if message.topic == STORE_TOPIC:
                self.sys.setdefault(message.topic, []).append(float(message.payload))
        monitor.on_message = on_sys
        monitor.connect(self.host, self.port)
        self.monitor = monitor
        self.wait(lambda: all(s.subscribed for s in self.stations), timeout_s=120)

    def wait(self, done: Any, timeout_s: float) -> bool:
        """Run the network until `done()`, the stations sending nothing new."""
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() > deadline:
                return False
            self.step(0.05)
        return True

    def step(self, timeout_s: float = 0.02) -> None:
        for key, mask in self.selector.select(timeout_s):
            client = key.data
            if mask & selectors.EVENT_READ:
                client.loop_read(max_packets=20)
            if mask & selectors.EVENT_WRITE:
                client.loop_write()
        now = time.monotonic()
        if now - self._last_misc >= 1.0:
            self._last_misc = now
            for station in self.stations:
                if station.client is not None:
                    station.client.loop_misc()
            self.monitor.loop_misc()

    def run_until(self, done: Any, timeout_s: float, every: Any = None) -> bool:
        deadline = time.monotonic() + timeout_s
        last = 0.0
        while time.monotonic() < deadline:
            self.step()
            now = time.monotonic()
            if now - last >= 0.25:
                last = now
                for station in self.stations:
                    station.pump(now, self.stats)
                if every is not None:
                    every()
                if done():
                    return True
        return False

    def close(self) -> None:
        for station in self.stations:
            if station.client is not None:
                station.client.disconnect()
        self.monitor.disconnect()
        for _ in range(20):
            self.step(0.01)


class Every:
    """Call `action` at most once per `interval_s`; calling returns whether it ran."""

    def __init__(self, interval_s: float, action: Any) -> None:
        self.interval_s, self.action, self.last = interval_s, action, 0.0

    def __call__(self) -> bool:
        now = time.monotonic()
        if now - self.last < self.interval_s:
            return False
        self.last = now
        self.action()
        return True


# --- the central side ------------------------------------------------------------------------------------------


def broker_config(base: Path, port: int) -> str:
    """The shipped broker settings (deploy/mosquitto/sinkwatch.conf) for queues, in-flight window and persistence,
    without TLS and passwords, on loopback, $SYS every second."""
    return "\n".join([
        f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence true", f"persistence_location {base}/",
        "autosave_interval 60", "max_queued_messages 250000", "max_queued_bytes 0", "queue_qos0_messages false",
        "max_inflight_messages 20", "max_packet_size 8388608", "sys_interval 1",
        f"log_dest file {base / 'mosquitto.log'}", "log_type error", "log_type warning",
    ]) + "\n"


class Workers:
    def __init__(self, config: Path, data_dir: Path, count: int, logs: Path) -> None:
        self.data_dir = data_dir
        self.processes = [subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "central", "ingest", "-c", str(config), "--name", f"w{i + 1}"],
            stdout=subprocess.DEVNULL, stderr=open(logs / f"w{i + 1}.log", "wb"))  # noqa: SIM115 (closed with it)
            for i in range(count)]

    def statuses(self) -> list[dict[str, Any]]:
        return read_statuses(self.data_dir)

    def cpu_s(self) -> float:
        return sum(process_cpu_s(p.pid) for p in self.processes if p.poll() is None)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def process_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (/proc/<pid>/stat); 0 when unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def influx_query(influx: InfluxInstance, database: str, query: str) -> list[dict[str, Any]]:
    reply = httpx.get(f"{influx.url}/query", params={"db": database, "q": query}, timeout=120)
    reply.raise_for_status()
    result = reply.json()["results"][0]
    if "error" in result:
        raise RuntimeError(f"{query}: {result['error']}")
    return list(result.get("series", []))


def counts_by_station(influx: InfluxInstance, database: str, measurement: str, field_name: str,
                      where: str = "") -> dict[str, int]:
    found = {}
    for series in influx_query(influx, database, f'SELECT count("{field_name}") FROM "{measurement}" {where} '
                                                 "GROUP BY station"):
        found[series["tags"]["station"]] = int(series["values"][0][1])
    return found


# --- one run ---------------------------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    wall_s: float
    items: int
    readings: int
    cpu: dict[str, float]


def cpu_snapshot(broker: MosquittoServer, influx: InfluxInstance, workers: Workers) -> dict[str, float]:
    broker_process = broker._process
    return {"workers": workers.cpu_s(), "influxd": process_cpu_s(influx.pid),
            "mosquitto": process_cpu_s(broker_process.pid if broker_process else None),
            "stations": time.process_time()}


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in after}


def direct_baseline(influx: InfluxInstance, database: str, stations: list[Station], backlog_t: list[float]) -> float:
    """The catch-up's readings as line protocol POSTed straight to /write in requests of 5,000 lines:
    what InfluxDB takes from one client on this machine in the same run."""
    lines = ReadingLines()
    body: list[str] = []
    bodies = []
    for station in stations:
        rng = random.Random(station.name)
        for t in backlog_t:
            for reading in tick_readings(station.name, t + station.phase, rng):
                body.append(lines.line(StoredReading(SITE, reading)))
                if len(body) == 5000:
                    bodies.append("\n".join(body).encode())
                    body = []
    if body:
        bodies.append("\n".join(body).encode())
    total = sum(b.count(b"\n") + 1 for b in bodies)
    with httpx.Client(base_url=influx.url, timeout=120) as http:
        http.post("/query", params={"q": f"CREATE DATABASE {database}"}).raise_for_status()
        started = time.perf_counter()
        for part in bodies:
            http.post("/write", params={"db": database, "precision": "ns"}, content=part).raise_for_status()
        wall = time.perf_counter() - started
    httpx.post(f"{influx.url}/query", params={"q": f"DROP DATABASE {database}"}).raise_for_status()
    return total / wall


def interleaved(stations: list[Station], seed: int = 2) -> list[tuple[str, bytes, str]]:
    """The (topic, payload, envelope) of the items the stations have waiting, in an order a worker's queue could
    hold them in a catch-up: every chain in order, the stations and channels interleaved at random."""
    chains = [[(station.topics[channel], item.payload, item.envelope) for item in station.waiting[channel]]
              for station in stations for channel in CHANNELS]
    chains = [chain for chain in chains if chain]
    rng = random.Random(seed)
    messages = []
    while chains:
        chain = rng.choice(chains)
        messages.append(chain.pop(0))
        if not chain:
            chains.remove(chain)
    return messages


def replayed_baseline(influx: InfluxInstance, database: str, messages: list[tuple[str, bytes, str]],
                      registry: Path, work: Path) -> tuple[float, int]:
    """The writes the ingest makes of the catch-up, without the ingest: the catch-up's messages handed to one
    worker's code in this process (`bench/ingest_catchup.py`: its two stages, groups of 100 as from a full queue,
    the store's /write requests recorded; not timed) into a scratch database, then those requests POSTed again in
    order from one client into a fresh database (timed). Returns (the replay's wall time in s, requests replayed)."""
    import ingest_catchup as catchup  # the bench beside this one (it imports this module)

    data_dir = work / f"replay-{database}"
    (data_dir / "trust").mkdir(parents=True)
    shutil.copy(registry, data_dir / "trust" / registry.name)
    recorded, target = f"{database}_recorded", f"{database}_replayed"
    with catchup.Requests() as requests:
        catchup.ours(messages, data_dir, influx.url, 100, influx.pid or 0, database=recorded)
    again = catchup.replayed(requests.writes, influx.url, influx.pid or 0, source=recorded, database=target)
    for name in (recorded, target):
        httpx.post(f"{influx.url}/query", params={"q": f"DROP DATABASE {name}"}).raise_for_status()
    return again["wall"], len(requests.writes)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(count: int, workers_n: int, args: argparse.Namespace, influx: InfluxInstance, keys: list[Ed25519PrivateKey],
        registry: Path, work: Path) -> dict[str, Any]:
    database = f"load_w{workers_n}"
    data_dir = work / f"central-w{workers_n}"
    (data_dir / "trust").mkdir(parents=True)
    shutil.copy(registry, data_dir / "trust" / registry.name)
    base = work / f"broker-w{workers_n}"
    base.mkdir()
    port = free_port()
    print(f"\n== {count} stations, {workers_n} ingest worker(s), database {database}")
    with mosquitto_server(base, config=broker_config(base, port), port=port) as broker:
        config = work / f"central-w{workers_n}.yaml"
        config.write_text(yaml.safe_dump({
            "mqtt": {"host": broker.host, "port": broker.port, "client_id": "central"},
            "storage": {"kind": "influxdb", "url": influx.url, "database": database},
            "data_dir": str(data_dir)}), encoding="utf-8")
        rngs = [random.Random(f"{args.seed}-{i}") for i in range(count)]
        stations = [Station(i + 1, keys[i], rngs[i]) for i in range(count)]
        # the outage's backlog: every station's readings, health reports and flux records of the last minutes
        backlog_end = math.ceil(time.time() / POLL_S) * POLL_S  # the outage ends now
        backlog_start = backlog_end - args.backlog_min * 60.0
        backlog_t = [backlog_start + k * POLL_S for k in range(int(args.backlog_min * 60 / POLL_S))]
        made = time.perf_counter()
        for station in stations:
            for t in backlog_t:
                station.measure(t + station.phase, live=False)
                if int((t + station.phase) // POLL_S) % 6 == station.health_slot:
                    station.report(t + station.phase, live=False)
            # flux records that became ready (a half hour's end + the station's processing delay) in the outage
            end = math.floor((backlog_start - station.flux_phase) / FLUX_S) * FLUX_S
            while end + station.flux_phase < backlog_end:
                if end + station.flux_phase >= backlog_start:
                    station.flux(end, live=False)
                end += FLUX_S
            station.drain(live=False)
        messages = interleaved(stations)  # for the replayed baseline
        backlog_items = sum(sum(s.sent_items.values()) for s in stations)
        backlog_readings = sum(s.sent_readings for s in stations)
        print(f"  catch-up made: {backlog_items:,} items, {backlog_readings:,} readings "
              f"({time.perf_counter() - made:.1f} s to build and sign)")

        workers = Workers(config, data_dir, workers_n, work)
        network = Network(stations, broker.host, broker.port)
        try:
            deadline = time.monotonic() + 60
            while len([s for s in workers.statuses() if s.get("mqtt_connected")]) < workers_n:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the workers did not connect; see {work}/w*.log")
                time.sleep(0.2)
            network.connect()  # the stations connect and subscribe; their windows open at the first pump
            print(f"  {count} stations connected and subscribed")
            network.wait(lambda: len(network.sys.get(STORE_TOPIC, [])) >= 2, timeout_s=10)

            queues: dict[str, list[float]] = {"catch-up": [], "live": []}
            current = ["catch-up"]

            def sample() -> None:
                """Once a second: the broker's stored messages (its queues; $SYS every second) and the workers'."""
                stored = network.sys.get(STORE_TOPIC, [])
                # the store holds the broker's retained $SYS figures too (more appear after its first minute)
                queues[current[0]].append(max(0.0, stored[-1] - len(network.sys_topics)) if stored else 0.0)
                worker_queues[current[0]].append(sum(int(s.get("counters", {}).get("queue_depth", 0))
                                                   for s in workers.statuses()))

            worker_queues: dict[str, list[int]] = {"catch-up": [], "live": []}
            sampler = Every(1.0, sample)
            # catch-up: every station sends its backlog as fast as its window and the receipts allow
            before = cpu_snapshot(broker, influx, workers)
            started = time.monotonic()
            if not network.run_until(lambda: network.stats.confirmed_items >= backlog_items,
                                     timeout_s=args.timeout_s, every=sampler):
                raise RuntimeError(f"catch-up incomplete: {network.stats.confirmed_items} of {backlog_items} items "
                                   "confirmed")
            catch_up = Phase("catch-up", time.monotonic() - started, backlog_items, backlog_readings,
                             delta(cpu_snapshot(broker, influx, workers), before))
            received = sum(int(s.get("counters", {}).get("messages_received", 0)) for s in workers.statuses())
            print(f"  catch-up: every item confirmed after {catch_up.wall_s:.1f} s: "
                  f"{catch_up.items / catch_up.wall_s:,.0f} items/s, {catch_up.readings / catch_up.wall_s:,.0f} "
                  f"readings/s; the workers received {received:,} "
                  f"messages ({received / catch_up.wall_s:,.0f}/s; resends by the stations so far "
                  f"{network.stats.resends:,}, put off {network.stats.resends_put_off:,}); broker's stored "
                  f"messages max {max(queues['catch-up'], default=0):,.0f}, workers' queues max "
                  f"{max(worker_queues['catch-up'], default=0):,}")

            # the resends still queued (items whose receipt came after the station's receipt timeout) are worked
            # off before the live phase, which measures the steady state
            def drained() -> bool:
                return bool(queues["catch-up"]) and queues["catch-up"][-1] < 10 + count // 20 \
                    and worker_queues["catch-up"][-1:] == [0]
            network.run_until(drained, timeout_s=min(args.timeout_s, 600), every=sampler)
            received = sum(int(s.get("counters", {}).get("messages_received", 0)) for s in workers.statuses())
            print(f"  queues drained after {time.monotonic() - started:.1f} s; the workers received {received:,} "
                  f"messages for {backlog_items:,} items (resends {network.stats.resends:,})")
            current[0] = "live"

            # live: every station at its real rates, `live_s` seconds
            # live from the next 10 s on (the catch-up's readings all lie before it)
            live_start = max(backlog_end, math.ceil(time.time() / POLL_S) * POLL_S + POLL_S)
            while time.time() < live_start:
                network.step(0.05)
            items0, readings0 = backlog_items, backlog_readings
            ticks = sorted((live_start + s.phase, i) for i, s in enumerate(stations))
            ready = [(math.floor(live_start / FLUX_S) * FLUX_S + s.flux_phase, i) for i, s in enumerate(stations)]
            flux_due = deque(sorted((t if t >= live_start else t + FLUX_S, i) for t, i in ready))
            live_end = live_start + args.live_s
            before = cpu_snapshot(broker, influx, workers)
            started = time.monotonic()
            pending_ticks = deque(ticks)
            while time.time() < live_end:
                now = time.time()
                due: list[tuple[float, int]] = []
                while pending_ticks and pending_ticks[0][0] <= now:
                    due.append(pending_ticks.popleft())
                for t, i in due:
                    station = stations[i]
                    station.measure(t, live=True)
                    if int(t // POLL_S) % 6 == station.health_slot:
                        station.report(t, live=True)
                    station.drain(live=True)
                    station.pump(time.monotonic(), network.stats)
                    if t + POLL_S < live_end:
                        pending_ticks.append((t + POLL_S, i))
                while flux_due and flux_due[0][0] <= now:
                    t, i = flux_due.popleft()
                    stations[i].flux(math.floor(t / FLUX_S) * FLUX_S, live=True)
                    stations[i].pump(time.monotonic(), network.stats)
                network.step(0.01)
                if sampler():  # and the resends due, once a second
                    for station in stations:
                        station.pump(time.monotonic(), network.stats)
            live_items = sum(sum(s.sent_items.values()) for s in stations) - items0
            live_readings = sum(s.sent_readings for s in stations) - readings0
            live_wall = time.monotonic() - started
            total_items = items0 + live_items
            if not network.run_until(lambda: network.stats.confirmed_items >= total_items,
                                     timeout_s=args.timeout_s):
                raise RuntimeError(f"live phase incomplete: {network.stats.confirmed_items} of {total_items} items "
                                   "confirmed")
            live = Phase("live", live_wall, live_items, live_readings,
                         delta(cpu_snapshot(broker, influx, workers), before))
            lags = network.stats.lags
            print(f"  live: {live_wall:.0f} s, {live_items / live_wall:,.1f} messages/s, "
                  f"{live_readings / live_wall:,.0f} readings/s; ingest lag (first PUBLISH -> receipt) p50 "
                  f"{1000 * percentile(lags, 0.5):.0f} ms, p99 {1000 * percentile(lags, 0.99):.0f} ms, max "
                  f"{1000 * max(lags):.0f} ms ({len(lags):,} items)")
            print(f"  broker's stored messages ({STORE_TOPIC}) max {max(queues['live'], default=0):.0f}, median "
                  f"{statistics.median(queues['live'] or [0]):.0f}; workers' queues max "
                  f"{max(worker_queues['live'], default=0)}, median {statistics.median(worker_queues['live'] or [0])}")
            time.sleep(2.0)  # the workers' last counters
            statuses = workers.statuses()
        finally:
            network.close()
            workers.stop()

    # reconciliation: what every station sent is what the store holds, once
    sent = {s.name: s.sent_readings for s in stations}
    stored = counts_by_station(influx, database, "readings", "qc")
    flux_stored = counts_by_station(influx, database, "fluxes", "period_s")
    health_stored = counts_by_station(influx, database, "health", "uptime_s")
    ledger = {(series["tags"]["station"], series["tags"]["channel"]): int(series["values"][0][1]) for series in
              influx_query(influx, database, 'SELECT count("signature") FROM "ledger" GROUP BY station, channel')}
    problems = []
    for station in stations:
        if stored.get(station.name, 0) != sent[station.name]:
            problems.append(f"{station.name}: {stored.get(station.name, 0)} readings stored, {sent[station.name]} sent")
        if flux_stored.get(station.name, 0) != station.sent_items["fluxes"]:
            problems.append(f"{station.name}: {flux_stored.get(station.name, 0)} flux records stored, "
                            f"{station.sent_items['fluxes']} sent")
        if health_stored.get(station.name, 0) != station.sent_items["health"]:
            problems.append(f"{station.name}: {health_stored.get(station.name, 0)} health reports stored, "
                            f"{station.sent_items['health']} sent")
        for channel in CHANNELS:
            if ledger.get((station.name, channel), 0) != station.sent_items[channel]:
                problems.append(f"{station.name} {channel}: {ledger.get((station.name, channel), 0)} ledger items,"
                                f" {station.sent_items[channel]} sent")
    counters: dict[str, Any] = {}
    for status in statuses:
        for name, value in (status.get("counters") or {}).items():
            if isinstance(value, int) and not isinstance(value, bool):
                counters[name] = counters.get(name, 0) + value
            elif isinstance(value, dict) and value:
                counters.setdefault(name, {}).update(value)
    for name in ("readings_set_aside", "malformed", "untrusted"):
        if counters.get(name):
            problems.append(f"workers' {name}: {counters[name]}")
    if counters.get("dead_lettered") or network.stats.dead_lettered:
        problems.append(f"dead-lettered: {counters.get('dead_lettered')} (stations told {network.stats.dead_lettered})")
    total_sent = sum(sent.values())
    total_stored = sum(stored.values())
    print(f"  reconciliation: readings sent {total_sent:,}, stored {total_stored:,}; flux records "
          f"{sum(s.sent_items['fluxes'] for s in stations):,} / {sum(flux_stored.values()):,}; health reports "
          f"{sum(s.sent_items['health'] for s in stations):,} / {sum(health_stored.values()):,}; ledger items "
          f"{sum(sum(s.sent_items.values()) for s in stations):,} / {sum(ledger.values()):,}; resends "
          f"{network.stats.resends}, duplicates stored again {counters.get('duplicate_batches', 0)} batches, "
          f"{'EXACT' if not problems else 'MISMATCH'}")
    per_worker = [(s["name"], s["counters"].get("readings_stored", 0), s["counters"].get("messages_received", 0))
                  for s in sorted(statuses, key=lambda s: str(s["name"]))]
    print("  per worker (readings stored, messages received): "
          + ", ".join(f"{n} {r:,} / {m:,}" for n, r, m in per_worker))
    for phase in (catch_up, live):
        readings_k = phase.readings / 1000
        print(f"  CPU in {phase.name} (s; ms per 1000 readings): " + ", ".join(
            f"{k} {v:.1f} ({1000 * v / readings_k:.1f})" for k, v in phase.cpu.items()))
    if problems:
        print("  problems:\n    " + "\n    ".join(problems[:20]))
        raise SystemExit(1)
    return {"database": database, "catch_up": catch_up, "live": live, "lags": lags, "queues": queues,
            "readings": total_sent, "station_s": count * (args.backlog_min * 60 + args.live_s),
            "baseline_times": backlog_t, "stations": stations, "messages": messages, "registry": registry}


def size(influx: InfluxInstance, result: dict[str, Any]) -> None:
    database = result["database"]
    cardinality = {s["name"]: int(s["values"][0][0]) for s in influx_query(
        influx, database, f"SHOW SERIES EXACT CARDINALITY ON {database}") if s.get("values")}
    print(f"  series cardinality: {sum(cardinality.values()):,} ("
          + ", ".join(f"{k} {v:,}" for k, v in sorted(cardinality.items(), key=lambda kv: -kv[1])) + ")")
    data, wal = influx.base_dir / "data" / database, influx.base_dir / "wal" / database
    settle = time.monotonic()
    last = -1
    while time.monotonic() - settle < 180:  # the cold shard's snapshot and full compaction (data_settings)
        time.sleep(5)
        now = allocated(data) + allocated(wal)
        if allocated(wal) < 1_000_000 and now == last:
            break
        last = now
    tsm = allocated(data, "*.tsm")
    series = allocated(data / "_series")
    other = allocated(data) - tsm - series
    wal_bytes = allocated(wal)
    stations = len(result["stations"])
    year_s = 365.25 * 86400
    growing = tsm + wal_bytes  # what grows with time; the series file and the index grow with the series
    print(f"  disk (allocated, after snapshot and compaction): TSM {tsm / 1e6:.1f} MB, WAL {wal_bytes / 1e6:.1f} MB, "
          f"series file {series / 1e6:.1f} MB, index and the rest {other / 1e6:.1f} MB")
    print(f"  per reading stored {growing / result['readings']:.1f} bytes of TSM + WAL (every measurement: readings, "
          f"the ledger's signed payloads, health, fluxes); per station-year at {readings_per_station_hour():,} "
          f"readings per station-hour {growing / result['station_s'] * year_s / 1e9:.2f} GB, plus "
          f"{(series + other) / stations / 1e3:.0f} kB of series file and index per station")
    ledger = sum(s.ledger_payload_bytes for s in result["stations"])
    print(f"  of which the ledger's copies of the signed payloads (zlib, base64; readings and fluxes) about "
          f"{ledger / 1e6:.1f} MB, {ledger / result['readings']:.1f} bytes per reading, "
          f"{ledger / result['station_s'] * year_s / 1e9:.2f} GB per station-year")


def allocated(path: Path, pattern: str = "*") -> int:
    """Bytes the files under `path` take on disk (allocated blocks: InfluxDB preallocates its series file)."""
    return sum(p.stat().st_blocks * 512 for p in path.rglob(pattern) if p.is_file()) if path.exists() else 0


def make_keys(count: int, folder: Path) -> tuple[list[Ed25519PrivateKey], Path]:
    keys = [Ed25519PrivateKey.generate() for _ in range(count)]
    registry = KeyRegistry(folder)
    for index, key in enumerate(keys):
        registry.register(SITE, f"st{index + 1:04d}", key.public_key())
    return keys, registry.path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stations", type=int, default=1000)
    parser.add_argument("--backlog-min", type=float, default=10.0, help="minutes of items each station has waiting")
    parser.add_argument("--live-s", type=float, default=120.0, help="seconds of live traffic")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to run, in order")
    parser.add_argument("--timeout-s", type=float, default=900.0)
    parser.add_argument("--seed", default="sinkwatch")
    args = parser.parse_args()
    print(f"network load, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.1f}")
    print(f"  a station: {readings_per_station_hour():,} readings/h in {int(3600 / POLL_S)} batches, "
          f"60 health reports, 2 flux records; {args.stations} stations; catch-up {args.backlog_min:g} min, "
          f"live {args.live_s:g} s")
    with tempfile.TemporaryDirectory(prefix="sinkwatch-load-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        keys, registry = make_keys(args.stations, work / "keys")
        print(f"  {args.stations} station keys made and registered ({time.perf_counter() - started:.1f} s)")
        with running_influxd(work / "influxd", data_settings='  cache-snapshot-write-cold-duration = "5s"\n'
                             '  compact-full-write-cold-duration = "10s"\n') as influx:
            results = []
            for workers_n in args.workers:
                result = run(args.stations, workers_n, args, influx, keys, registry, work)
                rate = direct_baseline(influx, f"direct_w{workers_n}", result["stations"], result["baseline_times"])
                ours = result["catch_up"].readings / result["catch_up"].wall_s
                print(f"  baseline, the catch-up's readings POSTed straight to /write (5,000 lines a request): "
                      f"{rate:,.0f} readings/s; the workers' catch-up = {ours / rate:.2f} x")
                wall, requests = replayed_baseline(influx, f"replay_w{workers_n}", result["messages"], registry,
                                                    work)
                again = result["catch_up"].readings / wall
                print(f"  replayed, the /write requests one worker's code makes of the catch-up's messages (recorded "
                      f"in-process, {requests} requests) POSTed again from one client: {again:,.0f} readings/s; the "
                      f"workers' catch-up = {ours / again:.2f} x")
                size(influx, result)
                results.append((workers_n, ours))
            if len(results) > 1:
                one = results[0][1]
                print("  catch-up readings/s by workers: " + ", ".join(
                    f"{n}: {r:,.0f} ({r / one:.2f} x {results[0][0]}, {r / n:,.0f} per worker)" for n, r in results))


if __name__ == "__main__":
    main()
