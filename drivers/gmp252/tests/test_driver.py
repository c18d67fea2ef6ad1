"""Driver pieces that need no port: config validation and the status -> quality mapping."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from drivers.gmp252.driver import GMP252Config, GMP252Driver, assess_status
from gateway.driver_api import Driver, SensorConfig
from gateway.model import QualityFlag


def test_defaults_match_the_probe_factory_settings() -> None:
    cfg = GMP252Config(name="s", port="/dev/ttyUSB0")
    assert (cfg.address, cfg.baudrate, cfg.parity, cfg.stopbits, cfg.bytesize) == (240, 19200, "N", 2, 8)
    assert cfg.read_temperature and cfg.variable_suffix is None and not cfg.is_tcp


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("address", 0),
        ("address", 248),
        ("baudrate", 12345),
        ("parity", "X"),
        ("stopbits", 3),
        ("variable_suffix", "_1_1"),
        ("variable_suffix", "1_1_1"),
        ("port", "tcp://host-without-port"),
        ("port", "tcp://host:99999"),
        ("timeout_s", 0),
        ("colour", "blue"),
    ],
)
def test_bad_values_are_refused_naming_the_key(key: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        GMP252Config.model_validate({"name": "s", "port": "/dev/ttyUSB0", key: value})
    assert key in {str(part) for err in info.value.errors() for part in err["loc"]}


def test_tcp_port_is_split_into_host_and_port() -> None:
    cfg = GMP252Config(name="s", port="tcp://192.0.2.10:502")
    assert cfg.is_tcp and cfg.tcp_host_port() == ("192.0.2.10", 502)


def test_driver_accepts_a_plain_sensor_config_and_satisfies_the_protocol() -> None:
    generic = SensorConfig.model_construct(name="s", driver="gmp252", interval_s=10.0)
    with pytest.raises(ValidationError):  # no port: the driver re-validates against its own model
        GMP252Driver(generic, station="st")
    driver = GMP252Driver(GMP252Config(name="s", port="/dev/ttyUSB0"), station="st")
    assert isinstance(driver, Driver)
    assert GMP252Driver.Config is GMP252Config


def test_all_ok_is_good() -> None:
    result = assess_status(0, 0, 0)
    assert (result.co2_flag, result.device_flag) == (QualityFlag.GOOD, QualityFlag.GOOD)
    assert result.co2_reason is None and result.device_reason is None


@pytest.mark.parametrize("co2_status", [2, 256])
def test_warm_up_makes_only_co2_suspect(co2_status: int) -> None:
    result = assess_status(0, co2_status, 0)
    assert result.co2_flag is QualityFlag.SUSPECT and result.device_flag is QualityFlag.GOOD
    assert result.co2_reason is not None and f"CO2 status {co2_status}" in result.co2_reason


def test_warning_makes_everything_suspect() -> None:
    result = assess_status(4, 0, 0x0010)
    assert result.co2_flag is QualityFlag.SUSPECT and result.device_flag is QualityFlag.SUSPECT
    assert result.device_reason is not None and "warning" in result.device_reason
    assert "supply voltage low" in result.device_reason


@pytest.mark.parametrize(("device_status", "word"), [(1, "critical"), (2, "error"), (6, "error")])
def test_critical_or_error_is_bad_and_names_the_bits(device_status: int, word: str) -> None:
    result = assess_status(device_status, 2, 0x1000)
    assert result.co2_flag is QualityFlag.BAD and result.device_flag is QualityFlag.BAD
    assert result.co2_reason is not None and word in result.co2_reason
    assert "0x00001000" in result.co2_reason and "out of range" in result.co2_reason


def test_unknown_co2_status_is_suspect_not_good() -> None:
    result = assess_status(0, 8, 0)
    assert result.co2_flag is QualityFlag.SUSPECT
    assert result.co2_reason is not None and "unknown" in result.co2_reason
