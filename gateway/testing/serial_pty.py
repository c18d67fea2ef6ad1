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


@contextlib.contextmanager
def socat_pty_pair(tmp_path: Path | str, *, timeout_s: float = 5.0) -> Iterator[tuple[str, str]]:
    """Start `socat` linking two PTYs as `<tmp_path>/pty_a` and `<tmp_path>/pty_b` (the folder is created if
    needed); yield both paths."""
    socat = shutil.which("socat")
    if socat is None:
        raise PtyPairError("socat is not installed: install socat (Debian package socat), or use python_pty_pair()")
    Path(tmp_path).mkdir(parents=True, exist_ok=True)
    link_a, link_b = Path(tmp_path) / "pty_a", Path(tmp_path) / "pty_b"
    process = subprocess.Popen(
        [socat, "-d", "-d", f"pty,raw,echo=0,link={link_a}", f"pty,raw,echo=0,link={link_b}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + timeout_s
        while not (link_a.exists() and link_b.exists()):
            if process.poll() is not None:
                stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
                raise PtyPairError(f"socat exited with code {process.returncode}: {stderr.strip()}")
            if time.monotonic() > deadline:
                raise PtyPairError(f"socat did not create {link_a} and {link_b} within {timeout_s} s")
            time.sleep(0.01)
        yield str(link_a), str(link_b)
    finally:
        process.terminate()
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()
