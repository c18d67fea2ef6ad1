"""InfluxStore's ledger (`gateway.central.store.ledger`).

    measurement  ledger
    tags         site, station, channel
    fields       epoch, prev_digest, key_id, payload_sha256, content, signature, digest, set_aside (strings);
                 payload (string: base64 of the zlib payload); seq, prev_seq, prev_at, received, data_start,
                 data_end (integers; a field is absent when it has no value)
    time         `at`, the station's signing time (ns): one point per item, no tag per item

    measurement  chain_events
    tags         site, station, channel, kind
    fields       seq (integer), digest, detail (strings), detected (integer)
    time         the item's `at`

Cardinality: the ledger adds one series per station and channel (and chain_events one per kind), whatever the
number of items. Write-once is the ingestor's part here: it hands an item to the store only when its chain tracker
found no item at that `at` (gateway/central/chain.py; with several workers each tracker asks the store first). A
second write of an entry is the same item written again, by two workers that placed it at the same instant: the
point keeps its identity and every field but `received`, which becomes the later of the two arrivals (moments
apart). A query may meet an entry another worker is writing with part of its fields (InfluxDB shows fields as they
arrive): the lookups that place items skip such an entry, the audit's `ledger_items` reads it as it is.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any, cast

from gateway.central.store.base import ReadingIdentity, StoredReading
from gateway.central.store.ledger import ChainEvent, ChainEventKind, LedgerItem
from gateway.central.store.lineprotocol import (
    escape_key,
    escape_measurement,
    escape_tag_value,
    point_line,
    string_text,
)

LEDGER_MEASUREMENT = "ledger"
EVENTS_MEASUREMENT = "chain_events"
_STRINGS = ("epoch", "prev_digest", "key_id", "payload_sha256", "content", "signature", "digest", "set_aside")
_INTEGERS = ("seq", "prev_seq", "prev_at", "received", "data_start", "data_end")
_STATEMENTS_PER_QUERY = 200  # ledger look-ups in one /query
#: what placing an item reads of an entry: all but the kept payload (a readings batch's is a kilobyte or more)
_PLACING_COLUMNS = ", ".join(f'"{name}"' for name in ("site", "station", "channel", *_STRINGS, *_INTEGERS)
                             if name != "set_aside")
_ALWAYS = ("epoch", "key_id", "payload_sha256", "content", "signature", "digest", "seq", "received")  # every entry


#: The ledger's fields in line protocol's order (sorted keys), each with its escaped `key=` and whether it is an
#: integer (else a string); `payload` is the base64 of the item's zlib payload.
_FIELDS = tuple((name, f"{escape_key(name)}=", name in _INTEGERS)
                for name in sorted((*_STRINGS, *_INTEGERS, "payload")))
_LEDGER = escape_measurement(LEDGER_MEASUREMENT)


def ledger_to_line(item: LedgerItem) -> str:
    """The item's point, byte for byte what `point_line` (and so influxdb-client's `Point`) writes for it
    (tests/central/test_lineprotocol.py), with its field keys, their order and their types fixed here once: every
    signed item the central service stores has one."""
    parts = []
    for name, key, integer in _FIELDS:
        value = getattr(item, name)
        if value is None:
            continue
        if integer:
            parts.append(f"{key}{int(value)}i")
        elif name == "payload":
            parts.append(key + string_text(base64.b64encode(value).decode("ascii")))
        else:
            parts.append(key + string_text(str(value)))
    tags = "".join(f",{key}={escape_tag_value(value)}" for key, value in
                   (("channel", item.channel), ("site", item.site), ("station", item.station)) if value)
    return f"{_LEDGER}{tags} {','.join(parts)} {int(item.at)}"


def _item(tags: dict[str, Any], row: dict[str, Any]) -> LedgerItem:
    def integer(name: str) -> int | None:
        value = row.get(name)
        return int(value) if value is not None else None

    payload = row.get("payload")
    return LedgerItem(
        site=str(tags.get("site", row.get("site", ""))), station=str(tags.get("station", row.get("station", ""))),
        channel=str(tags.get("channel", row.get("channel", ""))), at=int(row["time"]), epoch=str(row.get("epoch")),
        seq=int(row.get("seq") or 0), prev_seq=integer("prev_seq"), prev_at=integer("prev_at"),
        prev_digest=row.get("prev_digest"), key_id=str(row.get("key_id")),
        payload_sha256=str(row.get("payload_sha256")), content=str(row.get("content")),
        signature=str(row.get("signature")), digest=str(row.get("digest")), received=int(row.get("received") or 0),
        data_start=integer("data_start"), data_end=integer("data_end"),
        payload=base64.b64decode(payload) if payload else None, set_aside=row.get("set_aside"))


def _items(found: list[dict[str, Any]], *, complete_only: bool) -> list[LedgerItem]:
    items = []
    for series in found:
        columns = series["columns"]
        for values in series.get("values") or []:
            row = dict(zip(columns, values, strict=True))
            if complete_only and any(row.get(name) is None for name in _ALWAYS):
                continue
            items.append(_item(series.get("tags") or {}, row))
    return items


class InfluxLedgerMixin:
    """Mixed into InfluxStore, which provides `_query`, `_write_body`, `_held` and the retention policy."""

    if TYPE_CHECKING:
        retention_policy: str | None

        def _query(self, query: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]: ...

        def _query_many(self, statements: list[str],
                        params: dict[str, str] | None = None) -> list[list[dict[str, Any]]]: ...

        def _write_body(self, body: str) -> None: ...

        def _held(self, items: list[StoredReading]) -> dict[ReadingIdentity, StoredReading]: ...

    def _ledger_source(self, measurement: str) -> str:
        from gateway.central.store.influx import quote_identifier  # the module that mixes this class in

        if self.retention_policy is None:
            return measurement
        return f"{quote_identifier(self.retention_policy)}.{measurement}"

    def write_ledger(self, items: list[LedgerItem]) -> None:
        if items:
            self._write_body("\n".join(ledger_to_line(item) for item in items))

    def note_set_aside(self, item: LedgerItem, set_aside: str) -> None:
        # the same series and time: InfluxDB merges this field into the item's point
        self._write_body(point_line(LEDGER_MEASUREMENT, {"site": item.site, "station": item.station,
                                                         "channel": item.channel}, {"set_aside": set_aside}, item.at))

    def _ledger_select(self, where: str, params: dict[str, str], tail: str = "", *,
                       complete_only: bool = False) -> list[LedgerItem]:
        query = f"SELECT * FROM {self._ledger_source(LEDGER_MEASUREMENT)} WHERE {where} {tail}"
        return _items(self._query(query, params), complete_only=complete_only)

    def _one(self, site: str, station: str, channel: str, where: str, tail: str) -> LedgerItem | None:
        # InfluxDB shows the fields of a point as they arrive, so a query may meet an entry another ingest worker
        # is writing with some of its fields only: for placing items that entry is not there yet (the audit, which
        # reads `ledger_items`, sees what is there and finds an entry without its signature broken)
        found = self._ledger_select(f"site = $site AND station = $station AND channel = $channel AND {where}",
                                    {"site": site, "station": station, "channel": channel}, tail,
                                    complete_only=True)
        return found[0] if found else None

    def ledger_at(self, site: str, station: str, channel: str, at: int) -> LedgerItem | None:
        return self._one(site, station, channel, f"time = {int(at)}", "")

    def ledger_after(self, site: str, station: str, channel: str, at: int) -> LedgerItem | None:
        return self._one(site, station, channel, f"time > {int(at)}", "ORDER BY time LIMIT 1")

    def ledger_from(self, site: str, station: str, channel: str, at: int, limit: int) -> list[LedgerItem]:
        return self._ledger_select("site = $site AND station = $station AND channel = $channel AND "
                                   f"time >= {int(at)}", {"site": site, "station": station, "channel": channel},
                                   f"ORDER BY time LIMIT {int(limit)}", complete_only=True)

    def ledger_windows(self, starts: list[tuple[str, str, str, int]], limit: int) -> list[list[LedgerItem]]:
        # the statements of `ledger_from`, many in one /query (bound parameters are shared by the statements of a
        # request, so each statement has its own names)
        windows: list[list[LedgerItem]] = []
        source = self._ledger_source(LEDGER_MEASUREMENT)
        for offset in range(0, len(starts), _STATEMENTS_PER_QUERY):
            chunk = starts[offset:offset + _STATEMENTS_PER_QUERY]
            statements, params = [], {}
            for i, (site, station, channel, at) in enumerate(chunk):
                statements.append(f"SELECT {_PLACING_COLUMNS} FROM {source} WHERE site = $site{i} AND "
                                  f"station = $station{i} AND channel = $channel{i} AND time >= {int(at)} "
                                  f"ORDER BY time LIMIT {int(limit)}")
                params[f"site{i}"], params[f"station{i}"], params[f"channel{i}"] = site, station, channel
            for found in self._query_many(statements, params):
                windows.append(_items(found, complete_only=True))
        return windows

    def ledger_newest_at(self, site: str, station: str, channel: str) -> int | None:
        found = self._ledger_select("site = $site AND station = $station AND channel = $channel",
                                    {"site": site, "station": station, "channel": channel},
                                    "ORDER BY time DESC LIMIT 1")  # complete or not
        return found[0].at if found else None

    def ledger_newest_ats(self, chains: list[tuple[str, str, str]]) -> list[int | None]:
        # the statement of `ledger_newest_at`, many in one /query (each with its own parameter names)
        newest: list[int | None] = []
        source = self._ledger_source(LEDGER_MEASUREMENT)
        for offset in range(0, len(chains), _STATEMENTS_PER_QUERY):
            chunk = chains[offset:offset + _STATEMENTS_PER_QUERY]
            statements, params = [], {}
            for i, (site, station, channel) in enumerate(chunk):
                statements.append(f"SELECT * FROM {source} WHERE site = $site{i} AND station = $station{i} AND "
                                  f"channel = $channel{i} ORDER BY time DESC LIMIT 1")  # complete or not
                params[f"site{i}"], params[f"station{i}"], params[f"channel{i}"] = site, station, channel
            for found in self._query_many(statements, params):
                items = _items(found, complete_only=False)
                newest.append(items[0].at if items else None)
        return newest

    def ledger_last(self, site: str, station: str, channel: str) -> LedgerItem | None:
        return self._one(site, station, channel, "time >= 0", "ORDER BY time DESC LIMIT 1")

    def ledger_items(self, station: str, start: int, end: int, *, site: str | None = None) -> list[LedgerItem]:
        where = f"station = $station AND time >= {int(start)} AND time < {int(end)}"
        params = {"station": station}
        if site is not None:
            where += " AND site = $site"
            params["site"] = site
        items = self._ledger_select(where, params, "GROUP BY site, channel")
        return sorted(items, key=lambda i: (i.channel, i.at, i.site))

    def write_chain_events(self, events: list[ChainEvent]) -> None:
        lines = [point_line(EVENTS_MEASUREMENT, {"site": e.site, "station": e.station, "channel": e.channel,
                                                 "kind": e.kind},
                            {"seq": int(e.seq), "digest": e.digest, "detected": int(e.detected), "detail": e.detail},
                            e.at) for e in events]
        if lines:
            self._write_body("\n".join(lines))

    def chain_events(self, station: str, start: int, end: int) -> list[ChainEvent]:
        query = (f"SELECT * FROM {self._ledger_source(EVENTS_MEASUREMENT)} WHERE station = $station AND "
                 f"time >= {int(start)} AND time < {int(end)} GROUP BY site, channel, kind")
        events = []
        for series in self._query(query, {"station": station}):
            tags = series.get("tags") or {}
            columns = series["columns"]
            for values in series.get("values") or []:
                row = dict(zip(columns, values, strict=True))
                kind = cast(ChainEventKind, str(tags.get("kind")))
                events.append(ChainEvent(site=str(tags.get("site")), station=station,
                                         channel=str(tags.get("channel")), kind=kind, at=int(row["time"]),
                                         seq=int(row["seq"]), digest=str(row["digest"]),
                                         detected=int(row["detected"]), detail=str(row["detail"])))
        return sorted(events, key=lambda e: (e.at, e.channel, e.kind))

    def held_readings(self, items: list[StoredReading]) -> dict[ReadingIdentity, StoredReading]:
        return self._held(items) if items else {}
