"""The central service in a background thread, for end-to-end tests and benchmarks."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx

from gateway.central.access import Role, TokenStore
from gateway.central.commands import LEDGER_FILE, CommandKey, CommandLedger, CommandService
from gateway.central.config import CentralConfig
from gateway.central.service import run_central
from gateway.central.workers import WorkerPool
from gateway.testing.mqtt import wait_for
from gateway.testing.services import InfluxInstance, MosquittoInstance


def issue_token(data_dir: Path, role: Role = "operator", name: str = "tests") -> str:
    """A token in the central service's token file, as `sinkwatch central token create` makes one."""
    tokens = TokenStore.in_data_dir(data_dir)
    try:
        return tokens.create(f"{name}-{role}", role)[1]
    finally:
        tokens.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextlib.contextmanager
def running_central(mosquitto: MosquittoInstance, influxd: InfluxInstance, data_dir: Path,
                    *, database: str = "e2e", client_id: str = "central-e2e") -> Iterator[httpx.Client]:
    """Central service (ingestor + API on a free port, tokens required as deployed) against the given broker and
    InfluxDB; yields an HTTP client for its API holding an operator token, and stops the service on exit."""
    with serving(CentralConfig.model_validate({
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "client_id": client_id},
        "storage": {"kind": "influxdb", "url": influxd.url, "database": database},
        "api": {"host": "127.0.0.1", "port": 0, "auth": "token"},
        "data_dir": str(data_dir),
    })) as api:
        yield api


@contextlib.contextmanager
def serving(config: CentralConfig, *, start_timeout_s: float = 20.0,
            workers: WorkerPool | None = None) -> Iterator[httpx.Client]:
    """`run_central(config)` in a background thread (give `api.port: 0` for a free port); yields an HTTP client for
    its API (holding an operator token when the API needs tokens) and stops the service on exit. `workers`: ingest
    in worker processes (`serve --workers N`)."""
    headers = bearer(issue_token(config.data_dir)) if config.api.auth == "token" else {}
    stop = threading.Event()
    ports: list[int] = []
    thread = threading.Thread(target=run_central, args=(config,), daemon=True,
                              kwargs={"stop_event": stop, "ready_callback": ports.append, "workers": workers})
    thread.start()
    try:
        if not wait_for(lambda: bool(ports), timeout=start_timeout_s):
            raise RuntimeError(f"central service did not start within {start_timeout_s:g} s")
        with httpx.Client(base_url=f"http://127.0.0.1:{ports[0]}", timeout=10, headers=headers) as api:
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


def recording_commands(data_dir: Path) -> tuple[CommandService, list[tuple[str, bytes]]]:
    """A command service whose broker is a list: every command is "acknowledged" and kept there, for API tests
    that need the command routes without a broker (the ledger and the key are real, under `data_dir`)."""
    sent: list[tuple[str, bytes]] = []

    def publish(topic: str, payload: bytes, expiry_s: int) -> str | None:
        sent.append((topic, payload))
        return None

    return CommandService(CommandLedger(Path(data_dir) / LEDGER_FILE), CommandKey(data_dir), publish), sent
