"""EddyPro project files (`.eddypro`, the EDDYPRO_PROCESSING ini EddyPro 7 writes) as `ProcessingSettings`, with
every key accounted for.

Each key of a project file falls under exactly one rule of :data:`RULES`:

* ``honoured`` — read into `ProcessingSettings` (EddyPro's numeric codes turned into names) and applied by the
  engine or the command; the rule says which setting it becomes;
* ``refused`` — an option this engine does not have: accepted only at the values that switch it off;
* ``no_effect`` — changes no number the engine computes (project bookkeeping, EddyPro's choice of its own output
  files, GUI state, file paths that another option uses, parameters of a refused option); the rule says why.

A rule may list the values it accepts (``allowed``); any other value stops the load with a
:class:`~gateway.configfile.ConfigError` naming the key, its value and what to do. A restriction whose option is
switched off elsewhere (e.g. the planar-fit mode when no planar fit is selected) is inactive, as in EddyPro.

A key that no rule knows is refused too (a newer EddyPro may have added an option this engine cannot judge).
`tests/flux/test_eddypro_project.py` walks every key of a full project file and proves each rule: changing an
honoured key changes the settings, a refused value is refused with the key's name, a no-effect key changes nothing.
"""

from __future__ import annotations

import configparser
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from gateway.configfile import ConfigError
from gateway.flux.ec.settings import EDDYPRO_CODES

Flat = Mapping[str, str]
Kind = Literal["honoured", "refused", "no_effect"]


def _on(key: str, *values: str) -> Callable[[Flat], bool]:
    return lambda flat: flat.get(key, "").strip() in values


def _always(_: Flat) -> bool:
    return True


@dataclass(frozen=True)
class Rule:
    """How the engine treats the keys matching ``pattern`` (a full-match regular expression).

    ``allowed``: the values accepted (stripped text; "" is an empty value; none listed: any value). ``active``:
    when the restriction applies (otherwise the option is inactive and the key has no effect).
    ``why``: what the key does in EddyPro and what happens to it here, shown in refusals and in the docs.
    ``probe``/``context``: for the key walk in the tests — values of an honoured key (the first that differs from
    the file's is used) and the other settings under which the key is active."""

    pattern: str
    kind: Kind
    why: str
    allowed: tuple[str, ...] = ()
    active: Callable[[Flat], bool] = _always
    probe: tuple[str, ...] = ()
    context: tuple[tuple[str, str], ...] = ()

    def matches(self, key: str) -> bool:
        return re.fullmatch(self.pattern, key) is not None


_OUTPUT = "selects which of EddyPro's own output files or columns are written; the numbers are the same"
_BOOK = "project bookkeeping (names, dates, versions); no effect on the numbers"
_GUI = "EddyPro GUI state (what files it has seen); no effect on the numbers"
_PLANAR_FIT = _on("rot_meth", "3", "4")
_SA_CONTEXT = (("hf_meth", "4"), ("sa_mode", "1"), ("sa_use_vm_flags", "0"), ("sa_use_foken_low", "0"),
               ("sa_use_foken_mid", "0"))


def _IN_SITU_SA(flat: Flat) -> bool:
    return flat.get("hf_meth", "").strip() in ("2", "3", "4") and flat.get("sa_mode", "").strip() == "1"

_TLAG_OPT = _on("tlag_meth", "4")


def _ENGINE_PLANAR_FIT(flat: Flat) -> bool:
    return _PLANAR_FIT(flat) and flat.get("pf_mode", "").strip() == "1"


def _WDF_SECTORS(flat: Flat) -> bool:
    """The wind-direction filter has sectors to exclude (any wdf_ key besides wdf_apply with a value)."""
    return any(k.startswith("wdf_") and k != "wdf_apply" and v.strip() for k, v in flat.items())

RULES: tuple[Rule, ...] = (
    # [Project]
    Rule(r"creation_date|last_change_date|file_name|project_title|project_id|sw_version|ini_version", "no_effect",
         _BOOK),
    Rule(r"run_mode", "no_effect", "EddyPro run mode; 0 (advanced) uses the file's settings as read here; 1 "
         "(express) would use EddyPro's built-in express options instead and 2 (metadata retriever) computes no "
         "fluxes: save the project in advanced mode (run_mode = 0)", allowed=("0", "")),
    Rule(r"run_fcc", "refused", "1 asks EddyPro to redo only its flux corrections from an earlier run's results "
         "(ex_file); this engine always processes the raw files: set run_fcc = 0", allowed=("0", "")),
    Rule(r"file_type", "refused", "raw file format; this command reads generic ASCII (1); convert other formats "
         "(0 GHG, 2 TOB1, binary...) to ASCII first", allowed=("1",)),
    Rule(r"file_prototype", "no_effect", "file-name template; the period's time stamp is read from the first "
         "yyyymmddHHMM in each file name given on the command line"),
    Rule(r"use_pfile|proj_file|master_sonic", "no_effect", "which .metadata file and sonic EddyPro uses; here "
         "the metadata come from --metadata, which names the one sonic"),
    Rule(r"use_dyn_md_file", "refused", "1 reads time-varying metadata from dyn_metadata_file; not available: set "
         "use_dyn_md_file = 0 and run each metadata period with its own --metadata", allowed=("0", "")),
    Rule(r"dyn_metadata_file", "no_effect", "path used only with use_dyn_md_file = 1, which is refused"),
    Rule(r"binary_(hnlines|eol|nbytes|little_end)|tob1_format", "no_effect",
         "layout of binary/TOB1 raw files; only ASCII (file_type = 1) is read"),
    Rule(r"col_(co2|h2o|ch4|n2o|int_t_1|int_t_2|int_p|air_t|air_p|cell_t|diag_75|diag_72|diag_77|diag_anem|ts)",
         "no_effect", "column choice among the .metadata's variables; here each variable's column is the one the "
         "--metadata maps, and every mapped variable the engine knows is used"),
    Rule(r"gas_mw|gas_diff", "refused", "molar mass and diffusivity of a 4th gas; no 4th gas is processed: leave "
         "them at -1", allowed=("-1", "-1.0", "-1.0000", "-1.00000", "0", "0.0000", "0.00000", "")),
    Rule(r"out_.*|make_dataset|fix_out_format|err_label|fluxnet_err_label|fluxnet_standardize_biomet|"
         r"sonic_output_rate", "no_effect", _OUTPUT),
    Rule(r"out_path|data_path|recurse", "no_effect", "where EddyPro reads and writes; here the files are named on "
         "the command line (--out)"),
    Rule(r"pr_subset", "honoured", "1: only periods ending within pr_start_date/time .. pr_end_date/time "
         "(settings process_from, process_to)", probe=("1", "0")),
    Rule(r"pr_(start|end)_date", "honoured", "bounds of pr_subset", probe=("2019-07-30", "2019-08-01"),
         context=(("pr_subset", "1"),)),
    Rule(r"pr_(start|end)_time", "honoured", "bounds of pr_subset", probe=("12:00", "13:00"),
         context=(("pr_subset", "1"),)),
    Rule(r"hf_meth", "honoured", "high-frequency spectral correction (settings hf_meth)", probe=("1", "0")),
    Rule(r"lf_meth", "honoured", "low-frequency (high-pass) spectral correction, Moncrieff et al. 2004 "
         "(settings lf_meth)", probe=("1", "0")),
    Rule(r"wpl_meth", "honoured", "Webb et al. 1980 density terms (settings wpl_meth)", probe=("0", "1")),
    Rule(r"foot_meth", "honoured", "footprint model (settings foot_meth)", probe=("1", "0")),
    Rule(r"qc_meth", "honoured", "quality flags (settings qc_meth)", probe=("2", "1")),
    Rule(r"use_biom", "refused", "1 reads slow biomet data (TA, PA, RH, radiation) from files; not read here: set "
         "use_biom = 0 (air_t/air_p columns in the raw file are used when mapped)", allowed=("0", "")),
    Rule(r"biom_.*", "no_effect", "biomet-file layout, used only with use_biom = 1, which is refused"),
    Rule(r"bin_sp_avail|full_sp_avail|files_found", "no_effect", _GUI),
    Rule(r"hf_correct_ghg_ba|hf_correct_ghg_zoh", "no_effect", "corrections for the block averaging and zero-order "
         "hold of LI-COR .ghg raw data; only ASCII raw files (file_type = 1) are read"),
    Rule(r"ru_meth", "honoured", "random uncertainty: 0 none, 1 Finkelstein & Sims 2001, 2 Mann & Lenschow 1994 "
         "(settings random_error)", allowed=("0", "1", "2"), probe=("1", "0", "2")),
    Rule(r"ru_its_meth", "honoured", "integral turbulence scale of the random error (settings ru_its_meth)",
         probe=("0", "2"), context=(("ru_meth", "1"),)),
    Rule(r"ru_tlag_max", "honoured", "maximum correlation period of the random error, s (settings ru_tlag_max)",
         probe=("7.5",), context=(("ru_meth", "1"),)),
    # [FluxCorrection_SpectralAnalysis_General]
    Rule(r"sa_mode", "honoured", "spectral assessment for hf_meth 2-4: 0 from sa_file; 1 assessed in situ over the "
         "periods of the run (settings spectral_assessment_file unset; sa_* keys)", allowed=("0", "1"),
         probe=("1", "0"), context=(*_SA_CONTEXT[2:], ("hf_meth", "4"), ("sa_file",
                                                                             "DATA_DIR/spectral_assessment.txt"))),
    Rule(r"sa_file", "honoured", "EddyPro spectral_assessment.txt for hf_meth 2-4 (settings "
         "spectral_assessment_file)", probe=("other_assessment.txt",), context=(("hf_meth", "4"), ("sa_mode", "0"))),
    Rule(r"sa_f(min|max)_(co2|h2o)|sa_hfn_(co2|h2o)_fmin|sa_min_smpl|sa_min_(un|st)_(ustar|h|le|co2)|"
         r"sa_max_(ustar|h|le|co2)", "honoured", "the in-situ assessment's fitting range, noise frequency, "
         "spectra per class and period selection (settings of the same name)", probe=("0.75", "1.25"),
         context=_SA_CONTEXT),
    Rule(r"sa_subset", "honoured", "1: the in-situ assessment uses only periods ending within sa_start/end_date/"
         "time (settings sa_fit_from, sa_fit_to)", probe=("1", "0"), context=_SA_CONTEXT),
    Rule(r"sa_(start|end)_date", "honoured", "bounds of sa_subset", probe=("2019-07-30", "2019-08-01"),
         context=(*_SA_CONTEXT, ("sa_subset", "1"))),
    Rule(r"sa_(start|end)_time", "honoured", "bounds of sa_subset", probe=("12:00", "13:00"),
         context=(*_SA_CONTEXT, ("sa_subset", "1"))),
    Rule(r"sa_use_(vm_flags|foken_low|foken_mid)", "honoured", "1: the in-situ assessment leaves out the spectra of "
         "periods with a hard statistical (Vickers & Mahrt 1997) flag / a low-quality / a medium-quality Foken flag "
         "(settings of the same name)", allowed=("0", "1", ""), probe=("1", "0"),
         context=(("hf_meth", "4"), ("sa_mode", "1"))),
    Rule(r"sa_co2_g1_start", "refused", "CO2 assessed over all months together (group 1 = months 1-12); other "
         "month groups are not available: set sa_co2_g1_start = 1", allowed=("1",), active=_IN_SITU_SA),
    Rule(r"sa_co2_g1_stop", "refused", "CO2 assessed over all months together; set sa_co2_g1_stop = 12",
         allowed=("12",), active=_IN_SITU_SA),
    Rule(r"sa_co2_g([2-9]|\d\d+)_(start|stop)", "refused", "a second CO2 month group; not available: remove it",
         allowed=("",), active=_IN_SITU_SA),
    Rule(r"sa_f(min|max)_(ch4|gas4)|sa_hfn_(ch4|gas4)_fmin|sa_min_(un|st)_(ch4|gas4)|sa_max_(ch4|gas4)|"
         r"sa_(ch4|gas4)_g\d+_(start|stop)", "no_effect", "in-situ assessment of CH4 / a 4th gas, gases this "
         "command does not process"),
    Rule(r"sa_min_(co2|ch4|gas4|le|h)|f10_.*_trshld", "no_effect", "EddyPro 5's names of the selection thresholds; "
         "EddyPro 7 reads sa_min_un_*/sa_min_st_*, and so does this engine"),
    Rule(r"ex_file|ex_dir|sa_bin_spectra|sa_full_spectra", "no_effect", "EddyPro's intermediate files of an earlier "
         "run; the in-situ assessment here is computed from the raw files themselves"),
    Rule(r"add_sonic_lptf", "no_effect", "adds the sonic's low-pass transfer function to the Ibrom/Fratini gas "
         "factor; EddyPro's V run (add_sonic_lptf = 1) prints the IIR factor alone, which is what is applied"),
    Rule(r"horst_lens", "no_effect", "Horst & Lenschow (2009) separation for in-situ assessment; EddyPro's V run "
         "(horst_lens = 2, hf_meth = 4) prints the IIR factor alone, which is what is applied"),
    # [RawProcess_General]
    Rule(r"use_geo_north", "honoured", "1: wind direction from true north, WD + mag_dec (settings "
         "magnetic_declination)", probe=("1", "0"), context=(("mag_dec", "3.5"),)),
    Rule(r"mag_dec", "honoured", "magnetic declination, degrees east (with use_geo_north = 1)", probe=("2.0", "3.0"),
         context=(("use_geo_north", "1"),)),
    Rule(r"dec_date", "no_effect", "date the declination refers to; the declination is used as given"),
    Rule(r"flag\d+_column", "refused", "custom flag columns that exclude records; not available: set "
         "flagN_column = -1 and remove the records in the raw file", allowed=("-1", "0", "")),
    Rule(r"flag\d+_(threshold|upper)", "no_effect", "parameters of a custom flag, used only with flagN_column, "
         "which is refused"),
    # [RawProcess_Settings]
    Rule(r"max_lack", "honoured", "max missing records, % (settings max_lack)", probe=("5", "10")),
    Rule(r"[uvw]_offset", "honoured", "zero-wind offset subtracted from the raw component, m s-1 (settings "
         "u_offset, v_offset, w_offset)", probe=("0.05", "0")),
    Rule(r"gill_wm_wboost", "honoured", "1 fixes the w-boost bug of Gill WindMaster (Pro) firmware (settings "
         "gill_wm_wboost): applied, as by EddyPro, only to a WindMaster (Pro) whose firmware (instr_1_sw_version) "
         "reads 2329.x.y with x < 700; the reasons say whether it was applied", allowed=("0", "1", ""),
         probe=("1", "0")),
    Rule(r"cross_wind", "honoured", "crosswind correction of Ts, Liu et al. 2001 (settings cross_wind); "
         "needs the sonic's path geometry (built in for the CSAT3 and Metek USA-1; the engine refuses other "
         "sonics unless YAML metadata give sonic.path_elevation_deg)", probe=("1", "0")),
    Rule(r"flow_distortion", "honoured", "angle-of-attack correction for Gill sonics, 1 Nakai et al. 2006, 2 Nakai & "
         "Shimoyama 2012, 3 taken as EddyPro's 'Select automatically' (settings flow_distortion): without effect, as "
         "in EddyPro, for sonics it does not apply to (Gill HS family, other makers; the reasons say so); refused "
         "where EddyPro applies it (Gill R2, R3, WindMaster), which this engine cannot: use 0 there",
         allowed=("0", "1", "2", "3", ""), probe=("1", "0")),
    Rule(r"rot_meth", "honoured", "tilt correction (settings rot_meth)", probe=("2", "1")),
    Rule(r"detrend_meth", "honoured", "detrending (settings detrend_meth)", probe=("1", "0")),
    Rule(r"timeconst", "honoured", "detrending time constant, s (settings timeconst)", probe=("600", "250"),
         context=(("detrend_meth", "1"),)),
    Rule(r"tlag_meth", "honoured", "time-lag method (settings tlag_meth): 0 none, 1 constant, 2 covariance "
         "maximisation with default, 3 covariance maximisation, 4 automatic optimisation over the run's periods",
         allowed=("0", "1", "2", "3", "4"), probe=("1", "2")),
    Rule(r"tap_win|nbins|power_of_two", "no_effect", "tapering window, binning and FFT length of EddyPro's "
         "spectra; they enter only the in-run spectral assessment, which is refused"),
    Rule(r"avrg_len", "honoured", "averaging period, min (settings avrg_len)", probe=("15", "30")),
    Rule(r"nfiles", "no_effect", _GUI),
    Rule(r"to_mixratio", "no_effect", "EddyPro 5's switch to convert closed-path data to mixing ratios; wet mole "
         "fractions are always converted record by record here"),
    Rule(r"filter_sr", "honoured", "with test_sr = 1: 1 replaces spikes, 0 only counts them (settings "
         "despike_replace)", probe=("0", "1"), context=(("test_sr", "1"),)),
    Rule(r"filter_al", "honoured", "with test_al = 1: 1 removes out-of-range records (settings filter_al)",
         probe=("0", "1"), context=(("test_al", "1"),)),
    Rule(r"bu_corr", "honoured", "Burba et al. (2008) off-season uptake correction for LI-7500 molar densities "
         "(settings bu_corr): without effect, as in EddyPro, for other analysers (e.g. the closed-path LI-7200) and "
         "LI-7500 mixing ratios (the reasons say so); refused for LI-7500 molar densities, which this engine cannot "
         "correct: use 0 there", allowed=("0", "1", ""), probe=("1", "0")),
    Rule(r"bu_multi|[lm]_(day|night)_(bot|top|spar)\d?(_gain|_offset)?", "no_effect",
         "parameters of the Burba correction (bu_corr), which has no effect where it does not apply and is refused "
         "where it does"),
    # [RawProcess_Tests]
    Rule(r"test_sr", "honoured", "spike test and removal (with filter_sr; settings despike)", probe=("0", "1")),
    Rule(r"test_al", "honoured", "absolute-limits test: flags records outside the limits (settings "
         "statistical_tests.test_al); with filter_al = 1 they are also removed (settings filter_al)",
         probe=("1", "0")),
    Rule(r"test_(ar|do|sk|ds|tl|aa|ns)", "honoured", "Vickers & Mahrt (1997) statistical flag (amplitude "
         "resolution, dropouts, skewness/kurtosis, discontinuities, time lag, angle of attack, non-steady wind; "
         "settings statistical_tests.test_*): flags only, the fluxes stay the same", probe=("1", "0")),
    # [RawProcess_ParameterSettings]
    Rule(r"sr_num_spk|sr_lim_(u|w|co2|h2o|ch4|n2o|hf)", "honoured", "despiking parameters (settings of the same name)",
         probe=("4", "3"), context=(("test_sr", "1"),)),
    Rule(r"despike_vm", "honoured", "0 Vickers & Mahrt 1997, 1 Mauder et al. 2013 (settings despike)", probe=("1", "0"),
         context=(("test_sr", "1"),)),
    Rule(r"al_(u_max|w_max|tson_min|tson_max|co2_min|co2_max|h2o_min|h2o_max|ch4_min|ch4_max|n2o_min|n2o_max)",
         "honoured",
         "absolute limits (settings absolute_limits)", probe=("0.5", "1.5"),
         context=(("test_al", "1"), ("filter_al", "1"))),
    Rule(r"ar_(lim|bins|hf_lim)", "honoured", "amplitude-resolution test: range in σ, bins, accepted empty bins "
         "% (settings statistical_tests.ar_*)", probe=("50", "60"), context=(("test_ar", "1"),)),
    Rule(r"do_(extlim_dw|hf1_lim|hf2_lim)", "honoured", "dropout test: percentile of the extreme bins, accepted "
         "central and extreme dropouts % (settings statistical_tests.do_*)", probe=("5", "8"),
         context=(("test_do", "1"),)),
    Rule(r"sk_(hf|sf)_(skmin|kumin)", "honoured", "skewness/kurtosis test, lower limits (settings "
         "statistical_tests.sk_*)", probe=("0.5", "-3"), context=(("test_sk", "1"),)),
    Rule(r"sk_(hf|sf)_(skmax|kumax)", "honoured", "skewness/kurtosis test, upper limits (settings "
         "statistical_tests.sk_*)", probe=("9", "10"), context=(("test_sk", "1"),)),
    Rule(r"ds_(hf|sf)_(uv|w|t|co2|h2o|ch4|n2o|var)", "honoured", "discontinuity test: limits of the Haar jump of "
         "the mean (unit of the variable) and of the variance (relative) (settings statistical_tests.ds_*)",
         probe=("7.5", "8.5"), context=(("test_ds", "1"),)),
    Rule(r"tl_(hf|sf)_lim", "honoured", "time-lag test: accepted drop of the covariance at the expected lag, % "
         "(settings statistical_tests.tl_*)", probe=("15", "25"), context=(("test_tl", "1"),)),
    Rule(r"tl_def_(co2|h2o|ch4|n2o)", "honoured", "expected lags of the time-lag *test*, s (settings "
         "statistical_tests.tl_def_*); the default lag of covariance maximisation stays the column's nominal lag",
         probe=("0.3", "0.4"), context=(("test_tl", "1"),)),
    Rule(r"aa_min", "honoured", "angle-of-attack test: lower limit, degrees (settings statistical_tests.aa_min)",
         probe=("-25", "-20"), context=(("test_aa", "1"),)),
    Rule(r"aa_max", "honoured", "angle-of-attack test: upper limit, degrees (settings statistical_tests.aa_max)",
         probe=("25", "20"), context=(("test_aa", "1"),)),
    Rule(r"aa_lim", "honoured", "angle-of-attack test: accepted % of records outside the range (settings "
         "statistical_tests.aa_lim)", probe=("5", "8"), context=(("test_aa", "1"),)),
    Rule(r"ns_hf_lim", "honoured", "steadiness of the horizontal wind: limit of the relative non-stationarity "
         "(settings statistical_tests.ns_hf_lim)", probe=("0.75", "1.0"), context=(("test_ns", "1"),)),
    # [RawProcess_TiltCorrection_Settings]
    Rule(r"pf_mode", "honoured", "planar fit: 0 from pf_file; 1 fitted by the engine over the periods of the run "
         "(settings planar_fit_file unset; pf_w_max, pf_u_min, pf_min_num_per_sec, pf_north_offset)",
         allowed=("0", "1"), probe=("1", "0"), context=(("rot_meth", "3"), ("pf_file", "DATA_DIR/planar_fit.txt"))),
    Rule(r"pf_file", "honoured", "EddyPro planar_fit.txt (settings planar_fit_file)", probe=("other_pf.txt",),
         context=(("rot_meth", "3"), ("pf_mode", "0"))),
    Rule(r"pf_min_num_per_sec", "honoured", "periods a planar-fit sector needs for its own plane (settings "
         "pf_min_num_per_sec)", probe=("12", "20"), context=(("rot_meth", "3"), ("pf_mode", "1"))),
    Rule(r"pf_(w_max|u_min|north_offset)", "honoured", "selection and sectors of the engine's "
         "planar fit (settings of the same name)", probe=("0.75", "1.25"), context=(("rot_meth", "3"),
                                                                                   ("pf_mode", "1"))),
    Rule(r"pf_subset", "honoured", "1: the engine's planar fit uses only periods ending within pf_start/end_date/"
         "time (settings pf_fit_from, pf_fit_to)", probe=("1", "0"), context=(("rot_meth", "3"), ("pf_mode", "1"))),
    Rule(r"pf_(start|end)_date", "honoured", "bounds of pf_subset", probe=("2019-07-30", "2019-08-01"),
         context=(("rot_meth", "3"), ("pf_mode", "1"), ("pf_subset", "1"))),
    Rule(r"pf_(start|end)_time", "honoured", "bounds of pf_subset", probe=("12:00", "13:00"),
         context=(("rot_meth", "3"), ("pf_mode", "1"), ("pf_subset", "1"))),
    Rule(r"pf_sect_\d+_width", "honoured", "widths of the planar-fit sectors: equal widths give settings "
         "pf_sectors = 360/width; unequal widths are not available", probe=("45", "90"),
         context=(("rot_meth", "3"), ("pf_mode", "1"))),
    Rule(r"pf_sect_\d+_exclude", "refused", "1 excludes a wind sector from the engine's planar fit (rot_meth 3/4 "
         "with pf_mode = 1); not available: set it to 0", allowed=("0", ""), active=_ENGINE_PLANAR_FIT,
         context=(("rot_meth", "3"), ("pf_mode", "1"))),
    Rule(r"pf_sect_\d+_start|pf_num_sect", "no_effect", "sector starts and count follow from pf_north_offset and "
         "the widths"),
    Rule(r"pf_fix", "refused", "1 keeps the planar fit of an earlier run fixed (with a planar fit, rot_meth 3/4); "
         "not available: set pf_fix = 0 (give that fit as pf_file instead)", allowed=("0", ""), active=_PLANAR_FIT,
         context=(("rot_meth", "3"),)),
    Rule(r"pf_subtract_b0", "no_effect", "EddyPro 7.0.9 keeps the offset b0 in w whatever this says (run V: "
         "pf_subtract_b0 = 1, w_rot = b0·p33); the offset is kept here too (settings pf_subtract_b0 = false)"),
    # [RawProcess_TimelagOptimization_Settings]
    Rule(r"to_mode", "refused", "automatic time-lag optimisation: 1 optimised over the run's periods (what the "
         "engine does); 0 (from an earlier run's to_file) is not available: use to_mode = 1", allowed=("1",),
         active=_on("tlag_meth", "4"), context=(("tlag_meth", "4"),)),
    Rule(r"to_file", "no_effect", "an earlier optimisation's file, used only with to_mode = 0, which is refused"),
    Rule(r"to_(co2|h2o|ch4|gas4)_(min|max)_lag", "honoured", "the wide window the optimisation searches, s; "
         "-1000.1: the column's window (settings to_*_min/max_lag; gas4 is N2O)", probe=("-0.5", "3.0"),
         context=(("tlag_meth", "4"),)),
    Rule(r"to_(co2_min_flux|le_min_flux|ch4_min_flux|gas4_min_flux|pg_range)", "honoured", "flux thresholds "
         "and plausibility range of the optimisation (settings of the same name; gas4 is N2O)", probe=("2.5", "3.5"),
         context=(("tlag_meth", "4"),)),
    Rule(r"to_h2o_nclass", "honoured", "RH classes of the H2O lag (settings to_h2o_nclass)", probe=("5", "8"),
         context=(("tlag_meth", "4"),)),
    Rule(r"to_subset", "honoured", "1: the optimisation uses only periods ending within to_start/end_date/time "
         "(settings to_fit_from, to_fit_to)", probe=("1", "0"), context=(("tlag_meth", "4"),)),
    Rule(r"to_(start|end)_date", "honoured", "bounds of to_subset", probe=("2019-07-30", "2019-08-01"),
         context=(("tlag_meth", "4"), ("to_subset", "1"))),
    Rule(r"to_(start|end)_time", "honoured", "bounds of to_subset", probe=("12:00", "13:00"),
         context=(("tlag_meth", "4"), ("to_subset", "1"))),
    # [RawProcess_BiometMeasurements], [RawProcess_WindDirectionFilter]
    Rule(r"wdf_apply", "refused", "1 excludes wind sectors (wdf_sect_*); not available: set wdf_apply = 0 and "
         "filter the results by WD (with no sector given it excludes nothing and is accepted)", allowed=("0", ""),
         active=_WDF_SECTORS, context=(("wdf_sect_1_start", "90"),)),
    Rule(r"wdf_.*", "no_effect", "sectors of the wind-direction filter (wdf_apply), which is refused when it has "
         "sectors"),
)


def rule_for(key: str) -> Rule | None:
    """The rule of a project-file key (lower case), or None."""
    for rule in RULES:
        if rule.matches(key):
            return rule
    return None


def refuse_conflicting_keys(text: str) -> None:
    """ValueError naming the key and both lines when an INI text (`.eddypro`, `.metadata`) gives one key of one
    section twice with different values: configparser (strict=False, as these files are read) silently keeps the
    last, so `altitude=100` then `altitude=2000` was a site at 2000 m without a word. The same value twice is
    harmless and passes; continuation lines (indented) are not keys."""
    section = ""
    seen: dict[tuple[str, str], tuple[int, str]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;" or line[0] in " \t":
            continue
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1].strip()
            continue
        key, equals, value = stripped.partition("=")
        if not equals:
            continue
        name = (section, key.strip().lower())
        first = seen.setdefault(name, (number, value.strip()))
        if first[1] != value.strip():
            raise ValueError(f"key {key.strip()} of [{section}] is given twice with different values (line "
                             f"{first[0]}: {first[1][:60]!r}, line {number}: {value.strip()[:60]!r}); keep the one "
                             "you mean")


def read_project(text: str) -> dict[str, str]:
    """The keys and values of a `.eddypro` file, lower-case keys, all sections flattened (EddyPro's key names are
    unique across sections; a key given twice with different values, in one section or two, is refused)."""
    refuse_conflicting_keys(text)
    ini = configparser.ConfigParser(interpolation=None, strict=False)
    ini.read_string(text.replace(";EDDYPRO_PROCESSING", ""))
    flat: dict[str, str] = {}
    where: dict[str, str] = {}
    for section in ini.sections():
        for key, value in ini[section].items():
            name = key.lower()
            if name in flat and flat[name] != value:
                raise ValueError(f"key {key} is given in [{where[name]}] and [{section}] with different values "
                                 f"({flat[name][:60]!r}, {value[:60]!r}); keep the one you mean")
            flat[name], where[name] = value, section
    return flat


def check_keys(flat: Flat) -> None:
    """Refuse unknown keys and refused values (see the module docstring); the message names the key."""
    for key, value in flat.items():
        rule = rule_for(key)
        if rule is None:
            raise ConfigError(f"{key} = {value}: a project-file key this engine does not know, so it cannot honour "
                              f"it; remove the line if it is not needed")
        if rule.allowed and rule.active(flat) and value.strip() not in rule.allowed:
            raise ConfigError(f"{key} = {value.strip()}: {rule.why}")


def _code(flat: Flat, key: str) -> str | None:
    value = flat.get(key, "").strip()
    if not value:
        return None
    codes = EDDYPRO_CODES[key]
    if value not in codes:
        raise ConfigError(f"{key} = {value}: not an EddyPro code this engine knows ({', '.join(codes)})")
    return codes[value]


_ASSESSMENT_KEYS = ("sa_fmin_co2", "sa_fmax_co2", "sa_fmin_h2o", "sa_fmax_h2o", "sa_hfn_co2_fmin",
                    "sa_hfn_h2o_fmin", "sa_min_un_ustar", "sa_min_st_ustar", "sa_max_ustar", "sa_min_un_h",
                    "sa_min_st_h", "sa_max_h", "sa_min_un_le", "sa_min_st_le", "sa_max_le", "sa_min_un_co2",
                    "sa_min_st_co2", "sa_max_co2")


#: Honoured keys that hold numbers: checked to be finite numbers even where their option is off.
NUMERIC_KEYS: tuple[str, ...] = (
                "avrg_len", "max_lack", "timeconst", "u_offset", "v_offset", "w_offset", "ru_tlag_max", "mag_dec",
                "pf_w_max", "pf_u_min", "pf_north_offset", "pf_min_num_per_sec", "sa_min_smpl", *_ASSESSMENT_KEYS,
                "to_co2_min_lag", "to_co2_max_lag", "to_h2o_min_lag", "to_h2o_max_lag", "to_co2_min_flux",
                "to_le_min_flux", "to_pg_range", "to_h2o_nclass", "to_ch4_min_lag", "to_ch4_max_lag",
                "to_gas4_min_lag", "to_gas4_max_lag", "to_ch4_min_flux", "to_gas4_min_flux",
                "sr_num_spk", "sr_lim_u", "sr_lim_w", "sr_lim_co2", "sr_lim_h2o", "sr_lim_ch4", "sr_lim_n2o",
                "sr_lim_hf", "al_u_max", "al_w_max", "al_n2o_min", "al_n2o_max",
                "al_tson_min", "al_tson_max", "al_co2_min", "al_co2_max", "al_h2o_min", "al_h2o_max", "al_ch4_min",
                "al_ch4_max")

#: The statistical tests' switches and, per switch, the parameters read when it is on (EddyPro names; settings
#: statistical_tests).
TEST_PARAMETERS: dict[str, tuple[str, ...]] = {
    "test_al": (),
    "test_ar": ("ar_lim", "ar_bins", "ar_hf_lim"),
    "test_do": ("do_extlim_dw", "do_hf1_lim", "do_hf2_lim"),
    "test_sk": tuple(f"sk_{f}_{m}" for f in ("hf", "sf") for m in ("skmin", "skmax", "kumin", "kumax")),
    "test_ds": tuple(f"ds_{f}_{v}" for f in ("hf", "sf") for v in ("uv", "w", "t", "co2", "h2o", "ch4", "n2o", "var")),
    "test_tl": ("tl_hf_lim", "tl_sf_lim", "tl_def_co2", "tl_def_h2o", "tl_def_ch4", "tl_def_n2o"),
    "test_aa": ("aa_min", "aa_max", "aa_lim"),
    "test_ns": ("ns_hf_lim",),
}
NUMERIC_KEYS = (*NUMERIC_KEYS, *(k for keys in TEST_PARAMETERS.values() for k in keys))


def _float(flat: Flat, key: str) -> float | None:
    """The number of a key (None when empty); ValueError naming the key when it is not a finite number."""
    value = flat.get(key, "").strip()
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{key} = {value}: not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{key} = {value}: not a finite number")
    return number


def _flag(flat: Flat, key: str) -> bool:
    return flat.get(key, "0").strip() == "1"


def _moment(flat: Flat, which: str, prefix: str = "pr") -> datetime:
    date = flat.get(f"{prefix}_{which}_date", "").strip()
    time = flat.get(f"{prefix}_{which}_time", "").strip() or "00:00"
    try:
        return datetime.fromisoformat(f"{date}T{time}:00+00:00")
    except ValueError:
        raise ConfigError(f"{prefix}_{which}_date/{prefix}_{which}_time = {date} {time}: not a date "
                          "(yyyy-mm-dd HH:MM)") from None


def _planar_fit_options(flat: Flat) -> dict[str, Any]:
    """The engine's planar-fit settings from pf_* keys (pf_mode = 1)."""
    out: dict[str, Any] = {}
    for key in ("pf_w_max", "pf_u_min", "pf_north_offset"):
        value = _float(flat, key)
        if value is not None:
            out[key] = value
    count = _float(flat, "pf_min_num_per_sec")
    if count is not None:
        out["pf_min_num_per_sec"] = int(count)
    widths = {k: _float(flat, k) for k in flat if re.fullmatch(r"pf_sect_\d+_width", k)}
    if widths:
        values = {w for w in widths.values() if w is not None}
        if len(values) != 1 or 360.0 % next(iter(values)):
            raise ConfigError(f"pf_sect_N_width = {', '.join(f'{w:g}' for w in sorted(values))}: planar-fit sectors "
                              "of unequal width (or not dividing 360) are not available; use equal sectors")
        out["pf_sectors"] = round(360.0 / next(iter(values)))
    if _flag(flat, "pf_subset"):
        out["pf_fit_from"] = _moment(flat, "start", "pf")
        out["pf_fit_to"] = _moment(flat, "end", "pf")
    return out


def _lag_options(flat: Flat) -> dict[str, Any]:
    """The automatic time-lag optimisation's settings from to_* keys (tlag_meth = 4)."""
    out: dict[str, Any] = {}
    for gas, name in (("co2", "co2"), ("h2o", "h2o"), ("ch4", "ch4"), ("gas4", "n2o")):
        for end in ("min", "max"):
            value = _float(flat, f"to_{gas}_{end}_lag")
            if value is not None and value > -1000.0:  # EddyPro writes -1000.1 for "not set"
                out[f"to_{name}_{end}_lag"] = value
    for key, name in (("to_co2_min_flux", "to_co2_min_flux"), ("to_le_min_flux", "to_le_min_flux"),
                      ("to_ch4_min_flux", "to_ch4_min_flux"), ("to_gas4_min_flux", "to_n2o_min_flux"),
                      ("to_pg_range", "to_pg_range")):
        value = _float(flat, key)
        if value is not None:
            out[name] = value
    classes = _float(flat, "to_h2o_nclass")
    if classes is not None:
        out["to_h2o_nclass"] = int(classes)
    if _flag(flat, "to_subset"):
        out["to_fit_from"] = _moment(flat, "start", "to")
        out["to_fit_to"] = _moment(flat, "end", "to")
    return out


def _assessment_options(flat: Flat) -> dict[str, Any]:
    """The in-situ spectral-assessment settings from sa_* keys (sa_mode = 1)."""
    out: dict[str, Any] = {k: v for k in _ASSESSMENT_KEYS if (v := _float(flat, k)) is not None}
    count = _float(flat, "sa_min_smpl")
    if count is not None:
        out["sa_min_smpl"] = max(1, int(count))
    for key in ("sa_use_vm_flags", "sa_use_foken_low", "sa_use_foken_mid"):
        out[key] = _flag(flat, key)
    if _flag(flat, "sa_subset"):
        out["sa_fit_from"] = _moment(flat, "start", "sa")
        out["sa_fit_to"] = _moment(flat, "end", "sa")
    return out


def settings_from_project(text: str) -> dict[str, Any]:
    """A `ProcessingSettings` mapping from the text of an EddyPro project file: every key checked against
    :data:`RULES`, the honoured ones translated. Raises ConfigError naming the first refused or unknown key,
    ValueError naming a key whose number is not finite."""
    flat = read_project(text)
    check_keys(flat)
    for key in NUMERIC_KEYS:
        _float(flat, key)
    out: dict[str, Any] = {}
    for key in ("rot_meth", "detrend_meth", "tlag_meth", "qc_meth", "hf_meth", "foot_meth", "lf_meth"):
        code = _code(flat, key)
        if code is not None:
            out[key] = code
    for key in ("avrg_len", "max_lack", "timeconst", "u_offset", "v_offset", "w_offset"):
        value = _float(flat, key)
        if value is not None:
            out[key] = value
    if "wpl_meth" in flat:
        out["wpl_meth"] = _flag(flat, "wpl_meth")
    ru_meth = flat.get("ru_meth", "0").strip()
    if ru_meth in ("1", "2"):
        out["random_error"] = "mann_lenschow_1994" if ru_meth == "2" else "finkelstein_sims_2001"
        its = _code(flat, "ru_its_meth")
        if its is not None:
            out["ru_its_meth"] = its
        tlag = _float(flat, "ru_tlag_max")
        if tlag is not None:
            out["ru_tlag_max"] = tlag
    if _flag(flat, "test_sr"):
        out["despike"] = "mauder_2013" if _flag(flat, "despike_vm") else "vickers_mahrt_1997"
        out["despike_replace"] = _flag(flat, "filter_sr")
        spikes = _float(flat, "sr_num_spk")
        if spikes is not None:
            out["sr_num_spk"] = int(spikes)
        for key in ("sr_lim_u", "sr_lim_w", "sr_lim_co2", "sr_lim_h2o", "sr_lim_ch4", "sr_lim_n2o", "sr_lim_hf"):
            value = _float(flat, key)
            if value is not None:
                out[key] = value
    else:
        out["despike"] = "none"
    out["filter_al"] = _flag(flat, "test_al") and _flag(flat, "filter_al")
    if out["filter_al"]:
        limits = {k: v for k in ("al_u_max", "al_w_max", "al_tson_min", "al_tson_max", "al_co2_min", "al_co2_max",
                                 "al_h2o_min", "al_h2o_max", "al_ch4_min", "al_ch4_max", "al_n2o_min", "al_n2o_max")
                  if (v := _float(flat, k)) is not None}
        if limits:
            out["absolute_limits"] = limits
    tests: dict[str, Any] = {}
    for switch, keys in TEST_PARAMETERS.items():
        if _flag(flat, switch):
            tests[switch] = True
            for key in keys:
                value = _float(flat, key)
                if value is not None:
                    tests[key] = int(value) if key == "ar_bins" else value
    if tests:
        out["statistical_tests"] = tests
    out["cross_wind"] = _flag(flat, "cross_wind")
    out["gill_wm_wboost"] = _flag(flat, "gill_wm_wboost")
    out["bu_corr"] = _flag(flat, "bu_corr")
    flow = _code(flat, "flow_distortion")
    if flow is not None:
        out["flow_distortion"] = flow
    if _flag(flat, "use_geo_north"):
        out["magnetic_declination"] = _float(flat, "mag_dec") or 0.0
    if _flag(flat, "pr_subset"):
        out["process_from"] = _moment(flat, "start")
        out["process_to"] = _moment(flat, "end")
    if out.get("hf_meth") in ("horst_1997", "ibrom_2007", "fratini_2012"):
        if flat.get("sa_mode", "0").strip() == "1":
            out.update(_assessment_options(flat))
        else:
            out["spectral_assessment_file"] = flat.get("sa_file", "").strip() or None
    if out.get("tlag_meth") == "automatic_optimization":
        out.update(_lag_options(flat))
    if out.get("rot_meth") in ("planar_fit", "planar_fit_no_bias"):
        if flat.get("pf_mode", "0").strip() == "1":
            out.update(_planar_fit_options(flat))
        else:
            out["planar_fit_file"] = flat.get("pf_file", "").strip() or None
    return out
