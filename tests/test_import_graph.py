"""The import graph keeps the layer contracts of pyproject.toml ([tool.importlinter], docs/architecture.md "Layers").

`make lint` runs `lint-imports` too; running it here as well makes a broken contract fail the suite wherever the
suite runs. The second test proves the check can fail: a copy of the packages with one import pointing up a layer
(and one between two drivers) must break the contracts, naming the offending imports.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("gateway", "drivers", "firmware_bridge")


def _lint_imports(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    executable = Path(sys.executable).parent / "lint-imports"
    assert executable.exists(), f"{executable} is missing: install the test extra (pip install -e '.[test]')"
    return subprocess.run([str(executable), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def _contract_count() -> int:
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    return len(re.findall(r"^\[\[tool\.importlinter\.contracts\]\]$", text, flags=re.M))


def test_the_import_graph_keeps_every_contract() -> None:
    result = _lint_imports(REPO)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    contracts = _contract_count()
    assert contracts >= 5
    assert f"Contracts: {contracts} kept, 0 broken." in output


def test_an_import_against_the_layers_breaks_the_contracts(tmp_path: Path) -> None:
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / "gateway" / "central" / "ingest.py").open("a", encoding="utf-8") as module:
        module.write("\nimport gateway.edge.daemon  # the central service reaching into the station\n")
    with (tmp_path / "drivers" / "soilprobe" / "driver.py").open("a", encoding="utf-8") as module:
        module.write("\nimport drivers.gmp252.driver  # one driver borrowing from another\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = _lint_imports(tmp_path, env)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "gateway.central.ingest -> gateway.edge.daemon" in output
    assert "drivers.soilprobe.driver -> drivers.gmp252.driver" in output
    assert f"Contracts: {_contract_count() - 2} kept, 2 broken." in output
