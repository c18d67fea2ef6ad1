"""The readings and status channels: `ReadingBatch` (one MQTT message of readings) and `StationStatus` (retained;
its offline form is the station's last will). Mirrored as JSON Schema in `docs/asyncapi.yaml`."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field, field_serializer

from gateway.model import Identifier, Reading, UtcDatetime, WireInt, WireModel, format_time

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
