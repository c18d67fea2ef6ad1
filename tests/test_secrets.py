"""Secrets in config files (gateway/secretfile.py): from a private file or the environment, refused in a file
others may read, and never shown in an error message (docs/security.md, "Secrets")."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.central.config import load_central_config
from gateway.configfile import ConfigError
from gateway.edge.config import load_station_config
from gateway.secretfile import reveal

SECRET = "Tr0ub4dor-&3-secret-value"


def _private(path: Path, text: str) -> Path:
    path.write_text(text + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def _central(tmp_path: Path, body: str, mode: int = 0o640) -> Path:
    path = tmp_path / "central.yaml"
    storage = "" if body.startswith("storage:") else f"storage: {{kind: sqlite, path: {tmp_path / 's.sqlite'}}}\n"
    path.write_text(storage + body, encoding="utf-8")
    path.chmod(mode)
    return path


def test_a_password_file_of_mode_0600_is_read(tmp_path: Path) -> None:
    secret = _private(tmp_path / "mqtt-password", SECRET)
    config = load_central_config(_central(tmp_path, f"mqtt: {{username: c, password_file: {secret}}}\n"))
    assert reveal(config.mqtt.password) == SECRET
    assert SECRET not in repr(config) and SECRET not in str(config.mqtt)


@pytest.mark.parametrize("mode", [0o640, 0o644, 0o604, 0o660])
def test_a_secret_file_others_may_read_is_refused_naming_file_and_chmod(tmp_path: Path, mode: int) -> None:
    secret = _private(tmp_path / "mqtt-password", SECRET)
    secret.chmod(mode)
    with pytest.raises(ConfigError) as caught:
        load_central_config(_central(tmp_path, f"mqtt: {{password_file: {secret}}}\n"))
    message = str(caught.value)
    assert "mqtt.password_file" in message and f"chmod 600 {secret}" in message and f"{mode:04o}" in message
    assert SECRET not in message


def test_a_secret_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SINKWATCH_TEST_TOKEN", SECRET)
    config = load_central_config(_central(tmp_path, "storage: {kind: influxdb, url: 'http://127.0.0.1:1', api: v2, "
                                                    "token: '${SINKWATCH_TEST_TOKEN}', org: o, bucket: b}\n"))
    assert reveal(config.storage.token) == SECRET
    monkeypatch.delenv("SINKWATCH_TEST_TOKEN")
    with pytest.raises(ConfigError, match=r"storage.token: environment variable SINKWATCH_TEST_TOKEN is not set"):
        load_central_config(_central(tmp_path, "storage: {kind: influxdb, url: 'http://127.0.0.1:1', api: v2, "
                                               "token: '${SINKWATCH_TEST_TOKEN}', org: o, bucket: b}\n"))


def test_secret_file_paths_may_name_systemd_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _private(tmp_path / "influx-password", SECRET)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    config = load_central_config(_central(tmp_path, "storage: {kind: influxdb, url: 'http://127.0.0.1:1', "
                                                    "username: u, password_file: '${CREDENTIALS_DIRECTORY}/influx-"
                                                    "password'}\n"))
    assert reveal(config.storage.password) == SECRET


def test_an_inline_secret_needs_a_private_config_file(tmp_path: Path) -> None:
    path = _central(tmp_path, f"mqtt: {{username: c, password: {SECRET}}}\n", mode=0o644)
    with pytest.raises(ConfigError) as caught:
        load_central_config(path)
    message = str(caught.value)
    assert "mqtt.password" in message and "mqtt.password_file" in message and f"chmod 600 {path}" in message
    assert SECRET not in message
    path.chmod(0o600)
    assert reveal(load_central_config(path).mqtt.password) == SECRET


def test_the_station_config_takes_its_password_the_same_ways(tmp_path: Path) -> None:
    secret = _private(tmp_path / "pw", SECRET)
    path = tmp_path / "station.yaml"
    path.write_text(f"site: s\nstation: st01\nmqtt: {{username: st01, password_file: {secret}}}\nbuffer: {{path: b}}"
                    "\nsensors: [{name: p, driver: gmp252, port: /dev/null, address: 240}]\n", encoding="utf-8")
    assert reveal(load_station_config(path).mqtt.password) == SECRET
    secret.chmod(0o644)
    with pytest.raises(ConfigError, match=r"mqtt.password_file: .*chmod 600"):
        load_station_config(path)


def test_both_a_secret_and_its_file_is_refused(tmp_path: Path) -> None:
    secret = _private(tmp_path / "pw", SECRET)
    path = _central(tmp_path, f"mqtt: {{password: x, password_file: {secret}}}\n", mode=0o600)
    with pytest.raises(ConfigError, match=r"mqtt.password and mqtt.password_file are both set"):
        load_central_config(path)


def test_a_failing_config_with_a_secret_never_prints_it(tmp_path: Path) -> None:
    # an unrelated error in the same section: pydantic would show the section's input, secret included
    path = _central(tmp_path, f"mqtt: {{password: {SECRET}, port: 0}}\n", mode=0o600)
    with pytest.raises(ConfigError) as caught:
        load_central_config(path)
    assert "mqtt.port" in str(caught.value) and SECRET not in str(caught.value)
    assert os.environ.get("SINKWATCH_TEST_TOKEN") is None
