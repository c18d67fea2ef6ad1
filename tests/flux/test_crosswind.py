"""Crosswind correction of the sonic temperature (Liu, Peters & Foken 2001; gateway.flux.ec.sonic): the factors of
a path geometry against the normal wind computed path by path, the built-in sonics (CSAT3, Metek USA-1) on
synthetic per-path temperatures made from a known true Ts, and the refusals where the geometry is not known
(docs/flux-ec.md, "Options still refused")."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from gateway.configfile import ConfigError
from gateway.flux.ec import sonic
from gateway.flux.ec.engine import ConfigurationError, check_configuration, process_period
from gateway.flux.ec.result import FluxResult
from gateway.flux.ec.settings import ProcessingSettings
from gateway.flux.eddypro import read_project, settings_from_project
from gateway.flux.files import load_metadata

from .conftest import EC_RAW
from .synthetic import correlated, metadata, period, settings_of

R1 = EC_RAW / "eddypro" / "R1_dr_ba_maxcov_wpl_30min"
SONIC_COLUMNS = [{"index": 1, "variable": "u"}, {"index": 2, "variable": "v"}, {"index": 3, "variable": "w"},
                 {"index": 4, "variable": "ts"}]
COV = np.array([[1.2, 0.1, -0.25, -0.05], [0.1, 1.0, 0.02, 0.0], [-0.25, 0.02, 0.5, 0.12], [-0.05, 0.0, 0.12, 0.3]])


def normal_wind_squared(u: np.ndarray, v: np.ndarray, w: np.ndarray, path: np.ndarray) -> np.ndarray:
    """|V × n|² for a unit path vector n: the squared wind normal to the path, computed as a cross product (not by
    the expansion the module uses)."""
    n = path / np.linalg.norm(path)
    vel = np.stack([u, v, w], axis=-1)
    return np.sum(np.cross(vel, n) ** 2, axis=-1)


def per_path_sonic_temperature(true_ts: np.ndarray, u: np.ndarray, v: np.ndarray, w: np.ndarray,
                               paths: np.ndarray) -> np.ndarray:
    """What a sonic without internal correction reports: the mean over its paths of Ts − Vni²/403."""
    return np.mean([true_ts - normal_wind_squared(u, v, w, p) / 403.0 for p in paths], axis=0)


def test_factors_of_any_geometry_are_the_mean_normal_wind_of_its_paths() -> None:
    """Paths not symmetric in azimuth (different inclinations, uneven azimuths) give A ≠ B and a u·v term; for
    horizontal wind the factors reproduce the mean squared normal wind of the paths to rounding."""
    rng = np.random.default_rng(7)
    paths = rng.normal(size=(3, 3))
    f = sonic.crosswind_factors(paths)
    assert f.a != pytest.approx(f.b) and abs(f.c) > 1e-3
    u, v = rng.normal(3.0, 2.0, 500), rng.normal(-1.0, 2.0, 500)
    expected = np.mean([normal_wind_squared(u, v, np.zeros_like(u), p) for p in paths], axis=0)
    assert f.a * u * u + f.b * v * v + f.c * u * v == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("elevation", "a"), [(60.0, 7 / 8), (45.0, 3 / 4), (90.0, 1.0)])
@pytest.mark.parametrize("azimuth0", [0.0, 30.0, 77.0])
def test_three_paths_120_degrees_apart_give_equal_factors_and_no_cross_term(elevation: float, a: float,
                                                                             azimuth0: float) -> None:
    """A = B = 1 − ½·cos²φ whatever the azimuth of the first path: 7/8 for the CSAT3's 60° (Liu et al. 2001,
    Table 1), 3/4 at 45°."""
    f = sonic.crosswind_factors(sonic.symmetric_paths(elevation, azimuth0))
    assert (f.a, f.b) == (pytest.approx(a, abs=1e-12), pytest.approx(a, abs=1e-12))
    assert f.c == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(("bad", "words"), [(np.zeros((3, 3)), "non-zero"), (np.ones((3, 2)), r"\(n, 3\)")])
def test_a_geometry_without_directions_is_refused_by_name(bad: np.ndarray, words: str) -> None:
    with pytest.raises(ValueError, match=rf"crosswind_factors: .*{words}"):
        sonic.crosswind_factors(bad)


def test_the_built_in_sonics_and_their_model_names() -> None:
    assert sonic.path_elevation_deg("csat3_1", None) == 60.0
    assert sonic.path_elevation_deg("usa1_standard", None) == 45.0
    assert sonic.path_elevation_deg("hs_50_1", None) is None
    assert [sonic.path_elevation_deg(m, None) for m in ("r3_50_1", "r3_100_1", "r2_1")] == [45.0] * 3
    assert sonic.path_elevation_deg("r3a_100_1", None) is None  # the asymmetric R3A: no source for its array
    assert sonic.path_elevation_deg("hs_50_1", 50.0) == 50.0
    assert all(g.source for g in sonic.CROSSWIND_SONICS.values())


def _run(data: dict[str, np.ndarray], model: str, manufacturer: str = "metek", **options: Any) -> FluxResult:
    md = metadata(columns=SONIC_COLUMNS, sonic={"height": 30.0, "manufacturer": manufacturer, "model": model})
    base = {"rot_meth": "none", "tlag_meth": "none", "qc_meth": "none"}
    return process_period(period({k: a.copy() for k, a in data.items()}, md), settings_of(**{**base, **options}))


def test_a_usa1_gets_the_true_temperature_back_from_its_three_paths() -> None:
    """Synthetic truth with the USA-1 geometry (paths at 45°): the per-path temperatures are made from a known true
    Ts and the wind; with w = 0 the engine's correction recovers the true mean and w'Ts' exactly; with the real w
    what is left is the w² term EddyPro leaves out, ⟨w²⟩·cos²45°/403."""
    x = correlated(COV, seed=11) + np.array([3.0, 1.0, 0.0, 290.0])
    u, v, w, true_ts = x[:, 0], x[:, 1], x[:, 2], x[:, 3]
    paths = sonic.symmetric_paths(45.0, azimuth0_deg=17.0)  # the azimuth of the first path does not matter
    flat = {"u": u, "v": v, "w": np.zeros_like(w), "ts": per_path_sonic_temperature(true_ts, u, v, 0 * w, paths)}
    truth = _run({**flat, "ts": true_ts}, "usa1_standard")
    r = _run(flat, "usa1_standard", cross_wind=True)
    assert r.get("T_SONIC") == pytest.approx(truth.get("T_SONIC"), rel=1e-12)
    assert r.get("U_UNROT") == pytest.approx(3.0, abs=0.05)
    assert any("crosswind" in x for x in r.reasons)
    measured = {"u": u, "v": v, "w": w, "ts": per_path_sonic_temperature(true_ts, u, v, w, paths)}
    full = _run(measured, "usa1_standard", cross_wind=True)
    ref = _run({**measured, "ts": true_ts}, "usa1_standard")
    left = float(np.mean(w * w)) * math.cos(math.radians(45.0)) ** 2 / 403.0
    assert ref.get("T_SONIC") - full.get("T_SONIC") == pytest.approx(left, rel=1e-6)
    uncorrected = _run(measured, "usa1_standard")
    assert abs(uncorrected.get("T_SONIC") - ref.get("T_SONIC")) > 20 * left


@pytest.mark.parametrize("model", ["r3_50_1", "r3_100_1", "r2_1"])
def test_a_gill_r3_or_r2_is_corrected_with_its_45_degree_paths(model: str) -> None:
    x = correlated(COV, seed=12) + np.array([2.5, -1.5, 0.0, 288.0])
    data = {"u": x[:, 0], "v": x[:, 1], "w": np.zeros(len(x)), "ts": x[:, 3]}
    plain = _run(data, model, "gill")
    corrected = _run(data, model, "gill", cross_wind=True)
    added = 0.75 * float(np.mean(x[:, 0] ** 2 + x[:, 1] ** 2)) / 403.0  # 1 − ½·cos²45° = 3/4, no cross term
    assert corrected.get("T_SONIC") - plain.get("T_SONIC") == pytest.approx(added, rel=1e-6)


@pytest.mark.parametrize("model", ["hs_50_1", "hs_100_1", "r3a_100_1"])
def test_a_gill_sonic_of_liu_table_1_without_a_built_in_geometry_is_still_refused(model: str) -> None:
    md = metadata(columns=SONIC_COLUMNS, sonic={"height": 30.0, "manufacturer": "gill", "model": model})
    with pytest.raises(ConfigurationError, match=rf"cross_wind: .*{model}.*Liu et al. 2001, Table 1.*"
                                                 r"path_elevation_deg.*switch cross_wind off"):
        check_configuration(md, settings_of(cross_wind=True))


def test_an_unknown_sonic_is_still_refused_without_its_inclination() -> None:
    md = metadata(columns=SONIC_COLUMNS, sonic={"height": 30.0, "model": "generic_sonic"})
    with pytest.raises(ConfigurationError, match=r"cross_wind: .*generic_sonic.* not known; set .*path_elevation_deg"):
        check_configuration(md, settings_of(cross_wind=True))


def test_the_de_hoh_project_with_cross_wind_reaches_the_engine_which_refuses_its_hs50() -> None:
    """cross_wind = 1 in R1's own project file is honoured by the reader; the engine then refuses DE-HoH's Gill
    HS-50 (geometry not built in), and accepts the same project for a USA-1 and with the inclination given."""
    flat = read_project((R1 / "eddypro_settings_echo.eddypro").read_text())
    text = ";EDDYPRO_PROCESSING\n[Project]\n" + "".join(f"{k}={v}\n" for k, v in {**flat, "cross_wind": "1"}.items())
    try:
        s = ProcessingSettings.model_validate(settings_from_project(text))
    except ConfigError as exc:  # pragma: no cover - a refusal here is the failure this test exists for
        pytest.fail(f"cross_wind = 1 refused by the reader: {exc}")
    assert s.cross_wind
    md = load_metadata(R1 / "input_DE-HoH.metadata")
    assert md.sonic.model == "hs_50_1"
    with pytest.raises(ConfigurationError, match=r"cross_wind: .*hs_50_1"):
        check_configuration(md, s)
    check_configuration(md.model_copy(update={"sonic": md.sonic.model_copy(update={"model": "usa1_standard",
                                                                                    "manufacturer": "metek"})}), s)
    check_configuration(md.model_copy(update={"sonic": md.sonic.model_copy(update={"path_elevation_deg": 45.0})}), s)
