"""Storage flux (gateway.flux.budget.storage): prescribed CO2 changes give the prescribed SC."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.flux.budget.storage import air_molar_volume, nee_from_fc, storage_profile, storage_single_level


def test_a_linear_co2_rise_gives_a_constant_storage_flux() -> None:
    # +2 µmol mol-1 per half hour over a 30 m column at 15 °C, 100 kPa
    co2 = 400.0 + 2.0 * np.arange(10)
    ta, pa = np.full(10, 15.0), np.full(10, 100.0)
    va = 8.314462618 * 288.15 / 100000.0
    expected = 2.0 / 1800.0 * 30.0 / va
    sc = storage_single_level(co2, ta, pa, 30.0)
    assert np.allclose(sc, expected)
    assert air_molar_volume(15.0, 100.0) == pytest.approx(va)


def test_gaps_use_one_sided_or_bridging_differences_and_missing_co2_gives_missing_sc() -> None:
    co2 = np.array([400.0, 402.0, np.nan, 406.0, 408.0, np.nan])
    sc = storage_single_level(co2, np.full(6, 15.0), np.full(6, 100.0), 10.0)
    per_step = 2.0 / 1800.0 * 10.0 / air_molar_volume(15.0, 100.0)
    assert sc[0] == pytest.approx(per_step) and sc[1] == pytest.approx(per_step)
    assert sc[2] == pytest.approx(per_step)  # its neighbours' means span it
    assert np.isnan(sc[5])  # the last mean is missing and so is its successor
    assert sc[3] == pytest.approx(per_step) and sc[4] == pytest.approx(per_step)


def test_a_uniform_profile_equals_the_single_level_over_the_same_column() -> None:
    rng = np.random.default_rng(0)
    co2 = 400.0 + np.cumsum(rng.normal(0.0, 1.0, 48))
    ta, pa = np.full(48, 10.0), np.full(48, 98.0)
    profile = np.vstack([co2, co2, co2])
    assert np.allclose(storage_profile(profile, [2.0, 10.0, 30.0], ta, pa), storage_single_level(co2, ta, pa, 30.0))
    # a profile with more CO2 near the ground: trapezoids over 0-2-10-30 m
    low = np.vstack([co2 + 20 * np.arange(48) / 48, co2, co2])
    extra = (storage_profile(low, [2.0, 10.0, 30.0], ta, pa) - storage_single_level(co2, ta, pa, 30.0))
    d_low = 20.0 / 48 / 1800.0 / air_molar_volume(10.0, 98.0)  # µmol m-3 s-1 of the lowest level's rise
    assert np.allclose(extra, d_low * (2.0 + 0.5 * 8.0))


def test_nee_is_fc_plus_sc_and_bad_geometry_is_refused() -> None:
    assert np.allclose(nee_from_fc([1.0, np.nan], [0.5, 0.5]), [1.5, np.nan], equal_nan=True)
    with pytest.raises(ValueError, match="ascending"):
        storage_profile(np.ones((2, 3)), [10.0, 2.0], np.ones(3), np.ones(3) * 100)
    with pytest.raises(ValueError, match="measurement height"):
        storage_single_level(np.ones(3), np.ones(3), np.ones(3), 0.0)
