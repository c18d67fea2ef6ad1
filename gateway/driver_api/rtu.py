"""Modbus RTU framing, shared by the serial-line master (`gateway/edge/bus.py`), the probe scanner and every
Modbus simulator.

Function codes: 01/02 (coils, discrete inputs), 03/04 (registers), 05/06 (one coil, one register), 15/16 (several);
`read_bits` and `write_coil` carry the bit functions over any `SerialLine`'s raw `transact` (Modbus Application
Protocol Specification V1.1b3 §6.1, §6.2, §6.5).

Frame layout (Modbus over Serial Line V1.02 §2.5.1)::

    [ addr (1) ][ function (1) ][ data (0..252) ][ CRC16 (2, low byte first) ]

CRC-16/MODBUS: init 0xFFFF, reflected polynomial 0xA001, no final XOR. Frames are separated on the wire by at
least 3.5 character times of silence (`frame_gap_s`); on a pseudo-terminal that silence means nothing, so both
sides find frame ends from the function code instead (`request_length`, `response_length`).
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Sequence

from gateway.driver_api.base import DeviceError, FailureKind, SerialLine

FC_READ_COILS = 0x01
FC_READ_DISCRETE_INPUTS = 0x02
FC_READ_HOLDING = 0x03
FC_READ_INPUT = 0x04
FC_WRITE_SINGLE_COIL = 0x05
FC_WRITE_SINGLE = 0x06
FC_WRITE_MULTIPLE_COILS = 0x0F
FC_WRITE_MULTIPLE = 0x10

COIL_ON = 0xFF00  # FC 05's value for "on"; 0x0000 is "off", anything else is an illegal value (V1.1b3 §6.5)
COIL_OFF = 0x0000

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
    """The frame ends in the CRC of what precedes it (low byte first): then, and only then, the CRC of the whole
    frame is 0 (appending a CRC-16/MODBUS to its message leaves a zero remainder, and the last two bytes fix the
    remainder one to one), which spares slicing off the body and unpacking the two bytes."""
    return len(frame) >= 4 and crc16_modbus(frame) == 0


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
    if function in (FC_READ_COILS, FC_READ_DISCRETE_INPUTS, FC_READ_HOLDING, FC_READ_INPUT, FC_WRITE_SINGLE_COIL,
                    FC_WRITE_SINGLE):
        return 8
    if function in (FC_WRITE_MULTIPLE, FC_WRITE_MULTIPLE_COILS):
        return None if len(buffer) < 7 else 9 + buffer[6]
    return None


def response_length(buffer: bytes) -> int | None:
    """Total length of the reply starting at buffer[0] (a master's view), or None while too few bytes are in."""
    if len(buffer) < 3:
        return None
    function = buffer[1]
    if function & 0x80:
        return 5
    if function in (FC_READ_COILS, FC_READ_DISCRETE_INPUTS, FC_READ_HOLDING, FC_READ_INPUT):
        return 5 + buffer[2]
    if function in (FC_WRITE_SINGLE_COIL, FC_WRITE_SINGLE, FC_WRITE_MULTIPLE_COILS, FC_WRITE_MULTIPLE):
        return 8
    return None


@functools.lru_cache(maxsize=1024)
def read_request(address: int, function: int, start: int, count: int) -> bytes:
    """The request frame of a register read; a master asks the same few questions over and over, so each is built
    (and its CRC computed) once."""
    return add_crc(struct.pack(">BBHH", address, function, start, count))


def read_response(address: int, function: int, registers: list[int]) -> bytes:
    return add_crc(struct.pack(f">BBB{len(registers)}H", address, function, 2 * len(registers), *registers))


def exception_response(address: int, function: int, code: int) -> bytes:
    return add_crc(bytes((address, function | 0x80, code)))


def pack_bits(bits: Sequence[bool]) -> bytes:
    """Coil or discrete-input states as FC 01/02 carry them: the first bit in the lowest bit of the first byte,
    the last byte padded with zeros (Modbus Application Protocol V1.1b3 §6.1, §6.2)."""
    out = bytearray((len(bits) + 7) // 8)
    for index, bit in enumerate(bits):
        if bit:
            out[index // 8] |= 1 << (index % 8)
    return bytes(out)


def unpack_bits(data: bytes, count: int) -> list[bool]:
    return [bool(data[index // 8] >> (index % 8) & 1) for index in range(count)]


def bits_response(address: int, function: int, bits: Sequence[bool]) -> bytes:
    packed = pack_bits(bits)
    return add_crc(bytes((address, function, len(packed))) + packed)


def write_coil_request(address: int, coil: int, on: bool) -> bytes:
    return add_crc(struct.pack(">BBHH", address, FC_WRITE_SINGLE_COIL, coil, COIL_ON if on else COIL_OFF))


def _checked_reply(reply: bytes, device: int, function: int) -> bytes:
    """The reply's data bytes (after the function code, before the CRC), or the DeviceError it amounts to."""
    if not crc_ok(reply) or response_length(reply) != len(reply):
        raise DeviceError(FailureKind.CRC, f"reply from address {device} failed the CRC check or was cut short "
                                           f"({reply.hex(' ')})",
                          "electrical noise: check 120 ohm termination at both bus ends, cable shield/ground and "
                          "length, and that no two devices share an address")
    if reply[0] != device:
        raise DeviceError(FailureKind.PROTOCOL, f"asked address {device}, address {reply[0]} answered "
                                                f"({reply.hex(' ')})",
                          "a late reply from another device: raise that device's timeout_s, or check for duplicate "
                          "addresses")
    if reply[1] == function | 0x80:
        raise ModbusExceptionReply(device, function, reply[2])
    if reply[1] != function:
        raise DeviceError(FailureKind.PROTOCOL, f"address {device}: reply of function {reply[1]} to function "
                                                f"{function} ({reply.hex(' ')})",
                          "check for another device answering at the same address")
    return reply[2:-2]


def _complete(buffer: bytes) -> bool:
    length = response_length(buffer)
    return length is not None and len(buffer) >= length


def _exchange_with_retries(line: SerialLine, request: bytes, device: int, function: int, timeout_s: float,
                           retries: int) -> bytes:
    failure: DeviceError | None = None
    for _attempt in range(retries + 1):
        try:
            return _checked_reply(line.transact(request, complete=_complete, timeout_s=timeout_s), device, function)
        except ModbusExceptionReply:
            raise
        except DeviceError as exc:
            if exc.kind not in (FailureKind.TIMEOUT, FailureKind.CRC):
                raise
            failure = exc  # silence or a damaged frame: worth another attempt
    assert failure is not None
    raise failure


def read_bits(line: SerialLine, device: int, function: int, start: int, count: int, *, timeout_s: float,
              retries: int = 0) -> list[bool]:
    """FC 01 (coils) or FC 02 (discrete inputs) over a `SerialLine`'s raw transaction: `count` states from
    `start`. Raises DeviceError like `SerialLine.read_registers` (TIMEOUT, CRC, PROTOCOL, NO_PORT)."""
    if function not in (FC_READ_COILS, FC_READ_DISCRETE_INPUTS):
        raise ValueError(f"read_bits takes function 1 (coils) or 2 (discrete inputs), not {function}")
    data = _exchange_with_retries(line, read_request(device, function, start, count), device, function, timeout_s,
                                  retries)
    if not data or data[0] != (count + 7) // 8 or len(data) != 1 + data[0]:
        raise DeviceError(FailureKind.PROTOCOL, f"address {device}: {len(data)} data bytes for {count} bits",
                          "check the device model and that no other device answers at this address")
    return unpack_bits(data[1:], count)


def write_coil(line: SerialLine, device: int, coil: int, on: bool, *, timeout_s: float, retries: int = 0) -> None:
    """FC 05: switch one coil (a relay or open-drain output) on or off; the device echoes the request."""
    request = write_coil_request(device, coil, on)
    data = _exchange_with_retries(line, request, device, FC_WRITE_SINGLE_COIL, timeout_s, retries)
    if data != request[2:-2]:
        raise DeviceError(FailureKind.PROTOCOL, f"address {device}: coil write not echoed ({data.hex(' ')})",
                          "check the device model: the reply to FC 05 repeats the request")


def write_coils_request(address: int, start: int, states: Sequence[bool]) -> bytes:
    packed = pack_bits(states)
    return add_crc(struct.pack(">BBHHB", address, FC_WRITE_MULTIPLE_COILS, start, len(states), len(packed)) + packed)


def write_coils(line: SerialLine, device: int, start: int, states: Sequence[bool], *, timeout_s: float,
                retries: int = 0) -> None:
    """FC 15: set `states` from coil `start`; the device answers with the start address and count (V1.1b3 §6.11).
    For a device that implements FC 15 and not FC 05."""
    request = write_coils_request(device, start, states)
    data = _exchange_with_retries(line, request, device, FC_WRITE_MULTIPLE_COILS, timeout_s, retries)
    if data != request[2:6]:
        raise DeviceError(FailureKind.PROTOCOL, f"address {device}: coils write not confirmed ({data.hex(' ')})",
                          "check the device model: the reply to FC 15 repeats the start address and count")



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
