"""From the raw archive (docs/raw-archive.md) to the engine's `RawPeriod`: column mapping, units, a common grid.

A station archives each streaming instrument in its own half-hour files, every record stamped with its *arrival*
time (UTC unix seconds). The engine wants one array per variable on one 1/fs grid. This module:

1. **Maps columns** by the names and units in each file's header (the drivers' `StreamColumn`s):

   | archive column | engine variable | units accepted → canonical |
   |---|---|---|
   | `U`, `V`, `W` | `u`, `v`, `w` | `m s-1`, `cm s-1` → m s-1 |
   | `T_SONIC` | `ts` | `degC`, `K` → K |
   | `DIAG_SONIC` | `diag_sonic` (non-zero = bad) | – |
   | `CO2`, `H2O` | `co2`, `h2o` | densities `mmol m-3`, `umol m-3`, `mol m-3` → `molar_density` (WPL); |
   | | | fractions `umol mol-1`/`ppm` (CO2), `mmol mol-1` (H2O) → `mixing_ratio` (dry) |
   | `DIAG` (LI-7500/7200 DiagVal) | `diag_75` (`diag_72` when the instrument's model names a 7200) | – |
   | `DIAG_IRGA` (IRGASON) | applied here: non-zero marks CO2 and H2O bad (when `filter_diag`) | – |
   | `PRESS` | `air_p` | `kPa`, `hPa`, `Pa` → Pa |
   | `TA` | `air_t` | `degC`, `K` → K |

   Other columns (`SOS`, `T_CELL`, signal strengths) are not used. A column whose unit is not in the table is left
   out and named in the period's issues.

2. **Puts the records on a common 20 Hz (fs) grid.** Arrival stamps jitter by milliseconds around the
   instrument's output instants. The grid is `t_k = start + (k + φ)/fs`, k = 0..N−1, where the phase φ ∈ [0, 1) is
   the circular mean of the sonic's `frac((t − start)·fs)` in the period; each record (sonic and analyzer alike)
   goes to the nearest slot, `k = round((t − start)·fs − φ)`. A slot without a record is a gap (NaN). Arrival
   stamps are only ever late, so a burst of records that crowds a slot right after empty ones (the host stalled)
   is spread back over those empty slots in arrival order (`place_on_grid`); a record that still finds no slot (sent
   twice, or a rate above fs) is dropped and counted. The analyzer's records thus land within half a sample of the
   sonic's; its instrument delay is a time lag, found by the engine's covariance maximisation like any other lag.
   Both instruments must run at the same rate (an analyzer at half the rate leaves every other slot empty and its
   flux is not computed, with the reason).

3. **Cuts periods** of `avrg_len` minutes aligned to the epoch, reading every archive file of the half hours a
   period overlaps (several files of one half hour — a restart, `_1` suffixes — are merged by time).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gateway.flux.ec.period import RawPeriod
from gateway.flux.ec.settings import SiteMetadata
from gateway.rawarchive.archive import PERIOD_S, ArchiveData, read_archive

Array = NDArray[np.float64]

SONIC_COLUMNS = ("U", "V", "W", "T_SONIC")
GAS_COLUMNS = ("CO2", "H2O")

_WIND_UNITS = {"m s-1": 1.0, "m/s": 1.0, "cm s-1": 0.01}
_TEMPERATURE_UNITS = {"degC": 273.15, "°C": 273.15, "C": 273.15, "K": 0.0}  # offsets to K
_PRESSURE_UNITS = {"kPa": 1000.0, "hPa": 100.0, "Pa": 1.0}
_DENSITY_UNITS = {"mmol m-3": 1.0, "umol m-3": 1e-3, "mol m-3": 1e3}
_FRACTION_UNITS = {
    "co2": {"umol mol-1": 1.0, "ppm": 1.0, "mmol mol-1": 1e3},
    "h2o": {"mmol mol-1": 1.0, "ppt": 1.0, "umol mol-1": 1e-3, "ppm": 1e-3},
}
_OPEN_PATH_DRIVERS = ("li7500", "irgason", "ec150")


@dataclass
class Column:
    """How one archive column becomes an engine variable: canonical = raw·factor + offset."""

    variable: str
    factor: float = 1.0
    offset: float = 0.0
    measure_type: str | None = None


def map_columns(units: Mapping[str, str], instrument: Mapping[str, Any]) -> tuple[dict[str, Column], list[str]]:
    """Archive column name -> how it becomes an engine variable (see the module table), and problems found."""
    mapped: dict[str, Column] = {}
    problems: list[str] = []
    model = f"{instrument.get('model', '')} {instrument.get('driver', '')}".lower()

    def refuse(name: str, unit: str) -> None:
        problems.append(f"column {name} has unit {unit!r}, which the raw-archive reader does not know; not used")

    for name, unit in units.items():
        if name in ("U", "V", "W"):
            if unit in _WIND_UNITS:
                mapped[name] = Column(name.lower(), _WIND_UNITS[unit])
            else:
                refuse(name, unit)
        elif name in ("T_SONIC", "TA"):
            variable = "ts" if name == "T_SONIC" else "air_t"
            if unit in _TEMPERATURE_UNITS:
                mapped[name] = Column(variable, 1.0, _TEMPERATURE_UNITS[unit])
            else:
                refuse(name, unit)
        elif name == "PRESS":
            if unit in _PRESSURE_UNITS:
                mapped[name] = Column("air_p", _PRESSURE_UNITS[unit])
            else:
                refuse(name, unit)
        elif name in GAS_COLUMNS:
            gas = name.lower()
            if unit in _DENSITY_UNITS:
                mapped[name] = Column(gas, _DENSITY_UNITS[unit], measure_type="molar_density")
            elif unit in _FRACTION_UNITS[gas]:
                mapped[name] = Column(gas, _FRACTION_UNITS[gas][unit], measure_type="mixing_ratio")
            else:
                refuse(name, unit)
        elif name == "DIAG_SONIC":
            mapped[name] = Column("diag_sonic")
        elif name == "DIAG":
            variable = "diag_72" if "7200" in model else "diag_75"
            mapped[name] = Column(variable)
        elif name == "DIAG_IRGA":
            mapped[name] = Column("diag_irga")
    return mapped, problems


def is_sonic(units: Mapping[str, str]) -> bool:
    return all(c in units for c in SONIC_COLUMNS)


def is_analyzer(units: Mapping[str, str]) -> bool:
    return any(c in units for c in GAS_COLUMNS)


def path_type(instrument: Mapping[str, Any]) -> str:
    """`open` for LI-7500, IRGASON, EC150 (by driver or model name) unless the model names a 7200, else `closed`."""
    text = f"{instrument.get('driver', '')} {instrument.get('model', '')}".lower()
    if "7200" in text:
        return "closed"
    return "open" if any(d in text for d in _OPEN_PATH_DRIVERS) else "closed"


# how late the host may read a record it was sent (a stall of the station's CPU or USB): a burst after a stall is
# spread back over at most this much of the grid before it
MAX_ARRIVAL_LATENCY_S = 1.0


def grid_phase(times: Array, start: float, fs: float) -> float:
    """Circular mean of the records' position within their 1/fs slot, in [0, 1)."""
    if times.size == 0:
        return 0.0
    angle = 2.0 * np.pi * ((times - start) * fs)
    mean = math.atan2(float(np.mean(np.sin(angle))), float(np.mean(np.cos(angle))))
    return (mean / (2.0 * np.pi)) % 1.0


def place_on_grid(times: Array, start: float, fs: float, n: int, phase: float, *,
                  max_latency_s: float = MAX_ARRIVAL_LATENCY_S) -> tuple[NDArray[np.int64], NDArray[np.int64], int,
                                                                           int]:
    """(record indices, their slots, records dropped because no slot was left for them, empty slots filled from a
    burst); records outside 0..n-1 are left out. `times` must be sorted.

    Each record goes to its nearest slot. Arrival stamps are only ever late (the host read the record after the
    instrument sent it), so when the host stalls, the records sent meanwhile arrive as a burst that crowds one or a
    few slots right after a run of empty ones. A run of crowded slots is therefore spread back, in arrival order,
    over the empty slots immediately before it (at most `max_latency_s` worth of slots): the records are consecutive
    instrument outputs, which is how EddyPro reads a raw file anyway (one record per 1/fs, order kept, stamps
    unused). What still does not fit — a record sent twice, or an instrument faster than fs — is dropped and
    counted."""
    slots = np.rint((times - start) * fs - phase).astype(np.int64)
    inside = np.flatnonzero((slots >= 0) & (slots < n))
    slots_in = slots[inside]
    if slots_in.size == 0:
        return inside, slots_in, 0, 0
    occupied_slots, first_of, counts = np.unique(slots_in, return_index=True, return_counts=True)
    assigned = np.full(slots_in.size, -1, dtype=np.int64)
    assigned[first_of] = occupied_slots  # sorted times -> non-decreasing slots; the first of a slot keeps it
    moved = 0
    crowded = np.flatnonzero(counts > 1)
    if crowded.size:
        max_back = max(1, round(max_latency_s * fs))
        # runs of consecutive crowded slots (positions in occupied_slots)
        breaks = np.flatnonzero((np.diff(crowded) != 1) | (np.diff(occupied_slots[crowded]) != 1)) + 1
        for run in np.split(crowded, breaks):
            a, b = int(run[0]), int(run[-1])
            first, last = int(first_of[a]), int(first_of[b] + counts[b] - 1)  # its records
            previous = int(occupied_slots[a - 1]) if a > 0 else -1
            empty_before = min(int(occupied_slots[a]) - previous - 1, max_back)
            records = last - first + 1
            fit = min(records, int(occupied_slots[b]) - int(occupied_slots[a]) + 1 + empty_before)
            # the latest `fit` records take consecutive slots ending at the run's last slot; earlier ones drop
            assigned[first:last + 1] = -1
            assigned[last - fit + 1:last + 1] = np.arange(int(occupied_slots[b]) - fit + 1, int(occupied_slots[b]) + 1)
            moved += max(0, fit - (b - a + 1))
    kept = assigned >= 0
    return inside[kept], assigned[kept], int((~kept).sum()), moved


@dataclass
class SensorData:
    """Records of one sensor around one period, sorted by time, canonical units."""

    time: Array
    columns: dict[str, Array]
    header: dict[str, Any]
    issues: list[str] = field(default_factory=list)


class ArchiveReader:
    """Reads archive files with a small cache (a half-hour file serves every shorter period inside it)."""

    def __init__(self, cache_size: int = 6) -> None:
        self._cache: OrderedDict[Path, ArchiveData] = OrderedDict()
        self._cache_size = cache_size

    def read(self, path: Path) -> ArchiveData:
        if path in self._cache:
            self._cache.move_to_end(path)
            return self._cache[path]
        data = read_archive(path)
        self._cache[path] = data
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return data

    def sensor_data(self, label: str, files: list[Path], start: float, end: float, margin: float) -> SensorData:
        """Records with start − margin ≤ time < end + margin from `files`, mapped to engine variables."""
        times: list[Array] = []
        cols: dict[str, list[Array]] = {}
        issues: list[str] = []
        header: dict[str, Any] = {}
        for path in files:
            try:
                archive = self.read(path)
            except (OSError, ValueError) as exc:
                issues.append(f"{label}: {path.name} unreadable: {exc}")
                continue
            header = header or archive.header
            if not archive.complete:
                issues.append(f"{label}: {path.name} was not closed (power cut?); read up to its last record")
            mapping, problems = map_columns(archive.units, archive.header.get("instrument") or {})
            issues += [f"{label}: {p}" for p in problems if f"{label}: {p}" not in issues]
            keep = (archive.time >= start - margin) & (archive.time < end + margin)
            if not keep.any():
                continue
            times.append(archive.time[keep])
            for name, col in mapping.items():
                values = archive.columns[name][keep] if name in archive.columns else np.full(int(keep.sum()), np.nan)
                if col.factor != 1.0 or col.offset:
                    values = values * col.factor + col.offset
                cols.setdefault(col.variable, []).append(values)
        if not times:
            return SensorData(np.empty(0), {}, header, issues)
        t = np.concatenate(times)
        order = np.argsort(t, kind="stable")
        t = t[order]
        # the same record in two files (a conflict copy of a file) counts once
        unique = np.ones(t.size, dtype=bool)
        unique[1:] = np.diff(t) > 0
        columns = {}
        for name, parts in cols.items():
            if sum(p.size for p in parts) != order.size:
                issues.append(f"{label}: column {name} is not in every file; not used")
                continue
            columns[name] = np.concatenate(parts)[order][unique]
        return SensorData(t[unique], columns, header, issues)


def measure_types_of(header: Mapping[str, Any]) -> dict[str, str]:
    units = {c["name"]: c["unit"] for c in header.get("columns", [])}
    mapping, _ = map_columns(units, header.get("instrument") or {})
    return {col.variable: col.measure_type for col in mapping.values() if col.measure_type}


def build_period(
    metadata: SiteMetadata,
    start: datetime,
    end: datetime,
    sonic: SensorData,
    analyzer: SensorData | None,
    *,
    filter_diag: bool = True,
    source: str = "",
) -> RawPeriod:
    """One `RawPeriod` on the common grid (module doc, step 2) from the sonic's and the analyzer's records."""
    fs = metadata.acquisition_frequency
    t0 = start.timestamp()
    n = round((end - start).total_seconds() * fs)
    issues = list(sonic.issues) + (list(analyzer.issues) if analyzer is not None and analyzer is not sonic else [])
    phase = grid_phase(sonic.time, t0, fs)
    data: dict[str, Array] = {}
    measure_types: dict[str, str] = {}
    sources = [(sonic, "sonic")] if analyzer is None or analyzer is sonic else [(sonic, "sonic"),
                                                                                  (analyzer, "analyzer")]
    for sensor, label in sources:
        index, slots, doubled, moved = place_on_grid(sensor.time, t0, fs, n, phase)
        if moved:
            issues.append(f"{label}: {moved} empty slots before bursts of records (arrived after a stall of the "
                          "host) filled with the bursts' records, in arrival order")
        if doubled:
            issues.append(f"{label}: {doubled} records shared a 1/fs slot with another (a record sent twice or a "
                          f"rate above {fs:g} Hz) and were dropped")
        empty = n - slots.size
        if sensor.time.size and empty:
            issues.append(f"{label}: {empty} of {n} grid slots without a record")
        for name, values in sensor.columns.items():
            if label == "sonic" and sources[1:] and name in ("co2", "h2o", "diag_75", "diag_72", "diag_irga"):
                continue  # a separate analyzer provides the gases
            column = np.full(n, np.nan)
            column[slots] = values[index]
            data[name] = column
        if label == "analyzer" or len(sources) == 1:
            measure_types.update(measure_types_of(sensor.header))
    if "diag_irga" in data:
        bad = np.isfinite(data["diag_irga"]) & (data["diag_irga"] != 0)
        if filter_diag and bad.any():
            for gas in ("co2", "h2o"):
                if gas in data:
                    data[gas][bad] = np.nan
            issues.append(f"diag_irga: {int(bad.sum())} records flagged by the analyzer and removed")
        del data["diag_irga"]
    if not sonic.time.size:
        data = {}
    return RawPeriod(data=data, metadata=metadata, start=start, end=end, measure_types=measure_types,
                     issues=issues, source=source, expected_records=n)


def period_bounds(first: datetime, last: datetime, avrg_len_min: float) -> list[tuple[datetime, datetime]]:
    """Periods of `avrg_len_min` aligned to the epoch that lie wholly inside [first, last]."""
    length = avrg_len_min * 60.0
    t = math.ceil(first.timestamp() / length) * length
    out = []
    while t + length <= last.timestamp() + 1e-9:
        out.append((datetime.fromtimestamp(t, UTC), datetime.fromtimestamp(t + length, UTC)))
        t += length
    return out


def half_hours(start: datetime, end: datetime) -> list[datetime]:
    """Start of every archive half hour that [start, end) overlaps."""
    first = math.floor(start.timestamp() / PERIOD_S) * PERIOD_S
    return [datetime.fromtimestamp(t, UTC) for t in range(int(first), math.ceil(end.timestamp()), PERIOD_S)
            if t < end.timestamp()]


def margin_for(fs: float) -> float:
    """Records this far beyond a period's ends may still fall on its first/last grid slot."""
    return 1.0 / fs


__all__ = [
    "MAX_ARRIVAL_LATENCY_S",
    "ArchiveReader",
    "Column",
    "SensorData",
    "build_period",
    "grid_phase",
    "half_hours",
    "is_analyzer",
    "is_sonic",
    "map_columns",
    "margin_for",
    "path_type",
    "period_bounds",
    "place_on_grid",
]
