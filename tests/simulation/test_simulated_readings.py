"""The simulated years make their readings with `ReadingTemplate` (a year of soil profile, chamber and dendrometers is
~360,000 of them): each is the instance `Reading(...)` makes of its fields, which the stores and the jobs then read."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.model import Reading
from gateway.simulation.fluxyear import met_readings, synthetic_year
from gateway.simulation.soilyear import ProbeSpec, demo_trees, soil_year
from tests.test_reading_template import assert_same_reading


def assert_as_validated(readings: list[Reading]) -> None:
    assert readings
    for made in readings:
        assert_same_reading(made, Reading(**{name: getattr(made, name) for name in Reading.model_fields}))


def test_a_soil_year_in_progress_holds_the_readings_the_model_makes() -> None:
    # every kind the year makes: profile CO2 and temperature, water content, the probe's soil temperature, the
    # chamber's CO2, lid and temperature, the dendrometers; four days, past the first closures
    year = soil_year(2025, station="st01", probes=[ProbeSpec(0.1, "soil_co2_10cm", "CO2_1_1_1", "T_PROBE_1_1_1"),
                                                   ProbeSpec(0.3, "soil_co2_30cm", "CO2_1_2_1", "T_PROBE_1_2_1")],
                     swc_sensor="soil_swc", swc_variable="SWC_1_1_1", ts_variable="TS_1_1_1",
                     trees=demo_trees("dendro", ["DR_1_1_1", "DR_2_1_1"]), seed=2, utc_offset_h=1.0,
                     chamber=("chamber_1", "CO2_4_1_1", "LID_CLOSED_4_1_1", "T_PROBE_4_1_1"),
                     until=datetime(2025, 1, 5, tzinfo=UTC))
    assert {r.variable for r in year.readings} == {"CO2_1_1_1", "T_PROBE_1_1_1", "CO2_1_2_1", "T_PROBE_1_2_1",
                                                   "SWC_1_1_1", "TS_1_1_1", "CO2_4_1_1", "LID_CLOSED_4_1_1",
                                                   "T_PROBE_4_1_1", "DR_1_1_1", "DR_2_1_1"}
    assert year.chamber_truth
    assert_as_validated(year.readings)


def test_a_flux_years_met_readings_are_the_readings_the_model_makes() -> None:
    readings = met_readings(synthetic_year(2024, seed=5), station="st01")
    assert {r.variable for r in readings} == {"SW_IN_1_1_1", "TA_1_1_1", "VPD_1_1_1"}
    assert_as_validated(readings[:3000])
