"""Synthetic eddy-covariance data with known truth, for the engine tests."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gateway.flux.ec.period import RawPeriod
from gateway.flux.ec.settings import ProcessingSettings, SiteMetadata

FS = 20.0
N = 36000
END = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def metadata(columns: list[dict[str, Any]] | None = None, **site: Any) -> SiteMetadata:
    cols = columns or [
        {"index": 1, "variable": "u"}, {"index": 2, "variable": "v"}, {"index": 3, "variable": "w"},
        {"index": 4, "variable": "ts"},
        {"index": 5, "variable": "co2", "measure_type": "mixing_ratio", "min_timelag": 0, "max_timelag": 1},
        {"index": 6, "variable": "h2o", "measure_type": "mixing_ratio", "min_timelag": 0, "max_timelag": 1},
    ]
    base: dict[str, Any] = {"site_id": "SYN", "altitude": 0.0, "latitude": 50.0, "canopy_height": 20.0,
                            "acquisition_frequency": FS, "sonic": {"height": 30.0}, "file": {"columns": cols}}
    base.update(site)
    return SiteMetadata.model_validate(base)


def correlated(cov: NDArray[np.float64], n: int = N, seed: int = 1) -> NDArray[np.float64]:
    """n samples (rows) of zero-mean Gaussian variables with population covariance ``cov`` (Cholesky factor of the
    prescribed matrix applied to whitened noise, so the sample covariance equals ``cov`` up to sampling error)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, cov.shape[0]))
    return z @ np.linalg.cholesky(cov).T


def period(data: dict[str, NDArray[np.float64]], md: SiteMetadata | None = None,
           measure_types: dict[str, str] | None = None) -> RawPeriod:
    n = len(data["w"])
    return RawPeriod(data=data, metadata=md or metadata(), start=END - timedelta(seconds=n / FS), end=END,
                     measure_types=measure_types or {"co2": "mixing_ratio", "h2o": "mixing_ratio"},
                     expected_records=N)


def to_sonic_frame(u2: NDArray[np.float64], v1: NDArray[np.float64], w2: NDArray[np.float64], yaw_deg: float,
                   pitch_deg: float) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Inverse of the double rotation: from the streamwise frame to a sonic tilted by the given angles."""
    phi, theta = math.radians(pitch_deg), math.radians(yaw_deg)
    u1 = u2 * math.cos(phi) - w2 * math.sin(phi)
    w = u2 * math.sin(phi) + w2 * math.cos(phi)
    u = u1 * math.cos(theta) - v1 * math.sin(theta)
    v = u1 * math.sin(theta) + v1 * math.cos(theta)
    return u, v, w


def settings_of(**options: Any) -> ProcessingSettings:
    """Validated settings from keyword options (enum values as their names)."""
    return ProcessingSettings.model_validate(options)


def tilted_periods(planes: dict[int, tuple[float, float, float]], directions: list[float], *, fs: float = 10.0,
                   n: int = 600, seed: int = 11) -> tuple[list[dict[str, NDArray[np.float64]]],
                                                          list[dict[str, NDArray[np.float64]]]]:
    """Periods of wind in a streamline frame (mean along x, mean v = w = 0, cov(u, w) = -0.1, cov(w, T) = 0.05)
    turned to blow *from* each sonic-frame direction in ``directions`` (degrees) and tilted onto the plane
    w = b0 + b1·u + b2·v of its 90° sector (``planes``: sector index 0-3 → (b0, b1, b2); Wilczak et al. 2001,
    eqs. 36, 42-44). Returns (sonic-frame periods, streamline-frame truth) with keys u, v, w, ts."""
    from gateway.flux.ec.planarfit import plane_rotation_matrix

    rng = np.random.default_rng(seed)
    cov = np.array([[1.0, 0.0, -0.1, 0.0], [0.0, 0.6, 0.0, 0.0], [-0.1, 0.0, 0.4, 0.05], [0.0, 0.0, 0.05, 0.2]])
    sonic, truth = [], []
    for k, direction in enumerate(directions):
        x = rng.standard_normal((n, 4)) @ np.linalg.cholesky(cov).T
        x -= x.mean(axis=0)
        speed = 3.0 + (k % 4)
        u, v, w, t = x[:, 0] + speed, x[:, 1], x[:, 2], x[:, 3] + 290.0
        toward = math.radians(direction + 180.0)  # the wind vector points away from where it comes from
        rz = np.array([[math.cos(toward), -math.sin(toward), 0.0], [math.sin(toward), math.cos(toward), 0.0],
                       [0.0, 0.0, 1.0]])
        b0, b1, b2 = planes[int(direction // 90.0) % 4]
        vec = plane_rotation_matrix(b1, b2).T @ rz @ np.vstack([u, v, w])
        sonic.append({"u": vec[0], "v": vec[1], "w": vec[2] + b0, "ts": t})
        truth.append({"u": u, "v": v, "w": w, "ts": t})
    return sonic, truth
