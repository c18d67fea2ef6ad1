"""The report's data object and what the report derives from it, on a synthetic site-year with known truth
(gateway.report.example): the annual table's numbers are the budget's, the cumulative band ends at the annual
uncertainty, soil sums recover the true sum, missing parts are "not measured", bad input is refused by name."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.flux.budget.aggregate import Aggregates
from gateway.flux.soil.annual import efflux_sum, lloyd_taylor
from gateway.report.data import BudgetData, ReportDataError, SiteReportData, SoilEffluxSeries, StemSeries
from gateway.report.example import ExampleYear, example_year
from gateway.report.summary import GC_M2_PER_MG_HA, ReportSummary


@pytest.fixture(scope="module")
def example() -> ExampleYear:
    return example_year(2021)


def test_the_annual_table_shows_the_budgets_sums(example: ExampleYear) -> None:
    data = example.report_data()
    rows = {r.key: r for r in ReportSummary(data).rows}
    annual = example.budget.annual.values
    nee = rows["NEE"]
    assert nee.status == "measured"
    assert nee.gc_m2 == pytest.approx(float(annual["NEE_F"][0]))
    assert nee.gc_unc == pytest.approx(float(annual["NEE_F_UNC"][0]))
    assert nee.tco2e == pytest.approx(float(annual["NEE_F_TCO2E"][0]))
    # independently: the sum of the half-hourly NEE_F in gC m-2, and the synthetic truth within its uncertainty
    hh_sum = float(np.sum(example.budget.hh["NEE_F"]) * 1800 * 12.011e-6)
    assert nee.gc_m2 == pytest.approx(hh_sum, rel=1e-9)
    truth = float(np.sum(example.flux_year.nee_true) * 1800 * 12.011e-6)
    assert nee.gc_m2 is not None and nee.gc_unc is not None
    assert abs(nee.gc_m2 - truth) < 4 * nee.gc_unc + 0.05 * abs(truth)
    for name in ("GPP_NT", "RECO_NT", "GPP_DT", "RECO_DT"):
        assert rows[name].gc_m2 == pytest.approx(float(annual[name][0]))
        other = name.replace("NT", "XX").replace("DT", "NT").replace("XX", "DT")
        assert rows[name].gc_unc == pytest.approx(abs(float(annual[name][0]) - float(annual[other][0])) / 2)
    carbon = example.stem_carbon[0]
    stem = rows["C_AGB_INC:P1"]
    assert stem.gc_m2 == pytest.approx(carbon.c_inc_mg_ha * GC_M2_PER_MG_HA)
    assert stem.tco2e == pytest.approx(carbon.co2e_inc_t_ha)
    assert stem.gc_m2 is not None and stem.gc_m2 > 0


def test_the_cumulative_band_ends_at_the_annual_uncertainty(example: ExampleYear) -> None:
    s = ReportSummary(example.report_data())
    c = s.cumulative
    assert c.nee[-1] == pytest.approx(s.annual("NEE_F"), rel=1e-9)
    assert c.band[-1] == pytest.approx(s.annual("NEE_F_UNC"), rel=1e-6)
    assert np.all(c.band > 0)
    assert c.band[len(c.band) // 2] < c.band[-1]
    assert c.terms == "random ⊕ gap filling ⊕ u*"


def test_soil_sums_recover_the_true_annual_efflux(example: ExampleYear) -> None:
    s = ReportSummary(example.report_data())
    truth = example.soil_truth
    for name, true in (("FC_SOIL_GRAD", truth.gradient_gc_m2), ("FC_SOIL_CH_1", truth.chamber_gc_m2)):
        res = s.soil_sums[name]
        assert res.reason == ""
        # the multiplicative noise exp(N(0, σ)) biases the mean up by exp(σ²/2): ≤ 1.2 % for σ = 0.15
        assert res.total_gc_m2 == pytest.approx(true, rel=0.03)
        assert abs(res.total_gc_m2 - true) < 2 * res.unc_gc_m2
        assert res.e0 == pytest.approx(300.0, rel=0.05)
        assert res.n_filled > 0


def test_efflux_sum_fills_gaps_from_temperature_and_refuses_what_it_cannot_fill() -> None:
    t = 1800.0 * np.arange(48 * 60)
    ts = 10.0 + 8.0 * np.sin(2 * np.pi * t / (86400 * 30))
    true = lloyd_taylor(ts, 1.5, 250.0)
    flux = true.copy()
    flux[500:900] = np.nan  # one gap of 8 days
    unc = 0.1 * true
    res = efflux_sum(t, flux, unc, ts, start_s=0.0, end_s=t[-1] + 1800, period_s=1800)
    expected = float(np.sum(true) * 1800 * 12.011e-6)
    assert res.total_gc_m2 == pytest.approx(expected, rel=1e-6)
    assert res.n_filled == 400
    assert res.unc_systematic == pytest.approx(0.1 * expected, rel=1e-6)  # 10 %, fully correlated
    assert res.unc_gapfill == pytest.approx(0.0, abs=1e-6)  # exact response: no scatter
    # no soil temperature in a long gap: no sum, and the reason
    ts_gap = ts.copy()
    ts_gap[500:900] = np.nan
    res = efflux_sum(t, flux, unc, ts_gap, start_s=0.0, end_s=t[-1] + 1800, period_s=1800)
    assert np.isnan(res.total_gc_m2)
    assert "without a soil temperature" in res.reason
    # a period the series does not reach
    res = efflux_sum(t, flux, unc, ts, start_s=0.0, end_s=t[-1] + 86400 * 5, period_s=1800)
    assert np.isnan(res.total_gc_m2) and "slots without a value" in res.reason


def test_missing_parts_are_not_measured(example: ExampleYear) -> None:
    rows = {r.key: r for r in ReportSummary(example.report_data(soil=False, stems=False)).rows}
    for key in ("FC_SOIL", "C_AGB_INC"):
        assert rows[key].status == "not measured"
        assert rows[key].gc_text == "not measured" and rows[key].tco2e_text == "not measured"
        assert rows[key].gc_m2 is None


def test_partitioning_that_was_not_run_is_not_computed(example: ExampleYear) -> None:
    data = example.report_data()
    b = data.budget_data
    annual = Aggregates(b.annual.label, {k: v for k, v in b.annual.values.items() if "_DT" not in k})
    lean = dataclasses.replace(data, budget=dataclasses.replace(b, annual=annual))
    rows = {r.key: r for r in ReportSummary(lean).rows}
    assert rows["GPP_DT"].status == "not computed"
    assert rows["GPP_NT"].status == "measured" and rows["GPP_NT"].gc_unc is None


def test_the_content_digest_identifies_the_numbers(example: ExampleYear) -> None:
    data = example.report_data()
    assert data.content_digest() == example.report_data().content_digest()
    b = data.budget_data
    hh = dict(b.hh)
    hh["NEE_F"] = hh["NEE_F"].copy()
    hh["NEE_F"][100] += 0.01
    changed = dataclasses.replace(data, budget=dataclasses.replace(b, hh=hh))
    assert changed.content_digest() != data.content_digest()


def test_bad_input_is_refused_by_name(example: ExampleYear) -> None:
    data = example.report_data()
    b = data.budget_data
    with pytest.raises(ReportDataError, match="needs the carbon budget"):
        SiteReportData(data.site, None, data.provenance)
    short = dict(b.hh)
    short["NEE_F_RANDUNC"] = short["NEE_F_RANDUNC"][:-5]
    with pytest.raises(ReportDataError, match=r"NEE_F_RANDUNC has 17515 values but time_s has 17520"):
        dataclasses.replace(b, hh=short)
    lacking = {k: v for k, v in b.hh.items() if k != "NEE_F_QC"}
    with pytest.raises(ReportDataError, match="no NEE_F_QC"):
        dataclasses.replace(b, hh=lacking)
    shuffled = b.time_s.copy()
    shuffled[[10, 11]] = shuffled[[11, 10]]
    with pytest.raises(ReportDataError, match="not strictly increasing at record 11"):
        dataclasses.replace(b, time_s=shuffled)
    with pytest.raises(ReportDataError, match="no row for 2022"):
        dataclasses.replace(data, site=dataclasses.replace(data.site, year=2022))
    soil = data.soil[0]
    assert soil.ts is not None
    with pytest.raises(ReportDataError, match="ts has 10 values"):
        SoilEffluxSeries(soil.name, soil.method, soil.time_s, 1800.0, soil.flux, soil.flux_unc, soil.ts[:10])
    with pytest.raises(ReportDataError, match="series names repeat"):
        dataclasses.replace(data, soil=[soil, soil])
    st = data.stems[0]
    with pytest.raises(ReportDataError, match="twd_um has 3 values"):
        StemSeries(st.tree, st.time_s, st.gro_um, st.twd_um[:3])
    with pytest.raises(ReportDataError, match="step_s 900"):
        BudgetData(b.time_s, 900.0, b.hh, b.daily, b.monthly, b.annual, b.ustar)


def _stamps_read(stamps: list[str]) -> tuple[str, Any]:
    """The report's reading of a time-stamp column, column-wise (as it reads its files) and row by row (strptime)."""
    from gateway.report.files import ReportInputError, _Table

    table = _Table(Path("in.csv"), ["TIMESTAMP_START"], [[text] for text in stamps], "")
    readings = []
    for read in (lambda: table.times("TIMESTAMP_START"), lambda: table._times_by_row("TIMESTAMP_START", stamps)):
        try:
            readings.append(("read", read().tolist()))
        except ReportInputError as exc:
            readings.append(("refused", str(exc)))
    assert readings[0] == readings[1]
    return readings[0]


def test_time_stamps_read_column_wise_are_the_stamps_strptime_reads() -> None:
    rng = np.random.default_rng(7)
    minutes = rng.integers(0, 9998 * 525_960, 20_000)
    first = datetime(1, 1, 1, tzinfo=UTC)
    stamps = [f"{t.year:04d}{t:%m%d%H%M}" for t in (first + timedelta(minutes=int(m)) for m in minutes)]
    stamps += ["000101010000", "999912312359", "202402290000", "200002291230", "202112312330"]
    kind, _ = _stamps_read(stamps)
    assert kind == "read"


@pytest.mark.parametrize("bad", ["202102290000", "190002290000", "202104310000", "202113010000", "202100010000",
                                 "202101320000", "202101012400", "202101010060", "000001010000", "20210101000",
                                 "2021010100000", "20210101000a", "", "2021-01-0100"])
def test_a_bad_time_stamp_is_refused_naming_its_row_as_strptime_refuses_it(bad: str) -> None:
    kind, message = _stamps_read(["202101010000", bad, "202101010100"])
    assert kind == "refused" and "row 3" in message


@pytest.mark.parametrize(("text", "says"), [
    ("[" * 100_000 + "]" * 100_000, "not a JSON run record"),  # nested deeper than Python's recursion limit
    ('{"format": "sinkwatch-budget-run", "version": 1, "engine": "e", "settings_hash": "h", "outputs": [], '
     '"records": {"rows": Infinity, "first_start": "a", "last_end": "b"}, "settings": {}, "created_utc": "t", '
     '"notes": [], "inputs": [{"role": "input", "layout": "l", "name": "n", "sha256": "s"}]}',
     "the run record lacks or mangles"),
])
def test_a_hostile_budget_run_record_is_refused_by_name(tmp_path: Path, text: str, says: str) -> None:
    from gateway.report.files import ReportFiles, ReportInputError, _run_record

    record = tmp_path / "run.json"
    record.write_text(text)
    with pytest.raises(ReportInputError, match=f"run.json: {says}"):
        _run_record(ReportFiles(None, budget_record=record), {})


def test_a_csv_field_beyond_the_csv_modules_limit_is_refused_by_name(tmp_path: Path) -> None:
    """A stray quote opens a field that runs to the end of the file: the csv module's own error escaped."""
    from gateway.report.files import ReportFiles, ReportInputError, build_from_files

    budget = tmp_path / "budget.csv"
    rows = "\n".join(f"2021010{1 + i // 48}{(i % 48) // 2:02d}{30 * (i % 2):02d},1.0" for i in range(200))
    budget.write_text('TIMESTAMP_START,NEE_F\n"' + rows + "x" * 140_000 + "\n")
    with pytest.raises(ReportInputError, match=r"budget.csv: line \d+ of the budget file is not CSV \(field larger"):
        build_from_files(ReportFiles(budget), site="SYN")
