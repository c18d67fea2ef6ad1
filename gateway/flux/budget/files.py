"""Reading and writing the budget's CSV files (the I/O beside the pure budget functions).

Input: a half-hourly (or hourly) table with a header row, ``-9999`` (or an empty field, ``NA``) for missing, comma-,
semicolon-, tab- or blank-separated, plain or gzip-compressed, UTF-8 or Windows-1252 text (the latter with a note).
Five layouts of the time are read (docs/budget.md, "The input file"):

- FLUXNET/AmeriFlux: ``TIMESTAMP_START`` and ``TIMESTAMP_END`` as ``YYYYMMDDHHMM`` on the station's standard-time
  clock, or as ``YYYY-MM-DD HH:MM`` (an AmeriFlux BASE file's ``# Site:``/``# Version:`` lines before the header
  are skipped); a file with only
  one of them (the European Fluxes Database / ICOS "europe-fluxdata" files carry ``TIMESTAMP_END`` only) gets the
  other from the records' step.
- diive's files: ``TIMESTAMP_MIDDLE``, the middle of the period (start and end half a step either side).
- ICOS teaching/PI files: ``date`` (YYYY-MM-DD, DD/MM/YYYY or MM/DD/YYYY, told apart by a day above 12) and
  ``time`` (HH:MM), the stamp marking the *end* of the period as TIMESTAMP_END does.
- REddyProc / MPI-BGC online gap-filling tool: ``Year`` (or ``--year`` when the file has none), ``DoY`` (or ``Day``)
  and ``Hour`` (decimal hours, 0.5 … 24), the stamp marking the *end* of the period (REddyProc manual,
  ``fGetBeginOfEddyPeriod``: "The timestamp of an Eddy record denotes the end of a half-hour period"); an optional
  second header row of units is skipped.

Columns: ``NEE`` (or ``FC``, optionally ``SC``), ``SW_IN`` (W m-2), ``TA`` (°C), ``VPD`` (hPa; from ``RH`` and TA
when absent), optional ``USTAR`` (m s-1). A name is found as it is, with the FLUXNET ``_PI`` suffix (``NEE_PI``,
the PI's own version), with an AmeriFlux position qualifier (``TA_1_1_1``, ``NEE_PI_1_1_1``: the first such column
is taken), or under the online tool's name (``Rg``, ``Tair``, ``Ustar``, ``rH``). The flux's quality flag, 0/1/2 of
Mauder & Foken (2004) (``FC_SSITC_TEST``, the online tool's ``qcNEE``), removes NEE above ``max_flux_flag`` (1, as
the station mode's ``budget.max_flux_flag``). The AmeriFlux BASE CSV of ``sinkwatch flux ec`` reads as it is
(``FC``, ``TA``, ``VPD``, ``USTAR``, ``CO2``, ``PA``; its text columns are ignored); it has no ``SW_IN``, which
``--met FILE`` adds from a second file of the same kind (columns of the met file fill the ones the main file lacks,
matched by time).

A FLUXNET2015/ONEFlux product (FULLSET or SUBSET, ``_HH`` or ``_HR``; the ICOS and AmeriFlux FLUXNET products) has
no NEE or FC: NEE is ``NEE_VUT_REF`` (else ``NEE_CUT_REF``) where its ``_QC`` is 0 (measured); the records ONEFlux
filled are missing, for our own u* filter and MDS to fill. Without the ``_QC`` column such a file is refused. Its
drivers, when the plain names are absent, are the gap-filled ``SW_IN_F``/``TA_F``/``VPD_F`` (else ``_F_MDS``).

Every check names the column or row and the fix (:class:`BudgetFileError`): unreadable or empty file, missing
columns, malformed numbers or time stamps, duplicated or unsorted records, steps other than 30 or 60 min, units that
cannot be right (VPD in kPa or Pa, TA in K, SW_IN out of range, NEE not in µmol m-2 s-1), drivers without any value,
no night at all. Missing half hours inside the record are inserted as missing values (counted).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import math
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

import numpy as np
from numpy.typing import NDArray

from gateway.flux.budget.aggregate import Aggregates
from gateway.flux.budget.storage import storage_single_level

__all__ = [
    "HALFHOURLY_COLUMNS",
    "BudgetFileError",
    "BudgetInput",
    "file_sha256",
    "read_budget_csv",
    "run_record",
    "write_aggregates_csv",
    "write_halfhourly_csv",
]

MISSING = -9999.0
HALFHOURLY_COLUMNS = (
    "NEE", "NEE_F", "NEE_F_QC", "NEE_F_RANDUNC", "NEE_F_RANDUNC_METHOD", "NEE_F_RANDUNC_N", "NEE_F_FSD",
    "NEE_F_FNUM", "USTAR_THRESHOLD", "USTAR_FILTER", "NEE_U05_F", "NEE_U50_F", "NEE_U95_F",
    "TA_F", "TA_F_QC", "SW_IN_F", "SW_IN_F_QC", "VPD_F", "VPD_F_QC", "SW_IN_POT", "NIGHT",
    "RECO_NT", "GPP_NT", "NT_QC", "RECO_DT", "GPP_DT", "DT_QC",
)
"""The half-hourly output columns, in the order the command's OUT file has them (those the run produced)."""
_QUALIFIED = re.compile(r"^(?P<name>[A-Z][A-Z0-9_]*?)(_\d+_\d+_\d+)$")


class BudgetFileError(ValueError):
    """The input file cannot be used; the message names the file, column or row and the fix."""


@dataclass
class BudgetInput:
    """Columns of an input file on a regular grid. ``time_start_s``: seconds since 1970-01-01 of the station's
    standard-time clock. ``rows``: index of each input row in the grid (inserted missing half hours are not
    rows). ``stamps``: the input's (TIMESTAMP_START, TIMESTAMP_END) strings per row. ``sources``: each file read
    (the input, then the met file) as (name, SHA-256 of its bytes as stored, layout of its time columns)."""

    time_start_s: NDArray[np.float64]
    columns: dict[str, NDArray[np.float64]]
    rows: NDArray[np.intp]
    stamps: list[tuple[str, str]]
    step_s: float
    notes: list[str] = field(default_factory=list)
    sources: list[tuple[str, str, str]] = field(default_factory=list)
    prefiltered: str | None = None
    """The FLUXNET2015/ONEFlux product column NEE came from: already u*-filtered by ONEFlux."""


_ISO_STAMP = re.compile(r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::00)?")
"""A stamp as pandas or a spreadsheet writes it, 2024-01-01 00:30[:00] (or with T): read like YYYYMMDDHHMM."""


def _parse_stamp(text: str, path: Path, row: int, column: str) -> datetime:
    given = text
    if text.endswith(".0"):  # written through a float column by a spreadsheet or pandas
        text = text[:-2]
    if (iso := _ISO_STAMP.fullmatch(text)) is not None:
        text = "".join(iso.groups())
    try:
        if len(text) != 12 or not text.isdigit():
            raise ValueError
        return datetime.strptime(text, "%Y%m%d%H%M").replace(tzinfo=UTC)
    except ValueError:
        text = given
        raise BudgetFileError(f"{path}: row {row}, {column} {text!r} is not a time stamp YYYYMMDDHHMM (or "
                              "YYYY-MM-DD HH:MM); write it like 202401010030") from None


_ALIASES = {"SW_IN": "Rg", "TA": "Tair", "USTAR": "Ustar", "RH": "rH", "PPFD_IN": "PPFD"}
"""The MPI-BGC online gap-filling tool's and REddyProc's names of the FLUXNET variables (REddyProc's
``sEddyProc_initialize`` defaults: NEE, Rg, Tair, VPD, Ustar)."""
PPFD_TO_SW_IN = 0.52
"""W m-2 of incoming shortwave radiation per µmol m-2 s-1 of PPFD: ONEFlux's default when a site has PPFD_IN but no
SW_IN (Pastorello et al. 2020; `qc_auto`, which accepts 0.48-0.56 when it regresses SW_IN on PPFD_IN)."""
_FLUX_FLAGS = ("FC_SSITC_TEST", "NEE_SSITC_TEST", "qcNEE")
"""Quality flags of the flux, 0/1/2 of Mauder & Foken (2004): AmeriFlux/ICOS names, the online tool's."""
_DAY_COLUMNS = ("DoY", "DOY", "Day")
PRODUCT_NEE = ("NEE_VUT_REF", "NEE_CUT_REF")
"""NEE of a FLUXNET2015/ONEFlux product (FULLSET, SUBSET; ICOS and AmeriFlux FLUXNET products), in the order taken:
the variable and the constant u* threshold's reference NEE (FLUXNET2015 FULLSET Data Product page; Pastorello et al.
2020). Each comes u*-filtered and gap-filled; its ``_QC`` column (0 measured, 1-3 gap-filling quality) tells the
measured records from the filled ones."""
PRODUCT_DRIVERS = {"SW_IN": ("SW_IN_F", "SW_IN_F_MDS"), "TA": ("TA_F", "TA_F_MDS"), "VPD": ("VPD_F", "VPD_F_MDS")}
"""A product's gap-filled drivers, taken when the plain name is absent: ``_F`` (MDS, long gaps from the ERA-Interim
downscaling), else ``_F_MDS`` (MDS only); VPD in hPa (FLUXNET2015 FULLSET Data Product page)."""


def _split_lines(text: str) -> list[list[str]]:
    """Rows of a comma-, semicolon-, tab- or blank-separated table; the separator is the header's. Comment lines
    before the header are skipped (AmeriFlux BASE files open with ``# Site: US-Ha1`` and ``# Version: 1-5``)."""
    lines = text.splitlines()
    start = 0
    while start < len(lines) and (not lines[start].strip() or lines[start].lstrip().startswith("#")):
        start += 1
    lines = lines[start:]
    first = lines[0] if lines else ""
    for delimiter in ("\t", ",", ";"):
        if delimiter in first:
            return list(csv.reader(lines, delimiter=delimiter))
    return [line.split() for line in lines]


_MISSING_TEXTS = frozenset(("", "NA", "NAN", "N/A", "#N/A", "NULL", "NONE", "-"))
"""Fields read as missing besides -9999 (any case): empty, R's and pandas' NA/NaN, spreadsheets' #N/A."""
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
"""A decimal number as a data row writes it (a units row has none: ``--``, ``umolm-2s-1``, ``degC``)."""


def _decode(path: Path, raw: bytes) -> tuple[str, str | None]:
    """The text of a table file's bytes and, when it is not UTF-8, a note saying how it was read. A file that is not
    UTF-8 but decodes as Windows-1252 without NUL bytes (a units row with ``°C`` or ``µmol`` written on Windows, or
    the non-breaking spaces of ICOS's teaching files) is read as Windows-1252: its numbers and names are ASCII either
    way. Anything else is refused naming the line and the fix."""
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        byte = raw[exc.start]
    if b"\x00" not in raw:
        try:
            text = raw.decode("cp1252")
        except UnicodeDecodeError:
            pass
        else:
            return text, (f"{path.name}: read as Windows-1252 text, not UTF-8 (byte 0x{byte:02x} on line {line}); "
                          "only the header's and units' text can differ")
    raise BudgetFileError(f"{path}: not a text table: byte 0x{byte:02x} on line {line} is neither UTF-8 nor "
                          "Windows-1252 text; save the table as a UTF-8 CSV (plain or gzip-compressed)")


def _read_table(path: Path) -> tuple[list[str], list[list[str]], str, str | None]:
    """Header, records, the SHA-256 of the bytes of a table file (module docstring), gzip-compressed or not, and a
    note when it was not UTF-8 text (:func:`_decode`); a second header row of units (no field a number, as in the
    online tool's files) is dropped."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BudgetFileError(f"{path}: cannot read the file: {exc.strerror or exc}") from None
    digest = hashlib.sha256(raw).hexdigest()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, gzip.BadGzipFile, zlib.error):
            raise BudgetFileError(f"{path}: not a text table (UTF-8 CSV, plain or gzip-compressed: a damaged or cut "
                                  "gzip file?)") from None
    text, encoding_note = _decode(path, raw)
    rows = [r for r in _split_lines(text) if r and any(c.strip() for c in r)]
    if not rows:
        raise BudgetFileError(f"{path}: the file is empty; it needs a header row and half-hourly records")
    header = [h.strip() for h in rows[0]]
    body = rows[1:]
    if body and not any(_NUMBER.match(c.strip()) for c in body[0]):
        body = body[1:]
    return header, body, digest, encoding_note


def _column_index(header: Sequence[str], name: str) -> int | None:
    """Where ``name`` is (module docstring): as it is, with ``_PI``, with a position qualifier, or the online tool's
    name."""
    for candidate in (name, f"{name}_PI"):
        if candidate in header:
            return header.index(candidate)
    for i, h in enumerate(header):
        m = _QUALIFIED.match(h)
        if m and m.group("name") in (name, f"{name}_PI"):
            return i
    alias = _ALIASES.get(name)
    if alias is not None and alias in header:
        return header.index(alias)
    return None


def _cell(row: Sequence[str], index: int) -> str:
    return row[index].strip() if index < len(row) else ""


def _step_of(path: Path, times: Sequence[datetime], what: str) -> timedelta:
    if len(times) < 2:
        raise BudgetFileError(f"{path}: {len(times)} records; a budget needs at least 14 days of half-hourly records")
    step = float(np.median(np.diff([t.timestamp() for t in times])))
    if step not in (1800.0, 3600.0):
        raise BudgetFileError(f"{path}: records are {step / 60:.0f} min apart ({what}); give half-hourly (or hourly) "
                              "records")
    return timedelta(seconds=step)


def _day_hour_ends(path: Path, header: Sequence[str], body: Sequence[Sequence[str]],
                   year: int | None) -> list[datetime]:
    i_day = next(header.index(c) for c in _DAY_COLUMNS if c in header)
    i_hour = header.index("Hour")
    i_year = header.index("Year") if "Year" in header else None
    if i_year is None and year is None:
        raise BudgetFileError(f"{path}: the records have {header[i_day]} and Hour but no Year column; give the year "
                              "with --year")
    ends = []
    for k, row in enumerate(body):
        texts = (_cell(row, i_year) if i_year is not None else str(year), _cell(row, i_day), _cell(row, i_hour))
        try:
            y, day, hour = int(float(texts[0])), float(texts[1]), float(texts[2])
            if day != int(day) or not 1 <= day <= 366 or not 0 <= hour <= 24:
                raise ValueError
            ends.append(datetime(y, 1, 1, tzinfo=UTC) + timedelta(days=int(day) - 1, hours=hour))
        except (ValueError, OverflowError):
            raise BudgetFileError(f"{path}: row {k + 2}: Year {texts[0]!r}, {header[i_day]} {texts[1]!r}, Hour "
                                  f"{texts[2]!r} is not a time: the day of year is 1-366, the hour 0.5-24 (end of the "
                                  "period)") from None
    return ends


def _record_times(path: Path, header: Sequence[str], body: Sequence[Sequence[str]],
                  year: int | None) -> tuple[list[datetime], list[datetime], str]:
    """Start and end of each record (module docstring's layouts) and the layout's name for the notes."""
    has_start, has_end = "TIMESTAMP_START" in header, "TIMESTAMP_END" in header
    if has_start or has_end:
        starts = ends = None
        if has_start:
            i = header.index("TIMESTAMP_START")
            starts = [_parse_stamp(_cell(r, i), path, k + 2, "TIMESTAMP_START") for k, r in enumerate(body)]
        if has_end:
            i = header.index("TIMESTAMP_END")
            ends = [_parse_stamp(_cell(r, i), path, k + 2, "TIMESTAMP_END") for k, r in enumerate(body)]
        if starts is not None and ends is not None:
            return starts, ends, "TIMESTAMP_START/TIMESTAMP_END"
        if starts is not None:
            step = _step_of(path, starts, "TIMESTAMP_START")
            return starts, [s + step for s in starts], "TIMESTAMP_START (TIMESTAMP_END from the step)"
        assert ends is not None
        step = _step_of(path, ends, "TIMESTAMP_END")
        return [e - step for e in ends], ends, "TIMESTAMP_END (TIMESTAMP_START from the step)"
    if "TIMESTAMP_MIDDLE" in header:  # diive's files: the middle of the period
        i = header.index("TIMESTAMP_MIDDLE")
        mids = [_parse_stamp(_cell(r, i), path, k + 2, "TIMESTAMP_MIDDLE") for k, r in enumerate(body)]
        step = _step_of(path, mids, "TIMESTAMP_MIDDLE")
        return [m - step / 2 for m in mids], [m + step / 2 for m in mids], "TIMESTAMP_MIDDLE (the period's middle)"
    if "Hour" in header and any(c in header for c in _DAY_COLUMNS):
        ends = _day_hour_ends(path, header, body, year)
        step = _step_of(path, ends, "Hour")
        return [e - step for e in ends], ends, "day of year and Hour (end of the period)"
    lowered = [c.lower() for c in header]
    if "date" in lowered and "time" in lowered:
        ends = _date_time_ends(path, header, body, lowered.index("date"), lowered.index("time"))
        step = _step_of(path, ends, "date and time")
        return [e - step for e in ends], ends, "date and time (end of the period)"
    raise BudgetFileError(f"{path}: no time columns in the header row {','.join(header[:6])}…; the input needs "
                          "TIMESTAMP_START and TIMESTAMP_END as YYYYMMDDHHMM (FLUXNET), Year, DoY and Hour "
                          "(REddyProc), or date and time (end of the period)")


def _date_order(path: Path, column: str, dates: Sequence[str]) -> str:
    """How the `date` column writes a day: ``ymd`` (2016-01-31), ``dmy`` or ``mdy`` (31/01/2016, 01/31/2016; the
    order told by a first or second field above 12, as a year of days has)."""
    parts = [re.split(r"[-/.]", d) for d in dates if d]
    if parts and all(len(p) == 3 and len(p[0]) == 4 for p in parts):
        return "ymd"
    if parts and all(len(p) == 3 and len(p[2]) == 4 for p in parts):
        try:
            first_big = any(int(p[0]) > 12 for p in parts)
            second_big = any(int(p[1]) > 12 for p in parts)
        except ValueError:
            first_big = second_big = False
        if first_big != second_big:
            return "dmy" if first_big else "mdy"
        raise BudgetFileError(f"{path}: column {column}: cannot tell day from month in {dates[0]!r} (no day above "
                              "12 in either place); write the dates as YYYY-MM-DD")
    example = next((d for d in dates if d), "")
    raise BudgetFileError(f"{path}: column {column}: {example!r} is not a date as YYYY-MM-DD, DD/MM/YYYY or "
                          "MM/DD/YYYY")


def _date_time_ends(path: Path, header: Sequence[str], body: Sequence[Sequence[str]], i_date: int,
                    i_time: int) -> list[datetime]:
    """Ends of the records from a `date` column and a `time` column (HH:MM[:SS], 24:00 the day's end), the stamp
    marking the end of the period as in the europe-fluxdata/ICOS files' TIMESTAMP_END (a file whose stamps mark the
    start shows as half an hour off the sun: the clock note of `solar.radiation_time_offset_h`)."""
    dates = [_cell(r, i_date) for r in body]
    order = _date_order(path, header[i_date], dates)
    ends = []
    for k, (date_text, row) in enumerate(zip(dates, body, strict=True)):
        time_text = _cell(row, i_time)
        try:
            a, b, c = (int(x) for x in re.split(r"[-/.]", date_text))
            y, m, d = {"ymd": (a, b, c), "dmy": (c, b, a), "mdy": (c, a, b)}[order]
            hms = [int(x) for x in time_text.split(":")]
            if not 2 <= len(hms) <= 3 or not (0 <= hms[0] <= 24 and 0 <= hms[1] < 60):
                raise ValueError
            ends.append(datetime(y, m, d, tzinfo=UTC) + timedelta(hours=hms[0], minutes=hms[1],
                                                                  seconds=hms[2] if len(hms) == 3 else 0))
        except (ValueError, OverflowError):
            raise BudgetFileError(f"{path}: row {k + 2}: {header[i_date]} {date_text!r}, {header[i_time]} "
                                  f"{time_text!r} is not a time: a date ({order}) and HH:MM at the end of the period"
                                  ) from None
    return ends


MAX_MAGNITUDE = 1e30
"""A cell beyond ±MAX_MAGNITUDE (or infinite) is no measurement in any unit of these tables; one such NEE cell made
the annual sums overflow to a missing NEE ("0 records not gap-filled"). Read as missing, and said so."""


def _numbers(path: Path, header: Sequence[str], body: Sequence[Sequence[str]], name: str,
             notes: list[str] | None = None) -> NDArray[np.float64]:
    """The column's numbers, NaN where missing; cells that are infinite or beyond ±MAX_MAGNITUDE are missing too,
    and a note in `notes` names the column, their number and the first one."""
    col = _column_index(header, name)
    assert col is not None
    out = np.full(len(body), np.nan)
    absurd: list[tuple[int, str]] = []
    for r, row in enumerate(body):
        text = row[col].strip() if col < len(row) else ""
        if text.upper() in _MISSING_TEXTS:
            continue
        try:
            value = float(text)
        except ValueError:
            raise BudgetFileError(f"{path}: row {r + 2}, column {header[col]}: {text!r} is not a number; use "
                                  "-9999 for a missing value") from None
        if not -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:  # also NaN and infinities
            if not math.isnan(value):
                absurd.append((r + 2, text))
        elif value != MISSING:
            out[r] = value
    if absurd and notes is not None:
        first_row, first_text = absurd[0]
        notes.append(f"{path.name}, column {header[col]}: {len(absurd)} cell(s) infinite or beyond ±{MAX_MAGNITUDE:g} "
                     f"read as missing (the first: row {first_row}, {first_text[:40]!r}); check the file's source")
    return out


def _driver_column(header: Sequence[str], name: str) -> str | None:
    """The header's column for ``name`` (:func:`_column_index`), else a product's gap-filled driver
    (:data:`PRODUCT_DRIVERS`)."""
    idx = _column_index(header, name)
    if idx is not None:
        return name
    return next((alt for alt in PRODUCT_DRIVERS.get(name, ()) if alt in header), None)


def _product_nee(path: Path, header: Sequence[str], body: Sequence[Sequence[str]],
                 grid: Callable[[NDArray[np.float64]], NDArray[np.float64]]) -> tuple[NDArray[np.float64], str, str]:
    """NEE of a FLUXNET2015/ONEFlux product where its ``_QC`` is 0 (measured), missing where ONEFlux filled it, the
    column's name and a note; refused without a quality column (:data:`PRODUCT_NEE`)."""
    column = next((c for c in PRODUCT_NEE if c in header and f"{c}_QC" in header), None)
    if column is None:
        found = next((c for c in PRODUCT_NEE if c in header),
                     next(h for h in header if h.startswith(("NEE_VUT_", "NEE_CUT_"))))
        raise BudgetFileError(
            f"{path}: no NEE or FC column, and {found} without its quality column {found}_QC: a FLUXNET2015/ONEFlux "
            "product's NEE is gap-filled, and only NEE_VUT_REF_QC (or NEE_CUT_REF_QC; 0 = measured) tells the "
            "measured records from the filled ones; give the product file with that column (the FULLSET and SUBSET "
            "files have it) or the site's BASE file (FC, SC)")
    absurd: list[str] = []
    values = grid(_numbers(path, header, body, column, absurd))
    qc = grid(_numbers(path, header, body, f"{column}_QC", absurd))
    measured = np.isfinite(values) & (qc == 0.0)
    nee = np.where(measured, values, np.nan)
    n, filled = int(measured.sum()), int((np.isfinite(values) & ~measured).sum())
    note = (f"NEE from {column} where {column}_QC is 0 (measured): {n} records ({n / values.size:.0%}); its {filled} "
            "gap-filled values are not used. The product has already removed the records below its own u* "
            "thresholds (FLUXNET2015/ONEFlux); our u* filter and gap filling run again on the measured records")
    return nee, column, "; ".join([note, *absurd])


def _saturation_vapour_pressure_hpa(ta: NDArray[np.float64]) -> NDArray[np.float64]:
    """Magnus formula over water (FAO-56 eq. 11), hPa from °C; only used to check VPD's unit."""
    result: NDArray[np.float64] = 6.108 * np.exp(17.27 * ta / (ta + 237.3))
    return result


def _check_units(path: Path, cols: dict[str, NDArray[np.float64]], names: dict[str, str]) -> None:
    def fail(name: str, message: str) -> None:
        raise BudgetFileError(f"{path}: column {names.get(name, name)}: {message}")

    for name in ("SW_IN", "TA"):  # VPD may be missing throughout (run_budget's reduced method)
        if not np.isfinite(cols[name]).any():
            fail(name, "has no values (all missing); the budget needs it measured for most of the record")
    ta, vpd, sw = cols["TA"], cols["VPD"], cols["SW_IN"]
    if np.nanmedian(ta) > 200.0:
        fail("TA", f"median {np.nanmedian(ta):.1f} looks like kelvin; give °C (subtract 273.15)")
    if np.nanmax(ta) > 60.0 or np.nanmin(ta) < -60.0:
        fail("TA", f"values from {np.nanmin(ta):.1f} to {np.nanmax(ta):.1f} are not air temperatures in °C")
    if np.nanmin(sw) < -50.0 or np.nanmax(sw) > 1500.0:
        fail("SW_IN", f"values from {np.nanmin(sw):.0f} to {np.nanmax(sw):.0f} are not incoming shortwave radiation "
                      "in W m-2")
    if np.isfinite(vpd).any() and np.nanmin(vpd) < -5.0:
        fail("VPD", f"negative values down to {np.nanmin(vpd):.1f}; VPD is a saturation deficit in hPa (≥ 0)")
    both = np.isfinite(ta) & np.isfinite(vpd) & (ta > 5.0)
    if both.sum() > 48:
        ratio = vpd[both] / _saturation_vapour_pressure_hpa(ta[both])
        top = float(np.percentile(ratio, 99))
        if top > 1.5:
            fail("VPD", f"exceeds the saturation vapour pressure at TA by a factor {top:.0f}: is it in Pa? give hPa "
                        "(divide by 100)")
        if top < 0.12:
            fail("VPD", f"the largest values ({np.nanmax(vpd):.2f}) are below an eighth of the saturation vapour "
                        "pressure at TA, as if the air were always above 88 % relative humidity: VPD looks like "
                        "kPa; give hPa (multiply by 10)")
    if "USTAR" in cols and np.isfinite(cols["USTAR"]).any():
        mid = float(np.nanmedian(cols["USTAR"]))
        if mid > 3.0:  # spikes happen in real data (DE-Tha 1998 reaches 8); a median this high is another unit
            fail("USTAR", f"median {mid:.1f}: not a friction velocity in m s-1 (cm s-1? divide by 100)")
    nee = cols["NEE"]
    if not np.isfinite(nee).any():
        fail("NEE", "has no values (all missing)")
    p99 = float(np.nanpercentile(np.abs(nee), 99))
    if p99 > 100.0:
        fail("NEE", f"99 % of |NEE| reach {p99:.0f}: not µmol CO2 m-2 s-1 (mg m-2 s-1 × 22.7 gives µmol)")
    if p99 < 0.5:
        fail("NEE", f"99 % of |NEE| stay below {p99:.2f}: looks like mg CO2 m-2 s-1 or mol; give µmol CO2 m-2 s-1")
    with np.errstate(invalid="ignore"):
        if not (sw < 10.0).any():
            fail("SW_IN", "never below 10 W m-2: no night in the record (or SW_IN has an offset); the u* filter and "
                          "the nighttime partitioning need nights")


def _grid_positions(t0: float, step: float, n: int, times: NDArray[np.float64]) -> tuple[NDArray[np.intp],
                                                                                          NDArray[np.bool_]]:
    pos = np.round((times - t0) / step)
    inside = (pos >= 0) & (pos < n) & (np.mod(times - t0, step) == 0)
    return pos.astype(np.intp), inside


def read_budget_csv(path: Path | str, *, met: Path | str | None = None,
                    storage_height_m: float | None = None, year: int | None = None,
                    max_flux_flag: int = 1) -> BudgetInput:
    """Read and check an input file (module docstring). ``met``: a second file whose columns (SW_IN, TA, VPD,
    USTAR, …) fill what ``path`` lacks. ``storage_height_m``: compute SC from the file's CO2 (µmol mol-1), TA and PA
    (kPa) at this height when the file has FC and no NEE/SC (single-level storage, `storage.py`). ``year``: the
    calendar year of a file with a day of year and Hour but no Year column. ``max_flux_flag``: NEE whose quality
    flag (0/1/2) is above it is removed."""
    p = Path(path)
    header, body, digest, encoding_note = _read_table(p)
    if year is not None and ("Year" in header or not ("Hour" in header and any(c in header for c in _DAY_COLUMNS))):
        raise BudgetFileError(f"{p}: --year {year} is for a file with a day of year and Hour but no Year column; "
                              "this file's records carry their own dates: leave --year out (to budget one year of "
                              "a longer file, give that year's records)")
    starts, ends, layout = _record_times(p, header, body, year)
    if len(starts) < 2:
        raise BudgetFileError(f"{p}: {len(starts)} records; a budget needs at least 14 days of half-hourly records")
    for k in range(1, len(starts)):
        if starts[k] == starts[k - 1]:
            raise BudgetFileError(f"{p}: rows {k + 1} and {k + 2} have the same TIMESTAMP_START "
                                  f"{starts[k]:%Y%m%d%H%M}; remove the duplicate")
        if starts[k] < starts[k - 1]:
            raise BudgetFileError(f"{p}: row {k + 2} (TIMESTAMP_START {starts[k]:%Y%m%d%H%M}) comes before row "
                                  f"{k + 1}; sort the records by time")
    diffs = np.diff([s.timestamp() for s in starts])
    step = _step_of(p, starts, "TIMESTAMP_START").total_seconds()
    for k, (s, e) in enumerate(zip(starts, ends, strict=True)):
        if (e - s) != timedelta(seconds=step):
            raise BudgetFileError(f"{p}: row {k + 2}: TIMESTAMP_END {e:%Y%m%d%H%M} is not {step / 60:.0f} min after "
                                  f"TIMESTAMP_START {s:%Y%m%d%H%M}")
    bad = np.flatnonzero(np.mod(diffs, step) != 0)
    if bad.size:
        k = int(bad[0]) + 1
        raise BudgetFileError(f"{p}: row {k + 2} (TIMESTAMP_START {starts[k]:%Y%m%d%H%M}) is off the "
                              f"{step / 60:.0f}-min grid of the rows before it; align the records")
    t0 = starts[0].timestamp()
    rows = np.round((np.array([s.timestamp() for s in starts]) - t0) / step).astype(np.intp)
    n = int(rows[-1]) + 1
    time_start = t0 + step * np.arange(n, dtype=np.float64)
    notes: list[str] = [] if encoding_note is None else [encoding_note]
    sources = [(p.name, digest, layout)]
    if layout != "TIMESTAMP_START/TIMESTAMP_END":
        notes.append(f"record times from {layout}")
    if n > len(rows):
        notes.append(f"{n - len(rows)} missing records inside the time range were inserted as missing values")

    def grid(values: NDArray[np.float64]) -> NDArray[np.float64]:
        out = np.full(n, np.nan)
        out[rows] = values
        return out

    cols: dict[str, NDArray[np.float64]] = {}
    names: dict[str, str] = {}
    product_drivers: list[str] = []
    for name in ("NEE", "FC", "SC", "SW_IN", "PPFD_IN", "TA", "VPD", "RH", "USTAR", "CO2", "PA", *_FLUX_FLAGS):
        column = _driver_column(header, name)
        if column is not None:
            idx = _column_index(header, column)
            assert idx is not None
            cols[name] = grid(_numbers(p, header, body, column, notes))
            names[name] = header[idx]
            if column != name:
                product_drivers.append(f"{name} from {column}")
    if product_drivers:
        notes.append(f"{', '.join(product_drivers)}: a FLUXNET2015/ONEFlux product's gap-filled drivers (no plain "
                     "column); their filled values serve as measured drivers")
    if met is not None:
        mp = Path(met)
        mheader, mbody, mdigest, mencoding_note = _read_table(mp)
        if mencoding_note is not None:
            notes.append(mencoding_note)
        mstarts, _, mlayout = _record_times(mp, mheader, mbody, year)
        sources.append((mp.name, mdigest, mlayout))
        pos, inside = _grid_positions(t0, step, n, np.array([s.timestamp() for s in mstarts]))
        for name in ("SW_IN", "PPFD_IN", "TA", "VPD", "RH", "USTAR", "PA"):
            column = _driver_column(mheader, name)
            if name in cols or column is None:
                continue
            values = _numbers(mp, mheader, mbody, column, notes)
            out = np.full(n, np.nan)
            out[pos[inside]] = values[inside]
            cols[name] = out
            names[name] = f"{column} (from {mp.name})"
    if "NEE" in cols and not np.isfinite(cols["NEE"]).any() and "FC" in cols and np.isfinite(cols["FC"]).any():
        notes.append(f"{names.pop('NEE')} has no values: NEE from {names['FC']} (and SC) instead")
        del cols["NEE"]
    if "NEE" not in cols and "FC" not in cols and any(h.startswith(("NEE_VUT_", "NEE_CUT_")) for h in header):
        # a FLUXNET2015/ONEFlux product: its NEE was u*-filtered and gap-filled by ONEFlux; only measured records
        cols["NEE"], names["NEE"], note = _product_nee(p, header, body, grid)
        notes.append(note)
    if "NEE" not in cols:
        if "FC" not in cols:
            raise BudgetFileError(f"{p}: no NEE or FC column; give NEE (µmol CO2 m-2 s-1), or FC with SC")
        fc = cols["FC"]
        if "SC" not in cols and storage_height_m is not None:
            for name in ("CO2", "TA", "PA"):
                if name not in cols:
                    raise BudgetFileError(f"{p}: --storage-height needs a {name} column (CO2 µmol mol-1, TA °C, "
                                          "PA kPa) to compute the storage flux SC")
            cols["SC"] = storage_single_level(cols["CO2"], cols["TA"], cols["PA"], storage_height_m, period_s=step)
            notes.append(f"SC computed from the single-level CO2 at {storage_height_m} m (storage.py)")
        if "SC" in cols:
            sc = cols["SC"]
            use = np.isfinite(sc)
            cols["NEE"] = np.where(use, fc + np.where(use, sc, 0.0), fc)
            short = int((np.isfinite(fc) & ~use).sum())
            notes.append("NEE = FC + SC" + (f"; {short} records without SC use FC alone" if short else ""))
        else:
            cols["NEE"] = fc.copy()
            notes.append("NEE = FC: no storage term (no SC column; --storage-height computes it from CO2)")
        names["NEE"] = names["FC"]
    elif "FC" in cols:
        notes.append(f"NEE from {names['NEE']}; {names['FC']} not used (NEE is FC plus the storage flux: the file's "
                     "own NEE is taken)")
    flag_name = next((name for name in _FLUX_FLAGS if name in cols), None)
    if flag_name is not None:
        with np.errstate(invalid="ignore"):
            flagged = np.isfinite(cols["NEE"]) & (cols[flag_name] > max_flux_flag)
        if flagged.any():
            cols["NEE"] = np.where(flagged, np.nan, cols["NEE"])
            notes.append(f"{int(flagged.sum())} NEE values with {names[flag_name]} > {max_flux_flag} removed "
                         "(Mauder & Foken 2004 flags: 0 best, 1 good, 2 bad)")
    if ("VPD" not in cols or not np.isfinite(cols["VPD"]).any()) and "RH" in cols and "TA" in cols:
        with np.errstate(invalid="ignore"):
            rh = np.where((cols["RH"] >= 0.0) & (cols["RH"] <= 110.0), np.minimum(cols["RH"], 100.0), np.nan)
        cols["VPD"] = _saturation_vapour_pressure_hpa(cols["TA"]) * (1.0 - rh / 100.0)
        names["VPD"] = f"VPD (from {names['RH']} and {names['TA']})"
        notes.append(f"VPD computed from {names['RH']} and {names['TA']} (Magnus formula, FAO-56 eq. 11)")
    if ("SW_IN" not in cols or not np.isfinite(cols["SW_IN"]).any()) and "PPFD_IN" in cols \
            and np.isfinite(cols["PPFD_IN"]).any():
        what = "no SW_IN column" if "SW_IN" not in cols else f"{names['SW_IN']} has no values"
        cols["SW_IN"] = PPFD_TO_SW_IN * cols["PPFD_IN"]
        names["SW_IN"] = f"SW_IN (from {names['PPFD_IN']} x {PPFD_TO_SW_IN})"
        notes.append(f"{what}: SW_IN = {PPFD_TO_SW_IN} x {names['PPFD_IN']} (W m-2 from µmol m-2 s-1, ONEFlux's "
                     "default conversion; where it fits the ratio on a site's data it accepts 0.48 to 0.56)")
    if "VPD" not in cols and "TA" in cols:
        cols["VPD"] = np.full(n, np.nan)
        notes.append("no VPD or RH column: VPD missing throughout (the budget's notes say what that changes; give VPD "
                     "in hPa or RH in % for the full method)")
    for name in ("SW_IN", "TA"):
        if name not in cols:
            hint = (" or PPFD_IN (`sinkwatch flux ec` files have none: add it with --met FILE)" if name == "SW_IN"
                    else "")
            raise BudgetFileError(f"{p}: no {name} column{hint}; the budget needs NEE, SW_IN (W m-2), TA (°C) and VPD "
                                  f"(hPa or RH)")
    _check_units(p, cols, names)
    stamps = [(s.strftime("%Y%m%d%H%M"), e.strftime("%Y%m%d%H%M")) for s, e in zip(starts, ends, strict=True)]
    prefiltered = names["NEE"] if names["NEE"] in PRODUCT_NEE else None
    return BudgetInput(time_start, cols, rows, stamps, step, notes, sources, prefiltered)


RUN_RECORD_FORMAT = "sinkwatch-budget-run"
RUN_RECORD_VERSION = 1


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_record(data: BudgetInput, *, engine: str, settings: Mapping[str, object], notes: Sequence[str],
               outputs: Sequence[tuple[str, Path]], annual: Aggregates, created: datetime,
               ustar_years: Sequence[tuple[str, str, float]] = ()) -> dict[str, object]:
    """What a budget run read, how, what it wrote and what it found, for a verifier (``--record FILE``; docs/budget.md,
    "The run record"): the inputs' SHA-256 and time layout, the records' span, the settings and their hash, the
    notes, each output file's SHA-256 and the annual totals. ``outputs``: (option, path) of files already written.
    ``ustar_years``: (year, year whose nights gave it, threshold) when each year had its own u* threshold; each
    year's totals then carry ``USTAR_THRESHOLD`` and ``USTAR_THRESHOLD_YEAR``."""
    settings_text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    totals = [{"year": str(label), **{name: (None if not math.isfinite(v := float(annual.values[name][i])) else v)
                                      for name in ("NEE_F", "NEE_F_UNC", "N_RECORDS", "GAP_FRACTION")
                                      if name in annual.values}}
              for i, label in enumerate(annual.label)]
    by_year = {year: (source, threshold) for year, source, threshold in ustar_years}
    for entry in totals:
        if (found := by_year.get(str(entry["year"]))) is not None:
            entry["USTAR_THRESHOLD"] = found[1] if math.isfinite(found[1]) else None
            entry["USTAR_THRESHOLD_YEAR"] = found[0]
    return {
        "format": RUN_RECORD_FORMAT, "version": RUN_RECORD_VERSION, "engine": engine,
        "created_utc": created.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "inputs": [{"role": "input" if i == 0 else "met", "name": name, "sha256": sha, "layout": layout}
                   for i, (name, sha, layout) in enumerate(data.sources)],
        "records": {"rows": len(data.stamps), "first_start": data.stamps[0][0], "last_end": data.stamps[-1][1],
                    "step_s": data.step_s},
        "settings": settings,
        "settings_hash": hashlib.sha256(settings_text.encode()).hexdigest()[:16],
        "notes": list(notes),
        "outputs": [{"option": option, "name": path.name, "sha256": file_sha256(path)} for option, path in outputs],
        "annual": totals,
    }


def _fmt(value: float, integer: bool) -> str:
    if not math.isfinite(value):
        return "-9999"
    if integer:
        return str(round(value))
    return f"{value:.6g}"


_INTEGER_SUFFIXES = ("_QC", "_METHOD", "_N", "_FNUM", "_FMETH", "NIGHT", "USTAR_FILTER")


def write_halfhourly_csv(fh: TextIO, stamps: Sequence[tuple[str, str]], columns: dict[str, NDArray[np.float64]],
                         names: Sequence[str]) -> None:
    """One row per input record: TIMESTAMP_START, TIMESTAMP_END and ``names`` (-9999 missing, flags as integers)."""
    writer = csv.writer(fh, lineterminator="\n")
    writer.writerow(["TIMESTAMP_START", "TIMESTAMP_END", *names])
    integer = [n.endswith(_INTEGER_SUFFIXES) for n in names]
    arrays = [columns[n] for n in names]
    for i, (start, end) in enumerate(stamps):
        writer.writerow([start, end, *(_fmt(float(a[i]), k) for a, k in zip(arrays, integer, strict=True))])


def write_aggregates_csv(fh: TextIO, agg: Aggregates, *, label: str = "TIMESTAMP",
                         extra: Mapping[str, float | str | Sequence[float] | Sequence[str]] | None = None) -> None:
    """One row per period: ``label`` (YYYYMMDD / YYYYMM / YYYY), the aggregate columns, then ``extra`` (one value
    for every row, e.g. the u* threshold and its distribution, or a list of one value per row, e.g. a threshold per
    year)."""
    writer = csv.writer(fh, lineterminator="\n")
    names = list(agg.values)
    extras = extra or {}
    writer.writerow([label, *names, *extras])
    for i, lab in enumerate(agg.label):
        row = [lab, *(_fmt(float(agg.values[n][i]), n in ("N_RECORDS", "N_UNFILLED")) for n in names)]
        for v in extras.values():
            value = v[i] if isinstance(v, list | tuple) else v
            row.append(_fmt(float(value), False) if isinstance(value, float | int) else str(value))
        writer.writerow(row)
