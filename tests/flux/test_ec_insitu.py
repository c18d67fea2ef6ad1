"""In-situ spectral assessment (Ibrom et al. 2007) on synthetic multi-period data with a known truth: the gas is the
same red-noise scalar as the sonic temperature, low-pass filtered with a known first-order IIR cut-off fc (per RH
class for H2O), so the ratio of their power spectra is 1/(1 + (f/fc)²) by construction."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest

from gateway.flux.ec import insitu, speccorr
from gateway.flux.ec.engine import flagged_for_assessment, in_situ_assessment, process_period
from gateway.flux.ec.period import RawPeriod
from gateway.flux.ec.settings import ProcessingSettings, SiteMetadata, SpectralCorrection

from .synthetic import END, metadata, settings_of

FS = 10.0
N = 6000  # 10-min periods


def red_scalar(rng: np.random.Generator, n: int = N, tau_s: float = 3.0) -> np.ndarray:
    """AR(1) red noise with a `tau_s` integral scale (unit variance)."""
    a = math.exp(-1.0 / (FS * tau_s))
    e = rng.standard_normal(n) * math.sqrt(1 - a * a)
    x = np.empty(n)
    x[0] = e[0]
    for i in range(1, n):
        x[i] = a * x[i - 1] + e[i]
    return x


def iir(x: np.ndarray, fc: float) -> np.ndarray:
    """x through the first-order low-pass |H|² = 1/(1 + (f/fc)²), applied in the frequency domain."""
    f = np.fft.rfftfreq(x.size, 1.0 / FS)
    return np.fft.irfft(np.fft.rfft(x) / np.sqrt(1.0 + (f / fc) ** 2), x.size)


TRUE_FC = {30.0: 0.8, 50.0: 0.3, 70.0: 0.12}  # H2O cut-off by RH class centre, Hz
CO2_FC = 1.2


def synthetic_spectra(n_per_class: int = 12, seed: int = 1) -> list[insitu.PeriodSpectra]:
    rng = np.random.default_rng(seed)
    edges = insitu.frequency_bins(FS, N)
    out = []
    for rh, fc in TRUE_FC.items():
        for _ in range(n_per_class):
            ts = red_scalar(rng)
            ratio = {"h2o": insitu.binned_ratio(ts, iir(ts, fc), FS, edges, 0.005, 2.0),
                     "co2": insitu.binned_ratio(ts, iir(ts, CO2_FC), FS, edges, 0.005, 2.0)}
            out.append(insitu.PeriodSpectra(f=insitu.bin_centres(edges), ratio=ratio, rh=rh, month=7,
                                            usable={"h2o": True, "co2": True}))
    return out


def test_assessment_recovers_the_cut_off_of_each_rh_class_and_of_co2() -> None:
    sa = insitu.assess(synthetic_spectra(), fit_range={"h2o": (0.005, 2.0), "co2": (0.005, 2.0)})
    for rh, fc in TRUE_FC.items():
        assert sa.h2o_fc(rh) == pytest.approx(fc, rel=0.05), rh
    # classes without spectra take the nearest assessed class, keeping their own (zero) numerosity
    assert sa.h2o_fc(10.0) == sa.h2o_fc(30.0) and sa.h2o_fc(90.0) == sa.h2o_fc(70.0)
    assert [c[4] for c in sa.h2o_classes] == [0, 0, 12, 0, 12, 0, 12, 0, 0]
    assert all(fc == pytest.approx(CO2_FC, rel=0.05) for _, fc in sa.gas_monthly["CO2"])


def test_too_few_spectra_are_refused() -> None:
    with pytest.raises(ValueError, match="no RH class has 10 usable H2O spectra"):
        insitu.assess(synthetic_spectra(n_per_class=3))


def test_noise_removal_restores_the_transfer_function_under_white_noise() -> None:
    """White noise added to the gas flattens its spectrum at high frequency; taking its level above 3 Hz away
    restores the fitted cut-off."""
    rng = np.random.default_rng(4)
    edges = insitu.frequency_bins(FS, N)
    f = insitu.bin_centres(edges)
    noisy, cleaned = [], []
    for _ in range(12):
        ts = red_scalar(rng)
        gas = iir(ts, 0.3) + 0.3 * rng.standard_normal(N)
        noisy.append(insitu.binned_ratio(ts, gas, FS, edges, 0.005, 2.0))
        cleaned.append(insitu.binned_ratio(ts, gas, FS, edges, 0.005, 2.0, noise_fmin=3.0))
    fc_noisy = insitu.fit_iir(f, insitu.mean_ratio(noisy), 0.005, 2.0)[1]
    fc_clean = insitu.fit_iir(f, insitu.mean_ratio(cleaned), 0.005, 2.0)[1]
    assert fc_clean == pytest.approx(0.3, rel=0.05)
    assert not 0.15 < fc_noisy < 0.6  # the noise floor ruins the fit


def test_ts_flux_attenuation_and_the_ibrom_factor_model() -> None:
    """w'Ts' through the IIR filter at each cut-off is the covariance of w with the filtered Ts; the Ibrom et al.
    (2007) model fitted to those attenuations over periods with different wind speeds corrects at least 70 % of
    the loss of a gas flux filtered at 0.3 Hz (the model is Ibrom's empirical form, the synthetic cospectra are
    Lorentzian, so not to the last per cent)."""
    rng = np.random.default_rng(9)
    u_values, cutoffs, atts, checks = [], [], [], []
    for k in range(12):
        ts = red_scalar(rng, tau_s=1.0 + 0.3 * k)  # stands for higher wind speed: shorter scales
        w = 0.6 * ts + 0.8 * red_scalar(rng, tau_s=0.5)
        att = insitu.ts_flux_attenuation(w, ts, FS)
        direct = np.mean((w - w.mean()) * iir(ts - ts.mean(), insitu.CF_MODEL_FC[2])) / np.mean(
            (w - w.mean()) * (ts - ts.mean()))
        assert att[2] == pytest.approx(direct, rel=1e-9)
        u = 6.0 / (1.0 + 0.3 * k)
        u_values += [u] * att.size
        cutoffs += list(insitu.CF_MODEL_FC)
        atts += list(att)
        gas = iir(ts, 0.3)
        checks.append((u, np.mean((w - w.mean()) * (ts - ts.mean())) / np.mean((w - w.mean()) * (gas - gas.mean()))))
    c1, c2 = insitu.fit_cf_model(np.array(u_values), np.array(cutoffs), np.array(atts))
    for u, true_cf in checks:
        assert abs(c1 * u / (c2 + 0.3) + 1.0 - true_cf) < 0.3 * (true_cf - 1.0)


def test_horst_factor_limits() -> None:
    assert speccorr.horst1997_factor(3.0, 20.0, -0.1, 0.0) == 1.0
    slow = speccorr.horst1997_factor(3.0, 20.0, -0.1, 1.0 / (2 * math.pi * 0.1))
    fast = speccorr.horst1997_factor(3.0, 20.0, -0.1, 1.0 / (2 * math.pi * 1.0))
    assert slow > fast > 1.0
    # Horst (1997), unstable: CF − 1 = (2π·0.085·τ·u/z)^(7/8)
    assert fast - 1.0 == pytest.approx((0.085 * 3.0 / 20.0 / 1.0) ** 0.875, rel=1e-12)


def closed_path_metadata() -> SiteMetadata:
    """A Gill HS-50 and an LI-7200 (closed path) recording u, v, w, Ts and an H2O mixing ratio."""
    return metadata(columns=[{"index": 1, "variable": "u"}, {"index": 2, "variable": "v"},
                             {"index": 3, "variable": "w"}, {"index": 4, "variable": "ts"},
                             {"index": 5, "variable": "h2o", "measure_type": "mixing_ratio", "min_timelag": 0,
                              "max_timelag": 1}],
                    acquisition_frequency=FS, analyzer={"model": "li7200_1", "path_type": "closed"},
                    sonic={"height": 30.0, "model": "hs_50_1"})


def test_engine_assesses_in_situ_and_corrects_with_it() -> None:
    """24 ten-minute closed-path periods whose H2O is the temperature signal low-passed at 0.3 Hz: the engine's own
    assessment finds fc = 0.3 Hz, and the Fratini factor computed with it exceeds 1 as the attenuation demands."""
    rng = np.random.default_rng(3)
    md = closed_path_metadata()
    periods = []
    for k in range(24):
        t = red_scalar(rng)
        w = 0.5 * t + 0.6 * red_scalar(rng, tau_s=0.5)
        data = {"u": 3.0 + 0.5 * red_scalar(rng), "v": 0.3 * red_scalar(rng), "w": w, "ts": 295.0 + 0.5 * t,
                "h2o": 12.0 + 0.4 * iir(t, 0.3)}
        end = END + timedelta(minutes=10 * k)
        periods.append(RawPeriod(data=data, metadata=md, start=end - timedelta(minutes=10), end=end,
                                 measure_types={"h2o": "mixing_ratio"}, expected_records=N))
    st = settings_of(avrg_len=10, hf_meth="fratini_2012", tlag_meth="none", sa_min_un_le=1.0, sa_min_un_h=1.0,
                     sa_min_un_ustar=0.0)
    sa = in_situ_assessment(periods, st)
    rh = process_period(periods[0], settings_of(avrg_len=10, tlag_meth="none")).get("RH")
    assert sa.h2o_fc(rh) == pytest.approx(0.3, rel=0.05)
    r = process_period(periods[0], st, spectral_assessment=sa)
    assert r.get("LE_SCF") > 1.0 and r.get("LE") > r.get("LE") / r.get("LE_SCF")


# --- selection by flags (EddyPro sa_use_vm_flags, sa_use_foken_low, sa_use_foken_mid) --------------------------------

def flagged_periods() -> list[RawPeriod]:
    """24 ten-minute closed-path periods as in the test above; every 6th from the 2nd has its H2O quantised to
    0.2 mmol mol-1 (σ ≈ 0.3: about 5 distinct values over 7σ, so more than 70 % of the amplitude-resolution bins are
    empty — a hard flag), and every 6th from the 5th has a slow oscillation of w and H2O (one cycle per period), which
    the 100-s sub-period covariances of the steady-state test hardly see and the whole period's does: in opposite
    phase (periods 4 and 16) the covariance turns negative against positive sub-period ones, a deviation over 100 %
    (Foken class 6 or worse, Mauder & Foken flag 2); in phase (10 and 22) it grows by about 3/4 (flag 1)."""
    rng = np.random.default_rng(3)
    md = closed_path_metadata()
    slow = np.sin(2 * np.pi * np.arange(N) / N)
    periods = []
    for k in range(24):
        t = red_scalar(rng)
        w = 0.5 * t + 0.6 * red_scalar(rng, tau_s=0.5)
        h2o = 12.0 + 0.4 * iir(t, 0.3)
        if k % 6 == 1:
            h2o = np.round(h2o / 0.2) * 0.2
        if k % 6 == 4:
            w, h2o = w + 0.4 * slow, h2o + (-3.0 if k % 12 == 4 else 3.0) * slow
        data = {"u": 3.0 + 0.5 * red_scalar(rng), "v": 0.3 * red_scalar(rng), "w": w, "ts": 295.0 + 0.5 * t,
                "h2o": h2o}
        end = END + timedelta(minutes=10 * k)
        periods.append(RawPeriod(data=data, metadata=md, start=end - timedelta(minutes=10), end=end,
                                 measure_types={"h2o": "mixing_ratio"}, expected_records=N))
    return periods


def selection_settings(**options: object) -> ProcessingSettings:
    return settings_of(avrg_len=10, hf_meth="fratini_2012", tlag_meth="none", sa_min_un_le=1.0, sa_min_un_h=1.0,
                       sa_min_un_ustar=0.0, sa_min_st_le=0.0, sa_min_st_h=0.0, sa_min_st_ustar=0.0, sa_max_le=1e4,
                       statistical_tests={"test_ar": True}, **options)


def engine_flags(periods: list[RawPeriod], st: ProcessingSettings) -> list[dict[str, float]]:
    """The engine's own values of each period, without the spectral correction (the selection's inner pass)."""
    plain = st.model_copy(update={"hf_meth": SpectralCorrection.NONE})
    return [process_period(p, plain).values for p in periods]


def test_a_period_with_a_hard_statistical_flag_is_left_out_of_the_spectra() -> None:
    periods = flagged_periods()
    st = selection_settings(sa_use_vm_flags=True)
    values = engine_flags(periods, st)
    hard = [k for k, v in enumerate(values) if v["H2O_VM97_AR_HF"] == 1.0]
    assert hard == [1, 7, 13, 19]                       # the quantised ones, and only they
    sa = in_situ_assessment(periods, st)
    assert sa.selection["h2o"] == {"periods": 24, "flux": 0, "vm97": 4, "foken": 0, "used": 20}
    # exactly the assessment of the other 20 periods without any flag selection
    rest = in_situ_assessment([p for k, p in enumerate(periods) if k not in hard], selection_settings())
    assert sa.h2o_classes == rest.h2o_classes
    # with the key off the flagged periods are used (the statistical tests are not even run in the inner pass)
    off = in_situ_assessment(periods, selection_settings())
    assert off.selection["h2o"] == {"periods": 24, "flux": 0, "vm97": 0, "foken": 0, "used": 24}
    assert off.h2o_classes != sa.h2o_classes


def test_foken_flags_of_the_chosen_classes_leave_a_period_out() -> None:
    periods = flagged_periods()
    values = engine_flags(periods, selection_settings())
    flags = [v["LE_SSITC_TEST"] for v in values]
    low = [k for k, f in enumerate(flags) if f == 2.0]
    mid = [k for k, f in enumerate(flags) if f == 1.0]
    assert set(low) >= {4, 16} and set(mid) >= {10, 22}                               # the slow oscillations
    assert len(periods) - len(low) - len(mid) >= 10
    sa = in_situ_assessment(periods, selection_settings(sa_use_foken_low=True))
    assert sa.selection["h2o"] == {"periods": 24, "flux": 0, "vm97": 0, "foken": len(low), "used": 24 - len(low)}
    rest = in_situ_assessment([p for k, p in enumerate(periods) if k not in low], selection_settings())
    assert sa.h2o_classes == rest.h2o_classes
    both = in_situ_assessment(periods, selection_settings(sa_use_foken_low=True, sa_use_foken_mid=True))
    assert both.selection["h2o"]["foken"] == len(low) + len(mid)
    # qc_meth none: the selection computes Mauder & Foken flags for itself
    none = in_situ_assessment(periods, selection_settings(sa_use_foken_low=True, qc_meth="none"))
    assert none.selection == sa.selection and none.h2o_classes == sa.h2o_classes


def test_which_flags_count_for_which_gas() -> None:
    st = selection_settings(sa_use_vm_flags=True, sa_use_foken_low=True)
    assert flagged_for_assessment({"W_VM97_DO_HF": 1.0}, "co2", st) == (True, False)      # the wind: every gas
    assert flagged_for_assessment({"VM97_AOA_HF": 1.0}, "h2o", st) == (True, False)
    assert flagged_for_assessment({"CO2_VM97_AR_HF": 1.0}, "co2", st) == (True, False)
    assert flagged_for_assessment({"CO2_VM97_AR_HF": 1.0}, "h2o", st) == (False, False)   # another gas's flag
    assert flagged_for_assessment({"H2O_VM97_SK_SF": 1.0, "TS_VM97_SK_HF": 0.0}, "h2o", st) == (False, False)
    assert flagged_for_assessment({"FC_SSITC_TEST": 2.0}, "co2", st) == (False, True)
    assert flagged_for_assessment({"FC_SSITC_TEST": 1.0}, "co2", st) == (False, False)     # mid not chosen
    foken = selection_settings(sa_use_foken_mid=True, qc_meth="foken_2004")
    assert [flagged_for_assessment({"LE_SSITC_TEST": float(c)}, "h2o", foken)[1] for c in range(1, 10)] == [
        False, False, True, True, True, False, False, False, False]                          # classes 3-5: medium
    off = selection_settings()
    assert flagged_for_assessment({"W_VM97_DO_HF": 1.0, "FC_SSITC_TEST": 2.0}, "co2", off) == (False, False)
