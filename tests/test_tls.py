"""TLS on every MQTT link, with a private CA made here: station -> broker and central -> broker through a real
Mosquitto TLS listener, client certificates, and the failures that must fail closed (wrong CA, wrong host name,
no client certificate), each counted and named by the setting to fix (docs/security.md, "TLS")."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.central.config import MqttSettings
from gateway.central.ingest import Ingestor
from gateway.central.store import SqliteStore
from gateway.configfile import ConfigError
from gateway.edge.buffer import ReadingBuffer
from gateway.edge.config import MqttConfig, parse_station_config
from gateway.edge.delivery import Delivery, DeliverySettings
from gateway.edge.outbox import ReadingsOutbox
from gateway.net import free_port
from gateway.testing.factories import make_readings
from gateway.testing.mqtt import Capture, wait_for
from gateway.testing.services import mosquitto_server
from gateway.testing.tlsfiles import CertFiles, PkiFiles, make_pki, tls_listener_lines

pytestmark = pytest.mark.integration

SITE = "hainich"


@dataclass
class TlsBroker:
    plain_port: int  # loopback, anonymous: only the test's own observer uses it
    tls_port: int
    pki: PkiFiles
    server: CertFiles
    base: Path


def _broker_config(base: Path, plain: int, tls_lines: list[str]) -> str:
    return "\n".join([f"listener {plain} 127.0.0.1", *tls_lines, "allow_anonymous true",
                      "persistence false", f"log_dest file {base / 'mosquitto.log'}", "log_type error",
                      "log_type warning", "log_type notice"]) + "\n"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[TlsBroker]:
    pki = make_pki(tmp_path / "pki")
    server = pki.server("broker", ("localhost", "127.0.0.1"))
    plain, tls = free_port(), free_port()
    config = _broker_config(tmp_path, plain, tls_listener_lines(tls, pki, server))
    with mosquitto_server(tmp_path / "broker", config=config, port=plain):
        yield TlsBroker(plain, tls, pki, server, tmp_path)


def _station(tmp: Path, mqtt: MqttConfig, station: str = "st01", readings: int = 10) -> tuple[Delivery, ReadingBuffer]:
    buffer = ReadingBuffer(tmp / f"{station}-buffer.sqlite")
    buffer.append(make_readings(readings, station=station))
    delivery = Delivery(SITE, station, mqtt, DeliverySettings(receipt_timeout_s=2))
    delivery.add_channel(ReadingsOutbox(buffer, SITE, station, batch_size=5))
    return delivery, buffer


def test_station_and_central_deliver_end_to_end_over_tls_with_a_private_ca(broker: TlsBroker) -> None:
    store = SqliteStore(broker.base / "store.sqlite")
    ingestor = Ingestor(MqttSettings(host="localhost", port=broker.tls_port, tls=True, ca_file=broker.pki.ca_file),
                        store, broker.base / "central")
    delivery, buffer = _station(broker.base, MqttConfig(host="localhost", port=broker.tls_port, tls=True,
                                                        ca_file=broker.pki.ca_file, keepalive_s=5))
    ingestor.start()
    delivery.start()
    try:
        assert delivery.wait_confirmed(20), delivery.health()
        assert ingestor.counters()["readings_stored"] == 10
        assert delivery.health()["tls"] == {"failures": {}, "failing": None, "last_error": None}
        assert ingestor.counters()["mqtt_tls"]["failures"] == {}
    finally:
        delivery.stop()
        ingestor.stop()
        buffer.close()
        store.close()


def _refused(broker: TlsBroker, mqtt: MqttConfig, kind: str, caplog: pytest.LogCaptureFixture) -> str:
    """Run a station against the broker, expect it never to get through; returns the logged TLS error."""
    observer = Capture("127.0.0.1", broker.plain_port, ("sinkwatch/#",), client_id="observer")
    delivery, buffer = _station(broker.base, mqtt, station="refused")
    caplog.set_level(logging.INFO, logger="sinkwatch.edge.delivery")
    delivery.start()
    try:
        assert wait_for(lambda: (delivery.tls is not None and delivery.tls.failures[kind] >= 1), 15), \
            delivery.health()
        health = delivery.health()
        assert health["broker_connected"] is False and health["connects"] == 0
        assert health["tls"]["failing"] == kind  # type: ignore[index]
    finally:
        delivery.stop()
        observer.close()
    assert [m.topic for m in observer.messages if "/refused/" in m.topic] == []  # not even the online status
    assert buffer.pending_readings() == 10
    buffer.close()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and "TLS" in r.getMessage()]
    assert len(errors) == 1, errors  # logged once, not on every retry
    return errors[0]


def test_a_broker_certificate_from_another_ca_is_refused_naming_mqtt_ca_file(
        broker: TlsBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    other = make_pki(tmp_path / "other", "another CA")
    message = _refused(broker, MqttConfig(host="localhost", port=broker.tls_port, tls=True, ca_file=other.ca_file,
                                          keepalive_s=5), "unknown_ca", caplog)
    assert "mqtt.ca_file" in message and str(other.ca_file) in message


def test_tls_without_ca_file_uses_the_system_store_which_does_not_know_a_private_ca(
        broker: TlsBroker, caplog: pytest.LogCaptureFixture) -> None:
    message = _refused(broker, MqttConfig(host="localhost", port=broker.tls_port, tls=True, keepalive_s=5),
                       "unknown_ca", caplog)
    assert "system CA store" in message and "mqtt.ca_file" in message


def test_a_broker_certificate_for_another_host_name_is_refused_naming_mqtt_host(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pki = make_pki(tmp_path / "pki")
    server = pki.server("broker", ("broker.example.org",))
    plain, tls = free_port(), free_port()
    config = _broker_config(tmp_path, plain, tls_listener_lines(tls, pki, server))
    with mosquitto_server(tmp_path / "broker", config=config, port=plain):
        broker = TlsBroker(plain, tls, pki, server, tmp_path)
        message = _refused(broker, MqttConfig(host="127.0.0.1", port=tls, tls=True, ca_file=pki.ca_file,
                                              keepalive_s=5), "hostname_mismatch", caplog)
        assert "mqtt.host" in message and "'127.0.0.1'" in message
        # check_hostname: false is the documented escape for a broker reached by an unlisted address: the chain is
        # still checked, so it connects with the right CA only
        delivery, buffer = _station(tmp_path, MqttConfig(host="127.0.0.1", port=tls, tls=True, ca_file=pki.ca_file,
                                                         check_hostname=False, keepalive_s=5), station="st02")
        delivery.start()
        try:
            assert wait_for(lambda: delivery.connected, 10)
        finally:
            delivery.stop()
            buffer.close()


def test_client_certificates_identify_the_station_and_a_client_without_one_is_refused(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pki = make_pki(tmp_path / "pki")
    server = pki.server("broker")
    st01 = pki.client("st01")
    plain, tls = free_port(), free_port()
    config = _broker_config(tmp_path, plain, tls_listener_lines(tls, pki, server, client_certificates=True))
    with mosquitto_server(tmp_path / "broker", config=config, port=plain):
        delivery, buffer = _station(tmp_path, MqttConfig(host="localhost", port=tls, tls=True, ca_file=pki.ca_file,
                                                         cert_file=st01.cert, key_file=st01.key, keepalive_s=5))
        observer = Capture("127.0.0.1", plain, ("sinkwatch/#",), client_id="observer")
        delivery.start()
        try:
            assert wait_for(lambda: len(observer.on("/readings")) >= 2, 10)
        finally:
            delivery.stop()
            observer.close()
            buffer.close()
        log = (tmp_path / "mosquitto.log").read_text() if (tmp_path / "mosquitto.log").exists() else ""
        assert "certificate" not in log.lower()  # no handshake trouble for the station with its certificate
        broker = TlsBroker(plain, tls, pki, server, tmp_path)
        message = _refused(broker, MqttConfig(host="localhost", port=tls, tls=True, ca_file=pki.ca_file,
                                              keepalive_s=5), "bad_certificate", caplog)
        assert "mqtt.cert_file" in message


def test_the_central_service_refuses_a_broker_it_cannot_verify_and_says_so_in_its_counters(
        broker: TlsBroker, tmp_path: Path) -> None:
    other = make_pki(tmp_path / "other", "another CA")
    store = SqliteStore(":memory:")
    ingestor = Ingestor(MqttSettings(host="localhost", port=broker.tls_port, tls=True, ca_file=other.ca_file),
                        store, tmp_path / "central", reconnect_max_s=1)
    ingestor.start()
    try:
        assert wait_for(lambda: ingestor.counters()["mqtt_tls"]["failures"].get("unknown_ca", 0) >= 1, 15)
        tls = ingestor.counters()["mqtt_tls"]
        assert tls["failing"] == "unknown_ca" and "mqtt.ca_file" in tls["last_error"]
        assert not ingestor.mqtt_connected
    finally:
        ingestor.stop()
        store.close()


# --- configuration: every TLS file checked before anything connects --------------------------------------------


def _station_config(mqtt: dict[str, object]) -> dict[str, object]:
    return {"site": SITE, "station": "st01", "mqtt": mqtt, "buffer": {"path": "buffer.sqlite"},
            "sensors": [{"name": "probe", "driver": "gmp252", "port": "/dev/null", "address": 240}]}


@pytest.mark.parametrize(("mqtt", "expected"), [
    ({"tls": True, "ca_file": "/nonexistent/ca.crt"}, "mqtt.ca_file: /nonexistent/ca.crt not found"),
    ({"ca_file": "ca.crt"}, "mqtt.ca_file is set but mqtt.tls is false"),
    ({"tls": True, "key_file": "k.pem"}, "mqtt.key_file is set without mqtt.cert_file"),
])
def test_tls_settings_are_checked_when_the_config_is_loaded(mqtt: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_station_config(_station_config(mqtt), "station.yaml")
    assert expected in str(caught.value)


def test_a_ca_file_that_is_not_a_certificate_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "ca.crt"
    bad.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"mqtt.ca_file: .* is not a readable PEM CA certificate"):
        parse_station_config(_station_config({"tls": True, "ca_file": str(bad)}), "station.yaml")


def test_a_client_key_readable_by_others_is_refused_with_the_chmod_fix(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    st01 = pki.client("st01")
    st01.key.chmod(0o644)
    with pytest.raises(ConfigError) as caught:
        parse_station_config(_station_config({"tls": True, "ca_file": str(pki.ca_file), "cert_file": str(st01.cert),
                                              "key_file": str(st01.key)}), "station.yaml")
    assert f"chmod 600 {st01.key}" in str(caught.value) and "mqtt.key_file" in str(caught.value)
