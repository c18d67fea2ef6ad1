"""A clean-room Modbus RTU slave of a few lines for the cross-check tests: it answers each request frame with bytes
a test chose (an exception reply, a reply from another address, ...), framed with its own CRC-16/MODBUS (init
0xFFFF, reflected polynomial 0xA001, low byte first; the Modbus RTU ground rules), so replies pymodbus' server will
not give can be served."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import serial


def crc16(data: bytes) -> bytes:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return bytes([crc & 0xFF, crc >> 8])


def framed(body: bytes) -> bytes:
    return body + crc16(body)


class RawSlave:
    """Reads request frames (8 bytes: FC 03/04 reads) and writes `answer(request)` back."""

    def __init__(self, port: str, answer: Callable[[bytes], bytes | None], *, baudrate: int = 19200,
                 stopbits: int = 2) -> None:
        self.port = serial.Serial(port, baudrate, stopbits=stopbits, timeout=0.01)
        self.answer = answer
        self.requests: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="xsim-raw-rtu", daemon=True)

    def __enter__(self) -> RawSlave:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self.port.close()

    def _run(self) -> None:
        pending = b""
        while not self._stop.is_set():
            pending += self.port.read(64)
            while len(pending) >= 8:
                request, pending = pending[:8], pending[8:]
                if crc16(request[:6]) != request[6:]:
                    pending = b""  # out of step: drop what is buffered, as a slave waits for silence
                    break
                self.requests.append(request)
                reply = self.answer(request)
                if reply is not None:
                    time.sleep(0.005)
                    self.port.write(reply)
