"""The engine on synthetic data with known truth: prescribed covariances, lag, tilt, gaps, open-path densities.

Tolerances are stated per test: exact ones (to 1e-9) where the engine must reproduce the arithmetic on the very
same arrays; statistical ones (a few standard errors of a covariance estimated from N = 36,000 samples,
SE(cov_ab) = sqrt((σa²σb² + cov_ab²)/N)) where the truth is the prescribed population value.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gateway.flux.ec import airprops, detrend, timelag
from gateway.flux.ec.constants import R_GAS
from gateway.flux.ec.engine import process_period
from gateway.flux.ec.settings import ProcessingSettings

from .synthetic import FS, N, correlated, metadata, period, settings_of, to_sonic_frame

# u, v, w, Ts, CO2 (ppm), H2O (mmol/mol): a daytime-like covariance matrix
COV = np.array([
    [1.50, 0.10, -0.30, -0.05, 0.10, -0.02],
    [0.10, 1.20, 0.02, 0.01, 0.00, 0.00],
    [-0.30, 0.02, 0.60, 0.15, -0.35, 0.06],
    [-0.05, 0.01, 0.15, 0.30, -0.20, 0.03],
    [0.10, 0.00, -0.35, -0.20, 1.50, -0.05],
    [-0.02, 0.00, 0.06, 0.03, -0.05, 0.05],
])
MEANS = np.array([3.0, 0.0, 0.0, 295.0, 410.0, 12.0])
PLAIN = settings_of(rot_meth="none", tlag_meth="none", wpl_meth=False)


def streams(seed: int = 1) -> dict[str, np.ndarray]:
    x = correlated(COV, seed=seed) + MEANS
    return dict(zip(("u", "v", "w", "ts", "co2", "h2o"), x.T.copy(), strict=True))


def se(i: int, j: int) -> float:
    return math.sqrt((COV[i, i] * COV[j, j] + COV[i, j] ** 2) / N)


def test_covariances_are_the_population_covariances_of_the_arrays() -> None:
    data = streams()
    r = process_period(period(data), PLAIN)
    c = np.cov(np.vstack([data[k] for k in ("u", "v", "w", "ts", "co2", "h2o")]), bias=True)
    assert r.get("U_W_COV") == pytest.approx(c[0, 2], rel=1e-9)
    assert r.get("W_T_SONIC_COV") == pytest.approx(c[2, 3], rel=1e-9)
    assert r.get("W_CO2_COV") == pytest.approx(c[2, 4], rel=1e-9)
    assert r.get("W_H2O_COV") == pytest.approx(c[2, 5], rel=1e-9)
    assert r.get("USTAR") == pytest.approx((c[0, 2] ** 2 + c[1, 2] ** 2) ** 0.25, rel=1e-9)


def test_prescribed_covariances_recovered_within_four_standard_errors() -> None:
    r = process_period(period(streams(seed=7)), PLAIN)
    for name, (i, j) in {"U_W_COV": (0, 2), "V_W_COV": (1, 2), "W_T_SONIC_COV": (2, 3), "W_CO2_COV": (2, 4),
                         "W_H2O_COV": (2, 5)}.items():
        assert abs(r.get(name) - COV[i, j]) < 4 * se(i, j), name
    for name, i in {"U_VAR": 0, "W_VAR": 2, "T_SONIC_VAR": 3}.items():
        assert abs(r.get(name) - COV[i, i]) < 4 * math.sqrt(2 / N) * COV[i, i], name
    # Gaussian moments: skewness 0 and kurtosis 3, each within 4 standard errors (sqrt(6/N), sqrt(24/N))
    assert abs(r.get("W_SKEW")) < 4 * math.sqrt(6 / N)
    assert abs(r.get("W_KURT") - 3.0) < 4 * math.sqrt(24 / N)


def test_fluxes_follow_from_the_covariances() -> None:
    data = streams()
    r = process_period(period(data), PLAIN)
    air = airprops.air_properties(float(data["ts"].mean()), airprops.pressure_from_altitude(0.0),
                                  h2o_mole_fraction=float(data["h2o"].mean()) / (1000 + float(data["h2o"].mean())))
    assert r.get("FC") == pytest.approx(r.get("W_CO2_COV") / air.vd, rel=1e-9)
    assert r.get("FH2O") == pytest.approx(r.get("W_H2O_COV") / air.vd, rel=1e-9)
    assert r.get("TAU") == pytest.approx(math.copysign(air.rho_a * r.get("USTAR") ** 2, r.get("U_W_COV")), rel=1e-9)
    # H is below rho*cp*w'Ts' by the humidity terms (van Dijk et al. 2004), here a few per cent
    assert 0.9 * r.get("H_UNCORR") < r.get("H") < r.get("H_UNCORR")


@pytest.mark.parametrize(("lag_co2", "lag_h2o"), [(7, 3), (0, 12), (20, 20)])
def test_known_lag_is_found(lag_co2: int, lag_h2o: int) -> None:
    data = streams()
    data["co2"] = timelag.shift(data["co2"], -lag_co2)  # co2 arrives lag_co2 records after w
    data["h2o"] = timelag.shift(data["h2o"], -lag_h2o)
    r = process_period(period(data), settings_of(rot_meth="none", tlag_meth="covariance_maximization"))
    assert r.get("CO2_TLAG") == pytest.approx(lag_co2 / FS)
    assert r.get("H2O_TLAG") == pytest.approx(lag_h2o / FS)
    assert abs(r.get("W_CO2_COV") - COV[2, 4]) < 4 * se(2, 4)


def test_lag_on_the_window_edge_falls_back_to_the_default_when_one_is_configured() -> None:
    data = streams()
    kernel = np.ones(15) / 15  # autocorrelated signals: the covariance rises towards the true lag
    for k in ("w", "co2"):
        data[k] = np.convolve(data[k], kernel, mode="same")
    data["co2"] = timelag.shift(data["co2"], -26)  # 1.3 s: beyond the 0..1 s window
    data["co2"][-26:] = 410.0
    s = settings_of(rot_meth="none", tlag_meth="covariance_maximization_with_default", tl_def_co2=0.25)
    r = process_period(period(data), s)
    assert (r.get("CO2_TLAG"), r.get("CO2_TLAG_DEFAULT")) == (0.25, 1.0)
    no_default = ProcessingSettings.model_validate({**s.model_dump(), "tlag_meth": "covariance_maximization"})
    r2 = process_period(period(data), no_default)
    assert (r2.get("CO2_TLAG"), r2.get("CO2_TLAG_DEFAULT")) == (1.0, 0.0)


def test_nominal_closed_path_lag_from_tube_geometry() -> None:
    """DE-HoH's LI-7200: 71.1 cm x 5.3 mm at 15 L/min plus the 16 cm3 cell: about 0.13 s (README of the data)."""
    lag = timelag.nominal_closed_path_lag(71.1, 5.3, 15.0, 16e-6)
    volume = math.pi * 0.00265 ** 2 * 0.711 + 16e-6
    assert lag == pytest.approx(volume / (15e-3 / 60))
    assert round(lag, 2) == 0.13


@pytest.mark.parametrize(("yaw", "pitch"), [(40.0, 5.0), (-135.0, -3.0), (170.0, 8.0)])
def test_known_tilt_is_removed_by_double_rotation(yaw: float, pitch: float) -> None:
    data = streams()
    data["v"] -= data["v"].mean()  # the streamwise frame: mean v and w are zero
    data["w"] -= data["w"].mean()
    true = process_period(period(dict(data)), PLAIN)
    u, v, w = to_sonic_frame(data["u"], data["v"], data["w"], yaw, pitch)
    r = process_period(period({**data, "u": u, "v": v, "w": w}), settings_of(tlag_meth="none",
                                                                                       wpl_meth=False))
    assert r.get("YAW") == pytest.approx(yaw % 360.0, abs=1e-9)  # printed in [0, 360) as EddyPro does
    assert r.get("PITCH") == pytest.approx(pitch, abs=1e-9)
    for name in ("U_W_COV", "W_T_SONIC_COV", "W_CO2_COV", "USTAR", "WS"):
        assert r.get(name) == pytest.approx(true.get(name), rel=1e-6, abs=1e-9), name


def test_gaps_below_max_lack_change_little_and_are_counted() -> None:
    data = streams()
    full = process_period(period(data), PLAIN)
    rng = np.random.default_rng(3)
    holes = rng.choice(N, size=N // 20, replace=False)  # 5 % missing
    gappy = {k: a.copy() for k, a in data.items()}
    for k in gappy:
        gappy[k][holes] = np.nan
    r = process_period(period(gappy), PLAIN)
    assert r.status == "ok"
    assert r.get("N_USED") == N - N // 20
    for name in ("FC", "H", "LE", "USTAR"):
        assert r.get(name) == pytest.approx(full.get(name), rel=0.03), name


def test_gap_above_max_lack_fails_that_flux_with_a_reason() -> None:
    data = streams()
    data["co2"][: N // 5] = np.nan  # 20 % of CO2 missing
    r = process_period(period(data), PLAIN)
    assert r.status == "partial"
    assert math.isnan(r.get("FC")) and math.isfinite(r.get("H"))
    assert any("co2" in reason and "max_lack" in reason for reason in r.reasons)


def test_detrending_methods_remove_a_ramp() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal(N)
    ramp = np.linspace(0, 50, N)
    assert np.std(detrend.linear(x + ramp, N)) == pytest.approx(np.std(detrend.linear(x, N)), rel=1e-9)
    rm = detrend.running_mean(x + ramp, 200)
    assert abs(float(np.nanmean(rm[200:-200]))) < 0.05
    ex = detrend.exponential_running_mean(x + ramp, 10.0, FS)
    # the exponential filter lags a ramp by slope*tau (McMillen 1988): residual mean ~ 50/N*FS*10
    assert float(np.mean(ex[N // 2:])) == pytest.approx(50 / N * FS * 10, rel=0.1)


def open_path_streams(seed: int = 2) -> tuple[dict[str, np.ndarray], float, float]:
    """Open-path molar densities made from known dry mole fractions and air temperature, with the true fluxes
    F_c = n_d·w'χc' (µmol m-2 s-1) and F_v = n_d·w'χv' (mmol m-2 s-1)."""
    cov = np.array([
        [0.50, 0.15, -0.30, 0.05],   # w, T (K), CO2 (ppm dry), H2O (mmol/mol dry)
        [0.15, 0.40, -0.10, 0.02],
        [-0.30, -0.10, 1.00, -0.01],
        [0.05, 0.02, -0.01, 0.08],
    ])
    x = correlated(cov, seed=seed)
    w, t, chi_c, chi_v = x[:, 0], 298.0 + x[:, 1], 400.0 + x[:, 2], 15.0 + x[:, 3]
    p = 100000.0
    n = p / (R_GAS * t)                          # mol m-3 of moist air
    xv = chi_v / (1000.0 + chi_v)
    n_d = n * (1 - xv)
    co2 = chi_c * 1e-6 * n_d * 1e3               # mmol m-3
    h2o = n * xv * 1e3                           # mmol m-3
    q = (n * xv * 18.02e-3) / (n_d * 28.96e-3 + n * xv * 18.02e-3)
    ts = t * (1 + 0.51 * q)
    rng = np.random.default_rng(seed + 1)
    u = 2.5 + rng.standard_normal(N)
    v = rng.standard_normal(N) * 0.8
    nd_mean = float(n_d.mean())
    wc = float(np.mean((w - w.mean()) * (chi_c - chi_c.mean())))
    wv = float(np.mean((w - w.mean()) * (chi_v - chi_v.mean())))
    data = {"u": u, "v": v, "w": w, "ts": ts, "co2": co2, "h2o": h2o, "air_p": np.full(N, p)}
    return data, nd_mean * wc, nd_mean * wv


def test_wpl_recovers_the_true_open_path_fluxes_within_one_percent() -> None:
    data, fc_true, fv_true = open_path_streams()
    md = metadata(columns=[
        {"index": 1, "variable": "u"}, {"index": 2, "variable": "v"}, {"index": 3, "variable": "w"},
        {"index": 4, "variable": "ts"},
        {"index": 5, "variable": "co2", "measure_type": "molar_density", "unit_in": "mmol_m3"},
        {"index": 6, "variable": "h2o", "measure_type": "molar_density", "unit_in": "mmol_m3"},
        {"index": 7, "variable": "air_p", "unit_in": "pa"}],
        analyzer={"model": "li7500", "path_type": "open"})
    types = {"co2": "molar_density", "h2o": "molar_density"}
    s = settings_of(rot_meth="none", tlag_meth="none", wpl_meth=True)
    r = process_period(period(data, md, types), s)
    assert r.get("FC") == pytest.approx(fc_true, rel=0.01)
    assert r.get("FH2O") == pytest.approx(fv_true, rel=0.01)
    no_wpl = ProcessingSettings.model_validate({**s.model_dump(), "wpl_meth": False})
    raw = process_period(period(data, md, types), no_wpl)
    # without the density terms the CO2 flux is far off (by more than 20 % here)
    assert abs(raw.get("FC") / fc_true - 1) > 0.2
