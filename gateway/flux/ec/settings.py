"""Typed, validated site/instrument metadata and processing settings of the eddy-covariance engine.

Names follow EddyPro's `.metadata` (GHG_METADATA) and `.eddypro` (EDDYPRO_PROCESSING) keys, so a researcher can
carry a set-up over; defaults are EddyPro's where the option is implemented here. Methods that another module
provides (despiking, planar fit, spectral corrections, random error, footprint) are selectable names; the engine
refuses a selection whose module is not available (:class:`NotAvailableError`) rather than skipping it.

No I/O here: `gateway.flux.files` reads the files into these models.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.configfile import refuse_bool_for_number

#: Canonical variable names a raw column can carry (EddyPro's `col_N_variable` values, lower case).
CANONICAL_VARIABLES = (
    "u", "v", "w", "ts", "sos", "co2", "h2o", "ch4", "n2o",
    "air_t", "air_p", "cell_t", "int_t_1", "int_t_2", "int_p",
    "diag_sonic", "diag_72", "diag_75", "diag_77", "not_numeric", "ignore",
)  # fmt: skip

GAS_VARIABLES = ("co2", "h2o", "ch4", "n2o")

#: Units accepted per kind of variable, and their factor/offset to the engine's canonical unit.
UNIT_CONVERSIONS: dict[str, dict[str, tuple[float, float]]] = {
    # wind: canonical m s-1
    "wind": {"m_sec": (1.0, 0.0), "m/s": (1.0, 0.0), "cm_sec": (0.01, 0.0)},
    # temperature: canonical K
    "temperature": {"kelvin": (1.0, 0.0), "k": (1.0, 0.0), "celsius": (1.0, 273.15), "degc": (1.0, 273.15),
                    "c": (1.0, 273.15)},
    # pressure: canonical Pa
    "pressure": {"pa": (1.0, 0.0), "hpa": (100.0, 0.0), "kpa": (1000.0, 0.0)},
    # CO2 / CH4 / N2O fractions: canonical umol mol-1
    "trace_fraction": {"ppm": (1.0, 0.0), "umol_mol": (1.0, 0.0), "ppb": (1e-3, 0.0), "nmol_mol": (1e-3, 0.0),
                       "ppt": (1e3, 0.0), "mmol_mol": (1e3, 0.0)},
    # H2O fractions: canonical mmol mol-1
    "h2o_fraction": {"ppt": (1.0, 0.0), "mmol_mol": (1.0, 0.0), "ppm": (1e-3, 0.0), "umol_mol": (1e-3, 0.0)},
    # molar densities: canonical mmol m-3
    "density": {"mmol_m3": (1.0, 0.0), "umol_m3": (1e-3, 0.0), "mol_m3": (1e3, 0.0)},
    "dimensionless": {"dimensionless": (1.0, 0.0), "": (1.0, 0.0), "other": (1.0, 0.0)},
}


def unit_kind(variable: str, measure_type: str | None) -> str:
    """The entry of :data:`UNIT_CONVERSIONS` that applies to a column."""
    if variable in ("u", "v", "w", "sos"):
        return "wind"
    if variable in ("ts", "air_t", "cell_t", "int_t_1", "int_t_2"):
        return "temperature"
    if variable in ("air_p", "int_p"):
        return "pressure"
    if variable in GAS_VARIABLES:
        if measure_type == "molar_density":
            return "density"
        return "h2o_fraction" if variable == "h2o" else "trace_fraction"
    return "dimensionless"


class ConfigModel(BaseModel):
    # NaN or infinity in a settings file is never a setting; EddyPro's own files use -9999 for "not set"
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    _refuse_bool_for_number = field_validator("*", mode="before")(refuse_bool_for_number)


class ColumnSpec(ConfigModel):
    """One column of a raw file (EddyPro `col_N_*` keys). `index` is 1-based, as in EddyPro."""

    index: Annotated[int, Field(ge=1)]
    variable: str
    instrument: str = ""
    measure_type: Literal["mixing_ratio", "mole_fraction", "molar_density"] | None = None
    unit_in: str | None = None
    """Unit of the column as recorded; None: the engine's canonical unit (m_sec, kelvin, pa, ppm, ppt, mmol_m3)."""
    min_value: float | None = None
    max_value: float | None = None
    nom_timelag: float = 0.0
    min_timelag: float = 0.0
    max_timelag: float = 0.0
    linear_scaling: str | None = None
    """EddyPro's linear scaling of the recorded values (`col_N_conversion`; EddyPro 7 Help, "Linear scaling",
    eq. 5-3: X_out = A·X_in + B): `gain_offset` with `a_value` (gain A) and `b_value` (offset B); `unit_in` is then
    the unit of X_out (EddyPro `col_N_unit_out`). Other conversions are refused."""
    a_value: float | None = None
    b_value: float | None = None

    @field_validator("variable")
    @classmethod
    def _known_variable(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in CANONICAL_VARIABLES:
            raise ValueError(f"unknown variable {value!r}; known: {', '.join(CANONICAL_VARIABLES)}")
        return value

    @field_validator("linear_scaling")
    @classmethod
    def _known_scaling(cls, value: str | None) -> str | None:
        value = (value or "").strip().lower() or None
        if value not in (None, "none", "gain_offset"):
            raise ValueError(f"linear scaling (EddyPro col_N_conversion) {value!r} is not available here: only "
                             "gain_offset (X_out = a_value·X_in + b_value) is; give the column in physical units or "
                             "as gain and offset")
        return None if value == "none" else value

    @model_validator(mode="after")
    def _consistent(self) -> ColumnSpec:
        if self.variable in GAS_VARIABLES and self.measure_type is None:
            raise ValueError(f"column {self.index} ({self.variable}): measure_type is required for a gas "
                             "(mixing_ratio, mole_fraction or molar_density)")
        kind = unit_kind(self.variable, self.measure_type)
        if self.unit_in is not None and self.unit_in.lower() not in UNIT_CONVERSIONS[kind]:
            raise ValueError(f"column {self.index} ({self.variable}): unit {self.unit_in!r} not usable for {kind}; "
                             f"use one of {', '.join(u for u in UNIT_CONVERSIONS[kind] if u)}")
        if self.min_timelag > self.max_timelag:
            raise ValueError(f"column {self.index} ({self.variable}): min_timelag > max_timelag")
        if self.linear_scaling == "gain_offset" and (self.a_value is None or self.b_value is None):
            raise ValueError(f"column {self.index} ({self.variable}): linear_scaling gain_offset needs a_value "
                             "(gain) and b_value (offset)")
        return self

    def scaling(self) -> tuple[float, float] | None:
        """(gain, offset) of the linear scaling applied to the recorded values before the unit conversion
        (`linear_scaling` gain_offset), or None."""
        if self.linear_scaling != "gain_offset":
            return None
        assert self.a_value is not None and self.b_value is not None
        return (self.a_value, self.b_value)

    def conversion(self) -> tuple[float, float]:
        """(factor, offset) to the canonical unit: canonical = raw·factor + offset."""
        if self.unit_in is None:
            return (1.0, 0.0)
        return UNIT_CONVERSIONS[unit_kind(self.variable, self.measure_type)][self.unit_in.lower()]


class FileDescription(ConfigModel):
    """How to read an ASCII raw file (EddyPro `[FileDescription]`)."""

    separator: str = "comma"
    header_rows: Annotated[int, Field(ge=0)] = 1
    missing_data_string: str = "-9999"
    columns: list[ColumnSpec]

    @field_validator("columns")
    @classmethod
    def _unique(cls, columns: list[ColumnSpec]) -> list[ColumnSpec]:
        seen: dict[str, int] = {}
        for col in columns:
            if col.variable in ("not_numeric", "ignore"):
                continue
            if col.variable in seen:
                raise ValueError(f"variable {col.variable!r} mapped twice (columns {seen[col.variable]} and "
                                 f"{col.index})")
            seen[col.variable] = col.index
        for needed in ("u", "v", "w", "ts"):
            if needed not in seen:
                raise ValueError(f"no column mapped to {needed!r}: the sonic u, v, w and ts are required")
        return columns

    def delimiter(self) -> str:
        names = {"comma": ",", "semicolon": ";", "tab": "\t", "space": " "}
        return names.get(self.separator, self.separator)

    def column(self, variable: str) -> ColumnSpec | None:
        for col in self.columns:
            if col.variable == variable:
                return col
        return None


class SonicMetadata(ConfigModel):
    """Sonic anemometer (EddyPro `instr_1_*`). Heights in m, angles in degrees."""

    manufacturer: str = ""
    model: str = ""
    height: Annotated[float, Field(gt=0)]
    wformat: Literal["uvw"] = "uvw"
    wref: Literal["axis", "spar", "na"] = "axis"
    north_offset: float = 0.0
    hpath_length: Annotated[float, Field(gt=0)] | None = None
    """Horizontal path length, cm (spectral corrections; known models use their built-in geometry)."""
    vpath_length: Annotated[float, Field(gt=0)] | None = None
    """Vertical path length, cm."""
    path_elevation_deg: Annotated[float, Field(gt=0, le=90)] | None = None
    """Inclination of the acoustic paths to the horizontal, degrees (crosswind correction; built in for the CSAT3,
    60°, and the Metek USA-1, Gill R3 and R2, 45°: :data:`gateway.flux.ec.sonic.CROSSWIND_SONICS`)."""
    sw_version: str = ""
    """Firmware version (EddyPro instr_1_sw_version; Gill: the `D2` reply, e.g. 2329.602.01): decides whether the
    WindMaster w-boost fix applies (`gill_wm_wboost`, :mod:`gateway.flux.ec.instruments`)."""


class GasAnalyzerMetadata(ConfigModel):
    """Gas analyser (EddyPro `instr_2_*`). Separations in cm, tube length in cm, diameter in mm, flow in L min-1."""

    manufacturer: str = ""
    model: str = ""
    path_type: Literal["open", "closed"] = "closed"
    northward_separation: float = 0.0
    eastward_separation: float = 0.0
    vertical_separation: float = 0.0
    tube_length: Annotated[float, Field(ge=0)] = 0.0
    tube_diameter: Annotated[float, Field(ge=0)] = 0.0
    tube_flowrate: Annotated[float, Field(ge=0)] = 0.0
    cell_volume_cm3: Annotated[float, Field(ge=0)] | None = None


class SiteMetadata(ConfigModel):
    """Site, instruments and raw-file layout: everything the engine needs to know about where the data come from.

    Units: altitude, canopy height, displacement, roughness length in m; latitude/longitude in degrees; acquisition
    frequency in Hz; file duration in minutes. Displacement and roughness default to EddyPro's 0.67·h and 0.15·h
    (Kaimal & Finnigan 1994 rules of thumb) when not given or 0.
    """

    site_id: str = "site"
    altitude: float
    latitude: Annotated[float, Field(ge=-90, le=90)]
    longitude: Annotated[float, Field(ge=-180, le=180)] = 0.0
    canopy_height: Annotated[float, Field(ge=0)] = 0.0
    displacement_height: Annotated[float, Field(ge=0)] | None = None
    roughness_length: Annotated[float, Field(ge=0)] | None = None
    # Eddy-covariance instruments sample at 5-100 Hz; the bounds only keep absurd values (a unit slip, a corrupted
    # file) from becoming a period of zero records or a file of 10^12 (ZeroDivisionError, SystemError before)
    acquisition_frequency: Annotated[float, Field(ge=0.1, le=1000)]
    file_duration: Annotated[float, Field(gt=0, le=10080)] = 30.0  # minutes, at most a week per file
    tstamp_end: bool = True
    sonic: SonicMetadata
    analyzer: GasAnalyzerMetadata | None = None
    file: FileDescription

    def displacement(self) -> float:
        """Zero-plane displacement d in m (0.67·canopy height if not set)."""
        return self.displacement_height if self.displacement_height else 0.67 * self.canopy_height

    def roughness(self) -> float:
        """Roughness length z0 in m (0.15·canopy height if not set)."""
        return self.roughness_length if self.roughness_length else 0.15 * self.canopy_height


class Rotation(StrEnum):
    NONE = "none"
    DOUBLE = "double_rotation"
    TRIPLE = "triple_rotation"
    PLANAR_FIT = "planar_fit"
    PLANAR_FIT_NO_BIAS = "planar_fit_no_bias"


class Detrending(StrEnum):
    BLOCK_AVERAGE = "block_average"
    LINEAR = "linear"
    RUNNING_MEAN = "running_mean"
    EXPONENTIAL = "exponential_running_mean"


class TimeLag(StrEnum):
    NONE = "none"
    CONSTANT = "constant"
    MAXCOV_DEFAULT = "covariance_maximization_with_default"
    MAXCOV = "covariance_maximization"
    AUTOMATIC = "automatic_optimization"


class QcMethod(StrEnum):
    NONE = "none"
    MAUDER_FOKEN_2004 = "mauder_foken_2004"
    FOKEN_2004 = "foken_2004"


class Despiking(StrEnum):
    NONE = "none"
    VICKERS_MAHRT_1997 = "vickers_mahrt_1997"
    MAUDER_2013 = "mauder_2013"


class LowFrequencyCorrection(StrEnum):
    NONE = "none"
    MONCRIEFF_2004 = "moncrieff_2004"


class IntegralTimescale(StrEnum):
    """Upper limit of the integral of the w–scalar cross-correlation that defines the integral turbulence time scale
    (EddyPro 7 Help, "Random uncertainty estimation")."""

    FIRST_CROSSING_1_E = "first_crossing_1_over_e"
    FIRST_CROSSING_ZERO = "first_crossing_zero"
    WHOLE_CORRELATION_PERIOD = "whole_correlation_period"


class SpectralCorrection(StrEnum):
    NONE = "none"
    MONCRIEFF_1997 = "moncrieff_1997"
    HORST_1997 = "horst_1997"
    IBROM_2007 = "ibrom_2007"
    FRATINI_2012 = "fratini_2012"


#: EddyPro numeric codes of the enumerated settings, for reading `.eddypro` files.
EDDYPRO_CODES: dict[str, dict[str, str]] = {
    "rot_meth": {"0": "none", "1": "double_rotation", "2": "triple_rotation", "3": "planar_fit",
                 "4": "planar_fit_no_bias"},
    "detrend_meth": {"0": "block_average", "1": "linear", "2": "running_mean", "3": "exponential_running_mean"},
    "tlag_meth": {"0": "none", "1": "constant", "2": "covariance_maximization_with_default",
                  "3": "covariance_maximization", "4": "automatic_optimization"},
    "qc_meth": {"0": "none", "1": "mauder_foken_2004", "2": "foken_2004"},
    "hf_meth": {"0": "none", "1": "moncrieff_1997", "2": "horst_1997", "3": "ibrom_2007", "4": "fratini_2012"},
    "foot_meth": {"0": "none", "1": "kljun_2004", "2": "kormann_meixner_2001", "3": "hsieh_2000"},
    "lf_meth": {"0": "none", "1": "moncrieff_2004"},
    "ru_its_meth": {"0": "first_crossing_1_over_e", "1": "first_crossing_zero", "2": "whole_correlation_period"},
    "flow_distortion": {"0": "none", "1": "nakai_2006", "2": "nakai_shimoyama_2012", "3": "automatic"},
}


class AbsoluteLimits(ConfigModel):
    """Plausible ranges (EddyPro `al_*`, Vickers & Mahrt 1997 §4c). Wind in m s-1, Ts in °C, CO2 in µmol mol-1,
    H2O in mmol mol-1, CH4 and N2O in µmol mol-1 (fractions; molar densities of CO2/H2O are not limited)."""

    al_u_max: float = 30.0
    al_w_max: float = 5.0
    al_tson_min: float = -40.0
    al_tson_max: float = 50.0
    al_co2_min: float = 200.0
    al_co2_max: float = 900.0
    al_h2o_min: float = 0.0
    al_h2o_max: float = 40.0
    al_ch4_min: float = 0.17
    al_ch4_max: float = 1000.0
    al_n2o_min: float = 0.032
    al_n2o_max: float = 1000.0


class StatisticalTests(ConfigModel):
    """EddyPro's statistical tests after Vickers & Mahrt (1997) other than despiking (`despike`, `sr_*`) —
    EddyPro `[RawProcess_Tests]` `test_*` and their `[RawProcess_ParameterSettings]` parameters, same names and
    defaults (module :mod:`gateway.flux.ec.vm97`). They only flag the period (0 passed, 1 failed, 9 not selected);
    they never change the data or the fluxes.

    test_al: flag records outside the absolute limits (`absolute_limits`; removing them is `filter_al`).
    ar_*: amplitude resolution, ar_lim in standard deviations, ar_hf_lim in % of empty bins. do_*: dropouts,
    do_extlim_dw the percentile of the extreme bins, do_hf1_lim/do_hf2_lim in % of the window (central/extreme bins).
    sk_*: skewness and kurtosis (non-excess) ranges, hard (hf) and soft (sf). ds_*: discontinuities, limits of the
    Haar jump of the mean in the variable's unit (uv, w in m s-1, t in K, co2/ch4/n2o in µmol mol-1, h2o in mmol
    mol-1) and of the relative change of variance (var). tl_*: time lags, hf/sf limits in % and the expected lags
    tl_def_* in s. aa_*: angle of attack, range in degrees and accepted % outside. ns_hf_lim: relative
    non-stationarity of the horizontal wind (dimensionless)."""

    test_al: bool = False
    test_ar: bool = False
    test_do: bool = False
    test_sk: bool = False
    test_ds: bool = False
    test_tl: bool = False
    test_aa: bool = False
    test_ns: bool = False
    ar_lim: Annotated[float, Field(gt=0)] = 7.0
    ar_bins: Annotated[int, Field(ge=2)] = 100
    ar_hf_lim: Annotated[float, Field(ge=0, le=100)] = 70.0
    do_extlim_dw: Annotated[float, Field(ge=0, lt=50)] = 10.0
    do_hf1_lim: Annotated[float, Field(ge=0, le=100)] = 10.0
    do_hf2_lim: Annotated[float, Field(ge=0, le=100)] = 6.0
    sk_hf_skmin: float = -2.0
    sk_hf_skmax: float = 2.0
    sk_sf_skmin: float = -1.0
    sk_sf_skmax: float = 1.0
    sk_hf_kumin: float = 1.0
    sk_hf_kumax: float = 8.0
    sk_sf_kumin: float = 2.0
    sk_sf_kumax: float = 5.0
    ds_hf_uv: Annotated[float, Field(ge=0)] = 4.0
    ds_hf_w: Annotated[float, Field(ge=0)] = 2.0
    ds_hf_t: Annotated[float, Field(ge=0)] = 4.0
    ds_hf_co2: Annotated[float, Field(ge=0)] = 40.0
    ds_hf_h2o: Annotated[float, Field(ge=0)] = 3.26
    ds_hf_ch4: Annotated[float, Field(ge=0)] = 40.0
    ds_hf_n2o: Annotated[float, Field(ge=0)] = 40.0
    ds_hf_var: Annotated[float, Field(ge=0)] = 3.0
    ds_sf_uv: Annotated[float, Field(ge=0)] = 2.7
    ds_sf_w: Annotated[float, Field(ge=0)] = 1.3
    ds_sf_t: Annotated[float, Field(ge=0)] = 2.7
    ds_sf_co2: Annotated[float, Field(ge=0)] = 27.0
    ds_sf_h2o: Annotated[float, Field(ge=0)] = 2.2
    ds_sf_ch4: Annotated[float, Field(ge=0)] = 30.0
    ds_sf_n2o: Annotated[float, Field(ge=0)] = 30.0
    ds_sf_var: Annotated[float, Field(ge=0)] = 2.0
    tl_hf_lim: Annotated[float, Field(ge=0)] = 20.0
    tl_sf_lim: Annotated[float, Field(ge=0)] = 10.0
    tl_def_co2: float = 0.0
    tl_def_h2o: float = 0.0
    tl_def_ch4: float = 0.0
    tl_def_n2o: float = 0.0
    aa_min: float = -30.0
    aa_max: float = 30.0
    aa_lim: Annotated[float, Field(ge=0, le=100)] = 10.0
    ns_hf_lim: Annotated[float, Field(gt=0)] = 0.5

    @model_validator(mode="after")
    def _ranges(self) -> StatisticalTests:
        for lo, hi in (("sk_hf_skmin", "sk_hf_skmax"), ("sk_sf_skmin", "sk_sf_skmax"), ("sk_hf_kumin", "sk_hf_kumax"),
                       ("sk_sf_kumin", "sk_sf_kumax"), ("aa_min", "aa_max")):
            if getattr(self, lo) >= getattr(self, hi):
                raise ValueError(f"{lo} = {getattr(self, lo)} is not below {hi} = {getattr(self, hi)}")
        return self


class ProcessingSettings(ConfigModel):
    """Processing options, EddyPro names (`[RawProcess_Settings]`, `[Project]`), EddyPro defaults.

    avrg_len: averaging period, minutes. max_lack: maximum missing records in %, per variable, before a flux is not
    computed. timeconst: time constant in s for linear / running-mean / exponential detrending. tl_def_*: default
    time lags in s (None: the column's nominal lag, or for a closed path the tube nominal lag).
    """

    avrg_len: Annotated[float, Field(ge=0.1, le=1440)] = 30.0  # minutes: 6 s to a day
    max_lack: Annotated[float, Field(ge=0, le=100)] = 10.0
    rot_meth: Rotation = Rotation.DOUBLE
    detrend_meth: Detrending = Detrending.BLOCK_AVERAGE
    timeconst: Annotated[float, Field(gt=0)] = 250.0
    tlag_meth: TimeLag = TimeLag.MAXCOV_DEFAULT
    to_co2_min_lag: float | None = None
    """Automatic time-lag optimisation: the wide window searched first, s (EddyPro to_*_min_lag/max_lag; None:
    the column's min_timelag/max_timelag)."""
    to_co2_max_lag: float | None = None
    to_h2o_min_lag: float | None = None
    to_h2o_max_lag: float | None = None
    to_ch4_min_lag: float | None = None
    to_ch4_max_lag: float | None = None
    to_n2o_min_lag: float | None = None
    to_n2o_max_lag: float | None = None
    to_co2_min_flux: Annotated[float, Field(ge=0)] = 2.0
    """Automatic time-lag optimisation: only periods with |FC| (µmol m-2 s-1) or |LE| (W m-2) at least this."""
    to_le_min_flux: Annotated[float, Field(ge=0)] = 20.0
    to_ch4_min_flux: Annotated[float, Field(ge=0)] = 0.2
    """Automatic time-lag optimisation: minimum |FCH4| and |FN2O|, µmol m-2 s-1 (EddyPro to_ch4_min_flux,
    to_gas4_min_flux)."""
    to_n2o_min_flux: Annotated[float, Field(ge=0)] = 0.02
    to_pg_range: Annotated[float, Field(gt=0)] = 1.5
    """Automatic time-lag optimisation: window = median ± to_pg_range·MAD of the lags found."""
    to_h2o_nclass: Annotated[int, Field(ge=1, le=50)] = 10
    """Automatic time-lag optimisation: RH classes for H2O."""
    to_fit_from: datetime | None = None
    """Only periods ending after this time enter the lag optimisation (EddyPro to_subset, to_start_*)."""
    to_fit_to: datetime | None = None
    tl_def_co2: float | None = None
    tl_def_h2o: float | None = None
    tl_def_ch4: float | None = None
    tl_def_n2o: float | None = None
    wpl_meth: bool = True
    qc_meth: QcMethod = QcMethod.MAUDER_FOKEN_2004
    filter_al: bool = False
    absolute_limits: AbsoluteLimits = AbsoluteLimits()
    filter_diag: bool = True
    despike: Despiking = Despiking.NONE
    despike_replace: bool = True
    """Replace detected spikes by linear interpolation (EddyPro filter_sr = 1); False: count them only."""
    sr_num_spk: int = 3
    sr_lim_u: float = 3.5
    sr_lim_w: float = 5.0
    sr_lim_co2: float = 3.5
    sr_lim_h2o: float = 3.5
    sr_lim_ch4: float = 8.0
    sr_lim_n2o: float = 8.0
    sr_lim_hf: float = 1.0
    statistical_tests: StatisticalTests = StatisticalTests()
    """Vickers & Mahrt (1997) flags (EddyPro test_al/ar/do/sk/ds/tl/aa/ns and their parameters); flags only."""
    hf_meth: SpectralCorrection = SpectralCorrection.NONE
    lf_meth: LowFrequencyCorrection = LowFrequencyCorrection.NONE
    """Correction of the high-pass filtering by averaging/detrending (Moncrieff et al. 2004), EddyPro lf_meth."""
    random_error: Literal["none", "finkelstein_sims_2001", "mann_lenschow_1994"] = "none"
    """Random error of the fluxes (EddyPro ru_meth 0, 1, 2): :mod:`gateway.flux.ec.randomerror`."""
    ru_its_meth: IntegralTimescale = IntegralTimescale.WHOLE_CORRELATION_PERIOD
    """How the integral turbulence time scale (the Finkelstein & Sims lag range, the Mann & Lenschow time scale) is
    found (EddyPro ru_its_meth)."""
    ru_tlag_max: Annotated[float, Field(gt=0)] = 10.0
    """Maximum correlation period of the random-error estimate, s (EddyPro `ru_tlag_max`)."""
    cross_wind: bool = False
    """Crosswind correction of the sonic temperature (Liu et al. 2001), EddyPro cross_wind."""
    gill_wm_wboost: bool = False
    """Fix the w-boost bug of Gill WindMaster / WindMaster Pro firmware (EddyPro gill_wm_wboost): applied only where
    EddyPro applies it, a WindMaster (Pro) with firmware 2329.x.y, x < 700 (`sonic.sw_version`); elsewhere the period's
    reasons say why not (:mod:`gateway.flux.ec.instruments`)."""
    flow_distortion: Literal["none", "nakai_2006", "nakai_shimoyama_2012", "automatic"] = "none"
    """Angle-of-attack correction of Gill sonics (EddyPro flow_distortion 1, 2; 3 taken as EddyPro's "Select
    automatically"). Not available in this engine: accepted
    without effect (the reasons say so) for sonics EddyPro does not apply it to (Gill HS family, other makers);
    refused for Gill R2/R3/WindMaster, where EddyPro applies it (:mod:`gateway.flux.ec.instruments`)."""
    bu_corr: bool = False
    """Burba et al. (2008) off-season uptake correction of LI-7500 molar densities (EddyPro bu_corr). Not available:
    accepted without effect where EddyPro does not apply it (other analysers, e.g. the closed-path LI-7200; LI-7500
    mixing ratios), refused for LI-7500 molar densities."""
    u_offset: float = 0.0
    """Zero-wind offsets subtracted from the raw u, v, w, m s-1 (EddyPro u_offset, v_offset, w_offset)."""
    v_offset: float = 0.0
    w_offset: float = 0.0
    magnetic_declination: float = 0.0
    """Degrees east, added to the wind direction (EddyPro use_geo_north = 1 with mag_dec): WD from true north."""
    process_from: datetime | None = None
    """Only periods ending after this time (UTC) are processed (EddyPro pr_subset with pr_start_date/time)."""
    process_to: datetime | None = None
    """Only periods ending at or before this time (UTC) are processed (EddyPro pr_end_date/time)."""
    pf_sectors: Annotated[int, Field(ge=1, le=36)] = 4
    """Planar fit by the engine (no planar_fit_file): number of equal wind sectors."""
    pf_north_offset: float = 0.0
    """Start of the first planar-fit sector, degrees (sonic-frame direction the wind comes from)."""
    pf_min_num_per_sec: Annotated[int, Field(ge=0)] = 10
    """Periods a sector needs for its own plane; fewer: the plane of all periods (EddyPro pf_min_num_per_sec)."""
    pf_w_max: Annotated[float, Field(gt=0)] = 1.0
    """Periods with a larger |mean w| (m s-1) are not used for the fit (EddyPro pf_w_max)."""
    pf_u_min: float = 0.0
    """Periods with a lower mean horizontal speed (m s-1) are not used for the fit (EddyPro pf_u_min)."""
    pf_fit_from: datetime | None = None
    """Only periods ending after this time enter the engine's planar fit (EddyPro pf_subset, pf_start_*)."""
    pf_fit_to: datetime | None = None
    pf_subtract_b0: bool = False
    """Planar fit: subtract the fitted offset b0 from w before rotating (EddyPro 7.0.9 keeps it, run V)."""
    foot_meth: Literal["none", "kljun_2015", "kljun_2004", "kormann_meixner_2001", "hsieh_2000"] = "none"
    footprint_blh: Annotated[float, Field(gt=0)] | None = None
    """Boundary-layer height in m for the Kljun et al. (2015) footprint (no default: it is not measured here)."""
    planar_fit_file: str | None = None
    spectral_assessment_file: str | None = None
    """EddyPro spectral_assessment.txt with the IIR cut-off frequencies for hf_meth horst_1997, ibrom_2007,
    fratini_2012; without it the command assesses the spectra of the periods it processes (in situ)."""
    sa_fmin_co2: Annotated[float, Field(gt=0)] = 0.005
    """In-situ assessment: fitting range of the IIR transfer function, Hz (EddyPro sa_fmin_*, sa_fmax_*)."""
    sa_fmax_co2: Annotated[float, Field(gt=0)] = 2.0
    sa_fmin_h2o: Annotated[float, Field(gt=0)] = 0.005
    sa_fmax_h2o: Annotated[float, Field(gt=0)] = 2.0
    sa_hfn_co2_fmin: Annotated[float, Field(gt=0)] | None = None
    """In-situ assessment: the gas spectrum's mean above this frequency (Hz) is white noise and subtracted
    (EddyPro sa_hfn_*_fmin); None: no noise removed."""
    sa_hfn_h2o_fmin: Annotated[float, Field(gt=0)] | None = None
    sa_min_smpl: Annotated[int, Field(ge=1)] = 10
    """In-situ assessment: spectra a class needs (EddyPro sa_min_smpl)."""
    sa_min_un_ustar: float = 0.2
    """In-situ assessment, period selection (EddyPro sa_min_*/sa_max_*): u* (m s-1), |H|, |LE| (W m-2), |FC|
    (µmol m-2 s-1) at least the unstable (un) or stable (st) minimum and at most the maximum."""
    sa_min_st_ustar: float = 0.05
    sa_max_ustar: float = 5.0
    sa_min_un_h: float = 20.0
    sa_min_st_h: float = 5.0
    sa_max_h: float = 1000.0
    sa_min_un_le: float = 20.0
    sa_min_st_le: float = 3.0
    sa_max_le: float = 1000.0
    sa_min_un_co2: float = 2.0
    sa_min_st_co2: float = 0.5
    sa_max_co2: float = 100.0
    sa_fit_from: datetime | None = None
    """Only periods ending after this time enter the in-situ assessment (EddyPro sa_subset, sa_start_*)."""
    sa_fit_to: datetime | None = None
    sa_use_vm_flags: bool = False
    """In-situ assessment: a gas's spectra of a period with a hard flag of a selected statistical test (Vickers &
    Mahrt 1997) on u, v, w, Ts or that gas, or of the angle-of-attack or horizontal-wind test, are left out (EddyPro
    sa_use_vm_flags; docs/flux-ec.md, "In-situ spectral assessment")."""
    sa_use_foken_low: bool = False
    """In-situ assessment: a gas's spectra of a period whose flux has the low-quality flag (Mauder & Foken 2004 flag
    2; Foken et al. 2004 classes 6-9) are left out (EddyPro sa_use_foken_low)."""
    sa_use_foken_mid: bool = False
    """In-situ assessment: likewise for the medium-quality flag (Mauder & Foken flag 1; Foken classes 3-5; EddyPro
    sa_use_foken_mid)."""
    power_of_two: bool = False

    def settings_hash(self, metadata: SiteMetadata | None = None) -> str:
        """First 16 hex digits of the SHA-256 of the canonical JSON of these settings (and the metadata, if given):
        results computed with the same hash are comparable."""
        # the statistical tests only add flags: unselected, they leave the hash of the settings it was without them
        # likewise the in-situ assessment's flag selection, added later, when it is off
        # likewise the instrument-specific options, added later, when off
        exclude = {k for k in ("sa_use_vm_flags", "sa_use_foken_low", "sa_use_foken_mid", "gill_wm_wboost", "bu_corr")
                   if not getattr(self, k)}
        if self.flow_distortion == "none":
            exclude.add("flow_distortion")
        if self.statistical_tests == StatisticalTests():
            exclude.add("statistical_tests")
        payload: dict[str, Any] = {"settings": self.model_dump(mode="json", exclude=exclude or None)}
        if metadata is not None:
            # the sonic's firmware version, added later, leaves the hash as it was when not given
            payload["metadata"] = metadata.model_dump(mode="json", exclude=None if metadata.sonic.sw_version else
                                                      {"sonic": {"sw_version"}})
            # likewise a column's linear scaling, added later, when there is none
            for column in payload["metadata"]["file"]["columns"]:
                if column.get("linear_scaling") is None:
                    for key in ("linear_scaling", "a_value", "b_value"):
                        column.pop(key, None)
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class NotAvailableError(ValueError):
    """A selected method is not implemented (yet) in this engine; the message names the setting and the fix."""
