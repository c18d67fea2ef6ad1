"""The variable registry's derived variables: saturation vapour pressure and VPD against independent reference
values, not against their own output."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gateway.variables import VARIABLES, saturation_vapour_pressure_hpa, unit_of, vapour_pressure_deficit_hpa

# Saturation vapour pressure over liquid water (hPa) after Wexler (1976), as tabulated in the CRC Handbook of
# Chemistry and Physics ("Vapor pressure of water"; below 0 degC: supercooled water).
WEXLER_HPA = {-20.0: 1.2540, -10.0: 2.8627, 0.0: 6.1121, 10.0: 12.282, 20.0: 23.392, 30.0: 42.467, 40.0: 73.844}


@pytest.mark.parametrize(("ta", "reference"), sorted(WEXLER_HPA.items()))
def test_saturation_vapour_pressure_agrees_with_wexler_within_half_a_per_cent(ta: float, reference: float) -> None:
    # WMO's Magnus-Sonntag form is a fit: it is not the reference, but within 0.5 % of it from -20 to 40 degC
    assert saturation_vapour_pressure_hpa(ta) == pytest.approx(reference, rel=0.005)


def test_vpd_is_zero_when_saturated_and_the_whole_saturation_pressure_when_dry() -> None:
    assert vapour_pressure_deficit_hpa(20.0, 100.0) == 0.0
    assert vapour_pressure_deficit_hpa(20.0, 0.0) == saturation_vapour_pressure_hpa(20.0)
    assert vapour_pressure_deficit_hpa(25.0, 40.0) == pytest.approx(0.6 * saturation_vapour_pressure_hpa(25.0))
    # supersaturation within a sensor's uncertainty is kept, not clipped
    assert vapour_pressure_deficit_hpa(5.0, 101.0) < 0


def test_vpd_works_elementwise_on_arrays_and_keeps_gaps() -> None:
    ta = np.array([10.0, 20.0, np.nan])
    rh = np.array([50.0, 80.0, 60.0])
    vpd = vapour_pressure_deficit_hpa(ta, rh)
    assert isinstance(vpd, np.ndarray) and vpd.shape == (3,)
    assert vpd[0] == pytest.approx(vapour_pressure_deficit_hpa(10.0, 50.0))
    assert vpd[1] == pytest.approx(vapour_pressure_deficit_hpa(20.0, 80.0))
    assert math.isnan(vpd[2])
    assert isinstance(vapour_pressure_deficit_hpa(20.0, 50.0), float)


def test_met_variables_carry_fluxnet_units() -> None:
    assert {name: VARIABLES[name].unit for name in ("SW_IN", "TA", "RH", "VPD")} == {
        "SW_IN": "W m-2", "TA": "degC", "RH": "%", "VPD": "hPa"}
    assert unit_of("VPD_1_1_1") == "hPa"
