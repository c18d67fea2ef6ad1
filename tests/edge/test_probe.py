"""`sinkwatch probe modbus`: device identification against real simulators on a socat PTY (real pyserial), and
the order and early exit of the settings search with a fake line whose answers depend on the serial settings (a
PTY has no baud rate, so only a fake can be "wrong")."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest
from typer.testing import CliRunner

from drivers.gmp252.simulator import profile_simulators
from drivers.soilprobe.simulator import SoilProbeSimulator
from drivers.sr30.simulator import SR30Simulator
from gateway.cli import app
from gateway.driver_api import DeviceError, FailureKind, SerialSettings
from gateway.probe import parse_addresses, scan
from gateway.simulation.rtu_line import RtuDevice, RtuLineSimulator
from gateway.testing.serial_pty import socat_ptys_or_skip

ptys = pytest.fixture(socat_ptys_or_skip, name="ptys")


@pytest.mark.integration
def test_scan_names_gmp252s_and_both_soil_probe_layouts(ptys: tuple[str, str]) -> None:
    devices: list[RtuDevice] = [
        *profile_simulators({240: 0.1, 242: 0.5}),
        SoilProbeSimulator(address=1, layout="A", fixed={"swc": 31.5, "ts": -2.3, "ec": 250}),
        SoilProbeSimulator(address=3, layout="B", fixed={"ts": -12.34, "swc": 0.6, "ec": 420}),
    ]
    with RtuLineSimulator(ptys[0], devices):
        result = CliRunner().invoke(app, ["probe", "modbus", "--port", ptys[1], "--addresses", "1-4,239-243",
                                          "--timeout", "0.5"])
    assert result.exit_code == 0, result.output
    rows = {int(line.split()[0]): line for line in result.stdout.splitlines() if line.split()[0].isdigit()}
    assert sorted(rows) == [1, 3, 240, 242]
    assert "Vaisala GMP252" in rows[240] and "CO2 " in rows[240] and "ok" in rows[240]
    assert "Vaisala GMP252" in rows[242]
    assert "layout A (SWC 31.5 %, TS -2.3 degC, EC 250" in rows[1] and "layout B" not in rows[1]
    assert "layout B (TS -12.34 degC, SWC 0.60 %" in rows[3] and "layout A" not in rows[3]
    assert all("19200 8N2" in row for row in rows.values())


@pytest.mark.integration
def test_scan_tells_an_sr30_pyranometer_from_a_soil_probe(ptys: tuple[str, str]) -> None:
    devices: list[RtuDevice] = [SR30Simulator(address=1, fixed={"irradiance": 61234}),
                                SoilProbeSimulator(address=2, layout="A", fixed={"swc": 31.5, "ts": -2.3, "ec": 250})]
    with RtuLineSimulator(ptys[0], devices):
        result = CliRunner().invoke(app, ["probe", "modbus", "--port", ptys[1], "--addresses", "1-3",
                                          "--timeout", "0.5"])
    assert result.exit_code == 0, result.output
    rows = {int(line.split()[0]): line for line in result.stdout.splitlines() if line.split()[0].isdigit()}
    assert sorted(rows) == [1, 2]
    assert "Hukseflux SR30-D1" in rows[1] and "612.3 W m-2" in rows[1] and "soil" not in rows[1]
    assert "layout A" in rows[2]


@pytest.mark.integration
def test_scan_of_a_silent_line_says_so_and_fails(ptys: tuple[str, str]) -> None:
    result = CliRunner().invoke(app, ["probe", "modbus", "--port", ptys[1], "--addresses", "1-3", "--baud", "9600",
                                      "--timeout", "0.02"])
    assert result.exit_code == 1
    assert "tried 9600 8N2, 9600 8E1, 9600 8O1" in result.stdout and "no device answered" in result.stdout


def test_a_missing_port_stops_the_scan_with_the_fix(tmp_path: Path) -> None:
    report = scan(str(tmp_path / "ttyUSB9"), [1, 2], timeout_s=0.01)
    assert report.tried == ["19200 8N2"] and report.error is not None and "ls /dev/serial/by-id/" in report.error


class SettingsSensitiveLine:
    """A fake line with a soil probe (layout B) at address 7 that answers only at 9600 8E1."""

    opened: ClassVar[list[str]] = []

    def __init__(self, settings: SerialSettings) -> None:
        self.settings = settings
        self.opened.append(settings.describe())

    def read_registers(self, device: int, address: int, count: int, *, function: int = 3, timeout_s: float,
                       retries: int = 0) -> list[int]:
        if self.settings.describe() != "9600 8E1" or device != 7:
            raise DeviceError(FailureKind.TIMEOUT, "silence")
        if address != 0:
            raise DeviceError(FailureKind.PROTOCOL, "exception 02")
        return [1234, 2750, 420][:count]

    def close(self) -> None:
        pass


def test_settings_are_tried_most_likely_first_and_the_search_stops_where_devices_answer() -> None:
    SettingsSensitiveLine.opened = []
    report = scan("/dev/fake", [6, 7, 8], baudrates=[19200, 9600, 4800], line_factory=SettingsSensitiveLine)
    assert SettingsSensitiveLine.opened == ["19200 8N2", "19200 8E1", "19200 8O1", "9600 8N2", "9600 8E1"]
    assert [(f.address, f.settings) for f in report.found] == [(7, "9600 8E1")]
    assert "layout B (TS 12.34 degC, SWC 27.50 %" in report.found[0].evidence


def test_all_settings_keeps_searching() -> None:
    SettingsSensitiveLine.opened = []
    scan("/dev/fake", [7], baudrates=[9600, 4800], all_settings=True, line_factory=SettingsSensitiveLine)
    assert len(SettingsSensitiveLine.opened) == 6


@pytest.mark.parametrize(("text", "expected"), [("1-3", [1, 2, 3]), ("240", [240]), ("3,1-2,2", [1, 2, 3])])
def test_address_ranges(text: str, expected: list[int]) -> None:
    assert parse_addresses(text) == expected


@pytest.mark.parametrize("text", ["0-3", "240-248", "a-b", "5-3"])
def test_bad_address_ranges_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"1\.\.247|not an address"):
        parse_addresses(text)


def test_a_port_that_cannot_be_opened_is_not_reported_as_scanned(tmp_path: Path) -> None:
    """First-day walkthrough (docs/reliability.md): the report said "tried 19200 8N2" of a port that was never
    opened, and its fix named station.yaml's `port` key instead of --port."""
    result = CliRunner().invoke(app, ["probe", "modbus", "--port", str(tmp_path / "ttyUSB9"), "--addresses", "1"])
    assert result.exit_code == 1
    assert f"port {tmp_path / 'ttyUSB9'}: not scanned" in result.stdout and "tried" not in result.stdout
    assert "--port (ls /dev/serial/by-id/)" in result.stdout and "`port` key" not in result.stdout


@pytest.mark.parametrize(("args", "expected"), [
    (["--addresses", "5-2"], "--addresses: '5-2': the range runs backwards; write 2-5"),
    (["--baud", "19201"], "--baud 19201: not a serial rate a field device uses; give one of 1200, 2400,"),
])
def test_a_mistyped_scan_option_is_refused_before_the_scan(tmp_path: Path, args: list[str], expected: str) -> None:
    result = CliRunner().invoke(app, ["probe", "modbus", "--port", str(tmp_path / "ttyUSB9"), *args])
    assert result.exit_code == 2 and expected in result.output
    assert "trying" not in result.output
