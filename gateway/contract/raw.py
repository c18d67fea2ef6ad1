"""The raw channel: `RawChunk`, one closed raw archive file (docs/raw-archive.md) as one MQTT message, and
`raw_payload`, its encoder, with `raw_file_bytes`, its decoder. Mirrored as JSON Schema in `docs/asyncapi.yaml`."""

from __future__ import annotations

import base64
import re
import zlib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.model import Identifier, WireInt

RAW_SCHEMA_VERSION: Literal[1] = 1

_ARCHIVE_NAME_RE = re.compile(r"^(?P<sensor>.+)_\d{8}T\d{4}Z(?:_\d+)?(?P<suffix>\.csv\.gz|\.swr)$")
#: per archive format (docs/raw-archive.md): the file suffix and how the file travels. Format 1 is gzip'd already;
#: format 2 is binary and stored uncompressed on the station (so that it reads fast), so it travels zlib'd.
FORMATS = {"sinkwatch-raw/1": (".csv.gz", "gzip+base64"), "sinkwatch-raw/2": (".swr", "zlib+base64")}
_FORMAT_OF_SUFFIX = {suffix: (name, encoding) for name, (suffix, encoding) in FORMATS.items()}
RAW_ZLIB_LEVEL = 6


class RawChunk(BaseModel):
    """One MQTT message on `sinkwatch/v1/<site>/<station>/raw`: a closed raw archive file (docs/raw-archive.md) in
    base64 — a format 1 file (gzip already) as it is, a format 2 file zlib-compressed first. Mirrored as JSON Schema
    in docs/asyncapi.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = RAW_SCHEMA_VERSION
    site: Identifier
    station: Identifier
    sensor: Identifier
    file: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}_\d{8}T\d{4}Z(_\d+)?(\.csv\.gz|\.swr)$",
                      description="the archive file's name: <sensor>_<YYYYMMDDTHHMM>Z[_n].swr (format 2) or "
                                  ".csv.gz (format 1)")
    format: Literal["sinkwatch-raw/1", "sinkwatch-raw/2"] = "sinkwatch-raw/1"
    encoding: Literal["gzip+base64", "zlib+base64"] = "gzip+base64"
    size: WireInt = Field(ge=0, description="length of the file in bytes (as stored, before any transfer encoding)")
    data: str = Field(min_length=1, pattern=r"^[A-Za-z0-9+/]+={0,2}$", description="the file, base64 (format 2: of "
                      "its zlib stream)")
    seq: int | None = Field(default=None, ge=0, description="the station's delivery sequence number on the raw "
                            "channel, named by the central service's receipt")

    @model_validator(mode="after")
    def _format_matches_file(self) -> RawChunk:
        suffix, encoding = FORMATS[self.format]
        if not self.file.endswith(suffix) or self.encoding != encoding:
            raise ValueError(f"format {self.format} travels as {suffix} files with encoding {encoding}, not "
                             f"{self.file} with {self.encoding}")
        return self


def raw_payload(site: str, station: str, path: Path, seq: int | None = None) -> bytes:
    """The `RawChunk` payload (docs/asyncapi.yaml) of a closed archive file."""
    match = _ARCHIVE_NAME_RE.match(path.name)
    if match is None:
        raise ValueError(f"{path.name} is not an archive file name (<sensor>_<YYYYMMDDTHHMM>Z.swr)")
    form, encoding = _FORMAT_OF_SUFFIX[match["suffix"]]
    data = path.read_bytes()
    carried = zlib.compress(data, RAW_ZLIB_LEVEL) if encoding == "zlib+base64" else data
    chunk = RawChunk.model_validate({"site": site, "station": station, "sensor": match["sensor"], "file": path.name,
                                     "format": form, "encoding": encoding, "size": len(data),
                                     "data": base64.b64encode(carried).decode("ascii"), "seq": seq})
    return chunk.model_dump_json().encode()


def raw_file_bytes(chunk: RawChunk) -> bytes:
    """The archive file a `RawChunk` carries, exactly as the station stored it (its SHA-256 is what the station
    signed). ValueError naming the problem: data not base64, not a whole zlib stream, or not `size` bytes long — a
    zlib stream is never inflated past `size` + 1 bytes, so a small message cannot unpack into gigabytes."""
    try:
        carried = base64.b64decode(chunk.data, validate=True)
    except ValueError as exc:
        raise ValueError(f"data is not base64: {exc}") from None
    if chunk.encoding == "gzip+base64":
        data = carried
    else:
        inflate = zlib.decompressobj()
        try:
            data = inflate.decompress(carried, chunk.size + 1)
        except zlib.error as exc:
            raise ValueError(f"data is not a zlib stream: {exc}") from None
        if len(data) > chunk.size or not inflate.eof or inflate.unused_data:
            raise ValueError("data is not one whole zlib stream of the file's size (truncated, longer, or "
                             "followed by other bytes)")
    if len(data) != chunk.size:
        raise ValueError(f"data holds {len(data)} bytes, size says {chunk.size}")
    return data
