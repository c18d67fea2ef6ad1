"""The driver API: everything a device driver may import besides `gateway.model` (and, for its simulator,
`gateway.simulation`). Drivers never import the edge daemon, the central service or another driver; what two
drivers share belongs here.

- the driver contract (`base`): `Driver`, `SensorConfig`, `DeviceError`/`FailureKind`, entry-point lookup; streaming
  instruments: `StreamDriver`, `StreamConfig`, `StreamColumn`, `BadRecord`, `NOT_DATA`; devices on a shared serial
  line: `SerialSettings`, `SerialLine`, `LineDriver`, `serial_settings_of`;
- `RtuSerialLine` (`serial_line`): the standard `SerialLine` over a real port, for a driver not attached to a bus;
- `kernel_clock_synced` (`clock`): whether the system clock is synchronised, for each reading's `clock_synced`;
- `gateway.driver_api.rtu`: Modbus RTU framing and CRC (drivers, simulators, the line master, the probe scanner).

See `base` for the driver's life (validate, open, poll) and the shared-line rules.
"""

from gateway.driver_api.base import (
    DRIVER_ENTRY_POINT_GROUP,
    NOT_DATA,
    SIMULATOR_ENTRY_POINT_GROUP,
    BadRecord,
    DeviceError,
    Driver,
    FailureKind,
    LineDriver,
    SensorConfig,
    SerialLine,
    SerialSettings,
    StreamColumn,
    StreamConfig,
    StreamDriver,
    is_stream_driver,
    load_driver,
    serial_settings_of,
)
from gateway.driver_api.clock import kernel_clock_synced
from gateway.driver_api.serial_line import LineCounters, RtuSerialLine

__all__ = [
    "DRIVER_ENTRY_POINT_GROUP",
    "NOT_DATA",
    "SIMULATOR_ENTRY_POINT_GROUP",
    "BadRecord",
    "DeviceError",
    "Driver",
    "FailureKind",
    "LineCounters",
    "LineDriver",
    "RtuSerialLine",
    "SensorConfig",
    "SerialLine",
    "SerialSettings",
    "StreamColumn",
    "StreamConfig",
    "StreamDriver",
    "is_stream_driver",
    "kernel_clock_synced",
    "load_driver",
    "serial_settings_of",
]
