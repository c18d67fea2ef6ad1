"""Driver <-> simulator through real pyserial ports on a socat PTY pair, and over Modbus TCP on loopback."""

from __future__ import annotations

import math
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import ModbusSerialClient

from drivers.gmp252 import registers as reg
from drivers.gmp252.driver import GMP252Config, GMP252Driver
from drivers.gmp252.simulator import GMP252Simulator
from gateway.driver_api import DeviceError, FailureKind, RtuSerialLine, SerialSettings
from gateway.model import QualityFlag, Reading, TimeSource
from gateway.simulation.pty import python_pty_pair
from gateway.testing.serial_pty import socat_ptys_or_skip

pytestmark = pytest.mark.integration

FAST_TIMEOUT_S = 0.2


ptys = pytest.fixture(socat_ptys_or_skip, name="ptys")


@pytest.fixture
def sim(ptys: tuple[str, str]) -> Iterator[GMP252Simulator]:
    with GMP252Simulator(ptys[0], seed=42) as simulator:
        yield simulator


def make_driver(port: str, **overrides: Any) -> GMP252Driver:
    settings: dict[str, Any] = {"name": "soil_co2_10cm", "port": port, "timeout_s": FAST_TIMEOUT_S, **overrides}
    return GMP252Driver(GMP252Config.model_validate(settings), station="st1", clock_synced=lambda: True)


@pytest.fixture
def driver(ptys: tuple[str, str], sim: GMP252Simulator) -> Iterator[GMP252Driver]:
    drv = make_driver(ptys[1])
    drv.open()
    yield drv
    drv.close()


def by_variable(readings: list[Reading]) -> dict[str, Reading]:
    return {r.variable: r for r in readings}


def test_values_read_equal_the_values_served(ptys: tuple[str, str], sim: GMP252Simulator) -> None:
    # A patient timeout: with the fault tests' 0.2 s, a reply delayed by a loaded host is retried, the retry is
    # served a second value, and the served list no longer pairs with the reads.
    driver = make_driver(ptys[1], timeout_s=2.0)
    driver.open()
    co2, temperature = [], []
    try:
        for _ in range(10):
            readings = by_variable(driver.poll())
            co2.append(readings["CO2"].value)
            temperature.append(readings["T_PROBE"].value)
            assert readings["CO2"].qc is QualityFlag.GOOD and readings["T_PROBE"].qc is QualityFlag.GOOD
    finally:
        driver.close()
    assert co2 == sim.served_co2
    assert temperature == sim.served_temperature
    assert len(set(co2)) > 1


def test_reading_carries_units_provenance_and_suffix(ptys: tuple[str, str], sim: GMP252Simulator) -> None:
    drv = make_driver(ptys[1], variable_suffix="_1_2_1", read_temperature=False)
    before = time.time()
    try:
        (reading,) = drv.poll()
    finally:
        drv.close()
    assert reading.variable == "CO2_1_2_1" and reading.unit == "umol mol-1"
    assert reading.station == "st1" and reading.sensor == "soil_co2_10cm"
    assert reading.time_source is TimeSource.GATEWAY and reading.clock_synced is True
    assert before <= reading.time.timestamp() <= time.time()
    assert sim.served_temperature == []  # read_temperature=false really skips the register


def test_no_reply_times_out_then_recovers(driver: GMP252Driver, sim: GMP252Simulator) -> None:
    sim.set_fault("no_reply")
    with pytest.raises(DeviceError) as info:
        driver.poll()
    assert info.value.kind is FailureKind.TIMEOUT
    assert "240" in info.value.message and "no reply" in info.value.message
    assert info.value.hint is not None and "A and B" in info.value.hint and "address" in info.value.hint
    sim.set_fault("none")
    readings = by_variable(driver.poll())
    assert readings["CO2"].value == sim.served_co2[-1]


def test_bad_crc_is_reported_as_crc_then_recovers(driver: GMP252Driver, sim: GMP252Simulator) -> None:
    sim.set_fault("bad_crc")
    with pytest.raises(DeviceError) as info:
        driver.poll()
    assert info.value.kind is FailureKind.CRC
    assert info.value.hint is not None and "termination" in info.value.hint
    sim.set_fault("none")
    assert by_variable(driver.poll())["CO2"].value == sim.served_co2[-1]


def test_nan_gives_missing_with_no_value_then_recovers(driver: GMP252Driver, sim: GMP252Simulator) -> None:
    sim.set_fault("nan")
    readings = by_variable(driver.poll())
    assert readings["CO2"].value is None and readings["CO2"].qc is QualityFlag.MISSING
    assert readings["CO2"].qc_reason is not None and "NaN" in readings["CO2"].qc_reason
    assert readings["T_PROBE"].qc is QualityFlag.GOOD
    assert math.isnan(sim.served_co2[-1])
    sim.set_fault("none")
    assert by_variable(driver.poll())["CO2"].qc is QualityFlag.GOOD


def test_device_error_gives_bad_naming_the_bits_then_recovers(driver: GMP252Driver, sim: GMP252Simulator) -> None:
    sim.set_fault("device_error")
    readings = by_variable(driver.poll())
    for reading in readings.values():
        assert reading.qc is QualityFlag.BAD
        assert reading.qc_reason is not None and "device status 2 (error)" in reading.qc_reason
        assert "0x00004000" in reading.qc_reason
    assert readings["CO2"].value == sim.served_co2[-1]  # the value is kept, flagged
    sim.set_fault("none")
    assert all(r.qc is QualityFlag.GOOD for r in driver.poll())


def test_warm_up_flags_co2_until_the_probe_is_ready(ptys: tuple[str, str]) -> None:
    # phases of 1 s, each poll in the middle of its phase counted from the simulator's power-on (not from the
    # previous poll), so a loaded host's late start or slow poll does not move a poll into the next phase
    with GMP252Simulator(ptys[0], warmup_s=2.0, not_ready_s=1.0) as simulator:
        drv = make_driver(ptys[1])

        def poll_at(since_power_on_s: float) -> Reading:
            time.sleep(max(0.0, simulator.powered_on_at + since_power_on_s - time.monotonic()))
            return by_variable(drv.poll())["CO2"]

        try:
            first = by_variable(drv.poll())["CO2"]
            second = poll_at(1.5)
            third = poll_at(2.5)
        finally:
            drv.close()
    assert first.qc is QualityFlag.MISSING and first.value is None
    assert first.qc_reason is not None and "256" in first.qc_reason
    assert second.qc is QualityFlag.SUSPECT and second.qc_reason is not None and "CO2 status 2" in second.qc_reason
    assert third.qc is QualityFlag.GOOD
    assert [second.value, third.value] == simulator.served_co2[-2:]


def test_wrong_address_times_out(ptys: tuple[str, str], sim: GMP252Simulator) -> None:
    drv = make_driver(ptys[1], address=17, retries=0)
    with pytest.raises(DeviceError) as info:
        drv.poll()
    drv.close()
    assert info.value.kind is FailureKind.TIMEOUT and "address 17" in info.value.message
    assert sim.requests == 0


def test_modbus_exception_is_protocol_with_its_meaning(driver: GMP252Driver, monkeypatch: pytest.MonkeyPatch) -> None:
    # The probe's real map has no register 3; pointing the compiled plan at it provokes exception 02.
    undocumented = reg.Point("undocumented", 0x0002, reg.DataType.FLOAT32, "", "")
    monkeypatch.setattr(driver, "_blocks", reg.compile_blocks([undocumented]))
    with pytest.raises(DeviceError) as info:
        driver.poll()
    assert info.value.kind is FailureKind.PROTOCOL
    assert "exception 02" in info.value.message and "illegal data address" in info.value.message


def test_missing_port_is_no_port_and_the_driver_connects_once_it_appears(
    tmp_path: Path, ptys: tuple[str, str], sim: GMP252Simulator
) -> None:
    port = tmp_path / "ttyUSB7"
    drv = make_driver(str(port))
    for attempt in (drv.open, drv.poll):
        with pytest.raises(DeviceError) as info:
            attempt()
        assert info.value.kind is FailureKind.NO_PORT
        assert str(port) in info.value.message
        assert info.value.hint is not None and "check the cable/adapter and the `port` key" in info.value.hint
    port.symlink_to(Path(ptys[1]).resolve())
    try:
        assert by_variable(drv.poll())["CO2"].value == sim.served_co2[-1]
    finally:
        drv.close()


def test_driver_reconnects_after_the_port_went_away(tmp_path: Path) -> None:
    # The in-process pair lets the test destroy and recreate the port under the same path.
    with python_pty_pair(tmp_path) as (sim_end, driver_end), GMP252Simulator(sim_end) as simulator:
        drv = make_driver(driver_end)
        assert by_variable(drv.poll())["CO2"].value == simulator.served_co2[-1]
    with pytest.raises(DeviceError) as info:
        drv.poll()
    assert info.value.kind in (FailureKind.NO_PORT, FailureKind.TIMEOUT)
    with pytest.raises(DeviceError) as info:
        drv.poll()
    assert info.value.kind is FailureKind.NO_PORT
    with python_pty_pair(tmp_path) as (sim_end, driver_end), GMP252Simulator(sim_end) as simulator:
        try:
            assert by_variable(drv.poll())["CO2"].value == simulator.served_co2[-1]
        finally:
            drv.close()


def test_poll_raises_only_device_error_on_unexpected_failures(
    driver: GMP252Driver, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(ModbusSerialClient, "read_holding_registers", explode)
    with pytest.raises(DeviceError) as info:
        driver.poll()
    assert info.value.kind is FailureKind.PROTOCOL and "RuntimeError: boom" in info.value.message
    monkeypatch.undo()
    assert len(driver.poll()) == 2


def test_fc16_write_through_pymodbus_reaches_the_compensation_register(
    ptys: tuple[str, str], sim: GMP252Simulator
) -> None:
    client = ModbusSerialClient(ptys[1], baudrate=19200, stopbits=2, timeout=1)
    assert client.connect()
    try:
        words = reg.encode_float32(962.0)
        response = client.write_registers(0x0208, words, device_id=240)
        assert not response.isError()
    finally:
        client.close()
    assert sim.register("comp_pressure") == 962.0


def free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_modbus_tcp_mode() -> None:
    with GMP252Simulator(f"tcp://127.0.0.1:{free_tcp_port()}", seed=5) as simulator:
        drv = make_driver(simulator.tcp_endpoint)
        try:
            values = [by_variable(drv.poll())["CO2"].value for _ in range(3)]
            assert values == simulator.served_co2
            simulator.set_fault("no_reply")
            with pytest.raises(DeviceError) as info:
                drv.poll()
            assert info.value.kind is FailureKind.TIMEOUT
            simulator.set_fault("none")
            assert by_variable(drv.poll())["CO2"].value == simulator.served_co2[-1]
        finally:
            drv.close()


def test_modbus_tcp_refused_is_no_port() -> None:
    drv = make_driver(f"tcp://127.0.0.1:{free_tcp_port()}")
    with pytest.raises(DeviceError) as info:
        drv.poll()
    assert info.value.kind is FailureKind.NO_PORT and "127.0.0.1" in info.value.message


MBPOLL = shutil.which("mbpoll")


@pytest.mark.skipif(MBPOLL is None, reason="mbpoll is not installed (Debian package mbpoll)")
def test_mbpoll_reads_the_co2_register(ptys: tuple[str, str], sim: GMP252Simulator) -> None:
    assert MBPOLL is not None
    common = [MBPOLL, "-m", "rtu", "-a", "240", "-b", "19200", "-P", "none", "-s", "2", "-1", "-o", "1"]
    # mbpoll's register numbers are 1-based and its default word order is low word first, like Vaisala's.
    as_float = subprocess.run(
        [*common, "-t", "4:float", "-r", "1", "-c", "1", ptys[1]], capture_output=True, text=True, timeout=5
    )
    assert as_float.returncode == 0, as_float.stderr
    match = re.search(r"^\[1\]:\s+(\S+)", as_float.stdout, re.MULTILINE)
    assert match, as_float.stdout
    printed = match.group(1)
    # mbpoll prints ~6 significant digits: compare to within half a unit of the last printed digit.
    decimals = len(printed.partition(".")[2])
    assert float(printed) == pytest.approx(sim.served_co2[-1], abs=0.5 * 10**-decimals + 1e-9)

    as_hex = subprocess.run(
        [*common, "-t", "4:hex", "-r", "1", "-c", "2", ptys[1]], capture_output=True, text=True, timeout=5
    )
    assert as_hex.returncode == 0, as_hex.stderr
    words = [int(w, 16) for w in re.findall(r"^\[\d+\]:\s+0x([0-9A-Fa-f]{4})", as_hex.stdout, re.MULTILINE)]
    assert len(words) == 2, as_hex.stdout
    # Decoded here without our helpers: the low word is sent first.
    (value,) = struct.unpack(">f", struct.pack(">HH", words[1], words[0]))
    assert value == sim.served_co2[-1]


def test_cli_entry_serves_on_a_pty_until_interrupted() -> None:
    # The function `sinkwatch simulate gmp252 --port pty` calls, run as the CLI would: in its own process.
    # started with SIGINT ignored, as a test run started by a non-interactive shell's background job passes it on
    # (this test hung once that way: the simulator never saw the Ctrl-C)
    process = subprocess.Popen(
        [sys.executable, "-c", "from drivers.gmp252.simulator import main; main('pty', fault='device_error')"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()
        match = re.search(r"port at (\S+)$", first_line.strip())
        assert match, f"unexpected first line {first_line!r}; stderr: {process.stderr.read() if process.stderr else ''}"
        drv = make_driver(match.group(1))
        try:
            assert all(r.qc is QualityFlag.BAD for r in drv.poll())
        finally:
            drv.close()
        # Ctrl-C once it says it takes one (before, the interrupt would not be its own clean stop); a loaded host
        # may take seconds to stop the serving thread and close the PTY, which is no failure of the stop
        assert process.stdout.readline().strip() == "Ctrl-C to stop"
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=30)
        assert process.returncode == 0
        assert "stopped after" in out
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def three_polls(port: str, shared_line: bool) -> tuple[list[dict[str, Reading]], GMP252Driver]:
    """Three polls by a driver with its own client or through the station's shared line (then closed)."""
    drv = make_driver(port, timeout_s=2.0)
    line = RtuSerialLine(SerialSettings(port, 19200, 8, "N", 2)) if shared_line else None
    if line is not None:
        drv.attach(line)
    try:
        return [by_variable(drv.poll()) for _ in range(3)], drv
    finally:
        drv.close()
        if line is not None:
            line.close()


# --- a probe (or an independent simulator) without register 5 (temperature: not in the GMP252 User Guide's table) ---


@pytest.mark.parametrize("shared_line", [False, True], ids=["own_client", "shared_line"])
def test_a_refused_temperature_register_keeps_co2_and_reports_temperature_missing(
    ptys: tuple[str, str], shared_line: bool
) -> None:
    with GMP252Simulator(ptys[0], seed=7, without_points=("temperature",)) as probe:
        polls, drv = three_polls(ptys[1], shared_line)
    assert [p["CO2"].value for p in polls] == probe.served_co2
    assert all(p["CO2"].qc is QualityFlag.GOOD for p in polls)
    for poll in polls:
        temperature = poll["T_PROBE"]
        assert temperature.value is None and temperature.qc is QualityFlag.MISSING
        assert temperature.qc_reason is not None and "0x0004" in temperature.qc_reason
        assert "exception 02" in temperature.qc_reason and "read_temperature: false" in temperature.qc_reason
    assert drv.refused_reads == 3


# --- a probe (older firmware, or an independent simulator) without the status registers (User Guide -E on) ---


@pytest.mark.parametrize("shared_line", [False, True], ids=["own_client", "shared_line"])
def test_refused_status_registers_keep_the_values_and_flag_them_suspect(
    ptys: tuple[str, str], shared_line: bool
) -> None:
    with GMP252Simulator(ptys[0], seed=8, without_points=("device_status", "co2_status")) as probe:
        polls, drv = three_polls(ptys[1], shared_line)
    assert [p["CO2"].value for p in polls] == probe.served_co2
    assert [p["T_PROBE"].value for p in polls] == probe.served_temperature
    for poll in polls:
        for reading in poll.values():
            assert reading.qc is QualityFlag.SUSPECT
            assert reading.qc_reason is not None and "0x0800" in reading.qc_reason
            assert "exception 02" in reading.qc_reason
    assert drv.status_refusals == 3


def test_a_refused_error_code_keeps_the_status_flags_and_says_the_bits_are_unknown(ptys: tuple[str, str]) -> None:
    with GMP252Simulator(ptys[0], seed=9, fault="device_error", without_points=("error_code",)) as probe:
        drv = make_driver(ptys[1], timeout_s=2.0)
        try:
            poll = by_variable(drv.poll())
        finally:
            drv.close()
    assert poll["CO2"].value == probe.served_co2[0]
    for reading in poll.values():
        assert reading.qc is QualityFlag.BAD
        assert reading.qc_reason is not None and "device status 2" in reading.qc_reason
        assert "error code not readable (register 0x0803 refused" in reading.qc_reason
    assert drv.status_refusals == 1
