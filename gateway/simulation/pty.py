"""Two connected pseudo-terminals made in-process, so a driver and a simulator can talk through real pyserial ports
with no package installed (the demo and `sinkwatch simulate` use it; tests use it too).

Bytes written to one end come out of the other, unpaced: a PTY moves data as fast as the kernel allows. The
`socat` variant for tests is `gateway.testing.serial_pty.socat_pty_pair`.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
import tty
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def python_pty_pair(link_dir: Path | str | None = None) -> Iterator[tuple[str, str]]:
    """Two `os.openpty()` pairs whose master sides a daemon thread bridges; yield the two slave paths.

    With `link_dir`, stable symlinks `pty_a`/`pty_b` are made there and yielded instead of /dev/pts/N.
    The slave ends stay open here as well, so a client closing and reopening its end never makes the master
    read fail with EIO (which would otherwise spin the bridge).
    """
    master_a, slave_a = os.openpty()
    master_b, slave_b = os.openpty()
    fds = (master_a, slave_a, master_b, slave_b)
    for fd in fds:
        tty.setraw(fd)
    wake_read, wake_write = os.pipe()
    peer = {master_a: master_b, master_b: master_a}

    def bridge() -> None:
        while True:
            ready, _, _ = select.select([master_a, master_b, wake_read], [], [])
            if wake_read in ready:
                return
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue
                view = memoryview(data)
                while view:
                    try:
                        written = os.write(peer[fd], view)
                    except BlockingIOError:
                        time.sleep(0.001)
                        continue
                    except OSError:
                        break  # the pair is being torn down; the bytes have nowhere to go
                    view = view[written:]

    thread = threading.Thread(target=bridge, name="python-pty-bridge", daemon=True)
    thread.start()
    paths = [os.ttyname(slave_a), os.ttyname(slave_b)]
    made_links: list[Path] = []
    try:
        if link_dir is not None:
            Path(link_dir).mkdir(parents=True, exist_ok=True)
            for name, target in zip(("pty_a", "pty_b"), list(paths), strict=True):
                link = Path(link_dir) / name
                link.unlink(missing_ok=True)
                link.symlink_to(target)
                made_links.append(link)
            paths = [str(link) for link in made_links]
        yield paths[0], paths[1]
    finally:
        for link in made_links:
            link.unlink(missing_ok=True)
        os.write(wake_write, b"x")
        thread.join(timeout=2)
        for fd in (*fds, wake_read, wake_write):
            with contextlib.suppress(OSError):
                os.close(fd)
