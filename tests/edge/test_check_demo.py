"""`sinkwatch station check` on the demo station's simulators (no daemon running: the check opens every port
itself, streams included): a passing table; with simulators stopped it names those sensors and the reasons."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.demo import (
    AIR_PROBE,
    ANALYZER,
    CANOPY_CO2,
    CHAMBER,
    DENDRO,
    PROFILE,
    PYRANOMETER,
    SOIL_PROBE,
    SONIC,
    DemoRig,
    demo_simulators,
    write_station_yaml,
)

pytestmark = pytest.mark.integration


def run_check(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["station", "check", "-c", str(path)])
    return result.exit_code, result.output


@pytest.fixture
def demo_station(tmp_path: Path) -> Iterator[tuple[DemoRig, Path]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        no_broker = ("127.0.0.1", int(sock.getsockname()[1]))
    with demo_simulators(tmp_path) as rig:
        yield rig, write_station_yaml(tmp_path / "station.yaml", rig.station_config(tmp_path, no_broker))


def rows_of(output: str) -> dict[str, str]:
    return {line.split()[0]: line for line in output.splitlines()[1:] if line.split() and
            line.split()[1] in ("PASS", "FAIL")}


def test_the_demo_station_passes(demo_station: tuple[DemoRig, Path]) -> None:
    _rig, station_yaml = demo_station
    code, output = run_check(station_yaml)
    assert code == 0, output
    rows = rows_of(output)
    expected = {name for name, *_ in PROFILE} | {SOIL_PROBE[0], CANOPY_CO2[0], PYRANOMETER[0], AIR_PROBE[0], SONIC,
                                                   ANALYZER, CHAMBER[0], DENDRO[0]}
    assert set(rows) == expected
    assert all(row.split()[1] == "PASS" for row in rows.values()), output
    assert "CO2_1_3_1 = " in rows[PROFILE[2][0]] and "umol mol-1" in rows[PROFILE[2][0]]
    assert "SWC_1_1_1 = " in rows[SOIL_PROBE[0]]
    assert "SW_IN_1_1_1 = " in rows[PYRANOMETER[0]] and "W m-2" in rows[PYRANOMETER[0]]
    assert "TA_1_1_1 = " in rows[AIR_PROBE[0]] and "VPD_1_1_1 = " in rows[AIR_PROBE[0]] and "hPa" in rows[AIR_PROBE[0]]
    # the streams were read: values with units and the records counted
    assert "U = " in rows[SONIC] and "m s-1" in rows[SONIC] and " records in " in rows[SONIC]
    assert "CO2 = " in rows[ANALYZER] and "mmol m-3" in rows[ANALYZER]
    # the chamber's CO2 comes with its lid state; the dendrometers through the firmware bridge board
    assert f"LID_CLOSED{CHAMBER[3]} = " in rows[CHAMBER[0]] and f"CO2{CHAMBER[3]} = " in rows[CHAMBER[0]]
    assert f"STEM_RAD_CHG{DENDRO[1][0]} = " in rows[DENDRO[0]] and "um" in rows[DENDRO[0]]
    assert f"{len(expected)} of {len(expected)} sensors pass" in output


def test_stopped_simulators_are_named_with_the_reason(demo_station: tuple[DemoRig, Path]) -> None:
    rig, station_yaml = demo_station
    rig.profile_line.unplug(PROFILE[1][1])
    rig.analyzer.stop()
    rig.sonic.set_fault("no_output")
    code, output = run_check(station_yaml)
    assert code == 1, output
    rows = rows_of(output)
    failing = {name for name, row in rows.items() if row.split()[1] == "FAIL"}
    assert failing == {PROFILE[1][0], ANALYZER, SONIC}, output
    assert "timeout: " in rows[PROFILE[1][0]] and f"no reply from address {PROFILE[1][1]}" in rows[PROFILE[1][0]]
    assert "no_port: cannot open tcp://127.0.0.1:" in rows[ANALYZER] and "refused" in rows[ANALYZER]
    assert "silent: no data from tcp://127.0.0.1:" in rows[SONIC]
    lines = output.splitlines()
    assert "continuous output mode" in lines[lines.index(rows[SONIC]) + 1]
    assert "8 of 11 sensors pass; 3 FAIL" in output


def test_simulate_gmp252_serves_a_profile_of_several_addresses_on_one_line(tmp_path: Path) -> None:
    import re
    import shutil
    import signal
    import subprocess
    import sys

    script = Path(sys.executable).parent / "sinkwatch"
    command = [str(script) if script.exists() else shutil.which("sinkwatch") or "sinkwatch"]
    process = subprocess.Popen([*command, "simulate", "gmp252", "--port", "pty", "--address", "240",
                                "--address", "241", "--address", "242"], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert "address 240 at 10 cm, address 241 at 30 cm, address 242 at 60 cm" in first, first
        match = re.search(r"point the drivers' port at (\S+)", first)
        assert match, first
        sensors = [{"name": f"co2_{a}", "driver": "gmp252", "port": match.group(1), "address": a,
                    "variable_suffix": f"_1_{i + 1}_1", "timeout_s": 0.5} for i, a in enumerate((240, 241, 242))]
        station_yaml = write_station_yaml(tmp_path / "station.yaml", {
            "site": "forest", "station": "st1", "buffer": {"path": str(tmp_path / "buffer.sqlite")},
            "sensors": sensors})
        code, output = run_check(station_yaml)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
    assert code == 0, output
    values = {}
    for name, row in rows_of(output).items():
        assert row.split()[1] == "PASS"
        values[name] = float(re.search(r"CO2_1_\d_1 = (\S+)", row).group(1))  # type: ignore[union-attr]
    # soil CO2 rises with depth
    assert values["co2_240"] < values["co2_241"] < values["co2_242"], values



# every simulator stops through gateway.simulation.until_stopped; one of each kind (chamber: a report each second;
# a stream instrument; a Modbus probe; a profile of several on one line), by Ctrl-C or SIGTERM
SIMULATORS = [(["chamber"], "SIGINT"), (["csat3b"], "SIGTERM"), (["soilprobe"], "SIGINT"),
              (["gmp252", "--address", "240", "--address", "241"], "SIGTERM"),
              # first-day walkthrough (docs/reliability.md): its entry was the simavr runner's main(argv), and
              # `sinkwatch simulate firmware_bridge --port pty` ended in a TypeError traceback
              (["firmware_bridge"], "SIGTERM")]


@pytest.mark.parametrize(("device", "stop_signal"), SIMULATORS, ids=lambda v: "-".join(v) if isinstance(v, list) else v)
def test_a_simulator_stops_on_ctrl_c_or_sigterm_even_when_started_with_sigint_ignored(
        device: list[str], stop_signal: str) -> None:
    """A background job of a non-interactive shell starts with SIGINT ignored (and a test run started that way
    passes it on to every simulator it starts): a simulator still stops on Ctrl-C, and on SIGTERM (systemd, `kill`),
    with its closing line, even when stopped as soon as it said how."""
    import shutil
    import signal
    import subprocess
    import sys

    script = Path(sys.executable).parent / "sinkwatch"
    command = [str(script) if script.exists() else shutil.which("sinkwatch") or "sinkwatch"]
    process = subprocess.Popen([*command, "simulate", *device, "--port", "pty"], stdout=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        assert process.stdout is not None
        said = [process.stdout.readline() for _ in range(2)]
        assert "port at /dev/" in said[0] and said[1] == "Ctrl-C to stop\n", said
        process.send_signal(getattr(signal, stop_signal))
        rest, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0 and "stopped after" in rest, (process.returncode, rest)
