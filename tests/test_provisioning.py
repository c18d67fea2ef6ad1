"""Per-station identity through the commands an operator runs (`sinkwatch station provision|revoke`), on a real
Mosquitto running the shipped configuration with TLS (a CA made here): provisioned stations, one with a password and
one with a client certificate, deliver to the central service over TLS; revoking one takes effect at once through a
broker reload, while another keeps publishing on the connection it has (docs/security.md)."""

from __future__ import annotations

import base64
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from gateway.central.config import MqttSettings
from gateway.central.ingest import Ingestor
from gateway.central.pki import CertificateAuthority
from gateway.central.provision import StationRegistry, mosquitto_hash
from gateway.central.store import SqliteStore
from gateway.cli import app as cli
from gateway.contract import readings_topic
from gateway.edge.buffer import ReadingBuffer
from gateway.edge.config import load_station_config
from gateway.edge.delivery import Delivery, DeliverySettings
from gateway.edge.outbox import ReadingsOutbox
from gateway.edge.signer import ChainSigner
from gateway.net import free_port
from gateway.testing.factories import make_readings
from gateway.testing.mqtt import wait_for
from gateway.testing.services import MOSQUITTO_BINARY, MosquittoServer, _find_binary
from gateway.testing.shipped_broker import DEPLOY_MOSQUITTO as DEPLOY
from gateway.testing.shipped_broker import shipped_config
from gateway.trust.keys import KeyRegistry, load_private_key

SITE = "hainich"
LATER = datetime(2026, 11, 25, 11, 0, tzinfo=UTC)
LATEST = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
CENTRAL_PASSWORD = "central-secret-for-tests"


@dataclass
class Deployment:
    tmp: Path
    broker: MosquittoServer
    config: Path  # central.yaml
    data_dir: Path
    out: Path
    ca: Path
    tls_port: int
    cert_port: int
    signers: list[ChainSigner] = field(default_factory=list)

    def run(self, *args: str) -> str:
        result = CliRunner().invoke(cli, [*args, "-c", str(self.config)])
        assert result.exit_code == 0, result.output
        return result.output

    def station(self, name: str) -> Delivery:
        """The provisioned station's own station.yaml, with /etc/sinkwatch pointing at its folder, running."""
        folder = self.out / name
        text = (folder / "station.yaml").read_text().replace("/etc/sinkwatch", str(folder))
        text = text.replace("/var/lib/sinkwatch/buffer.sqlite", str(folder / "buffer.sqlite"))
        (folder / "station.yaml").write_text(text)
        config = load_station_config(folder / "station.yaml")
        assert config.mqtt.tls and config.mqtt.ca_file == folder / "ca.crt"
        assert config.signing_key == folder / "signing-key"
        # the station signs with its provisioned key, as its daemon does (the central service requires it)
        signer = ChainSigner(load_private_key(config.signing_key), folder / "buffer.sqlite")
        delivery = Delivery(config.site, config.station, config.mqtt.model_copy(update={"keepalive_s": 5}),
                            DeliverySettings(receipt_timeout_s=2, refusal_retry_s=0.5), signer=signer)
        self.signers.append(signer)
        buffer = ReadingBuffer(folder / "buffer.sqlite")
        buffer.append(make_readings(5, station=name))
        delivery.add_channel(ReadingsOutbox(buffer, config.site, config.station, batch_size=5))
        delivery.buffer = buffer  # type: ignore[attr-defined]
        return delivery


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    """A fresh deployment as deploy/README.md makes one: CA, broker certificate, shipped broker config and ACL,
    the central service's broker user, central.yaml with `provisioning:`."""
    passwd = _find_binary("/usr/bin/mosquitto_passwd", "mosquitto_passwd", "mosquitto")
    runner = CliRunner()
    ca_dir = tmp_path / "ca"
    assert runner.invoke(cli, ["central", "ca", "init", "--dir", str(ca_dir)]).exit_code == 0
    base = tmp_path / "broker"
    certs = base / "certs"
    certs.mkdir(parents=True)
    made = runner.invoke(cli, ["central", "ca", "server-cert", "--dir", str(ca_dir), "--host", "localhost",
                               "--out", str(certs / "broker")])
    assert made.exit_code == 0, made.output
    shutil.copy(ca_dir / "ca.crt", certs / "ca.crt")
    shutil.copy(ca_dir / "ca.crl", certs / "ca.crl")
    subprocess.run([passwd, "-c", "-b", str(base / "passwd"), "sinkwatch-central", CENTRAL_PASSWORD], check=True,
                   capture_output=True)
    shutil.copy(DEPLOY / "sinkwatch.acl", base / "sinkwatch.acl")
    port, tls_port, cert_port = free_port(), free_port(), free_port()
    broker = MosquittoServer(base, port, shipped_config(base, port, tls_port, cert_port, certs),
                             _find_binary(MOSQUITTO_BINARY, "mosquitto", "mosquitto"))
    broker.start()
    assert broker._process is not None
    config = tmp_path / "central.yaml"
    config.write_text(f"""storage: {{kind: sqlite, path: {tmp_path / 'store.sqlite'}}}
data_dir: {tmp_path / 'central'}
provisioning:
  broker_host: localhost
  broker_port: {tls_port}
  broker_cert_port: {cert_port}
  ca_dir: {ca_dir}
  broker_password_file: {base / 'passwd'}
  broker_acl_file: {base / 'sinkwatch.acl'}
  broker_crl_file: {certs / 'ca.crl'}
  broker_reload: [kill, -HUP, '{broker._process.pid}']
  out_dir: {tmp_path / 'provisioned'}
""")
    try:
        yield Deployment(tmp_path, broker, config, tmp_path / "central", tmp_path / "provisioned", ca_dir, tls_port,
                         cert_port)
    finally:
        broker.stop()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_provisioning_writes_a_station_folder_and_registers_the_station(deployment: Deployment) -> None:
    output = deployment.run("station", "provision", "st01", "--site", SITE)
    assert "broker reloaded" in output
    folder = deployment.out / "st01"
    assert {p.name for p in folder.iterdir()} == {"station.yaml", "mqtt-password", "ca.crt", "signing-key",
                                                  "broker-entries.txt"}
    assert _mode(folder / "mqtt-password") == 0o600 and _mode(folder / "signing-key") == 0o600
    password = (folder / "mqtt-password").read_text().strip()
    assert len(password) >= 43  # 256 random bits
    # the central side keeps the hash, never the password; the broker's file has the same hash
    record = StationRegistry(deployment.data_dir).entries()[0]
    assert password not in StationRegistry(deployment.data_dir).path.read_text()
    line = next(li for li in (deployment.broker.base_dir / "passwd").read_text().splitlines()
                if li.startswith("st01:"))
    assert line == f"st01:{record.password_hash}"
    salt = record.password_hash.split("$")[3]  # type: ignore[union-attr]
    assert mosquitto_hash(password, salt=base64.b64decode(salt)) == record.password_hash
    # its signing key is registered with the central service
    key = load_private_key(folder / "signing-key")
    registered = KeyRegistry(deployment.data_dir).active(SITE, "st01")
    assert registered is not None and registered.key_id == record.key_id
    assert registered.public_key.split(":", 1)[1] and registered.key.public_bytes_raw() == \
        key.public_key().public_bytes_raw()
    # the ACL block is bound to the site
    acl = (deployment.broker.base_dir / "sinkwatch.acl").read_text()
    assert f"topic write sinkwatch/v1/{SITE}/st01/readings" in acl and "user sinkwatch-central" in acl
    # refused: the same id again (any site), a name the broker knows as another user, --cert without a CA is fine
    again = CliRunner().invoke(cli, ["station", "provision", "st01", "--site", "other", "-c", str(deployment.config)])
    assert again.exit_code == 2 and "unique across sites" in again.output
    clash = CliRunner().invoke(cli, ["station", "provision", "sinkwatch-central", "--site", SITE, "-c",
                                     str(deployment.config)])
    assert clash.exit_code == 2 and "not made by provisioning" in clash.output


@pytest.mark.integration
def test_provisioned_stations_deliver_over_tls_and_a_revoked_one_is_refused_while_others_keep_going(
        deployment: Deployment) -> None:
    deployment.run("station", "provision", "st01", "--site", SITE)
    deployment.run("station", "provision", "st02", "--site", SITE, "--cert")
    deployment.run("station", "provision", "st03", "--site", SITE)
    assert {p.name for p in (deployment.out / "st02").iterdir()} >= {"client.crt", "client.key"}
    store = SqliteStore(deployment.tmp / "store.sqlite")
    ingestor = Ingestor(MqttSettings(host="localhost", port=deployment.tls_port, tls=True,
                                     ca_file=deployment.ca / "ca.crt", username="sinkwatch-central",
                                     password=SecretStr(CENTRAL_PASSWORD), client_id="central-test"),
                        store, deployment.data_dir, signatures="required")
    stations = {name: deployment.station(name) for name in ("st01", "st02", "st03")}
    ingestor.start()
    for delivery in stations.values():
        delivery.start()
    try:
        for name, delivery in stations.items():
            assert delivery.wait_confirmed(20), (name, delivery.health())
        assert ingestor.counters()["readings_stored"] == 15
        assert ingestor.counters()["unsigned_items"] == 0 and ingestor.counters()["signed_items"] >= 3
        connects = {name: d.connects for name, d in stations.items()}

        # revoke the password station: the broker drops and refuses it; st02 and st03 keep their connections
        output = deployment.run("station", "revoke", "st01", "--site", SITE)
        assert "broker reloaded" in output
        st01 = stations["st01"]
        # the broker's refusal (a reconnection between its reload and the refusal may also find it away: counted
        # under UNREACHABLE, so the wait is for the refusal itself)
        assert wait_for(lambda: "Not authorized" in " ".join(st01.connect_failures), 20), st01.health()
        st01.buffer.append(make_readings(3, station="st01", t0=LATER))  # type: ignore[attr-defined]
        for name in ("st02", "st03"):
            stations[name].buffer.append(make_readings(4, station=name, t0=LATER))  # type: ignore[attr-defined]
            stations[name].notify()
            assert stations[name].wait_confirmed(20), stations[name].health()
            assert stations[name].connects == connects[name] and stations[name].connection_losses == 0
        assert not st01.connected and st01.buffer.pending_readings() == 3  # type: ignore[attr-defined]

        # revoke the certificate station: its publishes are refused at once (ACL), a new connection by the CRL
        deployment.run("station", "revoke", "st02", "--site", SITE)
        st02 = stations["st02"]
        st02.buffer.append(make_readings(2, station="st02", t0=LATEST))  # type: ignore[attr-defined]
        st02.notify()
        assert wait_for(lambda: sum(st02.counters("readings").refusals.values()) >= 1
                        or not st02.connected, 20), st02.health()
        stations["st03"].buffer.append(make_readings(2, station="st03", t0=LATEST))  # type: ignore[attr-defined]
        stations["st03"].notify()
        assert stations["st03"].wait_confirmed(20)
        assert stations["st03"].connects == connects["st03"]
        assert st02.buffer.pending_readings() == 2  # type: ignore[attr-defined]
        # a fresh connection with st02's certificate is refused by the broker (its CRL)
        fresh = deployment.station("st02")
        fresh.start()
        try:
            assert wait_for(lambda: fresh.tls is not None and sum(fresh.tls.failures.values()) >= 1, 20), \
                fresh.health()
            assert not fresh.connected
        finally:
            fresh.stop()
        assert ingestor.counters()["readings_stored"] == 15 + 8 + 2
        # the revocations are recorded centrally: keys revoked, certificate on the CRL
        keys = KeyRegistry(deployment.data_dir)
        assert keys.active(SITE, "st01") is None and keys.active(SITE, "st02") is None
        assert keys.active(SITE, "st03") is not None
        ca = CertificateAuthority(deployment.ca)
        assert [e["cn"] for e in ca.issued() if e["revoked"]] == ["st02"]
    finally:
        for delivery in stations.values():
            delivery.stop()
            delivery.buffer.close()  # type: ignore[attr-defined]
        for signer in deployment.signers:
            signer.close()
        ingestor.stop()
        store.close()


def test_the_central_service_dead_letters_what_still_arrives_from_a_revoked_station(deployment: Deployment) -> None:
    # a broker not reloaded yet, or a message it queued before: the central service refuses it too, and counts it
    deployment.run("station", "provision", "st01", "--site", SITE)
    deployment.run("station", "revoke", "st01", "--site", SITE)
    store = SqliteStore(":memory:")
    ingestor = Ingestor(MqttSettings(), store, deployment.data_dir)
    from gateway.contract import ReadingBatch

    batch = ReadingBatch(site=SITE, station="st01", seq=0, sent=LATER, readings=make_readings(2, station="st01"))
    ingestor.handle(readings_topic(SITE, "st01"), batch.model_dump_json().encode())
    assert ingestor.counters()["malformed"] == {"revoked_station": 1}
    assert ingestor.security_counters()["revoked_station_messages"] == 1
    assert store.stations() == []
    # provisioned again (a new identity), it is accepted
    shutil.rmtree(deployment.out / "st01")
    deployment.run("station", "provision", "st01", "--site", SITE)
    ingestor.handle(readings_topic(SITE, "st01"), batch.model_dump_json().encode())
    assert ingestor.counters()["readings_stored"] == 2
    store.close()
    assert os.path.exists(deployment.data_dir / "dead-letter.jsonl")
