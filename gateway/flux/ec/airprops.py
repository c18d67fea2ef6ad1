"""Air properties for one averaging period, from period means, with EddyPro's conventions (EDDYPRO-REFERENCE.md).

Without a pressure sensor p = 101300·exp(−z/8200) Pa (barometric formula with an 8.2 km scale height). The molar
volume of air uses the mean **sonic** temperature, Va = R·T̄s/p; vapour pressure e = ρw·(R/Mw)·Ta; dry air
ρd = (p − e)/(Rd·Ta); Ta = T̄s/(1 + 0.51·Q) (Kaimal & Gaynor 1991), iterated with Q = ρw/ρa; dry-air molar volume
Vd = Va·p/(p − e). Latent heat λ = (3147.5 − 2.37·Ta)·10³ J kg-1 (Henderson-Sellers 1984, linearised).
ρcp = cp_v·ρw + cp_d·ρd with cp_d = 1005 + (Ta − 273.15 + 23.12)²/3364 and
cp_v = 1859 + 0.13·RH + (0.193 + 0.0056·RH)·t + (0.001 + 0.00005·RH)·t² (t in °C, RH in %), saturation vapour
pressure after Buck (1981, eq. 8).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.flux.ec.constants import M_H2O, P_SEA_LEVEL, R_DRY_AIR, R_GAS, SCALE_HEIGHT, SONIC_HUMIDITY_COEF


@dataclass(frozen=True)
class AirProperties:
    """Period air properties. Temperatures in K, pressures in Pa, densities in kg m-3, molar volumes in m3 mol-1,
    heat capacities in J kg-1 K-1 (``rho_cp`` in J m-3 K-1), λ in J kg-1, Q in kg kg-1, RH in %."""

    ts: float
    ta: float
    p: float
    e: float
    es: float
    rh: float
    va: float
    vd: float
    rho_w: float
    rho_d: float
    rho_a: float
    q: float
    cp_d: float
    cp_v: float
    rho_cp: float
    cp: float
    lambda_v: float


def pressure_from_altitude(altitude_m: float) -> float:
    """p = 101300·exp(−z/8200), Pa, z in m above sea level."""
    return P_SEA_LEVEL * math.exp(-altitude_m / SCALE_HEIGHT)


def saturation_vapour_pressure(ta_k: float) -> float:
    """Saturation vapour pressure over water, Pa (Buck 1981, J. Appl. Meteorol. 20, 1527, eq. 8)."""
    t = ta_k - 273.15
    return 611.21 * math.exp((18.678 - t / 234.5) * (t / (257.14 + t)))


def dew_point(e_pa: float) -> float:
    """Dew point, K: the temperature at which :func:`saturation_vapour_pressure` equals ``e_pa`` (Pa), by bisection
    on −80..60 °C. NaN for e ≤ 0."""
    if not (e_pa > 0):
        return math.nan
    lo, hi = 193.15, 333.15
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if saturation_vapour_pressure(mid) < e_pa:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def air_properties(ts_mean_k: float, p_pa: float, *, h2o_mole_fraction: float | None = None,
                   h2o_molar_density: float | None = None) -> AirProperties:
    """Air properties from the mean sonic temperature (K), pressure (Pa) and either the mean H2O mole fraction
    (mol mol-1 of moist air) or molar density (mol m-3); see the module docstring for the equations."""
    va = R_GAS * ts_mean_k / p_pa
    if h2o_molar_density is not None:
        rho_w = h2o_molar_density * M_H2O
    elif h2o_mole_fraction is not None:
        rho_w = h2o_mole_fraction / va * M_H2O
    else:
        rho_w = 0.0
    ta = ts_mean_k
    e = rho_d = rho_a = q = 0.0
    for _ in range(20):
        e = rho_w * (R_GAS / M_H2O) * ta
        rho_d = (p_pa - e) / (R_DRY_AIR * ta)
        rho_a = rho_d + rho_w
        q = rho_w / rho_a
        ta_new = ts_mean_k / (1.0 + SONIC_HUMIDITY_COEF * q)
        if abs(ta_new - ta) < 1e-10:
            ta = ta_new
            break
        ta = ta_new
    e = rho_w * (R_GAS / M_H2O) * ta
    vd = va * p_pa / (p_pa - e)
    es = saturation_vapour_pressure(ta)
    rh = 100.0 * e / es
    t = ta - 273.15
    cp_d = 1005.0 + (t + 23.12) ** 2 / 3364.0
    cp_v = 1859.0 + 0.13 * rh + (0.193 + 0.0056 * rh) * t + (0.001 + 0.00005 * rh) * t * t
    rho_cp = cp_v * rho_w + cp_d * rho_d
    return AirProperties(ts=ts_mean_k, ta=ta, p=p_pa, e=e, es=es, rh=rh, va=va, vd=vd, rho_w=rho_w, rho_d=rho_d,
                         rho_a=rho_a, q=q, cp_d=cp_d, cp_v=cp_v, rho_cp=rho_cp, cp=rho_cp / rho_a,
                         lambda_v=(3147.5 - 2.37 * ta) * 1e3)
