"""File formats around the eddy-covariance engine: metadata and settings files, ASCII raw files, AmeriFlux CSV.

The engine (`gateway.flux.ec`) never touches files; this module turns files into `SiteMetadata`,
`ProcessingSettings` and `RawPeriod` objects and results into CSV. Formats:

* metadata: EddyPro `.metadata` (GHG_METADATA ini) or YAML with the fields of `SiteMetadata`;
* settings: EddyPro `.eddypro` (EDDYPRO_PROCESSING ini; the keys this engine knows) or YAML with the fields of
  `ProcessingSettings`;
* raw data: delimited text with a declared column map (EddyPro `col_N_*`), the period end (or start) in the file
  name as `yyyymmddHHMM`, or a time-stamp column;
* output: AmeriFlux BASE-format CSV (TIMESTAMP_START, TIMESTAMP_END as YYYYMMDDHHMM, -9999 for missing).
"""

from __future__ import annotations

import configparser
import csv
import gzip
import math
import re
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, TextIO, cast

import numpy as np
from pydantic import ValidationError

from gateway.configfile import ConfigError, describe_validation_error, load_yaml, read_small_text
from gateway.flux.ec.constants import R_GAS
from gateway.flux.ec.engine import PlanarFitSetup
from gateway.flux.ec.instruments import LI7200_STATUS_BITS, wboost
from gateway.flux.ec.period import RawPeriod
from gateway.flux.ec.planarfit import parse_eddypro_planar_fit
from gateway.flux.ec.result import OUTPUT_VARIABLES, FluxResult
from gateway.flux.ec.settings import EDDYPRO_CODES, ProcessingSettings, Rotation, SiteMetadata, SpectralCorrection
from gateway.flux.ec.spectral import SpectralAssessment, parse_spectral_assessment
from gateway.flux.eddypro import refuse_conflicting_keys, settings_from_project

MISSING = -9999

_OPEN_PATH_MODELS = ("li7500", "li7700", "ec150", "irgason")


def _num(value: str | None) -> float | None:
    if value is None or value.strip() == "":
        return None
    return float(value)


def parse_eddypro_metadata(text: str) -> dict[str, Any]:
    """Translate the text of an EddyPro `.metadata` file into a `SiteMetadata` mapping (not yet validated); a key
    given twice with different values is refused (`refuse_conflicting_keys`)."""
    refuse_conflicting_keys(text)
    ini = configparser.ConfigParser(interpolation=None, strict=False)
    ini.read_string(text.replace(";GHG_METADATA", ""))
    fd, site, timing, files, instr = (ini[s] if ini.has_section(s) else {} for s in
                                      ("FileDescription", "Site", "Timing", "Files", "Instruments"))
    columns: list[dict[str, Any]] = []
    i = 1
    while f"col_{i}_variable" in fd:
        var = fd[f"col_{i}_variable"].strip().lower()
        col: dict[str, Any] = {"index": i, "variable": var or "ignore",
                               "instrument": fd.get(f"col_{i}_instrument", ""),
                               "unit_in": fd.get(f"col_{i}_unit_in", "") or None}
        mt = fd.get(f"col_{i}_measure_type", "").strip()
        if mt:
            col["measure_type"] = mt
        for key in ("min_value", "max_value", "nom_timelag", "min_timelag", "max_timelag"):
            val = _num(fd.get(f"col_{i}_{key}"))
            if val is not None:
                col[key] = val
        conversion = fd.get(f"col_{i}_conversion", "").strip()
        if conversion:  # linear scaling: the values are in col_N_unit_out after it (EddyPro Help, "Linear scaling")
            col["linear_scaling"] = conversion
            for key in ("a_value", "b_value"):
                val = _num(fd.get(f"col_{i}_{key}"))
                if val is not None:
                    col[key] = val
            col["unit_in"] = fd.get(f"col_{i}_unit_out", "").strip() or None
        if col["variable"] in ("not_numeric", "ignore"):
            col = {"index": i, "variable": col["variable"]}
        columns.append(col)
        i += 1
    sonic = {"manufacturer": instr.get("instr_1_manufacturer", ""), "model": instr.get("instr_1_model", ""),
             "height": _num(instr.get("instr_1_height")), "wformat": instr.get("instr_1_wformat", "uvw") or "uvw",
             "wref": instr.get("instr_1_wref", "axis") or "axis",
             "north_offset": _num(instr.get("instr_1_north_offset")) or 0.0,
             "hpath_length": _num(instr.get("instr_1_hpath_length")),
             "vpath_length": _num(instr.get("instr_1_vpath_length")),
             "sw_version": instr.get("instr_1_sw_version", "").strip()}
    analyzer: dict[str, Any] | None = None
    if instr.get("instr_2_model"):
        model = instr["instr_2_model"].strip().lower()
        analyzer = {"manufacturer": instr.get("instr_2_manufacturer", ""), "model": model,
                    "path_type": "open" if model.startswith(_OPEN_PATH_MODELS) else "closed"}
        for key in ("northward_separation", "eastward_separation", "vertical_separation", "tube_length",
                    "tube_diameter", "tube_flowrate"):
            val = _num(instr.get(f"instr_2_{key}"))
            if val is not None:
                analyzer[key] = val
    out: dict[str, Any] = {
        "site_id": site.get("site_id", "") or site.get("site_name", "") or "site",
        "altitude": _num(site.get("altitude")),
        "latitude": _num(site.get("latitude")),
        "longitude": _num(site.get("longitude")) or 0.0,
        "canopy_height": _num(site.get("canopy_height")) or 0.0,
        "displacement_height": _num(site.get("displacement_height")) or None,
        "roughness_length": _num(site.get("roughness_length")) or None,
        "acquisition_frequency": _num(timing.get("acquisition_frequency")),
        "file_duration": _num(timing.get("file_duration")) or 30.0,
        "tstamp_end": (files.get("tstamp_end", "1").strip() or "1") == "1",
        "sonic": sonic,
        "file": {"separator": fd.get("separator", "comma"), "header_rows": int(_num(fd.get("header_rows")) or 0),
                 "columns": columns},
    }
    if analyzer is not None:
        out["analyzer"] = analyzer
    return out


def parse_eddypro_settings(text: str) -> dict[str, Any]:
    """Translate the text of an EddyPro `.eddypro` project file into a `ProcessingSettings` mapping: every key
    honoured, refused with its name, or documented as without effect (:mod:`gateway.flux.eddypro`)."""
    return settings_from_project(text)


def _read_text(path: Path) -> str:
    try:
        return read_small_text(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        if exc.object[:2] == b"\x1f\x8b":  # gzip's magic number: a raw data file given for metadata or settings
            raise ConfigError(f"{path}: gzip-compressed data, not a metadata or settings file (a raw data file?); "
                              "--metadata and --settings take text: an EddyPro .metadata/.eddypro file or YAML") \
                from None
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None


#: What tells the two kinds of file apart when one is given for the other: an EddyPro project's and a metadata
#: file's own section, and the keys of each YAML model.
_PROJECT_SECTIONS = ("[RawProcess_Settings]", "[Project]", "[RawProcess_General]")
_METADATA_SECTION = "[FileDescription]"
_SWAPPED = ("{path}: holds {kind} ({keys}), not {wanted}: give it to {option}, and give {wanted_option} {wanted} "
            "({wanted_keys}, ...)")


def _yaml_mapping(path: Path, text: str, wanted: str) -> dict[str, Any]:
    data = load_yaml(text, path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a YAML mapping of keys at the top level ({wanted}: an EddyPro file or "
                          f"YAML with the keys of docs/flux-ec.md), got {type(data).__name__}")
    return data


def _refuse_the_other_kind(path: Path, raw: Mapping[str, Any], model: type[SiteMetadata] | type[ProcessingSettings]
                           ) -> None:
    """A YAML file of the other kind (settings given as metadata, or the reverse) is named as such, instead of one
    'unknown key' per key of it."""
    other: type[SiteMetadata] | type[ProcessingSettings] = (ProcessingSettings if model is SiteMetadata
                                                            else SiteMetadata)
    keys = [str(k) for k in raw]
    if not keys or any(k in model.model_fields for k in keys) or not all(k in other.model_fields for k in keys):
        return
    names = {SiteMetadata: ("site metadata", "--metadata", "altitude, latitude, acquisition_frequency, sonic, file"),
             ProcessingSettings: ("processing settings", "--settings", "avrg_len, rot_meth, detrend_meth")}
    kind, option, _ = names[other]
    wanted, wanted_option, wanted_keys = names[model]
    raise ConfigError(_SWAPPED.format(path=path, kind=kind, keys=", ".join(keys[:4]) + (", ..." if len(keys) > 4
                                                                                         else ""),
                                      wanted=wanted, option=option, wanted_option=wanted_option,
                                      wanted_keys=wanted_keys))


def load_metadata(path: Path | str) -> SiteMetadata:
    """Read site/instrument metadata from an EddyPro `.metadata` file or a YAML file (by content)."""
    path = Path(path)
    text = _read_text(path)
    if _METADATA_SECTION not in text and any(section in text for section in _PROJECT_SECTIONS):
        raise ConfigError(f"{path}: an EddyPro project file (.eddypro): processing settings, not site metadata; give "
                          "it to --settings, and give --metadata the site metadata (EddyPro's .metadata file, or "
                          "YAML with altitude, latitude, acquisition_frequency, sonic, file, ...)")
    try:
        raw = parse_eddypro_metadata(text) if _METADATA_SECTION in text else _yaml_mapping(path, text, "metadata")
    except (configparser.Error, ValueError, OverflowError) as exc:  # OverflowError: int() of an infinite number
        raise ConfigError(f"{path}: cannot parse metadata: {exc}") from None
    try:
        return SiteMetadata.model_validate(raw)
    except ValidationError as exc:
        _refuse_the_other_kind(path, raw, SiteMetadata)
        raise ConfigError(describe_validation_error(path, exc, model=SiteMetadata)) from None


def load_settings(path: Path | str | None) -> ProcessingSettings:
    """Read processing settings from an EddyPro `.eddypro` file or a YAML file; None gives the defaults."""
    if path is None:
        return ProcessingSettings()
    path = Path(path)
    text = _read_text(path)
    if _METADATA_SECTION in text and "[RawProcess_Settings]" not in text:
        raise ConfigError(f"{path}: an EddyPro .metadata file: site metadata, not processing settings; give it to "
                          "--metadata, and give --settings the processing settings (an EddyPro .eddypro project, or "
                          "YAML with avrg_len, rot_meth, detrend_meth, ...), or leave --settings out for the defaults")
    try:
        raw = (parse_eddypro_settings(text) if "[RawProcess_Settings]" in text
               else _yaml_mapping(path, text, "settings"))
    except (configparser.Error, ValueError, OverflowError) as exc:  # OverflowError: int() of an infinite number
        raise ConfigError(f"{path}: cannot parse settings: {exc}") from None
    except ConfigError as exc:  # a refused or unknown EddyPro key: the message names it
        raise ConfigError(f"{path}: {exc}") from None
    try:
        return ProcessingSettings.model_validate(raw)
    except ValidationError as exc:
        _refuse_the_other_kind(path, raw, ProcessingSettings)
        raise ConfigError(describe_validation_error(path, exc, model=ProcessingSettings)) from None


def load_method_files(st: ProcessingSettings, settings: Path | None,
                      data_dir: Path | None) -> tuple[PlanarFitSetup | None, SpectralAssessment | None]:
    """The planar-fit sectors and the spectral assessment the settings name (None when not selected, or for a
    planar fit without a file, which the caller fits itself: `gateway.flux.ec.engine.fit_planar_fit`); relative
    paths are taken relative to the settings file, EddyPro's `DATA_DIR` placeholder is replaced by `data_dir`.
    Raises ConfigError naming an unreadable file."""
    def resolve(name: str) -> Path:
        if name.startswith("DATA_DIR") and data_dir is not None:
            return data_dir / name.removeprefix("DATA_DIR").lstrip("/\\")
        path = Path(name)
        return path if path.is_absolute() or settings is None else settings.parent / path

    pf = None
    if st.rot_meth in (Rotation.PLANAR_FIT, Rotation.PLANAR_FIT_NO_BIAS) and st.planar_fit_file:
        pf_path = resolve(st.planar_fit_file)
        try:
            parsed = parse_eddypro_planar_fit(read_small_text(pf_path))
        except OSError as exc:
            raise ConfigError(f"{pf_path}: cannot read the planar-fit file: {exc.strerror}") from None
        pf = PlanarFitSetup(parsed.sectors, subtract_b0=st.pf_subtract_b0)
    assessment = None
    if st.hf_meth in (SpectralCorrection.HORST_1997, SpectralCorrection.IBROM_2007,
                      SpectralCorrection.FRATINI_2012) and st.spectral_assessment_file:
        sa_path = resolve(st.spectral_assessment_file)
        try:
            assessment = parse_spectral_assessment(read_small_text(sa_path))
        except OSError as exc:
            raise ConfigError(f"{sa_path}: cannot read the spectral assessment: {exc.strerror}") from None
    return pf, assessment


_STAMP_RE = re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})[-_T]?(\d{2})(\d{2})(?!\d)")


def timestamp_from_name(name: str) -> datetime | None:
    """The first `yyyymmddHHMM` (optionally `yyyymmdd-HHMM`) in a file name, as a UTC datetime."""
    m = _STAMP_RE.search(name)
    if not m:
        return None
    year, month, day, hour, minute = (int(g) for g in m.groups())
    try:
        return datetime(year, month, day, hour, minute, tzinfo=UTC)
    except ValueError:
        return None


#: Variables the engine uses; other mapped columns (cell temperatures and pressures, ...) are not parsed.
ENGINE_VARIABLES = frozenset({"u", "v", "w", "ts", "co2", "h2o", "ch4", "n2o", "air_t", "air_p", "diag_sonic",
                              "diag_72", "diag_75", "diag_77", "cell_t", "int_t_1", "int_t_2", "int_p"})


def _open_raw(path: Path) -> BinaryIO:
    """A raw file for reading as bytes; a name ending in `.gz` is decompressed on the fly (loggers and our own
    archive write gzip, and an uncompressed half hour at 20 Hz is 3 MB)."""
    if path.suffix == ".gz":
        return cast(BinaryIO, gzip.open(path, "rb"))
    return path.open("rb")


#: What reading a raw file can raise besides bad content: a disk error, a truncated or corrupt gzip stream.
_READ_ERRORS = (OSError, EOFError, zlib.error)


def _unreadable(path: Path, exc: BaseException) -> str:
    return f"cannot read {path.name}: {getattr(exc, 'strerror', None) or exc}"


#: Above this magnitude a raw value is no measurement of any quantity the engine reads (wind, temperature, gas
#: amounts, pressure, diagnostic words < 2**32), and its fourth power (kurtosis) would overflow float64 in a sum.
NOT_A_MEASUREMENT = 1e30


def _read_columns(path: Path, md: SiteMetadata, issues: list[str]) -> dict[str, np.ndarray] | None:
    """Read the mapped numeric columns the engine uses; None (with a reason in ``issues``) when the file does not
    fit the map."""
    fd = md.file
    cols = [c for c in fd.columns if c.variable in ENGINE_VARIABLES]
    usecols = [c.index - 1 for c in cols]
    delim = fd.delimiter()
    try:
        with _open_raw(path) as fh:
            for _ in range(fd.header_rows):
                if not fh.readline():  # the end of the file: header_rows: 1000000000000000 was skipped forever
                    break
            first_line = fh.readline()
    except _READ_ERRORS as exc:
        issues.append(_unreadable(path, exc))
        return None
    if not first_line.strip():
        issues.append(f"{path.name}: no data rows after {fd.header_rows} header row(s)")
        return None
    first = first_line.decode("utf-8", "replace").split(delim)
    if max(usecols) >= len(first):
        issues.append(f"{path.name}: column map needs column {max(usecols) + 1} but the file has {len(first)} "
                      f"columns (separator {fd.separator!r}); check the metadata's column map")
        return None
    try:
        with _open_raw(path) as fh:
            arr = np.loadtxt(fh, delimiter=delim, skiprows=fd.header_rows, usecols=usecols, dtype=np.float64,
                             ndmin=2, comments=None)
    except _READ_ERRORS as exc:  # a truncated or corrupt .gz, a disk error mid-file
        issues.append(_unreadable(path, exc))
        return None
    except ValueError:
        try:
            with _open_raw(path) as fh:
                body = fh.read().splitlines()[fd.header_rows:]
        except _READ_ERRORS as exc:
            issues.append(_unreadable(path, exc))
            return None
        parsed = _tolerant_parse(body, delim, usecols, fd.missing_data_string, issues, path.name)
        if parsed is None:
            return None
        arr = parsed
    missing = float(fd.missing_data_string) if _is_number(fd.missing_data_string) else None
    if missing is not None:
        arr[arr == missing] = np.nan
    with np.errstate(invalid="ignore"):
        absurd = np.abs(arr) > NOT_A_MEASUREMENT
    if absurd.any():  # "inf", "1e400", "1e308": left in, one such cell turns every sum it enters into inf or NaN
        issues.append(f"{path.name}: {int(absurd.sum())} values infinite or beyond ±{NOT_A_MEASUREMENT:g} treated "
                      "as missing")
        arr[absurd] = np.nan
    out: dict[str, np.ndarray] = {}
    for j, col in enumerate(cols):
        factor, offset = col.conversion()
        x = arr[:, j]
        scaling = col.scaling()
        if scaling is not None:
            x = x * scaling[0] + scaling[1]
        if factor != 1.0 or offset != 0.0:
            x = x * factor + offset
        if col.min_value is not None or col.max_value is not None:
            lo = -math.inf if col.min_value is None else col.min_value
            hi = math.inf if col.max_value is None else col.max_value
            with np.errstate(invalid="ignore"):
                x = np.where((x < lo) | (x > hi), np.nan, x)
        out[col.variable] = np.ascontiguousarray(x)
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _tolerant_parse(body: Sequence[bytes], delim: str, usecols: list[int], missing: str, issues: list[str],
                    name: str) -> np.ndarray | None:
    """Row-by-row parsing for files numpy cannot read at once: unparsable cells and short rows become NaN and are
    counted in ``issues``."""
    rows = np.full((len(body), len(usecols)), np.nan)
    bad_cells = short_rows = 0
    for i, line in enumerate(body):
        parts = line.decode("utf-8", "replace").split(delim)
        if len(parts) <= max(usecols):
            short_rows += 1
            continue
        for j, c in enumerate(usecols):
            cell = parts[c].strip().strip('"')
            if cell == missing or cell == "":
                continue
            try:
                rows[i, j] = float(cell)
            except ValueError:
                bad_cells += 1
    if short_rows:
        issues.append(f"{name}: {short_rows} rows with too few columns treated as missing")
    if bad_cells:
        issues.append(f"{name}: {bad_cells} non-numeric values treated as missing")
    if short_rows == len(body):
        issues.append(f"{name}: no row has the columns the map needs")
        return None
    return rows


def read_raw_file(path: Path | str, metadata: SiteMetadata, settings: ProcessingSettings,
                  *, timestamps: Sequence[float] | np.ndarray | None = None) -> list[RawPeriod]:
    """Read one raw file and cut it into averaging periods of ``settings.avrg_len`` minutes.

    The file's time comes from ``timestamps`` (UNIX seconds per record, checked for monotonic increase and placed
    on the 1/fs grid, gaps filled with NaN) or from the `yyyymmddHHMM` in its name (period end when the metadata
    says `tstamp_end`). A file that cannot be read as declared gives one period with no data and the reason, which
    the engine turns into a failed result.
    """
    path = Path(path)
    md = metadata
    fs = md.acquisition_frequency
    issues: list[str] = []
    stamp = timestamp_from_name(path.name)
    data = _read_columns(path, md, issues) if path.exists() else None
    if not path.exists():
        issues.append(f"{path}: file not found")
    n = len(next(iter(data.values()))) if data else 0
    if timestamps is not None and data is not None:
        ts = np.asarray(timestamps, dtype=np.float64)
        if ts.size != n:
            issues.append(f"{path.name}: {ts.size} time stamps for {n} records")
            data = None
        else:
            steps = np.diff(ts)
            if (steps <= 0).any():
                first = int(np.flatnonzero(steps <= 0)[0]) + 1
                issues.append(f"{path.name}: time stamps not increasing (record {first + 1}); data not used")
                data = None
            else:
                idx = np.round((ts - ts[0]) * fs).astype(np.int64)
                size = int(idx[-1]) + 1
                if size != n:
                    issues.append(f"{path.name}: {size - n} records missing in time-stamp gaps")
                    data = {k: _scatter(a, idx, size) for k, a in data.items()}
                    n = size
                start0 = datetime.fromtimestamp(float(ts[0]), tz=UTC)
                stamp = start0 + timedelta(seconds=n / fs) if md.tstamp_end else start0
    if stamp is None:
        stamp = datetime(1970, 1, 1, tzinfo=UTC)
        issues.append(f"{path.name}: no yyyymmddHHMM time stamp in the file name; periods labelled from 1970-01-01")
    file_records = round(md.file_duration * 60.0 * fs)
    file_start = stamp - timedelta(minutes=md.file_duration) if md.tstamp_end else stamp
    per = round(settings.avrg_len * 60.0 * fs)
    periods: list[RawPeriod] = []
    if data is None:  # one failed period per averaging period the file should have held
        for i in range(max(1, round(md.file_duration / settings.avrg_len))):
            start = file_start + timedelta(minutes=settings.avrg_len * i)
            periods.append(RawPeriod(data={}, metadata=md, start=start,
                                     end=start + timedelta(minutes=settings.avrg_len), issues=list(issues),
                                     source=path.name, expected_records=per))
        return periods
    if n != file_records:
        issues.append(f"{path.name}: {n} records where {file_records} were expected "
                      f"({md.file_duration:g} min at {fs:g} Hz)")
    measure_types = {c.variable: c.measure_type for c in md.file.columns if c.measure_type}
    n_periods = max(1, math.ceil(max(n, file_records) / per))
    for i in range(n_periods):
        sl = slice(i * per, (i + 1) * per)
        chunk = {k: a[sl] for k, a in data.items()}
        start = file_start + timedelta(minutes=settings.avrg_len * i)
        periods.append(RawPeriod(data=chunk, metadata=md, start=start, end=start + timedelta(minutes=settings.avrg_len),
                                 measure_types=dict(measure_types), issues=list(issues), source=path.name,
                                 expected_records=per))
    return periods


def _scatter(values: np.ndarray, idx: np.ndarray, size: int) -> np.ndarray:
    out = np.full(size, np.nan)
    out[idx] = values
    return out


def _fmt(time: datetime) -> str:
    return time.strftime("%Y%m%d%H%M")


def result_columns(results: Iterable[FluxResult], base_only: bool = False) -> list[str]:
    """Output columns in the order of :data:`OUTPUT_VARIABLES`, restricted to those any result carries (a flux the
    engine attempted is carried even when it is missing)."""
    present: set[str] = set()
    for r in results:
        present.update(r.values)
    return ameriflux_columns(present, base_only)


def ameriflux_columns(present: Iterable[str], base_only: bool = False) -> list[str]:
    """The variable columns of an AmeriFlux file whose periods carry the variables `present`."""
    carried = set(present)
    return [n for n, var in OUTPUT_VARIABLES.items() if n in carried and (var.standard or not base_only)]


def ameriflux_header(cols: Sequence[str], base_only: bool = False) -> list[str]:
    return ["TIMESTAMP_START", "TIMESTAMP_END", *cols,
            *([] if base_only else ["ENGINE", "SETTINGS_HASH", "STATUS", "REASONS"])]


def ameriflux_cells(cols: Sequence[str], values: Mapping[str, float | int | None]) -> list[str]:
    """The variable cells of one period: -9999 for a missing value, flags and counts as integers, else 9
    significant digits."""
    missing = str(MISSING)
    get = values.get
    return [missing if (val := get(c)) is None or not math.isfinite(val) else
            str(int(val)) if c in _INTEGER_CELLS or c.endswith("_SSITC_TEST") else format(val, ".9g")
            for c in cols]


_INTEGER_CELLS = frozenset(("N_RECORDS", "N_USED"))


def write_ameriflux_csv(results: Sequence[FluxResult], path: Path | str | TextIO, *, base_only: bool = False) -> None:
    """AmeriFlux BASE-style CSV: TIMESTAMP_START, TIMESTAMP_END (YYYYMMDDHHMM), one column per variable, -9999 for
    missing. Unless ``base_only``, sinkwatch's diagnostic columns and the ENGINE, SETTINGS_HASH, STATUS and
    REASONS of each period follow. ``path`` may also be an open text stream (e.g. an HTTP response body)."""
    if not isinstance(path, Path | str):
        _write_ameriflux(results, path, base_only)
        return
    with Path(path).open("w", newline="", encoding="utf-8") as fh:
        _write_ameriflux(results, fh, base_only)


def _write_ameriflux(results: Sequence[FluxResult], fh: TextIO, base_only: bool) -> None:
    cols = result_columns(results, base_only)
    out = csv.writer(fh, lineterminator="\n")
    out.writerow(ameriflux_header(cols, base_only))
    for r in results:
        row: list[str] = [_fmt(r.start), _fmt(r.end), *ameriflux_cells(cols, r.values)]
        if not base_only:
            row += [r.engine_version, r.settings_hash, r.status, "; ".join(r.reasons)]
        out.writerow(row)


# --- EddyPro's result files ----------------------------------------------------------------------------------------

_M_H2O = 18.02e-3  # kg mol-1, as the engine


def _doy(t: datetime) -> float:
    """Day of year with the time of day as a fraction (EddyPro's DOY: 2019-07-30 12:00 → 211.5)."""
    start = datetime(t.year, 1, 1, tzinfo=t.tzinfo)
    return 1.0 + (t - start).total_seconds() / 86400.0


def _potential_radiation(r: FluxResult, metadata: SiteMetadata | None) -> float:
    if metadata is None:
        return math.nan
    from gateway.flux.budget.solar import potential_radiation

    mid = (r.start.timestamp() + r.end.timestamp()) / 2.0
    return float(potential_radiation([mid], metadata.latitude, metadata.longitude)[0])


def _cell_molar_volume(r: FluxResult) -> float:
    """Molar volume of air in a closed-path analyser's cell, m3 mol-1: R·T_cell/P_cell (ideal gas); NaN without the
    cell's temperature and pressure (open path, or not recorded)."""
    return R_GAS * (r.get("T_CELL") + 273.15) / (r.get("PA_CELL") * 1000.0)


def _molar_density(r: FluxResult, fraction: str, scale: float) -> float:
    """Mean molar density, mmol m-3: wet mole fraction / molar volume, at the cell's conditions for a closed-path
    analyser whose cell temperature and pressure were recorded (EddyPro's closed-path full output does so: checked
    against its files, tests/flux/test_ec_outputs.py), else at ambient ones (molar volume of moist air)."""
    cell = _cell_molar_volume(r)
    return r.get(fraction) * scale / (cell if math.isfinite(cell) else r.get("AIR_MV"))


def _vertical_advection(r: FluxResult, fraction: str, scale: float) -> float:
    """Vertical advection flux, µmol m-2 s-1 (CO2) or mmol m-2 s-1 (H2O): mean vertical wind after the tilt
    correction × mean molar density (EddyPro 7 Help, "The full output file": "obtained by multiplication of the mean
    vertical wind speed and mean gas concentration"; zero after a double rotation)."""
    return r.get("W_ROT") * _molar_density(r, fraction, scale) * (1e3 if fraction == "CO2" else 1.0)


#: The flux whose presence says a gas was measured in the period.
_GAS_FLUX = {"CO2": "FC", "H2O": "FH2O", "CH4": "FCH4", "N2O": "FN2O"}


def _scf(r: FluxResult, name: str) -> float:
    """A spectral correction factor; 1 when no correction was made (EddyPro prints 1.00000 then), NaN for a gas the
    period does not have (EddyPro prints -9999 there)."""
    if name in r.values:
        return r.get(name)
    flux = name.removesuffix("_SCF")
    return 1.0 if flux in r.values else math.nan


def _processed(r: FluxResult) -> bool:
    """Whether the period's records went through the chain (a failed period has nothing to print)."""
    return "N_USED" in r.values


def _series_present(r: FluxResult, series: str) -> bool:
    """Whether a series of EddyPro's statistical flags (U, V, W, TS or a gas) was in the period."""
    if series in ("U", "V", "W", "TS"):
        return _processed(r)
    return _GAS_FLUX[series] in r.values or series in r.values


def _spikes(series: str) -> _Getter:
    """Spike count of a series: 0 when despiking was off (EddyPro prints 0 then), NaN for a series not present."""
    name = f"{series}_NUM_SPIKES"
    return lambda r, _md: r.get(name) if name in r.values else (0.0 if _series_present(r, series) else math.nan)


def _default_lag(gas: str) -> _Getter:
    """1 when the default time lag was used, 0 when not; 9 for a gas the period does not have (EddyPro's code)."""
    name = f"{gas}_TLAG_DEFAULT"
    return lambda r, _md: (r.get(name) if name in r.values else 9.0 if _processed(r) and
                           not _series_present(r, gas) else math.nan)


def _cell_volume_of(gas: str) -> _Getter:
    """Fluxnet MV_AIR_CELL_<GAS>: the cell's molar volume, for a gas the period has."""
    return lambda r, _md: _cell_molar_volume(r) if gas in r.values else math.nan


def _removed(name: str, series: str | None) -> _Getter:
    """Fluxnet ``*_NREX``, records a filter removed: 0 when the filter was off or found nothing; NaN for a series
    the period lacks (``series`` None: printed for every series, as EddyPro's ``*_ABSLIM_NREX``)."""
    return lambda r, _md: (r.get(name) if name in r.values else
                           0.0 if _processed(r) and (series is None or _series_present(r, series)) else math.nan)


_Getter = Callable[[FluxResult, SiteMetadata | None], float | str]


def _factor(name: str) -> _Getter:
    return lambda r, _md: _scf(r, name)


def _v(name: str, scale: float = 1.0, offset: float = 0.0) -> _Getter:
    return lambda r, _md: r.get(name) * scale + offset


#: EddyPro's slots of the statistical flag strings: "8" then one digit per series (its "u/v/w/ts/co2/h2o/ch4/none",
#: N2O being the 4th gas) or per gas, 0 passed, 1 failed, 9 not selected or not computable (EddyPro 7 Help,
#: "Despiking and raw data statistical screening").
_VM97_SERIES = ("U", "V", "W", "TS", "CO2", "H2O", "CH4", "N2O")
_VM97_GASES = ("CO2", "H2O", "CH4", "N2O")
#: The per-series tests in the order of the full output's columns (and of the digits of the fluxnet <VAR>_VM97_TEST).
_VM97_TESTS = ("SR_HF", "AR_HF", "DO_HF", "AL_HF", "SK_HF", "SK_SF", "DS_HF", "DS_SF")


def _has_vm97(r: FluxResult) -> bool:
    """Whether the period went through the chain: then the flag strings are printed, all 9s for the tests that were
    not selected (as EddyPro does); a failed period's stay -9999."""
    return _processed(r)


def _digit(r: FluxResult, name: str) -> str:
    value = r.values.get(name, math.nan)
    return str(int(value)) if math.isfinite(value) else "9"


def _vm97_string(names: Sequence[str]) -> _Getter:
    """EddyPro's flag string, e.g. 800000099: "8" and one digit per value name (9 where absent)."""
    return lambda r, _md: ("8" + "".join(_digit(r, n) for n in names)) if _has_vm97(r) else math.nan


def _vm97_series_test(series: str) -> _Getter:
    """Fluxnet <VAR>_VM97_TEST: "8" and the series' digit of each test (9: not selected); -9999 for a series the
    period lacks."""
    names = [f"{series}_VM97_{t}" for t in _VM97_TESTS]
    return lambda r, _md: (("8" + "".join(_digit(r, n) for n in names))
                           if _has_vm97(r) and _series_present(r, series) else math.nan)


#: Fluxnet <FLUX>_SS columns and the steady-state test deviation of each (Foken et al. 2004).
_STEADY_STATE = (("TAU", "U"), ("H", "TS"), ("FC", "CO2"), ("FH2O", "H2O"), ("FCH4", "CH4"), ("FNONE", "N2O"))


def _truncated(name: str) -> _Getter:
    """A test deviation in % truncated to an integer, as EddyPro prints them (its qc-details file and fluxnet
    <FLUX>_SS: read from its outputs, tests/flux/test_ec_reference.py)."""
    return lambda r, _md: float(math.trunc(r.get(name))) if math.isfinite(r.get(name)) else math.nan


def _steady_state_class(name: str) -> _Getter:
    """Foken et al. (2004) class 1-9 of a steady-state deviation (Table 9.5), NaN where there is none."""
    from gateway.flux.ec.qc import foken_class

    return lambda r, _md: float(foken_class(r.get(name))) if math.isfinite(r.get(name)) else math.nan


_VM97_FULL_OUTPUT: dict[str, _Getter] = {
    **{column: _vm97_string([f"{s}_VM97_{test}" for s in _VM97_SERIES]) for column, test in (
        ("spikes_hf", "SR_HF"), ("amplitude_resolution_hf", "AR_HF"), ("drop_out_hf", "DO_HF"),
        ("absolute_limits_hf", "AL_HF"), ("skewness_kurtosis_hf", "SK_HF"), ("skewness_kurtosis_sf", "SK_SF"),
        ("discontinuities_hf", "DS_HF"), ("discontinuities_sf", "DS_SF"))},
    "timelag_hf": _vm97_string([f"{g}_VM97_TL_HF" for g in _VM97_GASES]),
    "timelag_sf": _vm97_string([f"{g}_VM97_TL_SF" for g in _VM97_GASES]),
    "attack_angle_hf": _vm97_string(["VM97_AOA_HF"]),
    "non_steady_wind_hf": _vm97_string(["VM97_NSHW_HF"]),
}

_FULL_OUTPUT: dict[str, _Getter] = {
    **_VM97_FULL_OUTPUT,
    "filename": lambda r, _md: r.source or "not_enough_data",
    "date": lambda r, _md: r.end.strftime("%Y-%m-%d"),
    "time": lambda r, _md: r.end.strftime("%H:%M"),
    "DOY": lambda r, _md: _doy(r.end),
    "daytime": lambda r, md: (float(_potential_radiation(r, md) > 0) if md is not None else math.nan),
    "file_records": _v("N_RECORDS"), "used_records": _v("N_USED"),
    "Tau": _v("TAU"), "qc_Tau": _v("TAU_SSITC_TEST"), "rand_err_Tau": _v("TAU_RANDUNC"),
    "H": _v("H"), "qc_H": _v("H_SSITC_TEST"), "rand_err_H": _v("H_RANDUNC"),
    "LE": _v("LE"), "qc_LE": _v("LE_SSITC_TEST"), "rand_err_LE": _v("LE_RANDUNC"),
    "co2_flux": _v("FC"), "qc_co2_flux": _v("FC_SSITC_TEST"), "rand_err_co2_flux": _v("FC_RANDUNC"),
    "h2o_flux": _v("FH2O"), "qc_h2o_flux": _v("FH2O_SSITC_TEST"), "rand_err_h2o_flux": _v("FH2O_RANDUNC"),
    "ch4_flux": _v("FCH4", 1e-3), "qc_ch4_flux": _v("FCH4_SSITC_TEST"), "rand_err_ch4_flux": _v("FCH4_RANDUNC", 1e-3),
    "none_flux": _v("FN2O", 1e-3), "qc_none_flux": _v("FN2O_SSITC_TEST"),
    "rand_err_none_flux": _v("FN2O_RANDUNC", 1e-3),
    "ch4_mole_fraction": _v("CH4", 1e-3), "ch4_mixing_ratio": _v("CH4_MIXING_RATIO", 1e-3),
    "ch4_time_lag": _v("CH4_TLAG"), "ch4_def_timelag": _default_lag("CH4"),
    "none_mole_fraction": _v("N2O", 1e-3), "none_mixing_ratio": _v("N2O_MIXING_RATIO", 1e-3),
    "none_time_lag": _v("N2O_TLAG"), "none_def_timelag": _default_lag("N2O"),
    "H_strg": _v("SH_SINGLE"), "LE_strg": _v("SLE_SINGLE"), "co2_strg": _v("SC_SINGLE"),
    "h2o_strg": _v("SH2O_SINGLE"), "ch4_strg": _v("SCH4_SINGLE", 1e-3), "none_strg": _v("SNONE_SINGLE", 1e-3),
    "un_ch4_flux": _v("FCH4_UNCORR", 1e-3), "ch4_scf": _factor("FCH4_SCF"),
    "ch4_spikes": _spikes("CH4"), "none_spikes": _spikes("N2O"), "ch4_var": _v("CH4_VAR"),
    "none_var": _v("N2O_VAR"), "w/ch4_cov": _v("W_CH4_COV"), "w/none_cov": _v("W_N2O_COV"),
    "co2_v-adv": lambda r, _md: _vertical_advection(r, "CO2", 1e-3),
    "h2o_v-adv": lambda r, _md: _vertical_advection(r, "H2O", 1.0),
    "co2_molar_density": lambda r, _md: _molar_density(r, "CO2", 1e-3),
    "co2_mole_fraction": _v("CO2"), "co2_mixing_ratio": _v("CO2_MIXING_RATIO"), "co2_time_lag": _v("CO2_TLAG"),
    "co2_def_timelag": _default_lag("CO2"),
    "h2o_molar_density": lambda r, _md: _molar_density(r, "H2O", 1.0),
    "h2o_mole_fraction": _v("H2O"), "h2o_mixing_ratio": _v("H2O_MIXING_RATIO"), "h2o_time_lag": _v("H2O_TLAG"),
    "h2o_def_timelag": _default_lag("H2O"),
    "sonic_temperature": _v("T_SONIC", offset=273.15), "air_temperature": _v("TA", offset=273.15),
    "air_pressure": _v("PA", 1000.0), "air_density": _v("RHO_A"), "air_heat_capacity": _v("AIR_CP"),
    "air_molar_volume": _v("AIR_MV"), "ET": _v("FH2O", 1e-3 * _M_H2O * 3600.0),
    "water_vapor_density": _v("VAPOR_DENSITY"), "e": _v("VAPOR_PRESSURE", 100.0), "es": _v("VAPOR_PRESSURE_SAT", 100.0),
    "specific_humidity": _v("SPECIFIC_HUMIDITY"), "RH": _v("RH"), "VPD": _v("VPD", 100.0),
    "Tdew": _v("TDEW", offset=273.15),
    "u_unrot": _v("U_UNROT"), "v_unrot": _v("V_UNROT"), "w_unrot": _v("W_UNROT"),
    "u_rot": _v("U_ROT"), "v_rot": _v("V_ROT"), "w_rot": _v("W_ROT"), "wind_speed": _v("WS"),
    "max_wind_speed": _v("WS_MAX"), "wind_dir": _v("WD"), "yaw": _v("YAW"), "pitch": _v("PITCH"), "roll": _v("ROLL"),
    "u*": _v("USTAR"), "TKE": _v("TKE"), "L": _v("MO_LENGTH"), "(z-d)/L": _v("ZL"), "bowen_ratio": _v("BOWEN"),
    "T*": _v("TSTAR"),
    "model": _v("FOOTPRINT_MODEL"),
    "x_peak": _v("FETCH_MAX"), "x_offset": _v("FETCH_OFFSET"),
    **{f"x_{pct}%": _v(f"FETCH_{pct}") for pct in (10, 30, 50, 70, 90)},
    "un_Tau": _v("TAU_UNCORR"), "Tau_scf": _factor("TAU_SCF"),
    "un_H": _v("H_UNCORR"), "H_scf": _factor("H_SCF"),
    "un_LE": _v("LE_UNCORR"), "LE_scf": _factor("LE_SCF"),
    "un_co2_flux": _v("FC_UNCORR"), "co2_scf": _factor("FC_SCF"),
    "un_h2o_flux": _v("FH2O_UNCORR"), "h2o_scf": _factor("FH2O_SCF"),
    **{f"{s.lower()}_spikes": _spikes(s) for s in ("U", "V", "W", "TS", "CO2", "H2O")},
    **{f"{name.removeprefix('INST_LI7200_').lower()}_LI-7200": _v(name) for _, name in LI7200_STATUS_BITS},
    "mean_value_RSSI_LI-7200": _v("INST_LI7200_AGC_OR_RSSI"),
    "u_var": _v("U_VAR"), "v_var": _v("V_VAR"), "w_var": _v("W_VAR"), "ts_var": _v("T_SONIC_VAR"),
    "co2_var": _v("CO2_VAR"), "h2o_var": _v("H2O_VAR"),
    "w/ts_cov": _v("W_T_SONIC_COV"), "w/co2_cov": _v("W_CO2_COV"), "w/h2o_cov": _v("W_H2O_COV"),
}

_FLUXNET: dict[str, _Getter] = {
    **{f"{'T_SONIC' if s == 'TS' else s}_VM97_TEST": _vm97_series_test(s) for s in _VM97_SERIES[:6]},
    **{f"{'CH4' if s == 'CH4' else 'NONE'}_VM97_TEST": _vm97_series_test(s) for s in _VM97_SERIES[6:]},
    "VM97_TLAG_HF": _VM97_FULL_OUTPUT["timelag_hf"], "VM97_TLAG_SF": _VM97_FULL_OUTPUT["timelag_sf"],
    "VM97_AOA_HF": _VM97_FULL_OUTPUT["attack_angle_hf"], "VM97_NSHW_HF": _VM97_FULL_OUTPUT["non_steady_wind_hf"],
    "TIMESTAMP_START": lambda r, _md: _fmt(r.start), "TIMESTAMP_END": lambda r, _md: _fmt(r.end),
    "DOY_START": lambda r, _md: _doy(r.start), "DOY_END": lambda r, _md: _doy(r.end),
    "FILENAME_HF": lambda r, _md: r.source or "not_enough_data",
    "SW_IN_POT": _potential_radiation,
    "NIGHT": lambda r, md: (float(_potential_radiation(r, md) <= 0) if md is not None else math.nan),
    "FILE_NR": _v("N_RECORDS"), "SONIC_NR": _v("N_USED"),
    # records left by the custom and the wind-direction filters: sinkwatch has neither, so all the file's
    "CUSTOM_FILTER_NR": _v("N_RECORDS"), "WD_FILTER_NR": _v("N_RECORDS"),
    **{k: _v(k) for k in ("TAU", "H", "LE", "FC", "FH2O", "WS", "WS_MAX", "WD", "USTAR", "TKE", "MO_LENGTH", "ZL",
                          "BOWEN", "TSTAR", "T_SONIC", "AIR_MV", "AIR_CP", "SPECIFIC_HUMIDITY", "TDEW", "U_UNROT",
                          "V_UNROT", "W_UNROT", "CO2_MIXING_RATIO", "CO2", "H2O_MIXING_RATIO", "H2O", "U_SIGMA",
                          "V_SIGMA", "W_SIGMA", "T_SONIC_SIGMA", "W_T_SONIC_COV", "FETCH_MAX", "FETCH_OFFSET",
                          "FETCH_10", "FETCH_30", "FETCH_50", "FETCH_70", "FETCH_80", "FETCH_90", "FOOTPRINT_MODEL",
                          "USTAR_UNCORR", "TAU_UNCORR", "H_UNCORR",
                          "LE_UNCORR", "FC_UNCORR", "FH2O_UNCORR", "TAU_SSITC_TEST", "H_SSITC_TEST", "LE_SSITC_TEST",
                          "FC_SSITC_TEST", "FH2O_SSITC_TEST", "FCH4", "FCH4_SSITC_TEST", "FCH4_UNCORR", "CH4",
                          "CH4_MIXING_RATIO")},
    **{f"{'T_SONIC' if s == 'TS' else 'NONE' if s == 'N2O' else s}_NUM_SPIKES": _spikes(s) for s in _VM97_SERIES},
    "FCH4_RANDUNC_HF": _v("FCH4_RANDUNC"), "CH4_TLAG_ACTUAL": _v("CH4_TLAG"), "CH4_TLAG_USED": _v("CH4_TLAG"),
    "FCH4_SCF": _factor("FCH4_SCF"), "W_CH4_MEAS_COV": _v("W_CH4_COV"),
    "ET": _v("FH2O", 1e-3 * _M_H2O * 3600.0),
    **{f"{k}_RANDUNC_HF": _v(f"{k}_RANDUNC") for k in ("TAU", "H", "LE", "FC", "FH2O")},
    "ET_RANDUNC_HF": _v("FH2O_RANDUNC", 1e-3 * _M_H2O * 3600.0),
    "U": _v("U_ROT"), "V": _v("V_ROT"), "W": _v("W_ROT"),
    "TA_EP": _v("TA"), "PA_EP": _v("PA"), "RH_EP": _v("RH"), "VPD_EP": _v("VPD"), "AIR_DENSITY": _v("RHO_A"),
    "AIR_RHO_CP": _v("RHO_CP"), "VAPOR_DENSITY": _v("VAPOR_DENSITY"),
    "VAPOR_PARTIAL_PRESSURE": _v("VAPOR_PRESSURE"), "VAPOR_PARTIAL_PRESSURE_SAT": _v("VAPOR_PRESSURE_SAT"),
    "CO2_MOLAR_DENSITY": lambda r, _md: _molar_density(r, "CO2", 1e-3),
    "H2O_MOLAR_DENSITY": lambda r, _md: _molar_density(r, "H2O", 1.0),
    **{k: _v(k) for k in ("SH_SINGLE", "SLE_SINGLE", "SET_SINGLE", "SC_SINGLE", "SH2O_SINGLE", "SCH4_SINGLE",
                          "SNONE_SINGLE")},
    "FC_VADV": lambda r, _md: _vertical_advection(r, "CO2", 1e-3),
    "FH2O_VADV": lambda r, _md: _vertical_advection(r, "H2O", 1.0),
    "T_CELL": _v("T_CELL"), "PA_CELL": _v("PA_CELL"),
    **{f"MV_AIR_CELL_{g}": _cell_volume_of(g) for g in ("CO2", "H2O")},
    **{name: _v(name) for _, name in LI7200_STATUS_BITS},
    "INST_LI7200_AGC_OR_RSSI": _v("INST_LI7200_AGC_OR_RSSI"),
    "DRYAIR_PARTIAL_PRESSURE": lambda r, _md: r.get("PA") - r.get("VAPOR_PRESSURE") / 10.0,
    "DRYAIR_DENSITY": _v("DRYAIR_DENSITY"), "DRYAIR_MV": _v("VD"), "SPECIFIC_HEAT_EVAP": _v("SPECIFIC_HEAT_EVAP"),
    "VAPOR_DRYAIR_RATIO": lambda r, _md: r.get("VAPOR_DENSITY") / r.get("DRYAIR_DENSITY"),
    "ET_UNCORR": _v("FH2O_UNCORR", 1e-3 * _M_H2O * 3600.0), "ET_SSITC_TEST": _v("FH2O_SSITC_TEST"),
    **{f"{k}_SKW": _v(f"{k}_SKEW") for k in ("U", "V", "W", "T_SONIC")},
    **{f"{k}_KUR": _v(f"{k}_KURT") for k in ("U", "V", "W", "T_SONIC")},
    **{f"{theirs}_MEAS_{stat}": _v(f"{g}_{ours}") for g, theirs in (("CO2", "CO2"), ("H2O", "H2O"), ("CH4", "CH4"),
                                                                      ("N2O", "NONE"))
       for stat, ours in (("SKW", "SKEW"), ("KUR", "KURT"), ("SIGMA", "SIGMA"), ("MEDIAN", "MEDIAN"),
                          ("P25", "P25"), ("P75", "P75"))},
    **{f"{k}_{q}": _v(f"{k}_{q}") for k in ("U", "V", "W", "T_SONIC") for q in ("MEDIAN", "P25", "P75")},
    "CO2_MEAS_H2O_MEAS_COV": _v("CO2_H2O_COV"), "WD_SIGMA": _v("WD_SIGMA"),
    "CUSTOM_FILTER_NREX": _removed("CUSTOM_FILTER_NREX", "U"), "WD_FILTER_NREX": _removed("WD_FILTER_NREX", "U"),
    "SONIC_DIAG_NREX": _removed("SONIC_DIAG_NREX", "U"),
    **{f"{'NONE' if s == 'N2O' else s}_DIAG_NREX": _removed(f"{s}_DIAG_NREX", s) for s in _VM97_GASES},
    **{f"{'T_SONIC' if s == 'TS' else 'NONE' if s == 'N2O' else s}_ABSLIM_NREX": _removed(f"{s}_ABSLIM_NREX", None)
       for s in _VM97_SERIES},
    **{f"{flux}_SS": _truncated(f"ST_DEV_W_{dev}") for flux, dev in _STEADY_STATE},
    **{f"{flux}_SS_TEST": _steady_state_class(f"ST_DEV_W_{dev}") for flux, dev in _STEADY_STATE},
    "CO2_TLAG_ACTUAL": _v("CO2_TLAG"), "CO2_TLAG_USED": _v("CO2_TLAG"), "H2O_TLAG_ACTUAL": _v("H2O_TLAG"),
    "H2O_TLAG_USED": _v("H2O_TLAG"), "W_U_COV": _v("U_W_COV"), "W_CO2_MEAS_COV": _v("W_CO2_COV"),
    "W_H2O_MEAS_COV": _v("W_H2O_COV"),
    "ROT_YAW": _v("YAW"), "ROT_PITCH": _v("PITCH"), "ROT_ROLL": _v("ROLL"),
    **{f"{k}_SCF": _factor(f"{k}_SCF") for k in ("TAU", "H", "LE", "FC", "FH2O")},
    "ET_SCF": _factor("FH2O_SCF"),
}


def _with_storage(results: Sequence[FluxResult], metadata: SiteMetadata | None) -> list[FluxResult]:
    """The results with their one-point storage fluxes (:func:`gateway.flux.ec.fluxes.storage_one_point`, at the
    sonic's height) from the period just before, where that period is among the results; the first period of a
    series, and any without its predecessor, has none (EddyPro prints -9999 there too)."""
    if metadata is None:
        return list(results)
    from dataclasses import replace

    from gateway.flux.ec.fluxes import storage_one_point

    by_end = {r.end: r for r in results}
    out = []
    for r in results:
        prev = by_end.get(r.start)
        if prev is None or not (_processed(prev) and _processed(r)):
            out.append(r)
            continue
        storage = storage_one_point(prev.values, r.values, metadata.sonic.height,
                                    (r.end - r.start).total_seconds())
        out.append(replace(r, values={**r.values, **storage}))
    return out


def _cell(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return str(MISSING) if not math.isfinite(value) else f"{value:.6g}"


def write_eddypro_full_output(results: Sequence[FluxResult], path: Path | str | TextIO,
                              metadata: SiteMetadata | None = None) -> None:
    """EddyPro 7's "full output" file (EddyPro 7 Help, "The full output file"): three header rows (group, variable,
    unit) of :data:`gateway.flux.eddypro_outputs.FULL_OUTPUT_COLUMNS`, one row per period, -9999 where sinkwatch has
    no value (LI-7500/LI-7700 diagnostics, gases the period lacks, storage of a first period; everything of a
    failed period).
    Molar densities are at the cell's conditions for a closed-path analyser with cell temperature and pressure, else
    ambient; the statistical flag strings carry 9 for each test not selected, as EddyPro's. ``metadata`` (latitude,
    longitude) gives `daytime`."""
    from gateway.flux.eddypro_outputs import FULL_OUTPUT_COLUMNS

    def write(fh: TextIO) -> None:
        out = csv.writer(fh, lineterminator="\n")
        for row in range(3):
            out.writerow([c[row] for c in FULL_OUTPUT_COLUMNS])
        for r in _with_storage(results, metadata):
            out.writerow([_cell(_FULL_OUTPUT[name](r, metadata)) if name in _FULL_OUTPUT else str(MISSING)
                          for _, name, _ in FULL_OUTPUT_COLUMNS])

    _to(path, write)


def _code(key: str, value: str) -> float:
    """EddyPro's project code of an enumerated setting (the inverse of ``EDDYPRO_CODES``)."""
    return float(next(code for code, name in EDDYPRO_CODES[key].items() if name == value))


def _run_columns(metadata: SiteMetadata | None, settings: ProcessingSettings | None) -> dict[str, float | str]:
    """The fluxnet columns that describe the run rather than the period: site and instruments from the metadata
    (as given; displacement and roughness as the engine uses them, 0.67 and 0.15 × canopy height when not given),
    and the processing methods as EddyPro's project codes from the settings. The engine applies no angle-of-attack,
    w-boost or off-season uptake correction where EddyPro would (those runs are refused), so their codes are 0."""
    cols: dict[str, float | str] = {}
    if metadata is not None:
        md, sa = metadata, metadata.sonic
        cols.update({
            "BADM_LOCATION_LAT": md.latitude, "BADM_LOCATION_LONG": md.longitude, "BADM_LOCATION_ELEV": md.altitude,
            "BADM_HEIGHTC": md.canopy_height, "DISPLACEMENT_HEIGHT": md.displacement(),
            "ROUGHNESS_LENGTH": md.roughness(), "FILE_TIME_DURATION": md.file_duration,
            "BADM_INST_SAMPLING_INT": md.acquisition_frequency, "MANUFACTURER_SA": sa.manufacturer,
            "BADM_INST_MODEL_SA": sa.model, "BADM_INST_HEIGHT_SA": sa.height, "BADM_INST_SA_WIND_FORMAT": sa.wformat,
            "BADM_INST_SA_GILL_ALIGN": sa.wref, "BADM_SA_OFFSET_NORTH": sa.north_offset,
            "NUM_CUSTOM_VARS": 0.0, "NUM_BIOMET_VARS": 0.0})
        ga = md.analyzer
        measured = {c.variable for c in md.file.columns}
        for gas in ("CO2", "H2O"):
            if ga is not None and gas.lower() in measured:
                cols.update({
                    f"MANUFACTURER_GA_{gas}": ga.manufacturer, f"BADM_INST_MODEL_GA_{gas}": ga.model,
                    f"BADM_INSTPAIR_NORTHWARD_SEP_GA_{gas}": ga.northward_separation,
                    f"BADM_INSTPAIR_EASTWARD_SEP_GA_{gas}": ga.eastward_separation,
                    f"BADM_INSTPAIR_HEIGHT_SEP_GA_{gas}": ga.vertical_separation,
                    f"BADM_INST_GA_CP_TUBE_LENGTH_GA_{gas}": ga.tube_length,
                    f"BADM_INST_GA_CP_TUBE_IN_DIAM_GA_{gas}": ga.tube_diameter,
                    f"BADM_INST_GA_CP_TUBE_FLOW_RATE_GA_{gas}": ga.tube_flowrate})
    if settings is not None:
        st = settings
        cols.update({
            "BADM_INST_AVERAGING_INT": st.avrg_len,
            **({"EXPECT_NR": float(round(st.avrg_len * 60.0 * metadata.acquisition_frequency))}
               if metadata is not None else {}), "AXES_ROTATION_METHOD": _code("rot_meth", st.rot_meth),
            "DETRENDING_METHOD": _code("detrend_meth", st.detrend_meth),
            "DENTRENDING_TIME_CONSTANT": 0.0 if st.detrend_meth == "block_average" else st.timeconst,
            "TIMELAG_DETECTION_METHOD": _code("tlag_meth", st.tlag_meth), "WPL_APPLIED": float(st.wpl_meth),
            "SPECTRAL_CORRECTION_METHOD": _code("hf_meth", st.hf_meth), "WBOOST_APPLIED": 0.0, "AOA_METHOD": 0.0,
            "BURBA_METHOD": 0.0})
        if metadata is not None and st.gill_wm_wboost:
            cols["WBOOST_APPLIED"] = float(bool(wboost(metadata.sonic.manufacturer, metadata.sonic.model,
                                                       metadata.sonic.sw_version).applies))
    return cols


def write_eddypro_fluxnet(results: Sequence[FluxResult], path: Path | str | TextIO,
                          metadata: SiteMetadata | None = None, settings: ProcessingSettings | None = None) -> None:
    """EddyPro 7's "fluxnet" file (FLUXNET variable names, TIMESTAMP_START/END as YYYYMMDDHHMM, -9999 for missing):
    the header :data:`gateway.flux.eddypro_outputs.FLUXNET_COLUMNS`, one row per period. ``metadata`` gives
    SW_IN_POT, NIGHT and the site and instrument columns, ``settings`` the method codes."""
    from gateway.flux.eddypro_outputs import FLUXNET_COLUMNS

    run = _run_columns(metadata, settings)

    def write(fh: TextIO) -> None:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(FLUXNET_COLUMNS)
        for r in _with_storage(results, metadata):
            out.writerow([_cell(_FLUXNET[name](r, metadata)) if name in _FLUXNET else
                          _cell(run[name]) if name in run else str(MISSING) for name in FLUXNET_COLUMNS])

    _to(path, write)


def _to(path: Path | str | TextIO, write: Callable[[TextIO], None]) -> None:
    if not isinstance(path, Path | str):
        write(path)
        return
    with Path(path).open("w", newline="", encoding="utf-8") as fh:
        write(fh)
