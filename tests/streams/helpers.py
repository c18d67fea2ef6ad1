"""Shared pieces of the stream tests: a runner wired to in-memory sinks, and waiting without timing asserts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from gateway.clock import ClockMapper
from gateway.driver_api import StreamConfig, StreamDriver
from gateway.edge.streams.runner import StreamRunner, StreamSettings
from gateway.model import Reading


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout_s} s")
        time.sleep(0.02)


class RunnerHarness:
    """A StreamRunner in a thread, collecting summary readings and closed archive files."""

    def __init__(self, driver_class: type[StreamDriver], config: StreamConfig, archive_dir: Path, *,
                 summary_interval_s: float = 60.0, clock: ClockMapper | None = None) -> None:
        self.readings: list[Reading] = []
        self.closed: list[Path] = []
        self._lock = threading.Lock()
        self.runner = StreamRunner(
            driver_class, config, station="st1", site="site1",
            settings=StreamSettings(archive_dir=archive_dir, summary_interval_s=summary_interval_s),
            sink=self._sink, clock=clock or ClockMapper(synced=lambda: True),
            on_archive_closed=self.closed.append)

    def _sink(self, readings: list[Reading]) -> None:
        with self._lock:
            self.readings.extend(readings)

    def __enter__(self) -> RunnerHarness:
        self.runner.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.runner.stop()
