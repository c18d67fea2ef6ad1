"""What an ingest worker stores for a group of messages in one step (gateway/central/ingest.py, `_write_group`): the
chain events of its items, its health reports, its readings and every ledger item, in a few store calls rather than
a few per message; and a worker on a shared subscription looks the group's items up in the ledger in one request
(`ChainTracker.prefetch`), placing them as it would one by one. Real SqliteStore, real keys."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.central.chain import ChainTracker
from gateway.central.config import MqttSettings
from gateway.central.ingest import Ingestor
from gateway.central.store import SqliteStore, StoreRejected
from gateway.central.store.base import WriteOutcome, WriteRequest
from gateway.central.store.ledger import ChainEvent, LedgerItem
from gateway.contract import (
    FluxRecord,
    StationHealth,
    encode_flux_record,
    encode_health,
    fluxes_topic,
    health_topic,
    readings_topic,
)
from gateway.edge.signer import ChainSigner
from gateway.model import utc_now

from .helpers import T0, flux_record
from .test_ingest_trust import item, station
from .test_store_health_contract import report


class CountingStore(SqliteStore):
    """A SqliteStore that records its write calls and ledger look-ups; refuses the health reports of `refuse`."""

    def __init__(self, path: Path, refuse: frozenset[tuple[str, int]] = frozenset()) -> None:
        super().__init__(path)
        self.calls: list[tuple[str, int]] = []
        self.refuse = refuse

    def write_many(self, batches: Sequence[WriteRequest]) -> list[WriteOutcome]:
        self.calls.append(("write_many", len(batches)))
        return super().write_many(batches)

    def write_health(self, reports: list[StationHealth]) -> None:
        self.calls.append(("write_health", len(reports)))
        if any((r.station, r.seq) in self.refuse for r in reports):
            raise StoreRejected("field type conflict (a test's refusal)")
        super().write_health(reports)

    def write_fluxes(self, records: list[FluxRecord], *, ledger: LedgerItem | None = None) -> None:
        self.calls.append(("write_fluxes", len(records)))
        if any((r.station, r.seq) in self.refuse for r in records):
            raise StoreRejected("field type conflict (a test's refusal)")
        super().write_fluxes(records, ledger=ledger)

    def write_ledger(self, items: list[LedgerItem]) -> None:
        self.calls.append(("write_ledger", len(items)))
        super().write_ledger(items)

    def write_chain_events(self, events: list[ChainEvent]) -> None:
        self.calls.append(("write_chain_events", len(events)))
        super().write_chain_events(events)

    def ledger_from(self, site: str, station: str, channel: str, at: int, limit: int) -> list[LedgerItem]:
        self.calls.append(("ledger_from", 1))
        return super().ledger_from(site, station, channel, at, limit)

    def ledger_windows(self, starts: list[tuple[str, str, str, int]], limit: int) -> list[list[LedgerItem]]:
        self.calls.append(("ledger_windows", len(starts)))
        # SqliteStore asks `ledger_from` for each: one request here, not counted as look-ups of their own
        return [super(CountingStore, self).ledger_from(*start, limit) for start in starts]


def health_item(signer: ChainSigner, name: str, seq: int) -> tuple[str, bytes, str]:
    topic = health_topic("site1", name)
    payload = encode_health(report(seq, station=name, site="site1", time=utc_now().replace(microsecond=seq)))
    return topic, payload, signer.envelope("health", topic, seq, payload)


def flux_item(signer: ChainSigner, name: str, seq: int) -> tuple[str, bytes, str]:
    topic = fluxes_topic("site1", name)
    record = flux_record(name, end=T0 + timedelta(minutes=30 * (seq + 1))).model_copy(update={"seq": seq})
    payload = encode_flux_record(record)
    return topic, payload, signer.envelope("fluxes", topic, seq, payload)


def make_ingestor(store: SqliteStore, tmp_path: Path, shared: bool = False) -> Ingestor:
    return Ingestor(MqttSettings(port=1), store, tmp_path / "data", retry_initial_s=0.01, retry_max_s=0.05,
                    signatures="required", role="data", shared_group="g" if shared else None)


@pytest.mark.parametrize("shared", [False, True])
def test_health_reports_and_batches_of_a_group_go_to_the_store_in_one_step(tmp_path: Path, shared: bool) -> None:
    store = CountingStore(tmp_path / "count.sqlite")
    ingestor = make_ingestor(store, tmp_path, shared)
    st1, st2 = station(tmp_path, "st1"), station(tmp_path, "st2")
    group = [health_item(st1, "st1", 0), (readings_topic("site1", "st1"), *item(st1, 0, [1.0])),
             health_item(st2, "st2", 0), health_item(st1, "st1", 1),
             (readings_topic("site1", "st2"), *item(st2, 0, [2.0], "st2"))]

    assert ingestor.handle_group(group) is True

    lookups = [("ledger_windows", 5)] if shared else []  # one request for the group's five items, none each
    assert store.calls == [*lookups, ("write_chain_events", 4), ("write_health", 3), ("write_many", 2 + 3)]
    for name, channels in (("st1", ["health", "health", "readings"]), ("st2", ["health", "readings"])):
        ledger = store.ledger_items(name, 0, 2**62)
        assert [i.channel for i in ledger] == channels
        assert all(i.payload is not None for i in ledger)  # the signed payload kept, as for one by one
    assert {(r.station, r.seq) for r in store.latest_health()} == {("st1", 1), ("st2", 0)}
    counters = ingestor.counters()
    assert (counters["health_reports_stored"], counters["readings_stored"], counters["batches_stored"]) == (3, 2, 2)
    assert counters["chain_events"] == {"chain_start": 4}
    receipts = {(r.station, r.channel): r.stored for r in ingestor._receipts.take()}
    assert receipts == {("st1", "health"): [(0, 1)], ("st1", "readings"): [(0, 0)], ("st2", "health"): [(0, 0)],
                        ("st2", "readings"): [(0, 0)]}
    store.close()


def test_a_health_report_the_store_refuses_is_dead_lettered_alone(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "count.sqlite", refuse=frozenset({("st2", 0)}))
    ingestor = make_ingestor(store, tmp_path)
    st1, st2 = station(tmp_path, "st1"), station(tmp_path, "st2")
    group = [health_item(st1, "st1", 0), health_item(st2, "st2", 0), health_item(st1, "st1", 1)]

    assert ingestor.handle_group(group) is True

    # the group's write refused, then each report alone: the refused one is left out with its ledger item
    assert ("write_health", 3) in store.calls and store.calls.count(("write_health", 1)) == 3
    assert [i.seq for i in store.ledger_items("st1", 0, 2**62)] == [0, 1]
    assert store.ledger_items("st2", 0, 2**62) == []
    assert {(r.station, r.seq) for r in store.latest_health()} == {("st1", 1)}
    [record] = [json.loads(line) for line in ingestor.dead_letter_path.read_text().splitlines()]
    assert (record["reason"], record["topic"]) == ("rejected_by_store", health_topic("site1", "st2"))
    assert "field type conflict" in record["problem"]
    receipts = {(r.station, r.channel): (r.stored, r.dead_lettered) for r in ingestor._receipts.take()}
    assert receipts == {("st1", "health"): ([(0, 1)], []), ("st2", "health"): ([], [(0, 0)])}
    assert ingestor.counters()["health_reports_stored"] == 2
    store.close()


def test_flux_records_of_a_group_go_to_the_store_in_one_step_and_a_refused_one_alone(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "count.sqlite", refuse=frozenset({("st2", 0)}))
    ingestor = make_ingestor(store, tmp_path)
    st1, st2 = station(tmp_path, "st1"), station(tmp_path, "st2")
    group = [flux_item(st1, "st1", 0), flux_item(st2, "st2", 0), flux_item(st1, "st1", 1),
             (readings_topic("site1", "st1"), *item(st1, 0, [1.0]))]

    assert ingestor.handle_group(group) is True

    # one write of the group's records (refused), then each alone; their ledger items with the group's readings
    assert store.calls[:4] == [("write_chain_events", 3), ("write_fluxes", 3), ("write_fluxes", 1),
                               ("write_fluxes", 1)]
    assert store.calls[4:] == [("write_fluxes", 1), ("write_many", 1 + 2)]
    assert [i.channel for i in store.ledger_items("st1", 0, 2**62)] == ["fluxes", "fluxes", "readings"]
    assert store.ledger_items("st2", 0, 2**62) == []
    assert len(store.query_fluxes("st1", T0, T0 + timedelta(hours=2))) == 2
    assert store.query_fluxes("st2", T0, T0 + timedelta(hours=2)) == []
    [record] = [json.loads(line) for line in ingestor.dead_letter_path.read_text().splitlines()]
    assert (record["reason"], record["topic"]) == ("rejected_by_store", fluxes_topic("site1", "st2"))
    receipts = {(r.station, r.channel): (r.stored, r.dead_lettered) for r in ingestor._receipts.take()}
    assert receipts == {("st1", "fluxes"): ([(0, 1)], []), ("st2", "fluxes"): ([], [(0, 0)]),
                        ("st1", "readings"): ([(0, 0)], [])}
    assert ingestor.counters()["flux_records_stored"] == 2
    store.close()


def test_a_shared_worker_places_a_looked_up_group_as_it_would_one_by_one(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Out of order, resent, and resent within the group: the same ledger and chain events with the group's ledger
    windows looked up at once as with a look-up per item (the windows from before the group was split are not
    used after it: `forget_prefetched`)."""

    def run(name: str, prefetch: bool) -> tuple[list[tuple[str, int]], list[int], list[tuple[str, int]]]:
        store = CountingStore(tmp_path / f"{name}.sqlite")
        ingestor = make_ingestor(store, tmp_path / name, shared=True)
        signer = station(tmp_path / name, "st1")
        if not prefetch:
            monkeypatch.setattr(ingestor.chain, "prefetch", lambda items: None)
        items = [(readings_topic("site1", "st1"), *item(signer, seq, [float(seq)])) for seq in range(5)]
        assert ingestor.handle_group([items[0], items[1]])
        # a group with a batch before its predecessor, a resend of a stored batch, one resent within the group
        assert ingestor.handle_group([items[3], items[1], items[2], items[4], items[4]])
        events: list[tuple[str, int]] = sorted((e.kind, e.seq) for e in store.chain_events("st1", 0, 2**62))
        ledger = [i.seq for i in store.ledger_items("st1", 0, 2**62)]
        calls = store.calls
        store.close()
        return events, ledger, calls

    (tmp_path / "each").mkdir()
    (tmp_path / "group").mkdir()
    each_events, each_ledger, each_calls = run("each", prefetch=False)
    group_events, group_ledger, group_calls = run("group", prefetch=True)

    assert group_ledger == each_ledger == [0, 1, 2, 3, 4]
    assert group_events == each_events
    assert ("duplicate", 1) in group_events and ("duplicate", 4) in group_events
    assert each_calls.count(("ledger_from", 1)) >= 7  # a look-up per item
    # the groups' windows in one request each; the items placed after the second group was split (at the resend
    # of 1, then at 4 and at its copy) are looked up alone: 1, 2, 4, 4; 0, 1 and 3 came from the windows
    assert [c for c in group_calls if c[0] == "ledger_windows"] == [("ledger_windows", 2), ("ledger_windows", 5)]
    assert group_calls.count(("ledger_from", 1)) == 4


def test_a_window_looked_up_before_another_worker_stored_the_item_is_not_used_once_forgotten(tmp_path: Path) -> None:
    from .test_chain_workers import RECEIVED, S, Station, store_item

    store = SqliteStore(tmp_path / "chain.sqlite")
    signer = Station(tmp_path)
    a, b = ChainTracker(store, shared=True), ChainTracker(store, shared=True)
    first = signer.item(0, RECEIVED)
    store_item(store, a, first, a.place(first))
    second = signer.item(1, RECEIVED + S)
    a.prefetch([second])
    store_item(store, b, second, b.place(signer.item(1, RECEIVED + S)))  # B stores it meanwhile

    a.forget_prefetched()  # what the worker does when its group was split and stored in part
    placement = a.place(signer.item(1, RECEIVED + 2 * S))

    assert (placement.new, [e.kind for e in placement.events]) == (False, ["duplicate"])
    # and a window is used once: the next placing of the same item asks the ledger again
    a.prefetch([signer.item(2, RECEIVED + 3 * S)])
    third = signer.item(2, RECEIVED + 3 * S)
    store_item(store, a, third, a.place(third))
    assert [e.kind for e in a.place(signer.item(2, RECEIVED + 4 * S)).events] == ["duplicate"]
    store.close()


def test_two_workers_with_looked_up_groups_still_tell_gaps_duplicates_and_replays(tmp_path: Path) -> None:
    """Worker B stored items 0-2 of a chain; worker A gets a group with a replay of item 1 (two hours later), a resend
    of item 2 and item 4 (item 3 never came): placed from the group's one look-up, with no query of their own, A
    reports the replay and the duplicate, stores neither again, and the gap once its grace has passed (its check
    then asks the ledger for item 3)."""
    from .test_chain_workers import RECEIVED, S, Station, store_item

    store = CountingStore(tmp_path / "chain.sqlite")
    signer = Station(tmp_path)
    a = ChainTracker(store, shared=True, replay_after_s=3600)
    b = ChainTracker(store, shared=True, replay_after_s=3600)
    for seq in range(3):
        item_b = signer.item(seq, RECEIVED + seq * S)
        store_item(store, b, item_b, b.place(item_b))
    signer.item(3, RECEIVED + 3 * S)  # signed, lost on the way
    # a replayer's copy of item 1 held back two hours, the station's resend of item 2 after its receipt timeout
    group = [signer.item(1, RECEIVED + 7200 * S), signer.item(2, RECEIVED + 40 * S),
             signer.item(4, RECEIVED + 41 * S)]
    store.calls.clear()

    a.prefetch(group)
    placements = [a.place(item_a) for item_a in group]

    assert store.calls == [("ledger_windows", 3)]  # one look-up for the group, none per item
    assert [(p.new, [e.kind for e in p.events]) for p in placements] == [
        (False, ["replay"]), (False, ["duplicate"]), (True, [])]
    store_item(store, a, group[2], placements[2])
    assert a.due_events(RECEIVED + 41 * S + 29 * S) == []  # item 3 may be with the other worker: not yet a gap
    [gap] = a.due_events(RECEIVED + 41 * S + 31 * S)  # still missing after the grace
    assert (gap.kind, gap.seq) == ("gap", 4)
    assert [i.seq for i in store.ledger_items("st1", 0, 2**62)] == [0, 1, 2, 4]
    store.close()
