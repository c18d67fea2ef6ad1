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
   [50, 400] K. Fewer than 5 windows with an E0 (and fewer than 10 % of them): partitioning fails. The estimates
   are smoothed across time by a Gaussian process with a nugget from their standard errors
   (:func:`smooth_e0_gaussian_process`; REddyProc's default ``smoothTempSensEstimateAcrossTime = TRUE``, which
   uses the R package mlegp, Dancik & Dorman 2008), one process per year of the record, an estimate equal to the
   previous window's dropped first; every window gets the smoothed E0 and its standard deviation. Option
   ``smooth_e0=False``: windows without an estimate take the previous one (the first missing ones the median) and
   the 90 % quantile of the standard errors.
3. RREF at night per 12-day window with that E0 (least squares through the origin, ≥ 0); missing ones carried
   forward, leading missing ones take the step-2 fit's respiration at the median night temperature of the first
   window that has one (REddyProc's ``RRefFit``). It is the prior and the start of the day fit.
4. Light response per 4-day window on day records with NEE, T, Rg, VPD and an NEE uncertainty (fewer than 10:
   VPD is left out and k = 0; still fewer: no fit). Cost = Σ((NEP_mod + NEE)/σ)² + Σ((θ − θ_prior)/σ_prior)²
   over the fitted parameters, E0 fixed, priors k 0.05 ± 50, β |q03 − q97 of NEE| ± 600, α 0.1 ± 10, RREF
   RREF_night ± 80 (``isLasslopPriorsApplied``); σ = the NEE uncertainty (missing: max(0.7, 0.2·|NEE|)), raised to
   its 30 % quantile in the window (``isBoundLowerNEEUncertainty``). Three starts (β_prior × 1, 1.3, 0.8), each
   through REddyProc's cascade (``optimLRCBounds``): k is not fitted when no VPD ≥ 10 hPa is in the window (it
   keeps its prior 0.05, used in the prediction where VPD > 10 hPa); a fit with k < 0 is repeated with k = 0; a fit
   with α > 0.22 is repeated with α fixed at the α of the last window with a valid fit (0.22 before the first;
   Lasslop et al. 2010, Table A1), then k < 0 → k = 0 as before. A start's result is rejected when the optimizer did
   not converge, α < 0, RREF < 0, β < 0 or β ≥ 250; the window takes the valid start with the lowest cost and is
   rejected when β > 100 with SE(β) ≥ β. The optimizer is R's ``optim`` BFGS as REddyProc calls it (relative
   tolerance 1e-3, numerical gradient; :func:`_variable_metric`), so the parameters are REddyProc's, not the exact
   optimum (option ``exact_optimum``: Levenberg–Marquardt to convergence; on CH-Dav July 2022 the exact optimum's
   cost is up to 0.4 % lower and window RREF up to 20 % lower, docs/budget.md).
5. Each window's parameters sit at the rounded mean index of its fitted records; RECO_DT and GPP_DT are computed
   with the parameters of the two neighbouring windows from TA_F, SW_IN_F and VPD_F and averaged with weights
   linear in the distance (constant before the first and after the last window).

Parameter uncertainty: covariance = (JᵀJ + prior precision)⁻¹ of the weighted least-squares problem at the fitted
parameters (curvature; REddyProc's default is 30 bootstrap refits per window, too slow for a 2-s budget), E0's
variance from step 2 added; RECO_DT_SD and GPP_DT_SD propagate it linearly.

All windows and starts are fitted together, vectorised in numpy. Deviations from REddyProc: curvature instead of
bootstrap uncertainty (REddyProc also rejects a window where fewer than 80 % of the bootstrap refits converge).
As REddyProc (``isRefitMissingVPDWithNeglectVPDEffect``): where VPD_F is missing and a neighbouring window's k ≠ 0,
the record takes the prediction of a second fit of every window that neglects VPD (k = 0). The prediction is
REddyProc's also where it is unphysical: GPP = α·β'·Rg/(α·Rg + β') at SW_IN_F < 0 is slightly
negative; air temperature is held at ≥ −40 °C. Measured against a REddyProc product (CH-Dav, July 2022, its
per-window E0 given): per-window k, β, α, RREF, RREF_night and RECO_DT/GPP_DT equal to 1e-9 (docs/budget.md,
"Validation").

Peers: hesseflux 5.0 (``nee2gpp(method='lasslop')``) fits E0 on 12-day night windows by least absolute deviations
and the light response on 4-day day windows every 2 days without priors or weights, day = SW_IN > 10; ONEFlux
(``oneflux/partition/daytime.py``) is a port of Lasslop's original PV-Wave code with the same window sizes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

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

__all__ = ["PARAMETER_NAMES", "partition_daytime", "rectangular_light_response", "smooth_e0_gaussian_process"]

VPD0_HPA = 10.0
"""VPD above which β declines (Lasslop et al. 2010, eq. 4), hPa."""
DAY_SW_IN_MIN = 4.0
PREDICTION_TA_MIN = -40.0
"""Air temperature (°C) below which the prediction holds respiration at its −40 °C value (REddyProc's
``partGLInterpolateFluxes``; Lloyd–Taylor diverges at T0 = −46.02 °C)."""
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
_GP_REFINEMENTS = 6
_ND_STEP = 1e-3  # R optim's ndeps
_BFGS_RELTOL = 1e-3  # REddyProc's LRCFitConvergenceTolerance
_BFGS_MAXIT = 100
_STEP_REDUCTION = 0.2
_ACC_TOL = 1e-4
_REL_TEST = 10.0


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
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64], NDArray[np.float64]]:
    """E0 and its SE per reference window, the night-window length (days) that gave it (the last one tried
    where none did), and the fit's respiration at the median temperature of its records (REddyProc's ``RRefFit``
    at ``TRefFit``; µmol m-2 s-1)."""
    n = nee.size
    e0 = np.full(wins.central.size, np.nan)
    sd = np.full(wins.central.size, np.nan)
    r_med = np.full(wins.central.size, np.nan)
    days_used = np.full(wins.central.size, NIGHT_WINDOW_DAYS, dtype=np.int64)
    for days in (NIGHT_WINDOW_DAYS, *NIGHT_WINDOW_EXTENSIONS):
        todo = np.flatnonzero(~np.isfinite(e0))
        if todo.size == 0:
            break
        days_used[todo] = days
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
        t_med = np.nanmedian(tk, axis=1)
        r_med[rows[ok]] = lloyd_taylor(fit.rref[ok], fit.e0[ok], t_med[ok])
    return e0, sd, days_used, r_med


def _gp_neg_log_likelihood(
    log_par: NDArray[np.float64], x: NDArray[np.float64], z: NDArray[np.float64], d: NDArray[np.float64]
) -> tuple[float, float, float, NDArray[np.float64] | None]:
    """−2·log-likelihood (constants dropped) of the constant-mean Gaussian process with Gaussian correlation and a
    nugget proportional to ``d``, profiled over the mean and the process variance (Santner et al. 2003, ch. 3).

    ``log_par`` = (log length scale, log nugget-to-process-variance ratio). Returns (−2 log L, μ̂, σ̂², lower
    Cholesky factor of K = R + γ·diag(d)), ``inf`` and None where K is not positive definite."""
    from scipy.linalg import lapack

    ell, gam = np.exp(log_par)
    k = np.exp(-(((x[:, None] - x[None, :]) / ell) ** 2))
    k[np.diag_indices_from(k)] += gam * d
    chol, info = lapack.dpotrf(k, lower=1, clean=1)
    if info != 0:
        return np.inf, np.nan, np.nan, None
    sol, _ = lapack.dpotrs(chol, np.column_stack([np.ones_like(z), z]), lower=1)
    ki1, kiz = sol[:, 0], sol[:, 1]
    mu = float(np.sum(kiz) / np.sum(ki1))
    s2 = float((z - mu) @ (kiz - mu * ki1)) / z.size
    if not np.isfinite(s2) or s2 <= 0:
        return np.inf, np.nan, np.nan, None
    logdet = 2.0 * float(np.sum(np.log(np.diag(chol))))
    return z.size * np.log(s2) + logdet, mu, s2, np.asarray(chol, dtype=float)


def _cho_solve(chol: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    from scipy.linalg import lapack

    sol, _ = lapack.dpotrs(chol, b, lower=1)
    return np.asarray(sol, dtype=float)


def smooth_e0_gaussian_process(
    x_days: ArrayLike, e0: ArrayLike, e0_sd: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
    """Smooth per-window E0 estimates across time with a Gaussian process (REddyProc's default
    ``smoothTempSensEstimateAcrossTime = TRUE``, which calls the R package mlegp: Dancik & Dorman 2008,
    Bioinformatics 24, 1966; the model of Santner, Williams & Notz 2003, The Design and Analysis of Computer
    Experiments, ch. 3).

    Model: ``E0(x) = μ + Z(x) + ε``, ``Cov Z(x), Z(x') = σ²·exp(−((x − x')/ℓ)²)`` (Gaussian correlation), ε
    independent with variance ``τ·SE_i²`` (a nugget proportional to each estimate's squared standard error, the
    factor τ estimated). μ (generalised least squares), σ² and, numerically, ℓ and τ/σ² are maximum-likelihood
    estimates (a 9 × 9 grid of log ℓ in 1–3000 days and log τ/σ² in 1e-4–1e4, refined by a pattern search to
    1/64 of the grid step). Prediction at every window:
    the kriging mean ``μ + σ²·rᵀV⁻¹(E0 − μ)`` and the standard deviation of the predicted expected value
    ``sqrt(σ² − σ⁴·rᵀV⁻¹r)`` (V = σ²R + τ·diag(SE²)), to which the nugget's standard deviation ``sqrt(τ)·SE_i``
    is added (for windows without an estimate: the 90 % quantile of the fitted nuggets), as REddyProc's
    ``partGLSmoothTempSens`` reports it.

    ``x_days`` the window centres (days), ``e0``/``e0_sd`` (K) NaN where a window has no estimate. Returns the
    smoothed E0 and its standard deviation at every window (K), or None with fewer than 3 estimates.
    """
    xa = np.asarray(x_days, dtype=float)
    za = np.asarray(e0, dtype=float)
    sa = np.asarray(e0_sd, dtype=float)
    fin = np.isfinite(za) & np.isfinite(sa) & (sa > 0)
    if np.count_nonzero(fin) < 3:
        return None
    x, z = xa[fin], za[fin]
    scale = float(np.mean(sa[fin] ** 2))
    d = sa[fin] ** 2 / scale
    lo, hi = np.log([1.0, 1e-4]), np.log([3000.0, 1e4])
    step = (hi - lo) / 8.0
    best_val, p = np.inf, lo.copy()
    for le in np.linspace(lo[0], hi[0], 9):
        for lg in np.linspace(lo[1], hi[1], 9):
            val = _gp_neg_log_likelihood(np.array([le, lg]), x, z, d)[0]
            if val < best_val:
                best_val, p = val, np.array([le, lg])
    for _ in range(_GP_REFINEMENTS):  # pattern search: halve the step around the best point
        step = step / 2.0
        centre = p.copy()
        for i in (-1, 0, 1):
            for j in (-1, 0, 1):
                if i == j == 0:
                    continue
                q = np.clip(centre + step * np.array([i, j]), lo, hi)
                val = _gp_neg_log_likelihood(q, x, z, d)[0]
                if val < best_val:
                    best_val, p = val, q
    _, mu, s2, chol = _gp_neg_log_likelihood(p, x, z, d)
    if chol is None:
        return None
    ell, gam = np.exp(p)
    r = np.exp(-(((xa[:, None] - x[None, :]) / ell) ** 2))
    kr = _cho_solve(chol, r.T)  # K⁻¹ r for every prediction point (columns)
    fit = mu + r @ _cho_solve(chol, z - mu)
    var = s2 * (1.0 - np.sum(r.T * kr, axis=0))
    nugget = s2 * gam * d  # τ·SE² in K²
    nug_all = np.full(xa.size, float(np.quantile(nugget, 0.9)))
    nug_all[fin] = nugget
    return np.asarray(fit, dtype=float), np.sqrt(np.maximum(var, 0.0)) + np.sqrt(nug_all)


def _smooth_e0(
    wins: _Windows, e0_fit: NDArray[np.float64], sd_fit: NDArray[np.float64], days_used: NDArray[np.int64],
    per_day: int,
) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
    """REddyProc's ``partGLSmoothTempSens`` rules around :func:`smooth_e0_gaussian_process`: an estimate equal to
    the previous window's is dropped (the same night records), one process per year of the record (year =
    ⌈first day of the night window / 365⌉), a year without estimates takes the mean E0 of the others with 1.5 × the
    90 % quantile of their standard deviations. None (use the unsmoothed rule) when no year has 3 estimates."""
    e0 = e0_fit.copy()
    with np.errstate(invalid="ignore"):
        e0[1:][np.diff(e0_fit) == 0] = np.nan
    start_day = wins.central // per_day - 1
    day_start = np.maximum(1, start_day + WINDOW_REF_DAYS // 2 - days_used // 2)
    year = -(-day_start // 365)
    x_days = wins.central / per_day
    out_e0 = np.full(e0.size, np.nan)
    out_sd = np.full(e0.size, np.nan)
    for yr in np.unique(year):
        sel = year == yr
        res = smooth_e0_gaussian_process(x_days[sel], e0[sel], sd_fit[sel])
        if res is not None:
            out_e0[sel], out_sd[sel] = res
    done = np.isfinite(out_e0)
    if not done.any():
        return None
    if not done.all():
        out_e0[~done] = float(np.mean(out_e0[done]))
        out_sd[~done] = 1.5 * float(np.quantile(out_sd[done], 0.9))
    return out_e0, out_sd


def _given_temp_sens(
    fixed: Mapping[str, ArrayLike] | None, n_win: int
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]] | None:
    """Per-window ``E0``, ``E0_SD`` and optional ``RREF`` given by the caller (REddyProc's
    ``controlGLPart$fixedTempSens``), checked: one value for all windows or one per reference window."""
    if fixed is None:
        return None
    out = []
    for key in ("E0", "E0_SD", "RREF"):
        if key not in fixed:
            if key == "RREF":
                out.append(np.full(n_win, np.nan))
                continue
            raise PartitionError(f"fixed_temp_sens needs the key {key!r} (K), one value or one per 4-day window")
        v = np.atleast_1d(np.asarray(fixed[key], dtype=float))
        if v.size == 1:
            v = np.full(n_win, v[0])
        if v.shape != (n_win,):
            raise PartitionError(f"fixed_temp_sens[{key!r}] has {v.size} values; give one or one per 4-day "
                                 f"reference window ({n_win} in this record)")
        if key != "RREF" and not np.all(np.isfinite(v)):
            raise PartitionError(f"fixed_temp_sens[{key!r}] must be finite in every window")
        out.append(v)
    return out[0], out[1], out[2]


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
    dv: NDArray[np.float64] = field(init=False)  # VPD − VPD0 where VPD > VPD0, else 0 (hPa)

    def __post_init__(self) -> None:
        self.dv = np.where(self.vpd > VPD0_HPA, self.vpd - VPD0_HPA, 0.0)


def _model(
    p: _Problem, theta: NDArray[np.float64], fix_vpd: NDArray[np.bool_], rows: NDArray[np.int64] | slice = slice(None)
) -> tuple[NDArray, NDArray]:
    """NEP prediction and its Jacobian (rows × records × 4) for parameters ``theta`` of ``rows``."""
    rg, vpd, f_t = p.rg[rows], p.vpd[rows], p.f_t[rows]
    k, beta, alpha, rref = (theta[:, i : i + 1] for i in range(4))
    limited = (vpd > VPD0_HPA) & ~fix_vpd[:, None]
    dv = np.where(limited, vpd - VPD0_HPA, 0.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        e = np.exp(-k * dv)
        amax = beta * e
        a_rg = alpha * rg
        den = a_rg + amax
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
    """REddyProc's cost (``computeCost``): Σ((NEP_mod − NEP)/σ)² + Σ over the fitted parameters of
    ((θ − θ_prior)/σ_prior)²; ``inf`` where not finite."""
    k = np.where(fix_vpd, 0.0, theta[:, _K])[:, None]
    beta, alpha, rref = theta[:, _BETA : _BETA + 1], theta[:, _ALPHA : _ALPHA + 1], theta[:, _RREF : _RREF + 1]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        amax = beta * np.exp(-k * p.dv[rows])
        a_rg = alpha * p.rg[rows]
        r = (a_rg * amax / (a_rg + amax) - rref * p.f_t[rows] - p.obs[rows]) * p.w[rows]
        pr = np.where(active, (theta - p.prior[rows]) / PRIOR_SD, 0.0)
        c = np.einsum("ij,ij->i", r, r) + np.sum(pr * pr, axis=1)
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


def _numeric_gradient(
    p: _Problem, theta: NDArray[np.float64], fix_vpd: NDArray[np.bool_], active: NDArray[np.bool_],
    rows: NDArray[np.int64],
) -> NDArray[np.float64]:
    """Central differences with R optim's default step ``ndeps = 1e-3`` on each active parameter."""
    g = np.zeros_like(theta)
    for i in range(4):
        on = active[:, i]
        if not on.any():
            continue
        up, down = theta.copy(), theta.copy()
        up[:, i] += _ND_STEP
        down[:, i] -= _ND_STEP
        f_up = _cost(p, up[on], fix_vpd[on], active[on], rows[on])
        f_down = _cost(p, down[on], fix_vpd[on], active[on], rows[on])
        g[on, i] = (f_up - f_down) / (2.0 * _ND_STEP)
    return g


def _variable_metric(
    p: _Problem, theta0: NDArray[np.float64], active: NDArray[np.bool_], fix_vpd: NDArray[np.bool_]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    """Minimise each row's cost as R's ``optim(method = "BFGS")`` does with REddyProc's ``reltol = 1e-3``.

    The variable metric method of Nash (1990, Compact Numerical Methods for Computers, 2nd ed., Algorithm 21) as R's
    ``optim`` documents it ("BFGS": Fletcher 1970's update, numerical gradient by central differences with step
    1e-3, at most 100 iterations): from the identity as inverse-Hessian estimate, a backtracking line search along
    −B·g (step 1, × 0.2 until the cost falls by at least 1e-4 × the predicted decrease; a step that no longer moves
    any parameter by more than the rounding of 10 + x ends it); the BFGS update of B when the curvature tᵀc > 0, a
    restart from the identity otherwise or after 2n gradient steps; stop when a restart makes no progress or the
    cost changes by less than ``reltol·(|f| + reltol)``. Vectorised over rows (each row keeps its own state).
    Returns θ, cost and whether the row converged within the iterations.
    """
    m = theta0.shape[0]
    rows_all = np.arange(m)
    n_par = np.count_nonzero(active, axis=1)
    eye = np.eye(4)
    b = theta0.copy()
    f_last = _cost(p, b, fix_vpd, active, rows_all)
    fmin = f_last.copy()
    g = _numeric_gradient(p, b, fix_vpd, active, rows_all)
    gradcount = np.ones(m, dtype=np.int64)
    it = np.ones(m, dtype=np.int64)
    ilast = gradcount.copy()
    bmat = np.zeros((m, 4, 4))
    done = ~np.isfinite(fmin)
    converged = np.zeros(m, dtype=bool)
    while True:
        live = np.flatnonzero(~done)
        if live.size == 0:
            break
        act = active[live]
        reset = ilast[live] == gradcount[live]
        bm = bmat[live]
        bm[reset] = eye * act[reset][:, None, :]
        x = b[live].copy()
        c = g[live].copy()
        t = -np.einsum("rij,rj->ri", bm, c)
        gradproj = np.sum(t * c, axis=1)
        count = np.zeros(live.size, dtype=np.int64)
        n_l = n_par[live]
        down = gradproj < 0
        step = np.ones(live.size)
        f_new = f_last[live].copy()
        b_new = b[live].copy()
        searching = down.copy()
        while searching.any():
            sr = np.flatnonzero(searching)
            trial = x[sr] + step[sr, None] * t[sr]
            b_new[sr] = trial
            same = np.count_nonzero(((_REL_TEST + x[sr]) == (_REL_TEST + trial)) & act[sr], axis=1)
            count[sr] = same
            moving = same < n_l[sr]
            ev = sr[moving]
            if ev.size:
                f_ev = _cost(p, b_new[ev], fix_vpd[live[ev]], act[ev], live[ev])
                f_new[ev] = f_ev
                ok = np.isfinite(f_ev) & (f_ev <= fmin[live[ev]] + gradproj[ev] * step[ev] * _ACC_TOL)
                step[ev[~ok]] *= _STEP_REDUCTION
                searching[ev[ok]] = False
            searching[sr[~moving]] = False
        # rows that searched: judge the step
        dr = np.flatnonzero(down)
        b[live[dr]] = b_new[dr]
        f_last[live[dr]] = f_new[dr]
        fm = fmin[live[dr]]
        with np.errstate(invalid="ignore"):
            enough = np.abs(f_new[dr] - fm) > _BFGS_RELTOL * (np.abs(fm) + _BFGS_RELTOL)
        count[dr[~enough]] = n_l[dr[~enough]]
        fmin[live[dr[~enough]]] = f_new[dr[~enough]]
        progress = dr[count[dr] < n_l[dr]]
        if progress.size:
            lp = live[progress]
            fmin[lp] = f_new[progress]
            g_new = _numeric_gradient(p, b[lp], fix_vpd[lp], active[lp], lp)
            g[lp] = g_new
            gradcount[lp] += 1
            it[lp] += 1
            tt = t[progress] * step[progress, None]
            cc = g_new - c[progress]
            d1 = np.sum(tt * cc, axis=1)
            upd = d1 > 0
            if upd.any():
                bu = bm[progress][upd]
                xv = np.einsum("rij,rj->ri", bu, cc[upd])
                d2 = 1.0 + np.sum(xv * cc[upd], axis=1) / d1[upd]
                tu = tt[upd]
                bu = bu + (d2[:, None, None] * tu[:, :, None] * tu[:, None, :] - xv[:, :, None] * tu[:, None, :]
                           - tu[:, :, None] * xv[:, None, :]) / d1[upd][:, None, None]
                sub = bm[progress]
                sub[upd] = bu
                bm[progress] = sub
            ilast[lp[~upd]] = gradcount[lp[~upd]]
        stalled = dr[count[dr] >= n_l[dr]]
        st = live[stalled]
        again = ilast[st] < gradcount[st]
        count[stalled[again]] = 0
        ilast[st[again]] = gradcount[st[again]]
        # uphill direction: restart unless just restarted
        ur = np.flatnonzero(~down)
        lu = live[ur]
        just = ilast[lu] == gradcount[lu]
        count[ur] = np.where(just, n_l[ur], 0)
        ilast[lu[~just]] = gradcount[lu[~just]]
        bmat[live] = bm
        out = it[live] >= _BFGS_MAXIT
        periodic = (gradcount[live] - ilast[live]) > 2 * n_l
        ilast[live[periodic & ~out]] = gradcount[live[periodic & ~out]]
        fin = (count == n_l) & (ilast[live] == gradcount[live]) & ~out
        converged[live[fin]] = True
        done[live[fin | out]] = True
    return b, fmin, converged & np.isfinite(fmin)


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
    fixed_temp_sens: Mapping[str, ArrayLike] | None = None,
    smooth_e0: bool = True,
    exact_optimum: bool = False,
) -> dict[str, NDArray]:
    """Daytime partitioning (Lasslop et al. 2010 as REddyProc implements it; module docstring).

    Inputs on a regular ascending grid starting at local midnight: ``time_mid_utc_s`` (middle of each period,
    seconds UTC), ``nee`` measured NEE after u* filtering (NaN where missing; µmol m-2 s-1), ``ta_f`` gap-filled
    air temperature (°C), ``sw_in_f`` gap-filled SW_IN (W m-2), ``vpd_f`` gap-filled VPD (**hPa**), site ``lat``,
    ``lon`` (degrees), ``utc_offset_h``; ``nee_sd`` the random uncertainty of NEE (µmol m-2 s-1, e.g. MDS's
    standard deviation or NEE_F_RANDUNC; missing → max(0.7, 0.2·|NEE|)).

    Options: ``smooth_e0`` (default True) smooths the per-window E0 by a Gaussian process
    (:func:`smooth_e0_gaussian_process`, REddyProc's default); False keeps each window's own estimate and carries
    it into windows without one (REddyProc's ``smoothTempSensEstimateAcrossTime = FALSE``). ``exact_optimum``
    (default False) fits the light response to its optimum by Levenberg–Marquardt instead of stopping where
    REddyProc's BFGS stops. ``fixed_temp_sens`` = {"E0": …, "E0_SD": …[, "RREF": …]} (K, K, µmol m-2 s-1; one value
    or one per 4-day reference window) skips steps 2 (and 3), as REddyProc's ``controlGLPart$fixedTempSens``.

    Returns a dict of numpy arrays: per period ``RECO_DT``, ``GPP_DT``, ``RECO_DT_SD``, ``GPP_DT_SD``
    (µmol m-2 s-1), ``DT_QC`` (0 good fit; 1 k or α had to be fixed; 2 nearest fitted window > 14 days away;
    3 failed), ``DT_NIGHT`` and ``DT_DAY`` (the day/night rule of step 1); per fitted window ``DT_WIN_INDEX``
    (record the parameters sit at), ``DT_WIN_CENTRE`` (central record of its reference window, where REddyProc
    reports the parameters), ``DT_WIN_FIXED`` (k or α not fitted), ``DT_k``, ``DT_beta``, ``DT_alpha``,
    ``DT_RREF``, ``DT_E0`` and ``*_SD``; per reference window ``DT_E0_NIGHT``, ``DT_E0_NIGHT_SD`` (after
    smoothing), ``DT_E0_NIGHT_FIT``, ``DT_E0_NIGHT_FIT_SD`` (the windows' own fits, NaN where none; absent with
    ``fixed_temp_sens``), ``DT_RREF_NIGHT_FIT`` (those fits' respiration at the median temperature of their
    records), ``DT_RREF_NIGHT``; 0-d ``DT_OK`` and ``DT_MESSAGE``. Too little data gives NaN with
    ``DT_OK`` False and the reason; malformed input raises :class:`~gateway.flux.budget.partition_nt.PartitionError`.
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
    given = _given_temp_sens(fixed_temp_sens, n_win)
    if given is None:
        e0_fit, e0_sd_fit, days_used, rref_fit = _night_e0(wins, night, nee_a, ta, per_day)
        n_e0 = int(np.count_nonzero(np.isfinite(e0_fit)))
        night_diag: dict[str, NDArray] = {"DT_E0_NIGHT_FIT": e0_fit, "DT_E0_NIGHT_FIT_SD": e0_sd_fit,
                                          "DT_RREF_NIGHT_FIT": rref_fit}
        if n_e0 < 5 and n_e0 < 0.1 * n_win:
            return failed(f"a temperature sensitivity E0 in [50, 400] K could be estimated for only {n_e0} of "
                          f"{n_win} night windows", night_diag)
        smoothed = _smooth_e0(wins, e0_fit, e0_sd_fit, days_used, per_day) if smooth_e0 else None
        if smoothed is None:
            e0_win = _forward_fill(e0_fit, float(np.nanmedian(e0_fit)))
            e0_sd_win = np.where(np.isfinite(e0_fit), e0_sd_fit, np.nanquantile(e0_sd_fit, 0.9))
        else:
            e0_win, e0_sd_win = smoothed
        rref_given = np.full(n_win, np.nan)
        # REddyProc fills leading windows without a night RREF with the E0 fit's respiration at the median night
        # temperature of the first window that has one (`RRefFit`, which its `E0Smooth$RRef` matches partially).
        first_fill = rref_fit[np.isfinite(rref_fit)]
    else:
        first_fill = np.zeros(0)
        e0_win, e0_sd_win, rref_given = given
        night_diag = {}
    lo12, hi12 = wins.bounds(NIGHT_WINDOW_DAYS, per_day, n)
    rref_night = rref_given.copy()
    for w in range(n_win):
        if np.isfinite(rref_given[w]):
            continue
        ix = _night_records(night, ta, int(lo12[w]), int(hi12[w]))
        if ix.size < MIN_RECORDS:
            continue
        f = lloyd_taylor(1.0, e0_win[w], ta[ix] + CELSIUS_TO_K)
        ok = np.isfinite(f)
        rref_night[w] = max(0.0, float(np.dot(nee_a[ix][ok], f[ok]) / np.dot(f[ok], f[ok])))
    if not np.any(np.isfinite(rref_night)):
        return failed("no night window had 10 records for the night-time reference respiration", night_diag)
    lead = float(first_fill[0]) if first_fill.size else float(rref_night[np.isfinite(rref_night)][0])
    rref_night = _forward_fill(rref_night, lead)

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
    # k not fitted: 0 where VPD is neglected, else it keeps its prior 0.05 (no VPD >= 10 hPa in the window, so
    # the fit cannot see it; the prediction then uses it where VPD > 10 hPa, as REddyProc's optimLRCBounds).
    k_val0 = np.where(neglect_vpd[rows], 0.0, PRIOR_K)

    # Each of the three starts (β_prior × 1, 1.3, 0.8) runs REddyProc's whole cascade (optimLRCBounds); the valid
    # result with the lowest cost is the window's (fitLRC). Rows of `big`: start-major copies of the windows.
    starts = np.array([1.0, 1.3, 0.8])
    nr = rows.size
    tiled = np.tile(np.arange(nr), starts.size)
    big = _Problem(rg=prob.rg[tiled], vpd=prob.vpd[tiled], f_t=prob.f_t[tiled], obs=prob.obs[tiled],
                   w=prob.w[tiled], prior=prob.prior[tiled])
    base = prior[tiled].copy()
    base[:, _BETA] *= np.repeat(starts, nr)
    nb = tiled.size

    def optimise(sel: NDArray[np.int64], fix_k: NDArray[np.bool_], k_value: NDArray[np.float64],
                 alpha_value: NDArray[np.float64]) -> tuple[NDArray, NDArray, NDArray, NDArray]:
        theta0 = base[sel].copy()
        theta0[:, _K] = np.where(fix_k, k_value, theta0[:, _K])
        fixed_alpha = np.isfinite(alpha_value)
        theta0[:, _ALPHA] = np.where(fixed_alpha, alpha_value, theta0[:, _ALPHA])
        active = np.ones((sel.size, 4), dtype=bool)
        active[fix_k, _K] = False
        active[fixed_alpha, _ALPHA] = False
        if sel.size == 0:
            return theta0, np.zeros(0), np.zeros(0, dtype=bool), active
        sub = _Problem(rg=big.rg[sel], vpd=big.vpd[sel], f_t=big.f_t[sel], obs=big.obs[sel], w=big.w[sel],
                       prior=big.prior[sel])
        if exact_optimum:
            theta, cost, conv, _ = _levenberg_marquardt(sub, theta0, active, fix_k)
        else:
            theta, cost, conv = _variable_metric(sub, theta0, active, fix_k)
        return theta, cost, conv, active

    fk0, kv0 = fix_k0[tiled], k_val0[tiled]
    no_alpha = np.full(nb, np.nan)
    every = np.arange(nb)
    th1, c1, cv1, ac1 = optimise(every, fk0, kv0, no_alpha)
    with np.errstate(invalid="ignore"):
        k_neg1 = ~fk0 & ~(th1[:, _K] >= 0)
    res_theta, res_cost, res_conv, res_act = th1.copy(), c1.copy(), cv1.copy(), ac1.copy()
    sel_a = np.flatnonzero(k_neg1)  # k < 0: refit with k = 0
    th2, c2, cv2, ac2 = optimise(sel_a, np.ones(sel_a.size, dtype=bool), np.zeros(sel_a.size), no_alpha[sel_a])
    res_theta[sel_a], res_cost[sel_a], res_conv[sel_a], res_act[sel_a] = th2, c2, cv2, ac2
    with np.errstate(invalid="ignore"):
        need_alpha = ~(res_theta[:, _ALPHA] <= ALPHA_MAX)  # α > 0.22 (or no fit): α fixed at the last valid α
    k0_for_alpha = fk0 | k_neg1
    kv_for_alpha = np.where(k_neg1, 0.0, kv0)
    base_theta, base_cost, base_conv, base_act = res_theta.copy(), res_cost.copy(), res_conv.copy(), res_act.copy()

    def window_choice(theta: NDArray, cost: NDArray, conv: NDArray, act: NDArray
                      ) -> tuple[NDArray, NDArray, NDArray, NDArray]:
        """Per window: the lowest-cost start among the valid ones (converged, α, RREF, β ≥ 0, β < 250), its
        covariance and active set, and whether it passes β > 100 with SE(β) ≥ β."""
        with np.errstate(invalid="ignore"):
            valid = (conv & np.all(np.isfinite(theta), axis=1) & (theta[:, _ALPHA] >= 0) & (theta[:, _RREF] >= 0)
                     & (theta[:, _BETA] >= 0) & (theta[:, _BETA] < BETA_MAX))
        cost_v = np.where(valid, cost, np.inf).reshape(starts.size, nr)
        pick = np.argmin(cost_v, axis=0)
        flat = pick * nr + np.arange(nr)
        ok = np.isfinite(cost_v[pick, np.arange(nr)])
        th, ac = theta[flat], act[flat]
        a_mat, _ = _normal_equations(prob, np.where(np.isfinite(th), th, 0.0), fk0[flat] | ~ac[:, _K], ac,
                                     np.arange(nr))
        act2 = ac[:, :, None] & ac[:, None, :]
        with np.errstate(invalid="ignore"):
            cov = np.where(act2, np.linalg.inv(a_mat), 0.0)
            sd_beta = np.sqrt(np.abs(cov[:, _BETA, _BETA]))
            ok &= ~((th[:, _BETA] > 100) & (sd_beta >= th[:, _BETA]))
        return th, cov, ac, ok

    final_theta, final_cov, final_act, final_ok = window_choice(base_theta, base_cost, base_conv, base_act)
    alpha_used = np.full(nr, np.nan)
    # α fixed at the α of the last window with a valid fit (0.22 before the first): the chain depends on which
    # windows end up valid, so iterate to a fixed point (two or three rounds in practice).
    for _ in range(6):
        last = ALPHA_DEFAULT_LAST
        alpha_fix = np.full(nr, np.nan)
        for i in range(nr):
            alpha_fix[i] = last
            if final_ok[i]:
                last = float(final_theta[i, _ALPHA])
        need_w = need_alpha.reshape(starts.size, nr).any(axis=0)
        if not need_w.any() or np.array_equal(alpha_fix[need_w], alpha_used[need_w]):
            break
        alpha_used = alpha_fix
        sel = np.flatnonzero(need_alpha)
        av = alpha_fix[tiled[sel]]
        th3, c3, cv3, ac3 = optimise(sel, k0_for_alpha[sel], kv_for_alpha[sel], av)
        with np.errstate(invalid="ignore"):
            k_neg3 = ~k0_for_alpha[sel] & ~(th3[:, _K] >= 0)
        sel4 = np.flatnonzero(k_neg3)
        th4, c4, cv4, ac4 = optimise(sel[sel4], np.ones(sel4.size, dtype=bool), np.zeros(sel4.size), av[sel4])
        th3[sel4], c3[sel4], cv3[sel4], ac3[sel4] = th4, c4, cv4, ac4
        res_theta, res_cost, res_conv, res_act = base_theta.copy(), base_cost.copy(), base_conv.copy(), base_act.copy()
        res_theta[sel], res_cost[sel], res_conv[sel], res_act[sel] = th3, c3, cv3, ac3
        final_theta, final_cov, final_act, final_ok = window_choice(res_theta, res_cost, res_conv, res_act)

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

    t_k = np.maximum(ta, PREDICTION_TA_MIN) + CELSIUS_TO_K

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
        a_rg = alpha * rg  # REddyProc's formula also at SW_IN_F < 0 (a slightly negative GPP)
        den = a_rg + amax
        with np.errstate(invalid="ignore", divide="ignore"):
            gpp = a_rg * amax / den
            d_amax = a_rg * a_rg / (den * den)
            d_alpha = amax * amax * rg / (den * den)
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
    # REddyProc (isRefitMissingVPDWithNeglectVPDEffect): where VPD_F is missing and a neighbouring window's k is not
    # 0, its prediction is undefined; those records take the prediction of a second fit of every window that
    # neglects VPD (k = 0, records without the VPD condition) with the same E0 and night RREF.
    k_b, k_a = theta_ok[before, _K], theta_ok[after, _K]
    redo = ~np.isfinite(vpd) & ((k_b != 0) | (k_a != 0))
    if redo.any() and np.isfinite(vpd).any():
        alt = partition_daytime(t, nee_a, ta, rg, np.full(n, np.nan), lat, lon, utc_offset_h, nee_sd=sd_in,
                                fixed_temp_sens={"E0": e0_win, "E0_SD": e0_sd_win, "RREF": rref_night},
                                exact_optimum=exact_optimum)
        if bool(alt["DT_OK"]):
            reco, gpp = np.where(redo, alt["RECO_DT"], reco), np.where(redo, alt["GPP_DT"], gpp)
            reco_sd = np.where(redo, alt["RECO_DT_SD"], reco_sd)
            gpp_sd = np.where(redo, alt["GPP_DT_SD"], gpp_sd)

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
        "DT_WIN_CENTRE": wins.central[ok_rows],
        "DT_WIN_FIXED": out_of_range,
        "DT_NIGHT": is_night,
        "DT_DAY": is_day,
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
