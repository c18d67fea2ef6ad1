"""Vectorised least squares for models ``y = a + b·g(x; θ)`` with one non-linear parameter θ (variable projection).

For a fixed θ the model is linear in ``(a, b)``: the optimum has a closed form from five sums over the valid points
of a row, so the residual sum of squares RSS(θ) of *every* row is evaluated at once on a grid of θ (Golub & Pereyra
1973, SIAM J. Numer. Anal. 10, 413-432: separable non-linear least squares — the "plinear" algorithm of R's ``nls``
that the HMR and gasfluxes packages use per row). The grid minimum is then refined by a parabola through the three
grid points around it, in the grid's coordinate (log θ for a log grid). Rows are independent; NaN points are ignored;
a row with fewer than 3 valid points gives NaN.

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


def fit_profile(
    x: FloatArray, y: FloatArray, basis: Basis, grid: FloatArray, *, log_grid: bool = True
) -> ProfileFit:
    """Fit ``y = a + b·basis(x, θ)`` per row by variable projection over ``grid`` (ascending θ values).

    ``x``, ``y``: 2-D arrays of equal shape (rows = independent fits, NaN = no point). ``basis(x, θ)`` returns an
    array like ``x``. The refined θ is the vertex of a parabola through RSS at the grid minimum and its neighbours
    (in log θ when ``log_grid``), clipped to that bracket.
    """
    valid = np.isfinite(x) & np.isfinite(y)
    n_rows = y.shape[0]
    rss_grid = np.empty((grid.size, n_rows))
    for j, theta in enumerate(grid):
        rss_grid[j] = fit_affine(basis(x, np.asarray(theta)), y, valid).rss
    rss_filled = np.where(np.isfinite(rss_grid), rss_grid, np.inf)
    best = np.argmin(rss_filled, axis=0)
    coord = np.log(grid) if log_grid else grid.astype(np.float64)
    inner = np.clip(best, 1, grid.size - 2)
    r0 = rss_filled[inner - 1, np.arange(n_rows)]
    r1 = rss_filled[inner, np.arange(n_rows)]
    r2 = rss_filled[inner + 1, np.arange(n_rows)]
    c0, c1, c2 = coord[inner - 1], coord[inner], coord[inner + 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        denom = (c0 - c1) * (c0 - c2) * (c1 - c2)
        pa = (c2 * (r1 - r0) + c1 * (r0 - r2) + c0 * (r2 - r1)) / denom
        pb = (c2 * c2 * (r0 - r1) + c1 * c1 * (r2 - r0) + c0 * c0 * (r1 - r2)) / denom
        vertex = -pb / (2.0 * pa)
    usable = np.isfinite(vertex) & (pa > 0) & (best == inner)
    refined = np.where(usable, np.clip(vertex, c0, c2), coord[best])
    theta = np.exp(refined) if log_grid else refined
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
    )
