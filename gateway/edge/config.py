"""The station config (`station.yaml`): typed, validated completely before the daemon opens any port.

Each sensor entry is validated twice: first the keys common to every sensor (`name`, `driver`, `interval_s`),
then the whole entry against the named driver's own `Config` model, so an error names the sensor's index and key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from gateway.configfile import (
    ConfigError,
    check_inline_secrets,
    describe_validation_error,
    read_yaml_mapping,
    refuse_bool_for_number,
)
from gateway.driver_api import Driver, LineDriver, SensorConfig, SerialSettings, load_driver, serial_settings_of
from gateway.model import Identifier
from gateway.secretfile import SecretFields, inline_secret_keys, resolve_secret
from gateway.tls import TlsClientFields
from gateway.trust.keys import KeyFileError, load_private_key, public_key_from_text

if TYPE_CHECKING:
    from gateway.edge.fluxrunner import FluxSetup


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, hide_input_in_errors=True)
    _refuse_bool_for_number = field_validator("*", mode="before")(refuse_bool_for_number)


class MqttConfig(TlsClientFields, SecretFields):
    """The broker connection; TLS keys (tls, ca_file, cert_file, key_file, check_hostname) from TlsClientFields."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, hide_input_in_errors=True)

    host: str = Field(default="localhost", description="broker host name or address")
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = Field(default=None, description="inline, or ${ENV_VAR}; prefer password_file")
    password_file: Path | None = Field(default=None, description="file holding the broker password (mode 0600)")
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    client_id: str | None = Field(default=None, description="defaults to sinkwatch-<site>-<station>")
    max_packet_bytes: int | None = Field(
        default=None, ge=1024, le=268_435_455,
        description="the broker's largest packet, for a broker that does not announce it when the station "
                    "connects (VerneMQ 2.2 with max_message_size set; Mosquitto and EMQX announce theirs): an item "
                    "above it is kept and reported instead of sent, which such a broker would answer by closing "
                    "the connection at every resend. With both, the smaller applies")

    @model_validator(mode="after")
    def _resolve_password(self) -> MqttConfig:
        self._inline_secrets = inline_secret_keys(self.password, "mqtt.password")
        self.password = resolve_secret(self.password, self.password_file, "mqtt.password")
        return self


class BufferConfig(_Strict):
    path: Path = Field(description="SQLite file that holds every reading (and the flux and raw outboxes) until "
                                   "the central service's receipt says its store holds it")
    batch_size: int = Field(default=500, ge=1, le=10000, description="readings per MQTT message at most")
    max_in_flight: int = Field(default=10, ge=1, le=1000,
                               description="messages of all channels waiting for the broker's PUBACK at most")
    max_unconfirmed: int = Field(default=100, ge=1, le=100000,
                                 description="items per channel sent and not yet confirmed by a receipt at most; "
                                             "the rest waits on disk while the central service is away")
    receipt_timeout_s: float = Field(default=30.0, gt=0, le=3600,
                                     description="an item without a receipt is sent again after this, then after "
                                                 "twice as long each time, up to 600 s")
    publish_interval_s: float = Field(default=1.0, gt=0, le=3600,
                                      description="how often to drain the buffer: new readings gather this long, "
                                                  "then leave as one batch")


class StreamsConfig(_Strict):
    """Settings shared by every streaming instrument (gateway/edge/streams/, docs/raw-archive.md)."""

    archive_dir: Path | None = Field(default=None, description="raw archive folder; default: raw/ beside the buffer")
    summary_interval_s: float = Field(default=60.0, ge=1, le=3600, description="interval of the mean/SD/count readings")
    uplink: Literal["all", "none", "summaries"] = Field(
        default="summaries", description="all: summaries and raw archive files; summaries: summaries only; none: "
                                         "neither (the raw archive stays on the station)")
    read_interval_s: float = Field(
        default=1.0, ge=0.02, le=1.0,
        description="read each stream every this many seconds, a few records per wake-up, stamped from the "
                    "instrument's cadence anchored on their arrival (gateway/edge/streams/stamping.py). At most 1 s: "
                    "a stamp is never later than its read, and the EC grid spreads a burst over at most 1 s")


class FluxConfig(_Strict):
    """Eddy-covariance fluxes computed on the station from its own streams (gateway/edge/fluxrunner.py,
    docs/flux-ec.md "On the station"). Checked against `sensors` and the engine before the daemon opens anything."""

    sonic: Identifier = Field(description="name of the sonic anemometer (or IRGASON) in `sensors`")
    analyzer: Identifier | None = Field(
        default=None, description="name of the gas analyzer in `sensors`; omit for an IRGASON (gases from the sonic "
                                  "sensor) or a sonic alone (H, TAU, USTAR only)")
    averaging_min: float | None = Field(
        default=None, gt=0,
        description="averaging period in minutes (default: the settings' avrg_len, 30); must divide the 30-min archive "
                    "file into whole seconds, at least 0.5 (e.g. 1, 5, 10, 30)")
    metadata: dict[str, Any] | Path = Field(
        default_factory=dict, description="site facts: inline keys of docs/flux-ec.md (altitude and latitude "
                                          "required; canopy_height, analyzer separations, ...) or a path to a YAML or "
                                          "EddyPro .metadata file; completed from the sensors' configs")
    settings: dict[str, Any] | Path | None = Field(
        default=None, description="processing settings: inline keys of docs/flux-ec.md or a path to a YAML or "
                                  ".eddypro file (relative paths: from station.yaml's folder); default: EddyPro's")
    publish: bool = Field(default=True, description="send each period's record on sinkwatch/v1/<site>/<station>/fluxes")
    max_wait_s: float = Field(
        default=60.0, ge=5, le=1800, description="how long after a period's end to wait for both instruments' "
                                                 "records to reach the archive before computing with what is there")

    @field_validator("averaging_min")
    @classmethod
    def _divides_half_hour(cls, value: float | None) -> float | None:
        if value is None:
            return value
        seconds = value * 60.0
        if seconds < 30 or abs(seconds - round(seconds)) > 1e-6 or 1800 % round(seconds):
            raise ValueError("must divide the 30-min archive file into whole seconds and be at least 0.5 "
                             "(e.g. 0.5, 1, 2, 5, 10, 15, 30)")
        return value


class SupplyVoltageSource(_Strict):
    """Where the station's supply voltage is measured: the latest good reading of one sensor's variable."""

    sensor: Identifier = Field(description="name of the sensor in `sensors` that reports the supply voltage")
    variable: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_]+$",
                          description="its variable holding the voltage in V")


class TelemetryConfig(_Strict):
    """Health reports on sinkwatch/v1/<site>/<station>/health (gateway/edge/telemetry.py, docs/operations.md)."""

    enabled: bool = Field(default=True, description="send health reports")
    interval_s: float = Field(default=60.0, ge=5, le=3600, description="seconds between two reports")
    max_backlog: int = Field(default=10080, ge=10, le=1_000_000,
                             description="reports kept without receipt at most (default: a week at 60 s); older "
                                         "ones are dropped and counted in reports_dropped")
    supply_voltage: SupplyVoltageSource | None = Field(
        default=None, description="the sensor and variable that measure the supply voltage; omit when none does")


class WatchdogConfig(_Strict):
    """How the daemon decides it is hung (gateway/edge/systemd.py); under systemd (`WatchdogSec=` in
    deploy/station/sinkwatch-station.service) a hung daemon stops pinging the watchdog and is restarted."""

    hung_after_s: float = Field(
        default=30.0, ge=1, le=3600,
        description="a daemon loop (buffer writer, delivery, status writer, a serial line's polls, the streams, "
                    "commands) silent "
                    "for longer than this is hung: the watchdog pings stop, and systemd restarts the daemon after "
                    "WatchdogSec")


class CommandsConfig(_Strict):
    """Commands from the central service on sinkwatch/v1/<site>/<station>/commands (gateway/edge/commands.py,
    docs/operations.md "Remote configuration and commands")."""

    accept: Literal["signed", "broker", "none"] = Field(
        default="signed",
        description="signed: only commands signed by a key in trusted_keys (none configured: commands are off); "
                    "broker: any command the broker delivers (its ACL lets only the central service write them); "
                    "none: no commands")
    trusted_keys: list[str] = Field(
        default_factory=list, max_length=16,
        description="the central service's command keys, ed25519:<base64> (`sinkwatch central station "
                    "command-key` prints it); several while a key is being replaced")

    @field_validator("trusted_keys")
    @classmethod
    def _keys(cls, value: list[str]) -> list[str]:
        for index, text in enumerate(value):
            try:
                public_key_from_text(text)
            except ValueError as exc:
                raise ValueError(f"trusted_keys[{index}]: {exc}") from None
        return value

    @property
    def enabled(self) -> bool:
        """Whether the station listens for commands at all."""
        return self.accept == "broker" or (self.accept == "signed" and bool(self.trusted_keys))


class StationConfigBase(_Strict):
    site: Identifier
    station: Identifier
    mqtt: MqttConfig = MqttConfig()
    buffer: BufferConfig
    streams: StreamsConfig = StreamsConfig()
    flux: FluxConfig | None = None
    telemetry: TelemetryConfig = TelemetryConfig()
    signing_key: Path | None = Field(default=None, description=(
        "the station's Ed25519 private key file (mode 0600; `sinkwatch station provision` makes one): every item "
        "is signed and chained with it (gateway/trust/signing.py); without it items go unsigned, and a central "
        "service that requires signatures (its default) stores none of them"))
    watchdog: WatchdogConfig = WatchdogConfig()
    commands: CommandsConfig = CommandsConfig()
    sensors: list[dict[str, Any]] = Field(min_length=1)

    @model_validator(mode="after")
    def _supply_sensor_exists(self) -> StationConfigBase:
        names = [s.get("name") for s in self.sensors]
        supply = self.telemetry.supply_voltage
        if supply is not None and supply.sensor not in names:
            raise ValueError(f"telemetry.supply_voltage.sensor: no sensor named {supply.sensor!r} in `sensors`; "
                             f"use one of {', '.join(str(n) for n in names)}")
        return self


class StationConfig:
    """A validated station config: the common part plus one typed config per sensor."""

    def __init__(
        self, base: StationConfigBase, sensors: list[tuple[type[Driver], SensorConfig]], source: Path | None
    ) -> None:
        self.site = base.site
        self.station = base.station
        self.mqtt = base.mqtt
        self.buffer = base.buffer
        self.streams = base.streams
        self.flux = base.flux
        self.telemetry = base.telemetry
        self.signing_key = base.signing_key
        self.watchdog = base.watchdog
        self.commands = base.commands
        # the `flux:` section resolved against the sensors and the engine (parse_station_config sets it)
        self.flux_setup: FluxSetup | None = None
        self.sensors = sensors
        self.source = source


def parse_station_config(data: dict[str, Any], source: Path | str = "<config>") -> StationConfig:
    try:
        base = StationConfigBase.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(source, exc, model=StationConfigBase)) from None
    check_unique_names(base.sensors, source)
    sensors: list[tuple[type[Driver], SensorConfig]] = []
    for index, entry in enumerate(base.sensors):
        prefix = f"sensors[{index}]"
        try:
            common = SensorConfig.model_validate(
                {k: entry[k] for k in ("name", "driver", "interval_s") if k in entry}
            )
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(source, exc, prefix, model=SensorConfig)) from None
        try:
            driver_class = load_driver(common.driver)
        except KeyError as exc:
            raise ConfigError(f"{source}: invalid configuration\n  {prefix}.driver: {exc.args[0]}") from None
        try:
            sensors.append((driver_class, driver_class.Config.model_validate(entry)))
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(source, exc, prefix, model=driver_class.Config)) from None
    check_serial_lines(sensors, source)
    if base.signing_key is not None:
        try:
            load_private_key(base.signing_key)
        except KeyFileError as exc:
            where = "" if base.signing_key.is_absolute() else (
                f" (a relative path is read from the current directory, {Path.cwd()}, not from the config's "
                "folder: give the absolute path)")
            raise ConfigError(f"{source}: invalid configuration\n  signing_key: {exc}{where}") from None
    config = StationConfig(base, sensors, Path(source) if not isinstance(source, Path) else source)
    if config.flux is not None:
        from gateway.edge.fluxrunner import resolve_flux_setup  # numpy and the engine only when fluxes are on

        config.flux_setup = resolve_flux_setup(config, source)
    return config


def check_unique_names(entries: list[dict[str, Any]], source: Path | str) -> None:
    """Every sensor has its own name (it is the `sensor` tag of its readings downstream); a repeat names both
    entries."""
    first: dict[str, int] = {}
    for index, entry in enumerate(entries):
        name = entry.get("name")
        if not isinstance(name, str):
            continue
        if name in first:
            raise ConfigError(
                f"{source}: invalid configuration\n  sensors[{index}].name: {name!r} is already the name of "
                f"sensors[{first[name]}]; give every sensor its own name (it tags the sensor's readings downstream)"
            )
        first[name] = index


def device_path_of(config: SensorConfig) -> str | None:
    """The serial device a sensor opens (its line's port, or a stream instrument's `port`); None for TCP."""
    settings = serial_settings_of(config)
    port = settings.port if settings is not None else getattr(config, "port", None)
    if not isinstance(port, str) or "://" in port:
        return None
    return port


def check_device_paths(sensors: list[tuple[type[Driver], SensorConfig]], source: Path | str) -> None:
    """One serial device, one spelling. `/dev/ttyUSB0`, a `/dev/serial/by-id/...` link to it, `/dev//ttyUSB0` or
    `/dev/x/../ttyUSB0` all open the same adapter; spelled two ways they would get two line owners (two masters
    colliding on the wire) and would escape the shared-line checks (format, addresses). Links are resolved as
    they are now, so a config validated on the station itself catches a by-id name of the same adapter."""
    spelled: dict[str, tuple[int, str]] = {}
    for index, (_driver_class, config) in enumerate(sensors):
        given = getattr(config, "port", None)
        if isinstance(given, str) and "://" in given and not given.startswith("tcp://"):
            raise ConfigError(f"{source}: invalid configuration\n  sensors[{index}].port: {given!r}: a serial device "
                              "is a path (/dev/serial/by-id/..., /dev/ttyUSB0); a device behind a serial-to-Ethernet "
                              "gateway is tcp://HOST:PORT")
        port = device_path_of(config)
        if port is None:
            continue
        if port != port.strip() or not port.startswith("/"):
            # `ttyUSB0` or `COM3` was opened relative to the daemon's working folder, ` /dev/ttyUSB0 ` as a name with
            # spaces: validate said ok, the port never opened
            bare = port.strip()
            meant = (bare if bare.startswith("/") else "/dev/ttyUSB0 (COM ports are Windows names)"
                     if bare.upper().startswith("COM") else f"/dev/{bare or 'ttyUSB0'}")
            raise ConfigError(f"{source}: invalid configuration\n  sensors[{index}].port: {port!r} is not a device "
                              f"path: give the whole path without spaces around it, e.g. {meant}, or its "
                              "/dev/serial/by-id/... name (ls /dev/serial/by-id/), or tcp://HOST:PORT")
        device = os.path.realpath(port)
        if device in spelled and spelled[device][1] != port:
            other_index, other_port = spelled[device]
            raise ConfigError(
                f"{source}: invalid configuration\n  sensors[{index}].port: sensors[{other_index}] "
                f"({sensors[other_index][1].name}) uses {other_port} and sensors[{index}] ({config.name}) uses "
                f"{port}, which is the same device ({device}); spell the port the same way for every sensor on "
                "it (preferably its /dev/serial/by-id/ name, which survives replugging)"
            )
        spelled.setdefault(device, (index, port))


def check_serial_lines(sensors: list[tuple[type[Driver], SensorConfig]], source: Path | str) -> None:
    """Devices sharing a `port` are one RS-485 line: one character format, distinct addresses, drivers that can
    share. Raises ConfigError naming both sensors and every conflicting key."""
    check_device_paths(sensors, source)
    first_on: dict[str, tuple[int, SensorConfig, SerialSettings]] = {}
    addresses: dict[tuple[str, int], int] = {}
    for index, (driver_class, config) in enumerate(sensors):
        settings = serial_settings_of(config)
        if settings is None:
            continue
        prefix = f"{source}: invalid configuration\n  sensors[{index}]"
        if settings.port in first_on:
            other_index, other, other_settings = first_on[settings.port]
            between = (f"sensors[{other_index}] ({other.name}) and sensors[{index}] ({config.name}) share the "
                       f"serial line {settings.port}")
            conflicts = [
                f"{key} ({getattr(other_settings, key)} vs {getattr(settings, key)})"
                for key in SerialSettings.FORMAT_KEYS
                if getattr(other_settings, key) != getattr(settings, key)
            ]
            if conflicts:
                keys = "/".join(k.split(" ")[0] for k in conflicts)
                raise ConfigError(
                    f"{prefix}.{keys}: {between} but differ in {', '.join(conflicts)}; every device on one RS-485 "
                    "line must use the same serial settings: reconfigure the devices or wire them to separate ports"
                )
            for cls in (driver_class, sensors[other_index][0]):
                if not issubclass(cls, LineDriver) or not getattr(cls, "shares_line", True):
                    raise ConfigError(f"{prefix}.port: {between}, but driver {cls.__name__} cannot share a serial "
                                      "line; give it a port of its own")
        else:
            first_on[settings.port] = (index, config, settings)
        for address in bus_addresses_of(config):
            if (settings.port, address) in addresses:
                other_index = addresses[(settings.port, address)]
                raise ConfigError(
                    f"{prefix}.address: sensors[{other_index}] ({sensors[other_index][1].name}) and sensors[{index}] "
                    f"({config.name}) both use address {address} on {settings.port}; give each device on a line "
                    "its own address"
                )
            addresses[(settings.port, address)] = index


def bus_addresses_of(config: SensorConfig) -> tuple[int, ...]:
    """The Modbus addresses a sensor occupies on its line: its `address`, or every address its config lists with
    `bus_addresses()` (a sensor made of several devices, e.g. an automated chamber's I/O module and analyzer)."""
    method = getattr(config, "bus_addresses", None)
    if callable(method):
        return tuple(int(a) for a in method())
    address = getattr(config, "address", None)
    return (address,) if isinstance(address, int) else ()


STATION_SAMPLE = ("start from `sinkwatch station sample-config` (every sensor's keys: `sinkwatch station "
                  "sample-config --driver NAME`)")


def load_station_config(path: Path | str) -> StationConfig:
    config = parse_station_config(read_yaml_mapping(path, STATION_SAMPLE), Path(path))
    check_inline_secrets(path, config.mqtt.inline_secrets)
    return config
