"""Response bodies written chunk by chunk from the store's streamed reads (`gateway.central.store.reads`): JSON and
CSV of series points and flux records, AmeriFlux BASE CSV. The API hands these generators to a StreamingResponse,
so a year costs the server the memory of one chunk, and the first bytes leave while the database still reads.

What a point or a record costs here is what makes a long range affordable (issue 13: ~9 µs of Python per point
before): no validated object per row (the store validated every row when it was written), times formatted from
integer nanoseconds with the date and hour looked up once per hour of data instead of `strftime` per timestamp,
JSON by orjson a chunk at a time; series points with no Python step per point at all (below, `_TimeTexts`). The
text is that of the whole-list encoders it replaced: times as `gateway.model.format_time` writes them, numbers as
`repr` (CSV) or their shortest round-trip form (JSON), the same keys in the same order, the same CSV quoting. One
difference: a flux value InfluxDB sends as a JSON integer (it writes the float 150.0 as 150) is passed on as such,
`150` rather than `150.0` — the same number to any JSON or CSV reader.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import numpy as np
import orjson

from gateway.central.store.reads import FluxRow, FluxTexts, PointColumns, SeriesRow
from gateway.contract import FLUX_SCHEMA_VERSION
from gateway.flux.files import MISSING, ameriflux_cells, ameriflux_header

T = TypeVar("T")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NS_PER_S = 1_000_000_000
_NS_PER_HOUR = 3600 * _NS_PER_S
_MINUTE_SECOND = [f"{m:02d}:{s:02d}" for m in range(60) for s in range(60)]
_MINUTES = [f"{m:02d}" for m in range(60)]
_HOUR_CACHE_MAX = 200_000  # ~23 years of hours; cleared when full


class _Hours:
    """Text of an hour's start, looked up once: `prefix(ns)` -> e.g. '2025-01-01T13:' (RFC 3339) or '2025010113'
    (AmeriFlux)."""

    def __init__(self, layout: str) -> None:
        self.layout = layout
        self.cache: dict[int, str] = {}

    def __call__(self, hour: int) -> str:
        text = self.cache.get(hour)
        if text is None:
            if len(self.cache) >= _HOUR_CACHE_MAX:
                self.cache.clear()
            text = self.cache[hour] = (_EPOCH + timedelta(hours=hour)).strftime(self.layout)
        return text


_RFC3339_HOURS = _Hours("%Y-%m-%dT%H:")
_AMERIFLUX_HOURS = _Hours("%Y%m%d%H")


def rfc3339(ns: int) -> str:
    """`gateway.model.format_time` of the instant `ns` nanoseconds after the epoch (to the microsecond, floored)."""
    hour, rest = divmod(ns, _NS_PER_HOUR)
    seconds, fraction = divmod(rest, _NS_PER_S)
    if fraction:
        return f"{_RFC3339_HOURS(hour)}{_MINUTE_SECOND[seconds]}.{fraction // 1000:06d}Z"
    return f"{_RFC3339_HOURS(hour)}{_MINUTE_SECOND[seconds]}.000000Z"


def rfc3339_many(times: Iterable[int]) -> list[str]:
    """`rfc3339` of each time; the hour's text is reused while the times stay in one hour (a series' do)."""
    out: list[str] = []
    append = out.append
    hours = _RFC3339_HOURS
    minute_second = _MINUTE_SECOND
    last_hour = None
    prefix = ""
    for ns in times:
        hour, rest = divmod(ns, _NS_PER_HOUR)
        if hour != last_hour:
            prefix = hours(hour)
            last_hour = hour
        seconds, fraction = divmod(rest, _NS_PER_S)
        if fraction:
            append(f"{prefix}{minute_second[seconds]}.{fraction // 1000:06d}Z")
        else:
            append(f"{prefix}{minute_second[seconds]}.000000Z")
    return out


def ameriflux_stamp(ns: int) -> str:
    """YYYYMMDDHHMM (AmeriFlux TIMESTAMP_START/END) of the instant `ns`, seconds dropped as strftime drops them."""
    hour, rest = divmod(ns, _NS_PER_HOUR)
    return _AMERIFLUX_HOURS(hour) + _MINUTES[rest // (60 * _NS_PER_S)]


def prefetched(chunks: Iterator[T]) -> Iterator[T]:
    """`chunks` with its first item read now: a store that fails at once raises here, while the route can still
    answer with an error status (after the first bytes are sent, a failure can only cut the response short)."""
    return prefetched_or_none(chunks) or iter(())


def prefetched_or_none(chunks: Iterator[T]) -> Iterator[T] | None:
    """As `prefetched`, but None when `chunks` holds nothing: the route can then tell why before it answers."""
    try:
        first = next(chunks)
    except StopIteration:
        return None

    def rest() -> Iterator[T]:
        try:
            yield first
            yield from chunks
        finally:
            close = getattr(chunks, "close", None)  # a generator: let it release its connection now
            if close is not None:
                close()

    return rest()


def coalesced(body: Iterable[bytes], size: int = 1 << 17) -> Iterator[bytes]:
    """`body` in blocks of at least `size` bytes (the last one may be shorter). Starlette runs a synchronous body
    in a worker thread, one hop per block, and the store's chunks are small (`CHUNK_ROWS`): joined, a station-month
    of raw points is ~130 blocks instead of ~540."""
    parts: list[bytes] = []
    held = 0
    for block in body:
        parts.append(block)
        held += len(block)
        if held >= size:
            yield b"".join(parts)
            parts = []
            held = 0
    if parts:
        yield b"".join(parts)


# --- series ------------------------------------------------------------------------------------------------------

# A chunk of points is written with three pieces of text per point and no Python step per point: the time's text
# with the JSON or CSV around it, built for the whole chunk at once in a numpy array of fixed-width rows
# (`_TimeTexts`), the value's text from one orjson call, and the qc's text looked up (one shared piece when the
# chunk's qc are all equal, as they mostly are); one `bytes.join` over the pieces, interleaved by slice assignment,
# writes the chunk. docs/performance.md ("API at scale") has what this saves against a dict and an f-string per
# point.

_MINUTE_SECOND_TABLE = np.frombuffer("".join(_MINUTE_SECOND).encode(), np.uint8).reshape(3600, 5)
_THREE_DIGITS = np.frombuffer("".join(f"{n:03d}" for n in range(1000)).encode(), np.uint8).reshape(1000, 3)
_HOUR_BYTES_CACHE: dict[int, bytes] = {}
_HOUR_BLOCK = 1024  # hours in a block of `_hour_block` (~43 days)
_HOUR_BLOCKS: dict[int, np.ndarray] = {}


def _hour_bytes(hour: int) -> bytes:
    text = _HOUR_BYTES_CACHE.get(hour)
    if text is None:
        if len(_HOUR_BYTES_CACHE) >= _HOUR_CACHE_MAX:
            _HOUR_BYTES_CACHE.clear()
        text = _HOUR_BYTES_CACHE[hour] = (_EPOCH + timedelta(hours=hour)).strftime("%Y-%m-%dT%H:").encode()
    return text


def _hour_block(block: int) -> np.ndarray:
    """The texts of the hours `block * _HOUR_BLOCK` onwards, `_HOUR_BLOCK` rows of 14 bytes: made once, so a chunk
    of dense times takes its hours' texts from one or two of these, not a look-up per hour (a chunk of 1,000
    half-hourly records spans 500 hours)."""
    table = _HOUR_BLOCKS.get(block)
    if table is None:
        if len(_HOUR_BLOCKS) >= _HOUR_CACHE_MAX // _HOUR_BLOCK:
            _HOUR_BLOCKS.clear()
        first = block * _HOUR_BLOCK
        table = _HOUR_BLOCKS[block] = np.frombuffer(
            b"".join([_hour_bytes(h) for h in range(first, first + _HOUR_BLOCK)]), np.uint8).reshape(-1, 14)
    return table


class _TimeTexts:
    """`before + rfc3339(ns) + after` of each time of a chunk, as bytes: rows of a uint8 array filled column block
    by column block (the hour's text from a table of the chunk's hours, minute and second from a table of 3,600,
    the microseconds' digits by arithmetic), then cut into one bytes object per row. With `between`, each row holds
    two times, `before + rfc3339(first) + between + rfc3339(second) + after` (a record's start and end): one bytes
    object and one piece of the chunk's join per record instead of two (a year of NEE, H, LE, FC: 18 chunks of
    1,000 records, ~0.35 ms of CPU saved in each)."""

    def __init__(self, before: bytes, after: bytes, between: bytes | None = None) -> None:
        self.before = np.frombuffer(before, np.uint8)
        self.after = np.frombuffer(after, np.uint8)
        self.between = None if between is None else np.frombuffer(between, np.uint8)
        self.width = len(before) + _TIME_WIDTH + len(after) + (0 if between is None else len(between) + _TIME_WIDTH)

    def __call__(self, times: Sequence[int] | np.ndarray, second: Sequence[int] | np.ndarray | None = None
                 ) -> list[bytes]:
        ns = np.asarray(times, dtype=np.int64)
        rows = np.empty((len(ns), self.width), np.uint8)
        at = len(self.before)
        rows[:, :at] = self.before
        _fill_times(rows, at, ns)
        at += _TIME_WIDTH
        if self.between is not None:
            rows[:, at:at + len(self.between)] = self.between
            at += len(self.between)
            _fill_times(rows, at, np.asarray(second, dtype=np.int64))
            at += _TIME_WIDTH
        rows[:, at:] = self.after
        return rows.view(f"S{self.width}").reshape(-1).tolist()


_TIME_WIDTH = 27  # 2025-01-01T00:00:00.000000Z


def _hour_texts(hours: np.ndarray) -> np.ndarray:
    """`YYYY-MM-DDTHH:` of each hour after the epoch, a row of 14 bytes each."""
    first, last = int(hours.min()), int(hours.max())
    if last - first < 4 * len(hours):  # the blocks of the chunk's hours (a series is dense)
        low, high = first // _HOUR_BLOCK, last // _HOUR_BLOCK
        table = (_hour_block(low) if low == high else
                 np.concatenate([_hour_block(b) for b in range(low, high + 1)]))
        return table.take(hours - low * _HOUR_BLOCK, axis=0)
    held, where = np.unique(hours, return_inverse=True)  # a sparse chunk: only the hours it holds
    table = np.frombuffer(b"".join([_hour_bytes(h) for h in held.tolist()]), np.uint8)
    return table.reshape(-1, 14).take(where.reshape(-1), axis=0)


def _ameriflux_stamps(starts: Sequence[int] | np.ndarray, ends: Sequence[int] | np.ndarray) -> list[bytes]:
    """`ameriflux_stamp(start),ameriflux_stamp(end)` of each record of a chunk, as bytes, built as `_TimeTexts`
    builds its rows: YYYYMMDDHH picked from the hour texts, the minute from a table."""
    rows = np.empty((len(starts), 25), np.uint8)
    for at, ns in ((0, starts), (13, ends)):
        hours, rest = np.divmod(np.asarray(ns, dtype=np.int64), _NS_PER_HOUR)
        rows[:, at:at + 10] = _hour_texts(hours)[:, _AMERIFLUX_HOUR_BYTES]
        rows[:, at + 10:at + 12] = _MINUTE_TABLE.take(rest // (60 * _NS_PER_S), axis=0)
    rows[:, 12] = ord(",")
    return rows.view("S25").reshape(-1).tolist()


_AMERIFLUX_HOUR_BYTES = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12], np.intp)  # YYYYMMDDHH of YYYY-MM-DDTHH:
_MINUTE_TABLE = np.frombuffer("".join(_MINUTES).encode(), np.uint8).reshape(60, 2)


def _fill_times(rows: np.ndarray, at: int, ns: np.ndarray) -> None:
    """`rfc3339` of each time of `ns` into columns `at`.. of `rows`, row by row."""
    hours, rest = np.divmod(ns, _NS_PER_HOUR)
    seconds, fraction = np.divmod(rest, _NS_PER_S)
    rows[:, at:at + 14] = _hour_texts(hours)
    rows[:, at + 14:at + 19] = _MINUTE_SECOND_TABLE.take(seconds, axis=0)
    rows[:, at + 19] = ord(".")
    if fraction.any():  # the microseconds' six digits, three at a time from a table (int64 division is slow)
        thousands, units = np.divmod(fraction // 1000, 1000)
        rows[:, at + 20:at + 23] = _THREE_DIGITS.take(thousands, axis=0)
        rows[:, at + 23:at + 26] = _THREE_DIGITS.take(units, axis=0)
    else:  # whole seconds, as readings and flux periods mostly are
        rows[:, at + 20:at + 26] = ord("0")
    rows[:, at + 26] = ord("Z")


def _joined(times: list[bytes], values: list[bytes], qcs: list[bytes], around_qc: tuple[bytes, bytes],
            first: bool) -> bytes:
    """The rows of a chunk: each time's text (with what comes before the value), value, then the qc between
    `around_qc`; the leading comma of the first row dropped when `first`. When every qc text is the same (mostly
    it is), the qc and its surroundings are one shared piece."""
    count = len(times)
    before, after = around_qc
    if qcs.count(qcs[0]) == count:
        parts: list[bytes] = [b""] * (3 * count)
        parts[2::3] = [before + qcs[0] + after] * count
        width = 3
    else:
        parts = [b""] * (5 * count)
        parts[2::5] = [before] * count
        parts[3::5] = qcs
        parts[4::5] = [after] * count
        width = 5
    parts[0::width] = times
    parts[1::width] = values
    if first:
        parts[0] = parts[0][1:]
    return b"".join(parts)


_JSON_TIMES = _TimeTexts(b',{"time":"', b'","value":')
_CSV_TIMES = _TimeTexts(b"", b",")


def series_points_json(rows: Sequence[SeriesRow], first: bool) -> bytes:
    """`rows` as the items of the JSON array of points (`{"time":...,"value":...,"qc":...}` each, orjson's number
    text), with a leading comma unless `first`."""
    if isinstance(rows, PointColumns):  # the numbers' text as the store read it: orjson's text already
        return _joined(_JSON_TIMES(rows.times), rows.values, rows.qcs, (b',"qc":', b"}"), first)
    times, values, qcs = zip(*rows, strict=True)
    return _joined(_JSON_TIMES(times), _json_numbers(values), _json_numbers(qcs), (b',"qc":', b"}"), first)


def _json_numbers(values: Sequence[Any]) -> list[bytes]:
    """orjson's text of each number (null for None), as the dict-per-point encoder wrote them."""
    return orjson.dumps(values)[1:-1].split(b",")


def series_points(rows: list[SeriesRow]) -> list[dict[str, Any]]:
    """The points as the JSON objects `series_json` writes (the reference its text is tested against)."""
    times = rfc3339_many([row[0] for row in rows])
    return [{"time": t, "value": row[1], "qc": row[2]} for t, row in zip(times, rows, strict=True)]


def series_json(head: dict[str, Any], chunks: Iterable[Sequence[SeriesRow]]) -> Iterator[bytes]:
    opening = orjson.dumps(head)
    yield opening[:-1] + (b',"' if head else b'"') + b'points":['
    first = True
    for rows in chunks:
        if rows:
            yield series_points_json(rows, first)
            first = False
    yield b"]}"


def _csv_numbers(values: Sequence[Any]) -> list[bytes]:
    """`repr` of each number, '' for None: orjson's text where it is repr's (orjson writes 1e-05 as 0.00001, 1e-07
    as 1e-7 and inf as null, so a chunk holding a small magnitude, an exponent or an infinity takes repr number by
    number)."""
    text = orjson.dumps(values)
    # orjson writes an infinite value as null (repr: inf), hence the count
    if b"e" in text or b"0.0000" in text or (b"null" in text and text.count(b"null") != values.count(None)):
        return [b"" if v is None else repr(v).encode() for v in values]
    return text[1:-1].replace(b"null", b"").split(b",")


def series_csv(chunks: Iterable[Sequence[SeriesRow]]) -> Iterator[bytes]:
    """`time,value,qc` rows; repr() of a value is the shortest text that reads back as the same float, so CSV loses
    nothing."""
    yield b"time,value,qc\n"
    for rows in chunks:
        if not rows:
            continue
        if isinstance(rows, PointColumns):  # the numbers' text as the store read it: repr's already, null aside
            yield _joined(_CSV_TIMES(rows.times), _csv_null(rows.values), _csv_null(rows.qcs), (b",", b"\n"), False)
            continue
        times, values, qcs = zip(*rows, strict=True)
        yield _joined(_CSV_TIMES(times), _csv_numbers(values), _csv_numbers(qcs), (b",", b"\n"), False)


def _csv_null(texts: list[bytes]) -> list[bytes]:
    """JSON number texts with null as an empty CSV field."""
    return b",".join(texts).replace(b"null", b"").split(b",") if b"null" in texts else texts


# --- flux records --------------------------------------------------------------------------------------------------

def flux_records(rows: list[FluxRow]) -> list[dict[str, Any]]:
    """Rows as `FluxRecord` JSON objects (same keys, same order; stored records carry no seq)."""
    return [{"schema_version": FLUX_SCHEMA_VERSION, "site": r.site, "station": r.station,
             "start": rfc3339(r.start_ns), "end": rfc3339(r.end_ns), "status": r.status, "reasons": r.reasons,
             "engine_version": r.engine_version, "settings_hash": r.settings_hash, "values": r.values, "seq": None}
            for r in rows]


class _RecordText:
    """The JSON text around a record's times and values, by what it is made of: records of one result set share
    site, station, status, reasons, engine version and settings hash, so the text of those is written once."""

    def __init__(self) -> None:
        self.cache: dict[tuple[str, str, str, tuple[str, ...], str, str], tuple[str, str]] = {}

    def __call__(self, r: FluxRow) -> tuple[str, str]:
        return self.of(r.site, r.station, r.status, r.reasons, r.engine_version, r.settings_hash)

    def of(self, site: str, station: str, status: str, reasons: list[str], engine_version: str,
           settings_hash: str) -> tuple[str, str]:
        key = (site, station, status, tuple(reasons), engine_version, settings_hash)
        text = self.cache.get(key)
        if text is None:
            if len(self.cache) >= 10_000:
                self.cache.clear()
            dumps = orjson.dumps
            before = (f'{{"schema_version":{FLUX_SCHEMA_VERSION},"site":{dumps(site).decode()},'
                      f'"station":{dumps(station).decode()},"start":"')
            after = (f'","status":{dumps(status).decode()},"reasons":{dumps(reasons).decode()},'
                     f'"engine_version":{dumps(engine_version).decode()},'
                     f'"settings_hash":{dumps(settings_hash).decode()},"values":')
            text = self.cache[key] = (before, after)
        return text


# A chunk the store hands on as texts (`FluxTexts`) is written with no Python step per value: a list of pieces,
# `stride` a record — the text before its start time, its start and end times (one piece: `_TimeTexts`, the whole
# chunk at once), the text after them, then each variable's key and value, then the record's end — laid out by
# `FluxTexts.laid` from slots per kind of record: a constant (a key, the text around the times, null) or a cell of
# the record's row. One `bytes.join` writes the chunk.

_START_END_TIMES = _TimeTexts(b"", b"", between=b'","end":"')
_CSV_START_END_TIMES = _TimeTexts(b"", b"", between=b",")
_NULL, _NOTHING = b"null", b""

Slot = int | bytes  # a cell of the record's row, or a constant text


def _records_json(chunk: FluxTexts, texts: _RecordText, first: bool) -> bytes:
    """The records of `chunk` as `fluxes_json` writes them, each with a leading comma unless `first`."""
    most = max(len(k.names) for k in chunk.kinds)
    slots: list[list[Slot]] = []
    for kind in chunk.kinds:
        before, after = texts.of(chunk.site, chunk.station, kind.status, kind.reasons, chunk.engine_version,
                                 chunk.settings_hash)
        kind_slots: list[Slot] = [("," + before).encode(), _NOTHING, after.encode() + b"{"]
        for j, (name, column) in enumerate(zip(kind.names, chunk.value_columns(kind, kind.names), strict=True)):
            kind_slots += [f'{"," if j else ""}"{name}":'.encode(), column if column >= 0 else _NULL]
        kind_slots += [_NOTHING] * (2 * (most - len(kind.names)))
        slots.append([*kind_slots, b'},"seq":null}'])
    parts = chunk.laid(slots)
    stride = len(slots[0])
    parts[1::stride] = _START_END_TIMES(chunk.start_ns(), chunk.end_ns)
    if first:
        parts[0] = parts[0][1:]
    return b"".join(parts)


def _records_csv(chunk: FluxTexts, names: Sequence[str]) -> bytes:
    """The rows of `chunk` as `fluxes_csv` writes them."""
    slots: list[list[Slot]] = []
    for kind in chunk.kinds:
        fields = _csv_fields(chunk.site, chunk.station, chunk.engine_version, chunk.settings_hash, kind.status,
                             kind.reasons)
        kind_slots: list[Slot] = [_NOTHING, ("," + fields).encode()]
        for column in chunk.value_columns(kind, names):
            kind_slots += [b",", column if column >= 0 else _NOTHING]
        slots.append([*kind_slots, b"\n"])
    parts = chunk.laid(slots)
    if _NULL in parts:  # a null the record does not list among its nulls (never written so): empty, as None
        parts = [_NOTHING if p == _NULL else p for p in parts]
    stride = len(slots[0])
    parts[0::stride] = _CSV_START_END_TIMES(chunk.start_ns(), chunk.end_ns)
    return b"".join(parts)


def fluxes_json(head: dict[str, Any], chunks: Iterable[Sequence[FluxRow]]) -> Iterator[bytes]:
    """`{...head, "records": [...]}` with each record as `flux_records` writes it (same keys, order and number
    text), without a dict per record: a chunk of texts (`FluxTexts`) as above; a chunk of rows with its `values`
    written by orjson in one call and cut apart (a values object holds only names and numbers, so `},{` occurs
    only between two of them)."""
    opening = orjson.dumps(head)
    yield opening[:-1] + (b',"' if head else b'"') + b'records":['
    texts = _RecordText()
    first = True
    for rows in chunks:
        if not rows:
            continue
        if isinstance(rows, FluxTexts):
            yield _records_json(rows, texts, first)
            first = False
            continue
        values = orjson.dumps([r.values for r in rows]).decode()[2:-2].split("},{")
        starts = rfc3339_many([r.start_ns for r in rows])
        ends = rfc3339_many([r.end_ns for r in rows])
        parts = []
        for r, start, end, value in zip(rows, starts, ends, values, strict=True):
            before, after = texts(r)
            parts.append(f'{before}{start}","end":"{end}{after}{{{value}}},"seq":null}}')
        yield ("" if first else ",").encode() + ",".join(parts).encode()
        first = False
    yield b"]}"


def _csv_text(text: str) -> str:
    """A CSV field as the csv module writes it (QUOTE_MINIMAL): quoted when it holds a comma, quote or line break."""
    if any(c in text for c in _CSV_SPECIAL):
        return '"' + text.replace('"', '""') + '"'
    return text


_CSV_SPECIAL = (",", '"', "\n", "\r")


def fluxes_csv(names: Sequence[str], chunks: Iterable[Sequence[FluxRow]]) -> Iterator[bytes]:
    """One row per record: start, end, site, station, engine_version, settings_hash, status, reasons ('; '), then
    `names` (empty where a record has no value). The numbers of a row are written by orjson in one call (shortest
    round-trip text, as repr: `1e-07` may read `1e-7`), which is what makes a year of ~100 columns cheap; a chunk of
    texts (`FluxTexts`) is written from a table of pieces, as in `fluxes_json`."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(
        ["start", "end", "site", "station", "engine_version", "settings_hash", "status", "reasons", *names])
    yield out.getvalue().encode()
    dumps = orjson.dumps
    for rows in chunks:
        if isinstance(rows, FluxTexts) and rows:
            yield _records_csv(rows, names)
            continue
        lines = []
        for r in rows:
            get = r.values.get
            numbers = dumps([get(n) for n in names])[1:-1].replace(b"null", b"")
            head = (f"{rfc3339(r.start_ns)},{rfc3339(r.end_ns)},"
                    f"{_csv_fields(r.site, r.station, r.engine_version, r.settings_hash, r.status, r.reasons)}")
            lines.append(head.encode() + (b"," + numbers if names else b"") + b"\n")
        yield b"".join(lines)


def _csv_fields(site: str, station: str, engine_version: str, settings_hash: str, status: str,
                reasons: list[str]) -> str:
    """The fields of a CSV row between its times and its numbers."""
    return (f"{_csv_text(site)},{_csv_text(station)},{_csv_text(engine_version)},{_csv_text(settings_hash)},"
            f"{_csv_text(status)},{_csv_text('; '.join(reasons))}")


class _AmerifluxCells:
    """`gateway.flux.files.ameriflux_cells` of the rows of a chunk, column by column in numpy instead of a format
    per value (which was most of an AmeriFlux body's time: 1.88 s of server CPU for a station-year against 1.01 s
    for its JSON). Every value is rounded to 9 significant digits by arithmetic (scaled by an exact power of ten
    into [1e8, 1e9), rounded to an integer, scaled back by one correctly rounded division: the double nearest that
    9-digit decimal), and orjson writes that double in its shortest round-trip text, which is then the decimal's
    digits — `format(v, ".9g")` but for a trailing `.0`, which is cut. Flags and counts are `int(v)` the same way.
    A value left to `format` itself, one by one: one whose scaled value lies within 1e-6 of a half (the scaling's
    error is below 1e-7, so elsewhere the integer is the one correct rounding gives; at a half, ties), one %g writes
    with an exponent (below 1e-4, 1e9 and above) and a count of 1e15 or more."""

    def __init__(self, cols: Sequence[str]) -> None:
        self.cols = list(cols)
        self.integer = np.array([c in _AMERIFLUX_INTEGER_CELLS or c.endswith("_SSITC_TEST") for c in cols], bool)

    def rows(self, values: list[list[Any]]) -> list[bytes] | None:
        """The cells of each row of `values` (one list of the values of `cols` a row, None where missing), joined
        by commas; None when a value is no number numpy takes (the caller writes such rows with `line`)."""
        try:
            v = np.array(values, dtype=np.float64).reshape(len(values), len(self.cols))
        except (TypeError, ValueError, OverflowError):
            return None
        return self.of(v, lambda row, col: values[row][col])

    def of(self, v: np.ndarray, original: Callable[[int, int], Any]) -> list[bytes]:
        """The cells of each row of `v` (rows x `cols`, NaN where missing), joined by commas; `original(row, col)`
        is the value `v` holds as a float, for a value left to `format`."""
        texts, special = _ameriflux_texts(v, self.integer)
        fixes: dict[int, list[int]] = {}
        for at in special.tolist():
            row, col = divmod(at, len(self.cols))
            fixes.setdefault(row, []).append(col)
        for row, cols in fixes.items():  # a value %g writes with an exponent, a tie, a huge count: as the writer does
            cells = texts[row].split(b",")
            for col in cols:
                value = original(row, col)
                cells[col] = (str(int(value)) if self.integer[col] else format(value, ".9g")).encode()
            texts[row] = b",".join(cells)
        return texts

    def line(self, values: list[Any]) -> bytes:
        """One row's cells, joined by commas, by `ameriflux_cells` itself."""
        return ",".join(ameriflux_cells(self.cols, dict(zip(self.cols, values, strict=True)))).encode()


def _ameriflux_texts(v: np.ndarray, integer: np.ndarray) -> tuple[list[bytes], np.ndarray]:
    """The AmeriFlux text of each row of `v` (rows x columns; flags and counts where `integer`), its cells joined by
    commas, and the flat indices of the values left to `format` (their text here is a placeholder): one orjson dump
    of the rows, `.0` cut after a whole number."""
    finite = np.isfinite(v)
    with np.errstate(all="ignore"):
        size = np.abs(v)
        exponent = np.floor(np.log10(size))
        # log10 may miss by one next to a power of ten: the scaled value says so
        scale = _AMERIFLUX_SCALE.take(np.clip(8 - exponent, -1, 14).astype(np.int64, copy=False) + 1, mode="clip")
        scaled = size * scale
        high, low = scaled >= 1e9, scaled < 1e8
        exponent += high
        exponent -= low
        scale = _AMERIFLUX_SCALE.take(np.clip(8 - exponent, -1, 14).astype(np.int64, copy=False) + 1, mode="clip")
        scaled = size * scale
        whole = np.floor(scaled)
        tie = np.abs(scaled - whole - 0.5) < 1e-6
        rounded = np.copysign((whole + (scaled - whole > 0.5)) / scale, v)
        near = np.abs(rounded)
        fixed = finite & (((near >= 1e-4) & (near < 1e9) & ~tie & (exponent >= -5) & (exponent <= 8)) | (v == 0))
        truncated = np.trunc(v) + 0.0  # int(v); + 0.0: int(-0.0) is 0
        counted = finite & (np.abs(truncated) < 1e15)
    out = np.where(integer, truncated, rounded)
    done = np.where(integer, counted, fixed)
    out[~finite] = MISSING
    special = np.flatnonzero(finite & ~done)
    out.reshape(-1)[special] = 0.0
    text = orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY)
    return text.replace(b".0,", b",").replace(b".0]", b"]")[2:-2].split(b"],["), special


#: 10**k for k = -1..14 (at index k + 1): exact but for 0.1, which only a value of 1e9 or more meets (written by
#: `format`)
_AMERIFLUX_SCALE = np.array([0.1, *[float(10**k) for k in range(15)]])


_AMERIFLUX_INTEGER_CELLS = frozenset(("N_RECORDS", "N_USED"))
_AMERIFLUX_MISSING = str(MISSING)


def ameriflux_csv(cols: Sequence[str], chunks: Iterable[Sequence[FluxRow]], *, base_only: bool = False
                  ) -> Iterator[bytes]:
    """AmeriFlux BASE CSV, the text `gateway.flux.files.write_ameriflux_csv` writes for the same records; a chunk
    of texts (`FluxTexts`) has its values parsed into one list a record (`FluxTexts.value_lists`), not a dict."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(ameriflux_header(cols, base_only))
    yield out.getvalue().encode()
    cells = _AmerifluxCells(cols)
    for rows in chunks:
        if not rows:
            continue
        if isinstance(rows, FluxTexts):
            yield _records_ameriflux(rows, cells, base_only)
            continue
        get_cells = [[r.values.get(c) for c in cols] for r in rows] if cols else []
        texts = cells.rows(get_cells) if cols else None
        lines = []
        for at, r in enumerate(rows):
            line = f"{ameriflux_stamp(r.start_ns)},{ameriflux_stamp(r.end_ns)}".encode()
            if cols:
                line += b"," + (texts[at] if texts is not None else cells.line(get_cells[at]))
            if not base_only:
                line += (f",{_csv_text(r.engine_version)},{_csv_text(r.settings_hash)},{_csv_text(r.status)},"
                         f"{_csv_text('; '.join(r.reasons))}").encode()
            lines.append(line)
        lines.append(b"")
        yield b"\n".join(lines)


def _records_ameriflux(chunk: FluxTexts, cells: _AmerifluxCells, base_only: bool) -> bytes:
    kinds = chunk.kinds
    texts = _chunk_ameriflux(chunk, cells) if cells.cols else None
    tails = [b"" if base_only else f",{_csv_text(chunk.engine_version)},{_csv_text(chunk.settings_hash)},"
             f"{_csv_text(kind.status)},{_csv_text('; '.join(kind.reasons))}".encode() for kind in kinds]
    ends = [tail + b"\n" for tail in tails]
    count = len(chunk)
    ends_of = [ends[0]] * count if len(ends) == 1 else [ends[kind] for kind in chunk.kind_of]
    stride = 2 if texts is None else 4
    parts: list[bytes] = [b""] * (stride * count)
    parts[0::stride] = _ameriflux_stamps(chunk.start_ns(), chunk.end_ns)
    if texts is not None:
        parts[1::stride] = [b","] * count
        parts[2::stride] = texts
    parts[stride - 1::stride] = ends_of
    return b"".join(parts)


def _chunk_ameriflux(chunk: FluxTexts, cells: _AmerifluxCells) -> list[bytes]:
    """The AmeriFlux cells of each record of `chunk`: every cell of its rows parsed by one orjson call into one
    table (a row's time and meta cells as null), each kind's columns of it taken by numpy; a chunk orjson or numpy
    does not take so parsed record by record (`FluxTexts.value_lists`)."""
    count, width = len(chunk), chunk.width
    texts = chunk.cells.copy()
    texts[0::width] = texts[width - 1::width] = [_NULL] * count  # a row's bracket is in its time and meta cells
    try:
        parsed = orjson.loads(b"[" + b",".join(texts) + b"]")
        table = np.array(parsed, dtype=np.float64).reshape(count, width)
    except (orjson.JSONDecodeError, TypeError, ValueError, OverflowError):
        values = chunk.value_lists([cells.cols] * len(chunk.kinds))
        return cells.rows(values) or [cells.line(row) for row in values]
    # a value the record lacks or lists among its nulls: the meta cell's NaN
    columns = [np.array([c if c >= 0 else width - 1 for c in chunk.value_columns(kind, cells.cols)], np.intp)
               for kind in chunk.kinds]
    kind_of = np.array(chunk.kind_of, np.intp)
    v = table.take(columns[0], axis=1) if len(columns) == 1 else np.empty((count, len(cells.cols)))
    if len(columns) > 1:
        for k, kind_columns in enumerate(columns):
            rows = np.flatnonzero(kind_of == k)
            v[rows] = table[rows[:, None], kind_columns]
    return cells.of(v, lambda row, col: parsed[row * width + int(columns[kind_of[row]][col])])
