"""A Campbell IRGASON (or EC150 + CSAT3A) behind an EC100: unprompted 15-element ASCII lines at 10/20 Hz on a
serial port (RS-485 or USB in real life) or a TCP server, from the shared turbulence field.

Built on `gateway.simulation.stream_simulator.StreamSimulator` (transports, pacing, fault modes, served log). The
sonic elements come from `sonic(index)`, the gas densities from `gas(index)` converted to the instrument's mass
densities (mg m-3, g m-3) with the driver's molar masses. Each line's values are logged in `IrgasonDriver.columns`
order exactly as a reader decodes them (CO2/H2O converted back to mmol m-3 from the printed text).

**Lag.** The IRGASON's sonic and gas paths are co-located and sampled by the same electronics, so its gas series
has (almost) no lag behind its sonic. The turbulence field always delays the gas by `spec.lag_s`; this simulator
therefore uses `TurbulenceSpec(lag_s=0.0)` unless given a spec, and a spec passed in should set `lag_s=0` too
unless a separation is being simulated on purpose (an EC150 mounted away from its CSAT3A).

Fault modes (the base's `FAULTS`) as this instrument shows them: `bad_checksum` changes the signature's last hex
digit (BadRecord "checksum"); `nan` sends one value as `NAN` (None); `no_output` and `disconnect` skip records,
which the rolling counter (sample index modulo `counter_modulus`) shows as a gap; `garbage`, `slow`,
`clock_drift` as the base describes them. The EC100 takes no commands on this port; none are answered.

Command line (`sinkwatch simulate irgason --port P`)::

    main("pty")                       # own pseudo-terminal; prints the driver's end
    main("tcp://127.0.0.1:5200")      # TCP server (e.g. behind a serial-to-Ethernet converter)
"""

from __future__ import annotations

from typing import Any, ClassVar

from drivers.irgason.driver import (
    DEFAULT_SIGNATURE_SPAN,
    M_CO2,
    M_H2O,
    MISSING,
    SignatureSpan,
    campbell_signature,
    mass_to_molar,
    signed_text,
)
from gateway.simulation.stream_simulator import StreamSimulator, run_stream_simulator
from gateway.simulation.turbulence import TurbulenceSpec

# printf formats of elements 1-13 (fixed decimals; the EC100's own number of digits is not documented here)
_FORMATS = ("{:.5f}", "{:.5f}", "{:.5f}", "{:.4f}", "{:d}", "{:.3f}", "{:.5f}", "{:d}", "{:.3f}", "{:.4f}",
            "{:.3f}", "{:.3f}", "{:d}")
# elements the `nan` fault may blank: the measured values, not the diagnostics
_BLANKABLE = (0, 1, 2, 3, 5, 6, 8, 9, 10, 11)


class IrgasonSimulator(StreamSimulator):
    """A simulated IRGASON/EC100 output stream."""

    name: ClassVar[str] = "irgason"
    terminator: ClassVar[bytes] = b"\r\n"

    def __init__(
        self,
        port: str,
        *,
        signature_span: SignatureSpan = DEFAULT_SIGNATURE_SPAN,
        counter_modulus: int = 64,
        pressure_kpa: float = 98.0,
        **base: Any,
    ) -> None:
        base.setdefault("frequency_hz", 20.0)
        base.setdefault("spec", TurbulenceSpec(lag_s=0.0))
        super().__init__(port, **base)
        self.signature_span = signature_span
        self.counter_modulus = counter_modulus
        self.pressure_kpa = pressure_kpa

    def elements(self, index: int) -> list[float | int | None]:
        """Elements 1-13 of sample `index` in the instrument's units (before formatting and faults)."""
        u, v, w, ts_kelvin = (float(x) for x in self.sonic(index))
        co2, h2o = (float(x) for x in self.gas(index))
        return [
            u, v, w, ts_kelvin - 273.15, 0,
            co2 * M_CO2,  # mmol m-3 x mg mmol-1 = mg m-3
            h2o * M_H2O / 1000.0,  # mmol m-3 x mg mmol-1 / 1000 = g m-3
            0,
            ts_kelvin - 273.15 - 0.4,  # air temperature: Ts is a virtual temperature, a little above it
            self.pressure_kpa,
            0.92, 0.95,
            0,
        ]

    def frame(self, index: int, unix_time: float) -> bytes:
        elements = self.elements(index)
        if self.nan_now():
            elements[self.rng.choice(_BLANKABLE)] = None
        texts = [MISSING if value is None else fmt.format(value) for fmt, value in zip(_FORMATS, elements, strict=True)]
        texts.append(str(index % self.counter_modulus))
        signature = campbell_signature(signed_text(texts, self.signature_span))
        decoded = [None if text == MISSING else float(text) for text in texts[:12]]
        decoded[5], decoded[6] = mass_to_molar(decoded[5], decoded[6])
        self.record(decoded)
        return (",".join(texts) + f",{signature:04x}").encode("ascii") + self.terminator


def main(port: str, fault: str = "none", seed: int = 0) -> None:
    """Entry for `sinkwatch simulate irgason --port P` (serial path, `pty`, or tcp://HOST:PORT); no address
    (the EC100 output has no bus address; `--address` is refused)."""
    run_stream_simulator(IrgasonSimulator(port, fault=fault, seed=seed))
