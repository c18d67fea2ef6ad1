"""A plausible, deterministic weather at one site for the met-sensor simulators (SR30 pyranometer, HMP155
temperature/humidity probe): incoming shortwave from solar geometry, air temperature and humidity following it.

Every value is a pure function of the Unix time, so two simulators of one demo station agree (the sun that
warms the air is the one the pyranometer sees), and tests can ask for noon or midnight directly.

- Sun: declination, equation of time and orbital eccentricity from Spencer (1971, Search 2(5):172) Fourier
  series; hour angle from UTC, longitude and the equation of time; cos(zenith) from the spherical triangle.
- Clear sky: Haurwitz (1945, J. Meteorol. 2:154), GHI = 1098 cos z exp(-0.057 / cos z) W m-2, times the
  eccentricity factor.
- Clouds: a transmittance between 1 - cloudiness and 1, a sum of slow sinusoids with seeded phases (periods of
  20 min to 5 h), so the sky varies but the same seed gives the same day.
- Air temperature: annual mean + seasonal cosine (warmest near 20 July) + a diurnal cosine peaking at 14:30 local
  solar time.
- Humidity: the day's vapour pressure is fixed by a dew point just below the night's minimum temperature
  (night RH `night_rh`); RH = e / e_w(TA) (gateway.variables), so RH falls as the air warms, as it does.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gateway.variables import saturation_vapour_pressure_hpa

SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True, slots=True)
class SolarPosition:
    cos_zenith: float
    eccentricity: float  # (r0/r)^2, the top-of-atmosphere irradiance factor
    solar_hour: float  # local apparent solar time, hours


def solar_position(unix_time: float, latitude_deg: float, longitude_deg: float) -> SolarPosition:
    """Sun position by Spencer's (1971) series; good to about 0.1 deg in declination, plenty for a simulator."""
    moment = datetime.fromtimestamp(unix_time, UTC)
    day_angle = 2.0 * math.pi * (moment.timetuple().tm_yday - 1) / 365.0
    c1, s1 = math.cos(day_angle), math.sin(day_angle)
    c2, s2 = math.cos(2 * day_angle), math.sin(2 * day_angle)
    c3, s3 = math.cos(3 * day_angle), math.sin(3 * day_angle)
    declination = 0.006918 - 0.399912 * c1 + 0.070257 * s1 - 0.006758 * c2 + 0.000907 * s2 - 0.002697 * c3 \
        + 0.00148 * s3
    equation_of_time_min = 229.18 * (0.000075 + 0.001868 * c1 - 0.032077 * s1 - 0.014615 * c2 - 0.040849 * s2)
    eccentricity = 1.000110 + 0.034221 * c1 + 0.001280 * s1 + 0.000719 * c2 + 0.000077 * s2
    utc_hours = (unix_time % SECONDS_PER_DAY) / 3600.0
    solar_hour = (utc_hours + longitude_deg / 15.0 + equation_of_time_min / 60.0) % 24.0
    hour_angle = math.radians(15.0 * (solar_hour - 12.0))
    latitude = math.radians(latitude_deg)
    cos_zenith = (math.sin(latitude) * math.sin(declination)
                  + math.cos(latitude) * math.cos(declination) * math.cos(hour_angle))
    return SolarPosition(cos_zenith, eccentricity, solar_hour)


def haurwitz_clear_sky(cos_zenith: float) -> float:
    """Clear-sky global horizontal irradiance in W m-2 (Haurwitz 1945); 0 with the sun below the horizon."""
    if cos_zenith <= 0.0:
        return 0.0
    return 1098.0 * cos_zenith * math.exp(-0.057 / cos_zenith)


@dataclass(frozen=True)
class MetSignal:
    """The weather at one site. Defaults: a temperate forest at 51 N 10.5 E (central Germany)."""

    latitude_deg: float = 51.0
    longitude_deg: float = 10.5
    ta_annual_mean_c: float = 9.0
    ta_seasonal_amplitude_c: float = 8.0
    ta_diurnal_amplitude_c: float = 5.0
    night_rh: float = 95.0
    cloudiness: float = 0.3  # 0 = always clear, 1 = transmittance down to 0
    seed: int = 0
    _cloud_phases: tuple[tuple[float, float], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        periods_s = (1200.0, 2700.0, 5400.0, 10800.0, 18000.0)
        object.__setattr__(self, "_cloud_phases", tuple((p, rng.uniform(0, 2 * math.pi)) for p in periods_s))

    def sun(self, unix_time: float) -> SolarPosition:
        return solar_position(unix_time, self.latitude_deg, self.longitude_deg)

    def transmittance(self, unix_time: float) -> float:
        """Cloud transmittance in [1 - cloudiness, 1]."""
        wave = sum(math.sin(2 * math.pi * unix_time / period + phase) for period, phase in self._cloud_phases)
        clear_fraction = 0.5 + 0.5 * math.tanh(wave)  # mostly near 0 or 1: broken clouds come and go
        return 1.0 - self.cloudiness * (1.0 - clear_fraction)

    def sw_in(self, unix_time: float) -> float:
        """Incoming shortwave at the surface, W m-2 (0 at night)."""
        sun = self.sun(unix_time)
        return haurwitz_clear_sky(sun.cos_zenith) * sun.eccentricity * self.transmittance(unix_time)

    def _daily_mean_and_amplitude(self, unix_time: float) -> tuple[float, float]:
        day = datetime.fromtimestamp(unix_time, UTC).timetuple().tm_yday
        mean = self.ta_annual_mean_c + self.ta_seasonal_amplitude_c * math.cos(2 * math.pi * (day - 201) / 365.0)
        return mean, self.ta_diurnal_amplitude_c

    def ta(self, unix_time: float) -> float:
        """Air temperature, degC: warmest at 14:30 local solar time."""
        mean, amplitude = self._daily_mean_and_amplitude(unix_time)
        hour = self.sun(unix_time).solar_hour
        return mean + amplitude * math.cos(2 * math.pi * (hour - 14.5) / 24.0)

    def rh(self, unix_time: float) -> float:
        """Relative humidity (% over water): the day's vapour pressure over e_w(TA), at most 100 %."""
        mean, amplitude = self._daily_mean_and_amplitude(unix_time)
        vapour_pressure = self.night_rh / 100.0 * saturation_vapour_pressure_hpa(mean - amplitude)
        return min(100.0, 100.0 * vapour_pressure / saturation_vapour_pressure_hpa(self.ta(unix_time)))
