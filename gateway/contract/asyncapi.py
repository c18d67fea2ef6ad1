"""The MQTT wire contract: `docs/asyncapi.yaml`, loaded and usable as a validator.

The AsyncAPI document is the specification of every payload on the broker; its `components.schemas` are hand-written
JSON Schema that mirror the pydantic models in `gateway.contract` and `gateway.model`. This module lets tests (and
anyone holding a captured payload) check a payload against the document rather than against the models, so the two
cannot drift apart silently:

    >>> validate_payload("ReadingBatch", message.payload)        # raises jsonschema.ValidationError
    >>> validate_payload(schema_name_for_topic(message.topic), message.payload)

Validation uses Draft 2020-12 with format checking. The whole AsyncAPI document is registered as one JSON Schema
resource, so `$ref: '#/components/schemas/...'` inside a schema resolves against the document itself. Bytes and
strings are parsed as strict JSON (UTF-8, no NaN/Infinity, which no JSON consumer could read back).

The document is found relative to this file (`<repo>/docs/asyncapi.yaml`), i.e. in a source checkout or an
editable install; pass `path` to use another copy.

This module needs jsonschema, which only the `test` extra installs: it is for tests and for checking captured
payloads by hand, and no runtime module imports it (the import-linter contracts in pyproject.toml enforce that).
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

try:
    from jsonschema import Draft202012Validator, FormatChecker, ValidationError
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        f"gateway.contract.asyncapi validates payloads with jsonschema, which is not installed ({exc}); install "
        "the test extra: pip install 'sinkwatch[test]'"
    ) from exc

__all__ = [
    "ASYNCAPI_PATH",
    "PAYLOAD_NAMES",
    "load_asyncapi",
    "payload_schema",
    "schema_name_for_topic",
    "validate_payload",
]

ASYNCAPI_PATH = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"

# The schemas that are whole MQTT payloads (the others in components.schemas are building blocks).
PAYLOAD_NAMES = ("ReadingBatch", "StationStatus", "RawChunk", "FluxRecord", "Receipt", "StationHealth", "Command",
                 "CommandResult")

_DOCUMENT_URI = "urn:sinkwatch:asyncapi"
_SCHEMA_PREFIX = "#/components/schemas/"


def load_asyncapi(path: Path | str | None = None) -> dict[str, Any]:
    """The AsyncAPI document as a fresh dict (callers may modify it)."""
    return copy.deepcopy(_load(_resolve(path)))


def payload_schema(name: str, path: Path | str | None = None) -> dict[str, Any]:
    """`components.schemas[name]`, as written (its `$ref`s point into the document); KeyError names the choices."""
    schemas = _load(_resolve(path)).get("components", {}).get("schemas", {})
    if name not in schemas:
        raise KeyError(f"no schema {name!r} in the AsyncAPI document; known: {', '.join(sorted(schemas))}")
    return copy.deepcopy(schemas[name])


def validate_payload(name: str, payload: bytes | str | Mapping[str, Any], path: Path | str | None = None) -> None:
    """Check one payload against `components.schemas[name]`; raise jsonschema.ValidationError if it does not conform.

    `payload` is the raw MQTT payload (bytes or str, parsed as strict UTF-8 JSON) or an already-parsed object.
    Unparseable input is reported as a ValidationError too, so callers handle a single exception type.
    """
    _validator(_resolve(path), name).validate(_parse(payload))


def schema_name_for_topic(topic: str, path: Path | str | None = None) -> str:
    """The payload schema name for a concrete topic, found by matching the document's channel addresses.

    `sinkwatch/v1/hainich/plot-07/readings` -> `ReadingBatch`. ValueError if no channel matches.
    """
    document = _load(_resolve(path))
    segments = topic.split("/")
    for channel in document.get("channels", {}).values():
        address = channel["address"].split("/")
        if len(address) != len(segments):
            continue
        if all(a == s or (a.startswith("{") and a.endswith("}") and s) for a, s in zip(address, segments, strict=True)):
            for message in channel.get("messages", {}).values():
                ref = _follow(document, message)["payload"]["$ref"]
                if ref.startswith(_SCHEMA_PREFIX):
                    return str(ref[len(_SCHEMA_PREFIX) :])
    raise ValueError(f"topic {topic!r} matches no channel in the AsyncAPI document")


# --- internals -----------------------------------------------------------------------------------------------------


def _resolve(path: Path | str | None) -> Path:
    return Path(path).resolve() if path is not None else ASYNCAPI_PATH


@functools.lru_cache(maxsize=8)
def _load(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"AsyncAPI document not found at {path}; gateway.contract.asyncapi needs a source checkout "
            "(docs/asyncapi.yaml) or an explicit path"
        ) from None
    document = yaml.safe_load(text)
    if not isinstance(document, dict) or "asyncapi" not in document:
        raise ValueError(f"{path} is not an AsyncAPI document")
    return document


def _follow(document: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow local `$ref`s (`#/a/b`) until a node without one."""
    seen: set[str] = set()
    while "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/") or ref in seen:
            raise ValueError(f"cannot follow reference {ref!r}")
        seen.add(ref)
        target: Any = document
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def _is_utc_datetime(value: object) -> bool:
    """Calendar check for `format: date-time` (the schema's pattern fixes the shape): a real instant with a zone.

    jsonschema only checks date-time when the optional rfc3339-validator is installed; this check does not depend
    on it, so 2026-02-30 is rejected everywhere, as the pydantic models reject it.
    """
    if not isinstance(value, str):
        return True
    return datetime.fromisoformat(value).tzinfo is not None


def _format_checker() -> FormatChecker:
    checker = FormatChecker()
    checker.checks("date-time", raises=ValueError)(_is_utc_datetime)
    return checker


@functools.lru_cache(maxsize=32)
def _validator(path: Path, name: str) -> Draft202012Validator:
    document = _load(path)
    schemas = document.get("components", {}).get("schemas", {})
    if name not in schemas:
        raise KeyError(f"no schema {name!r} in the AsyncAPI document; known: {', '.join(sorted(schemas))}")
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(_DOCUMENT_URI, resource)
    return Draft202012Validator(
        {"$ref": f"{_DOCUMENT_URI}{_SCHEMA_PREFIX}{name}"},
        registry=registry,
        format_checker=_format_checker(),
    )


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not valid JSON")


def _parse(payload: bytes | str | Mapping[str, Any]) -> Any:
    if isinstance(payload, Mapping):
        return payload
    try:
        text = payload.decode("utf-8") if isinstance(payload, bytes | bytearray) else payload
        return json.loads(text, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValidationError(f"payload is not UTF-8 JSON: {exc}") from None
