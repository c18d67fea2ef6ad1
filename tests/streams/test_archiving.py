"""StreamArchive footers: every bad record a sensor drops is counted in exactly one file's footer."""

from __future__ import annotations

from pathlib import Path

from drivers.csat3b.driver import CSAT3BConfig, CSAT3BDriver
from gateway.clock import ClockMapper
from gateway.edge.streams.archiving import StreamArchive
from gateway.rawarchive import read_archive

HALF_HOUR = 1_800_000_000.0  # a file-period start (a multiple of 1800 s)


def make_archive(tmp_path: Path, closed: list[Path]) -> StreamArchive:
    config = CSAT3BConfig.model_validate({"name": "csat", "port": "tcp://127.0.0.1:1"})
    return StreamArchive(tmp_path, site="site1", station="st1", config=config, driver_class=CSAT3BDriver,
                         driver=CSAT3BDriver(config, station="st1"), clock=ClockMapper(synced=lambda: True),
                         on_closed=closed.append)


def test_bad_records_before_the_first_file_and_between_files_are_in_the_next_footer(tmp_path: Path) -> None:
    closed: list[Path] = []
    archive = make_archive(tmp_path, closed)
    row = (1.0, 2.0, 3.0, 300.0, 0.0)  # U, V, W, T_SONIC, DIAG_SONIC
    archive.count_bad("checksum")  # before any good record: no file is open yet
    archive.count_bad("checksum")
    archive.write(HALF_HOUR + 1.0, row)
    archive.count_bad("format")
    archive.write(HALF_HOUR + 1800.5, row)  # the next half hour: the first file closes
    archive.count_bad("checksum")
    archive.close("stopped")
    archive.count_bad("checksum")  # after the last close: kept for a file that may follow
    footers = [read_archive(path).footer for path in closed]
    assert [f["bad_records"] for f in footers if f is not None] == [{"checksum": 2, "format": 1}, {"checksum": 1}]
