"""A health report validated without a model object: the central service's path for the `health` channel, where at a
thousand stations most of a catch-up's items are health reports (docs/scaling.md).

`StationHealth.model_validate_json` makes a frozen model of the report and one of each of its outboxes and sensors,
a dozen objects a report, and that is most of its cost (about 130 µs on the 2-core machine, of which pydantic-core's
checks are a third). Here the same checks run in pydantic-core alone: `StationHealth`'s own schema with this
project's Python validators replaced by pydantic-core's constraints (`gateway.model.native_schema`) and each model
by a typed dict of the same fields (defaults filled in, unknown keys refused). The result, `HealthFields`, is what
the InfluxDB store writes as it is (`influx_health.health_to_lines`); a store that keeps the report itself is given
the model, as before.

What the checks take the model takes, with the same values; what they refuse goes the model's way (None here), so a
refused report is refused with the model's error texts, and a report the model takes for a reason too awkward to
check here (an integer count written 3.0, a time with second 60) is still taken.
tests/test_contract_native.py draws awkward values for every field and compares the outcomes with the model's.
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import ValidationError
from pydantic_core import SchemaValidator, core_schema

from gateway.central.store.base import storable_time, to_ns
from gateway.central.store.health import HealthFields
from gateway.contract import StationHealth
from gateway.model import native_schema


def _as_typed_dicts(node: Any) -> Any:
    """A model's core schema with every model (the report, its outboxes, its sensors) made a typed dict of the same
    fields: a field with a default stays optional and is filled in, so a dict holds every field as the model's
    `__dict__` does."""
    if isinstance(node, list):
        return [_as_typed_dicts(item) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("type") == "model":
        fields = node["schema"]["fields"]
        return core_schema.typed_dict_schema(
            {name: core_schema.typed_dict_field(_as_typed_dicts(field["schema"]),
                                                required=field["schema"]["type"] != "default")
             for name, field in fields.items()},
            extra_behavior="forbid")
    return {key: value if key in ("cls", "function", "serialization", "metadata") else _as_typed_dicts(value)
            for key, value in node.items()}


@functools.cache
def health_validator() -> SchemaValidator:
    """`StationHealth`'s checks in pydantic-core's own terms, as nested typed dicts (module doc)."""
    return SchemaValidator(_as_typed_dicts(native_schema(StationHealth.__pydantic_core_schema__)))


def health_fields(payload: bytes | str) -> HealthFields | None:
    """The report's fields when the native checks pass and its time is one a store can hold (then they are the
    model's fields, with the same values), else None: ask the model (`gateway.central.ingest.parse_health`)."""
    try:
        fields = health_validator().validate_json(payload)
    except ValidationError:
        return None
    time = fields["time"]
    if not storable_time(time):
        return None
    return HealthFields(site=fields["site"], station=fields["station"], seq=fields["seq"], time=time,
                        time_ns=to_ns(time), fields=fields)
