"""Against REddyProc itself: the results its vignettes print for DE-Tha 1998 (tests/data/budget/
reddyproc_vignettes_DE-Tha1998.json, with the calls that made them). REddyProc's example file holds the same records
as the vendored online-tool file (NEE, Rg, Tair, VPD, Ustar identical; qcNEE is 2 exactly where NEE is missing), so
the chain runs here on exactly REddyProc's input, with its preprocessing (`filterLongRuns`) and its settings.

Tolerances: MDS and the u* filter follow REddyProc's `sMDSGapFill` / `sMDSGapFillAfterUstar` rule for rule, so the
mean NEE must agree to the digits the vignette prints (7 significant). The nighttime partitioning follows
`sMRFluxPartition` window for window but fits by our own least squares (REddyProc: R's `nls`) from TA filled by our
MDS for met: measured equal to the 7 digits printed (1919.176 gC m-2), held to 1e-4 (0.2 gC m-2) so that a change of
optimiser or met filling that moves it shows. The u* threshold is not compared for
equality: REddyProc's moving-point test (its seasons start in December, a 95 % plateau, its own class rules) is not
ONEFlux's, which we follow (docs/budget.md, "u* threshold")."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.flux.budget.files import read_budget_csv
from gateway.flux.budget.pipeline import BudgetResult, BudgetSettings, run_budget
from tests.flux.budget.refdata import DATA, peer_json

PEER = peer_json("reddyproc_vignettes_DE-Tha1998.json")
LOCATION = {"lat": 51.0, "lon": 13.6, "utc_offset_h": 1.0}  # useCase.md: sSetLocationInfo(51.0, 13.6, 1)


def _filter_long_runs(x: np.ndarray, min_run: int = 8) -> np.ndarray:
    """REddyProc's `filterLongRunsInVector`: runs of ``min_run`` or more equal values, missing values skipped, set
    missing."""
    out = x.copy()
    idx = np.flatnonzero(np.isfinite(x))
    values = x[idx]
    breaks = np.flatnonzero(np.diff(values) != 0) + 1
    for run in np.split(np.arange(values.size), breaks):
        if run.size >= min_run:
            out[idx[run]] = np.nan
    return out


def _run(threshold: float) -> BudgetResult:
    data = read_budget_csv(DATA / "DE-Tha1998_gapfill_tool.txt.gz", year=1998, max_flux_flag=2)
    c = data.columns
    nee = _filter_long_runs(c["NEE"])
    assert 20 < np.isfinite(c["NEE"]).sum() - np.isfinite(nee).sum() < 60  # a few frozen-sensor runs (34)
    return run_budget(data.time_start_s, nee, c["SW_IN"], c["TA"], c["VPD"], c["USTAR"], **LOCATION,
                      settings=BudgetSettings(ustar=threshold))


def test_filter_long_runs_as_reddyproc() -> None:
    x = np.array([1.0, 2, 2, np.nan, 2, 2, 2, 2, 2, 2, 3, 3])
    np.testing.assert_array_equal(np.isnan(_filter_long_runs(x)), np.isnan(x) | (np.arange(12) >= 1) & (
        np.arange(12) <= 9))
    np.testing.assert_array_equal(_filter_long_runs(x, min_run=9), x)


@pytest.mark.parametrize(("threshold", "key"), [(0.3, "mean_nee_ustar_0.3"),
                                                (PEER["ustar_threshold"]["uStar"], "mean_nee_ustar_uStar")])
def test_gap_filled_nee_equals_reddyproc(threshold: float, key: str) -> None:
    result = _run(threshold)
    nee_f = result.hh["NEE_F"]
    assert np.isfinite(nee_f).all()
    assert float(np.mean(nee_f)) == pytest.approx(PEER[key]["value"], abs=5e-7)  # the vignette's 7 digits


def test_nighttime_gpp_equals_reddyproc() -> None:
    result = _run(PEER["ustar_threshold"]["uStar"])
    gpp = float(np.nanmean(result.hh["GPP_NT"])) * 1e-6 * 12.011 * 3600 * 24 * 365.25  # REddyProc's conversion
    assert gpp == pytest.approx(PEER["gpp_nt_ustar_uStar"]["value"], rel=1e-4)
