"""A read's records handed to the summary and the archive together give what handing them over one by one gives:
the same summary readings to the last bit, the same archived rows and chunks, across summary intervals, half-hour
files, bad and NAN records and a clock stepped back over intervals already sent."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from drivers.csat3b import grammar
from drivers.csat3b.driver import CSAT3BConfig, CSAT3BDriver
from gateway.clock import ClockMapper
from gateway.driver_api import NOT_DATA, BadRecord
from gateway.edge.streams.runner import StreamRunner, StreamSettings
from gateway.model import Reading
from gateway.rawarchive import columnar

T0 = 1_764_064_800.0 + 1800 - 7.3  # a few seconds before a half hour: the archive rotates during the run


class FakeClocks:
    def __init__(self) -> None:
        self.mono = 100.0
        self.real = T0

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.real += seconds


def make_runner(tmp: Path, fake: FakeClocks, sink: list[Reading], closed: list[Path]) -> StreamRunner:
    clock = ClockMapper(monotonic=lambda: fake.mono, realtime=lambda: fake.real, synced=lambda: True,
                        step_threshold_s=0.05, resync_interval_s=0.5)
    return StreamRunner(CSAT3BDriver, CSAT3BConfig(name="csat", port="tcp://127.0.0.1:9", frequency_hz=20),
                        station="st1", site="site1",
                        settings=StreamSettings(archive_dir=tmp, summary_interval_s=1.0), sink=sink.extend,
                        clock=clock, on_archive_closed=closed.append)


def handle_one_by_one(runner: StreamRunner, frames: list[bytes], mono: float) -> None:
    """The read's handling as it was, a record at a time through `_record`."""
    records: list[tuple[float | None, ...] | None] = []
    for frame in frames:
        runner.health.frames += 1
        try:
            records.append(runner.driver.parse(frame))
        except BadRecord as exc:
            assert exc.reason != NOT_DATA
            runner._count_bad(exc.reason, exc.message)
            records.append(None)
    utc = 0.0
    for values, stamp in zip(records, runner._stamper.stamps(len(records), mono), strict=True):
        if values is None:
            continue
        runner.health.good += 1
        utc = runner.clock.to_utc(stamp)
        runner._record(values, utc, stamp)
    if utc:
        runner.health.last_frame_utc = utc


def chunks(path: Path) -> list[bytes]:
    """The file's chunk blocks (its header block carries the time the file was made, so it is left out)."""
    data = path.read_bytes()
    return [bytes(block) for block in columnar.Blocks(data, str(path)).chunks]


def test_a_read_handed_over_at_once_matches_one_record_at_a_time(tmp_path: Path) -> None:
    rng = random.Random(7)
    runs: list[dict[str, Any]] = []
    for name, handle in (("burst", StreamRunner._handle), ("single", handle_one_by_one)):
        fake = FakeClocks()
        sink: list[Reading] = []
        closed: list[Path] = []
        runner = make_runner(tmp_path / name, fake, sink, closed)
        rng.seed(7)
        counter = 0
        for read in range(40):
            frames = []
            for _ in range(rng.choice((19, 20, 20, 21))):
                missing = rng.random() < 0.05
                ux, uy, uz = (None, None, None) if missing else (round(rng.uniform(-5, 5), 5) for _ in range(3))
                ts = None if missing else round(rng.uniform(10, 30), 4)
                frame = grammar.build_record(ux, uy, uz, ts, 8 if missing else 0, counter,
                                             bad_signature=rng.random() < 0.03)
                frames.append(frame.rstrip(b"\r"))
                counter += 1
            fake.advance(1.0)
            if read == 25:
                fake.real -= 2.5  # the clock steps back over intervals already sent
            handle(runner, frames, fake.mono)
            runner._housekeeping(fake.mono)
        runner._close_summary(fake.mono, final=True)
        runner._archive.close("stopped")
        runs.append({"readings": [r.model_dump() for r in sink], "good": runner.health.good,
                     "bad": dict(runner.health.bad), "last": runner.health.last_frame_utc,
                     "files": [chunks(p) for p in closed], "steps": runner.health.clock_steps})
    burst, single = runs
    assert burst["steps"] == 1 and len(burst["files"]) >= 3  # a rotation and a close at the step, then the end
    assert any("already sent" in (r["qc_reason"] or "") for r in burst["readings"])
    assert burst == single
