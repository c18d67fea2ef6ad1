"""InfluxDB's text of a chunk read without an object per value (`influx_reads`): what it yields is what orjson
parses from the same text, and a chunk of any other shape is left to orjson."""

from __future__ import annotations

import random

import orjson

from gateway.central.store.influx_reads import _int_times, point_columns

HEAD = b'{"results":[{"statement_id":0,"series":[{"name":"readings","columns":["time","value","qc"],"values":[['
TAIL = b']]}]}]}'


def test_chunk_times_read_as_int_reads_them() -> None:
    rng = random.Random(5)
    low, high = -(2**63), 2**63 - 1
    chunks = [
        [rng.randrange(10**18, high) for _ in range(1000)],  # 19 digits each: numpy's path
        [10**18, high, 10**18 + 1, 1_735_689_600_000_000_000],
        [rng.randrange(low, high) for _ in range(1000)],  # any width, negative: one int each
        [0, -1, 1, low, 10**18 - 1],
        [1_735_689_600_000_000_000, -(10**17)],  # 19 characters with a minus sign: not numpy's
    ]
    for chunk in chunks:
        assert _int_times([str(t).encode() for t in chunk]).tolist() == chunk


def chunk(rows: list[bytes]) -> bytes:
    return HEAD + b"],[".join(rows) + TAIL


def rows_of(times: list[int], values: list[bytes], qcs: list[bytes]) -> list[bytes]:
    return [b"%d,%s,%s" % (t, v, q) for t, v, q in zip(times, values, qcs, strict=True)]


def test_point_columns_are_the_rows_orjson_reads_or_none() -> None:
    rng = random.Random(8)
    times = list(range(1_735_689_600_000_000_000, 1_735_689_600_000_000_000 + 500 * 10**10, 10**10))
    values = [orjson.dumps(round(rng.uniform(380, 450), 4)) for _ in times]  # as InfluxDB (Go) writes them
    same_qc, mixed_qc = [b"0"] * len(times), [rng.choice([b"0", b"1", b"3", b"null"]) for _ in times]
    taken = [
        chunk(rows_of(times, values, same_qc)),  # one qc throughout
        chunk(rows_of(times, values, mixed_qc)),
        chunk(rows_of(times, [b"null", *values[1:]], same_qc)),
        chunk(rows_of(times[:1], values[:1], same_qc[:1])),  # one row
        chunk(rows_of(times[:2], values[:2], [b"2", b"2"])),
    ]
    refused = [
        chunk(rows_of(times, values, [b"0]", *same_qc[1:]])),  # a bracket too many in one qc
        chunk(rows_of(times, values, [*[b"0]"] * (len(times) - 1), b"0"])),  # ... in every qc but the last
        chunk(rows_of(times, values, [b'"0"'] * len(times))),  # a string
        chunk(rows_of(times, [b"[1]", *values[1:]], same_qc)),  # a nested array
        chunk(rows_of(times, [b"1e-07", *values[1:]], same_qc)),  # an exponent: repr writes it otherwise
        chunk([b"%d,%s" % (t, v) for t, v in zip(times, values, strict=True)]),  # two columns
        HEAD + b"],[".join(rows_of(times, values, same_qc)) + b"]" + TAIL,  # an unbalanced bracket at the end
    ]
    for line in taken:
        columns = point_columns(line)
        assert columns is not None
        expected = orjson.loads(line)["results"][0]["series"][0]["values"]
        assert [list(row) for row in columns] == expected
        assert columns.values == [orjson.dumps(row[1]) for row in expected]
        assert columns.qcs == [orjson.dumps(row[2]) for row in expected]
    for line in refused:
        assert point_columns(line) is None, line[-200:]
