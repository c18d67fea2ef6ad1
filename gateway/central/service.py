"""Run the central service: Ingestor (MQTT -> Store) and the HTTP API in one process.

Building blocks for embedding (the demo runs everything in one process)::

    store = open_store(config.storage)              # SqliteStore or InfluxStore
    ingestor = Ingestor(config.mqtt, store, config.data_dir)
    schedule = BudgetScheduler(store, config.budget)  # when budget.every is set: the carbon budget job
    ProductScheduler("soil" | "stems", store, config.soil, config.stems)  # when soil/stems.every is set
    alerts = AlertScheduler(AlertEvaluator(store, config.alerts))  # the alert rules, every alerts.every_s
    RollupScheduler(store, config.storage.rollup_every_s)  # storage.rollup (InfluxDB): the hourly rollup's job
    commands = CommandService(CommandLedger(path), CommandKey(data_dir), ingestor.publish_command)  # to stations
    app = create_app(store, ingestor, schedule, products, alerts=evaluator, commands=commands,
                     access=AccessControl(...))  # FastAPI
    run_central(config, stop_event=..., ready_callback=lambda port: ...)   # all of it, until stopped
"""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import uvicorn

from gateway.central.access import AccessControl, TokenStore
from gateway.central.alerts import AlertEvaluator, AlertScheduler
from gateway.central.api import ScheduleState, create_app
from gateway.central.budget import BudgetScheduler
from gateway.central.commands import LEDGER_FILE, CommandKey, CommandLedger, CommandService
from gateway.central.config import CentralConfig, StorageSettings
from gateway.central.ingest import Ingestor
from gateway.central.rollup import RollupScheduler
from gateway.central.soilstems import ProductScheduler
from gateway.central.store import SqliteStore, Store, StoreUnavailable
from gateway.central.store.writeguard import GUARD_FILE
from gateway.central.workers import PooledIngest, WorkerPool
from gateway.secretfile import reveal

log = logging.getLogger(__name__)


class ApiListenError(RuntimeError):
    """The HTTP API could not bind its address; the message names the keys to change."""


def tune_collector() -> None:
    """Garbage collection for a process that ingests: call once after start-up, from a command's entry point (it is
    process-wide). The ingest makes some ten objects per reading and keeps a group's readings for milliseconds; with
    CPython's default (a young-generation collection every 700 allocations) the collector walks those readings again
    and again, which doubled the validation's CPU at 100,000 readings/s (bench/ingest.py). A collection every 100,000
    allocations costs a few megabytes at most (the ingest path makes no reference cycles), and what start-up made
    is frozen out of every collection."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def open_store(settings: StorageSettings, data_dir: Path | None = None) -> Store:
    """The configured store. `data_dir`: a writer of readings (the ingest) shares the write guard there with every
    other writer on this host (`gateway.central.store.writeguard`; InfluxDB and VictoriaMetrics)."""
    if settings.kind == "sqlite":
        assert settings.path is not None  # guaranteed by StorageSettings validation
        try:
            return SqliteStore(settings.path)
        except (OSError, StoreUnavailable) as exc:
            problem = exc if isinstance(exc, StoreUnavailable) else f"cannot create its folder: {exc}"
            raise StoreUnavailable(
                f"storage.path {settings.path}: {problem}; set storage.path to a file (not a folder) in a folder "
                "this service's user may write, e.g. ./data/sinkwatch.sqlite") from None
    if settings.kind == "victoriametrics":
        from gateway.central.store.victoria import VictoriaStore

        assert settings.path is not None
        return VictoriaStore(settings.url, side_path=settings.path, insert_url=settings.insert_url,
                             select_url=settings.select_url, flush_urls=settings.flush_urls,
                             timeout_s=settings.timeout_s,
                             write_guard=data_dir / GUARD_FILE if data_dir is not None else None)
    assert settings.url is not None
    from gateway.central.store.influx import InfluxStore  # influxdb-client: only a service on InfluxDB imports it

    return InfluxStore(
        settings.url,
        database=settings.database,
        api=settings.api,
        retention_policy=settings.retention_policy,
        username=settings.username,
        password=reveal(settings.password),
        token=reveal(settings.token),
        org=settings.org,
        bucket=settings.bucket,
        timeout_s=settings.timeout_s,
        ca_file=settings.ca_file,
        write_guard=data_dir / GUARD_FILE if data_dir is not None else None,
        rollup_reads=settings.rollup,
    )


def open_access(config: CentralConfig) -> AccessControl:
    """The API's access control: tokens from `<data_dir>/api-tokens.sqlite`, or development mode (announced)."""
    if config.api.auth == "development":
        log.warning("API in DEVELOPMENT MODE: every request is served without a token (api.auth: development); "
                    "never use this for a deployment")
        return AccessControl.development()
    tokens = TokenStore.in_data_dir(config.data_dir)
    if not any(t.revoked is None for t in tokens.list()):
        log.warning("no API token issued yet: every data route answers 401 until one is created with "
                    "`sinkwatch central token create NAME --role reader -c CONFIG`")
    return AccessControl("token", tokens)


def run_central(
    config: CentralConfig,
    *,
    stop_event: threading.Event | None = None,
    ready_callback: Callable[[int], None] | None = None,
    store: Store | None = None,
    workers: WorkerPool | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (when called from the main thread) or until `stop_event` is set.

    `store` overrides `config.storage`. `ready_callback(port)` is called once the API listens and the ingestor
    has started, with the bound port (the useful part when `config.api.port` is 0, which binds a free port).
    `workers`: ingest worker processes share the stations' data channels (gateway/central/workers.py); this process
    then subscribes to the stations' status only.
    """
    stop = stop_event or threading.Event()
    own_store = store is None
    active_store = store if store is not None else open_store(config.storage, config.data_dir)
    # commands to stations: signed with the central command key, recorded in the ledger, sent through the
    # ingestor's MQTT client; their results come back through the ingestor (gateway/central/commands.py)
    ledger = CommandLedger(config.data_dir / LEDGER_FILE)
    commands = CommandService(ledger, CommandKey(config.data_dir),
                              publish=lambda topic, payload, expiry: ingest.publish_command(topic, payload, expiry))
    ingestor = Ingestor(config.mqtt, active_store, config.data_dir, dead_letter=config.dead_letter,
                        signatures=config.trust.signatures, replay_after_s=config.trust.replay_after_s,
                        command_results=commands.record, role="all" if workers is None else "status")
    ingest: Ingestor | PooledIngest = ingestor if workers is None else PooledIngest(ingestor, workers)
    schedule = BudgetScheduler(active_store, config.budget) if config.budget.every is not None else None
    products = {name: ProductScheduler(name, active_store, config.soil, config.stems)  # type: ignore[arg-type]
                for name, job in (("soil", config.soil), ("stems", config.stems)) if job.every is not None}
    evaluator = AlertEvaluator(active_store, config.alerts) if config.alerts.enabled else None
    alerting = AlertScheduler(evaluator) if evaluator is not None else None
    # the hourly rollup's job: here, beside the API that reads it; the ingest workers share the write guard with it
    rollup: RollupScheduler | None = None
    if config.storage.rollup:  # an InfluxDB setting: only then is influxdb-client imported
        from gateway.central.store.influx import InfluxStore

        if isinstance(active_store, InfluxStore):
            rollup = RollupScheduler(active_store, config.storage.rollup_every_s)
    tls: dict[str, str] = {}
    if config.api.tls_cert_file is not None and config.api.tls_key_file is not None:
        tls = {"ssl_certfile": str(config.api.tls_cert_file), "ssl_keyfile": str(config.api.tls_key_file)}
    access = open_access(config)
    schedules: dict[str, ScheduleState] = {**products, **({"rollup": rollup} if rollup is not None else {})}
    app = create_app(active_store, ingest, schedule, schedules, alerts=evaluator, commands=commands, access=access,
                     cors_origins=config.api.cors_origins, security=ingest,
                     status_page_public=config.api.status_page == "public")
    server = uvicorn.Server(
        uvicorn.Config(app, host=config.api.host, port=config.api.port, log_level="warning", lifespan="off",
                       **tls)  # type: ignore[arg-type]
    )
    # Signals are ours: uvicorn would install its own handlers only in the main thread, and it runs in another.
    previous_handlers = _install_signal_handlers(stop)

    def serve_api() -> None:
        with contextlib.suppress(SystemExit):  # uvicorn's answer to an address it cannot bind: ApiListenError below
            server.run()

    server_thread = threading.Thread(target=serve_api, name="sinkwatch-api", daemon=True)
    try:
        ingestor.start()
        if workers is not None:
            workers.start()
        if schedule is not None:
            schedule.start()
        for product in products.values():
            product.start()
        if alerting is not None:
            alerting.start()
        if rollup is not None:
            rollup.start()
        server_thread.start()
        while not server.started:
            if not server_thread.is_alive():
                raise ApiListenError(
                    f"api.port: the HTTP API could not listen on {config.api.host}:{config.api.port} (another "
                    "program holds the port, or the address is not this host's); set api.host and api.port to a free "
                    "address and port (api.port 0 picks a free one)")
            if stop.wait(0.05):
                break
        if server.started:
            port = _bound_port(server, config.api.port)
            log.info("central service: API on %s://%s:%s, MQTT %s:%s%s", config.api.scheme, config.api.host, port,
                     config.mqtt.host, config.mqtt.port, " (TLS)" if config.mqtt.tls else "")
            if ready_callback is not None:
                ready_callback(port)
        stop.wait()
    finally:
        server.should_exit = True
        server_thread.join(timeout=10) if server_thread.is_alive() else None
        if workers is not None:
            workers.stop()
        ingestor.stop()
        if schedule is not None:
            schedule.stop()
        for product in products.values():
            product.stop()
        if alerting is not None:
            alerting.stop()
        if rollup is not None:
            rollup.stop()
        if own_store:
            active_store.close()
        ledger.close()
        if access.tokens is not None:
            access.tokens.close()
        _restore_signal_handlers(previous_handlers)
        log.info("central service stopped")


def _bound_port(server: uvicorn.Server, configured: int) -> int:
    for listener in getattr(server, "servers", []):
        for sock in listener.sockets:
            return int(sock.getsockname()[1])
    return configured


_Handler = Callable[[int, FrameType | None], object] | int | None


def _install_signal_handlers(stop: threading.Event) -> dict[int, _Handler]:
    if threading.current_thread() is not threading.main_thread():
        return {}

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    previous: dict[int, _Handler] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.getsignal(sig)
        signal.signal(sig, _on_signal)
    return previous


def _restore_signal_handlers(previous: dict[int, _Handler]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def wait_for(condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.05) -> bool:
    """Poll `condition` until true or the timeout passes; for callers that wait on the service (tests, demo)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval_s)
    return condition()
