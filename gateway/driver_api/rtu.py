"""Modbus RTU framing, shared by the serial-line master (`gateway/edge/bus.py`), the probe scanner and every
Modbus simulator.

Frame layout (Modbus over Serial Line V1.02 §2.5.1)::

    [ addr (1) ][ function (1) ][ data (0..252) ][ CRC16 (2, low byte first) ]

CRC-16/MODBUS: init 0xFFFF, reflected polynomial 0xA001, no final XOR. Frames are separated on the wire by at
least 3.5 character times of silence (`frame_gap_s`); on a pseudo-terminal that silence means nothing, so both
sides find frame ends from the function code instead (`request_length`, `response_length`).
"""

from __future__ import annotations

import struct

from gateway.driver_api.base import DeviceError, FailureKind

FC_READ_HOLDING = 0x03
FC_READ_INPUT = 0x04
FC_WRITE_SINGLE = 0x06
FC_WRITE_MULTIPLE = 0x10

EXC_ILLEGAL_FUNCTION = 0x01
EXC_ILLEGAL_ADDRESS = 0x02
EXC_ILLEGAL_VALUE = 0x03

EXCEPTION_MEANING: dict[int, str] = {
    1: "illegal function",
    2: "illegal data address (register not in the device's map)",
    3: "illegal data value",
    4: "server device failure",
    6: "server device busy",
}


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


def bits_per_char(bytesize: int, parity: str, stopbits: int) -> int:
    """Start bit + data bits + parity bit (if any) + stop bits: 11 for 8N2 and 8E1, 10 for 8N1."""
    return 1 + bytesize + (0 if parity == "N" else 1) + stopbits


def frame_gap_s(baudrate: int, bits: int = 11) -> float:
    """The silent interval t3.5 between frames; the spec fixes it at 1.75 ms above 19200 bit/s."""
    return 3.5 * bits / baudrate if baudrate <= 19200 else 0.00175


def request_length(buffer: bytes) -> int | None:
    """Total length of the request starting at buffer[0], or None while too few bytes are in to tell.

    Unknown function codes also give None; a responder then ends the frame at a silent gap.
    """
    if len(buffer) < 2:
        return None
    function = buffer[1]
    if function in (FC_READ_HOLDING, FC_READ_INPUT, FC_WRITE_SINGLE):
        return 8
    if function == FC_WRITE_MULTIPLE:
        return None if len(buffer) < 7 else 9 + buffer[6]
    return None


def response_length(buffer: bytes) -> int | None:
    """Total length of the reply starting at buffer[0] (a master's view), or None while too few bytes are in."""
    if len(buffer) < 3:
        return None
    function = buffer[1]
    if function & 0x80:
        return 5
    if function in (FC_READ_HOLDING, FC_READ_INPUT):
        return 5 + buffer[2]
    if function in (FC_WRITE_SINGLE, FC_WRITE_MULTIPLE):
        return 8
    return None


def read_request(address: int, function: int, start: int, count: int) -> bytes:
    return add_crc(struct.pack(">BBHH", address, function, start, count))


def read_response(address: int, function: int, registers: list[int]) -> bytes:
    return add_crc(struct.pack(f">BBB{len(registers)}H", address, function, 2 * len(registers), *registers))


def exception_response(address: int, function: int, code: int) -> bytes:
    return add_crc(bytes((address, function | 0x80, code)))



class ModbusExceptionReply(DeviceError):
    """A well-formed exception reply (kind PROTOCOL): the device is there and answered, but refused the request."""

    def __init__(self, device: int, function: int, code: int) -> None:
        meaning = EXCEPTION_MEANING.get(code, "unknown exception code")
        super().__init__(
            FailureKind.PROTOCOL,
            f"device {device} answered Modbus exception {code:02d} ({meaning}) to function {function:02d}",
            "check that the device at this address is the configured model (not another device on the bus)",
        )
        self.device = device
        self.function = function
        self.code = code
