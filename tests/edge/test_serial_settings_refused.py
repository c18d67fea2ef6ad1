"""A serial port whose driver refuses the character format (termios answers EINVAL: a PTY or an adapter that cannot
do 8E2, say) is a port that cannot be opened, named with the settings: not an "unexpected error" blamed on the
driver, and not an exception that escapes a stream's reconnect loop.

pyserial's constructor is replaced by one that raises what termios raises: the test is about our handling of it,
which a real port reproduces only on some kernels and adapters."""

from __future__ import annotations

import termios
from pathlib import Path

import pytest
import serial

from drivers.windmaster.driver import WindMasterDriver
from gateway.driver_api import RtuSerialLine, SerialSettings
from gateway.driver_api.base import DeviceError, FailureKind
from gateway.edge.streams.transport import Transport


def _refuse(*_args: object, **_kwargs: object) -> serial.Serial:
    raise termios.error(22, "Invalid argument")


def test_a_modbus_line_reports_no_port_naming_the_refused_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serial, "Serial", _refuse)
    line = RtuSerialLine(SerialSettings("/dev/ttyUSB9", 19200, 8, "E", 2))
    with pytest.raises(DeviceError) as caught:
        line.read_registers(240, 0, 2, timeout_s=0.1)
    assert caught.value.kind is FailureKind.NO_PORT
    assert "cannot open: the port refused the serial settings 19200 8E2: " in caught.value.message


def test_a_stream_transport_raises_oserror_naming_the_refused_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    device = tmp_path / "ttyUSB9"
    device.write_text("", encoding="utf-8")  # exists: the transport checks that before it opens
    monkeypatch.setattr(serial, "Serial", _refuse)
    config = WindMasterDriver.Config.model_validate({"name": "sonic", "driver": "windmaster", "port": str(device),
                                                     "baudrate": 19200, "parity": "E", "stopbits": 2})
    with pytest.raises(OSError, match=r"ttyUSB9 refused the serial settings 19200 8E2: "):
        Transport(config).open(timeout_s=0.1)
