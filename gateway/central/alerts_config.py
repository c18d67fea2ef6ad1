"""The `alerts:` section of central.yaml: the alert rules the central service evaluates, as data.

Every rule has defaults that suit a station reporting its health every minute; `sample-central.yaml` documents every
key and docs/operations.md ("Alert rules") says what each rule looks at. Validated with the rest of the file before
any I/O.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.configfile import refuse_bool_for_number

RuleName = Literal["station_silent", "buffer_growing", "clock_unsynchronised", "sensor_stuck", "sensor_out_of_range",
                   "flag2_share", "signal_strength_low", "disk_nearly_full", "buffer_unwritable"]
RULE_NAMES: tuple[RuleName, ...] = ("station_silent", "buffer_growing", "clock_unsynchronised", "sensor_stuck",
                                    "sensor_out_of_range", "flag2_share", "signal_strength_low", "disk_nearly_full",
                                    "buffer_unwritable")

#: Plausible ranges by variable base name (the name without its AmeriFlux position qualifier _<H>_<V>_<R>), in the
#: units of the variable registry (gateway/variables.py; a series in another unit is not judged): wide enough for
#: any forest site, narrow enough that a reading outside is a broken sensor or a wrong register map, not weather.
DEFAULT_RANGES: dict[str, tuple[float, float]] = {
    "CO2": (150.0, 100_000.0),  # umol mol-1: ambient air ~420, soil air up to a few percent
    "TA": (-50.0, 60.0),  # degC
    "TS": (-40.0, 70.0),  # degC
    "T_PROBE": (-40.0, 80.0),  # degC, a probe's own electronics
    "RH": (0.0, 105.0),  # %, a few percent above 100 occur in fog with real sensors
    "VPD": (0.0, 90.0),  # hPa
    "SWC": (0.0, 100.0),  # %
    "SW_IN": (-20.0, 1500.0),  # W m-2, night offsets of a thermopile are slightly negative
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    _refuse_bool_for_number = field_validator("*", mode="before")(refuse_bool_for_number)


class _Rule(_Section):
    enabled: bool = True


class StationSilentRule(_Rule):
    after_s: float = Field(default=600.0, gt=0, le=30 * 86400,
                           description="fires when a station's newest health report is older than this")


class BufferGrowingRule(_Rule):
    window_s: float = Field(default=1800.0, gt=0, le=7 * 86400,
                            description="compares each outbox's backlog now with the one this long ago")
    min_oldest_age_s: float = Field(default=900.0, gt=0, le=30 * 86400,
                                    description="and fires only while its oldest item is older than this")


class ClockUnsynchronisedRule(_Rule):
    max_offset_s: float = Field(default=1.0, gt=0, le=86400,
                                description="fires when the kernel says unsynchronised or |offset| exceeds this")


class SensorStuckRule(_Rule):
    window_s: float = Field(default=3600.0, gt=0, le=7 * 86400, description="readings looked at")
    min_count: int = Field(default=10, ge=2, le=1_000_000, description="at least this many good readings in the window")
    max_spread: float = Field(default=0.0, ge=0, description="fires when max - min of the window is at most this")
    ignore: list[str] = Field(
        default_factory=lambda: [r"_N$", r"DIAG", r"^SW_IN", r"^PPFD_IN", r"^P$", r"^P_", r"^LID_CLOSED", r"_QC$",
                                 r"FLAG"],
        description="regular expressions of variable names that may stay constant (counts, instrument "
                    "diagnostics, radiation at night, rain, states such as a chamber's lid, quality flags)")
    slow: dict[str, float] = Field(
        default_factory=lambda: {r"^TS(_|$)": 172800.0, r"^SWC(_|$)": 172800.0, r"^EC_SOIL(_|$)": 172800.0},
        description="variables that can stay within their probe's resolution for hours (soil temperature at "
                    "depth, soil water in a dry spell): regular expression -> their own window_s")
    slow_every_s: float = Field(default=3600.0, gt=0, le=86400,
                                description="the slow variables' long windows are looked at this often")

    @field_validator("ignore")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from None
        return value

    @field_validator("slow")
    @classmethod
    def _slow_patterns(cls, value: dict[str, float]) -> dict[str, float]:
        cls._patterns(list(value))
        for pattern, window in value.items():
            if not 0 < window <= 7 * 86400:
                raise ValueError(f"{pattern!r}: window {window} s must be > 0 and at most 7 days (604800 s)")
        return value


Range = Annotated[list[float], Field(min_length=2, max_length=2)]


class SensorOutOfRangeRule(_Rule):
    window_s: float = Field(default=600.0, gt=0, le=7 * 86400, description="the mean of the good readings over it")
    ranges: dict[str, Range] = Field(
        default_factory=lambda: {k: [lo, hi] for k, (lo, hi) in DEFAULT_RANGES.items()},
        description="variable base name -> [low, high]; fires when the window's mean lies outside")

    @field_validator("ranges")
    @classmethod
    def _ordered(cls, value: dict[str, list[float]]) -> dict[str, list[float]]:
        for name, (low, high) in value.items():
            if not low < high:
                raise ValueError(f"{name}: [{low}, {high}] is not a range; write [low, high] with low < high")
        return value


class Flag2ShareRule(_Rule):
    window_s: float = Field(default=86400.0, gt=0, le=366 * 86400, description="flux periods ending in it")
    flags: list[str] = Field(default_factory=lambda: ["FC_SSITC_TEST"],
                             description="quality flag variables (Mauder and Foken 2004: 0, 1, 2)")
    max_share: float = Field(default=0.5, ge=0, le=1, description="fires when more than this share is flag 2")
    min_periods: int = Field(default=12, ge=1, le=100_000, description="periods with a flag needed to judge")


class SignalStrengthLowRule(_Rule):
    variables: list[str] = Field(default_factory=lambda: ["CO2SS", "H2OSS"],
                                 description="signal strength variables of gas analyzers (unit % or 1)")
    window_s: float = Field(default=1800.0, gt=0, le=7 * 86400, description="the mean over it")
    min_percent: float = Field(default=70.0, ge=0, le=100, description="fires when the mean is below this")


class DiskNearlyFullRule(_Rule):
    min_free_fraction: float = Field(default=0.1, ge=0, le=1, description="fires below this share free")
    min_free_bytes: int = Field(default=1_000_000_000, ge=0, description="or below this many bytes free")


class BufferUnwritableRule(_Rule):
    window_s: float = Field(default=3600.0, gt=0, le=30 * 86400,
                            description="fires while the station's disk buffer refuses writes, and for this long "
                                        "after a report shows a failed write")


class AlertsConfig(_Section):
    every_s: float = Field(default=60.0, gt=0, le=86400, description="how often `central serve` evaluates the rules")
    station_silent: StationSilentRule = Field(default_factory=StationSilentRule)
    buffer_growing: BufferGrowingRule = Field(default_factory=BufferGrowingRule)
    clock_unsynchronised: ClockUnsynchronisedRule = Field(default_factory=ClockUnsynchronisedRule)
    sensor_stuck: SensorStuckRule = Field(default_factory=SensorStuckRule)
    sensor_out_of_range: SensorOutOfRangeRule = Field(default_factory=SensorOutOfRangeRule)
    flag2_share: Flag2ShareRule = Field(default_factory=Flag2ShareRule)
    signal_strength_low: SignalStrengthLowRule = Field(default_factory=SignalStrengthLowRule)
    disk_nearly_full: DiskNearlyFullRule = Field(default_factory=DiskNearlyFullRule)
    buffer_unwritable: BufferUnwritableRule = Field(default_factory=BufferUnwritableRule)
    enabled: bool = Field(default=True, description="false: no rule is evaluated")

    def rule(self, name: RuleName) -> _Rule:
        rule: _Rule = getattr(self, name)
        return rule
