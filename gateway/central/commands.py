"""Commands to stations, on the central side (docs/operations.md, "Remote configuration and commands").

    operator ── POST /api/v1/stations/{station}/commands (gateway/central/api_commands.py) ──▶ CommandService.send
        the command gets an id, `issued`, `expires`; signed with the central command key (CommandKey);
        recorded in the ledger (CommandLedger, <data_dir>/commands.sqlite) before it leaves;
        published at QoS 1 on sinkwatch/v1/<site>/<station>/commands with a message expiry (the Ingestor's client)
    station ── CommandResult on command_results ──▶ Ingestor ──▶ CommandLedger.record ──▶ receipt to the station
    operator ── GET /api/v1/stations/{station}/commands/{id} ──▶ the command, its steps and its outcome

The command key (`<data_dir>/trust/command-key.pem`, Ed25519, mode 0600) is made at the service's first start; its
public half is written beside it (`command-key.pub`) and served at `GET /api/v1/commands/key`, for the stations'
`commands.trusted_keys`. The ledger is SQLite (WAL, synchronous=FULL): a result is on disk before its receipt goes out.
"""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.contract import (
    Command,
    CommandKind,
    CommandResult,
    commands_topic,
    config_digest,
)
from gateway.contract.commands import DEFAULT_ROLLBACK_S
from gateway.model import format_time, utc_now
from gateway.trust.keys import Ed25519PrivateKey, generate_key, key_id, load_private_key, public_key_text

log = logging.getLogger(__name__)

LEDGER_FILE = "commands.sqlite"
KEY_FILE = Path("trust") / "command-key.pem"
PUBLIC_KEY_FILE = Path("trust") / "command-key.pub"
DEFAULT_EXPIRES_S = 3600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    station TEXT NOT NULL,
    kind TEXT NOT NULL,
    issued TEXT NOT NULL,
    expires TEXT NOT NULL,
    issued_by TEXT NOT NULL,
    config_sha256 TEXT,
    rollback_after_s REAL,
    key_id TEXT,
    sent TEXT,
    send_problem TEXT
);
CREATE INDEX IF NOT EXISTS commands_by_station ON commands(station, issued);
CREATE TABLE IF NOT EXISTS command_results (
    site TEXT NOT NULL,
    station TEXT NOT NULL,
    command_id TEXT NOT NULL,
    status TEXT NOT NULL,
    time TEXT NOT NULL,
    arrived TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (site, station, command_id, status)
);
"""


@dataclass(frozen=True)
class ResultRecord:
    result: CommandResult
    arrived: datetime  # when the central service received it (its clock)


@dataclass(frozen=True)
class CommandRecord:
    """A command as the ledger knows it, with the results the station sent so far (oldest first)."""

    id: str
    site: str
    station: str
    kind: CommandKind
    issued: datetime
    expires: datetime
    issued_by: str
    config_sha256: str | None
    rollback_after_s: float | None
    key_id: str | None
    sent: datetime | None
    send_problem: str | None
    results: list[ResultRecord] = field(default_factory=list)

    @property
    def outcome(self) -> CommandResult | None:
        """The final result, None while the command is under way (or the station has not answered)."""
        return next((r.result for r in self.results if r.result.final), None)

    @property
    def status(self) -> str:
        """The last step: the outcome, the latest result, or sent/unsent."""
        if self.outcome is not None:
            return self.outcome.status
        if self.results:
            return self.results[-1].result.status
        if self.sent is not None:
            return "sent"
        return "not_sent"

    def clock_offset_s(self) -> float | None:
        """clock_check: the station clock minus the central clock, estimated NTP-style from the command's issue
        time and the result's arrival (central clock) and the station's receive and answer times (its clock); the
        round trip through the broker bounds the error (half of it)."""
        outcome = self.outcome
        if self.kind != "clock_check" or outcome is None or outcome.received is None:
            return None
        arrived = next(r.arrived for r in self.results if r.result is outcome)
        return ((outcome.received - self.issued) + (outcome.time - arrived)).total_seconds() / 2

    def round_trip_s(self) -> float | None:
        outcome = self.outcome
        if outcome is None or outcome.received is None:
            return None
        arrived = next(r.arrived for r in self.results if r.result is outcome)
        return max(0.0, ((arrived - self.issued) - (outcome.time - outcome.received)).total_seconds())


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


class CommandLedger:
    """Every command sent and every result received; thread-safe (API threads, the ingest worker)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, command: Command) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO commands(id, site, station, kind, issued, expires, issued_by, config_sha256, "
                "rollback_after_s, key_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (command.id, command.site, command.station, command.kind, format_time(command.issued),
                 format_time(command.expires), command.issued_by, command.config_sha256, command.rollback_after_s,
                 command.key_id))

    def mark_sent(self, command_id: str, sent: datetime | None, problem: str | None) -> None:
        with self._lock:
            self._db.execute("UPDATE commands SET sent=?, send_problem=? WHERE id=?",
                             (format_time(sent) if sent is not None else None, problem, command_id))

    def record(self, result: CommandResult, arrived: datetime | None = None) -> bool:
        """Keep a station's result (on disk when this returns); False when it was kept already (a resend)."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO command_results(site, station, command_id, status, time, arrived, body) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (result.site, result.station, result.command_id, result.status, format_time(result.time),
                 format_time(arrived or utc_now()), result.model_copy(update={"seq": None}).model_dump_json()))
        return cursor.rowcount == 1

    def get(self, command_id: str) -> CommandRecord | None:
        with self._lock:
            row = self._db.execute("SELECT id, site, station, kind, issued, expires, issued_by, config_sha256, "
                                   "rollback_after_s, key_id, sent, send_problem FROM commands WHERE id=?",
                                   (command_id,)).fetchone()
            if row is None:
                return None
            results = self._db.execute("SELECT body, arrived FROM command_results WHERE site=? AND station=? AND "
                                       "command_id=? ORDER BY time, arrived", (row[1], row[2], command_id)).fetchall()
        return self._record(row, results)

    def recent(self, station: str, site: str | None = None, limit: int = 50) -> list[CommandRecord]:
        with self._lock:
            ids = [r[0] for r in self._db.execute(
                "SELECT id FROM commands WHERE station=? AND (? IS NULL OR site=?) ORDER BY issued DESC LIMIT ?",
                (station, site, site, limit)).fetchall()]
        return [record for record in (self.get(i) for i in ids) if record is not None]

    @staticmethod
    def _record(row: tuple[Any, ...], results: list[tuple[str, str]]) -> CommandRecord:
        records = [ResultRecord(CommandResult.model_validate_json(body), _time(arrived) or utc_now())
                   for body, arrived in results]
        issued, expires = _time(row[4]), _time(row[5])
        assert issued is not None and expires is not None
        return CommandRecord(id=row[0], site=row[1], station=row[2], kind=row[3], issued=issued, expires=expires,
                             issued_by=row[6], config_sha256=row[7], rollback_after_s=row[8], key_id=row[9],
                             sent=_time(row[10]), send_problem=row[11], results=records)


class CommandKey:
    """The central service's Ed25519 command key: made at the first start, the private half 0600."""

    def __init__(self, data_dir: Path | str) -> None:
        data_dir = Path(data_dir)
        self.path = data_dir / KEY_FILE
        self.public_path = data_dir / PUBLIC_KEY_FILE
        self._key: Ed25519PrivateKey = (load_private_key(self.path) if self.path.exists()
                                        else self._create())
        self.key_id = key_id(self._key.public_key())
        self.public_text = public_key_text(self._key.public_key())
        if not self.public_path.exists() or self.public_path.read_text(encoding="ascii").strip() != self.public_text:
            self.public_path.write_text(self.public_text + "\n", encoding="ascii")
            self.public_path.chmod(0o644)

    def _create(self) -> Ed25519PrivateKey:
        key = generate_key(self.path)
        log.warning("made the central command key %s (stations trust it with commands.trusted_keys: %s)", self.path,
                    public_key_text(key.public_key()))
        return key

    def sign(self, command: Command) -> Command:
        unsigned = command.model_copy(update={"key_id": self.key_id, "signature": None})
        signature = base64.b64encode(self._key.sign(unsigned.signed_bytes())).decode("ascii")
        return Command.model_validate({**unsigned.model_dump(mode="json"), "signature": signature})


def read_public_key(data_dir: Path | str) -> str | None:
    """The command key's public text as the service wrote it, None before the service's first start."""
    path = Path(data_dir) / PUBLIC_KEY_FILE
    try:
        return path.read_text(encoding="ascii").strip() or None
    except FileNotFoundError:
        return None


class CommandError(ValueError):
    """A command that cannot be sent as asked: `field` names the request field, the message the fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


# publish(topic, payload, expiry_s) -> None when the broker acknowledged it, else why not
Publish = Callable[[str, bytes, int], str | None]


class CommandService:
    """Makes, signs, records and sends commands; the Ingestor records their results in the same ledger."""

    def __init__(self, ledger: CommandLedger, key: CommandKey, publish: Publish) -> None:
        self.ledger = ledger
        self.key = key
        self.publish = publish

    def send(self, site: str, station: str, kind: CommandKind, issued_by: str, *, config: str | None = None,
             rollback_after_s: float | None = None, expires_s: float = DEFAULT_EXPIRES_S) -> CommandRecord:
        if kind == "push_config":
            if not config:
                raise CommandError("config", "push_config needs the whole new station.yaml in `config`")
            rollback = rollback_after_s if rollback_after_s is not None else DEFAULT_ROLLBACK_S
        else:
            if config is not None or rollback_after_s is not None:
                raise CommandError("config", f"{kind} takes no config or rollback_after_s")
            rollback = None
        if not 10 <= expires_s <= 7 * 86400:
            raise CommandError("expires_s", f"{expires_s:g} s: give 10 .. 604800 (a week)")
        issued = utc_now()
        try:
            command = Command(id=uuid.uuid4().hex, site=site, station=station, kind=kind, issued=issued,
                              expires=issued + timedelta(seconds=expires_s), issued_by=issued_by, config=config,
                              config_sha256=config_digest(config) if config is not None else None,
                              rollback_after_s=rollback)
        except ValueError as exc:
            raise CommandError("config" if config is not None else "kind", str(exc)) from None
        command = self.key.sign(command)
        self.ledger.add(command)
        payload = command.model_dump_json().encode("utf-8")
        problem = self.publish(commands_topic(site, station), payload, int(expires_s))
        self.ledger.mark_sent(command.id, utc_now() if problem is None else None, problem)
        if problem is None:
            log.info("command %s (%s) sent to %s/%s for %s", command.id, kind, site, station, issued_by)
        else:
            log.warning("command %s (%s) to %s/%s not confirmed by the broker: %s", command.id, kind, site, station,
                        problem)
        record = self.ledger.get(command.id)
        assert record is not None
        return record

    def record(self, result: CommandResult) -> bool:
        new = self.ledger.record(result)
        if new and result.final:
            level = logging.INFO if result.status == "ok" else logging.WARNING
            log.log(level, "command %s to %s/%s: %s: %s", result.command_id, result.site, result.station,
                    result.status, result.message)
        return new


def result_summary(record: CommandRecord) -> dict[str, Any]:
    """A command as the API and the CLI show it (JSON-ready)."""
    outcome = record.outcome
    return {
        "id": record.id, "site": record.site, "station": record.station, "kind": record.kind,
        "issued": format_time(record.issued), "expires": format_time(record.expires), "issued_by": record.issued_by,
        "config_sha256": record.config_sha256, "rollback_after_s": record.rollback_after_s, "key_id": record.key_id,
        "sent": format_time(record.sent) if record.sent else None, "send_problem": record.send_problem,
        "status": record.status, "final": outcome is not None,
        "outcome": outcome.status if outcome is not None else None,
        "message": outcome.message if outcome is not None else (
            record.results[-1].result.message if record.results else None),
        "clock_offset_s": record.clock_offset_s(), "round_trip_s": record.round_trip_s(),
        "results": [{**json.loads(r.result.model_dump_json()), "arrived": format_time(r.arrived)}
                    for r in record.results],
    }

