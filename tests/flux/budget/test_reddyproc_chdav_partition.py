"""Partitioning against the REddyProc product of CH-Dav (Davos, subalpine spruce forest), July 2022: the Swiss
FluxNet processing FP2022.5, whose partitioning is REddyProc's `sMRFluxPartition` (nighttime: `E_0_CUT_REF`,
`R_ref_CUT_REF`, `Reco_CUT_REF`, `GPP_CUT_REF_f`) and `partitionNEEGL` (daytime: the window parameters `FP_E0`,
`FP_E0_sd`, `FP_RRef_Night`, `FP_k`, `FP_beta`, `FP_alpha`, `FP_RRef`, `FP_qc` at each window's central record,
the day/night records `FP_VARday`/`FP_VARnight`, `PotRad_NEW`, `Reco_DT_CUT_REF`, `GPP_DT_CUT_REF`), read from the
vendored columns of the product file (tests/data/budget/README.md: source, commit, licence).

The product was computed on the whole year and the file holds one month, so only what lies inside the month is
compared like for like: a nighttime RREF window (7 days) inside July, a daytime light-response window (4 days)
inside July with the product's own E0 and night RREF of that window given (REddyProc's `fixedTempSens`), a night
RREF window (12 days) inside July with the product's E0. The year's E0 (one value) and the daytime E0 (smoothed
across the whole year) cannot be re-estimated from one month; they are given.

Bars: the product prints 15–16 significant digits. Nighttime RREF is a linear least-squares slope (rounding only:
1e-12). The daytime parameters are where R's BFGS stops (relative tolerance 1e-3, numerical gradient), which
amplifies the last-bit differences of the cost sums (summation order) by the finite-difference step (1e-3): 1e-6.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from gateway.flux.budget.partition_dt import partition_daytime
from gateway.flux.budget.partition_nt import partition_nighttime
from gateway.flux.budget.solar import potential_radiation
from tests.flux.budget.test_reddyproc_chdav import _product

LAT, LON, UTC_OFFSET = 46.8153, 9.8559, 1.0  # ICOS station CH-Dav, UTC+1 standard time
RECORDS = 31 * 48
PARAMS = {"k": "FP_k", "beta": "FP_beta", "alpha": "FP_alpha", "RREF": "FP_RRef"}


def _time_mid_utc() -> np.ndarray:
    """Seconds UTC of each half hour's middle (the product's `TIMESTAMP_MIDDLE` is station standard time)."""
    p = _product()
    return np.array([datetime.strptime(s, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
                     for s in p["TIMESTAMP_MIDDLE"]]) - UTC_OFFSET * 3600.0


def _nighttime() -> dict[str, np.ndarray]:
    p = _product()
    e0 = np.unique(p["E_0_CUT_REF"])
    assert e0.size == 1  # REddyProc's nighttime method has one E0 per record
    return partition_nighttime(_time_mid_utc(), p["NEE_CUT_REF_orig"], p["NEE_CUT_REF_f"], p["Tair_orig"],
                               p["Rg_orig"], LAT, LON, UTC_OFFSET, fixed_e0=float(e0[0]))


def test_potential_radiation_and_daytime_day_night_records_are_the_products() -> None:
    p = _product()
    pot = potential_radiation(_time_mid_utc(), LAT, LON, UTC_OFFSET)
    np.testing.assert_array_equal(pot > 0, p["PotRad_NEW"] > 0)
    # the product prints PotRad to 7 decimals; our solar geometry differs from REddyProc's in the 4th
    np.testing.assert_allclose(pot, p["PotRad_NEW"], atol=2e-3)
    cent = 96 * np.arange(1, 16)
    r = partition_daytime(_time_mid_utc(), p["NEE_CUT_REF_orig"], p["Tair_orig"], p["Rg_orig"], p["VPD_orig"],
                          LAT, LON, UTC_OFFSET, nee_sd=p["NEE_CUT_REF_fsd"],
                          fixed_temp_sens={"E0": p["FP_E0"][cent], "E0_SD": p["FP_E0_sd"][cent]})
    measured = np.isfinite(p["NEE_CUT_REF_orig"])
    np.testing.assert_array_equal(r["DT_NIGHT"] & measured, np.isfinite(p["FP_VARnight"]))
    np.testing.assert_array_equal(r["DT_DAY"] & measured, np.isfinite(p["FP_VARday"]))
    assert np.isfinite(p["FP_VARnight"]).sum() == 51 and np.isfinite(p["FP_VARday"]).sum() == 666


def test_nighttime_reference_respiration_windows_are_the_products() -> None:
    """With the product's E0, our 7-day RREF windows every 4 days (REddyProc's day counter) sit where the product's
    interpolated RREF has its kinks and hold its values; between the first and the last window inside July, RREF,
    RECO_NT and GPP_NT are the product's."""
    p = _product()
    r = _nighttime()
    pos = r["RREF_WIN_INDEX"]
    day_counter = (pos + 1) // 48
    centre = np.round(day_counter / 4) * 4
    inside = (centre - 3 >= 1) & (centre + 3 <= 30)  # days 0 and 31 hold records of June 30 / August 1
    assert inside.sum() == 6
    kinks = np.flatnonzero(np.abs(np.diff(p["R_ref_CUT_REF"], 2)) > 1e-9) + 1
    lo, hi = pos[inside][0], pos[inside][-1]
    np.testing.assert_array_equal(kinks[(kinks >= lo) & (kinks <= hi)], pos[inside])
    np.testing.assert_allclose(r["RREF_WIN"][inside], p["R_ref_CUT_REF"][pos[inside]], rtol=1e-12)
    sl = slice(lo, hi + 1)
    np.testing.assert_allclose(r["RREF_NT"][sl], p["R_ref_CUT_REF"][sl], rtol=1e-12)
    np.testing.assert_allclose(r["RECO_NT"][sl], p["Reco_CUT_REF"][sl], rtol=1e-12)
    np.testing.assert_allclose(r["GPP_NT"][sl], p["GPP_CUT_REF_f"][sl], rtol=1e-12, atol=1e-12)


def _daytime(**kw: bool) -> dict[str, np.ndarray]:
    p = _product()
    cent = 96 * np.arange(1, 16)  # our 15 reference windows' central records; the product's row 0 is June's
    given = {"E0": p["FP_E0"][cent], "E0_SD": p["FP_E0_sd"][cent], "RREF": p["FP_RRef_Night"][cent]}
    return partition_daytime(_time_mid_utc(), p["NEE_CUT_REF_orig"], p["Tair_orig"], p["Rg_orig"], p["VPD_orig"],
                             LAT, LON, UTC_OFFSET, nee_sd=p["NEE_CUT_REF_fsd"], fixed_temp_sens=given, **kw)


def test_daytime_night_reference_respiration_is_the_products() -> None:
    p = _product()
    cent = 96 * np.arange(1, 16)
    r = partition_daytime(_time_mid_utc(), p["NEE_CUT_REF_orig"], p["Tair_orig"], p["Rg_orig"], p["VPD_orig"],
                          LAT, LON, UTC_OFFSET, nee_sd=p["NEE_CUT_REF_fsd"],
                          fixed_temp_sens={"E0": p["FP_E0"][cent], "E0_SD": p["FP_E0_sd"][cent]})
    inside = (cent - 6 * 48 >= 0) & (cent + 6 * 48 <= RECORDS)  # the 12-day night window inside July
    assert inside.sum() == 10
    np.testing.assert_allclose(r["DT_RREF_NIGHT"][inside], p["FP_RRef_Night"][cent[inside]], rtol=1e-12)


def test_daytime_light_response_is_the_products() -> None:
    """Every 4-day window inside July: k, β, α, RREF, whether k or α had to be fixed (`FP_qc`), and RECO_DT/GPP_DT
    between the first and the last of these windows."""
    p = _product()
    r = _daytime()
    assert bool(r["DT_OK"]), str(r["DT_MESSAGE"])
    inside = r["DT_WIN_CENTRE"] + 96 <= RECORDS
    assert inside.sum() == 14
    c = r["DT_WIN_CENTRE"][inside]
    for ours, theirs in PARAMS.items():
        np.testing.assert_allclose(r[f"DT_{ours}"][inside], p[theirs][c], rtol=1e-6, atol=1e-12, err_msg=ours)
    np.testing.assert_array_equal(r["DT_WIN_FIXED"][inside], p["FP_qc"][c] == 1)
    assert set(p["FP_qc"][c]) == {0.0, 1.0}  # both: fitted windows and windows with k fixed at 0
    sl = slice(r["DT_WIN_INDEX"][inside][0], r["DT_WIN_INDEX"][inside][-1] + 1)
    np.testing.assert_allclose(r["RECO_DT"][sl], p["Reco_DT_CUT_REF"][sl], rtol=1e-6)
    np.testing.assert_allclose(r["GPP_DT"][sl], p["GPP_DT_CUT_REF"][sl], rtol=1e-6, atol=1e-9)


def test_the_exact_optimum_is_not_reddyprocs() -> None:
    """The light response fitted to its optimum (option `exact_optimum`) reaches a lower cost than REddyProc's
    BFGS stop and so differs from the product: the agreement above rests on following REddyProc's optimizer."""
    p = _product()
    r = _daytime(exact_optimum=True)
    inside = r["DT_WIN_CENTRE"] + 96 <= RECORDS
    c = r["DT_WIN_CENTRE"][inside]
    rel = np.abs(r["DT_RREF"][inside] / p["FP_RRef"][c] - 1.0)
    assert rel.max() > 0.05
