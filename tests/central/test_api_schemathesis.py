"""Schemathesis against the served OpenAPI document: whatever a client sends, the API answers without a server
error (no 5xx but the documented 503 for an unreachable store, which these stores never are), and every response
conforms to the document.

A bounded, derandomized run in CI on a SQLite store holding readings and flux records, and the same on a real
InfluxDB (integration); `bench/api_fuzz.py` runs longer and prints the figures recorded in docs/reliability.md.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from gateway.central.access import AccessControl
from gateway.central.api import create_app
from gateway.central.store import StationBudget, StationProduct, Store
from gateway.central.store.influx import InfluxStore
from gateway.central.store.sqlite import SqliteStore
from gateway.testing.central import recording_commands

from .helpers import T0, flux_record, series, stored
from .test_store_budget_contract import run as budget_run
from .test_store_budget_contract import tables as budget_tables
from .test_store_health_contract import report as health_report
from .test_store_products_contract import run as product_run
from .test_store_products_contract import tables as product_tables

# 25 operations x 60 examples take 20-30 s on a quiet 2-core machine and reached the default 120 s on a loaded one
# (a clean-clone run beside other work, 2026-12-06); the timeout is for a hang, not for a slow machine
pytestmark = pytest.mark.timeout(600)

# these tests are about data, not access: the API is built in development mode, explicitly
DEV = AccessControl.development()

EXAMPLES = 60


def seeded(store: Store) -> Store:
    """Readings of two stations, flux records of two result sets, two budget runs, soil and stems runs and health
    reports, so queries find data."""
    store.write(stored("site1", series("st1", [412.5, None, 415.0, 0.1, -3.5])))
    store.write(stored("site1", series("st2", [1.0, 2.0], variable="TS_1_1_1")))
    store.write_fluxes([flux_record("st1", end=T0 + timedelta(minutes=30 * i)) for i in range(1, 4)])
    store.write_fluxes([flux_record("st1", settings_hash="fedcba9876543210")])
    store.write_budget(StationBudget(budget_run(), budget_tables()))
    store.write_budget(StationBudget(budget_run(settings_hash="fedcba9876543210"), budget_tables()))
    store.write_product(StationProduct(product_run(), product_tables()))
    store.write_product(StationProduct(product_run(product="stems"), {"gradient_1": product_tables()["gradient_1"]}))
    store.write_health([health_report(i, station="st1", site="site1") for i in range(3)])
    return store


def run_schemathesis(store: Store, data_dir: Path, examples: int = EXAMPLES) -> dict[str, Any]:
    """Every operation of the served document, `examples` cases each; returns counts of responses by status.
    A server error or a response outside the document fails the test (schemathesis' own assertion). Commands go
    to a recording broker (the command ledger and key are real, in `data_dir`)."""
    commands, _ = recording_commands(data_dir)
    app = create_app(seeded(store), commands=commands, access=DEV)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    statuses: dict[int, int] = {}
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an invalid schema raises here, failing the test
        operations += 1

        @settings(max_examples=examples, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def call(case: Any) -> None:
            response = case.call()
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            case.validate_response(response, checks=[not_a_server_error])

        call()
    return {"operations": operations, "statuses": statuses}


def check_run(result: dict[str, Any]) -> None:
    statuses = result["statuses"]
    assert result["operations"] == 25, result
    assert not [code for code in statuses if code >= 500], statuses
    # the run reached both the data and the validation: some answers, some refusals
    assert statuses.get(200, 0) > 0 and statuses.get(422, 0) > 0, statuses


def test_no_server_error_on_sqlite(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "api.sqlite")
    try:
        check_run(run_schemathesis(store, tmp_path))
    finally:
        store.close()


@pytest.mark.integration
def test_no_server_error_on_influxdb(influxd: Any, tmp_path: Path) -> None:
    store = InfluxStore(influxd.url, database="schemathesis")
    try:
        check_run(run_schemathesis(store, tmp_path, examples=30))
    finally:
        store.close()

