"""GET /api/v1/stations/{station}/health, .../health/history and /api/v1/station-health over a store holding
health reports of stations at two sites."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.central.access import AccessControl
from gateway.central.api import create_app
from gateway.central.store import SqliteStore
from gateway.contract import StationHealth
from gateway.model import format_time, utc_now

from .test_store_health_contract import report


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, list[StationHealth]]]:
    store = SqliteStore(tmp_path / "central.sqlite")
    now = utc_now().replace(microsecond=0)
    reports = [report(i, time=now - timedelta(minutes=10 - i)) for i in range(10)]
    reports += [report(0, station="plot-08", time=now - timedelta(hours=3)),
                report(0, station="plot-09", site="other", time=now - timedelta(minutes=1)),
                report(0, station="plot-09", time=now - timedelta(minutes=2))]
    store.write_health(reports)
    with TestClient(create_app(store, access=AccessControl.development())) as test_client:
        yield test_client, reports
    store.close()


def test_the_latest_report_of_a_station_and_its_age(client: tuple[TestClient, list[StationHealth]]) -> None:
    test_client, reports = client
    body = test_client.get("/api/v1/stations/plot-07/health").json()
    assert StationHealth.model_validate(body["report"]) == reports[9]
    assert (body["site"], body["station"], body["time"]) == ("hainich", "plot-07", format_time(reports[9].time))
    assert 55 <= body["age_s"] <= 120


def test_a_station_the_store_never_held_is_a_404_naming_the_one_meant(
        client: tuple[TestClient, list[StationHealth]]) -> None:
    response = client[0].get("/api/v1/stations/plot-99/health")
    assert response.status_code == 404
    detail = response.json()["detail"]
    assert detail.startswith("station 'plot-99' is not in the store") and "did you mean station=plot-09?" in detail
    assert "/api/v1/station-health" in detail


def test_history_of_a_station_the_store_never_held_is_404(client: tuple[TestClient, list[StationHealth]]) -> None:
    test_client, reports = client
    response = test_client.get("/api/v1/stations/plot-7/health/history",
                               params={"start": format_time(reports[0].time), "end": format_time(reports[9].time)})
    assert response.status_code == 404
    assert "did you mean station=plot-07?" in response.json()["detail"]


def test_history_of_a_known_station_without_reports_in_the_window_is_200_with_none(
        client: tuple[TestClient, list[StationHealth]]) -> None:
    test_client, reports = client
    start = reports[9].time + timedelta(hours=1)
    response = test_client.get("/api/v1/stations/plot-07/health/history",
                               params={"start": format_time(start), "end": format_time(start + timedelta(hours=1))})
    assert response.status_code == 200
    assert response.json()["reports"] == []


def test_a_station_id_at_two_sites_needs_the_site(client: tuple[TestClient, list[StationHealth]]) -> None:
    test_client, _ = client
    response = test_client.get("/api/v1/stations/plot-09/health")
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", "site"] and "hainich, other" in error["msg"]
    assert test_client.get("/api/v1/stations/plot-09/health", params={"site": "other"}).json()["site"] == "other"


def test_history_is_the_window_oldest_first(client: tuple[TestClient, list[StationHealth]]) -> None:
    test_client, reports = client
    start, end = reports[2].time, reports[5].time
    body = test_client.get("/api/v1/stations/plot-07/health/history",
                           params={"start": format_time(start), "end": format_time(end)}).json()
    assert [StationHealth.model_validate(r) for r in body["reports"]] == reports[2:5]


@pytest.mark.parametrize(
    ("params", "parameter"),
    [({"start": "yesterday", "end": "2026-11-25T10:00:00Z"}, "start"),
     ({"start": "2026-11-25T10:00:00Z", "end": "2026-11-25T09:00:00Z"}, "end"),
     ({"start": "2026-11-25T10:00:00", "end": "2026-11-25T11:00:00Z"}, "start")],
)
def test_history_parameters_are_checked(client: tuple[TestClient, list[StationHealth]], params: dict[str, str],
                                        parameter: str) -> None:
    response = client[0].get("/api/v1/stations/plot-07/health/history", params=params)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", parameter]


def test_every_station_latest_report(client: tuple[TestClient, list[StationHealth]]) -> None:
    body = client[0].get("/api/v1/station-health").json()
    assert [(r["site"], r["station"]) for r in body] == [("hainich", "plot-07"), ("hainich", "plot-08"),
                                                          ("hainich", "plot-09"), ("other", "plot-09")]
    ages = {r["station"]: r["age_s"] for r in body if r["site"] == "hainich"}
    assert ages["plot-08"] > 3 * 3600 - 5 > ages["plot-07"]
