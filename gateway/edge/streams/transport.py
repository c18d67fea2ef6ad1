"""The byte stream to one instrument (a serial port or a TCP socket) and the bounded frame splitter."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import termios

import serial

from gateway.driver_api import StreamConfig


class Transport:
    """A byte stream to one instrument: a serial port (pyserial) or a TCP socket."""

    def __init__(self, config: StreamConfig) -> None:
        self.config = config
        self._serial: serial.Serial | None = None
        self._socket: socket.socket | None = None

    @property
    def is_tcp(self) -> bool:
        return self.config.port.startswith("tcp://")

    def open(self, timeout_s: float) -> None:
        """Connect; `read` then waits up to `timeout_s` for data, or with `timeout_s=0` the transport is for
        `read_available` (no waiting)."""
        cfg = self.config
        if self.is_tcp:
            host, _, number = cfg.port.removeprefix("tcp://").rpartition(":")
            sock = socket.create_connection((host, int(number)), timeout=5.0)
            if timeout_s == 0:
                sock.settimeout(None)  # blocking for writes; `read_available` reads with MSG_DONTWAIT
            elif struct.calcsize("l") == 8:
                # The kernel's receive timeout on a blocking socket: each record costs one recv instead of Python's
                # poll + recv (a 64-bit `struct timeval`; elsewhere Python's own timeout)
                sock.settimeout(None)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                                struct.pack("ll", int(timeout_s), int(timeout_s % 1 * 1_000_000)))
            else:
                sock.settimeout(timeout_s)
            self._socket = sock
        else:
            if not os.path.exists(cfg.port):
                raise FileNotFoundError(f"{cfg.port} does not exist")
            try:
                self._serial = serial.Serial(cfg.port, baudrate=cfg.baudrate, bytesize=cfg.bytesize,
                                             parity=cfg.parity, stopbits=cfg.stopbits, timeout=timeout_s,
                                             write_timeout=1.0)
            except termios.error as exc:  # not an OSError: it would escape the callers' handling of a failed open
                raise OSError(f"{cfg.port} refused the serial settings {cfg.baudrate} {cfg.bytesize}{cfg.parity}"
                              f"{cfg.stopbits}: {exc}") from None

    def read_available(self, size: int) -> bytes:
        """Every byte received so far, without waiting (b"" if none), for a transport opened with `timeout_s=0`;
        reads in pieces of `size`. Raises OSError/SerialException when the link is gone."""
        pieces: list[bytes] = []
        if self._socket is not None:
            while True:
                try:
                    data = self._socket.recv(size, socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    break
                if not data:
                    if pieces:
                        break  # hand over what came before the close; the next read reports it
                    raise ConnectionError("the instrument closed the connection")
                pieces.append(data)
                if len(data) < size:
                    break
        else:
            assert self._serial is not None
            while True:
                # with the port's timeout 0 pyserial polls once and reads what is there; a vanished adapter reports
                # readiness with no data (or EIO), which it raises as SerialException
                data = self._serial.read(size)
                if not data:
                    break
                pieces.append(data)
                if len(data) < size:
                    break
        return b"".join(pieces)

    def read(self, size: int) -> bytes:
        """Up to `size` bytes, b"" after the timeout; raises OSError/SerialException when the link is gone."""
        if self._socket is not None:
            try:
                data = self._socket.recv(size)
            except (TimeoutError, BlockingIOError):  # SO_RCVTIMEO ran out (EAGAIN), or Python's timeout
                return b""
            if not data:
                raise ConnectionError("the instrument closed the connection")
            return data
        assert self._serial is not None
        port = self._serial
        first = port.read(1)  # waits up to the timeout for the first byte
        if not first:
            return b""
        waiting = port.in_waiting
        return first + port.read(min(waiting, size)) if waiting else first

    def write(self, data: bytes) -> None:
        if self._socket is not None:
            self._socket.sendall(data)
        elif self._serial is not None:
            self._serial.write(data)

    def close(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()
            self._socket = None
        if self._serial is not None:
            with contextlib.suppress(Exception):
                self._serial.close()
            self._serial = None


#: Terminators that are a text line's end: a splitter given one of them ends a frame at any of CR, LF or CR LF.
LINE_ENDS = (b"\r", b"\n", b"\r\n")


class FrameSplitter:
    """Splits a byte stream at `terminator` with a bounded buffer: bytes beyond `max_bytes` without a terminator are
    dropped (counted in `overflows`) and the splitter resyncs at the next terminator.

    A line end (`LINE_ENDS`) as the terminator means any line end: the manuals fix one (CSAT3B CR, EC100 and
    WindMaster CR LF, LI-7500 LF), but a unit's EOL setting, a serial-to-network converter or another simulator may
    end its lines otherwise, and splitting at the documented one only would then lose every record (a CR LF line cut
    at CR leaves the LF in front of the next record; a CR-only line never ends at LF). Empty lines are not frames.
    """

    def __init__(self, terminator: bytes, max_bytes: int) -> None:
        self.terminator = terminator
        self.max_bytes = max_bytes
        self.overflows = 0
        self._buffer = b""
        self._discarding = False
        self._any_line_end = terminator in LINE_ENDS

    def feed(self, data: bytes) -> list[bytes]:
        if self._any_line_end:
            # CR LF becomes two line ends with an empty line between them, dropped below; a CR LF cut between two
            # reads is handled alike, so nothing depends on where a read ends
            buffer = self._buffer + data.replace(b"\r", b"\n")
            parts = buffer.split(b"\n")
        else:
            buffer = self._buffer + data
            parts = buffer.split(self.terminator)
        self._buffer = parts.pop()
        if self._discarding and parts:
            parts.pop(0)  # the tail of an overlong line
            self._discarding = False
        if len(self._buffer) > self.max_bytes:
            self._buffer = b""
            self._discarding = True
            self.overflows += 1
        if len(buffer) > self.max_bytes and any(len(p) > self.max_bytes for p in parts):  # else none can be
            kept = [p for p in parts if len(p) <= self.max_bytes]
            self.overflows += len(parts) - len(kept)
            parts = kept
        if self._any_line_end and b"" in parts:
            parts = [p for p in parts if p]
        return parts

    def reset(self) -> None:
        self._buffer = b""
        self._discarding = False
