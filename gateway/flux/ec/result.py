"""The engine's output: one record per averaging period, FLUXNET/AmeriFlux names and units.

Names marked ``standard=True`` are AmeriFlux BASE / FLUXNET names (AmeriFlux "Variables" table; Pastorello et al.
2020, Sci. Data 7:225). The others are sinkwatch's own diagnostics (covariances, lags, angles, test deviations),
kept so a result can be compared with EddyPro's full output; :func:`gateway.flux.files.write_ameriflux_csv` can
leave them out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from gateway.flux.ec.instruments import LI7200_STATUS_BITS

ENGINE_NAME = "sinkwatch-ec"
ENGINE_VERSION = "0.4.0"
"""Version of the numerical engine; bumped whenever a result for the same input and settings can change.
0.4.0: Kljun et al. (2004) x_70/x_90 in EddyPro's closed form, all-9 flag strings with tests off, closed-path
densities at cell conditions, Mann & Lenschow (1994) random error, linear scaling of raw columns."""


#: The per-variable statistical tests (EddyPro's full-output order): code in the value names, what it tests, and
#: its hard (HF) and soft (SF) flags. Values ``<VAR>_VM97_<code>_<HF|SF>``: 0 passed, 1 failed; absent: not selected
#: or not computable (EddyPro's 9).
VM97_PER_VARIABLE: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("SR", "spike", ("HF",)), ("AR", "amplitude-resolution", ("HF",)), ("DO", "dropout", ("HF",)),
    ("AL", "absolute-limits", ("HF",)), ("SK", "skewness-kurtosis", ("HF", "SF")),
    ("DS", "discontinuity", ("HF", "SF")),
)


@dataclass(frozen=True, slots=True)
class OutputVariable:
    name: str
    unit: str
    description: str
    standard: bool = True


OUTPUT_VARIABLES: dict[str, OutputVariable] = {
    v.name: v
    for v in (
        OutputVariable("FC", "umol m-2 s-1", "CO2 turbulent flux (no storage term)"),
        OutputVariable("FC_SSITC_TEST", "nondimensional", "Mauder & Foken (2004) 0/1/2 flag of FC"),
        OutputVariable("FH2O", "mmol m-2 s-1", "water vapour turbulent flux"),
        OutputVariable("FH2O_SSITC_TEST", "nondimensional", "Mauder & Foken (2004) 0/1/2 flag of FH2O", False),
        OutputVariable("FCH4", "nmol m-2 s-1", "CH4 turbulent flux (closed-path laser analyser)"),
        OutputVariable("FCH4_SSITC_TEST", "nondimensional", "Mauder & Foken (2004) 0/1/2 flag of FCH4"),
        OutputVariable("FN2O", "nmol m-2 s-1", "N2O turbulent flux (closed-path laser analyser)"),
        OutputVariable("FN2O_SSITC_TEST", "nondimensional", "Mauder & Foken (2004) 0/1/2 flag of FN2O", False),
        OutputVariable("H", "W m-2", "sensible heat turbulent flux (sonic humidity-corrected)"),
        OutputVariable("H_SSITC_TEST", "nondimensional", "Mauder & Foken (2004) 0/1/2 flag of H"),
        OutputVariable("LE", "W m-2", "latent heat turbulent flux"),
        OutputVariable("LE_SSITC_TEST", "nondimensional", "Mauder & Foken (2004) 0/1/2 flag of LE"),
        OutputVariable("TAU", "kg m-1 s-2", "momentum flux"),
        OutputVariable("TAU_SSITC_TEST", "nondimensional", "Mauder & Foken (2004) 0/1/2 flag of TAU"),
        OutputVariable("USTAR", "m s-1", "friction velocity"),
        OutputVariable("WS", "m s-1", "mean wind speed (magnitude of the mean wind vector)"),
        OutputVariable("WS_MAX", "m s-1", "maximum instantaneous wind speed (3-D) in the period"),
        OutputVariable("WD", "decimal degrees", "wind direction (from north, the wind blows from)"),
        OutputVariable("WD_SIGMA", "decimal degrees", "standard deviation of the wind direction (Yamartino 1984)",
                       False),
        OutputVariable("ZL", "nondimensional", "stability parameter (z - d)/L"),
        OutputVariable("MO_LENGTH", "m", "Monin-Obukhov length"),
        OutputVariable("U_SIGMA", "m s-1", "standard deviation of the streamwise wind (rotated)"),
        OutputVariable("V_SIGMA", "m s-1", "standard deviation of the cross wind (rotated)"),
        OutputVariable("W_SIGMA", "m s-1", "standard deviation of the vertical wind (rotated)"),
        OutputVariable("T_SONIC", "deg C", "mean sonic temperature"),
        OutputVariable("T_SONIC_SIGMA", "deg C", "standard deviation of the sonic temperature"),
        OutputVariable("TA", "deg C", "air temperature (from the sonic temperature, humidity-corrected)"),
        OutputVariable("PA", "kPa", "atmospheric pressure (measured or from the altitude)"),
        OutputVariable("RH", "%", "relative humidity"),
        OutputVariable("VPD", "hPa", "vapour pressure deficit"),
        OutputVariable("CO2", "umol mol-1", "CO2 mole fraction in wet air"),
        OutputVariable("CO2_SIGMA", "umol mol-1", "standard deviation of CO2 (as measured)"),
        OutputVariable("H2O", "mmol mol-1", "H2O mole fraction in wet air"),
        OutputVariable("CH4", "nmol mol-1", "CH4 mole fraction in wet air"),
        OutputVariable("N2O", "nmol mol-1", "N2O mole fraction in wet air"),
        OutputVariable("H2O_SIGMA", "mmol mol-1", "standard deviation of H2O (as measured)"),
        OutputVariable("FETCH_MAX", "m", "distance of the footprint's maximum contribution"),
        OutputVariable("FETCH_70", "m", "upwind distance holding 70 % of the footprint"),
        OutputVariable("FETCH_80", "m", "upwind distance holding 80 % of the footprint"),
        OutputVariable("FETCH_90", "m", "upwind distance holding 90 % of the footprint"),
        OutputVariable("FETCH_OFFSET", "m", "upwind distance holding 1 % of the footprint (its start)", False),
        OutputVariable("FETCH_10", "m", "upwind distance holding 10 % of the footprint", False),
        OutputVariable("FETCH_30", "m", "upwind distance holding 30 % of the footprint", False),
        OutputVariable("FETCH_50", "m", "upwind distance holding 50 % of the footprint", False),
        OutputVariable("FOOTPRINT_MODEL", "nondimensional", "footprint model as EddyPro codes it: 0 Kljun et al. 2004, "
                       "1 Kormann & Meixner 2001, 2 Hsieh et al. 2000 (absent for Kljun et al. 2015)", False),
        # sinkwatch's own: diagnostics that EddyPro's full output also carries
        OutputVariable("TAU_SCF", "nondimensional", "spectral correction factor applied to TAU", False),
        OutputVariable("H_SCF", "nondimensional", "spectral correction factor applied to H", False),
        OutputVariable("LE_SCF", "nondimensional", "spectral correction factor applied to LE", False),
        OutputVariable("FC_SCF", "nondimensional", "spectral correction factor applied to FC", False),
        OutputVariable("FH2O_SCF", "nondimensional", "spectral correction factor applied to FH2O", False),
        OutputVariable("FC_RANDUNC", "umol m-2 s-1", "random error of FC (Finkelstein & Sims 2001)", False),
        OutputVariable("FH2O_RANDUNC", "mmol m-2 s-1", "random error of FH2O (Finkelstein & Sims 2001)", False),
        OutputVariable("H_RANDUNC", "W m-2", "random error of H (Finkelstein & Sims 2001)", False),
        OutputVariable("LE_RANDUNC", "W m-2", "random error of LE (Finkelstein & Sims 2001)", False),
        OutputVariable("TAU_RANDUNC", "kg m-1 s-2", "random error of TAU (Finkelstein & Sims 2001)", False),
        OutputVariable("CO2_MIXING_RATIO", "umol mol-1", "CO2 dry mole fraction", False),
        OutputVariable("H2O_MIXING_RATIO", "mmol mol-1", "H2O dry mole fraction", False),
        OutputVariable("H_UNCORR", "W m-2", "rho*cp*cov(w,Ts), before the humidity correction", False),
        OutputVariable("W_T_SONIC_COV", "m s-1 K", "covariance of w and Ts", False),
        OutputVariable("W_CO2_COV", "m s-1 (CO2 unit)", "covariance of w and CO2 (as measured, lagged)", False),
        OutputVariable("W_H2O_COV", "m s-1 (H2O unit)", "covariance of w and H2O (as measured, lagged)", False),
        OutputVariable("U_W_COV", "m2 s-2", "covariance of u and w (rotated)", False),
        OutputVariable("V_W_COV", "m2 s-2", "covariance of v and w (rotated)", False),
        OutputVariable("U_VAR", "m2 s-2", "variance of u (rotated)", False),
        OutputVariable("V_VAR", "m2 s-2", "variance of v (rotated)", False),
        OutputVariable("W_VAR", "m2 s-2", "variance of w (rotated)", False),
        OutputVariable("T_SONIC_VAR", "K2", "variance of Ts", False),
        OutputVariable("CO2_VAR", "(CO2 unit)2", "variance of CO2 (as measured, lagged)", False),
        OutputVariable("H2O_VAR", "(H2O unit)2", "variance of H2O (as measured, lagged)", False),
        OutputVariable("U_SKEW", "nondimensional", "skewness of u", False),
        OutputVariable("V_SKEW", "nondimensional", "skewness of v", False),
        OutputVariable("W_SKEW", "nondimensional", "skewness of w", False),
        OutputVariable("T_SONIC_SKEW", "nondimensional", "skewness of Ts", False),
        OutputVariable("CO2_SKEW", "nondimensional", "skewness of CO2", False),
        OutputVariable("H2O_SKEW", "nondimensional", "skewness of H2O", False),
        OutputVariable("U_KURT", "nondimensional", "kurtosis of u", False),
        OutputVariable("V_KURT", "nondimensional", "kurtosis of v", False),
        OutputVariable("W_KURT", "nondimensional", "kurtosis of w", False),
        OutputVariable("T_SONIC_KURT", "nondimensional", "kurtosis of Ts", False),
        OutputVariable("CO2_KURT", "nondimensional", "kurtosis of CO2", False),
        OutputVariable("H2O_KURT", "nondimensional", "kurtosis of H2O", False),
        OutputVariable("U_UNROT", "m s-1", "mean u, sonic frame", False),
        OutputVariable("V_UNROT", "m s-1", "mean v, sonic frame", False),
        OutputVariable("W_UNROT", "m s-1", "mean w, sonic frame", False),
        OutputVariable("YAW", "decimal degrees", "first rotation angle", False),
        OutputVariable("PITCH", "decimal degrees", "second rotation angle", False),
        OutputVariable("ROLL", "decimal degrees", "third rotation angle", False),
        OutputVariable("CO2_TLAG", "s", "time lag applied to CO2", False),
        OutputVariable("H2O_TLAG", "s", "time lag applied to H2O", False),
        OutputVariable("CO2_TLAG_DEFAULT", "nondimensional", "1 when the default lag was used for CO2", False),
        OutputVariable("H2O_TLAG_DEFAULT", "nondimensional", "1 when the default lag was used for H2O", False),
        OutputVariable("RHO_A", "kg m-3", "moist air density", False),
        OutputVariable("RHO_CP", "J m-3 K-1", "volumetric heat capacity of moist air", False),
        OutputVariable("VD", "m3 mol-1", "dry-air molar volume", False),
        OutputVariable("ST_DEV_W_U", "%", "steady-state test deviation, momentum flux", False),
        OutputVariable("ST_DEV_W_TS", "%", "steady-state test deviation, w'Ts'", False),
        OutputVariable("ST_DEV_W_CO2", "%", "steady-state test deviation, w'CO2'", False),
        OutputVariable("ST_DEV_W_H2O", "%", "steady-state test deviation, w'H2O'", False),
        OutputVariable("ITC_DEV_U", "%", "integral turbulence characteristics deviation, sigma_u/u*", False),
        OutputVariable("ITC_DEV_W", "%", "integral turbulence characteristics deviation, sigma_w/u*", False),
        OutputVariable("ITC_DEV_TS", "%", "integral turbulence characteristics deviation, sigma_T/T*", False),
        *(OutputVariable(f"{n}_NUM_SPIKES", "nondimensional", f"spike events removed from {n}", False)
          for n in ("U", "V", "W", "TS", "CO2", "H2O", "CH4", "N2O")),
        *(OutputVariable(f"{n}_VM97_{t}_{hs}", "nondimensional", f"Vickers & Mahrt (1997) {what} test of {n}, "
                         f"{'hard' if hs == 'HF' else 'soft'} flag: 0 passed, 1 failed (absent: not selected)", False)
          for t, what, levels in VM97_PER_VARIABLE for hs in levels
          for n in ("U", "V", "W", "TS", "CO2", "H2O", "CH4", "N2O")),
        *(OutputVariable(f"{n}_VM97_TL_{hs}", "nondimensional", f"Vickers & Mahrt (1997) time-lag test of {n}, "
                         f"{'hard' if hs == 'HF' else 'soft'} flag", False)
          for hs in ("HF", "SF") for n in ("CO2", "H2O", "CH4", "N2O")),
        OutputVariable("VM97_AOA_HF", "nondimensional", "angle-of-attack test, hard flag", False),
        OutputVariable("VM97_NSHW_HF", "nondimensional", "steadiness of the horizontal wind test, hard flag", False),
        OutputVariable("U_ROT", "m s-1", "mean u after rotation", False),
        OutputVariable("V_ROT", "m s-1", "mean v after rotation", False),
        OutputVariable("W_ROT", "m s-1", "mean w after rotation", False),
        OutputVariable("TKE", "m2 s-2", "turbulent kinetic energy", False),
        OutputVariable("TSTAR", "K", "temperature scale -H/(rho cp u*)", False),
        OutputVariable("BOWEN", "nondimensional", "Bowen ratio H/LE", False),
        OutputVariable("VAPOR_PRESSURE", "hPa", "water vapour partial pressure", False),
        OutputVariable("VAPOR_PRESSURE_SAT", "hPa", "saturation vapour pressure at TA", False),
        OutputVariable("SPECIFIC_HUMIDITY", "kg kg-1", "specific humidity", False),
        OutputVariable("VAPOR_DENSITY", "kg m-3", "water vapour density", False),
        OutputVariable("DRYAIR_DENSITY", "kg m-3", "dry air density", False),
        OutputVariable("SPECIFIC_HEAT_EVAP", "J kg-1", "latent heat of vaporisation at TA", False),
        OutputVariable("AIR_CP", "J kg-1 K-1", "specific heat of moist air", False),
        OutputVariable("AIR_MV", "m3 mol-1", "molar volume of moist air", False),
        OutputVariable("TDEW", "deg C", "dew point", False),
        OutputVariable("TAU_UNCORR", "kg m-1 s-2", "momentum flux before spectral correction", False),
        OutputVariable("USTAR_UNCORR", "m s-1", "friction velocity before spectral correction", False),
        OutputVariable("FC_UNCORR", "umol m-2 s-1", "CO2 flux before any correction (open path: w'rho_c')", False),
        OutputVariable("FH2O_UNCORR", "mmol m-2 s-1", "H2O flux before any correction (open path: w'rho_v')", False),
        OutputVariable("LE_UNCORR", "W m-2", "latent heat flux before spectral corrections", False),
        OutputVariable("MO_LENGTH_UNCORR", "m", "Obukhov length before spectral corrections", False),
        OutputVariable("ZL_UNCORR", "nondimensional", "(z - d)/L before spectral corrections", False),
        OutputVariable("FCH4_SCF", "nondimensional", "spectral correction factor applied to FCH4", False),
        OutputVariable("FCH4_RANDUNC", "nmol m-2 s-1", "random error of FCH4 (Finkelstein & Sims 2001)", False),
        OutputVariable("FCH4_UNCORR", "nmol m-2 s-1", "CH4 flux before any correction", False),
        OutputVariable("CH4_MIXING_RATIO", "nmol mol-1", "CH4 dry mole fraction", False),
        OutputVariable("W_CH4_COV", "m s-1 umol mol-1", "covariance of w and CH4 (as measured, lagged)", False),
        OutputVariable("CH4_VAR", "(umol mol-1)2", "variance of CH4 (as measured, lagged)", False),
        OutputVariable("CH4_SIGMA", "umol mol-1", "standard deviation of CH4", False),
        OutputVariable("CH4_SKEW", "nondimensional", "skewness of CH4", False),
        OutputVariable("CH4_KURT", "nondimensional", "kurtosis of CH4", False),
        OutputVariable("CH4_TLAG", "s", "time lag applied to CH4", False),
        OutputVariable("CH4_TLAG_DEFAULT", "nondimensional", "1 when the default lag was used for CH4", False),
        OutputVariable("ST_DEV_W_CH4", "%", "steady-state test deviation, w'CH4'", False),
        OutputVariable("FN2O_SCF", "nondimensional", "spectral correction factor applied to FN2O", False),
        OutputVariable("FN2O_RANDUNC", "nmol m-2 s-1", "random error of FN2O (Finkelstein & Sims 2001)", False),
        OutputVariable("FN2O_UNCORR", "nmol m-2 s-1", "N2O flux before any correction", False),
        OutputVariable("N2O_MIXING_RATIO", "nmol mol-1", "N2O dry mole fraction", False),
        OutputVariable("W_N2O_COV", "m s-1 umol mol-1", "covariance of w and N2O (as measured, lagged)", False),
        OutputVariable("N2O_VAR", "(umol mol-1)2", "variance of N2O (as measured, lagged)", False),
        OutputVariable("N2O_SIGMA", "umol mol-1", "standard deviation of N2O", False),
        OutputVariable("N2O_SKEW", "nondimensional", "skewness of N2O", False),
        OutputVariable("N2O_KURT", "nondimensional", "kurtosis of N2O", False),
        OutputVariable("N2O_TLAG", "s", "time lag applied to N2O", False),
        OutputVariable("N2O_TLAG_DEFAULT", "nondimensional", "1 when the default lag was used for N2O", False),
        OutputVariable("ST_DEV_W_N2O", "%", "steady-state test deviation, w'N2O'", False),
        *(OutputVariable(f"{n}_{q}", unit, f"{label} of {n} ({what})", False)
          for n, unit, what in (("U", "m s-1", "rotated"), ("V", "m s-1", "rotated"), ("W", "m s-1", "rotated"),
                                ("T_SONIC", "deg C", "sonic temperature"), ("CO2", "umol mol-1", "as lagged"),
                                ("H2O", "mmol mol-1", "as lagged"), ("CH4", "umol mol-1", "as lagged"),
                                ("N2O", "umol mol-1", "as lagged"))
          for q, label in (("P25", "25th percentile"), ("MEDIAN", "median"), ("P75", "75th percentile"))),
        OutputVariable("CO2_H2O_COV", "umol mol-1 mmol mol-1", "covariance of CO2 and H2O (as lagged)", False),
        OutputVariable("SONIC_DIAG_NREX", "nondimensional", "records removed by the sonic's diagnostic word", False),
        *(OutputVariable(f"{n}_DIAG_NREX", "nondimensional", f"{n} records removed by the analyser's diagnostic word",
                         False) for n in ("CO2", "H2O", "CH4", "N2O")),
        *(OutputVariable(f"{n}_ABSLIM_NREX", "nondimensional", f"{n} records outside the absolute limits", False)
          for n in ("U", "V", "W", "TS", "CO2", "H2O", "CH4", "N2O")),
        OutputVariable("T_CELL", "deg C", "mean temperature in a closed-path analyser's cell", False),
        OutputVariable("PA_CELL", "kPa", "mean pressure in a closed-path analyser's cell", False),
        *(OutputVariable(name, "nondimensional", f"records whose LI-7200 diagnostic bit {bit} says not OK", False)
          for bit, name in LI7200_STATUS_BITS),
        OutputVariable("INST_LI7200_AGC_OR_RSSI", "%", "mean LI-7200 signal strength (diagnostic bits 0-3)", False),
        OutputVariable("N_RECORDS", "nondimensional", "records in the period", False),
        OutputVariable("N_USED", "nondimensional", "records with valid u, v, w, Ts after filtering", False),
    )
}

Status = Literal["ok", "partial", "failed"]


@dataclass
class FluxResult:
    """One averaging period's result.

    ``values``: FLUXNET/AmeriFlux (and sinkwatch) name → value in the unit of :data:`OUTPUT_VARIABLES`; NaN when not
    computed. ``status``: ``ok`` (all computed), ``partial`` (some fluxes missing, see ``reasons``), ``failed`` (no
    flux; ``reasons`` says why). ``start``/``end``: period bounds (``end`` labels it, like EddyPro and AmeriFlux's
    TIMESTAMP_END). ``engine_version`` and ``settings_hash`` make results from different engines/settings distinct.
    """

    start: datetime
    end: datetime
    values: dict[str, float]
    status: Status
    reasons: list[str] = field(default_factory=list)
    engine_version: str = f"{ENGINE_NAME} {ENGINE_VERSION}"
    settings_hash: str = ""
    source: str = ""

    def get(self, name: str) -> float:
        """The value of ``name`` (NaN when missing or unknown)."""
        return self.values.get(name, math.nan)
