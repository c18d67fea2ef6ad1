"""Slowly varying synthetic signals for simulators of polled sensors (the GMP252 profile, the GMP343): one model
shared by the drivers' simulators so that no simulator imports another driver's package."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass
class SignalModel:
    """Soil-air CO2 and probe temperature at depth, following a damped, lagged diurnal cycle.

    Soil CO2 at 10-50 cm typically sits at 2000-6000 ppm and peaks in the afternoon as soil respiration follows
    soil temperature; the defaults put the peak at 15:00 local solar time.
    """

    base_ppm: float = 4000.0
    amplitude_ppm: float = 1500.0
    noise_ppm: float = 15.0
    temp_mean_c: float = 12.0
    temp_amplitude_c: float = 3.0
    noise_c: float = 0.05
    peak_hour: float = 15.0
    utc_offset_h: float = 0.0

    @classmethod
    def at_depth(cls, depth_m: float, **overrides: float) -> SignalModel:
        """A probe at `depth_m` below the surface: CO2 rises with depth (diffusion from a respiring soil column
        gives a roughly saturating profile), while the diurnal cycle is damped and delayed with depth (a soil
        thermal wave: e-folding depth ~0.1 m, ~3 h lag per 0.1 m)."""
        damping = math.exp(-depth_m / 0.1)
        params: dict[str, float] = {
            "base_ppm": 600.0 + 6000.0 * (1.0 - math.exp(-depth_m / 0.3)),
            "amplitude_ppm": (100.0 + 1500.0 * (1.0 - math.exp(-depth_m / 0.3))) * (0.3 + 0.7 * damping),
            "temp_amplitude_c": 6.0 * damping,
            "peak_hour": (15.0 + 30.0 * depth_m) % 24.0,
        }
        params.update(overrides)
        return cls(**params)

    def _phase(self, unix_time: float) -> float:
        hour = ((unix_time / 3600.0) + self.utc_offset_h) % 24.0
        return math.cos(2 * math.pi * (hour - self.peak_hour) / 24.0)

    def co2(self, unix_time: float, rng: random.Random) -> float:
        return max(0.0, self.base_ppm + self.amplitude_ppm * self._phase(unix_time) + rng.gauss(0, self.noise_ppm))

    def temperature(self, unix_time: float, rng: random.Random) -> float:
        return self.temp_mean_c + self.temp_amplitude_c * self._phase(unix_time) + rng.gauss(0, self.noise_c)
