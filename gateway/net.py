"""Small network helpers shared by the demo, the embedded broker and the test services."""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

_handed_out: set[int] = set()
_lock = threading.Lock()
_random = random.SystemRandom()  # not the tests' seeded module-level generator: two workers must not draw alike


_LOWEST_PORT = 10000
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _first_ephemeral_port() -> int:
    """Where the kernel's ephemeral ports begin (Linux default 32768): ports below it are never given to an
    outgoing connection's local end or to another process's bind to port 0."""
    try:
        return int(_EPHEMERAL_RANGE.read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now and not handed out before by this process.

    Drawn at random below the kernel's ephemeral range and checked by a bind. Ports the kernel hands out itself
    (bind to port 0) come from the ephemeral range, where the next process asking gets the same number once the
    first socket is closed, and where every outgoing connection takes its local port: two pytest workers starting
    servers, or a busy client, took a test server's port between our draw and its bind (VictoriaMetrics: "bind:
    address already in use"). Another process could still take the port before the server binds it; the demo
    and the tests accept that small race rather than assume that a well-known port (1883, 8000) is free."""
    highest = max(_first_ephemeral_port(), _LOWEST_PORT + 1000)
    with _lock:
        for _ in range(1000):
            port = _random.randrange(_LOWEST_PORT, highest)
            if port in _handed_out:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    continue
            _handed_out.add(port)
            return port
    raise OSError(f"no free TCP port on {host} in {_LOWEST_PORT}-{highest - 1} that this process has not handed out")
