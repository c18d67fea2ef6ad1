"""The ledger: every signed item the central service stored, with what an audit needs to check it again, and the
chain events seen while storing (gateway/trust/signing.py has the signed bytes; docs/security.md what it stops).

**Ledger item** (one per signed item stored; identity = site, station, channel, `at` — the station's signing time,
which rises strictly within a chain, so InfluxDB gets one point per item without a tag per item): every field of
the signed bytes (epoch, seq, the previous item's seq/at/digest, key id, payload and content digests), the
signature, the item's digest, when the central service received it, the time span of the data it carried, for
readings and fluxes the payload itself (zlib), and for readings the indices of readings set aside at ingest with
the reason. Written once: a second write of the same identity changes nothing (a resend), the readings or flux
record it carried are written in the same transaction (SQLite) or request (InfluxDB).

Readings do not carry a digest per stored point and no tag per batch: the ledger item lists nothing per reading
but keeps the signed payload, so the audit compares every signed reading with the point the store holds at its
identity (site, station, sensor, variable, time) and needs no extra cardinality in the readings measurement.

**Chain event** (`kind`: gap, duplicate, replay, reorder, fork, chain_start): what the ingestor noticed about an
item's place in its chain, with the item's seq, at and digest, when it was noticed and a sentence. Identity =
site, station, channel, kind, at: an item re-sent ten times is one duplicate event (its latest sighting).
"""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from gateway.trust.signing import Envelope, Link

if TYPE_CHECKING:  # base imports this module for the Store protocol
    from gateway.central.store.base import ReadingIdentity, StoredReading

ChainEventKind = Literal["gap", "duplicate", "replay", "reorder", "fork", "chain_start"]
CHAIN_EVENT_KINDS: tuple[ChainEventKind, ...] = ("gap", "duplicate", "replay", "reorder", "fork", "chain_start")


@dataclass(frozen=True)
class LedgerItem:
    site: str
    station: str
    channel: str
    at: int  # ns, the station's signing time: part of the identity
    epoch: str
    seq: int
    prev_seq: int | None
    prev_at: int | None
    prev_digest: str | None
    key_id: str
    payload_sha256: str
    content: str
    signature: str  # base64
    digest: str
    received: int  # ns, central clock
    data_start: int | None = None  # ns: first reading time / flux period end / None
    data_end: int | None = None
    payload: bytes | None = None  # zlib of the exact payload (readings, fluxes)
    set_aside: str | None = None  # JSON {"<index>": "<reason>"} of readings not stored

    @property
    def link(self) -> Link:
        return Link(self.epoch, self.seq, self.at, self.prev_seq, self.prev_at, self.prev_digest)

    def envelope(self) -> Envelope:
        return Envelope(self.key_id, self.link, self.content, base64.b64decode(self.signature))

    def payload_bytes(self) -> bytes | None:
        return zlib.decompress(self.payload) if self.payload is not None else None


#: zlib's fastest level: the central ingest compresses every signed payload it stores, and level 6 took a quarter
#: of a catch-up's readings work (a batch of 500 readings: 1.7 ms against 0.47 ms at level 1, 5.0 against 6.4 kB;
#: a real-time batch of 12: 96 against 49 µs, 427 against 447 bytes; docs/performance.md). Any level reads back
#: with `zlib.decompress`, so copies stored at level 6 stay readable.
PAYLOAD_ZLIB_LEVEL = 1


def compress_payload(payload: bytes) -> bytes:
    return zlib.compress(payload, PAYLOAD_ZLIB_LEVEL)


@dataclass(frozen=True)
class ChainEvent:
    site: str
    station: str
    channel: str
    kind: ChainEventKind
    at: int  # the item's signing time (ns)
    seq: int
    digest: str
    detected: int  # ns, central clock
    detail: str


class LedgerStore(Protocol):
    """The ledger methods every store has (`SqliteLedgerMixin`, `InfluxLedgerMixin`); `Store.write` and
    `Store.write_fluxes` take a `ledger=` item to write in the same transaction or request as the data."""

    def write_ledger(self, items: list[LedgerItem]) -> None:
        """Write items whose data needs no store write (raw files, health): each at most once."""

    def note_set_aside(self, item: LedgerItem, set_aside: str) -> None:
        """Record on a written item which of its readings were set aside (JSON index -> reason)."""

    def ledger_at(self, site: str, station: str, channel: str, at: int) -> LedgerItem | None: ...

    def ledger_after(self, site: str, station: str, channel: str, at: int) -> LedgerItem | None:
        """The first item signed after `at` on the channel."""

    def ledger_from(self, site: str, station: str, channel: str, at: int, limit: int) -> list[LedgerItem]:
        """Up to `limit` items of the channel signed at or after `at`, in signing order."""

    def ledger_windows(self, starts: list[tuple[str, str, str, int]], limit: int) -> list[list[LedgerItem]]:
        """`ledger_from(site, station, channel, at, limit)` of each start, in order, in one request where the store
        can (an ingest worker looks up a whole group of items at once); the items may come without their `payload`
        and `set_aside` (placing an item needs neither)."""

    def ledger_last(self, site: str, station: str, channel: str) -> LedgerItem | None: ...

    def ledger_newest_at(self, site: str, station: str, channel: str) -> int | None:
        """The signing time of the channel's newest entry, one that is still being written included (InfluxDB shows
        a point's fields as they arrive): None when there is none."""

    def ledger_newest_ats(self, chains: list[tuple[str, str, str]]) -> list[int | None]:
        """`ledger_newest_at(site, station, channel)` of each chain, in order, in one request where the store can
        (an ingest worker learns the marks of a catch-up's thousands of chains a group at a time)."""

    def ledger_items(self, station: str, start: int, end: int, *, site: str | None = None) -> list[LedgerItem]:
        """Items of the station signed in [start, end) ns, every channel, ordered by channel then at."""

    def write_chain_events(self, events: list[ChainEvent]) -> None: ...

    def chain_events(self, station: str, start: int, end: int) -> list[ChainEvent]:
        """Events of items signed in [start, end) ns, ordered by at."""

    def held_readings(self, items: list[StoredReading]) -> dict[ReadingIdentity, StoredReading]:
        """What the store holds at the identities of `items` (the audit compares them with the signed readings)."""
