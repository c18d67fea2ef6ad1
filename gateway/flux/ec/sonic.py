"""Corrections of the raw sonic-anemometer records before tilt correction (pure functions, arrays in and out).

* Zero-wind offsets: a sonic in still air (zero-wind test, or the calibration certificate) reads a small bias per
  wind component; it is subtracted from every record (EddyPro 7 Help, "Wind speed measurement offsets").
* Crosswind correction of the sonic temperature (Liu, Peters & Foken 2001, Boundary-Layer Meteorol. 100, 459-468,
  eqs. 7-9; after Kaimal & Gaynor 1991 and Schotanus et al. 1983): each of the three acoustic paths measures
  Tsi = Ts − Vni²/403, Vni the wind normal to path i; Ts is the mean over the paths. For three paths 120° apart in
  azimuth, inclined by φ to the horizontal, Σ Vni² over the paths is 3·(u² + v²)·(1 − ½·cos²φ) + 3·w²·cos²φ;
  EddyPro (Help, "Crosswind correction") uses the horizontal components only, so
  Ts,corrected = Ts + (u² + v²)·(1 − ½·cos²φ)/403 (u, v in m s-1, Ts in K). For the CSAT3 (φ = 60°) the factor is
  7/8, the value of Liu et al. (2001), Table 1.
* w-boost bug of Gill WindMaster / WindMaster Pro firmware (Gill Technical Key Note KN1509v3; EddyPro 7 Help, "W-boost
  Bug Correction for WindMaster/Pro"): w × 1.166 (w > 0), × 1.289 (w < 0); which sonics have it:
  :mod:`gateway.flux.ec.instruments`.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from gateway.flux.ec.instruments import WBOOST_W_DOWN, WBOOST_W_UP

#: Inclination of the acoustic paths to the horizontal, degrees, for sonics whose geometry is published: the CSAT3's
#: 10 cm vertical over 11.55 cm path (Campbell Scientific CSAT3 Instruction Manual, "Specifications").
PATH_ELEVATION_DEG: dict[str, float] = {"csat3": 60.0}

SPEED_OF_SOUND_FACTOR = 403.0
"""c² = 403·Ts (m² s-2 K-1), the sonic-temperature definition (Kaimal & Gaynor 1991)."""


def path_elevation_deg(model: str, given: float | None) -> float | None:
    """The acoustic-path inclination of a sonic, degrees: the metadata's value, else the published geometry of the
    model (:data:`PATH_ELEVATION_DEG`, model names as EddyPro writes them, e.g. ``csat3_1``), else None."""
    if given is not None:
        return given
    name = model.strip().lower()
    for prefix, angle in PATH_ELEVATION_DEG.items():
        if name.startswith(prefix):
            return angle
    return None


def crosswind_corrected_ts(ts: NDArray[np.float64], u: NDArray[np.float64], v: NDArray[np.float64],
                           elevation_deg: float) -> NDArray[np.float64]:
    """Sonic temperature corrected for the crosswind, K (module docstring; Liu et al. 2001): ``ts`` in K, ``u``, ``v``
    the sonic-frame horizontal components in m s-1, ``elevation_deg`` the path inclination."""
    factor = 1.0 - 0.5 * math.cos(math.radians(elevation_deg)) ** 2
    return ts + (u * u + v * v) * factor / SPEED_OF_SOUND_FACTOR


def subtract_offsets(u: NDArray[np.float64], v: NDArray[np.float64], w: NDArray[np.float64],
                     offsets: tuple[float, float, float]
                     ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Wind components minus the zero-wind offsets (u, v, w), all in m s-1."""
    ou, ov, ow = offsets
    return u - ou, v - ov, w - ow


def wboost_corrected_w(w: NDArray[np.float64]) -> NDArray[np.float64]:
    """w of a Gill WindMaster / WindMaster Pro with the firmware "w-boost" bug corrected, m s-1: w × 1.166 where
    w > 0, w × 1.289 where w < 0, 0 and missing values unchanged (Gill Instruments Technical Key Note KN1509v3 on
    the WindMaster / WindMaster Pro w bug, as EddyPro 7 Help, "W-boost Bug Correction for WindMaster/Pro", applies
    it). Whether a sonic has the bug is :func:`gateway.flux.ec.instruments.wboost`."""
    return np.where(w > 0, w * WBOOST_W_UP, np.where(w < 0, w * WBOOST_W_DOWN, w))
