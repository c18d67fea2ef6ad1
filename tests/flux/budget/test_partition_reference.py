"""Nighttime partitioning on the vendored real site-years (FR-Hes 2016, DE-Tha 1998) against hesseflux 5.0.

Partitioning runs on hesseflux's own gap-filled NEE_f and its filtered measured NEE, so the comparison isolates
partitioning. We follow REddyProc, not hesseflux: our annual RECO_NT is 13 % (FR-Hes) and 7 % (DE-Tha) above
hesseflux's. The second test shows why, by re-running our regression with hesseflux's three rules, which brings the
annual RECO to within 1.5 % of hesseflux's:

1. RREF by least *absolute* deviations (hesseflux's ``cost_abs``, a weighted median of NEE/f(T)) instead of least
   squares: night NEE is right-skewed, the median sits below the mean (FR-Hes: −14 %);
2. night = SW_IN ≤ 10 W m-2 without the potential-radiation condition, which admits twilight records with some
   photosynthesis (DE-Tha: −6 %);
3. non-overlapping 4-day RREF windows placed at the middle index of their records, and hesseflux's own E0 (inferred
   here from its RECO_NT and TA: ~225 K at FR-Hes, ~103 K at DE-Tha, ours 176 K and 130 K).
"""

from __future__ import annotations

import numpy as np
import pytest

from gateway.flux.budget.mds import mds_fill_met
from gateway.flux.budget.partition_nt import CELSIUS_TO_K, lloyd_taylor, partition_nighttime
from tests.flux.budget.refdata import SITES, gapfill_input, gc_m2, hesseflux_run, start_seconds

# Measured on this data (docs/budget.md); bounds leave room for small changes of the algorithm.
# site: (lowest, highest ratio of annual RECO_NT ours/hesseflux, min r of RECO_NT, min r of GPP_NT)
EXPECTED: dict[str, tuple[float, float, float, float]] = {
    "FR-Hes2016": (1.10, 1.16, 0.965, 0.995),
    "DE-Tha1998": (1.04, 1.10, 0.975, 0.997),
}


def _inputs(site: str) -> dict[str, np.ndarray]:
    run = hesseflux_run(site)
    off = SITES[site]["utc_offset"]
    t_mid = start_seconds(site) + 900.0 - off * 3600.0
    ta = mds_fill_met("TA", run["TA"], run["SW_IN"], run["VPD"], run["TA"])
    return {"t_mid": t_mid, "nee": gapfill_input(site), "nee_f": run["NEE_f"], "ta_f": ta.filled, "ta_qc": ta.qc}


@pytest.mark.parametrize("site", list(SITES))
def test_nighttime_against_hesseflux(site: str) -> None:
    run = hesseflux_run(site)
    x = _inputs(site)
    s = SITES[site]
    r = partition_nighttime(x["t_mid"], x["nee"], x["nee_f"], x["ta_f"], run["SW_IN"], s["lat"], s["lon"],
                            s["utc_offset"], ta_f_qc=x["ta_qc"])
    assert bool(r["NT_OK"]), str(r["NT_MESSAGE"])
    m = np.isfinite(run["RECO_NT"])
    assert np.isfinite(r["RECO_NT"]).all()
    lo, hi, reco_r, gpp_r = EXPECTED[site]
    ratio = gc_m2(r["RECO_NT"][m]) / gc_m2(run["RECO_NT"][m])
    assert lo <= ratio <= hi
    assert np.corrcoef(r["RECO_NT"][m], run["RECO_NT"][m])[0, 1] >= reco_r
    g = np.isfinite(run["GPP_NT_f"])
    assert np.corrcoef(r["GPP_NT"][g], run["GPP_NT_f"][g])[0, 1] >= gpp_r
    # GPP differs from hesseflux's by exactly the RECO difference (same NEE_f).
    d_gpp = gc_m2(r["GPP_NT"][g]) - gc_m2(run["GPP_NT_f"][g])
    d_reco = gc_m2(r["RECO_NT"][g]) - gc_m2(run["RECO_NT"][g])
    assert d_gpp == pytest.approx(d_reco, abs=1.0)


def _hesseflux_e0(run: dict[str, np.ndarray]) -> float:
    """E0 behind hesseflux's RECO_NT: d ln RECO / d x(T) between neighbouring half-hours (RREF varies slowly)."""
    x = 1.0 / (283.15 - 227.13) - 1.0 / (run["TA"] + CELSIUS_TO_K - 227.13)
    dx = np.diff(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        dl = np.diff(np.log(run["RECO_NT"]))
    ok = np.isfinite(dx) & np.isfinite(dl) & (np.abs(dx) > 1e-5)
    return float(np.median(dl[ok] / dx[ok]))


def _l1_slope(y: np.ndarray, f: np.ndarray) -> float:
    """Least-absolute-deviation slope through the origin: the f-weighted median of y/f."""
    ratio = y / f
    order = np.argsort(ratio)
    cum = np.cumsum(f[order])
    return float(ratio[order][np.searchsorted(cum, 0.5 * cum[-1])])


@pytest.mark.parametrize("site", list(SITES))
def test_hesseflux_rules_explain_the_difference(site: str) -> None:
    run = hesseflux_run(site)
    x = _inputs(site)
    e0 = _hesseflux_e0(run)
    t_k = run["TA"] + CELSIUS_TO_K
    night = (run["SW_IN"] <= 10.0) & np.isfinite(x["nee"]) & np.isfinite(t_k)
    ix = np.flatnonzero(night)
    day = x["t_mid"] / 86400.0 + 0.5  # Julian-day phase: windows run noon to noon
    f = lloyd_taylor(1.0, e0, t_k)
    pos, val = [], []
    for start in np.arange(np.floor(day[ix].min()), day[ix].max(), 4.0):
        sel = ix[(day[ix] >= start) & (day[ix] < start + 4.0)]
        if sel.size > 3:
            pos.append((sel[0] + sel[-1]) // 2)
            val.append(max(_l1_slope(x["nee"][sel], f[sel]), 0.0))
    rref = np.interp(np.arange(t_k.size), pos, val)
    reco = lloyd_taylor(rref, e0, x["ta_f"] + CELSIUS_TO_K)
    m = np.isfinite(run["RECO_NT"])
    assert gc_m2(reco[m]) == pytest.approx(gc_m2(run["RECO_NT"][m]), rel=0.015)
