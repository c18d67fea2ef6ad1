"""Writer and reader of the raw archive (format: docs/raw-archive.md).

A file, gzip-compressed, is text::

    #sinkwatch-raw {"format": "sinkwatch-raw", "version": 1, "site": ..., "columns": [...], ...}   <- header
    TIME,U,V,W,T_SONIC,DIAG_SONIC                                                                 <- column names
    1764064800.012345,1.234,-0.456,0.078,22.41,0                                                   <- one record
    ...
    #footer {"records": 36000, "bad_records": {"checksum": 3}, "clock_steps": [], "closed": "rotation", ...}

TIME is the arrival time of the record's line end in UTC unix seconds (6 decimals), mapped from the monotonic clock
(gateway/clock.py). A missing value is an empty field. A file without footer was not closed (power cut); the reader
returns what it holds and says so (`complete=False`). The writer flushes the gzip stream every `flush_every`
records, so a power cut loses at most that many records plus what the kernel had not written.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

FORMAT_NAME = "sinkwatch-raw"
FORMAT_VERSION = 1
HEADER_PREFIX = "#sinkwatch-raw "
FOOTER_PREFIX = "#footer "
PERIOD_S = 1800
SUFFIX = ".csv.gz"


def file_period_start(unix_time: float, period_s: int = PERIOD_S) -> int:
    """Start (unix seconds) of the half hour holding `unix_time`, aligned to :00/:30 UTC."""
    return int(math.floor(unix_time / period_s) * period_s)


def _stamp(unix_time: float) -> str:
    return datetime.fromtimestamp(unix_time, UTC).strftime("%Y%m%dT%H%MZ")


class ArchiveWriter:
    """One open archive file. `metadata` goes into the header as given (instrument, heights, frequency, ...);
    the writer adds format, columns, units, period and file start."""

    def __init__(self, directory: Path, sensor: str, period_start: int, columns: Sequence[tuple[str, str]],
                 metadata: dict[str, Any], *, flush_every: int = 200, compresslevel: int = 6) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        base = f"{sensor}_{_stamp(period_start)}"
        path = directory / f"{base}{SUFFIX}"
        part = 1
        while path.exists() or path.with_name(path.name + ".part").exists():  # a restart or a clock step
            path = directory / f"{base}_{part}{SUFFIX}"
            part += 1
        self.path = path
        self.part_path = path.with_name(path.name + ".part")  # renamed to `path` when closed
        self.period_start = period_start
        self.period_end = period_start + PERIOD_S
        self.columns = list(columns)
        self.records = 0
        self.first_time: float | None = None
        self.last_time: float | None = None
        self._flush_every = flush_every
        self._raw = open(self.part_path, "wb")  # noqa: SIM115 - closed in close()
        self._gz = gzip.GzipFile(filename="", fileobj=self._raw, mode="wb", compresslevel=compresslevel, mtime=0)
        self._text = io.TextIOWrapper(self._gz, encoding="utf-8", newline="\n")
        header = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "sensor": sensor,
            "period_start": datetime.fromtimestamp(period_start, UTC).isoformat().replace("+00:00", "Z"),
            "period_s": PERIOD_S,
            "columns": [{"name": n, "unit": u} for n, u in self.columns],
            "time": {"column": "TIME", "unit": "s since 1970-01-01T00:00:00Z",
                     "meaning": "arrival of the record's line end, monotonic clock mapped to UTC"},
            **metadata,
        }
        self._text.write(HEADER_PREFIX + json.dumps(header, separators=(",", ":")) + "\n")
        self._text.write(",".join(["TIME", *(n for n, _ in self.columns)]) + "\n")

    def write(self, unix_time: float, values: Sequence[float | None]) -> None:
        if self.first_time is None:
            self.first_time = unix_time
        self.last_time = unix_time
        self._text.write(f"{unix_time:.6f}," + ",".join("" if v is None else repr(v) for v in values) + "\n")
        self.records += 1
        if self.records % self._flush_every == 0:
            self._text.flush()
            self._gz.flush(zlib.Z_SYNC_FLUSH)

    def close(self, footer: dict[str, Any]) -> Path:
        """Write the footer, finish the gzip stream and fsync; returns the final path."""
        body = {"records": self.records, **footer}
        self._text.write(FOOTER_PREFIX + json.dumps(body, separators=(",", ":"), default=str) + "\n")
        self._text.close()  # closes the gzip stream, which writes its trailer
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()
        self.part_path.rename(self.path)
        return self.path


@dataclass
class ArchiveData:
    """One archive file as arrays: `time` (unix seconds, float64) and one float64 array per column (NaN where the
    record had no value)."""

    header: dict[str, Any]
    time: NDArray[np.float64]
    columns: dict[str, NDArray[np.float64]]
    footer: dict[str, Any] | None
    complete: bool  # footer present and gzip stream intact
    units: dict[str, str] = field(default_factory=dict)


def _json_object(text: str, path: Path | str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than the JSON parser recurses
        raise ValueError(f"{path}: {what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: {what} is JSON but not an object ({type(value).__name__})")
    return value


def read_archive(path: Path | str) -> ArchiveData:
    """Read an archive file (closed `.csv.gz`, or a `.part` still being written / cut by a power loss)."""
    raw = Path(path).read_bytes()
    decompressor = zlib.decompressobj(wbits=31)
    complete = True
    try:
        text = decompressor.decompress(raw).decode("utf-8", errors="replace")
        if not decompressor.eof:
            complete = False
    except zlib.error:
        complete = False
        text = ""
    lines = text.split("\n")
    if not lines or not lines[0].startswith(HEADER_PREFIX):
        raise ValueError(f"{path}: not a {FORMAT_NAME} file (no header line)")
    header = _json_object(lines[0][len(HEADER_PREFIX):], path, "header")
    if header.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format version {header.get('version')} is not {FORMAT_VERSION}")
    columns = header.get("columns", [])
    if not isinstance(columns, list) or not all(
            isinstance(c, dict) and isinstance(c.get("name"), str) and isinstance(c.get("unit"), str) for c in columns):
        raise ValueError(f"{path}: header 'columns' is not a list of {{name, unit}} objects")
    if len(lines) < 2:
        raise ValueError(f"{path}: no column-name line after the header (file cut short)")
    names = lines[1].split(",")[1:]
    footer: dict[str, Any] | None = None
    rows: list[list[float]] = []
    width = len(names) + 1
    for line in lines[2:]:
        if line.startswith(FOOTER_PREFIX):
            footer = _json_object(line[len(FOOTER_PREFIX):], path, "footer")
            break
        parts = line.split(",")
        if len(parts) != width:
            continue  # a torn last line
        try:
            rows.append([float(p) if p else math.nan for p in parts])
        except ValueError:
            raise ValueError(f"{path}: record {len(rows) + 1} holds a value that is not a number: {line[:80]!r}") \
                from None
    table = np.array(rows, dtype=np.float64).reshape(len(rows), width)
    units = {c["name"]: c["unit"] for c in columns}
    return ArchiveData(
        header=header,
        time=table[:, 0].copy(),
        columns={name: table[:, i + 1].copy() for i, name in enumerate(names)},
        footer=footer,
        complete=complete and footer is not None,
        units=units,
    )
