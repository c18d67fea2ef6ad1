"""The chaos harness's counting probe: its values decode to exactly one poll, and it answers the sinkwatch GMP252
driver over a real PTY pair like the probe it imitates (Modbus RTU, CDAB floats, per the GMP252 manual)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from drivers.gmp252.driver import GMP252Config, GMP252Driver
from gateway.driver_api import DeviceError, RtuSerialLine, SerialSettings
from gateway.model import Reading
from gateway.testing.counting_sensor import (
    co2_of,
    crc16_modbus,
    float_words,
    poll_of_co2,
    read_served_log,
    temperature_of,
)
from gateway.testing.serial_pty import SocatLine


def test_every_poll_has_its_own_value_and_only_served_values_decode() -> None:
    values = [co2_of(n) for n in range(1, 200_001)]
    assert len(set(values)) == len(values)
    assert [poll_of_co2(v) for v in values[:1000]] == list(range(1, 1001))
    assert poll_of_co2(co2_of(123_456)) == 123_456
    # one float32 step off, a rounding to fewer digits, or not a value at all: no poll
    assert poll_of_co2(co2_of(78) + 3e-5) is None
    assert poll_of_co2(round(co2_of(78), 3)) is None
    assert poll_of_co2(None) is None and poll_of_co2(float("nan")) is None
    assert poll_of_co2(400.0) is None  # poll 0 is never served


def test_frames_follow_the_modbus_and_gmp252_conventions() -> None:
    # CRC-16/MODBUS check value of "123456789" is 0x4B37
    assert crc16_modbus(b"123456789") == 0x4B37
    # the manual's example: 412.5 ppm = 0x43CE4000, sent as register n = 0x4000, register n+1 = 0x43CE
    assert float_words(412.5) == (0x4000, 0x43CE)


@pytest.mark.integration
def test_the_gmp252_driver_reads_counted_polls_and_the_log_names_each(tmp_path: Path) -> None:
    line = SocatLine(tmp_path / "line")
    line.start()
    log = tmp_path / "served.jsonl"
    sensor = subprocess.Popen([sys.executable, "-m", "gateway.testing.counting_sensor", "--port", str(line.link_b),
                               "--addresses", "240,241", "--log", str(log)], stdout=subprocess.DEVNULL)
    try:
        rtu = RtuSerialLine(SerialSettings(str(line.link_a), 19200, 8, "N", 2))
        drivers = [GMP252Driver(GMP252Config(name=f"p{a}", driver="gmp252", port=str(line.link_a), address=a),
                                station="st") for a in (240, 241)]
        for driver in drivers:
            driver.attach(rtu)
        readings: list[Reading] = []
        deadline = time.monotonic() + 20
        while len(readings) < 6 * 2 and time.monotonic() < deadline:
            for driver in drivers:
                try:
                    readings += driver.poll()
                except DeviceError:
                    time.sleep(0.1)  # the simulator is still starting
        by_probe = {
            name: [(r.variable, r.value) for r in readings if r.sensor == name] for name in ("p240", "p241")}
        for name, values in by_probe.items():
            polls = [n for variable, v in values if variable == "CO2" and (n := poll_of_co2(v)) is not None]
            assert len(polls) == len(values) // 2
            assert polls == sorted(polls) and len(set(polls)) == len(polls), name
            temperatures = [v for variable, v in values if variable == "T_PROBE"]
            assert temperatures == [temperature_of(n) for n in polls]
        rtu.close()
    finally:
        sensor.terminate()
        sensor.wait(timeout=10)
        line.stop()
    served = list(read_served_log(log))
    for address in (240, 241):
        logged = [p.n for p in served if p.address == address]
        read = [poll_of_co2(v) for variable, v in by_probe[f"p{address}"] if variable == "CO2"]
        assert logged == read  # every poll the driver completed is in the log, and nothing else
