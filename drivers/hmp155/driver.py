"""Vaisala HMP155 humidity and temperature probe, polled in POLL mode on an RS-485 line (see README.md).

After each (re)start the driver installs its FORM (grammar.py) inside OPEN/CLOSE; then every poll is one
`SEND aa`, whose reply carries the probe's address, RH, T, error flags, heating status and a checksum. TA and RH
are published with quality flags from those error flags; VPD is derived from them by
`gateway.variables.vapour_pressure_deficit_hpa` (WMO/Sonntag saturation vapour pressure over water), the one
function the central science uses too.

The probe is addressed, so several HMP155 (and Modbus devices at the same serial settings) may share one line;
the driver talks through the `SerialLine` its SerialBus attaches, or, used on its own, an `RtuSerialLine` of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field

from drivers.hmp155 import grammar
from gateway.driver_api import (
    DeviceError,
    FailureKind,
    RtuSerialLine,
    SensorConfig,
    SerialLine,
    SerialSettings,
    kernel_clock_synced,
)
from gateway.model import QualityFlag, Reading, TimeSource, utc_now
from gateway.variables import vapour_pressure_deficit_hpa

log = logging.getLogger(__name__)

# Measurement ranges of the HMP155 [U: Vaisala HMP155 specifications, not re-read]; a value outside them is a
# fault, not weather. RH up to 105 % is kept: near saturation the reading may exceed 100 % by its uncertainty.
TA_RANGE = (-80.0, 60.0)
RH_RANGE = (0.0, 105.0)


class HMP155Config(SensorConfig):
    """One HMP155 in a station config; `sample.yaml` documents every key."""

    driver: Literal["hmp155"] = "hmp155"
    port: str = Field(min_length=1, description="serial device of the RS-485 line, e.g. /dev/serial/by-id/...")
    address: int = Field(default=0, ge=0, le=99, description="the probe's POLL-mode address (ADDR), 0..99")
    baudrate: Literal[300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 4800
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 7
    timeout_s: float = Field(default=1.0, gt=0, le=30, description="seconds to wait for each reply")
    verify_checksum: bool = Field(default=True, description="check the CS2 field of every reply")
    publish_vpd: bool = Field(default=True, description="also publish VPD (hPa) derived from TA and RH")
    variable_suffix: str | None = Field(
        default=None, pattern=r"^_\d+_\d+_\d+$", description="AmeriFlux position qualifier _H_V_R, e.g. _1_1_1"
    )

    def serial_settings(self) -> SerialSettings:
        return SerialSettings(self.port, self.baudrate, self.bytesize, self.parity, self.stopbits)


def _worst(*flags: QualityFlag) -> QualityFlag:
    return max(flags)


def readings_from(values: grammar.SendValues, config: HMP155Config, station: str, now: datetime,
                  synced: bool) -> list[Reading]:
    """TA, RH and (optionally) VPD with their quality flags: device error flags make a value bad, a purge or
    sensor heating makes RH suspect, a memory error everything suspect, stars missing."""
    common: list[str] = []
    if "MEM" in values.errors:
        common.append(grammar.ERR_MEANING["MEM"])

    def grade(name: str, value: float | None, error_flag: str, valid: tuple[float, float],
              extra: list[str]) -> tuple[float | None, QualityFlag, str | None]:
        reasons = [*common, *extra]
        flag = QualityFlag.SUSPECT if reasons else QualityFlag.GOOD
        if error_flag in values.errors:
            flag, reasons = QualityFlag.BAD, [grammar.ERR_MEANING[error_flag], *reasons]
        if value is None:
            return None, QualityFlag.MISSING, "; ".join(["probe printed no value", *reasons])[:200]
        if not valid[0] <= value <= valid[1]:
            flag = QualityFlag.BAD
            reasons = [f"{name} {value:g} outside {valid[0]:g}..{valid[1]:g}", *reasons]
        return value, flag, "; ".join(reasons)[:200] if reasons else None

    heating = []
    if values.stat in grammar.RH_UNREPRESENTATIVE_STAT:
        heating.append(f"heating status {values.stat} ({grammar.STAT_MEANING[values.stat]})")
    ta = grade("TA", values.t, "T", TA_RANGE, [])
    rh = grade("RH", values.rh, "RH", RH_RANGE, heating)
    suffix = config.variable_suffix or ""
    graded = [("TA", "degC", ta), ("RH", "%", rh)]
    if config.publish_vpd:
        if ta[0] is None or rh[0] is None:
            vpd: tuple[float | None, QualityFlag, str | None] = (
                None, QualityFlag.MISSING, f"VPD needs TA and RH: {ta[2] or rh[2] or 'one is missing'}"[:200])
        else:
            reasons = [f"{name}: {reason}" for name, (_v, _f, reason) in (("TA", ta), ("RH", rh)) if reason]
            vpd = (vapour_pressure_deficit_hpa(ta[0], rh[0]), _worst(ta[1], rh[1]),
                   "; ".join(reasons)[:200] if reasons else None)
        graded.append(("VPD", "hPa", vpd))
    return [
        Reading(station=station, sensor=config.name, variable=variable + suffix, value=value, unit=unit, time=now,
                time_source=TimeSource.GATEWAY, clock_synced=synced, qc=flag, qc_reason=reason)
        for variable, unit, (value, flag, reason) in graded
    ]


class HMP155Driver:
    """gateway.driver_api.Driver (and LineDriver) for a Vaisala HMP155 in POLL mode."""

    Config: ClassVar[type[SensorConfig]] = HMP155Config
    shares_line: ClassVar[bool] = True  # addressed: only the probe named in SEND aa answers

    def __init__(self, config: SensorConfig, *, station: str,
                 clock_synced: Callable[[], bool] = kernel_clock_synced) -> None:
        if not isinstance(config, HMP155Config):
            config = HMP155Config.model_validate(config.model_dump())
        self.config: HMP155Config = config
        self.station = station
        self._clock_synced = clock_synced
        self._line: SerialLine | None = None
        self._own_line: RtuSerialLine | None = None
        self._configured = False
        self._without_unit = False  # install FORM_SPEC_WITHOUT_UNIT: the probe did not take the FORM with U5
        self._unit_seen = False  # a reply carried the unit: this probe takes U5, never fall back
        self._fresh_format_failures = 0
        self.form_fallbacks = 0
        """Times a reply right after installing the FORM did not parse and the other FORM (with/without U5) was
        installed next."""

    def __repr__(self) -> str:
        return f"HMP155Driver({self.config.name!r}, port={self.config.port!r}, address={self.config.address})"

    @property
    def _where(self) -> str:
        return f"HMP155 {self.config.name!r} at {self.config.port} address {self.config.address}"

    def attach(self, line: SerialLine) -> None:
        self.close()
        self._line = line

    def open(self) -> None:
        if self._line is None and self._own_line is None:
            self._own_line = RtuSerialLine(self.config.serial_settings())  # standalone: a line of our own

    def close(self) -> None:
        self._configured = False  # a restarted probe gets its FORM again; an attached line belongs to the bus
        if self._own_line is not None:
            self._own_line.close()
            self._own_line = None

    def _transact(self, request: bytes, complete: Callable[[bytes], bool]) -> bytes:
        self.open()
        line = self._line or self._own_line
        assert line is not None
        cfg = self.config
        try:
            return line.transact(request, complete=complete, timeout_s=cfg.timeout_s)
        except DeviceError as exc:
            self._configured = False
            hint = exc.hint
            if exc.kind is FailureKind.TIMEOUT:
                hint = (f"check the probe's supply, that it is in POLL mode with address {cfg.address} (SMODE POLL, "
                        f"ADDR {cfg.address}: README.md), the serial settings (configured {cfg.baudrate} "
                        f"{cfg.bytesize}{cfg.parity}{cfg.stopbits}; factory 4800 7E1) and the RS-485 wiring "
                        "(try swapping A and B)")
            raise DeviceError(exc.kind, f"{self._where}: {exc.message}", hint) from None

    def _configure(self) -> None:
        self._transact(grammar.open_command(self.config.address), grammar.reply_containing(b"open"))
        # The probe may answer FORM and CLOSE with a prompt, a text line or nothing at all [U]: silence is not a
        # failure here, the first SEND tells whether the FORM is in place.
        form = grammar.FORM_COMMAND_WITHOUT_UNIT if self._without_unit else grammar.FORM_COMMAND
        for request, complete in ((form, grammar.line_reply_complete),
                                  (grammar.CLOSE_COMMAND, grammar.reply_containing(b"closed"))):
            try:
                self._transact(request, complete)
            except DeviceError as exc:
                if exc.kind is not FailureKind.TIMEOUT:
                    raise
        self._configured = True

    def poll(self) -> list[Reading]:
        cfg = self.config
        fresh = not self._configured
        if fresh:
            self._configure()
        reply = self._transact(grammar.send_command(cfg.address), grammar.send_reply_complete)
        try:
            values = grammar.parse_send(reply, cfg.address, verify_checksum=cfg.verify_checksum)
        except grammar.GrammarError as exc:
            self._configured = False  # re-install the FORM before the next SEND
            if fresh and exc.reason == "format":
                self._fresh_format_failures += 1
            if self._fresh_format_failures >= 2 and not self._unit_seen:
                # Twice in a row the FORM just installed did not take (noise does not do that): a probe or simulator
                # refusing U5 keeps its old FORM. Alternate with the FORM without the unit field (T then read as
                # degC, the factory setting). Never once a reply has carried the unit: that probe takes U5.
                self._fresh_format_failures = 0
                self._without_unit = not self._without_unit
                self.form_fallbacks += 1
                if self.form_fallbacks == 1:
                    log.warning("%s: the reply to SEND after installing the FORM did not parse; trying the FORM "
                                "%s the unit field U5 next", self._where, "without" if self._without_unit else "with")
            kind = FailureKind.CRC if exc.reason == "checksum" else FailureKind.PROTOCOL
            hint = {
                "checksum": "electrical noise: check 120 ohm termination, cable shield and length; if every reply "
                            "fails, set `verify_checksum: false` and report it (the checksum rule is unverified)",
                "address": "two probes share an address: give each its own (ADDR) and `address` key",
            }.get(exc.reason, "line noise, or another program changed the probe's FORM; the driver re-installs it "
                              "on the next poll")
            raise DeviceError(kind, f"{self._where}: {exc}", hint) from None
        self._fresh_format_failures = 0
        self._unit_seen = self._unit_seen or values.unit_printed
        return readings_from(values, cfg, self.station, utc_now(), self._clock_synced())

