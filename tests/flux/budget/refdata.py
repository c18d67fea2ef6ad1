"""Readers for the vendored budget reference data (tests/data/budget/, see its README)."""

from __future__ import annotations

import csv
import gzip
import json
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "data" / "budget"
SITES = {
    "FR-Hes2016": {"lat": 48.6742, "lon": 7.0656, "utc_offset": 1.0},
    "DE-Tha1998": {"lat": 50.9636, "lon": 13.5669, "utc_offset": 1.0},
}


@cache
def hesseflux_run(site: str) -> dict[str, np.ndarray]:
    """The columns of hesseflux's whole-chain output at ``site`` as float arrays (NaN for empty), plus
    ``TIMESTAMP_START`` as a string array."""
    with gzip.open(DATA / f"hf_{site}.csv.gz", "rt", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    out: dict[str, np.ndarray] = {}
    for key in rows[0]:
        if key == "TIMESTAMP_END":
            out[key] = np.array([r[key] for r in rows])
            continue
        out[key] = np.array([float(r[key]) if r[key] != "" else np.nan for r in rows])
    end = [datetime.strptime(s, "%Y%m%d%H%M") for s in out["TIMESTAMP_END"]]
    out["TIMESTAMP_START"] = np.array([(e - timedelta(minutes=30)).strftime("%Y%m%d%H%M") for e in end])
    return out


def start_seconds(site: str) -> np.ndarray:
    """Start of each half hour as seconds since the epoch of the site's local standard time (naive clock)."""
    run = hesseflux_run(site)
    return np.array([datetime.strptime(s, "%Y%m%d%H%M").replace(tzinfo=UTC).timestamp()
                     for s in run["TIMESTAMP_START"]])


def gapfill_input(site: str) -> np.ndarray:
    """hesseflux's gap-filling input: NEE_in where NEE_flag == 0, NaN elsewhere."""
    run = hesseflux_run(site)
    return np.where(run["NEE_flag"] == 0, run["NEE_in"], np.nan)


def peer_json(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((DATA / name).read_text(encoding="utf-8"))
    return result


def gc_m2(flux: np.ndarray) -> float:
    """Sum of half-hourly µmol CO2 m-2 s-1 in gC m-2."""
    return float(np.nansum(flux) * 1800 * 12.011e-6)
