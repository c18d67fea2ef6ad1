"""The site carbon report's data object: everything a report shows, and where it came from.

A :class:`SiteReportData` is built by a builder (from files: :mod:`gateway.report.files`; from the central store:
to come) and rendered by :mod:`gateway.report.html` and :mod:`gateway.report.pdf`. Renderers compute nothing that is
not derived from this object (:mod:`gateway.report.summary`), so the same object always gives the same numbers, and
:meth:`SiteReportData.content_digest` identifies it.

Conventions (docs/report.md):

- Time: ``time_s`` arrays are seconds since 1970-01-01 of the station's *standard-time* clock (local midnight is a
  multiple of 86400), as in :mod:`gateway.flux.budget.pipeline`; ``SiteInfo.utc_offset_h`` says how far that clock
  is ahead of UTC. Budget and soil arrays give the *start* of each record; a chamber value is stamped at the end of
  its closure.
- Names: FLUXNET2015/ONEFlux names for the budget (``NEE_F``, ``NEE_F_QC``, ``NEE_F_RANDUNC``, ``GPP_NT``, …), the
  names of docs/soil-stems.md for soil and stems (``FC_SOIL_GRAD``, ``FC_SOIL_CH_<c>``, ``GRO_<t>``, ``TWD_<t>``,
  ``C_AGB_INC``); NaN = missing.
- Units: half-hourly fluxes µmol CO2 m-2 s-1 (positive = to the atmosphere); aggregates gC m-2 per period (and
  tCO2e ha-1 where the name ends in ``_TCO2E``); stem changes µm; stem carbon Mg C ha-1, t CO2e ha-1; soil
  temperature °C; u* m s-1.

Construction validates every part and raises :class:`ReportDataError` naming the part, the variable and the fix
(missing budget, arrays of unequal length, unsorted time, unknown names), never a silent report.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from gateway.flux.budget.aggregate import Aggregates

__all__ = [
    "AGGREGATE_REQUIRED",
    "HH_OPTIONAL",
    "HH_REQUIRED",
    "BudgetData",
    "Coverage",
    "InputDigest",
    "Provenance",
    "ReportDataError",
    "SiteInfo",
    "SiteReportData",
    "SoilEffluxSeries",
    "StationInfo",
    "StemCarbon",
    "StemSeries",
    "UstarDistribution",
]

FloatArray = NDArray[np.float64]

HH_REQUIRED = ("NEE_F", "NEE_F_QC", "NEE_F_RANDUNC")
"""Half-hourly names a report cannot do without: the filled NEE, its quality class and its random uncertainty."""
HH_OPTIONAL = ("NEE", "NEE_F_FSD", "NEE_F_FNUM", "NEE_U05_F", "NEE_U50_F", "NEE_U95_F", "GPP_NT", "RECO_NT",
               "GPP_DT", "RECO_DT", "NT_QC", "DT_QC", "TA_F", "SW_IN_F", "VPD_F", "USTAR_THRESHOLD",
               "USTAR_FILTER", "NIGHT")
"""Half-hourly names the report uses when present (others are kept but not shown)."""
AGGREGATE_REQUIRED = ("NEE_F", "NEE_F_UNC", "GAP_FRACTION", "N_RECORDS")
"""Names every aggregate table (daily, monthly, annual) must hold, as :func:`gateway.flux.budget.aggregate`
writes them."""


class ReportDataError(ValueError):
    """The data cannot make a report; the message names the part, the variable and the fix."""


def _float_array(part: str, name: str, values: object) -> FloatArray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ReportDataError(f"{part}: {name} is not numeric; give an array of numbers (NaN for missing)") from None
    if arr.ndim != 1:
        raise ReportDataError(f"{part}: {name} must be one-dimensional (one value per record), got shape "
                              f"{arr.shape}")
    return arr


def _check_time(part: str, time_s: FloatArray) -> None:
    if time_s.size and not np.isfinite(time_s).all():
        raise ReportDataError(f"{part}: time_s has missing values; every record needs its time stamp")
    if time_s.size > 1 and np.any(np.diff(time_s) <= 0):
        k = int(np.flatnonzero(np.diff(time_s) <= 0)[0]) + 1
        raise ReportDataError(f"{part}: time_s is not strictly increasing at record {k}; sort the records and "
                              "remove duplicates")


def _check_length(part: str, name: str, arr: FloatArray, n: int) -> None:
    if arr.size != n:
        raise ReportDataError(f"{part}: {name} has {arr.size} values but time_s has {n}; give one value per "
                              "record (NaN for missing)")


@dataclass(frozen=True)
class SiteInfo:
    """Site metadata. ``site``: the site identifier. ``year``: the reported calendar year of the station's clock.
    ``lat``/``lon`` degrees north/east, ``elevation_m`` m a.s.l., ``utc_offset_h`` hours the station's standard
    time is ahead of UTC."""

    site: str
    year: int
    name: str = ""
    lat: float | None = None
    lon: float | None = None
    elevation_m: float | None = None
    utc_offset_h: float | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not self.site or not self.site.strip():
            raise ReportDataError("site: the site identifier is empty; give --site NAME")
        if not 1900 <= self.year <= 2200:
            raise ReportDataError(f"site: year {self.year} is not a calendar year")
        if self.lat is not None and not -90.0 <= self.lat <= 90.0:
            raise ReportDataError(f"site: latitude {self.lat} is outside -90…90 degrees north")
        if self.lon is not None and not -180.0 <= self.lon <= 180.0:
            raise ReportDataError(f"site: longitude {self.lon} is outside -180…180 degrees east")


@dataclass(frozen=True)
class UstarDistribution:
    """The u* threshold used (m s-1) and its bootstrap distribution. ``mode``: ``auto`` (moving-point test with
    bootstrap: ``draws`` holds every draw's threshold), ``value`` (given by the user) or ``none`` (NEE was already
    filtered: ``threshold`` NaN). ``percentiles``: e.g. ``{5: …, 50: …, 95: …}`` as the budget reported them
    (computed from ``draws`` when not given)."""

    mode: Literal["auto", "value", "none"]
    threshold: float
    draws: FloatArray = field(default_factory=lambda: np.empty(0))
    percentiles: Mapping[float, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in ("auto", "value", "none"):
            raise ReportDataError(f"u*: mode {self.mode!r} is not one of auto, value, none")
        draws = _float_array("u*", "draws", self.draws)
        object.__setattr__(self, "draws", draws)
        if self.mode != "none" and not math.isfinite(self.threshold):
            raise ReportDataError(f"u*: mode {self.mode} needs the threshold used (m s-1)")
        if not self.percentiles and draws.size and np.isfinite(draws).any():
            finite = draws[np.isfinite(draws)]
            object.__setattr__(self, "percentiles",
                               {q: float(np.percentile(finite, q)) for q in (5.0, 50.0, 95.0)})


@dataclass(frozen=True)
class BudgetData:
    """The carbon budget of the site-year (docs/budget.md). ``time_s``: start of each record; ``step_s``: 1800 or
    3600. ``hh``: half-hourly arrays by FLUXNET name (:data:`HH_REQUIRED` at least). ``daily``, ``monthly``,
    ``annual``: :class:`~gateway.flux.budget.aggregate.Aggregates` as :func:`~gateway.flux.budget.aggregate.aggregate`
    makes them (labels ``YYYYMMDD``, ``YYYYMM``, ``YYYY``). ``ustar``: the threshold and its distribution.
    ``scalars``: further single values of the budget run (``E0_NT``, ``USTAR_MODE``…). ``notes``: the budget's own
    notes, shown in the report."""

    time_s: FloatArray
    step_s: float
    hh: Mapping[str, FloatArray]
    daily: Aggregates
    monthly: Aggregates
    annual: Aggregates
    ustar: UstarDistribution
    scalars: Mapping[str, float | str] = field(default_factory=dict)
    notes: Sequence[str] = ()

    def __post_init__(self) -> None:
        part = "budget"
        t = _float_array(part, "time_s", self.time_s)
        object.__setattr__(self, "time_s", t)
        if self.step_s not in (1800.0, 3600.0):
            raise ReportDataError(f"{part}: step_s {self.step_s} s; the budget is half-hourly (1800) or hourly (3600)")
        if t.size < 2:
            raise ReportDataError(f"{part}: {t.size} records; a report needs the budget's half-hourly records")
        _check_time(part, t)
        if np.any(np.diff(t) != self.step_s):
            k = int(np.flatnonzero(np.diff(t) != self.step_s)[0]) + 1
            raise ReportDataError(f"{part}: record {k} is not {self.step_s:.0f} s after the one before; the budget "
                                  "arrays must be a regular grid (missing records as NaN)")
        hh: dict[str, FloatArray] = {}
        for name, values in self.hh.items():
            arr = _float_array(part, name, values)
            _check_length(part, name, arr, t.size)
            hh[name] = arr
        missing = [n for n in HH_REQUIRED if n not in hh]
        if missing:
            raise ReportDataError(f"{part}: no {', '.join(missing)} in the half-hourly data; the report needs "
                                  f"{', '.join(HH_REQUIRED)} (the output of sinkwatch flux budget)")
        object.__setattr__(self, "hh", hh)
        for label, agg in (("daily", self.daily), ("monthly", self.monthly), ("annual", self.annual)):
            self._check_aggregates(label, agg)

    @staticmethod
    def _check_aggregates(label: str, agg: Aggregates) -> None:
        part = f"budget {label} sums"
        if not agg.label:
            raise ReportDataError(f"{part}: no rows; give the {label} aggregates of the budget (or let the builder "
                                  "compute them from the half-hourly data)")
        missing = [n for n in AGGREGATE_REQUIRED if n not in agg.values]
        if missing:
            raise ReportDataError(f"{part}: no {', '.join(missing)} column; write the sums with sinkwatch flux "
                                  f"budget --{label}")
        for name, arr in agg.values.items():
            if np.asarray(arr).shape != (len(agg.label),):
                raise ReportDataError(f"{part}: {name} has {np.asarray(arr).size} values for {len(agg.label)} "
                                      "periods; give one value per period")


@dataclass(frozen=True)
class SoilEffluxSeries:
    """One soil CO2 efflux series. ``name``: ``FC_SOIL_GRAD`` (gradient method, one profile) or ``FC_SOIL_CH_<c>``
    (automated chamber c). ``method``: ``gradient`` or ``chamber``. ``time_s``: start of each period (gradient) or
    end of each closure (chamber). ``period_s``: the interval one value stands for (1800 for a half-hourly profile,
    the closure interval for a chamber). ``flux``, ``flux_unc`` (1 σ) µmol m-2 s-1 positive upward; ``qc`` bit mask
    (docs/soil-stems.md); ``ts`` soil temperature (°C) at ``ts_name`` (e.g. ``TS_1_1_1``) for each value."""

    name: str
    method: Literal["gradient", "chamber"]
    time_s: FloatArray
    period_s: float
    flux: FloatArray
    flux_unc: FloatArray
    ts: FloatArray | None = None
    ts_name: str = "TS"
    qc: FloatArray | None = None

    def __post_init__(self) -> None:
        part = f"soil efflux {self.name}"
        if self.method not in ("gradient", "chamber"):
            raise ReportDataError(f"{part}: method {self.method!r} is not gradient or chamber")
        if not (math.isfinite(self.period_s) and 0 < self.period_s <= 86400):
            raise ReportDataError(f"{part}: period_s {self.period_s} must be the interval one value stands for, "
                                  "in seconds (1800 for half-hourly)")
        t = _float_array(part, "time_s", self.time_s)
        _check_time(part, t)
        object.__setattr__(self, "time_s", t)
        for attr in ("flux", "flux_unc", "ts", "qc"):
            values = getattr(self, attr)
            if values is None:
                continue
            arr = _float_array(part, attr, values)
            _check_length(part, attr, arr, t.size)
            object.__setattr__(self, attr, arr)


@dataclass(frozen=True)
class StemSeries:
    """Dendrometer products of one tree (Zweifel et al. 2016 zero growth): ``gro_um`` growth since the series
    start and ``twd_um`` tree water deficit, µm of radius (or of the measured quantity, ``quantity``), at
    ``time_s``. ``species`` as in the tree list."""

    tree: str
    time_s: FloatArray
    gro_um: FloatArray
    twd_um: FloatArray
    species: str = ""
    quantity: Literal["radius", "circumference", "diameter"] = "radius"

    def __post_init__(self) -> None:
        part = f"stem {self.tree}"
        if not self.tree:
            raise ReportDataError("stem: a series without a tree identifier; name each tree (GRO_<tree>)")
        t = _float_array(part, "time_s", self.time_s)
        _check_time(part, t)
        object.__setattr__(self, "time_s", t)
        for attr in ("gro_um", "twd_um"):
            arr = _float_array(part, attr, getattr(self, attr))
            _check_length(part, attr, arr, t.size)
            object.__setattr__(self, attr, arr)


@dataclass(frozen=True)
class StemCarbon:
    """Carbon increment of the above-ground wood of one plot over ``start``…``end`` (``YYYYMMDD``), from
    :func:`gateway.flux.stems.allometry.plot_biomass`: ``c_inc_mg_ha`` (Mg C ha-1, point estimate) with its
    Monte-Carlo ``c_inc_sd``; ``co2e_inc_t_ha`` (t CO2e ha-1) with ``co2e_inc_sd``. Positive = carbon stored."""

    plot: str
    start: str
    end: str
    c_inc_mg_ha: float
    c_inc_sd: float
    co2e_inc_t_ha: float
    co2e_inc_sd: float
    n_trees: int
    method: str = ""

    def __post_init__(self) -> None:
        part = f"stem carbon {self.plot}"
        if not self.plot:
            raise ReportDataError("stem carbon: a row without a plot identifier")
        for attr in ("c_inc_mg_ha", "c_inc_sd", "co2e_inc_t_ha", "co2e_inc_sd"):
            if not math.isfinite(getattr(self, attr)):
                raise ReportDataError(f"{part}: {attr} is missing; give the plot's increment and its sd")
        if self.c_inc_sd < 0 or self.co2e_inc_sd < 0:
            raise ReportDataError(f"{part}: a standard deviation is negative")
        if self.n_trees < 1:
            raise ReportDataError(f"{part}: n_trees {self.n_trees}; a plot needs at least one tree")


@dataclass(frozen=True)
class StationInfo:
    """A station that delivered data, with its sensors (``sensor → variables``)."""

    station: str
    sensors: Mapping[str, Sequence[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Coverage:
    """How much of the period a variable covers: ``present`` of ``expected`` records from ``first`` to ``last``
    (``YYYYMMDDHHMM`` of the station's clock)."""

    variable: str
    first: str
    last: str
    expected: int
    present: int

    @property
    def fraction(self) -> float:
        return self.present / self.expected if self.expected else 0.0


@dataclass(frozen=True)
class InputDigest:
    """One input as a verifier can ask for it again: ``role`` (what it is for), ``source`` (a file name or a store
    query), ``sha256`` of its exact bytes (for a store query: of the canonical records), ``records``, ``first`` and
    ``last`` time stamp."""

    role: str
    source: str
    sha256: str
    records: int = 0
    first: str = ""
    last: str = ""

    def __post_init__(self) -> None:
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise ReportDataError(f"provenance: input {self.source!r}: sha256 must be 64 lower-case hex digits")


@dataclass(frozen=True)
class Provenance:
    """Where the report's numbers come from: ``stations`` and their sensors, ``coverage`` per variable,
    ``engines`` (component → name and version), ``settings_hashes`` (component → hash of its settings),
    ``inputs`` (digests), ``generated_at`` (UTC, RFC 3339), ``notes``."""

    stations: Sequence[StationInfo] = ()
    coverage: Sequence[Coverage] = ()
    engines: Mapping[str, str] = field(default_factory=dict)
    settings_hashes: Mapping[str, str] = field(default_factory=dict)
    inputs: Sequence[InputDigest] = ()
    generated_at: str = ""
    notes: Sequence[str] = ()


@dataclass(frozen=True)
class SiteReportData:
    """Everything one site-year's carbon report shows. ``budget`` is required; ``soil``, ``stems``,
    ``stem_carbon`` may be empty (the report then says "not measured")."""

    site: SiteInfo
    budget: BudgetData | None
    provenance: Provenance
    soil: Sequence[SoilEffluxSeries] = ()
    stems: Sequence[StemSeries] = ()
    stem_carbon: Sequence[StemCarbon] = ()

    def __post_init__(self) -> None:
        if self.budget is None:
            raise ReportDataError("budget: a site carbon report needs the carbon budget (half-hourly NEE_F with its "
                                  "uncertainty); compute it with sinkwatch flux budget and give its output")
        year = str(self.site.year)
        if year not in self.budget.annual.label:
            raise ReportDataError(f"budget annual sums: no row for {year} (rows: {', '.join(self.budget.annual.label)})"
                                  "; give the budget of the reported year")
        names = [s.name for s in self.soil]
        if len(set(names)) != len(names):
            raise ReportDataError(f"soil efflux: series names repeat ({', '.join(names)}); name each profile or "
                                  "chamber once")
        trees = [s.tree for s in self.stems]
        if len(set(trees)) != len(trees):
            raise ReportDataError(f"stems: tree identifiers repeat ({', '.join(trees)})")

    @property
    def budget_data(self) -> BudgetData:
        """The budget (never None after construction)."""
        assert self.budget is not None
        return self.budget

    def content_digest(self) -> str:
        """SHA-256 of the report's content (every array's bytes and every value, in a fixed order): two data
        objects with the same digest give the same report numbers. ``generated_at`` is left out."""
        h = hashlib.sha256()

        def add(tag: str, value: object) -> None:
            h.update(tag.encode())
            if isinstance(value, np.ndarray):
                h.update(np.ascontiguousarray(value, dtype="<f8").tobytes())
            else:
                h.update(json.dumps(value, sort_keys=True, default=str).encode())

        b = self.budget_data
        add("site", [self.site.site, self.site.year, self.site.lat, self.site.lon, self.site.utc_offset_h])
        add("time", b.time_s)
        for name in sorted(b.hh):
            add(f"hh:{name}", b.hh[name])
        for label, agg in (("daily", b.daily), ("monthly", b.monthly), ("annual", b.annual)):
            add(label, agg.label)
            for name in sorted(agg.values):
                add(f"{label}:{name}", np.asarray(agg.values[name], dtype=np.float64))
        add("ustar", [b.ustar.mode, b.ustar.threshold])
        add("ustar:draws", b.ustar.draws)
        for s in self.soil:
            add(f"soil:{s.name}", [s.method, s.period_s, s.ts_name])
            for arr in (s.time_s, s.flux, s.flux_unc, s.ts, s.qc):
                add("soil:array", np.empty(0) if arr is None else arr)
        for st in self.stems:
            add(f"stem:{st.tree}", [st.species, st.quantity])
            for arr in (st.time_s, st.gro_um, st.twd_um):
                add("stem:array", arr)
        for c in self.stem_carbon:
            add(f"carbon:{c.plot}", [c.start, c.end, c.c_inc_mg_ha, c.c_inc_sd, c.co2e_inc_t_ha, c.co2e_inc_sd,
                                     c.n_trees])
        add("inputs", [(i.role, i.source, i.sha256) for i in self.provenance.inputs])
        return h.hexdigest()
