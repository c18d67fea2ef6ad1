"""Build a :class:`~gateway.report.data.SiteReportData` from files (the store-based builder is separate).

Files (header row; ``-9999`` or empty = missing; time stamps ``YYYYMMDDHHMM`` of the station's standard-time clock):

- ``budget`` (required): the half-hourly output of ``sinkwatch flux budget --out`` — ``TIMESTAMP_START``,
  ``TIMESTAMP_END``, ``NEE_F``, ``NEE_F_QC``, ``NEE_F_RANDUNC`` at least (docs/budget.md).
- ``daily``, ``monthly``, ``annual``: its ``--daily``/``--monthly``/``--annual`` files (``TIMESTAMP`` as
  ``YYYYMMDD``/``YYYYMM``/``YYYY``). Not given: computed here from the half-hourly file by
  :func:`gateway.flux.budget.aggregate.aggregate`, as the budget command does (said so in the notes). The annual
  file's ``USTAR_MODE`` and ``USTAR_THRESHOLD_P05``/``_P50``/``_P95`` are used when present.
- ``ustar_draws``: the ``--ustar-draws`` file (one column ``USTAR_THRESHOLD``, one bootstrap draw per row; with a
  ``YEAR`` column before it when the budget has a u* threshold per year). A budget of several years with a threshold
  per year (its annual file's ``USTAR_THRESHOLD_YEAR``) is reported with the reported year's threshold, percentiles
  and draws.
- ``budget_record``: the ``--record`` file of the budget run (JSON): its outputs' SHA-256 must equal the budget files
  given (else the files are another run's or were changed since), and its engine, settings hash, inputs (with their
  SHA-256 and time layout) and notes join the provenance.
- ``soil``: ``TIMESTAMP_START`` (and ``TIMESTAMP_END``) or ``TIMESTAMP``; ``FC_SOIL_GRAD`` and/or
  ``FC_SOIL_CH_<c>`` with ``_UNC`` (1 σ) and optional ``_QC``; soil temperature ``TS`` or ``TS_<h>_<v>_<r>`` (the
  first such column; °C). Fluxes µmol m-2 s-1, positive upward (docs/soil-stems.md "Output names").
- ``stems``: ``TIMESTAMP`` (or ``TIMESTAMP_START``) and per tree ``GRO_<tree>`` and ``TWD_<tree>`` (µm).
- ``stem_carbon``: one row per plot: ``PLOT``, ``START``, ``END`` (``YYYYMMDD``), ``C_AGB_INC``, ``C_AGB_INC_SD``
  (Mg C ha-1), ``CO2E_AGB_INC``, ``CO2E_AGB_INC_SD`` (t CO2e ha-1), ``N_TREES``, optional ``METHOD``.

Every input's SHA-256 goes into the provenance, with its record count and first/last time stamp. Problems raise
:class:`ReportInputError` naming the file, the row or column and the fix.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from gateway import __version__
from gateway.flux.budget.aggregate import Aggregates, aggregate
from gateway.report.data import (
    HH_REQUIRED,
    BudgetData,
    Coverage,
    InputDigest,
    Provenance,
    ReportDataError,
    SiteInfo,
    SiteReportData,
    SoilEffluxSeries,
    StationInfo,
    StemCarbon,
    StemSeries,
    UstarDistribution,
)

__all__ = ["ReportFiles", "ReportInputError", "build_from_files"]

FloatArray = NDArray[np.float64]
MISSING = -9999.0
_TS_COLUMN = re.compile(r"^TS(_\d+_\d+_\d+)?$")
_CHAMBER = re.compile(r"^FC_SOIL_CH_([A-Za-z0-9]+)$")


class ReportInputError(ReportDataError):
    """An input file cannot be used; the message names the file, the row or column and the fix."""


@dataclass(frozen=True)
class ReportFiles:
    """The files a report is built from (only ``budget`` is required)."""

    budget: Path | None
    daily: Path | None = None
    monthly: Path | None = None
    annual: Path | None = None
    ustar_draws: Path | None = None
    soil: Path | None = None
    stems: Path | None = None
    stem_carbon: Path | None = None
    budget_record: Path | None = None


_FIRST_MINUTE = np.datetime64("0001-01-01T00:00")


@dataclass
class _Table:
    path: Path
    header: list[str]
    rows: list[list[str]]
    sha256: str

    def has(self, name: str) -> bool:
        return name in self.header

    def text(self, name: str) -> list[str]:
        i = self.header.index(name)
        return [r[i].strip() if i < len(r) else "" for r in self.rows]

    def numbers(self, name: str) -> FloatArray:
        out = np.full(len(self.rows), np.nan)
        for k, text in enumerate(self.text(name)):
            if text in ("", "NA", "NaN", "nan"):
                continue
            try:
                value = float(text)
            except ValueError:
                raise ReportInputError(f"{self.path}: row {k + 2}, column {name}: {text!r} is not a number; use "
                                       "-9999 for a missing value") from None
            if value != MISSING and math.isfinite(value):
                out[k] = value
        return out

    def times(self, name: str) -> FloatArray:
        """The column's YYYYMMDDHHMM stamps (UTC) as seconds since 1970. Read column-wise by numpy's ISO 8601
        parser (which refuses a month, day, hour or minute out of range, a 29 February outside a leap year):
        `datetime.strptime` per row took 10 of a report's 30 CPU-s on a year of half hours and 10-min stems.
        Whatever that does not take (a wrong width, a character that is no ASCII digit, a date that does not exist,
        year 0) is read row by row, which names the first bad row as before."""
        texts = self.text(name)
        if all(len(text) == 12 and text.isascii() and text.isdigit() for text in texts):
            iso = [f"{t[:4]}-{t[4:6]}-{t[6:8]}T{t[8:10]}:{t[10:12]}" for t in texts]
            try:
                minutes = np.array(iso, dtype="datetime64[m]")
            except ValueError:
                return self._times_by_row(name, texts)
            if not np.any(minutes < _FIRST_MINUTE):  # numpy takes year 0, which datetime does not
                result: FloatArray = minutes.astype(np.int64).astype(np.float64) * 60.0
                return result
        return self._times_by_row(name, texts)

    def _times_by_row(self, name: str, texts: list[str]) -> FloatArray:
        fmt = "%Y%m%d%H%M"
        out = np.empty(len(texts))
        for k, text in enumerate(texts):
            try:
                if len(text) != 12 or not text.isdigit():
                    raise ValueError
                out[k] = datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp()
            except ValueError:
                example = datetime(2024, 1, 1, 0, 30).strftime(fmt)
                raise ReportInputError(f"{self.path}: row {k + 2}, {name} {text!r} is not a time stamp like "
                                       f"{example}") from None
        return out


def _read(path: Path, role: str) -> _Table:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ReportInputError(f"{path}: cannot read the {role} file: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ReportInputError(f"{path}: the {role} file is not a text CSV file (UTF-8)") from None
    reader = csv.reader(text.splitlines())
    try:
        rows = [r for r in reader if r and any(c.strip() for c in r)]
    except csv.Error as exc:  # e.g. a stray quote that opens a field longer than the csv module's limit
        raise ReportInputError(f"{path}: line {reader.line_num} of the {role} file is not CSV ({exc}); check its "
                               "quotes and separators, or give the file as sinkwatch flux budget wrote it") from None
    if len(rows) < 2:
        raise ReportInputError(f"{path}: the {role} file has no records (it needs a header row and data rows)")
    return _Table(path, [h.strip() for h in rows[0]], rows[1:], hashlib.sha256(raw).hexdigest())


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y%m%d%H%M")


def _digest(table: _Table, role: str, time_s: FloatArray | None) -> InputDigest:
    first = last = ""
    if time_s is not None and time_s.size:
        first, last = _stamp(float(time_s[0])), _stamp(float(time_s[-1]))
    return InputDigest(role, table.path.name, table.sha256, len(table.rows), first, last)


def _period_labels(time_s: FloatArray) -> NDArray[np.str_]:
    days = np.floor(time_s / 86400.0).astype(np.int64)
    uniq, inverse = np.unique(days, return_inverse=True)
    labels = np.array([datetime.fromtimestamp(int(d) * 86400, tz=UTC).strftime("%Y%m%d") for d in uniq])
    return labels[inverse]


def _read_aggregates(path: Path, role: str, width: int) -> tuple[Aggregates, dict[str, float | str], _Table]:
    t = _read(path, role)
    if not t.has("TIMESTAMP"):
        raise ReportInputError(f"{path}: no TIMESTAMP column; give the {role} file of sinkwatch flux budget")
    labels = t.text("TIMESTAMP")
    bad = [lab for lab in labels if len(lab) != width or not lab.isdigit()]
    if bad:
        raise ReportInputError(f"{path}: TIMESTAMP {bad[0]!r} is not a {role} label of {width} digits")
    values: dict[str, FloatArray] = {}
    scalars: dict[str, float | str] = {}
    for name in t.header:
        if name == "TIMESTAMP":
            continue
        if _is_scalar(name):
            scalars[name] = _scalar(t.text(name)[0])
            continue
        values[name] = t.numbers(name)
    return Aggregates(labels, values), scalars, t


def _is_scalar(name: str) -> bool:
    """A column of the annual file that holds a value of the run (the same in every row), or of each year's u*
    threshold (a record of several years: docs/budget.md, "u* threshold: one per year")."""
    return name == "USTAR_MODE" or name.startswith(("USTAR_THRESHOLD", "E0_"))


def _scalar(text: str) -> float | str:
    try:
        number = float(text)
    except ValueError:
        return text
    return float("nan") if number == MISSING else number


def _ustar_of_year(budget: BudgetData, year: int, annual: _Table | None, draws: FloatArray,
                   draw_years: NDArray[np.str_] | None, notes: list[str]) -> BudgetData:
    """The u* threshold, percentiles and draws of the reported year when the budget has one per year (its annual
    file's ``USTAR_THRESHOLD_YEAR`` column; the draws file's ``YEAR`` column); the budget unchanged otherwise."""
    if annual is None or not annual.has("USTAR_THRESHOLD_YEAR"):
        return budget
    labels = annual.text("TIMESTAMP")
    if str(year) not in labels:
        return budget
    row = labels.index(str(year))
    scalars = dict(budget.scalars)
    for name in annual.header:
        if _is_scalar(name):
            scalars[name] = _scalar(annual.text(name)[row])
    source = str(scalars["USTAR_THRESHOLD_YEAR"]).removesuffix(".0")
    threshold = scalars.get("USTAR_THRESHOLD")
    if draw_years is not None:
        draws = draws[np.isin(draw_years, source.split("+"))]
    percentiles = {q: float(v) for q, key in ((5.0, "USTAR_THRESHOLD_P05"), (50.0, "USTAR_THRESHOLD_P50"),
                                              (95.0, "USTAR_THRESHOLD_P95"))
                   if isinstance(v := scalars.get(key), float) and math.isfinite(v)}
    notes.append(f"u*: the budget has a threshold per year; {year}'s is "
                 + (f"{threshold:.3f} m s-1" if isinstance(threshold, float) else "missing")
                 + ("" if source == str(year) else f", taken from {source}"))
    ustar = UstarDistribution(budget.ustar.mode, threshold if isinstance(threshold, float) else float("nan"),
                              draws, percentiles)
    return replace(budget, ustar=ustar, scalars=scalars)


@dataclass
class _Budget:
    """The budget as read, with what picking one year's u* threshold needs (:func:`_ustar_of_year`)."""

    data: BudgetData
    annual: _Table | None
    draws: FloatArray
    draw_years: NDArray[np.str_] | None


def _budget(files: ReportFiles, inputs: list[InputDigest], notes: list[str]) -> _Budget:
    if files.budget is None:
        raise ReportInputError("no budget file: a site carbon report needs the carbon budget; give --budget "
                               "BUDGET_OUT.csv (the half-hourly output of sinkwatch flux budget --out)")
    t = _read(files.budget, "budget")
    for name in ("TIMESTAMP_START", *HH_REQUIRED):
        if not t.has(name):
            raise ReportInputError(f"{files.budget}: no {name} column; give the half-hourly output of sinkwatch "
                                   "flux budget --out (it has TIMESTAMP_START, NEE_F, NEE_F_QC, NEE_F_RANDUNC)")
    starts = t.times("TIMESTAMP_START")
    if starts.size < 2:
        raise ReportInputError(f"{files.budget}: {starts.size} records; the budget needs half-hourly records")
    diffs = np.diff(starts)
    if np.any(diffs <= 0):
        k = int(np.flatnonzero(diffs <= 0)[0]) + 2
        raise ReportInputError(f"{files.budget}: row {k + 1} does not come after row {k}; sort the records by "
                               "TIMESTAMP_START and remove duplicates")
    step = float(np.min(diffs))
    if step not in (1800.0, 3600.0) or np.any(np.mod(diffs, step) != 0):
        raise ReportInputError(f"{files.budget}: records {step / 60:.0f} min apart or off the grid; the budget is "
                               "half-hourly (or hourly)")
    rows = np.round((starts - starts[0]) / step).astype(np.intp)
    n = int(rows[-1]) + 1
    grid_t = starts[0] + step * np.arange(n, dtype=np.float64)
    if n > starts.size:
        notes.append(f"budget file: {n - starts.size} half hours missing from the file are shown as missing")
    hh: dict[str, FloatArray] = {}
    for name in t.header:
        if name.startswith("TIMESTAMP"):
            continue
        arr = np.full(n, np.nan)
        arr[rows] = t.numbers(name)
        hh[name] = arr
    inputs.append(_digest(t, "budget, half-hourly", starts))

    scalars: dict[str, float | str] = {}
    aggs: dict[str, Aggregates] = {}
    annual_table: _Table | None = None
    for role, path, width in (("daily", files.daily, 8), ("monthly", files.monthly, 6), ("annual", files.annual, 4)):
        if path is not None:
            agg, extra, table = _read_aggregates(path, role, width)
            scalars.update(extra)
            aggs[role] = agg
            if role == "annual":
                annual_table = table
            inputs.append(_digest(table, f"budget, {role} sums", None))
    missing = [r for r in ("daily", "monthly", "annual") if r not in aggs]
    if missing:
        for name in ("NEE_F_FSD", "NEE_F_FNUM"):
            if name not in hh:
                raise ReportInputError(f"{files.budget}: no {name} column to compute the {', '.join(missing)} sums; "
                                       f"give them (--{missing[0]} FILE from sinkwatch flux budget) or a budget file "
                                       "with NEE_F_FSD and NEE_F_FNUM")
        labels = _period_labels(grid_t)
        scen = {k[4:7]: v for k, v in hh.items() if re.fullmatch(r"NEE_U\d\d_F", k)}
        for role, width in (("daily", 8), ("monthly", 6), ("annual", 4)):
            if role in missing:
                key = np.array([lab[:width] for lab in labels])
                aggs[role] = aggregate(key, hh, period_s=step, scenarios=scen or None)
        notes.append(f"{', '.join(missing)} sums computed from the half-hourly budget file "
                     "(gateway.flux.budget.aggregate, as sinkwatch flux budget does)")

    draws = np.empty(0)
    draw_years: NDArray[np.str_] | None = None
    if files.ustar_draws is not None:
        dt = _read(files.ustar_draws, "u* draws")
        if not dt.has("USTAR_THRESHOLD"):
            raise ReportInputError(f"{files.ustar_draws}: no USTAR_THRESHOLD column; give the file of sinkwatch flux "
                                   "budget --ustar-draws")
        draws = dt.numbers("USTAR_THRESHOLD")
        if dt.has("YEAR"):  # a budget with a u* threshold per year: each year's draws
            draw_years = np.array(dt.text("YEAR"))
        inputs.append(_digest(dt, "budget, u* bootstrap draws", None))
    thr_col = hh.get("USTAR_THRESHOLD")
    threshold = float(np.nanmedian(thr_col)) if thr_col is not None and np.isfinite(thr_col).any() else float("nan")
    mode_text = scalars.get("USTAR_MODE")
    mode = (str(mode_text) if mode_text in ("auto", "value", "none")
            else "none" if not math.isfinite(threshold) else "auto" if draws.size else "value")
    percentiles = {q: float(v) for q, key in ((5.0, "USTAR_THRESHOLD_P05"), (50.0, "USTAR_THRESHOLD_P50"),
                                              (95.0, "USTAR_THRESHOLD_P95"))
                   if isinstance(v := scalars.get(key), float) and math.isfinite(v)}
    if mode == "auto" and not draws.size:
        notes.append("u*: the bootstrap draws are not among the inputs (sinkwatch flux budget --ustar-draws FILE); "
                     "the distribution is shown by its percentiles only" if percentiles else
                     "u*: neither the bootstrap draws nor the annual file are among the inputs: no distribution")
    ustar = UstarDistribution(mode, threshold, draws, percentiles)  # type: ignore[arg-type]
    return _Budget(BudgetData(grid_t, step, hh, aggs["daily"], aggs["monthly"], aggs["annual"], ustar, scalars),
                   annual_table, draws, draw_years)


_RECORD_ROLES = {"--out": ("budget", "budget, half-hourly"), "--daily": ("daily", "budget, daily sums"),
                 "--monthly": ("monthly", "budget, monthly sums"), "--annual": ("annual", "budget, annual sums"),
                 "--ustar-draws": ("ustar_draws", "budget, u* bootstrap draws")}
"""The budget command's output options: the report's file each is, and the role its digest is listed under."""


@dataclass
class _RunRecord:
    engine: str
    settings_hash: str
    inputs: list[InputDigest]
    notes: list[str]


def _run_record(files: ReportFiles, digests: dict[str, str]) -> _RunRecord:
    """Read the budget run's record and check it against the budget files given (module docstring); ``digests``:
    the SHA-256 of each file already read, by its role in the provenance."""
    path = files.budget_record
    assert path is not None
    try:
        raw = path.read_bytes()
        doc = json.loads(raw)
    except OSError as exc:
        raise ReportInputError(f"{path}: cannot read the budget run record: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
        raise ReportInputError(f"{path}: not a JSON run record; give the --record file of sinkwatch flux "
                               "budget") from None
    try:
        if doc["format"] != "sinkwatch-budget-run" or doc["version"] != 1:
            raise ReportInputError(f"{path}: format {doc['format']!r} version {doc['version']!r}; this report reads "
                                   "sinkwatch-budget-run version 1 (the --record file of sinkwatch flux budget)")
        engine, settings_hash = str(doc["engine"]), str(doc["settings_hash"])
        records = doc["records"]
        for output in doc["outputs"]:
            attribute, role = _RECORD_ROLES.get(str(output["option"]), ("", ""))
            mine, sha = getattr(files, attribute, None), digests.get(role)
            if mine is None or sha is None:
                continue
            if sha != output["sha256"]:
                raise ReportInputError(
                    f"{mine}: its SHA-256 {sha[:16]}… is not the {output['sha256'][:16]}… the budget run recorded for "
                    f"{output['option']} ({output['name']}): the file was changed after the run, or is another "
                    "run's; give the files and the record of one run")
        inputs = [InputDigest(f"budget {item['role']} ({item['layout']})", str(item["name"]), str(item["sha256"]),
                              int(records["rows"]) if item["role"] == "input" else 0,
                              str(records["first_start"]) if item["role"] == "input" else "",
                              str(records["last_end"]) if item["role"] == "input" else "")
                  for item in doc["inputs"]]
        inputs.append(InputDigest("budget run record", path.name, hashlib.sha256(raw).hexdigest()))
        settings = ", ".join(f"{k} {v}" for k, v in sorted(doc["settings"].items()) if v is not None)
        notes = [f"budget run ({engine}, {doc['created_utc']}): {settings}",
                 *(f"budget run: {note}" for note in doc["notes"])]
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:  # Overflow: "rows": Infinity
        raise ReportInputError(f"{path}: the run record lacks or mangles {exc}; give the --record file of sinkwatch "
                               "flux budget as it wrote it") from None
    return _RunRecord(engine, settings_hash, inputs, notes)


def _time_column(t: _Table, role: str) -> tuple[FloatArray, FloatArray | None]:
    """Start and (when given) end of each record."""
    if t.has("TIMESTAMP_START"):
        start = t.times("TIMESTAMP_START")
        end = t.times("TIMESTAMP_END") if t.has("TIMESTAMP_END") else None
        return start, end
    if t.has("TIMESTAMP"):
        return t.times("TIMESTAMP"), None
    raise ReportInputError(f"{t.path}: no TIMESTAMP_START or TIMESTAMP column in the {role} file; give the time "
                           "of each record as YYYYMMDDHHMM")


def _sorted(t: _Table, time_s: FloatArray, role: str) -> None:
    d = np.diff(time_s)
    if np.any(d <= 0):
        k = int(np.flatnonzero(d <= 0)[0]) + 2
        raise ReportInputError(f"{t.path}: row {k + 1} of the {role} file does not come after row {k}; sort the "
                               "records by time and remove duplicates")


def _soil(path: Path, inputs: list[InputDigest]) -> list[SoilEffluxSeries]:
    t = _read(path, "soil")
    start, end = _time_column(t, "soil")
    _sorted(t, start, "soil")
    inputs.append(_digest(t, "soil CO2 efflux", start))
    ts_name = next((h for h in t.header if _TS_COLUMN.match(h)), None)
    ts = t.numbers(ts_name) if ts_name else None
    names = [h for h in t.header if h == "FC_SOIL_GRAD" or _CHAMBER.match(h)]
    if not names:
        raise ReportInputError(f"{path}: no FC_SOIL_GRAD or FC_SOIL_CH_<c> column; the soil file needs the efflux "
                               "(µmol m-2 s-1) by the names of docs/soil-stems.md")
    step = float(np.median(np.diff(start))) if start.size > 1 else 1800.0
    series = []
    for name in names:
        if not t.has(f"{name}_UNC"):
            raise ReportInputError(f"{path}: no {name}_UNC column; every efflux needs its 1-σ uncertainty "
                                   "(µmol m-2 s-1)")
        flux = t.numbers(name)
        chamber = name != "FC_SOIL_GRAD"
        stamps = end if chamber and end is not None else start
        period = step
        if chamber:
            valid = stamps[np.isfinite(flux)]
            period = float(np.median(np.diff(valid))) if valid.size > 1 else step
        if ts is None:
            raise ReportInputError(f"{path}: no soil temperature column (TS or TS_<h>_<v>_<r>, °C); the report plots "
                                   "efflux against it and fills gaps of the annual sum from it")
        series.append(SoilEffluxSeries(name, "chamber" if chamber else "gradient", stamps, period, flux,
                                       t.numbers(f"{name}_UNC"), ts, ts_name or "TS",
                                       t.numbers(f"{name}_QC") if t.has(f"{name}_QC") else None))
    return series


def _stems(path: Path, inputs: list[InputDigest]) -> list[StemSeries]:
    t = _read(path, "stems")
    time_s, _ = _time_column(t, "stems")
    _sorted(t, time_s, "stems")
    inputs.append(_digest(t, "stem growth and water deficit", time_s))
    trees = [h[4:] for h in t.header if h.startswith("GRO_") and len(h) > 4]
    if not trees:
        raise ReportInputError(f"{path}: no GRO_<tree> column; the stems file needs GRO_<tree> and TWD_<tree> (µm) "
                               "per tree")
    out = []
    for tree in trees:
        if not t.has(f"TWD_{tree}"):
            raise ReportInputError(f"{path}: GRO_{tree} without TWD_{tree}; give both for every tree")
        out.append(StemSeries(tree, time_s, t.numbers(f"GRO_{tree}"), t.numbers(f"TWD_{tree}")))
    return out


def _stem_carbon(path: Path, inputs: list[InputDigest]) -> list[StemCarbon]:
    t = _read(path, "stem carbon")
    need = ("PLOT", "START", "END", "C_AGB_INC", "C_AGB_INC_SD", "CO2E_AGB_INC", "CO2E_AGB_INC_SD", "N_TREES")
    for name in need:
        if not t.has(name):
            raise ReportInputError(f"{path}: no {name} column; the stem carbon file needs {', '.join(need)}")
    inputs.append(_digest(t, "stem carbon increment", None))
    cols = {n: t.numbers(n) for n in need[3:]}
    plots, starts, ends = t.text("PLOT"), t.text("START"), t.text("END")
    methods = t.text("METHOD") if t.has("METHOD") else [""] * len(plots)
    out = []
    for k in range(len(plots)):
        try:
            out.append(StemCarbon(plots[k], starts[k], ends[k], float(cols["C_AGB_INC"][k]),
                                  float(cols["C_AGB_INC_SD"][k]), float(cols["CO2E_AGB_INC"][k]),
                                  float(cols["CO2E_AGB_INC_SD"][k]),
                                  int(cols["N_TREES"][k]) if math.isfinite(cols["N_TREES"][k]) else 0, methods[k]))
        except ReportDataError as exc:
            raise ReportInputError(f"{path}: row {k + 2}: {exc}") from None
    return out


def _coverage(name: str, time_s: FloatArray, values: FloatArray, start: float, end: float,
              step: float) -> Coverage:
    sel = (time_s >= start) & (time_s < end)
    present = int(np.isfinite(values[sel]).sum())
    expected = round((end - start) / step)
    t = time_s[sel][np.isfinite(values[sel])]
    return Coverage(name, _stamp(float(t[0])) if t.size else "", _stamp(float(t[-1])) if t.size else "",
                    expected, present)


def _settings_hash(payload: object) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_from_files(files: ReportFiles, *, site: str, year: int | None = None, name: str = "",
                     lat: float | None = None, lon: float | None = None, utc_offset_h: float | None = None,
                     stations: Sequence[str] = (), generated_at: datetime | None = None) -> SiteReportData:
    """Read the files (module docstring) into the report's data object. ``year``: the calendar year to report
    (default: the budget's, when it covers one year)."""
    inputs: list[InputDigest] = []
    notes: list[str] = []
    read = _budget(files, inputs, notes)
    budget = read.data
    run = _run_record(files, {i.role: i.sha256 for i in inputs}) if files.budget_record is not None else None
    if run is not None:
        inputs.extend(run.inputs)
        notes.extend(run.notes)
    years = sorted(set(budget.annual.label))
    if year is None:
        if len(years) != 1:
            raise ReportInputError(f"the budget covers the years {', '.join(years)}; choose one with --year")
        year = int(years[0])
    budget = _ustar_of_year(budget, year, read.annual, read.draws, read.draw_years, notes)
    soil = _soil(files.soil, inputs) if files.soil is not None else []
    stems = _stems(files.stems, inputs) if files.stems is not None else []
    carbon = _stem_carbon(files.stem_carbon, inputs) if files.stem_carbon is not None else []
    start = datetime(year, 1, 1, tzinfo=UTC).timestamp()
    end = datetime(year + 1, 1, 1, tzinfo=UTC).timestamp()
    step = budget.step_s
    coverage = []
    if "NEE" in budget.hh:
        coverage.append(_coverage("NEE (measured, after u* filtering: NEE_F_QC 0)", budget.time_s,
                                  np.where(budget.hh["NEE_F_QC"] == 0, 1.0, np.nan), start, end, step))
    coverage.append(_coverage("NEE_F (measured or gap-filled)", budget.time_s, budget.hh["NEE_F"], start, end, step))
    for met in ("TA_F", "SW_IN_F", "VPD_F"):
        if met in budget.hh:
            coverage.append(_coverage(met, budget.time_s, budget.hh[met], start, end, step))
    for s in soil:
        coverage.append(_coverage(s.name, s.time_s, s.flux, start, end, s.period_s))
        if s.ts is not None:
            coverage.append(_coverage(f"{s.ts_name} (with {s.name})", s.time_s, s.ts, start, end, s.period_s))
    for st in stems:
        st_step = float(np.median(np.diff(st.time_s))) if st.time_s.size > 1 else 600.0
        coverage.append(_coverage(f"GRO_{st.tree}", st.time_s, st.gro_um, start, end, st_step))
    settings = {"site": site, "year": year, "inputs": [(i.role, i.sha256) for i in inputs]}
    hashes = {"report (site, year, input digests)": _settings_hash(settings)}
    ustar_keys = {k: v for k, v in budget.scalars.items() if k.startswith(("USTAR", "E0"))}
    if ustar_keys:
        hashes["budget (u* mode, thresholds and E0 from the annual file)"] = _settings_hash(ustar_keys)
    if run is not None:
        hashes["budget run settings (from its record)"] = run.settings_hash
    engines = {"report": f"sinkwatch {__version__}",
               "budget": run.engine if run is not None else
               "not recorded in the budget files (give sinkwatch flux budget --record FILE and --budget-record FILE)"}
    when = (generated_at or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    provenance = Provenance(
        stations=[StationInfo(s) for s in stations], coverage=coverage, engines=engines, settings_hashes=hashes,
        inputs=inputs, generated_at=when.isoformat().replace("+00:00", "Z"),
        notes=[*notes, "built from files: stations and sensors are those named on the command line"])
    info = SiteInfo(site=site, year=year, name=name, lat=lat, lon=lon, utc_offset_h=utc_offset_h)
    return SiteReportData(info, budget, provenance, soil, stems, carbon)
