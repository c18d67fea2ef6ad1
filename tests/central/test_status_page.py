"""The central service's status page at / (gateway/central/statuspage.py): what it shows from a store holding two
stations' health, readings, fluxes, a budget run and alerts; that it escapes what stations send; and, in Debian's
headless chromium, that it loads and stays live without a console message, keeping a screenshot as an artefact
(test-artifacts/status-page.png, ignored by git)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.central.access import AccessControl
from gateway.central.alerts import AlertEvaluator
from gateway.central.alerts_config import AlertsConfig
from gateway.central.api import create_app
from gateway.central.config import CentralConfig
from gateway.central.service import run_central
from gateway.central.statuspage import CSP
from gateway.central.store import SqliteStore, StationBudget
from gateway.contract import ChannelBacklog, SensorHealth, StationHealth
from gateway.model import QualityFlag, Reading, TimeSource, utc_now
from gateway.net import free_port
from tests.report.browser import open_url

from .helpers import flux_record, stored
from .test_store_budget_contract import run as budget_run
from .test_store_budget_contract import tables as budget_tables

ARTEFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SITE = "hainich"


def seed(store: SqliteStore) -> None:
    """Two stations: plot-07 healthy with CO2 and TA series, fluxes of every flag and a budget; plot-08 silent
    for an hour, its clock unsynchronised and a sensor that says something hostile."""
    now = utc_now().replace(microsecond=0)
    sensors = [SensorHealth(name="gmp252", driver="gmp252", kind="polled", state="available", available=True,
                            availability=1.0, variables=["CO2_1_1_1"]),
               SensorHealth(name="hmp155", driver="hmp155", kind="polled", state="available", available=True,
                            availability=0.98, errors={"timeout": 3}, variables=["TA_1_1_1"])]
    common: dict[str, Any] = {"site": SITE, "interval_s": 60.0, "daemon_version": "0.1.0", "uptime_s": 7200.0,
              "disk_free_bytes": 20_000_000_000, "disk_total_bytes": 32_000_000_000, "cpu_temperature_c": 51.5,
              "load_1m": 0.4}
    store.write_health([
        StationHealth(station="plot-07", time=now - timedelta(seconds=20), clock_synced=True, clock_offset_s=0.0002,
                      buffers=[ChannelBacklog(channel="readings", unit="readings", pending=17, oldest_age_s=1.5)],
                      sensors=sensors, **common),
        StationHealth(station="plot-08", time=now - timedelta(hours=1), clock_synced=False,
                      sensors=[SensorHealth(name="soil", driver="soilprobe", kind="polled", state="unavailable",
                                            available=False, errors={"no_port": 12},
                                            last_error="<script>alert('x')</script> port gone")], **common),
    ])
    readings = []
    for i in range(360):
        t = now - timedelta(minutes=360 - i)
        readings.append(Reading(station="plot-07", sensor="gmp252", variable="CO2_1_1_1", value=1800.0 + 50 * (i % 60),
                                unit="umol mol-1", time=t, time_source=TimeSource.GATEWAY, clock_synced=True,
                                qc=QualityFlag.GOOD))
        readings.append(Reading(station="plot-07", sensor="hmp155", variable="TA_1_1_1", value=5.0 + i / 60,
                                unit="degC", time=t, time_source=TimeSource.GATEWAY, clock_synced=True,
                                qc=QualityFlag.GOOD))
    store.write(stored(SITE, readings))
    store.write_fluxes([flux_record("plot-07", site=SITE, end=now - timedelta(minutes=30 * i),
                                    values={"FC": -5.0 + i / 10, "FC_SSITC_TEST": i % 3 if i % 7 else None})
                        for i in range(1, 100)])
    store.write_budget(StationBudget(budget_run(station="plot-07", site=SITE), budget_tables()))


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[SqliteStore]:
    store = SqliteStore(tmp_path / "central.sqlite")
    seed(store)
    yield store
    store.close()


def test_the_page_shows_stations_alerts_series_fluxes_and_budget(seeded: SqliteStore) -> None:
    evaluator = AlertEvaluator(seeded, AlertsConfig())
    evaluator.evaluate()
    client = TestClient(create_app(seeded, alerts=evaluator, access=AccessControl.development()))
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-security-policy"] == CSP
    page = response.text
    assert "hainich/plot-07" in page and "hainich/plot-08" in page
    # plot-08 is silent and unsynchronised: listed first among alerts, its row marked, and chosen for detail
    assert re.search(r"station_silent</td><td>hainich/plot-08", page)
    assert re.search(r"clock_unsynchronised</td><td>hainich/plot-08", page)
    assert 'id="detail">hainich/plot-08<' in page
    # what a station sends is escaped, never markup
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    detail = client.get("/", params={"station": "plot-07"}).text
    assert 'id="detail">hainich/plot-07<' in detail
    assert detail.count('<polyline class="series"') >= 3  # CO2, TA and the cumulative NEE
    flags = {c: detail.count(f'class="flux {c}"') for c in ("q0", "q1", "q2", "qn")}
    assert all(flags.values()), flags  # every flag and the periods without one, each in its colour
    assert "running total" in detail or "the whole year" in detail
    assert "-131.7" in detail  # the annual NEE of the stored run (tests/central/test_store_budget_contract.py)
    fragment = client.get("/status/main", params={"station": "plot-07"}).text
    assert fragment.startswith('<p class="summary">') and "<html" not in fragment
    assert client.get("/static/status.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/nothing.js").status_code == 404
    assert "/" not in client.get("/openapi.json").json()["paths"]  # a page for people, not part of the API


def test_an_empty_store_says_so(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "empty.sqlite")
    page = TestClient(create_app(store, access=AccessControl.development())).get("/").text
    store.close()
    assert "no station has reported its health yet" in page and "No alert is firing." in page


@pytest.mark.integration
def test_the_page_in_chromium_loads_without_console_messages_and_stays_live(seeded: SqliteStore,
                                                                            tmp_path: Path) -> None:
    config = CentralConfig.model_validate({
        "mqtt": {"host": "127.0.0.1", "port": free_port()},  # no broker: the page needs none
        "storage": {"kind": "sqlite", "path": str(tmp_path / "unused.sqlite")},
        # a site that opens its status page to its own network (by default it asks for an operator's token)
        "api": {"host": "127.0.0.1", "port": 0, "status_page": "public"}, "data_dir": str(tmp_path / "central")})
    stop, ready, bound = threading.Event(), threading.Event(), []

    def on_ready(port: int) -> None:
        bound.append(port)
        ready.set()

    server = threading.Thread(target=run_central, args=(config,),
                              kwargs={"stop_event": stop, "ready_callback": on_ready, "store": seeded})
    server.start()
    try:
        assert ready.wait(30)
        url = f"http://127.0.0.1:{bound[0]}/?station=plot-07"  # the station with series, fluxes and a budget
        shot = ARTEFACTS / "status-page.png"
        # 20 s of the page's own time: status.js refreshes <main> (every 15 s) at least once
        load = open_url(url, virtual_time_ms=20_000, screenshot=shot)
    finally:
        stop.set()
        server.join(30)
    assert load.returncode == 0
    assert load.console == []
    assert "hainich/plot-07" in load.dom and "hainich/plot-08" in load.dom
    assert 'id="detail">hainich/plot-07<' in load.dom and 'class="flux q2"' in load.dom
    assert re.search(r'<body data-updated="\d{4}-', load.dom), "status.js did not refresh <main>"
    assert shot.stat().st_size > 20_000  # a real rendering, kept as the artefact
