"""Central recompute: fluxes of one station from its uplinked raw archive, written to the central store (the job
behind `sinkwatch flux recompute`).

    summary = recompute(RawArchive(config.data_dir / "raw"), store, "plot-07", start, end,
                        site_metadata=load_yaml(...), settings=ProcessingSettings(), progress=bar.update)

For each averaging period in [start, end] (aligned to the epoch): the sonic's and the analyzer's archive files of
the half hours it overlaps are read, put on one grid (`gateway.flux.rawperiods`), processed by
`gateway.flux.ec.engine.process_period`, and stored as `FluxRecord`s with the engine version and settings hash. A
period for which the archive holds no sonic file at all is not computed and not stored (counted as "no raw data");
every other period is stored, failed ones with their reasons, so the store says what was tried.

Provenance: every record is stored with the raw archive files it was computed from (sensor, name, SHA-256 of the
file) and its own digest (`Store.write_flux_inputs`, gateway/central/store/provenance.py).

Metadata: the archive headers give the acquisition frequency, the sonic's height (`height_m`) and north offset
(`north_offset_deg`), the analyzer's type (open path for LI-7500/IRGASON/EC150) and the gases' units; site facts
the station does not record come from `site_metadata` (`gateway.flux.metadata`).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.central.fanout import LocalRunner, Runner
from gateway.central.rawstore import RawArchive
from gateway.central.store import Store
from gateway.central.store.provenance import FluxInputs, InputFile, flux_record_digest
from gateway.contract import FluxRecord
from gateway.flux.ec.engine import PlanarFitSetup, process_period
from gateway.flux.ec.result import ENGINE_NAME, ENGINE_VERSION
from gateway.flux.ec.settings import ProcessingSettings, SiteMetadata
from gateway.flux.metadata import MetadataError, site_metadata_from_headers
from gateway.flux.rawperiods import (
    ArchiveReader,
    SensorData,
    build_period,
    half_hours,
    is_analyzer,
    is_sonic,
    margin_for,
    period_bounds,
)
from gateway.rawarchive.archive import read_archive

log = logging.getLogger(__name__)

WRITE_EVERY = 48  # periods per task and store write (one day of half hours)


class RecomputeError(ValueError):
    """The recompute cannot start (no such station, ambiguous sensors, unusable metadata); the message says why."""


@dataclass
class RecomputeSummary:
    site: str
    station: str
    sonic: str
    analyzer: str | None
    settings_hash: str = ""
    engine_version: str = f"{ENGINE_NAME} {ENGINE_VERSION}"
    periods: int = 0
    ok: int = 0
    partial: int = 0
    failed: int = 0
    no_raw_data: int = 0
    stored: int = 0
    failure_reasons: Counter[str] = field(default_factory=Counter)

    @property
    def processed(self) -> int:
        return self.ok + self.partial + self.failed


@dataclass(frozen=True)
class StationSensors:
    site: str
    station: str
    sonic: str
    analyzer: str | None  # None: no gas analyzer; == sonic: one instrument (IRGASON)


def find_sensors(archive: RawArchive, station: str, *, site: str | None = None, sonic: str | None = None,
                 analyzer: str | None = None) -> StationSensors:
    """Which site the station's raw files are under and which sensors are its sonic and analyzer (by the
    columns in their newest file's header); explicit names win."""
    sites = [site] if site else archive.sites_of(station)
    if not sites or not archive.sensors(sites[0], station):
        raise RecomputeError(f"no raw archive files of station {station!r} under {archive.root}"
                             + (f" (site {site!r})" if site else ""))
    if len(sites) > 1:
        raise RecomputeError(f"station {station!r} has raw files under several sites ({', '.join(sites)}); "
                             "choose one with --site")
    found = sites[0]
    units: dict[str, dict[str, str]] = {}
    for sensor in archive.sensors(found, station):
        files = archive.files(found, station, sensor)
        if files:
            newest = files[max(files)][-1]
            try:
                header = read_archive(newest).header
            except (OSError, ValueError):
                continue
            units[sensor] = {c["name"]: c["unit"] for c in header.get("columns", [])}
    sonics = [s for s, u in units.items() if is_sonic(u)]
    analyzers = [s for s, u in units.items() if is_analyzer(u)]
    if sonic is None:
        if len(sonics) != 1:
            raise RecomputeError(f"station {station!r}: {'no' if not sonics else 'several'} sonic anemometers "
                                 f"in the raw archive ({', '.join(sonics) or 'sensors: ' + ', '.join(units)}); "
                                 "name one with --sonic")
        sonic = sonics[0]
    elif sonic not in units:
        raise RecomputeError(f"station {station!r} has no raw files of sensor {sonic!r} (has: {', '.join(units)})")
    if analyzer is None:
        if sonic in analyzers:
            analyzer = sonic
        elif len(analyzers) > 1:
            raise RecomputeError(f"station {station!r}: several gas analyzers ({', '.join(analyzers)}); name one "
                                 "with --analyzer")
        else:
            analyzer = analyzers[0] if analyzers else None
    elif analyzer not in units:
        raise RecomputeError(f"station {station!r} has no raw files of sensor {analyzer!r} (has: "
                             f"{', '.join(units)})")
    return StationSensors(found, station, sonic, analyzer)


@dataclass(frozen=True)
class Piece:
    """Consecutive averaging periods computed by one task (a day of half hours), with the raw files they read."""

    periods: tuple[tuple[datetime, datetime], ...]
    sonic_files: dict[datetime, list[Path]]
    gas_files: dict[datetime, list[Path]]


@dataclass
class PieceResult:
    records: list[FluxRecord]
    inputs: list[FluxInputs] = field(default_factory=list)  # provenance of each record, in the same order
    periods: int = 0
    ok: int = 0
    partial: int = 0
    failed: int = 0
    no_raw_data: int = 0
    settings_hash: str = ""
    engine_version: str = ""
    failure_reasons: Counter[str] = field(default_factory=Counter)


def compute_piece(piece: Piece, *, site: str, station: str, sonic: str, analyzer: str | None,
                  metadata: SiteMetadata, settings: ProcessingSettings, planar_fit: PlanarFitSetup | None,
                  spectral_assessment: Any) -> PieceResult:
    """The flux records of the periods of `piece` (no store: the caller writes them). Runs in the central process
    or on a Dask worker (gateway/central/fanout.py), the same function either way."""
    reader = ArchiveReader()
    result = PieceResult(records=[])
    fs = metadata.acquisition_frequency
    file_digests: dict[Path, str] = {}

    def input_files(sensor: str, paths: list[Path]) -> tuple[InputFile, ...]:
        for path in paths:
            if path not in file_digests:
                file_digests[path] = hashlib.sha256(path.read_bytes()).hexdigest()
        return tuple(InputFile(sensor, path.name, file_digests[path]) for path in paths)

    for period_start, period_end in piece.periods:
        result.periods += 1
        hours = half_hours(period_start, period_end)
        sonic_paths = [p for h in hours for p in piece.sonic_files.get(h, [])]
        if not sonic_paths:
            result.no_raw_data += 1
            continue
        gas_paths = [p for h in hours for p in piece.gas_files.get(h, [])]
        t0, t1, margin = period_start.timestamp(), period_end.timestamp(), margin_for(fs)
        sonic_data = reader.sensor_data("sonic", sonic_paths, t0, t1, margin)
        gas_data: SensorData | None = None
        if analyzer == sonic:
            gas_data = sonic_data
        elif analyzer is not None:
            gas_data = reader.sensor_data("analyzer", gas_paths, t0, t1, margin)
            if not gas_paths:
                gas_data.issues.append(f"analyzer: no raw files of {analyzer} for this period")
        period = build_period(metadata, period_start, period_end, sonic_data, gas_data,
                              filter_diag=settings.filter_diag,
                              source=", ".join(p.name for p in sonic_paths + gas_paths))
        flux = process_period(period, settings, planar_fit=planar_fit, spectral_assessment=spectral_assessment)
        result.settings_hash = flux.settings_hash
        result.engine_version = flux.engine_version
        if flux.status == "ok":
            result.ok += 1
        elif flux.status == "partial":
            result.partial += 1
        else:
            result.failed += 1
            result.failure_reasons.update(_short(r) for r in flux.reasons[-1:])
        record = FluxRecord.from_result(flux, site=site, station=station)
        result.records.append(record)
        files = input_files(sonic, sonic_paths)
        if analyzer not in (None, sonic):
            files += input_files(str(analyzer), gas_paths)
        result.inputs.append(FluxInputs(record.site, record.station, record.engine_version, record.settings_hash,
                                        record.end, flux_record_digest(record), files))
    return result


def recompute(
    archive: RawArchive,
    store: Store,
    station: str,
    start: datetime,
    end: datetime,
    *,
    site_metadata: Mapping[str, Any],
    settings: ProcessingSettings,
    site: str | None = None,
    sonic: str | None = None,
    analyzer: str | None = None,
    planar_fit: PlanarFitSetup | None = None,
    spectral_assessment: Any = None,
    progress: Callable[[int], None] | None = None,
    sensors: StationSensors | None = None,
    runner: Runner | None = None,
) -> RecomputeSummary:
    """Reprocess every period of `station` in [start, end] and store the results (module doc). The periods are
    computed a day at a time by `compute_piece`, through `runner` (gateway/central/fanout.py: this process by
    default, or a Dask cluster); each day's records are written here as it completes."""
    found = sensors or find_sensors(archive, station, site=site, sonic=sonic, analyzer=analyzer)
    summary = RecomputeSummary(found.site, station, found.sonic, found.analyzer)
    sonic_files = archive.files(found.site, station, found.sonic)
    gas_files = archive.files(found.site, station, found.analyzer) if found.analyzer else {}
    periods = period_bounds(start, end, settings.avrg_len)
    metadata = _metadata(periods, sonic_files, gas_files, found, site_metadata)
    pieces = [_piece(periods[i:i + WRITE_EVERY], sonic_files, gas_files) for i in range(0, len(periods), WRITE_EVERY)]
    if metadata is None:  # no period has a sonic file: nothing to compute
        summary.periods = summary.no_raw_data = len(periods)
        if progress is not None:
            progress(len(periods))
        return summary
    work = runner or LocalRunner()
    for result in work.run(compute_piece, pieces, site=found.site, station=station, sonic=found.sonic,
                           analyzer=found.analyzer, metadata=metadata, settings=settings, planar_fit=planar_fit,
                           spectral_assessment=spectral_assessment):
        if result.records:
            # the records first: inputs without their record would name a result that is not there
            store.write_fluxes(result.records)
            store.write_flux_inputs(result.inputs)
            summary.stored += len(result.records)
        summary.periods += result.periods
        summary.ok += result.ok
        summary.partial += result.partial
        summary.failed += result.failed
        summary.no_raw_data += result.no_raw_data
        summary.failure_reasons.update(result.failure_reasons)
        if result.settings_hash:
            summary.settings_hash = result.settings_hash
            summary.engine_version = result.engine_version
        if progress is not None:
            progress(result.periods)
    return summary


def _piece(periods: list[tuple[datetime, datetime]], sonic_files: Mapping[datetime, list[Path]],
           gas_files: Mapping[datetime, list[Path]]) -> Piece:
    hours = {h for start, end in periods for h in half_hours(start, end)}
    return Piece(periods=tuple(periods), sonic_files={h: sonic_files[h] for h in hours if h in sonic_files},
                 gas_files={h: gas_files[h] for h in hours if h in gas_files})


def _metadata(periods: list[tuple[datetime, datetime]], sonic_files: Mapping[datetime, list[Path]],
              gas_files: Mapping[datetime, list[Path]], found: StationSensors,
              site_metadata: Mapping[str, Any]) -> SiteMetadata | None:
    """The station's metadata from the headers of the first period with a sonic file (and its analyzer's, or any
    of the analyzer's files) completed by `site_metadata`; None when no period has a sonic file."""
    reader = ArchiveReader()
    for period_start, period_end in periods:
        hours = half_hours(period_start, period_end)
        sonic_paths = [p for h in hours for p in sonic_files.get(h, [])]
        if not sonic_paths:
            continue
        gas_paths = [p for h in hours for p in gas_files.get(h, [])]
        sonic_header = reader.read(sonic_paths[0]).header
        gas_header = reader.read(gas_paths[0]).header if gas_paths else None
        if found.analyzer and gas_header is None:
            gas_header = _any_header(reader, gas_files)
        try:
            return site_metadata_from_headers(site_metadata, sonic_header, gas_header)
        except MetadataError as exc:
            raise RecomputeError(str(exc)) from None
    return None


def _any_header(reader: ArchiveReader, files: Mapping[datetime, list[Path]]) -> dict[str, Any] | None:
    for paths in files.values():
        for path in paths:
            try:
                return reader.read(path).header
            except (OSError, ValueError):
                continue
    return None


def _short(reason: str) -> str:
    """A failure reason without its numbers, so equal causes group in the summary."""
    words = ["N" if w.strip("(),%").replace(".", "", 1).isdigit() else w for w in reason.split()]
    return " ".join(words)
