"""GET /api/v1/soil, /api/v1/stems and their /sets: soil and stems runs the central job computed from simulated
readings, served as JSON and CSV; parameter errors name the parameter and the fix; 404 says how to compute a
missing run."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.central.access import AccessControl
from gateway.central.api import create_app
from gateway.central.soilstems import run_station_product
from gateway.central.store import StationProduct
from gateway.model import format_time

from .budget_helpers import older_engine_copy
from .soilstems_helpers import (
    LATER,
    STATION,
    YEAR,
    SoilStemsStores,
    profile_config,
    simulated_stems,
    soil_job,
    stems_job,
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, soilstems_stores: SoilStemsStores) -> Iterator[
        tuple[TestClient, StationProduct, StationProduct, StationProduct]]:
    stems_year = simulated_stems()
    # the soil and stems runs of the default settings as the jobs stored and returned them (made once per run)
    store = soilstems_stores.copy(soilstems_stores.computed, tmp_path_factory.mktemp("api") / "central.sqlite")
    soil, stems = soilstems_stores.soil, soilstems_stores.stems
    regression = run_station_product("soil", store, STATION, YEAR, soil_job(
        profiles=[profile_config(method="regression")], chambers=[]), stems_job(stems_year), now=LATER)
    with TestClient(create_app(store, access=AccessControl.development())) as client:
        yield client, soil, regression, stems
    store.close()


def test_a_soil_table_is_served_as_stored(served: tuple[TestClient, StationProduct, StationProduct,
                                                        StationProduct]) -> None:
    client, soil, _other, _stems = served
    response = client.get("/api/v1/soil", params={"station": STATION, "year": YEAR, "table": "gradient_1",
                                                  "settings_hash": soil.run.settings_hash})
    assert response.status_code == 200, response.text
    body = response.json()
    table = soil.tables["gradient_1"]
    assert body["table"] == "gradient_1" and body["engine_version"] == soil.run.engine_version
    assert len(body["rows"]) == len(table)
    assert body["rows"][0]["time"] == format_time(table.times[0])
    assert body["rows"][5]["values"]["FC_SOIL_GRAD"] == table.values["FC_SOIL_GRAD"][5]
    assert body["units"]["FC_SOIL_GRAD"] == "umol m-2 s-1" and body["units"]["DS_CO2_1_1_1"] == "m2 s-1"
    assert body["units"]["FC_SOIL_GRAD_QC"] == "1" and body["units"]["SWC_1_1_1"] == "%"
    assert {t["name"] for t in body["tables"]} == {"gradient_1", "chamber_1"}
    # a window of rows: (start, end]
    start, end = format_time(table.times[9]), format_time(table.times[19])
    window = client.get("/api/v1/soil", params={"station": STATION, "year": YEAR, "table": "gradient_1",
                                                "settings_hash": soil.run.settings_hash, "start": start,
                                                "end": end}).json()
    assert [r["time"] for r in window["rows"]] == [format_time(t) for t in table.times[10:20]]


def test_csv_has_the_period_on_the_stations_clock_and_minus_9999_for_missing(
        served: tuple[TestClient, StationProduct, StationProduct, StationProduct]) -> None:
    client, soil, _other, _stems = served
    text = client.get("/api/v1/soil", params={"station": STATION, "year": YEAR, "table": "chamber_1",
                                              "settings_hash": soil.run.settings_hash, "format": "csv"}).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(soil.tables["chamber_1"])
    assert float(rows[0]["FC_SOIL_CH_1"]) == soil.tables["chamber_1"].values["FC_SOIL_CH_1"][0]
    plot = client.get("/api/v1/stems", params={"station": STATION, "year": YEAR, "table": "plot_1",
                                               "format": "csv"}).text
    (row,) = list(csv.DictReader(io.StringIO(plot)))
    assert row["TIMESTAMP"] == "202501010000" and float(row["C_AGB_INC"]) > 0
    tree = client.get("/api/v1/stems", params={"station": STATION, "year": YEAR, "table": "tree_t2",
                                               "format": "csv"}).text
    assert tree.splitlines()[0] == "TIMESTAMP,STEM_RAD_CLEAN_t2,STEM_FLAG_t2,GRO_t2,TWD_t2"
    # the removed spike: no value (-9999, never blank), flagged outlier (1) + no value (8)
    (spike,) = [line.split(",") for line in tree.splitlines() if "-9999" in line]
    assert (spike[1], spike[2], spike[4]) == ("-9999", "9.0", "-9999")


def test_sets_list_every_run_with_its_tables(served: tuple[TestClient, StationProduct, StationProduct,
                                                           StationProduct]) -> None:
    client, soil, other, _stems = served
    sets = client.get("/api/v1/soil/sets", params={"station": STATION}).json()
    assert sorted(s["settings_hash"] for s in sets) == sorted([soil.run.settings_hash, other.run.settings_hash])
    (stems_set,) = client.get("/api/v1/stems/sets", params={"station": STATION, "year": YEAR}).json()
    assert stems_set["complete"] is True
    assert {t["name"] for t in stems_set["tables"]} == {"tree_t1", "tree_t2", "tree_t3", "daily_t1", "daily_t2",
                                                        "daily_t3", "plot_1"}


@pytest.mark.parametrize(("params", "parameter", "text"), [
    ({"table": "gradient_1"}, "settings_hash", "has 2 soil runs for 2025"),
    ({"settings_hash": "XYZ"}, "settings_hash", "is not a settings hash"),
    ({"table": "no such; table"}, "table", "is not a table name"),
])
def test_ambiguous_or_invalid_requests_name_the_parameter(
        served: tuple[TestClient, StationProduct, StationProduct, StationProduct], params: dict[str, str],
        parameter: str, text: str) -> None:
    client = served[0]
    response = client.get("/api/v1/soil", params={"station": STATION, "year": YEAR, **params})
    assert response.status_code == 422
    (detail,) = response.json()["detail"]
    assert detail["loc"] == ["query", parameter] and text in detail["msg"]


def test_a_table_must_be_chosen_among_several_and_must_exist(
        served: tuple[TestClient, StationProduct, StationProduct, StationProduct]) -> None:
    client, soil, _other, _stems = served
    response = client.get("/api/v1/stems", params={"station": STATION, "year": YEAR})
    assert response.status_code == 422 and "add table=<one of them>" in response.text and "plot_1" in response.text
    response = client.get("/api/v1/soil", params={"station": STATION, "year": YEAR, "table": "chamber_7",
                                                  "settings_hash": soil.run.settings_hash})
    assert response.status_code == 422 and "has no table 'chamber_7'" in response.text


def test_a_missing_run_is_404_naming_the_command(served: tuple[TestClient, StationProduct, StationProduct,
                                                               StationProduct]) -> None:
    response = served[0].get("/api/v1/stems", params={"station": STATION, "year": 2024})
    assert response.status_code == 404
    assert "sinkwatch central stems --station st1 --year 2024 -c central.yaml" in response.json()["detail"]


@pytest.mark.parametrize(("path", "params"), [("/api/v1/soil/sets", {}), ("/api/v1/stems/sets", {"year": YEAR}),
                                              ("/api/v1/soil", {"year": YEAR}), ("/api/v1/stems", {"year": YEAR})])
def test_a_station_the_store_never_held_is_404_naming_the_one_meant(
        served: tuple[TestClient, StationProduct, StationProduct, StationProduct], path: str,
        params: dict[str, object]) -> None:
    response = served[0].get(path, params={"station": STATION.upper(), **params})
    assert response.status_code == 404
    detail = response.json()["detail"]
    assert detail.startswith(f"station {STATION.upper()!r} is not in the store")
    assert f"did you mean station={STATION}?" in detail and "sinkwatch central" not in detail


@pytest.mark.parametrize("product", ["soil", "stems"])
def test_a_known_station_without_a_run_of_the_year_is_200_with_none(
        served: tuple[TestClient, StationProduct, StationProduct, StationProduct], product: str) -> None:
    response = served[0].get(f"/api/v1/{product}/sets", params={"station": STATION, "year": YEAR - 1})
    assert response.status_code == 200
    assert response.json() == []


def test_a_run_an_engine_upgrade_computed_again_is_served_in_place_of_the_old_one(
    tmp_path: Path, soilstems_stores: SoilStemsStores
) -> None:
    # the same stems settings computed by an older engine version (same settings hash): the newest is served, without
    # asking for a hash both runs share; /sets lists both
    store = soilstems_stores.copy(soilstems_stores.computed, tmp_path / "central.sqlite")
    try:
        new = soilstems_stores.stems
        old_run, old_tables = older_engine_copy(new.run, new.tables)
        store.write_product(StationProduct(old_run, old_tables))
        table = next(iter(new.tables))
        with TestClient(create_app(store, access=AccessControl.development())) as client:
            listed = client.get("/api/v1/stems/sets", params={"station": STATION, "year": YEAR}).json()
            assert sorted(r["engine_version"] for r in listed) == sorted([new.run.engine_version,
                                                                          old_run.engine_version])
            response = client.get("/api/v1/stems", params={"station": STATION, "year": YEAR, "table": table})
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["engine_version"] == new.run.engine_version
            column = next(n for n, c in new.tables[table].values.items() if c and c[0] is not None)
            assert body["rows"][0]["values"][column] == new.tables[table].values[column][0]
    finally:
        store.close()
