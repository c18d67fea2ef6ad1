"""Horizontal ingest: stateless ingest workers that share the stations' stream through an MQTT v5 shared subscription.

    sinkwatch central ingest -c central.yaml --name w1      one worker (run several, here or on this host)
    sinkwatch central serve -c central.yaml --workers 2     the API and jobs, N workers as child processes

A worker is an `Ingestor` of the stations' data channels subscribed as `$share/<group>/sinkwatch/v1/+/+/<channel>`:
the broker hands each message to one member of the group. Workers keep nothing of their own that matters: what
decides write-once is the store's write guard (`<data_dir>/influx-write-guard`, shared by the processes of this
host), the receipts name what each worker stored (ranges in any order), the chain tracker falls back to the
store's ledger when another worker moved a chain on. Each worker has its own dead-letter file
(`dead-letter.<name>.jsonl`) and writes its counters to `<data_dir>/workers/<name>.json` every second, which
`serve --workers` adds up for `/api/v1/health`.

A worker connects with a clean start and no session: Mosquitto 2.0 drops the unacknowledged messages of a member
whose connection ends (and would keep handing a share of the stream to a member whose session lives on), so a
worker killed with -9 loses its in-flight messages at the broker; the stations have no receipt for them and send
them again, to the live members (docs/scaling.md has the measured behaviour and the kill test).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gateway.central.config import CentralConfig
from gateway.central.ingest import Ingestor
from gateway.contract import StationStatus

log = logging.getLogger(__name__)

WORKERS_DIR = "workers"
SHARED_GROUP = "sinkwatch-ingest"
STATUS_INTERVAL_S = 1.0


def worker_ingestor(config: CentralConfig, name: str, *, group: str = SHARED_GROUP) -> Ingestor:
    """The Ingestor of worker `name` (not started), on the configured store with the host's write guard."""
    from gateway.central.service import open_store  # the service module runs worker pools: it imports this one

    store = open_store(config.storage, config.data_dir)
    settings = config.mqtt.model_copy(update={"client_id": f"{config.mqtt.client_id}-{name}"[:64]})
    return Ingestor(settings, store, config.data_dir, dead_letter=config.dead_letter,
                    signatures=config.trust.signatures, replay_after_s=config.trust.replay_after_s,
                    role="data", shared_group=group, dead_letter_file=f"dead-letter.{name}.jsonl")


def run_ingest_worker(config: CentralConfig, name: str, *, group: str = SHARED_GROUP,
                      stop_event: threading.Event | None = None) -> None:
    """Run one worker until `stop_event` (or SIGTERM/SIGINT when called from the main thread)."""
    stop = stop_event or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    ingestor = worker_ingestor(config, name, group=group)
    status = config.data_dir / WORKERS_DIR / f"{name}.json"
    ingestor.start()
    log.info("ingest worker %s: member of shared subscription group %s on %s:%s", name, group, config.mqtt.host,
             config.mqtt.port)
    try:
        while not stop.wait(STATUS_INTERVAL_S):
            write_status(status, name, ingestor, running=True)
    finally:
        ingestor.stop()
        ingestor.store.close()
        write_status(status, name, ingestor, running=False)
        log.info("ingest worker %s stopped", name)


def write_status(path: Path, name: str, ingestor: Ingestor, *, running: bool) -> None:
    """The worker's counters for `serve --workers` and operators, replaced atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot = {"name": name, "pid": os.getpid(), "running": running, "updated": time.time(),
                "mqtt_connected": ingestor.mqtt_connected, "storage_available": ingestor.storage_available,
                "counters": ingestor.counters()}
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(snapshot), encoding="utf-8")
    temporary.replace(path)


def read_statuses(data_dir: Path) -> list[dict[str, Any]]:
    folder = data_dir / WORKERS_DIR
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            found.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue  # being replaced this instant, or left half-written by a power cut: the next second tells
    return found


def add_counters(total: dict[str, Any], more: Mapping[str, Any]) -> dict[str, Any]:
    """Counters of several ingestors added up: numbers summed, counts by reason summed per reason."""
    for key, value in more.items():
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int | float):
            total[key] = total.get(key, 0) + value
        elif isinstance(value, dict) and all(isinstance(v, int | float) for v in value.values()):
            into = total.setdefault(key, {})
            if isinstance(into, dict):
                for reason, count in value.items():
                    into[reason] = into.get(reason, 0) + count
    return total


class WorkerPool:
    """N `sinkwatch central ingest` child processes of `serve --workers N`: started with the service, started again
    (after 1 s, doubling to 30 s while it keeps failing) when one ends, stopped (SIGTERM, then SIGKILL) with it."""

    def __init__(self, config_path: Path, data_dir: Path, count: int, *,
                 command: Callable[[str], list[str]] | None = None) -> None:
        if count < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.config_path = config_path
        self.data_dir = data_dir
        self.names = [f"w{index + 1}" for index in range(count)]
        self._command = command or (lambda name: [sys.executable, "-m", "gateway.cli", "central", "ingest", "-c",
                                                  str(config_path), "--name", name])
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._restarts = dict.fromkeys(self.names, 0)
        self._next_start = dict.fromkeys(self.names, 0.0)
        self._backoff = dict.fromkeys(self.names, 1.0)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        for name in self.names:
            self._spawn(name)
        self._thread = threading.Thread(target=self._supervise, name="sinkwatch-workers", daemon=True)
        self._thread.start()

    def _spawn(self, name: str) -> None:
        with self._lock:
            self._children[name] = subprocess.Popen(self._command(name))
        log.info("ingest worker %s started (pid %s)", name, self._children[name].pid)

    def _supervise(self) -> None:
        while not self._stop.wait(0.5):
            for name in self.names:
                with self._lock:
                    child = self._children.get(name)
                if child is None or child.poll() is None:
                    continue
                now = time.monotonic()
                if self._next_start[name] == 0.0:
                    log.warning("ingest worker %s (pid %s) ended with %s; starting it again in %.0f s", name,
                                child.pid, child.returncode, self._backoff[name])
                    self._next_start[name] = now + self._backoff[name]
                elif now >= self._next_start[name] and not self._stop.is_set():
                    self._backoff[name] = min(2 * self._backoff[name], 30.0)
                    self._next_start[name] = 0.0
                    self._restarts[name] += 1
                    self._spawn(name)

    def pids(self) -> dict[str, int | None]:
        with self._lock:
            return {name: child.pid if child.poll() is None else None for name, child in self._children.items()}

    def counters(self) -> dict[str, Any]:
        total: dict[str, Any] = {}
        workers = []
        pids = self.pids()
        for status in read_statuses(self.data_dir):
            if status.get("name") not in pids:
                continue
            add_counters(total, status.get("counters") or {})
            own = status.get("counters") or {}
            workers.append({"name": status["name"], "pid": pids[status["name"]], "restarts":
                            self._restarts.get(status["name"], 0), "mqtt_connected": status.get("mqtt_connected"),
                            "storage_available": status.get("storage_available"),
                            "messages_received": own.get("messages_received", 0), "queue_depth":
                            own.get("queue_depth", 0),
                            "status_age_s": round(time.time() - float(status.get("updated", 0)), 1)})
        total["ingest_workers"] = workers
        return total

    def stop(self, timeout_s: float = 15.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        with self._lock:
            children = list(self._children.values())
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for child in children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(5)


class PooledIngest:
    """What the API reads of the ingest (`IngestState`) when workers do it: the status ingestor's connection and
    station statuses, every worker's counters added to its own; commands go out through its MQTT client."""

    def __init__(self, status: Ingestor, pool: WorkerPool) -> None:
        self.status = status
        self.pool = pool

    @property
    def mqtt_connected(self) -> bool:
        return self.status.mqtt_connected

    @property
    def storage_available(self) -> bool:
        return self.status.storage_available

    def counters(self) -> dict[str, Any]:
        workers = self.pool.counters()
        total = add_counters(self.status.counters(), workers)
        total["ingest_workers"] = workers["ingest_workers"]
        return total

    def station_statuses(self) -> dict[tuple[str, str], StationStatus]:
        return self.status.station_statuses()

    def security_counters(self) -> dict[str, Any]:
        own = self.status.security_counters()
        refused = self.pool.counters().get("malformed", {})
        own["revoked_station_messages"] += int(refused.get("revoked_station", 0)) if isinstance(refused, dict) else 0
        return own

    def publish_command(self, topic: str, payload: bytes, expiry_s: int, timeout_s: float = 5.0) -> str | None:
        return self.status.publish_command(topic, payload, expiry_s, timeout_s)
