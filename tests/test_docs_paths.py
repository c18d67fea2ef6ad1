"""Every file or folder of the repository a document names in backticks exists: a doc that points at a module,
test or bench that was renamed or removed sends its reader nowhere (docs/architecture.md must stay true)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOP = ("gateway", "drivers", "tests", "bench", "docs", "deploy", "dashboards", "firmware_bridge")
NAMED = re.compile(r"`((?:" + "|".join(TOP) + r")/[^`\s]*)`")
PLACEHOLDER = re.compile(r"[<>*{}\[\]$…]|\.\.\.")


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted(ROOT.glob("drivers/*/README.md")),
            *sorted(ROOT.glob("firmware_bridge/**/README.md")), *sorted(ROOT.glob("deploy/**/README.md"))]


def named_paths(text: str) -> list[str]:
    """The repository paths named in backticks, without a test id (`::name`), a line (`:12`) or trailing
    punctuation; placeholders (`drivers/<device>/`, globs) are left out."""
    found = []
    for match in NAMED.finditer(text):
        path = match.group(1).split("::")[0].split(":")[0].rstrip(".,;)")
        if not PLACEHOLDER.search(path):
            found.append(path)
    return found


def exists(path: str, document: Path) -> bool:
    # a driver's README names its own files from its folder (`tests/test_driver.py`)
    return (ROOT / path).exists() or (document.parent / path).exists()


def test_the_parser_finds_paths_and_skips_placeholders() -> None:
    text = ("see `gateway/flux/ec/sonic.py`, `tests/flux/test_ec_cli.py::test_r1`, `bench/chaos.py:12`, "
            "`drivers/<device>/README.md`, `docs/*.md` and `gateway/central/store/`.")
    assert named_paths(text) == ["gateway/flux/ec/sonic.py", "tests/flux/test_ec_cli.py", "bench/chaos.py",
                                 "gateway/central/store/"]
    assert not exists("gateway/no_such_module.py", ROOT / "README.md")


def test_every_path_a_document_names_exists() -> None:
    missing = {str(doc.relative_to(ROOT)): sorted({p for p in named_paths(doc.read_text(encoding="utf-8"))
                                                   if not exists(p, doc)})
               for doc in documents()}
    assert {doc: paths for doc, paths in missing.items() if paths} == {}
