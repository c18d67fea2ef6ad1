"""Raw uplink (`streams.uplink: all`): the raw channel's outbox. Every closed archive file is hard-linked into
`<archive_dir>/outbox/` and given a `seq` in the table `raw_outbox` of the station's buffer file; the station's one
delivery path (gateway/edge/delivery.py) sends it as a `gateway.contract.RawChunk` on
`sinkwatch/v1/<site>/<station>/raw`, and only the central service's receipt (its raw archive has fsynced the file)
deletes the row and the link. So a file survives broker crashes and station restarts like the reading buffer.

Crash safety: the link is made before the row, and the row deleted before the link, so a crash leaves at most a
link without a row, which the next start enqueues again (a resend the central archive recognises as a duplicate).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from gateway.contract import Channel, raw_payload, raw_topic
from gateway.edge.delivery import OutboxItem
from gateway.rawarchive import archive_suffix

log = logging.getLogger("sinkwatch.edge.streams")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS raw_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    file TEXT NOT NULL UNIQUE
);
"""


class RawOutbox:
    """Closed archive files waiting for the central service's receipt (an `OutboxSource`)."""

    channel: Channel = "raw"
    unit = "files"

    def __init__(self, site: str, station: str, outbox: Path, db_path: Path | str,
                 notify: Callable[[], None] | None = None) -> None:
        self.site = site
        self.station = station
        self.outbox = outbox
        self.topic = raw_topic(site, station)
        self.notify = notify
        outbox.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._reconcile()

    def _reconcile(self) -> None:
        """Links without a row (a crash between link and row, or an outbox of an older version) get one; rows
        without a link are dropped."""
        with self._lock:
            known = {f for (f,) in self._db.execute("SELECT file FROM raw_outbox")}
            on_disk = {p.name for p in self.outbox.iterdir() if archive_suffix(p.name) is not None}
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT OR IGNORE INTO raw_outbox(file) VALUES (?)",
                                 [(f,) for f in sorted(on_disk - known)])
            self._db.executemany("DELETE FROM raw_outbox WHERE file=?", [(f,) for f in known - on_disk])
            self._db.execute("COMMIT")
            # counted once, then kept by every change (this connection is the table's only writer): the status
            # snapshot reads the backlog every few seconds
            self._pending = int(self._db.execute("SELECT COUNT(*) FROM raw_outbox").fetchone()[0])

    def enqueue(self, path: Path) -> None:
        """Called with a closed archive file (stream runner thread): a hard link in the outbox keeps it until its
        receipt."""
        link = self.outbox / path.name
        try:
            os.link(path, link)
        except FileExistsError:
            pass
        except OSError:
            link.write_bytes(path.read_bytes())  # another file system: copy
        with self._lock:
            self._pending += self._db.execute("INSERT OR IGNORE INTO raw_outbox(file) VALUES (?)",
                                              (path.name,)).rowcount
        if self.notify is not None:
            self.notify()

    def _payload(self, seq: int, name: str) -> bytes | None:
        try:
            return raw_payload(self.site, self.station, self.outbox / name, seq)
        except FileNotFoundError:
            with self._lock:
                self._pending -= self._db.execute("DELETE FROM raw_outbox WHERE seq=?", (seq,)).rowcount
            log.error("raw uplink: %s vanished from %s before its receipt; dropped from the outbox", name,
                      self.outbox)
            return None

    def claim(self, limit: int, exclude: set[int]) -> list[OutboxItem]:
        with self._lock:
            rows = self._db.execute("SELECT seq, file FROM raw_outbox ORDER BY seq LIMIT ?",
                                    (limit + len(exclude),)).fetchall()
        items: list[OutboxItem] = []
        for seq, name in rows:
            if seq in exclude or len(items) >= limit:
                continue
            payload = self._payload(int(seq), name)
            if payload is not None:
                items.append(OutboxItem(int(seq), payload))
        return items

    def reload(self, seq: int) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT file FROM raw_outbox WHERE seq=?", (seq,)).fetchone()
        return self._payload(seq, row[0]) if row else None

    def confirm(self, ranges: Sequence[tuple[int, int]]) -> tuple[int, int]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            names = [n for r in ranges
                     for (n,) in self._db.execute("SELECT file FROM raw_outbox WHERE seq BETWEEN ? AND ?", r)]
            deleted = sum(self._db.execute("DELETE FROM raw_outbox WHERE seq BETWEEN ? AND ?", r).rowcount
                          for r in ranges)
            self._db.execute("COMMIT")
            self._pending -= deleted
        for name in names:
            (self.outbox / name).unlink(missing_ok=True)
        return len(names), len(names)

    def pending(self) -> int:
        """Files waiting for their receipt, kept in memory: COUNT(*) of `raw_outbox`."""
        return self._pending

    def pending_files(self) -> list[Path]:
        with self._lock:
            return [self.outbox / n for (n,) in self._db.execute("SELECT file FROM raw_outbox ORDER BY seq")]

    def oldest_time(self) -> float | None:
        if self._pending == 0:  # the common case at a station that keeps up: no query, no listing
            return None
        for path in self.pending_files():
            try:
                return path.stat().st_mtime
            except OSError:
                continue
        return None

    def close(self) -> None:
        with self._lock:
            self._db.close()
