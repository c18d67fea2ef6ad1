"""Automated chambers: the gasfluxes package's worked examples, synthetic HMR closures with a known flux, closure
detection, κ-max selection, QC and bad input.

Reference numbers: the expected values of the gasfluxes R package's own tests (R. Fuß, CRAN package gasfluxes,
tests/testthat/test_fitting.R, GPL-2+; we take the published numbers only, no code): ``lin.fit`` and ``HMR.fit``
on their example closures with A = 1, V = 0.3 (h = 0.3), time in hours.
"""

from __future__ import annotations

import numpy as np
import pytest

from gateway.flux.soil.chamber import (
    QC_BELOW_DETECTION,
    QC_HMR_FAILED,
    QC_KAPPA_LIMIT,
    QC_LEAK,
    QC_LOW_R2,
    QC_NONLINEAR,
    QC_TOO_SHORT,
    R_GAS,
    Chamber,
    ChamberAccuracy,
    Closures,
    chamber_fluxes,
    detect_closures,
    fit_hmr,
    fit_linear,
    kappa_max,
    minimum_detectable_slope,
)


def test_linear_fit_matches_gasfluxes_lin_fit_example() -> None:
    t = np.array([[0, 1 / 3, 2 / 3, 1]])
    c = np.array([[320.0, 341, 352, 359]])
    fit = fit_linear(t, c)
    h = 0.3
    assert h * fit.slope[0] == pytest.approx(11.52, rel=1e-9)
    assert h * fit.se[0] == pytest.approx(2.02849698052524, rel=1e-9)
    assert fit.intercept[0] == pytest.approx(323.8, rel=1e-9)
    assert fit.rse[0] == pytest.approx(5.03984126734168, rel=1e-9)


def test_hmr_fit_matches_gasfluxes_hmr_fit_example() -> None:
    t = np.array([[0, 1 / 3, 2 / 3, 1, 1.2, 1.3]])
    c = np.array([[320.0, 341, 352, 359, 360, 360]])
    fit = fit_hmr(t, c)
    h = 0.3
    assert not fit.failed[0]
    assert h * fit.slope0[0] == pytest.approx(26.1229339419655, rel=1e-6)
    assert h * fit.se[0] == pytest.approx(1.60625294868361, rel=1e-4)
    assert fit.kappa[0] == pytest.approx(1.97015450227329, rel=1e-6)
    assert fit.phi[0] == pytest.approx(364.122024254071, rel=1e-7)
    assert fit.rse[0] == pytest.approx(0.750764759562218, rel=1e-5)


def test_hmr_of_a_straight_line_fails_to_the_kappa_limit() -> None:
    # gasfluxes: an exactly linear closure has no finite HMR optimum ("Missing value or an infinity ...")
    t = np.array([[0, 1 / 3, 2 / 3, 1]])
    fit = fit_hmr(t, 320 + np.arange(4.0)[None, :] * 10)
    assert fit.failed[0]


def synthetic_series(
    f0: np.ndarray, kappa: np.ndarray, *, h: float, noise_ppm: float, seed: int, step_s: float = 5.0,
    closure_s: float = 300.0, period_s: float = 3600.0, t_c: float = 15.0, p_pa: float = 98000.0,
    c0: float = 420.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A chamber series with one closure per hour: HMR curves with initial flux f0 (µmol m-2 s-1) and κ (s-1).

    In mole fraction: x(t) = φ - (f0/(ρ h))·e^(-κt)/κ with φ = x0 + f0/(ρ h κ), ρ = p/(R T)."""
    rng = np.random.default_rng(seed)
    rho = p_pa / (R_GAS * (t_c + 273.15))
    times, conc, state = [], [], []
    for i, (f, k) in enumerate(zip(f0, kappa, strict=True)):
        t0 = i * period_s
        t = np.arange(0.0, period_s, step_s)
        closed = t < closure_s
        s0 = f / (rho * h)  # initial slope, ppm s-1
        x = np.where(closed, c0 + s0 * -np.expm1(-k * t) / k, c0)
        times.append(t0 + t)
        conc.append(x + noise_ppm * rng.standard_normal(t.size))
        state.append(closed.astype(float))
    return np.concatenate(times), np.concatenate(conc), np.concatenate(state)


def test_synthetic_hmr_closures_are_recovered() -> None:
    chamber = Chamber(volume_m3=0.0072, area_m2=0.0314)
    n = 48
    rng = np.random.default_rng(1)
    f0 = rng.uniform(1.0, 8.0, n)
    kappa = np.where(np.arange(n) % 2 == 0, 0.01, 1e-6)  # every other closure strongly curved, the rest linear
    t, x, state = synthetic_series(f0, kappa, h=chamber.height_m, noise_ppm=0.5, seed=2)
    closures = detect_closures(t, state)
    assert closures.start_s.size == n
    assert closures.duration_s == pytest.approx(np.full(n, 295.0))
    res = chamber_fluxes(t, x, closures, chamber, 98000.0, 15.0, dead_band_s=0.0)
    curved = kappa > 1e-3
    # curved closures: HMR selected, initial flux within 5 %; the linear slope underestimates them by ~40 %
    assert np.all(res.method[curved] == 2)
    assert np.all(res.qc[curved] & QC_NONLINEAR)
    assert np.median(np.abs(res.flux[curved] / f0[curved] - 1)) < 0.02
    assert np.all(np.abs(res.flux[curved] - f0[curved]) < 3 * res.flux_unc[curved])
    assert np.median(res.flux_lin[curved] / f0[curved]) < 0.7
    # straight closures of a strong flux: κ-max admits HMR too (|f_lin| >> f_detect), and whichever method is
    # selected lands within 2 % and within 3 stated σ; the linear flux alone within 1 %
    assert res.flux_lin[~curved] == pytest.approx(f0[~curved], rel=0.01)
    assert res.flux[~curved] == pytest.approx(f0[~curved], rel=0.02)
    assert np.all(np.abs(res.flux[~curved] - f0[~curved]) < 3 * res.flux_unc[~curved])
    # the stated uncertainty covers the error: normalised errors have a standard deviation near 1 or below
    z = (res.flux - f0) / res.flux_unc
    assert np.std(z) < 1.5
    series = res.series(chamber=1)
    assert set(series) >= {"FC_SOIL_CH_1", "FC_SOIL_CH_1_UNC", "FC_SOIL_CH_1_QC", "FC_SOIL_CH_1_HMR"}


def test_dead_band_and_a_too_short_closure() -> None:
    chamber = Chamber(volume_m3=0.0072, area_m2=0.0314)
    t, x, state = synthetic_series(np.array([3.0, 3.0]), np.array([1e-6, 1e-6]), h=chamber.height_m,
                                   noise_ppm=0.2, seed=3)
    # spoil the first 20 s of closure 1 (lid pressure pulse) and cut closure 2 to 25 s
    spoil = (t >= 0) & (t < 20)
    x[spoil] += 15.0
    state[(t >= 3600 + 25) & (t < 3600 + 300)] = 0
    closures = detect_closures(t, state)
    res = chamber_fluxes(t, x, closures, chamber, 98000.0, 15.0, dead_band_s=30.0)
    assert res.flux[0] == pytest.approx(3.0, rel=0.02)
    assert np.isnan(res.flux[1]) and res.qc[1] & QC_TOO_SHORT and res.method[1] == 0
    no_dead_band = chamber_fluxes(t, x, closures, chamber, 98000.0, 15.0, dead_band_s=0.0)
    assert abs(no_dead_band.flux_lin[0] - 3.0) > 0.1  # the pulse biases the fit without a dead band


def test_kappa_max_rejects_hmr_for_a_weak_noisy_flux() -> None:
    # κ_max = |f_lin|/f_detect/t_c: a flux barely above detection cannot support a curved fit
    assert kappa_max(2.0, 0.5, 100.0) == pytest.approx(0.04)
    chamber = Chamber(volume_m3=0.0072, area_m2=0.0314)
    t, x, state = synthetic_series(np.full(20, 0.05), np.full(20, 1e-6), h=chamber.height_m, noise_ppm=2.0,
                                   seed=4)
    res = chamber_fluxes(t, x, detect_closures(t, state), chamber, 98000.0, 15.0, dead_band_s=0.0)
    linear = res.method == 1
    assert np.mean(linear) >= 0.8
    assert np.all((res.qc[linear] & (QC_KAPPA_LIMIT | QC_HMR_FAILED)) > 0)
    assert np.mean((res.qc & QC_BELOW_DETECTION) > 0) >= 0.4
    assert np.mean((res.qc & QC_LOW_R2) > 0) > 0.5


def test_leak_is_flagged() -> None:
    chamber = Chamber(volume_m3=0.0072, area_m2=0.0314)
    t, x, state = synthetic_series(np.array([4.0, 4.0]), np.array([1e-6, 1e-6]), h=chamber.height_m,
                                   noise_ppm=0.3, seed=5)
    # closure 2: from 200 s on the lid leaks and the chamber air relaxes towards ambient
    rel = t - 3600
    leaking = (rel >= 200) & (rel < 300)
    x[leaking] = 420 + (x[leaking] - 420) * np.exp(-(rel[leaking] - 200) / 60.0)
    res = chamber_fluxes(t, x, detect_closures(t, state), chamber, 98000.0, 15.0, dead_band_s=0.0)
    assert not res.qc[0] & QC_LEAK
    assert res.qc[1] & QC_LEAK


def test_minimum_detectable_slope_is_deterministic_and_near_the_linear_limit() -> None:
    t = np.arange(0.0, 300.0, 5.0)
    a = minimum_detectable_slope(t, 1.0, n_sim=2000, seed=7)
    assert a == minimum_detectable_slope(t, 1.0, n_sim=2000, seed=7)
    linear_limit = 1.96 / np.sqrt(((t - t.mean()) ** 2).sum())
    # HMR fits to noise produce larger initial slopes than a straight line does: the HMR limit is above
    assert a > linear_limit


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: Chamber(volume_m3=7.2, area_m2=0.0314), "implausible"),
        (lambda: Chamber(volume_m3=-1.0, area_m2=0.0314), "volume_m3 must be positive"),
        (lambda: detect_closures([0.0, 2.0, 1.0], [1, 1, 0]), "strictly increasing"),
        (lambda: chamber_fluxes([0.0, 1.0], [400.0, 401.0], Closures(np.array([0.0]), np.array([1.0])),
                                Chamber(0.007, 0.03), 980.0, 15.0), "p_pa must be in Pa"),
        (lambda: chamber_fluxes([0.0, 1.0], [400.0, 401.0], Closures(np.array([0.0]), np.array([1.0])),
                                Chamber(0.007, 0.03), 98000.0, 288.0), "degC"),
    ],
)
def test_bad_input(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]


def test_accuracy_terms_enter_the_uncertainty() -> None:
    chamber = Chamber(volume_m3=0.0072, area_m2=0.0314)
    t, x, state = synthetic_series(np.array([5.0]), np.array([1e-6]), h=chamber.height_m, noise_ppm=0.0001, seed=6)
    closures = detect_closures(t, state)
    res = chamber_fluxes(t, x, closures, chamber, 98000.0, 15.0, dead_band_s=0.0,
                         accuracy=ChamberAccuracy(h_rel=0.10, t_k=0.0, p_pa=0.0))
    assert res.flux_unc[0] == pytest.approx(0.5, rel=0.01)  # 10 % of 5, the fit error negligible
