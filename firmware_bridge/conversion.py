"""Ratiometric dendrometer counts -> stem radius / circumference / diameter change in micrometres.

Ecomatik DL18 BLE manual p. 7 (formulas equal full range / 2.5 V excitation): displacement_um = (Vout / Vexc) x
full_range_um. The board reports both the wiper (or LVDT conditioner) output and the excitation as ADC counts against
the same reference, so Vout/Vexc = raw/excitation and the ADC reference drops out. Changes are reported relative to a
reference displacement (configured, or the first reading); a step larger than `reset_threshold_um` within one reading is
a re-mount or a sensor reset (Ecomatik: the sensor is reset when its output nears full range), not growth: the reference
moves so the series continues, and that reading is flagged.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Quantity(StrEnum):
    RADIUS = "radius"
    CIRCUMFERENCE = "circumference"
    DIAMETER = "diameter"


VARIABLE_OF: dict[Quantity, str] = {
    Quantity.RADIUS: "STEM_RAD_CHG",
    Quantity.CIRCUMFERENCE: "STEM_CIRC_CHG",
    Quantity.DIAMETER: "STEM_DIAM_CHG",
}


@dataclass(frozen=True, slots=True)
class DendrometerModel:
    name: str
    full_range_um: float | None
    quantity: Quantity
    source: str


MODELS: dict[str, DendrometerModel] = {
    m.name: m
    for m in (
        DendrometerModel("ecomatik_dr1", 11000, Quantity.RADIUS, "Ecomatik DR1/DR3 manual: 11 mm range"),
        DendrometerModel("ecomatik_dr2", 25400, Quantity.RADIUS, "Ecomatik DR2 manual: 25.4 mm range"),
        DendrometerModel("ecomatik_dr3", 11000, Quantity.RADIUS, "Ecomatik DR3 manual: 11 mm range"),
        DendrometerModel("ecomatik_dc1", 11000, Quantity.CIRCUMFERENCE, "Ecomatik DC1: 11 mm range"),
        DendrometerModel("ecomatik_dc3", 25400, Quantity.CIRCUMFERENCE, "Ecomatik DC3: 25.4 mm range"),
        DendrometerModel("ecomatik_dc4", 50800, Quantity.CIRCUMFERENCE, "Ecomatik DC4: 50.8 mm range"),
        DendrometerModel("natkon_zn12", 20000, Quantity.RADIUS, "Natkon ZN11/ZN12: 20 mm travel, 1 mV = 4 um at 5 V"),
        DendrometerModel("generic_radius", None, Quantity.RADIUS, "any ratiometric sensor; give full_range_um"),
        DendrometerModel("generic_circumference", None, Quantity.CIRCUMFERENCE, "give full_range_um"),
        DendrometerModel("generic_diameter", None, Quantity.DIAMETER, "give full_range_um"),
    )
}


def displacement_um(raw: int, excitation: int, full_range_um: float, gain: float = 1.0,
                    offset_um: float = 0.0) -> float:
    """Absolute displacement from ratiometric counts; `gain`/`offset_um` are a per-sensor calibration."""
    if excitation <= 0:
        raise ValueError("excitation count must be positive")
    return raw / excitation * full_range_um * gain + offset_um


@dataclass
class ChangeTracker:
    """Turns absolute displacements into changes relative to a reference, carrying the series across resets."""

    reference_um: float | None = None
    reset_threshold_um: float = 2000.0
    last_um: float | None = None
    last_change_um: float = 0.0
    resets: int = 0

    def update(self, absolute_um: float) -> tuple[float, str | None]:
        """(change in um, event) where event is "reference" for the first reading used as reference, "reset" for
        a step larger than the threshold, else None."""
        event: str | None = None
        if self.reference_um is None:
            self.reference_um = absolute_um
            event = "reference"
        elif self.last_um is not None and abs(absolute_um - self.last_um) > self.reset_threshold_um:
            self.reference_um = absolute_um - self.last_change_um
            self.resets += 1
            event = "reset"
        self.last_um = absolute_um
        self.last_change_um = absolute_um - self.reference_um
        return self.last_change_um, event
