"""Writer and reader of the raw archive (format: docs/raw-archive.md).

Format 2 (written since the edge-efficiency work, `<sensor>_<YYYYMMDDTHHMM>Z.swr`): binary, columnar, in chunks of
at most `flush_every` records and `flush_after_s` seconds of records, each with its CRC — see
`gateway.rawarchive.columnar`. Format 1 (`….csv.gz`, older stations and archives) is gzip'd text and is still read;
`CsvArchiveWriter` still writes it, so its reader stays tested::

    #sinkwatch-raw {"format": "sinkwatch-raw", "version": 1, "site": ..., "columns": [...], ...}   <- header
    TIME,U,V,W,T_SONIC,DIAG_SONIC                                                                 <- column names
    1764064800.012345,1.234,-0.456,0.078,22.41,0                                                   <- one record
    ...
    #footer {"records": 36000, "bad_records": {"checksum": 3}, "clock_steps": [], "closed": "rotation", ...}

In both, TIME is the arrival time of the record's line end in UTC unix seconds (microseconds), mapped from the
monotonic clock (gateway/clock.py) — for records read together in one burst, one instrument period apart and never
after their read (gateway/edge/streams/stamping.py) —, and a missing value reads as NaN. A file without footer was
not closed (power cut, kill -9); the reader returns what it holds and says so (`complete=False`). The writer hands
the kernel one chunk at a time, so a crash of the daemon loses at most one chunk's records, a power cut also what
the kernel had not written. Writing needs only the standard library: numpy is imported by the readers.
"""

from __future__ import annotations

import bisect
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
from typing import TYPE_CHECKING, Any

from gateway.rawarchive import columnar

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

FORMAT_NAME = "sinkwatch-raw"
FORMAT_VERSION = 2  # what ArchiveWriter writes
CSV_FORMAT_VERSION = 1  # gzip'd text: read, and written by CsvArchiveWriter only
HEADER_PREFIX = "#sinkwatch-raw "  # format 1
FOOTER_PREFIX = "#footer "  # format 1
PERIOD_S = 1800
SUFFIX = ".swr"  # format 2
CSV_SUFFIX = ".csv.gz"  # format 1
SUFFIXES = (SUFFIX, CSV_SUFFIX)
GZIP_MAGIC = b"\x1f\x8b"
FLUSH_EVERY = 200  # records of a chunk at most
# seconds of records (by their stamps) a chunk holds at most: a slow instrument's chunk, and what a killed writer can
# lose, is bounded in time too (at 20 Hz: 100 records instead of 200, for ~3 % more bytes; docs/raw-archive.md)
FLUSH_AFTER_S = 5.0


def archive_suffix(name: str) -> str | None:
    """The archive suffix `name` ends with (a closed file's name, no `.part`), or None."""
    return next((s for s in SUFFIXES if name.endswith(s)), None)


def file_period_start(unix_time: float, period_s: int = PERIOD_S) -> int:
    """Start (unix seconds) of the half hour holding `unix_time`, aligned to :00/:30 UTC."""
    return int(math.floor(unix_time / period_s) * period_s)


def _stamp(unix_time: float) -> str:
    return datetime.fromtimestamp(unix_time, UTC).strftime("%Y%m%dT%H%MZ")


def _free_path(directory: Path, sensor: str, period_start: int, suffix: str) -> Path:
    """The file name of a new file of that half hour: `_1`, `_2`, … after a restart or a clock step."""
    base = f"{sensor}_{_stamp(period_start)}"
    path = directory / f"{base}{suffix}"
    part = 1
    while any((directory / f"{path.name.removesuffix(suffix)}{other}{part_suffix}").exists()
              for other in SUFFIXES for part_suffix in ("", ".part")):
        path = directory / f"{base}_{part}{suffix}"
        part += 1
    return path


def _header(sensor: str, period_start: int, columns: Sequence[tuple[str, str]], version: int,
            metadata: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": FORMAT_NAME,
        "version": version,
        "sensor": sensor,
        "period_start": datetime.fromtimestamp(period_start, UTC).isoformat().replace("+00:00", "Z"),
        "period_s": PERIOD_S,
        "columns": [{"name": n, "unit": u} for n, u in columns],
        "time": {"column": "TIME", "unit": "s since 1970-01-01T00:00:00Z",
                 "meaning": "arrival of the record's line end (records read together: one instrument "
                            "period apart, never after their read), monotonic clock mapped to UTC"},
        **metadata,
    }


class ArchiveWriter:
    """One open archive file, format 2. `metadata` goes into the header as given (instrument, heights, frequency,
    ...); the writer adds format, columns, units, period and file start. `write` only keeps the record; every
    `flush_every` records, or the first record stamped `flush_after_s` or more after the chunk's first (None: no
    time limit), close one checksummed chunk handed to the kernel (`compresslevel` > 0: zlib'd)."""

    def __init__(self, directory: Path, sensor: str, period_start: int, columns: Sequence[tuple[str, str]],
                 metadata: dict[str, Any], *, flush_every: int = FLUSH_EVERY,
                 flush_after_s: float | None = FLUSH_AFTER_S, compresslevel: int = 0) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = _free_path(directory, sensor, period_start, SUFFIX)
        self.part_path = self.path.with_name(self.path.name + ".part")  # renamed to `path` when closed
        self.period_start = period_start
        self.period_end = period_start + PERIOD_S
        self.columns = list(columns)
        self.records = 0
        self.written = 0  # records handed to the kernel
        self.first_time: float | None = None
        self.last_time: float | None = None
        self._flush_every = flush_every
        self._flush_after_s = math.inf if flush_after_s is None else flush_after_s
        self._compresslevel = compresslevel
        self._times: list[float] = []
        self._rows: list[Sequence[float | None]] = []
        self._file = columnar.ChunkFile(self.part_path, _header(sensor, period_start, self.columns,
                                                                FORMAT_VERSION, metadata))

    def write(self, unix_time: float, values: Sequence[float | None]) -> None:
        if self.first_time is None:
            self.first_time = unix_time
        self.last_time = unix_time
        self._times.append(unix_time)
        self._rows.append(values)
        self.records += 1
        if len(self._times) >= self._flush_every or unix_time - self._times[0] >= self._flush_after_s:
            self.flush()

    def write_many(self, unix_times: Sequence[float], rows: Sequence[Sequence[float | None]]) -> None:
        """`write` for each record in order: the same chunks, flushed at the same records."""
        if not unix_times:
            return
        if self.first_time is None:
            self.first_time = unix_times[0]
        self.last_time = unix_times[-1]
        self.records += len(unix_times)
        taken = 0
        count = len(unix_times)
        while taken < count:
            end = min(count, taken + max(1, self._flush_every - len(self._times)))
            # the first record stamped `flush_after_s` after the chunk's first closes it, as in `write` (the stamps
            # of a read are in order)
            due = (self._times[0] if self._times else unix_times[taken]) + self._flush_after_s
            if unix_times[end - 1] >= due:
                end = min(end, bisect.bisect_left(unix_times, due, taken, end) + 1)
            self._times.extend(unix_times[taken:end])
            self._rows.extend(rows[taken:end])
            taken = end
            if len(self._times) >= self._flush_every or self._times[-1] - self._times[0] >= self._flush_after_s:
                self.flush()

    def flush(self) -> None:
        """The records kept so far become one chunk, handed to the kernel."""
        if not self._times:
            return
        data = columnar.chunk_block(self._times, self._rows, len(self.columns), self._compresslevel)
        count = len(self._times)
        self._times, self._rows = [], []
        self._file.write_chunk(data)
        self.written += count

    def abandon(self) -> None:
        """Give the file up after a failed write: closed without a footer, left under its `.part` name with its
        intact chunks (as a killed writer leaves it); `records - written` records never reached it."""
        self._times, self._rows = [], []
        self._file.abandon()

    def close(self, footer: dict[str, Any]) -> Path:
        """Write the last chunk and the footer, fsync, rename to the final name; returns it."""
        self.flush()
        self._file.close({"records": self.records, **footer})
        self.part_path.rename(self.path)
        return self.path


class CsvArchiveWriter:
    """One open archive file in format 1 (gzip'd text). Stations write format 2; this writer stays so that the
    reader of older archives is tested against the very writer that made them."""

    def __init__(self, directory: Path, sensor: str, period_start: int, columns: Sequence[tuple[str, str]],
                 metadata: dict[str, Any], *, flush_every: int = 200, compresslevel: int = 6) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        path = _free_path(directory, sensor, period_start, CSV_SUFFIX)
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
        header = _header(sensor, period_start, self.columns, CSV_FORMAT_VERSION, metadata)
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
    """Read an archive file of either format (closed, or a `.part` still being written / cut by a power loss)."""
    return read_archive_bytes(Path(path).read_bytes(), str(path))


def read_archive_bytes(raw: bytes, path: Path | str = "<bytes>") -> ArchiveData:
    """`read_archive` of a file's bytes; `path` names it in errors."""
    if raw[:len(columnar.MAGIC)] == columnar.MAGIC[:len(raw)]:  # also an empty or barely begun .part
        return _read_columnar(raw, str(path))
    if not raw.startswith(GZIP_MAGIC) and raw:
        raise ValueError(f"{path}: not a {FORMAT_NAME} file (neither format 2 blocks nor format 1 gzip)")
    return _read_csv(raw, path)


def _columns_of(header: dict[str, Any], path: Path | str) -> list[dict[str, str]]:
    columns = header.get("columns", [])
    if not isinstance(columns, list) or not all(
            isinstance(c, dict) and isinstance(c.get("name"), str) and isinstance(c.get("unit"), str) for c in columns):
        raise ValueError(f"{path}: header 'columns' is not a list of {{name, unit}} objects")
    return columns


def _read_columnar(raw: bytes, path: str) -> ArchiveData:
    blocks = columnar.Blocks(raw, path)
    header = blocks.header
    assert header is not None
    if header.get("format") != FORMAT_NAME or header.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: header names {header.get('format')!r} version {header.get('version')!r}, "
                         f"expected {FORMAT_NAME!r} version {FORMAT_VERSION}")
    columns = _columns_of(header, path)
    arrays = columnar.decode_chunks(blocks.chunks, len(columns) + 1, path)
    return ArchiveData(
        header=header,
        time=arrays[0],
        columns={c["name"]: a for c, a in zip(columns, arrays[1:], strict=True)},
        footer=blocks.footer,
        complete=blocks.intact and blocks.footer is not None,
        units={c["name"]: c["unit"] for c in columns},
    )


def check_archive_bytes(raw: bytes, path: str = "<bytes>") -> dict[str, Any]:
    """The header of a closed, intact archive file of either format; ValueError naming what is wrong otherwise.
    Walks the blocks (CRCs) or inflates the gzip stream without decoding the records, so it is cheap and needs no
    numpy (the central ingest checks every uplinked file with it)."""
    if raw.startswith(columnar.MAGIC):
        blocks = columnar.Blocks(raw, path)
        if not blocks.intact:
            raise ValueError(f"{path}: {blocks.problem}")
        if blocks.footer is None:
            raise ValueError(f"{path}: no footer block (the file was not closed)")
        header = blocks.header
        assert header is not None
        if header.get("format") != FORMAT_NAME or header.get("version") != FORMAT_VERSION:
            raise ValueError(f"{path}: header names {header.get('format')!r} version {header.get('version')!r}, "
                             f"expected {FORMAT_NAME!r} version {FORMAT_VERSION}")
        columnar.chunk_layouts(blocks.chunks, len(_columns_of(header, path)) + 1, path)
        return header
    raise ValueError(f"{path}: not a format 2 file")


def _read_csv(raw: bytes, path: Path | str) -> ArchiveData:
    import numpy as np

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
    if header.get("version") != CSV_FORMAT_VERSION:
        raise ValueError(f"{path}: format version {header.get('version')} is not {CSV_FORMAT_VERSION}")
    columns = _columns_of(header, path)
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
