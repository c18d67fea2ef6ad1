"""The reference firmware's board side in Python: protocol v1 (docs/firmware-bridge-protocol.md) on a serial port or
PTY, for the demo and tests on machines without simavr (`simulator.py` runs the real firmware under simavr).

It follows `firmware/src/app.c` message by message — the same replies, error codes and arguments, the 24-record
ring acknowledged by sequence number (serial-number arithmetic), records dropped and counted when it overflows, the
sampling schedule restarted when it falls a whole interval behind, the firmware-image staging with its checks — and
the tests run the host driver against both. The analog inputs are voltages (mV, set or given as functions of time)
converted as the ATmega328P's 10-bit ADC against AVcc = 5000 mV does; each record sums 16 conversions of the channel
and 16 of the excitation (ADC7), interleaved. No SDI-12 sensor is attached: an SDI-12 request waits its timeout and
answers "no reply", as the firmware does on an empty bus.

    with PythonBoard(port) as board:            # port: the board's end of a PTY pair
        board.set_voltage(7, 2500)              # excitation, mV
        board.set_signal(0, lambda t: 1100.0)   # a dendrometer wiper, mV as a function of Unix time
"""

from __future__ import annotations

import contextlib
import random
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import serial

from firmware_bridge import protocol as p

RING_SIZE = 24
OVERSAMPLE = 16
ANALOG_CHANNELS = 4
EXCITATION_CHANNEL = 7
MAX_ADDRESSES = 8
FW_MAX_IMAGE = 28672
MIN_INTERVAL_MS = 100
MAX_INTERVAL_MS = 86_400_000
LOW_EXCITATION = 50 * OVERSAMPLE
AVCC_MV = 5000.0
FIRMWARE = (1, 0, 0)
SDI12_BUS = 0x10


@dataclass
class _Record:
    seq: int
    channel: int
    flags: int
    ticks: int
    raw: int
    excitation: int


class PythonBoard:
    def __init__(self, port: str = "", *, boot_id: int = 1, reset_cause: int = 1, board_id: str = "PYBOARD1",
                 wall_clock: Callable[[], float] = time.time,
                 sdi12: Callable[[str, int], tuple[int, str]] | None = None, adc_noise_counts: float = 0.0,
                 seed: int = 0) -> None:
        """`port`: the board's serial port (needed by `start()` only). `sdi12(command, timeout_ms) -> (status,
        reply)` answers the SDI-12 bus; without it the bus is empty (status 1, no reply, after the timeout).
        `adc_noise_counts`: Gaussian noise of each conversion (a real ADC's ±1 count dithers the 16-fold sum below
        one count; 0: exact conversions, as the vectors' fake hardware)."""
        self.port = port
        self.boot_id = boot_id & 0xFFFF
        self.reset_cause = reset_cause & 0xFF
        self.board_id = board_id
        self.wall_clock = wall_clock
        self._voltage: dict[int, Callable[[float], float]] = {EXCITATION_CHANNEL: lambda _t: 2500.0}
        self._counts: dict[int, int] = {}  # ADC counts that override a channel's voltage (the vectors' fake HAL)
        self._fixed_millis: int | None = None
        self._sdi12_bus = sdi12
        self._noise = adc_noise_counts
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._tick_offset = 0
        self.interval_ms = 1000
        self.channel_mask = 0
        self.addresses = ""
        self._next_sample = 0
        self._ring: list[_Record] = []
        self._next_record_seq = 0
        self.records_dropped = 0
        self.unknown_type = 0
        self.version_mismatch = 0
        self._decoder = p.StreamDecoder()
        self._fw = {"active": 0, "size": 0, "next": 0, "expected": 0, "crc": 0xFFFF}  # app.c's fw_* fields
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._serial: serial.Serial | None = None

    # --- the analog front end ------------------------------------------------------------------------------------

    def set_voltage(self, channel: int, mv: float) -> None:
        with self._lock:
            self._voltage[channel] = lambda _t: mv

    def set_signal(self, channel: int, mv_of_time: Callable[[float], float]) -> None:
        """A channel's voltage as a function of Unix time (a dendrometer following a stem)."""
        with self._lock:
            self._voltage[channel] = mv_of_time

    def set_adc(self, channel: int, counts: int) -> None:
        """Pin a channel's conversion result (0..1023), as the vectors' fake hardware does."""
        with self._lock:
            self._counts[channel] = counts

    def _adc(self, channel: int, now: float) -> int:
        if channel in self._counts:
            return self._counts[channel]
        source = self._voltage.get(channel)
        mv = 0.0 if source is None else source(now)
        counts = mv * 1024.0 / AVCC_MV + (self._rng.gauss(0.0, self._noise) if self._noise else 0.0)
        return max(0, min(1023, int(counts)))

    # --- the board's clock -----------------------------------------------------------------------------------------

    def millis(self) -> int:
        if self._fixed_millis is not None:
            return self._fixed_millis
        return (int((time.monotonic() - self._started) * 1000.0) + self._tick_offset) & 0xFFFFFFFF

    def _set_millis(self, ticks: int) -> None:
        if self._fixed_millis is not None:
            self._fixed_millis = ticks & 0xFFFFFFFF
        else:
            self._tick_offset += ticks - self.millis()

    def hold_millis(self, ticks: int) -> None:
        """Stop the board's clock at `ticks` ms (the vectors' fake hardware); it moves only when set again."""
        with self._lock:
            self._fixed_millis = ticks & 0xFFFFFFFF

    # --- sampling (app.c fb_app_poll, push_record) -----------------------------------------------------------------

    def poll(self) -> None:
        with self._lock:
            if not self.channel_mask:
                return
            now = self.millis()
            if _signed(now - self._next_sample) < 0:
                return
            self._next_sample = (self._next_sample + self.interval_ms) & 0xFFFFFFFF
            if _signed(now - self._next_sample) >= 0:  # fell behind by a whole interval: restart the schedule
                self._next_sample = (now + self.interval_ms) & 0xFFFFFFFF
            wall = self.wall_clock()
            for channel in range(ANALOG_CHANNELS):
                if not self.channel_mask & (1 << channel):
                    continue
                raw = excitation = 0
                for _ in range(OVERSAMPLE):
                    raw += self._adc(channel, wall)
                    excitation += self._adc(EXCITATION_CHANNEL, wall)
                self._push(channel, now, raw, excitation)

    def _push(self, channel: int, ticks: int, raw: int, excitation: int) -> None:
        if len(self._ring) == RING_SIZE:  # full: the oldest unacknowledged record is lost, and counted
            self._ring.pop(0)
            self.records_dropped = (self.records_dropped + 1) & 0xFFFF
        flags = (0x01 if raw >= 1023 * OVERSAMPLE else 0) | (0x02 if excitation < LOW_EXCITATION else 0)
        self._ring.append(_Record(self._next_record_seq, channel, flags, ticks, raw, excitation))
        self._next_record_seq = (self._next_record_seq + 1) & 0xFFFF

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._ring)

    # --- requests (app.c dispatch) ---------------------------------------------------------------------------------

    def handle(self, frame: p.Frame) -> bytes:
        """One decoded request frame in, the encoded reply out (what the firmware writes)."""
        with self._lock:
            return self._dispatch(frame)

    def receive(self, data: bytes) -> bytes:
        """Bytes from the host in, every byte the board writes in answer out (nothing for damaged frames)."""
        return b"".join(self.handle(frame) for frame in self._decoder.feed(data))

    def hello(self) -> bytes:
        """What the board writes after a reset: a 0x00 (the host drops its partial frame), then HELLO."""
        body = p.Hello(self.boot_id, self.reset_cause, p.PROTOCOL_VERSION).encode()
        return b"\x00" + p.Frame(p.MsgType.HELLO, 0, body).encode()

    def _reply(self, type_: int, seq: int, body: bytes = b"") -> bytes:
        return p.Frame(type_, seq, body).encode()

    def _error(self, seq: int, code: int, request: int, argument: int = 0) -> bytes:
        return self._reply(p.MsgType.ERROR, seq, p.BoardError(code, request, argument & 0xFFFFFFFF).encode())

    def _dispatch(self, frame: p.Frame) -> bytes:
        kind, seq, body = frame.type, frame.seq, frame.body
        if frame.version != p.PROTOCOL_VERSION:
            self.version_mismatch = (self.version_mismatch + 1) & 0xFFFF
            return self._error(seq, p.ErrorCode.BAD_VERSION, kind, p.PROTOCOL_VERSION)
        n = len(body)
        if kind == p.MsgType.IDENTIFY and n == 0:
            channels = tuple((c, p.ChannelKind.ANALOG_RATIOMETRIC) for c in range(ANALOG_CHANNELS))
            identity = p.Identity(self.board_id, FIRMWARE, p.PROTOCOL_VERSION, self.boot_id,
                                  (*channels, (SDI12_BUS, p.ChannelKind.SDI12_BUS)))
            return self._reply(p.MsgType.IDENTIFY_REPLY, seq, identity.encode())
        if kind == p.MsgType.TIME and n in (0, 4):
            if n == 4:
                (ticks,) = struct.unpack("<I", body)
                self._set_millis(ticks)
                self._next_sample = ticks
            return self._reply(p.MsgType.TIME_REPLY, seq, p.TimeReply(self.boot_id, self.millis()).encode())
        if kind == p.MsgType.CONFIG_SET:
            return self._config_set(seq, body)
        if kind == p.MsgType.CONFIG_GET and n == 0:
            config = p.BoardConfig(self.interval_ms, self.channel_mask, self.addresses)
            return self._reply(p.MsgType.CONFIG_REPLY, seq, config.encode())
        if kind == p.MsgType.RECORDS and n == 4:
            return self._records(seq, body)
        if kind == p.MsgType.SDI12:
            return self._sdi12(seq, body)
        if kind == p.MsgType.STATUS and n == 0:
            c = self._decoder.counters
            counters = {"rx_frames": c.frames & 0xFFFF, "crc_errors": c.crc_errors & 0xFFFF,
                        "framing_errors": (c.framing_errors + c.short_frames) & 0xFFFF,
                        "overflows": c.overflows & 0xFFFF, "unknown_type": self.unknown_type,
                        "version_mismatch": self.version_mismatch, "records_dropped": self.records_dropped}
            status = p.BoardStatus(self.boot_id, self.reset_cause, counters, len(self._ring))
            return self._reply(p.MsgType.STATUS_REPLY, seq, status.encode())
        if kind in (p.MsgType.FW_BEGIN, p.MsgType.FW_CHUNK, p.MsgType.FW_COMMIT):
            return self._firmware(kind, seq, body)
        if kind in {m.value for m in (p.MsgType.IDENTIFY, p.MsgType.TIME, p.MsgType.CONFIG_GET, p.MsgType.RECORDS,
                                      p.MsgType.STATUS)}:
            return self._error(seq, p.ErrorCode.BAD_LENGTH, kind)
        self.unknown_type = (self.unknown_type + 1) & 0xFFFF
        return self._error(seq, p.ErrorCode.UNKNOWN_TYPE, kind)

    def _config_set(self, seq: int, body: bytes) -> bytes:
        kind = p.MsgType.CONFIG_SET
        if len(body) < 6 or len(body) != 6 + body[5]:
            return self._error(seq, p.ErrorCode.BAD_LENGTH, kind)
        interval, mask, count = struct.unpack_from("<IBB", body)
        if not MIN_INTERVAL_MS <= interval <= MAX_INTERVAL_MS:
            return self._error(seq, p.ErrorCode.BAD_ARGUMENT, kind, 0)
        if mask & ~((1 << ANALOG_CHANNELS) - 1):
            return self._error(seq, p.ErrorCode.BAD_ARGUMENT, kind, 1)
        addresses = body[6:6 + count]
        if count > MAX_ADDRESSES or not all(chr(c).isascii() and chr(c).isalnum() for c in addresses):
            return self._error(seq, p.ErrorCode.BAD_ARGUMENT, kind, 2)
        self.interval_ms, self.channel_mask, self.addresses = interval, mask, addresses.decode("ascii")
        self._next_sample = self.millis()
        return self._reply(p.MsgType.ACK, seq)

    def _records(self, seq: int, body: bytes) -> bytes:
        flags, ack, wanted = struct.unpack("<BHB", body)
        if flags & 1:
            while self._ring and ((ack - self._ring[0].seq) & 0xFFFF) < 0x8000:
                self._ring.pop(0)
        count = min(wanted, p.MAX_RECORDS_PER_REPLY, len(self._ring))
        records = tuple(p.Record(r.seq, r.channel, r.flags, r.ticks, r.raw, r.excitation)
                        for r in self._ring[:count])
        reply = p.RecordsReply(self.boot_id, self.records_dropped, records)
        return self._reply(p.MsgType.RECORDS_REPLY, seq, reply.encode())

    def _sdi12(self, seq: int, body: bytes) -> bytes:
        if len(body) < 3 or len(body) > 2 + p.MAX_SDI12_COMMAND or body[-1:] != b"!":
            return self._error(seq, p.ErrorCode.BAD_LENGTH, p.MsgType.SDI12)
        (timeout_ms,) = struct.unpack_from("<H", body)
        if self._sdi12_bus is not None:
            status, text = self._sdi12_bus(body[2:].decode("ascii", "replace"), timeout_ms)
        else:
            status, text = p.Sdi12Status.NO_REPLY, ""
            self._lock.release()  # an empty bus: the board waits out the timeout while sampling goes on
            try:
                time.sleep(timeout_ms / 1000.0)
            finally:
                self._lock.acquire()
        reply = p.Sdi12Reply(self.boot_id, self.millis(), p.Sdi12Status(status), text)
        return self._reply(p.MsgType.SDI12_REPLY, seq, reply.encode())

    def _firmware(self, kind: int, seq: int, body: bytes) -> bytes:
        fw = self._fw
        if kind == p.MsgType.FW_BEGIN:
            if len(body) != 6:
                return self._error(seq, p.ErrorCode.BAD_LENGTH, kind)
            size, crc = struct.unpack("<IH", body)
            if size == 0 or size > FW_MAX_IMAGE:
                return self._error(seq, p.ErrorCode.FW_SIZE, kind, FW_MAX_IMAGE)
            fw.update(active=1, size=size, next=0, expected=crc, crc=0xFFFF)
            return self._reply(p.MsgType.ACK, seq, struct.pack("<I", 0))
        if kind == p.MsgType.FW_CHUNK:
            if len(body) < 5 or len(body) > 4 + p.MAX_FW_CHUNK:
                return self._error(seq, p.ErrorCode.BAD_LENGTH, kind)
            (offset,) = struct.unpack_from("<I", body)
            data = body[4:]
            if not fw["active"] or offset != fw["next"]:
                return self._error(seq, p.ErrorCode.FW_SEQUENCE, kind, fw["next"])
            if offset + len(data) > fw["size"]:
                return self._error(seq, p.ErrorCode.FW_SIZE, kind, fw["size"])
            fw["crc"] = p.crc16_ccitt(data, fw["crc"])
            fw["next"] += len(data)
            return self._reply(p.MsgType.ACK, seq, struct.pack("<I", fw["next"]))
        if body:
            return self._error(seq, p.ErrorCode.BAD_LENGTH, kind)
        verified = fw["active"] and fw["next"] == fw["size"] and fw["crc"] == fw["expected"]
        fw["active"] = 0
        if not verified:
            return self._error(seq, p.ErrorCode.FW_VERIFY, kind, fw["crc"])
        return self._reply(p.MsgType.ACK, seq, struct.pack("<I", fw["size"]))

    # --- the port --------------------------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._threads:
            return self
        self._stop.clear()
        self._serial = serial.Serial(self.port, baudrate=38400, timeout=0.01)
        self._write(self.hello())  # after reset, as main.c
        for target, name in ((self._serve, "rx"), (self._sample, "adc")):
            thread = threading.Thread(target=target, name=f"pyboard-{name}-{self.port}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)
        self._threads.clear()
        if self._serial is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                self._serial.close()
            self._serial = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _write(self, data: bytes) -> None:
        if self._serial is None:
            return
        try:
            self._serial.write(data)
        except (serial.SerialException, OSError, TypeError):
            if not self._stop.is_set():
                raise

    def _serve(self) -> None:
        assert self._serial is not None
        while not self._stop.is_set():
            try:
                data = self._serial.read(256)
            except (serial.SerialException, OSError, TypeError):
                if self._stop.is_set():
                    return
                time.sleep(0.02)
                continue
            if data:
                self._write(self.receive(data))

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.poll()


def _signed(value: int) -> int:
    """A u32 difference as the firmware's (int32_t) cast reads it."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def stem_signal(full_range_um: float, excitation_mv: float, position_um: Callable[[float], float]) -> Callable[
        [float], float]:
    """The wiper voltage (mV) of a ratiometric dendrometer whose absolute position is `position_um(t)`."""
    return lambda t: position_um(t) / full_range_um * excitation_mv
