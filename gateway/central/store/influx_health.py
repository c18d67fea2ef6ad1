"""InfluxStore's health measurements (`gateway.central.store.health`), laid out for Grafana as much as for reading
a report back.

Point schema (all points of one report share its time, the report's `time`)::

    measurement  health                 one point per report
    tags         site, station
    fields       every scalar of StationHealth with a value (absent = null): seq, interval_s, uptime_s, ...,
                 clock_synced (bool), daemon_version (string); byte counts, cpu_count, seq and reports_dropped as
                 integers, the rest as floats

    measurement  health_buffers         one point per outbox of a report
    tags         site, station, channel
    fields       index (its place in the report, integer), unit (string), pending (integer),
                 oldest_age_s (float, absent = null), refusing (string, absent = null)

    measurement  health_sensors         one point per sensor of a report
    tags         site, station, sensor
    fields       index (integer), driver, kind, state (strings), available (integer 1/0, absent = null: a number,
                 so Grafana can average it), availability (float, absent = null), errors_total (integer),
                 errors (string, JSON object kind -> count), last_error (string, absent = null),
                 variables (string, comma-separated)

    measurement  health_sensor_errors   one point per sensor and error kind of a report (for per-kind panels)
    tags         site, station, sensor, kind
    fields       count (integer, since the daemon started)

A report is identified by (site, station, time): a redelivery writes the same points again, which InfluxDB
overwrites with the same content.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gateway.central.store.base import QueryTooLarge, check_window, from_ns, to_ns
from gateway.central.store.health import (
    HEALTH_BUFFER_MEASUREMENT,
    HEALTH_MEASUREMENT,
    HEALTH_SENSOR_ERROR_MEASUREMENT,
    HEALTH_SENSOR_MEASUREMENT,
    SCALAR_FIELDS,
    HealthFields,
)
from gateway.central.store.lineprotocol import (
    escape_key,
    escape_measurement,
    escape_tag_value,
    format_float,
    string_text,
)
from gateway.contract import StationHealth

#: Scalars written as integer fields (the rest of the numbers are floats, clock_synced a bool, daemon_version a
#: string): a field keeps its type for ever in InfluxDB, so the split is fixed here.
INTEGER_FIELDS = frozenset({"seq", "disk_free_bytes", "disk_total_bytes", "cpu_count", "memory_total_bytes",
                            "memory_available_bytes", "daemon_rss_bytes", "reports_dropped", "buffer_write_errors",
                            "readings_held_in_memory"})
STRING_FIELDS = frozenset({"daemon_version"})
BOOL_FIELDS = frozenset({"clock_synced"})
_WRITE_CHUNK = 5000


def _tag(key: str, value: str | None) -> str:
    """`,key=value` escaped as point_line writes a tag; "" for a tag it leaves out (no value)."""
    return f",{key}={escape_tag_value(value)}" if value else ""


def _float(key: str, value: Any) -> str | None:
    """`key=<float>` as `field_text` writes `float(value)`; None when it is left out (null or not finite)."""
    if value is None:
        return None
    number = float(value)
    return key + format_float(number) if math.isfinite(number) else None


#: How each scalar is written, fixed by its name (a field keeps its type for ever in InfluxDB): its stored type's
#: `field_text`
_INTEGER, _STRING, _BOOL, _FLOAT = range(4)


def _kind(name: str) -> int:
    if name in INTEGER_FIELDS:
        return _INTEGER
    if name in STRING_FIELDS:
        return _STRING
    return _BOOL if name in BOOL_FIELDS else _FLOAT


#: The report's scalars in line protocol's field order (sorted keys), each with its escaped `key=` and its kind.
_SCALARS = tuple((name, f"{escape_key(name)}=", _kind(name)) for name in sorted(SCALAR_FIELDS))
_HEALTH = escape_measurement(HEALTH_MEASUREMENT)
_BUFFER = escape_measurement(HEALTH_BUFFER_MEASUREMENT)
_SENSOR = escape_measurement(HEALTH_SENSOR_MEASUREMENT)
_SENSOR_ERROR = escape_measurement(HEALTH_SENSOR_ERROR_MEASUREMENT)


def health_to_lines(report: StationHealth | HealthFields) -> list[str]:
    """The report's points as line protocol, byte for byte what `point_line` (and so influxdb-client's `Point`)
    writes for them (tests/central/test_lineprotocol.py). At a thousand stations most of a catch-up's items are
    health reports (docs/scaling.md), so the field keys, their order, their types and the measurement names are
    fixed here once, the station's tags escaped once per report, and each point's fields written by one expression
    of its own instead of `fields_text` over pairs."""
    if isinstance(report, HealthFields):
        fields = report.fields
        return _lines(report.site, report.station, report.time_ns, fields, fields["buffers"], fields["sensors"])
    # a model keeps its fields in its __dict__: the same mappings as HealthFields holds
    return _lines(report.site, report.station, to_ns(report.time), vars(report),
                  [vars(backlog) for backlog in report.buffers], [vars(sensor) for sensor in report.sensors])


def _lines(site: str, station: str, ns: int, head: Mapping[str, Any], buffers: Sequence[Mapping[str, Any]],
           sensors: Sequence[Mapping[str, Any]]) -> list[str]:
    site_station = _tag("site", site) + _tag("station", station)
    scalars = []
    for name, key, kind in _SCALARS:
        value = head[name]
        if value is None:
            continue
        if kind == _FLOAT:
            number = float(value)
            if math.isfinite(number):
                scalars.append(key + format_float(number))
        elif kind == _INTEGER:
            scalars.append(f"{key}{int(value)}i")
        elif kind == _BOOL:
            scalars.append(key + ("true" if value else "false"))
        else:
            scalars.append(key + string_text(str(value)))
    lines = [f"{_HEALTH}{site_station} {','.join(scalars)} {ns}"]  # interval_s, uptime_s, ... are never null
    for index, backlog in enumerate(buffers):
        refusing = backlog["refusing"]
        parts = [f"index={index}i", _float("oldest_age_s=", backlog["oldest_age_s"]),
                 f"pending={int(backlog['pending'])}i",
                 None if refusing is None else "refusing=" + string_text(refusing),
                 "unit=" + string_text(backlog["unit"])]
        lines.append(f"{_BUFFER}{_tag('channel', backlog['channel'])}{site_station} "
                     f"{','.join(filter(None, parts))} {ns}")
    for index, sensor in enumerate(sensors):
        errors = sensor["errors"]
        # a station's sensors mostly report what they reported a minute ago: their line (but its time) is kept (the
        # availability by its repr: -0.0 equals 0.0 but is written "-0")
        cache_key = (site_station, index, sensor["name"], sensor["driver"], sensor["kind"], sensor["state"],
                     sensor["available"], repr(sensor["availability"]), sensor["last_error"],
                     tuple(sensor["variables"]), tuple(errors.items()))
        sensor_line = _SENSOR_LINES.get(cache_key)
        if sensor_line is None:
            sensor_line = _sensor_line(site_station, index, sensor)
            if len(_SENSOR_LINES) >= MAX_CACHED_SENSOR_LINES:
                _SENSOR_LINES.clear()
            _SENSOR_LINES[cache_key] = sensor_line
        lines.append(f"{sensor_line} {ns}")
        if errors:
            sensor_tag = _tag("sensor", sensor["name"])
            for kind, count in sorted(errors.items()):
                lines.append(f"{_SENSOR_ERROR}{_tag('kind', kind)}{sensor_tag}{site_station} count={int(count)}i {ns}")
    return lines


#: A sensor's line without its time, by everything it is made of (`_lines`): a thousand stations of a dozen sensors
#: each repeat some ten thousand (about 450 bytes each with its key: 4 MB for the bench's thousand stations, at most
#: 23 MB). Past this the cache is emptied and refilled, never a wrong line.
MAX_CACHED_SENSOR_LINES = 50_000
_SENSOR_LINES: dict[tuple[Any, ...], str] = {}


def _sensor_line(site_station: str, index: int, sensor: Mapping[str, Any]) -> str:
    available, errors, last_error = sensor["available"], sensor["errors"], sensor["last_error"]
    errors_text = json.dumps(errors, separators=(",", ":"), sort_keys=True) if errors else "{}"
    parts = [_float("availability=", sensor["availability"]),
             None if available is None else f"available={int(available)}i",
             "driver=" + string_text(sensor["driver"]), "errors=" + string_text(errors_text),
             f"errors_total={int(sum(errors.values()))}i", f"index={index}i", "kind=" + string_text(sensor["kind"]),
             None if last_error is None else "last_error=" + string_text(last_error),
             "state=" + string_text(sensor["state"]), "variables=" + string_text(",".join(sensor["variables"]))]
    return f"{_SENSOR}{_tag('sensor', sensor['name'])}{site_station} {','.join(filter(None, parts))}"


def _rows(series_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every row of every series as a dict, the series' tags merged in."""
    rows = []
    for series in series_list:
        tags = series.get("tags") or {}
        for values in series.get("values") or []:
            rows.append({**dict(zip(series["columns"], values, strict=True)), **tags})
    return rows


def _report(head: dict[str, Any], buffers: list[dict[str, Any]], sensors: list[dict[str, Any]]) -> StationHealth:
    data: dict[str, Any] = {"site": head["site"], "station": head["station"],
                            "time": from_ns(int(head["time"]))}
    for name in SCALAR_FIELDS:
        value = head.get(name)
        if value is not None:
            data[name] = value
    data["buffers"] = [
        {"channel": b["channel"], "unit": b["unit"], "pending": int(b["pending"]),
         "oldest_age_s": b.get("oldest_age_s"), "refusing": b.get("refusing")}
        for b in sorted(buffers, key=lambda b: int(b["index"]))
    ]
    data["sensors"] = [
        {"name": s["sensor"], "driver": s["driver"], "kind": s["kind"], "state": s["state"],
         "available": None if s.get("available") is None else bool(s["available"]),
         "availability": s.get("availability"), "errors": json.loads(s.get("errors") or "{}"),
         "last_error": s.get("last_error"), "variables": [v for v in str(s.get("variables") or "").split(",") if v]}
        for s in sorted(sensors, key=lambda s: int(s["index"]))
    ]
    return StationHealth.model_validate(data)


def _assemble(heads: list[dict[str, Any]], buffers: list[dict[str, Any]],
              sensors: list[dict[str, Any]]) -> list[StationHealth]:
    """Reports from the rows of the three measurements, matched by (site, station, time)."""
    parts: dict[tuple[str, str, int], tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    for head in heads:
        parts[(str(head["site"]), str(head["station"]), int(head["time"]))] = ([], [])
    for row in buffers:
        key = (str(row["site"]), str(row["station"]), int(row["time"]))
        if key in parts:
            parts[key][0].append(row)
    for row in sensors:
        key = (str(row["site"]), str(row["station"]), int(row["time"]))
        if key in parts:
            parts[key][1].append(row)
    return [_report(head, *parts[(str(head["site"]), str(head["station"]), int(head["time"]))]) for head in heads]


class InfluxHealthMixin:
    """Health methods of InfluxStore; they use its write path and its bound-parameter queries."""

    if TYPE_CHECKING:
        retention_policy: str | None

        def _query(self, query: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]: ...

        def _write_body(self, body: str) -> None: ...

    def _health_source(self, measurement: str) -> str:
        if self.retention_policy is None:
            return measurement
        from gateway.central.store.influx import quote_identifier  # the module that mixes this class in

        return f"{quote_identifier(self.retention_policy)}.{measurement}"

    def write_health(self, reports: list[StationHealth]) -> None:
        self._write_health_lines([line for report in reports for line in health_to_lines(report)])

    takes_health_fields = True

    def write_health_fields(self, reports: list[HealthFields | StationHealth]) -> None:
        """`write_health` of reports checked without a model (`gateway.central.healthjson`) as well as models: the
        same lines."""
        self._write_health_lines([line for report in reports for line in health_to_lines(report)])

    def _write_health_lines(self, lines: list[str]) -> None:
        for i in range(0, len(lines), _WRITE_CHUNK):
            self._write_body("\n".join(lines[i:i + _WRITE_CHUNK]))

    @staticmethod
    def _station_filter(station: str | None, site: str | None) -> tuple[list[str], dict[str, str]]:
        where, params = [], {}
        if station is not None:
            where.append("station = $station")
            params["station"] = station
        if site is not None:
            where.append("site = $site")
            params["site"] = site
        return where, params

    def latest_health(self, *, station: str | None = None, site: str | None = None) -> list[StationHealth]:
        where, params = self._station_filter(station, site)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        heads = _rows(self._query(f"SELECT * FROM {self._health_source(HEALTH_MEASUREMENT)}{clause} "
                                  "GROUP BY site, station ORDER BY time DESC LIMIT 1", params))
        if not heads:
            return []
        # each outbox and sensor series' newest point; those at their report's time belong to it (a channel or
        # sensor the station no longer has keeps an older newest point, which matches no latest report)
        buffers = _rows(self._query(f"SELECT * FROM {self._health_source(HEALTH_BUFFER_MEASUREMENT)}{clause} "
                                    "GROUP BY site, station, channel ORDER BY time DESC LIMIT 1", params))
        sensors = _rows(self._query(f"SELECT * FROM {self._health_source(HEALTH_SENSOR_MEASUREMENT)}{clause} "
                                    "GROUP BY site, station, sensor ORDER BY time DESC LIMIT 1", params))
        reports = _assemble(heads, buffers, sensors)
        reports.sort(key=lambda r: (r.site, r.station))
        return reports

    def query_health(self, station: str, start: datetime, end: datetime, *, site: str | None = None,
                     limit: int | None = None) -> list[StationHealth]:
        check_window(start, end, "mean")
        where, params = self._station_filter(station, site)
        clause = f" WHERE {' AND '.join(where)} AND time >= {int(to_ns(start))} AND time < {int(to_ns(end))}"
        cap = f" LIMIT {int(limit) + 1}" if limit is not None else ""
        heads = _rows(self._query(f"SELECT * FROM {self._health_source(HEALTH_MEASUREMENT)}{clause}{cap}", params))
        if limit is not None and len(heads) > limit:
            raise QueryTooLarge(f"more than {limit} health reports match")
        if not heads:
            return []
        buffers = _rows(self._query(f"SELECT * FROM {self._health_source(HEALTH_BUFFER_MEASUREMENT)}{clause}",
                                    params))
        sensors = _rows(self._query(f"SELECT * FROM {self._health_source(HEALTH_SENSOR_MEASUREMENT)}{clause}",
                                    params))
        reports = _assemble(heads, buffers, sensors)
        reports.sort(key=lambda r: (r.time, r.site))
        return reports
