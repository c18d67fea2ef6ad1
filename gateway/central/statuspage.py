"""The built-in status page of the central service, at `/` (for sites without Grafana, and for the demo).

Server-rendered HTML with inline SVG charts; no chart library, no build step, no request to any other host. The
page shows every station that reports its health (last contact, outboxes, clock, disk, CPU, sensors, alarms), the
alerts, and for one station (`?station=`, default: the first with a firing alert, else the first) its key series
over the last hours, its half-hourly fluxes coloured by quality flag and its running carbon budget.

    GET /                     the whole page
    GET /status/main          the page's <main> alone; static/status.js fetches it every `data-refresh` seconds and
                              swaps it in, so the page stays live without reloading
    GET /static/status.css, /static/status.js, /static/favicon.svg

Who may see it: the page shows the stations' health and alarms, the operators' view, so with `api.auth: token` it
needs a token of role operator — sent as `Authorization: Bearer <token>`, or, so that a browser can open it, by HTTP
Basic authentication with the token as the password (any user name; the browser asks once and sends it with every
refresh). `api.status_page: public` opens it to anyone who can reach the service (a site's own network); the
static files are code, not data, and are always served.

Content-Security-Policy: everything from this origin only, no inline script or style (the SVG uses presentation
attributes and classes), so the page works offline on a field laptop and a stray request shows as a console error
(tests/central/test_status_page.py opens it in headless chromium).
"""

from __future__ import annotations

import base64
import binascii
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol
from urllib.parse import urlencode

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, Response

from gateway.central.access import AccessControl, Denied
from gateway.central.alerts import Alert, AlertEvaluator
from gateway.central.api_alerts import current_alerts
from gateway.central.store import QueryTooLarge, Store, StoreError
from gateway.contract import FluxRecord, StationHealth, StationStatus
from gateway.model import format_time, utc_now
from gateway.variables import base_name

STATIC = Path(__file__).with_name("static")
REFRESH_S = 15
SERIES_HOURS = 6
SERIES_POINTS = 120  # windows per chart
FLUX_DAYS = 3
#: The series charted for a station, by variable base name, in this order (the first sensor reporting each).
KEY_SERIES = ("CO2", "TS", "SWC", "TA", "SW_IN", "RH", "VPD", "CO2SS")
MAX_CHARTS = 4
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
FLAG_CLASS = {0: "q0", 1: "q1", 2: "q2"}


class StatusSource(Protocol):
    """What the page reads from the ingestor (an `Ingestor` satisfies it)."""

    def station_statuses(self) -> dict[tuple[str, str], StationStatus]: ...


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _age(seconds: float) -> str:
    if seconds < 0:
        return f"{-seconds:.0f} s ahead"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _bytes(value: int | None) -> str:
    return "–" if value is None else f"{value / 1e9:.1f} GB"


def _number(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.{digits}g}"


# --- charts -----------------------------------------------------------------------------------------------------------

W, H = 560, 170
LEFT, RIGHT, TOP, BOTTOM = 58, 10, 22, 24


def _scale(values: Sequence[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    if high - low < 1e-12:
        pad = abs(high) * 0.01 or 1.0
        return low - pad, high + pad
    pad = (high - low) * 0.05
    return low - pad, high + pad


def _frame(title: str, unit: str, t0: datetime, t1: datetime, low: float, high: float, body: str,
           extra_class: str = "") -> str:
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    grid = "".join(
        f'<line class="grid" x1="{LEFT}" x2="{W - RIGHT}" y1="{TOP + plot_h * k / 4:.1f}" '
        f'y2="{TOP + plot_h * k / 4:.1f}"/>' for k in range(5))
    labels = (
        f'<text class="axis" x="{LEFT - 4}" y="{TOP + 4}" text-anchor="end">{_e(_number(high))}</text>'
        f'<text class="axis" x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end">{_e(_number(low))}</text>'
        f'<text class="axis" x="{LEFT}" y="{H - 6}">{_e(t0.strftime("%d %b %H:%M"))}</text>'
        f'<text class="axis" x="{W - RIGHT}" y="{H - 6}" text-anchor="end">{_e(t1.strftime("%d %b %H:%M"))} UTC'
        f'</text>')
    return (f'<svg class="chart {extra_class}" viewBox="0 0 {W} {H}" role="img" aria-label="{_e(title)}">'
            f'<text class="title" x="{LEFT}" y="14">{_e(title)}'
            f'{f" ({_e(unit)})" if unit else ""}</text>{grid}{labels}'
            f'<rect class="plot" x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}"/>{body}</svg>')


def _xy(t: datetime, v: float, t0: datetime, t1: datetime, low: float, high: float) -> tuple[float, float]:
    span = (t1 - t0).total_seconds() or 1.0
    x = LEFT + (W - LEFT - RIGHT) * (t - t0).total_seconds() / span
    y = TOP + (H - TOP - BOTTOM) * (1 - (v - low) / (high - low))
    return x, y


def _span_start(start: datetime, times: Sequence[datetime]) -> datetime:
    """Where a chart's time axis begins: the window's start, or the first data in it when they begin later (a
    station that started an hour ago gets an hour wide chart, not a sliver at the right edge)."""
    if not times:
        return start
    return max(start, min(times) - timedelta(minutes=1))


def line_chart(title: str, unit: str, points: Sequence[tuple[datetime, float | None]], t0: datetime,
               t1: datetime) -> str:
    """A line per run of values (a missing value breaks the line), or "no data"."""
    values = [v for _, v in points if v is not None and math.isfinite(v)]
    if not values:
        return _frame(title, unit, t0, t1, 0.0, 1.0, f'<text class="empty" x="{W / 2}" y="{H / 2}" '
                      'text-anchor="middle">no data in this window</text>')
    low, high = _scale(values)
    runs: list[list[str]] = [[]]
    for t, v in points:
        if v is None or not math.isfinite(v):
            runs.append([])
            continue
        x, y = _xy(t, v, t0, t1, low, high)
        runs[-1].append(f"{x:.1f},{y:.1f}")
    body = "".join(f'<polyline class="series" points="{" ".join(run)}"/>' for run in runs if len(run) > 1)
    body += "".join(f'<circle class="dot" r="2" cx="{run[0].split(",")[0]}" cy="{run[0].split(",")[1]}"/>'
                    for run in runs if len(run) == 1)
    return _frame(title, unit, t0, t1, low, high, body)


def flux_chart(records: Sequence[FluxRecord], t0: datetime, t1: datetime, variable: str = "FC",
               flag: str = "FC_SSITC_TEST") -> str:
    """Each period's flux as a dot at its end, coloured by its quality flag (0 good, 1 fair, 2 bad, none)."""
    found = [(r.end, float(v), r.values.get(flag)) for r in records
             if (v := r.values.get(variable)) is not None and math.isfinite(float(v))]
    title = f"{variable}; {flag} 0 green, 1 amber, 2 red, none grey"
    if not found:
        return _frame(title, "umol m-2 s-1", t0, t1, 0.0, 1.0, f'<text class="empty" x="{W / 2}" y="{H / 2}" '
                      'text-anchor="middle">no flux periods in this window</text>', "fluxes")
    low, high = _scale([v for _, v, _ in found])
    dots = []
    for end, value, quality in found:
        x, y = _xy(end, value, t0, t1, low, high)
        css = FLAG_CLASS.get(int(quality), "qn") if quality is not None else "qn"
        dots.append(f'<circle class="flux {css}" r="3" cx="{x:.1f}" cy="{y:.1f}">'
                    f'<title>{_e(format_time(end))}: {value:.3g} (flag {_e(quality)})</title></circle>')
    return _frame(title, "umol m-2 s-1", t0, t1, low, high, "".join(dots), "fluxes")


# --- what the page shows ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StationRow:
    report: StationHealth
    age_s: float
    state: str  # online / offline / unknown (the retained status message)
    firing: list[Alert]


def _state(statuses: dict[tuple[str, str], StationStatus], site: str, station: str) -> str:
    status = statuses.get((site, station))
    return status.state.value if status is not None else "unknown"


def station_rows(store: Store, ingest: StatusSource | None, alerts: list[Alert], now: datetime) -> list[StationRow]:
    statuses = ingest.station_statuses() if ingest is not None else {}
    return [StationRow(report=r, age_s=(now - r.time).total_seconds(), state=_state(statuses, r.site, r.station),
                       firing=[a for a in alerts if a.state == "firing" and (a.site, a.station) == (r.site, r.station)])
            for r in store.latest_health()]


def _stations_table(rows: list[StationRow], selected: StationHealth | None) -> str:
    head = ("<tr><th>station</th><th>last contact</th><th>link</th><th>buffer (readings)</th><th>oldest unsent</th>"
            "<th>clock</th><th>disk free</th><th>CPU</th><th>load</th><th>uptime</th><th>version</th>"
            "<th>sensors</th><th>alarms</th></tr>")
    body = []
    for row in rows:
        r = row.report
        readings = r.backlog("readings")
        oldest = max((b.oldest_age_s for b in r.buffers if b.oldest_age_s is not None), default=None)
        available = sum(1 for s in r.sensors if s.available)
        clock = ("synced" if r.clock_synced else "NOT synced") + (
            f", {r.clock_offset_s * 1000:+.1f} ms" if r.clock_offset_s is not None else "")
        free = (f"{_bytes(r.disk_free_bytes)} ({r.disk_free_bytes / r.disk_total_bytes:.0%})"
                if r.disk_free_bytes is not None and r.disk_total_bytes else "–")
        cpu = f"{r.cpu_temperature_c:.0f} °C" if r.cpu_temperature_c is not None else "–"
        alarms = ", ".join(sorted({a.rule for a in row.firing})) or "none"
        link = "?" + urlencode({"station": r.station, "site": r.site})
        chosen = selected is not None and (selected.site, selected.station) == (r.site, r.station)
        classes = " ".join(c for c in ("alarm" if row.firing else "", "chosen" if chosen else "") if c)
        body.append(
            f'<tr class="{classes}" data-station="{_e(r.station)}">'
            f'<td><a href="{_e(link)}">{_e(r.site)}/{_e(r.station)}</a></td>'
            f'<td>{_e(_age(row.age_s))} ago</td><td class="state {_e(row.state)}">{_e(row.state)}</td>'
            f'<td>{readings.pending if readings else "–"}</td>'
            f'<td>{_e(_age(oldest)) if oldest is not None else "–"}</td>'
            f'<td class="{"" if r.clock_synced else "bad"}">{_e(clock)}</td><td>{_e(free)}</td><td>{_e(cpu)}</td>'
            f'<td>{_e(_number(r.load_1m, 2))}</td><td>{_e(_age(r.uptime_s))}</td><td>{_e(r.daemon_version)}</td>'
            f'<td>{available}/{len(r.sensors)}</td><td class="{"bad" if row.firing else ""}">{_e(alarms)}</td></tr>')
    if not body:
        body.append('<tr><td colspan="13">no station has reported its health yet</td></tr>')
    return f'<table class="stations">{head}{"".join(body)}</table>'


def _alerts_table(alerts: list[Alert], now: datetime) -> str:
    firing = [a for a in alerts if a.state == "firing"]
    if not firing:
        return '<p class="ok">No alert is firing.</p>'
    rows = "".join(
        f'<tr><td>{_e(a.rule)}</td><td>{_e(a.site)}/{_e(a.station)}</td><td>{_e(a.subject)}</td>'
        f'<td>{_e(_age((now - a.since).total_seconds()))}</td><td>{_e(_number(a.value, 4))}</td>'
        f'<td>{_e(a.message)}</td></tr>' for a in firing)
    return ("<table class=\"alerts\"><tr><th>rule</th><th>station</th><th>subject</th><th>firing for</th>"
            f"<th>value</th><th>message</th></tr>{rows}</table>")


def _sensors_table(report: StationHealth) -> str:
    rows = "".join(
        f'<tr class="{"" if s.available else "alarm"}"><td>{_e(s.name)}</td><td>{_e(s.driver)}</td>'
        f'<td>{_e(s.state)}</td><td>{_e("–" if s.availability is None else f"{s.availability:.0%}")}</td>'
        f'<td>{_e(", ".join(f"{k} {n}" for k, n in sorted(s.errors.items())) or "–")}</td>'
        f'<td>{_e(s.last_error or "")}</td></tr>' for s in report.sensors)
    backlog = "".join(
        f'<tr><td>{_e(b.channel)}</td><td>{b.pending} {_e(b.unit)}</td>'
        f'<td>{_e(_age(b.oldest_age_s)) if b.oldest_age_s is not None else "–"}</td>'
        f'<td>{_e(b.refusing or "")}</td></tr>' for b in report.buffers)
    return ('<div class="pair"><table class="sensors"><tr><th>sensor</th><th>driver</th><th>state</th>'
            f'<th>availability</th><th>errors</th><th>last error</th></tr>{rows}</table>'
            '<table class="buffers"><tr><th>outbox</th><th>waiting</th><th>oldest</th><th>broker refuses</th></tr>'
            f'{backlog}</table></div>')


def _series_charts(store: Store, report: StationHealth, now: datetime) -> str:
    start = now - timedelta(hours=SERIES_HOURS)
    every = timedelta(seconds=max(60, SERIES_HOURS * 3600 // SERIES_POINTS))
    chosen: list[tuple[str, str]] = []
    for wanted in KEY_SERIES:
        for sensor in report.sensors:
            match = next((v for v in sensor.variables if base_name(v) == wanted), None)
            if match is not None:
                chosen.append((sensor.name, match))
                break
        if len(chosen) == MAX_CHARTS:
            break
    charts = []
    for sensor_name, variable in chosen:
        units = [s.unit for s in store.series_sources(report.station, variable, start, now)
                 if (s.site, s.sensor) == (report.site, sensor_name)]
        points = store.query_series(report.station, variable, start, now, every, "mean", site=report.site,
                                    sensor=sensor_name)
        charts.append(line_chart(f"{sensor_name} {variable}", units[0] if units else "",
                                 [(p.time, p.value) for p in points], _span_start(start, [p.time for p in points]),
                                 now))
    return "".join(charts) or '<p>No key series reported yet.</p>'


def _budget(store: Store, report: StationHealth) -> str:
    runs = [r for r in store.budget_runs(report.station) if r.site == report.site]
    if not runs:
        return ('<p>No carbon budget computed for this station yet (<code>budget.every</code> in central.yaml, or '
                '<code>sinkwatch flux budget</code>).</p>')
    run = max(runs, key=lambda r: (r.year, r.computed_at))
    yearly = store.budget_table(run, "YY").values
    daily = store.budget_table(run, "DD")

    def total(name: str) -> str:
        column = yearly.get(name) or [None]
        return _number(column[0], 4)

    cumulative: list[tuple[datetime, float | None]] = []
    running = 0.0
    for time, value in zip(daily.times, daily.values.get("NEE_F", []), strict=False):
        if value is not None:
            running += value
        cumulative.append((time, running))
    chart = line_chart(f"cumulative NEE {run.year}", "gC m-2", cumulative, daily.times[0] if daily.times else
                       run.first_end, daily.times[-1] + timedelta(days=1) if daily.times else run.last_end)
    kind = "the whole year" if run.complete else f"running total until {format_time(run.last_end)[:16]} UTC"
    return (f'<p class="budget">{_e(run.year)}, {_e(kind)}: NEE <b>{_e(total("NEE_F"))}</b> ± '
            f'{_e(total("NEE_F_UNC"))} gC m-2 ({_e(total("NEE_F_TCO2E"))} tCO2e ha-1), GPP '
            f'{_e(total("GPP_NT"))}, RECO {_e(total("RECO_NT"))} gC m-2 (nighttime partitioning); negative NEE is '
            f'uptake. Settings {_e(run.settings_hash)}.</p>{chart}')


def _detail(store: Store, report: StationHealth, now: datetime) -> str:
    parts = [f'<h2 id="detail">{_e(report.site)}/{_e(report.station)}</h2>', _sensors_table(report),
             f'<h3>Key series, last {SERIES_HOURS} h (means)</h3><div class="charts">']
    try:
        parts.append(_series_charts(store, report, now))
    except (StoreError, QueryTooLarge) as exc:
        parts.append(f'<p class="bad">series unavailable: {_e(exc)}</p>')
    parts.append(f'</div><h3>Fluxes, last {FLUX_DAYS} days</h3>')
    start = now - timedelta(days=FLUX_DAYS)
    try:
        records = [r for r in store.query_fluxes(report.station, start, now, limit=20_000) if r.site == report.site]
        parts.append(flux_chart(records, _span_start(start, [r.start for r in records]), now))
    except (StoreError, QueryTooLarge) as exc:
        parts.append(f'<p class="bad">fluxes unavailable: {_e(exc)}</p>')
    parts.append("<h3>Carbon budget</h3>")
    try:
        parts.append(_budget(store, report))
    except StoreError as exc:
        parts.append(f'<p class="bad">budget unavailable: {_e(exc)}</p>')
    return "".join(parts)


def render_main(store: Store, ingest: StatusSource | None, evaluator: AlertEvaluator | None, *,
                station: str | None = None, site: str | None = None, now: datetime | None = None) -> str:
    now = now or utc_now()
    alerts = current_alerts(store, evaluator)
    rows = station_rows(store, ingest, alerts, now)
    chosen = [r for r in rows if (station is None or r.report.station == station) and
              (site is None or r.report.site == site)]
    if station is None and site is None:
        chosen = sorted(chosen, key=lambda r: not r.firing)  # a station with an alarm first
    selected = chosen[0].report if chosen else None
    firing = sum(1 for a in alerts if a.state == "firing")
    summary = (f'<p class="summary">{len(rows)} station{"s" if len(rows) != 1 else ""} reporting, '
               f'<span class="{"bad" if firing else "ok"}">{firing} alert{"s" if firing != 1 else ""} firing</span>; '
               f'updated {_e(format_time(now)[:19])} UTC</p>')
    parts = [summary, "<h2>Stations</h2>", _stations_table(rows, selected), "<h2>Alerts</h2>",
             _alerts_table(alerts, now)]
    if selected is not None:
        parts.append(_detail(store, selected, now))
    elif station is not None:
        parts.append(f'<p class="bad">No health report from station {_e(station)}.</p>')
    return "".join(parts)


def render_page(main: str) -> str:
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<title>sinkwatch status</title><link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'
            '<link rel="stylesheet" href="/static/status.css"><script src="/static/status.js" defer></script>'
            '</head><body><header><h1>sinkwatch network status</h1>'
            '<nav><a href="/docs">API</a> · <a href="/api/v1/alerts">alerts (JSON)</a> · '
            '<a href="/api/v1/station-health">health (JSON)</a></nav></header>'
            f'<main data-refresh="{REFRESH_S}">{main}</main></body></html>')


def _as_bearer(authorization: str | None) -> str | None:
    """A Basic Authorization header carries the token as its password; the access control reads Bearer only."""
    if not authorization:
        return authorization
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return authorization
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return "Bearer -"  # refused as malformed, and counted
    return f"Bearer {decoded.partition(':')[2]}"


def _refusal(denied: Denied) -> HTMLResponse:
    fix = ("Sign in with any user name and an API token of role operator as the password (the operator issues one "
           "with <code>sinkwatch central token create NAME --role operator</code>).")
    body = (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>sinkwatch status</title></head>"
            f"<body><h1>sinkwatch status</h1><p>{_e(denied.message)}</p><p>{fix}</p></body></html>")
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    if denied.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="sinkwatch status", charset="UTF-8"'
    return HTMLResponse(body, status_code=denied.status, headers=headers)


def add_status_page(app: FastAPI, store: Store, ingest: StatusSource | None = None,
                    evaluator: AlertEvaluator | None = None, *, access: AccessControl | None = None,
                    public: bool = False) -> None:
    """Serve the page on `app`; with `access` (and not `public`) only to operators (module doc)."""
    headers = {"Content-Security-Policy": CSP, "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}

    def refused(request: Request) -> HTMLResponse | None:
        if access is None or public:
            return None
        try:
            access.authorize(_as_bearer(request.headers.get("authorization")), "operator")
        except Denied as denied:
            return _refusal(denied)
        return None

    def main_html(station: str | None, site: str | None) -> str:
        try:
            return render_main(store, ingest, evaluator, station=station, site=site)
        except StoreError as exc:
            return f'<p class="bad">The store is unavailable: {_e(exc)}. This page retries by itself.</p>'

    @app.get("/", include_in_schema=False)
    def page(request: Request, station: str | None = Query(default=None),
             site: str | None = Query(default=None)) -> HTMLResponse:
        return refused(request) or HTMLResponse(render_page(main_html(station, site)), headers=headers)

    @app.get("/status/main", include_in_schema=False)
    def main(request: Request, station: str | None = Query(default=None),
             site: str | None = Query(default=None)) -> HTMLResponse:
        return refused(request) or HTMLResponse(main_html(station, site), headers=headers)

    media = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}
    assets: dict[str, tuple[bytes, str]] = {p.name: (p.read_bytes(), media[p.suffix]) for p in STATIC.iterdir()
                                            if p.suffix in media}

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        found = assets.get(name)
        if found is None:
            return Response(status_code=404)
        return Response(content=found[0], media_type=found[1],
                        headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"})


__all__ = ["add_status_page", "flux_chart", "line_chart", "render_main", "render_page"]
