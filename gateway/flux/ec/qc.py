"""Quality tests of Foken et al. (2004) and the 0/1/2 flag of Mauder & Foken (2004).

Foken, T., Göckede, M., Mauder, M., Mahrt, L., Amiro, B. D., Munger, J. W. (2004): Post-field data quality control.
In: Lee, Massman, Law (eds.), Handbook of Micrometeorology, Kluwer, 181-208 (steady-state test §9.3.2.1, integral
turbulence characteristics §9.3.2.2, Tables 9.3-9.6). Mauder, M., Foken, T. (2004): Documentation and instruction
manual of the eddy covariance software package TK2, Univ. Bayreuth, Arbeitsergebnisse 26 (flag policy 0/1/2).

Deviations are in percent and truncated to integers before classing, as EddyPro prints and uses them.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from gateway.flux.ec.constants import OMEGA_EARTH

#: Upper bounds (inclusive, integer %) of the Foken et al. (2004) classes 1..8; above the last bound: class 9.
CLASS_BOUNDS = (15, 30, 50, 75, 100, 250, 500, 1000)


def foken_class(deviation_pct: float) -> int:
    """Foken et al. (2004) class 1-9 of a deviation in % (Table 9.5); NaN → 9 (test not possible)."""
    if not math.isfinite(deviation_pct):
        return 9
    d = int(abs(deviation_pct))
    for cls, bound in enumerate(CLASS_BOUNDS, start=1):
        if d <= bound:
            return cls
    return 9


def pair_cov(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    """Population covariance over the records where both are valid, with the means of those records."""
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.all():
        aa, bb = a, b
    else:
        aa, bb = a[ok], b[ok]
    m = aa.size
    if m < 2:
        return math.nan
    return float(np.dot(aa - aa.mean(), bb - bb.mean())) / m


def steady_state_deviation(a: NDArray[np.float64], b: NDArray[np.float64], n_sub: int = 6) -> float:
    """Steady-state test (Foken & Wichura 1996; Foken et al. 2004, §9.3.2.1): |(mean of the covariances of
    ``n_sub`` equal sub-periods − covariance of the whole period) / covariance of the whole period|·100, in %."""
    n = a.size
    k = n // n_sub
    full = pair_cov(a, b)
    subs = [pair_cov(a[i * k:(i + 1) * k], b[i * k:(i + 1) * k]) for i in range(n_sub)]
    if not math.isfinite(full) or full == 0.0 or not all(math.isfinite(s) for s in subs):
        return math.nan
    return abs((sum(subs) / n_sub - full) / full) * 100.0


def steady_state_deviation_ustar(u: NDArray[np.float64], v: NDArray[np.float64], w: NDArray[np.float64],
                                 n_sub: int = 6) -> float:
    """Steady-state test for the momentum flux, on u* = (u'w'² + v'w'²)^¼: the sub-period covariances u'w' and v'w'
    are averaged first, then combined (the form that reproduces EddyPro's dev(w/u)); in %."""
    n = w.size
    k = n // n_sub
    full = (pair_cov(u, w) ** 2 + pair_cov(v, w) ** 2) ** 0.25
    uw = [pair_cov(u[i * k:(i + 1) * k], w[i * k:(i + 1) * k]) for i in range(n_sub)]
    vw = [pair_cov(v[i * k:(i + 1) * k], w[i * k:(i + 1) * k]) for i in range(n_sub)]
    sub = ((sum(uw) / n_sub) ** 2 + (sum(vw) / n_sub) ** 2) ** 0.25
    if not math.isfinite(full) or full == 0.0 or not math.isfinite(sub):
        return math.nan
    return abs((sub - full) / full) * 100.0


def coriolis_parameter(latitude_deg: float) -> float:
    """f = 2·Ω·sin φ, s-1."""
    return 2.0 * OMEGA_EARTH * math.sin(math.radians(latitude_deg))


def itc_model_w(zl: float, ustar: float, f: float) -> float:
    """Modelled σw/u* (Foken et al. 2004, Table 9.3; Thomas & Foken 2002 for −0.2 < z/L): 0.21·ln(z₊·|f|/u*) + 3.1
    with z₊ = 1 m for z/L > −0.2; 1.3·(1 − 2·z/L)^⅓ (Panofsky et al. 1977, as in Foken & Wichura 1996) for
    z/L ≤ −0.2."""
    if zl > -0.2:
        return 0.21 * math.log(abs(f) / ustar) + 3.1
    return 1.3 * (1.0 - 2.0 * zl) ** (1.0 / 3.0)


def itc_model_u(zl: float, ustar: float, f: float) -> float:
    """Modelled σu/u* (Foken et al. 2004, Table 9.3; Thomas & Foken 2002): 0.44·ln(z₊·|f|/u*) + 6.3 for
    z/L > −0.2; 4.15·|z/L|^⅛ for z/L ≤ −0.2."""
    if zl > -0.2:
        return 0.44 * math.log(abs(f) / ustar) + 6.3
    return 4.15 * abs(zl) ** 0.125


def itc_model_t(zl: float) -> float:
    """Modelled σT/|T*| (Foken et al. 2004, Table 9.4): |z/L|^(−1/3) for z/L < −1; |z/L|^(−1/4) for
    −1 ≤ z/L < −0.0625; 0.5·|z/L|^(−1/2) for −0.0625 ≤ z/L < 0.02; 1.4·|z/L|^(−1/4) for z/L ≥ 0.02."""
    a = abs(zl)
    if a == 0.0:
        return math.inf
    if zl < -1.0:
        return a ** (-1.0 / 3.0)
    if zl < -0.0625:
        return a ** -0.25
    if zl < 0.02:
        return 0.5 * a ** -0.5
    return 1.4 * a ** -0.25


def itc_deviation(model: float, measured: float) -> float:
    """ITC deviation |(model − measured)/model|·100, in % (Foken et al. 2004, eq. 9.21)."""
    if not (math.isfinite(model) and math.isfinite(measured)) or model == 0.0:
        return math.nan
    return abs((model - measured) / model) * 100.0


def mauder_foken_flag(st_class: int, itc_class: int) -> int:
    """Mauder & Foken (2004) flag: 0 if both classes ≤ 2, 1 if both ≤ 5, else 2."""
    worst = max(st_class, itc_class)
    if worst <= 2:
        return 0
    if worst <= 5:
        return 1
    return 2


def foken_flag(st_class: int, itc_class: int) -> int:
    """Foken et al. (2004) overall flag 1-9 (Table 9.6): the worse of the two classes."""
    return max(st_class, itc_class)
