"""The shipped broker configuration (deploy/mosquitto/sinkwatch.conf + sinkwatch.acl) on a real, private Mosquitto.

Only what cannot work in a test is substituted (paths, ports, log destination, TLS files from a CA made here);
every substitution must find its line, so a change to the shipped files that breaks the substitution fails loudly
rather than silently running something else. The central service's password line is made with mosquitto_passwd,
as the config's comments tell an operator to; the stations' password lines and ACL blocks as `sinkwatch station
provision` writes them (gateway/central/provision.py), so Mosquitto itself checks their hashes and topics. Used by
tests/test_deploy_mosquitto.py, tests/test_provisioning.py and the chaos harness (gateway/testing/chaos/).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from gateway.central.provision import BrokerFiles, ProvisionedStation, mosquitto_hash, write_broker_files
from gateway.net import free_port
from gateway.testing.services import MOSQUITTO_BINARY, MosquittoServer, ServiceError, _find_binary
from gateway.testing.tlsfiles import make_pki

DEPLOY_MOSQUITTO = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
CENTRAL_USER = "sinkwatch-central"


def shipped_config(base: Path, port: int, tls_port: int, cert_port: int, certs: Path) -> str:
    """sinkwatch.conf with test-only paths and ports (the TLS files in `certs`: broker.crt, broker.key, ca.crt,
    ca.crl; the ACL read from `base/sinkwatch.acl`); raises ServiceError if a line to substitute is gone."""
    text = (DEPLOY_MOSQUITTO / "sinkwatch.conf").read_text(encoding="utf-8")
    substitutions = {
        "persistence_location /var/lib/mosquitto/": f"persistence_location {base}/",
        "password_file /etc/mosquitto/passwd": f"password_file {base / 'passwd'}",
        "acl_file /etc/mosquitto/sinkwatch.acl": f"acl_file {base / 'sinkwatch.acl'}",
        "listener 8883": f"listener {tls_port} 127.0.0.1",
        "listener 8884": f"listener {cert_port} 127.0.0.1",
        "certfile /etc/mosquitto/certs/broker.crt": f"certfile {certs / 'broker.crt'}",
        "keyfile /etc/mosquitto/certs/broker.key": f"keyfile {certs / 'broker.key'}",
        "cafile /etc/mosquitto/certs/ca.crt": f"cafile {certs / 'ca.crt'}",
        "crlfile /etc/mosquitto/certs/ca.crl": f"crlfile {certs / 'ca.crl'}",
        "listener 1883 127.0.0.1": f"listener {port} 127.0.0.1",
        "log_dest syslog": f"log_dest file {base / 'mosquitto.log'}",
    }
    lines = text.splitlines()
    for old, new in substitutions.items():
        hits = [i for i, line in enumerate(lines) if line.strip() == old]
        if not hits:
            raise ServiceError(f"deploy/mosquitto/sinkwatch.conf has no line {old!r}: update "
                               "gateway/testing/shipped_broker.py with the shipped file")
        for hit in hits:  # the two TLS listeners share certificate lines
            lines[hit] = new
    return "\n".join(lines) + "\n"


def broker_certificates(base: Path, pki_folder: Path) -> Path:
    """The broker's TLS files from a CA made in `pki_folder`, copied to `base/certs`: broker.crt/.key for localhost
    and 127.0.0.1, ca.crt, ca.crl."""
    pki = make_pki(pki_folder)
    server = pki.server("broker", ("localhost", "127.0.0.1"))
    certs = base / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    for source, name in ((server.cert, "broker.crt"), (server.key, "broker.key"), (pki.ca_file, "ca.crt"),
                         (pki.ca.crl_path, "ca.crl")):
        shutil.copy2(source, certs / name)
    return certs


def shipped_mosquitto(base: Path, passwords: dict[str, str], *, site: str) -> MosquittoServer:
    """A `MosquittoServer` (not started) running the shipped conf and ACL in `base`, with one broker user per
    entry of `passwords` (user name -> password): the central service as `sinkwatch-central`, every other entry a
    station of `site` provisioned with that password. Its plain loopback listener is `server.port`."""
    passwd = _find_binary("/usr/bin/mosquitto_passwd", "mosquitto_passwd", "mosquitto")
    base.mkdir(parents=True, exist_ok=True)
    if CENTRAL_USER in passwords:
        subprocess.run([passwd, "-c", "-b", str(base / "passwd"), CENTRAL_USER, passwords[CENTRAL_USER]],
                       check=True, capture_output=True)
    shutil.copy(DEPLOY_MOSQUITTO / "sinkwatch.acl", base / "sinkwatch.acl")
    stations = [ProvisionedStation(site, name, "password", "2026-01-01T00:00:00Z",
                                   password_hash=mosquitto_hash(password))
                for name, password in passwords.items() if name != CENTRAL_USER]
    write_broker_files(BrokerFiles(base / "passwd", base / "sinkwatch.acl"), stations)
    certs = broker_certificates(base, base / "pki")
    port = free_port()
    return MosquittoServer(base, port, shipped_config(base, port, free_port(), free_port(), certs),
                           _find_binary(MOSQUITTO_BINARY, "mosquitto", "mosquitto"))
