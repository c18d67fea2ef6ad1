"""`sinkwatch live`: a daemon running against the demo station's simulators writes its status file; `live --once`
shows every sensor with a value and a rate, a stopped simulator as unavailable with the reason, and no daemon as a
missing or stale status with the fix and a non-zero exit."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
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
    STALE_AFTER_S,
    StatusUnavailable,
    StatusWriter,
    read_status,
    status_path,
    wake_path,
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
    # no FIFO to ask through (a daemon of an earlier version): the file is judged by its age
    old = round(STALE_AFTER_S + 60)
    snapshot = {"schema": 1, "written": time.time() - old, "running": True, "site": "forest", "station": "st1",
                "sensors": []}
    path.write_text(json.dumps(snapshot))
    code, output = live_once(station_yaml)
    stale = re.search(r"is stale: last written (\d+) s ago", output)
    assert code == 1 and stale and int(stale[1]) >= old and "station run -c" in output
    path.write_text(json.dumps({**snapshot, "written": time.time(), "running": False}))
    code, output = live_once(station_yaml)
    assert code == 1 and "the station daemon stopped at" in output
    with pytest.raises(StatusUnavailable, match="not a status file"):
        path.write_text(json.dumps({"schema": 99}))
        read_status(load_station_config(station_yaml))


class TinyWriter(StatusWriter):
    """A status writer of no daemon: its snapshot is a minimal one (the snapshot's content has tests of its own)."""

    def snapshot(self, running: bool = True) -> dict[str, Any]:
        return {"schema": 1, "written": time.time(), "running": running, "site": "forest", "station": "st1",
                "sensors": []}


def minimal_station(tmp_path: Path) -> Path:
    return write_station_yaml(tmp_path / "station.yaml", {
        "site": "forest", "station": "st1", "buffer": {"path": str(tmp_path / "buffer.sqlite")},
        "sensors": [{"name": "co2", "driver": "gmp252", "port": str(tmp_path / "no-tty")}]})


Running = tuple[TinyWriter, threading.Event, list[int], threading.Thread]


@pytest.fixture
def tiny_writer(tmp_path: Path) -> Iterator[Running]:
    """A writer that would write only once an hour unless asked, running in its own thread; its beats."""
    writer = TinyWriter(cast("StationDaemon", None), path=status_path(tmp_path / "buffer.sqlite"),
                        period_s=1.0, idle_period_s=3600.0)
    stop = threading.Event()
    beats: list[int] = []
    thread = threading.Thread(target=writer.run, args=(stop, lambda: beats.append(writer.writes), 0.05))
    thread.start()
    try:
        wait_for(lambda: writer.writes == 1)
        yield writer, stop, beats, thread
    finally:
        stop.set()
        writer.interrupt()
        thread.join(timeout=10)
        assert not thread.is_alive()


def test_the_snapshot_is_written_when_a_reader_asks_through_the_fifo_not_on_a_timer(
        tmp_path: Path, tiny_writer: Running) -> None:
    writer, _stop, beats, _thread = tiny_writer
    config = load_station_config(minimal_station(tmp_path))
    assert stat.S_ISFIFO(os.stat(wake_path(writer.path)).st_mode)
    assert stat.S_IMODE(os.stat(wake_path(writer.path)).st_mode) == 0o620  # the daemon's group may ask too
    wait_for(lambda: len(beats) >= 5)  # the watchdog's beats go on while it sleeps ...
    assert writer.writes == 1 and writer.asked == 0  # ... and nothing else wakes it to write
    asked = time.time()
    snapshot = read_status(config)
    assert snapshot["written"] >= asked - 0.1 and writer.asked >= 1  # written for this reader
    first = snapshot["written"]
    time.sleep(0.15)  # past the 0.1 s by which a reader takes a snapshot written just before it asked
    again = read_status(config)  # answered, but not sooner than period_s after the last
    assert again["written"] >= first + writer.period_s
    # the writer counts a snapshot just after renaming it into place, so a reader can see it a moment earlier
    wait_for(lambda: writer.writes >= 3, 2)
    assert writer.writes == 3


def test_a_stop_ends_the_status_writer_at_once_with_no_snapshot_after_it(tiny_writer: Running) -> None:
    writer, stop, _beats, thread = tiny_writer
    writes = writer.writes
    stop.set()
    writer.interrupt()  # ends the wait of an hour
    thread.join(timeout=10)
    assert not thread.is_alive() and writer.writes == writes
    assert writer._wake_fd is None  # its FIFO closed: a reader now finds no daemon


def test_a_status_whose_daemon_is_gone_or_does_not_answer_is_not_shown_as_live(tmp_path: Path) -> None:
    config = load_station_config(minimal_station(tmp_path))
    path = status_path(tmp_path / "buffer.sqlite")
    written = time.time() - 5  # a few seconds ago: fresh by its age alone
    path.write_text(json.dumps({"schema": 1, "written": written, "running": True, "site": "forest",
                                "station": "st1", "sensors": []}))
    os.utime(path, (written, written))
    os.mkfifo(wake_path(path), 0o620)
    # a fresh file that says "running", but nobody holds the FIFO: the daemon was killed a moment ago
    with pytest.raises(StatusUnavailable, match=r"not running: .* by a process that is gone"):
        read_status(config)
    # held open, but nobody answers: a stuck daemon
    held = os.open(wake_path(path), os.O_RDWR | os.O_NONBLOCK)
    try:
        with pytest.raises(StatusUnavailable, match=r"did not answer a request for its status within 0\.3 s"):
            read_status(config, answer_wait_s=0.3)
    finally:
        os.close(held)


def test_a_leftover_in_the_fifos_place_is_replaced_and_a_writer_without_one_still_writes(tmp_path: Path) -> None:
    path = status_path(tmp_path / "buffer.sqlite")
    wake_path(path).write_text("not a fifo")  # e.g. restored from a backup
    writer = TinyWriter(cast("StationDaemon", None), path=path, period_s=0.2, idle_period_s=3600.0)
    stop = threading.Event()
    thread = threading.Thread(target=writer.run, args=(stop,))
    thread.start()
    try:
        wait_for(lambda: writer.writes == 1)
        assert stat.S_ISFIFO(os.stat(wake_path(path)).st_mode)
        assert read_status(load_station_config(minimal_station(tmp_path)))["running"] is True
    finally:
        stop.set()
        writer.interrupt()
        thread.join(timeout=10)
    # a folder in the FIFO's place (it cannot be replaced): snapshots on a timer instead, judged by their age
    other = tmp_path / "other" / "status.json"
    wake_path(other).mkdir(parents=True)
    blocked = TinyWriter(cast("StationDaemon", None), path=other, period_s=0.2, idle_period_s=3600.0)
    stop = threading.Event()
    thread = threading.Thread(target=blocked.run, args=(stop,))
    thread.start()
    try:
        wait_for(lambda: blocked.writes >= 1)
        assert blocked._wake_fd is None
    finally:
        stop.set()  # the timer's wait is on the stop event: no interrupt needed
        thread.join(timeout=10)
    assert not thread.is_alive()
