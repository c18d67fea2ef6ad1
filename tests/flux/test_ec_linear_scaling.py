"""EddyPro's linear scaling of a raw column (`col_N_conversion = gain_offset`, `col_N_a_value`, `col_N_b_value`,
`col_N_unit_out`; EddyPro 7 Help, "Linear scaling", eq. 5-3: X_out = A·X_in + B) is applied before the unit
conversion, so a file recorded in raw units gives the fluxes of the same file in physical units; a conversion the
engine does not know is refused naming the column, never ignored."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.configfile import ConfigError
from gateway.flux.ec.settings import ProcessingSettings
from gateway.flux.files import load_metadata

from .conftest import EC_RAW, RAW_FILE
from .test_ec_cli import check_r1, read_rows

R1 = EC_RAW / "eddypro" / "R1_dr_ba_maxcov_wpl_30min"
GAIN, OFFSET = 2.5, 120.0  # CO2 ppm = 2.5 · recorded + 120


def scaled_metadata(tmp_path: Path, conversion: str, **values: str) -> Path:
    text = (R1 / "input_DE-HoH.metadata").read_text()
    keys = {"conversion": conversion, "unit_out": "ppm", "unit_in": "other", **values}
    for key, value in keys.items():
        start = text.index(f"col_5_{key}=")
        end = text.index("\n", start)
        text = text[:start] + f"col_5_{key}={value}" + text[end:]
    path = tmp_path / "scaled.metadata"
    path.write_text(text)
    return path


def raw_co2_recorded_scaled(tmp_path: Path) -> Path:
    """The reference file with its CO2 column (the fifth) written as (ppm − OFFSET) / GAIN."""
    lines = gzip.decompress(RAW_FILE.read_bytes()).decode().splitlines()
    out = [lines[0]]
    for line in lines[1:]:
        cells = line.split(",")
        cells[4] = repr((float(cells[4]) - OFFSET) / GAIN)
        out.append(",".join(cells))
    path = tmp_path / RAW_FILE.name.removesuffix(".gz")
    path.write_text("\n".join(out) + "\n")
    return path


def run(raw: Path, metadata: Path, out: Path) -> dict[str, str]:
    result = CliRunner().invoke(app, ["flux", "ec", str(raw), "--metadata", str(metadata), "--settings",
                                      str(R1 / "eddypro_settings_echo.eddypro"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    (row,) = read_rows(out)
    return row


def test_a_column_recorded_in_raw_units_gives_the_fluxes_of_the_physical_one(ec_raw: Path, tmp_path: Path) -> None:
    metadata = scaled_metadata(tmp_path, "gain_offset", a_value=str(GAIN), b_value=str(OFFSET))
    scaled = run(raw_co2_recorded_scaled(tmp_path), metadata, tmp_path / "scaled.csv")
    plain = run(RAW_FILE, R1 / "input_DE-HoH.metadata", tmp_path / "plain.csv")
    check_r1(scaled)  # EddyPro's R1 from the file in raw units
    for name in ("FC", "W_CO2_COV", "CO2", "CO2_TLAG", "LE", "H"):
        assert float(scaled[name]) == pytest.approx(float(plain[name]), rel=1e-9), name


def test_without_the_scaling_the_same_file_would_give_other_fluxes(ec_raw: Path, tmp_path: Path) -> None:
    # the control: the scaled file read as if it were in ppm is not R1 (so the test above tests the scaling)
    metadata = scaled_metadata(tmp_path, "", unit_in="ppm")
    row = run(raw_co2_recorded_scaled(tmp_path), metadata, tmp_path / "unscaled.csv")
    assert not np.isclose(float(row["FC"]), -20.6825, rtol=1e-2)


@pytest.mark.parametrize(("conversion", "values", "expected"), [
    ("zero_fullscale", {"a_value": "0", "b_value": "5000"}, "linear scaling (EddyPro col_N_conversion) "
                                                             "'zero_fullscale' is not available here"),
    ("gain_offset", {"a_value": "2.5", "b_value": ""}, "linear_scaling gain_offset needs a_value (gain) and "
                                                        "b_value (offset)"),
])
def test_a_scaling_the_engine_cannot_apply_is_refused_naming_the_column(
        tmp_path: Path, conversion: str, values: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_metadata(scaled_metadata(tmp_path, conversion, **values))
    assert expected in str(refused.value) and "columns" in str(refused.value)


def test_metadata_without_scaling_keep_the_settings_hash_they_had() -> None:
    # computed by the engine before linear scaling existed (main a056f39, 2026-12-06): results stored under it
    # stay comparable with results computed now
    metadata = load_metadata(R1 / "input_DE-HoH.metadata")
    assert ProcessingSettings().settings_hash(metadata) == "a165da201a5d2980"
