"""HTTP API over a SqliteStore: responses, CSV, parameter errors, storage outage."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.central.access import AccessControl
from gateway.central.api import create_app
from gateway.central.store import SqliteStore, StoreUnavailable
from gateway.central.store.reads import CHUNK_ROWS
from gateway.contract import StationState, StationStatus
from gateway.model import format_time

from .helpers import T0, reading, series, stored

# these tests are about data, not access: the API is built in development mode, explicitly
DEV = AccessControl.development()

START = format_time(T0)
END = format_time(T0 + timedelta(hours=1))
VALUES: list[float | None] = [0.1, 1 / 3, None, 412.123456789012, -3.5]


class FakeIngest:
    def __init__(self, statuses: dict[tuple[str, str], StationStatus], connected: bool = True) -> None:
        self.statuses = statuses
        self.connected = connected

    @property
    def mqtt_connected(self) -> bool:
        return self.connected

    def counters(self) -> dict[str, Any]:
        return {"batches_stored": 3}

    def station_statuses(self) -> dict[tuple[str, str], StationStatus]:
        return self.statuses


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    instance = SqliteStore(tmp_path / "api.sqlite")
    instance.write(stored("site1", series("st1", VALUES)))
    yield instance
    instance.close()


@pytest.fixture
def client(store: SqliteStore) -> Iterator[TestClient]:
    status = StationStatus(site="site2", station="st9", state=StationState.OFFLINE, since=T0)
    with TestClient(create_app(store, FakeIngest({("site2", "st9"): status}), access=DEV)) as test_client:
        yield test_client


def test_series_returns_exactly_the_stored_values(client: TestClient) -> None:
    response = client.get("/api/v1/series", params={"station": "st1", "variable": "CO2", "start": START, "end": END})

    assert response.status_code == 200
    body = response.json()
    readings = series("st1", VALUES)
    assert body["points"] == [{"time": format_time(r.time), "value": r.value, "qc": int(r.qc)} for r in readings]
    assert (body["site"], body["station"], body["sensor"], body["variable"], body["unit"]) == (
        "site1", "st1", "gmp252", "CO2", readings[0].unit)
    assert (body["every"], body["aggregate"]) == (None, None)


def test_series_aggregates_with_every(client: TestClient) -> None:
    response = client.get("/api/v1/series", params={
        "station": "st1", "variable": "CO2", "start": START, "end": END, "every": "1h", "aggregate": "max"})

    assert response.status_code == 200
    body = response.json()
    assert (body["every"], body["aggregate"]) == ("1h", "max")
    assert body["points"] == [{"time": START, "value": max(v for v in VALUES if v is not None), "qc": 3}]


def test_series_as_csv(client: TestClient) -> None:
    response = client.get("/api/v1/series", params={
        "station": "st1", "variable": "CO2", "start": START, "end": END, "format": "csv"})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["time", "value", "qc"]
    assert [float(v) if v else None for _, v, _ in rows[1:]] == VALUES


def test_two_sensors_of_one_variable_are_never_mixed(client: TestClient, store: SqliteStore) -> None:
    lower = [reading(time=r.time, value=900.0 + i, sensor="gmp252_30cm", unit="ppm")
             for i, r in enumerate(series("st1", VALUES))]
    store.write(stored("site1", lower))
    params = {"station": "st1", "variable": "CO2", "start": START, "end": END}

    ambiguous = client.get("/api/v1/series", params=params)
    chosen = client.get("/api/v1/series", params={**params, "sensor": "gmp252_30cm"})
    other = client.get("/api/v1/series", params={**params, "sensor": "gmp252", "every": "1h", "aggregate": "count"})

    assert ambiguous.status_code == 422
    [error] = ambiguous.json()["detail"]
    assert error["loc"] == ["query", "sensor"]
    assert "gmp252, gmp252_30cm" in error["msg"] and "add sensor=" in error["msg"]
    assert chosen.status_code == 200
    assert [p["value"] for p in chosen.json()["points"]] == [r.value for r in lower]
    assert (chosen.json()["sensor"], chosen.json()["unit"]) == ("gmp252_30cm", "ppm")
    assert other.json()["points"][0]["value"] == sum(v is not None for v in VALUES)
    # a window where only one of them reported needs no sensor
    store.write(stored("site1", [reading(time=T0 + timedelta(hours=2), value=1.0)]))
    later = client.get("/api/v1/series", params={**params, "start": format_time(T0 + timedelta(hours=2)),
                                                 "end": format_time(T0 + timedelta(hours=3))})
    assert [p["value"] for p in later.json()["points"]] == [1.0]


def test_one_station_id_at_two_sites_needs_the_site(client: TestClient, store: SqliteStore) -> None:
    store.write(stored("site2", series("st1", [7.0])))
    params = {"station": "st1", "variable": "CO2", "start": START, "end": END}

    ambiguous = client.get("/api/v1/series", params=params)
    chosen = client.get("/api/v1/series", params={**params, "site": "site2"})

    assert ambiguous.status_code == 422
    assert ambiguous.json()["detail"][0]["loc"] == ["query", "site"]
    assert [p["value"] for p in chosen.json()["points"]] == [7.0]
    assert chosen.json()["site"] == "site2"


def test_unknown_station_is_404_naming_the_stations_the_store_holds(client: TestClient) -> None:
    response = client.get("/api/v1/series", params={"station": "' OR 1=1", "variable": "CO2", "start": START,
                                                    "end": END})
    assert response.status_code == 404
    assert response.json()["detail"].startswith("station \"' OR 1=1\" is not in the store")
    assert "stations: st1 " in response.json()["detail"]


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"station": "ST1"}, "station 'ST1' is not in the store (nothing of it was ever stored); did you "
                             "mean station=st1?"),
        ({"variable": "co2"}, "station 'st1' never reported variable 'co2'; did you mean variable=CO2? Its "
                              "variables: CO2 "),
        ({"variable": "NEE"}, "station 'st1' never reported variable 'NEE'; its variables: CO2 "),
        ({"sensor": "gmp343"}, "sensor 'gmp343' of station 'st1' never reported CO2; the sensors that did: gmp252"),
        ({"site": "site9"}, "station 'st1' has no readings at site 'site9'; its sites: site1"),
    ],
)
def test_a_series_the_store_never_held_is_404_naming_what_it_holds(
    client: TestClient, overrides: dict[str, str], expected: str
) -> None:
    params = {"station": "st1", "variable": "CO2", "start": START, "end": END, **overrides}
    response = client.get("/api/v1/series", params=params)
    assert response.status_code == 404
    assert response.json()["detail"].startswith(expected)


def test_a_variable_without_its_position_qualifier_names_the_qualified_ones(
    client: TestClient, store: SqliteStore
) -> None:
    store.write(stored("site1", series("st1", [20.5], variable="TA_1_1_1") + series("st1", [19.0], variable="TA_1_2_1")
                       + series("st1", [3.0], variable="TAU")))
    response = client.get("/api/v1/series", params={"station": "st1", "variable": "ta", "start": START, "end": END})
    assert response.status_code == 404
    assert response.json()["detail"] == ("station 'st1' never reported variable 'ta'; it reports it with its position "
                                         "qualifier _H_V_R: TA_1_1_1, TA_1_2_1; e.g. variable=TA_1_1_1")


def test_a_known_series_without_readings_in_the_range_is_200_with_no_points(client: TestClient) -> None:
    later = format_time(T0 + timedelta(days=30))
    response = client.get("/api/v1/series", params={"station": "st1", "variable": "CO2", "start": END, "end": later})
    assert response.status_code == 200
    assert response.json()["points"] == []


@pytest.mark.parametrize(
    "params, loc, expected",
    [
        ({"station": "st1", "variable": "CO2", "start": START, "end": END, "format": "xml"}, ["query", "format"],
         "format='xml' is invalid; it should be 'json' or 'csv'"),
        ({"station": "st1", "variable": "CO2", "start": START, "end": END, "every": "1h", "aggregate": "median"},
         ["query", "aggregate"], "aggregate='median' is invalid; it should be 'mean', 'min', 'max', 'count' or"),
        ({"station": "st1", "start": START, "end": END}, ["query", "variable"],
         "variable is required: variable name, e.g. CO2"),
    ],
)
def test_fastapi_validation_errors_name_the_parameter_the_value_and_the_fix(
    client: TestClient, params: dict[str, str], loc: list[str], expected: str
) -> None:
    response = client.get("/api/v1/series", params=params)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == loc
    assert error["msg"] == expected or error["msg"].startswith(expected)
    assert set(error) == {"loc", "msg", "type"}  # the shape of our own parameter errors, no pydantic internals


def test_a_request_body_that_is_not_json_says_so(client: TestClient) -> None:
    response = client.post("/api/v1/tokens", content=b"{bad", headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"].startswith("the request body is not valid JSON (")


@pytest.mark.parametrize(
    "overrides, parameter, hint",
    [
        ({"end": START, "start": END}, "end", "must be after start"),
        ({"every": "5 minutes"}, "every", "e.g. 30m"),
        ({"start": "2026-11-25T10:00:00"}, "start", "append Z"),
        ({"end": "2026-11-25T12:00:00 01:00"}, "end", "%2B"),
        ({"aggregate": "median", "every": "1m"}, "aggregate", "'mean'"),
        ({"aggregate": "mean"}, "aggregate", "needs every"),
        ({"format": "xml"}, "format", "'csv'"),
    ],
)
def test_parameter_errors_name_the_parameter_and_the_fix(
    client: TestClient, overrides: dict[str, str], parameter: str, hint: str
) -> None:
    params = {"station": "st1", "variable": "CO2", "start": START, "end": END, **overrides}

    response = client.get("/api/v1/series", params=params)

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", parameter]
    assert hint in error["msg"]


def test_missing_required_parameter_is_named(client: TestClient) -> None:
    response = client.get("/api/v1/series", params={"station": "st1", "variable": "CO2", "start": START})
    assert response.status_code == 422
    assert ["query", "end"] in [e["loc"] for e in response.json()["detail"]]


def test_a_range_of_many_chunks_is_streamed_whole(client: TestClient, store: SqliteStore) -> None:
    # more points than several of the stores' chunks, where the API used to refuse past a limit (issue 13)
    count = 3 * CHUNK_ROWS + 7
    values: list[float | None] = [None if i % 1000 == 3 else 400.0 + i / 7 for i in range(count)]
    store.write(stored("site1", series("st3", values, step=timedelta(seconds=1))))
    params = {"station": "st3", "variable": "CO2", "start": START,
              "end": format_time(T0 + timedelta(seconds=count))}

    as_json = client.get("/api/v1/series", params=params)
    as_csv = client.get("/api/v1/series", params={**params, "format": "csv"})
    hourly = client.get("/api/v1/series", params={**params, "every": "1h", "aggregate": "count"})

    assert as_json.status_code == 200 and as_json.headers["content-type"] == "application/json"
    points = as_json.json()["points"]
    assert [p["value"] for p in points] == values
    assert [p["time"] for p in points] == [format_time(T0 + timedelta(seconds=i)) for i in range(count)]
    rows = list(csv.reader(io.StringIO(as_csv.text)))[1:]
    assert [float(v) if v else None for _, v, _ in rows] == values
    per_hour = [float(sum(v is not None for v in values[h:h + 3600])) for h in range(0, count, 3600)]
    assert [p["value"] for p in hourly.json()["points"]] == per_hour


def test_stations_merge_store_and_status(client: TestClient) -> None:
    response = client.get("/api/v1/stations")

    assert response.status_code == 200
    assert response.json() == [
        {"site": "site1", "station": "st1", "last_reading": format_time(series("st1", VALUES)[-1].time),
         "variables": {"CO2": "umol mol-1"}, "sensors": {"gmp252": {"CO2": "umol mol-1"}}, "state": "unknown",
         "state_since": None},
        {"site": "site2", "station": "st9", "last_reading": None, "variables": {}, "sensors": {}, "state": "offline",
         "state_since": START},
    ]


def test_health_reports_ok_and_counters(client: TestClient) -> None:
    body = client.get("/api/v1/health").json()
    assert body == {"status": "ok", "storage_reachable": True, "mqtt_connected": True, "auth": "development",
                    "counters": {"batches_stored": 3, "security": {"mode": "development", "auth_failures": {},
                                                                   "storage_tls": None}}}


class DownStore(SqliteStore):
    def query_series(self, *args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("InfluxDB at http://db:8086 unreachable")

    def series_sources(self, *args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("InfluxDB at http://db:8086 unreachable")

    def stations(self) -> Any:
        raise StoreUnavailable("InfluxDB at http://db:8086 unreachable")

    def ping(self) -> bool:
        return False


def test_storage_down_gives_503_and_degraded_health(tmp_path: Path) -> None:
    store = DownStore(tmp_path / "down.sqlite")
    with TestClient(create_app(store, FakeIngest({}, connected=False), access=DEV)) as client:
        series_response = client.get("/api/v1/series", params={"station": "st1", "variable": "CO2", "start": START,
                                                               "end": END})
        stations_response = client.get("/api/v1/stations")
        health = client.get("/api/v1/health").json()
    store.close()

    assert series_response.status_code == 503
    assert "storage unavailable: InfluxDB at http://db:8086 unreachable" in series_response.json()["detail"]
    assert stations_response.status_code == 503
    assert (health["status"], health["storage_reachable"], health["mqtt_connected"]) == ("degraded", False, False)


def test_openapi_documents_the_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/v1/health", "/api/v1/stations", "/api/v1/series"} <= set(paths)
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize("path, query, parameter", [
    ("/api/v1/series", f"station=st1&station=st2&variable=CO2&start={START}&end={END}", "station"),
    ("/api/v1/series", f"station=st1&variable=CO2&variable=TS&start={START}&end={END}", "variable"),
    ("/api/v1/series", f"station=st1&variable=CO2&start={START}&end={END}&end={END}", "end"),
    ("/api/v1/fluxes", f"station=st1&start={START}&end={END}&variables=FC&variables=H", "variables"),
    ("/api/v1/stations/st1/health", "site=a&site=b", "site"),
])
def test_a_parameter_given_twice_is_refused_naming_it(client: TestClient, path: str, query: str,
                                                      parameter: str) -> None:
    """Hostile inputs by hand (docs/reliability.md): the last one was taken silently (a series of st2 for a client
    that asked for st1 first)."""
    response = client.get(f"{path}?{query}")

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", parameter]
    assert f"parameter {parameter} is given 2 times" in error["msg"] and "give it once" in error["msg"]


@pytest.mark.parametrize("path, query, given, meant", [
    ("/api/v1/series", f"station=st1&variable=CO2&start={START}&end={END}&every=1h&agg=max", "agg", "aggregate"),
    ("/api/v1/series", f"station=st1&variable=CO2&start={START}&end={END}&fmt=csv", "fmt", None),
    ("/api/v1/series", f"station=st1&var=CO2&start={START}&end={END}", "var", None),
    ("/api/v1/series", f"station=st1&variable=CO2&start={START}&end={END}&limit=2", "limit", None),
    ("/api/v1/fluxes", f"station=st1&start={START}&end={END}&variable=FC", "variable", "variables"),
    ("/api/v1/stations", "station=st1", "station", None),
])
def test_a_parameter_the_route_does_not_take_is_refused_naming_it(client: TestClient, path: str, query: str,
                                                                  given: str, meant: str | None) -> None:
    """First-day walkthrough (docs/reliability.md): FastAPI ignored it, so `agg=max` was answered with hourly means,
    `fmt=csv` with JSON, `limit=2` with every point and `variable=FC` of /fluxes with every variable, all 200."""
    response = client.get(f"{path}?{query}")

    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", given]
    assert f"{path} has no parameter {given!r}" in error["msg"] and "/docs" in error["msg"]
    if meant is not None:
        assert f"did you mean {meant}?" in error["msg"]
    if path == "/api/v1/stations":
        assert error["msg"] == ("/api/v1/stations has no parameter 'station' (it takes no query parameters; /docs "
                                "describes each)")
    else:
        assert "it takes " in error["msg"] and "start" in error["msg"]


def test_parameters_given_once_each_are_served(client: TestClient) -> None:
    response = client.get(f"/api/v1/series?station=st1&variable=CO2&start={START}&end={END}&sensor=gmp252")
    assert response.status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/stations/..%2F..%2Fetc/health", "/api/v1/stations/st1%2Fx/health",
                                  "/api/v1/nothing"])
def test_a_path_no_route_serves_is_404_naming_the_path_and_where_the_routes_are(client: TestClient,
                                                                                 path: str) -> None:
    """Hostile inputs by hand (docs/reliability.md): the answer was a bare "Not Found"."""
    response = client.get(path)

    assert response.status_code == 404
    detail = response.json()["detail"]
    assert "no route GET '/api/v1/" in detail and "/docs" in detail and "%2F" in detail


def test_a_parameter_longer_than_any_the_api_takes_is_refused_without_echoing_it(client: TestClient) -> None:
    """Hostile inputs by hand (docs/reliability.md): a 20,000-character sensor name came back whole in the 404."""
    response = client.get("/api/v1/series", params={"station": "st1", "variable": "CO2", "start": START, "end": END,
                                                    "sensor": "x" * 20000})

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", "sensor"]
    assert "parameter sensor is 20000 characters long, at most 256" in error["msg"]
    assert len(response.content) < 400
