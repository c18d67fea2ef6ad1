"""One stream sensor's raw archive (docs/raw-archive.md): a file per half hour (`gateway.rawarchive`), rotated by
the records' UTC time and closed early at a clock step; its header says what was recorded and how it was stamped,
its footer how the file ended, the records dropped and the clock steps while it was open.

A disk that refuses a write (full, read-only, a file-size limit) stops the archive, never the stream: the open file
is given up (left as `.part` with its intact chunks, as a kill leaves it), the error logged once, and the records
go on into the summaries but not into the archive until a new file can be written, tried again every
`ARCHIVE_RETRY_S`; the next file's footer counts the records that were not archived (`unarchived_records`)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.clock import ClockMapper, ClockStep
from gateway.driver_api import StreamConfig, StreamDriver
from gateway.model import TimeSource, format_time
from gateway.rawarchive import ArchiveWriter, file_period_start

log = logging.getLogger("sinkwatch.edge.streams")

# after a refused write, the archive is tried again this long after: a new file is cheap to try (an open and a failed
# write), and until one is written the count of records not archived lives only in memory: in a chaos run with the
# 10 s this was, kills and the final stop within 10 s of a full disk's end took the count of 856 records
ARCHIVE_RETRY_S = 1.0


class StreamArchive:
    """The archive files of one sensor; `on_closed` receives the path of every file closed intact. Used from the
    sensor's runner thread only."""

    def __init__(
        self,
        archive_dir: Path,
        *,
        site: str,
        station: str,
        config: StreamConfig,
        driver_class: type[StreamDriver],
        driver: StreamDriver,
        clock: ClockMapper,
        on_closed: Callable[[Path], None],
    ) -> None:
        self.archive_dir = archive_dir
        self.site = site
        self.station = station
        self.config = config
        self.driver_class = driver_class
        self.driver = driver
        self.clock = clock
        self.on_closed = on_closed
        self._writer: ArchiveWriter | None = None
        self._bad: Counter[str] = Counter()
        self._steps: list[ClockStep] = []
        self._refused_at: float | None = None  # monotonic: when the disk last refused a write (None: writable)
        self.unarchived = 0  # records not archived since the last file that could be written
        self.write_errors = 0

    def write(self, utc: float, values: tuple[float | None, ...]) -> None:
        """One record; a record outside the open file's half hour closes it and opens the right one."""
        if self._refusing():
            self.unarchived += 1
            return
        try:
            writer = self._writer
            if writer is None or not writer.period_start <= utc < writer.period_end:
                self.close("rotation")
                writer = self._open(utc)
            writer.write(utc, values)
        except OSError as exc:
            if self._writer is None:
                self.unarchived += 1  # no file could be opened for it
            self._refused(exc)

    def write_many(self, utcs: list[float], rows: list[tuple[float | None, ...]]) -> None:
        """`write` for each record in order; records that all fall in the open file's half hour go to it at once."""
        if self._refusing():
            self.unarchived += len(rows)
            return
        writer = self._writer
        if writer is not None and writer.period_start <= min(utcs) and max(utcs) < writer.period_end:
            try:
                writer.write_many(utcs, rows)
            except OSError as exc:
                self._refused(exc)
            return
        for utc, values in zip(utcs, rows, strict=True):
            self.write(utc, values)

    def _refusing(self) -> bool:
        """The disk refused a write less than `ARCHIVE_RETRY_S` ago: the record is not archived."""
        return self._refused_at is not None and self.clock.monotonic() - self._refused_at < ARCHIVE_RETRY_S

    def _refused(self, exc: OSError) -> None:
        self.write_errors += 1
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.abandon()
            self.unarchived += writer.records - writer.written
        if self._refused_at is None:
            log.error("sensor %s: cannot write the raw archive in %s: %s (check free disk space and permissions); "
                      "its records go on into the summaries, not into the archive, until a file can be written "
                      "(tried every %g s)", self.config.name, self.archive_dir, exc, ARCHIVE_RETRY_S)
        self._refused_at = self.clock.monotonic()

    def count_bad(self, reason: str) -> None:
        self._bad[reason] += 1

    def clock_step(self, step: ClockStep) -> None:
        """The wall clock stepped: the open file ends here, so no file mixes stamps from both sides of a step."""
        self._steps.append(step)
        self.close("clock_step")

    def _metadata(self) -> dict[str, Any]:
        cfg = self.config
        instrument = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in ("name",)}
        state = self.clock.state
        return {
            "site": self.site,
            "station": self.station,
            "instrument": {"driver": cfg.driver, "model": self.driver_class.__name__.removesuffix("Driver"),
                           **instrument},
            "frequency_hz": cfg.frequency_hz,
            "clock": {"time_source": TimeSource.GATEWAY.value,
                      "stamped": "instrument cadence anchored on arrival (never after the read), monotonic mapped to "
                                 "UTC",
                      "synced_at_open": state.synced, "epoch": state.epoch,
                      "step_threshold_s": self.clock.step_threshold_s},
            "created": format_time(datetime.now(UTC)),
            # records taken while the disk refused the archive since the previous file: in the header too, so that
            # the count survives a kill before this file is closed (the footer repeats it)
            "unarchived_records": self.unarchived,
        }

    def _open(self, utc: float) -> ArchiveWriter:
        writer = ArchiveWriter(self.archive_dir, self.config.name, file_period_start(utc),
                               [(c.name, c.unit) for c in self.driver_class.columns], self._metadata())
        self._writer = writer
        self._steps = []
        if self._refused_at is not None:
            log.info("sensor %s: the raw archive can be written again; %d records were not archived",
                     self.config.name, self.unarchived)
            self._refused_at = None
        return writer

    def finish(self, utc: float) -> None:
        """The daemon stops: the open file is closed. Records not archived since the last file (a disk that refused
        them) get a file without records whose header and footer count them, or the count would end with the
        process (UTC `utc`: now)."""
        if self._writer is None and self.unarchived:
            try:
                self._open(utc)
            except OSError as exc:
                log.error("sensor %s: %d records were not archived, and no file can say so: %s", self.config.name,
                          self.unarchived, exc)
                return
        self.close("stopped")

    def close(self, why: str) -> None:
        writer = self._writer
        if writer is None:
            return
        self._writer = None
        footer = {
            "closed": why,
            "first_time": writer.first_time,
            "last_time": writer.last_time,
            "bad_records": dict(self._bad),
            "lost_records": getattr(self.driver, "lost_records", None),
            "clock_steps": [{"size_s": s.size_s, "after_utc": s.after_utc} for s in self._steps],
            "clock_synced_at_close": self.clock.state.synced,
            # records taken while the disk refused the archive, since the previous file (0 normally)
            "unarchived_records": self.unarchived,
        }
        # counted afresh from here: a bad record dropped while no file is open (before the first good record, or
        # between a close and the next record) goes into the next file's footer instead of none
        self._bad = Counter()
        try:
            path = writer.close(footer)
        except OSError as exc:
            log.error("sensor %s: cannot close archive file %s: %s", self.config.name, writer.part_path, exc)
            self.unarchived += writer.records - writer.written
            self._refused(exc)
            return
        self.unarchived = 0
        self.on_closed(path)
