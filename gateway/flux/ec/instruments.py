"""Which instrument-specific corrections apply to which instruments, decided as EddyPro 7 documents it (pure: model
names and version strings in, a decision with its reason out).

EddyPro lets a project select corrections that exist for particular instruments only, and decides from the
instruments' models in the metadata (and the sonic's firmware version) whether a selected one applies to the data at
hand; where it does not, EddyPro skips it and processes the data without it. A refusal here would lose a run that
EddyPro completes, so the engine takes the same decisions:

* **w-boost bug of Gill WindMaster / WindMaster Pro** (EddyPro `gill_wm_wboost`; EddyPro 7 Help, "W-boost Bug
  Correction for WindMaster/Pro", after Gill Instruments' Technical Key Note KN1509v3): applied only if the sonic is a
  WindMaster or WindMaster Pro *and* its firmware version reads 2329.x.y with x < 700; "in any other conditions" —
  another model, no firmware version, a version of another form — it is not applied. Applied: w × 1.166 where w > 0
  and w × 1.289 where w < 0, on the raw records before any other operation (:func:`gateway.flux.ec.sonic.
  wboost_corrected_w`).
* **Angle-of-attack correction** (EddyPro `flow_distortion`: 1 Nakai et al. 2006, 2 Nakai & Shimoyama 2012): EddyPro
  7 Help, "Entering the sonic anemometer firmware version": EddyPro "determines how it should be applied to the
  current dataset ... based on the anemometer model and firmware version. If the selection is found to be
  inapplicable, EddyPro will override the user's selection and inform about the action taken"; Help "Advanced
  settings": the correction "Applies only to vertical mount Gill sonic anemometers with the same geometry of the R3
  (e.g., R2, WindMaster)"; Help "Angle of attack correction": the 2006 one is "valid for R3-style Gill anemometers
  (also including R2, WindMaster and WindMaster Pro)", the 2012 one derived from WindMaster field data; Nakai's own
  notice on his correction's page: the 2012 correction "is NOT applicable" to the Gill R3, HS, R3-50 and HS-50. The
  Advanced settings also offer "Select automatically" (EddyPro picks the method from model and firmware); its
  project-file code is not documented, and ``flow_distortion = 3`` is taken as that choice. The rule
  taken here: **not applicable** to the yoke-mounted Gill HS family (HS, HS-50, HS-100) and to sonics of other makers
  (CSAT3, Metek, Young, …) — neither method is for them, so nothing can be substituted and EddyPro proceeds without;
  **applicable** to the Gill R2, R3 family and WindMaster (Pro) — where this engine, which does not have the
  correction, refuses; a sonic whose model is not given or not recognised cannot be decided and is refused too.
* **Off-season uptake correction** (EddyPro `bu_corr`, Burba et al. 2008): EddyPro 7 Help, "Calculating the
  off-season uptake correction (LI-7500 only)": the instrument-heating sensible heat "is only used for calculating
  WPL terms when gas densities are measured by an LI-7500". **Not applicable** to any other analyser (closed-path
  LI-7200, other models) or to an LI-7500 whose gases are recorded as mole fractions or mixing ratios (no density
  terms); **applicable** to LI-7500-family molar densities — refused, the engine does not have the correction.

The module also decodes the LI-7200's diagnostic word into the per-period counts EddyPro's outputs carry
(:func:`li7200_diagnostics`).

Model names are compared without case, separators and EddyPro's instance suffix (``hs_50_1`` → ``hs50``,
``wmpro_1`` → ``wmpro``, the station's ``WindMaster`` → ``windmaster``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

#: Normalised model names of the Gill WindMaster family (EddyPro's codes and the spelled-out names).
WINDMASTER_MODELS = ("wm", "wmpro", "windmaster", "windmasterpro", "gillwindmaster", "gillwindmasterpro")
#: Makers' model prefixes of sonics that are not Gill's (normalised).
OTHER_MAKERS_MODELS = ("csat", "irgason", "usa1", "usonic", "metek", "81000", "young", "thies")
WBOOST_W_UP = 1.166
"""Factor of w > 0 (Gill KN1509v3 via EddyPro Help "W-boost Bug Correction for WindMaster/Pro")."""
WBOOST_W_DOWN = 1.289
"""Factor of w < 0."""
_WBOOST_FIRMWARE = re.compile(r"2329\.([0-9]+)\.([0-9]+)")


@dataclass(frozen=True)
class Decision:
    """Whether a correction applies to the instruments: True applies, False does not apply (EddyPro skips it),
    None cannot be decided from the metadata. ``why`` says so in words, for the record."""

    applies: bool | None
    why: str


def normalised_model(model: str) -> str:
    """Lower case, no separators, no EddyPro instance suffix (``_1``): ``hs_50_1`` → ``hs50``."""
    name = re.sub(r"_\d+$", "", model.strip().lower())
    return re.sub(r"[^a-z0-9]", "", name)


def sonic_family(manufacturer: str, model: str) -> str:
    """``windmaster``, ``gill_r`` (R2, R3, R3-50, R3-100, R3A), ``gill_hs`` (HS, HS-50, HS-100), ``gill_other``,
    ``other`` (another maker) or ``unknown`` (no model given)."""
    maker = manufacturer.strip().lower()
    name = normalised_model(model)
    if maker and maker != "gill":
        return "other"
    if name in WINDMASTER_MODELS:
        return "windmaster"
    if name.startswith(("r2", "r3")):
        return "gill_r"
    if name.startswith("hs"):
        return "gill_hs"
    if name.startswith(OTHER_MAKERS_MODELS):
        return "other"
    if not name:
        return "unknown"
    return "gill_other" if maker == "gill" else "unknown"


def wboost_firmware(sw_version: str) -> bool | None:
    """True if the firmware version is of the affected form 2329.x.y with x < 700, False if of that form with
    x ≥ 700, None if it is not of that form (or empty)."""
    match = _WBOOST_FIRMWARE.fullmatch(sw_version.strip())
    if match is None:
        return None
    x = match.group(1).lstrip("0")  # compared as text: a hostile file's 5,000-digit x is no int() to convert
    return len(x) < 3 or (len(x) == 3 and x < "700")


def wboost(manufacturer: str, model: str, sw_version: str) -> Decision:
    """Whether EddyPro's w-boost fix applies (module docstring): WindMaster (Pro) and firmware 2329.x.y, x < 700."""
    if sonic_family(manufacturer, model) != "windmaster":
        return Decision(False, f"not applied: the sonic ({model or 'no model given'}) is not a Gill WindMaster or "
                               "WindMaster Pro, the only sonics with the bug")
    firmware = wboost_firmware(sw_version)
    if not sw_version.strip():
        return Decision(False, "not applied: the WindMaster's firmware version is not given (sonic.sw_version, "
                               "EddyPro instr_1_sw_version); EddyPro applies the fix only to firmware 2329.x.y with "
                               "x < 700")
    if firmware is None:
        return Decision(False, f"not applied: firmware version {sw_version.strip()!r} is not of the form 2329.x.y "
                               "that EddyPro checks (affected: x < 700)")
    if not firmware:
        return Decision(False, f"not applied: firmware {sw_version.strip()} has the bug fixed (2329.x.y with "
                               "x >= 700)")
    return Decision(True, f"applied: w x {WBOOST_W_UP} (w > 0), x {WBOOST_W_DOWN} (w < 0) on the raw records "
                          f"(WindMaster firmware {sw_version.strip()}, affected 2329.x.y with x < 700)")


def angle_of_attack(manufacturer: str, model: str, method: str) -> Decision:
    """Whether an angle-of-attack correction (``nakai_2006``, ``nakai_shimoyama_2012``, ``automatic``) applies to
    the sonic (module docstring): False for the Gill HS family and other makers' sonics, True for Gill R2/R3/WindMaster,
    None when the model does not say."""
    family = sonic_family(manufacturer, model)
    if family == "gill_hs":
        return Decision(False, f"not applied: the correction ({method}) is not applicable to the yoke-mounted Gill "
                               f"HS sonic ({model}); EddyPro overrides the selection and proceeds without it")
    if family == "other":
        return Decision(False, f"not applied: the correction ({method}) is for Gill anemometers only, the sonic is "
                               f"{' '.join(x for x in (manufacturer, model) if x)}; EddyPro proceeds without it")
    if family in ("gill_r", "windmaster"):
        return Decision(True, f"EddyPro applies the angle-of-attack correction ({method}) to the Gill sonic "
                              f"{model!r} (R2, R3 and WindMaster types)")
    return Decision(None, f"the sonic model ({model or 'not given'}) does not say whether EddyPro would apply the "
                          f"angle-of-attack correction ({method}); it applies to Gill R2/R3/WindMaster types only")


def off_season_uptake(model: str, path_type: str | None, density_gases: list[str]) -> Decision:
    """Whether the Burba et al. (2008) off-season uptake correction applies (module docstring): only to LI-7500
    family molar densities (``density_gases``: the CO2/H2O columns recorded as molar densities)."""
    name = normalised_model(model)
    if path_type is None:
        return Decision(False, "not applied: there is no gas analyser (the correction is for the LI-7500 only)")
    if name.startswith("li7500"):
        if not density_gases:
            return Decision(False, f"not applied: the {model} gases are mole fractions or mixing ratios, which have "
                                   "no density (WPL) terms, the only place the correction enters")
        return Decision(True, f"the Burba et al. (2008) correction applies to the {model}'s molar densities "
                              f"({', '.join(density_gases)})")
    if name or path_type == "closed":
        return Decision(False, f"not applied: the correction is for the LI-7500 only; the analyser is "
                               f"{model or 'a closed-path analyser'} ({path_type} path)")
    return Decision(None, "the open-path analyser's model is not given, so whether the LI-7500-only correction "
                          "applies cannot be decided")


#: The LI-7200's status bits in its diagnostic word, 1 when OK (LI-COR, "LI-7200 CO2/H2O Analyzer Instruction
#: Manual", section "Diagnostic value"; LI-COR technical tip "Interpreting Diagnostic Values", Table 2), as
#: (bit, FLUXNET-style name of EddyPro's count of the records where the bit says not OK).
LI7200_STATUS_BITS: tuple[tuple[int, str], ...] = (
    (12, "INST_LI7200_HEAD_DETECT"), (11, "INST_LI7200_T_OUT"), (10, "INST_LI7200_T_IN"),
    (9, "INST_LI7200_AUX_IN"), (8, "INST_LI7200_DELTA_P"), (7, "INST_LI7200_CHOPPER"),
    (6, "INST_LI7200_DETECTOR"), (5, "INST_LI7200_PLL"), (4, "INST_LI7200_SYNC"),
)
LI7200_SIGNAL_STEP = 100.0 / 15.0
"""Signal strength (AGC or RSSI, %) per unit of bits 0-3 of the LI-7200's word: the technical tip prints 6.67, and
15 (all four bits set) is 100 % (EddyPro prints 100.000 for it)."""


def li7200_diagnostics(diag: ArrayLike) -> dict[str, float]:
    """Decode LI-7200 diagnostic words (the `diag_72` column, one per record) into what EddyPro's outputs carry per
    period: for each status bit (:data:`LI7200_STATUS_BITS`, bit = 1 when OK) the number of records where it is 0,
    and ``INST_LI7200_AGC_OR_RSSI``, the mean signal strength in % (bits 0-3 × 100/15; LI-COR, "LI-7200 CO2/H2O
    Analyzer Instruction Manual", "Diagnostic value"). Records without a word (NaN) or with a number that is no
    16-bit word (negative, a fraction, 2**16 or more) are left out of counts and mean. No records: empty."""
    x = np.asarray(diag, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        good = np.isfinite(x) & (x >= 0) & (x < 65536.0) & (x == np.floor(x))
    words = x[good].astype(np.int64)
    if words.size == 0:
        return {}
    out = {name: float(np.count_nonzero(((words >> bit) & 1) == 0)) for bit, name in LI7200_STATUS_BITS}
    out["INST_LI7200_AGC_OR_RSSI"] = float(np.mean(words & 0xF)) * LI7200_SIGNAL_STEP
    return out
