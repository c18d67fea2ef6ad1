"""A simulated Vaisala GMP343 on a serial port: power-on banner, echo, `>` prompt, `send`, `r`/`s` (run/stop),
`form`, `errs`, `echo on|off`, `intv`, and the `p` parameter question; ESC discards a half-typed command.

Behaviour follows Vaisala's GMP231/GMP251 serial-command documentation and the hermes driver (see grammar.py); the
banner text, error wording and star-filled missing values are [U] (plausible, not verified against a probe). Fault
modes: see FAULTS.

    from drivers.gmp343.simulator import main
    main("pty")                                   # a PTY pair; prints the driver's end
"""

from __future__ import annotations

import contextlib
import math
import random
import threading
import time
from types import TracebackType
from typing import Self

import serial

from drivers.gmp343 import grammar
from gateway.simulation.signal import SignalModel
from gateway.simulation.until_stopped import serve_until_stopped

BANNER = b"GMP343 - Version STD 2.16\r\nCopyright: Vaisala Oyj 2004 - 2024\r\n>"
FAULTS: dict[str, str] = {
    "none": "normal operation",
    "no_reply": "read commands but never answer (wrong baud rate, RX/TX swapped, probe off)",
    "garbage": "answer `send` with line noise instead of the FORM line",
    "nan": "print stars instead of the CO2 value (no valid measurement)",
    "errs": "`errs` reports an active error",
    "slow": "answer each command only after 0.5 s",
}
ERROR_TEXT = b"E: IR source failure"  # [U] wording


class GMP343Simulator:
    def __init__(self, port: str, *, baudrate: int = 19200, seed: int = 0, fault: str = "none",
                 signal: SignalModel | None = None, interval_s: float = 1.0, reply_delay_s: float = 0.0,
                 late_banner: bool = False) -> None:
        """`reply_delay_s` and `late_banner` let a test make replies late, as a slow or busy probe (or a loaded
        host) does, without loading the machine: every command is answered `reply_delay_s` after it arrived (in
        order, like the `slow` fault), and with `late_banner` the power-on banner goes out only when the first
        command has come in (a probe switched on with the station, a banner held up on the host's side)."""
        self.port = port
        self.reply_delay_s = reply_delay_s
        self.late_banner = late_banner
        self.baudrate = baudrate
        self.signal = signal or SignalModel(base_ppm=420.0, amplitude_ppm=15.0, noise_ppm=0.5)
        self.interval_s = interval_s
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._fault = "none"
        self.set_fault(fault)
        self.echo = True
        self.form: list[str] = ["CO2", "T"]
        self.tag = ""
        self.pressure_hpa = 1013.0
        self.running = False
        self.commands: list[str] = []  # every command line received, for tests
        self.served: list[dict[str, float]] = []
        self._awaiting_parameter: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._serial: serial.Serial | None = None

    @property
    def fault(self) -> str:
        return self._fault

    def set_fault(self, fault: str) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; choose one of {', '.join(FAULTS)}")
        with self._lock:
            self._fault = fault

    # --- the command interpreter, independent of the port --------------------------------------------------

    def _measurement(self) -> bytes:
        now = time.time()
        co2 = self.signal.co2(now, self._rng)
        values = {"CO2": co2, "CO2RAW": co2 + self._rng.gauss(0, 0.8), "CO2RAWUC": co2 * 1.003 + 1.0,
                  "T": self.signal.temperature(now, self._rng)}
        fields = []
        served: dict[str, float] = {}
        for name in self.form:
            value = values.get(name, math.nan)
            if self._fault == "nan" and name.startswith("CO2"):
                fields.append("  ***.**")
                served[name] = math.nan
            else:
                text = f"{value:8.2f}"
                fields.append(text)
                served[name] = float(text)
        self.served.append(served)
        if self._fault == "garbage":
            return bytes(self._rng.randrange(32, 127) for _ in range(30)) + b"\r\n"
        return (" ".join(fields) + (f" {self.tag}" if self.tag else "")).encode() + b"\r\n"

    def handle_line(self, line: bytes) -> bytes:
        """One command line (without CR) in, everything the probe prints in answer out."""
        text = line.decode("ascii", errors="replace").strip()
        out = (line + b"\r\n") if self.echo else b""
        with self._lock:
            self.commands.append(text)
            if self._fault == "no_reply":
                return b""
            if not text and self._awaiting_parameter is None:
                return out + b">"
            if self._awaiting_parameter is not None:
                with contextlib.suppress(ValueError):
                    self.pressure_hpa = float(text)
                self._awaiting_parameter = None
                return out + b">"
            word, _, rest = text.partition(" ")
            word = word.lower()
            if self.running and word != "s":
                return b""
            if word == "send":
                return out + self._measurement() + b">"
            if word == "r":
                self.running = True
                return out
            if word == "s":
                self.running = False
                return out + b">"
            if word == "echo":
                self.echo = rest.strip().lower() != "off"
                return out + f"ECHO       : {'ON' if self.echo else 'OFF'}\r\n>".encode()
            if word == "form":
                if rest.strip():
                    return out + self._set_form(rest) + b">"
                return out + (" ".join(self.form) + (f' "{self.tag}"' if self.tag else "")).encode() + b"\r\n>"
            if word == "errs":
                return out + (ERROR_TEXT if self._fault == "errs" else grammar.ERRS_OK.encode()) + b"\r\n>"
            if word == "intv":
                with contextlib.suppress(ValueError, IndexError):
                    self.interval_s = max(0.1, float(rest.split()[0]))
                return out + f"Output intrv.  : {self.interval_s:g} s\r\n>".encode()
            if word == "p":
                if rest.strip():
                    with contextlib.suppress(ValueError):
                        self.pressure_hpa = float(rest)
                    return out + f"Pressure (hPa) : {self.pressure_hpa:.1f}\r\n>".encode()
                self._awaiting_parameter = "p"
                return out + f"Pressure (hPa) : {self.pressure_hpa:.1f} ? ".encode()
            return out + b"Unknown command\r\n>"

    def _set_form(self, spec: str) -> bytes:
        fields, tag = spec, ""
        if '"' in spec:
            fields, _, quoted = spec.partition('"')
            tag = quoted.rsplit('"', 1)[0].strip()
        names = fields.split()
        unknown = [n for n in names if n not in grammar.FIELDS]
        if unknown:
            return f"Unknown quantity {unknown[0]}\r\n".encode()
        self.form, self.tag = names, tag
        return b""

    # --- the port ------------------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._thread is None:
            self._stop.clear()
            self._serial = serial.Serial(self.port, baudrate=self.baudrate, timeout=0.02)
            self._thread = threading.Thread(target=self._serve, name=f"gmp343-sim-{self.port}", daemon=True)
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

    def _write(self, data: bytes) -> None:
        if data and self._serial is not None:
            try:
                self._serial.write(data)
            except (serial.SerialException, OSError, TypeError):
                if not self._stop.is_set():
                    raise

    def _serve(self) -> None:
        assert self._serial is not None
        banner_due = self.late_banner
        if not banner_due:
            self._write(BANNER)
        pending = b""
        next_output = time.monotonic()
        while not self._stop.is_set():
            try:
                data = self._serial.read(256)
            except (serial.SerialException, OSError, TypeError):
                if self._stop.is_set():
                    return
                time.sleep(0.02)
                continue
            for byte in data:
                char = bytes((byte,))
                if char == grammar.ESC:
                    pending = b""  # resync: a half-typed command is dropped
                elif char in (b"\r", b"\n"):
                    if pending or char == b"\r":
                        if banner_due:
                            self._write(BANNER)
                            banner_due = False
                        delay = 0.5 if self._fault == "slow" else self.reply_delay_s
                        if delay > 0:
                            time.sleep(delay)
                        self._write(self.handle_line(pending))
                    pending = b""
                else:
                    pending += char
            if self.running and time.monotonic() >= next_output:
                with self._lock:
                    self._write(self._measurement())
                next_output = time.monotonic() + self.interval_s


def main(port: str, fault: str = "none", seed: int = 0) -> None:
    """Entry for `sinkwatch simulate gmp343 --port P` (no address: the ASCII probe has none; `--address` is refused)."""
    with contextlib.ExitStack() as stack:
        sim_end = driver_end = port
        if port == "pty":
            from gateway.simulation.pty import python_pty_pair

            sim_end, driver_end = stack.enter_context(python_pty_pair())
        simulator = stack.enter_context(GMP343Simulator(sim_end, fault=fault, seed=seed))
        print(f"GMP343 simulator, fault {fault!r}: point the driver's port at {driver_end} (19200 8N1)", flush=True)
        serve_until_stopped(lambda: f"stopped after {len(simulator.commands)} commands")
