"""Several simulated Modbus RTU devices sharing one serial port, as on a real RS-485 line.

Each device is any object with an `address` and `process_rtu_frame(frame) -> reply | None` (the GMP252 and soil
probe simulators). The line finds frame ends from the function code (a PTY has no silent gaps), hands a frame to
the device with that address (the others stay silent, as on a bus) and writes its reply after `reply_delay_s`
(a real device's turnaround time; `delays` sets it per address).

It also watches the master: a request that arrives while a reply is still pending would collide on a real
half-duplex line, so it is counted in `collisions`; every request and reply is logged in order in `events`, so a
test can check that frames never interleave. `unplug(address)` / `plug(device)` remove and return a device.
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

import serial

from gateway.driver_api import rtu

log = logging.getLogger(__name__)


class RtuDevice(Protocol):
    address: int

    def process_rtu_frame(self, frame: bytes) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class LineEvent:
    # monotonic: a request's once it is in, a reply's just before it is written, so that the silence between a
    # reply and the next request is never overstated (tests check the master's t3.5 with it)
    time: float
    kind: str  # "request" or "reply"
    address: int


class RtuLineSimulator:
    def __init__(
        self,
        port: str,
        devices: list[RtuDevice],
        *,
        baudrate: int = 19200,
        parity: str = "N",
        stopbits: int = 2,
        bytesize: int = 8,
        reply_delay_s: float = 0.0,
        keep_events: bool = True,
    ) -> None:
        self.port = port
        self.settings = {"baudrate": baudrate, "parity": parity, "stopbits": stopbits, "bytesize": bytesize}
        self.reply_delay_s = reply_delay_s
        # per-address turnaround overriding reply_delay_s, e.g. {241: 0.3} for a probe slower than its timeout
        self.delays: dict[int, float] = {}
        self.keep_events = keep_events
        self._devices: dict[int, RtuDevice] = {}
        for device in devices:
            self.plug(device)
        self._lock = threading.Lock()
        self._events: list[LineEvent] = []
        self.collisions = 0
        self.bad_frames = 0
        self.requests = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._serial: serial.Serial | None = None

    def plug(self, device: RtuDevice) -> None:
        self._devices[device.address] = device

    def unplug(self, address: int) -> RtuDevice:
        return self._devices.pop(address)

    @property
    def events(self) -> list[LineEvent]:
        with self._lock:
            return list(self._events)

    def _event(self, kind: str, address: int, at: float | None = None) -> None:
        if self.keep_events:
            with self._lock:
                self._events.append(LineEvent(time.monotonic() if at is None else at, kind, address))

    def start(self) -> Self:
        if self._thread is None:
            self._stop.clear()
            self._serial = serial.Serial(self.port, timeout=0, **self.settings)  # type: ignore[arg-type]
            self._thread = threading.Thread(target=self._serve, name=f"rtu-line-{self.port}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._serial is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                self._serial.close()
        self._thread = None
        self._serial = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _serve(self) -> None:
        assert self._serial is not None
        fd = self._serial.fileno()
        buffer = b""
        last_rx = time.monotonic()
        stale_after = 0.05
        while not self._stop.is_set():
            try:
                ready = select.select((fd,), (), (), 0.02)[0]
                data = self._serial.read(4096) if ready else b""
            except (serial.SerialException, OSError, TypeError):
                if self._stop.is_set():
                    return
                time.sleep(0.02)
                continue
            now = time.monotonic()
            if data:
                buffer += data
                last_rx = now
            elif buffer and now - last_rx > stale_after:
                self.bad_frames += 1  # an unframable rest: noise or an unsupported function code
                buffer = b""
            while buffer:
                length = rtu.request_length(buffer)
                if length is None or len(buffer) < length:
                    break
                frame, buffer = buffer[:length], buffer[length:]
                self._answer(fd, frame)

    def _answer(self, fd: int, frame: bytes) -> None:
        if not rtu.crc_ok(frame):
            self.bad_frames += 1
            return
        self.requests += 1
        self._event("request", frame[0])
        device = self._devices.get(frame[0])
        reply = device.process_rtu_frame(frame) if device is not None else None
        if reply is None:
            return
        delay = self.delays.get(frame[0], self.reply_delay_s)
        if delay > 0 and select.select((fd,), (), (), delay)[0]:
            # The master spoke while this device was about to answer: on RS-485 both frames would be garbage.
            self.collisions += 1
            log.warning("collision on %s: a request arrived while address %d's reply was pending", self.port,
                        frame[0])
        assert self._serial is not None
        written_at = time.monotonic()
        try:
            self._serial.write(reply)
        except (serial.SerialException, OSError, TypeError):
            if not self._stop.is_set():
                log.warning("line simulator %s: write failed; reply dropped", self.port)
            return
        self._event("reply", frame[0], written_at)
