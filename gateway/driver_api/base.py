"""The contract between the edge daemon and a device driver (re-exported by `gateway.driver_api`: import from there).

A driver lives in `drivers/<name>/` and registers its class under the `sinkwatch.drivers` entry-point group
(built-ins too, in pyproject.toml), so third-party drivers plug in the same way. Its life has three phases:

- **validate**: `Driver.Config.model_validate(mapping)` is pure and names the faulty key; it runs for every sensor
  before the daemon touches any port.
- **open**: `Driver(config, station=...)` then `open()` connects; it may raise `DeviceError`.
- **poll**: `poll()` returns this device's readings or raises `DeviceError` for this device alone; the daemon
  counts the error, logs state changes and moves on to the next device.

**Devices on a shared serial line** (RS-485 multidrop; added for issue 3, optional, so older drivers still load):
a driver whose `Config` has `serial_settings() -> SerialSettings | None` and whose class has
`attach(line: SerialLine)` is owned by the line's `SerialBus` (`gateway/edge/bus.py`). The bus calls `attach()`
once, before `open()`, with the one `SerialLine` of that port; from then on the driver must not open the port
itself but send every transaction through the line (`read_registers` for Modbus RTU, `transact` for ASCII), which
serialises all traffic with the inter-frame delay and reopens a vanished USB adapter. `open()` then only prepares
the device (it may be a no-op) and `close()` must not close the line. A driver that is never attached (a TCP
endpoint, a test) keeps using its own connection. `serial_settings()` returning None means "not on a serial line".
A driver class with `shares_line = False` (an ASCII device without addressing) still gets a line of its own, but
the station config refuses a second device on its port. A sensor made of several Modbus devices on its line (an
automated chamber: an I/O module and an analyzer) lists their addresses with `bus_addresses()` on its Config, so
the station config checks each of them against the line's other devices; coils and discrete inputs go through
`gateway.driver_api.rtu.read_bits`/`write_coil` over the line's `transact`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from importlib.metadata import EntryPoint, entry_points
from typing import ClassVar, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.configfile import refuse_bool_for_number
from gateway.model import Identifier, Reading

DRIVER_ENTRY_POINT_GROUP = "sinkwatch.drivers"
SIMULATOR_ENTRY_POINT_GROUP = "sinkwatch.simulators"


class FailureKind(StrEnum):
    """Why a device interaction failed; used as the label of the error counters."""

    NO_PORT = "no_port"  # the serial device or TCP endpoint does not exist / refuses
    TIMEOUT = "timeout"  # the device did not answer in time
    CRC = "crc"  # a frame arrived but its CRC or checksum was wrong
    PROTOCOL = "protocol"  # a well-formed reply we cannot use (exception code, wrong length, ...)
    DEVICE = "device"  # the device itself reports a fault


class DeviceError(Exception):
    """A failure of one device, with a reason a technician can act on."""

    def __init__(self, kind: FailureKind, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (fix: {self.hint})" if self.hint else self.message


class SensorConfig(BaseModel):
    """Keys common to every sensor entry in a station config; each driver's `Config` extends this."""

    # NaN or infinity in a config is a typo or a templating accident, never a setting: refused for every key
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    _refuse_bool_for_number = field_validator("*", mode="before")(refuse_bool_for_number)

    name: Identifier = Field(description="unique sensor name within the station, e.g. soil_co2_10cm")
    driver: str = Field(description="driver name as registered under the sinkwatch.drivers entry point")
    interval_s: float = Field(
        default=10.0, gt=0, le=86400, description="polling interval in seconds (> 0; shorter than a poll takes: polled "
                                                  "back to back, the slots it cannot keep counted as missed)"
    )


@runtime_checkable
class Driver(Protocol):
    """What the edge daemon needs from a driver class and its instances."""

    Config: ClassVar[type[SensorConfig]]

    def __init__(self, config: SensorConfig, *, station: str) -> None: ...

    def open(self) -> None: ...

    def poll(self) -> list[Reading]: ...

    def close(self) -> None: ...


@functools.cache
def _registered_drivers() -> tuple[EntryPoint, ...]:
    # Scanning the installed distributions costs ~10 ms; a config names a driver per sensor, and what is
    # installed does not change while a process runs.
    return tuple(entry_points(group=DRIVER_ENTRY_POINT_GROUP))


def load_driver(name: str) -> type[Driver]:
    """Find a driver class by its registered name; raise KeyError listing the known names."""
    found = _registered_drivers()
    for entry in found:
        if entry.name == name:
            try:
                driver_class: type[Driver] = entry.load()
            except ImportError as exc:  # a driver's own package (pymodbus, ...) comes with the station extra
                raise KeyError(f"driver {name!r} cannot be loaded ({exc}); install the station's packages: "
                               "pip install 'sinkwatch[station]'") from None
            return driver_class
    raise KeyError(_unknown_driver(name, [e.name for e in found]))


def _unknown_driver(name: str, names: list[str]) -> str:
    import difflib

    known = ", ".join(sorted(names)) or "none (is sinkwatch installed?)"
    close = difflib.get_close_matches(name.lower(), names, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}? " if close else ""
    return f"unknown driver {name!r}; {hint}known drivers: {known}"


def driver_sample(name: str) -> str:
    """The text of a registered driver's `sample.yaml` (its sensor entry, every key documented), found in the package
    of the driver's module; KeyError naming the known drivers for an unknown name."""
    from importlib.resources import files

    found = {entry.name: entry for entry in _registered_drivers()}
    if name not in found:
        raise KeyError(_unknown_driver(name, list(found)))
    package = found[name].module.rpartition(".")[0] or found[name].module
    return files(package).joinpath("sample.yaml").read_text(encoding="utf-8")


# --- streaming instruments ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamColumn:
    """One value of a streamed record: its raw-data name (EddyPro/FLUXNET style: U, V, W, T_SONIC, CO2, H2O,
    DIAG_SONIC, ...) and unit."""

    name: str
    unit: str


# The BadRecord reason for a frame that is a legitimate instrument message but not data (an acknowledgement of a
# configuration command, a diagnostics report): the runner counts it as a message, not as an error.
NOT_DATA = "not_data"


class BadRecord(Exception):
    """A streamed frame that must be dropped; `reason` labels the counter (checksum, format, counter, range), or is
    NOT_DATA for an expected non-data message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class StreamConfig(SensorConfig):
    """Keys common to every streaming instrument (10-20 Hz sonic anemometers and gas analyzers)."""

    port: str = Field(description="serial device path, or tcp://HOST:PORT for an instrument on Ethernet")
    baudrate: int = Field(default=115200, ge=1200, le=921600)
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    frequency_hz: float = Field(default=20.0, gt=0, le=100, description="the instrument's output rate")

    @field_validator("port")
    @classmethod
    def _check_tcp_port(cls, value: str) -> str:
        if value.startswith("tcp://"):
            host, sep, number = value.removeprefix("tcp://").rpartition(":")
            if not sep or not host or not number.isdigit() or not 0 < int(number) < 65536:
                raise ValueError(f"{value!r} is not tcp://HOST:PORT with a port 1..65535, e.g. tcp://192.0.2.10:4001")
        return value


@runtime_checkable
class StreamDriver(Protocol):
    """What the stream runner needs from a streaming instrument's driver: its frame grammar, nothing else.

    The runner owns the transport (serial or TCP), splits the byte stream at `terminator`, stamps each frame on
    arrival, and calls `parse(frame)`; the driver returns the values in `columns` order (None for a missing
    value) or raises BadRecord. `start_commands()` are written once after each (re)connect, e.g. to switch the
    instrument's output on.
    """

    Config: ClassVar[type[StreamConfig]]
    columns: ClassVar[tuple[StreamColumn, ...]]
    terminator: ClassVar[bytes]

    def __init__(self, config: StreamConfig, *, station: str) -> None: ...

    def start_commands(self) -> list[bytes]: ...

    def parse(self, frame: bytes) -> tuple[float | None, ...]: ...


def is_stream_driver(driver_class: type) -> bool:
    return hasattr(driver_class, "parse") and hasattr(driver_class, "columns")


# --- devices on a shared serial line (RS-485) ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """Where a device is wired and the character format of its line; devices sharing `port` must agree on the rest."""

    port: str
    baudrate: int
    bytesize: int = 8
    parity: str = "N"
    stopbits: int = 1

    FORMAT_KEYS: ClassVar[tuple[str, ...]] = ("baudrate", "bytesize", "parity", "stopbits")

    def describe(self) -> str:
        return f"{self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"


class SerialLine(Protocol):
    """What a bus-attached driver may do on its line; every call is one complete, serialised transaction.

    Both methods raise DeviceError: TIMEOUT (silence), CRC, PROTOCOL (exception reply, wrong length, a reply from
    another address) or NO_PORT (the adapter is gone; the line reopens it with backoff).
    """

    settings: SerialSettings

    def read_registers(
        self, device: int, address: int, count: int, *, function: int = 3, timeout_s: float, retries: int = 0
    ) -> list[int]: ...

    def transact(self, request: bytes, *, complete: Callable[[bytes], bool], timeout_s: float) -> bytes: ...


@runtime_checkable
class LineDriver(Protocol):
    """The optional extension of `Driver` for devices owned by a `SerialBus`."""

    def attach(self, line: SerialLine) -> None: ...


def serial_settings_of(config: SensorConfig) -> SerialSettings | None:
    """The sensor's serial line, or None when it is not on one (TCP, a driver without `serial_settings`)."""
    method = getattr(config, "serial_settings", None)
    result = method() if callable(method) else None
    return result if isinstance(result, SerialSettings) else None
