"""Random uncertainty (gateway.flux.budget.randunc): ONEFlux's methods 1 and 2 on hand-made series, and its
recovery of a prescribed random error."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.flux.budget.randunc import random_uncertainty

N_DAY = 48


def test_method_one_is_the_spread_of_similar_measurements_at_the_same_time_of_day() -> None:
    n = 30 * N_DAY
    rng = np.random.default_rng(0)
    flux = 5.0 + rng.normal(0.0, 1.0, n)
    sw, ta, vpd = np.full(n, 400.0), np.full(n, 15.0), np.full(n, 8.0)
    i = 15 * N_DAY + 20
    ru = random_uncertainty(flux, np.ones(n, bool), sw, ta, vpd)
    offsets = (np.arange(-7, 8)[:, None] * N_DAY + np.arange(-2, 3)[None, :]).ravel()
    assert ru.method[i] == 1 and ru.n[i] == 75
    assert ru.randunc[i] == pytest.approx(np.std(flux[i + offsets], ddof=1))
    # a record whose TA differs by more than 2.5 °C from all others finds only itself: method 2
    ta[i] = 30.0
    ru = random_uncertainty(flux, np.ones(n, bool), sw, ta, vpd)
    assert ru.method[i] == 2


def test_method_two_is_the_median_over_similar_fluxes_and_applies_to_gaps() -> None:
    n = 40 * N_DAY
    rng = np.random.default_rng(1)
    level = np.where(np.arange(n) % N_DAY < 24, 2.0, 20.0)  # two flux levels by time of day
    sigma = np.where(level > 10, 3.0, 0.5)
    flux = level + rng.normal(0.0, 1.0, n) * sigma
    measured = np.ones(n, bool)
    gaps = np.arange(20 * N_DAY, 21 * N_DAY)
    measured[gaps] = False
    flux[gaps] = level[gaps]  # a gap-filled value
    ru = random_uncertainty(flux, measured, np.full(n, 100.0), np.full(n, 10.0), np.full(n, 5.0))
    assert np.all(ru.method[gaps] == 2)
    # gaps at the high level get the high level's spread (±20 % = ±4 around 20 excludes the low level)
    high = gaps[level[gaps] > 10]
    assert np.allclose(ru.randunc[high], 3.0, rtol=0.15)
    low = gaps[level[gaps] < 10]
    assert np.allclose(ru.randunc[low], 0.5, rtol=0.15)
    assert not np.isnan(ru.randunc).any()


def test_mismatched_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="ta: expected 4"):
        random_uncertainty(np.ones(4), np.ones(4, bool), np.ones(4), np.ones(3), np.ones(4))
