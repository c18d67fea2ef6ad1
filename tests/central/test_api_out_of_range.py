"""The 13 requests that answered 500 in the bad-input run of issue 8 (finding 6): times outside the range a store
can hold, zone offsets that overflow the calendar, a window of 999999999 days. Each is now a 422 naming the
parameter and the way to fix it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.central.access import AccessControl
from gateway.central.api import create_app
from gateway.central.store.sqlite import SqliteStore

from .helpers import flux_record, series, stored

# these tests are about data, not access: the API is built in development mode, explicitly
DEV = AccessControl.development()

GOOD_START, GOOD_END = "2026-11-25T00:00:00Z", "2026-11-26T00:00:00Z"

CASES = [
    ("/api/v1/series", "start", "1600-01-01T00:00:00Z", {}),
    ("/api/v1/series", "start", "0001-01-01T00:00:00Z", {}),
    ("/api/v1/series", "end", "9999-12-31T23:59:59Z", {}),
    ("/api/v1/series", "end", "2300-01-01T00:00:00Z", {}),
    ("/api/v1/series", "end", "9999-12-31T23:59:59-23:59", {}),
    ("/api/v1/series", "start", "0001-01-01T00:00:00+23:59", {}),
    ("/api/v1/series", "end", "9999-12-31T23:59:59.999999Z", {"every": "1d"}),
    ("/api/v1/series", "every", "999999999d", {}),
    ("/api/v1/fluxes", "start", "1600-01-01T00:00:00Z", {}),
    ("/api/v1/fluxes", "start", "0001-01-01T00:00:00Z", {}),
    ("/api/v1/fluxes", "end", "9999-12-31T23:59:59Z", {}),
    ("/api/v1/fluxes", "end", "2300-01-01T00:00:00Z", {}),
    ("/api/v1/fluxes", "end", "9999-12-31T23:59:59-23:59", {}),
]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    store = SqliteStore(tmp_path / "api.sqlite")
    store.write(stored("site1", series("st1", [1.0, 2.0, None, 4.0])))
    store.write_fluxes([flux_record("st1")])
    with TestClient(create_app(store, access=DEV)) as test_client:
        yield test_client
    store.close()


@pytest.mark.parametrize("path, parameter, value, extra", CASES,
                         ids=[f"{c[0].rsplit('/', 1)[1]}-{c[1]}={c[2]}" for c in CASES])
def test_out_of_range_parameter_is_a_422_naming_it_and_the_fix(client: TestClient, path: str, parameter: str,
                                                               value: str, extra: dict[str, str]) -> None:
    params = {"station": "st1", "start": GOOD_START, "end": GOOD_END, **extra, parameter: value}
    if path.endswith("/series"):
        params["variable"] = "CO2"
    response = client.get(path, params=params)
    assert response.status_code == 422, response.text
    (detail,) = response.json()["detail"]
    assert detail["loc"] == ["query", parameter]
    fix = "use a shorter window" if parameter == "every" else "use a time within it, e.g. 2026-11-25T10:00:00Z"
    assert fix in detail["msg"] and value in detail["msg"]


def test_the_edges_of_the_range_are_still_accepted(client: TestClient) -> None:
    response = client.get("/api/v1/series", params={"station": "st1", "variable": "CO2",
                                                    "start": "1677-09-21T00:12:44Z", "end": "2262-04-11T23:47:16Z",
                                                    "every": "36500d"})
    assert response.status_code == 200, response.text
    assert [p["value"] for p in response.json()["points"]] == [pytest.approx(7.0 / 3)]
