"""The readings and status channels: `ReadingBatch` (one MQTT message of readings) and `StationStatus` (retained;
its offline form is the station's last will). Mirrored as JSON Schema in `docs/asyncapi.yaml`."""

from __future__ import annotations

import functools
import operator
from datetime import datetime
from enum import StrEnum
from itertools import repeat
from typing import Literal

from pydantic import Field, ValidationError, field_serializer
from pydantic_core import SchemaValidator, core_schema

from gateway.model import (
    Identifier,
    QualityFlag,
    Reading,
    UtcDatetime,
    WireInt,
    WireModel,
    format_time,
    native_schema,
)

SCHEMA_VERSION: Literal[1] = 1


class ReadingBatch(WireModel):
    """One MQTT message on `sinkwatch/v1/<site>/<station>/readings`."""

    schema_version: Literal[1] = SCHEMA_VERSION
    site: Identifier
    station: Identifier
    seq: WireInt = Field(ge=0, description="per-station batch sequence number; a redelivery repeats it")
    sent: UtcDatetime
    readings: list[Reading] = Field(min_length=1)

    @field_serializer("sent")
    def _serialize_sent(self, value: datetime) -> str:
        return format_time(value)


_VALUE = operator.attrgetter("value")
_QC = operator.attrgetter("qc")


@functools.cache
def _batch_fields_validator() -> SchemaValidator:
    """`ReadingBatch`'s fields in pydantic-core's own checks (`native_schema`), as a typed dict: a validator whose
    top level is the model class would run the class's own schema instead (pydantic-core 2.x), the nested readings
    run this one."""
    model = native_schema(ReadingBatch.__pydantic_core_schema__, drop=frozenset({"Reading._missing_iff_no_value"}))
    fields = model["schema"]["fields"]
    # a field with a default is left out when absent (not filled in), so the fields set are the model's
    return SchemaValidator(core_schema.typed_dict_schema(
        {name: (core_schema.typed_dict_field(field["schema"]["schema"], required=False)
                if field["schema"]["type"] == "default" else core_schema.typed_dict_field(field["schema"]))
         for name, field in fields.items()},
        extra_behavior="forbid"))


def validate_batch_json(payload: bytes | str) -> ReadingBatch:
    """`ReadingBatch.model_validate_json(payload)`, at about half its cost (the central service validates every
    reading it stores).

    pydantic-core checks the batch with its own constraints first (`gateway.model.native_schema`: no Python call
    per field, at most as lenient as the model); the model's cross-field rule of each reading
    (`gateway.model.value_matches_qc`) follows for all of them at once. Whatever that refuses (bad data, or
    something it is stricter about than the contract) is validated by the model itself, so the `ValidationError`,
    its texts and what is accepted are exactly the model's."""
    try:
        fields = _batch_fields_validator().validate_json(payload)
    except ValidationError:
        return ReadingBatch.model_validate_json(payload)
    readings = fields["readings"]
    # `value_matches_qc` of every reading, as two C loops: which values are null, which flags are MISSING
    if list(map(operator.is_, map(_VALUE, readings), repeat(None))) != \
            list(map(operator.eq, map(_QC, readings), repeat(QualityFlag.MISSING))):
        return ReadingBatch.model_validate_json(payload)
    return ReadingBatch.model_construct(set(fields), **fields)


class StationState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class StationStatus(WireModel):
    """Retained message on `sinkwatch/v1/<site>/<station>/status`; the broker publishes the offline form as
    the station's last will when its connection is lost."""

    schema_version: Literal[1] = SCHEMA_VERSION
    site: Identifier
    station: Identifier
    state: StationState
    since: UtcDatetime
    software_version: str | None = None
    reason: str | None = Field(default=None, max_length=200)

    @field_serializer("since")
    def _serialize_since(self, value: datetime) -> str:
        return format_time(value)
