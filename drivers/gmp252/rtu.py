"""Modbus RTU framing for the GMP252 driver and simulator: re-exported from `gateway.driver_api.rtu`, where the
serial-line master and the other Modbus drivers share it."""

from gateway.driver_api.rtu import (
    EXC_ILLEGAL_ADDRESS,
    EXC_ILLEGAL_FUNCTION,
    EXC_ILLEGAL_VALUE,
    FC_READ_HOLDING,
    FC_READ_INPUT,
    FC_WRITE_MULTIPLE,
    FC_WRITE_SINGLE,
    ModbusExceptionReply,
    add_crc,
    crc16_modbus,
    crc_ok,
    exception_response,
    read_request,
    read_response,
    request_length,
)

__all__ = [
    "EXC_ILLEGAL_ADDRESS",
    "EXC_ILLEGAL_FUNCTION",
    "EXC_ILLEGAL_VALUE",
    "FC_READ_HOLDING",
    "FC_READ_INPUT",
    "FC_WRITE_MULTIPLE",
    "FC_WRITE_SINGLE",
    "ModbusExceptionReply",
    "add_crc",
    "crc16_modbus",
    "crc_ok",
    "exception_response",
    "read_request",
    "read_response",
    "request_length",
]
