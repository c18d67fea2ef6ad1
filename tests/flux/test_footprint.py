"""Footprint distances: Kljun et al. (2015) analytic identities and scaling laws; Kljun et al. (2004) against the
DE-HoH EddyPro runs R1 (30 min and 5 min) and V (EddyPro footprint model 0, "KJ"); Kormann & Meixner (2001) and
Hsieh et al. (2000) closed forms against numerical integrals of their densities and their neutral limits."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from numpy.typing import NDArray

from gateway.flux.ec.footprint import (
    KLJUN2004_L_R,
    hsieh2000_crosswind,
    hsieh2000_distances,
    kljun2004_crosswind,
    kljun2004_cumulative_xstar,
    kljun2004_distances,
    kljun2015_crosswind,
    kljun2015_distances,
    kormann_meixner2001_crosswind,
    kormann_meixner2001_distances,
    kormann_meixner2001_parameters,
    psi_m_kljun2015,
)

from .conftest import EC_RAW, V_RUN, read_eddypro_table

CASE = {"zm": 20.0, "h": 1000.0, "ustar": 0.5, "obukhov_length": -100.0, "z0": 0.5}


def test_kljun2015_cumulative_matches_x_r_and_peak() -> None:
    fp = kljun2015_distances(**CASE)
    x = np.linspace(0.0, 200_000.0, 2_000_001)
    f = kljun2015_crosswind(x, **CASE)
    cum = np.concatenate(([0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(x))))
    # eq. 25 integrates eq. 14 with b ~ -2, a ~ c: exact up to a/c = 0.9933 and the slightly non-(-2) exponent,
    # so the numerical cumulative contribution at x_R equals R within 0.02
    for pct, xr in fp.x_r.items():
        assert float(np.interp(xr, x, cum)) == pytest.approx(pct / 100.0, abs=0.02)
    assert float(x[np.argmax(f)]) == pytest.approx(fp.x_peak, rel=1e-3)
    assert f[x <= fp.x_offset].max() == 0.0
    assert fp.valid
    assert fp.x_offset < fp.x_r[10] < fp.x_peak < fp.x_r[50] < fp.x_r[90]


def test_kljun2015_scaling_laws() -> None:
    base = kljun2015_distances(**CASE)
    # all lengths x2 (zm, h, z0, L): every distance x2 (X* depends on x/zm, zm/h, zm/z0, zm/L only)
    doubled = kljun2015_distances(zm=40.0, h=2000.0, ustar=0.5, obukhov_length=-200.0, z0=1.0)
    assert doubled.x_peak == pytest.approx(2 * base.x_peak, rel=1e-12)
    assert doubled.x_r[80] == pytest.approx(2 * base.x_r[80], rel=1e-12)
    # neutral: x_R proportional to ln(zm / z0) (with h -> infinity the factor 1/(1 - zm/h) -> 1)
    n1 = kljun2015_distances(zm=20.0, h=1e12, ustar=0.5, obukhov_length=math.inf, z0=0.5)
    n2 = kljun2015_distances(zm=20.0, h=1e12, ustar=0.5, obukhov_length=math.inf, z0=0.05)
    assert n2.x_r[50] / n1.x_r[50] == pytest.approx(math.log(400.0) / math.log(40.0), rel=1e-9)
    # stable footprints reach further than unstable ones
    stable = kljun2015_distances(zm=20.0, h=1000.0, ustar=0.5, obukhov_length=100.0, z0=0.5)
    assert stable.x_r[80] > base.x_r[80]
    # measured wind instead of z0: u k / u* = ln(zm/z0) - psi_M gives the same distances
    shear = math.log(20.0 / 0.5) - psi_m_kljun2015(20.0, -100.0)
    via_u = kljun2015_distances(zm=20.0, h=1000.0, ustar=0.5, obukhov_length=-100.0, umean=shear * 0.5 / 0.4)
    assert via_u.x_r[70] == pytest.approx(base.x_r[70], rel=1e-12)


def test_kljun2015_validity_range() -> None:
    # a forest with z0 = 5 m measured 22.7 m above d is outside FFP's 20 z0 < zm range
    assert not kljun2015_distances(zm=22.67, h=1500.0, ustar=0.78, obukhov_length=-134.0, z0=5.0).valid
    assert not kljun2015_distances(zm=20.0, h=1000.0, ustar=0.05, obukhov_length=-100.0, z0=0.5).valid


def test_psi_m_limits() -> None:
    assert psi_m_kljun2015(10.0, math.inf) == 0.0
    assert psi_m_kljun2015(10.0, 100.0) == pytest.approx(-0.53)
    assert psi_m_kljun2015(10.0, -1e9) == pytest.approx(0.0, abs=1e-6)
    assert psi_m_kljun2015(10.0, -10.0) > 0.0


def test_kljun2004_normalised_peak_and_scaling() -> None:
    kw = {"sigma_w": 0.6, "ustar": 0.4, "zm": 15.0, "z0": 0.3}
    fp = kljun2004_distances(**kw)
    x = np.linspace(-500.0, 50_000.0, 2_000_001)
    f = kljun2004_crosswind(x, **kw)
    assert float(np.sum(0.5 * (f[1:] + f[:-1]) * np.diff(x))) == pytest.approx(1.0, abs=1e-6)
    assert float(x[np.argmax(f)]) == pytest.approx(fp.x_peak, rel=1e-3)
    # X* = (sigma_w/u*)^0.8 x / zm: doubling sigma_w/u* shrinks all distances by 2^-0.8
    fp2 = kljun2004_distances(sigma_w=1.2, ustar=0.4, zm=15.0, z0=0.3)
    assert fp2.x_r[50] == pytest.approx(fp.x_r[50] * 2**-0.8, rel=1e-9)
    assert fp.x_offset < 0.0 < fp.x_r[10] < fp.x_peak < fp.x_r[50]


def _fluxnet() -> dict[str, float]:
    path = V_RUN / "eddypro_fluxnet.csv"
    with path.open() as fh:
        head, values = list(csv.reader(fh))[:2]
    out = {}
    for k, v in zip(head, values, strict=True):
        try:
            out[k] = float(v)
        except ValueError:
            continue
    return out


def test_kljun2004_against_eddypro_v_run() -> None:
    """EddyPro uses sigma_w, the *uncorrected* u*, zm = 45 m - d and z0 (here 0.67 h and 0.15 h): the peak, the 1 %
    offset and every R % distance of its fluxnet file, to its printed precision (6 significant digits). The L_R were
    recovered from these runs, so this checks the closed form and the inputs, not L_R independently."""
    ref = _fluxnet()
    fp = kljun2004_distances(
        sigma_w=ref["W_SIGMA"],
        ustar=ref["USTAR_UNCORR"],
        zm=ref["BADM_INST_HEIGHT_SA"] - ref["DISPLACEMENT_HEIGHT"],
        z0=ref["ROUGHNESS_LENGTH"],
    )
    assert fp.x_peak == pytest.approx(ref["FETCH_MAX"], rel=5e-6)
    assert sorted(fp.x_r) == [10, 30, 50, 70, 80, 90]
    for pct in (10, 30, 50, 70, 80, 90):
        assert fp.x_r[pct] == pytest.approx(ref[f"FETCH_{pct}"], rel=5e-6), pct
    assert fp.x_offset == pytest.approx(ref["FETCH_OFFSET"], rel=5e-6)


@pytest.mark.parametrize("run", ["R1_dr_ba_maxcov_wpl_30min", "R1_dr_ba_maxcov_wpl_5min"])
def test_kljun2004_against_eddypro_r1_full_output(run: str) -> None:
    """R1 (no spectral corrections, so u* is the uncorrected one) in its 30 min and six 5 min periods: x_peak,
    x_offset and x_10% ... x_90% of EddyPro's full output from sigma_w = sqrt(w_var), u* and the site's zm, z0 (the
    V run's fluxnet file prints them for the same site)."""
    site = _fluxnet()
    zm, z0 = site["BADM_INST_HEIGHT_SA"] - site["DISPLACEMENT_HEIGHT"], site["ROUGHNESS_LENGTH"]
    rows = read_eddypro_table(EC_RAW / "eddypro" / run / "eddypro_full_output.csv")
    assert rows
    for row in rows:
        fp = kljun2004_distances(sigma_w=math.sqrt(float(row["w_var"])), ustar=float(row["u*"]), zm=zm, z0=z0)
        assert fp.x_peak == pytest.approx(float(row["x_peak"]), rel=1e-5)
        assert fp.x_offset == pytest.approx(float(row["x_offset"]), rel=1e-5)
        for pct in (10, 30, 50, 70, 90):
            assert fp.x_r[pct] == pytest.approx(float(row[f"x_{pct}%"]), rel=1e-5), (row["time"], pct)


def test_kljun2004_closed_form_is_near_the_exact_integral() -> None:
    """EddyPro's L_R are not the exact quantiles of eq. 13 but stay within 3 % of them in (X* + d)/c, increase with
    R, and put the peak (L = 1) between 30 % and 50 %; the exact quantile itself is checked against a numerical
    integral of the normalised density (trapezoids, 2e6 steps)."""
    z0 = 5.0
    _, c, d = 3.418, 4.277 * (3.418 - math.log(z0)), 1.685 * (3.418 - math.log(z0))
    values = [KLJUN2004_L_R[p] for p in sorted(KLJUN2004_L_R)]
    assert values == sorted(values)
    assert KLJUN2004_L_R[30] < 1.0 < KLJUN2004_L_R[50]
    for pct, lr in KLJUN2004_L_R.items():
        exact = (kljun2004_cumulative_xstar(pct / 100.0, z0) + d) / c
        assert lr == pytest.approx(exact, rel=0.03), pct
    kw = {"sigma_w": 1.0, "ustar": 1.0, "zm": 1.0, "z0": z0}  # X* = x
    x = np.linspace(-d, 200.0, 2_000_001)
    f = kljun2004_crosswind(x, **kw)
    cum = np.concatenate(([0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(x))))
    for frac in (0.01, 0.5, 0.9):
        assert float(np.interp(kljun2004_cumulative_xstar(frac, z0), x, cum)) == pytest.approx(frac, abs=1e-6)


# --- Kormann & Meixner (2001) and Hsieh et al. (2000) --------------------------------------------------------------

KM_CASES = [
    {"zm": 22.67, "ustar": 0.76, "obukhov_length": -124.0, "umean": 3.34},  # DE-HoH-like, unstable
    {"zm": 5.0, "ustar": 0.3, "obukhov_length": 40.0, "umean": 4.0},  # stable, short mast
    {"zm": 10.0, "ustar": 0.4, "obukhov_length": math.inf, "umean": 5.0},  # neutral
]


def _cumulative(x: NDArray[np.float64], f: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.concatenate(([0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(x))))


@pytest.mark.parametrize("case", KM_CASES)
def test_kormann_meixner_closed_form_against_a_numerical_integral(case: dict[str, float]) -> None:
    """Eq. 21 integrates to 1 and its cumulative at x_R, by trapezoids on a log grid, is R; its maximum is at
    xi / (1 + mu)."""
    fp = kormann_meixner2001_distances(**case)
    x = np.geomspace(1e-3, 1e9, 4_000_001)
    f = kormann_meixner2001_crosswind(x, **case)
    cum = _cumulative(x, f)
    assert cum[-1] == pytest.approx(1.0, abs=2e-4)  # the tail beyond 1e9 m holds ~xi^mu / 1e9^mu
    for pct, xr in [(1, fp.x_offset), *fp.x_r.items()]:
        assert float(np.interp(xr, x, cum)) == pytest.approx(pct / 100.0, abs=1e-5), pct
    assert float(x[np.argmax(f)]) == pytest.approx(fp.x_peak, rel=1e-5)
    assert fp.x_offset < fp.x_r[10] < fp.x_peak < fp.x_r[50] < fp.x_r[90]


def test_kormann_meixner_neutral_limit() -> None:
    """Neutral: phi = 1, n = 1, m = u*/(k u), so r = 1 + m, mu = 1 and xi = u zm / (k u* (1 + m)^2) (eqs. 19, 36):
    the footprint is xi/x^2 exp(-xi/x), x_R = -xi / ln R exactly."""
    zm, ustar, u = 10.0, 0.4, 5.0
    mu, xi = kormann_meixner2001_parameters(zm=zm, ustar=ustar, obukhov_length=math.inf, umean=u)
    m = ustar / (0.4 * u)
    assert mu == pytest.approx(1.0, rel=1e-12)
    assert xi == pytest.approx(u * zm / (0.4 * ustar * (1.0 + m) ** 2), rel=1e-12)
    fp = kormann_meixner2001_distances(zm=zm, ustar=ustar, obukhov_length=math.inf, umean=u)
    for pct in (10, 50, 90):
        assert fp.x_r[pct] == pytest.approx(-xi / math.log(pct / 100.0), rel=1e-9)
    assert fp.x_peak == pytest.approx(xi / 2.0, rel=1e-12)
    # a very large |L| is the neutral case
    far = kormann_meixner2001_distances(zm=zm, ustar=ustar, obukhov_length=-1e12, umean=u)
    assert far.x_r[80] == pytest.approx(fp.x_r[80], rel=1e-9)


def test_kormann_meixner_stability_ordering() -> None:
    """At equal u* and wind, stable stratification stretches the footprint, unstable shrinks it."""
    kw = {"zm": 10.0, "ustar": 0.4, "umean": 5.0}
    unstable = kormann_meixner2001_distances(obukhov_length=-20.0, **kw)
    neutral = kormann_meixner2001_distances(obukhov_length=math.inf, **kw)
    stable = kormann_meixner2001_distances(obukhov_length=20.0, **kw)
    assert unstable.x_r[90] < neutral.x_r[90] < stable.x_r[90]
    assert unstable.x_peak < neutral.x_peak < stable.x_peak


@pytest.mark.parametrize("obukhov_length", [-124.0, math.inf, 60.0])
def test_hsieh_closed_form_against_a_numerical_integral(obukhov_length: float) -> None:
    kw = {"zm": 22.67, "z0": 5.0, "obukhov_length": obukhov_length}
    fp = hsieh2000_distances(**kw)
    x = np.geomspace(1e-3, 1e9, 4_000_001)
    f = hsieh2000_crosswind(x, **kw)
    cum = _cumulative(x, f)
    for pct, xr in [(1, fp.x_offset), *fp.x_r.items()]:
        assert float(np.interp(xr, x, cum)) == pytest.approx(pct / 100.0, abs=1e-5), pct
    assert float(x[np.argmax(f)]) == pytest.approx(fp.x_peak, rel=1e-5)


def test_hsieh_neutral_case_and_classes() -> None:
    """Near neutral (|zu/L| < 0.04) P = 1, so L drops out: x_peak = D zu / (2 k^2) with D = 0.97 and
    zu = zm (ln(zm/z0) - 1 + z0/zm); the stable class reaches further than the unstable one."""
    zm, z0 = 20.0, 0.5
    zu = zm * (math.log(zm / z0) - 1.0 + z0 / zm)
    neutral = hsieh2000_distances(zm=zm, z0=z0, obukhov_length=math.inf)
    assert neutral.x_peak == pytest.approx(0.97 * zu / (2 * 0.4**2), rel=1e-12)
    assert hsieh2000_distances(zm=zm, z0=z0, obukhov_length=-30.0 * zu).x_peak == pytest.approx(neutral.x_peak)
    assert hsieh2000_distances(zm=zm, z0=z0, obukhov_length=30.0 * zu).x_peak == pytest.approx(neutral.x_peak)
    unstable = hsieh2000_distances(zm=zm, z0=z0, obukhov_length=-zu)  # zu/L = -1: D = 0.28, P = 0.59
    assert unstable.x_peak == pytest.approx(0.28 * zu / (2 * 0.4**2), rel=1e-12)
    stable = hsieh2000_distances(zm=zm, z0=z0, obukhov_length=zu)  # zu/L = 1: D = 2.44, P = 1.33
    assert stable.x_peak == pytest.approx(2.44 * zu / (2 * 0.4**2), rel=1e-12)
    assert unstable.x_r[90] < neutral.x_r[90] < stable.x_r[90]


def test_bad_inputs_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="zm > z0"):
        hsieh2000_distances(zm=2.0, z0=5.0, obukhov_length=-100.0)
    with pytest.raises(ValueError, match="umean"):
        kormann_meixner2001_distances(zm=10.0, ustar=0.4, obukhov_length=-50.0, umean=0.0)
