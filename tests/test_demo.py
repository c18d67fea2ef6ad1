"""`sinkwatch demo` runs the whole chain with nothing but Python: the installed console script, end to end."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gateway.demo import run_demo
from gateway.edge.buffer import ReadingBuffer
from gateway.testing.services import InfluxInstance, MosquittoInstance

pytestmark = pytest.mark.slow


def sinkwatch_command() -> list[str]:
    script = Path(sys.executable).parent / "sinkwatch"
    return [str(script)] if script.exists() else [shutil.which("sinkwatch") or "sinkwatch"]


def test_demo_stops_by_itself_and_reports_stored_readings(tmp_path: Path) -> None:
    result = subprocess.run(
        [*sinkwatch_command(), "demo", "--duration", "4", "--interval", "0.5", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=90, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    match = re.search(r"(\d+) readings read, (\d+) acknowledged by the broker, (\d+) readings stored", summary)
    assert match, summary
    read, acknowledged, stored = (int(g) for g in match.groups())
    assert stored > 0
    assert read == acknowledged == stored  # nothing lost between probe and API
    assert "/docs" in result.stdout
    # the station's buffer is empty: everything read was acknowledged, then forgotten
    buffer = ReadingBuffer(tmp_path / "station-buffer.sqlite")
    assert (buffer.pending_readings(), buffer.pending_batches()) == (0, 0)
    buffer.close()


def test_demo_rejects_a_bad_broker_url() -> None:
    result = subprocess.run([*sinkwatch_command(), "demo", "--duration", "1", "--broker", "http://x"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "expected mqtt://HOST[:PORT]" in result.stderr


@pytest.mark.integration
def test_demo_flags_point_it_at_a_real_broker_and_influxdb(
    tmp_path: Path, mosquitto: MosquittoInstance, influxd: InfluxInstance
) -> None:
    summary = run_demo(3, broker_url=f"mqtt://{mosquitto.host}:{mosquitto.port}", influx_url=influxd.url,
                       data_dir=tmp_path, interval_s=0.5, echo=False)
    assert summary.readings_stored > 0
    assert summary.readings_read == summary.readings_acknowledged == summary.readings_stored
    # the readings are in the real InfluxDB, not in an embedded store
    response = httpx.post(f"{influxd.url}/query", params={
        "db": "sinkwatch_demo", "q": 'SELECT count("qc") FROM "readings"'})
    count = response.json()["results"][0]["series"][0]["values"][0][1]
    assert count == summary.readings_stored
    assert not (tmp_path / "central.sqlite").exists()
