"""The streamed encoders' text is that of the encoders they replaced: times as format_time/strftime write them,
JSON documents that parse to the whole-list form, empty ranges well-formed."""

from __future__ import annotations

import json
import random
from typing import Any

import orjson

from gateway.central.store.base import EARLIEST_TIME, LATEST_TIME, from_ns, to_ns
from gateway.central.store.reads import FluxRow, FluxTexts, RecordKind
from gateway.central.streaming import ameriflux_stamp, fluxes_json, rfc3339, rfc3339_many, series_csv, series_json
from gateway.model import format_time

from .helpers import ameriflux_by_cells


def instants() -> list[int]:
    rng = random.Random(13)
    low, high = to_ns(EARLIEST_TIME), to_ns(LATEST_TIME)
    edges = [low, high, 0, -1, 1, 999, 1000, -1000, 1_735_689_600_000_000_000, 1_735_689_599_999_999_999]
    return edges + [rng.randrange(low, high) for _ in range(20_000)] + [
        rng.randrange(0, 10**18) // 10**9 * 10**9 for _ in range(5_000)]


def test_times_read_as_format_time_and_strftime_write_them() -> None:
    for ns in instants():
        assert rfc3339(ns) == format_time(from_ns(ns)), ns
        assert ameriflux_stamp(ns) == from_ns(ns).strftime("%Y%m%d%H%M"), ns


def test_json_documents_parse_to_the_whole_list_form() -> None:
    head = {"station": "st1", "every": None}
    chunks: list[list[Any]] = [[(0, 1.5, 0), (10**9, None, 3)], [], [(2 * 10**9, 1e16, 1)]]

    document = json.loads(b"".join(series_json(head, chunks)))
    empty = json.loads(b"".join(series_json(head, [])))
    row = FluxRow("s", "st1", 0, 1800 * 10**9, "ok", ['a "b"'], "e 1", "abcdef12", {"FC": 1.0, "N": None})
    records = json.loads(b"".join(fluxes_json({}, [[row], [row]])))

    assert document == {"station": "st1", "every": None, "points": [
        {"time": "1970-01-01T00:00:00.000000Z", "value": 1.5, "qc": 0},
        {"time": "1970-01-01T00:00:01.000000Z", "value": None, "qc": 3},
        {"time": "1970-01-01T00:00:02.000000Z", "value": 1e16, "qc": 1}]}
    assert empty == {"station": "st1", "every": None, "points": []}
    assert records["records"][1] == {
        "schema_version": 1, "site": "s", "station": "st1", "start": "1970-01-01T00:00:00.000000Z",
        "end": "1970-01-01T00:30:00.000000Z", "status": "ok", "reasons": ['a "b"'], "engine_version": "e 1",
        "settings_hash": "abcdef12", "values": {"FC": 1.0, "N": None}, "seq": None}
    assert b"".join(series_csv([[(0, 0.1, 0), (1000, None, 3)]])) == (
        b"time,value,qc\n1970-01-01T00:00:00.000000Z,0.1,0\n1970-01-01T00:00:00.000001Z,,3\n")


def series_chunks() -> list[list[Any]]:
    """Chunks of points as stores yield them: regular and irregular times (whole seconds and fractions, before
    1970 too), values of every text form orjson and repr write differently, None values and qc."""
    rng = random.Random(11)
    odd = [1e16, -1.5e-5, 1e-7, 2.5e-300, 1.7976931348623157e308, float("inf"), float("-inf"), -0.0, 0.1 + 0.2,
           400, 12.00001, 0.0001]
    times = sorted(instants())
    chunks: list[list[Any]] = [[]]
    for start in range(0, 6000, 500):
        regular = 1_735_689_600_000_000_000 + start * 10**10
        chunks.append([(regular + i * 10**10, rng.choice([rng.uniform(-50, 500), None, 412.25]),
                        rng.choice([0, 0, 1, None])) for i in range(500)])
    chunks.append([(t, rng.choice([*odd, rng.gauss(0, 1e-3)]), rng.choice([0, 2])) for t in times[:3000]])
    chunks.append([(t, rng.uniform(-1, 1), 0) for t in times[3000:3001]])
    chunks.append([[t, v, 0] for t, v in zip(times[5000:5000 + len(odd)], odd, strict=True)])
    return chunks


def test_series_text_is_that_of_the_point_by_point_encoders() -> None:
    from gateway.central.streaming import series_points

    chunks = series_chunks()
    head = {"station": "st1", "every": None}
    points = [point for rows in chunks for point in series_points(rows)]
    csv_rows = "".join(f"{t},{'' if v is None else repr(v)},{'' if q is None else q}\n"
                       for rows in chunks for t, (_, v, q) in zip(rfc3339_many([r[0] for r in rows]), rows,
                                                                  strict=True))

    assert b"".join(series_json(head, chunks)) == orjson.dumps({**head, "points": points})
    assert b"".join(series_csv(chunks)) == b"time,value,qc\n" + csv_rows.encode()
    assert b"".join(series_json({}, [])) == b'{"points":[]}'


def test_many_times_read_as_one_at_a_time() -> None:
    times = sorted(instants())
    assert rfc3339_many(times) == [rfc3339(ns) for ns in times]


def test_a_chunk_of_times_reads_as_each_time_alone() -> None:
    """The numpy path of the series and record encoders (`_TimeTexts`): hours from blocks of texts made once,
    microseconds from a table or, when a chunk has only whole seconds, zeros; one time or two (start and end)
    a row; and AmeriFlux's two stamps a record the same way."""
    from gateway.central.streaming import _ameriflux_stamps, _TimeTexts

    times = sorted(instants())
    hour, day = 3600 * 10**9, 86_400 * 10**9
    year = 1_735_689_600_000_000_000
    chunks = [
        times[i:i + 1000] for i in range(0, len(times), 1000)  # sparse, fractions
    ] + [
        list(range(year - 5000 * 10**10, year + 5000 * 10**10, 10**10)),  # 10 s across a new year
        list(range(year, year + 5000 * hour, hour)),  # an hourly chunk over several blocks of hours
        list(range(-400 * day, -400 * day + 1000 * 1800 * 10**9, 1800 * 10**9)),  # before 1970, whole seconds
        [ns + 1000 for ns in range(year, year + 1000 * 1800 * 10**9, 1800 * 10**9)],  # one microsecond past
        [ns + 999_999_999 for ns in range(year, year + 100 * hour, hour)],  # nanoseconds floored
        times[:5], times[-5:],  # the first and last instants stored
    ]
    one, two = _TimeTexts(b"<", b">"), _TimeTexts(b"<", b">", between=b"|")
    for chunk in chunks:
        assert one(chunk) == [f"<{rfc3339(ns)}>".encode() for ns in chunk]
        ends = chunk[::-1]
        assert two(chunk, ends) == [f"<{rfc3339(a)}|{rfc3339(b)}>".encode() for a, b in zip(chunk, ends, strict=True)]
        assert _ameriflux_stamps(chunk, ends) == [
            f"{ameriflux_stamp(a)},{ameriflux_stamp(b)}".encode() for a, b in zip(chunk, ends, strict=True)]


def test_flux_json_is_byte_for_byte_the_dict_encoding() -> None:
    from gateway.central.streaming import flux_records

    rng = random.Random(7)
    rows = [FluxRow(rng.choice(["s", "s-2"]), "st1", i * 1800 * 10**9 + rng.choice([0, 1000]),
                    (i + 1) * 1800 * 10**9, rng.choice(["ok", "partial"]),
                    rng.choice([[], ['a "b", },{'], ["é ✓", "x"]]), rng.choice(["e 1", "e\\2"]), "abcdef12",
                    rng.choice([{}, {"FC": 1e16, "N": None}, {"H": -0.1, "N_RECORDS": 36000, "ZL": 2.5e-7}]))
            for i in range(300)]
    chunks = [rows[:1], [], rows[1:120], rows[120:]]
    head = {"station": "st1", "start": "x"}

    expected = orjson.dumps({**head, "records": flux_records(rows)})
    assert b"".join(fluxes_json(head, chunks)) == expected
    assert b"".join(fluxes_json({}, [])) == orjson.dumps({"records": []})


def test_flux_texts_write_as_their_rows() -> None:
    """A chunk of texts (`FluxTexts`) is written as JSON, CSV and AmeriFlux as its records parsed are: kinds with
    other names (fewer, in another order, one without a column), nulls that override a stored value, a kind of no
    values at all, text with quotes, commas and a percent sign around the numbers."""
    import numpy as np

    from gateway.central.streaming import ameriflux_csv, fluxes_csv

    rng = random.Random(11)
    columns = ["time", "A", "B", "C_SSITC_TEST", "period_s", "meta"]
    kinds = [RecordKind(("C_SSITC_TEST", "A", "B"), frozenset(), 1800 * 10**9, "ok", []),
             RecordKind(("A", "D"), frozenset({"A"}), 1800 * 10**9, "partial", ['x "y", z', "80 %"]),
             RecordKind((), frozenset(), 900 * 10**9, "failed", ["é ✓"])]
    numbers = [b"1.5", b"-2", b"36000", b"null", b"0.30000000000000004", b"1e-7", b"123456.789"]
    count = 300
    kind_of = [rng.choice([0, 0, 0, 1, 2]) for _ in range(count)]
    ends = [1_735_689_600_000_000_000 + (i + 1) * 1800 * 10**9 + rng.choice([0, 1000]) for i in range(count)]
    cells: list[bytes] = []
    for end_ns in ends:
        cells += [str(end_ns).encode(), rng.choice(numbers), rng.choice(numbers), rng.choice([b"0", b"2", b"null"]),
                  b"1800", b"]"]
    chunk = FluxTexts("s-1", "st1", "e 1", "abcdef12", np.array(ends, dtype=np.int64), kinds, kind_of, cells,
                      len(columns), {name: i for i, name in enumerate(columns)})

    rows = list(chunk)

    width = len(columns)
    expected = []
    for at, (end_ns, k) in enumerate(zip(ends, kind_of, strict=True)):
        kind = kinds[k]
        values = {n: None if n in kind.nulls or n not in columns else orjson.loads(cells[at * width + columns.index(n)])
                  for n in kind.names}
        expected.append(FluxRow("s-1", "st1", end_ns - kind.period_ns, end_ns, kind.status, kind.reasons, "e 1",
                                "abcdef12", values))
    assert rows == expected
    head = {"station": "st1"}
    assert b"".join(fluxes_json(head, [chunk[:0], chunk])) == b"".join(fluxes_json(head, [rows]))
    for names in (["A", "B", "C_SSITC_TEST", "D", "E"], []):
        assert b"".join(fluxes_csv(names, [chunk])) == b"".join(fluxes_csv(names, [rows]))
        for base_only in (False, True):
            assert (b"".join(ameriflux_csv(names, [chunk], base_only=base_only))
                    == b"".join(ameriflux_csv(names, [rows], base_only=base_only))
                    == ameriflux_by_cells(names, rows, base_only))


def awkward_ameriflux_values(rng: random.Random, count: int) -> list[float | int | None]:
    """Numbers whose 9 significant digits are hard to get right column by column: ties and near-ties at the ninth
    digit, values next to a power of ten (where log10 may miss by one) and to the bounds of %g's fixed notation
    (1e-4, 1e9), counts at and past 1e15, minus zero, subnormals, integers past 2**53, any bit pattern."""
    import struct

    edges: list[float | int | None] = [None, 0.0, -0.0, 1e-4, 9.99999999e-5, 9.999999995e-5, 9.9999999949e-5,
                                       999999999.0, 999999999.5, 999999999.4999, 1e9, 5e-324, 2.2250738585072014e-308,
                                       1.7976931348623157e308, 10**15, 10**15 - 1, -(10**15) + 0.5, 2**53 + 1,
                                       36000, -3, float("inf"), float("-inf"), float("nan"), 1 / 3, 1e16, 1e20]
    out: list[float | int | None] = []
    for _ in range(count):
        pick = rng.random()
        if pick < 0.2:
            out.append(rng.choice(edges))
        elif pick < 0.4:  # the ninth digit followed by a half, or a hair either side of one
            digits = rng.randrange(10**8, 10**9)
            tail = rng.choice([0.5, 0.4999999, 0.5000001, 0.5 - 1e-9, 0.5 + 1e-9, 0.0, 0.99999999, 0.125])
            out.append((digits + tail) * 10.0 ** rng.randint(-14, 2) * rng.choice([1, -1]))
        elif pick < 0.55:  # next to a power of ten
            out.append(10.0 ** rng.randint(-7, 12) * (1 + rng.choice([-1, 1]) * rng.random()
                                                      * 10.0 ** -rng.randint(5, 17)))
        elif pick < 0.7:
            out.append(struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0])
        elif pick < 0.8:
            out.append(rng.randint(-10**12, 10**12))
        else:
            out.append(rng.uniform(-1, 1) * 10.0 ** rng.uniform(-8, 12))
    return out


def test_ameriflux_rows_are_those_of_the_cell_by_cell_writer() -> None:
    """The streamed AmeriFlux encoder rounds whole columns at once; every cell is the one `format(v, ".9g")` (or
    `int(v)` for flags and counts) writes, for ordinary and awkward numbers alike."""
    from gateway.central.streaming import ameriflux_csv

    cols = ["FC", "FC_SSITC_TEST", "H", "N_RECORDS", "TAU", "ZL"]
    rng = random.Random(11)
    pool: list[float | int | None] = [None, 0.0, -0.0, 1 / 3, -12.345678901234567, 1e16, 2.5e-7, 1e-300, 36000,
                                      2.7, -2.7, 1e20, float("inf"), float("nan"), 1.7976931348623157e308]
    rows = [FluxRow("s", "st1", i * 1800 * 10**9, (i + 1) * 1800 * 10**9, rng.choice(["ok", "partial"]),
                    rng.choice([[], ['a "b", c'], ["x", "y\nz"]]), "e 1", "abcdef12",
                    {c: rng.choice(pool) for c in cols if rng.random() < 0.9})
            for i in range(400)]
    awkward = awkward_ameriflux_values(rng, 60_000)
    rows += [FluxRow("s", "st1", i * 1800 * 10**9, (i + 1) * 1800 * 10**9, "ok", [], "e 1", "abcdef12",
                     dict(zip(cols, awkward[i * len(cols):(i + 1) * len(cols)], strict=True)))
             for i in range(len(awkward) // len(cols))]

    for base_only in (False, True):
        assert b"".join(ameriflux_csv(cols, [rows[:150], [], rows[150:]], base_only=base_only)) == (
            ameriflux_by_cells(cols, rows, base_only))


def test_coalesced_blocks_hold_every_byte_in_order() -> None:
    from gateway.central.streaming import coalesced

    blocks = [bytes([i % 256]) * (i * 37 % 1000) for i in range(500)]

    joined = list(coalesced(iter(blocks), size=4096))

    assert b"".join(joined) == b"".join(blocks)
    assert all(len(b) >= 4096 for b in joined[:-1]) and len(joined) < len(blocks) / 5
    assert list(coalesced(iter([]))) == []
