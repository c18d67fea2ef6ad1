"""Output paths are checked before a command works (gateway/outputs.py): a path that cannot be written is refused
at once with the option and the fix, by the commands that write files (flux ec, flux budget, report)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.outputs import OutputPathError, check_output_files, check_output_folder


def test_files_in_a_missing_folder_or_on_a_folder_are_refused(tmp_path: Path) -> None:
    check_output_files([("--out", tmp_path / "new.csv"), ("--daily", None)])  # a new file in a folder: fine
    with pytest.raises(OutputPathError, match=r"--out .*: the folder .*missing does not exist; create it"):
        check_output_files([("--out", tmp_path / "missing" / "new.csv")])
    with pytest.raises(OutputPathError, match=r"--annual .*: is a folder; give a file name"):
        check_output_files([("--out", tmp_path / "a.csv"), ("--annual", tmp_path)])


def test_a_folder_to_create_needs_no_file_in_its_way(tmp_path: Path) -> None:
    check_output_folder("--out-dir", tmp_path / "a" / "b")  # created later, with its parents
    (tmp_path / "plain").write_text("x")
    with pytest.raises(OutputPathError, match=r"--out-dir .*plain: is a file, not a folder"):
        check_output_folder("--out-dir", tmp_path / "plain")
    with pytest.raises(OutputPathError, match=r"plain is a file, so the folder cannot be created there"):
        check_output_folder("--out-dir", tmp_path / "plain" / "reports")


def test_commands_refuse_an_unwritable_output_before_reading_their_inputs(tmp_path: Path) -> None:
    runner = CliRunner()
    missing_input = tmp_path / "not-there.csv"  # never opened: the output is checked first
    ec = runner.invoke(app, ["flux", "ec", str(missing_input), "--metadata", str(missing_input), "--out",
                             str(tmp_path / "no" / "fluxes.csv")])
    assert ec.exit_code == 2 and "flux ec: --out " in ec.output and "does not exist; create it" in ec.output
    (tmp_path / "file").write_text("x")
    report = runner.invoke(app, ["report", "--budget", str(missing_input), "--site", "S", "--out-dir",
                                 str(tmp_path / "file")])
    assert report.exit_code == 2 and "error: --out-dir " in report.output and "is a file" in report.output


def test_report_from_the_store_refuses_file_options(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", "-c", str(tmp_path / "central.yaml"), "--station", "st1", "--year",
                                      "2024", "--budget", str(tmp_path / "hh.csv"), "--out-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "--budget is a file-mode option; with -c the report is built from the store" in result.output
