"""The IRGASON grammar inside the real stream runner (gateway/edge/streams/) against the simulator over a socat
PTY with corrupted signatures: bad records counted as `checksum`, the archive holds exactly the intact values."""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from drivers.irgason.driver import IrgasonConfig, IrgasonDriver
from drivers.irgason.simulator import IrgasonSimulator
from gateway.clock import ClockMapper
from gateway.edge.streams.runner import StreamRunner, StreamSettings
from gateway.rawarchive import read_archive
from gateway.testing.serial_pty import socat_pty_pair

pytestmark = pytest.mark.integration


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout_s} s"
        time.sleep(0.02)


def test_runner_drops_bad_signatures_and_archives_the_intact_values(tmp_path: Path) -> None:
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed (Debian package socat)")
    closed: list[Path] = []
    with socat_pty_pair(tmp_path / "pty") as (driver_end, sim_end), \
            IrgasonSimulator(sim_end, frequency_hz=20, seed=9, fault="bad_checksum", fault_ratio=0.3) as sim:
        config = IrgasonConfig.model_validate({"name": "ec", "port": driver_end, "frequency_hz": 20})
        runner = StreamRunner(IrgasonDriver, config, station="st1", site="site1",
                              settings=StreamSettings(archive_dir=tmp_path / "raw", summary_interval_s=1),
                              sink=lambda batch: None, clock=ClockMapper(synced=lambda: True),
                              on_archive_closed=closed.append)
        runner.start()
        try:
            wait_for(lambda: runner.health.good >= 40 and runner.health.bad.get("checksum", 0) >= 3,
                     "40 good and 3 bad records")
        finally:
            runner.stop()
    assert set(runner.health.bad) == {"checksum"}
    rows = []
    for path in closed:
        data = read_archive(path)
        assert data.units["CO2"] == "mmol m-3" and data.units["U"] == "m s-1"
        columns = list(data.columns.values())
        rows += [tuple(None if math.isnan(c[i]) else float(c[i]) for c in columns) for i in range(data.time.size)]
    intact = sim.served_values(intact_only=True)
    start = intact.index(rows[0])
    assert rows == intact[start:start + len(rows)]
