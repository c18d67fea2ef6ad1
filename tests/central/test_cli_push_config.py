"""`sinkwatch central station push-config` reads the file before it sends anything: a file that is no YAML mapping,
or names another station or site than the one it is sent to, is refused with exit 2 and nothing sent (the API address
given is a port nobody listens on: a command that got past the check would fail to send, exit 4)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gateway.cli import app
from gateway.net import free_port

STATION_YAML = {"site": "hainich", "station": "plot-07", "buffer": {"path": "/var/lib/sinkwatch/buffer.sqlite"},
                "sensors": []}


def push(file: Path, *options: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["central", "station", "push-config", str(file), *options, "--api",
                                      f"http://127.0.0.1:{free_port()}", "--wait", "1"],
                                env={"SINKWATCH_API_TOKEN": "swt_000000000000_" + "x" * 43})
    return result.exit_code, result.output


def written(tmp_path: Path, text: str) -> Path:
    file = tmp_path / "new.yaml"
    file.write_text(text, encoding="utf-8")
    return file


@pytest.mark.parametrize(("options", "changed", "expected"), [
    (("--station", "plot-08"), {}, "names station 'plot-07', not 'plot-08' (--station)"),
    (("--station", "plot-07", "--site", "tharandt"), {}, "names site 'hainich', not 'tharandt' (--site)"),
    (("--station", "plot-07"), {"station": None}, "names station None, not 'plot-07'"),
])
def test_a_config_naming_another_station_or_site_is_not_sent(
        tmp_path: Path, options: tuple[str, ...], changed: dict[str, object], expected: str) -> None:
    config = {k: v for k, v in {**STATION_YAML, **changed}.items() if v is not None}
    code, output = push(written(tmp_path, yaml.safe_dump(config)), *options)
    assert code == 2, output
    assert expected in output and output.rstrip().endswith("nothing sent")


@pytest.mark.parametrize(("text", "expected"), [
    ("site: hainich\nstation: [plot-07\n", "not valid YAML"),
    ("- site\n- station\n", "expected a mapping of keys at the top level"),
])
def test_a_file_that_is_no_yaml_mapping_is_not_sent(tmp_path: Path, text: str, expected: str) -> None:
    code, output = push(written(tmp_path, text), "--station", "plot-07")
    assert code == 2, output
    assert expected in output and "nothing sent" in output


@pytest.mark.parametrize("options", [("--station", "plot-07"), ("--station", "plot-07", "--site", "hainich")])
def test_the_station_s_own_config_gets_past_the_check_to_the_sending(tmp_path: Path, options: tuple[str, ...]) -> None:
    code, output = push(written(tmp_path, yaml.safe_dump(STATION_YAML)), *options)
    assert code == 4, output  # not sent because nobody listens, not refused by the check
    assert "nothing sent" not in output
