"""The AsyncAPI document (docs/asyncapi.yaml) and the pydantic wire models (gateway/contract/, gateway/model.py)
describe the same thing.

Three kinds of checks keep them from drifting apart:
  - what the code emits (`model_dump_json()`) validates against the document, and the document's examples
    validate against the models;
  - malformed payloads are rejected by BOTH the schema and the models;
  - the document's structure (fields, required fields, enums, identifier pattern, topics) is compared with the
    models' own definitions, never with a literal copied into this file.
"""

from __future__ import annotations

import base64
import copy
import json
import math
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import jsonschema
import pydantic
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jsonschema import Draft202012Validator

from gateway import contract
from gateway.contract import (
    FLUXES_SUBSCRIPTION,
    ChannelBacklog,
    ClockState,
    Command,
    CommandResult,
    FluxRecord,
    RawChunk,
    ReadingBatch,
    Receipt,
    SensorCheck,
    SensorHealth,
    StationHealth,
    StationState,
    StationStatus,
    command_results_topic,
    commands_topic,
    encode_flux_record,
    encode_health,
    fluxes_topic,
    health_topic,
    raw_topic,
    readings_topic,
    receipts_topic,
    status_topic,
    validate_batch_json,
)
from gateway.contract.asyncapi import (
    PAYLOAD_NAMES,
    load_asyncapi,
    payload_schema,
    schema_name_for_topic,
    validate_payload,
)
from gateway.flux.ec.result import FluxResult
from gateway.flux.records import flux_result_of
from gateway.model import IDENTIFIER_PATTERN, QualityFlag, Reading, TimeSource
from gateway.trust.keys import key_id, verify

MODELS: dict[str, type[pydantic.BaseModel]] = {
    "Reading": Reading,
    "ReadingBatch": ReadingBatch,
    "StationStatus": StationStatus,
    "RawChunk": RawChunk,
    "FluxRecord": FluxRecord,
    "Receipt": Receipt,
    "StationHealth": StationHealth,
    "ChannelBacklog": ChannelBacklog,
    "SensorHealth": SensorHealth,
    "Command": Command,
    "CommandResult": CommandResult,
    "SensorCheck": SensorCheck,
    "ClockState": ClockState,
}
T0 = datetime(2026, 11, 25, 10, 0, 0, 104512, tzinfo=UTC)


def make_reading(i: int = 0, **changes: Any) -> Reading:
    fields: dict[str, Any] = {
        "station": "plot-07",
        "sensor": "gmp252-a",
        "variable": "CO2_1_1_1",
        "value": 1843.2 + i,
        "unit": "umol mol-1",
        "time": T0 + timedelta(seconds=10 * i),
        "time_source": TimeSource.GATEWAY,
        "clock_synced": True,
        "qc": QualityFlag.GOOD,
    }
    fields.update(changes)
    return Reading(**fields)


def make_batch(readings: list[Reading] | None = None, **changes: Any) -> ReadingBatch:
    fields: dict[str, Any] = {
        "site": "hainich",
        "station": "plot-07",
        "seq": 4182,
        "sent": T0 + timedelta(seconds=2),
        "readings": readings if readings is not None else [make_reading()],
    }
    fields.update(changes)
    return ReadingBatch(**fields)


def make_status(**changes: Any) -> StationStatus:
    fields: dict[str, Any] = {"site": "hainich", "station": "plot-07", "state": StationState.ONLINE, "since": T0}
    fields.update(changes)
    return StationStatus(**fields)


def emitted(instance: pydantic.BaseModel) -> dict[str, Any]:
    """The payload exactly as the code puts it on the wire, parsed back."""
    result: dict[str, Any] = json.loads(instance.model_dump_json())
    return result


def assert_both_reject(name: str, payload: dict[str, Any]) -> None:
    text = json.dumps(payload)
    with pytest.raises(jsonschema.ValidationError):
        validate_payload(name, text)
    with pytest.raises(pydantic.ValidationError) as by_model:
        MODELS[name].model_validate_json(text)
    if name == "ReadingBatch":  # the central service's path refuses it with the model's own words
        with pytest.raises(pydantic.ValidationError) as by_ingest:
            validate_batch_json(text)
        assert str(by_ingest.value) == str(by_model.value)


# --- what the code emits conforms ---------------------------------------------------------------------------------


def test_emitted_batch_with_every_kind_of_reading_validates() -> None:
    readings = [make_reading(i) for i in range(497)]
    readings.append(
        make_reading(1000, value=None, qc=QualityFlag.MISSING, qc_reason="device returned no value (0x8000)")
    )
    readings.append(make_reading(1001, value=-3, qc=QualityFlag.BAD, qc_reason="x" * 200, unit=""))
    readings.append(
        make_reading(
            1002,
            variable="T_PROBE",
            unit="degC",
            time_source=TimeSource.DEVICE,
            clock_synced=False,
            qc=QualityFlag.SUSPECT,
            time=datetime(2026, 11, 25, 12, 0, tzinfo=timezone(timedelta(hours=2))),  # emitted as 10:00Z
        )
    )
    batch = make_batch(readings, seq=0)
    payload = batch.model_dump_json()
    assert len(batch.readings) == 500
    assert json.loads(payload)["readings"][-1]["time"] == "2026-11-25T10:00:00.000000Z"
    validate_payload("ReadingBatch", payload)
    validate_payload("ReadingBatch", payload.encode())


@pytest.mark.parametrize("source", list(TimeSource))
@pytest.mark.parametrize("qc", list(QualityFlag))
def test_emitted_reading_validates_for_every_time_source_and_flag(source: TimeSource, qc: QualityFlag) -> None:
    value = None if qc is QualityFlag.MISSING else 0.0
    validate_payload("Reading", make_reading(time_source=source, qc=qc, value=value).model_dump_json())


@pytest.mark.parametrize(
    "status",
    [
        make_status(),
        make_status(software_version="0.1.0"),
        make_status(state=StationState.OFFLINE, reason="connection lost", software_version="0.1.0"),
        make_status(state=StationState.OFFLINE, reason="r" * 200),
    ],
    ids=["online-minimal", "online", "offline-last-will", "offline-long-reason"],
)
def test_emitted_status_validates(status: StationStatus) -> None:
    validate_payload("StationStatus", status.model_dump_json())


def test_payload_may_be_bytes_str_or_parsed() -> None:
    batch = make_batch()
    validate_payload("ReadingBatch", batch.model_dump_json().encode())
    validate_payload("ReadingBatch", batch.model_dump_json())
    validate_payload("ReadingBatch", emitted(batch))


def _examples() -> list[Any]:
    messages = load_asyncapi()["components"]["messages"]
    return [
        pytest.param(name, example["payload"], id=f"{name}:{example['name']}")
        for name, message in messages.items()
        for example in message["examples"]
    ]


@pytest.mark.parametrize(("name", "payload"), _examples())
def test_document_examples_are_canonical_model_output(name: str, payload: dict[str, Any]) -> None:
    validate_payload(name, payload)
    parsed = MODELS[name].model_validate_json(json.dumps(payload))
    assert emitted(parsed) == payload  # written exactly as the code would emit them


def test_document_has_examples_for_both_messages() -> None:
    names = {param.values[0] for param in _examples()}
    assert names == set(PAYLOAD_NAMES)


# --- malformed payloads: rejected by the schema AND by the models --------------------------------------------------

BAD_IDENTIFIERS = ["plot/07", "plot+07", "#", "plot 07", "", "-plot", "p" * 65]
BAD_TIMES = [
    "2026-11-25T10:00:00.000000",  # no Z: no time zone at all
    "2026-11-25T10:00:00",
    "2026-02-30T10:00:00Z",  # not a day
    "2026-11-25T24:00:00Z",
    "yesterday",
]


def _drop(payload: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k != key}


def _required(model_class: type[pydantic.BaseModel]) -> list[str]:
    return [name for name, field in model_class.model_fields.items() if field.is_required()]


@pytest.mark.parametrize("key", _required(ReadingBatch))
def test_batch_missing_field_rejected(key: str) -> None:
    assert_both_reject("ReadingBatch", _drop(emitted(make_batch()), key))


@pytest.mark.parametrize("key", _required(Reading))
def test_reading_missing_field_rejected(key: str) -> None:
    payload = emitted(make_batch())
    payload["readings"][0] = _drop(payload["readings"][0], key)
    assert_both_reject("ReadingBatch", payload)


@pytest.mark.parametrize("key", _required(StationStatus))
def test_status_missing_field_rejected(key: str) -> None:
    assert_both_reject("StationStatus", _drop(emitted(make_status()), key))


def test_extra_fields_rejected_everywhere() -> None:
    batch = emitted(make_batch())
    assert_both_reject("ReadingBatch", {**batch, "gateway": "x"})
    batch["readings"][0]["depth_cm"] = 10
    assert_both_reject("ReadingBatch", batch)
    assert_both_reject("StationStatus", {**emitted(make_status()), "uptime_s": 5})


@pytest.mark.parametrize("bad", BAD_TIMES)
@pytest.mark.parametrize("where", ["reading.time", "batch.sent", "status.since"])
def test_bad_time_rejected(where: str, bad: str) -> None:
    if where == "status.since":
        assert_both_reject("StationStatus", {**emitted(make_status()), "since": bad})
        return
    payload = emitted(make_batch())
    if where == "batch.sent":
        payload["sent"] = bad
    else:
        payload["readings"][0]["time"] = bad
    assert_both_reject("ReadingBatch", payload)


@pytest.mark.parametrize("bad", [4, -1, "GOOD", None, 1.5])
def test_bad_qc_rejected(bad: Any) -> None:
    payload = emitted(make_batch())
    payload["readings"][0]["qc"] = bad
    assert_both_reject("ReadingBatch", payload)


@pytest.mark.parametrize("bad", BAD_IDENTIFIERS)
@pytest.mark.parametrize("where", ["batch.site", "batch.station", "reading.station", "reading.sensor"])
def test_bad_identifier_in_batch_rejected(where: str, bad: str) -> None:
    payload = emitted(make_batch())
    scope, key = where.split(".")
    (payload if scope == "batch" else payload["readings"][0])[key] = bad
    assert_both_reject("ReadingBatch", payload)


@pytest.mark.parametrize("bad", BAD_IDENTIFIERS)
@pytest.mark.parametrize("key", ["site", "station"])
def test_bad_identifier_in_status_rejected(key: str, bad: str) -> None:
    assert_both_reject("StationStatus", {**emitted(make_status()), key: bad})


@pytest.mark.parametrize(
    ("key", "bad"),
    [
        ("time_source", "ntp"),
        ("time_source", "GATEWAY"),
        ("variable", "CO2-1"),
        ("variable", ""),
        ("variable", "V" * 65),
        ("unit", "u" * 33),
        ("qc_reason", "r" * 201),
        ("value", [1.0]),
        ("clock_synced", None),
    ],
)
def test_bad_reading_field_rejected(key: str, bad: Any) -> None:
    payload = emitted(make_batch())
    payload["readings"][0][key] = bad
    assert_both_reject("ReadingBatch", payload)


@pytest.mark.parametrize(
    ("key", "bad"),
    [("seq", -1), ("seq", 1.5), ("readings", []), ("readings", None), ("schema_version", 2)],
)
def test_bad_batch_field_rejected(key: str, bad: Any) -> None:
    assert_both_reject("ReadingBatch", {**emitted(make_batch()), key: bad})


@pytest.mark.parametrize(
    ("key", "bad"),
    [("state", "unknown"), ("state", "ONLINE"), ("reason", "r" * 201), ("schema_version", 0)],
)
def test_bad_status_field_rejected(key: str, bad: Any) -> None:
    assert_both_reject("StationStatus", {**emitted(make_status()), key: bad})


@pytest.mark.parametrize(
    ("where", "lenient"),
    [
        ("reading.time", "2026-11-25T12:00:00+02:00"),  # an offset instead of Z
        ("reading.time", "2026-11-25T10:00Z"),  # no seconds
        ("reading.time", 1795600800),  # epoch seconds
        ("reading.value", "12"),  # a number in a string
        ("reading.value", "12.5"),
        ("reading.value", True),
        ("reading.qc", True),
        ("reading.qc", "1"),
        ("reading.clock_synced", 1),
        ("reading.clock_synced", "true"),
        ("batch.seq", "7"),
        ("batch.seq", False),
        ("batch.sent", 1795600800.5),
    ],
)
def test_what_lax_parsing_would_coerce_is_rejected_by_both(where: str, lenient: Any) -> None:
    """pydantic's lax mode would coerce these; the wire contract does not allow them, so the models refuse them
    like the schema (a station sending "12" for a number has a bug worth seeing)."""
    payload = emitted(make_batch())
    scope, key = where.split(".")
    (payload if scope == "batch" else payload["readings"][0])[key] = lenient
    assert_both_reject("ReadingBatch", payload)


@pytest.mark.parametrize(
    ("where", "accepted", "parsed"),
    [
        ("reading.value", 12, 12.0),  # an integer is a number
        ("reading.qc", 1.0, QualityFlag.SUSPECT),  # JSON Schema counts 1.0 as an integer
        ("batch.seq", 7.0, 7),
        ("reading.time", "2026-11-25T10:00:00Z", datetime(2026, 11, 25, 10, tzinfo=UTC)),  # no fraction
    ],
)
def test_what_the_schema_accepts_the_models_accept(where: str, accepted: Any, parsed: Any) -> None:
    payload = emitted(make_batch())
    scope, key = where.split(".")
    (payload if scope == "batch" else payload["readings"][0])[key] = accepted
    validate_payload("ReadingBatch", payload)
    batch = ReadingBatch.model_validate_json(json.dumps(payload))
    assert getattr(batch if scope == "batch" else batch.readings[0], key) == parsed
    assert validate_batch_json(json.dumps(payload)) == batch


@pytest.mark.parametrize("lenient", ["3", True])
def test_raw_chunk_size_is_a_number(lenient: Any) -> None:
    chunk = emitted(RawChunk(site="hainich", station="plot-07", sensor="sonic",
                             file="sonic_20261125T1000Z.csv.gz", size=4, data="H4sIAA=="))
    assert_both_reject("RawChunk", {**chunk, "size": lenient})


def test_status_since_must_be_the_wire_time() -> None:
    assert_both_reject("StationStatus", {**emitted(make_status()), "since": "2026-11-25T10:00:00+00:00"})


def test_model_rejects_identifier_with_trailing_newline() -> None:
    with pytest.raises(pydantic.ValidationError):
        make_status(station="plot-07\n")


@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b"\xff\xfe{}", b'{"seq": NaN}', b"[]", b'"text"'],
    ids=["empty", "text", "not-utf8", "nan", "array", "string"],
)
def test_non_object_or_non_json_payload_rejected(raw: bytes) -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate_payload("ReadingBatch", raw)


# --- the document's structure follows the models -------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MODELS))
def test_schema_fields_and_required_fields_match_model(name: str) -> None:
    schema = payload_schema(name)
    model_class = MODELS[name]
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(model_class.model_fields)
    assert set(schema["required"]) == set(_required(model_class))


def test_enums_match_model_enums() -> None:
    assert payload_schema("TimeSource")["enum"] == [s.value for s in TimeSource]
    qc = payload_schema("QualityFlag")
    assert qc["enum"] == [f.value for f in QualityFlag]
    assert qc["x-enum-varnames"] == [f.name for f in QualityFlag]
    for flag in QualityFlag:
        assert f"{flag.value} {flag.name}" in qc["description"]
    assert payload_schema("StationStatus")["properties"]["state"]["enum"] == [s.value for s in StationState]


def test_schema_version_matches_model() -> None:
    assert payload_schema("SchemaVersion")["const"] == contract.SCHEMA_VERSION
    for name in PAYLOAD_NAMES:
        assert payload_schema(name)["properties"]["schema_version"] == {"$ref": "#/components/schemas/SchemaVersion"}


def test_identifier_pattern_matches_model_everywhere() -> None:
    document = load_asyncapi()
    assert payload_schema("Identifier")["pattern"] == IDENTIFIER_PATTERN
    parameters = document["components"]["parameters"]
    assert set(parameters) == {"site", "station"}
    for parameter in parameters.values():
        assert parameter["x-pattern"] == IDENTIFIER_PATTERN
        for example in parameter["examples"]:
            assert re.match(IDENTIFIER_PATTERN, example)


def test_channel_addresses_match_topic_functions() -> None:
    channels = load_asyncapi()["channels"]
    addresses = {name: channel["address"] for name, channel in channels.items()}
    assert addresses == {
        "readings": readings_topic("{site}", "{station}"),
        "status": status_topic("{site}", "{station}"),
        "raw": raw_topic("{site}", "{station}"),
        "fluxes": fluxes_topic("{site}", "{station}"),
        "receipts": receipts_topic("{site}", "{station}"),
        "health": health_topic("{site}", "{station}"),
        "commands": commands_topic("{site}", "{station}"),
        "command_results": command_results_topic("{site}", "{station}"),
    }
    for address in addresses.values():
        assert address.startswith(contract.TOPIC_ROOT + "/")
    assert addresses["readings"].format(site="+", station="+") == contract.READINGS_SUBSCRIPTION
    assert addresses["status"].format(site="+", station="+") == contract.STATUS_SUBSCRIPTION
    assert addresses["fluxes"].format(site="+", station="+") == FLUXES_SUBSCRIPTION
    assert addresses["raw"].format(site="+", station="+") == contract.RAW_SUBSCRIPTION
    assert addresses["receipts"].format(site="+", station="+") == contract.RECEIPTS_SUBSCRIPTION
    assert addresses["health"].format(site="+", station="+") == contract.HEALTH_SUBSCRIPTION
    assert addresses["command_results"].format(site="+", station="+") == contract.COMMAND_RESULTS_SUBSCRIPTION
    for channel in channels.values():
        assert set(channel["parameters"]) == set(re.findall(r"\{(\w+)\}", channel["address"]))


def test_operations_declare_qos_and_retain() -> None:
    document = load_asyncapi()
    sends = {
        op["channel"]["$ref"]: op["bindings"]["mqtt"]
        for op in document["operations"].values()
        if op["action"] == "send"
    }
    assert sends == {
        "#/channels/readings": {"bindingVersion": "0.2.0", "qos": 1, "retain": False},
        "#/channels/status": {"bindingVersion": "0.2.0", "qos": 1, "retain": True},
        "#/channels/raw": {"bindingVersion": "0.2.0", "qos": 1, "retain": False},
        "#/channels/fluxes": {"bindingVersion": "0.2.0", "qos": 1, "retain": False},
        "#/channels/receipts": {"bindingVersion": "0.2.0", "qos": 1, "retain": False},
        "#/channels/health": {"bindingVersion": "0.2.0", "qos": 1, "retain": False},
        "#/channels/commands": {"bindingVersion": "0.2.0", "qos": 1, "retain": False},
        "#/channels/command_results": {"bindingVersion": "0.2.0", "qos": 1, "retain": False},
    }
    receives = [op for op in document["operations"].values() if op["action"] == "receive"]
    assert {op["channel"]["$ref"] for op in receives} == set(sends)
    assert all(op["bindings"]["mqtt"]["qos"] == 1 for op in receives)


def test_server_host_is_a_placeholder() -> None:
    servers = load_asyncapi()["servers"]
    assert servers
    for server in servers.values():
        assert server["protocol"] == "mqtt"
        assert server["host"].startswith("{host}")
        assert server["variables"]["host"]["default"].endswith((".invalid", ".example", "localhost"))


@pytest.mark.parametrize("name", sorted(load_asyncapi()["components"]["schemas"]))
def test_every_schema_is_valid_draft_2020_12(name: str) -> None:
    Draft202012Validator.check_schema(payload_schema(name))


def test_schema_name_for_topic() -> None:
    assert schema_name_for_topic(readings_topic("hainich", "plot-07")) == "ReadingBatch"
    assert schema_name_for_topic(status_topic("hainich", "plot-07")) == "StationStatus"
    for topic in ["sinkwatch/v1/hainich/readings", "sinkwatch/v2/a/b/readings", "sinkwatch/v1/a/b/metrics"]:
        with pytest.raises(ValueError, match="matches no channel"):
            schema_name_for_topic(topic)


def test_unknown_schema_name_is_named() -> None:
    with pytest.raises(KeyError, match="ReadingBatch"):
        payload_schema("Readings")
    with pytest.raises(KeyError, match="known"):
        validate_payload("Readings", "{}")


def test_load_asyncapi_returns_a_copy() -> None:
    document = load_asyncapi()
    document["channels"].clear()
    assert load_asyncapi()["channels"]
    schema = payload_schema("Reading")
    schema["required"].clear()
    broken = copy.deepcopy(emitted(make_batch()))
    del broken["readings"][0]["qc"]
    with pytest.raises(jsonschema.ValidationError):
        validate_payload("ReadingBatch", broken)


@pytest.mark.parametrize(
    ("value", "qc"),
    [(None, int(QualityFlag.GOOD)), (None, int(QualityFlag.BAD)), (412.5, int(QualityFlag.MISSING))],
    ids=["null-good", "null-bad", "number-missing"],
)
def test_null_value_exactly_when_missing(value: float | None, qc: int) -> None:
    payload = emitted(make_batch())
    payload["readings"][0] = {**payload["readings"][0], "value": value, "qc": qc}
    assert_both_reject("ReadingBatch", payload)


# --- flux records ---------------------------------------------------------------------------------------------------


def make_flux_record(**changes: Any) -> FluxRecord:
    result = FluxResult(
        start=T0, end=T0 + timedelta(minutes=30), status="partial", reasons=["h2o: spikes", "LE not computed"],
        values={"FC": -20.6826, "FC_SSITC_TEST": 1.0, "H": 301.448, "LE": math.nan, "N_RECORDS": 36000.0,
                "CO2_TLAG": 0.15, "W_NUM_SPIKES": 3.0, "ZL": -1e-300},
        settings_hash="3f2a9c0d1e4b5a6f",
    )
    fields = emitted(FluxRecord.from_result(result, site="hainich", station="plot-07"))
    fields.update(changes)
    return FluxRecord.model_validate(fields)


def test_emitted_flux_record_validates_with_nan_as_null_and_flags_as_integers() -> None:
    payload = json.loads(encode_flux_record(make_flux_record()))
    validate_payload("FluxRecord", payload)
    assert payload["values"]["LE"] is None
    assert payload["values"]["FC_SSITC_TEST"] == 1 and isinstance(payload["values"]["FC_SSITC_TEST"], int)
    assert schema_name_for_topic(fluxes_topic("hainich", "plot-07")) == "FluxRecord"


@pytest.mark.parametrize(
    ("key", "bad"),
    [
        ("values", {"fc": 1.0}),  # not an upper-case FLUXNET name
        ("values", {"FC": "1.0"}),
        ("values", {"FC": [1.0]}),
        ("settings_hash", "NOT-HEX"),
        ("status", "fine"),
        ("start", "2026-11-25T10:00:00"),
        ("end", "yesterday"),
        ("engine_version", ""),
        ("site", "plot/07"),
        ("reasons", ["r" * 501]),
    ],
)
def test_bad_flux_record_rejected(key: str, bad: Any) -> None:
    payload = emitted(make_flux_record())
    payload[key] = bad
    assert_both_reject("FluxRecord", payload)


@pytest.mark.parametrize("key", _required(FluxRecord))
def test_flux_record_missing_field_rejected(key: str) -> None:
    assert_both_reject("FluxRecord", _drop(emitted(make_flux_record()), key))


def test_flux_record_round_trips_to_the_engine_result() -> None:
    record = make_flux_record()
    back = FluxRecord.from_result(flux_result_of(record), site=record.site, station=record.station)
    assert back == record


# --- receipts -------------------------------------------------------------------------------------------------------


def make_receipt(**changes: Any) -> Receipt:
    fields: dict[str, Any] = {"site": "hainich", "station": "plot-07", "channel": "readings",
                              "stored": [(120, 131), (133, 133)], "sent": T0}
    fields.update(changes)
    return Receipt(**fields)


def test_receipts_the_central_service_emits_validate() -> None:
    from gateway.central.receipts import ReceiptBook

    book = ReceiptBook()
    for seq in (7, 3, 4, 5, 9):  # stored out of order, as several workers would
        book.add("hainich", "plot-07", "readings", seq)
    book.add("hainich", "plot-07", "readings", 8, dead_lettered=True)
    book.add("hainich", "plot-07", "raw", 0)
    receipts = book.take()
    for receipt in receipts:
        validate_payload("Receipt", receipt.model_dump_json())
    readings = next(r for r in receipts if r.channel == "readings")
    assert readings.stored == [(3, 5), (7, 7), (9, 9)]
    assert readings.dead_lettered == [(8, 8)]
    assert schema_name_for_topic(receipts_topic("hainich", "plot-07")) == "Receipt"


@pytest.mark.parametrize(
    ("key", "bad"),
    [
        ("channel", "status"),  # nothing to confirm on the status channel
        ("stored", [[-1, 3]]),
        ("stored", [[1, 2, 3]]),
        ("stored", [[1]]),
        ("stored", [["1", 2]]),
        ("stored", []),  # with dead_lettered empty too: a receipt that names nothing
        ("dead_lettered", "1-3"),
        ("station", "plot/07"),
        ("sent", "yesterday"),
    ],
)
def test_bad_receipt_rejected(key: str, bad: Any) -> None:
    payload = emitted(make_receipt(dead_lettered=[]))
    payload[key] = bad
    assert_both_reject("Receipt", payload)


@pytest.mark.parametrize("key", _required(Receipt))
def test_receipt_missing_field_rejected(key: str) -> None:
    assert_both_reject("Receipt", _drop(emitted(make_receipt()), key))


def test_backwards_range_rejected_by_the_model() -> None:
    # JSON Schema cannot compare two items of an array; the model is the stricter side here
    with pytest.raises(pydantic.ValidationError, match="runs backwards"):
        make_receipt(stored=[(5, 3)])


@pytest.mark.parametrize("name", ["FluxRecord", "RawChunk", "StationHealth"])
def test_station_items_carry_their_delivery_seq(name: str) -> None:
    schema = payload_schema(name)
    assert "seq" in schema["properties"] and "seq" not in schema["required"]
    assert MODELS[name].model_fields["seq"].default is None


# --- health reports -------------------------------------------------------------------------------------------------


def make_health(**changes: Any) -> StationHealth:
    """The document's example, changed."""
    [example] = load_asyncapi()["components"]["messages"]["StationHealth"]["examples"]
    return StationHealth.model_validate({**example["payload"], **changes})


def test_health_reports_the_station_emits_validate(tmp_path: Any) -> None:
    """A report taken by the station's own sampler on this machine (whatever it can and cannot measure)."""
    from gateway.edge.telemetry import HealthSampler

    sampler = HealthSampler("hainich", "plot-07", interval_s=60.0, disk_path=tmp_path)
    for report in (sampler.sample(buffers=[], sensors=[]), sampler.sample(buffers=[], sensors=[])):
        validate_payload("StationHealth", encode_health(report))
    assert schema_name_for_topic(health_topic("hainich", "plot-07")) == "StationHealth"


def test_a_minimal_health_report_validates() -> None:
    report = StationHealth(site="hainich", station="plot-07", time=T0, interval_s=60.0, daemon_version="0.1.0",
                           uptime_s=0.0, clock_synced=False)
    payload = emitted(report)
    validate_payload("StationHealth", payload)
    assert payload["disk_free_bytes"] is None and payload["buffers"] == [] and payload["reports_dropped"] == 0


@pytest.mark.parametrize("key", _required(StationHealth))
def test_health_missing_field_rejected(key: str) -> None:
    assert_both_reject("StationHealth", _drop(emitted(make_health()), key))


@pytest.mark.parametrize(
    ("key", "bad"),
    [
        ("interval_s", 0),
        ("uptime_s", -1.0),
        ("disk_free_bytes", -5),
        ("disk_free_bytes", 1.5),
        ("disk_free_bytes", "100"),
        ("clock_synced", 1),
        ("load_1m", -0.1),
        ("cpu_count", 0),
        ("reports_dropped", -1),
        ("daemon_version", ""),
        ("time", "2026-11-25T10:00:00+00:00"),
        ("seq", -1),
        ("station", "plot/07"),
        ("buffers", [{"channel": "status", "unit": "readings", "pending": 0}]),
        ("buffers", [{"channel": "readings", "unit": "bytes", "pending": 0}]),
        ("buffers", [{"channel": "readings", "unit": "readings", "pending": -1}]),
        ("sensors", [{"name": "a", "driver": "x", "kind": "polled", "state": "ok", "available": True,
                      "errors": {"time out": 1}}]),
        ("sensors", [{"name": "a", "driver": "x", "kind": "polled", "state": "ok", "available": True,
                      "errors": {"timeout": -1}}]),
        ("sensors", [{"name": "a", "driver": "x", "kind": "batch", "state": "ok", "available": True}]),
        ("sensors", [{"name": "a", "driver": "x", "kind": "polled", "state": "ok", "available": True,
                      "availability": 1.5}]),
        ("sensors", [{"name": "a", "driver": "x", "kind": "polled", "state": "ok"}]),  # available is required
        ("sensors", [{"name": "a", "driver": "x", "kind": "polled", "state": "ok", "available": True,
                      "variables": ["CO2-1"]}]),
    ],
)
def test_bad_health_report_rejected(key: str, bad: Any) -> None:
    assert_both_reject("StationHealth", {**emitted(make_health()), key: bad})


def test_health_receipts_name_the_health_channel() -> None:
    receipt = make_receipt(channel="health", stored=[(0, 9)])
    validate_payload("Receipt", receipt.model_dump_json())
    assert "health" in contract.CHANNELS


# --- the signature every station item carries (MQTT v5 user property, gateway/trust/signing.py) ------------------

SIGNED_CHANNELS = {"readings", "fluxes", "raw", "health", "command_results"}


def _signature_trait() -> dict[str, Any]:
    trait: dict[str, Any] = load_asyncapi()["components"]["messageTraits"]["SignedItem"]
    return trait


def _signature_schema() -> dict[str, Any]:
    schema: dict[str, Any] = _signature_trait()["headers"]
    return schema


def _sample_envelopes() -> list[str]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gateway.trust.signing import Link, envelope_text, sha256_hex, sign

    key = Ed25519PrivateKey.generate()
    first = sign(key, readings_topic("hainich", "plot-07"), "readings", Link("0123456789abcdef", 0, 10), b"{}")
    after = Link("0123456789abcdef", 2**63, 2**64 - 1, 0, 10, first.digest)
    raw = sign(key, raw_topic("hainich", "plot-07"), "raw", after, b"{}", sha256_hex(b"file"))
    return [envelope_text(first.envelope), envelope_text(raw.envelope)]


def test_every_station_channel_carries_the_signature_trait_and_no_other() -> None:
    from gateway.trust.signing import USER_PROPERTY

    document = load_asyncapi()
    messages = document["components"]["messages"]
    trait_ref = {"$ref": "#/components/messageTraits/SignedItem"}
    for name, channel in document["channels"].items():
        for ref in channel["messages"].values():
            message = messages[ref["$ref"].rsplit("/", 1)[-1]]
            assert (trait_ref in message.get("traits", [])) == (name in SIGNED_CHANNELS), name
    assert _signature_schema()["required"] == [USER_PROPERTY]
    assert list(_signature_schema()["properties"]) == [USER_PROPERTY]


def test_the_signature_property_schema_accepts_what_stations_send() -> None:
    validator = Draft202012Validator(_signature_schema())
    for text in _sample_envelopes():
        validator.validate({"sinkwatch-sig": text})


@pytest.mark.parametrize("change", [("v=1;", "v=2;"), (";sig=", ";signature="), ("prev=-", "prev=0:1:abc"),
                                   ("content=-", "content=+"), ("key=", "key=X"), (";at=", ";at=-")])
def test_a_malformed_signature_property_is_refused_by_schema_and_parser(change: tuple[str, str]) -> None:
    from gateway.trust.signing import EnvelopeError, parse_envelope

    text = _sample_envelopes()[0]
    assert change[0] in text
    bad = text.replace(change[0], change[1], 1)
    with pytest.raises(jsonschema.ValidationError):
        Draft202012Validator(_signature_schema()).validate({"sinkwatch-sig": bad})
    with pytest.raises(EnvelopeError):
        parse_envelope(bad)
    with pytest.raises(jsonschema.ValidationError):  # and a message without it
        Draft202012Validator(_signature_schema()).validate({})


def test_the_documented_signature_example_verifies_over_the_documented_payload() -> None:
    from gateway.trust.keys import key_id, public_key_from_text
    from gateway.trust.signing import check, parse_envelope, sha256_hex

    trait = _signature_trait()
    [example] = trait["headers"]["properties"]["sinkwatch-sig"]["examples"]
    envelope = parse_envelope(example)
    public_key = public_key_from_text(trait["x-example"]["public_key"])
    assert envelope.key_id == key_id(public_key)
    [payload] = [e["payload"] for e in _examples_of("ReadingBatch") if e["name"] == "soil-co2-and-temperatures"]
    payload_bytes = ReadingBatch.model_validate(payload).model_dump_json().encode()
    assert envelope.link.seq == payload["seq"]
    assert check(public_key, readings_topic("hainich", "plot-07"), "readings", envelope, sha256_hex(payload_bytes))
    # the same envelope over other bytes does not hold
    assert not check(public_key, readings_topic("hainich", "plot-07"), "readings", envelope,
                     sha256_hex(payload_bytes + b" "))


def test_the_documented_signed_lines_are_the_signed_bytes() -> None:
    from gateway.trust.signing import SIGNATURE_FORMAT, Link, signed_bytes

    lines = signed_bytes(readings_topic("a", "b"), "readings", "0" * 16, Link("0" * 16, 1, 2), "0" * 64,
                         "-").decode("ascii").split("\n")
    assert lines[-1] == ""  # every line ends with a newline
    assert len(lines[:-1]) == len(_signature_trait()["x-signed-lines"]) == 10
    assert lines[0] == SIGNATURE_FORMAT and lines[1] == readings_topic("a", "b")


def _examples_of(message: str) -> list[dict[str, Any]]:
    examples: list[dict[str, Any]] = load_asyncapi()["components"]["messages"][message]["examples"]
    return examples


# --- commands and their results ---------------------------------------------------------------------------------------


def make_command(**changes: Any) -> Command:
    """The document's signed push_config example, changed (its signature is then no longer valid: not checked here)."""
    example = load_asyncapi()["components"]["messages"]["Command"]["examples"][0]["payload"]
    return Command.model_validate({**example, **changes})


def test_command_enums_match_the_models() -> None:
    assert payload_schema("CommandKind")["enum"] == list(contract.COMMAND_KINDS)
    assert payload_schema("CommandResult")["properties"]["status"]["enum"] == list(
        CommandResult.model_fields["status"].annotation.__args__)  # type: ignore[union-attr]
    assert payload_schema("Channel")["enum"] == list(contract.CHANNELS)
    assert payload_schema("Receipt")["properties"]["channel"]["enum"] == list(contract.CHANNELS)
    assert "command_results" in contract.CHANNELS
    assert set(contract.FINAL_STATUSES) == {"ok", "rejected", "rolled_back", "failed"}


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"kind": "restart"}, "a restart carrying a config"),
        ({"config": None}, "push_config without its config"),
        ({"rollback_after_s": None}, "push_config without rollback_after_s"),
        ({"rollback_after_s": 5.0}, "rollback window below 10 s"),
        ({"rollback_after_s": "120"}, "a number as text"),
        ({"config_sha256": "ABC"}, "not a hex digest"),
        ({"kind": "reboot"}, "an unknown kind"),
        ({"signature": None}, "key_id without signature"),
        ({"key_id": "xyz"}, "a malformed key id"),
        ({"station": "plot/07"}, "a station id that is a topic"),
        ({"issued": "2026-11-25T10:00:00+00:00"}, "a time not in the wire form"),
        ({"issued_by": ""}, "nobody issued it"),
        ({"extra": 1}, "an unknown field"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_command_rejected_by_both(changes: dict[str, Any], why: str) -> None:
    assert_both_reject("Command", {**emitted(make_command()), **changes})


def test_what_only_the_model_checks_of_a_command() -> None:
    # JSON Schema cannot hash a string or compare two times: the model is the stricter side
    payload = emitted(make_command())
    validate_payload("Command", {**payload, "config_sha256": "0" * 64})
    with pytest.raises(pydantic.ValidationError, match="changed on the way"):
        Command.model_validate({**payload, "config_sha256": "0" * 64})
    validate_payload("Command", {**payload, "expires": payload["issued"]})
    with pytest.raises(pydantic.ValidationError, match="expires must be after issued"):
        Command.model_validate({**payload, "expires": payload["issued"]})


def test_a_signature_covers_every_field_but_itself() -> None:
    command = make_command()
    signed = command.signed_bytes()
    assert b'"signature"' not in signed and json.loads(signed)["id"] == command.id
    assert signed == make_command(signature="QUJD").signed_bytes()  # the signature itself is not covered
    for field, value in (("station", "plot-08"), ("issued_by", "mallory"), ("rollback_after_s", 11.0),
                         ("expires", "2026-11-26T10:00:00.000000Z")):
        assert make_command(**{field: value}).signed_bytes() != signed, field
    assert signed == json.dumps(json.loads(signed), sort_keys=True, separators=(",", ":"),
                                ensure_ascii=False).encode()  # canonical: any reader can rebuild it


def test_the_signature_in_the_document_is_real() -> None:
    command = make_command()
    public = Ed25519PrivateKey.from_private_bytes(bytes(range(32))).public_key()  # the example's throwaway key
    assert command.key_id == key_id(public)
    assert command.signature is not None
    assert verify(public, base64.b64decode(command.signature), command.signed_bytes())
    assert not verify(public, base64.b64decode(command.signature), make_command(station="plot-08").signed_bytes())


@pytest.mark.parametrize(
    ("key", "bad"),
    [
        ("status", "done"),
        ("status", None),
        ("message", ""),
        ("seq", -1),
        ("kind", "reboot"),
        ("config_sha256", "77aa"),
        ("received", "yesterday"),
        ("checks", [{"name": "a", "driver": "x"}]),
        ("checks", [{"name": "a b", "driver": "x", "ok": True}]),
        ("checks", [{"name": "a", "driver": "x", "ok": 1}]),
        ("clock", {"synced": True, "max_error_s": -1.0}),
        ("clock", {"offset_s": 0.1}),
    ],
)
def test_bad_command_result_rejected_by_both(key: str, bad: Any) -> None:
    example = load_asyncapi()["components"]["messages"]["CommandResult"]["examples"][0]["payload"]
    assert_both_reject("CommandResult", {**example, key: bad})


@pytest.mark.parametrize("key", _required(CommandResult))
def test_command_result_missing_field_rejected(key: str) -> None:
    example = load_asyncapi()["components"]["messages"]["CommandResult"]["examples"][0]["payload"]
    assert_both_reject("CommandResult", _drop(example, key))


def test_command_topics() -> None:
    assert schema_name_for_topic(commands_topic("hainich", "plot-07")) == "Command"
    assert schema_name_for_topic(command_results_topic("hainich", "plot-07")) == "CommandResult"
    receipt = make_receipt(channel="command_results", stored=[(0, 3)])
    validate_payload("Receipt", receipt.model_dump_json())


@pytest.mark.parametrize("change", [
    {"format": "sinkwatch-raw/2"},  # a .csv.gz file said to be format 2
    {"encoding": "zlib+base64"},  # format 1 travels as it is
    {"file": "sonic_20261125T1000Z.swr"},  # a format 2 name under format 1
])
def test_raw_chunk_format_encoding_and_file_suffix_agree(change: dict[str, str]) -> None:
    chunk = emitted(RawChunk(site="hainich", station="plot-07", sensor="sonic",
                             file="sonic_20261125T1000Z.csv.gz", size=4, data="H4sIAA=="))
    assert_both_reject("RawChunk", {**chunk, **change})


@pytest.mark.parametrize("unit", ["umol mol-1", "degC", "W m-2", "%", "", "µmol m⁻² s⁻¹"])
def test_a_plain_text_unit_is_a_unit(unit: str) -> None:
    reading = Reading(station="st1", sensor="s1", variable="CO2", value=1.0, unit=unit,
                      time=datetime(2026, 11, 25, tzinfo=UTC), time_source=TimeSource.GATEWAY, clock_synced=True,
                      qc=QualityFlag.GOOD)
    validate_payload("Reading", reading.model_dump_json())
    assert reading.unit == unit


@pytest.mark.parametrize("unit", ["ppm\\", "a\nb", "p\x00m", "p\x7fm", "p\x85m", "\u2028", "\u202eppm", "\u2066x"])
def test_a_unit_with_controls_or_a_backslash_is_refused_by_model_and_document(unit: str) -> None:
    """Hostile inputs by hand (docs/reliability.md): the model and docs/asyncapi.yaml refuse the same units."""
    fields = {"station": "st1", "sensor": "s1", "variable": "CO2", "value": 1.0, "unit": unit,
              "time": "2026-11-25T00:00:00Z", "time_source": "gateway", "clock_synced": True, "qc": 0}
    with pytest.raises(pydantic.ValidationError, match="write the unit as plain text"):
        Reading.model_validate(fields)
    with pytest.raises(jsonschema.ValidationError):
        validate_payload("Reading", json.dumps(fields))
