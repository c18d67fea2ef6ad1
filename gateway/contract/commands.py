"""The downlink of commands and the uplink of their results: `Command` (central service -> one station, on
`sinkwatch/v1/<site>/<station>/commands`) and `CommandResult` (station -> central service, on
`sinkwatch/v1/<site>/<station>/command_results`). Mirrored as JSON Schema in `docs/asyncapi.yaml`.

An operator asks the central service (HTTP API, `sinkwatch central station ...`) to push a new `station.yaml`, to
restart the daemon, to check every sensor or to report the station's clock. The central service gives the command
an `id`, signs it with its command key (Ed25519 over `Command.signed_bytes()`, the canonical JSON of every field but
`signature`) and publishes it at QoS 1, not retained, with a message expiry; the station's persistent session keeps
it while the station is offline, until `expires`.

The station answers every command it can read an `id` from with one or more `CommandResult`s: steps on the way
(`accepted`, `restarting`) and exactly one final outcome (`ok`, `rejected`, `rolled_back`, `failed`). Results
travel the station's one delivery path like readings (a durable outbox with a `seq`, deleted on the central
service's receipt), so an outcome reached while the uplink was down arrives afterwards.

    {"schema_version": 1, "id": "5f0c...", "site": "hainich", "station": "plot-07", "kind": "push_config",
     "issued": "2026-11-25T10:00:00.000000Z", "expires": "2026-11-25T11:00:00.000000Z", "issued_by": "ops-anna",
     "config": "site: hainich\\n...", "config_sha256": "9b1d...", "rollback_after_s": 120.0,
     "key_id": "3f2a9c0d1e4b5a6f", "signature": "MEUCIQ..."}
    {"schema_version": 1, "site": "hainich", "station": "plot-07", "seq": 12, "command_id": "5f0c...",
     "kind": "push_config", "status": "rolled_back", "time": "2026-11-25T10:02:03.000000Z",
     "message": "not healthy within 120 s of the restart: not connected to the broker (...); the previous config ...",
     "received": "2026-11-25T10:00:00.420000Z", "config_sha256": "77aa...", "checks": null, "clock": null}
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_serializer, model_validator

from gateway.model import Identifier, UtcDatetime, WireBool, WireFloat, WireInt, WireModel, format_time

COMMAND_SCHEMA_VERSION: Literal[1] = 1

CommandKind = Literal["push_config", "restart", "check", "clock_check"]
COMMAND_KINDS: tuple[CommandKind, ...] = ("push_config", "restart", "check", "clock_check")

#: Steps on the way, then exactly one final outcome per command.
ResultStatus = Literal["accepted", "restarting", "ok", "rejected", "rolled_back", "failed"]
FINAL_STATUSES: frozenset[str] = frozenset({"ok", "rejected", "rolled_back", "failed"})

MAX_CONFIG_CHARS = 256 * 1024  # a station.yaml is a few kB; this bounds what one command can make a station parse
MIN_ROLLBACK_S = 10.0
MAX_ROLLBACK_S = 3600.0
DEFAULT_ROLLBACK_S = 120.0

Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
KeyId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
Base64 = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]+={0,2}$", max_length=200)]


def config_digest(text: str) -> str:
    """The SHA-256 (hex) of a config's text as UTF-8: what `config_sha256` holds."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Command(WireModel):
    """One MQTT message on `sinkwatch/v1/<site>/<station>/commands` (central -> that station)."""

    schema_version: Literal[1] = COMMAND_SCHEMA_VERSION
    id: Identifier = Field(description="the command's id, unique; the station acts on an id once")
    site: Identifier
    station: Identifier
    kind: CommandKind
    issued: UtcDatetime = Field(description="when the central service issued it (its clock)")
    expires: UtcDatetime = Field(description="a station that receives it later refuses it (when its clock is "
                                             "synchronised); the broker drops it then too (message expiry)")
    issued_by: str = Field(min_length=1, max_length=64, description="who asked: the API token's name")
    config: str | None = Field(default=None, min_length=1, max_length=MAX_CONFIG_CHARS,
                               description="push_config: the new station.yaml, whole")
    config_sha256: Sha256 | None = Field(default=None, description="push_config: SHA-256 of `config` (UTF-8)")
    rollback_after_s: WireFloat | None = Field(
        default=None, ge=MIN_ROLLBACK_S, le=MAX_ROLLBACK_S,
        description="push_config: the daemon must be healthy this long after its restart with the new config, or "
                    "the station restores the old one")
    key_id: KeyId | None = Field(default=None, description="which central command key signed it")
    signature: Base64 | None = Field(default=None, description="Ed25519 signature (base64) of signed_bytes()")

    @model_validator(mode="after")
    def _consistent(self) -> Command:
        has_config = (self.config is not None, self.config_sha256 is not None, self.rollback_after_s is not None)
        if self.kind == "push_config":
            if not all(has_config):
                raise ValueError("push_config carries config, config_sha256 and rollback_after_s")
            assert self.config is not None
            if config_digest(self.config) != self.config_sha256:
                raise ValueError("config_sha256 is not the SHA-256 of config: the config was changed on the way")
        elif any(has_config):
            raise ValueError(f"{self.kind} carries no config, config_sha256 or rollback_after_s")
        if self.expires <= self.issued:
            raise ValueError("expires must be after issued")
        if (self.key_id is None) != (self.signature is None):
            raise ValueError("key_id and signature come together")
        return self

    @field_serializer("issued", "expires")
    def _serialize_time(self, value: datetime) -> str:
        return format_time(value)

    def signed_bytes(self) -> bytes:
        """What the signature covers: every field but `signature`, as canonical JSON (sorted keys, no spaces)."""
        fields = self.model_dump(mode="json", exclude={"signature"})
        return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class SensorCheck(WireModel):
    """One sensor's line of a `check` result (as `sinkwatch station check` prints it)."""

    name: Identifier
    driver: str = Field(min_length=1, max_length=64)
    ok: WireBool
    values: list[Annotated[str, StringConstraints(max_length=200)]] = Field(
        default_factory=list, max_length=100, description="latest values, e.g. 'CO2_1_1_1 = 412.3 umol mol-1'")
    reason: str | None = Field(default=None, max_length=500, description="why it fails")
    fix: str | None = Field(default=None, max_length=500, description="what to do about it")


class ClockState(WireModel):
    """The station's clock as its kernel sees it, for a `clock_check` (adjtimex, read-only)."""

    synced: WireBool = Field(description="the kernel's clock is disciplined (NTP, PPS)")
    offset_s: WireFloat | None = Field(default=None, description="the offset the kernel is still slewing away "
                                                                 "(+ = station ahead)")
    max_error_s: WireFloat | None = Field(default=None, ge=0, description="the kernel's maximum error estimate")


class CommandResult(WireModel):
    """One MQTT message on `sinkwatch/v1/<site>/<station>/command_results` (station -> central)."""

    schema_version: Literal[1] = COMMAND_SCHEMA_VERSION
    site: Identifier
    station: Identifier
    seq: WireInt | None = Field(default=None, ge=0, description="the station's delivery sequence number on the "
                                                                "command_results channel, named by the receipt")
    command_id: Identifier
    kind: CommandKind | None = Field(default=None, description="null when the command could not be read")
    status: ResultStatus
    time: UtcDatetime = Field(description="when the station reached this step (its clock)")
    message: str = Field(min_length=1, max_length=4000, description="what happened, for the operator")
    received: UtcDatetime | None = Field(default=None, description="when the station received the command (its "
                                                                   "clock); with `issued` a clock estimate")
    config_sha256: Sha256 | None = Field(default=None, description="SHA-256 of the station.yaml in force after "
                                                                   "this step")
    checks: list[SensorCheck] | None = Field(default=None, max_length=1000, description="check: every sensor")
    clock: ClockState | None = Field(default=None, description="clock_check: the kernel's clock state")

    @field_serializer("time", "received")
    def _serialize_time(self, value: datetime | None) -> str | None:
        return format_time(value) if value is not None else None

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


def encode_result(result: CommandResult) -> bytes:
    return result.model_dump_json().encode("utf-8")
