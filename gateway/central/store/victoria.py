"""VictoriaMetrics store: the readings in VictoriaMetrics (single node, or a cluster's vminsert/vmselect), everything
else (flux records, budget/soil/stems runs, health reports, ledger, alerts, provenance, qc reasons) in a side SQLite
file. Same contract as InfluxStore and SqliteStore (tests/central/test_store_*_contract.py run on all three).

Why this split: readings are nearly all of the points a network stores (a station: ~50 a second; fluxes and derived
runs: one per half hour), and they are what VictoriaMetrics is for: numbers on a time axis, written as InfluxDB line
protocol and queried with MetricsQL. What its data model cannot hold is kept beside it instead of being refused:

- **Strings.** VictoriaMetrics stores float64 samples only. A reading's `qc_reason` is kept in the side SQLite
  (`reading_reasons`, under the reading's identity); flux records and every derived result (JSON metadata, text
  columns) live there whole.
- **Exact values.** VictoriaMetrics keeps a block's values as decimals with a common exponent: 0.3333333333333333
  reads back as 0.3333333333, and 1e-300 stored beside 1e308 as 0. So each reading is written as `value` (what
  MetricsQL aggregates) and as the two 32-bit halves of its IEEE-754 bits, `hi` and `lo` (integers, which it keeps
  exactly): a raw read returns the very float that was written. Aggregates carry VictoriaMetrics' precision (about
  12 significant digits).
- **Microseconds.** Its timestamps are milliseconds. The microseconds within the millisecond are a field of their
  own (`us`), so a reading's time reads back exactly; but a series (site, station, sensor, variable) holds one
  reading per millisecond: a second reading of the same series in the same millisecond is refused
  (`WriteOutcome.rejected`, naming the one held). No instrument sinkwatch reads samples a variable faster than
  1 kHz.
- **Time range.** No time before 1970-01-02 (refused the same way: VictoriaMetrics 1.79 finds nothing in a search
  that starts on 1970-01-01); the server's `-retentionPeriod` must cover the data
  (tests: 100y; VictoriaMetrics silently drops older samples).

Points: InfluxDB line protocol to `/write` (single node) or `/insert/<tenant>/influx/write` (cluster vminsert),
measurement `readings`, tags site, station, sensor, variable, unit, time_source, fields value (absent when the
device had no value), hi, lo (absent likewise), us, qc, clock_synced (1/0); VictoriaMetrics names the series
`readings_<field>` with the tags as labels.

Identity and write-once: as InfluxStore, the store reads what it holds at a batch's times (`/api/v1/export`, one
request per station and cluster of times) and writes only new identities; it then asks VictoriaMetrics to make them
searchable at once (`/internal/force_flush`, on a single node; a cluster's vmstorage nodes are named in
`flush_urls`), so a redelivery a moment later is recognised; the look-up's selector is one VictoriaMetrics has never
seen (`_uncached`), as its cache of which series a filter matches can lag new series by up to 10 s.
The look-up and the write happen under the write guard's lock of the batch's stations (`writeguard`, shared by every
writer on this host through a file in the central service: several ingest workers), so two writers never both take
one identity as new; writers on several hosts must split the stations between them, as for InfluxDB.

Reads: raw points from `/api/v1/export` a page of time at a time (exact values), aggregates from
`/api/v1/query_range` with MetricsQL rollups evaluated at each window's end minus one millisecond
(`sum_over_time`, `count_over_time`, `min_over_time`, `max_over_time`, `last_over_time` with `tlast_over_time`,
`max_over_time` of qc), series and stations from instant queries (`count_over_time`, `tlast_over_time`). Every
caller-supplied string reaches MetricsQL as a quoted label value, escaped (`_quote`). The budget's `window_means`
and the alerts' `reading_stats` filter on qc per reading, which MetricsQL cannot do inside a window: they read the
raw points and compute in Python.
"""

from __future__ import annotations

import math
import secrets
import sqlite3
import struct
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from gateway.central.store.alerts import ReadingStats
from gateway.central.store.base import (
    Aggregate,
    QueryTooLarge,
    ReadingClassifier,
    ReadingIdentity,
    RejectedReading,
    SeriesPoint,
    SeriesSource,
    StationInfo,
    StoredReading,
    StoreError,
    StoreUnavailable,
    WriteOutcome,
    WriteRequest,
    check_window,
    every_ns,
    from_ns,
    merge_station_rows,
    reading_identity,
    to_ns,
)
from gateway.central.store.budget import WindowMean
from gateway.central.store.ledger import LedgerItem
from gateway.central.store.reads import CHUNK_ROWS, SeriesRow
from gateway.central.store.sqlite import SqliteStore
from gateway.central.store.writeguard import WriteGuard
from gateway.model import QualityFlag, Reading, TimeSource

MEASUREMENT = "readings"
_FIELDS = ("value", "hi", "lo", "us", "qc", "clock_synced")
_TAGS = ("site", "station", "sensor", "variable", "unit", "time_source")
_HELD_QUERY_GAP_MS = 600_000
_RAW_PAGE_MS = 6 * 3600 * 1000  # export pages of raw points: 2,160 readings of a 10-s series
_STEPS_PER_QUERY = 10_000  # query_range points per request (the server's default limit is 30,000)
_NS_PER_MS = 1_000_000
# VictoriaMetrics 1.79 finds no series in a search whose range starts on 1970-01-01 (its per-day index): the store
# holds times from 1970-01-02 on (readings are plausible from 2000 on anyway)
_EARLIEST_MS = 86_400_000
_UNCACHED_LABEL = "sinkwatch_uncached"
_RANGE_FUNCTIONS = {"mean": "sum_over_time", "min": "min_over_time", "max": "max_over_time",
                    "count": "count_over_time", "last": "last_over_time"}

_REASONS_SCHEMA = """
CREATE TABLE IF NOT EXISTS reading_reasons (
    site TEXT NOT NULL, station TEXT NOT NULL, sensor TEXT NOT NULL, variable TEXT NOT NULL, time_ns INTEGER NOT NULL,
    qc_reason TEXT NOT NULL,
    PRIMARY KEY (station, variable, time_ns, sensor, site)
) WITHOUT ROWID
"""


def _quote(text: str) -> str:
    """A MetricsQL (and export match[]) string literal of `text`: double-quoted, every quote, backslash and control
    character escaped, so no label value can end the string."""
    out = []
    for char in text:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _selector(metric: str | None = None, **labels: str | None) -> str:
    parts = [f"__name__={_quote(metric)}"] if metric is not None else [f'__name__=~"{MEASUREMENT}_.+"']
    parts += [f"{name}={_quote(value)}" for name, value in labels.items() if value is not None]
    return "{" + ",".join(parts) + "}"


def _uncached(selector: str) -> str:
    """`selector` with a matcher no series fails (a label none has, unequal to a fresh random text), so that
    VictoriaMetrics answers it from its index. VictoriaMetrics 1.79 keeps which series a filter matched over a day in
    a cache that it empties when its index flushes, which comes with /internal/force_flush only if the new series are
    still waiting for it; when its own 1-s flusher indexed them first (a slow write, a loaded host), only on a 10-s
    tick."""
    return f'{selector[:-1]},{_UNCACHED_LABEL}!="{secrets.token_hex(8)}"}}'


def _escape_tag(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ").replace(
        "\n", "\\n")


def _bits(value: float) -> tuple[int, int]:
    packed: int = struct.unpack("<Q", struct.pack("<d", value))[0]
    return packed >> 32, packed & 0xFFFFFFFF


def _float(hi: float, lo: float) -> float:
    value: float = struct.unpack("<d", struct.pack("<Q", (int(hi) << 32) | int(lo)))[0]
    return value


def _seconds(ms: int) -> str:
    """A millisecond timestamp as the seconds VictoriaMetrics' HTTP API takes."""
    return f"{ms // 1000}.{ms % 1000:03d}"


class VictoriaStore(SqliteStore):
    """Readings in VictoriaMetrics at `url` (single node: http://host:8428), the rest in the SQLite file
    `side_path`. For a cluster give `insert_url` (vminsert, e.g. http://vminsert:8480/insert/0/influx) and
    `select_url` (vmselect, e.g. http://vmselect:8481/select/0/prometheus) and the vmstorage nodes' `flush_urls`."""

    def __init__(self, url: str | None = None, *, side_path: Path | str, insert_url: str | None = None,
                 select_url: str | None = None, flush_urls: Sequence[str] | None = None, timeout_s: float = 10.0,
                 ping_timeout_s: float = 1.0, write_guard: WriteGuard | Path | None = None) -> None:
        if url is None and (insert_url is None or select_url is None):
            raise ValueError("VictoriaStore needs url (single node) or insert_url and select_url (cluster)")
        base = (url or "").rstrip("/")
        self.url = base or str(select_url)
        self.insert_url = (insert_url or base).rstrip("/")
        self.select_url = (select_url or base).rstrip("/")
        self.flush_urls = list(flush_urls) if flush_urls is not None else ([base] if base else [])
        self.ping_timeout_s = min(ping_timeout_s, timeout_s)
        # who may decide that a reading is new: the writers of this host share the guard's per-station locks
        # (`writeguard`; its marks are InfluxStore's and unused here)
        self._own_guard = not isinstance(write_guard, WriteGuard)
        self._guard = write_guard if isinstance(write_guard, WriteGuard) else WriteGuard(write_guard)
        self._http = httpx.Client(timeout=timeout_s)
        super().__init__(side_path)
        with self._lock:
            self._conn.execute(_REASONS_SCHEMA)

    # --- HTTP ------------------------------------------------------------------------------------------------------

    def _get(self, path: str, params: Any) -> httpx.Response:
        try:
            response = self._http.get(f"{self.select_url}{path}", params=params)
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"VictoriaMetrics at {self.select_url} unreachable: {type(exc).__name__}: "
                                   f"{exc}") from exc
        if response.status_code >= 500 or response.status_code in (401, 403, 429):
            raise StoreUnavailable(f"VictoriaMetrics at {self.select_url} failed a query ({response.status_code}): "
                                   f"{response.text[:200]}")
        if response.status_code != 200:
            raise StoreError(f"VictoriaMetrics query failed ({response.status_code}): {response.text[:300]}")
        return response

    def _export(self, selector: str, first_ms: int, last_ms: int) -> Iterator[dict[str, Any]]:
        """The series of `selector` with samples in [first_ms, last_ms], one JSON object per line."""
        response = self._get("/api/v1/export", [("match[]", selector), ("start", _seconds(first_ms)),
                                                ("end", _seconds(last_ms))])
        for line in response.content.splitlines():
            if line.strip():
                yield orjson.loads(line)

    def _instant(self, query: str, at_ms: int) -> list[dict[str, Any]]:
        response = self._get("/api/v1/query", {"query": query, "time": _seconds(at_ms), "nocache": "1"})
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        return result

    def _range(self, query: str, first_ms: int, last_ms: int, step_ms: int) -> list[dict[str, Any]]:
        response = self._get("/api/v1/query_range", {"query": query, "start": _seconds(first_ms),
                                                     "end": _seconds(last_ms), "step": f"{step_ms}ms",
                                                     "nocache": "1"})
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        return result

    # --- points read back ------------------------------------------------------------------------------------------

    def _samples(self, first_ns: int, last_ns: int, labels: dict[str, str | None], *,
                 uncached: bool = False) -> Iterator[tuple[dict[str, str], int, dict[str, float]]]:
        """(tags, time in ns, fields) of every reading whose series matches `labels` with time in
        [first_ns, last_ns], in no order; `uncached`: see `_uncached`."""
        first_ms, last_ms = first_ns // _NS_PER_MS, last_ns // _NS_PER_MS
        if last_ms < 0:
            return
        samples: dict[tuple[tuple[str, str], ...], dict[int, dict[str, float]]] = defaultdict(dict)
        selector = _selector(None, **labels)
        for series in self._export(_uncached(selector) if uncached else selector, max(first_ms, 0), last_ms):
            metric = series["metric"]
            field = str(metric.get("__name__", ""))[len(MEASUREMENT) + 1:]
            key = tuple(sorted((k, str(v)) for k, v in metric.items() if k != "__name__"))
            by_time = samples[key]
            for stamp, value in zip(series["timestamps"], series["values"], strict=True):
                by_time.setdefault(int(stamp), {})[field] = value
        for key, by_time in samples.items():
            tags = dict(key)
            for ms, fields in by_time.items():
                if "qc" not in fields:
                    continue  # a sample of another writer's layout: not a reading of ours
                time_ns = ms * _NS_PER_MS + int(fields.get("us", 0)) * 1000
                if first_ns <= time_ns <= last_ns:
                    yield tags, time_ns, fields

    def _points(self, first_ns: int, last_ns: int, labels: dict[str, str | None], *,
                uncached: bool = False) -> list[StoredReading]:
        """Every reading whose series matches `labels` with time in [first_ns, last_ns], exact, in no order;
        `uncached`: see `_uncached`."""
        return [_stored(tags, time_ns, _value(fields), fields)
                for tags, time_ns, fields in self._samples(first_ns, last_ns, labels, uncached=uncached)]

    def _rows(self, first_ns: int, last_ns: int, labels: dict[str, str | None]) -> list[SeriesRow]:
        """What `_points` finds as (time in ns, value, qc) rows in time order, without a Reading per row (a
        streamed raw series: most of its cost would be building them)."""
        rows: list[SeriesRow] = [(time_ns, _value(fields), int(fields["qc"]))
                for _, time_ns, fields in self._samples(first_ns, last_ns, labels)]
        rows.sort(key=lambda row: row[0])
        return rows

    def _with_reasons(self, items: list[StoredReading]) -> list[StoredReading]:
        """`items` with the qc_reason the side SQLite keeps for them."""
        if not items:
            return items
        keys = {reading_identity(i) for i in items}
        stations = {(k[1], k[3]) for k in keys}
        times = [k[4] for k in keys]
        reasons: dict[ReadingIdentity, str] = {}
        with self._lock:
            for station, variable in stations:
                for site, st, sensor, var, time_ns, reason in self._conn.execute(
                        "SELECT site, station, sensor, variable, time_ns, qc_reason FROM reading_reasons WHERE "
                        "station = ? AND variable = ? AND time_ns >= ? AND time_ns <= ?",
                        (station, variable, min(times), max(times))):
                    reasons[(site, st, sensor, var, time_ns)] = reason
        if not reasons:
            return items
        out = []
        for item in items:
            reason = reasons.get(reading_identity(item))
            if reason is not None:
                item = StoredReading(item.site, Reading.model_construct(**{**dict(item.reading),
                                                                           "qc_reason": reason}))
            out.append(item)
        return out

    # --- writing ---------------------------------------------------------------------------------------------------

    def held_readings(self, items: list[StoredReading]) -> dict[ReadingIdentity, StoredReading]:
        wanted = {reading_identity(item) for item in items}
        return {k: v for k, v in self._held(items).items() if k in wanted}

    def _held(self, items: list[StoredReading]) -> dict[ReadingIdentity, StoredReading]:
        """What VictoriaMetrics holds in the milliseconds of `items`' times, by identity (one export per station
        and cluster of times)."""
        times: dict[tuple[str, str], list[int]] = defaultdict(list)
        for item in items:
            times[(item.site, item.reading.station)].append(to_ns(item.reading.time))
        held: dict[ReadingIdentity, StoredReading] = {}
        for (site, station), stamps in times.items():
            ordered = sorted(stamps)
            runs: list[list[int]] = []
            for stamp in ordered:
                if runs and stamp - runs[-1][1] <= _HELD_QUERY_GAP_MS * _NS_PER_MS:
                    runs[-1][1] = stamp
                else:
                    runs.append([stamp, stamp])
            for first, last in runs:
                lo = first // _NS_PER_MS * _NS_PER_MS
                hi = last // _NS_PER_MS * _NS_PER_MS + _NS_PER_MS - 1
                # uncached: a series written a moment ago (by any writer) must be found, or its resend is stored twice
                points = self._points(lo, hi, {"site": site, "station": station}, uncached=True)
                for point in self._with_reasons(points):
                    held[reading_identity(point)] = point
        return held

    def write(self, batch_points: list[StoredReading], *, ledger: LedgerItem | None = None) -> WriteOutcome:
        return self.write_many([(batch_points, ledger)])[0]

    def write_many(self, batches: Sequence[WriteRequest]) -> list[WriteOutcome]:
        """Every batch's new readings in one line-protocol request, then their qc reasons and the batches' ledger
        items in one SQLite transaction. What is held is read once for all batches; an identity (or millisecond of a
        series) an earlier batch of the call took counts as held for the later ones."""
        everything = [item for points, _ in batches for item in points]
        with self._guard.hold({(item.site, item.reading.station) for item in everything}):
            return self._write_held(batches, everything)

    def _write_held(self, batches: Sequence[WriteRequest], everything: list[StoredReading]) -> list[WriteOutcome]:
        """`write_many` with the batches' stations locked: from the look-up of what is held to the last write."""
        held = self._held(everything) if everything else {}
        slots = {(k[0], k[1], k[2], k[3], k[4] // _NS_PER_MS): k[4] for k in held}
        classifiers: list[ReadingClassifier] = []
        rejected: list[list[RejectedReading]] = []
        lines: list[str] = []
        reasons: list[tuple[str, str, str, str, int, str]] = []
        for points, _ in batches:
            classifier = ReadingClassifier(held)  # one dict for all batches
            refused: list[RejectedReading] = []
            for item in points:
                key = reading_identity(item)
                slot = (*key[:4], key[4] // _NS_PER_MS)
                holder = slots.get(slot)
                if key[4] < _EARLIEST_MS * _NS_PER_MS:
                    if classifier.add(item, key):
                        del held[key]
                        refused.append(RejectedReading(item, "this VictoriaMetrics store holds no time before "
                                                             "1970-01-02 (its timestamps are ms since 1970)"))
                    continue
                if key not in held and holder is not None and holder != key[4]:
                    classifier.add(item, key)
                    del held[key]
                    refused.append(RejectedReading(item, (
                        f"VictoriaMetrics keeps one reading per series and millisecond; "
                        f"{from_ns(holder).isoformat()} holds this millisecond of "
                        f"{item.reading.sensor}/{item.reading.variable}")))
                    continue
                if classifier.add(item, key):
                    slots[slot] = key[4]
                    lines.append(_line(item))
                    r = item.reading
                    if r.qc_reason:
                        reasons.append((item.site, r.station, r.sensor, r.variable, key[4], r.qc_reason))
            classifiers.append(classifier)
            rejected.append(refused)
        if lines:
            self._post_lines("\n".join(lines))
        ledgers = [ledger for _, ledger in batches if ledger is not None]
        if reasons or ledgers:
            # after the readings: a reason or ledger item never names a reading that is not there; a crash in
            # between leaves readings whose redelivery (no receipt was sent) writes them here then
            with self._lock:
                try:
                    self._conn.execute("BEGIN IMMEDIATE")
                    try:
                        self._conn.executemany("INSERT OR IGNORE INTO reading_reasons VALUES (?,?,?,?,?,?)",
                                               reasons)
                        if ledgers:
                            self._insert_ledger(ledgers)
                    except BaseException:
                        self._conn.execute("ROLLBACK")
                        raise
                    self._conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    raise StoreUnavailable(f"SQLite database {self.path} refused the write: {exc}; will "
                                           "retry") from exc
        return [classifier.outcome(refused) for classifier, refused in zip(classifiers, rejected, strict=True)]

    def _post_lines(self, body: str) -> None:
        try:
            response = self._http.post(f"{self.insert_url}/write", content=body.encode("utf-8"))
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"VictoriaMetrics at {self.insert_url} unreachable: {type(exc).__name__}: "
                                   f"{exc}; will retry") from exc
        if response.status_code not in (200, 204):
            raise StoreUnavailable(f"VictoriaMetrics at {self.insert_url} failed the write ({response.status_code}):"
                                   f" {response.text[:200]}; will retry")
        for url in self.flush_urls:
            # what was written is searchable at once: the next batch's identity check must see it
            try:
                self._http.get(f"{url.rstrip('/')}/internal/force_flush")
            except httpx.HTTPError as exc:
                raise StoreUnavailable(f"VictoriaMetrics at {url} did not flush: {exc}; will retry") from exc

    # --- reading ---------------------------------------------------------------------------------------------------

    def query_series(
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
        limit: int | None = None,
    ) -> list[SeriesPoint]:
        points: list[SeriesPoint] = []
        for chunk in self.iter_series(station, variable, start, end, every, aggregate, site=site, sensor=sensor):
            points.extend(SeriesPoint(time=from_ns(int(t)), value=None if v is None else float(v),
                                      qc=None if q is None else int(q)) for t, v, q in chunk)
            if limit is not None and len(points) > limit:
                raise QueryTooLarge(f"more than {limit} points match")
        return points

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
        check_window(start, end, aggregate)
        start_ns, end_ns = to_ns(start), to_ns(end)
        labels = {"station": station, "variable": variable, "site": site, "sensor": sensor}
        extent = self._extent(start_ns, end_ns, labels)
        if extent is None:
            return
        first_ms, last_ms = extent
        if every is None:
            page_start = first_ms
            while page_start <= last_ms:
                page_end = min(page_start + _RAW_PAGE_MS, last_ms + 1)
                raw = self._rows(max(start_ns, page_start * _NS_PER_MS), min(end_ns - 1, page_end * _NS_PER_MS - 1),
                                 labels)
                for first in range(0, len(raw), CHUNK_ROWS):
                    yield raw[first:first + CHUNK_ROWS]
                page_start = page_end
            return
        step_ns = every_ns(every)
        window_ms = step_ns // _NS_PER_MS
        # windows wholly inside [start, end) come from MetricsQL; a window cut by start or end holds only the
        # readings inside, which a rollup cannot tell apart: those one or two are aggregated here from raw points
        inner_lo = -(-start_ns // step_ns) * step_ns
        inner_hi = end_ns // step_ns * step_ns
        if inner_lo > start_ns:
            edge = self._edge_window(labels, aggregate, start_ns, min(inner_lo, end_ns), step_ns)
            if edge:
                yield edge
        first_window = max(first_ms // window_ms * window_ms, inner_lo // _NS_PER_MS)
        last_window = min(last_ms // window_ms * window_ms, inner_hi // _NS_PER_MS - window_ms)
        while first_window <= last_window:
            page_last = min(last_window, first_window + (_STEPS_PER_QUERY - 1) * window_ms)
            rows = self._windows(labels, aggregate, window_ms, first_window, page_last)
            if rows:
                yield rows
            first_window = page_last + window_ms
        if inner_hi < end_ns and inner_hi >= inner_lo:
            edge = self._edge_window(labels, aggregate, inner_hi, end_ns, step_ns)
            if edge:
                yield edge

    def _edge_window(self, labels: dict[str, str | None], aggregate: str, lo_ns: int, hi_ns: int,
                     step_ns: int) -> list[SeriesRow]:
        """The row of the one window holding [lo_ns, hi_ns), from the raw readings in it."""
        points = sorted(self._points(lo_ns, hi_ns - 1, labels), key=lambda p: p.reading.time)
        if not points:
            return []
        qc = max(int(p.reading.qc) for p in points)
        values = [p.reading.value for p in points if p.reading.value is not None]
        value: float | None = None
        if values:
            value = {"mean": lambda: math.fsum(values) / len(values), "min": lambda: min(values),
                     "max": lambda: max(values), "count": lambda: float(len(values)),
                     "last": lambda: values[-1]}[aggregate]()
        return [(lo_ns - lo_ns % step_ns, value, qc)]

    def _extent(self, start_ns: int, end_ns: int, labels: dict[str, str | None]) -> tuple[int, int] | None:
        """First and last millisecond holding a reading of the series in [start, end), or None."""
        if end_ns <= 0:
            return None
        lo_ms, hi_ms = max(_EARLIEST_MS, start_ns // _NS_PER_MS), (end_ns - 1) // _NS_PER_MS
        if hi_ms < lo_ms:
            return None
        # an instant rollup at hi_ms looks at (hi_ms - d, hi_ms]: with d = hi_ms - lo_ms + 1, at [lo_ms, hi_ms]
        window = f"[{hi_ms - lo_ms + 1}ms]"
        selector = _selector(f"{MEASUREMENT}_qc", **labels)
        firsts = self._instant(f"min(tfirst_over_time({selector}{window}))", hi_ms)
        lasts = self._instant(f"max(tlast_over_time({selector}{window}))", hi_ms)
        if not firsts or not lasts:
            return None
        return round(float(firsts[0]["value"][1]) * 1000), round(float(lasts[0]["value"][1]) * 1000)

    def _windows(self, labels: dict[str, str | None], aggregate: str, window_ms: int, first_window: int,
                 last_window: int) -> list[SeriesRow]:
        """Rows of the windows starting first_window..last_window: each window [w, w + every) evaluated at its
        end (rollup windows are (t - d, t]) with `offset 1ms`, so a reading at w + every falls in the next one."""
        values = _selector(f"{MEASUREMENT}_value", **labels)
        qcs = _selector(f"{MEASUREMENT}_qc", **labels)
        d = f"[{window_ms}ms] offset 1ms"
        first_t, last_t = first_window + window_ms, last_window + window_ms
        per_series: dict[str, dict[int, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
        queries = {"qc": f"max_over_time({qcs}{d})", "count": f"count_over_time({values}{d})"}
        if aggregate != "count":
            queries["agg"] = f"{_RANGE_FUNCTIONS[aggregate]}({values}{d})"
        if aggregate == "last":
            queries["at"] = f"tlast_over_time({values}{d})"
        for name, query in queries.items():
            for series in self._range(query, first_t, last_t, window_ms):
                # some rollups keep the metric's name (max_over_time), others drop it: the labels say which series
                key = orjson.dumps({k: v for k, v in series["metric"].items() if k != "__name__"},
                                   option=orjson.OPT_SORT_KEYS).decode()
                for stamp, text in series["values"]:
                    per_series[key][round(float(stamp) * 1000)][name] = float(text)
        windows: dict[int, list[dict[str, float]]] = defaultdict(list)
        for by_time in per_series.values():
            for t, fields in by_time.items():
                windows[t - window_ms].append(fields)
        rows: list[SeriesRow] = []
        for w in sorted(windows):
            w_ns = w * _NS_PER_MS
            parts = windows[w]
            qc = max((int(p["qc"]) for p in parts if "qc" in p), default=None)
            counted = [p for p in parts if p.get("count", 0) > 0]
            value: float | None
            if not counted:
                value = None
            elif aggregate == "mean":
                value = sum(p["agg"] for p in counted) / sum(p["count"] for p in counted)
            elif aggregate == "min":
                value = min(p["agg"] for p in counted)
            elif aggregate == "max":
                value = max(p["agg"] for p in counted)
            elif aggregate == "count":
                value = float(sum(p["count"] for p in counted))
            else:
                value = max(counted, key=lambda p: p.get("at", 0.0))["agg"]
            if qc is None and value is None:
                continue
            rows.append((w_ns, value, qc))
        return rows

    def series_sources(self, station: str, variable: str, start: datetime, end: datetime) -> list[SeriesSource]:
        check_window(start, end, "mean")
        start_ns, end_ns = to_ns(start), to_ns(end)
        if end_ns <= 0:
            return []
        lo_ms, hi_ms = max(_EARLIEST_MS, start_ns // _NS_PER_MS), (end_ns - 1) // _NS_PER_MS
        if hi_ms < lo_ms:
            return []
        selector = _selector(f"{MEASUREMENT}_qc", station=station, variable=variable)
        found = set()
        for series in self._instant(f"count_over_time({selector}[{hi_ms - lo_ms + 1}ms])", hi_ms):
            metric = series["metric"]
            if float(series["value"][1]) > 0:
                found.add((str(metric.get("site", "")), str(metric.get("sensor", "")), str(metric.get("unit", ""))))
        return [SeriesSource(site=site, sensor=sensor, unit=unit) for site, sensor, unit in sorted(found)]

    def stations(self) -> list[StationInfo]:
        now_ms = to_ns(datetime.now().astimezone()) // _NS_PER_MS + 2 * 86_400_000  # readings up to a day ahead
        selector = _selector(f"{MEASUREMENT}_qc")
        rows = []
        for series in self._instant(f"tlast_over_time({selector}[{now_ms - _EARLIEST_MS + 1}ms])", now_ms):
            m = series["metric"]
            last_ms = round(float(series["value"][1]) * 1000)
            us = self._instant(f"last_over_time({_selector(f'{MEASUREMENT}_us', **_labels_of(m))}[1ms])",
                               last_ms)
            micro = int(float(us[0]["value"][1])) if us else 0
            rows.append((m.get("site", ""), m.get("station", ""), m.get("sensor", ""), m.get("variable", ""),
                         m.get("unit", ""), last_ms * _NS_PER_MS + micro * 1000))
        return merge_station_rows(rows)

    # --- what filters per reading: computed from the raw points ---------------------------------------------------

    def window_means(self, station: str, variable: str, start: datetime, end: datetime, every: timedelta, *,
                     site: str, sensor: str) -> list[WindowMean]:
        step = every_ns(every)
        sums: dict[int, list[float]] = defaultdict(lambda: [0.0, 0])
        for chunk in self.iter_series(station, variable, start, end, site=site, sensor=sensor):
            for t, v, q in chunk:
                if v is not None and q is not None and q <= 1:
                    acc = sums[t - t % step]
                    acc[0] += v
                    acc[1] += 1
        return [WindowMean(from_ns(b), s / n, int(n)) for b, (s, n) in sorted(sums.items())]

    def reading_stats(self, station: str, variables: Sequence[str], start: datetime, end: datetime, *,
                      max_qc: int = 1) -> list[ReadingStats]:
        check_window(start, end, "mean")
        stats: dict[tuple[str, str, str], list[Any]] = {}
        for name in sorted(set(variables)):
            for point in self._points(to_ns(start), to_ns(end) - 1, {"station": station, "variable": name}):
                r = point.reading
                if r.value is None or int(r.qc) > max_qc:
                    continue
                acc = stats.setdefault((point.site, r.sensor, r.variable), [r.unit, 0, math.inf, -math.inf, 0.0])
                acc[0] = min(acc[0], r.unit)
                acc[1] += 1
                acc[2] = min(acc[2], r.value)
                acc[3] = max(acc[3], r.value)
                acc[4] += r.value
        return [ReadingStats(site=site, sensor=sensor, variable=variable, unit=unit, count=n, minimum=lo,
                             maximum=hi, mean=total / n)
                for (site, sensor, variable), (unit, n, lo, hi, total) in sorted(stats.items())]

    def ping(self) -> bool:
        try:
            return self._http.get(f"{self.select_url.split('/select/')[0]}/health",
                                  timeout=self.ping_timeout_s).is_success and super().ping()
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        self._http.close()
        if self._own_guard:
            self._guard.close()
        super().close()


def _labels_of(metric: dict[str, Any]) -> dict[str, str | None]:
    return {k: str(v) for k, v in metric.items() if k in _TAGS}


def _line(item: StoredReading) -> str:
    r = item.reading
    time_ns = to_ns(r.time)
    ms, rest = divmod(time_ns, _NS_PER_MS)
    tags = ",".join(f"{name}={_escape_tag(str(value))}" for name, value in (
        ("site", item.site), ("station", r.station), ("sensor", r.sensor), ("variable", r.variable),
        ("unit", r.unit), ("time_source", str(getattr(r.time_source, "value", r.time_source)))))
    fields = [f"us={rest // 1000}i", f"qc={int(r.qc)}i", f"clock_synced={int(bool(r.clock_synced))}i"]
    if r.value is not None and math.isfinite(r.value):
        hi, lo = _bits(float(r.value))
        fields += [f"value={float(r.value)!r}", f"hi={hi}i", f"lo={lo}i"]
    return f"{MEASUREMENT},{tags} {','.join(fields)} {ms * _NS_PER_MS}"


def _value(fields: dict[str, float]) -> float | None:
    """The exact value from its IEEE bits; None for a reading without one."""
    return _float(fields["hi"], fields["lo"]) if "hi" in fields and "lo" in fields else None


def _stored(tags: dict[str, str], time_ns: int, value: float | None, fields: dict[str, float]) -> StoredReading:
    source = tags.get("time_source", "")
    qc = int(fields["qc"])
    reading = Reading.model_construct(
        station=tags.get("station", ""), sensor=tags.get("sensor", ""), variable=tags.get("variable", ""),
        value=value, unit=tags.get("unit", ""), time=from_ns(time_ns),
        time_source=TimeSource(source) if source in TimeSource.__members__.values() else source,
        clock_synced=bool(fields.get("clock_synced", 0)),
        qc=QualityFlag(qc) if qc in QualityFlag.__members__.values() else qc, qc_reason=None,
    )
    return StoredReading(site=tags.get("site", ""), reading=reading)
