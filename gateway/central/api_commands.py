"""The command routes of the HTTP API (mounted by `gateway.central.api.create_app`; docs/operations.md, "Remote
configuration and commands"):

    POST /api/v1/stations/{station}/commands        send a command (push_config, restart, check, clock_check): 202
    GET  /api/v1/stations/{station}/commands/{id}   the command, every step the station reported, its outcome
    GET  /api/v1/stations/{station}/commands        the station's recent commands, newest first
    GET  /api/v1/commands/key                       the central command key's public half, for commands.trusted_keys

Sending needs the operator role; reading the reader role. A command's config is never returned (it may name
secrets' files, and it is the station's business): its SHA-256 is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from gateway.central.api_names import close_match
from gateway.central.commands import DEFAULT_EXPIRES_S, CommandError, CommandService, result_summary
from gateway.contract import COMMAND_KINDS, CommandKind
from gateway.contract.commands import DEFAULT_ROLLBACK_S, MAX_CONFIG_CHARS, MAX_ROLLBACK_S, MIN_ROLLBACK_S
from gateway.model import IDENTIFIER_PATTERN

# request -> who sends (the token's id and name), for the command's `issued_by`; its role is checked by the router
Caller = Callable[[Request], str]
# station, site -> the sites the station is known at (stored readings, retained status)
Sites = Callable[[str, str | None], list[str]]


class CommandRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: CommandKind = Field(description=f"one of {', '.join(COMMAND_KINDS)}")
    site: str | None = Field(default=None, pattern=IDENTIFIER_PATTERN,
                             description="the station's site; needed only when the station id exists at several sites")
    config: str | None = Field(default=None, min_length=1, max_length=MAX_CONFIG_CHARS,
                               description="push_config: the whole new station.yaml")
    rollback_after_s: float | None = Field(
        default=None, ge=MIN_ROLLBACK_S, le=MAX_ROLLBACK_S,
        description=f"push_config: the daemon must be healthy this long after its restart with the new config, or "
                    f"the station restores the old one (default {DEFAULT_ROLLBACK_S:g})")
    expires_s: float = Field(default=DEFAULT_EXPIRES_S, ge=10, le=7 * 86400,
                             description="a station that receives the command later refuses it; the broker drops "
                                         "it then too")


class CommandStepOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: str
    time: str
    message: str
    arrived: str


class CommandOut(BaseModel):
    id: str
    site: str
    station: str
    kind: str
    issued: str
    expires: str
    issued_by: str
    config_sha256: str | None
    rollback_after_s: float | None
    key_id: str | None
    sent: str | None = Field(description="when the broker acknowledged the command; null when it did not")
    send_problem: str | None
    status: str = Field(description="the outcome, else the latest step, else sent / not_sent")
    final: bool
    outcome: str | None = Field(description="ok, rejected, rolled_back or failed; null while under way")
    message: str | None
    clock_offset_s: float | None = Field(description="clock_check: station clock minus central clock, estimated "
                                                     "from the four time stamps (NTP-style)")
    round_trip_s: float | None = Field(description="the command's and its result's time through the broker")
    results: list[dict[str, Any]] = Field(description="every CommandResult the station sent, with `arrived`")


class CommandKeyOut(BaseModel):
    key_id: str
    public_key: str = Field(description="ed25519:<base64>, for commands.trusted_keys in station.yaml")


def _station_unknown(station: str, known: list[str], sending: bool = True) -> JSONResponse:
    meant = close_match(station, known)
    then = ", or give `site` in the body to send to it anyway" if sending else ""
    return JSONResponse(status_code=404, content={"detail": (
        f"station {station!r} is unknown here: it has sent nothing and has no retained status"
        + (f"; did you mean station={meant}?" if meant is not None else "")
        + f" (GET /api/v1/stations lists them; names are case-sensitive){then}")})


def add_command_routes(reader: APIRouter, operator: APIRouter, service: CommandService | None, sites: Sites,
                       caller: Caller, stations: Callable[[], list[str]]) -> None:
    """The routes on the API's role routers: sending on `operator`, reading on `reader` (their dependencies check
    the token and document it); `caller` names who sent a command, for its ledger; `stations` lists the stations
    known here, for the name a mistyped one likely means."""

    def no_service() -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": (
            "commands need the running central service (sinkwatch central serve): this API has no broker "
            "connection")})

    @operator.post("/api/v1/stations/{station}/commands", status_code=202, response_model=CommandOut,
                   responses={404: {"description": "unknown station"}, 422: {"description": "invalid request"},
                              503: {"description": "no broker connection: the command was not sent"}})
    def send_command(
        station: Annotated[str, Path(pattern=IDENTIFIER_PATTERN, description="station id, e.g. plot-07")],
        body: CommandRequest,
        request: Request,
    ) -> Any:
        if service is None:
            return no_service()
        site = body.site
        if site is None:
            known = sites(station, None)
            if not known:
                return _station_unknown(station, stations())
            if len(known) > 1:
                return JSONResponse(status_code=422, content={"detail": [{
                    "loc": ["body", "site"], "type": "value_error",
                    "msg": f"station {station!r} exists at sites {', '.join(known)}; add site, e.g. {known[0]}"}]})
            site = known[0]
        try:
            record = service.send(site, station, body.kind, caller(request), config=body.config,
                                  rollback_after_s=body.rollback_after_s, expires_s=body.expires_s)
        except CommandError as exc:
            return JSONResponse(status_code=422, content={"detail": [{
                "loc": ["body", exc.field], "type": "value_error", "msg": exc.message}]})
        out = result_summary(record)
        if record.sent is None:
            return JSONResponse(status_code=503, content={**out, "detail": f"not sent: {record.send_problem}"})
        return out

    @reader.get("/api/v1/stations/{station}/commands/{command_id}", response_model=CommandOut,
                responses={404: {"description": "no such command"}})
    def get_command(
        station: Annotated[str, Path(pattern=IDENTIFIER_PATTERN, description="station id")],
        command_id: Annotated[str, Path(pattern=IDENTIFIER_PATTERN, description="the command's id (from the POST)")],
    ) -> Any:
        if service is None:
            return no_service()
        record = service.ledger.get(command_id)
        if record is None or record.station != station:
            return JSONResponse(status_code=404, content={"detail": (
                f"no command {command_id!r} for station {station!r} (GET /api/v1/stations/{station}/commands lists "
                "the recent ones)")})
        return result_summary(record)

    @reader.get("/api/v1/stations/{station}/commands", response_model=list[CommandOut],
                responses={404: {"description": "unknown station: no reading, status or command of it"}})
    def list_commands(
        station: Annotated[str, Path(pattern=IDENTIFIER_PATTERN, description="station id")],
        site: Annotated[str | None, Query(pattern=IDENTIFIER_PATTERN, description="site id")] = None,
        limit: Annotated[int, Query(ge=1, le=1000, description="at most this many, newest first")] = 50,
    ) -> Any:
        if service is None:
            return no_service()
        records = service.ledger.recent(station, site, limit)
        if not records and not sites(station, None) and not service.ledger.recent(station, None, 1):
            return _station_unknown(station, stations(), sending=False)  # a mistyped name is named, not answered "none"
        return [result_summary(r) for r in records]

    @reader.get("/api/v1/commands/key", response_model=CommandKeyOut)
    def command_key() -> Any:
        if service is None:
            return no_service()
        return CommandKeyOut(key_id=service.key.key_id, public_key=service.key.public_text)
