"""Options EddyPro applies to some instruments only (gill_wm_wboost, flow_distortion, bu_corr): applied, skipped with
the reason, or refused, as EddyPro 7's Help documents it (gateway.flux.ec.instruments; docs/flux-ec.md,
"Options EddyPro applies to some instruments only").

The DE-HoH reference runs (Gill HS-50, LI-7200) with these options switched on must give EddyPro's published numbers
unchanged (tests/flux/test_ec_cli.py runs R1 and V from their project files with them); here: the decisions, the
w-boost arithmetic on synthetic WindMaster data (expected values derived from the arrays with numpy), and the
refusals where EddyPro would apply a correction this engine does not have.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from gateway.flux.ec import instruments, sonic
from gateway.flux.ec.engine import ConfigurationError, check_configuration, instrument_notes, process_period
from gateway.flux.ec.settings import NotAvailableError, ProcessingSettings, SiteMetadata
from gateway.flux.files import load_metadata
from gateway.flux.metadata import site_metadata_from_headers

from .conftest import EC_RAW
from .synthetic import metadata, period, settings_of
from .test_ec_synthetic import PLAIN, streams

R1_METADATA = EC_RAW / "eddypro" / "R1_dr_ba_maxcov_wpl_30min" / "input_DE-HoH.metadata"


def windmaster(sw_version: str, model: str = "wm_1", manufacturer: str = "gill") -> SiteMetadata:
    return metadata(sonic={"height": 30.0, "manufacturer": manufacturer, "model": model, "sw_version": sw_version})


# --- the decisions ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("model", "version", "applies"), [
    ("wm_1", "2329.602.01", True), ("wmpro_1", "2329.699.99", True), ("WindMaster", "2329.0.0", True),
    ("wm_1", "2329.700.00", False), ("wm_1", "2329.701.02", False),   # the bug fixed from x = 700 on
    ("wm_1", "", False), ("wm_1", "2329-602-01", False), ("wm_1", "2330.602.01", False), ("wm_1", "2329.602", False),
    ("hs_50_1", "2329.602.01", False), ("r3_50_1", "2329.602.01", False), ("csat3_1", "2329.602.01", False),
])
def test_wboost_applies_only_to_a_windmaster_with_firmware_2329_x_y_below_700(model: str, version: str,
                                                                            applies: bool) -> None:
    d = instruments.wboost("gill" if not model.startswith("csat") else "csi", model, version)
    assert d.applies is applies, d.why
    assert d.why.startswith("applied" if applies else "not applied")


@pytest.mark.parametrize(("version", "affected"), [
    ("2329.0602.01", True), ("2329." + "9" * 5000 + ".1", False), ("2329.1000.1", False),
    ("2329.\u0667\u0660\u0660.01", None),  # Arabic-Indic digits are no firmware version
])
def test_firmware_versions_from_a_hostile_metadata_file_are_judged_without_error(version: str,
                                                                                 affected: bool | None) -> None:
    assert instruments.wboost_firmware(version) is affected


def test_a_windmaster_of_another_maker_is_not_one() -> None:
    assert instruments.wboost("metek", "wm_1", "2329.602.01").applies is False


@pytest.mark.parametrize(("manufacturer", "model", "applies"), [
    ("gill", "hs_50_1", False), ("gill", "hs_100_1", False), ("", "HS-50", False),      # yoke-mounted Gill HS
    ("csi", "csat3_1", False), ("metek", "usa1_1", False), ("", "81000_1", False),     # other makers
    ("gill", "r2_1", True), ("gill", "r3_50_1", True), ("gill", "r3a_100_1", True), ("gill", "wm_1", True),
    ("gill", "wmpro_1", True), ("", "WindMaster", True),
    ("", "", None), ("gill", "windobserver_1", None), ("", "mystery_1", None),
])
def test_angle_of_attack_applicability_by_sonic_model(manufacturer: str, model: str, applies: bool | None) -> None:
    for method in ("nakai_2006", "nakai_shimoyama_2012", "automatic"):
        assert instruments.angle_of_attack(manufacturer, model, method).applies is applies


@pytest.mark.parametrize(("model", "path_type", "densities", "applies"), [
    ("li7200_1", "closed", [], False), ("li7200rs_1", "closed", ["co2", "h2o"], False),
    ("", "closed", [], False), ("", None, [], False),
    ("li7500_1", "open", [], False),                      # mixing ratios: no density terms to correct
    ("li7500_1", "open", ["co2", "h2o"], True), ("LI-7500RS", "open", ["co2"], True),
    ("", "open", ["co2"], None),
])
def test_burba_correction_applies_only_to_li7500_molar_densities(model: str, path_type: str | None,
                                                                   densities: list[str], applies: bool | None) -> None:
    assert instruments.off_season_uptake(model, path_type, densities).applies is applies


# --- the w-boost fix through the engine ------------------------------------------------------------------------

def test_wboost_multiplies_positive_and_negative_w_by_their_factors() -> None:
    w = np.array([1.0, -1.0, 0.0, math.nan, 2.5, -0.4])
    out = sonic.wboost_corrected_w(w)
    assert out[[0, 1, 2, 4, 5]].tolist() == pytest.approx([1.166, -1.289, 0.0, 2.915, -0.5156], rel=1e-12)
    assert math.isnan(out[3])


def _expected_cov(data: dict[str, np.ndarray], boosted: bool) -> tuple[float, float]:
    """w'Ts' and u'w' (population covariances) of the arrays, w boosted by hand when ``boosted``."""
    w = data["w"]
    if boosted:
        w = np.where(w > 0, 1.166 * w, 1.289 * w)
    c = np.cov(np.vstack([data["u"], w, data["ts"]]), bias=True)
    return c[1, 2], c[0, 1]


@pytest.mark.parametrize(("version", "boosted"), [("2329.602.01", True), ("2329.700.05", False), ("", False)])
def test_a_windmaster_period_is_boosted_exactly_when_its_firmware_has_the_bug(version: str, boosted: bool) -> None:
    data = streams()
    r = process_period(period(data, windmaster(version)), PLAIN.model_copy(update={"gill_wm_wboost": True}))
    wts, uw = _expected_cov(data, boosted)
    assert r.status == "ok", r.reasons
    assert r.get("W_T_SONIC_COV") == pytest.approx(wts, rel=1e-9)
    assert r.get("U_W_COV") == pytest.approx(uw, rel=1e-9)
    # the two cases really differ by more than the tolerance (w'Ts' grows by 17-29 % when boosted)
    other, _ = _expected_cov(data, not boosted)
    assert abs(r.get("W_T_SONIC_COV") / other - 1) > 0.1
    (note,) = [x for x in r.reasons if x.startswith("gill_wm_wboost = 1: ")]
    assert note.startswith("gill_wm_wboost = 1: applied" if boosted else "gill_wm_wboost = 1: not applied")
    if not boosted:
        assert ("firmware version is not given" if not version else "bug fixed") in note


def test_wboost_off_leaves_a_buggy_windmaster_alone_and_says_nothing() -> None:
    data = streams()
    r = process_period(period(data, windmaster("2329.602.01")), PLAIN)
    assert r.get("W_T_SONIC_COV") == pytest.approx(_expected_cov(data, False)[0], rel=1e-9)
    assert not any("wboost" in x for x in r.reasons)


def test_wboost_acts_before_the_absolute_limits() -> None:
    """EddyPro applies the fix "at the raw data level, before any other operation": a w of -4.5 m s-1 becomes
    -5.8 and falls outside al_w_max = 5, so it is removed; without the fix it stays."""
    data = streams()
    data["w"][100] = -4.5
    s = PLAIN.model_copy(update={"filter_al": True, "gill_wm_wboost": True})
    boosted = process_period(period(data, windmaster("2329.602.01")), s)
    plain = process_period(period(data, windmaster("2329.800.01")), s)
    assert any("w: 1 records outside absolute limits" in x for x in boosted.reasons), boosted.reasons
    assert not any("w: " in x and "absolute limits" in x for x in plain.reasons), plain.reasons


def test_the_eddypro_metadata_carries_the_firmware_version(tmp_path: Path) -> None:
    text = R1_METADATA.read_text()
    assert "instr_1_sw_version=\n" in text  # DE-HoH's HS-50 has none, and needs none
    assert load_metadata(R1_METADATA).sonic.sw_version == ""
    path = tmp_path / "wm.metadata"
    path.write_text(text.replace("instr_1_model=hs_50_1", "instr_1_model=wm_1")
                    .replace("instr_1_sw_version=\n", "instr_1_sw_version=2329.602.01\n"))
    md = load_metadata(path)
    assert (md.sonic.model, md.sonic.sw_version) == ("wm_1", "2329.602.01")
    assert instrument_notes(md, settings_of(gill_wm_wboost=True))[0].startswith("gill_wm_wboost = 1: applied")
    s = ProcessingSettings()
    assert s.settings_hash(md) != s.settings_hash(load_metadata(R1_METADATA))


# --- refused where EddyPro would apply what this engine does not have ------------------------------------------

@pytest.mark.parametrize("model", ["r3_50_1", "wm_1", "r2_1"])
@pytest.mark.parametrize(("method", "code"), [("nakai_2006", "1"), ("nakai_shimoyama_2012", "2"),
                                             ("automatic", "3")])
def test_angle_of_attack_is_refused_for_the_sonics_it_applies_to(model: str, method: str, code: str) -> None:
    md = metadata(sonic={"height": 30.0, "manufacturer": "gill", "model": model})
    with pytest.raises(NotAvailableError, match=rf"^flow_distortion = {code}: .*{model}.*set flow_distortion = 0"):
        check_configuration(md, settings_of(flow_distortion=method))


def test_angle_of_attack_with_no_sonic_model_cannot_be_decided() -> None:
    with pytest.raises(ConfigurationError, match=r"^flow_distortion = 1: .*give the instrument's model"):
        check_configuration(metadata(), settings_of(flow_distortion="nakai_2006"))


def test_angle_of_attack_for_an_hs50_is_accepted_without_effect_and_said_so() -> None:
    md = metadata(sonic={"height": 30.0, "manufacturer": "gill", "model": "hs_50_1"})
    data = streams()
    on = process_period(period(data, md), PLAIN.model_copy(update={"flow_distortion": "nakai_shimoyama_2012"}))
    off = process_period(period(data, md), PLAIN)
    assert on.values == off.values
    assert [x for x in on.reasons if x not in off.reasons] == [
        "flow_distortion = 2: not applied: the correction (nakai_shimoyama_2012) is not applicable to the "
        "yoke-mounted Gill HS sonic (hs_50_1); EddyPro overrides the selection and proceeds without it"]


def test_burba_correction_is_refused_for_li7500_molar_densities() -> None:
    cols = [{"index": 1, "variable": "u"}, {"index": 2, "variable": "v"}, {"index": 3, "variable": "w"},
            {"index": 4, "variable": "ts"},
            {"index": 5, "variable": "co2", "measure_type": "molar_density", "max_timelag": 1},
            {"index": 6, "variable": "h2o", "measure_type": "molar_density", "max_timelag": 1}]
    md = metadata(cols, analyzer={"model": "li7500_1", "path_type": "open"})
    with pytest.raises(NotAvailableError, match=r"^bu_corr = 1: .*li7500_1.*co2, h2o.*set bu_corr = 0"):
        check_configuration(md, settings_of(bu_corr=True))
    closed = metadata(analyzer={"model": "li7200_1", "path_type": "closed"})
    check_configuration(closed, settings_of(bu_corr=True))
    assert instrument_notes(closed, settings_of(bu_corr=True)) == [
        "bu_corr = 1: not applied: the correction is for the LI-7500 only; the analyser is li7200_1 (closed path)"]


def test_options_off_add_no_reason_and_options_on_change_the_hash() -> None:
    md = metadata()
    s = settings_of()
    assert instrument_notes(md, s) == []
    for option in ({"bu_corr": True}, {"gill_wm_wboost": True}, {"flow_distortion": "nakai_2006"}):
        assert s.settings_hash(md) != settings_of(**option).settings_hash(md), option


def test_a_station_windmaster_gets_its_firmware_from_the_site_facts_and_the_rest_from_its_header() -> None:
    """On the station (and in a central recompute) the sonic's model, height and north offset come from the archive
    header (model = the driver's instrument, "WindMaster"); only the firmware needs giving: `sonic: {sw_version}`."""
    header = {"site": "s", "frequency_hz": 20.0,
              "instrument": {"driver": "windmaster", "model": "WindMaster", "height_m": 25.0, "north_offset_deg": 12}}
    md = site_metadata_from_headers({"altitude": 100, "latitude": 50, "sonic": {"sw_version": "2329.602.01"}},
                                    header, None)
    assert (md.sonic.model, md.sonic.height, md.sonic.north_offset, md.sonic.sw_version) == (
        "WindMaster", 25.0, 12.0, "2329.602.01")
    assert instrument_notes(md, settings_of(gill_wm_wboost=True))[0].startswith("gill_wm_wboost = 1: applied")
    plain = site_metadata_from_headers({"altitude": 100, "latitude": 50}, header, None)
    assert instrument_notes(plain, settings_of(gill_wm_wboost=True))[0].startswith(
        "gill_wm_wboost = 1: not applied: the WindMaster's firmware version is not given")


def test_the_windmaster_driver_s_firmware_reaches_the_metadata_through_the_archive_header() -> None:
    """The sensor config's `firmware` is in the archive header the station and a central recompute read."""
    from drivers.windmaster.driver import WindMasterConfig, WindMasterDriver
    from gateway.edge.fluxrunner import instrument_header

    config = WindMasterConfig(name="sonic", port="/dev/null", frequency_hz=20.0, height_m=25.0,
                              firmware="2329.602.01")
    header = instrument_header("site", "station", WindMasterDriver, config)
    md = site_metadata_from_headers({"altitude": 100, "latitude": 50}, header, None)
    assert (md.sonic.model, md.sonic.sw_version) == ("WindMaster", "2329.602.01")
    assert instrument_notes(md, settings_of(gill_wm_wboost=True))[0].startswith("gill_wm_wboost = 1: applied")


# --- LI-7200 diagnostic words ----------------------------------------------------------------------------------

def test_li7200_word_8191_is_all_ok_at_full_signal() -> None:
    """8191 = 0b1_1111_1111_1111: every status bit 1 (OK), bits 0-3 = 15 → 100 % (LI-COR, "Interpreting Diagnostic
    Values", Table 2)."""
    out = instruments.li7200_diagnostics(np.full(10, 8191.0))
    assert {k: v for k, v in out.items() if k != "INST_LI7200_AGC_OR_RSSI"} == {
        name: 0.0 for _, name in instruments.LI7200_STATUS_BITS}
    assert out["INST_LI7200_AGC_OR_RSSI"] == pytest.approx(100.0)


@pytest.mark.parametrize("bit, name", [(12, "INST_LI7200_HEAD_DETECT"), (11, "INST_LI7200_T_OUT"),
                                       (10, "INST_LI7200_T_IN"), (9, "INST_LI7200_AUX_IN"),
                                       (8, "INST_LI7200_DELTA_P"), (7, "INST_LI7200_CHOPPER"),
                                       (6, "INST_LI7200_DETECTOR"), (5, "INST_LI7200_PLL"), (4, "INST_LI7200_SYNC")])
def test_li7200_each_cleared_bit_counts_under_its_own_name(bit: int, name: str) -> None:
    words = np.array([8191.0, 8191.0 - 2**bit, 8191.0 - 2**bit, 8191.0])
    out = instruments.li7200_diagnostics(words)
    assert out[name] == 2.0
    assert all(v == 0.0 for k, v in out.items() if k not in (name, "INST_LI7200_AGC_OR_RSSI"))
    assert out["INST_LI7200_AGC_OR_RSSI"] == pytest.approx(100.0)


def test_li7200_signal_strength_is_the_mean_of_bits_0_to_3() -> None:
    """8190 (bits 0-3 = 14) and 8176 (bits 0-3 = 0): mean 7 units of 100/15 %."""
    out = instruments.li7200_diagnostics(np.array([8190.0, 8176.0]))
    assert out["INST_LI7200_AGC_OR_RSSI"] == pytest.approx(7 * 100.0 / 15.0)
    assert out["INST_LI7200_SYNC"] == 0.0


def test_li7200_records_without_a_word_are_left_out() -> None:
    out = instruments.li7200_diagnostics(np.array([math.nan, -1.0, 8191.5, 70000.0, 4095.0]))
    assert out["INST_LI7200_HEAD_DETECT"] == 1.0  # only 4095 (head bit 12 clear) is a word
    assert out["INST_LI7200_AGC_OR_RSSI"] == pytest.approx(100.0)
    assert instruments.li7200_diagnostics(np.array([math.nan, math.nan])) == {}
