"""The engine honours the settings an EddyPro project can switch on, each on data whose expected result is derived
here: zero-wind offsets, crosswind correction, magnetic declination, spike counting without removal, the low-frequency
correction alone, the integral time scale of the random error, a CSAT3 without a known geometry refused."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from gateway.flux.ec import speccorr
from gateway.flux.ec.engine import ConfigurationError, check_configuration, process_period
from gateway.flux.ec.result import FluxResult

from .synthetic import N, correlated, metadata, period, settings_of

COV = np.array([[1.2, 0.1, -0.25, -0.05], [0.1, 1.0, 0.02, 0.0], [-0.25, 0.02, 0.5, 0.12], [-0.05, 0.0, 0.12, 0.3]])
SONIC_COLUMNS = [{"index": 1, "variable": "u"}, {"index": 2, "variable": "v"}, {"index": 3, "variable": "w"},
                 {"index": 4, "variable": "ts"}]


def wind(seed: int = 3) -> dict[str, np.ndarray]:
    x = correlated(COV, seed=seed) + np.array([3.0, 1.0, 0.0, 290.0])
    return {"u": x[:, 0], "v": x[:, 1], "w": x[:, 2], "ts": x[:, 3]}


def run(data: dict[str, np.ndarray], sonic: dict[str, Any] | None = None, **options: Any) -> FluxResult:
    md = metadata(columns=SONIC_COLUMNS, sonic={"height": 30.0, **(sonic or {})})
    base = {"rot_meth": "none", "tlag_meth": "none", "qc_meth": "none"}
    return process_period(period({k: a.copy() for k, a in data.items()}, md), settings_of(**{**base, **options}))


def test_zero_wind_offsets_are_subtracted() -> None:
    data = wind()
    biased = {**data, "u": data["u"] + 0.2, "v": data["v"] - 0.1, "w": data["w"] + 0.05}
    ref = run(data)
    r = run(biased, u_offset=0.2, v_offset=-0.1, w_offset=0.05)
    for name in ("U_UNROT", "V_UNROT", "W_UNROT", "WD", "U_W_COV", "W_T_SONIC_COV"):
        assert r.get(name) == pytest.approx(ref.get(name), rel=1e-12, abs=1e-12), name
    assert run(biased).get("W_UNROT") == pytest.approx(ref.get("W_UNROT") + 0.05, rel=1e-12)


def test_crosswind_correction_restores_the_temperature_a_csat3_lost() -> None:
    """A sonic that does not correct internally reads Ts − (u² + v²)·7/8/403 (CSAT3 geometry, paths at 60°); with
    cross_wind the engine gets the true mean and covariance back, exactly."""
    data = wind()
    lost = (data["u"] ** 2 + data["v"] ** 2) * (1 - 0.5 * math.cos(math.radians(60.0)) ** 2) / 403.0
    measured = {**data, "ts": data["ts"] - lost}
    true = run(data, sonic={"model": "csat3_1"})
    r = run(measured, sonic={"model": "csat3_1"}, cross_wind=True)
    assert r.get("T_SONIC") == pytest.approx(true.get("T_SONIC"), rel=1e-12)
    assert r.get("W_T_SONIC_COV") == pytest.approx(true.get("W_T_SONIC_COV"), rel=1e-10)
    uncorrected = run(measured, sonic={"model": "csat3_1"})
    assert abs(uncorrected.get("W_T_SONIC_COV") / true.get("W_T_SONIC_COV") - 1) > 1e-3


def test_crosswind_needs_the_path_inclination_of_an_unknown_sonic() -> None:
    md = metadata(columns=SONIC_COLUMNS, sonic={"height": 30.0, "model": "generic_sonic"})
    with pytest.raises(ConfigurationError, match=r"cross_wind.*path_elevation_deg"):
        check_configuration(md, settings_of(cross_wind=True))
    given = metadata(columns=SONIC_COLUMNS, sonic={"height": 30.0, "model": "generic_sonic", "path_elevation_deg": 45})
    check_configuration(given, settings_of(cross_wind=True))


def test_magnetic_declination_turns_the_wind_direction() -> None:
    data = wind()
    assert (run(data, magnetic_declination=7.5).get("WD") - run(data).get("WD")) % 360.0 == pytest.approx(7.5)


def test_spikes_counted_without_removal_leave_the_data() -> None:
    data = wind()
    data["ts"][[5000, 15000, 25000]] += 8.0
    # a threshold of 6 σ: the Gaussian noise has no outliers, the three 8-K spikes (15 σ) are found
    removed = run(data, despike="vickers_mahrt_1997", sr_lim_u=6.0)
    counted = run(data, despike="vickers_mahrt_1997", sr_lim_u=6.0, despike_replace=False)
    assert removed.get("TS_NUM_SPIKES") == counted.get("TS_NUM_SPIKES") == 3
    assert counted.get("W_T_SONIC_COV") == pytest.approx(run(data).get("W_T_SONIC_COV"), rel=1e-12)
    assert counted.get("W_T_SONIC_COV") != removed.get("W_T_SONIC_COV")


def test_low_frequency_correction_alone() -> None:
    """lf_meth on, hf_meth off: H and TAU get exactly the high-pass factor of the block average (Moncrieff et al.
    2004, EddyPro's √3·T), no instrument term; with both off no factor is applied."""
    data = wind()
    plain = run(data)
    r = run(data, lf_meth="moncrieff_2004")
    assert "H_SCF" not in plain.values
    zm = 30.0 - metadata().displacement()
    expected = speccorr.correction_factors(method="none", u=r.get("WS"), zm=zm, zl=r.get("ZL"), period_s=1800.0,
                                           detrend="block_average", timeconst_s=250.0, sonic_hpath_m=0.1,
                                           sonic_vpath_m=0.1, gases={}, low_pass=False)
    assert r.get("H_SCF") == pytest.approx(expected.h, rel=1e-9)
    assert r.get("TAU_SCF") == pytest.approx(expected.tau, rel=1e-9)
    assert r.get("H_UNCORR") == pytest.approx(plain.get("H_UNCORR"), rel=1e-12)
    assert r.get("H") > plain.get("H") > 0


def ar1_wind_and_ts(seed: int, fs: float = 20.0, tau: float = 2.0) -> dict[str, np.ndarray]:
    """A period whose w and Ts are driven by one AR(1) process of time scale `tau` (s) at `fs` (Hz):
    ρ_wT(τ) = exp(−τ/tau)."""
    a = math.exp(-1.0 / (fs * tau))
    rng = np.random.default_rng(seed)
    drive = rng.standard_normal(N) * math.sqrt(1 - a * a)
    x = np.empty(N)
    x[0] = 0.0
    for i in range(1, N):
        x[i] = a * x[i - 1] + drive[i]
    data = wind()
    data["w"] = 0.6 * x + 0.1 * data["w"]
    data["ts"] = 290.0 + 0.4 * x + 0.05 * rng.standard_normal(N)
    return data


def test_integral_time_scale_option_of_the_random_error() -> None:
    """w and T driven by one AR(1) process with a 2-s time scale: ρ_wT(τ) = exp(−τ/2 s). The whole-period integral
    (to 20 s) is ≈ 2 s, the one stopped at the first 1/e crossing ≈ 2·(1 − 1/e) = 1.26 s; the longer lag range
    gives the larger Finkelstein & Sims error."""
    from gateway.flux.ec.randomerror import cross_correlation_timescale

    fs, tau = 20.0, 2.0
    data = ar1_wind_and_ts(8, fs, tau)
    whole = cross_correlation_timescale(data["w"], data["ts"], fs, max_lag_s=20.0)
    short = cross_correlation_timescale(data["w"], data["ts"], fs, max_lag_s=20.0, limit="first_crossing_1_over_e")
    assert whole == pytest.approx(tau, rel=0.5)  # the tail of a 30-min estimate of ρ is noisy
    assert whole > short
    assert short == pytest.approx(tau * (1 - math.exp(-1.0)), rel=0.1)
    r_short = run(data, random_error="finkelstein_sims_2001", ru_its_meth="first_crossing_1_over_e", ru_tlag_max=20)
    r_whole = run(data, random_error="finkelstein_sims_2001", ru_its_meth="whole_correlation_period", ru_tlag_max=20)
    assert 0 < r_short.get("H_RANDUNC") < r_whole.get("H_RANDUNC")


def test_closed_path_molar_densities_become_mixing_ratios_with_the_cell_t_and_p() -> None:
    """A closed-path analyser reporting molar densities in a cell whose temperature and pressure fluctuate: record by
    record χ = ρ/(Pc/(R·Tc) − ρv) gives back the dry mole fractions the densities were made from, so the fluxes are
    those of the mixing ratios, to 1e-9; without cell T and P the gas fluxes are not computed, and the reason says
    why."""
    from gateway.flux.ec.constants import R_GAS

    rng = np.random.default_rng(12)
    x = correlated(np.array([[0.5, -0.2, 0.05], [-0.2, 1.0, -0.02], [0.05, -0.02, 0.04]]), seed=13)
    w, chi_c, chi_v = x[:, 0], 400.0 + x[:, 1], 14.0 + x[:, 2]          # µmol/mol, mmol/mol (dry)
    cell_t = 310.0 + 0.3 * rng.standard_normal(N)                       # K
    cell_p = 97000.0 + 50.0 * rng.standard_normal(N)                    # Pa
    n_air = cell_p / (R_GAS * cell_t)
    n_dry = n_air / (1.0 + chi_v * 1e-3)
    data = {**wind(), "w": w, "co2": chi_c * 1e-6 * n_dry * 1e3, "h2o": chi_v * 1e-3 * n_dry * 1e3,
            "cell_t": cell_t, "int_p": cell_p}
    columns = [*SONIC_COLUMNS,
               {"index": 5, "variable": "co2", "measure_type": "molar_density", "unit_in": "mmol_m3"},
               {"index": 6, "variable": "h2o", "measure_type": "molar_density", "unit_in": "mmol_m3"},
               {"index": 7, "variable": "cell_t", "unit_in": "kelvin"}, {"index": 8, "variable": "int_p"}]
    md = metadata(columns=columns, analyzer={"model": "li7200_1", "path_type": "closed"})
    s = settings_of(rot_meth="none", tlag_meth="none", qc_meth="none")
    types = {"co2": "molar_density", "h2o": "molar_density"}
    r = process_period(period(data, md, types), s)
    assert r.status == "ok", r.reasons
    assert r.get("W_CO2_COV") == pytest.approx(float(np.mean((w - w.mean()) * (chi_c - chi_c.mean()))), rel=1e-9)
    assert r.get("W_H2O_COV") == pytest.approx(float(np.mean((w - w.mean()) * (chi_v - chi_v.mean()))), rel=1e-9)
    assert r.get("CO2_MIXING_RATIO") == pytest.approx(float(chi_c.mean()), rel=1e-12)
    assert r.get("FC") == pytest.approx(r.get("W_CO2_COV") / r.get("VD"), rel=1e-12)
    bare = {k: a for k, a in data.items() if k not in ("cell_t", "int_p")}
    r2 = process_period(period(bare, metadata(columns=columns[:6], analyzer={"model": "li7200_1",
                                                                             "path_type": "closed"}), types), s)
    assert r2.status == "partial" and math.isnan(r2.get("FC"))
    assert any("without the cell temperature" in x for x in r2.reasons), r2.reasons


def test_ch4_and_n2o_from_a_closed_path_laser_analyser() -> None:
    """A closed-path laser analyser's wet CH4, N2O and H2O mole fractions (ppb, ppb, mmol/mol), CH4 lagged 0.4 s:
    record-by-record dry mole fractions, the lag found, FCH4 = w'χ'/Vd in nmol m-2 s-1 (AmeriFlux FCH4) to 1e-9."""
    x = correlated(np.array([[0.5, 0.08, 0.004, 0.03], [0.08, 1.0, 0.0, 0.0], [0.004, 0.0, 0.01, 0.0],
                             [0.03, 0.0, 0.0, 0.05]]), seed=32)
    w, ch4_dry, n2o_dry, h2o_dry = x[:, 0], 1.95 + 0.01 * x[:, 1], 0.332 + 0.001 * x[:, 2], 12.0 + x[:, 3]
    k = round(0.4 * 20)
    lagged = {"ch4": np.roll(ch4_dry, k), "n2o": n2o_dry, "h2o": h2o_dry}  # CH4 arrives 0.4 s late
    xv = lagged["h2o"] / (1000.0 + lagged["h2o"])
    data = {**wind(), "w": w, "ch4": lagged["ch4"] * (1 - xv) * 1e3, "n2o": lagged["n2o"] * (1 - xv) * 1e3,
            "h2o": xv * 1e3}
    columns = [*SONIC_COLUMNS,
               {"index": 5, "variable": "ch4", "measure_type": "mole_fraction", "unit_in": "ppb", "min_timelag": 0,
                "max_timelag": 1},
               {"index": 6, "variable": "n2o", "measure_type": "mole_fraction", "unit_in": "ppb", "min_timelag": 0,
                "max_timelag": 1},
               {"index": 7, "variable": "h2o", "measure_type": "mole_fraction", "min_timelag": 0, "max_timelag": 1}]
    md = metadata(columns=columns, analyzer={"model": "generic_closed_path", "path_type": "closed"})
    types = {"ch4": "mole_fraction", "n2o": "mole_fraction", "h2o": "mole_fraction"}
    # the period holds ppm for trace gases (canonical unit): the reader would divide ppb by 1000
    period_data = {**data, "ch4": data["ch4"] * 1e-3, "n2o": data["n2o"] * 1e-3}
    r = process_period(period(period_data, md, types), settings_of(rot_meth="none", qc_meth="none",
                                                                   tlag_meth="covariance_maximization"))
    assert r.status == "ok", r.reasons
    assert r.get("CH4_TLAG") == pytest.approx(0.4)
    cov = float(np.mean((w[:-k] - w[:-k].mean()) * (ch4_dry[:-k] - ch4_dry[:-k].mean())))
    assert r.get("W_CH4_COV") == pytest.approx(cov, rel=1e-9)
    assert r.get("FCH4") == pytest.approx(cov / r.get("VD") * 1e3, rel=1e-9)
    assert r.get("CH4_MIXING_RATIO") == pytest.approx(float(np.mean(ch4_dry[:-k])) * 1e3, rel=1e-12)
    assert r.get("FN2O") == pytest.approx(r.get("W_N2O_COV") / r.get("VD") * 1e3, rel=1e-12)
    assert math.isfinite(r.get("FH2O")) and r.get("CH4") < r.get("CH4_MIXING_RATIO")


def test_li7700_methane_densities_are_refused_with_the_reason() -> None:
    from gateway.flux.ec.settings import NotAvailableError

    md = metadata(columns=[*SONIC_COLUMNS, {"index": 5, "variable": "ch4", "measure_type": "molar_density"}],
                  analyzer={"model": "li7700", "path_type": "open"})
    with pytest.raises(NotAvailableError, match="spectroscopic multipliers A, B, C"):
        check_configuration(md, settings_of())


@pytest.mark.parametrize(("field", "value"), [("acquisition_frequency", 1e-9), ("acquisition_frequency", 1e9),
                                              ("file_duration", 1e9)])
def test_absurd_timing_in_the_metadata_is_refused_naming_the_key(field: str, value: float) -> None:
    """A period of zero records (ZeroDivisionError) or a file of 10^12 (SystemError) came out of these before."""
    from pydantic import ValidationError

    site: dict[str, Any] = {field: value}
    with pytest.raises(ValidationError, match=field):
        metadata(**site)


@pytest.mark.parametrize("value", [1e-9, 1e6])
def test_an_absurd_averaging_period_is_refused(value: float) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="avrg_len"):
        settings_of(avrg_len=value)


def test_mann_lenschow_random_error_is_computed_by_the_engine() -> None:
    """random_error = mann_lenschow_1994 (EddyPro ru_meth = 2): H_RANDUNC = |uncorrected H| × √(2·ITS/T·(1 + r²)/r²)
    with the w–Ts correlation r, the cross-correlation ITS over the whole 20-s correlation period and T = 30 min,
    all derived here from the arrays (no rotation, no lag, block average)."""
    from gateway.flux.ec.randomerror import cross_correlation_timescale, mann_lenschow_relative_error

    fs, tau = 20.0, 2.0
    data = ar1_wind_and_ts(9, fs, tau)
    wp, tp = data["w"] - data["w"].mean(), data["ts"] - data["ts"].mean()
    r_wt = float(np.mean(wp * tp) / (np.std(wp) * np.std(tp)))
    its = cross_correlation_timescale(wp, tp, fs, max_lag_s=20.0)
    assert its > 0
    ml = run(data, random_error="mann_lenschow_1994", ru_tlag_max=20)
    expected = abs(ml.get("H_UNCORR")) * mann_lenschow_relative_error(r_wt, its, 1800.0)
    assert ml.get("H_RANDUNC") == pytest.approx(expected, rel=1e-9)
    fs01 = run(data, random_error="finkelstein_sims_2001", ru_tlag_max=20)
    assert fs01.get("H") == ml.get("H") and fs01.get("H_RANDUNC") != ml.get("H_RANDUNC")
    assert math.isnan(run(data).get("H_RANDUNC"))
