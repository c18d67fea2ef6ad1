"""Dendrometer series: cleaning (outliers, jumps at resets/re-mounting, frost), the zero-growth split into growth
(GRO) and tree water deficit (TWD), daily statistics, and radius/circumference → diameter.

Units: time in s (UTC epoch), stem size changes in µm, temperatures in °C.

**Cleaning** (:func:`clean_dendrometer`), after the approach of treenetproc (Knüsel, Haeni, Zweifel et al. 2021,
Front. Plant Sci. 12, 699226, §2.3, "L2" processing), re-derived here:

1. The changes between consecutive valid samples are expressed as rates (µm h-1), so a gap does not look like a
   jump.
2. In blocks of ``window_days`` the typical spread of the rates is robust: thresholds ``q25 - tol·MAD`` and
   ``q75 + tol·MAD`` (MAD scaled to σ for normal data). During frost (air or stem temperature below
   ``frost_temp_c``) the thresholds are widened by ``frost_factor``, because freezing shrinks and thawing swells
   stems quickly (Zweifel & Häsler 2000) — treenetproc does the same (its ``frost_thr``).
3. **Outliers**: a change beyond the ``tol_out`` thresholds that is undone (the opposite change, back to within
   ``spike_return`` of the level before) within ``max_spike_samples`` samples → those samples are removed (NaN).
4. **Jumps**: a change beyond the ``tol_jump`` thresholds that is *not* undone (a dendrometer reset or re-mounting
   moves the reading by millimetres in one step) → every later value is shifted by minus the step, less the
   median change of one step (so the growth during that interval is kept).
5. **Frost**: samples during frost are flagged (``DENDRO_FROST``), never removed: frost shrinkage is real stem
   movement, but not water deficit or growth, and the zero-growth split should be read with that flag.

**Zero-growth concept** (Zweifel, Haeni, Buchmann & Eugster 2016, New Phytol. 211, 839-849; Zweifel 2016, Plant
Cell Environ. 39, 231-234): growth happens only while the stem is larger than ever before; ``GRO(t) = max_{s≤t}
R(s) - R(t0)``; the tree water deficit is the shrinkage below that line, ``TWD(t) = max_{s≤t} R(s) - R(t)`` ≥ 0
(:func:`zero_growth`).

**Daily statistics** (:func:`daily_stats`): per local day maximum, minimum, amplitude (max - min), maximum daily
shrinkage MDS (the largest fall below an earlier value of the same day; Deslauriers et al. 2007, Dendrochronologia
25, 113-124 use max - following min), and the daily radial increment (change of the daily maximum).

**Quantities** (:func:`to_diameter_change`): a point dendrometer measures radius, ΔD = 2·ΔR (concentric growth
assumed); a band dendrometer circumference, ΔD = ΔC/π; a diameter dendrometer ΔD directly.

Pure functions, numpy arrays in and out, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "DENDRO_FLAGS",
    "DailyStats",
    "DendroClean",
    "clean_dendrometer",
    "daily_stats",
    "to_diameter_change",
    "zero_growth",
]

FloatArray = NDArray[np.float64]
Quantity = Literal["radius", "circumference", "diameter"]

DENDRO_OUTLIER = 1
DENDRO_JUMP = 2
DENDRO_FROST = 4
DENDRO_MISSING = 8
DENDRO_FLAGS: dict[int, str] = {
    DENDRO_OUTLIER: "outlier removed (a spike undone within max_spike_samples)",
    DENDRO_JUMP: "jump corrected here (a reset or re-mounting: later values shifted)",
    DENDRO_FROST: "frost (temperature below frost_temp_c): shrinkage is frost, not water deficit",
    DENDRO_MISSING: "no value",
}
_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class DendroClean:
    """Cleaned series: ``value`` (µm, jumps removed, outliers NaN), ``flags`` per sample (bit mask of
    :data:`DENDRO_FLAGS`), ``jump_index`` (sample indices where a jump was removed) and ``jump_um`` (the removed
    step, µm), ``n_outliers``."""

    value: FloatArray
    flags: NDArray[np.int64]
    jump_index: NDArray[np.int64]
    jump_um: FloatArray
    n_outliers: int


def _block_thresholds(
    rate: FloatArray, block: NDArray[np.int64], tol: float, widen: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Per sample low/high rate thresholds from its block's quartiles and scaled MAD (NaN rates ignored)."""
    low = np.full(rate.size, -np.inf)
    high = np.full(rate.size, np.inf)
    for b in np.unique(block):
        sel = block == b
        r = rate[sel]
        r = r[np.isfinite(r)]
        if r.size < 10:
            continue
        q25, q50, q75 = np.quantile(r, [0.25, 0.5, 0.75])
        mad = _MAD_TO_SIGMA * np.median(np.abs(r - q50))
        mad = max(mad, 1e-6)
        low[sel] = q25 - tol * mad * widen[sel]
        high[sel] = q75 + tol * mad * widen[sel]
    return low, high


def clean_dendrometer(
    time_s: ArrayLike,
    value_um: ArrayLike,
    *,
    temperature_c: ArrayLike | None = None,
    tol_out: float = 10.0,
    tol_jump: float = 50.0,
    window_days: float = 10.0,
    max_spike_samples: int = 6,
    spike_return: float = 0.2,
    frost_temp_c: float = 0.0,
    frost_factor: float = 5.0,
) -> DendroClean:
    """Clean a dendrometer series (module docstring). ``time_s`` ascending s; ``value_um`` µm (NaN = missing);
    ``temperature_c``: air or stem temperature at the same times (°C) for the frost flag and wider thresholds
    (``None``: no frost handling, and a warning belongs in the caller's report). ``tol_out``/``tol_jump``: threshold
    multiples of the robust rate spread; ``spike_return``: fraction of the spike's step within which the value must
    come back to count as an outlier rather than a jump.
    """
    t = np.asarray(time_s, dtype=np.float64)
    v = np.asarray(value_um, dtype=np.float64).copy()
    if t.ndim != 1 or v.shape != t.shape:
        raise ValueError(f"time_s {t.shape} and value_um {v.shape} must be 1-D series of one length")
    if t.size and np.any(np.diff(t) <= 0):
        raise ValueError("time_s must be strictly increasing: sort the dendrometer series and drop duplicates")
    if tol_jump < tol_out:
        raise ValueError(f"tol_jump ({tol_jump}) must be >= tol_out ({tol_out}): a jump is a larger change")
    flags = np.where(np.isfinite(v), 0, DENDRO_MISSING).astype(np.int64)
    frost = np.zeros(t.size, dtype=bool)
    if temperature_c is not None:
        temp = np.asarray(temperature_c, dtype=np.float64)
        if temp.shape != t.shape:
            raise ValueError(f"temperature_c {temp.shape} must have the length of time_s {t.shape}")
        # a missing temperature keeps the last known state (frost persists through a logger gap)
        idx = np.where(np.isfinite(temp), np.arange(t.size), 0)
        np.maximum.accumulate(idx, out=idx)
        filled = temp[idx]
        frost = np.isfinite(filled) & (filled < frost_temp_c)
        flags |= np.where(frost, DENDRO_FROST, 0)
    valid = np.flatnonzero(np.isfinite(v))
    jump_index: list[int] = []
    jump_um: list[float] = []
    n_out = 0
    if valid.size < 3:
        return DendroClean(v, flags, np.array(jump_index, dtype=np.int64), np.array(jump_um), 0)
    widen = np.where(frost, frost_factor, 1.0)
    block = np.floor((t - t[0]) / (window_days * 86400.0)).astype(np.int64)

    # --- outliers: excursions beyond tol_out that come back ---
    vv = v[valid]
    step = np.diff(vv)
    hours = np.diff(t[valid]) / 3600.0
    rate = step / hours
    low, high = _block_thresholds(rate, block[valid[1:]], tol_out, widen[valid[1:]])
    beyond = np.flatnonzero((rate < low) | (rate > high))
    removed = np.zeros(valid.size, dtype=bool)
    for k in beyond.tolist():
        if removed[k + 1]:
            continue
        start_level = vv[k]
        size = step[k]
        for m in range(k + 1, min(k + 1 + max_spike_samples, int(valid.size) - 1)):
            if abs(vv[m + 1] - start_level) <= spike_return * abs(size) and np.sign(step[m]) == -np.sign(size):
                removed[k + 1 : m + 1] = True
                break
    n_out = int(removed.sum())
    out_idx = valid[removed]
    v[out_idx] = np.nan
    flags[out_idx] |= DENDRO_OUTLIER | DENDRO_MISSING

    # --- jumps: changes beyond tol_jump that stay ---
    valid = np.flatnonzero(np.isfinite(v))
    vv = v[valid]
    step = np.diff(vv)
    hours = np.diff(t[valid]) / 3600.0
    rate = step / hours
    low, high = _block_thresholds(rate, block[valid[1:]], tol_jump, widen[valid[1:]])
    finite_rate = rate[np.isfinite(rate)]
    typical = float(np.median(finite_rate)) if finite_rate.size else 0.0
    correction = np.zeros(valid.size)
    for k in np.flatnonzero((rate < low) | (rate > high)).tolist():
        shift = step[k] - typical * hours[k]
        correction[k + 1 :] -= shift
        jump_index.append(int(valid[k + 1]))
        jump_um.append(float(shift))
        flags[valid[k + 1]] |= DENDRO_JUMP
    v[valid] = vv + correction
    return DendroClean(v, flags, np.array(jump_index, dtype=np.int64), np.array(jump_um, dtype=np.float64), n_out)


def zero_growth(value_um: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Zero-growth split (Zweifel et al. 2016): ``(GRO, TWD)`` in µm. ``GRO`` = running maximum minus the first
    valid value (monotone, growth since the series start); ``TWD`` = running maximum minus the value (≥ 0). NaN
    values give NaN TWD; the running maximum carries over gaps."""
    v = np.asarray(value_um, dtype=np.float64)
    finite = np.isfinite(v)
    if not finite.any():
        return np.full(v.shape, np.nan), np.full(v.shape, np.nan)
    running = np.fmax.accumulate(np.where(finite, v, -np.inf))
    first = v[np.argmax(finite)]
    gro = np.where(np.isfinite(running), running - first, np.nan)
    twd = np.where(finite, running - v, np.nan)
    return gro, twd


@dataclass(frozen=True)
class DailyStats:
    """Per day (``day_start_s``, UTC epoch of local midnight): ``max``, ``min``, ``amplitude`` = max - min, ``mds``
    (maximum daily shrinkage: largest fall below an earlier value of the same day), ``increment`` (change of the
    daily maximum from the previous day), ``coverage`` (fraction of expected samples present); µm. Days below
    ``min_coverage`` are NaN."""

    day_start_s: FloatArray
    max: FloatArray
    min: FloatArray
    amplitude: FloatArray
    mds: FloatArray
    increment: FloatArray
    coverage: FloatArray


def daily_stats(
    time_s: ArrayLike, value_um: ArrayLike, *, utc_offset_s: float = 0.0, min_coverage: float = 0.8,
    step_s: float | None = None,
) -> DailyStats:
    """Daily statistics of a cleaned dendrometer series (module docstring); days in local time ``UTC +
    utc_offset_s``; ``step_s`` the logging interval (default: the median step)."""
    t = np.asarray(time_s, dtype=np.float64)
    v = np.asarray(value_um, dtype=np.float64)
    if t.size == 0:
        e = np.empty(0)
        return DailyStats(e, e, e, e, e, e, e)
    if v.shape != t.shape:
        raise ValueError(f"time_s {t.shape} and value_um {v.shape} must have one length")
    step = float(np.median(np.diff(t))) if step_s is None and t.size > 1 else (step_s or 600.0)
    day = np.floor((t + utc_offset_s) / 86400.0).astype(np.int64)
    d0 = int(day[0])
    day -= d0
    n_days = int(day[-1]) + 1
    ok = np.isfinite(v)
    count = np.bincount(day, weights=ok.astype(np.float64), minlength=n_days)
    dmax = np.full(n_days, -np.inf)
    dmin = np.full(n_days, np.inf)
    np.maximum.at(dmax, day[ok], v[ok])
    np.minimum.at(dmin, day[ok], v[ok])
    # segmented running maximum: offset each day far above the last so the accumulation restarts every day
    big = 10.0 * (np.nanmax(np.abs(v)) + 1.0) if ok.any() else 1.0
    shifted = np.where(ok, v, -np.inf) + day * big
    running = np.maximum.accumulate(shifted) - day * big
    drop = np.where(ok, running - v, -np.inf)
    mds = np.full(n_days, -np.inf)
    np.maximum.at(mds, day, drop)
    coverage = count / (86400.0 / step)
    good = coverage >= min_coverage
    dmax = np.where(good, dmax, np.nan)
    dmin = np.where(good, dmin, np.nan)
    mds = np.where(good, mds, np.nan)
    increment = np.concatenate([[np.nan], np.diff(dmax)])
    starts = (np.arange(n_days, dtype=np.float64) + d0) * 86400.0 - utc_offset_s
    return DailyStats(starts, dmax, dmin, dmax - dmin, mds, increment, coverage)


def to_diameter_change(change_um: ArrayLike, quantity: Quantity) -> FloatArray:
    """Stem diameter change, µm, from what the dendrometer measures: radius (ΔD = 2ΔR, concentric growth assumed),
    circumference (ΔD = ΔC/π) or diameter (unchanged)."""
    c = np.asarray(change_um, dtype=np.float64)
    if quantity == "radius":
        return 2.0 * c
    if quantity == "circumference":
        return c / np.pi
    if quantity == "diameter":
        return c.copy()
    raise ValueError(f"quantity must be 'radius' (point dendrometer), 'circumference' (band) or 'diameter'; got "
                     f"{quantity!r}")
