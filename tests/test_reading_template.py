"""`ReadingTemplate` (gateway/model.py) makes the readings `Reading(...)` makes: the same instance, fields set and
JSON for what it builds itself, the model's own conversion or error for everything else."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pydantic
import pytest

from gateway.model import QualityFlag, Reading, ReadingTemplate, TimeSource

FIXED: dict[str, Any] = {"station": "st-1", "sensor": "co2_1", "variable": "CO2_1_1_1", "unit": "umol mol-1",
                         "time_source": TimeSource.GATEWAY}
NOW = datetime(2026, 12, 5, 23, 40, 1, 123456, tzinfo=UTC)


def both(**changing: Any) -> tuple[Any, Any]:
    """What the template gives and what the model gives (the instance, or the ValidationError's errors)."""
    results: list[Any] = []
    for make in (lambda: ReadingTemplate(**FIXED).reading(**changing), lambda: Reading(**FIXED, **changing)):
        try:
            results.append(make())
        except pydantic.ValidationError as exc:
            results.append([{k: error[k] for k in ("type", "loc", "msg", "input")} for error in exc.errors()])
    return results[0], results[1]


def assert_same_reading(made: Any, validated: Any) -> None:
    assert isinstance(made, Reading) and isinstance(validated, Reading)
    assert made == validated
    assert list(made.__dict__) == list(validated.__dict__)  # the field order, which the JSON follows
    assert made.model_fields_set == validated.model_fields_set
    assert made.model_dump_json() == validated.model_dump_json()
    assert made.model_dump() == validated.model_dump()
    assert repr(made) == repr(validated)
    assert hash(made.time) == hash(validated.time) and made.time.tzinfo is validated.time.tzinfo


@pytest.mark.parametrize(("value", "qc"), [
    *itertools.product([412.5, -0.0, 0.0, 1e30, -273.15, 5e-324],
                       [QualityFlag.GOOD, QualityFlag.SUSPECT, QualityFlag.BAD]),
    (None, QualityFlag.MISSING),
])
@pytest.mark.parametrize("clock_synced", [True, False])
@pytest.mark.parametrize("qc_reason", [None, "", "CO2 status 2 (reading unreliable (start-up))", "é" * 200])
def test_a_reading_the_template_builds_is_the_one_the_model_validates(
        value: float | None, qc: QualityFlag, clock_synced: bool, qc_reason: str | None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    changing: dict[str, Any] = {"value": value, "time": NOW, "clock_synced": clock_synced, "qc": qc,
                                "qc_reason": qc_reason}
    validated = Reading(**FIXED, **changing)
    template = ReadingTemplate(**FIXED)

    def validator_run(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the template ran the model's validator for values it checks itself")

    monkeypatch.setattr(Reading, "__init__", validator_run)
    assert_same_reading(template.reading(**changing), validated)


@pytest.mark.parametrize("changing", [
    {"value": 412},  # an int: the model makes it a float
    {"value": 412.5, "time": NOW.astimezone(timezone(timedelta(hours=1)))},  # another zone: the model makes it UTC
    {"value": 412.5, "qc": 0},  # the flag as its number
    {"value": 412.5, "time": "2026-12-05T23:40:01.123456Z"},  # the wire's text
], ids=["int value", "other zone", "qc number", "time text"])
def test_values_the_model_converts_are_converted_as_the_model_does(changing: dict[str, Any]) -> None:
    fields = {"time": NOW, "clock_synced": True, "qc": QualityFlag.GOOD, "qc_reason": None, **changing}
    made, validated = both(**fields)
    assert_same_reading(made, validated)


@pytest.mark.parametrize("changing", [
    {"value": math.nan}, {"value": math.inf}, {"value": -math.inf},
    {"value": None, "qc": QualityFlag.GOOD},  # a gap must say so
    {"value": 1.0, "qc": QualityFlag.MISSING},  # MISSING never carries a number
    {"value": math.nan, "qc": QualityFlag.MISSING},
    {"qc_reason": "x" * 201},
    {"time": NOW.replace(tzinfo=None)},  # no zone
    {"value": "412.5"}, {"value": True},  # not JSON numbers
    {"clock_synced": 1}, {"clock_synced": None},  # a strict bool
    {"qc": 7},
    {"qc_reason": 5},
], ids=lambda changing: repr(changing)[:40])
def test_what_the_model_refuses_the_template_refuses_with_the_models_errors(changing: dict[str, Any]) -> None:
    fields = {"value": 412.5, "time": NOW, "clock_synced": True, "qc": QualityFlag.GOOD, "qc_reason": None,
              **changing}
    made, validated = both(**fields)
    assert isinstance(validated, list), "the case must be one the model refuses"
    assert made == validated


@pytest.mark.parametrize(("key", "bad"), [("station", "st/1"), ("sensor", ""), ("variable", "CO2 1"),
                                          ("unit", "u" * 33), ("time_source", "ntp")])
def test_a_template_with_a_fixed_field_the_model_refuses_is_refused_when_made(key: str, bad: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=key):
        ReadingTemplate(**{**FIXED, key: bad})
