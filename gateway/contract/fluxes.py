"""Flux results on the wire: `FluxRecord`, one averaging period of one station, and its MQTT topic.

A station that computes fluxes on site publishes one record per period on `sinkwatch/v1/<site>/<station>/fluxes`
(QoS 1, not retained); the central service stores it (`Store.write_fluxes`) exactly like a result of
`sinkwatch flux recompute`. The JSON Schema mirror is `components.schemas.FluxRecord` in `docs/asyncapi.yaml`.

    record = FluxRecord.from_result(result, site="hainich", station="plot-07")   # from the engine's FluxResult
    client.publish(fluxes_topic(site, station), encode_flux_record(record), qos=1)
    result = flux_result_of(record)          # back to a FluxResult: gateway.flux.records (above the contract)

Conventions (docs/flux-ec.md):

- `start`/`end` bound the averaging period in UTC; `end` labels it (EddyPro, AmeriFlux TIMESTAMP_END).
- `values` maps FLUXNET/AmeriFlux names (`FC`, `H`, `LE`, `TAU`, `USTAR`, `WS`, `WD`, `ZL`, `*_SSITC_TEST`, ...) and
  sinkwatch's diagnostic names to numbers in the units of `gateway.flux.ec.result.OUTPUT_VARIABLES`; `null` where
  the engine attempted a variable and could not compute it. Flags and counts (:func:`is_integer_variable`) are
  integers.
- A result set is identified by (`engine_version`, `settings_hash`): results of different settings or engine
  versions for the same period coexist, so they can be compared.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_serializer, model_validator

from gateway.model import Identifier, UtcDatetime, format_time

FLUX_SCHEMA_VERSION: Literal[1] = 1

VARIABLE_NAME_PATTERN = r"^[A-Z][A-Z0-9_]{0,63}$"
SETTINGS_HASH_PATTERN = r"^[0-9a-f]{8,64}$"
_VARIABLE_NAME_RE = re.compile(VARIABLE_NAME_PATTERN)

# Flags, counts and yes/no diagnostics: integers on the wire and in storage (InfluxDB integer fields).
_INTEGER_SUFFIXES = ("_SSITC_TEST", "_NUM_SPIKES", "_TLAG_DEFAULT")
_INTEGER_NAMES = frozenset({"N_RECORDS", "N_USED"})


def is_integer_variable(name: str) -> bool:
    """True for quality flags (`*_SSITC_TEST`, the Vickers & Mahrt 1997 flags `*VM97_*`), spike counts,
    default-lag markers and record counts."""
    return name in _INTEGER_NAMES or name.endswith(_INTEGER_SUFFIXES) or "VM97_" in name


class FluxResultLike(Protocol):
    """What `FluxRecord.from_result` reads of the engine's `gateway.flux.ec.result.FluxResult`: the contract sits
    below the science, so it names the fields, not the class."""

    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime: ...
    @property
    def values(self) -> Mapping[str, float | None]: ...
    @property
    def status(self) -> Literal["ok", "partial", "failed"]: ...
    @property
    def reasons(self) -> Sequence[str]: ...
    @property
    def engine_version(self) -> str: ...
    @property
    def settings_hash(self) -> str: ...


# Strict: a number on the wire is a JSON number, never a string that looks like one (the schema says the same).
FiniteFloat = Annotated[float, Field(allow_inf_nan=False, strict=True)]
WholeNumber = Annotated[int, Field(strict=True)]


class FluxRecord(BaseModel):
    """One MQTT message on `sinkwatch/v1/<site>/<station>/fluxes`: one averaging period's flux result."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = FLUX_SCHEMA_VERSION
    site: Identifier
    station: Identifier
    start: UtcDatetime = Field(description="period start, UTC")
    end: UtcDatetime = Field(description="period end, UTC; labels the period (AmeriFlux TIMESTAMP_END)")
    status: Literal["ok", "partial", "failed"]
    reasons: list[Annotated[str, Field(max_length=500)]] = Field(default_factory=list, max_length=100)
    engine_version: str = Field(min_length=1, max_length=64, pattern=r"^[ -~]+$")
    settings_hash: str = Field(pattern=SETTINGS_HASH_PATTERN)
    values: dict[str, WholeNumber | FiniteFloat | None] = Field(
        description="FLUXNET/AmeriFlux name -> value (units: docs/flux-ec.md); null where not computed")
    seq: int | None = Field(default=None, ge=0, description="the station's delivery sequence number on the fluxes "
                            "channel, named by the central service's receipt; null when not sent by a station")

    @model_validator(mode="after")
    def _check(self) -> FluxRecord:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        bad = sorted(name for name in self.values if not _VARIABLE_NAME_RE.match(name))
        if bad:
            raise ValueError(f"variable names must be upper-case FLUXNET-style names: {bad[:3]}")
        fractional = sorted(name for name, value in self.values.items()
                            if value is not None and is_integer_variable(name) and value != int(value))
        if fractional:
            raise ValueError(f"flags and counts must be whole numbers: {fractional[:3]}")
        return self

    @field_serializer("start", "end")
    def _serialize_time(self, value: datetime) -> str:
        return format_time(value)

    @classmethod
    def from_result(cls, result: FluxResultLike, *, site: str, station: str) -> FluxRecord:
        """The wire form of an engine result: NaN becomes null, flags and counts become integers."""
        values: dict[str, int | float | None] = {}
        for name, value in result.values.items():
            if value is None or not math.isfinite(value):
                values[name] = None
            elif is_integer_variable(name):
                values[name] = int(value)
            else:
                values[name] = float(value)
        return cls(site=site, station=station, start=result.start, end=result.end, status=result.status,
                   reasons=[r[:500] for r in result.reasons[:100]], engine_version=result.engine_version,
                   settings_hash=result.settings_hash, values=values)


def encode_flux_record(record: FluxRecord) -> bytes:
    """The MQTT payload of a record (UTF-8 JSON, no NaN), ready for `client.publish(topic, payload, qos=1)`."""
    return record.model_dump_json().encode("utf-8")
