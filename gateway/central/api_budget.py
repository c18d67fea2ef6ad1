"""The budget routes of the HTTP API (mounted by `gateway.central.api.create_app`):

    GET /api/v1/budget       a station-year's carbon budget: half-hourly (HH), daily (DD), monthly (MM) or annual
                             (YY) rows with the run's facts (record, u* threshold distribution, notes); JSON or CSV
    GET /api/v1/budget/sets  the budget runs stored for a station (year, engine version, settings hash, record)

A year in progress is served as it was last computed: `complete` false, `last_end` the end of the last half hour
of its record; the YY row is the running total of the record alone (nothing after `last_end` is filled or summed).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from gateway.central.api_names import UNKNOWN_STATION, refuse_unknown_station
from gateway.central.budget import table_csv
from gateway.central.engines import newest_engine_runs
from gateway.central.params import ParameterError
from gateway.central.store import BudgetRun, Resolution, Store
from gateway.contract import SETTINGS_HASH_PATTERN
from gateway.model import format_time

_SETTINGS_HASH_RE = re.compile(SETTINGS_HASH_PATTERN)
HALFHOURS_PER_YEAR = {False: 365 * 48, True: 366 * 48}

_HH_UNITS = {"FC": "umol m-2 s-1", "SC": "umol m-2 s-1", "NEE": "umol m-2 s-1", "USTAR": "m s-1",
             "USTAR_THRESHOLD": "m s-1", "SW_IN": "W m-2", "SW_IN_F": "W m-2", "SW_IN_POT": "W m-2", "TA": "degC",
             "TA_F": "degC", "VPD": "hPa", "VPD_F": "hPa"}


def budget_unit(name: str, resolution: str) -> str:
    """The unit of a budget variable at a resolution (docs/budget.md, "Outputs and names")."""
    if name.endswith(("_QC", "_METHOD", "_FILTER", "_N", "_FNUM", "_FMETH")) or name == "NIGHT":
        return "1"
    if resolution == "HH":
        return _HH_UNITS.get(name, "umol m-2 s-1")
    if name.endswith("_TCO2E"):
        return "tCO2e ha-1"
    if name in ("GAP_FRACTION", "N_RECORDS", "N_UNFILLED"):
        return "1"
    return "gC m-2"


class UstarOut(BaseModel):
    mode: str | None = Field(description="auto (moving-point test with bootstrap), value (given) or none")
    threshold: float | None = Field(description="USTAR_THRESHOLD of the data themselves, m s-1")
    mean: float | None
    sd: float | None
    p05: float | None
    p50: float | None
    p95: float | None
    draws: list[float | None] = Field(description="every bootstrap threshold, m s-1 (auto)")


class BudgetRowOut(BaseModel):
    time: str = Field(description="HH: end of the half hour; DD/MM/YY: start of the period (UTC)")
    label: str = Field(description="the period on the station's clock: YYYYMMDDHHMM (HH: TIMESTAMP_START), "
                                   "YYYYMMDD, YYYYMM or YYYY")
    values: dict[str, float | None]


class BudgetRunOut(BaseModel):
    site: str
    station: str
    year: int
    engine_version: str
    settings_hash: str
    computed_at: str
    first_end: str = Field(description="end of the record's first half hour (UTC)")
    last_end: str = Field(description="end of the record's last half hour (UTC); nothing after it is filled or "
                                      "summed")
    complete: bool = Field(description="the record spans the whole year")
    coverage: float = Field(description="the record's share of the year's half hours")
    utc_offset_h: float


class BudgetOut(BudgetRunOut):
    resolution: str
    running_total: bool = Field(description="true for a record that does not span the year: the sums are those "
                                            "of first_end..last_end")
    units: dict[str, str]
    ustar: UstarOut
    notes: list[str]
    settings: dict[str, Any]
    rows: list[BudgetRowOut]


def _run_out(run: BudgetRun) -> dict[str, Any]:
    leap = run.year % 4 == 0 and (run.year % 100 != 0 or run.year % 400 == 0)
    halfhours = round((run.last_end - run.first_end).total_seconds() / 1800) + 1
    return {"site": run.site, "station": run.station, "year": run.year, "engine_version": run.engine_version,
            "settings_hash": run.settings_hash, "computed_at": format_time(run.computed_at),
            "first_end": format_time(run.first_end), "last_end": format_time(run.last_end), "complete": run.complete,
            "coverage": round(halfhours / HALFHOURS_PER_YEAR[leap], 6), "utc_offset_h": run.utc_offset_h}


def _number(value: float | str | None) -> float | None:
    if value is None or isinstance(value, str) or value != value:
        return None
    return float(value)


def _ustar_out(run: BudgetRun) -> dict[str, Any]:
    s = run.scalars
    mode = s.get("USTAR_MODE")
    return {"mode": mode if isinstance(mode, str) else None, "threshold": _number(s.get("USTAR_THRESHOLD")),
            **{k: _number(s.get(f"USTAR_THRESHOLD_{k.upper()}")) for k in ("mean", "sd", "p05", "p50", "p95")},
            "draws": [_number(v) for v in run.ustar_draws]}


def add_budget_routes(app: FastAPI | APIRouter, store: Store) -> None:
    @app.get(
        "/api/v1/budget",
        response_model=BudgetOut,
        responses={200: {"content": {"text/csv": {}}}, 404: {"description": "no budget stored for the station-year"},
                   422: {"description": "invalid parameter"}, 503: {"description": "storage unavailable"}},
    )
    def budget(
        station: Annotated[str, Query(description="station id, e.g. st1")],
        year: Annotated[int, Query(ge=2000, le=2200, description="calendar year of the station's standard time, "
                                                                 "e.g. 2025; the current one is a running total")],
        resolution: Annotated[Resolution, Query(description="HH (half-hourly outputs), DD, MM or YY (sums, gC m-2 "
                                                            "and tCO2e ha-1)")] = "YY",
        settings_hash: Annotated[str | None, Query(description="one run (see /api/v1/budget/sets); needed when "
                                                               "the year has several")] = None,
        site: Annotated[str | None, Query(description="site id; needed when two sites have the station id")] = None,
        format: Annotated[Literal["json", "csv"], Query(
            description="json, or csv: the files `sinkwatch flux budget` writes (HH: TIMESTAMP_START/END; DD/MM/YY: "
                        "TIMESTAMP; YY with the u* threshold distribution; -9999 missing)")] = "json",
    ) -> Any:
        if settings_hash is not None and not _SETTINGS_HASH_RE.match(settings_hash):
            raise ParameterError("settings_hash", f"{settings_hash!r} is not a settings hash; use 8-64 lower-case "
                                 "hex digits as listed by /api/v1/budget/sets, e.g. 3f2a9c0d1e4b5a6f")
        runs = newest_engine_runs(
            r for r in store.budget_runs(station, year)
            if (settings_hash is None or r.settings_hash == settings_hash) and (site is None or r.site == site))
        if not runs:
            refuse_unknown_station(store, station)  # a mistyped station is named, not offered a budget to compute
            held = store.budget_runs(station)
            known = "; stored: " + ", ".join(f"{r.year} {r.settings_hash}" for r in held) if held else ""
            return JSONResponse(status_code=404, content={"detail": (
                f"no budget of station {station!r} for {year}"
                + (f" with settings_hash {settings_hash}" if settings_hash else "") + (f" at site {site}" if site
                                                                                       else "")
                + f"{known}; compute it with `sinkwatch flux budget --station {station} --year {year} -c "
                "central.yaml`, or let the central service do it (budget.every in its config)")})
        if len(runs) > 1:
            listed = ", ".join(f"{r.settings_hash} ({r.engine_version}, site {r.site}, computed "
                               f"{format_time(r.computed_at)})" for r in runs)
            parameter = "site" if len({r.site for r in runs}) > 1 and site is None else "settings_hash"
            raise ParameterError(parameter, f"station {station!r} has {len(runs)} budgets for {year}: {listed}; "
                                 f"add {parameter}=<one of them>")
        run = runs[0]
        table = store.budget_table(run, resolution)
        if format == "csv":
            return Response(content=table_csv(run, table), media_type="text/csv")
        names = list(table.values)
        columns = [table.values[n] for n in names]
        rows = [{"time": format_time(t), "label": label,
                 "values": {n: column[i] for n, column in zip(names, columns, strict=True)}}
                for i, (t, label) in enumerate(zip(table.times, table.labels, strict=True))]
        # built as plain data: a year of half hours is 17 520 rows, too many to validate one model each
        return JSONResponse(content={
            **_run_out(run), "resolution": resolution, "running_total": not run.complete,
            "units": {n: budget_unit(n, resolution) for n in names}, "ustar": _ustar_out(run),
            "notes": run.notes, "settings": run.settings, "rows": rows})

    @app.get(
        "/api/v1/budget/sets",
        response_model=list[BudgetRunOut],
        responses={404: {"description": UNKNOWN_STATION}, 503: {"description": "storage unavailable"}},
    )
    def budget_sets(
        station: Annotated[str, Query(description="station id, e.g. st1")],
        year: Annotated[int | None, Query(ge=2000, le=2200, description="one year; omit for all")] = None,
    ) -> list[BudgetRunOut]:
        runs = store.budget_runs(station, year)
        if not runs:
            refuse_unknown_station(store, station)
        return [BudgetRunOut(**_run_out(r)) for r in runs]
