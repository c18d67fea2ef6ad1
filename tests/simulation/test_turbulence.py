"""The synthetic field has the statistics it promises: the known truth that flux code is checked against."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.simulation.turbulence import VARIABLES, TurbulenceField, TurbulenceSpec


def double_rotate(u: np.ndarray, v: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plain double rotation (yaw into the mean wind, then pitch to zero mean w), written here independently."""
    yaw = np.arctan2(v.mean(), u.mean())
    u1 = u * np.cos(yaw) + v * np.sin(yaw)
    v1 = -u * np.sin(yaw) + v * np.cos(yaw)
    pitch = np.arctan2(w.mean(), u1.mean())
    u2 = u1 * np.cos(pitch) + w * np.sin(pitch)
    w2 = -u1 * np.sin(pitch) + w * np.cos(pitch)
    return u2, v1, w2


def test_streamline_covariances_match_the_prescription() -> None:
    spec = TurbulenceSpec()
    field = TurbulenceField(spec, seed=1)
    data = field.streamline(0, 4 * spec.block_samples)
    sample = np.cov(data, rowvar=False)
    prescribed = spec.covariance_matrix()
    # sampling error of a covariance ~ sqrt(var_a var_b / N_effective); N_eff = N / (2 T f) for AR(1)
    n_eff = data.shape[0] / (2 * spec.time_scale_s * spec.frequency_hz)
    tolerance = 4 * np.sqrt(np.outer(np.diag(prescribed), np.diag(prescribed)) / n_eff)
    assert np.all(np.abs(sample - prescribed) < tolerance)


def test_double_rotation_of_the_sonic_frame_recovers_streamline_fluxes() -> None:
    spec = TurbulenceSpec(wind_dir_deg=130.0, pitch_deg=5.0)
    field = TurbulenceField(spec, seed=2)
    sonic = field.sonic(0, spec.block_samples)
    u, _, w = double_rotate(sonic[:, 0], sonic[:, 1], sonic[:, 2])
    truth = field.streamline(0, spec.block_samples)
    assert np.cov(w, sonic[:, 3])[0, 1] == pytest.approx(np.cov(truth[:, 2], truth[:, 3])[0, 1], rel=0.02)
    assert np.cov(u, w)[0, 1] == pytest.approx(np.cov(truth[:, 0], truth[:, 2])[0, 1], rel=0.05)
    assert np.hypot(sonic[:, 0].mean(), sonic[:, 1].mean()) == pytest.approx(spec.wind_speed * np.cos(np.radians(5)),
                                                                              rel=0.05)


def test_gas_is_delayed_by_the_lag_and_covariance_peaks_there() -> None:
    spec = TurbulenceSpec(lag_s=0.3)
    field = TurbulenceField(spec, seed=3)
    n = spec.block_samples
    w = field.streamline(0, n)[:, VARIABLES.index("w")]
    co2 = field.gas(0, n)[:, 0]
    lags = range(0, 20)
    covariances = [abs(np.cov(w[: n - k], co2[k:])[0, 1]) for k in lags]
    assert int(np.argmax(covariances)) == spec.lag_samples == 6


def test_same_seed_same_field_across_instances_and_block_boundaries() -> None:
    spec = TurbulenceSpec(block_s=10.0)
    a, b = TurbulenceField(spec, seed=9), TurbulenceField(spec, seed=9)
    whole = a.sonic(150, 200)
    pieces = np.concatenate([b.sonic(i) for i in range(150, 350)])
    # equal up to BLAS rounding: a 200-row and a 1-row matrix product may round differently in the last bit
    np.testing.assert_allclose(whole, pieces, rtol=1e-12, atol=1e-12)
    assert not np.array_equal(TurbulenceField(spec, seed=10).sonic(150, 200), whole)
