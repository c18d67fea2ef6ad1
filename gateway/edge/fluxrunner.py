"""Eddy-covariance fluxes on the station: each averaging period of the sonic's and the analyzer's raw archive
becomes one `FluxRecord` on `sinkwatch/v1/<site>/<station>/fluxes` (docs/flux-ec.md, "On the station").

    flux-runner thread (one per station, never touches a stream's transport):
      every second: is a period [start, end) due?  (now >= end + settle, settle = one archive flush + 2 s)
        -> read the sonic's and the analyzer's archive files of that half hour (closed, or the open `.part`,
           which the writer flushes every 200 records or 5 s)                          gateway/flux/rawperiods.py
        -> both reach past `end`? else wait and look again, up to `flux.max_wait_s` after `end`
        -> build_period (one grid) -> process_period (engine)                   gateway/flux/ec/
        -> FluxRecord into the outbox table `flux_outbox` of the station's buffer file (committed, fsync'd)
      -> the station's one delivery path (gateway/edge/delivery.py): the row deleted only on the central
         service's receipt

Periods: aligned to the epoch, `averaging_min` long (a divisor of the archive's 30-min file, so a period never
spans two files of one sensor except at the grid's one-record margin). The first period is the first one that
starts after the daemon first started with this outbox (remembered at once, so a restart before that period was
computed does not skip it); after a restart the runner resumes after the last period it stored (at most
`CATCH_UP_S` back), so periods missed while it was down are computed from the archive when it returns — those
without a single sonic record (the station was off) are counted `no_raw_data` and not sent, as periods without
raw data in `sinkwatch flux recompute`. Every period of the running daemon is sent, a failed one (too few records, an
instrument silent, an engine error) with status `failed` and its reasons.

Threading: the engine runs in the flux-runner thread; stream runners only write the archive and never wait for it.
The outbox is one channel of the station's `Delivery`, which reads it from its own thread.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from pydantic import ValidationError

from gateway.configfile import ConfigError, describe_validation_error
from gateway.contract import Channel, FluxRecord, encode_flux_record, fluxes_topic
from gateway.driver_api import StreamConfig, is_stream_driver
from gateway.edge.config import FluxConfig, StationConfig
from gateway.edge.delivery import OutboxItem
from gateway.flux.ec.engine import PlanarFitSetup, check_configuration, fit_planar_fit, process_period
from gateway.flux.ec.result import ENGINE_NAME, ENGINE_VERSION
from gateway.flux.ec.settings import ProcessingSettings, Rotation, SiteMetadata, TimeLag
from gateway.flux.rawperiods import (
    ArchiveReader,
    SensorData,
    build_period,
    half_hours,
    is_analyzer,
    is_sonic,
    margin_for,
)
from gateway.rawarchive.archive import (
    CSV_FORMAT_VERSION,
    FLUSH_AFTER_S,
    FLUSH_EVERY,
    PERIOD_S,
    SUFFIXES,
    ArchiveData,
    read_archive,
)

log = logging.getLogger("sinkwatch.edge.flux")

# ArchiveWriter's default chunk limits: an open file is readable up to its last chunk
ARCHIVE_FLUSH_RECORDS = FLUSH_EVERY
ARCHIVE_FLUSH_S = FLUSH_AFTER_S
CATCH_UP_S = 2 * 86400  # after a restart, periods at most this far back are computed from the archive
RETRY_S = 5.0  # a period whose records have not all reached the archive is looked at again after this
PLANAR_FIT_HISTORY_S = 14 * 86400  # a planar fit without a file is fitted over the last two weeks' periods


# --- configuration ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FluxSetup:
    """The `flux:` section resolved against the station's sensors and the engine (all checks done)."""

    sonic: str
    analyzer: str | None  # None: no gases; == sonic: an IRGASON
    metadata: SiteMetadata
    settings: ProcessingSettings
    period_s: int
    publish: bool = True
    max_wait_s: float = 60.0
    planar_fit: PlanarFitSetup | None = None
    spectral_assessment: Any = None

    @property
    def settings_hash(self) -> str:
        return self.settings.settings_hash(self.metadata)

    @property
    def settle_s(self) -> float:
        """Wait after a period's end before reading it: one archive chunk of the instrument, plus 2 s."""
        chunk_s = min(ARCHIVE_FLUSH_RECORDS / self.metadata.acquisition_frequency, ARCHIVE_FLUSH_S)
        return min(self.max_wait_s, chunk_s + 2.0)


def _invalid(source: Path | str, key: str, message: str) -> ConfigError:
    return ConfigError(f"{source}: invalid configuration\n  flux.{key}: {message}")


def instrument_header(site: str, station: str, driver_class: type[Any], config: StreamConfig) -> dict[str, Any]:
    """What the stream runner writes into an archive header (docs/raw-archive.md), known from the config alone."""
    instrument = {k: v for k, v in config.model_dump(mode="json").items() if k != "name"}
    return {"site": site, "station": station, "frequency_hz": config.frequency_hz,
            "columns": [{"name": c.name, "unit": c.unit} for c in driver_class.columns],
            "instrument": {"driver": config.driver, "model": driver_class.__name__.removesuffix("Driver"),
                           **instrument}}


def resolve_flux_setup(config: StationConfig, source: Path | str = "<config>") -> FluxSetup:
    """Check the `flux:` section against the sensors, metadata and settings; ConfigError naming the key."""
    from gateway.flux.files import load_method_files, load_settings
    from gateway.flux.metadata import MetadataError, load_site_metadata, site_metadata_from_headers

    flux = config.flux
    assert flux is not None
    base_dir = Path(source).parent if config.source is not None else Path.cwd()
    streams = {cfg.name: (cls, cast(StreamConfig, cfg)) for cls, cfg in config.sensors if is_stream_driver(cls)}
    others = [cfg.name for _, cfg in config.sensors if cfg.name not in streams]

    def stream(key: str, name: str) -> tuple[type[Any], StreamConfig]:
        if name not in streams:
            what = "is not a streaming instrument" if name in others else "is not in sensors"
            raise _invalid(source, key, f"{name!r} {what}; streaming sensors: {', '.join(streams) or 'none'}")
        return streams[name]

    sonic_cls, sonic_cfg = stream("sonic", flux.sonic)
    sonic_units = {c.name: c.unit for c in sonic_cls.columns}
    if not is_sonic(sonic_units):
        raise _invalid(source, "sonic", f"{flux.sonic!r} ({sonic_cfg.driver}) has no U, V, W, T_SONIC columns: "
                                        "not a sonic anemometer")
    analyzer = flux.analyzer
    analyzer_header = None
    if analyzer is None and is_analyzer(sonic_units):
        analyzer = flux.sonic  # IRGASON-style: one sensor, wind and gases
    if analyzer is not None:
        gas_cls, gas_cfg = stream("analyzer", analyzer)
        if not is_analyzer({c.name: c.unit for c in gas_cls.columns}):
            raise _invalid(source, "analyzer", f"{analyzer!r} ({gas_cfg.driver}) has no CO2/H2O columns")
        if gas_cfg.frequency_hz != sonic_cfg.frequency_hz:
            raise _invalid(source, "analyzer", f"{analyzer!r} runs at {gas_cfg.frequency_hz:g} Hz, the sonic at "
                                               f"{sonic_cfg.frequency_hz:g} Hz; set both frequency_hz alike (the "
                                               "records share one grid)")
        analyzer_header = instrument_header(config.site, config.station, gas_cls, gas_cfg)
    sonic_header = instrument_header(config.site, config.station, sonic_cls, sonic_cfg)

    settings_path: Path | None = None
    if isinstance(flux.settings, Path):
        settings_path = flux.settings if flux.settings.is_absolute() else base_dir / flux.settings
        settings = load_settings(settings_path)
    else:
        try:
            settings = ProcessingSettings.model_validate(flux.settings or {})
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(source, exc, "flux.settings")) from None
    if flux.averaging_min is not None:
        if "avrg_len" in settings.model_fields_set and settings.avrg_len != flux.averaging_min:
            raise _invalid(source, "averaging_min", f"{flux.averaging_min:g} min, but the settings say avrg_len "
                                                    f"{settings.avrg_len:g}; give it in one place")
        settings = settings.model_copy(update={"avrg_len": flux.averaging_min})
    period_s = settings.avrg_len * 60.0
    if abs(period_s - round(period_s)) > 1e-6 or period_s < 30 or PERIOD_S % round(period_s):
        raise _invalid(source, "settings", f"avrg_len {settings.avrg_len:g} min does not divide the 30-min archive "
                                           "file; use e.g. 1, 5, 10, 15 or 30")

    if isinstance(flux.metadata, Path):
        path = flux.metadata if flux.metadata.is_absolute() else base_dir / flux.metadata
        facts = load_site_metadata(path)
    else:
        facts = dict(flux.metadata)
    try:
        metadata = site_metadata_from_headers(facts, sonic_header, analyzer_header)
    except MetadataError as exc:
        message = str(exc).replace("--metadata", "flux.metadata").replace("archive headers", "sensor configs")
        raise _invalid(source, "metadata", message) from None
    try:
        check_configuration(metadata, settings)
    except ValueError as exc:
        raise _invalid(source, "settings", str(exc)) from None
    if settings.tlag_meth == TimeLag.AUTOMATIC:
        raise _invalid(source, "settings", "tlag_meth automatic_optimization needs many periods before the first; "
                                           "run sinkwatch flux ec over a past month and give the optimised window "
                                           "with covariance_maximization_with_default")
    planar_fit, assessment = load_method_files(settings, settings_path or base_dir / "station.yaml", None)
    return FluxSetup(sonic=flux.sonic, analyzer=analyzer, metadata=metadata, settings=settings,
                     period_s=round(period_s), publish=flux.publish, max_wait_s=flux.max_wait_s,
                     planar_fit=planar_fit, spectral_assessment=assessment)


# --- the station's archive ----------------------------------------------------------------------------------------


def archive_files(archive_dir: Path, sensor: str, half_hour: datetime) -> list[Path]:
    """The sensor's files of one half hour, closed (`….swr`, `_1`, …, or format 1 `….csv.gz`) and open
    (`….swr.part`), by name."""
    stem = f"{sensor}_{half_hour.strftime('%Y%m%dT%H%M')}Z"
    suffixes = "|".join(re.escape(s) for s in SUFFIXES)
    pattern = re.compile(rf"^{re.escape(stem)}(?:_\d+)?(?:{suffixes})(?:\.part)?$")
    try:
        return sorted(p for p in archive_dir.glob(f"{stem}*") if pattern.match(p.name))
    except OSError:
        return []


class LiveArchiveReader(ArchiveReader):
    """`ArchiveReader` that also reads the file a stream runner is still writing: an open `.part` is read afresh
    each time (never cached), its possibly torn last line dropped (format 1), and — when this daemon opened it (header
    `created` after `started`) — it counts as complete, not as a power-cut leftover. A `.part` renamed while we
    looked is read under its closed name."""

    def __init__(self, started: float, cache_size: int = 6) -> None:
        super().__init__(cache_size)
        self.started = started
        self._open: dict[Path, tuple[tuple[int, int], ArchiveData]] = {}  # .part -> (size, mtime), last read

    def read(self, path: Path) -> ArchiveData:
        if not path.name.endswith(".part"):
            return super().read(path)
        try:
            stat = os.stat(path)
            seen = self._open.get(path)
            if seen is not None and seen[0] == (stat.st_size, stat.st_mtime_ns):
                return seen[1]  # unchanged since the last look
            data = read_archive(path)
        except FileNotFoundError:
            self._open.pop(path, None)
            return super().read(path.with_name(path.name.removesuffix(".part")))
        created = data.header.get("created")
        live = isinstance(created, str) and _timestamp(created) >= self.started - 1.0
        if live and not data.complete:
            # format 1 may end in a torn text line; format 2 holds whole chunks only
            keep = max(0, data.time.size - 1) if data.header.get("version") == CSV_FORMAT_VERSION else data.time.size
            data = ArchiveData(header=data.header, time=data.time[:keep],
                               columns={k: v[:keep] for k, v in data.columns.items()}, footer=data.footer,
                               complete=True, units=data.units)
        self._open = {p: v for p, v in self._open.items() if p.exists()}
        self._open[path] = ((stat.st_size, stat.st_mtime_ns), data)
        return data

    def coverage(self, paths: list[Path]) -> tuple[float | None, bool]:
        """(time of the last record in `paths`, whether every one of them is closed)."""
        last: float | None = None
        for path in paths:
            try:
                data = self.read(path)
            except (OSError, ValueError):
                continue
            if data.time.size:
                last = max(last or -math.inf, float(data.time[-1]))
        return last, bool(paths) and not any(p.name.endswith(".part") for p in paths)


def _timestamp(text: str) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return -math.inf


# --- durable outbox -----------------------------------------------------------------------------------------------

_OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS flux_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    period_end TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS flux_state (key TEXT PRIMARY KEY, value REAL NOT NULL);
CREATE TABLE IF NOT EXISTS flux_mean_wind (period_end REAL PRIMARY KEY, u REAL NOT NULL, v REAL NOT NULL,
                                           w REAL NOT NULL);
"""


class FluxOutbox:
    """The fluxes channel's outbox (an `OutboxSource` of gateway/edge/delivery.py): flux records waiting for the
    central service's receipt, in a table of the station's buffer file (own connection; SQLite WAL,
    synchronous=FULL). The row id is the record's `seq` (AUTOINCREMENT: never reused). `add` also stores the
    period end, so a restart resumes after it."""

    channel: Channel = "fluxes"
    unit = "records"

    def __init__(self, path: Path | str, site: str = "", station: str = "") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.topic = fluxes_topic(site, station)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_OUTBOX_SCHEMA)
        # counted once, then kept by every commit (this connection is the table's only writer)
        self._pending = int(self._db.execute("SELECT COUNT(*) FROM flux_outbox").fetchone()[0])

    def add(self, record: FluxRecord | None, period_end: float) -> None:
        """Queue a record (None: only remember that the period is done) in one transaction."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if record is not None:
                    self._db.execute("INSERT INTO flux_outbox(period_end, body) VALUES (?, ?)",
                                     (record.model_dump(mode="json")["end"], encode_flux_record(record).decode()))
                self._db.execute("INSERT OR REPLACE INTO flux_state(key, value) VALUES ('last_period_end', ?)",
                                 (period_end,))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            if record is not None:
                self._pending += 1

    def add_mean_wind(self, period_end: float, u: float, v: float, w: float) -> None:
        """Remember a period's sonic-frame mean wind (m s-1) for the station's own planar fit."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO flux_mean_wind(period_end, u, v, w) VALUES (?, ?, ?, ?)",
                             (period_end, u, v, w))
            self._db.execute("DELETE FROM flux_mean_wind WHERE period_end < ?", (period_end - PLANAR_FIT_HISTORY_S,))

    def mean_winds(self, after: float, until: float) -> list[tuple[float, float, float]]:
        """The mean winds of the periods ending in (after, until]."""
        with self._lock:
            rows = self._db.execute("SELECT u, v, w FROM flux_mean_wind WHERE period_end > ? AND period_end <= ? "
                                    "ORDER BY period_end", (after, until)).fetchall()
        return [(float(u), float(v), float(w)) for u, v, w in rows]

    def last_period_end(self) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM flux_state WHERE key='last_period_end'").fetchone()
        return float(row[0]) if row else None

    @staticmethod
    def _payload(seq: int, body: str) -> bytes:
        return encode_flux_record(FluxRecord.model_validate_json(body).model_copy(update={"seq": seq}))

    def claim(self, limit: int, exclude: set[int]) -> list[OutboxItem]:
        with self._lock:
            rows = self._db.execute("SELECT id, body FROM flux_outbox ORDER BY id LIMIT ?",
                                    (limit + len(exclude),)).fetchall()
        return [OutboxItem(int(i), self._payload(int(i), body)) for i, body in rows if i not in exclude][:limit]

    def reload(self, seq: int) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM flux_outbox WHERE id=?", (seq,)).fetchone()
        return self._payload(seq, row[0]) if row else None

    def confirm(self, ranges: Sequence[tuple[int, int]]) -> tuple[int, int]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            deleted = sum(self._db.execute("DELETE FROM flux_outbox WHERE id BETWEEN ? AND ?", r).rowcount
                          for r in ranges)
            self._db.execute("COMMIT")
            self._pending -= deleted
        return deleted, deleted

    def pending(self) -> int:
        """Records waiting for their receipt, kept in memory: COUNT(*) of `flux_outbox`."""
        return self._pending

    def oldest_time(self) -> float | None:
        if self._pending == 0:  # the common case at a station that keeps up: no query
            return None
        with self._lock:
            row = self._db.execute("SELECT period_end FROM flux_outbox ORDER BY id LIMIT 1").fetchone()
        return _timestamp(str(row[0])) if row else None

    def count(self) -> int:
        return self.pending()

    def close(self) -> None:
        with self._lock:
            self._db.close()


# --- the runner ---------------------------------------------------------------------------------------------------


@dataclass
class FluxHealth:
    sonic: str
    analyzer: str | None
    averaging_s: int
    periods: Counter[str] = field(default_factory=Counter)  # ok, partial, failed, no_raw_data
    engine_errors: int = 0
    last_period_end: str | None = None
    last_status: str | None = None
    last_reasons: list[str] = field(default_factory=list)
    waiting_for: list[str] = field(default_factory=list)


class FluxRunner:
    """Closes averaging periods over the station's raw archive and queues their flux records (module doc).

    `step(now)` does one round (tests call it with their own clock); `run(stop)` calls it every second in the
    `flux-runner` thread and drains the outbox to the broker."""

    def __init__(self, setup: FluxSetup, site: str, station: str, archive_dir: Path, outbox: FluxOutbox, *,
                 notify: Callable[[], None] | None = None, started: float | None = None,
                 on_record: Callable[[FluxRecord], None] | None = None) -> None:
        self.setup = setup
        self.site = site
        self.station = station
        self.archive_dir = archive_dir
        self.outbox = outbox
        self.notify = notify  # wakes the delivery path when a record is queued
        self.on_record = on_record
        self.started = time.time() if started is None else started
        self.reader = LiveArchiveReader(self.started)
        self.health_state = FluxHealth(setup.sonic, setup.analyzer, setup.period_s)
        p = setup.period_s
        last = outbox.last_period_end()
        if last is not None:
            self.next_end = max(last + p, math.ceil((self.started - CATCH_UP_S) / p) * p)
        else:
            self.next_end = math.ceil(self.started / p) * p + p  # the first period starting after the start
            # remembered at once: a daemon restarted before it computed that period (a kill, a crash in its first
            # minutes) resumes there instead of at a period after its own start, which skipped the first periods
            outbox.add(None, self.next_end - p)
        self._retry_at = 0.0
        self._state_key: tuple[str, str] | None = None

    @classmethod
    def from_config(cls, config: StationConfig, archive_dir: Path) -> FluxRunner:
        setup = config.flux_setup or resolve_flux_setup(config, config.source or "<config>")
        outbox = FluxOutbox(config.buffer.path, config.site, config.station)
        return cls(setup, config.site, config.station, archive_dir, outbox)

    def health(self) -> dict[str, object]:
        h = self.health_state
        return {
            "sonic": h.sonic, "analyzer": h.analyzer, "averaging_s": h.averaging_s,
            "periods": dict(h.periods), "engine_errors": h.engine_errors,
            "last_period_end": h.last_period_end, "last_status": h.last_status, "last_reasons": h.last_reasons,
            "waiting_for": h.waiting_for,
            "next_period_end": datetime.fromtimestamp(self.next_end, UTC).isoformat().replace("+00:00", "Z"),
            "outbox": self.outbox.count(),  # delivery counts: health()["delivery"]["channels"]["fluxes"]
        }

    def step(self, now: float) -> list[FluxRecord]:
        """Process every period that is due at `now` (unix s); returns the records queued."""
        queued: list[FluxRecord] = []
        while now >= self.next_end + self.setup.settle_s and now >= self._retry_at:
            end = self.next_end
            outcome = self._period(end, now)
            if outcome is None:
                self._retry_at = now + RETRY_S
                break
            record = outcome if isinstance(outcome, FluxRecord) else None
            self.outbox.add(record if self.setup.publish else None, end)
            self.next_end = end + self.setup.period_s
            if record is not None:
                queued.append(record)
                if self.on_record is not None:
                    self.on_record(record)
        if queued and self.notify is not None:
            self.notify()
        return queued

    def _period(self, end_ts: float, now: float) -> FluxRecord | str | None:
        """The record of the period ending at `end_ts`; "skipped" (no raw data while the daemon was down); None:
        not all records are in the archive yet."""
        setup = self.setup
        start_ts = end_ts - setup.period_s
        start, end = datetime.fromtimestamp(start_ts, UTC), datetime.fromtimestamp(end_ts, UTC)
        fs = setup.metadata.acquisition_frequency
        margin = margin_for(fs)
        hours = half_hours(start, end)
        sonic_paths = [p for h in hours for p in archive_files(self.archive_dir, setup.sonic, h)]
        gas_paths = ([p for h in hours for p in archive_files(self.archive_dir, setup.analyzer, h)]
                     if setup.analyzer not in (None, setup.sonic) else [])
        try:
            sonic = self.reader.sensor_data("sonic", sonic_paths, start_ts, end_ts, margin)
            gas: SensorData | None = None
            if setup.analyzer == setup.sonic:
                gas = sonic
            elif setup.analyzer is not None:
                gas = self.reader.sensor_data("analyzer", gas_paths, start_ts, end_ts, margin)
        except Exception as exc:  # an unreadable archive must not stop the runner
            log.exception("flux: reading the archive for the period ending %s failed", end.isoformat())
            return self._failed(start, end, [f"reading the raw archive failed: {type(exc).__name__}: {exc}"])
        if end_ts <= self.started and not ((sonic.time >= start_ts) & (sonic.time < end_ts)).any():
            self.health_state.periods["no_raw_data"] += 1  # before this start and nothing recorded: station off
            return "skipped"
        expected: list[tuple[str, str, SensorData | None, list[Path]]] = [("sonic", setup.sonic, sonic, sonic_paths)]
        if setup.analyzer is not None and setup.analyzer != setup.sonic:
            expected.append(("analyzer", setup.analyzer, gas, gas_paths))
        waiting: list[str] = []
        for label, name, data, paths in expected:
            last, closed = self.reader.coverage(paths)
            if closed or (last is not None and last >= end_ts + margin):
                continue  # every record of the period is on disk
            waiting.append(name)
            if now >= end_ts + setup.max_wait_s and data is not None:
                if not paths:
                    data.issues.append(f"{label}: no raw archive files of {name} for this period (instrument "
                                       "silent or disconnected?)")
                else:
                    until = datetime.fromtimestamp(last, UTC).strftime("%H:%M:%S") if last is not None else "-"
                    data.issues.append(f"{label}: the archive of {name} ended at {until}, before the period's "
                                       f"end, when it was computed {setup.max_wait_s:g} s after that end")
        self.health_state.waiting_for = waiting
        if waiting and now < end_ts + setup.max_wait_s:
            return None
        try:
            period = build_period(setup.metadata, start, end, sonic, gas, filter_diag=setup.settings.filter_diag,
                                  source=", ".join(p.name for p in sonic_paths + gas_paths))
            settings, planar_fit, notes = self._rotation(end_ts)
            period.issues.extend(notes)
            result = process_period(period, settings, planar_fit=planar_fit,
                                    spectral_assessment=setup.spectral_assessment)
            means = [result.get(k) for k in ("U_UNROT", "V_UNROT", "W_UNROT")]
            if result.status != "failed" and all(math.isfinite(x) for x in means):
                self.outbox.add_mean_wind(end_ts, *means)
            record = FluxRecord.from_result(result, site=self.site, station=self.station)
        except Exception as exc:  # an engine bug is one failed period, not a dead runner
            self.health_state.engine_errors += 1
            log.exception("flux: the engine failed on the period ending %s", end.isoformat())
            return self._failed(start, end, [f"engine error: {type(exc).__name__}: {exc}"])
        self._account(record)
        return record

    def _rotation(self, end_ts: float) -> tuple[ProcessingSettings, PlanarFitSetup | None, list[str]]:
        """Settings, planar-fit sectors and notes for a period: a planar fit without a file is fitted over the mean
        winds of the last two weeks' periods (`fit_planar_fit`); until enough periods qualify the period is rotated
        by double rotation, and says so (its settings hash is that of double rotation)."""
        st = self.setup.settings
        if self.setup.planar_fit is not None or st.rot_meth not in (Rotation.PLANAR_FIT, Rotation.PLANAR_FIT_NO_BIAS):
            return st, self.setup.planar_fit, []
        try:
            fitted, notes = fit_planar_fit(self.outbox.mean_winds(end_ts - PLANAR_FIT_HISTORY_S, end_ts), st)
        except ValueError as exc:
            return st.model_copy(update={"rot_meth": Rotation.DOUBLE}), None, [
                f"{exc} for the station's own planar fit: double rotation used"]
        return st, fitted, notes

    def _failed(self, start: datetime, end: datetime, reasons: list[str]) -> FluxRecord:
        record = FluxRecord(site=self.site, station=self.station, start=start, end=end, status="failed",
                            reasons=[r[:500] for r in reasons], engine_version=f"{ENGINE_NAME} {ENGINE_VERSION}",
                            settings_hash=self.setup.settings_hash, values={})
        self._account(record)
        return record

    def _account(self, record: FluxRecord) -> None:
        h = self.health_state
        h.periods[record.status] += 1
        h.last_period_end = record.model_dump(mode="json")["end"]
        h.last_status = record.status
        h.last_reasons = list(record.reasons)
        key = (record.status, _gist(record.reasons[-1]) if record.status != "ok" and record.reasons else "")
        if key != self._state_key:
            if record.status == "ok":
                if self._state_key is not None:
                    log.info("flux: periods computed again (ok) from %s", h.last_period_end)
            else:
                log.warning("flux: period ending %s %s: %s", h.last_period_end, record.status,
                            "; ".join(record.reasons[-3:]) or "no reason given")
            self._state_key = key
        else:
            log.debug("flux: period ending %s %s", h.last_period_end, record.status)

    def run(self, stop: threading.Event) -> None:
        """Step every second until `stop`; the daemon closes the outbox after the delivery path stopped."""
        while not stop.is_set():
            try:
                self.step(time.time())
            except sqlite3.Error as exc:  # the disk refused the outbox: the period is tried again
                log.error("flux: cannot write the outbox in %s: %s", self.outbox.path, exc)
                self._retry_at = time.time() + RETRY_S
            stop.wait(1.0)


def _gist(reason: str) -> str:
    """A reason without its numbers, so the same cause in successive periods is one state."""
    return re.sub(r"[-+]?\d[\d.:]*", "N", reason)


__all__ = ["FluxConfig", "FluxOutbox", "FluxRunner", "FluxSetup", "LiveArchiveReader",
           "archive_files", "resolve_flux_setup"]
