"""Ingestor: flux records to the store, raw archive files to <data_dir>/raw (unit, then against real Mosquitto)."""

from __future__ import annotations

import base64
import gzip
import json
import threading
import uuid
import zlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.central.config import MqttSettings
from gateway.central.ingest import Ingestor
from gateway.central.service import wait_for
from gateway.central.store import SqliteStore, StoreUnavailable
from gateway.central.store.ledger import LedgerItem
from gateway.contract import FluxRecord, RawChunk, encode_flux_record, fluxes_topic, raw_payload, raw_topic
from gateway.rawarchive import ArchiveWriter, CsvArchiveWriter, read_archive
from gateway.testing.services import MosquittoInstance

from .helpers import T0, flux_record

HOUR = timedelta(hours=1)
HALF_HOUR_START = int(T0.timestamp())


def archive_file(folder: Path, *, site: str = "site1", station: str = "st1", sensor: str = "sonic",
                 records: int = 50, offset: float = 0.0, writer_class: type = ArchiveWriter) -> Path:
    writer = writer_class(folder, sensor, HALF_HOUR_START, [("U", "m s-1"), ("W", "m s-1")],
                           {"site": site, "station": station, "frequency_hz": 20.0})
    for i in range(records):
        writer.write(HALF_HOUR_START + i / 20 + 0.003, [1.0 + i * 0.01 + offset, None if i == 7 else -0.02 * i])
    return writer.close({"closed": "rotation", "bad_records": {}})


def raw_message(path: Path, *, site: str = "site1", station: str = "st1") -> bytes:
    return raw_payload(site, station, path)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    instance = SqliteStore(tmp_path / "ingest.sqlite")
    yield instance
    instance.close()


@pytest.fixture
def ingestor(store: SqliteStore, tmp_path: Path) -> Ingestor:
    return Ingestor(MqttSettings(port=1), store, tmp_path / "data", retry_initial_s=0.01, retry_max_s=0.05)


@pytest.fixture
def publisher(mosquitto: MosquittoInstance) -> Iterator[mqtt.Client]:
    """A station's side: an MQTT v5 client connected to the test's broker."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    yield client
    client.loop_stop()
    client.disconnect()


def assert_restart_receives_nothing_again(settings: MqttSettings, store: SqliteStore, data_dir: Path,
                                          publisher: mqtt.Client) -> None:
    """Everything was acknowledged: a restart on the same persistent session receives only a marker published now
    (it arrives after anything the broker still held for the ingestor)."""
    restarted = Ingestor(settings, store, data_dir)
    with restarted:
        assert wait_for(lambda: restarted.mqtt_connected, 10)
        marker = flux_record(end=T0 + 3 * HOUR)
        publisher.publish(fluxes_topic("site1", "st1"), encode_flux_record(marker), qos=1).wait_for_publish(5)
        assert wait_for(lambda: restarted.counters()["flux_records_stored"] == 1, 10)
        assert restarted.counters()["messages_received"] == 1


def dead_reasons(ingestor: Ingestor) -> list[str]:
    if not ingestor.dead_letter_path.exists():
        return []
    return [json.loads(line)["reason"] for line in ingestor.dead_letter_path.read_text("utf-8").splitlines()]


# --- fluxes ---------------------------------------------------------------------------------------------------------


def test_a_flux_record_is_stored_and_a_redelivery_stored_once(ingestor: Ingestor, store: SqliteStore) -> None:
    record = flux_record()
    for _ in range(2):
        ingestor.handle(fluxes_topic("site1", "st1"), encode_flux_record(record))

    assert store.query_fluxes("st1", T0, T0 + HOUR) == [record]
    assert ingestor.counters()["flux_records_stored"] == 2


@pytest.mark.parametrize(
    "topic, payload, reason",
    [
        (fluxes_topic("site1", "st1"), b"{not json", "not_json"),
        (fluxes_topic("site1", "st1"), b'{"schema_version": 1, "site": "site1"}', "schema"),
        (fluxes_topic("site1", "other"), encode_flux_record(flux_record()), "topic_mismatch"),
        (fluxes_topic("site1", "st1"),
         encode_flux_record(flux_record()).replace(b'"FC":-12.345678901234567', b'"FC":NaN'), "schema"),
        # hostile inputs by hand (docs/reliability.md): stored as an "ok" period and served as such
        (fluxes_topic("site1", "st1"),
         encode_flux_record(flux_record()).replace(b'"FC":-12.345678901234567', b'"FC":1e308'), "implausible_value"),
        (fluxes_topic("site1", "st1"),
         encode_flux_record(flux_record()).replace(b'"H":301.448', b'"H":-2e30'), "implausible_value"),
    ],
)
def test_a_bad_flux_message_is_dead_lettered(ingestor: Ingestor, store: SqliteStore, topic: str, payload: bytes,
                                             reason: str) -> None:
    ingestor.handle(topic, payload)

    assert dead_reasons(ingestor) == [reason]
    assert store.flux_result_sets("st1") == []


def test_a_flux_record_waits_out_a_store_outage(store: SqliteStore, tmp_path: Path) -> None:
    class FlakyStore:
        def __init__(self) -> None:
            self.failures = 2

        def write_fluxes(self, records: list[FluxRecord], *, ledger: LedgerItem | None = None) -> None:
            if self.failures:
                self.failures -= 1
                raise StoreUnavailable("down for a moment")
            store.write_fluxes(records, ledger=ledger)

    flaky = FlakyStore()
    ingestor = Ingestor(MqttSettings(port=1), flaky, tmp_path / "data",  # type: ignore[arg-type]
                        retry_initial_s=0.01, retry_max_s=0.02)
    record = flux_record()

    assert ingestor.handle_with_retry(fluxes_topic("site1", "st1"), encode_flux_record(record)) is True
    assert store.query_fluxes("st1", T0, T0 + HOUR) == [record]
    assert (ingestor.counters()["storage_retries"], ingestor.storage_available) == (2, True)


# --- raw ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("writer_class", [ArchiveWriter, CsvArchiveWriter])
def test_a_raw_file_is_archived_byte_for_byte_and_readable(ingestor: Ingestor, tmp_path: Path,
                                                           writer_class: type) -> None:
    source = archive_file(tmp_path / "station", writer_class=writer_class)
    ingestor.handle(raw_topic("site1", "st1"), raw_message(source))

    target = tmp_path / "data" / "raw" / "site1" / "st1" / "sonic" / source.name
    assert target.read_bytes() == source.read_bytes()
    assert read_archive(target).complete
    assert [p.name for p in target.parent.iterdir()] == [source.name]  # no temporary file left behind
    assert ingestor.counters()["raw_files_archived"] == 1


def test_a_redelivered_raw_file_is_kept_once(ingestor: Ingestor, tmp_path: Path) -> None:
    source = archive_file(tmp_path / "station")
    for _ in range(3):
        ingestor.handle(raw_topic("site1", "st1"), raw_message(source))

    folder = tmp_path / "data" / "raw" / "site1" / "st1" / "sonic"
    assert [p.name for p in folder.iterdir()] == [source.name]
    counters = ingestor.counters()
    assert (counters["raw_files_archived"], counters["raw_duplicates"]) == (1, 2)


def test_the_same_name_with_other_content_is_kept_beside_the_first(ingestor: Ingestor, tmp_path: Path) -> None:
    first = archive_file(tmp_path / "a")
    second = archive_file(tmp_path / "b", offset=5.0)  # same name, other records (station archive wiped)
    assert first.name == second.name
    ingestor.handle(raw_topic("site1", "st1"), raw_message(first))
    ingestor.handle(raw_topic("site1", "st1"), raw_message(second))

    folder = tmp_path / "data" / "raw" / "site1" / "st1" / "sonic"
    contents = sorted(p.read_bytes() for p in folder.iterdir())
    assert contents == sorted([first.read_bytes(), second.read_bytes()])
    assert ingestor.counters()["raw_conflicts"] == 1


def _chunk(path: Path, carried: bytes | None = None, **changes: object) -> bytes:
    """A raw message of `path` (format by its suffix), with `carried` as the transported bytes if given."""
    data = path.read_bytes()
    v2 = path.name.endswith(".swr")
    if carried is None:
        carried = zlib.compress(data) if v2 else data
    fields: dict[str, object] = {"site": "site1", "station": "st1", "sensor": "sonic", "file": path.name,
                                 "size": len(data), "data": base64.b64encode(carried).decode()}
    fields.update(changes)
    return json.dumps({"schema_version": 1, "format": "sinkwatch-raw/2" if v2 else "sinkwatch-raw/1",
                       "encoding": "zlib+base64" if v2 else "gzip+base64", **fields}).encode()


@pytest.mark.parametrize("writer_class", [ArchiveWriter, CsvArchiveWriter])
@pytest.mark.parametrize(
    "case, reason",
    [
        ("size", "bad_data"),
        ("truncated", "bad_data"),
        ("not_compressed", "bad_data"),
        ("not_archive", "bad_data"),
        ("inflates_past_size", "bad_data"),
        ("format_vs_file", "schema"),
        ("header_station", "topic_mismatch"),
        ("topic", "topic_mismatch"),
        ("sensor_vs_file", "schema"),
        ("path_escape", "schema"),
    ],
)
def test_a_bad_raw_message_is_dead_lettered_and_nothing_is_written(
    ingestor: Ingestor, tmp_path: Path, case: str, reason: str, writer_class: type
) -> None:
    source = archive_file(tmp_path / "station", writer_class=writer_class)
    data = source.read_bytes()
    v2 = writer_class is ArchiveWriter
    compress = zlib.compress if v2 else gzip.compress
    topic = raw_topic("site1", "st1")
    if case == "size":
        payload = _chunk(source, size=len(data) + 1)
    elif case == "truncated":  # a file cut short (a .part sent by mistake), carried intact
        payload = _chunk(source, zlib.compress(data[:-20]) if v2 else data[:-20], size=len(data) - 20)
    elif case == "not_compressed":
        payload = _chunk(source, b"hello", size=5)
    elif case == "not_archive":
        other = b"TIME,U\n1,2\n"
        payload = _chunk(source, compress(other), size=len(other) if v2 else len(compress(other)))
    elif case == "inflates_past_size":  # a small message that would unpack into far more than it claims
        bomb = compress(b"\0" * 10_000_000)
        payload = _chunk(source, bomb, size=len(bomb) - 1 if not v2 else 100)
    elif case == "format_vs_file":
        payload = _chunk(source, format="sinkwatch-raw/1" if v2 else "sinkwatch-raw/2")
    elif case == "header_station":
        payload = raw_message(archive_file(tmp_path / "other", station="st9", writer_class=writer_class))
    elif case == "topic":
        payload = raw_message(source)
        topic = raw_topic("site1", "st2")
    elif case == "sensor_vs_file":
        payload = _chunk(source, sensor="irga")
    else:
        payload = _chunk(source, file=f"../../sonic_20261125T1000Z{'.swr' if v2 else '.csv.gz'}")
    ingestor.handle(topic, payload)

    assert dead_reasons(ingestor) == [reason]
    raw_root = tmp_path / "data" / "raw"
    assert not raw_root.exists() or not any(p.is_file() for p in raw_root.rglob("*"))


def test_a_disk_that_refuses_is_retried(ingestor: Ingestor, tmp_path: Path) -> None:
    source = archive_file(tmp_path / "station")
    blocker = tmp_path / "data" / "raw" / "site1"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the site folder should be")
    attempts = []
    original = ingestor.raw_archive.store

    def store_after_fix(*args: object) -> object:
        attempts.append(1)
        if len(attempts) == 2:
            blocker.unlink()
        return original(*args)  # type: ignore[arg-type]

    ingestor.raw_archive.store = store_after_fix  # type: ignore[method-assign,assignment]

    assert ingestor.handle_with_retry(raw_topic("site1", "st1"), raw_message(source)) is True
    assert (tmp_path / "data" / "raw" / "site1" / "st1" / "sonic" / source.name).read_bytes() == source.read_bytes()
    assert ingestor.counters()["storage_retries"] == 1


# --- against a real broker ------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_fluxes_and_raw_files_through_mosquitto_are_stored_and_acknowledged(
    mosquitto: MosquittoInstance, store: SqliteStore, tmp_path: Path, publisher: mqtt.Client
) -> None:
    settings = MqttSettings(host=mosquitto.host, port=mosquitto.port, client_id=f"central-{uuid.uuid4().hex[:8]}")
    records = [flux_record(end=T0 + timedelta(minutes=30 * i)) for i in (1, 2)]
    sonic = archive_file(tmp_path / "station")
    irga = archive_file(tmp_path / "station", sensor="irga")
    ingestor = Ingestor(settings, store, tmp_path / "data")
    with ingestor:
        assert wait_for(lambda: ingestor.mqtt_connected, 10)
        messages = [(fluxes_topic("site1", "st1"), encode_flux_record(r)) for r in records]
        messages += [(raw_topic("site1", "st1"), raw_message(p)) for p in (sonic, irga, sonic)]
        for topic, payload in messages:
            info = publisher.publish(topic, payload, qos=1)
            info.wait_for_publish(timeout=5)
        assert wait_for(lambda: ingestor.counters()["raw_duplicates"] == 1, 15)
        # every message is in (the last one published was counted) and taken from the queue; the flux group may
        # still be on its way to the store (CI under load, 2026-12-06: 1 of 2 stored at this point)
        assert wait_for(lambda: ingestor.queue_depth == 0, 5)
        assert wait_for(lambda: ingestor.counters()["flux_records_stored"] >= 2, 10)
        counters = ingestor.counters()

    assert_restart_receives_nothing_again(settings, store, tmp_path / "data", publisher)

    assert (counters["flux_records_stored"], counters["raw_files_archived"], counters["malformed"]) == (2, 2, {})
    assert store.query_fluxes("st1", T0, T0 + HOUR) == records
    folder = tmp_path / "data" / "raw" / "site1" / "st1"
    assert (folder / "sonic" / sonic.name).read_bytes() == sonic.read_bytes()
    assert (folder / "irga" / irga.name).read_bytes() == irga.read_bytes()
    RawChunk.model_validate_json(raw_message(sonic))  # the payload the station's uplink sends


class _HeldStore(SqliteStore):
    """A store whose first flux write waits until the test lets it go: a stop arrives while a group is written."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.writing = threading.Event()
        self.release = threading.Event()

    def write_fluxes(self, records: list[FluxRecord], *, ledger: LedgerItem | None = None) -> None:
        self.writing.set()
        self.release.wait(10)
        super().write_fluxes(records, ledger=ledger)


@pytest.mark.integration
def test_a_stop_while_a_group_is_written_finishes_and_acks_it(mosquitto: MosquittoInstance, tmp_path: Path,
                                                              publisher: mqtt.Client) -> None:
    """A clean stop leaves the broker nothing the store already took: the group being written is finished and acked
    before the DISCONNECT (before, its acks were dropped and a restart received it again)."""
    settings = MqttSettings(host=mosquitto.host, port=mosquitto.port, client_id=f"central-{uuid.uuid4().hex[:8]}")
    store = _HeldStore(tmp_path / "held.sqlite")
    try:
        ingestor = Ingestor(settings, store, tmp_path / "data")
        ingestor.start()
        assert wait_for(lambda: ingestor.mqtt_connected, 10)
        publisher.publish(fluxes_topic("site1", "st1"), encode_flux_record(flux_record(end=T0 + HOUR)),
                          qos=1).wait_for_publish(5)
        assert store.writing.wait(10)
        stopping = threading.Thread(target=ingestor.stop)
        stopping.start()
        assert wait_for(lambda: ingestor._stop.is_set(), 5)
        # a stop that disconnects before the group is finished would show it within a second (then the group's ack
        # is dropped); this one keeps the connection until the group is done, so the wait runs out
        wait_for(lambda: not ingestor.mqtt_connected, 1)
        store.release.set()
        stopping.join(15)
        assert not stopping.is_alive()
        assert ingestor.counters()["flux_records_stored"] == 1

        assert_restart_receives_nothing_again(settings, store, tmp_path / "data", publisher)
    finally:
        store.close()
