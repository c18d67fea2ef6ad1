"""Statistical screening of raw series after Vickers & Mahrt (1997), as EddyPro 7 offers it.

Vickers, D. and Mahrt, L. (1997): Quality control and flux sampling problems for tower and aircraft data. J. Atmos.
Oceanic Technol. 14, 512-526 (VM97). EddyPro 7 Help, "Statistical analysis" (Advanced Settings, Statistical Tests)
and "Despiking and raw data statistical screening": the tests only *flag* the period — 0 passed, 1 failed (hard
flag, or soft flag where the test has one), 9 not selected; they do not change the data (only despiking and the
absolute-limits filter do, elsewhere in the engine).

Every function is pure: arrays in (NaN = missing record), a flag out: 0, 1, or ``None`` when the test cannot be
computed on these data (no valid record, too few records, a zero mean wind); the caller prints ``None`` as 9.

EddyPro documents the tests' parameters but not every detail of their arithmetic. Where the Help is silent this
module follows the paper (VM97 §4-5), and says so in the function's docstring:

* amplitude resolution and dropouts: windows of 1000 records moving by 500 (VM97 §4b, §4d); the last window ends on
  the last record; a period shorter than one window is one window;
* skewness and kurtosis: of the whole period, about its mean (VM97 §4e);
* discontinuities: Haar transform over a 300-s window moving one record at a time (VM97 §4f, L1 = 5 min); the
  jump of the mean in the variable's own unit against EddyPro's per-variable limits (ds_*_uv in m s-1, ds_*_t in K,
  ds_*_co2 in µmol mol-1, ds_*_h2o in mmol mol-1), the change of the variance relative to the period's variance;
* time lags: the covariance at the expected lag against the largest |covariance| in the lag window;
* steadiness of the horizontal wind: VM97 §5's relative non-stationarity RNS of the linear trend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]
Flag = int | None

#: VM97 §4b: windows of 1000 records moving half their width.
WINDOW_RECORDS = 1000
WINDOW_STEP = 500
#: VM97 §4f: the Haar window L1 = 5 min.
HAAR_WINDOW_S = 300.0


def _valid(x: Array) -> Array:
    x = np.asarray(x, dtype=np.float64)
    return x[np.isfinite(x)]


def _windows(n: int, size: int = WINDOW_RECORDS, step: int = WINDOW_STEP) -> list[tuple[int, int]]:
    """(start, stop) of the half-overlapping windows over n records; one window when n ≤ size; the last window is
    moved back to end on the last record so that every record is in a window."""
    if n <= size:
        return [(0, n)]
    starts = list(range(0, n - size + 1, step))
    if starts[-1] + size < n:
        starts.append(n - size)
    return [(s, s + size) for s in starts]


def _bin_edges(x: Array, width_sigma: float, bins: int) -> Array | None:
    """VM97 §4b: ``bins`` equal bins over the smaller of ``width_sigma`` standard deviations (centred on the mean)
    and the range of ``x`` (min to max). None when x has no spread (one value)."""
    lo, hi = float(x.min()), float(x.max())
    spread = width_sigma * float(x.std())
    if hi <= lo:
        return None
    if hi - lo <= spread:
        return np.linspace(lo, hi, bins + 1)
    mean = float(x.mean())
    return np.linspace(mean - spread / 2.0, mean + spread / 2.0, bins + 1)


def amplitude_resolution(x: Array, *, ar_lim: float = 7.0, ar_bins: int = 100, ar_hf_lim: float = 70.0) -> Flag:
    """Amplitude-resolution test (VM97 §4b; EddyPro `test_ar`): in each window (1000 records, moving by 500) a
    histogram of ``ar_bins`` bins over the smaller of ``ar_lim`` standard deviations and the range; hard flag (1)
    when in any window more than ``ar_hf_lim`` % of the bins are empty — the signal's variance is too small for the
    instrument's resolution. A window holding a single value (a constant signal) has every bin but one empty.
    ``x`` in any unit; ``ar_lim`` in standard deviations, ``ar_hf_lim`` in %. None when no record is valid."""
    v = _valid(x)
    if v.size == 0:
        return None
    worst = 0.0
    for a, b in _windows(v.size):
        w = v[a:b]
        edges = _bin_edges(w, ar_lim, ar_bins)
        if edges is None:
            empty = (ar_bins - 1) / ar_bins
        else:
            counts, _ = np.histogram(w, bins=edges)
            empty = float((counts == 0).sum()) / ar_bins
        worst = max(worst, 100.0 * empty)
    return int(worst > ar_hf_lim)


def _longest_runs(index: NDArray[np.intp], extreme: NDArray[np.bool_]) -> tuple[int, int]:
    """Longest run of equal consecutive bin indices, among central bins and among extreme bins."""
    change = np.flatnonzero(np.diff(index) != 0) + 1
    starts = np.concatenate(([0], change))
    lengths = np.diff(np.concatenate((starts, [index.size])))
    run_extreme = extreme[starts]
    central = int(lengths[~run_extreme].max()) if (~run_extreme).any() else 0
    outer = int(lengths[run_extreme].max()) if run_extreme.any() else 0
    return central, outer


def dropouts(x: Array, *, do_extlim_dw: float = 10.0, do_hf1_lim: float = 10.0, do_hf2_lim: float = 6.0,
             ar_lim: float = 7.0, ar_bins: int = 100) -> Flag:
    """Drop-out test (VM97 §4d; EddyPro `test_do`): with the windows and histograms of the amplitude-resolution
    test, the longest run of consecutive records that fall into one bin, as % of the window's records; hard flag (1)
    when it exceeds ``do_hf1_lim`` % in a central bin or ``do_hf2_lim`` % in an extreme bin — a bin below the
    ``do_extlim_dw``-th or above the (100 − ``do_extlim_dw``)-th percentile of the window's values. A window of one
    value (a constant signal) is one long run. Missing records are left out (they neither break nor extend a run).
    EddyPro does not publish how it counts the run; the longest run per window is VM97's reading. None when no
    record is valid."""
    v = _valid(x)
    if v.size == 0:
        return None
    for a, b in _windows(v.size):
        w = v[a:b]
        edges = _bin_edges(w, ar_lim, ar_bins)
        if edges is None:
            central, outer = w.size, 0
        else:
            index = np.clip(np.searchsorted(edges, w, side="right") - 1, -1, ar_bins)  # -1/ar_bins: outside
            index[w == edges[-1]] = ar_bins - 1  # the last bin holds its upper edge (the maximum)
            centres = np.concatenate(([edges[0]], 0.5 * (edges[:-1] + edges[1:]), [edges[-1]]))[index + 1]
            lo, hi = np.percentile(w, [do_extlim_dw, 100.0 - do_extlim_dw])
            central, outer = _longest_runs(index, (centres < lo) | (centres > hi))
        if 100.0 * central / w.size > do_hf1_lim or 100.0 * outer / w.size > do_hf2_lim:
            return 1
    return 0


@dataclass(frozen=True)
class SkewKurtLimits:
    """Hard- and soft-flag ranges of skewness and kurtosis (non-excess: Gaussian 3), EddyPro `sk_*` (VM97 §4e:
    hard outside (−2, 2) and (1, 8), soft outside (−1, 1) and (2, 5))."""

    sk_hf_skmin: float = -2.0
    sk_hf_skmax: float = 2.0
    sk_hf_kumin: float = 1.0
    sk_hf_kumax: float = 8.0
    sk_sf_skmin: float = -1.0
    sk_sf_skmax: float = 1.0
    sk_sf_kumin: float = 2.0
    sk_sf_kumax: float = 5.0


def skewness_kurtosis(x: Array, limits: SkewKurtLimits = SkewKurtLimits()) -> tuple[Flag, Flag]:
    """Higher-moment test (VM97 §4e; EddyPro `test_sk`): skewness m3/m2^1.5 and kurtosis m4/m2² of the whole
    period about its mean; (hard, soft) flags, each 1 when the skewness or the kurtosis is outside its range.
    Dimensionless. (None, None) when fewer than 3 records are valid or the series is constant (the moments are then
    undefined)."""
    v = _valid(x)
    if v.size < 3:
        return None, None
    d = v - v.mean()
    m2 = float((d * d).mean())
    if m2 <= 0.0:
        return None, None
    sk = float((d ** 3).mean()) / m2 ** 1.5
    ku = float((d ** 4).mean()) / m2 ** 2
    hard = not (limits.sk_hf_skmin <= sk <= limits.sk_hf_skmax and limits.sk_hf_kumin <= ku <= limits.sk_hf_kumax)
    soft = not (limits.sk_sf_skmin <= sk <= limits.sk_sf_skmax and limits.sk_sf_kumin <= ku <= limits.sk_sf_kumax)
    return int(hard), int(soft)


def haar_transforms(x: Array, half: int) -> tuple[float, float]:
    """Largest |Haar transform| of the mean and of the variance over a window of 2·``half`` records moving one
    record at a time (VM97 §4f): max |x̄₂ − x̄₁| (unit of x) and max |σ₂² − σ₁²| / σ² (σ² of the whole series),
    where 1 and 2 are the window's halves. Missing records are left out of each half's statistics; a half with
    fewer than 2 valid records is skipped. NaN, NaN when no window qualifies."""
    x = np.asarray(x, dtype=np.float64)
    ok = np.isfinite(x)
    total_var = float(np.var(x[ok])) if ok.sum() > 1 else math.nan
    z = np.where(ok, x, 0.0)
    ref = float(z[ok].mean()) if ok.any() else 0.0
    z = np.where(ok, z - ref, 0.0)  # centred: the running sums keep their precision
    c0 = np.concatenate(([0.0], np.cumsum(ok.astype(np.float64))))
    c1 = np.concatenate(([0.0], np.cumsum(z)))
    c2 = np.concatenate(([0.0], np.cumsum(z * z)))
    n = x.size
    if half < 1 or 2 * half > n:
        return math.nan, math.nan
    s = np.arange(0, n - 2 * half + 1)

    def stats(a: NDArray[np.intp], b: NDArray[np.intp]) -> tuple[Array, Array, Array]:
        cnt = c0[b] - c0[a]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = (c1[b] - c1[a]) / cnt
            var = (c2[b] - c2[a]) / cnt - mean * mean
        return cnt, mean, var

    n1, m1, v1 = stats(s, s + half)
    n2, m2, v2 = stats(s + half, s + 2 * half)
    use = (n1 >= 2) & (n2 >= 2)
    if not use.any():
        return math.nan, math.nan
    jump = float(np.abs(m2 - m1)[use].max())
    if not total_var > 0.0:
        return jump, 0.0
    return jump, float(np.abs(v2 - v1)[use].max()) / total_var


def discontinuities(x: Array, fs: float, *, mean_hf: float, mean_sf: float, var_hf: float = 3.0,
                    var_sf: float = 2.0, window_s: float = HAAR_WINDOW_S) -> tuple[Flag, Flag]:
    """Discontinuity test (VM97 §4f; EddyPro `test_ds`): Haar transforms (:func:`haar_transforms`) over a window
    of ``window_s`` s (the whole period when it is shorter) moving one record at a time; hard flag when the jump
    of the mean exceeds ``mean_hf`` (unit of x: EddyPro's ds_hf_uv/w m s-1, ds_hf_t K, ds_hf_co2 µmol mol-1,
    ds_hf_h2o mmol mol-1) or the change of variance exceeds ``var_hf`` (relative to the period's variance,
    ds_hf_var); soft flag likewise with ``mean_sf``/``var_sf``. ``fs`` in Hz. (None, None) when fewer than 4 records
    are valid. A constant series has no discontinuity (0, 0)."""
    x = np.asarray(x, dtype=np.float64)
    if int(np.isfinite(x).sum()) < 4:
        return None, None
    half = max(1, min(round(window_s * fs) // 2, x.size // 2))
    jump, dvar = haar_transforms(x, half)
    if not math.isfinite(jump):
        return None, None
    return int(jump > mean_hf or dvar > var_hf), int(jump > mean_sf or dvar > var_sf)


def time_lag(w: Array, c: Array, fs: float, *, expected_s: float, min_s: float, max_s: float,
             tl_hf_lim: float = 20.0, tl_sf_lim: float = 10.0) -> tuple[Flag, Flag]:
    """Time-lag test (EddyPro `test_tl`; VM97's lag-correlation check): the w–scalar covariance at the expected lag
    ``expected_s`` (EddyPro tl_def_*) against the largest |covariance| at a lag in [``min_s``, ``max_s``] (s, the
    column's window, the expected lag included); hard flag when |cov(expected)| is more than ``tl_hf_lim`` %
    smaller, soft flag beyond ``tl_sf_lim`` %. A positive lag pairs w[i] with c[i + k]. EddyPro does not publish
    whether it compares covariances or correlations; with fixed series both give the same ratio. ``fs`` in Hz.
    (None, None) when no covariance can be computed or all are zero."""
    from gateway.flux.ec.timelag import lagged_covariances

    w = np.asarray(w, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    if int((np.isfinite(w) & np.isfinite(c)).sum()) < 3:
        return None, None
    k0 = round(expected_s * fs)
    lags = range(min(round(min_s * fs), k0), max(round(max_s * fs), k0) + 1)
    covs = np.abs(lagged_covariances(w, c, lags))
    at_expected = covs[k0 - lags.start]
    if not np.isfinite(covs).any() or not math.isfinite(at_expected):
        return None, None
    best = float(np.nanmax(covs))
    if best <= 0.0:
        return None, None
    drop = 100.0 * (best - float(at_expected)) / best
    return int(drop > tl_hf_lim), int(drop > tl_sf_lim)


def angle_of_attack(u: Array, v: Array, w: Array, *, aa_min: float = -30.0, aa_max: float = 30.0,
                    aa_lim: float = 10.0) -> Flag:
    """Angle-of-attack test (EddyPro `test_aa`): the angle of each record's wind to the sonic's horizontal plane,
    atan(w / √(u² + v²)) in degrees (sonic frame, m s-1 in); hard flag (1) when more than ``aa_lim`` % of the valid
    records lie outside [``aa_min``, ``aa_max``] degrees (where the sonic's calibration does not hold). None when
    no record is valid."""
    u, v, w = (np.asarray(a, dtype=np.float64) for a in (u, v, w))
    ok = np.isfinite(u) & np.isfinite(v) & np.isfinite(w)
    if not ok.any():
        return None
    aoa = np.degrees(np.arctan2(w[ok], np.hypot(u[ok], v[ok])))
    outside = int(((aoa < aa_min) | (aoa > aa_max)).sum())
    return int(100.0 * outside / int(ok.sum()) > aa_lim)


def horizontal_wind_steadiness(u: Array, v: Array, fs: float, *, ns_hf_lim: float = 0.5) -> tuple[Flag, float]:
    """Steadiness of the horizontal wind (VM97 §5, "relative non-stationarity"; EddyPro `test_ns`): the horizontal
    wind is turned into its mean direction (along-wind ū > 0, cross-wind mean 0); a straight line fitted in time
    to each component gives its change over the period, δu and δv (m s-1); RNS = √(δu² + δv²)/ū. Hard flag (1) when
    RNS > ``ns_hf_lim`` (VM97: 0.5; RNS ≥ VM97's RNu and RNv, so one limit covers all three). ``fs`` in Hz.
    Returns (flag, RNS); (None, NaN) with fewer than 3 valid records or no mean wind."""
    u, v = np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)
    ok = np.isfinite(u) & np.isfinite(v)
    if int(ok.sum()) < 3:
        return None, math.nan
    um, vm = float(u[ok].mean()), float(v[ok].mean())
    speed = math.hypot(um, vm)
    if speed <= 0.0:
        return None, math.nan
    cos, sin = um / speed, vm / speed
    along = u[ok] * cos + v[ok] * sin
    cross = -u[ok] * sin + v[ok] * cos
    t = np.flatnonzero(ok) / fs
    duration = (u.size - 1) / fs
    tc = t - t.mean()
    denom = float((tc * tc).sum())
    if denom <= 0.0:
        return None, math.nan
    du = float((tc * (along - along.mean())).sum()) / denom * duration
    dv = float((tc * (cross - cross.mean())).sum()) / denom * duration
    rns = math.hypot(du, dv) / speed
    return int(rns > ns_hf_lim), rns
