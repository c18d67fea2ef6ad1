"""Daytime partitioning of NEE into RECO_DT and GPP_DT with a light-response curve.

Method: Lasslop, G. et al. (2010) Separation of net ecosystem exchange into assimilation and respiration using a
light response curve approach: critical issues and global evaluation. Global Change Biology 16, 187–208 (eqs. 3–6,
Table A1), with the rules of REddyProc's implementation (``partitionNEEGL``, ``partGLFitNightTimeTRespSens``,
``partGLFitLRCOneWindow``, ``LightResponseCurveFitter`` with ``partGLControl()`` defaults; Wutzler et al. 2018)::

    NEE  = −GPP + RECO                                                                 µmol m-2 s-1
    GPP  = α·β'·Rg / (α·Rg + β'),   β' = β·exp(−k·(VPD − VPD0)) if VPD > VPD0 else β      VPD0 = 10 hPa
    RECO = RREF·exp(E0·(1/(Tref − T0) − 1/(T − T0)))                                   Tref = 15 °C, T0 = −46.02 °C

α (µmol CO2 J-1, per W m-2 of global radiation Rg = SW_IN), β (µmol m-2 s-1), k (hPa-1), RREF (µmol m-2 s-1 at
15 °C), E0 (K).

Steps, windows anchored on 4-day reference windows every 2 days (window ``w`` centred on record
``(2w + 2)·48``, REddyProc ``applyWindows``):

1. Day/night from gap-filled radiation: night ``SW_IN_F ≤ 4`` W m-2 and PotRad = 0, day ``SW_IN_F > 4`` and
   PotRad > 0. Only measured NEE is fitted; gap-filled drivers are used (``isFilterMeteoQualityFlag = FALSE``).
2. E0 per window from night NEE in 12-day windows (extended to 24 and 48 days where the fit fails): at least 10
   records, records at T ≤ −1 °C dropped when 12 others remain; a Lloyd–Taylor fit whose E0 must lie in
   [50, 400] K. Windows without an estimate take the previous one (the first missing ones the median) and the 90 %
   quantile of the standard errors (REddyProc's ``smoothTempSensEstimateAcrossTime = FALSE``; its default smooths E0
   with a Gaussian process from the retired R package mlegp, which we do not reproduce). Fewer than 5 windows with
   an E0 (and fewer than 10 % of them): partitioning fails.
3. RREF at night per 12-day window with that E0 (least squares through the origin, ≥ 0); missing ones carried
   forward. It is the prior and the start of the day fit.
4. Light response per 4-day window on day records with NEE, T, Rg, VPD and an NEE uncertainty (fewer than 10:
   VPD is left out and k = 0; still fewer: no fit). Cost = Σ((NEP_mod + NEE)/σ)² + Σ((θ − θ_prior)/σ_prior)²
   with E0 fixed, priors k 0.05 ± 50, β |q03 − q97 of NEE| ± 600, α 0.1 ± 10, RREF RREF_night ± 80
   (``isLasslopPriorsApplied``); σ = the NEE uncertainty (missing: max(0.7, 0.2·|NEE|)), raised to its 30 %
   quantile in the window (``isBoundLowerNEEUncertainty``). Three starts (β_prior × 1, 1.3, 0.8), best kept.
   k is fixed at 0 when no VPD ≥ 10 hPa in the window or when the fit gives k < 0; α is fixed at the α of the last
   window with a valid fit (0.22 before the first) when the fit gives α > 0.22 (Lasslop et al. 2010, Table A1).
   A fit is rejected when α < 0, RREF < 0, β < 0 or β ≥ 250, or β > 100 with SE(β) ≥ β.
5. Each window's parameters sit at the rounded mean index of its fitted records; RECO_DT and GPP_DT are computed
   with the parameters of the two neighbouring windows from TA_F, SW_IN_F and VPD_F and averaged with weights
   linear in the distance (constant before the first and after the last window).

Parameter uncertainty: covariance = (JᵀJ + prior precision)⁻¹ of the weighted least-squares problem at the optimum
(curvature, REddyProc's ``nBootUncertainty = 0`` mode; its default of 30 bootstrap refits per window is too slow for
a 2-s budget), E0's variance from step 2 added; RECO_DT_SD and GPP_DT_SD propagate it linearly.

The fit is a Levenberg–Marquardt iteration vectorised over all windows (numpy only) instead of R's BFGS per window.
Deviations from REddyProc, all documented options or speed choices: no Gaussian-process smoothing of E0; curvature
instead of bootstrap uncertainty; where VPD_F is missing the prediction uses β without VPD limitation instead of a
second fit that neglects VPD.

Peers: hesseflux 5.0 (``nee2gpp(method='lasslop')``) fits E0 on 12-day night windows by least absolute deviations
and the light response on 4-day day windows every 2 days without priors or weights, day = SW_IN > 10; ONEFlux
(``oneflux/partition/daytime.py``) is a port of Lasslop's original PV-Wave code with the same window sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gateway.flux.budget.partition_nt import (
    CELSIUS_TO_K,
    T0_K,
    TREF_K,
    PartitionError,
    check_same_length,
    distance_to_nearest,
    fit_lloyd_taylor,
    lloyd_taylor,
    pad_windows,
    records_per_day,
)
from gateway.flux.budget.solar import potential_radiation

__all__ = ["PARAMETER_NAMES", "partition_daytime", "rectangular_light_response"]

VPD0_HPA = 10.0
"""VPD above which β declines (Lasslop et al. 2010, eq. 4), hPa."""
DAY_SW_IN_MIN = 4.0
"""Gap-filled SW_IN above which a record with the sun up is day (Lasslop et al. 2010), W m-2."""
WINDOW_REF_DAYS = 4
WINDOW_STRIDE_DAYS = 2
NIGHT_WINDOW_DAYS = 12
NIGHT_WINDOW_EXTENSIONS = (24, 48)
MIN_RECORDS = 10
E0_RANGE = (50.0, 400.0)
ALPHA_MAX = 0.22
ALPHA_DEFAULT_LAST = 0.22
BETA_MAX = 250.0
PRIOR_SD = np.array([50.0, 600.0, 10.0, 80.0])  # k, beta, alpha, RREF (isLasslopPriorsApplied)
PRIOR_K, PRIOR_ALPHA = 0.05, 0.1
PARAMETER_NAMES = ("k", "beta", "alpha", "RREF")
_K, _BETA, _ALPHA, _RREF = 0, 1, 2, 3
_MAX_ITER = 100


def rectangular_light_response(
    sw_in: ArrayLike, vpd: ArrayLike, k: ArrayLike, beta: ArrayLike, alpha: ArrayLike
) -> NDArray[np.float64]:
    """GPP (µmol m-2 s-1) of the rectangular hyperbola with VPD limitation (Lasslop et al. 2010, eqs. 3–4).

    ``sw_in`` W m-2, ``vpd`` hPa (NaN: no limitation), ``k`` hPa-1, ``beta`` µmol m-2 s-1, ``alpha`` µmol J-1.
    """
    rg = np.asarray(sw_in, dtype=float)
    v = np.asarray(vpd, dtype=float)
    b = np.asarray(beta, dtype=float)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        amax = np.where(v > VPD0_HPA, b * np.exp(-np.asarray(k, dtype=float) * (v - VPD0_HPA)), b)
        a_rg = np.asarray(alpha, dtype=float) * rg
        return np.asarray(np.where(rg > 0, a_rg * amax / (a_rg + amax), 0.0), dtype=float)


@dataclass
class _Windows:
    central: NDArray[np.int64]  # 0-based central record of each reference window

    def bounds(self, days: int, per_day: int, n: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        half = days * per_day // 2
        return np.maximum(0, self.central - half), np.minimum(n - 1, self.central - 1 + half)


def _reference_windows(n: int, per_day: int) -> _Windows:
    n_day = -(-n // per_day)
    start_days = np.arange(1, n_day - WINDOW_REF_DAYS / 2 + 1e-9, WINDOW_STRIDE_DAYS).astype(np.int64)
    return _Windows(central=(start_days - 1 + WINDOW_REF_DAYS // 2) * per_day)


def _night_records(night: NDArray[np.bool_], t_c: NDArray[np.float64], lo: int, hi: int) -> NDArray[np.int64]:
    ix = lo + np.flatnonzero(night[lo : hi + 1])
    freezing = t_c[ix] <= -1.0
    if np.count_nonzero(~freezing) >= 12:
        ix = ix[~freezing]
    return ix


def _night_e0(
    wins: _Windows, night: NDArray[np.bool_], nee: NDArray[np.float64], t_c: NDArray[np.float64], per_day: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    n = nee.size
    e0 = np.full(wins.central.size, np.nan)
    sd = np.full(wins.central.size, np.nan)
    for days in (NIGHT_WINDOW_DAYS, *NIGHT_WINDOW_EXTENSIONS):
        todo = np.flatnonzero(~np.isfinite(e0))
        if todo.size == 0:
            break
        lo, hi = wins.bounds(days, per_day, n)
        ix_list = [_night_records(night, t_c, int(lo[w]), int(hi[w])) for w in todo]
        enough = np.array([ix.size >= MIN_RECORDS for ix in ix_list], dtype=bool)
        if not enough.any():
            continue
        rows = todo[enough]
        _, (y, tk) = pad_windows([ix for ix, e in zip(ix_list, enough, strict=True) if e], nee, t_c + CELSIUS_TO_K)
        fit = fit_lloyd_taylor(y, tk)
        ok = fit.ok & (fit.e0 >= E0_RANGE[0]) & (fit.e0 <= E0_RANGE[1])
        e0[rows[ok]] = fit.e0[ok]
        sd[rows[ok]] = fit.e0_se[ok]
    return e0, sd


def _forward_fill(x: NDArray[np.float64], first: float) -> NDArray[np.float64]:
    out = x.copy()
    if out.size and not np.isfinite(out[0]):
        out[0] = first
    idx = np.where(np.isfinite(out), np.arange(out.size), 0)
    np.maximum.accumulate(idx, out=idx)
    return out[idx]


@dataclass
class _Problem:
    """Padded day records of all windows to fit (rows × records)."""

    rg: NDArray[np.float64]
    vpd: NDArray[np.float64]
    f_t: NDArray[np.float64]  # Lloyd–Taylor factor exp(E0·(...)) at each record
    obs: NDArray[np.float64]  # NEP = −NEE, 0 where padded
    w: NDArray[np.float64]  # 1/σ, 0 where padded
    prior: NDArray[np.float64]  # rows × 4


def _model(
    p: _Problem, theta: NDArray[np.float64], fix_vpd: NDArray[np.bool_], rows: NDArray[np.int64] | slice = slice(None)
) -> tuple[NDArray, NDArray]:
    """NEP prediction and its Jacobian (rows × records × 4) for parameters ``theta`` of ``rows``."""
    rg, vpd, f_t = p.rg[rows], p.vpd[rows], p.f_t[rows]
    k, beta, alpha, rref = (theta[:, i : i + 1] for i in range(4))
    limited = (vpd > VPD0_HPA) & ~fix_vpd[:, None]
    dv = np.where(limited, vpd - VPD0_HPA, 0.0)
    e = np.exp(-k * dv)
    amax = beta * e
    a_rg = alpha * rg
    den = a_rg + amax
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inv2 = 1.0 / (den * den)
        gpp = a_rg * amax / den
        d_amax = a_rg * a_rg * inv2
        d_alpha = amax * amax * rg * inv2
    nep = gpp - rref * f_t
    jac = np.empty((*rg.shape, 4))
    jac[..., _K] = d_amax * (-beta * dv * e)
    jac[..., _BETA] = d_amax * e
    jac[..., _ALPHA] = d_alpha
    jac[..., _RREF] = -f_t
    return nep, jac


def _cost(
    p: _Problem, theta: NDArray[np.float64], fix_vpd: NDArray[np.bool_], active: NDArray[np.bool_],
    rows: NDArray[np.int64] | slice = slice(None),
) -> NDArray[np.float64]:
    nep, _ = _model(p, theta, fix_vpd, rows)
    with np.errstate(invalid="ignore", over="ignore"):
        r = (nep - p.obs[rows]) * p.w[rows]
        pr = np.where(active, (theta - p.prior[rows]) / PRIOR_SD, 0.0)
        c = np.sum(r * r, axis=1) + np.sum(pr * pr, axis=1)
    return np.asarray(np.where(np.isfinite(c), c, np.inf), dtype=float)


def _normal_equations(
    p: _Problem, theta: NDArray[np.float64], fix_vpd: NDArray[np.bool_], active: NDArray[np.bool_],
    rows: NDArray[np.int64] | slice,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """JᵀWJ + prior precision and the gradient, with inactive parameters decoupled (identity rows)."""
    nep, jac = _model(p, theta, fix_vpd, rows)
    w = p.w[rows]
    with np.errstate(invalid="ignore", over="ignore"):
        r = (nep - p.obs[rows]) * w
        jw = jac * w[..., None]
    jw = np.where(np.isfinite(jw), jw, 0.0)
    r = np.where(np.isfinite(r), r, 0.0)
    jt = np.swapaxes(jw, 1, 2)
    a = jt @ jw
    g = (jt @ r[..., None])[..., 0]
    prec = np.where(active, 1.0 / PRIOR_SD**2, 0.0)
    eye = np.eye(4)
    a = a + prec[:, :, None] * eye
    g = g + np.where(active, (theta - p.prior[rows]) / PRIOR_SD**2, 0.0)
    act2 = active[:, :, None] & active[:, None, :]
    return np.where(act2, a, eye), np.where(active, g, 0.0)


def _levenberg_marquardt(
    p: _Problem, theta0: NDArray[np.float64], active: NDArray[np.bool_], fix_vpd: NDArray[np.bool_]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_], NDArray[np.float64]]:
    """Minimise the cost of each row over its ``active`` parameters. Returns θ, cost, converged, covariance.

    Converged: the relative decrease of the cost fell below 1e-7 on an accepted step, or below 1e-5 on a nearly
    undamped one (R's BFGS in REddyProc stops at a relative 1e-3), the predicted decrease below 1e-9, or the damping
    had to grow past 1e8 at a minimum.
    """
    theta = theta0.copy()
    n_rows = theta.shape[0]
    lam = np.full(n_rows, 1e-3)
    cost = _cost(p, theta, fix_vpd, active)
    done = ~np.isfinite(cost)
    converged = np.zeros(n_rows, dtype=bool)
    eye = np.eye(4)
    for _ in range(_MAX_ITER):
        live = np.flatnonzero(~done)
        if live.size == 0:
            break
        a, g = _normal_equations(p, theta[live], fix_vpd[live], active[live], live)
        damp = a + lam[live, None, None] * (a * eye + 1e-12 * eye)
        step = np.linalg.solve(damp, -g[..., None])[..., 0]
        step = np.where(np.isfinite(step), step, 0.0)
        trial = theta[live] + step
        new_cost = _cost(p, trial, fix_vpd[live], active[live], live)
        better = new_cost < cost[live]
        rel = np.where(better, (cost[live] - new_cost) / np.maximum(cost[live], 1e-300), 0.0)
        theta[live[better]] = trial[better]
        cost[live[better]] = new_cost[better]
        lam[live] = np.where(better, np.maximum(lam[live] / 5.0, 1e-9), lam[live] * 10.0)
        predicted = np.abs(np.sum(g * step, axis=1)) / np.maximum(cost[live], 1e-300)
        # A near-Gauss-Newton step (small damping) that gains less than 1e-5 of the cost is at the optimum; this
        # also ends the slow crawl of α and β towards 0 together in windows without photosynthesis.
        fin = (better & ((rel < 1e-7) | ((rel < 1e-5) & (lam[live] <= 1e-3)))) | (lam[live] > 1e8) | (
            predicted < 1e-9)
        converged[live[fin]] = True
        done[live[fin]] = True
    a, _ = _normal_equations(p, theta, fix_vpd, active, slice(None))
    act2 = active[:, :, None] & active[:, None, :]
    with np.errstate(invalid="ignore"):
        inv = np.linalg.inv(a)
    cov: NDArray[np.float64] = np.asarray(np.where(act2, inv, 0.0), dtype=np.float64)
    return theta, cost, converged & np.isfinite(cost), cov


def partition_daytime(
    time_mid_utc_s: ArrayLike,
    nee: ArrayLike,
    ta_f: ArrayLike,
    sw_in_f: ArrayLike,
    vpd_f: ArrayLike,
    lat: float,
    lon: float,
    utc_offset_h: float = 0.0,
    *,
    nee_sd: ArrayLike | None = None,
) -> dict[str, NDArray]:
    """Daytime partitioning (Lasslop et al. 2010 as REddyProc implements it; module docstring).

    Inputs on a regular ascending grid starting at local midnight: ``time_mid_utc_s`` (middle of each period,
    seconds UTC), ``nee`` measured NEE after u* filtering (NaN where missing; µmol m-2 s-1), ``ta_f`` gap-filled
    air temperature (°C), ``sw_in_f`` gap-filled SW_IN (W m-2), ``vpd_f`` gap-filled VPD (**hPa**), site ``lat``,
    ``lon`` (degrees), ``utc_offset_h``; ``nee_sd`` the random uncertainty of NEE (µmol m-2 s-1, e.g. MDS's
    standard deviation or NEE_F_RANDUNC; missing → max(0.7, 0.2·|NEE|)).

    Returns a dict of numpy arrays: per period ``RECO_DT``, ``GPP_DT``, ``RECO_DT_SD``, ``GPP_DT_SD``
    (µmol m-2 s-1), ``DT_QC`` (0 good fit; 1 k or α had to be fixed; 2 nearest fitted window > 14 days away;
    3 failed); per fitted window ``DT_WIN_INDEX`` (record the parameters sit at), ``DT_k``, ``DT_beta``,
    ``DT_alpha``, ``DT_RREF``, ``DT_E0`` and ``*_SD``; per reference window ``DT_E0_NIGHT``, ``DT_E0_NIGHT_SD``,
    ``DT_RREF_NIGHT``; 0-d ``DT_OK`` and ``DT_MESSAGE``. Too little data gives NaN with ``DT_OK`` False and the
    reason; malformed input raises :class:`~gateway.flux.budget.partition_nt.PartitionError`.
    """
    t = np.asarray(time_mid_utc_s, dtype=float)
    per_day = records_per_day(t)
    n = t.size
    nee_a = np.asarray(nee, dtype=float)
    ta = np.asarray(ta_f, dtype=float)
    rg = np.asarray(sw_in_f, dtype=float)
    vpd = np.asarray(vpd_f, dtype=float)
    sd_in = np.full(n, np.nan) if nee_sd is None else np.asarray(nee_sd, dtype=float)
    check_same_length(n, nee=nee_a, ta_f=ta, sw_in_f=rg, vpd_f=vpd, nee_sd=sd_in)
    with np.errstate(invalid="ignore"):
        sunny = np.count_nonzero(rg > 300.0)
    if np.any(np.isfinite(vpd)) and np.nanmax(vpd) < 6.0 and sunny >= 100:
        raise PartitionError(
            f"VPD_F never exceeds {np.nanmax(vpd):.2f}: VPD looks like kPa; give it in hPa (multiply by 10)"
        )
    if np.any(np.isfinite(ta)) and (np.nanmax(ta) > 70.0 or np.nanmin(ta) < -80.0):
        raise PartitionError("TA_F outside -80..70: air temperature must be in degrees Celsius")

    def failed(msg: str, extra: dict[str, NDArray] | None = None) -> dict[str, NDArray]:
        out: dict[str, NDArray] = {
            "RECO_DT": np.full(n, np.nan), "GPP_DT": np.full(n, np.nan),
            "RECO_DT_SD": np.full(n, np.nan), "GPP_DT_SD": np.full(n, np.nan),
            "DT_QC": np.full(n, 3, dtype=np.int8), "DT_OK": np.array(False), "DT_MESSAGE": np.array(msg),
        }
        out.update(extra or {})
        return out

    if not np.any(np.isfinite(ta)):
        return failed("air temperature TA_F is missing throughout; daytime partitioning needs it")
    if not np.any(np.isfinite(rg)):
        return failed("SW_IN_F is missing throughout; daytime partitioning needs radiation")
    pot = potential_radiation(t, lat, lon, utc_offset_h)
    with np.errstate(invalid="ignore"):
        is_night = (rg <= DAY_SW_IN_MIN) & (pot <= 0.0)
        is_day = (rg > DAY_SW_IN_MIN) & (pot > 0.0)
    good = np.isfinite(nee_a) & np.isfinite(ta)
    night = is_night & good
    if not np.any(night):
        return failed("no measured nighttime NEE (SW_IN_F <= 4 W m-2 with the sun below the horizon)")
    if not np.any(is_day & good):
        return failed("no measured daytime NEE (SW_IN_F > 4 W m-2 with the sun up)")

    wins = _reference_windows(n, per_day)
    n_win = wins.central.size
    if n_win == 0:
        return failed(f"record of {n} periods is shorter than one {WINDOW_REF_DAYS}-day window")

    # Steps 2 and 3: E0 and RREF from night data.
    e0_fit, e0_sd_fit = _night_e0(wins, night, nee_a, ta, per_day)
    n_e0 = int(np.count_nonzero(np.isfinite(e0_fit)))
    night_diag: dict[str, NDArray] = {"DT_E0_NIGHT_FIT": e0_fit, "DT_E0_NIGHT_FIT_SD": e0_sd_fit}
    if n_e0 < 5 and n_e0 < 0.1 * n_win:
        return failed(f"a temperature sensitivity E0 in [50, 400] K could be estimated for only {n_e0} of "
                      f"{n_win} night windows", night_diag)
    e0_win = _forward_fill(e0_fit, float(np.nanmedian(e0_fit)))
    e0_sd_win = np.where(np.isfinite(e0_fit), e0_sd_fit, np.nanquantile(e0_sd_fit, 0.9))
    lo12, hi12 = wins.bounds(NIGHT_WINDOW_DAYS, per_day, n)
    rref_night = np.full(n_win, np.nan)
    for w in range(n_win):
        ix = _night_records(night, ta, int(lo12[w]), int(hi12[w]))
        if ix.size < MIN_RECORDS:
            continue
        f = lloyd_taylor(1.0, e0_win[w], ta[ix] + CELSIUS_TO_K)
        ok = np.isfinite(f)
        rref_night[w] = max(0.0, float(np.dot(nee_a[ix][ok], f[ok]) / np.dot(f[ok], f[ok])))
    if not np.any(np.isfinite(rref_night)):
        return failed("no night window had 10 records for the night-time reference respiration", night_diag)
    rref_night = _forward_fill(rref_night, float(rref_night[np.isfinite(rref_night)][0]))

    # Step 4: light-response fits on 4-day windows.
    sd = np.where(np.isfinite(sd_in), sd_in, np.maximum(0.7, 0.2 * np.abs(nee_a)))
    lo4, hi4 = wins.bounds(WINDOW_REF_DAYS, per_day, n)
    day_ok = is_day & good & np.isfinite(rg) & np.isfinite(sd)
    win_ix: list[NDArray[np.int64]] = []
    neglect_vpd = np.zeros(n_win, dtype=bool)
    for w in range(n_win):
        sl = slice(int(lo4[w]), int(hi4[w]) + 1)
        ix = lo4[w] + np.flatnonzero(day_ok[sl] & np.isfinite(vpd[sl]))
        if ix.size < MIN_RECORDS:
            neglect_vpd[w] = True
            ix = lo4[w] + np.flatnonzero(day_ok[sl])
        win_ix.append(ix.astype(np.int64))
    fit_rows = np.array([ix.size >= MIN_RECORDS for ix in win_ix], dtype=bool)
    if not fit_rows.any():
        return failed("no 4-day window had 10 measured daytime NEE records", night_diag)
    rows = np.flatnonzero(fit_rows)
    mask, (rg_p, vpd_p, t_p, nee_p, sd_p) = pad_windows([win_ix[w] for w in rows], rg, vpd, ta, nee_a, sd)
    f_t = np.where(mask, lloyd_taylor(1.0, e0_win[rows][:, None], t_p + CELSIUS_TO_K), 0.0)
    sd_floor = np.nanquantile(np.where(mask, sd_p, np.nan), 0.3, axis=1)
    sigma = np.maximum(np.where(mask, sd_p, np.inf), sd_floor[:, None])
    weight = np.where(mask, 1.0 / sigma, 0.0)
    q03, q97 = np.nanquantile(np.where(mask, nee_p, np.nan), [0.03, 0.97], axis=1)
    prior = np.column_stack([np.full(rows.size, PRIOR_K), np.abs(q03 - q97), np.full(rows.size, PRIOR_ALPHA),
                             rref_night[rows]])
    prob = _Problem(rg=np.where(mask, rg_p, 0.0), vpd=np.where(mask, vpd_p, 0.0), f_t=f_t,
                    obs=np.where(mask, -nee_p, 0.0), w=weight, prior=prior)
    with np.errstate(invalid="ignore"):
        high_vpd = np.any(mask & (vpd_p >= VPD0_HPA), axis=1)
    fix_k0 = neglect_vpd[rows] | ~high_vpd

    starts = (1.0, 1.3, 0.8)

    def fit(
        fix_k: NDArray[np.bool_], alpha_fixed: NDArray[np.float64], subset: NDArray[np.bool_]
    ) -> tuple[NDArray, NDArray, NDArray, NDArray]:
        """Best of the three starts for the ``subset`` rows (others NaN); ``alpha_fixed`` NaN = α free. All starts of
        all rows go through one vectorised Levenberg–Marquardt run."""
        best_theta = np.full((rows.size, 4), np.nan)
        best_conv = np.zeros(rows.size, dtype=bool)
        best_cov = np.full((rows.size, 4, 4), np.nan)
        active = np.ones((rows.size, 4), dtype=bool)
        active[fix_k, _K] = False
        active[np.isfinite(alpha_fixed), _ALPHA] = False
        sel = np.flatnonzero(subset)
        if sel.size == 0:
            return best_theta, best_conv, best_cov, active
        m = len(starts)
        tiled = np.tile(sel, m)
        sub = _Problem(rg=prob.rg[tiled], vpd=prob.vpd[tiled], f_t=prob.f_t[tiled], obs=prob.obs[tiled],
                       w=prob.w[tiled], prior=prob.prior[tiled])
        theta0 = prior[tiled].copy()
        theta0[:, _BETA] *= np.repeat(starts, sel.size)
        theta0[fix_k[tiled], _K] = 0.0
        theta0[:, _ALPHA] = np.where(np.isfinite(alpha_fixed[tiled]), alpha_fixed[tiled], theta0[:, _ALPHA])
        theta, cost, conv, cov = _levenberg_marquardt(sub, theta0, active[tiled], fix_k[tiled])
        cost = np.where(conv, cost, np.inf).reshape(m, sel.size)
        pick = np.argmin(cost, axis=0)
        flat = pick * sel.size + np.arange(sel.size)
        best_theta[sel] = theta[flat]
        best_conv[sel] = np.isfinite(cost[pick, np.arange(sel.size)])
        best_cov[sel] = cov[flat]
        best_theta[~best_conv] = np.nan
        return best_theta, best_conv, best_cov, active

    no_alpha = np.full(rows.size, np.nan)
    all_rows = np.ones(rows.size, dtype=bool)
    th_a, cv_a, cov_a, act_a = fit(fix_k0, no_alpha, all_rows)
    k_bad = ~cv_a | (th_a[:, _K] < 0)
    fix_k1 = fix_k0 | k_bad
    if k_bad.any():
        th_b, cv_b, cov_b, act_b = fit(fix_k1, no_alpha, k_bad)
        th_a[k_bad], cv_a[k_bad], cov_a[k_bad], act_a[k_bad] = th_b[k_bad], cv_b[k_bad], cov_b[k_bad], act_b[k_bad]
    with np.errstate(invalid="ignore"):
        need_alpha = ~cv_a | ~(th_a[:, _ALPHA] <= ALPHA_MAX)

    def accept(theta: NDArray, conv: NDArray, cov: NDArray) -> NDArray[np.bool_]:
        sd_beta = np.sqrt(np.abs(cov[:, _BETA, _BETA]))
        with np.errstate(invalid="ignore"):
            return np.asarray(
                conv & np.all(np.isfinite(theta), axis=1)
                & (theta[:, _ALPHA] >= 0) & (theta[:, _RREF] >= 0) & (theta[:, _BETA] >= 0)
                & (theta[:, _BETA] < BETA_MAX) & ~((theta[:, _BETA] > 100) & (sd_beta >= theta[:, _BETA])),
                dtype=bool,
            )

    final_theta, final_cov, final_act = th_a.copy(), cov_a.copy(), act_a.copy()
    final_ok = accept(th_a, cv_a, cov_a) & ~need_alpha
    alpha_used = np.full(rows.size, np.nan)
    # α fixed at the last valid window's α: the chain depends on which windows end up valid, so iterate to a
    # fixed point (two or three rounds in practice).
    for _ in range(6):
        last = ALPHA_DEFAULT_LAST
        alpha_fix = np.full(rows.size, np.nan)
        for i in range(rows.size):
            if need_alpha[i]:
                alpha_fix[i] = last
            if final_ok[i]:
                last = float(final_theta[i, _ALPHA])
        if not need_alpha.any() or np.array_equal(alpha_fix[need_alpha], alpha_used[need_alpha]):
            break
        alpha_used = alpha_fix
        th_c, cv_c, cov_c, act_c = fit(fix_k1, np.where(need_alpha, alpha_fix, np.nan), need_alpha)
        k_neg = need_alpha & cv_c & (th_c[:, _K] < 0) & ~fix_k1
        if k_neg.any():
            th_d, cv_d, cov_d, act_d = fit(fix_k1 | k_neg, np.where(need_alpha, alpha_fix, np.nan), k_neg)
            th_c[k_neg], cv_c[k_neg], cov_c[k_neg], act_c[k_neg] = th_d[k_neg], cv_d[k_neg], cov_d[k_neg], act_d[
                k_neg]
        final_theta[need_alpha] = th_c[need_alpha]
        final_cov[need_alpha] = cov_c[need_alpha]
        final_act[need_alpha] = act_c[need_alpha]
        final_ok[need_alpha] = accept(th_c, cv_c, cov_c)[need_alpha]

    if not final_ok.any():
        return failed("the light-response curve could not be fitted in any 4-day window", night_diag)

    # Step 5: parameters at the mean index of the fitted records, interpolated to every period.
    ok_rows = rows[final_ok]
    theta_ok = final_theta[final_ok]
    cov_ok = final_cov[final_ok]
    out_of_range = ~np.all(final_act[final_ok][:, [_K, _ALPHA]], axis=1)
    e0_ok = e0_win[ok_rows]
    e0_var_ok = e0_sd_win[ok_rows] ** 2
    pos = np.array([int(np.round(np.mean(win_ix[w]) + 1.0)) - 1 for w in ok_rows], dtype=np.int64)
    _, first = np.unique(pos, return_index=True)
    first = np.sort(first)
    pos, theta_ok, cov_ok, e0_ok, e0_var_ok, out_of_range, ok_rows = (
        pos[first], theta_ok[first], cov_ok[first], e0_ok[first], e0_var_ok[first], out_of_range[first],
        ok_rows[first])
    idx = np.arange(n)
    after = np.clip(np.searchsorted(pos, idx), 0, pos.size - 1)
    before = np.clip(np.searchsorted(pos, idx, side="right") - 1, 0, pos.size - 1)
    span = (pos[after] - pos[before]).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        w_after = np.where(span > 0, (idx - pos[before]) / span, 0.5)
    w_before = 1.0 - w_after

    t_k = ta + CELSIUS_TO_K

    def predict(j: NDArray[np.int64]) -> tuple[NDArray, NDArray, NDArray, NDArray]:
        k, beta, alpha, rref = (theta_ok[j, i] for i in range(4))
        e0 = e0_ok[j]
        x = 1.0 / (TREF_K - T0_K) - 1.0 / (t_k - T0_K)
        f = np.exp(e0 * x)
        reco = rref * f
        limited = vpd > VPD0_HPA
        dv = np.where(limited, vpd - VPD0_HPA, 0.0)
        e = np.exp(-k * dv)
        amax = beta * e
        a_rg = alpha * np.maximum(rg, 0.0)
        den = a_rg + amax
        with np.errstate(invalid="ignore", divide="ignore"):
            gpp = np.where(rg > 0, a_rg * amax / den, 0.0)
            d_amax = np.where(rg > 0, a_rg * a_rg / (den * den), 0.0)
            d_alpha = np.where(rg > 0, amax * amax * np.maximum(rg, 0.0) / (den * den), 0.0)
        g_gpp = np.stack([d_amax * (-beta * dv * e), d_amax * e, d_alpha, np.zeros(n)], axis=1)
        var_gpp = np.einsum("ni,nij,nj->n", g_gpp, cov_ok[j], g_gpp)
        var_reco = f * f * cov_ok[j, _RREF, _RREF] + (rref * x * f) ** 2 * e0_var_ok[j]
        return reco, gpp, var_reco, var_gpp

    reco_b, gpp_b, vr_b, vg_b = predict(before)
    reco_a, gpp_a, vr_a, vg_a = predict(after)
    reco = w_before * reco_b + w_after * reco_a
    gpp = w_before * gpp_b + w_after * gpp_a
    reco_sd = np.sqrt(w_before**2 * vr_b + w_after**2 * vr_a)
    gpp_sd = np.sqrt(w_before**2 * vg_b + w_after**2 * vg_a)

    qc = np.where(w_before >= w_after, out_of_range[before], out_of_range[after]).astype(np.int8)
    qc[distance_to_nearest(n, pos) > 14 * per_day] = 2
    qc[~np.isfinite(reco) | ~np.isfinite(gpp)] = 3
    sd_par = np.sqrt(np.abs(np.diagonal(cov_ok, axis1=1, axis2=2)))
    out: dict[str, NDArray] = {
        "RECO_DT": reco,
        "GPP_DT": gpp,
        "RECO_DT_SD": reco_sd,
        "GPP_DT_SD": gpp_sd,
        "DT_QC": qc,
        "DT_OK": np.array(True),
        "DT_MESSAGE": np.array(""),
        "DT_WIN_INDEX": pos,
        "DT_E0": e0_ok,
        "DT_E0_SD": np.sqrt(e0_var_ok),
        "DT_E0_NIGHT": e0_win,
        "DT_E0_NIGHT_SD": e0_sd_win,
        "DT_RREF_NIGHT": rref_night,
    }
    for i, name in enumerate(PARAMETER_NAMES):
        out[f"DT_{name}"] = theta_ok[:, i]
        out[f"DT_{name}_SD"] = sd_par[:, i]
    out.update(night_diag)
    return out
