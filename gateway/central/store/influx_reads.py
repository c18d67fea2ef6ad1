"""Streamed reads of InfluxStore (`gateway.central.store.reads`): InfluxQL sent to `/query` with `chunked=true`,
the answer read line by line (InfluxDB 1.x writes one JSON object per chunk of `chunk_size` rows, each followed by a
newline) and turned into rows without a validated object per point.

Flux records with `variables`: one query per series (site, engine version, settings hash; found first by one
`last(period_s) ... GROUP BY`), selecting those fields, `period_s` and `meta` — the record's bookkeeping packed in
one string (`flux_meta`) — but neither the tags (they come with the series) nor `names` (every variable of the
record, ~1 kB a row). InfluxDB's CPU grows with the fields read: measured on a station-year (docs/performance.md),
a year of NEE, H, LE, FC cost it 0.10 s with the separate bookkeeping fields and the tags, 0.07 s this way. The
`names_id` in `meta` names the record's variables; the `names` of each distinct digest are read once, from one
point, and kept (a digest always stands for the same names). Records written before `meta` existed get theirs
built from their separate fields (and their `names` read when they have no `names_id` either).

Chunks of a few variables are smallish (`SELECTED_CHUNK_ROWS`): with a dict per record, the server's CPU per request
measured 0.12 s with chunks of 5,000 rows, 0.07 s with 250 (large blocks cost the allocator and the HTTP writer more
than they save); read as texts (`record_cells`), 1,000 rows cost less than 250 (what is left per chunk is fixed cost).
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import http.client
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import islice
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import msgpack
import numpy as np
import orjson

from gateway.central.store.base import Aggregate, StoreError, StoreUnavailable, check_window, every_ns, to_ns
from gateway.central.store.keepalive import KeepAliveHttp, RequestFailed
from gateway.central.store.reads import (
    CHUNK_ROWS,
    FLUX_CHUNK_ROWS,
    FluxColumns,
    FluxRow,
    FluxTexts,
    PointColumns,
    RecordKind,
    SeriesRow,
    flux_order,
)
from gateway.contract import VARIABLE_NAME_PATTERN

_STREAM_READ_TIMEOUT_S = 120.0  # between two chunks: a chunk of a long aggregate may take a while to compute
_READ_BLOCK = 1 << 16
_MSGPACK = "application/x-msgpack"
_MSGPACK_BUFFER_MAX = 1 << 30  # one chunk of the answer must fit: chunks are a few thousand rows
_FLUX_BOOKKEEPING = ("period_s", "status", "reasons", "nulls", "names_id")
_FLUX_TAGS = ("site", "station", "engine_version", "settings_hash")
_NAMES_CACHE_MAX = 10_000

_VARIABLE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
#: rows per chunk of a read of a few variables (a row of 4 values is ~100 bytes of InfluxDB's JSON): read as texts
#: (`record_cells`), a year of NEE, H, LE, FC cost 0.121 s of CPU in chunks of 250, 0.084 s in 1,000, 0.078 s in
#: 2,500 (medians of 7, in-process, influxd's CPU the same)
SELECTED_CHUNK_ROWS = 1000
_META_VERSION = "1"
#: rows per chunk of a series: its points are read without an object each (`point_columns`), so what a larger chunk
#: saves is the fixed cost of one (HTTP, numpy calls): a station-month of raw points in-process, read and written as
#: JSON, cost 0.57 s of CPU in chunks of 500, 0.43 s in 2,000, 0.39 s in 5,000, 0.45 s in 10,000 (medians of 5)
SERIES_CHUNK_ROWS = 5000


def flux_meta(names_id: str, period_s: float, status: str, nulls: str, reasons: str) -> str:
    """The `meta` field of a flux record: `1;names_id;period_s;status;nulls;reasons` (reasons, a JSON list, last:
    it is the only part that may hold a `;`). Records of one result set mostly share it, so a read parses each
    distinct text once."""
    return f"{_META_VERSION};{names_id};{period_s!r};{status};{nulls};{reasons}"


class _Meta:
    """A parsed `meta` text: what a record's values, start, status and reasons are made of."""

    __slots__ = ("names", "nulls", "period_ns", "reasons", "status")

    def __init__(self, names: tuple[str, ...], nulls: tuple[str, ...], period_ns: int, status: str,
                 reasons: list[str]) -> None:
        self.names, self.nulls, self.period_ns, self.status, self.reasons = names, nulls, period_ns, status, reasons

    @classmethod
    def parse(cls, text: str, station: str, time_ns: int,
              names_of: Callable[[str, str, int], tuple[str, ...]]) -> _Meta:
        parts = text.split(";", 5)
        if parts[0] != _META_VERSION or len(parts) != 6:
            raise StoreError(f"InfluxDB holds a flux record of meta version {parts[0]!r} (this sinkwatch reads "
                             f"{_META_VERSION}): it was written by another version of sinkwatch")
        _, names_id, period_s, status, nulls, reasons = parts
        # as row_to_flux: the period's length to the microsecond
        return cls(names=names_of(names_id, station, time_ns), nulls=tuple(n for n in nulls.split(",") if n),
                   period_ns=round(float(period_s) * 1e6) * 1000, status=status,
                   reasons=orjson.loads(reasons) if reasons != "[]" else [])


def names_digest(names: str) -> str:
    """`names_id` of a record: 16 hex digits of the SHA-256 of its comma-separated variable names."""
    return hashlib.sha256(names.encode("utf-8")).hexdigest()[:16]


def _field_identifier(name: str) -> str:
    # only names of the flux variable pattern reach here (checked again: they become query text)
    if not name or not name[0].isupper() or not set(name) <= _VARIABLE_CHARS or len(name) > 64:
        raise ValueError(f"{name!r} is not a flux variable name ({VARIABLE_NAME_PATTERN})")
    return f'"{name}"'


class InfluxReadsMixin:
    """The streamed reads of InfluxStore; they use its HTTP client and its measurement names."""

    if TYPE_CHECKING:
        url: str
        database: str
        retention_policy: str | None
        rollup_reads: bool
        _requests: KeepAliveHttp
        _ca_file: Path | None

        def _source(self) -> str: ...

        def _flux_source(self) -> str: ...

        def _query(self, query: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]: ...

        def _query_many(self, statements: list[str],
                        params: dict[str, str] | None = None) -> list[list[dict[str, Any]]]: ...

        def _rolled_iter_series(self, station: str, variable: str, start_ns: int, end_ns: int, window_ns: int,
                                aggregate: Aggregate, site: str, sensor: str) -> Iterator[Sequence[SeriesRow]]: ...

        def _pack_statements(self, start_ns: int, end_ns: int) -> list[str] | None: ...

        def _packed_or_raw(self, station: str, site: str, engine_version: str, settings_hash: str, start_ns: int,
                           end_ns: int, settings_param: str | None, wanted: list[str] | None,
                           state: list[dict[str, Any]], marks: list[dict[str, Any]]) -> Iterator[Sequence[FluxRow]]: ...

    _names_lock = threading.Lock()
    #: reads of a few flux variables asked for in MessagePack (`_record_chunks`); False: in JSON, as every other
    #: read (tests compare the two)
    packed_reads = True

    # --- the chunked /query --------------------------------------------------------------------------------------

    def _stream(self, query: str, params: dict[str, str],
                chunk_rows: int = CHUNK_ROWS) -> Iterator[list[dict[str, Any]]]:
        """The series of each chunk of one InfluxQL statement's answer, as InfluxDB sends them."""
        for line in self._stream_lines(query, params, chunk_rows):
            series = self._chunk_series(line)
            if series is None:
                return
            if series:
                yield series

    @contextlib.contextmanager
    def _answer(self, query: str, params: dict[str, str], chunk_rows: int,
                accept: str | None = None) -> Iterator[http.client.HTTPResponse]:
        """InfluxDB's chunked answer to one InfluxQL statement, its body still to be read; a refusal raised as
        StoreError or StoreUnavailable. Sent on the store's plain connections (`KeepAliveHttp.stream`): read
        through httpx, its HTTP chunks cost ~35 µs of CPU each."""
        from gateway.central.store.influx import _describe

        data = {"db": self.database, "q": query, "epoch": "ns", "chunked": "true", "chunk_size": str(chunk_rows)}
        if params:
            data["params"] = orjson.dumps(params).decode()
        try:
            with self._requests.stream("/query", urlencode(data).encode("ascii"), "application/x-www-form-urlencoded",
                                       read_timeout_s=_STREAM_READ_TIMEOUT_S, accept=accept) as response:
                if response.status != 200:
                    text = _answer_error_text(response.status, response.getheader("Content-Type"), response.read())
                    if response.status in (401, 403):
                        raise StoreUnavailable(f"InfluxDB at {self.url} refused our credentials: {text}")
                    if response.status >= 500:
                        raise StoreUnavailable(f"InfluxDB at {self.url} failed a query: {text}")
                    raise StoreError(f"InfluxDB query failed: {text}")
                yield response
        except RequestFailed as exc:
            raise StoreUnavailable(f"InfluxDB at {self.url} unreachable: {_describe(exc, self._ca_file)}") from exc

    def _stream_lines(self, query: str, params: dict[str, str], chunk_rows: int = CHUNK_ROWS) -> Iterator[bytes]:
        """Each chunk of one InfluxQL statement's answer: InfluxDB's JSON text of it, one line each."""
        with self._answer(query, params, chunk_rows) as response:
            yield from _lines(response)

    def _packed_chunks(self, query: str, params: dict[str, str], chunk_rows: int) -> Iterator[bytes | dict[str, Any]]:
        """Each chunk of one InfluxQL statement's answer, asked for in MessagePack: its bytes (found by msgpack's
        `skip`, which makes no object), or, from a server that answered JSON instead (it does not know the format),
        the object parsed. InfluxDB 1.x writes its numbers as binary doubles and integers there, which costs it
        ~40 % less CPU than their decimal text in JSON (a year of NEE, H, LE, FC: 0.21 -> 0.13 s,
        docs/performance.md)."""
        with self._answer(query, params, chunk_rows, accept=_MSGPACK) as response:
            if (response.getheader("Content-Type") or "").split(";")[0].strip() != _MSGPACK:
                for line in _lines(response):
                    yield self._payload(line)
                return
            unpacker = msgpack.Unpacker(max_buffer_size=_MSGPACK_BUFFER_MAX)
            # read in blocks of _READ_BLOCK (`read`, not `read1`: InfluxDB writes ~2 kB HTTP chunks): `skip` starts
            # again at the chunk's first byte each time it runs out of data
            parts: list[bytes] = []  # the bytes fed and not yet yielded, from offset `begin` of the answer
            begin = 0
            while block := response.read(_READ_BLOCK):
                unpacker.feed(block)
                parts.append(block)
                while True:
                    try:
                        unpacker.skip()
                    except msgpack.OutOfData:
                        break
                    end = unpacker.tell()
                    held = parts[0] if len(parts) == 1 else b"".join(parts)
                    yield held[:end - begin]
                    parts = [held[end - begin:]] if end - begin < len(held) else []
                    begin = end
            if parts:
                raise StoreError(f"InfluxDB at {self.url} ended a MessagePack answer inside a chunk")

    def _payload(self, line: bytes) -> dict[str, Any]:
        try:
            payload: dict[str, Any] = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            text = line[:200].decode("utf-8", "replace")
            raise StoreError(f"InfluxDB at {self.url} answered a query with non-JSON: {text}") from exc
        return payload

    def _chunk_series(self, line: bytes | dict[str, Any]) -> list[dict[str, Any]] | None:
        """The series of one chunk (its JSON text, or the object parsed); None when the database does not exist
        (nothing stored yet)."""
        payload = self._payload(line) if isinstance(line, bytes) else line
        if "error" in payload:
            raise StoreError(f"InfluxDB query failed: {payload['error']}")
        series: list[dict[str, Any]] = []
        for result in payload.get("results") or []:
            if "error" in result:
                if str(result["error"]).startswith("database not found"):
                    return None
                raise StoreError(f"InfluxDB query failed: {result['error']}")
            series.extend(result.get("series") or ())
        return series

    # --- series ----------------------------------------------------------------------------------------------------

    def iter_series(
        self,
        station: str,
        variable: str,
        start: datetime,
        end: datetime,
        every: timedelta | None = None,
        aggregate: Aggregate = "mean",
        *,
        site: str | None = None,
        sensor: str | None = None,
    ) -> Iterator[Sequence[SeriesRow]]:
        from gateway.central.store.influx_rollup import HOUR_NS

        check_window(start, end, aggregate)
        window_ns = every_ns(every) if every is not None else None
        if (self.rollup_reads and window_ns is not None and window_ns % HOUR_NS == 0
                and (window_ns == HOUR_NS or aggregate != "mean") and site is not None and sensor is not None):
            yield from self._rolled_iter_series(station, variable, to_ns(start), to_ns(end), window_ns, aggregate,
                                                site, sensor)
        else:
            yield from self._raw_iter_series(station, variable, to_ns(start), to_ns(end), window_ns, aggregate, site,
                                             sensor)

    def _raw_iter_series(self, station: str, variable: str, start_ns: int, end_ns: int, window_ns: int | None,
                         aggregate: Aggregate, site: str | None, sensor: str | None) -> Iterator[Sequence[SeriesRow]]:
        from gateway.central.store.influx import render_series_query

        query = render_series_query(
            start_ns=start_ns, end_ns=end_ns,
            every=None if window_ns is None else timedelta(microseconds=window_ns // 1000),
            aggregate=aggregate, limit=None, retention_policy=self.retention_policy, by_site=site is not None,
            by_sensor=sensor is not None,
        )
        params = {"station": station, "variable": variable}
        if site is not None:
            params["site"] = site
        if sensor is not None:
            params["sensor"] = sensor
        yield from self._series_rows(query, params)

    def _series_rows(self, query: str, params: dict[str, str]) -> Iterator[Sequence[SeriesRow]]:
        """The (time, value, qc) rows of a series statement, chunk by chunk: in chunks of `SERIES_CHUNK_ROWS`, each
        kept as InfluxDB's text where `point_columns` takes it (no object per row), else parsed by orjson. The raw
        reads and the rollup's hourly reads (`readings_1h`) both take theirs here."""
        for line in self._stream_lines(query, params, SERIES_CHUNK_ROWS):
            columns = point_columns(line)
            if columns is not None:
                yield columns
                continue
            chunk = self._chunk_series(line)
            if chunk is None:
                return
            for series in chunk:
                columns_ = series["columns"]
                values = series.get("values") or ()
                if columns_ == ["time", "value", "qc"]:
                    rows = values  # InfluxDB's own rows: no copy per point
                else:  # never seen, but the column order is InfluxDB's to choose
                    t_i, v_i, q_i = columns_.index("time"), columns_.index("value"), columns_.index("qc")
                    rows = [(r[t_i], r[v_i], r[q_i]) for r in values]
                if rows:
                    yield rows

    # --- flux records ----------------------------------------------------------------------------------------------

    def _flux_where(self, station: str, start: datetime, end: datetime,
                    settings_hash: str | None) -> tuple[str, dict[str, str]]:
        where = f"WHERE station = $station AND time > {int(to_ns(start))} AND time <= {int(to_ns(end))}"
        params = {"station": station}
        if settings_hash is not None:
            where += " AND settings_hash = $settings_hash"
            params["settings_hash"] = settings_hash
        return where, params

    def iter_fluxes(
        self,
        station: str,
        start: datetime,
        end: datetime,
        settings_hash: str | None = None,
        *,
        variables: Sequence[str] | None = None,
    ) -> Iterator[Sequence[FluxRow]]:
        check_window(start, end, "mean")
        yield from self._iter_selected(station, start, end, settings_hash,
                                       None if variables is None else list(dict.fromkeys(variables)))

    # --- a few variables: one stream per result set ----------------------------------------------------------------

    def _iter_selected(self, station: str, start: datetime, end: datetime, settings_hash: str | None,
                       wanted: list[str] | None) -> Iterator[Sequence[FluxRow]]:
        """Records of the range with only `wanted` among their values (None: every variable). Each series (site,
        engine version, settings hash) is read by a query of its own, so its tags come from the series and not from
        every row, and its rows come in time order; several series are merged in `flux_order`."""
        where, params = self._flux_where(station, start, end, settings_hash)
        sets_query = (f"SELECT last(period_s) FROM {self._flux_source()} {where} "
                      "GROUP BY site, engine_version, settings_hash")
        start_ns, end_ns = to_ns(start), to_ns(end)
        # whole days through the packed copy (`influx_fluxpack`): its state and marks asked with the result sets
        pack = self._pack_statements(start_ns, end_ns)
        if pack is None:
            found, state, marks = self._query(sets_query, params), [], []
        else:
            found, state, marks = self._query_many([sets_query, *pack], params)
        keys = sorted({(str(tags.get("settings_hash", "")), str(tags.get("engine_version", "")),
                        str(tags.get("site", "")))
                       for series in found if series.get("values") for tags in [series.get("tags") or {}]})
        streams = [self._selected_series(station, site, engine_version, sh, where, params, wanted) if pack is None
                   else self._packed_or_raw(station, site, engine_version, sh, start_ns, end_ns, settings_hash, wanted,
                                            state, marks)
                   for sh, engine_version, site in keys]
        if len(streams) == 1:
            yield from streams[0]
            return
        # each stream is in time order, so the merge holds one chunk per stream
        merged = heapq.merge(*(_rows_of(s) for s in streams), key=flux_order)
        size = FLUX_CHUNK_ROWS if wanted is None else SELECTED_CHUNK_ROWS
        while chunk := list(islice(merged, size)):
            yield chunk

    def _selected_series(self, station: str, site: str, engine_version: str, settings_hash: str, where: str,
                         params: dict[str, str], wanted: list[str] | None) -> Iterator[Sequence[FluxRow]]:
        # period_s: every record ever written has it, so every record has a row even when it carries none of the
        # variables and was written before `meta` (InfluxDB returns no row whose selected fields are all null);
        # every variable: the fields of the variable name pattern (upper case first), not the bookkeeping's
        fields = _EVERY_VARIABLE if wanted is None else ", ".join(_field_identifier(n) for n in wanted)
        query = (f"SELECT {fields}, period_s, meta FROM {self._flux_source()} {where} AND site = $site "
                 "AND engine_version = $engine_version")
        params = {**params, "site": site, "engine_version": engine_version}
        if "settings_hash" not in params:
            query += " AND settings_hash = $settings_hash"
            params["settings_hash"] = settings_hash
        ways: dict[str, _Way] = {}  # a meta text always means the same bookkeeping: parsed once
        columns_seen: list[str] = []
        index: dict[str, int] = {}
        for texts, chunk in self._record_chunks(query, params, wanted):
            if texts is not None:
                columns, cells, metas, meta_of, end_ns = texts
                if columns != columns_seen:  # the columns decide where each value is
                    ways.clear()
                    columns_seen = columns
                    index = {name: i for i, name in enumerate(columns)}
                kinds: list[RecordKind] = []
                kind_at: dict[Any, int] = {}
                width = len(columns)
                if end_ns is None:
                    end_ns = _int_times(b",".join(cells[0::width]).replace(b"[", b"").split(b","))
                for held in dict.fromkeys(metas):
                    meta = meta_of(held)
                    way = ways.get(meta)
                    if way is None:
                        way = ways[meta] = _Way(_Meta.parse(meta, station, int(end_ns[metas.index(held)]),
                                                            self._names_of), wanted, index)
                    kind_at[held] = len(kinds)
                    kinds.append(way.kind)
                yield FluxTexts(site, station, engine_version, settings_hash,
                                end_ns, kinds, [kind_at[m] for m in metas], cells, width, index)
                continue
            if chunk is None:
                return
            for series in chunk:
                columns = series["columns"]
                if columns != columns_seen:
                    ways.clear()
                    columns_seen = columns
                    index = {name: i for i, name in enumerate(columns)}
                values = series.get("values") or []
                t_i, m_i = index["time"], index["meta"]
                # records written before `meta` existed: their bookkeeping is read from its own fields
                old = [row[t_i] for row in values if row[m_i] is None]
                legacy = self._legacy_meta(station, site, engine_version, settings_hash, min(old),
                                           max(old)) if old else {}
                rows: list[FluxRow] = []
                append = rows.append
                for row in values:
                    text = row[m_i]
                    if text is None:
                        text = legacy.get(row[t_i])
                        if text is None:
                            continue  # a point without bookkeeping is no record (never written by us)
                    way = ways.get(text)
                    if way is None:
                        way = ways[text] = _Way(_Meta.parse(text, station, row[t_i], self._names_of), wanted, index)
                    end_ns = row[t_i]
                    append(FluxRow(site, station, end_ns - way.kind.period_ns, end_ns, way.kind.status,
                                   way.kind.reasons, engine_version, settings_hash, way.values(row)))
                if rows:
                    yield rows

    def _record_chunks(self, query: str, params: dict[str, str], wanted: list[str] | None
                       ) -> Iterator[tuple[_RecordTexts | None, list[dict[str, Any]] | None]]:
        """Each chunk of a records statement: as texts (columns, cells, each row's meta as held, how a held meta
        becomes its text, the times when known) and None, or None and its series parsed (JSON's values; None: no
        such database). A few
        variables are asked for in MessagePack (`_packed_chunks`, `packed_record_cells`), every variable in JSON
        (`record_cells`): at ~100 values a row, MessagePack's object per value costs us more than its binary
        numbers save InfluxDB."""
        if wanted is None or not self.packed_reads:
            for line in self._stream_lines(query, params, FLUX_CHUNK_ROWS if wanted is None else SELECTED_CHUNK_ROWS):
                texts = record_cells(line)
                if texts is not None:
                    yield (*texts, meta_text, None), None
                else:
                    yield None, self._chunk_series(line)
            return
        for packed_chunk in self._packed_chunks(query, params, SELECTED_CHUNK_ROWS):
            if isinstance(packed_chunk, bytes):
                columns_cells = packed_double_cells(packed_chunk)
                if columns_cells is not None:
                    yield columns_cells, None
                    continue
                payload = msgpack.unpackb(packed_chunk, raw=False)
            else:
                payload = packed_chunk
            chunk = self._chunk_series(payload)
            if chunk is not None and len(chunk) == 1 and (packed := packed_record_cells(chunk[0])) is not None:
                yield (*packed, str, None), None
            else:
                # JSON's numbers: a whole double as InfluxDB's JSON writes it (an integer)
                yield None, None if chunk is None else [
                    {**series, "values": json_values(series.get("values") or [])} for series in chunk]

    def _legacy_meta(self, station: str, site: str, engine_version: str, settings_hash: str, first_ns: int,
                     last_ns: int) -> dict[int, str]:
        """The `meta` text of records written before it existed, from their separate fields; `names` (~1 kB a
        record) is read only for records written before `names_id` too."""
        where = (f"WHERE station = $station AND site = $site AND engine_version = $engine_version "
                 f"AND settings_hash = $settings_hash AND time >= {int(first_ns)} AND time <= {int(last_ns)}")
        params = {"station": station, "site": site, "engine_version": engine_version, "settings_hash": settings_hash}
        found = self._query(f"SELECT period_s, status, reasons, nulls, names_id FROM {self._flux_source()} {where}",
                            params)
        rows = [dict(zip(series["columns"], row, strict=True))
                for series in found for row in series.get("values") or ()]
        if any(row["names_id"] is None for row in rows):
            named = {t: str(text or "") for series in self._query(
                f"SELECT names FROM {self._flux_source()} {where}", params) for t, text in series.get("values") or ()}
            for row in rows:
                if row["names_id"] is None:
                    names = named.get(row["time"], "")
                    row["names_id"] = names_id = names_digest(names)
                    self._remember_names(names_id, names)
        return {row["time"]: flux_meta(row["names_id"], float(row["period_s"]), str(row["status"]),
                                       str(row["nulls"] or ""), str(row["reasons"] or "[]")) for row in rows}

    def _names_of(self, names_id: str, station: str, time_ns: int) -> tuple[str, ...]:
        cache: dict[str, tuple[str, ...]] = self.__dict__.setdefault("_names_by_id", {})
        names = cache.get(names_id)
        if names is not None:
            return names
        found = self._query(f"SELECT names FROM {self._flux_source()} WHERE station = $station "
                            f"AND time = {int(time_ns)} AND names_id = $names_id LIMIT 1",
                            {"station": station, "names_id": names_id})
        text = ""
        for series in found:
            for row in series.get("values") or ():
                text = str(row[series["columns"].index("names")] or "")
        return self._remember_names(names_id, text)

    def _remember_names(self, names_id: str, text: str) -> tuple[str, ...]:
        if names_digest(text) != names_id:
            raise StoreError(f"InfluxDB holds a flux record whose names_id {names_id} does not match its names")
        names = tuple(n for n in text.split(",") if n)
        cache: dict[str, tuple[str, ...]] = self.__dict__.setdefault("_names_by_id", {})
        with self._names_lock:
            if len(cache) >= _NAMES_CACHE_MAX:
                cache.clear()
            cache[names_id] = names
        return names

    def flux_columns(self, station: str, start: datetime, end: datetime,
                     settings_hash: str | None = None) -> FluxColumns:
        check_window(start, end, "mean")
        where, params = self._flux_where(station, start, end, settings_hash)
        sets = set()
        for series in self._query(f"SELECT count(period_s) FROM {self._flux_source()} {where} "
                                  "GROUP BY engine_version, settings_hash", params):
            tags = series.get("tags") or {}
            if series.get("values"):
                sets.add((str(tags.get("settings_hash", "")), str(tags.get("engine_version", ""))))
        variables: set[str] = set()
        first_seen: dict[str, int] = {}
        legacy = False
        for chunk in self._stream(f"SELECT names_id, period_s FROM {self._flux_source()} {where}", params):
            for series in chunk:
                columns = series["columns"]
                t_i, id_i = columns.index("time"), columns.index("names_id")
                for row in series.get("values") or ():
                    if row[id_i] is None:
                        legacy = True
                    else:
                        first_seen.setdefault(row[id_i], row[t_i])
        for names_id, time_ns in first_seen.items():
            variables.update(self._names_of(names_id, station, time_ns))
        if legacy:
            for series in self._query(f"SELECT DISTINCT(names) FROM {self._flux_source()} {where}", params):
                for row in series.get("values") or ():
                    variables.update(n for n in str(row[1] or "").split(",") if n)
        return FluxColumns(sets=sorted(sets), variables=variables)


# A chunk of one series' points, as InfluxDB 1.x writes it: nothing but numbers in the rows, so every comma and
# bracket of the values is structure. Anything else (an error, several series, other columns) takes orjson's path.
_POINTS_HEAD = re.compile(rb'\{"results":\[\{"statement_id":0,"series":\[\{"name":"[^"]*",(?:"tags":\{[^}"]*\},)?'
                          rb'"columns":\["time","value","qc"\],"values":\[\[')
# a series cut by chunk_size is "partial" in the series and in the result
_POINTS_TAIL = re.compile(rb'\]\](?:,"partial":true)?\}\](?:,"partial":true)?\}\]\}$')
_NUMBER_CHARACTERS = b"0123456789.,-nul"


def _as_orjson_and_repr_write(texts: list[bytes]) -> bool:
    """Whether InfluxDB's (Go's) text of these numbers is the text orjson writes for the number it parses to, and,
    null aside, repr's. Not for: anything but numbers and null (true, an exponent), magnitudes below 1e-4 (repr:
    5e-05; Go: 0.00005), minus zero (Go: -0; orjson reads 0), integers past 64 bits (orjson reads a float). Checked
    with bytes methods (C loops): a regular expression over a chunk cost more than all the rest of its reading."""
    joined = b",".join(texts)
    if joined.translate(None, _NUMBER_CHARACTERS) or b"0.0000" in joined or b"-0" in texts:
        return False
    return max(map(len, texts)) < 19 or not any(len(t) >= 19 and b"." not in t for t in texts)


def point_columns(line: bytes) -> PointColumns | None:
    """A chunk of `SELECT value, qc` (or the aggregates AS value, qc) as `PointColumns`, read from InfluxDB's text
    without an object per point: its times parsed by numpy, its numbers' text kept (the text orjson and repr write
    for them: checked, else None). None when the line is anything but one series of such rows (the caller parses it
    with orjson)."""
    head = _POINTS_HEAD.match(line)
    line = line.rstrip()
    tail = _POINTS_TAIL.search(line, len(line) - 48)
    if head is None or tail is None:
        return None
    body = line[head.end():tail.start()]
    parts = body.split(b",")
    count, left = divmod(len(parts), 3)
    if left or not count:
        return None
    times, values, qcs = parts[0::3], parts[1::3], parts[2::3]
    if count > 1:
        # each qc but the last closes its row: "<number>]", its one bracket at its end (the parts hold no comma).
        # With the times only digits after their "[" and the numbers without brackets or quotes (checked below),
        # that is the chunk's whole shape: no pass over the chunk's text to count its brackets
        closed = b",".join(qcs[:-1]) + b","
        if closed.count(b"],") != count - 1 or closed.count(b"]") != count - 1:
            return None
        qcs[:-1] = closed[:-2].split(b"],")
    width = len(times[0])
    digits = b"[" + b"".join(times)
    if not 0 < width <= 19 or len(digits) != count * (width + 1):
        return None  # times of different lengths (or before 1970): not worth a path of their own
    table = np.frombuffer(digits, np.uint8).reshape(count, width + 1)
    figures = table[:, 1:] - np.uint8(ord("0"))
    if (table[:, 0] != ord("[")).any() or (figures > 9).any():
        return None
    times_ns = figures.astype(np.int64) @ _POWERS_OF_TEN[-width:]
    if not (_as_orjson_and_repr_write(values) and _as_orjson_and_repr_write(qcs)):
        return None
    return PointColumns(times_ns, values, qcs)


_POWERS_OF_TEN = np.array([10**i for i in range(18, -1, -1)], dtype=np.int64)


def _int_times(texts: list[bytes]) -> np.ndarray:
    """InfluxDB's times of a chunk (decimal nanoseconds) as int64: by numpy when each has 19 digits (2001-09-09 to
    2286), else one `int` each (a year of NEE, H, LE, FC: 17,520 of them cost ~5 ms of CPU, ~5 % of the request's)."""
    digits = b"".join(texts)
    if len(digits) == 19 * len(texts):
        figures = np.frombuffer(digits, np.uint8).reshape(-1, 19) - np.uint8(ord("0"))
        if not (figures > 9).any():
            return figures.astype(np.int64) @ _POWERS_OF_TEN
    return np.array(list(map(int, texts)), dtype=np.int64)


# A chunk of one series of flux records (no GROUP BY, so no tags): the columns, then rows of numbers and nulls but
# for one string each, the record's `meta`. Anything else takes orjson's path.
_RECORDS_HEAD = re.compile(rb'\{"results":\[\{"statement_id":0,"series":\[\{"name":"[^"]*",'
                           rb'"columns":(\["time"(?:,"[A-Za-z0-9_]+")*\]),"values":\[\[')
#: the fields of every variable (VARIABLE_NAME_PATTERN: upper case first; the bookkeeping fields are lower case)
_EVERY_VARIABLE = "/^[A-Z]/"
def record_cells(line: bytes) -> tuple[list[str], list[bytes], list[bytes]] | None:
    """A chunk of `SELECT <variables>, period_s, meta` (one series) read without an object per value: its columns,
    the text of every cell, row after row (a row's `meta` cell holds its closing bracket, the next row's time its
    opening one), and the text inside each row's `meta` string, still JSON-escaped. Every number's text is the text
    orjson writes for the number it stands for: InfluxDB's own where `_as_orjson_writes` finds it so, else the
    chunk's numbers parsed and written again by orjson. None when the line is anything else (an error, tags, a string
    in any other column, a null meta): the caller parses it with orjson. Each step is one pass of a C loop over the
    chunk's text; each pass costs about as much as orjson's parse of the chunk, so there are few."""
    head = _RECORDS_HEAD.match(line)
    line = line.rstrip()
    tail = _POINTS_TAIL.search(line, max(0, len(line) - 48))
    if head is None or tail is None:
        return None
    columns: list[str] = orjson.loads(head.group(1))
    width = len(columns)
    if columns[-1] != "meta":
        return None
    body = line[head.end():tail.start()]
    if b"\\" not in body:
        pieces = body.split(b'"')
    elif b"\\\\" not in body:  # escaped quotes (a reason's): out of the way while the strings are found
        pieces = body.replace(b'\\"', _ESCAPED_QUOTE).split(b'"')
    else:  # escaped backslashes too (never in our records' meta): join the pieces cut at an escaped quote
        pieces = _rejoined(body.split(b'"'))
    count = len(pieces) // 2
    outside = b"".join(pieces[0::2])
    left = outside.translate(None, _NUMBER_CHARACTERS)
    if not count or left.translate(None, b"eE+") != b"][" * (count - 1):
        return None
    if len(left) != 2 * (count - 1) or not _as_orjson_writes(outside):
        # some number Go writes otherwise (an exponent, minus zero, 0.000001, ...): all of them as orjson writes
        # them, one parse and one dump of the chunk's numbers (a chunk in ten of full-precision records)
        try:
            numbers = orjson.loads(b"[[" + outside[:-1].replace(b",],[", b"],[") + b"]]")
        except orjson.JSONDecodeError:
            return None
        outside = orjson.dumps(numbers)[2:-2].replace(b"],[", b",],[") + b","
    cells = outside.split(b",")
    # a row's one string is its meta: its cell is the bracket closing the row (the last row's, nothing)
    if len(cells) != count * width or cells[width - 1::width] != [*[b"]"] * (count - 1), b""]:
        return None
    return columns, cells, pieces[1::2]


#: a records chunk as texts: columns, the text of every cell (`record_cells`' layout), each row's meta as held, how a
#: held meta becomes its text, and the rows' times (int64 ns; None: read them from the time cells)
_RecordTexts = tuple[list[str], list[bytes], list[Any], Callable[[Any], str], Any]

# MessagePack as InfluxDB 1.x writes a chunk of one series (github.com/tinylib/msgp: maps in a fixed key order): the
# result {statement_id, series, [partial]}, the series {name, columns, values, [partial]}, rows of the time (int64),
# the fields and `meta` (a string)
_PACKED_RESULT = b"\x81\xa7results\x91"
_PACKED_SERIES = b"\xacstatement_id\x00\xa6series\x91"
_PACKED_PARTIAL = b"\xa7partial\xc3"
_PACKED_INT64, _PACKED_DOUBLE, _PACKED_NIL = 0xD3, 0xCB, 0xC0
#: bytes of an element by its first byte, for the elements `packed_double_cells` takes (a double or nil)
_PACKED_SIZE = np.zeros(256, np.int64)
_PACKED_SIZE[_PACKED_DOUBLE], _PACKED_SIZE[_PACKED_NIL] = 9, 1


def _packed_text(raw: bytes, at: int) -> tuple[str, int]:
    """The string (fixstr or str8) at `at`, and where the next element starts."""
    kind = raw[at]
    if 0xA0 <= kind <= 0xBF:
        size, at = kind - 0xA0, at + 1
    elif kind == 0xD9:
        size, at = raw[at + 1], at + 2
    else:
        raise ValueError("no short string")
    return raw[at:at + size].decode(), at + size


def packed_double_cells(raw: bytes) -> _RecordTexts | None:
    """One chunk of a records statement's MessagePack answer (one series: the time, fields that are each a double
    or null, `meta`) as texts, without an object per value: the rows found in the chunk's bytes by numpy, each
    value's 8 bytes taken as a big-endian double, and all of them written by one orjson call; the text is then that
    of `packed_record_cells` (a whole double's `.0` cut). Rows are found from candidates (each place the row's
    first two bytes occur), each measured by the first bytes of its elements; the true rows are those chained from
    the first, one after the other to the chunk's end (a candidate inside a double's bytes is in no chain). None
    for anything else (an integer or a string among the fields, a meta of 256 bytes or more, a chain that breaks,
    a double written with an exponent or minus zero): the caller parses the chunk."""
    try:
        return _packed_double_cells(raw)
    except (IndexError, ValueError):
        return None


def _packed_double_cells(raw: bytes) -> _RecordTexts | None:
    if not raw.startswith(_PACKED_RESULT):
        return None
    at = len(_PACKED_RESULT)
    result_keys = raw[at] - 0x80
    if result_keys not in (2, 3) or raw[at + 1:at + 1 + len(_PACKED_SERIES)] != _PACKED_SERIES:
        return None
    at += 1 + len(_PACKED_SERIES)
    series_keys = raw[at] - 0x80
    if series_keys not in (3, 4) or raw[at + 1:at + 6] != b"\xa4name":
        return None
    _, at = _packed_text(raw, at + 6)
    if raw[at:at + 8] != b"\xa7columns" or not 0x93 <= raw[at + 8] <= 0x9F:
        return None
    width = raw[at + 8] - 0x90
    at += 9
    columns = []
    for _ in range(width):
        name, at = _packed_text(raw, at)
        columns.append(name)
    if columns[0] != "time" or columns[-1] != "meta" or raw[at:at + 7] != b"\xa6values":
        return None
    at += 7
    kind = raw[at]
    if 0x91 <= kind <= 0x9F:
        count, at = kind - 0x90, at + 1
    elif kind == 0xDC:
        count, at = int.from_bytes(raw[at + 1:at + 3], "big"), at + 3
    elif kind == 0xDD:
        count, at = int.from_bytes(raw[at + 1:at + 5], "big"), at + 5
    else:
        return None
    tail = _PACKED_PARTIAL * (series_keys - 3 + result_keys - 2)
    if not count or not raw.endswith(tail):
        return None
    body_end = len(raw) - len(tail)
    data = np.frombuffer(raw, np.uint8)
    last = len(raw) - 1
    region = data[at:body_end]
    starts = np.flatnonzero((region[:-1] == 0x90 + width) & (region[1:] == _PACKED_INT64)) + at
    fields = width - 2
    places = np.empty((fields, len(starts)), np.int64)
    place = starts + 10  # the row's head, the time's type and its 8 bytes
    fits = np.ones(len(starts), bool)
    for j in range(fields):
        places[j] = place
        size = _PACKED_SIZE[data[np.minimum(place, last)]]
        fits &= size > 0
        place = place + size
    kinds = data[np.minimum(place, last)].astype(np.int64)
    short = (kinds >= 0xA0) & (kinds <= 0xBF)
    fits &= short | (kinds == 0xD9)
    meta_at = place + np.where(short, 1, 2)
    ends = meta_at + np.where(short, kinds - 0xA0, data[np.minimum(place + 1, last)])
    if len(starts) == count and fits.all() and starts[0] == at and ends[-1] == body_end and (
            ends[:-1] == starts[1:]).all():
        taken = np.arange(count)  # no candidate but the rows (mostly): chained at once
    else:  # follow the chain from the first row
        index_of = {start: i for i, start in enumerate(starts.tolist())}
        ends_of = ends.tolist()
        fits_of = fits.tolist()
        chain = []
        row = at
        for _ in range(count):
            i = index_of.get(row)
            if i is None or not fits_of[i]:
                return None
            chain.append(i)
            row = ends_of[i]
        if row != body_end:
            return None
        taken = np.array(chain, np.intp)
    # 8 bytes from each place, taken as rows of a view of the chunk whose rows start a byte apart (one copy of 8
    # bytes each: a third of the CPU of an index per byte)
    eights = _byte_windows(data, 8)
    times = eights[starts[taken] + 2].view(">i8").astype(np.int64).ravel()
    at_fields = places[:, taken].T  # (rows, fields): each value's first byte
    # a nil's place + 1 may lie past the chunk's last 8 bytes: its double is NaN whatever is read
    doubles = eights[np.minimum(at_fields.ravel() + 1, len(eights) - 1)].view(">f8").astype(np.float64).ravel()
    doubles[data[at_fields].ravel() == _PACKED_NIL] = np.nan  # orjson writes null for it
    text = orjson.dumps(doubles, option=orjson.OPT_SERIALIZE_NUMPY)
    if b"e+" in text or b"-0.0," in text or text.endswith(b"-0.0]"):
        return None  # a whole double of 1e16 or more, or minus zero: InfluxDB's JSON writes them otherwise
    values = (text[1:-1] + b",").replace(b".0,", b",").split(b",")
    if len(values) != count * fields + 1:
        return None
    cells = [b""] * (count * width)
    for j in range(fields):
        cells[j + 1::width] = values[j:-1:fields]
    meta_begins, meta_ends = meta_at[taken], ends[taken]
    # most rows share their chunk's first meta: compared in numpy, only the others sliced out one by one
    first = raw[meta_begins[0]:meta_ends[0]]
    alike = meta_ends - meta_begins == len(first)
    if len(first):
        alike[alike] = (_byte_windows(data, len(first))[meta_begins[alike]] == np.frombuffer(first, np.uint8)).all(
            axis=1)
    metas = [first] * count
    for i in np.flatnonzero(~alike).tolist():
        metas[i] = raw[meta_begins[i]:meta_ends[i]]
    return columns, cells, metas, _utf8, times


def _byte_windows(data: np.ndarray, size: int) -> np.ndarray:
    """Every `size` bytes of `data` as a row, row i starting at byte i (a view: nothing copied)."""
    return np.lib.stride_tricks.as_strided(data, shape=(len(data) - size + 1, size), strides=(1, 1), writeable=False)


def _utf8(text: bytes) -> str:
    return text.decode()


def packed_record_cells(series: dict[str, Any]) -> tuple[list[str], list[bytes], list[str]] | None:
    """One series of a records statement's chunk, parsed from MessagePack, as `record_cells` gives JSON's: its
    columns, the text of every cell (the layout of `record_cells`: a row's time cell opens it with `[` but the
    first's, its meta cell is the `]` closing it, the last row's empty) and each row's meta. Every number's text is
    the one the JSON path writes: orjson's text of the number orjson reads from InfluxDB's JSON text of it — for a
    double, orjson's own text of it, but a whole double is an integer there (InfluxDB's JSON writes 1800.0 as 1800,
    -0.0 as -0, 1.5e16 as 15000000000000000; `json_number`). All the chunk's numbers are written by one orjson call
    and the whole doubles' `.0` cut (no string among them: nothing else ends so). None for anything else (a
    string or a boolean among the values, a row without meta): the caller takes the parsed series."""
    columns = series.get("columns")
    values = series.get("values")
    if not values or "tags" in series or not columns or columns[0] != "time" or columns[-1] != "meta":
        return None
    width = len(columns)
    metas = [row[-1] for row in values]
    if set(map(type, metas)) != {str} or set(map(len, values)) != {width}:
        return None
    text = orjson.dumps([row[:-1] for row in values])
    if b'"' in text or b"t" in text or b"f" in text:  # a string, true or false (orjson writes no other t or f)
        return None
    if b"e+" in text or b"-0.0," in text or b"-0.0]" in text:  # a whole double of 1e16 or more, minus zero: rare
        text = orjson.dumps([[json_number(v) for v in row[:-1]] for row in values])
    else:
        text = text.replace(b".0,", b",").replace(b".0]", b"]")
    cells = (text[2:-2].replace(b"],[", b",],[") + b",").split(b",")
    if len(cells) != len(values) * width:
        return None
    return list(columns), cells, metas


def json_number(value: Any) -> Any:
    """The number orjson reads from InfluxDB's (Go's) JSON text of `value`: a whole double is written there as
    the shortest decimal that reads back as it, without a fraction or (below 1e21) an exponent, which orjson
    reads as an integer when it fits 64 bits (a signed or an unsigned one) and as the double otherwise."""
    if type(value) is float and value.is_integer():
        whole = int(Decimal(repr(value)))
        if -(1 << 63) <= whole < (1 << 64):
            return whole
    return value


def json_values(rows: list[list[Any]]) -> list[list[Any]]:
    """Rows of values parsed from MessagePack as they are parsed from InfluxDB's JSON (`json_number`)."""
    return [[json_number(v) for v in row] for row in rows]


#: in place of an escaped quote while a chunk's strings are found (JSON escapes control characters, so InfluxDB's
#: text holds no such byte); `record_cells` gives the strings back with it, `meta_text` puts the escape back
_ESCAPED_QUOTE = b"\x01"


def meta_text(text: bytes) -> str:
    """The string a `record_cells` string stands for."""
    return orjson.loads(b'"' + text.replace(_ESCAPED_QUOTE, b'\\"') + b'"')


def _lines(response: http.client.HTTPResponse) -> Iterator[bytes]:
    """The lines of a chunked JSON answer (InfluxDB 1.x ends each chunk's object with a newline), blank ones
    skipped."""
    parts: list[bytes] = []
    while block := response.read1(_READ_BLOCK):
        begin = 0
        while (newline := block.find(b"\n", begin)) >= 0:
            parts.append(block[begin:newline])
            begin = newline + 1
            line = b"".join(parts)
            parts = []
            if line.strip():
                yield line
        if begin < len(block):
            parts.append(block[begin:])
    line = b"".join(parts)
    if line.strip():
        yield line


def _answer_error_text(status: int, content_type: str | None, content: bytes) -> str:
    """InfluxDB's reason for refusing a query, from its answer in whichever format it wrote it."""
    payload: Any = None
    with contextlib.suppress(ValueError, msgpack.UnpackException):
        payload = (msgpack.unpackb(content, raw=False) if (content_type or "").startswith(_MSGPACK)
                   else orjson.loads(content))
    if isinstance(payload, dict) and "error" in payload:
        return str(payload["error"])[:200]
    return content.decode("utf-8", "replace").strip()[:200] or f"HTTP {status}"


def _rejoined(pieces: list[bytes]) -> list[bytes]:
    """`text.split(b'"')` with the pieces cut at an escaped quote (after an odd number of backslashes) joined."""
    out: list[bytes] = []
    for piece in pieces:
        if out and (len(out[-1]) - len(out[-1].rstrip(b"\\"))) % 2:
            out[-1] += b'"' + piece
        else:
            out.append(piece)
    return out


def _as_orjson_writes(numbers: bytes) -> bool:
    """Whether InfluxDB's (Go's) text of each number in `numbers` (comma-separated numbers and nulls, rows in
    brackets, times among them) is the text orjson writes for the number it parses to, which is what the record
    encoders write. Not for (besides an exponent or anything but a number or null, which the caller refuses):
    an integer part of 20 digits or more, or of 19 after a minus (past 64 bits, e.g. -9223372036854776000: orjson
    reads a float; a time has 19, a time before 1970 is refused too, rarely), a fraction starting
    with five zeros (below 1e-5 orjson writes 5e-6 where Go writes 0.000005; 10.000001 is refused too, rarely),
    minus zero (Go: -0; orjson reads 0). Found from the runs of digits by numpy over the text's bytes: `in`
    searches for these patterns cost three times as much over a text made mostly of digits."""
    text = np.frombuffer(numbers + b",", np.uint8)  # a comma after: the last run of digits ends before a byte too
    others = np.flatnonzero((text - np.uint8(48)) > 9)  # every byte but a digit
    runs = np.diff(others) - 1  # the digits after each of them, up to the next
    starts = others[:-1] + 1
    before, first = text[others[:-1]], text[starts]
    point = before == _POINT
    if others[0] >= 20 or ((runs >= 20) & ~point).any() or ((runs >= 19) & (before == _MINUS)).any():
        return False
    # masks, not boolean indexing: the latter cost ten times as much over a chunk's ~20,000 runs
    fractions = starts[np.flatnonzero(point & (runs >= 5) & (first == _ZERO))]
    if len(fractions) and (text[fractions[:, None] + _FOUR] == _ZERO).all(axis=1).any():
        return False
    return not ((before == _MINUS) & (runs == 1) & (first == _ZERO) & (text[others[1:]] != _POINT)).any()


_POINT, _MINUS, _ZERO = ord("."), ord("-"), ord("0")
_FOUR = np.arange(1, 5)  # the digits after a fraction's first


class _Way:
    """How rows of one `meta` text under one column layout become records: their kind, and the getter of their
    values from a row parsed by orjson."""

    __slots__ = ("getter", "kind")

    def __init__(self, meta: _Meta, wanted: list[str] | None, index: dict[str, int]) -> None:
        held = set(meta.names)
        names = meta.names if wanted is None else tuple(n for n in wanted if n in held)
        nulls = frozenset(n for n in meta.nulls if n in names)
        self.kind = RecordKind(names, nulls, meta.period_ns, meta.status, meta.reasons)
        # a variable null in every record read so far is no field at all, hence no column
        columns = [-1 if n in nulls else index.get(n, -1) for n in names]
        if -1 in columns or len(columns) < 2:
            self.getter: Callable[[list[Any]], Sequence[Any]] = (
                lambda row: tuple(row[c] if c >= 0 else None for c in columns))
        else:
            self.getter = itemgetter(*columns)

    def values(self, row: list[Any]) -> dict[str, int | float | None]:
        # integer fields come back as JSON integers, float fields as JSON numbers (36000.0 as 36000: the same
        # number in any JSON reader, so it is not converted here)
        return dict(zip(self.kind.names, self.getter(row), strict=True))


def _rows_of(chunks: Iterator[Sequence[FluxRow]]) -> Iterator[FluxRow]:
    for chunk in chunks:
        yield from chunk
