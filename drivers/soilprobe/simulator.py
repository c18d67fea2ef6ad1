"""A generic RS-485 soil probe (register layout A or B, see registers.py) answering Modbus RTU.

`process_rtu_frame` is the whole device; `RtuLineSimulator` (gateway/simulation/rtu_line.py) puts one or several of
them on a serial port. With `fixed` values the replies are exactly the EXAMPLE frames of §1.5 (a unit test checks
them byte for byte); otherwise the signal is plausible soil: SWC drying slowly around 28 %, temperature following a
damped diurnal cycle, EC following SWC.

    from drivers.soilprobe.simulator import main
    main("pty", address=1)                       # a PTY pair; prints the driver's end
"""

from __future__ import annotations

import math
import random
import struct
import threading
import time
from collections.abc import Callable

from drivers.soilprobe import registers as reg
from gateway.driver_api import rtu
from gateway.simulation.until_stopped import serve_until_stopped

FAULTS: dict[str, str] = {
    "none": "normal operation",
    "no_reply": "receive requests but never answer (dead probe, wrong baud rate, swapped A/B)",
    "bad_crc": "answer with a corrupted CRC (noise, missing termination)",
    "out_of_range": "registers hold 0xFFFF / 0x7FFF, as a probe with a broken sensing element does",
    "fc04_only": "answer FC 04 only; FC 03 gets exception 01 (some models)",
}


class SoilProbeSimulator:
    def __init__(
        self,
        *,
        address: int = 1,
        layout: str = "A",
        fault: str = "none",
        seed: int = 0,
        fixed: dict[str, float] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not 1 <= address <= 247:
            raise ValueError(f"address {address} is outside the Modbus slave range 1..247")
        self.address = address
        self.layout = reg.Layout(layout)
        self.fixed = dict(fixed or {})
        self.wall_clock = wall_clock
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._fault = "none"
        self.set_fault(fault)
        self.requests = 0
        self.served: list[dict[str, float]] = []

    @property
    def fault(self) -> str:
        return self._fault

    def set_fault(self, fault: str) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; choose one of {', '.join(FAULTS)}")
        with self._lock:
            self._fault = fault

    def _values(self) -> dict[str, float]:
        hour = (self.wall_clock() / 3600.0) % 24.0
        swc = 28.0 - 0.5 * math.sin(2 * math.pi * hour / 24.0) + self._rng.gauss(0, 0.05)
        values = {
            "swc": swc,
            "ts": 11.0 + 2.0 * math.cos(2 * math.pi * (hour - 17.0) / 24.0) + self._rng.gauss(0, 0.02),
            "ec": 15.0 * swc + self._rng.gauss(0, 2.0),
        }
        values.update(self.fixed)
        return values

    def _registers(self) -> list[int]:
        words = [0] * reg.REGISTER_COUNT[self.layout]
        values = self._values()
        for spec in reg.VALUES[self.layout]:
            words[spec.offset] = spec.encode(values[spec.name])
        if self._fault == "out_of_range":
            for spec in reg.VALUES[self.layout]:
                words[spec.offset] = 0x7FFF if spec.signed else 0xFFFF
        # pH x10 / salinity, TDS, permittivity x100: plausible constants, never polled by the driver
        for offset, word in zip(range(3, len(words)), (70, 200, 2500), strict=False):
            words[offset] = word
        served = {spec.name: spec.decode(words[spec.offset]) for spec in reg.VALUES[self.layout]}
        self.served.append(served)
        return words

    def process_rtu_frame(self, frame: bytes) -> bytes | None:
        if not rtu.crc_ok(frame) or frame[0] != self.address or len(frame) < 4:
            return None
        with self._lock:
            self.requests += 1
            if self._fault == "no_reply":
                return None
            function = frame[1]
            reply = self._answer(function, frame[2:-2])
            if self._fault == "bad_crc":
                return reply[:-2] + bytes((reply[-2] ^ 0x5A, reply[-1]))
            return reply

    def _answer(self, function: int, data: bytes) -> bytes:
        allowed = (rtu.FC_READ_INPUT,) if self._fault == "fc04_only" else (rtu.FC_READ_HOLDING, rtu.FC_READ_INPUT)
        if function not in allowed:
            return rtu.exception_response(self.address, function, rtu.EXC_ILLEGAL_FUNCTION)
        if len(data) != 4:
            return rtu.exception_response(self.address, function, rtu.EXC_ILLEGAL_VALUE)
        start, count = struct.unpack(">HH", data)
        words = self._registers()
        if count < 1 or start + count > len(words):
            return rtu.exception_response(self.address, function, rtu.EXC_ILLEGAL_ADDRESS)
        return rtu.read_response(self.address, function, words[start : start + count])


def main(port: str, address: int = 1, fault: str = "none", seed: int = 0, layout: str = "A",
         baudrate: int = 9600) -> None:
    """Entry for `sinkwatch simulate soilprobe --port P`: serve one probe (8N1) until Ctrl-C."""
    import contextlib

    from gateway.simulation.pty import python_pty_pair
    from gateway.simulation.rtu_line import RtuLineSimulator

    probe = SoilProbeSimulator(address=address, layout=layout, fault=fault, seed=seed)
    with contextlib.ExitStack() as stack:
        sim_end = driver_end = port
        if port == "pty":
            sim_end, driver_end = stack.enter_context(python_pty_pair())
        stack.enter_context(RtuLineSimulator(sim_end, [probe], baudrate=baudrate, parity="N", stopbits=1))
        print(f"soil probe simulator (layout {layout}) at address {address}, {baudrate} 8N1, fault {fault!r}: "
              f"point the driver's port at {driver_end}", flush=True)
        serve_until_stopped(lambda: f"stopped after {probe.requests} requests")
