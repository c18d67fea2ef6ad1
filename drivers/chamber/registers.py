"""The two Modbus RTU devices of an automated soil chamber on one RS-485 line, declared as data.

**Lid: a digital I/O module** — Waveshare "Modbus RTU IO 8CH" (8 digital inputs, 8 open-drain outputs; wiki page
"Modbus RTU IO 8CH", sections "Modbus RTU Command" and "Register Address"). The lid actuator (a pneumatic valve or
a motor relay) hangs on an output, the lid's limit switch (closed end; optionally a second one at the open end) on
an input. Addresses are 0-based wire addresses.

| what | function | wire address | values |
|---|---|---|---|
| outputs DO1..DO8 | FC 01 read, FC 05 one, FC 15 several | coils 0x0000..0x0007 | 1 = on (the lid closes) |
| inputs DI1..DI8 | FC 02 read | discrete inputs 0x0000..0x0007 | 1 = active (switch closed) |
| output control mode, DO1..DO8 | FC 03 read, FC 06 write | holding 0x1000..0x1007 | 0 normal (needed), 1 linkage |
| serial settings | FC 03/06 | holding 0x2000 | high byte parity, low byte baud rate enum |
| device address | FC 03/06 | holding 0x4000 | 1..255, factory default 1 |

Control modes besides 0 normal and 1 linkage (DIn drives DOn): 2 toggle, 3 edge; serial settings: parity 0 none,
1 even, 2 odd; baud 0 4800, 1 9600, 2 19200, 3 38400 [U: encodings as the wiki gives them, not checked on a unit].

Factory serial format 9600 8N1, address 1.

**CO2: a Vaisala GMP252** in the chamber's headspace (GMP252 User Guide M211897EN-D, Appendix A): the points this
driver reads. Floats are IEEE-754 binary32, least-significant word first; a float with no value is a quiet NaN.

| point | wire address | type | unit |
|---|---|---|---|
| CO2 | 0x0000 | float32 | ppm (umol mol-1) |
| probe temperature | 0x0004 | float32 | degC |
| device status | 0x0800 | uint16 | 0 OK, +1 critical, +2 error, +4 warning |
| CO2 status | 0x0801 | uint16 | 0 OK, 2 unreliable (start-up), 256 not ready |
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

# --- the digital I/O module --------------------------------------------------------------------------------------

IO_CHANNELS = 8
COILS_START = 0x0000
DISCRETE_INPUTS_START = 0x0000
CONTROL_MODE_START = 0x1000
SERIAL_SETTINGS_REGISTER = 0x2000
DEVICE_ADDRESS_REGISTER = 0x4000
CONTROL_MODE_NORMAL = 0
CONTROL_MODES: dict[int, str] = {0: "normal", 1: "linkage (the input drives the output)", 2: "toggle", 3: "edge"}


def coil_of(output: int) -> int:
    """Wire address of output DO<output> (1-based, as printed on the module)."""
    return COILS_START + output - 1


def input_of(channel: int) -> int:
    """Index of input DI<channel> (1-based) in a read of the discrete inputs from DISCRETE_INPUTS_START."""
    return DISCRETE_INPUTS_START + channel - 1


# --- the GMP252 in the chamber -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FloatPoint:
    name: str
    address: int
    unit: str
    variable: str


CO2 = FloatPoint("co2", 0x0000, "umol mol-1", "CO2")
TEMPERATURE = FloatPoint("temperature", 0x0004, "degC", "T_PROBE")
STATUS_START = 0x0800  # device status, then CO2 status
STATUS_COUNT = 2
QNAN_BITS = 0x7FC00000
DEVICE_STATUS_BITS: dict[int, str] = {1: "critical", 2: "error", 4: "warning"}
CO2_STATUS_MEANING: dict[int, str] = {0: "ok", 2: "reading unreliable (start-up)", 256: "not ready (start-up)"}


def decode_float(words: list[int]) -> float | None:
    """Two registers as sent (low word first) -> float; None for the probe's NaN ("no value")."""
    low, high = words
    (value,) = struct.unpack(">f", struct.pack(">HH", high, low))
    return None if math.isnan(value) else float(value)


def encode_float(value: float) -> list[int]:
    """Inverse of decode_float (the simulator's side); NaN becomes the probe's quiet NaN."""
    raw = struct.pack(">I", QNAN_BITS) if math.isnan(value) else struct.pack(">f", value)
    high, low = struct.unpack(">HH", raw)
    return [low, high]


def float32(value: float) -> float:
    """The value a reader decodes after `value` was sent as float32."""
    return float(struct.unpack(">f", struct.pack(">f", value))[0])


def describe_status(device_status: int, co2_status: int) -> str:
    names = [name for bit, name in DEVICE_STATUS_BITS.items() if device_status & bit]
    text = f"device status {device_status} ({', '.join(names) or 'ok'})"
    if co2_status:
        text += f", CO2 status {co2_status} ({CO2_STATUS_MEANING.get(co2_status, 'unknown')})"
    return text
