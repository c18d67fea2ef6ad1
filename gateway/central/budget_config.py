"""The `budget:` section of central.yaml: when and how the central service computes stations' carbon budgets.

Documented key by key in `sample-central.yaml`; validated with the rest of the file before any I/O.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.configfile import refuse_bool_for_number
from gateway.contract import SETTINGS_HASH_PATTERN
from gateway.model import Identifier

MET_VARIABLES = ("SW_IN", "TA", "VPD", "RH")
_DURATION_RE = re.compile(r"^([1-9][0-9]{0,8})(s|m|h|d)$")
_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_SENSOR_CHOICE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}(/[A-Z][A-Z0-9_]{0,63})?$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")
    _refuse_bool_for_number = field_validator("*", mode="before")(refuse_bool_for_number)


class StationBudgetSettings(_Section):
    """Facts and choices of one station's budget (or the defaults every station starts from)."""

    latitude: Annotated[float, Field(ge=-90, le=90)] | None = None
    longitude: Annotated[float, Field(ge=-180, le=180)] | None = None
    utc_offset_h: float = Field(default=0.0, ge=-12, le=14, description="hours the station's standard time is "
                                                                          "ahead of UTC")
    site: Identifier | None = None
    flux_settings_hash: str | None = Field(default=None, pattern=SETTINGS_HASH_PATTERN)
    storage_height_m: float | None = Field(default=None, gt=0, le=500)
    max_flux_flag: int = Field(default=1, ge=0, le=2)
    min_coverage: float = Field(default=0.5, ge=0, le=1)
    sensors: dict[str, str] = Field(default_factory=dict)

    @field_validator("utc_offset_h")
    @classmethod
    def _whole_half_hours(cls, value: float) -> float:
        if not math.isclose(value * 2, round(value * 2)):
            raise ValueError("must be a whole number of half hours (e.g. 1, -5, 5.5): the budget's half hours are "
                             "those of the station's clock")
        return value

    @field_validator("sensors")
    @classmethod
    def _known_choices(cls, value: dict[str, str]) -> dict[str, str]:
        for variable, choice in value.items():
            if variable not in MET_VARIABLES:
                raise ValueError(f"{variable}: the budget chooses sensors for {', '.join(MET_VARIABLES)} only")
            if not _SENSOR_CHOICE_RE.match(choice):
                raise ValueError(f"{variable}: {choice!r} is not a sensor name or sensor/VARIABLE, e.g. ta_rh or "
                                 "ta_rh/TA_1_1_1")
        return value


class BudgetJobConfig(_Section):
    every: str | None = Field(default=None, description="how often the service recomputes, e.g. 1d; null: never "
                                                         "(the command still works)")
    stations: Literal["all"] | list[Identifier] = "all"
    ustar: str = "auto"
    bootstrap: int = Field(default=100, ge=100, le=1000)
    seed: int = 0
    partition: bool = True
    despike_z: float | None = Field(default=None, ge=0.5, le=20, description="remove NEE spikes beyond this many "
                                    "MAD/0.6745 of the second differences (Papale et al. 2006: 4-7); null: none")
    previous_year_days: int = Field(default=31, ge=0, le=366)
    defaults: StationBudgetSettings = Field(default_factory=StationBudgetSettings)
    per_station: dict[Identifier, StationBudgetSettings] = Field(default_factory=dict)

    @field_validator("every")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None and _DURATION_RE.match(value) is None:
            raise ValueError(f"{value!r} is not a duration; use a whole number followed by s, m, h or d, e.g. 1d")
        return value

    @field_validator("ustar")
    @classmethod
    def _ustar(cls, value: str) -> str:
        if value in ("auto", "none"):
            return value
        try:
            threshold = float(value)
        except ValueError:
            raise ValueError(f"{value!r}: give auto, none or a threshold in m s-1 (e.g. 0.2)") from None
        if not 0.0 <= threshold < 3.0:
            raise ValueError(f"{value!r}: a u* threshold is in m s-1, between 0 and 3")
        return value

    @model_validator(mode="after")
    def _scheduled_stations_have_coordinates(self) -> BudgetJobConfig:
        if self.every is None:
            return self
        names = list(self.per_station) if self.stations == "all" else self.stations
        if self.stations == "all" and not self._located(self.defaults):
            raise ValueError("stations: all needs budget.defaults.latitude and budget.defaults.longitude (or list "
                             "the stations and give each its coordinates under budget.per_station)")
        for name in names:
            if not self._located(self.station_settings(name)):
                raise ValueError(f"station {name} has no coordinates: set budget.per_station.{name}.latitude and "
                                 ".longitude (or budget.defaults)")
        return self

    @staticmethod
    def _located(settings: StationBudgetSettings) -> bool:
        return settings.latitude is not None and settings.longitude is not None

    def interval(self) -> timedelta | None:
        if self.every is None:
            return None
        match = _DURATION_RE.match(self.every)
        assert match is not None  # validated
        return timedelta(**{_DURATION_UNITS[match.group(2)]: int(match.group(1))})

    def ustar_mode(self) -> str | float:
        return self.ustar if self.ustar in ("auto", "none") else float(self.ustar)

    def station_settings(self, station: str) -> StationBudgetSettings:
        """The defaults with the keys given under per_station.<station> laid over them (sensors merged)."""
        own = self.per_station.get(station)
        if own is None:
            return self.defaults
        merged = self.defaults.model_dump()
        merged.update(own.model_dump(exclude_unset=True))
        merged["sensors"] = {**self.defaults.sensors, **own.sensors}
        return StationBudgetSettings.model_validate(merged)
