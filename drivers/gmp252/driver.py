"""Vaisala GMP252 CO2 probe over Modbus RTU (RS-485) or Modbus TCP (through a serial-to-Ethernet gateway).

One poll = the compiled read blocks of `registers.py`: CO2 float, probe temperature float (unless
`read_temperature: false`) and the device/CO2 status (every `status_every_n_polls` polls; the 32-bit error code
only while the device status is not OK). The status registers set each reading's quality flag; see README.md.

Transport: on a serial port the daemon's SerialBus attaches the line it owns (`attach`), so several probes share
one RS-485 line; unattached (Modbus TCP, standalone use) the driver keeps its own pymodbus client.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator
from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from drivers.gmp252 import registers as reg
from drivers.gmp252 import rtu
from gateway.driver_api import DeviceError, FailureKind, SensorConfig, SerialLine, SerialSettings, kernel_clock_synced
from gateway.model import QualityFlag, Reading, ReadingTemplate, TimeSource, utc_now

log = logging.getLogger(__name__)

class GMP252Config(SensorConfig):
    """One GMP252 in a station config; `sample.yaml` documents every key."""

    driver: Literal["gmp252"] = "gmp252"
    port: str = Field(
        min_length=1,
        description="serial device (e.g. /dev/ttyUSB0, /dev/serial/by-id/...) or tcp://HOST:PORT for Modbus TCP",
    )
    address: int = Field(default=240, ge=1, le=247, description="Modbus slave address of the probe")
    baudrate: Literal[4800, 9600, 19200, 38400, 57600, 115200] = 19200
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 2
    bytesize: Literal[8] = 8
    timeout_s: float = Field(default=1.0, gt=0, le=30, description="reply timeout per attempt, seconds")
    retries: int = Field(default=1, ge=0, le=5, description="extra attempts after a timeout, per read")
    variable_suffix: str | None = Field(
        default=None,
        pattern=r"^_\d+_\d+_\d+$",
        description="AmeriFlux position qualifier _H_V_R appended to variable names, e.g. _1_1_1",
    )
    read_temperature: bool = True
    status_every_n_polls: int = Field(
        default=1,
        ge=1,
        le=3600,
        description="read the status registers on every n-th poll only; the polls between reuse the last status",
    )

    def serial_settings(self) -> SerialSettings | None:
        if self.is_tcp:
            return None
        return SerialSettings(self.port, self.baudrate, self.bytesize, self.parity, self.stopbits)

    @field_validator("port")
    @classmethod
    def _check_port(cls, value: str) -> str:
        if value.startswith("tcp://"):
            host, sep, number = value.removeprefix("tcp://").rpartition(":")
            if not sep or not host or not number.isdigit() or not 0 < int(number) < 65536:
                raise ValueError(f"{value!r} is not tcp://HOST:PORT, e.g. tcp://192.0.2.10:502")
        return value

    @property
    def is_tcp(self) -> bool:
        return self.port.startswith("tcp://")

    def tcp_host_port(self) -> tuple[str, int]:
        host, _, number = self.port.removeprefix("tcp://").rpartition(":")
        return host, int(number)


@dataclass(frozen=True, slots=True)
class StatusAssessment:
    """Quality of the CO2 value and of everything else the probe reports (device status applies to both)."""

    co2_flag: QualityFlag
    co2_reason: str | None
    device_flag: QualityFlag
    device_reason: str | None


def assess_status(device_status: int, co2_status: int, error_code: int, *,
                  error_code_known: bool = True) -> StatusAssessment:
    """Map the status registers 0x0800, 0x0801 and error code 0x0803 to quality flags with reasons.

    Critical (1) or error (2) make every value BAD; a warning (4) makes them SUSPECT; a non-zero CO2 status
    (2 unreliable, 256 not ready, both during warm-up) makes only CO2 SUSPECT. `error_code_known` False: the probe
    refused register 0x0803, and the reason says so instead of naming bits.
    """
    device_flag, device_reason = QualityFlag.GOOD, None
    if device_status:
        device_flag = QualityFlag.BAD if device_status & 0b011 else QualityFlag.SUSPECT
        bits = (f"error code 0x{error_code:08X} ({reg.describe_bits(error_code, reg.ERROR_BITS)})" if error_code_known
                else "error code not readable (register 0x0803 refused, Modbus exception 02)")
        device_reason = (
            f"device status {device_status} ({reg.describe_bits(device_status, reg.DEVICE_STATUS_BITS)}); {bits}"
        )
    co2_flag, co2_reason = device_flag, device_reason
    if co2_status and device_flag is not QualityFlag.BAD:
        meaning = reg.CO2_STATUS_MEANING.get(co2_status, "unknown")
        co2_flag = QualityFlag.SUSPECT
        co2_reason = "; ".join(filter(None, [f"CO2 status {co2_status} ({meaning})", device_reason]))
    return StatusAssessment(co2_flag, co2_reason, device_flag, device_reason)


# The name the Driver protocol documents; GMP252Config is the same class.
Config = GMP252Config

_MEASURED_POINTS = ("co2", "temperature")
_STATUS_POINTS = ("device_status", "co2_status")
# Register 5 (temperature) is taken from third-party code and the GMW80 map, not from the register table of the
# GMP252 User Guide (M211897EN-D, App. A): a probe or simulator without it answers exception 02, which must not cost
# the CO2 reading.
_UNVERIFIED_POINTS = frozenset({"temperature"})
# The status registers are documented from User Guide M211897EN-E on (not in -D's table): a probe of older firmware
# or an independent simulator may refuse them. Losing every CO2 reading to that would be worse than publishing it
# with its quality unconfirmed.
_NO_STATUS = ("probe refused the status registers (0x0800-0x0801 or 0x0803, Modbus exception 02): quality not "
              "confirmed by the probe's status; an older firmware (status registers from User Guide M211897EN-E on) "
              "or another model")


class _RegisterRefused(DeviceError):
    """The device answered exception 02 (illegal data address): it has no such register."""


class GMP252Driver:
    """gateway.driver_api.Driver for a Vaisala GMP252 (or GMP251; check its CO2 unit first)."""

    Config: ClassVar[type[SensorConfig]] = GMP252Config

    def __init__(
        self,
        config: SensorConfig,
        *,
        station: str,
        clock_synced: Callable[[], bool] = kernel_clock_synced,
    ) -> None:
        if not isinstance(config, GMP252Config):
            config = GMP252Config.model_validate(config.model_dump())
        self.config: GMP252Config = config
        self.station = station
        self._clock_synced = clock_synced
        names = [n for n in _MEASURED_POINTS if config.read_temperature or n != "temperature"]
        self._blocks = reg.compile_blocks(reg.points_by_name(names))
        self._status_blocks = reg.compile_blocks(reg.points_by_name(_STATUS_POINTS))
        self._error_blocks = reg.compile_blocks(reg.points_by_name(["error_code"]))
        self._last_status: dict[str, float | int | None] | None = None
        self._polls = 0
        self.refused_reads = 0
        """Polls in which the probe refused an unverified register (exception 02); see `_refusals`."""
        self._refusals: dict[str, str] = {}
        self.status_refusals = 0
        """Status reads the probe refused (exception 02); readings of those polls are SUSPECT with `_NO_STATUS`."""
        self._client: ModbusSerialClient | ModbusTcpClient | None = None
        self._line: SerialLine | None = None
        self._rx_trace = b""
        # station, sensor, variable and unit validated once here, not in every poll's readings
        self._templates: dict[str, ReadingTemplate] = {}
        for point in reg.points_by_name(names):
            assert point.variable is not None
            self._templates[point.name] = ReadingTemplate(
                station=station, sensor=config.name, variable=point.variable + (config.variable_suffix or ""),
                unit=point.unit, time_source=TimeSource.GATEWAY)

    def __repr__(self) -> str:
        return f"GMP252Driver({self.config.name!r}, port={self.config.port!r}, address={self.config.address})"

    @property
    def _where(self) -> str:
        return f"GMP252 {self.config.name!r} at {self.config.port} address {self.config.address}"

    # --- connection --------------------------------------------------------------------------------------------

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        # pymodbus drops a frame with a bad CRC silently and then times out; remembering the raw bytes of the
        # current transaction is how a CRC failure is told apart from silence.
        if sending:
            self._rx_trace = b""
        elif data:
            self._rx_trace = bytes(data)
        return data

    def _make_client(self) -> ModbusSerialClient | ModbusTcpClient:
        cfg = self.config
        if cfg.is_tcp:
            host, port = cfg.tcp_host_port()
            return ModbusTcpClient(
                host, port=port, timeout=cfg.timeout_s, retries=cfg.retries, trace_packet=self._trace_packet
            )
        return ModbusSerialClient(
            cfg.port,
            baudrate=cfg.baudrate,
            bytesize=cfg.bytesize,
            parity=cfg.parity,
            stopbits=cfg.stopbits,
            timeout=cfg.timeout_s,
            retries=cfg.retries,
            trace_packet=self._trace_packet,
        )

    def _no_port(self, detail: str) -> DeviceError:
        if self.config.is_tcp:
            return DeviceError(
                FailureKind.NO_PORT,
                f"{self._where}: cannot connect ({detail})",
                "check that the Modbus TCP gateway is powered and reachable and the `port` key's host:port",
            )
        return DeviceError(
            FailureKind.NO_PORT,
            f"{self._where}: cannot open serial port ({detail})",
            "check the cable/adapter and the `port` key (ls /dev/serial/by-id/), and that no other program "
            "holds the port",
        )

    def attach(self, line: SerialLine) -> None:
        """Use the bus's shared line for every transaction from now on (gateway.driver_api.LineDriver)."""
        self.close()
        self._line = line

    def open(self) -> None:
        if self._line is None:
            self._connect()

    def _connect(self) -> ModbusSerialClient | ModbusTcpClient:
        if self._client is not None and self._client.connected:
            return self._client
        if not self.config.is_tcp and not os.path.exists(self.config.port):
            raise self._no_port("no such device")
        client = self._make_client()
        try:
            connected = client.connect()
        except Exception as exc:
            client.close()
            raise self._no_port(f"{type(exc).__name__}: {exc}") from None
        if not connected:
            client.close()
            raise self._no_port("connect failed")
        self._client = client
        return client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # --- polling -----------------------------------------------------------------------------------------------

    def poll(self) -> list[Reading]:
        try:
            values = self._read_all()
        except DeviceError:
            raise
        except Exception as exc:
            # Anything unforeseen still surfaces as this device's failure, and a fresh connection next time.
            self.close()
            raise DeviceError(
                FailureKind.PROTOCOL,
                f"{self._where}: unexpected {type(exc).__name__}: {exc}",
                "this is a driver bug or an unsupported device; please report it with the log",
            ) from exc
        return self._readings(values)

    def _read_all(self) -> dict[str, float | int | None]:
        read = self._read_on_line if self._line is not None else self._read_block
        values: dict[str, float | int | None] = {}
        self._refusals = {}
        for block in self._blocks:
            try:
                values.update(block.decode(read(block)))
            except _RegisterRefused as exc:
                names = {point.name for point in block.points}
                if not names <= _UNVERIFIED_POINTS:
                    raise
                for name in names:  # a MISSING reading with the refusal as its reason; CO2 is still read
                    values[name] = None
                    self._refusals[name] = (f"probe refused register 0x{block.address:04X} (Modbus exception 02): "
                                            "set read_temperature: false if this probe has no temperature register")
                if not self.refused_reads:  # a property of the probe: said once, then counted
                    log.warning("%s; CO2 is still read (set read_temperature: false to stop asking)", exc)
                self.refused_reads += 1
        if self._last_status is None or self._polls % self.config.status_every_n_polls == 0:
            status: dict[str, float | int | None] = {}
            try:
                for block in self._status_blocks:
                    status.update(block.decode(read(block)))
            except _RegisterRefused as exc:
                # No status registers: CO2 and temperature are still measurements, published SUSPECT (`_readings`)
                status = {"device_status": None, "co2_status": None}
                self._status_refused(exc)
            status["error_code"] = 0
            if status["device_status"]:
                try:
                    for block in self._error_blocks:  # only meaningful (and only worth line time) on a fault
                        status.update(block.decode(read(block)))
                except _RegisterRefused as exc:
                    status["error_code"] = None  # the status still sets the flags; the bits are unknown
                    self._status_refused(exc)
            self._last_status = status
        self._polls += 1
        values.update(self._last_status)
        return values

    def _status_refused(self, exc: DeviceError) -> None:
        if not self.status_refusals:  # a property of the probe: said once, then counted
            log.warning("%s; CO2 and temperature are still read, their quality flags say what is unknown", exc)
        self.status_refusals += 1

    def _read_on_line(self, block: reg.ReadBlock) -> list[int]:
        assert self._line is not None
        try:
            return self._line.read_registers(
                self.config.address, block.address, block.count,
                timeout_s=self.config.timeout_s, retries=self.config.retries,
            )
        except DeviceError as exc:
            what = f"{self._where}: reading {block.count} register(s) at 0x{block.address:04X}"
            if isinstance(exc, rtu.ModbusExceptionReply) and exc.code == rtu.EXC_ILLEGAL_ADDRESS:
                raise _RegisterRefused(exc.kind, f"{what}: {exc.message}", exc.hint) from None
            hint = exc.hint
            if exc.kind is FailureKind.TIMEOUT:
                hint = (f"check the probe's 24 V supply, the `address` key (probe default 240), the serial settings "
                        f"(configured {self.config.baudrate} {self.config.bytesize}{self.config.parity}"
                        f"{self.config.stopbits}; probe default 19200 8N2), and the RS-485 wiring (try swapping A "
                        "and B)")
            raise DeviceError(exc.kind, f"{what}: {exc.message}", hint) from None

    def _read_block(self, block: reg.ReadBlock) -> list[int]:
        client = self._connect()
        what = f"{self._where}: reading {block.count} register(s) at 0x{block.address:04X}"
        self._rx_trace = b""
        try:
            response = client.read_holding_registers(block.address, count=block.count, device_id=self.config.address)
        except ModbusIOException as exc:
            raise self._no_reply(what, exc) from None
        except ConnectionException as exc:
            self.close()
            if not self.config.is_tcp and not os.path.exists(self.config.port):
                raise self._no_port("the device disappeared") from None
            raise self._no_port(str(exc)) from None
        except ModbusException as exc:
            raise DeviceError(FailureKind.PROTOCOL, f"{what}: {exc}", "check the device model and address") from None
        if response.isError():
            code = int(getattr(response, "exception_code", 0))
            meaning = reg.MODBUS_EXCEPTION_MEANING.get(code, "unknown exception code")
            raise (_RegisterRefused if code == rtu.EXC_ILLEGAL_ADDRESS else DeviceError)(
                FailureKind.PROTOCOL,
                f"{what}: device answered Modbus exception {code:02d} ({meaning})",
                "check that the device at this address is a GMP252 in Modbus mode (not another probe on the bus)",
            )
        words = list(response.registers)
        if len(words) != block.count:
            raise DeviceError(
                FailureKind.PROTOCOL,
                f"{what}: reply carried {len(words)} registers",
                "check for another device answering at the same address",
            )
        return words

    def _no_reply(self, what: str, exc: Exception) -> DeviceError:
        raw = self._rx_trace
        if raw and not self.config.is_tcp and raw[0] == self.config.address and not rtu.crc_ok(raw):
            return DeviceError(
                FailureKind.CRC,
                f"{what}: reply failed the CRC check ({raw.hex(' ')})",
                "electrical noise: check 120 ohm termination at both bus ends, cable shield/ground, and cable length",
            )
        if raw:
            return DeviceError(
                FailureKind.PROTOCOL,
                f"{what}: unusable reply ({raw.hex(' ')}): {exc}",
                "check for a second device answering at the same address, or a wrong baud rate/parity",
            )
        settings = (
            "Modbus TCP gateway settings"
            if self.config.is_tcp
            else f"serial settings (configured {self.config.baudrate} {self.config.bytesize}"
            f"{self.config.parity}{self.config.stopbits}; probe default 19200 8N2)"
        )
        return DeviceError(
            FailureKind.TIMEOUT,
            f"{what}: no reply within {self.config.timeout_s} s after {self.config.retries + 1} attempt(s)",
            f"check the probe's 24 V supply, the `address` key (probe default 240), the {settings}, "
            "and the RS-485 wiring (try swapping A and B)",
        )

    def _readings(self, values: dict[str, Any]) -> list[Reading]:
        now = utc_now()
        synced = self._clock_synced()
        if values["device_status"] is None or values["co2_status"] is None:
            quality = StatusAssessment(QualityFlag.SUSPECT, _NO_STATUS, QualityFlag.SUSPECT, _NO_STATUS)
        else:
            quality = assess_status(int(values["device_status"]), int(values["co2_status"]),
                                    int(values["error_code"] or 0), error_code_known=values["error_code"] is not None)
        readings = [self._reading("co2", values["co2"], quality.co2_flag, quality.co2_reason, now, synced)]
        if self.config.read_temperature:
            readings.append(
                self._reading(
                    "temperature", values["temperature"], quality.device_flag, quality.device_reason, now, synced
                )
            )
        return readings

    def _reading(
        self,
        point_name: str,
        value: float | None,
        flag: QualityFlag,
        reason: str | None,
        now: datetime,
        synced: bool,
    ) -> Reading:
        if value is None:
            flag = QualityFlag.MISSING
            why = self._refusals.get(point_name, "device sent no value (NaN)")
            reason = "; ".join(filter(None, [why, reason]))
        elif not math.isfinite(value):  # +-inf decodes from a float32 pair but is no measurement
            flag = QualityFlag.MISSING
            reason = "; ".join(filter(None, [f"device sent a non-finite value ({value})", reason]))
            value = None
        return self._templates[point_name].reading(value, now, synced, flag, reason[:200] if reason else None)
