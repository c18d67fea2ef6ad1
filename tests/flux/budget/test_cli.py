"""`sinkwatch flux budget` end to end: the hesseflux comparisons through the command, u* auto mode, the AmeriFlux
BASE file of `sinkwatch flux ec`, and bad input (exit 2 with the column or row and the fix)."""

from __future__ import annotations

import csv
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner, Result

from gateway.cli import app
from gateway.report.files import ReportFiles, build_from_files
from gateway.simulation.fluxyear import synthetic_year
from tests.flux.budget.refdata import SITES, gc_m2, hesseflux_run, peer_json

runner = CliRunner()


def _write_input(path: Path, site: str, *, nee_flags: tuple[int, ...] = (0,), rows: slice = slice(None),
                 columns: tuple[str, ...] = ("NEE", "SW_IN", "TA", "VPD", "USTAR")) -> dict[str, np.ndarray]:
    run = hesseflux_run(site)
    data = {
        "NEE": np.where(np.isin(run["NEE_flag"], nee_flags), run["NEE_in"], np.nan),
        "SW_IN": run["SW_IN"], "TA": run["TA"], "VPD": run["VPD"], "USTAR": run["USTAR"],
    }
    data = {k: v[rows] for k, v in data.items()}
    starts, ends = run["TIMESTAMP_START"][rows], run["TIMESTAMP_END"][rows]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["TIMESTAMP_START", "TIMESTAMP_END", *columns])
        for i in range(len(starts)):
            w.writerow([starts[i], ends[i], *("-9999" if np.isnan(data[c][i]) else f"{data[c][i]:g}"
                                              for c in columns)])
    return data


def _read(path: Path) -> dict[str, np.ndarray]:
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = {}
    for key in rows[0]:
        if key.startswith("TIMESTAMP") and len(key) > 9 and key != "TIMESTAMP":
            out[key] = np.array([r[key] for r in rows])
            continue
        try:
            out[key] = np.array([float(r[key]) for r in rows])
        except ValueError:
            out[key] = np.array([r[key] for r in rows])
    for arr in out.values():
        if arr.dtype.kind == "f":
            arr[arr == -9999] = np.nan
    return out


def _budget(tmp_path: Path, site: str, *extra: str) -> tuple[Result, Path]:
    s = SITES[site]
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["flux", "budget", str(tmp_path / "in.csv"), "--lat", str(s["lat"]), "--lon",
                                 str(s["lon"]), "--utc-offset", str(s["utc_offset"]), "--out", str(out), *extra])
    return result, out


@pytest.mark.parametrize("site", ["FR-Hes2016", "DE-Tha1998"])
def test_the_command_reproduces_hesseflux_gap_filling(tmp_path: Path, site: str) -> None:
    data = _write_input(tmp_path / "in.csv", site)
    result, out = _budget(tmp_path, site, "--ustar", "none", "--daily", str(tmp_path / "dd.csv"), "--annual",
                          str(tmp_path / "yy.csv"))
    assert result.exit_code == 0, result.output
    hh = _read(out)
    ref = hesseflux_run(site)
    assert hh["TIMESTAMP_START"].tolist() == ref["TIMESTAMP_START"].tolist()
    gaps = np.isnan(data["NEE"])
    r = np.corrcoef(hh["NEE_F"][gaps], ref["NEE_f"][gaps])[0, 1]
    assert r >= 0.998
    assert abs(gc_m2(hh["NEE_F"]) - gc_m2(ref["NEE_f"])) <= 0.01 * abs(gc_m2(ref["NEE_f"]))
    assert np.all(hh["NEE_F_QC"][~gaps] == 0) and np.all(np.isin(hh["NEE_F_QC"][gaps], (1, 2, 3)))
    assert np.isfinite(hh["NEE_F_RANDUNC"]).mean() > 0.99 and np.isfinite(hh["RECO_NT"]).all()
    yy = _read(tmp_path / "yy.csv")
    assert yy["NEE_F"][0] == pytest.approx(gc_m2(hh["NEE_F"]), rel=1e-4)
    assert yy["NEE_F_TCO2E"][0] == pytest.approx(yy["NEE_F"][0] * 44.01 / 12.011 * 0.01, rel=1e-4)
    assert yy["NEE_F_UNC"][0] > 0 and yy["NEE_F_USTARUNC"][0] == 0  # u* term not estimated with --ustar none
    dd = _read(tmp_path / "dd.csv")
    assert len(dd["NEE_F"]) in (365, 366) and np.nansum(dd["NEE_F"]) == pytest.approx(yy["NEE_F"][0], rel=1e-5)
    assert f"{yy['NEE_F'][0]:.1f}" in result.output


def test_auto_ustar_reports_the_threshold_distribution(tmp_path: Path) -> None:
    _write_input(tmp_path / "in.csv", "FR-Hes2016", nee_flags=(0, 5))
    result, out = _budget(tmp_path, "FR-Hes2016", "--ustar", "auto", "--annual", str(tmp_path / "yy.csv"),
                          "--ustar-draws", str(tmp_path / "draws.csv"))
    assert result.exit_code == 0, result.output
    yy = _read(tmp_path / "yy.csv")
    ref = peer_json("dv091_ustar_FR-Hes2016.json")["bootstrap"]
    assert float(ref["p05"]["Annual"]) <= yy["USTAR_THRESHOLD"][0] <= float(ref["p95"]["Annual"])
    assert yy["USTAR_THRESHOLD_P05"][0] <= yy["USTAR_THRESHOLD_P50"][0] <= yy["USTAR_THRESHOLD_P95"][0]
    assert yy["NEE_F_USTARUNC"][0] > 0
    draws = (tmp_path / "draws.csv").read_text().split()
    assert draws[0] == "USTAR_THRESHOLD" and len(draws) - 1 >= 95
    hh = _read(out)
    assert np.all(hh["USTAR_THRESHOLD"] == yy["USTAR_THRESHOLD"][0])
    assert {"NEE_U05_F", "NEE_U95_F"} <= set(hh)
    # nights below the threshold were removed before filling
    night_low = (hh["USTAR_FILTER"] == 1)
    assert night_low.sum() > 100 and np.all(hh["NEE_F_QC"][night_low] > 0)


def test_a_record_of_two_years_gets_a_threshold_per_year_in_every_output(tmp_path: Path) -> None:
    """A whole year and 70 days of the next (their low-turbulence bias ends at 0.20 and 0.35 m s-1; how near the
    estimates come is tested in test_pipeline.py): the annual file has each year's threshold, bootstrap and scenario
    thresholds on its row, the draws file each year's draws, the run record each year's threshold, and the command
    prints them."""
    years = [synthetic_year(2021, seed=1, ustar_threshold=0.20), synthetic_year(2022, seed=2, ustar_threshold=0.35)]
    rows = [slice(None), slice(0, 70 * 48)]
    with (tmp_path / "in.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["TIMESTAMP_START", "TIMESTAMP_END", "NEE", "SW_IN", "TA", "VPD", "USTAR"])
        for year, part in zip(years, rows, strict=True):
            cols = [getattr(year, name)[part] for name in ("nee", "sw_in", "ta", "vpd", "ustar")]
            for i, t in enumerate(year.time_start_s[part]):
                w.writerow([_stamp(t), _stamp(t + 1800), *("-9999" if np.isnan(c[i]) else f"{c[i]:.6g}" for c in cols)])
    result = runner.invoke(app, ["flux", "budget", str(tmp_path / "in.csv"), "--lat", "50", "--lon", "10",
                                 "--utc-offset", "1", "--out", str(tmp_path / "out.csv"), "--annual",
                                 str(tmp_path / "yy.csv"), "--ustar-draws", str(tmp_path / "draws.csv"),
                                 "--record", str(tmp_path / "run.json")])
    assert result.exit_code == 0, result.output
    yy = _read(tmp_path / "yy.csv")
    assert list(yy["TIMESTAMP"]) == [2021, 2022] and list(yy["USTAR_THRESHOLD_YEAR"]) == [2021, 2022]
    assert yy["USTAR_THRESHOLD"][0] != yy["USTAR_THRESHOLD"][1]
    for i in range(2):
        assert yy["USTAR_THRESHOLD_P05"][i] <= yy["USTAR_THRESHOLD_P50"][i] <= yy["USTAR_THRESHOLD_P95"][i]
        assert yy["USTAR_THRESHOLD_U05"][i] <= yy["USTAR_THRESHOLD_U95"][i] and yy["USTAR_THRESHOLD_N"][i] >= 95
        assert re.search(rf"^u\* threshold {2021 + i} {yy['USTAR_THRESHOLD'][i]:.3f} m s-1 \(bootstrap p05 ",
                         result.output, re.M)
    hh = _read(tmp_path / "out.csv")
    assert set(np.unique(hh["USTAR_THRESHOLD"])) == set(yy["USTAR_THRESHOLD"])
    draws = _read(tmp_path / "draws.csv")
    assert set(np.unique(draws["YEAR"])) == {2021, 2022}
    for i, label in enumerate((2021, 2022)):
        assert np.median(draws["USTAR_THRESHOLD"][draws["YEAR"] == label]) == pytest.approx(
            yy["USTAR_THRESHOLD_P50"][i], abs=1e-5)
    record = json.loads((tmp_path / "run.json").read_text())
    assert [(a["year"], a["USTAR_THRESHOLD_YEAR"]) for a in record["annual"]] == [("2021", "2021"), ("2022", "2022")]
    assert [a["USTAR_THRESHOLD"] for a in record["annual"]] == pytest.approx(list(yy["USTAR_THRESHOLD"]), abs=1e-6)
    assert "note: u* threshold per year, each from that year's own nights" in result.output
    # the site report of one of the years shows that year's threshold, percentiles and draws
    files = ReportFiles(tmp_path / "out.csv", annual=tmp_path / "yy.csv", ustar_draws=tmp_path / "draws.csv",
                        budget_record=tmp_path / "run.json")
    for i, label in enumerate((2021, 2022)):
        budget = build_from_files(files, site="SYN", year=label).budget
        assert budget is not None
        u = budget.ustar
        assert u.mode == "auto" and u.threshold == pytest.approx(yy["USTAR_THRESHOLD"][i], abs=1e-5)
        assert u.percentiles[5.0] == pytest.approx(yy["USTAR_THRESHOLD_P05"][i], abs=1e-5)
        assert u.draws.size == np.sum(draws["YEAR"] == label)


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y%m%d%H%M")


def test_the_ameriflux_file_of_flux_ec_with_a_met_file(tmp_path: Path) -> None:
    run = hesseflux_run("DE-Tha1998")
    n = 30 * 48
    ec = tmp_path / "in.csv"
    with ec.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["TIMESTAMP_START", "TIMESTAMP_END", "FC", "TA", "VPD", "USTAR", "CO2", "PA", "ENGINE",
                    "SETTINGS_HASH", "STATUS", "REASONS"])
        for i in range(n):
            fc = run["NEE_in"][i] if run["NEE_flag"][i] == 0 else -9999
            w.writerow([run["TIMESTAMP_START"][i], run["TIMESTAMP_END"][i], fc, run["TA"][i], run["VPD"][i],
                        run["USTAR"][i], 400 + (i % 48) / 10, 98.5, "sinkwatch-ec 0.1.0", "abc", "ok", ""])
    result, _ = _budget(tmp_path, "DE-Tha1998", "--ustar", "0.3")
    assert result.exit_code == 2 and "SW_IN" in result.output and "--met" in result.output
    met = tmp_path / "met.csv"
    with met.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["TIMESTAMP_START", "SW_IN_1_1_1"])
        for i in range(n):
            w.writerow([run["TIMESTAMP_START"][i], run["SW_IN"][i]])
    result, out = _budget(tmp_path, "DE-Tha1998", "--ustar", "0.3", "--met", str(met), "--storage-height", "30")
    assert result.exit_code == 0, result.output
    assert "SC computed" in result.output
    hh = _read(out)
    assert len(hh["NEE_F"]) == n and np.isfinite(hh["NEE_F"]).all() and np.all(hh["USTAR_THRESHOLD"] == 0.3)


def _bad(tmp_path: Path, edit: str) -> str:
    path = tmp_path / "in.csv"
    _write_input(path, "DE-Tha1998", rows=slice(0, 40 * 48))
    lines = path.read_text().splitlines()
    header, body = lines[0].split(","), lines[1:]

    def set_col(name: str, fn: object) -> None:
        k = header.index(name)
        for i, line in enumerate(body):
            cells = line.split(",")
            cells[k] = fn(cells[k])  # type: ignore[operator]
            body[i] = ",".join(cells)

    if edit == "short":
        body = body[: 5 * 48]
    elif edit == "duplicate":
        body.insert(100, body[99])
    elif edit == "unsorted":
        body[100], body[101] = body[101], body[100]
    elif edit == "vpd_kpa":
        set_col("VPD", lambda v: v if v == "-9999" else f"{float(v) / 10:g}")
    elif edit == "ta_kelvin":
        set_col("TA", lambda v: v if v == "-9999" else f"{float(v) + 273.15:g}")
    elif edit == "no_sw_in":
        set_col("SW_IN", lambda v: "-9999")
    elif edit == "no_nights":
        set_col("SW_IN", lambda v: "200")
    elif edit == "bad_number":
        set_col("TA", lambda v: "warm" if v == "7.4" else v)
    path.write_text("\n".join([",".join(header), *body]) + "\n")
    result, _ = _budget(tmp_path, "DE-Tha1998", "--ustar", "none")
    assert result.exit_code == 2, result.output
    return str(result.output)


@pytest.mark.parametrize(("edit", "expected"), [
    ("short", "at least 14 days"),
    ("duplicate", "rows 101 and 102 have the same TIMESTAMP_START"),
    ("unsorted", "row 103 (TIMESTAMP_START 199801030200) comes before row 102; sort the records by time"),
    ("vpd_kpa", "column VPD: .* looks like kPa; give hPa"),
    ("ta_kelvin", "column TA: .* looks like kelvin"),
    ("no_sw_in", "column SW_IN: has no values"),
    ("no_nights", "column SW_IN: never below 10 W m-2: no night"),
    ("bad_number", "row 2, column TA: 'warm' is not a number"),
])
def test_bad_input_is_refused_with_the_column_or_row_and_the_fix(tmp_path: Path, edit: str, expected: str) -> None:
    output = _bad(tmp_path, edit)
    assert output.startswith("error: ")
    text = output.replace("\n", " ")
    assert (re.search(expected, text) if ".*" in expected else expected in text), output


def test_missing_half_hours_are_inserted_and_rows_kept(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    _write_input(path, "DE-Tha1998", rows=slice(0, 40 * 48))
    lines = path.read_text().splitlines()
    del lines[500:510]
    path.write_text("\n".join(lines) + "\n")
    result, out = _budget(tmp_path, "DE-Tha1998", "--ustar", "none")
    assert result.exit_code == 0, result.output
    assert "10 missing records" in result.output
    # 40 days (the 10 inserted records are part of the grid): a sum over part of a year says so
    assert "1998 (partial year: 40.0 of 365 days, not an annual budget): NEE " in result.output
    assert len(_read(out)["NEE_F"]) == 40 * 48 - 10
