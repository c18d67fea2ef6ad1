"""Friction-velocity (u*) threshold by the moving-point test, as ONEFlux runs it, with a seeded bootstrap.

Papale, D. et al. (2006): Towards a standardized processing of Net Ecosystem Exchange measured with eddy covariance
technique: algorithms and uncertainty estimation. Biogeosciences 3, 571-583, section 2.3 (the "moving point test",
after Reichstein et al. 2005, Glob. Change Biol. 11, 1424-1439). Pastorello, G. et al. (2020): The FLUXNET2015
dataset and the ONEFlux processing pipeline. Scientific Data 7, 225 ("USTAR threshold estimation", the MP variant).
Implementation followed: ONEFlux `oneflux_steps/ustar_mp` (`ustar.c`, `bootstrapping.c`, `main.c`, `types.h`;
read for the rules, nothing copied) and diive's port (`UstarMovingPointDetection`).

Rules (ONEFlux defaults, names of its constants in brackets):

1. Records: night (``SW_IN < 10`` W m-2, [SWIN_FOR_NIGHT]) with NEE, TA and USTAR present. Records with SW_IN
   missing or ≥ 10 count as "day" records.
2. Seasons: calendar quarters (months 1-3, 4-6, 7-9, 10-12) of the record's start time. Seasonal mode when night
   records + day records ≥ 3000 [MIN_VALUE_PERIOD]; otherwise one season of all nights when there are more than 160
   [MIN_VALUE_SEASON]; fewer than 7 × 20 night records: no estimate. When every season has fewer than
   7 × 100 night records, they are pooled into one season; a season with fewer is skipped.
3. Per season, the records are sorted by TA and cut into 7 classes of equal count [TA_CLASSES_COUNT]; a class
   boundary is moved forward past records of equal TA so that ties are never split. A TA class is used if it has at
   least 100 records [TA_CLASS_MIN_SAMPLE] and ``|r(TA, USTAR)| ≤ 0.5`` [CORRELATION_CHECK].
4. Per TA class, the records are sorted by USTAR and cut into 20 classes [USTAR_CLASSES_COUNT] the same way (a class
   that starts inside a run of ties takes the next value's run). Class means of USTAR and NEE. The class is skipped
   when the first USTAR class mean exceeds 0.2 m s-1 [FIRST_USTAR_MEAN_CHECK].
5. Forward mode 2 (ONEFlux's only mode on by default): the threshold is the mean USTAR of the first class i for which
   both ``NEE_i`` and ``NEE_{i+1}`` are ≥ ``plateau`` × the mean NEE of the following 10 classes (``i+1…i+10`` and
   ``i+2…i+11``, cut at the last class) [WINDOWS_SIZE_FOR_FORWARD_MODE_2, THRESHOLD_CHECK]. None found: no
   threshold for this class.
6. Season threshold = median of its TA classes' thresholds; annual threshold = the largest season threshold
   (Papale et al. 2006: the data are filtered with the most conservative value).
7. Bootstrap: draw as many records as the site-year has, with replacement, from all records (day and night), keep
   the night records with data, and repeat 1-6; ``n_bootstrap`` ≥ 100 draws from a seeded generator.

Choices: ``plateau`` is 1.0, ONEFlux's THRESHOLD_CHECK (Papale et al. 2006 write 99 %: pass 0.99 to get that;
REddyProc's default is 95 %, ``usControlUstarEst(plateauCrit = 0.95)``, with seasons starting in March, June,
September and December). ONEFlux's percentile check is off by default and not implemented. The reported
percentiles of the bootstrap are linear-interpolation percentiles (numpy's default, as diive reports them); ONEFlux's
own listing takes the sorted value at ``int(p·n) − 1``.

Units: USTAR m s-1, NEE µmol m-2 s-1, TA °C. Pure functions, numpy arrays in and out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "DEFAULT_SEASONS",
    "UstarError",
    "UstarResult",
    "ustar_threshold",
]

SWIN_FOR_NIGHT = 10.0
MIN_VALUE_PERIOD = 3000
MIN_VALUE_SEASON = 160
TA_CLASS_MIN_SAMPLE = 100
CORRELATION_CHECK = 0.5
FIRST_USTAR_MEAN_CHECK = 0.2
TA_CLASSES = 7
USTAR_CLASSES = 20
FORWARD_WINDOW = 10
FORWARD_N = 2
DEFAULT_SEASONS: tuple[tuple[int, ...], ...] = ((1, 2, 3), (4, 5, 6), (7, 8, 9), (10, 11, 12))


class UstarError(ValueError):
    """The record cannot give a u* threshold (too few night records); the message says what is missing."""


@dataclass(frozen=True)
class UstarResult:
    """u* threshold of one site-year (m s-1).

    ``threshold``: the annual threshold of the data themselves (NaN when none was found). ``season_thresholds``
    (per season) and ``class_thresholds`` (season × TA class), NaN where none. ``one_season``: the seasons were
    pooled. ``bootstrap``: the annual threshold of every bootstrap draw that found one (``n_bootstrap`` draws were
    made); ``bootstrap_seasons``: draws × seasons (NaN where a draw found none). ``n_night``: night records used.
    """

    threshold: float
    season_thresholds: NDArray[np.float64]
    class_thresholds: NDArray[np.float64]
    seasons: tuple[tuple[int, ...], ...]
    one_season: bool
    n_night: int
    n_bootstrap: int
    bootstrap: NDArray[np.float64]
    bootstrap_seasons: NDArray[np.float64]
    plateau: float = 1.0
    notes: list[str] = field(default_factory=list)

    def summary(self, values: NDArray[np.float64] | None = None) -> dict[str, float]:
        """mean, sd, p05, p50, p95 and the number of draws of ``values`` (default: the annual bootstrap)."""
        vals = self.bootstrap if values is None else values[np.isfinite(values)]
        if vals.size == 0:
            return {"mean": np.nan, "sd": np.nan, "p05": np.nan, "p50": np.nan, "p95": np.nan, "n": 0.0}
        p05, p50, p95 = np.percentile(vals, [5.0, 50.0, 95.0])
        return {"mean": float(vals.mean()), "sd": float(vals.std(ddof=1)) if vals.size > 1 else np.nan,
                "p05": float(p05), "p50": float(p50), "p95": float(p95), "n": float(vals.size)}

    def percentile(self, q: float) -> float:
        """The ``q`` % percentile (0-100) of the annual bootstrap thresholds (NaN without draws)."""
        return float(np.percentile(self.bootstrap, q)) if self.bootstrap.size else float("nan")


def _class_ends(values: NDArray[np.float64], n_classes: int, adopt: bool) -> list[tuple[int, int]]:
    """ONEFlux's equal-count classes of sorted ``values`` with tie extension: (start, end) inclusive, (-1, -1) for
    a class never reached.

    When the previous class's ties ran past this class's nominal end, ONEFlux's USTAR loop (``adopt``) extends this
    class over the next run of equal values, while its TA loop leaves the class empty (end = start - 1) and lets
    the next class start at the same record."""
    n = values.size
    size = n // n_classes
    run_end = np.searchsorted(values, values, side="right") - 1  # last index of each record's tie run
    bounds = [(-1, -1)] * n_classes
    end = -1
    complete = True
    for i in range(n_classes - 1):
        start = end + 1
        if start >= n:
            complete = False
            break
        nominal = min(size * (i + 1) - 1, n - 1)
        if nominal >= start:
            end = int(run_end[nominal])
        elif adopt:
            end = int(run_end[start])
        else:
            end = start - 1
        bounds[i] = (start, end)
    if complete and end + 1 < n:
        bounds[n_classes - 1] = (end + 1, n - 1)
    return bounds


def _forward_mode(ustar_mean: NDArray[np.float64], nee_mean: NDArray[np.float64], plateau: float) -> float:
    """ONEFlux forward mode with n = 2, window 10: the first class whose NEE and the next class's NEE both reach
    ``plateau`` × the mean of their following 10 classes. NaN when none does."""
    k = nee_mean.size
    cum = np.concatenate(([0.0], np.cumsum(nee_mean)))
    starts = np.arange(1, k + 1)
    stops = np.minimum(starts + FORWARD_WINDOW, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        ahead = (cum[stops] - cum[starts]) / (stops - starts)  # mean of classes j+1 … j+10 for class j; NaN at the end
    ok = nee_mean >= ahead * plateau  # False where the window is empty (NaN)
    for i in range(k - FORWARD_N + 1):
        if ok[i] and ok[i + 1]:
            return float(ustar_mean[i])
    return float("nan")


def _season_threshold(nee: NDArray[np.float64], ta: NDArray[np.float64], ustar: NDArray[np.float64],
                      plateau: float) -> NDArray[np.float64]:
    """Thresholds of the 7 TA classes of one season (NaN where none)."""
    out = np.full(TA_CLASSES, np.nan)
    order = np.argsort(ta, kind="stable")
    ta_s, u_s, nee_s = ta[order], ustar[order], nee[order]
    for c, (start, end) in enumerate(_class_ends(ta_s, TA_CLASSES, adopt=False)):
        if start < 0 or end - start + 1 < TA_CLASS_MIN_SAMPLE:
            continue
        t = ta_s[start:end + 1]
        u = u_s[start:end + 1]
        dt, du = t - t.mean(), u - u.mean()
        denom = np.sqrt((dt * dt).sum()) * np.sqrt((du * du).sum())
        if denom == 0.0 or abs(float((dt * du).sum()) / denom) > CORRELATION_CHECK:
            continue
        uorder = np.argsort(u, kind="stable")
        u_sorted = u[uorder]
        f_sorted = nee_s[start:end + 1][uorder]
        bounds = _class_ends(u_sorted, USTAR_CLASSES, adopt=True)
        u_mean = np.zeros(USTAR_CLASSES)
        f_mean = np.zeros(USTAR_CLASSES)
        cu = np.concatenate(([0.0], np.cumsum(u_sorted)))
        cf = np.concatenate(([0.0], np.cumsum(f_sorted)))
        for j, (s, e) in enumerate(bounds):
            if s >= 0 and e >= s:
                u_mean[j] = (cu[e + 1] - cu[s]) / (e - s + 1)
                f_mean[j] = (cf[e + 1] - cf[s]) / (e - s + 1)
        if u_mean[0] > FIRST_USTAR_MEAN_CHECK:
            continue
        out[c] = _forward_mode(u_mean, f_mean, plateau)
    return out


def _thresholds(nee: NDArray[np.float64], ta: NDArray[np.float64], ustar: NDArray[np.float64],
                season: NDArray[np.intp], n_day: int, n_seasons: int,
                plateau: float) -> tuple[NDArray[np.float64], bool] | None:
    """Season × TA-class thresholds of one (bootstrap) sample of night records; None when too few records."""
    n = nee.size
    if n < TA_CLASSES * USTAR_CLASSES:
        return None
    counts = np.bincount(season, minlength=n_seasons)
    one_season = False
    if n + n_day < MIN_VALUE_PERIOD:
        if n <= MIN_VALUE_SEASON:
            return None
        one_season = True
    elif n_seasons > 1 and np.all(counts < TA_CLASS_MIN_SAMPLE * TA_CLASSES):
        one_season = True
    table = np.full((n_seasons, TA_CLASSES), np.nan)
    if one_season:
        table[:] = _season_threshold(nee, ta, ustar, plateau)[None, :]
        return table, True
    for s in range(n_seasons):
        if counts[s] < TA_CLASS_MIN_SAMPLE * TA_CLASSES:
            continue
        m = season == s
        table[s] = _season_threshold(nee[m], ta[m], ustar[m], plateau)
    return table, False


def _season_medians(table: NDArray[np.float64]) -> NDArray[np.float64]:
    out = np.full(table.shape[0], np.nan)
    for s, row in enumerate(table):
        valid = row[np.isfinite(row)]
        if valid.size:
            out[s] = float(np.median(valid))
    return out


def ustar_threshold(nee: ArrayLike, ta: ArrayLike, ustar: ArrayLike, sw_in: ArrayLike, month: ArrayLike, *,
                    seasons: Sequence[Sequence[int]] = DEFAULT_SEASONS, n_bootstrap: int = 100, seed: int = 0,
                    plateau: float = 1.0) -> UstarResult:
    """u* threshold by ONEFlux's moving-point test with a seeded bootstrap (module docstring).

    ``nee`` (µmol m-2 s-1, NaN where missing or rejected, *before* any u* filtering), ``ta`` (°C), ``ustar``
    (m s-1), ``sw_in`` (W m-2): one value per record of the site-year; ``month``: 1-12, the month of each record's
    start. ``seasons``: groups of months. Raises :class:`UstarError` when the record has too few night records for
    any estimate.
    """
    f = np.asarray(nee, dtype=np.float64)
    t = np.asarray(ta, dtype=np.float64)
    u = np.asarray(ustar, dtype=np.float64)
    sw = np.asarray(sw_in, dtype=np.float64)
    mon = np.asarray(month)
    n_all = f.size
    for name, arr in (("ta", t), ("ustar", u), ("sw_in", sw), ("month", mon)):
        if arr.shape != (n_all,):
            raise ValueError(f"{name}: expected {n_all} values like nee, got shape {arr.shape}")
    groups = tuple(tuple(int(m) for m in g) for g in seasons)
    season_of_month = np.full(13, -1, dtype=np.intp)
    for s, g in enumerate(groups):
        season_of_month[list(g)] = s
    season = season_of_month[np.clip(mon.astype(np.intp), 0, 12)]
    with np.errstate(invalid="ignore"):
        night_sw = sw < SWIN_FOR_NIGHT
    night = night_sw & np.isfinite(f) & np.isfinite(t) & np.isfinite(u) & (season >= 0)
    day = ~night_sw  # SW_IN missing counts as "day", as in ONEFlux
    n_day = int(day.sum())
    n_seasons = len(groups)
    idx = np.flatnonzero(night)
    base = _thresholds(f[idx], t[idx], u[idx], season[idx], n_day, n_seasons, plateau)
    if base is None:
        raise UstarError(
            f"only {idx.size} night records (SW_IN < 10 W m-2 with NEE, TA and USTAR) in {n_all} records; the "
            f"moving-point test needs more than {MIN_VALUE_SEASON} (and {MIN_VALUE_PERIOD} records in all for "
            "seasons): give a u* threshold (--ustar VALUE) or a longer record")
    table, one_season = base
    medians = _season_medians(table)
    annual = float(np.nanmax(medians)) if np.isfinite(medians).any() else float("nan")
    notes: list[str] = []
    if one_season:
        notes.append("seasons pooled into one (too few night records per season)")
    if not np.isfinite(annual):
        notes.append("no u* class reached the plateau in any season: no threshold")

    rng = np.random.default_rng(seed)
    boot_seasons = np.full((n_bootstrap, n_seasons), np.nan)
    boot_annual = np.full(n_bootstrap, np.nan)
    for b in range(n_bootstrap):
        draw = rng.integers(0, n_all, n_all)
        draw_day = int(day[draw].sum())
        kept = np.sort(draw[night[draw]])
        res = _thresholds(f[kept], t[kept], u[kept], season[kept], draw_day, n_seasons, plateau)
        if res is None:
            continue
        med = _season_medians(res[0])
        boot_seasons[b] = med
        if np.isfinite(med).any():
            boot_annual[b] = np.nanmax(med)
    return UstarResult(annual, medians, table, groups, one_season, int(idx.size), n_bootstrap,
                       boot_annual[np.isfinite(boot_annual)], boot_seasons, plateau, notes)
