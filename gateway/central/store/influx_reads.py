"""Streamed reads of InfluxStore (`gateway.central.store.reads`): InfluxQL sent to `/query` with `chunked=true`,
the answer read line by line (InfluxDB 1.x writes one JSON object per chunk of `chunk_size` rows, each followed by a
newline) and turned into rows without a validated object per point.

Flux records with `variables`: the query selects those fields and the record's bookkeeping but not `names` (every
variable of the record, ~1 kB a row: reading it would cost more than the values asked for). `names_id`, a digest of
`names` written with every record (gateway/central/store/influx.py), names it instead; the `names` of each distinct
digest are read once, from one point, and kept (a digest always stands for the same names). Records written before
`names_id` existed have their `names` read per chunk.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from gateway.central.store.base import Aggregate, StoreError, StoreUnavailable, check_window, to_ns
from gateway.central.store.reads import CHUNK_ROWS, FLUX_CHUNK_ROWS, FluxColumns, FluxRow, SeriesRow, flux_order
from gateway.contract import VARIABLE_NAME_PATTERN

_STREAM_READ_TIMEOUT_S = 120.0  # between two chunks: a chunk of a long aggregate may take a while to compute
_FLUX_BOOKKEEPING = ("period_s", "status", "reasons", "nulls", "names_id")
_FLUX_TAGS = ("site", "station", "engine_version", "settings_hash")
_NAMES_CACHE_MAX = 10_000

_VARIABLE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


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
        _http: httpx.Client
        _ca_file: Path | None

        def _source(self) -> str: ...

        def _flux_source(self) -> str: ...

        def _query(self, query: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]: ...

    _names_lock = threading.Lock()

    # --- the chunked /query --------------------------------------------------------------------------------------

    def _stream(self, query: str, params: dict[str, str],
                chunk_rows: int = CHUNK_ROWS) -> Iterator[list[dict[str, Any]]]:
        """The series of each chunk of one InfluxQL statement's answer, as InfluxDB sends them."""
        from gateway.central.store.influx import _describe, _error_text

        data = {"db": self.database, "q": query, "epoch": "ns", "chunked": "true", "chunk_size": str(chunk_rows)}
        if params:
            data["params"] = orjson.dumps(params).decode()
        timeout = httpx.Timeout(_STREAM_READ_TIMEOUT_S, connect=self._http.timeout.connect)
        try:
            # identity: on loopback or a LAN, gzip costs influxd and us more CPU than the bytes it saves
            with self._http.stream("POST", "/query", data=data, headers={"Accept-Encoding": "identity"},
                                   timeout=timeout) as response:
                if response.status_code != 200:
                    response.read()
                    if response.status_code in (401, 403):
                        raise StoreUnavailable(f"InfluxDB at {self.url} refused our credentials: "
                                               f"{_error_text(response)}")
                    if response.status_code >= 500:
                        raise StoreUnavailable(f"InfluxDB at {self.url} failed a query: {_error_text(response)}")
                    raise StoreError(f"InfluxDB query failed: {_error_text(response)}")
                parts: list[bytes] = []
                for block in response.iter_bytes():
                    begin = 0
                    while (newline := block.find(b"\n", begin)) >= 0:
                        parts.append(block[begin:newline])
                        begin = newline + 1
                        line = b"".join(parts)
                        parts = []
                        if line.strip():
                            series = self._chunk_series(line)
                            if series is None:
                                return
                            if series:
                                yield series
                    if begin < len(block):
                        parts.append(block[begin:])
                line = b"".join(parts)
                if line.strip():
                    series = self._chunk_series(line)
                    if series:
                        yield series
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"InfluxDB at {self.url} unreachable: {_describe(exc, self._ca_file)}") from exc

    def _chunk_series(self, line: bytes) -> list[dict[str, Any]] | None:
        """The series of one chunk; None when the database does not exist (nothing stored yet)."""
        try:
            payload = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            text = line[:200].decode("utf-8", "replace")
            raise StoreError(f"InfluxDB at {self.url} answered a query with non-JSON: {text}") from exc
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
    ) -> Iterator[list[SeriesRow]]:
        from gateway.central.store.influx import render_series_query

        check_window(start, end, aggregate)
        query = render_series_query(
            start_ns=to_ns(start), end_ns=to_ns(end), every=every, aggregate=aggregate, limit=None,
            retention_policy=self.retention_policy, by_site=site is not None, by_sensor=sensor is not None,
        )
        params = {"station": station, "variable": variable}
        if site is not None:
            params["site"] = site
        if sensor is not None:
            params["sensor"] = sensor
        for chunk in self._stream(query, params):
            for series in chunk:
                columns = series["columns"]
                values = series.get("values") or ()
                if columns == ["time", "value", "qc"]:
                    rows = values  # InfluxDB's own rows: no copy per point
                else:  # never seen, but the column order is InfluxDB's to choose
                    t_i, v_i, q_i = columns.index("time"), columns.index("value"), columns.index("qc")
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
    ) -> Iterator[list[FluxRow]]:
        check_window(start, end, "mean")
        where, params = self._flux_where(station, start, end, settings_hash)
        if variables is None:
            query = f"SELECT * FROM {self._flux_source()} {where}"
        else:
            wanted = list(dict.fromkeys(variables))
            selected = [_field_identifier(n) for n in wanted]
            query = (f"SELECT {', '.join([*selected, *_FLUX_BOOKKEEPING, *_FLUX_TAGS])} "
                     f"FROM {self._flux_source()} {where}")
        held: list[FluxRow] = []  # rows of the last period end seen: the next chunk may hold more of them
        for chunk in self._stream(query, params, FLUX_CHUNK_ROWS):
            for series in chunk:
                if variables is None:
                    rows = _whole_rows(series)
                else:
                    rows = self._selected_rows(series, wanted, station, settings_hash)
                if not rows:
                    continue
                last_end = rows[-1].end_ns
                ready = [*held, *rows]
                cut = len(ready)
                while cut > 0 and ready[cut - 1].end_ns == last_end:
                    cut -= 1
                held = ready[cut:]
                if cut:
                    done = ready[:cut]
                    done.sort(key=flux_order)
                    yield done
        if held:
            held.sort(key=flux_order)
            yield held

    def _selected_rows(self, series: dict[str, Any], wanted: list[str], station: str,
                       settings_hash: str | None) -> list[FluxRow]:
        columns: list[str] = series["columns"]
        index = {name: i for i, name in enumerate(columns)}
        values = series.get("values") or []
        t_i, id_i = index["time"], index["names_id"]
        legacy = {row[t_i] for row in values if row[id_i] is None}
        legacy_names = self._legacy_names(station, settings_hash, min(legacy), max(legacy)) if legacy else {}
        plans: dict[tuple[str, ...], _Plan] = {}
        s_i, st_i, ev_i, sh_i = index["site"], index["station"], index["engine_version"], index["settings_hash"]
        p_i, status_i, r_i, n_i = index["period_s"], index["status"], index["reasons"], index["nulls"]
        rows = []
        for row in values:
            names_id = row[id_i]
            if names_id is None:
                names = legacy_names.get((row[s_i], row[ev_i], row[sh_i], row[t_i]), ())
            else:
                names = self._names_of(names_id, station, row[t_i])
            plan = plans.get(names)
            if plan is None:
                held = set(names)
                plan = plans[names] = _Plan([n for n in wanted if n in held], index)
            rows.append(_flux_row(row, plan, t_i, s_i, st_i, ev_i, sh_i, p_i, status_i, r_i, n_i))
        return rows

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
        names = tuple(n for n in text.split(",") if n)
        if names_digest(text) != names_id:
            raise StoreError(f"InfluxDB holds a flux record whose names_id {names_id} does not match its names")
        with self._names_lock:
            if len(cache) >= _NAMES_CACHE_MAX:
                cache.clear()
            cache[names_id] = names
        return names

    def _legacy_names(self, station: str, settings_hash: str | None, first_ns: int,
                      last_ns: int) -> dict[tuple[str, str, str, int], tuple[str, ...]]:
        where = f"WHERE station = $station AND time >= {int(first_ns)} AND time <= {int(last_ns)}"
        params = {"station": station}
        if settings_hash is not None:
            where += " AND settings_hash = $settings_hash"
            params["settings_hash"] = settings_hash
        found = self._query(f"SELECT names FROM {self._flux_source()} {where} GROUP BY site, engine_version, "
                            "settings_hash", params)
        names: dict[tuple[str, str, str, int], tuple[str, ...]] = {}
        for series in found:
            tags = series.get("tags") or {}
            for t, text in series.get("values") or ():
                names[(tags.get("site", ""), tags.get("engine_version", ""), tags.get("settings_hash", ""), t)] = (
                    tuple(n for n in str(text or "").split(",") if n))
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


class _Plan:
    """How a row of one column layout becomes a record's values: which columns hold which variables."""

    __slots__ = ("absent", "getter", "names")

    def __init__(self, names: Sequence[str], index: dict[str, int]) -> None:
        self.names = tuple(names)
        columns = [index.get(n, -1) for n in self.names]
        # a variable null in every record read so far is no field at all, hence no column
        self.absent = -1 in columns
        if self.absent or len(columns) < 2:
            self.getter: Callable[[list[Any]], Sequence[Any]] = (
                lambda row: tuple(row[c] if c >= 0 else None for c in columns))
        else:
            self.getter = itemgetter(*columns)

    def values(self, row: list[Any]) -> dict[str, int | float | None]:
        # integer fields come back as JSON integers, float fields as JSON numbers (36000.0 as 36000: the same
        # number in any JSON reader, so it is not converted here)
        return dict(zip(self.names, self.getter(row), strict=True))


def _flux_row(row: list[Any], plan: _Plan, t_i: int, s_i: int, st_i: int, ev_i: int, sh_i: int, p_i: int,
              status_i: int, r_i: int, n_i: int) -> FluxRow:
    values = plan.values(row)
    nulls = row[n_i]
    if nulls:
        for name in nulls.split(","):
            if name in values:
                values[name] = None
    end_ns = row[t_i]
    reasons = row[r_i]
    # as row_to_flux: the period's length to the microsecond
    start_ns = end_ns - round(float(row[p_i]) * 1e6) * 1000
    return FluxRow(site=row[s_i], station=row[st_i], start_ns=start_ns, end_ns=end_ns,
                   status=row[status_i], reasons=orjson.loads(reasons) if reasons and reasons != "[]" else [],
                   engine_version=row[ev_i], settings_hash=row[sh_i], values=values)


def _whole_rows(series: dict[str, Any]) -> list[FluxRow]:
    """Rows of `SELECT *`: every variable the record's `names` lists."""
    columns: list[str] = series["columns"]
    index = {name: i for i, name in enumerate(columns)}
    t_i, s_i, st_i = index["time"], index["site"], index["station"]
    ev_i, sh_i, p_i = index["engine_version"], index["settings_hash"], index["period_s"]
    status_i, r_i, n_i, names_i = index["status"], index["reasons"], index["nulls"], index["names"]
    plans: dict[str, _Plan] = {}
    rows = []
    for row in series.get("values") or ():
        text = row[names_i] or ""
        plan = plans.get(text)
        if plan is None:
            plan = plans[text] = _Plan([n for n in text.split(",") if n], index)
        rows.append(_flux_row(row, plan, t_i, s_i, st_i, ev_i, sh_i, p_i, status_i, r_i, n_i))
    return rows
