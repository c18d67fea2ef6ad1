"""Read a PDF back with Debian's poppler-utils: page count (`pdfinfo`), text (`pdftotext -layout`), pages as
grey images (`pdftoppm -gray`, PGM parsed here with numpy)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
from numpy.typing import NDArray


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: run deploy/install-test-deps.sh (Debian package poppler-utils)"
    return path


def page_count(pdf: Path) -> int:
    out = subprocess.run([_tool("pdfinfo"), str(pdf)], capture_output=True, text=True, check=True, timeout=60).stdout
    match = re.search(r"^Pages:\s+(\d+)$", out, flags=re.M)
    assert match, out
    return int(match.group(1))


def text(pdf: Path, page: int | None = None) -> str:
    pages = ["-f", str(page), "-l", str(page)] if page else []
    return subprocess.run([_tool("pdftotext"), "-layout", *pages, str(pdf), "-"], capture_output=True, text=True,
                          check=True, timeout=60).stdout


def _read_pgm(path: Path) -> NDArray[np.uint8]:
    raw = path.read_bytes()
    match = re.match(rb"P5\s+(\d+)\s+(\d+)\s+(\d+)\s", raw)
    assert match, f"{path}: not a binary PGM"
    width, height = int(match.group(1)), int(match.group(2))
    return np.frombuffer(raw[match.end():match.end() + width * height], dtype=np.uint8).reshape(height, width)


def page_images(pdf: Path, folder: Path, dpi: int = 40) -> list[NDArray[np.uint8]]:
    """Every page as a grey image (0 black … 255 white), rendered by pdftoppm."""
    subprocess.run([_tool("pdftoppm"), "-gray", "-r", str(dpi), str(pdf), str(folder / "page")], check=True,
                   timeout=120)
    files = sorted(folder.glob("page-*.pgm"), key=lambda p: int(p.stem.split("-")[-1]))
    return [_read_pgm(f) for f in files]


def ink(image: NDArray[np.uint8], threshold: int = 235) -> float:
    """Share of the page that is not (nearly) white."""
    return float(np.mean(image < threshold))


def inked_cells(image: NDArray[np.uint8], grid: int = 4, min_ink: float = 0.02) -> int:
    """Of a grid × grid division of the page, the cells with ink: a plot fills the page, a sentence does not."""
    h, w = image.shape
    return sum(ink(image[i * h // grid:(i + 1) * h // grid, j * w // grid:(j + 1) * w // grid]) > min_ink
               for i in range(grid) for j in range(grid))
