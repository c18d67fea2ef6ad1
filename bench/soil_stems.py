"""A station-year of soil and stem science on one core, against a naive per-closure baseline in the same run.

    soil profile   3 GMP252 depths + soil T + SWC at 10 s (3.15 M samples × 7 channels + pressure) →
                   30-min period means → gradient efflux (layer extrapolation, with the full uncertainty: sensor
                   propagation and the spread over the diffusivity models) and the exponential profile fit
    chambers       one automated chamber, hourly 180-s closures at 1 Hz (open: one sample a minute) →
                   closure detection, linear + HMR fits for all 8760 closures at once, κ-max selection, QC
    dendrometers   4 trees at 10 min (52 560 samples each) → cleaning, zero growth, daily statistics
    baseline       the chamber fits done the usual way: a Python loop over closures with scipy's curve_fit for
                   HMR and np.polyfit for the line, on a 1/10 subsample of closures, scaled ×10

Run (one core, as the issue's goal states):

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/soil_stems.py [--repeat 3]

Prints the wall and CPU time of each part (median of the repeats), the total against the 10-s goal, and the
baseline's projected time. Data generation is not timed. No assertion: the figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
from scipy.optimize import curve_fit

from gateway.flux.soil.chamber import Chamber, chamber_fluxes, detect_closures
from gateway.flux.soil.diffusivity import SoilSite
from gateway.flux.soil.gradient import R_GAS, period_means, soil_efflux_gradient
from gateway.flux.stems.dendro import clean_dendrometer, daily_stats, zero_growth

YEAR_S = 365 * 86400
DEPTHS = np.array([0.05, 0.15, 0.30])
SITE = SoilSite(bulk_density=1.2, clay=0.2)
CHAMBER = Chamber(volume_m3=0.0072, area_m2=0.0314)


def soil_year(rng: np.random.Generator) -> dict[str, np.ndarray]:
    t = np.arange(10.0, YEAR_S + 10.0, 10.0)
    day = t / 86400.0
    season = np.sin(2 * np.pi * (day - 110) / 365)
    t_soil = 9.0 + 8.0 * season[:, None] + np.array([2.0, 1.0, 0.5]) * np.sin(2 * np.pi * day)[:, None]
    swc = np.clip(0.25 - 0.08 * season[:, None] + 0.01 * rng.standard_normal((t.size, 1)), 0.05, 0.5)
    swc = np.broadcast_to(swc, (t.size, 3)) + np.array([0.0, 0.02, 0.04])
    co2 = 420 + np.array([1500.0, 3500.0, 5500.0]) * (1.2 + 0.8 * season[:, None])
    co2 = co2 + 15.0 * rng.standard_normal(co2.shape)
    p = 97000 + 800 * np.sin(2 * np.pi * day / 5.0)
    return {"t": t, "co2": co2, "ts": t_soil, "swc": swc, "p": p}


def chamber_year(rng: np.random.Generator) -> dict[str, np.ndarray]:
    closure_s, step_s = 180, 1.0
    n = YEAR_S // 3600
    f0 = rng.uniform(0.5, 8.0, n)
    kappa = np.where(rng.random(n) < 0.3, 0.01, 1e-6)
    rho = 97000.0 / (R_GAS * 288.15)
    tc = np.arange(0.0, closure_s, step_s)
    topen = np.arange(closure_s, 3600.0, 60.0)
    s0 = f0 / (rho * CHAMBER.height_m)
    x_closed = 420 + s0[:, None] * -np.expm1(-kappa[:, None] * tc) / kappa[:, None]
    x_open = np.full((n, topen.size), 420.0)
    start = np.arange(n) * 3600.0
    t = np.concatenate([start[:, None] + tc, start[:, None] + topen], axis=1).ravel()
    x = np.concatenate([x_closed, x_open], axis=1).ravel() + 0.3 * rng.standard_normal(t.size)
    closed = np.concatenate([np.ones((n, tc.size)), np.zeros((n, topen.size))], axis=1).ravel()
    return {"t": t, "x": x, "closed": closed, "f0": f0}


def dendro_year(rng: np.random.Generator, n_trees: int = 4) -> list[dict[str, np.ndarray]]:
    t = np.arange(0.0, YEAR_S, 600.0)
    d = t / 86400.0
    out = []
    for k in range(n_trees):
        growth = 1500.0 / (1.0 + np.exp(-(d - 170.0) / 15.0))
        daily = 40.0 * np.clip(np.sin(((t % 86400) / 3600 - 8.0) / 12.0 * np.pi), 0.0, None)
        v = growth - daily + rng.standard_normal(t.size) + 5000.0
        v[t >= (100 + 20 * k) * 86400.0] -= 3000.0
        v[rng.integers(0, t.size, 5)] += 500.0
        temp = 8.0 + 12.0 * np.sin(2 * np.pi * (d - 110) / 365) + 4 * np.sin(2 * np.pi * d)
        out.append({"t": t, "v": v, "temp": temp})
    return out


def run_soil(data: dict[str, np.ndarray]) -> int:
    cols = np.column_stack([data["co2"], data["ts"], data["swc"], data["p"]])
    _, means = period_means(data["t"], cols, 1800.0, expected_step_s=10.0)
    res = soil_efflux_gradient(DEPTHS, means[:, 0:3], means[:, 3:6], means[:, 6:9], means[:, 9], SITE)
    fit = soil_efflux_gradient(DEPTHS, means[:, 0:3], means[:, 3:6], means[:, 6:9], means[:, 9], SITE,
                               method="profile_fit", co2_atm_ppm=420.0, uncertainty=False)
    return int(np.isfinite(res.flux).sum() + np.isfinite(fit.flux).sum())


def run_chamber(data: dict[str, np.ndarray]) -> np.ndarray:
    closures = detect_closures(data["t"], data["closed"])
    res = chamber_fluxes(data["t"], data["x"], closures, CHAMBER, 97000.0, 15.0, dead_band_s=20.0)
    return res.flux


def run_dendro(trees: list[dict[str, np.ndarray]]) -> int:
    n = 0
    for tree in trees:
        clean = clean_dendrometer(tree["t"], tree["v"], temperature_c=tree["temp"])
        _gro, twd = zero_growth(clean.value)
        stats = daily_stats(tree["t"], clean.value)
        n += int(np.isfinite(twd).sum() + np.isfinite(stats.mds).sum())
    return n


def _hmr(t: np.ndarray, phi: float, f0: float, kappa: float) -> np.ndarray:
    return phi + f0 * np.exp(-kappa * t) / (-kappa)


def run_baseline(data: dict[str, np.ndarray], every: int = 10) -> tuple[int, float]:
    """Per-closure loop: slice the closure, np.polyfit for the line, curve_fit for HMR (initial values from the
    line, as one would write it); every `every`-th closure."""
    closures = detect_closures(data["t"], data["closed"])
    t, x = data["t"], data["x"]
    done = 0
    fluxes = []
    for i in range(0, closures.start_s.size, every):
        sel = (t >= closures.start_s[i] + 20.0) & (t <= closures.end_s[i])
        tt = t[sel] - closures.start_s[i]
        xx = x[sel]
        slope = np.polyfit(tt, xx, 1)[0]
        try:
            popt, _ = curve_fit(_hmr, tt, xx, p0=(xx[-1] + 10.0, slope, 0.005), maxfev=2000)
            fluxes.append(popt[1])
        except RuntimeError:
            fluxes.append(slope)
        done += 1
    rho_h = 97000.0 / (R_GAS * 288.15) * CHAMBER.height_m
    err = np.abs(np.array(fluxes) * rho_h / data["f0"][::every] - 1.0)
    return done, float(np.nanmedian(err))


def measure(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    soil, chamber, trees = soil_year(rng), chamber_year(rng), dendro_year(rng)
    print(f"data generated in {time.perf_counter() - t0:.1f} s (not timed): soil {soil['t'].size:,} samples × "
          f"{soil['co2'].shape[1] * 3 + 1} channels, chamber {chamber['t'].size:,} samples, "
          f"dendrometers {len(trees)} × {trees[0]['t'].size:,}")
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()} {platform.processor() or ''} "
          f"{os.cpu_count()} cores, python {platform.python_version()}, numpy {np.__version__}, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, load {os.getloadavg()[0]:.1f}")
    parts = {
        "soil profile (10 s → 30 min, gradient + profile fit)": lambda: run_soil(soil),
        "chambers (8760 hourly closures, linear + HMR)": lambda: run_chamber(chamber),
        "dendrometers (4 trees, 10 min)": lambda: run_dendro(trees),
    }
    total_wall = total_cpu = 0.0
    for name, fn in parts.items():
        wall, cpu = measure(fn, args.repeat)
        total_wall += wall
        total_cpu += cpu
        print(f"  {name:<55} wall {wall:6.2f} s   cpu {cpu:6.2f} s")
    print(f"  {'total (goal ≤ 10 s on one core)':<55} wall {total_wall:6.2f} s   cpu {total_cpu:6.2f} s")
    c0, w0 = time.process_time(), time.perf_counter()
    done, base_err = run_baseline(chamber)
    base_wall, base_cpu = time.perf_counter() - w0, time.process_time() - c0
    n_all = chamber["f0"].size
    scale = n_all / done
    ours_wall, _ = measure(lambda: run_chamber(chamber), 1)
    ours_err = float(np.nanmedian(np.abs(run_chamber(chamber) / chamber["f0"] - 1.0)))
    print(f"  baseline: per-closure curve_fit + polyfit loop, {done} closures in {base_wall:.2f} s "
          f"(cpu {base_cpu:.2f} s) → {base_wall * scale:.1f} s for {n_all}; ours {ours_wall:.2f} s: "
          f"{base_wall * scale / ours_wall:.1f}× faster")
    print(f"  chamber flux vs the simulated truth, median |relative error|: ours {100 * ours_err:.2f} %, "
          f"baseline (HMR always, no selection) {100 * base_err:.2f} %")


if __name__ == "__main__":
    main()
