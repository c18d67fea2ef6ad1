"""Daytime partitioning (Lasslop et al. 2010, REddyProc rules): synthetic truth, real site-years, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.flux.budget.mds import mds_fill, mds_fill_met
from gateway.flux.budget.partition_dt import partition_daytime, rectangular_light_response, smooth_e0_gaussian_process
from gateway.flux.budget.partition_nt import PartitionError
from gateway.simulation.fluxyear import SyntheticYear, synthetic_year
from tests.flux.budget.refdata import SITES, gc_m2, hesseflux_run
from tests.flux.budget.test_partition_reference import _inputs

LAT, LON, UTC_OFFSET = 50.96, 13.57, 1.0


def make_year(seed: int = 1, *, gap_fraction_day: float = 0.25, gap_fraction_night: float = 0.6, e0: float = 180.0,
              alpha: float = 0.05, k: float = 0.04, noise: float = 1.0) -> SyntheticYear:
    """The partitioning tests' year (gateway/simulation/fluxyear.py): no low-turbulence bias (the partitioning gets
    NEE as measured), α constant all year (its recovery is tested), 30 % of the summer uptake capacity left in
    winter, VPD limitation k = 0.04 hPa-1, nights losing more records than days."""
    return synthetic_year(seed=seed, lat=LAT, lon=LON, utc_offset_h=UTC_OFFSET, ustar_threshold=0.0,
                          gap_fraction=gap_fraction_day, gap_fraction_night=gap_fraction_night, alpha_season=False,
                          leaf_off=0.3, e0=e0, alpha=alpha, k=k, noise=noise)


def _run(y: SyntheticYear, sd: np.ndarray | None = None, exact_optimum: bool = False) -> dict[str, np.ndarray]:
    return partition_daytime(y.time_mid, y.nee, y.ta, y.sw_in, y.vpd, LAT, LON, UTC_OFFSET,
                             nee_sd=y.nee_sd if sd is None else sd, exact_optimum=exact_optimum)


def test_light_response_shape() -> None:
    gpp = rectangular_light_response(np.array([0.0, 10.0, 2000.0, 2000.0]), np.array([5.0, 5.0, 5.0, 20.0]),
                                     0.05, 30.0, 0.05)
    assert gpp[0] == 0.0
    assert gpp[1] == pytest.approx(0.05 * 10 * 30 / (0.05 * 10 + 30))  # initial slope ≈ α
    assert gpp[2] == pytest.approx(30 * 100 / 130)  # towards β at high light
    assert gpp[3] < gpp[2]  # VPD above 10 hPa limits β


def test_parameters_recovered_from_nearly_noise_free_year() -> None:
    """With the light response fitted to its optimum (``exact_optimum``; the default stops where REddyProc's BFGS
    stops, at a relative cost change of 1e-3, which leaves α and RREF less sharp: next test)."""
    y = make_year(seed=11, noise=0.02, gap_fraction_day=0.1, gap_fraction_night=0.1)
    r = _run(y, np.full(y.nee.size, 0.5), exact_optimum=True)
    assert bool(r["DT_OK"]), str(r["DT_MESSAGE"])
    summer = (r["DT_WIN_INDEX"] // 48 > 120) & (r["DT_WIN_INDEX"] // 48 < 250)
    np.testing.assert_allclose(r["DT_alpha"][summer], y.alpha, atol=0.003)
    # k needs VPD above 10 hPa, which this synthetic climate has in midsummer only, and not in every window of it:
    # where the window's daytime VPD stays below 12 hPa (β limited by at most 8 %), REddyProc's rules may fix k at 0
    # (no VPD >= 10 hPa among the fitted records, or a fit giving k < 0); every other window recovers k.
    midsummer = (r["DT_WIN_INDEX"] // 48 > 160) & (r["DT_WIN_INDEX"] // 48 < 230)
    estimated = midsummer & (r["DT_k"] != 0)
    np.testing.assert_allclose(r["DT_k"][estimated], y.k, atol=0.01)
    day = np.arange(y.vpd.size) // 48
    for center in r["DT_WIN_INDEX"][midsummer & ~estimated] // 48:
        near = (np.abs(day - center) <= 2) & (y.sw_in > 4)
        assert y.vpd[near].max() < 12.0, f"k fixed at 0 at day {center} although VPD reached 12 hPa"
    assert estimated.sum() >= 0.9 * midsummer.sum()
    rel = r["DT_RREF"][summer] / y.rref_true[r["DT_WIN_INDEX"][summer]]
    np.testing.assert_allclose(rel, 1.0, atol=0.05)
    assert gc_m2(r["RECO_DT"]) == pytest.approx(gc_m2(y.reco_true), rel=0.02)
    assert gc_m2(r["GPP_DT"]) == pytest.approx(gc_m2(y.gpp_true), rel=0.02)


def test_gaussian_process_smooths_noisy_e0_towards_the_truth() -> None:
    """A seasonal E0 (truth) estimated with errors of known, unequal standard error in 120 of 180 windows: the
    smoothed E0 is closer to the truth than the estimates (RMSE), also where a window had none; windows with precise
    estimates keep them; a window's standard deviation is larger where it had no estimate."""
    rng = np.random.default_rng(5)
    x = 2.0 * np.arange(180) + 2.0  # window centres, days
    truth = 150.0 + 60.0 * np.sin(2 * np.pi * x / 365.0)
    se = rng.uniform(10.0, 60.0, x.size)
    est = truth + rng.normal(0.0, se)
    est[rng.choice(x.size, 60, replace=False)] = np.nan
    res = smooth_e0_gaussian_process(x, est, np.where(np.isfinite(est), se, np.nan))
    assert res is not None
    fit, sd = res
    has = np.isfinite(est)
    rmse_raw = np.sqrt(np.mean((est[has] - truth[has]) ** 2))
    assert np.sqrt(np.mean((fit[has] - truth[has]) ** 2)) < 0.5 * rmse_raw
    assert np.sqrt(np.mean((fit[~has] - truth[~has]) ** 2)) < 0.5 * rmse_raw
    assert np.median(sd[~has]) > np.median(sd[has])
    # nearly exact estimates (SE 0.01 K) of the same curve: the process passes through them
    exact = smooth_e0_gaussian_process(x, truth, np.full(x.size, 0.01))
    assert exact is not None
    np.testing.assert_allclose(exact[0], truth, atol=0.5)
    assert smooth_e0_gaussian_process(x[:2], truth[:2], se[:2]) is None  # fewer than 3 estimates


def test_smoothing_is_the_default_and_can_be_left_out() -> None:
    y = make_year(seed=4)
    smooth = _run(y)
    raw = partition_daytime(y.time_mid, y.nee, y.ta, y.sw_in, y.vpd, LAT, LON, UTC_OFFSET, nee_sd=y.nee_sd,
                            smooth_e0=False)
    fit = raw["DT_E0_NIGHT_FIT"]
    has = np.isfinite(fit)
    np.testing.assert_array_equal(raw["DT_E0_NIGHT"][has], fit[has])  # each window keeps its own estimate
    assert np.all(np.isfinite(smooth["DT_E0_NIGHT"]))
    assert np.std(np.diff(smooth["DT_E0_NIGHT"])) < 0.5 * np.std(np.diff(raw["DT_E0_NIGHT"]))


def test_k_keeps_its_prior_where_vpd_never_reaches_10_hpa() -> None:
    """REddyProc's optimLRCBounds: without VPD >= 10 hPa among a window's records k is not fitted and keeps its
    prior 0.05 hPa-1 (not 0), which the prediction applies where VPD_F exceeds 10 hPa; the window counts as one
    with a fixed parameter."""
    y = make_year(seed=3)
    r = _run(y)
    assert bool(r["DT_OK"]), str(r["DT_MESSAGE"])
    day = (y.sw_in > 4) & np.isfinite(y.nee)
    c = r["DT_WIN_CENTRE"]
    low = np.array([not np.any(y.vpd[max(0, i - 96):i + 96][day[max(0, i - 96):i + 96]] >= 10.0) for i in c])
    assert low.sum() >= 20  # winter
    np.testing.assert_array_equal(r["DT_k"][low], 0.05)
    assert np.all(r["DT_WIN_FIXED"][low])


def test_prediction_follows_reddyprocs_formula_at_negative_radiation_and_deep_cold() -> None:
    """REddyProc's partGLInterpolateFluxes: GPP = α·β·Rg/(α·Rg + β) also at SW_IN_F < 0 (slightly negative, about
    α·Rg), and respiration at air temperatures below −40 °C held at its −40 °C value."""
    y = make_year(seed=5)
    sw = y.sw_in.copy()
    night = sw <= 0
    sw[night] = -2.0
    ta = y.ta.copy()
    cold = np.flatnonzero(night)[:5]
    ta[cold] = -45.0
    r = partition_daytime(y.time_mid, y.nee, ta, sw, y.vpd, LAT, LON, UTC_OFFSET, nee_sd=y.nee_sd)
    ta[cold] = -40.0
    ref = partition_daytime(y.time_mid, y.nee, ta, sw, y.vpd, LAT, LON, UTC_OFFSET, nee_sd=y.nee_sd)
    assert np.all(r["GPP_DT"][night] < 0)
    alpha = np.interp(np.flatnonzero(night), r["DT_WIN_INDEX"], r["DT_alpha"])
    np.testing.assert_allclose(r["GPP_DT"][night], -2.0 * alpha, rtol=0.05)
    np.testing.assert_allclose(r["RECO_DT"][cold], ref["RECO_DT"][cold], rtol=1e-12)


def test_leading_windows_without_night_rref_take_the_first_e0_fits_respiration() -> None:
    """REddyProc (partGLFitNightTimeTRespSens) fills the leading 12-day windows that have fewer than 10 night records
    with `RRefFit` of the first window with an E0 fit: that fit's respiration at the median temperature of its night
    records (here a 24- or 48-day window reaching past the first 20 days without nights), checked by an independent
    least-squares fit."""
    from scipy.optimize import curve_fit

    from gateway.flux.budget.partition_nt import lloyd_taylor

    y = make_year(seed=6)
    nee = y.nee.copy()
    nee[: 20 * 48][y.sw_in[: 20 * 48] <= 4] = np.nan  # no night records in the first 20 days
    r = partition_daytime(y.time_mid, nee, y.ta, y.sw_in, y.vpd, LAT, LON, UTC_OFFSET, nee_sd=y.nee_sd)
    assert bool(r["DT_OK"]), str(r["DT_MESSAGE"])
    first = int(np.flatnonzero(np.isfinite(r["DT_RREF_NIGHT_FIT"]))[0])
    lead = r["DT_RREF_NIGHT_FIT"][first]
    assert not np.isfinite(r["DT_E0_NIGHT_FIT"][:first]).any()
    assert r["DT_RREF_NIGHT"][0] == lead
    centre = 96 * (first + 1)  # the reference window's central record
    for days in (12, 24, 48):  # the window length that gave the first E0: refit it independently
        lo, hi = max(0, centre - days * 24), min(nee.size - 1, centre - 1 + days * 24)
        ix = lo + np.flatnonzero(r["DT_NIGHT"][lo:hi + 1] & np.isfinite(nee[lo:hi + 1]))
        ix = ix[y.ta[ix] > -1.0] if np.count_nonzero(y.ta[ix] > -1.0) >= 12 else ix
        if ix.size >= 10:
            break
    t_med = float(np.median(y.ta[ix])) + 273.15
    (r_med, e0), _ = curve_fit(lambda t, a, b: lloyd_taylor(a, b, t, tref_k=t_med), y.ta[ix] + 273.15, nee[ix],
                               p0=(np.mean(nee[ix]), 100.0), xtol=1e-12, ftol=1e-12)
    assert e0 == pytest.approx(r["DT_E0_NIGHT_FIT"][first], abs=0.01)
    assert lead == pytest.approx(r_med, rel=1e-4)


def test_missing_vpd_takes_the_fit_that_neglects_vpd() -> None:
    """REddyProc's isRefitMissingVPDWithNeglectVPDEffect: where VPD_F is missing (and a neighbouring window's k is not
    0) RECO_DT and GPP_DT come from fits of every window without VPD (k = 0), the same E0 and night RREF; elsewhere the
    VPD gap changes nothing but the windows whose records it removes."""
    y = make_year(seed=7)
    full = _run_with_vpd(y, y.vpd)
    fitted_k = np.flatnonzero((full["DT_k"][1:-1] != 0) & (full["DT_k"][:-2] != 0) & (full["DT_k"][2:] != 0)) + 1
    centre = int(full["DT_WIN_INDEX"][fitted_k[len(fitted_k) // 2]])  # a window with k fitted, as its neighbours
    noon = centre + int(np.argmax(y.sw_in[centre:centre + 48]))  # the window's centre is near midnight
    hole = np.arange(noon - 5, noon + 5)
    vpd = y.vpd.copy()
    vpd[hole] = np.nan
    r = _run_with_vpd(y, vpd)
    neglect = _run_with_vpd(y, np.full_like(vpd, np.nan), {"E0": r["DT_E0_NIGHT"], "E0_SD": r["DT_E0_NIGHT_SD"],
                                                            "RREF": r["DT_RREF_NIGHT"]})
    assert np.all(neglect["DT_k"] == 0)
    np.testing.assert_array_equal(r["RECO_DT"][hole], neglect["RECO_DT"][hole])
    np.testing.assert_array_equal(r["GPP_DT"][hole], neglect["GPP_DT"][hole])
    assert not np.allclose(r["GPP_DT"][hole], full["GPP_DT"][hole], rtol=1e-6)
    outside = np.abs(np.arange(vpd.size) - centre) > 8 * 48  # beyond the windows the hole is in
    np.testing.assert_allclose(r["GPP_DT"][outside], full["GPP_DT"][outside], rtol=1e-12)


def _run_with_vpd(y: SyntheticYear, vpd: np.ndarray, fixed: dict[str, np.ndarray] | None = None
                  ) -> dict[str, np.ndarray]:
    return partition_daytime(y.time_mid, y.nee, y.ta, y.sw_in, vpd, LAT, LON, UTC_OFFSET, nee_sd=y.nee_sd,
                             fixed_temp_sens=fixed)


def test_reddyproc_optimizer_keeps_the_annual_sums() -> None:
    y = make_year(seed=11, noise=0.02, gap_fraction_day=0.1, gap_fraction_night=0.1)
    r = _run(y, np.full(y.nee.size, 0.5))
    assert bool(r["DT_OK"]), str(r["DT_MESSAGE"])
    assert gc_m2(r["RECO_DT"]) == pytest.approx(gc_m2(y.reco_true), rel=0.02)
    assert gc_m2(r["GPP_DT"]) == pytest.approx(gc_m2(y.gpp_true), rel=0.02)


@pytest.mark.parametrize("seed", [1, 2])
def test_synthetic_year_with_realistic_noise(seed: int) -> None:
    y = make_year(seed=seed)
    r = _run(y)
    assert bool(r["DT_OK"]), str(r["DT_MESSAGE"])
    # The daytime method's respiration rests on a 4-day extrapolation to zero light: annual RECO within 12 %,
    # GPP within 5 %, half-hourly GPP r >= 0.99.
    assert gc_m2(r["RECO_DT"]) == pytest.approx(gc_m2(y.reco_true), rel=0.12)
    assert gc_m2(r["GPP_DT"]) == pytest.approx(gc_m2(y.gpp_true), rel=0.05)
    assert np.corrcoef(r["GPP_DT"], y.gpp_true)[0, 1] >= 0.99
    assert np.corrcoef(r["RECO_DT"], y.reco_true)[0, 1] >= 0.9
    assert np.all(np.isfinite(r["RECO_DT_SD"])) and np.all(r["RECO_DT_SD"] > 0)
    assert np.all(np.isfinite(r["GPP_DT_SD"])) and np.all(r["GPP_DT_SD"] >= 0)


def test_uncertainty_grows_with_noise() -> None:
    quiet = _run(make_year(seed=12, noise=0.3))
    loud = _run(make_year(seed=12, noise=3.0))
    assert np.median(loud["GPP_DT_SD"][loud["GPP_DT"] > 1]) > 2 * np.median(quiet["GPP_DT_SD"][quiet["GPP_DT"] > 1])
    assert np.median(loud["DT_beta_SD"]) > 2 * np.median(quiet["DT_beta_SD"])


@pytest.mark.parametrize("site", list(SITES))
def test_daytime_on_real_site_years(site: str) -> None:
    run = hesseflux_run(site)
    x = _inputs(site)
    s = SITES[site]
    sw = mds_fill_met("SW_IN", run["SW_IN"], run["SW_IN"], run["VPD"], run["TA"]).filled
    vpd = mds_fill_met("VPD", run["VPD"], run["SW_IN"], run["VPD"], run["TA"]).filled
    fsd = mds_fill(x["nee"], run["SW_IN"], run["VPD"], run["TA"]).fsd
    r = partition_daytime(x["t_mid"], x["nee"], x["ta_f"], sw, vpd, s["lat"], s["lon"], s["utc_offset"], nee_sd=fsd)
    assert bool(r["DT_OK"]), str(r["DT_MESSAGE"])
    assert np.isfinite(r["RECO_DT"]).all() and np.isfinite(r["GPP_DT"]).all()
    g = np.isfinite(run["GPP_DT"])
    # Measured (docs/budget.md): r 0.84 / 0.90, annual within 2 % of hesseflux where it has values.
    assert np.corrcoef(r["GPP_DT"][g], run["GPP_DT"][g])[0, 1] >= 0.8
    assert gc_m2(r["GPP_DT"][g]) == pytest.approx(gc_m2(run["GPP_DT"][g]), rel=0.10)
    assert 0.8 < np.median(r["DT_alpha"]) / 0.05 < 3.0 or 0.01 < np.median(r["DT_alpha"]) < 0.15
    assert np.all((r["DT_beta"] >= 0) & (r["DT_beta"] < 250))


def test_vpd_in_kpa_is_refused() -> None:
    y = make_year(seed=13)
    with pytest.raises(PartitionError, match="kPa"):
        partition_daytime(y.time_mid, y.nee, y.ta, y.sw_in, y.vpd / 10.0, LAT, LON, UTC_OFFSET)


def test_year_without_nights_is_flagged() -> None:
    y = make_year(seed=14)
    r = partition_daytime(y.time_mid, y.nee, y.ta, np.full_like(y.sw_in, 500.0), y.vpd, LAT, LON, UTC_OFFSET)
    assert not bool(r["DT_OK"]) and "nighttime" in str(r["DT_MESSAGE"])
    assert np.all(np.isnan(r["RECO_DT"])) and np.all(r["DT_QC"] == 3)


def test_all_missing_temperature_is_flagged() -> None:
    y = make_year(seed=15)
    r = partition_daytime(y.time_mid, y.nee, np.full_like(y.ta, np.nan), y.sw_in, y.vpd, LAT, LON, UTC_OFFSET)
    assert not bool(r["DT_OK"]) and "temperature" in str(r["DT_MESSAGE"])
    assert np.all(np.isnan(r["GPP_DT"]))


def test_too_few_daytime_records_is_flagged() -> None:
    y = make_year(seed=16)
    nee = np.where(y.sw_in > 4, np.nan, y.nee)
    nee[np.flatnonzero(y.sw_in > 4)[:5]] = -3.0
    r = partition_daytime(y.time_mid, nee, y.ta, y.sw_in, y.vpd, LAT, LON, UTC_OFFSET)
    assert not bool(r["DT_OK"]) and "daytime" in str(r["DT_MESSAGE"])
    assert np.all(np.isnan(r["RECO_DT"]))


def test_short_record_is_flagged_or_refused() -> None:
    y = make_year(seed=17)
    r = partition_daytime(y.time_mid[:96], y.nee[:96], y.ta[:96], y.sw_in[:96], y.vpd[:96], LAT, LON, UTC_OFFSET)
    assert not bool(r["DT_OK"])
    assert np.all(np.isnan(r["GPP_DT"]))
