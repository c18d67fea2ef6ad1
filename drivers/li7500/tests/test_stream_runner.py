"""The LI-7500 grammar inside the real stream runner (gateway/edge/streams/) against the simulator over TCP:
the start command is acknowledged, the (Ack ...) is counted as an instrument message
(not an error), and the raw archive holds exactly the
served values."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from drivers.li7500.driver import LI7500Config, LI7500Driver
from drivers.li7500.simulator import LI7500Simulator
from gateway.clock import ClockMapper
from gateway.edge.streams.runner import StreamRunner, StreamSettings
from gateway.model import Reading
from gateway.rawarchive import read_archive

pytestmark = pytest.mark.integration


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout_s} s"
        time.sleep(0.02)


def test_runner_configures_the_analyzer_and_archives_the_served_values(tmp_path: Path) -> None:
    readings: list[Reading] = []
    closed: list[Path] = []
    lock = threading.Lock()

    def sink(batch: list[Reading]) -> None:
        with lock:
            readings.extend(batch)

    with LI7500Simulator("tcp://127.0.0.1:0", frequency_hz=20, seed=5) as sim:
        config = LI7500Config.model_validate({
            "name": "irga", "port": sim.tcp_endpoint, "frequency_hz": 20, "labels": False,
            "outputs": ["DiagVal", "H2OD", "CO2D", "Pres", "Temp"],
        })
        runner = StreamRunner(LI7500Driver, config, station="st1", site="site1",
                              settings=StreamSettings(archive_dir=tmp_path / "raw", summary_interval_s=1),
                              sink=sink, clock=ClockMapper(synced=lambda: True), on_archive_closed=closed.append)
        runner.start()
        try:
            wait_for(lambda: runner.health.good >= 40, "40 good records")
        finally:
            runner.stop()
    assert runner.health.bad == {}  # no transmission errors
    assert runner.health.messages == 1  # the (Ack ...) to the start command, nothing else
    assert sim.outputs == ["DiagVal", "H2OD", "CO2D", "Pres", "Temp"] and not sim.labels
    rows = []
    for path in closed:
        data = read_archive(path)
        assert data.units["CO2"] == "mmol m-3" and data.units["T_CELL"] == "degC"
        columns = list(data.columns.values())
        rows += [tuple(None if math.isnan(c[i]) else float(c[i]) for c in columns) for i in range(data.time.size)]
    served = sim.served_values()
    start = served.index(rows[0])
    assert rows == served[start:start + len(rows)]
    # CO2SS was switched off by the start command; records the analyzer sent before it took the command (a
    # loaded machine can let a few through) still carry it, as a real analyzer's would.
    changed_at = sim.outputs_changed_at_record
    assert changed_at is not None
    after_command = [row for i, row in enumerate(rows) if start + i >= changed_at]
    assert len(after_command) >= 30
    assert all(row[5] is None for row in after_command)
    assert any(r.variable == "CO2" and r.value is not None for r in readings)
