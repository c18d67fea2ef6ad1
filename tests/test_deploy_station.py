"""The station installer (deploy/station/install.sh) and every systemd unit in deploy/.

install.sh runs for real into a temporary root (`--root`): systemd-sysusers makes the service user there, pip
installs the software into a versioned virtualenv, and the result is checked file by file; `systemd-analyze verify`
checks every unit against that root, so a unit's ExecStart must exist where the unit says. In `--root` mode the
installer must not call systemctl, udevadm or apt-get: fakes of them on PATH record any call and fail.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from gateway.trust.keys import generate_key

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
STATION = DEPLOY / "station"
INSTALL = STATION / "install.sh"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
UNIT_SUFFIXES = {".service", ".socket", ".timer", ".path", ".mount", ".target", ".slice"}
UNITS = sorted(p for p in DEPLOY.rglob("*") if p.suffix in UNIT_SUFFIXES)
SYSTEM_UNITS = Path("/usr/lib/systemd/system")


def _tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is needed (Debian package {package}; deploy/install-test-deps.sh installs it)")
    return found


@dataclass
class Installed:
    root: Path
    calls: Path  # what the fake systemctl/udevadm/apt-get were asked, one line per call
    env: dict[str, str]
    output: str

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(INSTALL), "--root", str(self.root), *args], env=self.env, text=True,
                                capture_output=True, timeout=600)
        if check and result.returncode != 0:
            raise AssertionError(f"install.sh {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
        return result

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    def link(self, name: str) -> str:
        return os.readlink(self.path(f"/opt/sinkwatch/{name}"))

    def ids(self, table: str, name: str) -> list[str]:
        for line in self.path(f"/etc/{table}").read_text(encoding="utf-8").splitlines():
            fields = line.split(":")
            if fields[0] == name:
                return fields
        raise AssertionError(f"{name} not in {table} of the test root")


def _fake_tools(bin_dir: Path, calls: Path) -> None:
    bin_dir.mkdir()
    for name in ("systemctl", "udevadm", "apt-get"):
        fake = bin_dir / name
        fake.write_text(f'#!/bin/sh\necho "{name} $*" >> "{calls}"\nexit 1\n', encoding="utf-8")
        fake.chmod(0o755)


PASSWORD_LINE = "  password_file: /etc/sinkwatch/mqtt-password"
SIGNING_LINE = "signing_key: /etc/sinkwatch/signing-key"


def _sample_line(lines: list[str], prefix: str) -> int:
    hits = [i for i, line in enumerate(lines) if line.startswith(prefix)]
    assert len(hits) == 1, f"station.yaml.sample has no single line {prefix!r}"
    return hits[0]


def station_config(root: Path, mode: int = 0o600, **changes: object) -> dict[str, object]:
    """The sample config with its password and signing key files inside the test root (written with `mode`), plus
    `changes`."""
    lines = (STATION / "station.yaml.sample").read_text(encoding="utf-8").splitlines()
    password = root / "etc/sinkwatch/mqtt-password"
    password.parent.mkdir(parents=True, exist_ok=True)
    password.write_text("plot-01-secret\n", encoding="utf-8")
    password.chmod(mode)
    lines[_sample_line(lines, PASSWORD_LINE)] = f"  password_file: {password}"
    key = root / "etc/sinkwatch/signing-key"
    if not key.exists():
        generate_key(key)  # what `sinkwatch station provision` hands the technician
    key.chmod(mode)
    lines[_sample_line(lines, SIGNING_LINE)] = f"signing_key: {key}"
    return {**yaml.safe_load("\n".join(lines)), **changes}


def write_private(path: Path, data: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    _tool("systemd-sysusers", "systemd")
    base = tmp_path_factory.mktemp("station-install")
    calls = base / "calls.log"
    _fake_tools(base / "bin", calls)
    # pip's bytecode compilation of every installed module (PIP_COMPILE=0 is `--no-compile`) is 18 of an install's
    # ~25 CPU-s, twice per run of this module: skipped here, as it is pip's work, not the installer's; the installed
    # version's interpreters write bytecode for what they import instead (PYTHONDONTWRITEBYTECODE removed)
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}, "PIP_COMPILE": "0",
           "PATH": f"{base / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    root = base / "root"
    # a config and password file the technician left readable by all: the installer makes them the daemon's own
    # (mode 0600) and has the new version check the config before switching to it
    config = root / "etc/sinkwatch/station.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(yaml.safe_dump(station_config(root, mode=0o644)), encoding="utf-8")
    config.chmod(0o644)
    result = subprocess.run([str(INSTALL), "--root", str(root), "--serial", "soil-bus=A10K3XYZ",
                             "--serial", "sonic=FT4XQ2:01"], env=env, text=True, capture_output=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    # systemd-analyze verify --root resolves the dependencies of a unit (sysinit.target, ...) below the root too
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    yield Installed(root, calls, env, result.stderr)


def test_install_makes_the_user_folders_and_a_versioned_virtualenv(installed: Installed) -> None:
    user = installed.ids("passwd", "sinkwatch")
    assert user[5:] == ["/var/lib/sinkwatch", "/usr/sbin/nologin"]
    assert "sinkwatch" in installed.ids("group", "dialout")[3].split(",")
    uid, gid = int(user[2]), int(user[3])

    def owner_mode(absolute: str) -> tuple[int, int, int]:
        info = installed.path(absolute).stat()
        return info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)

    assert owner_mode("/etc/sinkwatch") == (0, gid, 0o770)
    for private in ("station.yaml", "mqtt-password", "signing-key"):
        assert owner_mode(f"/etc/sinkwatch/{private}") == (uid, gid, 0o600), private
    assert "station my-site/plot-01" in installed.output  # the installed version checked the config
    assert owner_mode("/var/lib/sinkwatch") == (uid, gid, 0o750)
    assert installed.link("current") == f"versions/{VERSION}"  # relative: valid inside the root and on the station
    assert not installed.path("/opt/sinkwatch/previous").exists()
    sinkwatch = installed.path("/opt/sinkwatch/current/bin/sinkwatch")
    assert subprocess.run([str(sinkwatch), "version"], capture_output=True, text=True, check=True).stdout.strip() \
        == VERSION
    record = installed.path(f"/opt/sinkwatch/versions/{VERSION}/.sinkwatch-install").read_text(encoding="utf-8")
    assert f"version={VERSION}\n" in record and f"source={REPO}\n" in record
    # the station software only: the central service's packages stay off a station
    probe = subprocess.run([str(installed.path("/opt/sinkwatch/current/bin/python")), "-c",
                            "import importlib.util as u; print(u.find_spec('pymodbus') is not None, "
                            "u.find_spec('fastapi') is not None)"], capture_output=True, text=True, check=True)
    assert probe.stdout.split() == ["True", "False"]
    assert not installed.calls.exists(), installed.calls.read_text(encoding="utf-8")


def test_the_sample_config_is_valid_for_the_installed_version(installed: Installed, tmp_path: Path) -> None:
    assert installed.path("/etc/sinkwatch/station.yaml.sample").read_bytes() == \
        (STATION / "station.yaml.sample").read_bytes()
    config = write_private(tmp_path / "station.yaml", station_config(installed.root))
    result = subprocess.run([str(installed.path("/opt/sinkwatch/current/bin/sinkwatch")), "station", "validate",
                             "-c", str(config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "station my-site/plot-01" in result.stdout


def test_system_files_are_installed(installed: Installed) -> None:
    for source, target in (("sinkwatch-station.service", "/etc/systemd/system/sinkwatch-station.service"),
                           ("70-sinkwatch-serial.rules", "/etc/udev/rules.d/70-sinkwatch-serial.rules"),
                           ("journald-sinkwatch.conf", "/etc/systemd/journald.conf.d/50-sinkwatch.conf"),
                           ("sinkwatch.sysusers", "/etc/sysusers.d/sinkwatch.conf")):
        assert installed.path(target).read_bytes() == (STATION / source).read_bytes(), target
    assert installed.path("/opt/sinkwatch/doc/README.md").read_bytes() == (DEPLOY / "README.md").read_bytes()
    names = installed.path("/etc/udev/rules.d/71-sinkwatch-names.rules").read_text(encoding="utf-8")
    rules = [line for line in names.splitlines() if line and not line.startswith("#")]
    assert rules == [
        'SUBSYSTEM=="tty", ENV{ID_BUS}=="usb", ENV{ID_SERIAL_SHORT}=="A10K3XYZ", ENV{ID_USB_INTERFACE_NUM}=="00", '
        'SYMLINK+="sinkwatch/soil-bus"',
        'SUBSYSTEM=="tty", ENV{ID_BUS}=="usb", ENV{ID_SERIAL_SHORT}=="FT4XQ2", ENV{ID_USB_INTERFACE_NUM}=="01", '
        'SYMLINK+="sinkwatch/sonic"',
    ]


def test_the_installed_station_unit_verifies_and_is_hardened(installed: Installed) -> None:
    analyze = _tool("systemd-analyze", "systemd")
    station_units = [u.name for u in UNITS if u.parent == STATION]  # every one install.sh must have installed
    assert "sinkwatch-station.service" in station_units
    verify = subprocess.run([analyze, "verify", f"--root={installed.root}", *station_units],
                            capture_output=True, text=True)
    # verify exits 0 on warnings (an unknown key, a bad value): any output is a finding
    assert verify.returncode == 0 and verify.stderr == "" and verify.stdout == "", verify.stderr + verify.stdout
    unit = (STATION / "sinkwatch-station.service").read_text(encoding="utf-8")
    for setting in ("Type=notify", "WatchdogSec=", "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
                    "ReadWritePaths=/etc/sinkwatch", "StateDirectory=sinkwatch", "SupplementaryGroups=dialout",
                    "ExecStart=/opt/sinkwatch/current/bin/sinkwatch station run -c /etc/sinkwatch/station.yaml"):
        assert re.search(rf"^{re.escape(setting)}", unit, re.MULTILINE), setting
    # systemd's own exposure score (0 = locked down, 10 = exposed): "OK" is below 4.0; ours is 2.3 today
    security = subprocess.run([analyze, "security", "--offline=yes", f"--root={installed.root}", "--threshold=30",
                               "sinkwatch-station.service"], capture_output=True, text=True)
    assert security.returncode == 0, security.stdout[-2000:] + security.stderr


def test_the_unit_refuses_to_verify_without_its_program(installed: Installed, tmp_path: Path) -> None:
    # what makes the check above worth something: the same unit in a root without the virtualenv fails
    analyze = _tool("systemd-analyze", "systemd")
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(STATION / "sinkwatch-station.service", root / "etc/systemd/system")
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    result = subprocess.run([analyze, "verify", f"--root={root}", "sinkwatch-station.service"], capture_output=True,
                            text=True)
    assert result.returncode != 0 and "/opt/sinkwatch/current/bin/sinkwatch" in result.stderr


@pytest.mark.parametrize("unit", [u for u in UNITS if u.parent != STATION], ids=lambda u: u.name)
def test_every_other_unit_in_deploy_verifies(unit: Path, installed: Installed, tmp_path: Path) -> None:
    """Units installed by hand (the central service): verified in a root holding the programs they start."""
    analyze = _tool("systemd-analyze", "systemd")
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(unit, root / "etc/systemd/system")
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    programs = re.findall(r"^Exec\w+=[-@:+!]*(/\S+)", unit.read_text(encoding="utf-8"), re.MULTILINE)
    assert programs, f"{unit.name} starts nothing"
    for program in programs:
        target = root / program.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if program.startswith("/opt/sinkwatch/"):
            # where deploy/README.md installs sinkwatch by hand; the command line itself is not run by verify
            target.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
            target.chmod(0o755)
        else:
            assert Path(program).exists(), f"{unit.name} starts {program}, which this host lacks"
            shutil.copy(program, target)
    result = subprocess.run([analyze, "verify", f"--root={root}", unit.name], capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == "" and result.stdout == "", result.stderr + result.stdout


def test_the_scripts_pass_shellcheck() -> None:
    shellcheck = _tool("shellcheck", "shellcheck")
    result = subprocess.run([shellcheck, str(INSTALL), str(DEPLOY / "install-test-deps.sh")], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout


def test_the_journald_drop_in_uses_only_keys_journald_knows() -> None:
    # the packaged journald.conf lists every key with its default, commented out
    packaged = Path("/etc/systemd/journald.conf")
    if not packaged.exists():
        pytest.fail("/etc/systemd/journald.conf missing: install the Debian package systemd")
    known = set(re.findall(r"^#?(\w+)=", packaged.read_text(encoding="utf-8"), re.MULTILINE))
    ours = re.findall(r"^(\w+)=", (STATION / "journald-sinkwatch.conf").read_text(encoding="utf-8"), re.MULTILINE)
    assert {"SystemMaxUse", "SystemKeepFree", "Storage"} <= set(ours)
    assert set(ours) <= known, set(ours) - known


_UDEV_KEY = re.compile(r'^(ACTION|SUBSYSTEMS?|KERNEL|ENV\{\w+\}|ATTRS?\{\w+\}|GROUP|MODE|SYMLINK|IMPORT\{\w+\}|GOTO|'
                       r'LABEL)(==|!=|\+=|=)"[^"]*"$')


@pytest.mark.parametrize("rules", ["70-sinkwatch-serial.rules", "71-sinkwatch-names.rules"])
def test_udev_rules_are_well_formed(rules: str, installed: Installed) -> None:
    path = installed.path(f"/etc/udev/rules.d/{rules}")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]
    assert lines
    labels = {m for line in lines for m in re.findall(r'LABEL="([^"]+)"', line)}
    for line in lines:
        for pair in (p.strip() for p in line.split(",")):
            assert _UDEV_KEY.match(pair), f"{rules}: {pair!r}"
        for target in re.findall(r'GOTO="([^"]+)"', line):
            assert target in labels, f"{rules}: GOTO {target} has no LABEL"


@pytest.mark.parametrize("serial", ["soil bus=A1", "soil=A1 B2", "soil=A1:1", "soil", "../x=A1"])
def test_a_bad_serial_name_is_refused_before_anything_is_installed(serial: str, tmp_path: Path) -> None:
    result = subprocess.run([str(INSTALL), "--root", str(tmp_path / "root"), "--serial", serial, "--source",
                             str(tmp_path / "nothing")], capture_output=True, text=True)
    assert result.returncode == 1 and f"--serial {serial}" in result.stderr
    assert not (tmp_path / "root/opt/sinkwatch/versions").exists() or \
        not any((tmp_path / "root/opt/sinkwatch/versions").iterdir())


def test_update_switches_versions_and_rollback_returns(installed: Installed, tmp_path: Path) -> None:
    """Runs last in this module: it changes the installed root."""
    installed.run("--update", str(REPO))
    second = f"{VERSION}-2"
    assert installed.link("current") == f"versions/{second}" and installed.link("previous") == f"versions/{VERSION}"
    assert installed.path(f"/opt/sinkwatch/versions/{second}/bin/sinkwatch").exists()

    installed.run("--rollback")
    assert installed.link("current") == f"versions/{VERSION}" and installed.link("previous") == f"versions/{second}"
    listing = installed.run("--list").stdout.splitlines()
    assert [line.split()[:2] for line in listing] == [[second, "[previous]"], [VERSION, "[current]"]]

    # a config the version refuses: the update stops before the switch, naming the problem
    config = installed.path("/etc/sinkwatch/station.yaml")
    bad_buffer = {"path": "/var/lib/sinkwatch/b.sqlite", "batch_size": 0}
    write_private(config, station_config(installed.root, buffer=bad_buffer))
    refused = installed.run("--update", second, check=False)
    assert refused.returncode == 1 and "buffer.batch_size" in refused.stderr and "still running" in refused.stderr
    assert installed.link("current") == f"versions/{VERSION}"

    # an installed version named by its folder: no pip, only the check and the switch
    write_private(config, station_config(installed.root))
    installed.run("--update", second)
    assert installed.link("current") == f"versions/{second}" and installed.link("previous") == f"versions/{VERSION}"

    # a broken package: nothing half-made stays, nothing switches
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "pyproject.toml").write_text('[project]\nname = "sinkwatch"\nversion = "9.9.9"\n', encoding="utf-8")
    failed = installed.run("--update", str(broken), check=False)
    assert failed.returncode == 1 and "nothing changed" in failed.stderr
    assert not installed.path("/opt/sinkwatch/versions/9.9.9").exists()
    assert installed.link("current") == f"versions/{second}"
    assert not installed.calls.exists(), installed.calls.read_text(encoding="utf-8")
