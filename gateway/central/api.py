"""HTTP API of the central service. Routes validate parameters and call the Store; nothing else.

    GET /api/v1/health    ok/degraded, storage reachable, MQTT connected, ingest counters (always HTTP 200)
    GET /api/v1/stations  stations known to the store, merged with their retained online/offline status
    GET /api/v1/series    one variable of one sensor of one station between start and end, raw or aggregated; JSON
                          or CSV (site and sensor may be left out when only one reported the variable then)
    GET /api/v1/fluxes    flux records of one station (periods ending in (start, end]); JSON, CSV or AmeriFlux BASE
    GET /api/v1/fluxes/sets  the flux result sets (engine version + settings hash) stored for a station
    GET /api/v1/budget    a station-year's carbon budget (HH, DD, MM or YY rows, u* threshold distribution); JSON
                          or CSV (routes in `api_budget`)
    GET /api/v1/budget/sets  the budget runs stored for a station
    GET /api/v1/soil, /api/v1/stems  one table of a station-year's soil or stems run (gradient-method efflux,
                          chamber fluxes; dendrometer GRO/TWD, daily statistics, stem carbon); JSON or CSV (routes in
                          `api_soilstems`), and /sets: the runs stored for a station
    GET /api/v1/alerts    the alerts the service evaluates (state, since, value, ...); /rules, /history (routes in
                          `api_alerts`)
    GET /api/v1/stations/{station}/health[/history]  a station's latest health report (or those in a window);
                          GET /api/v1/station-health every station's latest (routes in `api_health`)
    GET /api/v1/report    a station-year's site carbon report from the store, HTML or PDF (`api_report`)

    GET/POST /api/v1/tokens, DELETE /api/v1/tokens/{id}   API tokens (admin)

Access (gateway/central/access.py): every route but /health needs a bearer token of role reader or higher; /health
shows its counters to operator and admin tokens only. `api.auth: development` (the demo) admits everyone and says so
on every response. The status page (HTML, for
people) is at / (`statuspage`). Interactive documentation at /docs, schema at /openapi.json.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Annotated, Any, Literal, Protocol
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Security
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.central.access import AccessControl, Denied, Role, TokenError, TokenInfo
from gateway.central.alerts import AlertEvaluator
from gateway.central.api_alerts import add_alert_routes
from gateway.central.api_budget import add_budget_routes
from gateway.central.api_commands import add_command_routes
from gateway.central.api_health import add_health_routes
from gateway.central.api_names import (
    UNKNOWN_SERIES,
    UNKNOWN_STATION,
    close_match,
    refuse_unknown_series,
    refuse_unknown_station,
)
from gateway.central.api_report import add_report_routes
from gateway.central.api_soilstems import add_soilstems_routes
from gateway.central.commands import CommandService
from gateway.central.params import ParameterError, format_duration, parse_duration, parse_timestamp
from gateway.central.statuspage import add_status_page
from gateway.central.store import (
    Aggregate,
    FluxResultSet,
    SeriesSource,
    StationInfo,
    Store,
    StoreError,
    StoreUnavailable,
)
from gateway.central.store.reads import FluxRow, SeriesRow
from gateway.central.streaming import (
    ameriflux_csv,
    coalesced,
    fluxes_csv,
    fluxes_json,
    prefetched,
    prefetched_or_none,
    series_csv,
    series_json,
)
from gateway.contract import SETTINGS_HASH_PATTERN, VARIABLE_NAME_PATTERN, FluxRecord, StationStatus
from gateway.flux.ec.result import OUTPUT_VARIABLES
from gateway.flux.files import ameriflux_columns
from gateway.model import format_time

HEALTH_CACHE_S = 2.0  # how long /health reuses the store's last answer to a ping
MAX_VARIABLES = 200  # variables= of /fluxes: more than the engine writes
_SETTINGS_HASH_RE = re.compile(SETTINGS_HASH_PATTERN)
_VARIABLE_NAME_RE = re.compile(VARIABLE_NAME_PATTERN)
# what the OpenAPI document says of variables= (the route checks each name and names the fix)
VARIABLES_PATTERN = r"^[A-Z][A-Z0-9_]{0,63}(,[A-Z][A-Z0-9_]{0,63})*$"


class IngestState(Protocol):
    """What the API reads from the ingestor (an `Ingestor` satisfies it)."""

    @property
    def mqtt_connected(self) -> bool: ...

    def counters(self) -> dict[str, Any]: ...

    def station_statuses(self) -> dict[tuple[str, str], StationStatus]: ...


class ScheduleState(Protocol):
    """What the API reads from the budget schedule (a `BudgetScheduler` satisfies it)."""

    def counters(self) -> dict[str, Any]: ...


class PointOut(BaseModel):
    time: str
    value: float | None
    qc: int | None


class SeriesOut(BaseModel):
    site: str | None
    station: str
    sensor: str | None
    variable: str
    unit: str | None
    start: str
    end: str
    every: str | None
    aggregate: str | None
    points: list[PointOut]


class StationOut(BaseModel):
    site: str
    station: str
    last_reading: str | None
    variables: dict[str, str]
    sensors: dict[str, dict[str, str]]
    state: Literal["online", "offline", "unknown"]
    state_since: str | None


class FluxesOut(BaseModel):
    station: str
    start: str
    end: str
    settings_hash: str | None
    records: list[FluxRecord]


class FluxResultSetOut(BaseModel):
    site: str
    station: str
    engine_version: str
    settings_hash: str
    periods: int
    first_end: str
    last_end: str


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"]
    storage_reachable: bool
    mqtt_connected: bool | None
    auth: Literal["token", "development"] = Field(description="development: no tokens checked (the demo)")
    counters: dict[str, Any] | None = Field(description="ingest, budget and security counters (auth failures by "
                                                        "kind, TLS handshake failures, revoked stations); shown to "
                                                        "operator and admin tokens, null otherwise")


class TokenOut(BaseModel):
    id: str
    name: str
    role: Role
    created: str
    revoked: str | None


class TokenCreate(BaseModel):
    name: str = Field(description="who or what holds it, e.g. grafana or a.researcher@example.org")
    role: Role = "reader"


class TokenCreated(TokenOut):
    token: str = Field(description="the token itself: shown once, stored only as its SHA-256")


DEV_MODE_HEADER = "X-Sinkwatch-Mode"
_bearer = HTTPBearer(auto_error=False, description="an API token: `sinkwatch central token create NAME --role "
                                                   "reader|operator|admin`")

# Declared for the OpenAPI document (the security scheme clients see); the header itself is checked by
# AccessControl, which tells a missing, malformed, unknown and revoked token apart.
_Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]


class _AnnounceDevelopmentMode:
    """Adds `X-Sinkwatch-Mode: development` to every response, errors and docs included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_announced(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (DEV_MODE_HEADER.lower().encode(), b"development")]
            await send(message)

        await self.app(scope, receive, send_announced)


class _RefuseRepeatedParameters:
    """Answers 422 to a request that gives a query parameter more than once (`?station=a&station=b`): FastAPI would
    silently take the last, so a client (or a proxy that appends) would get another series than it believes it
    asked for. No parameter of this API takes several values that way (`variables` is one comma-separated list).
    Also 422 for a value longer than any the API takes (`_MAX_PARAMETER_CHARS`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("query_string"):
            given = _query_parameters(scope["query_string"])
            overlong = next(((name, len(value)) for name, values in given.items() for value in values
                             if len(value) > _MAX_PARAMETER_CHARS.get(name, _MAX_PARAMETER_CHARS[""])), None)
            if overlong is not None:  # answered before any handler echoes the value back in its message
                name, length = overlong
                limit = _MAX_PARAMETER_CHARS.get(name, _MAX_PARAMETER_CHARS[""])
                await _parameter_error(name, f"parameter {name} is {length} characters long, at most {limit}: "
                                             "names are at most 64 characters, times about 30")(scope, receive, send)
                return
            repeated = {name: values for name, values in given.items() if len(values) > 1}
            if repeated:
                name, values = next(iter(repeated.items()))
                shown = ", ".join(repr(v[:40]) for v in values[:5])
                message = (f"parameter {name} is given {len(values)} times ({shown}); give it once (for several "
                           "variables of /api/v1/fluxes: one variables=A,B,C)")
                await _parameter_error(name, message)(scope, receive, send)
                return
        await self.app(scope, receive, send)


#: The longest value a query parameter may have, by name ("" for all others): a name is at most 64 characters, a
#: time about 30; `variables` lists up to 200 flux variable names. A longer one was echoed whole in the 404 or 422.
_MAX_PARAMETER_CHARS = {"": 256, "variables": 16384}


def _query_parameters(query_string: bytes) -> dict[str, list[str]]:
    """The query's parameters with their values, in the order they first appear (a name given more than once has
    several)."""
    values: dict[str, list[str]] = {}
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        values.setdefault(name, []).append(value)
    return values


def _token_out(info: TokenInfo) -> dict[str, Any]:
    return {"id": info.id, "name": info.name, "role": info.role, "created": info.created, "revoked": info.revoked}


# What the OpenAPI document says of the time parameters (documentation for clients and for schema-driven testing);
# gateway.central.params checks them and answers 422 naming the parameter, so FastAPI is not asked to.
DATE_TIME: dict[str, Any] = {"format": "date-time", "example": "2026-11-25T10:00:00Z"}
DURATION: dict[str, Any] = {"pattern": "^[1-9][0-9]{0,8}[smhd]$", "example": "30m"}


class StoragePing:
    """Whether the store answers, for /health: one `store.ping()` at a time (InfluxStore: 1 s timeout), its answer
    reused for `max_age_s`. Requests arriving while a ping is out wait for that ping's answer rather than sending
    their own, so a frozen database costs each of them about one ping timeout, not a queue of them, and never the
    store's request timeout."""

    def __init__(self, store: Store, max_age_s: float = HEALTH_CACHE_S, wait_s: float = 2.0) -> None:
        self.store = store
        self.max_age_s = max_age_s
        self.wait_s = wait_s
        self._lock = threading.Lock()
        self._last: tuple[float, bool] | None = None  # (monotonic time of the answer, reachable)

    def reachable(self) -> bool:
        asked = time.monotonic()
        last = self._last
        if last is not None and asked - last[0] < self.max_age_s:
            return last[1]
        if not self._lock.acquire(timeout=self.wait_s):
            return False  # a ping has been out longer than any answer takes: the store is not answering
        try:
            last = self._last
            if last is not None and last[0] >= asked:
                return last[1]  # answered while we waited
            reachable = self.store.ping()
            self._last = (time.monotonic(), reachable)
            return reachable
        finally:
            self._lock.release()


# id(route) -> (the route, its names): the entry holds the route, so its id cannot be reused by a route of a later
# app while the entry is here (routes are not hashable, so no weak mapping)
_QUERY_NAMES: dict[int, tuple[APIRoute, frozenset[str]]] = {}


def _query_names(route: APIRoute) -> frozenset[str]:
    """The query parameters `route` takes (its own and its dependencies'), computed once per route."""
    entry = _QUERY_NAMES.get(id(route))
    names = entry[1] if entry is not None and entry[0] is route else None
    if names is None:
        found: set[str] = set()
        pending = [route.dependant]
        while pending:
            dependant = pending.pop()
            found.update(param.alias for param in dependant.query_params)
            pending.extend(dependant.dependencies)
        names = frozenset(found)
        _QUERY_NAMES[id(route)] = (route, names)
    return names


def refuse_unknown_parameters(request: Request) -> None:
    """A dependency of every route: a query parameter the route does not take is refused (422 naming it, the name
    it most likely means and the ones the route takes). FastAPI ignores one silently, so `every=1h&agg=max` was
    answered with hourly *means*, `fmt=csv` with JSON and `limit=10` with every point, each with 200. Only /api/
    routes: the status page (`/`, a browser's address bar) is left as it is."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not route.path.startswith("/api/"):
        return
    known = _query_names(route)
    unknown = [name for name in request.query_params if name not in known]
    if not unknown:
        return
    name = unknown[0]
    shown = name if len(name) <= 64 else name[:61] + "..."
    prefixed = [k for k in sorted(known) if len(name) >= 3 and k.startswith(name.lower())]  # agg -> aggregate
    close = prefixed[0] if prefixed else close_match(name.lower(), sorted(known))
    takes = (f"it takes {', '.join(sorted(known))}" if known else "it takes no query parameters")
    hint = f"; did you mean {close}?" if close else ""
    raise ParameterError(shown, f"{route.path} has no parameter {shown!r}{hint} ({takes}; /docs describes each)")


def _parameter_error(parameter: str, message: str, status: int = 422) -> JSONResponse:
    # Same shape as FastAPI's own validation errors, so clients handle one format.
    return JSONResponse(
        status_code=status,
        content={"detail": [{"loc": ["query", parameter], "msg": message, "type": "value_error"}]},
    )


def refuse_mixed_sets(store: Store, station: str, sets: list[tuple[str, str]]) -> None:
    """An AmeriFlux file holds one record per period: several result sets in start..end are refused, except one
    settings hash whose engine versions follow each other without overlap (a station upgraded: its periods are
    each in one version only). Overlapping versions of one hash (part of the range recomputed) are named."""
    listed = ", ".join(f"{h} ({v})" for h, v in sets)
    if len({h for h, _ in sets}) > 1:
        raise ParameterError("settings_hash", f"an AmeriFlux file holds one result per period, and start..end has "
                             f"{len(sets)} result sets: {listed}; add settings_hash=<one of them>")
    spans = sorted((s.first_end, s.last_end, s.engine_version) for s in store.flux_result_sets(station)
                   if (s.settings_hash, s.engine_version) in set(sets))
    overlaps = [f"{a[2]} until {format_time(a[1])} and {b[2]} from {format_time(b[0])}"
                for a, b in itertools.pairwise(spans) if b[0] <= a[1]]
    if overlaps:
        raise ParameterError("settings_hash", f"an AmeriFlux file holds one result per period, and settings hash "
                             f"{sets[0][0]} has records of two engine versions for the same periods "
                             f"({'; '.join(overlaps)}); ask for start..end within one version's periods "
                             "(their first and last periods: /api/v1/fluxes/sets)")


def create_app(store: Store, ingest: IngestState | None = None, budget: ScheduleState | None = None,
               schedules: Mapping[str, ScheduleState] | None = None, *, access: AccessControl,
               alerts: AlertEvaluator | None = None, commands: CommandService | None = None,
               cors_origins: tuple[str, ...] | list[str] = (),
               security: SecurityState | None = None, status_page_public: bool = False) -> FastAPI:
    """The API over `store`; `ingest` (an Ingestor, or None for a read-only API) feeds health and status, `budget`
    (the budget schedule, when it runs) adds its counters to health under "budget", `schedules` (the soil and stems
    schedules that run) theirs under their names, `alerts` (the alert evaluator of `central serve`) the current
    alerts of /api/v1/alerts and its counters under "alerts" (without it /api/v1/alerts reads the stored states).
    `access` decides who may do
    what (required: an API is never open by accident); `cors_origins` are the web origins allowed to read it from
    a browser (none by default); `security` adds counters of the service's other controls to health;
    `status_page_public` serves the status page at / without a token (by default it needs an operator's)."""
    description = "Forest carbon-uptake readings ingested from sinkwatch stations. Every route but /api/v1/health " \
                  "needs `Authorization: Bearer <token>` (roles: reader, operator, admin)."
    if access.development_mode:
        description = ("DEVELOPMENT MODE: no tokens are checked, every request is served as admin. Never use "
                       "this mode for a deployment (api.auth: token). " + description)
    app = FastAPI(title="sinkwatch central", version="1", description=description,
                  dependencies=[Depends(refuse_unknown_parameters)])
    app.add_middleware(_RefuseRepeatedParameters)
    if access.development_mode:
        app.add_middleware(_AnnounceDevelopmentMode)
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET"],
                           allow_headers=["Authorization"], allow_credentials=False)

    @app.exception_handler(Denied)
    async def _on_denied(request: Request, exc: Denied) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        return JSONResponse(status_code=exc.status, content={"detail": exc.message}, headers=headers)

    def role_required(role: Role) -> Any:
        def check(request: Request, credentials: _Credentials) -> TokenInfo:
            return access.authorize(request.headers.get("authorization"), role)
        return Depends(check)

    refusals: dict[int | str, dict[str, Any]] = {
        401: {"description": "no token, or one that lets nobody in (malformed, unknown, revoked)"},
        403: {"description": "the token's role is below what the route needs"}}
    reader = APIRouter(dependencies=[role_required("reader")], responses=refusals)
    operator = APIRouter(dependencies=[role_required("operator")], responses=refusals)
    admin = APIRouter(dependencies=[role_required("admin")], responses=refusals)

    @app.exception_handler(ParameterError)
    async def _on_parameter_error(request: Request, exc: ParameterError) -> JSONResponse:
        return _parameter_error(exc.parameter, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own checks (a missing parameter, a value outside a list or a range), worded as ours are
        return JSONResponse(status_code=422,
                            content={"detail": [readable_validation_error(e, request) for e in exc.errors()]})

    @app.exception_handler(StarletteHTTPException)
    async def _on_http_exception(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404 and exc.detail == "Not Found":  # no route matched: say which path and where to look
            path = request.url.path
            return JSONResponse(status_code=404, content={"detail": (
                f"no route {request.method} {path[:200]!r}: the routes are listed at /docs and /openapi.json; a "
                "station name in a path holds letters, digits, '_', '.' or '-' only (no '/', also not as %2F)")})
        return await http_exception_handler(request, exc)

    @app.exception_handler(StoreUnavailable)
    async def _on_store_unavailable(request: Request, exc: StoreUnavailable) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": f"storage unavailable: {exc}; retry later"})

    @app.exception_handler(StoreError)
    async def _on_store_error(request: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse(status_code=500, content={"detail": f"storage error: {exc}"})

    storage = StoragePing(store)

    @app.get("/api/v1/health", response_model=HealthOut,
             responses={401: {"description": "an Authorization header with a token that lets nobody in"}})
    def health(request: Request, credentials: _Credentials) -> HealthOut:
        """Whether the service works; open to all (a load balancer's probe). With an operator or admin token it
        also shows the counters, security failures among them."""
        who = access.identify(request.headers.get("authorization"))
        reachable = storage.reachable()
        connected = ingest.mqtt_connected if ingest is not None else None
        ok = reachable and connected is not False
        counters: dict[str, Any] | None = None
        if who is not None and who.allows("operator"):
            counters = {**(ingest.counters() if ingest is not None else {}),
                        **({"budget": budget.counters()} if budget is not None else {}),
                        **{name: schedule.counters() for name, schedule in (schedules or {}).items()},
                        **({"alerts": alerts.counters()} if alerts is not None else {}),
                        "security": {**access.snapshot(),
                                     **(security.security_counters() if security is not None else {}),
                                     "storage_tls": _storage_tls(store)}}
        return HealthOut(status="ok" if ok else "degraded", storage_reachable=reachable, mqtt_connected=connected,
                         auth=access.mode, counters=counters)

    @reader.get("/api/v1/stations", response_model=list[StationOut])
    def stations() -> list[StationOut]:
        known: dict[tuple[str, str], StationInfo | None] = {(i.site, i.station): i for i in store.stations()}
        statuses = ingest.station_statuses() if ingest is not None else {}
        for key in statuses:
            known.setdefault(key, None)
        result = []
        for (site, station), info in sorted(known.items()):
            status = statuses.get((site, station))
            result.append(
                StationOut(
                    site=site,
                    station=station,
                    last_reading=format_time(info.last_reading) if info else None,
                    variables=info.variables if info else {},
                    sensors=info.sensors if info else {},
                    state=status.state.value if status else "unknown",
                    state_since=format_time(status.since) if status else None,
                )
            )
        return result

    @reader.get(
        "/api/v1/series",
        response_model=SeriesOut,
        responses={200: {"content": {"text/csv": {}}}, 404: {"description": UNKNOWN_SERIES},
                   422: {"description": "invalid parameter"}, 503: {"description": "storage unavailable"}},
    )
    def series(
        station: Annotated[str, Query(description="station id, e.g. st1")],
        variable: Annotated[str, Query(description="variable name, e.g. CO2")],
        start: Annotated[str, Query(description="RFC 3339 with zone, inclusive, e.g. 2026-11-25T10:00:00Z",
                                    json_schema_extra=DATE_TIME)],
        end: Annotated[str, Query(description="RFC 3339 with zone, exclusive", json_schema_extra=DATE_TIME)],
        every: Annotated[str | None, Query(description="window like 10s, 30m, 1h, 1d (at most 36500d); omit for raw "
                                                       "points", json_schema_extra=DURATION)] = None,
        aggregate: Annotated[Aggregate | None, Query(description="per-window aggregate; default mean")] = None,
        format: Annotated[Literal["json", "csv"], Query(description="json or csv")] = "json",
        sensor: Annotated[str | None, Query(description="sensor name, e.g. gmp252_10cm; needed when several "
                                                         "sensors of the station report the variable")] = None,
        site: Annotated[str | None, Query(description="site id; needed when stations of several sites share the "
                                                       "station id")] = None,
    ) -> Any:
        start_t = parse_timestamp(start, "start")
        end_t = parse_timestamp(end, "end")
        if end_t <= start_t:
            raise ParameterError("end", f"end ({end}) must be after start ({start})")
        window = parse_duration(every) if every is not None else None
        if window is None and aggregate is not None:
            raise ParameterError("aggregate", "aggregate needs every (the window length), e.g. every=30m")
        agg: Aggregate = aggregate or "mean"
        source = _one_source(store.series_sources(station, variable, start_t, end_t), station, variable, site,
                             sensor)
        # any range is answered, streamed: the body grows with the readings it holds, the server's memory does not
        chunks: Iterator[Sequence[SeriesRow]] = iter(())
        if source is None:  # nothing in start..end: a name the store never held is an error, a quiet range is not
            refuse_unknown_series(store, station, variable, site, sensor)
        else:
            chunks = prefetched(store.iter_series(station, variable, start_t, end_t, window, agg, site=source.site,
                                                  sensor=source.sensor))
        if format == "csv":
            return StreamingResponse(coalesced(series_csv(chunks)), media_type="text/csv")
        head = {
            "site": source.site if source else site, "station": station,
            "sensor": source.sensor if source else sensor, "variable": variable,
            "unit": source.unit if source else None, "start": format_time(start_t), "end": format_time(end_t),
            "every": format_duration(window) if window is not None else None,
            "aggregate": agg if window is not None else None,
        }
        return StreamingResponse(coalesced(series_json(head, chunks)), media_type="application/json")

    @reader.get(
        "/api/v1/fluxes",
        response_model=FluxesOut,
        responses={200: {"content": {"text/csv": {}}}, 404: {"description": UNKNOWN_STATION},
                   422: {"description": "invalid parameter"}, 503: {"description": "storage unavailable"}},
    )
    def fluxes(
        station: Annotated[str, Query(description="station id, e.g. st1")],
        start: Annotated[str, Query(json_schema_extra=DATE_TIME,
                                    description="RFC 3339 with zone, exclusive: periods ending after it, "
                                                "e.g. 2026-11-25T10:00:00Z")],
        end: Annotated[str, Query(description="RFC 3339 with zone, inclusive: periods ending at or before it",
                                  json_schema_extra=DATE_TIME)],
        settings_hash: Annotated[str | None, Query(description="one result set (see /api/v1/fluxes/sets); "
                                                               "omit for all")] = None,
        format: Annotated[Literal["json", "csv", "ameriflux"], Query(
            description="json, csv (one row per record, RFC 3339 times, every variable) or ameriflux "
                        "(AmeriFlux BASE CSV: TIMESTAMP_START/END as YYYYMMDDHHMM, -9999 missing; needs one result "
                        "set)")] = "json",
        variables: Annotated[str | None, Query(
            description="comma-separated variable names, e.g. NEE,H,LE,FC: only these in each record's values "
                        "(those a record lacks are left out) and as the CSV's columns; omit for all",
            json_schema_extra={"pattern": VARIABLES_PATTERN, "example": "NEE,H,LE,FC"})] = None,
    ) -> Any:
        start_t = parse_timestamp(start, "start")
        end_t = parse_timestamp(end, "end")
        if end_t <= start_t:
            raise ParameterError("end", f"end ({end}) must be after start ({start})")
        if settings_hash is not None and not _SETTINGS_HASH_RE.match(settings_hash):
            raise ParameterError("settings_hash", f"{settings_hash!r} is not a settings hash; use 8-64 lower-case "
                                 "hex digits as listed by /api/v1/fluxes/sets, e.g. 3f2a9c0d1e4b5a6f")
        wanted = _variables(variables) if variables is not None else None
        names: list[str] = []
        if format != "json":
            # a CSV header comes first: which result sets and variables the range holds, before any record
            columns = store.flux_columns(station, start_t, end_t, settings_hash)
            if format == "ameriflux" and len(columns.sets) > 1:
                refuse_mixed_sets(store, station, columns.sets)
            present = columns.variables if wanted is None else columns.variables & set(wanted)
            names = (ameriflux_columns(present) if format == "ameriflux" else
                     [n for n in wanted if n in present] if wanted is not None else _csv_names(present))
        flux_chunks = prefetched_or_none(store.iter_fluxes(station, start_t, end_t, settings_hash, variables=wanted))
        if flux_chunks is None:
            refuse_unknown_station(store, station)
        chunks: Iterator[Sequence[FluxRow]] = flux_chunks or iter(())
        if format == "ameriflux":
            return StreamingResponse(coalesced(ameriflux_csv(names, chunks)), media_type="text/csv")
        if format == "csv":
            return StreamingResponse(coalesced(fluxes_csv(names, chunks)), media_type="text/csv")
        head = {"station": station, "start": format_time(start_t), "end": format_time(end_t),
                "settings_hash": settings_hash}
        return StreamingResponse(coalesced(fluxes_json(head, chunks)), media_type="application/json")

    @reader.get(
        "/api/v1/fluxes/sets",
        response_model=list[FluxResultSetOut],
        responses={404: {"description": UNKNOWN_STATION}, 503: {"description": "storage unavailable"}},
    )
    def flux_sets(station: Annotated[str, Query(description="station id, e.g. st1")]) -> list[FluxResultSetOut]:
        sets = store.flux_result_sets(station)
        if not sets:
            refuse_unknown_station(store, station)
        return [_set_out(s) for s in sets]

    add_budget_routes(reader, store)
    add_soilstems_routes(reader, store)
    # the stations' own health reports and the alerts: the operators' view of the network
    add_health_routes(operator, store)
    add_alert_routes(operator, store, alerts)
    add_report_routes(reader, store)
    add_status_page(app, store, ingest, alerts, access=access, public=status_page_public)  # HTML, at /

    def station_sites(station: str, site: str | None) -> list[str]:
        known = {i.site for i in store.stations() if i.station == station}
        known |= {r.site for r in store.latest_health(station=station)}
        if ingest is not None:
            known |= {s for (s, name) in ingest.station_statuses() if name == station}
        return sorted(k for k in known if site is None or k == site)

    def caller(request: Request) -> str:
        """Who sends a command (for its ledger): the token's id and name (the operator router checked the role)."""
        info = access.identify(request.headers.get("authorization"))
        return f"token {info.id} ({info.name})" if info is not None else "unknown"

    def station_names() -> list[str]:
        known = {i.station for i in store.stations()} | {r.station for r in store.latest_health()}
        if ingest is not None:
            known |= {name for (_site, name) in ingest.station_statuses()}
        return sorted(known)

    add_command_routes(reader, operator, commands, station_sites, caller, station_names)

    @admin.get("/api/v1/tokens", response_model=list[TokenOut])
    def tokens() -> list[dict[str, Any]]:
        """Every API token issued here (never the tokens themselves)."""
        return [_token_out(t) for t in access.tokens.list()] if access.tokens is not None else []

    @admin.post("/api/v1/tokens", response_model=TokenCreated, status_code=201,
                responses={409: {"description": "an active token has this name"}})
    def create_token(body: TokenCreate) -> Any:
        """Issue a token; the answer is the only place it is ever shown."""
        if access.tokens is None:
            return JSONResponse(status_code=409, content={"detail": "development mode has no tokens"})
        try:
            info, token = access.tokens.create(body.name, body.role)
        except TokenError as exc:
            return JSONResponse(status_code=409, content={"detail": str(exc)})
        return {**_token_out(info), "token": token}

    @admin.delete("/api/v1/tokens/{token_id}", response_model=TokenOut,
                  responses={404: {"description": "no such token"}})
    def revoke_token(token_id: Annotated[str, Path(pattern="^[0-9a-f]{12}$", description="the token's id")]) -> Any:
        """Revoke a token: it lets nobody in from the next request on."""
        if access.tokens is None:
            return JSONResponse(status_code=404, content={"detail": "development mode has no tokens"})
        try:
            return _token_out(access.tokens.revoke(token_id))
        except TokenError as exc:
            return JSONResponse(status_code=404, content={"detail": str(exc)})

    app.include_router(reader)
    app.include_router(operator)
    app.include_router(admin)
    return app


class SecurityState(Protocol):
    """Counters of security controls outside the API (revoked stations' messages, ...), for /health."""

    def security_counters(self) -> dict[str, Any]: ...


def _storage_tls(store: Store) -> dict[str, Any] | None:
    watch = getattr(store, "tls", None)
    return watch.snapshot() if watch is not None else None


def _set_out(item: FluxResultSet) -> FluxResultSetOut:
    return FluxResultSetOut(site=item.site, station=item.station, engine_version=item.engine_version,
                            settings_hash=item.settings_hash, periods=item.periods,
                            first_end=format_time(item.first_end), last_end=format_time(item.last_end))


def _parameter_description(request: Request, where: str, name: str) -> str | None:
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    kind = {"query": "query_params", "path": "path_params", "header": "header_params"}.get(where)
    params = getattr(dependant, kind, None) if kind is not None else None
    for param in params or []:
        if name in (getattr(param, "alias", None), getattr(param, "name", None)):
            description = getattr(getattr(param, "field_info", None), "description", None)
            return description if isinstance(description, str) else None
    return None


def readable_validation_error(error: Mapping[str, Any], request: Request) -> dict[str, Any]:
    """One of FastAPI's validation errors in the shape of ours ({loc, msg, type}), its message naming the parameter,
    the value given and what to give instead (the parameter's description, for a missing one)."""
    location = list(error.get("loc", ()))
    where = str(location[0]) if location else "query"
    name = ".".join(str(p) for p in location[1:]) or where
    kind = str(error.get("type", "value_error"))
    message = str(error.get("msg", "invalid"))
    if kind == "json_invalid":
        problem = (error.get("ctx") or {}).get("error", message)
        text = (f"the request body is not valid JSON ({problem}); send the JSON object the route's schema at /docs "
                "describes")
    elif kind == "missing":
        description = _parameter_description(request, where, name)
        text = f"{name} is required" + (f": {description}" if description else "")
    else:
        given = jsonable_encoder(error.get("input"))
        shown = repr(given) if isinstance(given, str | int | float) else "the value given"
        if len(shown) > 80:
            shown = shown[:77] + "..."
        text = f"{name}={shown}: {message[0].lower()}{message[1:]}" if message else f"{name}={shown} is invalid"
        text = text.replace(": input should be", " is invalid; it should be")
    return {"loc": location, "msg": text, "type": kind}


def _csv_names(present: set[str]) -> list[str]:
    """CSV columns: the engine's output variables in their order, then any other name alphabetically."""
    return [n for n in OUTPUT_VARIABLES if n in present] + sorted(present - OUTPUT_VARIABLES.keys())


def _variables(text: str) -> list[str]:
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    bad = [n for n in names if not _VARIABLE_NAME_RE.match(n)]
    if not names or bad:
        raise ParameterError("variables", f"{text!r} is not a list of flux variable names; use FLUXNET names "
                             "separated by commas, e.g. variables=NEE,H,LE,FC")
    if len(names) > MAX_VARIABLES:
        raise ParameterError("variables", f"{len(names)} variables asked for, at most {MAX_VARIABLES}; omit "
                             "variables for every variable of the records")
    return names


def _one_source(sources: list[SeriesSource], station: str, variable: str, site: str | None,
                sensor: str | None) -> SeriesSource | None:
    """The one (site, sensor) a /series request means, None when nothing matches; refuses to mix several."""
    matching = [s for s in sources if (site is None or s.site == site) and (sensor is None or s.sensor == sensor)]
    if not matching:
        return None
    pairs = sorted({(s.site, s.sensor) for s in matching})
    if len(pairs) > 1:
        sites = sorted({p[0] for p in pairs})
        if len(sites) > 1 and site is None:
            raise ParameterError("site", f"station {station!r} exists at sites {', '.join(sites)} in start..end; "
                                 f"add site=<one of them>, e.g. site={sites[0]}")
        sensors = sorted({p[1] for p in pairs})
        raise ParameterError("sensor", f"{len(sensors)} sensors of station {station!r} report {variable} in "
                             f"start..end: {', '.join(sensors)}; add sensor=<one of them>, e.g. sensor={sensors[0]}")
    units = sorted({s.unit for s in matching})
    first = matching[0]
    # one sensor that changed its unit inside the window: say so rather than pick one
    return SeriesSource(site=first.site, sensor=first.sensor, unit=" | ".join(units))
