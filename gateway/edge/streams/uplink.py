"""Raw uplink (`streams.uplink: all`): every closed archive file is linked into `<archive_dir>/outbox/` and published
by `RawUplink` at QoS 1 on `sinkwatch/v1/<site>/<station>/raw` (payload `gateway.contract.RawChunk`); the link is
deleted in the PUBACK callback only, so a chunk survives broker outages and restarts exactly like the reading buffer.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.contract import raw_payload, raw_topic

log = logging.getLogger("sinkwatch.edge.streams")


class RawUplink:
    """Publishes closed archive files from `outbox` (hard links) at QoS 1; unlinks each only on its PUBACK."""

    def __init__(self, site: str, station: str, outbox: Path, *, host: str, port: int, client_id: str,
                 username: str | None = None, password: str | None = None, tls: bool = False,
                 keepalive_s: int = 30, max_in_flight: int = 2) -> None:
        self.site = site
        self.station = station
        self.outbox = outbox
        outbox.mkdir(parents=True, exist_ok=True)
        self.topic = raw_topic(site, station)
        self.published = 0
        self.acknowledged = 0
        self._max_in_flight = max_in_flight
        self._lock = threading.Lock()
        self._in_flight: dict[int, Path] = {}
        self._publishing: set[Path] = set()
        self._early_acks: set[int] = set()
        self._wake = threading.Event()
        self._connected = threading.Event()
        self._host, self._port, self._keepalive = host, port, keepalive_s
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if username:
            client.username_pw_set(username, password)
        if tls:
            client.tls_set()
        client.max_inflight_messages_set(max_in_flight)
        client.reconnect_delay_set(min_delay=1, max_delay=60)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._client = client

    def enqueue(self, path: Path) -> None:
        """Called with a closed archive file: a hard link in the outbox keeps it until the broker acked it."""
        link = self.outbox / path.name
        try:
            os.link(path, link)
        except FileExistsError:
            pass
        except OSError:
            link.write_bytes(path.read_bytes())  # another file system: copy
        self._wake.set()

    def pending(self) -> list[Path]:
        return sorted(self.outbox.glob("*.csv.gz"))

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            with self._lock:
                self._in_flight.clear()  # clean session: what was in flight is published again
                self._early_acks.clear()
            self._connected.set()
            self._wake.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connected.clear()

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        # paho calls this holding its own message lock, so it must never wait for a lock held across publish()
        # (that is a deadlock); a PUBACK that beats the bookkeeping of its mid is parked in _early_acks
        with self._lock:
            path = self._in_flight.pop(mid, None)
            if path is None:
                self._early_acks.add(mid)
        if path is not None:
            self._acknowledged(path)

    def _acknowledged(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        self.acknowledged += 1
        self._wake.set()

    def drain_once(self) -> int:
        handed = 0
        if not self._connected.is_set():
            return 0
        for path in self.pending():
            with self._lock:
                if len(self._in_flight) + len(self._publishing) >= self._max_in_flight:
                    break
                if path in self._in_flight.values() or path in self._publishing:
                    continue
                self._publishing.add(path)
            try:
                payload = raw_payload(self.site, self.station, path)
                info = self._client.publish(self.topic, payload, qos=1)  # never under self._lock, see _on_publish
            except (OSError, ValueError) as exc:
                log.error("raw uplink: cannot publish %s: %s", path, exc)
                with self._lock:
                    self._publishing.discard(path)
                continue
            with self._lock:
                self._publishing.discard(path)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    break
                early = info.mid in self._early_acks
                self._early_acks.discard(info.mid)
                if not early:
                    self._in_flight[info.mid] = path
            if early:
                self._acknowledged(path)
            self.published += 1
            handed += 1
        return handed

    def run(self, stop: threading.Event) -> None:
        self._client.connect_async(self._host, self._port, keepalive=self._keepalive)
        self._client.loop_start()
        try:
            while not stop.is_set():
                self.drain_once()
                self._wake.wait(1.0)
                self._wake.clear()
        finally:
            self._client.disconnect()
            self._client.loop_stop()
