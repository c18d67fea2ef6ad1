"""Small network helpers shared by the demo, the embedded broker and the test services."""

from __future__ import annotations

import socket
import threading

_handed_out: set[int] = set()
_lock = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now and not handed out before by this process. Another process could take
    it before we bind; the demo and the tests accept that small race rather than assume that a well-known port
    (1883, 8000) is free. The kernel may give the same ephemeral port to two binds in a row once the first socket is
    closed, so two calls for one server (influxd's HTTP and RPC ports) could otherwise collide."""
    with _lock:
        for _ in range(1000):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port = int(sock.getsockname()[1])
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise OSError(f"no TCP port on {host} that this process has not handed out already")
