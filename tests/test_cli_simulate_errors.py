"""`sinkwatch simulate` with a --port it cannot serve on: one line naming --port and what to give, no traceback."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from gateway.cli import app


@pytest.fixture(autouse=True)
def _keep_signal_handlers() -> Iterator[None]:
    # `simulate` installs its own SIGINT/SIGTERM handlers; the test process keeps its own
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.mark.parametrize("port", ["tcp://127.0.0.1:99999", "tcp://127.0.0.1", "tcp://:5020", "tcp://127.0.0.1:x"])
def test_a_tcp_port_that_is_not_host_and_port_is_refused_before_anything_opens(port: str) -> None:
    result = CliRunner().invoke(app, ["simulate", "gmp252", "--port", port])
    assert result.exit_code == 2, result.output
    assert f"--port {port!r}: not tcp://HOST:PORT with a port 1..65535" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("device", ["gmp252", "windmaster"])
def test_a_tcp_port_in_use_names_the_fix(device: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = CliRunner().invoke(app, ["simulate", device, "--port", f"tcp://127.0.0.1:{port}"])
    assert result.exit_code == 1, result.output
    assert f"simulator {device}: " in result.output
    assert "--port: give a serial device that exists, 'pty'" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("device", ["windmaster", "gmp343", "li7500", "firmware_bridge"])
def test_an_address_for_a_device_without_one_is_refused(device: str) -> None:
    """First-day walkthrough (docs/reliability.md): `simulate windmaster --address 7` ran, the address ignored."""
    result = CliRunner().invoke(app, ["simulate", device, "--port", "pty", "--address", "7"])
    assert result.exit_code == 2, result.output
    assert f"simulator {device} has no address" in result.output and "leave --address out" in result.output


def test_the_board_simulator_names_its_faults_and_ports() -> None:
    fault = CliRunner().invoke(app, ["simulate", "firmware_bridge", "--port", "pty", "--fault", "no_reply"])
    assert fault.exit_code == 1 and "unknown fault 'no_reply'; choose one of none" in fault.output
    tcp = CliRunner().invoke(app, ["simulate", "firmware_bridge", "--port", "tcp://127.0.0.1:5020"])
    assert tcp.exit_code == 1 and "a USB serial device: give a serial path or 'pty'" in tcp.output
