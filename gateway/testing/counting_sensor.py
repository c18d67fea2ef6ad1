"""A counting sensor for the chaos harness: Vaisala GMP252 probes on one Modbus RTU line whose every measurement
carries a serial number, and a log of every poll served.

Independent of the code under test on purpose: it runs in its own process (a station or broker killed by the
harness never takes it along), and it frames, checksums and encodes its replies itself, from the manual rather
than from `drivers/gmp252` (Vaisala GMP252 User Guide M211897EN-D, Appendix A: function 03 Read Holding
Registers, 32-bit floats least-significant word first, "CDAB"; status registers 0x0800/0x0801 and error code
0x0803 per M211897EN-E), so a decoding fault shared by driver and simulator could not hide.

A poll of the sinkwatch GMP252 driver is three transactions to one address: CO2 (0x0000, 2 registers), probe
temperature (0x0004, 2) and status (0x0800, 2). The probe counts polls: a CO2 read starts poll `n + 1` and is
answered with `co2_of(n)`; the temperature read of the same poll gets `temperature_of(n)`; when the status reply
of that poll has been written to the line, the poll is *served* and one JSON line is appended (and flushed) to the
served log: address, n, both values (`repr`, exact), and the monotonic and wall-clock times of the write. Every
value is unique per address and decodes back to its `n` exactly (`poll_of_co2`), so a reading found in the store
proves which poll it came from and that its value is unaltered.

The line survives being pulled: when its PTY vanishes (socat stopped), the probe closes its end and reopens it
when the link is back, discarding whatever was queued while unplugged, as a device that was disconnected never
saw those bytes.

    python -m gateway.testing.counting_sensor --port PTY --addresses 240,241,242 --log served.jsonl
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import serial

FC_READ_HOLDING = 0x03
EXC_ILLEGAL_FUNCTION, EXC_ILLEGAL_ADDRESS, EXC_ILLEGAL_VALUE = 0x01, 0x02, 0x03
CO2_REGISTER, TEMPERATURE_REGISTER, STATUS_REGISTER, ERROR_REGISTER = 0x0000, 0x0004, 0x0800, 0x0803
# Registers this probe answers (the points the driver reads, with their neighbours of the manual's map);
# anything else gets exception 02, as the real probe answers outside its map.
_MAPPED = frozenset(range(0x0000, 0x0006)) | frozenset(range(0x0800, 0x0805))
CO2_BASE_PPM = 400.0
CO2_STEP_DIVISOR = 7  # n/7: a float32 with all its digits in use, so any rounding on the way shows


def float32(value: float) -> float:
    return float(struct.unpack(">f", struct.pack(">f", value))[0])


def co2_of(n: int) -> float:
    """The CO2 value (ppm) of poll `n`: distinct for every n up to 2^24 and exactly representable as float32."""
    return float32(CO2_BASE_PPM + n / CO2_STEP_DIVISOR)


def temperature_of(n: int) -> float:
    """The probe temperature (degC) of poll `n`."""
    return float32(-40.0 + (n % 100_000) / 1000.0)


def poll_of_co2(value: float | None) -> int | None:
    """The poll whose CO2 value this is, or None when no poll was ever answered with exactly this value."""
    if value is None or not math.isfinite(value):
        return None
    n = round((value - CO2_BASE_PPM) * CO2_STEP_DIVISOR)
    return n if n >= 1 and co2_of(n) == value else None


def crc16_modbus(data: bytes) -> int:
    """CRC-16/MODBUS (polynomial 0xA001 reflected, initial 0xFFFF), sent low byte first."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def with_crc(frame: bytes) -> bytes:
    return frame + crc16_modbus(frame).to_bytes(2, "little")


def float_words(value: float) -> tuple[int, int]:
    """A float32 as the GMP252 sends it: (register n, register n+1) = (low word, high word)."""
    bits = struct.unpack(">I", struct.pack(">f", value))[0]
    return bits & 0xFFFF, bits >> 16


@dataclass(frozen=True, slots=True)
class ServedPoll:
    """One line of the served log."""

    address: int
    n: int
    co2: float
    temperature: float
    monotonic: float  # time.monotonic() after the status reply was written (system-wide on Linux)
    wall: float  # time.time() at the same moment

    def to_json(self) -> str:
        return json.dumps({"a": self.address, "n": self.n, "co2": repr(self.co2), "t": repr(self.temperature),
                           "mono": self.monotonic, "wall": self.wall}, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> ServedPoll:
        item = json.loads(line)
        return cls(int(item["a"]), int(item["n"]), float(item["co2"]), float(item["t"]), float(item["mono"]),
                   float(item["wall"]))


def read_served_log(path: Path) -> Iterator[ServedPoll]:
    """Every complete line of the served log, in the order written (a line being written is skipped)."""
    if not path.exists():
        return
    with open(path, encoding="utf-8") as stream:
        for line in stream:
            if line.endswith("\n"):
                yield ServedPoll.from_json(line)


class _Probe:
    """One address: the poll counter and where the current poll stands."""

    def __init__(self, address: int, last_n: int) -> None:
        self.address = address
        self.n = last_n
        self.stage = "idle"  # "co2" after the CO2 read of poll n, "temperature" after its temperature read

    def registers(self, start: int, count: int) -> list[int] | None:
        span = range(start, start + count)
        if any(a not in _MAPPED for a in span):
            return None
        if start == CO2_REGISTER:
            self.n += 1
            self.stage = "co2"
        elif start == TEMPERATURE_REGISTER and self.stage in ("co2", "temperature"):
            self.stage = "temperature"
        words: dict[int, int] = {}
        words[0], words[1] = float_words(co2_of(self.n))
        words[2], words[3] = 0, 0  # unused gap between the two floats
        words[4], words[5] = float_words(temperature_of(self.n))
        words.update({0x0800: 0, 0x0801: 0, 0x0802: 0, 0x0803: 0, 0x0804: 0})  # all well, no error code
        return [words[a] for a in span]


class CountingLine:
    """Counting GMP252 probes at `addresses` on the serial port `port`, logging each served poll to `log`."""

    def __init__(self, port: str, addresses: list[int], log: Path, *, baudrate: int = 19200) -> None:
        self.port = port
        self.baudrate = baudrate
        last = {a: 0 for a in addresses}
        for poll in read_served_log(log):  # a restarted simulator never serves a number twice
            last[poll.address] = max(last.get(poll.address, 0), poll.n)
        self.probes = {a: _Probe(a, n) for a, n in last.items()}
        self._log: TextIO = open(log, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._stop = threading.Event()
        self.served = 0

    def close(self) -> None:
        self._log.close()

    def stop(self) -> None:
        self._stop.set()

    def _open(self) -> serial.Serial | None:
        if not os.path.exists(self.port):
            return None
        try:
            port = serial.Serial(self.port, baudrate=self.baudrate, bytesize=8, parity="N", stopbits=2, timeout=0.02)
        except (serial.SerialException, OSError):
            return None
        port.reset_input_buffer()
        return port

    def serve(self) -> None:
        """Answer requests until `stop()`, reopening the port whenever it vanishes."""
        while not self._stop.is_set():
            port = self._open()
            if port is None:
                self._stop.wait(0.05)
                continue
            try:
                self._serve_open(port)
            except (serial.SerialException, OSError, TypeError):
                pass  # pulled: reopen once the link is back
            finally:
                with contextlib.suppress(serial.SerialException, OSError):
                    port.close()

    def _serve_open(self, port: serial.Serial) -> None:
        buffer = bytearray()
        last_rx = time.monotonic()
        while not self._stop.is_set():
            if not os.path.exists(self.port):
                return
            data = port.read(256)
            now = time.monotonic()
            if data:
                buffer += data
                last_rx = now
            elif buffer and now - last_rx > 0.05:
                buffer.clear()  # a fragment older than a frame time: noise, or a request cut by a pull
            while len(buffer) >= 8:
                frame = bytes(buffer[:8])
                if crc16_modbus(frame[:6]).to_bytes(2, "little") != frame[6:]:
                    del buffer[0]  # not a frame start: resynchronise byte by byte
                    continue
                del buffer[:8]
                self._answer(port, frame)

    def _answer(self, port: serial.Serial, frame: bytes) -> None:
        address, function = frame[0], frame[1]
        probe = self.probes.get(address)
        if probe is None:
            return  # another device's address: silence, as on a bus
        if function != FC_READ_HOLDING:
            port.write(with_crc(bytes((address, function | 0x80, EXC_ILLEGAL_FUNCTION))))
            return
        start, count = struct.unpack(">HH", frame[2:6])
        if not 1 <= count <= 125:
            port.write(with_crc(bytes((address, function | 0x80, EXC_ILLEGAL_VALUE))))
            return
        completes = start == STATUS_REGISTER and probe.stage == "temperature"
        words = probe.registers(start, count)
        if words is None:
            port.write(with_crc(bytes((address, function | 0x80, EXC_ILLEGAL_ADDRESS))))
            return
        port.write(with_crc(struct.pack(f">BBB{count}H", address, function, 2 * count, *words)))
        port.flush()
        if completes:
            probe.stage = "idle"
            served = ServedPoll(address, probe.n, co2_of(probe.n), temperature_of(probe.n), time.monotonic(),
                                time.time())
            self._log.write(served.to_json() + "\n")
            self._log.flush()
            self.served += 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Counting GMP252 probes on one Modbus RTU line (chaos harness)")
    parser.add_argument("--port", required=True, help="serial device (the simulator's end of a socat PTY pair)")
    parser.add_argument("--addresses", default="240", help="comma-separated Modbus addresses, e.g. 240,241,242")
    parser.add_argument("--log", required=True, type=Path, help="served log (JSON lines), appended to")
    parser.add_argument("--baudrate", type=int, default=19200)
    args = parser.parse_args(argv)
    line = CountingLine(args.port, [int(a) for a in args.addresses.split(",")], args.log, baudrate=args.baudrate)
    signal.signal(signal.SIGTERM, lambda *_: line.stop())
    signal.signal(signal.SIGINT, lambda *_: line.stop())
    print(f"counting probes {args.addresses} on {args.port}, log {args.log}", flush=True)
    try:
        line.serve()
    finally:
        line.close()
        print(f"stopped after {line.served} polls served", flush=True)


if __name__ == "__main__":
    main()
