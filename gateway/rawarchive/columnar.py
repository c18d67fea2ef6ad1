"""Format 2 of the raw archive: binary, columnar, chunked, checksummed (docs/raw-archive.md, "Format 2").

A file is a sequence of blocks, each a 16-byte block header and a payload::

    block   = magic b"SWRB" | kind (1 byte: H header, C chunk, F footer) | codec (1 byte: 0 stored, 1 zlib)
              | 2 zero bytes | payload length (uint32) | CRC-32 of the payload as stored (uint32) | payload
    H       = the header, UTF-8 JSON (the keys of format 1, "version": 2)
    C       = records (uint32) | columns (uint16) | 2 zero bytes
              | per column a 12-byte descriptor: type (1 byte: b h i q d) | decimals (int8) | flags (uint8,
                bit 0: delta-coded) | 1 zero byte | base (int64)
              | per column, in order, records × item size bytes (little-endian)
    F       = the footer, UTF-8 JSON

Column 0 of every chunk is TIME in microseconds (type i, delta-coded: value_k = base + delta_0 + … + delta_k, so a
half hour of 20 Hz stamps costs 4 bytes each); the others follow the header's `columns`. An integer type with
`decimals` d holds value × 10^d exactly (the writer checks that n / 10^d gives back the very float it was given;
otherwise the chunk's column is stored as float64, type d), and its smallest value (-128, -32768, …) is a missing
value. The reader turns every column into float64, NaN where missing.

Why this layout: a record costs the writer one list append (the encoding runs once per chunk, in the standard
library only, so a station without the flux runner never loads numpy); a reader turns a half hour into arrays with a
few numpy calls per column instead of parsing text; a power cut or a kill -9 leaves whole chunks followed by at most
one torn block, which the CRC and the length expose, so the file reads up to its last complete chunk.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import operator
import os
import struct
import sys
import zlib
from array import array
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

MAGIC = b"SWRB"
BLOCK = struct.Struct("<4sBBxxII")  # magic, kind, codec, length, crc32
CHUNK = struct.Struct("<IHxx")  # records, columns
COLUMN = struct.Struct("<cbBxq")  # type, decimals, flags, base
HEADER_KIND, CHUNK_KIND, FOOTER_KIND = ord("H"), ord("C"), ord("F")
STORED, ZLIB = 0, 1
DELTA = 1  # column flag
TIME_DECIMALS = 6  # TIME in microseconds
MAX_DECIMALS = 9
MAX_INFLATED = 64 << 20  # a zlib'd block inflating past this is refused (a chunk of 36,000 × 20 float64 is 5.8 MB)
#: the integer types, smallest first: (type code, array typecode, item size, missing-value sentinel = its minimum)
INT_TYPES = ((b"b", "b", 1), (b"h", "h", 2), (b"i", "i", 4), (b"q", "q", 8))
_ITEM_SIZE = {b"b": 1, b"h": 2, b"i": 4, b"q": 8, b"d": 8}
_NUMPY_TYPE = {b"b": "<i1", b"h": "<i2", b"i": "<i4", b"q": "<i8", b"d": "<f8"}
_EXACT_INT = 2**53  # larger integers do not convert to float64 exactly
_SWAP = sys.byteorder != "little"


def block(kind: int, payload: bytes, codec: int = STORED) -> bytes:
    """One block: its header and `payload` (already encoded with `codec`)."""
    return BLOCK.pack(MAGIC, kind, codec, len(payload), zlib.crc32(payload)) + payload


def json_block(kind: int, value: dict[str, Any]) -> bytes:
    return block(kind, json.dumps(value, separators=(",", ":"), default=str).encode("utf-8"))


# --- writing (standard library only) --------------------------------------------------------------------------


def _int_type(low: int, high: int) -> tuple[bytes, str, int] | None:
    for code, typecode, size in INT_TYPES:
        sentinel = -(1 << (8 * size - 1))
        if sentinel < low and high < -sentinel and high < _EXACT_INT and -low < _EXACT_INT:
            return code, typecode, sentinel
    return None


def _to_bytes(values: array[Any]) -> bytes:
    if _SWAP:
        values.byteswap()
    return values.tobytes()


def _decimals(values: Sequence[float]) -> int | None:
    """The fewest decimals d with n / 10^d == v for every value (n = round(v·10^d)), or None."""
    d = 0
    scale = 1
    for v in values:
        if not abs(v) < 1e15:
            return None
        while True:
            n = round(v * scale)
            if n / scale == v and (n or math.copysign(1.0, v) > 0):  # -0.0 keeps its sign only as a float
                break
            d += 1
            if d > MAX_DECIMALS:
                return None
            scale *= 10
    return d


def encode_column_exact(values: Sequence[float | None]) -> tuple[bytes, bytes]:
    """(descriptor, data) of one value column of a chunk, value by value: the definition `encode_column` keeps to
    (and falls back on for anything but a column of finite numbers of moderate size)."""
    present = [v for v in values if v is not None and v == v]
    if all(math.isfinite(v) for v in present):
        d = _decimals(present)
        if d is not None:
            scale = 10**d
            ints = [round(v * scale) for v in present]
            kind = _int_type(min(ints, default=0), max(ints, default=0))
            if kind is not None:
                code, typecode, sentinel = kind
                if len(ints) != len(values):
                    it = iter(ints)
                    ints = [sentinel if v is None or v != v else next(it) for v in values]
                return COLUMN.pack(code, d, 0, 0), _to_bytes(array(typecode, ints))
    floats = array("d", [math.nan if v is None else v for v in values])
    return COLUMN.pack(b"d", 0, 0, 0), _to_bytes(floats)


#: |v|·10^d up to this: the product is within 2^-12 of an integer when v has d decimals, so a value with d decimals
#: has d + 1 as well, and the fewest decimals of a column is the largest of its values' fewest
_MONOTONE_LIMIT = float(2**40)
_NEGATIVE_ZERO = 0x8000000000000000  # -0.0's bits
_SAMPLE = 8  # values whose fewest decimals, taken one by one, start the search


def _scaled(values: Sequence[float], scale: int) -> list[int]:
    """round(v * scale) for every value. A float `scale` (exact: 10^d <= 10^15 < 2^53) gives the very products
    an int one does, without converting it again for every value, and every product is a float, so its own
    `__round__` is called without `round`'s look-up."""
    return list(map(float.__round__, map(operator.mul, values, itertools.repeat(float(scale)))))


def encode_column(values: Sequence[float | None]) -> tuple[bytes, bytes]:
    """(descriptor, data) of one value column of a chunk: the bytes of `encode_column_exact`, with the common
    column (finite numbers, no missing value, no -0.0, |v|·10^d <= 2^40) checked a whole column per step in C
    loops (`map`) instead of a Python step per value: the archive encodes 72,000 records an hour per sonic."""
    if not values or None in values:
        return encode_column_exact(values)
    numbers = cast("Sequence[float]", values)
    total = sum(numbers)
    if not math.isfinite(total):  # a NaN or an infinity among them (or a sum that overflowed)
        return encode_column_exact(values)
    low, high = min(numbers), max(numbers)
    magnitude = max(high, -low)
    if not magnitude < 1e15 or (0.0 in numbers and _NEGATIVE_ZERO in array("Q", array("d", numbers).tobytes())):
        return encode_column_exact(values)
    d = _decimals(numbers[:_SAMPLE])  # a lower bound of the column's fewest decimals
    while d is not None and d <= MAX_DECIMALS:
        scale = 10**d
        if magnitude * scale > _MONOTONE_LIMIT:
            break
        ints = _scaled(numbers, scale)
        # n / 10^d: n (|n| <= 2^40) and 10^d are exact as floats, so the float division rounds the very quotient
        # the int division does
        if list(map(operator.truediv, ints, itertools.repeat(float(scale)))) == list(numbers):
            kind = _int_type(round(low * scale), round(high * scale))
            if kind is None:
                break
            return COLUMN.pack(kind[0], d, 0, 0), _to_bytes(array(kind[1], ints))
        d += 1
    return encode_column_exact(values)


def encode_time(times: Sequence[float]) -> tuple[bytes, bytes]:
    """(descriptor, data) of the TIME column: microseconds, delta-coded in int32 when the steps fit."""
    micros = _scaled(times, 1_000_000)
    base = micros[0] if micros else 0
    deltas = [0, *map(operator.sub, micros[1:], micros[:-1])] if micros else []
    if not deltas or -(2**31) < min(deltas) <= max(deltas) < 2**31:
        return COLUMN.pack(b"i", TIME_DECIMALS, DELTA, base), _to_bytes(array("i", deltas))
    return COLUMN.pack(b"q", TIME_DECIMALS, 0, 0), _to_bytes(array("q", micros))


def chunk_block(times: Sequence[float], rows: Sequence[Sequence[float | None]], width: int,
                compresslevel: int = 0) -> bytes:
    """The C block of `rows` (one tuple of `width` values per record) stamped `times`."""
    descriptors: list[bytes] = []
    datas: list[bytes] = []
    descriptor, data = encode_time(times)
    descriptors.append(descriptor)
    datas.append(data)
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in range(width)]
    if len(columns) != width:
        raise ValueError(f"records hold {len(columns)} values, the file has {width} columns")
    for values in columns:
        descriptor, data = encode_column(values)
        descriptors.append(descriptor)
        datas.append(data)
    payload = b"".join([CHUNK.pack(len(times), width + 1), *descriptors, *datas])
    if compresslevel:
        return block(CHUNK_KIND, zlib.compress(payload, compresslevel), ZLIB)
    return block(CHUNK_KIND, payload)


class ChunkFile:
    """The writing end of a format-2 file: the header at open, one chunk per `write_chunk`, the footer at close.
    Every block goes to the kernel in one `os.write`, so a killed writer leaves whole blocks and at most one torn
    block at the end."""

    def __init__(self, path: str | os.PathLike[str], header: dict[str, Any]) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            self._write(json_block(HEADER_KIND, header))
        except OSError:
            # a disk that refuses the header (full, read-only): no file without a header left behind, no open fd
            self.abandon()
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def write_chunk(self, data: bytes) -> None:
        self._write(data)

    def close(self, footer: dict[str, Any]) -> None:
        try:
            self._write(json_block(FOOTER_KIND, footer))
            os.fsync(self._fd)
        finally:
            os.close(self._fd)

    def abandon(self) -> None:
        """Close without a footer (a write failed): the file keeps its intact blocks, as a killed writer's does."""
        with contextlib.suppress(OSError):
            os.close(self._fd)


# --- reading ----------------------------------------------------------------------------------------------------


class Blocks:
    """The intact blocks of a format-2 file, in order. `intact` is False when a torn or corrupt block ended the
    walk (a power cut, a kill -9, a damaged copy); everything before it is kept."""

    def __init__(self, data: bytes | memoryview, name: str) -> None:
        view = memoryview(data)
        self.header: dict[str, Any] | None = None
        self.footer: dict[str, Any] | None = None
        self.chunks: list[bytes | memoryview] = []
        self.intact = True
        self.problem = ""
        offset = 0
        size = len(view)
        while offset < size:
            if size - offset < BLOCK.size:
                self._torn(f"{size - offset} bytes after the last block")
                break
            magic, kind, codec, length, crc = BLOCK.unpack_from(view, offset)
            start = offset + BLOCK.size
            payload = view[start:start + length]
            if magic != MAGIC:
                self._torn(f"no block at byte {offset}")
                break
            if len(payload) != length or zlib.crc32(payload) != crc:
                self._torn(f"block at byte {offset} is cut short or fails its CRC")
                break
            offset = start + length
            if codec == ZLIB:
                inflate = zlib.decompressobj()
                try:
                    inflated = inflate.decompress(payload, MAX_INFLATED)
                except zlib.error as exc:
                    raise ValueError(f"{name}: block at byte {offset} does not inflate: {exc}") from None
                if not inflate.eof:
                    raise ValueError(f"{name}: block at byte {offset} inflates past {MAX_INFLATED} bytes or is cut")
                payload = memoryview(inflated)
            elif codec != STORED:
                raise ValueError(f"{name}: block at byte {offset} has codec {codec}, known are 0 and 1")
            if kind == HEADER_KIND and self.header is None:
                self.header = _json_object(payload, name, "header")
            elif kind == CHUNK_KIND and self.header is not None:
                self.chunks.append(payload)
            elif kind == FOOTER_KIND and self.header is not None:
                self.footer = _json_object(payload, name, "footer")
                break
            else:
                raise ValueError(f"{name}: unexpected block {chr(kind)!r} at byte {offset}")
        if self.header is None:
            raise ValueError(f"{name}: no sinkwatch-raw header block ({self.problem or 'empty file'})")

    def _torn(self, problem: str) -> None:
        self.intact = False
        self.problem = problem


def _json_object(payload: bytes | memoryview, name: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(bytes(payload).decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{name}: {what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{name}: {what} is JSON but not an object ({type(value).__name__})")
    return value


Layout = tuple[bytes, int, int, int]  # type code, decimals, flags, base


def chunk_layouts(chunks: Sequence[bytes | memoryview], width: int,
                  name: str) -> tuple[list[list[Layout]], list[int], list[list[tuple[int, int]]]]:
    """Per chunk: the column descriptors, the record count, and each column's byte span; ValueError naming the
    chunk when its descriptors do not describe exactly its bytes (standard library only: the central ingest checks
    every uplinked file with it)."""
    layouts: list[list[Layout]] = []
    counts: list[int] = []
    spans: list[list[tuple[int, int]]] = []
    for index, payload in enumerate(chunks):
        try:
            records, columns = CHUNK.unpack_from(payload, 0)
            if columns != width:
                raise ValueError(f"{name}: chunk {index + 1} has {columns} columns, the header names {width}")
            offset = CHUNK.size + columns * COLUMN.size
            layout: list[Layout] = []
            span = []
            for j in range(columns):
                code, decimals, flags, base = COLUMN.unpack_from(payload, CHUNK.size + j * COLUMN.size)
                size = _ITEM_SIZE.get(code)
                if size is None or not 0 <= decimals <= MAX_DECIMALS or flags & ~DELTA or (flags and code == b"d"):
                    raise ValueError(f"{name}: chunk {index + 1} column {j}: unknown encoding {code!r} "
                                     f"{decimals} {flags}")
                layout.append((code, decimals, flags, base))
                span.append((offset, offset + records * size))
                offset += records * size
        except struct.error as exc:
            raise ValueError(f"{name}: chunk {index + 1} is shorter than its descriptors: {exc}") from None
        if offset != len(payload):
            raise ValueError(f"{name}: chunk {index + 1} holds {len(payload)} bytes, its columns {offset}")
        layouts.append(layout)
        counts.append(records)
        spans.append(span)
    return layouts, counts, spans


def decode_chunks(chunks: Sequence[bytes | memoryview], width: int, name: str) -> list[NDArray[np.float64]]:
    """The `width` columns (TIME first) of every chunk, concatenated, as float64 arrays (NaN where missing).

    Consecutive chunks that encode a column alike are decoded in one numpy pass, so the cost is a few calls per
    column and half hour rather than per record."""
    import numpy as np

    layouts, counts, spans = chunk_layouts(chunks, width, name)
    kept = [k for k, count in enumerate(counts) if count]  # a chunk without records adds nothing
    chunks = [chunks[k] for k in kept]
    layouts, counts, spans = [layouts[k] for k in kept], [counts[k] for k in kept], [spans[k] for k in kept]
    if not chunks:
        return [np.empty(0) for _ in range(width)]
    out: list[NDArray[np.float64]] = []
    for j in range(width):
        parts: list[NDArray[np.float64]] = []
        first = 0
        while first < len(chunks):
            last = first + 1
            code, decimals, flags, _ = layouts[first][j]
            while last < len(chunks) and layouts[last][j][:3] == (code, decimals, flags):
                last += 1
            raw = b"".join(chunks[k][spans[k][j][0]:spans[k][j][1]] for k in range(first, last))
            parts.append(_decode(np.frombuffer(raw, dtype=_NUMPY_TYPE[code]), code, decimals, flags,
                                 [layouts[k][j][3] for k in range(first, last)], counts[first:last]))
            first = last
        out.append(np.concatenate(parts) if len(parts) != 1 else parts[0])
    return out


def _decode(raw: NDArray[Any], code: bytes, decimals: int, flags: int, bases: list[int],
            counts: list[int]) -> NDArray[np.float64]:
    import numpy as np

    if code == b"d":
        return raw.astype(np.float64)
    if flags & DELTA:
        # value = base of its chunk + running sum of the deltas inside the chunk, as one cumulative sum
        total = np.cumsum(raw, dtype=np.int64)
        ends = np.cumsum(counts)
        before = np.concatenate(([0], total[ends[:-1] - 1])) if len(counts) > 1 else np.zeros(1, np.int64)
        ints = total + np.repeat(np.asarray(bases, dtype=np.int64) - before, counts)
        values = ints.astype(np.float64)
    else:
        values = raw.astype(np.float64)
        missing = raw == np.iinfo(raw.dtype).min
        if missing.any():
            values[missing] = np.nan
    if decimals:
        values /= 10.0**decimals  # exact powers of ten: correctly rounded, as the writer checked
    return values
