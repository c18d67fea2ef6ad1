"""A synthetic site-year of half-hourly fluxes and drivers with a known truth: the one generator of the budget's
tests (u*, MDS, partitioning, the whole chain, the central job), its benchmark, the report example and the demo.

The true fluxes follow prescribed models, the "measured" NEE adds random error, a low-turbulence bias below a
prescribed u* threshold, and gaps of a known pattern. Keyword arguments of `synthetic_year` set the models'
parameters and switch parts off for tests that need them off (``ustar_threshold=0``: no u* bias for the
partitioning, which gets NEE as measured; ``alpha_season=False``: α constant, so its recovery can be checked;
``leaf_off``: uptake left in winter; ``gap_fraction_night``: nights losing more records than days; ``noise``).
`flux_records` and `met_readings` turn a year into what a station delivers (half-hourly `FluxRecord`, SW_IN/TA/VPD
readings), `truth_gc_m2` gives its true annual sums.

Truth:

- ``RECO = rb · exp(E0 · (1/(Tref - T0) - 1/(TA + 273.15 - T0)))`` (Lloyd & Taylor 1994, Tref = 288.15 K,
  T0 = 227.13 K), with ``rb`` following a smooth seasonal course.
- ``GPP = α·β·Rg / (α·Rg + β)``, ``β = β0 · exp(-k·(VPD - 10))`` above 10 hPa (Lasslop et al. 2010, eq. 4-5), with
  ``β0`` and α following the leaf-out season; ``Rg`` = SW_IN (W m-2) and α in µmol J-1.
- ``NEE = RECO - GPP`` (µmol m-2 s-1).

Measured NEE: truth + a Laplace-distributed error whose scale grows with |NEE| (Richardson et al. 2006:
σ = a + b·|NEE|); at night, records with ``USTAR < ustar_threshold`` see only the fraction ``USTAR/threshold`` of
the flux (storage and advection the tower misses), which is what the moving-point test has to find.

Drivers: SW_IN from the top-of-atmosphere radiation (solar declination and hour angle, Spencer 1971 /
Duffie & Beckman 2013 eq. 1.6.2) times a random daily cloudiness; TA with a seasonal and diurnal course and weather
noise (°C); VPD from TA and a relative humidity course (hPa, Magnus formula as in FAO-56 eq. 11); USTAR lognormal
and correlated with the day's wind.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from gateway.contract import FluxRecord
from gateway.model import QualityFlag, Reading, ReadingTemplate, TimeSource

__all__ = ["SIMULATION_ENGINE", "SyntheticYear", "flux_records", "met_readings", "synthetic_year", "truth_gc_m2"]

T_REF = 288.15
T_ZERO = 227.13
SOLAR_CONSTANT = 1361.0


@dataclass(frozen=True)
class SyntheticYear:
    """Half-hourly arrays of one synthetic year (local standard time, UTC + ``utc_offset_h``).

    ``time_start_s``: start of each half hour, seconds since the epoch of the naive local clock (so a local
    midnight is a multiple of 86400); ``time_mid``: the middles in UTC seconds (what the partitioning functions
    take). Truth: ``nee_true``, ``reco_true``, ``gpp_true`` (µmol m-2 s-1), ``rref_true`` (RECO at 15 °C of each
    record), the scalars ``e0``, ``alpha``, ``k``; measurement: ``nee`` (NaN in the gaps, biased at low u*),
    ``nee_sd`` (the standard deviation of its random error), ``sw_in`` (W m-2), ``ta`` (°C), ``vpd`` (hPa),
    ``ustar`` (m s-1). ``gap``: True where ``nee`` was removed by the prescribed gap pattern; ``nee_f``: a perfect
    gap filling (the measurement where there is one, the truth in the gaps).
    """

    time_start_s: NDArray[np.float64]
    nee: NDArray[np.float64]
    nee_true: NDArray[np.float64]
    reco_true: NDArray[np.float64]
    gpp_true: NDArray[np.float64]
    sw_in: NDArray[np.float64]
    ta: NDArray[np.float64]
    vpd: NDArray[np.float64]
    ustar: NDArray[np.float64]
    gap: NDArray[np.bool_]
    nee_sd: NDArray[np.float64]
    rref_true: NDArray[np.float64]
    lat: float
    lon: float
    utc_offset_h: float
    ustar_threshold: float
    params: dict[str, float] = field(default_factory=dict)

    @property
    def time_mid(self) -> NDArray[np.float64]:
        """Middle of each half hour, UTC seconds since the epoch."""
        result: NDArray[np.float64] = self.time_start_s + 900.0 - self.utc_offset_h * 3600.0
        return result

    @property
    def nee_f(self) -> NDArray[np.float64]:
        """The measured NEE where there is one, the truth in the gaps: a perfect gap filling."""
        result: NDArray[np.float64] = np.where(self.gap, self.nee_true, self.nee)
        return result

    @property
    def e0(self) -> float:
        return self.params["e0"]

    @property
    def alpha(self) -> float:
        return self.params["alpha"]

    @property
    def k(self) -> float:
        return self.params["k"]

    def timestamps(self) -> tuple[list[str], list[str]]:
        """``TIMESTAMP_START`` and ``TIMESTAMP_END`` as ``YYYYMMDDHHMM`` strings."""
        starts = [datetime.fromtimestamp(t, tz=UTC) for t in self.time_start_s]
        return ([s.strftime("%Y%m%d%H%M") for s in starts],
                [(s + timedelta(minutes=30)).strftime("%Y%m%d%H%M") for s in starts])


def _toa_radiation(time_start_s: NDArray[np.float64], lat: float, lon: float, utc_offset_h: float) -> NDArray[
        np.float64]:
    """Top-of-atmosphere radiation on a horizontal surface at the middle of each half hour (W m-2)."""
    mid = time_start_s + 900.0
    doy = np.floor(mid / 86400.0) % 365.2425
    gamma = 2 * np.pi * doy / 365.0
    decl = (0.006918 - 0.399912 * np.cos(gamma) + 0.070257 * np.sin(gamma) - 0.006758 * np.cos(2 * gamma)
            + 0.000907 * np.sin(2 * gamma) - 0.002697 * np.cos(3 * gamma) + 0.00148 * np.sin(3 * gamma))
    hours_local = (mid % 86400.0) / 3600.0
    solar_time = hours_local - utc_offset_h + lon / 15.0
    hour_angle = np.radians(15.0 * (solar_time - 12.0))
    phi = math.radians(lat)
    cos_zenith = np.sin(phi) * np.sin(decl) + np.cos(phi) * np.cos(decl) * np.cos(hour_angle)
    eccentricity = 1.000110 + 0.034221 * np.cos(gamma) + 0.001280 * np.sin(gamma)
    result: NDArray[np.float64] = np.maximum(SOLAR_CONSTANT * eccentricity * cos_zenith, 0.0)
    return result


def synthetic_year(year: int = 2021, *, seed: int = 1, lat: float = 50.0, lon: float = 10.0,
                   utc_offset_h: float = 1.0, ustar_threshold: float = 0.25, gap_fraction: float = 0.3,
                   gap_fraction_night: float | None = None, maintenance_gaps: bool = True,
                   rb: float = 3.5, e0: float = 180.0, alpha: float = 0.05, beta: float = 55.0, k: float = 0.03,
                   leaf_off: float = 0.0, alpha_season: bool = True, noise: float = 1.0) -> SyntheticYear:
    """A synthetic year (see the module docstring).

    Gaps: ``gap_fraction`` of the records removed at random in runs of 1-8 half hours; or, with
    ``gap_fraction_night``, single records removed with probability ``gap_fraction`` by day and
    ``gap_fraction_night`` at night (nights lose more to calm and rain). With ``maintenance_gaps`` a 5-day block in
    early summer and a 2-day block in autumn are missing on top. Nighttime records with ``USTAR`` below
    ``ustar_threshold`` are *not* removed (that is the u* filter's job); ``ustar_threshold=0`` simulates no
    low-turbulence bias at all.

    Models: ``rb`` (µmol m-2 s-1 at 15 °C, its summer peak), ``e0`` (K), ``alpha`` (µmol J-1), ``beta``
    (µmol m-2 s-1, its summer peak), ``k`` (hPa-1, VPD limitation of β above 10 hPa); ``leaf_off``: the share of
    β left outside the leaf-out season (0: deciduous, no uptake in winter); ``alpha_season``: α follows the leaf-out
    too (else it is ``alpha`` all year). ``noise``: scale of the random error (0: none, 1: σ = 0.6 + 0.15 |NEE|,
    and 5 % noise on SW_IN)."""
    rng = np.random.default_rng(seed)
    t0 = datetime(year, 1, 1, tzinfo=UTC).timestamp()
    n_days = (datetime(year + 1, 1, 1) - datetime(year, 1, 1)).days
    n = n_days * 48
    time_start = t0 + 1800.0 * np.arange(n, dtype=np.float64)
    day = np.arange(n) // 48
    frac_year = (day + 0.5) / n_days
    hour = (np.arange(n) % 48) / 2.0 + 0.25

    toa = _toa_radiation(time_start, lat, lon, utc_offset_h)
    cloud = np.clip(rng.beta(2.0, 1.6, n_days), 0.05, 1.0)[day]
    sw_in = 0.75 * toa * cloud * (1.0 + (0.05 * rng.standard_normal(n) if noise > 0 else 0.0))
    sw_in = np.maximum(sw_in, 0.0)

    weather = np.convolve(rng.standard_normal(n_days + 10), np.ones(5) / 5.0, mode="same")[5:5 + n_days]
    ta = (9.0 - 10.0 * np.cos(2 * np.pi * (frac_year - 0.04)) + 3.0 * weather[day]
          + (2.0 + 3.0 * cloud) * np.sin(2 * np.pi * (hour - 9.0) / 24.0))
    rh = np.clip(80.0 - 25.0 * np.sin(np.pi * np.clip((hour - 6.0) / 14.0, 0.0, 1.0)) * cloud
                 - 10.0 * np.sin(np.pi * frac_year) + 5.0 * weather[day], 20.0, 100.0)
    es = 6.1078 * np.exp(17.27 * ta / (ta + 237.3))
    vpd = es * (1.0 - rh / 100.0)

    wind_day = np.exp(0.3 * rng.standard_normal(n_days))[day]
    ustar = 0.08 + 0.3 * wind_day * (0.6 + 0.4 * np.sin(np.pi * np.clip((hour - 7.0) / 12.0, 0.0, 1.0)))
    ustar = ustar * np.exp(0.35 * rng.standard_normal(n))

    season = np.clip(np.sin(np.pi * (frac_year - 0.3) / 0.5), 0.0, None)  # leaf-out May..October
    rb_t = rb * (0.55 + 0.45 * np.clip(np.sin(np.pi * (frac_year - 0.2) / 0.7), 0.0, None))
    reco = rb_t * np.exp(e0 * (1.0 / (T_REF - T_ZERO) - 1.0 / (ta + 273.15 - T_ZERO)))
    canopy = season if leaf_off == 0.0 else leaf_off + (1.0 - leaf_off) * season
    beta_t = beta * canopy * np.exp(-k * np.maximum(vpd - 10.0, 0.0))
    alpha_t = alpha * np.minimum(1.0, 4.0 * season) if alpha_season else np.full(n, alpha)
    with np.errstate(invalid="ignore", divide="ignore"):
        gpp = np.where(beta_t > 0, alpha_t * beta_t * sw_in / (alpha_t * sw_in + beta_t), 0.0)
    gpp = np.nan_to_num(gpp)
    nee_true = reco - gpp

    measured = nee_true.copy()
    night = sw_in < 10.0
    if ustar_threshold > 0:
        low = night & (ustar < ustar_threshold)
        measured[low] = measured[low] * (ustar[low] / ustar_threshold)
    sd = noise * (0.6 + 0.15 * np.abs(nee_true))
    if noise > 0:
        measured = measured + rng.laplace(0.0, sd / math.sqrt(2.0))

    gap = np.zeros(n, dtype=bool)
    if gap_fraction_night is None:
        target = int(gap_fraction * n)
        while gap.sum() < target:
            start = int(rng.integers(0, n))
            gap[start:start + int(rng.integers(1, 9))] = True
    else:
        gap = rng.random(n) < np.where(night, gap_fraction_night, gap_fraction)
    if maintenance_gaps:
        june = (datetime(year, 6, 10) - datetime(year, 1, 1)).days * 48
        october = (datetime(year, 10, 3) - datetime(year, 1, 1)).days * 48
        gap[june:june + 5 * 48] = True
        gap[october:october + 2 * 48] = True
    nee = np.where(gap, np.nan, measured)
    params = {"rb": rb, "e0": e0, "alpha": alpha, "beta": beta, "k": k, "leaf_off": leaf_off,
              "alpha_season": float(alpha_season), "noise": float(noise)}
    return SyntheticYear(time_start, nee, nee_true, reco, gpp, sw_in, ta, vpd, ustar, gap, sd, rb_t, lat, lon,
                         utc_offset_h, ustar_threshold, params)


# --- the year as a station would have delivered it (the central budget job's inputs, the demo) ------------------

SIMULATION_ENGINE = "sinkwatch-simulation fluxyear"
"""`engine_version` of the simulated flux records: they come from this generator, not from the EC engine."""


def _end_times(year: SyntheticYear) -> list[datetime]:
    """UTC ends of the half hours (the local-clock starts shifted by the UTC offset, plus 30 min)."""
    return [datetime.fromtimestamp(t + 1800.0 - year.utc_offset_h * 3600.0, tz=UTC) for t in year.time_start_s]


def simulation_hash(year: SyntheticYear) -> str:
    """A settings hash for the simulated records: 16 hex digits of the SHA-256 of the generator's parameters (the
    same for every part of one simulated year)."""
    payload = {"params": year.params, "lat": year.lat, "lon": year.lon, "utc_offset_h": year.utc_offset_h,
               "ustar_threshold": year.ustar_threshold}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def flux_records(year: SyntheticYear, *, site: str, station: str) -> list[FluxRecord]:
    """One half-hourly `FluxRecord` per record of the year: FC = the measured NEE (no storage term), USTAR, TA and
    FC_SSITC_TEST 0; a gap is a `failed` record without FC, as a station's flux runner sends it."""
    ends = _end_times(year)
    digest = simulation_hash(year)
    records = []
    for i, end in enumerate(ends):
        fc = float(year.nee[i])
        ok = math.isfinite(fc)
        values: dict[str, int | float | None] = {
            "FC": fc if ok else None, "FC_SSITC_TEST": 0 if ok else None, "USTAR": float(year.ustar[i]),
            "TA": float(year.ta[i]),
        }
        records.append(FluxRecord(
            site=site, station=station, start=end - timedelta(minutes=30), end=end, status="ok" if ok else "failed",
            reasons=[] if ok else ["simulated gap (gateway/simulation/fluxyear.py)"],
            engine_version=SIMULATION_ENGINE, settings_hash=digest, values=values))
    return records


def met_readings(year: SyntheticYear, *, station: str, radiation_sensor: str = "sw_in", air_sensor: str = "ta_rh",
                 suffix: str = "_1_1_1") -> list[Reading]:
    """SW_IN from `radiation_sensor`, TA and VPD from `air_sensor` (AmeriFlux qualifier `suffix`): one reading per
    half hour, stamped at its middle, so the half-hour mean is the simulated value."""
    # each series' fixed fields validated once (`ReadingTemplate`), not in each of a year's 52,560 readings
    series = [(ReadingTemplate(station=station, sensor=sensor, variable=variable + suffix, unit=unit,
                               time_source=TimeSource.GATEWAY), values.tolist())
              for sensor, variable, unit, values in ((radiation_sensor, "SW_IN", "W m-2", year.sw_in),
                                                     (air_sensor, "TA", "degC", year.ta),
                                                     (air_sensor, "VPD", "hPa", year.vpd))]
    readings = []
    for i, end in enumerate(_end_times(year)):
        time = end - timedelta(minutes=15)
        for template, values in series:
            readings.append(template.reading(float(values[i]), time, True, QualityFlag.GOOD, None))
    return readings


def truth_gc_m2(year: SyntheticYear) -> dict[str, float]:
    """The true sums of the year, gC m-2: NEE, GPP and RECO (Σ flux × 1800 s × 12.011e-6)."""
    factor = 1800.0 * 12.011e-6
    return {"NEE": float(year.nee_true.sum() * factor), "GPP": float(year.gpp_true.sum() * factor),
            "RECO": float(year.reco_true.sum() * factor)}
