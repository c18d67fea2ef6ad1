"""The `soil:` and `stems:` sections of central.yaml: how the central service turns a station's stored soil CO2
profiles, chamber closures and dendrometer series into soil efflux, GRO/TWD and stem carbon (docs/soil-stems.md,
"In the running system").

Documented key by key in `sample-central.yaml`; validated with the rest of the file before any I/O. A tree list in
a CSV file (`stems.per_station.<st>.plots[].trees_csv`) is read by `load_central_config` right after validation,
relative to the config file, with errors naming the file, the line and the fix.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import re
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.configfile import read_small_text, refuse_bool_for_number
from gateway.model import Identifier

if TYPE_CHECKING:  # the science (numpy) is imported when a job runs, not by every reader of the central config
    from gateway.flux.soil.diffusivity import SoilSite

SOURCE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}/[A-Z][A-Z0-9_]{0,63}$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9-]{0,31}$"
INDEX_PATTERN = r"^[1-9][0-9]{0,2}$"  # an AmeriFlux position index: profile p, chamber c
_DURATION_RE = re.compile(r"^([1-9][0-9]{0,8})(s|m|h|d)$")
_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
Source = Annotated[str, Field(pattern=SOURCE_PATTERN, description="sensor/VARIABLE, e.g. soil_co2_10cm/CO2_1_1_1")]
Quantity = Literal["radius", "circumference", "diameter"]
QUANTITY_OF_VARIABLE = {"STEM_RAD_CHG": "radius", "STEM_CIRC_CHG": "circumference", "STEM_DIAM_CHG": "diameter"}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    _refuse_bool_for_number = field_validator("*", mode="before")(refuse_bool_for_number)


def _whole_half_hours(value: float) -> float:
    if not math.isclose(value * 2, round(value * 2)):
        raise ValueError("must be a whole number of half hours (e.g. 1, -5, 5.5): the station's standard time")
    return value


def parse_every(value: str | None) -> timedelta | None:
    if value is None:
        return None
    match = _DURATION_RE.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a duration; use a whole number followed by s, m, h or d, e.g. 1d")
    return timedelta(**{_DURATION_UNITS[match.group(2)]: int(match.group(1))})


# --- soil --------------------------------------------------------------------------------------------------------


class SoilMetadata(_Section):
    """The soil at the profile (one value for all depths): gateway.flux.soil.diffusivity.SoilSite's keys."""

    porosity: float | None = Field(default=None, description="total porosity, m3 m-3 (else from the densities)")
    bulk_density: float | None = Field(default=None, gt=0, le=2.65, description="dry bulk density, g cm-3")
    particle_density: float = Field(default=2.65, gt=0, le=5, description="particle density, g cm-3")
    clay: float | None = Field(default=None, description="clay mass fraction 0-1 (moldrup1999)")
    sand: float | None = Field(default=None, description="sand mass fraction 0-1")
    silt: float | None = Field(default=None, description="silt mass fraction 0-1")
    eps100: float | None = Field(default=None, description="air-filled porosity at -100 cm water head, m3 m-3")
    campbell_b: float | None = Field(default=None, gt=0, description="Campbell's b (moldrup2000_swc)")

    @model_validator(mode="after")
    def _physical(self) -> SoilMetadata:
        if self.porosity is not None and not 0.0 < self.porosity <= 1.0:
            raise ValueError(f"porosity {self.porosity:g} is outside (0, 1]: give the total porosity in m3 m-3, "
                             "e.g. 0.5 (not in %)")
        if self.porosity is None and self.bulk_density is None:
            raise ValueError("give porosity (m3 m-3) or bulk_density (g cm-3, with particle_density, default 2.65)")
        if self.porosity is None and self.bulk_density is not None and self.bulk_density >= self.particle_density:
            raise ValueError(f"bulk_density {self.bulk_density:g} >= particle_density {self.particle_density:g} "
                             "gives no pore space: check both (g cm-3)")
        for name in ("clay", "sand", "silt", "eps100"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} {value:g} is outside [0, 1]: give a fraction, e.g. 0.18 for 18 %")
        if (self.sand is None) != (self.silt is None) and self.clay is None:
            raise ValueError("texture: give clay, or both sand and silt (mass fractions 0-1)")
        return self

    def soil_site(self) -> SoilSite:
        from gateway.flux.soil.diffusivity import SoilSite

        return SoilSite(bulk_density=self.bulk_density, particle_density=self.particle_density,
                        porosity=self.porosity, sand=self.sand, silt=self.silt, clay=self.clay, eps100=self.eps100,
                        campbell_b=self.campbell_b)


class Probe(_Section):
    """One depth of a profile: where its CO2, soil temperature and water content come from."""

    depth_m: float = Field(gt=0, description="depth below the soil surface, m (positive down)")
    co2: Source
    ts: Source | None = Field(default=None, description="soil temperature at this depth, e.g. a TS sensor or the "
                                                        "probe's own T_PROBE")
    swc: Source | None = Field(default=None, description="soil water content at this depth (SWC in %); default "
                                                         "the profile's `swc`")
    t_probe: Source | None = Field(default=None, description="the CO2 probe's own temperature, when its "
                                                             "compensation used it (default: ts)")

    @field_validator("depth_m")
    @classmethod
    def _metres(cls, value: float) -> float:
        if value > 5.0:
            raise ValueError(f"depth {value:g} m is deeper than 5 m: give depths in m (e.g. 0.1), not cm")
        return value


class Accuracy(_Section):
    """The probes' 1-sigma accuracies for the measurement uncertainty (gateway.flux.soil.gradient.ProbeAccuracy):
    defaults after the GMP252 datasheet; set your calibration certificate."""

    co2_abs_ppm: float = Field(default=40.0, gt=0, le=1000)
    co2_rel: float = Field(default=0.02, ge=0, le=0.5)
    t_c: float = Field(default=0.5, gt=0, le=10)
    swc: float = Field(default=0.03, gt=0, le=0.3, description="m3 m-3")
    p_pa: float = Field(default=100.0, gt=0, le=5000)


class Profile(_Section):
    name: str = Field(default="1", pattern=INDEX_PATTERN, description="profile number p of the output names")
    probes: list[Probe] = Field(min_length=2, description="one entry per CO2 depth, shallowest first")
    swc: Source | None = Field(default=None, description="one soil water content for every depth without its own")
    soil: SoilMetadata
    method: str = "layer_extrapolation"
    diffusivity_model: str = "millington_quirk1961"
    d0_model: Literal["massman1998", "jones1992"] = "massman1998"
    pressure_pa: float = Field(default=101325.0, gt=50000, le=110000, description="air pressure, Pa (a constant)")
    compensation_pa: float | None = Field(default=101325.0, gt=50000, le=110000,
                                          description="the pressure the probes compensate with (GMP252 default "
                                                      "1013.25 hPa); null: their readings are true mole fractions")
    min_coverage: float = Field(default=0.5, gt=0, le=1, description="a period needs this fraction of the median "
                                                                     "readings per period of each input")
    accuracy: Accuracy = Field(default_factory=Accuracy)
    atmosphere: Source | None = Field(default=None, description="CO2 above the surface (needed by top_layer)")
    reference_ts: Source | None = Field(default=None, description="the soil temperature stored beside the efflux "
                                                                  "as TS, for every period it reports (the report "
                                                                  "plots against it and fills gaps from it); default "
                                                                  "the shallowest probe's ts")

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        from gateway.flux.soil.diffusivity import DIFFUSIVITY_MODELS
        from gateway.flux.soil.gradient import GRADIENT_METHODS

        if self.method not in GRADIENT_METHODS:
            raise ValueError(f"method {self.method!r} is not one of {', '.join(GRADIENT_METHODS)}")
        if self.diffusivity_model not in DIFFUSIVITY_MODELS:
            raise ValueError(f"diffusivity_model {self.diffusivity_model!r} is not one of "
                             f"{', '.join(DIFFUSIVITY_MODELS)}")
        depths = [p.depth_m for p in self.probes]
        if any(b <= a for a, b in itertools.pairwise(depths)):
            raise ValueError(f"probe depths {depths} m must increase strictly, shallowest first (a depth twice?)")
        for index, probe in enumerate(self.probes):
            if probe.ts is None:
                raise ValueError(f"probes[{index}] (depth {probe.depth_m:g} m) has no ts: give the soil temperature "
                                 "at every CO2 probe depth as sensor/VARIABLE (a TS sensor, or the probe's own "
                                 "T_PROBE)")
            if probe.swc is None and self.swc is None:
                raise ValueError(f"probes[{index}] (depth {probe.depth_m:g} m) has no swc: give the soil water "
                                 "content per probe or once for the profile (`swc: sensor/SWC_...`)")
        if self.method == "top_layer" and self.atmosphere is None:
            raise ValueError("method top_layer needs `atmosphere: sensor/CO2_...`, the CO2 above the soil")
        if self.diffusivity_model == "moldrup1999" and self.soil.clay is None and self.soil.sand is None:
            raise ValueError("diffusivity_model moldrup1999 needs the texture: soil.clay (or soil.sand and soil.silt)")
        if self.diffusivity_model == "moldrup2000_swc" and (self.soil.eps100 is None or self.soil.campbell_b is None):
            raise ValueError("diffusivity_model moldrup2000_swc needs soil.eps100 and soil.campbell_b")
        return self


class ChamberSettings(_Section):
    name: str = Field(default="1", pattern=INDEX_PATTERN, description="chamber number c of FC_SOIL_CH_<c>")
    co2: Source = Field(description="the chamber's CO2, e.g. chamber_1/CO2_1_1_1")
    lid: Source = Field(description="its lid state, e.g. chamber_1/LID_CLOSED_1_1_1 (same sensor, same instants)")
    temperature: Source | None = Field(default=None, description="headspace temperature, e.g. "
                                                                 "chamber_1/T_PROBE_1_1_1; else t_air_c")
    t_air_c: float = Field(default=15.0, ge=-40, le=60, description="headspace temperature without a sensor, degC")
    ts: Source | None = Field(default=None, description="soil temperature beside the collar (report, gap filling)")
    volume_m3: float = Field(gt=0, le=1, description="headspace + collar + tubing, m3 (1 L = 0.001 m3)")
    area_m2: float = Field(gt=0, le=2, description="soil area inside the collar, m2")
    pressure_pa: float = Field(default=101325.0, gt=50000, le=110000)
    dead_band_s: float = Field(default=30.0, gt=0, le=600)
    min_closure_s: float = Field(default=60.0, gt=0, le=7200)
    min_points: int = Field(default=5, ge=3, le=10000)
    r2_min: float = Field(default=0.9, ge=0, le=1)
    noise_ppm: float | None = Field(default=None, gt=0, le=100, description="analyzer noise for the detection "
                                                                            "limit; null: each closure's residuals")

    @model_validator(mode="after")
    def _geometry(self) -> ChamberSettings:
        if self.volume_m3 / self.area_m2 > 5.0:
            raise ValueError(f"volume_m3/area_m2 = {self.volume_m3 / self.area_m2:g} m: volume in m3 (1 L = 0.001 "
                             "m3) and area in m2?")
        if self.co2.split("/")[0] != self.lid.split("/")[0]:
            raise ValueError(f"co2 ({self.co2}) and lid ({self.lid}) must be one sensor's: the lid state is paired "
                             "with each CO2 value by its time stamp")
        return self


class StationSoilSettings(_Section):
    site: Identifier | None = None
    utc_offset_h: float = Field(default=0.0, ge=-12, le=14)
    profiles: list[Profile] = Field(default_factory=list)
    chambers: list[ChamberSettings] = Field(default_factory=list)

    @field_validator("utc_offset_h")
    @classmethod
    def _offset(cls, value: float) -> float:
        return _whole_half_hours(value)

    @model_validator(mode="after")
    def _unique(self) -> StationSoilSettings:
        for kind, names in (("profiles", [p.name for p in self.profiles]), ("chambers", [c.name for c in
                                                                                       self.chambers])):
            if len(set(names)) != len(names):
                raise ValueError(f"{kind}: names repeat ({', '.join(names)}); give each its own name")
        return self


class SoilJobConfig(_Section):
    every: str | None = Field(default=None, description="recompute this often inside central serve; null: never")
    period_min: int = Field(default=30, ge=1, le=1440, description="gradient-method averaging period, minutes")
    previous_year_days: int = Field(default=31, ge=0, le=366)
    per_station: dict[Identifier, StationSoilSettings] = Field(default_factory=dict)

    @field_validator("every")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        parse_every(value)
        return value

    @field_validator("period_min")
    @classmethod
    def _divides_a_day(cls, value: int) -> int:
        if 1440 % value:
            raise ValueError(f"{value} min does not divide a day: use e.g. 10, 30 or 60")
        return value

    def interval(self) -> timedelta | None:
        return parse_every(self.every)


# --- stems -------------------------------------------------------------------------------------------------------


class Tree(_Section):
    tree: str = Field(pattern=NAME_PATTERN, description="tree id, used in GRO_<tree>, TWD_<tree>")
    species: str = Field(min_length=1, description="Genus species as in the species table, e.g. Fagus sylvatica")
    dbh_cm: float = Field(gt=0, description="diameter at breast height at the start of the year, cm")
    dendrometer: Source | None = Field(default=None, description="its dendrometer, e.g. "
                                                                 "dendro_plot1/STEM_RAD_CHG_1_1_1")
    quantity: Quantity | None = Field(default=None, description="what the dendrometer measures; default from its "
                                                                "variable (STEM_RAD/CIRC/DIAM_CHG)")
    height_m: float | None = Field(default=None, gt=0, le=150)
    wood_density: float | None = Field(default=None, gt=0.05, le=1.5, description="basic wood density, g cm-3")

    @field_validator("species")
    @classmethod
    def _species(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a tree needs its species (e.g. Fagus sylvatica), or drop it from the list")
        return value.strip()

    @field_validator("dbh_cm")
    @classmethod
    def _cm(cls, value: float) -> float:
        if value > 500:
            raise ValueError(f"DBH {value:g} cm: mm instead of cm? divide by 10")
        return value

    def measured_quantity(self) -> Quantity:
        if self.quantity is not None:
            return self.quantity
        variable = (self.dendrometer or "/").split("/")[1]
        for base, quantity in QUANTITY_OF_VARIABLE.items():
            if variable.startswith(base):
                return quantity  # type: ignore[return-value]
        return "radius"


class Plot(_Section):
    name: str = Field(pattern=NAME_PATTERN)
    area_m2: float = Field(gt=0, le=1e6, description="the plot's horizontal area, m2")
    trees: list[Tree] = Field(default_factory=list)
    trees_csv: Path | None = Field(default=None, description="tree list file (tree,species,dbh_cm,dendrometer,...) "
                                                             "relative to the config file")
    carbon_fraction: float = Field(default=0.47, gt=0, lt=1, description="tC per t dry matter (IPCC default 0.47)")
    carbon_fraction_sd: float = Field(default=0.0, ge=0, lt=0.5)
    increment_sd_cm: float = Field(default=0.0, ge=0, le=5, description="1-sigma error of a dendrometer's annual "
                                                                        "DBH increment, cm")
    n_draws: int = Field(default=1000, ge=100, le=100000)
    seed: int = 0

    @model_validator(mode="after")
    def _some_trees(self) -> Plot:
        if not self.trees and self.trees_csv is None:
            raise ValueError(f"plot {self.name}: give its trees (a list) or trees_csv (a file)")
        return self

    def load_trees(self, base: Path) -> None:
        """Read `trees_csv` (relative to `base`) into `trees`; ValueError naming the file, line and fix."""
        if self.trees_csv is None:
            return
        path = self.trees_csv if self.trees_csv.is_absolute() else base / self.trees_csv
        try:
            text = read_small_text(path)
        except OSError as exc:
            raise ValueError(f"{path}: cannot read the tree list of plot {self.name}: {exc.strerror}") from None
        rows = csv.DictReader(io.StringIO(text))
        header = rows.fieldnames or []
        missing = [c for c in ("tree", "species", "dbh_cm") if c not in header]
        if missing:
            raise ValueError(f"{path}: no column {', '.join(missing)}; the tree list needs tree, species, dbh_cm "
                             "(and optionally dendrometer, quantity, height_m, wood_density)")
        trees = list(self.trees)
        for line, row in enumerate(rows, start=2):
            entry = {k: v.strip() for k, v in row.items() if k is not None and v is not None and v.strip()}
            name = entry.get("tree", f"(line {line})")
            if "species" not in entry:
                raise ValueError(f"{path}: line {line}: tree {name} has no species; give it (e.g. Fagus sylvatica) "
                                 "or drop the tree from the list")
            if "dbh_cm" not in entry:
                raise ValueError(f"{path}: line {line}: tree {name} has no DBH; measure it (dbh_cm, cm) or drop the "
                                 "tree from the list")
            try:
                trees.append(Tree.model_validate(entry))
            except ValueError as exc:
                raise ValueError(f"{path}: line {line}: tree {name}: {_first_error(exc)}") from None
        object.__setattr__(self, "trees", trees)
        names = [t.tree for t in trees]
        if len(set(names)) != len(names):
            raise ValueError(f"{path}: tree ids repeat in plot {self.name}")


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    return str(exc)


class Cleaning(_Section):
    """gateway.flux.stems.dendro.clean_dendrometer's parameters."""

    tol_out: float = Field(default=10.0, gt=0)
    tol_jump: float = Field(default=50.0, gt=0)
    window_days: float = Field(default=10.0, gt=0, le=366)
    max_spike_samples: int = Field(default=6, ge=1, le=1000)
    frost_temp_c: float = Field(default=0.0, ge=-20, le=10)
    frost_factor: float = Field(default=5.0, ge=1, le=100)


class StationStemsSettings(_Section):
    site: Identifier | None = None
    utc_offset_h: float = Field(default=0.0, ge=-12, le=14)
    plots: list[Plot] = Field(min_length=1)
    species_table: Path | None = Field(default=None, description="extra species rows (CSV of the built-in table's "
                                                                 "columns), relative to the config file")
    frost_temperature: Source | None = Field(default=None, description="air temperature for frost flags, e.g. "
                                                                       "ta_rh/TA_1_1_1")
    cleaning: Cleaning = Field(default_factory=Cleaning)

    @field_validator("utc_offset_h")
    @classmethod
    def _offset(cls, value: float) -> float:
        return _whole_half_hours(value)

    @model_validator(mode="after")
    def _unique(self) -> StationStemsSettings:
        plots = [p.name for p in self.plots]
        if len(set(plots)) != len(plots):
            raise ValueError(f"plots: names repeat ({', '.join(plots)})")
        trees = [t.tree for p in self.plots for t in p.trees]
        if len(set(trees)) != len(trees):
            raise ValueError("trees: ids repeat across the plots; give every tree its own id")
        return self


class StemsJobConfig(_Section):
    every: str | None = Field(default=None, description="recompute this often inside central serve; null: never")
    previous_year_days: int = Field(default=31, ge=0, le=366)
    per_station: dict[Identifier, StationStemsSettings] = Field(default_factory=dict)

    @field_validator("every")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        parse_every(value)
        return value

    def interval(self) -> timedelta | None:
        return parse_every(self.every)

    def load_files(self, base: Path) -> None:
        for station, settings in self.per_station.items():
            for index, plot in enumerate(settings.plots):
                try:
                    plot.load_trees(base)
                except ValueError as exc:
                    raise ValueError(f"stems.per_station.{station}.plots[{index}]: {exc}") from None
            if settings.species_table is not None:
                path = settings.species_table if settings.species_table.is_absolute() else base / \
                    settings.species_table
                from gateway.flux.stems.allometry import parse_species_table

                try:
                    parse_species_table(read_small_text(path))
                except OSError as exc:
                    raise ValueError(f"stems.per_station.{station}.species_table: {path}: {exc.strerror}") from None
                except ValueError as exc:
                    raise ValueError(f"stems.per_station.{station}.species_table: {path}: {exc}") from None
                object.__setattr__(settings, "species_table", path)
