"""The private test services say why they did not start: the process's exit, with the tail of its log."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from gateway.testing.services import ServiceError, mosquitto_server


@pytest.mark.integration
def test_a_broker_that_cannot_bind_its_port_is_reported_with_its_log(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ServiceError, match=r"mosquitto exited with code \d+ during start-up:\n.*in use"), \
                mosquitto_server(tmp_path, port=taken.getsockname()[1]):
            pass
