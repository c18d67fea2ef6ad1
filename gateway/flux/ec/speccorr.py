"""Spectral correction factors for one averaging period, composed from the transfer functions and model cospectra
of :mod:`gateway.flux.ec.spectral` (no I/O; numbers in, factors out).

* Moncrieff et al. (1997), fully analytic: CF = ∫Co df / ∫Co·TF df (eq. 1) with the Kaimal et al. (1972) model
  cospectrum (scalar or momentum, by stability) and TF = high-pass of the detrending × sonic line averaging
  √(T_w·T_s) (Moore 1986) × for a gas: lateral sensor separation (Moore 1986, eq. 11), turbulent tube attenuation
  (Leuning & Moncrieff 1990; closed path) or gas-analyser path averaging (open path).
* Fratini et al. (2012) / Ibrom et al. (2007) for closed-path gases: ∫Co_ref·H_ref df / ∫Co_ref·H_ref·H_IIR df
  (Fratini 2012, eq. 3) with the gas's first-order IIR cut-off frequency from an EddyPro spectral assessment (H2O by
  relative-humidity class, CO2 by month). As in EddyPro's output for the DE-HoH V run (LE_scf, co2_scf), this factor
  is used alone for the gases — not multiplied by the sonic's analytic factor; TAU and H get the analytic factor.

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

_GRID = S.frequency_grid(1e-5, 10.0, 20000)


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


def _highpass(f: NDArray[np.float64], detrend: str, period_s: float, timeconst_s: float) -> NDArray[np.float64]:
    if detrend in ("running_mean", "exponential_running_mean"):
        return 1.0 - S.tf_running_mean(f, timeconst_s)
    return S.tf_block_average(f, period_s)  # block average; linear detrending is treated alike (Moncrieff 1997)


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
) -> SpectralFactors:
    """Factors for one period. ``u`` mean wind (m s-1), ``zm`` = z − d (m), ``zl`` stability, ``period_s`` averaging
    period (s). ``gases``: name → parameters: for Fratini ``fc`` (IIR cut-off, Hz); for Moncrieff ``separation_m``
    and either ``tube_length_m``, ``tube_radius_m``, ``flow_lpm`` (closed path) or ``path_m`` (open path)."""
    f = _GRID
    hp = _highpass(f, detrend, period_s, timeconst_s)
    t_w = S.tf_w_path(f, sonic_vpath_m, u)
    t_s = S.tf_scalar_path(f, sonic_hpath_m, u)
    sonic = np.sqrt(t_w * t_s) * hp
    co_s = S.kaimal_cospectrum(f, zm, u, zl, "scalar")
    co_m = S.kaimal_cospectrum(f, zm, u, zl, "momentum")
    tau = S.correction_factor(f, co_m, sonic)
    h = S.correction_factor(f, co_s, sonic)
    out: dict[str, float] = {}
    for gas, p in gases.items():
        if method == "fratini_2012":
            fc = p.get("fc", math.nan)
            out[gas] = S.fratini2012_factor(f, co_s, sonic, fc) if math.isfinite(fc) and fc > 0 else math.nan
        else:
            tf = sonic * S.tf_sensor_separation(f, p.get("separation_m", 0.0), u)
            if p.get("tube_length_m", 0.0) > 0 and p.get("flow_lpm", 0.0) > 0:
                tf = tf * S.tf_tube_turbulent(f, p["tube_length_m"], p["tube_radius_m"], p["flow_lpm"])
            elif p.get("path_m", 0.0) > 0:
                tf = np.sqrt(t_w * S.tf_scalar_path(f, p["path_m"], u)) * hp * S.tf_sensor_separation(
                    f, p.get("separation_m", 0.0), u)
            out[gas] = S.correction_factor(f, co_s, tf)
    return SpectralFactors(tau=tau, h=h, gases=out)
