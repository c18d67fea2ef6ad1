"""CO2 storage flux below the eddy-covariance system (SC) and NEE = FC + SC.

Aubinet, M. et al. (2005): Comparing CO2 storage and advection conditions at night at different CARBOEUROFLUX sites.
Boundary-Layer Meteorology 116, 63-94 (eq. 2, the storage term as the time change of the column's CO2 content);
Finnigan, J. (2006): The storage term in eddy flux calculations. Agric. For. Meteorol. 136, 108-113 (the change
between the *means* of consecutive averaging periods, not of instantaneous values); Papale et al. (2006),
Biogeosciences 3, 571 (single-point approximation when no profile exists); Montagnani, L. et al. (2018): Estimating
the storage term in eddy covariance measurements: the ICOS methodology. Int. Agrophys. 32, 551-567 (profile
integration, ICOS practice).

Single level (one analyzer at the EC height ``zm``):

    SC_i = (c̄_{i+1} − c̄_{i−1}) / (2·Δt) · zm / Va          [µmol m-2 s-1]

with c̄ the period means of the CO2 mole fraction (µmol mol-1), Δt the period (s), and Va = R·T/p the molar volume
of air (m3 mol-1) from the period's TA (°C → K) and PA (kPa → Pa). The centred difference assigns the change over
the period to its middle (the change between the neighbouring means spans two periods); at the ends of the record,
or next to a gap, the one-sided difference of the two available means over one period is used.

Profile (levels at heights ``z_1 < … < z_k``, the lowest assumed to hold down to the ground): the column content per
area is ∫ c/Va dz by the trapezoidal rule over the levels, plus the lowest level × z_1; SC is its centred time
difference.

Pure functions, numpy arrays in and out. Missing values are NaN; SC is NaN where the CO2 needed is missing.
NEE = FC + SC where SC is available; where it is not, NEE is NaN (the caller decides whether FC alone may stand).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["R_GAS", "air_molar_volume", "nee_from_fc", "storage_profile", "storage_single_level"]

R_GAS = 8.314462618
"""Molar gas constant, J mol-1 K-1."""


def air_molar_volume(ta_c: ArrayLike, pa_kpa: ArrayLike) -> NDArray[np.float64]:
    """Molar volume of (moist) air Va = R·T/p in m3 mol-1 from TA (°C) and PA (kPa)."""
    t = np.asarray(ta_c, dtype=np.float64) + 273.15
    p = np.asarray(pa_kpa, dtype=np.float64) * 1000.0
    result: NDArray[np.float64] = R_GAS * t / p
    return result


def _time_derivative(content: NDArray[np.float64], period_s: float) -> NDArray[np.float64]:
    """Centred difference of the period means (per second), one-sided where a neighbour is missing."""
    n = content.size
    d = np.full(n, np.nan)
    if n < 2:
        return d
    prev = np.concatenate(([np.nan], content[:-1]))
    nxt = np.concatenate((content[1:], [np.nan]))
    centred = (nxt - prev) / (2.0 * period_s)
    forward = (nxt - content) / period_s
    backward = (content - prev) / period_s
    d = np.where(np.isfinite(centred), centred, np.where(np.isfinite(forward), forward, backward))
    return d


def storage_single_level(co2: ArrayLike, ta: ArrayLike, pa: ArrayLike, zm: float, *,
                         period_s: float = 1800.0) -> NDArray[np.float64]:
    """SC (µmol m-2 s-1) from the analyzer's period-mean CO2 (µmol mol-1) at the measurement height ``zm`` (m),
    with TA (°C) and PA (kPa) of each period; see the module docstring."""
    if not zm > 0:
        raise ValueError(f"zm={zm!r}: the measurement height must be positive, in metres")
    c = np.asarray(co2, dtype=np.float64)
    va = air_molar_volume(ta, pa)
    if va.shape != c.shape:
        raise ValueError(f"co2, ta and pa must have the same length (got {c.shape}, {va.shape})")
    content = c * zm / va  # µmol m-2 in the column below zm
    return _time_derivative(content, period_s)


def storage_profile(co2_levels: ArrayLike, heights: ArrayLike, ta: ArrayLike, pa: ArrayLike, *,
                    period_s: float = 1800.0) -> NDArray[np.float64]:
    """SC (µmol m-2 s-1) from a CO2 profile: ``co2_levels`` of shape (levels, periods) in µmol mol-1 at
    ``heights`` (m, ascending, the highest normally the EC height); TA (°C) and PA (kPa) per period (one value for
    the column). Trapezoidal integration over heights; the lowest level stands for the layer below it."""
    c = np.asarray(co2_levels, dtype=np.float64)
    z = np.asarray(heights, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != z.size:
        raise ValueError(f"co2_levels must be (levels, periods) with one row per height; got {c.shape} for "
                         f"{z.size} heights")
    if z.size == 0 or np.any(np.diff(z) <= 0) or z[0] <= 0:
        raise ValueError(f"heights {z.tolist()} must be positive and strictly ascending (m)")
    va = air_molar_volume(ta, pa)
    conc = c / va[None, :]  # µmol m-3
    column = conc[0] * z[0]
    if z.size > 1:
        column = column + (0.5 * (conc[1:] + conc[:-1]) * np.diff(z)[:, None]).sum(axis=0)
    return _time_derivative(column, period_s)


def nee_from_fc(fc: ArrayLike, sc: ArrayLike) -> NDArray[np.float64]:
    """NEE = FC + SC (µmol m-2 s-1), NaN where either is missing."""
    result: NDArray[np.float64] = np.asarray(fc, dtype=np.float64) + np.asarray(sc, dtype=np.float64)
    return result
