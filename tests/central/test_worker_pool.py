"""`sinkwatch central serve --workers N`: the API in one process, N `sinkwatch central ingest` processes on the
stations' shared subscription; /api/v1/health adds up their counters, and a worker that dies is started again."""

from __future__ import annotations

import os
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from gateway.central.config import load_central_config
from gateway.central.service import wait_for
from gateway.central.workers import WorkerPool
from gateway.contract import StationState, StationStatus, readings_topic, status_topic
from gateway.testing.central import serving
from gateway.testing.services import MosquittoInstance

from .helpers import T0, batch, series

pytestmark = pytest.mark.integration
HOUR_S = timedelta(hours=1)


def health(api: httpx.Client) -> dict[str, Any]:
    return dict(api.get("/api/v1/health").json()["counters"])


def test_serve_with_workers_shares_the_stream_reports_their_counters_and_restarts_one_that_dies(
    tmp_path: Path, mosquitto: MosquittoInstance
) -> None:
    path = tmp_path / "central.yaml"
    path.write_text(yaml.safe_dump({
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "client_id": "central"},
        "storage": {"kind": "sqlite", "path": str(tmp_path / "central.sqlite")},
        "api": {"host": "127.0.0.1", "port": 0},
        "data_dir": str(tmp_path / "central"),
        "trust": {"signatures": "optional"},
    }), encoding="utf-8")
    config = load_central_config(path)
    station = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="st1", protocol=mqtt.MQTTv5)
    station.connect(mosquitto.host, mosquitto.port)
    station.loop_start()
    try:
        with serving(config, workers=WorkerPool(path, config.data_dir, 2)) as api:
            assert wait_for(lambda: [w["mqtt_connected"] for w in health(api)["ingest_workers"]] == [True, True], 30)
            station.publish(status_topic("site1", "st1"), StationStatus(
                site="site1", station="st1", state=StationState.ONLINE, since=T0).model_dump_json(), qos=1, retain=True)
            for seq in range(20):
                station.publish(readings_topic("site1", "st1"), batch("site1", "st1", seq, series(
                    "st1", [float(seq)], start=T0 + seq * HOUR_S)).model_dump_json(), qos=1).wait_for_publish(5)
            # the workers' counters, added up: every batch stored once, by the two of them
            assert wait_for(lambda: health(api).get("batches_stored") == 20, 30), health(api)
            counters = health(api)
            assert counters["readings_stored"] == 20
            assert all(w["messages_received"] > 0 for w in counters["ingest_workers"])  # the stream was shared
            assert api.get("/api/v1/stations").json()[0]["state"] == "online"  # status: the serving process's
            pids = {w["name"]: w["pid"] for w in counters["ingest_workers"]}

            os.kill(pids["w1"], signal.SIGKILL)

            def restarted() -> bool:
                found = {w["name"]: w for w in health(api)["ingest_workers"]}
                return found["w1"]["restarts"] == 1 and found["w1"]["pid"] not in (None, pids["w1"]) \
                    and bool(found["w1"]["mqtt_connected"])
            assert wait_for(restarted, 30), health(api)
    finally:
        station.loop_stop()
        station.disconnect()


