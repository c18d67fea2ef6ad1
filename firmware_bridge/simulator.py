"""The reference firmware running under simavr, as a board on a pseudo-terminal (the harness is
firmware/sim/harness.c). Used by the tests, and by `sinkwatch-fb-board` style manual runs through `main()`.

    with EmulatedBoard(harness, elf) as board:
        board.set_voltage(0, 1200)      # mV at ADC0
        board.set_sdi12("0", "+2009.87+22.3+112")
        FirmwareBridgeDriver(...port=board.port...)
"""

from __future__ import annotations

import argparse
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

FIRMWARE_DIR = Path(__file__).resolve().parent / "firmware"


@dataclass(frozen=True)
class FirmwareBuild:
    """What `make -C firmware_bridge/firmware BUILD=<directory>` produced."""

    directory: Path
    elf: Path
    harness: Path
    test_host: Path
    make_output: str


class EmulatedBoard:
    def __init__(self, harness: Path | str, elf: Path | str, *, start_timeout_s: float = 10.0) -> None:
        self.harness, self.elf = str(harness), str(elf)
        self.start_timeout_s = start_timeout_s
        self.port = ""
        self._process: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str] = queue.Queue()
        self._lock = threading.Lock()

    def __enter__(self) -> EmulatedBoard:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        self._process = subprocess.Popen([self.harness, self.elf], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, text=True, bufsize=1)
        threading.Thread(target=self._read, daemon=True).start()
        line = self._expect("PTY ", self.start_timeout_s)
        self.port = line.split(" ", 1)[1].strip()

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.put(line.rstrip("\n"))

    def _expect(self, prefix: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"simavr harness did not print {prefix!r} within {timeout_s} s")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line.startswith(prefix):
                return line
            if line.startswith("ERR "):
                raise ValueError(f"harness refused: {line}")

    def command(self, line: str) -> None:
        with self._lock:
            assert self._process is not None and self._process.stdin is not None
            self._process.stdin.write(line + "\n")
            self._process.stdin.flush()
            self._expect(f"OK {line}", 5.0)

    def set_voltage(self, channel: int, millivolts: int) -> None:
        self.command(f"adc {channel} {millivolts}")

    def set_sdi12(self, address: str, values: str, wait_s: int = 0) -> None:
        self.command(f"sdi {address} {values}")
        self.command(f"sdi_wait {address} {wait_s}")

    def remove_sdi12(self, address: str) -> None:
        self.command(f"sdi_remove {address}")

    def reset(self) -> None:
        self.command("reset")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            assert process.stdin is not None
            process.stdin.write("quit\n")
            process.stdin.close()
            process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait(timeout=5)


_BUILD: FirmwareBuild | None = None


def build_once() -> FirmwareBuild:
    """Build firmware, harness and host unit tests once per process into a temporary directory (the tests use
    this; binaries are never committed). Raises RuntimeError naming the missing toolchain or the build error."""
    global _BUILD
    if _BUILD is not None:
        return _BUILD
    import atexit
    import shutil

    missing = [tool for tool in ("make", "gcc", "avr-gcc", "avr-size") if shutil.which(tool) is None]
    if not Path("/usr/include/simavr/sim_avr.h").is_file():
        missing.append("libsimavr-dev")
    if missing:
        raise RuntimeError(f"firmware toolchain missing: {', '.join(missing)}; run deploy/install-test-deps.sh "
                           "(Debian packages gcc-avr avr-libc simavr libsimavr-dev)")
    directory = Path(tempfile.mkdtemp(prefix="fwbridge-build-"))
    atexit.register(shutil.rmtree, directory, True)
    result = subprocess.run(["make", "-C", str(FIRMWARE_DIR), f"BUILD={directory}", "firmware", "harness",
                             f"{directory}/test_host"], capture_output=True, text=True, timeout=180)
    if result.returncode != 0:
        raise RuntimeError(f"firmware build failed:\n{result.stdout}\n{result.stderr}")
    _BUILD = FirmwareBuild(directory, directory / "firmware.elf", directory / "harness", directory / "test_host",
                           result.stdout)
    return _BUILD


def build(directory: Path) -> tuple[Path, Path]:
    """make the firmware and harness into `directory`; returns (harness, elf)."""
    subprocess.run(["make", "-C", str(FIRMWARE_DIR), f"BUILD={directory}", "firmware", "harness"], check=True)
    return directory / "harness", directory / "firmware.elf"


def simulate(port: str, fault: str = "none", seed: int = 0) -> None:
    """Entry for `sinkwatch simulate firmware_bridge --port P` (a serial path or `pty`): the board in Python
    (`pyboard.PythonBoard`, no simavr or compiler needed) with dendrometer wipers on ADC0..ADC3, each a slow daily
    swing around mid travel, the excitation (2500 mV) on ADC7 and an empty SDI-12 bus. The real firmware under
    simavr: `python -m firmware_bridge.simulator`. No fault modes, no address (the board is alone on its USB
    port)."""
    import contextlib
    import math

    from firmware_bridge.pyboard import EXCITATION_CHANNEL, PythonBoard
    from gateway.simulation.until_stopped import serve_until_stopped

    if fault != "none":
        raise ValueError(f"unknown fault {fault!r}; choose one of none (the board simulator has no fault modes)")
    if port.startswith("tcp://"):
        raise ValueError("the board is a USB serial device: give a serial path or 'pty', not tcp://")
    excitation_mv = 2500.0

    def wiper(channel: int) -> Callable[[float], float]:
        return lambda t: excitation_mv * (0.5 + 0.02 * math.sin(2 * math.pi * t / 86400.0 + channel))

    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        sim_end = driver_end = port
        if port == "pty":
            from gateway.simulation.pty import python_pty_pair

            sim_end, driver_end = stack.enter_context(python_pty_pair())
        board = stack.enter_context(PythonBoard(sim_end, adc_noise_counts=0.7, seed=seed))
        board.set_voltage(EXCITATION_CHANNEL, excitation_mv)
        for channel in range(4):
            board.set_signal(channel, wiper(channel))
        print(f"firmware_bridge board (Python) with dendrometer wipers on ADC0..ADC3 and an empty SDI-12 bus: "
              f"point the driver's port at {driver_end} (38400 8N1)", flush=True)
        serve_until_stopped(lambda: f"stopped after {time.monotonic() - started:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the firmware-bridge reference firmware under simavr.")
    parser.add_argument("--adc", action="append", default=[], metavar="CH=MV", help="e.g. 0=1200 7=2500")
    parser.add_argument("--sdi12", action="append", default=[], metavar="ADDR=VALUES", help="e.g. 0=+2009.87+22.3")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        harness, elf = build(Path(tmp))
        with EmulatedBoard(harness, elf) as board:
            for item in args.adc:
                channel, mv = item.split("=")
                board.set_voltage(int(channel), int(mv))
            for item in args.sdi12:
                address, values = item.split("=", 1)
                board.set_sdi12(address, values)
            print(f"board on {board.port} (Ctrl-C to stop)", flush=True)
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
