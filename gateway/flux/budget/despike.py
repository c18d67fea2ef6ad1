"""Spike detection in half-hourly NEE by the median of absolute deviations (Papale et al. 2006).

Papale, D. et al. (2006): Towards a standardized processing of Net Ecosystem Exchange measured with eddy covariance
technique: algorithms and uncertainty estimation. Biogeosciences 3, 571-583, section 2.2 ("Spike detection"):

- the second difference of each record, d_i = (NEE_i − NEE_i−1) − (NEE_i+1 − NEE_i)  (eq. 1), computed separately
  for daytime and nighttime records, so that the jump at dawn and dusk is not taken for a spike;
- in each window, Md = median(d) and MAD = median(|d − Md|)  (eq. 2);
- NEE_i is a spike when d_i < Md − z·MAD/0.6745 or d_i > Md + z·MAD/0.6745  (eq. 3); the paper tests z = 4, 5.5
  and 7.

The window: the paper applies eq. 2 to blocks of 13 days. Here the window is centred on each day in turn and moved by
one day (the window's statistics judge only the day in its middle), as hesseflux's ``madspikes`` does (nscan 15
days, nfill 1 day, z 7), which also gives each day series the first night record after dusk and the last before
dawn, and each night series the day records next to it, so that the records next to a change of day and night have a
second difference too. With ``window_days=15``, ``z=7`` this flags the same records as hesseflux 5.0 at FR-Hes 2016
(45) and DE-Tha 1998 (38) (tests/flux/budget/test_despike.py). Day: measured SW_IN > 10 W m-2 (REddyProc's and
hesseflux's threshold; the paper 20); a record without SW_IN is in neither series.

Pure: arrays in, a boolean array out (True = spike). NEE in µmol CO2 m-2 s-1 (any unit: the test is scale-free).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["MAD_TO_SD", "SWIN_FOR_DAY", "nee_spikes"]

MAD_TO_SD = 0.6745
"""MAD/0.6745 estimates the standard deviation of normally distributed values (Papale et al. 2006, eq. 3)."""
SWIN_FOR_DAY = 10.0
"""W m-2: measured SW_IN above it is day."""
_MIN_VALUES = 10
"""Second differences a window needs before its median and MAD are trusted."""


def _with_neighbours(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    return out


def nee_spikes(nee: NDArray[np.float64], sw_in: NDArray[np.float64], *, z: float, steps_per_day: int,
               window_days: int = 13) -> NDArray[np.bool_]:
    """Spikes in ``nee`` (module docstring). ``nee``, ``sw_in`` (W m-2): one value per record of a regular grid,
    NaN where missing. ``z``: the multiple of MAD/0.6745 beyond which a second difference is a spike (> 0).
    ``window_days``: the length of the window whose median and MAD judge its middle day."""
    if not z > 0.0:
        raise ValueError(f"z = {z}: the spike threshold must be a positive multiple of MAD/0.6745 (Papale 2006: 4-7)")
    if window_days < 1:
        raise ValueError(f"window_days = {window_days}: give at least one day")
    x = np.asarray(nee, dtype=np.float64)
    sw = np.asarray(sw_in, dtype=np.float64)
    n = x.size
    spikes = np.zeros(n, dtype=bool)
    if n < 3:
        return spikes
    known = np.isfinite(sw)
    with np.errstate(invalid="ignore"):
        day = known & (sw > SWIN_FOR_DAY)
    night = known & ~day
    window = window_days * steps_per_day
    for part in (_with_neighbours(day) & known, _with_neighbours(night) & known):
        values = np.where(part, x, np.nan)
        second = np.full(n, np.nan)
        second[1:-1] = 2.0 * values[1:-1] - values[:-2] - values[2:]
        for first in range(0, n, steps_per_day):
            last = min(first + steps_per_day, n)
            start = max(0, min(first + steps_per_day // 2 - window // 2, n - window))
            scan = second[start:start + window]
            scan = scan[np.isfinite(scan)]
            if scan.size < _MIN_VALUES:
                continue
            median = float(np.median(scan))
            mad = float(np.median(np.abs(scan - median)))
            if mad == 0.0:
                continue
            limit = z * mad / MAD_TO_SD
            judged = second[first:last]
            with np.errstate(invalid="ignore"):
                spikes[first:last] |= (judged < median - limit) | (judged > median + limit)
    return spikes
