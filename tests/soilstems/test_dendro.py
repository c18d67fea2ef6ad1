"""Dendrometer processing against a synthetic year with known growth, water-deficit cycles, resets, spikes and
frost."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.flux.stems.dendro import (
    DENDRO_FROST,
    DENDRO_JUMP,
    DENDRO_OUTLIER,
    clean_dendrometer,
    daily_stats,
    to_diameter_change,
    zero_growth,
)

DAY = 86400.0


def synthetic_year(seed: int = 0) -> dict[str, np.ndarray]:
    """10-min radius series (µm) of one year: truth and the logged series with artefacts.

    truth = growth (logistic, 1500 µm, mid-season day 170) − water deficit (daily cycle 0..40 µm, shrinking in the
    afternoon, plus a 12-day drought, 120 µm deep) − frost shrinkage (days 10-20, 150 µm, temperature < 0)."""
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, 365 * DAY, 600.0)
    d = t / DAY
    growth = 1500.0 / (1.0 + np.exp(-(d - 170.0) / 15.0))
    growth -= growth[0]
    hour = (t % DAY) / 3600.0
    daily = 40.0 * np.clip(np.sin((hour - 8.0) / 12.0 * np.pi), 0.0, None) * ((d > 100) & (d < 300))
    drought = 120.0 * np.clip(1.0 - np.abs(d - 200.0) / 6.0, 0.0, None)
    frost_days = (d >= 10) & (d < 20)
    frost_shrink = 150.0 * np.clip(np.minimum(d - 10.0, 20.0 - d), 0.0, 1.0) * frost_days
    truth = growth - daily - drought - frost_shrink
    temperature = np.where(frost_days, -6.0, 8.0) + 3.0 * np.sin(2 * np.pi * hour / 24)
    logged = truth + 1.0 * rng.standard_normal(t.size) + 5000.0
    # two resets (needle re-set, re-mounting) and spikes of one and two samples
    logged[t >= 120 * DAY] -= 3000.0
    logged[t >= 250 * DAY + 3600] += 2200.0
    spikes = [int(60 * DAY / 600) + 5, int(150 * DAY / 600) + 40, int(220 * DAY / 600) + 7]
    logged[spikes[0]] += 400.0
    logged[spikes[1]] -= 250.0
    logged[spikes[2] : spikes[2] + 2] += 600.0
    logged[int(80 * DAY / 600) : int(80 * DAY / 600) + 12] = np.nan  # a 2-h logger gap
    return {"t": t, "truth": truth, "logged": logged, "temperature": temperature, "spikes": np.array(spikes),
            "growth": growth, "twd_truth": np.maximum.accumulate(truth) - truth}


def test_cleaning_recovers_the_true_series() -> None:
    y = synthetic_year()
    clean = clean_dendrometer(y["t"], y["logged"], temperature_c=y["temperature"])
    # two jumps found, where they were made, with their size (± the 1 µm noise and one step of growth)
    assert clean.jump_index.size == 2
    assert y["t"][clean.jump_index].tolist() == [120 * DAY, 250 * DAY + 3600]
    assert clean.jump_um == pytest.approx([-3000.0, 2200.0], abs=6.0)
    assert np.all(clean.flags[clean.jump_index] & DENDRO_JUMP)
    # the four spike samples removed, nothing else
    assert clean.n_outliers == 4
    s = y["spikes"]
    for i in (s[0], s[1], s[2], s[2] + 1):
        assert clean.flags[i] & DENDRO_OUTLIER and np.isnan(clean.value[i])
    # the cleaned series equals the truth up to the logger offset, within noise and the jump-step growth
    err = clean.value - y["truth"]
    err -= np.nanmedian(err[: 1000])
    assert np.nanmax(np.abs(err)) < 12.0
    # frost flagged on the cold days only, and frost shrinkage is not mistaken for a jump
    frost = (clean.flags & DENDRO_FROST) > 0
    d = y["t"] / DAY
    assert np.all(frost[(d >= 10) & (d < 20)]) and not np.any(frost[(d < 10) | (d >= 20)])


def test_zero_growth_and_twd_of_the_cleaned_year() -> None:
    y = synthetic_year()
    clean = clean_dendrometer(y["t"], y["logged"], temperature_c=y["temperature"])
    gro, twd = zero_growth(clean.value)
    gro_truth, twd_truth = zero_growth(y["truth"])
    # annual growth within 1 % (the truth's own GRO; noise raises the running maximum by a few µm)
    assert gro[-1] == pytest.approx(gro_truth[-1], rel=0.01)
    assert gro[-1] == pytest.approx(1500.0, rel=0.02)
    assert np.all(np.diff(gro[np.isfinite(gro)]) >= 0)
    # TWD: the 120-µm drought and the daily cycles recovered within noise
    ok = np.isfinite(twd)
    assert np.max(np.abs(twd[ok] - twd_truth[ok])) < 12.0
    d = y["t"] / DAY
    drought = (d > 195) & (d < 205)
    # growth continues under the drought (~25 µm/day), so the true TWD peak is less than the 120 + 40 µm imposed
    assert np.nanmax(twd[drought]) == pytest.approx(np.max(twd_truth[drought]), abs=5.0)
    assert np.nanmax(twd[drought]) > 60.0
    assert np.nanmin(twd) >= 0.0


def test_zero_growth_by_hand() -> None:
    gro, twd = zero_growth([10.0, 12.0, 11.0, np.nan, 15.0, 14.0])
    assert gro[[0, 1, 2, 4, 5]].tolist() == [0.0, 2.0, 2.0, 5.0, 5.0]
    assert gro[3] == 2.0  # the running maximum carries over a gap
    assert twd[[0, 1, 2, 4, 5]].tolist() == [0.0, 0.0, 1.0, 0.0, 1.0] and np.isnan(twd[3])


def test_daily_stats() -> None:
    t = np.arange(0.0, 3 * DAY, 600.0)
    hour = (t % DAY) / 3600.0
    # a day: 0 at night, shrinking to -30 at 15 h and recovering, plus 10 µm of growth per day
    v = -30.0 * np.clip(np.sin((hour - 9.0) / 12.0 * np.pi), 0, None) + 10.0 * t / DAY
    v[int(DAY / 600) + 3 : int(DAY / 600) + 70] = np.nan  # day 2 loses 67 of 144 samples
    st = daily_stats(t, v)
    assert st.day_start_s.tolist() == [0.0, DAY, 2 * DAY]
    assert st.coverage[1] < 0.8 and np.isnan(st.max[1]) and np.isnan(st.mds[1])
    assert st.max[0] == pytest.approx(10.0 * (DAY - 600) / DAY, abs=1e-9)
    assert st.mds[2] == pytest.approx(30.0, abs=3.0)
    assert st.amplitude[0] == pytest.approx(st.max[0] - st.min[0])
    # local days: at UTC+12 h the shrinkage straddles the local midnight
    st_local = daily_stats(t, v, utc_offset_s=12 * 3600)
    assert st_local.day_start_s[0] == -12 * 3600


def test_diameter_change_and_bad_input() -> None:
    assert to_diameter_change(100.0, "radius") == pytest.approx(200.0)
    assert to_diameter_change(np.pi * 50, "circumference") == pytest.approx(50.0)
    with pytest.raises(ValueError, match="'radius' \\(point dendrometer\\)"):
        to_diameter_change(1.0, "girth")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="strictly increasing"):
        clean_dendrometer([0.0, 600.0, 600.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="tol_jump"):
        clean_dendrometer([0.0, 600.0], [1.0, 2.0], tol_out=20, tol_jump=10)
