"""The station's on-disk buffer: every reading is kept here until the central service confirms it stored the batch.

Store: one SQLite file in WAL mode, written with `synchronous=FULL` so a committed reading survives a power cut
(a field node's most common failure). A reading's life:

    append()  -> row in `readings`, batch_seq NULL          (committed before poll() returns to the scheduler)
    claim()   -> rows get a batch_seq; `batches` row created (the batch's composition is fixed from now on,
                 so a republish after a restart repeats the same seq with the same readings)
    ack_ranges -> rows and batches deleted                   (only on the central service's receipt naming the seq;
                                                              gateway/edge/delivery.py, outbox.py)

A batch that was claimed but never confirmed (the process died, the broker was away or crashed) is handed out again by
`claim()` before any new batch is formed, in sequence order.

Not every commit needs an fsync of its own. Every connection to this file appends to one write-ahead log, and a
`synchronous=FULL` commit fsyncs that whole file, so it makes every commit before it durable too, whichever
connection made them; after a power cut SQLite keeps a prefix of the log (its frames' checksums are cumulative), so
a later commit never survives without an earlier one. Two commits therefore leave their fsync to the next one:

- the delete on a receipt (`ack_ranges`, `ack`): lost in a power cut before the file's next commit, it only means
  the batch is sent again, the same seq and bytes, which the central service stores once (its exactly-once
  identity of a reading) and confirms again. Data still leaves only on the store's confirmation.
- with `durable_claims=False`, a claim that forms a new batch: only for a buffer whose every new batch is followed,
  before its PUBLISH, by a FULL commit to this same file (the station signer's new link, gateway/edge/signer.py,
  which the daemon opens on the buffer's path). A claim lost in a power cut was never sent: its readings are
  batched again, and the seq it had, linked to nothing, is free again.

Each such commit still costs a write but no fsync: ~0.3 ms of CPU and three context switches fewer on the bench
machine (docs/performance.md).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from gateway.contract import SCHEMA_VERSION
from gateway.model import Reading, format_time, utc_now

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL,
    batch_seq INTEGER
);
CREATE INDEX IF NOT EXISTS readings_by_batch ON readings(batch_seq);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY,
    reading_count INTEGER NOT NULL,
    formed TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class ClaimedBatch:
    seq: int
    reading_bodies: list[str]
    formed: str | None = None  # RFC 3339, when the batch was formed: its `sent`, so a resend repeats its bytes

    @property
    def formed_time(self) -> datetime | None:
        return datetime.fromisoformat(self.formed) if self.formed else None

    def payload(self, site: str, station: str, sent: datetime) -> bytes:
        """The ReadingBatch wire payload (docs/asyncapi.yaml), assembled from the stored reading JSON so a
        reading is serialised once, when it is read, not again on every (re)publish. The outbox passes the time
        the batch was formed (`formed_time`) as `sent`, so every resend of a batch is the same bytes and keeps its
        signature and chain digest (gateway/trust/signing.py)."""
        head = json.dumps(
            {"schema_version": SCHEMA_VERSION, "site": site, "station": station, "seq": self.seq,
             "sent": format_time(sent)},
            separators=(",", ":"),
        )
        return (head[:-1] + ',"readings":[' + ",".join(self.reading_bodies) + "]}").encode()


class ReadingBuffer:
    """Thread-safe: the scheduler appends, the publisher claims, paho's network thread acknowledges."""

    def __init__(self, path: Path | str, *, durable_claims: bool = True) -> None:
        self.path = Path(path)
        self.durable_claims = durable_claims  # False: a new batch becomes durable with the signer's link (module doc)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        columns = {name for _, name, *_ in self._db.execute("PRAGMA table_info(batches)")}
        if "formed" not in columns:  # a buffer of an earlier version: its batches get a formed time when resent
            self._db.execute("ALTER TABLE batches ADD COLUMN formed TEXT")
        # What is pending, counted once here and then kept by every commit that changes it (this connection is the
        # file's only writer of these tables): the status snapshot and delivery's health read them every few
        # seconds, and two COUNT(*) queries cost more than the rest of that snapshot's look at the buffer.
        self._readings = int(self._db.execute("SELECT COUNT(*) FROM readings").fetchone()[0])
        self._batches = int(self._db.execute("SELECT COUNT(*) FROM batches").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def append(self, readings: Iterable[Reading]) -> int:
        bodies = [(r.model_dump_json(),) for r in readings]
        if not bodies:
            return 0
        with self._lock:
            with self._transaction():
                self._db.executemany("INSERT INTO readings(body) VALUES (?)", bodies)
            self._readings += len(bodies)  # committed: a rolled-back insert never reaches this line
        return len(bodies)

    def claim(self, max_readings: int, exclude: Sequence[int] = ()) -> ClaimedBatch | None:
        """The oldest unacknowledged batch not in `exclude`, or a new batch of the oldest unbatched readings."""
        with self._lock:
            placeholders = ",".join("?" * len(exclude))
            row = self._db.execute(
                f"SELECT seq, formed FROM batches WHERE seq NOT IN ({placeholders}) ORDER BY seq LIMIT 1",
                tuple(exclude),
            ).fetchone()
            if row is not None:
                seq = int(row[0])
                bodies = [
                    b for (b,) in self._db.execute("SELECT body FROM readings WHERE batch_seq=? ORDER BY id", (seq,))
                ]
                return ClaimedBatch(seq, bodies, row[1] or self._set_formed(seq))
            with self._transaction(durable=self.durable_claims):
                rows = self._db.execute(
                    "SELECT id, body FROM readings WHERE batch_seq IS NULL ORDER BY id LIMIT ?", (max_readings,)
                ).fetchall()
                if not rows:
                    return None
                seq = self._next_seq()
                self._db.execute(
                    "UPDATE readings SET batch_seq=? WHERE batch_seq IS NULL AND id BETWEEN ? AND ?",
                    (seq, rows[0][0], rows[-1][0]),
                )
                formed = format_time(utc_now())
                self._db.execute("INSERT INTO batches(seq, reading_count, formed) VALUES (?, ?, ?)",
                                 (seq, len(rows), formed))
            self._batches += 1
            return ClaimedBatch(seq, [body for _, body in rows], formed)

    def ack(self, seq: int) -> int:
        """Forget a batch the broker has acknowledged; returns how many readings were released."""
        with self._lock:
            with self._transaction(durable=False):  # durable with the file's next commit (module doc)
                deleted = self._db.execute("DELETE FROM readings WHERE batch_seq=?", (seq,)).rowcount
                batches = self._db.execute("DELETE FROM batches WHERE seq=?", (seq,)).rowcount
            self._readings -= deleted
            self._batches -= batches
            return deleted

    def batch(self, seq: int) -> ClaimedBatch | None:
        """A claimed batch still in the buffer (for a resend), None once it is gone."""
        with self._lock:
            bodies = [b for (b,) in self._db.execute("SELECT body FROM readings WHERE batch_seq=? ORDER BY id", (seq,))]
            if not bodies:
                return None
            row = self._db.execute("SELECT formed FROM batches WHERE seq=?", (seq,)).fetchone()
            formed = row[0] if row is not None and row[0] else self._set_formed(seq)
        return ClaimedBatch(seq, bodies, formed)

    def _set_formed(self, seq: int) -> str:
        """Give a batch of an earlier version's buffer its formed time (at its first resend), kept from now on."""
        formed = format_time(utc_now())
        self._db.execute("UPDATE batches SET formed=? WHERE seq=?", (formed, seq))
        return formed

    def ack_ranges(self, ranges: Sequence[tuple[int, int]]) -> tuple[int, int]:
        """Forget every batch whose seq lies in one of the inclusive ranges, in one transaction; returns
        (batches, readings) released."""
        with self._lock:
            with self._transaction(durable=False):  # durable with the file's next commit (module doc)
                readings = batches = 0
                for first, last in ranges:
                    readings += self._db.execute("DELETE FROM readings WHERE batch_seq BETWEEN ? AND ?",
                                                 (first, last)).rowcount
                    batches += self._db.execute("DELETE FROM batches WHERE seq BETWEEN ? AND ?",
                                                (first, last)).rowcount
            self._readings -= readings
            self._batches -= batches
        return batches, readings

    def oldest_time(self) -> float | None:
        """Unix time of the oldest reading in the buffer (its own time stamp)."""
        if self._readings == 0:  # the common case at a station that keeps up: no query
            return None
        with self._lock:
            row = self._db.execute("SELECT json_extract(body, '$.time') FROM readings ORDER BY id LIMIT 1").fetchone()
        if row is None or row[0] is None:
            return None
        return datetime.fromisoformat(str(row[0]).replace("Z", "+00:00")).timestamp()

    def pending_readings(self) -> int:
        """Readings in the buffer (batched or not), kept in memory: COUNT(*) of `readings`."""
        return self._readings

    def pending_batches(self) -> int:
        """Batches claimed and not yet confirmed, kept in memory: COUNT(*) of `batches`."""
        return self._batches

    def _next_seq(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()
        seq = int(row[0]) if row else 0
        self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('next_seq', ?)", (seq + 1,))
        return seq

    def _transaction(self, *, durable: bool = True) -> _Transaction:
        return _Transaction(self._db, durable)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT; not `durable`: committed with synchronous=NORMAL (no fsync), the connection's
    FULL restored after it."""

    def __init__(self, db: sqlite3.Connection, durable: bool) -> None:
        self._db = db
        self._durable = durable

    def __enter__(self) -> None:
        if not self._durable:
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
        finally:
            if not self._durable:
                self._db.execute("PRAGMA synchronous=FULL")
