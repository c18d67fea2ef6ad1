"""`sinkwatch live`: a daemon running against the demo station's simulators writes its status file; `live --once`
shows every sensor with a value and a rate, a stopped simulator as unavailable with the reason, and no daemon as a
missing or stale status with the fix and a non-zero exit."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.demo import ANALYZER, PROFILE, SONIC, DemoRig, demo_simulators, write_station_yaml
from gateway.edge.config import load_station_config
from gateway.edge.daemon import StationDaemon
from gateway.edge.live import (
    IDLE_WRITE_PERIOD_S,
    WATCHED_FOR_S,
    WRITE_PERIOD_S,
    StatusUnavailable,
    StatusWriter,
    read_status,
    status_path,
    watch_path,
)

pytestmark = pytest.mark.integration


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def live_once(station_yaml: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["live", "-c", str(station_yaml), "--once"])
    return result.exit_code, result.output


def rows_of(output: str) -> dict[str, str]:
    """sensor name -> its first table row."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("sensor "))
    rows: dict[str, str] = {}
    for line in lines[start + 1:]:
        if not line.strip():
            break
        if not line.startswith(" "):
            rows[line.split()[0]] = line
    return rows


def wait_for(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.2)


@pytest.fixture
def running_station(tmp_path: Path) -> Iterator[tuple[DemoRig, Path, StationDaemon]]:
    with demo_simulators(tmp_path) as rig:
        config = rig.station_config(tmp_path, ("127.0.0.1", closed_port()), interval_s=0.5)
        config["streams"]["summary_interval_s"] = 1.0
        station_yaml = write_station_yaml(tmp_path / "station.yaml", config)
        daemon = StationDaemon(load_station_config(station_yaml))
        stop = threading.Event()
        thread = threading.Thread(target=daemon.run, args=(stop,), kwargs={"drain_timeout_s": 0.1}, daemon=True)
        thread.start()
        try:
            yield rig, station_yaml, daemon
        finally:
            stop.set()
            thread.join(timeout=30)


def sensor_status(station_yaml: Path, name: str) -> dict[str, Any]:
    try:
        snapshot = read_status(load_station_config(station_yaml))
    except StatusUnavailable:  # the daemon has not written its first snapshot yet: nothing known so far
        return {"name": name, "latest": None, "rate": None, "available": None}
    return next(s for s in snapshot["sensors"] if s["name"] == name)


def test_live_shows_every_sensor_with_a_value_and_a_rate(running_station: Any) -> None:
    _rig, station_yaml, daemon = running_station
    names = [cfg.name for _cls, cfg in daemon.config.sensors]
    # every sensor has a value (the streams: their first 1 s summary) and a rate over at least two snapshots
    wait_for(lambda: all(sensor_status(station_yaml, n)["latest"] and (sensor_status(station_yaml, n)["rate"] or 0) > 0
                         for n in names))
    code, output = live_once(station_yaml)
    assert code == 0, output
    rows = rows_of(output)
    assert set(rows) == set(names)
    for name in names:
        columns = rows[name].split()
        assert " ok " in rows[name], rows[name]
        rate = float(columns[columns.index("readings/s" if name not in (SONIC, ANALYZER) else "records/s") - 1])
        assert rate > 0, rows[name]
    assert "umol mol-1" in rows[PROFILE[0][0]] and "CO2_1_1_1" in rows[PROFILE[0][0]]
    assert "m s-1" in rows[SONIC] and "records/s" in rows[SONIC]
    assert f"{len(names)} of {len(names)} sensors available" in output
    # the file is the daemon's, written whole: it parses as JSON at any moment
    assert json.loads(status_path(daemon.config.buffer.path).read_text())["running"] is True


def test_a_stopped_simulator_shows_as_unavailable_with_the_reason(running_station: Any) -> None:
    rig, station_yaml, _daemon = running_station
    wait_for(lambda: sensor_status(station_yaml, SONIC)["available"] is True
             and sensor_status(station_yaml, PROFILE[1][0])["available"] is True)
    rig.profile_line.unplug(PROFILE[1][1])  # the 30 cm probe stops answering on the shared line
    rig.sonic.stop()
    wait_for(lambda: sensor_status(station_yaml, SONIC)["available"] is False
             and sensor_status(station_yaml, PROFILE[1][0])["available"] is False)
    code, output = live_once(station_yaml)
    assert code == 0, output  # the status is live; the table reports the failures
    rows = rows_of(output)
    assert "UNAVAILABLE" in rows[PROFILE[1][0]] and "timeout" in rows[PROFILE[1][0]]
    assert "UNAVAILABLE" in rows[SONIC]
    notes = output.split("sensors available", 1)[1]
    assert f"{PROFILE[1][0]} (" in notes and f"no reply from address {PROFILE[1][1]}" in notes
    assert f"{SONIC} (" in notes and "tcp://127.0.0.1:" in notes
    # the probes beside it on the same line keep their rate
    for name, *_ in (PROFILE[0], PROFILE[2]):
        assert " ok " in rows[name]


def test_no_daemon_says_the_status_is_missing_and_how_to_fix_it(tmp_path: Path) -> None:
    station_yaml = write_station_yaml(tmp_path / "station.yaml", {
        "site": "forest", "station": "st1", "buffer": {"path": str(tmp_path / "buffer.sqlite")},
        "sensors": [{"name": "co2", "driver": "gmp252", "port": str(tmp_path / "no-tty")}]})
    code, output = live_once(station_yaml)
    assert code == 1
    assert "no live status" in output and "no status file" in output
    assert f"is `sinkwatch station run -c {station_yaml}` running?" in output


def test_a_stale_or_stopped_status_is_not_shown_as_live(tmp_path: Path) -> None:
    station_yaml = write_station_yaml(tmp_path / "station.yaml", {
        "site": "forest", "station": "st1", "buffer": {"path": str(tmp_path / "buffer.sqlite")},
        "sensors": [{"name": "co2", "driver": "gmp252", "port": str(tmp_path / "no-tty")}]})
    path = status_path(tmp_path / "buffer.sqlite")
    snapshot = {"schema": 1, "written": time.time() - 60, "running": True, "site": "forest", "station": "st1",
                "sensors": []}
    path.write_text(json.dumps(snapshot))
    code, output = live_once(station_yaml)
    assert code == 1 and "is stale: last written 60 s ago" in output and "station run -c" in output
    path.write_text(json.dumps({**snapshot, "written": time.time(), "running": False}))
    code, output = live_once(station_yaml)
    assert code == 1 and "the station daemon stopped at" in output
    with pytest.raises(StatusUnavailable, match="not a status file"):
        path.write_text(json.dumps({"schema": 99}))
        read_status(load_station_config(station_yaml))


class ScriptedStop(threading.Event):
    """A stop event whose waits return at once: `on_wait[k]` runs during the k-th wait (0-based), and the loop stops
    at the wait numbered `stop_at`. It records every wait's timeout."""

    def __init__(self, on_wait: dict[int, Callable[[], None]], stop_at: int) -> None:
        super().__init__()
        self.on_wait, self.stop_at = on_wait, stop_at
        self.timeouts: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.timeouts.append(timeout)
        self.on_wait.get(len(self.timeouts) - 1, lambda: None)()
        if len(self.timeouts) > self.stop_at:
            self.set()
        return self.is_set()


class CountingWriter(StatusWriter):
    def write(self, running: bool = True) -> None:
        self.writes += 1


def test_the_snapshot_is_written_every_second_only_while_someone_reads_it(tmp_path: Path) -> None:
    station_yaml = write_station_yaml(tmp_path / "station.yaml", {
        "site": "forest", "station": "st1", "buffer": {"path": str(tmp_path / "buffer.sqlite")},
        "sensors": [{"name": "co2", "driver": "gmp252", "port": str(tmp_path / "no-tty")}]})
    path = status_path(tmp_path / "buffer.sqlite")
    path.write_text(json.dumps({"schema": 1, "written": time.time(), "running": True, "site": "forest",
                                "station": "st1", "sensors": []}))
    writer = CountingWriter(cast("StationDaemon", None), path=path)

    def read() -> None:  # a reader (live, check) marks its interest
        read_status(load_station_config(station_yaml))

    def leave() -> None:
        long_ago = time.time() - 2 * WATCHED_FOR_S
        os.utime(watch_path(path), (long_ago, long_ago))

    # nobody reads: a snapshot, then one per idle period; a reader during the third wait is noticed when it ends
    # (within one idle period), then a snapshot every second until the reader's touch is older than WATCHED_FOR_S
    stop = ScriptedStop({2: read, 5: leave}, stop_at=7)
    writer.run(stop)
    assert stop.timeouts == [IDLE_WRITE_PERIOD_S] * 3 + [WRITE_PERIOD_S] * 3 + [IDLE_WRITE_PERIOD_S] * 2
    assert writer.writes == 8  # one at the start and one after every wait but the stopping one


def test_a_stop_ends_the_status_writer_at_once_with_no_snapshot_after_it(tmp_path: Path) -> None:
    writer = CountingWriter(cast("StationDaemon", None), path=status_path(tmp_path / "buffer.sqlite"))
    stop = threading.Event()
    thread = threading.Thread(target=writer.run, args=(stop,))
    thread.start()
    wait_for(lambda: writer.writes == 1)
    stop.set()  # while it waits an idle period
    thread.join(timeout=IDLE_WRITE_PERIOD_S / 2)
    assert not thread.is_alive() and writer.writes == 1


def test_the_status_writer_beats_the_watchdog_between_snapshots_when_its_period_is_longer(tmp_path: Path) -> None:
    # a daemon watchdog with hung_after_s 2 needs a beat every 0.5 s; the idle snapshot comes every 5 s
    writer = CountingWriter(cast("StationDaemon", None), path=status_path(tmp_path / "buffer.sqlite"))
    beats: list[int] = []
    stop = ScriptedStop({}, stop_at=12)
    writer.run(stop, beat=lambda: beats.append(writer.writes), beat_every_s=0.5)
    assert stop.timeouts[:10] == [0.5] * 9 + [pytest.approx(IDLE_WRITE_PERIOD_S - 9 * 0.5)]
    assert writer.writes == 2  # the snapshots keep their period
    # a beat before each snapshot and after every wait between two (the 13th wait is the stopping one)
    assert beats == [0] + [1] * 10 + [2] * 2
