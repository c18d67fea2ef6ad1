"""The vectorised statistical tests of `gateway.flux.ec.vm97` against a straightforward reference: each rule of
Vickers & Mahrt (1997) written out window by window, bin by bin, record by record and lag by lag, on random series
(Gaussian, quantised, skewed, stuck, stepped, random-walk; with and without missing records; lengths around the
1000-record window). The reference gives the number each test compares with its limit (% empty bins, longest run,
Haar jumps, covariances, skewness and kurtosis); the fast function must flag exactly when that number is over a limit
placed just below it (1e-9) and not with the limit just above it — so the test checks the numbers, not only typical
flags."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy import stats

from gateway.flux.ec import timelag, vm97

RNG_SEEDS = range(40)


def series(seed: int) -> np.ndarray:
    """A random test series whose kind, length and missing records depend on the seed."""
    rng = np.random.default_rng(seed)
    n = int(rng.choice([300, 999, 1000, 1001, 1750, 3333]))
    x = rng.standard_normal(n)
    kind = seed % 6
    if kind == 1:
        x = np.round(x / rng.uniform(0.05, 0.8)) * 0.1                 # coarse resolution
    elif kind == 2:
        x = rng.exponential(1.0, n)                                     # skewed
    elif kind == 3:
        a = int(rng.integers(0, n - 10))
        x[a:a + int(rng.integers(10, 200))] = rng.choice([0.0, 2.8, -3.1])  # stuck, centrally or at an extreme
    elif kind == 4:
        x = x + np.where(np.arange(n) > n // 2, rng.uniform(0.5, 6.0), 0.0)
    elif kind == 5:
        x = np.cumsum(x) * 0.05
    if rng.random() < 0.5:
        x[rng.random(n) < rng.uniform(0.01, 0.3)] = np.nan
    return x


# --- the reference: the paper's rules, written out -----------------------------------------------------------------

def ref_windows(v: np.ndarray) -> list[np.ndarray]:
    """VM97 §4b: windows of 1000 valid records moving by 500, the last ending on the last record; one when shorter."""
    if v.size <= 1000:
        return [v]
    starts = list(range(0, v.size - 1000 + 1, 500))
    if starts[-1] + 1000 < v.size:
        starts.append(v.size - 1000)
    return [v[s:s + 1000] for s in starts]


def ref_edges(w: np.ndarray, width_sigma: float, bins: int) -> np.ndarray | None:
    """``bins`` equal bins over the smaller of width_sigma·σ about the mean and the range; None for one value."""
    lo, hi, spread = w.min(), w.max(), width_sigma * w.std()
    if hi <= lo:
        return None
    if hi - lo <= spread:
        return np.linspace(lo, hi, bins + 1)
    return np.linspace(w.mean() - spread / 2, w.mean() + spread / 2, bins + 1)


def ref_worst_empty_percent(x: np.ndarray, width_sigma: float, bins: int) -> float:
    """VM97 §4b: the largest % of empty histogram bins over the windows."""
    worst = 0.0
    for w in ref_windows(x[np.isfinite(x)]):
        edges = ref_edges(w, width_sigma, bins)
        empty = bins - 1 if edges is None else int((np.histogram(w, bins=edges)[0] == 0).sum())
        worst = max(worst, 100.0 * empty / bins)
    return worst


def ref_longest_runs_percent(x: np.ndarray, width_sigma: float, bins: int, extlim: float) -> tuple[float, float]:
    """VM97 §4d: the longest run of consecutive records in one bin, % of the window, in central and in extreme bins
    (centre below the extlim-th or above the (100 − extlim)-th percentile; records outside the histogram are in a
    bin of their own centred on the first or last edge), the largest over the windows."""
    best_central = best_outer = 0.0
    for w in ref_windows(x[np.isfinite(x)]):
        edges = ref_edges(w, width_sigma, bins)
        if edges is None:
            best_central = max(best_central, 100.0)
            continue
        lo, hi = np.percentile(w, [extlim, 100 - extlim])

        def bin_of(value: float, edges: np.ndarray = edges) -> int:
            if value < edges[0]:
                return -1
            if value > edges[-1]:
                return bins
            if value == edges[-1]:
                return bins - 1
            return int(np.searchsorted(edges, value, side="right")) - 1

        def centre(b: int, edges: np.ndarray = edges) -> float:
            return float(edges[0] if b < 0 else edges[-1] if b >= bins else (edges[b] + edges[b + 1]) / 2)

        run, prev = 0, None
        for value in w:
            b = bin_of(float(value))
            run = run + 1 if b == prev else 1
            prev = b
            c = centre(b)
            if c < lo or c > hi:
                best_outer = max(best_outer, 100.0 * run / w.size)
            else:
                best_central = max(best_central, 100.0 * run / w.size)
    return best_central, best_outer


def ref_haar(x: np.ndarray, half: int) -> tuple[float, float]:
    """VM97 §4f: for every window of 2·half records (one record apart), |x̄₂ − x̄₁| and |σ₂² − σ₁²| / σ²; halves with
    fewer than 2 valid records skipped."""
    total_var = np.nanvar(x)
    jumps, dvars = [], []
    for s in range(x.size - 2 * half + 1):
        a, b = x[s:s + half], x[s + half:s + 2 * half]
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        if a.size >= 2 and b.size >= 2:
            jumps.append(abs(b.mean() - a.mean()))
            dvars.append(abs(b.var() - a.var()) / total_var)
    return max(jumps), max(dvars)


def ref_covariances(w: np.ndarray, c: np.ndarray, lags: range) -> np.ndarray:
    """cov(w[i], c[i + k]) over the valid pairs, each lag on its own."""
    out = []
    for k in lags:
        a, b = (w[:w.size - k], c[k:]) if k >= 0 else (w[-k:], c[:c.size + k])
        ok = np.isfinite(a) & np.isfinite(b)
        a, b = a[ok], b[ok]
        out.append(float(np.mean((a - a.mean()) * (b - b.mean()))))
    return np.array(out)


# --- fast against reference ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_amplitude_resolution_counts_the_empty_bins_of_every_window(seed: int) -> None:
    x = series(seed)
    for width, bins in ((7.0, 100), (3.0, 37)):
        worst = ref_worst_empty_percent(x, width, bins)
        assert vm97.amplitude_resolution(x, ar_lim=width, ar_bins=bins, ar_hf_lim=worst + 1e-9) == 0
        if worst > 0:
            assert vm97.amplitude_resolution(x, ar_lim=width, ar_bins=bins, ar_hf_lim=worst - 1e-9) == 1
            assert vm97.resolution_and_dropouts(x, ar_lim=width, ar_bins=bins, ar_hf_lim=worst - 1e-9)[0] == 1


@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_dropouts_find_the_longest_run_of_every_window(seed: int) -> None:
    x = series(seed)
    for width, bins, extlim in ((7.0, 100, 10.0), (3.0, 37, 20.0)):
        central, outer = ref_longest_runs_percent(x, width, bins, extlim)
        kw: dict[str, Any] = {"ar_lim": width, "ar_bins": bins, "do_extlim_dw": extlim}
        assert vm97.dropouts(x, do_hf1_lim=central + 1e-9, do_hf2_lim=outer + 1e-9, **kw) == 0
        assert vm97.dropouts(x, do_hf1_lim=central - 1e-9, do_hf2_lim=101.0, **kw) == 1
        if outer > 0:
            assert vm97.dropouts(x, do_hf1_lim=101.0, do_hf2_lim=outer - 1e-9, **kw) == 1
            assert vm97.resolution_and_dropouts(x, ar_lim=width, ar_bins=bins, do_extlim_dw=extlim,
                                                do_hf1_lim=101.0, do_hf2_lim=outer - 1e-9)[1] == 1
        assert vm97.resolution_and_dropouts(x, ar_lim=width, ar_bins=bins, do_extlim_dw=extlim,
                                            do_hf1_lim=central + 1e-9, do_hf2_lim=outer + 1e-9)[1] == 0


@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_skewness_and_kurtosis_are_the_moments_of_the_period(seed: int) -> None:
    x = series(seed)
    v = x[np.isfinite(x)]
    sk, ku = float(stats.skew(v)), float(stats.kurtosis(v, fisher=False))
    eps = 1e-9 * max(1.0, abs(sk), ku)
    inside = vm97.SkewKurtLimits(sk_hf_skmin=sk - eps, sk_hf_skmax=sk + eps, sk_hf_kumin=ku - eps,
                                 sk_hf_kumax=ku + eps, sk_sf_skmin=-99, sk_sf_skmax=sk - eps, sk_sf_kumin=0,
                                 sk_sf_kumax=99)
    assert vm97.skewness_kurtosis(x, inside) == (0, 1)
    kurt_low = vm97.SkewKurtLimits(sk_hf_skmin=-99, sk_hf_skmax=99, sk_hf_kumin=0, sk_hf_kumax=ku - eps,
                                   sk_sf_skmin=-99, sk_sf_skmax=99, sk_sf_kumin=ku + eps, sk_sf_kumax=99)
    assert vm97.skewness_kurtosis(x, kurt_low) == (1, 1)


@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_haar_transforms_of_every_window(seed: int) -> None:
    x = series(seed)
    half = min(2 + seed % 7 * 40, x.size // 3)
    jump, dvar = vm97.haar_transforms(x, half)
    ref_jump, ref_dvar = ref_haar(x, half)
    assert jump == pytest.approx(ref_jump, rel=1e-9, abs=1e-12)
    assert dvar == pytest.approx(ref_dvar, rel=1e-9, abs=1e-12)
    window_s = 2 * half / 20.0
    assert vm97.discontinuities(x, 20.0, mean_hf=ref_jump * (1 + 1e-6), mean_sf=ref_jump * (1 - 1e-6),
                                var_hf=ref_dvar * (1 + 1e-6), var_sf=99.0, window_s=window_s) == (0, 1)
    assert vm97.discontinuities(x, 20.0, mean_hf=99.0, mean_sf=99.0, var_hf=ref_dvar * (1 - 1e-6),
                                var_sf=ref_dvar * (1 + 1e-6), window_s=window_s) == (1, 0)


@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_time_lag_covariances_at_every_lag(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.choice([500, 3000, 7001]))
    base = np.convolve(rng.standard_normal(n + 50), np.ones(10) / 10, mode="same")[:n]
    w = base + 0.3 * rng.standard_normal(n) + 2.0
    c = np.roll(base, int(rng.integers(-30, 30))) * 5.0 + rng.standard_normal(n) + 400.0
    if seed % 2:
        w[rng.random(n) < 0.05] = np.nan
        c[rng.random(n) < 0.1] = np.nan
    lags = range(int(rng.integers(-60, 1)), int(rng.integers(1, 60)))
    ref = ref_covariances(w, c, lags)
    got = timelag.lagged_covariances(w, c, lags)
    assert np.allclose(got, ref, rtol=0, atol=1e-10 * np.abs(ref).max())
    best = np.abs(ref).max()
    for j in (0, len(ref) // 2, int(np.abs(ref).argmax())):
        drop = 100.0 * (best - abs(ref[j])) / best
        expected_s = lags[j] / 20.0
        kw = {"expected_s": expected_s, "min_s": lags.start / 20.0, "max_s": (lags.stop - 1) / 20.0}
        assert vm97.time_lag(w, c, 20.0, tl_hf_lim=drop + 1e-6, tl_sf_lim=max(drop - 1e-6, 0.0), **kw) == (
            0, int(drop > 1e-6))


def test_a_lag_beyond_the_record_has_no_covariance() -> None:
    w = np.arange(10.0)
    covs = timelag.lagged_covariances(w, w, range(-10, 11))
    assert np.isnan(covs[[0, 1, -2, -1]]).all()           # |k| ≥ N − 1: fewer than 2 pairs
    assert math.isfinite(covs[10]) and covs[10] == pytest.approx(np.var(w))
