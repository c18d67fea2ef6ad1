"""Sonic axis rotation ("tilt correction").

Double rotation after Kaimal & Finnigan (1994, ch. 6) and Wilczak et al. (2001, Boundary-Layer Meteorol. 99,
127-150, eqs. 22-23): first yaw about z into the mean wind, then pitch about the new y axis so that the mean vertical
wind is zero. As in EddyPro (EDDYPRO-REFERENCE.md), the angles come from the block means of the raw (un-detrended)
series and there is no third rotation. Planar fit is in :mod:`gateway.flux.ec.planarfit`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Rotated:
    """Rotated wind (m s-1) and the angles used (degrees; NaN when not applicable)."""

    u: NDArray[np.float64]
    v: NDArray[np.float64]
    w: NDArray[np.float64]
    yaw_deg: float
    pitch_deg: float
    roll_deg: float = math.nan


def double_rotation(u: NDArray[np.float64], v: NDArray[np.float64], w: NDArray[np.float64]) -> Rotated:
    """Double rotation (Wilczak et al. 2001, eqs. 22-23).

    Yaw θ = atan2(v̄, ū); u₁ = u cos θ + v sin θ, v₁ = −u sin θ + v cos θ. Pitch φ = atan2(w̄, ū₁);
    u₂ = u₁ cos φ + w sin φ, w₂ = −u₁ sin φ + w cos φ. Inputs and outputs in m s-1; means ignore NaN. After the
    rotation v̄₂ = w̄₂ = 0 and ū₂ is the mean wind speed.
    """
    yaw = math.atan2(float(np.nanmean(v)), float(np.nanmean(u)))
    cy, sy = math.cos(yaw), math.sin(yaw)
    u1 = u * cy + v * sy
    v1 = -u * sy + v * cy
    pitch = math.atan2(float(np.nanmean(w)), float(np.nanmean(u1)))
    cp, sp = math.cos(pitch), math.sin(pitch)
    u2 = u1 * cp + w * sp
    w2 = -u1 * sp + w * cp
    return Rotated(u2, v1, w2, math.degrees(yaw) % 360.0, math.degrees(pitch))


def triple_rotation(u: NDArray[np.float64], v: NDArray[np.float64], w: NDArray[np.float64]) -> Rotated:
    """Double rotation followed by a roll about x that sets cov(v, w) = 0 (Kaimal & Finnigan 1994, eq. 6.8;
    Wilczak et al. 2001, eq. 24): ψ = ½·atan2(2·v'w', v'v' − w'w'). m s-1 in and out."""
    r = double_rotation(u, v, w)
    vf = r.v - np.nanmean(r.v)
    wf = r.w - np.nanmean(r.w)
    roll = 0.5 * math.atan2(2.0 * float(np.nanmean(vf * wf)), float(np.nanmean(vf * vf) - np.nanmean(wf * wf)))
    cr, sr = math.cos(roll), math.sin(roll)
    v3 = r.v * cr + r.w * sr
    w3 = -r.v * sr + r.w * cr
    return Rotated(r.u, v3, w3, r.yaw_deg, r.pitch_deg, math.degrees(roll))


#: Sonic models whose x axis points from the transducer head towards the support arm, so that a positive u is wind
#: blowing *into* the head (Campbell Scientific CSAT3 / CSAT3B Instruction Manual, "Sonic coordinate system"; the
#: IRGASON carries the same anemometer). EddyPro's north offset of a yoke-mounted sonic is the azimuth of the axis
#: "pointing away from the support arm" (EddyPro 7 Help, "North offset"), i.e. the direction the head faces.
HEAD_FACING_MODELS = ("csat3", "csat_3", "irgason")


def u_positive_into_head(manufacturer: str, model: str) -> bool:
    """True for the sonics of :data:`HEAD_FACING_MODELS` (model names as in EddyPro's metadata, e.g. ``csat3_1``,
    ``csat3b_1``; or Campbell's manufacturer code ``csi`` with a CSAT3/IRGASON model)."""
    name = model.strip().lower()
    return name.startswith(HEAD_FACING_MODELS) or (manufacturer.strip().lower() in ("csi", "campbell")
                                                  and "csat" in name)


def wind_direction(u: NDArray[np.float64], v: NDArray[np.float64], north_offset_deg: float = 0.0, *,
                   into_head: bool = False) -> float:
    """Mean wind direction, degrees from north the wind blows from, as the unit-vector mean of the instantaneous
    sonic-frame directions (Mardia & Jupp 2000, §2.2; the convention EddyPro's output follows), α = atan2(v, u)
    per record (right-handed sonic frame, z up):

    * Gill-type sonics (u positive for wind blowing towards the instrument north, the default):
      WD = (180 − ᾱ + north_offset) mod 360;
    * ``into_head`` (CSAT3, IRGASON; :func:`u_positive_into_head`): a positive u is wind coming from the direction
      the head faces, which is the north offset itself, so WD = (−ᾱ + north_offset) mod 360 — 180° from the Gill
      formula (an EddyPro CSAT3 run prints exactly that)."""
    alpha = np.arctan2(v, u)
    ok = np.isfinite(alpha)
    mean_alpha = math.degrees(math.atan2(float(np.sin(alpha[ok]).mean()), float(np.cos(alpha[ok]).mean())))
    base = 0.0 if into_head else 180.0
    return (base - mean_alpha + north_offset_deg) % 360.0


def wind_direction_sigma(u: NDArray[np.float64], v: NDArray[np.float64]) -> float:
    """Standard deviation of the wind direction, degrees, by Yamartino's single-pass estimator (Yamartino 1984,
    J. Clim. Appl. Meteorol. 23, 1362, eq. 5): ε = sqrt(1 − (mean sin α)² − (mean cos α)²), σ = arcsin(ε)·(1 +
    (2/√3 − 1)·ε³), α = atan2(v, u) per record (any horizontal frame: a rotation of the axes shifts every α
    alike). NaN without valid records."""
    alpha = np.arctan2(v, u)
    ok = np.isfinite(alpha)
    if not ok.any():
        return math.nan
    s, c = float(np.sin(alpha[ok]).mean()), float(np.cos(alpha[ok]).mean())
    eps = math.sqrt(max(0.0, 1.0 - (s * s + c * c)))
    return math.degrees(math.asin(min(eps, 1.0)) * (1.0 + (2.0 / math.sqrt(3.0) - 1.0) * eps ** 3))
