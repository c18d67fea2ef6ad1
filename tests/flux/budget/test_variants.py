"""The two reference site-years transformed into the shapes a further site-year may come in: stamps in UTC, stamps
in daylight-saving time, a southern-hemisphere site, missing values written as NA / empty / #N/A, NEE next to FC.
Each test names its variant; the budget must either give the same answer or say what is wrong and how to fix it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.flux.budget.files import PPFD_TO_SW_IN, BudgetFileError, BudgetInput, read_budget_csv
from gateway.flux.budget.pipeline import BudgetResult, BudgetSettings, run_budget
from gateway.flux.budget_cli import _coverage
from tests.flux.budget.refdata import DATA, SITES, peer_json

runner = CliRunner()

FILES = {"FR-Hes2016": (DATA / "FR-Hes2016_europe-fluxdata_columns.csv.gz", None),
         "DE-Tha1998": (DATA / "DE-Tha1998_gapfill_tool.txt.gz", 1998)}
FAST = BudgetSettings(ustar=0.3, partition=False)


def _read(site: str) -> BudgetInput:
    path, year = FILES[site]
    return read_budget_csv(path, year=year)


def _run(t: np.ndarray, cols: dict[str, np.ndarray], site: str, *, lat: float | None = None,
         utc_offset_h: float | None = None, settings: BudgetSettings = FAST) -> list[str]:
    s = SITES[site]
    result = run_budget(t, cols["NEE"], cols["SW_IN"], cols["TA"], cols["VPD"], cols["USTAR"],
                        lat=s["lat"] if lat is None else lat, lon=s["lon"],
                        utc_offset_h=s["utc_offset"] if utc_offset_h is None else utc_offset_h, settings=settings)
    return result.notes


def _clock_notes(notes: list[str]) -> list[str]:
    return [n for n in notes if n.startswith("time stamps:")]


@pytest.mark.parametrize("site", ["FR-Hes2016", "DE-Tha1998"])
def test_variant_stamps_in_utc_are_named_with_the_offset_to_give(site: str) -> None:
    data = _read(site)
    assert _clock_notes(_run(data.time_start_s, data.columns, site)) == []  # local standard time, as told
    offset = data.columns | {"SW_IN": data.columns["SW_IN"] + 8.0}  # a sensor reading 8 W m-2 at night too
    assert _clock_notes(_run(data.time_start_s, offset, site)) == []
    # the same records stamped in UTC (one hour earlier) but run as if UTC+1: the sun comes an hour late
    notes = _clock_notes(_run(data.time_start_s - 3600.0, data.columns, site))
    assert len(notes) == 1 and "UTC+0" in notes[0] and "--utc-offset 0 " in notes[0]
    centre = float(notes[0].split("centred ")[1].split(" h")[0])
    assert -1.15 < centre < -0.9
    # told the truth (UTC, offset 0), nothing to say
    assert _clock_notes(_run(data.time_start_s - 3600.0, data.columns, site, utc_offset_h=0.0)) == []


@pytest.mark.parametrize("site", ["FR-Hes2016", "DE-Tha1998"])
def test_variant_daylight_saving_time_in_the_stamps_is_named(site: str) -> None:
    data = _read(site)
    # stamps one hour ahead from day 87 to day 300 (about the European summer time): the records in between move
    # two half hours later, two records are lost at the change and two doubled stamps removed at the end
    i0, i1 = 87 * 48, 300 * 48
    cols = {k: np.concatenate([v[:i0], np.full(2, np.nan), v[i0:i1], v[i1 + 2:]]) for k, v in data.columns.items()
            if k in ("NEE", "SW_IN", "TA", "VPD", "USTAR")}
    notes = _clock_notes(_run(data.time_start_s, cols, site))
    assert len(notes) == 1 and "daylight-saving" in notes[0] and "--utc-offset" in notes[0]
    months = notes[0].split("in months ")[1].split(" measured")[0]
    assert {"1", "12"} <= set(months.split(", ")) and not {"5", "6", "7", "8"} & set(months.split(", "))


@pytest.mark.parametrize("site", ["FR-Hes2016", "DE-Tha1998"])
def test_variant_southern_hemisphere_site(site: str) -> None:
    """The year shifted by six months (July in January) at the negated latitude: a southern-hemisphere forest.
    Potential radiation must follow the southern sun, the stamps must raise no clock note, and the budget of the
    same measurements may move only by what the u* seasons' boundaries (calendar quarters, ONEFlux) change."""
    data = _read(site)
    s = SITES[site]
    cols = {k: np.roll(data.columns[k], 182 * 48) for k in ("NEE", "SW_IN", "TA", "VPD", "USTAR")}
    auto = BudgetSettings()
    north = run_budget(data.time_start_s, *(data.columns[k] for k in ("NEE", "SW_IN", "TA", "VPD", "USTAR")),
                       lat=s["lat"], lon=s["lon"], utc_offset_h=s["utc_offset"], settings=auto)
    south = run_budget(data.time_start_s, *(cols[k] for k in ("NEE", "SW_IN", "TA", "VPD", "USTAR")),
                       lat=-s["lat"], lon=s["lon"], utc_offset_h=s["utc_offset"], settings=auto)
    assert _clock_notes(south.notes) == []
    month = np.array([datetime.fromtimestamp(t, UTC).month for t in data.time_start_s])
    pot = south.hh["SW_IN_POT"]
    assert pot[month == 12].mean() > 2.5 * pot[month == 6].mean()  # southern summer in December
    sw = south.hh["SW_IN_F"]
    lags = {lag: float(np.corrcoef(np.roll(sw, lag), pot)[0, 1]) for lag in (-2, -1, 0, 1, 2)}
    assert max(lags, key=lags.__getitem__) == 0
    nee_n, nee_s = float(north.annual.values["NEE_F"][0]), float(south.annual.values["NEE_F"][0])
    assert abs(nee_s - nee_n) < float(north.annual.values["NEE_F_UNC"][0])
    for name in ("RECO_NT", "GPP_NT"):
        assert abs(float(south.annual.values[name][0]) / float(north.annual.values[name][0]) - 1.0) < 0.05


def _write_fluxnet(path: Path, t: np.ndarray, cols: dict[str, np.ndarray], missing: str, step_min: int = 30) -> None:
    lines = ["TIMESTAMP_START,TIMESTAMP_END," + ",".join(cols)]
    for i, start in enumerate(t):
        s = datetime.fromtimestamp(float(start), UTC)
        e = s + timedelta(minutes=step_min)
        values = (missing if not np.isfinite(v[i]) else f"{v[i]:.4f}" for v in cols.values())
        lines.append(f"{s:%Y%m%d%H%M},{e:%Y%m%d%H%M}," + ",".join(values))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("missing", ["NA", "", "#N/A", "NaN", "N/A", "-9999.0"])
def test_variant_missing_values_written_as(tmp_path: Path, missing: str) -> None:
    data = _read("DE-Tha1998")
    cols = {k: data.columns[k] for k in ("NEE", "SW_IN", "TA", "VPD", "USTAR")}
    _write_fluxnet(tmp_path / "in.csv", data.time_start_s, cols, missing)
    again = read_budget_csv(tmp_path / "in.csv")
    for name, values in cols.items():
        np.testing.assert_array_equal(np.isfinite(again.columns[name]), np.isfinite(values), err_msg=name)
        np.testing.assert_allclose(again.columns[name], values, atol=5e-5, err_msg=name)


def test_variant_nee_and_fc_both_present_says_which_is_used() -> None:
    data = _read("FR-Hes2016")  # europe-fluxdata: NEE_PI_1_1_1 and FC_1_1_1 side by side
    assert any(n.startswith("NEE from NEE_PI_1_1_1; FC_1_1_1 not used") for n in data.notes)
    both = np.isfinite(data.columns["NEE"]) & np.isfinite(data.columns["FC"])
    assert both.sum() > 5000 and not np.allclose(data.columns["NEE"][both], data.columns["FC"][both])


def test_variant_a_year_two_records_short_is_not_printed_as_whole() -> None:
    # stamps in UTC of a local year: the year keeps all but two half hours, the year before gets those two
    assert "365.958 of 366 days" in _coverage("2016", 17566, 1800.0)
    assert "0.042 of 365 days" in _coverage("2015", 2, 1800.0)
    assert "40.0 of 365 days" in _coverage("1998", 1920, 1800.0)
    assert _coverage("2016", 17568, 1800.0) == ""


def _peer_threshold(site: str) -> float:
    """diive 0.91's annual u* threshold (its port of ONEFlux's moving-point test): a threshold fixed from outside."""
    return float(peer_json(f"dv091_ustar_{site}.json")["annual"]["threshold"])


def _drivers(data: BudgetInput) -> dict[str, np.ndarray]:
    return {k: data.columns[k] for k in ("NEE", "SW_IN", "TA", "VPD", "USTAR")}


def _budget(t: np.ndarray, cols: dict[str, np.ndarray], site: str, settings: BudgetSettings) -> BudgetResult:
    s = SITES[site]
    return run_budget(t, cols["NEE"], cols["SW_IN"], cols["TA"], cols["VPD"], cols["USTAR"], lat=s["lat"],
                      lon=s["lon"], utc_offset_h=s["utc_offset"], settings=settings)


def _annual(result: BudgetResult, name: str) -> float:
    return float(result.annual.values[name][0])


@pytest.mark.parametrize("site", ["FR-Hes2016", "DE-Tha1998"])
def test_variant_hourly_records(site: str) -> None:
    """Two half hours averaged into one hourly record (missing when either is), as many US sites report, against the
    half-hourly year with the same records missing and the same u* threshold. MDS takes the same records around a
    gap in either step (REddyProc's ±2 records), so only the averaging differs: annual NEE within 5 % (measured
    3.2 / 2.5 %). The nighttime partitioning's E0 (the mean of the three best 15-day windows) moves with the number
    of nights in a window: RECO_NT and GPP_NT within 15 % (measured 0.4 / 1.0 % at FR-Hes, 11 / 9 % at DE-Tha)."""
    data = _read(site)
    cols = _drivers(data)
    hourly = {k: v.reshape(-1, 2).mean(axis=1) for k, v in cols.items()}
    same = {k: np.where(np.repeat(np.isfinite(hourly[k]), 2), v, np.nan) for k, v in cols.items()}
    settings = BudgetSettings(ustar=_peer_threshold(site))
    half = _budget(data.time_start_s, same, site, settings)
    hour = _budget(data.time_start_s[::2], hourly, site, settings)
    assert _annual(hour, "N_RECORDS") == _annual(half, "N_RECORDS") / 2
    assert abs(_annual(hour, "NEE_F") / _annual(half, "NEE_F") - 1.0) < 0.05
    for name in ("RECO_NT", "GPP_NT"):
        assert abs(_annual(hour, name) / _annual(half, name) - 1.0) < 0.15, name
    assert _clock_notes(hour.notes) == []


def test_variant_hourly_year_without_a_u_star_threshold_says_why(tmp_path: Path) -> None:
    data = _read("DE-Tha1998")
    hourly = {k: v.reshape(-1, 2).mean(axis=1) for k, v in _drivers(data).items()}
    _write_fluxnet(tmp_path / "in.csv", data.time_start_s[::2], hourly, "-9999", step_min=60)
    s = SITES["DE-Tha1998"]
    result = runner.invoke(app, ["flux", "budget", str(tmp_path / "in.csv"), "--lat", str(s["lat"]), "--lon",
                                 str(s["lon"]), "--utc-offset", "1", "--out", str(tmp_path / "out.csv")])
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "no u* threshold in 2459 night records" in message
    assert "bootstrap draws found one" in message and "Hourly records" in message and "--ustar VALUE" in message
    assert "Traceback" not in result.output


@pytest.mark.parametrize("site", ["FR-Hes2016", "DE-Tha1998"])
def test_variant_no_vpd_and_no_rh(tmp_path: Path, site: str) -> None:
    """Neither VPD nor RH: the budget runs Reichstein's MDS without VPD (the SW_IN-only look-up table and the mean
    diurnal course), leaves out the daytime partitioning and says so; NEE within the full method's uncertainty,
    the nighttime partitioning (TA only) unchanged within 1 %, the random uncertainty still there."""
    data = _read(site)
    cols = _drivers(data)
    _write_fluxnet(tmp_path / "in.csv", data.time_start_s, {k: v for k, v in cols.items() if k != "VPD"}, "-9999")
    without = read_budget_csv(tmp_path / "in.csv")
    assert not np.isfinite(without.columns["VPD"]).any()
    assert any(n.startswith("no VPD or RH column") for n in without.notes)
    settings = BudgetSettings(ustar=_peer_threshold(site))
    full = _budget(data.time_start_s, cols, site, settings)
    reduced = _budget(without.time_start_s, without.columns, site, settings)
    assert any(n.startswith("VPD: no values;") and "no daytime partitioning" in n for n in reduced.notes)
    assert "RECO_DT" in full.hh and "RECO_DT" not in reduced.hh and "RECO_DT" not in reduced.annual.values
    assert abs(_annual(reduced, "NEE_F") - _annual(full, "NEE_F")) < _annual(full, "NEE_F_UNC")
    assert abs(_annual(reduced, "RECO_NT") / _annual(full, "RECO_NT") - 1.0) < 0.01
    assert _annual(reduced, "NEE_F_RANDUNC") > 0.5 * _annual(full, "NEE_F_RANDUNC")
    assert np.isfinite(reduced.hh["NEE_F_RANDUNC"][np.isfinite(reduced.hh["NEE_F"])]).mean() > 0.99


def test_variant_vpd_column_empty_but_rh_present(tmp_path: Path) -> None:
    data = _read("DE-Tha1998")
    cols = _drivers(data) | {"RH": np.full(data.time_start_s.size, 60.0)}
    cols["VPD"] = np.full(data.time_start_s.size, np.nan)
    _write_fluxnet(tmp_path / "in.csv", data.time_start_s, cols, "-9999")
    again = read_budget_csv(tmp_path / "in.csv")
    assert np.isfinite(again.columns["VPD"]).mean() > 0.9 and any("VPD computed from RH" in n for n in again.notes)


def test_variant_ppfd_instead_of_sw_in(tmp_path: Path) -> None:
    data = _read("FR-Hes2016")
    cols = _drivers(data)
    ppfd = {("PPFD_IN_1_1_1" if k == "SW_IN" else k): (v / PPFD_TO_SW_IN if k == "SW_IN" else v)
            for k, v in cols.items()}
    _write_fluxnet(tmp_path / "in.csv", data.time_start_s, ppfd, "-9999")
    again = read_budget_csv(tmp_path / "in.csv")
    np.testing.assert_allclose(again.columns["SW_IN"], cols["SW_IN"], atol=1e-3)
    assert any(n.startswith(f"no SW_IN column: SW_IN = {PPFD_TO_SW_IN} x PPFD_IN_1_1_1") for n in again.notes)
    _write_fluxnet(tmp_path / "none.csv", data.time_start_s, {k: v for k, v in cols.items() if k != "SW_IN"}, "")
    with pytest.raises(BudgetFileError, match="no SW_IN column or PPFD_IN"):
        read_budget_csv(tmp_path / "none.csv")


@pytest.mark.parametrize("site", ["FR-Hes2016", "DE-Tha1998"])
def test_variant_summer_gaps(site: str) -> None:
    """Two summer months without NEE exceed MDS's 60 days (REddyProc's limit): no annual sum, and the note names the
    gap's days; 45 days are filled, with an uncertainty that covers the change and has grown."""
    data = _read(site)
    cols = _drivers(data)
    settings = BudgetSettings(ustar=_peer_threshold(site), partition=False)
    full = _budget(data.time_start_s, cols, site, settings)
    i0 = 182 * 48  # 1 July (2016, a leap year) or 2 July (1998)
    first = datetime.fromtimestamp(float(data.time_start_s[i0]), UTC)
    for days, filled in ((62, False), (45, True)):
        gap = cols | {"NEE": cols["NEE"].copy()}
        gap["NEE"][i0:i0 + days * 48] = np.nan
        result = _budget(data.time_start_s, gap, site, settings)
        notes = [n for n in result.notes if n.startswith("NEE: ") and "could not be gap-filled" in n]
        if filled:
            assert notes == []
            assert abs(_annual(result, "NEE_F") - _annual(full, "NEE_F")) < _annual(result, "NEE_F_UNC")
            assert _annual(result, "NEE_F_UNC") > 1.5 * _annual(full, "NEE_F_UNC")
        else:
            assert np.isnan(_annual(result, "NEE_F"))
            assert len(notes) == 1 and "longer than 60 days" in notes[0] and "--ustar" not in notes[0]
            start, end = notes[0].split("the gap ")[1].split(" is")[0].split("-")  # the gap and NEE missing next to it
            last = first + timedelta(days=days - 1)
            assert start <= f"{first:%Y%m%d}" and end >= f"{last:%Y%m%d}"
            assert (datetime.strptime(end, "%Y%m%d") - datetime.strptime(start, "%Y%m%d")).days < days + 7


def test_variant_nee_column_empty_but_fc_present(tmp_path: Path) -> None:
    """A europe-fluxdata or AmeriFlux file whose NEE_PI column is -9999 throughout: the flux comes from FC and SC."""
    data = _read("FR-Hes2016")
    cols = {"NEE_PI": np.full(data.time_start_s.size, np.nan), "FC": data.columns["FC"], "SC": data.columns["SC"],
            **{k: data.columns[k] for k in ("SW_IN", "TA", "VPD", "USTAR")}}
    _write_fluxnet(tmp_path / "in.csv", data.time_start_s, cols, "-9999")
    again = read_budget_csv(tmp_path / "in.csv")
    assert any(n.startswith("NEE_PI has no values: NEE from FC") for n in again.notes)
    assert any(n.startswith("NEE = FC + SC") for n in again.notes)
    expected = np.where(np.isfinite(cols["SC"]), cols["FC"] + np.nan_to_num(cols["SC"]), cols["FC"])
    np.testing.assert_allclose(again.columns["NEE"], expected, atol=2e-4)
