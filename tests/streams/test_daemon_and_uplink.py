"""The daemon runs stream sensors beside polled ones; raw archive files go to a real Mosquitto and leave the
outbox only after the broker acknowledged them."""

from __future__ import annotations

import base64
import json
import threading
import zlib
from pathlib import Path
from typing import ClassVar

import pytest

from drivers.csat3b.driver import CSAT3BConfig, CSAT3BDriver
from drivers.csat3b.simulator import CSAT3BSimulator
from gateway.contract import raw_topic
from gateway.contract.asyncapi import validate_payload
from gateway.driver_api import SensorConfig
from gateway.edge.config import BufferConfig, MqttConfig, StationConfig, StationConfigBase, StreamsConfig
from gateway.edge.daemon import StationDaemon
from gateway.edge.streams.uplink import RawOutbox
from gateway.model import Reading
from gateway.rawarchive import ArchiveWriter, read_archive_bytes
from gateway.testing.factories import make_readings
from gateway.testing.mqtt import Capture
from gateway.testing.services import MosquittoInstance

from .helpers import wait_for

pytestmark = pytest.mark.integration


class PolledProbe:
    Config: ClassVar[type[SensorConfig]] = SensorConfig

    def __init__(self, config: SensorConfig, *, station: str) -> None:
        self.config, self.station, self.calls = config, station, 0

    def open(self) -> None:
        pass

    def poll(self) -> list[Reading]:
        self.calls += 1
        return make_readings(1, start=float(self.calls), station=self.station, sensor=self.config.name)

    def close(self) -> None:
        pass


def test_daemon_runs_a_stream_beside_a_polled_sensor(tmp_path: Path, mosquitto: MosquittoInstance) -> None:
    with CSAT3BSimulator("tcp://127.0.0.1:0", frequency_hz=20) as sim:
        stream_cfg = CSAT3BConfig(name="csat", port=sim.tcp_endpoint)
        base = StationConfigBase(
            site="site-a", station="st01", mqtt=MqttConfig(host=mosquitto.host, port=mosquitto.port),
            buffer=BufferConfig(path=tmp_path / "buffer.sqlite", publish_interval_s=0.2),
            streams=StreamsConfig(summary_interval_s=1),
            sensors=[{"name": "probe"}, {"name": "csat"}])
        config = StationConfig(base, [(PolledProbe, SensorConfig(name="probe", driver="fake", interval_s=0.2)),
                                      (CSAT3BDriver, stream_cfg)], None)  # type: ignore[list-item]
        daemon = StationDaemon(config)
        capture = Capture(mosquitto.host, mosquitto.port)
        stop = threading.Event()
        thread = threading.Thread(target=daemon.run, args=(stop,), kwargs={"drain_timeout_s": 2})
        thread.start()
        try:
            def sensors_seen() -> set[str]:
                return {r["sensor"] for m in capture.on("/readings") for r in json.loads(m.payload)["readings"]}
            wait_for(lambda: sensors_seen() >= {"probe", "csat"}, timeout_s=15, what="both sensors on the broker")
            assert "streams" in daemon.liveness.names() and daemon.liveness.hung() == []  # watched, and moving
        finally:
            stop.set()
            thread.join(timeout=30)
            capture.close()
    assert [r.config.name for r in daemon.runners] == ["probe"]
    assert [r.config.name for r in daemon.streams.runners] == ["csat"]
    for message in capture.on("/readings"):
        validate_payload("ReadingBatch", bytes(message.payload))  # summaries are ordinary readings on the wire
    variables = {r["variable"] for m in capture.on("/readings") for r in json.loads(m.payload)["readings"]
                 if r["sensor"] == "csat"}
    assert {"U", "U_SD", "U_N", "T_SONIC", "WS"} <= variables
    assert list((tmp_path / "raw").glob("csat_*.swr"))  # the archive sits beside the buffer by default


def _archive_file(directory: Path) -> Path:
    writer = ArchiveWriter(directory, "csat", 1_764_064_800, [("U", "m s-1")], {"site": "site-a"})
    for i in range(50):
        writer.write(1_764_064_800 + i / 20, [float(i)])
    return writer.close({"closed": "test"})


def test_a_raw_file_stays_in_the_outbox_across_a_restart_until_its_receipt(tmp_path: Path) -> None:
    # sending is the delivery path's job (tests/edge/test_delivery.py); the outbox keeps the file and its seq
    original = _archive_file(tmp_path / "raw")
    outbox = RawOutbox("site-a", "st01", tmp_path / "outbox", tmp_path / "buffer.sqlite")
    outbox.enqueue(original)
    [first] = outbox.claim(1, set())
    outbox.close()
    again = RawOutbox("site-a", "st01", tmp_path / "outbox", tmp_path / "buffer.sqlite")
    [item] = again.claim(1, set())
    assert item.seq == first.seq and again.topic == raw_topic("site-a", "st01")
    validate_payload("RawChunk", item.payload)  # docs/asyncapi.yaml
    body = json.loads(item.payload)
    assert body["sensor"] == "csat" and body["file"] == original.name and body["seq"] == item.seq
    assert body["format"] == "sinkwatch-raw/2" and body["encoding"] == "zlib+base64"
    carried = zlib.decompress(base64.b64decode(body["data"]))
    assert carried == original.read_bytes() and body["size"] == len(carried)  # the file itself, byte for byte
    assert read_archive_bytes(carried).columns["U"].tolist() == [float(i) for i in range(50)]
    assert again.confirm([(item.seq, item.seq)]) == (1, 1)
    assert again.pending() == 0 and again.pending_files() == [] and original.exists()  # the archive stays
    again.close()


def test_a_link_left_without_its_row_is_queued_again_on_start(tmp_path: Path) -> None:
    original = _archive_file(tmp_path / "raw")
    (tmp_path / "outbox").mkdir()
    (tmp_path / "outbox" / original.name).write_bytes(original.read_bytes())  # a crash between link and row
    outbox = RawOutbox("site-a", "st01", tmp_path / "outbox", tmp_path / "buffer.sqlite")
    assert [p.name for p in outbox.pending_files()] == [original.name]
    outbox.close()
