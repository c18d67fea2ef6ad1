"""The hourly rollup's job: its setting, a round over a real influxd, a store that fails counted and logged once, and
the job inside `run_central` (a real Mosquitto and influxd) serving hourly reads that equal the readings' own. Waits
are on conditions, never fixed sleeps. The rollup's exactness itself: test_store_rollup_contract.py."""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from gateway.central.config import ApiSettings, CentralConfig, MqttSettings, StorageSettings
from gateway.central.rollup import RollupScheduler
from gateway.central.service import run_central, wait_for
from gateway.central.store import InfluxStore
from gateway.central.store.base import to_ns
from gateway.testing.central import bearer, issue_token
from gateway.testing.services import InfluxInstance, MosquittoInstance

from .helpers import T0, series, stored

HOUR = timedelta(hours=1)
START = T0 - timedelta(days=2)


def test_the_rollup_is_an_influxdb_setting(tmp_path: Path) -> None:
    import yaml

    from gateway.central.config import SAMPLE_CONFIG_PATH

    # off when the key is absent (an existing deployment's history is rolled up only when asked for), on in the
    # sample a new deployment starts from
    assert StorageSettings(kind="influxdb", url="http://127.0.0.1:8086").rollup is False
    sample = yaml.safe_load(SAMPLE_CONFIG_PATH.read_text(encoding="utf-8"))["storage"]
    assert StorageSettings(**{k: v for k, v in sample.items() if v is not None}).rollup is True
    assert StorageSettings(kind="influxdb", url="http://127.0.0.1:8086", rollup=True).rollup_every_s == 600
    with pytest.raises(ValidationError, match=r"storage\.rollup is for storage\.kind influxdb"):
        StorageSettings(kind="sqlite", path=tmp_path / "x.sqlite", rollup=True)


@pytest.mark.integration
def test_a_round_rolls_up_every_station(influxd: InfluxInstance, tmp_path: Path) -> None:
    store = InfluxStore(influxd.url, database="job", write_guard=tmp_path / "guard", rollup_reads=True)
    try:
        for station in ("st1", "st2"):
            store.write(stored("site1", series(station, [float(i) for i in range(3 * 360)], start=START)))
        scheduler = RollupScheduler(store, every_s=3600)

        report = scheduler.run_round()

        assert report is not None and (report.stations, report.hours_rolled) == (2, 6)
        assert scheduler.rounds == 1 and scheduler.failures == 0
        assert scheduler.counters() == {"every_s": 3600, "rounds": 1, "failures": 0,
                                        "last": {"stations": 2, "hours_rolled": 6, "hours_recomputed": 6,
                                                 "marks_cleared": 6, "marks_kept": 0, "mixed": 0,
                                                 "flux": {"stations": 0, "days_packed": 0, "days_repacked": 0,
                                                          "marks_cleared": 0, "marks_kept": 0, "never": 0}}}
        rows = store._query("SELECT count(mean) FROM readings_1h GROUP BY station")
        assert {s["tags"]["station"]: s["values"][0][1] for s in rows} == {"st1": 3, "st2": 3}
    finally:
        store.close()


@pytest.mark.integration
def test_a_store_that_fails_is_counted_and_logged_once(influxd: InfluxInstance, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    store = InfluxStore(influxd.url, database="job", write_guard=tmp_path / "guard")
    scheduler = RollupScheduler(store, every_s=3600)
    influxd.stop()
    try:
        with caplog.at_level(logging.WARNING, logger="gateway.central.rollup"):
            assert scheduler.run_round() is None
            assert scheduler.run_round() is None
        assert scheduler.failures == 2 and scheduler.rounds == 0
        assert len([r for r in caplog.records if "hourly rollup" in r.getMessage()]) == 1
    finally:
        store.close()


@pytest.mark.integration
def test_the_central_service_runs_the_rollup_job(mosquitto: MosquittoInstance, influxd: InfluxInstance,
                                                 tmp_path: Path) -> None:
    # stored as they came in (on the writer's clock nothing is late): no marks, so no round recomputes an hour
    writer = InfluxStore(influxd.url, database="central", clock=lambda: START.timestamp())
    writer.write(stored("site1", series("st1", [0.1 * i for i in range(4 * 360)], start=START)))
    writer.close()
    config = CentralConfig(
        mqtt=MqttSettings(host=mosquitto.host, port=mosquitto.port, client_id=f"central-{uuid.uuid4().hex[:8]}"),
        storage=StorageSettings(kind="influxdb", url=influxd.url, database="central", rollup=True,
                                rollup_every_s=0.2),
        api=ApiSettings(port=0), data_dir=tmp_path / "data",
    )
    stop = threading.Event()
    ports: list[int] = []
    thread = threading.Thread(target=run_central, args=(config,),
                              kwargs={"stop_event": stop, "ready_callback": ports.append})
    thread.start()
    reader = InfluxStore(influxd.url, database="central")
    try:
        assert wait_for(lambda: bool(ports), 10)
        params = {"station": "st1", "variable": "CO2", "start": START.isoformat(),
                  "end": (START + 4 * HOUR).isoformat(), "every": "1h"}
        with httpx.Client(base_url=f"http://127.0.0.1:{ports[0]}", timeout=10,
                          headers=bearer(issue_token(config.data_dir))) as api:
            def rounds() -> int:
                return int(api.get("/api/v1/health").json()["counters"]["rollup"]["rounds"])

            assert wait_for(lambda: rounds() >= 1, 30)
            # a row no reading made: the answer shows it only if the service reads the rollup
            reader._write_body(f"readings_1h,sensor=gmp252,site=site1,station=st1,variable=CO2 mean=12345.5,qc=0i "
                               f"{to_ns(START + HOUR)}")
            body = api.get("/api/v1/series", params=params).json()
            health = api.get("/api/v1/health").json()
        expected = [p.value for p in reader.query_series("st1", "CO2", START, START + 4 * HOUR, HOUR, site="site1",
                                                         sensor="gmp252")]
        assert len(expected) == 4
        assert [p["value"] for p in body["points"]] == [expected[0], 12345.5, *expected[2:]]
        assert health["counters"]["rollup"]["rounds"] >= 1 and health["counters"]["rollup"]["every_s"] == 0.2
    finally:
        stop.set()
        thread.join(30)
        reader.close()
    assert not thread.is_alive()
