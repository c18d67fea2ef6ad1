"""A pushed station.yaml on trial: applied, kept only if the daemon is healthy with it in time, else rolled back.

The files, beside the config file P the daemon runs with (`sinkwatch station run -c P`):

    P.new         the pushed config, written 0600 and checked by the validator of `sinkwatch station validate`
    P.previous    the config in force before the push, kept: the rollback restores it (and a technician can too)
    P.trial.json  the trial's state; read at every start of the daemon, so a trial survives a crash, a restart by
                  systemd's watchdog or a power cut

    push_config ─▶ P.new validated ──refused──▶ result `rejected`; nothing changed
                      │ ok
                      ▼
    P.previous := P; P.trial.json := trying, deadline = now + rollback_after_s; P := P.new (one rename)
                      ▼ result `restarting`; the daemon restarts itself (re-exec)
    start: trying ── deadline passed, P refused, or the daemon cannot start with P ──▶ ROLL BACK
                      │
                      ▼
    running with P: healthy (no hung loop, connected to the broker, subscribed to its commands)
                      ├── yes, before the deadline ─▶ P.trial.json deleted; result `ok`
                      └── deadline passes ─▶ ROLL BACK
    ROLL BACK: P := P.previous (written whole, then renamed); P.trial.json := rolled_back with the reason; restart
               ─▶ the daemon starts with the old config and reports `rolled_back` with the reason; P.trial.json deleted

Deadlines are on the monotonic clock, which a re-exec or a restart by systemd keeps (it counts from boot); after a
reboot (another boot id) a trial gets a fresh window. Every write is a whole file: temporary name, fsync, rename,
fsync of the folder, so a power cut leaves the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger("sinkwatch.edge.commands")

TrialState = Literal["trying", "rolled_back"]
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True)
class TrialFiles:
    config: Path
    new: Path
    previous: Path
    state: Path

    @classmethod
    def of(cls, config: Path) -> TrialFiles:
        return cls(config, config.with_name(config.name + ".new"), config.with_name(config.name + ".previous"),
                   config.with_name(config.name + ".trial.json"))


@dataclass
class Trial:
    command_id: str
    state: TrialState
    previous_sha256: str
    new_sha256: str
    rollback_after_s: float
    received: str  # when the station received the command, RFC 3339 (for the results)
    deadline: float  # time.monotonic() by which the daemon must be healthy with the new config
    boot_id: str | None
    problem: str | None = None  # the last reason the daemon was not healthy with the new config
    reason: str | None = None  # why it was rolled back
    starts: int = 0  # daemon starts with the new config


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def boot_id() -> str | None:
    try:
        return _BOOT_ID.read_text(encoding="ascii").strip() or None
    except OSError:
        return None


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """`path` holds `data` whole, or its old content: temporary file, fsync, rename, fsync of the folder."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_trial(config: Path) -> Trial | None:
    """The trial of `config`, None when there is none. A state file that cannot be read is a trial that must end:
    it is returned as one to roll back (when the old config is there to restore)."""
    files = TrialFiles.of(config)
    try:
        data = json.loads(files.state.read_text(encoding="utf-8"))
        return Trial(**data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        log.error("config trial state %s is unreadable (%s); rolling back to %s", files.state, exc, files.previous)
        return Trial(command_id="unknown", state="trying", previous_sha256="", new_sha256="", rollback_after_s=0.0,
                     received="", deadline=0.0, boot_id=None, problem=f"the trial state file was unreadable: {exc}")


def write_trial(config: Path, trial: Trial) -> None:
    atomic_write(TrialFiles.of(config).state, json.dumps(asdict(trial), indent=1).encode("utf-8"))


def remove_trial(config: Path) -> None:
    files = TrialFiles.of(config)
    with contextlib.suppress(FileNotFoundError):
        files.state.unlink()
    sync_folder(files.state.parent)


def begin(config: Path, command_id: str, rollback_after_s: float, received: str) -> Trial:
    """Swap the validated `P.new` in: keep the old config as `P.previous`, record the trial, rename. The caller
    has written and validated `P.new`."""
    files = TrialFiles.of(config)
    atomic_write(files.previous, config.read_bytes())
    trial = Trial(command_id=command_id, state="trying", previous_sha256=sha256_of(files.previous),
                  new_sha256=sha256_of(files.new), rollback_after_s=rollback_after_s, received=received,
                  deadline=time.monotonic() + rollback_after_s, boot_id=boot_id())
    write_trial(config, trial)
    os.replace(files.new, config)
    sync_folder(config.parent)
    log.warning("config %s replaced by the one pushed by command %s (the old one kept as %s); the daemon must be "
                "healthy within %.0f s of its restart or the old one comes back", config, command_id, files.previous,
                rollback_after_s)
    return trial


def roll_back(config: Path, trial: Trial, reason: str) -> Trial:
    """Restore `P.previous` as `P` and record why; the daemon must then (re)start with it."""
    files = TrialFiles.of(config)
    try:
        atomic_write(config, files.previous.read_bytes())
    except FileNotFoundError:
        reason += f"; {files.previous} is missing, so the config could not be restored"
        log.error("cannot roll back %s: %s is missing", config, files.previous)
    trial.state = "rolled_back"
    trial.reason = reason
    write_trial(config, trial)
    log.error("config pushed by command %s rolled back: %s", trial.command_id, reason)
    return trial


def not_healthy_reason(trial: Trial) -> str:
    problem = f": {trial.problem}" if trial.problem else ""
    return (f"not healthy within {trial.rollback_after_s:g} s after the restart with the new config{problem}; "
            "the previous config is back in force")


def before_start(config: Path) -> Trial | None:
    """Called before the daemon loads its config: counts the start of a trial, gives a trial that survived a reboot
    a fresh window, and rolls back one whose deadline has passed (a daemon that crashed or hung until then)."""
    trial = read_trial(config)
    if trial is None or trial.state != "trying":
        return trial
    now = time.monotonic()
    current_boot = boot_id()
    if trial.boot_id is not None and current_boot is not None and trial.boot_id != current_boot:
        trial.deadline = now + trial.rollback_after_s  # rebooted mid-trial: the new config gets its whole window
        trial.boot_id = current_boot
    trial.starts += 1
    if now > trial.deadline:
        return roll_back(config, trial, not_healthy_reason(trial))
    write_trial(config, trial)
    return trial
