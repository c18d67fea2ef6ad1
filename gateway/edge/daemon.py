"""The station edge daemon: polls every configured sensor on a drift-free schedule, buffers every reading on
disk, and runs the one delivery path (gateway/edge/delivery.py) that sends the buffer and the other outboxes to the
central service and deletes an item only on its receipt.

Threads: one `SerialBus` per serial port (gateway/edge/bus.py) owns that RS-485 line and polls every device on it;
sensors on no serial line (Modbus TCP, ...) share one `PollScheduler` in the calling thread; delivery has its
own. All of them hand readings to `_store`, which queues them for the `buffer-writer` thread: it commits
whatever has arrived in one SQLite transaction (group commit), so a poll thread never waits for the disk.

Failure policy (STYLE.md principle 4): a device failure is that device's alone. It is counted by kind, logged once
when the device becomes unavailable and once when it is back (not on every failed poll), retried with a capped
backoff, and never stops the other sensors or the daemon.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from typing import TYPE_CHECKING

from gateway.configfile import ConfigError
from gateway.driver_api import LineDriver, SerialSettings, is_stream_driver, serial_settings_of
from gateway.edge.buffer import ReadingBuffer
from gateway.edge.bus import (
    MAX_RETRY_BACKOFF_S,
    PollScheduler,
    SensorHealth,
    SensorRunner,
    SerialBus,
)
from gateway.edge.config import StationConfig
from gateway.edge.delivery import Delivery, DeliverySettings
from gateway.edge.live import StatusWriter
from gateway.edge.outbox import ReadingsOutbox
from gateway.edge.signer import ChainSigner
from gateway.edge.streams.group import StreamGroup
from gateway.edge.systemd import Liveness, Watchdog, notify
from gateway.edge.telemetry import HealthOutbox, HealthSampler, TelemetryRunner
from gateway.model import Reading
from gateway.trust.keys import load_private_key

if TYPE_CHECKING:
    from gateway.edge.commands import StationCommands
    from gateway.edge.fluxrunner import FluxRunner

log = logging.getLogger("sinkwatch.edge")

# How long the buffer writer lets readings gather before committing them: bounds both the commit rate (each is an
# fsync) and how long a polled reading lives only in memory.
COMMIT_GATHER_S = 0.05
# the longest the idle buffer writer waits for readings (it beats its liveness and retries a refusing disk then)
WRITER_IDLE_S = 2.0
LOOP_BEAT_S = 5.0  # the longest an idle daemon loop (delivery, polls, status writer) goes without beating
# how long a stop waits for the command handler (a station check in progress waits for the sensors' first polls)
CHECK_JOIN_S = 20.0

__all__ = ["MAX_RETRY_BACKOFF_S", "SensorHealth", "SensorRunner", "StationDaemon", "plan_lines"]


def plan_lines(
    runners: list[SensorRunner],
) -> tuple[dict[str, tuple[SerialSettings, list[SensorRunner]]], list[SensorRunner]]:
    """Split runners into one group per serial port (owned by a SerialBus) and the rest (TCP, other transports).

    A sensor goes on a line when its config names serial settings and its driver can `attach` to a shared line;
    config validation (gateway/edge/config.py) has already refused ports whose devices disagree on settings.
    """
    lines: dict[str, tuple[SerialSettings, list[SensorRunner]]] = {}
    direct: list[SensorRunner] = []
    for runner in runners:
        settings = serial_settings_of(runner.config)
        if settings is None or not isinstance(runner.driver, LineDriver):
            direct.append(runner)
            continue
        lines.setdefault(settings.port, (settings, []))[1].append(runner)
    return lines, direct


def delivery_settings(config: StationConfig) -> DeliverySettings:
    buffer = config.buffer
    return DeliverySettings(max_in_flight=buffer.max_in_flight, max_unconfirmed=buffer.max_unconfirmed,
                            receipt_timeout_s=buffer.receipt_timeout_s, idle_wait_s=buffer.publish_interval_s)


class StationDaemon:
    def __init__(self, config: StationConfig) -> None:
        self.config = config
        # A signed station's new batch is made durable by the signer's new link, a FULL commit to the same file
        # before its PUBLISH, not by an fsync of its own (gateway/edge/buffer.py)
        try:
            self.buffer = ReadingBuffer(config.buffer.path, durable_claims=config.signing_key is None)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"{config.source}: buffer.path: cannot open the buffer {config.buffer.path}: {exc}; set buffer.path "
                "to a file (not a folder) in a folder the daemon's user may write, e.g. "
                "/var/lib/sinkwatch/buffer.sqlite") from None
        # one MQTT client and one delivery loop for every channel; each channel adds its outbox
        self.signer: ChainSigner | None = None
        if config.signing_key is not None:
            self.signer = ChainSigner(load_private_key(config.signing_key), config.buffer.path)
        else:
            log.warning("signing_key is not set in the station config: items are sent unsigned, and a central "
                        "service that requires signatures (its default) stores none of them")
        self.delivery = Delivery(config.site, config.station, config.mqtt, delivery_settings(config),
                                 signer=self.signer)
        # the readings of one poll round (committed in a few groups) leave together as one batch
        self.delivery.add_channel(ReadingsOutbox(self.buffer, config.site, config.station, config.buffer.batch_size),
                                  linger_s=config.buffer.publish_interval_s)
        # streaming instruments (sonics, gas analyzers) run in their own threads: gateway/edge/streams/
        self.streams = StreamGroup(config, self._store)
        # fluxes from the streams' raw archive, computed in their own thread (gateway/edge/fluxrunner.py)
        self.flux: FluxRunner | None = None
        if config.flux is not None:
            from gateway.edge.fluxrunner import FluxRunner  # numpy and the engine only when fluxes are on

            self.flux = FluxRunner.from_config(config, self.streams.settings.archive_dir)
            if self.flux.setup.publish:
                self.delivery.add_channel(self.flux.outbox)
                self.flux.notify = lambda: self.delivery.notify("fluxes")
        if self.streams.uplink is not None:
            self.delivery.add_channel(self.streams.uplink)
            self.streams.uplink.notify = lambda: self.delivery.notify("raw")
        self.runners = [SensorRunner(cls, cfg, config.station) for cls, cfg in config.sensors
                        if not is_stream_driver(cls)]
        # health reports of the station itself, on their own channel (gateway/edge/telemetry.py)
        self.telemetry: TelemetryRunner | None = None
        if config.telemetry.enabled:
            outbox = HealthOutbox(config.buffer.path, config.site, config.station,
                                  max_backlog=config.telemetry.max_backlog)
            self.delivery.add_channel(outbox)
            sampler = HealthSampler(config.site, config.station, interval_s=config.telemetry.interval_s,
                                    disk_path=config.buffer.path.parent)
            self.telemetry = TelemetryRunner(self, outbox, sampler, notify=lambda: self.delivery.notify("health"))
        # commands from the central service on the station's own downlink, answered on command_results
        # (gateway/edge/commands.py); `run` re-executes the daemon when one asks for a restart
        self.commands: StationCommands | None = None
        self.restart_reason: str | None = None
        self._run_stop: threading.Event | None = None
        if config.commands.enabled:
            from gateway.edge.commands import CommandResultsOutbox, StationCommands

            results = CommandResultsOutbox(config.buffer.path, config.site, config.station)
            self.delivery.add_channel(results)
            self.commands = StationCommands(self, results)
            self.commands.notify = lambda: self.delivery.notify("command_results")
            self.delivery.add_downlink(self.commands.topic, self.commands.submit)
        elif config.commands.accept == "signed":
            log.info("commands off: commands.trusted_keys is empty (the central service's `sinkwatch central station "
                     "command-key` prints its key)")
        lines, direct = plan_lines(self.runners)
        # One owner per serial line, each in its own thread; everything else shares one scheduler thread.
        self.buses = [SerialBus(settings, runners, self._store) for settings, runners in lines.values()]
        self.direct = PollScheduler(direct, self._store)
        # Poll threads hand readings over here and go back to their line; the buffer writer thread commits them
        # (group commit: whatever arrived while the previous commit was syncing goes into the next one).
        self._incoming: list[Reading] = []
        self._incoming_lock = threading.Lock()
        self._incoming_ready = threading.Event()
        self.buffer_errors = 0
        # readings already read but not yet committed to disk (only while the disk refuses writes)
        self._unbuffered: list[Reading] = []
        # taken by run() just before it closes the buffer and outboxes: what health() answers after the stop
        self._final_health: dict[str, object] | None = None
        # for the status snapshot (`sinkwatch live`, gateway/edge/live.py): every reading handed over, and the
        # latest one per sensor and variable
        self.readings_received = 0
        self.latest: dict[str, dict[str, Reading]] = {}
        # heartbeats of the loops; the systemd watchdog is pinged only while none is hung (gateway/edge/systemd.py)
        self.liveness = Liveness()
        self.watchdog = Watchdog(self.liveness, status=self._status_line)

    @property
    def readings_held_in_memory(self) -> int:
        """Readings the disk buffer refused and the writer holds until it takes them (0 while the disk writes)."""
        return len(self._unbuffered)

    def health(self) -> dict[str, object]:
        if self._final_health is not None:
            return self._final_health  # stopped: the files behind the live figures are closed
        return {
            "site": self.config.site,
            "station": self.config.station,
            "broker_connected": self.delivery.connected,
            "buffered_readings": self.buffer.pending_readings() + len(self._unbuffered) + len(self._incoming),
            "buffer_errors": self.buffer_errors,
            "readings_held_in_memory": len(self._unbuffered),
            "delivery": self.delivery.health(),
            "sensors": [vars(r.health) for r in self.runners],
            "streams": self.streams.health(),
            "lines": [bus.health() for bus in self.buses],
            "flux": self.flux.health() if self.flux is not None else None,
            "commands": self.commands.health() if self.commands is not None else None,
            "telemetry": {"reports": self.telemetry.reports, "failures": self.telemetry.failures,
                          "dropped": self.telemetry.outbox.dropped, "held": self.telemetry.held}
            if self.telemetry is not None else None,
        }

    def request_restart(self, reason: str) -> None:
        """Stop, so that `sinkwatch station run` starts the daemon again (gateway/edge/cli.py re-executes it)."""
        log.warning("restarting the daemon: %s", reason)
        self.restart_reason = reason
        if self._run_stop is not None:
            self._run_stop.set()

    def trial_problem(self) -> str | None:
        """Why the daemon is not healthy enough to keep a pushed config (gateway/edge/configtrial.py), or None:
        no loop hung, connected to the broker, subscribed to its commands."""
        hung = self.liveness.hung()
        if hung:
            return "hung: " + ", ".join(f"{name} silent for {silent:.0f} s" for name, silent in hung)
        if not self.delivery.connected:
            problem = self.delivery.last_connect_problem
            return "not connected to the broker" + (f" ({problem})" if problem else "")
        if self.commands is not None:
            subscribed = self.delivery.subscribed(self.commands.topic)
            if subscribed is False:
                return f"the broker refused the subscription to {self.commands.topic}"
            if subscribed is None:
                return f"not yet subscribed to {self.commands.topic}"
        return None

    def _status_line(self) -> str:
        """One line for `systemctl status` (sd_notify STATUS=)."""
        broker = "connected" if self.delivery.connected else "broker unreachable"
        available = sum(1 for r in self.runners if r.health.available)
        return f"{broker}; {available}/{len(self.runners)} polled sensors answering"

    def _store(self, readings: list[Reading]) -> None:
        """Queue readings for the buffer writer; called from every poll thread, never waits for the disk."""
        if not readings:
            return
        with self._incoming_lock:
            self._incoming.extend(readings)
            self.readings_received += len(readings)
            for reading in readings:
                self.latest.setdefault(reading.sensor, {})[reading.variable] = reading
        self._incoming_ready.set()

    def _take_incoming(self) -> list[Reading]:
        with self._incoming_lock:
            taken, self._incoming = self._incoming, []
            self._incoming_ready.clear()
        return taken

    def _write_loop(self, done: threading.Event) -> None:
        beat = self.liveness.register("buffer-writer", self.config.watchdog.hung_after_s)
        idle_s = min(WRITER_IDLE_S, self.config.watchdog.hung_after_s / 4)
        while not done.is_set():
            beat()
            if not self._incoming_ready.wait(idle_s) and not self._unbuffered:
                continue  # nothing new, and nothing held back by a refusing disk to retry
            # Let a few polls' readings gather: one commit (and one fsync) per batch, not per poll. A plain sleep: a
            # wait on an event costs about twice the CPU per wake-up (bench/stream_reads.py).
            time.sleep(COMMIT_GATHER_S)
            self._commit(self._take_incoming())

    def _commit(self, readings: list[Reading]) -> None:
        """Append to the disk buffer (only the writer thread, or the main thread once it has stopped)."""
        pending = self._unbuffered + readings
        if not pending:
            return
        try:
            self.buffer.append(pending)
        except sqlite3.Error as exc:
            self.buffer_errors += 1
            if not self._unbuffered:
                log.error("cannot write the buffer %s: %s (check free disk space and permissions); "
                          "holding %d readings in memory and retrying", self.buffer.path, exc, len(pending))
            self._unbuffered = pending
            return
        if self._unbuffered:
            log.info("buffer %s writable again; %d held readings saved", self.buffer.path, len(self._unbuffered))
        self._unbuffered = []
        self.delivery.notify("readings")

    def run(self, stop: threading.Event, drain_timeout_s: float = 5.0) -> None:
        log.info("station %s/%s starting: %d sensors, buffer %s holds %d readings",
                 self.config.site, self.config.station, len(self.runners), self.buffer.path,
                 self.buffer.pending_readings())
        self._run_stop = stop
        hung_after = self.config.watchdog.hung_after_s
        # an idle loop beats at least this often, so that only a stuck one is silent for hung_after_s
        beat_every_s = min(LOOP_BEAT_S, hung_after / 4)
        self.delivery.beat = self.liveness.register("delivery", hung_after)
        self.delivery.beat_every_s = beat_every_s
        for bus in self.buses:
            bus.scheduler.beat = self.liveness.register(f"polls:{bus.settings.port}", hung_after)
            bus.scheduler.beat_every_s = beat_every_s
        if self.direct.runners:
            self.direct.beat = self.liveness.register("polls", hung_after)
            self.direct.beat_every_s = beat_every_s
        self.delivery.start()
        writer_done = threading.Event()
        writer = threading.Thread(target=self._write_loop, args=(writer_done,), name="buffer-writer", daemon=True)
        writer.start()
        bus_threads = [threading.Thread(target=bus.run, args=(stop,), name=f"bus:{bus.settings.port}", daemon=True)
                       for bus in self.buses]
        for thread in bus_threads:
            thread.start()
        # the streams thread beats like the poll loops: one that ended (an exception) or hangs is named hung
        self.streams.start(stop, self.liveness.register("streams", hung_after) if self.streams.runners else None,
                           beat_every_s)
        flux_thread = None
        if self.flux is not None:
            flux_thread = threading.Thread(target=self.flux.run, args=(stop,), name="flux-runner", daemon=True)
            flux_thread.start()
        # an atomic JSON status file beside the buffer for `sinkwatch live` and `station check`: written when they
        # ask, and once a minute (gateway/edge/live.py)
        status = StatusWriter(self)
        status_thread = threading.Thread(target=status.run, name="status-writer", daemon=True,
                                         args=(stop, self.liveness.register("status-writer", hung_after),
                                               beat_every_s))
        status_thread.start()
        telemetry_thread = None
        if self.telemetry is not None:
            telemetry_thread = threading.Thread(target=self.telemetry.run, args=(stop,), name="telemetry", daemon=True)
            telemetry_thread.start()
        commands_thread = None
        if self.commands is not None:
            commands_thread = threading.Thread(target=self.commands.run, name="commands", daemon=True,
                                               args=(stop, self.liveness.register("commands", hung_after)))
            commands_thread.start()
        watchdog_thread = None
        if self.watchdog.enabled:
            watchdog_thread = threading.Thread(target=self.watchdog.run, args=(stop,), name="watchdog", daemon=True)
            watchdog_thread.start()
        notify("READY=1")  # every thread runs: systemd may call the start done (Type=notify)
        try:
            self.direct.run(stop)
        finally:
            stop.set()
            status.interrupt()  # its wait ends now: no snapshot after the final one below
            if watchdog_thread is not None:
                watchdog_thread.join(timeout=5)
            self.streams.stop()
            if flux_thread is not None:
                flux_thread.join(timeout=30)
            for thread in bus_threads:
                thread.join(timeout=30)
            for runner in self.direct.runners:
                runner.close()
            writer_done.set()
            self._incoming_ready.set()  # wakes the idle writer now
            writer.join(timeout=30)
            self._commit(self._take_incoming())
            if self.delivery.connected:
                self.delivery.wait_confirmed(drain_timeout_s)
            self.delivery.stop()
            status_thread.join(timeout=5)
            if telemetry_thread is not None:
                telemetry_thread.join(timeout=5)
            if commands_thread is not None:
                commands_thread.join(timeout=CHECK_JOIN_S)
            status.write(running=False)
            self._final_health = self.health()
            if self.flux is not None:
                self.flux.outbox.close()
            if self.streams.uplink is not None:
                self.streams.uplink.close()
            if self.telemetry is not None:
                self.telemetry.outbox.close()
            if self.commands is not None:
                self.commands.outbox.close()
            left = self.buffer.pending_readings()
            self.buffer.close()
            if self.signer is not None:
                self.signer.close()
            log.info("station stopped; %d readings remain buffered for the next start", left)
