"""Signatures and chains on the central side: verify each item against its station's registered key, and place it
in its chain (gateway/trust/signing.py; docs/security.md).

    verifier = Verifier(KeyRegistry(data_dir), required=True)
    item = verifier.verify(site, station, channel, topic, payload, envelope_text)   # or raise Untrusted
    placed = tracker.place(item)          # new? which chain events (gap, duplicate, replay, reorder, fork, ...)
    store.write(readings, ledger=ledger_item(item, ...) if placed.new else None)
    tracker.stored(item)

**Untrusted** items are never stored and never named in a receipt: a receipt on the claimed station's topic would
make the real station delete its own item of that seq. The reasons: `unsigned` (when signatures are required),
`bad_envelope`, `unknown_station` (no key registered), `revoked_key`, `wrong_station` (a key registered for
another station: A's key on B's topic), `unknown_key`, `bad_signature` (a forgery, or bytes changed on the way).

**Placing an item** needs no query on the usual path: the tracker keeps each chain's head (the item with the
latest `at`), and an item signed after it that names it as predecessor is new and in order. Anything else is
looked up in the store's ledger: the same item already stored is a `duplicate` (a resend; a `replay` when it was
first stored more than `replay_after_s` ago) and is stored once; another item signed at the same instant, or one
whose named predecessor has another digest, is a `fork`; a predecessor not stored is a `gap` (closed when it
arrives: it then counts as a `reorder`, which a resend after a lost item causes routinely); the first item of a new
epoch is a `chain_start`. Events are records for the audit and the operators, not verdicts: the audit decides from
the ledger itself whether the chain is whole.

**Several ingest workers** (processes on one MQTT v5 shared subscription, one store) each place items with their
own tracker, `ChainTracker(store, shared=True)`: no head in memory can be trusted then, so every item is looked up
in the ledger before it is called new (a resend or a replay that reaches another worker is still recognised and
stored once), and what another worker may be storing at this moment is given `grace_s` before it counts as a gap
or a reorder (`ChainTracker`). A worker asks the ledger for a whole group of messages in one request
(`ChainTracker.prefetch`, `LedgerStore.ledger_windows`): the same windows each item's own query would return,
taken a moment earlier, while the group before is being written, as each item's query was. With the host's chain
marks (`gateway/central/chainmarks.py`: per chain, an upper bound of the newest entry stored or being written) an
item signed after its chain's mark is new with nothing stored after it, so it is placed without asking: a chain
start, or a predecessor this worker stored, or one checked after the grace like a gap (the due checks of a worker
in one request, a predecessor stored with another digest then a fork).
"""

from __future__ import annotations

import base64
import heapq
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.central.chainmarks import ChainMarks, chain_name
from gateway.central.store.ledger import ChainEvent, ChainEventKind, LedgerItem, LedgerStore, compress_payload
from gateway.central.store.writeguard import NOTHING, Marks
from gateway.trust.keys import KeyRegistry, RegistryError
from gateway.trust.signing import EnvelopeError, Signed, check, parse_envelope, sha256_hex

UNTRUSTED_REASONS = ("unsigned", "bad_envelope", "unknown_station", "revoked_key", "wrong_station", "unknown_key",
                     "bad_signature", "registry_unreadable")


class Untrusted(Exception):
    """An item that is not provably its station's: dead-lettered, counted, alarmed; never stored nor receipted."""

    def __init__(self, reason: str, problem: str) -> None:
        super().__init__(problem)
        self.reason = reason
        self.problem = problem


@dataclass(frozen=True)
class VerifiedItem:
    site: str
    station: str
    channel: str
    topic: str
    signed: Signed
    received: int  # ns, central clock

    @property
    def digest(self) -> str:
        return self.signed.digest

    def ledger(self, payload: bytes | None, *, data_start: int | None = None,
               data_end: int | None = None) -> LedgerItem:
        """The ledger item of this signed item; `payload` is kept (compressed) when given."""
        envelope = self.signed.envelope
        link = envelope.link
        return LedgerItem(
            site=self.site, station=self.station, channel=self.channel, at=link.at, epoch=link.epoch, seq=link.seq,
            prev_seq=link.prev_seq, prev_at=link.prev_at, prev_digest=link.prev_digest, key_id=envelope.key_id,
            payload_sha256=self.signed.payload_sha256, content=envelope.content,
            signature=base64.b64encode(envelope.signature).decode("ascii"), digest=self.digest,
            received=self.received, data_start=data_start, data_end=data_end,
            payload=compress_payload(payload) if payload is not None else None)


class Verifier:
    def __init__(self, registry: KeyRegistry, *, required: bool) -> None:
        self.registry = registry
        self.required = required

    def verify(self, site: str, station: str, channel: str, topic: str, payload: bytes, envelope_text: str | None,
               received: int, *, recheck_registry: bool = True) -> VerifiedItem | None:
        """The verified item; None for an unsigned item when signatures are optional; Untrusted otherwise.
        `recheck_registry=False`: the key registry as at its last `refresh` (`KeyRegistry.find`)."""
        if envelope_text is None:
            if self.required:
                raise Untrusted("unsigned", f"{channel} item of {site}/{station} carries no signature and this "
                                "central service requires one (the station needs signing_key in its config)")
            return None
        try:
            envelope = parse_envelope(envelope_text)
        except EnvelopeError as exc:
            raise Untrusted("bad_envelope", str(exc)) from None
        try:
            entry = self.registry.find(site, station, envelope.key_id, recheck_file=recheck_registry)
            active = self.registry.active(site, station) if entry is None else None
            owner = (next((e for e in self.registry.entries() if e.key_id == envelope.key_id), None)
                     if entry is None else None)
        except RegistryError as exc:
            raise Untrusted("registry_unreadable", str(exc)) from None
        if entry is None:
            if owner is not None:
                raise Untrusted("wrong_station", f"{channel} item on {site}/{station}'s topic is signed with key "
                                f"{envelope.key_id} of {owner.site}/{owner.station}")
            if active is None:
                raise Untrusted("unknown_station", f"{site}/{station} has no registered key (register it with "
                                "`sinkwatch station provision` or the key registry)")
            raise Untrusted("unknown_key", f"{channel} item of {site}/{station} is signed with key "
                            f"{envelope.key_id}, which is not one of the station's keys")
        if entry.revoked is not None:
            raise Untrusted("revoked_key", f"{channel} item of {site}/{station} is signed with key {entry.key_id}, "
                            f"revoked on {entry.revoked.isoformat()}")
        signed = check(entry.key, topic, channel, envelope, sha256_hex(payload))
        if signed is None:
            raise Untrusted("bad_signature", f"{channel} item {envelope.link.seq} of {site}/{station}: the signature "
                            f"does not match the item (key {entry.key_id})")
        return VerifiedItem(site, station, channel, topic, signed, received)


@dataclass
class Placement:
    new: bool  # store its data and write its ledger item
    events: list[ChainEvent] = field(default_factory=list)


@dataclass
class _Head:
    epoch: str
    at: int
    digest: str


_MISSING = _Head("", -1, "")

#: With several workers, how long an item's predecessor may be missing before that is a gap (s, central clock):
#: another worker may be storing it right now (a group of messages, a store outage it waits out).
SHARED_GRACE_S = 30.0
MAX_PENDING_GAPS = 10_000
#: How long past its grace a pending check may wait to go with others (s): one request a second, not one an item.
DUE_BATCH_S = 1.0
DUE_BATCH_NS = int(DUE_BATCH_S * 1e9)


@dataclass
class _PendingGap:
    event: ChainEvent  # the gap event to record if the predecessor is still missing at `due`
    prev_at: int
    due: int  # ns, central clock
    prev_digest: str | None = None  # the predecessor's digest the item names (a stored other one is a fork)
    prev_seq: int | None = None


ChainKey = tuple[str, str, str]  # site, station, channel


class ChainTracker:
    """Places items in their chains (module doc). One tracker per ingest worker, not shared between threads.

    `shared=False` (one worker stores every item): the tracker's heads are the chains' heads, so an item that
    follows its chain's head is new without a query. `shared=True` (several workers on one shared subscription,
    each with its own tracker, one store): a head is only what this worker last stored, so every item is looked up
    in the store's ledger before it is called new, with its predecessor unless this worker stored it and the first
    item signed after it (one query, `ledger_from`). A predecessor that is not stored may be one another
    worker is storing at this moment: it becomes a `gap` only if it is still not stored `grace_s` later (checked
    when this worker places a later item, or `due_events`), and an item that arrives after a later one received
    less than `grace_s` earlier is concurrent delivery, not a `reorder`. Two workers that place one item at the same
    instant both store it: the stores keep one ledger entry per identity (gateway/central/store/ledger.py)."""

    def __init__(self, store: LedgerStore, *, replay_after_s: float = 3600.0, shared: bool = False,
                 grace_s: float = SHARED_GRACE_S, marks: ChainMarks | None = None) -> None:
        self.store = store
        self.replay_after_ns = int(replay_after_s * 1e9)
        self.shared = shared
        self.grace_ns = int(grace_s * 1e9) if shared else 0
        # a shared tracker's chain marks (gateway/central/chainmarks.py: the host's workers share them); None: every
        # item is looked up in the ledger
        self.marks = marks if shared else None
        self._heads: dict[ChainKey, _Head] = {}
        self._pending: dict[tuple[ChainKey, int], _PendingGap] = {}  # (chain, item at) -> gap to confirm
        self._due: list[tuple[int, ChainKey, int]] = []  # heap of (due, chain, item at) of the pending gaps
        self._waiting_for: dict[tuple[ChainKey, int], list[int]] = {}  # (chain, predecessor at) -> items' at
        # (chain, item at, digest) -> the ledger window `place` would ask for (`prefetch`), each used once
        self._prefetched: dict[tuple[ChainKey, int, str], list[LedgerItem]] = {}

    def prefetch(self, items: list[VerifiedItem]) -> None:
        """A shared tracker: look up in one request what `place` would ask the ledger for each of `items` (a group
        of messages), so that placing them costs no query each. A window is used by the next `place` of its item
        only, and all are dropped by the next `prefetch` or `forget_prefetched` — call that when something the group
        placed before has been stored since (a look-up from before it would miss it). An exclusive tracker needs
        no look-ups on its usual path: nothing to do."""
        self._prefetched = {}
        if not self.shared or not items:
            return
        if self.marks is not None:
            self._learn_marks(items)
            # those signed after their chain's mark will not be looked up (if the mark has not risen meanwhile)
            items = [item for item in items if self._asks_ledger(item)]
            if not items:
                return
        starts = []
        for item in items:
            link = item.signed.envelope.link
            # what `place` asks without knowing the predecessor: from the predecessor on, three items
            starts.append((item.site, item.station, item.channel,
                           link.prev_at if link.prev_at is not None else link.at))
        windows = self.store.ledger_windows(starts, 3)
        self._prefetched = {((item.site, item.station, item.channel), item.signed.envelope.link.at, item.digest): window
                            for item, window in zip(items, windows, strict=True)}

    def _learn_marks(self, items: list[VerifiedItem]) -> None:
        """The marks of the items' chains that have none yet, learned from the ledger in one request under their
        slots' locks (`_mark`'s rule, for a group at once: after an outage a worker meets thousands of chains)."""
        assert self.marks is not None
        chains: dict[tuple[str, str], tuple[str, str, str]] = {}
        for item in items:
            chain = (item.site, chain_name(item.station, item.channel))
            if chain not in chains and self.marks.peek(*chain) is None and not self.marks.taken(*chain):
                chains[chain] = (item.site, item.station, item.channel)
        if not chains:
            return
        with self.marks.hold(chains) as held:
            unknown = [chain for chain in chains if held.get(*chain) is None and not self.marks.taken(*chain)]
            if unknown:
                newest = self.store.ledger_newest_ats([chains[chain] for chain in unknown])
                for chain, at in zip(unknown, newest, strict=True):
                    held.set(*chain, at if at is not None else NOTHING)

    def _asks_ledger(self, item: VerifiedItem) -> bool:
        """Whether placing the item will (most likely) ask the ledger: its chain has no slot, or the item is signed at
        or before the chain's mark. An unknown mark is learned when the item is placed."""
        assert self.marks is not None
        chain = (item.site, chain_name(item.station, item.channel))
        mark = self.marks.peek(*chain)
        if mark is None:
            return self.marks.taken(*chain)
        return item.signed.envelope.link.at <= mark

    def forget_prefetched(self) -> None:
        self._prefetched = {}

    def _head(self, item: VerifiedItem) -> _Head:
        key = (item.site, item.station, item.channel)
        head = self._heads.get(key)
        if head is None:
            last = self.store.ledger_last(*key)
            head = _Head(last.epoch, last.at, last.digest) if last is not None else _MISSING
            self._heads[key] = head
        return head

    def place(self, item: VerifiedItem) -> Placement:
        """Whether the item is new in its chain, and the chain events it and the gaps now due make."""
        placement, mark_raised = self._place(item)
        if placement.new and self.marks is not None and not mark_raised:
            self._raise_mark(item)  # before its entry is written
        return placement

    def _place(self, item: VerifiedItem) -> tuple[Placement, bool]:
        """The placement, and whether the chain's mark decided it (and was raised to the item already)."""
        link = item.signed.envelope.link
        key = (item.site, item.station, item.channel)

        def event(kind: ChainEventKind, detail: str) -> ChainEvent:
            return ChainEvent(item.site, item.station, item.channel, kind, link.at, link.seq, item.digest,
                              item.received, detail)

        known = self._heads.get(key) if self.shared else None
        predecessor_known = (known is not None and link.prev_at is not None and known.at == link.prev_at
                             and known.digest == link.prev_digest)  # this worker stored it
        looked_up: dict[int, LedgerItem] = {}
        if self.marks is not None:
            by_mark = self._place_by_mark(item, predecessor_known, event)
            if by_mark is not None:
                return Placement(True, [*by_mark, *self._due_by_now(item.received)]), True
        if self.shared:
            # one query: the predecessor (unless known), the item itself if stored, the first one signed after it
            first = link.at if predecessor_known or link.prev_at is None else link.prev_at
            prefetched = self._prefetched.pop((key, link.at, item.digest), None)
            # a window from the predecessor on holds what one from the item on would (the item and the next)
            window = prefetched if prefetched is not None else self.store.ledger_from(*key, first, 3)
            if len(window) == 3 and window[-1].at < link.at:  # items between the two: ask for the item itself
                window += self.store.ledger_from(*key, link.at, 2)
            looked_up = {i.at: i for i in window}
            existing = looked_up.get(link.at)
            following = next((i for i in window if i.at > link.at), None) if existing is None else None
        else:
            head = self._head(item)
            if (head is not _MISSING and link.at > head.at and link.epoch == head.epoch
                    and link.prev_digest == head.digest):
                return Placement(new=True), False
            existing = self.store.ledger_at(*key, link.at)
            following = None
        if existing is not None:
            if existing.digest == item.digest:
                age_s = (item.received - existing.received) / 1e9
                if item.received - existing.received > self.replay_after_ns:
                    return Placement(False, [event("replay", f"item {link.seq} arrived again {age_s:.0f} s after it "
                                                   "was stored (a replay, or a station resending after a long "
                                                   "absence); stored once"), *self._due_by_now(item.received)]), False
                return Placement(False, [event("duplicate", f"item {link.seq} arrived again {age_s:.1f} s after it "
                                               "was stored (a resend); stored once"),
                                         *self._due_by_now(item.received)]), False
            return Placement(False, [event("fork", f"item {link.seq} (digest {item.digest[:12]}) was signed at the "
                                           f"same instant as stored item {existing.seq} (digest "
                                           f"{existing.digest[:12]}): two items claim one place in the chain"),
                                     *self._due_by_now(item.received)]), False
        events: list[ChainEvent] = []
        if link.prev_seq is None:
            events.append(event("chain_start", f"chain {link.epoch} begins with item {link.seq}"))
        else:
            assert link.prev_at is not None
            if predecessor_known:
                previous_digest: str | None = link.prev_digest
            else:
                previous = (looked_up.get(link.prev_at) if self.shared
                            else self.store.ledger_at(*key, link.prev_at))
                previous_digest = previous.digest if previous is not None else None
            if previous_digest is None:
                gap = event("gap", f"item {link.seq} follows item {link.prev_seq}, which is not stored (yet)")
                if self.shared and len(self._pending) < MAX_PENDING_GAPS:
                    self._defer(key, link.at, _PendingGap(gap, link.prev_at, item.received + self.grace_ns,
                                                          link.prev_digest, link.prev_seq))
                else:
                    events.append(gap)
            elif previous_digest != link.prev_digest:
                events.append(event("fork", f"item {link.seq} names item {link.prev_seq} with digest "
                                    f"{(link.prev_digest or '')[:12]}, the stored one has {previous_digest[:12]}"))
        if not self.shared:
            following = self.store.ledger_after(*key, link.at)
        concurrent = self.shared and following is not None and item.received - following.received < self.grace_ns
        if following is not None and following.epoch == link.epoch and not concurrent:
            events.append(event("reorder", f"item {link.seq} arrived after item {following.seq}, signed later"))
        return Placement(True, [*events, *self._due_by_now(item.received)]), False

    def _place_by_mark(self, item: VerifiedItem, predecessor_known: bool,
                       event: Callable[[ChainEventKind, str], ChainEvent]) -> list[ChainEvent] | None:
        """A shared tracker with marks: the events of an item signed after its chain's mark (new, nothing after it
        stored; its mark raised to it before anyone else can decide on the chain), or None when the ledger must be
        asked (at or before the mark, no mark, the pending gaps full)."""
        assert self.marks is not None
        link = item.signed.envelope.link
        chain = (item.site, chain_name(item.station, item.channel))
        with self.marks.hold([chain]) as held:
            mark = self._mark(held, item)
            if mark is None or link.at <= mark or len(self._pending) >= MAX_PENDING_GAPS:
                return None
            held.set(*chain, link.at)
        if link.prev_seq is None:
            return [event("chain_start", f"chain {link.epoch} begins with item {link.seq}")]
        if not predecessor_known:
            # stored by another worker, being stored, or missing: asked after the grace, as for a gap
            assert link.prev_at is not None
            gap = event("gap", f"item {link.seq} follows item {link.prev_seq}, which is not stored (yet)")
            self._defer((item.site, item.station, item.channel), link.at, _PendingGap(
                gap, link.prev_at, item.received + self.grace_ns, link.prev_digest, link.prev_seq))
        return []

    def _mark(self, held: Marks, item: VerifiedItem) -> int | None:
        """The chain's mark under its held lock, learned from the ledger the first time; None without a slot."""
        assert self.marks is not None
        chain = (item.site, chain_name(item.station, item.channel))
        mark = held.get(*chain)
        if mark is None:
            if self.marks.taken(*chain):
                return None
            newest = self.store.ledger_newest_at(item.site, item.station, item.channel)
            mark = newest if newest is not None else NOTHING
            held.set(*chain, mark)
        return mark

    def _raise_mark(self, item: VerifiedItem) -> None:
        assert self.marks is not None
        at = item.signed.envelope.link.at
        chain = (item.site, chain_name(item.station, item.channel))
        with self.marks.hold([chain]) as held:
            mark = self._mark(held, item)
            if mark is not None and at > mark:
                held.set(*chain, at)

    def _defer(self, key: ChainKey, at: int, pending: _PendingGap) -> None:
        self._pending[(key, at)] = pending
        heapq.heappush(self._due, (pending.due, key, at))
        self._waiting_for.setdefault((key, pending.prev_at), []).append(at)

    def _due_by_now(self, now: int) -> list[ChainEvent]:
        """`due_events` when placing an item: only once the oldest pending check is `DUE_BATCH_S` overdue, so that
        with two workers (about every other predecessor checked after the grace) a second's checks go in one
        request rather than one each."""
        if self._due and self._due[0][0] <= now - DUE_BATCH_NS:
            return self.due_events(now)
        return []

    def due_events(self, now: int) -> list[ChainEvent]:
        """Gaps whose grace has passed by `now` (ns, central clock) and whose predecessor is still not stored (or
        is stored with another digest than the item names: a fork), asked in one request (a shared tracker; a
        worker may call this when idle, `place` does it for every item)."""
        due: list[tuple[ChainKey, _PendingGap]] = []
        while self._due and self._due[0][0] <= now:
            _, key, at = heapq.heappop(self._due)
            pending = self._pending.pop((key, at), None)
            if pending is not None:
                due.append((key, pending))
                waiting = self._waiting_for.get((key, pending.prev_at))
                if waiting is not None and at in waiting:
                    waiting.remove(at)
                    if not waiting:
                        del self._waiting_for[(key, pending.prev_at)]
        if not due:
            return []
        windows = self.store.ledger_windows([(*key, pending.prev_at) for key, pending in due], 1)
        events = []
        for (_, pending), window in zip(due, windows, strict=True):
            found = window[0] if window and window[0].at == pending.prev_at else None
            e = pending.event
            if found is None:
                events.append(ChainEvent(e.site, e.station, e.channel, e.kind, e.at, e.seq, e.digest, now,
                                         f"{e.detail}, {self.grace_ns / 1e9:.0f} s after it arrived"))
            elif pending.prev_digest is not None and found.digest != pending.prev_digest:
                events.append(ChainEvent(e.site, e.station, e.channel, "fork", e.at, e.seq, e.digest, now,
                                         f"item {e.seq} names item {pending.prev_seq} with digest "
                                         f"{pending.prev_digest[:12]}, the stored one has {found.digest[:12]}"))
        return events

    def stored(self, item: VerifiedItem) -> None:
        """The item's data and ledger item are stored: it may be the chain's new head."""
        link = item.signed.envelope.link
        key = (item.site, item.station, item.channel)
        head = self._heads.get(key)
        if head is None or link.at > head.at or self.shared:
            self._heads[key] = _Head(link.epoch, link.at, item.digest)
        for at in self._waiting_for.pop((key, link.at), ()):
            self._pending.pop((key, at), None)


def set_aside_json(indices: dict[int, str]) -> str:
    return json.dumps({str(index): reason for index, reason in sorted(indices.items())}, separators=(",", ":"))
