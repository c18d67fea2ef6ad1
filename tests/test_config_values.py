"""Every config the project loads refuses duplicate YAML keys, NaN and infinite numbers, and durations that are
not positive: walked over every config model (station, central, every registered driver, flux settings), so a new
key is covered the day it is added."""

from __future__ import annotations

import math
import typing
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from types import UnionType
from typing import Any

import pydantic
import pytest

from gateway.central import config as central_config
from gateway.configfile import ConfigError
from gateway.driver_api import DRIVER_ENTRY_POINT_GROUP, SensorConfig, StreamConfig
from gateway.edge import config as station_config
from gateway.flux.ec.settings import ProcessingSettings, SiteMetadata
from gateway.flux.files import load_settings

ROOTS: list[type[pydantic.BaseModel]] = [
    station_config.StationConfigBase, SensorConfig, StreamConfig, central_config.CentralConfig, ProcessingSettings,
    SiteMetadata, *(entry.load().Config for entry in entry_points(group=DRIVER_ENTRY_POINT_GROUP)),
]
DURATION_SUFFIXES = ("_s", "_ms")
# durations whose names do not say so by a suffix (minutes, or the flux engine's EddyPro key names)
DURATIONS = {"averaging_min", "avrg_len", "timeconst", "ru_tlag_max", "file_duration"}


def _is_duration(name: str) -> bool:
    return name.endswith(DURATION_SUFFIXES) or name in DURATIONS


def _models_in(annotation: Any) -> Iterator[type[pydantic.BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        yield annotation
    for argument in typing.get_args(annotation):
        yield from _models_in(argument)


def _is_float(annotation: Any) -> bool:
    if annotation is float:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, UnionType, typing.Annotated):
        return any(_is_float(a) for a in typing.get_args(annotation))
    return False


def _fields() -> list[Any]:
    seen: set[type[pydantic.BaseModel]] = set()
    found: dict[tuple[type[pydantic.BaseModel], str], Any] = {}
    todo = list(ROOTS)
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, info in model.model_fields.items():
            todo.extend(_models_in(info.annotation))
            if _is_float(info.annotation) or (_is_duration(name) and info.annotation is int):
                found[(model, name)] = info
    return [pytest.param(model, name, id=f"{model.__module__}.{model.__name__}.{name}")
            for (model, name) in sorted(found, key=lambda k: (k[0].__module__, k[0].__name__, k[1]))]


FIELDS = _fields()


def _assign(model: type[pydantic.BaseModel], name: str, value: object) -> None:
    model.__pydantic_validator__.validate_assignment(model.model_construct(), name, value)


def test_the_walk_finds_the_keys_it_is_meant_to_cover() -> None:
    names = {param.id for param in FIELDS}
    assert {
        "gateway.driver_api.base.SensorConfig.interval_s", "gateway.edge.config.FluxConfig.averaging_min",
        "gateway.central.config.StorageSettings.timeout_s", "drivers.gmp252.driver.GMP252Config.timeout_s",
        "firmware_bridge.driver.Sdi12Sensor.max_wait_s", "gateway.flux.ec.settings.ProcessingSettings.avrg_len",
    } <= names


FLOATS = [p for p in FIELDS if _is_float(p.values[0].model_fields[p.values[1]].annotation)]


@pytest.mark.parametrize(("model", "name"), FLOATS)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_no_number_in_a_config_may_be_nan_or_infinite(model: type[pydantic.BaseModel], name: str,
                                                       bad: float) -> None:
    with pytest.raises(pydantic.ValidationError):
        _assign(model, name, bad)


@pytest.mark.parametrize(("model", "name"), [p for p in FIELDS if _is_duration(str(p.values[1]))])
@pytest.mark.parametrize("bad", [0, -1, -0.5])
def test_no_duration_in_a_config_may_be_zero_or_negative(model: type[pydantic.BaseModel], name: str,
                                                         bad: float) -> None:
    with pytest.raises(pydantic.ValidationError):
        _assign(model, name, bad)


def test_central_config_refuses_a_duplicate_key(tmp_path: Path) -> None:
    path = tmp_path / "central.yaml"
    path.write_text("storage:\n  kind: sqlite\n  path: ./a.sqlite\n  kind: influxdb\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"central\.yaml: duplicate key at line 4.*'kind' appears twice"):
        central_config.load_central_config(path)


def test_flux_settings_refuse_a_duplicate_key(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("despike: true\ndespike: false\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"settings\.yaml: duplicate key at line 2.*'despike' appears twice"):
        load_settings(path)
