"""`sinkwatch station check` against simulators on socat PTYs: all pass; with one simulator stopped, the table
names that sensor, the reason and the fix, and the exit code is non-zero."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from drivers.gmp252.simulator import GMP252Simulator, profile_simulators
from drivers.soilprobe.simulator import SoilProbeSimulator
from gateway.cli import app
from gateway.edge.check import CHECKS, CheckResult, register_check, render_table
from gateway.simulation.rtu_line import RtuLineSimulator
from gateway.testing.serial_pty import socat_pty_pair

pytestmark = pytest.mark.integration


@pytest.fixture
def two_lines(tmp_path: Path) -> Iterator[tuple[tuple[str, str], tuple[str, str]]]:
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed (Debian package socat)")
    with socat_pty_pair(tmp_path / "line1") as first, socat_pty_pair(tmp_path / "line2") as second:
        yield first, second


def write_station(tmp_path: Path, line1: str, line2: str) -> Path:
    common: dict[str, Any] = {"timeout_s": 0.3, "retries": 0}
    config = {
        "site": "forest", "station": "st1",
        "buffer": {"path": str(tmp_path / "buffer.sqlite")},
        "sensors": [
            {"name": "co2_10cm", "driver": "gmp252", "port": line1, "address": 240, "variable_suffix": "_1_1_1",
             **common},
            {"name": "co2_30cm", "driver": "gmp252", "port": line1, "address": 241, "variable_suffix": "_1_2_1",
             **common},
            {"name": "swc_10cm", "driver": "soilprobe", "port": line1, "address": 1, "layout": "B",
             "baudrate": 19200, "stopbits": 2, **common},
            {"name": "co2_ambient", "driver": "gmp252", "port": line2, **common},
        ],
    }
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_check(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["station", "check", "-c", str(path)])
    return result.exit_code, result.output


def test_a_station_with_every_simulator_running_passes(two_lines: Any, tmp_path: Path) -> None:
    (sim1, drv1), (sim2, drv2) = two_lines
    probes = profile_simulators({240: 0.1, 241: 0.3})
    with RtuLineSimulator(sim1, [*probes, SoilProbeSimulator(layout="B")]), GMP252Simulator(sim2):
        code, output = run_check(write_station(tmp_path, drv1, drv2))
    assert code == 0, output
    rows = {line.split()[0]: line for line in output.splitlines()[1:5]}
    assert set(rows) == {"co2_10cm", "co2_30cm", "swc_10cm", "co2_ambient"}
    assert all(" PASS " in row for row in rows.values())
    assert "CO2_1_2_1 = " in rows["co2_30cm"] and "umol mol-1" in rows["co2_30cm"]
    assert "SWC = " in rows["swc_10cm"] and "degC" in rows["swc_10cm"]
    assert "4 of 4 sensors pass" in output


def test_a_stopped_simulator_is_named_with_the_reason_and_the_fix(two_lines: Any, tmp_path: Path) -> None:
    (sim1, drv1), (_sim2, drv2) = two_lines  # nothing serves line 2: its probe is "stopped"
    probes = profile_simulators({240: 0.1, 241: 0.3})
    with RtuLineSimulator(sim1, [*probes, SoilProbeSimulator(layout="B")]):
        code, output = run_check(write_station(tmp_path, drv1, drv2))
    assert code == 1, output
    failing = [line for line in output.splitlines() if " FAIL " in line]
    assert len(failing) == 1 and failing[0].split()[0] == "co2_ambient"
    assert "timeout: " in failing[0] and "no reply from address 240" in failing[0]
    fix = output.splitlines()[output.splitlines().index(failing[0]) + 1]
    assert "fix:" in fix and "24 V supply" in fix
    assert "3 of 4 sensors pass; 1 FAIL" in output


def test_a_missing_port_fails_with_the_port_hint(tmp_path: Path) -> None:
    path = write_station(tmp_path, str(tmp_path / "no-such-tty"), str(tmp_path / "nor-this"))
    code, output = run_check(path)
    assert code == 1
    assert output.count(" FAIL ") == 4 and "no_port: " in output and "ls /dev/serial/by-id/" in output


def test_other_sensor_kinds_plug_in_through_register_check() -> None:
    def streams(_config: object) -> list[CheckResult]:
        return [CheckResult("sonic", "windmaster", ok=True, values=["U = 1.2 m s-1"], where="/dev/ttyUSB3")]

    register_check(streams)
    try:
        assert CHECKS[-1] is streams
        register_check(streams)
        assert CHECKS.count(streams) == 1
    finally:
        CHECKS.remove(streams)
    table = render_table([CheckResult("sonic", "windmaster", ok=True, values=["U = 1.2 m s-1"])])
    assert table.splitlines()[1].split() == ["sonic", "PASS", "U", "=", "1.2", "m", "s-1"]


def test_a_modbus_tcp_port_that_refuses_is_said_once_in_the_table(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:  # a port nothing listens on once this socket is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "station.yaml"
    config.write_text(yaml.safe_dump({
        "site": "s", "station": "t", "buffer": {"path": str(tmp_path / "b.sqlite")},
        "sensors": [{"name": "co2", "driver": "gmp252", "port": f"tcp://127.0.0.1:{port}", "timeout_s": 0.2}],
    }), encoding="utf-8")
    script = Path(sys.executable).parent / "sinkwatch"
    command = [str(script) if script.exists() else shutil.which("sinkwatch") or "sinkwatch"]
    done = subprocess.run([*command, "station", "check", "-c", str(config)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 1, done.stderr
    assert "FAIL" in done.stdout and "fix: check that the Modbus TCP gateway" in done.stdout
    assert "Connection to" not in done.stderr  # pymodbus's own log line would repeat the table's reason


def test_a_dimensionless_unit_is_not_printed_as_a_second_number() -> None:
    """First-day walkthrough (docs/reliability.md): `DIAG_SONIC = 0 1` and `LID_CLOSED_4_1_1 = 1 1` (UDUNITS' "1")
    read as two numbers in `station check` and `live`."""
    import time

    from gateway.edge.check import results_from_status
    from gateway.edge.live import render_status

    snapshot = {"schema": 1, "written": time.time(), "running": True, "site": "forest", "station": "st1",
                "sensors": [{"name": "chamber_1", "driver": "chamber", "available": True, "where": "/dev/x",
                             "latest": [{"variable": "LID_CLOSED", "value": 1, "unit": "1", "qc": 0},
                                        {"variable": "CO2", "value": 421.5, "unit": "umol mol-1", "qc": 0}]}]}
    [result] = results_from_status(snapshot)
    assert result.values == ["LID_CLOSED = 1", "CO2 = 421.5 umol mol-1"]
    table = render_status(snapshot)
    assert [line.split() for line in table.splitlines() if "LID_CLOSED" in line] == [
        ["chamber_1", "LID_CLOSED", "1", "-", "-", "ok", "-"]]
