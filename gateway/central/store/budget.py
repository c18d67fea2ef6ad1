"""The stored carbon budget of a station-year: what every store keeps of a budget run and how it is identified.

A budget run (`BudgetRun`) is the result of the central budget job (gateway/central/budget.py) for one station and
one calendar year of the station's standard-time clock: the half-hourly outputs of `gateway.flux.budget.pipeline`
(resolution ``HH``), the daily, monthly and annual sums (``DD``, ``MM``, ``YY``) and the run's own facts (the
record it covered, the u* threshold and its bootstrap distribution, the notes of the chain, the settings).

Identity (the same in both stores, checked by tests/central/test_store_contract.py):

- a run: (site, station, year, engine_version, settings_hash);
- a row of a run: the run's identity + resolution + time, where time is the END of the half hour for ``HH``
  (as flux records: FLUXNET TIMESTAMP_END) and the START of the day, month or year on the station's clock (in UTC)
  for ``DD``/``MM``/``YY``.

Like flux records, a run is a derived result: writing it again (the job runs every day over a year in progress)
replaces it whole — rows and facts; a variable that became missing reads back as missing, and rows the new run
does not have are gone (SQLite deletes them in the same transaction; InfluxDB keeps them but reads never return
rows outside the run's ranges). Runs of other settings or engine versions coexist.

`window_means` is the budget job's way into the readings: half-hour means of a variable's good readings
(qc GOOD or SUSPECT), with their counts, so the job can judge each half hour's coverage.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, get_args

import orjson

Resolution = Literal["HH", "DD", "MM", "YY"]
RESOLUTIONS: tuple[str, ...] = get_args(Resolution)

BUDGET_MEASUREMENT = "budget"
BUDGET_RUN_MEASUREMENT = "budget_runs"


@dataclass(frozen=True)
class BudgetTable:
    """The rows of one resolution of a run, as columns. ``times``: see the module doc (UTC); ``labels``: the
    period on the station's clock, ``YYYYMMDDHHMM`` (HH: TIMESTAMP_START), ``YYYYMMDD``, ``YYYYMM``, ``YYYY``;
    ``values``: variable -> one value per row (None = missing)."""

    resolution: Resolution
    times: list[datetime]
    labels: list[str]
    values: dict[str, list[float | None]]

    def __post_init__(self) -> None:
        if len(self.times) != len(self.labels) or any(len(v) != len(self.times) for v in self.values.values()):
            raise ValueError(f"budget table {self.resolution}: times, labels and every column need one value per row")

    def __len__(self) -> int:
        return len(self.times)


@dataclass(frozen=True)
class BudgetRun:
    """What a store keeps of one budget run besides its rows.

    ``first_end``/``last_end``: the first and the last half hour of the record (their ends, UTC); nothing after
    ``last_end`` is filled. ``complete``: the record spans the whole year. ``settings``: everything the settings
    hash is of. ``scalars``: USTAR_THRESHOLD with its bootstrap summary, E0_NT, ... ``ustar_draws``: every
    bootstrap threshold (m s-1). ``ranges``: resolution -> (first time, last time, rows) of the stored rows."""

    site: str
    station: str
    year: int
    engine_version: str
    settings_hash: str
    computed_at: datetime
    first_end: datetime
    last_end: datetime
    complete: bool
    utc_offset_h: float
    settings: dict[str, Any] = field(default_factory=dict)
    scalars: dict[str, float | str] = field(default_factory=dict)
    ustar_draws: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ranges: dict[str, tuple[datetime, datetime, int]] = field(default_factory=dict)
    # what it was computed from: input name -> its source, count, first/last time and SHA-256
    # (gateway/central/store/provenance.py; the budget job's `budget_input_digests` computes them again)
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def meta(self) -> dict[str, Any]:
        """The JSON-able facts both stores keep in one text field."""
        return {
            "settings": self.settings,
            "scalars": {k: _json_number(v) for k, v in self.scalars.items()},
            "ustar_draws": [_json_number(v) for v in self.ustar_draws],
            "notes": list(self.notes),
            "utc_offset_h": self.utc_offset_h,
            "ranges": {k: [_ns(a), _ns(b), n] for k, (a, b, n) in self.ranges.items()},
            "inputs": self.inputs,
        }


def run_from_meta(*, site: str, station: str, year: int, engine_version: str, settings_hash: str,
                  computed_at: datetime, first_end: datetime, last_end: datetime, complete: bool,
                  meta: dict[str, Any]) -> BudgetRun:
    return BudgetRun(
        site=site, station=station, year=year, engine_version=engine_version, settings_hash=settings_hash,
        computed_at=computed_at, first_end=first_end, last_end=last_end, complete=complete,
        utc_offset_h=float(meta.get("utc_offset_h", 0.0)), settings=dict(meta.get("settings") or {}),
        scalars={k: (math.nan if v is None else v) for k, v in (meta.get("scalars") or {}).items()},
        ustar_draws=[math.nan if v is None else float(v) for v in meta.get("ustar_draws") or []],
        notes=[str(n) for n in meta.get("notes") or []],
        ranges={k: (_from_ns(a), _from_ns(b), int(n)) for k, (a, b, n) in (meta.get("ranges") or {}).items()},
        inputs={str(k): dict(v) for k, v in (meta.get("inputs") or {}).items()},
    )


@dataclass(frozen=True)
class StationBudget:
    """One run with its tables: the unit `write_budget` stores."""

    run: BudgetRun
    tables: dict[str, BudgetTable]


@dataclass(frozen=True)
class WindowMean:
    """A half-hour (or other window) of readings: its start (UTC), the mean of its good values, their number."""

    start: datetime
    mean: float
    count: int


class BudgetStore(Protocol):
    """The budget part of `Store` (every backend has both)."""

    def write_budget(self, budget: StationBudget) -> None:
        """Store the run and its tables, replacing the run of the same identity whole; StoreUnavailable /
        StoreRejected when it could not. Safe to repeat."""

    def budget_runs(self, station: str, year: int | None = None) -> list[BudgetRun]:
        """The runs stored for a station (one year or all), ordered by year, settings_hash, engine_version, site."""

    def budget_table(self, run: BudgetRun, resolution: Resolution) -> BudgetTable:
        """The rows of one resolution of a stored run, in time order."""

    def window_means(self, station: str, variable: str, start: datetime, end: datetime, every: timedelta, *,
                     site: str, sensor: str) -> list[WindowMean]:
        """Per window of `every` (aligned to the epoch, reported at its start) in [start, end): the mean and number
        of the readings of one sensor's variable with a value and qc GOOD or SUSPECT; empty windows left out."""


def check_table(table: BudgetTable) -> None:
    if table.resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}")


def table_ranges(tables: Sequence[BudgetTable]) -> dict[str, tuple[datetime, datetime, int]]:
    return {t.resolution: (t.times[0], t.times[-1], len(t)) for t in tables if len(t)}


def clean(value: float | None) -> float | None:
    """None for a missing value (None, NaN, ±inf): what a store keeps of a number."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


_FLOAT_OR_NONE = {float, type(None)}


def _cell_text(value: float | None) -> str:
    number = clean(value)
    return "null" if number is None else float.__repr__(number)


# orjson writes a float as the shortest text that reads back as it, as repr does, and in the same form for
# magnitudes in [1e-4, 1e16) (tests/central/test_canonical_bytes.py: ~900,000 drawn floats and the boundaries);
# outside it repr writes an exponent ('1e-05', '1e+16') where orjson writes '0.00001' or '1e16', so those take repr
ORJSON_AS_REPR = (1e-4, 1e16)


def column_texts(column: Sequence[float | None]) -> list[str]:
    """`_cell_text` of each cell. A column of floats and None (the usual: the jobs hand over `tolist()`s) is written
    by one `orjson.dumps` (NaN and ±inf as null, as `clean` makes them), the cells outside `ORJSON_AS_REPR` by
    repr: the shortest round-trip text is what costs, ~1.7 µs a float by repr (~587,000 in a station-year budget),
    ~0.2 µs by orjson. A column with another type (an int, a bool, numpy's scalars) is written cell by cell."""
    import numpy as np  # not at import: a start of the service that runs no job needs none

    if len(column) == 0:
        return []
    if not set(map(type, column)) <= _FLOAT_OR_NONE:
        return list(map(_cell_text, column))
    texts = orjson.dumps(column)[1:-1].decode().split(",")
    magnitude = np.abs(np.array(column, dtype=np.float64))  # None -> NaN
    low, high = ORJSON_AS_REPR
    for i in np.flatnonzero(((magnitude < low) & (magnitude > 0)) | ((magnitude >= high) & np.isfinite(magnitude))
                            ).tolist():
        texts[i] = float.__repr__(column[i])  # finite, so a float
    return texts


def json_rows(columns: Sequence[Sequence[float | None]], n: int) -> list[str]:
    """Row i < n of `columns` as the text `json.dumps([clean(c[i]) for c in columns], allow_nan=False)` gives, byte
    for byte (json writes a float as its repr, a missing value as null, ", " between): the stores keep a table row
    as that text. A column at a time, not a dumps per row: a station-year's soil tables are 72,000 rows."""
    texts = [column_texts(column[:n]) for column in columns]
    if any(len(t) != n for t in texts):
        raise ValueError(f"a table's columns must have a value for each of its {n} rows")
    if not texts:
        return ["[]"] * n
    return list(map("[{}]".format, map(", ".join, zip(*texts, strict=True))))


def _json_number(value: float | str) -> float | str | None:
    if isinstance(value, str):
        return value
    return clean(value)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ns(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(microseconds=1) * 1000


def _from_ns(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(value) // 1000)
