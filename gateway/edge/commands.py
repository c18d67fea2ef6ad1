"""Commands from the central service, on the station (docs/operations.md, "Remote configuration and commands").

    broker ── sinkwatch/v1/<site>/<station>/commands ──▶ Delivery (a downlink: handed over, queued)
        ──▶ `commands` thread, StationCommands: one command at a time
              read it (a payload without a readable id is counted and logged: there is no one to answer)
              verify: its site and station, `expires` (when the clock is synchronised), the signature against
                      commands.trusted_keys (commands.accept: signed), an id not seen before (commands_seen)
              act:    push_config (gateway/edge/configtrial.py), restart, check, clock_check
        ──▶ CommandResultsOutbox (durable, a seq) ──▶ Delivery, channel command_results ──▶ central service
        ◀── receipt: the result leaves the outbox

Every command the station can read an id from is answered: steps (`accepted`, `restarting`) and exactly one
final outcome (`ok`, `rejected` with the reason, `rolled_back` with the reason, `failed`). The ids acted on are kept
in the buffer file (`commands_seen`) before anything is done, so a command the broker delivers again (a reconnect
before its PUBACK, a restart) is not done twice. A restart (asked for, or to apply a config) re-executes the daemon:
the outcome is reported by the daemon that comes up, from `commands_seen` (a restart) or `P.trial.json` (a config).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import queue
import re
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from gateway.configfile import ConfigError
from gateway.contract import (
    Channel,
    ClockState,
    Command,
    CommandKind,
    CommandResult,
    ResultStatus,
    SensorCheck,
    command_results_topic,
    commands_topic,
    encode_result,
)
from gateway.driver_api.clock import kernel_clock
from gateway.edge import configtrial
from gateway.edge.config import CommandsConfig, load_station_config
from gateway.edge.delivery import OutboxItem
from gateway.model import IDENTIFIER_PATTERN, format_time, utc_now
from gateway.trust.keys import Ed25519PublicKey, key_id, public_key_from_text, verify

if TYPE_CHECKING:
    from gateway.edge.daemon import StationDaemon

log = logging.getLogger("sinkwatch.edge.commands")

CHECK_SETTLE_S = 15.0  # a check waits this long at most for every sensor's first poll after a start
# ids of commands done are kept this long: far past any command's expiry (at most a week), after which the station
# refuses a replayed command by its `expires` (with a synchronised clock)
SEEN_KEEP_S = 90 * 86400.0
TRIAL_POLL_S = 0.5

_SCHEMA = """
CREATE TABLE IF NOT EXISTS command_results (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    taken REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS commands_seen (
    id TEXT PRIMARY KEY,
    kind TEXT,
    received TEXT NOT NULL,
    status TEXT NOT NULL,
    updated REAL NOT NULL
);
"""


class CommandResultsOutbox:
    """The command_results channel's outbox, and the ids of the commands acted on, in the station's buffer file
    (own connection; WAL, synchronous=FULL). The row id is the result's `seq` (AUTOINCREMENT: never reused)."""

    channel: Channel = "command_results"
    unit = "results"

    def __init__(self, path: Path | str, site: str, station: str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.site = site
        self.station = station
        self.topic = command_results_topic(site, station)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._db.execute("DELETE FROM commands_seen WHERE status='done' AND updated < ?", (time.time() - SEEN_KEEP_S,))
        # counted once, then kept by every commit (this connection is the table's only writer)
        self._pending = int(self._db.execute("SELECT COUNT(*) FROM command_results").fetchone()[0])

    # --- the results ----------------------------------------------------------------------------------------------

    def add(self, result: CommandResult) -> int:
        with self._lock:
            cursor = self._db.execute("INSERT INTO command_results(taken, body) VALUES (?, ?)",
                                      (result.time.timestamp(), result.model_dump_json()))
            self._pending += 1
        return int(cursor.lastrowid or 0)

    @staticmethod
    def _payload(seq: int, body: str) -> bytes:
        return encode_result(CommandResult.model_validate_json(body).model_copy(update={"seq": seq}))

    def claim(self, limit: int, exclude: set[int]) -> list[OutboxItem]:
        with self._lock:
            rows = self._db.execute("SELECT seq, body FROM command_results ORDER BY seq LIMIT ?",
                                    (limit + len(exclude),)).fetchall()
        return [OutboxItem(int(s), self._payload(int(s), body)) for s, body in rows if s not in exclude][:limit]

    def reload(self, seq: int) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM command_results WHERE seq=?", (seq,)).fetchone()
        return self._payload(seq, row[0]) if row else None

    def confirm(self, ranges: Sequence[tuple[int, int]]) -> tuple[int, int]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            deleted = sum(self._db.execute("DELETE FROM command_results WHERE seq BETWEEN ? AND ?", r).rowcount
                          for r in ranges)
            self._db.execute("COMMIT")
            self._pending -= deleted
        return deleted, deleted

    def pending(self) -> int:
        """Results waiting for their receipt, kept in memory: COUNT(*) of `command_results`."""
        return self._pending

    def oldest_time(self) -> float | None:
        if self._pending == 0:  # the common case: no query
            return None
        with self._lock:
            row = self._db.execute("SELECT taken FROM command_results ORDER BY seq LIMIT 1").fetchone()
        return float(row[0]) if row else None

    # --- the commands acted on ------------------------------------------------------------------------------------

    def seen(self, command_id: str) -> tuple[str | None, str, str] | None:
        """(kind, received, status) of a command acted on before, None for a new one."""
        with self._lock:
            row = self._db.execute("SELECT kind, received, status FROM commands_seen WHERE id=?",
                                   (command_id,)).fetchone()
        return (row[0], row[1], row[2]) if row else None

    def mark(self, command_id: str, kind: str | None, received: str, status: str) -> None:
        with self._lock:
            self._db.execute("INSERT INTO commands_seen(id, kind, received, status, updated) VALUES (?, ?, ?, ?, ?) "
                             "ON CONFLICT(id) DO UPDATE SET status=excluded.status, updated=excluded.updated",
                             (command_id, kind, received, status, time.time()))

    def in_status(self, status: str) -> list[tuple[str, str | None, str]]:
        """(id, kind, received) of the commands left in `status` (e.g. restarting, by the daemon before this one)."""
        with self._lock:
            rows = self._db.execute("SELECT id, kind, received FROM commands_seen WHERE status=? ORDER BY updated",
                                    (status,)).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _Refused(Exception):
    """A command the station will not act on; the message is the reason in its `rejected` result."""


def _trusted(settings: CommandsConfig) -> dict[str, Ed25519PublicKey]:
    keys = [public_key_from_text(text) for text in settings.trusted_keys]
    return {key_id(key): key for key in keys}


def _command_id_of(payload: bytes) -> str | None:
    """The id of a command that does not parse, when it has a usable one (to answer it)."""
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, str) and re.fullmatch(IDENTIFIER_PATTERN, value) else None


class StationCommands:
    """The daemon's `commands` thread (module doc). `submit` is the Delivery's downlink handler."""

    def __init__(self, daemon: StationDaemon, outbox: CommandResultsOutbox) -> None:
        self.daemon = daemon
        self.outbox = outbox
        self.settings = daemon.config.commands
        self.site = daemon.config.site
        self.station = daemon.config.station
        self.topic = commands_topic(self.site, self.station)
        self.config_path: Path | None = Path(daemon.config.source) if daemon.config.source is not None else None
        self._trusted = _trusted(self.settings)
        self._queue: queue.SimpleQueue[tuple[bytes, datetime]] = queue.SimpleQueue()
        self._trial: configtrial.Trial | None = None
        self.counts: Counter[str] = Counter()  # received, by outcome, duplicates, unreadable
        self.notify: Callable[[], None] = lambda: None  # wakes the delivery loop when a result is queued

    # --- intake (delivery thread) ---------------------------------------------------------------------------------

    def submit(self, topic: str, payload: bytes) -> None:
        self._queue.put((payload, utc_now()))

    # --- the thread -----------------------------------------------------------------------------------------------

    def run(self, stop: threading.Event, beat: Callable[[], None] = lambda: None) -> None:
        try:
            self.resume()
        except Exception:
            log.exception("commands: could not report the outcome of the commands before the restart")
        while not stop.is_set():
            beat()
            try:
                payload, received = self._queue.get(timeout=TRIAL_POLL_S)
            except queue.Empty:
                pass
            else:
                try:
                    self.handle(payload, received)
                except Exception:  # a bug must not end the command handler: the command is answered `failed`
                    log.exception("commands: unexpected error while handling a command")
                    command_id = _command_id_of(payload)
                    if command_id is not None:
                        self._result(command_id, None, "failed", "the station failed unexpectedly while handling "
                                     "the command (its log has the details)", received)
            try:
                self.watch_trial()
            except Exception:
                log.exception("commands: unexpected error while watching the config trial")

    def health(self) -> dict[str, object]:
        return {"topic": self.topic, "accept": self.settings.accept, "subscribed": self.daemon.delivery.subscribed(
            self.topic), "counts": dict(self.counts), "config_trial": self._trial.command_id if self._trial else None}

    # --- results --------------------------------------------------------------------------------------------------

    def _result(self, command_id: str, kind: CommandKind | None, status: ResultStatus, message: str,
                received: datetime | None, **extra: Any) -> CommandResult:
        result = CommandResult(site=self.site, station=self.station, command_id=command_id, kind=kind, status=status,
                               time=utc_now(), message=message[:4000], received=received, **extra)
        self.outbox.add(result)
        if result.final:
            self.counts[status] += 1
            self.outbox.mark(command_id, kind, format_time(received or result.time), "done")
        log.log(logging.WARNING if status in ("rejected", "rolled_back", "failed") else logging.INFO,
                "command %s (%s): %s: %s", command_id, kind or "unreadable", status, message)
        self.notify()
        return result

    def _current_sha(self) -> str | None:
        if self.config_path is None:
            return None
        try:
            return configtrial.sha256_of(self.config_path)
        except OSError:
            return None

    # --- after a restart ------------------------------------------------------------------------------------------

    def resume(self) -> None:
        """Report what the daemon before this one could not: a restart done, a config trial's outcome."""
        for command_id, kind, received in self.outbox.in_status("restarting"):
            if kind == "restart":
                self._result(command_id, "restart", "ok", f"restarted: the daemon runs again (pid {os.getpid()})",
                             _parse_time(received))
        if self.config_path is None:
            return
        trial = configtrial.read_trial(self.config_path)
        if trial is None:
            return
        when = _parse_time(trial.received)
        if trial.state == "rolled_back":
            self._result(trial.command_id, "push_config", "rolled_back", trial.reason or "rolled back", when,
                         config_sha256=self._current_sha())
            configtrial.remove_trial(self.config_path)
            return
        if self._current_sha() != trial.new_sha256:
            self._result(trial.command_id, "push_config", "failed", f"{self.config_path} was changed on the station "
                         "while the pushed config was on trial; the trial is abandoned and the config as it is now "
                         "stays in force", when, config_sha256=self._current_sha())
            configtrial.remove_trial(self.config_path)
            return
        self._trial = trial

    def watch_trial(self) -> None:
        """Confirm the config on trial once the daemon is healthy with it; roll it back at its deadline."""
        trial = self._trial
        if trial is None or self.config_path is None:
            return
        problem = self.daemon.trial_problem()
        if problem is None:
            self._trial = None
            configtrial.remove_trial(self.config_path)
            waited = trial.rollback_after_s - max(0.0, trial.deadline - time.monotonic())
            self._result(trial.command_id, "push_config", "ok", f"applied: the daemon is healthy with the new config "
                         f"(connected, subscribed to its commands, no hung loop) {waited:.1f} s after the swap; the "
                         f"previous config is kept as {configtrial.TrialFiles.of(self.config_path).previous.name}",
                         _parse_time(trial.received), config_sha256=trial.new_sha256)
            return
        if problem != trial.problem:
            trial.problem = problem
            configtrial.write_trial(self.config_path, trial)
        if time.monotonic() > trial.deadline:
            self._trial = None
            configtrial.roll_back(self.config_path, trial, configtrial.not_healthy_reason(trial))
            self.daemon.request_restart(f"the config pushed by command {trial.command_id} was rolled back")

    # --- one command ----------------------------------------------------------------------------------------------

    def handle(self, payload: bytes, received: datetime) -> None:
        self.counts["received"] += 1
        try:
            command = Command.model_validate_json(payload)
        except ValidationError as exc:
            command_id = _command_id_of(payload)
            problem = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(payload)'}: {e['msg']}"
                                for e in exc.errors()[:3])
            if command_id is None:
                self.counts["unreadable"] += 1
                log.warning("ignoring a command on %s without a readable id: %s", self.topic, problem)
                return
            self._result(command_id, None, "rejected", f"not a valid command: {problem}", received)
            return
        seen = self.outbox.seen(command.id)
        if seen is not None:
            self.counts["duplicates"] += 1
            log.info("command %s (%s) arrived again; acted on already (%s)", command.id, command.kind, seen[2])
            return
        self.outbox.mark(command.id, command.kind, format_time(received), "received")
        try:
            self._verify(command, received)
        except _Refused as exc:
            self._result(command.id, command.kind, "rejected", str(exc), received)
            return
        if command.kind == "check":
            self._check(command, received)
        elif command.kind == "clock_check":
            self._clock_check(command, received)
        elif command.kind == "restart":
            self._restart(command, received)
        else:
            self._push_config(command, received)

    def _verify(self, command: Command, received: datetime) -> None:
        if (command.site, command.station) != (self.site, self.station):
            raise _Refused(f"the command is for {command.site}/{command.station}, this is {self.site}/{self.station}")
        clock = kernel_clock()
        if received > command.expires:
            if clock.synced:
                raise _Refused(f"expired at {format_time(command.expires)} (received {format_time(received)})")
            log.warning("command %s expired at %s by this station's clock, which is not synchronised: acting on it",
                        command.id, format_time(command.expires))
        if self.settings.accept == "signed":
            if command.signature is None or command.key_id is None:
                raise _Refused("not signed; this station accepts only commands signed by a key in "
                               "commands.trusted_keys")
            key = self._trusted.get(command.key_id)
            if key is None:
                raise _Refused(f"signed by key {command.key_id}, which is not in this station's "
                               f"commands.trusted_keys ({', '.join(sorted(self._trusted)) or 'none'})")
            try:
                signature = base64.b64decode(command.signature, validate=True)
            except binascii.Error:
                raise _Refused("the signature is not base64") from None
            if not verify(key, signature, command.signed_bytes()):
                raise _Refused(f"the signature does not match the command (key {command.key_id}): changed on the "
                               "way, or not made by the central service")

    # --- the kinds ------------------------------------------------------------------------------------------------

    def _check(self, command: Command, received: datetime) -> None:
        from gateway.edge.check import results_from_status
        from gateway.edge.live import StatusUnavailable, read_status

        deadline = time.monotonic() + CHECK_SETTLE_S
        while True:
            try:
                snapshot = read_status(self.daemon.config)
            except StatusUnavailable as exc:
                snapshot = None
                problem = str(exc)
            if snapshot is not None and all(s.get("available") is not None for s in snapshot["sensors"]):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.25)
        if snapshot is None:
            self._result(command.id, command.kind, "failed", f"no status from the daemon: {problem}", received)
            return
        checks = [SensorCheck(name=r.sensor, driver=r.driver, ok=r.ok, values=[v[:200] for v in r.values[:100]],
                              reason=r.reason[:500] if r.reason else None, fix=r.fix[:500] if r.fix else None)
                  for r in results_from_status(snapshot)]
        passing = sum(c.ok for c in checks)
        message = f"{passing} of {len(checks)} sensors pass"
        failing = [c.name for c in checks if not c.ok]
        if failing:
            message += f"; failing: {', '.join(failing)}"
        self._result(command.id, command.kind, "ok", message, received, checks=checks)

    def _clock_check(self, command: Command, received: datetime) -> None:
        clock = kernel_clock()
        state = ClockState(synced=clock.synced, offset_s=clock.offset_s, max_error_s=clock.max_error_s)
        lag = (received - command.issued).total_seconds()
        parts = ["clock synchronised" if clock.synced else "clock NOT synchronised (no NTP/PPS discipline)"]
        if clock.offset_s is not None:
            parts.append(f"the kernel is slewing {clock.offset_s:+.6f} s")
        if clock.max_error_s is not None:
            parts.append(f"maximum error {clock.max_error_s:.4g} s")
        parts.append(f"received {lag:+.3f} s after it was issued (central clock; transit included)")
        self._result(command.id, command.kind, "ok", "; ".join(parts), received, clock=state)

    def _restart(self, command: Command, received: datetime) -> None:
        self.outbox.mark(command.id, command.kind, format_time(received), "restarting")
        self._result(command.id, command.kind, "restarting", "restarting the daemon", received)
        self.daemon.request_restart(f"asked by command {command.id} ({command.issued_by})")

    def _push_config(self, command: Command, received: datetime) -> None:
        assert command.config is not None and command.rollback_after_s is not None
        path = self.config_path
        if path is None:
            self._result(command.id, command.kind, "rejected", "this daemon was started without a config file, so "
                         "it has none to replace", received)
            return
        if self._trial is not None:
            self._result(command.id, command.kind, "rejected", f"the config pushed by command {self._trial.command_id} "
                         "is still on trial; send this one after its outcome", received)
            return
        if command.config_sha256 == self._current_sha():
            self._result(command.id, command.kind, "ok", "this config is already in force; nothing to do", received,
                         config_sha256=command.config_sha256)
            return
        files = configtrial.TrialFiles.of(path)
        configtrial.atomic_write(files.new, command.config.encode("utf-8"))
        problem = self._refusal(files.new, command)
        if problem is not None:
            files.new.unlink(missing_ok=True)
            self._result(command.id, command.kind, "rejected", f"{problem}; the config in force is unchanged",
                         received, config_sha256=self._current_sha())
            return
        self._result(command.id, command.kind, "accepted", "the new config is valid; swapping it in (the old one is "
                     f"kept as {files.previous.name}) and restarting; it must be healthy within "
                     f"{command.rollback_after_s:g} s or the old one comes back", received)
        try:
            configtrial.begin(path, command.id, command.rollback_after_s, format_time(received))
        except OSError as exc:
            files.new.unlink(missing_ok=True)
            self._result(command.id, command.kind, "failed", f"cannot write the config files in {path.parent}: "
                         f"{exc}; the config in force is unchanged", received, config_sha256=self._current_sha())
            return
        self.outbox.mark(command.id, command.kind, format_time(received), "restarting")
        self._result(command.id, command.kind, "restarting", "restarting the daemon with the new config", received,
                     config_sha256=command.config_sha256)
        self.daemon.request_restart(f"config pushed by command {command.id} ({command.issued_by})")

    def _refusal(self, new: Path, command: Command) -> str | None:
        """Why the pushed config (written to `new`) must not be applied, or None. The validator is the one of
        `sinkwatch station validate`; on top, what a remote change must not do."""
        try:
            pushed = load_station_config(new)
        except ConfigError as exc:
            return "invalid: " + str(exc).replace(str(new), "the pushed station.yaml")
        current = self.daemon.config
        if (pushed.site, pushed.station) != (current.site, current.station):
            return (f"it names {pushed.site}/{pushed.station}, this station is {current.site}/{current.station}; a "
                    "station's identity is changed on site, not remotely")
        if Path(pushed.buffer.path).resolve() != Path(current.buffer.path).resolve():
            return (f"it moves buffer.path to {pushed.buffer.path}: the readings waiting in {current.buffer.path} "
                    "would be left behind; change it on site")
        if not pushed.commands.enabled:
            return ("with it the station would accept no further command (commands.accept none, or signed without "
                    "trusted_keys); change that on site")
        if command.key_id is not None and pushed.commands.accept == "signed" and command.key_id not in {
                key_id(public_key_from_text(k)) for k in pushed.commands.trusted_keys}:
            return (f"it no longer trusts key {command.key_id}, which signed this command: the next command could "
                    "not be verified; keep the key in commands.trusted_keys while replacing it")
        return None


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


