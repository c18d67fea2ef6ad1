"""Placing items in their chains with several ingest workers (gateway/central/chain.py, `ChainTracker(shared=True)`):
each worker has its own tracker over one store. Concurrency is played out step by step here (which worker places
and stores what, when); tests/central/test_ingest_workers.py runs real workers on a real broker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.central.chain import ChainTracker, Placement, VerifiedItem, Verifier
from gateway.central.store import SqliteStore
from gateway.contract import ReadingBatch, readings_topic
from gateway.edge.signer import ChainSigner
from gateway.trust.keys import KeyRegistry, generate_key

from .helpers import T0, series

TOPIC = readings_topic("site1", "st1")
S = 1_000_000_000  # ns
RECEIVED = 1_800_000_000 * S  # central clock of the first arrival


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    instance = SqliteStore(tmp_path / "central.sqlite")
    yield instance
    instance.close()


class Station:
    """A signing station; `item(seq, received)` is its item seq as the central service verified it then."""

    def __init__(self, tmp_path: Path) -> None:
        key = generate_key(tmp_path / "st1.key")
        registry = KeyRegistry(tmp_path / "data")
        registry.register("site1", "st1", key.public_key())
        self.verifier = Verifier(registry, required=True)
        self.signer = ChainSigner(key, tmp_path / "st1.buffer")
        self.payloads: dict[int, bytes] = {}

    def item(self, seq: int, received: int) -> VerifiedItem:
        payload = self.payloads.setdefault(seq, ReadingBatch(
            site="site1", station="st1", seq=seq, sent=T0, readings=series("st1", [float(seq)])
        ).model_dump_json().encode())
        envelope = self.signer.envelope("readings", TOPIC, seq, payload)
        verified = self.verifier.verify("site1", "st1", "readings", TOPIC, payload, envelope, received)
        assert verified is not None
        return verified


def store_item(store: SqliteStore, tracker: ChainTracker, item: VerifiedItem, placement: Placement) -> None:
    """What the ingestor does after placing: the data with its ledger entry when new, then `stored`."""
    store.write([], ledger=item.ledger(b"{}") if placement.new else None)
    tracker.stored(item)


def kinds(placements: list[Placement]) -> list[tuple[str, int]]:
    return sorted((e.kind, e.seq) for p in placements for e in p.events)


@pytest.mark.parametrize("shared", [True, False])
def test_a_predecessor_another_worker_is_storing_is_neither_a_gap_nor_a_reorder(store: SqliteStore, tmp_path: Path,
                                                                               shared: bool) -> None:
    station = Station(tmp_path)
    a, b = ChainTracker(store, shared=shared), ChainTracker(store, shared=shared)
    items = [station.item(seq, RECEIVED + seq * S // 100) for seq in range(3)]
    placed = [a.place(items[0])]
    store_item(store, a, items[0], placed[0])
    # the broker hands item 1 to A and item 2 to B at once; B is quicker and stores 2 before A has placed 1
    placed.append(b.place(items[2]))
    store_item(store, b, items[2], placed[-1])
    placed.append(a.place(items[1]))
    store_item(store, a, items[1], placed[-1])
    # B's next item, after the grace: item 1 arrived meanwhile, so nothing was missing
    later = station.item(3, RECEIVED + 40 * S)
    placed.append(b.place(later))

    assert all(p.new for p in placed)
    if shared:
        assert kinds(placed) == [("chain_start", 0)]
    else:  # what one tracker per worker without the store's view reports: alarms about nothing
        assert kinds(placed) == [("chain_start", 0), ("gap", 2)]


def test_a_predecessor_still_missing_after_the_grace_is_a_gap(store: SqliteStore, tmp_path: Path) -> None:
    station = Station(tmp_path)
    a, b = ChainTracker(store, shared=True), ChainTracker(store, shared=True)
    first = station.item(0, RECEIVED)
    store_item(store, a, first, a.place(first))
    station.item(1, RECEIVED)  # signed, never arrives
    second = station.item(2, RECEIVED + S)
    placement = b.place(second)
    store_item(store, b, second, placement)
    assert placement.events == [] and b.due_events(RECEIVED + 30 * S) == []  # not yet due

    [gap] = b.due_events(RECEIVED + 31 * S)  # a worker's idle check, or its next item

    assert (gap.kind, gap.seq, gap.at) == ("gap", 2, second.signed.envelope.link.at)
    assert "follows item 1, which is not stored (yet), 30 s after it arrived" in gap.detail
    assert b.due_events(RECEIVED + 60 * S) == []  # recorded once


def test_a_resend_or_replay_reaching_a_worker_with_a_stale_head_is_stored_once(store: SqliteStore,
                                                                              tmp_path: Path) -> None:
    station = Station(tmp_path)
    a = ChainTracker(store, shared=True, replay_after_s=3600)
    b = ChainTracker(store, shared=True, replay_after_s=3600)
    items = [station.item(seq, RECEIVED + seq * S) for seq in range(3)]
    for tracker, item in ((a, items[0]), (a, items[1]), (b, items[2])):
        store_item(store, tracker, item, tracker.place(item))
    # A last stored item 1, so item 2 follows "its head"; B stored it already
    resend = a.place(station.item(2, RECEIVED + 10 * S))
    replay = a.place(station.item(2, RECEIVED + 7200 * S))
    exclusive = ChainTracker(store)  # one tracker that believes it is alone, with A's view
    exclusive.stored(items[1])

    assert (resend.new, kinds([resend])) == (False, [("duplicate", 2)])
    assert (replay.new, kinds([replay])) == (False, [("replay", 2)])
    assert exclusive.place(station.item(2, RECEIVED + 10 * S)).new  # would store it again, unrecognised
    assert [i.seq for i in store.ledger_items("st1", 0, 2**62)] == [0, 1, 2]


def test_items_in_order_on_one_worker_need_no_grace(store: SqliteStore, tmp_path: Path) -> None:
    station = Station(tmp_path)
    tracker = ChainTracker(store, shared=True)
    placements = []
    for seq in range(5):
        item = station.item(seq, RECEIVED + seq * S)
        placements.append(tracker.place(item))
        store_item(store, tracker, item, placements[-1])
    assert all(p.new for p in placements) and kinds(placements) == [("chain_start", 0)]
    assert tracker.due_events(RECEIVED + 3600 * S) == []


def test_a_predecessor_arriving_after_the_grace_is_a_reorder(store: SqliteStore, tmp_path: Path) -> None:
    station = Station(tmp_path)
    a, b = ChainTracker(store, shared=True), ChainTracker(store, shared=True)
    items = [station.item(0, RECEIVED), station.item(1, RECEIVED), station.item(2, RECEIVED + S)]
    placed = [a.place(items[0])]
    store_item(store, a, items[0], placed[0])
    placed.append(b.place(items[2]))
    store_item(store, b, items[2], placed[-1])
    late = station.item(1, RECEIVED + 45 * S)  # lost, then resent by the station after its receipt timeout
    placed.append(a.place(late))
    store_item(store, a, late, placed[-1])
    placed.append(b.place(station.item(3, RECEIVED + 46 * S)))

    # late, so a reorder; B's pending gap is checked at its next item, when item 1 is stored: no gap (an idle
    # check between +31 s and +45 s would have recorded one, closed later, as with one worker)
    assert kinds(placed) == [("chain_start", 0), ("reorder", 1)]
    assert [i.seq for i in store.ledger_items("st1", 0, 2**62)] == [0, 1, 2]
