"""The shipped broker configuration (deploy/mosquitto/sinkwatch.conf + sinkwatch.acl) on a real, private Mosquitto.

Only what cannot work in a test is substituted (paths, ports, log destination, a TLS certificate made here); every
substitution must find its line, so a change to the shipped files that breaks the substitution fails loudly rather
than silently running something else. The password file is made with mosquitto_passwd, as the config's comments
tell an operator to. Used by tests/test_deploy_mosquitto.py and the chaos harness (gateway/testing/chaos.py).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from gateway.net import free_port
from gateway.testing.services import MOSQUITTO_BINARY, MosquittoServer, ServiceError, _find_binary

DEPLOY_MOSQUITTO = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
CENTRAL_USER = "sinkwatch-central"


def shipped_config(base: Path, port: int, tls_port: int) -> str:
    """sinkwatch.conf with test-only paths and ports; raises ServiceError if a line to substitute is gone."""
    text = (DEPLOY_MOSQUITTO / "sinkwatch.conf").read_text(encoding="utf-8")
    substitutions = {
        "persistence_location /var/lib/mosquitto/": f"persistence_location {base}/",
        "password_file /etc/mosquitto/passwd": f"password_file {base / 'passwd'}",
        "acl_file /etc/mosquitto/sinkwatch.acl": f"acl_file {DEPLOY_MOSQUITTO / 'sinkwatch.acl'}",
        "listener 8883": f"listener {tls_port} 127.0.0.1",
        "certfile /etc/mosquitto/certs/broker.crt": f"certfile {base / 'broker.crt'}",
        "keyfile /etc/mosquitto/certs/broker.key": f"keyfile {base / 'broker.key'}",
        "cafile /etc/mosquitto/certs/ca.crt": f"cafile {base / 'broker.crt'}",
        "listener 1883 127.0.0.1": f"listener {port} 127.0.0.1",
        "log_dest syslog": f"log_dest file {base / 'mosquitto.log'}",
    }
    lines = text.splitlines()
    for old, new in substitutions.items():
        hits = [i for i, line in enumerate(lines) if line.strip() == old]
        if len(hits) != 1:
            raise ServiceError(f"deploy/mosquitto/sinkwatch.conf has no single line {old!r}: update "
                               "gateway/testing/shipped_broker.py with the shipped file")
        lines[hits[0]] = new
    return "\n".join(lines) + "\n"


def shipped_mosquitto(base: Path, passwords: dict[str, str]) -> MosquittoServer:
    """A `MosquittoServer` (not started) running the shipped conf and ACL in `base`, with one broker user per
    entry of `passwords` (user name -> password; stations log in with their station id, the central service as
    `sinkwatch-central`) and a self-signed certificate for the TLS listener."""
    passwd = _find_binary("/usr/bin/mosquitto_passwd", "mosquitto_passwd", "mosquitto")
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ServiceError("openssl is needed to make the TLS listener's test certificate (Debian package openssl)")
    base.mkdir(parents=True, exist_ok=True)
    for i, (user, password) in enumerate(passwords.items()):
        subprocess.run([passwd, *(["-c"] if i == 0 else []), "-b", str(base / "passwd"), user, password],
                       check=True, capture_output=True)
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-keyout", str(base / "broker.key"), "-out", str(base / "broker.crt")],
                   check=True, capture_output=True)
    port = free_port()
    return MosquittoServer(base, port, shipped_config(base, port, free_port()),
                           _find_binary(MOSQUITTO_BINARY, "mosquitto", "mosquitto"))
