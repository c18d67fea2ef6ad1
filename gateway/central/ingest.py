"""MQTT -> Store ingestion with at-least-once delivery and acknowledgement only after a durable write.

Flow::

    broker --QoS 1--> paho network thread --on_message--> queue --> worker thread: a group of what has arrived,
                                                                    checked and placed in order
                                                                        |  its readings: Store.write_many
                                                                        v  (store thread, while the worker
                                                                           checks the next group)
                                                                    every message of the group acked in order
                                                                    (PUBACK), receipts published

- A group is whatever the queue holds when the worker takes from it (never waited for; at most `max_group`
  messages and `max_group_bytes` of payload): its signatures are checked and its signed items looked up in the
  ledger in one request (a worker on a shared subscription: `ChainTracker.prefetch`, which also learns the chain
  marks its chains lack in one request), and the chain events of its items, its health reports, its flux records,
  its readings and its ledger items go to the store in one step (`_write_group`: one
  request each, whatever the number of messages), not a few requests per message. Its messages are acked only
  after the group is stored, in the order they arrived.

- MQTT v5 with a persistent session (clean start off, a session expiry, fixed client id), so whatever we have not
  acknowledged is kept by the broker across our restarts and reconnects and redelivered.
- After the store has confirmed an item (`Store.write`, `Store.write_fluxes`, the raw archive's fsync) its `seq` is
  noted in a `ReceiptBook`; when the queue runs dry (or after 0.2 s, or 500 items) the worker publishes a `Receipt`
  per station and channel on `sinkwatch/v1/<site>/<station>/receipts` (QoS 1). Only a receipt lets a station delete
  an item (gateway/edge/delivery.py): the broker's PUBACK to the station is no longer durability. A dead-lettered
  item whose seq can be read is named in the receipt's `dead_lettered` ranges. A receipt lost on the way costs a
  resend, which the idempotent stores absorb.
- `manual_ack=True`: paho does not PUBACK on our behalf; the worker acks after the store returned. paho's
  `ack()` only queues a packet under paho's own output lock, so calling it from the worker thread is safe.
- The worker, not the network thread, waits out storage outages (capped exponential backoff), so keepalive
  pings keep flowing. We ask the broker for an in-flight window of two groups (`Receive Maximum`); Mosquitto 2.0.11
  keeps to it only until our first PUBACK and then sends whatever it holds for us (docs/scaling.md, measured), so in
  a catch-up our queue holds what the broker queued for us: memory, not data (nothing is acked before it is stored).
- A payload that can never be stored (not JSON, schema violation, topic mismatch) is logged once, counted by
  reason, appended to `<data_dir>/dead-letter.jsonl` (`gateway.central.deadletter`: rotated, payloads capped) and
  acked: redelivery cannot fix it.
- A good batch is handled reading by reading: readings stamped outside the plausible window
  (`PLAUSIBLE_FROM` .. now + `PLAUSIBLE_AHEAD`, `implausible_time`) or with a value beyond
  +-`PLAUSIBLE_MAGNITUDE` (`implausible_value`) are set aside before anything is written; the store writes the
  others and reports those it refused (`rejected_by_store`) and those whose identity it holds with other content
  (`conflict`, see `gateway.central.store.base`). Set-aside readings are dead-lettered with their batch's context
  in one record per batch and reason, counted in `readings_set_aside`, and the message is acked once that record
  is on disk. So a batch is never half stored and wholly dead-lettered.
- Writes are idempotent, so a redelivered batch is harmless; we count such duplicates (same station + seq, and
  readings the store already held).
- `fluxes` messages (`gateway.contract.FluxRecord`, one averaging period each) go to `Store.write_fluxes` with
  their group (like health reports: the ledger item of a signed record after it, in the group's `write_many`), acked
  after the store accepted them, exactly like readings; a record the store refuses is found alone and dead-lettered.
- `health` messages (`StationHealth`, a station's report of itself) go to `Store.write_health` with their group
  (the ledger item of a signed report after it, in the group's `write_many`) and are confirmed in a receipt like
  fluxes; a report the store refuses is found alone and dead-lettered, the group's others stored.
- `raw` messages (`RawChunk`, one closed raw archive file each) are checked (base64, size, a whole zlib or gzip
  stream, a closed file of either archive format whose header names the same site, station and sensor) and written
  durably (fsync, atomic rename) to `<data_dir>/raw/<site>/<station>/<sensor>/<file>` (`gateway.central.rawstore`),
  acked after the write. A redelivered
  file is recognised by its bytes and counted as a duplicate; a disk that refuses is retried like a store outage.
"""

from __future__ import annotations

import json
import logging
import operator
import queue
import sqlite3
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from itertools import repeat
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import ValidationError

from gateway.central.batchjson import reading_columns
from gateway.central.chain import ChainKey, ChainTracker, Untrusted, VerifiedItem, Verifier, set_aside_json
from gateway.central.chainmarks import CHAIN_MARKS_FILE, ChainMarks
from gateway.central.config import DeadLetterSettings, MqttSettings
from gateway.central.deadletter import DeadLetterFile, payload_fields
from gateway.central.healthjson import health_fields
from gateway.central.mqttreceive import ReceivingClient
from gateway.central.provision import ProvisioningError, StationRegistry
from gateway.central.rawstore import RAW_DIR, RawArchive
from gateway.central.receipts import ReceiptBook
from gateway.central.store import Store, StoredReading, StoreRejected, StoreUnavailable
from gateway.central.store.base import TIME_RANGE_TEXT, StoreError, WriteOutcome, WriteRequest, storable_time, to_ns
from gateway.central.store.columns import ColumnsRequest, MarksAhead, ReadingColumns, TakesColumns
from gateway.central.store.health import HealthFields, TakesHealthFields
from gateway.central.store.ledger import ChainEvent, LedgerItem
from gateway.contract import (
    CHANNELS,
    COMMAND_RESULTS_SUBSCRIPTION,
    FLUXES_SUBSCRIPTION,
    HEALTH_SUBSCRIPTION,
    RAW_SUBSCRIPTION,
    READINGS_SUBSCRIPTION,
    STATUS_SUBSCRIPTION,
    Channel,
    CommandResult,
    FluxRecord,
    RawChunk,
    ReadingBatch,
    StationHealth,
    StationStatus,
    fluxes_topic,
    health_topic,
    parse_topic,
    raw_file_bytes,
    readings_topic,
    receipts_topic,
    shared_subscription,
    validate_batch_json,
)
from gateway.model import Reading, format_time, utc_now
from gateway.rawarchive.archive import FORMAT_NAME, HEADER_PREFIX, check_archive_bytes
from gateway.secretfile import reveal
from gateway.tls import HandshakeWatch
from gateway.trust.keys import KeyRegistry, RegistryError
from gateway.trust.signing import USER_PROPERTY, sha256_hex

log = logging.getLogger(__name__)

DEAD_LETTER_FILE = "dead-letter.jsonl"
SESSION_EXPIRY_S = 30 * 86400  # the broker keeps our session and queue for a month of silence
LOG_REPEAT_S = 60.0  # the same problem from the same source is logged at most once a minute (always counted)

# A reading (or flux period) stamped outside [PLAUSIBLE_FROM, now + PLAUSIBLE_AHEAD] by the central clock is set
# aside: no sinkwatch station measured before 2000, and a stamp more than a day ahead is a clock that is wrong
# (a node that booted without a real-time clock and without NTP), not a measurement of the future.
PLAUSIBLE_FROM = datetime(2000, 1, 1, tzinfo=UTC)
PLAUSIBLE_AHEAD = timedelta(days=1)
_PLAUSIBLE_FROM_NS = to_ns(PLAUSIBLE_FROM)


def implausible_time(value: datetime, now: datetime) -> str | None:
    """Why `value` cannot be a measurement's time, or None when it can. The window lies inside the range a store
    can hold (`storable_time`), so a plausible time is always storable."""
    if value < PLAUSIBLE_FROM:
        return f"time {format_time(value)} is before {format_time(PLAUSIBLE_FROM)}: the stamping clock was not set"
    if value > now + PLAUSIBLE_AHEAD:
        return (f"time {format_time(value)} is more than {PLAUSIBLE_AHEAD.days} day ahead of the central clock "
                f"({format_time(now)}): the stamping clock is wrong")
    return None


# A reading whose value is finite but beyond +-PLAUSIBLE_MAGNITUDE is set aside: no quantity a station measures
# comes near it in any unit it is sent in (the flux engine reads raw cells beyond it as missing for the same reason),
# and two such values overflow a store's sum or mean to infinity: SQLite then answers the aggregate null, InfluxDB
# answers no query of the range at all (it cannot write +Inf in JSON), so one hostile reading would blind the API to
# its series for good.
PLAUSIBLE_MAGNITUDE = 1e30


def implausible_value(value: float | int | None) -> str | None:
    """Why `value` cannot be a measurement, or None when it can (a missing value can)."""
    if value is not None and not -PLAUSIBLE_MAGNITUDE <= value <= PLAUSIBLE_MAGNITUDE:
        return (f"value {value!r} is beyond +-{PLAUSIBLE_MAGNITUDE:g}, which no measured quantity reaches (a store's "
                "sums and means of it overflow): send the reading as missing (value null, qc 3) with the reason, "
                "or fix the driver's scaling")
    return None


def _values_plausible(values: Iterable[float | None]) -> bool:
    """Whether every value is None or within +-PLAUSIBLE_MAGNITUDE (C loops: a batch's readings at once)."""
    present = [v for v in values if v is not None]
    return not present or (max(present) <= PLAUSIBLE_MAGNITUDE and min(present) >= -PLAUSIBLE_MAGNITUDE)


def _implausible_figure(document: object, where: str = "") -> str | None:
    """`<key path>: <implausible_value's problem>` of the first number in a parsed JSON document beyond
    +-PLAUSIBLE_MAGNITUDE, or None."""
    if isinstance(document, dict):
        items: Iterable[tuple[object, object]] = document.items()
    elif isinstance(document, list):
        items = enumerate(document)
    else:
        number = isinstance(document, int | float) and not isinstance(document, bool)
        problem = implausible_value(document) if number else None  # type: ignore[arg-type]
        return None if problem is None else f"{where or '(payload)'}: {problem}"
    for key, value in items:
        found = _implausible_figure(value, f"{where}.{key}" if where else str(key))
        if found is not None:
            return found
    return None


@dataclass
class IngestCounters:
    """Monotonic counters since start; `malformed` is keyed by reason (not_json, schema, topic_mismatch, ...)."""

    messages_received: int = 0
    batches_stored: int = 0
    readings_stored: int = 0  # new readings the store took
    duplicate_batches: int = 0
    duplicate_readings: int = 0  # readings the store already held with the same content (redeliveries)
    readings_set_aside: dict[str, int] = field(default_factory=dict)  # by reason: conflict, implausible_time, ...
    malformed: dict[str, int] = field(default_factory=dict)
    dead_lettered: int = 0  # dead-letter records written
    dead_letters_dropped: int = 0  # records deleted by dead-letter file rotation
    storage_outages: int = 0
    storage_retries: int = 0
    status_updates: int = 0
    flux_records_stored: int = 0
    health_reports_stored: int = 0
    command_results_stored: int = 0  # results of commands, kept in the command ledger (gateway/central/commands.py)
    commands_sent: int = 0
    commands_unconfirmed: int = 0  # commands the broker did not acknowledge in time
    raw_files_archived: int = 0
    raw_bytes_archived: int = 0
    raw_duplicates: int = 0
    raw_conflicts: int = 0
    signed_items: int = 0  # items whose signature held (gateway/central/chain.py)
    unsigned_items: int = 0  # items without a signature, stored because signatures are optional here
    untrusted: dict[str, int] = field(default_factory=dict)  # by reason: never stored, never receipted (alarm)
    chain_events: dict[str, int] = field(default_factory=dict)  # by kind: gap, duplicate, replay, reorder, fork, ...
    internal_errors: int = 0  # unexpected exceptions while storing a message (retried, logged with traceback)
    mqtt_connects: int = 0
    mqtt_disconnects: int = 0
    mqtt_connect_refusals: int = 0  # CONNACK refusals (bad credentials, revoked)
    mqtt_connect_failures: int = 0  # attempts that reached no broker (refused, no route, name, TLS handshake)
    receipts_sent: int = 0
    receipt_seqs: int = 0  # items named in receipts sent (stored or dead-lettered)
    receipts_unsent: int = 0  # receipts not sent because the broker was away (the station resends the items)


class Malformed(Exception):
    """A message that can never be stored; `reason` is the counter label."""

    def __init__(self, reason: str, problem: str) -> None:
        super().__init__(problem)
        self.reason = reason
        self.problem = problem


@dataclass(frozen=True)
class _Delivery:
    generation: int  # which MQTT connection delivered it; an ack on a later connection would hit another mid
    topic: str
    payload: bytes
    mid: int
    qos: int
    envelope: str | None = None  # the `sinkwatch-sig` user property (gateway/trust/signing.py)


@dataclass
class _PreparedBatch:
    """A readings batch checked and placed in its chain, waiting to be stored with its group."""

    topic: str
    batch: ReadingBatch | ReadingColumns
    item: VerifiedItem | None
    ledger: LedgerItem | None
    duplicate: bool  # its seq was stored before (counted only)
    points: list[StoredReading] = field(default_factory=list)
    index_of: dict[int, int] = field(default_factory=dict)  # id(StoredReading) -> index in the batch
    set_aside: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    columns: ReadingColumns | None = None  # the readings as columns, for a store that takes them (then no points)

    def model_batch(self) -> ReadingBatch:
        return self.batch if isinstance(self.batch, ReadingBatch) else self.batch.batch()

    def request(self) -> ColumnsRequest:
        return (self.columns if self.columns is not None else self.points), self.ledger


@dataclass
class _PreparedHealth:
    """A health report checked and placed in its chain, waiting to be stored with its group."""

    topic: str
    payload: bytes
    report: StationHealth | HealthFields  # HealthFields only for a store that takes them
    item: VerifiedItem | None
    ledger: LedgerItem | None


@dataclass
class _PreparedFlux:
    """A flux record checked and placed in its chain, waiting to be stored with its group."""

    topic: str
    payload: bytes
    record: FluxRecord
    item: VerifiedItem | None
    ledger: LedgerItem | None


@dataclass
class _GroupWritten:
    outcomes: list[WriteOutcome]  # one per readings batch of the group
    health_rejected: dict[int, str]  # index in the group's health reports -> why the store refused it
    flux_rejected: dict[int, str] = field(default_factory=dict)  # the same for its flux records


@dataclass
class _Group:
    """Deliveries handled together: the chain events of their items, the health reports, the readings and the ledger
    items of their batches go to the store in one step (`Ingestor._write_group`: a few requests, not a few per
    message)."""

    deliveries: list[_Delivery] = field(default_factory=list)
    prepared: list[_PreparedBatch] = field(default_factory=list)
    health: list[_PreparedHealth] = field(default_factory=list)
    fluxes: list[_PreparedFlux] = field(default_factory=list)
    events: list[ChainEvent] = field(default_factory=list)  # of the items placed for this group
    chains: dict[ChainKey, str] = field(default_factory=dict)  # chain -> digest of the group's last item in it
    # the readings marks of its stations met the first time, learned while the group before was written
    # (`TakesColumns.marks_ahead`)
    marks_ahead: MarksAhead | None = None
    writing: Future[_GroupWritten] | None = None

    def has_writes(self) -> bool:
        return bool(self.prepared or self.health or self.fluxes or self.events)


class _NotVerified:
    """`_verify_group`'s answer for a message it leaves to `_prepare` (a status, a topic that is not ours)."""


_NOT_VERIFIED = _NotVerified()


class _FlushFirst:
    """`_prepare`'s answer for a batch to be placed only after the group so far is stored."""


_FLUSH_FIRST = _FlushFirst()
_R = TypeVar("_R")


class Ingestor:
    """Subscribe to all stations' readings and status, store readings, keep a station status registry.

    `start()` returns at once; the broker connection is established (and re-established) in the background.
    Use `counters()`, `mqtt_connected`, `storage_available` and `station_statuses()` for health reporting.
    """

    def __init__(
        self,
        mqtt_settings: MqttSettings,
        store: Store,
        data_dir: Path | str,
        *,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 30.0,
        reconnect_max_s: int = 30,
        duplicate_memory: int = 1024,
        dead_letter: DeadLetterSettings | None = None,
        signatures: Literal["required", "optional"] = "optional",
        replay_after_s: float = 3600.0,
        command_results: Callable[[CommandResult], bool] | None = None,
        max_group: int = 100,
        max_group_bytes: int = 1024 * 1024,
        role: Literal["all", "data", "status"] = "all",
        shared_group: str | None = None,
        dead_letter_file: str = DEAD_LETTER_FILE,
    ) -> None:
        """`role`: what to subscribe to — everything (the one ingestor of `sinkwatch central serve`), the stations'
        data channels (an ingest worker; with `shared_group` a member of that MQTT v5 shared subscription) or the
        retained status only (`serve --workers N`, beside the workers). See `subscriptions` and `start`."""
        if shared_group is not None and role != "data":
            raise ValueError("a shared subscription is for the data channels only (role='data')")
        self.role = role
        self.shared_group = shared_group
        self.settings = mqtt_settings
        # where command results go (CommandService.record: the ledger the API reads); without one, a ledger of
        # our own in data_dir, so a result is never lost
        self._command_results = command_results
        self.store = store
        # a store that writes a batch's readings as columns (gateway/central/store/columns.py): then a batch that
        # passes the column checks (gateway/central/batchjson.py) never becomes a model per reading
        self._columns_store = cast(TakesColumns, store) if getattr(store, "takes_columns", False) else None
        # likewise a store that writes a health report's fields (gateway/central/healthjson.py): no model of it
        self._health_fields_store = (cast(TakesHealthFields, store) if getattr(store, "takes_health_fields", False)
                                     else None)
        self.data_dir = Path(data_dir)
        self.dead_letter_path = self.data_dir / dead_letter_file
        limits = dead_letter or DeadLetterSettings()
        self.dead_letters = DeadLetterFile(self.dead_letter_path, max_file_bytes=limits.max_file_bytes,
                                           keep_files=limits.keep_files, max_payload_bytes=limits.max_payload_bytes)
        self.raw_archive = RawArchive(self.data_dir / RAW_DIR)
        # station keys under <data_dir>/trust; signatures "required" is the central config's default, "optional"
        # (stores unsigned items, still rejects bad signatures) the library's, for tools and older tests
        self.keys = KeyRegistry(self.data_dir)
        self.verifier = Verifier(self.keys, required=signatures == "required")
        # a member of a shared subscription is one of several workers placing items of one chain
        self.chain = ChainTracker(store, replay_after_s=replay_after_s, shared=shared_group is not None)
        self._stations = StationRegistry(self.data_dir)  # revoked stations (gateway/central/provision.py)
        self._stations_fresh = False  # `_stations` refreshed for the group being checked (`_verify_group`)
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._duplicate_memory = duplicate_memory
        # a group is bounded by what has arrived (never waited for), by count and by payload bytes; the broker's
        # in-flight window (max_inflight_messages) bounds it too, since nothing of a group is acked before its end
        self._max_group = max_group
        self._max_group_bytes = max_group_bytes
        # writes a group's readings while the worker checks the next group (replaced at each start)
        self._store_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sinkwatch-store")
        self._counters = IngestCounters()
        self._counter_lock = threading.Lock()
        self._queue: queue.Queue[_Delivery] = queue.Queue()
        self._stop = threading.Event()
        self._generation = 0
        self._connected = False
        self._unreachable_said = False  # the broker's absence logged for this outage
        self._reconnect_max_s = reconnect_max_s
        self._storage_available = True
        self._recent_seqs: dict[tuple[str, str], OrderedDict[int, None]] = {}
        self._statuses: dict[tuple[str, str], StationStatus] = {}
        self._log_times: dict[tuple[str, ...], tuple[float | None, int]] = {}
        self._status_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._receipts = ReceiptBook()

        # paho's client with a station's PUBLISH properties decoded in C loops (gateway/central/mqttreceive.py)
        self._client = ReceivingClient(
            CallbackAPIVersion.VERSION2,
            client_id=mqtt_settings.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        if mqtt_settings.username is not None:
            self._client.username_pw_set(mqtt_settings.username, reveal(mqtt_settings.password))
        self.tls: HandshakeWatch | None = None
        if mqtt_settings.tls:
            self.tls = HandshakeWatch(log, host=mqtt_settings.host, port=mqtt_settings.port, prefix="mqtt",
                                      ca_file=mqtt_settings.ca_file)
            self._client.tls_set_context(self.tls.attach(mqtt_settings.ssl_context()))
        self._client.reconnect_delay_set(min_delay=1, max_delay=reconnect_max_s)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_message = self._on_message

    # --- lifecycle ---------------------------------------------------------------------------------------------

    @property
    def subscriptions(self) -> list[str]:
        data = [READINGS_SUBSCRIPTION, FLUXES_SUBSCRIPTION, RAW_SUBSCRIPTION, HEALTH_SUBSCRIPTION,
                COMMAND_RESULTS_SUBSCRIPTION]
        if self.role == "status":
            return [STATUS_SUBSCRIPTION]
        if self.role == "data":
            return [shared_subscription(self.shared_group, topic) if self.shared_group else topic for topic in data]
        return [READINGS_SUBSCRIPTION, STATUS_SUBSCRIPTION, *data[1:]]

    @property
    def persistent_session(self) -> bool:
        """The one ingestor keeps a session (the broker queues for it while it is away). A shared worker does not:
        Mosquitto 2.0 keeps handing a share of the stream to a member whose session outlives it (and holds its
        unacknowledged messages for it), so a dead worker would hold a part of every station's items until its
        session expired; with no session its in-flight messages are dropped at once and the stations, without a
        receipt for them, send them again to the live members (docs/scaling.md)."""
        return self.role == "all"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._stop.clear()
        if self.chain.shared and self.chain.marks is None:
            # the chain marks this host's workers share: an item signed after its chain's mark is placed without
            # asking the ledger (gateway/central/chainmarks.py)
            self.chain.marks = ChainMarks(self.data_dir / CHAIN_MARKS_FILE)
        self._store_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sinkwatch-store")
        self._worker = threading.Thread(target=self._work, name="sinkwatch-ingest", daemon=True)
        self._worker.start()
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = SESSION_EXPIRY_S if self.persistent_session else 0
        # unacknowledged messages in flight to us at once: two groups (one written while the next is checked); a
        # broker that keeps to it bounds what a worker killed mid-stream leaves the stations to resend (Mosquitto
        # 2.0.11 does only until the first PUBACK: docs/scaling.md)
        properties.ReceiveMaximum = 2 * self._max_group
        self._client.connect_async(self.settings.host, self.settings.port, keepalive=self.settings.keepalive,
                                   clean_start=not self.persistent_session, properties=properties)
        self._client.loop_start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish the group being written (`_work`), then disconnect and stop: its acks go out before the
        DISCONNECT; unacknowledged messages stay with the broker for the next start."""
        self._stop.set()
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.join(timeout_s)
        self._client.disconnect()
        self._client.loop_stop()
        self._store_thread.shutdown(wait=False, cancel_futures=True)
        self._connected = False
        if self.chain.marks is not None:
            # closed marks answer "no mark" (the ledger is asked), should the worker still be finishing a step
            self.chain.marks.close()
            if worker is None or not worker.is_alive():
                self.chain.marks = None

    def __enter__(self) -> Ingestor:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- state for the API -------------------------------------------------------------------------------------

    @property
    def mqtt_connected(self) -> bool:
        return self._connected

    @property
    def storage_available(self) -> bool:
        return self._storage_available

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def counters(self) -> dict[str, Any]:
        with self._counter_lock:
            snapshot = asdict(self._counters)
        snapshot["dead_letters_dropped"] = self.dead_letters.dropped
        snapshot["mqtt_tls"] = self.tls.snapshot() if self.tls is not None else None
        snapshot["queue_depth"] = self.queue_depth
        return snapshot

    def security_counters(self) -> dict[str, Any]:
        """What the broker link says about security, for /health's `security` section."""
        with self._counter_lock:
            refusals = self._counters.mqtt_connect_refusals
            revoked = dict(self._counters.malformed).get("revoked_station", 0)
        return {"mqtt_tls": self.tls.snapshot() if self.tls is not None else None,
                "mqtt_connect_refusals": refusals, "revoked_station_messages": revoked}

    def station_statuses(self) -> dict[tuple[str, str], StationStatus]:
        with self._status_lock:
            return dict(self._statuses)

    def _count(self, name: str, increment: int = 1) -> None:
        with self._counter_lock:
            setattr(self._counters, name, getattr(self._counters, name) + increment)

    # --- paho callbacks (network thread: keep them short) -------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self._count("mqtt_connect_refusals")
            log.error("MQTT broker %s:%s refused the connection: %s (check mqtt.username and mqtt.password_file, "
                      "or mqtt.cert_file)", self.settings.host, self.settings.port, reason_code)
            return
        if self.tls is not None:
            self.tls.succeeded()
        self._generation += 1
        self._count("mqtt_connects")
        client.subscribe([(topic, SubscribeOptions(qos=1)) for topic in self.subscriptions])
        self._unreachable_said = False
        if not self._connected:
            log.info("connected to MQTT broker %s:%s (session present: %s)%s", self.settings.host,
                     self.settings.port, getattr(flags, "session_present", None),
                     f", sharing the stream as a member of {self.shared_group}" if self.shared_group else "")
        self._connected = True

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        if self._connected:
            self._unreachable_said = False  # a new outage: said again when the reconnection fails
            self._count("mqtt_disconnects")
            if not self._stop.is_set():
                log.warning("lost the MQTT broker %s:%s (%s); reconnecting with backoff", self.settings.host,
                            self.settings.port, reason_code)
        self._connected = False

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho retries by itself with backoff; said once per outage (at start, or after the connection was lost),
        # counted every time: with a wrong mqtt.host or a broker that is down the service said nothing at all
        self._count("mqtt_connect_failures")
        if self._unreachable_said:
            log.debug("MQTT connection to %s:%s failed; retrying", self.settings.host, self.settings.port)
            return
        self._unreachable_said = True
        log.warning("cannot reach the MQTT broker at %s:%s (connection refused, no route, a name that does not "
                    "resolve, or a failed TLS handshake); retrying with backoff up to %.0f s, nothing is lost "
                    "meanwhile (the stations keep their data). Check mqtt.host and mqtt.port in the config, that "
                    "the broker runs and that a firewall lets this host in", self.settings.host, self.settings.port,
                    self._reconnect_max_s)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._count("messages_received")
        self._queue.put(_Delivery(self._generation, message.topic, bytes(message.payload), message.mid,
                                  message.qos, _envelope_of(message)))

    # --- worker ------------------------------------------------------------------------------------------------

    def _work(self) -> None:
        # Two stages: while the store thread writes one group's readings, this thread checks the next group
        # (the write is mostly waiting for the database, which needs no interpreter lock).
        writing: _Group | None = None
        while not self._stop.is_set():
            try:
                first = (self._queue.get(timeout=self._receipts.max_delay_s) if writing is None
                         else self._queue.get_nowait())
            except queue.Empty:
                if writing is not None:
                    if not self._complete(writing):
                        return
                    writing = None
                else:
                    self._send_receipts()
                continue
            # whatever else has arrived meanwhile goes with it: one store request for the readings of all of them
            deliveries, size = [first], len(first.payload)
            while len(deliveries) < self._max_group and size < self._max_group_bytes:
                try:
                    delivery = self._queue.get_nowait()
                except queue.Empty:
                    break
                deliveries.append(delivery)
                size += len(delivery.payload)
            done, writing = self._advance(deliveries, writing)
            if not done:
                return
            if self._receipts.due(self._queue.empty()):
                self._send_receipts()
        # stopping: the group whose write is under way is finished (acked, its receipts sent), so a clean stop leaves
        # the broker nothing the store already took; what the queue still holds stays unacknowledged, to come again
        if writing is not None and self._complete(writing):
            self._send_receipts()

    def _process(self, deliveries: list[_Delivery]) -> bool:
        """Handle deliveries as one group, synchronously: True when all are done (stored or dead-lettered) and
        acked, False when stopping mid-outage (then nothing of the group is acked: the broker redelivers it)."""
        done, group = self._advance(deliveries, None)
        return done and (group is None or self._complete(group))

    def _advance(self, deliveries: list[_Delivery], writing: _Group | None) -> tuple[bool, _Group | None]:
        """Check `deliveries` in order while `writing` is being written, complete `writing`, then start writing what
        `deliveries` hold as one group and return it. (False, None) when stopping mid-outage."""
        verified, ahead = self._verify_group(deliveries)
        group = _Group(marks_ahead=ahead)
        for delivery, checked in zip(deliveries, verified, strict=True):
            while True:
                done, batch = self._retrying(delivery.topic, partial(
                    self._prepare, delivery.topic, delivery.payload, delivery.envelope, group, checked))
                if not done:
                    return False, None
                if batch is not _FLUSH_FIRST:
                    break
                # a signed item that does not follow the group's last one of its chain is placed only after
                # everything before it is stored, as if it had come alone (gateway/central/chain.py); the ledger
                # windows looked up for the group predate what is stored now
                self.chain.forget_prefetched()
                if writing is not None and not self._complete(writing):
                    return False, None
                writing = None
                self._start_writing(group)
                if not self._complete(group):
                    return False, None
                group = _Group(marks_ahead=ahead)
            group.deliveries.append(delivery)
            if isinstance(batch, _PreparedBatch):
                group.prepared.append(batch)
            elif isinstance(batch, _PreparedHealth):
                group.health.append(batch)
            elif isinstance(batch, _PreparedFlux):
                group.fluxes.append(batch)
        self.chain.forget_prefetched()  # what was not used (an item dead-lettered before it was placed) is stale now
        if writing is not None and not self._complete(writing):
            return False, None
        self._start_writing(group)
        return True, group

    def _verify_group(self, deliveries: list[_Delivery]
                      ) -> tuple[list[VerifiedItem | Untrusted | _NotVerified | None], MarksAhead | None]:
        """Each delivery's signature checked (the verified item, None when unsigned, or why it is untrusted), the
        ledger windows of the group's signed items looked up in one request (`ChainTracker.prefetch`), and the
        readings marks of the stations of its readings batches that the write guard does not know yet (a store that
        takes columns: `marks_ahead`), so that the store thread need not ask for them when it writes the group."""
        checked: list[VerifiedItem | Untrusted | _NotVerified | None] = []
        readings: set[tuple[str, str]] = set()
        # the provisioning file (revoked stations) and the key registry looked at once for the group, not once a
        # message (a file stat each): a provisioning or revocation takes effect with the next group; a file that
        # cannot be read is met by each message as before
        try:
            self._stations.refresh()
            self._stations_fresh = True
        except ProvisioningError:
            self._stations_fresh = False
        try:
            self.verifier.registry.refresh()
            recheck = False
        except RegistryError:
            recheck = True
        for delivery in deliveries:
            try:
                site, station, kind = parse_topic(delivery.topic)
            except ValueError:
                checked.append(_NOT_VERIFIED)  # _prepare dead-letters it
                continue
            if kind == "status":
                checked.append(_NOT_VERIFIED)
                continue
            if kind == "readings":
                readings.add((site, station))
            try:
                checked.append(self.verifier.verify(site, station, kind, delivery.topic, delivery.payload,
                                                    delivery.envelope, time.time_ns(), recheck_registry=recheck))
            except Untrusted as exc:
                checked.append(exc)
        try:
            self.chain.prefetch([item for item in checked if isinstance(item, VerifiedItem)])
        except (StoreUnavailable, StoreError) as exc:
            # only a saving: each item is then looked up when it is placed (and an outage waited out there)
            self.chain.forget_prefetched()
            log.debug("ledger look-up for a group failed (%s); placing its items one by one", exc)
        ahead = None
        if readings and self._columns_store is not None:
            try:
                ahead = self._columns_store.marks_ahead(readings)
            except (StoreUnavailable, StoreError) as exc:
                # only a saving: the store thread asks for them when it writes (and waits out an outage there)
                log.debug("readings marks of a group's stations not learned ahead (%s)", exc)
        return checked, ahead

    def _start_writing(self, group: _Group) -> None:
        if group.has_writes():
            group.writing = self._store_thread.submit(self._write_group, group)

    def _write_group(self, group: _Group) -> _GroupWritten:
        """Store what a group holds: its chain events, its health reports, its flux records, then its readings with
        the ledger items of its batches, reports and records (each ledger item after the data it carried).
        StoreUnavailable: repeat it (every write is idempotent). A health report or flux record the store refuses
        is isolated and left out, with its ledger item."""
        if group.events:
            self.store.write_chain_events(group.events)
        rejected = self._write_health([h.report for h in group.health]) if group.health else {}
        flux_rejected = (_write_isolating(self.store.write_fluxes, [f.record for f in group.fluxes])
                         if group.fluxes else {})
        requests = [p.request() for p in group.prepared]
        requests += [([], h.ledger) for index, h in enumerate(group.health)
                     if h.ledger is not None and index not in rejected]
        requests += [([], f.ledger) for index, f in enumerate(group.fluxes)
                     if f.ledger is not None and index not in flux_rejected]
        if not requests:
            outcomes = []
        elif self._columns_store is not None:
            outcomes = self._columns_store.write_many(requests, ahead=group.marks_ahead)
        else:  # no columns were made (`_readings_columns`)
            outcomes = self.store.write_many(cast(list[WriteRequest], requests))
        return _GroupWritten(outcomes[:len(group.prepared)], rejected, flux_rejected)

    def _write_health(self, reports: list[StationHealth | HealthFields]) -> dict[int, str]:
        if self._health_fields_store is not None:
            return _write_isolating(self._health_fields_store.write_health_fields, reports)
        # only a store that takes HealthFields is given any (`_prepare_health`)
        return _write_isolating(self.store.write_health, cast(list[StationHealth], reports))

    def _complete(self, group: _Group) -> bool:
        """Wait for the group's write (repeated through a storage outage), finish its items (set-asides, chain,
        receipts, counters) and ack all its deliveries in the order they arrived, as MQTT asks of PUBACKs."""
        if group.has_writes():
            assert group.writing is not None
            first_try: Future[_GroupWritten] | None = group.writing

            def write() -> _GroupWritten:
                nonlocal first_try
                if first_try is not None:
                    attempt, first_try = first_try, None
                    return attempt.result()  # its exception, if any, counts as this step's first failure
                return self._write_group(group)

            done, written = self._retrying("readings", write)
            if not done or written is None:
                return False
            if not self._retrying("readings", partial(self._finish_group, group, written))[0]:
                return False
        for delivery in group.deliveries:
            self._ack(delivery)
        return True

    def _send_receipts(self) -> None:
        """Publish what the store confirmed since the last receipts (worker thread; paho's publish only queues)."""
        if not len(self._receipts):
            return
        receipts = self._receipts.take()
        if not self._connected:
            self._count("receipts_unsent", len(receipts))
            return
        for receipt in receipts:
            self._client.publish(receipts_topic(receipt.site, receipt.station), receipt.model_dump_json(), qos=1)
        with self._counter_lock:
            self._counters.receipts_sent += len(receipts)
            self._counters.receipt_seqs += sum(last - first + 1 for r in receipts
                                               for first, last in (*r.stored, *r.dead_lettered))

    def _note_stored(self, site: str, station: str, channel: Channel, seq: int | None) -> None:
        if seq is not None:
            self._receipts.add(site, station, channel, seq)

    def _ack(self, delivery: _Delivery) -> None:
        # After a reconnect the broker redelivers this message under the new connection; acking the old mid
        # there could acknowledge a different message, so leave it to the redelivered copy.
        if delivery.generation == self._generation and self._connected:
            self._client.ack(delivery.mid, delivery.qos)

    def handle_group(self, messages: Sequence[tuple[str, bytes, str | None]]) -> bool:
        """Process (topic, payload, envelope) messages as the worker processes what arrived together: in order, the
        readings of all of them in one store request, storage outages waited out. True when all are done."""
        return self._process([_Delivery(self._generation, topic, payload, 0, 1, envelope)
                              for topic, payload, envelope in messages])

    def handle_with_retry(self, topic: str, payload: bytes, envelope: str | None = None) -> bool:
        """Process one message; True when done (stored or dead-lettered), False when stopping mid-outage."""
        return self._retrying(topic, lambda: self.handle(topic, payload, envelope))[0]

    def _retrying(self, topic: str, step: Callable[[], _R]) -> tuple[bool, _R | None]:
        """Run `step` until it returns, waiting out storage outages with capped backoff: (True, its result), or
        (False, None) when stopping mid-outage."""
        delay = self._retry_initial_s
        outage_started: float | None = None
        while True:
            try:
                try:
                    result = step()
                except StoreUnavailable:
                    raise
                except Exception as exc:
                    # A bug or an answer the store code did not foresee: never let it end the worker (nothing
                    # would be stored again) nor ack the message; log it with its traceback and retry like an outage.
                    self._count("internal_errors")
                    log.exception("storing a message on %s failed unexpectedly; will retry", topic)
                    raise StoreUnavailable(f"unexpected {type(exc).__name__}: {exc}") from exc
            except StoreUnavailable as exc:
                if self._storage_available:
                    self._storage_available = False
                    self._count("storage_outages")
                    log.warning("storage unavailable: %s; will retry with backoff up to %.0f s", exc,
                                self._retry_max_s)
                if outage_started is None:
                    outage_started = time.monotonic()
                self._count("storage_retries")
                if self._stop.wait(delay):
                    return False, None
                delay = min(delay * 2, self._retry_max_s)
                continue
            if not self._storage_available:
                self._storage_available = True
                down_for = time.monotonic() - outage_started if outage_started is not None else 0.0
                log.warning("storage back after %.1f s", down_for)
            return True, result

    def handle(self, topic: str, payload: bytes, envelope: str | None = None) -> None:
        """Process one message synchronously: verify its signature (`envelope`, the `sinkwatch-sig` user property),
        store it, update status, or dead-letter it.

        Raises StoreUnavailable when the store is down (the caller retries); everything else is final."""
        group = _Group()
        prepared = self._prepare(topic, payload, envelope, group)
        if isinstance(prepared, _PreparedBatch):
            group.prepared.append(prepared)
        elif isinstance(prepared, _PreparedHealth):
            group.health.append(prepared)
        elif isinstance(prepared, _PreparedFlux):
            group.fluxes.append(prepared)
        if group.has_writes():
            self._finish_group(group, self._write_group(group))

    def _prepare(self, topic: str, payload: bytes, envelope: str | None, group: _Group,
                 checked: VerifiedItem | Untrusted | _NotVerified | None = _NOT_VERIFIED,
                 ) -> _PreparedBatch | _PreparedHealth | _PreparedFlux | _FlushFirst | None:
        """Everything of `handle` but storing a readings batch, health report or flux record: that is returned, to
        be stored with `group` (`_write_group`), whose chain events it adds to. `checked`: the message's signature
        as `_verify_group` found it (else it is checked here)."""
        try:
            try:
                site, station, kind = parse_topic(topic)
            except ValueError as exc:
                raise Malformed("bad_topic", str(exc)) from None
            # a group's items: the provisioning file as `_verify_group` saw it
            recheck = isinstance(checked, _NotVerified) or not self._stations_fresh
            if self._stations.is_revoked(site, station, recheck_file=recheck):
                # the broker should have refused it; this catches a broker not reloaded yet, or messages it queued
                raise Malformed("revoked_station", f"station {site}/{station} was revoked (sinkwatch station "
                                "revoke); nothing from it is stored")
            item = None
            if kind != "status":
                if isinstance(checked, Untrusted):
                    raise checked
                item = (checked if not isinstance(checked, _NotVerified)
                        else self.verifier.verify(site, station, kind, topic, payload, envelope, time.time_ns()))
                self._count("signed_items" if item is not None else "unsigned_items")
            if kind == "readings":
                return self._prepare_readings(site, station, payload, item, group)
            if kind == "health":
                return self._prepare_health(site, station, payload, item, group)
            if kind == "fluxes":
                return self._prepare_fluxes(site, station, payload, item, group)
            if kind == "status":
                self._handle_status(site, station, payload)
            elif kind == "raw":
                self._handle_raw(site, station, payload, item)
            elif kind == "command_results":
                self._handle_command_result(site, station, payload, item)
            else:
                raise Malformed("bad_topic", f"unexpected message kind {kind!r}")
        except Untrusted as exc:
            self._untrusted(topic, payload, exc)
        except Malformed as exc:
            self._dead_letter(topic, payload, exc.reason, exc.problem)
            self._note_dead_lettered(topic, payload)
        return None

    def _untrusted(self, topic: str, payload: bytes, exc: Untrusted) -> None:
        """Dead-letter an item that is not provably its station's, count it and raise the alarm; no receipt."""
        record = {"received": format_time(utc_now()), "topic": topic, "reason": f"untrusted:{exc.reason}",
                  "problem": exc.problem, **payload_fields(payload, self.dead_letters.max_payload_bytes)}
        self._append_dead_letters([record])
        with self._counter_lock:
            self._counters.untrusted[exc.reason] = self._counters.untrusted.get(exc.reason, 0) + 1
            self._counters.dead_lettered += 1
        self._log_limited(logging.ERROR, (topic, "untrusted", exc.reason),
                          f"ALARM untrusted item on {topic} ({exc.reason}): {exc.problem}; not stored, no receipt, "
                          f"kept in {self.dead_letter_path}")

    def _place(self, item: VerifiedItem | None, group: _Group | None = None) -> bool:
        """Whether the item's ledger entry is to be written (new in its chain); records its chain events (now, or
        with `group`)."""
        if item is None:
            return False
        placement = self.chain.place(item)
        if placement.events:
            if group is not None:
                group.events.extend(placement.events)
            else:
                self.store.write_chain_events(placement.events)
            with self._counter_lock:
                for event in placement.events:
                    self._counters.chain_events[event.kind] = self._counters.chain_events.get(event.kind, 0) + 1
            for event in placement.events:
                if event.kind in ("fork", "replay"):
                    self._log_limited(logging.WARNING, (item.site, item.station, item.channel, event.kind),
                                      f"chain of {item.site}/{item.station} {item.channel}: {event.kind}: "
                                      f"{event.detail}")
        return placement.new

    @staticmethod
    def _check_seq(item: VerifiedItem | None, seq: int | None) -> None:
        if item is not None and item.signed.envelope.link.seq != seq:
            raise Malformed("seq_mismatch", f"the signature names seq {item.signed.envelope.link.seq}, the "
                            f"payload seq {seq}")

    def _note_dead_lettered(self, topic: str, payload: bytes) -> None:
        """Name a dead-lettered item in the next receipt when its seq can be read, so its station forgets it."""
        try:
            site, station, kind = parse_topic(topic)
            seq = json.loads(payload).get("seq")
        except (ValueError, AttributeError, RecursionError):  # not a topic of ours, not a JSON object (or nested
            # deeper than the JSON parser recurses): no seq to name
            return
        if kind in CHANNELS and isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0:
            self._receipts.add(site, station, kind, seq, dead_lettered=True)

    @staticmethod
    def _follows_group(item: VerifiedItem | None, group: _Group) -> bool:
        """False for a signed item that does not follow the group's last item of its chain (place it after the
        group is stored)."""
        if item is None:
            return True
        last = group.chains.get((item.site, item.station, item.channel))
        return last is None or item.signed.envelope.link.prev_digest == last

    def _placed_in_group(self, item: VerifiedItem, group: _Group) -> None:
        # the group's next item of this chain follows this one (it is stored with it, or the group is not)
        self.chain.stored(item)
        group.chains[(item.site, item.station, item.channel)] = item.digest

    def _readings_columns(self, site: str, station: str, payload: bytes) -> ReadingColumns | None:
        """The batch as columns when the store takes them, the column checks pass, it is its topic's and every
        reading's time is plausible; else None (the model's way: `parse_batch`, a loop for what is set aside)."""
        if self._columns_store is None:
            return None
        columns = reading_columns(payload)
        if (columns is None or (columns.site, columns.station) != (site, station)
                or set(columns.stations) != {station} or columns.first_ns < _PLAUSIBLE_FROM_NS
                or columns.last_ns > to_ns(utc_now() + PLAUSIBLE_AHEAD) or not _values_plausible(columns.values)):
            return None
        return columns

    def _prepare_columns(self, columns: ReadingColumns, payload: bytes, item: VerifiedItem | None,
                         group: _Group) -> _PreparedBatch | _FlushFirst:
        """`_prepare_readings` of a batch that passed the column checks, its times all plausible."""
        self._check_seq(item, columns.seq)
        if not self._follows_group(item, group):
            return _FLUSH_FIRST
        ledger = None
        if item is not None and self._place(item, group):
            ledger = item.ledger(payload, data_start=columns.first_ns, data_end=columns.last_ns)
            self._placed_in_group(item, group)
        duplicate = self._seen(columns)
        self._remember(columns)
        return _PreparedBatch(topic=readings_topic(columns.site, columns.station), batch=columns, item=item,
                              ledger=ledger, duplicate=duplicate, columns=columns)

    def _prepare_readings(self, site: str, station: str, payload: bytes, item: VerifiedItem | None,
                          group: _Group) -> _PreparedBatch | _FlushFirst:
        columns = self._readings_columns(site, station, payload)
        if columns is not None:
            return self._prepare_columns(columns, payload, item, group)
        batch = parse_batch(site, station, payload)
        self._check_seq(item, batch.seq)
        if not self._follows_group(item, group):
            return _FLUSH_FIRST
        new_item = self._place(item, group)
        # every reading of every batch passes here: bulk steps (C loops) where the batch allows, a loop only for a
        # batch with a reading to set aside
        times = list(map(_TIME_OF, batch.readings))
        first, last = min(times), max(times)
        ledger = None
        if item is not None and new_item:
            data_start: int | None
            data_end: int | None
            if storable_time(first) and storable_time(last):
                data_start, data_end = to_ns(first), to_ns(last)
            else:
                storable = [to_ns(t) for t in times if storable_time(t)]
                data_start, data_end = min(storable, default=None), max(storable, default=None)
            ledger = item.ledger(payload, data_start=data_start, data_end=data_end)
            self._placed_in_group(item, group)
        duplicate = self._seen(batch)
        self._remember(batch)
        now = utc_now()
        latest = now + PLAUSIBLE_AHEAD
        prepared = _PreparedBatch(topic=readings_topic(site, station), batch=batch, item=item, ledger=ledger,
                                  duplicate=duplicate)
        if first >= PLAUSIBLE_FROM and last <= latest and _values_plausible(map(_VALUE_OF, batch.readings)):
            # what implausible_time and implausible_value say of each, without a call each
            prepared.points = list(map(_new_stored_reading, zip(repeat(batch.site), batch.readings)))
            prepared.index_of = dict(zip(map(id, prepared.points), range(len(prepared.points)), strict=True))
            return prepared
        points, index_of = prepared.points, prepared.index_of
        for index, reading in enumerate(batch.readings):
            problem = implausible_time(reading.time, now)
            if problem is not None:
                prepared.set_aside.setdefault("implausible_time", []).append(
                    {"index": index, "problem": problem, "reading": _reading_json(reading)})
                continue
            problem = implausible_value(reading.value)
            if problem is not None:
                prepared.set_aside.setdefault("implausible_value", []).append(
                    {"index": index, "problem": problem, "reading": _reading_json(reading)})
                continue
            point = StoredReading(batch.site, reading)
            index_of[id(point)] = index
            points.append(point)
        return prepared

    def _finish_group(self, group: _Group, written: _GroupWritten) -> None:
        """After the store took a group: its health reports confirmed (or dead-lettered when refused), then its
        readings batches (`_finish_readings`). Raises StoreUnavailable when a dead letter cannot be written."""
        for index, health in enumerate(group.health):
            problem = written.health_rejected.get(index)
            if problem is not None:
                self._dead_letter(health.topic, health.payload, "rejected_by_store", problem)
                self._note_dead_lettered(health.topic, health.payload)
                continue
            if health.item is not None:
                self.chain.stored(health.item)
            self._note_stored(health.report.site, health.report.station, "health", health.report.seq)
            self._count("health_reports_stored")
        for index, flux in enumerate(group.fluxes):
            problem = written.flux_rejected.get(index)
            if problem is not None:
                self._dead_letter(flux.topic, flux.payload, "rejected_by_store", problem)
                self._note_dead_lettered(flux.topic, flux.payload)
                continue
            if flux.item is not None:
                self.chain.stored(flux.item)
            self._note_stored(flux.record.site, flux.record.station, "fluxes", flux.record.seq)
            self._count("flux_records_stored")
        if group.prepared:
            self._finish_readings(group.prepared, written.outcomes)

    def _finish_readings(self, group: list[_PreparedBatch], outcomes: list[WriteOutcome]) -> None:
        """After the store took a group's readings: set aside what it did not store (dead letters, one fsync),
        confirm every batch in the next receipt, count. Raises StoreUnavailable when the dead letters cannot be
        written (then the write is repeated: a duplicate the second time)."""
        records: list[dict[str, Any]] = []
        noted: list[tuple[_PreparedBatch, dict[str, list[dict[str, Any]]]]] = []
        for prepared, outcome in zip(group, outcomes, strict=True):
            set_aside = {reason: list(entries) for reason, entries in prepared.set_aside.items()}
            if prepared.columns is not None and (outcome.conflicts or outcome.rejected):
                # the readings the store made of the columns to name what it refused (`ReadingColumns.points`)
                prepared.index_of = {id(point): index for index, point in enumerate(prepared.columns.points())}
            for conflict in outcome.conflicts:
                set_aside.setdefault("conflict", []).append({
                    "index": prepared.index_of.get(id(conflict.incoming)),
                    "problem": "the store holds another reading with this identity (site, station, sensor, "
                               "variable, time); the stored one is kept",
                    "reading": _reading_json(conflict.incoming.reading),
                    "stored": _reading_json(conflict.stored.reading),
                })
            for refused in outcome.rejected:
                set_aside.setdefault("rejected_by_store", []).append({
                    "index": prepared.index_of.get(id(refused.reading)), "problem": refused.reason,
                    "reading": _reading_json(refused.reading.reading),
                })
            if set_aside:
                records.extend(self._set_aside_records(prepared.topic, prepared.model_batch(), set_aside))
                noted.append((prepared, set_aside))
        if records:
            self._append_dead_letters(records)  # one fsync for the group
            self._count_set_aside(records)
        for prepared, set_aside in noted:
            if prepared.ledger is not None:
                indices = {int(e["index"]): reason for reason, entries in set_aside.items() for e in entries
                           if e.get("index") is not None}
                self.store.note_set_aside(prepared.ledger, set_aside_json(indices))
        for prepared, outcome in zip(group, outcomes, strict=True):
            if prepared.item is not None:
                self.chain.stored(prepared.item)
            self._note_stored(prepared.batch.site, prepared.batch.station, "readings", prepared.batch.seq)
            with self._counter_lock:
                self._counters.batches_stored += 1
                self._counters.readings_stored += outcome.written
                self._counters.duplicate_readings += outcome.duplicates
                if prepared.duplicate:
                    self._counters.duplicate_batches += 1

    @staticmethod
    def _set_aside_records(topic: str, batch: ReadingBatch,
                           by_reason: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """The dead letters of the readings of `batch` that were not stored, one record per reason, with the batch."""
        context = {"site": batch.site, "station": batch.station, "seq": batch.seq, "sent": format_time(batch.sent),
                   "readings": len(batch.readings)}
        received = format_time(utc_now())
        return [
            {"received": received, "topic": topic, "reason": reason,
             "problem": f"{len(entries)} of {len(batch.readings)} readings of batch {batch.seq} not stored: "
                        f"{entries[0]['problem']}" + (" (and others)" if len(entries) > 1 else ""),
             "batch": context, "set_aside": entries}
            for reason, entries in sorted(by_reason.items())
        ]

    def _count_set_aside(self, records: list[dict[str, Any]]) -> None:
        with self._counter_lock:
            for record in records:
                reason = str(record["reason"])
                self._counters.readings_set_aside[reason] = (
                    self._counters.readings_set_aside.get(reason, 0) + len(record["set_aside"]))
            self._counters.dead_lettered += len(records)
        for record in records:
            batch = record["batch"]
            self._log_limited(logging.WARNING, (batch["site"], batch["station"], str(record["reason"])),
                              f"station {batch['site']}/{batch['station']}: {record['problem']}; kept in "
                              f"{self.dead_letter_path}")

    def _prepare_fluxes(self, site: str, station: str, payload: bytes, item: VerifiedItem | None,
                        group: _Group) -> _PreparedFlux | _FlushFirst:
        record = parse_flux_record(site, station, payload)
        self._check_seq(item, record.seq)
        problem = implausible_time(record.end, utc_now())
        if problem is not None:
            raise Malformed("implausible_time", f"flux period end: {problem}")
        for name, value in record.values.items():
            problem = implausible_value(value)
            if problem is not None:
                raise Malformed("implausible_value", f"flux period ending {format_time(record.end)}, {name}: {problem}")
        if not self._follows_group(item, group):
            return _FLUSH_FIRST
        ledger = None
        if item is not None and self._place(item, group):
            end = to_ns(record.end)
            ledger = item.ledger(payload, data_start=end, data_end=end)
            self._placed_in_group(item, group)
        return _PreparedFlux(topic=fluxes_topic(site, station), payload=payload, record=record, item=item,
                             ledger=ledger)

    def _prepare_health(self, site: str, station: str, payload: bytes, item: VerifiedItem | None,
                        group: _Group) -> _PreparedHealth | _FlushFirst:
        # a store that writes a report's fields is given them, no model (gateway/central/healthjson.py)
        parse = parse_health if self._health_fields_store is None else parse_health_fields
        report = parse(site, station, payload)
        self._check_seq(item, report.seq)
        problem = implausible_time(report.time, utc_now())
        if problem is not None:
            raise Malformed("implausible_time", f"health report: {problem}")
        # the figures as validated (the schema bounds their depth); the model's report, the slower path, is read
        # again as JSON rather than dumped
        figure = _implausible_figure(report.fields if isinstance(report, HealthFields) else json.loads(payload))
        if figure is not None:
            raise Malformed("implausible_value", f"health report {format_time(report.time)}, {figure}")
        if not self._follows_group(item, group):
            return _FLUSH_FIRST
        ledger = None
        if item is not None and self._place(item, group):
            at = to_ns(report.time)
            ledger = item.ledger(payload, data_start=at, data_end=at)
            self._placed_in_group(item, group)
        return _PreparedHealth(topic=health_topic(site, station), payload=payload, report=report, item=item,
                               ledger=ledger)

    def _handle_command_result(self, site: str, station: str, payload: bytes,
                               item: VerifiedItem | None = None) -> None:
        result = _parse_model(CommandResult, payload)
        if (result.site, result.station) != (site, station):
            raise Malformed("topic_mismatch", f"command result says site {result.site!r} station {result.station!r} "
                            f"but was published for site {site!r} station {station!r}")
        self._check_seq(item, result.seq)
        self._place(item)
        sink = self._command_results
        if sink is None:
            from gateway.central.commands import LEDGER_FILE, CommandLedger

            sink = self._command_results = CommandLedger(self.data_dir / LEDGER_FILE).record
        try:
            sink(result)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"command ledger: {exc}") from exc
        if item is not None:
            self.chain.stored(item)
        self._note_stored(site, station, "command_results", result.seq)
        self._count("command_results_stored")

    def publish_command(self, topic: str, payload: bytes, expiry_s: int, timeout_s: float = 5.0) -> str | None:
        """Publish a command at QoS 1 with a message expiry; None once the broker acknowledged it, else why not
        (called from API threads: paho's publish is thread-safe)."""
        properties = Properties(PacketTypes.PUBLISH)
        properties.MessageExpiryInterval = max(1, expiry_s)
        if not self._connected:
            self._count("commands_unconfirmed")
            return f"not connected to the broker {self.settings.host}:{self.settings.port}; not sent"
        info = self._client.publish(topic, payload, qos=1, properties=properties)
        try:
            info.wait_for_publish(timeout=timeout_s)
        except (RuntimeError, ValueError) as exc:
            self._count("commands_unconfirmed")
            return f"the broker did not take it: {exc}"
        if not info.is_published():
            self._count("commands_unconfirmed")
            return f"the broker did not acknowledge it within {timeout_s:g} s"
        self._count("commands_sent")
        return None

    def _handle_raw(self, site: str, station: str, payload: bytes, item: VerifiedItem | None = None) -> None:
        chunk, data = parse_raw_chunk(site, station, payload)
        self._check_seq(item, chunk.seq)
        if item is not None and item.signed.envelope.content != sha256_hex(data):
            raise Malformed("content_mismatch", f"raw file {chunk.file}: the signature names content "
                            f"{item.signed.envelope.content[:12]}, the file's SHA-256 is {sha256_hex(data)[:12]}")
        new_item = self._place(item)
        try:
            outcome = self.raw_archive.store(site, station, chunk.sensor, chunk.file, data)
        except OSError as exc:
            raise StoreUnavailable(f"raw archive {self.raw_archive.root}: cannot write {chunk.file}: {exc}; "
                                   "will retry") from exc
        if item is not None:
            if new_item:
                self.store.write_ledger([item.ledger(None)])
            self.chain.stored(item)
        self._note_stored(site, station, "raw", chunk.seq)
        with self._counter_lock:
            if outcome == "duplicate":
                self._counters.raw_duplicates += 1
            else:
                self._counters.raw_files_archived += 1
                self._counters.raw_bytes_archived += len(data)
                if outcome == "conflict":
                    self._counters.raw_conflicts += 1
        if outcome == "conflict":
            log.warning("raw file %s/%s/%s arrived again with other content; kept both", station, chunk.sensor,
                        chunk.file)

    def _seen(self, batch: ReadingBatch | ReadingColumns) -> bool:
        return batch.seq in self._recent_seqs.get((batch.site, batch.station), {})

    def _remember(self, batch: ReadingBatch | ReadingColumns) -> None:
        seqs = self._recent_seqs.setdefault((batch.site, batch.station), OrderedDict())
        seqs[batch.seq] = None
        seqs.move_to_end(batch.seq)
        while len(seqs) > self._duplicate_memory:
            seqs.popitem(last=False)

    def _handle_status(self, site: str, station: str, payload: bytes) -> None:
        if not payload:
            # An empty retained message is how a station's status is cleared from the broker.
            with self._status_lock:
                self._statuses.pop((site, station), None)
            return
        status = parse_status(site, station, payload)
        with self._status_lock:
            self._statuses[(site, station)] = status
        self._count("status_updates")

    def _dead_letter(self, topic: str, payload: bytes, reason: str, problem: str) -> None:
        record = {"received": format_time(utc_now()), "topic": topic, "reason": reason, "problem": problem,
                  **payload_fields(payload, self.dead_letters.max_payload_bytes)}
        self._append_dead_letters([record])
        with self._counter_lock:
            self._counters.malformed[reason] = self._counters.malformed.get(reason, 0) + 1
        self._log_limited(logging.ERROR, (topic, reason), f"dropping message on {topic}: {problem} ({reason}); "
                          f"appended to {self.dead_letter_path}")
        self._count("dead_lettered")

    def _log_limited(self, level: int, key: tuple[str, ...], message: str) -> None:
        """Log `message` the first time for `key`, then at most every LOG_REPEAT_S with how many were not logged:
        one station repeating a bad message must not write a line per message (they are all counted anyway)."""
        now = time.monotonic()
        last, suppressed = self._log_times.get(key, (None, 0))
        if last is not None and now - last < LOG_REPEAT_S:
            self._log_times[key] = (last, suppressed + 1)
            return
        self._log_times[key] = (now, 0)
        more = f" ({suppressed} more like it since the last line)" if suppressed else ""
        log.log(level, "%s%s", message, more)

    def _append_dead_letters(self, records: list[dict[str, Any]]) -> None:
        try:
            self.dead_letters.append(records)
        except OSError as exc:
            # Not acked then: the broker keeps the message until its dead letter is on disk, so nothing is ever
            # dropped unrecorded. handle_with_retry retries it like a storage outage (the store's writes are
            # idempotent, so readings already stored are duplicates the second time).
            raise StoreUnavailable(f"cannot append to dead-letter file {self.dead_letter_path}: {exc} "
                                   "(check free disk space and the permissions of data_dir)") from exc


def _envelope_of(message: mqtt.MQTTMessage) -> str | None:
    """The `sinkwatch-sig` MQTT v5 user property of a message, if it has one."""
    properties = getattr(message, "properties", None)
    for name, value in getattr(properties, "UserProperty", None) or ():
        if name == USER_PROPERTY:
            return str(value)
    return None


_TIME_OF = operator.attrgetter("time")
_VALUE_OF = operator.attrgetter("value")
_STATION_OF = operator.attrgetter("station")
#: StoredReading(site, reading) of a (site, reading) pair, without a Python call (map over a batch)
_new_stored_reading = partial(tuple.__new__, StoredReading)


def _reading_json(reading: Reading) -> dict[str, Any]:
    return dict(reading.model_dump(mode="json"))


def _describe_validation(exc: ValidationError) -> str:
    parts = []
    for item in exc.errors()[:3]:
        where = ".".join(str(p) for p in item["loc"]) or "(payload)"
        parts.append(f"{where}: {item['msg']}")
    more = f" (+{exc.error_count() - 3} more)" if exc.error_count() > 3 else ""
    return "; ".join(parts) + more


def parse_batch(site: str, station: str, payload: bytes) -> ReadingBatch:
    """Validate a readings payload against the schema and its topic; raise Malformed with a reason."""
    try:
        batch = validate_batch_json(payload)
    except ValidationError as exc:
        if any(item["type"] == "json_invalid" for item in exc.errors()):
            raise Malformed("not_json", f"payload is not valid JSON: {exc.errors()[0]['msg']}") from None
        raise Malformed("schema", f"not a ReadingBatch: {_describe_validation(exc)}") from None
    if (batch.site, batch.station) != (site, station):
        raise Malformed(
            "topic_mismatch",
            f"batch says site {batch.site!r} station {batch.station!r} but was published for site {site!r} "
            f"station {station!r}",
        )
    strays = sorted(set(map(_STATION_OF, batch.readings)) - {station})
    if strays:
        raise Malformed("topic_mismatch", f"batch for station {station!r} contains readings of {strays}")
    # A reading stamped outside the time range a store can hold (TIME_RANGE_TEXT) is also outside the plausible
    # window, so `implausible_time` sets it aside alone before anything reaches the store: its batch's other
    # readings are stored, like for any other implausible stamp.
    return batch


def parse_status(site: str, station: str, payload: bytes) -> StationStatus:
    try:
        status = StationStatus.model_validate_json(payload)
    except ValidationError as exc:
        if any(item["type"] == "json_invalid" for item in exc.errors()):
            raise Malformed("not_json", f"payload is not valid JSON: {exc.errors()[0]['msg']}") from None
        raise Malformed("schema", f"not a StationStatus: {_describe_validation(exc)}") from None
    if (status.site, status.station) != (site, station):
        raise Malformed(
            "topic_mismatch",
            f"status says site {status.site!r} station {status.station!r} but was published for site {site!r} "
            f"station {station!r}",
        )
    return status


_M = TypeVar("_M", FluxRecord, RawChunk, StationHealth, CommandResult)


def _parse_model(model: type[_M], payload: bytes) -> _M:
    try:
        return model.model_validate_json(payload)
    except ValidationError as exc:
        if any(item["type"] == "json_invalid" for item in exc.errors()):
            raise Malformed("not_json", f"payload is not valid JSON: {exc.errors()[0]['msg']}") from None
        raise Malformed("schema", f"not a {model.__name__}: {_describe_validation(exc)}") from None


def parse_flux_record(site: str, station: str, payload: bytes) -> FluxRecord:
    """Validate a fluxes payload against the schema and its topic; raise Malformed with a reason."""
    record = _parse_model(FluxRecord, payload)
    if (record.site, record.station) != (site, station):
        raise Malformed("topic_mismatch", f"flux record says site {record.site!r} station {record.station!r} but "
                        f"was published for site {site!r} station {station!r}")
    if not (storable_time(record.start) and storable_time(record.end)):
        raise Malformed("schema", f"flux period {format_time(record.start)}..{format_time(record.end)} is outside "
                        f"the time range a store can hold ({TIME_RANGE_TEXT}): check the station's clock")
    return record


def parse_health(site: str, station: str, payload: bytes) -> StationHealth:
    """Validate a health payload against the schema and its topic; raise Malformed with a reason."""
    report = _parse_model(StationHealth, payload)
    if (report.site, report.station) != (site, station):
        raise Malformed("topic_mismatch", f"health report says site {report.site!r} station {report.station!r} but "
                        f"was published for site {site!r} station {station!r}")
    if not storable_time(report.time):
        raise Malformed("schema", f"health report time {format_time(report.time)} is outside the time range a store "
                        f"can hold ({TIME_RANGE_TEXT}): check the station's clock")
    return report


def parse_health_fields(site: str, station: str, payload: bytes) -> HealthFields | StationHealth:
    """`parse_health` without a model where the native checks take the report (gateway/central/healthjson.py): its
    fields; else what `parse_health` answers, the model or Malformed with the model's words."""
    fields = health_fields(payload)
    if fields is not None and (fields.site, fields.station) == (site, station):
        return fields
    return parse_health(site, station, payload)


#: Decompressed bytes examined per step while checking a raw file: the whole stream is inflated to prove it is
#: complete, but only its first line is kept, so a small file that inflates to gigabytes costs time, not memory.
_INFLATE_STEP = 1 << 20


def _first_line_of_gzip(data: bytes) -> bytes:
    """The first line of a whole gzip stream; Malformed("bad_data") if it is not one."""
    decompressor = zlib.decompressobj(wbits=31)
    first = b""
    pending = data
    try:
        while True:
            out = decompressor.decompress(pending, _INFLATE_STEP)
            if b"\n" not in first and len(first) < _INFLATE_STEP:
                first += out[: _INFLATE_STEP]
            pending = decompressor.unconsumed_tail
            if decompressor.eof or (not pending and not out):
                break
    except zlib.error as exc:
        raise Malformed("bad_data", f"data is not a whole gzip stream: {exc}") from None
    if not decompressor.eof:
        raise Malformed("bad_data", "data is a truncated gzip stream")
    return first.split(b"\n", 1)[0]


def _csv_archive_header(data: bytes) -> dict[str, Any]:
    """The header of a format 1 file (a whole gzip stream whose first line is the header)."""
    first = _first_line_of_gzip(data).decode("utf-8", errors="replace")
    if not first.startswith(HEADER_PREFIX):
        raise Malformed("bad_data", f"file has no {FORMAT_NAME} header line")
    try:
        header = json.loads(first[len(HEADER_PREFIX):])
    except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested deeper than the parser's recursion
        raise Malformed("bad_data", f"header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise Malformed("bad_data", f"header is JSON but not an object ({type(header).__name__})")
    return header


def parse_raw_chunk(site: str, station: str, payload: bytes) -> tuple[RawChunk, bytes]:
    """Validate a raw payload and the file it carries; return the envelope and the file's bytes."""
    chunk = _parse_model(RawChunk, payload)
    if (chunk.site, chunk.station) != (site, station):
        raise Malformed("topic_mismatch", f"raw chunk says site {chunk.site!r} station {chunk.station!r} but was "
                        f"published for site {site!r} station {station!r}")
    if not chunk.file.startswith(chunk.sensor + "_"):
        raise Malformed("schema", f"file {chunk.file!r} is not a file of sensor {chunk.sensor!r}")
    try:
        data = raw_file_bytes(chunk)
    except ValueError as exc:
        raise Malformed("bad_data", str(exc)) from None
    if chunk.format == "sinkwatch-raw/2":
        try:
            header = check_archive_bytes(data, chunk.file)
        except ValueError as exc:
            raise Malformed("bad_data", f"not a whole closed archive file: {exc}") from None
    else:
        header = _csv_archive_header(data)
    claimed = {"site": site, "station": station, "sensor": chunk.sensor}
    wrong = {k: header.get(k) for k, v in claimed.items() if k in header and header.get(k) != v}
    if wrong:
        raise Malformed("topic_mismatch", f"file header says {wrong}, the message says {claimed}")
    return chunk, data


_Item = TypeVar("_Item")


def _write_isolating(write: Callable[[list[_Item]], object], items: list[_Item]) -> dict[int, str]:
    """`write(items)` in one request; if the store refuses it, each item alone, so only the refused ones are left
    out: {index: the store's reason} of those."""
    rejected: dict[int, str] = {}
    try:
        write(items)
    except StoreRejected:
        for index, item in enumerate(items):
            try:
                write([item])
            except StoreRejected as exc:
                rejected[index] = str(exc)
    return rejected
