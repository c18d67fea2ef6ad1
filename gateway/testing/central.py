"""The central service in a background thread, for end-to-end tests and benchmarks."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx

from gateway.central.config import CentralConfig
from gateway.central.service import run_central
from gateway.testing.mqtt import wait_for
from gateway.testing.services import InfluxInstance, MosquittoInstance


@contextlib.contextmanager
def running_central(mosquitto: MosquittoInstance, influxd: InfluxInstance, data_dir: Path,
                    *, database: str = "e2e", client_id: str = "central-e2e") -> Iterator[httpx.Client]:
    """Central service (ingestor + API on a free port) against the given broker and InfluxDB; yields an HTTP
    client for its API and stops the service on exit."""
    config = CentralConfig.model_validate({
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "client_id": client_id},
        "storage": {"kind": "influxdb", "url": influxd.url, "database": database},
        "api": {"host": "127.0.0.1", "port": 0},
        "data_dir": str(data_dir),
    })
    stop = threading.Event()
    ports: list[int] = []
    thread = threading.Thread(target=run_central, args=(config,),
                              kwargs={"stop_event": stop, "ready_callback": ports.append}, daemon=True)
    thread.start()
    try:
        if not wait_for(lambda: bool(ports), timeout=20):
            raise RuntimeError("central service did not start within 20 s")
        with httpx.Client(base_url=f"http://127.0.0.1:{ports[0]}", timeout=10) as api:
            yield api
    finally:
        stop.set()
        thread.join(timeout=15)


def provisioned_key(central_data_dir: Path, site: str, station: str, key_path: Path) -> Path:
    """A station signing key made at `key_path` and registered with the central service of `central_data_dir`
    (what `sinkwatch station provision` does), for a station config's `signing_key`."""
    from gateway.trust.keys import KeyRegistry, generate_key

    key = generate_key(key_path)
    KeyRegistry(central_data_dir).register(site, station, key.public_key())
    return key_path
