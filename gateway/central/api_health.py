"""The station-health routes of the HTTP API (mounted by `gateway.central.api.create_app`):

    GET /api/v1/stations/{station}/health          the station's latest health report and its age
    GET /api/v1/stations/{station}/health/history  its reports taken in [start, end)
    GET /api/v1/station-health                     every station's latest report (the network at a glance)

A report is `gateway.contract.StationHealth` as the station sent it (docs/asyncapi.yaml, channel `health`); `age_s`
is the central clock's now minus the report's `time`, so a silent station shows a growing age.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from gateway.central.api_names import UNKNOWN_SITE, refuse_unknown_site, refuse_unknown_station
from gateway.central.params import ParameterError, parse_timestamp
from gateway.central.store import QueryTooLarge, Store
from gateway.contract import StationHealth
from gateway.model import format_time, utc_now

SITE_DOC = "site id; needed when stations of several sites share the station id"
MAX_HEALTH_REPORTS = 20_000  # two weeks at the default interval
# as gateway.central.api.DATE_TIME (that module mounts this one, so it cannot be imported from here)
DATE_TIME: dict[str, Any] = {"format": "date-time", "example": "2026-11-25T10:00:00Z"}


class HealthReportOut(BaseModel):
    site: str
    station: str
    time: str = Field(description="when the station took the report (its clock), RFC 3339")
    age_s: float = Field(description="seconds from the report's time to now (the central clock)")
    report: StationHealth


class HealthHistoryOut(BaseModel):
    site: str | None
    station: str
    start: str
    end: str
    reports: list[StationHealth]


def report_out(report: StationHealth) -> HealthReportOut:
    return HealthReportOut(site=report.site, station=report.station, time=format_time(report.time),
                           age_s=round((utc_now() - report.time).total_seconds(), 3), report=report)


def _no_report(station: str, site: str | None) -> JSONResponse:
    where = f" at site {site!r}" if site else ""
    return JSONResponse(status_code=404, content={"detail": (
        f"no health report stored for station {station!r}{where}: the station has not sent one yet (check "
        "telemetry.enabled in its station.yaml, on by default, and that its software sends health reports), or the "
        "name is wrong: GET /api/v1/station-health lists the stations that report")})


def add_health_routes(app: FastAPI | APIRouter, store: Store) -> None:
    @app.get(
        "/api/v1/stations/{station}/health",
        response_model=HealthReportOut,
        responses={404: {"description": "no report stored for the station (or the station or site is unknown)"},
                   422: {"description": "ambiguous"},
                   503: {"description": "storage unavailable"}},
    )
    def station_health(station: Annotated[str, Path(description="station id, e.g. st01")],
                       site: Annotated[str | None, Query(description=SITE_DOC)] = None) -> Any:
        found = store.latest_health(station=station, site=site)
        if not found:
            refuse_unknown_station(store, station)
            if site is not None:
                refuse_unknown_site(store, site, station)
            return _no_report(station, site)
        if len(found) > 1:
            sites = sorted(r.site for r in found)
            raise ParameterError("site", f"station {station!r} exists at sites {', '.join(sites)}; add "
                                 f"site=<one of them>, e.g. site={sites[0]}")
        return report_out(found[0])

    @app.get(
        "/api/v1/stations/{station}/health/history",
        response_model=HealthHistoryOut,
        responses={404: {"description": UNKNOWN_SITE}, 422: {"description": "invalid parameter"},
                   503: {"description": "storage unavailable"}},
    )
    def station_health_history(
        station: Annotated[str, Path(description="station id, e.g. st01")],
        start: Annotated[str, Query(description="RFC 3339 with zone, inclusive", json_schema_extra=DATE_TIME)],
        end: Annotated[str, Query(description="RFC 3339 with zone, exclusive", json_schema_extra=DATE_TIME)],
        site: Annotated[str | None, Query(description=SITE_DOC)] = None,
    ) -> HealthHistoryOut:
        start_t = parse_timestamp(start, "start")
        end_t = parse_timestamp(end, "end")
        if end_t <= start_t:
            raise ParameterError("end", f"end ({end}) must be after start ({start})")
        try:
            reports = store.query_health(station, start_t, end_t, site=site, limit=MAX_HEALTH_REPORTS)
        except QueryTooLarge:
            raise ParameterError("start", f"more than {MAX_HEALTH_REPORTS} reports in start..end; shorten the "
                                 "window") from None
        if not reports:
            refuse_unknown_station(store, station)
            if site is not None:
                refuse_unknown_site(store, site, station)
        return HealthHistoryOut(site=site, station=station, start=format_time(start_t), end=format_time(end_t),
                                reports=reports)

    @app.get("/api/v1/station-health", response_model=list[HealthReportOut],
             responses={503: {"description": "storage unavailable"}})
    def network_health() -> list[HealthReportOut]:
        return [report_out(r) for r in store.latest_health()]
