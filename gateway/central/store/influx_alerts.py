"""InfluxStore's alert events and reading statistics (`gateway.central.store.alerts`).

Point schema::

    measurement  alerts        one point per state change of an alert
    tags         rule, site, station, subject
    fields       firing (integer 1/0, so Grafana can graph and threshold it), state (string: firing, ok),
                 value, threshold (floats, absent = null), message (string)
    time         when the central service saw the change

`reading_stats` is one InfluxQL aggregate per station (count, min, max, mean of `value` grouped by site, sensor,
variable), the variables and the station as bound parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from influxdb_client import Point, WritePrecision

from gateway.central.store.alerts import ALERT_MEASUREMENT, AlertEvent, ReadingStats
from gateway.central.store.base import check_window, from_ns, to_ns

_TAGS = ("rule", "site", "station", "subject")


def alert_to_line(event: AlertEvent) -> str:
    point = Point(ALERT_MEASUREMENT)
    for tag in _TAGS:
        point.tag(tag, getattr(event, tag))
    point.field("firing", 1 if event.state == "firing" else 0).field("state", event.state)
    point.field("message", event.message)
    if event.value is not None:
        point.field("value", float(event.value))
    if event.threshold is not None:
        point.field("threshold", float(event.threshold))
    return str(point.time(to_ns(event.time), WritePrecision.NS).to_line_protocol())


def _events(series_list: list[dict[str, Any]]) -> list[AlertEvent]:
    events = []
    for series in series_list:
        tags = series.get("tags") or {}
        for values in series.get("values") or []:
            row = {**dict(zip(series["columns"], values, strict=True)), **tags}
            value, threshold = row.get("value"), row.get("threshold")
            events.append(AlertEvent(
                rule=str(row["rule"]), site=str(row["site"]), station=str(row["station"]),
                subject=str(row["subject"]), state="firing" if row.get("state") == "firing" else "ok",
                time=from_ns(int(row["time"])), value=None if value is None else float(value),
                threshold=None if threshold is None else float(threshold), message=str(row.get("message") or "")))
    return events


class InfluxAlertsMixin:
    """Alert methods of InfluxStore; they use its write path and its bound-parameter queries."""

    if TYPE_CHECKING:
        retention_policy: str | None

        def _query(self, query: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]: ...

        def _write_body(self, body: str) -> None: ...

        def _source(self) -> str: ...

    def _alert_source(self) -> str:
        if self.retention_policy is None:
            return ALERT_MEASUREMENT
        from gateway.central.store.influx import quote_identifier  # the module that mixes this class in

        return f"{quote_identifier(self.retention_policy)}.{ALERT_MEASUREMENT}"

    def write_alert_events(self, events: list[AlertEvent]) -> None:
        if events:
            self._write_body("\n".join(alert_to_line(e) for e in events))

    def alert_events(self, start: datetime, end: datetime, *, station: str | None = None) -> list[AlertEvent]:
        check_window(start, end, "mean")
        query = f"SELECT * FROM {self._alert_source()} WHERE time >= {int(to_ns(start))} AND time < {int(to_ns(end))}"
        params: dict[str, str] = {}
        if station is not None:
            query += " AND station = $station"
            params["station"] = station
        events = _events(self._query(query, params))
        events.sort(key=lambda e: (e.time, e.rule, e.site, e.station, e.subject))
        return events

    def latest_alert_events(self) -> list[AlertEvent]:
        events = _events(self._query(f"SELECT * FROM {self._alert_source()} GROUP BY rule, site, station, subject "
                                     "ORDER BY time DESC LIMIT 1"))
        events.sort(key=lambda e: e.key)
        return events

    def reading_stats(self, station: str, variables: Sequence[str], start: datetime, end: datetime, *,
                      max_qc: int = 1) -> list[ReadingStats]:
        check_window(start, end, "mean")
        names = sorted(set(variables))
        if not names:
            return []
        params = {"station": station, **{f"v{i}": name for i, name in enumerate(names)}}
        choice = " OR ".join(f"variable = $v{i}" for i in range(len(names)))
        query = (f"SELECT count(value), min(value), max(value), mean(value) FROM {self._source()} "
                 f"WHERE station = $station AND ({choice}) AND qc <= {int(max_qc)} AND time >= {int(to_ns(start))} "
                 f"AND time < {int(to_ns(end))} GROUP BY site, sensor, variable, unit")
        merged: dict[tuple[str, str, str], ReadingStats] = {}
        for series in self._query(query, params):
            tags = series.get("tags") or {}
            for _time, count, low, high, mean in series.get("values") or []:
                if not count:
                    continue
                key = (str(tags.get("site", "")), str(tags.get("sensor", "")), str(tags.get("variable", "")))
                unit = str(tags.get("unit", ""))
                old = merged.get(key)
                if old is not None:  # one sensor that changed its unit inside the window: one row, as in SQLite
                    total = old.count + int(count)
                    mean = (old.mean * old.count + float(mean) * int(count)) / total
                    count, low, high, unit = total, min(old.minimum, low), max(old.maximum, high), min(old.unit, unit)
                merged[key] = ReadingStats(site=key[0], sensor=key[1], variable=key[2], unit=unit, count=int(count),
                                           minimum=float(low), maximum=float(high), mean=float(mean))
        return [merged[k] for k in sorted(merged)]
