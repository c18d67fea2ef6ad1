"""A simulated Campbell CSAT3B streaming unprompted ASCII records with a rolling counter and signature, drawn from
the shared turbulence field (gateway/simulation/turbulence.py).

    from drivers.csat3b.simulator import main
    main("pty")                      # makes a PTY, prints the driver's end; Ctrl-C stops
"""

from __future__ import annotations

from typing import Any

from drivers.csat3b import grammar
from gateway.simulation.stream_simulator import StreamSimulator, run_stream_simulator

NAN_DIAG = 0b1000  # [U] a diagnostic bit set while the sonic cannot measure; any non-zero diag means "not OK"


class CSAT3BSimulator(StreamSimulator):
    name = "csat3b"
    terminator = grammar.TERMINATOR

    def __init__(self, port: str, *, span: grammar.SignatureSpan = grammar.SIGNATURE_SPAN, **kwargs: Any) -> None:
        kwargs.setdefault("baudrate", 115200)
        super().__init__(port, **kwargs)
        self.span = span

    def frame(self, index: int, unix_time: float) -> bytes:
        u, v, w, ts_k = (float(x) for x in self.sonic(index))
        values: list[float | None] = [round(u, 5), round(v, 5), round(w, 5), round(ts_k - 273.15, 4)]
        diag = 0
        if self.nan_now():
            values = [None, None, None, None]
            diag = NAN_DIAG
        self.record((*values, float(diag)))
        ux, uy, uz, ts = values
        return grammar.build_record(ux, uy, uz, ts, diag, index % grammar.COUNTER_MODULUS, span=self.span)

    def corrupt(self, frame: bytes) -> bytes:
        head, _, sig = frame.rstrip(b"\r").rpartition(b",")
        return head + b"," + f"{int(sig, 16) ^ 0x0F0F:04x}".encode() + grammar.TERMINATOR


def main(port: str, fault: str = "none", seed: int = 0, frequency_hz: float = 20.0) -> None:
    """Entry for `sinkwatch simulate csat3b --port P` (no address; `--address` is refused)."""
    run_stream_simulator(CSAT3BSimulator(port, fault=fault, seed=seed, frequency_hz=frequency_hz))
