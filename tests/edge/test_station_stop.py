"""A graceful stop of `sinkwatch station run` (SIGTERM from systemd, Ctrl-C) exits 0 without a traceback, so the
unit is not marked failed on every stop; the final health line is still logged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from gateway.net import free_port


def wait_for_file(path: Path, process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"the daemon exited early with {process.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout_s} s")
        time.sleep(0.05)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_graceful_stop_exits_0_without_a_traceback(tmp_path: Path, signum: signal.Signals) -> None:
    buffer = tmp_path / "buffer.sqlite"
    config = tmp_path / "station.yaml"
    config.write_text(yaml.safe_dump({
        "site": "hainich", "station": "tower01",
        "mqtt": {"host": "127.0.0.1", "port": free_port()},  # no broker: readings stay buffered
        "buffer": {"path": str(buffer)},
        "sensors": [{"name": "co2_a", "driver": "gmp252", "port": str(tmp_path / "no-such-adapter"),
                     "interval_s": 0.2}],
    }), encoding="utf-8")
    process = subprocess.Popen([sys.executable, "-m", "gateway.cli", "station", "run", "-c", str(config)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "SINKWATCH_LOG_LEVEL": "INFO"})
    try:
        wait_for_file(Path(f"{buffer}.status.json"), process)  # running: its status snapshot is written
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = stderr.decode(errors="replace")
    assert process.returncode == 0, text
    assert "Traceback" not in text
    assert "station stopped" in text and "final health:" in text
