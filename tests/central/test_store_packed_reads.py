"""A few flux variables are read from InfluxDB in MessagePack (`InfluxReadsMixin._record_chunks`,
`packed_record_cells`): JSON, CSV and AmeriFlux written from those chunks are byte for byte what the JSON reads
give, over numbers whose texts InfluxDB's JSON and orjson write alike and otherwise (whole doubles, which InfluxDB's
JSON writes as integers; minus zero; doubles past 64-bit integers; exponents), integer fields, partial records and
reasons with quotes, against a real influxd. (It found the JSON reads' texts wrong for a whole double between
-1e19 and -2**63: Go's 19 digits passed on where orjson reads a double, `_as_orjson_writes`.)"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import msgpack
import pytest

from gateway.central.store import InfluxStore
from gateway.central.store.influx_reads import json_number, packed_double_cells, packed_record_cells
from gateway.central.store.reads import FluxTexts
from gateway.testing.services import running_influxd

from .helpers import T0, flux_record

#: whole doubles (InfluxDB's JSON: integers, orjson: `x.0` or an exponent), around 2**53, 1e16, 2**63, 2**64 and
#: 1e21, minus zero, and fractions orjson writes with an exponent
AWKWARD = [36000.0, 1800.0, 0.0, -0.0, 1.0, -7.0, 2.0**53, 2.0**53 + 2, 9.999999999999998e15, 1e16, 1.5e16, -1e16,
           2.0**63, -(2.0**63), -(2.0**63) - 4096, 1e19, 2.0**64, 2e19, -1e19, 1e20, 9.999999999999999e20, 1e21,
           1e22, 1.7976931348623157e308, 0.0001, 1e-5, 9.9e-6, 5e-7, 1e-300, 5e-324, -0.0285, 0.30000000000000004,
           123456789012345.67, -2.5, None]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[InfluxStore]:
    with running_influxd(tmp_path / "influxd") as influxd:
        instance = InfluxStore(influxd.url, database="packed")
        yield instance
        instance.close()


@pytest.mark.integration
def test_packed_reads_give_the_json_reads_bytes(store: InfluxStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.central.store import influx_reads
    from gateway.central.streaming import ameriflux_csv, fluxes_csv, fluxes_json

    monkeypatch.setattr(influx_reads, "SELECTED_CHUNK_ROWS", 7)  # several chunks, some with one awkward number only
    reasons = [['lag "at limit"'], ["a \\ b", 'c\\"d'], ["ok, <fine> & 80 %"]]
    # the awkward numbers in the first records; then chunks of ordinary ones, whole doubles among them (LE, and FC
    # in one record of four), which take the one-call path
    count = 4 * len(AWKWARD)
    records = [flux_record(end=T0 + timedelta(minutes=30 * i), status="partial" if i % 5 == 0 else "ok",
                           reasons=reasons[i % 3] if i % 5 == 0 else [],
                           values={"FC": AWKWARD[i % len(AWKWARD)] if i <= 2 * len(AWKWARD) else i / 4,
                                   "H": 100.0 + i / 8, "LE": float(i), "FC_SSITC_TEST": i % 3, "N_RECORDS": 36000,
                                   "TAU": -0.0 if i % 4 == 0 and i < len(AWKWARD) else None})
               for i in range(1, count + 1)]
    store.write_fluxes(records)
    end = T0 + timedelta(minutes=30 * (count + 1))
    cols = ["FC", "FC_SSITC_TEST", "H", "LE", "N_RECORDS", "TAU"]
    doubles_read: list[bool] = []  # whether each chunk was read by `packed_double_cells`

    def spied(raw: bytes) -> object:
        found = packed_double_cells(raw)
        doubles_read.append(found is not None)
        return found

    monkeypatch.setattr(influx_reads, "packed_double_cells", spied)
    # integers among the fields (the chunks parsed by msgpack); doubles only (read by numpy but for the awkward ones)
    for wanted in (["LE", "FC", "NEE", "FC_SSITC_TEST", "N_RECORDS", "TAU", "H"], ["LE", "FC", "TAU", "H"]):
        doubles_read.clear()
        store.packed_reads = True
        packed = list(store.iter_fluxes("st1", T0, end, variables=wanted))
        store.packed_reads = False
        texts = list(store.iter_fluxes("st1", T0, end, variables=wanted))

        assert all(isinstance(chunk, FluxTexts) for chunk in packed) and len(packed) == -(-count // 7)
        assert sum(map(len, packed)) == count
        as_rows = [list(chunk) for chunk in texts]  # the records parsed: what every path must write
        assert b"".join(fluxes_json({"x": 1}, texts)) == b"".join(fluxes_json({"x": 1}, as_rows))
        assert b"".join(fluxes_json({"x": 1}, packed)) == b"".join(fluxes_json({"x": 1}, texts))
        assert b"".join(fluxes_csv(cols, packed)) == b"".join(fluxes_csv(cols, texts))
        assert b"".join(ameriflux_csv(cols, packed)) == b"".join(ameriflux_csv(cols, texts))
        assert [r.values for chunk in packed for r in chunk] == [r.values for chunk in texts for r in chunk]
        if "N_RECORDS" in wanted:
            assert not any(doubles_read)
        else:  # the chunks of ordinary doubles by numpy, those with 1e16 and up or minus zero by msgpack
            assert doubles_read.count(True) >= len(packed) // 2 and not all(doubles_read)


def test_a_chunk_with_a_string_value_is_read_as_parsed_rows() -> None:
    """A string among the values (never written by sinkwatch) is no chunk of texts; a whole double in such a chunk is
    read as InfluxDB's JSON gives it."""
    series = {"name": "fluxes", "columns": ["time", "FC", "period_s", "meta"],
              "values": [[1, "x", 1800.0, "1;a;1800.0;ok;;[]"], [2, 1.5, 1800.0, "1;a;1800.0;ok;;[]"]]}
    assert packed_record_cells(series) is None
    assert packed_record_cells({**series, "values": [[1, 2.5, 1800.0, None]]}) is None
    ok = packed_record_cells({**series, "values": [[1, 2.0, 1800.0, "m"], [2, -0.0, 1e16, "n"]]})
    cells = [b"1", b"2", b"1800", b"]", b"[2", b"0", b"10000000000000000", b""]
    assert ok == (["time", "FC", "period_s", "meta"], cells, ["m", "n"])


def test_json_number_is_what_orjson_reads_from_go_text() -> None:
    import orjson

    # Go's encoding/json text of a whole double below 1e21: its shortest digits without exponent (strconv 'f', -1)
    go = {1800.0: b"1800", -0.0: b"-0", 1e16: b"10000000000000000", 2.0**64: b"18446744073709552000",
          2e19: b"20000000000000000000", -(2.0**63) - 4096: b"-9223372036854780000", 1e20: b"100000000000000000000"}
    for value, text in go.items():
        assert orjson.dumps(json_number(value)) == orjson.dumps(orjson.loads(text)), value
    assert json_number(1e21) == 1e21 and type(json_number(2.5)) is float


def influx_chunk(columns: list[str], rows: list[list[object]], partial: bool = False) -> bytes:
    """A chunk of one series in MessagePack as InfluxDB 1.x writes it (int64 times, doubles, nil, short strings)."""
    def text(value: str) -> bytes:
        data = value.encode()
        return (bytes([0xA0 + len(data)]) if len(data) < 32 else bytes([0xD9, len(data)])) + data

    def element(value: object) -> bytes:
        if value is None:
            return b"\xc0"
        if isinstance(value, float):
            return b"\xcb" + struct.pack(">d", value)
        if isinstance(value, int):
            return b"\xd3" + struct.pack(">q", value)
        return text(str(value))

    head = (b"\x81\xa7results\x91" + bytes([0x83 if partial else 0x82]) + b"\xacstatement_id\x00\xa6series\x91"
            + bytes([0x84 if partial else 0x83]) + b"\xa4name" + text("fluxes") + b"\xa7columns"
            + bytes([0x90 + len(columns)]) + b"".join(map(text, columns)) + b"\xa6values"
            + (bytes([0x90 + len(rows)]) if len(rows) < 16 else b"\xdc" + struct.pack(">H", len(rows))))
    body = b"".join(bytes([0x90 + len(row)]) + b"".join(map(element, row)) for row in rows)
    return head + body + (b"\xa7partial\xc3" * 2 if partial else b"")


def test_rows_are_found_past_a_double_holding_a_rows_first_bytes() -> None:
    """A double whose bytes hold a row's first two (0x97 0xd3) is a candidate row in no chain: the rows are found
    all the same, and give the cells msgpack's parse gives."""
    columns = ["time", "NEE", "H", "LE", "FC", "period_s", "meta"]
    tricky = struct.unpack(">d", b"\x40\x97\xd3\x00\x00\x00\x00\x01")[0]
    at_end = struct.unpack(">d", b"\x40\x00\x00\x00\x00\x00\x97\xd3")[0]
    metas = ["1;120ab1cb9a8e895a;1800.0;ok;;[]", '1;120ab1cb9a8e895a;1800.0;partial;H;["lag at limit, \\"x\\""]']
    rows: list[list[object]] = [[1_735_689_600_000_000_000 + i * 1_800_000_000_000, tricky if i % 3 == 0 else 0.25 * i,
                                 None if i % 4 == 0 else -33.8917, at_end, 2.0 * i, 1800.0, metas[i % 7 == 0]]
                                for i in range(40)]
    for partial in (False, True):
        raw = influx_chunk(columns, rows, partial)
        found = packed_double_cells(raw)
        series = msgpack.unpackb(raw, raw=False)["results"][0]["series"][0]
        parsed = packed_record_cells(series)
        assert found is not None and parsed is not None
        width = len(columns)
        assert found[0] == columns and found[4].tolist() == [row[0] for row in rows]
        assert [found[3](m) for m in found[2]] == [row[-1] for row in rows]
        for j in range(1, width - 1):
            assert found[1][j::width] == parsed[1][j::width]
    one_meta = influx_chunk(columns, [[*row[:-1], metas[0]] for row in rows])
    found = packed_double_cells(one_meta)
    assert found is not None and [found[3](m) for m in found[2]] == [metas[0]] * len(rows)


@pytest.mark.parametrize("odd", [3, -0.0, 1e16, "text", True])
def test_a_chunk_not_of_doubles_is_left_to_msgpack(odd: object) -> None:
    columns = ["time", "FC", "period_s", "meta"]
    rows = [[1_735_689_600_000_000_000 + i, 1.5, 1800.0, "1;a;1800.0;ok;;[]"] for i in range(5)]
    assert packed_double_cells(influx_chunk(columns, rows)) is not None
    rows[2][1] = odd
    assert packed_double_cells(influx_chunk(columns, rows)) is None
    raw = influx_chunk(columns, rows)
    assert packed_double_cells(raw[:-3]) is None and packed_double_cells(raw + b"\xc0") is None


def test_a_stream_read_to_its_end_keeps_its_connection_for_the_next() -> None:
    """`KeepAliveHttp.stream`: a connection whose answer was read to the end goes back to the pool; when the server
    has closed it meanwhile, the next stream is sent once more on a new one; one not read to the end is closed."""
    from gateway.central.store.keepalive import KeepAliveHttp

    from .test_keepalive_http import OneAnswerServer

    server = OneAnswerServer()
    server.answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    client = KeepAliveHttp(f"http://127.0.0.1:{server.port}", timeout_s=5.0, headers={})
    try:
        for _ in range(2):
            with client.stream("/query", b"q=1", "application/x-www-form-urlencoded", read_timeout_s=5.0,
                               accept="application/x-msgpack") as response:
                assert response.read(1 << 16) + response.read(1 << 16) == b"hello world"
            assert len(client._idle_streams) == 1  # kept: its answer was read to the end
        assert server.connections == 2 and len(server.requests) == 2  # the second sent again on a new connection
        assert b"Accept: application/x-msgpack" in server.heads[0]
        with client.stream("/query", b"q=1", "application/x-www-form-urlencoded", read_timeout_s=5.0) as response:
            assert response.read(3) == b"hel"
        assert client._idle_streams == []  # abandoned: closed, not kept
    finally:
        client.close()
        server.close()


@pytest.mark.parametrize("meta", ["", "x", "1;120ab1cb9a8e895a;1800.0;ok;;[]"])
def test_nils_at_a_chunks_end_and_short_metas_give_msgpacks_cells(meta: str) -> None:
    """`packed_double_cells` takes each double's 8 bytes and compares each meta with the first through views of the
    chunk whose rows start a byte apart: a nil as the last field of the last row (its place + 8 lies past the
    chunk), metas of 0 and 1 bytes and metas that differ in their last byte give what msgpack's parse gives."""
    columns = ["time", "NEE", "FC", "meta"]
    rows: list[list[object]] = [[1_735_689_600_000_000_000 + i, 0.5 * i if i % 2 else None, None, meta]
                                for i in range(20)]
    rows[7][-1] = meta[:-1] + "y" if meta else "y"
    for partial in (False, True):
        raw = influx_chunk(columns, rows, partial)
        found = packed_double_cells(raw)
        parsed = packed_record_cells(msgpack.unpackb(raw, raw=False)["results"][0]["series"][0])
        assert found is not None and parsed is not None
        assert found[4].tolist() == [row[0] for row in rows]
        assert [found[3](m) for m in found[2]] == [row[-1] for row in rows]
        for j in (1, 2):
            assert found[1][j::4] == parsed[1][j::4]
