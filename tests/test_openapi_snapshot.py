"""docs/openapi.json is the HTTP contract researchers code against; it must be what the service serves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gateway.central.cli import openapi_document

SNAPSHOT = Path(__file__).parents[1] / "docs" / "openapi.json"


def test_published_openapi_matches_the_served_one() -> None:
    published = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    assert published == openapi_document(), (
        "docs/openapi.json is stale: regenerate it with `sinkwatch central openapi > docs/openapi.json` and "
        "review the diff as an API change"
    )


def test_every_documented_series_parameter_is_in_the_contract() -> None:
    document: dict[str, Any] = openapi_document()
    parameters = {p["name"] for p in document["paths"]["/api/v1/series"]["get"]["parameters"]}
    assert {"station", "variable", "start", "end", "every", "aggregate", "format"} <= parameters
