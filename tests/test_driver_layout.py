"""Every driver is a folder with the same pieces (STYLE.md principle 1); this test fails on a missing one.

A driver folder is any `drivers/<name>/` with an `__init__.py`. It must hold driver.py, simulator.py, sample.yaml,
README.md and tests/, be registered under the `sinkwatch.drivers` entry point with its folder's name, and its
sample.yaml must validate against that driver's Config model.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest

from gateway.configfile import read_yaml_mapping
from gateway.driver_api import DRIVER_ENTRY_POINT_GROUP, SIMULATOR_ENTRY_POINT_GROUP, Driver, is_stream_driver

DRIVERS_DIR = Path(__file__).resolve().parents[1] / "drivers"
REQUIRED_FILES = ("driver.py", "simulator.py", "sample.yaml", "README.md")
DRIVER_FOLDERS = sorted(p for p in DRIVERS_DIR.iterdir() if p.is_dir() and (p / "__init__.py").is_file())


def test_there_is_at_least_one_driver() -> None:
    # Guards against the walk silently finding nothing (a moved folder would make every test below vacuous).
    assert DRIVER_FOLDERS, f"no driver folders with __init__.py under {DRIVERS_DIR}"


@pytest.mark.parametrize("folder", DRIVER_FOLDERS, ids=lambda p: p.name)
def test_driver_folder_has_every_piece(folder: Path) -> None:
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if not (folder / "tests").is_dir() or not any((folder / "tests").glob("test_*.py")):
        missing.append("tests/ (with at least one test_*.py)")
    assert not missing, f"drivers/{folder.name} lacks: {', '.join(missing)} (see STYLE.md principle 1)"


@pytest.mark.parametrize("folder", DRIVER_FOLDERS, ids=lambda p: p.name)
def test_driver_is_registered_under_its_folder_name(folder: Path) -> None:
    registered = {e.name: e for e in entry_points(group=DRIVER_ENTRY_POINT_GROUP)}
    assert folder.name in registered, (
        f'drivers/{folder.name} has no entry in [project.entry-points."{DRIVER_ENTRY_POINT_GROUP}"] '
        "of pyproject.toml (then reinstall: pip install -e .)"
    )
    entry = registered[folder.name]
    assert entry.value.startswith(f"drivers.{folder.name}."), (
        f"entry point {folder.name} = {entry.value} points outside drivers/{folder.name}"
    )
    driver_class = entry.load()
    assert isinstance(driver_class, type) and hasattr(driver_class, "Config")
    if is_stream_driver(driver_class):  # a streaming instrument: frame grammar only (driver_api.StreamDriver)
        terminator = getattr(driver_class, "terminator", b"")
        assert getattr(driver_class, "columns", ()) and isinstance(terminator, bytes) and terminator
        required: tuple[str, ...] = ("start_commands", "parse")
    else:
        required = ("open", "poll", "close")
    for method in required:
        assert callable(getattr(driver_class, method, None)), f"{entry.value} lacks {method}()"


@pytest.mark.parametrize("folder", DRIVER_FOLDERS, ids=lambda p: p.name)
def test_simulator_is_registered_under_its_folder_name(folder: Path) -> None:
    registered = {e.name: e for e in entry_points(group=SIMULATOR_ENTRY_POINT_GROUP)}
    assert folder.name in registered, (
        f'drivers/{folder.name} has no entry in [project.entry-points."{SIMULATOR_ENTRY_POINT_GROUP}"]'
    )
    assert callable(registered[folder.name].load())


@pytest.mark.parametrize("folder", DRIVER_FOLDERS, ids=lambda p: p.name)
def test_sample_config_validates_against_the_driver_config(folder: Path) -> None:
    sample = read_yaml_mapping(folder / "sample.yaml")
    (entry,) = [e for e in entry_points(group=DRIVER_ENTRY_POINT_GROUP) if e.name == folder.name]
    driver_class: type[Driver] = entry.load()
    config = driver_class.Config.model_validate(sample)
    assert config.driver == folder.name, f"sample.yaml's driver key should be {folder.name!r}"
    # The sample is documentation: every key the model knows should appear in it.
    undocumented = set(driver_class.Config.model_fields) - set(sample)
    assert not undocumented, f"drivers/{folder.name}/sample.yaml does not show: {', '.join(sorted(undocumented))}"
