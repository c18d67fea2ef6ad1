"""Automated soil chamber: a GMP252 in the chamber's headspace and the lid driven and sensed through a Modbus RTU
digital I/O module, both on one RS-485 line (registers.py; README.md for wiring).

The station runs the chamber's schedule itself, as automated systems do (a closure every `every_s`, `offset_s`
into the period, lasting `closure_s`): on each poll the driver works out whether the lid should be closed now,
switches the actuator's output when that changes (FC 05), reads the lid's limit switch(es) (FC 02) and the CO2
(FC 03). Every poll that records gives readings of one instant: `CO2<suffix>`, `T_PROBE<suffix>` (the headspace
temperature at the probe) and `LID_CLOSED<suffix>` (1 closed, 0 open, null while the switches disagree), so each
CO2 value carries the lid state it was taken in. Between closures it records only every `idle_every_s` (plus
`ambient_s` before and after each closure); during closures every poll (interval_s ~1 s).

A lid that does not reach the commanded position within `lid_travel_s` makes every reading SUSPECT with the reason
(stuck actuator, no air, broken switch); the central chamber job then sees no closure, or a flagged one. When the
daemon stops (close()), the driver opens the lid, so a stopped station never leaves the soil covered.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from drivers.chamber import registers as reg
from gateway.driver_api import (
    DeviceError,
    FailureKind,
    SensorConfig,
    SerialLine,
    SerialSettings,
    kernel_clock_synced,
    rtu,
)
from gateway.model import QualityFlag, Reading, TimeSource

log = logging.getLogger(__name__)


class ChamberConfig(SensorConfig):
    """One automated chamber in a station config; `sample.yaml` documents every key."""

    driver: Literal["chamber"] = "chamber"
    interval_s: float = Field(default=1.0, gt=0, le=5, description="seconds between polls; CO2 is sampled at this "
                                                                   "rate during closures (about 1 s)")
    port: str = Field(min_length=1, description="serial device of the RS-485 line, e.g. /dev/serial/by-id/...")
    baudrate: Literal[4800, 9600, 19200, 38400, 57600, 115200] = 19200
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[8] = 8
    io_address: int = Field(default=1, ge=1, le=247, description="Modbus address of the digital I/O module")
    analyzer_address: int = Field(default=240, ge=1, le=247, description="Modbus address of the GMP252")
    lid_output: int = Field(default=1, ge=1, le=reg.IO_CHANNELS, description="output DO1..DO8 driving the lid "
                                                                              "actuator (on = closed)")
    closed_input: int = Field(default=1, ge=1, le=reg.IO_CHANNELS, description="input DI1..DI8 of the limit "
                                                                                "switch at the closed end")
    closed_input_inverted: bool = Field(default=False, description="true when that input is inactive with the lid "
                                                                   "closed (a normally-closed switch)")
    open_input: int | None = Field(default=None, ge=1, le=reg.IO_CHANNELS, description="input of a second switch "
                                                                                       "at the open end, if fitted")
    open_input_inverted: bool = Field(default=False, description="true when the open-end input is inactive with "
                                                                 "the lid open (a normally-closed switch)")
    every_s: float = Field(default=3600.0, gt=0, le=86400, description="one closure per this many seconds")
    offset_s: float | None = Field(default=None, gt=0, description="closures start this many seconds into each "
                                                                   "period (periods counted from 1970-01-01 UTC); "
                                                                   "null: at its start")
    closure_s: float = Field(default=300.0, gt=0, description="how long the lid stays closed")
    ambient_s: float = Field(default=30.0, gt=0, description="also record this long before and after each closure "
                                                             "(ambient baseline, venting)")
    idle_every_s: float | None = Field(default=60.0, gt=0, description="between closures, record once per this "
                                                                       "many seconds (null: not at all)")
    lid_travel_s: float = Field(default=20.0, gt=0, description="longest time the lid may take to reach the "
                                                                "commanded position")
    read_temperature: bool = True
    status_every_n_polls: int = Field(default=10, ge=1, le=3600, description="read the GMP252 status registers on "
                                                                             "every n-th recording poll")
    timeout_s: float = Field(default=0.5, gt=0, le=30, description="reply timeout per attempt, seconds")
    retries: int = Field(default=1, ge=0, le=5, description="extra attempts after a timeout or CRC error")
    variable_suffix: str | None = Field(
        default=None, pattern=r"^_\d+_\d+_\d+$", description="AmeriFlux position qualifier _H_V_R, e.g. _1_1_1"
    )

    @model_validator(mode="after")
    def _consistent(self) -> ChamberConfig:
        if self.io_address == self.analyzer_address:
            raise ValueError(f"io_address and analyzer_address are both {self.io_address}: the I/O module and the "
                             "GMP252 share the line and need their own addresses")
        if self.open_input is not None and self.open_input == self.closed_input:
            raise ValueError(f"open_input and closed_input are both DI{self.closed_input}: wire the two limit "
                             "switches to two inputs (or leave open_input out)")
        if self.closure_s + 2 * self.ambient_s >= self.every_s:
            raise ValueError(f"closure_s ({self.closure_s:g}) + 2 x ambient_s ({self.ambient_s:g}) must be shorter "
                             f"than every_s ({self.every_s:g}): the lid has to be open between closures")
        if self.offset_s is not None and self.offset_s >= self.every_s:
            raise ValueError(f"offset_s ({self.offset_s:g}) must be less than every_s ({self.every_s:g})")
        if self.lid_travel_s >= self.closure_s:
            raise ValueError(f"lid_travel_s ({self.lid_travel_s:g}) must be shorter than closure_s "
                             f"({self.closure_s:g}): the closure would be over before the lid could be checked")
        return self

    def serial_settings(self) -> SerialSettings:
        return SerialSettings(self.port, self.baudrate, self.bytesize, self.parity, self.stopbits)

    def bus_addresses(self) -> tuple[int, ...]:
        """Every Modbus address this sensor occupies on its line (checked against the line's other devices)."""
        return self.io_address, self.analyzer_address

    def phase_s(self, unix_time: float) -> float:
        """Seconds since the start of the current closure period's closure (0 <= phase < every_s)."""
        return (unix_time - (self.offset_s or 0.0)) % self.every_s

    def lid_should_be_closed(self, unix_time: float) -> bool:
        return self.phase_s(unix_time) < self.closure_s

    def near_closure(self, unix_time: float) -> bool:
        """Within ambient_s before a closure, during it, or within ambient_s after it."""
        phase = self.phase_s(unix_time)
        return phase < self.closure_s + self.ambient_s or phase >= self.every_s - self.ambient_s


Config = ChamberConfig


class ChamberDriver:
    """gateway.driver_api.Driver (and LineDriver) for an automated chamber (module docstring)."""

    Config: ClassVar[type[SensorConfig]] = ChamberConfig

    def __init__(self, config: SensorConfig, *, station: str, wall_clock: Callable[[], float] = time.time,
                 clock_synced: Callable[[], bool] = kernel_clock_synced) -> None:
        if not isinstance(config, ChamberConfig):
            config = ChamberConfig.model_validate(config.model_dump())
        self.config: ChamberConfig = config
        self.station = station
        self._wall_clock = wall_clock
        self._clock_synced = clock_synced
        self._line: SerialLine | None = None
        self._own_line: SerialLine | None = None
        self._checked = False
        self._commanded: bool | None = None
        self._commanded_at = 0.0
        self._last_idle = -math.inf
        self._recording_polls = 0
        self._status: tuple[int, int] = (0, 0)
        self.lid_faults = 0
        self._in_fault = False
        self._coil_function = rtu.FC_WRITE_SINGLE_COIL
        self.refused_reads = 0
        """Requests a device refused as absent (Modbus exception 01/02) that the driver works around; `refusals`."""
        self.refusals: dict[str, str] = {}
        """What was refused -> what the driver does instead; kept until the next (re)start."""

    def __repr__(self) -> str:
        return f"ChamberDriver({self.config.name!r}, port={self.config.port!r})"

    @property
    def _where(self) -> str:
        cfg = self.config
        return f"chamber {cfg.name!r} at {cfg.port}"

    # --- the line ------------------------------------------------------------------------------------------------

    def attach(self, line: SerialLine) -> None:
        self.close()
        self._line = line

    def open(self) -> None:
        if self._line is None and self._own_line is None:
            from gateway.driver_api import RtuSerialLine

            self._own_line = RtuSerialLine(self.config.serial_settings())

    def close(self) -> None:
        # A stopped station must not leave the soil covered: open the lid while the line is still ours.
        if self._commanded:
            try:
                self._write_lid(False)
                log.info("%s: lid opened on shutdown", self._where)
            except DeviceError as exc:
                log.warning("%s: could not open the lid on shutdown: %s", self._where, exc)
        self._commanded = None
        self._checked = False
        self.refusals.clear()
        if self._own_line is not None:
            close = getattr(self._own_line, "close", None)
            if callable(close):
                close()
            self._own_line = None

    def _line_now(self) -> SerialLine:
        line = self._line or self._own_line
        if line is None:
            self.open()
            line = self._own_line
        assert line is not None
        return line

    def _io_error(self, exc: DeviceError, what: str) -> DeviceError:
        cfg = self.config
        hint = exc.hint
        if exc.kind is FailureKind.TIMEOUT:
            hint = (f"check the I/O module's supply, its address (io_address {cfg.io_address}; factory default 1) "
                    f"and serial settings (configured {cfg.baudrate} 8{cfg.parity}{cfg.stopbits}; factory 9600 8N1), "
                    "and the RS-485 wiring (try swapping A and B)")
        return DeviceError(exc.kind, f"{self._where}: I/O module: {what}: {exc.message}", hint)

    def _analyzer_error(self, exc: DeviceError, what: str) -> DeviceError:
        cfg = self.config
        hint = exc.hint
        if exc.kind is FailureKind.TIMEOUT:
            hint = (f"check the GMP252's 24 V supply, its address (analyzer_address {cfg.analyzer_address}; factory "
                    f"240) and serial settings (configured {cfg.baudrate} 8{cfg.parity}{cfg.stopbits}; factory 19200 "
                    "8N2: set it to the line's format)")
        return DeviceError(exc.kind, f"{self._where}: GMP252: {what}: {exc.message}", hint)

    def _refuse(self, what: str, exc: rtu.ModbusExceptionReply, instead: str) -> None:
        """A device has no such function or register: said once per (re)start, counted, worked around."""
        if what not in self.refusals:
            log.warning("%s: %s refused (%s); %s", self._where, what, exc.message, instead)
        self.refusals[what] = f"{what} refused (Modbus exception {exc.code:02d}): {instead}"
        self.refused_reads += 1

    def _write_lid(self, closed: bool) -> None:
        cfg = self.config
        line, coil = self._line_now(), reg.coil_of(cfg.lid_output)
        try:
            try:
                if self._coil_function == rtu.FC_WRITE_MULTIPLE_COILS:
                    rtu.write_coils(line, cfg.io_address, coil, [closed], timeout_s=cfg.timeout_s,
                                    retries=cfg.retries)
                else:
                    rtu.write_coil(line, cfg.io_address, coil, closed, timeout_s=cfg.timeout_s, retries=cfg.retries)
            except rtu.ModbusExceptionReply as exc:
                if exc.code != rtu.EXC_ILLEGAL_FUNCTION or self._coil_function != rtu.FC_WRITE_SINGLE_COIL:
                    raise
                # The module's wiki lists FC 05 and FC 15 for the outputs; one implementing only FC 15 is driven
                # with it (one coil), from now on.
                rtu.write_coils(line, cfg.io_address, coil, [closed], timeout_s=cfg.timeout_s, retries=cfg.retries)
                self._coil_function = rtu.FC_WRITE_MULTIPLE_COILS
                self._refuse("FC 05 (write single coil)", exc, "the lid output is written with FC 15")
        except DeviceError as exc:
            raise self._io_error(exc, f"switching DO{cfg.lid_output} {'on' if closed else 'off'}") from None
        self._commanded = closed
        self._commanded_at = self._wall_clock()

    def _check_module(self) -> None:
        """Once per (re)start: the lid output must be in normal mode (in linkage mode the input would drive it)."""
        cfg = self.config
        address = reg.CONTROL_MODE_START + cfg.lid_output - 1
        try:
            (mode,) = self._line_now().read_registers(cfg.io_address, address, 1, timeout_s=cfg.timeout_s,
                                                      retries=cfg.retries)
        except rtu.ModbusExceptionReply as exc:
            if exc.code not in (rtu.EXC_ILLEGAL_FUNCTION, rtu.EXC_ILLEGAL_ADDRESS):
                raise self._io_error(exc, f"reading the control mode of DO{cfg.lid_output} (0x{address:04X})") \
                    from None
            # A module (or firmware) without the control-mode registers has no linkage mode to fear; the limit
            # switch still tells whether the lid follows the station's command.
            self._refuse(f"control mode register 0x{address:04X}", exc,
                         "output mode not checked; the limit switch still checks the lid")
            self._checked = True
            return
        except DeviceError as exc:
            raise self._io_error(exc, f"reading the control mode of DO{cfg.lid_output} (0x{address:04X})") from None
        if mode != reg.CONTROL_MODE_NORMAL:
            raise DeviceError(
                FailureKind.DEVICE,
                f"{self._where}: output DO{cfg.lid_output} is in control mode {mode} "
                f"({reg.CONTROL_MODES.get(mode, 'unknown')}), so the module, not the station, would move the lid",
                f"write 0 (normal) to holding register 0x{address:04X} of the I/O module (FC 06), e.g. with mbpoll")
        self._checked = True

    # --- polling -------------------------------------------------------------------------------------------------

    def poll(self) -> list[Reading]:
        try:
            return self._poll()
        except DeviceError:
            raise
        except Exception as exc:  # a bug here must not end the line's thread; the runner counts it
            raise DeviceError(FailureKind.PROTOCOL, f"{self._where}: unexpected {type(exc).__name__}: {exc}",
                              "this is a driver bug; please report it with the log") from exc

    def _poll(self) -> list[Reading]:
        cfg = self.config
        if not self._checked:
            self._check_module()
        now = self._wall_clock()
        wanted = cfg.lid_should_be_closed(now)
        if self._commanded is None or wanted != self._commanded:
            self._write_lid(wanted)
        lid = self._read_lid()
        mismatch_s = 0.0
        if lid is not self._commanded:
            mismatch_s = self._wall_clock() - self._commanded_at
        fault = mismatch_s > cfg.lid_travel_s
        if fault and not self._in_fault:
            self.lid_faults += 1
            log.warning("%s: lid %s for %.0f s although commanded %s", self._where,
                        "in between" if lid is None else "closed" if lid else "open", mismatch_s,
                        "closed" if self._commanded else "open")
        elif self._in_fault and not fault:
            log.info("%s: lid follows its command again", self._where)
        self._in_fault = fault
        recording = cfg.near_closure(now) or fault or lid is not self._commanded
        if not recording and cfg.idle_every_s is not None and now - self._last_idle >= cfg.idle_every_s:
            recording = True
            self._last_idle = now
        if not recording:
            return []
        values = self._read_analyzer()
        return self._readings(values, lid, fault, mismatch_s)

    def _read_lid(self) -> bool | None:
        cfg = self.config
        # All eight, as the module's own example command does: some modules refuse other counts.
        count = reg.IO_CHANNELS
        try:
            inputs = rtu.read_bits(self._line_now(), cfg.io_address, rtu.FC_READ_DISCRETE_INPUTS,
                                   reg.DISCRETE_INPUTS_START, count, timeout_s=cfg.timeout_s, retries=cfg.retries)
        except rtu.ModbusExceptionReply as exc:
            error = self._io_error(exc, f"reading inputs DI1..DI{count} with FC 02")
            if exc.code == rtu.EXC_ILLEGAL_FUNCTION:
                error.hint = ("the module does not read its inputs with FC 02 (read discrete inputs), which this "
                              "driver needs for the limit switch: use a module that does (README.md)")
            raise error from None
        except DeviceError as exc:
            raise self._io_error(exc, f"reading inputs DI1..DI{count}") from None
        closed = inputs[reg.input_of(cfg.closed_input)] != cfg.closed_input_inverted
        if cfg.open_input is None:
            return closed
        opened = inputs[reg.input_of(cfg.open_input)] != cfg.open_input_inverted
        if closed == opened:
            return None  # both switches, or neither: moving, or a switch fault
        return closed

    def _read_analyzer(self) -> dict[str, float | None]:
        cfg = self.config
        line = self._line_now()
        values: dict[str, float | None] = {}
        points = [reg.CO2] + ([reg.TEMPERATURE] if cfg.read_temperature else [])
        for point in points:
            what = f"GMP252 register 0x{point.address:04X} ({point.name})"
            if point is reg.TEMPERATURE and what in self.refusals:
                values[point.name] = None
                continue
            try:
                words = line.read_registers(cfg.analyzer_address, point.address, 2, timeout_s=cfg.timeout_s,
                                            retries=cfg.retries)
            except rtu.ModbusExceptionReply as exc:
                # The GMP252's temperature register is [C*] in its guide (the gmp252 driver's README): a probe or
                # simulator without it answers 02. CO2 is still read; T_PROBE is MISSING with the reason.
                if point is not reg.TEMPERATURE or exc.code != rtu.EXC_ILLEGAL_ADDRESS:
                    raise self._analyzer_error(exc, f"reading {point.name} (0x{point.address:04X})") from None
                self._refuse(what, exc, "T_PROBE missing (set read_temperature: false to stop asking)")
                values[point.name] = None
                continue
            except DeviceError as exc:
                raise self._analyzer_error(exc, f"reading {point.name} (0x{point.address:04X})") from None
            values[point.name] = reg.decode_float(words)
        status_what = "GMP252 status registers 0x0800-0x0801"
        if self._recording_polls % cfg.status_every_n_polls == 0 and status_what not in self.refusals:
            try:
                device, co2 = line.read_registers(cfg.analyzer_address, reg.STATUS_START, reg.STATUS_COUNT,
                                                  timeout_s=cfg.timeout_s, retries=cfg.retries)
                self._status = (device, co2)
            except rtu.ModbusExceptionReply as exc:
                # Documented only from User Guide M211897EN-E on: an older probe or a simulator serving CO2 and T
                # alone answers 02. Values are still published, SUSPECT, their status unknown (`_readings`).
                if exc.code != rtu.EXC_ILLEGAL_ADDRESS:
                    raise self._analyzer_error(exc, "reading the status (0x0800)") from None
                self._refuse(status_what, exc, "CO2 and T_PROBE published SUSPECT (status unknown)")
            except DeviceError as exc:
                raise self._analyzer_error(exc, "reading the status (0x0800)") from None
        self._recording_polls += 1
        return values

    def _readings(self, values: dict[str, float | None], lid: bool | None, fault: bool,
                  mismatch_s: float) -> list[Reading]:
        cfg = self.config
        stamp = datetime.fromtimestamp(self._wall_clock(), tz=UTC)
        synced = self._clock_synced()
        suffix = cfg.variable_suffix or ""
        lid_reason: str | None = None
        lid_flag = QualityFlag.GOOD
        if fault:
            lid_flag = QualityFlag.SUSPECT
            lid_reason = (f"lid {'in between' if lid is None else 'closed' if lid else 'open'} for {mismatch_s:.0f} s "
                          f"although commanded {'closed' if self._commanded else 'open'}: check the actuator, its "
                          "supply (air, power) and the limit switch wiring")
        device, co2_status = self._status
        probe_flag, probe_reason = QualityFlag.GOOD, None
        if device:
            probe_flag = QualityFlag.BAD if device & 0b011 else QualityFlag.SUSPECT
            probe_reason = reg.describe_status(device, co2_status)
        if "GMP252 status registers 0x0800-0x0801" in self.refusals:
            probe_flag = QualityFlag.SUSPECT
            probe_reason = "GMP252 refused its status registers (Modbus exception 02): quality not known"
        out: list[Reading] = []

        def add(variable: str, value: float | None, unit: str, flag: QualityFlag, reason: str | None) -> None:
            if value is None and flag is not QualityFlag.BAD:
                flag, reason = QualityFlag.MISSING, "; ".join(filter(None, ["no value", reason]))
            out.append(Reading(station=self.station, sensor=cfg.name, variable=variable + suffix, value=value,
                               unit=unit, time=stamp, time_source=TimeSource.GATEWAY, clock_synced=synced,
                               qc=flag, qc_reason=reason[:200] if reason else None))

        co2_flag, co2_reason = probe_flag, probe_reason
        if co2_status and co2_flag is not QualityFlag.BAD:
            co2_flag = QualityFlag.SUSPECT
            co2_reason = reg.describe_status(device, co2_status)
        if fault:
            co2_flag = max(co2_flag, QualityFlag.SUSPECT)
            co2_reason = "; ".join(filter(None, [lid_reason, co2_reason]))
        add(reg.CO2.variable, values.get("co2"), reg.CO2.unit, co2_flag, co2_reason)
        if cfg.read_temperature:
            t_reason = self.refusals.get(f"GMP252 register 0x{reg.TEMPERATURE.address:04X} (temperature)")
            add(reg.TEMPERATURE.variable, values.get("temperature"), reg.TEMPERATURE.unit, probe_flag,
                "; ".join(filter(None, [t_reason, probe_reason])) or None)
        if lid is None:
            add("LID_CLOSED", None, "1", QualityFlag.MISSING,
                "both limit switches active or neither: lid moving, or a switch fault")
        else:
            add("LID_CLOSED", 1.0 if lid else 0.0, "1", lid_flag, lid_reason)
        return out
