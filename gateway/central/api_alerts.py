"""The alert routes of the HTTP API (mounted by `gateway.central.api.create_app`):

    GET /api/v1/alerts          every alert the central service evaluates (firing first): rule, site, station,
                                subject, state, since, value, threshold, message
    GET /api/v1/alerts/rules    the rules and their thresholds as configured (`alerts:` in central.yaml)
    GET /api/v1/alerts/history  the state changes stored in [start, end)

With the service's evaluator (gateway/central/alerts.py, `central serve`) the alerts are its current state; a
read-only API without one answers from the newest stored state change of each alert.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Query
from pydantic import BaseModel, Field

from gateway.central.alerts import Alert, AlertEvaluator
from gateway.central.alerts_config import AlertsConfig
from gateway.central.api_names import UNKNOWN_SITE, UNKNOWN_STATION, refuse_unknown_site, refuse_unknown_station
from gateway.central.params import ParameterError, parse_timestamp
from gateway.central.store import AlertEvent, Store
from gateway.model import format_time

DATE_TIME: dict[str, Any] = {"format": "date-time", "example": "2026-11-25T10:00:00Z"}


class AlertOut(BaseModel):
    rule: str
    site: str
    station: str
    subject: str = Field(description="what the rule looked at: station, an outbox channel, <sensor>/<variable> or "
                                     "a flag variable")
    state: Literal["firing", "ok"]
    since: str = Field(description="when the alert entered its state (central clock), RFC 3339")
    value: float | None = Field(description="what the rule measured (docs/operations.md, Alert rules)")
    threshold: float | None
    message: str
    evaluated: str | None = Field(description="the evaluation that last saw it; null: restored from the store and "
                                              "not evaluated since, or read from the store by a read-only API")


class AlertsOut(BaseModel):
    evaluated: str | None = Field(description="the last evaluation round; null without an evaluator")
    firing: int
    alerts: list[AlertOut]


class AlertEventOut(BaseModel):
    rule: str
    site: str
    station: str
    subject: str
    state: Literal["firing", "ok"]
    time: str
    value: float | None
    threshold: float | None
    message: str


def alert_out(alert: Alert) -> AlertOut:
    return AlertOut(rule=alert.rule, site=alert.site, station=alert.station, subject=alert.subject,
                    state=alert.state, since=format_time(alert.since), value=alert.value, threshold=alert.threshold,
                    message=alert.message, evaluated=format_time(alert.evaluated) if alert.evaluated else None)


def _from_event(event: AlertEvent) -> Alert:
    return Alert(rule=event.rule, site=event.site, station=event.station, subject=event.subject, state=event.state,
                 since=event.time, value=event.value, threshold=event.threshold, message=event.message,
                 evaluated=None)


def current_alerts(store: Store, evaluator: AlertEvaluator | None, *, state: Literal["firing", "ok"] | None = None,
                   station: str | None = None, site: str | None = None) -> list[Alert]:
    """The alerts as the API and the status page show them."""
    if evaluator is not None:
        return evaluator.alerts(state=state, station=station, site=site)
    found = [_from_event(e) for e in store.latest_alert_events()]
    found = [a for a in found if (state is None or a.state == state) and (station is None or a.station == station)
             and (site is None or a.site == site)]
    return sorted(found, key=lambda a: (a.state != "firing", a.site, a.station, a.rule, a.subject))


def add_alert_routes(app: FastAPI | APIRouter, store: Store, evaluator: AlertEvaluator | None,
                     config: AlertsConfig | None = None) -> None:
    rules_config = evaluator.config if evaluator is not None else (config or AlertsConfig())

    @app.get("/api/v1/alerts", response_model=AlertsOut,
             responses={404: {"description": UNKNOWN_SITE}, 503: {"description": "storage unavailable"}})
    def alerts(
        state: Annotated[Literal["firing", "ok", "all"], Query(description="firing, ok or all")] = "all",
        station: Annotated[str | None, Query(description="one station id")] = None,
        site: Annotated[str | None, Query(description="one site id")] = None,
    ) -> AlertsOut:
        found = current_alerts(store, evaluator, state=None if state == "all" else state, station=station, site=site)
        if not found and station is not None:
            refuse_unknown_station(store, station)
        if not found and site is not None:
            refuse_unknown_site(store, site, station)
        last = evaluator.last_round if evaluator is not None else None
        return AlertsOut(evaluated=format_time(last) if last else None,
                         firing=sum(1 for a in found if a.state == "firing"), alerts=[alert_out(a) for a in found])

    @app.get("/api/v1/alerts/rules")
    def alert_rules() -> dict[str, Any]:
        """The rules as data: every rule's settings (thresholds, windows, enabled) and the evaluation interval."""
        return rules_config.model_dump(mode="json")

    @app.get("/api/v1/alerts/history", response_model=list[AlertEventOut],
             responses={404: {"description": UNKNOWN_STATION}, 422: {"description": "invalid parameter"},
                        503: {"description": "storage unavailable"}})
    def alert_history(
        start: Annotated[str, Query(description="RFC 3339 with zone, inclusive", json_schema_extra=DATE_TIME)],
        end: Annotated[str, Query(description="RFC 3339 with zone, exclusive", json_schema_extra=DATE_TIME)],
        station: Annotated[str | None, Query(description="one station id")] = None,
    ) -> list[AlertEventOut]:
        start_t = parse_timestamp(start, "start")
        end_t = parse_timestamp(end, "end")
        if end_t <= start_t:
            raise ParameterError("end", f"end ({end}) must be after start ({start})")
        events = store.alert_events(start_t, end_t, station=station)
        if not events and station is not None:
            refuse_unknown_station(store, station)
        return [AlertEventOut(rule=e.rule, site=e.site, station=e.station, subject=e.subject, state=e.state,
                              time=format_time(e.time), value=e.value, threshold=e.threshold, message=e.message)
                for e in events]
