"""Issue 4's end-to-end path: simulated dendrometer voltages and an SDI-12 sensor on the emulated ATmega328P
(the real firmware under simavr) -> firmware_bridge driver in the station daemon -> disk buffer -> Mosquitto ->
central ingestor -> InfluxDB -> HTTP API, with µm values and board timestamps mapped to UTC."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from firmware_bridge.simulator import EmulatedBoard, FirmwareBuild, build_once
from gateway.edge.config import parse_station_config
from gateway.edge.daemon import StationDaemon
from gateway.model import utc_now
from gateway.testing.central import provisioned_key, running_central
from gateway.testing.mqtt import wait_for
from gateway.testing.services import InfluxInstance, MosquittoInstance

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXC_MV = 2500
RANGE_UM = 11000.0  # Ecomatik DR1: 11 mm full range (Ecomatik DR/DC dendrometer manuals)
TWO_COUNTS_UM = 2 * RANGE_UM / (EXC_MV * 1024 / 5000)  # two 10-bit ADC counts at 5 V AVcc, in µm


@pytest.fixture(scope="module")
def firmware_build() -> FirmwareBuild:
    return build_once()


@pytest.fixture
def board(firmware_build: FirmwareBuild) -> Iterator[EmulatedBoard]:
    with EmulatedBoard(firmware_build.harness, firmware_build.elf) as emulated:
        yield emulated


def series(api: httpx.Client, variable: str, sensor_station: str = "tower01") -> list[dict[str, object]]:
    now = utc_now()
    response = api.get("/api/v1/series", params={
        "station": sensor_station, "variable": variable,
        "start": (now - timedelta(hours=1)).isoformat(), "end": (now + timedelta(hours=1)).isoformat()})
    if response.status_code == 404:  # nothing of the station or variable stored yet
        return []
    assert response.status_code == 200, response.text
    points: list[dict[str, object]] = response.json()["points"]
    return points


def test_dendrometer_and_sdi12_through_firmware_station_broker_and_influxdb(
    tmp_path: Path, board: EmulatedBoard, mosquitto: MosquittoInstance, influxd: InfluxInstance
) -> None:
    board.set_voltage(7, EXC_MV)  # excitation reference
    board.set_voltage(0, 1000)  # wiper: 1.000 V of 2.500 V
    board.set_sdi12("0", "+2009.87+22.3+112")
    station = parse_station_config({
        "site": "hainich", "station": "tower01",
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
        "buffer": {"path": str(tmp_path / "buffer.sqlite"), "publish_interval_s": 0.2},
        "signing_key": str(provisioned_key(tmp_path / "central", "hainich", "tower01", tmp_path / "station.key")),
        "sensors": [{"name": "dendro", "driver": "firmware_bridge", "port": board.port, "interval_s": 0.5,
                     "sample_interval_ms": 200,
                     "analog": [{"channel": 0, "model": "ecomatik_dr1", "reference_um": 0.0}],
                     "sdi12": [{"address": "0", "model": "teros12"}]}],
    })
    with running_central(mosquitto, influxd, tmp_path / "central") as api:
        daemon = StationDaemon(station)
        stop = threading.Event()
        started = datetime.now().astimezone()
        thread = threading.Thread(target=daemon.run, args=(stop,), daemon=True)
        thread.start()
        time.sleep(2.0)
        board.set_voltage(0, 1100)  # the stem swells: +0.1 V = +440 µm of radius
        time.sleep(2.0)
        stop.set()
        thread.join(timeout=30)
        ended = datetime.now().astimezone()
        read = sum(r.health.readings for r in daemon.runners)
        assert read > 0
        assert daemon.delivery.counters("readings").confirmed_units == read
        assert wait_for(lambda: sum(len(series(api, v)) for v in ("STEM_RAD_CHG", "SWC", "TS", "EC_SOIL")) >= read,
                        timeout=30)
        radius = series(api, "STEM_RAD_CHG")
        values = [float(str(p["value"])) for p in radius]
        assert values[0] == pytest.approx(1000 / EXC_MV * RANGE_UM, abs=TWO_COUNTS_UM)
        assert values[-1] == pytest.approx(1100 / EXC_MV * RANGE_UM, abs=TWO_COUNTS_UM)
        times = [datetime.fromisoformat(str(p["time"])) for p in radius]
        # board timestamps mapped to UTC land inside the wall-clock window of the run, strictly increasing
        assert started - timedelta(seconds=1) <= times[0] and times[-1] <= ended
        assert times == sorted(times) and len(set(times)) == len(times)
        soil_t = series(api, "TS")
        assert soil_t and all(p["value"] == 22.3 for p in soil_t)
        stations = api.get("/api/v1/stations").json()
        assert any(s["station"] == "tower01" and "STEM_RAD_CHG" in s["variables"] for s in stations)
