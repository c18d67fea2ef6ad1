"""A station the store never held is a 404 naming it and the station it likely means on every route that takes a
station (health, its history, alerts, their history, the commands sent to it, the series and flux sets), while a
station the store knows that has nothing in the range asked is 200 with nothing in it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.central.access import AccessControl
from gateway.central.api import create_app
from gateway.central.commands import CommandKey, CommandLedger, CommandService
from gateway.central.store import SqliteStore
from gateway.model import format_time

from .helpers import T0, reading, stored
from .test_store_health_contract import report

START, END = format_time(T0 - timedelta(days=1)), format_time(T0 + timedelta(days=1))
LATER = format_time(T0 + timedelta(days=30))
READER = "tower01"  # has readings only
REPORTER = "plot-07"  # has health reports only


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    store = SqliteStore(tmp_path / "central.sqlite")
    store.write(stored("hainich", [reading(READER)]))
    store.write_health([report(0, station=REPORTER)])
    # commands as the service keeps them; publishing is never reached by these reads
    ledger = CommandLedger(tmp_path / "commands.sqlite")
    commands = CommandService(ledger, CommandKey(tmp_path), lambda topic, payload, qos: None)
    with TestClient(create_app(store, access=AccessControl.development(), commands=commands)) as test_client:
        yield test_client
    store.close()


ROUTES = [
    ("/api/v1/stations/{station}/health", {}),
    ("/api/v1/stations/{station}/health/history", {"start": START, "end": END}),
    ("/api/v1/alerts", {"station": "{station}"}),
    ("/api/v1/alerts/history", {"station": "{station}", "start": START, "end": END}),
    ("/api/v1/stations/{station}/commands", {}),
    ("/api/v1/fluxes/sets", {"station": "{station}"}),
    ("/api/v1/series", {"station": "{station}", "variable": "CO2", "start": START, "end": END}),
]


def _get(client: TestClient, path: str, params: dict[str, str], station: str) -> tuple[int, Any]:
    response = client.get(path.format(station=station), params={k: v.format(station=station)
                                                               for k, v in params.items()})
    return response.status_code, response.json()


@pytest.mark.parametrize(("path", "params"), ROUTES)
@pytest.mark.parametrize(("mistyped", "meant"), [("tower1", READER), ("Plot-07", REPORTER)])
def test_a_station_the_store_never_held_is_404_naming_the_one_meant(
        client: TestClient, path: str, params: dict[str, str], mistyped: str, meant: str) -> None:
    status, body = _get(client, path, params, mistyped)
    assert status == 404 and isinstance(body, dict)
    assert body["detail"].startswith(f"station {mistyped!r} is ")
    assert f"did you mean station={meant}?" in body["detail"]


@pytest.mark.parametrize(("path", "params"), [
    ("/api/v1/stations/{station}/health/history", {"start": END, "end": LATER}),
    ("/api/v1/alerts", {"station": "{station}"}),
    ("/api/v1/alerts/history", {"station": "{station}", "start": START, "end": END}),
    ("/api/v1/stations/{station}/commands", {}),
    ("/api/v1/fluxes/sets", {"station": "{station}"}),
])
@pytest.mark.parametrize("station", [READER, REPORTER])
def test_a_known_station_with_nothing_to_show_is_200_with_nothing(
        client: TestClient, path: str, params: dict[str, str], station: str) -> None:
    status, body = _get(client, path, params, station)
    assert status == 200
    listed = body["reports"] if "history" in path and "health" in path else (
        body["alerts"] if path == "/api/v1/alerts" else body)
    assert listed == []


def test_a_known_station_without_health_reports_says_it_has_sent_none(client: TestClient) -> None:
    status, body = _get(client, "/api/v1/stations/{station}/health", {}, READER)
    assert status == 404 and isinstance(body, dict)
    assert body["detail"].startswith(f"no health report stored for station {READER!r}: the station has not sent")


def test_a_station_with_health_reports_only_never_reported_the_variable(client: TestClient) -> None:
    status, body = _get(client, "/api/v1/series", {"station": "{station}", "variable": "CO2", "start": START,
                                                   "end": END}, REPORTER)
    assert status == 404 and isinstance(body, dict)
    assert body["detail"].startswith(f"station {REPORTER!r} never reported variable 'CO2': the store holds no "
                                     "readings of it")


def test_an_empty_store_names_no_station(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "empty.sqlite")
    with TestClient(create_app(store, access=AccessControl.development())) as test_client:
        response = test_client.get("/api/v1/budget/sets", params={"station": "st1"})
    store.close()
    assert response.status_code == 404
    assert response.json()["detail"] == ("station 'st1' is not in the store (nothing of it was ever stored) "
                                         "(GET /api/v1/stations and /api/v1/station-health list them; names are "
                                         "case-sensitive)")


@pytest.mark.parametrize(("path", "params"), [
    ("/api/v1/stations/{station}/health", {"site": "Hainich"}),
    ("/api/v1/stations/{station}/health/history", {"start": START, "end": END, "site": "Hainich"}),
    ("/api/v1/alerts", {"station": "{station}", "site": "Hainich"}),
    ("/api/v1/alerts", {"site": "Hainich"}),
])
@pytest.mark.parametrize("station", [READER, REPORTER])
def test_a_site_the_store_never_held_is_404_naming_the_one_meant(
        client: TestClient, path: str, params: dict[str, str], station: str) -> None:
    status, body = _get(client, path, params, station)
    assert status == 404 and isinstance(body, dict)
    assert body["detail"].startswith("site 'Hainich'")
    assert "did you mean site=hainich?" in body["detail"]


@pytest.mark.parametrize(("path", "params"), [
    ("/api/v1/stations/{station}/health/history", {"start": END, "end": LATER, "site": "hainich"}),
    ("/api/v1/alerts", {"station": "{station}", "site": "hainich"}),
])
@pytest.mark.parametrize("station", [READER, REPORTER])
def test_a_known_site_with_nothing_to_show_is_200_with_nothing(
        client: TestClient, path: str, params: dict[str, str], station: str) -> None:
    status, body = _get(client, path, params, station)
    assert status == 200
    assert (body["reports"] if "history" in path else body["alerts"]) == []


def test_a_known_station_at_a_site_it_never_was_lists_its_sites(client: TestClient) -> None:
    status, body = _get(client, "/api/v1/stations/{station}/health/history",
                        {"start": START, "end": END, "site": "tharandt"}, REPORTER)
    assert status == 404
    assert body["detail"] == ("site 'tharandt' of station 'plot-07' is not in the store (no reading, health report "
                              "or flux result of it there); sites of station 'plot-07': hainich (names are "
                              "case-sensitive)")
