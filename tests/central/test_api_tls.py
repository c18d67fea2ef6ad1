"""The HTTP API served over HTTPS by uvicorn (api.tls_cert_file/api.tls_key_file), with a CA made here."""

from __future__ import annotations

import ssl
import threading
from pathlib import Path

import httpx
import pytest

from gateway.central.config import ApiSettings, CentralConfig, MqttSettings, StorageSettings
from gateway.central.service import run_central
from gateway.net import free_port
from gateway.testing.tlsfiles import make_pki

pytestmark = pytest.mark.integration


def test_the_api_answers_over_https_and_only_to_clients_that_trust_its_ca(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    server = pki.server("api", ("localhost",))
    config = CentralConfig(
        mqtt=MqttSettings(port=free_port()),  # no broker: the API answers regardless
        storage=StorageSettings(kind="sqlite", path=tmp_path / "store.sqlite"),
        api=ApiSettings(port=0, tls_cert_file=server.cert, tls_key_file=server.key),
        data_dir=tmp_path / "central",
    )
    ready: list[int] = []
    stop = threading.Event()
    thread = threading.Thread(target=run_central, args=(config,),
                              kwargs={"stop_event": stop, "ready_callback": ready.append}, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if ready or not thread.is_alive():
                break
            stop.wait(0.05)
        assert ready, "the API did not start"
        url = f"https://localhost:{ready[0]}/api/v1/health"
        response = httpx.get(url, verify=ssl.create_default_context(cafile=str(pki.ca_file)), timeout=5)
        assert response.status_code == 200
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(url, timeout=5)  # the system store does not know the private CA
        with pytest.raises(httpx.HTTPError):
            httpx.get(url.replace("https://", "http://"), timeout=5)  # no plain HTTP on the TLS port
    finally:
        stop.set()
        thread.join(15)


def test_api_tls_settings_are_checked_at_load(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    server = pki.server("api")
    with pytest.raises(ValueError, match=r"api.tls_cert_file and api.tls_key_file go together"):
        ApiSettings(tls_cert_file=server.cert)
    server.key.chmod(0o640)
    with pytest.raises(ValueError, match=f"api.tls_key_file: .*chmod 600 {server.key}"):
        ApiSettings(tls_cert_file=server.cert, tls_key_file=server.key)
