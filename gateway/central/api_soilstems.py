"""The soil and stems routes of the HTTP API (mounted by `gateway.central.api.create_app`):

    GET /api/v1/soil         one table of a station-year's soil run: the gradient-method efflux of a profile
                             (table=gradient_<p>) or the fluxes of a chamber's closures (chamber_<c>); JSON or CSV
    GET /api/v1/soil/sets    the soil runs stored for a station, each with its tables
    GET /api/v1/stems        one table of a station-year's stems run: a tree's cleaned series with GRO and TWD
                             (tree_<t>), its daily statistics (daily_<t>) or a plot's stem carbon (plot_<p>)
    GET /api/v1/stems/sets   the stems runs stored for a station

Names and units are those of docs/soil-stems.md ("Output names"). A year in progress is served as last computed.
"""


import re
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from gateway.central.api_names import UNKNOWN_STATION, refuse_unknown_station
from gateway.central.engines import newest_engine_runs
from gateway.central.params import ParameterError, parse_timestamp
from gateway.central.soilstems import table_csv
from gateway.central.store import Product, ProductRun, ProductTable, Store
from gateway.central.store.products import TABLE_NAME_PATTERN
from gateway.contract import SETTINGS_HASH_PATTERN
from gateway.model import format_time

_SETTINGS_HASH_RE = re.compile(SETTINGS_HASH_PATTERN)
_TABLE_RE = re.compile(TABLE_NAME_PATTERN)

_UNIT_RULES: tuple[tuple[str, str], ...] = (
    (r"_QC$|^STEM_FLAG_|_METHOD$|^N_|_N$", "1"),
    (r"^DS_CO2_", "m2 s-1"),
    (r"^CO2_CONC_", "umol m-3"),
    (r"^FC_SOIL_CH_\d+_KAPPA$", "s-1"),
    (r"^FC_SOIL_CH_\d+_R2$", "1"),
    (r"^FC_SOIL_CH_\d+_DURATION$", "s"),
    (r"^FC_SOIL_CH_\d+_TA$|^TS", "degC"),
    (r"^SWC_", "%"),
    (r"^FC_SOIL", "umol m-2 s-1"),
    (r"^(STEM_|GRO_|TWD_)", "um"),
    (r"^STEM_COVERAGE_", "1"),
    (r"^(AGB|AGB_INC)(_SD)?$", "Mg ha-1"),
    (r"^C_AGB(_INC)?(_SD)?$", "Mg C ha-1"),
    (r"^CO2E_AGB(_INC)?(_SD)?$", "t CO2e ha-1"),
    (r"^AREA_M2$", "m2"),
    (r"^(START|END)_DATE$", "YYYYMMDD"),
)


def product_unit(name: str) -> str:
    """The unit of a soil/stems output name (docs/soil-stems.md, "Output names")."""
    for pattern, unit in _UNIT_RULES:
        if re.search(pattern, name):
            return unit
    return ""


class TableOut(BaseModel):
    name: str
    rows: int
    first: str
    last: str
    columns: list[str]


class ProductRunOut(BaseModel):
    product: str
    site: str
    station: str
    year: int
    engine_version: str
    settings_hash: str
    computed_at: str
    first: str = Field(description="first time of the data the run was computed from (UTC)")
    last: str = Field(description="last time of the data (UTC); a year in progress ends here")
    complete: bool = Field(description="the data span the year")
    utc_offset_h: float
    tables: list[TableOut]


class ProductRowOut(BaseModel):
    time: str = Field(description="UTC: a gradient period's end, a closure's end, a sample, a day's or the year's "
                                  "start")
    values: dict[str, float | None]


class ProductOut(ProductRunOut):
    table: str
    units: dict[str, str]
    notes: list[str]
    settings: dict[str, Any]
    rows: list[ProductRowOut]


def _run_out(run: ProductRun) -> dict[str, Any]:
    return {"product": run.product, "site": run.site, "station": run.station, "year": run.year,
            "engine_version": run.engine_version, "settings_hash": run.settings_hash,
            "computed_at": format_time(run.computed_at), "first": format_time(run.first),
            "last": format_time(run.last), "complete": run.complete, "utc_offset_h": run.utc_offset_h,
            "tables": [{"name": name, "rows": n, "first": format_time(a), "last": format_time(b), "columns": cols}
                       for name, (a, b, n, cols) in sorted(run.tables.items())]}


def _window(table: ProductTable, start: datetime | None, end: datetime | None) -> ProductTable:
    if start is None and end is None:
        return table
    keep = [i for i, t in enumerate(table.times) if (start is None or t > start) and (end is None or t <= end)]
    return ProductTable(table.name, [table.times[i] for i in keep],
                        {n: [col[i] for i in keep] for n, col in table.values.items()})


def _choose_run(store: Store, product: Product, station: str, year: int, settings_hash: str | None,
                site: str | None) -> ProductRun | JSONResponse:
    if settings_hash is not None and not _SETTINGS_HASH_RE.match(settings_hash):
        raise ParameterError("settings_hash", f"{settings_hash!r} is not a settings hash; use 8-64 lower-case hex "
                             f"digits as listed by /api/v1/{product}/sets, e.g. 3f2a9c0d1e4b5a6f")
    runs = newest_engine_runs(  # a run an engine upgrade computed again replaces the old one (engines.py)
        r for r in store.product_runs(product, station, year)
        if (settings_hash is None or r.settings_hash == settings_hash) and (site is None or r.site == site))
    if not runs:
        refuse_unknown_station(store, station)  # a mistyped station is named, not offered a run to compute
        held = store.product_runs(product, station)
        known = "; stored: " + ", ".join(f"{r.year} {r.settings_hash}" for r in held) if held else ""
        return JSONResponse(status_code=404, content={"detail": (
            f"no {product} results of station {station!r} for {year}"
            + (f" with settings_hash {settings_hash}" if settings_hash else "") + (f" at site {site}" if site else "")
            + f"{known}; compute them with `sinkwatch central {product} --station {station} --year {year} -c "
            f"central.yaml`, or let the central service do it ({product}.every in its config)")})
    if len(runs) > 1:
        listed = ", ".join(f"{r.settings_hash} ({r.engine_version}, site {r.site}, computed "
                           f"{format_time(r.computed_at)})" for r in runs)
        parameter = "site" if len({r.site for r in runs}) > 1 and site is None else "settings_hash"
        raise ParameterError(parameter, f"station {station!r} has {len(runs)} {product} runs for {year}: {listed}; "
                             f"add {parameter}=<one of them>")
    return runs[0]


def add_soilstems_routes(app: FastAPI | APIRouter, store: Store) -> None:
    for product in ("soil", "stems"):
        _add_product_routes(app, store, product)


def _add_product_routes(app: FastAPI | APIRouter, store: Store, product: Product) -> None:
    example = "gradient_1" if product == "soil" else "plot_1"
    tables_doc = ("gradient_<p> (a profile's gradient-method efflux per period), chamber_<c> (a chamber's fluxes "
                  "per closure)" if product == "soil" else
                  "tree_<t> (cleaned series, GRO, TWD), daily_<t> (daily statistics), plot_<p> (stem carbon)")

    def get_product(
        station: Annotated[str, Query(description="station id, e.g. st1")],
        year: Annotated[int, Query(ge=2000, le=2200, description="calendar year of the station's standard time")],
        table: Annotated[str | None, Query(description=f"one table of the run: {tables_doc}; may be left out when "
                                                       "the run has one", examples=[example])] = None,
        start: Annotated[str | None, Query(description="RFC 3339 with zone, exclusive: rows after it",
                                           json_schema_extra={"format": "date-time"})] = None,
        end: Annotated[str | None, Query(description="RFC 3339 with zone, inclusive: rows up to it",
                                         json_schema_extra={"format": "date-time"})] = None,
        settings_hash: Annotated[str | None, Query(description=f"one run (see /api/v1/{product}/sets); needed when "
                                                               "the year has several")] = None,
        site: Annotated[str | None, Query(description="site id; needed when two sites have the station id")] = None,
        format: Annotated[Literal["json", "csv"], Query(
            description="json, or csv (TIMESTAMP on the station's clock as YYYYMMDDHHMM, a gradient period as "
                        "TIMESTAMP_START/TIMESTAMP_END; -9999 missing)")] = "json",
    ) -> Any:
        start_t = parse_timestamp(start, "start") if start is not None else None
        end_t = parse_timestamp(end, "end") if end is not None else None
        if start_t is not None and end_t is not None and end_t <= start_t:
            raise ParameterError("end", f"end ({end}) must be after start ({start})")
        if table is not None and not _TABLE_RE.match(table):
            raise ParameterError("table", f"{table!r} is not a table name (e.g. {example}); see /api/v1/{product}/sets")
        chosen = _choose_run(store, product, station, year, settings_hash, site)
        if isinstance(chosen, JSONResponse):
            return chosen
        run = chosen
        names = sorted(run.tables)
        if table is None:
            if len(names) != 1:
                raise ParameterError("table", f"the {product} run of station {station!r} for {year} has the tables "
                                     f"{', '.join(names)}; add table=<one of them>")
            table = names[0]
        if table not in run.tables:
            raise ParameterError("table", f"the {product} run of station {station!r} for {year} has no table "
                                 f"{table!r}; it has {', '.join(names)}")
        data = _window(store.product_table(run, table), start_t, end_t)
        if format == "csv":
            return Response(content=table_csv(run, data), media_type="text/csv")
        columns = list(data.values)
        rows = [{"time": format_time(t), "values": {n: data.values[n][i] for n in columns}}
                for i, t in enumerate(data.times)]
        # plain data: a year of 30-min periods is 17 520 rows, too many to validate one model each
        return JSONResponse(content={**_run_out(run), "table": table,
                                     "units": {n: product_unit(n) for n in columns}, "notes": run.notes,
                                     "settings": run.settings, "rows": rows})

    def get_sets(
        station: Annotated[str, Query(description="station id, e.g. st1")],
        year: Annotated[int | None, Query(ge=2000, le=2200, description="one year; omit for all")] = None,
    ) -> list[ProductRunOut]:
        runs = store.product_runs(product, station, year)
        if not runs:
            refuse_unknown_station(store, station)
        return [ProductRunOut(**_run_out(r)) for r in runs]

    responses: dict[int | str, dict[str, Any]] = {
        200: {"content": {"text/csv": {}}}, 404: {"description": f"no {product} results stored for the station-year"},
        422: {"description": "invalid parameter"}, 503: {"description": "storage unavailable"}}
    app.get(f"/api/v1/{product}", response_model=ProductOut, responses=responses, name=f"get_{product}",
            summary=f"One table of a station-year's {product} run")(get_product)
    app.get(f"/api/v1/{product}/sets", response_model=list[ProductRunOut], name=f"{product}_sets",
            responses={404: {"description": UNKNOWN_STATION}, 503: {"description": "storage unavailable"}},
            summary=f"The {product} runs stored for a station")(get_sets)
