"""Random (sampling) error of an eddy covariance: Finkelstein & Sims (2001) and Mann & Lenschow (1994).

Finkelstein, P. L. & Sims, P. F. (2001): Sampling error in eddy correlation flux measurements. J. Geophys. Res.
106(D4), 3503-3509, eq. (8) (with the covariance estimators of eqs. 9-10):

    var(cov_wc) = (1/N) * [ sum_{p=-m}^{m} g_ww(p) g_cc(p) + sum_{p=-m}^{m} g_wc(p) g_cw(p) ]

where ``g_xy(p) = (1/N) sum_i x'_i y'_{i+p}`` is the (biased) lagged cross-covariance of the fluctuations and ``m`` the
number of lags "sufficiently large to capture the integral time scale". EddyPro takes ``m`` as the integral
turbulence time scale (ITS) of the pair, the integral of the w–scalar cross-correlation function up to a limit
(EddyPro 7 Help, "Random uncertainty estimation": its first 1/e crossing, its first zero crossing, or the whole
correlation period up to ``ru_tlag_max``), see :func:`cross_correlation_timescale`. With ``m = ru_tlag_max``
(20 s) instead, the errors of the DE-HoH V run came out 7-12 % above EddyPro's; with ``m`` = ITS they agree to
0.5 %. The random error is ``sqrt(var)``, in the unit of the covariance; EddyPro states it for the flux as
``relative error x |uncorrected flux|`` (:func:`flux_random_error`).

Mann, J. & Lenschow, D. H. (1994): Errors in airborne flux measurements. J. Geophys. Res. 99(D7), 14519-14526: for
Gaussian processes the error variance of a flux F = cov(w, c) averaged over a time T much longer than the integral
time scale τ_F of the flux (of the product series w'c') is σ_F² = (2 τ_F / T)·var(w'c') with var(w'c') =
σ_w² σ_c² (1 + r_wc²) (Isserlis), i.e. the relative error

    σ_F / |F| = sqrt( (2 τ_F / T) · (1 + r_wc²) / r_wc² ),    r_wc = F / (σ_w σ_c)

(:func:`mann_lenschow_relative_error`). EddyPro 7 Help ("Random uncertainty estimation", eq. 6-4) applies "the
following simple equation" with r_wc, the flux averaging interval T and the integral turbulence time scale (ITS) of
the pair — the integral of the w–c cross-correlation, the same ITS as its Finkelstein & Sims lag range — where the
paper has τ_F. The engine does as EddyPro (:func:`mann_lenschow`); the difference matters: for processes with
exponential correlation functions of scale τ the cross-correlation ITS is τ while τ_F = τ/2, so this estimate is
√2 above the true sampling error of such a process (tests/flux/test_randomerror.py shows both).

Pure functions: numpy arrays in, :class:`RandomError` / floats out, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.fft import next_fast_len

__all__ = [
    "RandomError",
    "cross_correlation_timescale",
    "finkelstein_sims",
    "flux_random_error",
    "integral_time_scale",
    "lagged_covariance",
    "mann_lenschow",
    "mann_lenschow_relative_error",
]


@dataclass(frozen=True)
class RandomError:
    """Finkelstein & Sims (2001) random error of ``cov(w, c)``.

    ``sigma``: standard error of the covariance (unit of ``w`` x unit of ``c``). ``covariance``: the covariance itself
    (population, divide by N). ``relative``: ``sigma / |covariance|``. ``n``: number of valid pairs. ``max_lag``:
    ``m`` in samples.
    """

    sigma: float
    covariance: float
    relative: float
    n: int
    max_lag: int


def _valid_pairs(x: ArrayLike, y: ArrayLike
                 ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    """``x``, ``y`` as float arrays and where both are finite; ValueError unless they are 1-D series of the same
    length with at least one valid pair."""
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    if xa.shape != ya.shape or xa.ndim != 1:
        raise ValueError("the two series must be 1-D series of the same length")
    ok = np.isfinite(xa) & np.isfinite(ya)
    if not ok.any():
        raise ValueError("no valid pairs")
    return xa, ya, ok


def lagged_covariance(x: ArrayLike, y: ArrayLike, max_lag: int) -> NDArray[np.float64]:
    """Biased lagged cross-covariance ``g_xy(p) = (1/N) sum_i x'_i y'_{i+p}`` for ``p = -max_lag .. max_lag``.

    Finkelstein & Sims (2001) eqs. (9)-(10). Fluctuations are deviations from the block mean; NaN points are set to
    zero fluctuation (they contribute nothing) and N is the number of valid pairs. Computed with an FFT. Returns an
    array of length ``2 max_lag + 1``, index ``max_lag`` is lag 0.
    """
    xa, ya, ok = _valid_pairs(x, y)
    n_valid = int(ok.sum())
    xp = np.where(ok, xa - xa[ok].mean(), 0.0)
    yp = np.where(ok, ya - ya[ok].mean(), 0.0)
    n = xa.size
    max_lag = min(max_lag, n - 1)
    # zero-padding to n + max_lag is enough for lags |p| <= max_lag to come out without wrap-around
    nfft = next_fast_len(n + max_lag)
    fx = np.fft.rfft(xp, nfft)
    fy = np.fft.rfft(yp, nfft)
    cc = np.fft.irfft(np.conj(fx) * fy, nfft)  # cc[p] = sum_i x_i y_{i+p}, negative p wrapped at the end
    lags = np.arange(-max_lag, max_lag + 1)
    return cc[lags % nfft] / n_valid


def cross_correlation_timescale(w: ArrayLike, c: ArrayLike, fs: float, *, max_lag_s: float,
                                limit: str = "whole_correlation_period") -> float:
    """Integral turbulence time scale of the pair (w, c), s: the integral over lags τ = 0 .. τmax of the
    cross-correlation ρ(τ) = g_wc(τ)/g_wc(0) (EddyPro 7 Help, "Random uncertainty estimation", eqs. 6-2, 6-3;
    Finkelstein & Sims 2001, section 3), as a rectangle sum at the sampling step. ``limit``: where the integral
    stops — ``first_crossing_1_over_e`` (the first lag where ρ < 1/e), ``first_crossing_zero`` (the first lag
    where ρ ≤ 0), ``whole_correlation_period`` (up to ``max_lag_s``); never beyond ``max_lag_s`` (EddyPro
    ``ru_tlag_max``). ``fs`` in Hz."""
    m = max(1, round(max_lag_s * fs))
    g = lagged_covariance(w, c, m)[m:]
    if g[0] == 0.0 or not np.isfinite(g[0]):
        return math.nan
    rho = g / g[0]
    if limit == "first_crossing_1_over_e":
        below = np.flatnonzero(rho < math.exp(-1.0))
    elif limit == "first_crossing_zero":
        below = np.flatnonzero(rho <= 0.0)
    else:
        below = np.array([], dtype=np.intp)
    end = int(below[0]) if below.size else rho.size
    return float(np.sum(rho[:end])) / fs


def finkelstein_sims(w: ArrayLike, c: ArrayLike, fs: float, *, max_lag_s: float = 20.0) -> RandomError:
    """Random error of ``cov(w, c)`` after Finkelstein & Sims (2001), eq. (8).

    ``w``: vertical wind, m s-1; ``c``: scalar or wind component (any unit), already time-lag aligned with ``w``;
    ``fs``: sampling frequency, Hz; ``max_lag_s``: the lag range ``m`` in seconds (EddyPro: the integral time scale
    of :func:`cross_correlation_timescale`).
    """
    wa = np.asarray(w, dtype=np.float64)
    ca = np.asarray(c, dtype=np.float64)
    m = max(0, round(max_lag_s * fs))
    g_ww = lagged_covariance(wa, wa, m)
    g_cc = lagged_covariance(ca, ca, m)
    g_wc = lagged_covariance(wa, ca, m)
    g_cw = g_wc[::-1]  # g_cw(p) = g_wc(-p)
    n = int((np.isfinite(wa) & np.isfinite(ca)).sum())
    var = (float(np.sum(g_ww * g_cc)) + float(np.sum(g_wc * g_cw))) / n
    sigma = math.sqrt(max(var, 0.0))
    cov = float(g_wc[g_wc.size // 2])
    rel = sigma / abs(cov) if cov != 0.0 else math.inf
    return RandomError(sigma=sigma, covariance=cov, relative=rel, n=n, max_lag=min(m, wa.size - 1))


def mann_lenschow_relative_error(r_wc: float, timescale_s: float, period_s: float) -> float:
    """Relative random error σ_F/|F| of a flux after Mann & Lenschow (1994) (module docstring):
    ``sqrt((2 τ / T)·(1 + r²)/r²)``; ``r_wc`` the correlation coefficient of w and c (dimensionless), ``timescale_s``
    the integral time scale τ, s (the paper's τ_F of the flux; EddyPro's cross-correlation ITS), ``period_s`` the
    averaging time T, s. Dimensionless; inf when r_wc = 0, NaN for a time scale or period that is not positive."""
    if not (timescale_s > 0 and period_s > 0) or not math.isfinite(r_wc):
        return math.nan
    if r_wc == 0.0:
        return math.inf
    return math.sqrt(2.0 * timescale_s / period_s * (1.0 + r_wc * r_wc) / (r_wc * r_wc))


def mann_lenschow(w: ArrayLike, c: ArrayLike, fs: float, *, timescale_s: float, period_s: float) -> RandomError:
    """Random error of ``cov(w, c)`` after Mann & Lenschow (1994) with the time scale EddyPro uses (module
    docstring): ``w`` vertical wind, m s-1, ``c`` scalar or wind component (any unit), lag-aligned with ``w``; ``fs``
    Hz; ``timescale_s`` the integral time scale, s (EddyPro: :func:`cross_correlation_timescale`); ``period_s`` the
    flux averaging interval T, s. Covariance and variances are population moments of the valid pairs; ``sigma`` is
    ``relative × |covariance|`` in the covariance's unit; ``max_lag`` the time scale in samples."""
    wa, ca, ok = _valid_pairs(w, c)
    n = int(ok.sum())
    wp = wa[ok] - wa[ok].mean()
    cp = ca[ok] - ca[ok].mean()
    cov = float(np.mean(wp * cp))
    scale = math.sqrt(float(np.mean(wp * wp)) * float(np.mean(cp * cp)))
    r = cov / scale if scale > 0 else math.nan
    rel = mann_lenschow_relative_error(r, timescale_s, period_s) if math.isfinite(r) else math.nan
    sigma = rel * abs(cov) if math.isfinite(rel) else math.nan
    return RandomError(sigma=sigma, covariance=cov, relative=rel, n=n, max_lag=round(timescale_s * fs))


def flux_random_error(error: RandomError, flux: float) -> float:
    """Random error in flux units: ``error.relative * |flux|`` (the flux is a constant multiple of the covariance,
    e.g. ``H = rho cp cov(w, Ts)``, so the relative error carries over; EddyPro uses the uncorrected flux, e.g.
    ``un_H``). Unit of ``flux``."""
    return error.relative * abs(flux)


def integral_time_scale(x: ArrayLike, fs: float, *, max_lag_s: float = 300.0) -> float:
    """Integral time scale, s: integral of the autocorrelation function from lag 0 to its first zero crossing
    (Kaimal & Finnigan 1994, section 2.6; as used to choose ``m`` by Finkelstein & Sims 2001, section 3). NaN when the
    autocorrelation does not cross zero within ``max_lag_s``."""
    m = max(1, round(max_lag_s * fs))
    g = lagged_covariance(x, x, m)[m:]
    if g[0] <= 0:
        return math.nan
    rho = g / g[0]
    neg = np.flatnonzero(rho <= 0.0)
    if neg.size == 0:
        return math.nan
    k = int(neg[0])
    return float(np.sum(rho[:k])) / fs
