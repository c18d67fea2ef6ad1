"""The publisher against a real Mosquitto: batches go out at QoS 1 and leave the disk buffer only when acked."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.contract import ReadingBatch, StationStatus
from gateway.edge.buffer import ReadingBuffer
from gateway.edge.config import BufferConfig, MqttConfig
from gateway.edge.publisher import Publisher
from gateway.testing.factories import make_readings
from gateway.testing.mqtt import Capture, wait_for
from gateway.testing.services import MosquittoInstance, free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def capture(mosquitto: MosquittoInstance) -> Iterator[Capture]:
    cap = Capture(mosquitto.host, mosquitto.port)
    yield cap
    cap.close()


def make_publisher(tmp_path: Path, port: int, batch_size: int = 4) -> tuple[Publisher, ReadingBuffer]:
    buffer = ReadingBuffer(tmp_path / "buffer.sqlite")
    publisher = Publisher(
        "site-a", "st01", MqttConfig(host="127.0.0.1", port=port, keepalive_s=5),
        BufferConfig(path=tmp_path / "buffer.sqlite", batch_size=batch_size, max_in_flight=3), buffer,
    )
    return publisher, buffer


def test_every_reading_arrives_once_in_sequence_and_leaves_the_buffer(
    tmp_path: Path, mosquitto: MosquittoInstance, capture: Capture
) -> None:
    publisher, buffer = make_publisher(tmp_path, mosquitto.port)
    readings = make_readings(10)
    buffer.append(readings)
    stop = threading.Event()
    publisher.start()
    worker = threading.Thread(target=publisher.run, args=(stop,), daemon=True)
    worker.start()
    try:
        assert wait_for(lambda: buffer.pending_readings() == 0), "buffer was not drained"
        assert wait_for(lambda: len(capture.on("/readings")) == 3)
        batches = [ReadingBatch.model_validate_json(m.payload) for m in capture.on("/readings")]
        assert [b.seq for b in batches] == [0, 1, 2]
        assert [r for b in batches for r in b.readings] == readings
        assert all(m.qos == 1 for m in capture.on("/readings"))
        assert publisher.counters.readings_acknowledged == 10
        online = StationStatus.model_validate_json(capture.on("/status")[0].payload)
        assert online.state == "online"
    finally:
        stop.set()
        worker.join(5)
        publisher.stop()
    # a clean stop leaves a retained offline status behind
    assert wait_for(lambda: any(
        StationStatus.model_validate_json(m.payload).state == "offline" for m in capture.on("/status")))


def test_without_a_broker_nothing_leaves_the_buffer(tmp_path: Path) -> None:
    publisher, buffer = make_publisher(tmp_path, free_port())
    buffer.append(make_readings(5))
    publisher.start()
    try:
        time.sleep(1.5)
        assert publisher.drain_once() == 0
        assert buffer.pending_readings() == 5
        assert not publisher.connected
    finally:
        publisher.stop()


def test_batches_claimed_before_a_crash_are_republished_with_their_seq(
    tmp_path: Path, mosquitto: MosquittoInstance, capture: Capture
) -> None:
    publisher, buffer = make_publisher(tmp_path, mosquitto.port, batch_size=5)
    buffer.append(make_readings(5))
    claimed = buffer.claim(5)  # as if the previous process handed it to paho and died before the PUBACK
    assert claimed is not None
    publisher.start()
    try:
        assert wait_for(lambda: publisher.connected)
        publisher.wait_drained(10)
        assert buffer.pending_readings() == 0
        assert wait_for(lambda: len(capture.on("/readings")) == 1)
        assert ReadingBatch.model_validate_json(capture.on("/readings")[0].payload).seq == claimed.seq
    finally:
        publisher.stop()


def test_last_will_marks_the_station_offline_when_the_connection_dies(
    tmp_path: Path, mosquitto: MosquittoInstance, capture: Capture
) -> None:
    publisher, _ = make_publisher(tmp_path, mosquitto.port)
    publisher.start()
    assert wait_for(lambda: publisher.connected)
    # drop the TCP connection without DISCONNECT, as a power cut or a dead link would
    publisher._client.loop_stop()
    sock = publisher._client.socket()
    assert sock is not None
    sock.close()
    assert wait_for(lambda: any(
        StationStatus.model_validate_json(m.payload).reason == "connection lost" for m in capture.on("/status")),
        timeout=15)


def test_many_tiny_batches_drain_while_acks_race_the_publishes(
    tmp_path: Path, mosquitto: MosquittoInstance, capture: Capture
) -> None:
    # PUBACKs arriving while the publisher is mid-publish once deadlocked the two threads (lock-order inversion
    # between paho's message lock and ours); a few thousand one-reading batches make that race frequent.
    buffer = ReadingBuffer(tmp_path / "buffer.sqlite")
    publisher = Publisher(
        "site-a", "st01", MqttConfig(host="127.0.0.1", port=mosquitto.port),
        BufferConfig(path=tmp_path / "buffer.sqlite", batch_size=1, max_in_flight=50), buffer,
    )
    buffer.append(make_readings(2000))
    publisher.start()
    try:
        assert wait_for(lambda: publisher.connected)
        assert publisher.wait_drained(60), f"{buffer.pending_readings()} readings still buffered"
        assert publisher.counters.readings_acknowledged == 2000
    finally:
        publisher.stop()
    assert wait_for(lambda: len(capture.on("/readings")) == 2000)
