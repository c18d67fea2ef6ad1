"""Decoding and framing against example frames in the layout of the GMP252 User Guide M211897EN-D App. A (the read
request is the manual's own example; the other frames were composed in that layout, their CRCs computed apart)."""

from __future__ import annotations

import math
import random
import struct

import pytest
from pymodbus.framer.rtu import FramerRTU

from drivers.gmp252 import registers as reg
from drivers.gmp252 import rtu
from drivers.gmp252.registers import DataType, Point, WordOrder

# Example frames: CO2 read (the manual's example), 412.5 ppm reply, status poll, exception 02.
READ_CO2_REQUEST = bytes.fromhex("F0 03 00 00 00 02 D1 2A")
READ_CO2_412_5_RESPONSE = bytes.fromhex("F0 03 04 40 00 43 CE BF 98")
STATUS_REQUEST = bytes.fromhex("F0 03 08 00 00 02 D3 4A")
STATUS_ALL_OK_RESPONSE = bytes.fromhex("F0 03 04 00 00 00 00 1A FC")
EXCEPTION_02_RESPONSE = bytes.fromhex("F0 83 02 91 02")


def registers_of(response: bytes) -> list[int]:
    byte_count = response[2]
    return list(struct.unpack(f">{byte_count // 2}H", response[3 : 3 + byte_count]))


@pytest.mark.parametrize(
    "frame", [READ_CO2_REQUEST, READ_CO2_412_5_RESPONSE, STATUS_REQUEST, STATUS_ALL_OK_RESPONSE, EXCEPTION_02_RESPONSE]
)
def test_example_frames_pass_our_crc_check(frame: bytes) -> None:
    assert rtu.crc_ok(frame)
    assert not rtu.crc_ok(frame[:-1] + bytes((frame[-1] ^ 0x01,)))


def test_request_builder_reproduces_the_manual_example() -> None:
    assert rtu.read_request(0xF0, rtu.FC_READ_HOLDING, 0x0000, 2) == READ_CO2_REQUEST
    assert rtu.read_request(0xF0, rtu.FC_READ_HOLDING, 0x0800, 2) == STATUS_REQUEST
    assert rtu.exception_response(0xF0, rtu.FC_READ_HOLDING, rtu.EXC_ILLEGAL_ADDRESS) == EXCEPTION_02_RESPONSE


def test_crc_agrees_with_pymodbus_independent_implementation() -> None:
    rng = random.Random(1)
    for _ in range(200):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        # pymodbus returns the CRC byte-swapped for big-endian packing; the wire order is low byte first.
        assert struct.pack(">H", FramerRTU.compute_CRC(data)) == struct.pack("<H", rtu.crc16_modbus(data))


def test_the_crc_check_accepts_exactly_the_frames_whose_last_two_bytes_are_their_bodys_crc() -> None:
    """`crc_ok` tests the whole frame's remainder for 0; it must agree with comparing the body's CRC to the frame's
    last two bytes, for right frames, frames with any other pair of last bytes and frames too short to hold one."""
    rng = random.Random(2)
    for _ in range(3000):
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
        right = struct.pack("<H", rtu.crc16_modbus(body))
        other = right if rng.random() < 0.3 else bytes(rng.randrange(256) for _ in range(2))
        frame = body + other
        expected = len(frame) >= 4 and other == struct.pack("<H", rtu.crc16_modbus(body))
        assert rtu.crc_ok(frame) == expected, frame.hex()


def test_example_response_decodes_to_412_5_ppm() -> None:
    words = registers_of(READ_CO2_412_5_RESPONSE)
    assert words == [0x4000, 0x43CE]  # low word first on the wire
    assert reg.decode_float32(words) == 412.5
    assert reg.encode_float32(412.5) == words


def test_manual_worked_example_d47a_43e8_is_465_66_ppm() -> None:
    assert reg.decode_float32([0xD47A, 0x43E8]) == pytest.approx(465.66, abs=0.005)


def test_word_order_is_honoured_both_ways() -> None:
    assert reg.decode_float32([0x43CE, 0x4000], WordOrder.HIGH_FIRST) == 412.5
    assert reg.encode_float32(412.5, WordOrder.HIGH_FIRST) == [0x43CE, 0x4000]


def test_quiet_nan_and_int16_sentinel_mean_no_value() -> None:
    assert reg.decode_float32([0x0000, 0x7FC0]) is None
    assert reg.encode_float32(math.nan) == [0x0000, 0x7FC0]
    co2_int = reg.POINT_BY_NAME["co2_int"]
    assert reg.decode_point(co2_int, [0x8000]) is None
    assert reg.encode_point(co2_int, None) == [0x8000]


def test_int16_is_signed_and_scaled() -> None:
    plain = reg.POINT_BY_NAME["co2_int"]
    x10 = reg.POINT_BY_NAME["co2_int_x10"]
    assert reg.decode_point(plain, [0xFFFF]) == -1
    assert reg.decode_point(x10, [4651]) == pytest.approx(46510.0)
    # Above the int16 range the plain register saturates while the x10 one still carries the value.
    assert reg.encode_point(plain, 46510.0) == [32767]
    assert reg.encode_point(x10, 46510.0) == [4651]


def test_uint32_error_code_is_low_word_first() -> None:
    point = reg.POINT_BY_NAME["error_code"]
    assert reg.decode_point(point, [0x4000, 0x0000]) == 0x4000
    assert reg.decode_point(point, [0x0000, 0x0001]) == 0x0001_0000
    assert reg.encode_point(point, 0x0001_4000) == [0x4000, 0x0001]


def test_map_addresses_match_protocols_table() -> None:
    expected = {
        "co2": (0x0000, DataType.FLOAT32),
        "temperature": (0x0004, DataType.FLOAT32),
        "co2_int": (0x0100, DataType.INT16),
        "co2_int_x10": (0x0101, DataType.INT16),
        "comp_pressure_eeprom": (0x0200, DataType.FLOAT32),
        "comp_pressure": (0x0208, DataType.FLOAT32),
        "comp_o2": (0x020E, DataType.FLOAT32),
        "modbus_address": (0x0300, DataType.INT16),
        "co2_filter": (0x0308, DataType.INT16),
        "device_status": (0x0800, DataType.UINT16),
        "co2_status": (0x0801, DataType.UINT16),
        "error_code": (0x0803, DataType.UINT32),
    }
    for name, (address, data_type) in expected.items():
        point = reg.POINT_BY_NAME[name]
        assert (point.address, point.type) == (address, data_type), name
    assert all(p.word_order is WordOrder.LOW_FIRST for p in reg.POINTS)
    assert {a for p in reg.POINTS if p.writable for a in p.addresses} == set(range(0x0208, 0x0210))


def test_compiled_blocks_never_bridge_a_gap_nor_split_a_point() -> None:
    blocks = reg.compile_blocks(reg.POINTS)
    covered = [a for b in blocks for a in range(b.address, b.address + b.count)]
    assert sorted(covered) == sorted(reg.MAPPED_ADDRESSES)
    for block in blocks:
        assert block.count <= reg.MAX_READ_REGISTERS
        span = range(block.address, block.address + block.count)
        assert all(set(p.addresses) <= set(span) for p in block.points)
        assert sorted(a for p in block.points for a in p.addresses) == list(span)
    # Blocks are maximal: two blocks that touch would have been merged.
    ends = {b.address + b.count for b in blocks}
    assert not any(b.address in ends for b in blocks)


def test_polled_subset_needs_one_read_per_separate_point_group() -> None:
    blocks = reg.compile_blocks(reg.points_by_name(["co2", "temperature", "device_status", "co2_status", "error_code"]))
    # 0x0002-0x0003 and 0x0802 are undocumented, so CO2/T and status/error code cannot share a read.
    assert [(b.address, b.count) for b in blocks] == [(0x0000, 2), (0x0004, 2), (0x0800, 2), (0x0803, 2)]


def test_block_decode_places_each_point_at_its_offset() -> None:
    (block,) = reg.compile_blocks(reg.points_by_name(["device_status", "co2_status"]))
    assert block.decode([4, 256]) == {"device_status": 4, "co2_status": 256}
    with pytest.raises(ValueError, match="expects 2 registers"):
        block.decode([0])


def test_inconsistent_maps_are_rejected_at_compile_time() -> None:
    a = Point("a", 0x10, DataType.FLOAT32, "", "")
    overlapping = Point("b", 0x11, DataType.INT16, "", "")
    with pytest.raises(reg.RegisterMapError, match="overlap at 0x0011"):
        reg.compile_blocks([a, overlapping])
    with pytest.raises(reg.RegisterMapError, match="declared twice"):
        reg.compile_blocks([a, Point("a", 0x20, DataType.INT16, "", "")])
    with pytest.raises(reg.RegisterMapError, match="unknown register point"):
        reg.points_by_name(["co2", "nonsense"])


def test_describe_bits_names_known_and_unknown_bits() -> None:
    assert reg.describe_bits(0x4010, reg.ERROR_BITS) == "supply voltage low, IR source temperature out of range"
    assert "unknown bits 0x8000" in reg.describe_bits(0x8000, reg.ERROR_BITS)
    assert reg.describe_bits(0, reg.ERROR_BITS) == "none"
