"""The budget chain (gateway.flux.budget.pipeline) on synthetic years with a known truth, and the aggregation's
units and uncertainty terms on hand-made numbers."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.flux.budget.aggregate import aggregate, gc_per_record, to_tco2e_ha
from gateway.flux.budget.pipeline import (
    MIN_USTAR_YEAR_DAYS,
    BudgetInputError,
    BudgetResult,
    BudgetSettings,
    run_budget,
)
from gateway.simulation.fluxyear import SyntheticYear, synthetic_year


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
    # the fill's spread, count and method describe filled records only (the daytime fit's FillAll pass gives them
    # at measured records too, for its weights alone)
    measured, filled = res.hh["NEE_F_QC"] == 0, res.hh["NEE_F_QC"] > 0
    for name in ("NEE_F_FSD", "NEE_F_FNUM", "NEE_F_FMETH"):
        assert np.isnan(res.hh[name][measured]).all() and np.isfinite(res.hh[name][filled]).all(), name


_YEAR_ARRAYS = ("time_start_s", "nee", "sw_in", "ta", "vpd", "ustar")


def _run(years: list[dict[str, np.ndarray]], settings: BudgetSettings) -> BudgetResult:
    """run_budget on the years' records one after the other (each a dict of the _YEAR_ARRAYS)."""
    cat = {name: np.concatenate([y[name] for y in years]) for name in _YEAR_ARRAYS}
    return run_budget(cat["time_start_s"], cat["nee"], cat["sw_in"], cat["ta"], cat["vpd"], cat["ustar"],
                      lat=50.0, lon=10.0, utc_offset_h=1.0, settings=settings)


def _arrays(year: SyntheticYear, rows: slice = slice(None)) -> dict[str, np.ndarray]:
    return {name: getattr(year, name)[rows] for name in _YEAR_ARRAYS}


def test_two_years_get_a_u_star_threshold_each_and_the_sums_of_each_year_run_alone() -> None:
    """ONEFlux and REddyProc estimate the u* threshold per year. Two synthetic years whose low-turbulence bias ends at
    0.20 and 0.35 m s-1: each year's threshold is the one a run of that year alone finds (the same records, the same
    seed), near its truth (± 0.05, the bar of the single-year synthetic test), and each year's sums are those of the
    year run alone up to the gap filling's windows reaching across New Year (measured: 0.02 and 0.08 gC m-2)."""
    first = synthetic_year(2021, seed=1, ustar_threshold=0.20)
    second = synthetic_year(2022, seed=2, ustar_threshold=0.35)
    st = BudgetSettings(partition=False)
    res = _run([_arrays(first), _arrays(second)], st)
    alone = [_run([_arrays(first)], st), _run([_arrays(second)], st)]
    assert res.annual.label == ["2021", "2022"]
    assert res.ustar is None and [(y.year, y.source) for y in res.ustar_years] == [("2021", "2021"), ("2022", "2022")]
    assert res.notes[0].startswith("u* threshold per year, each from that year's own nights (as ONEFlux and "
                                   "REddyProc): 2021 0.")
    assert not any("estimated once" in n for n in res.notes)
    n_first = first.time_start_s.size
    for i, (year, single) in enumerate(zip((first, second), alone, strict=True)):
        got = res.ustar_years[i]
        assert abs(got.threshold - year.ustar_threshold) <= 0.05
        assert got.threshold == single.scalars["USTAR_THRESHOLD"]
        for name in ("U05", "U50", "U95"):
            assert got.scenarios[name] == single.scalars[f"USTAR_THRESHOLD_{name}"]
        assert got.summary["p05"] == single.scalars["USTAR_THRESHOLD_P05"]
        rows = slice(0, n_first) if i == 0 else slice(n_first, None)
        assert np.all(res.hh["USTAR_THRESHOLD"][rows] == got.threshold)
        for name in ("NEE_F", "NEE_U05_F", "NEE_U95_F"):
            assert res.annual.values[name][i] == pytest.approx(single.annual.values[name][0], abs=0.5)
        assert res.annual.values["NEE_F_UNC"][i] == pytest.approx(single.annual.values["NEE_F_UNC"][0], rel=0.02)
        assert abs(res.annual.values["NEE_F"][i] - _gc(year.nee_true)) < 15.0
    assert res.ustar_years[1].threshold - res.ustar_years[0].threshold > 0.08  # two thresholds, not one
    assert np.isnan(res.scalars["USTAR_THRESHOLD"])  # no one value for the run  # type: ignore[arg-type]
    extra = res.annual_extra()
    assert extra["USTAR_THRESHOLD"] == [y.threshold for y in res.ustar_years]
    assert extra["USTAR_THRESHOLD_YEAR"] == ["2021", "2022"]
    assert extra["USTAR_THRESHOLD_U95"] == [y.scenarios["U95"] for y in res.ustar_years]
    single_columns = list(alone[0].annual_extra())
    cut = single_columns.index("USTAR_THRESHOLD") + 1
    # the single-year columns in their order, and after the threshold the year it is of
    assert list(extra) == [*single_columns[:cut], "USTAR_THRESHOLD_YEAR", *single_columns[cut:]]


def test_a_short_year_takes_the_threshold_of_its_neighbour_and_says_so() -> None:
    first = synthetic_year(2021, seed=1, ustar_threshold=0.20)
    second = synthetic_year(2022, seed=2, ustar_threshold=0.35)
    third = synthetic_year(2023, seed=3, ustar_threshold=0.20)
    res = _run([_arrays(first), _arrays(second), _arrays(third, slice(0, 40 * 48))], BudgetSettings(partition=False))
    assert res.annual.label == ["2021", "2022", "2023"]
    own, taken = res.ustar_years[1], res.ustar_years[2]
    assert (taken.year, taken.source, taken.own) == ("2023", "2022", False)
    assert taken.threshold == own.threshold and taken.scenarios == own.scenarios
    assert np.array_equal(taken.draws, own.draws)
    assert f"u* 2023 (40 days of records): takes the threshold of 2022, {own.threshold:.3f} m s-1" in res.notes
    assert np.all(res.hh["USTAR_THRESHOLD"][-40 * 48:] == own.threshold)
    assert res.annual_extra()["USTAR_THRESHOLD_YEAR"] == ["2021", "2022", "2022"]


def test_a_year_without_a_threshold_between_two_pools_both_neighbours() -> None:
    """A middle year whose USTAR is missing throughout has no estimate; the years on either side are equally near:
    their bootstrap draws are pooled (ONEFlux pools the draws of the years around a year) and the larger threshold
    filters it (Papale et al. 2006: the conservative choice)."""
    years = [_arrays(synthetic_year(2020 + k, seed=k, ustar_threshold=thr))
             for k, thr in ((1, 0.2), (2, 0.3), (3, 0.35))]
    years[1]["ustar"] = np.full(years[1]["ustar"].size, np.nan)
    res = _run(years, BudgetSettings(partition=False, n_bootstrap=20))
    before, middle, after = res.ustar_years
    assert (middle.source, middle.own) == ("2021+2023", False)
    assert middle.threshold == max(before.threshold, after.threshold)
    assert np.array_equal(middle.draws, np.concatenate([before.draws, after.draws]))
    assert middle.summary["n"] == before.draws.size + after.draws.size
    assert any(n.startswith("u* 2022: no threshold of its own (only 0 night records") for n in res.notes)
    assert any(n.startswith("u* 2022 (no threshold found in its nights): takes the threshold of 2021 and 2023")
               for n in res.notes)


def test_a_record_of_two_short_years_gets_one_threshold_and_says_so() -> None:
    """Mid-November to mid-February: neither year has the days for its own threshold; one over the whole record."""
    first, second = synthetic_year(2021, seed=1), synthetic_year(2022, seed=2)
    res = _run([_arrays(first, slice(-47 * 48, None)), _arrays(second, slice(0, 46 * 48))],
               BudgetSettings(partition=False, n_bootstrap=20))
    assert res.annual.label == ["2021", "2022"] and res.ustar is not None and not res.ustar_years
    assert res.scalars["USTAR_THRESHOLD"] == res.ustar.threshold
    assert any(n.startswith(f"u* threshold estimated once over 2021, 2022: no year has its own estimate "
                            f"({MIN_USTAR_YEAR_DAYS} days of records") for n in res.notes)


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


@pytest.mark.parametrize("offset", [100.0, -13.0, float("nan"), float("inf")])
def test_a_utc_offset_no_clock_has_is_refused_naming_it(offset: float) -> None:
    """Hostile inputs by hand (docs/reliability.md): `--utc-offset 100` gave a budget, `nan` an error about the time
    stamps."""
    year = synthetic_year(seed=7)
    with pytest.raises(BudgetInputError, match=r"UTC offset .* h is not in \[-12, 14\].*--utc-offset"):
        run_budget(year.time_start_s, year.nee, year.sw_in, year.ta, year.vpd, year.ustar, lat=50, lon=10,
                   utc_offset_h=offset)
