"""Soil CO2 efflux by the gradient method: a CO2 profile (GMP252 probes at several depths), soil temperature and
moisture at the same depths, and site metadata → surface efflux with uncertainty and QC flags per period.

Conventions: depth ``z`` in m, positive downward, strictly increasing; CO2 mole fraction in µmol mol-1 (ppm) as the
probe reports it; molar concentration ``C`` in µmol m-3; diffusivity ``D`` in m2 s-1; fluxes in µmol m-2 s-1,
**positive upward** (out of the soil, the sign of FC). Arrays are ``(n_periods, n_depths)``; one row per averaging
period (:func:`period_means` makes the rows from a fast series).

1. **Probe reading → molar concentration.** An NDIR probe senses the number of CO2 molecules in its optical path
   (a molar concentration) and converts it to a mole fraction with the pressure and temperature it is told or
   measures (its *compensation*). To first order (ideal gas, Beer-Lambert) the reported mole fraction is
   ``x_rep = C·R·T_comp/p_comp``, hence ``C = x_rep·p_comp/(R·T_comp)`` — the molar concentration follows from the
   compensation settings, not from the actual pressure (:func:`co2_molar_concentration_from_probe`). The GMP252
   compensates temperature with its on-board sensor and pressure with a set point (1013.25 hPa by default, the probe
   has no barometer: GMP252 User Guide M211897EN-D §2.4.2; registers 0x0200-0x020E, drivers/gmp252). The true mole
   fraction at the actual ``p, T`` is ``x = x_rep·(p_comp/p)·(T/T_comp)`` (:func:`co2_mole_fraction_corrected`);
   converting ``x_rep`` with the *actual* pressure instead, the ideal-gas conversion ``C = x·p/(R·T)``
   (:func:`co2_molar_concentration`), is off by ``p/p_comp`` (-6 % at 950 hPa). Pressure broadening makes the real
   sensitivity larger than the ideal gas (GMP343 User's Guide M210514EN-E, "Effects of pressure": +0.15 % of reading
   per hPa uncompensated): where pressure swings matter, write the station pressure to the probe's volatile
   compensation register instead.
2. **Diffusivity** ``D = ξ(ε, φ)·D0(T, p)`` at each probe depth (:mod:`gateway.flux.soil.diffusivity`).
3. **Fick's first law between depths** (Fick 1855; e.g. Maier & Schack-Kirchner 2014, Agric. For. Meteorol.
   192-193, 78-95, eq. 1): ``F(z_m) = D̄·(C_{i+1} - C_i)/(z_{i+1} - z_i)`` at the mid depth ``z_m``, with ``D̄``
   the harmonic mean of the two depths' diffusivities (two half layers in series; Turcu et al. 2005, Vadose Zone J.
   4, 1161-1169) — :func:`layer_fluxes`.
4. **Surface efflux** ``F0`` by one of (``method``):

   - ``layer_extrapolation`` — Tang et al. (2005, Agric. For. Meteorol. 132, 212-227): the fluxes of the two
     shallowest layers extrapolated linearly to ``z = 0``: ``F0 = F1 - z_m1·(F2 - F1)/(z_m2 - z_m1)``. ≥ 3 depths.
   - ``regression`` — after Tang et al. (2003, Agric. For. Meteorol. 118, 207-220) as implemented by NEON's
     neonSoilFlux (Zobitz et al.): ``dC/dz`` the least-squares slope of ``C`` on ``z`` over all depths, times ``D``
     extrapolated to ``z = 0`` by a least-squares line of ``D`` on ``z``. ≥ 2 depths.
   - ``profile_fit`` — the gradient at the surface of an exponential profile ``C(z) = a + b·(1 - exp(-z/λ))`` fitted
     to the probes and, when given, the atmospheric CO2 at ``z = 0`` (the exponential-profile approach reviewed by
     Maier & Schack-Kirchner 2014, §3.2; Davidson et al. 2006, Glob. Change Biol. 12, 944): ``dC/dz(0) = b/λ``
     times ``D`` of the shallowest probe. ≥ 3 points.
   - ``top_layer`` — De Jong & Schappert (1972, Soil Sci. 113, 328-333): ``F0 = D1·(C1 - C_atm)/z1`` between the
     atmosphere and the shallowest probe. Needs ``co2_atm``.

5. **Uncertainty** (1 σ, µmol m-2 s-1, :class:`GradientResult`): ``flux_unc_meas`` by linear propagation of the
   sensor accuracies (CO2, soil temperature, soil water content per probe, independent; pressure common to all)
   through the whole chain, with partial derivatives by central differences; ``flux_unc_model`` the standard
   deviation of ``F0`` across every diffusivity model the site metadata allow (structural uncertainty: the choice of
   ξ(ε) moves F0 by factors of 2-3, Pingintha et al. 2010, Tellus B 62, 47-58); ``flux_unc`` their quadrature sum.

6. **QC flags** (bit mask, :data:`QC_BITS`): frozen soil (any ``T ≤ 0 °C``: ice blocks pores, ξ(ε) no longer
   applies), saturated soil (``ε ≤ eps_min``), inverted gradient (CO2 not increasing with depth, or a negative
   efflux), a probe out of range (CO2, temperature or water content outside the sensor's range), missing input (the
   value is NaN), fit at its limit / surface diffusivity extrapolated below zero. A flagged value is still computed
   where the inputs allow it, so the reason travels with the number; NaN inputs give NaN with the flag.

Pure functions: numpy arrays in, :class:`GradientResult` out, no I/O. Malformed input (depths not increasing,
shapes that disagree, a depth without temperature or moisture, porosity outside (0, 1], water content in percent)
raises ``ValueError`` naming the input and the fix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gateway.flux.soil.diffusivity import (
    D0Model,
    DiffusivityModel,
    SoilSite,
    air_filled_porosity,
    applicable_models,
    d0_co2,
    relative_diffusivity,
)
from gateway.flux.soil.varpro import fit_profile

__all__ = [
    "QC_BITS",
    "GradientMethod",
    "GradientResult",
    "ProbeAccuracy",
    "ProbeCompensation",
    "co2_molar_concentration",
    "co2_molar_concentration_from_probe",
    "co2_mole_fraction_corrected",
    "layer_fluxes",
    "period_means",
    "qc_reasons",
    "soil_efflux_gradient",
    "surface_flux",
]

FloatArray = NDArray[np.float64]
GradientMethod = Literal["layer_extrapolation", "regression", "profile_fit", "top_layer"]
GRADIENT_METHODS: tuple[GradientMethod, ...] = ("layer_extrapolation", "regression", "profile_fit", "top_layer")

R_GAS = 8.314462618
"""Molar gas constant, J mol-1 K-1 (CODATA 2018)."""

QC_FROZEN = 1
QC_SATURATED = 2
QC_INVERTED_GRADIENT = 4
QC_OUT_OF_RANGE = 8
QC_MISSING_INPUT = 16
QC_FIT_LIMIT = 32
QC_BITS: dict[int, str] = {
    QC_FROZEN: "frozen soil (a soil temperature <= 0 degC)",
    QC_SATURATED: "saturated soil (air-filled porosity <= eps_min)",
    QC_INVERTED_GRADIENT: "inverted gradient (CO2 not increasing with depth, or negative efflux)",
    QC_OUT_OF_RANGE: "a probe out of its range (CO2, temperature or water content)",
    QC_MISSING_INPUT: "missing input (a depth without CO2, temperature or water content)",
    QC_FIT_LIMIT: "profile fit at its limit or surface diffusivity extrapolated below zero",
}


def qc_reasons(flags: int) -> list[str]:
    """The reasons of a QC bit mask, in bit order."""
    return [text for bit, text in QC_BITS.items() if flags & bit]


@dataclass(frozen=True)
class ProbeCompensation:
    """What the CO2 probe assumed when it converted its reading to ppm.

    ``p_pa``: the pressure set point, Pa (GMP252 default 101325 = 1013.25 hPa). ``t_c``: the compensation
    temperature, °C; ``None`` means the probe compensated with its own measured temperature (the GMP252's default),
    which is then ``t_probe_c`` if given to :func:`soil_efflux_gradient`, otherwise the soil temperature at the
    probe's depth.
    """

    p_pa: float = 101325.0
    t_c: float | None = None


@dataclass(frozen=True)
class ProbeAccuracy:
    """Sensor accuracies (1 σ) used for the measurement uncertainty.

    CO2: ``co2_abs_ppm + co2_rel·reading``, ppm (defaults after the GMP252 datasheet's ±(40 ppm + 2 % of reading),
    taken as 1 σ — an assumption, set your probe's calibration certificate). ``t_c``: soil temperature, K.
    ``swc``: volumetric water content, m3 m-3 (typical for a factory-calibrated capacitance probe). ``p_pa``:
    pressure, Pa (common to all depths).
    """

    co2_abs_ppm: float = 40.0
    co2_rel: float = 0.02
    t_c: float = 0.5
    swc: float = 0.03
    p_pa: float = 100.0


@dataclass(frozen=True)
class ValidRange:
    """Sensor ranges; a reading outside flags ``QC_OUT_OF_RANGE``. CO2 ppm (GMP252: 0-10 000 ppm specified; the
    probe reports up to ~30 000), temperature °C, water content m3 m-3."""

    co2_ppm: tuple[float, float] = (0.0, 10000.0)
    t_c: tuple[float, float] = (-40.0, 60.0)
    swc: tuple[float, float] = (0.0, 0.7)


def co2_molar_concentration(co2_ppm: ArrayLike, t_c: ArrayLike, p_pa: ArrayLike) -> FloatArray:
    """Ideal-gas molar concentration ``C = x·p/(R·T)``, µmol m-3, of a mole fraction ``x`` in µmol mol-1 at the
    actual temperature (°C) and pressure (Pa). Use it for a *true* mole fraction; for a probe reading use
    :func:`co2_molar_concentration_from_probe`."""
    x = np.asarray(co2_ppm, dtype=np.float64)
    return x * np.asarray(p_pa, dtype=np.float64) / (R_GAS * (np.asarray(t_c, dtype=np.float64) + 273.15))


def co2_molar_concentration_from_probe(
    co2_reported_ppm: ArrayLike, compensation: ProbeCompensation, t_probe_c: ArrayLike
) -> FloatArray:
    """Molar concentration, µmol m-3, sensed by an NDIR probe that reported ``x_rep`` (µmol mol-1) with the given
    compensation: ``C = x_rep·p_comp/(R·T_comp)`` (module docstring, step 1). ``t_probe_c``: the probe's own
    temperature (°C), used when the compensation temperature is the measured one."""
    t_comp = np.asarray(t_probe_c if compensation.t_c is None else compensation.t_c, dtype=np.float64)
    return co2_molar_concentration(co2_reported_ppm, t_comp, compensation.p_pa)


def co2_mole_fraction_corrected(
    co2_reported_ppm: ArrayLike, t_c: ArrayLike, p_pa: ArrayLike, compensation: ProbeCompensation,
    t_probe_c: ArrayLike | None = None,
) -> FloatArray:
    """True CO2 mole fraction, µmol mol-1, at the actual ``t_c`` (°C) and ``p_pa`` (Pa) of a reading made with
    ``compensation``: ``x = x_rep·(p_comp/p)·(T/T_comp)`` (first-order ideal-gas correction)."""
    t_probe = t_c if t_probe_c is None else t_probe_c
    c = co2_molar_concentration_from_probe(co2_reported_ppm, compensation, t_probe)
    return c * R_GAS * (np.asarray(t_c, dtype=np.float64) + 273.15) / np.asarray(p_pa, dtype=np.float64)


def layer_fluxes(depth_m: FloatArray, conc: FloatArray, diff: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Fick's first law between adjacent depths: ``(F, z_mid)``; ``F`` (rows, depths-1) in µmol m-2 s-1, positive
    upward, from ``conc`` (µmol m-3) and ``diff`` (m2 s-1) of shape (rows, depths); harmonic-mean ``D̄``."""
    dz = np.diff(depth_m)
    with np.errstate(invalid="ignore", divide="ignore"):
        d_bar = 2.0 / (1.0 / diff[:, :-1] + 1.0 / diff[:, 1:])
    d_bar = np.where((diff[:, :-1] > 0) & (diff[:, 1:] > 0), d_bar, 0.0)
    d_bar = np.where(np.isfinite(diff[:, :-1]) & np.isfinite(diff[:, 1:]), d_bar, np.nan)
    flux = d_bar * np.diff(conc, axis=1) / dz
    return flux, depth_m[:-1] + dz / 2.0


def _ols_slope_intercept(x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
    xm = x.mean()
    sxx = ((x - xm) ** 2).sum()
    slope = ((y - y.mean(axis=1, keepdims=True)) * (x - xm)).sum(axis=1) / sxx
    return slope, y.mean(axis=1) - slope * xm


_LAMBDA_GRID = np.geomspace(0.01, 10.0, 61)


def _exp_basis(z: FloatArray, lam: FloatArray) -> FloatArray:
    return -np.expm1(-z / lam)


def surface_flux(
    depth_m: FloatArray, conc: FloatArray, diff: FloatArray, method: GradientMethod,
    conc_atm: FloatArray | None = None,
) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Surface efflux ``F0`` (µmol m-2 s-1, positive upward) per row by ``method`` (module docstring, step 4), and
    a per-row flag: profile fit at its limit / surface diffusivity extrapolated below zero.

    ``conc``, ``diff``: (rows, depths) in µmol m-3 and m2 s-1; ``conc_atm``: (rows,) µmol m-3 at ``z = 0`` —
    required by ``top_layer``, used by ``profile_fit`` when given.
    """
    rows = conc.shape[0]
    limit = np.zeros(rows, dtype=bool)
    if method == "layer_extrapolation":
        if depth_m.size < 3:
            raise ValueError("method 'layer_extrapolation' needs >= 3 depths (two layer fluxes); use 'regression' or "
                             "'top_layer' for a 2-probe profile")
        flux, zm = layer_fluxes(depth_m, conc, diff)
        f1, f2 = flux[:, 0], flux[:, 1]
        return f1 - zm[0] * (f2 - f1) / (zm[1] - zm[0]), limit
    if method == "regression":
        slope, _ = _ols_slope_intercept(depth_m, conc)
        _, d_surface = _ols_slope_intercept(depth_m, diff)
        limit = d_surface < 0
        return slope * np.maximum(d_surface, 0.0), limit
    if method == "top_layer":
        if conc_atm is None:
            raise ValueError("method 'top_layer' needs the atmospheric CO2 (co2_atm_ppm) at the surface")
        return diff[:, 0] * (conc[:, 0] - conc_atm) / depth_m[0], limit
    if method == "profile_fit":
        z = np.broadcast_to(depth_m, conc.shape)
        y = conc
        if conc_atm is not None:
            z = np.concatenate([np.zeros((rows, 1)), z], axis=1)
            y = np.concatenate([conc_atm[:, None], conc], axis=1)
        if z.shape[1] < 3:
            raise ValueError("method 'profile_fit' needs >= 3 points: 3 depths, or 2 depths and co2_atm_ppm")
        fit = fit_profile(np.ascontiguousarray(z, dtype=np.float64), y, _exp_basis, _LAMBDA_GRID)
        return diff[:, 0] * fit.b / fit.theta, fit.at_edge
    raise ValueError(f"unknown gradient method {method!r}; use one of {', '.join(GRADIENT_METHODS)}")


@dataclass(frozen=True)
class GradientResult:
    """Gradient-method result per period (rows). Fluxes µmol m-2 s-1 positive upward; concentrations µmol m-3;
    diffusivity m2 s-1; porosity m3 m-3. ``qc`` is the bit mask of :data:`QC_BITS`. ``layer_*`` and ``depth_mid``
    describe the fluxes between adjacent probes."""

    flux: FloatArray
    flux_unc: FloatArray
    flux_unc_meas: FloatArray
    flux_unc_model: FloatArray
    qc: NDArray[np.int64]
    layer_flux: FloatArray
    depth_mid: FloatArray
    depth: FloatArray
    conc: FloatArray
    diffusivity: FloatArray
    eps: FloatArray
    method: GradientMethod
    diffusivity_model: DiffusivityModel
    d0_model: D0Model
    model_fluxes: dict[str, FloatArray] = field(default_factory=dict)

    def series(self, profile: int = 1) -> dict[str, FloatArray]:
        """The results as named series (docs/soil-stems.md "Output names"): ``FC_SOIL_GRAD`` and its ``_UNC``,
        ``_UNC_MEAS``, ``_UNC_MODEL``, ``_QC``; per depth ``DS_CO2_<profile>_<k>_1`` (m2 s-1) and ``CO2_CONC_…``
        (µmol m-3); per layer ``FC_SOIL_LAYER_<profile>_<k>_1``."""
        out: dict[str, FloatArray] = {
            "FC_SOIL_GRAD": self.flux,
            "FC_SOIL_GRAD_UNC": self.flux_unc,
            "FC_SOIL_GRAD_UNC_MEAS": self.flux_unc_meas,
            "FC_SOIL_GRAD_UNC_MODEL": self.flux_unc_model,
            "FC_SOIL_GRAD_QC": self.qc.astype(np.float64),
        }
        for k in range(self.depth.size):
            out[f"DS_CO2_{profile}_{k + 1}_1"] = self.diffusivity[:, k]
            out[f"CO2_CONC_{profile}_{k + 1}_1"] = self.conc[:, k]
        for k in range(self.depth_mid.size):
            out[f"FC_SOIL_LAYER_{profile}_{k + 1}_1"] = self.layer_flux[:, k]
        return out


def _as_rows(name: str, values: ArrayLike, shape: tuple[int, int], fix: str) -> FloatArray:
    a = np.asarray(values, dtype=np.float64)
    if a.ndim == 1 and shape[1] == a.size and a.size != shape[0]:
        a = np.broadcast_to(a, shape)
    elif a.ndim == 1 and a.size == shape[0]:
        a = np.broadcast_to(a[:, None], shape)
    elif a.ndim == 0:
        a = np.broadcast_to(a, shape)
    if a.shape != shape:
        raise ValueError(f"{name} has shape {np.shape(values)}, expected {shape} (periods × depths); {fix}")
    all_missing = ~np.isfinite(a).any(axis=0)
    if a.ndim == 2 and all_missing.any():
        k = int(np.flatnonzero(all_missing)[0])
        raise ValueError(f"{name} has no value at depth index {k} in any period; {fix}")
    return np.ascontiguousarray(a)


def _check_depths(depth_m: ArrayLike) -> FloatArray:
    z = np.asarray(depth_m, dtype=np.float64)
    if z.ndim != 1 or z.size < 2:
        raise ValueError(f"depths: need a 1-D list of >= 2 probe depths in m (e.g. [0.05, 0.15, 0.30]); got {z}")
    if not np.all(np.isfinite(z)) or np.any(z <= 0):
        raise ValueError(f"depths must be positive numbers in m below the surface (a missing depth?); got {z}")
    if np.any(np.diff(z) <= 0):
        raise ValueError(f"depths must be strictly increasing (shallowest first, m); got {z}: sort the columns")
    if z.max() > 5.0:
        raise ValueError(f"depths look like cm, not m (max {z.max():g}); divide by 100")
    return z


def _diffusivity(
    swc: FloatArray, t_c: FloatArray, p_pa: FloatArray, phi: FloatArray, model: DiffusivityModel,
    d0_model: D0Model, site: SoilSite | None,
) -> tuple[FloatArray, FloatArray]:
    eps = air_filled_porosity(swc, phi)
    return relative_diffusivity(eps, phi, model, site=site) * d0_co2(t_c, p_pa, d0_model), eps


def soil_efflux_gradient(
    depth_m: ArrayLike,
    co2_ppm: ArrayLike,
    t_soil_c: ArrayLike,
    swc: ArrayLike,
    p_pa: ArrayLike,
    site: SoilSite,
    *,
    method: GradientMethod = "layer_extrapolation",
    diffusivity_model: DiffusivityModel = "millington_quirk1961",
    d0_model: D0Model = "massman1998",
    compensation: ProbeCompensation | None = ProbeCompensation(),
    t_probe_c: ArrayLike | None = None,
    co2_atm_ppm: ArrayLike | None = None,
    accuracy: ProbeAccuracy = ProbeAccuracy(),
    valid_range: ValidRange = ValidRange(),
    eps_min: float = 0.05,
    uncertainty: bool = True,
) -> GradientResult:
    """Soil surface CO2 efflux by the gradient method, one value per period (row); see the module docstring.

    ``depth_m`` (depths,) m positive down, strictly increasing. ``co2_ppm`` (periods, depths): probe readings,
    µmol mol-1. ``t_soil_c`` (periods, depths) °C and ``swc`` (periods, depths) m3 m-3 at the probe depths (a
    scalar or (depths,) broadcasts). ``p_pa``: air pressure, Pa, (periods,) or scalar. ``site``: porosity (or bulk
    and particle density) and, for the texture models, the texture. ``compensation``: what the probe assumed
    (``None``: its readings are true mole fractions, converted at the actual T and p). ``t_probe_c``: the probes'
    own temperatures for a compensation with the measured temperature (default: the soil temperature).
    ``co2_atm_ppm``: CO2 above the surface, µmol mol-1 (for ``top_layer``, optional for ``profile_fit``).
    ``eps_min``: air-filled porosity (m3 m-3) at or below which the soil counts as saturated.
    """
    z = _check_depths(depth_m)
    x_rep = np.asarray(co2_ppm, dtype=np.float64)
    if x_rep.ndim == 1 and x_rep.size == z.size:
        x_rep = x_rep[None, :]
    if x_rep.ndim != 2 or x_rep.shape[1] != z.size:
        raise ValueError(f"co2_ppm has shape {x_rep.shape}; expected (periods, {z.size}) — one column per depth "
                         f"{z.tolist()} m")
    shape = (x_rep.shape[0], z.size)
    t = _as_rows("t_soil_c", t_soil_c, shape, "give the soil temperature (degC) at every CO2 probe depth")
    theta = _as_rows("swc", swc, shape, "give the soil water content (m3 m-3) at every CO2 probe depth")
    t_probe = t if t_probe_c is None else _as_rows("t_probe_c", t_probe_c, shape, "one probe temperature per depth")
    p = np.asarray(p_pa, dtype=np.float64)
    p = np.broadcast_to(p, (shape[0],)) if p.ndim == 0 else p
    if p.shape != (shape[0],):
        raise ValueError(f"p_pa has shape {p.shape}; expected a scalar or ({shape[0]},) — one pressure per period")
    phi = np.broadcast_to(site.phi(), (z.size,)).astype(np.float64)
    c_atm_ppm = None
    if co2_atm_ppm is not None:
        c_atm_ppm = np.broadcast_to(np.asarray(co2_atm_ppm, dtype=np.float64), (shape[0],))
    if method not in GRADIENT_METHODS:
        raise ValueError(f"unknown gradient method {method!r}; use one of {', '.join(GRADIENT_METHODS)}")
    if method == "top_layer" and c_atm_ppm is None:
        raise ValueError("method 'top_layer' needs co2_atm_ppm, the CO2 mole fraction above the soil (umol mol-1)")

    # The profile fit depends on the concentrations alone, and the uncertainty's perturbations of T (when the probes
    # compensate with their own temperature), θ and the diffusivity model leave them unchanged: each distinct set of
    # concentrations is fitted once (the fit is most of the method's cost).
    fitted: dict[bytes, tuple[FloatArray, NDArray[np.bool_]]] = {}

    def surface(conc: FloatArray, diff: FloatArray, conc_atm: FloatArray | None) -> tuple[FloatArray,
                                                                                        NDArray[np.bool_]]:
        if method != "profile_fit":
            return surface_flux(z, conc, diff, method, conc_atm)
        key = conc.tobytes() + (b"" if conc_atm is None else conc_atm.tobytes())
        if key not in fitted:
            unit = np.zeros_like(diff)
            unit[:, 0] = 1.0
            fitted[key] = surface_flux(z, conc, unit, method, conc_atm)  # dC/dz at the surface: b/λ
        gradient, limit = fitted[key]
        return diff[:, 0] * gradient, limit

    def chain(
        x: FloatArray, t_: FloatArray, th: FloatArray, p_: FloatArray, model: DiffusivityModel
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, NDArray[np.bool_]]:
        if compensation is None:
            conc = co2_molar_concentration(x, t_, p_[:, None])
            conc_atm = None if c_atm_ppm is None else co2_molar_concentration(c_atm_ppm, t_[:, 0], p_)
        else:
            t_comp = t_ if t_probe_c is None else t_probe
            conc = co2_molar_concentration_from_probe(x, compensation, t_comp)
            # the atmospheric value is a true mole fraction at the surface (another analyzer, or a constant)
            conc_atm = None if c_atm_ppm is None else co2_molar_concentration(c_atm_ppm, t_[:, 0], p_)
        diff, eps = _diffusivity(th, t_, p_[:, None], phi, model, d0_model, site)
        f0, limit = surface(conc, diff, conc_atm)
        return f0, conc, diff, eps, limit

    flux, conc, diff, eps, limit = chain(x_rep, t, theta, p, diffusivity_model)
    layer_flux, z_mid = layer_fluxes(z, conc, diff)

    missing = ~(np.isfinite(x_rep).all(axis=1) & np.isfinite(t).all(axis=1) & np.isfinite(theta).all(axis=1)
                & np.isfinite(p))
    if c_atm_ppm is not None and method in ("top_layer", "profile_fit"):
        missing |= ~np.isfinite(c_atm_ppm)
    qc = np.zeros(shape[0], dtype=np.int64)
    with np.errstate(invalid="ignore"):
        qc |= np.where((t <= 0.0).any(axis=1), QC_FROZEN, 0)
        qc |= np.where((eps <= eps_min).any(axis=1) | (theta >= phi).any(axis=1), QC_SATURATED, 0)
        qc |= np.where((np.diff(x_rep, axis=1) < 0).any(axis=1) | (flux < 0), QC_INVERTED_GRADIENT, 0)
        out = ((x_rep < valid_range.co2_ppm[0]) | (x_rep > valid_range.co2_ppm[1])
               | (t < valid_range.t_c[0]) | (t > valid_range.t_c[1])
               | (theta < valid_range.swc[0]) | (theta > valid_range.swc[1])).any(axis=1)
        qc |= np.where(out, QC_OUT_OF_RANGE, 0)
    qc |= np.where(missing, QC_MISSING_INPUT, 0)
    qc |= np.where(limit, QC_FIT_LIMIT, 0)
    flux = np.where(missing, np.nan, flux)

    unc_meas = np.full(shape[0], np.nan)
    unc_model = np.full(shape[0], np.nan)
    model_fluxes: dict[str, FloatArray] = {}
    if uncertainty:
        unc_meas = _measurement_uncertainty(chain, x_rep, t, theta, p, diffusivity_model, accuracy)
        for model in applicable_models(site):
            model_fluxes[model] = flux if model == diffusivity_model else chain(x_rep, t, theta, p, model)[0]
        stack = np.vstack(list(model_fluxes.values()))
        unc_model = np.std(stack, axis=0, ddof=1) if stack.shape[0] > 1 else np.zeros(shape[0])
    unc = np.hypot(unc_meas, unc_model)
    return GradientResult(
        flux=flux, flux_unc=np.where(missing, np.nan, unc), flux_unc_meas=np.where(missing, np.nan, unc_meas),
        flux_unc_model=np.where(missing, np.nan, unc_model), qc=qc, layer_flux=layer_flux, depth_mid=z_mid,
        depth=z, conc=conc, diffusivity=diff, eps=eps, method=method, diffusivity_model=diffusivity_model,
        d0_model=d0_model, model_fluxes=model_fluxes,
    )


Chain = Callable[
    [FloatArray, FloatArray, FloatArray, FloatArray, DiffusivityModel],
    tuple[FloatArray, FloatArray, FloatArray, FloatArray, NDArray[np.bool_]],
]


def _measurement_uncertainty(
    chain: Chain, x: FloatArray, t: FloatArray, theta: FloatArray, p: FloatArray, model: DiffusivityModel,
    acc: ProbeAccuracy,
) -> FloatArray:
    """Linear propagation, ``σ_F² = Σ (∂F/∂u · σ_u)²`` over the per-depth CO2, T, θ (independent) and the common
    pressure; ``∂F/∂u · σ_u`` by a central difference of ±σ_u/2 (exact for a locally linear F)."""
    var = np.zeros(x.shape[0])
    sigma_x = acc.co2_abs_ppm + acc.co2_rel * np.abs(x)
    for k in range(x.shape[1]):
        for name, sigma in (("x", sigma_x[:, k]), ("t", acc.t_c), ("theta", acc.swc)):
            hi = {"x": x, "t": t, "theta": theta}
            lo = {"x": x, "t": t, "theta": theta}
            for d, sign in ((hi, 0.5), (lo, -0.5)):
                col = d[name].copy()
                col[:, k] = col[:, k] + sign * sigma
                d[name] = col
            f_hi = chain(hi["x"], hi["t"], hi["theta"], p, model)[0]
            f_lo = chain(lo["x"], lo["t"], lo["theta"], p, model)[0]
            var += (f_hi - f_lo) ** 2
    f_hi = chain(x, t, theta, p + 0.5 * acc.p_pa, model)[0]
    f_lo = chain(x, t, theta, p - 0.5 * acc.p_pa, model)[0]
    var += (f_hi - f_lo) ** 2
    return np.sqrt(var)


def period_means(
    time_s: ArrayLike, values: ArrayLike, period_s: float = 1800.0, *, min_fraction: float = 0.5,
    expected_step_s: float | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Block means of a fast series over periods ending at multiples of ``period_s`` (end-labelled, like
    AmeriFlux TIMESTAMP_END): ``(period_end_s, means)``.

    ``time_s`` (n,) s since an epoch, ascending; ``values`` (n,) or (n, k). A period with fewer valid samples than
    ``min_fraction`` of ``period_s / expected_step_s`` (default: the median step) is NaN — so a gap is a NaN period,
    never a mean of a few samples.
    """
    t = np.asarray(time_s, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    one_d = v.ndim == 1
    v2 = v[:, None] if one_d else v
    if t.ndim != 1 or v2.shape[0] != t.size:
        raise ValueError(f"time_s ({t.shape}) and values ({v.shape}) must have the same length")
    if t.size == 0:
        empty = np.empty((0,) if one_d else (0, v2.shape[1]))
        return np.empty(0), empty
    if np.any(np.diff(t) < 0):
        raise ValueError("time_s must be ascending: sort the series by time first")
    step = float(np.median(np.diff(t))) if expected_step_s is None and t.size > 1 else (expected_step_s or period_s)
    idx = np.ceil(t / period_s).astype(np.int64)  # a sample at the period end belongs to that period
    first = int(idx[0])
    idx -= first
    n_periods = int(idx[-1]) + 1
    ok = np.isfinite(v2)
    sums = np.zeros((n_periods, v2.shape[1]))
    counts = np.zeros((n_periods, v2.shape[1]))
    for j in range(v2.shape[1]):
        sums[:, j] = np.bincount(idx, weights=np.where(ok[:, j], v2[:, j], 0.0), minlength=n_periods)
        counts[:, j] = np.bincount(idx, weights=ok[:, j].astype(np.float64), minlength=n_periods)
    need = min_fraction * period_s / step
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts >= need, sums / counts, np.nan)
    ends = (np.arange(n_periods, dtype=np.float64) + first) * period_s
    result: FloatArray = means[:, 0] if one_d else means
    return ends, result
