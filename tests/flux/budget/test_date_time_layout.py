"""The budget input's time layouts beside FLUXNET's digits: `date` + `time` (ICOS teaching/PI files: the three ways
of writing a day, the day's end written 24:00, the refusals that name what to write), stamps as ISO text and
diive's TIMESTAMP_MIDDLE."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from gateway.flux.budget.files import BudgetFileError, _date_time_ends, read_budget_csv
from tests.flux.budget.refdata import DATA

FR_HES = DATA / "FR-Hes2016_europe-fluxdata_columns.csv.gz"

PATH = Path("in.csv")
HEADER = ["date", "time", "NEE"]


def ends(rows: list[tuple[str, str]]) -> list[datetime]:
    return _date_time_ends(PATH, HEADER, [[d, t, "1"] for d, t in rows], 0, 1)


@pytest.mark.parametrize(("rows", "expected"), [
    ([("2016-01-31", "00:30"), ("2016-01-31", "24:00")], [(2016, 1, 31, 0, 30), (2016, 2, 1, 0, 0)]),
    ([("31/01/2016", "00:30"), ("01/02/2016", "01:00")], [(2016, 1, 31, 0, 30), (2016, 2, 1, 1, 0)]),
    ([("01/31/2016", "00:30:00"), ("02/01/2016", "01:00")], [(2016, 1, 31, 0, 30), (2016, 2, 1, 1, 0)]),
    ([("31.01.2016", "23:30")], [(2016, 1, 31, 23, 30)]),
])
def test_each_way_of_writing_a_day_gives_the_same_instants(rows: list[tuple[str, str]],
                                                             expected: list[tuple[int, int, int, int, int]]) -> None:
    assert ends(rows) == [datetime(y, mo, d, h, mi, tzinfo=UTC) for y, mo, d, h, mi in expected]


@pytest.mark.parametrize(("rows", "expected"), [
    ([("01/02/2016", "00:30"), ("02/01/2016", "00:30")], "cannot tell day from month"),
    ([("2016/31", "00:30")], "is not a date as YYYY-MM-DD, DD/MM/YYYY or MM/DD/YYYY"),
    ([("31/01/2016", "00:75")], "row 2: date '31/01/2016', time '00:75' is not a time"),
    ([("31/01/2016", "25:00")], "is not a time"),
    ([("31/02/2016", "00:30")], "is not a time"),
])
def test_what_is_not_a_time_is_refused_naming_the_fix(rows: list[tuple[str, str]], expected: str) -> None:
    with pytest.raises(BudgetFileError) as refused:
        ends(rows)
    assert expected in str(refused.value)


def _fr_hes_with_time_column(tmp_path: Path, name: str, stamp: Callable[[datetime], str]) -> Path:
    """FR-Hes 2016 (TIMESTAMP_END as YYYYMMDDHHMM) with its time column rewritten as `name`, each end given to
    `stamp`."""
    lines = gzip.decompress(FR_HES.read_bytes()).decode().splitlines()
    header = lines[0].split(",")
    i = header.index("TIMESTAMP_END")
    header[i] = name
    out = [",".join(header)]
    for line in lines[1:]:
        cells = line.split(",")
        cells[i] = stamp(datetime.strptime(cells[i], "%Y%m%d%H%M"))
        out.append(",".join(cells))
    path = tmp_path / f"{name}.csv"
    path.write_text("\n".join(out) + "\n")
    return path


@pytest.mark.parametrize(("name", "stamp", "layout"), [
    ("TIMESTAMP_END", lambda end: f"{end:%Y-%m-%d %H:%M}", "TIMESTAMP_END (TIMESTAMP_START from the step)"),
    ("TIMESTAMP_END", lambda end: f"{end:%Y-%m-%dT%H:%M:00}", "TIMESTAMP_END (TIMESTAMP_START from the step)"),
    ("TIMESTAMP_MIDDLE", lambda end: f"{end - timedelta(minutes=15):%Y-%m-%d %H:%M:%S}",
     "TIMESTAMP_MIDDLE (the period's middle)"),
])
def test_iso_stamps_and_the_periods_middle_give_the_records_of_the_original(
        tmp_path: Path, name: str, stamp: Callable[[datetime], str], layout: str) -> None:
    original = read_budget_csv(FR_HES)
    rewritten = read_budget_csv(_fr_hes_with_time_column(tmp_path, name, stamp))
    assert rewritten.stamps == original.stamps
    np.testing.assert_array_equal(rewritten.time_start_s, original.time_start_s)
    np.testing.assert_array_equal(rewritten.columns["NEE"], original.columns["NEE"])
    assert f"record times from {layout}" in rewritten.notes


def test_an_iso_stamp_that_is_no_time_is_refused_as_written(tmp_path: Path) -> None:
    path = _fr_hes_with_time_column(tmp_path, "TIMESTAMP_END",
                                    lambda end: "2016-13-01 00:30" if end.day == 2 else f"{end:%Y%m%d%H%M}")
    with pytest.raises(BudgetFileError, match=r"TIMESTAMP_END '2016-13-01 00:30' is not a time stamp"):
        read_budget_csv(path)
