"""Potential (top-of-atmosphere) radiation and the day/night split that flux partitioning uses.

Method, as REddyProc computes it (``fCalcPotRadiation``, which calls ``computeSunPositionDoyHour`` of the R package
solartime; formulas after A. Cescatti's code, eccentricity after Lanini 2010):

* fractional year ``γ = 2π (DoY − 1) / 365.24`` (rad), DoY the day of the year (1 = 1 January) of the station's
  standard (winter) time;
* solar declination (rad) ``δ = (0.33281 − 22.984 cos γ − 0.34990 cos 2γ − 0.13980 cos 3γ + 3.7872 sin γ
  + 0.03205 sin 2γ + 0.07187 sin 3γ) · π/180``;
* equation of time (h) ``EoT = 0.0072 cos γ − 0.0528 cos 2γ − 0.0012 cos 3γ − 0.1229 sin γ − 0.1565 sin 2γ
  − 0.0041 sin 3γ``;
* apparent solar time (h) ``t_sol = t_local + (λ/15 − UTC offset) + EoT = t_UTC + λ/15 + EoT`` (λ longitude in
  degrees east), hour angle ``ω = (t_sol − 12) · π/12``;
* solar elevation ``h = asin(sin δ sin φ + cos δ cos φ cos ω)`` (φ latitude);
* extraterrestrial irradiance on a plane normal to the beam (W m-2)
  ``S = 1366.1 · (1.00011 + 0.034221 cos γ + 0.00128 sin γ + 0.000719 cos 2γ + 0.000077 sin 2γ)``
  (solar constant 1366.1 W m-2; eccentricity series of Spencer 1971, Search 2(5), 172);
* potential radiation on a horizontal plane ``PotRad = S · sin h`` where ``h > 0``, else 0 (W m-2).

Time stamps are the **middle** of each averaging period (REddyProc shifts its half-hour stamps to the middle before
computing PotRad). Only the day of the year depends on the UTC offset; the solar time does not.

Day/night: REddyProc's nighttime partitioning (``sMRFluxPartition``) takes a record as night when the *measured*
(not gap-filled) global radiation is at most 10 W m-2 **and** the potential radiation is 0; a record whose measured
radiation is missing is neither (``ifelse(Rg > 10 | PotRad > 0, NA, NEE)`` gives NA when Rg is NA and PotRad is 0),
so it is not used for the respiration regressions. Its daytime partitioning (``partGLExtractStandardData``) uses the
gap-filled radiation with a 4 W m-2 threshold: night ``Rg_f ≤ 4 and PotRad ≤ 0``, day ``Rg_f > 4 and PotRad > 0``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "SOLAR_CONSTANT",
    "day_of_year",
    "extraterrestrial_radiation",
    "night_mask",
    "potential_radiation",
    "radiation_time_offset_h",
    "solar_declination",
    "solar_elevation",
]

SOLAR_CONSTANT = 1366.1
"""Total solar irradiance at 1 AU used by REddyProc (``fCalcExtRadiation``), W m-2."""

_SECONDS_PER_DAY = 86400.0
_DAYS_PER_YEAR_REDDYPROC = 365.24


def day_of_year(time_utc_s: ArrayLike, utc_offset_h: float = 0.0) -> NDArray[np.int64]:
    """Day of the year (1 = 1 January) of each time stamp in the station's standard time.

    ``time_utc_s`` are seconds since 1970-01-01 00:00 UTC; ``utc_offset_h`` is the station's standard-time offset
    (hours ahead of UTC, +1 for Central Europe).
    """
    t = np.asarray(time_utc_s, dtype=float)
    local = (t + utc_offset_h * 3600.0).astype("datetime64[s]")
    days = local.astype("datetime64[D]")
    years = days.astype("datetime64[Y]")
    return (days - years).astype(np.int64) + 1


def _fractional_year(doy: NDArray[np.int64]) -> NDArray[np.float64]:
    return 2.0 * np.pi * (doy.astype(float) - 1.0) / _DAYS_PER_YEAR_REDDYPROC


def solar_declination(doy: ArrayLike) -> NDArray[np.float64]:
    """Solar declination δ (rad) for day of year ``doy`` (Fourier series of the module docstring)."""
    g = _fractional_year(np.asarray(doy, dtype=np.int64))
    deg = (
        0.33281
        - 22.984 * np.cos(g)
        - 0.34990 * np.cos(2 * g)
        - 0.13980 * np.cos(3 * g)
        + 3.7872 * np.sin(g)
        + 0.03205 * np.sin(2 * g)
        + 0.07187 * np.sin(3 * g)
    )
    return np.asarray(np.deg2rad(deg), dtype=float)


def _equation_of_time_h(g: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.asarray(
        0.0072 * np.cos(g)
        - 0.0528 * np.cos(2 * g)
        - 0.0012 * np.cos(3 * g)
        - 0.1229 * np.sin(g)
        - 0.1565 * np.sin(2 * g)
        - 0.0041 * np.sin(3 * g),
        dtype=float,
    )


def solar_elevation(
    time_mid_utc_s: ArrayLike, lat: float, lon: float, utc_offset_h: float = 0.0
) -> NDArray[np.float64]:
    """Solar elevation above the horizon (rad) at the middle of each period.

    ``time_mid_utc_s``: seconds since 1970-01-01 UTC of the middle of each period; ``lat`` degrees north, ``lon``
    degrees east; ``utc_offset_h`` only chooses the calendar day (station standard time), as REddyProc does.
    """
    _check_site(lat, lon)
    t = np.asarray(time_mid_utc_s, dtype=float)
    doy = day_of_year(t, utc_offset_h)
    g = _fractional_year(doy)
    hour_utc = np.mod(t, _SECONDS_PER_DAY) / 3600.0
    solar_hour = hour_utc + lon / 15.0 + _equation_of_time_h(g)
    hour_angle = (solar_hour - 12.0) * np.pi / 12.0
    decl = solar_declination(doy)
    phi = np.deg2rad(lat)
    sin_h = np.sin(decl) * np.sin(phi) + np.cos(decl) * np.cos(phi) * np.cos(hour_angle)
    return np.asarray(np.arcsin(np.clip(sin_h, -1.0, 1.0)), dtype=float)


def extraterrestrial_radiation(doy: ArrayLike) -> NDArray[np.float64]:
    """Extraterrestrial irradiance normal to the beam (W m-2) with the eccentricity correction (module docstring)."""
    g = _fractional_year(np.asarray(doy, dtype=np.int64))
    return np.asarray(
        SOLAR_CONSTANT
        * (1.00011 + 0.034221 * np.cos(g) + 0.00128 * np.sin(g) + 0.000719 * np.cos(2 * g) + 0.000077 * np.sin(2 * g)),
        dtype=float,
    )


def potential_radiation(
    time_mid_utc_s: ArrayLike, lat: float, lon: float, utc_offset_h: float = 0.0
) -> NDArray[np.float64]:
    """Potential radiation on a horizontal plane at the top of the atmosphere (W m-2), 0 at night.

    As REddyProc's ``fCalcPotRadiation`` with solar-time correction (module docstring). ``time_mid_utc_s`` are the
    middles of the periods in seconds since 1970-01-01 UTC; ``lat`` degrees north, ``lon`` degrees east.
    """
    t = np.asarray(time_mid_utc_s, dtype=float)
    elev = solar_elevation(t, lat, lon, utc_offset_h)
    ext = extraterrestrial_radiation(day_of_year(t, utc_offset_h))
    return np.where(elev > 0.0, ext * np.sin(elev), 0.0)


def night_mask(
    sw_in: ArrayLike, potential_rad: ArrayLike, sw_in_threshold: float = 10.0
) -> NDArray[np.bool_]:
    """Night as REddyProc's partitioning takes it: ``SW_IN ≤ threshold`` (W m-2) and potential radiation ≤ 0.

    ``sw_in`` is the measured incoming shortwave radiation (NaN where missing): a record with missing ``SW_IN`` is
    not night (REddyProc leaves it out of the respiration regressions). The nighttime method uses 10 W m-2
    (``sMRFluxPartition``), the daytime method 4 W m-2 on gap-filled radiation (``partGLExtractStandardData``).
    """
    sw = np.asarray(sw_in, dtype=float)
    pot = np.asarray(potential_rad, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.asarray((sw <= sw_in_threshold) & (pot <= 0.0), dtype=bool)


def radiation_time_offset_h(sw_in: ArrayLike, potential_rad: ArrayLike, steps_per_day: int) -> float:
    """How many hours the mean daily course of measured ``sw_in`` is centred after that of ``potential_rad``
    (negative: before); NaN without a day of radiation.

    Both are W m-2 on a grid of whole days (``steps_per_day`` records a day, the first at midnight); only records
    with ``sw_in`` measured are used, potential radiation at the same records. The centre is the radiation-weighted
    mean time of day of each mean daily course; ``sw_in`` counts only where the sun is up by ``potential_rad`` (a
    sensor's night offset would pull the centre towards midnight) and never below 0. Clouds move the
    centre of measured radiation by a few minutes over a year (FR-Hes 2016 −0.03 h, DE-Tha 1998 −0.06 h); stamps on
    another clock than the one the potential radiation was computed for move it by the clocks' difference (stamps in
    UTC read as UTC+1: −1.0 h). This is the check of time stamps against potential radiation that the FLUXNET2015
    data quality checks make (Pastorello et al. 2020, Sci. Data 7, 225, data quality: timestamp alignment).
    """
    sw = np.asarray(sw_in, dtype=float)
    pot = np.asarray(potential_rad, dtype=float)
    if sw.shape != pot.shape or sw.size % steps_per_day:
        raise ValueError(f"sw_in and potential_rad: expected whole days of {steps_per_day} records of the same shape, "
                         f"got {sw.shape} and {pot.shape}")
    use = np.isfinite(sw) & np.isfinite(pot)
    if not use.any():
        return float("nan")
    days = lambda a: np.where(use, a, 0.0).reshape(-1, steps_per_day).sum(axis=0)  # noqa: E731
    measured = days(np.clip(np.where(use & (pot > 0.0), sw, 0.0), 0.0, None))  # a night offset does not count
    potential = days(pot)
    if measured.sum() <= 0.0 or potential.sum() <= 0.0:
        return float("nan")
    hour = (np.arange(steps_per_day) + 0.5) * 24.0 / steps_per_day
    return float((measured * hour).sum() / measured.sum() - (potential * hour).sum() / potential.sum())


def _check_site(lat: float, lon: float) -> None:
    if not (np.isfinite(lat) and -90.0 <= lat <= 90.0):
        raise ValueError(f"latitude {lat!r} is not in [-90, 90] degrees north; give the site latitude in degrees")
    if not (np.isfinite(lon) and -180.0 <= lon <= 360.0):
        raise ValueError(f"longitude {lon!r} is not in [-180, 360] degrees east; give the site longitude in degrees")
