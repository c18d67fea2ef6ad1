"""The station's signer: every item the delivery path publishes is signed and linked to the item before it on its
channel (gateway/trust/signing.py), and the link is kept in the station's buffer file until the item's receipt.

    signer = ChainSigner(load_private_key(config.signing_key), buffer_path)
    Delivery(..., signer=signer)      # Delivery._publish asks `signer.envelope(...)` for each PUBLISH

A link is made once, when an item is first published, in one transaction with the channel's chain head (the last
item linked): `chain_links` (channel, seq -> epoch, at, previous item, digest) and `chain_heads` (channel -> its
last link). A resend, also after a restart, reuses the link, so the item is the same signed bytes every time; only
the first item of a new buffer file starts a new chain (a new random `epoch`). `forget` drops the links of
confirmed items; the head stays, so the next item still names its predecessor. It drops them in the next new
link's transaction (or at `close`), not in one of their own: a commit here is an fsync (`synchronous=FULL`, ~0.3 ms
of CPU and three context switches on the bench machine), and one per receipt was a quarter of the delivery
thread's commits. A crash in between leaves those few rows behind, never read again: their items are gone from
the outboxes (deleted on the receipt, before the drop in the file's one write-ahead log, so a drop never survives a
power cut without its delete: gateway/edge/buffer.py), and a seq is never linked twice.

Items must be byte-identical on every resend (the outboxes make them so); a payload that changed under an existing
link is signed again under the same link, counted in `payload_changes` and logged, since the central service will
see it as a fork of its chain.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from gateway.contract import RawChunk, raw_file_bytes
from gateway.trust.keys import Ed25519PrivateKey, key_id
from gateway.trust.signing import NO_CONTENT, Link, Signed, envelope_text, sha256_hex, sign

log = logging.getLogger("sinkwatch.edge.signer")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chain_links (
    channel TEXT NOT NULL,
    seq INTEGER NOT NULL,
    epoch TEXT NOT NULL,
    at INTEGER NOT NULL,
    prev_seq INTEGER,
    prev_at INTEGER,
    prev_digest TEXT,
    payload_sha256 TEXT NOT NULL,
    content TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (channel, seq)
);
CREATE TABLE IF NOT EXISTS chain_heads (
    channel TEXT PRIMARY KEY,
    epoch TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at INTEGER NOT NULL,
    digest TEXT NOT NULL
);
"""


def raw_content(payload: bytes) -> str:
    """The raw channel's content digest: SHA-256 of the archive file a `RawChunk` payload carries (the file as
    stored, whatever its transfer encoding)."""
    try:
        data = raw_file_bytes(RawChunk.model_validate_json(payload))
    except ValueError:  # pydantic's ValidationError is one
        return NO_CONTENT
    return sha256_hex(data)


class ChainSigner:
    """Signs and links items; used by the `delivery` thread only (plus `health()` readers)."""

    def __init__(self, key: Ed25519PrivateKey, path: Path | str, *,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.key = key
        self.key_id = key_id(key.public_key())
        self._clock_ns = clock_ns
        self._lock = threading.Lock()
        self._db = sqlite3.connect(Path(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._forgotten: list[tuple[str, int, int]] = []  # (channel, first, last): dropped with the next link
        self.signed = 0  # items signed for the first time
        self.resigned = 0  # resends signed under their existing link
        self.payload_changes = 0

    def envelope(self, channel: str, topic: str, seq: int, payload: bytes) -> str:
        """The `sinkwatch-sig` user property for one PUBLISH of item (channel, seq)."""
        payload_sha256 = sha256_hex(payload)
        with self._lock:
            row = self._db.execute("SELECT epoch, at, prev_seq, prev_at, prev_digest, payload_sha256, content "
                                   "FROM chain_links WHERE channel=? AND seq=?", (channel, seq)).fetchone()
            if row is not None:
                link = Link(row[0], seq, int(row[1]), row[2], row[3], row[4])
                self.resigned += 1
                if row[5] != payload_sha256:
                    self.payload_changes += 1
                    log.error("%s item %d changed since it was first signed; the central service will record a "
                              "fork of the %s chain (an outbox must resend the same bytes)", channel, seq, channel)
                signed = sign(self.key, topic, channel, link, payload, str(row[6]), key_id=self.key_id)
            else:
                content = raw_content(payload) if channel == "raw" else NO_CONTENT
                signed = self._new_link(channel, topic, seq, payload, payload_sha256, content)
                self.signed += 1
        return envelope_text(signed.envelope)

    def _new_link(self, channel: str, topic: str, seq: int, payload: bytes, payload_sha256: str,
                  content: str) -> Signed:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            head = db.execute("SELECT epoch, seq, at, digest FROM chain_heads WHERE channel=?", (channel,)).fetchone()
            now = self._clock_ns()
            if head is None:
                link = Link(os.urandom(8).hex(), seq, now)
            else:
                link = Link(str(head[0]), seq, max(now, int(head[2]) + 1), int(head[1]), int(head[2]), str(head[3]))
            signed = sign(self.key, topic, channel, link, payload, content, key_id=self.key_id)
            db.execute("INSERT INTO chain_links(channel, seq, epoch, at, prev_seq, prev_at, prev_digest, "
                       "payload_sha256, content, digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (channel, seq, link.epoch, link.at, link.prev_seq, link.prev_at, link.prev_digest,
                        payload_sha256, content, signed.digest))
            db.execute("INSERT OR REPLACE INTO chain_heads(channel, epoch, seq, at, digest) VALUES (?, ?, ?, ?, ?)",
                       (channel, link.epoch, seq, link.at, signed.digest))
            self._drop_forgotten()
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        self._forgotten.clear()
        return signed

    def _drop_forgotten(self) -> None:
        self._db.executemany("DELETE FROM chain_links WHERE channel=? AND seq BETWEEN ? AND ?", self._forgotten)

    def forget(self, channel: str, ranges: Sequence[tuple[int, int]]) -> None:
        """Drop the links of items a receipt confirmed (the chain head stays), with the next new link (module doc)."""
        with self._lock:
            self._forgotten.extend((channel, first, last) for first, last in ranges)

    def health(self) -> dict[str, object]:
        with self._lock:
            heads = {str(c): {"epoch": e, "seq": int(s)} for c, e, s in
                     self._db.execute("SELECT channel, epoch, seq FROM chain_heads")}
        return {"key_id": self.key_id, "signed": self.signed, "resigned": self.resigned,
                "payload_changes": self.payload_changes, "chains": heads}

    def close(self) -> None:
        with self._lock:
            if self._forgotten:
                self._db.execute("BEGIN IMMEDIATE")
                self._drop_forgotten()
                self._db.execute("COMMIT")
                self._forgotten.clear()
            self._db.close()
