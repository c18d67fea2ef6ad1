"""Separating fluctuations from the mean (Reynolds decomposition); methods as EddyPro names them.

* block average: x' = x − x̄ (Gash & Culf 1996);
* linear: one least-squares line per window of ``timeconst`` seconds (Gash & Culf 1996; Rannik & Vesala 1999);
* running mean: centred moving average over ``timeconst`` (McMillen 1988, moving average form);
* exponentially weighted running mean: x̄ᵢ = α x̄ᵢ₋₁ + (1 − α) xᵢ, α = exp(−Δt/τ) (McMillen 1988, eq. 5).

All functions take one series (any unit), NaN for missing records, and return the fluctuations in the same unit,
NaN where the input was NaN. They are applied after rotation and time-lag compensation (EDDYPRO-REFERENCE.md).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray


def block_average(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """x' = x − x̄, the mean over the valid records (Gash & Culf 1996)."""
    return x - np.nanmean(x)


def linear(x: NDArray[np.float64], window_records: int) -> NDArray[np.float64]:
    """Subtract one least-squares straight line per consecutive window of ``window_records`` records (EddyPro
    "linear detrending" with time constant = window length; Gash & Culf 1996). A last, partial window is fitted on
    its own."""
    n = x.size
    out = np.full(n, np.nan)
    step = max(int(window_records), 2)
    for start in range(0, n, step):
        seg = x[start:start + step]
        t = np.arange(seg.size, dtype=np.float64)
        ok = np.isfinite(seg)
        if ok.sum() < 2:
            out[start:start + step] = seg - np.nanmean(seg) if ok.any() else np.nan
            continue
        tt, yy = t[ok], seg[ok]
        tm, ym = tt.mean(), yy.mean()
        slope = float(np.dot(tt - tm, yy - ym) / np.dot(tt - tm, tt - tm))
        out[start:start + step] = seg - (ym + slope * (t - tm))
    return out


def running_mean(x: NDArray[np.float64], window_records: int) -> NDArray[np.float64]:
    """Subtract a centred moving average over ``window_records`` records (McMillen 1988). At the ends the window
    is truncated to the available records; NaN records are left out of the averages."""
    n = x.size
    ok = np.isfinite(x)
    xv = np.where(ok, x, 0.0)
    c = np.concatenate(([0.0], np.cumsum(xv)))
    k = np.concatenate(([0], np.cumsum(ok)))
    half = max(int(window_records), 1) // 2
    idx = np.arange(n)
    lo = np.clip(idx - half, 0, n)
    hi = np.clip(idx + half + 1, 0, n)
    cnt = k[hi] - k[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (c[hi] - c[lo]) / cnt
    return np.where(ok, x - mean, np.nan)


def exponential_running_mean(x: NDArray[np.float64], timeconst_s: float, fs_hz: float) -> NDArray[np.float64]:
    """Subtract an exponentially weighted running mean, x̄ᵢ = α x̄ᵢ₋₁ + (1 − α) xᵢ with α = exp(−1/(fs·τ))
    (McMillen 1988, eq. 5), started at the first valid value; NaN records keep the running mean unchanged."""
    alpha = math.exp(-1.0 / (fs_hz * timeconst_s))
    out = np.full(x.size, np.nan)
    finite = np.flatnonzero(np.isfinite(x))
    if finite.size == 0:
        return out
    mean = float(x[finite[0]])
    vals = x.tolist()
    res = out.tolist()
    for i in range(int(finite[0]), x.size):
        xi = vals[i]
        if xi == xi:  # not NaN
            mean = alpha * mean + (1.0 - alpha) * xi
            res[i] = xi - mean
    return np.asarray(res, dtype=np.float64)
