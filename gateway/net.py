"""Small network helpers shared by the demo, the embedded broker and the test services."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now. Another process could take it before we bind; the demo and the
    tests accept that small race rather than assume that a well-known port (1883, 8000) is free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
