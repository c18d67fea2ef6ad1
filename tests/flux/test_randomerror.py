"""Finkelstein & Sims (2001) random error: analytic white-noise limits, a Monte-Carlo truth, the DE-HoH V run; Mann &
Lenschow (1994): its exact value for an AR(1) pair and a Monte-Carlo truth."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from gateway.flux.ec.despike import EDDYPRO_SR_LIMITS, despike_vm97
from gateway.flux.ec.planarfit import apply_planar_fit, parse_eddypro_planar_fit, select_sector
from gateway.flux.ec.randomerror import (
    cross_correlation_timescale,
    finkelstein_sims,
    flux_random_error,
    integral_time_scale,
    lagged_covariance,
    mann_lenschow,
    mann_lenschow_relative_error,
)

from .conftest import EC_RAW, RAW_FILE, V_RUN


def test_lagged_covariance_matches_direct_sum() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(500), rng.standard_normal(500)
    g = lagged_covariance(x, y, 5)
    xp, yp = x - x.mean(), y - y.mean()
    for p in range(-5, 6):
        direct = np.sum(xp[: 500 - p] * yp[p:]) / 500 if p >= 0 else np.sum(xp[-p:] * yp[: 500 + p]) / 500
        assert g[p + 5] == pytest.approx(direct, rel=1e-9, abs=1e-12)


def test_white_noise_independent_gives_sigma_product_over_sqrt_n() -> None:
    rng = np.random.default_rng(1)
    n = 36000
    w, c = 0.5 * rng.standard_normal(n), 2.0 * rng.standard_normal(n)
    e = finkelstein_sims(w, c, 20.0, max_lag_s=20.0)
    # FS eq. 8 for white noise: only p = 0 survives -> sigma = sigma_w sigma_c / sqrt(N) = 1/sqrt(36000);
    # the 800 non-zero lags add sampling noise of relative size ~sqrt(800)/N << 5 %
    assert e.sigma == pytest.approx(0.5 * 2.0 / math.sqrt(n), rel=0.05)
    assert e.n == n and e.max_lag == 400


def test_white_noise_correlated_adds_covariance_term() -> None:
    rng = np.random.default_rng(2)
    n = 36000
    w = rng.standard_normal(n)
    c = 0.6 * w + 0.8 * rng.standard_normal(n)  # var c = 1, cov = 0.6
    e = finkelstein_sims(w, c, 20.0, max_lag_s=5.0)
    expected = math.sqrt((1.0 * 1.0 + 0.6**2) / n)
    assert e.sigma == pytest.approx(expected, rel=0.05)
    assert e.covariance == pytest.approx(0.6, abs=0.02)
    assert flux_random_error(e, -10.0) == pytest.approx(10.0 * e.relative)


def test_monte_carlo_truth_for_autocorrelated_series() -> None:
    """AR(1) series (time scale ~ 10 samples): FS estimate vs the spread of the covariance over 300 realisations."""
    rng = np.random.default_rng(3)
    n, phi, reps = 4000, 0.9, 300
    covs, sigmas = [], []
    for _ in range(reps):
        e1, e2 = rng.standard_normal(n), rng.standard_normal(n)
        w = np.empty(n)
        c = np.empty(n)
        w[0], c[0] = e1[0], e2[0]
        for i in range(1, n):
            w[i] = phi * w[i - 1] + e1[i]
            c[i] = phi * c[i - 1] + 0.5 * e1[i] + e2[i]
        r = finkelstein_sims(w, c, 1.0, max_lag_s=100.0)  # m = 100 lags >> integral scale of ~19 samples
        covs.append(r.covariance)
        sigmas.append(r.sigma)
    # 300 realisations: the empirical std is known to ~4 % (1/sqrt(2*300)); FS is biased low by the block mean
    # removal; 15 % tolerance
    assert float(np.mean(sigmas)) == pytest.approx(float(np.std(covs)), rel=0.15)


def test_integral_time_scale_of_ar1() -> None:
    rng = np.random.default_rng(4)
    n, phi = 200000, 0.95
    e = rng.standard_normal(n)
    x = np.empty(n)
    x[0] = e[0]
    for i in range(1, n):
        x[i] = phi * x[i - 1] + e[i]
    # AR(1): rho(p) = phi^p, integral to first zero ~ sum phi^p = 1/(1 - phi) = 20 samples = 2 s at 10 Hz
    # (the sample autocorrelation crosses zero only far out, adding noise; 20 % tolerance)
    assert integral_time_scale(x, 10.0, max_lag_s=60.0) == pytest.approx(2.0, rel=0.2)


def _v_full_output() -> dict[str, float]:
    path = V_RUN / "eddypro_full_output.csv"
    with path.open(encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    out = {}
    for name, value in zip(rows[1], rows[3], strict=True):
        try:
            out[name] = float(value)
        except ValueError:
            continue
    return out


def test_v_run_relative_random_errors() -> None:
    """EddyPro V run: Finkelstein & Sims (2001) with the lag range m = the pair's integral time scale (whole
    cross-correlation up to ru_tlag_max = 20 s, ru_its_meth = 2), stated as relative error x |uncorrected flux|:
    within 1 % of EddyPro's rand_err_* (with m = 20 s instead the errors were 7-12 % above)."""
    ref = _v_full_output()
    raw = np.loadtxt(RAW_FILE, delimiter=",", skiprows=1)
    names = ["u", "v", "w", "ts", "co2", "h2o"]
    s = [despike_vm97(raw[:, k], 20.0, sr_lim=EDDYPRO_SR_LIMITS[nm]).values for k, nm in enumerate(names)]
    pf = parse_eddypro_planar_fit((EC_RAW / "planar_fit.txt").read_text())
    sec = select_sector(pf.sectors, float(s[0].mean()), float(s[1].mean()))
    rot = apply_planar_fit(s[0], s[1], s[2], sec.coefficients, subtract_b0=False)
    # lags from the V run: CO2 3 samples (0.15 s), H2O 4 samples (0.20 s)
    co2 = np.concatenate([s[4][3:], np.full(3, np.nan)])
    h2o = np.concatenate([s[5][4:], np.full(4, np.nan)])
    cases = [("H", s[3]), ("co2_flux", co2), ("LE", h2o), ("Tau", rot.u)]
    for flux, series in cases:
        its = cross_correlation_timescale(rot.w, series, 20.0, max_lag_s=20.0)
        e = finkelstein_sims(rot.w, series, 20.0, max_lag_s=its)
        ours = flux_random_error(e, ref[f"un_{flux}"])
        assert ours == pytest.approx(ref[f"rand_err_{flux}"], rel=0.01), flux
        too_long = flux_random_error(finkelstein_sims(rot.w, series, 20.0, max_lag_s=20.0), ref[f"un_{flux}"])
        assert too_long > ours  # the 20-s range overstates it


# --- Mann & Lenschow (1994), EddyPro ru_meth = 2 -------------------------------------------------------------------

def _ar1_pair(rng: np.random.Generator, n: int, phi: float, rho: float) -> tuple[np.ndarray, np.ndarray]:
    """Two AR(1) series with the same coefficient whose innovations correlate with ρ: corr(w, c) = ρ, every auto- and
    cross-correlation φ^|k|."""
    from scipy.signal import lfilter

    e1, e2 = rng.standard_normal(n), rng.standard_normal(n)
    w = lfilter([1.0], [1.0, -phi], e1)
    c = lfilter([1.0], [1.0, -phi], rho * e1 + math.sqrt(1.0 - rho * rho) * e2)
    return np.asarray(w, dtype=float), np.asarray(c, dtype=float)


def test_mann_lenschow_with_the_flux_time_scale_is_the_isserlis_error_of_an_ar1_pair() -> None:
    """For the AR(1) pair the exact error variance of the sample covariance (Isserlis, lag sum to ±∞) is
    σ_w²σ_c²(1 + ρ²)(1 + φ²)/((1 − φ²) N); the product w'c' has autocorrelation φ^2|k|, whose integral scale is
    τ_F = Δt·(1 + φ²)/(2(1 − φ²)). Mann & Lenschow's 2τ_F/T·(1 + r²)/r² gives exactly that relative error."""
    phi, rho, n, fs = 0.9, 0.4, 3000, 10.0
    var_over_cov2 = (1 + rho**2) / rho**2 * (1 + phi**2) / ((1 - phi**2) * n)
    tau_f = (1 + phi**2) / (2 * (1 - phi**2)) / fs
    assert mann_lenschow_relative_error(rho, tau_f, n / fs) == pytest.approx(math.sqrt(var_over_cov2), rel=1e-12)
    assert mann_lenschow_relative_error(-rho, tau_f, n / fs) == mann_lenschow_relative_error(rho, tau_f, n / fs)
    assert mann_lenschow_relative_error(0.0, tau_f, 180.0) == math.inf
    assert math.isnan(mann_lenschow_relative_error(0.5, 0.0, 180.0))


def test_mann_lenschow_against_the_scatter_of_400_independent_periods() -> None:
    """Monte-Carlo truth: 400 independent AR(1) periods (φ = 0.9 at 10 Hz, ρ = 0.4, 300 s). With the flux's own
    integral scale τ_F the estimate matches the scatter of the covariances (std known to ~4 %); with the
    cross-correlation ITS estimated from each period, as EddyPro plugs it in, it is high by
    √(2(1 + φ)/(1 + φ²)) = 1.45 (τ = Δt/(1 − φ) against τ_F), which docs/flux-ec.md states."""
    rng = np.random.default_rng(5)
    phi, rho, n, fs, reps = 0.9, 0.4, 3000, 10.0, 400
    tau_f = (1 + phi**2) / (2 * (1 - phi**2)) / fs
    covs, with_tau_f, with_its = [], [], []
    for _ in range(reps):
        w, c = _ar1_pair(rng, n, phi, rho)
        e = mann_lenschow(w, c, fs, timescale_s=tau_f, period_s=n / fs)
        covs.append(e.covariance)
        with_tau_f.append(e.sigma)
        its = cross_correlation_timescale(w, c, fs, max_lag_s=10.0)
        if its > 0:  # the whole-period integral of a noisy ρ can come out negative; the engine then takes ru_tlag_max
            with_its.append(mann_lenschow(w, c, fs, timescale_s=its, period_s=n / fs).sigma)
    scatter = float(np.std(covs))
    assert float(np.mean(with_tau_f)) == pytest.approx(scatter, rel=0.1)
    assert len(with_its) > 0.8 * reps
    assert float(np.mean(with_its)) / scatter == pytest.approx(math.sqrt(2 * (1 + phi) / (1 + phi**2)), rel=0.1)


def test_mann_lenschow_of_white_noise_and_bad_input() -> None:
    rng = np.random.default_rng(6)
    w = rng.standard_normal(1000)
    c = 0.6 * w + 0.8 * rng.standard_normal(1000)
    e = mann_lenschow(w, c, 10.0, timescale_s=0.05, period_s=100.0)
    r = e.covariance / (float(np.std(w)) * float(np.std(c)))
    assert e.relative == pytest.approx(math.sqrt(2 * 0.05 / 100.0 * (1 + r * r) / (r * r)), rel=1e-12)
    assert e.sigma == pytest.approx(e.relative * abs(e.covariance), rel=1e-12)
    assert (e.n, e.max_lag) == (1000, 0)
    w[:10] = np.nan
    assert mann_lenschow(w, c, 10.0, timescale_s=0.05, period_s=100.0).n == 990
    with pytest.raises(ValueError, match="same length"):
        mann_lenschow(w, c[:-1], 10.0, timescale_s=1.0, period_s=100.0)
