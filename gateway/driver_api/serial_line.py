"""`RtuSerialLine`, the standard `SerialLine` (`gateway.driver_api`): one serial port's only file descriptor, a Modbus
RTU master plus raw ASCII transactions.

The edge daemon's `SerialBus` (`gateway/edge/bus.py`) owns one per port and attaches it to every driver on that
port; a driver that is not attached (a stand-alone check, a test) may open its own with `RtuSerialLine(settings)`.

One transaction at a time, t3.5 silence before every request, stale bytes discarded, a vanished adapter closed and
reopened with capped backoff. The reply of a register read is awaited in one sleep, until it is due (its wire time
after the request, plus what this device's replies were late by lately: `ReplyTiming`), and then taken whole in one
read; only a reply not all in by then is waited for with the tty's VMIN set to what is missing. Waiting in `select`
from the start would cost a wake-up of the thread in the kernel for every burst of characters the tty receives
(a pseudo-terminal or a UART's FIFO hands them over a few at a time), even with VMIN set: Linux's n_tty wakes every
poller on each burst and `select` goes back to sleep only after asking again (bench/rs485_bus.py counts the sleeps).
The master is written over pyserial's file descriptor rather than a pymodbus client
because it needs a timeout per device on a shared port, CRC failures told apart from silence, exact pacing and
little CPU per transaction (bench/rs485_bus.py); the framing is `gateway.driver_api.rtu`.
"""

from __future__ import annotations

import logging
import os
import select
import struct
import termios
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import serial

from gateway.driver_api import rtu
from gateway.driver_api.base import DeviceError, FailureKind, SerialSettings

# The line's state changes are the edge daemon's log lines ("serial line ... unavailable"/"is back").
log = logging.getLogger("sinkwatch.edge")

REOPEN_BACKOFF_S = (0.2, 10.0)  # first and largest wait between attempts to reopen a vanished adapter
#: How long past its due time a reply not all in at the first look is awaited whole (one wake-up, VMIN) before
#: reading it piecemeal as it comes (one slow to start): at least this, or 10 characters.
WHOLE_REPLY_SLACK_S = 0.010
#: How much longer than its wire time a device's reply is awaited before the first look: a running estimate of the
#: `WHOLE_SHARE` quantile of how late its replies come (the device's turnaround, an adapter's latency timer, this
#: machine's scheduling), so that about that share of first looks find the reply whole. `ReplyTiming`.
WHOLE_SHARE = 0.8
LATENESS_STEP_S = 0.0005
LATENESS_CAP_S = 0.1

NO_PORT_HINT = (
    "check the USB-RS485 adapter and cable, the `port` key (ls /dev/serial/by-id/), and that no other program "
    "holds the port"
)


# --- the serial line ------------------------------------------------------------------------------------------


@dataclass
class LineCounters:
    transactions: int = 0
    timeouts: int = 0
    crc_errors: int = 0
    stray_bytes: int = 0  # bytes nobody asked for: noise, half frames; discarded before the next request
    # intact frames from another address while waiting for ours (a slow device), or an ASCII driver's replies to
    # earlier commands ahead of the current one's (drivers/gmp343 counts those here); dropped
    late_replies: int = 0
    opens: int = 0
    open_failures: int = 0
    disconnects: int = 0


class _LineLost(Exception):
    pass


class ReplyTiming:
    """How long past its wire time to sleep before the first look at each device's reply.

    A quantile tracked by stochastic approximation (Robbins & Monro 1951; Tierney 1983, "A space-efficient recursive
    procedure for estimating a quantile"): the wait grows by `LATENESS_STEP_S` x `WHOLE_SHARE` when a reply is not
    all in at the first look and shrinks by `LATENESS_STEP_S` x (1 - `WHOLE_SHARE`) when it is, so it settles where
    that share of first looks find the reply whole. Only that one bit is needed, which is all a first look tells;
    a single very late reply (a loaded machine) moves the wait by one step, not by how late it was. Waiting too
    long costs line time only; too short, the wake-ups of reading the rest as it comes. A device that answers at
    once (the simulators, a probe on a UART) stays at 0."""

    def __init__(self) -> None:
        self._extra_s: dict[int, float] = {}

    def extra_s(self, device: int) -> float:
        return self._extra_s.get(device, 0.0)

    def first_look(self, device: int, *, whole: bool) -> None:
        extra = self._extra_s.get(device, 0.0)
        if whole:
            extra -= LATENESS_STEP_S * (1.0 - WHOLE_SHARE)
        else:
            extra += LATENESS_STEP_S * WHOLE_SHARE
        if extra <= 0.0:
            self._extra_s.pop(device, None)
        else:
            self._extra_s[device] = min(extra, LATENESS_CAP_S)


class RtuSerialLine:
    """The `gateway.driver_api.SerialLine` of one port: Modbus RTU master plus raw ASCII transactions.

    Not thread-safe by design: exactly one thread (its SerialBus) uses it. A lock still guards each transaction
    so that a misuse serialises instead of colliding on the wire.
    """

    def __init__(self, settings: SerialSettings, *, reopen_backoff_s: tuple[float, float] = REOPEN_BACKOFF_S) -> None:
        self.settings = settings
        bits = rtu.bits_per_char(settings.bytesize, settings.parity, settings.stopbits)
        self.char_s = bits / settings.baudrate
        self.gap_s = rtu.frame_gap_s(settings.baudrate, bits)
        # Waking a little after the last character is due saves a second wake-up for it (USB adapters and the
        # kernel deliver bytes in bursts, slightly late): a third of a character, at least 0.2 ms.
        self._margin_s = max(0.0002, self.char_s / 3)
        self.counters = LineCounters()
        self.reply_timing = ReplyTiming()
        self.available: bool | None = None
        self._reopen_backoff = reopen_backoff_s
        self._port: serial.Serial | None = None
        self._fd = -1
        self._next_open = 0.0
        self._failed_opens = 0
        self._last_error = ""
        self._quiet_from = 0.0  # monotonic time from which the line has been silent for t3.5
        self._drained = False  # the last transaction ended on a whole reply that its read emptied the tty of
        self._termios: list[Any] | None = None  # the port's attributes, to set VMIN (None: not a tty)
        self._vmin = -1
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RtuSerialLine({self.settings.port!r}, {self.settings.describe()})"

    # --- open, lose, reopen -------------------------------------------------------------------------------------

    def _ensure_open(self) -> int:
        if self._port is not None:
            return self._fd
        now = time.monotonic()
        port = self.settings.port
        if now < self._next_open:
            raise DeviceError(
                FailureKind.NO_PORT,
                f"serial line {port} is unavailable ({self._last_error}); next reopen attempt in "
                f"{self._next_open - now:.1f} s",
                NO_PORT_HINT,
            )
        try:
            handle = serial.Serial(
                port=port,
                baudrate=self.settings.baudrate,
                bytesize=self.settings.bytesize,
                parity=self.settings.parity,
                stopbits=self.settings.stopbits,
                timeout=0,
                write_timeout=2.0,
                exclusive=True,
            )
        except (serial.SerialException, OSError, ValueError, termios.error) as exc:
            self._failed_opens += 1
            self.counters.open_failures += 1
            first, largest = self._reopen_backoff
            self._next_open = now + min(first * 2 ** (self._failed_opens - 1), largest)
            # termios refusing the character format: the device (a PTY, some adapters) cannot do these settings
            refused = f"the port refused the serial settings {self.settings.describe()}: " \
                if isinstance(exc, termios.error) else ""
            self._last_error = f"cannot open: {refused}{exc}"
            if self.available is not False:
                log.error("serial line %s unavailable: %s", port, self._last_error)
                self.available = False
            raise DeviceError(FailureKind.NO_PORT, f"serial line {port}: {self._last_error}", NO_PORT_HINT) from None
        self._port = handle
        self._fd = handle.fileno()
        try:
            self._termios = termios.tcgetattr(self._fd)
        except termios.error:
            self._termios = None  # not a tty (a test double): readiness on the first byte, as select gives it
        self._vmin = -1
        if self._termios is not None:
            # pyserial's timeout 0 means VMIN 0, under which a read of nothing returns b"" like a hang-up; from
            # VMIN 1 on it raises EAGAIN, so b"" means the adapter is gone
            try:
                self._ready_at(self._fd, 1)
            except _LineLost:
                self._termios = None  # gone already: the first read says so
        self.counters.opens += 1
        if self.available is False:
            log.info("serial line %s is back (opened after %d failed attempts)", port, self._failed_opens)
        self.available = True
        self._failed_opens = 0
        self._quiet_from = time.monotonic() + self.gap_s
        return self._fd

    def _lost(self, exc: BaseException) -> DeviceError:
        self.counters.disconnects += 1
        self._last_error = f"adapter disappeared ({type(exc).__name__}: {exc})"
        if self.available is not False:
            log.error("serial line %s unavailable: %s; reopening with backoff", self.settings.port, self._last_error)
            self.available = False
        self.close()
        self._next_open = 0.0  # the first reopen is tried at once; then backoff
        return DeviceError(FailureKind.NO_PORT, f"serial line {self.settings.port}: {self._last_error}", NO_PORT_HINT)

    def close(self) -> None:
        if self._port is not None:
            try:
                self._port.close()
            except (serial.SerialException, OSError):
                log.debug("closing %s raised", self.settings.port, exc_info=True)
        self._port = None
        self._fd = -1
        self._termios = None

    @property
    def is_open(self) -> bool:
        return self._port is not None

    # --- one transaction ----------------------------------------------------------------------------------------

    def _exchange(
        self,
        request: bytes,
        frame_length: Callable[[bytes], int | None],
        timeout_s: float,
        expected: int = 1,
        foreign: Callable[[bytes], bool] | None = None,
    ) -> bytes:
        """Send `request` after the line has been quiet for t3.5, read until `frame_length` says the reply is
        complete or `timeout_s` passes; return what arrived (possibly partial or empty).

        `expected` (the reply length if all goes well) lets the reader sleep until the whole reply is due and take
        it in one read instead of waking for each burst of characters: on a real line the wake-ups are most of the
        CPU a transaction costs, so a transaction costs two (the t3.5 wait before the request, the whole reply).
        A complete frame that `foreign` recognises as not ours (a slow device's late reply to an earlier request)
        is dropped, and reading goes on until our reply or the deadline."""
        with self._lock:
            fd = self._ensure_open()
            try:
                wait = self._quiet_from - time.monotonic()
                if wait > 0 and self._drained:
                    # Back to back after a whole reply: its read, less than t3.5 ago, took all there was, and what
                    # comes during the silence arrives after any look before it; it is read with the next reply and
                    # told apart from it (`_our_frame_at_end`). A read saved per transaction (bench/rs485_bus.py).
                    time.sleep(wait)
                else:
                    self._discard_stale(fd)
                    if wait > 0:
                        time.sleep(wait)
                self._drained = False
                os.write(fd, request)
                self.counters.transactions += 1
                sent = time.monotonic()
                # The reply cannot start before the request has left the UART and the line has been silent for
                # t3.5, nor end before its own characters have crossed the wire.
                wire = len(request) * self.char_s
                deadline = sent + wire + timeout_s
                reply = self._read_frame(fd, request[0], frame_length, deadline, sent + wire + self.gap_s +
                                         expected * self.char_s + self._margin_s, expected, foreign)
            except (OSError, serial.SerialException, _LineLost) as exc:
                raise self._lost(exc) from None
            self._quiet_from = time.monotonic() + self.gap_s
            # a register read's whole reply (an ASCII reply is not told apart from what precedes it: always look)
            self._drained = expected > 1 and frame_length(reply) == len(reply)
            return reply

    def _discard_stale(self, fd: int) -> None:
        if self._termios is None:
            while select.select((fd,), (), (), 0)[0]:
                data = os.read(fd, 4096)
                if not data:
                    raise _LineLost("end of file")
                self.counters.stray_bytes += len(data)
            return
        # the port is non-blocking: a read returns what is there whatever VMIN says, EAGAIN when nothing is
        while True:
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:
                return
            if not data:
                raise _LineLost("end of file")
            self.counters.stray_bytes += len(data)

    @staticmethod
    def _take_waiting(fd: int) -> bytes:
        """What the (non-blocking) tty holds now, b"" if nothing; _LineLost when the adapter is gone."""
        try:
            data = os.read(fd, 512)
        except BlockingIOError:
            return b""
        if not data:
            raise _LineLost("end of file")
        return data

    def _ready_at(self, fd: int, count: int) -> None:
        """Make the tty readable (for select) only once `count` bytes are in: the kernel's VMIN with VTIME 0
        (termios(3); Linux n_tty polls readable at MIN characters when TIME is 0). The port is non-blocking, so
        a read still returns whatever is there."""
        if count == self._vmin or self._termios is None:
            return
        attributes = self._termios
        control = attributes[6]
        control[termios.VMIN] = count
        control[termios.VTIME] = 0
        try:
            termios.tcsetattr(fd, termios.TCSANOW, attributes)
        except termios.error as exc:  # the adapter vanished under us
            raise _LineLost(f"tcsetattr: {exc}") from None
        self._vmin = count

    def _read_frame(
        self,
        fd: int,
        device: int,
        frame_length: Callable[[bytes], int | None],
        deadline: float,
        earliest: float,
        expected: int,
        foreign: Callable[[bytes], bool] | None,
    ) -> bytes:
        buffer = b""
        timed = expected > 1 and self._termios is not None
        whole_at_first_look = False
        if timed:
            # One wake-up for the whole reply: sleep until it is due, then take what is there (a shorter reply, an
            # exception, is whole too). One not all in yet is awaited whole (VMIN) until the slack runs out, then
            # read piecemeal below.
            pause = min(earliest + self.reply_timing.extra_s(device), deadline) - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            buffer = self._take_waiting(fd)
            length = frame_length(buffer)
            whole_at_first_look = (length is not None and len(buffer) >= length
                                   and (foreign is None or not foreign(buffer[:length])))
            if (buffer and not (whole_at_first_look and length == len(buffer))
                    and (length is None or not rtu.crc_ok(buffer[:length]))):
                start = self._our_frame_at_end(buffer, device, frame_length)
                if start:
                    self.counters.stray_bytes += start
                    buffer = buffer[start:]
                    whole_at_first_look = True
            if whole_at_first_look:
                self.reply_timing.first_look(device, whole=True)
            else:
                if length is None or len(buffer) < length:
                    self._ready_at(fd, max(1, (length or expected) - len(buffer)))
                    whole_by = min(deadline, earliest + max(WHOLE_REPLY_SLACK_S, 10 * self.char_s))
                    if select.select((fd,), (), (), max(whole_by - time.monotonic(), 0.0))[0]:
                        buffer += self._take_waiting(fd)
                length = frame_length(buffer)
                if length is None or len(buffer) < length or (foreign is not None and foreign(buffer[:length])):
                    self._ready_at(fd, 1)  # not (only) our whole reply: from here on, every byte counts
        else:
            self._ready_at(fd, 1)
            pause = earliest - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        while True:
            length = frame_length(buffer)
            if buffer and (length is None or (len(buffer) >= length and not rtu.crc_ok(buffer[:length]))):
                # what came does not begin with a frame that passes: a reply that arrived after the first look
                # behind noise is taken from the end, as one already in at the first look is (above)
                start = self._our_frame_at_end(buffer, device, frame_length)
                if start:
                    self.counters.stray_bytes += start
                    buffer = buffer[start:]
                    length = frame_length(buffer)
            if length is not None and len(buffer) >= length:
                if foreign is not None and foreign(buffer[:length]):
                    self.counters.late_replies += 1
                    buffer = buffer[length:]
                    continue
                if len(buffer) > length:
                    self.counters.stray_bytes += len(buffer) - length
                if timed and not whole_at_first_look:  # a reply that never came teaches nothing about its timing
                    self.reply_timing.first_look(device, whole=False)
                return buffer[:length]
            if buffer:
                # Sleep through the characters still to come (never past the deadline).
                missing = (length or max(expected, len(buffer) + 1)) - len(buffer)
                pause = min(missing * self.char_s + self._margin_s, deadline - time.monotonic())
                if pause > 0.0002:
                    time.sleep(pause)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select((fd,), (), (), remaining)[0]:
                return buffer
            data = os.read(fd, 512)
            if not data:
                raise _LineLost("end of file")
            buffer += data

    @staticmethod
    def _our_frame_at_end(buffer: bytes, device: int, frame_length: Callable[[bytes], int | None]) -> int:
        """Where a whole reply of `device` that passes its CRC begins, when `buffer` ends with one behind bytes that
        are no frame (noise on the line, the tail of a frame cut short); 0 when it does not. The reply is what
        arrived last, so it is looked for at the end; what precedes it is stray."""
        for start in range(1, len(buffer) - 3):
            if (buffer[start] == device and frame_length(buffer[start:]) == len(buffer) - start
                    and rtu.crc_ok(buffer[start:])):
                return start
        return 0

    # --- the SerialLine protocol ------------------------------------------------------------------------------

    def read_registers(
        self, device: int, address: int, count: int, *, function: int = 3, timeout_s: float, retries: int = 0
    ) -> list[int]:
        request = rtu.read_request(device, function, address, count)
        failure: DeviceError | None = None
        for _attempt in range(retries + 1):
            reply = self._exchange(request, rtu.response_length, timeout_s, expected=5 + 2 * count,
                                   foreign=lambda frame: frame[0] != device and rtu.crc_ok(frame))
            try:
                return self._decode_read(reply, device, function, count, timeout_s)
            except rtu.ModbusExceptionReply:
                raise
            except DeviceError as exc:
                if exc.kind is FailureKind.PROTOCOL:
                    raise
                failure = exc  # silence or a CRC failure: worth another attempt
        assert failure is not None
        if retries:
            failure.message += f" ({retries + 1} attempts)"
            failure.args = (failure.message,)
        raise failure

    def _decode_read(self, reply: bytes, device: int, function: int, count: int, timeout_s: float) -> list[int]:
        if not reply:
            self.counters.timeouts += 1
            raise DeviceError(
                FailureKind.TIMEOUT,
                f"no reply from address {device} within {timeout_s} s",
                f"check the device's power, its address, the serial settings ({self.settings.describe()}) and the "
                "RS-485 wiring (try swapping A and B)",
            )
        if not rtu.crc_ok(reply) or rtu.response_length(reply) != len(reply):
            self.counters.crc_errors += 1
            raise DeviceError(
                FailureKind.CRC,
                f"reply from address {device} failed the CRC check or was cut short ({reply.hex(' ')})",
                "electrical noise: check 120 ohm termination at both bus ends, cable shield/ground and length, "
                "and that no two devices share an address",
            )
        if reply[0] != device:
            raise DeviceError(
                FailureKind.PROTOCOL,
                f"asked address {device}, address {reply[0]} answered ({reply.hex(' ')})",
                "a late reply from another device: raise that device's timeout_s, or check for duplicate addresses",
            )
        if reply[1] == function | 0x80:
            raise rtu.ModbusExceptionReply(device, function, reply[2])
        if reply[1] != function or reply[2] != 2 * count:
            raise DeviceError(
                FailureKind.PROTOCOL,
                f"address {device}: unexpected reply to function {function} for {count} registers ({reply.hex(' ')})",
                "check for another device answering at the same address",
            )
        return list(struct.unpack(f">{count}H", reply[3:-2]))

    def transact(self, request: bytes, *, complete: Callable[[bytes], bool], timeout_s: float) -> bytes:
        """An ASCII command/reply: `complete(received)` says when the reply is whole; TIMEOUT if it never is."""
        reply = self._exchange(request, lambda buffer: len(buffer) if complete(buffer) else None, timeout_s)
        if not complete(reply):
            self.counters.timeouts += 1
            raise DeviceError(
                FailureKind.TIMEOUT,
                f"no complete reply to {request!r} within {timeout_s} s (received {reply!r})",
                f"check the device's power, the serial settings ({self.settings.describe()}) and the wiring",
            )
        return reply
