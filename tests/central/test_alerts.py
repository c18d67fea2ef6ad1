"""The central service's alert rules (gateway/central/alerts.py): each rule fires on the condition it names and
clears when the condition is gone; changes are logged once, counted, stored and restored; GET /api/v1/alerts shows
them. Real SqliteStore (and one full round on a real InfluxDB), a controlled clock."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.central.access import AccessControl
from gateway.central.alerts import AlertEvaluator
from gateway.central.alerts_config import RULE_NAMES, AlertsConfig
from gateway.central.api import create_app
from gateway.central.store import InfluxStore, SqliteStore, Store
from gateway.contract import ChannelBacklog, SensorHealth, StationHealth
from gateway.model import QualityFlag, Reading, TimeSource, utc_now

from .helpers import flux_record, stored

SITE, STATION = "hainich", "plot-07"


class Clock:
    def __init__(self) -> None:
        self.now = utc_now().replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    instance = SqliteStore(tmp_path / "central.sqlite")
    yield instance
    instance.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def evaluator(store: Store, clock: Clock, **config: Any) -> AlertEvaluator:
    return AlertEvaluator(store, AlertsConfig.model_validate(config), clock=clock)


SENSORS = [
    SensorHealth(name="gmp252", driver="gmp252", kind="polled", state="available", available=True,
                 variables=["CO2_1_1_1", "T_PROBE_1_1_1"]),
    SensorHealth(name="hmp155", driver="hmp155", kind="polled", state="available", available=True,
                 variables=["TA_1_1_1", "RH_1_1_1"]),
    SensorHealth(name="li7500", driver="li7500", kind="stream", state="connected", available=True,
                 variables=["CO2SS", "CO2SS_N", "CO2", "DIAG"]),
    SensorHealth(name="irgason", driver="irgason", kind="stream", state="connected", available=True,
                 variables=["H2OSS"]),
]


def health(clock: Clock, *, age_s: float = 5.0, **changes: Any) -> StationHealth:
    fields: dict[str, Any] = {
        "site": SITE, "station": STATION, "time": clock.now - timedelta(seconds=age_s), "interval_s": 60.0,
        "daemon_version": "0.1.0", "uptime_s": 3600.0, "clock_synced": True, "clock_offset_s": 0.0004,
        "disk_free_bytes": 20_000_000_000, "disk_total_bytes": 32_000_000_000,
        "buffers": [ChannelBacklog(channel="readings", unit="readings", pending=12, oldest_age_s=2.0)],
        "sensors": SENSORS,
    }
    fields.update(changes)
    return StationHealth(**fields)


def readings(clock: Clock, sensor: str, variable: str, values: list[float], unit: str = "degC",
             step_s: float = 60.0) -> list[Reading]:
    """`values` ending now, one every step_s."""
    n = len(values)
    return [Reading(station=STATION, sensor=sensor, variable=variable, value=v, unit=unit,
                    time=clock.now - timedelta(seconds=step_s * (n - i)), time_source=TimeSource.GATEWAY,
                    clock_synced=True, qc=QualityFlag.GOOD) for i, v in enumerate(values)]


def firing(evaluator: AlertEvaluator, rule: str) -> dict[str, float | None]:
    return {a.subject: a.value for a in evaluator.alerts(state="firing", rule=rule)}


def states(evaluator: AlertEvaluator, rule: str) -> dict[str, str]:
    return {a.subject: a.state for a in evaluator.alerts(rule=rule)}


# --- each rule fires and clears ---------------------------------------------------------------------------------------


def test_station_silent(store: SqliteStore, clock: Clock) -> None:
    alerts = evaluator(store, clock, station_silent={"after_s": 600})
    store.write_health([health(clock, age_s=100)])
    alerts.evaluate()
    assert states(alerts, "station_silent") == {"station": "ok"}
    clock.advance(600)  # the newest report is now 700 s old
    alerts.evaluate()
    assert firing(alerts, "station_silent") == {"station": pytest.approx(700.0)}
    store.write_health([health(clock)])
    alerts.evaluate()
    assert states(alerts, "station_silent") == {"station": "ok"}


def test_buffer_growing(store: SqliteStore, clock: Clock) -> None:
    alerts = evaluator(store, clock, buffer_growing={"window_s": 1800, "min_oldest_age_s": 900})
    for minutes_ago, pending, oldest in ((30, 100, 30.0), (15, 2000, 930.0), (0, 4000, 1830.0)):
        store.write_health([health(clock, age_s=60 * minutes_ago + 1, buffers=[
            ChannelBacklog(channel="readings", unit="readings", pending=pending, oldest_age_s=oldest),
            ChannelBacklog(channel="fluxes", unit="records", pending=3, oldest_age_s=1830.0)])])
    alerts.evaluate()
    # readings: grew while its oldest is 1830 s old; fluxes: old but not growing (the link keeps up)
    assert firing(alerts, "buffer_growing") == {"readings": 1830.0}
    assert states(alerts, "buffer_growing")["fluxes"] == "ok"
    clock.advance(60)
    store.write_health([health(clock, buffers=[ChannelBacklog(channel="readings", unit="readings", pending=0)])])
    alerts.evaluate()
    assert firing(alerts, "buffer_growing") == {}


@pytest.mark.parametrize(
    "bad",
    [{"clock_synced": False}, {"clock_offset_s": 2.5}, {"age_s": -30.0}],
    ids=["unsynchronised", "offset", "stamped-ahead"],
)
def test_clock_unsynchronised(store: SqliteStore, clock: Clock, bad: dict[str, Any]) -> None:
    alerts = evaluator(store, clock, clock_unsynchronised={"max_offset_s": 1.0})
    store.write_health([health(clock, **bad)])
    alerts.evaluate()
    assert list(firing(alerts, "clock_unsynchronised")) == ["station"]
    clock.advance(60)
    store.write_health([health(clock)])
    alerts.evaluate()
    assert states(alerts, "clock_unsynchronised") == {"station": "ok"}


def test_sensor_stuck(store: SqliteStore, clock: Clock) -> None:
    alerts = evaluator(store, clock, sensor_stuck={"window_s": 3600, "min_count": 10})
    store.write_health([health(clock)])
    store.write(stored(SITE, readings(clock, "gmp252", "CO2_1_1_1", [1843.0] * 30, unit="umol mol-1")
                       + readings(clock, "gmp252", "T_PROBE_1_1_1", [6.0 + 0.01 * i for i in range(30)])
                       + readings(clock, "li7500", "CO2SS_N", [1200.0] * 30, unit="1")  # a count: ignored
                       + readings(clock, "li7500", "DIAG", [0.0] * 30, unit="1")))  # a diagnostic: ignored
    alerts.evaluate()
    assert firing(alerts, "sensor_stuck") == {"gmp252/CO2_1_1_1": 0.0}
    assert states(alerts, "sensor_stuck")["gmp252/T_PROBE_1_1_1"] == "ok"
    assert "li7500/CO2SS_N" not in states(alerts, "sensor_stuck") and "li7500/DIAG" not in states(alerts,
                                                                                                   "sensor_stuck")
    clock.advance(3600)
    store.write(stored(SITE, readings(clock, "gmp252", "CO2_1_1_1", [1843.0 + i for i in range(30)],
                                      unit="umol mol-1")))
    store.write_health([health(clock)])
    alerts.evaluate()
    assert firing(alerts, "sensor_stuck") == {}


def test_slow_soil_variables_are_judged_over_their_own_window_and_states_not_at_all(store: SqliteStore,
                                                                                      clock: Clock) -> None:
    """Soil temperature at depth stays within a probe's 0.1 degC for hours, a chamber's lid is closed or open: an
    hour of equal values is no stuck sensor there. The slow variables are judged over `slow` windows (2 days by
    default), in the round that crosses a multiple of `slow_every_s`."""
    soil = SensorHealth(name="soil", driver="soilprobe", kind="polled", state="available", available=True,
                        variables=["TS_2_1_1", "TS_3_1_1", "SWC_2_1_1"])
    chamber = SensorHealth(name="chamber_1", driver="chamber", kind="polled", state="available", available=True,
                           variables=["LID_CLOSED_4_1_1", "CO2_4_1_1"])
    clock.now = clock.now.replace(minute=59, second=30)  # the next round (60 s later) crosses the hour
    alerts = evaluator(store, clock)
    day = 24 * 60  # readings every 10 min over two days, in 10-min steps
    store.write(stored(SITE, readings(clock, "soil", "TS_2_1_1", [9.6] * 12, step_s=300)  # an hour, 12 equal
                       + readings(clock, "soil", "TS_3_1_1", [8.1] * (2 * day // 10), step_s=600)  # flat 2 days
                       + readings(clock, "soil", "SWC_2_1_1", [20.0 + 0.1 * (i // 50) for i in range(288)],
                                  unit="%", step_s=600)
                       + readings(clock, "chamber_1", "LID_CLOSED_4_1_1", [0.0] * 60, unit="1")
                       + readings(clock, "chamber_1", "CO2_4_1_1", [412.0 + i % 7 for i in range(60)],
                                  unit="umol mol-1")))
    store.write_health([health(clock, sensors=[soil, chamber])])
    alerts.evaluate()  # not the hourly round: the soil variables are not looked at, the lid never
    assert states(alerts, "sensor_stuck") == {"chamber_1/CO2_4_1_1": "ok"}
    clock.advance(60)
    store.write_health([health(clock, sensors=[soil, chamber])])
    alerts.evaluate()
    assert firing(alerts, "sensor_stuck") == {"soil/TS_3_1_1": 0.0}
    # TS_2_1_1 has readings of the last hour only: two days cannot be judged from them (a station that just started)
    assert states(alerts, "sensor_stuck") == {"chamber_1/CO2_4_1_1": "ok", "soil/TS_3_1_1": "firing",
                                              "soil/SWC_2_1_1": "ok"}
    assert "172800 s all 8.1" in next(a.message for a in alerts.alerts(rule="sensor_stuck")
                                      if a.subject == "soil/TS_3_1_1")


def test_sensor_out_of_range(store: SqliteStore, clock: Clock) -> None:
    alerts = evaluator(store, clock, sensor_out_of_range={"window_s": 600})
    store.write_health([health(clock)])
    store.write(stored(SITE, readings(clock, "hmp155", "TA_1_1_1", [85.0] * 5)
                       + readings(clock, "hmp155", "RH_1_1_1", [55.0] * 5, unit="%")
                       + readings(clock, "li7500", "CO2", [16.5] * 5, unit="mmol m-3")))  # a density, not ppm
    alerts.evaluate()
    assert firing(alerts, "sensor_out_of_range") == {"hmp155/TA_1_1_1": 85.0}
    assert "li7500/CO2" not in states(alerts, "sensor_out_of_range")
    assert [a.threshold for a in alerts.alerts(rule="sensor_out_of_range", state="firing")] == [60.0]
    clock.advance(600)
    store.write(stored(SITE, readings(clock, "hmp155", "TA_1_1_1", [12.0] * 5)))
    alerts.evaluate()
    assert firing(alerts, "sensor_out_of_range") == {}


def test_flag2_share(store: SqliteStore, clock: Clock) -> None:
    alerts = evaluator(store, clock, flag2_share={"window_s": 86400, "max_share": 0.5, "min_periods": 12})
    store.write_health([health(clock)])
    ends = [clock.now - timedelta(minutes=30 * i) for i in range(20)]
    store.write_fluxes([flux_record(STATION, site=SITE, end=end, values={"FC": -3.0, "FC_SSITC_TEST": 2 if i < 15
                                                                         else 0}) for i, end in enumerate(ends)])
    alerts.evaluate()
    assert firing(alerts, "flag2_share") == {"FC_SSITC_TEST": 0.75}
    clock.advance(86400)
    store.write_fluxes([flux_record(STATION, site=SITE, end=clock.now - timedelta(minutes=30 * i),
                                    values={"FC": -3.0, "FC_SSITC_TEST": i % 2}) for i in range(20)])
    store.write_health([health(clock)])
    alerts.evaluate()
    assert states(alerts, "flag2_share") == {"FC_SSITC_TEST": "ok"}


def test_signal_strength_low(store: SqliteStore, clock: Clock) -> None:
    alerts = evaluator(store, clock, signal_strength_low={"window_s": 1800, "min_percent": 70})
    store.write_health([health(clock)])
    store.write(stored(SITE, readings(clock, "li7500", "CO2SS", [40.0] * 10, unit="%")
                       + readings(clock, "irgason", "H2OSS", [0.95] * 10, unit="1")))  # 0..1: 95 %
    alerts.evaluate()
    assert firing(alerts, "signal_strength_low") == {"li7500/CO2SS": 40.0}
    assert states(alerts, "signal_strength_low")["irgason/H2OSS"] == "ok"
    clock.advance(1800)
    store.write(stored(SITE, readings(clock, "li7500", "CO2SS", [97.0] * 10, unit="%")
                       + readings(clock, "irgason", "H2OSS", [0.3] * 10, unit="1")))
    alerts.evaluate()
    assert firing(alerts, "signal_strength_low") == {"irgason/H2OSS": pytest.approx(30.0)}


def test_disk_nearly_full(store: SqliteStore, clock: Clock) -> None:
    alerts = evaluator(store, clock)
    store.write_health([health(clock, disk_free_bytes=1_600_000_000, disk_total_bytes=32_000_000_000)])
    alerts.evaluate()
    assert firing(alerts, "disk_nearly_full") == {"station": 0.05}
    clock.advance(60)
    store.write_health([health(clock, disk_free_bytes=16_000_000_000, disk_total_bytes=32_000_000_000)])
    alerts.evaluate()
    assert states(alerts, "disk_nearly_full") == {"station": "ok"}


def test_buffer_unwritable(store: SqliteStore, clock: Clock) -> None:
    alerts = evaluator(store, clock, buffer_unwritable={"window_s": 3600})
    # the disk refuses now: readings held in memory
    store.write_health([health(clock, age_s=120, buffer_write_errors=0)])
    store.write_health([health(clock, buffer_write_errors=7, readings_held_in_memory=150)])
    alerts.evaluate()
    assert firing(alerts, "buffer_unwritable") == {"station": 150}
    assert "150 readings held in memory" in alerts.alerts(rule="buffer_unwritable")[0].message
    # written again: the failed writes of the last hour still fire, with the count that rose
    clock.advance(60)
    store.write_health([health(clock, buffer_write_errors=9)])
    alerts.evaluate()
    assert firing(alerts, "buffer_unwritable") == {"station": 9}
    # an hour on, with no more failed writes, it clears; a restarted daemon's smaller count is no failure
    clock.advance(3700)
    store.write_health([health(clock, age_s=60, buffer_write_errors=9)])
    store.write_health([health(clock, buffer_write_errors=0)])
    alerts.evaluate()
    assert states(alerts, "buffer_unwritable") == {"station": "ok"}
    clock.advance(60)
    store.write_health([health(clock, buffer_write_errors=2)])  # the restarted daemon fails twice
    alerts.evaluate()
    assert firing(alerts, "buffer_unwritable") == {"station": 2}


def test_every_rule_has_a_test_here() -> None:
    names = {name.removeprefix("test_") for name in globals() if name.startswith("test_")}
    assert set(RULE_NAMES) <= names


# --- state changes: logged once, counted, stored, restored ------------------------------------------------------------


def test_a_change_is_logged_once_counted_and_stored(store: SqliteStore, clock: Clock,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.central.alerts")
    alerts = evaluator(store, clock)
    store.write_health([health(clock, clock_synced=False)])
    for _ in range(3):
        alerts.evaluate()
    fired = [r for r in caplog.records if "FIRING" in r.getMessage()]
    assert len(fired) == 1 and "clock_unsynchronised" in fired[0].getMessage()
    assert alerts.counters()["fired"] == {"clock_unsynchronised": 1}
    assert alerts.counters()["firing"] == {"clock_unsynchronised": 1} and alerts.counters()["rounds"] == 3
    [event] = store.alert_events(clock.now - timedelta(hours=1), clock.now + timedelta(seconds=1))
    assert (event.rule, event.state, event.time) == ("clock_unsynchronised", "firing", clock.now)
    since = clock.now
    clock.advance(120)
    alerts.evaluate()
    [alert] = alerts.alerts(state="firing")
    assert alert.since == since and alert.evaluated == clock.now  # since stays, evaluated moves
    store.write_health([health(clock)])
    alerts.evaluate()
    assert [r.getMessage() for r in caplog.records if "cleared" in r.getMessage()] != []
    assert alerts.counters()["cleared"] == {"clock_unsynchronised": 1}


def test_states_and_since_survive_a_restart(store: SqliteStore, clock: Clock) -> None:
    store.write_health([health(clock, clock_synced=False)])
    first = evaluator(store, clock)
    first.evaluate()
    since = clock.now
    clock.advance(300)
    restarted = evaluator(store, clock)
    restarted.evaluate()
    [alert] = restarted.alerts(state="firing")
    assert (alert.rule, alert.since) == ("clock_unsynchronised", since)
    assert restarted.counters()["fired"] == {}  # not fired again: it never stopped


def test_a_disabled_rule_is_not_evaluated(store: SqliteStore, clock: Clock) -> None:
    alerts = evaluator(store, clock, clock_unsynchronised={"enabled": False})
    store.write_health([health(clock, clock_synced=False)])
    alerts.evaluate()
    assert alerts.alerts(rule="clock_unsynchronised") == []
    assert evaluator(store, clock, enabled=False).evaluate() == []


def test_a_failing_rule_is_counted_and_the_others_run(store: SqliteStore, clock: Clock,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(store, "query_fluxes", broken)
    alerts = evaluator(store, clock)
    store.write_health([health(clock, clock_synced=False)])
    alerts.evaluate()
    alerts.evaluate()
    assert alerts.counters()["errors"] == {"flag2_share": 2}
    assert firing(alerts, "clock_unsynchronised") == {"station": 0.0004}
    assert len([r for r in caplog.records if r.exc_info]) == 1  # the traceback once


def test_changes_the_store_refused_are_written_later(store: SqliteStore, clock: Clock,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.central.store import StoreUnavailable

    alerts = evaluator(store, clock)
    store.write_health([health(clock, clock_synced=False)])
    real = store.write_alert_events

    def refuse(events: Any) -> None:
        raise StoreUnavailable("disk full")

    monkeypatch.setattr(store, "write_alert_events", refuse)
    alerts.evaluate()
    assert alerts.counters()["unwritten_changes"] == 1
    monkeypatch.setattr(store, "write_alert_events", real)
    clock.advance(60)
    alerts.evaluate()
    assert alerts.counters()["unwritten_changes"] == 0
    assert [e.rule for e in store.latest_alert_events()] == ["clock_unsynchronised"]


# --- the API ----------------------------------------------------------------------------------------------------------


def test_the_api_shows_the_alerts(store: SqliteStore, clock: Clock) -> None:
    alerts = evaluator(store, clock)
    store.write_health([health(clock, clock_synced=False, disk_free_bytes=10)])
    alerts.evaluate()
    client = TestClient(create_app(store, alerts=alerts, access=AccessControl.development()))
    body = client.get("/api/v1/alerts", params={"state": "firing"}).json()
    assert body["firing"] == 2
    assert {(a["rule"], a["station"], a["state"]) for a in body["alerts"]} == {
        ("clock_unsynchronised", STATION, "firing"), ("disk_nearly_full", STATION, "firing")}
    assert all(a["since"] and a["message"] for a in body["alerts"])
    everything = client.get("/api/v1/alerts").json()["alerts"]
    assert [a["state"] for a in everything][:2] == ["firing", "firing"] and len(everything) > 2  # firing first
    assert client.get("/api/v1/alerts/rules").json()["disk_nearly_full"]["min_free_fraction"] == 0.1
    history = client.get("/api/v1/alerts/history", params={"start": "2000-01-01T00:00:00Z",
                                                           "end": "2200-01-01T00:00:00Z"}).json()
    assert {e["rule"] for e in history} == {"clock_unsynchronised", "disk_nearly_full"}
    assert client.get("/api/v1/health").json()["counters"]["alerts"]["firing"] == {"clock_unsynchronised": 1,
                                                                                   "disk_nearly_full": 1}
    # a read-only API (no evaluator) answers from the stored states
    read_only = TestClient(create_app(store, access=AccessControl.development())).get(
        "/api/v1/alerts", params={"state": "firing"}).json()
    assert read_only["firing"] == 2 and read_only["evaluated"] is None


@pytest.mark.integration
def test_a_round_on_influxdb(influxd: Any, clock: Clock) -> None:
    store = InfluxStore(influxd.url, database="alerts")
    try:
        alerts = evaluator(store, clock, sensor_out_of_range={"window_s": 600})
        store.write_health([health(clock, clock_synced=False)])
        store.write(stored(SITE, readings(clock, "hmp155", "TA_1_1_1", [85.0] * 5)
                           + readings(clock, "gmp252", "CO2_1_1_1", [1843.0] * 30, unit="umol mol-1")))
        alerts.evaluate()
        assert {a.rule for a in alerts.alerts(state="firing")} == {"clock_unsynchronised", "sensor_out_of_range",
                                                                   "sensor_stuck"}
        assert {e.rule for e in store.latest_alert_events()} == {"clock_unsynchronised", "sensor_out_of_range",
                                                                 "sensor_stuck"}
    finally:
        store.close()
