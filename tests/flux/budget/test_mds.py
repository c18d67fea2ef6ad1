"""MDS gap filling (gateway.flux.budget.mds) against hesseflux on the same input, REddyProc's rules on hand-made
series, and a synthetic year with a known truth."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.flux.budget.mds import mds_fill, mds_fill_met
from gateway.simulation.fluxyear import synthetic_year
from tests.flux.budget.refdata import gapfill_input, gc_m2, hesseflux_run

N_DAY = 48


@pytest.mark.parametrize("site", ["FR-Hes2016", "DE-Tha1998"])
def test_gap_filled_nee_matches_hesseflux_on_the_same_input(site: str) -> None:
    run = hesseflux_run(site)
    nee = gapfill_input(site)
    res = mds_fill(nee, run["SW_IN"], run["VPD"], run["TA"])
    gaps = np.isnan(nee)
    assert res.n_unfilled == 0
    assert np.array_equal(res.filled[~gaps], nee[~gaps])  # measured values are kept as they are
    assert np.all(res.qc[~gaps] == 0) and np.all(np.isin(res.qc[gaps], (1, 2, 3)))
    r = np.corrcoef(res.filled[gaps], run["NEE_f"][gaps])[0, 1]
    assert r >= 0.998, f"{site}: r at the gaps {r:.5f}"
    ours, theirs = gc_m2(res.filled), gc_m2(run["NEE_f"])
    assert abs(ours - theirs) <= 0.01 * abs(theirs), f"{site}: annual NEE {ours:.1f} vs hesseflux {theirs:.1f} gC m-2"
    # every filled value carries the spread and the number of values it came from
    filled = gaps & (res.method != 3)
    assert np.all(res.fnum[gaps] >= 2) and np.all(np.isfinite(res.fsd[filled]))


def _series(days: int = 40) -> tuple[np.ndarray, ...]:
    """A flat day/night series: constant drivers, NEE = 1 everywhere (so any mean is 1 unless a test says so)."""
    n = days * N_DAY
    return np.ones(n), np.full(n, 300.0), np.full(n, 10.0), np.full(n, 15.0)


def test_sw_in_tolerance_is_reduced_at_low_radiation() -> None:
    """REddyProc: tolerance max(min(50, SW_IN_gap), 20), strict '<'."""
    nee, sw, vpd, ta = _series()
    gap = 20 * N_DAY
    for sw_gap, inside, outside in ((5.0, 19.9, 20.0), (35.0, 34.9, 35.0), (300.0, 49.9, 50.0)):
        sw[:] = 1000.0
        sw[gap] = sw_gap
        nee[:] = np.nan
        # two values just inside the tolerance (mean 2), two just outside (value 10): only the first pair is used
        for k, (offset, value) in enumerate(((inside, 2.0), (inside, 2.0), (outside, 10.0), (outside, 10.0))):
            i = gap + (k + 1) * N_DAY
            sw[i] = sw_gap + offset
            nee[i] = value
        res = mds_fill(nee, sw, vpd, ta)
        assert res.filled[gap] == pytest.approx(2.0), sw_gap
        assert res.method[gap] == 1 and res.qc[gap] == 1 and res.fnum[gap] == 2


def test_lut_window_is_seven_days_inclusive_then_fourteen_with_lower_quality() -> None:
    nee, sw, vpd, ta = _series()
    nee[:] = np.nan
    gap = 20 * N_DAY + 10
    nee[gap + 7 * N_DAY] = 3.0
    nee[gap - 7 * N_DAY] = 5.0
    res = mds_fill(nee, sw, vpd, ta)
    assert res.filled[gap] == pytest.approx(4.0) and res.qc[gap] == 1 and res.window_days[gap] == 14
    assert res.fsd[gap] == pytest.approx(np.std([3.0, 5.0], ddof=1))
    nee[gap - 7 * N_DAY] = np.nan
    nee[gap - 7 * N_DAY - 1] = 5.0  # one record beyond ±7 days: only the ±14-day window finds two values
    res = mds_fill(nee, sw, vpd, ta)
    assert res.filled[gap] == pytest.approx(4.0) and res.qc[gap] == 2 and res.window_days[gap] == 28


def test_without_vpd_and_ta_the_lut_uses_sw_in_only_then_the_mean_diurnal_course() -> None:
    nee, sw, _, _ = _series()
    nee[:] = np.nan
    gap = 20 * N_DAY
    nee[gap + 3 * N_DAY] = 1.0
    nee[gap - 3 * N_DAY] = 3.0
    res = mds_fill(nee, sw)
    assert res.drivers == "sw_in" and res.method[gap] == 2 and res.filled[gap] == pytest.approx(2.0)
    res = mds_fill(nee)
    # mean diurnal course: same time of day ±2 records, ±1 then ±2 days (quality 2), then ±7 days (quality 3)
    assert res.drivers == "none" and res.method[gap] == 3 and res.qc[gap] == 3 and res.window_days[gap] == 15
    nee[gap + N_DAY + 2] = 7.0
    nee[gap - N_DAY - 2] = 9.0
    res = mds_fill(nee)
    assert res.filled[gap] == pytest.approx(8.0) and res.qc[gap] == 2 and res.window_days[gap] == 3


def test_a_gap_needs_two_values_and_long_gaps_stay_unfilled() -> None:
    nee, sw, vpd, ta = _series(200)
    nee[10 * N_DAY:10 * N_DAY + 60 * N_DAY] = np.nan  # exactly 60 days: filled
    nee[100 * N_DAY:100 * N_DAY + 60 * N_DAY + 1] = np.nan  # longer: left missing
    res = mds_fill(nee, sw, vpd, ta)
    assert not np.isnan(res.filled[10 * N_DAY:70 * N_DAY]).any()
    assert np.isnan(res.filled[100 * N_DAY:160 * N_DAY + 1]).all()
    assert np.isnan(res.qc[100 * N_DAY]) and res.n_unfilled == 60 * N_DAY + 1
    one = np.full(30 * N_DAY, np.nan)
    one[5] = 1.0
    assert np.isnan(mds_fill(one, sw[:one.size], vpd[:one.size], ta[:one.size]).filled[6])


def test_met_drivers_are_filled_without_themselves_as_condition() -> None:
    """REddyProc: SW_IN by the mean diurnal course alone, TA and VPD by LUT on SW_IN + MDC."""
    _, sw, vpd, ta = _series()
    sw_gappy = sw.copy()
    sw_gappy[500:510] = np.nan
    res = mds_fill_met("SW_IN", sw_gappy, sw_gappy, vpd, ta)
    assert res.drivers == "none" and np.all(res.method[500:510] == 3) and np.allclose(res.filled, 300.0)
    ta_gappy = ta.copy()
    ta_gappy[500:510] = np.nan
    res = mds_fill_met("TA", ta_gappy, sw, vpd, ta_gappy)
    assert res.drivers == "sw_in" and np.all(res.method[500:510] == 2) and np.allclose(res.filled, 15.0)


def test_synthetic_year_gaps_are_recovered() -> None:
    """Prescribed light response + Lloyd-Taylor truth with random error and known gaps (u*-biased nights removed as
    a u* filter would): the filled gaps follow the noise-free truth."""
    year = synthetic_year(seed=3)
    nee = year.nee.copy()
    nee[(year.sw_in < 10) & (year.ustar < year.ustar_threshold)] = np.nan
    res = mds_fill(nee, year.sw_in, year.vpd, year.ta)
    gaps = np.isnan(nee)
    assert res.n_unfilled == 0
    err = res.filled[gaps] - year.nee_true[gaps]
    # tolerances: the random error has a scale of 0.6 + 0.15 |NEE|; MDS averages it away except for its bias
    assert np.sqrt(np.mean(err**2)) < 0.8
    assert np.corrcoef(res.filled[gaps], year.nee_true[gaps])[0, 1] > 0.98
    assert abs(gc_m2(res.filled) - gc_m2(year.nee_true)) < 15.0


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="sw_in: expected 10 values"):
        mds_fill(np.ones(10), np.ones(9))


def test_fill_all_of_marked_records_gives_them_the_numbers_of_fill_all() -> None:
    # the chain asks the spread only where the daytime fit can use it: the marked records get exactly the numbers a
    # FillAll of every record gives them, the others none, and the gaps do not change
    rng = np.random.default_rng(3)
    n = 48 * 40
    hour = (np.arange(n) % 48) / 2.0
    sw = np.clip(800.0 * np.sin((hour - 6.0) / 12.0 * np.pi), 0.0, None) + rng.uniform(0, 5, n)
    ta = 10.0 + 8.0 * np.sin((hour - 9.0) / 24.0 * 2 * np.pi) + rng.normal(0, 0.5, n)
    vpd = np.clip(ta - 5.0, 0.1, None)
    nee = -0.02 * sw + 3.0 + rng.normal(0, 1.0, n)
    nee[rng.random(n) < 0.3] = np.nan
    marked = sw > 4.0
    full = mds_fill(nee, sw, vpd, ta, fill_all=True)
    part = mds_fill(nee, sw, vpd, ta, fill_all=marked)
    measured = np.isfinite(nee)
    for name in ("fsd", "fnum", "method", "window_days"):
        a, b = getattr(full, name), getattr(part, name)
        assert np.array_equal(a[marked], b[marked], equal_nan=True), name
        assert np.isnan(b[measured & ~marked]).all(), name
    assert np.array_equal(full.filled, part.filled, equal_nan=True)
    assert np.isfinite(part.fsd[measured & marked]).all()
    with pytest.raises(ValueError, match="fill_all"):
        mds_fill(nee, sw, vpd, ta, fill_all=marked[:-1])
