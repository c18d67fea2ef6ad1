"""Spectral correction factors as composed by gateway.flux.ec.speccorr: limits and monotonic behaviour."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.flux.ec.speccorr import correction_factors, sonic_paths_m

BASE: dict[str, Any] = {"u": 3.0, "zm": 20.0, "zl": -0.2, "period_s": 1800.0, "detrend": "block_average",
                        "timeconst_s": 250.0, "sonic_hpath_m": 0.11, "sonic_vpath_m": 0.125}


def test_factors_exceed_one_and_grow_with_tube_length() -> None:
    short = {"co2": {"separation_m": 0.1, "tube_length_m": 0.5, "tube_radius_m": 0.002, "flow_lpm": 12.0}}
    long = {"co2": {**short["co2"], "tube_length_m": 20.0}}
    a = correction_factors(method="moncrieff_1997", gases=short, **BASE)
    b = correction_factors(method="moncrieff_1997", gases=long, **BASE)
    assert 1.0 < a.h < a.gases["co2"] < b.gases["co2"]
    assert a.tau > 1.0


def test_fratini_factor_vanishes_for_a_fast_analyser_and_grows_as_fc_drops() -> None:
    # with no IIR loss and an instantaneous analyser nothing is left to correct
    fast = correction_factors(method="fratini_2012", gases={"h2o": {"fc": 1e6, "response_time_s": 0.0}}, **BASE)
    slow = correction_factors(method="fratini_2012", gases={"h2o": {"fc": 0.1}}, **BASE)
    assert fast.gases["h2o"] == pytest.approx(1.0, abs=1e-6)
    assert slow.gases["h2o"] > 1.1


def test_longer_sonic_paths_and_shorter_periods_need_more_correction() -> None:
    base = correction_factors(method="moncrieff_1997", gases={}, **BASE)
    long_path = correction_factors(method="moncrieff_1997", gases={}, **{**BASE, "sonic_vpath_m": 0.5})
    short_period = correction_factors(method="moncrieff_1997", gases={}, **{**BASE, "period_s": 300.0})
    assert long_path.h > base.h and short_period.h > base.h


def test_sonic_geometry_known_or_required() -> None:
    assert sonic_paths_m("hs_50_1", 1.0, 1.0) == (0.11, 0.125)
    assert sonic_paths_m("csat3", 11.5, 10.0) == (0.115, 0.10)
    with pytest.raises(ValueError, match="path lengths unknown"):
        sonic_paths_m("csat3", None, None)


def test_high_and_low_frequency_parts_can_be_selected_alone() -> None:
    both = correction_factors(method="moncrieff_1997", gases={}, **BASE)
    high = correction_factors(method="moncrieff_1997", gases={}, low_pass=False, **BASE)
    low = correction_factors(method="moncrieff_1997", gases={}, high_pass=False, **BASE)
    neither = correction_factors(method="moncrieff_1997", gases={}, high_pass=False, low_pass=False, **BASE)
    assert neither.h == pytest.approx(1.0) and neither.tau == pytest.approx(1.0)
    assert 1.0 < low.h < high.h < both.h
    # the two parts nearly multiply (they act at frequencies decades apart)
    assert both.h == pytest.approx(high.h * low.h, rel=1e-3)
