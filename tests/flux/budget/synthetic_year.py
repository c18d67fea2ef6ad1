"""A synthetic forest site-year with a known truth, for the partitioning tests.

Drivers: air temperature with a seasonal and a diurnal course plus red noise; shortwave radiation = potential
radiation × a daily cloud factor; VPD from temperature and a relative humidity that falls by day. Truth: Lloyd–Taylor
respiration with a prescribed E0 and a seasonal RREF; a rectangular-hyperbolic light response (Lasslop et al. 2010)
with a seasonal beta, VPD limitation (k, VPD0 = 10 hPa) and a fixed alpha. NEE = RECO − GPP + noise whose standard
deviation grows with |NEE| (Richardson et al. 2006 style); gaps at random with more of them at night.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from gateway.flux.budget.partition_nt import CELSIUS_TO_K, lloyd_taylor
from gateway.flux.budget.solar import potential_radiation

LAT, LON, UTC_OFFSET = 50.96, 13.57, 1.0


@dataclass
class SyntheticYear:
    time_mid: NDArray[np.float64]
    ta: NDArray[np.float64]
    sw_in: NDArray[np.float64]
    vpd: NDArray[np.float64]
    nee: NDArray[np.float64]  # measured, NaN in gaps
    nee_f: NDArray[np.float64]  # perfect gap filling: measured where there, truth elsewhere
    nee_sd: NDArray[np.float64]
    reco_true: NDArray[np.float64]
    gpp_true: NDArray[np.float64]
    rref_true: NDArray[np.float64]
    e0_true: float
    alpha: float
    k: float


def make_year(
    seed: int = 1,
    year: int = 2021,
    e0: float = 180.0,
    alpha: float = 0.05,
    k: float = 0.04,
    gap_fraction_day: float = 0.25,
    gap_fraction_night: float = 0.6,
    noise: float = 1.0,
) -> SyntheticYear:
    """One year of half-hours (period middles, UTC) starting at local midnight of 1 January."""
    rng = np.random.default_rng(seed)
    start = np.datetime64(f"{year}-01-01T00:00:00").astype("datetime64[s]").astype(float) - UTC_OFFSET * 3600
    n_days = 365
    n = n_days * 48
    t = start + 900.0 + 1800.0 * np.arange(n)
    doy = np.arange(n) / 48.0
    season = -np.cos(2 * np.pi * (doy - 15) / 365.0)  # -1 mid January, +1 mid July
    pot = potential_radiation(t, LAT, LON, UTC_OFFSET)
    cloud = np.repeat(rng.uniform(0.25, 0.8, n_days), 48)
    sw_in = pot * cloud
    hour_local = ((t + UTC_OFFSET * 3600) % 86400) / 3600.0
    red = np.zeros(n)
    eps = rng.normal(0, 0.35, n)
    for i in range(1, n):
        red[i] = 0.985 * red[i - 1] + eps[i]
    ta = 8.5 + 9.5 * season + (3.0 + 2.0 * season) * np.sin(2 * np.pi * (hour_local - 9.0) / 24.0) + red
    rh = np.clip(72 - 32 * np.sin(2 * np.pi * (hour_local - 9.0) / 24.0) * (0.6 + 0.4 * season), 20, 100)
    es = 6.1078 * np.exp(17.08085 * ta / (234.175 + ta))
    vpd = es * (1 - rh / 100.0)

    rref = 2.2 + 1.4 * season
    reco = lloyd_taylor(rref, e0, ta + CELSIUS_TO_K)
    beta = np.clip(4.0 + 22.0 * (season + 0.35), 0.0, None)
    amax = np.where(vpd > 10.0, beta * np.exp(-k * (vpd - 10.0)), beta)
    with np.errstate(invalid="ignore", divide="ignore"):
        gpp = np.where(sw_in > 0, (alpha * sw_in * amax) / (alpha * sw_in + amax), 0.0)
    gpp = np.nan_to_num(gpp)
    nee_true = reco - gpp
    sd = noise * (0.4 + 0.12 * np.abs(nee_true))
    nee_meas = nee_true + rng.laplace(0, sd / np.sqrt(2))
    night = pot <= 0
    gap = np.where(night, rng.random(n) < gap_fraction_night, rng.random(n) < gap_fraction_day)
    # a few multi-day gaps (maintenance)
    for g0 in rng.integers(0, n - 48 * 6, 4):
        gap[g0 : g0 + rng.integers(48, 48 * 6)] = True
    nee = np.where(gap, np.nan, nee_meas)
    nee_f = np.where(gap, nee_true, nee_meas)
    return SyntheticYear(
        time_mid=t,
        ta=ta,
        sw_in=sw_in,
        vpd=vpd,
        nee=nee,
        nee_f=nee_f,
        nee_sd=sd,
        reco_true=reco,
        gpp_true=gpp,
        rref_true=rref,
        e0_true=e0,
        alpha=alpha,
        k=k,
    )
