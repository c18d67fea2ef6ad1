"""A simulated automated soil chamber: the digital I/O module and the GMP252 answering Modbus RTU on one line, and
the chamber between them — a lid that follows the actuator's output after its travel time and a headspace whose CO2
rises by a known curve while the lid is closed.

Headspace CO2 (µmol mol-1), t seconds since the lid reached its closed position (the closed switch closing)::

    x(t) = x_amb + s0 · (1 - exp(-κ t)) / κ        (κ > 0: HMR, Hutchinson & Mosier 1981; Pedersen et al. 2010)
    x(t) = x_amb + s0 · t                           (κ = 0: linear)
    s0 = F / (ρ h),  ρ = p / (R T),  h = V / A

so the initial slope s0 is the true soil efflux F (µmol m-2 s-1) of `gateway.flux.soil.chamber`'s convention. After
the lid opens the headspace vents back to ambient with a 15-s time constant. `ChamberModel.closures` records every
closure with the true F, for tests and the demo to compare the central chamber job's fluxes with.

    from drivers.chamber.simulator import main
    main("pty")                                   # both devices on a PTY pair; prints the driver's end
"""

from __future__ import annotations

import contextlib
import math
import random
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from drivers.chamber import registers as reg
from gateway.driver_api import rtu
from gateway.simulation.until_stopped import serve_until_stopped

R_GAS = 8.314462618
VENT_TIME_S = 15.0

FAULTS: dict[str, str] = {
    "none": "normal operation",
    "stuck_lid": "the actuator never moves the lid (no air, a jammed hinge): the switch never reports it closed",
    "no_reply": "the I/O module never answers (wrong address or baud rate, no supply)",
    "linkage_mode": "the lid output is in linkage mode (the module drives it from its input)",
}


@dataclass
class Closure:
    """One closure as it happened: the instants the lid reached closed and (once done) open again, the true flux."""

    closed_at: float
    flux: float
    opened_at: float | None = None


@dataclass
class ChamberModel:
    """The physical chamber: lid travel and headspace CO2 (module docstring). Times are Unix seconds."""

    volume_m3: float = 0.0042
    area_m2: float = 0.0318
    flux_umol_m2_s: float | Callable[[float], float] = 2.5
    kappa_s: float = 0.002
    ambient_ppm: float = 420.0
    p_pa: float = 99000.0
    t_c: float = 15.0
    noise_ppm: float = 0.3
    travel_s: float = 2.0
    seed: int = 0
    wall_clock: Callable[[], float] = time.time
    closures: list[Closure] = field(default_factory=list)
    stuck: bool = False

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._command = False
        self._command_at = -math.inf

    @property
    def height_m(self) -> float:
        return self.volume_m3 / self.area_m2

    def true_flux(self, unix_time: float) -> float:
        f = self.flux_umol_m2_s
        return float(f(unix_time)) if callable(f) else float(f)

    def initial_slope_ppm_s(self, flux: float) -> float:
        """s0 = F / (ρ h), µmol mol-1 s-1."""
        rho = self.p_pa / (R_GAS * (self.t_c + 273.15))
        return flux / (rho * self.height_m)

    def command(self, closed: bool) -> None:
        """The actuator's output switched (the I/O module's coil)."""
        with self._lock:
            now = self.wall_clock()
            self._settle(now)
            if closed != self._command:
                self._command, self._command_at = closed, now

    def _settle(self, now: float) -> None:
        """Bring the closure log up to `now`: a lid that finished travelling has closed or opened."""
        if self.stuck:
            return
        done = now - self._command_at >= self.travel_s
        open_closure = self.closures[-1] if self.closures and self.closures[-1].opened_at is None else None
        if self._command and done and open_closure is None:
            at = self._command_at + self.travel_s
            self.closures.append(Closure(at, self.true_flux(at)))
        if not self._command and open_closure is not None:
            # the seal breaks as soon as the lid starts to lift: venting starts at the command
            open_closure.opened_at = max(self._command_at, open_closure.closed_at)

    def lid_position(self) -> str:
        """"closed", "open" or "moving"."""
        with self._lock:
            now = self.wall_clock()
            self._settle(now)
            if self.stuck:
                return "open"
            if now - self._command_at < self.travel_s:
                return "moving"
            return "closed" if self._command else "open"

    def _headspace(self, closure: Closure, at: float) -> float:
        t = max(0.0, at - closure.closed_at)
        s0 = self.initial_slope_ppm_s(closure.flux)
        rise = s0 * t if self.kappa_s <= 0 else s0 * -math.expm1(-self.kappa_s * t) / self.kappa_s
        return self.ambient_ppm + rise

    def true_co2(self, unix_time: float) -> float:
        """The headspace CO2 without analyzer noise at `unix_time` (now or earlier)."""
        with self._lock:
            self._settle(self.wall_clock())
            for closure in reversed(self.closures):
                if unix_time < closure.closed_at:
                    continue
                if closure.opened_at is None or unix_time < closure.opened_at:
                    return self._headspace(closure, unix_time)
                level = self._headspace(closure, closure.opened_at)
                decay = math.exp(-(unix_time - closure.opened_at) / VENT_TIME_S)
                return self.ambient_ppm + (level - self.ambient_ppm) * decay
            return self.ambient_ppm

    def co2(self) -> float:
        return self.true_co2(self.wall_clock()) + self._rng.gauss(0.0, self.noise_ppm)

    def temperature(self) -> float:
        return self.t_c + self._rng.gauss(0.0, 0.02)


class IoModuleSimulator:
    """The Waveshare Modbus RTU IO 8CH of registers.py: coils (FC 01/05/15), discrete inputs (FC 02), the control
    mode, serial-settings and address registers (FC 03/06). `inputs()` gives DI1..DI8; `on_coil(index, state)` is
    told of every output change."""

    def __init__(self, *, address: int = 1, inputs: Callable[[], list[bool]] | None = None,
                 on_coil: Callable[[int, bool], None] | None = None, fault: str = "none",
                 functions: frozenset[int] | None = None, control_mode_registers: bool = True,
                 input_count: int | None = None) -> None:
        """Variants another module or simulator may show (docs/reliability.md): `functions` the function codes it
        implements (exception 01 for the others; None: all of the map), `control_mode_registers` False for a
        module without 0x1000.. (exception 02), `input_count` the only count FC 01/02 accept (exception 03)."""
        self.address = address
        self.functions = functions
        self.input_count = input_count
        self.coils = [False] * reg.IO_CHANNELS
        self.holding: dict[int, int] = {reg.CONTROL_MODE_START + i: reg.CONTROL_MODE_NORMAL
                                        for i in range(reg.IO_CHANNELS)} if control_mode_registers else {}
        self.holding[reg.SERIAL_SETTINGS_REGISTER] = 0x0002  # no parity, 19200 [U]
        self.holding[reg.DEVICE_ADDRESS_REGISTER] = address
        self._inputs = inputs or (lambda: [False] * reg.IO_CHANNELS)
        self._on_coil = on_coil
        self.fault = "none"
        self.set_fault(fault)
        self.requests = 0
        self._lock = threading.Lock()

    def set_fault(self, fault: str) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; choose one of {', '.join(FAULTS)}")
        self.fault = fault
        mode = 1 if fault == "linkage_mode" else reg.CONTROL_MODE_NORMAL
        for i in range(reg.IO_CHANNELS):
            if reg.CONTROL_MODE_START + i in self.holding:
                self.holding[reg.CONTROL_MODE_START + i] = mode

    def process_rtu_frame(self, frame: bytes) -> bytes | None:
        if not rtu.crc_ok(frame) or len(frame) < 4 or frame[0] != self.address:
            return None
        with self._lock:
            self.requests += 1
            if self.fault == "no_reply":
                return None
            return self._answer(frame[1], frame[2:-2])

    def _exception(self, function: int, code: int) -> bytes:
        return rtu.exception_response(self.address, function, code)

    def _answer(self, function: int, data: bytes) -> bytes:
        if self.functions is not None and function not in self.functions:
            return self._exception(function, rtu.EXC_ILLEGAL_FUNCTION)
        if function in (rtu.FC_READ_COILS, rtu.FC_READ_DISCRETE_INPUTS):
            if len(data) != 4:
                return self._exception(function, rtu.EXC_ILLEGAL_VALUE)
            start, count = struct.unpack(">HH", data)
            if not 1 <= count <= 2000 or (self.input_count is not None and count != self.input_count):
                return self._exception(function, rtu.EXC_ILLEGAL_VALUE)
            if start + count > reg.IO_CHANNELS:
                return self._exception(function, rtu.EXC_ILLEGAL_ADDRESS)
            bits = self.coils if function == rtu.FC_READ_COILS else list(self._inputs())
            return rtu.bits_response(self.address, function, bits[start:start + count])
        if function == rtu.FC_WRITE_SINGLE_COIL:
            if len(data) != 4:
                return self._exception(function, rtu.EXC_ILLEGAL_VALUE)
            coil, value = struct.unpack(">HH", data)
            if value not in (rtu.COIL_ON, rtu.COIL_OFF):
                return self._exception(function, rtu.EXC_ILLEGAL_VALUE)
            if coil >= reg.IO_CHANNELS:
                return self._exception(function, rtu.EXC_ILLEGAL_ADDRESS)
            self._set_coil(coil, value == rtu.COIL_ON)
            return rtu.add_crc(bytes((self.address, function)) + data)
        if function == rtu.FC_WRITE_MULTIPLE_COILS:
            if len(data) < 5:
                return self._exception(function, rtu.EXC_ILLEGAL_VALUE)
            start, count, nbytes = struct.unpack(">HHB", data[:5])
            if nbytes != (count + 7) // 8 or len(data) != 5 + nbytes or not 1 <= count <= 1968:
                return self._exception(function, rtu.EXC_ILLEGAL_VALUE)
            if start + count > reg.IO_CHANNELS:
                return self._exception(function, rtu.EXC_ILLEGAL_ADDRESS)
            for offset, state in enumerate(rtu.unpack_bits(data[5:], count)):
                self._set_coil(start + offset, state)
            return rtu.add_crc(bytes((self.address, function)) + data[:4])
        if function == rtu.FC_READ_HOLDING:
            if len(data) != 4:
                return self._exception(function, rtu.EXC_ILLEGAL_VALUE)
            start, count = struct.unpack(">HH", data)
            span = range(start, start + count)
            if not 1 <= count <= 125 or any(a not in self.holding for a in span):
                return self._exception(function, rtu.EXC_ILLEGAL_ADDRESS)
            return rtu.read_response(self.address, function, [self.holding[a] for a in span])
        if function == rtu.FC_WRITE_SINGLE:
            if len(data) != 4:
                return self._exception(function, rtu.EXC_ILLEGAL_VALUE)
            address, value = struct.unpack(">HH", data)
            if address not in self.holding:
                return self._exception(function, rtu.EXC_ILLEGAL_ADDRESS)
            self.holding[address] = value
            return rtu.add_crc(bytes((self.address, function)) + data)
        return self._exception(function, rtu.EXC_ILLEGAL_FUNCTION)

    def _set_coil(self, index: int, state: bool) -> None:
        self.coils[index] = state
        if self._on_coil is not None:
            self._on_coil(index, state)


_PROBE_FLOATS = {reg.CO2.address: "co2", reg.TEMPERATURE.address: "temperature"}
_PROBE_MAPPED = frozenset({0x0000, 0x0001, 0x0004, 0x0005, reg.STATUS_START, reg.STATUS_START + 1})


class ChamberProbeSimulator:
    """The GMP252 in the headspace: the points of registers.py (FC 03), CO2 from the ChamberModel. Reads touching an
    address outside them get exception 02, as the probe answers; a float is sampled only when read whole."""

    def __init__(self, model: ChamberModel, *, address: int = 240, without: frozenset[int] = frozenset()) -> None:
        """`without`: register addresses this probe does not have (exception 02), e.g. the temperature 0x0004
        or the status 0x0800 of an older firmware."""
        self.address = address
        self.mapped = _PROBE_MAPPED - without
        self.model = model
        self.requests = 0
        self.served_co2: list[tuple[float, float]] = []  # (time, value served)
        self._lock = threading.Lock()

    def process_rtu_frame(self, frame: bytes) -> bytes | None:
        if not rtu.crc_ok(frame) or len(frame) < 4 or frame[0] != self.address:
            return None
        function, data = frame[1], frame[2:-2]
        with self._lock:
            self.requests += 1
            if function != rtu.FC_READ_HOLDING:
                return rtu.exception_response(self.address, function, rtu.EXC_ILLEGAL_FUNCTION)
            if len(data) != 4:
                return rtu.exception_response(self.address, function, rtu.EXC_ILLEGAL_VALUE)
            start, count = struct.unpack(">HH", data)
            span = range(start, start + count)
            if not 1 <= count <= 125 or any(a not in self.mapped for a in span):
                return rtu.exception_response(self.address, function, rtu.EXC_ILLEGAL_ADDRESS)
            words: dict[int, int] = {reg.STATUS_START: 0, reg.STATUS_START + 1: 0}
            for address, name in _PROBE_FLOATS.items():
                if address in span and address + 1 in span:
                    value = reg.float32(self.model.co2() if name == "co2" else self.model.temperature())
                    if name == "co2":
                        self.served_co2.append((self.model.wall_clock(), value))
                    words[address], words[address + 1] = reg.encode_float(value)
            return rtu.read_response(self.address, function, [words.get(a, 0) for a in span])


def chamber_devices(model: ChamberModel, *, io_address: int = 1, analyzer_address: int = 240, lid_output: int = 1,
                    closed_input: int = 1, open_input: int | None = None, normally_closed: bool = False,
                    fault: str = "none") -> tuple[IoModuleSimulator, ChamberProbeSimulator]:
    """The two devices of one chamber, wired as a ChamberConfig with the same keys expects: DO<lid_output> drives
    the lid, DI<closed_input> closes at the closed end, DI<open_input> (if any) at the open end;
    `normally_closed` switches open (input inactive) at their end instead."""
    model.stuck = fault == "stuck_lid"

    def inputs() -> list[bool]:
        position = model.lid_position()
        states = [False] * reg.IO_CHANNELS
        states[reg.input_of(closed_input)] = (position == "closed") != normally_closed
        if open_input is not None:
            states[reg.input_of(open_input)] = (position == "open") != normally_closed
        return states

    def on_coil(index: int, state: bool) -> None:
        if index == reg.coil_of(lid_output):
            model.command(state)

    io = IoModuleSimulator(address=io_address, inputs=inputs, on_coil=on_coil,
                           fault=fault if fault in ("no_reply", "linkage_mode") else "none")
    return io, ChamberProbeSimulator(model, address=analyzer_address)


def main(port: str, address: int = 1, flux: float = 2.5, kappa: float = 0.002, seed: int = 0, fault: str = "none",
         baudrate: int = 19200) -> None:
    """Entry for `sinkwatch simulate chamber --port P`: one chamber (I/O module at `address`, GMP252 at 240, 8E1)
    until Ctrl-C; prints every closure with its true flux."""
    from gateway.simulation.pty import python_pty_pair
    from gateway.simulation.rtu_line import RtuLineSimulator

    model = ChamberModel(flux_umol_m2_s=flux, kappa_s=kappa, seed=seed)
    devices = chamber_devices(model, io_address=address, fault=fault)
    with contextlib.ExitStack() as stack:
        sim_end = driver_end = port
        if port == "pty":
            sim_end, driver_end = stack.enter_context(python_pty_pair())
        stack.enter_context(RtuLineSimulator(sim_end, list(devices), baudrate=baudrate, parity="E", stopbits=1))
        print(f"chamber simulator (I/O module at {address}, GMP252 at 240, {baudrate} 8E1, true flux {flux:g} "
              f"umol m-2 s-1, kappa {kappa:g} s-1, fault {fault!r}): point the driver's port at {driver_end}",
              flush=True)
        reported = 0

        def report_closures() -> None:
            nonlocal reported
            for closure in model.closures[reported:]:
                print(f"lid closed at {closure.closed_at:.1f}, true flux {closure.flux:g}", flush=True)
            reported = len(model.closures)

        serve_until_stopped(lambda: f"stopped after {len(model.closures)} closures", report_closures)
