"""An LI-COR LI-7500DS/RS on a wire: `(Data ...)` records at 10/20 Hz on a serial port or a TCP server (the
instrument's port 7200), CO2/H2O molar densities from the shared turbulence field (`gateway.simulation`), and
`(Ack ...)` / `(Error ...)` answers to configuration commands.

Built on `gateway.simulation.stream_simulator.StreamSimulator` (transports, pacing, fault modes, served log).
Each record's values, in `LI7500Driver.columns` order, are logged exactly as a reader decodes them from the text.

Fault modes (`FAULTS` of the base) as this instrument shows them:
- `bad_checksum`: the grammar has no checksum, so a corrupted record is sent truncated (its last `)` lost), which
  the driver rejects as `format` - the nearest real equivalent (a record cut by a dropped connection or noise);
- `nan`: one value of a record is sent as `nan` (how the instrument marks a missing value is not documented);
- the others (`no_output`, `garbage`, `slow`, `disconnect`, `clock_drift`) as the base describes them.

Commands honoured (one per line, LF or CR terminated; characters outside the outermost parentheses ignored, as
on the instrument): `(Outputs(RS232 ...))` with `(Freq n)`, `(Labels TRUE|FALSE)` and `(<Label> TRUE|FALSE)`
items. Labels switched on by a command are output in the order the command lists them, followed by those that
were on and are not mentioned - the driver's assumption for the tab-delimited form (unverified on hardware).
A changed `Freq` is acknowledged and remembered in `requested_frequency_hz` but the pacing stays as started.
Anything else that parses gets `(Ack (val TRUE))`; what does not parse gets `(Error (Message "..."))`. Both
reply forms are our guess (the manual names the messages, not their content).

Command line (`sinkwatch simulate li7500 --port P`)::

    main("tcp://127.0.0.1:7200")      # TCP server, like the instrument's Ethernet port
    main("pty")                       # own pseudo-terminal; prints the driver's end
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

from drivers.li7500 import sexpr
from drivers.li7500.driver import COLUMN_LABELS, DEFAULT_OUTPUTS
from gateway.simulation.stream_simulator import StreamSimulator, run_stream_simulator

DIAG_OK = 248  # 0xF8: every "OK" bit set (original LI-7500 bit map, manual p. 3-36); the DS/RS bit map is unverified
_COLUMN_ORDER = tuple(COLUMN_LABELS.values())


class LI7500Simulator(StreamSimulator):
    """A simulated LI-7500DS/RS; `labels` and `outputs` are its initial (Outputs ...) state."""

    name: ClassVar[str] = "li7500"
    terminator: ClassVar[bytes] = b"\n"

    def __init__(
        self,
        port: str,
        *,
        labels: bool = True,
        outputs: Sequence[str] = DEFAULT_OUTPUTS,
        pressure_kpa: float = 97.5,
        digits: int = 7,
        **base: Any,
    ) -> None:
        base.setdefault("frequency_hz", 10.0)
        super().__init__(port, **base)
        self.labels = labels
        self.outputs: list[str] = list(outputs)
        self.pressure_kpa = pressure_kpa
        self.digits = digits
        self.requested_frequency_hz = self.frequency_hz
        self.record_count = 0
        self.outputs_changed_at_record: int | None = None  # records served before the last (Outputs ...) command

    # --- one record --------------------------------------------------------------------------------------------

    def _measure(self, index: int) -> dict[str, float]:
        co2, h2o = (float(x) for x in self.gas(index))
        ts_kelvin = float(self.sonic(index)[3])
        return {
            "Ndx": float(index % 100_000_000),
            "DiagVal": float(DIAG_OK),
            "CO2Raw": 0.15,
            "CO2D": co2,
            "H2ORaw": 0.035,
            "H2OD": h2o,
            "Temp": ts_kelvin - 273.15,
            "Pres": self.pressure_kpa + 0.05 * math.sin(index / 5000.0),
            "Aux": 0.0,
            "Cooler": 1.6,
            "CO2SS": 97.0 + 2.0 * math.sin(index / 700.0),
        }

    def _text(self, label: str, value: float | None) -> str:
        if value is None:
            return "nan"
        if label in ("Ndx", "DiagVal", "Aux"):
            return str(int(value))
        return sexpr.format_number(value, self.digits)

    def frame(self, index: int, unix_time: float) -> bytes:
        measured = self._measure(index)
        outputs = list(self.outputs)
        texts = {label: self._text(label, measured.get(label, 0.0)) for label in outputs}
        blankable = [label for label in outputs if label in _COLUMN_ORDER and label != "DiagVal"]
        if blankable and self.nan_now():
            texts[self.rng.choice(blankable)] = "nan"
        decoded = {label: (None if text == "nan" else sexpr.number(text)) for label, text in texts.items()}
        self.record(tuple(decoded.get(label) for label in _COLUMN_ORDER))
        self.record_count += 1
        if self.labels:
            body = sexpr.render(("Data", *((label, texts[label]) for label in outputs)), space_after_head=True)
        else:
            body = "\t".join(texts[label] for label in outputs)
        return body.encode("ascii") + self.terminator

    def corrupt(self, frame: bytes) -> bytes:
        """No checksum to break: lose the record's end instead (a truncated record)."""
        body = frame.rstrip(b"\r\n")
        return body[: max(1, len(body) - 1)] + self.terminator

    # --- commands ------------------------------------------------------------------------------------------------

    def on_command(self, line: bytes) -> bytes | None:
        text = line.decode("ascii", errors="replace")
        start, end = text.find("("), text.rfind(")")
        try:
            if start < 0 or end < start:
                raise sexpr.SExprError("no parenthesised command")
            command = sexpr.parse(text[start : end + 1])
        except sexpr.SExprError as error:
            return _reply(("Error", ("Message", str(error))))
        if command[0] == "Outputs":
            for item in command[1:]:
                if isinstance(item, tuple) and item[0] == "RS232":
                    self._apply_rs232(item)
                    self.outputs_changed_at_record = self.record_count
        return _reply(("Ack", ("val", "TRUE")))

    def _apply_rs232(self, group: sexpr.SExpr) -> None:
        switched_on: list[str] = []
        for item in group[1:]:
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], str)):
                continue
            label, value = item[0], item[1]
            assert isinstance(label, str)
            if label == "Freq":
                self.requested_frequency_hz = float(value)
            elif label == "Labels":
                self.labels = value == "TRUE"
            elif label == "DiagRec":
                continue
            elif value == "TRUE":
                switched_on.append(label)
            elif value == "FALSE" and label in self.outputs:
                self.outputs.remove(label)
        self.outputs = switched_on + [label for label in self.outputs if label not in switched_on]


def _reply(message: sexpr.SExpr) -> bytes:
    return (sexpr.render(message) + "\n").encode("ascii")


def main(port: str, fault: str = "none", seed: int = 0) -> None:
    """Entry for `sinkwatch simulate li7500 --port P` (serial path, `pty`, or tcp://HOST:PORT); no address
    (the analyzer has no bus address; `--address` is refused)."""
    run_stream_simulator(LI7500Simulator(port, fault=fault, seed=seed))
