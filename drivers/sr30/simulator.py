"""A simulated Hukseflux SR30-D1 answering Modbus RTU (FC 03 and FC 04 alike, as the manual says the instrument
does), serving the whole register map of registers.py.

`process_rtu_frame` is the whole device; `RtuLineSimulator` (gateway.simulation.rtu_line) puts it on a serial port,
alone or beside other Modbus devices. The irradiance follows the sun at the simulated site (gateway.simulation.
weather: solar geometry, Haurwitz clear sky, passing clouds), the body temperature the air plus solar heating.
With `fixed` raw values the replies are exact frames for byte-for-byte tests.

    from drivers.sr30.simulator import main
    main("pty", address=1)                       # a PTY pair; prints the driver's end
"""

from __future__ import annotations

import random
import struct
import threading
import time
from collections.abc import Callable

from drivers.sr30 import registers as reg
from gateway.driver_api import rtu
from gateway.simulation.until_stopped import serve_until_stopped
from gateway.simulation.weather import MetSignal

FAULTS: dict[str, str] = {
    "none": "normal operation",
    "no_reply": "receive requests but never answer (dead sensor, wrong baud rate or parity, swapped A/B)",
    "bad_crc": "answer with a corrupted CRC (noise, missing termination)",
    "out_of_range": "irradiance registers hold -50 W m-2, as a damaged thermopile or amplifier might",
    "tilted": "tilt sensor reports 6.5 deg (the mount was knocked)",
    "fan_stopped": "ventilator speed 0 rpm (fan failure)",
    "humid": "internal humidity 80 % (moisture inside the body)",
}

SENSITIVITY_UV = 10.0  # uV per W m-2, a plausible thermopile sensitivity for the simulated unit
FAN_RPM = 4800


class SR30Simulator:
    def __init__(
        self,
        *,
        address: int = reg.DEFAULT_ADDRESS,
        fault: str = "none",
        seed: int = 0,
        signal: MetSignal | None = None,
        fixed: dict[str, int | float] | None = None,
        wall_clock: Callable[[], float] = time.time,
        functions: frozenset[int] = frozenset((rtu.FC_READ_HOLDING, rtu.FC_READ_INPUT)),
        without_points: frozenset[str] = frozenset(),
        lsw_first: bool = False,
    ) -> None:
        """Variants a unit or another simulator may show (docs/reliability.md): `functions` the read functions
        it implements (exception 01 for the other), `without_points` points it does not have (exception 02 for a
        read touching them), `lsw_first` 32-bit values least-significant word first."""
        if not 1 <= address <= 247:
            raise ValueError(f"address {address} is outside the Modbus slave range 1..247")
        self.address = address
        self.signal = signal or MetSignal(seed=seed)
        self.fixed = dict(fixed or {})  # raw (undivided) register values by point name, overriding the signal
        self.wall_clock = wall_clock
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._fault = "none"
        self.set_fault(fault)
        self.requests = 0
        self.functions = frozenset(functions)
        unknown = set(without_points) - set(reg.POINT_BY_NAME)
        if unknown:
            raise ValueError(f"unknown points {sorted(unknown)}; choose from {', '.join(reg.POINT_BY_NAME)}")
        self.absent = frozenset(a for name in without_points for a in reg.POINT_BY_NAME[name].addresses)
        self.lsw_first = lsw_first
        # values as the driver must decode them, one entry per read covering the measurement registers whole
        self.served: list[dict[str, float]] = []

    @property
    def fault(self) -> str:
        return self._fault

    def set_fault(self, fault: str) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; choose one of {', '.join(FAULTS)}")
        with self._lock:
            self._fault = fault

    def _raw_values(self) -> dict[str, int | float]:
        """Every point's raw register value now (the caller holds the lock: this draws from the RNG)."""
        now = self.wall_clock()
        ta = self.signal.ta(now)
        irradiance = self.signal.sw_in(now) + self._rng.gauss(-0.3, 0.2)  # a small night-time thermal offset
        if self._fault == "out_of_range":
            irradiance = -50.0
        body = ta + 1.5 + irradiance / 250.0 + self._rng.gauss(0, 0.02)
        raw: dict[str, int | float] = {
            "modbus_address": self.address,
            "serial_settings": 5,
            "irradiance": round(irradiance * 100),
            "irradiance_uncompensated": round(irradiance * (1 + 0.0005 * (body - 20.0)) * 100),
            "body_temperature": round(body * 100),
            "sensor_resistance": 1000,
            "scale_irradiance": 100,
            "scale_temperature": 100,
            "sensor_voltage": round(irradiance * SENSITIVITY_UV * 1000),
            "serial_number": 30123,
            "sensitivity": SENSITIVITY_UV,
            "calibration_date": 20250115,
            "internal_humidity": 8000 if self._fault == "humid" else 1200,
            "internal_humidity_temperature": round(body * 100),
            "tilt_angle": 650 if self._fault == "tilted" else 15,
            "reserved_00c3": 0,
            "fan_speed": 0 if self._fault == "fan_stopped" else FAN_RPM,
            "heater_current": 50,
        }
        raw.update(self.fixed)
        return raw

    def registers(self, start: int, count: int) -> list[int]:
        """The words of `count` registers from `start` (all mapped), sampling the signal once."""
        raw = self._raw_values()
        words: dict[int, int] = {}
        for point in reg.POINTS:
            words.update(zip(point.addresses, reg.encode_raw(point.type, raw[point.name], lsw_first=self.lsw_first),
                             strict=True))
        span = range(start, start + count)
        measured = reg.points_by_name(reg.MEASUREMENT_POINTS)
        if all(set(p.addresses) <= set(span) for p in measured):
            served = {p.name: reg.scaled(p, reg.decode_raw(p.type, [words[a] for a in p.addresses],
                                                           lsw_first=self.lsw_first),
                                         {"scale_irradiance": int(raw["scale_irradiance"]),
                                          "scale_temperature": int(raw["scale_temperature"])})
                      for p in measured}
            self.served.append(served)
        return [words[a] for a in span]

    def process_rtu_frame(self, frame: bytes) -> bytes | None:
        if len(frame) < 4 or not rtu.crc_ok(frame) or frame[0] != self.address:
            return None
        with self._lock:
            self.requests += 1
            if self._fault == "no_reply":
                return None
            reply = self._answer(frame[1], frame[2:-2])
            if self._fault == "bad_crc":
                return reply[:-2] + bytes((reply[-2] ^ 0x5A, reply[-1]))
            return reply

    def _answer(self, function: int, data: bytes) -> bytes:
        if function not in (rtu.FC_READ_HOLDING, rtu.FC_READ_INPUT) or function not in self.functions:
            return rtu.exception_response(self.address, function, rtu.EXC_ILLEGAL_FUNCTION)
        if len(data) != 4:
            return rtu.exception_response(self.address, function, rtu.EXC_ILLEGAL_VALUE)
        start, count = struct.unpack(">HH", data)
        if not 1 <= count <= reg.MAX_READ_REGISTERS:
            return rtu.exception_response(self.address, function, rtu.EXC_ILLEGAL_VALUE)
        if any(a not in reg.MAPPED_ADDRESSES or a in self.absent for a in range(start, start + count)):
            return rtu.exception_response(self.address, function, rtu.EXC_ILLEGAL_ADDRESS)
        return rtu.read_response(self.address, function, self.registers(start, count))


def main(port: str, address: int = reg.DEFAULT_ADDRESS, fault: str = "none", seed: int = 0,
         baudrate: int = reg.DEFAULT_SERIAL[0]) -> None:
    """Entry for `sinkwatch simulate sr30 --port P`: serve one SR30-D1 (8E1, the factory format) until Ctrl-C."""
    import contextlib

    from gateway.simulation.pty import python_pty_pair
    from gateway.simulation.rtu_line import RtuLineSimulator

    sensor = SR30Simulator(address=address, fault=fault, seed=seed)
    with contextlib.ExitStack() as stack:
        sim_end = driver_end = port
        if port == "pty":
            sim_end, driver_end = stack.enter_context(python_pty_pair())
        stack.enter_context(RtuLineSimulator(sim_end, [sensor], baudrate=baudrate, parity="E", stopbits=1))
        print(f"SR30-D1 simulator at address {address}, {baudrate} 8E1, fault {fault!r}: point the driver's port at "
              f"{driver_end}", flush=True)
        serve_until_stopped(lambda: f"stopped after {sensor.requests} requests")
