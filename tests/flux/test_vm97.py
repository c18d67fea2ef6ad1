"""Vickers & Mahrt (1997) statistical tests (`gateway.flux.ec.vm97`) against synthetic truth: each series is built
so that the test must flag it, or must not, with the margin derived in the test; plus the edge cases (all missing,
constant, shorter than one window)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
import pytest

from gateway.flux.ec import vm97
from gateway.flux.ec.engine import process_period
from gateway.flux.ec.period import RawPeriod
from gateway.flux.ec.settings import ProcessingSettings, StatisticalTests
from gateway.flux.files import load_metadata, load_settings, read_raw_file, write_eddypro_full_output

from .conftest import EC_RAW, RAW_FILE, read_eddypro_table

FS = 20.0
N = 36_000  # 30 min at 20 Hz
NAN = np.full(N, np.nan)


@pytest.fixture
def noise() -> np.ndarray:
    """Gaussian white noise, σ = 1: skewness 0 ± 0.013, kurtosis 3 ± 0.026 (standard errors √(6/N), √(24/N))."""
    return np.random.default_rng(97).normal(0.0, 1.0, N)


# --- amplitude resolution -----------------------------------------------------------------------------------------

def test_a_finely_resolved_signal_passes_the_amplitude_resolution_test(noise: np.ndarray) -> None:
    # 1000 Gaussian values in 100 bins over 7σ: the outermost bins (3.43σ..3.5σ) expect 1000·3e-4 ≈ 0.3 values,
    # so only a few per cent of the bins can be empty, far from 70 %
    assert vm97.amplitude_resolution(noise) == 0


def test_a_coarsely_quantised_signal_fails_it(noise: np.ndarray) -> None:
    # a resolution of 0.5σ leaves at most 15 distinct values in a 7σ histogram of 100 bins: ≥ 85 % empty
    coarse = np.round(noise / 0.5) * 0.5
    assert vm97.amplitude_resolution(coarse) == 1
    # and the limit is honoured: accepting 90 % empty bins passes it
    assert vm97.amplitude_resolution(coarse, ar_hf_lim=90.0) == 0


def test_one_badly_resolved_window_is_enough(noise: np.ndarray) -> None:
    x = noise.copy()
    x[5000:6000] = np.round(x[5000:6000] / 0.5) * 0.5   # windows start every 500 records: 5000..6000 is one
    assert vm97.amplitude_resolution(x) == 1


# --- dropouts -----------------------------------------------------------------------------------------------------

def test_white_noise_has_no_dropouts(noise: np.ndarray) -> None:
    # the chance that k consecutive values share one of 100 bins is < 0.04^(k-1): no run near 10 % of 1000
    assert vm97.dropouts(noise) == 0


def test_a_signal_stuck_in_a_central_bin_for_more_than_10_percent_of_a_window_is_flagged(noise: np.ndarray) -> None:
    x = noise.copy()
    x[10_000:10_150] = 0.01     # 150 records near the mean: ≥ 101 of them in one window of 1000 (> 10 %)
    assert vm97.dropouts(x) == 1
    x = noise.copy()
    x[10_000:10_060] = 0.01     # 60 records: 6 % at most, under the central limit of 10 %
    assert vm97.dropouts(x) == 0


def test_extreme_bins_have_the_lower_limit(noise: np.ndarray) -> None:
    x = noise.copy()
    x[10_000:10_080] = 3.0       # 80 records at +3σ: beyond the 90th percentile (1.28σ): 8 % > 6 % of a window
    assert vm97.dropouts(x) == 1
    assert vm97.dropouts(x, do_hf2_lim=9.0) == 0   # but < 10 %, so a central-bin limit alone would pass it


# --- skewness and kurtosis ----------------------------------------------------------------------------------------

def test_gaussian_noise_passes_skewness_and_kurtosis(noise: np.ndarray) -> None:
    assert vm97.skewness_kurtosis(noise) == (0, 0)


def test_an_exponential_signal_gets_both_flags() -> None:
    # exponential distribution: skewness 2, kurtosis 9 -> outside the hard (kurtosis ≤ 8) and soft ranges
    x = np.random.default_rng(3).exponential(1.0, N)
    assert vm97.skewness_kurtosis(x) == (1, 1)


def test_a_moderately_skewed_signal_gets_only_the_soft_flag() -> None:
    # a gamma distribution with shape 2 has skewness 2/√2 = 1.41 (soft limit 1, hard 2) and kurtosis 3 + 6/2 = 6
    # (soft limit 5, hard 8): soft only
    x = np.random.default_rng(4).gamma(2.0, 1.0, N)
    assert vm97.skewness_kurtosis(x) == (0, 1)


def test_the_limits_are_the_callers() -> None:
    x = np.random.default_rng(4).gamma(2.0, 1.0, N)
    assert vm97.skewness_kurtosis(x, vm97.SkewKurtLimits(sk_sf_skmax=1.6, sk_sf_kumax=7.0)) == (0, 0)


# --- discontinuities ----------------------------------------------------------------------------------------------

def test_a_step_in_the_mean_is_a_discontinuity(noise: np.ndarray) -> None:
    # a step of 5 units in the middle: the Haar transform centred on it sees x̄₂ − x̄₁ = 5 (± 2σ/√3000 = 0.04)
    x = noise + np.where(np.arange(N) >= N // 2, 5.0, 0.0)
    assert vm97.discontinuities(x, FS, mean_hf=4.0, mean_sf=2.7) == (1, 1)
    # a step of 3.3: soft (2.7) but not hard (4)
    x = noise + np.where(np.arange(N) >= N // 2, 3.3, 0.0)
    assert vm97.discontinuities(x, FS, mean_hf=4.0, mean_sf=2.7) == (0, 1)


def test_noise_has_no_discontinuity(noise: np.ndarray) -> None:
    # the means of two 3000-record halves of σ = 1 noise differ by ~0.026: far below 2.7
    assert vm97.discontinuities(noise, FS, mean_hf=4.0, mean_sf=2.7) == (0, 0)


def test_a_jump_of_the_variance_is_a_discontinuity(noise: np.ndarray) -> None:
    # σ 1 then 3 with equal means: the period's variance is (1 + 9)/2 = 5, the window centred on the change sees
    # 9 − 1 = 8, relative 1.6: over a soft limit of 1.5, under the hard 3 (with one change in the middle of the
    # period the relative change stays below 2 whatever the ratio, so EddyPro's soft default 2 is not tested here)
    x = noise * np.where(np.arange(N) >= N // 2, 3.0, 1.0)
    assert vm97.discontinuities(x, FS, mean_hf=1e9, mean_sf=1e9, var_hf=3.0, var_sf=1.5) == (0, 1)
    assert vm97.discontinuities(noise, FS, mean_hf=1e9, mean_sf=1e9, var_hf=3.0, var_sf=1.5) == (0, 0)


def test_haar_transforms_are_exact_on_a_known_series() -> None:
    # 0 0 0 0 1 1 1 1 with half = 2: windows [0 0|0 0], [0 0|0 1], [0 0|1 1], [0 1|1 1], [1 1|1 1]; the largest mean
    # jump is 1 (window 3); variances of halves: 0/0, 0/0.25, 0/0, 0.25/0, 0/0 -> 0.25 / var(all) 0.25 = 1
    jump, dvar = vm97.haar_transforms(np.array([0, 0, 0, 0, 1, 1, 1, 1], dtype=float), 2)
    assert jump == pytest.approx(1.0)
    assert dvar == pytest.approx(1.0)


# --- time lag -----------------------------------------------------------------------------------------------------

def _lagged_pair(lag_records: int) -> tuple[np.ndarray, np.ndarray]:
    """w and c = w delayed by lag_records (c[i + k] = w[i]), smoothed so the covariance decays over ~10 records."""
    rng = np.random.default_rng(11)
    base = np.convolve(rng.normal(size=N + 100), np.ones(10) / 10, mode="same")[:N]
    c = np.roll(base, lag_records)
    return base, c


def test_the_expected_lag_at_the_covariance_maximum_passes() -> None:
    w, c = _lagged_pair(4)   # 0.2 s
    assert vm97.time_lag(w, c, FS, expected_s=0.2, min_s=0.0, max_s=2.0) == (0, 0)


def test_an_expected_lag_far_from_the_maximum_fails() -> None:
    # moving-average-of-10 noise: its autocovariance at 6 records is 4/10 of the variance (60 % drop > 20 %)
    w, c = _lagged_pair(10)  # 0.5 s
    assert vm97.time_lag(w, c, FS, expected_s=0.2, min_s=0.0, max_s=2.0) == (1, 1)


def test_a_small_offset_is_only_soft() -> None:
    # one record off: the autocovariance of a 10-point moving average at lag 1 is 9/10 of its variance, a drop of
    # about 10 %: under the hard limit of 20 %, over a soft limit of 5 %
    w, c = _lagged_pair(5)
    hard, soft = vm97.time_lag(w, c, FS, expected_s=0.2, min_s=0.0, max_s=2.0, tl_sf_lim=5.0)
    assert (hard, soft) == (0, 1)


# --- angle of attack ----------------------------------------------------------------------------------------------

def test_the_angle_of_attack_counts_records_outside_the_range() -> None:
    u = np.full(1000, 1.0)
    v = np.zeros(1000)
    w = np.zeros(1000)
    w[:101] = 1.0                         # 45°: 10.1 % outside ±30° -> more than 10 %
    assert vm97.angle_of_attack(u, v, w) == 1
    w[100] = 0.5                           # atan(0.5) = 26.6°: inside; now exactly 10.0 % outside -> not "more"
    assert vm97.angle_of_attack(u, v, w) == 0
    assert vm97.angle_of_attack(u, v, np.full(1000, -0.7)) == 1   # atan(0.7) = 35°: below −30° everywhere


# --- steadiness of the horizontal wind ----------------------------------------------------------------------------

def test_a_wind_that_turns_and_slows_is_not_steady() -> None:
    t = np.arange(N) / FS
    d = t[-1]
    u = 4.0 - 2.4 * t / d                  # along-wind 4 -> 1.6 m s-1: δu = −2.4, ū = 2.8 -> RNS 0.857 > 0.5
    v = np.zeros(N)
    flag, rns = vm97.horizontal_wind_steadiness(u, v, FS)
    assert flag == 1
    assert rns == pytest.approx(2.4 / 2.8, rel=1e-9)
    u = 4.0 - 1.2 * t / d                  # δu = −1.2, ū = 3.4 -> 0.353
    assert vm97.horizontal_wind_steadiness(u, v, FS) == (0, pytest.approx(1.2 / 3.4, rel=1e-9))


def test_a_crosswind_trend_counts_in_any_mean_direction() -> None:
    # mean wind towards 30°: a trend of ±1.5 m s-1 across it, on a 2 m s-1 mean -> RNS = 1.5/2 = 0.75
    t = np.arange(N) / FS
    cross = 1.5 * (t / t[-1] - 0.5)
    ang = math.radians(30.0)
    u = 2.0 * math.cos(ang) - cross * math.sin(ang)
    v = 2.0 * math.sin(ang) + cross * math.cos(ang)
    flag, rns = vm97.horizontal_wind_steadiness(u, v, FS)
    assert (flag, rns) == (1, pytest.approx(0.75, rel=1e-9))


# --- edge cases ---------------------------------------------------------------------------------------------------

def test_an_all_missing_series_is_not_computable() -> None:
    assert vm97.amplitude_resolution(NAN) is None
    assert vm97.dropouts(NAN) is None
    assert vm97.skewness_kurtosis(NAN) == (None, None)
    assert vm97.discontinuities(NAN, FS, mean_hf=4.0, mean_sf=2.7) == (None, None)
    assert vm97.time_lag(NAN, NAN, FS, expected_s=0.0, min_s=0.0, max_s=1.0) == (None, None)
    assert vm97.angle_of_attack(NAN, NAN, NAN) is None
    assert vm97.horizontal_wind_steadiness(NAN, NAN, FS) == (None, pytest.approx(math.nan, nan_ok=True))


def test_a_constant_series() -> None:
    x = np.full(N, 3.0)
    assert vm97.amplitude_resolution(x) == 1           # one value: 99 of 100 bins empty
    assert vm97.dropouts(x) == 1                       # one run as long as the window
    assert vm97.skewness_kurtosis(x) == (None, None)   # moments undefined
    assert vm97.discontinuities(x, FS, mean_hf=4.0, mean_sf=2.7) == (0, 0)
    assert vm97.time_lag(x, x, FS, expected_s=0.0, min_s=0.0, max_s=1.0) == (None, None)  # no covariance
    assert vm97.horizontal_wind_steadiness(x, np.zeros(N), FS) == (0, 0.0)
    assert vm97.horizontal_wind_steadiness(np.zeros(N), np.zeros(N), FS)[0] is None        # no mean wind


def test_a_period_shorter_than_one_window_is_one_window(noise: np.ndarray) -> None:
    short = noise[:300]                                 # 15 s: shorter than the 1000-record and the 300-s windows
    assert vm97.amplitude_resolution(short) == 0        # 300 values over 100 bins within ±3.5σ: most bins filled
    assert vm97.amplitude_resolution(np.round(short)) == 1
    assert vm97.dropouts(short) == 0
    assert vm97.skewness_kurtosis(short) == (0, 0)
    step = short + np.where(np.arange(300) >= 150, 5.0, 0.0)
    assert vm97.discontinuities(step, FS, mean_hf=4.0, mean_sf=2.7) == (1, 1)
    assert vm97.discontinuities(short[:3], FS, mean_hf=4.0, mean_sf=2.7) == (None, None)


def test_missing_records_are_left_out(noise: np.ndarray) -> None:
    x = noise.copy()
    x[::7] = np.nan                                     # 14 % missing, spread
    assert vm97.amplitude_resolution(x) == 0
    assert vm97.dropouts(x) == 0
    assert vm97.skewness_kurtosis(x) == (0, 0)
    assert vm97.discontinuities(x, FS, mean_hf=4.0, mean_sf=2.7) == (0, 0)


# --- in the engine, on the real DE-HoH period -----------------------------------------------------------------------

ALL_TESTS = {f"test_{t}": True for t in ("al", "ar", "do", "sk", "ds", "tl", "aa", "ns")}


@pytest.fixture(scope="module")
def hoh() -> tuple[RawPeriod, ProcessingSettings]:
    """The vendored DE-HoH 30-min period with run R1's EddyPro project (every statistical test off)."""
    run = EC_RAW / "eddypro" / "R1_dr_ba_maxcov_wpl_30min"
    md = load_metadata(run / "input_DE-HoH.metadata")
    settings = load_settings(run / "eddypro_settings_echo.eddypro")
    (period,) = read_raw_file(RAW_FILE, md, settings)
    return period, settings


def test_every_test_on_leaves_every_flux_identical(hoh: tuple[RawPeriod, ProcessingSettings]) -> None:
    """The tests only flag (EddyPro 7 Help): the same period with all eight on gives bit-identical numbers, and the
    only new values are the flags."""
    period, settings = hoh
    off = process_period(period, settings)
    on = process_period(period, settings.model_copy(update={"statistical_tests": StatisticalTests(**ALL_TESTS)}))
    assert off.status == on.status == "ok"
    assert not any("VM97" in k for k in off.values)
    flags = {k: x for k, x in on.values.items() if "VM97" in k}
    assert {k: x for k, x in on.values.items() if k not in flags}.keys() == off.values.keys()
    for k, x in off.values.items():
        assert on.values[k] == x or (math.isnan(x) and math.isnan(on.values[k])), k
    for name in ("FC", "H", "LE", "TAU", "USTAR"):
        assert math.isfinite(on.values[name])
    # every selected test ran on every series the period has: AL, AR, DO, SK hard and soft, DS hard and soft on u,
    # v, w, ts, co2, h2o (no spike flags: despiking is off); the time lag's hard and soft flags of CO2 and H2O; AOA;
    # NSHW
    assert len(flags) == 6 * 7 + 2 * 2 + 2, sorted(flags)
    assert set(flags.values()) <= {0.0, 1.0}


def test_the_flag_strings_in_eddypro_s_full_output(hoh: tuple[RawPeriod, ProcessingSettings]) -> None:
    """With the tests on the full output carries EddyPro's 8-prefixed strings, 9 for CH4 and the 4th gas (absent);
    with them off EddyPro's all-9 strings, as in its R1 run (every test off)."""
    period, settings = hoh

    def row(s: ProcessingSettings) -> dict[str, str]:
        buf = io.StringIO()
        r = process_period(period, s)
        write_eddypro_full_output([r], buf)
        lines = buf.getvalue().splitlines()
        return dict(zip(lines[1].split(","), lines[3].split(","), strict=True))

    off = row(settings)
    flag_columns = ["spikes_hf", "amplitude_resolution_hf", "drop_out_hf", "absolute_limits_hf",
                    "skewness_kurtosis_hf", "skewness_kurtosis_sf", "discontinuities_hf", "discontinuities_sf",
                    "timelag_hf", "timelag_sf", "attack_angle_hf", "non_steady_wind_hf"]
    (eddypro_r1,) = read_eddypro_table(EC_RAW / "eddypro" / "R1_dr_ba_maxcov_wpl_30min" / "eddypro_full_output.csv")
    assert {c: off[c] for c in flag_columns} == {c: eddypro_r1[c] for c in flag_columns}
    assert off["spikes_hf"] == "899999999" and off["timelag_hf"] == "89999" and off["attack_angle_hf"] == "89"
    on = row(settings.model_copy(update={"statistical_tests": StatisticalTests(test_ar=True, test_tl=True,
                                                                               test_aa=True)}))
    assert on["spikes_hf"] == "899999999"                      # despiking off: 9 for every series
    assert on["amplitude_resolution_hf"][0] == "8"
    assert len(on["amplitude_resolution_hf"]) == 9
    assert set(on["amplitude_resolution_hf"][1:7]) <= {"0", "1"}   # u v w ts co2 h2o tested
    assert on["amplitude_resolution_hf"][7:] == "99"               # no CH4, no 4th gas
    assert len(on["timelag_hf"]) == 5 and on["timelag_hf"][3:] == "99"
    assert on["attack_angle_hf"] in ("80", "81") and on["non_steady_wind_hf"] == "89"


def test_an_eddypro_project_with_every_test_on_runs_and_gives_r1_s_fluxes(tmp_path: Path) -> None:
    """The command that stopped with exit 2 on test_ar..test_ns = 1 now runs R1's project with all of them on: exit
    0, the same AmeriFlux fluxes as R1's own project, and the flag strings in the full output."""
    from typer.testing import CliRunner

    from gateway.cli import app
    from gateway.flux.eddypro import read_project

    run = EC_RAW / "eddypro" / "R1_dr_ba_maxcov_wpl_30min"
    flat = read_project((run / "eddypro_settings_echo.eddypro").read_text())
    project = tmp_path / "all_tests.eddypro"
    project.write_text(";EDDYPRO_PROCESSING\n[RawProcess_Settings]\n" + "".join(
        f"{k}={'1' if k in ALL_TESTS else v}\n" for k, v in flat.items()))

    def flux_ec(settings: Path, fmt: str) -> Path:
        out = tmp_path / f"{settings.stem}.{fmt}.csv"
        res = CliRunner().invoke(app, ["flux", "ec", str(RAW_FILE), "--metadata", str(run / "input_DE-HoH.metadata"),
                                       "--settings", str(settings), "--format", fmt, "--out", str(out)])
        assert res.exit_code == 0, res.output
        return out

    with flux_ec(project, "ameriflux").open(newline="") as fh:
        (on,) = list(csv.DictReader(fh))
    with flux_ec(run / "eddypro_settings_echo.eddypro", "ameriflux").open(newline="") as fh:
        (off,) = list(csv.DictReader(fh))
    for name in ("FC", "H", "LE", "TAU", "USTAR", "FH2O", "CO2_TLAG", "H2O_TLAG", "FC_SSITC_TEST"):
        assert on[name] == off[name], name
    assert on["SETTINGS_HASH"] != off["SETTINGS_HASH"]   # the flags differ, so the result sets are told apart
    assert "U_VM97_AR_HF" in on and "U_VM97_AR_HF" not in off
    with flux_ec(project, "eddypro-full").open(newline="") as fh:
        rows = list(csv.reader(fh))
    full = dict(zip(rows[1], rows[3], strict=True))
    assert all(full[c].startswith("8") and set(full[c][1:]) <= {"0", "1", "9"} for c in (
        "amplitude_resolution_hf", "drop_out_hf", "absolute_limits_hf", "skewness_kurtosis_hf", "discontinuities_sf",
        "timelag_hf", "attack_angle_hf", "non_steady_wind_hf"))
    assert full["spikes_hf"] == "899999999"   # R1 does not despike


def test_the_defaults_are_eddypro_s() -> None:
    """Every parameter's default is the value EddyPro 7.0.9 wrote into R1's settings echo (its own defaults)."""
    from gateway.flux.eddypro import TEST_PARAMETERS, read_project

    flat = read_project((EC_RAW / "eddypro" / "R1_dr_ba_maxcov_wpl_30min" / "eddypro_settings_echo.eddypro")
                        .read_text())
    defaults = StatisticalTests()
    keys = [k for ks in TEST_PARAMETERS.values() for k in ks]
    assert len(keys) == 40  # ar 3, do 3, sk 8, ds 16, tl 6, aa 3, ns 1
    for key in keys:
        assert getattr(defaults, key) == float(flat[key]), key
    assert not any(getattr(defaults, s) for s in TEST_PARAMETERS)


@pytest.mark.parametrize(("tests", "named"), [
    ({"ar_bins": 1}, "ar_bins"), ({"test_zz": True}, "test_zz"), ({"aa_min": 40.0}, "aa_min"),
    ({"do_hf1_lim": 150.0}, "do_hf1_lim"),
])
def test_bad_settings_name_the_key(tests: dict[str, object], named: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=named):
        ProcessingSettings.model_validate({"statistical_tests": tests})
