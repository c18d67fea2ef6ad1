"""free_port never hands out the same port twice in one process (influxd's two ports came out equal once)."""

from __future__ import annotations

import socket

from gateway.net import _first_ephemeral_port, free_port


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = [free_port() for _ in range(1000)]
    assert len(set(ports)) == len(ports)
    assert all(port < _first_ephemeral_port() for port in ports)  # where no outgoing connection takes them
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", ports[-1]))
