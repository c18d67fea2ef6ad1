"""`sinkwatch central serve|ingest` and `audit verify` with a store or an API address they cannot use: one message
naming the config key and the fix, a non-zero exit, no traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gateway.cli import app


def _config(tmp_path: Path, storage_path: Path, port: int = 0) -> Path:
    path = tmp_path / "central.yaml"
    path.write_text(yaml.safe_dump({
        "mqtt": {"host": "127.0.0.1", "port": 1},
        "storage": {"kind": "sqlite", "path": str(storage_path)},
        "api": {"host": "127.0.0.1", "port": port, "auth": "development"},
        "data_dir": str(tmp_path / "data"),
    }), encoding="utf-8")
    return path


def _unusable_store(tmp_path: Path, where: str) -> Path:
    if where == "folder":
        return tmp_path
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("", encoding="utf-8")
    return blocker / "central.sqlite"


@pytest.mark.parametrize("where", ["folder", "missing_parent"])
@pytest.mark.parametrize("command", [["central", "serve"], ["central", "ingest"],
                                     ["audit", "verify", "--station", "st01", "--from", "2025-01-01T00:00:00Z",
                                      "--to", "2025-02-01T00:00:00Z"]])
def test_a_store_that_cannot_be_opened_names_storage_path(tmp_path: Path, where: str, command: list[str]) -> None:
    store = _unusable_store(tmp_path, where)
    config = _config(tmp_path, store)
    result = CliRunner().invoke(app, [*command, "-c", str(config)])
    assert result.exit_code in (1, 2), result.output
    assert f"storage.path {store}" in result.output
    assert "set storage.path to a file (not a folder)" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_an_api_port_in_use_names_api_port_and_the_fix(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config = _config(tmp_path, tmp_path / "central.sqlite", port)
        result = CliRunner().invoke(app, ["central", "serve", "-c", str(config)])
    assert result.exit_code == 1, result.output
    assert f"api.port: the HTTP API could not listen on 127.0.0.1:{port}" in result.output
    assert "api.port 0 picks a free one" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("command", [["central", "serve"], ["central", "ingest"], ["central", "token", "list"],
                                     ["central", "token", "create", "grafana"]])
def test_a_data_dir_that_cannot_be_made_names_data_dir_and_the_fix(tmp_path: Path, command: list[str]) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("", encoding="utf-8")
    config = tmp_path / "central.yaml"
    config.write_text(yaml.safe_dump({
        "storage": {"kind": "sqlite", "path": str(tmp_path / "central.sqlite")},
        "api": {"host": "127.0.0.1", "port": 0, "auth": "development"},
        "data_dir": str(blocker / "data"),
    }), encoding="utf-8")
    result = CliRunner().invoke(app, [*command, "-c", str(config)])
    assert result.exit_code == 2, result.output
    assert f"{config}: data_dir {blocker / 'data'}: cannot create it: " in result.output
    assert "set data_dir to a folder this service's user may write" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_validate_checks_a_central_config_without_opening_anything(tmp_path: Path) -> None:
    store = tmp_path / "never" / "central.sqlite"
    config = _config(tmp_path, store, 8080)
    result = CliRunner().invoke(app, ["central", "validate", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert f"{config}: ok — storage sqlite ({store})" in result.output
    assert "API http://127.0.0.1:8080 (auth development)" in result.output
    assert not store.parent.exists() and not (tmp_path / "data").exists()


def test_validate_names_the_misspelt_key_and_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "central.yaml"
    config.write_text("storage: {kind: sqlite, path: c.sqlite}\napi: {auht: token}\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["central", "validate", "-c", str(config)])
    assert result.exit_code == 2
    assert "api.auht: unknown key; did you mean auth?" in result.output
