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

The arithmetic is vectorised (all windows of a test at once, the Haar transforms from cumulative sums, the time-lag
covariances of every lag from one FFT cross-correlation); `tests/flux/test_vm97_reference.py` holds it to a
window-by-window, lag-by-lag reference of the same rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from gateway.flux.ec.timelag import lagged_covariances

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


def _window_matrix(v: Array, size: int = WINDOW_RECORDS, step: int = WINDOW_STEP) -> Array:
    """The windows of :func:`_windows` over ``v`` as the rows of one (windows × records) array."""
    if v.size <= size:
        return v[None, :]
    starts = [a for a, _ in _windows(v.size, size, step)]
    return np.lib.stride_tricks.sliding_window_view(v, size)[starts]


@dataclass(frozen=True)
class _WindowBins:
    """Every window's histogram at once: ``edges`` (windows × bins + 1), the bin ``index`` of each record (windows ×
    records; −1 below the first edge, ``bins`` above the last, the last edge itself in the last bin, as
    :func:`numpy.histogram` counts it) and ``flat``, the windows with no spread (one value; their edges are
    placeholders)."""

    edges: Array
    index: NDArray[np.intp]
    flat: NDArray[np.bool_]


def _window_bins(w: Array, width_sigma: float, bins: int) -> _WindowBins:
    """VM97 §4b's histogram of each row of ``w`` (windows × records): ``bins`` equal bins over the smaller of
    ``width_sigma`` standard deviations (centred on the mean) and the range (min to max). Bit for bit what
    :func:`numpy.linspace` and :func:`numpy.searchsorted` give window by window: the edges are start + i·step with
    the last set to the stop, and a first guess of each record's bin from the step is corrected against the edges
    themselves (so rounding in the guess never moves a record to a neighbouring bin)."""
    lo, hi = w.min(axis=1), w.max(axis=1)
    spread = width_sigma * w.std(axis=1)
    mean = w.mean(axis=1)
    flat = hi <= lo
    narrow = hi - lo <= spread
    start = np.where(flat, 0.0, np.where(narrow, lo, mean - spread / 2.0))
    stop = np.where(flat, 1.0, np.where(narrow, hi, mean + spread / 2.0))
    step = (stop - start) / bins
    edges = np.arange(bins + 1, dtype=np.float64)[None, :] * step[:, None] + start[:, None]
    edges[:, -1] = stop
    # with sentinels -inf / +inf around each row's edges, the position p of a record x with ext[p] <= x < ext[p + 1]
    # is searchsorted(edges, x, "right"); rows are laid end to end so that one flat take serves every window
    nw, width = w.shape[0], bins + 3
    ext = np.concatenate((np.full((nw, 1), -np.inf), edges, np.full((nw, 1), np.inf)), axis=1).ravel()
    guess = np.floor((w - start[:, None]) / step[:, None])
    p = np.clip(guess, -1, bins).astype(np.intp) + 1 + (np.arange(nw) * width)[:, None]
    while (down := ext[p] > w).any():
        p -= down
    while (up := ext[p + 1] <= w).any():
        p += up
    p -= (np.arange(nw) * width)[:, None]
    index = p - 1                                   # searchsorted(edges, x, "right") - 1, in -1..bins
    index[(index == bins) & (w == edges[:, -1:])] = bins - 1
    return _WindowBins(edges, index, flat)


def _resolution_flag(wb: _WindowBins, bins: int, hf_lim: float) -> int:
    """VM97 §4b on binned windows: 1 when in any window more than ``hf_lim`` % of the ``bins`` bins are empty."""
    nw, width = wb.index.shape[0], bins + 2
    counts = np.bincount((wb.index + 1 + (np.arange(nw) * width)[:, None]).ravel(), minlength=nw * width)
    empty = (counts.reshape(nw, width)[:, 1:-1] == 0).sum(axis=1).astype(np.float64) / bins
    empty[wb.flat] = (bins - 1) / bins
    return int(100.0 * float(empty.max()) > hf_lim)


def _longest_runs(index: NDArray[np.intp], extreme: NDArray[np.bool_]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Per row of ``index`` (windows × records), the longest run of equal consecutive bin indices among central
    bins and among extreme bins (``extreme``: windows × ``bins`` + 2, whether bin −1 … ``bins`` is extreme)."""
    nw, m = index.shape
    change = np.ones(index.shape, dtype=bool)
    change[:, 1:] = index[:, 1:] != index[:, :-1]
    starts = np.flatnonzero(change)                 # every row starts a run: no run crosses two windows
    lengths = np.diff(np.append(starts, nw * m))
    row = starts // m
    outer_run = extreme[row, index.ravel()[starts] + 1]
    first = np.searchsorted(row, np.arange(nw))     # each window's first run
    central = np.maximum.reduceat(np.where(outer_run, 0, lengths), first)
    outer = np.maximum.reduceat(np.where(outer_run, lengths, 0), first)
    return central, outer


def _dropout_flag(w: Array, wb: _WindowBins, extlim_dw: float, hf1_lim: float, hf2_lim: float) -> int:
    """VM97 §4d on binned windows (see :func:`dropouts`)."""
    e = wb.edges
    centres = np.concatenate((e[:, :1], 0.5 * (e[:, :-1] + e[:, 1:]), e[:, -1:]), axis=1)
    lo, hi = np.percentile(w, [extlim_dw, 100.0 - extlim_dw], axis=1)
    central, outer = _longest_runs(wb.index, (centres < lo[:, None]) | (centres > hi[:, None]))
    m = w.shape[1]
    central[wb.flat], outer[wb.flat] = m, 0
    return int(bool(((100.0 * central / m > hf1_lim) | (100.0 * outer / m > hf2_lim)).any()))


def amplitude_resolution(x: Array, *, ar_lim: float = 7.0, ar_bins: int = 100, ar_hf_lim: float = 70.0) -> Flag:
    """Amplitude-resolution test (VM97 §4b; EddyPro `test_ar`): in each window (1000 records, moving by 500) a
    histogram of ``ar_bins`` bins over the smaller of ``ar_lim`` standard deviations and the range; hard flag (1)
    when in any window more than ``ar_hf_lim`` % of the bins are empty — the signal's variance is too small for the
    instrument's resolution. A window holding a single value (a constant signal) has every bin but one empty.
    ``x`` in any unit; ``ar_lim`` in standard deviations, ``ar_hf_lim`` in %. None when no record is valid.
    All windows are binned at once (:func:`_window_bins`) and counted with one :func:`numpy.bincount`."""
    v = _valid(x)
    if v.size == 0:
        return None
    return _resolution_flag(_window_bins(_window_matrix(v), ar_lim, ar_bins), ar_bins, ar_hf_lim)


def dropouts(x: Array, *, do_extlim_dw: float = 10.0, do_hf1_lim: float = 10.0, do_hf2_lim: float = 6.0,
             ar_lim: float = 7.0, ar_bins: int = 100) -> Flag:
    """Drop-out test (VM97 §4d; EddyPro `test_do`): with the windows and histograms of the amplitude-resolution
    test, the longest run of consecutive records that fall into one bin, as % of the window's records; hard flag (1)
    when it exceeds ``do_hf1_lim`` % in a central bin or ``do_hf2_lim`` % in an extreme bin — a bin whose centre
    lies below the ``do_extlim_dw``-th or above the (100 − ``do_extlim_dw``)-th percentile of the window's values
    (records outside the histogram count in a bin centred on its first or last edge). A window of one value (a
    constant signal) is one long run. Missing records are left out (they neither break nor extend a run). EddyPro
    does not publish how it counts the run; the longest run per window is VM97's reading. None when no record is
    valid. All windows at once (:func:`_window_bins`; the runs of every window from one pass of differences)."""
    v = _valid(x)
    if v.size == 0:
        return None
    w = _window_matrix(v)
    return _dropout_flag(w, _window_bins(w, ar_lim, ar_bins), do_extlim_dw, do_hf1_lim, do_hf2_lim)


def resolution_and_dropouts(x: Array, *, ar_lim: float = 7.0, ar_bins: int = 100, ar_hf_lim: float = 70.0,
                            do_extlim_dw: float = 10.0, do_hf1_lim: float = 10.0, do_hf2_lim: float = 6.0
                            ) -> tuple[Flag, Flag]:
    """(:func:`amplitude_resolution`, :func:`dropouts`) of ``x`` from one binning of its windows, as the engine
    asks for them when both tests are selected (the same flags as the two calls)."""
    v = _valid(x)
    if v.size == 0:
        return None, None
    w = _window_matrix(v)
    wb = _window_bins(w, ar_lim, ar_bins)
    return _resolution_flag(wb, ar_bins, ar_hf_lim), _dropout_flag(w, wb, do_extlim_dw, do_hf1_lim, do_hf2_lim)


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
    d2 = d * d
    m2 = float(d2.mean())
    if m2 <= 0.0:
        return None, None
    sk = float((d2 * d).mean()) / m2 ** 1.5
    ku = float((d2 * d2).mean()) / m2 ** 2
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
    # every run of ``half`` records once (start j: records j .. j + half - 1); window s has halves s and s + half
    cnt = c0[half:] - c0[:-half]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (c1[half:] - c1[:-half]) / cnt
        var = (c2[half:] - c2[:-half]) / cnt - mean * mean
    m = n - 2 * half + 1
    n1, m1, v1 = cnt[:m], mean[:m], var[:m]
    n2, m2, v2 = cnt[half:half + m], mean[half:half + m], var[half:half + m]
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
    (None, None) when no covariance can be computed or all are zero. The covariances of every lag come from one
    FFT cross-correlation (:func:`lagged_covariances`)."""
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
