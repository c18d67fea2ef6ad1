"""Bad input gives a flagged period with a reason — never a crash, never a silent number."""

from __future__ import annotations

import gzip
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from gateway.flux.ec.engine import ConfigurationError, check_configuration, process_period
from gateway.flux.ec.result import FluxResult
from gateway.flux.ec.settings import ProcessingSettings
from gateway.flux.files import read_raw_file, write_ameriflux_csv

from .synthetic import FS, N, correlated, metadata, period, settings_of

SETTINGS = settings_of(tlag_meth="covariance_maximization_with_default")
NAME = "SYN_EC_202406011200.csv"


def write_file(path: Path, rows: np.ndarray, header: str = "U,V,W,T_SONIC,CO2,H2O") -> Path:
    with path.open("w") as fh:
        fh.write(header + "\n")
        np.savetxt(fh, rows, delimiter=",", fmt="%.6f")
    return path


def good_rows(n: int = N) -> np.ndarray:
    cov = np.diag([1.0, 1.0, 0.4, 0.2, 1.0, 0.05])
    cov[2, 3] = cov[3, 2] = 0.1
    cov[2, 4] = cov[4, 2] = -0.2
    return correlated(cov, n=n) + np.array([3.0, 0.0, 0.0, 295.0, 410.0, 12.0])


def run(path: Path, **kwargs: object) -> list[FluxResult]:
    md = metadata(**kwargs)  # type: ignore[arg-type]
    return [process_period(p, SETTINGS) for p in read_raw_file(path, md, SETTINGS)]


def test_good_file_is_ok(tmp_path: Path) -> None:
    (r,) = run(write_file(tmp_path / NAME, good_rows()))
    assert r.status == "ok" and r.reasons == []
    assert r.end == datetime(2024, 6, 1, 12, 0, tzinfo=UTC) and math.isfinite(r.get("FC"))


def test_gzip_file_gives_the_same_result_as_plain_text(tmp_path: Path) -> None:
    plain = write_file(tmp_path / NAME, good_rows())
    packed = tmp_path / "gz" / (NAME + ".gz")
    packed.parent.mkdir()
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    (a,), (b,) = run(plain), run(packed)
    assert b.status == "ok" and b.end == a.end
    assert b.get("FC") == a.get("FC") and b.get("H") == a.get("H")


@pytest.mark.parametrize("cut", [20, 5000])  # inside the gzip header, inside the data
def test_truncated_gzip_file_fails_with_the_reason(tmp_path: Path, cut: int) -> None:
    packed = gzip.compress(write_file(tmp_path / NAME, good_rows()).read_bytes())
    path = tmp_path / (NAME + ".gz")
    path.write_bytes(packed[:cut])
    (r,) = run(path)
    assert r.status == "failed"
    assert any(f"cannot read {path.name}" in x for x in r.reasons), r.reasons


def test_short_file_fails_with_the_record_count(tmp_path: Path) -> None:
    (r,) = run(write_file(tmp_path / NAME, good_rows(500)))
    assert r.status == "failed"
    assert any("too few records: 500 of 36000" in x for x in r.reasons)
    assert all(math.isnan(r.get(k)) for k in ("FC", "H", "LE", "TAU"))


def test_all_missing_gas_channel_is_partial(tmp_path: Path) -> None:
    rows = good_rows()
    rows[:, 4] = -9999
    (r,) = run(write_file(tmp_path / NAME, rows))
    assert r.status == "partial"
    assert math.isnan(r.get("FC")) and math.isfinite(r.get("H")) and math.isfinite(r.get("LE"))
    assert any(x.startswith("co2: 36000 of 36000 records missing") for x in r.reasons)


def test_all_missing_wind_fails(tmp_path: Path) -> None:
    rows = good_rows()
    rows[:, 2] = -9999
    (r,) = run(write_file(tmp_path / NAME, rows))
    assert r.status == "failed"
    assert any(x.startswith("w: 36000 of 36000 records missing") for x in r.reasons)


def test_column_map_wider_than_the_file_fails_with_the_reason(tmp_path: Path) -> None:
    path = write_file(tmp_path / NAME, good_rows()[:, :4], header="U,V,W,T_SONIC")
    (r,) = run(path)
    assert r.status == "failed"
    assert any("column map needs column 6 but the file has 4 columns" in x for x in r.reasons)


def test_wrong_separator_fails_with_the_reason(tmp_path: Path) -> None:
    path = write_file(tmp_path / NAME, good_rows())
    path.write_text(path.read_text().replace(",", ";"))
    (r,) = run(path)
    assert r.status == "failed" and any("column map" in x for x in r.reasons)


def test_garbage_cells_become_missing_and_are_counted(tmp_path: Path) -> None:
    path = write_file(tmp_path / NAME, good_rows())
    lines = path.read_text().splitlines()
    lines[10] = "NAN,oops,1,2,3,4"
    lines[20] = "1,2"
    path.write_text("\n".join(lines) + "\n")
    (r,) = run(path)
    assert r.status == "ok" and math.isfinite(r.get("FC"))
    assert any("1 non-numeric values treated as missing" in x for x in r.reasons)
    assert any("1 rows with too few columns" in x for x in r.reasons)


@pytest.mark.parametrize("token", ["inf", "-inf", "1e400", "Infinity", "1e308", "-3.5e31"])
def test_infinite_cells_become_missing_and_are_counted(tmp_path: Path, token: str) -> None:
    """numpy reads these as ±inf or as numbers whose squares overflow: every mean and covariance they enter would be
    NaN or inf."""
    rows = good_rows()
    path = write_file(tmp_path / NAME, rows)
    lines = path.read_text().splitlines()
    for row in (11, 500, 20000):  # the header is line 0
        cells = lines[row].split(",")
        cells[2 if row == 500 else 4] = token  # W once, CO2 twice
        lines[row] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    (r,) = run(path)
    assert r.status == "ok", r.reasons
    assert any("3 values infinite or beyond ±1e+30 treated as missing" in x for x in r.reasons)
    for name in ("FC", "H", "LE", "USTAR"):
        assert math.isfinite(r.get(name)), name
    clean = rows.copy()
    clean[[10, 19999], 4] = np.nan
    clean[499, 2] = np.nan
    (tmp_path / "clean").mkdir()
    (expected,) = run(write_file(tmp_path / "clean" / NAME, clean))  # the same records, missing where inf was
    for name in ("FC", "H", "LE", "USTAR"):
        assert r.get(name) == pytest.approx(expected.get(name), rel=1e-9), name


@pytest.mark.parametrize(("column", "shift", "says"), [
    (3, -273.15, "mean sonic temperature 21.85 K outside 173.15..373.15 K: check the Ts column's unit"),  # °C as K
    (5, +400.0, "mean H2O 412 mmol mol-1 outside -10..200 mmol mol-1: check the H2O column's unit"),
])
def test_means_no_air_has_fail_the_period_naming_the_unit_to_check(tmp_path: Path, column: int, shift: float,
                                                                     says: str) -> None:
    rows = good_rows()
    rows[:, column] += shift
    (r,) = run(write_file(tmp_path / NAME, rows))
    assert r.status == "failed"
    assert any(says in x for x in r.reasons), r.reasons


def test_a_pressure_in_the_wrong_unit_fails_the_period(tmp_path: Path) -> None:
    rows = np.column_stack([good_rows(), np.full(N, 1013.0)])  # hPa in a column declared in Pa
    columns = [{"index": 1, "variable": "u"}, {"index": 2, "variable": "v"}, {"index": 3, "variable": "w"},
               {"index": 4, "variable": "ts"},
               {"index": 5, "variable": "co2", "measure_type": "mixing_ratio", "min_timelag": 0, "max_timelag": 1},
               {"index": 6, "variable": "h2o", "measure_type": "mixing_ratio", "min_timelag": 0, "max_timelag": 1},
               {"index": 7, "variable": "air_p", "unit_in": "pa"}]
    (r,) = run(write_file(tmp_path / NAME, rows, header="U,V,W,T_SONIC,CO2,H2O,PA"), columns=columns)
    assert r.status == "failed"
    assert any("mean air pressure 1013 Pa outside 30000..110000 Pa" in x for x in r.reasons), r.reasons


def test_non_monotonic_time_stamps_fail_the_period(tmp_path: Path) -> None:
    path = write_file(tmp_path / NAME, good_rows())
    stamps = 1717236000.0 + np.arange(N) / FS
    stamps[100], stamps[101] = stamps[101], stamps[100]
    (p,) = read_raw_file(path, metadata(), SETTINGS, timestamps=stamps)
    r = process_period(p, SETTINGS)
    assert r.status == "failed"
    assert any("time stamps not increasing (record 102)" in x for x in r.reasons)


def test_time_stamp_gap_is_filled_with_missing_records(tmp_path: Path) -> None:
    rows = good_rows()
    keep = np.r_[0:10000, 10400:N]  # 20 s missing
    path = write_file(tmp_path / NAME, rows[keep])
    stamps = 1717236000.0 + keep / FS
    (p,) = read_raw_file(path, metadata(), SETTINGS, timestamps=stamps)
    r = process_period(p, SETTINGS)
    assert r.status == "ok"
    assert r.get("N_USED") == N - 400
    assert any("400 records missing in time-stamp gaps" in x for x in r.reasons)


def test_file_name_without_time_stamp_is_named(tmp_path: Path) -> None:
    (r,) = run(write_file(tmp_path / "raw.csv", good_rows()))
    assert any("no yyyymmddHHMM time stamp" in x for x in r.reasons)


def test_missing_file_is_a_failed_period(tmp_path: Path) -> None:
    (r,) = run(tmp_path / NAME)
    assert r.status == "failed" and any("file not found" in x for x in r.reasons)


def test_failed_and_partial_periods_export_as_minus_9999(tmp_path: Path) -> None:
    rows = good_rows()
    rows[:, 4] = -9999
    results = run(write_file(tmp_path / NAME, rows)) + run(write_file(tmp_path / "SYN_EC_202406011230.csv",
                                                                      good_rows(100)))
    out = tmp_path / "out.csv"
    write_ameriflux_csv(results, out)
    lines = out.read_text().splitlines()
    header = lines[0].split(",")
    first, second = (dict(zip(header, line.split(","), strict=False)) for line in lines[1:3])
    assert first["FC"] == "-9999" and first["STATUS"] == "partial" and first["H"] != "-9999"
    assert second["TIMESTAMP_END"] == "202406011230" and second["H"] == "-9999" and second["STATUS"] == "failed"


@pytest.mark.parametrize(("update", "error", "text"), [
    ({"hf_meth": "horst_1997"}, ConfigurationError, "horst_1997 applies to closed-path"),
    ({"hf_meth": "fratini_2012"}, ConfigurationError, "fratini_2012 applies to closed-path"),
    ({"foot_meth": "kljun_2015"}, ConfigurationError, "footprint_blh"),
])
def test_unavailable_methods_are_refused_not_skipped(update: dict[str, str], error: type[Exception],
                                                     text: str) -> None:
    settings = ProcessingSettings.model_validate(update)
    with pytest.raises(error, match=text):
        check_configuration(metadata(), settings)


def test_automatic_lag_optimisation_without_a_window_to_search_is_refused() -> None:
    md = metadata(columns=[{"index": 1, "variable": "u"}, {"index": 2, "variable": "v"}, {"index": 3, "variable": "w"},
                           {"index": 4, "variable": "ts"},
                           {"index": 5, "variable": "co2", "measure_type": "mixing_ratio"}])
    with pytest.raises(ConfigurationError, match="no window to search the co2 lag in; set to_co2_min_lag"):
        check_configuration(md, ProcessingSettings.model_validate({"tlag_meth": "automatic_optimization"}))
    check_configuration(md, ProcessingSettings.model_validate({"tlag_meth": "automatic_optimization",
                                                               "to_co2_min_lag": 0, "to_co2_max_lag": 2}))


def test_planar_fit_without_planes_is_refused_by_the_engine() -> None:
    """Without a file the caller fits the planes (engine.fit_planar_fit); process_period given none refuses."""
    data = {k: np.full(N, x) + np.random.default_rng(1).standard_normal(N) for k, x in
            (("u", 3.0), ("v", 0.0), ("w", 0.0), ("ts", 290.0))}
    with pytest.raises(ConfigurationError, match="no planar-fit sectors"):
        process_period(period(data, metadata(columns=[{"index": 1, "variable": "u"}, {"index": 2, "variable": "v"},
                                                      {"index": 3, "variable": "w"}, {"index": 4, "variable": "ts"}])),
                       ProcessingSettings.model_validate({"rot_meth": "planar_fit"}))


def test_covariance_maximisation_without_a_window_is_refused() -> None:
    md = metadata(columns=[{"index": 1, "variable": "u"}, {"index": 2, "variable": "v"},
                           {"index": 3, "variable": "w"}, {"index": 4, "variable": "ts"},
                           {"index": 5, "variable": "co2", "measure_type": "mixing_ratio"}])
    with pytest.raises(ConfigurationError, match="column 5 \\(co2\\): time-lag window"):
        check_configuration(md, SETTINGS)


def test_unreadable_file_gives_one_failed_period_per_averaging_period(tmp_path: Path) -> None:
    settings = ProcessingSettings.model_validate({"avrg_len": 5, "tlag_meth": "none"})
    periods = read_raw_file(tmp_path / NAME, metadata(), settings)
    results = [process_period(p, settings) for p in periods]
    assert [r.end.strftime("%H:%M") for r in results] == ["11:35", "11:40", "11:45", "11:50", "11:55", "12:00"]
    assert all(r.status == "failed" and "file not found" in r.reasons[0] for r in results)


@pytest.mark.parametrize("name", ["diag_72", "diag_75", "diag_sonic"])
def test_numbers_that_are_no_diagnostic_word_mark_their_records_bad(name: str) -> None:
    import warnings

    from gateway.flux.ec.engine import diagnostic_mask

    ok_word = {"diag_72": 8191.0, "diag_75": 240.0, "diag_sonic": 0.0}[name]
    diag = np.array([ok_word, np.nan, -1.0, 8191.5, 2.0**32, 1e29, ok_word])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "invalid value encountered in cast" from the corrupted words
        bad = diagnostic_mask(name, diag)
    assert bad.tolist() == [False, False, True, True, True, True, False]


def test_filtering_counts_the_records_each_filter_removed() -> None:
    """EddyPro's fluxnet *_DIAG_NREX and *_ABSLIM_NREX: records removed by the diagnostic words and by the absolute
    limits, per series."""
    from gateway.flux.ec.engine import filter_records

    n = 10
    data = {"u": np.zeros(n), "v": np.zeros(n), "w": np.zeros(n), "ts": np.full(n, 293.0),
            "co2": np.full(n, 400.0), "h2o": np.full(n, 10.0), "diag_72": np.full(n, 8191.0),
            "diag_sonic": np.zeros(n)}
    data["diag_72"][[1, 2]] = 8191.0 - 2**8   # ΔP not OK: CO2 and H2O of two records out
    data["diag_sonic"][5] = 3.0               # one sonic record out
    data["u"][7] = 80.0                       # beyond al_u_max (30 m s-1)
    data["co2"][[8, 9]] = 5000.0              # beyond al_co2_max
    counts: dict[str, float] = {}
    settings = ProcessingSettings.model_validate({"filter_diag": True, "filter_al": True})
    filter_records(data, {"co2": "mixing_ratio", "h2o": "mixing_ratio"}, settings, counts)
    assert counts["CO2_DIAG_NREX"] == counts["H2O_DIAG_NREX"] == 2.0
    assert counts["SONIC_DIAG_NREX"] == 1.0
    assert counts["U_ABSLIM_NREX"] == 1.0 and counts["CO2_ABSLIM_NREX"] == 2.0
    assert counts["V_ABSLIM_NREX"] == counts["H2O_ABSLIM_NREX"] == 0.0
    assert np.isnan(data["co2"][[1, 2, 8, 9]]).all() and np.isnan(data["u"][[5, 7]]).all()


@pytest.mark.parametrize("load", ["load_metadata", "load_settings"])
def test_a_device_given_as_metadata_or_settings_is_refused_not_read_forever(load: str) -> None:
    """Hostile inputs by hand (docs/reliability.md): `--metadata /dev/zero` was read until memory ran out."""
    from gateway import configfile
    from gateway.flux import files

    with pytest.raises(configfile.ConfigError, match=r"/dev/zero: cannot read: longer than 16 MiB"):
        getattr(files, load)("/dev/zero")


def test_a_boolean_for_a_number_in_settings_is_refused() -> None:
    """Hostile inputs by hand: pydantic took `true` for 1 in every numeric key of the processing settings."""
    import pydantic

    with pytest.raises(pydantic.ValidationError, match="must be a number, not true"):
        ProcessingSettings.model_validate({"avrg_len": True})


def test_more_header_rows_than_any_file_has_fail_the_period_not_hang(tmp_path: Path) -> None:
    """Hostile inputs by hand (docs/reliability.md): `header_rows: 1000000000000000` read past the end of the file
    one empty line at a time, for ever."""
    columns = [{"index": i + 1, "variable": v} for i, v in enumerate(("u", "v", "w", "ts"))]
    md = metadata(columns=columns, file={"columns": columns, "header_rows": 10**15})
    (period,) = read_raw_file(write_file(tmp_path / NAME, good_rows(500)), md, SETTINGS)
    (r,) = [process_period(period, SETTINGS)]
    assert r.status == "failed"
    assert any("no data rows after 1000000000000000 header row(s)" in x for x in r.reasons)


def test_a_metadata_key_given_twice_with_different_values_is_refused(tmp_path: Path) -> None:
    """Hostile inputs by hand (docs/reliability.md): `altitude=193` then `altitude=2000` was a site at 2000 m."""
    from gateway import configfile
    from gateway.flux.files import load_metadata

    source = Path(__file__).parent.parent / "data" / "ec-raw" / "eddypro" / "R1_dr_ba_maxcov_wpl_30min"
    text = (source / "input_DE-HoH.metadata").read_text()
    path = tmp_path / "twice.metadata"
    path.write_text(text.replace("altitude=193\n", "altitude=193\naltitude=2000\n", 1))
    with pytest.raises(configfile.ConfigError, match=r"key altitude of \[Site\] is given twice with different values"):
        load_metadata(path)
    path.write_text(text.replace("altitude=193\n", "altitude=193\naltitude=193\n", 1))
    assert load_metadata(path).altitude == 193.0


# --- first-day walkthrough (docs/reliability.md): the metadata and settings files mixed up ----------------------

_REPO = Path(__file__).resolve().parents[2]
_EXAMPLES = _REPO / "gateway" / "flux" / "examples"
_R1 = _REPO / "tests" / "data" / "ec-raw" / "eddypro" / "R1_dr_ba_maxcov_wpl_30min"
_RAW = _REPO / "tests" / "data" / "ec-raw" / "DE-HoH_EC_201907301200_v01.csv.gz"


@pytest.mark.parametrize(("metadata", "settings", "expected"), [
    # before: one "unknown key; the keys here are <~100 keys>" line per key of the other file
    (_EXAMPLES / "DE-HoH_R1.settings.yaml", None,
     "DE-HoH_R1.settings.yaml: holds processing settings (avrg_len, max_lack, rot_meth, detrend_meth, ...), not site "
     "metadata: give it to --settings, and give --metadata site metadata"),
    (_EXAMPLES / "DE-HoH.metadata.yaml", _EXAMPLES / "DE-HoH.metadata.yaml",
     "DE-HoH.metadata.yaml: holds site metadata (site_id, altitude, latitude, longitude, ...), not processing "
     "settings: give it to --metadata"),
    # before: "expected a mapping of keys at the top level"
    (_R1 / "eddypro_settings_echo.eddypro", None,
     "eddypro_settings_echo.eddypro: an EddyPro project file (.eddypro): processing settings, not site metadata; "
     "give it to --settings"),
    (_EXAMPLES / "DE-HoH.metadata.yaml", _R1 / "input_DE-HoH.metadata",
     "input_DE-HoH.metadata: an EddyPro .metadata file: site metadata, not processing settings; give it to "
     "--metadata"),
    # before: "not UTF-8 text (byte 1); save the file as UTF-8"
    (_RAW, None, "DE-HoH_EC_201907301200_v01.csv.gz: gzip-compressed data, not a metadata or settings file (a raw "
                 "data file?)"),
])
def test_a_metadata_or_settings_file_given_for_the_other_is_named_so(tmp_path: Path, metadata: Path,
                                                                      settings: Path | None, expected: str) -> None:
    from typer.testing import CliRunner

    from gateway.cli import app

    args = ["flux", "ec", str(_RAW), "--metadata", str(metadata), "--out", str(tmp_path / "out.csv")]
    result = CliRunner().invoke(app, args + (["--settings", str(settings)] if settings is not None else []))
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert len(result.output.splitlines()) == 1 and not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("output_format", ["eddypro-full", "fluxnet"])
def test_base_only_with_an_eddypro_format_is_refused(tmp_path: Path, output_format: str) -> None:
    """First-day walkthrough: `--format fluxnet --base-only` wrote the full file, the option ignored silently."""
    from typer.testing import CliRunner

    from gateway.cli import app

    result = CliRunner().invoke(app, ["flux", "ec", str(_RAW), "--metadata", str(_EXAMPLES / "DE-HoH.metadata.yaml"),
                                      "--format", output_format, "--base-only", "--out", str(tmp_path / "o.csv")])
    assert result.exit_code == 2
    assert f"--base-only is for --format ameriflux; --format {output_format} writes EddyPro's own columns" \
        in result.output
