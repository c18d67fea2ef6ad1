"""The budget chain on one site-year of half-hourly (or hourly) records (docs/budget.md).

    drivers: MDS for met (TA_F, SW_IN_F, VPD_F)          -> mds.mds_fill_met (REddyProc rules for met)
    spikes (optional): MAD of the second differences, day and night apart (Papale 2006) -> despike
    u* filter: auto (moving-point test + bootstrap; one per calendar year in a record of several), none, or a
               given threshold                                                  -> ustar
    NEE: MDS gap filling (REddyProc), random uncertainty (ONEFlux)              -> mds, randunc
    u* scenarios: NEE filtered at the 5/50/95 % bootstrap thresholds and filled again (uncertainty term b)
    partitioning: nighttime (Reichstein 2005) and daytime (Lasslop 2010)       -> partition_nt, partition_dt
    aggregates: daily, monthly, annual sums with uncertainty                    -> aggregate

Time convention: ``time_start_s`` are the starts of the records on the station's *standard-time* clock, as seconds
since 1970-01-01 of that clock (so local midnight is a multiple of 86400; ``TIMESTAMP_START`` of FLUXNET files read
as if UTC); ``utc_offset_h`` says how far that clock is ahead of UTC. The records must be a regular grid in time
order; the chain pads them to whole local days (partitioning counts days from midnight) and cuts the padding off.

Pure: arrays in, a :class:`BudgetResult` out, no I/O. Bad input raises :class:`BudgetInputError` naming the
variable and the fix; results that could not be computed are NaN with the reason in ``notes``, never a silent
number.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gateway.flux.budget.aggregate import Aggregates, aggregate
from gateway.flux.budget.despike import nee_spikes
from gateway.flux.budget.mds import MdsResult, mds_fill, mds_fill_met
from gateway.flux.budget.randunc import random_uncertainty
from gateway.flux.budget.ustar import SWIN_FOR_NIGHT, UstarError, UstarResult, ustar_threshold

__all__ = ["ENGINE_NAME", "ENGINE_VERSION", "MIN_USTAR_YEAR_DAYS", "BudgetInputError", "BudgetResult", "BudgetSettings",
           "UstarYear", "run_budget"]

ENGINE_NAME = "sinkwatch-budget"
ENGINE_VERSION = "0.3.0"  # 0.2.0: one u* threshold per year in a record of several years; 0.3.0: daytime
# partitioning as REddyProc's partitionNEEGL (E0 smoothed by a Gaussian process, its optimizer, NEE_fsd weights)
"""Stored budgets carry f"{ENGINE_NAME} {ENGINE_VERSION}"; raise the version when a change moves results."""

MIN_DAYS = 14
"""Shortest record the chain accepts: MDS needs its ±7-day windows, partitioning several weeks."""

MIN_USTAR_YEAR_DAYS = 60
"""Days of records a calendar year needs for its own u* threshold in a record of several years; a shorter year takes
a neighbouring year's (docs/budget.md, "u* threshold: one per year")."""

_SUMMARY_KEYS = ("mean", "sd", "p05", "p50", "p95", "n")


class BudgetInputError(ValueError):
    """The input cannot give a budget; the message names the variable, the records and the fix."""


class UstarNotFoundError(BudgetInputError):
    """The moving-point test found no u* threshold in the record (the message says why and what to give)."""


@dataclass(frozen=True)
class BudgetSettings:
    """``ustar``: ``"auto"`` (moving-point test with ``n_bootstrap`` draws from ``seed``), ``"none"`` (NEE is
    already u*-filtered) or a threshold in m s-1. ``scenarios``: the bootstrap percentiles whose thresholds filter
    and fill NEE again for the u* uncertainty. ``partition``: run the nighttime and daytime partitioning.
    ``despike_z``: remove NEE spikes beyond this many MAD/0.6745 of the second differences (Papale et al. 2006; 4-7;
    None: no spike detection), judged in windows of ``despike_window_days`` (`despike.py`)."""

    ustar: str | float = "auto"
    n_bootstrap: int = 100
    seed: int = 0
    scenarios: tuple[float, ...] = (5.0, 50.0, 95.0)
    partition: bool = True
    despike_z: float | None = None
    despike_window_days: int = 13
    ustar_plateau: float = 1.0
    """The moving-point test's plateau criterion (`ustar.py`): 1.0 ONEFlux's rule (the default), 0.95 REddyProc's
    default (`plateauCrit`), 0.99 Papale et al. (2006) as written."""


@dataclass(frozen=True, eq=False)
class UstarYear:
    """The u* threshold that filtered one calendar year of a record of several years (mode auto).

    ``year``: ``YYYY``. ``source``: the year whose nights gave the estimate — ``year`` itself, or the neighbouring
    year(s) it was taken from (``"2015+2017"`` when two equally near years were pooled). ``threshold`` (m s-1), its
    bootstrap ``summary`` (mean, sd, p05, p50, p95, n as :meth:`UstarResult.summary`), the ``scenarios`` thresholds
    (``U05`` … as ``BudgetSettings.scenarios``) and ``draws`` (every bootstrap threshold behind them)."""

    year: str
    source: str
    threshold: float
    summary: dict[str, float]
    scenarios: dict[str, float]
    draws: NDArray[np.float64]
    notes: tuple[str, ...] = ()

    @property
    def own(self) -> bool:
        return self.source == self.year


@dataclass
class BudgetResult:
    """``hh``: one array per output variable, one value per input record (FLUXNET names; NaN = missing).
    ``daily``/``monthly``/``annual``: :class:`Aggregates` (labels ``YYYYMMDD``/``YYYYMM``/``YYYY``).
    ``ustar``: the moving-point result (mode auto) or None. ``scalars``: USTAR_THRESHOLD and its distribution,
    E0 of the nighttime partitioning, … ``notes``: everything that was not as asked, in words. ``ustar_years``: in
    mode auto on a record of several years, the threshold of each calendar year (then ``ustar`` is None and the
    u* scalars are NaN: there is no one value; :meth:`annual_extra` gives them per year)."""

    hh: dict[str, NDArray[np.float64]]
    daily: Aggregates
    monthly: Aggregates
    annual: Aggregates
    ustar: UstarResult | None
    scalars: dict[str, float | str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    ustar_years: list[UstarYear] = field(default_factory=list)

    def annual_extra(self) -> dict[str, float | str | list[float] | list[str]]:
        """The columns the annual table adds to the sums: ``scalars`` in their order, with the u* threshold, its
        bootstrap summary and the scenario thresholds one value per annual row when each year has its own
        (``ustar_years``), and after the threshold ``USTAR_THRESHOLD_YEAR``, the year whose nights gave it."""
        if not self.ustar_years:
            return dict(self.scalars)
        by_year = {y.year: y for y in self.ustar_years}
        rows = [by_year[label] for label in self.annual.label]
        out: dict[str, float | str | list[float] | list[str]] = {}
        for key, value in self.scalars.items():
            if key == "USTAR_THRESHOLD":
                out[key] = [y.threshold for y in rows]
                out["USTAR_THRESHOLD_YEAR"] = [y.source for y in rows]
            elif key.startswith("USTAR_THRESHOLD_U"):
                out[key] = [y.scenarios[key[len("USTAR_THRESHOLD_"):]] for y in rows]
            elif key.startswith("USTAR_THRESHOLD_"):
                out[key] = [y.summary[key[len("USTAR_THRESHOLD_"):].lower()] for y in rows]
            else:
                out[key] = value
        return out


def _load_partition() -> tuple[Callable[..., dict[str, Any]] | None, Callable[..., dict[str, Any]] | None]:
    """The partitioning functions of the partition modules, None for one that is not there (yet)."""
    found: list[Callable[..., dict[str, Any]] | None] = []
    for module, name in (("partition_nt", "partition_nighttime"), ("partition_dt", "partition_daytime")):
        try:
            found.append(getattr(importlib.import_module(f"gateway.flux.budget.{module}"), name))
        except (ImportError, AttributeError):
            found.append(None)
    return found[0], found[1]


def _check(name: str, arr: NDArray[np.float64], n: int) -> None:
    if arr.shape != (n,):
        raise BudgetInputError(f"{name}: expected {n} values, one per record, got shape {arr.shape}")


def _labels(time_start_s: NDArray[np.float64]) -> tuple[NDArray[np.str_], NDArray[np.int64]]:
    """``YYYYMMDD`` of each record's start and its month (1-12), on the station's clock."""
    days = np.floor(time_start_s / 86400.0).astype(np.int64)
    uniq, inverse = np.unique(days, return_inverse=True)
    dates = [datetime.fromtimestamp(int(d) * 86400, tz=UTC) for d in uniq]
    labels = np.array([d.strftime("%Y%m%d") for d in dates])[inverse]
    months = np.array([d.month for d in dates], dtype=np.int64)[inverse]
    return labels, months


def _ustar_filter(nee: NDArray[np.float64], ustar: NDArray[np.float64], sw_in: NDArray[np.float64],
                  threshold: float | NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """REddyProc `sMDSGapFillAfterUstar` (default): at night (SW_IN < 10 W m-2 or SW_IN missing) remove NEE with
    USTAR below the threshold (flag 1) or USTAR missing (flag 2); day records are kept. ``threshold``: one value,
    or one per record (a threshold per year)."""
    with np.errstate(invalid="ignore"):
        night = ~(sw_in >= SWIN_FOR_NIGHT)
        low = night & (ustar < threshold)
    missing = night & np.isnan(ustar)
    flag = np.where(low, 1.0, np.where(missing, 2.0, 0.0))
    return np.where(flag > 0, np.nan, nee), flag


def _ustar_once(nee: NDArray[np.float64], ta: NDArray[np.float64], ustar: NDArray[np.float64],
                sw_in: NDArray[np.float64], month: NDArray[np.int64], st: BudgetSettings,
                step_s: float = 1800.0) -> UstarResult:
    """The moving-point test with its bootstrap on these records; no estimate is a :class:`BudgetInputError`."""
    try:
        result = ustar_threshold(nee, ta, ustar, sw_in, month, n_bootstrap=st.n_bootstrap, seed=st.seed,
                                 plateau=st.ustar_plateau)
    except UstarError as exc:
        raise BudgetInputError(f"USTAR: {exc}") from None
    if not np.isfinite(result.threshold):
        draws = result.bootstrap
        found = (f"{draws.size} of {result.n_bootstrap} bootstrap draws found one (median {np.median(draws):.2f} "
                 "m s-1)" if draws.size else f"none of {result.n_bootstrap} bootstrap draws found one")
        hourly = (" Hourly records give each of ONEFlux's classes (7 TA classes of at least 100 nights, 20 u* classes "
                  "each) half the nights of a half-hourly year." if step_s == 3600.0 else "")
        raise UstarNotFoundError(
            f"USTAR: the moving-point test found no u* threshold in {result.n_night} night records "
            f"({'one pooled season' if result.one_season else 'four seasons'}: in no temperature class did nighttime "
            f"NEE level off with u*); {found}.{hourly} Give a threshold with --ustar VALUE (m s-1), e.g. from the "
            "site's other years, or --ustar none if NEE is already filtered")
    return result


def _ustar_per_year(nee: NDArray[np.float64], ta: NDArray[np.float64], ustar: NDArray[np.float64],
                    sw_in: NDArray[np.float64], month: NDArray[np.int64], labels: NDArray[np.str_], core: slice,
                    per_day: int, st: BudgetSettings
                    ) -> tuple[NDArray[np.float64], dict[str, NDArray[np.float64]], list[UstarYear], list[str]] | None:
    """One u* threshold per calendar year of a record of several years (REddyProc `sEstUstarThresholdDistribution`,
    Wutzler et al. 2018; ONEFlux's variable threshold, Pastorello et al. 2020), None for a record of one year or
    when no year has its own estimate (then the caller estimates once over the whole record).

    A year with at least ``MIN_USTAR_YEAR_DAYS`` days of records gets the moving-point test and its bootstrap on its
    own records only, with the run's seed: exactly the estimate a run of that year alone makes. A shorter year, or
    one whose test finds no threshold, takes the estimate of the nearest year that has one; with one such year on
    either side at the same distance, their bootstrap draws are pooled (as ONEFlux pools the draws of the years
    around) and the larger of their thresholds is taken (the conservative choice, Papale et al. 2006).

    Returns the threshold of every record (padded grid), the scenario thresholds of every record, the years and the
    notes."""
    year_of = labels.astype("U4")
    years, counts = np.unique(year_of[core], return_counts=True)
    if years.size < 2:
        return None
    own: dict[str, UstarYear] = {}
    notes: list[str] = []
    m_core = np.zeros(labels.size, dtype=bool)
    m_core[core] = True
    for year, count in zip(years.tolist(), counts.tolist(), strict=True):
        if count < MIN_USTAR_YEAR_DAYS * per_day:
            continue
        m = m_core & (year_of == year)
        try:
            res = _ustar_once(nee[m], ta[m], ustar[m], sw_in[m], month[m], st, 86400.0 / per_day)
        except BudgetInputError as exc:
            notes.append(f"u* {year}: no threshold of its own ({str(exc).removeprefix('USTAR: ')})")
            continue
        own[year] = UstarYear(year, year, res.threshold, res.summary(),
                              {f"U{int(q):02d}": res.percentile(q) for q in st.scenarios}, res.bootstrap,
                              tuple(f"u* {year}: {n}" for n in res.notes))
    if not own:
        return None
    result: list[UstarYear] = []
    for year, count in zip(years.tolist(), counts.tolist(), strict=True):
        if year in own:
            result.append(own[year])
            continue
        distance = {y: abs(int(y) - int(year)) for y in own}
        nearest = sorted(y for y in own if distance[y] == min(distance.values()))
        draws = np.concatenate([own[y].draws for y in nearest])
        summary = _draws_summary(draws)
        scen = {f"U{int(q):02d}": float(np.percentile(draws, q)) if draws.size else float("nan")
                for q in st.scenarios}
        taken = UstarYear(year, "+".join(nearest), max(own[y].threshold for y in nearest), summary, scen, draws)
        result.append(taken)
        short = (f"{count / per_day:.0f} days of records" if count < MIN_USTAR_YEAR_DAYS * per_day
                 else "no threshold found in its nights")
        notes.append(f"u* {year} ({short}): takes the threshold of {' and '.join(nearest)}, "
                     f"{taken.threshold:.3f} m s-1")
    lines = []
    for y in result:
        s = y.summary
        lines.append(f"{y.year} {y.threshold:.3f}" + (f" (bootstrap p05 {s['p05']:.3f}, p95 {s['p95']:.3f})"
                                                       if y.own else f" (from {y.source})"))
    notes.insert(0, "u* threshold per year, each from that year's own nights (as ONEFlux and REddyProc): "
                 + ", ".join(lines) + " m s-1")
    for y in result:
        notes.extend(y.notes)
    row = np.searchsorted(years, year_of)  # result is in the order of years; the padding is in the end years
    threshold_hh = np.array([y.threshold for y in result])[row]
    scenario_hh = {name: np.array([y.scenarios[name] for y in result])[row] for name in result[0].scenarios}
    return threshold_hh, scenario_hh, result, notes


def _draws_summary(draws: NDArray[np.float64]) -> dict[str, float]:
    """mean, sd, p05, p50, p95, n of bootstrap thresholds, as :meth:`UstarResult.summary`."""
    if draws.size == 0:
        return dict.fromkeys(_SUMMARY_KEYS, np.nan) | {"n": 0.0}
    p05, p50, p95 = np.percentile(draws, [5.0, 50.0, 95.0])
    return {"mean": float(draws.mean()), "sd": float(draws.std(ddof=1)) if draws.size > 1 else np.nan,
            "p05": float(p05), "p50": float(p50), "p95": float(p95), "n": float(draws.size)}


CLOCK_OFFSET_NOTE_H = 0.25
"""A year's measured SW_IN centred this many hours or more from the sun's gets a note on the time stamps' clock."""
CLOCK_MONTH_NOTE_H = 0.6
"""Months whose measured SW_IN is centred this many hours or more from the year's median month get a note
(daylight-saving time in the stamps); clouds move a month's centre by up to 0.4 h (FR-Hes 2016 shifted by six
months)."""


def _clock_notes(sw: NDArray[np.float64], time_mid_utc: NDArray[np.float64], months: NDArray[np.int64],
                 per_day: int, lat: float, lon: float, utc_offset_h: float) -> list[str]:
    """Notes when measured SW_IN does not follow the sun on the clock ``utc_offset_h`` says the stamps are on
    (:func:`solar.radiation_time_offset_h`): the whole record (stamps in UTC, or in another zone), or some months
    (daylight-saving time). Empty when the stamps and the offset agree."""
    from gateway.flux.budget.solar import potential_radiation, radiation_time_offset_h

    pot = potential_radiation(time_mid_utc, lat, lon, utc_offset_h)
    offset = radiation_time_offset_h(sw, pot, per_day)
    if not np.isfinite(offset):
        return []
    day_month = months.reshape(-1, per_day)[:, 0]
    by_month = {}
    for m in np.unique(day_month).tolist():
        days = day_month == m
        if days.sum() >= 10:
            sel = np.repeat(days, per_day)
            by_month[m] = radiation_time_offset_h(sw[sel], pot[sel], per_day)
    found = {m: v for m, v in by_month.items() if np.isfinite(v)}
    if len(found) >= 4:
        mid = float(np.median(list(found.values())))
        off = sorted(m for m, v in found.items() if abs(v - mid) >= CLOCK_MONTH_NOTE_H)
        if off:
            rest = [m for m in found if m not in off]
            shift = float(np.mean([found[m] for m in off]) - np.mean([found[m] for m in rest]))
            return [f"time stamps: in months {', '.join(str(m) for m in off)} measured SW_IN is centred {shift:+.1f} h "
                    f"from the sun's, against the months {', '.join(str(m) for m in sorted(rest))}: the stamps "
                    "change clock during the year (daylight-saving time?); the budget needs the station's standard "
                    "time all year, its UTC offset in --utc-offset"]
    if abs(offset) >= CLOCK_OFFSET_NOTE_H:
        guess = utc_offset_h + round(offset * 2.0) / 2.0
        return [f"time stamps: measured SW_IN's daily course is centred {offset:+.2f} h from the sun's (potential "
                f"radiation with --utc-offset {utc_offset_h:g}); the stamps look like UTC{guess:+g}: give --utc-offset "
                f"{guess:g} if they are (half an hour: is the stamp the start of the period where the end is meant?)"]
    return []


def _long_gaps(filled: NDArray[np.float64], core: slice, labels: NDArray[np.str_]) -> str:
    """The unfilled stretches of the record as "the gap 20160630-20160831" (first and last day, station clock)."""
    miss = np.zeros(filled.size, dtype=bool)
    miss[core] = np.isnan(filled[core])
    edges = np.flatnonzero(np.diff(np.concatenate(([0], miss.astype(np.int8), [0]))))
    runs = [f"{labels[a]}-{labels[b - 1]}" for a, b in zip(edges[::2], edges[1::2], strict=True)]
    if len(runs) == 1:
        return f"the gap {runs[0]} is"
    return "the gaps " + ", ".join(runs[:3]) + (" …" if len(runs) > 3 else "") + " are"


def _fill_nee(nee: NDArray[np.float64], sw_in: NDArray[np.float64], vpd: NDArray[np.float64],
              ta: NDArray[np.float64], per_day: int, fill_all: bool | NDArray[np.bool_] = False) -> MdsResult:
    return mds_fill(nee, sw_in, vpd, ta, steps_per_day=per_day, fill_all=fill_all)


def run_budget(time_start_s: ArrayLike, nee: ArrayLike, sw_in: ArrayLike, ta: ArrayLike, vpd: ArrayLike,
               ustar: ArrayLike | None = None, *, lat: float, lon: float, utc_offset_h: float,
               settings: BudgetSettings | None = None) -> BudgetResult:
    """Run the budget chain (module docstring) on one record.

    ``nee`` (µmol m-2 s-1; NEE = FC + SC), ``sw_in`` (W m-2), ``ta`` (°C), ``vpd`` (hPa), ``ustar`` (m s-1, needed
    unless ``settings.ustar == "none"``): NaN where missing. ``lat``/``lon`` in degrees north/east.
    """
    st = settings or BudgetSettings()
    if not (math.isfinite(utc_offset_h) and -12.0 <= utc_offset_h <= 14.0):
        # the clocks of the world run from UTC-12 to UTC+14; 100 was taken, and a NaN blamed the time stamps
        raise BudgetInputError(f"UTC offset {utc_offset_h!r} h is not in [-12, 14]; give the hours the time stamps' "
                               "clock is ahead of UTC (--utc-offset; utc_offset_h in central.yaml's budget section), "
                               "e.g. 1 for CET, -5 for EST, 0 for UTC")
    t = np.asarray(time_start_s, dtype=np.float64)
    n_in = t.size
    if t.ndim != 1 or n_in < 2:
        raise BudgetInputError(f"{n_in} records: a budget needs at least {MIN_DAYS} days of records")
    step = float(t[1] - t[0])
    if step not in (1800.0, 3600.0) or np.any(np.diff(t) != step):
        bad = int(np.flatnonzero(np.diff(t) != step)[0]) + 1 if step in (1800.0, 3600.0) else 1
        raise BudgetInputError(
            f"record {bad}: time steps must all be 30 min (or all 60 min) in ascending order; sort the records, "
            "remove duplicates and insert missing half hours as missing values")
    per_day = round(86400.0 / step)
    if n_in < MIN_DAYS * per_day:
        raise BudgetInputError(f"only {n_in} records ({n_in / per_day:.1f} days): a budget needs at least "
                               f"{MIN_DAYS} days (MDS windows are ±7 days, partitioning needs weeks of nights)")
    arrays = {}
    for name, values in (("NEE", nee), ("SW_IN", sw_in), ("TA", ta), ("VPD", vpd)):
        arr = np.asarray(values, dtype=np.float64)
        _check(name, arr, n_in)
        arrays[name] = arr
    u_in = None if ustar is None else np.asarray(ustar, dtype=np.float64)
    if u_in is not None:
        _check("USTAR", u_in, n_in)
    notes: list[str] = []

    # pad to whole days of the station clock
    lead = round((t[0] % 86400.0) / step)
    trail = (-(lead + n_in)) % per_day
    n = lead + n_in + trail
    tt = t[0] - lead * step + step * np.arange(n, dtype=np.float64)
    core = slice(lead, lead + n_in)

    def pad(a: NDArray[np.float64]) -> NDArray[np.float64]:
        out = np.full(n, np.nan)
        out[core] = a
        return out

    nee_a = pad(arrays["NEE"])
    sw = pad(arrays["SW_IN"])
    ta_a = pad(arrays["TA"])
    vpd_a = pad(arrays["VPD"])
    u_a = None if u_in is None else pad(u_in)
    labels, months = _labels(tt)

    no_vpd = not np.isfinite(vpd_a).any()
    if no_vpd:
        notes.append(
            "VPD: no values; NEE gap-filled by the look-up table on SW_IN alone and the mean diurnal course "
            "(Reichstein et al. 2005, Appendix A: the rule for records without VPD), the random uncertainty from "
            "records of similar SW_IN and TA, no daytime partitioning (Lasslop et al. 2010 needs VPD): give VPD (hPa) "
            "or RH (%) for the full method")
    hh: dict[str, NDArray[np.float64]] = {"NEE": nee_a}
    time_mid_utc = tt + step / 2.0 - utc_offset_h * 3600.0
    notes.extend(_clock_notes(sw, time_mid_utc, months, per_day, lat, lon, utc_offset_h))
    # meteorological drivers
    met: dict[str, MdsResult] = {}
    for name, values in (("TA", ta_a), ("SW_IN", sw), ("VPD", vpd_a)):
        met[name] = mds_fill_met(name, values, sw, vpd_a, ta_a, steps_per_day=per_day)
        hh[f"{name}_F"] = met[name].filled
        hh[f"{name}_F_QC"] = met[name].qc
        if met[name].n_unfilled > trail + lead and not (name == "VPD" and no_vpd):
            notes.append(f"{name}: {met[name].n_unfilled - lead - trail} records could not be gap-filled")

    scalars: dict[str, float | str] = {}
    if st.despike_z is not None:
        spikes = nee_spikes(nee_a, sw, z=st.despike_z, steps_per_day=per_day, window_days=st.despike_window_days)
        nee_a = np.where(spikes, np.nan, nee_a)  # hh["NEE"] keeps the input
        scalars["DESPIKE_Z"] = float(st.despike_z)
        scalars["N_SPIKES"] = float(spikes.sum())
        notes.append(f"{int(spikes.sum())} NEE spikes removed (Papale et al. 2006, z = {st.despike_z:g}, windows of "
                     f"{st.despike_window_days} days)")

    # u* filtering
    ustar_result: UstarResult | None = None
    mode = st.ustar
    scenario_thresholds: dict[str, float] = {}
    threshold_hh: NDArray[np.float64] | None = None  # one threshold per record when each year has its own
    scenario_hh: dict[str, NDArray[np.float64]] = {}
    ustar_years: list[UstarYear] = []
    if mode == "none":
        threshold = float("nan")
        nee_filtered, uflag = nee_a.copy(), np.zeros(n)
        scalars["USTAR_MODE"] = "none"
        notes.append("u* filtering: none (NEE taken as already filtered); u* uncertainty not estimated")
    else:
        if u_a is None or not np.isfinite(u_a).any():
            raise BudgetInputError("USTAR: no values; u* filtering needs USTAR (m s-1), or use --ustar none if NEE "
                                   "is already u*-filtered")
        if mode == "auto":
            per_year = _ustar_per_year(nee_a, ta_a, u_a, sw, months, labels, core, per_day, st)
            if per_year is not None:
                threshold_hh, scenario_hh, ustar_years, year_notes = per_year
                notes.extend(year_notes)
                threshold = float("nan")  # no single value: one per year (BudgetResult.ustar_years)
            else:
                ustar_result = _ustar_once(nee_a[core], ta_a[core], u_a[core], sw[core], months[core], st, step)
                threshold = ustar_result.threshold
                years = np.unique(labels[core].astype("U4"), return_counts=True)
                if years[0].size > 1:
                    notes.append(f"u* threshold estimated once over {', '.join(str(y) for y in years[0])}: no year "
                                 f"has its own estimate ({MIN_USTAR_YEAR_DAYS} days of records and a threshold "
                                 "found in them)")
            scalars["USTAR_MODE"] = "auto"
            summary = ustar_result.summary() if ustar_result is not None else dict.fromkeys(_SUMMARY_KEYS, np.nan)
            for key in _SUMMARY_KEYS:
                scalars[f"USTAR_THRESHOLD_{key.upper()}"] = summary[key]
            for q in st.scenarios:
                scenario_thresholds[f"U{int(q):02d}"] = (ustar_result.percentile(q) if ustar_result is not None
                                                         else float("nan"))
            if ustar_result is not None:
                notes.extend(ustar_result.notes)
        else:
            threshold = float(mode)
            if not 0.0 <= threshold < 3.0:
                raise BudgetInputError(f"--ustar {mode}: a threshold must be in m s-1 between 0 and 3")
            scalars["USTAR_MODE"] = "value"
            notes.append("u* threshold given: u* uncertainty not estimated")
        nee_filtered, uflag = _ustar_filter(nee_a, u_a, sw, threshold if threshold_hh is None else threshold_hh)
    scalars["USTAR_THRESHOLD"] = threshold
    hh["USTAR_THRESHOLD"] = np.full(n, threshold) if threshold_hh is None else threshold_hh
    hh["USTAR_FILTER"] = uflag

    # NEE gap filling and random uncertainty
    if not np.isfinite(nee_filtered).any():
        raise BudgetInputError("NEE: no values left to fill (all missing, or all removed by the u* filter)")
    # FillAll (REddyProc's default for NEE): the MDS spread also at measured records, the daytime fit's weights.
    # Only when the daytime method will run, and only at the records it can fit (SW_IN_F > 4 W m-2, a superset of
    # its day): a second pass over every measured record cost ~0.8 s a site-year. The outputs keep the spread, count
    # and method of filled records only, as before.
    fill_all: bool | NDArray[np.bool_] = False
    if st.partition and not no_vpd:
        from gateway.flux.budget.partition_dt import DAY_SW_IN_MIN

        with np.errstate(invalid="ignore"):
            fill_all = hh["SW_IN_F"] > DAY_SW_IN_MIN
    res = _fill_nee(nee_filtered, sw, vpd_a, ta_a, per_day, fill_all=fill_all)
    nee_fsd_all = res.fsd
    measured = res.qc == 0
    hh["NEE_F"] = res.filled
    hh["NEE_F_QC"] = res.qc
    hh["NEE_F_FSD"] = np.where(measured, np.nan, res.fsd)
    hh["NEE_F_FNUM"] = np.where(measured, np.nan, res.fnum)
    hh["NEE_F_FMETH"] = np.where(measured, np.nan, res.method)
    if res.n_unfilled > lead + trail:
        notes.append(f"NEE: {res.n_unfilled - lead - trail} records could not be gap-filled: "
                     f"{_long_gaps(res.filled, core, labels)} longer than 60 days (REddyProc's limit, "
                     "sMDSGapFill); sums over them are missing: fill the gap from another source, or budget the "
                     "months around it")
    # without VPD at all, records are similar in SW_IN and TA alone (a VPD condition would leave no record similar)
    ru = random_uncertainty(res.filled, res.qc == 0, sw, ta_a, np.zeros(n) if no_vpd else vpd_a,
                            steps_per_day=per_day)
    hh["NEE_F_RANDUNC"] = ru.randunc
    hh["NEE_F_RANDUNC_METHOD"] = ru.method
    hh["NEE_F_RANDUNC_N"] = ru.n
    scenarios: dict[str, NDArray[np.float64]] = {}
    for name, thr in scenario_thresholds.items():
        assert u_a is not None
        filt, _ = _ustar_filter(nee_a, u_a, sw, scenario_hh.get(name, thr))
        scenarios[name] = _fill_nee(filt, sw, vpd_a, ta_a, per_day).filled
        hh[f"NEE_{name}_F"] = scenarios[name]
        scalars[f"USTAR_THRESHOLD_{name}"] = thr

    # day/night and partitioning
    with np.errstate(invalid="ignore"):
        hh["NIGHT"] = (hh["SW_IN_F"] < SWIN_FOR_NIGHT).astype(np.float64)
    hh["NIGHT"][np.isnan(hh["SW_IN_F"])] = np.nan
    nt, dt = _load_partition() if st.partition else (None, None)
    dt_skipped = no_vpd and dt is not None
    if dt_skipped:
        dt = None
    if st.partition:
        from gateway.flux.budget.solar import potential_radiation

        hh["SW_IN_POT"] = potential_radiation(time_mid_utc, lat, lon, utc_offset_h)
    if nt is not None:
        out = nt(time_mid_utc, nee_filtered, res.filled, hh["TA_F"], sw, lat, lon, utc_offset_h,
                 ta_f_qc=hh["TA_F_QC"])
        hh["RECO_NT"] = np.asarray(out["RECO_NT"], dtype=np.float64)
        hh["GPP_NT"] = np.asarray(out["GPP_NT"], dtype=np.float64)
        if "NT_QC" in out:
            hh["NT_QC"] = np.asarray(out["NT_QC"], dtype=np.float64)
        if "E0" in out:
            scalars["E0_NT"] = float(out["E0"])
        if "NT_OK" in out and not bool(out["NT_OK"]):
            notes.append(f"nighttime partitioning failed: {out.get('NT_MESSAGE', '')}")
    elif st.partition:
        notes.append("nighttime partitioning not available")
    if dt is not None:
        # REddyProc weights the light-response fit by NEE_fsd, the MDS spread at every record (FillAll); on CH-Dav
        # July 2022 NEE_F_RANDUNC instead moved RECO_DT by -8 % (docs/budget.md)
        out = dt(time_mid_utc, nee_filtered, hh["TA_F"], hh["SW_IN_F"], hh["VPD_F"], lat, lon, utc_offset_h,
                 nee_sd=nee_fsd_all)
        hh["RECO_DT"] = np.asarray(out["RECO_DT"], dtype=np.float64)
        hh["GPP_DT"] = np.asarray(out["GPP_DT"], dtype=np.float64)
        if "DT_QC" in out:
            hh["DT_QC"] = np.asarray(out["DT_QC"], dtype=np.float64)
        if "DT_OK" in out and not bool(out["DT_OK"]):
            notes.append(f"daytime partitioning failed: {out.get('DT_MESSAGE', '')}")
    elif st.partition and not dt_skipped:
        notes.append("daytime partitioning not available in this version: RECO_DT, GPP_DT missing")

    # cut the padding off, aggregate
    hh = {k: v[core] for k, v in hh.items()}
    scen_core = {k: v[core] for k, v in scenarios.items()}
    lab = labels[core]
    period_s = step
    daily = aggregate(lab, hh, period_s=period_s, scenarios=scen_core)
    monthly = aggregate(np.array([s[:6] for s in lab]), hh, period_s=period_s, scenarios=scen_core)
    annual = aggregate(np.array([s[:4] for s in lab]), hh, period_s=period_s, scenarios=scen_core)
    return BudgetResult(hh, daily, monthly, annual, ustar_result, scalars, notes, ustar_years)
