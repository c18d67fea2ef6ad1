"""Raw archive: round trip of both formats, half-hour alignment, missing values, the exact encodings of format 2,
and files cut by a power loss or a kill -9 (read up to the last complete chunk)."""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from gateway.rawarchive import (
    ArchiveWriter,
    CsvArchiveWriter,
    check_archive_bytes,
    columnar,
    file_period_start,
    read_archive,
    read_archive_bytes,
)

T0 = 1_795_509_000  # 2026-11-24T08:30:00Z, a half-hour boundary
REPO = Path(__file__).resolve().parents[2]


def test_period_start_aligns_to_half_hours_utc() -> None:
    assert file_period_start(T0) == T0
    assert file_period_start(T0 + 1799.999) == T0
    assert file_period_start(T0 + 1800) == T0 + 1800
    assert file_period_start(T0 - 0.001) == T0 - 1800


@pytest.mark.parametrize("writer_class", [ArchiveWriter, CsvArchiveWriter])
def test_round_trip_keeps_values_exactly_and_missing_as_nan(tmp_path: Path, writer_class: type) -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(size=(500, 3))
    values[:, 2] = np.round(values[:, 2] + 20, 4)  # an instrument's fixed decimals: stored as integers
    writer = writer_class(tmp_path, "sonic", T0, [("U", "m s-1"), ("W", "m s-1"), ("T_SONIC", "degC")],
                          {"site": "s", "station": "st", "frequency_hz": 20.0, "instrument": {"height_m": 25.0}})
    times = T0 + np.arange(500) / 20 + rng.uniform(0, 0.01, 500)
    for i in range(500):
        row: list[float | None] = [float(x) for x in values[i]]
        if i % 50 == 0:
            row[1] = None
            row[2] = None
        writer.write(float(times[i]), row)
    path = writer.close({"bad_records": {"checksum": 2}})
    suffix = ".swr" if writer_class is ArchiveWriter else ".csv.gz"
    assert path.name == f"sonic_20261124T0830Z{suffix}" and not writer.part_path.exists()
    data = read_archive(path)
    assert data.complete and data.footer is not None and data.footer["bad_records"] == {"checksum": 2}
    assert data.footer["records"] == 500
    assert data.header["version"] == (2 if writer_class is ArchiveWriter else 1)
    assert data.header["instrument"]["height_m"] == 25.0 and data.units["T_SONIC"] == "degC"
    assert data.header["period_start"] == "2026-11-24T08:30:00Z"
    np.testing.assert_array_equal(data.columns["U"], values[:, 0])
    keep = np.arange(500) % 50 != 0
    np.testing.assert_array_equal(data.columns["T_SONIC"][keep], values[keep, 2])
    if writer_class is ArchiveWriter:  # microseconds, exactly
        np.testing.assert_array_equal(data.time, np.round(times * 1e6) / 1e6)
    else:  # format 1 prints 6 decimals, rounding the binary value
        np.testing.assert_allclose(data.time, times, rtol=0, atol=1e-6)
    for name in ("W", "T_SONIC"):
        assert all(math.isnan(data.columns[name][i]) == (i % 50 == 0) for i in range(500))


def test_format_2_stores_each_chunk_column_exactly_in_its_smallest_encoding() -> None:
    cases: list[tuple[list[float | None], bytes]] = [
        ([1.5, -2.25, None, 0.0], b"h"),  # two decimals, |n| = 225 > 127: int16
        ([21.8473, 21.85, 21.9], b"i"),  # four decimals
        ([0.1 + 0.2, 1.0], b"d"),  # 0.30000000000000004 has no short decimal form
        ([1.0, math.inf], b"d"),
        ([-0.0, 1.0], b"d"),  # the sign of zero survives only as a float
        ([1e300, 1.0], b"d"),
        ([None, None], b"b"),
        ([float("nan"), 3.0], b"b"),
        ([2.0**40, 1.0], b"q"),
    ]
    for values, expected in cases:
        descriptor, _ = columnar.encode_column(values)
        code = columnar.COLUMN.unpack(descriptor)[0]
        assert code == expected, values
        block = columnar.chunk_block([T0 + i / 20 for i in range(len(values))], [(v,) for v in values], 1)
        payload = columnar.Blocks(columnar.json_block(columnar.HEADER_KIND, {}) + block, "x").chunks
        _, decoded = columnar.decode_chunks(payload, 2, "x")
        for value, got in zip(values, decoded.tolist(), strict=True):
            if value is None or value != value:
                assert math.isnan(got)
            else:
                assert got == value and math.copysign(1, got) == math.copysign(1, value)


def random_column(rng: random.Random) -> list[float | None]:
    """A chunk column as a sensor might give it, or a hostile one: decimals 0..11, magnitudes up to 1e16, now and
    then a None, NaN, an infinity, -0.0, a value with no short decimal form or the largest finite float."""
    decimals = rng.randrange(0, 12)
    magnitude = 10.0 ** rng.randrange(-3, 17)
    column: list[float | None] = [round(rng.uniform(-magnitude, magnitude), decimals)
                                  for _ in range(rng.choice((1, 2, 8, 9, 50, 200)))]
    if rng.random() < 0.3:
        column[0] = float(rng.randrange(-3, 3))  # a first value with no decimals: the sample starts low
    if rng.random() < 0.4:
        odd = rng.choice([None, math.nan, math.inf, -math.inf, -0.0, 0.0, 0.1 + 0.2, 1e308, -1e308, 2.0**53])
        column[rng.randrange(len(column))] = odd
    return column


def test_format_2_column_encoding_is_the_exact_value_by_value_definition_byte_for_byte() -> None:
    rng = random.Random(20261205)
    for _ in range(5000):
        column = random_column(rng)
        assert columnar.encode_column(column) == columnar.encode_column_exact(column), column
        assert columnar.encode_column(tuple(column)) == columnar.encode_column_exact(column), column


def test_columns_encoded_differently_in_successive_chunks_read_back_in_order(tmp_path: Path) -> None:
    writer = ArchiveWriter(tmp_path, "irga", T0, [("CO2", "mmol m-3"), ("DIAG", "1")], {}, flush_every=10)
    expected = []
    for i in range(55):
        co2 = round(15 + i * 0.01, 2) if (i // 10) % 2 == 0 else 15 + i / 3  # ints, floats, ints, ...
        expected.append(co2)
        writer.write(T0 + i / 20, [co2, float(i % 3)])
    writer.write(T0 + 3000.0, [1.0, 0.0])  # a time step beyond int32 microseconds: absolute times in that chunk
    data = read_archive(writer.close({}))
    assert data.columns["CO2"].tolist() == [*expected, 1.0]
    assert data.time.tolist() == [*(round((T0 + i / 20) * 1e6) / 1e6 for i in range(55)), T0 + 3000.0]


def test_zlib_chunks_read_like_stored_ones(tmp_path: Path) -> None:
    writer = ArchiveWriter(tmp_path, "csat", T0, [("U", "m s-1")], {}, flush_every=64, compresslevel=6)
    for i in range(300):
        writer.write(T0 + i / 20, [i / 100])
    path = writer.close({})
    data = read_archive(path)
    assert data.complete and data.columns["U"].tolist() == [i / 100 for i in range(300)]
    check_archive_bytes(path.read_bytes())


def test_second_file_of_the_same_half_hour_gets_a_suffix(tmp_path: Path) -> None:
    first = ArchiveWriter(tmp_path, "csat", T0, [("U", "m s-1")], {}).close({})
    second = ArchiveWriter(tmp_path, "csat", T0, [("U", "m s-1")], {}).close({})
    older = CsvArchiveWriter(tmp_path, "csat", T0, [("U", "m s-1")], {}).close({})
    assert (first.name, second.name, older.name) == ("csat_20261124T0830Z.swr", "csat_20261124T0830Z_1.swr",
                                                     "csat_20261124T0830Z_2.csv.gz")


def chunk_records(path: Path) -> list[int]:
    """The record count of each chunk of a format-2 file."""
    blocks = columnar.Blocks(path.read_bytes(), str(path))
    return [columnar.CHUNK.unpack_from(chunk, 0)[0] for chunk in blocks.chunks]


def test_a_chunk_closes_at_its_record_limit_or_its_time_limit_whichever_comes_first(tmp_path: Path) -> None:
    """A killed writer loses at most one chunk's records: at most `flush_every` records and at most the records
    stamped within `flush_after_s` of the chunk's first (a slow instrument's, or a fast one's at a shorter limit);
    `write_many` cuts the same chunks as `write`."""
    stamps = [T0 + i / 20 for i in range(500)] + [T0 + 25 + i for i in range(12)]  # 20 Hz, then 1 Hz
    rows = [[float(i)] for i in range(len(stamps))]
    one = ArchiveWriter(tmp_path / "one", "csat", T0, [("U", "m s-1")], {}, flush_every=200, flush_after_s=5.0)
    for stamp, row in zip(stamps, rows, strict=True):
        one.write(stamp, row)
    many = ArchiveWriter(tmp_path / "many", "csat", T0, [("U", "m s-1")], {}, flush_every=200, flush_after_s=5.0)
    for start in range(0, len(stamps), 23):  # reads of 23 records
        many.write_many(stamps[start:start + 23], rows[start:start + 23])
    # 20 Hz: a chunk is 5 s, 101 records (the record stamped 5 s after the first closes it); the fifth holds the
    # last 96 at 20 Hz (from T0 + 20.2 s) and the 1-Hz records at T0 + 25 and 26; then 27..32 and 33..36 at 1 Hz
    expected = [101, 101, 101, 101, 96 + 2, 6, 4]
    assert chunk_records(one.close({})) == expected
    assert chunk_records(many.close({})) == expected
    assert read_archive(many.path).columns["U"].tolist() == [row[0] for row in rows]
    unlimited = ArchiveWriter(tmp_path / "unlimited", "csat", T0, [("U", "m s-1")], {}, flush_after_s=None)
    unlimited.write_many(stamps, rows)
    assert chunk_records(unlimited.close({})) == [200, 200, 112]


def test_a_file_cut_anywhere_reads_up_to_its_last_complete_chunk(tmp_path: Path) -> None:
    writer = ArchiveWriter(tmp_path, "csat", T0, [("U", "m s-1"), ("W", "m s-1")], {}, flush_every=7)
    for i in range(30):
        writer.write(T0 + i / 20, [i / 10, -i / 10])
    whole = writer.close({"closed": "rotation"}).read_bytes()
    header_end = columnar.BLOCK.size + columnar.BLOCK.unpack_from(whole)[3]
    chunk_ends = []
    offset = header_end
    while offset < len(whole):
        offset += columnar.BLOCK.size + columnar.BLOCK.unpack_from(whole, offset)[3]
        chunk_ends.append(offset)
    for cut in range(len(whole) + 1):
        if cut < header_end:
            with pytest.raises(ValueError, match="no sinkwatch-raw header block"):
                read_archive_bytes(whole[:cut])
            continue
        data = read_archive_bytes(whole[:cut])
        whole_chunks = sum(end <= cut for end in chunk_ends[:-1])  # the last block is the footer
        records = min(7 * whole_chunks, 30)
        assert data.columns["U"].tolist() == [i / 10 for i in range(records)], cut
        assert data.complete == (cut == len(whole))
        if cut < len(whole):
            with pytest.raises(ValueError):
                check_archive_bytes(whole[:cut])


def test_a_damaged_chunk_ends_the_readable_part_and_is_named(tmp_path: Path) -> None:
    writer = ArchiveWriter(tmp_path, "csat", T0, [("U", "m s-1")], {}, flush_every=10)
    for i in range(40):
        writer.write(T0 + i / 20, [float(i)])
    raw = bytearray(writer.close({}).read_bytes())
    raw[-200] ^= 0x40  # a bit flipped inside a chunk near the end
    data = read_archive_bytes(bytes(raw))
    assert not data.complete and 0 < data.time.size < 40
    assert data.columns["U"].tolist() == [float(i) for i in range(data.time.size)]
    with pytest.raises(ValueError, match="fails its CRC"):
        check_archive_bytes(bytes(raw))


WRITER_CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from gateway.rawarchive import ArchiveWriter
    writer = ArchiveWriter(Path(sys.argv[1]), "csat", int(sys.argv[2]), [("U", "m s-1"), ("T_SONIC", "degC")],
                           {"site": "s"}, flush_every=50)
    print(writer.part_path, flush=True)
    i = 0
    while True:
        writer.write(int(sys.argv[2]) + i / 20, [i / 1000, 20 + (i % 7) / 3])
        i += 1
""")


def test_a_writer_killed_with_sigkill_mid_write_leaves_a_file_readable_to_its_last_chunk(tmp_path: Path) -> None:
    """kill -9 at an arbitrary moment of a writer appending as fast as it can (so, most likely, inside a chunk's
    write or between its encoding and its write): the .part reads as whole chunks of the right records."""
    for attempt in range(3):
        child = subprocess.Popen([sys.executable, "-c", WRITER_CHILD, str(tmp_path / str(attempt)), str(T0)],
                                 stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert child.stdout is not None
        part = Path(child.stdout.readline().strip())
        time.sleep(0.3 + 0.17 * attempt)
        child.send_signal(signal.SIGKILL)
        child.wait()
        data = read_archive(part)
        assert not data.complete and data.footer is None
        n = data.time.size
        assert n > 0 and n % 50 == 0
        assert data.columns["U"].tolist() == [i / 1000 for i in range(n)]
        assert data.columns["T_SONIC"].tolist() == [20 + (i % 7) / 3 for i in range(n)]
        assert data.time.tolist() == [round((T0 + i / 20) * 1e6) / 1e6 for i in range(n)]


def test_a_format_1_file_cut_by_a_power_loss_reads_up_to_its_last_flush(tmp_path: Path) -> None:
    writer = CsvArchiveWriter(tmp_path, "csat", T0, [("U", "m s-1")], {}, flush_every=100)
    for i in range(250):
        writer.write(T0 + i / 20, [float(i)])
    writer._gz.flush()  # what the OS has at the moment of the cut (the writer was never closed)
    writer._raw.flush()
    data = read_archive(writer.part_path)
    assert not data.complete and data.footer is None
    assert data.columns["U"].tolist() == [float(i) for i in range(data.time.size)]
    assert data.time.size >= 200


def test_not_an_archive_is_named(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "x.csv.gz"
    path.write_bytes(gzip.compress(b"hello\n"))
    with pytest.raises(ValueError, match="not a sinkwatch-raw file"):
        read_archive(path)
    path.write_bytes(b"hello")
    with pytest.raises(ValueError, match="neither format 2 blocks nor format 1 gzip"):
        read_archive(path)
    path.write_bytes(columnar.json_block(columnar.HEADER_KIND, {"format": "other", "version": 2, "columns": []}))
    with pytest.raises(ValueError, match="expected 'sinkwatch-raw' version 2"):
        read_archive(path)
    with pytest.raises(ValueError, match="not a format 2 file"):
        check_archive_bytes(zlib.compress(b"x"))
