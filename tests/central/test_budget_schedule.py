"""The budget schedule (`budget.every`): rounds at a short interval over a real store, a station that cannot give a
budget counted and logged once, new data picked up by the next round, and the schedule inside `run_central` with
a real Mosquitto, served at /api/v1/budget. Waits are on conditions, never fixed sleeps."""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from gateway.central.budget import BudgetScheduler, years_due
from gateway.central.config import ApiSettings, CentralConfig, MqttSettings, StorageSettings
from gateway.central.service import run_central, wait_for
from gateway.central.store import SqliteStore
from gateway.simulation.fluxyear import synthetic_year
from gateway.testing.central import bearer, issue_token
from gateway.testing.services import MosquittoInstance

from .budget_helpers import STATION, YEAR, after, fill_store, first_days, job, simulated_year


@pytest.mark.parametrize("now, offset, days, expected", [
    (datetime(2025, 6, 1, tzinfo=UTC), 1.0, 31, [2025]),
    (datetime(2025, 1, 10, tzinfo=UTC), 1.0, 31, [2024, 2025]),
    (datetime(2025, 1, 10, tzinfo=UTC), 1.0, 0, [2025]),
    (datetime(2024, 12, 31, 23, 30, tzinfo=UTC), 1.0, 31, [2025 - 1, 2025]),  # already 2025 on a UTC+1 clock
    (datetime(2025, 1, 1, 0, 30, tzinfo=UTC), -5.0, 0, [2024]),  # still 2024 at UTC-5
])
def test_years_due_follow_the_station_clock(now: datetime, offset: float, days: int, expected: list[int]) -> None:
    assert years_due(now, offset, days) == expected


def test_rounds_compute_every_station_and_pick_up_new_data(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "central.sqlite")
    year = simulated_year()
    fill_store(store, first_days(year, 20))
    clock = [after(first_days(year, 20))]
    scheduler = BudgetScheduler(store, job(every="1s", stations=[STATION, "ghost"], previous_year_days=0),
                                clock=lambda: clock[0])
    caplog.set_level(logging.WARNING, logger="gateway.central.budget")
    scheduler.start()
    try:
        assert wait_for(lambda: len(store.budget_runs(STATION, YEAR)) == 1, 30)
        (first,) = store.budget_runs(STATION, YEAR)
        assert first.last_end == after(first_days(year, 20), hours=0)
        # the next days arrive; a later round extends the same run
        fill_store(store, first_days(year, 10, skip_days=20))
        clock[0] = after(first_days(year, 30))
        assert wait_for(lambda: store.budget_runs(STATION, YEAR)[0].last_end == after(first_days(year, 30), 0), 30)
        assert wait_for(lambda: scheduler.counters()["rounds"] >= 3, 30)
    finally:
        scheduler.stop()
    counters = scheduler.counters()
    ghost = counters["stations"][f"ghost/{YEAR}"]
    assert ghost["runs_failed"] >= 3 and ghost["runs_ok"] == 0 and "no flux records" in ghost["last_error"]
    assert counters["stations"][f"{STATION}/{YEAR}"]["runs_ok"] >= 2
    assert counters["stations"][f"{STATION}/{YEAR}"]["last_error"] is None
    assert len(store.budget_runs(STATION)) == 1  # replaced, never piled up
    # a failure that repeats is logged once, not every round
    assert sum("ghost" in r.getMessage() for r in caplog.records) == 1
    store.close()


def test_a_schedule_needs_an_interval() -> None:
    with pytest.raises(ValueError, match=r"budget\.every"):
        BudgetScheduler(SqliteStore(":memory:"), job())


@pytest.mark.integration
def test_the_central_service_runs_the_schedule_and_serves_the_budget(mosquitto: MosquittoInstance,
                                                                      tmp_path: Path) -> None:
    last_year = datetime.now(UTC).year - 1
    data = synthetic_year(last_year, seed=5)
    store = SqliteStore(tmp_path / "central.sqlite")
    fill_store(store, first_days(data, 20))
    store.close()
    settings = job(every="1s", stations="all", previous_year_days=366)
    config = CentralConfig(
        mqtt=MqttSettings(host=mosquitto.host, port=mosquitto.port, client_id=f"central-{uuid.uuid4().hex[:8]}"),
        storage=StorageSettings(kind="sqlite", path=tmp_path / "central.sqlite"),
        api=ApiSettings(port=0), data_dir=tmp_path / "data", budget=settings,
    )
    stop = threading.Event()
    ports: list[int] = []
    thread = threading.Thread(target=run_central, args=(config,),
                              kwargs={"stop_event": stop, "ready_callback": ports.append})
    thread.start()
    try:
        assert wait_for(lambda: bool(ports), 10)
        with httpx.Client(base_url=f"http://127.0.0.1:{ports[0]}", timeout=10,
                          headers=bearer(issue_token(config.data_dir))) as api:
            params: dict[str, str | int] = {"station": STATION, "year": last_year}
            assert wait_for(lambda: api.get("/api/v1/budget", params=params).status_code == 200, 60)
            body = api.get("/api/v1/budget", params=params).json()
            health = api.get("/api/v1/health").json()
        assert body["running_total"] is True and len(body["rows"]) == 1
        assert body["last_end"].startswith(f"{last_year}-01-20T23:00:00")
        assert health["counters"]["budget"]["every_s"] == 1.0
        assert health["counters"]["budget"]["stations"][f"{STATION}/{last_year}"]["runs_ok"] >= 1
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()


def test_station_year_in_the_future_of_the_clock_is_not_due() -> None:
    # the schedule never asks for a year the station's clock has not reached
    now = datetime(2025, 12, 31, 22, 59, tzinfo=UTC)
    assert years_due(now, 1.0, 0) == [2025]
    assert years_due(now + timedelta(minutes=2), 1.0, 0) == [2026]
