"""Shared fixtures of the flux tests: where the reference data live, and readers for EddyPro's outputs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
#: The DE-HoH raw file and EddyPro's results on it, vendored with source and licence (tests/data/ec-raw/README.md).
EC_RAW = REPO_ROOT / "tests" / "data" / "ec-raw"
RAW_FILE = EC_RAW / "DE-HoH_EC_201907301200_v01.csv.gz"
V_RUN = EC_RAW / "eddypro" / "V_icoslike_pf_fratini_30min"


@pytest.fixture(scope="session")
def ec_raw() -> Path:
    """The vendored reference folder; its absence is a broken checkout, so it fails rather than skips."""
    assert RAW_FILE.exists(), f"EC reference data missing from the repository: {RAW_FILE}"
    return EC_RAW


def read_eddypro_table(path: Path, header_rows: int = 3, name_row: int = 1) -> list[dict[str, str]]:
    """Rows of an EddyPro CSV output keyed by the variable-name header row."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    names = rows[name_row]
    return [dict(zip(names, row, strict=False)) for row in rows[header_rows:] if row]
