"""A synthetic site-year with known truth for the report: for tests, the benchmark and a demonstration.

- Budget: :func:`gateway.simulation.fluxyear.synthetic_year` through the real chain
  (:func:`gateway.flux.budget.pipeline.run_budget`).
- Soil: a half-hourly gradient-method efflux series following Lloyd & Taylor (1994) at a soil temperature with a
  seasonal and a damped diurnal course (``R10`` = 2.0 µmol m-2 s-1, ``E0`` = 300 K), multiplicative noise, random
  gaps and one 10-day gap; and an hourly chamber series on the same truth. ``SoilTruth`` holds the true annual sum.
- Stems: two trees with logistic growth (GRO) and a daily shrinking cycle plus a drought (TWD); the plot's carbon
  increment from their DBH increment through :func:`gateway.flux.stems.allometry.plot_biomass`.

Everything is seeded; the same arguments give the same arrays. Files for the command line: :func:`write_inputs`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from gateway.flux.budget.pipeline import BudgetResult, BudgetSettings, run_budget
from gateway.flux.soil.annual import lloyd_taylor
from gateway.flux.stems.allometry import plot_biomass
from gateway.report.data import (
    BudgetData,
    InputDigest,
    Provenance,
    SiteInfo,
    SiteReportData,
    SoilEffluxSeries,
    StationInfo,
    StemCarbon,
    StemSeries,
    UstarDistribution,
)
from gateway.simulation.fluxyear import SyntheticYear, synthetic_year

__all__ = ["ExampleYear", "SoilTruth", "example_year", "write_inputs"]

FloatArray = NDArray[np.float64]
LAT, LON, UTC_OFFSET_H = 50.0, 10.0, 1.0
SOIL_R10, SOIL_E0 = 2.0, 300.0
TREES = (("T1", "Fagus sylvatica", 35.0), ("T2", "Picea abies", 28.0))
PLOT_AREA_M2 = 400.0


@dataclass(frozen=True)
class SoilTruth:
    """True annual sums (gC m-2) of the soil series, before noise and gaps."""

    gradient_gc_m2: float
    chamber_gc_m2: float


@dataclass(frozen=True)
class ExampleYear:
    """The synthetic inputs and the budget computed from them."""

    year: int
    flux_year: SyntheticYear
    soil: list[SoilEffluxSeries]
    soil_truth: SoilTruth
    stems: list[StemSeries]
    stem_carbon: list[StemCarbon]
    settings: BudgetSettings | None = None

    @cached_property
    def budget(self) -> BudgetResult:
        """The whole chain on the flux year, computed when first asked for: what only writes the input files (the
        report command's tests, its benchmark) makes its budget with `sinkwatch flux budget` and never needs it."""
        fy = self.flux_year
        return run_budget(fy.time_start_s, fy.nee, fy.sw_in, fy.ta, fy.vpd, fy.ustar, lat=LAT, lon=LON,
                          utc_offset_h=UTC_OFFSET_H, settings=self.settings)

    def report_data(self, *, soil: bool = True, stems: bool = True) -> SiteReportData:
        """The data object, built directly from the arrays (no files); ``soil``/``stems`` False leaves them out."""
        b = self.budget
        ustar = UstarDistribution("auto", float(b.scalars["USTAR_THRESHOLD"]),
                                  np.asarray(b.ustar.bootstrap if b.ustar is not None else np.empty(0)))
        budget = BudgetData(self.flux_year.time_start_s, 1800.0, b.hh, b.daily, b.monthly, b.annual, ustar,
                            b.scalars, b.notes)
        zero = "0" * 64
        provenance = Provenance(
            stations=[StationInfo("example-station", {"synthetic": ["NEE", "SW_IN", "TA", "VPD", "USTAR"]})],
            engines={"report": "sinkwatch (synthetic example)"},
            inputs=[InputDigest("synthetic site-year", f"gateway.report.example year {self.year}", zero)],
            generated_at=f"{self.year + 1}-01-01T00:00:00Z", notes=["synthetic data with a known truth"])
        return SiteReportData(SiteInfo("EXAMPLE", self.year, "synthetic forest", LAT, LON, 300.0, UTC_OFFSET_H),
                              budget, provenance, self.soil if soil else [], self.stems if stems else [],
                              self.stem_carbon if stems else [])


def _soil(year: int, t: FloatArray, rng: np.random.Generator) -> tuple[list[SoilEffluxSeries], SoilTruth]:
    day = (t - datetime(year, 1, 1, tzinfo=UTC).timestamp()) / 86400.0
    ts = 9.0 - 8.0 * np.cos(2 * np.pi * (day - 20.0) / 365.0) + 1.5 * np.sin(2 * np.pi * (day % 1.0 - 0.4))
    true = lloyd_taylor(ts, SOIL_R10, SOIL_E0)
    flux = true * np.exp(0.15 * rng.standard_normal(t.size))
    gaps = rng.random(t.size) < 0.15
    gaps[(day >= 200) & (day < 210)] = True
    flux[gaps] = np.nan
    unc = 0.05 + 0.15 * np.abs(flux)
    gc = 1800.0 * 12.011e-6
    gradient = SoilEffluxSeries("FC_SOIL_GRAD", "gradient", t, 1800.0, flux, unc, ts, "TS_1_1_1",
                                np.where(gaps, 16.0, 0.0))
    hourly = slice(1, None, 2)  # closures end on the full hour
    t_ch = t[hourly] + 1800.0
    ch_flux = true[hourly] * np.exp(0.1 * rng.standard_normal(t_ch.size))
    ch_gaps = rng.random(t_ch.size) < 0.1
    ch_flux[ch_gaps] = np.nan
    chamber = SoilEffluxSeries("FC_SOIL_CH_1", "chamber", t_ch, 3600.0, ch_flux, 0.03 + 0.05 * np.abs(ch_flux),
                               ts[hourly], "TS_1_1_1")
    truth = SoilTruth(float(np.sum(true) * gc), float(np.sum(true[hourly]) * 2 * gc))
    return [gradient, chamber], truth


def _stems(year: int, rng: np.random.Generator) -> tuple[list[StemSeries], list[StemCarbon]]:
    start = datetime(year, 1, 1, tzinfo=UTC).timestamp()
    t = start + 600.0 * np.arange(365 * 144, dtype=np.float64)
    day = (t - start) / 86400.0
    series, increments = [], []
    for k, (tree, species, _) in enumerate(TREES):
        total = 1500.0 - 400.0 * k  # µm of radius in the year
        gro = total / (1.0 + np.exp(-(day - 160.0) / 15.0))
        gro -= gro[0]
        gro = np.maximum.accumulate(gro)
        drought = 120.0 * np.exp(-(((day - 220.0) / 6.0) ** 2))
        twd = 20.0 * (1.0 + np.sin(2 * np.pi * (day % 1.0 - 0.25))) * (day > 100) * (day < 300) + drought
        twd += np.abs(rng.normal(0.0, 1.0, t.size))
        series.append(StemSeries(tree, t, gro, twd, species, "radius"))
        increments.append(2.0 * float(gro[-1]) / 1e4)  # cm of DBH
    names: list[str | None] = [name for _, name, _ in TREES]
    dbh = np.array([d for _, _, d in TREES])
    res = plot_biomass(names, dbh, PLOT_AREA_M2, dbh_increment_cm=np.array(increments), increment_sd_cm=0.01,
                       n_draws=1000, seed=0)
    carbon = StemCarbon("P1", f"{year}0101", f"{year}1231", res.carbon_increment_mg_ha, res.mc["C_AGB_INC"][1],
                        res.co2e_increment_t_ha, res.mc["CO2E_AGB_INC"][1], len(TREES),
                        "Jenkins et al. 2003 group equations, IPCC carbon fraction 0.47")
    return series, [carbon]


def example_year(year: int = 2021, *, seed: int = 1, settings: BudgetSettings | None = None) -> ExampleYear:
    """The synthetic site-year (module docstring); its budget (a couple of seconds: the whole chain runs) is computed
    when first read (`ExampleYear.budget`)."""
    fy = synthetic_year(year, seed=seed, lat=LAT, lon=LON, utc_offset_h=UTC_OFFSET_H)
    rng = np.random.default_rng(seed)
    soil, truth = _soil(year, fy.time_start_s, rng)
    stems, carbon = _stems(year, rng)
    return ExampleYear(year, fy, soil, truth, stems, carbon, settings)


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y%m%d%H%M")


def _num(v: float) -> str:
    return "-9999" if not np.isfinite(v) else f"{v:.6g}"


def write_inputs(ex: ExampleYear, folder: Path) -> dict[str, Path]:
    """The soil, stems and stem-carbon CSV files of ``ex`` in ``folder`` (the formats of
    :mod:`gateway.report.files`); the budget files come from ``sinkwatch flux budget`` on :func:`write_flux_input`."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {"soil": folder / "soil.csv", "stems": folder / "stems.csv", "stem_carbon": folder / "stem_carbon.csv",
           "flux": folder / "flux_input.csv"}
    grad, chamber = ex.soil
    ch_at = {float(t): i for i, t in enumerate(chamber.time_s)}
    with out["soil"].open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["TIMESTAMP_START", "TIMESTAMP_END", "FC_SOIL_GRAD", "FC_SOIL_GRAD_UNC", "FC_SOIL_GRAD_QC",
                    "FC_SOIL_CH_1", "FC_SOIL_CH_1_UNC", "TS_1_1_1"])
        assert grad.ts is not None and grad.qc is not None
        for i, t in enumerate(grad.time_s):
            k = ch_at.get(float(t) + 1800.0)
            ch = (_num(float(chamber.flux[k])), _num(float(chamber.flux_unc[k]))) if k is not None else ("-9999",) * 2
            w.writerow([_stamp(t), _stamp(t + 1800.0), _num(float(grad.flux[i])), _num(float(grad.flux_unc[i])),
                        _num(float(grad.qc[i])), *ch, _num(float(grad.ts[i]))])
    with out["stems"].open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["TIMESTAMP", *(f"{p}_{s.tree}" for s in ex.stems for p in ("GRO", "TWD"))])
        for i, t in enumerate(ex.stems[0].time_s):
            w.writerow([_stamp(t), *(_num(float(v[i])) for s in ex.stems for v in (s.gro_um, s.twd_um))])
    with out["stem_carbon"].open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["PLOT", "START", "END", "C_AGB_INC", "C_AGB_INC_SD", "CO2E_AGB_INC", "CO2E_AGB_INC_SD", "N_TREES",
                    "METHOD"])
        for c in ex.stem_carbon:
            w.writerow([c.plot, c.start, c.end, f"{c.c_inc_mg_ha:.6g}", f"{c.c_inc_sd:.6g}", f"{c.co2e_inc_t_ha:.6g}",
                        f"{c.co2e_inc_sd:.6g}", c.n_trees, c.method])
    fy = ex.flux_year
    with out["flux"].open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["TIMESTAMP_START", "TIMESTAMP_END", "NEE", "SW_IN", "TA", "VPD", "USTAR"])
        for i, t in enumerate(fy.time_start_s):
            w.writerow([_stamp(t), _stamp(t + 1800.0),
                        *(_num(float(a[i])) for a in (fy.nee, fy.sw_in, fy.ta, fy.vpd, fy.ustar))])
    return out
