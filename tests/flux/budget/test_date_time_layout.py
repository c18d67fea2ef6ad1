"""The `date` + `time` layout of the budget's input (ICOS teaching/PI files): the three ways of writing a day, the
day's end written 24:00, and the refusals that name what to write."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.flux.budget.files import BudgetFileError, _date_time_ends

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
