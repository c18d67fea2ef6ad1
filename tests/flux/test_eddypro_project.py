"""Every key of a full EddyPro project file is honoured, refused with its name, or proven to change nothing.

The files walked are the complete `.eddypro` settings echoes EddyPro 7.0.9 wrote for the vendored DE-HoH runs
(tests/data/ec-raw/README.md gives their source): R1 (no spectral corrections, no despiking) and V (ICOS-like:
planar fit, despiking, Fratini spectral corrections, random error), 390-odd keys each.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest

from gateway.configfile import ConfigError
from gateway.flux.ec.settings import ProcessingSettings, StatisticalTests
from gateway.flux.eddypro import RULES, read_project, rule_for, settings_from_project

from .conftest import EC_RAW

PROJECTS = {run: EC_RAW / "eddypro" / run / "eddypro_settings_echo.eddypro"
            for run in ("R1_dr_ba_maxcov_wpl_30min", "V_icoslike_pf_fratini_30min")}


def render(flat: dict[str, str]) -> str:
    """A project file with the given keys (one section: the loader flattens sections anyway)."""
    return ";EDDYPRO_PROCESSING\n[Project]\n" + "".join(f"{k}={v}\n" for k, v in flat.items())


def settings(flat: dict[str, str]) -> dict[str, Any]:
    return ProcessingSettings.model_validate(settings_from_project(render(flat))).model_dump(mode="json")


@functools.cache
def _base_settings(items: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """`settings` of a project's keys with a rule's context: the same for every key of a run whose rule has that
    context (about half the 745 cases' CPU was this one computation, repeated)."""
    return settings(dict(items))


@functools.cache
def _project(run: str) -> dict[str, str]:
    return read_project(PROJECTS[run].read_text())


def _cases() -> list[tuple[str, str]]:
    out = []
    for run, path in PROJECTS.items():
        out += [(run, key) for key in read_project(path.read_text())]
    return out


@pytest.mark.parametrize(("run", "key"), _cases())
def test_every_key_is_honoured_refused_or_without_effect(run: str, key: str) -> None:
    flat = _project(run)
    rule = rule_for(key)
    assert rule is not None, f"{key}: no rule"
    base = {**flat, **dict(rule.context)}
    current = base[key].strip()
    if rule.kind == "honoured":
        probe = next((p for p in rule.probe if p != current), None)
        assert probe is not None, f"{key}: no probe value differing from {current!r}"
        assert settings({**base, key: probe}) != _base_settings(tuple(base.items())), f"{key} = {probe} changed nothing"
    elif rule.kind == "no_effect":
        other = next((p for p in (*rule.allowed, "7") if p != current and (not rule.allowed or p in rule.allowed
                                                                           or not rule.active(base))), None)
        if other is not None:
            assert settings({**base, key: other}) == _base_settings(tuple(base.items())), \
                f"{key} = {other} changed the settings"
    else:
        assert rule.kind == "refused" and rule.allowed, key
    if rule.allowed and rule.active(base):
        with pytest.raises(ConfigError, match=rf"^{key} = 7: "):
            settings({**base, key: "7"})


def test_the_v_project_gives_the_settings_of_run_v() -> None:
    s = ProcessingSettings.model_validate(settings_from_project(PROJECTS["V_icoslike_pf_fratini_30min"].read_text()))
    assert (s.rot_meth, s.tlag_meth, s.hf_meth, s.lf_meth) == ("planar_fit", "covariance_maximization_with_default",
                                                                 "fratini_2012", "moncrieff_2004")
    assert (s.despike, s.despike_replace, s.filter_al, s.wpl_meth) == ("vickers_mahrt_1997", True, False, False)
    assert (s.random_error, s.ru_its_meth, s.ru_tlag_max) == ("finkelstein_sims_2001", "whole_correlation_period", 20)
    assert (s.planar_fit_file, s.spectral_assessment_file) == ("DATA_DIR/planar_fit.txt",
                                                                "DATA_DIR/spectral_assessment.txt")
    assert not s.cross_wind and not s.pf_subtract_b0


@pytest.mark.parametrize(("key", "value", "words", "context"), [
    ("run_mode", "1", "express", {}), ("wdf_apply", "1", "wind sectors", {"wdf_sect_1_start": "90"}),
    ("use_biom", "1", "biomet", {}), ("flag1_column", "3", "custom flag", {}),
    ("pf_sect_1_exclude", "1", "sector", {"rot_meth": "3", "pf_mode": "1"}), ("use_dyn_md_file", "1", "metadata", {}),
])
def test_refusals_name_the_key_and_the_way_out(key: str, value: str, words: str, context: dict[str, str]) -> None:
    flat = read_project(PROJECTS["R1_dr_ba_maxcov_wpl_30min"].read_text())
    with pytest.raises(ConfigError, match=rf"^{key} = {value}: .*{words}.*(set|use) "):
        settings_from_project(render({**flat, **context, key: value}))


@pytest.mark.parametrize(("key", "value"), [("pf_sect_1_exclude", "1"), ("pf_fix", "1"), ("wdf_apply", "1")])
def test_options_of_an_option_that_is_off_are_accepted(key: str, value: str) -> None:
    """EddyPro uses a planar-fit sector's exclusion and pf_fix only with a planar fit, and a wind-direction filter
    without sectors excludes nothing: on R1 (double rotation, no sectors) they change nothing (they were refused)."""
    flat = read_project(PROJECTS["R1_dr_ba_maxcov_wpl_30min"].read_text())
    assert flat["rot_meth"] == "1" and not any(k.startswith("wdf_") and k != "wdf_apply" for k in flat)
    assert settings(flat) == settings({**flat, key: value})


def test_the_statistical_tests_are_honoured_with_their_parameters() -> None:
    """test_ar..test_ns were refused; now each switch and the parameters of a switched-on test reach the settings,
    and a switched-off test's parameters are not read (as EddyPro)."""
    flat = read_project(PROJECTS["R1_dr_ba_maxcov_wpl_30min"].read_text())
    on = {f"test_{t}": "1" for t in ("al", "ar", "do", "sk", "ds", "tl", "aa", "ns")}
    s = ProcessingSettings.model_validate(settings_from_project(render({**flat, **on, "ds_hf_h2o": "5.5",
                                                                        "tl_def_co2": "0.15", "ar_bins": "80"})))
    t = s.statistical_tests
    assert all(getattr(t, k) for k in on)
    assert (t.ds_hf_h2o, t.tl_def_co2, t.ar_bins) == (5.5, 0.15, 80)
    assert s.tl_def_co2 is None  # the processing's default lag is not the test's expected lag
    off = ProcessingSettings.model_validate(settings_from_project(render({**flat, "ds_hf_h2o": "5.5"})))
    assert off.statistical_tests == StatisticalTests()
    assert off.settings_hash() == ProcessingSettings.model_validate(settings_from_project(render(flat))).settings_hash()


def test_a_default_project_with_an_in_situ_assessment_is_accepted_with_its_flag_selection() -> None:
    """EddyPro's default project has sa_use_vm_flags = 1 and sa_use_foken_low = 1 (R1's echo keeps its defaults);
    with an in-situ assessment (hf_meth 2-4, sa_mode = 1) it was refused, now the selection reaches the settings.
    Without an in-situ assessment the keys are inactive; switched on, they change the settings' hash."""
    flat = read_project(PROJECTS["R1_dr_ba_maxcov_wpl_30min"].read_text())
    assert (flat["sa_use_vm_flags"], flat["sa_use_foken_low"], flat["sa_use_foken_mid"]) == ("1", "1", "0")
    s = ProcessingSettings.model_validate(settings_from_project(render({**flat, "hf_meth": "4", "sa_mode": "1"})))
    assert (s.sa_use_vm_flags, s.sa_use_foken_low, s.sa_use_foken_mid) == (True, True, False)
    plain = ProcessingSettings.model_validate(settings_from_project(render(flat)))
    assert not (plain.sa_use_vm_flags or plain.sa_use_foken_low or plain.sa_use_foken_mid)
    assert s.settings_hash() != s.model_copy(update={"sa_use_vm_flags": False}).settings_hash()
    with pytest.raises(ConfigError, match=r"^sa_use_foken_mid = 2: "):
        settings_from_project(render({**flat, "hf_meth": "4", "sa_mode": "1", "sa_use_foken_mid": "2"}))


def test_an_unknown_key_is_refused() -> None:
    flat = read_project(PROJECTS["R1_dr_ba_maxcov_wpl_30min"].read_text())
    with pytest.raises(ConfigError, match=r"^brand_new_option = 1: a project-file key this engine does not know"):
        settings_from_project(render({**flat, "brand_new_option": "1"}))


def test_every_rule_is_used_by_a_full_project_or_documented() -> None:
    """No dead rules: each matches a key of the walked files, or one of EddyPro's keys those files do not have."""
    keys = set()
    for path in PROJECTS.values():
        keys |= set(read_project(path.read_text()))
    keys |= {"out_ghg_eu", "out_amflux", "nfiles", "to_mixratio", "col_diag_anem", "f10_co2_trshld",
             "sa_min_co2", "pf_sect_1_start", "pf_sect_1_width", "pf_sect_1_exclude", "pf_num_sect",
             "wdf_sect_1_start", "flag11_column", "sa_co2_g2_start"}
    unused = [r.pattern for r in RULES if not any(r.matches(k) for k in keys)]
    assert not unused, unused


@pytest.mark.parametrize(("key", "value", "setting", "expected"), [
    ("gill_wm_wboost", "1", "gill_wm_wboost", True), ("bu_corr", "1", "bu_corr", True),
    ("flow_distortion", "1", "flow_distortion", "nakai_2006"),
    ("flow_distortion", "2", "flow_distortion", "nakai_shimoyama_2012"),
    ("flow_distortion", "3", "flow_distortion", "automatic"),
])
def test_options_eddypro_applies_to_some_instruments_only_reach_the_settings(key: str, value: str, setting: str,
                                                                            expected: object) -> None:
    """They were refused outright; EddyPro decides from the instruments whether they apply (gateway.flux.ec.
    instruments), so the project file only says they were selected and the engine decides as EddyPro."""
    flat = read_project(PROJECTS["R1_dr_ba_maxcov_wpl_30min"].read_text())
    assert flat[key] == "0"
    s = ProcessingSettings.model_validate(settings_from_project(render({**flat, key: value})))
    assert getattr(s, setting) == expected
    plain = ProcessingSettings.model_validate(settings_from_project(render(flat)))
    assert getattr(plain, setting) in (False, "none")


def test_ru_meth_2_selects_mann_lenschow_with_its_time_scale_options() -> None:
    """ru_meth = 2 (Mann & Lenschow 1994) was refused; it now reaches the settings with the integral-time-scale keys
    read as for ru_meth = 1, and V's project with it differs from V's own only in the method."""
    flat = _project("V_icoslike_pf_fratini_30min")
    assert flat["ru_meth"] == "1"
    ml = ProcessingSettings.model_validate(settings_from_project(render({**flat, "ru_meth": "2",
                                                                         "ru_its_meth": "0", "ru_tlag_max": "15"})))
    assert (ml.random_error, ml.ru_its_meth, ml.ru_tlag_max) == ("mann_lenschow_1994", "first_crossing_1_over_e", 15)
    fs = settings(flat)
    assert {k: v for k, v in settings({**flat, "ru_meth": "2"}).items() if fs[k] != v} == {
        "random_error": "mann_lenschow_1994"}
    assert settings({**flat, "ru_meth": "0"})["random_error"] == "none"


def test_a_key_given_twice_with_different_values_is_refused_naming_both() -> None:
    """Hostile inputs by hand (docs/reliability.md): configparser kept the last `avrg_len` without a word."""
    text = PROJECTS["R1_dr_ba_maxcov_wpl_30min"].read_text()
    twice = text.replace("avrg_len=30\n", "avrg_len=30\navrg_len=5\n", 1)
    with pytest.raises(ValueError, match=r"key avrg_len of \[RawProcess_Settings\] is given twice with different "
                                         r"values \(line \d+: '30', line \d+: '5'\)"):
        read_project(twice)
    across = render({**read_project(text)}) + "[Other]\navrg_len=5\n"
    with pytest.raises(ValueError, match=r"key avrg_len is given in \[Project\] and \[Other\] with different values"):
        read_project(across)
    assert read_project(text.replace("avrg_len=30\n", "avrg_len=30\navrg_len=30\n", 1)) == read_project(text)
