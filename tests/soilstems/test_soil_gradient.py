"""Gradient method: synthetic steady-state diffusion profiles with a known surface efflux, the diffusivity models'
reference values, the probe compensation, uncertainty against a Monte-Carlo truth, QC flags and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.flux.soil.diffusivity import (
    SoilSite,
    air_filled_porosity,
    d0_co2,
    relative_diffusivity,
    relative_diffusivity_all,
    total_porosity,
)
from gateway.flux.soil.gradient import (
    QC_FROZEN,
    QC_INVERTED_GRADIENT,
    QC_MISSING_INPUT,
    QC_OUT_OF_RANGE,
    QC_SATURATED,
    R_GAS,
    ProbeCompensation,
    layer_fluxes,
    period_means,
    qc_reasons,
    soil_efflux_gradient,
)

SITE = SoilSite(bulk_density=1.2, particle_density=2.65, clay=0.2)
PHI = 1.0 - 1.2 / 2.65
DEPTHS = np.array([0.05, 0.15, 0.30])
P_COMP = 101325.0


def to_probe_ppm(conc_umol_m3: np.ndarray, t_c: float) -> np.ndarray:
    """What a GMP252 at its default compensation (measured T, 1013.25 hPa) reports for a molar concentration."""
    return conc_umol_m3 * R_GAS * (t_c + 273.15) / P_COMP


def uniform_soil_diffusivity(theta: float, t_c: float, p_pa: float) -> float:
    eps = air_filled_porosity(theta, PHI)
    return float(relative_diffusivity(eps, PHI, "millington_quirk1961") * d0_co2(t_c, p_pa))


def profile_case(kind: str, f0: float, theta: float = 0.2, t_c: float = 12.0, p_pa: float = 97000.0,
                 c_atm_ppm: float = 420.0) -> tuple[np.ndarray, float]:
    """Probe readings (1, depths) of a steady-state profile with surface efflux f0 (umol m-2 s-1) in a uniform
    soil (constant D), and the atmospheric molar concentration.

    "exponential": production S0·exp(-z/d), d = 0.2 m → F(z) = F0·exp(-z/d), C = Ca + F0·d/D·(1 - exp(-z/d)).
    "uniform": constant production to L = 0.5 m → F(z) = F0·(1 - z/L), C = Ca + F0/D·(z - z²/(2L)).
    "no_source": production only below the probes → F constant, C linear in z.
    """
    d = uniform_soil_diffusivity(theta, t_c, p_pa)
    c_atm = c_atm_ppm * p_pa / (R_GAS * (t_c + 273.15))  # a true mole fraction above the soil
    z = DEPTHS
    if kind == "exponential":
        conc = c_atm + f0 * 0.2 / d * -np.expm1(-z / 0.2)
    elif kind == "uniform":
        conc = c_atm + f0 / d * (z - z**2 / (2 * 0.5))
    else:
        conc = c_atm + f0 / d * z
    return to_probe_ppm(conc, t_c)[None, :], c_atm


def run(kind: str, method: str, f0: float = 3.0, **kw: object) -> float:
    ppm, _ = profile_case(kind, f0)
    res = soil_efflux_gradient(DEPTHS, ppm, 12.0, 0.2, 97000.0, SITE, method=method,  # type: ignore[arg-type]
                               co2_atm_ppm=420.0, uncertainty=False, **kw)  # type: ignore[arg-type]
    return float(res.flux[0])


def test_reference_values_of_the_diffusivity_models() -> None:
    # D0 at each formula's own reference state is its constant
    assert d0_co2(0.0, 101325.0, "massman1998") == pytest.approx(1.381e-5, rel=1e-12)
    assert d0_co2(20.0, 101300.0, "jones1992") == pytest.approx(1.47e-5, rel=1e-12)
    # halving the pressure doubles D0
    assert d0_co2(10.0, 50000.0) == pytest.approx(2 * d0_co2(10.0, 100000.0), rel=1e-12)
    eps, phi = 0.3, 0.5
    assert relative_diffusivity(eps, phi, "penman1940") == pytest.approx(0.198)
    assert relative_diffusivity(eps, phi, "marshall1959") == pytest.approx(0.3**1.5)
    assert relative_diffusivity(eps, phi, "millington_quirk1961") == pytest.approx(0.3 ** (10 / 3) / 0.25)
    assert relative_diffusivity(eps, phi, "moldrup2000_wlr") == pytest.approx(0.3**2.5 / 0.5)
    site = SoilSite(porosity=0.5, clay=0.2)
    assert relative_diffusivity(eps, phi, "moldrup1999", site=site) == pytest.approx(0.25 * 0.6 ** (2.9 * 0.8))
    swc_site = SoilSite(porosity=0.5, eps100=0.2, campbell_b=5.0)
    # at ε = ε100 the Moldrup (2000b) model is its ε100 term
    assert relative_diffusivity(0.2, phi, "moldrup2000_swc", site=swc_site) == pytest.approx(2 * 0.008 + 0.008)
    assert total_porosity(1.325, 2.65) == pytest.approx(0.5)
    assert set(relative_diffusivity_all(eps, phi, site)) == {
        "penman1940", "marshall1959", "millington_quirk1961", "moldrup2000_wlr", "moldrup1999"}
    # all models: a dry soil diffuses better than a wet one
    for model, xi in relative_diffusivity_all(np.array([0.1, 0.3]), phi, site).items():
        assert xi[1] > xi[0] > 0, model


def test_exponential_profile_fit_recovers_the_surface_efflux() -> None:
    assert run("exponential", "profile_fit") == pytest.approx(3.0, rel=0.005)


def test_layer_extrapolation_is_exact_for_a_linear_flux_profile_and_close_for_an_exponential() -> None:
    # uniform production: F(z) linear, C quadratic: finite differences and the linear extrapolation are exact
    assert run("uniform", "layer_extrapolation") == pytest.approx(3.0, rel=1e-9)
    # exponential production (d = 0.2 m): the layer fluxes are exact means over each layer, but F(z) is curved, so
    # the straight line through them misses the surface value by -16 % — the method's own bias, computed here by hand
    e = np.exp(-DEPTHS / 0.2)
    f1 = 3.0 * 0.2 * (e[0] - e[1]) / 0.10
    f2 = 3.0 * 0.2 * (e[1] - e[2]) / 0.15
    expected = f1 - 0.10 * (f2 - f1) / (0.225 - 0.10)
    assert expected == pytest.approx(2.512, abs=1e-3)
    assert run("exponential", "layer_extrapolation") == pytest.approx(expected, rel=1e-9)


def test_regression_and_top_layer_are_exact_for_a_linear_concentration_profile() -> None:
    assert run("no_source", "regression") == pytest.approx(3.0, rel=1e-9)
    assert run("no_source", "top_layer") == pytest.approx(3.0, rel=1e-9)
    # with production in the probed layer both underestimate the surface gradient
    assert run("exponential", "regression") < 2.7
    assert run("exponential", "top_layer") < 3.0


def test_layer_fluxes_are_fick_with_harmonic_mean_diffusivity() -> None:
    conc = np.array([[1000.0, 3000.0, 6000.0]])
    diff = np.array([[2e-6, 1e-6, 1e-6]])
    flux, zm = layer_fluxes(DEPTHS, conc, diff)
    assert zm == pytest.approx([0.10, 0.225])
    d12 = 2 / (1 / 2e-6 + 1 / 1e-6)
    assert flux[0] == pytest.approx([d12 * 2000 / 0.10, 1e-6 * 3000 / 0.15])


def test_compensation_uses_the_set_point_not_the_actual_pressure() -> None:
    ppm, _ = profile_case("uniform", 3.0, p_pa=95000.0)
    kw = {"method": "layer_extrapolation", "uncertainty": False}
    right = soil_efflux_gradient(DEPTHS, ppm, 12.0, 0.2, 95000.0, SITE, **kw)  # type: ignore[arg-type]
    naive = soil_efflux_gradient(DEPTHS, ppm, 12.0, 0.2, 95000.0, SITE, compensation=None,
                                 **kw)  # type: ignore[arg-type]
    assert right.flux[0] == pytest.approx(3.0, rel=1e-9)
    # converting the reported ppm at the actual pressure scales every concentration by p/p_comp: -6 % efflux
    assert naive.flux[0] == pytest.approx(3.0 * 95000.0 / 101325.0, rel=1e-9)
    # a probe told the real pressure reports other ppm, and the same efflux comes out
    ppm_told = ppm * P_COMP / 95000.0
    told = soil_efflux_gradient(DEPTHS, ppm_told, 12.0, 0.2, 95000.0, SITE,
                                compensation=ProbeCompensation(p_pa=95000.0), **kw)  # type: ignore[arg-type]
    assert told.flux[0] == pytest.approx(right.flux[0], rel=1e-9)


def test_measurement_uncertainty_matches_a_monte_carlo_of_the_sensor_errors() -> None:
    ppm, _ = profile_case("uniform", 3.0)
    res = soil_efflux_gradient(DEPTHS, ppm, 12.0, 0.2, 97000.0, SITE, method="layer_extrapolation")
    rng = np.random.default_rng(42)
    n = 4000
    sigma_x = 40.0 + 0.02 * ppm
    x = ppm + rng.standard_normal((n, 3)) * sigma_x
    t = 12.0 + 0.5 * rng.standard_normal((n, 3))
    th = 0.2 + 0.03 * rng.standard_normal((n, 3))
    p = 97000.0 + 100.0 * rng.standard_normal(n)
    mc = soil_efflux_gradient(DEPTHS, x, t, th, p, SITE, method="layer_extrapolation", uncertainty=False)
    assert res.flux_unc_meas[0] == pytest.approx(np.std(mc.flux), rel=0.15)
    # the model spread is the standard deviation over the five applicable models, and enters the total
    stack = np.array([v[0] for v in res.model_fluxes.values()])
    assert len(stack) == 5
    assert res.flux_unc_model[0] == pytest.approx(np.std(stack, ddof=1))
    assert res.flux_unc[0] == pytest.approx(np.hypot(res.flux_unc_meas[0], res.flux_unc_model[0]))


def test_qc_flags() -> None:
    ppm, _ = profile_case("uniform", 1.5)
    rows = np.repeat(ppm, 6, axis=0)
    t = np.full((6, 3), 12.0)
    th = np.full((6, 3), 0.2)
    t[1, 0] = -0.5                          # frozen top layer
    th[2, 2] = PHI - 0.01                   # nearly saturated at depth
    rows[3] = rows[3, ::-1]                 # inverted profile
    rows[4, 2] = 45000.0                    # a probe beyond its range
    rows[5, 1] = np.nan                     # a missing reading
    res = soil_efflux_gradient(DEPTHS, rows, t, th, 97000.0, SITE, uncertainty=False)
    assert res.qc[0] == 0 and np.isfinite(res.flux[0])
    assert res.qc[1] & QC_FROZEN
    assert res.qc[2] & QC_SATURATED
    assert res.qc[3] & QC_INVERTED_GRADIENT and res.flux[3] < 0
    assert res.qc[4] & QC_OUT_OF_RANGE
    assert res.qc[5] & QC_MISSING_INPUT and np.isnan(res.flux[5])
    assert qc_reasons(QC_FROZEN | QC_MISSING_INPUT)[0].startswith("frozen soil")
    names = res.series(profile=1)
    assert {"FC_SOIL_GRAD", "FC_SOIL_GRAD_UNC", "FC_SOIL_GRAD_QC", "DS_CO2_1_3_1", "FC_SOIL_LAYER_1_2_1"} <= set(names)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"depth_m": [0.05, np.nan, 0.30]}, "missing depth"),
        ({"depth_m": [0.15, 0.05, 0.30]}, "strictly increasing"),
        ({"depth_m": [5.0, 15.0, 30.0]}, "look like cm"),
        ({"t_soil_c": np.array([[12.0, np.nan, 12.0]] * 2)}, "t_soil_c has no value at depth index 1"),
        ({"swc": 20.0}, "percent"),
        ({"site": SoilSite(porosity=1.4)}, "porosity must lie in (0, 1]"),
        ({"site": SoilSite()}, "give 'porosity'"),
        ({"diffusivity_model": "moldrup1999", "site": SoilSite(porosity=0.5)}, "texture"),
        ({"method": "top_layer", "co2_atm_ppm": None}, "co2_atm_ppm"),
        ({"co2_ppm": np.ones((2, 2))}, "one column per depth"),
        ({"p_pa": 970.0}, "pressure must be in Pa"),
    ],
)
def test_bad_input_names_the_input_and_the_fix(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "depth_m": DEPTHS, "co2_ppm": np.array([[1000.0, 3000.0, 6000.0]] * 2), "t_soil_c": 12.0, "swc": 0.2,
        "p_pa": 97000.0, "site": SITE, "co2_atm_ppm": 420.0,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        soil_efflux_gradient(**args)  # type: ignore[arg-type]


def test_period_means_end_labelled_and_gaps_are_nan() -> None:
    t = np.arange(0.0, 7200.0, 10.0) + 10.0          # 10-s samples over two hours, stamped at their end
    v = np.where(t <= 3600.0, 1.0, 3.0)
    v[(t > 5400) & (t <= 7000)] = np.nan              # most of the last half hour missing
    ends, means = period_means(t, v, 1800.0)
    assert ends.tolist() == [1800.0, 3600.0, 5400.0, 7200.0]
    assert means[:3].tolist() == [1.0, 1.0, 3.0]
    assert np.isnan(means[3])
