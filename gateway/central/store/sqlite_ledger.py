"""SqliteStore's ledger tables (`gateway.central.store.ledger`).

    ledger        one row per signed item stored; key (station, channel, at, site); the payload as a zlib BLOB
    chain_events  key (station, channel, at, kind, site)

New tables, created if missing when the store opens; an item is inserted in the transaction that writes its data.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from gateway.central.store.base import ReadingIdentity, StoredReading, StoreUnavailable, reading_identity
from gateway.central.store.ledger import ChainEvent, LedgerItem

LEDGER_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    site TEXT NOT NULL,
    station TEXT NOT NULL,
    channel TEXT NOT NULL,
    at INTEGER NOT NULL,
    epoch TEXT NOT NULL,
    seq INTEGER NOT NULL,
    prev_seq INTEGER,
    prev_at INTEGER,
    prev_digest TEXT,
    key_id TEXT NOT NULL,
    payload_sha256 TEXT NOT NULL,
    content TEXT NOT NULL,
    signature TEXT NOT NULL,
    digest TEXT NOT NULL,
    received INTEGER NOT NULL,
    data_start INTEGER,
    data_end INTEGER,
    payload BLOB,
    set_aside TEXT,
    PRIMARY KEY (station, channel, at, site)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chain_events (
    site TEXT NOT NULL,
    station TEXT NOT NULL,
    channel TEXT NOT NULL,
    kind TEXT NOT NULL,
    at INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    digest TEXT NOT NULL,
    detected INTEGER NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (station, channel, at, kind, site)
) WITHOUT ROWID;
"""

_LEDGER_COLUMNS = ("site, station, channel, at, epoch, seq, prev_seq, prev_at, prev_digest, key_id, payload_sha256, "
                   "content, signature, digest, received, data_start, data_end, payload, set_aside")
_EVENT_COLUMNS = "site, station, channel, kind, at, seq, digest, detected, detail"


def ledger_row(item: LedgerItem) -> tuple[Any, ...]:
    return (item.site, item.station, item.channel, item.at, item.epoch, item.seq, item.prev_seq, item.prev_at,
            item.prev_digest, item.key_id, item.payload_sha256, item.content, item.signature, item.digest,
            item.received, item.data_start, item.data_end, item.payload, item.set_aside)


def _item(row: tuple[Any, ...]) -> LedgerItem:
    fields = dict(zip(_LEDGER_COLUMNS.split(", "), row, strict=True))
    if fields["payload"] is not None:
        fields["payload"] = bytes(fields["payload"])
    return LedgerItem(**fields)


class SqliteLedgerMixin:
    """Mixed into SqliteStore, which provides the connection, its lock and the reading lookup."""

    path: Path
    _conn: sqlite3.Connection
    _lock: threading.Lock

    def _create_ledger_tables(self) -> None:
        self._conn.executescript(LEDGER_SCHEMA)

    def _insert_ledger(self, items: list[LedgerItem]) -> None:
        """Inside the caller's transaction: write-once, a second write of the same identity changes nothing."""
        self._conn.executemany(f"INSERT INTO ledger ({_LEDGER_COLUMNS}) VALUES ({','.join('?' * 19)}) "
                               "ON CONFLICT DO NOTHING", [ledger_row(i) for i in items])

    def _ledger_transaction(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    self._conn.executemany(sql, rows)
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"SQLite database {self.path} refused the write: {exc}; will retry") from exc

    def write_ledger(self, items: list[LedgerItem]) -> None:
        self._ledger_transaction(f"INSERT INTO ledger ({_LEDGER_COLUMNS}) VALUES ({','.join('?' * 19)}) "
                                 "ON CONFLICT DO NOTHING", [ledger_row(i) for i in items])

    def note_set_aside(self, item: LedgerItem, set_aside: str) -> None:
        self._ledger_transaction("UPDATE ledger SET set_aside=? WHERE station=? AND channel=? AND at=? AND site=?",
                                 [(set_aside, item.station, item.channel, item.at, item.site)])

    def _ledger_query(self, where: str, params: tuple[Any, ...], tail: str = "") -> list[LedgerItem]:
        with self._lock:
            try:
                rows = self._conn.execute(f"SELECT {_LEDGER_COLUMNS} FROM ledger WHERE {where} {tail}",
                                          params).fetchall()
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"SQLite database {self.path} failed a query: {exc}") from exc
        return [_item(tuple(row)) for row in rows]

    def ledger_at(self, site: str, station: str, channel: str, at: int) -> LedgerItem | None:
        found = self._ledger_query("station=? AND channel=? AND at=? AND site=?", (station, channel, at, site))
        return found[0] if found else None

    def ledger_after(self, site: str, station: str, channel: str, at: int) -> LedgerItem | None:
        found = self._ledger_query("station=? AND channel=? AND at>? AND site=?", (station, channel, at, site),
                                   "ORDER BY at LIMIT 1")
        return found[0] if found else None

    def ledger_from(self, site: str, station: str, channel: str, at: int, limit: int) -> list[LedgerItem]:
        return self._ledger_query("station=? AND channel=? AND at>=? AND site=?", (station, channel, at, site),
                                  f"ORDER BY at LIMIT {int(limit)}")

    def ledger_windows(self, starts: list[tuple[str, str, str, int]], limit: int) -> list[list[LedgerItem]]:
        return [self.ledger_from(site, station, channel, at, limit) for site, station, channel, at in starts]

    def ledger_newest_at(self, site: str, station: str, channel: str) -> int | None:
        found = self.ledger_last(site, station, channel)  # an entry is inserted whole, in one transaction
        return found.at if found is not None else None

    def ledger_newest_ats(self, chains: list[tuple[str, str, str]]) -> list[int | None]:
        return [self.ledger_newest_at(site, station, channel) for site, station, channel in chains]

    def ledger_last(self, site: str, station: str, channel: str) -> LedgerItem | None:
        found = self._ledger_query("station=? AND channel=? AND site=?", (station, channel, site),
                                   "ORDER BY at DESC LIMIT 1")
        return found[0] if found else None

    def ledger_items(self, station: str, start: int, end: int, *, site: str | None = None) -> list[LedgerItem]:
        where, params = "station=? AND at>=? AND at<?", [station, start, end]
        if site is not None:
            where += " AND site=?"
            params.append(site)
        return self._ledger_query(where, tuple(params), "ORDER BY channel, at")

    def write_chain_events(self, events: list[ChainEvent]) -> None:
        self._ledger_transaction(
            f"INSERT OR REPLACE INTO chain_events ({_EVENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
            [(e.site, e.station, e.channel, e.kind, e.at, e.seq, e.digest, e.detected, e.detail) for e in events])

    def chain_events(self, station: str, start: int, end: int) -> list[ChainEvent]:
        with self._lock:
            try:
                rows = self._conn.execute(f"SELECT {_EVENT_COLUMNS} FROM chain_events WHERE station=? AND at>=? "
                                          "AND at<? ORDER BY at, channel, kind", (station, start, end)).fetchall()
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"SQLite database {self.path} failed a query: {exc}") from exc
        return [ChainEvent(*row) for row in rows]

    def held_readings(self, items: list[StoredReading]) -> dict[ReadingIdentity, StoredReading]:
        from gateway.central.store.sqlite import _READING_COLUMNS, _row_to_stored

        held: dict[ReadingIdentity, StoredReading] = {}
        with self._lock:
            for item in items:
                key = reading_identity(item)
                row = self._conn.execute(
                    f"SELECT {_READING_COLUMNS} FROM readings WHERE site=? AND station=? AND sensor=? AND variable=? "
                    "AND time_ns=?", key).fetchone()
                if row is not None:
                    held[key] = _row_to_stored(row)
        return held
