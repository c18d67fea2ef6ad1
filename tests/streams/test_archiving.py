"""StreamArchive footers: every bad record a sensor drops is counted in exactly one file's footer."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from drivers.csat3b.driver import CSAT3BConfig, CSAT3BDriver
from gateway.clock import ClockMapper
from gateway.edge.streams import archiving
from gateway.edge.streams.archiving import StreamArchive
from gateway.rawarchive import columnar, read_archive

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


def test_a_disk_that_refuses_the_archive_stops_the_archive_not_the_stream(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The station's full disk (chaos run, `station-disk-full`): a refused write of the archive raised out of the
    stream's thread and ended it for good, summaries and all. Now the records go on, unarchived and counted, and a
    file is written again once the disk takes it."""
    refusing = True
    real_write = columnar.ChunkFile._write

    def write(self: columnar.ChunkFile, data: bytes) -> None:
        if refusing:
            raise OSError(errno.EFBIG, "File too large")
        real_write(self, data)

    monkeypatch.setattr(columnar.ChunkFile, "_write", write)
    now = [1000.0]
    closed: list[Path] = []
    config = CSAT3BConfig.model_validate({"name": "csat", "port": "tcp://127.0.0.1:1"})
    archive = StreamArchive(tmp_path, site="site1", station="st1", config=config, driver_class=CSAT3BDriver,
                            driver=CSAT3BDriver(config, station="st1"),
                            clock=ClockMapper(synced=lambda: True, monotonic=lambda: now[0]), on_closed=closed.append)
    row = (1.0, 2.0, 3.0, 300.0, 0.0)
    archive.write(HALF_HOUR + 1.0, row)  # the header is refused: no file
    archive.write_many([HALF_HOUR + 1.1, HALF_HOUR + 1.2], [row, row])  # within the retry interval: not tried
    assert archive.write_errors == 1 and archive.unarchived == 3
    assert list(tmp_path.iterdir()) == []  # no headless file left behind
    refusing = False
    now[0] += archiving.ARCHIVE_RETRY_S
    archive.write(HALF_HOUR + 2.0, row)
    archive.write(HALF_HOUR + 3.0, row)
    archive.close("stopped")
    data = read_archive(closed[0])
    assert data.footer is not None and data.footer["records"] == 2 and data.footer["unarchived_records"] == 3
    # the header says so too: a station killed before the file is closed leaves the count on disk
    assert data.header["unarchived_records"] == 3
    # a chunk refused in the middle of a file: the file is given up as .part, the records in it counted as lost
    archive.write(HALF_HOUR + 4.0, row)  # a new file, its header written
    refusing = True
    archive.write_many([HALF_HOUR + 5.0 + i / 10 for i in range(250)], [row] * 250)  # the chunk at 200: refused
    assert archive.write_errors == 2 and archive.unarchived == 251
    assert [p.name.endswith(".part") for p in tmp_path.iterdir() if p not in closed] == [True]
    # stopped before the retry found the disk writable again: a file without records keeps the count
    refusing = False
    archive.finish(HALF_HOUR + 31.0)
    data = read_archive(closed[-1])
    assert len(closed) == 2 and data.time.size == 0
    assert data.header["unarchived_records"] == 251 and data.footer is not None
    assert data.footer["unarchived_records"] == 251 and data.footer["records"] == 0
