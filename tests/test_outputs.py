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


def test_an_output_that_is_an_input_or_another_output_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("x")
    with pytest.raises(OutputPathError, match=r"--out .*data.csv: is the input INPUT .*data.csv; writing it would "
                                              r"destroy the input"):
        check_output_files([("--out", tmp_path / "." / "data.csv")], inputs=[("INPUT", data)])
    (tmp_path / "link.csv").symlink_to(data)  # another name of the same file
    with pytest.raises(OutputPathError, match="is the input --met"):
        check_output_files([("--daily", tmp_path / "link.csv")], inputs=[("INPUT", None), ("--met", data)])
    with pytest.raises(OutputPathError, match=r"--monthly .*sums.csv: --daily writes the same file"):
        check_output_files([("--daily", tmp_path / "sums.csv"), ("--annual", None),
                            ("--monthly", tmp_path / "sums.csv")])
    check_output_files([("--out", tmp_path / "out.csv")], inputs=[("INPUT", data)])  # distinct: fine


def test_flux_budget_and_flux_ec_leave_their_inputs_alone(tmp_path: Path) -> None:
    """`sinkwatch flux budget data.csv ... --out data.csv` computed the budget and wrote it over its input file."""
    runner = CliRunner()
    data = tmp_path / "data.csv"
    data.write_text("TIMESTAMP_START,TIMESTAMP_END,NEE\n")
    budget = runner.invoke(app, ["flux", "budget", str(data), "--lat", "50", "--lon", "13", "--utc-offset", "1",
                                 "--out", str(data)])
    assert budget.exit_code == 2 and "--out" in budget.output and "is the input INPUT" in budget.output
    metadata = tmp_path / "site.yaml"
    metadata.write_text("altitude: 100\n")
    ec = runner.invoke(app, ["flux", "ec", str(data), "--metadata", str(metadata), "--out", str(metadata)])
    assert ec.exit_code == 2 and "is the input --metadata" in ec.output
    assert data.read_text() == "TIMESTAMP_START,TIMESTAMP_END,NEE\n" and metadata.read_text() == "altitude: 100\n"


def test_report_from_files_refuses_store_options(tmp_path: Path) -> None:
    """First-day walkthrough (docs/reliability.md): `--budget-settings-hash` without -c was ignored silently."""
    result = CliRunner().invoke(app, ["report", "--budget", str(tmp_path / "hh.csv"), "--site", "S",
                                      "--budget-settings-hash", "abc", "--out-dir", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "--budget-settings-hash chooses a run in the store; it needs -c central.yaml" in result.output
