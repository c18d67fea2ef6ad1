"""Campbell Scientific IRGASON / EC150 (open-path analyzer, IRGASON with its integrated sonic) through the EC100
electronics: a stream driver for the unprompted 15-field ASCII output (Campbell Scientific IRGASON manual
Table 8-1; EC150 manual App. C.1; EC155 manual sec. 7.2.5).

Frame layout (comma separated, CR LF terminated; `NAN` marks a missing value)::

     1   2   3   4  5          6    7    8         9   10  11     12     13      14      15
    Ux, Uy, Uz, Ts, diag_sonic,CO2, H2O, diag_gas, T,  P,  CO2_SS,H2O_SS,unused, counter,signature
    m/s m/s m/s °C  integer    mg/m3 g/m3 integer  °C  kPa 0..1   0..1   (EC155) integer 4 hex digits

    EXAMPLE  1.234,-0.456,0.078,21.35,0,712.4,9.876,0,21.10,98.72,0.92,0.95,0,42,<sig>\r\n

**Units.** CO2 and H2O are converted from the instrument's mass densities to molar densities in mmol m-3, the
unit of the LI-7500 driver and of the turbulence field, with the molar masses `M_CO2` = 44.0095 g mol-1 and
`M_H2O` = 18.01528 g mol-1: CO2 [mmol m-3] = CO2 [mg m-3] / 44.0095; H2O [mmol m-3] = H2O [g m-3] x 1000 / 18.01528.
The sonic temperature stays in degC as sent (T_SONIC, like the other sonic drivers' raw output). The EC155's
mole-fraction output (elements 6/7 in umol/mol and mmol/mol when element 13 is the cell pressure difference) is
NOT handled: its columns would have other units; use a separate driver for it.

**Signature.** Campbell's 16-bit signature (`campbell_signature`, seed 0xAAAA) over the characters named by the
`signature_span` key; the default, `co2_through_counter`, follows the EC155 manual's text (sec. 7.2.5:
from the first character of element 6 to the last character of element 14, no trailing comma). Which span
the EC100 really uses is not verified on hardware; the other spans are selectable so a bench test can settle it
without a code change. With `signature_span_fallback` (default) a record whose signature fails under the active span
but matches under another of `SIGNATURE_SPANS` is accepted and that span becomes the active one (logged, counted in
`signature_span_switches`): a unit following another reading than ours would otherwise lose every record. A
signature that matches no span raises BadRecord("checksum").

**Counter.** Element 14 counts records modulo `counter_modulus` (default 64, as the CSAT3B's 0-63; the EC100's
range is not verified). A record whose counter is not the previous good record's + 1 is still GOOD data and is
returned: the gap is counted in `counter_gaps` (number of gaps) and `lost_records` (records the gaps skipped,
including records the runner dropped as bad in between). A counter equal to the previous one (a repeated record)
raises BadRecord("counter"). A counter at or above the modulus means the configured modulus is too small (the EC100's
range is not verified), not that the data is bad: the signature-checked record is kept, counted in
`counter_out_of_range` (logged the first time), and its continuity is not judged.
"""

from __future__ import annotations

import logging
import math
from typing import ClassVar, Literal, get_args

from pydantic import Field

from gateway.driver_api import BadRecord, StreamColumn, StreamConfig

log = logging.getLogger(__name__)

M_CO2 = 44.0095  # g mol-1 (IUPAC standard atomic weights, C 12.011, O 15.999)
M_H2O = 18.01528  # g mol-1 (H 1.00794, O 15.9994)

FIELD_COUNT = 15
MISSING = "NAN"
SIGNATURE_SEED = 0xAAAA

# Signature span: (first element, last element), 1-based inclusive; the text hashed is those elements joined by
# their commas. Default per the EC155 manual's text (sec. 7.2.5); all [U] until checked on hardware.
SIGNATURE_SPANS: dict[str, tuple[int, int]] = {
    "co2_through_counter": (6, 14),  # EC155 manual text (sec. 7.2.5) - the default
    "all_through_counter": (1, 14),  # every element before the signature (the CSAT3B manual's wording)
    "all_before_counter": (1, 13),  # every element before the counter (what LSST found for the CSAT3B)
}
SignatureSpan = Literal["co2_through_counter", "all_through_counter", "all_before_counter"]
DEFAULT_SIGNATURE_SPAN: SignatureSpan = "co2_through_counter"

COLUMNS: tuple[StreamColumn, ...] = (
    StreamColumn("U", "m s-1"),  # 1 Ux, sonic x axis
    StreamColumn("V", "m s-1"),  # 2 Uy
    StreamColumn("W", "m s-1"),  # 3 Uz
    StreamColumn("T_SONIC", "degC"),  # 4 Ts, sonic temperature
    StreamColumn("DIAG_SONIC", "1"),  # 5 sonic diagnostic word, 0 = OK
    StreamColumn("CO2", "mmol m-3"),  # 6 CO2 density, sent in mg m-3, converted with M_CO2
    StreamColumn("H2O", "mmol m-3"),  # 7 H2O density, sent in g m-3, converted with M_H2O
    StreamColumn("DIAG_IRGA", "1"),  # 8 gas analyzer diagnostic word, 0 = OK
    StreamColumn("TA", "degC"),  # 9 air temperature (EC100 temperature probe)
    StreamColumn("PRESS", "kPa"),  # 10 air pressure (EC100 barometer)
    StreamColumn("CO2SS", "1"),  # 11 CO2 signal strength, 0..1
    StreamColumn("H2OSS", "1"),  # 12 H2O signal strength, 0..1
)
# element index (0-based) of each column, and the columns that are integers on the wire
_ELEMENTS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)
_INTEGER_ELEMENTS = frozenset((4, 7, 13))
_UNUSED = 12  # element 13: "unused" on the IRGASON/EC150 (EC155: cell pressure difference); not a column
_COUNTER = 13
_SIGNATURE = 14


def campbell_signature(data: bytes, seed: int = SIGNATURE_SEED) -> int:
    """Campbell Scientific's 16-bit signature of `data` (Campbell Scientific CSAT3B manual p. 55).

    The same seeded shift-and-add algorithm as the CSAT3B's; that the EC100 uses it too is presumed [U] (the EC155
    manual names the span it covers, not the algorithm). Kept here rather than imported from drivers/csat3b so the two
    drivers do not depend on each other. Check value: b"1.23456,-0.54321,0.08765,21.8473,0" -> 0xbc5f (the LSST span of
    an example CSAT3B record).
    """
    msb, lsb = (seed >> 8) & 0xFF, seed & 0xFF
    for byte in data:
        new = ((lsb << 1) + msb + byte + (1 if lsb & 0x80 else 0)) & 0xFF
        msb, lsb = lsb, new
    return (msb << 8) | lsb


def signed_text(elements: list[str], span: SignatureSpan = DEFAULT_SIGNATURE_SPAN) -> bytes:
    """The bytes the signature covers: elements first..last of `span` (1-based) joined by commas."""
    first, last = SIGNATURE_SPANS[span]
    return ",".join(elements[first - 1 : last]).encode("ascii")


def mass_to_molar(co2_mg_m3: float | None, h2o_g_m3: float | None) -> tuple[float | None, float | None]:
    """(CO2 mg m-3, H2O g m-3) -> (CO2 mmol m-3, H2O mmol m-3); None stays None."""
    co2 = None if co2_mg_m3 is None else co2_mg_m3 / M_CO2
    h2o = None if h2o_g_m3 is None else h2o_g_m3 * 1000.0 / M_H2O
    return co2, h2o


def parse_element(text: str, position: int) -> float | None:
    """One element (0-based `position`) as a number; `NAN` -> None; BadRecord("format") if it is neither."""
    if text == MISSING:
        return None
    if "_" in text or not text.isascii():  # int() and float() would take 1_0 and non-ASCII digits
        raise BadRecord("format", f"element {position + 1} {text!r} is not a number")
    try:
        value = int(text) if position in _INTEGER_ELEMENTS else float(text)
    except ValueError:
        raise BadRecord("format", f"element {position + 1} {text!r} is not a number") from None
    if position in _INTEGER_ELEMENTS and abs(value) > 2**53:  # beyond exact floats (and float() would overflow)
        raise BadRecord("format", f"element {position + 1} {text[:20]!r}... is out of range")
    if not math.isfinite(value):  # float() takes inf and nan
        raise BadRecord("format", f"element {position + 1} {text!r} is not a number")
    return float(value)


class IrgasonConfig(StreamConfig):
    """One IRGASON or EC150 (EC100 electronics) in a station config; `sample.yaml` documents every key."""

    driver: Literal["irgason"] = "irgason"
    frequency_hz: float = Field(default=20.0, gt=0, le=50, description="the EC100's output rate (5-50 Hz)")
    signature_span: SignatureSpan = Field(
        default=DEFAULT_SIGNATURE_SPAN, description="which elements the signature covers (unverified, see README)"
    )
    verify_signature: bool = Field(default=True, description="drop records whose signature does not match")
    signature_span_fallback: bool = Field(
        default=True, description="accept (and switch to) another span when a record's signature matches only under "
                                  "it; the switch is logged and counted")
    counter_modulus: int = Field(default=64, ge=2, le=1_000_000, description="the record counter wraps to 0 here")


class IrgasonDriver:
    """gateway.driver_api.StreamDriver for Campbell IRGASON / EC150 via the EC100 (frame grammar only)."""

    Config: ClassVar[type[StreamConfig]] = IrgasonConfig
    columns: ClassVar[tuple[StreamColumn, ...]] = COLUMNS
    terminator: ClassVar[bytes] = b"\r\n"

    def __init__(self, config: StreamConfig, *, station: str) -> None:
        if not isinstance(config, IrgasonConfig):
            config = IrgasonConfig.model_validate(config.model_dump())
        self.config: IrgasonConfig = config
        self.station = station
        self.counter_gaps = 0
        """How many times the counter skipped ahead between two good records."""
        self.lost_records = 0
        """Records those skips jumped over (lost on the line, or dropped as bad by the runner)."""
        self.last_counter: int | None = None
        """Counter of the last good record; None until the first (and after `reset`)."""
        self.counter_out_of_range = 0
        """Records kept whose counter was at or above `counter_modulus` (the configured modulus is too small)."""
        self.signature_span = config.signature_span
        """The span signatures are checked under: the configured one until a record matched only another."""
        self.signature_span_switches = 0
        """Times a record matched only another span and the driver switched to it."""

    def __repr__(self) -> str:
        return f"IrgasonDriver({self.config.name!r}, port={self.config.port!r})"

    def start_commands(self) -> list[bytes]:
        """None: the EC100 streams unprompted; its rate and format are set with Campbell's Device Configuration
        Utility or a datalogger, not over this port."""
        return []

    def reset(self) -> None:
        """Forget the last counter (call after a reconnect so the outage is not counted as a gap)."""
        self.last_counter = None

    def parse(self, frame: bytes) -> tuple[float | None, ...]:
        try:
            text = frame.decode("ascii").rstrip("\r\n")
        except UnicodeDecodeError:
            raise BadRecord("format", f"non-ASCII bytes in {frame[:60]!r}") from None
        elements = text.split(",")
        if len(elements) != FIELD_COUNT:
            raise BadRecord("format", f"{len(elements)} elements, expected {FIELD_COUNT}: {text[:80]!r}")
        signature = elements[_SIGNATURE]
        if len(signature) != 4 or not all(c in "0123456789abcdefABCDEF" for c in signature):
            raise BadRecord("format", f"signature {signature!r} is not 4 hex digits")
        if self.config.verify_signature:
            expected = campbell_signature(signed_text(elements, self.signature_span))
            if int(signature, 16) != expected:
                self._other_span_or_raise(elements, int(signature, 16), expected)
        # element 13 is not parsed: the manual calls it unused, so a unit may print 0, NAN or nothing there
        values = [None if i == _UNUSED else parse_element(element, i)
                  for i, element in enumerate(elements[:_SIGNATURE])]
        counter_value = values[_COUNTER]
        if counter_value is None:
            raise BadRecord("format", "the counter is NAN")
        self._check_counter(int(counter_value))
        co2, h2o = mass_to_molar(values[5], values[6])
        out = [values[i] for i in _ELEMENTS]
        out[5], out[6] = co2, h2o
        return tuple(out)

    def _other_span_or_raise(self, elements: list[str], sent: int, expected: int) -> None:
        """The signature failed under the active span: switch to another that matches, else BadRecord."""
        if self.config.signature_span_fallback:
            for span in get_args(SignatureSpan):
                if span != self.signature_span and campbell_signature(signed_text(elements, span)) == sent:
                    previous, self.signature_span = self.signature_span, span
                    self.signature_span_switches += 1
                    log.warning("IRGASON %r: records are signed over %s, not %s; switched (switch %d). Set "
                                "signature_span: %s in the station config to start with it", self.config.name, span,
                                previous, self.signature_span_switches, span)
                    return
        raise BadRecord("checksum", f"signature {sent:04x} != {expected:04x} over {self.signature_span}")

    def _check_counter(self, counter: int) -> None:
        modulus = self.config.counter_modulus
        if counter < 0:
            raise BadRecord("counter", f"counter {counter} is negative")
        if counter >= modulus:
            if not self.counter_out_of_range:
                log.warning("IRGASON %r: counter %d is beyond counter_modulus %d; records are kept but gaps are not "
                            "counted - raise counter_modulus to the unit's range", self.config.name, counter, modulus)
            self.counter_out_of_range += 1
            self.last_counter = None  # the next in-range counter starts a new run
            return
        last = self.last_counter
        if last is not None:
            if counter == last:
                raise BadRecord("counter", f"counter {counter} repeated")
            skipped = (counter - last - 1) % modulus
            if skipped:
                self.counter_gaps += 1
                self.lost_records += skipped
        self.last_counter = counter


Config = IrgasonConfig
