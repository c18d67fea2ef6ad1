"""The central service verifies every signed item and places it in its chain (gateway/central/chain.py), through
`Ingestor.handle` on a real SqliteStore and real keys; the broker path is tests/test_trust_end_to_end.py."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.central.config import MqttSettings
from gateway.central.ingest import Ingestor
from gateway.central.provision import ProvisionedStation, StationRegistry
from gateway.central.store import SqliteStore
from gateway.central.store.base import WriteOutcome, WriteRequest
from gateway.contract import ReadingBatch, readings_topic
from gateway.edge.signer import ChainSigner
from gateway.trust.keys import KeyRegistry, generate_key

from .helpers import T0, series

HOUR_TD = timedelta(hours=1)

TOPIC = readings_topic("site1", "st1")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    instance = SqliteStore(tmp_path / "ingest.sqlite")
    yield instance
    instance.close()


def make_ingestor(store: SqliteStore, tmp_path: Path, **kwargs: object) -> Ingestor:
    return Ingestor(MqttSettings(port=1), store, tmp_path / "data", retry_initial_s=0.01, retry_max_s=0.05,
                    signatures="required", **kwargs)  # type: ignore[arg-type]


def station(tmp_path: Path, name: str) -> ChainSigner:
    key = generate_key(tmp_path / f"{name}.key")
    KeyRegistry(tmp_path / "data").register("site1", name, key.public_key())
    return ChainSigner(key, tmp_path / f"{name}.buffer")


def item(signer: ChainSigner, seq: int, values: list[float | None], station_name: str = "st1") -> tuple[bytes, str]:
    readings = series(station_name, values, start=T0 + seq * HOUR_TD)
    # `sent` fixed as the station's buffer fixes it: a resend is the same bytes
    payload = ReadingBatch(site="site1", station=station_name, seq=seq, sent=T0, readings=readings
                           ).model_dump_json().encode()
    return payload, signer.envelope("readings", readings_topic("site1", station_name), seq, payload)


def dead_reasons(ingestor: Ingestor) -> list[str]:
    if not ingestor.dead_letter_path.exists():
        return []
    return [json.loads(line)["reason"] for line in ingestor.dead_letter_path.read_text().splitlines()]


def test_signed_batches_are_stored_with_their_ledger_items(store: SqliteStore, tmp_path: Path) -> None:
    ingestor = make_ingestor(store, tmp_path)
    signer = station(tmp_path, "st1")
    for seq in range(3):
        ingestor.handle(TOPIC, *item(signer, seq, [1.0, 2.0]))
    ledger = store.ledger_items("st1", 0, 2**62)
    assert [i.seq for i in ledger] == [0, 1, 2]
    assert [i.prev_digest for i in ledger[1:]] == [i.digest for i in ledger[:-1]]
    assert ledger[0].payload_bytes() == item(signer, 0, [1.0, 2.0])[0]
    counters = ingestor.counters()
    assert (counters["signed_items"], counters["readings_stored"], counters["untrusted"]) == (3, 6, {})
    assert counters["chain_events"] == {"chain_start": 1}
    assert len(ingestor._receipts) == 3


def test_a_resent_and_a_replayed_batch_are_recognised_and_stored_once(store: SqliteStore, tmp_path: Path) -> None:
    ingestor = make_ingestor(store, tmp_path, replay_after_s=0.0)
    signer = station(tmp_path, "st1")
    first = item(signer, 0, [1.0, 2.0])
    ingestor.handle(TOPIC, *first)
    ingestor.handle(TOPIC, *item(signer, 1, [3.0]))
    ingestor.handle(TOPIC, *first)  # an old batch, byte for byte, after its successor
    assert len(store.ledger_items("st1", 0, 2**62)) == 2
    counters = ingestor.counters()
    assert counters["readings_stored"] == 3 and counters["duplicate_readings"] == 2
    assert counters["chain_events"]["replay"] == 1
    events = store.chain_events("st1", 0, 2**62)
    assert [(e.kind, e.seq) for e in events if e.kind == "replay"] == [("replay", 0)]
    assert counters["untrusted"] == {}


def test_reordered_batches_are_events_not_alarms(store: SqliteStore, tmp_path: Path) -> None:
    ingestor = make_ingestor(store, tmp_path)
    signer = station(tmp_path, "st1")
    items = [item(signer, seq, [float(seq)]) for seq in range(3)]
    for index in (0, 2, 1):
        ingestor.handle(TOPIC, *items[index])
    kinds = sorted((e.kind, e.seq) for e in store.chain_events("st1", 0, 2**62))
    assert kinds == [("chain_start", 0), ("gap", 2), ("reorder", 1)]
    assert ingestor.counters()["untrusted"] == {}
    assert len(store.ledger_items("st1", 0, 2**62)) == 3


@pytest.mark.parametrize("case", ["forged", "wrong_station", "unsigned", "revoked", "unknown_station",
                                  "bad_envelope"])
def test_untrusted_items_are_dead_lettered_counted_and_never_stored(store: SqliteStore, tmp_path: Path,
                                                                     case: str) -> None:
    ingestor = make_ingestor(store, tmp_path)
    signer_a = station(tmp_path, "st1")
    signer_b = station(tmp_path, "st2")
    payload, envelope = item(signer_a, 0, [1.0])
    topic = TOPIC
    expected = {"forged": "bad_signature", "wrong_station": "wrong_station", "unsigned": "unsigned",
                "revoked": "revoked_key", "unknown_station": "unknown_station", "bad_envelope": "bad_envelope"}[case]
    envelope_or_none: str | None = envelope
    if case == "forged":
        payload = payload.replace(b'"value":1.0', b'"value":9.0')
    elif case == "wrong_station":
        # station B signs a batch for A's topic with its own (registered, valid) key
        payload, envelope_or_none = item(signer_b, 0, [1.0], station_name="st1")
        envelope_or_none = signer_b.envelope("readings", TOPIC, 5, payload)
    elif case == "unsigned":
        envelope_or_none = None
    elif case == "revoked":
        KeyRegistry(tmp_path / "data").revoke("site1", "st1")
    elif case == "unknown_station":
        # a key nobody registered, for a station the central service has never heard of
        stranger = ChainSigner(generate_key(tmp_path / "stranger.key"), tmp_path / "stranger.buffer")
        topic = readings_topic("site1", "st9")
        payload, envelope_or_none = item(stranger, 0, [1.0], station_name="st9")
    elif case == "bad_envelope":
        envelope_or_none = envelope.replace("v=1", "v=7")
    ingestor.handle(topic, payload, envelope_or_none)

    assert store.query_series("st1", "CO2", T0, T0 + 5 * HOUR_TD) == []
    assert store.ledger_items("st1", 0, 2**62) == []
    counters = ingestor.counters()
    assert counters["untrusted"] == {expected: 1}
    assert dead_reasons(ingestor) == [f"untrusted:{expected}"]
    assert len(ingestor._receipts) == 0  # a receipt would make the real station delete its own item


def test_optional_signatures_store_unsigned_items_but_still_refuse_forgeries(store: SqliteStore,
                                                                             tmp_path: Path) -> None:
    ingestor = Ingestor(MqttSettings(port=1), store, tmp_path / "data")
    signer = station(tmp_path, "st1")
    payload, envelope = item(signer, 0, [1.0])
    ingestor.handle(TOPIC, payload)
    ingestor.handle(TOPIC, payload.replace(b'"seq":0', b'"seq":1'), envelope)
    counters = ingestor.counters()
    assert (counters["unsigned_items"], counters["untrusted"]) == (1, {"bad_signature": 1})


def test_untrusted_and_chain_counters_are_served_by_the_health_route(store: SqliteStore, tmp_path: Path) -> None:
    """What an operator sees: the counters of refused items and chain events reach GET /api/v1/health."""
    from fastapi.testclient import TestClient

    from gateway.central.access import AccessControl
    from gateway.central.api import create_app

    ingestor = make_ingestor(store, tmp_path)
    signer = station(tmp_path, "st1")
    items = [item(signer, seq, [float(seq)]) for seq in range(3)]
    ingestor.handle(TOPIC, *items[0])
    ingestor.handle(TOPIC, *items[2])  # its predecessor is not stored: a gap
    forged_payload, envelope = items[1]
    ingestor.handle(TOPIC, forged_payload.replace(b'"value":1.0', b'"value":9.0'), envelope)
    ingestor.handle(TOPIC, forged_payload)  # unsigned

    with TestClient(create_app(store, ingestor, access=AccessControl.development())) as client:
        response = client.get("/api/v1/health")

    assert response.status_code == 200
    counters = response.json()["counters"]
    assert counters["untrusted"] == {"bad_signature": 1, "unsigned": 1}
    assert counters["chain_events"] == {"chain_start": 1, "gap": 1}
    assert (counters["signed_items"], counters["batches_stored"]) == (2, 2)  # verified ones only


class CountingStore(SqliteStore):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.requests: list[int] = []  # batches per write_many

    def write_many(self, batches: Sequence[WriteRequest]) -> list[WriteOutcome]:
        self.requests.append(len(batches))
        return super().write_many(batches)


def test_a_group_of_signed_batches_goes_in_one_write_and_chains_as_if_one_by_one(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "count.sqlite")
    ingestor = make_ingestor(store, tmp_path)
    first, second = station(tmp_path, "st1"), station(tmp_path, "st2")
    items = [(readings_topic("site1", "st1"), *item(first, 0, [1.0])),
             (readings_topic("site1", "st2"), *item(second, 0, [2.0], "st2")),
             (readings_topic("site1", "st1"), *item(first, 1, [3.0])),
             (readings_topic("site1", "st1"), *item(first, 2, [4.0])),
             (readings_topic("site1", "st2"), *item(second, 1, [5.0], "st2"))]

    assert ingestor.handle_group(items) is True

    assert store.requests == [5]
    assert [i.seq for i in store.ledger_items("st1", 0, 2**62)] == [0, 1, 2]
    assert [(e.station, e.kind) for s in ("st1", "st2") for e in store.chain_events(s, 0, 2**62)] == [
        ("st1", "chain_start"), ("st2", "chain_start")]
    assert ingestor.counters()["readings_stored"] == 5
    store.close()


def test_a_batch_out_of_order_in_a_group_is_placed_after_the_batches_before_it(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "count.sqlite")
    ingestor = make_ingestor(store, tmp_path)
    signer = station(tmp_path, "st1")
    items = [item(signer, seq, [float(seq)]) for seq in range(3)]

    assert ingestor.handle_group([(TOPIC, *items[index]) for index in (0, 2, 1)]) is True

    # the same events as one by one (test_reordered_batches_are_events_not_alarms), in three writes
    kinds = sorted((e.kind, e.seq) for e in store.chain_events("st1", 0, 2**62))
    assert kinds == [("chain_start", 0), ("gap", 2), ("reorder", 1)]
    assert store.requests == [1, 1, 1]
    assert len(store.ledger_items("st1", 0, 2**62)) == 3
    store.close()


def test_a_key_registered_or_revoked_between_groups_counts_from_the_next_group(store: SqliteStore,
                                                                               tmp_path: Path) -> None:
    """The ingestor looks at the key registry and the provisioning file once for a group of messages that arrived
    together, not once a message: what a provisioning command beside the service changes holds from the next
    group on."""
    ingestor = make_ingestor(store, tmp_path)
    signer = station(tmp_path, "st1")
    key = generate_key(tmp_path / "st2.key")
    st2 = ChainSigner(key, tmp_path / "st2.buffer")
    topic2 = readings_topic("site1", "st2")
    assert ingestor.handle_group([(TOPIC, *item(signer, 0, [1.0])), (topic2, *item(st2, 0, [1.0], "st2"))])
    assert dead_reasons(ingestor) == ["untrusted:unknown_station"]

    KeyRegistry(tmp_path / "data").register("site1", "st2", key.public_key())  # as `station provision` does
    assert ingestor.handle_group([(topic2, *item(st2, 1, [2.0], "st2")), (TOPIC, *item(signer, 1, [2.0]))])
    assert dead_reasons(ingestor) == ["untrusted:unknown_station"]
    assert [i.seq for i in store.ledger_items("st2", 0, 2**62)] == [1]

    KeyRegistry(tmp_path / "data").revoke("site1", "st1")
    assert ingestor.handle_group([(TOPIC, *item(signer, 2, [3.0])), (topic2, *item(st2, 2, [3.0], "st2"))])
    assert dead_reasons(ingestor) == ["untrusted:unknown_station", "untrusted:revoked_key"]

    provisioning = StationRegistry(tmp_path / "data")
    with provisioning.writing() as entries:
        entries.append(ProvisionedStation(site="site1", station="st2", auth="password", provisioned="2026-12-05",
                                          revoked="2026-12-05"))
    assert ingestor.handle_group([(topic2, *item(st2, 3, [4.0], "st2"))])
    assert dead_reasons(ingestor) == ["untrusted:unknown_station", "untrusted:revoked_key", "revoked_station"]
    assert [i.seq for i in store.ledger_items("st1", 0, 2**62)] == [0, 1]
    assert [i.seq for i in store.ledger_items("st2", 0, 2**62)] == [1, 2]
