"""The store-based builder of the site carbon report (gateway/central/report_data.py) and GET /api/v1/report: a
station-year's stored budget, soil and stems runs become the report's data object with the numbers as stored and a
provenance a verifier can check — every input digest is recomputed here from the HTTP API's answer to the request
the provenance names."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pytest
from fastapi.testclient import TestClient

from gateway.central.access import AccessControl
from gateway.central.api import create_app
from gateway.central.budget import budget_input_digests, run_station_budget
from gateway.central.budget_config import BudgetJobConfig
from gateway.central.report_data import Choice, ReportBuildError, build_report_data, canonical_digest
from gateway.central.soilstems import run_station_product
from gateway.central.store import SqliteStore, StoredReading
from gateway.central.store.provenance import records_digest
from gateway.contract import FluxRecord
from gateway.simulation.fluxyear import flux_records, met_readings, synthetic_year

from .soilstems_helpers import (
    SITE,
    STATION,
    YEAR,
    SoilStemsStores,
    copy_database,
    profile_config,
    simulated_stems,
    soil_job,
    stems_job,
)

LATER = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory, soilstems_stores: SoilStemsStores) -> Path:
    # the soil and stems readings and the runs of the default settings (made once per run), then the budget
    path = tmp_path_factory.mktemp("report") / "central.sqlite"
    instance = soilstems_stores.copy(soilstems_stores.computed, path)
    try:
        flux_year = synthetic_year(YEAR, seed=4, utc_offset_h=0.0)
        days = slice(0, 45 * 48)
        flux_year = dataclasses.replace(flux_year, **{f.name: getattr(flux_year, f.name)[days] for f in
                                                      dataclasses.fields(flux_year)
                                                      if isinstance(getattr(flux_year, f.name), np.ndarray)})
        instance.write_fluxes(flux_records(flux_year, site=SITE, station=STATION))
        instance.write([StoredReading(SITE, r) for r in met_readings(flux_year, station=STATION)])
        job = BudgetJobConfig.model_validate({"ustar": "0.25", "defaults": {"latitude": 50.0, "longitude": 10.0,
                                                                            "utc_offset_h": 0}})
        run_station_budget(instance, STATION, YEAR, job, now=LATER)
    finally:
        instance.close()
    return path


@pytest.fixture(scope="module")
def store(store_path: Path) -> Iterator[SqliteStore]:
    """The module's store, one run of each product: for the tests that only read."""
    instance = SqliteStore(store_path)
    yield instance
    instance.close()


@pytest.fixture
def own_store(store_path: Path, tmp_path: Path) -> Iterator[SqliteStore]:
    """A copy of the module's store for a test that adds a run, so that no other test's outcome depends on the
    order the tests ran in (under pytest-xdist a module's tests may be spread over workers)."""
    copy_database(store_path, tmp_path / "central.sqlite")
    instance = SqliteStore(tmp_path / "central.sqlite")
    yield instance
    instance.close()


def test_the_data_object_holds_the_stored_numbers(store: SqliteStore) -> None:
    data = build_report_data(store, STATION, YEAR)
    (budget_run,) = store.budget_runs(STATION, YEAR)
    annual = store.budget_table(budget_run, "YY")
    assert data.budget_data.annual.values["NEE_F"][0] == annual.values["NEE_F"][0]
    assert data.budget_data.ustar.draws.size == len(budget_run.ustar_draws) and data.budget_data.ustar.mode == "value"
    assert data.budget_data.time_s[0] == datetime(YEAR, 1, 1, tzinfo=UTC).timestamp()  # record start, local clock
    assert [s.name for s in data.soil] == ["FC_SOIL_CH_1", "FC_SOIL_GRAD"]
    gradient = data.soil[1]
    (soil_run,) = store.product_runs("soil", STATION, YEAR)
    stored = store.product_table(soil_run, "gradient_1")
    assert gradient.period_s == 1800 and gradient.ts_name == "TS"
    assert gradient.time_s[0] == stored.times[0].timestamp() - 1800  # the period's start
    assert np.array_equal(gradient.flux, np.array(stored.values["FC_SOIL_GRAD"], dtype=float), equal_nan=True)
    assert data.soil[0].method == "chamber" and data.soil[0].period_s == 6 * 3600
    assert [s.tree for s in data.stems] == ["t1", "t2", "t3"] and data.stems[0].species == "Fagus sylvatica"
    (plot,) = data.stem_carbon
    assert plot.plot == "1" and plot.n_trees == 5 and plot.c_inc_mg_ha > 0 and plot.c_inc_sd > 0
    assert (plot.start, plot.end) == ("20250101", "20251231")
    assert data.site.site == SITE and data.site.lat == 50.0 and data.site.utc_offset_h == 0.0


def test_provenance_names_engines_hashes_sensors_and_checkable_digests(store: SqliteStore) -> None:
    data = build_report_data(store, STATION, YEAR)
    p = data.provenance
    (budget_run,) = store.budget_runs(STATION, YEAR)
    (soil_run,) = store.product_runs("soil", STATION, YEAR)
    assert p.engines["budget"] == budget_run.engine_version and p.engines["soil"].startswith("sinkwatch-soil")
    assert p.settings_hashes["budget"] == budget_run.settings_hash
    assert p.settings_hashes["soil"] == soil_run.settings_hash and "stems" in p.settings_hashes
    assert p.engines["flux records"] == "sinkwatch-simulation fluxyear"
    (station,) = p.stations
    assert {"co2_10", "dendro", "chamber_1"} <= set(station.sensors)
    assert "LID_CLOSED_4_1_1" in station.sensors["chamber_1"]
    roles = {i.role for i in p.inputs}
    assert {"budget, HH rows", "budget, YY rows", "soil, gradient_1", "soil, chamber_1", "stems, tree_t1",
            "stems, plot_1"} <= roles
    coverage = {c.variable: c for c in p.coverage}
    assert coverage["GRO_t1"].fraction > 0.99 and 0.1 < coverage["FC_SOIL_GRAD"].fraction < 0.2  # 45 days
    kept = [i for i in p.inputs if i.role.startswith(("budget input", "soil input", "stems input"))]
    # a verifier asks the API for exactly these records and gets the same digest
    with TestClient(create_app(store, access=AccessControl.development())) as client:
        for item in p.inputs:
            if item in kept:
                continue
            url = urlsplit(item.source)
            body = client.get(url.path, params=dict(parse_qsl(url.query))).json()
            assert canonical_digest(body["rows"]) == item.sha256, item.source
            assert len(body["rows"]) == item.records
        # what the runs were computed from, as they keep it: the budget's flux records through the same API
        [fluxes] = [i for i in kept if i.role.startswith("budget input, flux records")]
        url = urlsplit(fluxes.source)
        body = client.get(url.path, params=dict(parse_qsl(url.query))).json()
        assert records_digest([FluxRecord.model_validate(r) for r in body["records"]]) == fluxes.sha256
        assert len(body["records"]) == fluxes.records == budget_run.inputs["fluxes"]["records"]
    assert {i.role for i in kept} >= {"budget input, SW_IN half-hour means of good readings", "soil input, means",
                                      "soil input, readings", "stems input, readings"}
    assert {i.sha256 for i in kept if i.role.startswith("budget input")} == \
        {e["sha256"] for e in budget_input_digests(store, budget_run).values()}  # and read again from the store
    assert {i.sha256 for i in kept if i.role.startswith("soil input")} == \
        {e["sha256"] for e in soil_run.inputs.values()}


def test_several_runs_must_be_chosen_and_a_missing_budget_names_the_command(own_store: SqliteStore) -> None:
    store = own_store
    other = run_station_product("soil", store, STATION, YEAR, soil_job(profiles=[profile_config(method="regression")],
                                                                        chambers=[]),
                                stems_job(simulated_stems()), now=LATER)
    with pytest.raises(ReportBuildError, match=r"soil: station st1 has 2 runs for 2025.*--soil-settings-hash"):
        build_report_data(store, STATION, YEAR)
    chosen = build_report_data(store, STATION, YEAR, choice=Choice(soil=other.run.settings_hash))
    assert [s.name for s in chosen.soil] == ["FC_SOIL_GRAD"]
    assert chosen.provenance.settings_hashes["soil"] == other.run.settings_hash
    with pytest.raises(ReportBuildError, match=r"sinkwatch flux budget --station st1 --year 2024 -c central.yaml"):
        build_report_data(store, STATION, 2024)


def test_the_api_serves_the_report_as_html_and_pdf(own_store: SqliteStore) -> None:
    store = own_store
    # a second soil run, which makes a request without soil_settings_hash ambiguous (422)
    run_station_product("soil", store, STATION, YEAR, soil_job(profiles=[profile_config(method="regression")],
                                                               chambers=[]), stems_job(simulated_stems()), now=LATER)
    (soil,) = [r for r in store.product_runs("soil", STATION, YEAR) if r.tables.get("chamber_1")]
    with TestClient(create_app(store, access=AccessControl.development())) as client:
        params = {"station": STATION, "year": YEAR, "soil_settings_hash": soil.settings_hash}
        html = client.get("/api/v1/report", params=params)
        assert html.status_code == 200, html.text
        assert html.headers["content-type"].startswith("text/html")
        for section in ("budget", "soil", "stems", "provenance"):
            assert f'id="{section}"' in html.text
        assert "FC_SOIL_CH_1" in html.text and "Content-Security-Policy" in html.text
        pdf = client.get("/api/v1/report", params={**params, "format": "pdf"})
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
        missing = client.get("/api/v1/report", params={"station": STATION, "year": 2024})
        assert missing.status_code == 404 and "sinkwatch flux budget" in missing.json()["detail"]
        mistyped = client.get("/api/v1/report", params={"station": STATION.upper(), "year": YEAR})
        assert mistyped.status_code == 404 and "sinkwatch flux budget" not in mistyped.json()["detail"]
        assert f"did you mean station={STATION}?" in mistyped.json()["detail"]
        ambiguous = client.get("/api/v1/report", params={"station": STATION, "year": YEAR})
        assert ambiguous.status_code == 422
        assert ambiguous.json()["detail"][0]["loc"] == ["query", "soil_settings_hash"]
    assert not math.isnan(build_report_data(store, STATION, YEAR, choice=Choice(soil=soil.settings_hash))
                          .budget_data.annual.values["NEE_F"][0])
