"""Remote configuration and commands, end to end: a real Mosquitto, the central service (ingestor, command ledger,
HTTP API) in a thread, and a real station daemon process (`sinkwatch station run`) with a GMP252 simulator on a socat
PTY and a second probe whose adapter is missing. Commands go in through the API, as an operator sends them; every
payload on the broker is checked against the AsyncAPI document.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from drivers.gmp252.simulator import GMP252Simulator
from gateway.central.commands import CommandKey, read_public_key
from gateway.central.config import CentralConfig
from gateway.contract import Command, CommandResult, commands_topic, config_digest
from gateway.contract.asyncapi import schema_name_for_topic, validate_payload
from gateway.edge.configtrial import TrialFiles
from gateway.model import utc_now
from gateway.net import free_port
from gateway.testing.central import bearer, issue_token, provisioned_key, serving
from gateway.testing.mqtt import Capture, wait_for
from gateway.testing.serial_pty import socat_pty_pair
from gateway.testing.services import MosquittoServer, mosquitto_server

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

SITE, STATION = "hainich", "plot-07"


@dataclass
class Central:
    broker: MosquittoServer
    api: httpx.Client
    data_dir: Path
    capture: Capture
    station_key: Path  # the station's signing key, registered with the central service (provisioned)

    def send(self, body: dict[str, Any]) -> dict[str, Any]:
        response = self.api.post(f"/api/v1/stations/{STATION}/commands", json={"site": SITE, **body})
        assert response.status_code == 202, response.text
        return dict(response.json())

    def outcome(self, command_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
        """The command once the station reported its outcome (polled through the API)."""
        seen: dict[str, Any] = {}

        def final() -> bool:
            seen.update(self.api.get(f"/api/v1/stations/{STATION}/commands/{command_id}").json())
            return bool(seen.get("final"))

        assert wait_for(final, timeout_s), f"no outcome within {timeout_s} s: {seen}"
        return seen


OPERATOR_TOKEN: list[str] = []  # set by the `central` fixture, used by `cli`


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Central]:
    base = tmp_path_factory.mktemp("remote")
    with mosquitto_server(base / "broker") as broker:
        config = CentralConfig.model_validate({
            "mqtt": {"host": broker.host, "port": broker.port, "client_id": "central-remote"},
            "storage": {"kind": "sqlite", "path": str(base / "store.sqlite")},
            "api": {"host": "127.0.0.1", "port": 0},
            "data_dir": str(base / "central"),
        })
        capture = Capture(broker.host, broker.port, ("sinkwatch/v1/+/+/commands", "sinkwatch/v1/+/+/command_results"),
                          client_id="capture-commands")
        try:
            with serving(config) as api:
                OPERATOR_TOKEN[:] = [issue_token(base / "central", "operator", "command-line")]
                key = provisioned_key(base / "central", SITE, STATION, base / "station.key")
                yield Central(broker, api, base / "central", capture, key)
        finally:
            capture.close()


@dataclass
class Station:
    process: subprocess.Popen[bytes]
    config: Path
    log: Path

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def starts(self) -> int:
        return self.text().count(f"station {SITE}/{STATION} starting")


def station_config(tmp_path: Path, central: Central, simulator_port: str, **changes: Any) -> dict[str, Any]:
    public = read_public_key(central.data_dir)
    assert public is not None, "the central service makes its command key at its start"
    config: dict[str, Any] = {
        "site": SITE, "station": STATION,
        "mqtt": {"host": central.broker.host, "port": central.broker.port, "keepalive_s": 5},
        "buffer": {"path": str(tmp_path / "buffer.sqlite"), "receipt_timeout_s": 2},
        "signing_key": str(central.station_key),
        "commands": {"trusted_keys": [public]},
        "telemetry": {"enabled": False},
        "sensors": [
            {"name": "co2_10cm", "driver": "gmp252", "port": simulator_port, "interval_s": 1.0, "timeout_s": 0.5},
            {"name": "co2_30cm", "driver": "gmp252", "port": str(tmp_path / "no-such-adapter"), "interval_s": 1.0,
             "timeout_s": 0.5},
        ],
    }
    config.update(changes)
    return config


def write_config(path: Path, config: dict[str, Any]) -> str:
    text = yaml.safe_dump(config, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return text


@pytest.fixture
def station(tmp_path: Path, central: Central) -> Iterator[Station]:
    if shutil.which("socat") is None:
        pytest.fail("socat is needed (Debian package socat; deploy/install-test-deps.sh installs it)")
    with socat_pty_pair(tmp_path / "line") as (simulator_end, daemon_end), GMP252Simulator(simulator_end):
        config = tmp_path / "station.yaml"
        write_config(config, station_config(tmp_path, central, daemon_end))
        log = tmp_path / "daemon.log"
        with open(log, "wb") as out:
            process = subprocess.Popen([sys.executable, "-m", "gateway.cli", "station", "run", "-c", str(config)],
                                       stdout=out, stderr=subprocess.STDOUT,
                                       env={**os.environ, "SINKWATCH_LOG_LEVEL": "INFO"})
        running = Station(process, config, log)
        try:
            # connected and subscribed: the central service's retained view says online
            assert wait_for(lambda: "connected to broker" in running.text(), 60), running.text()
            yield running
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
    assert "Traceback" not in running.text(), running.text()


def assert_payloads_conform(central: Central, command_id: str) -> None:
    """Every command and result of this id that crossed the broker is what the AsyncAPI document says."""
    messages = [m for m in central.capture.messages if command_id.encode() in m.payload]
    assert messages
    for message in messages:
        validate_payload(schema_name_for_topic(message.topic), bytes(message.payload))


def statuses(command: dict[str, Any]) -> list[str]:
    return [step["status"] for step in command["results"]]


def test_a_station_check_returns_each_sensors_result(central: Central, station: Station) -> None:
    sent = central.send({"kind": "check"})
    assert sent["key_id"] is not None and sent["sent"] is not None
    assert sent["issued_by"].endswith("(tests-operator)")  # the token that sent it, in the ledger
    done = central.outcome(sent["id"])
    assert done["outcome"] == "ok" and statuses(done) == ["ok"]
    checks = {c["name"]: c for c in done["results"][0]["checks"]}
    assert set(checks) == {"co2_10cm", "co2_30cm"}
    assert checks["co2_10cm"]["ok"] and any(v.startswith("CO2 = ") for v in checks["co2_10cm"]["values"])
    assert not checks["co2_30cm"]["ok"] and "no-such-adapter" in (checks["co2_30cm"]["reason"] or "") + (
        checks["co2_30cm"]["fix"] or "")
    assert done["message"] == "1 of 2 sensors pass; failing: co2_30cm"
    assert_payloads_conform(central, sent["id"])


def test_a_clock_check_reports_the_kernel_clock_and_an_offset_estimate(central: Central, station: Station) -> None:
    done = central.outcome(central.send({"kind": "clock_check"})["id"])
    assert done["outcome"] == "ok"
    clock = done["results"][0]["clock"]
    assert isinstance(clock["synced"], bool)
    # both clocks are this machine's: the estimate's error is at most half the round trip through the broker
    assert abs(done["clock_offset_s"]) <= done["round_trip_s"] / 2 + 0.002


def test_a_restart_command_restarts_the_daemon(central: Central, station: Station) -> None:
    before = station.starts()
    done = central.outcome(central.send({"kind": "restart"})["id"])
    assert statuses(done) == ["restarting", "ok"] and done["outcome"] == "ok"
    assert f"pid {station.process.pid}" in done["message"]  # re-executed in place: systemd keeps its main pid
    assert station.starts() == before + 1
    assert station.process.poll() is None


def test_a_bad_config_is_rejected_by_the_station_with_the_reason(central: Central, station: Station,
                                                                 tmp_path: Path) -> None:
    before = station.config.read_bytes()
    pushed = yaml.safe_load(before)
    pushed["buffer"]["batch_size"] = 0
    pushed["sensors"][0]["address"] = 300
    done = central.outcome(central.send({"kind": "push_config", "config": yaml.safe_dump(pushed)})["id"])
    assert done["outcome"] == "rejected" and statuses(done) == ["rejected"]
    assert "invalid: the pushed station.yaml" in done["message"] and "buffer.batch_size" in done["message"]
    assert "the config in force is unchanged" in done["message"]
    assert station.config.read_bytes() == before and station.starts() == 1
    assert not TrialFiles.of(station.config).new.exists()
    assert_payloads_conform(central, done["id"])


def test_a_config_that_moves_the_buffer_is_refused(central: Central, station: Station, tmp_path: Path) -> None:
    pushed = yaml.safe_load(station.config.read_bytes())
    pushed["buffer"]["path"] = str(tmp_path / "elsewhere.sqlite")
    done = central.outcome(central.send({"kind": "push_config", "config": yaml.safe_dump(pushed)})["id"])
    assert done["outcome"] == "rejected" and "buffer.path" in done["message"]


def test_a_good_config_is_applied_and_the_old_one_kept(central: Central, station: Station) -> None:
    before = station.config.read_text(encoding="utf-8")
    pushed = yaml.safe_load(before)
    pushed["sensors"][0]["interval_s"] = 2.0
    text = yaml.safe_dump(pushed, sort_keys=False)
    done = central.outcome(central.send({"kind": "push_config", "config": text, "rollback_after_s": 60})["id"])
    assert statuses(done) == ["accepted", "restarting", "ok"], done
    assert done["results"][-1]["config_sha256"] == config_digest(text) == done["config_sha256"]
    files = TrialFiles.of(station.config)
    assert station.config.read_text(encoding="utf-8") == text
    assert files.previous.read_text(encoding="utf-8") == before
    assert not files.state.exists() and not files.new.exists()
    assert oct(station.config.stat().st_mode & 0o777) == "0o600"
    assert station.starts() == 2
    assert_payloads_conform(central, done["id"])


def test_a_config_that_makes_the_daemon_unhealthy_is_rolled_back(central: Central, station: Station) -> None:
    before = station.config.read_bytes()
    pushed = yaml.safe_load(before)
    pushed["mqtt"]["port"] = free_port()  # nothing listens there: the daemon cannot reach its broker
    sent = central.send({"kind": "push_config", "config": yaml.safe_dump(pushed), "rollback_after_s": 10})
    done = central.outcome(sent["id"], timeout_s=120)
    assert statuses(done) == ["accepted", "restarting", "rolled_back"], done
    assert "not healthy within 10 s after the restart with the new config: not connected to the broker" in \
        done["message"] and "the previous config is back in force" in done["message"]
    assert station.config.read_bytes() == before  # byte for byte
    assert done["results"][-1]["config_sha256"] == config_digest(before.decode())
    assert not TrialFiles.of(station.config).state.exists()
    assert station.starts() == 3  # the new config, then the old one again
    assert "config pushed by command" in station.text() and "rolled back" in station.text()
    assert_payloads_conform(central, sent["id"])


# --- commands that did not come from the central service ----------------------------------------------------------


def publish_as_central(central: Central, command: Command) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"forger-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
    client.connect(central.broker.host, central.broker.port)
    client.loop_start()
    try:
        client.publish(commands_topic(SITE, STATION), command.model_dump_json(), qos=1).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def results_of(central: Central, command_id: str) -> list[CommandResult]:
    return [CommandResult.model_validate_json(m.payload) for m in central.capture.on("/command_results")
            if CommandResult.model_validate_json(m.payload).command_id == command_id]


def test_unsigned_and_forged_commands_are_refused(central: Central, station: Station, tmp_path: Path) -> None:
    now = utc_now()
    unsigned = Command(id=uuid.uuid4().hex, site=SITE, station=STATION, kind="restart", issued=now,
                       expires=now + timedelta(minutes=5), issued_by="mallory")
    forger = CommandKey(tmp_path / "forger")  # a well-made key the station does not trust
    forged = forger.sign(unsigned.model_copy(update={"id": uuid.uuid4().hex}))
    genuine = CommandKey(central.data_dir).sign(unsigned.model_copy(update={"id": uuid.uuid4().hex}))
    tampered = Command.model_validate({**genuine.model_dump(mode="json"), "issued_by": "mallory-too"})
    for command in (unsigned, forged, tampered):
        publish_as_central(central, command)
    reasons = {}
    for command in (unsigned, forged, tampered):
        assert wait_for(lambda: any(r.final for r in results_of(central, command.id)), 30), command.id  # noqa: B023
        [result] = results_of(central, command.id)
        assert result.status == "rejected"
        reasons[command.id] = result.message
    assert "not signed" in reasons[unsigned.id]
    assert f"signed by key {forger.key_id}, which is not in this station's commands.trusted_keys" in reasons[forged.id]
    assert "the signature does not match the command" in reasons[tampered.id]
    assert station.starts() == 1  # none of the restarts happened


def test_a_command_delivered_twice_is_done_once(central: Central, station: Station) -> None:
    now = utc_now()
    command = CommandKey(central.data_dir).sign(Command(
        id=uuid.uuid4().hex, site=SITE, station=STATION, kind="clock_check", issued=now,
        expires=now + timedelta(minutes=5), issued_by="ops"))
    publish_as_central(central, command)
    assert wait_for(lambda: len(results_of(central, command.id)) == 1, 30)
    publish_as_central(central, command)
    another = command.model_copy(update={"id": uuid.uuid4().hex})  # the same but for its id: answered
    publish_as_central(central, CommandKey(central.data_dir).sign(another))
    assert wait_for(lambda: len(results_of(central, another.id)) == 1, 30)
    assert len(results_of(central, command.id)) == 1  # the second copy, before `another`, was not answered
    assert "arrived again; acted on already" in station.text()


def test_the_command_key_is_served_for_the_stations(central: Central) -> None:
    key = central.api.get("/api/v1/commands/key").json()
    assert key["public_key"] == read_public_key(central.data_dir) and key["public_key"].startswith("ed25519:")
    assert base64.b64decode(key["public_key"].split(":", 1)[1]) and len(key["key_id"]) == 16


def test_an_unknown_station_is_named(central: Central) -> None:
    response = central.api.post("/api/v1/stations/nobody-here/commands", json={"kind": "check"})
    assert response.status_code == 404 and "nobody-here" in response.json()["detail"]
    wrong = central.api.post(f"/api/v1/stations/{STATION}/commands", json={"kind": "restart", "site": SITE,
                                                                            "config": "x: 1"})
    assert wrong.status_code == 422 and "restart takes no config" in wrong.text


def test_an_expired_command_is_refused_when_the_station_clock_can_tell(central: Central, station: Station) -> None:
    from gateway.driver_api.clock import kernel_clock

    issued = utc_now() - timedelta(hours=2)
    command = CommandKey(central.data_dir).sign(Command(
        id=uuid.uuid4().hex, site=SITE, station=STATION, kind="clock_check", issued=issued,
        expires=issued + timedelta(hours=1), issued_by="ops"))
    publish_as_central(central, command)
    assert wait_for(lambda: any(r.final for r in results_of(central, command.id)), 30)
    [result] = results_of(central, command.id)
    if kernel_clock().synced:  # the station's clock is this machine's
        assert result.status == "rejected" and result.message.startswith("expired at ")
    else:  # an unsynchronised clock cannot tell: the station acts and says so in its log
        assert result.status == "ok" and "which is not synchronised: acting on it" in station.text()


# --- the operator's command line (sinkwatch central station ...) ---------------------------------------------------


def cli(*args: str, token: str | None = None) -> tuple[int, str]:
    from typer.testing import CliRunner

    from gateway.cli import app

    # the operator's token, as `sinkwatch central token create --role operator` would print it
    result = CliRunner().invoke(app, ["central", "station", *args],
                                env={"SINKWATCH_API_TOKEN": token or OPERATOR_TOKEN[0]})
    return result.exit_code, result.output


def test_the_command_line_checks_a_station_and_shows_a_command_again(central: Central, station: Station) -> None:
    url = str(central.api.base_url)
    code, output = cli("command", "check", "--station", STATION, "--site", SITE, "--api", url, "--wait", "60")
    assert code == 0, output
    lines = output.splitlines()
    assert lines[0].startswith("command ") and lines[0].endswith(f"(check) sent to {SITE}/{STATION}")
    assert any(" ok " in line and "1 of 2 sensors pass" in line for line in lines)
    assert any(line.split()[:2] == ["co2_10cm", "PASS"] for line in lines)
    assert any(line.split()[:2] == ["co2_30cm", "FAIL"] for line in lines) and any("fix:" in line for line in lines)
    command_id = lines[0].split()[1]
    code, again = cli("status", command_id, "--station", STATION, "--api", url)
    assert code == 0 and f"command {command_id} (check)" in again and "1 of 2 sensors pass" in again


def test_the_command_line_pushes_a_config_and_reports_a_refusal(central: Central, station: Station,
                                                                tmp_path: Path) -> None:
    url = str(central.api.base_url)
    pushed = yaml.safe_load(station.config.read_bytes())
    pushed["sensors"][0]["interval_s"] = -1
    file = tmp_path / "new.yaml"
    file.write_text(yaml.safe_dump(pushed), encoding="utf-8")
    code, output = cli("push-config", str(file), "--station", STATION, "--api", url, "--wait", "60")
    assert code == 1, output  # the station's outcome: rejected, with the key to fix
    assert "rejected" in output and "sensors[0].interval_s" in output


def test_the_command_line_refuses_what_it_cannot_send(central: Central) -> None:
    url = str(central.api.base_url)
    code, output = cli("command", "reboot", "--station", STATION, "--api", url)
    assert code == 2 and "use restart, check or clock-check" in output
    code, output = cli("command", "check", "--station", "nobody-here", "--api", url)
    assert code == 2 and "refused (404)" in output and "nobody-here" in output


def test_the_command_line_prints_the_command_key(central: Central, tmp_path: Path) -> None:
    config = tmp_path / "central.yaml"
    config.write_text(yaml.safe_dump({"storage": {"kind": "sqlite", "path": str(tmp_path / "s.sqlite")},
                                      "data_dir": str(central.data_dir)}), encoding="utf-8")
    code, output = cli("command-key", "-c", str(config))
    assert code == 0 and output.strip() == read_public_key(central.data_dir)


def test_commands_from_a_non_operator_are_refused(central: Central, station: Station) -> None:
    reader = issue_token(central.data_dir, "reader", "a-researcher")
    before = len(central.capture.on("/commands"))
    body = {"kind": "restart", "site": SITE}
    with httpx.Client(base_url=central.api.base_url, timeout=10) as anyone:
        for headers, status in (({}, 401), (bearer(reader), 403),
                                (bearer("swt_000000000000_" + "x" * 43), 401)):
            refused = anyone.post(f"/api/v1/stations/{STATION}/commands", json=body, headers=headers)
            assert refused.status_code == status, refused.text
        assert "needs operator" in anyone.post(f"/api/v1/stations/{STATION}/commands", json=body,
                                               headers=bearer(reader)).json()["detail"]
        # a reader may see the commands, not send one
        listed = anyone.get(f"/api/v1/stations/{STATION}/commands", headers=bearer(reader))
        assert listed.status_code == 200
        assert not [c for c in listed.json() if "a-researcher" in c["issued_by"]]
    code, output = cli("command", "restart", "--station", STATION, "--api", str(central.api.base_url), token=reader)
    assert code == 2 and "refused (403)" in output
    # nothing reached the broker, nothing was done
    assert len(central.capture.on("/commands")) == before
    assert station.starts() == 1
