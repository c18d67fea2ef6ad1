"""Half-hourly random uncertainty of NEE (``NEE_F_RANDUNC``) as ONEFlux estimates it.

Pastorello, G. et al. (2020): The FLUXNET2015 dataset and the ONEFlux processing pipeline for eddy covariance data.
Scientific Data 7, 225, section "Random uncertainty"; ONEFlux `nee_proc` (`randunc.c`, `info_hh.txt`).
The approach goes back to Hollinger & Richardson (2005, Tree Physiology 25, 873-885) and Richardson et al. (2006,
Agric. For. Meteorol. 136, 1-18): the random error is the spread of fluxes measured under the same conditions.

Two hierarchical methods:

1. For a *measured* record: the standard deviation (n - 1) of the measured fluxes within ±7 days at the same time of
   day ±1 h (the records ``i + d·n_day + k``, d in -7…7, k in -2…2) whose drivers are all present and similar as in
   MDS: ``|TA - TA_i| < 2.5 °C``, ``|VPD - VPD_i| < 5 hPa``, ``|SW_IN - SW_IN_i| < clip(SW_IN_i, 20, 50) W m-2``.
   More than 5 such values are needed (``samples_count > 5`` in ONEFlux). The record itself is one of them.
2. For a gap-filled record, or a measured one with too few similar values: the median of the method-1 uncertainties
   of the records within ±14 days whose flux lies within ±20 % of this record's (filled) flux, but at least
   ±2 µmol m-2 s-1.

Choices where ONEFlux's C code and its documentation differ (we follow the documentation, the stated intent):
the code's ±7-day loop starts one record early (offsets -1…+3 around the same time of day instead of -2…+2); we use
the symmetric ±2 records. ONEFlux uses the gap-filled drivers; we use the drivers passed in (the pipeline passes the
measured ones, so "similar conditions" are measured conditions).

Units: the flux's (µmol m-2 s-1 for NEE). Pure functions, numpy arrays in and out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["RandomUncertainty", "random_uncertainty"]

_CHUNK_ELEMENTS = 2_000_000


@dataclass(frozen=True)
class RandomUncertainty:
    """``randunc``: the random uncertainty per record (flux unit; NaN where neither method gives one).
    ``method``: 1 or 2 (NaN where none). ``n``: number of records the estimate came from (ONEFlux
    ``randUnc_n``)."""

    randunc: NDArray[np.float64]
    method: NDArray[np.float64]
    n: NDArray[np.float64]


def random_uncertainty(flux_filled: ArrayLike, measured: ArrayLike, sw_in: ArrayLike, ta: ArrayLike,
                       vpd: ArrayLike, *, steps_per_day: int = 48, window_days: int = 7,
                       median_window_days: int = 14, min_samples: int = 6) -> RandomUncertainty:
    """ONEFlux random uncertainty (methods 1 and 2, see the module docstring).

    ``flux_filled``: the gap-filled flux (µmol m-2 s-1). ``measured``: True where the flux value is a measurement
    (``NEE_F_QC == 0``). ``sw_in`` (W m-2), ``ta`` (°C), ``vpd`` (hPa): drivers, NaN where missing.
    """
    flux = np.asarray(flux_filled, dtype=np.float64)
    meas = np.asarray(measured, dtype=bool) & ~np.isnan(flux)
    sw = np.asarray(sw_in, dtype=np.float64)
    t = np.asarray(ta, dtype=np.float64)
    vp = np.asarray(vpd, dtype=np.float64)
    n = flux.size
    for name, arr in (("measured", meas), ("sw_in", sw), ("ta", t), ("vpd", vp)):
        if arr.shape != (n,):
            raise ValueError(f"{name}: expected {n} values like the flux, got shape {arr.shape}")
    rand = np.full(n, np.nan)
    method = np.full(n, np.nan)
    count = np.full(n, np.nan)

    # method 1
    usable = meas & ~np.isnan(sw) & ~np.isnan(t) & ~np.isnan(vp)
    offsets = (np.arange(-window_days, window_days + 1)[:, None] * steps_per_day
               + np.arange(-2, 3)[None, :]).ravel()
    targets = np.flatnonzero(meas)
    step = max(1, _CHUNK_ELEMENTS // offsets.size)
    for start in range(0, targets.size, step):
        tg = targets[start:start + step]
        idx = tg[:, None] + offsets[None, :]
        inside = (idx >= 0) & (idx < n)
        idx = np.clip(idx, 0, n - 1)
        tol = np.clip(sw[tg], 20.0, 50.0)
        mask = (inside & usable[idx]
                & (np.abs(t[idx] - t[tg][:, None]) < 2.5)
                & (np.abs(sw[idx] - sw[tg][:, None]) < tol[:, None])
                & (np.abs(vp[idx] - vp[tg][:, None]) < 5.0))
        k = mask.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            vals = flux[idx]
            mean = np.where(mask, vals, 0.0).sum(axis=1) / k
            dev = np.where(mask, vals - mean[:, None], 0.0)
            sd = np.sqrt((dev * dev).sum(axis=1) / (k - 1))
        ok = k >= min_samples
        rand[tg[ok]] = sd[ok]
        method[tg[ok]] = 1.0
        count[tg[ok]] = k[ok]

    # method 2: median of the method-1 values of similar fluxes nearby
    m1 = np.flatnonzero(method == 1.0)
    targets = np.flatnonzero(np.isnan(method) & ~np.isnan(flux))
    if m1.size and targets.size:
        half = median_window_days * steps_per_day
        lo = np.searchsorted(m1, targets - half, side="left")
        hi = np.searchsorted(m1, targets + half, side="left")
        width = int((hi - lo).max())
        if width > 0:
            m1_flux, m1_rand = flux[m1], rand[m1]
            cols = np.arange(width)
            step = max(1, _CHUNK_ELEMENTS // width)
            for start in range(0, targets.size, step):
                tg = targets[start:start + step]
                idx = lo[start:start + step, None] + cols[None, :]
                inside = idx < hi[start:start + step, None]
                idx = np.minimum(idx, m1.size - 1)
                value = flux[tg]
                margin = np.maximum(np.abs(value) * 0.2, 2.0)
                f = m1_flux[idx]
                mask = inside & (f >= (value - margin)[:, None]) & (f <= (value + margin)[:, None])
                k = mask.sum(axis=1)
                ranked = np.sort(np.where(mask, m1_rand[idx], np.inf), axis=1)
                rows = np.arange(tg.size)
                lower = ranked[rows, np.maximum((k - 1) // 2, 0)]
                upper = ranked[rows, np.maximum(k // 2, 0)]
                median = np.where(k % 2 == 1, lower, 0.5 * (lower + upper))
                ok = k > 0
                rand[tg[ok]] = median[ok]
                method[tg[ok]] = 2.0
                count[tg[ok]] = k[ok]
    return RandomUncertainty(rand, method, count)
