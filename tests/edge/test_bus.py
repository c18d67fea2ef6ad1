"""One owner per serial line, against real pyserial on socat PTYs: a bus with three GMP252 and a soil probe keeps
polling the healthy devices while one is unplugged, frames never overlap, a vanished adapter is reopened, and the
config refuses devices that disagree on one line's settings."""

from __future__ import annotations

import itertools
import logging
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import serial

from drivers.gmp252.driver import GMP252Driver
from drivers.gmp252.simulator import GMP252Simulator, profile_simulators
from drivers.soilprobe.driver import SoilProbeDriver
from drivers.soilprobe.simulator import SoilProbeSimulator
from gateway.configfile import ConfigError
from gateway.driver_api import Driver, RtuSerialLine, SensorConfig, SerialSettings, rtu
from gateway.edge.bus import SensorRunner, SerialBus
from gateway.edge.config import parse_station_config
from gateway.edge.daemon import plan_lines
from gateway.model import Reading
from gateway.simulation.rtu_line import RtuLineSimulator
from gateway.testing.serial_pty import socat_pty_pair

pytestmark = pytest.mark.integration

DEPTHS = {240: 0.1, 241: 0.3, 242: 0.5}
WAIT_S = 20.0  # generous upper bound for a condition; tests end as soon as it holds


@pytest.fixture(autouse=True)
def _need_socat() -> None:
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed (Debian package socat)")


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def sensor_entries(port: str, overrides: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    # timeout_s: generous, since a test machine under load can delay the simulator's reply by 100 ms or more
    common = {"port": port, "interval_s": 0.02, "timeout_s": 0.4, "retries": 0}
    entries: list[dict[str, Any]] = [
        {"name": f"co2_{int(depth * 100)}cm", "driver": "gmp252", "address": address,
         "variable_suffix": f"_1_{index + 1}_1", **common}
        for index, (address, depth) in enumerate(sorted(DEPTHS.items()))
    ]
    entries.append({"name": "swc_10cm", "driver": "soilprobe", "address": 1, "layout": "A", "baudrate": 19200,
                    "stopbits": 2, **common})
    for entry in entries:
        entry.update((overrides or {}).get(entry["name"], {}))
    return entries


def station(port: str, tmp_path: Path, overrides: dict[str, dict[str, Any]] | None = None,
            ) -> list[tuple[type[Driver], SensorConfig]]:
    data = {"site": "s", "station": "st1", "buffer": {"path": str(tmp_path / "b.sqlite")},
            "sensors": sensor_entries(port, overrides)}
    return parse_station_config(data).sensors


class Collector:
    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.lock = threading.Lock()

    def __call__(self, readings: list[Reading]) -> None:
        with self.lock:
            self.readings.extend(readings)

    def count(self, sensor: str) -> int:
        with self.lock:
            return sum(1 for r in self.readings if r.sensor == sensor)


class RunningBus:
    def __init__(self, port: str, tmp_path: Path, overrides: dict[str, dict[str, Any]] | None = None,
                 **line_options: Any) -> None:
        sensors = station(port, tmp_path, overrides)
        self.runners = {cfg.name: SensorRunner(cls, cfg, "st1") for cls, cfg in sensors}
        settings = sensors[0][1].serial_settings()  # type: ignore[attr-defined]
        self.collector = Collector()
        self.bus = SerialBus(settings, list(self.runners.values()), self.collector,
                             line=RtuSerialLine(settings, **line_options))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.bus.run, args=(self.stop,), daemon=True)

    def __enter__(self) -> RunningBus:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def profile_line(port: str, **options: Any) -> tuple[RtuLineSimulator, list[GMP252Simulator], SoilProbeSimulator]:
    probes = profile_simulators(DEPTHS, seed=1)
    soil = SoilProbeSimulator(address=1, layout="A", seed=2)
    line = RtuLineSimulator(port, [*probes, soil], baudrate=19200, stopbits=2, **options)
    return line, probes, soil


@pytest.fixture
def ptys(tmp_path: Path) -> Iterator[tuple[str, str]]:
    with socat_pty_pair(tmp_path / "pty") as pair:
        yield pair


def test_healthy_devices_keep_polling_while_one_is_unplugged(
    ptys: tuple[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sinkwatch.edge")
    line, probes, _soil = profile_line(ptys[0], reply_delay_s=0.002)
    healthy = ["co2_10cm", "co2_50cm", "swc_10cm"]
    with line, RunningBus(ptys[1], tmp_path) as running:
        runners = running.runners
        wait_for(lambda: all(r.health.available for r in runners.values()), "every device to answer")
        probes[1].set_fault("no_reply")  # address 241, co2_30cm: unplugged
        wait_for(lambda: runners["co2_30cm"].health.available is False, "co2_30cm to be reported unavailable")
        before = {name: running.collector.count(name) for name in healthy}
        polls_before = {name: runners[name].health.polls for name in [*healthy, "co2_30cm"]}
        stuck = running.collector.count("co2_30cm")
        wait_for(lambda: all(running.collector.count(n) >= before[n] + 40 for n in healthy),
                 "the healthy devices to deliver 40 more readings each")
        assert runners["co2_30cm"].health.available is False
        assert running.collector.count("co2_30cm") == stuck
        polls_during = {name: runners[name].health.polls - count for name, count in polls_before.items()}
        probes[1].set_fault("none")  # plugged back
        wait_for(lambda: runners["co2_30cm"].health.available is True, "co2_30cm to be back")
    # backoff: while dead, the unplugged probe was tried far less often than a healthy one was polled
    assert polls_during["co2_30cm"] < min(polls_during[n] for n in healthy) / 2, polls_during
    messages = [r.getMessage() for r in caplog.records]
    assert sum("co2_30cm unavailable" in m for m in messages) == 1
    assert sum("co2_30cm is back" in m for m in messages) == 1
    assert {n: runners[n].health.errors for n in healthy} == {n: {} for n in healthy}, messages
    # frames never overlapped: no request arrived while a reply was pending, and every reply answers the
    # request right before it
    assert line.collisions == 0 and line.bad_frames == 0
    events = line.events
    for previous, event in itertools.pairwise(events):
        if event.kind == "reply":
            assert previous.kind == "request" and previous.address == event.address
    # the profile: CO2 rises with depth
    co2 = {r.variable: r.value or 0.0 for r in running.collector.readings if r.variable.startswith("CO2")}
    assert co2["CO2_1_1_1"] < co2["CO2_1_2_1"] < co2["CO2_1_3_1"]


def test_a_slow_device_s_late_replies_do_not_fail_the_next_device(ptys: tuple[str, str], tmp_path: Path) -> None:
    line, _probes, _soil = profile_line(ptys[0])
    line.delays[241] = 0.3  # co2_30cm answers 0.3 s late, after its own 0.1 s timeout
    overrides = {"co2_30cm": {"timeout_s": 0.1}, **{n: {"timeout_s": 0.8} for n in ("co2_10cm", "co2_50cm")}}
    with line, RunningBus(ptys[1], tmp_path, overrides) as running:
        wait_for(lambda: running.bus.line.counters.late_replies >= 3, "three late replies")
        wait_for(lambda: running.collector.count("co2_50cm") >= 10, "co2_50cm readings")
    runners = running.runners
    assert runners["co2_30cm"].health.available is False and "timeout" in runners["co2_30cm"].health.errors
    # the probe polled right after the slow one received the late reply first, dropped it, and got its own
    assert runners["co2_50cm"].health.errors == {} and runners["co2_10cm"].health.errors == {}
    assert line.collisions >= 3  # on a real bus these overlaps garble frames: a timeout shorter than the
    # device's turnaround is a configuration error, which the unavailable state and the log make visible


def test_every_reading_polled_is_delivered_and_polls_are_spread_fairly(ptys: tuple[str, str], tmp_path: Path) -> None:
    line, probes, soil = profile_line(ptys[0])
    with line, RunningBus(ptys[1], tmp_path) as running:
        wait_for(lambda: all(r.health.polls >= 30 for r in running.runners.values()), "30 polls of every device")
    per_sensor = Counter(r.sensor for r in running.collector.readings)
    for name, runner in running.runners.items():
        assert per_sensor[name] == runner.health.readings
    served_co2 = Counter(v for p in probes for v in p.served_co2)
    delivered_co2 = Counter(r.value or 0.0 for r in running.collector.readings if r.variable.startswith("CO2"))
    # every value delivered was served; a value is missing only where its poll timed out on this loaded host (the
    # reply came after the master gave up and was dropped as stale: counted as the sensor's timeout, not data)
    assert not delivered_co2 - served_co2
    timeouts = sum(running.runners[name].health.errors.get("timeout", 0) for name in running.runners
                   if name.startswith("co2"))
    assert (served_co2 - delivered_co2).total() <= timeouts, running.runners
    assert len(soil.served) == running.runners["swc_10cm"].health.readings // 3


def test_the_master_keeps_t3_5_of_silence_after_every_reply_and_learns_to_wait_for_a_slow_device(
    ptys: tuple[str, str], tmp_path: Path
) -> None:
    """Modbus over serial line V1.02, 2.5.1.1: frames are separated by at least 3.5 character times of silence. The
    master sleeps until a reply is due and takes it in one read, and skips the t3.5 sleep when the line has already
    been quiet that long: on the wire (the line simulator's clock, a PTY being instantaneous), the silence between
    each reply and the next request is still at least t3.5."""
    line, _probes, _soil = profile_line(ptys[0])
    line.delays[241] = 0.05  # co2_30cm turns round in 50 ms: its replies are never in when first looked for
    line.unplug(242)  # co2_50cm never answers: a reply that never came teaches nothing about when to look
    overrides = {"co2_50cm": {"interval_s": 0.3}}
    with line, RunningBus(ptys[1], tmp_path, overrides) as running:
        wait_for(lambda: all(running.runners[n].health.readings >= 60 for n in ("co2_10cm", "co2_30cm", "swc_10cm")),
                 "60 readings of every device that answers")
        wait_for(lambda: running.runners["co2_50cm"].health.errors.get("timeout", 0) >= 3, "three timeouts")
    bus_line = running.bus.line
    silences = [event.time - previous.time for previous, event in itertools.pairwise(line.events)
                if previous.kind == "reply" and event.kind == "request"]
    assert len(silences) >= 100
    assert min(silences) >= bus_line.gap_s, f"{min(silences) * 1000:.3f} ms < t3.5 {bus_line.gap_s * 1000:.3f} ms"
    assert line.collisions == 0 and line.bad_frames == 0
    assert {n: running.runners[n].health.errors for n in ("co2_10cm", "co2_30cm", "swc_10cm")} == {
        "co2_10cm": {}, "co2_30cm": {}, "swc_10cm": {}}
    assert bus_line.reply_timing.extra_s(241) > 0  # waits longer for the slow probe now
    assert bus_line.reply_timing.extra_s(242) == 0


def test_a_vanished_adapter_is_reopened(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sinkwatch.edge")
    link_dir = tmp_path / "pty"
    with socat_pty_pair(link_dir) as (sim_end, bus_end):
        line, _probes, _soil = profile_line(sim_end)
        line.start()
        running = RunningBus(bus_end, tmp_path, reopen_backoff_s=(0.05, 0.5)).__enter__()
        wait_for(lambda: all(r.health.available for r in running.runners.values()), "every device to answer")
        line.stop()
    # socat is gone, and with it both PTY ends: the adapter was unplugged
    try:
        wait_for(lambda: all(r.health.available is False for r in running.runners.values()),
                 "every device to be reported unavailable")
        assert running.bus.line.counters.disconnects >= 1
        assert all("no_port" in r.health.errors for r in running.runners.values())
        with socat_pty_pair(link_dir) as (sim_end, bus_end2):
            assert bus_end2 == bus_end  # the same link path, as udev's /dev/serial/by-id/ name would be
            line, _probes, _soil = profile_line(sim_end)
            with line:
                before = running.collector.count("co2_10cm")
                wait_for(lambda: all(r.health.available for r in running.runners.values()), "every device back")
                wait_for(lambda: running.collector.count("co2_10cm") > before + 5, "new readings after reopening")
    finally:
        running.__exit__()
    messages = [r.getMessage() for r in caplog.records]
    assert any("serial line" in m and "unavailable" in m for m in messages)
    assert any("serial line" in m and "is back" in m for m in messages)
    assert running.bus.line.counters.opens >= 2


class ScriptedDevice:
    """The far end of the line, answering each request (a register read, 8 bytes) with its script's bursts: a list
    of (pause before it in seconds, bytes) per request; noise and replies written as a real line would carry them."""

    def __init__(self, port: str, scripts: list[list[tuple[float, bytes]]]) -> None:
        self.port = serial.Serial(port, baudrate=19200, stopbits=2, timeout=0.05)
        self.scripts = scripts
        self.requests: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        for script in self.scripts:
            request = b""
            while len(request) < 8:
                request += self.port.read(8 - len(request))
            self.requests.append(request)
            for pause, burst in script:
                time.sleep(pause)
                self.port.write(burst)

    def close(self) -> None:
        self.thread.join(timeout=WAIT_S)
        self.port.close()


def registers_reply(address: int, *words: int) -> bytes:
    return rtu.add_crc(bytes([address, 3, 2 * len(words)]) + b"".join(w.to_bytes(2, "big") for w in words))


def test_noise_before_a_reply_is_counted_as_stray_bytes_and_the_reply_still_taken(ptys: tuple[str, str]) -> None:
    """Bytes that are no frame ahead of a device's reply (noise during the silence before it, the tail of a frame
    cut short) are stray, not a CRC failure of the reply: the master takes the whole reply at the end of what came,
    also back to back after a whole reply, where it does not look for stale bytes before the request."""
    noise = b"\xff\x00\x13"
    device = ScriptedDevice(ptys[0], [
        [(0.0, noise + registers_reply(240, 1, 2))],  # noise and the reply in one burst
        [(0.0, registers_reply(240, 3, 4)), (0.001, noise)],  # noise during the silence after a whole reply
        [(0.0, registers_reply(240, 5, 6))],
        [(0.0, noise[:1] + registers_reply(240, 7, 8))],
    ])
    line = RtuSerialLine(SerialSettings(ptys[1], 19200, 8, "N", 2))
    try:
        values = [line.read_registers(240, 0, 2, timeout_s=1.0) for _ in range(4)]
    finally:
        line.close()
        device.close()
    assert values == [[1, 2], [3, 4], [5, 6], [7, 8]]
    assert line.counters.crc_errors == 0 and line.counters.timeouts == 0
    assert line.counters.stray_bytes == 2 * len(noise) + 1
    assert device.requests == [rtu.read_request(240, 3, 0, 2)] * 4



def test_noise_ahead_of_a_reply_that_comes_late_is_stray_bytes_not_a_crc_error(ptys: tuple[str, str]) -> None:
    """The same when the reply is not in at the master's first look (a slow device, a loaded host): the noise is
    there alone, the reply comes after it, and the frame is still taken from the end of what came."""
    noise = b"\xff\x00\x13"
    device = ScriptedDevice(ptys[0], [
        [(0.0, noise), (0.08, registers_reply(240, 1, 2))],
        [(0.0, noise[:1]), (0.08, registers_reply(240, 3, 4))],
        [(0.0, registers_reply(240, 5, 6))],
    ])
    line = RtuSerialLine(SerialSettings(ptys[1], 19200, 8, "N", 2))
    try:
        values = [line.read_registers(240, 0, 2, timeout_s=1.0) for _ in range(3)]
    finally:
        line.close()
        device.close()
    assert values == [[1, 2], [3, 4], [5, 6]]
    assert line.counters.crc_errors == 0 and line.counters.timeouts == 0
    assert line.counters.stray_bytes == len(noise) + 1


# --- config validation --------------------------------------------------------------------------------------


def config_with(*overrides: dict[str, Any]) -> dict[str, Any]:
    sensors = sensor_entries("/dev/ttyUSB0")
    for entry, override in zip(sensors, overrides, strict=False):
        entry.update(override)
    return {"site": "s", "station": "st1", "buffer": {"path": "/var/lib/sinkwatch/never-opened.sqlite"},
            "sensors": sensors}


def test_devices_on_one_line_with_different_serial_settings_are_refused_naming_the_keys() -> None:
    with pytest.raises(ConfigError) as info:
        parse_station_config(config_with({}, {}, {"baudrate": 9600, "parity": "E"}), "station.yaml")
    message = str(info.value)
    assert "sensors[2].baudrate/parity" in message
    assert "co2_10cm" in message and "co2_50cm" in message and "/dev/ttyUSB0" in message
    assert "baudrate (19200 vs 9600)" in message and "parity (N vs E)" in message


def test_the_soil_probe_default_8n1_conflicts_with_the_gmp252_8n2() -> None:
    data = config_with()
    del data["sensors"][3]["stopbits"]
    with pytest.raises(ConfigError, match=r"sensors\[3\]\.stopbits: .*stopbits \(2 vs 1\)"):
        parse_station_config(data, "station.yaml")


def test_two_devices_at_one_address_on_one_line_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"sensors\[1\]\.address: .*both use address 240"):
        parse_station_config(config_with({}, {"address": 240}), "station.yaml")


def test_the_same_settings_on_separate_ports_are_independent_lines() -> None:
    config = parse_station_config(config_with({}, {"port": "/dev/ttyUSB1", "baudrate": 9600}), "station.yaml")
    runners = [SensorRunner(cls, cfg, "st1") for cls, cfg in config.sensors]
    lines, direct = plan_lines(runners)
    assert direct == []
    assert {port: [r.config.name for r in group] for port, (_, group) in lines.items()} == {
        "/dev/ttyUSB0": ["co2_10cm", "co2_50cm", "swc_10cm"],
        "/dev/ttyUSB1": ["co2_30cm"],
    }
    assert isinstance(runners[0].driver, GMP252Driver) and isinstance(runners[3].driver, SoilProbeDriver)


def test_a_modbus_tcp_probe_is_not_on_a_serial_line() -> None:
    config = parse_station_config(config_with({"port": "tcp://192.0.2.10:502"}), "station.yaml")
    runners = [SensorRunner(cls, cfg, "st1") for cls, cfg in config.sensors]
    lines, direct = plan_lines(runners)
    assert [r.config.name for r in direct] == ["co2_10cm"]
    assert [r.config.name for r in lines["/dev/ttyUSB0"][1]] == ["co2_30cm", "co2_50cm", "swc_10cm"]
