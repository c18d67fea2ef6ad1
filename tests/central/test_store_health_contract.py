"""The health part of the store contract (gateway/central/store/health.py), against SqliteStore and a real influxd:
the same fixtures as test_store_contract.py, kept in a file of its own beside it."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.central.store import QueryTooLarge, Store, StoreUnavailable
from gateway.contract import ChannelBacklog, SensorHealth, StationHealth
from gateway.contract.asyncapi import load_asyncapi

from .test_store_contract import _influx_outage, _sqlite_outage, backend, store

__all__ = ["backend", "store"]  # the fixtures, re-exported so pytest finds them here

T0 = datetime(2026, 11, 25, 10, 0, 0, 123456, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


def example() -> dict[str, Any]:
    [item] = load_asyncapi()["components"]["messages"]["StationHealth"]["examples"]
    payload: dict[str, Any] = item["payload"]
    return payload


def report(i: int = 0, station: str = "plot-07", site: str = "hainich", **changes: Any) -> StationHealth:
    data = {**example(), "site": site, "station": station, "seq": i, "time": T0 + i * MINUTE,
            "uptime_s": 86400.5 + 60 * i}
    return StationHealth.model_validate({**data, **changes})


def sparse(i: int = 0, **changes: Any) -> StationHealth:
    """A report of a node that can tell little: every optional figure null, no buffers or sensors."""
    return StationHealth(site="hainich", station="plot-07", time=T0 + i * MINUTE, interval_s=60.0,
                         daemon_version="0.1.0", uptime_s=0.0, clock_synced=False, **changes)


def test_a_report_round_trips_exactly(store: Store) -> None:
    # floats chosen to catch lossy formatting anywhere between write and read
    sent = report(clock_offset_s=-2.5e-7, load_1m=0.1, daemon_cpu_share=1 / 3, cpu_temperature_c=412.123456789012,
                  disk_free_bytes=2**53 + 1)
    store.write_health([sent])
    assert store.query_health("plot-07", T0, T0 + MINUTE) == [sent]
    assert store.latest_health() == [sent]


def test_a_sparse_report_round_trips_with_its_nulls(store: Store) -> None:
    sent = sparse()
    store.write_health([sent])
    [back] = store.query_health("plot-07", T0 - MINUTE, T0 + MINUTE)
    assert back == sent
    assert back.disk_free_bytes is None and back.buffers == [] and back.sensors == []


def test_lists_keep_their_order_and_every_field(store: Store) -> None:
    sensors = [SensorHealth(name=f"s{9 - k}", driver="gmp252", kind="polled", state="unavailable", available=False,
                            availability=None, errors={"timeout": k, "crc": 1} if k else {},
                            last_error="no reply" if k else None, variables=[] if k % 2 else ["CO2", "T_PROBE"])
               for k in range(5)]
    buffers = [ChannelBacklog(channel="raw", unit="files", pending=3, oldest_age_s=1800.25, refusing="Not authorized"),
               ChannelBacklog(channel="readings", unit="readings", pending=0)]
    sent = report(sensors=sensors, buffers=buffers)
    store.write_health([sent])
    [back] = store.latest_health(station="plot-07")
    assert back == sent
    assert [s.name for s in back.sensors] == ["s9", "s8", "s7", "s6", "s5"]


def test_a_redelivered_report_is_stored_once(store: Store) -> None:
    sent = report(3)
    store.write_health([sent])
    store.write_health([sent])
    assert store.query_health("plot-07", T0, T0 + 10 * MINUTE) == [sent]


def test_query_health_is_half_open_ordered_and_per_station(store: Store) -> None:
    store.write_health([report(i) for i in (4, 0, 2, 1, 3)] + [report(2, station="plot-08")])
    found = store.query_health("plot-07", T0 + MINUTE, T0 + 4 * MINUTE)
    assert [r.seq for r in found] == [1, 2, 3]
    assert [r.station for r in store.query_health("plot-08", T0, T0 + 10 * MINUTE)] == ["plot-08"]


def test_latest_health_is_the_newest_report_of_each_station(store: Store) -> None:
    store.write_health([report(i) for i in range(3)])
    store.write_health([report(1, station="plot-08"), report(0, station="plot-08", site="other")])
    store.write_health([report(0)])  # an old report arriving late (a backlog draining) does not become the latest
    latest = store.latest_health()
    assert [(r.site, r.station, r.seq) for r in latest] == [("hainich", "plot-07", 2), ("hainich", "plot-08", 1),
                                                             ("other", "plot-08", 0)]
    assert [r.site for r in store.latest_health(station="plot-08", site="other")] == ["other"]
    assert store.latest_health(station="nowhere") == []


def test_latest_health_leaves_out_what_an_older_report_had(store: Store) -> None:
    old = report(0)
    new = report(1, sensors=old.sensors[:1], buffers=old.buffers[:1])
    store.write_health([old, new])
    [latest] = store.latest_health()
    assert latest == new


def test_site_filter_and_limit(store: Store) -> None:
    store.write_health([report(i) for i in range(5)] + [report(i, site="other") for i in range(2)])
    assert len(store.query_health("plot-07", T0, T0 + HOUR)) == 7
    assert len(store.query_health("plot-07", T0, T0 + HOUR, site="other")) == 2
    with pytest.raises(QueryTooLarge):
        store.query_health("plot-07", T0, T0 + HOUR, limit=4)
    assert len(store.query_health("plot-07", T0, T0 + HOUR, limit=7)) == 7


@pytest.mark.parametrize("hostile", ["x' OR '1'='1", 'x" OR 1=1 --', "plot-07$", ".*", "/.*/"])
def test_hostile_station_names_find_no_health(store: Store, hostile: str) -> None:
    store.write_health([report(0)])
    assert store.query_health(hostile, T0 - HOUR, T0 + HOUR) == []
    assert store.latest_health(station=hostile) == []
    assert store.latest_health(site=hostile) == []


def test_empty_store_has_no_health(store: Store) -> None:
    assert store.latest_health() == []
    assert store.query_health("plot-07", T0, T0 + HOUR) == []


Outage = Callable[[Path], AbstractContextManager[tuple[Store, Callable[[], None]]]]


@pytest.mark.parametrize(
    "outage",
    [
        pytest.param(_sqlite_outage, id="sqlite"),
        pytest.param(_influx_outage, id="influx", marks=pytest.mark.integration),
    ],
)
def test_a_health_write_during_an_outage_raises_store_unavailable_and_works_after(outage: Outage,
                                                                                  tmp_path: Path) -> None:
    with outage(tmp_path) as (store, recover):
        with pytest.raises(StoreUnavailable):
            store.write_health([report(0)])
        recover()
        store.write_health([report(0)])
        assert store.latest_health() == [report(0)]
