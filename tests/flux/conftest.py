"""Shared fixtures of the flux tests: where the reference data live, and readers for EddyPro's outputs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED = REPO_ROOT.parent / "shared"
EC_RAW = SHARED / "reference-data" / "ec-raw"
RAW_FILE = EC_RAW / "DE-HoH_EC_201907301200_v01.csv"


@pytest.fixture(scope="session")
def ec_raw() -> Path:
    """The reference folder (../shared/reference-data/ec-raw beside the clone), or a skip saying what is missing."""
    if not RAW_FILE.exists():
        pytest.skip(f"EC reference data not found at {EC_RAW} (CI keeps a copy of shared/ beside the clone)")
    return EC_RAW


def read_eddypro_table(path: Path, header_rows: int = 3, name_row: int = 1) -> list[dict[str, str]]:
    """Rows of an EddyPro CSV output keyed by the variable-name header row."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    names = rows[name_row]
    return [dict(zip(names, row, strict=False)) for row in rows[header_rows:] if row]
