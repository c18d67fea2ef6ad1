"""Daily, monthly and annual sums of NEE, GPP and RECO with the gap fraction and the uncertainty of NEE.

Units: half-hourly fluxes in µmol CO2 m-2 s-1 become gC m-2 per period by Σ F · Δt · 12.011e-6 (Δt = 1800 s for
half-hourly records; 12.011 g mol-1 of carbon), and tCO2e ha-1 by gC m-2 × (44.01/12.011) × 0.01 (44.01 g CO2 per
12.011 g C; 1 g m-2 = 0.01 t ha-1). NEE is negative for uptake, so a sink has a negative sum.

Uncertainty of a NEE sum (1 σ, gC m-2), three independent terms combined in quadrature:

(a) random: ``sqrt(Σ RANDUNC_i²)`` over the half hours of the period. The half-hourly random errors of eddy fluxes
    are close to uncorrelated in time (Richardson et al. 2006, Agric. For. Meteorol. 136, 1-18; Richardson &
    Hollinger 2007, Agric. For. Meteorol. 143, 165-179), which is ONEFlux's aggregation too ("sqrt(sum(rand(i)²))/n"
    for a mean, Pastorello et al. 2020, `nee_proc` info_dd/info_yy).
(b) u* threshold: the sums with NEE filtered at the 5 % and 95 % bootstrap thresholds and gap-filled again
    (REddyProc's u* scenarios, `sEstimateUstarScenarios`/`sMDSGapFillUStarScens`; ONEFlux's NEE_VUT percentiles):
    ``(sum_U95 − sum_U05) / (2 × 1.645)``, the 5-95 % spread read as ±1.645 σ of a normal distribution. Zero when
    the threshold was given (``--ustar VALUE``) or the data were already filtered (``--ustar none``): not estimated,
    said so in the flags.
(c) gap filling: the standard error of each filled value, ``fsd/sqrt(fnum)`` of the MDS average, taken as fully
    correlated within one contiguous gap (the same conditions are drawn on throughout a gap) and independent
    between gaps: ``sqrt(Σ_gaps (Σ_{i∈gap} fsd_i/sqrt(fnum_i))²)`` (after Richardson & Hollinger 2007, whose
    gap-filling error grows with the gap's length).

Combined: ``sqrt(a² + b² + c²)``. GPP and RECO are given with their sums only (their model uncertainty is the
partitioning's; RECO_NT vs RECO_DT is the usual spread).

Pure functions, numpy arrays in and out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "CO2_MOLAR_MASS",
    "C_MOLAR_MASS",
    "Aggregates",
    "aggregate",
    "gc_per_record",
    "to_tco2e_ha",
]

C_MOLAR_MASS = 12.011
CO2_MOLAR_MASS = 44.01
Z_90 = 1.6448536269514722  # standard normal quantile of 0.95


def gc_per_record(flux: ArrayLike, period_s: float = 1800.0) -> NDArray[np.float64]:
    """gC m-2 of each record from µmol CO2 m-2 s-1."""
    result: NDArray[np.float64] = np.asarray(flux, dtype=np.float64) * period_s * C_MOLAR_MASS * 1e-6
    return result


def to_tco2e_ha(gc_m2: ArrayLike) -> NDArray[np.float64]:
    """tCO2e ha-1 from gC m-2."""
    result: NDArray[np.float64] = np.asarray(gc_m2, dtype=np.float64) * (CO2_MOLAR_MASS / C_MOLAR_MASS) * 0.01
    return result


@dataclass(frozen=True)
class Aggregates:
    """One row per period: ``label`` (``YYYYMMDD``, ``YYYYMM`` or ``YYYY``), ``values`` (name → array), see
    :func:`aggregate` for the names."""

    label: list[str]
    values: dict[str, NDArray[np.float64]]


def aggregate(period_key: ArrayLike, hh: dict[str, NDArray[np.float64]], *, period_s: float = 1800.0,
              scenarios: dict[str, NDArray[np.float64]] | None = None) -> Aggregates:
    """Sums per period (``period_key``: one label per record, e.g. the local date ``YYYYMMDD``; records must be in
    time order so each period is contiguous).

    ``hh`` must hold ``NEE_F``, ``NEE_F_QC``, ``NEE_F_RANDUNC``, ``NEE_F_FSD``, ``NEE_F_FNUM`` and may hold
    ``GPP_NT``, ``RECO_NT``, ``GPP_DT``, ``RECO_DT`` (µmol m-2 s-1). ``scenarios``: NEE_F at the 5 % and 95 % u*
    thresholds as ``{"U05": ..., "U95": ...}`` (and any others, summed too).

    Output names (gC m-2 per period unless said): ``NEE_F``, ``NEE_F_TCO2E`` (tCO2e ha-1), ``NEE_F_RANDUNC``,
    ``NEE_F_USTARUNC``, ``NEE_F_GFUNC``, ``NEE_F_UNC`` (combined 1 σ), ``NEE_F_UNC_TCO2E``, ``NEE_U05_F`` …,
    ``GPP_NT``, ``RECO_NT``, ``GPP_DT``, ``RECO_DT`` (+ ``_TCO2E``), ``GAP_FRACTION`` (share of records gap-filled,
    0-1), ``N_RECORDS``, ``N_UNFILLED`` (records still missing; a period with any has no NEE_F sum, NaN — likewise
    GPP/RECO with a missing record).
    """
    keys = np.asarray(period_key)
    n = keys.size
    if n == 0:
        return Aggregates([], {})
    change = np.concatenate(([True], keys[1:] != keys[:-1]))
    starts = np.flatnonzero(change)
    labels = [str(k) for k in keys[starts]]
    if len(set(labels)) != len(labels):
        raise ValueError("period_key: the records of a period must be contiguous (sort the records by time)")

    def total(x: NDArray[np.float64]) -> NDArray[np.float64]:
        result: NDArray[np.float64] = np.add.reduceat(np.nan_to_num(x), starts)
        return result

    out: dict[str, NDArray[np.float64]] = {}
    nee = hh["NEE_F"]
    qc = hh["NEE_F_QC"]
    out["NEE_F"] = total(gc_per_record(nee, period_s))
    out["NEE_F_TCO2E"] = to_tco2e_ha(out["NEE_F"])
    rand_gc = gc_per_record(hh["NEE_F_RANDUNC"], period_s)
    random_term = np.sqrt(total(rand_gc**2))
    filled = np.isfinite(qc) & (qc > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.where(filled, gc_per_record(hh["NEE_F_FSD"], period_s) / np.sqrt(hh["NEE_F_FNUM"]), 0.0)
    se = np.nan_to_num(se)
    # fully correlated within a gap (a gap crossing a period boundary is split there), independent between gaps
    run_start = filled & ~np.concatenate(([False], filled[:-1]))
    ids = np.cumsum(run_start | (change & filled))
    ids = np.where(filled, ids, 0)
    gap_sum = np.bincount(ids, weights=se)
    gap_period = np.zeros(gap_sum.size, dtype=np.intp)
    period_index = np.cumsum(change) - 1
    gap_period[ids[filled]] = period_index[filled]
    gf_var = np.bincount(gap_period[1:], weights=gap_sum[1:] ** 2, minlength=starts.size) if gap_sum.size > 1 \
        else np.zeros(starts.size)
    gf_term = np.sqrt(gf_var)
    ustar_term = np.zeros(starts.size)
    if scenarios:
        for name, arr in scenarios.items():
            out[f"NEE_{name}_F"] = total(gc_per_record(arr, period_s))
        if "U05" in scenarios and "U95" in scenarios:
            ustar_term = np.abs(out["NEE_U95_F"] - out["NEE_U05_F"]) / (2.0 * Z_90)
    out["NEE_F_RANDUNC"] = random_term
    out["NEE_F_USTARUNC"] = ustar_term
    out["NEE_F_GFUNC"] = gf_term
    out["NEE_F_UNC"] = np.sqrt(random_term**2 + ustar_term**2 + gf_term**2)
    out["NEE_F_UNC_TCO2E"] = to_tco2e_ha(out["NEE_F_UNC"])
    for name in ("GPP_NT", "RECO_NT", "GPP_DT", "RECO_DT"):
        if name in hh:
            vals = hh[name]
            out[name] = total(gc_per_record(vals, period_s))
            missing = np.add.reduceat(~np.isfinite(vals), starts)
            out[name] = np.where(missing > 0, np.nan, out[name])  # a partial sum is no sum
            out[f"{name}_TCO2E"] = to_tco2e_ha(out[name])
    counts = np.diff(np.concatenate((starts, [n]))).astype(np.float64)
    out["N_RECORDS"] = counts
    out["GAP_FRACTION"] = np.add.reduceat(filled.astype(np.float64), starts) / counts
    unfilled = ~np.isfinite(nee)
    out["N_UNFILLED"] = np.add.reduceat(unfilled.astype(np.float64), starts)
    out["NEE_F"] = np.where(out["N_UNFILLED"] > 0, np.nan, out["NEE_F"])
    out["NEE_F_TCO2E"] = to_tco2e_ha(out["NEE_F"])
    return Aggregates(labels, out)
