"""`sinkwatch flux budget --station S --year Y -c central.yaml` (the central job once) and the `budget:` section
of central.yaml, validated before any I/O."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gateway.central.config import load_central_config
from gateway.central.store import SqliteStore
from gateway.cli import app
from gateway.configfile import ConfigError

from .budget_helpers import STATION, YEAR, fill_store, first_days, simulated_year

runner = CliRunner()


def _config(tmp_path: Path, **budget: object) -> Path:
    year = simulated_year()
    section: dict[str, object] = {"ustar": "0.25", "defaults": {"latitude": year.lat, "longitude": year.lon,
                                                                "utc_offset_h": year.utc_offset_h}}
    section.update(budget)
    path = tmp_path / "central.yaml"
    path.write_text(yaml.safe_dump({"storage": {"kind": "sqlite", "path": str(tmp_path / "central.sqlite")},
                                    "budget": section}), encoding="utf-8")
    return path


def test_station_mode_computes_stores_and_writes_the_files(tmp_path: Path) -> None:
    year = first_days(simulated_year(), 40)
    config = _config(tmp_path)
    store = SqliteStore(tmp_path / "central.sqlite")
    fill_store(store, year)
    store.close()

    annual, hh = tmp_path / "yy.csv", tmp_path / "hh.csv"
    result = runner.invoke(app, ["flux", "budget", "--station", STATION, "--year", str(YEAR), "-c", str(config),
                                 "--annual", str(annual), "--out", str(hh)])

    assert result.exit_code == 0, result.output
    assert f"station {STATION} {YEAR} (running total to" in result.output
    assert "fluxes sinkwatch-simulation fluxyear" in result.output and "SW_IN sw_in/SW_IN_1_1_1" in result.output
    store = SqliteStore(tmp_path / "central.sqlite")
    (run,) = store.budget_runs(STATION, YEAR)
    assert f"settings_hash {run.settings_hash}" in result.output
    assert f"GET /api/v1/budget?station={STATION}&year={YEAR}&settings_hash={run.settings_hash}" in result.output
    with annual.open() as fh:
        (row,) = list(csv.DictReader(fh))
    stored = store.budget_table(run, "YY").values["NEE_F"][0]
    assert stored is not None and float(row["NEE_F"]) == pytest.approx(stored, rel=1e-5)
    assert f"NEE {stored:.1f} ±" in result.output
    assert len(hh.read_text().splitlines()) == 1 + 40 * 48
    # --ustar on the command overrides the config and is another result set
    again = runner.invoke(app, ["flux", "budget", "--station", STATION, "--year", str(YEAR), "-c", str(config),
                                "--ustar", "0.3"])
    assert again.exit_code == 0, again.output
    assert len(store.budget_runs(STATION, YEAR)) == 2
    store.close()


@pytest.mark.parametrize("arguments, expected", [
    # an empty store: the station is named unknown (it said "no flux records stored for this year")
    (["--station", "nowhere", "--year", str(YEAR)],
     "station 'nowhere' is not in the store (nothing of it was ever stored); the store holds no station yet"),
    (["--station", STATION, "--year", str(YEAR), "--ustar", "fast"], "--ustar 'fast'"),
])
def test_station_mode_errors_name_the_problem(tmp_path: Path, arguments: list[str], expected: str) -> None:
    config = _config(tmp_path)
    result = runner.invoke(app, ["flux", "budget", *arguments, "-c", str(config)])
    assert result.exit_code == 2
    assert expected in result.output


def test_station_and_file_mode_options_do_not_mix(tmp_path: Path) -> None:
    config = _config(tmp_path)
    mixed = runner.invoke(app, ["flux", "budget", "--station", STATION, "--year", str(YEAR), "-c", str(config),
                                "--lat", "50"])
    assert mixed.exit_code == 2 and "'--lat'" in mixed.output and "file-mode option" in mixed.output
    flag = runner.invoke(app, ["flux", "budget", "--station", STATION, "--year", str(YEAR), "-c", str(config),
                               "--max-flux-flag", "2"])  # station mode: budget.max_flux_flag of the config
    assert flag.exit_code == 2 and "'--max-flux-flag'" in flag.output and "file-mode option" in flag.output
    for option, value in (("--bootstrap", "500"), ("--seed", "3")):  # first-day walkthrough: were ignored silently
        draws = runner.invoke(app, ["flux", "budget", "--station", STATION, "--year", str(YEAR), "-c", str(config),
                                    option, value])  # station mode: budget.bootstrap / budget.seed of the config
        assert draws.exit_code == 2 and f"'{option}'" in draws.output and "file-mode option" in draws.output
    unwritable = runner.invoke(app, ["flux", "budget", "--station", STATION, "--year", str(YEAR), "-c", str(config),
                                     "--out", str(tmp_path / "no" / "hh.csv")])
    assert unwritable.exit_code == 2 and f"--out {tmp_path / 'no' / 'hh.csv'}: the folder" in unwritable.output
    partial = runner.invoke(app, ["flux", "budget", "--station", STATION, "--year", str(YEAR)])
    assert partial.exit_code == 2 and "'--config'" in partial.output
    # the file mode's contract: INPUT, --lat, --lon, --utc-offset and --out are required
    missing = runner.invoke(app, ["flux", "budget", str(tmp_path / "in.csv"), "--lat", "50", "--lon", "10",
                                  "--utc-offset", "1"])
    assert missing.exit_code == 2 and "'--out'" in missing.output


@pytest.mark.parametrize("budget, expected", [
    ({"every": "1d", "defaults": {}}, "stations: all needs budget.defaults.latitude"),
    ({"every": "1d", "stations": ["st9"], "per_station": {"st9": {"latitude": 50.0}}}, "station st9 has no "
                                                                                           "coordinates"),
    ({"every": "daily"}, "budget.every: 'daily' is not a duration"),
    ({"ustar": "fast"}, "budget.ustar"),
    ({"ustar": "7"}, "between 0 and 3"),
    ({"bootstrap": 10}, "budget.bootstrap"),
    ({"defaults": {"utc_offset_h": 1.25}}, "whole number of half hours"),
    ({"defaults": {"sensors": {"CO2": "x"}}}, "for SW_IN, TA, VPD, RH only"),
    ({"defaults": {"sensors": {"TA": "a b"}}}, "not a sensor name or sensor/VARIABLE"),
    ({"defaults": {"flux_settings_hash": "XYZ"}}, "budget.defaults.flux_settings_hash"),
    ({"per_station": {"st1": {"latitud": 5}}}, "budget.per_station.st1.latitud: unknown key"),
])
def test_budget_config_errors_name_the_key(tmp_path: Path, budget: dict[str, object], expected: str) -> None:
    path = tmp_path / "central.yaml"
    path.write_text(yaml.safe_dump({"storage": {"kind": "sqlite", "path": "x.sqlite"}, "budget": budget}),
                    encoding="utf-8")
    with pytest.raises(ConfigError) as excinfo:
        load_central_config(path)
    assert expected in str(excinfo.value)


def test_per_station_settings_lie_over_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "central.yaml"
    path.write_text(yaml.safe_dump({"storage": {"kind": "sqlite", "path": "x.sqlite"}, "budget": {
        "every": "1d", "stations": ["a", "b"],
        "defaults": {"latitude": 50.0, "longitude": 10.0, "utc_offset_h": 1, "sensors": {"TA": "ta_rh"}},
        "per_station": {"b": {"longitude": 11.5, "sensors": {"SW_IN": "pyr"}}}}}), encoding="utf-8")
    job = load_central_config(path).budget
    a, b = job.station_settings("a"), job.station_settings("b")
    assert (a.latitude, a.longitude, a.sensors) == (50.0, 10.0, {"TA": "ta_rh"})
    assert (b.latitude, b.longitude, b.utc_offset_h) == (50.0, 11.5, 1.0)
    assert b.sensors == {"TA": "ta_rh", "SW_IN": "pyr"}
    assert job.interval() is not None and job.interval().total_seconds() == 86400  # type: ignore[union-attr]


def test_budgets_of_many_station_years_in_one_command(tmp_path: Path) -> None:
    year = first_days(simulated_year(), 40)
    config = _config(tmp_path)
    store = SqliteStore(tmp_path / "central.sqlite")
    fill_store(store, year)
    store.close()

    result = runner.invoke(app, ["central", "budgets", "-c", str(config), "--years", f"{YEAR - 1}-{YEAR}"])
    bad = runner.invoke(app, ["central", "budgets", "-c", str(config), "--years", "last year"])

    # the year before has no flux records: reported with its reason, the exit says not every year gave a budget
    assert result.exit_code == 2, result.output
    assert f"{STATION} {YEAR}: " in result.output and "NEE" in result.output
    assert f"{STATION} {YEAR - 1}: error: station {STATION}, {YEAR - 1}" in result.output
    store = SqliteStore(tmp_path / "central.sqlite")
    try:
        assert [run.year for run in store.budget_runs(STATION)] == [YEAR]
    finally:
        store.close()
    assert bad.exit_code == 2 and "--years 'last year': give a year or a range" in bad.output
