"""Packaging (pyproject.toml): each role installs what it needs and nothing of the others, a command whose extra is
missing says which extra to install, and `gateway/extras.py` matches the extras it describes."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gateway.extras import EXTRA_MODULES, MissingExtra, missing_modules, require_extra

REPO = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
CENTRAL_ONLY = ("fastapi", "starlette", "uvicorn", "influxdb_client", "httpx", "iotcore")
STATION_ONLY = ("pymodbus",)


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    assert match is not None, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def _extra_requirements(extra: str) -> set[str]:
    """The distributions an extra adds, with the project's own extras it names (`sinkwatch[a,b]`) expanded."""
    names: set[str] = set()
    for requirement in PROJECT["optional-dependencies"][extra]:
        if _name(requirement) == "sinkwatch":
            for inner in re.search(r"\[(.*)\]", requirement).group(1).split(","):  # type: ignore[union-attr]
                names |= _extra_requirements(inner.strip())
        else:
            names.add(_name(requirement))
    return names


def _closure(roots: set[str]) -> set[str]:
    """Every distribution these pull in (from the installed metadata; requirements behind an extra are left out;
    other markers are not evaluated, so the set can only be too large, except for a requirement under a marker
    that this platform does not install, e.g. colorama on Windows)."""
    seen: set[str] = set()
    todo = [(name, False) for name in roots]
    while todo:
        name, conditional = todo.pop()
        if name in seen:
            continue
        try:
            requirements = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            assert conditional, f"{name} is required but not installed"
            continue
        seen.add(name)
        for requirement in requirements:
            if "extra ==" not in requirement:
                todo.append((_name(requirement), ";" in requirement))
    return seen


def test_a_station_install_brings_none_of_the_central_packages() -> None:
    base = {_name(r) for r in PROJECT["dependencies"]}
    station = _closure(base | _extra_requirements("station"))
    assert not station & {"fastapi", "starlette", "uvicorn", "influxdb-client", "iotcore"}, sorted(station)
    assert "pymodbus" in station
    central = _closure(base | _extra_requirements("central"))
    assert "pymodbus" not in central
    assert {"fastapi", "uvicorn", "influxdb-client"} <= central


def test_extra_modules_match_the_extras_of_pyproject() -> None:
    providers = importlib.metadata.packages_distributions()
    for extra, modules in EXTRA_MODULES.items():
        declared = _extra_requirements(extra)
        provided = {_name(dist) for module in modules for dist in providers[module]}
        assert provided == declared, f"gateway/extras.py {extra!r}: {sorted(provided)} != pyproject {sorted(declared)}"
    assert set(EXTRA_MODULES) == set(PROJECT["optional-dependencies"]) - {"test"}


def test_linters_are_pinned_and_the_licence_is_an_spdx_expression() -> None:
    for requirement in PROJECT["optional-dependencies"]["test"]:
        if _name(requirement) in {"ruff", "mypy", "import-linter"} or _name(requirement).startswith("types-"):
            assert "==" in requirement, f"{requirement}: pin linters exactly"
    assert PROJECT["license"] == "Apache-2.0"


def test_require_extra_names_the_missing_modules_and_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    assert missing_modules("demo") == []  # the test extra installs everything
    require_extra("central", "sinkwatch central serve")
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # an import of it now fails, as if not installed
    assert missing_modules("central") == ["uvicorn"]
    with pytest.raises(MissingExtra, match=r"sinkwatch central serve needs .*\(uvicorn\).*pip install "
                                           r"'sinkwatch\[central\]'"):
        require_extra("central", "sinkwatch central serve")


def _sinkwatch_without(blocked: tuple[str, ...], args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the `sinkwatch` command in a fresh interpreter in which `blocked` cannot be imported: an install that
    lacks them. Anything importing them on the way fails the same way it would there."""
    code = ("import sys\n"
            f"for name in {blocked!r}:\n    sys.modules[name] = None\n"
            "from gateway.cli import app\n"
            f"app({args!r}, prog_name='sinkwatch')\n")
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60,
                          check=False)


STATION_YAML = """\
site: hainich
station: tower01
mqtt: {host: 127.0.0.1, port: 1883}
buffer: {path: buffer.sqlite}
sensors:
  - {name: soil_co2, driver: gmp252, port: /dev/ttyUSB0, address: 240, interval_s: 10}
"""


def test_station_commands_run_without_the_central_packages(tmp_path: Path) -> None:
    (tmp_path / "station.yaml").write_text(STATION_YAML, encoding="utf-8")
    result = _sinkwatch_without(CENTRAL_ONLY, ["station", "validate", "-c", "station.yaml"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "station hainich/tower01, 1 sensor," in result.stdout
    assert _sinkwatch_without(CENTRAL_ONLY, ["--help"], tmp_path).returncode == 0


def _modules_after(code: str, cwd: Path) -> set[str]:
    """The modules a fresh interpreter has imported after running `code` (which may end in SystemExit(0))."""
    wrapped = ("import sys\ntry:\n" + "".join(f"    {line}\n" for line in code.splitlines())
               + "except SystemExit as exc:\n    assert not exc.code, exc.code\nprint(' '.join(sorted(sys.modules)))\n")
    result = subprocess.run([sys.executable, "-c", wrapped], cwd=cwd, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return set(result.stdout.splitlines()[-1].split())


#: What a command that does not compute, serve or store must not import: each costs a start of `sinkwatch` tenths of
#: a second of CPU on a station's single-board computer (docs/performance.md, "Start-up of the sinkwatch command").
HEAVY = {"numpy", "scipy", "fastapi", "influxdb_client", "matplotlib", "pandas"}


@pytest.mark.parametrize("args", [["version"], ["--help"], ["station", "validate", "-c", "station.yaml"]],
                         ids=["version", "help", "station-validate"])
def test_a_command_imports_only_what_it_uses(args: list[str], tmp_path: Path) -> None:
    (tmp_path / "station.yaml").write_text(STATION_YAML, encoding="utf-8")
    imported = _modules_after(f"from gateway.cli import app\napp({args!r}, prog_name='sinkwatch')", tmp_path)
    assert "gateway.cli" in imported
    assert not imported & (HEAVY | {"gateway.central.config", "gateway.contract"}), imported & HEAVY
    if args[0] != "station":
        assert "gateway.edge.config" not in imported
    else:
        assert "gateway.edge.config" in imported


def test_the_central_service_imports_influxdb_client_and_the_science_only_when_it_uses_them(tmp_path: Path) -> None:
    """A central service on SQLite or VictoriaMetrics, and each of its ingest workers, start without
    influxdb-client; an ingest worker reading its config also without numpy."""
    service = _modules_after("import gateway.central.service", tmp_path)
    assert "fastapi" in service
    assert "influxdb_client" not in service
    worker = _modules_after("import gateway.central.workers, gateway.central.config, gateway.central.ingest\n"
                            "gateway.central.config.load_central_config(gateway.central.config.SAMPLE_CONFIG_PATH)",
                            tmp_path)
    assert not worker & {"numpy", "scipy", "influxdb_client", "fastapi"}, worker & {"numpy", "scipy",
                                                                                     "influxdb_client", "fastapi"}


def test_central_and_demo_without_their_extra_name_the_extra_to_install(tmp_path: Path) -> None:
    demo = _sinkwatch_without(CENTRAL_ONLY, ["demo", "--duration", "1"], tmp_path)
    assert demo.returncode == 2
    assert "pip install 'sinkwatch[demo]'" in demo.stderr
    assert "Traceback" not in demo.stderr
    serve = _sinkwatch_without(CENTRAL_ONLY, ["central", "serve", "-c", "central.yaml"], tmp_path)
    assert serve.returncode == 2
    assert "pip install 'sinkwatch[central]'" in serve.stderr
    recompute = _sinkwatch_without(CENTRAL_ONLY, ["flux", "recompute", "--station", "s", "--from", "x", "--to", "y",
                                                  "-c", "central.yaml"], tmp_path)
    assert recompute.returncode == 2
    assert "pip install 'sinkwatch[central]'" in recompute.stderr


def test_a_station_config_needing_a_missing_driver_package_names_the_station_extra(tmp_path: Path) -> None:
    (tmp_path / "station.yaml").write_text(STATION_YAML, encoding="utf-8")
    result = _sinkwatch_without(STATION_ONLY, ["station", "validate", "-c", "station.yaml"], tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "sensors[0].driver" in result.stderr
    assert "pip install 'sinkwatch[station]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_ci_lock_pins_every_declared_dependency_at_a_version_pyproject_allows() -> None:
    lock = {}
    for line in (REPO / "requirements" / "ci.lock").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith((" ", "#")):
            name, _, version = line.partition("==")
            lock[_name(name)] = version.strip()
    declared = list(PROJECT["dependencies"])
    for extra in PROJECT["optional-dependencies"].values():
        declared += [r for r in extra if _name(r) != "sinkwatch"]
    for requirement in declared:
        name = _name(requirement)
        assert name in lock, f"{name} is not in requirements/ci.lock: run `make lock` after changing pyproject.toml"
        pinned = re.search(r"==\s*([^,;\s]+)", requirement)
        if pinned:
            assert lock[name] == pinned.group(1), f"{name}: pyproject pins {pinned.group(1)}, the lock {lock[name]}"
        lower = re.search(r">=\s*([^,;\s]+)", requirement)
        if lower:
            assert _version(lock[name]) >= _version(lower.group(1)), f"{name} {lock[name]} < {lower.group(1)}"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:4])


@pytest.mark.parametrize(("preset", "expected"), [({}, "1 1 1"), ({"OMP_NUM_THREADS": "3"}, "- 3 -"),
                                                  ({"OPENBLAS_NUM_THREADS": "2"}, "2 - -")])
def test_the_command_gives_numpy_one_blas_thread_unless_the_operator_set_one(
        preset: dict[str, str], expected: str, tmp_path: Path) -> None:
    """`sinkwatch` (pyproject's script, gateway.cli:main) sets the BLAS thread variables before any command can load
    numpy (test_a_command_imports_only_what_it_uses), unless the operator set one of them."""
    code = ("import os, sys\n"
            "sys.argv = ['sinkwatch', 'version']\n"
            "from gateway.cli import main\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "print(' '.join(os.environ.get(n, '-') for n in "
            "('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS')))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                                            "MKL_NUM_THREADS")} | preset
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            check=False, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == expected
