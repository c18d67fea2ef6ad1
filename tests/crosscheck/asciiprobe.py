"""A clean-room ASCII probe for the cross-check tests: answers command lines on one end of a PTY pair as a
Vaisala probe's serial line is documented to (Vaisala GMP231 "Serial line output commands", GMP251 "Serial
commands"; the GMP343 as the tum-esm/hermes driver drives it): a command ends with CR, a leading ESC is ignored,
with echo on the command is echoed, every reply ends with the `>` prompt.

`answers` maps a command word (lower case, the first word) to a function of the whole command line giving the text
printed before the prompt (None: the command is unknown). Everything else is a knob for one variant."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import serial

Answer = Callable[[str], str | None]


class AsciiProbe:
    def __init__(self, port: str, answers: dict[str, Answer], *, echo: bool = True, eol: str = "\r\n",
                 banner: str | None = None, baudrate: int = 19200, run_line: str | None = None,
                 run_every_s: float = 0.05) -> None:
        self.port = serial.Serial(port, baudrate, timeout=0.02)
        self.answers = answers
        self.echo = echo
        self.eol = eol
        self.banner = banner
        self.commands: list[str] = []
        # `r` mode left on (e.g. set to start in run mode): `run_line` printed every `run_every_s` until `s`
        self.run_line = run_line
        self.run_every_s = run_every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="xsim-ascii-probe", daemon=True)

    def __enter__(self) -> AsciiProbe:
        if self.banner is not None:  # printed at power-on, before anyone asked
            self.port.write(self.banner.replace("\n", self.eol).encode("ascii"))
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self.port.close()

    def _run(self) -> None:
        pending = b""
        next_line = time.monotonic()
        while not self._stop.is_set():
            if self.run_line is not None and time.monotonic() >= next_line:
                self.port.write(f"{self.run_line}{self.eol}".encode("ascii"))
                next_line = time.monotonic() + self.run_every_s
            pending += self.port.read(256)
            while b"\r" in pending:
                raw, pending = pending.split(b"\r", 1)
                line = raw.replace(b"\x1b", b"").replace(b"\n", b"").decode("ascii", "replace").strip()
                self._answer(line)

    def _answer(self, line: str) -> None:
        self.commands.append(line)
        out = f"{line}{self.eol}" if self.echo else ""
        word = line.split(" ", 1)[0].lower() if line else ""
        if word == "s":
            self.run_line = None
        if word == "echo":
            self.echo = line.lower().endswith("on")
        answer = self.answers.get(word)
        text = answer(line) if answer is not None else ("" if not line else "Unknown command")
        if text is None:
            text = "Unknown command"
        out += "".join(f"{part}{self.eol}" for part in text.split("\n")) if text else ""
        self.port.write((out + ">").encode("ascii"))
