"""Where a derived result came from: the digests of the inputs it was computed from, kept with it, so an audit or a
report can name them and a verifier can check them again (docs/security.md, "Provenance of derived results").

- **A flux record recomputed centrally** (`sinkwatch flux recompute`, gateway/central/recompute.py) keeps the raw
  archive files it was computed from — sensor, file name, SHA-256 of the file's bytes (the digest a station signs
  for the raw channel, `content`) — and the SHA-256 of the record itself (`flux_record_digest`), which binds them
  to the values they gave: `FluxInputs`, identified like the record (site, station, engine_version,
  settings_hash, period end) and replaced with it. A station's own flux records need none: their ledger entries
  keep what the station signed.
- **A budget, soil or stems run** keeps, in its record (`BudgetRun.inputs`, `ProductRun.inputs`), for every input
  it read from the store the number of items, their first and last time and a SHA-256 over them: for flux records
  `records_digest` of their `flux_record_digest`s, for half-hour means of readings `means_digest`; the soil and
  stems jobs read through an `InputRecorder`, which keeps every series they read (means and raw readings, as
  `points_digest`). The job that wrote a run computes the same digests again from the store
  (`gateway.central.budget.budget_input_digests`, the soil and stems jobs run again through a recorder): equal, the
  run's inputs are what the store holds now.

The digests are over canonical text (JSON with sorted keys and no spaces; floats as Python's shortest round-trip
repr), so they do not depend on the store that served the records.

    store.write_fluxes(records)
    store.write_flux_inputs([FluxInputs(..., record_sha256=flux_record_digest(r), files=(...))])
    store.flux_inputs("plot-07", start, end)           # periods ending in (start, end], ordered by end
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from gateway.central.store.budget import ORJSON_AS_REPR, column_texts
from gateway.contract import FluxRecord
from gateway.model import format_time, format_times

if TYPE_CHECKING:  # base imports this module for the Store protocol
    from gateway.central.store.base import SeriesPoint
    from gateway.central.store.budget import WindowMean

FLUX_INPUTS_MEASUREMENT = "flux_inputs"


@dataclass(frozen=True)
class InputFile:
    """One raw archive file: its sensor, its name and the SHA-256 of its bytes (hex)."""

    sensor: str
    name: str
    sha256: str


@dataclass(frozen=True)
class FluxInputs:
    """The raw files a recomputed flux record came from; identity = the record's (end = its period end, UTC)."""

    site: str
    station: str
    engine_version: str
    settings_hash: str
    end: datetime
    record_sha256: str  # flux_record_digest of the record as it was written
    files: tuple[InputFile, ...]

    def files_json(self) -> str:
        return json.dumps([[f.sensor, f.name, f.sha256] for f in self.files], separators=(",", ":"))


def files_from_json(text: str) -> tuple[InputFile, ...]:
    return tuple(InputFile(str(sensor), str(name), str(sha256)) for sensor, name, sha256 in json.loads(text or "[]"))


def _plain(data: Any) -> Any:
    """-0.0 as 0.0: InfluxDB keeps no sign of zero, and the digest must not depend on the store."""
    if isinstance(data, float):
        return 0.0 if data == 0 else data
    if isinstance(data, dict):
        return {k: _plain(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_plain(v) for v in data]
    return data


def canonical_sha256(data: Any) -> str:
    """SHA-256 (hex) of `data` as canonical JSON: sorted keys, no spaces, UTF-8, zero without a sign."""
    text = json.dumps(_plain(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def flux_record_digest(record: FluxRecord) -> str:
    """A flux record's name: the canonical SHA-256 of every field but the station's delivery `seq`."""
    return canonical_sha256(record.model_dump(mode="json", exclude={"seq"}))


def lines_sha256(lines: Iterable[str]) -> str:
    """SHA-256 (hex) of the lines, each ended by a newline."""
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()


# The fields `flux_record_digest` is over (every field but `seq`), as the model declares them: `_record_texts`
# writes their canonical text itself and is used only while the model has exactly these (a new field takes the
# model's own dump until it is added here and to tests/central/test_canonical_bytes.py).
_DIGESTED_FIELDS = ("schema_version", "site", "station", "start", "end", "status", "reasons", "engine_version",
                    "settings_hash", "values")
# json.dumps with canonical_sha256's settings makes this encoder per call; one is enough (the same C encoder)
_canonical_text = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                                   allow_nan=False).encode


def _orjson_writes_as_json(values: Iterable[Any]) -> bool:
    """True when orjson writes each of `values` as `json.dumps` does: None, a float of magnitude 0 or in
    `ORJSON_AS_REPR` ([1e-4, 1e16), where the stored rows take orjson's text too), an int (orjson refuses one beyond
    64 bits, which then takes json). Strings it writes alike with ensure_ascii=False (every code point checked),
    and it sorts keys by code point as json does."""
    low, high = ORJSON_AS_REPR
    for value in values:
        if value.__class__ is float:
            if value and not low <= abs(value) < high:  # NaN fails the comparison too
                return False
        elif value is not None and value.__class__ is not int:
            return False
    return True


def _record_texts(records: Sequence[FluxRecord]) -> tuple[list[str], list[bytes]] | None:
    """Per record, the RFC 3339 text of its end and the canonical text `flux_record_digest` hashes (UTF-8), byte for
    byte, without the model's dump: a station-year's 17,568 records cost the budget job ~2.7 CPU-s through
    `model_dump` + `_plain` + `dumps` one record at a time. A record whose values orjson writes as json does is
    written by orjson (~20 µs a record by json's encoder, mostly the floats' repr). None when the model's fields are
    not those written here (then the caller takes the model's dump)."""
    if tuple(name for name in FluxRecord.model_fields if name != "seq") != _DIGESTED_FIELDS:
        return None
    starts = format_times([r.start for r in records])
    ends = format_times([r.end for r in records])
    texts = []
    dumps, sort_keys = orjson.dumps, orjson.OPT_SORT_KEYS
    for record, start, end in zip(records, starts, ends, strict=True):
        values = record.values
        if 0 in values.values():  # a zero may be -0.0, which the digest writes as 0.0 (`_plain`)
            values = _plain(values)
        data = {"schema_version": record.schema_version, "site": record.site, "station": record.station,
                "start": start, "end": end, "status": record.status, "reasons": record.reasons,
                "engine_version": record.engine_version, "settings_hash": record.settings_hash, "values": values}
        if _orjson_writes_as_json(values.values()):
            try:
                texts.append(dumps(data, option=sort_keys))
                continue
            except TypeError:  # an int beyond 64 bits
                pass
        texts.append(_canonical_text(data).encode("utf-8"))
    return ends, texts


def flux_record_digests(records: Sequence[FluxRecord]) -> list[str]:
    """`flux_record_digest` of each record (the same digests, without a model dump per record)."""
    made = _record_texts(records)
    if made is None:
        return [flux_record_digest(r) for r in records]
    return [hashlib.sha256(text).hexdigest() for text in made[1]]


def records_digest(records: Sequence[FluxRecord]) -> str:
    """Flux records as one input: the lines `<end RFC 3339> <flux_record_digest>` in the order of their ends."""
    ordered = sorted(records, key=lambda r: (r.end, r.settings_hash, r.engine_version, r.site))
    made = _record_texts(ordered)
    if made is None:
        return lines_sha256(f"{format_time(r.end)} {flux_record_digest(r)}" for r in ordered)
    ends, texts = made
    sha256 = hashlib.sha256
    return lines_sha256(f"{end} {sha256(text).hexdigest()}" for end, text in zip(ends, texts, strict=True))


_UNSIGNED_ZERO = {"-0.0": "0.0"}


def _number(value: float | None) -> str:
    return "null" if value is None or not math.isfinite(value) else repr(float(value) + 0.0)  # -0.0 + 0.0 is 0.0


def means_digest(means: Sequence[WindowMean]) -> str:
    """Window means of readings as one input: the lines `<start ns> <mean> <count>` in time order."""
    ordered = sorted(means, key=lambda m: m.start)
    text = _lines([m.start for m in ordered], [m.mean for m in ordered], [m.count for m in ordered])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()  # lines_sha256 of the lines, in one update


def points_digest(points: Sequence[SeriesPoint]) -> str:
    """Raw readings of one series as one input: the lines `<time ns> <value> <qc>` in the order read."""
    from gateway.central.store.base import to_ns

    return lines_sha256(f"{to_ns(p.time)} {_number(p.value)} {'null' if p.qc is None else int(p.qc)}" for p in points)


def _lines(times: list[datetime], numbers: list[float | None], last: Sequence[object]) -> str:
    """The lines `<time ns> <number> <last>` of `means_digest` and `points_digest`, each with its newline, as one
    text: `to_ns` and `_number` a column at a time (`_number` is the stored rows' cell text with -0.0 as 0.0; a
    soil job's year is ~360,000 numbers)."""
    from gateway.central.store.base import to_ns_all

    texts = column_texts(numbers)
    return "".join(map("{} {} {}\n".format, to_ns_all(times), map(_UNSIGNED_ZERO.get, texts, texts), last))


class InputRecorder:
    """A store as a job reads it: every `window_means` and `query_series` is passed on and kept as an input of the
    run — per (kind, site, sensor, variable, window length): the calls, the items read, the first and last time and
    a SHA-256 over the lines of every call's items in the order read (`means_digest` and `points_digest` lines) —
    so the run can name what it was computed from, and the same job over the same store gives the same digests.
    Everything else is the store's."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._hashes: dict[str, Any] = {}
        self._inputs: dict[str, dict[str, Any]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    @property
    def inputs(self) -> dict[str, dict[str, Any]]:
        return {name: {**entry, "sha256": self._hashes[name].hexdigest()} for name, entry in self._inputs.items()}

    def _add(self, name: str, facts: dict[str, Any], times: list[datetime], lines: str) -> None:
        """`lines`: the call's lines, each ending in a newline, as one text: one update of the digest (the same
        SHA-256 as a line at a time) instead of an encode and an update per line of a year's series."""
        from gateway.model import format_time

        entry = self._inputs.setdefault(name, {**facts, "calls": 0, "items": 0, "first": None, "last": None})
        digest = self._hashes.setdefault(name, hashlib.sha256())
        entry["calls"] += 1
        entry["items"] += len(times)
        if times:
            entry["first"] = entry["first"] or format_time(min(times))
            entry["last"] = format_time(max(times))
        digest.update(lines.encode("utf-8"))

    def window_means(self, station: str, variable: str, start: datetime, end: datetime, every: Any, *, site: str,
                     sensor: str) -> list[WindowMean]:

        means: list[WindowMean] = self._store.window_means(station, variable, start, end, every, site=site,
                                                           sensor=sensor)
        seconds = int(every.total_seconds())
        starts = [m.start for m in means]
        self._add(f"{site}/{sensor}/{variable} means {seconds}s", {"kind": "means", "site": site, "sensor": sensor,
                                                                     "variable": variable, "every_s": seconds},
                  starts, _lines(starts, [m.mean for m in means], [m.count for m in means]))
        return means

    def query_series(self, station: str, variable: str, start: datetime, end: datetime, every: Any = None,
                     aggregate: Any = "mean", *, site: str | None = None, sensor: str | None = None,
                     limit: int | None = None) -> list[SeriesPoint]:

        points: list[SeriesPoint] = self._store.query_series(station, variable, start, end, every, aggregate,
                                                             site=site, sensor=sensor, limit=limit)
        kind = "readings" if every is None else f"{aggregate} {int(every.total_seconds())}s"
        times = [p.time for p in points]
        self._add(f"{site or '*'}/{sensor or '*'}/{variable} {kind}", {"kind": kind, "site": site, "sensor": sensor,
                                                                      "variable": variable},
                  times, _lines(times, [p.value for p in points],
                                ["null" if p.qc is None else int(p.qc) for p in points]))
        return points


class ProvenanceStore(Protocol):
    """The provenance part of `Store` (every backend has it): what recomputed flux records came from."""

    def write_flux_inputs(self, inputs: list[FluxInputs]) -> None:
        """Store the inputs of flux records just written, replacing those of the same identity; StoreUnavailable
        when it could not (safe to repeat)."""

    def flux_inputs(self, station: str, start: datetime, end: datetime, *,
                    site: str | None = None) -> list[FluxInputs]:
        """The inputs of the station's flux records whose period ends in (start, end], ordered by end, then
        settings_hash, engine_version, site."""
