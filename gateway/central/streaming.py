"""Response bodies written chunk by chunk from the store's streamed reads (`gateway.central.store.reads`): JSON and
CSV of series points and flux records, AmeriFlux BASE CSV. The API hands these generators to a StreamingResponse,
so a year costs the server the memory of one chunk, and the first bytes leave while the database still reads.

What a point or a record costs here is what makes a long range affordable (issue 13: ~9 µs of Python per point
before): no validated object per row (the store validated every row when it was written), times formatted from
integer nanoseconds with the date and hour looked up once per hour of data instead of `strftime` per timestamp,
JSON by orjson a chunk at a time, CSV by the csv module's C writer. The text is that of the whole-list encoders it
replaced: times as `gateway.model.format_time` writes them, numbers as `repr` (CSV) or their shortest round-trip
form (JSON), the same keys in the same order, the same CSV quoting. One difference: a flux value InfluxDB sends as
a JSON integer (it writes the float 150.0 as 150) is passed on as such, `150` rather than `150.0` — the same number
to any JSON or CSV reader.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import orjson

from gateway.central.store.reads import FluxRow, SeriesRow
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
    try:
        first = next(chunks)
    except StopIteration:
        return iter(())

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


def _json_array_items(items: list[Any], first: bool) -> bytes:
    """The items of a JSON array as the middle of one: `a,b,c`, with a leading comma unless `first`."""
    body = orjson.dumps(items)[1:-1]
    return body if first else b"," + body


def json_document(head: dict[str, Any], key: str, items: Iterable[list[Any]],
                  encode: Callable[[list[Any]], list[Any]]) -> Iterator[bytes]:
    """`{...head, key: [items...]}`: the head's fields first (orjson, in their order), then the array, one chunk of
    encoded items at a time."""
    opening = orjson.dumps(head)
    yield opening[:-1] + (b',"' if head else b'"') + key.encode() + b'":['
    first = True
    for chunk in items:
        if chunk:
            yield _json_array_items(encode(chunk), first)
            first = False
    yield b"]}"


# --- series ------------------------------------------------------------------------------------------------------

def series_points(rows: list[SeriesRow]) -> list[dict[str, Any]]:
    times = rfc3339_many([row[0] for row in rows])
    return [{"time": t, "value": row[1], "qc": row[2]} for t, row in zip(times, rows, strict=True)]


def series_json(head: dict[str, Any], chunks: Iterable[list[SeriesRow]]) -> Iterator[bytes]:
    return json_document(head, "points", chunks, series_points)


def series_csv(chunks: Iterable[list[SeriesRow]]) -> Iterator[bytes]:
    yield b"time,value,qc\n"
    for rows in chunks:
        times = rfc3339_many([row[0] for row in rows])
        # repr() is the shortest text that reads back as the same float, so CSV loses nothing.
        yield "".join([f"{t},{'' if (v := row[1]) is None else repr(v)},{'' if (q := row[2]) is None else q}\n"
                       for t, row in zip(times, rows, strict=True)]).encode()


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
        key = (r.site, r.station, r.status, tuple(r.reasons), r.engine_version, r.settings_hash)
        text = self.cache.get(key)
        if text is None:
            if len(self.cache) >= 10_000:
                self.cache.clear()
            dumps = orjson.dumps
            before = (f'{{"schema_version":{FLUX_SCHEMA_VERSION},"site":{dumps(r.site).decode()},'
                      f'"station":{dumps(r.station).decode()},"start":"')
            after = (f'","status":{dumps(r.status).decode()},"reasons":{dumps(r.reasons).decode()},'
                     f'"engine_version":{dumps(r.engine_version).decode()},'
                     f'"settings_hash":{dumps(r.settings_hash).decode()},"values":')
            text = self.cache[key] = (before, after)
        return text


def fluxes_json(head: dict[str, Any], chunks: Iterable[list[FluxRow]]) -> Iterator[bytes]:
    """`{...head, "records": [...]}` with each record as `flux_records` writes it (same keys, order and number
    text), without a dict per record: a chunk's `values` are written by orjson in one call and cut apart (a values
    object holds only names and numbers, so `},{` occurs only between two of them)."""
    opening = orjson.dumps(head)
    yield opening[:-1] + (b',"' if head else b'"') + b'records":['
    texts = _RecordText()
    first = True
    for rows in chunks:
        if not rows:
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


def fluxes_csv(names: Sequence[str], chunks: Iterable[list[FluxRow]]) -> Iterator[bytes]:
    """One row per record: start, end, site, station, engine_version, settings_hash, status, reasons ('; '), then
    `names` (empty where a record has no value). The numbers of a row are written by orjson in one call (shortest
    round-trip text, as repr: `1e-07` may read `1e-7`), which is what makes a year of ~100 columns cheap."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(
        ["start", "end", "site", "station", "engine_version", "settings_hash", "status", "reasons", *names])
    yield out.getvalue().encode()
    dumps = orjson.dumps
    for rows in chunks:
        lines = []
        for r in rows:
            get = r.values.get
            numbers = dumps([get(n) for n in names])[1:-1].replace(b"null", b"")
            head = (f"{rfc3339(r.start_ns)},{rfc3339(r.end_ns)},{_csv_text(r.site)},{_csv_text(r.station)},"
                    f"{_csv_text(r.engine_version)},{_csv_text(r.settings_hash)},{_csv_text(r.status)},"
                    f"{_csv_text('; '.join(r.reasons))}")
            lines.append(head.encode() + (b"," + numbers if names else b"") + b"\n")
        yield b"".join(lines)


class _AmerifluxCells:
    """`gateway.flux.files.ameriflux_cells` of a row joined by commas, in one %-format per row: the format of each
    pattern of missing cells is built once (flags and counts `%d`, as `str(int(v))`; the rest `%.9g`, as
    `format(v, ".9g")`). A row with a value that is not finite takes `ameriflux_cells` itself."""

    def __init__(self, cols: Sequence[str]) -> None:
        self.cols = list(cols)
        self.kinds = ["%d" if c in _AMERIFLUX_INTEGER_CELLS or c.endswith("_SSITC_TEST") else "%.9g" for c in cols]
        self.formats: dict[tuple[int, ...], str] = {}

    def __call__(self, values: dict[str, int | float | None]) -> str:
        get = values.get
        cells = [get(c) for c in self.cols]
        present = [v for v in cells if v is not None]
        missing = () if len(present) == len(cells) else tuple([i for i, v in enumerate(cells) if v is None])
        total = sum(present)
        if total - total != 0:  # an infinite or NaN value (or a sum that overflowed): cell by cell
            return ",".join(ameriflux_cells(self.cols, values))
        layout = self.formats.get(missing)
        if layout is None:
            if len(self.formats) >= 10_000:
                self.formats.clear()
            gaps = set(missing)
            layout = self.formats[missing] = ",".join(
                _AMERIFLUX_MISSING if i in gaps else kind for i, kind in enumerate(self.kinds))
        return layout % tuple(present)


_AMERIFLUX_INTEGER_CELLS = frozenset(("N_RECORDS", "N_USED"))
_AMERIFLUX_MISSING = str(MISSING)


def ameriflux_csv(cols: Sequence[str], chunks: Iterable[list[FluxRow]], *, base_only: bool = False
                  ) -> Iterator[bytes]:
    """AmeriFlux BASE CSV, the text `gateway.flux.files.write_ameriflux_csv` writes for the same records."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(ameriflux_header(cols, base_only))
    yield out.getvalue().encode()
    cells = _AmerifluxCells(cols)
    for rows in chunks:
        if not rows:
            continue
        lines = []
        for r in rows:
            line = f"{ameriflux_stamp(r.start_ns)},{ameriflux_stamp(r.end_ns)}"
            if cols:
                line += "," + cells(r.values)
            if not base_only:
                line += (f",{_csv_text(r.engine_version)},{_csv_text(r.settings_hash)},{_csv_text(r.status)},"
                         f"{_csv_text('; '.join(r.reasons))}")
            lines.append(line)
        lines.append("")
        yield "\n".join(lines).encode()
