"""EddyPro's result files written by sinkwatch: the full output and the fluxnet file of run V, read back with the
reader of EddyPro's own files, agree with EddyPro's column by column."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from typer.testing import CliRunner

from gateway.cli import app
from gateway.flux.eddypro_outputs import FLUXNET_COLUMNS, FULL_OUTPUT_COLUMNS

from .conftest import RAW_FILE, V_RUN, read_eddypro_table

#: Columns whose definition differs on purpose (docs/flux-ec.md, "EddyPro's result files").
DIFFERENT = {
    "filename", "FILENAME_HF",  # the vendored raw file is gzip-compressed
    "co2_molar_density", "h2o_molar_density", "CO2_MOLAR_DENSITY", "H2O_MOLAR_DENSITY",  # ambient, not cell
    "DOY", "DOY_START", "DOY_END",  # EddyPro prints the period end minus a moment (211.4999)
    "T*", "TSTAR",  # EddyPro's V run prints +0.3478 for an upward H; its R1 run prints −0.3452 (our sign)
    "SONIC_NR",  # records with valid u, v, w, Ts here; EddyPro's count of the sonic's records
    # saturation vapour pressure: EddyPro's is 0.368 % below Buck (1981) at every temperature of the runs
    "es", "RH", "VPD", "VAPOR_PARTIAL_PRESSURE_SAT", "RH_EP", "VPD_EP",
}


def run_v(tmp_path: Path, fmt: str) -> Path:
    out = tmp_path / f"v_{fmt}.csv"
    res = CliRunner().invoke(app, [
        "flux", "ec", str(RAW_FILE), "--metadata",
        str(V_RUN.parent / "R1_dr_ba_maxcov_wpl_30min" / "input_DE-HoH.metadata"),
        "--settings", str(V_RUN / "eddypro_settings_echo.eddypro"), "--data-dir", str(V_RUN.parent.parent),
        "--format", fmt, "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


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
    assert agreed >= 99, agreed  # 87 numbers and 12 statistical flag strings filled by both on run V


def test_fluxnet_file_of_run_v_matches_eddypro_column_by_column(tmp_path: Path) -> None:
    out = run_v(tmp_path, "fluxnet")
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(FLUXNET_COLUMNS)
    with (V_RUN / "eddypro_fluxnet.csv").open(newline="") as fh:
        (theirs,) = list(csv.DictReader(fh))
    agreed, bad = compare(rows[0], theirs, list(FLUXNET_COLUMNS))
    assert not bad, "\n".join(bad)
    assert agreed >= 100, agreed  # with the 10 statistical flag columns both fill


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
