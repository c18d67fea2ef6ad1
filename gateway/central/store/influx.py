"""InfluxDB store: line protocol writes (v1 HTTP API or influxdb-client's v2 API), InfluxQL reads via /query.

Point schema (one point per reading)::

    measurement  readings
    tags         site, station, sensor, variable, unit, time_source
    fields       value (float; omitted when the device had no value), qc (int), clock_synced (bool),
                 qc_reason (string; only when set)
    time         the reading's time, nanosecond precision

InfluxDB identifies a point by measurement + tag set + timestamp and merges the fields of a rewritten point into
the old ones. sinkwatch identifies a reading by (site, station, sensor, variable, time) only (`base`), so before a
write the store reads what it already holds at the batch's times and writes only new identities: a redelivery is a
no-op, a different reading under a held identity is reported as a conflict instead of being merged into it, and a
second unit or time source can never create a second point for one identity. InfluxDB 1.x answers a write with
a rejected point (field type conflict) with 400 "partial write" after storing the rest; the store then writes the
batch in halves until each refused reading is isolated, and reports those.

Flux records (one point per averaging period, `gateway.contract.FluxRecord`)::

    measurement  fluxes
    tags         site, station, engine_version, settings_hash
    fields       one per variable with a value (FC, H, LE, ...: float; *_SSITC_TEST flags and counts: integer),
                 period_s (float, end - start), status (string), reasons (string, JSON list),
                 names (string: every variable of the record, comma-separated), nulls (string: those without value),
                 names_id (string: 16 hex digits of the SHA-256 of names; a read of a few variables names the
                 record's variables by it instead of reading the long names, see `influx_reads`),
                 meta (string: names_id, period_s, status, nulls and reasons packed in one field, `flux_meta`; a
                 read of a few variables reads it instead of five fields: InfluxDB's cost grows with the fields
                 read, so a year of NEE, H, LE, FC reads 5 fields instead of 9 and no tags)
    time         the period's end (it labels the period), nanosecond precision

InfluxDB merges the fields of a rewritten point with the old ones, so a variable that became null on a rewrite
would keep its old value; `names` and `nulls` are always written and decide what a read returns.

Budget runs and their rows: measurements `budget_runs` and `budget`, see `influx_budget`. Station health reports:
measurements `health`, `health_buffers`, `health_sensors`, `health_sensor_errors`, see `influx_health`. Alert state
changes: measurement `alerts`, see `influx_alerts`.

Queries go to the v1 `/query` endpoint (InfluxDB 1.x, and the v1-compatibility API of 2.x/3.x) with every
caller-supplied value passed as a bound parameter (`$station`, `$variable`, `$site`, `$sensor`); the query text is
assembled only from constants, integers and a validated window length, see `render_series_query`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import operator
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar, cast
from urllib.parse import urlencode, urlsplit

import httpx
from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS

from gateway.central.store.base import (
    Aggregate,
    FluxResultSet,
    QueryTooLarge,
    ReadingClassifier,
    ReadingIdentity,
    RejectedReading,
    SeriesPoint,
    SeriesSource,
    StationInfo,
    StoredReading,
    StoreError,
    StoreRejected,
    StoreUnavailable,
    WriteOutcome,
    check_window,
    every_ns,
    from_ns,
    merge_station_rows,
    reading_identities,
    reading_identity,
    to_ns,
)
from gateway.central.store.columns import ColumnsRequest, MarksAhead, ReadingColumns
from gateway.central.store.influx_alerts import InfluxAlertsMixin
from gateway.central.store.influx_budget import InfluxBudgetMixin
from gateway.central.store.influx_fluxpack import InfluxFluxPackMixin
from gateway.central.store.influx_health import InfluxHealthMixin
from gateway.central.store.influx_ledger import InfluxLedgerMixin, ledger_to_line
from gateway.central.store.influx_products import InfluxProductsMixin
from gateway.central.store.influx_provenance import InfluxProvenanceMixin
from gateway.central.store.influx_reads import InfluxReadsMixin, flux_meta, names_digest
from gateway.central.store.influx_rollup import InfluxRollupMixin
from gateway.central.store.keepalive import KeepAliveHttp, RequestFailed
from gateway.central.store.ledger import LedgerItem
from gateway.central.store.lineprotocol import ReadingLines
from gateway.central.store.writeguard import NOTHING, Marks, WriteGuard
from gateway.contract import FluxRecord, is_integer_variable
from gateway.model import QualityFlag, Reading, TimeSource
from gateway.tls import HandshakeWatch, classify, client_context

log = logging.getLogger(__name__)

MEASUREMENT = "readings"
FLUX_MEASUREMENT = "fluxes"
_FLUX_TAGS = ("site", "station", "engine_version", "settings_hash")
# Times of one batch further apart than this are looked up in separate queries, so a batch that mixes an old
# reading with new ones never reads everything in between.
_HELD_QUERY_GAP_NS = 600 * 1_000_000_000
# Statements sent in one /query request (a look-up per station and cluster of times, a mark per station).
_STATEMENTS_PER_QUERY = 200
# Lines per /write request when several batches go together; a batch is never split (its ledger item goes with it).
_LINES_PER_REQUEST = 10_000
_INFLUXQL_AGGREGATES: dict[str, str] = {
    "mean": "mean(value)",
    "min": "min(value)",
    "max": "max(value)",
    "count": "count(value)",
    "last": "last(value)",
}


def quote_identifier(name: str) -> str:
    """An InfluxQL double-quoted identifier; used only for names from the config file (database, RP)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


_READING_LINES = ReadingLines()


def reading_to_line(item: StoredReading) -> str:
    """One reading as a line of line protocol (`lineprotocol`)."""
    return _READING_LINES.line(item)


def flux_to_line(record: FluxRecord) -> str:
    point = Point(FLUX_MEASUREMENT)
    for tag in _FLUX_TAGS:
        point.tag(tag, getattr(record, tag))
    period_s = (record.end - record.start).total_seconds()
    reasons = json.dumps(list(record.reasons), ensure_ascii=False)
    names = ",".join(record.values)
    names_id = names_digest(names)
    nulls = ",".join(name for name, value in record.values.items() if value is None)
    point.field("period_s", period_s)
    point.field("status", record.status)
    point.field("reasons", reasons)
    point.field("names", names)
    point.field("names_id", names_id)
    point.field("nulls", nulls)
    point.field("meta", flux_meta(names_id, period_s, record.status, nulls, reasons))
    for name, value in record.values.items():
        if value is not None:
            point.field(name, int(value) if is_integer_variable(name) else float(value))
    point.time(to_ns(record.end), WritePrecision.NS)
    return str(point.to_line_protocol())


def row_to_flux(columns: list[str], row: list[Any]) -> FluxRecord:
    """One row of `SELECT * FROM fluxes` back into a record."""
    item = dict(zip(columns, row, strict=True))
    names = [n for n in str(item.get("names") or "").split(",") if n]
    nulls = set(str(item.get("nulls") or "").split(","))
    values: dict[str, int | float | None] = {}
    for name in names:
        raw = item.get(name)
        if name in nulls or raw is None:
            values[name] = None
        else:
            values[name] = int(raw) if is_integer_variable(name) else float(raw)
    end = from_ns(int(item["time"]))
    return FluxRecord(
        site=item["site"], station=item["station"], engine_version=item["engine_version"],
        settings_hash=item["settings_hash"], start=end - timedelta(seconds=float(item["period_s"])), end=end,
        status=item["status"], reasons=json.loads(item.get("reasons") or "[]"), values=values,
    )


def render_series_query(
    *,
    start_ns: int,
    end_ns: int,
    every: timedelta | None,
    aggregate: Aggregate,
    limit: int | None,
    retention_policy: str | None = None,
    by_site: bool = False,
    by_sensor: bool = False,
) -> str:
    """InfluxQL for query_series. Station, variable, site and sensor are NOT arguments: they travel as bound
    parameters `$station`, `$variable`, `$site`, `$sensor`, so nothing a caller types can reach the query text."""
    source = MEASUREMENT if retention_policy is None else f"{quote_identifier(retention_policy)}.{MEASUREMENT}"
    where = (
        f"WHERE station = $station AND variable = $variable AND time >= {int(start_ns)} AND time < {int(end_ns)}"
    )
    if by_site:
        where += " AND site = $site"
    if by_sensor:
        where += " AND sensor = $sensor"
    if every is None:
        query = f"SELECT value, qc FROM {source} {where}"
    else:
        seconds = every_ns(every) // 1_000_000_000
        query = (
            f"SELECT {_INFLUXQL_AGGREGATES[aggregate]} AS value, max(qc) AS qc FROM {source} {where} "
            f"GROUP BY time({seconds}s) fill(none)"
        )
    if limit is not None:
        query += f" LIMIT {int(limit) + 1}"
    return query


_STATION = operator.itemgetter(0, 1)  # of a ReadingIdentity: (site, station)
_TIME = operator.itemgetter(4)  # of a ReadingIdentity: time in ns


class InfluxStore(InfluxBudgetMixin, InfluxProductsMixin, InfluxHealthMixin, InfluxLedgerMixin, InfluxAlertsMixin,
                  InfluxProvenanceMixin, InfluxReadsMixin, InfluxRollupMixin, InfluxFluxPackMixin):
    """InfluxDB 1.x/2.x/3.x. `api="v1"`: POST /write (optionally basic auth with username/password), database
    created on first use if missing. `api="v2"`: influxdb-client's synchronous write API with token/org/bucket;
    reads still use /query on `database` with the token (2.x needs a DBRP mapping).

    `rollup_reads`: reads of one series by whole hours (`iter_series` with every = 1 h, or a multiple of it for
    min, max, count and last; site and sensor given) use the hourly rollup where it is current (`influx_rollup`;
    its job is `roll_up`), and reads of flux records by whole days use the packed daily copy where it is current
    (`influx_fluxpack`; the same job). Writes mark late readings and late flux records whether or not the copies
    are read, so turning it on later is safe. `clock`: the wall clock in s (tests)."""

    def __init__(
        self,
        url: str,
        *,
        database: str = "sinkwatch",
        api: Literal["v1", "v2"] = "v1",
        retention_policy: str | None = None,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        org: str | None = None,
        bucket: str | None = None,
        timeout_s: float = 10.0,
        ping_timeout_s: float = 1.0,
        ca_file: Path | None = None,
        write_guard: WriteGuard | Path | None = None,
        rollup_reads: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url.rstrip("/")
        self.rollup_reads = rollup_reads
        self._clock = clock
        # who may decide that a reading is new (`writeguard`): a file shared by the writers of this host, or this
        # process alone
        self._own_guard = not isinstance(write_guard, WriteGuard)
        self._guard = write_guard if isinstance(write_guard, WriteGuard) else WriteGuard(write_guard)
        self._lines = ReadingLines()
        # per station: (its guard slot after this store's last write of it, the mark then, the (sensor, variable)
        # pairs of the readings at the mark's instant, when this store knows them all); `_raise_marks`
        self._at_mark: dict[tuple[str, str], tuple[object, int, frozenset[tuple[str, str]]]] = {}
        # /ping is answered by InfluxDB without touching data: a second without an answer means it is stuck, and
        # health checks must not wait out a write's timeout to say so
        self.ping_timeout_s = min(ping_timeout_s, timeout_s)
        self.database = database
        self.api = api
        self.retention_policy = retention_policy
        self._bucket = bucket
        self._org = org
        headers = {"Authorization": f"Token {token}"} if token else {}
        auth = (username or "", password) if password is not None else None
        # https: the system CA store or storage.ca_file only; failed handshakes counted for /health and named in
        # the StoreUnavailable message (storage.ca_file, the host name)
        self.tls: HandshakeWatch | None = None
        verify: ssl.SSLContext | bool = True
        parsed = urlsplit(self.url)
        self._ca_file = ca_file
        if parsed.scheme == "https":
            self.tls = HandshakeWatch(log, host=parsed.hostname or "", port=parsed.port or 443, prefix="storage",
                                      ca_file=ca_file, host_key="url")
            verify = self.tls.attach(client_context(ca_file=ca_file, prefix="storage"))
        elif ca_file is not None:
            raise ValueError(f"storage.ca_file is set but storage.url {self.url} is not https://")
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s, headers=headers, auth=auth, verify=verify)
        # the ingest's /write and /query (a few per group of messages): plain kept-alive connections (`keepalive`)
        plain_headers = dict(headers)
        if auth is not None:
            plain_headers["Authorization"] = "Basic " + base64.b64encode(
                f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
        self._requests = KeepAliveHttp(self.url, timeout_s=timeout_s, headers=plain_headers,
                                       ssl_context=verify if isinstance(verify, ssl.SSLContext) else None)
        self._db_ready = False
        self._db_lock = threading.Lock()
        self._v2_client: InfluxDBClient | None = None
        if api == "v2":
            if not (token and org and bucket):
                raise ValueError("InfluxStore api v2 needs token, org and bucket")
            self._v2_client = InfluxDBClient(url=self.url, token=token, org=org, timeout=int(timeout_s * 1000),
                                             ssl_ca_cert=str(ca_file) if ca_file is not None else None)
            self._v2_write = self._v2_client.write_api(write_options=SYNCHRONOUS)

    # --- writing -----------------------------------------------------------------------------------------------

    def write(self, batch_points: list[StoredReading], *, ledger: LedgerItem | None = None) -> WriteOutcome:
        return self.write_many([(batch_points, ledger)])[0]

    #: `write_many` takes a batch's readings as `ReadingColumns` too (gateway/central/store/columns.py)
    takes_columns = True

    def marks_ahead(self, stations: Iterable[tuple[str, str]]) -> MarksAhead:
        """The marks of those of `stations` the write guard has none of, asked of the database now (one request per
        `_STATEMENTS_PER_QUERY` stations) without holding their locks, for a later `write_many(..., ahead=)` to
        take where nothing was written to their slots meanwhile (`writeguard`, "Learning marks ahead"). The ingest
        worker asks this for a group's stations while the store thread writes the group before."""
        seen = self._guard.unknown(stations)
        ahead: MarksAhead = {}
        for chunk in _chunks(sorted(seen), _STATEMENTS_PER_QUERY):
            for key, latest in zip(chunk, self._ask_marks(chunk), strict=True):
                ahead[key] = (seen[key], latest)
        return ahead

    def write_many(self, batches: Sequence[ColumnsRequest], *, ahead: MarksAhead | None = None) -> list[WriteOutcome]:
        """Every batch's new readings (and its ledger item) in as few requests as fit, each batch whole in one.

        Under the write guard's lock of the batches' stations: readings stamped after their station's mark are new
        without a query; the others are looked up, all in one request (`_held`); the marks are raised to the
        newest reading about to be written before anything is sent (`writeguard`); a reading stamped at its station's
        mark is new without a query too when this store raised the mark to that instant, wrote every reading there
        itself and nobody has written the station since (`_raise_marks`). `ahead`: marks learned before
        (`marks_ahead`), taken for the stations whose guard slots are as they were then.

        A batch may come as `ReadingColumns`: when all its readings are stamped after its station's mark, no two
        share an identity and no other batch of the call reaches into its time range, they are all new and go
        straight to lines; otherwise its readings are made (`points()`) and classified like any others."""
        # Every step below runs for every reading the central service stores: bulk steps per batch (C loops over
        # identities, a batch's station found once), a loop per reading only where a reading needs one.
        columns = {index: points for index, (points, _) in enumerate(batches) if isinstance(points, ReadingColumns)}
        spans = [(points.site, points.station, points.first_ns, points.last_ns) for points in columns.values()]
        identities = [[] if index in columns else reading_identities(points)  # type: ignore[arg-type]
                      for index, (points, _) in enumerate(batches)]
        for keys in identities:
            if keys:
                stamps = list(map(_TIME, keys))
                spans += [(site, station, min(stamps), max(stamps)) for site, station in set(map(_STATION, keys))]
        stations = {(site, station) for site, station, _, _ in spans}
        with self._guard.hold(stations) as marks:
            known = self._marks(marks, stations, ahead)
            # the (sensor, variable) pairs at the mark's instant of the stations nobody wrote since this store did:
            # a reading at that instant of another pair is new without a look-up (`_at_mark`)
            at_mark = self._pairs_at_mark(marks, known)

            def fresh(points: ReadingColumns) -> bool:
                mark = known[points.site, points.station]
                if points.first_ns > mark:
                    return True
                pairs = at_mark.get((points.site, points.station))
                return points.first_ns == mark and pairs is not None and pairs.isdisjoint(_pairs_at(points, mark))

            def looked_up(key: ReadingIdentity) -> bool:
                mark = known[key[:2]]
                if key[4] != mark:
                    return key[4] < mark
                pairs = at_mark.get(key[:2])
                return pairs is None or key[2:4] in pairs

            whole = {index: points for index, points in columns.items()
                     if fresh(points) and not points.repeats_an_identity()
                     and sum(1 for site, station, first, last in spans if (site, station) == (points.site,
                             points.station) and first <= points.last_ns and last >= points.first_ns) == 1}
            plain: list[tuple[list[StoredReading], LedgerItem | None]] = []
            for index, (points, ledger) in enumerate(batches):
                if isinstance(points, ReadingColumns):
                    if index in whole:
                        plain.append(([], ledger))
                        continue
                    points = points.points()
                    identities[index] = reading_identities(points)
                plain.append((points, ledger))
            stations_of = [set(map(_STATION, keys)) for keys in identities]
            unsure: list[StoredReading] = []  # stamped at or before their station's mark: looked up
            for (points, _), keys, own in zip(plain, identities, stations_of, strict=True):
                if keys and min(map(_TIME, keys)) <= max(known[station] for station in own):
                    unsure += [item for item, key in zip(points, keys, strict=True) if looked_up(key)]
            held = self._held(unsure) if unsure else {}
            classifiers = []
            newest = dict(known)
            times: dict[int, int] = {}  # id(item) -> time in ns, for the lines
            taken: list[ReadingIdentity] = []  # the identities of the readings to be written
            new_keys_of: list[list[ReadingIdentity]] = []  # of the batches classified reading by reading
            late_before = self.late_before()
            for index, ((points, _), keys, own) in enumerate(zip(plain, identities, stations_of, strict=True)):
                classifier = ReadingClassifier(held)  # one dict: an identity an earlier batch took counts as held
                classifiers.append(classifier)
                if index in whole:
                    batch = whole[index]
                    station = (batch.site, batch.station)
                    newest[station] = max(newest[station], batch.last_ns)
                    if batch.first_ns < late_before:
                        taken += batch.identities()
                    continue
                new_keys = classifier.add_all(points, keys)
                new_keys_of.append(new_keys)
                times.update(zip(map(id, classifier.new), map(_TIME, new_keys), strict=True))
                taken += new_keys
                if len(own) == 1 and new_keys:
                    (station,) = own
                    newest[station] = max(newest[station], max(map(_TIME, new_keys)))
                else:
                    for key in new_keys:
                        if key[4] > newest[key[:2]]:
                            newest[key[:2]] = key[4]
            self._raise_marks(marks, known, newest, at_mark, whole.values(), new_keys_of)
            # the hourly rollup's marks of late readings, before the readings (`influx_rollup`, rule 1)
            late = self.late_marks(taken)
            if late:
                self._write_body(late)
            writes: list[ColumnsRequest] = [(whole.get(index, c.new), ledger)
                                             for index, (c, (_, ledger)) in enumerate(zip(classifiers, plain,
                                                                                          strict=True))]
            rejected = self._write_new(writes, times)
        return [WriteOutcome(written=len(whole[index]) - len(rejected.get(index, ())),
                             rejected=tuple(rejected.get(index, ())))
                if index in whole else classifier.outcome(rejected.get(index))
                for index, classifier in enumerate(classifiers)]

    def _hold(self, stations: Sequence[tuple[str, str]]) -> contextlib.AbstractContextManager[Marks]:
        return self._guard.hold(stations)

    def _pairs_at_mark(self, marks: Marks, known: dict[tuple[str, str], int]
                       ) -> dict[tuple[str, str], frozenset[tuple[str, str]]]:
        """The held stations whose `_at_mark` entry is still true: their mark is the instant it was noted at and
        their guard slot is exactly as this store left it (nobody wrote it since, not even without raising it)."""
        pairs = {}
        for station, mark in known.items():
            entry = self._at_mark.get(station)
            if entry is not None and entry[1] == mark and marks.state(*station) == entry[0]:
                pairs[station] = entry[2]
        return pairs

    def _raise_marks(self, marks: Marks, known: dict[tuple[str, str], int], newest: dict[tuple[str, str], int],
                     at_mark: dict[tuple[str, str], frozenset[tuple[str, str]]], whole: Iterable[ReadingColumns],
                     new_keys_of: list[list[ReadingIdentity]]) -> None:
        """Set the mark of every station with a reading about to be written, to its newest such reading or the mark
        it had (a set even when the mark does not rise: any write of a station's readings changes its slot), and
        note what this store then knows of the mark's instant (`_at_mark`): the pairs it writes there, all of them
        when the mark rises to it (nothing was stored at a later instant than the old mark), else only if it knew
        the instant's pairs before."""
        top: dict[tuple[str, str], set[tuple[str, str]]] = {}
        for batch in whole:
            station = (batch.site, batch.station)
            pairs = top.setdefault(station, set())
            if batch.last_ns == newest[station]:
                pairs |= _pairs_at(batch, batch.last_ns)
        for keys in new_keys_of:
            for key in keys:
                station = key[:2]
                pairs = top.setdefault(station, set())
                if key[4] == newest[station]:
                    pairs.add(key[2:4])
        for station, pairs in top.items():
            mark = newest[station]
            marks.set(*station, mark)
            if mark > known[station]:
                self._at_mark[station] = (marks.state(*station), mark, frozenset(pairs))
            elif station in at_mark:
                self._at_mark[station] = (marks.state(*station), mark, at_mark[station] | pairs)
            else:
                self._at_mark.pop(station, None)

    def _marks(self, marks: Marks, stations: set[tuple[str, str]],
               ahead: MarksAhead | None = None) -> dict[tuple[str, str], int]:
        """Each held station's mark; the unknown ones taken from `ahead` where still valid, else learned from the
        database in one request."""
        known: dict[tuple[str, str], int] = {}
        unknown = []
        for key in stations:
            mark = marks.get(*key)
            if mark is None:
                learned = ahead.get(key) if ahead else None
                if learned is not None and marks.learned(*key, *learned):
                    known[key] = learned[1]
                else:
                    unknown.append(key)
            else:
                known[key] = mark
        for chunk in _chunks(sorted(unknown), _STATEMENTS_PER_QUERY):
            for key, latest in zip(chunk, self._ask_marks(chunk), strict=True):
                marks.set(*key, latest)
                known[key] = latest
        return known

    def _ask_marks(self, stations: list[tuple[str, str]]) -> list[int]:
        """The newest reading's time of each station in the database (`NOTHING`: none), in one request."""
        statements, params = [], {}
        for i, (site, station) in enumerate(stations):
            # qc is on every point (value is not); last() across the station's series is its newest reading
            statements.append(f"SELECT last(qc) FROM {self._source()} WHERE site = $site{i} AND station = $station{i}")
            params[f"site{i}"], params[f"station{i}"] = site, station
        return [max((int(row[0]) for series in found for row in series.get("values") or []), default=NOTHING)
                for found in self._query_checked(statements, params)]

    def _write_new(self, batches: list[ColumnsRequest], times: dict[int, int]) -> dict[int, list[RejectedReading]]:
        """POST the batches' lines, whole batches per request up to `_LINES_PER_REQUEST` lines. A request InfluxDB
        refuses is written again batch by batch, in halves until each refused reading is isolated (rewriting the
        points it did take is harmless: same identity, same content). Returns the refused readings by batch."""
        rejected: dict[int, list[RejectedReading]] = {}
        chunk: list[tuple[int, list[str]]] = []  # batch index, its reading lines and ledger line
        lines = 0

        def flush() -> None:
            if not chunk:
                return
            try:
                self._write_body("\n".join(line for _, batch_lines in chunk for line in batch_lines))
            except StoreRejected:
                for index, _ in chunk:
                    points, ledger = batches[index]
                    if points:
                        self._write_isolating_rejects(points.points() if isinstance(points, ReadingColumns)
                                                      else points, rejected.setdefault(index, []))
                    if ledger is not None:
                        self._write_body(ledger_to_line(ledger))
            chunk.clear()

        for index, (points, ledger) in enumerate(batches):
            if not points and ledger is None:
                continue
            batch_lines = (self._lines.column_lines(points) if isinstance(points, ReadingColumns)
                           else self._lines.lines(points, times))
            if ledger is not None:
                batch_lines.append(ledger_to_line(ledger))
            chunk.append((index, batch_lines))
            lines += len(batch_lines)
            if lines >= _LINES_PER_REQUEST:
                flush()
                lines = 0
        flush()
        return rejected

    def _write_isolating_rejects(self, items: list[StoredReading], rejected: list[RejectedReading]) -> None:
        try:
            self._write_body(self._lines.body(items))
        except StoreRejected as exc:
            if len(items) == 1:
                rejected.append(RejectedReading(items[0], str(exc)))
                return
            # rewriting the points InfluxDB did take is harmless: same identity, same content
            half = len(items) // 2
            self._write_isolating_rejects(items[:half], rejected)
            self._write_isolating_rejects(items[half:], rejected)

    def _held(self, items: list[StoredReading]) -> dict[ReadingIdentity, StoredReading]:
        """What the database holds at the identities of `items`: one statement per station and cluster of times
        (InfluxQL cannot OR time ranges in one), all of them in one request."""
        wanted = {reading_identity(item) for item in items}
        times: dict[tuple[str, str], list[int]] = {}
        for site, station, _sensor, _variable, time_ns in wanted:
            times.setdefault((site, station), []).append(time_ns)
        lookups = [(site, station, first, last) for (site, station), stamps in sorted(times.items())
                   for first, last in _clusters(sorted(stamps), _HELD_QUERY_GAP_NS)]
        held: dict[ReadingIdentity, StoredReading] = {}
        for chunk in _chunks(lookups, _STATEMENTS_PER_QUERY):
            statements, params = [], {}
            for i, (site, station, first, last) in enumerate(chunk):
                statements.append(f"SELECT value, qc, clock_synced, qc_reason FROM {self._source()} WHERE "
                                  f"site = $site{i} AND station = $station{i} AND time >= {int(first)} AND "
                                  f"time <= {int(last)} GROUP BY *")
                params[f"site{i}"], params[f"station{i}"] = site, station
            answers = self._query_checked(statements, params)
            for (site, station, _first, _last), found in zip(chunk, answers, strict=True):
                for series in found:
                    tags = series.get("tags") or {}
                    columns = series["columns"]
                    for row in series.get("values") or []:
                        item = dict(zip(columns, row, strict=True))
                        key = (site, station, str(tags.get("sensor", "")), str(tags.get("variable", "")),
                               int(item["time"]))
                        if key in wanted:
                            held[key] = _held_reading(site, station, tags, item)
        return held

    def _query_checked(self, statements: list[str], params: dict[str, str]) -> list[list[dict[str, Any]]]:
        """Statements whose answer decides a write: any failure means nothing may be written yet."""
        try:
            return self._query_many(statements, params)
        except StoreUnavailable:
            raise
        except StoreError as exc:
            # e.g. "query engine shutdown" while influxd stops: nothing is written without this answer
            raise StoreUnavailable(f"InfluxDB at {self.url} could not say what it holds ({exc}); will retry") from exc

    def write_fluxes(self, records: list[FluxRecord], *, ledger: LedgerItem | None = None) -> None:
        lines = [flux_to_line(record) for record in records]
        if ledger is not None:
            lines.append(ledger_to_line(ledger))
        if not lines:
            return
        if not records:
            self._write_body("\n".join(lines))
            return
        # the packed flux copy's marks of late records, before the records, under the stations' locks
        # (`influx_fluxpack`, rule 1)
        with self._hold(sorted({(record.site, record.station) for record in records})):
            late = self.flux_late_marks([(record.site, record.station, to_ns(record.end)) for record in records])
            if late:
                self._write_body(late)
            self._write_body("\n".join(lines))

    def _write_body(self, body: str) -> None:
        if self._v2_client is not None:
            self._write_v2(body)
        else:
            self._write_v1(body)

    def _write_v1(self, body: str) -> None:
        self._ensure_database()
        response = self._post_write(body)
        if response.status_code == 404 and "database not found" in response.text:
            # Someone dropped the database while we were running; recreate it like at start-up.
            self._db_ready = False
            self._ensure_database()
            response = self._post_write(body)
        self._check_write_response(response)

    def _post_write(self, body: str) -> httpx.Response:
        params = {"db": self.database, "precision": "ns"}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        return self._post("/write?" + urlencode(params), body.encode("utf-8"), "text/plain; charset=utf-8")

    def _post(self, path: str, body: bytes, content_type: str) -> httpx.Response:
        """POST on this thread's kept connection; the answer as an httpx.Response (what the checks read)."""
        try:
            status, content, answer_type = self._requests.post(path, body, content_type)
        except RequestFailed as exc:
            raise StoreUnavailable(f"InfluxDB at {self.url} unreachable: {_describe(exc, self._ca_file)}") from exc
        return httpx.Response(status, content=content,
                              headers={"Content-Type": answer_type} if answer_type is not None else None)

    def _check_write_response(self, response: httpx.Response) -> None:
        status = response.status_code
        if status in (200, 204):
            return
        detail = _error_text(response)
        if status in (401, 403):
            raise StoreUnavailable(
                f"InfluxDB at {self.url} refused our credentials ({status}: {detail}); check storage.username/"
                "password/token"
            )
        if status in (400, 413, 422):
            raise StoreRejected(f"InfluxDB at {self.url} rejected the points ({status}): {detail}")
        raise StoreUnavailable(f"InfluxDB at {self.url} failed the write ({status}): {detail}")

    def _ensure_database(self) -> None:
        if self._db_ready:
            return
        with self._db_lock:
            if self._db_ready:
                return
            try:
                response = self._http.post("/query", data={"q": f"CREATE DATABASE {quote_identifier(self.database)}"})
            except httpx.HTTPError as exc:
                raise StoreUnavailable(f"InfluxDB at {self.url} unreachable: {_describe(exc, self._ca_file)}") from exc
            if response.status_code >= 500:
                raise StoreUnavailable(f"InfluxDB at {self.url} failed CREATE DATABASE: {_error_text(response)}")
            if response.status_code != 200:
                # Without admin rights the database must already exist; the write will tell if it does not.
                log.warning("could not create InfluxDB database %r (%s); assuming it exists",
                            self.database, _error_text(response))
            self._db_ready = True

    def _write_v2(self, body: str) -> None:
        from influxdb_client.rest import ApiException

        assert self._v2_client is not None
        try:
            # The stubs type the precision as the WritePrecision class, whose members are plain strings.
            self._v2_write.write(
                bucket=self._bucket or "", org=self._org or "", record=body,
                write_precision=cast(Any, WritePrecision.NS),
            )
        except ApiException as exc:
            status = exc.status or 0
            if status in (400, 413, 422):
                raise StoreRejected(f"InfluxDB at {self.url} rejected the points ({status}): {exc.body}") from exc
            raise StoreUnavailable(f"InfluxDB at {self.url} failed the write ({status}): {exc.body}") from exc
        except Exception as exc:  # urllib3 raises a zoo of connection errors; all mean "try later"
            raise StoreUnavailable(f"InfluxDB at {self.url} unreachable: {exc}") from exc

    # --- reading -----------------------------------------------------------------------------------------------

    def _query(self, query: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Run one InfluxQL statement; return its series (empty when the database does not exist yet)."""
        return self._query_many([query], params)[0]

    def _query_many(self, statements: list[str], params: dict[str, str] | None = None) -> list[list[dict[str, Any]]]:
        """Run InfluxQL statements in one request; return each one's series, in order."""
        data = {"db": self.database, "q": ";\n".join(statements), "epoch": "ns"}
        if params:
            data["params"] = json.dumps(params)
        response = self._post("/query", urlencode(data).encode("ascii"), "application/x-www-form-urlencoded")
        if response.status_code in (401, 403):
            raise StoreUnavailable(f"InfluxDB at {self.url} refused our credentials: {_error_text(response)}")
        if response.status_code >= 500:
            raise StoreUnavailable(f"InfluxDB at {self.url} failed a query: {_error_text(response)}")
        try:
            payload = response.json()
        except ValueError as exc:
            raise StoreError(f"InfluxDB at {self.url} answered a query with non-JSON ({response.status_code})") from exc
        if response.status_code != 200 or "error" in payload:
            raise StoreError(f"InfluxDB query failed: {payload.get('error', response.status_code)}")
        results = payload.get("results") or [{}]
        if len(results) != len(statements) and len(statements) > 1:
            # InfluxDB stops at a statement that fails and answers the rest "not executed" in one result (as for a
            # database that does not exist yet): ask one by one for each statement's own answer
            return [self._query_many([statement], params)[0] for statement in statements]
        if len(results) != len(statements):
            raise StoreError(f"InfluxDB answered {len(results)} results to {len(statements)} statements")
        answers: list[list[dict[str, Any]]] = []
        for result in results:
            if "error" in result:
                if str(result["error"]).startswith("database not found"):
                    answers.append([])
                    continue
                raise StoreError(f"InfluxDB query failed: {result['error']}")
            answers.append(result.get("series") or [])
        return answers

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
        check_window(start, end, aggregate)
        query = render_series_query(
            start_ns=to_ns(start), end_ns=to_ns(end), every=every, aggregate=aggregate, limit=limit,
            retention_policy=self.retention_policy, by_site=site is not None, by_sensor=sensor is not None,
        )
        params = {"station": station, "variable": variable}
        if site is not None:
            params["site"] = site
        if sensor is not None:
            params["sensor"] = sensor
        points: list[SeriesPoint] = []
        for series in self._query(query, params):
            columns = series["columns"]
            t_i, v_i, q_i = columns.index("time"), columns.index("value"), columns.index("qc")
            for row in series.get("values") or []:
                value, qc = row[v_i], row[q_i]
                points.append(
                    SeriesPoint(
                        time=from_ns(int(row[t_i])),
                        value=None if value is None else float(value),
                        qc=None if qc is None else int(qc),
                    )
                )
        if limit is not None and len(points) > limit:
            raise QueryTooLarge(f"more than {limit} points match")
        # several sensors (when not filtered) come back as one series, but their points must be in time order
        points.sort(key=lambda p: p.time)
        return points

    def _source(self) -> str:
        if self.retention_policy is None:
            return MEASUREMENT
        return f"{quote_identifier(self.retention_policy)}.{MEASUREMENT}"

    def series_sources(self, station: str, variable: str, start: datetime, end: datetime) -> list[SeriesSource]:
        check_window(start, end, "mean")
        query = (f"SELECT last(qc) FROM {self._source()} WHERE station = $station AND variable = $variable "
                 f"AND time >= {int(to_ns(start))} AND time < {int(to_ns(end))} GROUP BY site, sensor, unit")
        found = set()
        for series in self._query(query, {"station": station, "variable": variable}):
            tags = series.get("tags") or {}
            if series.get("values"):
                found.add((str(tags.get("site", "")), str(tags.get("sensor", "")), str(tags.get("unit", ""))))
        return [SeriesSource(site=site, sensor=sensor, unit=unit) for site, sensor, unit in sorted(found)]

    def stations(self) -> list[StationInfo]:
        # qc is present on every point (value is not), so last(qc) finds each series' latest reading.
        rows = []
        query = f"SELECT last(qc) FROM {self._source()} GROUP BY site, station, sensor, variable, unit"
        for series in self._query(query):
            tags = series.get("tags") or {}
            values = series.get("values") or []
            if values:
                rows.append((tags.get("site", ""), tags.get("station", ""), tags.get("sensor", ""),
                             tags.get("variable", ""), tags.get("unit", ""), int(values[0][0])))
        return merge_station_rows(rows)

    def _flux_source(self) -> str:
        if self.retention_policy is None:
            return FLUX_MEASUREMENT
        return f"{quote_identifier(self.retention_policy)}.{FLUX_MEASUREMENT}"

    def query_fluxes(
        self,
        station: str,
        start: datetime,
        end: datetime,
        settings_hash: str | None = None,
        *,
        limit: int | None = None,
    ) -> list[FluxRecord]:
        check_window(start, end, "mean")
        # Caller input only as bound parameters; the text holds constants and integers.
        query = (f"SELECT * FROM {self._flux_source()} WHERE station = $station "
                 f"AND time > {int(to_ns(start))} AND time <= {int(to_ns(end))}")
        params = {"station": station}
        if settings_hash is not None:
            query += " AND settings_hash = $settings_hash"
            params["settings_hash"] = settings_hash
        if limit is not None:
            query += f" LIMIT {int(limit) + 1}"
        records = [row_to_flux(series["columns"], row)
                   for series in self._query(query, params) for row in series.get("values") or []]
        if limit is not None and len(records) > limit:
            raise QueryTooLarge(f"more than {limit} flux records match")
        records.sort(key=lambda r: (r.end, r.settings_hash, r.engine_version))
        return records

    def flux_result_sets(self, station: str) -> list[FluxResultSet]:
        found: dict[tuple[str, ...], dict[str, int]] = {}
        for function in ("count", "first", "last"):
            query = (f"SELECT {function}(period_s) FROM {self._flux_source()} WHERE station = $station "
                     "GROUP BY site, station, engine_version, settings_hash")
            for series in self._query(query, {"station": station}):
                tags = series.get("tags") or {}
                key = tuple(str(tags.get(t, "")) for t in _FLUX_TAGS)
                for row in series.get("values") or []:
                    found.setdefault(key, {})[function] = int(row[1]) if function == "count" else int(row[0])
        sets = [
            FluxResultSet(site=site, station=st, engine_version=ev, settings_hash=sh, periods=got["count"],
                          first_end=from_ns(got["first"]), last_end=from_ns(got["last"]))
            for (site, st, ev, sh), got in found.items() if {"count", "first", "last"} <= set(got)
        ]
        sets.sort(key=lambda s: (s.settings_hash, s.engine_version, s.site))
        return sets

    def ping(self) -> bool:
        try:
            return self._http.get("/ping", timeout=self.ping_timeout_s).is_success
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        self._http.close()
        self._requests.close()
        if self._own_guard:
            self._guard.close()
        if self._v2_client is not None:
            self._v2_write.close()
            self._v2_client.close()


_T = TypeVar("_T")


def _chunks(items: list[_T], size: int) -> Iterator[list[_T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _pairs_at(batch: ReadingColumns, time_ns: int) -> set[tuple[str, str]]:
    """The (sensor, variable) pairs of the batch's readings stamped `time_ns`."""
    return {(sensor, variable) for sensor, variable, stamp in zip(batch.sensors, batch.variables, batch.times_ns,
                                                                   strict=True) if stamp == time_ns}


def _clusters(stamps: list[int], gap: int) -> list[tuple[int, int]]:
    """Sorted times -> (first, last) of each run whose neighbours are at most `gap` apart."""
    runs: list[tuple[int, int]] = []
    for stamp in stamps:
        if runs and stamp - runs[-1][1] <= gap:
            runs[-1] = (runs[-1][0], stamp)
        else:
            runs.append((stamp, stamp))
    return runs


def _held_reading(site: str, station: str, tags: dict[str, Any], item: dict[str, Any]) -> StoredReading:
    """A point as the database holds it (fields possibly merged by an older writer), shown as it is."""
    value, qc, source = item.get("value"), item.get("qc"), str(tags.get("time_source", ""))
    reading = Reading.model_construct(
        station=station, sensor=str(tags.get("sensor", "")), variable=str(tags.get("variable", "")),
        value=None if value is None else float(value), unit=str(tags.get("unit", "")),
        time=from_ns(int(item["time"])),
        time_source=TimeSource(source) if source in TimeSource.__members__.values() else source,
        clock_synced=bool(item.get("clock_synced")),
        qc=QualityFlag(qc) if isinstance(qc, int) and qc in QualityFlag.__members__.values() else qc,
        qc_reason=item.get("qc_reason"),
    )
    return StoredReading(site=site, reading=reading)


def _describe(exc: Exception, ca_file: Path | None = None) -> str:
    """An HTTP client error for a log line; a failed TLS handshake says what it means and which setting to check."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError | ssl.CertificateError):
            parsed = urlsplit(str(getattr(getattr(exc, "request", None), "url", "") or getattr(exc, "url", "")))
            return classify(cause, host=parsed.hostname or "?", port=parsed.port or 443, prefix="storage",
                            ca_file=ca_file, host_key="url").message
        cause = cause.__cause__ or cause.__context__
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _error_text(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text.strip()[:200] or f"HTTP {response.status_code}"
    if isinstance(payload, dict) and "error" in payload:
        return str(payload["error"])[:200]
    return response.text.strip()[:200]
