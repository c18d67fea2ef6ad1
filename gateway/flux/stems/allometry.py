"""Stems to carbon: DBH → above-ground biomass (AGB) by allometry, carbon, CO2 equivalents, plot upscaling, with the
allometric and measurement uncertainty propagated by a seeded Monte Carlo.

Equation forms (``equation`` column of the species table; DBH in cm, H in m, ρ in g cm-3, AGB in kg dry mass):

- ``jenkins2003``: ``AGB = exp(b0 + b1·ln DBH)`` — Jenkins, Chojnacky, Heath & Birdsey (2003), For. Sci. 49,
  12-35, Table 4 (ten North-American species groups, total above-ground biomass).
- ``ln_power``: ``AGB = CF·exp(b0 + b1·ln DBH)`` with ``CF = b2`` (a log-log fit's back-transformation correction,
  1 if empty) — the form of most species equations (Zianis et al. 2005, Silva Fenn. Monogr. 4; Forrester et al.
  2017, For. Ecol. Manage. 396, 160-175) for users to add with their source.
- ``chave2014_eq4``: ``AGB = 0.0673·(ρ·DBH²·H)^0.976`` — Chave et al. (2014), Glob. Change Biol. 20, 3177-3190,
  eq. 4, RSE 0.357 (ln units); the pan-tropical fallback when a tree has no species equation but has height and wood
  density.
- ``chave2014_eq7``: ``AGB = exp(-1.803 - 0.976·E + 0.976·ln ρ + 2.673·ln DBH - 0.0299·(ln DBH)²)`` — Chave et
  al. (2014) eq. 7, without height; ``E`` the site's environmental stress index (Chave et al. 2014 eq. 6).

Carbon ``C = AGB·CF_C`` with the IPCC default carbon fraction 0.47 (IPCC 2006 Guidelines, Vol. 4, ch. 4, Table 4.3;
configurable, with its standard deviation); ``CO2e = C·44/12``.

**Uncertainty** (:func:`plot_biomass`): a Monte Carlo with a fixed seed draws, per draw and tree, (1) the DBH
measurement error ``σ_D = a + b·DBH`` (default Chave et al. 2004, Phil. Trans. R. Soc. B 359, 409-420, p. 412:
0.0904 cm + 0.62 %, their "small error" part), (2) height and wood-density errors when given, (3) the allometric
residual ``ε ~ N(0, RSE)`` in ln units, multiplicative and *the same for a tree at both ends of an increment* (a
tree that is heavier than the equation stays heavier), (4) the carbon fraction. As in the BIOMASS R package
(Réjou-Méchain et al. 2017), the point estimate is the published equation and the Monte-Carlo mean includes the
log-normal back-transformation (``exp(RSE²/2)``); both are reported. The equations' parameter (fit) uncertainty is
not included: the sources give no covariance matrices.

Pure functions: arrays and lists in, dataclasses out; the default species table is package data read once
(:func:`default_species_table`), user tables are parsed from CSV text (:func:`parse_species_table`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "CO2_PER_C",
    "IPCC_CARBON_FRACTION",
    "AllometricEquation",
    "PlotBiomass",
    "TreeBiomass",
    "agb_kg",
    "default_species_table",
    "parse_species_table",
    "plot_biomass",
    "tree_biomass",
]

FloatArray = NDArray[np.float64]
IPCC_CARBON_FRACTION = 0.47
"""IPCC (2006) default carbon fraction of dry wood, tC/t dry matter (Vol. 4, ch. 4, Table 4.3)."""
CO2_PER_C = 44.0 / 12.0
"""Mass ratio CO2/C (molar masses 44.01/12.011, rounded as in IPCC reporting)."""
DEFAULT_LN_RSE = 0.3
"""Residual standard error (ln units) assumed where a source gives none — an assumption, replace with the source's."""
CHAVE2014_EQ4_RSE = 0.357
CHAVE2014_EQ7_RSE = 0.357
"""Chave et al. (2014) give RSE 0.357 for eq. 4; for eq. 7 we use the same value (their eq. 7 RSE not transcribed
here — an assumption)."""
EQUATIONS = ("jenkins2003", "ln_power", "chave2014_eq4", "chave2014_eq7")


@dataclass(frozen=True)
class AllometricEquation:
    """One row of the species table (module docstring); ``ln_rse`` in ln units; DBH range in cm."""

    taxon: str
    equation: str
    b0: float
    b1: float
    b2: float
    ln_rse: float | None
    wood_density: float | None
    dbh_min_cm: float | None
    dbh_max_cm: float | None
    source: str
    source_detail: str

    @property
    def rse(self) -> float:
        if self.ln_rse is not None:
            return self.ln_rse
        if self.equation == "chave2014_eq4":
            return CHAVE2014_EQ4_RSE
        if self.equation == "chave2014_eq7":
            return CHAVE2014_EQ7_RSE
        return DEFAULT_LN_RSE


def _opt_float(text: str, name: str, line: int) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError as exc:
        raise ValueError(f"species table line {line}: {name} {text!r} is not a number") from exc


def parse_species_table(text: str) -> dict[str, AllometricEquation]:
    """Parse a species table (CSV with the columns of the package's ``allometry_species.csv``; ``#`` lines are
    comments) into ``{taxon: equation}``. Errors name the line and the column."""
    rows = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    reader = csv.DictReader(io.StringIO("\n".join(rows)))
    needed = {"taxon", "equation", "b0", "b1", "b2", "ln_rse", "wood_density", "dbh_min_cm", "dbh_max_cm", "source",
              "source_detail"}
    missing = needed - set(reader.fieldnames or [])
    if missing:
        raise ValueError(f"species table: missing column(s) {', '.join(sorted(missing))}")
    table: dict[str, AllometricEquation] = {}
    for i, row in enumerate(reader, start=2):
        taxon = row["taxon"].strip()
        eq = row["equation"].strip()
        if not taxon:
            raise ValueError(f"species table line {i}: empty taxon")
        if eq not in EQUATIONS:
            raise ValueError(f"species table line {i} ({taxon}): unknown equation {eq!r}; use one of "
                             f"{', '.join(EQUATIONS)}")
        if not row["source"].strip():
            raise ValueError(f"species table line {i} ({taxon}): every equation needs its source (citation)")
        b0 = _opt_float(row["b0"], "b0", i)
        b1 = _opt_float(row["b1"], "b1", i)
        if eq in ("jenkins2003", "ln_power") and (b0 is None or b1 is None):
            raise ValueError(f"species table line {i} ({taxon}): {eq} needs b0 and b1")
        b2 = _opt_float(row["b2"], "b2", i)
        table[taxon] = AllometricEquation(
            taxon=taxon, equation=eq, b0=b0 or 0.0, b1=b1 or 0.0, b2=1.0 if b2 is None else b2,
            ln_rse=_opt_float(row["ln_rse"], "ln_rse", i),
            wood_density=_opt_float(row["wood_density"], "wood_density", i),
            dbh_min_cm=_opt_float(row["dbh_min_cm"], "dbh_min_cm", i),
            dbh_max_cm=_opt_float(row["dbh_max_cm"], "dbh_max_cm", i),
            source=row["source"].strip(), source_detail=row["source_detail"].strip(),
        )
    return table


@cache
def default_species_table() -> dict[str, AllometricEquation]:
    """The package's documented species table (``gateway/flux/stems/data/allometry_species.csv``)."""
    text = resources.files("gateway.flux.stems").joinpath("data/allometry_species.csv").read_text(encoding="utf-8")
    return parse_species_table(text)


def lookup(species: str, table: dict[str, AllometricEquation]) -> AllometricEquation | None:
    """The species' own row, else its genus's (first word), else None."""
    name = " ".join(species.split())
    if name in table:
        return table[name]
    genus = name.split(" ")[0] if name else ""
    return table.get(genus)


def agb_kg(
    eq: AllometricEquation, dbh_cm: ArrayLike, *, height_m: ArrayLike | None = None,
    wood_density: ArrayLike | None = None, stress_e: float | None = None,
) -> FloatArray:
    """Above-ground dry biomass (kg) by one equation (module docstring) for DBH in cm (arrays broadcast)."""
    d = np.asarray(dbh_cm, dtype=np.float64)
    if eq.equation == "jenkins2003":
        return np.exp(eq.b0 + eq.b1 * np.log(d))
    if eq.equation == "ln_power":
        return eq.b2 * np.exp(eq.b0 + eq.b1 * np.log(d))
    rho = wood_density if wood_density is not None else eq.wood_density
    if rho is None:
        raise ValueError(f"{eq.equation} for {eq.taxon!r} needs the wood density (g cm-3): give wood_density per "
                         "tree or in the species table")
    r = np.asarray(rho, dtype=np.float64)
    if eq.equation == "chave2014_eq4":
        if height_m is None:
            raise ValueError(f"chave2014_eq4 for {eq.taxon!r} needs the tree height (m); without heights use "
                             "chave2014_eq7 with the site's stress index E")
        h = np.asarray(height_m, dtype=np.float64)
        return 0.0673 * (r * d**2 * h) ** 0.976
    if eq.equation == "chave2014_eq7":
        if stress_e is None:
            raise ValueError(f"chave2014_eq7 for {eq.taxon!r} needs the site's environmental stress index E "
                             "(Chave et al. 2014 eq. 6)")
        ln_d = np.log(d)
        return np.exp(-1.803 - 0.976 * stress_e + 0.976 * np.log(r) + 2.673 * ln_d - 0.0299 * ln_d**2)
    raise ValueError(f"unknown equation {eq.equation!r}")


@dataclass(frozen=True)
class TreeBiomass:
    """Per tree: ``agb_kg`` (point estimate), ``agb_increment_kg`` (if increments given), the equation used,
    ``extrapolated`` (DBH outside the source's range)."""

    agb_kg: FloatArray
    agb_increment_kg: FloatArray
    equations: list[AllometricEquation]
    extrapolated: NDArray[np.bool_]


def _resolve(
    species: Sequence[str | None], table: dict[str, AllometricEquation], fallback: AllometricEquation | None
) -> list[AllometricEquation]:
    eqs: list[AllometricEquation] = []
    no_species: list[int] = []
    unknown: list[str] = []
    for i, sp in enumerate(species):
        if sp is None or not str(sp).strip():
            if fallback is None:
                no_species.append(i)
                continue
            eqs.append(fallback)
            continue
        eq = lookup(str(sp), table)
        if eq is None:
            if fallback is None:
                unknown.append(f"{i}:{sp}")
                continue
            eq = fallback
        eqs.append(eq)
    if no_species:
        raise ValueError(f"tree(s) {no_species[:10]} have no species: give one, or pass fallback= an equation "
                         "(e.g. chave2014_eq4 with wood density and height)")
    if unknown:
        raise ValueError(f"no allometric equation for tree(s) {unknown[:10]}: add the species or genus to the species "
                         "table (parse_species_table) or pass fallback=")
    return eqs


def _check_dbh(dbh: FloatArray, name: str = "dbh_cm") -> None:
    bad = ~np.isfinite(dbh) | (dbh <= 0)
    if bad.any():
        idx = np.flatnonzero(bad)[:10].tolist()
        raise ValueError(f"{name}: tree(s) {idx} have no valid DBH (missing, zero or negative): measure them or "
                         "drop them from the tree list explicitly")
    if np.max(dbh) > 500.0:
        raise ValueError(f"{name}: a DBH of {np.max(dbh):g} cm — mm instead of cm? divide by 10")


def tree_biomass(
    species: Sequence[str | None],
    dbh_cm: ArrayLike,
    *,
    dbh_increment_cm: ArrayLike | None = None,
    height_m: ArrayLike | None = None,
    wood_density: ArrayLike | None = None,
    stress_e: float | None = None,
    table: dict[str, AllometricEquation] | None = None,
    fallback: AllometricEquation | None = None,
) -> TreeBiomass:
    """Point estimates per tree: AGB (kg) at ``dbh_cm`` and, with ``dbh_increment_cm``, the AGB increment
    ``AGB(DBH + ΔDBH) - AGB(DBH)`` (kg). Species are looked up species-first, then genus, in ``table`` (default:
    :func:`default_species_table`); ``fallback`` for trees with no species or no row. Errors name the trees."""
    d = np.asarray(dbh_cm, dtype=np.float64)
    if d.ndim != 1 or d.size != len(species):
        raise ValueError(f"species ({len(species)}) and dbh_cm ({d.shape}) must describe the same trees")
    _check_dbh(d)
    eqs = _resolve(species, default_species_table() if table is None else table, fallback)
    inc = np.zeros_like(d) if dbh_increment_cm is None else np.asarray(dbh_increment_cm, dtype=np.float64)
    if inc.shape != d.shape or not np.all(np.isfinite(inc)):
        raise ValueError("dbh_increment_cm must give a finite increment (cm) for every tree")
    h = None if height_m is None else np.broadcast_to(np.asarray(height_m, dtype=np.float64), d.shape)
    rho = None if wood_density is None else np.broadcast_to(np.asarray(wood_density, dtype=np.float64), d.shape)
    agb = np.empty_like(d)
    agb_end = np.empty_like(d)
    extrap = np.zeros(d.size, dtype=bool)
    for eq in {id(e): e for e in eqs}.values():
        sel = np.array([e is eq for e in eqs])
        kw = {"height_m": None if h is None else h[sel], "wood_density": None if rho is None else rho[sel],
              "stress_e": stress_e}
        agb[sel] = agb_kg(eq, d[sel], **kw)
        agb_end[sel] = agb_kg(eq, d[sel] + inc[sel], **kw)
        lo = -np.inf if eq.dbh_min_cm is None else eq.dbh_min_cm
        hi = np.inf if eq.dbh_max_cm is None else eq.dbh_max_cm
        extrap[sel] = (d[sel] < lo) | (d[sel] > hi)
    return TreeBiomass(agb_kg=agb, agb_increment_kg=agb_end - agb, equations=eqs, extrapolated=extrap)


@dataclass(frozen=True)
class PlotBiomass:
    """Plot totals per hectare. Point estimates (published equations): ``agb_mg_ha``, ``carbon_mg_ha`` (Mg C ha-1),
    ``co2e_t_ha`` (t CO2e ha-1) and, with increments, ``*_increment_*``. Monte Carlo (``n_draws``, ``seed``):
    ``*_mean``, ``*_sd`` and the 2.5/97.5 % quantiles ``*_ci`` of each. ``n_extrapolated`` trees outside their
    equation's DBH range."""

    agb_mg_ha: float
    carbon_mg_ha: float
    co2e_t_ha: float
    agb_increment_mg_ha: float
    carbon_increment_mg_ha: float
    co2e_increment_t_ha: float
    mc: dict[str, tuple[float, float, float, float]]
    n_trees: int
    n_extrapolated: int
    n_draws: int
    seed: int

    def series(self) -> dict[str, float]:
        """Named values (docs/soil-stems.md): ``AGB``, ``C_AGB``, ``CO2E_AGB`` (Mg or t ha-1), increments
        ``*_INC``, each with ``_SD`` from the Monte Carlo."""
        out = {
            "AGB": self.agb_mg_ha, "C_AGB": self.carbon_mg_ha, "CO2E_AGB": self.co2e_t_ha,
            "AGB_INC": self.agb_increment_mg_ha, "C_AGB_INC": self.carbon_increment_mg_ha,
            "CO2E_AGB_INC": self.co2e_increment_t_ha,
        }
        for key in list(out):
            out[f"{key}_SD"] = self.mc[key][1]
        return out


def plot_biomass(
    species: Sequence[str | None],
    dbh_cm: ArrayLike,
    plot_area_m2: float,
    *,
    dbh_increment_cm: ArrayLike | None = None,
    height_m: ArrayLike | None = None,
    wood_density: ArrayLike | None = None,
    stress_e: float | None = None,
    table: dict[str, AllometricEquation] | None = None,
    fallback: AllometricEquation | None = None,
    carbon_fraction: float = IPCC_CARBON_FRACTION,
    carbon_fraction_sd: float = 0.0,
    dbh_sd_abs_cm: float = 0.0904,
    dbh_sd_rel: float = 0.0062,
    increment_sd_cm: float = 0.0,
    height_sd_m: float = 0.0,
    wood_density_sd: float = 0.0,
    n_draws: int = 1000,
    seed: int = 0,
) -> PlotBiomass:
    """Plot-level AGB, carbon and CO2e per hectare from a tree list on ``plot_area_m2`` (m2), with a seeded Monte
    Carlo of the measurement and allometric errors (module docstring). ``dbh_increment_cm``: the trees' DBH
    increment over the accounting period (e.g. 2·ΔR from a dendrometer, in cm), measured with ``increment_sd_cm``."""
    if not (np.isfinite(plot_area_m2) and plot_area_m2 > 0):
        raise ValueError(f"plot_area_m2 must be the plot's horizontal area in m2 (e.g. 500); got {plot_area_m2}")
    if not 0.0 < carbon_fraction < 1.0:
        raise ValueError(f"carbon_fraction must be in (0, 1), tC per t dry matter (IPCC default 0.47); got "
                         f"{carbon_fraction}")
    d = np.asarray(dbh_cm, dtype=np.float64)
    point = tree_biomass(species, d, dbh_increment_cm=dbh_increment_cm, height_m=height_m,
                         wood_density=wood_density, stress_e=stress_e, table=table, fallback=fallback)
    inc = np.zeros_like(d) if dbh_increment_cm is None else np.asarray(dbh_increment_cm, dtype=np.float64)
    per_ha = 10000.0 / plot_area_m2 / 1000.0  # kg per plot → Mg per ha
    agb = float(point.agb_kg.sum()) * per_ha
    agb_inc = float(point.agb_increment_kg.sum()) * per_ha

    rng = np.random.default_rng(seed)
    shape = (n_draws, d.size)
    sd_d = dbh_sd_abs_cm + dbh_sd_rel * d
    d_draw = np.maximum(d + sd_d * rng.standard_normal(shape), 0.1)
    inc_draw = inc + increment_sd_cm * rng.standard_normal(shape)
    h_draw = None
    if height_m is not None:
        h = np.broadcast_to(np.asarray(height_m, dtype=np.float64), d.shape)
        h_draw = np.maximum(h + height_sd_m * rng.standard_normal(shape), 1.3)
    rho_draw = None
    if wood_density is not None:
        rho = np.broadcast_to(np.asarray(wood_density, dtype=np.float64), d.shape)
        rho_draw = np.clip(rho + wood_density_sd * rng.standard_normal(shape), 0.08, 1.39)
    rse = np.array([eq.rse for eq in point.equations])
    resid = np.exp(rse * rng.standard_normal(shape))
    cf = carbon_fraction + carbon_fraction_sd * rng.standard_normal(n_draws)
    agb_draw = np.empty(shape)
    agb_end_draw = np.empty(shape)
    for eq in {id(e): e for e in point.equations}.values():
        sel = np.array([e is eq for e in point.equations])
        kw = {"height_m": None if h_draw is None else h_draw[:, sel],
              "wood_density": None if rho_draw is None else rho_draw[:, sel], "stress_e": stress_e}
        agb_draw[:, sel] = agb_kg(eq, d_draw[:, sel], **kw)  # type: ignore[arg-type]
        agb_end_draw[:, sel] = agb_kg(eq, np.maximum(d_draw[:, sel] + inc_draw[:, sel], 0.1),
                                      **kw)  # type: ignore[arg-type]
    plot_agb = (agb_draw * resid).sum(axis=1) * per_ha
    plot_inc = ((agb_end_draw - agb_draw) * resid).sum(axis=1) * per_ha

    def stats(x: FloatArray) -> tuple[float, float, float, float]:
        lo, hi = np.quantile(x, [0.025, 0.975])
        return float(x.mean()), float(x.std(ddof=1)), float(lo), float(hi)

    mc = {
        "AGB": stats(plot_agb), "C_AGB": stats(plot_agb * cf), "CO2E_AGB": stats(plot_agb * cf * CO2_PER_C),
        "AGB_INC": stats(plot_inc), "C_AGB_INC": stats(plot_inc * cf),
        "CO2E_AGB_INC": stats(plot_inc * cf * CO2_PER_C),
    }
    return PlotBiomass(
        agb_mg_ha=agb, carbon_mg_ha=agb * carbon_fraction, co2e_t_ha=agb * carbon_fraction * CO2_PER_C,
        agb_increment_mg_ha=agb_inc, carbon_increment_mg_ha=agb_inc * carbon_fraction,
        co2e_increment_t_ha=agb_inc * carbon_fraction * CO2_PER_C, mc=mc, n_trees=int(d.size),
        n_extrapolated=int(point.extrapolated.sum()), n_draws=n_draws, seed=seed,
    )
