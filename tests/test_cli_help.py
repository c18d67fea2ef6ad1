"""What a new user types first (first-day walkthrough, docs/reliability.md): `--version`, and group help that says
what the group holds."""

from __future__ import annotations

from typer.testing import CliRunner

from gateway import __version__
from gateway.cli import app


def test_version_is_an_option_as_well_as_a_command() -> None:
    option = CliRunner().invoke(app, ["--version"])  # was "No such option: --version", exit 2
    command = CliRunner().invoke(app, ["version"])
    assert option.exit_code == 0 and command.exit_code == 0
    assert option.output == command.output == f"{__version__}\n"


def test_the_flux_group_names_all_it_holds() -> None:
    """Its help said "Flux computation from raw high-frequency data" above `flux budget`, which reads half-hourly
    fluxes."""
    result = CliRunner().invoke(app, ["flux", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    summary = result.output.split("Options")[0]
    for command in ("(ec)", "(recompute)", "(budget)"):
        assert command in summary
    assert "half-hourly" in summary
