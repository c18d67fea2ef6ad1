"""Turbulent fluxes from covariances (all inputs are period covariances and means; no arrays).

Sign convention: positive upward (away from the surface). Units are those of the FLUXNET/AmeriFlux names:
FC µmol m-2 s-1, FH2O mmol m-2 s-1, H and LE W m-2, TAU kg m-1 s-2, USTAR m s-1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from gateway.flux.ec.airprops import AirProperties
from gateway.flux.ec.constants import (
    GRAVITY,
    KAPPA_DRY_AIR,
    M_DRY_AIR,
    M_H2O,
    P_REFERENCE_THETA,
    SONIC_HUMIDITY_COEF,
    VON_KARMAN,
)


def friction_velocity(cov_uw: float, cov_vw: float) -> float:
    """u* = (u'w'² + v'w'²)^¼, m s-1 (Weber 1999, Boundary-Layer Meteorol. 93, 197, eq. 9), covariances in m² s-2."""
    return (cov_uw * cov_uw + cov_vw * cov_vw) ** 0.25


def momentum_flux(rho_a: float, ustar: float, cov_uw: float) -> float:
    """τ = ρa·u*² with the sign of u'w', kg m-1 s-2 (Stull 1988, eq. 2.10b: τ = −ρa·u*² for the usual downward
    transport, u'w' < 0), ρa in kg m-3, u* in m s-1, u'w' in m² s-2. The sign convention is EddyPro's: without
    rotation u'w' can be positive, and so is τ then."""
    return math.copysign(rho_a * ustar * ustar, cov_uw)


def sensible_heat_uncorrected(rho_cp: float, cov_wts: float) -> float:
    """Buoyancy-like flux from the sonic temperature, ρcp·w'Ts', W m-2 (ρcp in J m-3 K-1, w'Ts' in K m s-1)."""
    return rho_cp * cov_wts


def sensible_heat_van_dijk(rho_cp: float, cov_wts: float, ts_mean: float, evap_kg: float, rho_a: float,
                           q: float) -> float:
    """Sensible heat flux with the sonic-temperature humidity correction, W m-2 (van Dijk, Moene & de Bruin 2004,
    "The principles of surface flux physics", Wageningen University, section on the sonic temperature; after
    Schotanus et al. 1983), in the form EddyPro applies (EDDYPRO-REFERENCE.md):

    H = ρcp·w'Ts' − ρcp·0.51·T̄s·E/ρa − ρcp·0.51·Q·w'Ts'

    with E the evapotranspiration in kg m-2 s-1, T̄s in K, ρa in kg m-3, Q the specific humidity in kg kg-1."""
    c = SONIC_HUMIDITY_COEF
    return rho_cp * cov_wts - rho_cp * c * ts_mean * evap_kg / rho_a - rho_cp * c * q * cov_wts


def latent_heat(h2o_flux_mmol: float, lambda_v: float) -> float:
    """LE = F_H2O·10⁻³·Mw·λ, W m-2, F_H2O in mmol m-2 s-1, λ in J kg-1."""
    return h2o_flux_mmol * 1e-3 * M_H2O * lambda_v


def evaporation_kg(h2o_flux_mmol: float) -> float:
    """E = F_H2O·Mw/1000, kg m-2 s-1, F_H2O in mmol m-2 s-1."""
    return h2o_flux_mmol * M_H2O / 1000.0


def flux_from_mixing_ratio(cov_w_chi: float, vd: float) -> float:
    """Flux of a gas given as dry mole fraction (mixing ratio): F = w'χ'/Vd (Webb et al. 1980, Q. J. R. Meteorol.
    Soc. 106, 85: no density terms apply to mixing ratios; Ibrom et al. 2007). Units: covariance in m s-1 times the
    mixing-ratio unit (µmol mol-1 → µmol m-2 s-1; mmol mol-1 → mmol m-2 s-1), Vd in m3 mol-1."""
    return cov_w_chi / vd


def wpl_open_path(cov_wc: float, c_mean: float, cov_wq: float, q_mean: float, cov_wt: float, air: AirProperties
                  ) -> tuple[float, float]:
    """Webb, Pearman & Leuning (1980, eqs. 24 and 25) for molar densities, in molar form.

    Inputs: w'c' (m s-1 · mol m-3) and mean c (mol m-3) of the trace gas; w'n_v', mean n_v for water vapour (same
    units); w'T' the air-temperature flux (K m s-1); n_d = ρd/Md. Returns (F_c, F_v) in mol m-2 s-1:

    F_v = (1 + n_v/n_d)·(w'n_v' + n_v·w'T'/T̄a)
    F_c = w'c' + (c̄/n_d)·w'n_v' + (1 + n_v/n_d)·c̄·w'T'/T̄a

    which is WPL's w'ρc' + μ·(ρc/ρd)·w'ρv' + (1 + μσ)·(ρc/T)·w'T' with μ = Md/Mv and σ = ρv/ρd.
    """
    n_d = air.rho_d / M_DRY_AIR
    ratio = q_mean / n_d
    f_v = (1.0 + ratio) * (cov_wq + q_mean * cov_wt / air.ta)
    f_c = cov_wc + (c_mean / n_d) * cov_wq + (1.0 + ratio) * c_mean * cov_wt / air.ta
    return f_c, f_v


def potential_temperature(ta_k: float, p_pa: float) -> float:
    """Potential temperature θ = Ta·(p0/p)^(Rd/cpd), K, with p0 = 100 kPa and Rd/cpd = 0.286 (Stull 1988,
    "An Introduction to Boundary Layer Meteorology", eq. 1.5.1a; Foken 2008, "Micrometeorology", eq. 2.34),
    Ta in K, p in Pa."""
    return ta_k * (P_REFERENCE_THETA / p_pa) ** KAPPA_DRY_AIR


def obukhov_length(ustar: float, h: float, rho_cp: float, ta_mean: float, p_pa: float) -> float:
    """Obukhov length L = −u*³·θ̄ / (k·g·H/ρcp), m (Obukhov 1946; Foken 2008, "Micrometeorology", eq. 2.78, where
    the temperature is the mean potential temperature), u* in m s-1, H in W m-2 (humidity-corrected), ρcp in
    J m-3 K-1, T̄a in K, p in Pa; k = 0.41, g = 9.81 m s-2. ±inf for zero heat flux.

    θ̄ = T̄a·(100 kPa/p)^0.286 (:func:`potential_temperature`) is what EddyPro 7 uses: its L on the DE-HoH runs
    (p = 98.94 kPa) is exactly (100/98.94)^0.286 = 1.00304 times −u*³·T̄a/(k·g·H/ρcp) in every period, and the
    factor follows the site's pressure (docs/flux-ec.md)."""
    flux = h / rho_cp
    if flux == 0.0:
        return math.inf
    return -(ustar ** 3) * potential_temperature(ta_mean, p_pa) / (VON_KARMAN * GRAVITY * flux)


#: Fluxnet names of the one-point storage fluxes and the period value each is the change of (wet mole fractions,
#: divided by the current molar volume of moist air: µmol mol-1 → µmol m-2 s-1 for CO2, mmol for H2O, nmol for CH4
#: and N2O).
STORAGE_GASES = (("SC_SINGLE", "CO2"), ("SH2O_SINGLE", "H2O"), ("SCH4_SINGLE", "CH4"), ("SNONE_SINGLE", "N2O"))


def storage_one_point(previous: Mapping[str, float], current: Mapping[str, float], z_m: float, dt_s: float
                      ) -> dict[str, float]:
    """Storage fluxes below the measurement height from one level (the sonic's), between two consecutive periods
    (EddyPro 7 Help, "The full output file": "estimated from concentrations and based on a 1-point profile"; the
    single-point approximation S = z·Δc/Δt, Papale et al. 2006, Biogeosciences 3, 571), as the backward difference
    of the two periods' means that EddyPro's outputs carry — the carbon budget's SC
    (:func:`gateway.flux.budget.storage.storage_single_level`) is the centred difference over a whole record:

    * ``SH_SINGLE`` = ρcp·(Ta − Ta_prev)·z/Δt, W m-2, with the current period's ρcp (``RHO_CP``, J m-3 K-1);
    * gases (:data:`STORAGE_GASES`) = (χ − χ_prev)/Va·z/Δt with the wet mole fraction χ and the current molar volume
      of moist air Va (``AIR_MV``);
    * ``SLE_SINGLE`` = λ·M_H2O·SH2O (W m-2) and ``SET_SINGLE`` = SH2O·M_H2O·3600 (mm h-1).

    Which concentration and which ρcp and Va were settled by checking EddyPro's 5-min runs (docs/flux-ec.md); z in
    m, Δt in s (the periods' length). A value either period lacks gives no storage flux."""
    def get(values: Mapping[str, float], name: str) -> float:
        return float(values.get(name, math.nan))

    out: dict[str, float] = {}
    factor = z_m / dt_s
    dta = get(current, "TA") - get(previous, "TA")
    if math.isfinite(dta) and math.isfinite(get(current, "RHO_CP")):
        out["SH_SINGLE"] = get(current, "RHO_CP") * dta * factor
    va = get(current, "AIR_MV")
    for name, gas in STORAGE_GASES:
        change = get(current, gas) - get(previous, gas)
        if math.isfinite(change) and math.isfinite(va):
            out[name] = change / va * factor
    if "SH2O_SINGLE" in out:
        evap = out["SH2O_SINGLE"] * 1e-3 * M_H2O  # kg m-2 s-1
        out["SET_SINGLE"] = evap * 3600.0
        if math.isfinite(get(current, "SPECIFIC_HEAT_EVAP")):
            out["SLE_SINGLE"] = evap * get(current, "SPECIFIC_HEAT_EVAP")
    return out
