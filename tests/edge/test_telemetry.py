"""Health telemetry on the station (gateway/edge/telemetry.py): what the sampler reads from the node, the bounded
outbox, the daemon's telemetry thread, and the round trip station -> broker -> central store -> API."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.configfile import ConfigError
from gateway.contract import StationHealth
from gateway.contract.asyncapi import validate_payload
from gateway.driver_api import SensorConfig
from gateway.edge.config import (
    BufferConfig,
    MqttConfig,
    StationConfig,
    StationConfigBase,
    SupplyVoltageSource,
    TelemetryConfig,
    parse_station_config,
)
from gateway.edge.daemon import StationDaemon
from gateway.edge.telemetry import (
    HealthOutbox,
    HealthSampler,
    backlogs,
    cpu_temperature,
    host_uptime,
    load_average,
    memory,
    resident_bytes,
)
from gateway.model import Reading, utc_now
from gateway.testing.services import MosquittoInstance, free_port

from .test_daemon import CountingDriver, DeadDriver


def fake_node(root: Path) -> tuple[Path, Path]:
    proc, sys_root = root / "proc", root / "sys"
    (proc / "self").mkdir(parents=True)
    (proc / "loadavg").write_text("0.52 0.31 0.20 2/311 4242\n")
    (proc / "meminfo").write_text("MemTotal:        1985442 kB\nMemFree:          100000 kB\n"
                                  "MemAvailable:    1402044 kB\nBuffers:   1 kB\n")
    (proc / "uptime").write_text("1209600.25 4000000.00\n")
    (proc / "self" / "status").write_text("Name:\tsinkwatch\nVmPeak:\t 90000 kB\nVmRSS:\t   60416 kB\n")
    zones = sys_root / "class" / "thermal"
    for name, kind, millideg in (("thermal_zone0", "acpitz", "27800"), ("thermal_zone1", "cpu-thermal", "48312"),
                                 ("thermal_zone2", "gpu-thermal", "51000")):
        (zones / name).mkdir(parents=True)
        (zones / name / "type").write_text(kind + "\n")
        (zones / name / "temp").write_text(millideg + "\n")
    return proc, sys_root


def test_the_sampler_reads_what_the_node_says(tmp_path: Path) -> None:
    proc, sys_root = fake_node(tmp_path)
    assert load_average(proc) == (0.52, 0.31, 0.20)
    assert memory(proc) == (1985442 * 1024, 1402044 * 1024)
    assert resident_bytes(proc) == 60416 * 1024
    assert host_uptime(proc) == 1209600.25
    assert cpu_temperature(sys_root) == 48.312  # the CPU zone, not the first or the hottest
    sampler = HealthSampler("hainich", "plot-07", interval_s=60.0, disk_path=tmp_path, proc_root=proc,
                            sys_root=sys_root)
    report = sampler.sample(buffers=[], sensors=[], supply_voltage_v=12.4, reports_dropped=3)
    stat = os.statvfs(tmp_path)
    assert report.disk_total_bytes == stat.f_blocks * stat.f_frsize
    assert report.disk_free_bytes is not None and 0 < report.disk_free_bytes <= report.disk_total_bytes
    assert (report.load_1m, report.memory_available_bytes, report.cpu_temperature_c) == (0.52, 1402044 * 1024,
                                                                                         48.312)
    assert (report.supply_voltage_v, report.reports_dropped, report.daemon_cpu_share) == (12.4, 3, None)
    second = sampler.sample(buffers=[], sensors=[])
    assert second.daemon_cpu_share is not None and second.daemon_cpu_share >= 0
    assert second.uptime_s >= report.uptime_s


def test_a_node_that_tells_nothing_gives_nulls_not_guesses(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "sys" / "class" / "thermal" / "thermal_zone0").mkdir(parents=True)
    (empty / "sys" / "class" / "thermal" / "thermal_zone0" / "temp").write_text("not a number")
    (empty / "proc").mkdir()
    (empty / "proc" / "loadavg").write_text("garbage")
    sampler = HealthSampler("hainich", "plot-07", interval_s=60.0, disk_path=tmp_path / "gone",
                            proc_root=empty / "proc", sys_root=empty / "sys")
    report = sampler.sample(buffers=[], sensors=[])
    assert (report.load_1m, report.memory_total_bytes, report.daemon_rss_bytes, report.host_uptime_s,
            report.cpu_temperature_c, report.disk_free_bytes, report.supply_voltage_v) == (None,) * 7
    validate_payload("StationHealth", report.model_dump_json())


def test_this_machine_gives_load_memory_and_disk(tmp_path: Path) -> None:
    report = HealthSampler("hainich", "plot-07", interval_s=60.0, disk_path=tmp_path).sample(buffers=[], sensors=[])
    assert report.load_1m is not None and report.memory_total_bytes and report.disk_free_bytes
    assert report.daemon_rss_bytes and report.daemon_rss_bytes < report.memory_total_bytes


def _report(i: int) -> StationHealth:
    return StationHealth(site="hainich", station="plot-07", time=utc_now() + timedelta(seconds=i), interval_s=60.0,
                         daemon_version="0.1.0", uptime_s=float(i), clock_synced=True)


def test_the_outbox_is_bounded_and_counts_what_it_drops(tmp_path: Path) -> None:
    outbox = HealthOutbox(tmp_path / "buffer.sqlite", "hainich", "plot-07", max_backlog=10)
    seqs = [outbox.add(_report(i)) for i in range(15)]
    assert outbox.pending() == 10 and outbox.dropped == 5
    items = outbox.claim(3, exclude={seqs[5]})
    assert [item.seq for item in items] == seqs[6:9]
    assert StationHealth.model_validate_json(items[0].payload).seq == seqs[6]
    assert outbox.reload(seqs[0]) is None  # dropped
    assert outbox.confirm([(seqs[5], seqs[7])]) == (3, 3)
    outbox.close()
    reopened = HealthOutbox(tmp_path / "buffer.sqlite", "hainich", "plot-07", max_backlog=10)
    assert reopened.pending() == 7 and reopened.add(_report(99)) == seqs[-1] + 1  # seqs are never reused
    reopened.close()


def test_backlogs_from_delivery_health() -> None:
    found = backlogs({"channels": {
        "readings": {"pending": 12, "unit": "readings", "oldest_pending_age_s": 3.5, "refusing": None},
        "raw": {"pending": 0, "unit": "files", "oldest_pending_age_s": None, "refusing": "Not authorized"}}})
    assert [(b.channel, b.unit, b.pending, b.oldest_age_s, b.refusing) for b in found] == [
        ("readings", "readings", 12, 3.5, None), ("raw", "files", 0, None, "Not authorized")]


def station_yaml(tmp_path: Path, telemetry: dict[str, object]) -> dict[str, object]:
    return {"site": "s", "station": "st", "buffer": {"path": str(tmp_path / "b.sqlite")}, "telemetry": telemetry,
            "sensors": [{"name": "co2", "driver": "gmp252", "port": "/dev/null", "address": 240}]}


@pytest.mark.parametrize(
    ("telemetry", "message"),
    [
        ({"interval_s": 0}, "telemetry.interval_s"),
        ({"interval_s": 2}, "telemetry.interval_s"),
        ({"max_backlog": 1}, "telemetry.max_backlog"),
        ({"every": 60}, "telemetry.every"),
        ({"supply_voltage": {"sensor": "battery", "variable": "V"}}, "no sensor named 'battery'"),
    ],
)
def test_telemetry_config_is_validated(tmp_path: Path, telemetry: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_station_config(station_yaml(tmp_path, telemetry))


def test_telemetry_defaults(tmp_path: Path) -> None:
    config = parse_station_config(station_yaml(tmp_path, {}))
    assert (config.telemetry.enabled, config.telemetry.interval_s, config.telemetry.supply_voltage) == (True, 60.0,
                                                                                                      None)


class VoltmeterDriver(CountingDriver):
    def poll(self) -> list[Reading]:
        return [r.model_copy(update={"variable": "V_SUPPLY", "value": 12.7, "unit": "V", "time": utc_now()})
                for r in super().poll()]


def daemon_with(tmp_path: Path, *drivers: tuple[type, str, float], mqtt: MqttConfig | None = None,
                telemetry: TelemetryConfig | None = None) -> StationDaemon:
    base = StationConfigBase(
        site="site-a", station="st01", mqtt=mqtt or MqttConfig(host="127.0.0.1", port=free_port()),
        buffer=BufferConfig(path=tmp_path / "buffer.sqlite"), telemetry=telemetry or TelemetryConfig(),
        sensors=[{"name": name} for _, name, _ in drivers],
    )
    sensors = [(cls, SensorConfig(name=name, driver="fake", interval_s=interval)) for cls, name, interval in drivers]
    return StationDaemon(StationConfig(base, sensors, None))


def test_the_daemon_reports_its_sensors_outboxes_and_supply(tmp_path: Path) -> None:
    daemon = daemon_with(tmp_path, (CountingDriver, "good", 0.05), (DeadDriver, "dead", 0.05),
                         (VoltmeterDriver, "battery", 0.05),
                         telemetry=TelemetryConfig(supply_voltage=SupplyVoltageSource(sensor="battery",
                                                                                      variable="V_SUPPLY")))
    assert daemon.telemetry is not None
    daemon.telemetry.sampler.interval_s = 0.2
    stop = threading.Event()
    thread = threading.Thread(target=daemon.run, args=(stop,), kwargs={"drain_timeout_s": 0.1})
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while daemon.telemetry.reports < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        good = next(runner.health for runner in daemon.runners if runner.health.name == "good")
        while time.monotonic() < deadline:
            # a few polls of "good" since the thread's last report (on a loaded host polls can lag the reports)
            reports, polls = daemon.telemetry.reports, good.polls
            while good.polls < polls + 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            report = daemon.telemetry.take()
            if daemon.telemetry.reports == reports:
                break
    finally:
        stop.set()
        thread.join(30)
    assert daemon.telemetry.reports >= 4
    sensors = {s.name: s for s in report.sensors}
    assert sensors["good"].available is True and sensors["good"].availability == 1.0
    assert sensors["good"].variables == ["CO2"]
    assert sensors["dead"].available is False and sensors["dead"].state == "unavailable"
    assert sensors["dead"].errors["no_port"] >= 2 and "does not exist" in (sensors["dead"].last_error or "")
    assert sensors["dead"].availability in (0.0, None)  # backing off: maybe no poll since the last report
    assert report.supply_voltage_v == 12.7
    channels = {b.channel: b for b in report.buffers}
    assert set(channels) == {"readings", "health"}  # no broker: everything waits on disk
    assert channels["readings"].pending > 0 and channels["readings"].oldest_age_s is not None
    assert channels["health"].pending >= 4 and channels["health"].unit == "reports"
    validate_payload("StationHealth", report.model_dump_json())
    assert daemon.health()["telemetry"] == {"reports": daemon.telemetry.reports, "failures": 0, "dropped": 0,
                                            "held": 0}


def test_reports_the_disk_refuses_are_held_and_queued_in_order_when_it_writes_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the readings and the reports share the buffer file: a full or read-only disk refuses both; the reports taken
    # meanwhile are what tells the operator afterwards (buffer_unwritable, docs/operations.md)
    daemon = daemon_with(tmp_path, (CountingDriver, "good", 0.05))
    telemetry = daemon.telemetry
    assert telemetry is not None
    full = sqlite3.OperationalError("database or disk is full")
    real_append, real_add = daemon.buffer.append, telemetry.outbox.add

    def refusing(real: Any) -> Any:
        def call(*args: Any) -> Any:
            if disk_full:
                raise full
            return real(*args)
        return call

    disk_full = True
    monkeypatch.setattr(daemon.buffer, "append", refusing(real_append))
    monkeypatch.setattr(telemetry.outbox, "add", refusing(real_add))
    reading = CountingDriver(SensorConfig(name="good", driver="fake"), station="st01").poll()[0]
    daemon._commit([reading])
    daemon._commit([])  # the writer retries: the disk refuses again
    assert (daemon.buffer_errors, daemon.readings_held_in_memory) == (2, 1)
    assert [telemetry.report_once() for _ in range(3)] == [None, None, None]
    assert (telemetry.held, telemetry.failures, telemetry.outbox.pending()) == (3, 3, 0)

    disk_full = False
    daemon._commit([])
    assert daemon.readings_held_in_memory == 0 and daemon.buffer.pending_readings() == 1
    last = telemetry.report_once()
    assert last is not None and telemetry.held == 0 and telemetry.outbox.pending() == 4
    queued = [StationHealth.model_validate_json(item.payload) for item in telemetry.outbox.claim(10, set())]
    assert [(r.buffer_write_errors, r.readings_held_in_memory) for r in queued] == [(2, 1)] * 3 + [(2, 0)]
    assert [r.time for r in queued] == sorted(r.time for r in queued) and queued[-1].time == last.time

    # held reports are bounded as the outbox is: past max_backlog the oldest goes, counted in reports_dropped
    disk_full = True
    telemetry.outbox.max_backlog = 2
    for _ in range(3):
        telemetry.report_once()
    assert telemetry.held == 2 and telemetry.outbox.dropped == 1


def test_telemetry_can_be_turned_off(tmp_path: Path) -> None:
    daemon = daemon_with(tmp_path, (CountingDriver, "good", 0.05), telemetry=TelemetryConfig(enabled=False))
    assert daemon.telemetry is None
    assert "health" not in daemon.delivery.health()["channels"]  # type: ignore[operator]


@pytest.mark.integration
def test_reports_travel_station_broker_store_api(tmp_path: Path, mosquitto: MosquittoInstance) -> None:
    """The round trip: the daemon's reports reach the central store through a real broker, each confirmed by a
    receipt, and the API serves the latest."""
    from fastapi.testclient import TestClient

    from gateway.central.access import AccessControl
    from gateway.central.api import create_app
    from gateway.central.config import MqttSettings
    from gateway.central.ingest import Ingestor
    from gateway.central.store import SqliteStore

    store = SqliteStore(tmp_path / "central.sqlite")
    ingestor = Ingestor(MqttSettings(host=mosquitto.host, port=mosquitto.port), store, tmp_path / "central")
    daemon = daemon_with(tmp_path, (CountingDriver, "good", 0.1),
                         mqtt=MqttConfig(host=mosquitto.host, port=mosquitto.port, keepalive_s=5))
    assert daemon.telemetry is not None
    daemon.telemetry.sampler.interval_s = 0.3
    stop = threading.Event()
    ingestor.start()
    thread = threading.Thread(target=daemon.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while daemon.delivery.counters("health").confirmed < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert daemon.delivery.counters("health").confirmed >= 3  # deleted from the outbox on receipts
        assert ingestor.counters()["health_reports_stored"] >= 3
        client = TestClient(create_app(store, ingestor, access=AccessControl.development()))
        latest = client.get("/api/v1/stations/st01/health").json()
        assert latest["site"] == "site-a" and latest["station"] == "st01"
        assert latest["report"]["sensors"][0]["name"] == "good"
        assert latest["report"]["sensors"][0]["variables"] == ["CO2"]
        assert 0 <= latest["age_s"] < 10
        stored = store.query_health("st01", utc_now() - timedelta(minutes=5), utc_now() + timedelta(minutes=1))
        assert len(stored) >= 3 and len({r.seq for r in stored}) == len(stored)
    finally:
        stop.set()
        thread.join(30)
        ingestor.stop()
        store.close()
