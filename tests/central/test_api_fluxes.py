"""GET /api/v1/fluxes and /api/v1/fluxes/sets over a SqliteStore: JSON, CSV, AmeriFlux, parameter errors."""

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
from gateway.central.store.reads import FluxRow
from gateway.contract import FluxRecord
from gateway.flux.files import write_ameriflux_csv
from gateway.flux.records import flux_result_of
from gateway.model import format_time

from .helpers import T0, flux_record, reading, stored

# these tests are about data, not access: the API is built in development mode, explicitly
DEV = AccessControl.development()

HASH_A, HASH_B = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"
START, END = format_time(T0), format_time(T0 + timedelta(hours=1))
RECORDS_A = [
    flux_record(end=T0 + timedelta(minutes=30), settings_hash=HASH_A,
                values={"FC": -12.5, "H": 1 / 3, "LE": None, "FC_SSITC_TEST": 1}),
    flux_record(end=T0 + timedelta(minutes=60), settings_hash=HASH_A,
                values={"FC": -3.25, "H": 150.0, "LE": 80.5, "FC_SSITC_TEST": 0}, status="partial",
                reasons=["h2o: spikes", "co2, lagged"]),
]
RECORD_B = flux_record(end=T0 + timedelta(minutes=30), settings_hash=HASH_B, values={"FC": -11.0, "H": 0.5})


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    store = SqliteStore(tmp_path / "api.sqlite")
    store.write_fluxes([*RECORDS_A, RECORD_B, flux_record("st2")])
    with TestClient(create_app(store, access=DEV)) as instance:
        yield instance
    store.close()


def test_json_returns_every_result_set_ordered_by_period_end(client: TestClient) -> None:
    response = client.get("/api/v1/fluxes", params={"station": "st1", "start": START, "end": END})

    assert response.status_code == 200
    body = response.json()
    records = [FluxRecord.model_validate(r) for r in body["records"]]
    assert records == [RECORDS_A[0], RECORD_B, RECORDS_A[1]]
    assert (body["station"], body["start"], body["end"], body["settings_hash"]) == ("st1", START, END, None)


def test_json_of_one_result_set(client: TestClient) -> None:
    response = client.get("/api/v1/fluxes", params={"station": "st1", "start": START, "end": END,
                                                    "settings_hash": HASH_B})

    assert [FluxRecord.model_validate(r) for r in response.json()["records"]] == [RECORD_B]


def test_csv_has_one_row_per_record_and_exact_values(client: TestClient) -> None:
    response = client.get("/api/v1/fluxes", params={"station": "st1", "start": START, "end": END,
                                                    "settings_hash": HASH_A, "format": "csv"})

    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [(r["end"], r["settings_hash"], r["status"]) for r in rows] == [
        (format_time(x.end), HASH_A, x.status) for x in RECORDS_A]
    assert float(rows[0]["H"]) == 1 / 3
    assert rows[0]["LE"] == "" and rows[1]["LE"] == "80.5"
    assert rows[1]["reasons"] == "h2o: spikes; co2, lagged"


def test_ameriflux_is_base_format_with_missing_as_minus_9999(client: TestClient) -> None:
    response = client.get("/api/v1/fluxes", params={"station": "st1", "start": START, "end": END,
                                                    "settings_hash": HASH_A, "format": "ameriflux"})

    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(response.text)))
    header = rows[0]
    assert header[:2] == ["TIMESTAMP_START", "TIMESTAMP_END"]
    first = dict(zip(header, rows[1], strict=True))
    assert (first["TIMESTAMP_START"], first["TIMESTAMP_END"]) == ("202611251000", "202611251030")
    assert (first["FC"], first["LE"], first["FC_SSITC_TEST"], first["SETTINGS_HASH"]) == ("-12.5", "-9999", "1",
                                                                                        HASH_A)
    assert len(rows) == 3


def test_ameriflux_refuses_mixed_result_sets_and_lists_them(client: TestClient) -> None:
    response = client.get("/api/v1/fluxes", params={"station": "st1", "start": START, "end": END,
                                                    "format": "ameriflux"})

    assert response.status_code == 422
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["query", "settings_hash"]
    assert HASH_A in detail["msg"] and HASH_B in detail["msg"]


def test_ameriflux_of_one_hash_across_an_engine_upgrade(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "upgrade.sqlite")
    ends = [T0 + timedelta(minutes=30 * k) for k in range(1, 7)]
    store.write_fluxes([flux_record(end=e, settings_hash=HASH_A, engine_version="sinkwatch-ec 0.9.0",
                                    values={"FC": -1.0}) for e in ends[:3]])
    store.write_fluxes([flux_record(end=e, settings_hash=HASH_A, engine_version="sinkwatch-ec 0.10.0",
                                    values={"FC": -2.0}) for e in ends[3:]])
    params = {"station": "st1", "start": format_time(T0), "end": format_time(ends[-1]), "settings_hash": HASH_A,
              "format": "ameriflux"}
    try:
        with TestClient(create_app(store, access=DEV)) as client:
            # the station upgraded after its third period: each period has one record, one file
            rows = list(csv.DictReader(io.StringIO(client.get("/api/v1/fluxes", params=params).text)))
            assert [(r["FC"], r["ENGINE"]) for r in rows] == [("-1", "sinkwatch-ec 0.9.0")] * 3 + [
                ("-2", "sinkwatch-ec 0.10.0")] * 3
            # the second period recomputed with the new engine: two records for a period, named, refused
            store.write_fluxes([flux_record(end=ends[1], settings_hash=HASH_A, engine_version="sinkwatch-ec 0.10.0",
                                            values={"FC": -3.0})])
            response = client.get("/api/v1/fluxes", params=params)
            assert response.status_code == 422
            message = response.json()["detail"][0]["msg"]
            assert "two engine versions for the same periods" in message and "sinkwatch-ec 0.9.0 until" in message
            assert "/api/v1/fluxes/sets" in message
    finally:
        store.close()


@pytest.mark.parametrize(
    "params, parameter, hint",
    [
        ({"start": "2026-11-25T10:00:00"}, "start", "append Z"),
        ({"end": "yesterday"}, "end", "RFC 3339"),
        ({"end": START}, "end", "must be after start"),
        ({"settings_hash": "ABC'; DROP"}, "settings_hash", "hex digits"),
        ({"format": "xlsx"}, "format", ""),
        ({"variables": "nee,H"}, "variables", "e.g. variables=NEE,H,LE,FC"),
        ({"variables": ","}, "variables", "FLUXNET names"),
        ({"variables": ",".join(f"V{i}" for i in range(201))}, "variables", "at most 200"),
    ],
)
def test_parameter_errors_name_the_parameter_and_the_fix(client: TestClient, params: dict[str, str],
                                                         parameter: str, hint: str) -> None:
    response = client.get("/api/v1/fluxes", params={"station": "st1", "start": START, "end": END, **params})

    assert response.status_code == 422
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["query", parameter]
    assert hint in detail["msg"]


def test_variables_restrict_each_record_in_the_order_asked(client: TestClient) -> None:
    params = {"station": "st1", "start": START, "end": END, "variables": "LE,FC,NEE"}

    body = client.get("/api/v1/fluxes", params=params).json()
    rows = list(csv.DictReader(io.StringIO(client.get("/api/v1/fluxes", params={**params, "format": "csv"}).text)))

    records = [FluxRecord.model_validate(r) for r in body["records"]]
    assert [(r.settings_hash, list(r.values.items())) for r in records] == [
        (HASH_A, [("LE", None), ("FC", -12.5)]), (HASH_B, [("FC", -11.0)]), (HASH_A, [("LE", 80.5), ("FC", -3.25)])]
    assert [r.status for r in records] == ["ok", "ok", "partial"]
    assert list(rows[0]) == ["start", "end", "site", "station", "engine_version", "settings_hash", "status", "reasons",
                             "LE", "FC"]  # NEE: no record carries it
    assert [(r["LE"], r["FC"]) for r in rows] == [("", "-12.5"), ("", "-11.0"), ("80.5", "-3.25")]


def test_ameriflux_streamed_is_the_file_the_command_writes(client: TestClient) -> None:
    response = client.get("/api/v1/fluxes", params={"station": "st1", "start": START, "end": END,
                                                    "settings_hash": HASH_A, "format": "ameriflux"})

    written = io.StringIO()
    write_ameriflux_csv([flux_result_of(r) for r in RECORDS_A], written)
    assert response.text == written.getvalue()


def test_result_sets_are_listed_per_station(client: TestClient) -> None:
    body = client.get("/api/v1/fluxes/sets", params={"station": "st1"}).json()

    assert [(s["settings_hash"], s["periods"], s["first_end"], s["last_end"]) for s in body] == [
        (HASH_A, 2, format_time(RECORDS_A[0].end), format_time(RECORDS_A[1].end)),
        (HASH_B, 1, format_time(RECORD_B.end), format_time(RECORD_B.end)),
    ]
    unknown = client.get("/api/v1/fluxes/sets", params={"station": "nobody"})
    assert unknown.status_code == 404
    assert unknown.json()["detail"].startswith("station 'nobody' is not in the store")


@pytest.mark.parametrize("format_", ["json", "csv", "ameriflux"])
def test_an_unknown_station_is_404(client: TestClient, format_: str) -> None:
    response = client.get("/api/v1/fluxes", params={"station": "nobody", "start": START, "end": END,
                                                    "format": format_})
    assert response.status_code == 404
    assert response.json()["detail"] == ("station 'nobody' is not in the store (nothing of it was ever stored) "
                                         "(GET /api/v1/stations and /api/v1/station-health list them; names are "
                                         "case-sensitive)")


def test_an_unknown_station_names_the_station_it_likely_means(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "api.sqlite")
    store.write_fluxes(RECORDS_A)
    store.write(stored("site1", [reading("st1")]))
    with TestClient(create_app(store, access=DEV)) as client:
        response = client.get("/api/v1/fluxes", params={"station": "St1", "start": START, "end": END})
    store.close()
    assert response.status_code == 404
    assert "; did you mean station=st1?" in response.json()["detail"]


def test_a_known_station_without_fluxes_in_the_range_is_200_with_no_records(client: TestClient) -> None:
    later = format_time(T0 + timedelta(days=30))
    response = client.get("/api/v1/fluxes", params={"station": "st1", "start": END, "end": later})
    assert response.status_code == 200
    assert response.json()["records"] == []


def test_an_unknown_format_names_the_formats(client: TestClient) -> None:
    response = client.get("/api/v1/fluxes", params={"station": "st1", "start": START, "end": END,
                                                    "format": "netcdf"})
    assert response.status_code == 422
    expected = "format='netcdf' is invalid; it should be 'json', 'csv' or 'ameriflux'"
    assert response.json()["detail"][0]["msg"] == expected


def test_store_outage_is_503(tmp_path: Path) -> None:
    class DownStore(SqliteStore):
        def iter_fluxes(self, *args: Any, **kwargs: Any) -> Iterator[list[FluxRow]]:
            # a generator, as the stores' are: the failure comes with the first chunk, not the call
            raise StoreUnavailable("influxd stopped")
            yield []

    store = DownStore(tmp_path / "down.sqlite")
    with TestClient(create_app(store, access=DEV)) as client:
        response = client.get("/api/v1/fluxes", params={"station": "st1", "start": START, "end": END})
    store.close()

    assert response.status_code == 503
    assert "retry later" in response.json()["detail"]
