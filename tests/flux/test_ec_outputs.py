"""EddyPro's result files written by sinkwatch: the full output and the fluxnet file of run V, read back with the
reader of EddyPro's own files, agree with EddyPro's column by column."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.flux.eddypro_outputs import FLUXNET_COLUMNS, FULL_OUTPUT_COLUMNS

from .conftest import RAW_FILE, V_RUN, read_eddypro_table

#: Columns whose definition differs on purpose (docs/flux-ec.md, "EddyPro's result files").
DIFFERENT = {
    "filename", "FILENAME_HF",  # the vendored raw file is gzip-compressed
    "DOY", "DOY_START", "DOY_END",  # EddyPro prints the period end minus a moment (211.4999)
    "T*", "TSTAR",  # EddyPro's V run prints +0.3478 for an upward H; its R1 run prints −0.3452 (our sign)
    "SONIC_NR",  # records with valid u, v, w, Ts here; EddyPro's count of the sonic's records
    # saturation vapour pressure: EddyPro's is 0.368 % below Buck (1981) at every temperature of the runs
    "es", "RH", "VPD", "VAPOR_PARTIAL_PRESSURE_SAT", "RH_EP", "VPD_EP",
}


R1_RUN = V_RUN.parent / "R1_dr_ba_maxcov_wpl_30min"


def run_ec(tmp_path: Path, fmt: str, settings: Path) -> Path:
    out = tmp_path / f"{settings.stem}_{fmt}.csv"
    res = CliRunner().invoke(app, [
        "flux", "ec", str(RAW_FILE), "--metadata", str(R1_RUN / "input_DE-HoH.metadata"),
        "--settings", str(settings), "--data-dir", str(V_RUN.parent.parent), "--format", fmt, "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


def run_v(tmp_path: Path, fmt: str) -> Path:
    return run_ec(tmp_path, fmt, V_RUN / "eddypro_settings_echo.eddypro")


def compare(ours: dict[str, str], theirs: dict[str, str], names: list[str]) -> tuple[int, list[str]]:
    agreed, bad = 0, []
    for name in names:
        a, b = ours.get(name, "-9999"), theirs.get(name, "-9999")
        if name in DIFFERENT or a in ("-9999", "") or b in ("-9999", "", "NaN"):
            continue
        try:
            x, y = float(a), float(b)
        except ValueError:
            if a != b:
                bad.append(f"{name}: {a} vs {b}")
            else:
                agreed += 1
            continue
        tolerance = 1e-2 if "rand" in name.lower() else 2e-3  # random errors to 0.6 % (docs/flux-ec.md)
        if math.isclose(x, y, rel_tol=tolerance, abs_tol=2e-3):
            agreed += 1
        else:
            bad.append(f"{name}: ours {x} EddyPro {y}")
    return agreed, bad


def test_full_output_of_run_v_matches_eddypro_column_by_column(tmp_path: Path) -> None:
    out = run_v(tmp_path, "eddypro-full")
    with out.open(newline="") as fh:
        header = list(csv.reader(fh))[:3]
    assert [tuple(c) for c in zip(*header, strict=True)] == list(FULL_OUTPUT_COLUMNS)
    (ours,) = read_eddypro_table(out)
    (theirs,) = read_eddypro_table(V_RUN / "eddypro_full_output.csv")
    agreed, bad = compare(ours, theirs, [c[1] for c in FULL_OUTPUT_COLUMNS])
    assert not bad, "\n".join(bad)
    assert agreed >= 115, agreed  # 103 numbers and 12 statistical flag strings filled by both on run V


def test_fluxnet_file_of_run_v_matches_eddypro_column_by_column(tmp_path: Path) -> None:
    out = run_v(tmp_path, "fluxnet")
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(FLUXNET_COLUMNS)
    with (V_RUN / "eddypro_fluxnet.csv").open(newline="") as fh:
        (theirs,) = list(csv.DictReader(fh))
    agreed, bad = compare(rows[0], theirs, list(FLUXNET_COLUMNS))
    assert not bad, "\n".join(bad)
    assert agreed >= 226, agreed  # with the 10 statistical flag columns both fill


#: The reference runs as R1's settings echo with the keys that make the difference (EDDYPRO-REFERENCE.md, "Runs").
R_RUNS = {
    "R1_dr_ba_maxcov_wpl_30min": {},
    "R1_dr_ba_maxcov_wpl_5min": {"avrg_len": "5"},
    "R2_dr_ba_nolag_nowpl_5min": {"avrg_len": "5", "tlag_meth": "0", "wpl_meth": "0"},
    "R0_norot_ba_nolag_nowpl_30min": {"rot_meth": "0", "tlag_meth": "0", "wpl_meth": "0"},
    "R3_dr_ld1800_maxcov_wpl_30min": {"detrend_meth": "1", "timeconst": "1800"},
}


@pytest.mark.parametrize("run", list(R_RUNS))
def test_full_output_of_the_r_runs_fills_every_column_eddypro_fills(tmp_path: Path, run: str) -> None:
    """The R runs with EddyPro's own settings: every column EddyPro fills we fill, and every one agrees but the few
    whose definition differs — storage fluxes of the 5-min runs (one-point, from the period before), cell molar
    densities, vertical advection (w̄ × density: about zero after a double
    rotation, −3165 µmol m-2 s-1 without rotation in R0), LI-7200 diagnostic counts and signal strength, all-9 flag
    strings of tests not selected, zero spikes without despiking, 9 for the default-lag flag of gases not
    measured."""
    lines = (R1_RUN / "eddypro_settings_echo.eddypro").read_text(encoding="utf-8").splitlines()
    changes = R_RUNS[run]
    assert set(changes) <= {line.split("=", 1)[0] for line in lines}
    settings = tmp_path / f"{run}.eddypro"
    settings.write_text("\n".join(f"{k}={changes[k]}" if (k := line.split("=", 1)[0]) in changes else line
                                   for line in lines) + "\n", encoding="utf-8")
    ours = read_eddypro_table(run_ec(tmp_path, "eddypro-full", settings))
    theirs = read_eddypro_table(R1_RUN.parent / run / "eddypro_full_output.csv")
    assert len(ours) == len(theirs) == 30 // int(changes.get("avrg_len", "30"))
    names = [c[1] for c in FULL_OUTPUT_COLUMNS]
    for mine, eddypro in zip(ours, theirs, strict=True):
        assert not {n for n in names if mine[n] == "-9999" and eddypro[n] != "-9999"}
        assert not {n for n in names if mine[n] != "-9999" and eddypro[n] == "-9999"}
        agreed, bad = compare(mine, eddypro, names)
        assert not bad, "\n".join(bad)
        assert agreed >= 109, agreed  # every column both fill but those of DIFFERENT (R0: no rotation angles)
        for name in ("co2_molar_density", "h2o_molar_density", "mean_value_RSSI_LI-7200", "spikes_hf",
                     "co2_def_timelag", "ch4_def_timelag", "u_spikes", "head_detect_LI-7200", "co2_v-adv"):
            assert mine[name] == eddypro[name] or math.isclose(float(mine[name]), float(eddypro[name]),
                                                              rel_tol=2e-5, abs_tol=1e-6), name
        for name in ("H_strg", "LE_strg", "co2_strg", "h2o_strg"):  # a difference of consecutive means
            assert mine[name] == eddypro[name] or math.isclose(float(mine[name]), float(eddypro[name]),
                                                              rel_tol=1e-4), name
    assert all(ours[0][n] == "-9999" for n in ("H_strg", "LE_strg", "co2_strg", "h2o_strg"))  # no period before
    if len(ours) > 1:
        assert all(row[n] != "-9999" for row in ours[1:] for n in ("H_strg", "co2_strg"))


def test_run_v_cell_densities_and_vertical_advection_match_eddypro(tmp_path: Path) -> None:
    """Run V's planar fit leaves a mean w of −0.13 m s-1: the vertical advection flux (mean w × mean molar density
    at the cell's conditions) is then far from zero, and EddyPro's -1752 µmol m-2 s-1 checks both factors."""
    (ours,) = read_eddypro_table(run_v(tmp_path, "eddypro-full"))
    (theirs,) = read_eddypro_table(V_RUN / "eddypro_full_output.csv")
    with run_v(tmp_path, "fluxnet").open(newline="") as fh:
        (flux_ours,) = list(csv.DictReader(fh))
    with (V_RUN / "eddypro_fluxnet.csv").open(newline="") as fh:
        (flux_theirs,) = list(csv.DictReader(fh))
    assert float(theirs["co2_v-adv"]) < -1000
    for a, b, name in [(ours, theirs, n) for n in ("co2_v-adv", "h2o_v-adv", "co2_molar_density",
                                                   "h2o_molar_density")] + [
            (flux_ours, flux_theirs, n) for n in ("FC_VADV", "FH2O_VADV", "CO2_MOLAR_DENSITY", "H2O_MOLAR_DENSITY",
                                                  "T_CELL", "PA_CELL", "MV_AIR_CELL_CO2", "MV_AIR_CELL_H2O")]:
        assert math.isclose(float(a[name]), float(b[name]), rel_tol=1e-4), (name, a[name], b[name])


def test_run_v_fluxnet_statistics_of_the_series_match_eddypro(tmp_path: Path) -> None:
    """Quartiles and median (rotated wind, Ts in °C, gases as lagged), skewness, kurtosis, the CO2-H2O covariance
    and the spread of the wind direction: EddyPro fills them for run V; so must we, to 0.2 %."""
    with run_v(tmp_path, "fluxnet").open(newline="") as fh:
        (ours,) = list(csv.DictReader(fh))
    with (V_RUN / "eddypro_fluxnet.csv").open(newline="") as fh:
        (theirs,) = list(csv.DictReader(fh))
    names = [f"{s}_{q}" for s in ("U", "V", "W", "T_SONIC", "CO2_MEAS", "H2O_MEAS")
             for q in ("MEDIAN", "P25", "P75", "SKW", "KUR")] + ["CO2_MEAS_H2O_MEAS_COV", "WD_SIGMA"]
    for name in names:
        assert theirs[name] != "-9999", name
        assert math.isclose(float(ours[name]), float(theirs[name]), rel_tol=2e-3, abs_tol=1e-4), (
            name, ours[name], theirs[name])


def _echo(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines() if "=" in line)


@pytest.mark.parametrize("settings", [V_RUN / "eddypro_settings_echo.eddypro",
                                      R1_RUN / "eddypro_settings_echo.eddypro"])
def test_fluxnet_run_columns_carry_the_metadata_and_eddypro_s_method_codes(tmp_path: Path, settings: Path) -> None:
    """Site, instrument and method columns of the fluxnet file: the method codes are those of the project file the
    run was given (rot_meth, detrend_meth, tlag_meth, wpl_meth, hf_meth), the rest as in EddyPro's run V."""
    with run_ec(tmp_path, "fluxnet", settings).open(newline="") as fh:
        (ours,) = list(csv.DictReader(fh))
    echo = _echo(settings)
    for column, key in (("AXES_ROTATION_METHOD", "rot_meth"), ("DETRENDING_METHOD", "detrend_meth"),
                        ("TIMELAG_DETECTION_METHOD", "tlag_meth"), ("WPL_APPLIED", "wpl_meth"),
                        ("SPECTRAL_CORRECTION_METHOD", "hf_meth"), ("BADM_INST_AVERAGING_INT", "avrg_len")):
        assert float(ours[column]) == float(echo[key]), column
    with (V_RUN / "eddypro_fluxnet.csv").open(newline="") as fh:
        (theirs,) = list(csv.DictReader(fh))
    same = [c for c in FLUXNET_COLUMNS if c.startswith(("BADM_", "MANUFACTURER_", "NUM_", "EXPECT_NR"))
            or c.endswith("_NREX") or c in ("DISPLACEMENT_HEIGHT", "ROUGHNESS_LENGTH", "FILE_TIME_DURATION",
                                            "WBOOST_APPLIED", "AOA_METHOD", "BURBA_METHOD")]
    filled = [c for c in same if theirs[c] != "-9999" and "SPIKE" not in c and c != "BADM_INST_AVERAGING_INT"]
    assert len(filled) >= 45, filled
    for c in filled:
        a, b = ours[c], theirs[c]
        assert a == b or math.isclose(float(a), float(b), rel_tol=1e-5, abs_tol=1e-9), (c, a, b)
    assert {c for c in same if ours[c] != "-9999"} <= {c for c in same if theirs[c] != "-9999"}


STATISTICAL_FLAGS = [c[1] for c in FULL_OUTPUT_COLUMNS if c[2].startswith("8")]
FLUXNET_FLAGS = [c for c in FLUXNET_COLUMNS if "VM97" in c]


def test_run_v_prints_eddypro_s_statistical_flag_strings(tmp_path: Path) -> None:
    """Run V has the spike test on and the others off: EddyPro prints 800000099 for the spikes (u..h2o passed, no
    CH4, no 4th gas) and all-9 strings for the tests not selected; so must we, character for character."""
    (ours,) = read_eddypro_table(run_v(tmp_path, "eddypro-full"))
    (theirs,) = read_eddypro_table(V_RUN / "eddypro_full_output.csv")
    assert len(STATISTICAL_FLAGS) == 12
    assert {n: ours[n] for n in STATISTICAL_FLAGS} == {n: theirs[n] for n in STATISTICAL_FLAGS}
    assert ours["spikes_hf"] == "800000099"
    with run_v(tmp_path, "fluxnet").open(newline="") as fh:
        (flux_ours,) = list(csv.DictReader(fh))
    with (V_RUN / "eddypro_fluxnet.csv").open(newline="") as fh:
        (flux_theirs,) = list(csv.DictReader(fh))
    assert {n: flux_ours[n] for n in FLUXNET_FLAGS} == {n: flux_theirs[n] for n in FLUXNET_FLAGS}


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["flux", "ec", str(RAW_FILE), "--metadata", str(RAW_FILE), "--format", "xlsx",
                                   "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "use ameriflux, eddypro-full or fluxnet" in res.output
