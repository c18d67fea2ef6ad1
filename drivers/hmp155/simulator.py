"""Simulated Vaisala HMP155 probes on a serial line: the serial modes (POLL/STOP), OPEN/CLOSE, SEND [aa], a FORM
interpreter (quantities, length modifiers, strings, #r #n #t, U5, ADDR, ERR, STAT, CS2/CS4), SMODE, ADDR, ECHO,
ERRS and `?`; ESC drops a half-typed command. Several probes may share one port, as on an RS-485 bus: each hears
every line and only the addressed one answers (two answering at once is counted as a collision).

Behaviour follows the HMP155 User Guide M210912EN and its family manuals (README.md); reply wordings, the factory
FORM and the stars for a missing value are [U]. TA and RH come from the site weather of gateway.simulation.weather
(the one the SR30 simulator's sun drives), RH consistent with the day's vapour pressure.

    from drivers.hmp155.simulator import main
    main("pty", address=0)                        # a PTY pair; prints the driver's end
"""

from __future__ import annotations

import contextlib
import math
import random
import re
import select
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

import serial

from drivers.hmp155 import grammar
from gateway.simulation.until_stopped import serve_until_stopped
from gateway.simulation.weather import MetSignal
from gateway.variables import saturation_vapour_pressure_hpa

FAULTS: dict[str, str] = {
    "none": "normal operation",
    "no_reply": "hear commands but never answer (probe off, wrong baud rate or parity, swapped A/B, wrong address)",
    "garbage": "answer SEND with line noise",
    "bad_checksum": "the CS2 field of every reply is off by one (a corrupted character)",
    "t_error": "temperature measurement error: ERR flag T set, T printed as stars",
    "rh_error": "humidity measurement error: ERR flag RH set",
    "purge": "chemical purge in progress: heating status H",
    "slow": "answer each command only after 0.5 s",
}
# [U] the factory FORM; it produces the family's classic line "RH= 45.2 %RH T= 18.2 'C"
FACTORY_FORM = '"RH=" 4.1 RH " " U5 "T=" 4.1 T " " U5 #r #n'
UNITS = {"RH": "%RH", "T": "'C", "TA": "'C", "TD": "'C", "TDF": "'C", "TW": "'C", "X": "g/kg"}
PRESSURE_HPA = 1013.25
_TOKEN_RE = re.compile(r'"[^"]*"|\S+')
_LENGTH_RE = re.compile(r"^(\d+)\.(\d+)$")


class HMP155Probe:
    """One probe's command interpreter, independent of any port."""

    def __init__(self, *, address: int = 0, mode: str = "POLL", fault: str = "none", seed: int = 0,
                 signal: MetSignal | None = None, wall_clock: Callable[[], float] = time.time,
                 units: str = "M", stat_chars: int = 1, without_modifiers: frozenset[str] = frozenset()) -> None:
        """`units` "N" prints temperatures in degF (as after `UNIT N`); `stat_chars` 7 prints STAT as the
        7-character field of the User Guide's revision C ("N 0", "H 159.0") instead of one letter;
        `without_modifiers` FORM modifiers this probe does not know (a FORM using one is "Invalid format")."""
        if not 0 <= address <= 99:
            raise ValueError(f"address {address} is outside the HMP155 range 0..99")
        self.address = address
        self.mode = mode
        self.opened = False
        self.echo = False
        self.form = FACTORY_FORM
        if units not in ("M", "N") or stat_chars not in (1, 7):
            raise ValueError(f"units must be M or N (got {units!r}), stat_chars 1 or 7 (got {stat_chars})")
        self.units = units
        self.stat_chars = stat_chars
        self.without_modifiers = frozenset(m.upper() for m in without_modifiers)
        self.signal = signal or MetSignal(seed=seed)
        self.wall_clock = wall_clock
        self._rng = random.Random(seed)
        self._fault = "none"
        self.set_fault(fault)
        self.commands: list[str] = []  # every command line this probe acted on
        self.served: list[dict[str, float]] = []  # RH and T as printed in each SEND reply

    @property
    def fault(self) -> str:
        return self._fault

    def set_fault(self, fault: str) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; choose one of {', '.join(FAULTS)}")
        self._fault = fault

    # --- measurement ---------------------------------------------------------------------------------------------

    def _quantities(self) -> dict[str, float]:
        now = self.wall_clock()
        t = self.signal.ta(now) + self._rng.gauss(0, 0.02)
        rh = min(100.0, max(0.0, self.signal.rh(now) + self._rng.gauss(0, 0.2)))
        e = rh / 100.0 * saturation_vapour_pressure_hpa(t)
        ln_ratio = math.log(max(e, 1e-6) / 6.112)
        td = 243.12 * ln_ratio / (17.62 - ln_ratio)
        if self.units == "N":
            t, td = t * 9.0 / 5.0 + 32.0, td * 9.0 / 5.0 + 32.0
        return {"RH": rh, "T": t, "TD": td, "TDF": td, "X": 621.98 * e / (PRESSURE_HPA - e)}

    def measurement(self) -> bytes:
        """The current FORM applied to a fresh measurement."""
        values = self._quantities()
        errors = {"T": self._fault == "t_error", "RH": self._fault == "rh_error"}
        stat = "H" if self._fault == "purge" else "N"
        if self.stat_chars == 7:
            stat = f"{stat} {'159.0' if stat == 'H' else '0'}".ljust(7)
        out = b""
        length = (4, 1)
        last_quantity = "RH"
        printed: dict[str, float] = {}
        for token in _TOKEN_RE.findall(self.form):
            upper = token.upper()
            if token.startswith('"'):
                out += token[1:-1].encode("ascii")
            elif (match := _LENGTH_RE.match(token)) is not None:
                length = (int(match.group(1)), int(match.group(2)))
            elif upper in ("RH", "T", "TA", "TD", "TDF", "TW", "X"):
                last_quantity = upper
                width = length[0] + 1 + length[1]
                value = values.get(upper)
                if value is None or (upper == "T" and errors["T"]):
                    text = "*" * (width - length[1] - 1) + "." + "*" * length[1]
                else:
                    text = f"{value:{width}.{length[1]}f}"
                    printed[upper] = float(text)
                out += text.rjust(width).encode("ascii")
            elif upper == "U5":
                unit = UNITS[last_quantity]
                out += (unit.replace("C", "F") if self.units == "N" else unit).ljust(5).encode("ascii")
            elif upper == "ADDR":
                out += f"{self.address:02d}".encode("ascii")
            elif upper == "ERR":
                flags = {"T": errors["T"], "Ta": False, "RH": errors["RH"], "MEM": False}
                out += "".join("1" if flags[name] else "0" for name in grammar.ERR_FLAGS).encode("ascii")
            elif upper == "STAT":
                out += stat.encode("ascii")
            elif upper in ("CS2", "CS4"):
                total = sum(out) + (1 if self._fault == "bad_checksum" else 0)
                out += (f"{total % 256:02X}" if upper == "CS2" else f"{total % 65536:04X}").encode("ascii")
            elif upper == "#R":
                out += b"\r"
            elif upper == "#N":
                out += b"\n"
            elif upper == "#T":
                out += b"\t"
            elif upper.startswith("#") and upper[1:].isdigit():
                out += bytes((int(upper[1:]) & 0x7F,))
            elif upper == "SNUM":
                out += b"S1234567"
        self.served.append(printed)
        if self._fault == "garbage":
            return bytes(self._rng.randrange(32, 127) for _ in range(24)) + b"\r\n"
        return out

    def _valid_form(self, spec: str) -> bool:
        known = {"RH", "T", "TA", "TD", "TDF", "TW", "X", "U5", "ADDR", "ERR", "STAT", "CS2", "CS4", "SNUM",
                 "#R", "#N", "#T"}
        for token in _TOKEN_RE.findall(spec):
            upper = token.upper()
            if upper in self.without_modifiers:
                return False
            if not (token.startswith('"') or _LENGTH_RE.match(token) or upper in known
                    or (upper.startswith("#") and upper[1:].isdigit())):
                return False
        return True

    # --- commands ------------------------------------------------------------------------------------------------

    def handle_line(self, line: bytes) -> bytes:
        """One command line (without CR) in, everything this probe prints in answer out (b"" = silence)."""
        text = line.decode("ascii", errors="replace").strip()
        word, _, rest = text.partition(" ")
        word, rest = word.upper(), rest.strip()
        if self._fault == "no_reply" or not word:
            return b""
        listening = self.mode == "STOP" or self.opened
        if not listening:
            # POLL mode, line not open: only SEND and OPEN naming this probe are heard
            if word in ("SEND", "OPEN") and rest.isdigit() and int(rest) == self.address:
                self.commands.append(text)
                if word == "SEND":
                    return self.measurement()
                self.opened = True
                return f"\r\nHMP {self.address} line opened for operator commands\r\n".encode("ascii")
            return b""
        self.commands.append(text)
        echo = line + b"\r\n" if self.echo else b""
        return echo + self._command(word, rest, text)

    def _command(self, word: str, rest: str, text: str) -> bytes:
        prompt = b">"
        if word == "SEND":
            if rest.isdigit() and int(rest) != self.address:
                return b""
            return self.measurement() + prompt
        if word == "OPEN":
            return b""  # in STOP mode, or already open: no effect
        if word == "CLOSE":
            self.opened = False
            if self.mode == "STOP":
                self.mode = "POLL"
            return b"\r\nline closed\r\n"
        if word == "FORM":
            spec = text[len("FORM"):].strip()
            if not spec:
                return self.form.encode("ascii") + b"\r\n" + prompt
            if len(spec) > grammar.FORM_MAX_CHARS or not self._valid_form(spec):
                return b"Invalid format\r\n" + prompt
            self.form = spec
            return prompt
        if word == "SMODE":
            if rest.upper() in ("STOP", "POLL", "RUN"):
                self.mode = rest.upper()
            return f"Serial mode    : {self.mode}\r\n".encode("ascii") + prompt
        if word == "ADDR":
            if rest.isdigit() and 0 <= int(rest) <= 99:
                self.address = int(rest)
            return f"Address        : {self.address}\r\n".encode("ascii") + prompt
        if word == "UNIT":
            if rest.upper() in ("M", "N"):
                self.units = rest.upper()
            return f"Output units   : {'metric' if self.units == 'M' else 'non metric'}\r\n".encode("ascii") + prompt
        if word == "ECHO":
            if rest.upper() in ("ON", "OFF"):
                self.echo = rest.upper() == "ON"
            return f"Echo           : {'ON' if self.echo else 'OFF'}\r\n".encode("ascii") + prompt
        if word == "ERRS":
            active = {"t_error": grammar.ERR_MEANING["T"], "rh_error": grammar.ERR_MEANING["RH"]}.get(self._fault)
            return (f"{active}\r\n" if active else "No errors\r\n").encode("ascii") + prompt
        if word == "?":
            return (f"HMP155 / 2.x\r\nAddress        : {self.address}\r\nSerial mode    : {self.mode}\r\n"
                    f"Baud P D S     : 4800 E 7 1\r\n").encode("ascii") + prompt
        return b"Unknown command\r\n" + prompt


class HMP155LineSimulator:
    """Probes on one serial port (RS-485 multidrop): every command line goes to every probe."""

    def __init__(self, port: str, probes: list[HMP155Probe], *, baudrate: int = 4800, bytesize: int = 7,
                 parity: str = "E", stopbits: int = 1) -> None:
        self.port = port
        self.probes = list(probes)
        self.settings = {"baudrate": baudrate, "bytesize": bytesize, "parity": parity, "stopbits": stopbits}
        self.collisions = 0
        self.lines: list[bytes] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._serial: serial.Serial | None = None

    def start(self) -> Self:
        if self._thread is None:
            self._stop.clear()
            self._serial = serial.Serial(self.port, timeout=0, **self.settings)  # type: ignore[arg-type]
            self._thread = threading.Thread(target=self._serve, name=f"hmp155-line-{self.port}", daemon=True)
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

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def handle_line(self, line: bytes) -> bytes:
        """What the line carries back after `line`: the answering probes' replies, in probe order."""
        with self._lock:
            self.lines.append(line)
            replies = [(probe, probe.handle_line(line)) for probe in self.probes]
        answering = [(probe, reply) for probe, reply in replies if reply]
        if len(answering) > 1:
            self.collisions += 1  # on a real half-duplex bus both replies would be garbage
        if any(probe.fault == "slow" for probe, _ in answering):
            time.sleep(0.5)
        return b"".join(reply for _, reply in answering)

    def _serve(self) -> None:
        assert self._serial is not None
        fd = self._serial.fileno()
        pending = b""
        while not self._stop.is_set():
            try:
                data = self._serial.read(256) if select.select((fd,), (), (), 0.02)[0] else b""
            except (serial.SerialException, OSError, TypeError):
                if self._stop.is_set():
                    return
                time.sleep(0.02)
                continue
            for byte in data:
                char = bytes((byte & 0x7F,))  # 7 data bits on the wire
                if char == grammar.ESC:
                    pending = b""
                elif char == b"\r":
                    reply = self.handle_line(pending)
                    pending = b""
                    if reply:
                        try:
                            self._serial.write(reply)
                        except (serial.SerialException, OSError, TypeError):
                            if not self._stop.is_set():
                                raise
                elif char != b"\n":
                    pending += char


def main(port: str, address: int = 0, fault: str = "none", seed: int = 0, baudrate: int = 4800) -> None:
    """Entry for `sinkwatch simulate hmp155 --port P`: one probe in POLL mode (4800 7E1) until Ctrl-C."""
    probe = HMP155Probe(address=address, fault=fault, seed=seed)
    with contextlib.ExitStack() as stack:
        sim_end = driver_end = port
        if port == "pty":
            from gateway.simulation.pty import python_pty_pair

            sim_end, driver_end = stack.enter_context(python_pty_pair())
        stack.enter_context(HMP155LineSimulator(sim_end, [probe], baudrate=baudrate))
        print(f"HMP155 simulator in POLL mode at address {address}, {baudrate} 7E1, fault {fault!r}: point the "
              f"driver's port at {driver_end}", flush=True)
        serve_until_stopped(lambda: f"stopped after {len(probe.commands)} commands")
