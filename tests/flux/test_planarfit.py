"""Planar fit: recovered synthetic planes and tilts, EddyPro's file and the DE-HoH V run's rotated statistics."""

from __future__ import annotations

import csv
import math
from typing import Any

import numpy as np
import pytest

from gateway.flux.ec.despike import EDDYPRO_SR_LIMITS, despike_vm97
from gateway.flux.ec.planarfit import (
    PlanarFitCoefficients,
    apply_planar_fit,
    fit_planar_sectors,
    fit_plane,
    parse_eddypro_planar_fit,
    plane_rotation_matrix,
    select_sector,
    sonic_wind_angle,
)

from .conftest import EC_RAW, RAW_FILE, V_RUN

PF_FILE = EC_RAW / "planar_fit.txt"


def _periods(b0: float, b1: float, b2: float, n: int, seed: int, angles: tuple[float, float] = (0.0, 360.0)):
    rng = np.random.default_rng(seed)
    speed = rng.uniform(1.5, 8.0, n)
    ang = np.radians(rng.uniform(*angles, n))
    # "from" direction theta: u = -s cos(theta), v = -s sin(theta)
    u, v = -speed * np.cos(ang), -speed * np.sin(ang)
    w = b0 + b1 * u + b2 * v + 0.01 * rng.standard_normal(n)
    return u, v, w


def test_fit_plane_recovers_coefficients() -> None:
    u, v, w = _periods(0.05, 0.03, -0.02, 400, 1)
    c = fit_plane(u, v, w)
    # noise 0.01 m/s over 400 periods with speeds of a few m/s: standard errors ~1e-3 (b0), ~3e-4 (b1, b2)
    assert c.b0 == pytest.approx(0.05, abs=3e-3)
    assert c.b1 == pytest.approx(0.03, abs=1e-3)
    assert c.b2 == pytest.approx(-0.02, abs=1e-3)
    assert c.n == 400
    c0 = fit_plane(u, v, w - 0.05, fit_b0=False)
    assert c0.b0 == 0.0 and c0.b1 == pytest.approx(0.03, abs=1e-3)


def test_sectorwise_fit_recovers_each_sector() -> None:
    planes = [(0.0, 0.02, 0.01), (0.1, -0.03, 0.02), (-0.05, 0.04, -0.01), (0.02, 0.01, 0.03)]
    parts = [_periods(*p, 200, 10 + k, (90.0 * k + 0.5, 90.0 * (k + 1) - 0.5)) for k, p in enumerate(planes)]
    u = np.concatenate([p[0] for p in parts])
    v = np.concatenate([p[1] for p in parts])
    w = np.concatenate([p[2] for p in parts])
    sectors = fit_planar_sectors(u, v, w, n_sectors=4, w_max=1.0, u_min=1.5)
    for sec, (b0, b1, b2) in zip(sectors, planes, strict=True):
        # one-sided sectors constrain b0 less well than a full circle: 0.01 m/s
        assert sec.coefficients.b0 == pytest.approx(b0, abs=1e-2)
        assert sec.coefficients.b1 == pytest.approx(b1, abs=3e-3)
        assert sec.coefficients.b2 == pytest.approx(b2, abs=3e-3)
    assert select_sector(sectors, -1.0, -1.0).start_deg == 0.0  # from 45 deg
    assert select_sector(sectors, 1.0, -1.0).start_deg == 90.0  # from 135 deg


def test_rotation_matrix_is_orthonormal_and_levels_the_plane() -> None:
    p = plane_rotation_matrix(0.05, -0.08)
    assert np.allclose(p @ p.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(p) == pytest.approx(1.0, abs=1e-12)
    # any vector lying in the plane w = b1 u + b2 v has no vertical component after the tilt
    for u, v in [(3.0, 0.0), (0.0, 2.0), (-1.5, 4.0)]:
        assert (p @ np.array([u, v, 0.05 * u - 0.08 * v]))[2] == pytest.approx(0.0, abs=1e-12)


def test_tilted_synthetic_wind_field_is_recovered() -> None:
    rng = np.random.default_rng(5)
    n = 36000
    # true (streamline) frame: mean 4 m/s along x, covariances known, w mean 0
    ut = 4.0 + rng.standard_normal(n)
    vt = 0.8 * rng.standard_normal(n)
    wt = 0.5 * rng.standard_normal(n) - 0.1 * (ut - 4.0)  # cov(u, w) = -0.1
    wt -= wt.mean()
    b0, b1, b2 = 0.07, 0.04, -0.03
    p = plane_rotation_matrix(b1, b2)
    yaw = math.radians(200.0)
    rz = np.array([[math.cos(yaw), -math.sin(yaw), 0.0], [math.sin(yaw), math.cos(yaw), 0.0], [0.0, 0.0, 1.0]])
    sonic = p.T @ rz @ np.vstack([ut, vt, wt])
    sonic[2] += b0
    r = apply_planar_fit(sonic[0], sonic[1], sonic[2], PlanarFitCoefficients(b0, b1, b2), subtract_b0=True)
    assert r.yaw_deg == pytest.approx(200.0, abs=0.05)  # sampling noise of the mean direction
    assert r.w_mean == pytest.approx(0.0, abs=1e-9)
    assert r.v_mean == pytest.approx(0.0, abs=1e-9)
    assert r.u_mean == pytest.approx(float(np.hypot(ut.mean(), vt.mean())), rel=1e-9)
    assert np.mean((r.u - r.u_mean) * (r.w - r.w_mean)) == pytest.approx(-0.1, abs=0.01)
    rb = apply_planar_fit(sonic[0], sonic[1], sonic[2], PlanarFitCoefficients(b0, b1, b2), subtract_b0=False)
    assert rb.w_mean == pytest.approx(b0 * p[2, 2], abs=1e-9)  # the offset stays in w when not subtracted


@pytest.fixture(scope="module")
def pf_text() -> str:
    return PF_FILE.read_text()


def test_parse_eddypro_planar_fit(pf_text: str) -> None:
    pf = parse_eddypro_planar_fit(pf_text)
    assert pf.settings["Number_of_selected_wind_sectors"] == "4"
    assert pf.settings["Minimum_number_of_data_per_wind_sector"] == "100"
    assert [(s.start_deg, s.end_deg) for s in pf.sectors] == [(0, 90), (90, 180), (180, 270), (270, 360)]
    assert pf.sectors[3].coefficients == PlanarFitCoefficients(0.0042295, 0.0282999, -0.0198708, 751)
    assert pf.numerosity == [227, 100, 255, 751]
    assert len(pf.matrices) == 4


def test_our_matrices_equal_eddypros_printed_ones(pf_text: str) -> None:
    pf = parse_eddypro_planar_fit(pf_text)
    for sec, printed in zip(pf.sectors, pf.matrices, strict=True):
        ours = plane_rotation_matrix(sec.coefficients.b1, sec.coefficients.b2)
        # printed with 6 decimals (coefficients with 7): agreement to 1e-6
        assert np.abs(ours - printed).max() < 1e-6


def _v_full_output() -> dict[str, float]:
    path = V_RUN / "eddypro_full_output.csv"
    with path.open(encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    out = {}
    for name, value in zip(rows[1], rows[3], strict=True):
        try:
            out[name] = float(value)
        except ValueError:
            continue
    return out


def test_v_run_yaw_and_rotated_statistics(pf_text: str) -> None:
    """EddyPro V run: planar fit from planar_fit.txt, offset b0 not subtracted, after VM97 despiking."""
    ref = _v_full_output()
    raw = np.loadtxt(RAW_FILE, delimiter=",", skiprows=1)
    names = ["u", "v", "w", "ts"]
    u, v, w, ts = (despike_vm97(raw[:, k], 20.0, sr_lim=EDDYPRO_SR_LIMITS[nm]).values for k, nm in enumerate(names))
    pf = parse_eddypro_planar_fit(pf_text)
    sec = select_sector(pf.sectors, float(u.mean()), float(v.mean()))
    assert float(sonic_wind_angle(u.mean(), v.mean())) == pytest.approx(302.3, abs=0.1)
    assert sec.start_deg == 270.0
    r = apply_planar_fit(u, v, w, sec.coefficients, subtract_b0=False)

    def cov(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.mean((a - a.mean()) * (b - b.mean())))

    assert r.yaw_deg == pytest.approx(ref["yaw"], abs=5e-4)  # printed to 1e-3 deg
    # EddyPro prints ~6 significant digits: relative 1e-5 (despiking of u and Ts matches record for record)
    assert r.u_mean == pytest.approx(ref["u_rot"], rel=1e-5)
    assert r.w_mean == pytest.approx(ref["w_rot"], rel=1e-5)
    assert abs(r.v_mean) < 1e-10
    assert cov(r.u, r.u) == pytest.approx(ref["u_var"], rel=1e-5)
    assert cov(r.v, r.v) == pytest.approx(ref["v_var"], rel=1e-5)
    assert cov(r.w, r.w) == pytest.approx(ref["w_var"], rel=1e-5)
    assert cov(r.w, ts) == pytest.approx(ref["w/ts_cov"], rel=1e-5)
    ustar = (cov(r.u, r.w) ** 2 + cov(r.v, r.w) ** 2) ** 0.25
    with (V_RUN / "eddypro_fluxnet.csv").open() as fh:
        head, values = list(csv.reader(fh))[:2]
    # u* before spectral correction
    assert ustar == pytest.approx(float(values[head.index("USTAR_UNCORR")]), rel=1e-5)


# --- the engine's own planar fit over many periods (no planar_fit.txt) ----------------------------------------------

PLANES = {0: (0.05, 0.06, -0.04), 1: (0.05, 0.06, -0.04), 2: (-0.03, -0.02, 0.07), 3: (-0.03, -0.02, 0.07)}
DIRECTIONS = [10.0 + 22.5 * k for k in range(16)] * 2  # 32 periods, 8 in each 90° sector


def _engine_periods(data: list[dict[str, np.ndarray]]) -> list[Any]:
    from datetime import timedelta

    from gateway.flux.ec.period import RawPeriod

    from .synthetic import END, metadata

    md = metadata(columns=[{"index": 1, "variable": "u"}, {"index": 2, "variable": "v"},
                           {"index": 3, "variable": "w"}, {"index": 4, "variable": "ts"}],
                  acquisition_frequency=10.0)
    return [RawPeriod(data=d, metadata=md, start=END + timedelta(minutes=i), end=END + timedelta(minutes=i + 1),
                      expected_records=600) for i, d in enumerate(data)]


def test_engine_planar_fit_recovers_the_planes_of_each_sector() -> None:
    from gateway.flux.ec.engine import fit_planar_fit, process_period, sonic_frame_means

    from .synthetic import settings_of, tilted_periods

    sonic, truth = tilted_periods(PLANES, DIRECTIONS)
    st = settings_of(avrg_len=1, rot_meth="planar_fit", tlag_meth="none", qc_meth="none", pf_subtract_b0=True,
                     pf_min_num_per_sec=5)
    periods = _engine_periods(sonic)
    means = [sonic_frame_means(p, st) for p in periods]
    assert all(m is not None for m in means)
    setup, notes = fit_planar_fit([m for m in means if m is not None], st)
    assert notes == []
    for k, sec in enumerate(setup.sectors):
        b0, b1, b2 = PLANES[k]
        c = sec.coefficients
        assert (c.b0, c.b1, c.b2) == pytest.approx((b0, b1, b2), abs=1e-9), k
        assert (sec.start_deg, sec.end_deg) == (90.0 * k, 90.0 * (k + 1))
    for period, true in zip(periods, truth, strict=True):
        r = process_period(period, st, planar_fit=setup)

        def cov(a: np.ndarray, b: np.ndarray) -> float:
            return float(np.mean((a - a.mean()) * (b - b.mean())))

        assert r.get("U_W_COV") == pytest.approx(cov(true["u"], true["w"]), rel=1e-9)
        assert r.get("W_T_SONIC_COV") == pytest.approx(cov(true["w"], true["ts"]), rel=1e-9)
        assert r.get("WS") == pytest.approx(float(np.hypot(true["u"].mean(), true["v"].mean())), rel=1e-9)


def test_engine_planar_fit_falls_back_to_all_periods_for_a_thin_sector() -> None:
    from gateway.flux.ec.engine import fit_planar_fit, sonic_frame_means

    from .synthetic import settings_of, tilted_periods

    one_plane = dict.fromkeys(range(4), (0.02, 0.05, 0.01))
    directions = [d for d in DIRECTIONS if d < 270.0] + [300.0]  # sector 4 gets one period
    sonic, _ = tilted_periods(one_plane, directions)
    st = settings_of(avrg_len=1, rot_meth="planar_fit", tlag_meth="none", pf_min_num_per_sec=5)
    means = [m for p in _engine_periods(sonic) if (m := sonic_frame_means(p, st)) is not None]
    setup, notes = fit_planar_fit(means, st)
    assert notes and "sectors 4 had fewer than 5" in notes[0]
    assert setup.sectors[3].coefficients.b1 == pytest.approx(0.05, abs=1e-9)  # the plane of all periods
    with pytest.raises(ValueError, match="usable periods"):
        fit_planar_fit(means[:3], settings_of(rot_meth="planar_fit", pf_min_num_per_sec=5))
