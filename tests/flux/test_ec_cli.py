"""`sinkwatch flux ec`: the standalone command reproduces the R1 row of EDDYPRO-REFERENCE.md from the raw file."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.flux.ec.footprint import hsieh2000_distances, kormann_meixner2001_distances

from .conftest import EC_RAW, RAW_FILE, REPO_ROOT, read_eddypro_table

EXAMPLES = REPO_ROOT / "gateway" / "flux" / "examples"
METADATA = EXAMPLES / "DE-HoH.metadata.yaml"
SETTINGS = EXAMPLES / "DE-HoH_R1.settings.yaml"

# The R1 row of EDDYPRO-REFERENCE.md (EddyPro 7.0.9), with the tolerance of issue 5 for each quantity.
R1_TABLE = [
    ("H", 301.455, 1e-3), ("LE", 215.342, 1e-3), ("FC", -20.6825, 1e-3), ("USTAR", 0.755822, 1e-5),
    ("W_T_SONIC_COV", 0.274255, 1e-5), ("W_CO2_COV", -0.533889, 1e-5), ("CO2_TLAG", 0.15, 1e-9),
    ("H2O_TLAG", 0.20, 1e-9), ("YAW", 122.301, 1e-5), ("PITCH", -4.09258, 1e-5),
]


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def check_r1(row: dict[str, str]) -> None:
    assert (row["TIMESTAMP_START"], row["TIMESTAMP_END"]) == ("201907301130", "201907301200")
    for name, expected, rel in R1_TABLE:
        assert float(row[name]) == pytest.approx(expected, rel=rel), name
    for flag in ("FC_SSITC_TEST", "H_SSITC_TEST", "LE_SSITC_TEST", "TAU_SSITC_TEST"):
        assert row[flag] == "0"
    assert row["STATUS"] == "ok" and row["ENGINE"].startswith("sinkwatch-ec ") and len(row["SETTINGS_HASH"]) == 16


def test_cli_reproduces_r1(ec_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "r1.csv"
    res = CliRunner().invoke(app, ["flux", "ec", str(RAW_FILE), "--metadata", str(METADATA), "--settings",
                                   str(SETTINGS), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "1 ok" in res.output
    (row,) = read_rows(out)
    check_r1(row)


def test_console_command_in_its_own_process(ec_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "r1.csv"
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "flux", "ec", str(RAW_FILE), "--metadata",
                           str(METADATA), "--settings", str(SETTINGS), "--out", str(out)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    check_r1(read_rows(out)[0])


def test_eddypro_metadata_file_gives_the_same_result(ec_raw: Path, tmp_path: Path) -> None:
    yaml_out, ini_out = tmp_path / "yaml.csv", tmp_path / "ini.csv"
    runner = CliRunner()
    for md, out in ((METADATA, yaml_out), (ec_raw / "eddypro" / "R1_dr_ba_maxcov_wpl_30min" /
                                           "input_DE-HoH.metadata", ini_out)):
        res = runner.invoke(app, ["flux", "ec", str(RAW_FILE), "--metadata", str(md), "--settings", str(SETTINGS),
                                  "--out", str(out)])
        assert res.exit_code == 0, res.output
    a, b = read_rows(yaml_out)[0], read_rows(ini_out)[0]
    for key in ("FC", "H", "LE", "TAU", "USTAR", "CO2_TLAG", "H2O_TLAG", "YAW", "PITCH", "WD"):
        assert a[key] == b[key], key


def test_base_only_keeps_standard_columns(ec_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "base.csv"
    res = CliRunner().invoke(app, ["flux", "ec", str(RAW_FILE), "--metadata", str(METADATA), "--settings",
                                   str(SETTINGS), "--out", str(out), "--base-only"])
    assert res.exit_code == 0, res.output
    header = out.read_text().splitlines()[0].split(",")
    assert header[:2] == ["TIMESTAMP_START", "TIMESTAMP_END"]
    assert {"FC", "H", "LE", "TAU", "USTAR", "WS", "WD", "ZL", "FC_SSITC_TEST"} <= set(header)
    assert "W_CO2_COV" not in header and "SETTINGS_HASH" not in header


R1_PROJECT = EC_RAW / "eddypro" / "R1_dr_ba_maxcov_wpl_30min" / "eddypro_settings_echo.eddypro"
V_PROJECT = EC_RAW / "eddypro" / "V_icoslike_pf_fratini_30min" / "eddypro_settings_echo.eddypro"
R1_METADATA = EC_RAW / "eddypro" / "R1_dr_ba_maxcov_wpl_30min" / "input_DE-HoH.metadata"
#: Options EddyPro applies only to some instruments, none of them to DE-HoH's Gill HS-50 and LI-7200: EddyPro would
#: run R1 and V with them switched on and print the same numbers (EddyPro 7 Help, "W-boost Bug Correction for
#: WindMaster/Pro", "Entering the sonic anemometer firmware version", "Calculating the off-season uptake correction
#: (LI-7500 only)"; gateway.flux.ec.instruments). Each was refused (exit 2) before.
NOT_FOR_DE_HOH = {
    "none": {},
    "gill_wm_wboost": {"gill_wm_wboost": "1"},
    "flow_distortion_2006": {"flow_distortion": "1"},
    "flow_distortion_2012": {"flow_distortion": "2"},
    "flow_distortion_automatic": {"flow_distortion": "3"},
    "bu_corr": {"bu_corr": "1"},
    "all": {"gill_wm_wboost": "1", "flow_distortion": "2", "bu_corr": "1"},
}


def edited_project(source: Path, edits: dict[str, str], folder: Path) -> Path:
    """A copy of an EddyPro project file with some keys set (each key must be in the file, at 0)."""
    text = source.read_text()
    for key, value in edits.items():
        assert f"\n{key}=0\n" in text, key
        text = text.replace(f"\n{key}=0\n", f"\n{key}={value}\n")
    path = folder / source.name
    path.write_text(text)
    return path


@pytest.mark.parametrize("options", list(NOT_FOR_DE_HOH))
def test_eddypro_project_file_reproduces_r1(ec_raw: Path, tmp_path: Path, options: str) -> None:
    """R1's own EddyPro project file (settings echo) works as --settings, footprint (Kljun 2004) included; also with
    the options EddyPro does not apply to DE-HoH's instruments, each named in the output and the record."""
    out = tmp_path / "r1.csv"
    project = edited_project(R1_PROJECT, NOT_FOR_DE_HOH[options], tmp_path)
    res = CliRunner().invoke(app, ["flux", "ec", str(RAW_FILE), "--metadata", str(METADATA), "--settings",
                                   str(project), "--out", str(out)])
    assert res.exit_code == 0, res.output
    (row,) = read_rows(out)
    check_r1(row)
    (ref,) = read_eddypro_table(R1_PROJECT.parent / "eddypro_full_output.csv")
    for ours, theirs in (("FETCH_MAX", "x_peak"), ("FETCH_OFFSET", "x_offset"), ("FETCH_10", "x_10%"),
                         ("FETCH_30", "x_30%"), ("FETCH_50", "x_50%"), ("FETCH_70", "x_70%"), ("FETCH_90", "x_90%")):
        assert float(row[ours]) == pytest.approx(float(ref[theirs]), rel=1e-5), ours  # Kljun et al. (2004)
    for key, value in NOT_FOR_DE_HOH[options].items():
        assert f"{key} = {value}: not applied: " in res.output
        assert f"{key} = {value}: not applied: " in row["REASONS"]
    if not NOT_FOR_DE_HOH[options]:
        assert "not applied" not in res.output + row["REASONS"]


@pytest.mark.parametrize("options", ["none", "all"])
def test_icos_like_v_project_within_half_a_percent(ec_raw: Path, tmp_path: Path, options: str) -> None:
    """EddyPro run V as researchers would run it: its own .eddypro project (planar fit without b0, VM97 despiking,
    lag with default, low- and high-frequency spectral corrections after Fratini et al. 2012, random error,
    footprint), DATA_DIR pointing at the reference folder. Issue 14: within 0.5 % of EddyPro; achieved 2e-4 for the
    fluxes and factors, 0.6 % for the random errors. The same with the options EddyPro does not apply to DE-HoH's
    instruments switched on."""
    out = tmp_path / "v.csv"
    project = edited_project(V_PROJECT, NOT_FOR_DE_HOH[options], tmp_path)
    res = CliRunner().invoke(app, [
        "flux", "ec", str(RAW_FILE), "--metadata", str(R1_METADATA), "--settings", str(project),
        "--data-dir", str(ec_raw), "--out", str(out)])
    assert res.exit_code == 0, res.output
    (row,) = read_rows(out)
    (ref,) = read_eddypro_table(ec_raw / "eddypro" / "V_icoslike_pf_fratini_30min" / "eddypro_full_output.csv")
    for ours, theirs in (("H", "H"), ("LE", "LE"), ("FC", "co2_flux"), ("TAU", "Tau"), ("FH2O", "h2o_flux"),
                         ("USTAR", "u*"), ("ZL", "(z-d)/L"), ("MO_LENGTH", "L"), ("FETCH_MAX", "x_peak"),
                         ("LE_SCF", "LE_scf"), ("FC_SCF", "co2_scf"), ("H_SCF", "H_scf"), ("TAU_SCF", "Tau_scf")):
        assert float(row[ours]) == pytest.approx(float(ref[theirs]), rel=5e-4), ours
    for ours, theirs in (("H_RANDUNC", "rand_err_H"), ("LE_RANDUNC", "rand_err_LE"),
                         ("FC_RANDUNC", "rand_err_co2_flux"), ("TAU_RANDUNC", "rand_err_Tau")):
        assert float(row[ours]) == pytest.approx(float(ref[theirs]), rel=0.01), ours
    assert float(row["CO2_TLAG"]) == float(ref["co2_time_lag"])
    assert row["REASONS"].count("not applied") == len(NOT_FOR_DE_HOH[options])


@pytest.mark.parametrize(("sonic", "key", "value"), [("r3_50_1", "flow_distortion", "1"),
                                                      ("wm_1", "flow_distortion", "2")])
def test_eddypro_project_with_an_unavailable_option_is_refused(ec_raw: Path, tmp_path: Path, sonic: str, key: str,
                                                               value: str) -> None:
    """A project asking for the angle-of-attack correction for a sonic EddyPro applies it to (a Gill R3-50 or
    WindMaster in the metadata): refused with the setting named and the way out, nothing written."""
    project = edited_project(R1_PROJECT, {key: value}, tmp_path)
    metadata = tmp_path / "sonic.metadata"
    metadata.write_text(R1_METADATA.read_text().replace("instr_1_model=hs_50_1", f"instr_1_model={sonic}"))
    out = tmp_path / "x.csv"
    res = CliRunner().invoke(app, ["flux", "ec", str(RAW_FILE), "--metadata", str(metadata), "--settings",
                                   str(project), "--out", str(out)])
    assert res.exit_code == 2
    assert f"{key} = {value}: EddyPro applies the angle-of-attack correction" in res.output
    assert sonic in res.output and f"set {key} = 0" in res.output
    assert not out.exists()


def test_bad_metadata_file_names_the_key(tmp_path: Path) -> None:
    md = tmp_path / "bad.yaml"
    md.write_text("altitude: 193\nlatitude: 52\nacquisition_frequency: 20\nsonic: {height: 45}\n"
                  "file: {columns: [{index: 1, variable: u}, {index: 2, variable: v}, {index: 3, variable: w}]}\n")
    res = CliRunner().invoke(app, ["flux", "ec", str(md), "--metadata", str(md), "--out", str(tmp_path / "o.csv")])
    assert res.exit_code == 2
    assert "ts" in res.output and "file.columns" in res.output


@pytest.mark.parametrize(("start", "periods"), [("11:00", 1), ("12:00", 0)])
def test_project_processing_subset_selects_periods(ec_raw: Path, tmp_path: Path, start: str, periods: int) -> None:
    """pr_subset = 1: only periods ending after pr_start and up to pr_end are computed (the file's one period ends
    2019-07-30 12:00)."""
    text = (ec_raw / "eddypro" / "R1_dr_ba_maxcov_wpl_30min" / "eddypro_settings_echo.eddypro").read_text()
    text = (text.replace("pr_subset=0", "pr_subset=1").replace("pr_start_date=2000-01-01", "pr_start_date=2019-07-30")
            .replace("pr_start_time=00:00", f"pr_start_time={start}"))
    project = tmp_path / "subset.eddypro"
    project.write_text(text)
    out = tmp_path / "s.csv"
    res = CliRunner().invoke(app, ["flux", "ec", str(RAW_FILE), "--metadata", str(METADATA), "--settings",
                                   str(project), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert f"{periods} periods" in res.output
    assert len(read_rows(out)) == periods


def test_planar_fit_without_a_file_is_fitted_over_the_given_periods(tmp_path: Path) -> None:
    """rot_meth planar_fit and no planar_fit_file: the command fits the sectors over all periods of its files first
    (16 one-minute periods, 4 per sector, each tilted onto its sector's plane) and then rotates each period."""
    import numpy as np

    from .synthetic import tilted_periods

    planes = {0: (0.0, 0.06, -0.04), 1: (0.0, 0.06, -0.04), 2: (0.0, -0.02, 0.07), 3: (0.0, -0.02, 0.07)}
    sonic, _ = tilted_periods(planes, [10.0 + 22.5 * k for k in range(16)])
    rows = np.vstack([np.column_stack([p["u"], p["v"], p["w"], p["ts"]]) for p in sonic])
    raw = tmp_path / "SYN_201907301216.csv"
    np.savetxt(raw, rows, delimiter=",", header="u,v,w,ts", comments="", fmt="%.9f")
    md = tmp_path / "md.yaml"
    md.write_text("altitude: 100\nlatitude: 50\ncanopy_height: 1\nacquisition_frequency: 10\nfile_duration: 16\n"
                  "sonic: {height: 3}\nfile: {columns: [{index: 1, variable: u}, {index: 2, variable: v}, "
                  "{index: 3, variable: w}, {index: 4, variable: ts}]}\n")
    st = tmp_path / "pf.yaml"
    st.write_text("avrg_len: 1\nrot_meth: planar_fit\ntlag_meth: none\nqc_meth: none\npf_min_num_per_sec: 3\n")
    out = tmp_path / "pf.csv"
    res = CliRunner().invoke(app, ["flux", "ec", str(raw), "--metadata", str(md), "--settings", str(st),
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "planar fit fitted over 16 periods (4 sectors)" in res.output
    rows_out = read_rows(out)
    assert len(rows_out) == 16
    assert all(r["STATUS"] == "ok" and r["H"] != "-9999" and r["YAW"] != "-9999" for r in rows_out)


def test_in_situ_assessment_needs_enough_periods(ec_raw: Path, tmp_path: Path) -> None:
    """Run V's project with sa_mode = 1 (assess in situ) on its one period: too few spectra, refused with the way
    out (the in-situ assessment itself is tested on synthetic multi-period data in test_ec_insitu.py)."""
    text = (ec_raw / "eddypro" / "V_icoslike_pf_fratini_30min" / "eddypro_settings_echo.eddypro").read_text()
    project = tmp_path / "insitu.eddypro"
    project.write_text(text.replace("sa_mode=0", "sa_mode=1"))
    res = CliRunner().invoke(app, [
        "flux", "ec", str(RAW_FILE), "--metadata",
        str(ec_raw / "eddypro" / "R1_dr_ba_maxcov_wpl_30min" / "input_DE-HoH.metadata"),
        "--settings", str(project), "--data-dir", str(ec_raw), "--out", str(tmp_path / "x.csv")])
    assert res.exit_code == 2
    assert "usable H2O spectra" in res.output and "spectral-assessment file" in res.output


def test_a_raw_file_that_is_missing_or_a_folder_is_refused_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "fluxes.csv"
    missing = tmp_path / "DE-HoH_EC_201907301230_v01.csv.gz"
    result = CliRunner().invoke(app, ["flux", "ec", str(RAW_FILE), str(missing), str(tmp_path), "/dev/zero",
                                      "--metadata", str(METADATA), "--out", str(out)])
    assert result.exit_code == 2, result.output
    # a device was "not found" before (hostile inputs by hand, docs/reliability.md)
    assert (f"flux ec: raw files: {missing} (not found), {tmp_path} (a folder), /dev/zero (not a file); give the raw "
            "data files") in result.output
    assert not out.exists()


def test_a_misspelt_settings_key_names_the_key_it_likely_means(tmp_path: Path) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text("avrg_lenn: 30\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["flux", "ec", str(RAW_FILE), "--metadata", str(METADATA),
                                      "--settings", str(settings), "--out", str(tmp_path / "fluxes.csv")])
    assert result.exit_code == 2, result.output
    assert "avrg_lenn: unknown key; did you mean avrg_len?" in result.output


@pytest.mark.parametrize(("foot_meth", "model"), [("2", "1"), ("3", "2")])
def test_eddypro_project_with_kormann_meixner_or_hsieh_footprint(ec_raw: Path, tmp_path: Path, foot_meth: str,
                                                                  model: str) -> None:
    """R1's project with foot_meth = 2 (Kormann & Meixner 2001) or 3 (Hsieh et al. 2000): the run goes through with
    R1's fluxes, and writes the footprint distances the model gives for the period's u* and L before spectral
    correction, wind speed, zm and z0 (EddyPro's model code in FOOTPRINT_MODEL and the full output's `model`)."""
    text = R1_PROJECT.read_text()
    assert "\nfoot_meth=1\n" in text
    project = tmp_path / R1_PROJECT.name
    project.write_text(text.replace("\nfoot_meth=1\n", f"\nfoot_meth={foot_meth}\n"))
    out, full = tmp_path / "r1.csv", tmp_path / "full.csv"
    for fmt, path in (("ameriflux", out), ("eddypro-full", full)):
        res = CliRunner().invoke(app, ["flux", "ec", str(RAW_FILE), "--metadata", str(METADATA), "--settings",
                                       str(project), "--format", fmt, "--out", str(path)])
        assert res.exit_code == 0, res.output
    (row,) = read_rows(out)
    check_r1(row)
    assert row["FOOTPRINT_MODEL"] == model and "footprint" not in row["REASONS"]
    with (ec_raw / "eddypro" / "V_icoslike_pf_fratini_30min" / "eddypro_fluxnet.csv").open(newline="") as fh:
        site = next(csv.DictReader(fh))  # zm and z0 of the site as EddyPro prints them
    zm = float(site["BADM_INST_HEIGHT_SA"]) - float(site["DISPLACEMENT_HEIGHT"])
    ustar, lmo = float(row["USTAR_UNCORR"]), float(row["MO_LENGTH_UNCORR"])
    if foot_meth == "2":
        fp = kormann_meixner2001_distances(zm=zm, ustar=ustar, obukhov_length=lmo, umean=float(row["WS"]))
    else:
        fp = hsieh2000_distances(zm=zm, z0=float(site["ROUGHNESS_LENGTH"]), obukhov_length=lmo)
    expected = {"FETCH_MAX": fp.x_peak, "FETCH_OFFSET": fp.x_offset, **{f"FETCH_{p}": fp.x_r[p]
                                                                          for p in (10, 30, 50, 70, 80, 90)}}
    for name, value in expected.items():
        assert float(row[name]) == pytest.approx(value, rel=1e-6), name  # the file prints 9 significant digits
    (eddypro_row,) = read_eddypro_table(full)
    assert eddypro_row["model"] == model
    for name, column in (("FETCH_MAX", "x_peak"), ("FETCH_OFFSET", "x_offset"), ("FETCH_10", "x_10%"),
                         ("FETCH_50", "x_50%"), ("FETCH_90", "x_90%")):
        assert float(eddypro_row[column]) == pytest.approx(expected[name], rel=1e-5), column
