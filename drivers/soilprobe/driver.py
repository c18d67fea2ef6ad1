"""Generic RS-485 soil moisture / temperature (/EC) probe over Modbus RTU, either register layout
(`layout: A` moisture first, `layout: B` temperature first; see registers.py).

One poll is one read of 2 (SWC, TS) or 3 (+ EC) registers. A value outside the physical range of its quantity
(a broken probe, a probe in air, the wrong layout configured) is published with qc BAD and the reason.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field

from drivers.soilprobe import registers as reg
from gateway.driver_api import DeviceError, FailureKind, SensorConfig, SerialLine, SerialSettings, kernel_clock_synced
from gateway.model import QualityFlag, Reading, TimeSource, utc_now


class SoilProbeConfig(SensorConfig):
    """One soil probe in a station config; `sample.yaml` documents every key."""

    driver: Literal["soilprobe"] = "soilprobe"
    port: str = Field(min_length=1, description="serial device of the RS-485 line, e.g. /dev/serial/by-id/...")
    address: int = Field(default=1, ge=1, le=247, description="Modbus slave address (factory default 1)")
    layout: reg.Layout = Field(description="register layout: A (moisture first, THC-S/JXBS/DFRobot) or "
                                           "B (temperature first, SenseCAP/ES103)")
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[8] = 8
    function: Literal[3, 4] = Field(default=3, description="3 = read holding, 4 = read input registers")
    read_ec: bool = Field(default=True, description="also read the EC register (0x0002)")
    timeout_s: float = Field(default=0.5, gt=0, le=30, description="reply timeout per attempt, seconds")
    retries: int = Field(default=1, ge=0, le=5, description="extra attempts after a timeout or CRC error")
    variable_suffix: str | None = Field(
        default=None, pattern=r"^_\d+_\d+_\d+$", description="AmeriFlux position qualifier _H_V_R, e.g. _1_1_1"
    )

    def serial_settings(self) -> SerialSettings:
        return SerialSettings(self.port, self.baudrate, self.bytesize, self.parity, self.stopbits)


class SoilProbeDriver:
    """gateway.driver_api.Driver (and LineDriver) for RS-485 soil probes."""

    Config: ClassVar[type[SensorConfig]] = SoilProbeConfig

    def __init__(self, config: SensorConfig, *, station: str) -> None:
        if not isinstance(config, SoilProbeConfig):
            config = SoilProbeConfig.model_validate(config.model_dump())
        self.config: SoilProbeConfig = config
        self.station = station
        self.layout = reg.Layout(config.layout)
        self._start, self._count = reg.read_span(self.layout, config.read_ec)
        self._line: SerialLine | None = None
        self._own_line: SerialLine | None = None

    def __repr__(self) -> str:
        return f"SoilProbeDriver({self.config.name!r}, port={self.config.port!r}, address={self.config.address})"

    def attach(self, line: SerialLine) -> None:
        self.close()
        self._line = line

    def open(self) -> None:
        if self._line is None and self._own_line is None:
            # Standalone use (no SerialBus): the driver owns a line of its own.
            from gateway.driver_api import RtuSerialLine

            self._own_line = RtuSerialLine(self.config.serial_settings())

    def close(self) -> None:
        if self._own_line is not None:
            close = getattr(self._own_line, "close", None)
            if callable(close):
                close()
            self._own_line = None

    def poll(self) -> list[Reading]:
        line = self._line or self._own_line
        if line is None:
            self.open()
            line = self._own_line
        assert line is not None
        cfg = self.config
        try:
            words = line.read_registers(cfg.address, self._start, self._count, function=cfg.function,
                                        timeout_s=cfg.timeout_s, retries=cfg.retries)
        except DeviceError as exc:
            hint = exc.hint
            if exc.kind is FailureKind.TIMEOUT:
                hint = (f"check the probe's supply, the `address` key (factory default 1) and the baud rate "
                        f"(configured {cfg.baudrate}; these probes ship at 4800 or 9600, the most common "
                        "first-contact failure), and the RS-485 wiring (try swapping A and B)")
            elif getattr(exc, "code", None) == 2 and cfg.read_ec:
                # illegal data address: a probe whose map ends before EC (0x0002), or the other layout's model
                hint = (f"{exc.hint}; set `read_ec: false` if this probe has no EC register (0x0002), and check "
                        f"the `layout` (configured {self.layout.value})")
            elif exc.kind is FailureKind.PROTOCOL:
                hint = f"{exc.hint}; try `function: {7 - cfg.function}` (some models answer only FC 03 or FC 04)"
            raise DeviceError(exc.kind, f"soil probe {cfg.name!r} at {cfg.port} address {cfg.address}: "
                                        f"{exc.message}", hint) from None
        return self._readings(reg.decode(self.layout, words, cfg.read_ec))

    def _readings(self, values: dict[str, float]) -> list[Reading]:
        now: datetime = utc_now()
        synced = kernel_clock_synced()
        out = []
        for spec in reg.VALUES[self.layout]:
            if spec.name not in values:
                continue
            value = values[spec.name]
            flag, reason = QualityFlag.GOOD, None
            if not spec.plausible(value):
                flag = QualityFlag.BAD
                reason = (f"{spec.variable} {value:g} {spec.unit} outside {spec.low:g}..{spec.high:g}: probe fault, "
                          f"probe out of the soil, or wrong `layout` (configured {self.layout.value})")
            out.append(Reading(
                station=self.station,
                sensor=self.config.name,
                variable=spec.variable + (self.config.variable_suffix or ""),
                value=value,
                unit=spec.unit,
                time=now,
                time_source=TimeSource.GATEWAY,
                clock_synced=synced,
                qc=flag,
                qc_reason=reason,
            ))
        return out
