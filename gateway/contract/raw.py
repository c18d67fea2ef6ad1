"""The raw channel: `RawChunk`, one closed raw archive file (docs/raw-archive.md) as one MQTT message, and
`raw_payload`, its encoder. Mirrored as JSON Schema in `docs/asyncapi.yaml`."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.model import Identifier, WireInt

RAW_SCHEMA_VERSION: Literal[1] = 1

_ARCHIVE_NAME_RE = re.compile(r"^(?P<sensor>.+)_\d{8}T\d{4}Z(?:_\d+)?\.csv\.gz$")


class RawChunk(BaseModel):
    """One MQTT message on `sinkwatch/v1/<site>/<station>/raw`: a closed raw archive file (docs/raw-archive.md),
    its gzip bytes in base64. Mirrored as JSON Schema in docs/asyncapi.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = RAW_SCHEMA_VERSION
    site: Identifier
    station: Identifier
    sensor: Identifier
    file: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}_\d{8}T\d{4}Z(_\d+)?\.csv\.gz$",
                      description="the archive file's name: <sensor>_<YYYYMMDDTHHMM>Z[_n].csv.gz")
    format: Literal["sinkwatch-raw/1"] = "sinkwatch-raw/1"
    encoding: Literal["gzip+base64"] = "gzip+base64"
    size: WireInt = Field(ge=0, description="length of the file in bytes (before base64)")
    data: str = Field(min_length=1, pattern=r"^[A-Za-z0-9+/]+={0,2}$", description="the file, base64")
    seq: int | None = Field(default=None, ge=0, description="the station's delivery sequence number on the raw "
                            "channel, named by the central service's receipt")


def raw_payload(site: str, station: str, path: Path, seq: int | None = None) -> bytes:
    """The `RawChunk` payload (docs/asyncapi.yaml) of a closed archive file."""
    match = _ARCHIVE_NAME_RE.match(path.name)
    if match is None:
        raise ValueError(f"{path.name} is not an archive file name (<sensor>_<YYYYMMDDTHHMM>Z.csv.gz)")
    data = path.read_bytes()
    chunk = RawChunk(site=site, station=station, sensor=match["sensor"], file=path.name, size=len(data),
                     data=base64.b64encode(data).decode("ascii"), seq=seq)
    return chunk.model_dump_json().encode()
