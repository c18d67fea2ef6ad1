"""A synthetic site-year of soil CO2 profiles, chamber closures and dendrometers with a known truth.

For the central soil/stems job's tests and `sinkwatch demo` (a demo runs minutes; the report needs a year): the
readings a station would have delivered, as `Reading`s under the demo station's sensor and variable names, and the
truth they were made from.

**Soil profile** (half-hourly, one reading per variable at the middle of each half hour): the true surface efflux
``F0 = R10 · exp(E0 (1/(283.15 - 227.13) - 1/(T5 - 227.13))) · m(θ)`` (Lloyd & Taylor 1994, eq. 11, at the soil
temperature T5 of 5 cm; ``m`` a moisture limitation) is produced by a CO2 source decaying exponentially with depth
(e-folding ``lambda_m``) in a soil of uniform diffusivity ``D`` (Millington & Quirk 1961 with Massman's 1998 D0, at
the shallowest probe's temperature and water content), which gives the steady-state profile
``C(z) = C_atm + (F0 λ / D)(1 - exp(-z/λ))`` (µmol m-3). Each GMP252 reports ``x = C R T / p_comp`` (its
compensation at 1013.25 hPa and its own temperature) plus noise. The gradient method's `profile_fit` recovers F0
exactly from such a profile; the other methods carry their structural bias (docs/soil-stems.md). Soil temperature
follows damped, delayed annual and diurnal waves (e-folding depth 2 m for the annual, 0.12 m for the diurnal wave);
water content a seasonal course. Gaps: random half hours and one 9-day outage of the whole profile.

**Chamber** (optional): closures every ``chamber_every_h`` hours for 300 s, CO2 every 10 s with the lid state,
rising by the HMR curve of the chamber's true flux (``chamber_factor`` × F0: a collar sees its own patch of soil).

**Dendrometers** (every 30 min): per tree, radius change = growth (a logistic season, annual ``growth_um``) minus
tree water deficit (a diurnal shrinkage of 5-35 µm and a 12-day drought of 60-120 µm), plus 1 µm noise; one tree
is re-mounted in autumn (a jump the cleaning must remove) and one shows a single-sample spike. The tree list adds
trees without a dendrometer, whose true increments scatter around the instrumented ones'.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gateway.model import QualityFlag, Reading, ReadingTemplate, TimeSource

FloatArray = NDArray[np.float64]
R_GAS = 8.314462618
P_COMP = 101325.0
T_REF = 283.15
T_ZERO = 227.13
C_GC = 1800.0 * 12.011e-6  # µmol m-2 s-1 over a half hour -> gC m-2


@dataclass(frozen=True)
class ProbeSpec:
    """One depth of the simulated profile and the names its readings carry."""

    depth_m: float
    sensor: str
    co2_variable: str
    t_variable: str


@dataclass(frozen=True)
class TreeSpec:
    tree: str
    species: str
    dbh_cm: float
    growth_um: float  # true radial growth over the year (µm); the DBH increment is twice that
    sensor: str | None = None  # the dendrometer's sensor and variable, None: not instrumented
    variable: str | None = None

    @property
    def increment_cm(self) -> float:
        return 2.0 * self.growth_um / 1e4


@dataclass
class SoilYear:
    """The simulated year: readings to store and the truth. Times: ``time_s`` half-hour starts (UTC seconds; the
    first is local midnight of 1 January on the station's clock)."""

    year: int
    time_s: FloatArray
    flux_true: FloatArray  # µmol m-2 s-1, every half hour
    ts5: FloatArray  # soil temperature at 5 cm, °C
    measured: NDArray[np.bool_]  # half hours with profile readings
    readings: list[Reading]
    trees: list[TreeSpec]
    dendro_truth: dict[str, tuple[FloatArray, FloatArray, FloatArray]]  # tree -> (time_s, GRO, TWD) µm, zero growth
    chamber_truth: list[tuple[float, float]] = field(default_factory=list)  # (closure end, true flux)
    params: dict[str, float] = field(default_factory=dict)

    def truth_gc_m2(self) -> float:
        """The true annual soil efflux, gC m-2."""
        return float(self.flux_true.sum() * C_GC)


def _diffusivity(t_c: ArrayLike, swc: ArrayLike, porosity: float, p_pa: float) -> FloatArray:
    """Millington & Quirk (1961) ξ = ε^(10/3)/φ² times Massman (1998) D0 = 1.381e-5 (T/273.15)^1.81 (101325/p)."""
    eps = np.clip(porosity - np.asarray(swc, dtype=np.float64), 0.0, None)
    d0 = 1.381e-5 * ((np.asarray(t_c, dtype=np.float64) + 273.15) / 273.15) ** 1.81 * (101325.0 / p_pa)
    result: FloatArray = d0 * eps ** (10.0 / 3.0) / porosity**2
    return result


def soil_temperature(day: ArrayLike, hour: ArrayLike, depth_m: float) -> FloatArray:
    """°C at `depth_m`: annual wave (mean 9 °C, amplitude 8 K, damping depth 2 m) and diurnal wave (amplitude 5 K at
    the surface, damping depth 0.12 m), each delayed by z/d radians."""
    day = np.asarray(day, dtype=np.float64)
    hour = np.asarray(hour, dtype=np.float64)
    annual = 8.0 * math.exp(-depth_m / 2.0) * np.sin(2 * np.pi * (day - 110.0) / 365.0 - depth_m / 2.0)
    diurnal = 5.0 * math.exp(-depth_m / 0.12) * np.sin(2 * np.pi * (hour - 9.0) / 24.0 - depth_m / 0.12)
    result: FloatArray = 9.0 + annual + diurnal
    return result


class _Readings:
    """The year's readings, each series' fixed fields validated once (`ReadingTemplate`: a year is ~360,000
    readings, and a `Reading(...)` each took most of the simulation's time); the same instances as `Reading(...)`."""

    def __init__(self, station: str) -> None:
        self.station = station
        self.made: list[Reading] = []
        self._templates: dict[tuple[str, str, str], ReadingTemplate] = {}

    def add(self, sensor: str, variable: str, unit: str, time: datetime, value: float) -> None:
        template = self._templates.get((sensor, variable, unit))
        if template is None:
            template = self._templates[(sensor, variable, unit)] = ReadingTemplate(
                station=self.station, sensor=sensor, variable=variable, unit=unit, time_source=TimeSource.GATEWAY)
        self.made.append(template.reading(float(value), time, True, QualityFlag.GOOD, None))


def soil_year(year: int, *, station: str, probes: list[ProbeSpec], swc_sensor: str, swc_variable: str,
              trees: list[TreeSpec], seed: int = 0, porosity: float = 0.547, lambda_m: float = 0.15,
              r10: float = 2.2, e0: float = 308.56, atm_ppm: float = 420.0, noise_ppm: float = 3.0,
              p_pa: float = 99000.0, chamber: tuple[str, str, str, str] | None = None,
              chamber_every_h: int = 6, chamber_factor: float = 1.1, chamber_h_m: float = 0.132,
              chamber_kappa: float = 0.002, until: datetime | None = None, utc_offset_h: float = 0.0,
              ts_variable: str | None = None) -> SoilYear:
    """The simulated year (module docstring). `chamber`: (sensor, CO2 variable, LID variable, T variable) to add
    closures of an automated chamber. `until`: stop there (a year in progress). `utc_offset_h`: the year is that of
    a station clock this far ahead of UTC (its diurnal cycles too). `ts_variable`: the soil probe (`swc_sensor`)
    also reports the soil temperature at 5 cm, through the profile's outage."""
    rng = np.random.default_rng(seed)
    shift = utc_offset_h * 3600.0
    t0 = datetime(year, 1, 1, tzinfo=UTC).timestamp() - shift
    end = datetime(year + 1, 1, 1, tzinfo=UTC).timestamp() - shift
    if until is not None:
        end = min(end, until.timestamp())
    n = int((end - t0) // 1800)
    time_s: FloatArray = t0 + 1800.0 * np.arange(n, dtype=np.float64)
    mid = time_s + 900.0
    day = (mid - t0) / 86400.0
    hour = ((mid + shift) % 86400.0) / 3600.0
    n_days = (datetime(year + 1, 1, 1) - datetime(year, 1, 1)).days
    weather = np.convolve(rng.standard_normal(n_days + 20), np.ones(7) / 7.0, mode="same")[10:10 + n_days]
    swc = 0.26 + 0.07 * np.cos(2 * np.pi * (day - 40.0) / 365.0) + 0.02 * weather[np.minimum(day.astype(int),
                                                                                             n_days - 1)]
    swc = np.clip(swc, 0.12, 0.42)
    ts5 = soil_temperature(day, hour, 0.05)
    moisture = np.clip(1.0 - ((swc - 0.28) / 0.2) ** 2, 0.3, 1.0)
    flux = r10 * np.exp(e0 * (1.0 / (T_REF - T_ZERO) - 1.0 / (ts5 + 273.15 - T_ZERO))) * moisture
    measured = rng.random(n) > 0.04
    outage = int(rng.integers(60, 280)) * 48
    measured[outage:outage + 9 * 48] = False
    readings = _Readings(station)
    stamps = [datetime.fromtimestamp(t, tz=UTC) for t in mid]
    if probes:
        z1 = probes[0].depth_m
        d1 = _diffusivity(soil_temperature(day, hour, z1), swc, porosity, p_pa)
        rho_scale = flux * lambda_m / d1  # (C(z) - C_atm) / (1 - exp(-z/λ)), µmol m-3
        c_atm = atm_ppm * p_pa / (R_GAS * (soil_temperature(day, hour, 0.0) + 273.15))
        for probe in probes:
            t_z = soil_temperature(day, hour, probe.depth_m)
            conc = c_atm + rho_scale * (1.0 - math.exp(-probe.depth_m / lambda_m))
            ppm = conc * R_GAS * (t_z + 273.15) / P_COMP + noise_ppm * rng.standard_normal(n)
            t_read = t_z + 0.05 * rng.standard_normal(n)
            for i in np.flatnonzero(measured).tolist():
                readings.add(probe.sensor, probe.co2_variable, "umol mol-1", stamps[i], ppm[i])
                readings.add(probe.sensor, probe.t_variable, "degC", stamps[i], t_read[i])
        swc_read = 100.0 * swc + 0.2 * rng.standard_normal(n)
        for i in np.flatnonzero(measured).tolist():
            readings.add(swc_sensor, swc_variable, "%", stamps[i], swc_read[i])
        if ts_variable is not None:
            # the soil probe is another device: it keeps reporting through the profile's outage
            ts_read = ts5 + 0.05 * rng.standard_normal(n)
            for i in np.flatnonzero(rng.random(n) > 0.01).tolist():
                readings.add(swc_sensor, ts_variable, "degC", stamps[i], ts_read[i])

    chamber_truth: list[tuple[float, float]] = []
    if chamber is not None:
        sensor, co2_var, lid_var, t_var = chamber
        rho = p_pa / (R_GAS * (soil_temperature(day, hour, 0.0) + 273.15))
        starts = [i for i in range(0, n, 2 * chamber_every_h) if time_s[i] + 600.0 + 360.0 <= end]
        # 30 s before the lid closes to 60 s after it opens, every 10 s; the surface temperature of every sample
        # in one call (a call per sample took a fifth of the year's simulation)
        offsets = np.arange(-3, 37)
        sample_t = (time_s[starts] + 600.0)[:, np.newaxis] + 10.0 * offsets
        surface_t = soil_temperature((sample_t - t0) / 86400.0, ((sample_t + shift) % 86400.0) / 3600.0, 0.0)
        for row, i in enumerate(starts):
            close = time_s[i] + 600.0
            f_true = chamber_factor * flux[i]
            s0 = f_true / (rho[i] * chamber_h_m)
            for k in offsets.tolist():
                t = close + 10.0 * k
                closed = 0 <= k <= 30
                tau = max(0.0, min(t, close + 300.0) - close)
                level = atm_ppm + s0 * -math.expm1(-chamber_kappa * tau) / chamber_kappa
                if k > 30:
                    level = atm_ppm + (level - atm_ppm) * math.exp(-(t - close - 300.0) / 15.0)
                stamp = datetime.fromtimestamp(t, tz=UTC)
                readings.add(sensor, co2_var, "umol mol-1", stamp, level + 0.3 * rng.standard_normal())
                readings.add(sensor, lid_var, "1", stamp, 1.0 if closed else 0.0)
                readings.add(sensor, t_var, "degC", stamp, surface_t[row, k + 3])
            chamber_truth.append((close + 300.0, f_true))

    dendro_truth: dict[str, tuple[FloatArray, FloatArray, FloatArray]] = {}
    d_day = day
    season = 1.0 / (1.0 + np.exp(-(d_day - 150.0) / 12.0))  # logistic: half the growth by 30 May
    season = (season - season[0]) / (1.0 / (1.0 + math.exp(-(n_days - 150.0) / 12.0)) - season[0])
    drought = np.exp(-((d_day - 205.0) / 5.0) ** 2)
    for k, tree in enumerate(trees):
        if tree.sensor is None or tree.variable is None:
            continue
        gro = tree.growth_um * season
        shrink = (5.0 + 30.0 * np.clip(np.sin(np.pi * (d_day - 90.0) / 200.0), 0.0, None)) * \
            0.5 * (1.0 + np.sin(2 * np.pi * (hour - 9.0) / 24.0))
        twd = shrink + (60.0 + 20.0 * k) * drought
        value = gro - twd + 1.0 * rng.standard_normal(n)
        if k == 0:
            value[int(0.8 * n):] += 1800.0  # re-mounted in autumn
        if k == 1:
            value[int(0.4 * n)] += 400.0  # one spike
        base = value[0]
        true_position = gro - twd
        # the truth in the zero-growth sense (Zweifel et al. 2016) of the noise-free stem: GRO = running maximum -
        # first value, TWD = running maximum - value
        running = np.maximum.accumulate(true_position)
        dendro_truth[tree.tree] = (time_s.copy(), running - true_position[0], running - true_position)
        for i in range(n):
            readings.add(tree.sensor, tree.variable, "um", stamps[i], value[i] - base)
    readings.made.sort(key=lambda r: r.time)
    params = {"r10": r10, "e0": e0, "lambda_m": lambda_m, "porosity": porosity, "p_pa": p_pa, "noise_ppm": noise_ppm}
    return SoilYear(year, time_s, flux, ts5, measured, readings.made, list(trees), dendro_truth, chamber_truth, params)


def demo_trees(sensor: str, variables: list[str], seed: int = 0) -> list[TreeSpec]:
    """A small beech-oak plot: one instrumented tree per dendrometer variable, and two more without one whose true
    growth scatters around the instrumented trees' (relative to DBH)."""
    rng = np.random.default_rng(seed + 7)
    species = ["Fagus sylvatica", "Quercus petraea", "Fagus sylvatica", "Quercus robur", "Fagus sylvatica"]
    dbh = [34.2, 41.5, 28.9, 37.0, 25.4]
    trees = []
    for k in range(len(variables) + 2):
        relative = 0.0062 * (1.0 + 0.15 * rng.standard_normal())  # radial growth / DBH: ~2 mm a year at 33 cm
        sensor_k = sensor if k < len(variables) else None
        variable = variables[k] if k < len(variables) else None
        trees.append(TreeSpec(f"t{k + 1}", species[k % len(species)], dbh[k % len(dbh)],
                              round(relative * dbh[k % len(dbh)] * 1e4 / 2.0, 1), sensor_k, variable))
    return trees


def year_end(year: int) -> datetime:
    return datetime(year + 1, 1, 1, tzinfo=UTC) - timedelta(microseconds=1)
