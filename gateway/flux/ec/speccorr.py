"""Spectral correction factors for one averaging period, composed from the transfer functions and model cospectra
of :mod:`gateway.flux.ec.spectral` (no I/O; numbers in, factors out). CF = ∫Co df / ∫Co·TF df (Moncrieff et al.
1997, eq. 1) with the Kaimal et al. (1972) model cospectra of Moncrieff et al. (1997) (scalar or momentum, by
stability) and TF the product of:

* the high-pass of the averaging/detrending (EddyPro lf_meth, Moncrieff et al. 2004): for block averaging
  1 − sinc²(π f T') with T' = √3·T (T the averaging period). The √3 is EddyPro's, found on run V: with T' = √3·T
  the factors of H and TAU reproduce EddyPro's H_scf 1.01489 and Tau_scf 1.02182 to 2e-5 and 4e-6 (with T they
  come out 1.0238 and 1.0366); at low frequency it makes the filter behave as (π f T)² instead of (π f T)²/3.
  Running means: (2π f τ)²/(1 + (2π f τ)²); linear detrending is treated as block averaging (Moncrieff 1997);
* the low-pass of the instruments (EddyPro hf_meth):
  - TAU: line averaging of w along the sonic's vertical path, √T_w (Moore 1986, eq. 9); H: √(T_w·T_s), T_s the
    scalar line averaging along the horizontal path (Moore 1986, eq. 7);
  - gases, Moncrieff et al. (1997), fully analytic: the sonic's √(T_w·T_s) × lateral separation (Moore 1986,
    eq. 11) × turbulent tube attenuation (Leuning & Moncrieff 1990; closed path) or the analyser's path averaging
    (open path);
  - gases, Horst (1997), closed path: CF = 1 + (2π n_m τ u/zm)^α with τ = 1/(2π fc) from the in-situ assessment
    (:func:`horst1997_factor`); Ibrom et al. (2007): their CF model c1·u/(c2 + fc) + 1 (eq. 8) with c1, c2 of the
    assessment (unstable or stable);
  - gases, Fratini et al. (2012), closed path: the first-order IIR filter of the in-situ
    assessment H_IIR = 1/(1 + (f/fc)²) (cut-off by RH class for H2O, by month for the other gases) times the
    analyser's own first-order amplitude response 1/√(1 + (2π f τ_ga)²) (τ_ga = 0.1 s for the LI-7200), without
    the high-pass part: this reproduces EddyPro's V-run LE_scf 1.03837 and co2_scf 1.01505 to 4e-5 and 2e-4 (the
    Fratini 2012 eq. 3 ratio with the sonic reference gives 1.0370 and 1.0124).

Sonic path lengths: EddyPro uses built-in geometries for known sonic models (the DE-HoH V run reports 11 cm
horizontal and 12.5 cm vertical for the Gill HS-50 although its .metadata says 1 cm); :data:`SONIC_PATHS_CM` holds
the ones known here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from gateway.flux.ec import spectral as S

#: (horizontal, vertical) path length in cm of known sonic models (EddyPro's values, from its FLUXNET output).
SONIC_PATHS_CM: dict[str, tuple[float, float]] = {"hs_50": (11.0, 12.5), "hs_100": (11.0, 12.5)}

_GRID = S.frequency_grid(1e-7, 10.0, 8000)  # low enough for the integrals to converge; 1e-9 from the grid


@dataclass(frozen=True)
class SpectralFactors:
    """Correction factors (dimensionless, ≥ 1 for attenuation) for TAU, H and each gas flux."""

    tau: float
    h: float
    gases: dict[str, float]


def sonic_paths_m(model: str, hpath_cm: float | None, vpath_cm: float | None) -> tuple[float, float]:
    """(horizontal, vertical) sonic path in m: the known geometry of the model, else the metadata values."""
    for prefix, (h, v) in SONIC_PATHS_CM.items():
        if model.lower().startswith(prefix):
            return h / 100.0, v / 100.0
    if hpath_cm is None or vpath_cm is None:
        raise ValueError(f"sonic model {model!r}: path lengths unknown; set sonic.hpath_length and vpath_length (cm)")
    return hpath_cm / 100.0, vpath_cm / 100.0


#: Effective length of the block average in EddyPro's high-pass factor, in averaging periods (module docstring).
BLOCK_AVERAGE_PERIODS = math.sqrt(3.0)

#: First-order response time of gas analysers, s (EddyPro's value for the LI-7200 in its V-run FLUXNET output,
#: RESPONSE_TIME_GA); the default for other closed-path analysers.
ANALYZER_RESPONSE_TIME_S = 0.1


def highpass(f: NDArray[np.float64], detrend: str, period_s: float, timeconst_s: float) -> NDArray[np.float64]:
    """Power transfer function of the averaging/detrending (module docstring), ``f`` in Hz, periods in s."""
    if detrend in ("running_mean", "exponential_running_mean"):
        return S.tf_running_mean(f, timeconst_s)
    return S.tf_block_average(f, BLOCK_AVERAGE_PERIODS * period_s)


def horst1997_factor(u: float, zm: float, zl: float, tau_s: float) -> float:
    """Horst (1997, Boundary-Layer Meteorol. 82, 219-233, eqs. 11-13) correction factor for a scalar measured with a
    first-order response of time constant ``tau_s`` (s): CF = 1 + (2π·n_m·τ·u/zm)^α, with n_m = 0.085 and α = 7/8
    for z/L ≤ 0, n_m = 2.0 − 1.915/(1 + 0.5·z/L) and α = 1 for z/L > 0 (u in m s-1, zm = z − d in m). For a
    closed path τ = 1/(2π·fc) of the in-situ IIR cut-off fc."""
    if zl <= 0:
        n_m, alpha = 0.085, 7.0 / 8.0
    else:
        n_m, alpha = 2.0 - 1.915 / (1.0 + 0.5 * zl), 1.0
    return 1.0 + (2.0 * math.pi * n_m * tau_s * u / zm) ** alpha


def correction_factors(
    *,
    method: str,
    u: float,
    zm: float,
    zl: float,
    period_s: float,
    detrend: str,
    timeconst_s: float,
    sonic_hpath_m: float,
    sonic_vpath_m: float,
    gases: dict[str, dict[str, float]],
    high_pass: bool = True,
    low_pass: bool = True,
) -> SpectralFactors:
    """Factors for one period. ``u`` mean wind (m s-1), ``zm`` = z − d (m), ``zl`` stability, ``period_s`` averaging
    period (s). ``gases``: name → parameters: for Fratini ``fc`` (IIR cut-off, Hz); for Moncrieff ``separation_m``
    and either ``tube_length_m``, ``tube_radius_m``, ``flow_lpm`` (closed path) or ``path_m`` (open path).
    ``high_pass``: include the averaging/detrending transfer function (EddyPro lf_meth, Moncrieff et al. 2004);
    ``low_pass``: include the instrument transfer functions (EddyPro hf_meth); with only one of them the factor
    corrects that part alone."""
    f = _GRID
    hp = highpass(f, detrend, period_s, timeconst_s) if high_pass else np.ones_like(f)
    co_s = S.kaimal_cospectrum(f, zm, u, zl, "scalar")
    co_m = S.kaimal_cospectrum(f, zm, u, zl, "momentum")
    if not low_pass:
        h_only = S.correction_factor(f, co_s, hp)
        return SpectralFactors(tau=S.correction_factor(f, co_m, hp), h=h_only, gases=dict.fromkeys(gases, h_only))
    t_w = S.tf_w_path(f, sonic_vpath_m, u)
    t_s = S.tf_scalar_path(f, sonic_hpath_m, u)
    sonic = np.sqrt(t_w * t_s)
    tau = S.correction_factor(f, co_m, np.sqrt(t_w) * hp)
    h = S.correction_factor(f, co_s, sonic * hp)
    out: dict[str, float] = {}
    for gas, p in gases.items():
        if method in ("fratini_2012", "ibrom_2007", "horst_1997"):
            fc = p.get("fc", math.nan)
            if not (math.isfinite(fc) and fc > 0):
                out[gas] = math.nan
            elif method == "horst_1997":
                out[gas] = horst1997_factor(u, zm, zl, 1.0 / (2.0 * math.pi * fc))
            elif method == "ibrom_2007":
                out[gas] = S.ibrom_cf_model(u, fc, p.get("c1", math.nan), p.get("c2", math.nan))
            else:
                tf = S.iir_lowpass(f, fc) * np.sqrt(S.tf_first_order(f, p.get("response_time_s",
                                                                                 ANALYZER_RESPONSE_TIME_S)))
                out[gas] = S.correction_factor(f, co_s, tf)
        else:
            tf = sonic * hp * S.tf_sensor_separation(f, p.get("separation_m", 0.0), u)
            if p.get("tube_length_m", 0.0) > 0 and p.get("flow_lpm", 0.0) > 0:
                tf = tf * S.tf_tube_turbulent(f, p["tube_length_m"], p["tube_radius_m"], p["flow_lpm"])
            elif p.get("path_m", 0.0) > 0:
                tf = np.sqrt(t_w * S.tf_scalar_path(f, p["path_m"], u)) * hp * S.tf_sensor_separation(
                    f, p.get("separation_m", 0.0), u)
            out[gas] = S.correction_factor(f, co_s, tf)
    return SpectralFactors(tau=tau, h=h, gases=out)
