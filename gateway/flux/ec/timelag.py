"""Time-lag compensation between the anemometer and a gas analyser.

Covariance maximisation (Fan et al. 1990, J. Geophys. Res. 95, 16851; Rannik et al. 2016, Atmos. Meas. Tech. 9,
5163, "circular correlation" excluded): for each lag k (records) in the window, pair ``gas[i + k]`` with ``w[i]``
over the N − |k| overlapping records, remove the means of those pairs, and keep the k with the largest |covariance|.
The lagged series is then padded with missing values (EDDYPRO-REFERENCE.md), so covariances use the N − |k| valid
pairs. With a default lag, a maximum on the window edge is replaced by the default (EddyPro "covariance
maximisation with default"); without one it is kept.

Nominal closed-path lag: the time the sample needs to cross the intake tube and the cell,
(π d²/4 · L + V_cell) / Q (Ibrom et al. 2007, Agric. For. Meteorol. 147, 140, §2.3; LI-COR LI-7200 manual).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class LagResult:
    """Chosen lag in records and seconds, whether the default was used, and the covariance at that lag
    (units of w times gas)."""

    records: int
    seconds: float
    used_default: bool
    covariance: float


def shift(x: NDArray[np.float64], k: int) -> NDArray[np.float64]:
    """``y[i] = x[i + k]``, padded with NaN where ``i + k`` falls outside (k in records, may be negative)."""
    out = np.full(x.size, np.nan)
    if k >= 0:
        out[: x.size - k] = x[k:]
    else:
        out[-k:] = x[: x.size + k]
    return out


def lagged_covariances(w: NDArray[np.float64], gas: NDArray[np.float64], lags: range) -> NDArray[np.float64]:
    """Population covariance of ``w[i]`` with ``gas[i + k]`` for each k in ``lags``, over the overlapping valid
    pairs with their own means (units of w times gas; NaN where fewer than 2 pairs)."""
    n = w.size
    wc = w - np.nanmean(w)
    gc = gas - np.nanmean(gas)
    clean = bool(np.isfinite(wc).all() and np.isfinite(gc).all())
    out = np.full(len(lags), np.nan)
    for j, k in enumerate(lags):
        if abs(k) >= n - 1:
            continue
        a, b = (wc[: n - k], gc[k:]) if k >= 0 else (wc[-k:], gc[: n + k])
        if not clean:
            ok = np.isfinite(a) & np.isfinite(b)
            a, b = a[ok], b[ok]
        m = a.size
        if m < 2:
            continue
        out[j] = float(np.dot(a, b)) / m - (float(a.sum()) / m) * (float(b.sum()) / m)
    return out


def covariance_maximization(
    w: NDArray[np.float64],
    gas: NDArray[np.float64],
    fs_hz: float,
    min_lag_s: float,
    max_lag_s: float,
    default_lag_s: float | None = None,
) -> LagResult:
    """Lag that maximises |cov(w, gas)| in [min_lag_s, max_lag_s] (s), see the module docstring. With
    ``default_lag_s`` a maximum on the window edge (or no valid covariance) falls back to the default."""
    lo = round(min_lag_s * fs_hz)
    hi = round(max_lag_s * fs_hz)
    lags = range(lo, hi + 1)
    covs = lagged_covariances(w, gas, lags)
    if not np.isfinite(covs).any():
        k = round((default_lag_s or 0.0) * fs_hz)
        return LagResult(k, k / fs_hz, True, math.nan)
    j = int(np.nanargmax(np.abs(covs)))
    k = lags[j]
    if default_lag_s is not None and lo != hi and k in (lo, hi):
        kd = round(default_lag_s * fs_hz)
        cd = lagged_covariances(w, gas, range(kd, kd + 1))[0]
        return LagResult(kd, kd / fs_hz, True, float(cd))
    return LagResult(k, k / fs_hz, False, float(covs[j]))


def nominal_closed_path_lag(tube_length_cm: float, tube_diameter_mm: float, flow_l_min: float,
                            cell_volume_m3: float = 0.0) -> float:
    """Transit time in s through the intake tube and the cell: (π (d/2)² L + V_cell) / Q, with L in cm, d in mm,
    Q in L min-1, V_cell in m3 (Ibrom et al. 2007, §2.3). 0 when the flow is 0."""
    if flow_l_min <= 0:
        return 0.0
    volume = math.pi * (tube_diameter_mm * 1e-3 / 2.0) ** 2 * (tube_length_cm * 1e-2) + cell_volume_m3
    return volume / (flow_l_min * 1e-3 / 60.0)


@dataclass(frozen=True)
class LagWindow:
    """A gas's time-lag window and nominal (default) lag, s."""

    nominal_s: float
    min_s: float
    max_s: float


@dataclass(frozen=True)
class LagOptimisation:
    """The result of EddyPro's automatic time-lag optimisation: a window per gas, for H2O per RH class
    (``h2o_classes``: (RH low %, RH high %, window)), and the number of periods each rests on."""

    gases: dict[str, LagWindow]
    h2o_classes: list[tuple[float, float, LagWindow]]
    counts: dict[str, int]

    def window(self, gas: str, rh_percent: float) -> LagWindow | None:
        """The window of ``gas`` for a period with ``rh_percent`` (H2O by class, falling back to all periods)."""
        if gas == "h2o":
            for lo, hi, win in self.h2o_classes:
                if lo <= rh_percent < hi:
                    return win
        return self.gases.get(gas)


def plausible_window(lags_s: Sequence[float], pg_range: float) -> LagWindow | None:
    """Nominal lag = median of the lags found, window = median ± pg_range·MAD (MAD the median absolute deviation
    from the median), s (EddyPro's automatic time-lag optimisation, its "plausibility range" to_pg_range, a robust
    stand-in for reading the peak of an open-window run's lag histogram). None for no lags."""
    arr = np.asarray([x for x in lags_s if math.isfinite(x)], dtype=np.float64)
    if arr.size == 0:
        return None
    med = float(np.median(arr))
    mad = float(np.median(np.abs(arr - med)))
    return LagWindow(med, med - pg_range * mad, med + pg_range * mad)


def optimise_lags(lags: Sequence[dict[str, float]], rh: Sequence[float], *, pg_range: float = 1.5,
                  h2o_classes: int = 10, min_per_class: int = 5) -> LagOptimisation:
    """Automatic time-lag optimisation over many periods (EddyPro 7 Help, "Detecting and compensating for time
    lags": automatic optimisation): ``lags`` holds, per period, the lag (s) found by covariance maximisation in a
    wide window for each gas whose flux was large enough (others left out); ``rh`` the periods' RH in %.
    Each gas gets :func:`plausible_window` over all its periods; H2O also per RH class (``h2o_classes`` equal
    classes; a class with fewer than ``min_per_class`` periods uses the window of all periods), since sorption on
    the tube walls makes its lag grow with RH (Ibrom et al. 2007, §4; EddyPro to_h2o_nclass)."""
    names = sorted({g for row in lags for g in row})
    gases: dict[str, LagWindow] = {}
    counts: dict[str, int] = {}
    for g in names:
        values = [row[g] for row in lags if g in row]
        win = plausible_window(values, pg_range)
        if win is not None:
            gases[g] = win
            counts[g] = len(values)
    classes: list[tuple[float, float, LagWindow]] = []
    if "h2o" in gases:
        width = 100.0 / h2o_classes
        for k in range(h2o_classes):
            lo, hi = k * width, (k + 1) * width if k < h2o_classes - 1 else 100.0001
            values = [row["h2o"] for row, r in zip(lags, rh, strict=True) if "h2o" in row and lo <= r < hi]
            win = plausible_window(values, pg_range) if len(values) >= min_per_class else None
            classes.append((lo, hi, win or gases["h2o"]))
    return LagOptimisation(gases, classes, counts)
