"""A stand-in for the central service at the receipts boundary, for delivery tests and the ingest benchmark.

`ReceiptEcho` subscribes to station channels, records every item (topic, seq) it receives and answers with
`Receipt`s on the station's receipts topic, the way the Ingestor does after its store confirmed a write, minus the
store. Tests steer it: `confirming` off withholds receipts (the store is away), `skip_first_copies` confirms an item
only on its second arrival (forcing the station to resend), `disconnect()`/`connect()` leave a persistent session
behind on the broker so messages queue for it.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.contract import TOPIC_ROOT, Channel, Receipt, parse_topic, receipts_topic, seq_ranges
from gateway.model import utc_now


class ReceiptEcho:
    def __init__(self, host: str, port: int, channels: tuple[Channel, ...] = ("readings", "fluxes", "raw"), *,
                 client_id: str = "receipt-echo", username: str | None = None, password: str | None = None,
                 flush_s: float = 0.02) -> None:
        self.host, self.port = host, port
        self.channels = channels
        self.confirming = True
        self.skip_first_copies = False
        self.arrivals: Counter[tuple[str, str, int]] = Counter()  # (station, channel, seq) -> copies received
        self.receipts_sent = 0
        self._pending: dict[tuple[str, str, str], set[int]] = {}
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._flush_s = flush_s
        self._stop = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self._flusher = threading.Thread(target=self._flush_loop, name="receipt-echo", daemon=True)
        self._flusher.start()
        self.connect()

    def connect(self, timeout_s: float = 5.0) -> None:
        self._subscribed.clear()
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 3600
        self.client.connect(self.host, self.port, clean_start=False, properties=properties)
        self.client.loop_start()
        if not self._subscribed.wait(timeout_s):
            raise RuntimeError(f"receipt echo did not subscribe within {timeout_s:g} s")

    def disconnect(self) -> None:
        """Leave the session on the broker: what arrives meanwhile is queued for us (in the broker's memory)."""
        self.client.disconnect()
        self.client.loop_stop()

    def close(self) -> None:
        self._stop.set()
        self._flusher.join(2)
        self.disconnect()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        client.subscribe([(f"{TOPIC_ROOT}/+/+/{c}", SubscribeOptions(qos=1)) for c in self.channels])

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        site, station, channel = parse_topic(message.topic)
        seq = int(json.loads(message.payload)["seq"])
        with self._lock:
            self.arrivals[(station, channel, seq)] += 1
            copies = self.arrivals[(station, channel, seq)]
            if self.confirming and (copies > 1 or not self.skip_first_copies):
                self._pending.setdefault((site, station, channel), set()).add(seq)

    def _flush_loop(self) -> None:
        while not self._stop.wait(self._flush_s):
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for (site, station, channel), seqs in pending.items():
            receipt = Receipt(site=site, station=station, channel=channel,  # type: ignore[arg-type]
                              stored=seq_ranges(seqs), sent=utc_now())
            self.client.publish(receipts_topic(site, station), receipt.model_dump_json(), qos=1)
            self.receipts_sent += 1

    def seqs(self, channel: str) -> set[int]:
        with self._lock:
            return {seq for (_, ch, seq) in self.arrivals if ch == channel}

    def confirm(self, site: str, station: str, channel: Channel, seqs: set[int]) -> None:
        """Confirm what arrived while `confirming` was off."""
        with self._lock:
            self._pending.setdefault((site, station, channel), set()).update(seqs)
