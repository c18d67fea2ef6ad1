"""Planar-fit tilt correction (Wilczak et al. 2001; sectorwise after van Dijk et al. 2004).

Pure functions, numpy arrays in, dataclasses / arrays out, no I/O:

* :func:`fit_plane` -- least-squares fit of ``w = b0 + b1 u + b2 v`` to per-period mean winds in the sonic frame
  (Wilczak, Oncley & Stage 2001, Boundary-Layer Meteorol. 99, 127-150, eqs. 39-40 / appendix A).
* :func:`fit_planar_sectors` -- the same fit for each wind sector separately (van Dijk, Moene & de Bruin 2004, "The
  principles of surface flux physics", section 3.2.3 "sectorwise planar fit").
* :func:`plane_rotation_matrix` -- the tilt matrix ``P = [i, j, k]`` whose rows are the unit vectors of the
  planar-fit frame expressed in the sonic frame (Wilczak et al. 2001, eqs. 36, 42-44): ``k`` the normal of the fitted
  plane ``(-b1, -b2, 1) / sqrt(1 + b1^2 + b2^2)``, ``j = (0, 1, b2) / sqrt(1 + b2^2)`` (perpendicular to ``k`` in the
  sonic y-z plane), ``i = j x k``. It is EddyPro's printed "rotation matrix".
* :func:`apply_planar_fit` -- rotates one averaging period: ``u_p = P (u - b0 e_z)`` (``b0`` optionally not
  subtracted, as EddyPro's "offset b0 not subtracted"), then a yaw rotation about the plane normal into the mean
  wind, ``gamma = atan2(v_p_mean, u_p_mean)`` (Wilczak et al. 2001, eq. 45).
* :func:`parse_eddypro_planar_fit` -- reads the text of EddyPro's ``planar_fit.txt`` (settings, coefficients per
  sector, matrices).

Wind sectors: a sector ``[start, end)`` in degrees holds the periods whose wind direction falls inside it. The
default direction is the one the wind comes *from* in the sonic frame, ``atan2(-v_mean, -u_mean)`` mapped to
[0, 360) (:func:`sonic_wind_angle`). For the DE-HoH V run that is 302.3 degrees, sector 4 (270-360), which is the
sector that reproduces EddyPro's yaw and rotated means to printed precision; the "towards" angle ``atan2(v, u)`` =
122.3 degrees (sector 2) does not. (The geographic wind direction, 292.3 degrees with the 235 degree north offset,
would pick the same sector; a single period cannot tell the two apart, so callers may pass their own angle to
:func:`select_sector` and :func:`fit_planar_sectors`.)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "PlanarFit",
    "PlanarFitCoefficients",
    "PlanarFitFile",
    "PlanarFitRotation",
    "PlanarFitSector",
    "apply_planar_fit",
    "fit_planar_sectors",
    "fit_plane",
    "fit_sectors",
    "parse_eddypro_planar_fit",
    "plane_rotation_matrix",
    "select_sector",
    "sonic_wind_angle",
]


@dataclass(frozen=True)
class PlanarFitCoefficients:
    """Plane ``w = b0 + b1 u + b2 v``: ``b0`` in m s-1, ``b1`` and ``b2`` dimensionless; ``n`` periods fitted."""

    b0: float
    b1: float
    b2: float
    n: int = 0


@dataclass(frozen=True)
class PlanarFitSector:
    """A wind sector ``[start_deg, end_deg)`` (sonic-frame angle, degrees) with its plane."""

    start_deg: float
    end_deg: float
    coefficients: PlanarFitCoefficients


@dataclass(frozen=True)
class PlanarFitFile:
    """Content of an EddyPro ``planar_fit.txt``: settings, sectors with B0/B1/B2, printed matrices (3x3 each)."""

    settings: dict[str, str]
    sectors: list[PlanarFitSector]
    matrices: list[NDArray[np.float64]] = field(default_factory=list)
    numerosity: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class PlanarFitRotation:
    """One period rotated into the planar-fit, mean-wind-aligned frame.

    ``u, v, w``: rotated series, m s-1. ``tilt_matrix``: ``P`` (3x3). ``yaw_deg``: yaw angle ``gamma``, degrees in
    [0, 360). ``u_mean, v_mean, w_mean``: rotated means (``v_mean`` is 0 by construction; ``w_mean`` is 0 only if the
    plane is exact and ``b0`` was subtracted).
    """

    u: NDArray[np.float64]
    v: NDArray[np.float64]
    w: NDArray[np.float64]
    tilt_matrix: NDArray[np.float64]
    yaw_deg: float
    u_mean: float
    v_mean: float
    w_mean: float


def sonic_wind_angle(u_mean: ArrayLike, v_mean: ArrayLike) -> NDArray[np.float64]:
    """Direction the mean wind comes from in the sonic frame, ``atan2(-v, -u)`` in degrees mapped to [0, 360)
    (m s-1 in)."""
    uu = np.asarray(u_mean, dtype=np.float64)
    vv = np.asarray(v_mean, dtype=np.float64)
    return np.mod(np.degrees(np.arctan2(-vv, -uu)), 360.0)


def fit_plane(u_mean: ArrayLike, v_mean: ArrayLike, w_mean: ArrayLike, *, fit_b0: bool = True) -> PlanarFitCoefficients:
    """Least-squares plane through per-period mean winds (Wilczak et al. 2001, eqs. 39-40 and appendix A).

    Minimises ``sum (w_i - b0 - b1 u_i - b2 v_i)^2`` over the periods ``i`` (means in the sonic frame, m s-1). With
    ``fit_b0=False`` the plane is forced through the origin (``b0 = 0``). Non-finite periods are dropped.
    """
    u = np.asarray(u_mean, dtype=np.float64).ravel()
    v = np.asarray(v_mean, dtype=np.float64).ravel()
    w = np.asarray(w_mean, dtype=np.float64).ravel()
    ok = np.isfinite(u) & np.isfinite(v) & np.isfinite(w)
    u, v, w = u[ok], v[ok], w[ok]
    n_par = 3 if fit_b0 else 2
    if u.size < n_par:
        raise ValueError(f"need at least {n_par} periods to fit a plane, got {u.size}")
    cols = [np.ones_like(u), u, v] if fit_b0 else [u, v]
    a = np.column_stack(cols)
    coef, *_ = np.linalg.lstsq(a, w, rcond=None)
    if fit_b0:
        return PlanarFitCoefficients(float(coef[0]), float(coef[1]), float(coef[2]), int(u.size))
    return PlanarFitCoefficients(0.0, float(coef[0]), float(coef[1]), int(u.size))


def fit_planar_sectors(
    u_mean: ArrayLike,
    v_mean: ArrayLike,
    w_mean: ArrayLike,
    *,
    n_sectors: int = 4,
    north_offset_deg: float = 0.0,
    min_periods_per_sector: int = 3,
    w_max: float = 1.0,
    u_min: float = 1.5,
    fit_b0: bool = True,
    angle_deg: ArrayLike | None = None,
) -> list[PlanarFitSector]:
    """Sectorwise planar fit (van Dijk et al. 2004, section 3.2.3; Wilczak et al. 2001 within each sector).

    Periods are selected as in EddyPro's planar-fit settings: ``|w_mean| <= w_max`` (m s-1, "maximum average vertical
    wind component") and horizontal speed ``>= u_min`` (m s-1, "minimum average horizontal wind component"). The
    circle is cut into ``n_sectors`` equal sectors starting at ``north_offset_deg`` (sonic-frame angle, see
    :func:`sonic_wind_angle`, or ``angle_deg`` per period when given). A sector with fewer than
    ``min_periods_per_sector`` periods raises ``ValueError``.
    """
    u = np.asarray(u_mean, dtype=np.float64).ravel()
    v = np.asarray(v_mean, dtype=np.float64).ravel()
    w = np.asarray(w_mean, dtype=np.float64).ravel()
    keep = (np.abs(w) <= w_max) & (np.hypot(u, v) >= u_min)
    base = sonic_wind_angle(u, v) if angle_deg is None else np.asarray(angle_deg, dtype=np.float64).ravel()
    angle = np.mod(base - north_offset_deg, 360.0)
    width = 360.0 / n_sectors
    out: list[PlanarFitSector] = []
    for s in range(n_sectors):
        sel = keep & (angle >= s * width) & (angle < (s + 1) * width)
        if int(sel.sum()) < max(min_periods_per_sector, 3 if fit_b0 else 2):
            raise ValueError(f"sector {s + 1} has {int(sel.sum())} periods, fewer than {min_periods_per_sector}")
        coef = fit_plane(u[sel], v[sel], w[sel], fit_b0=fit_b0)
        start = (north_offset_deg + s * width) % 360.0
        out.append(PlanarFitSector(start, start + width, coef))
    return out


@dataclass(frozen=True)
class PlanarFit:
    """Planes fitted over many periods: one per sector (``sectors``, covering the circle), the number of periods
    each was fitted on (``numerosity``), and the sectors that had too few periods and use the plane of all selected
    periods instead (``fallback``, 0-based indices)."""

    sectors: list[PlanarFitSector]
    numerosity: list[int]
    fallback: list[int]
    periods_used: int


def fit_sectors(
    u_mean: ArrayLike,
    v_mean: ArrayLike,
    w_mean: ArrayLike,
    *,
    n_sectors: int = 4,
    north_offset_deg: float = 0.0,
    min_periods_per_sector: int = 10,
    w_max: float = 1.0,
    u_min: float = 0.0,
    fit_b0: bool = True,
) -> PlanarFit:
    """Sectorwise planar fit over per-period mean winds in the sonic frame (m s-1), the engine's own replacement of
    EddyPro's planar_fit.txt (Wilczak et al. 2001, eqs. 39-40, within each sector as van Dijk et al. 2004, §3.2.3).

    Periods with ``|w̄| > w_max`` or horizontal speed below ``u_min`` are left out (EddyPro's pf_w_max, pf_u_min);
    the circle is cut into ``n_sectors`` equal sectors from ``north_offset_deg`` (sonic-frame angle the wind comes
    from, :func:`sonic_wind_angle`). A sector with fewer than ``min_periods_per_sector`` periods gets the plane of
    all selected periods (named in ``fallback``); fewer than that in total raises ``ValueError``. ``fit_b0=False``
    forces the plane through the origin (EddyPro's "planar fit with no velocity bias")."""
    u = np.asarray(u_mean, dtype=np.float64).ravel()
    v = np.asarray(v_mean, dtype=np.float64).ravel()
    w = np.asarray(w_mean, dtype=np.float64).ravel()
    need = max(min_periods_per_sector, 3 if fit_b0 else 2)
    keep = np.isfinite(u) & np.isfinite(v) & np.isfinite(w) & (np.abs(w) <= w_max) & (np.hypot(u, v) >= u_min)
    if int(keep.sum()) < need:
        raise ValueError(f"planar fit: {int(keep.sum())} usable periods (|w| <= {w_max:g} m/s, speed >= {u_min:g} "
                         f"m/s), {need} needed")
    everything = fit_plane(u[keep], v[keep], w[keep], fit_b0=fit_b0)
    angle = np.mod(sonic_wind_angle(u, v) - north_offset_deg, 360.0)
    width = 360.0 / n_sectors
    sectors: list[PlanarFitSector] = []
    numerosity: list[int] = []
    fallback: list[int] = []
    for k in range(n_sectors):
        sel = keep & (angle >= k * width) & (angle < (k + 1) * width)
        count = int(sel.sum())
        numerosity.append(count)
        if count >= need:
            coef = fit_plane(u[sel], v[sel], w[sel], fit_b0=fit_b0)
        else:
            coef = everything
            fallback.append(k)
        start = (north_offset_deg + k * width) % 360.0
        sectors.append(PlanarFitSector(start, start + width, coef))
    return PlanarFit(sectors, numerosity, fallback, int(keep.sum()))


def plane_rotation_matrix(b1: float, b2: float) -> NDArray[np.float64]:
    """Tilt matrix ``P`` with rows ``i, j, k`` of the planar-fit frame (Wilczak et al. 2001, eqs. 36 and 42-44).

    ``k = (-b1, -b2, 1) / sqrt(1 + b1^2 + b2^2)`` (unit normal of the plane), ``j = (0, 1, b2) / sqrt(1 + b2^2)``,
    ``i = j x k``. Equivalent to the pitch ``alpha`` and roll ``beta`` of Wilczak eq. 42:
    ``sin(alpha) = -b1 / sqrt(1 + b1^2 + b2^2)`` etc. A vector in the sonic frame maps as ``P @ vec``.
    """
    k = np.array([-b1, -b2, 1.0]) / math.sqrt(1.0 + b1 * b1 + b2 * b2)
    j = np.array([0.0, 1.0, b2]) / math.sqrt(1.0 + b2 * b2)
    i = np.cross(j, k)
    return np.vstack([i, j, k])


def select_sector(
    sectors: list[PlanarFitSector], u_mean: float, v_mean: float, *, angle_deg: float | None = None
) -> PlanarFitSector:
    """The sector whose ``[start, end)`` contains the period's wind direction (degrees; default
    :func:`sonic_wind_angle` of the sonic-frame means ``u_mean``, ``v_mean`` in m s-1, or ``angle_deg`` if given)."""
    ang = float(sonic_wind_angle(u_mean, v_mean)) if angle_deg is None else float(angle_deg) % 360.0
    for sec in sectors:
        lo, hi = sec.start_deg % 360.0, sec.end_deg % 360.0
        inside = lo <= ang < hi if lo < hi else (ang >= lo or ang < hi)
        if inside or (hi == lo):
            return sec
    raise ValueError(f"no sector contains wind angle {ang:.2f} deg")


def apply_planar_fit(
    u: ArrayLike,
    v: ArrayLike,
    w: ArrayLike,
    coefficients: PlanarFitCoefficients,
    *,
    subtract_b0: bool = True,
) -> PlanarFitRotation:
    """Rotate one averaging period with a planar fit (Wilczak et al. 2001, eqs. 36, 42-45).

    ``u, v, w``: sonic-frame wind series, m s-1 (NaN allowed; means ignore it). Step 1, tilt:
    ``[u_p, v_p, w_p] = P [u, v, w - b0]`` (``- b0`` only when ``subtract_b0``). Step 2, yaw about the plane normal:
    ``gamma = atan2(mean v_p, mean u_p)``, ``u_r = u_p cos(gamma) + v_p sin(gamma)``,
    ``v_r = -u_p sin(gamma) + v_p cos(gamma)``, ``w_r = w_p``.
    """
    uu = np.asarray(u, dtype=np.float64)
    vv = np.asarray(v, dtype=np.float64)
    ww = np.asarray(w, dtype=np.float64)
    p = plane_rotation_matrix(coefficients.b1, coefficients.b2)
    w_in = ww - coefficients.b0 if subtract_b0 else ww
    up = p[0, 0] * uu + p[0, 1] * vv + p[0, 2] * w_in
    vp = p[1, 0] * uu + p[1, 1] * vv + p[1, 2] * w_in
    wp = p[2, 0] * uu + p[2, 1] * vv + p[2, 2] * w_in
    gamma = math.atan2(float(np.nanmean(vp)), float(np.nanmean(up)))
    cg, sg = math.cos(gamma), math.sin(gamma)
    ur = up * cg + vp * sg
    vr = -up * sg + vp * cg
    return PlanarFitRotation(
        u=ur,
        v=vr,
        w=wp,
        tilt_matrix=p,
        yaw_deg=math.degrees(gamma) % 360.0,
        u_mean=float(np.nanmean(ur)),
        v_mean=float(np.nanmean(vr)),
        w_mean=float(np.nanmean(wp)),
    )


_FLOAT = r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"


def parse_eddypro_planar_fit(text: str) -> PlanarFitFile:
    """Parse the text of an EddyPro planar-fit file (``planar_fit.txt``).

    Recognised parts: ``Key:  value`` settings lines (e.g. ``Number_of_selected_wind_sectors``), the table after
    ``Fitting planes coefficients`` (``WindSector  start- end  B0  B1  B2``; degrees, m s-1, -, -) and the
    ``Rotation matrices`` blocks (``Sector number  n; angle: a - b  sector numerosity: N`` followed by three rows).
    """
    settings: dict[str, str] = {}
    sectors: list[PlanarFitSector] = []
    matrices: list[NDArray[np.float64]] = []
    numerosity: list[int] = []
    lines = text.splitlines()
    sector_re = re.compile(rf"^\s*(\d+)\s+({_FLOAT})\s*-\s*({_FLOAT})\s+({_FLOAT})\s+({_FLOAT})\s+({_FLOAT})\s*$")
    matrix_head = re.compile(r"^\s*Sector number\s+\d+;.*numerosity:\s*(\d+)", re.IGNORECASE)
    row_re = re.compile(rf"^\s*({_FLOAT})\s+({_FLOAT})\s+({_FLOAT})\s*$")
    i = 0
    while i < len(lines):
        line = lines[i]
        m_sec = sector_re.match(line)
        m_mat = matrix_head.match(line)
        if m_sec:
            start, end = float(m_sec.group(2)), float(m_sec.group(3))
            b0, b1, b2 = (float(m_sec.group(k)) for k in (4, 5, 6))
            sectors.append(PlanarFitSector(start, end, PlanarFitCoefficients(b0, b1, b2)))
        elif m_mat:
            numerosity.append(int(m_mat.group(1)))
            rows = []
            for j in range(1, 4):
                m_row = row_re.match(lines[i + j]) if i + j < len(lines) else None
                if m_row is None:
                    raise ValueError(f"planar-fit matrix truncated after line {i + 1}")
                rows.append([float(m_row.group(k)) for k in (1, 2, 3)])
            matrices.append(np.array(rows))
            i += 3
        elif ":" in line and not line.lstrip().startswith("Sector"):
            key, _, value = line.partition(":")
            settings[key.strip()] = value.strip()
        i += 1
    if not sectors:
        raise ValueError("no planar-fit sector coefficients found")
    if numerosity and len(numerosity) == len(sectors):
        sectors = [
            PlanarFitSector(
                s.start_deg,
                s.end_deg,
                PlanarFitCoefficients(s.coefficients.b0, s.coefficients.b1, s.coefficients.b2, n),
            )
            for s, n in zip(sectors, numerosity, strict=True)
        ]
    return PlanarFitFile(settings=settings, sectors=sectors, matrices=matrices, numerosity=numerosity)
