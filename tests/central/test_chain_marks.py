"""Shared chain trackers with the host's chain marks (gateway/central/chainmarks.py): an item signed after its chain's
mark is placed without asking the ledger, and everything else is asked as before, so gaps, duplicates, replays and
reorders across two workers are what they were. Two trackers on one store and one marks file, step by step."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.central.chain import ChainTracker, Placement
from gateway.central.chainmarks import ChainMarks, chain_name
from gateway.central.store import SqliteStore
from gateway.central.store.ledger import LedgerItem
from gateway.contract import health_topic

from .test_chain_workers import RECEIVED, S, Station, store_item


class AskedStore(SqliteStore):
    """Counts the ledger look-ups that placing items makes."""

    asked: list[str]

    def ledger_from(self, site: str, station: str, channel: str, at: int, limit: int) -> list[LedgerItem]:
        self.asked.append("ledger_from")
        return super().ledger_from(site, station, channel, at, limit)

    def ledger_windows(self, starts: list[tuple[str, str, str, int]], limit: int) -> list[list[LedgerItem]]:
        self.asked.append(f"ledger_windows {len(starts)}")
        return [SqliteStore.ledger_from(self, *start, limit) for start in starts]

    def ledger_newest_at(self, site: str, station: str, channel: str) -> int | None:
        self.asked.append("ledger_newest_at")
        return super().ledger_newest_at(site, station, channel)

    def ledger_newest_ats(self, chains: list[tuple[str, str, str]]) -> list[int | None]:
        self.asked.append(f"ledger_newest_ats {len(chains)}")
        return [SqliteStore.ledger_newest_at(self, *chain) for chain in chains]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AskedStore]:
    instance = AskedStore(tmp_path / "central.sqlite")
    instance.asked = []
    yield instance
    instance.close()


@pytest.fixture
def marks(tmp_path: Path) -> Iterator[ChainMarks]:
    instance = ChainMarks(tmp_path / "chain-marks")
    yield instance
    instance.close()


HEALTH_TOPIC = health_topic("site1", "st1")


def kinds(placements: list[Placement]) -> list[tuple[str, int]]:
    return sorted((e.kind, e.seq) for p in placements for e in p.events)


def test_one_worker_in_order_asks_the_ledger_once_per_chain(store: AskedStore, marks: ChainMarks,
                                                           tmp_path: Path) -> None:
    station = Station(tmp_path)
    tracker = ChainTracker(store, shared=True, marks=marks)
    placements = []
    for seq in range(6):
        item = station.item(seq, RECEIVED + seq * S)
        placements.append(tracker.place(item))
        store_item(store, tracker, item, placements[-1])
    assert all(p.new for p in placements) and kinds(placements) == [("chain_start", 0)]
    assert store.asked == ["ledger_newest_at"]  # the mark learned once, no look-up per item
    assert tracker.due_events(RECEIVED + 3600 * S) == []


def test_two_workers_taking_turns_place_by_the_mark_and_check_the_other_s_predecessors_later(
        store: AskedStore, marks: ChainMarks, tmp_path: Path) -> None:
    station = Station(tmp_path)
    a = ChainTracker(store, shared=True, marks=marks)
    b = ChainTracker(store, shared=True, marks=ChainMarks(tmp_path / "chain-marks"))  # the other process's view
    placements = []
    for seq in range(6):
        tracker = (a, b)[seq % 2]
        item = station.item(seq, RECEIVED + seq * S)
        placements.append(tracker.place(item))
        store_item(store, tracker, item, placements[-1])
    assert all(p.new for p in placements) and kinds(placements) == [("chain_start", 0)]
    assert "ledger_from" not in store.asked
    # each predecessor the other worker stored is asked after the grace, all due ones in one request: all there
    store.asked.clear()
    assert a.due_events(RECEIVED + 40 * S) == [] and b.due_events(RECEIVED + 40 * S) == []
    assert store.asked == ["ledger_windows 2", "ledger_windows 3"]
    assert b.marks is not None
    b.marks.close()


def test_resends_and_replays_at_or_before_the_mark_are_looked_up_and_stored_once(store: AskedStore,
                                                                                 marks: ChainMarks,
                                                                                 tmp_path: Path) -> None:
    station = Station(tmp_path)
    a = ChainTracker(store, shared=True, marks=marks, replay_after_s=3600)
    b = ChainTracker(store, shared=True, marks=marks, replay_after_s=3600)
    for seq, tracker in ((0, a), (1, a), (2, b)):
        item = station.item(seq, RECEIVED + seq * S)
        store_item(store, tracker, item, tracker.place(item))
    # A last stored item 1, so item 2 follows "its head"; B stored it already and raised the mark to it
    resend = a.place(station.item(2, RECEIVED + 10 * S))
    replay = a.place(station.item(1, RECEIVED + 7200 * S))
    assert (resend.new, kinds([resend])) == (False, [("duplicate", 2)])
    assert (replay.new, kinds([replay])) == (False, [("replay", 1)])
    assert [i.seq for i in store.ledger_items("st1", 0, 2**62)] == [0, 1, 2]


def test_a_mark_is_learned_from_what_the_ledger_held_before(store: AskedStore, tmp_path: Path) -> None:
    station = Station(tmp_path)
    before = ChainTracker(store, shared=True)  # an earlier run, without marks
    for seq in range(3):
        item = station.item(seq, RECEIVED + seq * S)
        store_item(store, before, item, before.place(item))
    fresh = ChainMarks(tmp_path / "fresh-marks")  # a new file: no process had it open
    tracker = ChainTracker(store, shared=True, marks=fresh)
    assert kinds([tracker.place(station.item(1, RECEIVED + 20 * S))]) == [("duplicate", 1)]
    following = station.item(3, RECEIVED + 21 * S)
    placement = tracker.place(following)
    assert placement.new and placement.events == []
    fresh.close()


def test_an_item_whose_writer_died_after_raising_the_mark_is_a_gap_then_a_reorder(store: AskedStore,
                                                                                 marks: ChainMarks,
                                                                                 tmp_path: Path) -> None:
    station = Station(tmp_path)
    a = ChainTracker(store, shared=True, marks=marks)
    b = ChainTracker(store, shared=True, marks=marks)
    first = station.item(0, RECEIVED)
    store_item(store, a, first, a.place(first))
    lost = station.item(1, RECEIVED + S)
    assert a.place(lost).new  # A raised the mark to item 1 and was killed before writing it
    second = station.item(2, RECEIVED + 2 * S)
    placement = b.place(second)  # after the mark: new without asking; its predecessor is A's
    store_item(store, b, second, placement)
    assert placement.new and placement.events == []
    [gap] = b.due_events(RECEIVED + 2 * S + 31 * S)
    assert (gap.kind, gap.seq) == ("gap", 2)
    # the station sends item 1 again (no receipt): at or before the mark, so looked up: new, and a reorder
    again = b.place(station.item(1, RECEIVED + 45 * S))
    assert again.new and kinds([again]) == [("reorder", 1)]


def test_a_chain_whose_slot_another_chain_has_is_looked_up_as_before(store: AskedStore, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.central.store import writeguard

    monkeypatch.setattr(writeguard, "slot_of", lambda key: 0)  # every chain in one slot
    marks = ChainMarks(tmp_path / "one-slot-marks")
    station = Station(tmp_path)
    tracker = ChainTracker(store, shared=True, marks=marks)
    first = station.item(0, RECEIVED)
    store_item(store, tracker, first, tracker.place(first))  # the readings chain takes the slot
    assert not marks.taken("site1", "st1\x00readings")
    assert marks.taken("site1", "st1\x00health")  # any other chain finds it taken: no mark for it
    store.asked.clear()
    second = station.item(1, RECEIVED + S)
    store_item(store, tracker, second, tracker.place(second))
    assert store.asked == []  # the slot's own chain: by its mark
    marks.close()
    assert marks.taken("site1", "st1\x00readings")  # closed: no chain has a mark any more
    third = station.item(2, RECEIVED + 2 * S)
    assert tracker.place(third).new and store.asked == ["ledger_from"]  # asked, as without marks


def test_the_later_checks_of_two_workers_taking_turns_go_a_second_s_worth_at_a_time(store: AskedStore,
                                                                                   marks: ChainMarks,
                                                                                   tmp_path: Path) -> None:
    """A minute of items, one every 0.1 s, each placed by the other worker than its predecessor: every placing
    after the grace may check the predecessors now due, but waits until the oldest is a second overdue and then
    checks all that are due in one request."""
    station = Station(tmp_path)
    a = ChainTracker(store, shared=True, marks=marks)
    b = ChainTracker(store, shared=True, marks=marks)
    placements = []
    for seq in range(600):
        tracker = (a, b)[seq % 2]
        item = station.item(seq, RECEIVED + seq * S // 10)
        placements.append(tracker.place(item))
        store_item(store, tracker, item, placements[-1])
    assert kinds(placements) == [("chain_start", 0)]  # every predecessor was there when checked
    checks = [asked for asked in store.asked if asked.startswith("ledger_windows")]
    checked = sum(int(asked.split()[1]) for asked in checks)
    # 30 s of due checks (from 30 s to 60 s) for each worker: about one request a second each, not one an item
    assert 270 <= checked <= 300 and len(checks) <= 2 * 32
    assert a.due_events(RECEIVED + 3600 * S) == [] and b.due_events(RECEIVED + 3600 * S) == []


def test_a_group_learns_the_marks_of_its_chains_in_one_request(store: AskedStore, marks: ChainMarks,
                                                              tmp_path: Path) -> None:
    """After an outage a worker meets thousands of chains whose marks it does not know: a group's are learned in
    one request when the group is prefetched (not one per chain as its items are placed), and are right."""
    station = Station(tmp_path)
    first = ChainTracker(store, shared=True, marks=ChainMarks(tmp_path / "other-marks"))  # stored before
    for seq in range(3):
        item = station.item(seq, RECEIVED + seq * S)
        store_item(store, first, item, first.place(item))
    store.asked.clear()
    tracker = ChainTracker(store, shared=True, marks=marks)
    readings = station.item(3, RECEIVED + 3 * S)
    health = station.verifier.verify("site1", "st1", "health", HEALTH_TOPIC, b"{}", station.signer.envelope(
        "health", HEALTH_TOPIC, 0, b"{}"), RECEIVED + 3 * S)
    assert health is not None
    tracker.prefetch([readings, health])
    assert store.asked == ["ledger_newest_ats 2"]
    placements = [tracker.place(readings), tracker.place(health)]
    assert store.asked == ["ledger_newest_ats 2"]  # placed by the marks learned
    assert all(p.new for p in placements) and kinds(placements) == [("chain_start", 0)]
    assert marks.peek("site1", chain_name("st1", "readings")) == readings.signed.envelope.link.at
    # a stale item of the known chain is still looked up in the ledger (at or before its mark)
    again = station.item(1, RECEIVED + 4 * S)
    tracker.prefetch([again])
    assert store.asked[1:] == ["ledger_windows 1"]
    assert not tracker.place(again).new
    assert first.marks is not None
    first.marks.close()
