"""Flux footprint distances: Kljun et al. (2015) FFP and Kljun et al. (2004), crosswind-integrated.

Pure functions: floats in, :class:`FootprintDistances` / arrays out, no I/O. Distances in metres upwind of the tower.

* Kljun, N., Calanca, P., Rotach, M. W. & Schmid, H. P. (2015): A simple two-dimensional parameterisation for Flux
  Footprint Prediction (FFP). Geosci. Model Dev. 8, 3695-3713. Own implementation from the paper's equations:
  scaled distance ``X* = x / zm * (1 - zm / h) / (ln(zm / z0) - psi_M)`` (eqs. 5-7, with ``u(zm) k / u* =
  ln(zm/z0) - psi_M``, or ``u(zm) k / u*`` from a measured mean wind), crosswind-integrated footprint
  ``F* = a (X* - d)^b exp(-c / (X* - d))`` (eq. 14) with ``a = 1.4524, b = -1.9914, c = 1.4622, d = 0.1359``
  (eq. 17), peak ``X*_max = -c / b + d`` (eq. 20, ~0.87), distance of the R contribution
  ``X*_R = -c / ln(R) + d`` (eq. 25), stability function ``psi_M`` of eq. 5 (unstable: ``chi = (1 - 19 zm/L)^(1/4)``;
  stable: ``-5.3 zm / L``). The footprint starts at ``X* = d`` (``x_offset``).
  Validity (section 2.2): ``20 z0 < zm < h`` (entrainment height), ``u* > 0.1 m s-1``, ``zm / L >= -15.5``.
* Kljun, N., Calanca, P., Rotach, M. W. & Schmid, H. P. (2004): A simple parameterisation for flux footprint
  predictions. Boundary-Layer Meteorol. 112, 503-523. ``X* = (sigma_w / u*)^0.8 x / zm`` (eq. 6, alpha1 = 0.8),
  ``F* = a ((X* + d) / c)^b exp(b (1 - (X* + d) / c))`` (eq. 13) with ``b = 3.418`` and the roughness-dependent
  ``c = 4.277 (3.418 - ln z0)``, ``d = 1.685 (3.418 - ln z0)`` (eqs. 14-17); peak ``X*_max = c - d``. This is the
  model EddyPro labels "KJ" (footprint model 0). Cumulative distances come from a numerical integration of eq. 13
  from ``X* = -d``; ``x_offset`` is where the cumulative footprint reaches 1 %.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "KLJUN2015_A",
    "KLJUN2015_B",
    "KLJUN2015_C",
    "KLJUN2015_D",
    "FootprintDistances",
    "kljun2004_crosswind",
    "kljun2004_distances",
    "kljun2015_crosswind",
    "kljun2015_distances",
    "psi_m_kljun2015",
]

KLJUN2015_A = 1.4524
KLJUN2015_B = -1.9914
KLJUN2015_C = 1.4622
KLJUN2015_D = 0.1359
_K = 0.4  # von Karman constant used by Kljun et al. (2015)
_PERCENTS = (10, 20, 30, 40, 50, 60, 70, 80, 90)


@dataclass(frozen=True)
class FootprintDistances:
    """Upwind distances from the tower, m: ``x_peak`` (maximum of the crosswind-integrated footprint),
    ``x_offset`` (start of the footprint: Kljun 2015 ``X* = d``; Kljun 2004 1 % cumulative contribution) and
    ``x_r[R]`` for R = 10, 20, ..., 90 % cumulative contribution (EddyPro ``x_10%`` ... ``x_90%``). ``valid`` is
    False when the inputs are outside the model's stated range (values are still computed)."""

    x_peak: float
    x_offset: float
    x_r: dict[int, float]
    valid: bool


def psi_m_kljun2015(zm: float, obukhov_length: float) -> float:
    """Integrated stability correction for momentum, Kljun et al. (2015) eq. 5 (zm, L in m; dimensionless).

    Unstable (L < 0): ``chi = (1 - 19 zm/L)^(1/4)``,
    ``psi_M = ln((1 + chi^2)/2) + 2 ln((1 + chi)/2) - 2 atan(chi) + pi/2``. Stable (L > 0): ``psi_M = -5.3 zm/L``.
    Neutral (|L| infinite): 0.
    """
    if not math.isfinite(obukhov_length):
        return 0.0
    if obukhov_length < 0:
        chi = (1.0 - 19.0 * zm / obukhov_length) ** 0.25
        return math.log((1 + chi * chi) / 2) + 2 * math.log((1 + chi) / 2) - 2 * math.atan(chi) + math.pi / 2
    return -5.3 * zm / obukhov_length


def _kljun2015_scale(
    zm: float, h: float, ustar: float, obukhov_length: float, z0: float | None, umean: float | None
) -> float:
    """Metres per unit X*: ``zm (1 - zm/h)^-1 u(zm) k / u*`` (Kljun et al. 2015, eqs. 6-7 inverted)."""
    if umean is not None:
        shear = umean * _K / ustar
    elif z0 is not None:
        shear = math.log(zm / z0) - psi_m_kljun2015(zm, obukhov_length)
    else:
        raise ValueError("give z0 (m) or umean (m s-1)")
    if not 0 < zm < h:
        raise ValueError("need 0 < zm < h")
    return zm / (1.0 - zm / h) * shear


def kljun2015_crosswind(
    x: ArrayLike,
    *,
    zm: float,
    h: float,
    ustar: float,
    obukhov_length: float,
    z0: float | None = None,
    umean: float | None = None,
) -> NDArray[np.float64]:
    """Crosswind-integrated footprint ``f_y(x)``, m-1, Kljun et al. (2015) eqs. 14 and 17 (``f_y = F* / scale``).

    ``x``: upwind distances, m; ``zm``: measurement height above displacement, m; ``h``: boundary-layer height, m;
    ``ustar``: friction velocity, m s-1; ``obukhov_length``: L, m; ``z0``: roughness length, m, or ``umean``: mean
    wind at zm, m s-1. Zero upwind of the offset ``X* <= d``.
    """
    scale = _kljun2015_scale(zm, h, ustar, obukhov_length, z0, umean)
    xs = np.asarray(x, dtype=np.float64) / scale
    out = np.zeros_like(xs)
    pos = xs > KLJUN2015_D
    t = xs[pos] - KLJUN2015_D
    out[pos] = KLJUN2015_A * t**KLJUN2015_B * np.exp(-KLJUN2015_C / t)
    return out / scale


def kljun2015_distances(
    *,
    zm: float,
    h: float,
    ustar: float,
    obukhov_length: float,
    z0: float | None = None,
    umean: float | None = None,
) -> FootprintDistances:
    """Peak, offset and R % distances after Kljun et al. (2015) eqs. 20 and 25 (m; inputs as
    :func:`kljun2015_crosswind`). ``x_R = (-c / ln R + d) * scale``; ``x_peak = (-c / b + d) * scale``;
    ``x_offset = d * scale``."""
    scale = _kljun2015_scale(zm, h, ustar, obukhov_length, z0, umean)
    x_r = {p: (-KLJUN2015_C / math.log(p / 100.0) + KLJUN2015_D) * scale for p in _PERCENTS}
    valid = ustar > 0.1 and (obukhov_length > 0 or (obukhov_length < 0 and zm / obukhov_length >= -15.5))
    if z0 is not None:
        valid = valid and zm > 20.0 * z0
    return FootprintDistances(
        x_peak=(-KLJUN2015_C / KLJUN2015_B + KLJUN2015_D) * scale,
        x_offset=KLJUN2015_D * scale,
        x_r=x_r,
        valid=bool(valid),
    )


def _kljun2004_cd(z0: float) -> tuple[float, float, float]:
    if not z0 > 0:
        raise ValueError("z0 must be positive (m)")
    lz = 3.418 - math.log(z0)
    return 3.418, 4.277 * lz, 1.685 * lz


def kljun2004_crosswind(x: ArrayLike, *, sigma_w: float, ustar: float, zm: float, z0: float) -> NDArray[np.float64]:
    """Crosswind-integrated footprint, m-1, Kljun et al. (2004) eqs. 6 and 13-17, normalised numerically to 1.

    ``x``: upwind distances, m; ``sigma_w``: standard deviation of w, m s-1; ``ustar``: m s-1; ``zm``: measurement
    height above displacement, m; ``z0``: roughness length, m (the fit of eqs. 14-17 was made for z0 in m).
    """
    b, c, d = _kljun2004_cd(z0)
    scale = zm * (sigma_w / ustar) ** -0.8  # metres per unit X*
    xs = np.asarray(x, dtype=np.float64) / scale
    t = (xs + d) / c
    shape = np.where(t > 0, np.abs(t) ** b * np.exp(b * (1.0 - t)), 0.0)
    # integral over X* of t^b exp(b (1 - t)) = c e^b Gamma(b + 1) / b^(b + 1)
    norm = c * math.exp(b) * math.gamma(b + 1.0) / b ** (b + 1.0)
    return np.asarray(shape / norm / scale, dtype=np.float64)


def kljun2004_distances(*, sigma_w: float, ustar: float, zm: float, z0: float) -> FootprintDistances:
    """Peak, 1 % offset and R % distances (m) after Kljun et al. (2004) (inputs as :func:`kljun2004_crosswind`).

    ``x_peak = (c - d) zm (sigma_w/u*)^-0.8`` (maximum of eq. 13); the cumulative distances integrate eq. 13
    numerically (trapezoids on 200 000 steps from ``X* = -d`` to 60 c). Validity in Kljun et al. (2004):
    ``-200 <= zm/L <= 1``, ``u* >= 0.2 m s-1``, ``zm >= 1 m`` (not checkable here without L, only u* and zm).
    """
    b, c, d = _kljun2004_cd(z0)
    scale = zm * (sigma_w / ustar) ** -0.8
    xs = np.linspace(-d, 60.0 * c, 200_001)
    t = (xs + d) / c
    f = np.where(t > 0, np.abs(t) ** b * np.exp(b * (1.0 - t)), 0.0)
    cum = np.concatenate(([0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(xs))))
    cum /= cum[-1]
    x_r = {p: float(np.interp(p / 100.0, cum, xs)) * scale for p in _PERCENTS}
    return FootprintDistances(
        x_peak=(c - d) * scale,
        x_offset=float(np.interp(0.01, cum, xs)) * scale,
        x_r=x_r,
        valid=bool(ustar >= 0.2 and zm >= 1.0),
    )
