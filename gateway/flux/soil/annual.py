"""The sum of a soil CO2 efflux series over a period (e.g. a year), gaps filled from soil temperature.

Method:

1. The period ``[start_s, end_s)`` is cut into slots of ``period_s`` (the interval one value stands for: 1800 s
   for a half-hourly gradient series, the closure interval for a chamber); each value falls into the slot its
   time stamp starts (or, for a value stamped at its end like a chamber closure, ends); a second value in one slot
   is averaged with the first.
2. Temperature response: Lloyd & Taylor (1994, Funct. Ecol. 8, 315-323, eq. 11),
   ``F = R10 · exp(E0 · (1/(Tref − T0) − 1/(T − T0)))`` with ``Tref = 283.15 K`` (10 °C) and ``T0 = 227.13 K``,
   fitted by least squares to ``ln F`` (linear in ``ln R10`` and ``E0``) over the measured slots with ``F > 0`` and a
   soil temperature. It needs at least ``min_fit`` values over at least 5 K.
3. Gaps: a slot without a value takes the response at its soil temperature; the temperature of a slot without one
   is interpolated linearly in time from the nearest measured temperatures up to ``max_ts_gap_s`` away. A slot
   still without a value makes the sum missing (NaN, with the reason), never a partial sum.
4. gC m-2 = Σ F · period_s · 12.011e-6 (µmol CO2 m-2 s-1 → g C m-2).

Uncertainty of the sum (1 σ, gC m-2), two terms in quadrature:

- systematic: the per-value uncertainty ``flux_unc`` of the measured values, added linearly (fully correlated):
  the gradient method's uncertainty is dominated by the choice of diffusivity model and by sensor calibration, which
  persist through the year (docs/soil-stems.md); a chamber's by its volume and area. A filled value carries the same
  relative systematic uncertainty as the measured ones on average (Σσ / Σ|F|).
- gap filling: the scatter of the measured values around the response, ``r = sqrt(exp(s²) − 1)`` of a filled value
  (``s`` the residual standard deviation of ``ln F``), fully correlated within one contiguous gap and independent
  between gaps, as the budget's gap-filling term (:mod:`gateway.flux.budget.aggregate`, term c).

Pure: numpy arrays in, :class:`EffluxSum` out, no I/O. Units: fluxes µmol CO2 m-2 s-1, temperatures °C, times s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["EffluxSum", "efflux_sum", "lloyd_taylor"]

FloatArray = NDArray[np.float64]
T_REF_K = 283.15
T0_K = 227.13
C_MOLAR_MASS = 12.011


def lloyd_taylor(t_c: ArrayLike, r10: float, e0: float) -> FloatArray:
    """Lloyd & Taylor (1994) eq. 11 at 10 °C reference: flux in the unit of ``r10`` at soil temperature ``t_c``
    (°C); ``e0`` in K."""
    t = np.asarray(t_c, dtype=np.float64) + 273.15
    with np.errstate(invalid="ignore", divide="ignore"):
        result: FloatArray = r10 * np.exp(e0 * (1.0 / (T_REF_K - T0_K) - 1.0 / (t - T0_K)))
    return result


@dataclass(frozen=True)
class EffluxSum:
    """``total_gc_m2`` (NaN with ``reason`` when it could not be computed) and its 1-σ ``unc_gc_m2`` =
    sqrt(``unc_systematic``² + ``unc_gapfill``²); ``n_slots`` in the period, ``n_measured``, ``n_filled``;
    the fitted response ``r10`` (µmol m-2 s-1) and ``e0`` (K) with ``resid_sd_log`` (NaN without a fit);
    ``slot_flux`` the value of every slot (measured or filled, NaN where neither) and ``slot_filled``."""

    total_gc_m2: float
    unc_gc_m2: float
    unc_systematic: float
    unc_gapfill: float
    n_slots: int
    n_measured: int
    n_filled: int
    r10: float
    e0: float
    resid_sd_log: float
    slot_flux: FloatArray
    slot_filled: NDArray[np.bool_]
    reason: str = ""


def efflux_sum(time_s: ArrayLike, flux: ArrayLike, flux_unc: ArrayLike, t_soil_c: ArrayLike | None, *,
               start_s: float, end_s: float, period_s: float, stamped_at_end: bool = False,
               max_ts_gap_s: float = 86400.0, min_fit: int = 20) -> EffluxSum:
    """Sum of a soil efflux series over ``[start_s, end_s)`` with gaps filled from soil temperature (module
    docstring). ``time_s`` ascending (s), the start of the interval each value stands for, or its end with
    ``stamped_at_end`` (a chamber closure); ``flux``, ``flux_unc`` µmol m-2 s-1; ``t_soil_c`` °C per value or None."""
    t = np.asarray(time_s, dtype=np.float64)
    f = np.asarray(flux, dtype=np.float64)
    u = np.asarray(flux_unc, dtype=np.float64)
    ts = np.full(t.size, np.nan) if t_soil_c is None else np.asarray(t_soil_c, dtype=np.float64)
    if not (f.shape == u.shape == ts.shape == t.shape):
        raise ValueError("time_s, flux, flux_unc and t_soil_c must have one value per record")
    if not (end_s > start_s and period_s > 0):
        raise ValueError("efflux_sum: end_s must be after start_s and period_s positive (seconds)")
    n = int(np.ceil((end_s - start_s) / period_s))
    if stamped_at_end:
        inside = (t > start_s) & (t <= end_s)
        slot = (np.ceil((t[inside] - start_s) / period_s) - 1).astype(np.intp)
    else:
        inside = (t >= start_s) & (t < end_s)
        slot = np.floor((t[inside] - start_s) / period_s).astype(np.intp)

    def slot_mean(values: FloatArray) -> FloatArray:
        ok = np.isfinite(values)
        total = np.bincount(slot[ok], weights=values[ok], minlength=n)
        count = np.bincount(slot[ok], minlength=n)
        with np.errstate(invalid="ignore"):
            return np.where(count > 0, total / np.maximum(count, 1), np.nan)

    sf, su, st = slot_mean(f[inside]), slot_mean(u[inside]), slot_mean(ts[inside])
    measured = np.isfinite(sf)
    gc = period_s * C_MOLAR_MASS * 1e-6
    nan = float("nan")
    r10 = e0 = sd_log = nan
    fit = measured & (sf > 0) & np.isfinite(st)
    if fit.sum() >= min_fit and np.ptp(st[fit]) >= 5.0:
        x = 1.0 / (T_REF_K - T0_K) - 1.0 / (st[fit] + 273.15 - T0_K)
        design = np.column_stack((np.ones(x.size), x))
        coef, *_ = np.linalg.lstsq(design, np.log(sf[fit]), rcond=None)
        resid = np.log(sf[fit]) - design @ coef
        r10, e0 = float(np.exp(coef[0])), float(coef[1])
        sd_log = float(np.sqrt(np.sum(resid**2) / max(resid.size - 2, 1)))
    filled = ~measured
    value = sf.copy()
    if filled.any():
        # soil temperature of the gaps: interpolated from measured temperatures no further than max_ts_gap_s away
        known = np.flatnonzero(np.isfinite(st))
        centre = np.arange(n, dtype=np.float64)
        if known.size and np.isfinite(r10):
            t_gap = np.interp(centre, known.astype(np.float64), st[known])  # the ends: nearest, if close enough
            pos = np.searchsorted(known, np.arange(n))
            prev_k = known[np.clip(pos - 1, 0, known.size - 1)]
            next_k = known[np.clip(pos, 0, known.size - 1)]
            dist = np.minimum(np.abs(centre - prev_k), np.abs(next_k - centre)) * period_s
            t_gap = np.where(np.isfinite(st), st, np.where(dist <= max_ts_gap_s, t_gap, np.nan))
            value[filled] = lloyd_taylor(t_gap[filled], r10, e0)
    n_meas, n_filled = int(measured.sum()), int(filled.sum())
    unfilled = ~np.isfinite(value)
    reason = ""
    if not measured.any():
        reason = "no measured value in the period"
    elif unfilled.any() and not np.isfinite(r10):
        reason = (f"{int(unfilled.sum())} of {n} slots without a value and no temperature response to fill them "
                  f"(needs {min_fit} positive values with soil temperature over ≥ 5 K)")
    elif unfilled.any():
        reason = (f"{int(unfilled.sum())} of {n} slots without a value and without a soil temperature within "
                  f"{max_ts_gap_s / 3600:.0f} h to fill them")
    if reason:
        return EffluxSum(nan, nan, nan, nan, n, n_meas, n_filled, r10, e0, sd_log, value, filled, reason)
    total = float(np.sum(value) * gc)
    rel_sys = float(np.nansum(su[measured]) / np.sum(np.abs(sf[measured]))) if np.any(sf[measured]) else 0.0
    sys_term = float(np.nansum(su[measured]) * gc + rel_sys * np.sum(np.abs(value[filled])) * gc)
    gf_term = 0.0
    if n_filled and np.isfinite(sd_log):
        r = float(np.sqrt(np.expm1(sd_log**2)))
        run_start = filled & ~np.concatenate(([False], filled[:-1]))
        ids = np.cumsum(run_start) * filled
        per_gap = np.bincount(ids, weights=np.where(filled, value * r * gc, 0.0))[1:]
        gf_term = float(np.sqrt(np.sum(per_gap**2)))
    return EffluxSum(total, float(np.hypot(sys_term, gf_term)), sys_term, gf_term, n, n_meas, n_filled, r10, e0,
                     sd_log, value, filled, "")
