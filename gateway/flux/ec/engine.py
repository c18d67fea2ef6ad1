"""The processing chain for one averaging period: `process_period(RawPeriod, ProcessingSettings) -> FluxResult`.

`process_period` only strings named steps together; each step below is a pure function of arrays and numbers that
cites its method, in EddyPro's order (EDDYPRO-REFERENCE.md; docs/flux-ec.md "What the engine does"):

0. :func:`working_copy`: the period's arrays, with the Gill WindMaster w-boost fix where it applies
   (:func:`instrument_decisions`; the options EddyPro applies to some instruments only);
1. :func:`filter_records`: instrument diagnostics, absolute limits (Vickers & Mahrt 1997 §4c);
2. :func:`remove_spikes`: Vickers & Mahrt (1997) or Mauder et al. (2013); the selected statistical tests only flag
   (:func:`absolute_limit_flags` before the limits filter, :func:`statistical_flags` after step 5,
   :func:`time_lag_flags` after step 6; Vickers & Mahrt 1997, :mod:`gateway.flux.ec.vm97`);
3. :func:`correct_sonic`: zero-wind offsets, crosswind correction of Ts (Liu et al. 2001);
4. :func:`dry_mole_fractions`: wet mole fractions to mixing ratios record by record (Ibrom et al. 2007);
5. :func:`usable_gases`: the max_lack rule;
6. :func:`tilt_correction`: double/triple rotation (Wilczak et al. 2001) or planar fit;
7. :func:`compensate_time_lags`: covariance maximisation (Fan et al. 1990) or constant lags;
8. :func:`period_air_properties`: air properties from the means (`airprops`);
9. :func:`fluctuations`: detrending (`detrend`);
10. :func:`covariances_and_moments`;
11. :func:`level0_fluxes`: uncorrected fluxes (EddyPro "level 0");
12. :func:`spectral_correction_factors`: Moncrieff et al. (1997, 2004), Fratini et al. (2012);
13. :func:`corrected_fluxes`: spectral factors, van Dijk et al. (2004) humidity correction of H, Webb et al. (1980);
14. :func:`quality_flags`: Foken et al. (2004), Mauder & Foken (2004);
15. :func:`random_errors`: Finkelstein & Sims (2001) or Mann & Lenschow (1994); :func:`footprint_distances`: Kljun
    et al. (2004, 2015), Kormann & Meixner (2001), Hsieh et al. (2000).

Bad data never raise: every problem becomes a named reason on the result (``failed`` or ``partial``). Only an
impossible configuration raises (:class:`ConfigurationError`, :class:`NotAvailableError`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gateway.flux.ec import airprops, detrend, fluxes, instruments, qc, rotation, sonic, timelag
from gateway.flux.ec.airprops import AirProperties
from gateway.flux.ec.constants import LI7200_CELL_VOLUME, M_H2O
from gateway.flux.ec.period import RawPeriod
from gateway.flux.ec.result import FluxResult
from gateway.flux.ec.settings import (
    Despiking,
    Detrending,
    LowFrequencyCorrection,
    NotAvailableError,
    ProcessingSettings,
    QcMethod,
    Rotation,
    SiteMetadata,
    SpectralCorrection,
    StatisticalTests,
    TimeLag,
)
from gateway.flux.ec.stats import moments

Array = NDArray[np.float64]
Mask = NDArray[np.bool_]
GASES = ("co2", "h2o", "ch4", "n2o")
TRACE_GASES = ("ch4", "n2o")  # from closed-path laser analysers, as mole fractions or mixing ratios
#: Output name of each gas's flux and its scale from mol m-2 s-1 (FC µmol, FH2O mmol, FCH4 and FN2O nmol m-2 s-1).
FLUX_NAMES = {"co2": ("FC", 1e6), "h2o": ("FH2O", 1e3), "ch4": ("FCH4", 1e9), "n2o": ("FN2O", 1e9)}
MAX_STABILITY_ITERATIONS = 20
IN_SITU_METHODS = (SpectralCorrection.HORST_1997, SpectralCorrection.IBROM_2007, SpectralCorrection.FRATINI_2012)
WIND = ("u", "v", "w", "ts")


class ConfigurationError(ValueError):
    """Metadata and settings cannot work together; raised before any data is processed."""


#: Period means outside these are no air at the surface: −100..+100 °C sonic temperature; 30..110 kPa (the summit
#: of Everest is ~33 kPa); water vapour from slightly below zero (an analyser's zero drift in dry air) to well above
#: saturation at 50 °C (12 % by volume, ~4.6 mol m-3).
TS_MEAN_RANGE_K = (173.15, 373.15)
PRESSURE_RANGE_PA = (30_000.0, 110_000.0)
H2O_MEAN_RANGE = {"mixing_ratio": (-10.0, 200.0), "molar_density": (-500.0, 8_000.0)}


class PeriodFailed(Exception):
    """A step found the period unusable; the message is the reason given on the result."""


def check_configuration(metadata: SiteMetadata, settings: ProcessingSettings) -> None:
    """Refuse settings this engine cannot honour, naming the setting (no silent skipping)."""
    if settings.hf_meth in IN_SITU_METHODS and (metadata.analyzer is None or metadata.analyzer.path_type != "closed"):
        raise ConfigurationError(f"hf_meth = {settings.hf_meth.value} applies to closed-path analysers (its transfer "
                                 "function comes from the in-situ spectral assessment); use moncrieff_1997")
    if settings.foot_meth == "kljun_2015" and settings.footprint_blh is None:
        raise ConfigurationError("foot_meth = kljun_2015 needs footprint_blh, the boundary-layer height in m")
    if settings.tlag_meth == TimeLag.AUTOMATIC:
        for gas in GASES:
            col = metadata.file.column(gas)
            lo, hi = getattr(settings, f"to_{gas}_min_lag", None), getattr(settings, f"to_{gas}_max_lag", None)
            if col is not None and (lo is None or hi is None) and col.min_timelag == col.max_timelag:
                raise ConfigurationError(
                    f"tlag_meth = automatic_optimization: no window to search the {gas} lag in; set "
                    f"to_{gas}_min_lag/to_{gas}_max_lag or the column's min_timelag/max_timelag")
    for gas in TRACE_GASES:
        col = metadata.file.column(gas)
        if col is not None and col.measure_type == "molar_density":
            raise NotAvailableError(
                f"column {col.index} ({gas}): molar densities of {gas.upper()} come from an open-path laser (LI-7700),"
                " whose flux needs LI-COR's spectroscopic multipliers A, B, C (McDermitt et al. 2011; LI-7700 manual,"
                " eq. 5.1, from look-up tables this engine does not have); record mole fractions or mixing ratios "
                "from a closed-path analyser, or process the LI-7700 with EddyPro")
    for key, code, decision in instrument_decisions(metadata, settings):
        if key == "gill_wm_wboost":  # implemented: applied or not, never refused
            continue
        if decision.applies is True:
            raise NotAvailableError(f"{key} = {code}: {decision.why}, which this engine cannot do; set {key} = 0 "
                                    "(none) or process these data with EddyPro")
        if decision.applies is None:
            raise ConfigurationError(f"{key} = {code}: {decision.why}; give the instrument's model in the metadata "
                                     f"or set {key} = 0")
    if settings.cross_wind and sonic.path_elevation_deg(metadata.sonic.model,
                                                         metadata.sonic.path_elevation_deg) is None:
        listed = instruments.sonic_family(metadata.sonic.manufacturer, metadata.sonic.model) in ("gill_r", "gill_hs")
        why = (" (Liu et al. 2001, Table 1, lists it, but its path geometry is not built in here: no source to cite "
               "for it)" if listed else "")
        raise ConfigurationError(
            f"cross_wind: the acoustic-path inclination of sonic model {metadata.sonic.model!r} is not known{why}; "
            "set sonic.path_elevation_deg in YAML metadata (degrees from horizontal) or switch cross_wind off")
    if settings.tlag_meth in (TimeLag.MAXCOV, TimeLag.MAXCOV_DEFAULT):
        for gas in GASES:
            col = metadata.file.column(gas)
            if col is not None and col.min_timelag == col.max_timelag:
                raise ConfigurationError(
                    f"column {col.index} ({gas}): time-lag window min_timelag = max_timelag = {col.min_timelag} s; "
                    f"covariance maximisation needs a window (e.g. min_timelag: 0, max_timelag: 2)")


def instrument_decisions(metadata: SiteMetadata, settings: ProcessingSettings
                         ) -> list[tuple[str, str, instruments.Decision]]:
    """For each selected option that EddyPro applies to some instruments only (EddyPro key, its value, the decision
    of :mod:`gateway.flux.ec.instruments`): ``gill_wm_wboost`` (applied by :func:`working_copy` where it applies),
    ``flow_distortion`` and ``bu_corr`` (not available: :func:`check_configuration` refuses them where they apply)."""
    out: list[tuple[str, str, instruments.Decision]] = []
    sn = metadata.sonic
    if settings.gill_wm_wboost:
        out.append(("gill_wm_wboost", "1", instruments.wboost(sn.manufacturer, sn.model, sn.sw_version)))
    if settings.flow_distortion != "none":
        code = {"nakai_2006": "1", "nakai_shimoyama_2012": "2", "automatic": "3"}[settings.flow_distortion]
        out.append(("flow_distortion", code, instruments.angle_of_attack(sn.manufacturer, sn.model,
                                                                         settings.flow_distortion)))
    if settings.bu_corr:
        an = metadata.analyzer
        densities = [g for g in ("co2", "h2o") if (c := metadata.file.column(g)) is not None
                     and c.measure_type == "molar_density"]
        out.append(("bu_corr", "1", instruments.off_season_uptake(an.model if an else "", an.path_type if an else None,
                                                                  densities)))
    return out


def instrument_notes(metadata: SiteMetadata, settings: ProcessingSettings) -> list[str]:
    """What became of each selected instrument-specific option (:func:`instrument_decisions`), in words: every
    period's reasons carry them, and `sinkwatch flux ec` prints them once."""
    return [f"{key} = {code}: {d.why}" for key, code, d in instrument_decisions(metadata, settings)]


def working_copy(period: RawPeriod, settings: ProcessingSettings) -> dict[str, Array]:
    """The period's arrays as float64 copies, w corrected for the Gill WindMaster w-boost bug where EddyPro applies
    the fix (`gill_wm_wboost`, :func:`gateway.flux.ec.instruments.wboost`; "at the raw data level, before any other
    operation", EddyPro 7 Help "W-boost Bug Correction for WindMaster/Pro")."""
    data = {k: np.array(a, dtype=np.float64, copy=True) for k, a in period.data.items()}
    sn = period.metadata.sonic
    if settings.gill_wm_wboost and "w" in data and instruments.wboost(sn.manufacturer, sn.model,
                                                                      sn.sw_version).applies:
        data["w"] = sonic.wboost_corrected_w(data["w"])
    return data


@dataclass(frozen=True)
class PlanarFitSetup:
    """Planar-fit sectors (from :func:`gateway.flux.ec.planarfit.parse_eddypro_planar_fit`) and whether b0 is
    subtracted."""

    sectors: list[Any]
    subtract_b0: bool


def default_lag(gas: str, metadata: SiteMetadata, settings: ProcessingSettings) -> float:
    """Default / constant lag in s: the setting ``tl_def_<gas>``, else the column's nominal lag, else (closed path)
    the tube-and-cell transit time (Ibrom et al. 2007, §2.3), else 0."""
    explicit = getattr(settings, f"tl_def_{gas}", None)
    if explicit is not None:
        return float(explicit)
    col = metadata.file.column(gas)
    if col is not None and col.nom_timelag:
        return col.nom_timelag
    ga = metadata.analyzer
    if ga is not None and ga.path_type == "closed":
        cell = ga.cell_volume_cm3 * 1e-6 if ga.cell_volume_cm3 is not None else (
            LI7200_CELL_VOLUME if "7200" in ga.model else 0.0)
        return timelag.nominal_closed_path_lag(ga.tube_length, ga.tube_diameter, ga.tube_flowrate, cell)
    return 0.0


# ---------------------------------------------------------------------------------------------------------------
# 1-5: the raw records
# ---------------------------------------------------------------------------------------------------------------

def diagnostic_mask(name: str, diag: Array) -> Mask:
    """True where a diagnostic word marks a bad record. LI-7200 (`diag_72`): bits 4-12 are 1 when OK; LI-7500
    (`diag_75`): bits 4-7 are 1 when OK (LI-COR LI-7200 and LI-7500A instruction manuals, "Diagnostic value");
    sonic (`diag_sonic`): non-zero is bad. NaN: not flagged. A number that is no diagnostic word (negative, a
    fraction, 2**32 or more: a corrupted record) is bad."""
    ok = np.isfinite(diag)
    with np.errstate(invalid="ignore"):
        word_like = ok & (diag >= 0) & (diag < 2.0**32) & (diag == np.floor(diag))
    word = np.where(word_like, diag, 0).astype(np.int64)
    if name == "diag_72":
        bad = (word >> 4) & 0x1FF != 0x1FF
    elif name == "diag_75":
        bad = (word >> 4) & 0xF != 0xF
    else:
        bad = word != 0
    return ok & (bad | ~word_like)


def absolute_limit_ranges(measure_types: dict[str, str], settings: ProcessingSettings
                          ) -> dict[str, tuple[float, float]]:
    """EddyPro's absolute limits per series in the engine's units (Vickers & Mahrt 1997, §4c; `al_*`): wind m s-1,
    Ts K, CO2/CH4/N2O µmol mol-1, H2O mmol mol-1; molar densities of CO2 and H2O are not limited."""
    al = settings.absolute_limits
    limits = {"u": (-al.al_u_max, al.al_u_max), "v": (-al.al_u_max, al.al_u_max), "w": (-al.al_w_max, al.al_w_max),
              "ts": (al.al_tson_min + 273.15, al.al_tson_max + 273.15)}
    if measure_types.get("co2") != "molar_density":
        limits["co2"] = (al.al_co2_min, al.al_co2_max)
    if measure_types.get("h2o") != "molar_density":
        limits["h2o"] = (al.al_h2o_min, al.al_h2o_max)
    limits["ch4"] = (al.al_ch4_min, al.al_ch4_max)
    limits["n2o"] = (al.al_n2o_min, al.al_n2o_max)
    return limits


def filter_records(data: dict[str, Array], measure_types: dict[str, str], settings: ProcessingSettings,
                   counts: dict[str, float] | None = None) -> list[str]:
    """Set records flagged by an instrument's diagnostic word, or outside EddyPro's absolute limits (Vickers &
    Mahrt 1997, §4c; `al_*` in m s-1, °C, µmol mol-1, mmol mol-1), to missing, in place. Returns the reasons; into
    ``counts`` go the records removed: ``SONIC_DIAG_NREX`` and ``<GAS>_DIAG_NREX`` by the diagnostic words,
    ``<VAR>_ABSLIM_NREX`` by the limits (EddyPro's fluxnet names; U, V, W, TS, CO2, H2O, CH4, N2O)."""
    reasons: list[str] = []
    if settings.filter_diag:
        for dname, targets in (("diag_72", GASES), ("diag_75", GASES), ("diag_sonic", WIND)):
            if dname in data:
                bad = diagnostic_mask(dname, data[dname])
                if counts is not None:
                    for key in (["SONIC"] if dname == "diag_sonic" else [t.upper() for t in targets if t in data]):
                        counts[f"{key}_DIAG_NREX"] = counts.get(f"{key}_DIAG_NREX", 0.0) + float(bad.sum())
                if bad.any():
                    for t in targets:
                        if t in data:
                            data[t][bad] = np.nan
                    reasons.append(f"{dname}: {int(bad.sum())} records flagged by the instrument and removed")
    if settings.filter_al:
        for name, (lo, hi) in absolute_limit_ranges(measure_types, settings).items():
            if name in data:
                with np.errstate(invalid="ignore"):
                    out = (data[name] < lo) | (data[name] > hi)
                if counts is not None:
                    counts[f"{name.upper()}_ABSLIM_NREX"] = float(out.sum())
                if out.any():
                    data[name][out] = np.nan
                    reasons.append(f"{name}: {int(out.sum())} records outside absolute limits [{lo:g}, {hi:g}]")
    return reasons


def remove_spikes(data: dict[str, Array], fs: float, settings: ProcessingSettings) -> dict[str, float]:
    """Despike every sonic and gas series in place (Vickers & Mahrt 1997 with EddyPro's window of one sixth of the
    averaging period, or Mauder et al. 2013); spikes are replaced by linear interpolation unless
    ``despike_replace`` is off (then only counted). Returns ``<VAR>_NUM_SPIKES`` (spike events) and the spike
    test's hard flag ``<VAR>_VM97_SR_HF`` (1 when more than ``sr_lim_hf`` % of the records are spikes) per series."""
    from gateway.flux.ec import despike as dsp

    counts: dict[str, float] = {}
    if settings.despike == Despiking.NONE:
        return counts
    lims = {"u": settings.sr_lim_u, "v": settings.sr_lim_u, "w": settings.sr_lim_w, "ts": settings.sr_lim_u,
            "co2": settings.sr_lim_co2, "h2o": settings.sr_lim_h2o, "ch4": settings.sr_lim_ch4,
            "n2o": settings.sr_lim_n2o}
    for name, lim in lims.items():
        if name not in data:
            continue
        if settings.despike == Despiking.VICKERS_MAHRT_1997:
            res = dsp.despike_vm97(data[name], fs, sr_lim=lim, sr_num_spk=settings.sr_num_spk,
                                   sr_lim_hf=settings.sr_lim_hf, replace="linear",
                                   window_s=dsp.eddypro_window_s(settings.avrg_len * 60.0))
        else:
            res = dsp.despike_mad(data[name], sr_lim_hf=settings.sr_lim_hf, replace="linear")
        if settings.despike_replace:
            data[name] = res.values
        counts[f"{name.upper()}_NUM_SPIKES"] = float(res.n_events)
        counts[f"{name.upper()}_VM97_SR_HF"] = float(res.hard_flag)
    return counts


#: The series the statistical tests look at, in EddyPro's order (its "8u/v/w/ts/co2/h2o/ch4/none"; N2O is the
#: 4th gas).
TESTED = ("u", "v", "w", "ts", "co2", "h2o", "ch4", "n2o")
_DS_NAME = {"u": "uv", "v": "uv", "w": "w", "ts": "t", "co2": "co2", "h2o": "h2o", "ch4": "ch4", "n2o": "n2o"}


def _put(out: dict[str, float], name: str, flag: int | None) -> None:
    if flag is not None:
        out[name] = float(flag)


def absolute_limit_flags(data: dict[str, Array], measure_types: dict[str, str], settings: ProcessingSettings
                         ) -> dict[str, float]:
    """Absolute-limits test (Vickers & Mahrt 1997, §4c; EddyPro `test_al`): ``<VAR>_VM97_AL_HF`` = 1 when any
    valid record lies outside :func:`absolute_limit_ranges`. A flag only; the records are removed by
    :func:`filter_records` (``filter_al``)."""
    out: dict[str, float] = {}
    for name, (lo, hi) in absolute_limit_ranges(measure_types, settings).items():
        if name in data:
            x = data[name][np.isfinite(data[name])]
            _put(out, f"{name.upper()}_VM97_AL_HF", int(bool(((x < lo) | (x > hi)).any())) if x.size else None)
    return out


def statistical_flags(data: dict[str, Array], fs: float, settings: ProcessingSettings) -> dict[str, float]:
    """The selected statistical tests of :mod:`gateway.flux.ec.vm97` on the period's series (Vickers & Mahrt 1997;
    EddyPro `test_ar/do/sk/ds/aa/ns`): ``<VAR>_VM97_AR_HF``, ``_DO_HF``, ``_SK_HF``/``_SK_SF``, ``_DS_HF``/``_DS_SF``
    per series of :data:`TESTED`, ``VM97_AOA_HF`` and ``VM97_NSHW_HF``; 0 passed, 1 failed, absent when not
    selected or not computable. Flags only: ``data`` is not changed. ``fs`` in Hz; series in the engine's units."""
    from gateway.flux.ec import vm97

    t = settings.statistical_tests
    out: dict[str, float] = {}
    sk_limits = vm97.SkewKurtLimits(**{k: getattr(t, k) for k in vm97.SkewKurtLimits.__dataclass_fields__})
    for name in TESTED:
        if name not in data:
            continue
        x, key = data[name], name.upper()
        if t.test_ar and t.test_do:  # one binning of the windows for both
            ar, do = vm97.resolution_and_dropouts(x, ar_lim=t.ar_lim, ar_bins=t.ar_bins, ar_hf_lim=t.ar_hf_lim,
                                                  do_extlim_dw=t.do_extlim_dw, do_hf1_lim=t.do_hf1_lim,
                                                  do_hf2_lim=t.do_hf2_lim)
            _put(out, f"{key}_VM97_AR_HF", ar)
            _put(out, f"{key}_VM97_DO_HF", do)
        elif t.test_ar:
            _put(out, f"{key}_VM97_AR_HF", vm97.amplitude_resolution(x, ar_lim=t.ar_lim, ar_bins=t.ar_bins,
                                                                      ar_hf_lim=t.ar_hf_lim))
        elif t.test_do:
            _put(out, f"{key}_VM97_DO_HF", vm97.dropouts(x, do_extlim_dw=t.do_extlim_dw, do_hf1_lim=t.do_hf1_lim,
                                                         do_hf2_lim=t.do_hf2_lim, ar_lim=t.ar_lim, ar_bins=t.ar_bins))
        if t.test_sk:
            hard, soft = vm97.skewness_kurtosis(x, sk_limits)
            _put(out, f"{key}_VM97_SK_HF", hard)
            _put(out, f"{key}_VM97_SK_SF", soft)
        if t.test_ds:
            ds = _DS_NAME[name]
            hard, soft = vm97.discontinuities(x, fs, mean_hf=getattr(t, f"ds_hf_{ds}"),
                                              mean_sf=getattr(t, f"ds_sf_{ds}"), var_hf=t.ds_hf_var,
                                              var_sf=t.ds_sf_var)
            _put(out, f"{key}_VM97_DS_HF", hard)
            _put(out, f"{key}_VM97_DS_SF", soft)
    if t.test_aa:
        _put(out, "VM97_AOA_HF", vm97.angle_of_attack(data["u"], data["v"], data["w"], aa_min=t.aa_min,
                                                      aa_max=t.aa_max, aa_lim=t.aa_lim))
    if t.test_ns:
        _put(out, "VM97_NSHW_HF", vm97.horizontal_wind_steadiness(data["u"], data["v"], fs, ns_hf_lim=t.ns_hf_lim)[0])
    return out


def time_lag_flags(w: Array, data: dict[str, Array], gases: list[str], metadata: SiteMetadata,
                   settings: ProcessingSettings) -> dict[str, float]:
    """Time-lag test (EddyPro `test_tl`, :func:`gateway.flux.ec.vm97.time_lag`) of each usable gas: the covariance
    with the rotated ``w`` at the expected lag ``tl_def_<gas>`` (s) against the largest in the column's lag window;
    ``<GAS>_VM97_TL_HF`` / ``_SF``. Flags only."""
    from gateway.flux.ec import vm97

    t = settings.statistical_tests
    out: dict[str, float] = {}
    if not t.test_tl:
        return out
    fs = metadata.acquisition_frequency
    for g in gases:
        col = metadata.file.column(g)
        lo, hi = (col.min_timelag, col.max_timelag) if col is not None else (0.0, 0.0)
        hard, soft = vm97.time_lag(w, data[g], fs, expected_s=getattr(t, f"tl_def_{g}"), min_s=lo, max_s=hi,
                                   tl_hf_lim=t.tl_hf_lim, tl_sf_lim=t.tl_sf_lim)
        _put(out, f"{g.upper()}_VM97_TL_HF", hard)
        _put(out, f"{g.upper()}_VM97_TL_SF", soft)
    return out


def correct_sonic(data: dict[str, Array], metadata: SiteMetadata, settings: ProcessingSettings) -> list[str]:
    """Zero-wind offsets subtracted from u, v, w and, with ``cross_wind``, Ts corrected for the crosswind (Liu et
    al. 2001) — :mod:`gateway.flux.ec.sonic`; in place. Returns the reasons to report."""
    reasons: list[str] = []
    offsets = (settings.u_offset, settings.v_offset, settings.w_offset)
    if any(offsets):
        data["u"], data["v"], data["w"] = sonic.subtract_offsets(data["u"], data["v"], data["w"], offsets)
    if settings.cross_wind:
        angle = sonic.path_elevation_deg(metadata.sonic.model, metadata.sonic.path_elevation_deg)
        assert angle is not None  # check_configuration refuses otherwise
        factors = sonic.crosswind_factors(sonic.symmetric_paths(angle))
        data["ts"] = sonic.crosswind_corrected_ts(data["ts"], data["u"], data["v"], factors)
        reasons.append(f"sonic temperature corrected for the crosswind (paths at {angle:g} deg: "
                       f"A = B = {factors.a:.4g})")
    return reasons


def cell_conditions(data: dict[str, Array]) -> dict[str, float]:
    """Mean temperature (°C) and pressure (kPa) in a closed-path analyser's cell, ``T_CELL`` and ``PA_CELL``, from
    the raw records (``cell_t``, else the mean of ``int_t_1`` and ``int_t_2``, in K; ``int_p`` in Pa); a missing
    one is left out. EddyPro's fluxnet file carries both, and its closed-path molar densities are at these
    conditions (EddyPro 7 Help, "The full output file")."""
    out: dict[str, float] = {}
    cell_t = data.get("cell_t")
    if cell_t is None and "int_t_1" in data and "int_t_2" in data:
        cell_t = 0.5 * (data["int_t_1"] + data["int_t_2"])
    if cell_t is not None and np.isfinite(cell_t).any():
        out["T_CELL"] = float(np.nanmean(cell_t)) - 273.15
    cell_p = data.get("int_p")
    if cell_p is not None and np.isfinite(cell_p).any():
        out["PA_CELL"] = float(np.nanmean(cell_p)) / 1000.0
    return out


def dry_mole_fractions(data: dict[str, Array], measure_types: dict[str, str], closed_path: bool = False
                       ) -> tuple[dict[str, str], list[str]]:
    """Gas records of one analyser to dry mole fractions (mixing ratios) record by record, in place (Ibrom et al.
    2007, Agric. For. Meteorol. 147, 140, §2.2; Burba et al. 2012, Glob. Change Biol. 18, 385):

    * wet mole fractions: χ = x/(1 − x_v), x_v the H2O mole fraction (mol mol-1);
    * closed-path molar densities, with the cell temperature Tc (``cell_t``, else the mean of ``int_t_1`` and
      ``int_t_2``) and pressure Pc (``int_p``, else ``air_p``) of each record: n_air = Pc/(R·Tc),
      χ = ρ/(n_air − ρ_v), which removes every density effect inside the cell (no WPL terms are then needed).
      Without cell T and P the densities stay (their flux is then not computed: closed-path WPL with cell
      covariances is not available).

    Returns the measure types after conversion and the reasons."""
    from gateway.flux.ec.constants import R_GAS

    reasons: list[str] = []
    if measure_types.get("h2o") == "mole_fraction" and "h2o" in data:
        xv = data["h2o"] * 1e-3
        for gas in ("co2", *TRACE_GASES):
            if measure_types.get(gas) == "mole_fraction" and gas in data:
                data[gas] = data[gas] / (1.0 - xv)
        data["h2o"] = data["h2o"] / (1.0 - xv)
        reasons.append("mole fractions converted to mixing ratios record by record")
    types = {g: ("mixing_ratio" if measure_types.get(g) == "mole_fraction" else measure_types.get(g, ""))
             for g in GASES}
    densities = [g for g in GASES if types[g] == "molar_density" and g in data]
    if closed_path and densities:
        cell_t = data.get("cell_t")
        if cell_t is None and "int_t_1" in data and "int_t_2" in data:
            cell_t = 0.5 * (data["int_t_1"] + data["int_t_2"])
        cell_p = data.get("int_p", data.get("air_p"))
        if cell_t is None or cell_p is None:
            for g in densities:
                del data[g]
            reasons.append(f"closed-path molar densities ({', '.join(densities)}) without the cell temperature "
                           "(cell_t or int_t_1/int_t_2) and pressure (int_p or air_p): their fluxes are not "
                           "computed; map those columns or record mixing ratios")
        else:
            n_air = cell_p / (R_GAS * cell_t)                       # mol m-3 in the cell
            n_v = data["h2o"] * 1e-3 if "h2o" in densities else 0.0  # mol m-3
            n_dry = n_air - n_v
            scale = {"co2": 1e3, "h2o": 1.0}  # mmol m-3 / mol m-3 -> µmol mol-1 (CO2), mmol mol-1 (H2O)
            for g in densities:
                data[g] = data[g] * scale[g] / n_dry
                types[g] = "mixing_ratio"
            reasons.append("closed-path molar densities converted to mixing ratios record by record with the cell "
                           "temperature and pressure")
    return types, reasons


def usable_gases(data: dict[str, Array], expected: int, max_lack_pct: float) -> tuple[list[str], list[str]]:
    """The gases with at most ``max_lack_pct`` % of ``expected`` records missing, and the reasons for the others.
    Raises :class:`PeriodFailed` when u, v, w or Ts miss more (EddyPro's max_lack rule)."""
    max_missing = max_lack_pct / 100.0 * expected
    for name in WIND:
        missing = expected - int(np.isfinite(data[name]).sum())
        if missing > max_missing:
            raise PeriodFailed(f"{name}: {missing} of {expected} records missing (more than max_lack "
                               f"{max_lack_pct:g} %)")
    gases: list[str] = []
    reasons: list[str] = []
    for g in GASES:
        if g not in data:
            continue
        missing = expected - int(np.isfinite(data[g]).sum())
        if missing > max_missing:
            reasons.append(f"{g}: {missing} of {expected} records missing (more than max_lack {max_lack_pct:g} %)"
                           f"; its flux is not computed")
        else:
            gases.append(g)
    return gases, reasons


def sonic_frame_means(period: RawPeriod, settings: ProcessingSettings) -> tuple[float, float, float] | None:
    """Mean u, v, w (m s-1) of one period in the sonic frame after steps 1-3 (filtering, despiking, sonic
    corrections): the input of the engine's own planar fit (:func:`fit_planar_fit`). None when the period is not
    usable (too few records, max_lack)."""
    md = period.metadata
    expected = period.expected_records or round(settings.avrg_len * 60.0 * md.acquisition_frequency)
    n = period.n_records
    if n < 2 or n < expected * (1.0 - settings.max_lack / 100.0) or any(k not in period.data for k in WIND):
        return None
    data = working_copy(period, settings)
    filter_records(data, period.measure_types, settings)
    remove_spikes(data, md.acquisition_frequency, settings)
    correct_sonic(data, md, settings)
    try:
        usable_gases(data, expected, settings.max_lack)
    except PeriodFailed:
        return None
    return float(np.nanmean(data["u"])), float(np.nanmean(data["v"])), float(np.nanmean(data["w"]))


def fit_planar_fit(means: list[tuple[float, float, float]], settings: ProcessingSettings) -> tuple[PlanarFitSetup,
                                                                                                       list[str]]:
    """The engine's own sectorwise planar fit over many periods' sonic-frame mean winds (Wilczak et al. 2001;
    :func:`gateway.flux.ec.planarfit.fit_sectors` with the pf_* settings; a plane through the origin for
    ``planar_fit_no_bias``). Returns the setup for :func:`process_period` and notes on sectors that fell back to the
    plane of all periods. ValueError when too few periods qualify."""
    from gateway.flux.ec import planarfit

    arr = np.asarray(means, dtype=np.float64).reshape(-1, 3)
    fit = planarfit.fit_sectors(arr[:, 0], arr[:, 1], arr[:, 2], n_sectors=settings.pf_sectors,
                                north_offset_deg=settings.pf_north_offset,
                                min_periods_per_sector=settings.pf_min_num_per_sec, w_max=settings.pf_w_max,
                                u_min=settings.pf_u_min, fit_b0=settings.rot_meth != Rotation.PLANAR_FIT_NO_BIAS)
    notes = [f"planar fit over {fit.periods_used} periods; sectors {', '.join(str(k + 1) for k in fit.fallback)} "
             f"had fewer than {settings.pf_min_num_per_sec} and use the plane of all periods"] if fit.fallback else []
    return PlanarFitSetup(fit.sectors, subtract_b0=settings.pf_subtract_b0), notes


def period_spectra(period: RawPeriod, settings: ProcessingSettings, *, n_bins: int = 50) -> Any:
    """One period's contribution to the in-situ spectral assessment (:mod:`gateway.flux.ec.insitu`, Ibrom et al.
    2007): after steps 1-4, the binned ratio of each gas's normalised power spectrum to the sonic temperature's,
    the period's RH (%) and month, and the attenuation of w'Ts' by IIR filters (w after double rotation) for the
    correction-factor model. Every gas is marked usable; the caller applies its flux thresholds. None when the
    period is not usable."""
    from gateway.flux.ec import insitu

    md = period.metadata
    fs = md.acquisition_frequency
    expected = period.expected_records or round(settings.avrg_len * 60.0 * fs)
    n = period.n_records
    if n < 2 or n < expected * (1.0 - settings.max_lack / 100.0) or any(k not in period.data for k in WIND):
        return None
    data = working_copy(period, settings)
    filter_records(data, period.measure_types, settings)
    remove_spikes(data, fs, settings)
    correct_sonic(data, md, settings)
    mtypes, _ = dry_mole_fractions(data, period.measure_types, md.analyzer is not None and
                                   md.analyzer.path_type == "closed")
    try:
        gases, _ = usable_gases(data, expected, settings.max_lack)
    except PeriodFailed:
        return None
    edges = insitu.frequency_bins(fs, n, n_bins)
    ratio = {g: insitu.binned_ratio(data["ts"], data[g], fs, edges, *_assessment_band(g, settings)) for g in gases}
    try:
        air, _ = period_air_properties(data["ts"], {g: data[g] for g in gases}, mtypes, data.get("air_p"),
                                       md.altitude)
    except PeriodFailed:
        return None
    rot = rotation.double_rotation(data["u"], data["v"], data["w"])
    cov_wts = qc.pair_cov(rot.w, data["ts"])
    return insitu.PeriodSpectra(f=insitu.bin_centres(edges), ratio=ratio, rh=air.rh, month=period.end.month,
                                usable=dict.fromkeys(gases, True), u=float(np.nanmean(rot.u)),
                                unstable=cov_wts >= 0, ts_attenuation=insitu.ts_flux_attenuation(rot.w, data["ts"],
                                                                                                  fs))


def _assessment_band(gas: str, settings: ProcessingSettings) -> tuple[float, float, float | None]:
    """Fitting range and noise frequency of a gas's in-situ assessment (CH4 and N2O take CO2's)."""
    key = "h2o" if gas == "h2o" else "co2"
    return (getattr(settings, f"sa_fmin_{key}"), getattr(settings, f"sa_fmax_{key}"),
            getattr(settings, f"sa_hfn_{key}_fmin"))


def usable_for_assessment(values: dict[str, float], settings: ProcessingSettings) -> dict[str, bool]:
    """Whether a period's spectra may enter the in-situ assessment, per gas (EddyPro's sa_min_*/sa_max_*
    selection on the uncorrected period's u*, |H|, |LE| and |FC|, with the stable or unstable minimum by the sign
    of H). ``values``: the period's result values."""
    unstable = values.get("H", math.nan) >= 0
    tag = "un" if unstable else "st"
    ustar, h = values.get("USTAR", math.nan), abs(values.get("H", math.nan))
    base = (getattr(settings, f"sa_min_{tag}_ustar") <= ustar <= settings.sa_max_ustar
            and getattr(settings, f"sa_min_{tag}_h") <= h <= settings.sa_max_h)
    le, fc = abs(values.get("LE", math.nan)), abs(values.get("FC", math.nan))
    gas_ok = base and getattr(settings, f"sa_min_{tag}_co2") <= fc <= settings.sa_max_co2
    return {"h2o": base and getattr(settings, f"sa_min_{tag}_le") <= le <= settings.sa_max_le, "co2": gas_ok,
            "ch4": base, "n2o": base}


#: The quality-flag column of each gas's flux (EddyPro's qc of the flux whose spectra are assessed).
_FLUX_FLAG = {"co2": "FC_SSITC_TEST", "h2o": "LE_SSITC_TEST", "ch4": "FCH4_SSITC_TEST", "n2o": "FN2O_SSITC_TEST"}


def flagged_for_assessment(values: dict[str, float], gas: str, settings: ProcessingSettings) -> tuple[bool, bool]:
    """Whether a period's spectra of ``gas`` are to be left out of the in-situ assessment for its flags:
    (hard statistical flag, Foken flag). With ``sa_use_vm_flags``: a hard flag (``*_VM97_*_HF`` = 1) of a selected
    test on u, v, w, Ts or the gas itself, or of the angle-of-attack or horizontal-wind test (soft flags and other
    gases' flags do not count). With ``sa_use_foken_low`` / ``sa_use_foken_mid``: the gas flux's flag in the low
    (Mauder & Foken 2004 flag 2) / medium (flag 1) class; a Foken et al. (2004) 1-9 flag is grouped as Mauder &
    Foken do (1-2 high, 3-5 medium, 6-9 low). A flag that is absent (test not run or not computable) excludes
    nothing. ``values``: the period's result values."""
    vm97 = False
    if settings.sa_use_vm_flags:
        own = ("U_VM97_", "V_VM97_", "W_VM97_", "TS_VM97_", f"{gas.upper()}_VM97_")
        vm97 = any(x == 1.0 for k, x in values.items() if k.endswith("_HF") and (
            k.startswith(own) or k in ("VM97_AOA_HF", "VM97_NSHW_HF")))
    foken = False
    flag = values.get(_FLUX_FLAG[gas], math.nan)
    if (settings.sa_use_foken_low or settings.sa_use_foken_mid) and math.isfinite(flag):
        grade = int(flag) if settings.qc_meth != QcMethod.FOKEN_2004 else qc.mauder_foken_flag(int(flag), int(flag))
        foken = (settings.sa_use_foken_low and grade == 2) or (settings.sa_use_foken_mid and grade == 1)
    return vm97, foken


def in_situ_assessment(periods: list[RawPeriod], settings: ProcessingSettings,
                       planar_fit: PlanarFitSetup | None = None,
                       time_lags: timelag.LagOptimisation | None = None) -> Any:
    """The in-situ spectral assessment over many periods (:func:`gateway.flux.ec.insitu.assess`, Ibrom et al. 2007):
    each period's spectral ratios (:func:`period_spectra`), selected by its uncorrected fluxes
    (:func:`usable_for_assessment`; periods ending in sa_fit_from..sa_fit_to) and, when asked, by its flags
    (:func:`flagged_for_assessment`: the inner pass then runs the selected statistical tests, and computes Mauder &
    Foken flags when ``qc_meth`` is none). The result's ``selection`` counts, per gas, the periods with spectra and
    why they were left out. ValueError when too few qualify."""
    from dataclasses import replace

    from gateway.flux.ec import insitu

    foken = settings.sa_use_foken_low or settings.sa_use_foken_mid
    plain = settings.model_copy(update={
        "hf_meth": SpectralCorrection.NONE, "lf_meth": LowFrequencyCorrection.NONE, "random_error": "none",
        "foot_meth": "none",
        "statistical_tests": settings.statistical_tests if settings.sa_use_vm_flags else StatisticalTests(),
        "qc_meth": QcMethod.MAUDER_FOKEN_2004 if foken and settings.qc_meth == QcMethod.NONE else settings.qc_meth})
    spectra = []
    selection: dict[str, dict[str, int]] = {}
    for p in periods:
        if (settings.sa_fit_from is not None and p.end <= settings.sa_fit_from) or (
                settings.sa_fit_to is not None and p.end > settings.sa_fit_to):
            continue
        sp = period_spectra(p, settings)
        if sp is None:
            continue
        values = process_period(p, plain, planar_fit=planar_fit, time_lags=time_lags).values
        ok = usable_for_assessment(values, settings)
        usable: dict[str, bool] = {}
        for g in sp.ratio:
            vm97, low_quality = flagged_for_assessment(values, g, plain)
            usable[g] = ok.get(g, False) and not vm97 and not low_quality
            count = selection.setdefault(g, dict.fromkeys(("periods", "flux", "vm97", "foken", "used"), 0))
            for key, hit in (("periods", True), ("flux", not ok.get(g, False)), ("vm97", vm97),
                             ("foken", low_quality), ("used", usable[g])):
                count[key] += int(hit)
        spectra.append(replace(sp, usable=usable))
    ranges = {g: _assessment_band(g, settings)[:2] for g in GASES}
    return replace(insitu.assess(spectra, fit_range=ranges, min_spectra=settings.sa_min_smpl), selection=selection)


def optimise_time_lags(periods: list[RawPeriod], settings: ProcessingSettings,
                       planar_fit: PlanarFitSetup | None = None) -> timelag.LagOptimisation:
    """EddyPro's automatic time-lag optimisation over many periods (:func:`gateway.flux.ec.timelag.optimise_lags`):
    each period's lags by covariance maximisation in the wide search window (:func:`search_window`), kept for the
    gases whose flux is large enough (|FC| ≥ to_co2_min_flux, |LE| ≥ to_le_min_flux) and not on the window's edge;
    windows of median ± to_pg_range·MAD, H2O per RH class. ValueError when no gas has a usable lag."""
    fs_lags: list[dict[str, float]] = []
    rhs: list[float] = []
    for p in periods:
        if (settings.to_fit_from is not None and p.end <= settings.to_fit_from) or (
                settings.to_fit_to is not None and p.end > settings.to_fit_to):
            continue
        md = p.metadata
        cols = [c.model_copy(update=dict(zip(("min_timelag", "max_timelag"), search_window(c.variable, md, settings),
                                              strict=True)))
                if c.variable in GASES else c for c in md.file.columns]
        wide = md.model_copy(update={"file": md.file.model_copy(update={"columns": cols})})
        search = settings.model_copy(update={"tlag_meth": TimeLag.MAXCOV, "hf_meth": SpectralCorrection.NONE,
                                             "lf_meth": LowFrequencyCorrection.NONE, "random_error": "none",
                                             "foot_meth": "none", "statistical_tests": StatisticalTests()})
        r = process_period(RawPeriod(p.data, wide, p.start, p.end, p.measure_types, p.issues, p.source,
                                     p.expected_records), search, planar_fit=planar_fit)
        if r.status == "failed":
            continue
        row: dict[str, float] = {}
        for g, flux, minimum in (("co2", "FC", settings.to_co2_min_flux), ("h2o", "LE", settings.to_le_min_flux),
                                 ("ch4", "FCH4", settings.to_ch4_min_flux * 1e3),
                                 ("n2o", "FN2O", settings.to_n2o_min_flux * 1e3)):
            lag = r.get(f"{g.upper()}_TLAG")
            lo, hi = search_window(g, md, settings)
            if math.isfinite(lag) and abs(r.get(flux)) >= minimum and lo < lag < hi:
                row[g] = lag
        fs_lags.append(row)
        rhs.append(r.get("RH"))
    result = timelag.optimise_lags(fs_lags, rhs, pg_range=settings.to_pg_range, h2o_classes=settings.to_h2o_nclass)
    if not result.gases:
        raise ValueError(f"time-lag optimisation: no period with a large enough flux and a lag inside the window "
                         f"(of {len(fs_lags)} periods)")
    return result


# ---------------------------------------------------------------------------------------------------------------
# 6-10: rotation, lags, air, fluctuations, covariances
# ---------------------------------------------------------------------------------------------------------------

def tilt_correction(u: Array, v: Array, w: Array, settings: ProcessingSettings,
                    planar_fit: PlanarFitSetup | None) -> rotation.Rotated:
    """Rotate the sonic-frame wind: double rotation (Wilczak et al. 2001, eqs. 22-23), triple rotation (eq. 24), a
    planar fit per wind sector (eqs. 36-45, :mod:`gateway.flux.ec.planarfit`) or none. m s-1 in and out."""
    if settings.rot_meth == Rotation.DOUBLE:
        return rotation.double_rotation(u, v, w)
    if settings.rot_meth == Rotation.TRIPLE:
        return rotation.triple_rotation(u, v, w)
    if settings.rot_meth == Rotation.NONE:
        return rotation.Rotated(u, v, w, math.nan, math.nan)
    if planar_fit is None:
        raise ConfigurationError("planar fit selected but no planar-fit sectors were given to process_period")
    from gateway.flux.ec import planarfit

    sector = planarfit.select_sector(planar_fit.sectors, float(np.nanmean(u)), float(np.nanmean(v)))
    pf = planarfit.apply_planar_fit(u, v, w, sector.coefficients, subtract_b0=planar_fit.subtract_b0)
    return rotation.Rotated(pf.u, pf.v, pf.w, pf.yaw_deg, math.nan)


@dataclass(frozen=True)
class Lagged:
    """Each gas series shifted by its lag (NaN-padded), the lag in s and whether the default was used."""

    series: dict[str, Array]
    seconds: dict[str, float]
    used_default: dict[str, bool]


def search_window(gas: str, metadata: SiteMetadata, settings: ProcessingSettings) -> tuple[float, float]:
    """The wide window (s) the automatic optimisation searches first: to_<gas>_min_lag/max_lag, else the
    column's min_timelag/max_timelag."""
    col = metadata.file.column(gas)
    lo, hi = getattr(settings, f"to_{gas}_min_lag", None), getattr(settings, f"to_{gas}_max_lag", None)
    return (lo if lo is not None else col.min_timelag if col is not None else 0.0,
            hi if hi is not None else col.max_timelag if col is not None else 0.0)


def compensate_time_lags(w: Array, data: dict[str, Array], gases: list[str], metadata: SiteMetadata,
                         settings: ProcessingSettings, time_lags: timelag.LagOptimisation | None = None,
                         rh: float = math.nan) -> Lagged:
    """Align each gas with w: covariance maximisation in the column's window pairing ``gas[i+k]`` with ``w[i]``
    (Fan et al. 1990; with default: a maximum on the window edge gives the default lag), a constant lag, or none;
    with automatic optimisation, covariance maximisation with default in the optimised window of the gas (H2O of
    the period's RH class). The shifted series is padded with NaN (EDDYPRO-REFERENCE.md). ``w`` in m s-1 after
    rotation."""
    fs = metadata.acquisition_frequency
    series: dict[str, Array] = {}
    seconds: dict[str, float] = {}
    used: dict[str, bool] = {}
    for g in gases:
        col = metadata.file.column(g)
        window = time_lags.window(g, rh) if time_lags is not None else None
        if settings.tlag_meth == TimeLag.NONE:
            k, used_default = 0, False
        elif settings.tlag_meth == TimeLag.CONSTANT:
            k, used_default = round(default_lag(g, metadata, settings) * fs), True
        elif settings.tlag_meth == TimeLag.AUTOMATIC:
            if window is None:
                raise ConfigurationError("tlag_meth = automatic_optimization: no optimised lag window given to "
                                         f"process_period for {g} (engine.optimise_time_lags)")
            lo = min(window.min_s, window.nominal_s - 1.0 / fs)  # at least one record either side
            hi = max(window.max_s, window.nominal_s + 1.0 / fs)
            lr = timelag.covariance_maximization(w, data[g], fs, lo, hi, window.nominal_s)
            k, used_default = lr.records, lr.used_default
        else:
            assert col is not None
            dflt = default_lag(g, metadata, settings) if settings.tlag_meth == TimeLag.MAXCOV_DEFAULT else None
            lr = timelag.covariance_maximization(w, data[g], fs, col.min_timelag, col.max_timelag, dflt)
            k, used_default = lr.records, lr.used_default
        series[g] = timelag.shift(data[g], k) if k else data[g]
        seconds[g] = k / fs
        used[g] = used_default
    return Lagged(series, seconds, used)


def period_air_properties(ts: Array, lagged: dict[str, Array], measure_types: dict[str, str], air_p: Array | None,
                          altitude_m: float) -> tuple[AirProperties, float]:
    """Air properties from the period means (:func:`gateway.flux.ec.airprops.air_properties`: Va from the mean
    *sonic* temperature, Ta = T̄s/(1 + 0.51·Q)), and the pressure used, Pa: the ``air_p`` column's mean, else
    101300·exp(−z/8200)."""
    ts_mean = float(np.nanmean(ts))
    p = float(np.nanmean(air_p)) if air_p is not None and np.isfinite(air_p).any() else \
        airprops.pressure_from_altitude(altitude_m)
    # Means no air has: a unit declared wrongly in the metadata (Ts in °C read as K, pressure in hPa as kPa) or a
    # broken channel. Every flux would be computed from them without a word, or the equations break down.
    if not TS_MEAN_RANGE_K[0] <= ts_mean <= TS_MEAN_RANGE_K[1]:
        raise PeriodFailed(f"mean sonic temperature {ts_mean:.2f} K outside {TS_MEAN_RANGE_K[0]:g}.."
                           f"{TS_MEAN_RANGE_K[1]:g} K: check the Ts column's unit in the metadata (K or °C)")
    if not PRESSURE_RANGE_PA[0] <= p <= PRESSURE_RANGE_PA[1]:
        raise PeriodFailed(f"mean air pressure {p:.0f} Pa outside {PRESSURE_RANGE_PA[0]:g}..{PRESSURE_RANGE_PA[1]:g} "
                           "Pa: check the pressure column's unit in the metadata (Pa, hPa or kPa)")
    if "h2o" not in lagged:
        return airprops.air_properties(ts_mean, p), p
    h2o_mean = float(np.nanmean(lagged["h2o"]))
    molar_density = measure_types["h2o"] == "molar_density"
    low, high = H2O_MEAN_RANGE["molar_density" if molar_density else "mixing_ratio"]
    if not low <= h2o_mean <= high:
        unit = "mmol m-3" if molar_density else "mmol mol-1"
        raise PeriodFailed(f"mean H2O {h2o_mean:.4g} {unit} outside {low:g}..{high:g} {unit}: check the H2O "
                           "column's unit and measure type in the metadata")
    if molar_density:
        return airprops.air_properties(ts_mean, p, h2o_molar_density=h2o_mean * 1e-3), p
    return airprops.air_properties(ts_mean, p, h2o_mole_fraction=h2o_mean / (1000.0 + h2o_mean)), p


def fluctuations(x: Array, settings: ProcessingSettings, fs: float) -> Array:
    """Detrended series (block average returns ``x`` itself: the covariances remove the mean), see
    :mod:`gateway.flux.ec.detrend` (Gash & Culf 1996; McMillen 1988); ``timeconst`` in s."""
    if settings.detrend_meth == Detrending.BLOCK_AVERAGE:
        return x
    window = max(2, round(settings.timeconst * fs))
    if settings.detrend_meth == Detrending.LINEAR:
        return detrend.linear(x, window)
    if settings.detrend_meth == Detrending.RUNNING_MEAN:
        return detrend.running_mean(x, window)
    return detrend.exponential_running_mean(x, settings.timeconst, fs)


@dataclass
class Turbulence:
    """Rotated series, their fluctuations, covariances (population, over valid pairs) and moments."""

    u: Array
    v: Array
    w: Array
    ts: Array
    gases: dict[str, Array]
    uf: Array
    vf: Array
    wf: Array
    tsf: Array
    gf: dict[str, Array]
    cov_uw: float
    cov_vw: float
    cov_wts: float
    cov_wg: dict[str, float]
    values: dict[str, float] = field(default_factory=dict)


def covariances_and_moments(rot: rotation.Rotated, ts: Array, lagged: dict[str, Array],
                            settings: ProcessingSettings, fs: float) -> Turbulence:
    """Fluctuations (:func:`fluctuations`), population covariances over the valid pairs with their own means
    (EDDYPRO-REFERENCE.md), and variance, σ, skewness, kurtosis and quartiles of each series (:func:`gateway.flux.ec
    .stats.moments`, :func:`quartiles`; Ts in °C). Values: covariances in the product of the units, variances in the
    unit squared."""
    uf, vf, wf, tsf = (fluctuations(x, settings, fs) for x in (rot.u, rot.v, rot.w, ts))
    gf = {g: fluctuations(lagged[g], settings, fs) for g in lagged}
    t = Turbulence(rot.u, rot.v, rot.w, ts, lagged, uf, vf, wf, tsf, gf, qc.pair_cov(uf, wf), qc.pair_cov(vf, wf),
                   qc.pair_cov(wf, tsf), {g: qc.pair_cov(wf, gf[g]) for g in gf})
    v = t.values
    v["U_W_COV"], v["V_W_COV"], v["W_T_SONIC_COV"] = t.cov_uw, t.cov_vw, t.cov_wts
    for name, x, xf in (("U", rot.u, uf), ("V", rot.v, vf), ("W", rot.w, wf), ("T_SONIC", ts, tsf)):
        m = moments(x, None if xf is x else xf)
        v[f"{name}_VAR"] = m.variance
        v[f"{name}_SIGMA"] = math.sqrt(m.variance)
        v[f"{name}_SKEW"], v[f"{name}_KURT"] = m.skewness, m.kurtosis
        v.update(quartiles(name, x - 273.15 if name == "T_SONIC" else x))
    for g in gf:
        m = moments(lagged[g], None if gf[g] is lagged[g] else gf[g])
        G = g.upper()
        v[f"W_{G}_COV"] = t.cov_wg[g]
        v[f"{G}_VAR"], v[f"{G}_SIGMA"] = m.variance, math.sqrt(m.variance)
        v[f"{G}_SKEW"], v[f"{G}_KURT"] = m.skewness, m.kurtosis
        v.update(quartiles(G, lagged[g]))
    if "co2" in gf and "h2o" in gf:
        v["CO2_H2O_COV"] = qc.pair_cov(gf["co2"], gf["h2o"])
    return t


def quartiles(name: str, x: Array) -> dict[str, float]:
    """``<NAME>_P25``, ``<NAME>_MEDIAN``, ``<NAME>_P75`` of a series' valid records (linear interpolation between
    order statistics); none without valid records."""
    ok = x[np.isfinite(x)]
    if ok.size == 0:
        return {}
    p25, p50, p75 = (float(q) for q in np.percentile(ok, (25.0, 50.0, 75.0)))
    return {f"{name}_P25": p25, f"{name}_MEDIAN": p50, f"{name}_P75": p75}


# ---------------------------------------------------------------------------------------------------------------
# 11-13: fluxes
# ---------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Level0:
    """Uncorrected fluxes (EddyPro's level 0, its ``un_*``): τ0 in kg m-1 s-2 with the sign of u'w', u*0 in m s-1,
    H0 = ρcp·w'Ts' in W m-2, the gas fluxes as measured in mol m-2 s-1 (w'χ'/Vd for mixing ratios, w'ρ' for molar
    densities; NaN when not computed). ``open_path`` when a gas is a molar density (WPL applies)."""

    tau: float
    ustar: float
    h: float
    gas: dict[str, float]
    open_path: bool


def level0_fluxes(t: Turbulence, air: AirProperties, measure_types: dict[str, str]) -> Level0:
    """u* = (u'w'² + v'w'²)^¼ (Weber 1999), τ = ρa·u*² with the sign of u'w', H0 = ρcp·w'Ts', and each gas flux in
    mol m-2 s-1: w'χ'/Vd for dry mole fractions (Webb et al. 1980: no density terms), w'ρ' for molar densities."""
    ustar = fluxes.friction_velocity(t.cov_uw, t.cov_vw)
    gas: dict[str, float] = {}
    scale = {"co2": 1e-6, "h2o": 1e-3, "ch4": 1e-6, "n2o": 1e-6}  # canonical fraction units to mol mol-1
    for g, cov in t.cov_wg.items():
        if measure_types[g] == "molar_density":
            gas[g] = cov * 1e-3  # mmol m-3 · m s-1 → mol m-2 s-1
        else:
            gas[g] = fluxes.flux_from_mixing_ratio(cov, air.vd) * scale[g]
    return Level0(fluxes.momentum_flux(air.rho_a, ustar, t.cov_uw), ustar,
                  fluxes.sensible_heat_uncorrected(air.rho_cp, t.cov_wts), gas,
                  any(measure_types[g] == "molar_density" for g in t.cov_wg))


@dataclass(frozen=True)
class Corrected:
    """Fully corrected fluxes (EddyPro level 3): τ, u*, H, and the gas fluxes in mol m-2 s-1."""

    tau: float
    ustar: float
    h: float
    gas: dict[str, float]


def corrected_fluxes(l0: Level0, scf: dict[str, float], air: AirProperties, cov_wts: float, lagged_means:
                     dict[str, float], measure_types: dict[str, str], wpl: bool) -> Corrected:
    """EddyPro's flux levels (EddyPro 7 Help, "Calculating corrected fluxes"; docs/flux-ec.md "EddyPro conventions"):

    * H: humidity correction of the sonic temperature (van Dijk et al. 2004, eq. 3.53) with the *uncorrected*
      water-vapour flux E0 (kg m-2 s-1), then the spectral factor: H = [ρcp·w'Ts'(1 − 0.51·Q) − ρcp·0.51·T̄s·E0/ρa]
      ·SCF_H — EddyPro's H_STAGE2·H_SCF of run V, and its H is the same with WPL on and off;
    * τ = τ0·SCF_τ, u* = u*0·√SCF_τ;
    * mixing ratios: F = F0·SCF;
    * molar densities (open path): F1 = F0·SCF, then Webb et al. (1980) eqs. 25 and 24 with that H:
      E = (1 + n_v/n_d)(E1 + n_v·w'T'/T̄a), Fc = Fc1 + (c̄/n_d)·E1 + (1 + n_v/n_d)·c̄·w'T'/T̄a, w'T' = H/ρcp
      (:func:`gateway.flux.ec.fluxes.wpl_open_path`), when ``wpl``.

    ``scf`` maps "tau", "h" and the gas names to factors (1 when not corrected); ``lagged_means`` the gases' means in
    their canonical units (mmol m-3 for densities)."""
    e0_kg = l0.gas["h2o"] * M_H2O if "h2o" in l0.gas and math.isfinite(l0.gas["h2o"]) else 0.0
    h_stage2 = fluxes.sensible_heat_van_dijk(air.rho_cp, cov_wts, air.ts, e0_kg, air.rho_a, air.q)
    h = h_stage2 * scf.get("h", 1.0)
    tau = l0.tau * scf.get("tau", 1.0)
    ustar = l0.ustar * math.sqrt(scf.get("tau", 1.0))
    gas1 = {g: f * scf.get(g, 1.0) for g, f in l0.gas.items()}
    out = dict(gas1)
    if wpl and l0.open_path:
        n_v = air.rho_w / M_H2O
        e1 = gas1.get("h2o", 0.0) if measure_types.get("h2o") == "molar_density" else 0.0
        wt = h / air.rho_cp
        if measure_types.get("h2o") == "molar_density" and "h2o" in gas1:
            out["h2o"] = fluxes.wpl_open_path(0.0, 0.0, e1, n_v, wt, air)[1]
        if measure_types.get("co2") == "molar_density" and "co2" in gas1:
            c_mean = lagged_means["co2"] * 1e-3
            out["co2"] = fluxes.wpl_open_path(gas1["co2"], c_mean, e1, n_v, wt, air)[0]
    return Corrected(tau, ustar, h, out)


def stability(ustar: float, h: float, air: AirProperties, p_pa: float, zm: float) -> tuple[float, float]:
    """Obukhov length L (m, with the potential temperature, :func:`gateway.flux.ec.fluxes.obukhov_length`) and
    z/L with zm = z − d in m."""
    lmo = fluxes.obukhov_length(ustar, h, air.rho_cp, air.ta, p_pa)
    return lmo, zm / lmo


def spectral_correction_factors(settings: ProcessingSettings, metadata: SiteMetadata, gases: list[str],
                                ws: float, zm: float, zl: float, rh: float, month: int,
                                spectral_assessment: Any) -> dict[str, float]:
    """Spectral correction factors for TAU ("tau"), H ("h") and each gas (:mod:`gateway.flux.ec.speccorr`):
    high-pass part (averaging/detrending, Moncrieff et al. 2004) when ``lf_meth`` is on, low-pass part (Moncrieff
    et al. 1997 analytic; Fratini et al. 2012 IIR factor for closed-path gases) by ``hf_meth``. Empty when neither
    is selected. ``ws`` mean wind (m s-1), ``zm`` = z − d (m), ``zl`` stability, ``rh`` (%)."""
    low_freq = settings.lf_meth != LowFrequencyCorrection.NONE
    if settings.hf_meth == SpectralCorrection.NONE and not low_freq:
        return {}
    from gateway.flux.ec import speccorr

    if settings.hf_meth in IN_SITU_METHODS and spectral_assessment is None:
        raise ConfigurationError(f"hf_meth = {settings.hf_meth.value}: no spectral assessment given to "
                                 "process_period (an EddyPro spectral_assessment.txt, or the in-situ one of "
                                 "gateway.flux.ec.insitu)")
    low_pass = settings.hf_meth != SpectralCorrection.NONE
    hpath, vpath = speccorr.sonic_paths_m(metadata.sonic.model, metadata.sonic.hpath_length,
                                          metadata.sonic.vpath_length) if low_pass else (math.nan, math.nan)
    ga = metadata.analyzer
    gas_par: dict[str, dict[str, float]] = {}
    for g in gases:
        if settings.hf_meth in IN_SITU_METHODS:
            fc_cut = (spectral_assessment.h2o_fc(rh) if g == "h2o"
                      else spectral_assessment.gas_monthly.get(g.upper(), [(math.nan, math.nan)] * 12)[month - 1][1])
            c1, c2 = spectral_assessment.cf_model.get("unstable" if zl <= 0 else "stable", (math.nan, math.nan))
            gas_par[g] = {"fc": fc_cut, "c1": c1, "c2": c2}
        elif ga is not None:
            sep = math.hypot(ga.northward_separation, ga.eastward_separation) / 100.0
            gas_par[g] = ({"separation_m": sep, "tube_length_m": ga.tube_length / 100.0,
                           "tube_radius_m": ga.tube_diameter / 2000.0, "flow_lpm": ga.tube_flowrate}
                          if ga.path_type == "closed" else {"separation_m": sep})
        else:
            gas_par[g] = {}
    sf = speccorr.correction_factors(
        method=settings.hf_meth.value, u=ws, zm=zm, zl=zl, period_s=settings.avrg_len * 60.0,
        detrend=settings.detrend_meth.value, timeconst_s=settings.timeconst, sonic_hpath_m=hpath,
        sonic_vpath_m=vpath, gases=gas_par, high_pass=low_freq, low_pass=low_pass)
    return {"tau": sf.tau, "h": sf.h, **sf.gases}


# ---------------------------------------------------------------------------------------------------------------
# 14-15: quality, uncertainty, footprint
# ---------------------------------------------------------------------------------------------------------------

def quality_flags(t: Turbulence, gases: list[str], zl: float, ustar: float, h: float, rho_cp: float,
                  latitude: float, settings: ProcessingSettings) -> dict[str, float]:
    """Steady-state test on the rotated, lag-compensated series with sub-period means (not the detrended ones:
    EddyPro's R3 deviations equal R1's), ITC of σu/u*, σw/u*, σT/|T*| (Foken et al. 2004, with Thomas & Foken 2002
    in near-neutral), combined into Mauder & Foken (2004) 0/1/2 or Foken et al. (2004) 1-9 flags: TAU from ST(u*)
    and the worse of ITC u and w, scalars from ST(w'x') and ITC w. Deviations in %."""
    v: dict[str, float] = {}
    combine = qc.mauder_foken_flag if settings.qc_meth == QcMethod.MAUDER_FOKEN_2004 else qc.foken_flag
    st = {"TAU": qc.steady_state_deviation_ustar(t.u, t.v, t.w), "H": qc.steady_state_deviation(t.w, t.ts)}
    for g in gases:
        st[g] = qc.steady_state_deviation(t.w, t.gases[g])
    f = qc.coriolis_parameter(latitude)
    tstar = -h / (rho_cp * ustar) if ustar > 0 else math.nan
    sigma_u, sigma_w, sigma_t = (math.sqrt(t.values[f"{n}_VAR"]) for n in ("U", "W", "T_SONIC"))
    itc_u = qc.itc_deviation(qc.itc_model_u(zl, ustar, f), sigma_u / ustar) if ustar > 0 else math.nan
    itc_w = qc.itc_deviation(qc.itc_model_w(zl, ustar, f), sigma_w / ustar) if ustar > 0 else math.nan
    itc_t = qc.itc_deviation(qc.itc_model_t(zl), sigma_t / abs(tstar)) if tstar else math.nan
    v["ST_DEV_W_U"], v["ST_DEV_W_TS"] = st["TAU"], st["H"]
    v["ITC_DEV_U"], v["ITC_DEV_W"], v["ITC_DEV_TS"] = itc_u, itc_w, itc_t
    cu, cw = qc.foken_class(itc_u), qc.foken_class(itc_w)
    v["TAU_SSITC_TEST"] = float(combine(qc.foken_class(st["TAU"]), max(cu, cw)))
    v["H_SSITC_TEST"] = float(combine(qc.foken_class(st["H"]), cw))
    for g, names in (("co2", ("FC",)), ("h2o", ("FH2O", "LE")), ("ch4", ("FCH4",)), ("n2o", ("FN2O",))):
        if g in gases:
            v[f"ST_DEV_W_{g.upper()}"] = st[g]
            for nm in names:
                v[f"{nm}_SSITC_TEST"] = float(combine(qc.foken_class(st[g]), cw))
    return v


def random_errors(t: Turbulence, level0: dict[str, float], fs: float, settings: ProcessingSettings
                  ) -> dict[str, float]:
    """Random error of each flux after Finkelstein & Sims (2001), with the lag range m = the pair's integral
    turbulence time scale (:func:`gateway.flux.ec.randomerror.cross_correlation_timescale`, ``ru_its_meth``, at most
    ``ru_tlag_max``), or after Mann & Lenschow (1994) with that time scale and T = ``avrg_len`` (``random_error``),
    stated as relative error × |uncorrected flux| (EddyPro; docs/flux-ec.md). ``level0``: the uncorrected flux per
    output name, in its unit."""
    from gateway.flux.ec import randomerror

    pairs = {"TAU": (t.wf, t.uf), "H": (t.wf, t.tsf)}
    for g in t.gf:
        pairs[FLUX_NAMES[g][0]] = (t.wf, t.gf[g])
    if "h2o" in t.gf:
        pairs["LE"] = (t.wf, t.gf["h2o"])
    out: dict[str, float] = {}
    for name, (a, b) in pairs.items():
        flux0 = level0.get(name, math.nan)
        if not math.isfinite(flux0):
            continue
        its = randomerror.cross_correlation_timescale(a, b, fs, max_lag_s=settings.ru_tlag_max,
                                                      limit=settings.ru_its_meth.value)
        lag_s = its if math.isfinite(its) and its > 0 else settings.ru_tlag_max
        if settings.random_error == "mann_lenschow_1994":
            err = randomerror.mann_lenschow(a, b, fs, timescale_s=lag_s, period_s=settings.avrg_len * 60.0)
        else:
            err = randomerror.finkelstein_sims(a, b, fs, max_lag_s=lag_s)
        out[f"{name}_RANDUNC"] = randomerror.flux_random_error(err, flux0)
    return out


#: The cumulative contributions (%) the footprint columns carry: EddyPro's x_10% ... x_90% and FLUXNET's FETCH_80.
FOOTPRINT_PERCENTS = (10, 30, 50, 70, 80, 90)


def footprint_distances(settings: ProcessingSettings, sigma_w: float, ustar: float, lmo: float, zm: float,
                        z0: float, umean: float) -> tuple[dict[str, float], bool]:
    """Peak, offset (1 %) and R % distances of the flux footprint (:mod:`gateway.flux.ec.footprint`: Kljun et al.
    2004 from sigma_w, u*, zm, z0; Kljun et al. 2015 from zm, the boundary-layer height, u*, L, z0; Kormann & Meixner
    2001 from zm, u*, L and the mean wind speed ``umean``; Hsieh et al. 2000 from zm, z0, L), m, as FETCH_MAX,
    FETCH_OFFSET and FETCH_10 ... FETCH_90 (the R values EddyPro reports: 10, 30, 50, 70, 80, 90), with
    FOOTPRINT_MODEL (EddyPro's code: 0 Kljun 2004, 1 Kormann & Meixner, 2 Hsieh; none for Kljun 2015, which EddyPro
    does not offer); and whether the inputs are in the model's stated range."""
    from gateway.flux.ec import footprint

    if settings.foot_meth == "kljun_2004":
        fp = footprint.kljun2004_distances(sigma_w=sigma_w, ustar=ustar, zm=zm, z0=z0)
    elif settings.foot_meth == "kormann_meixner_2001":
        fp = footprint.kormann_meixner2001_distances(zm=zm, ustar=ustar, obukhov_length=lmo, umean=umean)
    elif settings.foot_meth == "hsieh_2000":
        fp = footprint.hsieh2000_distances(zm=zm, z0=z0, obukhov_length=lmo)
    else:
        assert settings.footprint_blh is not None
        fp = footprint.kljun2015_distances(zm=zm, h=settings.footprint_blh, ustar=ustar, obukhov_length=lmo, z0=z0)
    model = {"kljun_2004": 0.0, "kormann_meixner_2001": 1.0, "hsieh_2000": 2.0}.get(settings.foot_meth)
    out = {"FETCH_MAX": fp.x_peak, "FETCH_OFFSET": fp.x_offset,
           **{f"FETCH_{pct}": fp.x_r[pct] for pct in FOOTPRINT_PERCENTS}}
    if model is not None:
        out["FOOTPRINT_MODEL"] = model
    return out, fp.valid


# ---------------------------------------------------------------------------------------------------------------
# the chain
# ---------------------------------------------------------------------------------------------------------------

def process_period(period: RawPeriod, settings: ProcessingSettings, *,
                   planar_fit: PlanarFitSetup | None = None, spectral_assessment: Any = None,
                   time_lags: timelag.LagOptimisation | None = None) -> FluxResult:
    """Process one averaging period (see the module docstring). Bad data give a ``failed`` or ``partial`` result
    with reasons; only an impossible configuration raises (:class:`ConfigurationError`, :class:`NotAvailableError`)."""
    md = period.metadata
    check_configuration(md, settings)
    v: dict[str, float] = {}
    reasons = list(period.issues)
    result = FluxResult(start=period.start, end=period.end, values=v, status="ok", reasons=reasons,
                        settings_hash=settings.settings_hash(md), source=period.source)
    try:
        _run_chain(period, settings, planar_fit, spectral_assessment, time_lags, v, reasons)
    except PeriodFailed as exc:
        reasons.append(str(exc))
        result.status = "failed"
        return result
    for key, val in list(v.items()):
        if not math.isfinite(val) and key in ("FC", "LE", "H", "TAU", "FH2O", "USTAR", "FCH4", "FN2O"):
            result.status = "partial"
            if not any(key.lower() in r or key in r for r in reasons):
                reasons.append(f"{key} not computed")
    return result


def _run_chain(period: RawPeriod, settings: ProcessingSettings, planar_fit: PlanarFitSetup | None,
               spectral_assessment: Any, time_lags: timelag.LagOptimisation | None, v: dict[str, float],
               reasons: list[str]) -> None:
    md = period.metadata
    fs = md.acquisition_frequency
    n = period.n_records
    v["N_RECORDS"] = float(n)
    expected = period.expected_records or round(settings.avrg_len * 60.0 * fs)
    if n < 2 or n < expected * (1.0 - settings.max_lack / 100.0):
        raise PeriodFailed(f"too few records: {n} of {expected} expected (max_lack {settings.max_lack:g} %)")
    data = working_copy(period, settings)
    for name in WIND:
        if name not in data:
            raise PeriodFailed(f"no {name} column")
    reasons += instrument_notes(md, settings)
    if "diag_72" in data:
        v.update(instruments.li7200_diagnostics(data["diag_72"]))
    if md.analyzer is not None and md.analyzer.path_type == "closed":
        v.update(cell_conditions(data))

    # 1-5: raw records
    if settings.statistical_tests.test_al or settings.filter_al:
        before_limits = {k: a.copy() for k, a in data.items()}
        filter_records(before_limits, period.measure_types, settings.model_copy(update={"filter_al": False}))
        v.update(absolute_limit_flags(before_limits, period.measure_types, settings))
    reasons += filter_records(data, period.measure_types, settings, v)
    v.update(remove_spikes(data, fs, settings))
    reasons += correct_sonic(data, md, settings)
    mtypes, why = dry_mole_fractions(data, period.measure_types, md.analyzer is not None and
                                     md.analyzer.path_type == "closed")
    reasons += why
    gases, why = usable_gases(data, expected, settings.max_lack)
    reasons += why
    v.update(statistical_flags(data, fs, settings))
    v["N_USED"] = float((np.isfinite(data["u"]) & np.isfinite(data["v"]) & np.isfinite(data["w"])
                         & np.isfinite(data["ts"])).sum())

    # 6: tilt correction; wind statistics of the sonic frame
    u0, v0, w0 = data["u"], data["v"], data["w"]
    v["U_UNROT"], v["V_UNROT"], v["W_UNROT"] = (float(np.nanmean(x)) for x in (u0, v0, w0))
    v["WD"] = (rotation.wind_direction(u0, v0, md.sonic.north_offset, into_head=rotation.u_positive_into_head(
        md.sonic.manufacturer, md.sonic.model)) + settings.magnetic_declination) % 360.0
    v["WS_MAX"] = float(np.nanmax(np.sqrt(u0 * u0 + v0 * v0 + w0 * w0)))
    v["WD_SIGMA"] = rotation.wind_direction_sigma(u0, v0)
    rot = tilt_correction(u0, v0, w0, settings, planar_fit)
    v["YAW"], v["PITCH"], v["ROLL"] = rot.yaw_deg, rot.pitch_deg, rot.roll_deg
    v["WS"] = math.sqrt(sum(float(np.nanmean(x)) ** 2 for x in (rot.u, rot.v, rot.w)))

    # 7: time lags
    rh_before_lags = math.nan
    if settings.tlag_meth == TimeLag.AUTOMATIC and "h2o" in gases:  # the H2O window depends on the RH class
        rh_before_lags = period_air_properties(data["ts"], {g: data[g] for g in gases}, mtypes, data.get("air_p"),
                                               md.altitude)[0].rh
    v.update(time_lag_flags(rot.w, data, gases, md, settings))
    lags = compensate_time_lags(rot.w, data, gases, md, settings, time_lags, rh_before_lags)
    for g in gases:
        v[f"{g.upper()}_TLAG"] = lags.seconds[g]
        v[f"{g.upper()}_TLAG_DEFAULT"] = float(lags.used_default[g])

    # 8: air properties
    ts = data["ts"]
    air, p = period_air_properties(ts, lags.series, mtypes, data.get("air_p"), md.altitude)
    if "h2o" not in lags.series:
        reasons.append("no usable H2O: air treated as dry, LE and FH2O not computed")
    v["T_SONIC"] = air.ts - 273.15
    v["TA"] = air.ta - 273.15
    v["PA"] = p / 1000.0
    v["RH"] = air.rh
    v["VPD"] = (air.es - air.e) / 100.0
    v["RHO_A"], v["RHO_CP"], v["VD"] = air.rho_a, air.rho_cp, air.vd
    means = {g: float(np.nanmean(lags.series[g])) for g in gases}
    _mean_concentrations(v, means, mtypes, air)

    # 9-10: fluctuations, covariances, moments
    t = covariances_and_moments(rot, ts, lags.series, settings, fs)
    v.update(t.values)

    # 11-13: fluxes
    l0 = level0_fluxes(t, air, mtypes)
    v["H_UNCORR"] = l0.h
    zm = md.sonic.height - md.displacement()
    uncorrected = corrected_fluxes(l0, {}, air, t.cov_wts, means, mtypes, settings.wpl_meth)
    lmo, zl = stability(uncorrected.ustar, uncorrected.h, air, p, zm)
    scf: dict[str, float] = {}
    fx = uncorrected
    if l0.ustar > 0 and math.isfinite(lmo):
        # the factors depend on z/L, which depends on the corrected u* and H: iterate to a fixed point
        for _ in range(MAX_STABILITY_ITERATIONS):
            scf = spectral_correction_factors(settings, md, gases, v["WS"], zm, zl, v["RH"], period.end.month,
                                              spectral_assessment)
            fx = corrected_fluxes(l0, scf, air, t.cov_wts, means, mtypes, settings.wpl_meth)
            lmo_new, zl_new = stability(fx.ustar, fx.h, air, p, zm)
            converged = not scf or abs(zl_new - zl) <= 1e-6 * max(1.0, abs(zl))
            lmo, zl = lmo_new, zl_new
            if converged:
                break
    if scf:
        v["TAU_SCF"], v["H_SCF"] = scf["tau"], scf["h"]
        for g in gases:
            if g in scf:
                v[f"{FLUX_NAMES[g][0]}_SCF"] = scf[g]
        if "h2o" in scf:
            v["LE_SCF"] = scf["h2o"]
    v["USTAR"], v["TAU"], v["H"] = fx.ustar, fx.tau, fx.h
    for g in GASES:  # a gas the period has a column for gets its flux, missing (NaN) when it could not be computed
        if g in period.data:
            name, scale = FLUX_NAMES[g]
            v[name] = fx.gas[g] * scale if g in fx.gas else math.nan
    if "h2o" in period.data:
        v["LE"] = fluxes.latent_heat(v["FH2O"], air.lambda_v) if "h2o" in fx.gas else math.nan
    lmo, zl = stability(fx.ustar, fx.h, air, p, zm)
    v["MO_LENGTH"], v["ZL"] = lmo, zl
    v.update(_derived_statistics(v, rot, air, l0, uncorrected, p, zm))

    # 14: quality
    if settings.qc_meth != QcMethod.NONE:
        v.update(quality_flags(t, gases, zl, fx.ustar, fx.h, air.rho_cp, md.latitude, settings))

    # 15: random error, footprint
    if settings.random_error != "none":
        level0 = {"TAU": l0.tau, "H": l0.h}
        for g, f in l0.gas.items():
            level0[FLUX_NAMES[g][0]] = f * FLUX_NAMES[g][1]
        if "h2o" in l0.gas:
            level0["LE"] = fluxes.latent_heat(level0["FH2O"], air.lambda_v)
        v.update(random_errors(t, {k: x for k, x in level0.items() if math.isfinite(v.get(k, math.nan))}, fs,
                               settings))
    lmo0, _ = stability(uncorrected.ustar, uncorrected.h, air, p, zm)
    if settings.foot_meth != "none" and l0.ustar > 0 and math.isfinite(lmo0):
        # EddyPro's footprint takes u* and L before the spectral corrections (its V-run x_peak, to 1e-3)
        try:
            fetch, valid = footprint_distances(settings, v["W_SIGMA"], l0.ustar, lmo0, zm, md.roughness(), v["WS"])
        except ValueError as err:  # e.g. Kormann & Meixner's r = 2 + m - n <= 0: no footprint for this period
            reasons.append(f"footprint ({settings.foot_meth}): not computed: {err}")
        else:
            v.update(fetch)
            if not valid:
                reasons.append(f"footprint ({settings.foot_meth}): inputs outside the model's stated range")


def _derived_statistics(v: dict[str, float], rot: rotation.Rotated, air: AirProperties, l0: Level0,
                        uncorrected: Corrected, p: float, zm: float) -> dict[str, float]:
    """Statistics EddyPro's full output also carries, from what the chain computed: rotated mean wind (m s-1),
    TKE = ½(σu² + σv² + σw²) (m2 s-2), T* = −H/(ρcp·u*) (K), Bowen ratio H/LE, vapour pressure and its saturation
    value (hPa), specific humidity (kg kg-1), vapour and dry-air density (kg m-3), λ (J kg-1), cp of moist air
    (J kg-1 K-1), molar volume of moist air (m3 mol-1), dew point (°C), and the uncorrected (level-0) fluxes, u*, L
    and z/L."""
    out = {"U_ROT": float(np.nanmean(rot.u)), "V_ROT": float(np.nanmean(rot.v)), "W_ROT": float(np.nanmean(rot.w)),
           "TKE": 0.5 * (v["U_VAR"] + v["V_VAR"] + v["W_VAR"]),
           "TSTAR": -v["H"] / (air.rho_cp * v["USTAR"]) if v["USTAR"] > 0 else math.nan,
           "BOWEN": v["H"] / v["LE"] if math.isfinite(v.get("LE", math.nan)) and v["LE"] != 0 else math.nan,
           "VAPOR_PRESSURE": air.e / 100.0, "VAPOR_PRESSURE_SAT": air.es / 100.0, "SPECIFIC_HUMIDITY": air.q,
           "VAPOR_DENSITY": air.rho_w, "DRYAIR_DENSITY": air.rho_d, "SPECIFIC_HEAT_EVAP": air.lambda_v,
           "AIR_CP": air.cp, "AIR_MV": air.va,
           "TDEW": airprops.dew_point(air.e) - 273.15, "TAU_UNCORR": l0.tau, "USTAR_UNCORR": l0.ustar}
    for g, f in l0.gas.items():
        out[f"{FLUX_NAMES[g][0]}_UNCORR"] = f * FLUX_NAMES[g][1]
    if "h2o" in l0.gas:
        out["LE_UNCORR"] = fluxes.latent_heat(out["FH2O_UNCORR"], air.lambda_v)
    lmo0, zl0 = stability(uncorrected.ustar, uncorrected.h, air, p, zm)
    out["MO_LENGTH_UNCORR"], out["ZL_UNCORR"] = lmo0, zl0
    return out


def _mean_concentrations(v: dict[str, float], means: dict[str, float], mtypes: dict[str, str],
                         air: AirProperties) -> None:
    """Mean CO2 (µmol mol-1 wet) and H2O (mmol mol-1 wet) and their dry mixing ratios, from the lagged series."""
    h2o = means.get("h2o")
    if h2o is not None:
        x_v = h2o / (1000.0 + h2o) if mtypes["h2o"] == "mixing_ratio" else air.rho_w / M_H2O * air.va
        v["H2O_MIXING_RATIO"] = h2o if mtypes["h2o"] == "mixing_ratio" else 1000.0 * x_v / (1.0 - x_v)
        v["H2O"] = 1000.0 * x_v
    dry = 1.0 + (h2o / 1000.0 if h2o is not None and mtypes["h2o"] == "mixing_ratio" else 0.0)
    for g in TRACE_GASES:
        if g in means:  # ppm in, nmol mol-1 (AmeriFlux CH4, N2O) out, wet like CO2
            v[f"{g.upper()}_MIXING_RATIO"] = means[g] * 1e3
            v[g.upper()] = means[g] * 1e3 / dry
    co2 = means.get("co2")
    if co2 is not None:
        if mtypes["co2"] == "molar_density":
            v["CO2"] = co2 * 1e-3 * air.va * 1e6
        else:
            v["CO2_MIXING_RATIO"] = co2
            v["CO2"] = co2 / (1.0 + (h2o / 1000.0 if h2o is not None and mtypes["h2o"] == "mixing_ratio" else 0.0))
