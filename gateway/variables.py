"""Registry of variable names and units.

Names are AmeriFlux/FLUXNET BASE names where one exists (AmeriFlux "Variables" table; Pastorello et al. 2020,
Sci. Data 7:225, for FLUXNET2015). A position qualifier `_<H>_<V>_<R>` (horizontal, vertical, replicate) may be
appended, as in AmeriFlux: `CO2_1_2_1` is the second depth of the first profile. Names marked `standard=False` have
no AmeriFlux equivalent and are sinkwatch's own.

Streaming instruments (gateway/edge/streams/) publish interval summaries of every raw column: the mean under the
column's name, and the AmeriFlux statistical qualifiers `_SD` (standard deviation) and `_N` (number of values),
e.g. `T_SONIC`, `T_SONIC_SD`, `T_SONIC_N`; the unit of `_SD` is the column's, `_N` is a count (unit "1").

Derived variables are computed by one pure function each, here, so that a driver deriving one at the station and
the science deriving it centrally give the same number: `vapour_pressure_deficit_hpa` (VPD from TA and RH).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # numpy is imported by the two functions that compute: most importers only look names up
    import numpy as np
    import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class Variable:
    name: str
    unit: str
    description: str
    standard: bool = True


VARIABLES: dict[str, Variable] = {
    v.name: v
    for v in (
        Variable("CO2", "umol mol-1", "CO2 mole fraction (ppm); in soil: soil-air CO2 at the probe's depth"),
        Variable("TS", "degC", "soil temperature"),
        Variable("SWC", "%", "soil water content (volumetric)"),
        Variable("T_PROBE", "degC", "a sensor's own internal temperature", standard=False),
        Variable("WS", "m s-1", "wind speed (interval mean of the horizontal speed from a sonic anemometer)"),
        Variable("T_SONIC", "degC", "sonic temperature"),
        Variable("U", "m s-1", "wind component along the sonic's x axis, instrument frame, not rotated",
                 standard=False),
        Variable("V", "m s-1", "wind component along the sonic's y axis, instrument frame, not rotated",
                 standard=False),
        Variable("W", "m s-1", "wind component along the sonic's z axis, instrument frame, not rotated",
                 standard=False),
        Variable("SOS", "m s-1", "speed of sound measured by a sonic anemometer", standard=False),
        Variable("DIAG_SONIC", "1", "a sonic anemometer's diagnostic/status code (0 = OK)", standard=False),
        Variable("SW_IN", "W m-2", "incoming (global) shortwave radiation, from a pyranometer"),
        Variable("TA", "degC", "air temperature"),
        Variable("RH", "%", "relative humidity, with respect to water (also below 0 degC, as WMO reports it)"),
        Variable("VPD", "hPa", "vapour pressure deficit, derived from TA and RH (vapour_pressure_deficit_hpa)"),
        Variable("EC_SOIL", "uS cm-1", "bulk soil electrical conductivity (no AmeriFlux BASE name)", standard=False),
        # dendrometers: change relative to the sensor's reference reading (or absolute position when the reference
        # is 0), per the quantity the instrument measures; AmeriFlux has no stem-size variables
        Variable("STEM_RAD_CHG", "um", "stem radius change (point dendrometer)", standard=False),
        Variable("STEM_CIRC_CHG", "um", "stem circumference change (band dendrometer)", standard=False),
        Variable("STEM_DIAM_CHG", "um", "stem diameter change (diameter dendrometer)", standard=False),
        # automated soil chambers (drivers/chamber): the lid's state at the instant of each CO2 reading
        Variable("LID_CLOSED", "1", "chamber lid state from its limit switch(es): 1 closed, 0 open, null in between",
                 standard=False),
    )
}

_QUALIFIER_RE = re.compile(r"^(?P<base>[A-Z][A-Z0-9]*(?:_[A-Z][A-Z0-9]*)*)(?:_\d+_\d+_\d+)?$")


def base_name(variable: str) -> str:
    """`CO2_1_2_1` -> `CO2`."""
    match = _QUALIFIER_RE.match(variable)
    return match.group("base") if match else variable


def unit_of(variable: str) -> str:
    return VARIABLES[base_name(variable)].unit


# --- derived variables ------------------------------------------------------------------------------------------

Values = TypeVar("Values", float, "npt.NDArray[np.float64]")


def saturation_vapour_pressure_hpa(ta_degc: Values) -> Values:
    """Saturation vapour pressure of pure water, e_w(t) in hPa, at air temperature `ta_degc` in degC.

    Magnus form with Sonntag's (1990) coefficients as the WMO recommends them: e_w = 6.112 exp(17.62 t /
    (243.12 + t)) hPa (WMO-No. 8, Guide to Instruments and Methods of Observation, 2018 ed., Vol. I, Annex 4.B;
    Sonntag, D., 1990, Z. Meteorol. 40, 340-344); stated for -45..60 degC. Over water also below 0 degC, because
    hygrometers report RH with respect to water (WMO convention), and FLUXNET's VPD uses the same reference.
    Accepts a float or a numpy array (NaN propagates).
    """
    import numpy as np

    t = np.asarray(ta_degc, dtype=np.float64)
    result = 6.112 * np.exp(17.62 * t / (243.12 + t))
    return result if isinstance(ta_degc, np.ndarray) else float(result)


def vapour_pressure_deficit_hpa(ta_degc: Values, rh_percent: Values) -> Values:
    """VPD = e_w(TA) - e = e_w(TA) (1 - RH/100), in hPa (FLUXNET/AmeriFlux unit), from TA in degC and RH in %
    with respect to water; e_w from `saturation_vapour_pressure_hpa`. RH above 100 % (supersaturation within the
    sensor's uncertainty) gives a small negative VPD, which is kept, not clipped: clipping would bias averages.
    """
    import numpy as np

    rh = np.asarray(rh_percent, dtype=np.float64)
    es = np.asarray(saturation_vapour_pressure_hpa(np.asarray(ta_degc, dtype=np.float64)), dtype=np.float64)
    result = es * (1.0 - rh / 100.0)
    scalar = not isinstance(ta_degc, np.ndarray) and not isinstance(rh_percent, np.ndarray)
    return float(result) if scalar else result  # type: ignore[return-value]
