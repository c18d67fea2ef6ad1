"""Flux footprint distances: Kljun et al. (2015) FFP, Kljun et al. (2004), Kormann & Meixner (2001) and Hsieh et al.
(2000), crosswind-integrated.

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
  model EddyPro labels "KJ" (footprint model 0). The offset (1 %) and R % distances are EddyPro's closed form
  (EddyPro Help, "Estimating the flux footprint", eqs. 6-121 and 6-122): ``X*_R = c L_R - d``, i.e. the argument
  ``(X* + d) / c`` of eq. 13 takes a fixed value ``L_R`` per contribution R (:data:`KLJUN2004_L_R`), not the exact
  quantile of eq. 13 (which lies 1-3 % away: :func:`kljun2004_cumulative_xstar`).
* Kormann, R. & Meixner, F. X. (2001): An analytical footprint model for non-neutral stratification. Boundary-Layer
  Meteorol. 99, 207-224. Power-law profiles ``u(z) = U z^m``, ``K(z) = kappa z^n`` (eq. 11); crosswind-integrated
  footprint ``f(x) = xi^mu x^-(1 + mu) exp(-xi / x) / Gamma(mu)`` (eq. 21) with ``r = 2 + m - n``,
  ``mu = (1 + m) / r`` and the flux length scale ``xi = U zm^r / (r^2 kappa)`` (eq. 19); exponents from the
  analytical match to Monin-Obukhov similarity at zm (eq. 36): ``m = u* phi_m / (k u)``, ``n = 1 / (1 + 5 zm/L)``
  (stable) or ``(1 - 24 zm/L) / (1 - 16 zm/L)`` (unstable), with ``phi_m``, ``phi_c`` of eqs. 33-34 and
  ``K = k u* zm / phi_c`` (eq. 32). Its cumulative footprint is ``Q(mu, xi / x)`` (regularised upper incomplete
  gamma function), so ``x_R = xi / Q^-1(mu, R)`` and the peak ``x_max = xi / (1 + mu)``.
* Hsieh, C.-I., Katul, G. & Chi, T. (2000): An approximate analytical model for footprint estimation of scalar fluxes
  in thermally stratified atmospheric flows. Adv. Water Resour. 23, 765-772. With the length scale
  ``zu = zm (ln(zm / z0) - 1 + z0 / zm)`` and ``a = D zu^P |L|^(1 - P) / k^2``: cumulative flux fraction
  ``exp(-a / x)`` (eq. 16), footprint ``a / x^2 exp(-a / x)`` (eq. 17), hence ``x_R = -a / ln R`` and the peak
  ``x_max = a / 2``; ``D, P = 0.28, 0.59`` (unstable, ``zu/L < -0.04``), ``0.97, 1`` (near neutral),
  ``2.44, 1.33`` (stable, ``zu/L > 0.04``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "KLJUN2004_L_R",
    "KLJUN2015_A",
    "KLJUN2015_B",
    "KLJUN2015_C",
    "KLJUN2015_D",
    "FootprintDistances",
    "hsieh2000_crosswind",
    "hsieh2000_distances",
    "kljun2004_crosswind",
    "kljun2004_cumulative_xstar",
    "kljun2004_distances",
    "kljun2015_crosswind",
    "kljun2015_distances",
    "kormann_meixner2001_crosswind",
    "kormann_meixner2001_distances",
    "kormann_meixner2001_parameters",
    "psi_m_kljun2015",
]

KLJUN2015_A = 1.4524
KLJUN2015_B = -1.9914
KLJUN2015_C = 1.4622
KLJUN2015_D = 0.1359
_K = 0.4  # von Karman constant used by Kljun et al. (2015)
_PERCENTS = (10, 20, 30, 40, 50, 60, 70, 80, 90)

#: Kljun et al. (2004): value of ``(X* + d) / c`` (the argument of eq. 13) at which R % of the flux is upwind
#: contained, as EddyPro's eq. 6-122 uses it (R = 1 gives its offset distance). The Help prints the equation as an
#: image; ``X*_R = c L_R - d`` with these values reproduces EddyPro 7's printed x_offset, x_10% ... x_90% and
#: FETCH_80 of the DE-HoH reference runs (R0-R3, V: 16 periods, several sigma_w/u*) to printed precision. They were
#: recovered from those outputs (spread over the periods <= 2e-6); rounded to three decimals (0.302, 0.602, 0.912,
#: 1.184, 1.502, 1.720, 2.054, likely the tabulated values) they would put the distances up to 1.5e-5 too far.
KLJUN2004_L_R: dict[int, float] = {
    1: 0.302000, 10: 0.601999, 30: 0.911995, 50: 1.183991, 70: 1.501988, 80: 1.719988, 90: 2.053985,
}


@dataclass(frozen=True)
class FootprintDistances:
    """Upwind distances from the tower, m: ``x_peak`` (maximum of the crosswind-integrated footprint),
    ``x_offset`` (start of the footprint: Kljun 2015 ``X* = d``; the others 1 % cumulative contribution) and
    ``x_r[R]`` for R % cumulative contribution (EddyPro ``x_10%`` ... ``x_90%``): R = 10, 20, ..., 90 for Kljun 2015,
    Kormann & Meixner 2001 and Hsieh et al. 2000; R = 10, 30, 50, 70, 80, 90 for Kljun 2004 (EddyPro's set).
    ``valid`` is False when the inputs are outside the model's stated range (values are still computed)."""

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


def kljun2004_cumulative_xstar(fraction: float, z0: float) -> float:
    """Scaled distance X* (dimensionless) holding ``fraction`` (0-1) of the normalised eq. 13 of Kljun et al. (2004),
    exactly: with ``t = (X* + d) / c`` the normalised footprint is a gamma density in ``b t`` of shape ``b + 1``, so
    ``X*_R = c P^-1(b + 1, R) / b - d`` (P the regularised lower incomplete gamma function). Not what EddyPro reports
    (see :func:`kljun2004_distances`); kept to show how far EddyPro's closed form is from the model's own integral."""
    from scipy.special import gammaincinv

    if not 0.0 < fraction < 1.0:
        raise ValueError("fraction must be in (0, 1)")
    b, c, d = _kljun2004_cd(z0)
    return float(c * gammaincinv(b + 1.0, fraction) / b - d)


def kljun2004_distances(*, sigma_w: float, ustar: float, zm: float, z0: float) -> FootprintDistances:
    """Peak, offset (1 %) and 10/30/50/70/80/90 % distances (m) after Kljun et al. (2004) as EddyPro reports them
    (inputs as :func:`kljun2004_crosswind`).

    ``x_peak = (c - d) zm (sigma_w/u*)^-0.8`` (maximum of eq. 13; EddyPro Help eq. 6-121);
    ``x_R = (c L_R - d) zm (sigma_w/u*)^-0.8`` with :data:`KLJUN2004_L_R` (EddyPro Help eq. 6-122). Validity in
    Kljun et al. (2004): ``-200 <= zm/L <= 1``, ``u* >= 0.2 m s-1``, ``zm >= 1 m`` (not checkable here without L,
    only u* and zm).
    """
    _b, c, d = _kljun2004_cd(z0)
    if not (sigma_w > 0 and ustar > 0 and zm > 0):
        raise ValueError("sigma_w, ustar and zm must be positive")
    scale = zm * (sigma_w / ustar) ** -0.8
    x_r = {p: (c * lr - d) * scale for p, lr in KLJUN2004_L_R.items() if p != 1}
    return FootprintDistances(
        x_peak=(c - d) * scale,
        x_offset=(c * KLJUN2004_L_R[1] - d) * scale,
        x_r=x_r,
        valid=bool(ustar >= 0.2 and zm >= 1.0),
    )


# ---------------------------------------------------------------------------------------------------------------
# Kormann & Meixner (2001)
# ---------------------------------------------------------------------------------------------------------------

def kormann_meixner2001_parameters(
    *, zm: float, ustar: float, obukhov_length: float, umean: float
) -> tuple[float, float]:
    """Shape ``mu`` (dimensionless) and flux length scale ``xi`` (m) of Kormann & Meixner (2001) eqs. 19 and 21,
    from the exponents of eq. 36 (module docstring).

    ``zm``: measurement height above displacement, m; ``ustar``: friction velocity, m s-1; ``obukhov_length``: L, m
    (``inf`` for neutral); ``umean``: mean horizontal wind speed at zm, m s-1.
    """
    if not (zm > 0 and ustar > 0 and umean > 0):
        raise ValueError("zm, ustar and umean must be positive")
    zl = zm / obukhov_length if math.isfinite(obukhov_length) and obukhov_length != 0 else 0.0
    if zl > 0:  # stable, eqs. 33-34
        phi_m = phi_c = 1.0 + 5.0 * zl
        n = 1.0 / (1.0 + 5.0 * zl)
    else:
        phi_m = (1.0 - 16.0 * zl) ** -0.25
        phi_c = (1.0 - 16.0 * zl) ** -0.5
        n = (1.0 - 24.0 * zl) / (1.0 - 16.0 * zl)
    m = ustar * phi_m / (_K * umean)
    big_u = umean / zm**m  # eq. 11
    kappa = _K * ustar * zm / phi_c / zm**n  # eqs. 11 and 32
    r = 2.0 + m - n
    if not r > 0:
        raise ValueError(f"Kormann & Meixner (2001): r = 2 + m - n = {r:.3g} <= 0 (m = {m:.3g}, n = {n:.3g})")
    return (1.0 + m) / r, big_u * zm**r / (r * r * kappa)


def kormann_meixner2001_crosswind(
    x: ArrayLike, *, zm: float, ustar: float, obukhov_length: float, umean: float
) -> NDArray[np.float64]:
    """Crosswind-integrated footprint ``f(x)``, m-1, Kormann & Meixner (2001) eq. 21 (inputs as
    :func:`kormann_meixner2001_parameters`; ``x`` upwind distances, m; zero for ``x <= 0``)."""
    mu, xi = kormann_meixner2001_parameters(zm=zm, ustar=ustar, obukhov_length=obukhov_length, umean=umean)
    xs = np.asarray(x, dtype=np.float64)
    out = np.zeros_like(xs)
    pos = xs > 0
    out[pos] = np.exp(mu * math.log(xi) - (1.0 + mu) * np.log(xs[pos]) - xi / xs[pos] - math.lgamma(mu))
    return out


def kormann_meixner2001_distances(
    *, zm: float, ustar: float, obukhov_length: float, umean: float
) -> FootprintDistances:
    """Peak ``xi / (1 + mu)``, 1 % offset and 10 ... 90 % distances (m) of Kormann & Meixner (2001): the cumulative
    footprint of eq. 21 up to x is ``Q(mu, xi / x)``, so ``x_R = xi / Q^-1(mu, R)`` (inputs as
    :func:`kormann_meixner2001_parameters`). The paper states no validity range checkable from these inputs, so
    ``valid`` is always True."""
    from scipy.special import gammainccinv

    mu, xi = kormann_meixner2001_parameters(zm=zm, ustar=ustar, obukhov_length=obukhov_length, umean=umean)

    def at(fraction: float) -> float:
        return float(xi / gammainccinv(mu, fraction))

    return FootprintDistances(
        x_peak=xi / (1.0 + mu), x_offset=at(0.01), x_r={p: at(p / 100.0) for p in _PERCENTS}, valid=True
    )


# ---------------------------------------------------------------------------------------------------------------
# Hsieh et al. (2000)
# ---------------------------------------------------------------------------------------------------------------

def _hsieh2000_scale(zm: float, z0: float, obukhov_length: float) -> float:
    """``a = D zu^P |L|^(1-P) / k^2`` in m (Hsieh et al. 2000, eqs. 16-17; module docstring)."""
    if not (zm > z0 > 0):
        raise ValueError("need zm > z0 > 0 (m)")
    zu = zm * (math.log(zm / z0) - 1.0 + z0 / zm)
    stability = zu / obukhov_length if math.isfinite(obukhov_length) and obukhov_length != 0 else 0.0
    if stability < -0.04:
        d, p = 0.28, 0.59
    elif stability > 0.04:
        d, p = 2.44, 1.33
    else:
        return 0.97 * zu / _K**2  # P = 1: L drops out
    return d * zu**p * abs(obukhov_length) ** (1.0 - p) / _K**2


def hsieh2000_crosswind(x: ArrayLike, *, zm: float, z0: float, obukhov_length: float) -> NDArray[np.float64]:
    """Crosswind-integrated footprint, m-1, Hsieh et al. (2000) eq. 17: ``a / x^2 exp(-a / x)``.

    ``x``: upwind distances, m (zero for ``x <= 0``); ``zm``: measurement height above displacement, m; ``z0``:
    roughness length, m; ``obukhov_length``: L, m (``inf`` for neutral).
    """
    a = _hsieh2000_scale(zm, z0, obukhov_length)
    xs = np.asarray(x, dtype=np.float64)
    out = np.zeros_like(xs)
    pos = xs > 0
    out[pos] = a / xs[pos] ** 2 * np.exp(-a / xs[pos])
    return out


def hsieh2000_distances(*, zm: float, z0: float, obukhov_length: float) -> FootprintDistances:
    """Peak ``a / 2``, 1 % offset and 10 ... 90 % distances ``-a / ln R`` (m) of Hsieh et al. (2000) eqs. 16-17
    (inputs as :func:`hsieh2000_crosswind`). The paper states no validity range checkable from these inputs, so
    ``valid`` is always True."""
    a = _hsieh2000_scale(zm, z0, obukhov_length)
    return FootprintDistances(
        x_peak=a / 2.0,
        x_offset=-a / math.log(0.01),
        x_r={p: -a / math.log(p / 100.0) for p in _PERCENTS},
        valid=True,
    )
