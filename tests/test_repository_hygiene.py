"""The repository stands on its own: no tracked file leans on a folder beside the clone or on one machine's paths.

A clone with no shared workspace beside it must run the whole suite, and a reader must be able to follow every
citation: protocol sources are cited by the manufacturer's manual (title, document number, section), reference data
are vendored under `tests/data/` with their source and licence.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# Built from pieces so that this file does not match itself.
FORBIDDEN = [
    (re.compile(r"\.\./" + "shared"),
     "a folder beside the clone: vendor the file under tests/data/ with source and licence"),
    (re.compile(r"(?<![\w.-])" + "shared/(reference-data|sensors|tools|firmware)/"),
     "the shared workspace: vendor the file, or cite the manual it names"),
    (re.compile("PROTOCOLS" + r"\.md"), "a document outside the repository: cite the manual's title, number, section"),
    (re.compile(r"(?<![\w.-])/(work|tmp|home)/"), "a machine path: use a temporary directory or a relative path"),
]

# Files that may name the above because they explain where something came from (none today).
PROVENANCE_DOCS: frozenset[str] = frozenset()


def tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True, timeout=30)
        names = [n for n in out.stdout.decode().split("\0") if n]
    except (OSError, subprocess.CalledProcessError):  # an unpacked source tree, not a checkout
        skip = {".git", ".venv", "__pycache__", "build", "dist", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
        names = [str(p.relative_to(REPO_ROOT)) for p in REPO_ROOT.rglob("*")
                 if p.is_file() and not skip.intersection(p.relative_to(REPO_ROOT).parts)
                 and not p.relative_to(REPO_ROOT).parts[0].endswith(".egg-info")]
    return [REPO_ROOT / n for n in names if (REPO_ROOT / n).is_file()]


def offending_lines(path: Path) -> list[str]:
    data = path.read_bytes()
    if b"\0" in data[:8192]:  # binary (the gzip reference file): nothing a reader follows
        return []
    found = []
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        for pattern, fix in FORBIDDEN:
            if pattern.search(line):
                found.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()[:100]!r} -> {fix}")
    return found


def test_the_patterns_catch_what_they_are_meant_to() -> None:
    bad = ["../" + "shared/reference-data/x.csv", "/work" + "/main/x", "PROTOCOLS" + ".md §1.1", "/tmp" + "/b.sqlite",
           "see " + "shared/sensors/PROTOCOLS" + ".md"]
    good = ["tests/data/ec-raw/README.md", "/var/lib/sinkwatch/buffer.sqlite", "a shared line", "shared/ memory",
            "GMP252 User Guide M211897EN-D App. A"]
    assert all(any(p.search(s) for p, _ in FORBIDDEN) for s in bad)
    assert not any(p.search(s) for p, _ in FORBIDDEN for s in good)


def test_no_tracked_file_references_shared_or_machine_paths() -> None:
    files = tracked_files()
    assert len(files) > 100, "found too few files: is this the repository root?"
    me = Path(__file__).resolve()
    problems = [line for f in files if f.resolve() != me and str(f.relative_to(REPO_ROOT)) not in PROVENANCE_DOCS
                for line in offending_lines(f)]
    assert not problems, "\n".join(problems)


def test_vendored_reference_data_say_where_they_come_from() -> None:
    for folder in (REPO_ROOT / "tests" / "data").iterdir():
        if folder.is_dir():
            readme = (folder / "README.md").read_text(encoding="utf-8").lower()
            assert "source" in readme and "licence" in readme, f"{folder}: README.md must give source and licence"
