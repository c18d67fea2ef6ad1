"""Serve hand-made bytes to a stream driver the way the station reads it: a socat PTY pair, the real stream runner
(gateway/edge/streams/) on one end, these bytes written to the other in small pieces (so records arrive split
across reads, as on a real line), the values read back from the raw archive the runner wrote."""

from __future__ import annotations

import math
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import serial

from gateway.clock import ClockMapper
from gateway.driver_api import StreamDriver
from gateway.edge.streams.runner import StreamHealth, StreamRunner, StreamSettings
from gateway.rawarchive import read_archive
from gateway.testing.serial_pty import socat_pty_pair

Row = tuple[float | None, ...]


@dataclass
class Served:
    rows: list[Row]  # every record the runner archived, in order, NaN read back as None
    columns: list[str]
    health: StreamHealth
    driver: Any  # the runner's driver instance (its counters)
    received: bytes = b""  # what the runner wrote to the instrument (TCP only)


def _runner(driver_class: type[StreamDriver], config: dict[str, Any], tmp_path: Path,
            closed: list[Path]) -> StreamRunner:
    """The station's stream runner for the driver, its archive in tmp_path/raw, each closed archive file appended
    to `closed`."""
    parsed = driver_class.Config.model_validate({"name": "xsim", **config})
    return StreamRunner(driver_class, parsed, station="st1", site="site1",
                        settings=StreamSettings(archive_dir=tmp_path / "raw", summary_interval_s=3600,
                                                read_interval_s=0.05),
                        sink=lambda batch: None, clock=ClockMapper(synced=lambda: True),
                        on_archive_closed=closed.append)


def _archived(closed: list[Path]) -> tuple[list[Row], list[str]]:
    """Every record of the archive files in order (NaN read back as None), and their columns."""
    rows: list[Row] = []
    columns: list[str] = []
    for path in closed:
        data = read_archive(path)
        columns = list(data.columns)
        values = list(data.columns.values())
        rows += [tuple(None if math.isnan(c[i]) else float(c[i]) for c in values) for i in range(data.time.size)]
    return rows, columns


def serve_stream(driver_class: type[StreamDriver], config: dict[str, Any], payload: bytes, tmp_path: Path, *,
                 frames: int, good: int = 0, piece: int = 7, timeout_s: float = 10.0) -> Served:
    """Write `payload` to the instrument end of a PTY pair while the runner reads the other; wait until the
    runner has seen `frames` frames (data, bad or messages) and `good` good records."""
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed (Debian package socat)")
    closed: list[Path] = []
    with socat_pty_pair(tmp_path / "pty") as (driver_end, instrument_end):
        runner = _runner(driver_class, {"port": driver_end, **config}, tmp_path, closed)
        runner.start()
        try:
            deadline = time.monotonic() + timeout_s
            while runner.health.connects == 0:
                assert time.monotonic() < deadline, "the runner did not open the port"
                time.sleep(0.02)
            with serial.Serial(instrument_end, 115200, timeout=0) as port:
                for at in range(0, len(payload), piece):
                    port.write(payload[at:at + piece])
                    port.flush()
                    time.sleep(0.001)
                while (runner.health.frames + runner.health.bad.get("overflow", 0) < frames
                       or runner.health.good < good):
                    assert time.monotonic() < deadline, (
                        f"{runner.health.frames} of {frames} frames within {timeout_s} s: {runner.health}")
                    time.sleep(0.02)
        finally:
            runner.stop()
    return Served(*_archived(closed), runner.health, runner.driver)


def serve_stream_tcp(driver_class: type[StreamDriver], config: dict[str, Any], payload: bytes, tmp_path: Path, *,
                     frames: int, mid_record: bytes = b"", piece: int = 11, timeout_s: float = 10.0) -> Served:
    """`serve_stream` over TCP (an instrument's Ethernet data port, e.g. the LI-7500DS on 7200): a listening
    socket on loopback; on the runner's connection `mid_record` goes first (the tail of a record the instrument
    was sending when the connection came up), then `payload` in pieces; the start commands the runner sends are
    read and kept in `received`."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    received = bytearray()
    done = threading.Event()

    def instrument() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.settimeout(0.05)
            connection.sendall(mid_record)
            for at in range(0, len(payload), piece):
                connection.sendall(payload[at:at + piece])
                time.sleep(0.001)
            while not done.is_set():
                try:
                    chunk = connection.recv(4096)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                received.extend(chunk)

    thread = threading.Thread(target=instrument, name="xsim-tcp-instrument", daemon=True)
    thread.start()
    closed: list[Path] = []
    runner = _runner(driver_class, {"port": f"tcp://127.0.0.1:{port}", **config}, tmp_path, closed)
    runner.start()
    try:
        deadline = time.monotonic() + timeout_s
        while runner.health.frames < frames:
            assert time.monotonic() < deadline, f"{runner.health.frames} of {frames} frames: {runner.health}"
            time.sleep(0.02)
    finally:
        runner.stop()
        done.set()
        thread.join(5.0)
        listener.close()
    served = Served(*_archived(closed), runner.health, runner.driver)
    served.received = bytes(received)
    return served


def close_to(got: Row, expected: Row, rel: float = 1e-6) -> bool:
    """Row equality with None for missing and a relative tolerance for float32 storage in the archive."""
    if len(got) != len(expected):
        return False
    for g, e in zip(got, expected, strict=True):
        if (g is None) != (e is None):
            return False
        if g is not None and e is not None and not math.isclose(g, e, rel_tol=rel, abs_tol=1e-9):
            return False
    return True
