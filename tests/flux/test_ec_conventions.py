"""EddyPro's conventions where a hidden comparison found the engine off, each on data whose truth is derived here.

1. Open path with WPL: H is humidity-corrected with the water-vapour flux *before* its density terms and is not
   changed by WPL; that H enters the WPL terms of E and FC (Webb et al. 1980, eqs. 24-25).
2. Vickers & Mahrt (1997) despiking: the window is one sixth of the averaging period (50 s at 5 min).
3. Obukhov length with the potential temperature (p0 = 100 kPa): the factor follows the pressure.
4. Wind direction of a CSAT3 (u positive into the head, north offset = azimuth the head faces); yaw in [0, 360).
"""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest

from gateway.flux.ec import airprops, despike
from gateway.flux.ec.constants import GRAVITY, M_DRY_AIR, M_H2O, VON_KARMAN
from gateway.flux.ec.engine import process_period
from gateway.flux.ec.period import RawPeriod
from gateway.flux.ec.result import FluxResult

from .synthetic import END, FS, N, correlated, metadata, period, settings_of
from .test_ec_synthetic import open_path_streams

OPEN_PATH_COLUMNS = [
    {"index": 1, "variable": "u"}, {"index": 2, "variable": "v"}, {"index": 3, "variable": "w"},
    {"index": 4, "variable": "ts"},
    {"index": 5, "variable": "co2", "measure_type": "molar_density", "unit_in": "mmol_m3"},
    {"index": 6, "variable": "h2o", "measure_type": "molar_density", "unit_in": "mmol_m3"},
    {"index": 7, "variable": "air_p", "unit_in": "pa"},
]
DENSITIES = {"co2": "molar_density", "h2o": "molar_density"}


def _cov(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a - a.mean()) * (b - b.mean())))


def _open_path(wpl: bool) -> tuple[FluxResult, dict[str, np.ndarray]]:
    data, _, _ = open_path_streams()
    md = metadata(columns=OPEN_PATH_COLUMNS, analyzer={"model": "li7500", "path_type": "open"})
    s = settings_of(rot_meth="none", tlag_meth="none", wpl_meth=wpl)
    return process_period(period(dict(data), md, DENSITIES), s), data


def test_open_path_h_is_the_same_with_wpl_on_and_off() -> None:
    on, _ = _open_path(True)
    off, _ = _open_path(False)
    assert on.get("H") == off.get("H")
    assert on.get("FC") != off.get("FC")


def test_open_path_fluxes_follow_webb_with_h_from_the_uncorrected_vapour_flux() -> None:
    r, data = _open_path(True)
    ts_mean = float(data["ts"].mean())
    n_v = float(data["h2o"].mean()) * 1e-3                      # mol m-3
    c = float(data["co2"].mean()) * 1e-3                        # mol m-3
    wq = _cov(data["w"], data["h2o"]) * 1e-3                    # mol m-2 s-1, before any density term
    wc = _cov(data["w"], data["co2"]) * 1e-3
    wts = _cov(data["w"], data["ts"])
    air = airprops.air_properties(ts_mean, float(data["air_p"].mean()), h2o_molar_density=n_v)
    # van Dijk et al. (2004) with E = w'ρv' (not the WPL-corrected E)
    h = air.rho_cp * wts * (1 - 0.51 * air.q) - air.rho_cp * 0.51 * ts_mean * wq * M_H2O / air.rho_a
    assert r.get("H") == pytest.approx(h, rel=1e-12)
    wt = h / air.rho_cp
    n_d = air.rho_d / M_DRY_AIR
    e = (1 + n_v / n_d) * (wq + n_v * wt / air.ta)              # WPL eq. 25
    fc = wc + c / n_d * wq + (1 + n_v / n_d) * c * wt / air.ta  # WPL eq. 24
    assert r.get("FH2O") == pytest.approx(e * 1e3, rel=1e-12)
    assert r.get("FC") == pytest.approx(fc * 1e6, rel=1e-12)
    # the iterated alternative (H from the WPL-corrected E) is measurably different: the test can tell them apart
    h_iterated = air.rho_cp * wts * (1 - 0.51 * air.q) - air.rho_cp * 0.51 * ts_mean * e * M_H2O / air.rho_a
    assert abs(h_iterated / h - 1) > 1e-3


def test_despiking_window_is_one_sixth_of_the_averaging_period() -> None:
    """A 5-min period of a steep ramp with small noise: spikes of 3 units stand out of a 50-s window (local σ ≈ 0.5)
    but not of the whole period (σ ≈ 2.9). Isolated spikes and a pair are removed and counted; a run of four
    outliers (more than sr_num_spk = 3) is kept as real."""
    n = round(300 * FS)
    rng = np.random.default_rng(11)
    ramp = np.linspace(290.0, 300.0, n) + 0.02 * rng.standard_normal(n)
    ts = ramp.copy()
    spikes = [700, 1900, 2600, 3400, 4500]
    ts[spikes] += 3.0
    ts[[5200, 5201]] += 3.0          # a two-point spike
    ts[3000:3004] += 3.0             # four consecutive outliers: not a spike
    assert despike.eddypro_window_s(300.0) == 50.0
    local = despike.despike_vm97(ts, FS, window_s=despike.eddypro_window_s(300.0))
    assert local.n_events == 6
    assert local.n_spikes == 7
    removed = np.zeros(n, bool)
    removed[[*spikes, 5200, 5201]] = True
    assert np.array_equal(local.spikes, removed)
    idx = np.arange(n)
    expected = ts.copy()
    expected[removed] = np.interp(idx[removed], idx[~removed], ts[~removed])
    assert np.allclose(local.values, expected, rtol=0, atol=1e-12)
    assert despike.despike_vm97(ts, FS, window_s=300.0).n_events == 0   # the 30-min window sees none

    # the engine uses that window at avrg_len = 5
    w = 0.3 * rng.standard_normal(n)
    u = 3.0 + 0.5 * rng.standard_normal(n)
    v = 0.5 * rng.standard_normal(n)
    md = metadata(columns=[{"index": 1, "variable": "u"}, {"index": 2, "variable": "v"},
                           {"index": 3, "variable": "w"}, {"index": 4, "variable": "ts"}])
    p = RawPeriod(data={"u": u, "v": v, "w": w, "ts": ts}, metadata=md, start=END - timedelta(minutes=5), end=END,
                  expected_records=n)
    s = settings_of(avrg_len=5, rot_meth="none", tlag_meth="none", despike="vickers_mahrt_1997", qc_meth="none")
    r = process_period(p, s)
    assert r.get("TS_NUM_SPIKES") == 6
    assert r.get("W_T_SONIC_COV") == pytest.approx(_cov(w, expected), rel=1e-12)


def _stable_period(p_pa: float) -> FluxResult:
    cov = np.array([[1.2, 0.0, -0.25, 0.0], [0.0, 1.0, 0.0, 0.0], [-0.25, 0.0, 0.5, 0.12], [0.0, 0.0, 0.12, 0.3]])
    x = correlated(cov, seed=21) + np.array([4.0, 0.0, 0.0, 285.0])
    data = {"u": x[:, 0], "v": x[:, 1], "w": x[:, 2], "ts": x[:, 3], "air_p": np.full(N, p_pa)}
    md = metadata(columns=[{"index": 1, "variable": "u"}, {"index": 2, "variable": "v"},
                           {"index": 3, "variable": "w"}, {"index": 4, "variable": "ts"},
                           {"index": 5, "variable": "air_p", "unit_in": "pa"}])
    return process_period(period(data, md), settings_of(rot_meth="none", tlag_meth="none", qc_meth="none"))


@pytest.mark.parametrize("p_pa", [85000.0, 100000.0, 103000.0])
def test_obukhov_length_uses_the_potential_temperature(p_pa: float) -> None:
    r = _stable_period(p_pa)
    theta = (r.get("TA") + 273.15) * (100000.0 / p_pa) ** 0.286
    expected = -r.get("USTAR") ** 3 * theta / (VON_KARMAN * GRAVITY * r.get("H") / r.get("RHO_CP"))
    assert r.get("MO_LENGTH") == pytest.approx(expected, rel=1e-12)
    md = metadata()
    assert r.get("ZL") == pytest.approx((md.sonic.height - md.displacement()) / expected, rel=1e-12)
    with_ta = -r.get("USTAR") ** 3 * (r.get("TA") + 273.15) / (VON_KARMAN * GRAVITY * r.get("H") / r.get("RHO_CP"))
    assert r.get("MO_LENGTH") / with_ta == pytest.approx((100000.0 / p_pa) ** 0.286, rel=1e-12)


def _geographic_wind(direction_from_deg: float, speed: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """East and north components of a gusty wind blowing *from* ``direction_from_deg`` (compass)."""
    rng = np.random.default_rng(seed)
    gust = speed + 0.3 * rng.standard_normal(N)
    toward = math.radians(direction_from_deg + 180.0)
    return gust * math.sin(toward), gust * math.cos(toward)


def _sonic_frame(east: np.ndarray, north: np.ndarray, x_azimuth_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Components along a right-handed sonic frame (z up) whose +x axis points at ``x_azimuth_deg`` (compass); +y is
    90° counter-clockwise from +x seen from above, i.e. at azimuth x − 90°."""
    ax, ay = math.radians(x_azimuth_deg), math.radians(x_azimuth_deg - 90.0)
    return east * math.sin(ax) + north * math.cos(ax), east * math.sin(ay) + north * math.cos(ay)


@pytest.mark.parametrize(("model", "x_points_to_head"), [("csat3_1", True), ("wm_1", False), ("hs_50_1", False)])
@pytest.mark.parametrize("wind_from", [20.0, 250.0])
def test_wind_direction_follows_the_sonic_axis_convention(model: str, x_points_to_head: bool,
                                                          wind_from: float) -> None:
    """North offset 200°: the CSAT3's head faces 200°, so its +x axis (head → support arm) points at 20°; a Gill's
    +x axis points at its north mark, 200°. Both must report the geographic direction the wind comes from."""
    offset = 200.0
    east, north = _geographic_wind(wind_from, 4.0, seed=3)
    u, v = _sonic_frame(east, north, offset + 180.0 if x_points_to_head else offset)
    w = 0.2 * np.random.default_rng(4).standard_normal(N)
    ts = 290.0 + 0.3 * np.random.default_rng(5).standard_normal(N)
    md = metadata(columns=[{"index": 1, "variable": "u"}, {"index": 2, "variable": "v"},
                           {"index": 3, "variable": "w"}, {"index": 4, "variable": "ts"}],
                  sonic={"height": 30.0, "model": model, "north_offset": offset})
    r = process_period(period({"u": u, "v": v, "w": w, "ts": ts}, md), settings_of(tlag_meth="none",
                                                                                   qc_meth="none"))
    wd = r.get("WD")
    assert min(abs(wd - wind_from), 360 - abs(wd - wind_from)) < 0.05
    assert 0.0 <= r.get("YAW") < 360.0
    assert r.get("YAW") == pytest.approx(math.degrees(math.atan2(v.mean(), u.mean())) % 360.0, abs=1e-9)



def test_wind_direction_sigma_is_yamartino_s_estimate() -> None:
    """Directions ±10° about any mean: the spread is 10°, which Yamartino (1984) estimates to 0.01°; one direction
    has none; turning the axes changes nothing; run V's 28.3905° is checked against EddyPro in test_ec_outputs."""
    from gateway.flux.ec.rotation import wind_direction_sigma

    a = np.radians(np.tile([-10.0, 10.0], 500))
    for mean in (0.0, 1.5, 3.0):  # radians, 3.0 near the ±180° wrap
        assert wind_direction_sigma(np.cos(a + mean), np.sin(a + mean)) == pytest.approx(10.0, abs=0.01)
    assert wind_direction_sigma(np.full(10, 2.0), np.full(10, -1.0)) == pytest.approx(0.0, abs=1e-6)
    assert math.isnan(wind_direction_sigma(np.full(3, np.nan), np.full(3, np.nan)))


def test_one_point_storage_is_height_times_the_change_over_the_period() -> None:
    """Air 1 K warmer after 1800 s below 10 m with ρcp = 1200 J m-3 K-1: 10·1200·1/1800 = 6.667 W m-2; CO2 up
    by 1.8 µmol mol-1 at Va = 0.025 m3 mol-1: 10·72/1800 = 0.4 µmol m-2 s-1; H2O down by 0.9 mmol mol-1:
    −0.2 mmol m-2 s-1, LE = λ·M_H2O times it, ET in mm h-1. A value either period lacks gives nothing."""
    from gateway.flux.ec.fluxes import storage_one_point

    before = {"TA": 20.0, "CO2": 400.0, "H2O": 10.0}
    after = {"TA": 21.0, "CO2": 401.8, "H2O": 9.1, "RHO_CP": 1200.0, "AIR_MV": 0.025, "SPECIFIC_HEAT_EVAP": 2.45e6}
    s = storage_one_point(before, after, 10.0, 1800.0)
    assert s["SH_SINGLE"] == pytest.approx(10.0 * 1200.0 / 1800.0)
    assert s["SC_SINGLE"] == pytest.approx(0.4)
    assert s["SH2O_SINGLE"] == pytest.approx(-0.2)
    assert s["SLE_SINGLE"] == pytest.approx(-0.2e-3 * M_H2O * 2.45e6)
    assert s["SET_SINGLE"] == pytest.approx(-0.2e-3 * M_H2O * 3600.0)
    assert "SCH4_SINGLE" not in s and "SNONE_SINGLE" not in s
    assert storage_one_point({}, after, 10.0, 1800.0) == {}
