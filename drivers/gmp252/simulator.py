"""A Vaisala GMP252 on a wire: Modbus RTU over a serial port (real or pseudo-terminal) or Modbus TCP.

The responder is hand-rolled over pyserial rather than pymodbus' server because fault injection needs control of the raw
bytes (a reply with a corrupted CRC, silence instead of a reply). It serves the whole holding-register map of
`registers.POINTS` as the GMP252 User Guide M211897EN-D App. A documents it: CDAB floats, int16 sentinels, exception 02
outside the map, FC16 writes to the volatile compensation registers, and no answer to other slave addresses.

Every float CO2 and temperature value that leaves in an intact frame is appended to `served_co2` /
`served_temperature`, so an end-to-end test can compare what arrived downstream with what was sent.

Command line use (wired into `sinkwatch simulate gmp252` by gateway/cli.py)::

    from drivers.gmp252.simulator import main
    main("/dev/ttyUSB1", address=240, fault="none", seed=0)   # blocks until Ctrl-C
    main("pty")                                                # makes a PTY pair, prints the driver's end
    main("tcp://127.0.0.1:5020")                               # Modbus TCP
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Self

import serial

from drivers.gmp252 import registers as reg
from drivers.gmp252 import rtu
from gateway.simulation.signal import SignalModel
from gateway.simulation.until_stopped import serve_until_stopped

log = logging.getLogger(__name__)

FAULTS: dict[str, str] = {
    "none": "normal operation",
    "no_reply": "receive requests but never answer (a dead probe, wrong baud rate or swapped A/B)",
    "bad_crc": "answer with a corrupted CRC (electrical noise, missing termination); on TCP: no answer",
    "nan": "CO2 register holds quiet NaN (the probe has no value)",
    "device_error": "device status 2 (error) with error code 0x4000 (IR source temperature)",
}

DEVICE_ERROR_CODE = 0x4000


_STATIC_DEFAULTS: dict[str, float | int] = {
    "comp_pressure_eeprom": 1013.25,
    "comp_temperature_eeprom": 25.0,
    "comp_rh_eeprom": 0.0,
    "comp_o2_eeprom": 0.0,
    "comp_pressure": 1013.25,
    "comp_temperature": 25.0,
    "comp_rh": 0.0,
    "comp_o2": 0.0,
    "bit_rate": 2,
    "parity": 0,
    "stop_bits": 2,
    "co2_filter": 100,  # [U] default not in the manual excerpts we have
}
_DYNAMIC = ("co2", "temperature", "co2_int", "co2_int_x10", "device_status", "co2_status", "error_code")
_PARITY_ENUM = {"N": 0, "E": 1, "O": 2}
_BAUD_ENUM = {4800: 0, 9600: 1, 19200: 2, 38400: 3, 57600: 4, 115200: 5}


def parse_tcp_endpoint(port: str) -> tuple[str, int]:
    """'tcp://host:port' or 'host:port' -> (host, port)."""
    text = port.removeprefix("tcp://")
    host, sep, number = text.rpartition(":")
    if not sep or not host or not number.isdigit():
        raise ValueError(f"{port!r} is not a TCP endpoint; expected tcp://HOST:PORT, e.g. tcp://127.0.0.1:5020")
    return host, int(number)


class GMP252Simulator:
    """A simulated GMP252 serving Modbus RTU on `port` (or Modbus TCP when `tcp=True`).

    `port` is a serial device path for RTU, or `tcp://host:port` (port 0 picks a free one; see `tcp_endpoint`).
    Fault modes are listed in `FAULTS` and can be switched while running with `set_fault`. `without_points` names
    points this probe does not implement (variant mode; default none): reads touching them get exception 02.
    """

    def __init__(
        self,
        port: str,
        *,
        address: int = 240,
        baudrate: int = 19200,
        parity: str = "N",
        stopbits: int = 2,
        bytesize: int = 8,
        tcp: bool = False,
        seed: int = 0,
        warmup_s: float = 0.0,
        not_ready_s: float | None = None,
        fault: str = "none",
        signal: SignalModel | None = None,
        wall_clock: Callable[[], float] = time.time,
        without_points: Iterable[str] = (),
    ) -> None:
        if not 1 <= address <= 247:
            raise ValueError(f"address {address} is outside the Modbus slave range 1..247")
        self.port = port
        self.address = address
        self.baudrate = baudrate
        self.parity = parity
        self.stopbits = stopbits
        self.bytesize = bytesize
        self.tcp = tcp or port.startswith("tcp://")
        self.warmup_s = warmup_s
        self.not_ready_s = warmup_s / 2 if not_ready_s is None else min(not_ready_s, warmup_s)
        self.signal = signal or SignalModel()
        self.wall_clock = wall_clock
        self._rng = random.Random(seed)
        # a probe whose map lacks these points (e.g. "temperature": register 5 is not in the GMP252 User Guide's table)
        # answers exception 02 for them, as for any register outside its map
        self._unmapped = frozenset(a for name in without_points for a in reg.POINT_BY_NAME[name].addresses)
        self._lock = threading.Lock()
        self._fault = "none"
        self.set_fault(fault)
        self._served_co2: list[float] = []
        self._served_temperature: list[float] = []
        self._requests = 0
        self._powered_on = time.monotonic()
        self._store: dict[int, int] = {}
        for name, value in _STATIC_DEFAULTS.items():
            self._write_point(name, value)
        self._write_point("modbus_address", address)
        self._write_point("bit_rate", _BAUD_ENUM.get(baudrate, 2))
        self._write_point("parity", _PARITY_ENUM.get(parity, 0))
        self._write_point("stop_bits", stopbits)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tcp_server: socketserver.ThreadingTCPServer | None = None
        self._serial: serial.Serial | None = None

    # --- state visible to tests -------------------------------------------------------------------------------

    @property
    def served_co2(self) -> list[float]:
        """Every float CO2 value sent in an intact reply, as the reader decodes it (NaN included), oldest first."""
        with self._lock:
            return list(self._served_co2)

    @property
    def served_temperature(self) -> list[float]:
        with self._lock:
            return list(self._served_temperature)

    @property
    def requests(self) -> int:
        """Requests addressed to this probe with a valid CRC, answered or not."""
        with self._lock:
            return self._requests

    @property
    def fault(self) -> str:
        with self._lock:
            return self._fault

    def set_fault(self, fault: str) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; choose one of {', '.join(FAULTS)}")
        with self._lock:
            self._fault = fault

    @property
    def powered_on_at(self) -> float:
        """When the warm-up began (`time.monotonic()`): the start, or the last `power_cycle`."""
        with self._lock:
            return self._powered_on

    def power_cycle(self) -> None:
        """Restart the warm-up period, as after a power loss."""
        with self._lock:
            self._powered_on = time.monotonic()

    def register(self, name: str) -> float | int | None:
        """Current stored value of a static point, e.g. the compensation pressure after an FC16 write."""
        point = reg.POINT_BY_NAME[name]
        with self._lock:
            return reg.decode_point(point, [self._store[a] for a in point.addresses])

    @property
    def tcp_endpoint(self) -> str:
        if self._tcp_server is None:
            raise RuntimeError("the TCP server is not running")
        host, port = self._tcp_server.server_address[:2]
        host_text = host.decode() if isinstance(host, bytes) else str(host)
        return f"tcp://{host_text}:{port}"

    # --- protocol core, independent of the transport -----------------------------------------------------------

    def _write_point(self, name: str, value: float | int | None) -> None:
        point = reg.POINT_BY_NAME[name]
        for addr, word in zip(point.addresses, reg.encode_point(point, value), strict=True):
            self._store[addr] = word

    def _co2_status(self) -> int:
        elapsed = time.monotonic() - self._powered_on
        if elapsed < self.not_ready_s:
            return 256
        if elapsed < self.warmup_s:
            return 2
        return 0

    def _snapshot(self, wanted: set[str]) -> tuple[dict[int, int], list[float], list[float]]:
        """Registers of the dynamic points a read touches, sampled now; caller holds the lock."""
        now = self.wall_clock()
        co2_status = self._co2_status()
        co2: float = math.nan
        if wanted & {"co2", "co2_int", "co2_int_x10"} and co2_status != 256 and self._fault != "nan":
            co2 = reg.float32_roundtrip(self.signal.co2(now, self._rng))
        temperature = math.nan
        if "temperature" in wanted:
            temperature = reg.float32_roundtrip(self.signal.temperature(now, self._rng))
        values: dict[str, float | int | None] = {
            "co2": co2,
            "temperature": temperature,
            "co2_int": None if math.isnan(co2) else co2,
            "co2_int_x10": None if math.isnan(co2) else co2,
            "device_status": 2 if self._fault == "device_error" else 0,
            "co2_status": co2_status,
            "error_code": DEVICE_ERROR_CODE if self._fault == "device_error" else 0,
        }
        words: dict[int, int] = {}
        for name in wanted:
            point = reg.POINT_BY_NAME[name]
            words.update(zip(point.addresses, reg.encode_point(point, values[name]), strict=True))
        served_co2 = [co2] if "co2" in wanted else []
        served_t = [temperature] if "temperature" in wanted else []
        return words, served_co2, served_t

    def _handle_pdu(self, pdu: bytes) -> tuple[bytes, list[float], list[float]]:
        """Answer one request PDU (function code + data): (reply PDU, CO2 served, temperature served).

        The caller holds the lock: this mutates the register store and draws from the RNG.
        """
        function = pdu[0] if pdu else 0

        def exception(code: int) -> tuple[bytes, list[float], list[float]]:
            return bytes((function | 0x80, code)), [], []

        if function == rtu.FC_READ_HOLDING:
            if len(pdu) != 5:
                return exception(rtu.EXC_ILLEGAL_VALUE)
            start, count = struct.unpack(">HH", pdu[1:])
            if not 1 <= count <= reg.MAX_READ_REGISTERS:
                return exception(rtu.EXC_ILLEGAL_VALUE)
            span = range(start, start + count)
            if any(a not in reg.MAPPED_ADDRESSES or a in self._unmapped for a in span):
                return exception(rtu.EXC_ILLEGAL_ADDRESS)
            # Only points read whole are sampled and logged; half a float is served but means nothing.
            wanted = {name for name in _DYNAMIC if set(reg.POINT_BY_NAME[name].addresses) & set(span)}
            dynamic, served_co2, served_t = self._snapshot(wanted)
            whole = {n for n in wanted if set(reg.POINT_BY_NAME[n].addresses) <= set(span)}
            words = [dynamic.get(a, self._store.get(a, 0)) for a in span]
            return (
                struct.pack(f">BB{count}H", function, 2 * count, *words),
                served_co2 if "co2" in whole else [],
                served_t if "temperature" in whole else [],
            )
        if function == rtu.FC_WRITE_MULTIPLE:
            if len(pdu) < 6:
                return exception(rtu.EXC_ILLEGAL_VALUE)
            start, count, byte_count = struct.unpack(">HHB", pdu[1:6])
            if not 1 <= count <= 123 or byte_count != 2 * count or len(pdu) != 6 + byte_count:
                return exception(rtu.EXC_ILLEGAL_VALUE)
            if any(a not in _WRITABLE for a in range(start, start + count)):
                return exception(rtu.EXC_ILLEGAL_ADDRESS)
            for offset, word in enumerate(struct.unpack(f">{count}H", pdu[6:])):
                self._store[start + offset] = word
            return struct.pack(">BHH", function, start, count), [], []
        if function == rtu.FC_WRITE_SINGLE:
            if len(pdu) != 5:
                return exception(rtu.EXC_ILLEGAL_VALUE)
            addr, word = struct.unpack(">HH", pdu[1:])
            if addr not in _WRITABLE:
                return exception(rtu.EXC_ILLEGAL_ADDRESS)
            self._store[addr] = word
            return bytes(pdu), [], []
        return exception(rtu.EXC_ILLEGAL_FUNCTION)

    def process_rtu_frame(self, frame: bytes) -> bytes | None:
        """One complete RTU request frame in, the reply frame out (None: stay silent)."""
        if not rtu.crc_ok(frame) or frame[0] != self.address:
            return None
        with self._lock:
            self._requests += 1
            if self._fault == "no_reply":
                return None
            pdu, served_co2, served_t = self._handle_pdu(frame[1:-2])
            reply = rtu.add_crc(bytes((self.address,)) + pdu)
            if self._fault == "bad_crc":
                return reply[:-2] + bytes((reply[-2] ^ 0x5A, reply[-1]))
            self._served_co2.extend(served_co2)
            self._served_temperature.extend(served_t)
            return reply

    def process_tcp_pdu(self, unit: int, pdu: bytes) -> bytes | None:
        if unit != self.address:
            return None
        with self._lock:
            self._requests += 1
            if self._fault in ("no_reply", "bad_crc"):
                return None
            reply, served_co2, served_t = self._handle_pdu(pdu)
            self._served_co2.extend(served_co2)
            self._served_temperature.extend(served_t)
            return reply

    # --- transports -----------------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._thread is not None:
            return self
        self._stop.clear()
        if self.tcp:
            host, port = parse_tcp_endpoint(self.port)
            self._tcp_server = _TcpServer((host, port), _TcpHandler, self)
            self._thread = threading.Thread(
                target=self._tcp_server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
        else:
            # Opened here, not in the thread, so a wrong path fails start() instead of a background thread.
            self._serial = serial.Serial(
                self.port,
                baudrate=self.baudrate,
                bytesize=self.bytesize,
                parity=self.parity,
                stopbits=self.stopbits,
                timeout=0.005,
            )
            self._thread = threading.Thread(target=self._serve_rtu, name=f"gmp252-sim-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._tcp_server is not None:
            self._tcp_server.shutdown()
            self._tcp_server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._serial is not None:
            self._serial.close()
        self._thread = None
        self._tcp_server = None
        self._serial = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _serve_rtu(self) -> None:
        assert self._serial is not None
        port = self._serial
        # A partial frame older than this is noise or a truncated request; real links use 3.5 character times.
        stale_after = max(0.05, 3.5 * 11 / self.baudrate)
        buffer = bytearray()
        last_rx = time.monotonic()
        while not self._stop.is_set():
            try:
                data = port.read(256)
            except (serial.SerialException, OSError, TypeError):
                # TypeError: pyserial reads a closed fd as None while stop() closes the port.
                if self._stop.is_set():
                    return
                log.warning("simulator port %s read failed; retrying", self.port)
                time.sleep(0.05)
                continue
            now = time.monotonic()
            if data:
                buffer += data
                last_rx = now
            elif buffer and now - last_rx > stale_after:
                self._answer_unframed(port, bytes(buffer))
                buffer.clear()
            while buffer:
                length = rtu.request_length(bytes(buffer))
                if length is None or len(buffer) < length:
                    break
                frame = bytes(buffer[:length])
                del buffer[:length]
                self._reply(port, self.process_rtu_frame(frame))

    def _answer_unframed(self, port: serial.Serial, frame: bytes) -> None:
        # A silent gap ended a frame whose length the function code did not tell (an unsupported function):
        # if it is a valid frame for us, answer exception 01 as a real probe would.
        self._reply(port, self.process_rtu_frame(frame))

    def _reply(self, port: serial.Serial, reply: bytes | None) -> None:
        if reply is None:
            return
        try:
            port.write(reply)
        except (serial.SerialException, OSError, TypeError):
            if not self._stop.is_set():
                log.warning("simulator port %s write failed; reply dropped", self.port)


_WRITABLE: frozenset[int] = frozenset(a for p in reg.POINTS if p.writable for a in p.addresses)


class _TcpServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any, simulator: GMP252Simulator) -> None:
        self.simulator = simulator
        super().__init__(address, handler)


class _TcpHandler(socketserver.BaseRequestHandler):
    """Modbus TCP: MBAP header (transaction id, protocol 0, length, unit id) followed by the PDU."""

    server: _TcpServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(0.2)
        simulator = self.server.simulator
        while not simulator._stop.is_set():
            try:
                header = _recv_exact(sock, 7)
                if header is None:
                    return
                tid, protocol, length, unit = struct.unpack(">HHHB", header)
                pdu = _recv_exact(sock, length - 1) if length > 1 else b""
                if pdu is None or protocol != 0:
                    return
            except TimeoutError:
                continue
            except OSError:
                return
            reply = simulator.process_tcp_pdu(unit, pdu)
            if reply is not None:
                sock.sendall(struct.pack(">HHHB", tid, 0, len(reply) + 1, unit) + reply)


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        try:
            chunk = sock.recv(size - len(data))
        except TimeoutError:
            if not data:
                raise
            continue
        if not chunk:
            return None
        data += chunk
    return data


@contextlib.contextmanager
def _endpoint(port: str) -> Iterator[tuple[str, str]]:
    """'pty' makes an in-process PTY pair: the simulator takes one end, the user's driver the other."""
    if port != "pty":
        yield port, port
        return
    from gateway.simulation.pty import python_pty_pair

    with python_pty_pair() as (sim_end, driver_end):
        yield sim_end, driver_end


def run_simulator(port: str, *, address: int = 240, fault: str = "none", seed: int = 0, tcp: bool = False) -> None:
    """Serve a simulated GMP252 until Ctrl-C. `port`: serial path, 'pty', or tcp://HOST:PORT (implies tcp)."""
    with _endpoint(port) as (sim_port, driver_port):
        simulator = GMP252Simulator(sim_port, address=address, fault=fault, seed=seed, tcp=tcp)
        with simulator:
            where = simulator.tcp_endpoint if simulator.tcp else driver_port
            # Flushed at once: a supervising process (or test) reads the endpoint from the first line.
            print(
                f"GMP252 simulator at address {address}, fault {fault!r}: point the driver's port at {where}",
                flush=True,
            )
            serve_until_stopped(lambda: f"stopped after {simulator.requests} requests")


def profile_simulators(
    depths_m: dict[int, float], *, seed: int = 0, fault: str = "none"
) -> list[GMP252Simulator]:
    """One simulated probe per address, each at its own depth, for an RtuLineSimulator serving them all on one
    port (gateway/simulation/rtu_line.py): a soil CO2 profile on one RS-485 line."""
    return [
        GMP252Simulator("", address=address, seed=seed + index, fault=fault, signal=SignalModel.at_depth(depth))
        for index, (address, depth) in enumerate(sorted(depths_m.items()))
    ]


def main(port: str, address: int = 240, fault: str = "none", seed: int = 0) -> None:
    """Entry for `sinkwatch simulate gmp252 --port P`; a tcp://HOST:PORT port selects Modbus TCP."""
    run_simulator(port, address=address, fault=fault, seed=seed, tcp=port.startswith("tcp://"))
