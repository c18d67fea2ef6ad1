"""u* threshold (gateway.flux.budget.ustar): ONEFlux's moving-point test against diive 0.91's port of it at FR-Hes
2016 and DE-Tha 1998, a synthetic year with a prescribed threshold, the bootstrap, and too little data."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from gateway.flux.budget.ustar import UstarError, ustar_threshold
from gateway.simulation.fluxyear import synthetic_year
from tests.flux.budget.refdata import hesseflux_run, peer_json


def _site_input(site: str) -> tuple[np.ndarray, ...]:
    run = hesseflux_run(site)
    # the moving-point test sees NEE before u* filtering: hesseflux's used (0) and below-u* (5) records
    nee = np.where(np.isin(run["NEE_flag"], (0, 5)), run["NEE_in"], np.nan)
    month = np.array([int(s[4:6]) for s in run["TIMESTAMP_START"]])
    return nee, run["TA"], run["USTAR"], run["SW_IN"], month


@pytest.mark.parametrize("site", ["FR-Hes2016", "DE-Tha1998"])
def test_thresholds_match_the_oneflux_port_and_fall_inside_its_bootstrap_range(site: str) -> None:
    ref = peer_json(f"dv091_ustar_{site}.json")
    res = ustar_threshold(*_site_input(site), n_bootstrap=100, seed=0)
    # the point estimates of the data themselves: the same rules give the same seasonal thresholds
    for s in range(4):
        theirs = float(ref["seasons"]["threshold"][f"Season {s + 1}"])
        if np.isnan(theirs):
            assert np.isnan(res.season_thresholds[s])
        else:
            assert res.season_thresholds[s] == pytest.approx(theirs, abs=5e-4), f"season {s + 1}"
    assert res.threshold == pytest.approx(ref["annual"]["threshold"], abs=5e-4)
    boot = ref["bootstrap"]
    lo, hi = float(boot["p05"]["Annual"]), float(boot["p95"]["Annual"])
    assert lo <= res.threshold <= hi
    summary = res.summary()
    assert summary["n"] >= 95 and lo <= summary["p50"] <= hi
    # every season's bootstrap median inside the port's 5-95 % range for that season
    for s in range(4):
        med = res.summary(res.bootstrap_seasons[:, s])["p50"]
        assert float(boot["p05"][f"Season {s + 1}"]) <= med <= float(boot["p95"][f"Season {s + 1}"]), s + 1


@pytest.mark.parametrize(("seed", "prescribed"), [(1, 0.25), (2, 0.35), (3, 0.2)])
def test_a_prescribed_threshold_is_recovered(seed: int, prescribed: float) -> None:
    """Synthetic years in which nighttime NEE is underestimated by the factor USTAR/threshold below the threshold.
    Tolerance: the test reports the mean u* of the first class on the plateau, which lies above the threshold by
    up to half a class width; we accept 0.05 m s-1."""
    year = synthetic_year(seed=seed, ustar_threshold=prescribed)
    month = np.array([datetime.fromtimestamp(t, tz=UTC).month for t in year.time_start_s])
    res = ustar_threshold(year.nee, year.ta, year.ustar, year.sw_in, month, n_bootstrap=100, seed=1)
    assert abs(res.threshold - prescribed) <= 0.05
    summary = res.summary()
    assert summary["p05"] - 0.05 <= prescribed <= summary["p95"] + 0.05


def test_the_bootstrap_is_seeded() -> None:
    args = _site_input("FR-Hes2016")
    a = ustar_threshold(*args, n_bootstrap=20, seed=7)
    b = ustar_threshold(*args, n_bootstrap=20, seed=7)
    c = ustar_threshold(*args, n_bootstrap=20, seed=8)
    assert np.array_equal(a.bootstrap, b.bootstrap)
    assert not np.array_equal(a.bootstrap, c.bootstrap)
    assert a.n_bootstrap == 20 and a.bootstrap_seasons.shape == (20, 4)


def test_too_few_nights_is_an_error_naming_the_fix() -> None:
    nee, ta, ustar, sw_in, month = (a[:2000] for a in _site_input("DE-Tha1998"))
    sw_in = sw_in.copy()
    sw_in[:] = 500.0  # no night at all
    with pytest.raises(UstarError, match=r"only 0 night records.*--ustar VALUE"):
        ustar_threshold(nee, ta, ustar, sw_in, month)


def test_a_short_record_pools_the_seasons() -> None:
    nee, ta, ustar, sw_in, month = (a[:2500] for a in _site_input("FR-Hes2016"))
    res = ustar_threshold(nee, ta, ustar, sw_in, month, n_bootstrap=5)
    assert res.one_season and "pooled" in res.notes[0]
    assert np.all(res.season_thresholds == res.season_thresholds[0]) or np.all(np.isnan(res.season_thresholds))
