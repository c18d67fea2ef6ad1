"""The simulated soil/stems year builds its readings without validating each one (`soilyear._reading`): every one
must be what validation would have made of the same fields."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.model import Reading
from gateway.simulation import soilyear
from gateway.simulation.soilyear import ProbeSpec, demo_trees, soil_year


def test_every_simulated_reading_equals_its_validated_copy() -> None:
    year = soil_year(2025, station="st-1", utc_offset_h=1.0, seed=3, until=datetime(2025, 1, 9, tzinfo=UTC),
                     probes=[ProbeSpec(0.1, "co2_10", "CO2_1_1_1", "T_PROBE_1_1_1"),
                             ProbeSpec(0.3, "co2_30", "CO2_1_2_1", "T_PROBE_1_2_1")],
                     swc_sensor="swc", swc_variable="SWC_1_1_1", ts_variable="TS_1_1_1",
                     trees=demo_trees("dendro", ["STEM_RAD_CHG_1_1_1", "STEM_RAD_CHG_2_1_1"]),
                     chamber=("chamber_1", "CO2_4_1_1", "LID_CLOSED_4_1_1", "T_PROBE_4_1_1"))
    kinds = {(r.sensor, r.variable) for r in year.readings}
    assert {("co2_10", "CO2_1_1_1"), ("swc", "TS_1_1_1"), ("chamber_1", "LID_CLOSED_4_1_1"),
            ("dendro", "STEM_RAD_CHG_2_1_1")} <= kinds
    for built in year.readings:
        fields = {name: getattr(built, name) for name in Reading.model_fields if name in built.model_fields_set}
        validated = Reading(**fields)
        assert built == validated
        assert built.model_fields_set == validated.model_fields_set
        assert type(built.value) is float and built.time.tzinfo is UTC
        assert built.model_dump_json() == validated.model_dump_json()


def test_a_non_finite_simulated_value_is_refused() -> None:
    with pytest.raises(ValueError, match="co2_10/CO2_1_1_1"):
        soilyear._reading("st-1", "co2_10", "CO2_1_1_1", "umol mol-1", datetime(2025, 1, 1, tzinfo=UTC),
                          float("nan"))
