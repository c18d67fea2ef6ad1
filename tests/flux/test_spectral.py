"""Spectral corrections: transfer-function limits and -3 dB points, correction-factor identities, the EddyPro
spectral-assessment parser and the DE-HoH V run's correction factors."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from gateway.flux.ec import spectral as S

from .conftest import EC_RAW, V_RUN

SA_FILE = EC_RAW / "spectral_assessment.txt"


F = S.frequency_grid(1e-6, 10.0, 20000)


def test_block_average_limits_and_zeros() -> None:
    tf = S.tf_block_average(F, 1800.0)
    # low frequency: 1 - sinc^2(x) ~ x^2 / 3 with x = pi f T = 5.7e-3
    assert tf[0] == pytest.approx((math.pi * F[0] * 1800.0) ** 2 / 3.0, rel=1e-4)
    assert tf[-1] == pytest.approx(1.0, abs=1e-6)
    # sin(pi f T) = 0 at f = k / T: exactly 1 there
    assert S.tf_block_average([1 / 1800.0, 3 / 1800.0], 1800.0) == pytest.approx([1.0, 1.0], abs=1e-12)


@pytest.mark.parametrize("tau", [0.05, 0.1, 1.0])
def test_first_order_running_mean_and_iir_half_power_points(tau: float) -> None:
    f3 = 1.0 / (2 * math.pi * tau)
    assert S.tf_first_order([f3], tau)[0] == pytest.approx(0.5, rel=1e-12)
    assert S.tf_running_mean([f3], tau)[0] == pytest.approx(0.5, rel=1e-12)
    assert S.iir_lowpass([tau], tau)[0] == pytest.approx(0.5, rel=1e-12)  # IIR: 0.5 at f = fc
    assert S.tf_first_order([0.0], tau)[0] == 1.0
    assert S.tf_running_mean([0.0], tau)[0] == 0.0


def test_path_separation_and_tube_transfer_functions_go_to_one_at_low_frequency() -> None:
    for tf in (
        S.tf_w_path(F, 0.125, 3.0),
        S.tf_scalar_path(F, 0.11, 3.0),
        S.tf_sensor_separation(F, 0.2, 3.0),
        S.tf_tube_turbulent(F, 0.711, 0.00265, 15.0),
    ):
        assert tf[0] == pytest.approx(1.0, abs=1e-4)
        assert np.all(np.diff(tf) <= 1e-12)  # monotonically non-increasing
        assert tf[-1] < 1.0
    # line averaging is a function of n = f p / u only: doubling both p and u leaves it unchanged
    assert np.allclose(S.tf_w_path(F, 0.2, 4.0), S.tf_w_path(F, 0.1, 2.0))
    # series expansion at small n: scalar path ~ 1 - (2 pi n)/3 ... both strictly below 1 once n ~ 0.1
    assert S.tf_scalar_path([1.0], 0.3, 3.0)[0] < 0.9
    # Moore (1986) separation: exp(-9.9 (f s/u)^1.5) = 0.5 at f s / u = (ln 2 / 9.9)^(2/3)
    n_half = (math.log(2) / 9.9) ** (2 / 3)
    assert S.tf_sensor_separation([n_half * 3.0 / 0.2], 0.2, 3.0)[0] == pytest.approx(0.5, rel=1e-12)


@pytest.mark.parametrize(("zl", "kind"), [(0.0, "scalar"), (-0.5, "scalar"), (0.0, "momentum"), (-0.5, "momentum")])
def test_kaimal_cospectra_are_normalised(zl: float, kind: str) -> None:
    co = S.kaimal_cospectrum(F, 20.0, 3.0, zl, kind)  # type: ignore[arg-type]
    # the published Kaimal / Moncrieff forms integrate to 1 within 7 % (neutral momentum: 12 / (9.6 * 4/3) = 0.94)
    assert float(np.sum(0.5 * (co[1:] + co[:-1]) * np.diff(F))) == pytest.approx(1.0, abs=0.07)


def test_correction_factor_identities() -> None:
    co = S.kaimal_cospectrum(F, 20.0, 3.0)
    assert S.correction_factor(F, co, np.ones_like(F)) == pytest.approx(1.0)
    assert S.correction_factor(F, co, np.full_like(F, 0.5)) == pytest.approx(2.0)
    cf_fast = S.correction_factor(F, co, np.sqrt(S.tf_first_order(F, 0.05)))
    cf_slow = S.correction_factor(F, co, np.sqrt(S.tf_first_order(F, 0.5)))
    assert 1.0 < cf_fast < cf_slow
    # higher wind speed shifts the cospectrum to higher frequency: more high-frequency loss
    co_fast_wind = S.kaimal_cospectrum(F, 20.0, 8.0)
    assert S.correction_factor(F, co_fast_wind, np.sqrt(S.tf_first_order(F, 0.1))) > S.correction_factor(
        F, co, np.sqrt(S.tf_first_order(F, 0.1))
    )
    # Fratini/Ibrom factor: -> 1 for a very high cut-off, grows as fc falls
    ref = np.ones_like(F)
    assert S.fratini2012_factor(F, co, ref, 1e6) == pytest.approx(1.0, abs=1e-8)
    assert S.fratini2012_factor(F, co, ref, 0.2) > S.fratini2012_factor(F, co, ref, 1.0) > 1.0
    assert S.ibrom_cf_model(3.0, 0.5, 0.003, 0.001) == pytest.approx(0.003 * 3.0 / 0.501 + 1.0)


@pytest.fixture(scope="module")
def assessment() -> S.SpectralAssessment:
    return S.parse_spectral_assessment(SA_FILE.read_text())


def test_parse_spectral_assessment(assessment: S.SpectralAssessment) -> None:
    assert len(assessment.h2o_classes) == 9
    assert assessment.h2o_classes[3] == (35.0, 45.0, 0.93136, 0.50202, 165)
    assert assessment.h2o_fc(42.375) == 0.50202
    assert len(assessment.gas_monthly["CO2"]) == 12
    assert assessment.gas_monthly["CO2"][6] == (0.99058, 1.22802)
    assert all(math.isnan(fn) and math.isnan(fc) for fn, fc in assessment.gas_monthly["CH4"])
    assert assessment.rh_fc_exp == (-20.782512, 13.040339, -2.622372)
    assert assessment.cf_model["unstable"] == (0.0030457, 0.0008648)
    assert assessment.cf_model["stable"] == (0.0049239, 0.0011642)


def _fluxnet() -> dict[str, float]:
    path = V_RUN / "eddypro_fluxnet.csv"
    with path.open() as fh:
        head, values = list(csv.reader(fh))[:2]
    out = {}
    for k, v in zip(head, values, strict=True):
        try:
            out[k] = float(v)
        except ValueError:
            continue
    return out


def test_v_run_correction_factors(assessment: S.SpectralAssessment) -> None:
    """DE-HoH V run (EddyPro lf_meth=1, hf_meth=4, Fratini et al. 2012): inputs printed by EddyPro (mean wind, z - d,
    final z/L, RH 42.4 % -> fc 0.502 Hz for H2O, fc 1.228 Hz for CO2 in July, sonic paths 12.5 / 11 cm, 30-min
    block average). speccorr reproduces H_scf, Tau_scf, LE_scf and co2_scf to 2e-4 (docs/flux-ec.md)."""
    from gateway.flux.ec.speccorr import correction_factors

    ref = _fluxnet()
    gases = {"h2o": {"fc": assessment.h2o_fc(ref["RH_EP"])}, "co2": {"fc": assessment.gas_monthly["CO2"][6][1]}}
    sf = correction_factors(method="fratini_2012", u=ref["WS"], zm=ref["BADM_INST_HEIGHT_SA"] -
                            ref["DISPLACEMENT_HEIGHT"], zl=ref["ZL"], period_s=1800.0, detrend="block_average",
                            timeconst_s=250.0, sonic_hpath_m=ref["HPATH_SA"] / 100.0,
                            sonic_vpath_m=ref["VPATH_SA"] / 100.0, gases=gases)
    assert sf.h == pytest.approx(ref["H_SCF"], rel=2e-4)
    assert sf.tau == pytest.approx(ref["TAU_SCF"], rel=2e-4)
    assert sf.gases["h2o"] == pytest.approx(ref["LE_SCF"], rel=2e-4)
    assert sf.gases["co2"] == pytest.approx(ref["FC_SCF"], rel=2e-4)
