"""The wire contract between stations and the central service: every MQTT message model and every topic, in one
place that both sides import (and nothing else: the contract depends only on `gateway.model`).

    from gateway.contract import ReadingBatch, StationStatus, FluxRecord, RawChunk, StationHealth, readings_topic, ...

| module | channel | message |
|---|---|---|
| `topics` | all | `<channel>_topic(site, station)`, `<CHANNEL>_SUBSCRIPTION`, `shared_subscription`, `parse_topic` |
| `readings` | `readings`, `status` | `ReadingBatch` (of `model.Reading`), `StationStatus`, `validate_batch_json` |
| `fluxes` | `fluxes` | `FluxRecord`, `encode_flux_record` |
| `raw` | `raw` | `RawChunk`, `raw_payload`, `raw_file_bytes` |
| `health` | `health` | `StationHealth` (with `ChannelBacklog`, `SensorHealth`), `encode_health` |
| `receipts` | `receipts` (central -> station) | `Receipt`, `seq_ranges`; the channels it confirms (`Channel`) |
| `commands` | `commands` (central -> station), `command_results` | `Command` (`signed_bytes`), `CommandResult`
  (`SensorCheck`, `ClockState`), `encode_result`, `config_digest` |
| `asyncapi` | - | validation of a payload against `docs/asyncapi.yaml` (needs jsonschema: the `test` extra; tests and
  tools only, never imported by the runtime) |

A new message type gets its own module here (named after its channel), its topic builder in `topics`, a re-export
below, its JSON Schema in `docs/asyncapi.yaml` (with its name in `asyncapi.PAYLOAD_NAMES`) and a row in the MQTT
table of `docs/architecture.md`.
"""

from gateway.contract.commands import (
    COMMAND_KINDS,
    COMMAND_SCHEMA_VERSION,
    FINAL_STATUSES,
    ClockState,
    Command,
    CommandKind,
    CommandResult,
    ResultStatus,
    SensorCheck,
    config_digest,
    encode_result,
)
from gateway.contract.fluxes import (
    FLUX_SCHEMA_VERSION,
    SETTINGS_HASH_PATTERN,
    VARIABLE_NAME_PATTERN,
    FluxRecord,
    FluxResultLike,
    encode_flux_record,
    is_integer_variable,
)
from gateway.contract.health import (
    HEALTH_SCHEMA_VERSION,
    ChannelBacklog,
    SensorHealth,
    StationHealth,
    encode_health,
)
from gateway.contract.raw import RAW_SCHEMA_VERSION, RawChunk, raw_file_bytes, raw_payload
from gateway.contract.readings import SCHEMA_VERSION, ReadingBatch, StationState, StationStatus, validate_batch_json
from gateway.contract.receipts import CHANNELS, Channel, Receipt, seq_ranges
from gateway.contract.topics import (
    COMMAND_RESULTS_SUBSCRIPTION,
    FLUXES_SUBSCRIPTION,
    HEALTH_SUBSCRIPTION,
    RAW_SUBSCRIPTION,
    READINGS_SUBSCRIPTION,
    RECEIPTS_SUBSCRIPTION,
    STATUS_SUBSCRIPTION,
    TOPIC_ROOT,
    command_results_topic,
    commands_topic,
    fluxes_topic,
    health_topic,
    parse_topic,
    raw_topic,
    readings_topic,
    receipts_topic,
    shared_subscription,
    status_topic,
)

__all__ = [
    "CHANNELS",
    "COMMAND_KINDS",
    "COMMAND_RESULTS_SUBSCRIPTION",
    "COMMAND_SCHEMA_VERSION",
    "FINAL_STATUSES",
    "FLUXES_SUBSCRIPTION",
    "FLUX_SCHEMA_VERSION",
    "HEALTH_SCHEMA_VERSION",
    "HEALTH_SUBSCRIPTION",
    "RAW_SCHEMA_VERSION",
    "RAW_SUBSCRIPTION",
    "READINGS_SUBSCRIPTION",
    "RECEIPTS_SUBSCRIPTION",
    "SCHEMA_VERSION",
    "SETTINGS_HASH_PATTERN",
    "STATUS_SUBSCRIPTION",
    "TOPIC_ROOT",
    "VARIABLE_NAME_PATTERN",
    "Channel",
    "ChannelBacklog",
    "ClockState",
    "Command",
    "CommandKind",
    "CommandResult",
    "FluxRecord",
    "FluxResultLike",
    "RawChunk",
    "ReadingBatch",
    "Receipt",
    "ResultStatus",
    "SensorCheck",
    "SensorHealth",
    "StationHealth",
    "StationState",
    "StationStatus",
    "command_results_topic",
    "commands_topic",
    "config_digest",
    "encode_flux_record",
    "encode_health",
    "encode_result",
    "fluxes_topic",
    "health_topic",
    "is_integer_variable",
    "parse_topic",
    "raw_file_bytes",
    "raw_payload",
    "raw_topic",
    "readings_topic",
    "receipts_topic",
    "seq_ranges",
    "shared_subscription",
    "status_topic",
    "validate_batch_json",
]
