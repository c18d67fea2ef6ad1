"""Synthetic surface-layer turbulence with prescribed statistics: the known truth behind every simulated sonic
anemometer and gas analyzer, so that downstream flux science can be checked against it.

Construction (per block of `block_s` seconds, deterministic from (seed, block index)):

1. Six independent white-noise series are passed through the same first-order autoregressive filter
   x[t] = a·x[t-1] + sqrt(1-a²)·z[t], a = exp(-1/(f·T)), which keeps unit variance and gives each series an
   exponential autocorrelation with integral time scale T (a red spectrum, roughly like surface-layer
   turbulence at frequencies above the spectral peak). Filtering all series with the same linear filter keeps
   them mutually uncorrelated.
2. They are mixed by the Cholesky factor L of the prescribed covariance matrix Σ of (u, v, w, Ts, CO2, H2O)
   in the streamline frame: y = L·x, so cov(y) = Σ exactly in expectation.
3. Means are added, and the wind is turned from the streamline frame into the instrument frame by a pitch tilt
   (the sonic not being level) and the wind direction relative to the sonic's x axis. Double rotation (Kaimal &
   Finnigan 1994, sec. 6.7; Wilczak et al. 2001) undoes exactly this.
4. The gas analyzer's series are delayed by `lag_s` relative to the sonic's (the time lag that covariance
   maximisation must find).

Units: wind m s-1, Ts K, CO2 and H2O molar densities mmol m-3 (open path) — converters for other units belong
to the device simulators.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

SONIC = ("u", "v", "w", "ts")
GAS = ("co2", "h2o")
VARIABLES = SONIC + GAS


@dataclass(frozen=True)
class TurbulenceSpec:
    frequency_hz: float = 20.0
    block_s: float = 1800.0
    wind_speed: float = 3.0  # m s-1, mean along the streamline
    wind_dir_deg: float = 30.0  # mean wind direction in the sonic frame, counter-clockwise from +x
    pitch_deg: float = 3.0  # tilt of the sonic's z axis against the streamline frame
    ts_mean: float = 293.15  # K
    co2_mean: float = 16.5  # mmol m-3 (~ 410 umol mol-1 at 20 degC, 100 kPa)
    h2o_mean: float = 600.0  # mmol m-3
    time_scale_s: float = 0.8  # integral time scale of every series
    lag_s: float = 0.25  # gas analyzer behind the sonic
    # covariance matrix in the streamline frame, variables in VARIABLES order
    covariance: tuple[tuple[float, ...], ...] = field(default=(
        # u       v      w       ts      co2      h2o
        (0.80, 0.00, -0.150, -0.060, 0.010, -0.20),
        (0.00, 0.60, 0.000, 0.000, 0.000, 0.00),
        (-0.150, 0.00, 0.160, 0.080, -0.012, 0.30),
        (-0.060, 0.00, 0.080, 0.150, -0.010, 0.20),
        (0.010, 0.00, -0.012, -0.010, 0.010, -0.05),
        (-0.20, 0.00, 0.30, 0.20, -0.05, 4.00),
    ))

    def covariance_matrix(self) -> NDArray[np.float64]:
        return np.array(self.covariance, dtype=np.float64)

    def truth(self, a: str, b: str) -> float:
        """The prescribed covariance of two variables in the streamline frame (what a flux engine must find)."""
        return float(self.covariance_matrix()[VARIABLES.index(a), VARIABLES.index(b)])

    @property
    def lag_samples(self) -> int:
        return round(self.lag_s * self.frequency_hz)

    @property
    def block_samples(self) -> int:
        return round(self.block_s * self.frequency_hz)


class TurbulenceField:
    """Deterministic turbulence indexed by sample number; two simulators with the same spec and seed (a sonic and
    an analyzer) see the same field, so their covariances and their lag are known."""

    def __init__(self, spec: TurbulenceSpec | None = None, seed: int = 0) -> None:
        self.spec = spec or TurbulenceSpec()
        self.seed = seed
        self._cholesky = np.linalg.cholesky(self.spec.covariance_matrix())
        yaw = np.radians(self.spec.wind_dir_deg)
        pitch = np.radians(self.spec.pitch_deg)
        # streamline -> instrument: tilt about y by pitch, then turn about z by the wind direction
        tilt = np.array([[np.cos(pitch), 0.0, -np.sin(pitch)], [0.0, 1.0, 0.0], [np.sin(pitch), 0.0, np.cos(pitch)]])
        turn = np.array([[np.cos(yaw), -np.sin(yaw), 0.0], [np.sin(yaw), np.cos(yaw), 0.0], [0.0, 0.0, 1.0]])
        self._to_instrument = turn @ tilt
        self._block = lru_cache(maxsize=3)(self._make_block)

    def _make_block(self, block: int) -> NDArray[np.float64]:
        """Streamline-frame fluctuations plus means, shape (block_samples, 6)."""
        spec = self.spec
        n = spec.block_samples
        # seed sequences need non-negative entries; block -1 exists (the lag reaches before sample 0)
        rng = np.random.default_rng([self.seed, block + (1 << 40)])
        a = float(np.exp(-1.0 / (spec.frequency_hz * spec.time_scale_s)))
        white = rng.standard_normal((n, len(VARIABLES)))
        red = np.empty_like(white)
        red[0] = white[0]
        gain = np.sqrt(1.0 - a * a)
        for t in range(1, n):  # AR(1); a Python loop over 36k rows is ~30 ms, done once per block
            red[t] = a * red[t - 1] + gain * white[t]
        mixed: NDArray[np.float64] = red @ self._cholesky.T
        mixed[:, 0] += spec.wind_speed
        mixed[:, 3] += spec.ts_mean
        mixed[:, 4] += spec.co2_mean
        mixed[:, 5] += spec.h2o_mean
        return mixed

    def streamline(self, start: int, count: int) -> NDArray[np.float64]:
        """Samples start..start+count-1 in the streamline frame (u, v, w, ts, co2, h2o), not lagged."""
        n = self.spec.block_samples
        rows = [self._block(i // n)[i % n] for i in range(start, start + count)] if count < 64 else None
        if rows is not None:
            return np.array(rows).reshape(count, len(VARIABLES))
        first, last = start // n, (start + count - 1) // n
        stacked = np.concatenate([self._block(b) for b in range(first, last + 1)])
        offset = start - first * n
        return stacked[offset:offset + count]

    def sonic(self, start: int, count: int = 1) -> NDArray[np.float64]:
        """(u, v, w, ts) in the instrument frame: what the sonic anemometer measures, shape (count, 4)."""
        field_ = self.streamline(start, count)
        wind = field_[:, :3] @ self._to_instrument.T
        return np.column_stack([wind, field_[:, 3]])

    def gas(self, start: int, count: int = 1) -> NDArray[np.float64]:
        """(co2, h2o) molar densities as the analyzer reports them: delayed by the lag, shape (count, 2)."""
        return self.streamline(start - self.spec.lag_samples, count)[:, 4:6]

    def index_at(self, unix_time: float) -> int:
        """Sample number for a wall-clock time, so separate simulators stay coherent."""
        return int(np.floor(unix_time * self.spec.frequency_hz))
