"""The alert part of the store contract (gateway/central/store/alerts.py), against SqliteStore and a real influxd:
the same fixtures as test_store_contract.py, kept in a file of its own beside it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from gateway.central.store import AlertEvent, ReadingStats, Store
from gateway.model import QualityFlag

from .helpers import T0, reading, stored
from .test_store_contract import backend, store

__all__ = ["backend", "store"]  # the fixtures, re-exported so pytest finds them here

MINUTE = timedelta(minutes=1)


def event(i: int = 0, **changes: Any) -> AlertEvent:
    fields: dict[str, Any] = {"rule": "station_silent", "site": "hainich", "station": "plot-07",
                              "subject": "station", "state": "firing", "time": T0 + i * MINUTE, "value": 612.25,
                              "threshold": 600.0, "message": "no health report for 612 s (limit 600 s)"}
    fields.update(changes)
    return AlertEvent(**fields)


def test_events_round_trip_in_time_order(store: Store) -> None:
    sent = [event(2, state="ok", value=None, threshold=None, message="reporting again"), event(0),
            event(1, rule="disk_nearly_full", subject="station", value=1 / 3, threshold=0.1)]
    store.write_alert_events(sent)
    assert store.alert_events(T0, T0 + 10 * MINUTE) == [sent[1], sent[2], sent[0]]
    assert store.alert_events(T0 + MINUTE, T0 + 2 * MINUTE) == [sent[2]]  # half-open


def test_the_latest_event_of_every_alert(store: Store) -> None:
    store.write_alert_events([event(0), event(5, state="ok"), event(3, subject="gmp252/CO2", rule="sensor_stuck"),
                              event(1, station="plot-08")])
    latest = store.latest_alert_events()
    assert [(e.rule, e.station, e.subject, e.state, e.time) for e in latest] == [
        ("sensor_stuck", "plot-07", "gmp252/CO2", "firing", T0 + 3 * MINUTE),
        ("station_silent", "plot-07", "station", "ok", T0 + 5 * MINUTE),
        ("station_silent", "plot-08", "station", "firing", T0 + MINUTE),
    ]


def test_an_event_with_a_held_identity_replaces_it(store: Store) -> None:
    store.write_alert_events([event(0)])
    store.write_alert_events([event(0, value=700.0, message="again")])
    assert [(e.value, e.message) for e in store.alert_events(T0, T0 + MINUTE)] == [(700.0, "again")]


def test_events_filter_by_station(store: Store) -> None:
    store.write_alert_events([event(0), event(1, station="plot-08")])
    assert [e.station for e in store.alert_events(T0, T0 + 5 * MINUTE, station="plot-08")] == ["plot-08"]
    assert store.alert_events(T0, T0 + 5 * MINUTE, station="x' OR '1'='1") == []


def test_reading_stats_of_the_good_readings_per_sensor(store: Store) -> None:
    readings = [reading(time=T0 + i * MINUTE, value=v) for i, v in enumerate([400.0, 402.0, 404.0])]
    readings += [reading(time=T0 + 3 * MINUTE, value=9999.0, qc=QualityFlag.BAD),
                 reading(time=T0 + 4 * MINUTE, value=None),
                 reading(time=T0 + 5 * MINUTE, value=406.0, qc=QualityFlag.SUSPECT)]
    readings += [reading(time=T0 + i * MINUTE, value=5.0, sensor="other", variable="T_PROBE", unit="degC")
                 for i in range(4)]
    readings += [reading(time=T0 + i * MINUTE, value=1.0, variable="TS") for i in range(2)]  # not asked for
    readings += [reading(time=T0 + 20 * MINUTE, value=1.0)]  # outside the window
    readings += [reading("st2", time=T0, value=1.0)]  # another station
    store.write(stored("site1", readings))
    stats = store.reading_stats("st1", ["CO2", "T_PROBE", "NONE"], T0, T0 + 10 * MINUTE)
    assert stats == [
        ReadingStats("site1", "gmp252", "CO2", "umol mol-1", 4, 400.0, 406.0, pytest.approx(403.0)),  # type: ignore[arg-type]
        ReadingStats("site1", "other", "T_PROBE", "degC", 4, 5.0, 5.0, 5.0),
    ]
    [good_only] = store.reading_stats("st1", ["CO2"], T0, T0 + 10 * MINUTE, max_qc=0)
    assert (good_only.count, good_only.maximum) == (3, 404.0)
    assert store.reading_stats("st1", [], T0, T0 + MINUTE) == []
    assert store.reading_stats("x' OR '1'='1", ["CO2"], T0, T0 + 10 * MINUTE) == []


def test_empty_store_has_no_events(store: Store) -> None:
    assert store.latest_alert_events() == []
    assert store.alert_events(T0, T0 + MINUTE) == []
