"""Hukseflux SR30-D1 digital pyranometer over Modbus RTU on an RS-485 line (see README.md).

One poll = one read of 5 registers from 0x02 (irradiance temperature compensated, uncompensated, body
temperature); the scaling-factor registers are read after every (re)start, the diagnostics (internal humidity,
tilt, ventilator speed) every `diagnostics_every_n_polls` polls. `assess()` turns plausibility limits and the
diagnostics into each reading's quality flag.

The driver talks through the `SerialLine` its SerialBus attaches (gateway.driver_api), so it shares an RS-485 line
with other Modbus devices; used on its own it opens an `RtuSerialLine` of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field

from drivers.sr30 import registers as reg
from gateway.driver_api import (
    DeviceError,
    FailureKind,
    RtuSerialLine,
    SensorConfig,
    SerialLine,
    SerialSettings,
    kernel_clock_synced,
    rtu,
)
from gateway.model import QualityFlag, Reading, TimeSource, utc_now

log = logging.getLogger(__name__)


class SR30Config(SensorConfig):
    """One SR30-D1 in a station config; `sample.yaml` documents every key."""

    driver: Literal["sr30"] = "sr30"
    port: str = Field(min_length=1, description="serial device of the RS-485 line, e.g. /dev/serial/by-id/...")
    address: int = Field(default=reg.DEFAULT_ADDRESS, ge=1, le=247, description="Modbus slave address")
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 19200
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[8] = 8
    function: Literal[3, 4] = Field(default=3, description="3 = read holding, 4 = read input registers; a unit "
                                    "answering exception 01 to it is read with the other (warned once)")
    word_order: Literal["msw_first", "lsw_first"] = Field(
        default="msw_first", description="32-bit values: most-significant word first (the Hukseflux map) or not")
    timeout_s: float = Field(default=0.5, gt=0, le=30, description="reply timeout per attempt, seconds")
    retries: int = Field(default=1, ge=0, le=5, description="extra attempts after a timeout or CRC error")
    variable_suffix: str | None = Field(
        default=None, pattern=r"^_\d+_\d+_\d+$", description="AmeriFlux position qualifier _H_V_R, e.g. _1_1_1"
    )
    read_temperature: bool = Field(default=True, description="also publish the body temperature as T_PROBE")
    read_diagnostics: bool = Field(default=True, description="read internal humidity, tilt and ventilator speed")
    diagnostics_every_n_polls: int = Field(default=10, ge=1, le=3600)
    expected_tilt_deg: float = Field(default=0.0, ge=0, le=90, description="0 for a horizontal (SW_IN) mount")
    max_tilt_error_deg: float = Field(default=2.0, gt=0, le=90)
    max_internal_rh: float = Field(default=40.0, gt=0, le=100, description="%, above: moisture inside the body")
    ventilated: bool = Field(default=True, description="the internal ventilator is meant to run")

    def serial_settings(self) -> SerialSettings:
        return SerialSettings(self.port, self.baudrate, self.bytesize, self.parity, self.stopbits)


# --- quality ------------------------------------------------------------------------------------------------------

# BSRN recommended QC for global shortwave irradiance (Long & Dutton 2010, "BSRN Global Network recommended QC
# tests, V2.0"): physically possible limits -4 .. Sa*1.5*mu0^1.2 + 100 W m-2 and extremely rare limits -2 ..
# Sa*1.2*mu0^1.2 + 50 W m-2, Sa = 1368 W m-2 / AU^2. The driver does not know the sun's position, so the upper
# limits are taken at their loosest (mu0 = 1, perihelion 0.9833 AU): only values no sun could produce are caught.
SOLAR_CONSTANT_AT_PERIHELION = 1368.0 / 0.9833**2
SW_IN_PHYSICALLY_POSSIBLE = (-4.0, 1.5 * SOLAR_CONSTANT_AT_PERIHELION + 100.0)
SW_IN_EXTREMELY_RARE = (-2.0, 1.2 * SOLAR_CONSTANT_AT_PERIHELION + 50.0)
# Rated operating temperature of the SR30 [U: Hukseflux SR30 specifications, not re-read]; outside it the
# temperature compensation is extrapolated.
BODY_TEMPERATURE_RANGE = (-40.0, 80.0)


@dataclass(frozen=True, slots=True)
class Diagnostics:
    """None: the unit refused that register (Modbus exception 01/02; the diagnostics rest on third-party code)."""

    internal_rh: float | None
    tilt_deg: float | None
    fan_rpm: int | None


@dataclass(frozen=True, slots=True)
class Assessment:
    irradiance_flag: QualityFlag
    irradiance_reason: str | None
    temperature_flag: QualityFlag
    temperature_reason: str | None


def assess(irradiance: float, body_temperature: float, diagnostics: Diagnostics | None,
           config: SR30Config) -> Assessment:
    """Quality flags of SW_IN and T_PROBE: BAD outside the BSRN physically possible limits, SUSPECT outside the
    extremely rare limits, outside the rated temperature range, or when a diagnostic says the measurement is
    compromised (tilted, moisture inside, ventilator stopped)."""
    bad: list[str] = []
    suspect: list[str] = []
    low, high = SW_IN_PHYSICALLY_POSSIBLE
    if not low <= irradiance <= high:
        bad.append(f"SW_IN {irradiance:g} W m-2 outside the physically possible {low:g}..{high:.0f}")
    elif not SW_IN_EXTREMELY_RARE[0] <= irradiance <= SW_IN_EXTREMELY_RARE[1]:
        suspect.append(f"SW_IN {irradiance:g} W m-2 outside the extremely rare limits "
                       f"{SW_IN_EXTREMELY_RARE[0]:g}..{SW_IN_EXTREMELY_RARE[1]:.0f}")
    t_low, t_high = BODY_TEMPERATURE_RANGE
    temperature_flag, temperature_reason = QualityFlag.GOOD, None
    if not t_low <= body_temperature <= t_high:
        temperature_reason = f"body temperature {body_temperature:g} degC outside the rated {t_low:g}..{t_high:g}"
        temperature_flag = QualityFlag.SUSPECT
        suspect.append(temperature_reason)
    if diagnostics is not None:
        tilt = diagnostics.tilt_deg
        if tilt is not None and abs(tilt - config.expected_tilt_deg) > config.max_tilt_error_deg:
            suspect.append(f"tilt {tilt:g} deg, expected {config.expected_tilt_deg:g} (level the sensor)")
        if diagnostics.internal_rh is not None and diagnostics.internal_rh > config.max_internal_rh:
            suspect.append(f"internal humidity {diagnostics.internal_rh:g} % (moisture inside the body)")
        if config.ventilated and diagnostics.fan_rpm == 0:
            suspect.append("ventilator stopped (dew and frost on the dome are no longer prevented)")
    if bad:
        return Assessment(QualityFlag.BAD, "; ".join(bad + suspect)[:200], temperature_flag, temperature_reason)
    if suspect:
        return Assessment(QualityFlag.SUSPECT, "; ".join(suspect)[:200], temperature_flag, temperature_reason)
    return Assessment(QualityFlag.GOOD, None, temperature_flag, temperature_reason)


# --- the driver ---------------------------------------------------------------------------------------------------

# Modbus exceptions that mean "this unit has no such function/register", not a fault of the moment.
_ABSENT = (rtu.EXC_ILLEGAL_FUNCTION, rtu.EXC_ILLEGAL_ADDRESS)


class _Refused(DeviceError):
    """The unit answered a Modbus exception to a read: it is there, and refuses this request."""

    def __init__(self, code: int, message: str, hint: str | None) -> None:
        super().__init__(FailureKind.PROTOCOL, message, hint)
        self.code = code



class SR30Driver:
    """gateway.driver_api.Driver (and LineDriver) for a Hukseflux SR30-D1."""

    Config: ClassVar[type[SensorConfig]] = SR30Config

    def __init__(self, config: SensorConfig, *, station: str,
                 clock_synced: Callable[[], bool] = kernel_clock_synced) -> None:
        if not isinstance(config, SR30Config):
            config = SR30Config.model_validate(config.model_dump())
        self.config: SR30Config = config
        self.station = station
        self._clock_synced = clock_synced
        self._measurement_blocks = reg.compile_blocks(reg.points_by_name(reg.MEASUREMENT_POINTS))
        self._scale_blocks = reg.compile_blocks(reg.points_by_name(reg.SCALE_POINTS))
        self._diagnostic_blocks = reg.compile_blocks(reg.points_by_name(reg.DIAGNOSTIC_POINTS))
        self._line: SerialLine | None = None
        self._own_line: RtuSerialLine | None = None
        self._divisors: dict[str, int] | None = None
        self._diagnostics: Diagnostics | None = None
        self._polls = 0
        self._function: int = config.function
        self.function_switches = 0
        """Times a unit answered exception 01 to the configured function and the other one was used instead."""
        self.refused_reads = 0
        """Reads of scaling factors or diagnostics the unit refused (exception 01/02); see `refusals`."""
        self.refusals: dict[str, str] = {}
        """Refused register block -> reason, kept until the next (re)start; a refused block is not asked again."""
        self._scale_reason: str | None = None

    def __repr__(self) -> str:
        return f"SR30Driver({self.config.name!r}, port={self.config.port!r}, address={self.config.address})"

    @property
    def _where(self) -> str:
        return f"SR30 {self.config.name!r} at {self.config.port} address {self.config.address}"

    def attach(self, line: SerialLine) -> None:
        self.close()
        self._line = line

    def open(self) -> None:
        if self._line is None and self._own_line is None:
            self._own_line = RtuSerialLine(self.config.serial_settings())  # standalone: a line of our own

    def close(self) -> None:
        # What a restarted sensor may have changed is read again; an attached line belongs to the bus.
        self._divisors = None
        self._diagnostics = None
        self.refusals.clear()
        self._scale_reason = None
        if self._own_line is not None:
            self._own_line.close()
            self._own_line = None

    def _read(self, block: reg.ReadBlock) -> dict[str, int | float]:
        self.open()
        line = self._line or self._own_line
        assert line is not None
        cfg = self.config
        try:
            try:
                words = line.read_registers(cfg.address, block.address, block.count, function=self._function,
                                            timeout_s=cfg.timeout_s, retries=cfg.retries)
            except rtu.ModbusExceptionReply as exc:
                if exc.code != rtu.EXC_ILLEGAL_FUNCTION:
                    raise
                # The SR30 manual (7.2) says FC 03 and FC 04 read the same registers; a unit (or simulator) that
                # implements only one of them answers 01 to the other. Ask once with the other; keep it if it works.
                other = 7 - self._function
                words = line.read_registers(cfg.address, block.address, block.count, function=other,
                                            timeout_s=cfg.timeout_s, retries=cfg.retries)
                log.warning("%s answered Modbus exception 01 to function %02d and reads with %02d: set "
                            "`function: %d`", self._where, self._function, other, other)
                self._function = other
                self.function_switches += 1
        except DeviceError as exc:
            hint = exc.hint
            if exc.kind is FailureKind.TIMEOUT:
                hint = (f"check the supply, the `address` key (factory default {reg.DEFAULT_ADDRESS}), the serial "
                        f"settings (configured {cfg.baudrate} {cfg.bytesize}{cfg.parity}{cfg.stopbits}; factory "
                        "19200 8E1) and the RS-485 wiring (try swapping A and B)")
            elif exc.kind is FailureKind.PROTOCOL:
                hint = f"{exc.hint}; or try `function: {7 - self._function}`"
            message = f"{self._where}: reading {block.count} register(s) at 0x{block.address:02X}: {exc.message}"
            if isinstance(exc, rtu.ModbusExceptionReply):
                raise _Refused(exc.code, message, hint) from None
            raise DeviceError(exc.kind, message, hint) from None
        return block.raw(words, lsw_first=cfg.word_order == "lsw_first")

    def _refuse(self, block: reg.ReadBlock, exc: _Refused, consequence: str) -> None:
        key = f"0x{block.address:02X}+{block.count}"
        self.refusals[key] = f"unit refused registers {key} (Modbus exception {exc.code:02d}): {consequence}"
        if not self.refused_reads:  # a property of the unit: said once, then counted
            log.warning("%s; %s", exc, consequence)
        self.refused_reads += 1

    def _read_divisors(self) -> dict[str, int]:
        raw: dict[str, int | float] = {}
        self._scale_reason = None
        for block in self._scale_blocks:
            try:
                raw.update(self._read(block))
            except _Refused as exc:
                if exc.code not in _ABSENT:
                    raise
                # The map documents the irradiance register "in x 0.01 W/m2" and both factors' default as 100
                # (SR05-D1A3-PV manual, Table 6.4.1): read with 100, published SUSPECT with the reason.
                self._refuse(block, exc, "factory scaling factors (100) assumed, values SUSPECT")
                self._scale_reason = "scaling factors not readable (Modbus exception), factory 100 assumed"
                raw.update({point.name: 100 for point in block.points})
        divisors = {name: int(value) for name, value in raw.items()}
        zero = [name for name, value in divisors.items() if value <= 0]
        if zero:
            raise DeviceError(FailureKind.PROTOCOL, f"{self._where}: scaling factor {', '.join(zero)} is "
                                                    f"{divisors[zero[0]]}, values cannot be scaled",
                              "check that the device at this address is an SR30 (factory scaling factors are 100)")
        return divisors

    def _read_diagnostics(self) -> Diagnostics:
        """The diagnostic registers rest on third-party code, not the SR30 manual: a block the unit refuses
        (exception 01/02) is left out (its diagnostics unknown, not judged) and not asked again until a restart."""
        raw: dict[str, int | float] = {}
        for block in self._diagnostic_blocks:
            if f"0x{block.address:02X}+{block.count}" in self.refusals:
                continue
            try:
                raw.update(self._read(block))
            except _Refused as exc:
                if exc.code not in _ABSENT:
                    raise
                self._refuse(block, exc, "SW_IN is still read; those diagnostics are not judged "
                                         "(set read_diagnostics: false to stop asking)")
        point = reg.POINT_BY_NAME
        return Diagnostics(
            internal_rh=(reg.scaled(point["internal_humidity"], raw["internal_humidity"], {})
                         if "internal_humidity" in raw else None),
            tilt_deg=reg.scaled(point["tilt_angle"], raw["tilt_angle"], {}) if "tilt_angle" in raw else None,
            fan_rpm=int(raw["fan_speed"]) if "fan_speed" in raw else None,
        )

    def poll(self) -> list[Reading]:
        cfg = self.config
        if self._divisors is None:
            self._divisors = self._read_divisors()
        raw: dict[str, int | float] = {}
        for block in self._measurement_blocks:
            raw.update(self._read(block))
        due = cfg.read_diagnostics and self._polls % cfg.diagnostics_every_n_polls == 0
        self._polls += 1  # counted first: a failing diagnostics read is not retried at every poll
        if due:
            self._diagnostics = self._read_diagnostics()
        point = reg.POINT_BY_NAME
        irradiance = reg.scaled(point["irradiance"], raw["irradiance"], self._divisors)
        temperature = reg.scaled(point["body_temperature"], raw["body_temperature"], self._divisors)
        verdict = assess(irradiance, temperature, self._diagnostics if cfg.read_diagnostics else None, cfg)
        if verdict.irradiance_flag is QualityFlag.BAD:
            verdict = self._word_order_hint(verdict, raw["irradiance"])
        if self._scale_reason is not None:
            verdict = _suspect(verdict, self._scale_reason)
        now: datetime = utc_now()
        synced = self._clock_synced()
        suffix = cfg.variable_suffix or ""
        readings = [Reading(station=self.station, sensor=cfg.name, variable="SW_IN" + suffix, value=irradiance,
                            unit="W m-2", time=now, time_source=TimeSource.GATEWAY, clock_synced=synced,
                            qc=verdict.irradiance_flag, qc_reason=verdict.irradiance_reason)]
        if cfg.read_temperature:
            readings.append(Reading(station=self.station, sensor=cfg.name, variable="T_PROBE" + suffix,
                                    value=temperature, unit="degC", time=now, time_source=TimeSource.GATEWAY,
                                    clock_synced=synced, qc=verdict.temperature_flag,
                                    qc_reason=verdict.temperature_reason))
        return readings

    def _word_order_hint(self, verdict: Assessment, raw_irradiance: int | float) -> Assessment:
        """A unit sending the other word order gives values no sun can produce (BAD); say so when the other
        order would give a plausible value."""
        other = "msw_first" if self.config.word_order == "lsw_first" else "lsw_first"
        words = reg.encode_raw(reg.DataType.S32, raw_irradiance, lsw_first=other == "msw_first")
        swapped = reg.decode_raw(reg.DataType.S32, words, lsw_first=other == "lsw_first")
        value = reg.scaled(reg.POINT_BY_NAME["irradiance"], swapped, self._divisors or {})
        if not SW_IN_PHYSICALLY_POSSIBLE[0] <= value <= SW_IN_PHYSICALLY_POSSIBLE[1]:
            return verdict
        reason = f"{verdict.irradiance_reason}; read {other} it would be {value:g} W m-2: set `word_order: {other}`"
        return Assessment(verdict.irradiance_flag, reason[:200], verdict.temperature_flag, verdict.temperature_reason)


def _suspect(verdict: Assessment, reason: str) -> Assessment:
    """At least SUSPECT, with `reason` first, for both values."""

    def worse(flag: QualityFlag, old: str | None) -> tuple[QualityFlag, str]:
        return max(flag, QualityFlag.SUSPECT), "; ".join(r for r in (reason, old) if r)[:200]

    sw_flag, sw_reason = worse(verdict.irradiance_flag, verdict.irradiance_reason)
    t_flag, t_reason = worse(verdict.temperature_flag, verdict.temperature_reason)
    return Assessment(sw_flag, sw_reason, t_flag, t_reason)
