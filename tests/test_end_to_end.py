"""The whole chain on real parts: GMP252 simulator on a socat pseudo-terminal -> edge daemon (real pyserial and
Modbus RTU) -> disk buffer -> Mosquitto -> central ingestor -> InfluxDB 1.x -> the HTTP API.

The values the API returns are compared with the simulator's own log of what it served on the wire, so a reading
lost, duplicated or altered anywhere along the chain fails the test.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from drivers.gmp252.simulator import GMP252Simulator
from gateway.contract import READINGS_SUBSCRIPTION, RECEIPTS_SUBSCRIPTION, STATUS_SUBSCRIPTION, Receipt
from gateway.contract.asyncapi import schema_name_for_topic, validate_payload
from gateway.edge.buffer import ReadingBuffer
from gateway.edge.config import MqttConfig, parse_station_config
from gateway.edge.daemon import StationDaemon
from gateway.edge.delivery import Delivery, DeliverySettings
from gateway.edge.outbox import ReadingsOutbox
from gateway.edge.signer import ChainSigner
from gateway.model import utc_now
from gateway.testing.central import provisioned_key, running_central
from gateway.testing.factories import make_readings
from gateway.testing.mqtt import Capture, wait_for
from gateway.testing.serial_pty import socat_pty_pair
from gateway.testing.services import InfluxInstance, MosquittoInstance
from gateway.trust.keys import load_private_key

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STATION = "tower01"


@dataclass
class Chain:
    simulator: GMP252Simulator
    api: httpx.Client
    capture: Capture
    station_stop: threading.Event
    station_thread: threading.Thread
    daemon: StationDaemon

    def stop_station(self) -> None:
        self.station_stop.set()
        self.station_thread.join(timeout=30)
        assert not self.station_thread.is_alive()

    def series(self, variable: str) -> list[dict[str, object]]:
        now = utc_now()
        response = self.api.get("/api/v1/series", params={
            "station": STATION, "variable": variable,
            "start": (now - timedelta(hours=1)).isoformat(), "end": (now + timedelta(hours=1)).isoformat()})
        if response.status_code == 404:  # nothing of the station or variable stored yet
            return []
        assert response.status_code == 200, response.text
        points: list[dict[str, object]] = response.json()["points"]
        return points


@pytest.fixture
def chain(tmp_path: Path, mosquitto: MosquittoInstance, influxd: InfluxInstance) -> Iterator[Chain]:
    with running_central(mosquitto, influxd, tmp_path / "central") as api, \
            socat_pty_pair(tmp_path / "pty") as (sim_end, driver_end), \
            GMP252Simulator(sim_end, seed=7) as simulator:
        capture = Capture(mosquitto.host, mosquitto.port,
                          (READINGS_SUBSCRIPTION, STATUS_SUBSCRIPTION, RECEIPTS_SUBSCRIPTION))
        station = parse_station_config({
            "site": "hainich", "station": STATION,
            "signing_key": str(provisioned_key(tmp_path / "central", "hainich", STATION, tmp_path / "station.key")),
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
            "buffer": {"path": str(tmp_path / "buffer.sqlite"), "batch_size": 7, "publish_interval_s": 0.2},
            "telemetry": {"interval_s": 5},  # the shortest allowed: a second report with the sensor's figures
            "sensors": [{"name": "soil_co2_30cm", "driver": "gmp252", "port": driver_end, "interval_s": 0.1,
                         "variable_suffix": "_1_1_1"}],
        })
        daemon = StationDaemon(station)
        station_stop = threading.Event()
        station_thread = threading.Thread(target=daemon.run, args=(station_stop,), daemon=True)
        station_thread.start()
        try:
            yield Chain(simulator, api, capture, station_stop, station_thread, daemon)
        finally:
            station_stop.set()
            station_thread.join(timeout=30)
            capture.close()


def assert_api_returns_exactly_what_was_served(chain: Chain) -> None:
    served_co2 = chain.simulator.served_co2
    served_t = chain.simulator.served_temperature
    assert len(served_co2) > 5
    assert wait_for(lambda: len(chain.series("CO2_1_1_1")) >= len(served_co2), timeout=30), (
        f"API has {len(chain.series('CO2_1_1_1'))} CO2 points, simulator served {len(served_co2)}")
    co2 = chain.series("CO2_1_1_1")
    temperature = chain.series("T_PROBE_1_1_1")
    assert [p["value"] for p in co2] == served_co2
    assert [p["value"] for p in temperature] == served_t
    assert all(p["qc"] == 0 for p in co2)
    # stored once: one point per timestamp
    assert len({p["time"] for p in co2}) == len(co2)


def test_api_returns_exactly_the_values_the_simulator_served(chain: Chain) -> None:
    time.sleep(2.0)
    chain.stop_station()
    # every reading left the station on a receipt, i.e. after the central service's store had it
    assert chain.daemon.delivery.counters("readings").confirmed_units == 2 * len(chain.simulator.served_co2)
    assert_api_returns_exactly_what_was_served(chain)
    stations = chain.api.get("/api/v1/stations").json()
    assert STATION in str(stations)
    # every payload that crossed the broker matches the published contract
    readings_messages = chain.capture.on("/readings")
    assert readings_messages
    receipts = chain.capture.on("/receipts")
    for message in readings_messages + chain.capture.on("/status") + receipts:
        validate_payload(schema_name_for_topic(message.topic), bytes(message.payload))
    # the receipts named every batch the station sent
    confirmed = {seq for m in receipts for seq in Receipt.model_validate_json(m.payload).stored_seqs()}
    assert {int(seq) for seq in _seqs(readings_messages)} <= confirmed


def test_influxdb_outage_loses_nothing_and_stores_every_reading_once(
    chain: Chain, influxd: InfluxInstance
) -> None:
    time.sleep(1.0)
    influxd.stop()
    served_before_outage = len(chain.simulator.served_co2)
    time.sleep(3.0)  # the station keeps producing and publishing; central cannot store
    assert len(chain.simulator.served_co2) > served_before_outage + 10
    health = chain.api.get("/api/v1/health")
    assert health.json()["status"] != "ok"
    influxd.start()
    time.sleep(1.0)
    chain.stop_station()
    assert_api_returns_exactly_what_was_served(chain)


def _seqs(messages: list[Any]) -> list[int]:
    return [json.loads(m.payload)["seq"] for m in messages]


HEALTH_MEASUREMENTS = {"health", "health_buffers", "health_sensors"}  # health_sensor_errors: only after an error
DASHBOARDS = Path(__file__).resolve().parents[1] / "dashboards"


def _selected_fields(query: str) -> set[str]:
    """The fields a dashboard query aggregates: every quoted name inside an aggregate's parentheses."""
    return set(re.findall(r'\w+\("(\w+)"\)', query))


def test_health_reports_reach_the_api_and_the_dashboards(chain: Chain, influxd: InfluxInstance) -> None:
    """Telemetry's round trip on real parts: the station's reports cross Mosquitto on their own channel, are stored
    in InfluxDB on a receipt, served by the API, and every network and station-health dashboard panel that reads a
    figure the reports have returns the station's rows (the dashboards as Grafana would send them)."""
    # the report at start and one 5 s later, after the sensor has been polled
    assert wait_for(lambda: chain.daemon.delivery.counters("health").confirmed >= 2, timeout=30)
    served = chain.api.get(f"/api/v1/stations/{STATION}/health")
    assert served.status_code == 200, served.text
    report = served.json()["report"]
    assert (report["site"], report["station"]) == ("hainich", STATION)
    assert report["sensors"][0]["name"] == "soil_co2_30cm" and report["uptime_s"] >= 0
    for message in chain.capture.on("/receipts"):  # the contract holds on the wire for health receipts too
        validate_payload(schema_name_for_topic(message.topic), bytes(message.payload))
    # a figure the reports have: a scalar with a value, or a value in any outbox/sensor entry; a panel reading at
    # least one of them must return rows
    has = {name for name, value in report.items() if value is not None and not isinstance(value, list)}
    has |= {name for entry in report["buffers"] + report["sensors"] for name, value in entry.items()
            if value is not None}
    has |= {"errors_total"} if report["sensors"] else set()  # the store's sum of a sensor's errors by kind
    checked: dict[str, int] = {}
    for name in ("sinkwatch-network.json", "sinkwatch-station-health.json"):
        dashboard = json.loads((DASHBOARDS / name).read_text(encoding="utf-8"))
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                query = target.get("query", "")
                source = re.search(r'FROM "(\w+)"', query)
                if source is None or source.group(1) not in HEALTH_MEASUREMENTS or not _selected_fields(query) & has:
                    continue
                sent = (query.replace("$timeFilter", "time > now() - 1h").replace("$__interval", "1m")
                        .replace("$site", "(hainich)").replace("$station", f"({STATION})"))
                response = httpx.post(f"{influxd.url}/query", params={"db": "e2e", "q": sent}, timeout=10)
                result = response.json()["results"][0]
                assert "error" not in result, (sent, result)
                rows = sum(1 for s in result.get("series", []) for row in s["values"] if any(v is not None
                                                                                             for v in row[1:]))
                assert rows > 0, f"{name} {panel['title']!r} {target['refId']}: no rows from the report: {sent}"
                assert all(s.get("tags", {}).get("station", STATION) == STATION for s in result.get("series", []))
                checked[f"{name} {panel['title']}"] = rows
    # the panels an operator looks at first are among those checked, whatever this machine leaves null
    assert {"sinkwatch-network.json Stations: last health report", "sinkwatch-network.json Health reports per 10 min",
            "sinkwatch-network.json Readings waiting on the station", "sinkwatch-station-health.json Disk free",
            "sinkwatch-station-health.json Uptime", "sinkwatch-station-health.json Sensor availability",
            "sinkwatch-station-health.json Sensors now"} <= set(checked)


def run_until_confirmed(buffer: ReadingBuffer, signer: ChainSigner, delivery: Delivery) -> None:
    """Start the delivery, wait until every item it sent is confirmed, then stop and close the station's files."""
    delivery.start()
    try:
        assert delivery.wait_confirmed(60), delivery.health()
    finally:
        delivery.stop()
        signer.close()
        buffer.close()


def test_a_power_cut_that_lost_the_deletes_of_confirmed_batches_only_means_a_resend_stored_once(
    tmp_path: Path, mosquitto: MosquittoInstance, influxd: InfluxInstance
) -> None:
    """The buffer's delete on a receipt is not fsynced on its own (gateway/edge/buffer.py): it becomes durable with
    the file's next commit. A power cut before that commit brings back the state of the file just before the
    deletes: every batch claimed and linked, none deleted. Here that state is a copy of the buffer file taken just
    before the first delete after the last link, and a station restarted on it: it sends those batches again, the same
    seqs and signed bytes, and the central service stores every reading once, confirms them again, and sees no fork
    of the station's chain."""
    central_dir = tmp_path / "central"
    key_path = provisioned_key(central_dir, "hainich", STATION, tmp_path / "station.key")
    t0 = (utc_now() - timedelta(minutes=10)).replace(microsecond=0)
    readings = make_readings(40, start=400.0, station=STATION, t0=t0)
    snapshot = tmp_path / "before-the-deletes.sqlite"
    mqtt = MqttConfig(host=mosquitto.host, port=mosquitto.port, keepalive_s=5)
    settings = DeliverySettings(receipt_timeout_s=30.0, idle_wait_s=0.2)

    def station(path: Path) -> tuple[ReadingBuffer, ChainSigner, Delivery]:
        buffer = ReadingBuffer(path, durable_claims=False)  # as StationDaemon opens a signed station's buffer
        signer = ChainSigner(load_private_key(key_path), path)
        delivery = Delivery("hainich", STATION, mqtt, settings, signer=signer)
        delivery.add_channel(ReadingsOutbox(buffer, "hainich", STATION, batch_size=5))
        return buffer, signer, delivery

    with running_central(mosquitto, influxd, central_dir) as api:
        buffer, signer, delivery = station(tmp_path / "buffer.sqlite")
        buffer.append(readings)
        linked_since_snapshot = [True]
        envelope, ack_ranges = signer.envelope, buffer.ack_ranges

        def linking(channel: str, topic: str, seq: int, payload: bytes) -> str:
            linked_since_snapshot[0] = True
            return envelope(channel, topic, seq, payload)

        def deleting(ranges: Sequence[tuple[int, int]]) -> tuple[int, int]:
            if linked_since_snapshot[0]:  # the first delete after a link: what a power cut now would leave
                with sqlite3.connect(buffer.path) as source, sqlite3.connect(snapshot) as copy:
                    source.backup(copy)
                linked_since_snapshot[0] = False
            return ack_ranges(ranges)

        signer.envelope = linking  # type: ignore[method-assign]
        buffer.ack_ranges = deleting  # type: ignore[method-assign]
        run_until_confirmed(buffer, signer, delivery)
        assert delivery.counters("readings").confirmed_units == 40

        buffer, signer, delivery = station(snapshot)
        lost = buffer.pending_batches()
        assert lost >= 1  # the deletes the cut took: sent again
        run_until_confirmed(buffer, signer, delivery)
        assert delivery.counters("readings").confirmed == lost
        assert signer.payload_changes == 0 and signer.signed == 0  # the same signed items, no new link

        end = t0 + timedelta(minutes=1)
        assert wait_for(lambda: len(_points(api, t0, end)) >= 40, timeout=30)
        points = _points(api, t0, end)
        assert [p["value"] for p in points] == [r.value for r in readings]  # each reading once, in order
        counters = api.get("/api/v1/health").json()["counters"]
        assert counters["readings_stored"] == len(readings)
        assert (counters["duplicate_batches"], counters["duplicate_readings"]) == (lost, 5 * lost)
        assert "fork" not in counters["chain_events"] and "replay" not in counters["chain_events"]


def _points(api: httpx.Client, start: datetime, end: datetime) -> list[dict[str, object]]:
    response = api.get("/api/v1/series", params={"station": STATION, "variable": "CO2", "start": start.isoformat(),
                                                 "end": end.isoformat()})
    if response.status_code == 404:  # nothing of the station stored yet
        return []
    assert response.status_code == 200, response.text
    points: list[dict[str, object]] = response.json()["points"]
    return points
