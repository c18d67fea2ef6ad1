"""The station daemon under systemd: readiness and a watchdog that pings only while the daemon really works.

The unit (deploy/station/sinkwatch-station.service) is `Type=notify` with `WatchdogSec=`: systemd waits for
`READY=1` before it calls the start done, and kills and restarts the daemon when no `WATCHDOG=1` arrives within the
watchdog time. Both are datagrams on the socket systemd names in `NOTIFY_SOCKET` (sd_notify(3); the protocol is
stable and documented there, so it is implemented here in a few lines rather than through a library).

A watchdog that pings from a thread of its own would keep a hung daemon alive. So the daemon's loops beat a
`Liveness` (buffer writer, delivery, status writer, every poll loop, the command handler) and the `Watchdog` pings
only while every registered loop has beaten within its limit; a loop stuck on a disk or a lock stops the pings, and
systemd restarts the daemon (its buffer keeps every reading). A broker or sensor outage is not a hang: restarting
would not cure it, so it never withholds a ping.

Outside systemd (no `NOTIFY_SOCKET`) every call here does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

log = logging.getLogger("sinkwatch.edge.systemd")

# A loop that has not beaten for this long is hung (the longest any of them waits between beats is a few seconds).
DEFAULT_HUNG_AFTER_S = 30.0


def notify(message: str) -> bool:
    """Send one sd_notify message (e.g. "READY=1", "WATCHDOG=1", "STATUS=..."); False when not under systemd or
    the socket refused it (never raises: a missing supervisor must not stop the station)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        return False  # vsock and other transports of newer systemd versions: not used for system services
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
    except OSError as exc:
        log.debug("sd_notify %r to %s failed: %s", message, address, exc)
        return False
    return True


def watchdog_interval_s() -> float | None:
    """The watchdog time systemd set for this process (WATCHDOG_USEC), or None when there is none."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None  # meant for another process (a parent that exec'd us under another pid)
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1e6 if value > 0 else None


class Liveness:
    """Heartbeats of the daemon's loops. A loop registers with the longest silence that is still normal for it
    and beats on every turn; `hung()` names the loops silent for longer. Thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._loops: dict[str, tuple[float, float]] = {}  # name -> (last beat, limit)

    def register(self, name: str, limit_s: float = DEFAULT_HUNG_AFTER_S) -> Callable[[], None]:
        """Start watching `name`; returns its beat function (the first beat is now)."""
        with self._lock:
            self._loops[name] = (self._clock(), limit_s)
        return lambda: self.beat(name)

    def unregister(self, name: str) -> None:
        with self._lock:
            self._loops.pop(name, None)

    def beat(self, name: str) -> None:
        with self._lock:
            entry = self._loops.get(name)
            if entry is not None:
                self._loops[name] = (self._clock(), entry[1])

    def hung(self) -> list[tuple[str, float]]:
        """(loop, seconds silent) of every loop past its limit, longest first."""
        now = self._clock()
        with self._lock:
            late = [(name, now - last) for name, (last, limit) in self._loops.items() if now - last > limit]
        return sorted(late, key=lambda item: -item[1])

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._loops)


class Watchdog:
    """Pings systemd's watchdog at half its interval while `liveness` reports no hung loop; logs when it starts
    withholding the pings (and when it resumes). `status` supplies the STATUS= line `systemctl status` shows."""

    def __init__(self, liveness: Liveness, interval_s: float | None = None,
                 status: Callable[[], str] | None = None) -> None:
        self.liveness = liveness
        self.interval_s = interval_s if interval_s is not None else watchdog_interval_s()
        self.status = status
        self.pings = 0
        self.withheld = 0
        self._hung_before: list[str] = []

    @property
    def enabled(self) -> bool:
        return self.interval_s is not None

    def check(self) -> bool:
        """One round: ping when healthy; returns whether it pinged."""
        hung = self.liveness.hung()
        names = [name for name, _ in hung]
        if hung:
            self.withheld += 1
            if names != self._hung_before:
                described = ", ".join(f"{name} silent for {silent:.0f} s" for name, silent in hung)
                log.error("daemon not healthy: %s; withholding the watchdog ping so systemd restarts it (every "
                          "reading is on disk)", described)
                notify(f"STATUS=hung: {described}")
        else:
            if self._hung_before:
                log.warning("daemon healthy again; watchdog pings resume")
            message = "WATCHDOG=1"
            if self.status is not None:
                message += f"\nSTATUS={self.status()}"
            if notify(message):
                self.pings += 1
        self._hung_before = names
        return not hung

    def run(self, stop: threading.Event) -> None:
        if self.interval_s is None:
            return
        period = max(0.05, self.interval_s / 2)
        while not stop.is_set():
            self.check()
            stop.wait(period)
