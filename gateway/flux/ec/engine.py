"""The processing chain for one averaging period: `process_period(RawPeriod, ProcessingSettings) -> FluxResult`.

Order (EDDYPRO-REFERENCE.md): diagnostic and absolute-limit filtering → despiking → tilt correction → time-lag
compensation → air properties → detrending → covariances → fluxes → quality tests → statistics. Each step is a pure
function of another module; this one only wires them and turns every problem into a named reason on the result
(never an exception for bad data, never a silent number).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gateway.flux.ec import airprops, detrend, fluxes, qc, rotation, timelag
from gateway.flux.ec.constants import LI7200_CELL_VOLUME
from gateway.flux.ec.period import RawPeriod
from gateway.flux.ec.result import FluxResult
from gateway.flux.ec.settings import (
    Despiking,
    Detrending,
    NotAvailableError,
    ProcessingSettings,
    QcMethod,
    Rotation,
    SiteMetadata,
    SpectralCorrection,
    TimeLag,
)
from gateway.flux.ec.stats import moments

Array = NDArray[np.float64]
GASES = ("co2", "h2o")


class ConfigurationError(ValueError):
    """Metadata and settings cannot work together; raised before any data is processed."""


def check_configuration(metadata: SiteMetadata, settings: ProcessingSettings) -> None:
    """Refuse settings this engine cannot honour, naming the setting (no silent skipping)."""
    if settings.hf_meth in (SpectralCorrection.HORST_1997, SpectralCorrection.IBROM_2007):
        raise NotAvailableError(f"hf_meth = {settings.hf_meth.value}: not available; use moncrieff_1997 or "
                                "fratini_2012")
    if settings.hf_meth == SpectralCorrection.FRATINI_2012:
        if not settings.spectral_assessment_file:
            raise ConfigurationError("hf_meth = fratini_2012 needs spectral_assessment_file (an EddyPro "
                                     "spectral_assessment.txt)")
        if metadata.analyzer is None or metadata.analyzer.path_type != "closed":
            raise ConfigurationError("hf_meth = fratini_2012 applies to closed-path analysers; use moncrieff_1997")
    if settings.foot_meth in ("kormann_meixner_2001", "hsieh_2000"):
        raise NotAvailableError(f"foot_meth = {settings.foot_meth}: not available; use kljun_2004 or kljun_2015")
    if settings.foot_meth == "kljun_2015" and settings.footprint_blh is None:
        raise ConfigurationError("foot_meth = kljun_2015 needs footprint_blh, the boundary-layer height in m")
    if settings.tlag_meth == TimeLag.AUTOMATIC:
        raise NotAvailableError("tlag_meth = automatic_optimization needs a multi-period optimisation that is not "
                                "available; use covariance_maximization_with_default")
    if settings.rot_meth in (Rotation.PLANAR_FIT, Rotation.PLANAR_FIT_NO_BIAS) and not settings.planar_fit_file:
        raise ConfigurationError(f"rot_meth = {settings.rot_meth.value} needs planar_fit_file (an EddyPro "
                                 "planar_fit.txt)")
    if settings.tlag_meth in (TimeLag.MAXCOV, TimeLag.MAXCOV_DEFAULT):
        for gas in GASES:
            col = metadata.file.column(gas)
            if col is not None and col.min_timelag == col.max_timelag:
                raise ConfigurationError(
                    f"column {col.index} ({gas}): time-lag window min_timelag = max_timelag = {col.min_timelag} s; "
                    f"covariance maximisation needs a window (e.g. min_timelag: 0, max_timelag: 2)")


@dataclass(frozen=True)
class PlanarFitSetup:
    """Planar-fit sectors (from :func:`gateway.flux.ec.planarfit.parse_eddypro_planar_fit`) and whether b0 is
    subtracted."""

    sectors: list[Any]
    subtract_b0: bool


def default_lag(gas: str, metadata: SiteMetadata, settings: ProcessingSettings) -> float:
    """Default / constant lag in s: the setting ``tl_def_<gas>``, else the column's nominal lag, else (closed path)
    the tube-and-cell transit time, else 0."""
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


def _diag_mask(name: str, diag: Array) -> NDArray[np.bool_]:
    """True where a diagnostic word marks a bad record. LI-7200 (`diag_72`): bits 4-12 are 1 when OK; LI-7500
    (`diag_75`): bits 4-7 are 1 when OK (LI-COR manuals); sonic (`diag_sonic`): non-zero is bad. NaN: not flagged."""
    ok = np.isfinite(diag)
    word = np.where(ok, diag, 0).astype(np.int64)
    if name == "diag_72":
        bad = (word >> 4) & 0x1FF != 0x1FF
    elif name == "diag_75":
        bad = (word >> 4) & 0xF != 0xF
    else:
        bad = word != 0
    return ok & bad


def process_period(period: RawPeriod, settings: ProcessingSettings, *,
                   planar_fit: PlanarFitSetup | None = None, spectral_assessment: Any = None) -> FluxResult:
    """Process one averaging period (see the module docstring). Bad data give a ``failed`` or ``partial`` result
    with reasons; only an impossible configuration raises (:class:`ConfigurationError`, :class:`NotAvailableError`)."""
    md = period.metadata
    check_configuration(md, settings)
    v: dict[str, float] = {}
    reasons = list(period.issues)
    result = FluxResult(start=period.start, end=period.end, values=v, status="ok", reasons=reasons,
                        settings_hash=settings.settings_hash(md), source=period.source)
    fs = md.acquisition_frequency
    n = period.n_records
    v["N_RECORDS"] = float(n)
    expected = period.expected_records or round(settings.avrg_len * 60.0 * fs)
    if n < 2 or n < expected * (1.0 - settings.max_lack / 100.0):
        reasons.append(f"too few records: {n} of {expected} expected (max_lack {settings.max_lack:g} %)")
        result.status = "failed"
        return result
    data = {k: np.array(a, dtype=np.float64, copy=True) for k, a in period.data.items()}
    for name in ("u", "v", "w", "ts"):
        if name not in data:
            reasons.append(f"no {name} column")
            result.status = "failed"
            return result

    # 1. diagnostic filtering
    if settings.filter_diag:
        for dname, targets in (("diag_72", GASES), ("diag_75", GASES), ("diag_sonic", ("u", "v", "w", "ts"))):
            if dname in data:
                bad = _diag_mask(dname, data[dname])
                if bad.any():
                    for t in targets:
                        if t in data:
                            data[t][bad] = np.nan
                    reasons.append(f"{dname}: {int(bad.sum())} records flagged by the instrument and removed")
    # absolute limits (Vickers & Mahrt 1997, §4c)
    if settings.filter_al:
        al = settings.absolute_limits
        limits = {"u": (-al.al_u_max, al.al_u_max), "v": (-al.al_u_max, al.al_u_max), "w": (-al.al_w_max, al.al_w_max),
                  "ts": (al.al_tson_min + 273.15, al.al_tson_max + 273.15)}
        if period.measure_types.get("co2") != "molar_density":
            limits["co2"] = (al.al_co2_min, al.al_co2_max)
        if period.measure_types.get("h2o") != "molar_density":
            limits["h2o"] = (al.al_h2o_min, al.al_h2o_max)
        for name, (lo, hi) in limits.items():
            if name in data:
                with np.errstate(invalid="ignore"):
                    out = (data[name] < lo) | (data[name] > hi)
                if out.any():
                    data[name][out] = np.nan
                    reasons.append(f"{name}: {int(out.sum())} records outside absolute limits [{lo:g}, {hi:g}]")
    # despiking (gateway.flux.ec.despike)
    if settings.despike != Despiking.NONE:
        from gateway.flux.ec import despike as dsp

        lims = {"u": settings.sr_lim_u, "v": settings.sr_lim_u, "w": settings.sr_lim_w, "ts": settings.sr_lim_u,
                "co2": settings.sr_lim_co2, "h2o": settings.sr_lim_h2o}
        for name, lim in lims.items():
            if name not in data:
                continue
            if settings.despike == Despiking.VICKERS_MAHRT_1997:
                res = dsp.despike_vm97(data[name], fs, sr_lim=lim, sr_num_spk=settings.sr_num_spk,
                                       sr_lim_hf=settings.sr_lim_hf, replace="linear",
                                       window_s=dsp.eddypro_window_s(settings.avrg_len * 60.0))
            else:
                res = dsp.despike_mad(data[name], sr_lim_hf=settings.sr_lim_hf)
            data[name] = res.values
            v[f"{name.upper()}_NUM_SPIKES"] = float(res.n_events)

    # mole fractions of the same analyser → dry mole fractions, record by record (Ibrom et al. 2007)
    if period.measure_types.get("h2o") == "mole_fraction" and "h2o" in data:
        xv = data["h2o"] * 1e-3
        for gas in ("co2",):
            if period.measure_types.get(gas) == "mole_fraction" and gas in data:
                data[gas] = data[gas] / (1.0 - xv)
        data["h2o"] = data["h2o"] / (1.0 - xv)
        reasons.append("mole fractions converted to mixing ratios record by record")
    mtypes = {g: ("mixing_ratio" if period.measure_types.get(g) == "mole_fraction" else period.measure_types.get(g))
              for g in GASES}

    # usable channels
    max_missing = settings.max_lack / 100.0 * expected
    for name in ("u", "v", "w", "ts"):
        missing = expected - int(np.isfinite(data[name]).sum())
        if missing > max_missing:
            reasons.append(f"{name}: {missing} of {expected} records missing (more than max_lack "
                           f"{settings.max_lack:g} %)")
            result.status = "failed"
            return result
    gases: list[str] = []
    for g in GASES:
        if g not in data:
            continue
        missing = expected - int(np.isfinite(data[g]).sum())
        if missing > max_missing:
            reasons.append(f"{g}: {missing} of {expected} records missing (more than max_lack {settings.max_lack:g} %)"
                           f"; its flux is not computed")
        else:
            gases.append(g)
    wind_ok = np.isfinite(data["u"]) & np.isfinite(data["v"]) & np.isfinite(data["w"]) & np.isfinite(data["ts"])
    v["N_USED"] = float(wind_ok.sum())

    # 2. tilt correction
    u0, v0, w0 = data["u"], data["v"], data["w"]
    v["U_UNROT"], v["V_UNROT"], v["W_UNROT"] = (float(np.nanmean(x)) for x in (u0, v0, w0))
    v["WD"] = rotation.wind_direction(u0, v0, md.sonic.north_offset, into_head=rotation.u_positive_into_head(
        md.sonic.manufacturer, md.sonic.model))
    v["WS_MAX"] = float(np.nanmax(np.sqrt(u0 * u0 + v0 * v0 + w0 * w0)))
    if settings.rot_meth == Rotation.DOUBLE:
        rot = rotation.double_rotation(u0, v0, w0)
    elif settings.rot_meth == Rotation.TRIPLE:
        rot = rotation.triple_rotation(u0, v0, w0)
    elif settings.rot_meth == Rotation.NONE:
        rot = rotation.Rotated(u0, v0, w0, math.nan, math.nan)
    else:
        if planar_fit is None:
            raise ConfigurationError("planar fit selected but no planar-fit sectors were given to process_period")
        from gateway.flux.ec import planarfit

        sector = planarfit.select_sector(planar_fit.sectors, v["U_UNROT"], v["V_UNROT"])
        pf = planarfit.apply_planar_fit(u0, v0, w0, sector.coefficients, subtract_b0=planar_fit.subtract_b0)
        rot = rotation.Rotated(pf.u, pf.v, pf.w, pf.yaw_deg, math.nan)
    u, vv, w = rot.u, rot.v, rot.w
    v["YAW"], v["PITCH"], v["ROLL"] = rot.yaw_deg, rot.pitch_deg, rot.roll_deg
    v["WS"] = math.sqrt(float(np.nanmean(u)) ** 2 + float(np.nanmean(vv)) ** 2 + float(np.nanmean(w)) ** 2)

    # 3. time lags
    ts = data["ts"]
    lagged: dict[str, Array] = {}
    for g in gases:
        col = md.file.column(g)
        if settings.tlag_meth == TimeLag.NONE:
            k, used_default = 0, False
        elif settings.tlag_meth == TimeLag.CONSTANT:
            k, used_default = round(default_lag(g, md, settings) * fs), True
        else:
            assert col is not None
            dflt = default_lag(g, md, settings) if settings.tlag_meth == TimeLag.MAXCOV_DEFAULT else None
            lr = timelag.covariance_maximization(w, data[g], fs, col.min_timelag, col.max_timelag, dflt)
            k, used_default = lr.records, lr.used_default
        lagged[g] = timelag.shift(data[g], k) if k else data[g]
        v[f"{g.upper()}_TLAG"] = k / fs
        v[f"{g.upper()}_TLAG_DEFAULT"] = float(used_default)

    # 4. air properties
    ts_mean = float(np.nanmean(ts))
    p = float(np.nanmean(data["air_p"])) if "air_p" in data and np.isfinite(data["air_p"]).any() else \
        airprops.pressure_from_altitude(md.altitude)
    h2o_mean = float(np.nanmean(lagged["h2o"])) if "h2o" in lagged else math.nan
    if "h2o" not in lagged:
        air = airprops.air_properties(ts_mean, p)
        reasons.append("no usable H2O: air treated as dry, LE and FH2O not computed")
    elif mtypes["h2o"] == "molar_density":
        air = airprops.air_properties(ts_mean, p, h2o_molar_density=h2o_mean * 1e-3)
    else:
        air = airprops.air_properties(ts_mean, p, h2o_mole_fraction=h2o_mean / (1000.0 + h2o_mean))
    v["T_SONIC"] = ts_mean - 273.15
    v["TA"] = air.ta - 273.15
    v["PA"] = p / 1000.0
    v["RH"] = air.rh
    v["VPD"] = (air.es - air.e) / 100.0
    v["RHO_A"], v["RHO_CP"], v["VD"] = air.rho_a, air.rho_cp, air.vd

    # 5. detrending
    def fluct(x: Array) -> Array:
        if settings.detrend_meth == Detrending.BLOCK_AVERAGE:
            return x
        window = max(2, round(settings.timeconst * fs))
        if settings.detrend_meth == Detrending.LINEAR:
            return detrend.linear(x, window)
        if settings.detrend_meth == Detrending.RUNNING_MEAN:
            return detrend.running_mean(x, window)
        return detrend.exponential_running_mean(x, settings.timeconst, fs)

    uf, vf, wf, tsf = fluct(u), fluct(vv), fluct(w), fluct(ts)
    gf = {g: fluct(lagged[g]) for g in lagged}

    # 6. covariances (population, over valid pairs with their own means)
    cov_uw, cov_vw, cov_wts = qc.pair_cov(uf, wf), qc.pair_cov(vf, wf), qc.pair_cov(wf, tsf)
    cov_wg = {g: qc.pair_cov(wf, gf[g]) for g in gf}
    v["U_W_COV"], v["V_W_COV"], v["W_T_SONIC_COV"] = cov_uw, cov_vw, cov_wts
    for name, x, xf in (("U", u, uf), ("V", vv, vf), ("W", w, wf), ("T_SONIC", ts, tsf)):
        m = moments(x, None if xf is x else xf)
        v[f"{name}_VAR"] = m.variance
        v[f"{name}_SIGMA"] = math.sqrt(m.variance)
        if name != "V":
            v[f"{name}_SKEW"], v[f"{name}_KURT"] = m.skewness, m.kurtosis
    for g in gf:
        m = moments(lagged[g], None if gf[g] is lagged[g] else gf[g])
        G = g.upper()
        v[f"W_{G}_COV"] = cov_wg[g]
        v[f"{G}_VAR"], v[f"{G}_SIGMA"] = m.variance, math.sqrt(m.variance)
        v[f"{G}_SKEW"], v[f"{G}_KURT"] = m.skewness, m.kurtosis

    # 7. fluxes
    ustar = fluxes.friction_velocity(cov_uw, cov_vw)
    v["USTAR"] = ustar
    v["TAU"] = fluxes.momentum_flux(air.rho_a, ustar, cov_uw)
    h_unc = fluxes.sensible_heat_uncorrected(air.rho_cp, cov_wts)
    v["H_UNCORR"] = h_unc
    fh2o = math.nan
    fc = math.nan
    h = math.nan
    if "h2o" in gf:
        x_v = h2o_mean / (1000.0 + h2o_mean) if mtypes["h2o"] == "mixing_ratio" else air.rho_w / 18.02e-3 * air.va
        v["H2O_MIXING_RATIO"] = h2o_mean if mtypes["h2o"] == "mixing_ratio" else 1000.0 * x_v / (1.0 - x_v)
        v["H2O"] = 1000.0 * x_v
    if mtypes.get("h2o") == "molar_density" or mtypes.get("co2") == "molar_density":
        # open path (EddyPro's order, docs/flux-ec.md "Open path"): H is humidity-corrected with the water-vapour
        # flux *before* its density terms, once, and that H enters the WPL terms of E and FC; the WPL-corrected E
        # is not fed back into H (EddyPro's H is the same with WPL on and off).
        fh2o_raw = cov_wg.get("h2o", math.nan) * 1e-3  # mol m-2 s-1
        n_v = air.rho_w / 18.02e-3
        e_kg = fh2o_raw * 18.02e-3 if math.isfinite(fh2o_raw) else 0.0
        h = fluxes.sensible_heat_van_dijk(air.rho_cp, cov_wts, ts_mean, e_kg, air.rho_a, air.q)
        fv = fh2o_raw
        if settings.wpl_meth and "h2o" in gf and mtypes["h2o"] == "molar_density":
            _, fv = fluxes.wpl_open_path(0.0, 0.0, fh2o_raw, n_v, h / air.rho_cp, air)
        fh2o = fv * 1e3 if "h2o" in gf else math.nan
        if "co2" in gf:
            if mtypes["co2"] == "molar_density":
                c_mean = float(np.nanmean(lagged["co2"])) * 1e-3
                if settings.wpl_meth:
                    fcm, _ = fluxes.wpl_open_path(cov_wg["co2"] * 1e-3, c_mean, fh2o_raw if math.isfinite(fh2o_raw)
                                                  else 0.0, n_v, h / air.rho_cp, air)
                else:
                    fcm = cov_wg["co2"] * 1e-3
                fc = fcm * 1e6
                v["CO2"] = c_mean * air.va * 1e6
            else:
                fc = fluxes.flux_from_mixing_ratio(cov_wg["co2"], air.vd)
    else:
        if "h2o" in gf:
            fh2o = fluxes.flux_from_mixing_ratio(cov_wg["h2o"], air.vd)
        if "co2" in gf:
            fc = fluxes.flux_from_mixing_ratio(cov_wg["co2"], air.vd)
        e_kg = fluxes.evaporation_kg(fh2o) if math.isfinite(fh2o) else 0.0
        h = fluxes.sensible_heat_van_dijk(air.rho_cp, cov_wts, ts_mean, e_kg, air.rho_a, air.q)
    if "co2" in gf and mtypes["co2"] == "mixing_ratio":
        co2m = float(np.nanmean(lagged["co2"]))
        v["CO2_MIXING_RATIO"] = co2m
        v["CO2"] = co2m / (1.0 + (h2o_mean / 1000.0 if "h2o" in gf and mtypes["h2o"] == "mixing_ratio" else 0.0))
    v["H"], v["FH2O"], v["FC"] = h, fh2o, fc
    v["LE"] = fluxes.latent_heat(fh2o, air.lambda_v) if math.isfinite(fh2o) else math.nan

    # stability
    d = md.displacement()
    z = md.sonic.height - d
    lmo = fluxes.obukhov_length(ustar, h, air.rho_cp, air.ta, p)
    v["MO_LENGTH"] = lmo
    v["ZL"] = z / lmo

    # spectral corrections (gateway.flux.ec.speccorr on gateway.flux.ec.spectral); stability re-evaluated after
    if settings.hf_meth != SpectralCorrection.NONE and ustar > 0 and math.isfinite(lmo):
        from gateway.flux.ec import speccorr

        if settings.hf_meth == SpectralCorrection.FRATINI_2012 and spectral_assessment is None:
            raise ConfigurationError("hf_meth = fratini_2012: no spectral assessment given to process_period")
        hpath, vpath = speccorr.sonic_paths_m(md.sonic.model, md.sonic.hpath_length, md.sonic.vpath_length)
        ga = md.analyzer
        gas_par: dict[str, dict[str, float]] = {}
        for g in gf:
            if settings.hf_meth == SpectralCorrection.FRATINI_2012:
                fc_cut = (spectral_assessment.h2o_fc(v["RH"]) if g == "h2o"
                          else spectral_assessment.gas_monthly.get(g.upper(), [(math.nan, math.nan)] * 12)
                          [period.end.month - 1][1])
                gas_par[g] = {"fc": fc_cut}
            elif ga is not None:
                sep = math.hypot(ga.northward_separation, ga.eastward_separation) / 100.0
                gas_par[g] = ({"separation_m": sep, "tube_length_m": ga.tube_length / 100.0,
                               "tube_radius_m": ga.tube_diameter / 2000.0, "flow_lpm": ga.tube_flowrate}
                              if ga.path_type == "closed" else {"separation_m": sep})
        sf = speccorr.correction_factors(
            method=settings.hf_meth.value, u=v["WS"], zm=z, zl=z / lmo, period_s=settings.avrg_len * 60.0,
            detrend=settings.detrend_meth.value, timeconst_s=settings.timeconst, sonic_hpath_m=hpath,
            sonic_vpath_m=vpath, gases=gas_par)
        v["TAU_SCF"], v["H_SCF"] = sf.tau, sf.h
        v["TAU"] *= sf.tau
        ustar *= math.sqrt(sf.tau)
        v["USTAR"] = ustar
        h *= sf.h
        v["H"] = h
        if "co2" in sf.gases:
            v["FC_SCF"] = sf.gases["co2"]
            v["FC"] *= sf.gases["co2"]
        if "h2o" in sf.gases:
            v["LE_SCF"] = v["FH2O_SCF"] = sf.gases["h2o"]
            v["LE"] *= sf.gases["h2o"]
            v["FH2O"] *= sf.gases["h2o"]
        lmo = fluxes.obukhov_length(ustar, h, air.rho_cp, air.ta, p)
        v["MO_LENGTH"] = lmo
        v["ZL"] = z / lmo

    # 8. quality flags (Foken et al. 2004 → Mauder & Foken 2004)
    if settings.qc_meth != QcMethod.NONE:
        combine = qc.mauder_foken_flag if settings.qc_meth == QcMethod.MAUDER_FOKEN_2004 else qc.foken_flag
        # steady state on the rotated, lag-compensated series with sub-period means (not the detrended ones:
        # EddyPro's R3 deviations equal R1's)
        st = {"TAU": qc.steady_state_deviation_ustar(u, vv, w), "H": qc.steady_state_deviation(w, ts)}
        for g in gf:
            st[g] = qc.steady_state_deviation(w, lagged[g])
        f = qc.coriolis_parameter(md.latitude)
        zl = v["ZL"]
        tstar = -h / (air.rho_cp * ustar) if ustar > 0 else math.nan
        itc_u = qc.itc_deviation(qc.itc_model_u(zl, ustar, f), v["U_SIGMA"] / ustar) if ustar > 0 else math.nan
        itc_w = qc.itc_deviation(qc.itc_model_w(zl, ustar, f), v["W_SIGMA"] / ustar) if ustar > 0 else math.nan
        itc_t = qc.itc_deviation(qc.itc_model_t(zl), v["T_SONIC_SIGMA"] / abs(tstar)) if tstar else math.nan
        v["ST_DEV_W_U"], v["ST_DEV_W_TS"] = st["TAU"], st["H"]
        v["ITC_DEV_U"], v["ITC_DEV_W"], v["ITC_DEV_TS"] = itc_u, itc_w, itc_t
        cu, cw = qc.foken_class(itc_u), qc.foken_class(itc_w)
        v["TAU_SSITC_TEST"] = float(combine(qc.foken_class(st["TAU"]), max(cu, cw)))
        v["H_SSITC_TEST"] = float(combine(qc.foken_class(st["H"]), cw))
        for g, names in (("co2", ("FC",)), ("h2o", ("FH2O", "LE"))):
            if g in gf:
                v[f"ST_DEV_W_{g.upper()}"] = st[g]
                for nm in names:
                    v[f"{nm}_SSITC_TEST"] = float(combine(qc.foken_class(st[g]), cw))

    # 9. random error (Finkelstein & Sims 2001) and footprint (Kljun et al. 2004 / 2015), if selected
    if settings.random_error == "finkelstein_sims_2001":
        from gateway.flux.ec import randomerror

        pairs = {"TAU": (wf, uf), "H": (wf, tsf)}
        if "co2" in gf:
            pairs["FC"] = (wf, gf["co2"])
        if "h2o" in gf:
            pairs["LE"] = (wf, gf["h2o"])
            pairs["FH2O"] = (wf, gf["h2o"])
        for name, (a, b) in pairs.items():
            if math.isfinite(v.get(name, math.nan)):
                err = randomerror.finkelstein_sims(a, b, fs, max_lag_s=settings.ru_tlag_max)
                v[f"{name}_RANDUNC"] = randomerror.flux_random_error(err, v[name])
    if settings.foot_meth in ("kljun_2004", "kljun_2015") and ustar > 0 and math.isfinite(lmo):
        from gateway.flux.ec import footprint

        if settings.foot_meth == "kljun_2004":
            fp = footprint.kljun2004_distances(sigma_w=v["W_SIGMA"], ustar=ustar, zm=z, z0=md.roughness())
        else:
            assert settings.footprint_blh is not None
            fp = footprint.kljun2015_distances(zm=z, h=settings.footprint_blh, ustar=ustar, obukhov_length=lmo,
                                               z0=md.roughness())
        v["FETCH_MAX"] = fp.x_peak
        for pct in (70, 80, 90):
            v[f"FETCH_{pct}"] = fp.x_r[pct]
        if not fp.valid:
            reasons.append(f"footprint ({settings.foot_meth}): inputs outside the model's stated range")

    for key, val in list(v.items()):
        if not math.isfinite(val) and key in ("FC", "LE", "H", "TAU", "FH2O", "USTAR"):
            result.status = "partial"
            if not any(key.lower() in r or key in r for r in reasons):
                reasons.append(f"{key} not computed")
    return result
