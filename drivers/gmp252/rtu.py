"""Modbus RTU framing used by the simulator (and by tests to check bytes on the wire).

Frame layout (Modbus over Serial Line V1.02 §2.5.1)::

    [ addr (1) ][ function (1) ][ data (0..252) ][ CRC16 (2, low byte first) ]

CRC-16/MODBUS: init 0xFFFF, reflected polynomial 0xA001, no final XOR. Request lengths are implied by the
function code, which is how a responder finds frame ends on a PTY where the 3.5-character silence is meaningless.
"""

from __future__ import annotations

import struct

FC_READ_HOLDING = 0x03
FC_READ_INPUT = 0x04
FC_WRITE_SINGLE = 0x06
FC_WRITE_MULTIPLE = 0x10

EXC_ILLEGAL_FUNCTION = 0x01
EXC_ILLEGAL_ADDRESS = 0x02
EXC_ILLEGAL_VALUE = 0x03


def _make_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _make_table()


def crc16_modbus(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


def add_crc(body: bytes) -> bytes:
    return body + struct.pack("<H", crc16_modbus(body))


def crc_ok(frame: bytes) -> bool:
    return len(frame) >= 4 and struct.unpack("<H", frame[-2:])[0] == crc16_modbus(frame[:-2])


def request_length(buffer: bytes) -> int | None:
    """Total length of the request starting at buffer[0], or None while too few bytes are in to tell.

    Unknown function codes return 4 + 0 data bytes so the responder can answer exception 01 after a gap.
    """
    if len(buffer) < 2:
        return None
    function = buffer[1]
    if function in (FC_READ_HOLDING, FC_READ_INPUT, FC_WRITE_SINGLE):
        return 8
    if function == FC_WRITE_MULTIPLE:
        return None if len(buffer) < 7 else 9 + buffer[6]
    return None


def read_request(address: int, function: int, start: int, count: int) -> bytes:
    return add_crc(struct.pack(">BBHH", address, function, start, count))


def read_response(address: int, function: int, registers: list[int]) -> bytes:
    return add_crc(struct.pack(f">BBB{len(registers)}H", address, function, 2 * len(registers), *registers))


def exception_response(address: int, function: int, code: int) -> bytes:
    return add_crc(bytes((address, function | 0x80, code)))
