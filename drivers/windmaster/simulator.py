"""A simulated Gill WindMaster in M1 (UVW continuous ASCII) mode, drawing wind and sonic temperature from the shared
turbulence field (gateway/simulation/turbulence.py), with the configuration-mode commands `*`, `D3` and `Q`.

    from drivers.windmaster.simulator import main
    main("pty")                      # makes a PTY, prints the driver's end; Ctrl-C stops
    main("tcp://127.0.0.1:4001")     # an instrument behind a serial-to-Ethernet converter
"""

from __future__ import annotations

import math
from typing import Any

from drivers.windmaster import grammar
from gateway.simulation.stream_simulator import StreamSimulator, run_stream_simulator

SETTINGS = "M1,U1,O1,L1,P20,B4,H1,NQ,F1,E1,T1,S4,C2,G0,K50,J2,V1,X1,Y1,Z1"  # D3 reply (P20 = 20 Hz [U])


def speed_of_sound(ts_c: float) -> float:
    """Sonic temperature from SOS: Ts = c² / 403 − 273.15 (Kaimal & Gaynor 1991); inverted here."""
    return math.sqrt(403.0 * (ts_c + 273.15))


class WindMasterSimulator(StreamSimulator):
    name = "windmaster"
    terminator = grammar.TERMINATOR

    def __init__(self, port: str, *, node: str = "Q", high_resolution: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("baudrate", 38400)
        super().__init__(port, **kwargs)
        self.node = node
        self.high_resolution = high_resolution
        self.config_mode = False

    def frame(self, index: int, unix_time: float) -> bytes:
        u, v, w, ts_k = (float(x) for x in self.sonic(index))
        ts = ts_k - 273.15
        status = 0
        decimals = 3 if self.high_resolution else 2
        values: list[float | None] = [round(u, decimals), round(v, decimals), round(w, decimals),
                                      round(speed_of_sound(ts), 2), round(ts, 2)]
        printed: list[float] = [x for x in values if x is not None]
        if self.nan_now():
            status = 0x01  # axis 1 failed: the wind components are not measured
            printed[:3] = [999.99, 999.99, 999.99]
            values[:3] = [None, None, None]
        self.record((*values, float(status)))
        pu, pv, pw, sos, pts = printed
        return grammar.build_frame(self.node, pu, pv, pw, sos, pts, status, high_resolution=self.high_resolution)

    def corrupt(self, frame: bytes) -> bytes:
        end = frame.index(bytes([grammar.ETX]))
        wrong = int(frame[end + 1:end + 3], 16) ^ 0x5A
        return frame[:end + 1] + f"{wrong:02X}".encode() + frame[end + 3:]

    def on_command(self, line: bytes) -> bytes | None:
        command = line.strip()
        if command in (b"*", b"*" + self.node.encode()):
            self.config_mode = self.paused = True
            return b"CONFIGURATION MODE\r\n"
        if not self.config_mode:
            return None  # in measurement mode everything but `*` is ignored
        if command == b"D3":
            return SETTINGS.replace("NQ", "N" + self.node).encode() + b"\r\n"
        if command == b"Q":
            self.config_mode = self.paused = False
            return None
        return b"INVALID COMMAND\r\n" if command else None


def main(port: str, fault: str = "none", seed: int = 0, frequency_hz: float = 20.0) -> None:
    """Entry for `sinkwatch simulate windmaster --port P` (no address: the node letter is Q; `--address` is refused)."""
    run_stream_simulator(WindMasterSimulator(port, fault=fault, seed=seed, frequency_hz=frequency_hz))
