"""The budget's input layouts (files.py): the two reference site-years read from their original files — the
europe-fluxdata layout (TIMESTAMP_END only, `_PI` and position-qualified names, gzip) and the MPI-BGC online tool /
REddyProc layout (tab-separated, a units row, Day and Hour at the end of the period, no Year) — must give exactly
the drivers, times and NEE that hesseflux read from the same files; small synthetic tables check each rule alone."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.flux.budget.files import BudgetFileError, BudgetInput, read_budget_csv
from gateway.flux.budget.pipeline import ENGINE_NAME, ENGINE_VERSION
from gateway.report.files import ReportFiles, ReportInputError, build_from_files
from tests.flux.budget.refdata import DATA, SITES, hesseflux_run

FR_HES = DATA / "FR-Hes2016_europe-fluxdata_columns.csv.gz"
DE_THA = DATA / "DE-Tha1998_gapfill_tool.txt.gz"


def _assert_same_as_hesseflux(site: str, path: Path, **kwargs: object) -> BudgetInput:
    data = read_budget_csv(path, **kwargs)  # type: ignore[arg-type]
    run = hesseflux_run(site)
    assert [end for _, end in data.stamps] == list(run["TIMESTAMP_END"])
    assert [start for start, _ in data.stamps] == list(run["TIMESTAMP_START"])
    assert data.step_s == 1800.0 and len(data.time_start_s) == len(run["TIMESTAMP_END"])
    for name in ("TA", "SW_IN", "VPD", "USTAR"):
        ours, theirs = data.columns[name], run[name]
        np.testing.assert_array_equal(np.isfinite(ours), np.isfinite(theirs), err_msg=name)
        both = np.isfinite(ours)
        # hesseflux's output file rounds to its own precision; SW_IN to 0.05 W m-2
        np.testing.assert_allclose(ours[both], theirs[both], atol=0.05 if name == "SW_IN" else 1e-3, err_msg=name)
    nee = data.columns["NEE"]
    used = run["NEE_flag"] == 0
    np.testing.assert_allclose(nee[used], run["NEE_in"][used], atol=1e-3)
    # what hesseflux found missing or of bad quality (flag 2) is missing here too
    assert not np.isfinite(nee[run["NEE_flag"] == 2]).any()
    return data


def test_europe_fluxdata_file_reads_as_hesseflux_read_it() -> None:
    notes = _assert_same_as_hesseflux("FR-Hes2016", FR_HES).notes
    assert any("TIMESTAMP_END (TIMESTAMP_START from the step)" in n for n in notes)


def test_online_tool_file_reads_as_hesseflux_read_it() -> None:
    _assert_same_as_hesseflux("DE-Tha1998", DE_THA, year=1998)


def test_online_tool_file_without_year_needs_the_year() -> None:
    with pytest.raises(BudgetFileError, match=r"Day and Hour but no Year column; give the year with --year"):
        read_budget_csv(DE_THA)


def test_year_is_refused_for_a_file_with_its_own_dates() -> None:
    with pytest.raises(BudgetFileError, match=r"--year 2016 is for a file with a day of year and Hour but no Year "
                                              r"column; this file's records carry their own dates"):
        read_budget_csv(FR_HES, year=2016)


def test_command_reads_the_online_tool_file_with_year_and_records_the_run(tmp_path: Path) -> None:
    site = SITES["DE-Tha1998"]
    out, annual, record = tmp_path / "out.csv", tmp_path / "annual.csv", tmp_path / "run.json"
    result = CliRunner().invoke(app, [
        "flux", "budget", str(DE_THA), "--year", "1998", "--lat", str(site["lat"]), "--lon", str(site["lon"]),
        "--utc-offset", str(site["utc_offset"]), "--ustar", "0.3", "--out", str(out), "--annual", str(annual),
        "--record", str(record)])
    assert result.exit_code == 0, result.output
    rows = out.read_text().splitlines()
    assert rows[1].startswith("199801010000,199801010030,") and rows[-1].startswith("199812312330,199901010000,")
    assert len(rows) == 1 + 17520
    assert annual.read_text().splitlines()[1].startswith("1998,")
    assert "\n1998: NEE " in result.output and "partial year" not in result.output  # a whole year

    # the run record: what was read (bytes as stored), how, with what, and what was written
    doc = json.loads(record.read_text())
    assert doc["engine"] == f"{ENGINE_NAME} {ENGINE_VERSION}"
    assert doc["inputs"] == [{"role": "input", "name": DE_THA.name, "sha256": _sha(DE_THA),
                              "layout": "day of year and Hour (end of the period)"}]
    assert doc["records"] == {"rows": 17520, "first_start": "199801010000", "last_end": "199901010000",
                              "step_s": 1800.0}
    assert doc["settings"]["ustar"] == 0.3 and doc["settings"]["year"] == 1998
    assert doc["settings"]["lat"] == site["lat"] and doc["settings"]["despike_z"] is None
    assert doc["outputs"] == [{"option": "--out", "name": "out.csv", "sha256": _sha(out)},
                              {"option": "--annual", "name": "annual.csv", "sha256": _sha(annual)}]
    assert [f"note: {n}" for n in doc["notes"]] == [line for line in result.output.splitlines()
                                                   if line.startswith("note: ")]
    annual_nee = float(annual.read_text().splitlines()[1].split(",")[1])
    assert doc["annual"][0]["year"] == "1998" and doc["annual"][0]["NEE_F"] == pytest.approx(annual_nee, rel=1e-5)

    # the report checks the record against the files and carries it into the provenance
    files = ReportFiles(out, annual=annual, budget_record=record)
    report = build_from_files(files, site="DE-Tha")
    assert report.provenance.engines["budget"] == doc["engine"]
    assert report.provenance.settings_hashes["budget run settings (from its record)"] == doc["settings_hash"]
    (source,) = [i for i in report.provenance.inputs if i.role.startswith("budget input")]
    assert (source.source, source.sha256, source.records) == (DE_THA.name, _sha(DE_THA), 17520)
    assert any(n.startswith("budget run: record times from day of year and Hour") for n in report.provenance.notes)
    lines = out.read_text().splitlines()
    cells = lines[1].split(",")
    cells[2] = f"{float(cells[2]) + 0.01:g}"  # NEE of the first half hour: still a valid file, another one
    out.write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
    with pytest.raises(ReportInputError, match=r"out.csv: its SHA-256 .* is not the .* the budget run recorded for "
                                               r"--out \(out.csv\): the file was changed after the run"):
        build_from_files(files, site="DE-Tha")
    record.write_text(record.read_text().replace('"outputs"', '"output_files"'))
    with pytest.raises(ReportInputError, match=r"run.json: the run record lacks or mangles 'outputs'"):
        build_from_files(ReportFiles(out, budget_record=record), site="DE-Tha")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- one rule at a time, on a small synthetic table ----------------------------------------------------------------

def _synthetic(days: int = 3) -> dict[str, np.ndarray]:
    n = days * 48
    hour = (np.arange(n) % 48) / 2.0
    sun = np.clip(np.sin((hour - 6.0) / 12.0 * np.pi), 0.0, None)
    return {
        "ends": np.array([datetime(2021, 6, 1, tzinfo=UTC) + timedelta(minutes=30 * (i + 1)) for i in range(n)]),
        "NEE": np.round(3.0 - 12.0 * sun, 3), "SW_IN": np.round(700.0 * sun, 1), "TA": np.round(12.0 + 6.0 * sun, 2),
        "VPD": np.round(2.0 + 10.0 * sun, 2), "RH": np.round(90.0 - 40.0 * sun, 1), "USTAR": np.full(n, 0.35),
    }


def _write(path: Path, header: list[str], rows: list[list[str]], *, sep: str = ",", gz: bool = False,
           units: list[str] | None = None) -> Path:
    lines = [sep.join(header)] + ([sep.join(units)] if units else []) + [sep.join(r) for r in rows]
    text = "\n".join(lines) + "\n"
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def _stamp(t: datetime) -> str:
    return t.strftime("%Y%m%d%H%M")


def test_ameriflux_base_preamble_is_skipped(tmp_path: Path) -> None:
    s = _synthetic()
    names = ["FC", "SW_IN_1_1_1", "TA_1_1_1", "VPD_PI_1_1_1", "USTAR"]
    values = {**s, "FC": s["NEE"], "SW_IN_1_1_1": s["SW_IN"], "TA_1_1_1": s["TA"], "VPD_PI_1_1_1": s["VPD"]}
    path = _write(tmp_path / "US-Xyz_HH_202106010000_202106040000.csv", ["TIMESTAMP_START", "TIMESTAMP_END", *names],
                  _fluxnet_rows(s, names, values))
    path.write_text("# Site: US-Xyz\n# Version: 1-5\n" + path.read_text())
    data = read_budget_csv(path)
    assert data.stamps[0] == ("202106010000", "202106010030")
    np.testing.assert_array_equal(data.columns["NEE"], s["NEE"])
    np.testing.assert_array_equal(data.columns["VPD"], s["VPD"])


def test_timestamp_start_alone_gives_the_ends(tmp_path: Path) -> None:
    s = _synthetic()
    rows = [[_stamp(e - timedelta(minutes=30)), f"{s['NEE'][i]}", f"{s['SW_IN'][i]}", f"{s['TA'][i]}",
             f"{s['VPD'][i]}"] for i, e in enumerate(s["ends"])]
    data = read_budget_csv(_write(tmp_path / "in.csv", ["TIMESTAMP_START", "NEE", "SW_IN", "TA", "VPD"], rows))
    assert data.stamps[0] == ("202106010000", "202106010030") and data.stamps[-1][1] == "202106040000"
    np.testing.assert_array_equal(data.columns["NEE"], s["NEE"])


@pytest.mark.parametrize(("sep", "gz"), [("\t", False), (" ", False), (";", True)])
def test_year_doy_hour_layout_with_units_row(tmp_path: Path, sep: str, gz: bool) -> None:
    s = _synthetic()
    rows = []
    for i, e in enumerate(s["ends"]):
        start = e - timedelta(minutes=30)
        # the online tool's convention: the end of the last half hour of a day is hour 24 of that day
        doy, hour = start.timetuple().tm_yday, (e - datetime(start.year, 1, 1, tzinfo=UTC)).total_seconds() / 3600
        hour -= (doy - 1) * 24
        rows.append([str(start.year), str(doy), f"{hour:g}", f"{s['NEE'][i]}", f"{s['SW_IN'][i]}",
                     f"{s['TA'][i]}", f"{s['VPD'][i]}", f"{s['USTAR'][i]}"])
    header = ["Year", "DoY", "Hour", "NEE", "Rg", "Tair", "VPD", "Ustar"]
    units = ["-", "-", "-", "umolm-2s-1", "Wm-2", "degC", "hPa", "ms-1"]
    data = read_budget_csv(_write(tmp_path / "in.txt", header, rows, sep=sep, gz=gz, units=units))
    assert data.stamps[0] == ("202106010000", "202106010030")
    assert data.stamps[47] == ("202106012330", "202106020000")
    for name in ("NEE", "SW_IN", "TA", "VPD", "USTAR"):
        np.testing.assert_array_equal(data.columns[name], s[name], err_msg=name)


def test_bad_day_or_hour_names_the_row(tmp_path: Path) -> None:
    rows = [["2021", "152", "0.5", "1", "0", "10", "2"], ["2021", "152", "25", "1", "0", "10", "2"]]
    path = _write(tmp_path / "in.txt", ["Year", "DoY", "Hour", "NEE", "Rg", "Tair", "VPD"], rows, sep="\t")
    with pytest.raises(BudgetFileError, match=r"row 3: Year '2021', DoY '152', Hour '25' is not a time"):
        read_budget_csv(path)


def _fluxnet_rows(s: dict[str, np.ndarray], names: list[str], values: dict[str, np.ndarray]) -> list[list[str]]:
    return [[_stamp(e - timedelta(minutes=30)), _stamp(e), *(f"{values[n][i]:g}" for n in names)]
            for i, e in enumerate(s["ends"])]


def test_flux_quality_flag_removes_bad_nee(tmp_path: Path) -> None:
    s = _synthetic()
    flag = np.arange(len(s["NEE"])) % 3  # 0, 1, 2 in turn
    values = {**s, "FC_SSITC_TEST": flag}
    names = ["FC", "FC_SSITC_TEST", "SW_IN", "TA", "VPD"]
    values["FC"] = s["NEE"]
    path = _write(tmp_path / "in.csv", ["TIMESTAMP_START", "TIMESTAMP_END", *names], _fluxnet_rows(s, names, values))
    data = read_budget_csv(path)
    np.testing.assert_array_equal(np.isfinite(data.columns["NEE"]), flag <= 1)
    np.testing.assert_array_equal(data.columns["NEE"][flag <= 1], s["NEE"][flag <= 1])
    assert f"{int((flag == 2).sum())} NEE values with FC_SSITC_TEST > 1 removed" in " ".join(data.notes)
    kept = read_budget_csv(path, max_flux_flag=2)
    np.testing.assert_array_equal(kept.columns["NEE"], s["NEE"])
    strict = read_budget_csv(path, max_flux_flag=0)
    np.testing.assert_array_equal(np.isfinite(strict.columns["NEE"]), flag == 0)


def test_online_tool_qc_flag_removes_bad_nee(tmp_path: Path) -> None:
    s = _synthetic()
    qc = np.where(np.arange(len(s["NEE"])) % 4 == 0, 2, 0)
    names = ["NEE", "qcNEE", "SW_IN", "TA", "VPD"]
    path = _write(tmp_path / "in.csv", ["TIMESTAMP_START", "TIMESTAMP_END", *names],
                  _fluxnet_rows(s, names, {**s, "qcNEE": qc}))
    np.testing.assert_array_equal(np.isfinite(read_budget_csv(path).columns["NEE"]), qc == 0)


def test_vpd_from_rh_and_ta(tmp_path: Path) -> None:
    s = _synthetic()
    names = ["NEE", "SW_IN", "TA", "RH"]
    path = _write(tmp_path / "in.csv", ["TIMESTAMP_START", "TIMESTAMP_END", *names], _fluxnet_rows(s, names, s))
    data = read_budget_csv(path)
    # Magnus over water, hPa (FAO-56 eq. 11 × 10), written out here independently of the reader
    expected = 6.108 * np.exp(17.27 * s["TA"] / (s["TA"] + 237.3)) * (1.0 - s["RH"] / 100.0)
    np.testing.assert_allclose(data.columns["VPD"], expected, rtol=1e-12)
    assert any("VPD computed from RH and TA" in n for n in data.notes)


def test_plain_name_beats_pi_and_qualified_names(tmp_path: Path) -> None:
    s = _synthetic()
    values = {**s, "NEE_PI_1_1_1": s["NEE"] + 100.0, "NEE_PI": s["NEE"] + 50.0, "TA_1_1_1": s["TA"],
              "TA_1_2_1": s["TA"] + 1.0}
    names = ["NEE_PI_1_1_1", "NEE_PI", "NEE", "SW_IN", "TA_1_1_1", "TA_1_2_1", "VPD"]
    path = _write(tmp_path / "in.csv", ["TIMESTAMP_START", "TIMESTAMP_END", *names], _fluxnet_rows(s, names, values))
    data = read_budget_csv(path)
    np.testing.assert_array_equal(data.columns["NEE"], s["NEE"])
    np.testing.assert_array_equal(data.columns["TA"], s["TA"])  # the first qualified column
    names.remove("NEE")
    path = _write(tmp_path / "pi.csv", ["TIMESTAMP_START", "TIMESTAMP_END", *names], _fluxnet_rows(s, names, values))
    np.testing.assert_allclose(read_budget_csv(path).columns["NEE"], s["NEE"] + 50.0, rtol=1e-12)


def test_met_file_with_timestamp_end_only(tmp_path: Path) -> None:
    s = _synthetic()
    main = _write(tmp_path / "flux.csv", ["TIMESTAMP_START", "TIMESTAMP_END", "FC", "TA", "VPD"],
                  _fluxnet_rows(s, ["FC", "TA", "VPD"], {**s, "FC": s["NEE"]}))
    met = _write(tmp_path / "met.csv", ["TIMESTAMP_END", "SW_IN"],
                 [[_stamp(e), f"{s['SW_IN'][i]:g}"] for i, e in enumerate(s["ends"])])
    np.testing.assert_array_equal(read_budget_csv(main, met=met).columns["SW_IN"], s["SW_IN"])


def test_a_fluxnet2015_product_gives_its_measured_nee(tmp_path: Path) -> None:
    """The whole year and the refusals: tests/flux/budget/test_fluxnet_product.py."""
    s = _synthetic()
    qc = np.arange(len(s["NEE"])) % 4  # 0 measured, 1-3 gap-filled
    names = ["NEE_VUT_REF", "NEE_VUT_REF_QC", "SW_IN_F", "TA_F", "VPD_F", "USTAR"]
    values = {**s, "NEE_VUT_REF": s["NEE"], "NEE_VUT_REF_QC": qc, "SW_IN_F": s["SW_IN"], "TA_F": s["TA"],
              "VPD_F": s["VPD"]}
    path = _write(tmp_path / "FLX_XX-Xyz_FLUXNET2015_FULLSET_HH.csv", ["TIMESTAMP_START", "TIMESTAMP_END", *names],
                  _fluxnet_rows(s, names, values))
    data = read_budget_csv(path)
    np.testing.assert_array_equal(data.columns["NEE"], np.where(qc == 0, s["NEE"], np.nan))
    np.testing.assert_array_equal(data.columns["VPD"], s["VPD"])
    note = "NEE from NEE_VUT_REF where NEE_VUT_REF_QC is 0 (measured): 36 records"
    assert any(n.startswith(note) for n in data.notes)


def test_no_time_columns_says_which_layouts(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.csv", ["DATE", "NEE"], [["2021-06-01", "1"], ["2021-06-01", "2"]])
    with pytest.raises(BudgetFileError, match=r"no time columns .*TIMESTAMP_START and TIMESTAMP_END .*, Year, DoY "
                                              r"and Hour .*, or date and time"):
        read_budget_csv(path)


@pytest.mark.parametrize("damage", ["cut", "flipped"])
def test_corrupt_gzip_is_a_clear_error(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "in.csv.gz"
    data = bytearray(gzip.compress(b"TIMESTAMP_START,TIMESTAMP_END\n" * 20))
    if damage == "cut":
        del data[-6:]
    else:
        data[10] ^= 0xFF  # the deflate stream's first byte: zlib's own error, not gzip's
    path.write_bytes(bytes(data))
    with pytest.raises(BudgetFileError, match=r"not a text table \(UTF-8 CSV, plain or gzip-compressed: a damaged"):
        read_budget_csv(path)


@pytest.mark.parametrize("gz", [False, True])
def test_a_windows_1252_table_is_read_and_said_so(tmp_path: Path, gz: bool) -> None:
    """A units row written on Windows (``µmol``, ``°C``, non-breaking spaces as in ICOS's teaching files, e.g. SE-Htm
    2016 of tests/data/budget/) is not UTF-8; its numbers are ASCII. It used to be refused as "not a text table … a
    damaged or cut gzip file?"; it reads as the same table in UTF-8 does, with a note."""
    s = _synthetic()
    rows = [[_stamp(e - timedelta(minutes=30)), _stamp(e), f"{s['NEE'][i]}", f"{s['SW_IN'][i]}", f"{s['TA'][i]}",
             f"{s['VPD'][i]}"] for i, e in enumerate(s["ends"])]
    header = ["TIMESTAMP_START", "TIMESTAMP_END", "NEE", "SW_IN", "TA", "VPD"]
    units = ["-", "-", "\u00b5mol m-2 s-1\u00a0\u00a0", "W m-2", "\u00b0C", "hPa"]
    utf8 = read_budget_csv(_write(tmp_path / "utf8.csv", header, rows, units=units))
    path = tmp_path / ("cp1252.csv.gz" if gz else "cp1252.csv")
    text = "\n".join([",".join(header), ",".join(units), *(",".join(r) for r in rows)]) + "\n"
    path.write_bytes(gzip.compress(text.encode("cp1252")) if gz else text.encode("cp1252"))
    data = read_budget_csv(path)
    assert data.stamps == utf8.stamps
    for name in ("NEE", "SW_IN", "TA", "VPD"):
        np.testing.assert_array_equal(data.columns[name], utf8.columns[name], err_msg=name)
    assert any(re.search(r"read as Windows-1252 text, not UTF-8 \(byte 0xb5 on line 2\)", n) for n in data.notes)
    assert not any("Windows-1252" in n for n in utf8.notes)


def test_a_binary_file_is_refused_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(b"TIMESTAMP_START,TIMESTAMP_END\n202106010000,\x00\xff\x81\n")
    with pytest.raises(BudgetFileError, match=r"not a text table: byte 0xff on line 2 is neither UTF-8 nor "
                                              r"Windows-1252 text; save the table as a UTF-8 CSV"):
        read_budget_csv(path)


def test_the_se_htm_original_is_read_as_ICOS_published_it() -> None:
    """The vendored SE-Htm 2016 slice, bytes as ICOS published them: its Windows-1252 units row and its time layout
    (``date``/``time``) are read, each said in a note; a year of half hours from 2016-01-01 00:00."""
    data = read_budget_csv(DATA / "SE-Htm2016_icos_pi_columns.csv.gz")
    assert data.stamps[0] == ("201601010000", "201601010030") and data.stamps[-1][1] == "201701010000"
    assert any("Windows-1252" in note for note in data.notes)
    assert "record times from date and time (end of the period)" in data.notes


@pytest.mark.parametrize("where", ["no_folder", "a_folder"])
def test_an_output_that_cannot_be_written_is_refused_before_computing(tmp_path: Path, where: str) -> None:
    site = SITES["DE-Tha1998"]
    target = tmp_path / "missing" / "annual.csv" if where == "no_folder" else tmp_path
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(app, [
        "flux", "budget", str(DE_THA), "--year", "1998", "--lat", str(site["lat"]), "--lon", str(site["lon"]),
        "--utc-offset", str(site["utc_offset"]), "--ustar", "0.3", "--out", str(out), "--annual", str(target)])
    assert result.exit_code == 2, result.output  # an uncaught OSError would be exit 1 with a traceback
    expected = "does not exist; create it" if where == "no_folder" else "is a folder; give a file name"
    assert f"error: --annual {target}: " in result.output and expected in result.output
    assert not out.exists()  # refused before anything was computed or written


def test_a_gap_too_long_to_fill_gives_no_annual_sum_and_says_so(tmp_path: Path) -> None:
    lines = gzip.decompress(DE_THA.read_bytes()).decode().splitlines()
    header, body = lines[:2], lines[2:]
    path = tmp_path / "gap.txt"
    path.write_text("\n".join([*header, *body[:100 * 48], *body[175 * 48:]]) + "\n")  # 75 days cut out
    site = SITES["DE-Tha1998"]
    annual = tmp_path / "annual.csv"
    result = CliRunner().invoke(app, [
        "flux", "budget", str(path), "--year", "1998", "--lat", str(site["lat"]), "--lon", str(site["lon"]),
        "--utc-offset", str(site["utc_offset"]), "--ustar", "0.3", "--out", str(tmp_path / "out.csv"), "--annual",
        str(annual)])
    assert result.exit_code == 0, result.output
    assert "missing records inside the time range were inserted" in result.output
    assert re.search(r"note: NEE: \d+ records could not be gap-filled: the gap 1998041\d-199806\d\d is longer than "
                     r"60 days", result.output)
    assert re.search(r"\n1998: NEE missing \(\d+ records not gap-filled, see the notes\)", result.output)
    assert "nan" not in result.output
    header_row, row = annual.read_text().splitlines()[:2]
    assert row.split(",")[header_row.split(",").index("NEE_F")] == "-9999"


@pytest.mark.parametrize("cell", ["1e308", "-2e30", "inf", "-Infinity"])
def test_a_cell_beyond_any_measurement_is_missing_and_said_so(tmp_path: Path, cell: str) -> None:
    """Hostile inputs by hand (docs/reliability.md): one NEE cell of 1e308 made the year's NEE missing ("0 records
    not gap-filled"); an infinite cell was a gap without a word."""
    s = _synthetic()
    names = ["NEE", "SW_IN", "TA", "VPD"]
    rows = _fluxnet_rows(s, names, s)
    rows[5][2] = rows[9][2] = cell
    data = read_budget_csv(_write(tmp_path / "in.csv", ["TIMESTAMP_START", "TIMESTAMP_END", *names], rows))

    assert np.isnan(data.columns["NEE"][[5, 9]]).all()
    np.testing.assert_array_equal(np.delete(data.columns["NEE"], [5, 9]), np.delete(s["NEE"], [5, 9]))
    assert f"in.csv, column NEE: 2 cell(s) infinite or beyond ±1e+30 read as missing (the first: row 7, {cell!r})" \
        in " ".join(data.notes)
