"""GET /api/v1/budget and /api/v1/budget/sets: a budget the central job computed from a simulated station-year,
served as JSON and CSV; parameter errors name the parameter and the fix; 404 says how to compute a missing one;
503 when the store is down."""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.central.access import AccessControl
from gateway.central.api import create_app
from gateway.central.budget import run_station_budget
from gateway.central.store import InfluxStore, SqliteStore, StationBudget
from gateway.model import format_time
from gateway.net import free_port

from .budget_helpers import STATION, YEAR, after, fill_store, first_days, job, older_engine_copy, simulated_year

# these tests are about data, not access: the API is built in development mode, explicitly
DEV = AccessControl.development()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, StationBudget, StationBudget]]:
    """Two runs of one station-year (u* given 0.25 and 0.3): two settings hashes."""
    store = SqliteStore(tmp_path_factory.mktemp("api") / "central.sqlite")
    year = first_days(simulated_year(), 30)
    fill_store(store, year)
    first = run_station_budget(store, STATION, YEAR, job(), now=after(year))
    second = run_station_budget(store, STATION, YEAR, job(ustar="0.3"), now=after(year))
    with TestClient(create_app(store, access=DEV)) as client:
        yield client, first, second
    store.close()


def _get(client: TestClient, **params: object) -> tuple[int, object]:
    response = client.get("/api/v1/budget", params=params)
    return response.status_code, response.json() if "json" in response.headers["content-type"] else response.text


def test_json_of_the_annual_running_total(served: tuple[TestClient, StationBudget, StationBudget]) -> None:
    client, first, _second = served
    status, body = _get(client, station=STATION, year=YEAR, settings_hash=first.run.settings_hash)

    assert status == 200 and isinstance(body, dict)
    run = first.run
    assert (body["station"], body["year"], body["resolution"], body["settings_hash"]) == (
        STATION, YEAR, "YY", run.settings_hash)
    assert body["complete"] is False and body["running_total"] is True
    assert body["last_end"] == format_time(run.last_end) and body["first_end"] == format_time(run.first_end)
    assert body["coverage"] == pytest.approx(30 / 366, rel=1e-4)
    (row,) = body["rows"]
    assert row["label"] == "2024"
    assert row["values"]["NEE_F"] == first.tables["YY"].values["NEE_F"][0]
    assert row["values"]["NEE_F_UNC"] == first.tables["YY"].values["NEE_F_UNC"][0]
    assert body["units"]["NEE_F"] == "gC m-2" and body["units"]["NEE_F_TCO2E"] == "tCO2e ha-1"
    assert body["ustar"]["mode"] == "value" and body["ustar"]["threshold"] == 0.25
    assert any("not filled and not summed" in note for note in body["notes"])
    assert body["settings"]["ustar"] == 0.25


def test_json_half_hours_carry_missing_values_as_null(served: tuple[TestClient, StationBudget, StationBudget]) -> None:
    client, first, _second = served
    status, body = _get(client, station=STATION, year=YEAR, settings_hash=first.run.settings_hash, resolution="HH")

    assert status == 200 and isinstance(body, dict)
    rows = body["rows"]
    assert len(rows) == 30 * 48
    assert rows[0]["label"] == "202401010000" and rows[0]["time"] == format_time(first.run.first_end)
    fc = first.tables["HH"].values["FC"]
    gap = next(i for i, v in enumerate(fc) if v is None or math.isnan(v))
    assert rows[gap]["values"]["FC"] is None and rows[gap]["values"]["NEE_F"] is not None  # measured gap, filled
    assert body["units"]["NEE_F"] == "umol m-2 s-1" and body["units"]["NEE_F_QC"] == "1"


@pytest.mark.parametrize("resolution, rows", [("DD", 30), ("MM", 1), ("YY", 1), ("HH", 30 * 48)])
def test_csv_is_the_command_file_of_each_resolution(served: tuple[TestClient, StationBudget, StationBudget],
                                                    resolution: str, rows: int) -> None:
    client, first, _second = served
    status, text = _get(client, station=STATION, year=YEAR, settings_hash=first.run.settings_hash,
                        resolution=resolution, format="csv")
    assert status == 200 and isinstance(text, str)
    table = list(csv.DictReader(io.StringIO(text)))
    assert len(table) == rows
    label = "TIMESTAMP_START" if resolution == "HH" else "TIMESTAMP"
    assert table[0][label] == first.tables[resolution].labels[0]
    expected = first.tables[resolution].values["NEE_F"][0]
    assert expected is not None and float(table[0]["NEE_F"]) == pytest.approx(expected, rel=1e-5)
    if resolution == "YY":
        assert float(table[0]["USTAR_THRESHOLD"]) == 0.25


def test_sets_list_every_run(served: tuple[TestClient, StationBudget, StationBudget]) -> None:
    client, first, second = served
    body = client.get("/api/v1/budget/sets", params={"station": STATION}).json()
    assert sorted(s["settings_hash"] for s in body) == sorted([first.run.settings_hash, second.run.settings_hash])
    assert all(s["year"] == YEAR and s["complete"] is False for s in body)
    assert client.get("/api/v1/budget/sets", params={"station": STATION, "year": YEAR - 1}).json() == []


@pytest.mark.parametrize(("path", "params"), [("/api/v1/budget/sets", {}), ("/api/v1/budget/sets", {"year": YEAR}),
                                              ("/api/v1/budget", {"year": YEAR})])
def test_a_station_the_store_never_held_is_404_naming_the_one_meant(
        served: tuple[TestClient, StationBudget, StationBudget], path: str, params: dict[str, object]) -> None:
    client = served[0]
    response = client.get(path, params={"station": STATION.upper(), **params})
    assert response.status_code == 404
    detail = response.json()["detail"]
    assert detail.startswith(f"station {STATION.upper()!r} is not in the store")
    assert f"did you mean station={STATION}?" in detail and "sinkwatch flux budget" not in detail


def test_a_known_station_without_a_run_of_the_year_is_200_with_none(
        served: tuple[TestClient, StationBudget, StationBudget]) -> None:
    response = served[0].get("/api/v1/budget/sets", params={"station": STATION, "year": YEAR - 1})
    assert response.status_code == 200
    assert response.json() == []


def test_two_runs_need_a_settings_hash(served: tuple[TestClient, StationBudget, StationBudget]) -> None:
    client, first, second = served
    status, body = _get(client, station=STATION, year=YEAR)
    assert status == 422 and isinstance(body, dict)
    (error,) = body["detail"]
    assert error["loc"] == ["query", "settings_hash"]
    assert first.run.settings_hash in error["msg"] and second.run.settings_hash in error["msg"]


@pytest.mark.parametrize("params, parameter, text", [
    ({"year": "twenty"}, "year", "integer"),
    ({"year": 1900}, "year", "greater than or equal to 2000"),
    ({"year": YEAR, "resolution": "WW"}, "resolution", "'HH', 'DD', 'MM' or 'YY'"),
    ({"year": YEAR, "format": "xls"}, "format", "'json' or 'csv'"),
    ({"year": YEAR, "settings_hash": "Robert'); DROP"}, "settings_hash", "8-64 lower-case hex digits"),
])
def test_bad_parameters_are_named(served: tuple[TestClient, StationBudget, StationBudget],
                                  params: dict[str, object], parameter: str, text: str) -> None:
    client, _first, _second = served
    status, body = _get(client, station=STATION, **params)
    assert status == 422 and isinstance(body, dict)
    (error,) = body["detail"]
    assert error["loc"] == ["query", parameter] and text in error["msg"]


def test_a_missing_budget_is_404_saying_how_to_compute_it(
        served: tuple[TestClient, StationBudget, StationBudget]) -> None:
    client, _first, _second = served
    status, body = _get(client, station=STATION, year=YEAR - 1)
    assert status == 404 and isinstance(body, dict)
    assert f"sinkwatch flux budget --station {STATION} --year {YEAR - 1} -c central.yaml" in body["detail"]
    assert f"stored: {YEAR} " in body["detail"]
    status, body = _get(client, station="nobody", year=YEAR)
    assert status == 404


def test_store_down_is_503(tmp_path: Path) -> None:
    store = InfluxStore(f"http://127.0.0.1:{free_port()}", timeout_s=1)
    with TestClient(create_app(store, access=DEV)) as client:
        budget = client.get("/api/v1/budget", params={"station": STATION, "year": YEAR})
        sets = client.get("/api/v1/budget/sets", params={"station": STATION})
    store.close()
    assert budget.status_code == 503 and sets.status_code == 503
    assert "storage unavailable" in budget.json()["detail"] and "retry later" in budget.json()["detail"]


def test_a_run_an_engine_upgrade_computed_again_is_served_in_place_of_the_old_one(tmp_path: Path) -> None:
    # the settings hash leaves the engine out: after an upgrade the job stores the year again under the same hash
    # and the new engine version, beside the old run; a reader asking for the year (with or without the hash) gets
    # the newest version's run instead of a refusal that asks for a hash both runs share. /sets lists both.
    store = SqliteStore(tmp_path / "central.sqlite")
    try:
        year = first_days(simulated_year(), 30)
        fill_store(store, year)
        new = run_station_budget(store, STATION, YEAR, job(), now=after(year))
        old_run, old_tables = older_engine_copy(new.run, new.tables)
        store.write_budget(StationBudget(old_run, old_tables))
        with TestClient(create_app(store, access=DEV)) as client:
            assert sorted(r["engine_version"] for r in client.get(
                "/api/v1/budget/sets", params={"station": STATION, "year": YEAR}).json()) == sorted(
                [new.run.engine_version, old_run.engine_version])
            for params in ({}, {"settings_hash": new.run.settings_hash}):
                status, body = _get(client, station=STATION, year=YEAR, **params)
                assert status == 200 and isinstance(body, dict), body
                assert body["engine_version"] == new.run.engine_version
                assert body["rows"][0]["values"]["NEE_F"] == new.tables["YY"].values["NEE_F"][0]
    finally:
        store.close()


def test_only_an_older_version_of_the_same_engine_site_and_settings_is_left_out() -> None:
    from gateway.central.engines import newest_engine_runs

    @dataclasses.dataclass(frozen=True)
    class Run:
        site: str
        settings_hash: str
        engine_version: str

    runs = [Run("a", "h1", "eng 0.9.0"), Run("a", "h1", "eng 0.10.0"), Run("b", "h1", "eng 0.9.0"),
            Run("a", "h2", "eng 0.9.0"), Run("a", "h1", "other 0.1.0"), Run("a", "h1", "eng dev")]
    assert newest_engine_runs(runs) == [runs[1], runs[2], runs[3], runs[4], runs[5]]
