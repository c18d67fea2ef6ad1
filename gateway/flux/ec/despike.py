"""Despiking of high-frequency eddy-covariance series.

Two pure methods, numpy arrays in, :class:`DespikeResult` out, no I/O:

* :func:`despike_vm97` -- Vickers, D. & Mahrt, L. (1997): Quality control and flux sampling problems for tower and
  aircraft data. J. Atmos. Oceanic Technol. 14, 512-526, section 4a ("spikes"). A moving window of ``window_s``
  seconds (5 min in the paper; EddyPro: one sixth of the averaging period, :func:`eddypro_window_s`, so 50 s for
  5-min averaging) gives a local mean and standard deviation; a point is an outlier when
  ``|x - mean| > k * sigma``. Runs of at most ``sr_num_spk`` consecutive outliers are spikes (longer runs are
  treated as real, e.g. a change of regime, and are kept). Spikes are replaced (linear interpolation or NaN) and the
  pass is repeated with ``k`` increased by 0.1 until no spike is found or ``max_passes`` is reached. The period gets
  a hard flag when more than ``sr_lim_hf`` percent of its points were spikes (VM97: 1 %).
* :func:`despike_mad` -- Mauder, M. et al. (2013): A strategy for quality and uncertainty assessment of long-term
  eddy-covariance measurements. Agric. For. Meteorol. 169, 122-135, eq. (1): a point is a spike when it lies outside
  ``median +- q * MAD / 0.6745`` (q = 7 there), with MAD the median absolute deviation from the median of the
  period.

Parameter names follow EddyPro's settings file (``[RawProcess_ParameterSettings]``): ``sr_num_spk`` (maximum
number of consecutive outliers that still count as a spike, 3), ``sr_lim_u`` (3.5, u and v), ``sr_lim_w`` (5.0),
``sr_lim_co2`` / ``sr_lim_h2o`` (3.5), ``sr_lim_ch4`` / ``sr_lim_n2o`` (8.0), ``sr_lim_hf`` (accepted spikes, 1.0 %);
the plausibility (absolute-limit) ranges ``al_*`` are in :data:`EDDYPRO_ABSOLUTE_LIMITS`. EddyPro's sonic
temperature uses the u/v limit (:data:`EDDYPRO_SR_LIMITS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "EDDYPRO_ABSOLUTE_LIMITS",
    "EDDYPRO_SR_LIMITS",
    "DespikeResult",
    "absolute_limits",
    "despike_mad",
    "despike_vm97",
    "eddypro_window_s",
]

#: Starting outlier threshold (in standard deviations) per variable, EddyPro ``sr_lim_*`` defaults and the values of
#: the DE-HoH ICOS-like run. ``ts`` shares the u/v value.
EDDYPRO_SR_LIMITS: dict[str, float] = {
    "u": 3.5,
    "v": 3.5,
    "w": 5.0,
    "ts": 3.5,
    "co2": 3.5,
    "h2o": 3.5,
    "ch4": 8.0,
    "n2o": 8.0,
}

#: Plausibility ranges (EddyPro ``al_*``): ``(min, max)`` in m s-1 (u, v: |x| <= al_u_max; w: |w| <= al_w_max),
#: degC (sonic temperature), ppm (CO2, CH4, N2O: µmol mol-1) and mmol mol-1 (H2O).
EDDYPRO_ABSOLUTE_LIMITS: dict[str, tuple[float, float]] = {
    "u": (-30.0, 30.0),
    "v": (-30.0, 30.0),
    "w": (-5.0, 5.0),
    "ts": (-40.0, 50.0),
    "co2": (200.0, 900.0),
    "h2o": (0.0, 40.0),
    "ch4": (0.17, 1000.0),
    "n2o": (0.032, 1000.0),
}


@dataclass(frozen=True)
class DespikeResult:
    """Outcome of a despiking run.

    ``values``: cleaned series (same unit and length as the input; spikes replaced or NaN).
    ``spikes``: boolean mask of the points that were detected as spikes (in any pass).
    ``n_spikes``: number of spike points (records), ``spikes.sum()`` -- EddyPro's ``*_SPIKE_NREX``.
    ``n_events``: number of spike events (runs of consecutive spike points) -- EddyPro's ``*_spikes`` /
    ``*_NUM_SPIKES`` count.
    ``n_passes``: passes performed (VM97) or 1 (MAD).
    ``hard_flag``: True when the spike fraction exceeds the accepted percentage (VM97 ``sr_lim_hf``).
    """

    values: NDArray[np.float64]
    spikes: NDArray[np.bool_]
    n_spikes: int
    n_events: int
    n_passes: int
    hard_flag: bool


def eddypro_window_s(period_s: float) -> float:
    """Width of EddyPro's despiking window, s: one sixth of the averaging period (EddyPro 7 Help, "Despiking and
    raw data statistical screening"; 5 min for 30-min periods as in Vickers & Mahrt 1997, 50 s for 5-min periods).
    ``period_s`` in s."""
    return period_s / 6.0


def _moving_stats(x: NDArray[np.float64], n_win: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Centred moving mean and (population) standard deviation over ``n_win`` points, NaN-aware.

    Near the ends, where the centred window would overrun the series, the first / last complete window is used.
    """
    n = x.size
    if n_win >= n:
        valid = np.isfinite(x)
        m = float(np.mean(x[valid])) if valid.any() else np.nan
        s = float(np.std(x[valid])) if valid.any() else np.nan
        return np.full(n, m), np.full(n, s)
    valid = np.isfinite(x)
    xv = np.where(valid, x, 0.0)
    # Remove the global mean before the running sums to avoid cancellation on e.g. 300 K or 350 ppm signals.
    offset = float(np.mean(xv[valid])) if valid.any() else 0.0
    xv = np.where(valid, x - offset, 0.0)
    c0 = np.concatenate(([0.0], np.cumsum(valid.astype(np.float64))))
    c1 = np.concatenate(([0.0], np.cumsum(xv)))
    c2 = np.concatenate(([0.0], np.cumsum(xv * xv)))
    starts = np.arange(n) - n_win // 2
    starts = np.clip(starts, 0, n - n_win)
    ends = starts + n_win
    cnt = c0[ends] - c0[starts]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (c1[ends] - c1[starts]) / cnt
        var = (c2[ends] - c2[starts]) / cnt - mean * mean
    std = np.sqrt(np.clip(var, 0.0, None))
    return mean + offset, std


def _runs(mask: NDArray[np.bool_]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Start indices and lengths of the runs of True in ``mask``."""
    padded = np.concatenate(([False], mask, [False]))
    d = np.diff(padded.astype(np.int8))
    starts = np.flatnonzero(d == 1)
    stops = np.flatnonzero(d == -1)
    return starts, stops - starts


def _interpolate_gaps(x: NDArray[np.float64], gaps: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Replace ``x[gaps]`` by linear interpolation between the nearest finite non-gap neighbours (edges: nearest)."""
    out = x.copy()
    good = np.isfinite(x) & ~gaps
    if not good.any():
        out[gaps] = np.nan
        return out
    idx = np.arange(x.size)
    out[gaps] = np.interp(idx[gaps], idx[good], x[good])
    return out


def despike_vm97(
    x: ArrayLike,
    fs: float,
    *,
    sr_lim: float = 3.5,
    sr_num_spk: int = 3,
    sr_lim_hf: float = 1.0,
    window_s: float = 300.0,
    k_step: float = 0.1,
    max_passes: int = 20,
    replace: Literal["linear", "nan"] = "linear",
) -> DespikeResult:
    """Vickers & Mahrt (1997) spike detection and removal (VM97 section 4a).

    Parameters
    ----------
    x: series in any unit (m s-1, K, ppm, ...); NaN marks missing points, which are ignored by the window statistics
        and left as NaN.
    fs: sampling frequency, Hz.
    sr_lim: starting threshold ``k`` in standard deviations (EddyPro ``sr_lim_u``/``sr_lim_w``/...; VM97: 3.5).
    sr_num_spk: maximum number of consecutive outliers that still count as a spike (EddyPro ``sr_num_spk``; VM97:
        3). Longer runs of outliers are not spikes and are kept.
    sr_lim_hf: accepted spikes, percent of the points; above it ``hard_flag`` is set (EddyPro ``sr_lim_hf``, 1.0).
    window_s: width of the centred moving window, s (VM97: 5 min). Points within half a window of either end use
        the first / last complete window.
    k_step: increase of ``k`` after each pass with spikes (VM97: 0.1).
    max_passes: upper bound on the number of passes (20).
    replace: ``"linear"`` -- spikes are replaced by linear interpolation between the neighbouring good points
        (EddyPro "filter spikes"); ``"nan"`` -- spikes become NaN.

    Returns
    -------
    :class:`DespikeResult`; ``values`` has the unit of ``x``.
    """
    arr = np.asarray(x, dtype=np.float64).copy()
    if arr.ndim != 1:
        raise ValueError("despike_vm97 expects a 1-D series")
    if fs <= 0 or window_s <= 0:
        raise ValueError("fs and window_s must be positive")
    if sr_num_spk < 1 or max_passes < 1:
        raise ValueError("sr_num_spk and max_passes must be >= 1")
    n = arr.size
    n_win = max(3, round(window_s * fs))
    spikes = np.zeros(n, dtype=bool)
    k = sr_lim
    passes = 0
    for _ in range(max_passes):
        passes += 1
        mean, std = _moving_stats(arr, n_win)
        with np.errstate(invalid="ignore"):
            outlier = np.abs(arr - mean) > k * std
        outlier &= np.isfinite(arr)
        starts, lengths = _runs(outlier)
        keep = lengths <= sr_num_spk
        new = np.zeros(n, dtype=bool)
        for s, ln in zip(starts[keep], lengths[keep], strict=True):
            new[s : s + ln] = True
        if not new.any():
            break
        spikes |= new
        arr = _interpolate_gaps(arr, new) if replace == "linear" else np.where(new, np.nan, arr)
        k += k_step
    n_spikes = int(spikes.sum())
    n_valid = int(np.isfinite(np.asarray(x, dtype=np.float64)).sum())
    hard = n_valid > 0 and 100.0 * n_spikes / n_valid > sr_lim_hf
    return DespikeResult(
        values=arr,
        spikes=spikes,
        n_spikes=n_spikes,
        n_events=int(_runs(spikes)[0].size),
        n_passes=passes,
        hard_flag=bool(hard),
    )


def despike_mad(
    x: ArrayLike,
    *,
    q: float = 7.0,
    replace: Literal["linear", "nan"] = "nan",
    sr_lim_hf: float = 1.0,
) -> DespikeResult:
    """Median-absolute-deviation despiking after Mauder et al. (2013), eq. (1).

    A point ``x_i`` is a spike when ``x_i < Md - q * MAD / 0.6745`` or ``x_i > Md + q * MAD / 0.6745``, where ``Md``
    is the median of the period and ``MAD = median(|x_i - Md|)``; 0.6745 makes MAD/0.6745 the standard deviation of a
    Gaussian. Mauder et al. (2013) use ``q = 7``. One pass over the whole period (the series given).

    Parameters
    ----------
    x: series (any unit); NaN is ignored and kept.
    q: threshold in scaled MADs (Mauder et al. 2013: 7).
    replace: ``"nan"`` (default) or ``"linear"`` interpolation across the spikes.
    sr_lim_hf: accepted spikes in percent for ``hard_flag``.
    """
    arr = np.asarray(x, dtype=np.float64).copy()
    if arr.ndim != 1:
        raise ValueError("despike_mad expects a 1-D series")
    valid = np.isfinite(arr)
    if not valid.any():
        return DespikeResult(arr, np.zeros(arr.size, dtype=bool), 0, 0, 1, False)
    md = float(np.median(arr[valid]))
    mad = float(np.median(np.abs(arr[valid] - md)))
    half = q * mad / 0.6745
    spikes = valid & ((arr < md - half) | (arr > md + half))
    out = _interpolate_gaps(arr, spikes) if replace == "linear" else np.where(spikes, np.nan, arr)
    n_spikes = int(spikes.sum())
    hard = 100.0 * n_spikes / int(valid.sum()) > sr_lim_hf
    return DespikeResult(out, spikes, n_spikes, int(_runs(spikes)[0].size), 1, bool(hard))


def absolute_limits(x: ArrayLike, lower: float, upper: float) -> NDArray[np.bool_]:
    """Plausibility-range test (Vickers & Mahrt 1997, section 4c "absolute limits"): True where ``x`` is outside
    ``[lower, upper]`` (same unit as ``x``; see :data:`EDDYPRO_ABSOLUTE_LIMITS`). NaN is not flagged."""
    arr = np.asarray(x, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return (arr < lower) | (arr > upper)
