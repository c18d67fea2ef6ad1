"""Drains the reading buffer to the MQTT broker at QoS 1, deleting a batch only on the broker's PUBACK.

paho keeps every QoS 1 message it was handed and resends it after a reconnect until it is acknowledged, so a batch
is handed to paho once per process; after a restart the buffer hands unacknowledged batches out again (same seq).
The broker acknowledging is the moment the next hop has durably accepted the batch (STYLE.md, paho
`MQTTMessageInfo`): `publish()` returning means nothing.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway import __version__
from gateway.contract import StationState, StationStatus, readings_topic, status_topic
from gateway.edge.buffer import ReadingBuffer
from gateway.edge.config import BufferConfig, MqttConfig
from gateway.model import utc_now

log = logging.getLogger("sinkwatch.edge.publisher")


@dataclass
class PublisherCounters:
    batches_published: int = 0
    batches_acknowledged: int = 0
    readings_acknowledged: int = 0
    connects: int = 0
    connection_losses: int = 0
    connect_failures: dict[str, int] = field(default_factory=dict)


class Publisher:
    def __init__(self, site: str, station: str, mqtt_config: MqttConfig, buffer_config: BufferConfig,
                 buffer: ReadingBuffer) -> None:
        self.site = site
        self.station = station
        self._mqtt_config = mqtt_config
        self._buffer_config = buffer_config
        self._buffer = buffer
        self.counters = PublisherCounters()
        self._topic = readings_topic(site, station)
        self._status_topic = status_topic(site, station)
        self._lock = threading.Lock()
        self._in_flight: dict[int, int] = {}  # paho mid -> batch seq
        self._acknowledged_mids: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._connected = threading.Event()
        self._stopping = False
        self._wake = threading.Event()
        self._client = self._make_client()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def _make_client(self) -> mqtt.Client:
        cfg = self._mqtt_config
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id or f"sinkwatch-{self.site}-{self.station}",
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        if cfg.username:
            client.username_pw_set(cfg.username, cfg.password)
        if cfg.tls:
            client.tls_set()
        offline = StationStatus(site=self.site, station=self.station, state=StationState.OFFLINE,
                                since=utc_now(), software_version=__version__, reason="connection lost")
        client.will_set(self._status_topic, offline.model_dump_json(), qos=1, retain=True)
        client.max_inflight_messages_set(self._buffer_config.max_in_flight)
        client.reconnect_delay_set(min_delay=1, max_delay=60)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    # paho callbacks run on paho's network thread
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            key = str(reason)
            self.counters.connect_failures[key] = self.counters.connect_failures.get(key, 0) + 1
            log.error("broker %s:%s refused the connection: %s (check mqtt.username/password in the config)",
                      self._mqtt_config.host, self._mqtt_config.port, reason)
            return
        self.counters.connects += 1
        log.info("connected to broker %s:%s", self._mqtt_config.host, self._mqtt_config.port)
        online = StationStatus(site=self.site, station=self.station, state=StationState.ONLINE,
                               since=utc_now(), software_version=__version__)
        client.publish(self._status_topic, online.model_dump_json(), qos=1, retain=True)
        self._connected.set()
        self._wake.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if self._connected.is_set() and not self._stopping:
            self.counters.connection_losses += 1
            log.warning("lost the broker connection (%s); buffering on disk and reconnecting", reason)
        self._connected.clear()

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        # paho calls this holding its own message lock, and our drain holds our lock while calling publish() (which
        # takes paho's): taking our lock here would invert the order and deadlock under load. So only hand the mid
        # over; the publisher thread releases the batch (and does the disk write off paho's network thread).
        self._acknowledged_mids.put(mid)
        self._wake.set()

    def _release_acknowledged(self) -> None:
        while True:
            try:
                mid = self._acknowledged_mids.get_nowait()
            except queue.Empty:
                return
            with self._lock:
                seq = self._in_flight.pop(mid, None)
            if seq is None:
                continue  # a status message
            released = self._buffer.ack(seq)
            self.counters.batches_acknowledged += 1
            self.counters.readings_acknowledged += released

    def start(self) -> None:
        cfg = self._mqtt_config
        # connect_async + loop_start: the first connection attempt and all later ones happen in paho's thread,
        # so an absent broker at start-up is just the first of many retries, not a crash.
        self._client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s)
        self._client.loop_start()

    def notify(self) -> None:
        """New readings are in the buffer."""
        self._wake.set()

    def drain_once(self) -> int:
        """Hand as many claimed batches to paho as the in-flight window allows; returns how many."""
        self._release_acknowledged()
        handed = 0
        while self._connected.is_set():
            with self._lock:
                if len(self._in_flight) >= self._buffer_config.max_in_flight:
                    break
                exclude = list(self._in_flight.values())
            batch = self._buffer.claim(self._buffer_config.batch_size, exclude=exclude)
            if batch is None:
                break
            payload = batch.payload(self.site, self.station, utc_now())
            with self._lock:
                # hold the lock across publish so an immediate PUBACK cannot be released before the mid is recorded
                info = self._client.publish(self._topic, payload, qos=1)
                if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                    # paho did not keep it (queue full); the batch stays in the buffer and is claimed again
                    log.debug("publish of batch %d deferred: %s", batch.seq, mqtt.error_string(info.rc))
                    break
                # NO_CONN: paho queued the message and sends it once the connection is back
                self._in_flight[info.mid] = batch.seq
            self.counters.batches_published += 1
            handed += 1
        return handed

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.drain_once()
            self._wake.wait(self._buffer_config.publish_interval_s)
            self._wake.clear()

    def wait_drained(self, timeout: float) -> bool:
        """Wait until the buffer is empty (every reading acknowledged); used on shutdown and by tests."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.drain_once()
            if self._buffer.pending_readings() == 0:
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        self._stopping = True
        if self._connected.is_set():
            offline = StationStatus(site=self.site, station=self.station, state=StationState.OFFLINE,
                                    since=utc_now(), software_version=__version__, reason="stopped")
            info = self._client.publish(self._status_topic, offline.model_dump_json(), qos=1, retain=True)
            # the broker may go away meanwhile; its last will says offline then
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=2)
        self._client.disconnect()
        self._client.loop_stop()
