"""Vectorised least squares for models ``y = a + b·g(x; θ)`` with one non-linear parameter θ (variable projection).

For a fixed θ the model is linear in ``(a, b)``: the optimum has a closed form from five sums over the valid points
of a row, so the residual sum of squares RSS(θ) of *every* row is evaluated at once on a grid of θ (Golub & Pereyra
1973, SIAM J. Numer. Anal. 10, 413-432: separable non-linear least squares — the "plinear" algorithm of R's ``nls``
that the HMR and gasfluxes packages use per row). The grid minimum is then refined by a vectorised golden-section
search between its grid neighbours, in the grid's coordinate (log θ for a log grid). Rows are independent; NaN
points are ignored; a row with fewer than 3 valid points gives NaN.

Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
Basis = Callable[[FloatArray, FloatArray], FloatArray]
"""``basis(x, θ)``: elementwise in ``x``; θ is a 0-d array (grid step) or a column ``(rows, 1)`` (final fit)."""


@dataclass(frozen=True)
class LinearFit:
    """Per-row ``a``, ``b`` and residual sum of squares ``rss`` of ``y = a + b·g``; ``n`` valid points."""

    a: FloatArray
    b: FloatArray
    rss: FloatArray
    n: NDArray[np.int64]


def fit_affine(g: FloatArray, y: FloatArray, valid: NDArray[np.bool_]) -> LinearFit:
    """Least squares ``y ≈ a + b·g`` per row of 2-D ``g``, ``y`` (same shape), using only ``valid`` points."""
    w = valid.astype(np.float64)
    g0 = np.where(valid, g, 0.0)
    y0 = np.where(valid, y, 0.0)
    n = w.sum(axis=1)
    sg = g0.sum(axis=1)
    sy = y0.sum(axis=1)
    sgg = (g0 * g0).sum(axis=1)
    sgy = (g0 * y0).sum(axis=1)
    syy = (y0 * y0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        det = n * sgg - sg * sg
        b = (n * sgy - sg * sy) / det
        a = (sy - b * sg) / n
        rss = syy - a * sy - b * sgy
    rss = np.maximum(rss, 0.0)
    degenerate = (n < 2) | ~(np.abs(det) > 1e-300)
    a = np.where(degenerate, np.nan, a)
    b = np.where(degenerate, np.nan, b)
    rss = np.where(degenerate, np.nan, rss)
    return LinearFit(a=a, b=b, rss=rss, n=n.astype(np.int64))


@dataclass(frozen=True)
class ProfileFit:
    """Per-row optimum: ``theta``, ``a``, ``b``, ``rss``, ``n``; ``at_edge`` when the optimum is the first or last
    grid point (the data want a θ outside the grid, e.g. a straight line for an exponential model)."""

    theta: FloatArray
    a: FloatArray
    b: FloatArray
    rss: FloatArray
    n: NDArray[np.int64]
    at_edge: NDArray[np.bool_]
    rss_first: FloatArray
    """RSS at the first grid value (for a test whether the optimum improves on the grid's end)."""


def fit_profile(
    x: FloatArray, y: FloatArray, basis: Basis, grid: FloatArray, *, log_grid: bool = True, iterations: int = 60
) -> ProfileFit:
    """Fit ``y = a + b·basis(x, θ)`` per row by variable projection over ``grid`` (ascending θ values).

    ``x``, ``y``: 2-D arrays of equal shape (rows = independent fits, NaN = no point). ``basis(x, θ)`` returns an
    array like ``x``. The grid minimum is refined by a golden-section search (``iterations`` steps, all rows at
    once) between its two neighbours, in log θ when ``log_grid``: 60 steps shrink the bracket by 0.618^60 ≈ 3e-13.
    """
    valid = np.isfinite(x) & np.isfinite(y)
    n_rows = y.shape[0]
    rss_grid = np.empty((grid.size, n_rows))
    for j, theta in enumerate(grid):
        rss_grid[j] = fit_affine(basis(x, np.asarray(theta)), y, valid).rss
    rss_filled = np.where(np.isfinite(rss_grid), rss_grid, np.inf)
    best = np.argmin(rss_filled, axis=0)
    coord = np.log(grid) if log_grid else grid.astype(np.float64)
    rows = np.arange(n_rows)
    lo = coord[np.clip(best - 1, 0, grid.size - 1)]
    hi = coord[np.clip(best + 1, 0, grid.size - 1)]
    refined = _golden_section(x, y, valid, basis, lo, hi, log_grid, iterations)
    grid_rss = rss_filled[best, rows]
    theta = np.exp(refined) if log_grid else refined
    with np.errstate(invalid="ignore"):
        g_ref = basis(x, theta[:, None])
    ref_rss = fit_affine(g_ref, y, valid & np.isfinite(g_ref)).rss
    # keep the grid point if the refinement did not improve (a flat or noisy RSS curve)
    worse = ~(ref_rss <= grid_rss)
    theta = np.where(worse, grid[best], theta)
    at_edge = (best == 0) | (best == grid.size - 1)
    # the final linear coefficients at each row's refined θ
    with np.errstate(invalid="ignore"):
        g = basis(x, theta[:, None])
    fit = fit_affine(g, y, valid & np.isfinite(g))
    no_fit = ~np.isfinite(rss_grid).any(axis=0) | (fit.n < 3)
    nan = np.full(n_rows, np.nan)
    return ProfileFit(
        theta=np.where(no_fit, nan, theta),
        a=np.where(no_fit, nan, fit.a),
        b=np.where(no_fit, nan, fit.b),
        rss=np.where(no_fit, nan, fit.rss),
        n=fit.n,
        at_edge=at_edge & ~no_fit,
        rss_first=np.where(no_fit, nan, rss_grid[0]),
    )


_INVPHI = (np.sqrt(5.0) - 1.0) / 2.0


def _golden_section(
    x: FloatArray, y: FloatArray, valid: NDArray[np.bool_], basis: Basis, lo: FloatArray, hi: FloatArray,
    log_grid: bool, iterations: int,
) -> FloatArray:
    """Minimise RSS(θ) per row within [lo, hi] (grid coordinate) by golden-section search, all rows at once."""

    def rss_at(coord: FloatArray) -> FloatArray:
        theta = np.exp(coord) if log_grid else coord
        with np.errstate(invalid="ignore", over="ignore"):
            g = basis(x, theta[:, None])
        r = fit_affine(g, y, valid & np.isfinite(g)).rss
        return np.where(np.isfinite(r), r, np.inf)

    a, b = lo.copy(), hi.copy()
    c = b - _INVPHI * (b - a)
    d = a + _INVPHI * (b - a)
    fc, fd = rss_at(c), rss_at(d)
    for _ in range(iterations):
        left = fc < fd
        b = np.where(left, d, b)
        a = np.where(left, a, c)
        new_c = b - _INVPHI * (b - a)
        new_d = a + _INVPHI * (b - a)
        c_next = np.where(left, new_c, d)
        d_next = np.where(left, c, new_d)
        f_eval = rss_at(np.where(left, c_next, d_next))
        fc, fd = np.where(left, f_eval, fd), np.where(left, fc, f_eval)
        c, d = c_next, d_next
    result: FloatArray = (a + b) / 2.0
    return result
