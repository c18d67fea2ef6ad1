"""Soil CO2 efflux from automated closed chambers: closures, dead band, linear and HMR fluxes, the κ-max rule, QC.

Per closure (all closures of a series at once, padded to a common length):

1. **Closures** from the chamber's open/closed state series (:func:`detect_closures`): each run of "closed"
   samples is one closure, from its first to its last closed sample.
2. **Dead band**: the first ``dead_band_s`` seconds after closing (mixing, pressure pulse of the lid) are dropped;
   time ``t`` counts from the closing instant, so the HMR initial slope is the flux *before* the chamber disturbed
   the soil (Pedersen et al. 2010).
3. **Linear regression** of the mole fraction on time: slope ``dx/dt`` (µmol mol-1 s-1), its standard error, r².
4. **HMR** (Hutchinson & Mosier 1981, Soil Sci. Soc. Am. J. 45, 311; generalised by Pedersen, Petersen & Schelde
   2010, Eur. J. Soil Sci. 61, 888-902, eq. 4): ``C(t) = φ + f0·exp(-κt)/(-κ·h)``, ``h = V/A``; the initial slope
   is ``dC/dt(0) = f0/h``. Fitted as a separable least-squares problem (linear in φ and f0, κ > 0 by a log grid and
   a golden-section search: :mod:`gateway.flux.soil.varpro`) — the algorithm of the gasfluxes R package's
   ``HMR.fit`` (Fuß; Golub-Pereyra "plinear"), reimplemented from its description; the standard error of f0 from
   the linearised covariance ``s²(JᵀJ)⁻¹`` of (φ, f0, κ), like R's ``nls``.
5. **Selection by κ-max** (Hüppi et al. 2018, PLoS ONE 13, e0200876): ``κ_max = |f_lin| / f_detect / t_c`` with
   ``f_detect`` the minimal detectable flux and ``t_c`` the closure time; HMR is used when it fitted and
   ``κ < κ_max``, the linear flux otherwise (gasfluxes ``selectfluxes(..., "kappa.max")`` uses the signed
   ``f_lin``, so a negative flux never takes HMR; we use ``|f_lin|`` so that uptake is treated like emission).
   ``f_detect``: by default the linear-regression limit ``1.96·σ/√Σ(t - t̄)²`` of each closure (Parkin et al.
   2012, J. Environ. Qual. 41, 705), or the 97.5 % quantile of fluxes fitted to simulated zero-flux closures with
   the analyzer's noise (:func:`minimum_detectable_slope`, gasfluxes documentation) passed by the caller.
6. **Flux** ``F = ρ·h·dx/dt`` with the molar density of the chamber air ``ρ = p/(R·T)`` (mol m-3): µmol m-2 s-1,
   positive = efflux (``chamber_fluxes``).

Uncertainty (1 σ): the fit's standard error of the selected slope, combined in quadrature with the relative
uncertainty of ``h`` (collar insertion, volume) and of the chamber T and p (:class:`ChamberAccuracy`).

QC bits (:data:`CHAMBER_QC_BITS`): closure too short, low r², non-linear (HMR selected), κ above κ-max, HMR fit
failed, leak (the concentration falls back in the last third of a rising closure), below the detection limit,
missing points. A too-short or empty closure gives NaN with its flag — never a number from two points.

Pure functions: numpy arrays in, :class:`ChamberResult` out, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gateway.flux.soil.varpro import fit_profile

__all__ = [
    "CHAMBER_QC_BITS",
    "Chamber",
    "ChamberAccuracy",
    "ChamberResult",
    "Closures",
    "HMRFit",
    "LinearFit",
    "chamber_fluxes",
    "closure_matrix",
    "detect_closures",
    "fit_hmr",
    "fit_linear",
    "kappa_max",
    "minimum_detectable_slope",
]

FloatArray = NDArray[np.float64]
R_GAS = 8.314462618

QC_TOO_SHORT = 1
QC_LOW_R2 = 2
QC_NONLINEAR = 4
QC_KAPPA_LIMIT = 8
QC_HMR_FAILED = 16
QC_LEAK = 32
QC_BELOW_DETECTION = 64
QC_MISSING_POINTS = 128
CHAMBER_QC_BITS: dict[int, str] = {
    QC_TOO_SHORT: "closure too short (fewer than min_points after the dead band, or shorter than min_closure_s)",
    QC_LOW_R2: "linear r2 below r2_min",
    QC_NONLINEAR: "curvature: HMR flux selected (kappa < kappa_max)",
    QC_KAPPA_LIMIT: "HMR kappa above kappa_max: linear flux used",
    QC_HMR_FAILED: "HMR fit failed or at its kappa limit: linear flux used",
    QC_LEAK: "possible leak: concentration falls in the last third of a rising closure",
    QC_BELOW_DETECTION: "|flux| below the minimal detectable flux",
    QC_MISSING_POINTS: "more than a quarter of the closure's samples missing",
}


@dataclass(frozen=True)
class Chamber:
    """Chamber geometry: ``volume_m3`` (headspace including collar and tubing, m3) and ``area_m2`` (soil area, m2)."""

    volume_m3: float
    area_m2: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.volume_m3) and self.volume_m3 > 0):
            raise ValueError(f"chamber volume_m3 must be positive (m3, e.g. 0.004 for 4 L); got {self.volume_m3}")
        if not (np.isfinite(self.area_m2) and self.area_m2 > 0):
            raise ValueError(f"chamber area_m2 must be positive (m2, e.g. 0.0318 for a 20-cm collar); got "
                             f"{self.area_m2}")
        if self.height_m > 5.0:
            raise ValueError(f"chamber height V/A = {self.height_m:g} m is implausible: volume in m3 (1 L = 0.001 "
                             "m3) and area in m2?")

    @property
    def height_m(self) -> float:
        """Effective height ``h = V/A``, m."""
        return self.volume_m3 / self.area_m2


@dataclass(frozen=True)
class ChamberAccuracy:
    """Relative 1-σ uncertainties of the metadata: ``h_rel`` (V/A), ``t_k`` (chamber air temperature, K),
    ``p_pa`` (pressure, Pa); ``noise_ppm``: analyzer noise for the detection limit (``None``: each closure's
    residual standard error of the linear fit)."""

    h_rel: float = 0.03
    t_k: float = 0.5
    p_pa: float = 100.0
    noise_ppm: float | None = None


@dataclass(frozen=True)
class Closures:
    """Closure start/end times (s, the first and last closed sample) and their durations (s)."""

    start_s: FloatArray
    end_s: FloatArray

    @property
    def duration_s(self) -> FloatArray:
        return self.end_s - self.start_s


def detect_closures(time_s: ArrayLike, closed: ArrayLike) -> Closures:
    """Closures from the chamber state series: runs of ``closed`` true/1 (NaN or 0 = open/unknown)."""
    t = np.asarray(time_s, dtype=np.float64)
    state = np.asarray(closed, dtype=np.float64)
    if t.shape != state.shape or t.ndim != 1:
        raise ValueError(f"time_s {t.shape} and closed {state.shape} must be 1-D series of one length")
    if np.any(np.diff(t) <= 0):
        raise ValueError("time_s must be strictly increasing: sort the chamber state series by time")
    on = np.nan_to_num(state, nan=0.0) > 0.5
    edges = np.diff(np.concatenate([[False], on, [False]]).astype(np.int8))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) - 1
    return Closures(start_s=t[starts], end_s=t[ends])


def closure_matrix(
    time_s: ArrayLike, values: ArrayLike, closures: Closures, dead_band_s: float
) -> tuple[FloatArray, FloatArray]:
    """Padded per-closure arrays ``(t, x)`` of shape (closures, max points): ``t`` in s since the closing instant
    (samples within the dead band dropped), ``x`` the values; NaN beyond a closure's end."""
    t = np.asarray(time_s, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if t.shape != v.shape or t.ndim != 1:
        raise ValueError(f"time_s {t.shape} and the concentration {v.shape} must be 1-D series of one length")
    if dead_band_s < 0:
        raise ValueError(f"dead_band_s must be >= 0 s; got {dead_band_s}")
    first = np.searchsorted(t, closures.start_s + dead_band_s, side="left")
    last = np.searchsorted(t, closures.end_s, side="right")
    counts = np.maximum(last - first, 0)
    width = int(counts.max()) if counts.size else 0
    width = max(width, 1)
    idx = first[:, None] + np.arange(width)[None, :]
    inside = np.arange(width)[None, :] < counts[:, None]
    idx = np.where(inside, idx, 0)
    tt = np.where(inside, t[idx] - closures.start_s[:, None], np.nan) if t.size else np.full(idx.shape, np.nan)
    xx = np.where(inside, v[idx], np.nan) if v.size else np.full(idx.shape, np.nan)
    xx = np.where(np.isfinite(tt), xx, np.nan)
    return tt, xx


@dataclass(frozen=True)
class LinearFit:
    """Per closure: ``slope`` (x per time unit), ``se``, ``intercept`` (x at t = 0), ``r2``, residual standard error
    ``rse``, ``n`` points."""

    slope: FloatArray
    se: FloatArray
    intercept: FloatArray
    r2: FloatArray
    rse: FloatArray
    n: NDArray[np.int64]


def fit_linear(t: FloatArray, x: FloatArray) -> LinearFit:
    """Ordinary least squares ``x = a + b·t`` per row (NaN points ignored); ``se`` of b = ``s/√Σ(t - t̄)²``."""
    valid = np.isfinite(t) & np.isfinite(x)
    w = valid.astype(np.float64)
    n = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        tm = np.where(valid, t, 0.0).sum(axis=1) / n
        xm = np.where(valid, x, 0.0).sum(axis=1) / n
        dt = np.where(valid, t - tm[:, None], 0.0)
        dx = np.where(valid, x - xm[:, None], 0.0)
        stt = (dt * dt).sum(axis=1)
        stx = (dt * dx).sum(axis=1)
        sxx = (dx * dx).sum(axis=1)
        slope = stx / stt
        rss = np.maximum(sxx - slope * stx, 0.0)
        rse = np.sqrt(rss / (n - 2))
        se = rse / np.sqrt(stt)
        r2 = np.where(sxx > 0, 1.0 - rss / sxx, np.nan)
    bad = n < 3
    nan = np.full(n.shape, np.nan)
    return LinearFit(
        slope=np.where(bad, nan, slope), se=np.where(bad, nan, se), intercept=np.where(bad, nan, xm - slope * tm),
        r2=np.where(bad, nan, r2), rse=np.where(bad, nan, rse), n=n.astype(np.int64),
    )


@dataclass(frozen=True)
class HMRFit:
    """Per closure: initial slope ``slope0 = dC/dt(0) = f0/h`` (x per time unit) and its ``se``, ``kappa`` (per time
    unit), asymptote ``phi`` (x), ``rse``, ``n``; ``failed`` when no fit or κ at the end of its range."""

    slope0: FloatArray
    se: FloatArray
    kappa: FloatArray
    phi: FloatArray
    rse: FloatArray
    n: NDArray[np.int64]
    failed: NDArray[np.bool_]


# κ·t_end spans near-linear (1e-4) to a curve saturated in the first 2 % of the closure (50)
_U_GRID = np.geomspace(1e-4, 50.0, 81)


def _hmr_basis(tau: FloatArray, u: FloatArray) -> FloatArray:
    # C = φ + f0·e^(-κt)/(-κh); with τ = t/T and u = κT: C = (φ - b/u) + b·(1 - e^(-uτ))/u, b = f0·T/h. The
    # (1 - e^(-uτ))/u form tends to τ as u → 0 instead of cancelling against a huge constant.
    return -np.expm1(-u * tau) / u


def fit_hmr(t: FloatArray, x: FloatArray) -> HMRFit:
    """HMR fit per row (module docstring, step 4) with ``h = 1``: returns the initial slope ``dC/dt(0)``; multiply
    by ``h`` for the HMR ``f0``. Time is scaled by each row's last time ``T`` internally (κ grid on κ·T)."""
    valid = np.isfinite(t) & np.isfinite(x)
    t_end = np.where(valid, t, -np.inf).max(axis=1)
    t_end = np.where(np.isfinite(t_end) & (t_end > 0), t_end, np.nan)
    tau = t / t_end[:, None]
    fit = fit_profile(tau, x, _hmr_basis, _U_GRID)
    u = fit.theta
    slope0 = fit.b / t_end  # dC/dt(0) = (b·h/T)/h
    kappa = u / t_end
    n = fit.n
    # linearised covariance of (φ, b, u): J = [1, g, b·∂g/∂u], s² = RSS/(n - 3)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        e = np.exp(-u[:, None] * tau)
        g = -np.expm1(-u[:, None] * tau) / u[:, None]
        dg = (tau * e) / u[:, None] - g / u[:, None]
        j2 = fit.b[:, None] * dg
        m = valid & np.isfinite(g)
        cols = [np.where(m, 1.0, 0.0), np.where(m, g, 0.0), np.where(m, j2, 0.0)]
        jtj = np.empty((x.shape[0], 3, 3))
        for i in range(3):
            for k in range(3):
                jtj[:, i, k] = (cols[i] * cols[k]).sum(axis=1)
        s2 = fit.rss / (n - 3)
        ok = np.isfinite(jtj).all(axis=(1, 2)) & (np.abs(np.linalg.det(np.where(np.isfinite(jtj), jtj, 0.0))) > 0)
        inv = np.full_like(jtj, np.nan)
        if ok.any():
            inv[ok] = np.linalg.inv(jtj[ok])
        se_b = np.sqrt(s2 * inv[:, 1, 1])
        rse = np.sqrt(s2)
    # a curve no better than the near-straight end of the κ grid (an exactly linear closure) has no HMR optimum
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(valid, x, 0.0).sum(axis=1) / valid.sum(axis=1)
        spread = np.where(valid, (x - mean[:, None]) ** 2, 0.0).sum(axis=1)
        no_gain = ~(fit.rss < fit.rss_first - 1e-10 * spread)
    failed = ~np.isfinite(slope0) | fit.at_edge | (n < 4) | no_gain
    phi = fit.a + fit.b / u
    return HMRFit(slope0=slope0, se=se_b / t_end, kappa=kappa, phi=phi, rse=rse, n=n, failed=failed)


def minimum_detectable_slope(
    t: ArrayLike, noise: float, *, n_sim: int = 1000, seed: int = 0, quantile: float = 0.975
) -> float:
    """Minimal detectable initial slope (x per time unit) of closures sampled at ``t`` with white analyzer noise
    ``noise`` (x units): the ``quantile`` of |slope| of HMR fits (linear where HMR fails) to ``n_sim`` simulated
    zero-flux closures (gasfluxes ``selectfluxes`` documentation; Hüppi et al. 2018). Deterministic for a seed."""
    tt = np.asarray(t, dtype=np.float64)
    if tt.ndim != 1 or tt.size < 4:
        raise ValueError("minimum_detectable_slope needs the sample times of one closure (>= 4 points)")
    rng = np.random.default_rng(seed)
    x = noise * rng.standard_normal((n_sim, tt.size))
    tm = np.broadcast_to(tt, x.shape).copy()
    hmr = fit_hmr(tm, x)
    lin = fit_linear(tm, x)
    slopes = np.where(hmr.failed, lin.slope, hmr.slope0)
    return float(np.quantile(np.abs(slopes), quantile))


def kappa_max(f_lin: ArrayLike, f_detect: ArrayLike, t_closure: ArrayLike) -> FloatArray:
    """``κ_max = |f_lin| / f_detect / t_c`` (Hüppi et al. 2018, eq. 3), per time unit of ``t_c``; f in one unit."""
    return np.abs(np.asarray(f_lin, dtype=np.float64)) / np.asarray(f_detect) / np.asarray(t_closure)


@dataclass(frozen=True)
class ChamberResult:
    """Per closure: ``flux`` (selected), ``flux_unc``, ``flux_lin`` (+``_se``), ``flux_hmr`` (+``_se``), µmol m-2 s-1
    positive upward; ``kappa`` and ``kappa_max`` (s-1); ``r2``; ``f_detect`` (µmol m-2 s-1); ``method`` (0 none,
    1 linear, 2 HMR); ``qc`` bit mask (:data:`CHAMBER_QC_BITS`); ``start_s``/``end_s`` of the closure; ``n``
    points used."""

    flux: FloatArray
    flux_unc: FloatArray
    flux_lin: FloatArray
    flux_lin_se: FloatArray
    flux_hmr: FloatArray
    flux_hmr_se: FloatArray
    kappa: FloatArray
    kappa_max: FloatArray
    r2: FloatArray
    f_detect: FloatArray
    method: NDArray[np.int64]
    qc: NDArray[np.int64]
    start_s: FloatArray
    end_s: FloatArray
    n: NDArray[np.int64]

    def series(self, chamber: int = 1) -> dict[str, FloatArray]:
        """Named series (docs/soil-stems.md): ``FC_SOIL_CH_<c>`` (+``_UNC``, ``_QC``, ``_LIN``, ``_HMR``,
        ``_KAPPA``, ``_R2``), one value per closure, stamped at ``end_s``."""
        p = f"FC_SOIL_CH_{chamber}"
        return {
            p: self.flux, f"{p}_UNC": self.flux_unc, f"{p}_QC": self.qc.astype(np.float64),
            f"{p}_LIN": self.flux_lin, f"{p}_HMR": self.flux_hmr, f"{p}_KAPPA": self.kappa, f"{p}_R2": self.r2,
        }


def chamber_fluxes(
    time_s: ArrayLike,
    co2_ppm: ArrayLike,
    closures: Closures,
    chamber: Chamber,
    p_pa: ArrayLike,
    t_air_c: ArrayLike,
    *,
    dead_band_s: float = 30.0,
    min_points: int = 5,
    min_closure_s: float = 60.0,
    r2_min: float = 0.9,
    f_detect: float | None = None,
    accuracy: ChamberAccuracy = ChamberAccuracy(),
) -> ChamberResult:
    """CO2 efflux per closure (module docstring): ``time_s`` (n,) s ascending, ``co2_ppm`` (n,) chamber CO2 mole
    fraction (µmol mol-1, dry if available); ``p_pa`` and ``t_air_c`` per closure (closures,) or scalar: chamber air
    pressure (Pa) and temperature (°C). ``f_detect``: minimal detectable flux, µmol m-2 s-1 (default per closure
    ``1.96·σ/√Σ(t - t̄)²`` with σ the analyzer noise or the closure's linear residual error).
    """
    n_cl = closures.start_s.size
    p = np.broadcast_to(np.asarray(p_pa, dtype=np.float64), (n_cl,))
    tc = np.broadcast_to(np.asarray(t_air_c, dtype=np.float64), (n_cl,))
    if n_cl and np.nanmin(p) < 1000.0:
        raise ValueError(f"p_pa must be in Pa (e.g. 98000); got {np.nanmin(p):g} — hPa or kPa? multiply")
    if n_cl and (np.nanmax(tc) > 80.0 or np.nanmin(tc) < -60.0):
        raise ValueError(f"t_air_c must be the chamber air temperature in degC; got up to {np.nanmax(tc):g} — K?")
    t, x = closure_matrix(time_s, co2_ppm, closures, dead_band_s)
    rho = p / (R_GAS * (tc + 273.15))  # mol m-3: µmol mol-1 · mol m-3 · m · s-1 = µmol m-2 s-1
    scale = rho * chamber.height_m
    lin = fit_linear(t, x)
    hmr = fit_hmr(t, x)
    n_expected = np.isfinite(t).sum(axis=1)
    n_valid = (np.isfinite(t) & np.isfinite(x)).sum(axis=1)
    span = np.where(np.isfinite(t), t, -np.inf).max(axis=1) - np.where(np.isfinite(t), t, np.inf).min(axis=1)
    too_short = (n_valid < min_points) | (closures.duration_s < min_closure_s) | ~(span > 0)

    flux_lin = lin.slope * scale
    flux_lin_se = lin.se * scale
    flux_hmr = np.where(hmr.failed, np.nan, hmr.slope0 * scale)
    flux_hmr_se = np.where(hmr.failed, np.nan, hmr.se * scale)
    with np.errstate(invalid="ignore", divide="ignore"):
        if f_detect is None:
            noise = np.fmin(lin.rse, np.where(hmr.failed, np.nan, hmr.rse)) if accuracy.noise_ppm is None \
                else np.full(n_cl, accuracy.noise_ppm)
            dt = np.where(np.isfinite(t) & np.isfinite(x), t, np.nan)
            dt_mean = np.where(np.isfinite(dt), dt, 0.0).sum(axis=1) / np.isfinite(dt).sum(axis=1)
            stt = np.where(np.isfinite(dt), (dt - dt_mean[:, None]) ** 2, 0.0).sum(axis=1)
            fdet = 1.96 * noise / np.sqrt(stt) * scale
        else:
            fdet = np.full(n_cl, float(f_detect))
        t_c = np.where(np.isfinite(t), t, -np.inf).max(axis=1)
        kmax = kappa_max(flux_lin, fdet, t_c)
    use_hmr = ~hmr.failed & np.isfinite(flux_hmr) & (hmr.kappa < kmax)
    flux = np.where(use_hmr, flux_hmr, flux_lin)
    se = np.where(use_hmr, flux_hmr_se, flux_lin_se)
    rel_meta = np.sqrt(accuracy.h_rel**2 + (accuracy.t_k / (tc + 273.15)) ** 2 + (accuracy.p_pa / p) ** 2)
    unc = np.hypot(se, flux * rel_meta)

    qc = np.zeros(n_cl, dtype=np.int64)
    with np.errstate(invalid="ignore"):
        qc |= np.where(too_short, QC_TOO_SHORT, 0)
        qc |= np.where(lin.r2 < r2_min, QC_LOW_R2, 0)
        qc |= np.where(use_hmr, QC_NONLINEAR, 0)
        qc |= np.where(~hmr.failed & ~use_hmr, QC_KAPPA_LIMIT, 0)
        qc |= np.where(hmr.failed, QC_HMR_FAILED, 0)
        qc |= np.where(_leak(t, x, lin), QC_LEAK, 0)
        qc |= np.where(np.abs(flux) < fdet, QC_BELOW_DETECTION, 0)
        qc |= np.where(n_valid < 0.75 * n_expected, QC_MISSING_POINTS, 0)
    method = np.where(use_hmr, 2, 1).astype(np.int64)
    nan = np.full(n_cl, np.nan)
    method = np.where(too_short | ~np.isfinite(flux), 0, method)
    return ChamberResult(
        flux=np.where(too_short, nan, flux), flux_unc=np.where(too_short, nan, unc),
        flux_lin=np.where(too_short, nan, flux_lin), flux_lin_se=np.where(too_short, nan, flux_lin_se),
        flux_hmr=np.where(too_short, nan, flux_hmr), flux_hmr_se=np.where(too_short, nan, flux_hmr_se),
        kappa=np.where(too_short | hmr.failed, nan, hmr.kappa), kappa_max=np.where(too_short, nan, kmax),
        r2=lin.r2, f_detect=fdet, method=method, qc=qc, start_s=closures.start_s, end_s=closures.end_s,
        n=n_valid.astype(np.int64),
    )


def _leak(t: FloatArray, x: FloatArray, lin: LinearFit) -> NDArray[np.bool_]:
    """A rising closure whose last third falls (a significant negative slope) and ends, on average, more than 3
    noise levels below the closure's maximum — a lid that lets chamber air out dilutes it towards ambient. The noise
    level is the residual error of a line through the first two thirds. A heuristic: a saturating (HMR) curve
    flattens but does not fall."""
    valid = np.isfinite(t) & np.isfinite(x)
    t_end = np.where(valid, t, -np.inf).max(axis=1)
    t_start = np.where(valid, t, np.inf).min(axis=1)
    cut = (t_start + 2.0 * (t_end - t_start) / 3.0)[:, None]
    last = valid & (t >= cut)
    with np.errstate(invalid="ignore", divide="ignore"):
        head = fit_linear(np.where(valid & (t < cut), t, np.nan), np.where(valid & (t < cut), x, np.nan))
        tail = fit_linear(np.where(last, t, np.nan), np.where(last, x, np.nan))
        x_max = np.where(valid, x, -np.inf).max(axis=1)
        end_mean = np.where(last, x, 0.0).sum(axis=1) / last.sum(axis=1)
        falling: NDArray[np.bool_] = (lin.slope > 0) & (tail.slope < -2.0 * tail.se) \
            & (x_max - end_mean > 3.0 * head.rse)
    return falling
