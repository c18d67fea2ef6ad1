"""One test suite for the one delivery path (gateway/edge/delivery.py), run against every channel's outbox: readings
(ReadingBuffer), fluxes (FluxOutbox), raw files (RawOutbox), health reports (HealthOutbox) and command results
(CommandResultsOutbox), through a real Mosquitto.

The central service is played by `ReceiptEcho` (gateway/testing/receipts.py), which answers at the receipts
boundary the way the Ingestor does after a confirmed store write, and can withhold, delay or lose receipts; the
idempotence of the real Ingestor and stores is checked per channel at the end.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, cast

import pytest

from gateway.central.commands import LEDGER_FILE, CommandLedger
from gateway.central.config import MqttSettings
from gateway.central.ingest import Ingestor
from gateway.central.store import SqliteStore
from gateway.contract import Channel, CommandResult, FluxRecord, Receipt, StationHealth, receipts_topic
from gateway.edge.buffer import ReadingBuffer
from gateway.edge.commands import CommandResultsOutbox
from gateway.edge.config import MqttConfig
from gateway.edge.delivery import BEAT_S, Delivery, DeliverySettings, OutboxSource
from gateway.edge.fluxrunner import FluxOutbox
from gateway.edge.outbox import ReadingsOutbox
from gateway.edge.streams.uplink import RawOutbox
from gateway.edge.telemetry import HealthOutbox
from gateway.model import utc_now
from gateway.net import free_port
from gateway.rawarchive import ArchiveWriter
from gateway.testing.factories import make_readings
from gateway.testing.mqtt import wait_for
from gateway.testing.receipts import ReceiptEcho
from gateway.testing.services import mosquitto_server

SITE, STATION = "site-a", "st01"
T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


class Kit(Protocol):
    """One channel's outbox as the suite drives it."""

    channel: Channel
    source: OutboxSource

    def add(self, n: int) -> None: ...

    def reopen(self) -> OutboxSource: ...

    def close(self) -> None: ...


class ReadingsKit:
    channel: Channel = "readings"
    source: OutboxSource

    def __init__(self, tmp: Path) -> None:
        self.path = tmp / "buffer.sqlite"
        self.added = 0
        self.source = self.reopen()

    def reopen(self) -> ReadingsOutbox:
        self.buffer = ReadingBuffer(self.path)
        self.source = ReadingsOutbox(self.buffer, SITE, STATION, batch_size=1)  # one reading, one item
        return self.source

    def add(self, n: int) -> None:
        self.buffer.append(make_readings(n, start=float(self.added), station=STATION))
        self.added += n

    def close(self) -> None:
        self.buffer.close()


class FluxesKit:
    channel: Channel = "fluxes"
    source: OutboxSource

    def __init__(self, tmp: Path) -> None:
        self.path = tmp / "buffer.sqlite"
        self.added = 0
        self.source = self.reopen()

    def reopen(self) -> FluxOutbox:
        self.outbox = FluxOutbox(self.path, SITE, STATION)
        self.source = self.outbox
        return self.outbox

    def add(self, n: int) -> None:
        for _ in range(n):
            start = T0 + timedelta(minutes=30 * self.added)
            record = FluxRecord(site=SITE, station=STATION, start=start, end=start + timedelta(minutes=30),
                                status="ok", engine_version="sinkwatch-ec 0.1.0", settings_hash="0123456789abcdef",
                                values={"FC": -3.5 + self.added})
            self.outbox.add(record, record.end.timestamp())
            self.added += 1

    def close(self) -> None:
        self.outbox.close()


class RawKit:
    channel: Channel = "raw"
    source: OutboxSource

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.added = 0
        self.source = self.reopen()

    def reopen(self) -> RawOutbox:
        self.outbox = RawOutbox(SITE, STATION, self.tmp / "raw" / "outbox", self.tmp / "buffer.sqlite")
        self.source = self.outbox
        return self.outbox

    def add(self, n: int) -> None:
        for _ in range(n):
            start = int(T0.timestamp()) + 1800 * self.added
            writer = ArchiveWriter(self.tmp / "raw", "csat", start, [("U", "m s-1")],
                                   {"site": SITE, "station": STATION})
            for i in range(20):
                writer.write(start + i / 20, [float(self.added)])
            self.outbox.enqueue(writer.close({"closed": "test"}))
            self.added += 1

    def close(self) -> None:
        self.outbox.close()


class HealthKit:
    channel: Channel = "health"
    source: OutboxSource

    def __init__(self, tmp: Path) -> None:
        self.path = tmp / "buffer.sqlite"
        self.added = 0
        self.source = self.reopen()

    def reopen(self) -> HealthOutbox:
        self.outbox = HealthOutbox(self.path, SITE, STATION)
        self.source = self.outbox
        return self.outbox

    def add(self, n: int) -> None:
        for _ in range(n):
            self.outbox.add(StationHealth(site=SITE, station=STATION, time=T0 + timedelta(minutes=self.added),
                                          interval_s=60.0, daemon_version="0.1.0", uptime_s=60.0 * self.added,
                                          clock_synced=True))
            self.added += 1

    def close(self) -> None:
        self.outbox.close()


class CommandResultsKit:
    channel: Channel = "command_results"
    source: OutboxSource

    def __init__(self, tmp: Path) -> None:
        self.path = tmp / "buffer.sqlite"
        self.added = 0
        self.source = self.reopen()

    def reopen(self) -> CommandResultsOutbox:
        self.outbox = CommandResultsOutbox(self.path, SITE, STATION)
        self.source = self.outbox
        return self.outbox

    def add(self, n: int) -> None:
        for _ in range(n):
            self.outbox.add(CommandResult(site=SITE, station=STATION, command_id=f"cmd{self.added}", kind="check",
                                          status="ok", time=T0 + timedelta(seconds=self.added), message="checked"))
            self.added += 1

    def close(self) -> None:
        self.outbox.close()


KITS: dict[str, type[ReadingsKit] | type[FluxesKit] | type[RawKit] | type[HealthKit] | type[CommandResultsKit]] = {
    "readings": ReadingsKit, "fluxes": FluxesKit, "raw": RawKit, "health": HealthKit,
    "command_results": CommandResultsKit}


@pytest.fixture(params=list(KITS))
def kit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Kit]:
    made: Kit = KITS[request.param](tmp_path)
    yield made
    made.close()


def make_delivery(broker: Any, kit: Kit, **settings: Any) -> Delivery:
    defaults: dict[str, Any] = {"receipt_timeout_s": 30.0, "idle_wait_s": 0.2}
    delivery = Delivery(SITE, STATION, MqttConfig(host=broker.host, port=broker.port, keepalive_s=5),
                        DeliverySettings(**{**defaults, **settings}))
    delivery.add_channel(kit.source)
    return delivery


def channel_health(delivery: Delivery, kit: Kit) -> dict[str, Any]:
    return delivery.health()["channels"][kit.channel]  # type: ignore[index]


# --- the suite --------------------------------------------------------------------------------------------------

#: the table whose rows each channel's `pending()` counts
PENDING_TABLE = {"readings": "readings", "fluxes": "flux_outbox", "raw": "raw_outbox", "health": "health_outbox",
                 "command_results": "command_results"}


def counted(kit: Kit, table: str) -> int:
    """COUNT(*) of a table of the station's buffer file, on a connection of its own."""
    db = sqlite3.connect(kit.path if hasattr(kit, "path") else kit.tmp / "buffer.sqlite")  # type: ignore[attr-defined]
    try:
        return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        db.close()


def assert_counts_match(kit: Kit) -> int:
    pending = kit.source.pending()
    assert pending == counted(kit, PENDING_TABLE[kit.channel])
    if isinstance(kit, ReadingsKit):
        assert kit.buffer.pending_batches() == counted(kit, "batches")
    assert (kit.source.oldest_time() is None) == (pending == 0)  # an empty outbox is not asked for its oldest
    return pending


def test_the_backlog_kept_in_memory_matches_count_after_mixed_operations_and_a_restart(kit: Kit) -> None:
    kit.add(6)
    first = kit.source.claim(3, set())
    assert len(first) == 3
    assert assert_counts_match(kit) == 6
    assert kit.source.confirm([(first[0].seq, first[1].seq)]) == (2, 2)
    kit.add(2)
    # a receipt again for what is gone, and one for a seq never handed out, delete nothing
    assert kit.source.confirm([(first[0].seq, first[0].seq), (10_000, 10_005)]) == (0, 0)
    assert assert_counts_match(kit) == 6
    kit.close()
    kit.reopen()
    assert assert_counts_match(kit) == 6
    everything = kit.source.claim(10, set())
    assert len(everything) == 6
    kit.source.confirm([(everything[0].seq, everything[0].seq), (everything[-1].seq, everything[-1].seq)])
    kit.add(1)
    assert assert_counts_match(kit) == 5
    kit.source.confirm([(item.seq, item.seq) for item in kit.source.claim(10, set())])
    assert assert_counts_match(kit) == 0


def test_the_health_backlog_kept_in_memory_counts_the_reports_dropped_at_its_limit(tmp_path: Path) -> None:
    kit = HealthKit(tmp_path)
    kit.outbox.max_backlog = 4
    kit.add(7)
    assert kit.outbox.dropped == 3
    assert assert_counts_match(kit) == 4
    kit.close()
    kit.reopen()
    kit.outbox.max_backlog = 4
    kit.add(1)
    assert assert_counts_match(kit) == 4
    kit.close()


def test_the_raw_backlog_kept_in_memory_forgets_a_file_that_vanished(tmp_path: Path) -> None:
    kit = RawKit(tmp_path)
    kit.add(3)
    kit.outbox.enqueue(next(kit.outbox.outbox.iterdir()))  # a file enqueued twice is one item
    assert assert_counts_match(kit) == 3
    sorted(kit.outbox.outbox.iterdir())[1].unlink()
    assert len(kit.source.claim(10, set())) == 2
    assert assert_counts_match(kit) == 2
    kit.close()



@pytest.mark.integration
def test_an_item_leaves_its_outbox_only_on_its_receipt(tmp_path: Path, kit: Kit) -> None:
    with mosquitto_server(tmp_path / "broker") as broker:
        echo = ReceiptEcho(broker.host, broker.port, (kit.channel,))
        echo.confirming = False  # the store is away: messages arrive, receipts do not
        kit.add(5)
        delivery = make_delivery(broker, kit)
        delivery.start()
        try:
            assert wait_for(lambda: delivery.counters(kit.channel).accepted == 5, 10)  # every PUBACK is in
            time.sleep(0.5)
            assert kit.source.pending() == 5 and delivery.counters(kit.channel).confirmed == 0
            assert len(echo.seqs(kit.channel)) == 5
            health = channel_health(delivery, kit)
            assert health["awaiting_receipt"] == 5 and health["oldest_pending_age_s"] is not None
            echo.confirm(SITE, STATION, kit.channel, echo.seqs(kit.channel))
            assert delivery.wait_confirmed(10)
            assert delivery.counters(kit.channel).confirmed == 5
            assert channel_health(delivery, kit)["pending"] == 0
        finally:
            delivery.stop()
            echo.close()


@pytest.mark.integration
def test_an_item_without_a_receipt_is_sent_again(tmp_path: Path, kit: Kit) -> None:
    with mosquitto_server(tmp_path / "broker") as broker:
        echo = ReceiptEcho(broker.host, broker.port, (kit.channel,))
        echo.skip_first_copies = True  # the first copy's receipt is lost
        kit.add(4)
        delivery = make_delivery(broker, kit, receipt_timeout_s=0.3)
        delivery.start()
        try:
            assert delivery.wait_confirmed(15), channel_health(delivery, kit)
            assert all(echo.arrivals[(STATION, kit.channel, seq)] >= 2 for seq in echo.seqs(kit.channel))
            assert len(echo.seqs(kit.channel)) == 4
            assert delivery.counters(kit.channel).resends >= 4
        finally:
            delivery.stop()
            echo.close()


@pytest.mark.integration
def test_a_refused_publish_is_kept_counted_and_reported(tmp_path: Path, kit: Kit) -> None:
    base = tmp_path / "broker"
    base.mkdir()
    acl = base / "acl"
    others = [c for c in ("readings", "fluxes", "raw", "status") if c != kit.channel]
    # lines before any `user` apply to anonymous clients: every channel but this one
    acl.write_text("".join(f"topic write sinkwatch/v1/+/+/{c}\n" for c in others)
                   + "topic read sinkwatch/v1/+/+/receipts\n", encoding="utf-8")
    port = free_port()
    config = (f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nacl_file {acl}\n"
              f"log_dest file {base / 'mosquitto.log'}\n")
    with mosquitto_server(base, config=config, port=port) as broker:
        kit.add(3)
        delivery = make_delivery(broker, kit, refusal_retry_s=0.2)
        delivery.start()
        try:
            assert wait_for(lambda: sum(delivery.counters(kit.channel).refusals.values()) >= 6, 10)
            health = channel_health(delivery, kit)
            assert health["refusing"] == "Not authorized"
            assert health["pending"] == 3 and health["confirmed"] == 0 and health["accepted"] == 0
        finally:
            delivery.stop()
    assert kit.source.pending() == 3


@pytest.mark.integration
def test_a_broker_killed_with_messages_in_its_memory_loses_nothing(tmp_path: Path, kit: Kit) -> None:
    # finding 3: a PUBACK is not durability. With persistence off, a kill -9 loses every message the broker queued
    # for the (disconnected) central service, after it had acknowledged them to the station.
    with mosquitto_server(tmp_path / "broker", persistence=False) as broker:
        echo = ReceiptEcho(broker.host, broker.port, (kit.channel,), client_id="central-stand-in")
        echo.disconnect()  # its persistent session stays: the broker queues for it, in memory
        kit.add(6)
        delivery = make_delivery(broker, kit, receipt_timeout_s=1.0)
        delivery.start()
        try:
            assert wait_for(lambda: delivery.counters(kit.channel).accepted == 6, 10)
            broker.kill()
            broker.start()
            echo.connect()  # a new session: what was queued is gone
            time.sleep(0.3)
            assert delivery.wait_confirmed(30), channel_health(delivery, kit)
            assert len(echo.seqs(kit.channel)) == 6  # every item reached the central side after all
            assert delivery.counters(kit.channel).resends >= 6
        finally:
            delivery.stop()
            echo.close()


@pytest.mark.integration
def test_at_most_max_unconfirmed_items_are_out_while_no_receipt_comes(tmp_path: Path, kit: Kit) -> None:
    with mosquitto_server(tmp_path / "broker") as broker:
        echo = ReceiptEcho(broker.host, broker.port, (kit.channel,))
        echo.confirming = False
        kit.add(8)
        delivery = make_delivery(broker, kit, max_unconfirmed=3)
        delivery.start()
        try:
            assert wait_for(lambda: delivery.counters(kit.channel).accepted == 3, 10)
            time.sleep(0.8)
            assert len(echo.seqs(kit.channel)) == 3 and delivery.counters(kit.channel).sent == 3
            echo.confirming = True
            echo.confirm(SITE, STATION, kit.channel, echo.seqs(kit.channel))
            assert delivery.wait_confirmed(15)
            assert len(echo.seqs(kit.channel)) == 8
        finally:
            delivery.stop()
            echo.close()


@pytest.mark.integration
def test_items_handed_out_before_a_restart_keep_their_seq(tmp_path: Path, kit: Kit) -> None:
    kit.add(3)
    first = [item.seq for item in kit.source.claim(3, set())]
    kit.close()
    source = kit.reopen()
    assert [item.seq for item in source.claim(3, set())] == first
    assert [json.loads(item.payload)["seq"] for item in source.claim(3, set())] == first


@pytest.mark.integration
@pytest.mark.slow
def test_a_load_of_many_items_drains_without_deadlock(tmp_path: Path, kit: Kit) -> None:
    # PUBACKs and receipts arriving while the delivery thread is mid-publish once deadlocked the old publisher
    # (lock-order inversion between paho's message lock and ours); thousands of one-item messages make it frequent
    n = {"readings": 2000, "fluxes": 2000, "raw": 300, "health": 2000, "command_results": 2000}[kit.channel]
    with mosquitto_server(tmp_path / "broker") as broker:
        echo = ReceiptEcho(broker.host, broker.port, (kit.channel,))
        kit.add(n)
        delivery = make_delivery(broker, kit, max_in_flight=50, max_unconfirmed=500)
        delivery.start()
        try:
            assert delivery.wait_confirmed(120), channel_health(delivery, kit)
            assert delivery.counters(kit.channel).confirmed == n and len(echo.seqs(kit.channel)) == n
        finally:
            delivery.stop()
            echo.close()


@pytest.mark.integration
def test_a_duplicate_is_stored_once_and_confirmed_each_time(tmp_path: Path, kit: Kit) -> None:
    kit.add(1)
    [item] = kit.source.claim(1, set())
    store = SqliteStore(tmp_path / "store.sqlite")
    ingestor = Ingestor(MqttSettings(port=1), store, tmp_path / "central")
    try:
        topic = kit.source.topic
        for _ in range(2):
            ingestor.handle(topic, item.payload)
            receipts = ingestor._receipts.take()
            assert [list(r.stored_seqs()) for r in receipts] == [[item.seq]]
        counters = ingestor.counters()
        if kit.channel == "readings":
            assert counters["duplicate_batches"] == 1
            points = store.query_series(STATION, "CO2", T0 - timedelta(hours=1), T0 + timedelta(hours=1))
            assert len(points) == 1
        elif kit.channel == "fluxes":
            assert counters["flux_records_stored"] == 2
            assert len(store.query_fluxes(STATION, T0, T0 + timedelta(days=1))) == 1
        elif kit.channel == "health":
            assert counters["health_reports_stored"] == 2
            assert [r.seq for r in store.query_health(STATION, T0, T0 + timedelta(days=1))] == [item.seq]
        elif kit.channel == "command_results":
            assert counters["command_results_stored"] == 2
            ledger = CommandLedger(tmp_path / "central" / LEDGER_FILE)
            assert ledger.record(CommandResult.model_validate_json(item.payload)) is False  # kept once already
            ledger.close()
        else:
            assert counters["raw_files_archived"] == 1 and counters["raw_duplicates"] == 1
            assert len(list((tmp_path / "central").rglob("*.swr"))) == 1
    finally:
        store.close()


# --- the PUBACK window, with paho replaced at our own boundary ---------------------------------------------------


class FakeInfo:
    def __init__(self, mid: int) -> None:
        self.mid, self.rc = mid, 0


class FakeClient:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def publish(self, topic: str, payload: bytes, qos: int, properties: Any = None) -> FakeInfo:
        self.sent.append((topic, payload))
        return FakeInfo(len(self.sent))


def test_at_most_max_in_flight_publishes_wait_for_their_puback(tmp_path: Path, kit: Kit) -> None:
    kit.add(7)
    delivery = Delivery(SITE, STATION, MqttConfig(), DeliverySettings(max_in_flight=3))
    delivery.add_channel(kit.source)
    fake = FakeClient()
    delivery._client = fake  # type: ignore[assignment]
    delivery._connected.set()
    assert delivery.pump() == 3 and delivery.pump() == 0  # the window is full: nothing more until a PUBACK
    for mid in (1, 2):
        delivery._on_publish(None, None, mid, _Reason(0), None)  # type: ignore[arg-type]  # paho's thread
    assert delivery.pump() == 2
    assert len({json.loads(p)["seq"] for _, p in fake.sent}) == 5  # five different items, none twice
    assert kit.source.pending() == 7  # PUBACKs delete nothing
    receipt = Receipt(site=SITE, station=STATION, channel=kit.channel,
                      stored=[(json.loads(fake.sent[0][1])["seq"],) * 2], sent=utc_now())
    delivery._on_message(None, None, _Message(receipts_topic(SITE, STATION), receipt))  # type: ignore[arg-type]
    delivery.pump()
    assert kit.source.pending() == 6 and delivery.counters(kit.channel).confirmed == 1


def test_wait_confirmed_returns_once_the_receipt_is_counted_not_when_the_outbox_empties(
        kit: Kit, monkeypatch: pytest.MonkeyPatch) -> None:
    # a receipt handler deletes from the outbox before it counts: a test that read the counters right after
    # wait_confirmed saw 299 of 300 confirmed once
    kit.add(1)
    [item] = kit.source.claim(1, set())
    delivery = Delivery(SITE, STATION, MqttConfig())
    delivery.add_channel(kit.source)
    deleted, release = threading.Event(), threading.Event()
    confirm = kit.source.confirm

    def confirm_then_pause(ranges: Any) -> Any:
        result = confirm(ranges)
        deleted.set()
        release.wait(10)
        return result

    monkeypatch.setattr(kit.source, "confirm", confirm_then_pause)
    receipt = Receipt(site=SITE, station=STATION, channel=kit.channel, stored=[(item.seq, item.seq)], sent=utc_now())
    delivery._on_message(None, None, _Message(receipts_topic(SITE, STATION), receipt))  # type: ignore[arg-type]
    handler = threading.Thread(target=delivery.pump)
    handler.start()
    try:
        assert deleted.wait(10) and kit.source.pending() == 0
        assert not delivery.wait_confirmed(0.3)  # emptied, not yet counted
    finally:
        release.set()
        handler.join(10)
    assert delivery.wait_confirmed(1) and delivery.counters(kit.channel).confirmed == 1


class _Reason:
    def __init__(self, value: int) -> None:
        self.value = value

    def __str__(self) -> str:
        return "Success" if self.value < 0x80 else "Not authorized"


class _Message:
    def __init__(self, topic: str, receipt: Receipt) -> None:
        self.topic, self.payload = topic, receipt.model_dump_json().encode()


def test_a_receipt_for_another_station_or_malformed_is_ignored(tmp_path: Path, kit: Kit) -> None:
    kit.add(2)
    delivery = Delivery(SITE, STATION, MqttConfig())
    delivery.add_channel(kit.source)
    other = Receipt(site=SITE, station="st02", channel=kit.channel, stored=[(0, 100)], sent=utc_now())
    delivery._on_message(None, None, _Message(receipts_topic(SITE, STATION), other))  # type: ignore[arg-type]
    bad = _Message(receipts_topic(SITE, STATION), other)
    bad.payload = b'{"not": "a receipt"}'
    delivery._on_message(None, None, bad)  # type: ignore[arg-type]
    delivery.pump()
    assert kit.source.pending() == 2 and delivery.bad_receipts == 2



class _CountingClaims:
    """An outbox that counts how often the delivery loop asks it for new items."""

    def __init__(self, source: OutboxSource) -> None:
        self._source, self.claims = source, 0

    def claim(self, n: int, exclude: set[int]) -> Any:
        self.claims += 1
        return self._source.claim(n, exclude)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)


def test_an_idle_outbox_is_asked_again_only_when_notified_or_after_the_idle_wait(tmp_path: Path, kit: Kit) -> None:
    now = [100.0]
    delivery = Delivery(SITE, STATION, MqttConfig(), DeliverySettings(idle_wait_s=1.0), clock=lambda: now[0])
    source = _CountingClaims(kit.source)
    delivery.add_channel(cast(OutboxSource, source))
    delivery._client = FakeClient()  # type: ignore[assignment]
    delivery._connected.set()
    kit.add(1)
    assert delivery.pump() == 1
    asked = source.claims  # the item, then the empty answer that marks the outbox idle
    for _ in range(5):  # wake-ups for PUBACKs, receipts, other channels: no query of an idle outbox
        assert delivery.pump() == 0
    assert source.claims == asked
    kit.add(1)  # appended without a notification (a source that forgets): it waits at most idle_wait_s
    assert delivery.pump() == 0 and source.claims == asked
    now[0] += 1.0
    assert delivery.pump() == 1 and source.claims > asked
    kit.add(1)
    delivery.notify(kit.channel)  # the usual way: the writer names its channel
    assert delivery.pump() == 1
    kit.add(1)
    delivery.notify()  # no channel named: every outbox is asked again
    assert delivery.pump() == 1
    assert kit.source.pending() == 4  # sent, not confirmed: nothing deleted


def test_an_idle_loop_sleeps_until_its_next_deadline_not_every_idle_wait(tmp_path: Path, kit: Kit) -> None:
    now = [100.0]
    delivery = Delivery(SITE, STATION, MqttConfig(), DeliverySettings(idle_wait_s=1.0, receipt_timeout_s=3.0),
                        clock=lambda: now[0])
    delivery.add_channel(kit.source)
    delivery._client = FakeClient()  # type: ignore[assignment]
    delivery._connected.set()
    assert delivery._next_wait() == BEAT_S  # nothing tracked, nothing lingering: only the watchdog's beat
    kit.add(1)
    assert delivery.pump() == 1
    assert delivery._next_wait() == BEAT_S  # sent, no PUBACK yet: the PUBACK itself wakes the loop
    delivery._on_publish(None, None, 1, _Reason(0), None)  # type: ignore[arg-type]  # paho's thread
    delivery.pump()
    now[0] += 1.0
    assert delivery._next_wait() == pytest.approx(2.0)  # the resend falls due receipt_timeout_s after the PUBACK


def test_a_notice_wakes_the_sleeping_loop_at_once(tmp_path: Path, kit: Kit) -> None:
    # idle_wait_s and BEAT_S far longer than the wait below: only the notice can end the loop's sleep
    delivery = Delivery(SITE, STATION, MqttConfig(), DeliverySettings(idle_wait_s=60.0))
    source = _CountingClaims(kit.source)
    delivery.add_channel(cast(OutboxSource, source))
    fake = FakeClient()
    delivery._client = fake  # type: ignore[assignment]
    delivery._connected.set()
    stop = threading.Event()
    loop = threading.Thread(target=delivery.run, args=(stop,), daemon=True)
    loop.start()
    try:
        assert wait_for(lambda: source.claims >= 1, timeout=2.0)  # the outbox was found empty: the loop sleeps
        time.sleep(0.1)
        kit.add(1)
        delivery.notify(kit.channel)
        assert wait_for(lambda: len(fake.sent) == 1, timeout=2.0)
    finally:
        stop.set()
        delivery._wake.set()
        loop.join(5.0)


def test_after_an_idle_spell_a_lingering_channel_lets_a_burst_gather(tmp_path: Path, kit: Kit) -> None:
    now = [100.0]
    delivery = Delivery(SITE, STATION, MqttConfig(), DeliverySettings(idle_wait_s=5.0), clock=lambda: now[0])
    delivery.add_channel(kit.source, linger_s=1.0)
    fake = FakeClient()
    delivery._client = fake  # type: ignore[assignment]
    delivery._connected.set()
    kit.add(2)
    assert delivery.pump() == 2  # a backlog at the start leaves at once; then the outbox is found empty
    kit.add(1)
    delivery.notify(kit.channel)
    now[0] += 0.4
    kit.add(1)  # the same burst, committed a little later
    delivery.notify(kit.channel)
    assert delivery.pump() == 0  # gathering: nothing is claimed before the linger from the first notification
    assert delivery._next_wait() == pytest.approx(0.6)  # and the loop wakes when it ends
    now[0] += 0.6
    assert delivery.pump() == 2 and len(fake.sent) == 4
    assert kit.source.pending() == 4  # sent, not confirmed: nothing deleted
    kit.add(1)
    delivery.notify(kit.channel)
    assert delivery.pump() == 0
    now[0] += 1.0
    assert delivery.pump() == 1


@pytest.mark.parametrize("then", ["a later item confirmed", "receipts stop", "waited max_resend_interval_s"])
def test_a_resend_waits_while_receipts_show_the_central_service_working_towards_the_item(
        tmp_path: Path, kit: Kit, then: str) -> None:
    """A catch-up: the central service confirms the station's items in order, slower than `receipt_timeout_s`
    apart. The items still ahead in its queue are not sent again while that goes on; an item is sent again as soon
    as a later one is confirmed without it (lost), when the receipts stop, or `max_resend_interval_s` after the
    broker took it."""
    now = [100.0]
    settings = DeliverySettings(receipt_timeout_s=30.0, max_resend_interval_s=90.0)
    delivery = Delivery(SITE, STATION, MqttConfig(), settings, clock=lambda: now[0])
    delivery.add_channel(kit.source)
    fake = FakeClient()
    delivery._client = fake  # type: ignore[assignment]
    delivery._connected.set()
    kit.add(6)
    assert delivery.pump() == 6
    for mid in range(1, 7):
        delivery._on_publish(None, None, mid, _Reason(0), None)  # type: ignore[arg-type]  # the broker took them
    assert delivery.pump() == 0  # the PUBACKs handled at 100 s
    seqs = [json.loads(payload)["seq"] for _, payload in fake.sent]

    def receipt(at: float, index: int) -> None:
        now[0] = at
        message = _Message(receipts_topic(SITE, STATION), Receipt(
            site=SITE, station=STATION, channel=kit.channel, stored=[(seqs[index], seqs[index])], sent=utc_now()))
        delivery._on_message(None, None, message)  # type: ignore[arg-type]  # paho's thread
        delivery._handle_events()  # handled when it arrives

    def resent() -> list[int]:
        return [json.loads(payload)["seq"] for _, payload in fake.sent[6:]]

    receipt(120.0, 0)
    receipt(140.0, 1)
    # 40 s after the PUBACKs four items are past their receipt timeout, but the receipts show the central service
    # working through its queue towards them
    assert delivery.pump() == 0
    assert delivery.counters(kit.channel).resends_put_off == 4
    assert channel_health(delivery, kit)["resends_put_off"] == 4

    if then == "a later item confirmed":
        receipt(160.0, 3)  # the fourth came through, the third did not: lost on the way
        assert delivery.pump() == 0  # put off until 170 s
        now[0] = 170.0
        assert delivery.pump() == 1 and resent() == [seqs[2]]  # the others are still ahead in the queue
    elif then == "receipts stop":
        now[0] = 170.0  # 30 s without a receipt: whatever holds them, send them again
        assert delivery.pump() == 4 and sorted(resent()) == seqs[2:]
    else:
        receipt(160.0, 2)
        now[0] = 170.0
        assert delivery.pump() == 0  # put off once more, until 200 s
        receipt(185.0, 3)
        now[0] = 200.0  # 100 s after the broker took them: no longer put off
        assert delivery.pump() == 2 and sorted(resent()) == seqs[4:]
    assert delivery.counters(kit.channel).resends == len(resent())


def test_the_station_client_runs_paho_s_own_network_thread_with_only_the_timeout_changed() -> None:
    """`_StationClient._thread_main` is paho's, with the select timeout passed on (its doc says why); a paho whose
    network thread does more than that fails here, to be looked at before the override is kept."""
    import inspect
    import textwrap

    import paho.mqtt.client as mqtt

    from gateway.edge.delivery import _StationClient

    def body(method: Any) -> str:
        return textwrap.dedent(inspect.getsource(method)).strip()

    assert body(_StationClient._thread_main) == body(mqtt.Client._thread_main).replace(
        "loop_forever(retry_first_connection=True)",
        "loop_forever(timeout=self.loop_timeout_s, retry_first_connection=True)")


@pytest.mark.integration
def test_a_stop_does_not_wait_for_the_network_thread_s_timeout(tmp_path: Path) -> None:
    """The network thread sleeps up to a quarter of the keep-alive (an hour here); a stop wakes it through paho's
    socket pair, so the stop returns with the thread ended, not after that sleep."""
    kit = ReadingsKit(tmp_path)
    with mosquitto_server(tmp_path / "broker") as broker:
        delivery = Delivery(SITE, STATION, MqttConfig(host=broker.host, port=broker.port, keepalive_s=3600),
                            DeliverySettings(idle_wait_s=0.2))
        delivery.add_channel(kit.source)
        delivery.start()
        assert wait_for(lambda: delivery.connected, timeout=10)
        network = delivery._client._thread
        assert network is not None and network.is_alive()
        stopper = threading.Thread(target=delivery.stop)
        stopper.start()
        stopper.join(timeout=60)  # far below the network thread's 900-s sleep
        assert not stopper.is_alive() and not network.is_alive()


@pytest.mark.integration
@pytest.mark.parametrize("where", ["announced by the broker", "set in mqtt.max_packet_bytes"])
def test_an_item_above_the_broker_s_packet_limit_is_kept_and_reported_while_the_others_flow(
    tmp_path: Path, where: str
) -> None:
    # one large item (400 readings) between small ones (one reading each): the broker's limit is either announced
    # in its CONNACK (Mosquitto's max_packet_size) or, for a broker that announces none, set on the station
    base = tmp_path / "broker"
    base.mkdir()
    port = free_port()
    limit = 8192
    config = (f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
              f"log_dest file {base / 'mosquitto.log'}\n"
              + (f"max_packet_size {limit}\n" if where.startswith("announced") else ""))
    buffer = ReadingBuffer(tmp_path / "buffer.sqlite")
    source = ReadingsOutbox(buffer, SITE, STATION, batch_size=400)
    buffer.append(make_readings(2, start=0.0, station=STATION))
    with mosquitto_server(base, config=config, port=port) as broker:
        echo = ReceiptEcho(broker.host, broker.port)
        mqtt_config = MqttConfig(host=broker.host, port=broker.port, keepalive_s=5,
                                 max_packet_bytes=None if where.startswith("announced") else limit)
        delivery = Delivery(SITE, STATION, mqtt_config, DeliverySettings(receipt_timeout_s=30.0, idle_wait_s=0.2,
                                                                         refusal_retry_s=0.2))
        delivery.add_channel(source)
        delivery.start()
        try:
            assert wait_for(lambda: source.pending() == 0, 10), "the small batch went through"
            buffer.append(make_readings(400, start=10.0, station=STATION))  # one item far above 8 kB
            assert wait_for(lambda: bool(delivery.counters("readings").refusals), 10)
            buffer.append(make_readings(1, start=1000.0, station=STATION))
            assert wait_for(lambda: source.pending() == 400, 10), "the reading after it went through"
            assert list(delivery.counters("readings").refusals) == ["Packet too large for the broker"]
            health = delivery.health()["channels"]["readings"]  # type: ignore[index]
            # still reported after the next item was accepted (a refusal of one item, not of the channel)
            assert health["refusing"].startswith("Packet too large for the broker (")
            assert health["refusing"].endswith(f" > {limit} bytes)") and health["oversized"] == 1
            assert delivery.connection_losses == 0, "the broker never had to close the connection"
        finally:
            delivery.stop()
            echo.close()
    buffer.close()


def test_a_packet_limit_below_a_kilobyte_is_refused_naming_the_key() -> None:
    with pytest.raises(ValueError, match="max_packet_bytes"):
        MqttConfig(max_packet_bytes=100)


def test_a_broker_that_cannot_be_reached_is_said_once_and_counted_each_attempt(
        caplog: pytest.LogCaptureFixture) -> None:
    """First-day walkthrough (docs/reliability.md): `station run` with a wrong mqtt.host/port or a broker that was
    down logged nothing; only the health's `broker_connected: false` hinted at it."""
    from gateway.edge.delivery import UNREACHABLE

    port = free_port()  # nothing listens there
    delivery = Delivery(SITE, STATION, MqttConfig(host="127.0.0.1", port=port, keepalive_s=5),
                        DeliverySettings(receipt_timeout_s=30.0, idle_wait_s=0.2))
    with caplog.at_level(logging.WARNING, logger="sinkwatch.edge.delivery"):
        delivery.start()
        try:
            assert wait_for(lambda: delivery.connect_failures[UNREACHABLE] >= 2, 15), delivery.health()
        finally:
            delivery.stop()
    said = [r.getMessage() for r in caplog.records if "cannot reach the broker" in r.getMessage()]
    assert len(said) == 1, said
    assert f"127.0.0.1:{port}" in said[0] and "mqtt.host and mqtt.port in station.yaml" in said[0]
    assert delivery.health()["connect_failures"] == {UNREACHABLE: delivery.connect_failures[UNREACHABLE]}
