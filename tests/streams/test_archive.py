"""Raw archive: round trip, half-hour alignment, missing values, and a file cut short by a power loss."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from gateway.rawarchive import ArchiveWriter, file_period_start, read_archive

T0 = 1_795_509_000  # 2026-11-24T08:30:00Z, a half-hour boundary


def test_period_start_aligns_to_half_hours_utc() -> None:
    assert file_period_start(T0) == T0
    assert file_period_start(T0 + 1799.999) == T0
    assert file_period_start(T0 + 1800) == T0 + 1800
    assert file_period_start(T0 - 0.001) == T0 - 1800


def test_round_trip_keeps_values_exactly_and_missing_as_nan(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(size=(500, 3))
    writer = ArchiveWriter(tmp_path, "sonic", T0, [("U", "m s-1"), ("W", "m s-1"), ("T_SONIC", "degC")],
                           {"site": "s", "station": "st", "frequency_hz": 20.0, "instrument": {"height_m": 25.0}})
    times = T0 + np.arange(500) / 20
    for i in range(500):
        row: list[float | None] = [float(x) for x in values[i]]
        if i % 50 == 0:
            row[1] = None
        writer.write(float(times[i]), row)
    path = writer.close({"bad_records": {"checksum": 2}})
    assert path.name == "sonic_20261124T0830Z.csv.gz" and not writer.part_path.exists()
    data = read_archive(path)
    assert data.complete and data.footer is not None and data.footer["bad_records"] == {"checksum": 2}
    assert data.footer["records"] == 500
    assert data.header["instrument"]["height_m"] == 25.0 and data.units["T_SONIC"] == "degC"
    assert data.header["period_start"] == "2026-11-24T08:30:00Z"
    np.testing.assert_array_equal(data.columns["U"], values[:, 0])
    np.testing.assert_allclose(data.time, times, rtol=0, atol=1e-6)
    w = data.columns["W"]
    assert all(math.isnan(w[i]) == (i % 50 == 0) for i in range(500))


def test_second_file_of_the_same_half_hour_gets_a_suffix(tmp_path: Path) -> None:
    first = ArchiveWriter(tmp_path, "csat", T0, [("U", "m s-1")], {}).close({})
    second = ArchiveWriter(tmp_path, "csat", T0, [("U", "m s-1")], {}).close({})
    assert (first.name, second.name) == ("csat_20261124T0830Z.csv.gz", "csat_20261124T0830Z_1.csv.gz")


def test_a_file_cut_by_a_power_loss_reads_up_to_its_last_flush(tmp_path: Path) -> None:
    writer = ArchiveWriter(tmp_path, "csat", T0, [("U", "m s-1")], {}, flush_every=100)
    for i in range(250):
        writer.write(T0 + i / 20, [float(i)])
    writer._gz.flush()  # what the OS has at the moment of the cut (the writer was never closed)
    writer._raw.flush()
    data = read_archive(writer.part_path)
    assert not data.complete and data.footer is None
    assert data.columns["U"].tolist() == [float(i) for i in range(data.time.size)]
    assert data.time.size >= 200


def test_not_an_archive_is_named(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "x.csv.gz"
    path.write_bytes(gzip.compress(b"hello\n"))
    with pytest.raises(ValueError, match="not a sinkwatch-raw file"):
        read_archive(path)
