"""Central recompute: fluxes of one station from its uplinked raw archive, written to the central store.

    summary = recompute(RawArchive(config.data_dir / "raw"), store, "plot-07", start, end,
                        site_metadata=load_yaml(...), settings=ProcessingSettings(), progress=bar.update)

For each averaging period in [start, end] (aligned to the epoch): the sonic's and the analyzer's archive files of
the half hours it overlaps are read, put on one grid (`gateway.flux.rawperiods`), processed by
`gateway.flux.ec.engine.process_period`, and stored as `FluxRecord`s with the engine version and settings hash. A
period for which the archive holds no sonic file at all is not computed and not stored (counted as "no raw data");
every other period is stored, failed ones with their reasons, so the store says what was tried.

Metadata: the archive headers give the acquisition frequency, the sonic's height (`height_m`) and north offset
(`north_offset_deg`), the analyzer's type (open path for LI-7500/IRGASON/EC150) and the gases' units. Site facts
the station does not record (altitude, latitude, canopy height, …) come from `site_metadata`, a mapping with the
keys of `SiteMetadata` (docs/flux-ec.md); any key it has wins over the headers. Without a `file` key the gases get
a time-lag window of −1..2 s around a nominal 0 s (arrival stamps already contain the analyzer's output delay).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.central.rawstore import RawArchive
from gateway.central.store import Store
from gateway.configfile import ConfigError
from gateway.contract import FluxRecord
from gateway.flux.ec.engine import PlanarFitSetup, process_period
from gateway.flux.ec.result import ENGINE_NAME, ENGINE_VERSION
from gateway.flux.ec.settings import ProcessingSettings, SiteMetadata
from gateway.flux.rawperiods import (
    ArchiveReader,
    SensorData,
    build_period,
    half_hours,
    is_analyzer,
    is_sonic,
    margin_for,
    measure_types_of,
    path_type,
    period_bounds,
)
from gateway.rawarchive.archive import read_archive

log = logging.getLogger(__name__)

DEFAULT_LAG_WINDOW_S = (-1.0, 2.0)
WRITE_EVERY = 48  # periods per store write (one day of half hours)


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


def site_metadata_from_headers(site_metadata: Mapping[str, Any], sonic_header: Mapping[str, Any],
                               analyzer_header: Mapping[str, Any] | None) -> SiteMetadata:
    """`SiteMetadata` from the given site facts, completed from the archive headers (module doc)."""
    merged: dict[str, Any] = dict(site_metadata)
    sonic_instrument = sonic_header.get("instrument") or {}
    merged.setdefault("site_id", str(sonic_header.get("site") or "site"))
    if "acquisition_frequency" not in merged and sonic_header.get("frequency_hz"):
        merged["acquisition_frequency"] = float(sonic_header["frequency_hz"])
    if "sonic" not in merged and sonic_instrument.get("height_m") is not None:
        merged["sonic"] = {"model": str(sonic_instrument.get("model", "")),
                           "height": float(sonic_instrument["height_m"]),
                           "north_offset": float(sonic_instrument.get("north_offset_deg") or 0.0)}
    if "analyzer" not in merged and analyzer_header is not None:
        instrument = analyzer_header.get("instrument") or {}
        merged["analyzer"] = {"model": str(instrument.get("model", "")), "path_type": path_type(instrument)}
    if "file" not in merged:
        lo, hi = DEFAULT_LAG_WINDOW_S
        columns: list[dict[str, Any]] = [{"index": i + 1, "variable": v} for i, v in enumerate(("u", "v", "w", "ts"))]
        types = measure_types_of(analyzer_header) if analyzer_header is not None else {}
        for gas in ("co2", "h2o"):
            if gas in types:
                columns.append({"index": len(columns) + 1, "variable": gas, "measure_type": types[gas],
                                "nom_timelag": 0.0, "min_timelag": lo, "max_timelag": hi})
        merged["file"] = {"columns": columns, "header_rows": 0}
    missing = [k for k in ("altitude", "latitude") if k not in merged]
    if missing:
        raise RecomputeError(f"the raw archive headers do not say the site's {' and '.join(missing)}; give them "
                             "in --metadata (YAML with the keys of docs/flux-ec.md, e.g. altitude: 193, "
                             "latitude: 52.08)")
    if "sonic" not in merged:
        raise RecomputeError("the sonic's archive header has no height_m; give sonic: {height: <m>} in --metadata")
    try:
        return SiteMetadata.model_validate(merged)
    except ValidationError as exc:
        raise RecomputeError(f"metadata (from --metadata and the archive headers) not usable: {exc}") from None


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
) -> RecomputeSummary:
    """Reprocess every period of `station` in [start, end] and store the results (module doc)."""
    found = sensors or find_sensors(archive, station, site=site, sonic=sonic, analyzer=analyzer)
    summary = RecomputeSummary(found.site, station, found.sonic, found.analyzer)
    sonic_files = archive.files(found.site, station, found.sonic)
    gas_files = archive.files(found.site, station, found.analyzer) if found.analyzer else {}
    reader = ArchiveReader()
    metadata: SiteMetadata | None = None
    pending: list[FluxRecord] = []
    for period_start, period_end in period_bounds(start, end, settings.avrg_len):
        summary.periods += 1
        hours = half_hours(period_start, period_end)
        sonic_paths = [p for h in hours for p in sonic_files.get(h, [])]
        if not sonic_paths:
            summary.no_raw_data += 1
            if progress is not None:
                progress(1)
            continue
        gas_paths = [p for h in hours for p in gas_files.get(h, [])]
        if metadata is None:
            sonic_header = reader.read(sonic_paths[0]).header
            gas_header = reader.read(gas_paths[0]).header if gas_paths else None
            if found.analyzer and gas_header is None:
                gas_header = _any_header(reader, gas_files)
            metadata = site_metadata_from_headers(site_metadata, sonic_header, gas_header)
        fs = metadata.acquisition_frequency
        t0, t1, margin = period_start.timestamp(), period_end.timestamp(), margin_for(fs)
        sonic_data = reader.sensor_data("sonic", sonic_paths, t0, t1, margin)
        gas_data: SensorData | None = None
        if found.analyzer == found.sonic:
            gas_data = sonic_data
        elif found.analyzer is not None:
            gas_data = reader.sensor_data("analyzer", gas_paths, t0, t1, margin)
            if not gas_paths:
                gas_data.issues.append(f"analyzer: no raw files of {found.analyzer} for this period")
        period = build_period(metadata, period_start, period_end, sonic_data, gas_data,
                              filter_diag=settings.filter_diag,
                              source=", ".join(p.name for p in sonic_paths + gas_paths))
        result = process_period(period, settings, planar_fit=planar_fit, spectral_assessment=spectral_assessment)
        summary.settings_hash = result.settings_hash
        summary.engine_version = result.engine_version
        if result.status == "ok":
            summary.ok += 1
        elif result.status == "partial":
            summary.partial += 1
        else:
            summary.failed += 1
            summary.failure_reasons.update(_short(r) for r in result.reasons[-1:])
        pending.append(FluxRecord.from_result(result, site=found.site, station=station))
        if len(pending) >= WRITE_EVERY:
            store.write_fluxes(pending)
            summary.stored += len(pending)
            pending = []
        if progress is not None:
            progress(1)
    if pending:
        store.write_fluxes(pending)
        summary.stored += len(pending)
    return summary


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


def load_site_metadata(path: Path | None) -> dict[str, Any]:
    """The --metadata file as a mapping: YAML with `SiteMetadata` keys (any subset), or an EddyPro .metadata."""
    if path is None:
        return {}
    from gateway.flux.files import _read_text, _yaml_mapping, parse_eddypro_metadata

    text = _read_text(path)
    if "[FileDescription]" in text:
        try:
            return parse_eddypro_metadata(text)
        except ValueError as exc:
            raise ConfigError(f"{path}: cannot parse metadata: {exc}") from None
    return _yaml_mapping(path, text)
