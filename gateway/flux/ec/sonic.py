"""Corrections of the raw sonic-anemometer records before tilt correction (pure functions, arrays in and out).

* Zero-wind offsets: a sonic in still air (zero-wind test, or the calibration certificate) reads a small bias per
  wind component; it is subtracted from every record (EddyPro 7 Help, "Wind speed measurement offsets").
* Crosswind correction of the sonic temperature (Liu, Peters & Foken 2001, Boundary-Layer Meteorol. 100, 459-468,
  eqs. 7-9; after Kaimal & Gaynor 1991 and Schotanus et al. 1983): each acoustic path i (unit vector n_i) measures
  Tsi = Ts − Vni²/403, Vni² = |V|² − (V·n_i)² the squared wind normal to the path; the sonic reports the mean over its
  paths. EddyPro (Help, "Crosswind correction") uses the measured horizontal components um, vm only, so the mean of
  Vni² is A·um² + B·vm² + C·um·vm with A = 1 − ⟨nx²⟩, B = 1 − ⟨ny²⟩, C = −2·⟨nx·ny⟩ (⟨⟩ the mean over the paths;
  :func:`crosswind_factors`) and Ts,corrected = Ts + (A·u² + B·v² + C·u·v)/403 (u, v in m s-1, Ts in K). Three paths
  120° apart in azimuth, inclined by φ, give A = B = 1 − ½·cos²φ and C = 0 — whatever their azimuth; the factors of
  a model are built in only where its path geometry has a source (:data:`CROSSWIND_SONICS`), otherwise the metadata
  must give the inclination (``sonic.path_elevation_deg``) or the correction is refused.
* w-boost bug of Gill WindMaster / WindMaster Pro firmware (Gill Technical Key Note KN1509v3; EddyPro 7 Help, "W-boost
  Bug Correction for WindMaster/Pro"): w × 1.166 (w > 0), × 1.289 (w < 0); which sonics have it:
  :mod:`gateway.flux.ec.instruments`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from gateway.flux.ec.instruments import WBOOST_W_DOWN, WBOOST_W_UP

SPEED_OF_SOUND_FACTOR = 403.0
"""c² = 403·Ts (m² s-2 K-1), the sonic-temperature definition (Kaimal & Gaynor 1991)."""


class CrosswindFactors(NamedTuple):
    """Factors of the mean squared horizontal crosswind over a sonic's paths, dimensionless:
    ⟨Vn²⟩ = a·u² + b·v² + c·u·v (Liu et al. 2001, eqs. 7-9 with w left out, as EddyPro applies them)."""

    a: float
    b: float
    c: float


@dataclass(frozen=True)
class SonicGeometry:
    """A sonic's acoustic paths as built in: three paths 120° apart in azimuth, inclined by ``elevation_deg`` to the
    horizontal, and where that geometry is published."""

    elevation_deg: float
    source: str


#: Path geometry of the sonics whose geometry has a source, by EddyPro's model-name prefix (``csat3_1``,
#: ``usa1_standard``, ``r3_50_1``, ``r2_1``; ``r3_`` does not match the R3A's ``r3a_100_1``). Liu et al. (2001),
#: Table 1, also lists the Gill R3A and the HS family; their path geometry is not reproduced here for want of a
#: source to cite, so those models need ``sonic.path_elevation_deg``.
CROSSWIND_SONICS: dict[str, SonicGeometry] = {
    "csat3": SonicGeometry(60.0, "Campbell Scientific CSAT3 Instruction Manual, Specifications: transducers 10 cm "
                                 "apart vertically on an 11.55 cm path, 60° from horizontal; factor 7/8 = Liu et al. "
                                 "(2001), Table 1"),
    "usa1": SonicGeometry(45.0, "Metek USA-1: three paths at 45°, 120° apart; the USA-1 crosswind term "
                                "0.75·(u² + v²) + 0.5·w² of Risø report Risø-R-1658(en), eq. 20, as NCAR's NIDAS "
                                "software applies it to Metek sonics (= 1 − ½·cos²45° and cos²45°)"),
    "r3_": SonicGeometry(45.0, "Gill R3 (R3-50, R3-100): the R3 reference manual's equations from the three axis "
                               "velocities A1-A3 to the wind, u = (2·A1 − A2 − A3)/2.1213, v = (A2 − A3)/1.2247, "
                               "w = −(A1 + A2 + A3)/2.1213, with 2.1213 = 3·cos45° = 3·sin45° and 1.2247 = √3·cos45°: "
                               "three paths at 45°, 120° apart (as University of Basel's processing of its Gill "
                               "sonics' transit counts applies them)"),
    "r2_": SonicGeometry(45.0, "Gill Solent R2: the R3's transducer array (EddyPro Help, 'Angle of attack "
                               "correction': 'R3-style Gill anemometers (also including R2 ...)'), whose equations "
                               "University of Basel's processing of R2 transit counts applies: paths at 45°"),
}


def symmetric_paths(elevation_deg: float, azimuth0_deg: float = 0.0) -> NDArray[np.float64]:
    """Unit vectors (3 × 3, one path a row, sonic frame x, y, z) of three acoustic paths 120° apart in azimuth
    (the first at ``azimuth0_deg`` from the x axis), each inclined by ``elevation_deg`` to the horizontal."""
    el = math.radians(elevation_deg)
    az = np.radians(azimuth0_deg + np.array([0.0, 120.0, 240.0]))
    return np.column_stack([math.cos(el) * np.cos(az), math.cos(el) * np.sin(az), np.full(3, math.sin(el))])


def crosswind_factors(paths: NDArray[np.float64]) -> CrosswindFactors:
    """A, B, C of the mean squared horizontal crosswind over the paths (module docstring; Liu et al. 2001, eqs. 7-9):
    ``paths`` one unit vector (nx, ny, nz) a row (any number of paths, normalised here); for horizontal wind (u, v)
    path i sees Vni² = u²(1 − nx²) + v²(1 − ny²) − 2·u·v·nx·ny, averaged over the paths. Dimensionless."""
    n = np.asarray(paths, dtype=float)
    if n.ndim != 2 or n.shape[1] != 3 or len(n) == 0:
        raise ValueError("crosswind_factors: paths must be an (n, 3) array of path directions")
    norms = np.linalg.norm(n, axis=1)
    if np.any(norms == 0) or not np.all(np.isfinite(norms)):
        raise ValueError("crosswind_factors: every path needs a finite, non-zero direction")
    n = n / norms[:, None]
    return CrosswindFactors(float(1.0 - np.mean(n[:, 0] ** 2)), float(1.0 - np.mean(n[:, 1] ** 2)),
                            float(-2.0 * np.mean(n[:, 0] * n[:, 1])))


def sonic_geometry(model: str) -> SonicGeometry | None:
    """The built-in path geometry of a sonic model (EddyPro's names, e.g. ``csat3_1``, ``usa1_standard``), else
    None."""
    name = model.strip().lower()
    for prefix, geometry in CROSSWIND_SONICS.items():
        if name.startswith(prefix):
            return geometry
    return None


def path_elevation_deg(model: str, given: float | None) -> float | None:
    """The acoustic-path inclination of a sonic, degrees: the metadata's value, else the built-in geometry of the
    model (:data:`CROSSWIND_SONICS`), else None."""
    if given is not None:
        return given
    geometry = sonic_geometry(model)
    return geometry.elevation_deg if geometry is not None else None


def crosswind_corrected_ts(ts: NDArray[np.float64], u: NDArray[np.float64], v: NDArray[np.float64],
                           factors: CrosswindFactors) -> NDArray[np.float64]:
    """Sonic temperature corrected for the crosswind, K: Ts + (A·u² + B·v² + C·u·v)/403 (module docstring; Liu et al.
    2001): ``ts`` in K, ``u``, ``v`` the sonic-frame horizontal components in m s-1, ``factors`` from
    :func:`crosswind_factors`."""
    a, b, c = factors
    return ts + (a * u * u + b * v * v + c * u * v) / SPEED_OF_SOUND_FACTOR


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
