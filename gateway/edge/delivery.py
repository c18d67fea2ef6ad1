"""One outbound delivery path for every station channel: readings, fluxes and raw files (STYLE.md principles 9, 14).

    channel outbox (durable, a per-channel seq)       readings: ReadingsOutbox   (gateway/edge/outbox.py)
        │ claim(n, exclude) / reload(seq)             fluxes:   FluxOutbox
        ▼                                             raw:      RawOutbox
    Delivery: one paho client per station (MQTT v5), one `delivery` thread
        │ PUBLISH QoS 1 ───────▶ broker ───────▶ central service: store, then a Receipt
        │ ◀── PUBACK: paces the sender (at most `max_in_flight` unacknowledged), or refuses (reason code >= 0x80)
        │ ◀──────────── Receipt on sinkwatch/v1/<site>/<station>/receipts ◀──┘
        ▼ confirm(ranges): only now is the item deleted from its outbox

A PUBACK is not durability: a broker that crashes (kill -9, power) loses whatever it had acknowledged but not yet
handed on or saved. So an item leaves its outbox only when the central service's receipt says the store holds it
(docs/architecture.md, "Delivery"), and an item without a receipt is sent again.

The life of one item while this process tracks it (after a restart, the outbox hands every item out again):

    claimed ──publish──▶ SENT ──PUBACK success──▶ ACCEPTED ──receipt──▶ deleted
                          │  (paho resends it       │
                          │   after a reconnect)    └── no receipt within the resend interval ──▶ SENT again
                          └── PUBACK refusal (e.g. 0x87 Not authorized) ──▶ REFUSED ── after refusal_retry_s ──▶ SENT
    A receipt deletes an item in any state (it may beat the PUBACK); a receipt for an item already deleted is
    ignored. The resend interval starts at `receipt_timeout_s` and doubles with each resend of the item, up to
    `max_resend_interval_s`, so a central outage of a day costs a few resends per item, not thousands.

    **A slow central service is not a lost item.** An accepted item whose resend falls due while its channel's
    receipts still come (one within the last `receipt_timeout_s`) and name only items sent before it (no higher seq
    confirmed yet) is waiting its turn in a queue the central service is working off (a catch-up after an outage):
    its resend is put off by another `receipt_timeout_s` (counted in `resends_put_off`), at most until
    `max_resend_interval_s` after the broker took it. Sent again anyway, it would only be work for the central
    service: a thousand stations after a 10-minute outage sent about as many items again as they had queued
    (docs/scaling.md). An item that is lost (a central worker killed holding it, a broker that lost its queue)
    shows as a later item confirmed, or as receipts that stop: it is sent again at its usual time.

Windows: at most `max_in_flight` PUBLISHes of all channels together wait for their PUBACK (paho keeps and resends
those); per channel at most `max_unconfirmed` items are out (SENT, ACCEPTED or REFUSED), so while the central
service is away the station stops sending after that many items and keeps the rest on its own disk, instead of
filling the broker's memory. Each PUBLISH carries a message expiry of twice the longest resend interval: a copy
the broker still queues after that is superseded by a resend anyway.

Threading (the lock-order lesson of the old publisher: paho calls back holding its own lock, so a callback must
never wait for a lock held across `publish()`): paho's callbacks only put events on a queue and wake the
`delivery` thread, which alone claims, publishes, confirms and changes item state. `_lock` guards the state
for `health()` readers and is never held while calling paho.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import ValidationError

from gateway import __version__
from gateway.contract import Channel, Receipt, StationState, StationStatus, receipts_topic, status_topic
from gateway.edge.config import MqttConfig
from gateway.model import utc_now
from gateway.secretfile import reveal
from gateway.tls import HandshakeWatch
from gateway.trust.signing import USER_PROPERTY

log = logging.getLogger("sinkwatch.edge.delivery")

UNREACHABLE = "broker unreachable"  # the key of `connect_failures` for attempts that reached no broker
SESSION_EXPIRY_S = 86400  # the broker keeps our receipts subscription (and queues receipts) across a day's outage
BEAT_S = 5.0  # the longest the delivery loop sleeps between two beats of its liveness


class _StationClient(mqtt.Client):
    """paho's client, its network thread waiting up to `loop_timeout_s` for the socket instead of paho's 1 s.

    That thread is woken by what it has to do: bytes from the broker, and a PUBLISH, SUBSCRIBE or DISCONNECT queued
    by another thread (paho writes a byte to its socket pair for each). Its timeout only paces its keep-alive check
    (a PINGREQ when nothing went out for `keepalive_s`), so a quarter of the keep-alive is soon enough (a PINGREQ at
    most that late; the broker waits 1.5 keep-alives), and its 3,600 wake-ups an hour with nothing to do are gone
    (docs/performance.md). `_thread_main` is paho 2.2's own, with the timeout passed on; tested against paho's."""

    loop_timeout_s = 1.0

    def _thread_main(self) -> None:
        try:
            self.loop_forever(timeout=self.loop_timeout_s, retry_first_connection=True)
        finally:
            self._thread = None


@dataclass(frozen=True)
class OutboxItem:
    seq: int
    payload: bytes  # the wire payload, carrying `seq`


class OutboxSource(Protocol):
    """One channel's durable outbox. Every method is called from the `delivery` thread only (and `pending`/
    `oldest_time` from `health()` too), so an implementation needs to be safe against its own producer only."""

    channel: Channel
    topic: str
    unit: str  # what `pending` counts: "readings", "records", "files"

    def claim(self, limit: int, exclude: set[int]) -> list[OutboxItem]:
        """Up to `limit` items not in `exclude`, oldest first; assigns new seqs durably when it forms new items."""
        ...

    def reload(self, seq: int) -> bytes | None:
        """The payload of an item still in the outbox, or None when it is gone."""
        ...

    def confirm(self, ranges: Sequence[tuple[int, int]]) -> tuple[int, int]:
        """Delete the items whose seq lies in one of the inclusive ranges; (items deleted, units deleted)."""
        ...

    def pending(self) -> int:
        """Units (readings, records, files) in the outbox, sent or not."""
        ...

    def oldest_time(self) -> float | None:
        """Unix time of the oldest unit in the outbox (its own timestamp), None when empty."""
        ...


class ItemSigner(Protocol):
    """Signs each PUBLISH of an item (gateway/edge/signer.py `ChainSigner`): the MQTT v5 user property value of
    `gateway.trust.signing.USER_PROPERTY`, and forgets an item's link once a receipt confirmed it."""

    def envelope(self, channel: str, topic: str, seq: int, payload: bytes) -> str: ...

    def forget(self, channel: str, ranges: Sequence[tuple[int, int]]) -> None: ...


@dataclass(frozen=True)
class DeliverySettings:
    max_in_flight: int = 10
    max_unconfirmed: int = 100
    receipt_timeout_s: float = 30.0
    max_resend_interval_s: float = 600.0
    refusal_retry_s: float = 60.0
    idle_wait_s: float = 1.0

    @property
    def message_expiry_s(self) -> int:
        return math.ceil(2 * max(self.max_resend_interval_s, self.refusal_retry_s))


State = Literal["sent", "accepted", "refused"]


@dataclass
class _Tracked:
    state: State
    sends: int
    due: float = math.inf  # monotonic time of the next resend (accepted, refused)
    sent_at: float = 0.0
    accepted_at: float = 0.0  # when the broker took its latest copy (PUBACK)


@dataclass
class ChannelCounters:
    sent: int = 0  # PUBLISHes handed to paho, resends included
    resends: int = 0
    accepted: int = 0  # PUBACKs with a success code
    refusals: Counter[str] = field(default_factory=Counter)  # PUBACK refusals by reason
    confirmed: int = 0  # items deleted on a receipt
    confirmed_units: int = 0
    dead_lettered: int = 0  # items the central service could not store (its dead-letter file has them)
    stale_receipts: int = 0  # seqs named by a receipt that were no longer in the outbox
    resends_put_off: int = 0  # resends put off because the central service was still working towards the item


def _oversized_summary(oversized: dict[int, str]) -> str | None:
    """What a channel's health says of its items above the broker's packet limit (None: there are none)."""
    if not oversized:
        return None
    first = min(oversized)
    return (oversized[first] if len(oversized) == 1
            else f"{len(oversized)} items too large, e.g. seq {first}: {oversized[first]}")


class _Channel:
    def __init__(self, source: OutboxSource, linger_s: float = 0.0) -> None:
        self.source = source
        self.linger_s = linger_s
        self.tracked: dict[int, _Tracked] = {}
        self.counters = ChannelCounters()
        self.refused_reason: str | None = None  # the channel's current refusal state, logged on change
        # items above the broker's packet limit, kept and not sent (seq -> why): a refusal of those items alone,
        # which the channel's other items do not clear
        self.oversized: dict[int, str] = {}
        self.last_receipt_at = -math.inf  # when a receipt last confirmed items of this channel (clock)
        self.highest_confirmed = -1  # the highest seq a receipt named


class Delivery:
    """The station's one MQTT client and its delivery loop (module doc). `add_channel` every outbox, then `start`."""

    def __init__(self, site: str, station: str, mqtt_config: MqttConfig, settings: DeliverySettings | None = None,
                 *, clock: Callable[[], float] = time.monotonic, signer: ItemSigner | None = None) -> None:
        self.site = site
        self.signer = signer
        self.station = station
        self.settings = settings or DeliverySettings()
        self._mqtt_config = mqtt_config
        self._clock = clock
        self._channels: dict[str, _Channel] = {}
        self._order: list[str] = []  # round robin over channels for new items
        self._turn = 0
        # A channel whose outbox had nothing new is not asked again until it is notified or `idle_wait_s` has
        # passed (a source that forgets to notify waits no longer than before): an idle channel costs one query a
        # second instead of one per wake-up. (notifications so far, marks when found empty: (notifications, time))
        self._notified: dict[str, int] = {}
        self._found_empty: dict[str, tuple[int, float]] = {}
        # A channel with a linger is asked `linger_s` after the first notification that followed an empty answer,
        # so what its writer adds in one burst (the readings of one poll round, committed in several groups)
        # leaves as one item: one claim, signature, PUBLISH and receipt instead of one per commit.
        self._first_notice: dict[str, float] = {}
        self._mids: dict[int, tuple[str, int]] = {}  # paho mid -> (channel, seq) until its PUBACK
        self._events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._receipts_in_hand = 0  # receipt handlers between their outbox deletion and their counters
        self._connected = threading.Event()
        self._stopping = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._status_topic = status_topic(site, station)
        self._receipts_topic = receipts_topic(site, station)
        # downlink topics besides the receipts (a station's commands): each message handed to its handler, in the
        # delivery thread (gateway/edge/commands.py only queues it there)
        self._downlinks: dict[str, Callable[[str, bytes], None]] = {}
        # per subscribed topic: granted by the broker's SUBACK in this connection (None: no SUBACK yet)
        self._subscribed: dict[str, bool | None] = {self._receipts_topic: None}
        self._subscribing: dict[int, list[str]] = {}  # SUBSCRIBE mid -> its topics, until the SUBACK
        self.last_connect_problem: str | None = None  # why the last attempt to connect failed; None once connected
        # the broker's Maximum Packet Size (CONNACK) or mqtt.max_packet_bytes, the smaller; None: the protocol's
        self._max_packet: int | None = None
        self.connects = 0
        self.connection_losses = 0
        self.connect_failures: Counter[str] = Counter()
        self.receipts = 0
        self.bad_receipts = 0
        self.tls: HandshakeWatch | None = None
        # called on every turn of the delivery loop (at least every BEAT_S): the daemon's watchdog
        # (gateway/edge/systemd.py) takes a silent loop for a hung one
        self.beat: Callable[[], None] = lambda: None
        self.beat_every_s = BEAT_S  # the daemon lowers it to a fraction of its watchdog's hung_after_s
        self._client = self._make_client()

    # --- set-up ------------------------------------------------------------------------------------------------

    def add_downlink(self, topic: str, handler: Callable[[str, bytes], None]) -> None:
        """Subscribe to `topic` too (QoS 1, on every connect) and hand each of its messages to `handler`, called in
        the delivery thread: it must only queue the message."""
        self._downlinks[topic] = handler
        self._subscribed[topic] = None

    def subscribed(self, topic: str) -> bool | None:
        """Whether the broker granted the subscription to `topic` in this connection; None before its SUBACK."""
        return self._subscribed.get(topic)

    def add_channel(self, source: OutboxSource, *, linger_s: float = 0.0) -> None:
        """Deliver `source`'s items; with `linger_s`, new items after an idle spell wait that long to gather."""
        if source.channel in self._channels:
            raise ValueError(f"channel {source.channel!r} added twice")
        self._channels[source.channel] = _Channel(source, linger_s)
        self._order.append(source.channel)

    def _make_client(self) -> mqtt.Client:
        cfg = self._mqtt_config
        client = _StationClient(CallbackAPIVersion.VERSION2, client_id=cfg.client_id or f"sinkwatch-{self.site}-"
                                f"{self.station}", protocol=mqtt.MQTTv5)
        client.loop_timeout_s = cfg.keepalive_s / 4
        if cfg.username:
            client.username_pw_set(cfg.username, reveal(cfg.password))
        if cfg.tls:
            # the system CA store, or only mqtt.ca_file; a failed handshake is classified and logged by the watch
            self.tls = HandshakeWatch(log, host=cfg.host, port=cfg.port, prefix="mqtt", ca_file=cfg.ca_file)
            client.tls_set_context(self.tls.attach(cfg.ssl_context()))
        offline = StationStatus(site=self.site, station=self.station, state=StationState.OFFLINE,
                                since=utc_now(), software_version=__version__, reason="connection lost")
        client.will_set(self._status_topic, offline.model_dump_json(), qos=1, retain=True)
        # room for our window plus the status messages, which are not items
        client.max_inflight_messages_set(self.settings.max_in_flight + 2)
        client.reconnect_delay_set(min_delay=1, max_delay=60)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_connect_fail = self._on_connect_fail
        return client

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        cfg = self._mqtt_config
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        # connect_async + loop_start: the first attempt and every later one happen in paho's thread, so an absent
        # broker at start-up is the first of many retries, not a crash.
        self._client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s, clean_start=False,
                                   properties=properties)
        self._client.loop_start()
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, args=(self._stop,), name="delivery", daemon=True)
        self._thread.start()

    def notify(self, channel: str | None = None) -> None:
        """Something new is in the outbox of `channel` (None: maybe in any)."""
        if channel is None:
            self._found_empty.clear()
        else:
            self._first_notice.setdefault(channel, self._clock())
            self._notified[channel] = self._notified.get(channel, 0) + 1
        self._wake.set()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop sending; the outboxes keep whatever has no receipt for the next start."""
        self._stopping = True
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        if self._connected.is_set():
            offline = StationStatus(site=self.site, station=self.station, state=StationState.OFFLINE,
                                    since=utc_now(), software_version=__version__, reason="stopped")
            info = self._client.publish(self._status_topic, offline.model_dump_json(), qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):  # the broker may go away meanwhile: the will says it
                info.wait_for_publish(timeout=2)
        self._client.disconnect()
        self._client.loop_stop()

    def wait_confirmed(self, timeout_s: float) -> bool:
        """Wait until every outbox is empty (every item confirmed by a receipt) and its receipts counted; for shutdown
        and tests."""
        deadline = time.monotonic() + timeout_s
        while True:
            # the outboxes first, then the receipts in hand: a receipt handler deletes from an outbox before it
            # counts what it deleted, so an empty outbox seen first is counted once no handler is in hand
            if all(ch.source.pending() == 0 for ch in self._channels.values()):
                with self._lock:
                    if self._receipts_in_hand == 0:
                        return True
            if time.monotonic() >= deadline:
                return False
            self._wake.set()
            time.sleep(0.05)

    # --- paho callbacks: network thread, hand over and nothing else -----------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.connect_failures[str(reason)] += 1
            self.last_connect_problem = f"the broker refused the connection: {reason}"
            log.error("broker %s:%s refused the connection: %s (check mqtt.username and mqtt.password_file, or "
                      "mqtt.cert_file; a revoked station is refused until it is provisioned again)",
                      self._mqtt_config.host, self._mqtt_config.port, reason)
            return
        if self.tls is not None:
            self.tls.succeeded()
        self.connects += 1
        announced = getattr(props, "MaximumPacketSize", None) if props is not None else None
        limits = [size for size in (announced, self._mqtt_config.max_packet_bytes) if size is not None]
        self._max_packet = min(limits) if limits else None
        log.info("connected to broker %s:%s", self._mqtt_config.host, self._mqtt_config.port)
        self.last_connect_problem = None
        topics = [self._receipts_topic, *self._downlinks]
        _, mid = client.subscribe([(topic, SubscribeOptions(qos=1)) for topic in topics])
        if mid is not None:
            self._subscribing[mid] = topics
        online = StationStatus(site=self.site, station=self.station, state=StationState.ONLINE,
                               since=utc_now(), software_version=__version__)
        client.publish(self._status_topic, online.model_dump_json(), qos=1, retain=True)
        self._connected.set()
        self._found_empty.clear()
        self._wake.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if self._connected.is_set() and not self._stopping:
            self.connection_losses += 1
            log.warning("lost the broker connection (%s); keeping everything on disk and reconnecting", reason)
        self._connected.clear()
        for topic in self._subscribed:
            self._subscribed[topic] = None

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho retries by itself with backoff; said once per outage (at start, or after the connection was lost),
        # counted every time: with a wrong mqtt.host or a broker that is down the daemon said nothing at all
        self.connect_failures[UNREACHABLE] += 1
        said = self.last_connect_problem is not None and self.last_connect_problem.startswith("cannot reach")
        self.last_connect_problem = (f"cannot reach the broker at {self._mqtt_config.host}:{self._mqtt_config.port} "
                                     "(connection refused, no route, or a failed TLS handshake)")
        if not said:
            log.warning("%s; retrying with backoff up to 60 s, every reading stays on disk meanwhile. Check "
                        "mqtt.host and mqtt.port in station.yaml, that the broker runs and that the network (or a "
                        "firewall) lets this station in", self.last_connect_problem)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[Any], props: Any) -> None:
        self._events.put(("suback", mid, [(int(r.value), str(r)) for r in reasons]))
        self._wake.set()

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self._events.put(("puback", mid, int(getattr(reason, "value", 0)), str(reason)))
        self._wake.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._events.put(("message", message.topic, bytes(message.payload)))
        self._wake.set()

    # --- the delivery thread -----------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            # Cleared before looking, never after waking: a notice (notify, a paho event, a connect) that comes
            # while pump() runs leaves the event set and ends the wait below at once. Event.set takes the event's
            # condition lock, so no notice falls between this clear and the wait unseen.
            self._wake.clear()
            self.beat()
            try:
                self.pump()
            except Exception:  # a bug here must not end delivery for good; the outboxes keep everything
                log.exception("delivery: unexpected error; retrying in %.0f s", self.settings.idle_wait_s)
                stop.wait(self.settings.idle_wait_s)
            self._wake.wait(self._next_wait())

    def pump(self) -> int:
        """Handle what paho handed over, resend what is due, send what is new; returns how many were sent."""
        self._handle_events()
        if not self._connected.is_set():
            return 0
        return self._resend_due() + self._send_new()

    def _next_wait(self) -> float:
        """Until the next real deadline: the earliest resend or refusal retry, a lingering channel's gathering time,
        at most BEAT_S (the watchdog). Everything else wakes the loop itself (new items, PUBACKs, receipts,
        SUBACKs, a connect), so an idle loop wakes every BEAT_S instead of every `idle_wait_s` only to find nothing.
        A source that forgets to notify is still asked within BEAT_S."""
        now = self._clock()
        with self._lock:
            due = min((t.due for ch in self._channels.values() for t in ch.tracked.values()), default=math.inf)
        for name, noticed in list(self._first_notice.items()):
            if name in self._found_empty and self._channels[name].linger_s > 0:
                due = min(due, noticed + self._channels[name].linger_s)
        return max(0.01, min(self.beat_every_s, due - now))

    def _handle_events(self) -> None:
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return
            kind = event[0]
            if kind == "puback":
                self._puback(event[1], event[2], event[3])
            elif kind == "message":
                self._message(event[1], event[2])
            elif kind == "suback":
                self._suback(event[1], event[2])

    def _message(self, topic: str, payload: bytes) -> None:
        handler = self._downlinks.get(topic)
        if handler is None:
            self._receipt(topic, payload)
            return
        try:
            handler(topic, payload)
        except Exception:  # a handler's bug must not end delivery
            log.exception("the handler of %s failed on a message", topic)

    def _suback(self, mid: int, reasons: list[tuple[int, str]]) -> None:
        topics = self._subscribing.pop(mid, [self._receipts_topic])
        for topic, (code, name) in zip(topics, reasons, strict=False):
            granted = code < 0x80
            if not granted and topic == self._receipts_topic:
                log.error("the broker refused our subscription to %s (%s): no receipts can arrive, so nothing leaves "
                          "the outboxes; allow the station to read its receipts topic (deploy/mosquitto/sinkwatch.acl)",
                          topic, name)
            elif not granted:
                log.error("the broker refused our subscription to %s (%s): nothing sent there can arrive; allow the "
                          "station to read it (deploy/mosquitto/sinkwatch.acl)", topic, name)
            self._subscribed[topic] = granted

    @property
    def _receipts_subscribed(self) -> bool | None:
        return self._subscribed[self._receipts_topic]

    def _puback(self, mid: int, code: int, reason: str) -> None:
        with self._lock:
            entry = self._mids.pop(mid, None)
            if entry is None:
                return  # a status message
            channel = self._channels[entry[0]]
            if entry[1] not in channel.tracked:
                return  # its receipt came first: already deleted
        if code >= 0x80:
            self._refuse(channel, entry[1], code, reason)
            return
        with self._lock:
            tracked = channel.tracked.get(entry[1])
            if tracked is None:
                return
            channel.counters.accepted += 1
            tracked.state = "accepted"
            tracked.accepted_at = self._clock()
            tracked.due = tracked.accepted_at + self._resend_interval(tracked.sends)
            previous, channel.refused_reason = channel.refused_reason, None
        if previous is not None:
            log.warning("the broker accepts %s again (was refusing: %s)", entry[0], previous)

    def _refuse(self, channel: _Channel, seq: int, code: int, reason: str) -> None:
        """The broker refused the item (or would): keep it, count it, try again after `refusal_retry_s`."""
        with self._lock:
            self._hold_refused(channel, seq, reason)
            previous, channel.refused_reason = channel.refused_reason, reason
        if previous != reason:  # logged on a change of the channel's state only, not for every item
            log.error("the broker refused %s seq %d on %s: %s (0x%02X); kept in the outbox and retried every %.0f s: "
                      "check the broker's ACL and limits for this station (deploy/mosquitto/)", channel.source.channel,
                      seq, channel.source.topic, reason, code, self.settings.refusal_retry_s)

    def _hold_refused(self, channel: _Channel, seq: int, counted_as: str) -> None:
        """An item not taken (refused, or too large to send): counted under `counted_as`, kept, looked at again
        after `refusal_retry_s`. Called under the lock."""
        tracked = channel.tracked.setdefault(seq, _Tracked("refused", 0, sent_at=self._clock()))
        channel.counters.refusals[counted_as] += 1
        tracked.state = "refused"
        tracked.due = self._clock() + self.settings.refusal_retry_s

    def _set_aside_oversized(self, channel: _Channel, seq: int, size: int) -> None:
        """An item above the broker's packet limit: kept, counted, looked at again after `refusal_retry_s` (the
        limit is learned anew at every connection). Unlike a refusal by the broker it concerns this item alone, so
        the channel's other items, accepted meanwhile, do not clear it, and it is logged once per item."""
        reason = f"Packet too large for the broker ({size} > {self._max_packet} bytes)"
        with self._lock:
            self._hold_refused(channel, seq, "Packet too large for the broker")
            new = seq not in channel.oversized
            channel.oversized[seq] = reason
        if new:
            log.error("%s seq %d on %s is not sent: %s; kept in the outbox and looked at again every %.0f s: raise "
                      "the broker's packet limit (Mosquitto max_packet_size, mqtt.max_packet_bytes of the station "
                      "when the broker does not announce its limit) or lower buffer.batch_size",
                      channel.source.channel, seq, channel.source.topic, reason, self.settings.refusal_retry_s)

    def _resend_interval(self, sends: int) -> float:
        return min(self.settings.receipt_timeout_s * 2 ** max(0, sends - 1), self.settings.max_resend_interval_s)

    def _receipt(self, topic: str, payload: bytes) -> None:
        try:
            receipt = Receipt.model_validate_json(payload)
        except ValidationError as exc:
            self.bad_receipts += 1
            log.warning("ignoring a malformed receipt on %s: %s", topic, exc.errors()[0]["msg"])
            return
        if (receipt.site, receipt.station) != (self.site, self.station) or receipt.channel not in self._channels:
            self.bad_receipts += 1
            log.warning("ignoring a receipt for %s/%s channel %s on %s", receipt.site, receipt.station,
                        receipt.channel, topic)
            return
        self.receipts += 1
        channel = self._channels[receipt.channel]
        with self._lock:
            self._receipts_in_hand += 1
        try:
            self._apply_receipt(receipt, channel)
        finally:
            with self._lock:
                self._receipts_in_hand -= 1

    def _apply_receipt(self, receipt: Receipt, channel: _Channel) -> None:
        for ranges, dead in ((receipt.stored, False), (receipt.dead_lettered, True)):
            if not ranges:
                continue
            items, units = channel.source.confirm(ranges)
            if self.signer is not None:
                self.signer.forget(receipt.channel, ranges)
            named = sum(last - first + 1 for first, last in ranges)
            with self._lock:
                for seq in [s for s in channel.tracked if any(a <= s <= b for a, b in ranges)]:
                    del channel.tracked[seq]
                if items:
                    channel.last_receipt_at = self._clock()
                    channel.highest_confirmed = max(channel.highest_confirmed, max(last for _, last in ranges))
                counters = channel.counters
                counters.confirmed += items
                counters.confirmed_units += units
                counters.stale_receipts += max(0, named - items)
                if dead:
                    counters.dead_lettered += items
            if dead and items:
                log.warning("the central service could not store %d %s item(s) (seqs %s) and dead-lettered them "
                            "with the reason; see its dead-letter file", items, receipt.channel,
                            ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in ranges[:5]))

    def _window_free(self) -> bool:
        return len(self._mids) < self.settings.max_in_flight

    def _publish(self, channel: _Channel, seq: int, payload: bytes) -> bool:
        """Hand one item to paho; False when paho did not take it (it stays in the outbox)."""
        properties = Properties(PacketTypes.PUBLISH)
        properties.MessageExpiryInterval = self.settings.message_expiry_s
        size = len(payload) + len(channel.source.topic) + 16  # fixed header, topic length, packet id, expiry
        if self.signer is not None:
            envelope = self.signer.envelope(channel.source.channel, channel.source.topic, seq, payload)
            properties.UserProperty = (USER_PROPERTY, envelope)
            size += len(USER_PROPERTY) + len(envelope) + 5
        if self._max_packet is not None and size > self._max_packet:
            # the broker would drop the connection (0x95 Packet too large) and paho would resend it after every
            # reconnect: keep it here, report it, so the other items and channels still flow
            self._set_aside_oversized(channel, seq, size)
            return True
        if channel.oversized:
            with self._lock:
                if channel.oversized.pop(seq, None) is not None:
                    log.warning("%s seq %d fits the broker's packet limit now; sent", channel.source.channel, seq)
        info = self._client.publish(channel.source.topic, payload, qos=1, properties=properties)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            log.debug("publish of %s seq %d deferred: %s", channel.source.channel, seq, mqtt.error_string(info.rc))
            return False
        # NO_CONN: paho keeps the message and sends it once the connection is back
        with self._lock:
            self._mids[info.mid] = (channel.source.channel, seq)
            tracked = channel.tracked.get(seq)
            if tracked is None:
                channel.tracked[seq] = _Tracked("sent", 1, sent_at=self._clock())
            else:
                tracked.state, tracked.due, tracked.sends = "sent", math.inf, tracked.sends + 1
                tracked.sent_at = self._clock()
                channel.counters.resends += 1
            channel.counters.sent += 1
        return True

    def _waiting_its_turn(self, channel: _Channel, seq: int, tracked: _Tracked, now: float) -> bool:
        """Whether an accepted item due for a resend is still ahead in a queue the central service is working off
        (module doc): receipts came lately, none for a later item, and the broker took it not too long ago."""
        return (tracked.state == "accepted" and now - channel.last_receipt_at < self.settings.receipt_timeout_s
                and channel.highest_confirmed < seq
                and now - tracked.accepted_at < self.settings.max_resend_interval_s)

    def _resend_due(self) -> int:
        now = self._clock()
        sent = 0
        for channel in self._channels.values():
            with self._lock:
                due = []
                for seq, t in sorted(channel.tracked.items()):
                    if t.state == "sent" or t.due > now:
                        continue
                    if self._waiting_its_turn(channel, seq, t, now):
                        t.due = now + self.settings.receipt_timeout_s
                        channel.counters.resends_put_off += 1
                        continue
                    due.append(seq)
            for seq in due:
                if not self._window_free():
                    return sent
                payload = channel.source.reload(seq)
                if payload is None:  # deleted meanwhile (a receipt for it was handled by an earlier process)
                    with self._lock:
                        channel.tracked.pop(seq, None)
                    continue
                if not self._publish(channel, seq, payload):
                    return sent
                sent += 1
        return sent

    def _send_new(self) -> int:
        sent = 0
        idle = 0
        while self._window_free() and self._order and idle < len(self._order):
            name = self._order[self._turn % len(self._order)]
            self._turn += 1
            channel = self._channels[name]
            room = self.settings.max_unconfirmed - len(channel.tracked)
            notified = self._notified.get(name, 0)
            empty = self._found_empty.get(name)
            now = self._clock()
            if empty is not None and empty[0] == notified and now - empty[1] < self.settings.idle_wait_s:
                idle += 1
                continue
            noticed = self._first_notice.get(name)
            if (empty is not None and channel.linger_s > 0 and noticed is not None
                    and now - noticed < channel.linger_s):
                idle += 1  # notified after an idle spell: let the burst gather (_next_wait wakes us for it)
                continue
            items = channel.source.claim(1, set(channel.tracked)) if room > 0 else []
            if not items:
                if room > 0:
                    self._found_empty[name] = (notified, self._clock())
                    self._first_notice.pop(name, None)
                idle += 1
                continue
            idle = 0
            if not self._publish(channel, items[0].seq, items[0].payload):
                break
            sent += 1
        return sent

    # --- health ------------------------------------------------------------------------------------------------

    def counters(self, channel: str) -> ChannelCounters:
        return self._channels[channel].counters

    def health(self) -> dict[str, object]:
        """Counts a supervisor or a chaos run reconciles (docs/architecture.md, "Delivery")."""
        now_wall = time.time()
        now = self._clock()
        channels: dict[str, object] = {}
        for name, channel in self._channels.items():
            oldest = channel.source.oldest_time()
            with self._lock:
                states = Counter(t.state for t in channel.tracked.values())
                waiting = [now - t.sent_at for t in channel.tracked.values()]
                c = channel.counters
                channels[name] = {
                    "pending": channel.source.pending(), "unit": channel.source.unit,
                    "oldest_pending_age_s": round(now_wall - oldest, 3) if oldest is not None else None,
                    "in_flight": states["sent"], "awaiting_receipt": states["accepted"],
                    "refused_now": states["refused"],
                    "refusing": channel.refused_reason or _oversized_summary(channel.oversized),
                    "oversized": len(channel.oversized),
                    "longest_wait_s": round(max(waiting), 3) if waiting else None,
                    "sent": c.sent, "resends": c.resends, "accepted": c.accepted, "refusals": dict(c.refusals),
                    "confirmed": c.confirmed, "confirmed_units": c.confirmed_units,
                    "dead_lettered": c.dead_lettered, "stale_receipts": c.stale_receipts,
                    "resends_put_off": c.resends_put_off,
                }
        # a plain attribute look-up: isinstance against a runtime-checkable Protocol costs ~0.1 ms, and health is
        # taken every second by the status writer
        signer_health = getattr(self.signer, "health", None)
        return {
            "broker_connected": self.connected, "connects": self.connects,
            "connection_losses": self.connection_losses, "connect_failures": dict(self.connect_failures),
            "tls": self.tls.snapshot() if self.tls is not None else None,
            "receipts_subscribed": self._receipts_subscribed, "receipts": self.receipts,
            "downlinks": {topic: self._subscribed[topic] for topic in self._downlinks},
            "bad_receipts": self.bad_receipts, "in_flight": len(self._mids), "channels": channels,
            "signing": signer_health() if callable(signer_health) else None,
        }
