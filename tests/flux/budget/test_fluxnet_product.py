"""A FLUXNET2015/ONEFlux product file (FULLSET or SUBSET, half-hourly or hourly) as the budget's input, built from the
vendored FR-Hes 2016 year: the measured NEE in ``NEE_VUT_REF`` with ``NEE_VUT_REF_QC`` 0 and, at the gaps, a wrong
"gap-filled" value with QC 2; the drivers under the product's names (``SW_IN_F``, ``TA_F``, ``VPD_F``), no NEE or FC.
The budget must be the one of the original file: the product's filled values are not used, our own u* filter and MDS
fill the gaps. A product file without the QC column is refused by name."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.flux.budget.files import BudgetFileError, BudgetInput, read_budget_csv
from gateway.flux.budget.pipeline import BudgetSettings, run_budget
from tests.flux.budget.refdata import DATA, SITES, peer_json

runner = CliRunner()
FR_HES = DATA / "FR-Hes2016_europe-fluxdata_columns.csv.gz"
WRONG = 7.5
"""The "gap-filled" NEE written at the gaps (µmol m-2 s-1): a plausible respiration, so that no unit check catches
it, and far from the year's mean, so that using it moves the annual sum by hundreds of gC m-2."""
RENAMED = {"SW_IN": "SW_IN_F", "TA": "TA_F", "VPD": "VPD_F", "USTAR": "USTAR"}


def _write(path: Path, t: np.ndarray, cols: dict[str, np.ndarray], step_min: int) -> Path:
    """A FLUXNET2015 table: TIMESTAMP_START, TIMESTAMP_END, the columns; -9999 missing, values written exactly."""
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["TIMESTAMP_START", "TIMESTAMP_END", *cols])
        for i, start in enumerate(t):
            s = datetime.fromtimestamp(float(start), UTC)
            writer.writerow([f"{s:%Y%m%d%H%M}", f"{s + timedelta(minutes=step_min):%Y%m%d%H%M}",
                             *("-9999" if not np.isfinite(v[i]) else repr(float(v[i])) for v in cols.values())])
    return path


def _product(nee: np.ndarray, drivers: dict[str, np.ndarray], *, qc: bool = True) -> dict[str, np.ndarray]:
    measured = np.isfinite(nee)
    cols = {"NEE_VUT_REF": np.where(measured, nee, WRONG)}
    if qc:
        cols["NEE_VUT_REF_QC"] = np.where(measured, 0.0, 2.0)
    return cols | {RENAMED[k]: v for k, v in drivers.items()}


def _original() -> BudgetInput:
    return read_budget_csv(FR_HES)


def _drivers(data: BudgetInput) -> dict[str, np.ndarray]:
    return {k: data.columns[k] for k in ("SW_IN", "TA", "VPD", "USTAR")}


def _annual_csv(path: Path) -> dict[str, str]:
    with path.open(encoding="utf-8") as fh:
        return next(csv.DictReader(fh))


def _command(path: Path, tmp_path: Path, name: str) -> tuple[str, dict[str, str]]:
    s = SITES["FR-Hes2016"]
    annual = tmp_path / f"{name}_annual.csv"
    result = runner.invoke(app, ["flux", "budget", str(path), "--lat", str(s["lat"]), "--lon", str(s["lon"]),
                                 "--utc-offset", str(s["utc_offset"]), "--out", str(tmp_path / f"{name}_hh.csv"),
                                 "--annual", str(annual)])
    assert result.exit_code == 0, result.output
    return result.output, _annual_csv(annual)


def test_fullset_half_hourly_gives_the_budget_of_the_original_file(tmp_path: Path) -> None:
    data = _original()
    nee = data.columns["NEE"]
    path = _write(tmp_path / "FLX_FR-Hes_FLUXNET2015_FULLSET_HH_2016-2016.csv", data.time_start_s,
                  _product(nee, _drivers(data)), 30)
    product = read_budget_csv(path)
    np.testing.assert_array_equal(product.columns["NEE"], nee)  # NaN at every QC 2 record: WRONG is not read
    for name in ("SW_IN", "TA", "VPD", "USTAR"):
        np.testing.assert_array_equal(product.columns[name], data.columns[name], err_msg=name)
    measured = int(np.isfinite(nee).sum())
    assert any(n.startswith(f"NEE from NEE_VUT_REF where NEE_VUT_REF_QC is 0 (measured): {measured} records") and
               f"its {nee.size - measured} gap-filled values are not used" in n and "own u* thresholds" in n and
               "our u* filter and gap filling run again" in n for n in product.notes)
    drivers = "SW_IN from SW_IN_F, TA from TA_F, VPD from VPD_F: a FLUXNET2015/ONEFlux product's gap-filled drivers"
    assert any(n.startswith(drivers) for n in product.notes)

    # the command, u* auto, on the product file and on the original europe-fluxdata file
    out_product, annual_product = _command(path, tmp_path, "product")
    _, annual_original = _command(FR_HES, tmp_path, "original")
    assert "note: NEE from NEE_VUT_REF where NEE_VUT_REF_QC is 0" in " ".join(out_product.split())
    for name in ("NEE_F", "NEE_F_UNC", "USTAR_THRESHOLD", "RECO_NT", "GPP_NT", "GAP_FRACTION"):
        assert float(annual_product[name]) == pytest.approx(float(annual_original[name]), abs=1e-6), name
    assert float(annual_product["GAP_FRACTION"]) > 0.3  # the product's filled records were gaps to us


def test_fullset_values_would_have_moved_the_budget() -> None:
    """The test above can fail: had the filled values been taken, the year's NEE would move by far more than its
    uncertainty (the same u* threshold and MDS, only the input's gaps differ)."""
    data = _original()
    s = SITES["FR-Hes2016"]
    settings = BudgetSettings(ustar=float(peer_json("dv091_ustar_FR-Hes2016.json")["annual"]["threshold"]),
                              partition=False)
    c = data.columns
    runs = [run_budget(data.time_start_s, nee, c["SW_IN"], c["TA"], c["VPD"], c["USTAR"], lat=s["lat"], lon=s["lon"],
                       utc_offset_h=s["utc_offset"], settings=settings).annual.values
            for nee in (c["NEE"], np.where(np.isfinite(c["NEE"]), c["NEE"], WRONG))]
    assert abs(float(runs[1]["NEE_F"][0]) - float(runs[0]["NEE_F"][0])) > 10 * float(runs[0]["NEE_F_UNC"][0])


def test_fullset_hourly_gives_the_budget_of_the_hourly_original(tmp_path: Path) -> None:
    """An ``_HR`` product (60-min records, as FLUXNET2015 gives US sites): two half hours averaged, measured (QC 0)
    when both were; the same records in the plain layout (NEE, SW_IN, TA, VPD, USTAR) give the same budget."""
    data = _original()
    t = data.time_start_s[::2]
    hourly = {k: data.columns[k].reshape(-1, 2).mean(axis=1) for k in ("NEE", "SW_IN", "TA", "VPD", "USTAR")}
    plain = _write(tmp_path / "plain_HR.csv", t, hourly, 60)
    product = _write(tmp_path / "FLX_FR-Hes_FLUXNET2015_SUBSET_HR_2016-2016.csv", t,
                     _product(hourly["NEE"], {k: v for k, v in hourly.items() if k != "NEE"}), 60)
    a, b = read_budget_csv(plain), read_budget_csv(product)
    assert a.step_s == b.step_s == 3600.0
    for name in ("NEE", "SW_IN", "TA", "VPD", "USTAR"):
        np.testing.assert_array_equal(b.columns[name], a.columns[name], err_msg=name)
    s = SITES["FR-Hes2016"]
    settings = BudgetSettings(ustar=float(peer_json("dv091_ustar_FR-Hes2016.json")["annual"]["threshold"]))
    results = [run_budget(d.time_start_s, d.columns["NEE"], d.columns["SW_IN"], d.columns["TA"], d.columns["VPD"],
                          d.columns["USTAR"], lat=s["lat"], lon=s["lon"], utc_offset_h=s["utc_offset"],
                          settings=settings).annual.values for d in (a, b)]
    for name in ("NEE_F", "RECO_NT", "GPP_NT"):
        assert float(results[1][name][0]) == pytest.approx(float(results[0][name][0]), abs=1e-6), name


def _synthetic_rows(days: int = 20) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    n = days * 48
    t = datetime(2021, 6, 1, tzinfo=UTC).timestamp() + 1800.0 * np.arange(n)
    hour = (np.arange(n) % 48) / 2.0
    sun = np.clip(np.sin((hour - 6.0) / 12.0 * np.pi), 0.0, None)
    return t, {"NEE": 3.0 - 12.0 * sun, "SW_IN": 700.0 * sun, "TA": 12.0 + 6.0 * sun, "VPD": 2.0 + 10.0 * sun,
               "USTAR": np.full(n, 0.35)}


def test_vut_before_cut_and_cut_when_vut_has_no_qc(tmp_path: Path) -> None:
    t, s = _synthetic_rows()
    qc = np.where(np.arange(t.size) % 5 == 0, 1.0, 0.0)  # every fifth record gap-filled (quality 1)
    cols = {"NEE_CUT_REF": s["NEE"] + 1.0, "NEE_CUT_REF_QC": np.zeros(t.size), "NEE_VUT_REF": s["NEE"],
            "NEE_VUT_REF_QC": qc, "SW_IN_F_MDS": s["SW_IN"], "TA_F_MDS": s["TA"], "VPD_F_MDS": s["VPD"],
            "USTAR": s["USTAR"]}
    data = read_budget_csv(_write(tmp_path / "both.csv", t, cols, 30))
    np.testing.assert_array_equal(data.columns["NEE"], np.where(qc == 0.0, s["NEE"], np.nan))
    np.testing.assert_array_equal(data.columns["TA"], s["TA"])  # _F_MDS when there is no _F
    without_vut_qc = {k: v for k, v in cols.items() if k != "NEE_VUT_REF_QC"}
    data = read_budget_csv(_write(tmp_path / "cut.csv", t, without_vut_qc, 30))
    np.testing.assert_array_equal(data.columns["NEE"], s["NEE"] + 1.0)
    assert any(n.startswith("NEE from NEE_CUT_REF where NEE_CUT_REF_QC is 0") for n in data.notes)


def test_plain_drivers_and_fc_win_over_the_products(tmp_path: Path) -> None:
    t, s = _synthetic_rows()
    cols = {"FC": s["NEE"], "NEE_VUT_REF": s["NEE"] + 2.0, "NEE_VUT_REF_QC": np.zeros(t.size), "TA": s["TA"],
            "TA_F": s["TA"] + 3.0, "SW_IN": s["SW_IN"], "SW_IN_F": s["SW_IN"] + 5.0, "VPD": s["VPD"],
            "USTAR": s["USTAR"]}
    data = read_budget_csv(_write(tmp_path / "plain.csv", t, cols, 30))
    for name in ("TA", "SW_IN"):
        np.testing.assert_array_equal(data.columns[name], s[name], err_msg=name)
    np.testing.assert_array_equal(data.columns["NEE"], s["NEE"])
    assert not any("FLUXNET2015/ONEFlux" in n for n in data.notes)


def test_fullset_without_qc_columns_is_refused_by_name(tmp_path: Path) -> None:
    data = _original()
    path = _write(tmp_path / "FLX_FR-Hes_FLUXNET2015_FULLSET_HH_2016-2016.csv", data.time_start_s,
                  _product(data.columns["NEE"], _drivers(data), qc=False) | {"NEE_CUT_REF": data.columns["NEE"]}, 30)
    with pytest.raises(BudgetFileError, match=r"no NEE or FC column, and NEE_VUT_REF without its quality column "
                                              r"NEE_VUT_REF_QC: .* 0 = measured"):
        read_budget_csv(path)
    s = SITES["FR-Hes2016"]
    result = runner.invoke(app, ["flux", "budget", str(path), "--lat", str(s["lat"]), "--lon", str(s["lon"]),
                                 "--utc-offset", "1", "--out", str(tmp_path / "out.csv")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "NEE_VUT_REF_QC" in result.output and "BASE file (FC, SC)" in " ".join(result.output.split())
    assert not (tmp_path / "out.csv").exists()


def test_a_product_already_u_star_filtered_gets_no_second_threshold_and_says_so(tmp_path: Path) -> None:
    """As ONEFlux writes it: the nights below its u* threshold (here diive's, 0.215 m s-1, a port of ONEFlux's
    moving-point test) or without USTAR are gap-filled (QC 1), not measured. The moving-point test then finds no
    threshold in the nights left; the command runs without further u* filtering, says so, and gives the budget of the
    original file filtered at that threshold."""
    data = _original()
    c = data.columns
    threshold = float(peer_json("dv091_ustar_FR-Hes2016.json")["annual"]["threshold"])
    with np.errstate(invalid="ignore"):
        removed = ~(c["SW_IN"] >= 10.0) & ~(c["USTAR"] >= threshold)
    nee = np.where(removed, np.nan, c["NEE"])
    path = _write(tmp_path / "FLX_FR-Hes_FLUXNET2015_FULLSET_HH_2016-2016.csv", data.time_start_s,
                  _product(nee, _drivers(data)), 30)
    output, annual = _command(path, tmp_path, "product")
    text = " ".join(output.split())
    assert "note: u*: the moving-point test found no u* threshold in" in text
    assert "which ONEFlux already u*-filtered at its own threshold: no further u* filtering (as --ustar none)" in text
    s = SITES["FR-Hes2016"]
    original = run_budget(data.time_start_s, c["NEE"], c["SW_IN"], c["TA"], c["VPD"], c["USTAR"], lat=s["lat"],
                          lon=s["lon"], utc_offset_h=s["utc_offset"], settings=BudgetSettings(ustar=threshold))
    for name in ("NEE_F", "RECO_NT", "GPP_NT"):
        # the annual file writes six significant digits
        assert float(annual[name]) == pytest.approx(float(original.annual.values[name][0]), rel=1e-5), name
    # the same file with a threshold given is filtered at it, no note
    result = runner.invoke(app, ["flux", "budget", str(path), "--lat", str(s["lat"]), "--lon", str(s["lon"]),
                                 "--utc-offset", "1", "--ustar", "0.3", "--out", str(tmp_path / "given.csv")])
    assert result.exit_code == 0 and "no further u* filtering" not in result.output
