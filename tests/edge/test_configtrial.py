"""A pushed config on trial (gateway/edge/configtrial.py): its files, its state across starts, and a daemon that
cannot even start with the new config, which `sinkwatch station run` rolls back before opening anything."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.contract import CommandResult
from gateway.edge import configtrial
from gateway.edge.configtrial import TrialFiles
from gateway.net import free_port
from gateway.testing.mqtt import wait_for


def write(path: Path, data: dict[str, Any]) -> bytes:
    text = yaml.safe_dump(data, sort_keys=False).encode()
    path.write_bytes(text)
    path.chmod(0o600)
    return text


def station(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    return {"site": "hainich", "station": "tower01", "mqtt": {"host": "127.0.0.1", "port": free_port()},
            "buffer": {"path": str(tmp_path / "buffer.sqlite")}, "commands": {"accept": "broker"},
            "sensors": [{"name": "co2_a", "driver": "gmp252", "port": str(tmp_path / "no-adapter"),
                         "interval_s": 1.0}], **changes}


def pushed(config: Path, data: dict[str, Any], rollback_after_s: float = 60.0) -> configtrial.Trial:
    """What the station does on a valid push_config, up to the restart."""
    files = TrialFiles.of(config)
    write(files.new, data)
    return configtrial.begin(config, "c0ffee", rollback_after_s, "2026-11-25T10:00:00.000000Z")


def test_begin_keeps_the_old_config_and_swaps_in_the_new(tmp_path: Path) -> None:
    config = tmp_path / "station.yaml"
    old = write(config, station(tmp_path))
    trial = pushed(config, station(tmp_path, watchdog={"hung_after_s": 5}))
    files = TrialFiles.of(config)
    assert files.previous.read_bytes() == old and not files.new.exists()
    assert b"hung_after_s: 5" in config.read_bytes()
    assert trial.state == "trying" and trial.new_sha256 == configtrial.sha256_of(config)
    assert json.loads(files.state.read_text())["command_id"] == "c0ffee"
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in (config, files.previous, files.state))


def test_a_start_within_the_window_keeps_trying_and_after_it_rolls_back(tmp_path: Path) -> None:
    config = tmp_path / "station.yaml"
    old = write(config, station(tmp_path))
    pushed(config, station(tmp_path, watchdog={"hung_after_s": 5}), rollback_after_s=60)
    trial = configtrial.before_start(config)
    assert trial is not None and trial.state == "trying" and trial.starts == 1
    assert config.read_bytes() != old
    # the daemon with the new config crashed until its deadline: the next start restores the old one
    trial.deadline = time.monotonic() - 1
    trial.problem = "not connected to the broker"
    configtrial.write_trial(config, trial)
    rolled = configtrial.before_start(config)
    assert rolled is not None and rolled.state == "rolled_back" and config.read_bytes() == old
    assert rolled.reason == ("not healthy within 60 s after the restart with the new config: not connected to the "
                             "broker; the previous config is back in force")
    assert configtrial.before_start(config) == rolled  # rolled back once, then left for the daemon to report


def test_after_a_reboot_the_trial_gets_its_whole_window_again(tmp_path: Path) -> None:
    config = tmp_path / "station.yaml"
    write(config, station(tmp_path))
    trial = pushed(config, station(tmp_path, watchdog={"hung_after_s": 5}), rollback_after_s=60)
    trial.deadline = -1e9  # a monotonic time of the previous boot
    trial.boot_id = "another-boot"
    configtrial.write_trial(config, trial)
    again = configtrial.before_start(config)
    assert again is not None and again.state == "trying"
    if configtrial.boot_id() is None:  # no /proc (not Linux): the deadline passed for real
        pytest.fail("this test needs /proc/sys/kernel/random/boot_id")
    assert again.deadline > time.monotonic() + 50 and again.boot_id == configtrial.boot_id()


def test_an_unreadable_trial_state_rolls_back(tmp_path: Path) -> None:
    config = tmp_path / "station.yaml"
    old = write(config, station(tmp_path))
    pushed(config, station(tmp_path, watchdog={"hung_after_s": 5}))
    TrialFiles.of(config).state.write_text("{not json", encoding="utf-8")
    rolled = configtrial.before_start(config)
    assert rolled is not None and rolled.state == "rolled_back" and config.read_bytes() == old
    assert "the trial state file was unreadable" in (rolled.reason or "")


def results_in(buffer: Path) -> list[CommandResult]:
    """The command results waiting in the station's outbox (none while the daemon has not made the table yet)."""
    db = sqlite3.connect(buffer)
    try:
        return [CommandResult.model_validate_json(body) for (body,) in
                db.execute("SELECT body FROM command_results ORDER BY seq")]
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


@pytest.mark.integration
@pytest.mark.parametrize("breakage", ["refused_at_start", "cannot_start"])
def test_a_daemon_that_cannot_start_with_the_new_config_rolls_back_at_once(tmp_path: Path, breakage: str) -> None:
    config = tmp_path / "station.yaml"
    old = write(config, station(tmp_path))
    if breakage == "refused_at_start":  # valid when pushed; its password file is gone by the start
        new = station(tmp_path, mqtt={"host": "127.0.0.1", "port": 1883, "username": "tower01",
                                      "password_file": str(tmp_path / "gone")})
        reason = "the daemon refused the new config at its start"
    else:  # loads, but the buffer cannot be opened: a folder where the file should be
        (tmp_path / "a-folder").mkdir()
        new = station(tmp_path, buffer={"path": str(tmp_path / "a-folder")})
        reason = "the daemon could not start with the new config"
    pushed(config, new)
    log = tmp_path / "daemon.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "gateway.cli", "station", "run", "-c", str(config)],
                                   stdout=out, stderr=subprocess.STDOUT, env={**os.environ,
                                                                              "SINKWATCH_LOG_LEVEL": "INFO"})
    try:
        # the old config is back and the daemon runs with it; it reports the rollback in its outbox
        assert wait_for(lambda: (tmp_path / "buffer.sqlite").exists() and any(
            r.status == "rolled_back" for r in results_in(tmp_path / "buffer.sqlite")), 60), log.read_text()
        assert config.read_bytes() == old
        [result] = results_in(tmp_path / "buffer.sqlite")
        assert result.command_id == "c0ffee" and result.message.startswith(reason)
        assert result.config_sha256 == configtrial.sha256_of(config)
        # the trial's state goes once its outcome is in the outbox (a crash in between repeats the result, which
        # the central ledger keeps once)
        assert wait_for(lambda: not TrialFiles.of(config).state.exists(), 10)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert process.returncode == 0, log.read_text()


def test_the_ids_of_commands_done_are_kept_for_months_then_forgotten(tmp_path: Path) -> None:
    from gateway.edge.commands import SEEN_KEEP_S, CommandResultsOutbox

    outbox = CommandResultsOutbox(tmp_path / "buffer.sqlite", "hainich", "tower01")
    outbox.mark("old", "check", "2026-01-01T00:00:00.000000Z", "done")
    outbox.mark("old-but-restarting", "restart", "2026-01-01T00:00:00.000000Z", "restarting")
    outbox.mark("recent", "check", "2026-11-25T10:00:00.000000Z", "done")
    outbox.close()
    db = sqlite3.connect(tmp_path / "buffer.sqlite")
    db.execute("UPDATE commands_seen SET updated = ? WHERE id LIKE 'old%'", (time.time() - SEEN_KEEP_S - 60,))
    db.commit()
    db.close()
    outbox = CommandResultsOutbox(tmp_path / "buffer.sqlite", "hainich", "tower01")
    try:
        assert outbox.seen("old") is None
        assert outbox.seen("recent") is not None
        assert outbox.seen("old-but-restarting") is not None  # its outcome is still to be reported
    finally:
        outbox.close()
