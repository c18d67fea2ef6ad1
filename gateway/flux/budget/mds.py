"""Marginal distribution sampling (MDS) gap filling, Reichstein et al. (2005), as REddyProc implements it.

Reichstein, M. et al. (2005): On the separation of net ecosystem exchange into assimilation and ecosystem
respiration: review and improved algorithm. Global Change Biology 11, 1424-1439, Appendix A ("Gap filling").
Wutzler, T. et al. (2018): Basic and extensible post-processing of eddy covariance flux data with REddyProc.
Biogeosciences 15, 5015-5030 (the reference implementation, `sEddyProc$sMDSGapFill`, `sFillLUT`, `sFillMDC`).

A gap is filled with the mean of the measured values of the same variable found in a time window under similar
meteorological conditions (look-up table, LUT) or, failing that, at the same time of day on neighbouring days (mean
diurnal course, MDC). The sequence of attempts, for a variable with all three drivers available
(REddyProc `sMDSGapFill`, steps 1-8):

====  ======================================  ===============  ======  ==========================
step  method                                  window            fmeth  quality class (fqc)
====  ======================================  ===============  ======  ==========================
1     LUT SW_IN, VPD, TA                      ±7 days           1      1
2     LUT SW_IN, VPD, TA                      ±14 days          1      2 (full window 28 d > 14)
3     LUT SW_IN only                          ±7 days           2      1
4     MDC (same time of day ±1 h)             same day          3      1
5     MDC                                     ±1, ±2 days       3      2
6     LUT SW_IN, VPD, TA                      ±21 … ±70 days    1      2 up to ±28 d, then 3
7     LUT SW_IN only                          ±14 … ±70 days    2      2 for ±14 d, then 3
8     MDC                                     ±7 … ±210 days    3      3
====  ======================================  ===============  ======  ==========================

Details that follow REddyProc (`R/EddyGapfilling.R`, read for the algorithm, nothing copied):

- Similar conditions: ``|x_j - x_gap| < tolerance`` (strict) for every driver, all drivers of the record present.
  Tolerances SW_IN 50 W m-2, VPD 5 hPa, TA 2.5 °C; the SW_IN tolerance is reduced at low radiation to
  ``max(min(50, SW_IN_gap), 20)`` W m-2 (Reichstein's PV-Wave code, not in the paper).
- A LUT window of ±D days spans the records ``gap - D·n_day … gap + D·n_day`` (inclusive); the MDC window of ±D days
  takes the records ``gap + d·n_day + k`` for d in -D…D and k in -2…2 (±1 h for half-hourly data).
- At least two values are needed; the filled value is their mean, ``fsd`` their standard deviation (n - 1),
  ``fnum`` their number. Only measured values are ever used, never values filled by an earlier step.
- Gaps longer than 60 days are not filled (left missing).
- Drivers: ``full`` when SW_IN, VPD and TA all have data, ``SW_IN only`` when only SW_IN has, else MDC only. When
  the variable to fill is itself one of the drivers it is dropped from the conditions (REddyProc: "prevents filling
  gaps with itself"), so TA and VPD are filled with LUT(SW_IN) + MDC and SW_IN with MDC alone (:func:`mds_fill_met`).

Units: whatever the variable's unit is (NEE in µmol m-2 s-1); SW_IN in W m-2, TA in °C, VPD in hPa.
Quality codes (FLUXNET2015 ``*_F_QC``): 0 measured, 1-3 the quality class above, NaN not filled.

Pure functions, numpy arrays in and out, no I/O. Vectorised: the candidate records of every gap are gathered at once
from the sorted positions of the usable records (binary search for each window's bounds), in chunks that bound
memory, so one step over all gaps of a year costs a few tens of milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "MdsResult",
    "mds_fill",
    "mds_fill_met",
]

SW_IN_TOLERANCE = 50.0
"""W m-2, Reichstein et al. (2005) Appendix A."""
SW_IN_TOLERANCE_MIN = 20.0
"""W m-2, lower bound of the reduced SW_IN tolerance at low radiation (REddyProc, after Reichstein's PV-Wave code)."""
TA_TOLERANCE = 2.5
"""°C."""
VPD_TOLERANCE = 5.0
"""hPa."""
LONG_GAP_DAYS = 60
"""Gaps longer than this are left unfilled (REddyProc `sFillInit`)."""
MDC_HALF_WIDTH = 2
"""Records either side of the same time of day in the mean diurnal course (±1 h for half-hourly data)."""

# The element budget of one vectorised gather (targets x candidates); ~16 MB per float64 array.
_CHUNK_ELEMENTS = 2_000_000

METHOD_LUT_ALL = 1
METHOD_LUT_SW_IN = 2
METHOD_MDC = 3


@dataclass(frozen=True)
class MdsResult:
    """Result of one MDS run (REddyProc suffixes in brackets).

    ``filled`` (``_f``): measured values, gaps filled (NaN where it could not be filled). ``qc`` (``_fqc``): 0 for
    measured, 1/2/3 for the quality class of a filled value, NaN where unfilled. ``fsd`` (``_fsd``) and ``fnum``
    (``_fnum``): standard deviation and number of the values averaged into a filled value (NaN for measured, unless
    ``fill_all``).
    ``method`` (``_fmeth``): 1 LUT with three drivers, 2 LUT with SW_IN only, 3 MDC. ``window_days`` (``_fwin``):
    full window length in days. ``drivers``: ``"full"``, ``"sw_in"`` or ``"none"`` (which scheme ran).
    """

    filled: NDArray[np.float64]
    qc: NDArray[np.float64]
    fsd: NDArray[np.float64]
    fnum: NDArray[np.float64]
    method: NDArray[np.float64]
    window_days: NDArray[np.float64]
    drivers: str

    @property
    def n_gaps(self) -> int:
        """Records that were missing before filling."""
        return int(np.count_nonzero(self.qc != 0))

    @property
    def n_unfilled(self) -> int:
        """Records still missing after filling (long gaps, no data at all)."""
        return int(np.count_nonzero(np.isnan(self.filled)))


def _as_float(name: str, values: ArrayLike | None, n: int) -> NDArray[np.float64] | None:
    if values is None:
        return None
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"{name}: expected {n} values like the variable to fill, got shape {arr.shape}")
    return arr


def _long_gap_mask(missing: NDArray[np.bool_], max_len: int) -> NDArray[np.bool_]:
    """True on the records of runs of missing values longer than ``max_len``."""
    n = missing.size
    padded = np.concatenate(([False], missing, [False]))
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    starts, ends = edges[0::2], edges[1::2]
    long_runs = (ends - starts) > max_len
    marks = np.zeros(n + 1, dtype=np.int32)
    np.add.at(marks, starts[long_runs], 1)
    np.add.at(marks, ends[long_runs], -1)
    return np.cumsum(marks[:n]) > 0


def _stats(values: NDArray[np.float64], mask: NDArray[np.bool_]) -> tuple[NDArray[np.float64], ...]:
    """Row-wise count, mean and sample standard deviation of ``values`` where ``mask``."""
    count = mask.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(mask, values, 0.0).sum(axis=1) / count
        dev = np.where(mask, values - mean[:, None], 0.0)
        sd = np.sqrt((dev * dev).sum(axis=1) / (count - 1))
    return count.astype(np.float64), mean, sd


class _Filler:
    """State of one MDS run: the measured values, the drivers, and what has been filled so far."""

    def __init__(self, var: NDArray[np.float64], sw_in: NDArray[np.float64] | None,
                 vpd: NDArray[np.float64] | None, ta: NDArray[np.float64] | None, steps_per_day: int,
                 tolerances: tuple[float, float, float], long_gap_days: float) -> None:
        self.var = var
        self.n = var.size
        self.steps_per_day = steps_per_day
        self.sw_in, self.vpd, self.ta = sw_in, vpd, ta
        self.sw_tol, self.vpd_tol, self.ta_tol = tolerances
        self.measured = ~np.isnan(var)
        self.filled = var.copy()
        self.qc = np.where(self.measured, 0.0, np.nan)
        self.fsd = np.full(self.n, np.nan)
        self.fnum = np.full(self.n, np.nan)
        self.method = np.full(self.n, np.nan)
        self.window = np.full(self.n, np.nan)
        fillable = ~self.measured & ~_long_gap_mask(~self.measured, round(long_gap_days * steps_per_day))
        self.todo = fillable
        # usable records per driver set: measured value and every driver present
        self._candidates: dict[bool, NDArray[np.intp]] = {}

    def _store(self, targets: NDArray[np.intp], count: NDArray[np.float64], mean: NDArray[np.float64],
               sd: NDArray[np.float64], method: int, window: float, qc: float) -> None:
        ok = count > 1
        t = targets[ok]
        self.filled[t] = mean[ok]
        self.fsd[t] = sd[ok]
        self.fnum[t] = count[ok]
        self.method[t] = method
        self.window[t] = window
        self.qc[t] = qc
        self.todo[t] = False

    def lut(self, days: int, all_drivers: bool) -> None:
        """One look-up-table step (REddyProc `sFillLUT`) over every record still to fill."""
        assert self.sw_in is not None
        sw = self.sw_in
        targets = np.flatnonzero(self.todo & ~np.isnan(sw))
        if all_drivers:
            assert self.vpd is not None and self.ta is not None
            vpd, ta = self.vpd, self.ta
            targets = targets[~np.isnan(vpd[targets]) & ~np.isnan(ta[targets])]
        if targets.size == 0:
            return
        cand = self._candidates.get(all_drivers)
        if cand is None:
            usable = self.measured & ~np.isnan(sw)
            if all_drivers:
                usable &= ~np.isnan(vpd) & ~np.isnan(ta)
            cand = np.flatnonzero(usable)
            self._candidates[all_drivers] = cand
        if cand.size < 2:
            return
        half = days * self.steps_per_day
        lo = np.searchsorted(cand, targets - half, side="left")
        hi = np.searchsorted(cand, targets + half, side="right")
        width = int((hi - lo).max())
        if width < 2:
            return
        c_var, c_sw = self.var[cand], sw[cand]
        if all_drivers:
            c_vpd, c_ta = vpd[cand], ta[cand]
        step = max(1, _CHUNK_ELEMENTS // width)
        offsets = np.arange(width)
        for start in range(0, targets.size, step):
            tg = targets[start:start + step]
            idx = lo[start:start + step, None] + offsets[None, :]
            inside = idx < hi[start:start + step, None]
            idx = np.minimum(idx, cand.size - 1)
            sw_g = sw[tg]
            tol = np.maximum(np.minimum(self.sw_tol, sw_g), SW_IN_TOLERANCE_MIN)
            mask = inside & (np.abs(c_sw[idx] - sw_g[:, None]) < tol[:, None])
            if all_drivers:
                mask &= np.abs(c_vpd[idx] - vpd[tg][:, None]) < self.vpd_tol
                mask &= np.abs(c_ta[idx] - ta[tg][:, None]) < self.ta_tol
            count, mean, sd = _stats(c_var[idx], mask)
            window = 2.0 * days
            if all_drivers:
                qc = 1.0 if window <= 14 else 2.0 if window <= 56 else 3.0
            else:
                qc = 1.0 if window <= 14 else 2.0 if window <= 28 else 3.0
            self._store(tg, count, mean, sd, METHOD_LUT_ALL if all_drivers else METHOD_LUT_SW_IN, window, qc)

    def mdc(self, days: int) -> None:
        """One mean-diurnal-course step (REddyProc `sFillMDC`) over every record still to fill."""
        targets = np.flatnonzero(self.todo)
        if targets.size == 0:
            return
        day_offsets = np.arange(-days, days + 1) * self.steps_per_day
        offsets = (day_offsets[:, None] + np.arange(-MDC_HALF_WIDTH, MDC_HALF_WIDTH + 1)[None, :]).ravel()
        width = offsets.size
        step = max(1, _CHUNK_ELEMENTS // width)
        for start in range(0, targets.size, step):
            tg = targets[start:start + step]
            idx = tg[:, None] + offsets[None, :]
            inside = (idx >= 0) & (idx < self.n)
            idx = np.clip(idx, 0, self.n - 1)
            mask = inside & self.measured[idx]
            count, mean, sd = _stats(self.var[idx], mask)
            window = 2.0 * days + 1.0
            qc = 1.0 if window <= 1 else 2.0 if window <= 5 else 3.0
            self._store(tg, count, mean, sd, METHOD_MDC, window, qc)

    def result(self, drivers: str) -> MdsResult:
        return MdsResult(self.filled, self.qc, self.fsd, self.fnum, self.method, self.window, drivers)


def mds_fill(values: ArrayLike, sw_in: ArrayLike | None = None, vpd: ArrayLike | None = None,
             ta: ArrayLike | None = None, *, steps_per_day: int = 48,
             sw_in_tolerance: float = SW_IN_TOLERANCE, vpd_tolerance: float = VPD_TOLERANCE,
             ta_tolerance: float = TA_TOLERANCE, long_gap_days: float = LONG_GAP_DAYS,
             fill_all: bool | ArrayLike = False) -> MdsResult:
    """Fill the gaps (NaN) of one variable on a regular time grid with MDS (Reichstein et al. 2005, Appendix A;
    REddyProc `sMDSGapFill` steps 1-8, see the module docstring).

    ``values``: the variable, NaN where missing or rejected (any unit). ``sw_in`` (W m-2), ``vpd`` (hPa), ``ta``
    (°C): the drivers on the same grid, NaN where missing; leave one out (None) to run the reduced scheme.
    ``steps_per_day``: 48 for half-hourly, 24 for hourly records; the record order must be the time order with no
    missing rows. ``fill_all`` (REddyProc's ``FillAll = TRUE``, its default for NEE): also give every measured record
    the ``fsd``, ``fnum``, method and window of the values the steps would have averaged for it (the record itself
    among them) — the uncertainty REddyProc's daytime partitioning weights by; ``filled`` and ``qc`` are unchanged.
    A boolean array instead of True does so for the measured records it marks only (the others' as without it):
    each record's look-up draws on the measured values alone, so the marked records get the same numbers.
    """
    var = np.asarray(values, dtype=np.float64)
    if var.ndim != 1:
        raise ValueError(f"values: expected a 1-D array, got shape {var.shape}")
    n = var.size
    sw = _as_float("sw_in", sw_in, n)
    vp = _as_float("vpd", vpd, n)
    t = _as_float("ta", ta, n)
    filler = _Filler(var, sw, vp, t, steps_per_day, (sw_in_tolerance, vpd_tolerance, ta_tolerance), long_gap_days)
    if not filler.measured.any():
        return filler.result("none")

    def has_data(x: NDArray[np.float64] | None) -> bool:
        return x is not None and bool((~np.isnan(x)).any())

    if has_data(sw) and has_data(vp) and has_data(t):
        drivers = "full"
    elif has_data(sw):
        drivers = "sw_in"
    else:
        drivers = "none"
    _run_steps(filler, drivers)
    result = filler.result(drivers)
    if fill_all is False:
        return result
    # FillAll: the same steps for every measured record as if it were missing (the record itself among the
    # values averaged); a gap's result does not depend on them, so a second pass gives the same gaps' values.
    again = _Filler(var, sw, vp, t, steps_per_day, (sw_in_tolerance, vpd_tolerance, ta_tolerance), long_gap_days)
    if fill_all is True:
        again.todo = again.measured.copy()
    else:
        marked = np.asarray(fill_all, dtype=bool)
        if marked.shape != var.shape:
            raise ValueError(f"fill_all: {marked.shape[0] if marked.ndim else 0} marks for {var.size} records")
        again.todo = again.measured & marked
    _run_steps(again, drivers)
    m = again.measured
    return MdsResult(result.filled, result.qc, np.where(m, again.fsd, result.fsd), np.where(m, again.fnum, result.fnum),
                     np.where(m, again.method, result.method), np.where(m, again.window, result.window_days), drivers)


def _run_steps(filler: _Filler, drivers: str) -> None:
    """REddyProc's sequence of look-up-table and mean-diurnal-course steps (module docstring)."""
    full, radiation = drivers == "full", drivers in ("full", "sw_in")
    if full:
        filler.lut(7, True)
        filler.lut(14, True)
    if radiation:
        filler.lut(7, False)
    for days in (0, 1, 2):
        filler.mdc(days)
    if full:
        for days in range(21, 71, 7):
            filler.lut(days, True)
    if radiation:
        for days in range(14, 71, 7):
            filler.lut(days, False)
    for days in range(7, 211, 7):
        if not filler.todo.any():
            break
        filler.mdc(days)


def mds_fill_met(name: str, values: ArrayLike, sw_in: ArrayLike | None, vpd: ArrayLike | None,
                 ta: ArrayLike | None, *, steps_per_day: int = 48) -> MdsResult:
    """Fill a meteorological driver the way REddyProc does (`sMDSGapFill(name, FillAll = FALSE)`): the variable is
    removed from its own conditions, so ``TA`` and ``VPD`` get LUT on SW_IN + MDC and ``SW_IN`` gets MDC only.

    ``name``: the FLUXNET name of the variable (``SW_IN``, ``TA``, ``VPD``, or any other, which keeps all drivers).
    """
    return mds_fill(values,
                    None if name == "SW_IN" else sw_in,
                    None if name == "VPD" else vpd,
                    None if name == "TA" else ta,
                    steps_per_day=steps_per_day)
