"""Base for simulators of line-streaming instruments (sonic anemometers, gas analyzers): frames at a fixed rate on a
serial port or a TCP server, drawn from the shared synthetic turbulence field, with fault modes for tests.

A subclass writes the instrument's frame grammar and nothing else::

    class MySonic(StreamSimulator):
        name = "mysonic"

        def frame(self, index: int, unix_time: float) -> bytes:
            u, v, w, ts = self.sonic(index)                 # instrument frame, ts in K
            values = self.maybe_nan((u, v, w, ts - 273.15))  # None where the `nan` fault blanks a value
            self.record(values)                              # what a reader must decode from this frame
            return encode(values)                            # bytes including the terminator

Endpoints (`port`):

- a serial device path, e.g. one end of `gateway.testing.serial_pty.socat_pty_pair` (pyserial);
- `pty` or `pty:<link path>`: the simulator makes its own pseudo-terminal and exposes the driver's end as
  `driver_port` (a stable symlink when a link path is given). The `disconnect` fault then behaves like a USB adapter
  being unplugged: the link disappears and the reader's open port fails with EIO until the "adapter" returns under
  the same name;
- `tcp://HOST:PORT` (port 0 picks a free one, see `tcp_endpoint`): a TCP server; every connected client gets every
  frame, and each client's command lines are answered to that client.

Pacing is drift-free on the monotonic clock: frame k is due at start + k / (frequency_hz · speedup), whatever the
time taken to write earlier frames. Sample indices are continuous from `TurbulenceField.index_at(start wall time)`,
so two simulators with the same seed started together (a sonic and an analyzer) stay coherent with the field's lag.
`speedup > 1` serves an accelerated hour for benchmarks: simulated time advances by 1 / frequency_hz per frame.

Every frame written is logged (`served`): its index, simulated unix time, bytes, the values a reader must decode
(None = missing) and whether it is intact (a reader must accept it) or corrupted on purpose (bad checksum).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import select
import socket
import threading
import time
import tty
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

import numpy as np
import serial

from gateway.simulation.turbulence import TurbulenceField, TurbulenceSpec
from gateway.simulation.until_stopped import serve_until_stopped

log = logging.getLogger(__name__)

FAULTS: dict[str, str] = {
    "none": "normal operation",
    "no_output": "silence: the instrument sends nothing (powered off, wrong baud rate, output switched off)",
    "bad_checksum": "a fraction `fault_ratio` of frames carry a wrong checksum/signature (electrical noise)",
    "garbage": "random bytes (then a line end) between frames, a fraction `fault_ratio` of the time",
    "slow": "frames leave late by up to `jitter_s` (uneven arrival, bursts), order and count unchanged",
    "nan": "a fraction `fault_ratio` of frames carry missing values (the instrument's NaN/sentinel)",
    "disconnect": "the port or socket closes for `disconnect_s`, then comes back (fault returns to none)",
    "clock_drift": "the instrument's clock runs fast by `drift_ppm`: its own timestamps drift and, for an "
                   "instrument without a clock, its output rate is off by the same ratio",
}

# Bytes a frame never contains in garbage mode (the line ends a reader splits at).
_LINE_ENDS = b"\r\n"


@dataclass(frozen=True, slots=True)
class ServedFrame:
    index: int  # turbulence sample index
    unix_time: float  # simulated wall-clock time of the sample
    data: bytes  # the bytes written, terminator included
    values: tuple[float | None, ...]  # what a correct reader decodes (None = missing); () if not recorded
    intact: bool  # False when corrupted on purpose; a reader must drop it


class StreamSimulator:
    """Serves `frame(index, unix_time)` at `frequency_hz`; subclasses implement `frame` and optionally
    `on_command`, `corrupt`."""

    name: ClassVar[str] = "stream"
    terminator: ClassVar[bytes] = b"\r\n"

    def __init__(
        self,
        port: str,
        *,
        frequency_hz: float = 20.0,
        seed: int = 0,
        fault: str = "none",
        spec: TurbulenceSpec | None = None,
        speedup: float = 1.0,
        baudrate: int = 115200,
        fault_ratio: float = 0.2,
        jitter_s: float = 0.2,
        disconnect_s: float = 2.0,
        drift_ppm: float = 20000.0,
        garbage_bytes: int = 40,
        log_limit: int = 200_000,
        wall_clock_start: float | None = None,
    ) -> None:
        if frequency_hz <= 0 or speedup <= 0:
            raise ValueError("frequency_hz and speedup must be positive")
        self.port = port
        self.frequency_hz = frequency_hz
        self.speedup = speedup
        self.baudrate = baudrate
        self.fault_ratio = fault_ratio
        self.jitter_s = jitter_s
        self.disconnect_s = disconnect_s
        self.drift_ppm = drift_ppm
        self.garbage_bytes = garbage_bytes
        self.log_limit = log_limit
        base_spec = spec or TurbulenceSpec()
        self.field = TurbulenceField(replace(base_spec, frequency_hz=frequency_hz), seed=seed)
        self.seed = seed
        self._rng = random.Random(seed ^ 0x5EED)
        self._lock = threading.Lock()
        self._fault = "none"
        self._mono_start: float | None = None
        self._start_time = time.time() if wall_clock_start is None else wall_clock_start
        # clock_drift state: the device clock's offset accumulated so far, and since when it drifts
        self._drift_anchor_sim: float | None = None
        self._drift_offset = 0.0
        self.set_fault(fault)
        self._served: list[ServedFrame] = []
        self._pending_values: tuple[float | None, ...] = ()
        self._frame_intact = True
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.paused = False  # set by a subclass's on_command (e.g. configuration mode): no frames while True
        self.frames_written = 0
        self.commands: list[bytes] = []
        # transports
        self.tcp = port.startswith("tcp://")
        self._serial: serial.Serial | None = None
        self._listener: socket.socket | None = None
        self._clients: dict[socket.socket, bytearray] = {}
        self._serial_rx = bytearray()
        self._own_pty = port == "pty" or port.startswith("pty:")
        self._pty_link: Path | None = Path(port[4:]) if port.startswith("pty:") else None
        self._pty_fds: tuple[int, int] | None = None
        self.driver_port: str = port
        self.tcp_endpoint: str = port
        self.reconnects = 0
        self._tcp_port: int | None = None

    # --- what subclasses implement -----------------------------------------------------------------------------

    def frame(self, index: int, unix_time: float) -> bytes:
        """The frame for sample `index` at simulated time `unix_time`, terminator included. Call `record(values)`
        with the values a reader must decode from it."""
        raise NotImplementedError

    def on_command(self, line: bytes) -> bytes | None:
        """A command line received from the reader (without its line end); return the reply bytes, or None."""
        return None

    def corrupt(self, frame: bytes) -> bytes:
        """The frame with a wrong checksum: by default the last character before the line end is changed (where
        most ASCII instruments put their checksum). Override when the checksum sits elsewhere."""
        body = frame.rstrip(_LINE_ENDS)
        tail = frame[len(body):]
        if not body:
            return frame
        last = body[-1:]
        replacement = b"0" if last != b"0" else b"1"
        return body[:-1] + replacement + tail

    # --- helpers for subclasses --------------------------------------------------------------------------------

    def sonic(self, index: int) -> np.ndarray:
        """(u, v, w, ts) of sample `index`: wind m s-1 in the instrument frame, Ts in K."""
        return self.field.sonic(index, 1)[0]

    def gas(self, index: int) -> np.ndarray:
        """(co2, h2o) molar densities mmol m-3 of sample `index`, lagged as the analyzer sees them."""
        return self.field.gas(index, 1)[0]

    def record(self, values: Sequence[float | None]) -> None:
        """Declare what a reader must decode from the frame being built (call from `frame`)."""
        self._pending_values = tuple(values)

    def nan_now(self) -> bool:
        """Whether the frame being built should carry a missing value (the `nan` fault)."""
        return self.fault == "nan" and self._rng.random() < self.fault_ratio

    def maybe_nan(self, values: Sequence[float | None], positions: Sequence[int] | None = None) -> tuple[
            float | None, ...]:
        """`values` with the `nan` fault applied: one of `positions` (default: any) set to None."""
        out = list(values)
        if self.nan_now():
            choices = list(positions) if positions is not None else list(range(len(out)))
            out[self._rng.choice(choices)] = None
        return tuple(out)

    def device_time(self, unix_time: float) -> float:
        """The instrument's own clock reading at simulated time `unix_time` (drifts under `clock_drift`)."""
        with self._lock:
            if self._drift_anchor_sim is None:
                return unix_time + self._drift_offset
            return unix_time + self._drift_offset + (unix_time - self._drift_anchor_sim) * self.drift_ppm * 1e-6

    @property
    def rng(self) -> random.Random:
        return self._rng

    # --- state visible to tests --------------------------------------------------------------------------------

    @property
    def fault(self) -> str:
        with self._lock:
            return self._fault

    def set_fault(self, fault: str) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; choose one of {', '.join(FAULTS)}")
        with self._lock:
            if self._fault == "clock_drift" and fault != "clock_drift" and self._drift_anchor_sim is not None:
                # the drifted offset stays (a real clock does not jump back when the cause goes away)
                self._drift_offset += (self._sim_now() - self._drift_anchor_sim) * self.drift_ppm * 1e-6
                self._drift_anchor_sim = None
            if fault == "clock_drift" and self._fault != "clock_drift":
                self._drift_anchor_sim = self._sim_now()
            self._fault = fault

    @property
    def served(self) -> list[ServedFrame]:
        """Every frame written (oldest first; the oldest are forgotten beyond `log_limit`)."""
        with self._lock:
            return list(self._served)

    def served_values(self, intact_only: bool = True) -> list[tuple[float | None, ...]]:
        return [f.values for f in self.served if f.intact or not intact_only]

    def clear_log(self) -> None:
        with self._lock:
            self._served.clear()

    # --- life cycle ------------------------------------------------------------------------------------------------

    def start(self) -> Self:
        # build the current turbulence block now (~0.1-0.5 s), not inside the paced loop
        self.field.streamline(self.field.index_at(self._start_time) - self.field.spec.lag_samples, 2)
        self._open_transport()
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-simulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._close_transport()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- internals -----------------------------------------------------------------------------------------------

    def _sim_now(self) -> float:
        if self._mono_start is None:
            return self._start_time
        return self._start_time + (time.monotonic() - self._mono_start) * self.speedup

    def _open_transport(self) -> None:
        if self.tcp:
            host, _, number = self.port.removeprefix("tcp://").rpartition(":")
            # after a disconnect the server comes back on the same port number
            wanted = self._tcp_port if self._tcp_port is not None else int(number)
            listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, wanted))
            listener.listen()
            self._tcp_port = listener.getsockname()[1]
            self._listener = listener
            self.tcp_endpoint = f"tcp://{host}:{self._tcp_port}"
            self.driver_port = self.tcp_endpoint
        elif self._own_pty:
            master, slave = os.openpty()
            tty.setraw(master)
            tty.setraw(slave)
            self._pty_fds = (master, slave)
            target = os.ttyname(slave)
            if self._pty_link is not None:
                self._pty_link.parent.mkdir(parents=True, exist_ok=True)
                self._pty_link.unlink(missing_ok=True)
                self._pty_link.symlink_to(target)
                self.driver_port = str(self._pty_link)
            else:
                self.driver_port = target
            os.set_blocking(master, False)
        else:
            self._serial = serial.Serial(self.port, baudrate=self.baudrate, timeout=0, write_timeout=1.0)
            self.driver_port = self.port

    def _close_transport(self) -> None:
        for client in list(self._clients):
            with contextlib.suppress(OSError):
                client.close()
        self._clients.clear()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
            self._listener = None
        if self._serial is not None:
            with contextlib.suppress(Exception):
                self._serial.close()
            self._serial = None
        if self._pty_fds is not None:
            if self._pty_link is not None:
                self._pty_link.unlink(missing_ok=True)
            for fd in self._pty_fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._pty_fds = None

    def _read_fds(self) -> list[socket.socket | int]:
        fds: list[socket.socket | int] = []
        if self._listener is not None:
            fds.append(self._listener)
        fds.extend(self._clients)
        if self._serial is not None:
            fds.append(self._serial.fileno())
        if self._pty_fds is not None:
            fds.append(self._pty_fds[0])
        return fds

    def _run(self) -> None:
        period = 1.0 / (self.frequency_hz * self.speedup)
        first_index = self.field.index_at(self._start_time)
        if self.speedup == 1.0:
            # In real time, sample i leaves at wall-clock time i/f, as if every simulator ran on one clock: a sonic
            # and an analyzer started a few hundred ms apart (building a turbulence block takes that long) would
            # otherwise be offset by their start-up difference, which the station would see as extra time lag.
            now_wall, now_mono = time.time(), time.monotonic()
            first_index = max(first_index, self.field.index_at(now_wall) + 1)
            self._start_time = first_index / self.frequency_hz
            self._mono_start = start = now_mono + (self._start_time - now_wall)
        else:
            self._mono_start = start = time.monotonic()
        next_due = start
        k = 0
        serviced = start
        while not self._stop.is_set():
            now = time.monotonic()
            wait = next_due - now
            if wait > 0:
                self._service_input(min(wait, 0.1))
                serviced = now
                continue
            if now - serviced > 0.05:  # running behind (accelerated): still accept clients and answer commands
                self._service_input(0.0)
                serviced = now
            fault = self.fault
            if fault == "disconnect":
                self._disconnect()
                next_due = time.monotonic()  # frames not sent while away are lost, pacing restarts
                continue
            index = first_index + k
            unix_time = index / self.frequency_hz
            k += 1
            step = period
            if fault == "clock_drift":
                step = period / (1.0 + self.drift_ppm * 1e-6)
            next_due += step
            if fault == "no_output" or self.paused:
                continue
            if fault == "slow":
                delay = self._rng.uniform(0.0, self.jitter_s)
                if self._stop.wait(delay):
                    break
            self._emit(index, unix_time, fault)

    def _emit(self, index: int, unix_time: float, fault: str) -> None:
        self._pending_values = ()
        data = self.frame(index, unix_time)
        intact = True
        if fault == "bad_checksum" and self._rng.random() < self.fault_ratio:
            data = self.corrupt(data)
            intact = False
        out = data
        if fault == "garbage" and self._rng.random() < self.fault_ratio:
            noise = bytes(b for b in self._rng.randbytes(self.garbage_bytes) if b not in _LINE_ENDS)
            out = noise + self.terminator + data
        self._write(out)
        with self._lock:
            self._served.append(ServedFrame(index, unix_time, data, self._pending_values, intact))
            if len(self._served) > self.log_limit:
                del self._served[: len(self._served) - self.log_limit]
        self.frames_written += 1

    def _write(self, data: bytes) -> None:
        if self._serial is not None:
            try:
                self._serial.write(data)
            except (serial.SerialException, OSError):
                log.debug("%s simulator: serial write failed; frame dropped", self.name)
        if self._pty_fds is not None:
            # nobody reads the other end and its buffer is full: the frame is lost, as on a real line
            with contextlib.suppress(OSError):
                os.write(self._pty_fds[0], data)
        for client in list(self._clients):
            try:
                client.sendall(data)
            except OSError:
                self._drop_client(client)

    def _drop_client(self, client: socket.socket) -> None:
        self._clients.pop(client, None)
        with contextlib.suppress(OSError):
            client.close()

    def _service_input(self, timeout: float) -> None:
        fds = self._read_fds()
        if not fds:
            self._stop.wait(timeout)
            return
        try:
            ready, _, _ = select.select(fds, [], [], timeout)
        except (OSError, ValueError):
            self._stop.wait(timeout)
            return
        for item in ready:
            if item is self._listener and self._listener is not None:
                try:
                    client, _ = self._listener.accept()
                except OSError:
                    continue
                client.settimeout(1.0)
                self._clients[client] = bytearray()
            elif isinstance(item, socket.socket):
                try:
                    chunk = item.recv(4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    self._drop_client(item)
                    continue
                self._take_input(self._clients.setdefault(item, bytearray()), chunk, item)
            elif self._serial is not None and item == self._serial.fileno():
                try:
                    chunk = self._serial.read(self._serial.in_waiting or 1)
                except (serial.SerialException, OSError):
                    chunk = b""
                self._take_input(self._serial_rx, chunk, None)
            elif self._pty_fds is not None and item == self._pty_fds[0]:
                try:
                    chunk = os.read(self._pty_fds[0], 4096)
                except (BlockingIOError, OSError):
                    chunk = b""
                self._take_input(self._serial_rx, chunk, None)

    def _take_input(self, buffer: bytearray, chunk: bytes, client: socket.socket | None) -> None:
        buffer.extend(chunk)
        while True:
            cut = min((i for i in (buffer.find(b"\r"), buffer.find(b"\n")) if i >= 0), default=-1)
            if cut < 0:
                if len(buffer) > 4096:
                    buffer.clear()
                return
            line = bytes(buffer[:cut])
            del buffer[: cut + 1]
            if not line:
                continue
            self.commands.append(line)
            reply = self.on_command(line)
            if reply:
                if client is not None:
                    try:
                        client.sendall(reply)
                    except OSError:
                        self._drop_client(client)
                else:
                    self._write(reply)

    def _disconnect(self) -> None:
        log.info("%s simulator: disconnecting for %.1f s", self.name, self.disconnect_s)
        self._close_transport()
        if self._stop.wait(self.disconnect_s):
            return
        try:
            self._open_transport()
        except OSError as exc:
            log.warning("%s simulator: could not come back: %s", self.name, exc)
        self.reconnects += 1
        with self._lock:
            if self._fault == "disconnect":
                self._fault = "none"


def run_stream_simulator(simulator: StreamSimulator) -> None:
    """Serve until Ctrl-C, printing where the driver should connect (first line, flushed)."""
    with simulator:
        print(f"{simulator.name} simulator at {simulator.frequency_hz:g} Hz, fault {simulator.fault!r}: "
              f"point the driver's port at {simulator.driver_port}", flush=True)
        serve_until_stopped(lambda: f"stopped after {simulator.frames_written} frames")
