"""Nighttime partitioning (Reichstein et al. 2005, REddyProc rules): synthetic truth and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.flux.budget.partition_nt import (
    CELSIUS_TO_K,
    PartitionError,
    fit_lloyd_taylor,
    lloyd_taylor,
    partition_nighttime,
)
from gateway.simulation.fluxyear import SyntheticYear, synthetic_year

LAT, LON, UTC_OFFSET = 50.96, 13.57, 1.0


def make_year(seed: int = 1, *, gap_fraction_day: float = 0.25, gap_fraction_night: float = 0.6, e0: float = 180.0,
              alpha: float = 0.05, k: float = 0.04, noise: float = 1.0) -> SyntheticYear:
    """The partitioning tests' year (gateway/simulation/fluxyear.py): no low-turbulence bias (the partitioning gets
    NEE as measured), α constant all year (its recovery is tested), 30 % of the summer uptake capacity left in
    winter, VPD limitation k = 0.04 hPa-1, nights losing more records than days."""
    return synthetic_year(seed=seed, lat=LAT, lon=LON, utc_offset_h=UTC_OFFSET, ustar_threshold=0.0,
                          gap_fraction=gap_fraction_day, gap_fraction_night=gap_fraction_night, alpha_season=False,
                          leaf_off=0.3, e0=e0, alpha=alpha, k=k, noise=noise)


def _gc(flux: np.ndarray) -> float:
    return float(np.nansum(flux) * 1800 * 12.011e-6)


def _run(y: SyntheticYear, **kw: object) -> dict[str, np.ndarray]:
    return partition_nighttime(y.time_mid, y.nee, y.nee_f, y.ta, y.sw_in, LAT, LON, UTC_OFFSET, **kw)  # type: ignore[arg-type]


def test_lloyd_taylor_reference_point_and_q10() -> None:
    assert lloyd_taylor(2.0, 200.0, 288.15)[()] == pytest.approx(2.0)
    # Lloyd & Taylor's own fit, E0 = 308.56 K: Q10 between 10 and 20 °C = exp(308.56·(1/56.02 − 1/66.02)) = 2.30.
    q10 = lloyd_taylor(1.0, 308.56, 293.15) / lloyd_taylor(1.0, 308.56, 283.15)
    assert float(q10) == pytest.approx(2.30, abs=0.01)
    assert np.isnan(lloyd_taylor(1.0, 200.0, 227.0)[()])


def test_fit_recovers_parameters_of_noise_free_windows() -> None:
    t_k = np.linspace(275.0, 295.0, 40) + CELSIUS_TO_K - 273.15
    y = np.stack([lloyd_taylor(r, e, t_k) for r, e in [(1.5, 120.0), (3.0, 250.0), (0.8, 60.0)]])
    fit = fit_lloyd_taylor(y, np.broadcast_to(t_k, y.shape).copy())
    assert fit.ok.all()
    np.testing.assert_allclose(fit.e0, [120.0, 250.0, 60.0], atol=0.01)
    np.testing.assert_allclose(fit.rref, [1.5, 3.0, 0.8], rtol=1e-4)


@pytest.mark.parametrize("seed,e0", [(1, 180.0), (2, 120.0), (3, 260.0)])
def test_synthetic_year_recovered(seed: int, e0: float) -> None:
    y = make_year(seed=seed, e0=e0)
    r = _run(y)
    assert bool(r["NT_OK"]), str(r["NT_MESSAGE"])
    # E0 within 25 K (mean of three 15-day estimates with ±15-20 K standard error each).
    assert float(r["E0"]) == pytest.approx(e0, abs=25.0)
    assert r["E0_WIN_SELECTED"].sum() == 3
    # Annual RECO and GPP within 4 %, half-hourly RECO r >= 0.99.
    assert _gc(r["RECO_NT"]) == pytest.approx(_gc(y.reco_true), rel=0.04)
    assert _gc(r["GPP_NT"]) == pytest.approx(_gc(y.gpp_true), rel=0.04)
    assert np.corrcoef(r["RECO_NT"], y.reco_true)[0, 1] >= 0.99
    # The seasonal RREF follows the truth (daily means within 0.5 µmol m-2 s-1 at the 90th percentile).
    err = np.abs(r["RREF_NT"] - y.rref_true).reshape(-1, 48).mean(axis=1)
    assert np.percentile(err, 90) < 0.5
    np.testing.assert_allclose(r["GPP_NT"], r["RECO_NT"] - y.nee_f)
    assert np.all(r["NT_QC"] == 0)


def test_only_measured_temperature_enters_the_regression() -> None:
    y = make_year(seed=4)
    # Corrupt the temperature at half the nights but flag it as gap-filled: the result must not move.
    rng = np.random.default_rng(0)
    bad = rng.random(y.ta.size) < 0.5
    ta_bad = np.where(bad, y.ta + 8.0, y.ta)
    ref = _run(y)
    r = partition_nighttime(
        y.time_mid, y.nee, y.nee_f, ta_bad, y.sw_in, LAT, LON, UTC_OFFSET, ta_f_qc=bad.astype(int)
    )
    used_clean = ref["NIGHT_NT"] & ~bad
    assert np.array_equal(r["NIGHT_NT"], used_clean)
    # the regressions are exactly those of the same flags with the true temperature: the corrupted values are unused
    clean = partition_nighttime(
        y.time_mid, y.nee, y.nee_f, y.ta, y.sw_in, LAT, LON, UTC_OFFSET, ta_f_qc=bad.astype(int)
    )
    assert float(r["E0"]) == float(clean["E0"])
    np.testing.assert_array_equal(r["RREF_NT"], clean["RREF_NT"])
    assert float(r["E0"]) != float(ref["E0"])  # and half the nights fewer do move it: the flags were honoured


def test_year_without_nights_is_flagged() -> None:
    y = make_year(seed=5)
    r = partition_nighttime(y.time_mid, y.nee, y.nee_f, y.ta, np.full_like(y.sw_in, 500.0), LAT, LON, UTC_OFFSET)
    assert not bool(r["NT_OK"])
    assert "no night" in str(r["NT_MESSAGE"])
    assert np.all(np.isnan(r["RECO_NT"])) and np.all(np.isnan(r["GPP_NT"]))
    assert np.all(r["NT_QC"] == 3)


def test_too_few_nights_for_e0_is_flagged() -> None:
    y = make_year(seed=6)
    nee = y.nee.copy()
    nee[48 * 40 :] = np.nan  # only the first 40 days measured, all winter-cold with a small temperature range
    r = partition_nighttime(y.time_mid, nee, y.nee_f, y.ta, y.sw_in, LAT, LON, UTC_OFFSET, min_temperature_range=30.0)
    assert not bool(r["NT_OK"])
    assert "valid E0" in str(r["NT_MESSAGE"])
    assert np.all(np.isnan(r["RECO_NT"]))


def test_all_missing_temperature_is_flagged() -> None:
    y = make_year(seed=7)
    r = partition_nighttime(y.time_mid, y.nee, y.nee_f, np.full_like(y.ta, np.nan), y.sw_in, LAT, LON, UTC_OFFSET)
    assert not bool(r["NT_OK"])
    assert "temperature" in str(r["NT_MESSAGE"])
    assert np.all(np.isnan(r["RECO_NT"]))


def test_missing_temperature_in_prediction_is_nan_with_flag() -> None:
    y = make_year(seed=8)
    ta = y.ta.copy()
    ta[1000:1010] = np.nan
    r = partition_nighttime(y.time_mid, y.nee, y.nee_f, ta, y.sw_in, LAT, LON, UTC_OFFSET)
    assert np.all(np.isnan(r["RECO_NT"][1000:1010]))
    assert np.all(r["NT_QC"][1000:1010] == 2)
    assert np.isfinite(r["RECO_NT"][:1000]).all()


def test_kelvin_temperature_is_refused() -> None:
    y = make_year(seed=9)
    with pytest.raises(PartitionError, match="Celsius"):
        partition_nighttime(y.time_mid, y.nee, y.nee_f, y.ta + 273.15, y.sw_in, LAT, LON, UTC_OFFSET)


def test_irregular_or_unsorted_time_is_refused() -> None:
    y = make_year(seed=10)
    t = y.time_mid.copy()
    t[[5, 6]] = t[[6, 5]]
    with pytest.raises(PartitionError, match="regular ascending grid"):
        partition_nighttime(t, y.nee, y.nee_f, y.ta, y.sw_in, LAT, LON, UTC_OFFSET)
    with pytest.raises(PartitionError, match="nee_f has shape"):
        partition_nighttime(y.time_mid, y.nee, y.nee_f[:-1], y.ta, y.sw_in, LAT, LON, UTC_OFFSET)
