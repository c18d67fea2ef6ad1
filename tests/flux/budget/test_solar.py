"""Solar geometry and potential radiation against independent values.

The independent reference is the NOAA Solar Calculator's algorithm (NOAA Global Monitoring Laboratory, "General
Solar Position Calculations" and its spreadsheet NOAA_Solar_Calculations_day.xls, after Meeus 1991, Astronomical
Algorithms), re-typed here from its published equations. REddyProc's formulas take the declination and the equation
of time for the whole day from the integer day of the year (its value at 0 h), which near the equinoxes is up to
0.4° off by the end of the day; with the Fourier series' own error the elevation differs from NOAA's by at most 0.8°
(median 0.1–0.3°).
"""

from __future__ import annotations

import numpy as np
import pytest

from gateway.flux.budget.solar import (
    day_of_year,
    extraterrestrial_radiation,
    night_mask,
    potential_radiation,
    solar_declination,
    solar_elevation,
)

FR_HES = (48.6742, 7.0656)


def _epoch(iso: str) -> float:
    return float(np.datetime64(iso, "s").astype(float))


def noaa_elevation_deg(t_utc_s: np.ndarray, lat: float, lon: float) -> np.ndarray:
    """Solar elevation after the NOAA spreadsheet (no refraction), degrees."""
    jd = t_utc_s / 86400.0 + 2440587.5
    jc = (jd - 2451545.0) / 36525.0
    l0 = np.mod(280.46646 + jc * (36000.76983 + jc * 0.0003032), 360.0)
    m = 357.52911 + jc * (35999.05029 - 0.0001537 * jc)
    e = 0.016708634 - jc * (0.000042037 + 0.0000001267 * jc)
    mr = np.deg2rad(m)
    c = (
        np.sin(mr) * (1.914602 - jc * (0.004817 + 0.000014 * jc))
        + np.sin(2 * mr) * (0.019993 - 0.000101 * jc)
        + np.sin(3 * mr) * 0.000289
    )
    true_long = l0 + c
    omega = 125.04 - 1934.136 * jc
    app_long = true_long - 0.00569 - 0.00478 * np.sin(np.deg2rad(omega))
    obliq0 = 23 + (26 + (21.448 - jc * (46.815 + jc * (0.00059 - jc * 0.001813))) / 60) / 60
    obliq = obliq0 + 0.00256 * np.cos(np.deg2rad(omega))
    decl = np.rad2deg(np.arcsin(np.sin(np.deg2rad(obliq)) * np.sin(np.deg2rad(app_long))))
    y = np.tan(np.deg2rad(obliq / 2)) ** 2
    l0r = np.deg2rad(l0)
    eot_min = 4 * np.rad2deg(
        y * np.sin(2 * l0r)
        - 2 * e * np.sin(mr)
        + 4 * e * y * np.sin(mr) * np.cos(2 * l0r)
        - 0.5 * y * y * np.sin(4 * l0r)
        - 1.25 * e * e * np.sin(2 * mr)
    )
    minutes_utc = np.mod(t_utc_s, 86400.0) / 60.0
    true_solar = np.mod(minutes_utc + eot_min + 4 * lon, 1440.0)
    hour_angle = true_solar / 4 - 180
    phi = np.deg2rad(lat)
    cos_zen = np.sin(phi) * np.sin(np.deg2rad(decl)) + np.cos(phi) * np.cos(np.deg2rad(decl)) * np.cos(
        np.deg2rad(hour_angle)
    )
    return np.asarray(90.0 - np.rad2deg(np.arccos(cos_zen)), dtype=float)


@pytest.mark.parametrize("lat,lon", [FR_HES, (50.9636, 13.5669), (-33.9, 151.2), (0.0, -60.0), (69.6, 18.9)])
def test_elevation_matches_noaa_over_a_year(lat: float, lon: float) -> None:
    t = _epoch("2016-01-01T00:15:00") + 3600.0 * np.arange(366 * 24)
    ours = np.rad2deg(solar_elevation(t, lat, lon, utc_offset_h=0.0))
    noaa = noaa_elevation_deg(t, lat, lon)
    assert np.max(np.abs(ours - noaa)) < 0.8
    assert np.median(np.abs(ours - noaa)) < 0.3


def test_declination_at_solstices_and_equinox() -> None:
    # 2016: March equinox 20 March (DoY 80), June solstice 20/21 June (DoY 172/173), December solstice 21 Dec (356).
    assert abs(np.rad2deg(solar_declination(np.array([80])))[0]) < 0.5
    assert np.rad2deg(solar_declination(np.array([172])))[0] == pytest.approx(23.44, abs=0.1)
    assert np.rad2deg(solar_declination(np.array([356])))[0] == pytest.approx(-23.44, abs=0.1)


def test_noon_elevation_and_solar_noon_at_fr_hes_midsummer() -> None:
    lat, lon = FR_HES
    t = _epoch("2016-06-21T00:00:00") + 60.0 * np.arange(24 * 60)  # every minute, UTC
    elev = np.rad2deg(solar_elevation(t, lat, lon, 1.0))
    i = int(np.argmax(elev))
    # Noon elevation 90 - lat + declination (23.44°) = 64.77°.
    assert elev[i] == pytest.approx(90 - lat + 23.44, abs=0.15)
    # Solar noon = 12:00 UTC - 4 min/° * 7.0656° - EoT (-1.7 min on 21 June, NOAA) = 11:33.4 UTC.
    assert i / 60.0 == pytest.approx(11 + 33.4 / 60, abs=2.0 / 60)


def test_potential_radiation_zero_at_night_and_day_length() -> None:
    lat, lon = 50.9636, 13.5669
    t = _epoch("1998-06-21T00:15:00") - 3600 + 1800.0 * np.arange(48)  # local midnight (UTC+1), mid-periods
    pot = potential_radiation(t, lat, lon, 1.0)
    assert np.all(pot >= 0)
    # Geometric day length 2·acos(-tan φ tan δ)/15 h = 16.3 h at 51° N, midsummer: 32-33 half-hours of sun.
    assert 32 <= np.count_nonzero(pot > 0) <= 33
    # Noon: S·sin(h) with S ≈ 1321 W m-2 near aphelion and h ≈ 62.5°.
    assert np.max(pot) == pytest.approx(1321 * np.sin(np.deg2rad(90 - lat + 23.44)), rel=0.01)


def test_extraterrestrial_radiation_perihelion_and_aphelion() -> None:
    ext = extraterrestrial_radiation(np.array([3, 185]))
    assert ext[0] == pytest.approx(1366.1 * 1.0342, rel=2e-3)  # early January, Earth closest
    assert ext[1] == pytest.approx(1366.1 * 0.9669, rel=2e-3)  # early July, farthest


def test_day_of_year_uses_station_standard_time() -> None:
    t = np.array([_epoch("2016-12-31T23:45:00")])
    assert day_of_year(t, 0.0)[0] == 366
    assert day_of_year(t, 1.0)[0] == 1


def test_night_mask_follows_reddyproc() -> None:
    sw = np.array([0.0, 5.0, 12.0, np.nan, 0.0])
    pot = np.array([0.0, 0.0, 0.0, 0.0, 30.0])
    assert night_mask(sw, pot).tolist() == [True, True, False, False, False]


def test_bad_site_is_named() -> None:
    with pytest.raises(ValueError, match="latitude"):
        potential_radiation(np.array([0.0]), 95.0, 0.0)
