"""EddyPro's automatic time-lag optimisation on synthetic multi-period data with known lags: CO2 always 0.5 s, H2O
0.6 s in dry periods and 1.2 s in humid ones (sorption in the tube); the optimisation must find those windows and
the final processing the exact lags."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from gateway.flux.ec import timelag
from gateway.flux.ec.engine import ConfigurationError, optimise_time_lags, process_period
from gateway.flux.ec.period import RawPeriod

from .synthetic import END, metadata, settings_of

FS = 10.0
N = 3000  # 5-min periods


def test_plausible_window_is_median_plus_minus_pg_range_mad() -> None:
    lags = [0.5, 0.5, 0.6, 0.4, 0.5, 0.5, 2.9, 0.55, 0.45]  # one outlier
    win = timelag.plausible_window(lags, 1.5)
    assert win is not None
    assert win.nominal_s == 0.5
    mad = float(np.median(np.abs(np.array(lags) - 0.5)))
    assert (win.min_s, win.max_s) == pytest.approx((0.5 - 1.5 * mad, 0.5 + 1.5 * mad))
    assert timelag.plausible_window([], 1.5) is None


def test_h2o_windows_by_rh_class_fall_back_to_all_periods() -> None:
    rows = [{"co2": 0.5, "h2o": 0.6}] * 6 + [{"co2": 0.5, "h2o": 1.2}] * 6 + [{"h2o": 0.9}]
    rh = [30.0] * 6 + [70.0] * 6 + [50.0]
    opt = timelag.optimise_lags(rows, rh, h2o_classes=10, min_per_class=5)
    assert opt.counts == {"co2": 12, "h2o": 13}
    assert opt.window("h2o", 33.0).nominal_s == 0.6  # type: ignore[union-attr]
    assert opt.window("h2o", 75.0).nominal_s == 1.2  # type: ignore[union-attr]
    assert opt.window("h2o", 55.0).nominal_s == 0.9  # type: ignore[union-attr]  # one period there: all periods
    assert opt.window("co2", 75.0).nominal_s == 0.5  # type: ignore[union-attr]


def _periods() -> list[RawPeriod]:
    rng = np.random.default_rng(21)
    md = metadata(columns=[{"index": 1, "variable": "u"}, {"index": 2, "variable": "v"},
                           {"index": 3, "variable": "w"}, {"index": 4, "variable": "ts"},
                           {"index": 5, "variable": "co2", "measure_type": "mixing_ratio", "min_timelag": 0,
                            "max_timelag": 3},
                           {"index": 6, "variable": "h2o", "measure_type": "mixing_ratio", "min_timelag": 0,
                            "max_timelag": 3}],
                  acquisition_frequency=FS, analyzer={"model": "li7200_1", "path_type": "closed"})
    out = []
    for k in range(16):
        humid = k % 2 == 1
        w = 0.5 * rng.standard_normal(N)
        c = -0.3 * w + 0.3 * rng.standard_normal(N)
        q = 0.2 * w + 0.1 * rng.standard_normal(N)
        co2 = 400.0 + np.roll(c, round(0.5 * FS))                      # gas[i] = signal[i - lag]
        h2o = (18.5 if humid else 7.9) + np.roll(q, round((1.2 if humid else 0.6) * FS))
        data = {"u": 3.0 + rng.standard_normal(N), "v": 0.5 * rng.standard_normal(N), "w": w,
                "ts": 295.0 + 0.3 * rng.standard_normal(N) + 0.2 * w, "co2": co2, "h2o": h2o}
        end = END + timedelta(minutes=5 * k)
        out.append(RawPeriod(data=data, metadata=md, start=end - timedelta(minutes=5), end=end,
                             measure_types={"co2": "mixing_ratio", "h2o": "mixing_ratio"}, expected_records=N))
    return out


def test_engine_optimises_the_windows_and_finds_the_lags() -> None:
    periods = _periods()
    st = settings_of(avrg_len=5, tlag_meth="automatic_optimization", rot_meth="none", qc_meth="none")
    opt = optimise_time_lags(periods, st)
    assert opt.gases["co2"].nominal_s == pytest.approx(0.5)
    rh_dry = process_period(periods[0], settings_of(avrg_len=5, tlag_meth="none")).get("RH")
    rh_humid = process_period(periods[1], settings_of(avrg_len=5, tlag_meth="none")).get("RH")
    assert rh_dry < 40 < 60 < rh_humid
    assert opt.window("h2o", rh_dry).nominal_s == pytest.approx(0.6)  # type: ignore[union-attr]
    assert opt.window("h2o", rh_humid).nominal_s == pytest.approx(1.2)  # type: ignore[union-attr]
    for k, p in enumerate(periods):
        r = process_period(p, st, time_lags=opt)
        assert r.get("CO2_TLAG") == pytest.approx(0.5)
        assert r.get("H2O_TLAG") == pytest.approx(1.2 if k % 2 else 0.6)
    with pytest.raises(ConfigurationError, match="no optimised lag window"):
        process_period(periods[0], st)
