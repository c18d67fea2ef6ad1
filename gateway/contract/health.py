"""The health channel: `StationHealth`, one report of a station's own state, sent every `telemetry.interval_s`
(station.yaml) on `sinkwatch/v1/<site>/<station>/health`. Mirrored as JSON Schema in `docs/asyncapi.yaml`.

A report travels the station's one delivery path like every other channel (gateway/edge/delivery.py): kept in a
durable outbox under its `seq` until the central service's receipt says its store holds it. It is a snapshot, so
every field describes the station at `time` (the node's clock when the report was taken); counters (`errors`,
`reports_dropped`) count since the daemon started (`uptime_s`), so a drop in a counter together with a small
`uptime_s` is a restart, not a negative rate.

    {"schema_version": 1, "site": "hainich", "station": "plot-07", "seq": 88, "time": "2026-11-25T10:00:00.000000Z",
     "interval_s": 60.0, "daemon_version": "0.1.0", "uptime_s": 86400.0, "clock_synced": true,
     "clock_offset_s": 0.000012, "disk_free_bytes": 2.1e10, ..., "buffers": [{"channel": "readings", ...}],
     "sensors": [{"name": "gmp252-a", "kind": "polled", "state": "available", "errors": {"timeout": 2}, ...}]}

A value the node cannot measure (no thermal zone, no supply-voltage source, not Linux) is `null`, never a guess.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_serializer

from gateway.contract.receipts import Channel
from gateway.model import Identifier, UtcDatetime, WireBool, WireFloat, WireInt, WireModel, format_time

HEALTH_SCHEMA_VERSION: Literal[1] = 1

#: What a sensor's `errors` are keyed by: a driver's `FailureKind` value (`timeout`, `crc`, `no_port`, ...), a
#: stream's bad-record reason (`checksum`, `garbage`, ...), `driver_bug` or `disconnect`.
ERROR_KIND_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
ErrorKind = Annotated[str, StringConstraints(pattern=ERROR_KIND_PATTERN)]
VariableName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{1,64}$")]

SensorKind = Literal["polled", "stream"]
BacklogUnit = Literal["readings", "records", "files", "reports", "results"]

NonNegative = Annotated[WireFloat, Field(ge=0)]
Bytes = Annotated[WireInt, Field(ge=0)]


class ChannelBacklog(WireModel):
    """One outbox of the station: what waits for the central service's receipt on one channel."""

    channel: Channel
    unit: BacklogUnit = Field(description="what `pending` counts")
    pending: Annotated[WireInt, Field(ge=0)] = Field(description="units in the outbox, sent or not, without receipt")
    oldest_age_s: NonNegative | None = Field(
        default=None, description="age of the oldest unit in the outbox (its own time stamp); null when empty")
    refusing: str | None = Field(default=None, max_length=200,
                                 description="the broker's current refusal of this channel (e.g. Not authorized)")


class SensorHealth(WireModel):
    """One configured sensor as the daemon sees it."""

    name: Identifier
    driver: str = Field(min_length=1, max_length=64)
    kind: SensorKind
    state: str = Field(min_length=1, max_length=40, description="available, unavailable, waiting for the first "
                       "poll (polled); starting, connected, silent, disconnected (stream)")
    available: WireBool | None = Field(description="null until the first poll or connection")
    availability: Annotated[WireFloat, Field(ge=0, le=1)] | None = Field(
        default=None, description="share of polls answered (polled) or of the configured output rate received "
                                  "(stream) since the previous report; null when nothing was due")
    errors: dict[ErrorKind, Annotated[WireInt, Field(ge=0)]] = Field(
        default_factory=dict, description="failed polls or dropped records by kind, since the daemon started")
    last_error: str | None = Field(default=None, max_length=200)
    variables: list[VariableName] = Field(default_factory=list, max_length=500,
                                          description="the variables this sensor has reported since the start")


class StationHealth(WireModel):
    """One MQTT message on `sinkwatch/v1/<site>/<station>/health` (module doc)."""

    schema_version: Literal[1] = HEALTH_SCHEMA_VERSION
    site: Identifier
    station: Identifier
    seq: Annotated[WireInt, Field(ge=0)] | None = Field(
        default=None, description="the station's delivery sequence number on the health channel")
    time: UtcDatetime = Field(description="when the report was taken (the node's clock)")
    interval_s: Annotated[WireFloat, Field(gt=0)] = Field(description="the configured reporting interval")
    daemon_version: str = Field(min_length=1, max_length=64)
    uptime_s: NonNegative = Field(description="seconds since the daemon started")
    host_uptime_s: NonNegative | None = Field(default=None, description="seconds since the node booted")
    clock_synced: WireBool = Field(description="the kernel's clock is disciplined by NTP/PPS (adjtimex)")
    clock_offset_s: WireFloat | None = Field(
        default=None, description="the offset the kernel is still correcting (adjtimex), seconds; + = node ahead")
    clock_max_error_s: NonNegative | None = Field(default=None, description="the kernel's maximum error estimate")
    disk_free_bytes: Bytes | None = Field(default=None, description="free space where the buffer lives")
    disk_total_bytes: Bytes | None = None
    cpu_temperature_c: WireFloat | None = Field(default=None, description="the SoC/CPU thermal zone, degC")
    load_1m: NonNegative | None = None
    load_5m: NonNegative | None = None
    load_15m: NonNegative | None = None
    cpu_count: Annotated[WireInt, Field(ge=1)] | None = None
    daemon_cpu_share: NonNegative | None = Field(
        default=None, description="CPU time the daemon used since the previous report over the wall time, of one "
                                  "core (0.01 = 1 %)")
    memory_total_bytes: Bytes | None = None
    memory_available_bytes: Bytes | None = None
    daemon_rss_bytes: Bytes | None = None
    supply_voltage_v: WireFloat | None = Field(
        default=None, description="the station's supply voltage where a configured sensor measures it")
    reports_dropped: Annotated[WireInt, Field(ge=0)] = Field(
        default=0, description="older reports this station dropped from its bounded health outbox since the start")
    buffer_write_errors: Annotated[WireInt, Field(ge=0)] = Field(
        default=0, description="writes of the station's disk buffer that failed since the daemon started: a full, "
                               "read-only or failing disk (the readings of a failed write are held in memory)")
    readings_held_in_memory: Annotated[WireInt, Field(ge=0)] = Field(
        default=0, description="readings the disk buffer refused, held in memory when the report was taken until "
                               "the disk takes them again (lost if the daemon stops first); 0 while it writes")
    buffers: list[ChannelBacklog] = Field(default_factory=list, max_length=16)
    sensors: list[SensorHealth] = Field(default_factory=list, max_length=256)

    @field_serializer("time")
    def _serialize_time(self, value: datetime) -> str:
        return format_time(value)

    def backlog(self, channel: str) -> ChannelBacklog | None:
        return next((b for b in self.buffers if b.channel == channel), None)


def encode_health(report: StationHealth) -> bytes:
    return report.model_dump_json().encode()
