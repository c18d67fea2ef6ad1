"""The budget chain (gateway.flux.budget.pipeline) on synthetic years with a known truth, and the aggregation's
units and uncertainty terms on hand-made numbers."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.flux.budget.aggregate import aggregate, gc_per_record, to_tco2e_ha
from gateway.flux.budget.pipeline import BudgetInputError, BudgetSettings, run_budget
from gateway.simulation.fluxyear import synthetic_year


def _gc(x: np.ndarray) -> float:
    return float(np.nansum(x) * 1800 * 12.011e-6)


def test_a_synthetic_year_is_recovered_through_the_whole_chain() -> None:
    """Prescribed light response + Lloyd-Taylor truth, random error, a u* bias below 0.25 m s-1 at night and 31 %
    gaps. Tolerances (stated in docs/budget.md): annual NEE within 10 gC m-2 of the truth (measured: 0.6), inside
    the reported 2-sigma range widened by 5 gC m-2; nighttime RECO and GPP within 5 % (measured 1.3 %, 1.2 %),
    RECO's half hours r > 0.98 (0.997)."""
    year = synthetic_year(seed=5)
    res = run_budget(year.time_start_s, year.nee, year.sw_in, year.ta, year.vpd, year.ustar, lat=year.lat,
                     lon=year.lon, utc_offset_h=year.utc_offset_h, settings=BudgetSettings(ustar="auto"))
    annual = res.annual.values
    truth_nee, truth_reco, truth_gpp = _gc(year.nee_true), _gc(year.reco_true), _gc(year.gpp_true)
    assert abs(annual["NEE_F"][0] - truth_nee) < 10.0
    assert abs(annual["NEE_F"][0] - truth_nee) < 2 * annual["NEE_F_UNC"][0] + 5.0
    assert abs(annual["RECO_NT"][0] - truth_reco) < 0.05 * truth_reco
    assert abs(annual["GPP_NT"][0] - truth_gpp) < 0.05 * truth_gpp
    assert np.corrcoef(res.hh["RECO_NT"], year.reco_true)[0, 1] > 0.98
    assert abs(res.scalars["USTAR_THRESHOLD"] - year.ustar_threshold) <= 0.05  # type: ignore[operator]
    assert annual["GAP_FRACTION"][0] > year.gap.mean()  # the u* filter adds gaps to the prescribed ones
    assert annual["NEE_F_USTARUNC"][0] > 0 and annual["NEE_F_RANDUNC"][0] > 0 and annual["NEE_F_GFUNC"][0] > 0
    # daily sums add up to the year; tCO2e follows from gC
    assert np.nansum(res.daily.values["NEE_F"]) == pytest.approx(annual["NEE_F"][0])
    assert annual["NEE_F_TCO2E"][0] == pytest.approx(annual["NEE_F"][0] * 44.01 / 12.011 / 100)
    assert len(res.daily.label) == 365 and len(res.monthly.label) == 12 and res.annual.label == ["2021"]
    assert not any("estimated once over" in n for n in res.notes)  # one year: nothing pooled


def test_two_years_get_their_sums_and_say_the_u_star_threshold_is_pooled() -> None:
    first, second = synthetic_year(2021, seed=1), synthetic_year(2022, seed=2)

    def both(name: str) -> np.ndarray:
        return np.concatenate([getattr(first, name), getattr(second, name)])

    res = run_budget(both("time_start_s"), both("nee"), both("sw_in"), both("ta"), both("vpd"), both("ustar"),
                     lat=first.lat, lon=first.lon, utc_offset_h=first.utc_offset_h,
                     settings=BudgetSettings(partition=False))
    assert res.annual.label == ["2021", "2022"]
    assert any(n.startswith("u* threshold estimated once over 2021, 2022: ONEFlux and REddyProc estimate one per "
                            "year") for n in res.notes)
    for i, year in enumerate((first, second)):
        assert abs(res.annual.values["NEE_F"][i] - _gc(year.nee_true)) < 15.0


def test_a_record_not_starting_at_midnight_is_padded_and_cut_back() -> None:
    year = synthetic_year(seed=6)
    part = slice(7, 60 * 48 + 7)
    res = run_budget(year.time_start_s[part], year.nee[part], year.sw_in[part], year.ta[part], year.vpd[part],
                     year.ustar[part], lat=year.lat, lon=year.lon, utc_offset_h=year.utc_offset_h,
                     settings=BudgetSettings(ustar=0.25))
    assert res.hh["NEE_F"].size == 60 * 48 and np.isfinite(res.hh["NEE_F"]).all()
    assert res.daily.label[0] == "20210101" and res.daily.values["N_RECORDS"][0] == 48 - 7
    assert res.scalars["USTAR_MODE"] == "value" and any("not estimated" in n for n in res.notes)


def test_bad_records_are_refused() -> None:
    year = synthetic_year(seed=7)
    args = (year.nee, year.sw_in, year.ta, year.vpd, year.ustar)
    with pytest.raises(BudgetInputError, match="at least 14 days"):
        run_budget(year.time_start_s[:500], *(a[:500] for a in args), lat=50, lon=10, utc_offset_h=1)
    t = year.time_start_s.copy()
    t[100] = t[99]
    with pytest.raises(BudgetInputError, match="record 100: time steps"):
        run_budget(t, *args, lat=50, lon=10, utc_offset_h=1)
    with pytest.raises(BudgetInputError, match="USTAR: no values"):
        run_budget(year.time_start_s, *args[:4], None, lat=50, lon=10, utc_offset_h=1)
    with pytest.raises(BudgetInputError, match=r"--ustar 7"):
        run_budget(year.time_start_s, *args, lat=50, lon=10, utc_offset_h=1, settings=BudgetSettings(ustar=7.0))


def test_aggregation_units_and_uncertainty_terms() -> None:
    n = 4 * 48
    key = np.repeat(["d1", "d2", "d3", "d4"], 48)
    nee = np.full(n, 2.0)
    qc = np.zeros(n)
    qc[10:20] = 1  # one gap of 10 records on day 1
    qc[60] = 2  # a single filled record on day 2
    fsd = np.where(qc > 0, 3.0, np.nan)
    fnum = np.where(qc > 0, 9.0, np.nan)
    rand = np.full(n, 1.0)
    hh = {"NEE_F": nee, "NEE_F_QC": qc, "NEE_F_RANDUNC": rand, "NEE_F_FSD": fsd, "NEE_F_FNUM": fnum,
          "RECO_NT": np.full(n, 3.0)}
    hh["RECO_NT"][150] = np.nan
    scen = {"U05": nee - 0.1, "U95": nee + 0.1}
    agg = aggregate(key, hh, scenarios=scen).values
    per = 1800 * 12.011e-6
    assert agg["NEE_F"][0] == pytest.approx(48 * 2.0 * per)
    assert gc_per_record(1.0)[()] == pytest.approx(per) and to_tco2e_ha(12.011)[()] == pytest.approx(0.4401)
    assert agg["NEE_F_RANDUNC"][0] == pytest.approx(np.sqrt(48) * per)
    # the gap's 10 standard errors (3/sqrt(9) = 1) add up linearly, a lone filled record on its own
    assert agg["NEE_F_GFUNC"][0] == pytest.approx(10 * per)
    assert agg["NEE_F_GFUNC"][1] == pytest.approx(1 * per) and agg["NEE_F_GFUNC"][2] == 0
    assert agg["NEE_F_USTARUNC"][0] == pytest.approx(48 * 0.2 * per / (2 * 1.6448536269514722))
    total = np.sqrt(agg["NEE_F_RANDUNC"] ** 2 + agg["NEE_F_USTARUNC"] ** 2 + agg["NEE_F_GFUNC"] ** 2)
    assert np.allclose(agg["NEE_F_UNC"], total)
    assert agg["GAP_FRACTION"][0] == pytest.approx(10 / 48) and agg["N_RECORDS"][3] == 48
    assert np.isnan(agg["RECO_NT"][3]) and agg["RECO_NT"][0] == pytest.approx(48 * 3.0 * per)
    with pytest.raises(ValueError, match="contiguous"):
        aggregate(np.array(["a", "b", "a"]), {k: v[:3] for k, v in hh.items()})
