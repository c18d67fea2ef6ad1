"""Stems to carbon: the species table, equations checked by hand, a tree list with known biomass, the Monte Carlo
against its analytic limits, increments, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gateway.flux.stems.allometry import (
    CO2_PER_C,
    AllometricEquation,
    agb_kg,
    default_species_table,
    parse_species_table,
    plot_biomass,
    tree_biomass,
)

CHAVE4 = AllometricEquation("tropical fallback", "chave2014_eq4", 0, 0, 1, None, None, None, None,
                            "Chave et al. 2014 eq. 4", "")


def test_species_table_has_sources_and_known_coefficients() -> None:
    table = default_species_table()
    assert all(eq.source for eq in table.values())
    pine = table["Pinus"]
    assert (pine.equation, pine.b0, pine.b1) == ("jenkins2003", -2.5356, 2.4349)
    # a 30-cm pine: exp(-2.5356 + 2.4349 ln 30), by hand
    assert agb_kg(pine, 30.0) == pytest.approx(math.exp(-2.5356 + 2.4349 * math.log(30.0)))
    # species row wins over genus row; genus used for an unlisted species
    assert tree_biomass(["Acer rubrum"], [20.0]).equations[0].b0 == -1.9123
    assert tree_biomass(["Acer saccharum"], [20.0]).equations[0].b0 == -2.0127
    assert tree_biomass(["Fagus sylvatica"], [20.0]).equations[0].taxon == "Fagus"


def test_chave_equations_by_hand() -> None:
    assert agb_kg(CHAVE4, 30.0, height_m=25.0, wood_density=0.6) == pytest.approx(0.0673 * (0.6 * 900 * 25) ** 0.976)
    eq7 = AllometricEquation("x", "chave2014_eq7", 0, 0, 1, None, 0.6, None, None, "Chave et al. 2014 eq. 7", "")
    ln_d = math.log(30.0)
    expected = math.exp(-1.803 - 0.976 * 0.1 + 0.976 * math.log(0.6) + 2.673 * ln_d - 0.0299 * ln_d**2)
    assert agb_kg(eq7, 30.0, stress_e=0.1) == pytest.approx(expected)


def test_plot_totals_of_a_known_tree_list() -> None:
    species = ["Pinus sylvestris", "Picea abies", "Fagus sylvatica", "Quercus robur", "Betula pendula"]
    dbh = np.array([32.0, 41.0, 27.5, 55.0, 18.0])
    coef = {"Pinus sylvestris": (-2.5356, 2.4349), "Picea abies": (-2.0773, 2.3323),
            "Fagus sylvatica": (-2.0127, 2.4342), "Quercus robur": (-2.0127, 2.4342),
            "Betula pendula": (-1.9123, 2.3651)}
    truth_kg = sum(math.exp(b0 + b1 * math.log(d)) for (b0, b1), d in zip(
        (coef[s] for s in species), dbh, strict=True))
    res = plot_biomass(species, dbh, 400.0, dbh_sd_abs_cm=0.0, dbh_sd_rel=0.0, n_draws=4000, seed=1)
    assert res.agb_mg_ha == pytest.approx(truth_kg * 25.0 / 1000.0, rel=1e-12)  # 400 m2 → ×25 per ha, kg → Mg
    assert res.carbon_mg_ha == pytest.approx(0.47 * res.agb_mg_ha)
    assert res.co2e_t_ha == pytest.approx(0.47 * res.agb_mg_ha * 44 / 12)
    # Monte Carlo of the allometric residual alone (RSE 0.3 assumed): mean = point·exp(σ²/2), sd analytic
    agb_i = np.array([math.exp(b0 + b1 * math.log(d)) for (b0, b1), d in zip((coef[s] for s in species), dbh,
                                                                             strict=True)]) * 25.0 / 1000.0
    s2 = 0.3**2
    mean, sd, lo, hi = res.mc["AGB"]
    assert mean == pytest.approx(res.agb_mg_ha * math.exp(s2 / 2), rel=0.02)
    assert sd == pytest.approx(math.sqrt(np.sum(agb_i**2) * (math.exp(s2) - 1) * math.exp(s2)), rel=0.05)
    assert lo < res.agb_mg_ha < hi
    # the same seed gives the same numbers; another seed other numbers
    again = plot_biomass(species, dbh, 400.0, dbh_sd_abs_cm=0.0, dbh_sd_rel=0.0, n_draws=4000, seed=1)
    assert again.mc == res.mc
    assert plot_biomass(species, dbh, 400.0, n_draws=4000, seed=2).mc["AGB"] != res.mc["AGB"]
    assert set(res.series()) >= {"AGB", "C_AGB", "CO2E_AGB", "AGB_INC", "CO2E_AGB_INC_SD"}


def test_increment_from_a_dendrometer() -> None:
    # 2 mm of radius growth → 0.4 cm of DBH; the increment is the difference of the equation at both ends
    species = ["Picea abies"] * 3
    dbh = np.array([20.0, 30.0, 40.0])
    res = plot_biomass(species, dbh, 1000.0, dbh_increment_cm=np.full(3, 0.4), n_draws=2000, seed=3)
    b0, b1 = -2.0773, 2.3323
    inc_kg = sum(math.exp(b0 + b1 * math.log(d + 0.4)) - math.exp(b0 + b1 * math.log(d)) for d in dbh)
    assert res.agb_increment_mg_ha == pytest.approx(inc_kg * 10.0 / 1000.0, rel=1e-12)
    assert res.co2e_increment_t_ha == pytest.approx(res.agb_increment_mg_ha * 0.47 * CO2_PER_C)
    # a tree's allometric residual is shared by both ends: the increment's relative spread stays that of the
    # residual (~30 %), not the much larger spread of a difference of independent draws
    mean, sd, _, _ = res.mc["AGB_INC"]
    assert 0.1 < sd / mean < 0.3


def test_bad_tree_lists() -> None:
    with pytest.raises(ValueError, match=r"tree\(s\) \[1\] have no species"):
        plot_biomass(["Pinus sylvestris", None], [30.0, 20.0], 400.0)
    with pytest.raises(ValueError, match=r"tree\(s\) \[1\] have no valid DBH"):
        plot_biomass(["Pinus sylvestris", "Picea abies"], [30.0, np.nan], 400.0)
    with pytest.raises(ValueError, match="no allometric equation for tree"):
        plot_biomass(["Eucalyptus globulus"], [30.0], 400.0)
    with pytest.raises(ValueError, match="mm instead of cm"):
        plot_biomass(["Pinus sylvestris"], [650.0], 400.0)
    with pytest.raises(ValueError, match="plot_area_m2"):
        plot_biomass(["Pinus sylvestris"], [30.0], 0.0)
    with pytest.raises(ValueError, match="needs the tree height"):
        plot_biomass([None], [30.0], 400.0, fallback=CHAVE4, wood_density=0.6)
    # the fallback takes trees without species when it has what it needs
    res = plot_biomass([None], [30.0], 400.0, fallback=CHAVE4, wood_density=0.6, height_m=25.0, n_draws=200)
    assert res.agb_mg_ha > 0
    with pytest.raises(ValueError, match=r"line 2 .*source"):
        parse_species_table("taxon,equation,b0,b1,b2,ln_rse,wood_density,dbh_min_cm,dbh_max_cm,source,source_detail\n"
                            "Foo,jenkins2003,1,2,,,,,,,\n")
    with pytest.raises(ValueError, match="unknown equation"):
        parse_species_table("taxon,equation,b0,b1,b2,ln_rse,wood_density,dbh_min_cm,dbh_max_cm,source,source_detail\n"
                            "Foo,magic,1,2,,,,,,me,\n")


def test_user_table_extends_the_default() -> None:
    extra = parse_species_table(
        "taxon,equation,b0,b1,b2,ln_rse,wood_density,dbh_min_cm,dbh_max_cm,source,source_detail\n"
        "Eucalyptus globulus,ln_power,-2.0,2.5,1.02,0.2,,5,60,My Lab 2024,Table 2\n")
    table = {**default_species_table(), **extra}
    res = tree_biomass(["Eucalyptus globulus", "Pinus nigra"], [30.0, 70.0], table=table)
    assert res.agb_kg[0] == pytest.approx(1.02 * math.exp(-2.0 + 2.5 * math.log(30.0)))
    assert res.equations[0].rse == 0.2
    assert not res.extrapolated[0]
    out = tree_biomass(["Eucalyptus globulus"], [75.0], table=table)
    assert out.extrapolated[0]
