"""Nighttime partitioning of NEE into ecosystem respiration (RECO_NT) and gross primary production (GPP_NT).

Method: Reichstein, M. et al. (2005) On the separation of net ecosystem exchange into assimilation and ecosystem
respiration: review and improved algorithm. Global Change Biology 11, 1424–1439 (section "Algorithm", eq. 2 and
Appendix A), with the window rules of REddyProc's implementation (``sMRFluxPartition``, ``fRegrE0fromShortTerm``,
``fOptimSingleE0``, ``sRegrRref``; Wutzler et al. 2018, Biogeosciences 15, 5015), which we follow where the paper
leaves room. Respiration model: Lloyd & Taylor (1994), Functional Ecology 8, 315–323, eq. 11::

    RECO = RREF · exp(E0 · (1/(Tref − T0) − 1/(T − T0)))        Tref = 288.15 K (15 °C), T0 = 227.13 K (−46.02 °C)

RECO, RREF, NEE, GPP in µmol CO2 m-2 s-1, temperatures in K inside (°C at the interface), E0 in K.

Steps (``d`` is REddyProc's day counter ``⌊i/48⌋`` of the 1-based record number i, records from local midnight):

1. **Night records for regression**: measured NEE (not gap-filled, u*-filtered), measured air temperature (fill
   quality 0), measured ``SW_IN ≤ 10`` W m-2 and potential radiation 0 (:func:`~gateway.flux.budget.solar.night_mask`).
2. **E0 from short-term windows**: window centres d = 8, 13, 18, … (every 5 days), each window the 15 days
   ``[d−7, d+7]``. A window is fitted when it holds more than 6 night records and their temperature range is at
   least 5 K. Least-squares fit of (RREF, E0); residuals outside their 5 % and 95 % quantiles (R type 7) are removed
   and the fit repeated ("trimmed"). The trimmed E0 is valid when ``E0 − SE > 30 K`` and ``E0 + SE < 350 K``
   (REddyProc's limits for air temperature; 450 K in the paper, 550 K for soil temperature). The mean of the three
   valid E0 with the smallest standard errors, rounded to 0.01 K, is the E0 of the whole record. Fewer than three
   valid windows: partitioning fails (REddyProc aborts with "Less than 3 valid values for E_0").
3. **RREF with E0 fixed**: window centres d = 4, 8, 12, … (every 4 days), each window the 7 days ``[d−3, d+3]``;
   with more than 2 night records, RREF is the least-squares slope through the origin of NEE against
   ``LloydTaylor(1, E0, T)``. Negative RREF are dropped. Each estimate sits at the rounded mean index of the records
   it used; RREF is interpolated linearly between them and held constant before the first and after the last.
4. ``RECO_NT = LloydTaylor(RREF, E0, TA_f)`` for every half-hour (gap-filled air temperature);
   ``GPP_NT = RECO_NT − NEE_f`` (gap-filled NEE).

Standard errors are those of the linearised least-squares fit, ``cov = s²·(JᵀJ)⁻¹`` with ``s² = SSE/(n − p)``, as
R's ``nls`` reports them. Fits are vectorised over all windows: for a fixed E0 the best RREF is linear, so E0 is found
on the profile sum of squares (grid 0–1000 K in 40 K steps, then golden-section search); an optimum on the edge of
that range is a failed fit (REddyProc's ``nls`` either fails there or yields an E0 its validity limits reject).

Where other implementations differ (measured on FR-Hes 2016 and DE-Tha 1998, docs/budget.md):

* hesseflux 5.0 (``nee2gpp(method='reichstein')``): night is ``SW_IN ≤ 10`` only (no potential-radiation
  condition); E0 windows are 14 days every 5 days from the first night record; outliers removed by a median
  absolute deviation test (z = 4.5) instead of 5/95 % residual trimming; E0 valid when ``0 < E0 < 450`` and
  ``SE/E0 < 0.5`` (the paper's criterion), with fall-backs to fewer than 3 windows; RREF in **non-overlapping
  4-day** windows (not 7-day windows every 4 days) bounded ≥ 0 and placed at the middle index of the window's night
  records.
* ONEFlux (``oneflux/partition/nighttime.py``, the FLUXNET2015 NT product): night ``SW_IN < 10`` and sun below the
  horizon from sunrise/sunset times; 14-day windows every 5 days; E0 valid when ``30 < E0 < 350`` (no SE
  condition); mean of the three smallest-SE estimates; RREF in 8-day windows every 4 days, floored at 1e-6.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gateway.flux.budget.solar import night_mask, potential_radiation

__all__ = [
    "T0_K",
    "TREF_K",
    "PartitionError",
    "lloyd_taylor",
    "partition_nighttime",
]

TREF_K = 288.15
"""Reference temperature of RREF, K (15 °C; REddyProc ``sMRFluxPartition`` default)."""
T0_K = 227.13
"""Lloyd & Taylor (1994) regression temperature T0, K (−46.02 °C)."""
CELSIUS_TO_K = 273.15

E0_WINDOW_HALF_DAYS = 7
E0_WINDOW_STEP_DAYS = 5
E0_MIN_RECORDS = 6  # a window needs *more* than this many night records
E0_MIN_TEMPERATURE_RANGE = 5.0
E0_TRIM_PERCENT = 5.0
E0_BEST_N = 3
RREF_WINDOW_HALF_DAYS = 3
RREF_WINDOW_STEP_DAYS = 4
RREF_MIN_RECORDS = 2  # more than this many
NIGHT_SW_IN_MAX = 10.0

_E0_GRID = np.linspace(0.0, 1000.0, 26)
_GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0


class PartitionError(ValueError):
    """Input that partitioning cannot work with (wrong shapes, an irregular time grid, out-of-range site)."""


def lloyd_taylor(
    rref: ArrayLike, e0: ArrayLike, t_k: ArrayLike, tref_k: float = TREF_K, t0_k: float = T0_K
) -> NDArray[np.float64]:
    """Lloyd & Taylor (1994, eq. 11) respiration: ``RREF·exp(E0·(1/(Tref−T0) − 1/(T−T0)))``.

    ``rref`` in flux units (µmol m-2 s-1) at ``tref_k``; ``e0`` in K; ``t_k`` in K. NaN where ``T ≤ T0``.
    """
    t = np.asarray(t_k, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        x = np.where(t > t0_k, 1.0 / (tref_k - t0_k) - 1.0 / (t - t0_k), np.nan)
        return np.asarray(np.asarray(rref, dtype=float) * np.exp(np.asarray(e0, dtype=float) * x), dtype=float)


# ---------------------------------------------------------------------------------------------------------------
# Shared helpers (also used by the daytime method)


def records_per_day(time_mid_utc_s: NDArray[np.float64]) -> int:
    """Records per day of a regular grid; :class:`PartitionError` if the grid is not regular and ascending."""
    t = np.asarray(time_mid_utc_s, dtype=float)
    if t.ndim != 1 or t.size < 2:
        raise PartitionError("time stamps must be a 1-D array of at least two periods (seconds UTC)")
    if not np.all(np.isfinite(t)):
        raise PartitionError("time stamps contain NaN; give every period its time (seconds UTC of the middle)")
    dt = np.diff(t)
    step = float(dt[0])
    if step <= 0 or not np.allclose(dt, step, rtol=0, atol=1e-3):
        raise PartitionError(
            "time stamps are not a regular ascending grid (sorted, no duplicates, no missing periods); "
            "put the record on a complete half-hourly grid with NaN for missing values first"
        )
    per_day = 86400.0 / step
    if abs(per_day - round(per_day)) > 1e-6:
        raise PartitionError(f"a period of {step} s does not divide a day; use 30- or 60-minute periods")
    return round(per_day)


def check_same_length(n: int, **arrays: NDArray[np.float64] | None) -> None:
    """:class:`PartitionError` naming the first array whose length is not ``n``."""
    for name, arr in arrays.items():
        if arr is not None and np.shape(arr) != (n,):
            raise PartitionError(f"{name} has shape {np.shape(arr)}, expected ({n},) like the time stamps")


def day_counter(n: int, per_day: int) -> NDArray[np.int64]:
    """REddyProc's day counter ``⌊i / per_day⌋`` of the 1-based record number ``i``."""
    return (np.arange(1, n + 1, dtype=np.int64)) // per_day


def pad_windows(
    indices: list[NDArray[np.int64]], *columns: NDArray[np.float64]
) -> tuple[NDArray[np.bool_], list[NDArray[np.float64]]]:
    """Stack per-window index lists into padded 2-D arrays (windows × max records), with a validity mask."""
    width = max((len(ix) for ix in indices), default=0)
    width = max(width, 1)
    mask = np.zeros((len(indices), width), dtype=bool)
    flat_ix = np.zeros((len(indices), width), dtype=np.int64)
    for w, ix in enumerate(indices):
        mask[w, : len(ix)] = True
        flat_ix[w, : len(ix)] = ix
    out = [np.where(mask, col[flat_ix], np.nan) for col in columns]
    return mask, out


@dataclass(frozen=True)
class LTFit:
    """Vectorised Lloyd–Taylor fits over windows (one entry per window)."""

    rref: NDArray[np.float64]
    e0: NDArray[np.float64]
    rref_se: NDArray[np.float64]
    e0_se: NDArray[np.float64]
    sse: NDArray[np.float64]
    n: NDArray[np.int64]
    ok: NDArray[np.bool_]


def _profile(y: NDArray[np.float64], x: NDArray[np.float64], e0: NDArray[np.float64]) -> NDArray[np.float64]:
    """Profile sum of squares over RREF for each window at E0 = ``e0`` (one value per window)."""
    f = np.exp(e0[:, None] * x)
    f = np.where(np.isfinite(y), f, 0.0)
    yz = np.where(np.isfinite(y), y, 0.0)
    sff = np.sum(f * f, axis=1)
    syf = np.sum(yz * f, axis=1)
    syy = np.sum(yz * yz, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(syy - syf * syf / sff, dtype=float)


def fit_lloyd_taylor(
    y: NDArray[np.float64], t_k: NDArray[np.float64], tref_k: float = TREF_K, t0_k: float = T0_K
) -> LTFit:
    """Least-squares fit of RREF and E0 in each row of padded arrays (NaN = no record).

    Vectorised profile search: E0 on a 0–1000 K grid (40 K steps), refined by golden-section search to 1e-3 K;
    RREF is then the linear least-squares solution. Standard errors from ``s²·(JᵀJ)⁻¹``. ``ok`` is False for fewer
    than 3 records, an optimum at the edge of the search range, or a singular Jacobian.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(np.isfinite(y) & (t_k > t0_k + 1.0), 1.0 / (tref_k - t0_k) - 1.0 / (t_k - t0_k), np.nan)
    y = np.where(np.isfinite(x), y, np.nan)
    x = np.where(np.isfinite(y), x, 0.0)
    nw = y.shape[0]
    n = np.sum(np.isfinite(y), axis=1)
    grid_sse = np.stack([_profile(y, x, np.full(nw, g)) for g in _E0_GRID], axis=0)
    grid_sse = np.where(np.isfinite(grid_sse), grid_sse, np.inf)
    best = np.argmin(grid_sse, axis=0)
    step = _E0_GRID[1] - _E0_GRID[0]
    lo = _E0_GRID[best] - step
    hi = _E0_GRID[best] + step
    c = hi - _GOLDEN * (hi - lo)
    d = lo + _GOLDEN * (hi - lo)
    fc = _profile(y, x, c)
    fd = _profile(y, x, d)
    while np.max(hi - lo) > 1e-3:
        left = fc < fd
        hi = np.where(left, d, hi)
        lo = np.where(left, lo, c)
        new_c = hi - _GOLDEN * (hi - lo)
        new_d = lo + _GOLDEN * (hi - lo)
        c_next = np.where(left, new_c, d)
        d_next = np.where(left, c, new_d)
        f_new = _profile(y, x, np.where(left, new_c, new_d))
        fc, fd = np.where(left, f_new, fd), np.where(left, fc, f_new)
        c, d = c_next, d_next
    e0 = 0.5 * (lo + hi)
    f = np.where(np.isfinite(y), np.exp(e0[:, None] * x), 0.0)
    yz = np.where(np.isfinite(y), y, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rref = np.sum(yz * f, axis=1) / np.sum(f * f, axis=1)
        resid = np.where(np.isfinite(y), yz - rref[:, None] * f, 0.0)
        sse = np.sum(resid * resid, axis=1)
        j_r = f
        j_e = rref[:, None] * x * f
        a = np.sum(j_r * j_r, axis=1)
        b = np.sum(j_r * j_e, axis=1)
        cc = np.sum(j_e * j_e, axis=1)
        det = a * cc - b * b
        s2 = sse / (n - 2)
        rref_se = np.sqrt(s2 * cc / det)
        e0_se = np.sqrt(s2 * a / det)
    edge = (best == 0) | (best == len(_E0_GRID) - 1)
    ok = (n >= 3) & ~edge & np.isfinite(rref_se) & np.isfinite(e0_se) & (det > 0)
    return LTFit(rref=rref, e0=e0, rref_se=rref_se, e0_se=e0_se, sse=sse, n=n.astype(np.int64), ok=ok)


def interpolate_at(n: int, positions: NDArray[np.int64], values: NDArray[np.float64]) -> NDArray[np.float64]:
    """Linear interpolation of ``values`` placed at record ``positions`` onto ``0..n-1``, constant beyond the ends
    (REddyProc ``fInterpolateGaps``)."""
    order = np.argsort(positions, kind="stable")
    return np.asarray(np.interp(np.arange(n, dtype=float), positions[order].astype(float), values[order]), dtype=float)


def distance_to_nearest(n: int, positions: NDArray[np.int64]) -> NDArray[np.int64]:
    """For each record 0..n-1 the distance in records to the nearest of ``positions``."""
    p = np.unique(positions)
    i = np.arange(n)
    k = np.clip(np.searchsorted(p, i), 1, max(p.size - 1, 1))
    before = p[np.clip(k - 1, 0, p.size - 1)]
    after = p[np.clip(k, 0, p.size - 1)]
    return np.asarray(np.minimum(np.abs(i - before), np.abs(after - i)), dtype=np.int64)


# ---------------------------------------------------------------------------------------------------------------


def _failed(n: int, message: str, extra: dict[str, NDArray] | None = None) -> dict[str, NDArray]:
    out: dict[str, NDArray] = {
        "RECO_NT": np.full(n, np.nan),
        "GPP_NT": np.full(n, np.nan),
        "RREF_NT": np.full(n, np.nan),
        "E0_NT": np.full(n, np.nan),
        "NT_QC": np.full(n, 3, dtype=np.int8),
        "NT_OK": np.array(False),
        "NT_MESSAGE": np.array(message),
    }
    if extra:
        out.update(extra)
    return out


def partition_nighttime(
    time_mid_utc_s: ArrayLike,
    nee: ArrayLike,
    nee_f: ArrayLike,
    ta_f: ArrayLike,
    sw_in: ArrayLike,
    lat: float,
    lon: float,
    utc_offset_h: float = 0.0,
    *,
    ta_f_qc: ArrayLike | None = None,
    e0_bounds: tuple[float, float] = (30.0, 350.0),
    min_temperature_range: float = E0_MIN_TEMPERATURE_RANGE,
    fixed_e0: float | None = None,
) -> dict[str, NDArray]:
    """Nighttime partitioning (Reichstein et al. 2005, as REddyProc implements it; module docstring).

    Inputs (one value per period of a regular, ascending grid that starts at local midnight):

    * ``time_mid_utc_s`` — middle of each period, seconds since 1970-01-01 UTC;
    * ``nee`` — measured NEE after u* filtering, NaN where missing or rejected (µmol m-2 s-1);
    * ``nee_f`` — gap-filled NEE (NEE_F), µmol m-2 s-1;
    * ``ta_f`` — gap-filled air temperature TA_F, °C; ``ta_f_qc`` its fill-quality flag (0 = measured; when given,
      only measured temperatures enter the regressions, as in REddyProc; None = all values are measured);
    * ``sw_in`` — *measured* incoming shortwave radiation SW_IN, W m-2, NaN where missing;
    * ``lat``, ``lon`` (degrees north/east), ``utc_offset_h`` (station standard time, hours ahead of UTC).

    Keyword options: ``e0_bounds`` (K) the validity limits of step 2, ``min_temperature_range`` (K) of a window;
    ``fixed_e0`` (K) skips step 2 and uses this E0 (REddyProc's ``debug$fixedE0``), e.g. to test another E0.

    Returns a dict of numpy arrays:

    * per period: ``RECO_NT``, ``GPP_NT`` (µmol m-2 s-1), ``RREF_NT`` (interpolated RREF at 15 °C), ``E0_NT`` (K),
      ``NIGHT_NT`` (bool, records used in the regressions), ``NT_QC`` (0 ok; 1 the nearest RREF estimate is more
      than 14 days away; 2 no air temperature, RECO/GPP NaN; 3 partitioning failed, all NaN);
    * scalars (0-d): ``E0`` and ``E0_SD`` (K), ``NT_OK`` (bool), ``NT_MESSAGE`` (str; why it failed, else "");
    * per E0 window: ``E0_WIN_DAY_START``, ``E0_WIN_DAY_END`` (REddyProc day counter), ``E0_WIN_N``,
      ``E0_WIN_TRANGE`` (K), ``E0_WIN`` and ``E0_WIN_SD`` (trimmed fit, K), ``E0_WIN_VALID``, ``E0_WIN_SELECTED``;
    * per RREF window: ``RREF_WIN_INDEX`` (record the estimate sits at), ``RREF_WIN``, ``RREF_WIN_SD``.

    Not enough data (no nights, fewer than three valid E0 windows, no RREF) gives NaN results with ``NT_OK`` False,
    ``NT_QC`` 3 and the reason in ``NT_MESSAGE`` — never a silent number. Malformed input raises
    :class:`PartitionError`.
    """
    t = np.asarray(time_mid_utc_s, dtype=float)
    per_day = records_per_day(t)
    n = t.size
    nee_a = np.asarray(nee, dtype=float)
    nee_f_a = np.asarray(nee_f, dtype=float)
    ta_a = np.asarray(ta_f, dtype=float)
    sw_a = np.asarray(sw_in, dtype=float)
    qc_a = None if ta_f_qc is None else np.asarray(ta_f_qc, dtype=float)
    check_same_length(n, nee=nee_a, nee_f=nee_f_a, ta_f=ta_a, sw_in=sw_a, ta_f_qc=qc_a)
    if not np.any(np.isfinite(ta_a)):
        return _failed(n, "air temperature TA_F is missing throughout; nighttime partitioning needs it")
    with np.errstate(invalid="ignore"):
        if np.nanmax(ta_a) > 70.0 or np.nanmin(ta_a) < -80.0:
            raise PartitionError("TA_F outside -80..70: air temperature must be in degrees Celsius")

    pot = potential_radiation(t, lat, lon, utc_offset_h)
    ta_measured = ta_a if qc_a is None else np.where(qc_a == 0, ta_a, np.nan)
    night = night_mask(sw_a, pot, NIGHT_SW_IN_MAX)
    usable = night & np.isfinite(nee_a) & np.isfinite(ta_measured)
    if not np.any(night):
        return _failed(n, "no night in the record (measured SW_IN <= 10 W m-2 with the sun below the horizon)")
    if np.count_nonzero(usable) <= E0_MIN_RECORDS:
        return _failed(n, f"only {np.count_nonzero(usable)} measured nighttime NEE records with air temperature")

    days = day_counter(n, per_day)
    usable_ix = np.flatnonzero(usable)
    usable_days = days[usable_ix]
    t_k = ta_measured + CELSIUS_TO_K

    # Step 2: E0 from 15-day windows every 5 days.
    max_day = int(days[-1])
    centres = np.arange(E0_WINDOW_HALF_DAYS + 1, max_day + 1, E0_WINDOW_STEP_DAYS)
    win_ix: list[NDArray[np.int64]] = []
    starts = centres - E0_WINDOW_HALF_DAYS
    ends = centres + E0_WINDOW_HALF_DAYS
    for s, e in zip(starts, ends, strict=True):
        a, b = np.searchsorted(usable_days, [s, e + 1])
        win_ix.append(usable_ix[a:b])
    counts = np.array([len(ix) for ix in win_ix], dtype=np.int64)
    trange = np.array([np.ptp(t_k[ix]) if len(ix) else 0.0 for ix in win_ix])
    fitted = (counts > E0_MIN_RECORDS) & (trange >= min_temperature_range)
    e0_win = np.full(len(centres), np.nan)
    e0_sd = np.full(len(centres), np.nan)
    if fixed_e0 is None and np.any(fitted):
        fit_ix = [ix for ix, f in zip(win_ix, fitted, strict=True) if f]
        _, (y, tk) = pad_windows(fit_ix, nee_a, t_k)
        first = fit_lloyd_taylor(y, tk)
        # Trim residuals outside the 5 % / 95 % quantiles of the untrimmed fit (R quantile type 7), refit.
        with np.errstate(invalid="ignore", over="ignore"):
            resid = y - lloyd_taylor(first.rref[:, None], first.e0[:, None], tk)
        resid = np.where(first.ok[:, None], resid, np.nan)
        q_lo = np.full(len(fit_ix), np.nan)
        q_hi = np.full(len(fit_ix), np.nan)
        rows = np.flatnonzero(first.ok)
        if rows.size:
            q = np.nanquantile(resid[rows], [E0_TRIM_PERCENT / 100.0, 1.0 - E0_TRIM_PERCENT / 100.0], axis=1)
            q_lo[rows], q_hi[rows] = q[0], q[1]
        with np.errstate(invalid="ignore"):
            keep = (resid >= q_lo[:, None]) & (resid <= q_hi[:, None])
        trimmed = fit_lloyd_taylor(np.where(keep, y, np.nan), tk)
        good = first.ok & trimmed.ok
        e0_win[fitted] = np.where(good, trimmed.e0, np.nan)
        e0_sd[fitted] = np.where(good, trimmed.e0_se, np.nan)
    lo_b, hi_b = e0_bounds
    with np.errstate(invalid="ignore"):
        valid = (e0_win - e0_sd > lo_b) & (e0_win + e0_sd < hi_b)
    selected = np.zeros(len(centres), dtype=bool)
    if fixed_e0 is not None:
        valid[:] = False
    window_diag: dict[str, NDArray] = {
        "E0_WIN_DAY_START": starts,
        "E0_WIN_DAY_END": ends,
        "E0_WIN_N": counts,
        "E0_WIN_TRANGE": trange,
        "E0_WIN": e0_win,
        "E0_WIN_SD": e0_sd,
        "E0_WIN_VALID": valid,
        "E0_WIN_SELECTED": selected,
        "NIGHT_NT": usable,
    }
    if fixed_e0 is not None:
        e0, e0_se = float(fixed_e0), 0.0
    elif np.count_nonzero(valid) < E0_BEST_N:
        return _failed(
            n,
            f"only {np.count_nonzero(valid)} of {len(centres)} 15-day windows gave a valid E0 (need {E0_BEST_N}: "
            f"more than {E0_MIN_RECORDS} measured night records, a temperature range of at least "
            f"{min_temperature_range:g} K, and {lo_b:g} < E0 ± SE < {hi_b:g} K)",
            window_diag,
        )
    else:
        valid_ix = np.flatnonzero(valid)
        best = valid_ix[np.argsort(e0_sd[valid_ix], kind="stable")[:E0_BEST_N]]
        selected[best] = True
        e0 = round(float(np.mean(e0_win[best])), 2)
        e0_se = float(np.mean(e0_sd[best]))

    # Step 3: RREF with E0 fixed, 7-day windows every 4 days.
    r_centres = np.arange(RREF_WINDOW_HALF_DAYS + 1, max_day + 1, RREF_WINDOW_STEP_DAYS)
    lt1 = lloyd_taylor(1.0, e0, t_k)
    r_pos: list[int] = []
    r_val: list[float] = []
    r_sd: list[float] = []
    for centre in r_centres:
        a, b = np.searchsorted(usable_days, [centre - RREF_WINDOW_HALF_DAYS, centre + RREF_WINDOW_HALF_DAYS + 1])
        ix = usable_ix[a:b]
        ix = ix[np.isfinite(lt1[ix])]
        if ix.size <= RREF_MIN_RECORDS:
            continue
        f = lt1[ix]
        yv = nee_a[ix]
        sff = float(np.dot(f, f))
        rref = float(np.dot(yv, f)) / sff
        resid = yv - rref * f
        sd = float(np.sqrt(np.dot(resid, resid) / (ix.size - 1) / sff))
        if rref < 0:
            continue
        # R's round() is half-to-even on the 1-based mean index, as numpy's round.
        r_pos.append(int(np.round(np.mean(ix) + 1.0)) - 1)
        r_val.append(rref)
        r_sd.append(sd)
    window_diag.update({"E0": np.array(e0), "E0_SD": np.array(e0_se)})
    if not r_val:
        return _failed(n, "no 7-day window gave a reference respiration RREF (more than 2 night records, RREF >= 0)",
                       window_diag)
    pos = np.asarray(r_pos, dtype=np.int64)
    rref_hh = interpolate_at(n, pos, np.asarray(r_val))
    reco = lloyd_taylor(rref_hh, e0, ta_a + CELSIUS_TO_K)
    gpp = reco - nee_f_a

    qc = np.zeros(n, dtype=np.int8)
    qc[distance_to_nearest(n, pos) > 14 * per_day] = 1
    qc[~np.isfinite(reco)] = 2
    out: dict[str, NDArray] = {
        "RECO_NT": reco,
        "GPP_NT": gpp,
        "RREF_NT": rref_hh,
        "E0_NT": np.full(n, e0),
        "NT_QC": qc,
        "NT_OK": np.array(True),
        "NT_MESSAGE": np.array(""),
        "RREF_WIN_INDEX": pos,
        "RREF_WIN": np.asarray(r_val),
        "RREF_WIN_SD": np.asarray(r_sd),
    }
    out.update(window_diag)
    return out
