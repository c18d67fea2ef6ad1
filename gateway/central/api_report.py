"""The site carbon report over HTTP (mounted by `gateway.central.api.create_app`):

    GET /api/v1/report   one station-year's report built from the store (gateway/central/report_data.py) and
                         rendered as the self-contained HTML page or the PDF (docs/report.md)

Rendering needs the report extra (matplotlib); without it the route answers 501 naming the install line. One
report is rendered at a time (matplotlib's style settings are process-wide).
"""

import re
import tempfile
import threading
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, FastAPI, Query
from fastapi.responses import JSONResponse, Response

from gateway.central.api_names import refuse_unknown_station
from gateway.central.params import ParameterError
from gateway.central.report_data import Choice, ReportBuildError, build_report_data
from gateway.central.store import Store
from gateway.contract import SETTINGS_HASH_PATTERN
from gateway.extras import MissingExtra, require_extra
from gateway.report.data import ReportDataError

_SETTINGS_HASH_RE = re.compile(SETTINGS_HASH_PATTERN)
_RENDER_LOCK = threading.Lock()


def add_report_routes(app: FastAPI | APIRouter, store: Store) -> None:
    @app.get(
        "/api/v1/report",
        responses={200: {"content": {"text/html": {}, "application/pdf": {}}},
                   404: {"description": "no budget stored for the station-year"},
                   422: {"description": "invalid parameter, or several runs to choose from"},
                   501: {"description": "the report renderer (matplotlib) is not installed"},
                   503: {"description": "storage unavailable"}},
        response_class=Response,
        summary="The site carbon report of a station-year (HTML or PDF)",
    )
    def report(
        station: Annotated[str, Query(description="station id, e.g. st1")],
        year: Annotated[int, Query(ge=2000, le=2200, description="calendar year of the station's standard time")],
        format: Annotated[Literal["html", "pdf"], Query(description="html (self-contained page) or pdf")] = "html",
        site: Annotated[str | None, Query(description="site id; needed when two sites have the station id")] = None,
        budget_settings_hash: Annotated[str | None, Query(description="the budget run, when the year has several "
                                                                      "(see /api/v1/budget/sets)")] = None,
        soil_settings_hash: Annotated[str | None, Query(description="the soil run, when several")] = None,
        stems_settings_hash: Annotated[str | None, Query(description="the stems run, when several")] = None,
    ) -> Response:
        for name, value in (("budget_settings_hash", budget_settings_hash), ("soil_settings_hash", soil_settings_hash),
                            ("stems_settings_hash", stems_settings_hash)):
            if value is not None and not _SETTINGS_HASH_RE.match(value):
                raise ParameterError(name, f"{value!r} is not a settings hash; use 8-64 lower-case hex digits as "
                                           "the /sets routes list them")
        try:
            require_extra("report", "GET /api/v1/report")
        except MissingExtra as exc:
            return JSONResponse(status_code=501, content={"detail": str(exc)})
        try:
            data = build_report_data(store, station, year, choice=Choice(budget_settings_hash, soil_settings_hash,
                                                                         stems_settings_hash), site=site)
        except ReportBuildError as exc:
            text = str(exc)
            if text.startswith("budget: no carbon budget"):
                refuse_unknown_station(store, station)  # a mistyped station is named, not offered a budget to compute
                return JSONResponse(status_code=404, content={"detail": text})
            parameter = next((p for p in ("budget", "soil", "stems") if text.startswith(f"{p}:")), "budget")
            raise ParameterError(f"{parameter}_settings_hash", text) from None
        except ReportDataError as exc:
            return JSONResponse(status_code=422, content={"detail": f"the stored data cannot make a report: {exc}"})
        from gateway.report.figures import build_figures, report_style
        from gateway.report.html import render_html
        from gateway.report.pdf import write_pdf
        from gateway.report.summary import ReportSummary

        stem = f"{data.site.site}_{data.site.year}_carbon_report"
        with _RENDER_LOCK:
            with report_style():
                figures = build_figures(ReportSummary(data))
            if format == "html":
                return Response(content=render_html(data, figures=figures), media_type="text/html",
                                headers={"Content-Disposition": f'inline; filename="{stem}.html"'})
            with tempfile.TemporaryDirectory() as folder:
                body = write_pdf(data, Path(folder) / f"{stem}.pdf", figures=figures).read_bytes()
        return Response(content=body, media_type="application/pdf",
                        headers={"Content-Disposition": f'attachment; filename="{stem}.pdf"'})
