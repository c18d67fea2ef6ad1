"""firmware_bridge driver: dendrometers and SDI-12 sensors read through the microcontroller board.

One poll: sync the board clock (one TIME exchange), fetch the board's sampled records (acknowledging the ones
already turned into readings), convert them to stem-size changes, then run each configured SDI-12 sensor's
measurement through the board. Every reading is stamped with the board's timestamp mapped to UTC
(`time_source=board`); `clock_synced` is true only while the mapping is valid and the node's own clock is
synchronised. Records the host cannot map (another boot, no sync yet) are left on the board, unacknowledged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from firmware_bridge import protocol as p
from firmware_bridge.clock import BoardClock
from firmware_bridge.conversion import MODELS, VARIABLE_OF, ChangeTracker, Quantity, displacement_um
from firmware_bridge.link import BridgeLink, LinkError
from firmware_bridge.sdi12 import Sdi12Error, parse_measure, parse_values, teros12_vwc
from gateway.driver_api import DeviceError, FailureKind, SensorConfig, kernel_clock_synced
from gateway.model import QualityFlag, Reading, TimeSource

log = logging.getLogger(__name__)

_SUFFIX = Field(default=None, pattern=r"^_\d+_\d+_\d+$", description="AmeriFlux position qualifier _H_V_R")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class AnalogChannel(_Strict):
    channel: int = Field(ge=0, le=3, description="board analog input 0..3 (ADC0..ADC3)")
    model: str = Field(description=f"dendrometer model: one of {', '.join(MODELS)}")
    full_range_um: float | None = Field(default=None, gt=0, description="overrides the model's full range")
    gain: float = Field(default=1.0, gt=0, description="calibration factor applied to the displacement")
    offset_um: float = Field(default=0.0, description="calibration offset added to the displacement")
    reference_um: float | None = Field(default=None, description="absolute displacement reported as 0; "
                                                                 "null = the first reading")
    reset_threshold_um: float = Field(default=2000.0, gt=0, description="a larger step in one reading = reset")
    variable_suffix: str | None = _SUFFIX

    @model_validator(mode="after")
    def _known_model(self) -> AnalogChannel:
        if self.model not in MODELS:
            raise ValueError(f"unknown dendrometer model {self.model!r}; known: {', '.join(MODELS)}")
        if MODELS[self.model].full_range_um is None and self.full_range_um is None:
            raise ValueError(f"model {self.model!r} needs full_range_um")
        return self

    @property
    def range_um(self) -> float:
        value = self.full_range_um or MODELS[self.model].full_range_um
        assert value is not None
        return value


class Sdi12Sensor(_Strict):
    address: str = Field(pattern=r"^[0-9A-Za-z]$", description="SDI-12 address, one character")
    model: Literal["teros12", "teros11", "dendrometer"]
    value_index: int = Field(default=0, ge=0, le=8, description="dendrometer: which value of D0 is the position")
    value_unit: Literal["um", "mm"] = "um"
    quantity: Quantity = Quantity.RADIUS
    reference_um: float | None = None
    reset_threshold_um: float = Field(default=2000.0, gt=0)
    use_crc: bool = Field(default=True, description="measure with aMC! and check the CRC of the data")
    max_wait_s: int = Field(default=3, ge=1, le=120, description="longest measurement wait (ttt) to honour")
    variable_suffix: str | None = _SUFFIX


class FirmwareBridgeConfig(SensorConfig):
    driver: Literal["firmware_bridge"] = "firmware_bridge"
    port: str = Field(min_length=1, description="serial device of the board, e.g. /dev/serial/by-id/usb-...")
    baudrate: Literal[9600, 19200, 38400, 57600, 115200] = 38400
    timeout_s: float = Field(default=0.5, gt=0, le=10, description="reply timeout per attempt")
    retries: int = Field(default=2, ge=0, le=5, description="extra attempts after a timeout")
    sample_interval_ms: int = Field(default=1000, ge=100, le=86_400_000, description="board sampling interval")
    max_sync_rtt_ms: float = Field(default=100.0, gt=0, description="time-sync exchanges slower than this are "
                                                                    "not used for the clock mapping")
    sdi12_timeout_ms: int = Field(default=600, ge=50, le=5000)
    analog: list[AnalogChannel] = Field(default_factory=list)
    sdi12: list[Sdi12Sensor] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> FirmwareBridgeConfig:
        if not self.analog and not self.sdi12:
            raise ValueError("configure at least one `analog` channel or `sdi12` sensor")
        channels = [a.channel for a in self.analog]
        if len(set(channels)) != len(channels):
            raise ValueError("each analog channel may appear once")
        addresses = [s.address for s in self.sdi12]
        if len(set(addresses)) != len(addresses):
            raise ValueError("each SDI-12 address may appear once")
        return self


Config = FirmwareBridgeConfig


class FirmwareBridgeDriver:
    Config: ClassVar[type[SensorConfig]] = FirmwareBridgeConfig

    def __init__(self, config: SensorConfig, *, station: str,
                 host_clock_synced: Callable[[], bool] = kernel_clock_synced) -> None:
        if not isinstance(config, FirmwareBridgeConfig):
            config = FirmwareBridgeConfig.model_validate(config.model_dump())
        self.config: FirmwareBridgeConfig = config
        self.station = station
        self._host_synced = host_clock_synced
        self.link = BridgeLink(config.port, config.baudrate, config.timeout_s, config.retries)
        self.clock = BoardClock(max_rtt_s=config.max_sync_rtt_ms / 1000)
        self.identity: p.Identity | None = None
        self.board_status: p.BoardStatus | None = None
        self._ack: int | None = None
        self._configured_boot: int | None = None
        self.records_lost = 0
        self._last_dropped: int | None = None
        self.sdi12_without_crc: set[str] = set()
        """SDI-12 addresses configured with use_crc that answered aM! but not aMC!: measured without CRC since."""
        self._analog = {a.channel: a for a in config.analog}
        self._trackers = {a.channel: ChangeTracker(a.reference_um, a.reset_threshold_um) for a in config.analog}
        self._sdi_trackers = {s.address: ChangeTracker(s.reference_um, s.reset_threshold_um) for s in config.sdi12
                              if s.model == "dendrometer"}

    def __repr__(self) -> str:
        return f"FirmwareBridgeDriver({self.config.name!r}, port={self.config.port!r})"

    # --- life cycle ----------------------------------------------------------------------------------------------

    def open(self) -> None:
        self._guard(self._handshake)

    def close(self) -> None:
        self.link.close()

    def poll(self) -> list[Reading]:
        readings: list[Reading] = self._guard(self._poll)
        return readings

    def counters(self) -> dict[str, Any]:
        return {"link": asdict(self.link.counters), "stream": asdict(self.link.decoder.counters),
                "clock": asdict(self.clock.counters), "records_lost": self.records_lost,
                "board": self.board_status.counters if self.board_status else None}

    def _guard(self, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except LinkError as exc:
            if exc.kind in ("no_port", "timeout"):
                self.link.close()
            kind = {"no_port": FailureKind.NO_PORT, "timeout": FailureKind.TIMEOUT, "crc": FailureKind.CRC}.get(
                exc.kind, FailureKind.PROTOCOL)
            hint = {
                FailureKind.NO_PORT: "check the USB cable and the `port` key (ls /dev/serial/by-id/)",
                FailureKind.TIMEOUT: "check that the board is powered and runs the firmware-bridge firmware, "
                                     "and the `baudrate` key",
                FailureKind.CRC: "electrical noise on the USB/serial line; try another cable",
            }.get(kind, "check that firmware and host speak the same protocol version")
            raise DeviceError(kind, f"firmware bridge {self.config.name!r} at {self.config.port}: {exc}",
                              hint) from None
        except (p.ProtocolError, ValueError) as exc:
            raise DeviceError(FailureKind.PROTOCOL, f"firmware bridge {self.config.name!r}: malformed reply: {exc}",
                              "firmware and host disagree on a message layout; update one of them") from None

    def _handshake(self) -> None:
        self.link.open()
        reply = self.link.request(p.MsgType.IDENTIFY)
        identity = p.Identity.decode(reply.frame.body)
        if identity.protocol != p.PROTOCOL_VERSION:
            raise LinkError("protocol", f"board speaks protocol {identity.protocol}, host {p.PROTOCOL_VERSION}")
        analog = {c for c, kind in identity.channels if kind == p.ChannelKind.ANALOG_RATIOMETRIC}
        missing = sorted(set(self._analog) - analog)
        if missing:
            raise LinkError("protocol", f"board {identity.board_id} has no analog channel {missing}")
        self.identity = identity
        log.info("firmware bridge %s: board %s firmware %d.%d.%d protocol %d boot %d", self.config.name,
                 identity.board_id, *identity.firmware, identity.protocol, identity.boot_id)
        self._sync()

    def _configure(self, boot_id: int) -> None:
        mask = sum(1 << c for c in self._analog)
        addresses = "".join(s.address for s in self.config.sdi12)
        body = p.BoardConfig(self.config.sample_interval_ms, mask, addresses).encode()
        self.link.request(p.MsgType.CONFIG_SET, body)
        self._configured_boot = boot_id
        self._ack = None

    def _sync(self) -> int:
        reply = self.link.request(p.MsgType.TIME)
        t = p.TimeReply.decode(reply.frame.body)
        event = self.clock.observe(t.boot_id, t.ticks_ms, reply.sent_s, reply.received_s)
        if event == "reset" or self.link.hellos:
            log.warning("firmware bridge %s: the board restarted (boot id %d); unfetched records are lost, "
                        "re-configuring", self.config.name, t.boot_id)
            self.link.hellos.clear()
            self._configured_boot = None
        elif event == "rollover":
            log.info("firmware bridge %s: board clock rolled over", self.config.name)
        if self._configured_boot != t.boot_id:
            self._configure(t.boot_id)
            self._last_dropped = None
        return t.boot_id

    # --- polling -------------------------------------------------------------------------------------------------

    def _poll(self) -> list[Reading]:
        if self.identity is None:
            self._handshake()
        self._sync()
        synced = self.clock.synced and self._host_synced()
        readings: list[Reading] = []
        if self._analog:
            readings += self._fetch_records(synced)
        for sensor in self.config.sdi12:
            readings += self._read_sdi12(sensor, synced)
        return readings

    def _fetch_records(self, synced: bool) -> list[Reading]:
        readings: list[Reading] = []
        for _ in range(16):  # bounded: at most 16 x 9 records per poll
            reply = self.link.request(p.MsgType.RECORDS, p.encode_records_request(self._ack))
            batch = p.RecordsReply.decode(reply.frame.body)
            if batch.boot_id != self.clock.boot_id:
                # the board reset between the sync and this fetch: leave the records for the next poll
                self._sync()
                break
            if self._last_dropped is not None and batch.dropped > self._last_dropped:
                self.records_lost += batch.dropped - self._last_dropped
                log.warning("firmware bridge %s: the board's record ring overflowed (%d records lost); poll more "
                            "often or sample less often", self.config.name, batch.dropped - self._last_dropped)
            self._last_dropped = batch.dropped
            for record in batch.records:
                stamp = self.clock.to_utc(batch.boot_id, record.ticks_ms)
                if stamp is None:
                    return readings
                readings.append(self._record_reading(record, stamp, synced))
                self._ack = record.seq
            if len(batch.records) < p.MAX_RECORDS_PER_REPLY:
                break
        return readings

    def _record_reading(self, record: p.Record, stamp: datetime, synced: bool) -> Reading:
        channel = self._analog.get(record.channel)
        variable = "STEM_RAD_CHG"
        suffix = ""
        if channel is not None:
            variable = VARIABLE_OF[MODELS[channel.model].quantity]
            suffix = channel.variable_suffix or ""
        base: dict[str, Any] = {
            "station": self.station, "sensor": self.config.name, "variable": variable + suffix, "unit": "um",
            "time": stamp, "time_source": TimeSource.BOARD, "clock_synced": synced}
        if channel is None:
            return Reading(**base, value=None, qc=QualityFlag.MISSING,
                           qc_reason=f"record from unconfigured channel {record.channel}")
        if record.flags & p.RECORD_FLAG_LOW_EXCITATION or record.excitation == 0:
            return Reading(**base, value=None, qc=QualityFlag.MISSING,
                           qc_reason=f"excitation too low ({record.excitation} counts): check the sensor supply")
        absolute = displacement_um(record.raw, record.excitation, channel.range_um, channel.gain, channel.offset_um)
        change, event = self._trackers[record.channel].update(absolute)
        flag, reason = QualityFlag.GOOD, None
        if record.flags & p.RECORD_FLAG_OVERRANGE or record.raw > record.excitation:
            flag, reason = QualityFlag.BAD, "output at or above the excitation: sensor out of range or miswired"
        elif event == "reset":
            flag, reason = QualityFlag.SUSPECT, "step larger than reset_threshold_um: re-mount or sensor reset"
        elif record.raw > 0.95 * record.excitation or record.raw < 0.05 * record.excitation:
            flag, reason = QualityFlag.SUSPECT, "sensor near the end of its travel: reset it soon"
        return Reading(**base, value=round(change, 3), qc=flag, qc_reason=reason)

    def _sdi12(self, command: str) -> p.Sdi12Reply:
        body = p.encode_sdi12_request(command, self.config.sdi12_timeout_ms)
        reply = self.link.request(p.MsgType.SDI12, body, timeout_s=self.config.timeout_s +
                                  self.config.sdi12_timeout_ms / 1000 + 0.2)
        return p.Sdi12Reply.decode(reply.frame.body)

    def _read_sdi12(self, sensor: Sdi12Sensor, synced: bool) -> list[Reading]:
        names = self._sdi12_variables(sensor)
        use_crc = sensor.use_crc and sensor.address not in self.sdi12_without_crc
        try:
            measure = self._sdi12(f"{sensor.address}M{'C' if use_crc else ''}!")
            if measure.status == p.Sdi12Status.NO_REPLY and use_crc:
                # A sensor (or simulator) without the CRC commands stays silent to aMC! (they came with version 1.3 of
                # the SDI-12 specification; older sensors lack them): ask aM! and, if it answers, measure this sensor
                # without CRC from now on.
                plain = self._sdi12(f"{sensor.address}M!")
                if plain.status == p.Sdi12Status.OK:
                    self.sdi12_without_crc.add(sensor.address)
                    log.warning("SDI-12 sensor %s.sdi%s answers aM! but not aMC!: measuring it without CRC (set "
                                "use_crc: false to say so)", self.config.name, sensor.address)
                    measure, use_crc = plain, False
            if measure.status != p.Sdi12Status.OK:
                raise Sdi12Error(f"no reply to M ({measure.status.name})")
            wait_s, count = parse_measure(measure.reply, sensor.address)
            if wait_s > sensor.max_wait_s:
                raise Sdi12Error(f"sensor asks for {wait_s} s, more than max_wait_s={sensor.max_wait_s}")
            if wait_s:
                time.sleep(wait_s)
            data = self._sdi12(f"{sensor.address}D0!")
            if data.status != p.Sdi12Status.OK:
                raise Sdi12Error(f"no valid reply to D0 ({data.status.name})")
            values = parse_values(data.reply, sensor.address, use_crc)
            # A sensor may spread its values over D0..D9 (SDI-12 v1.4 sec. 4.4.8; at most 35 characters of values
            # per reply after M): ask for the next while values are missing; a reply with none means no more.
            last = 0
            while len(values) < count and last < 9:
                last += 1
                more = self._sdi12(f"{sensor.address}D{last}!")
                if more.status != p.Sdi12Status.OK:
                    raise Sdi12Error(f"no valid reply to D{last} ({more.status.name})")
                extra = parse_values(more.reply, sensor.address, use_crc)
                if not extra:
                    break
                values += extra
            if len(values) < count:
                raise Sdi12Error(f"D0..D{last} carried {len(values)} of the {count} values the M reply announced")
        except Sdi12Error as exc:
            stamp = self.clock.to_utc(measure.boot_id, measure.ticks_ms) if "measure" in locals() else None
            return self._sdi12_missing(sensor, names, str(exc), stamp, synced)
        stamp = self.clock.to_utc(data.boot_id, data.ticks_ms)
        if stamp is None:
            return []  # the board reset mid-measurement; the next poll measures again
        return [self._sdi12_reading(sensor, variable, unit, value, stamp, synced)
                for variable, unit, value in self._sdi12_values(sensor, names, values)]

    def _sdi12_variables(self, sensor: Sdi12Sensor) -> list[tuple[str, str]]:
        suffix = sensor.variable_suffix or ""
        if sensor.model == "dendrometer":
            return [(VARIABLE_OF[sensor.quantity] + suffix, "um")]
        names = [("SWC" + suffix, "%"), ("TS" + suffix, "degC")]
        if sensor.model == "teros12":
            names.append(("EC_SOIL" + suffix, "uS cm-1"))
        return names

    def _sdi12_values(self, sensor: Sdi12Sensor, names: list[tuple[str, str]],
                      values: list[float]) -> list[tuple[str, str, float | None]]:
        if sensor.model == "dendrometer":
            position = values[sensor.value_index] if sensor.value_index < len(values) else None
            if position is None:
                return [(names[0][0], names[0][1], None)]
            position_um = position * (1000.0 if sensor.value_unit == "mm" else 1.0)
            change, _ = self._sdi_trackers[sensor.address].update(position_um)
            return [(names[0][0], names[0][1], round(change, 3))]
        result: list[tuple[str, str, float | None]] = []
        for index, (variable, unit) in enumerate(names):
            value = values[index] if index < len(values) else None
            if value is not None and index == 0:
                value = round(100.0 * teros12_vwc(value), 3)  # mineral-soil calibration, in %
            result.append((variable, unit, value))
        return result

    def _sdi12_reading(self, sensor: Sdi12Sensor, variable: str, unit: str, value: float | None,
                       stamp: datetime, synced: bool) -> Reading:
        return Reading(station=self.station, sensor=f"{self.config.name}.sdi{sensor.address}", variable=variable,
                       unit=unit, time=stamp, time_source=TimeSource.BOARD, clock_synced=synced, value=value,
                       qc=QualityFlag.GOOD if value is not None else QualityFlag.MISSING,
                       qc_reason=None if value is not None else "value not in the sensor's reply")

    def _sdi12_missing(self, sensor: Sdi12Sensor, names: list[tuple[str, str]], reason: str,
                       stamp: datetime | None, synced: bool) -> list[Reading]:
        log.debug("firmware bridge %s: SDI-12 %s: %s", self.config.name, sensor.address, reason)
        if stamp is None:
            return []
        return [Reading(station=self.station, sensor=f"{self.config.name}.sdi{sensor.address}", variable=variable,
                        unit=unit, time=stamp, time_source=TimeSource.BOARD, clock_synced=synced, value=None,
                        qc=QualityFlag.MISSING, qc_reason=f"SDI-12 address {sensor.address}: {reason}"[:200])
                for variable, unit in names]
