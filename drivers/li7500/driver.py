"""LI-COR LI-7500DS / LI-7500RS open-path (and LI-7200RS enclosed-path) CO2/H2O analyzer: a stream driver.

The analyzer streams records in LI-COR's configuration grammar (`sexpr.py`) over RS-232 or over TCP port 7200, one
record per line (LI-7500RS/LI-7200RS instruction manual, App. D). This module is the frame grammar only
(gateway.driver_api.StreamDriver): the stream runner owns the transport, splits the bytes at LF, stamps and archives
each frame, and calls `parse`.

Two record forms, chosen by the `labels` key (the instrument's `(Labels TRUE|FALSE)` setting)::

    labels: true    (Data (Ndx 2210)(DiagVal 248)(CO2D 1.6874e1)(H2OD 5.2310e2)(Temp 1.8352e1)(Pres 9.7125e1))
    labels: false   2210<TAB>248<TAB>1.6874e1<TAB>5.2310e2<TAB>1.8352e1<TAB>9.7125e1

With labels the driver takes values by label, whatever their order, and ignores outputs it has no column for
(CO2Raw, Aux, Cooler, ...). Without labels the values are taken by position in the configured `outputs` order
(how the instrument orders them is not verified - check the first records on a real unit).
A labelled `(Data ...)` record is accepted in either mode, so a unit still set to labels does not lose data.

**Messages that are not data** - `(Ack ...)`, `(Error ...)`, `(Diagnostics ...)` - raise
`BadRecord(NOT_DATA, ...)`: the runner counts them as instrument messages (not as bad records, and without a
warning), and the driver also counts them by type in `messages` and keeps the last `(Error ...)` text in
`last_error`; an `(Error ...)` is what an operator needs to see, through `last_error`.
"""

from __future__ import annotations

import collections
import math
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from drivers.li7500 import sexpr
from gateway.driver_api import NOT_DATA, BadRecord, StreamColumn, StreamConfig

# Column -> the instrument's output label (case sensitive). Units from the LI-7500RS/LI-7200RS manual [M];
# the CO2SS scale is not verified.
COLUMN_LABELS: dict[str, str] = {
    "DIAG": "DiagVal",
    "CO2": "CO2D",
    "H2O": "H2OD",
    "T_CELL": "Temp",
    "PRESS": "Pres",
    "CO2SS": "CO2SS",
}
COLUMNS: tuple[StreamColumn, ...] = (
    StreamColumn("DIAG", "1"),  # DiagVal: diagnostic value, an integer bit field (see diag_flags)
    StreamColumn("CO2", "mmol m-3"),  # CO2D: CO2 molar density
    StreamColumn("H2O", "mmol m-3"),  # H2OD: H2O molar density
    StreamColumn("T_CELL", "degC"),  # Temp: the analyzer's temperature (LI-7500: at the head; LI-7200RS: [U])
    StreamColumn("PRESS", "kPa"),  # Pres: total pressure
    StreamColumn("CO2SS", "%"),  # CO2SS: signal strength (DS/RS only; scale [U])
)

DEFAULT_OUTPUTS: tuple[str, ...] = ("Ndx", "DiagVal", "CO2D", "H2OD", "Temp", "Pres", "CO2SS")
# Outputs the manual's examples show; `start_commands` switches off those not configured, so a Labels FALSE
# record holds exactly the configured fields.
KNOWN_OUTPUTS: tuple[str, ...] = (
    "Ndx", "DiagVal", "CO2Raw", "CO2D", "H2ORaw", "H2OD", "Temp", "Pres", "Aux", "Cooler", "CO2SS",
)
MESSAGE_HEADS = ("Ack", "Error", "Diagnostics")

# Original LI-7500 DiagVal byte (LI-7500 instruction manual p. 3-36): bit set = OK. The DS/RS bit map is
# not verified; the DS/RS report signal strength in CO2SS instead of the low nibble.
DIAG_OK_BITS: dict[str, int] = {"chopper": 0x80, "detector": 0x40, "pll": 0x20, "sync": 0x10}


def diag_flags(diag: int) -> dict[str, bool | float]:
    """Decode an LI-7500 DiagVal byte: which subsystems report OK, and the AGC in % (low nibble x 6.25)."""
    flags: dict[str, bool | float] = {name: bool(diag & bit) for name, bit in DIAG_OK_BITS.items()}
    flags["agc_percent"] = (diag & 0x0F) * 6.25
    return flags


class LI7500Config(StreamConfig):
    """One LI-7500DS/RS or LI-7200RS in a station config; `sample.yaml` documents every key."""

    driver: Literal["li7500"] = "li7500"
    frequency_hz: float = Field(default=10.0, gt=0, le=20, description="output rate (Freq), at most 20 Hz")
    labels: bool = Field(default=True, description="the instrument's (Labels ...) setting: labelled or tab records")
    outputs: tuple[str, ...] = Field(
        default=DEFAULT_OUTPUTS,
        min_length=1,
        description="output labels switched on, in the order the tab-delimited (labels: false) record carries them",
    )
    configure: bool = Field(
        default=True, description="send an (Outputs ...) command after each connect; false leaves the unit as is"
    )

    @field_validator("outputs")
    @classmethod
    def _check_outputs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for label in value:
            if not label.isascii() or not label.isalnum() or not label[0].isalpha():
                raise ValueError(f"output label {label!r} must be letters and digits, e.g. CO2D (case sensitive)")
        duplicates = sorted({label for label in value if value.count(label) > 1})
        if duplicates:
            raise ValueError(f"output labels listed twice: {', '.join(duplicates)}")
        return value

    @model_validator(mode="after")
    def _check_some_column(self) -> LI7500Config:
        if not set(self.outputs) & set(COLUMN_LABELS.values()):
            raise ValueError(f"outputs lists none of {', '.join(COLUMN_LABELS.values())}: nothing to record")
        return self


def outputs_command(config: LI7500Config) -> bytes:
    """`(Outputs(RS232(Freq 10)(Labels TRUE)(DiagRec FALSE)(Ndx TRUE)...(CO2Raw FALSE)...))` + LF.

    Configured outputs are switched on in their configured order, known ones not configured are switched off,
    and the separate `(Diagnostics ...)` record is switched off (DiagRec FALSE), as in the manual's example.
    """
    frequency = f"{config.frequency_hz:g}"
    items: list[sexpr.SExpr] = [("Freq", frequency), ("Labels", "TRUE" if config.labels else "FALSE")]
    items.append(("DiagRec", "FALSE"))
    items += [(label, "TRUE") for label in config.outputs]
    items += [(label, "FALSE") for label in KNOWN_OUTPUTS if label not in config.outputs]
    return (sexpr.render(("Outputs", ("RS232", *items))) + "\n").encode("ascii")


def _value(label: str, atom: str | sexpr.SExpr) -> float | None:
    if not isinstance(atom, str):
        raise BadRecord("format", f"({label} ...) holds a list, not a number")
    try:
        value = sexpr.number(atom)
    except ValueError:
        raise BadRecord("format", f"({label} {atom}): not a number") from None
    if not math.isfinite(value):
        return None
    if label == "DiagVal" and (value != int(value) or value < 0):
        raise BadRecord("format", f"(DiagVal {atom}): not a non-negative integer")
    return value


class LI7500Driver:
    """gateway.driver_api.StreamDriver for LI-COR LI-7500DS/RS and LI-7200RS analyzers (frame grammar only)."""

    Config: ClassVar[type[StreamConfig]] = LI7500Config
    columns: ClassVar[tuple[StreamColumn, ...]] = COLUMNS
    terminator: ClassVar[bytes] = b"\n"

    def __init__(self, config: StreamConfig, *, station: str) -> None:
        if not isinstance(config, LI7500Config):
            config = LI7500Config.model_validate(config.model_dump())
        self.config: LI7500Config = config
        self.station = station
        self.messages: collections.Counter[str] = collections.Counter()
        """Non-data messages seen, by type: Ack, Error, Diagnostics."""
        self.last_error: str | None = None
        """The text of the last (Error ...) message, for the operator (a rejected command, usually)."""
        self._positions = {label: i for i, label in enumerate(config.outputs)}

    def __repr__(self) -> str:
        return f"LI7500Driver({self.config.name!r}, port={self.config.port!r})"

    def start_commands(self) -> list[bytes]:
        return [outputs_command(self.config)] if self.config.configure else []

    def parse(self, frame: bytes) -> tuple[float | None, ...]:
        try:
            text = frame.decode("ascii")
        except UnicodeDecodeError:
            raise BadRecord("format", f"non-ASCII bytes in {frame[:60]!r}") from None
        text = text.rstrip("\r\n")
        if text.lstrip(" \t").startswith("("):
            return self._parse_message(text)
        if self.config.labels:
            raise BadRecord("format", f"not a parenthesised message: {text[:60]!r}")
        return self._parse_tab_record(text)

    def _parse_message(self, text: str) -> tuple[float | None, ...]:
        try:
            message = sexpr.parse(text)
        except sexpr.SExprError as error:
            raise BadRecord("format", f"{error}: {text[:60]!r}") from None
        head = message[0]
        if head in MESSAGE_HEADS:
            assert isinstance(head, str)
            self.messages[head] += 1
            if head == "Error":
                self.last_error = text.strip()
            raise BadRecord(NOT_DATA, f"({head} ...) message: {text.strip()[:80]}")
        if head != "Data":
            raise BadRecord("format", f"unknown message type {head!r} (labels are case sensitive)")
        found = sexpr.pairs(message)
        if not set(found) & set(COLUMN_LABELS.values()):
            raise BadRecord("format", f"(Data ...) without any of {', '.join(COLUMN_LABELS.values())}")
        return tuple(
            _value(label, found[label]) if label in found else None for label in COLUMN_LABELS.values()
        )

    def _parse_tab_record(self, text: str) -> tuple[float | None, ...]:
        fields = text.split("\t")
        expected = len(self.config.outputs)
        if len(fields) != expected:
            raise BadRecord("format", f"{len(fields)} tab-separated values, expected {expected}: {text[:60]!r}")
        return tuple(
            _value(label, fields[self._positions[label]].strip()) if label in self._positions else None
            for label in COLUMN_LABELS.values()
        )


Config = LI7500Config
