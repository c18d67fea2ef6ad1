"""Moment statistics of one series (any unit): mean, population variance, skewness and kurtosis
(non-excess; Vickers & Mahrt 1997, §4d use the same moments), over the valid records."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Moments:
    """mean (unit of x), variance (unit²), skewness and kurtosis (dimensionless; Gaussian: 0 and 3), n valid."""

    mean: float
    variance: float
    skewness: float
    kurtosis: float
    n: int


def moments(x: NDArray[np.float64], fluctuations: NDArray[np.float64] | None = None) -> Moments:
    """Moments of ``x``; when ``fluctuations`` (detrended x) is given, the central moments use it instead of
    x − x̄. Variance = mean(x'²); skewness = mean(x'³)/var^1.5; kurtosis = mean(x'⁴)/var²."""
    ok = np.isfinite(x)
    xv = x if ok.all() else x[ok]
    n = int(xv.size)
    if n == 0:
        return Moments(math.nan, math.nan, math.nan, math.nan, 0)
    mean = float(xv.mean())
    if fluctuations is None:
        d = xv - mean
    else:
        fv = fluctuations[np.isfinite(fluctuations)]
        d = fv - fv.mean()
    d2 = d * d
    var = float(d2.mean())
    if var <= 0.0:
        return Moments(mean, var, math.nan, math.nan, n)
    return Moments(mean, var, float((d2 * d).mean()) / var ** 1.5, float((d2 * d2).mean()) / var ** 2, n)
