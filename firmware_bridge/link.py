"""The host end of the serial link: open/reconnect, requests with timeouts and retries, bad input counted.

One `BridgeLink` owns the port. `request()` sends a frame (preceded by a 0x00 so the board drops any partial
frame), waits for the reply carrying the same sequence number, and retries after a timeout. Frames that fail
COBS or CRC are counted by the stream decoder and ignored; stale replies (another seq) are counted and skipped;
an unsolicited HELLO (the board rebooted) is recorded for the caller. A reply in another protocol version raises
`LinkError("protocol")`: the host will not guess at a layout it does not know.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import serial

from firmware_bridge import protocol as p

log = logging.getLogger(__name__)


class LinkError(Exception):
    """kind: "no_port", "timeout", "crc", "protocol" (the driver maps it onto gateway FailureKind)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class BoardRefused(LinkError):
    def __init__(self, error: p.BoardError) -> None:
        super().__init__("protocol", error.describe())
        self.error = error


@dataclass(frozen=True, slots=True)
class Reply:
    frame: p.Frame
    sent_s: float  # host UTC (POSIX seconds) when the request was written
    received_s: float  # host UTC when the reply was complete


@dataclass
class LinkCounters:
    requests: int = 0
    retries: int = 0
    timeouts: int = 0
    reconnects: int = 0
    stale_replies: int = 0
    unexpected: int = 0
    version_mismatch: int = 0
    board_errors: int = 0
    hellos: int = 0


@dataclass
class BridgeLink:
    port: str
    baudrate: int = 38400
    timeout_s: float = 0.5
    retries: int = 2
    serial_factory: Callable[..., Any] = serial.Serial
    counters: LinkCounters = field(default_factory=LinkCounters)
    decoder: p.StreamDecoder = field(default_factory=p.StreamDecoder)
    hellos: list[p.Hello] = field(default_factory=list)
    _serial: Any = None
    _seq: int = 0
    _opened_before: bool = False

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    def open(self) -> None:
        if self._serial is not None:
            return
        try:
            self._serial = self.serial_factory(self.port, self.baudrate, timeout=0.02, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkError("no_port", f"cannot open {self.port}: {exc}") from None
        if self._opened_before:
            self.counters.reconnects += 1
        self._opened_before = True
        self.decoder.reset()

    def close(self) -> None:
        if self._serial is not None:
            try:
                self._serial.close()
            finally:
                self._serial = None

    def _next_seq(self) -> int:
        self._seq = self._seq % 255 + 1  # 0 is reserved for unsolicited board messages
        return self._seq

    def _io(self, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except (serial.SerialException, OSError) as exc:
            self.close()
            raise LinkError("no_port", f"lost {self.port}: {exc}") from None

    def _write(self, data: bytes) -> None:
        self._io(lambda: self._serial.write(data))

    def drain(self) -> list[p.Frame]:
        """Read what is pending and handle unsolicited frames; returns the other frames read."""
        self.open()
        data = self._io(lambda: self._serial.read(self._serial.in_waiting or 1))
        return [f for f in self.decoder.feed(data) if not self._unsolicited(f)]

    def _unsolicited(self, frame: p.Frame) -> bool:
        if frame.version != p.PROTOCOL_VERSION:
            self.counters.version_mismatch += 1
            raise LinkError("protocol", f"board on {self.port} speaks protocol version {frame.version}, this host "
                                        f"speaks {p.PROTOCOL_VERSION}: update the firmware or the host software")
        if frame.type == p.MsgType.HELLO and frame.seq == 0:
            try:
                hello = p.Hello.decode(frame.body)
            except p.ProtocolError:
                self.counters.unexpected += 1
                return True
            self.counters.hellos += 1
            self.hellos.append(hello)
            log.info("board on %s announced a boot (boot id %d, reset cause 0x%02X)", self.port, hello.boot_id,
                     hello.reset_cause)
            return True
        return False

    def request(self, type_: p.MsgType, body: bytes = b"", *, timeout_s: float | None = None,
                retries: int | None = None) -> Reply:
        """Send `type_` with `body`; the matching reply, or LinkError / BoardRefused (an ERROR reply)."""
        self.open()
        expected = p.REPLY_TYPE.get(type_, p.MsgType.ACK)
        timeout = self.timeout_s if timeout_s is None else timeout_s
        attempts = 1 + (self.retries if retries is None else retries)
        crc_before = self.decoder.counters.crc_errors + self.decoder.counters.framing_errors
        self.counters.requests += 1
        for attempt in range(attempts):
            if attempt:
                self.counters.retries += 1
            seq = self._next_seq()
            wire = b"\x00" + p.Frame(type_, seq, body).encode()
            sent = time.time()
            self._write(wire)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                for frame in self.drain():
                    if frame.seq != seq:
                        self.counters.stale_replies += 1
                        continue
                    if frame.type == p.MsgType.ERROR:
                        self.counters.board_errors += 1
                        raise BoardRefused(p.BoardError.decode(frame.body))
                    if frame.type != expected:
                        self.counters.unexpected += 1
                        continue
                    return Reply(frame, sent, time.time())
            self.counters.timeouts += 1
        damaged = self.decoder.counters.crc_errors + self.decoder.counters.framing_errors - crc_before
        if damaged:
            raise LinkError("crc", f"no intact reply to 0x{int(type_):02X} from {self.port} after {attempts} "
                                   f"attempt(s); {damaged} damaged frame(s) received")
        raise LinkError("timeout", f"no reply to 0x{int(type_):02X} from {self.port} within {timeout} s "
                                   f"after {attempts} attempt(s)")
