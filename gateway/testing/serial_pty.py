"""Two connected pseudo-terminals through `socat`, so a driver and a simulator can talk through real pyserial ports
in tests.

The in-process variant with no package installed, which the runtime (demo, `sinkwatch simulate`) uses, is
`gateway.simulation.pty.python_pty_pair`. Bytes written to one end come out of the other, unpaced: a PTY moves
data as fast as the kernel allows, so timing-sensitive measurements need a paced line (bench/paced_rs485_line.py).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path


class PtyPairError(RuntimeError):
    pass


class SocatLine:
    """Two PTYs linked by `socat` as `<folder>/pty_a` and `<folder>/pty_b`, which can be pulled (`stop`: socat
    ended, both device nodes and their links gone, as when a USB adapter is unplugged) and plugged in again
    (`start`: new PTYs under the same link names)."""

    def __init__(self, folder: Path | str, *, timeout_s: float = 5.0) -> None:
        socat = shutil.which("socat")
        if socat is None:
            raise PtyPairError("socat is not installed: install socat (Debian package socat), or use "
                               "python_pty_pair()")
        self.socat = socat
        self.folder = Path(folder)
        self.timeout_s = timeout_s
        self.link_a, self.link_b = self.folder / "pty_a", self.folder / "pty_b"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen(
            [self.socat, "-d", "-d", f"pty,raw,echo=0,link={self.link_a}", f"pty,raw,echo=0,link={self.link_b}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._process = process
        deadline = time.monotonic() + self.timeout_s
        while not (self.link_a.exists() and self.link_b.exists()):
            if process.poll() is not None:
                stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
                self._process = None
                raise PtyPairError(f"socat exited with code {process.returncode}: {stderr.strip()}")
            if time.monotonic() > deadline:
                self.stop()
                raise PtyPairError(f"socat did not create {self.link_a} and {self.link_b} within {self.timeout_s} s")
            time.sleep(0.01)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stderr:
                process.stderr.close()
        for link in (self.link_a, self.link_b):  # socat removes them on a clean exit; not after a kill
            link.unlink(missing_ok=True)


@contextlib.contextmanager
def socat_pty_pair(tmp_path: Path | str, *, timeout_s: float = 5.0) -> Iterator[tuple[str, str]]:
    """Start `socat` linking two PTYs as `<tmp_path>/pty_a` and `<tmp_path>/pty_b` (the folder is created if
    needed); yield both paths."""
    line = SocatLine(tmp_path, timeout_s=timeout_s)
    line.start()
    try:
        yield str(line.link_a), str(line.link_b)
    finally:
        line.stop()


def socat_ptys_or_skip(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The fixture every serial test shares: a socat PTY pair in `tmp_path` (driver end, simulator end), or the test
    skipped naming the Debian package when socat is missing. In a test module: `ptys = pytest.fixture(
    socat_ptys_or_skip, name="ptys")`."""
    if shutil.which("socat") is None:
        import pytest

        pytest.skip("socat is not installed (Debian package socat)")
    with socat_pty_pair(tmp_path) as pair:
        yield pair
