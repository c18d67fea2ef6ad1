"""Stored health reports (`gateway.contract.StationHealth`, the stations' `health` channel): what every store keeps
and how a report is identified.

Identity (the same in both stores, checked by tests/central/test_store_health_contract.py): a report is
identified by (site, station, time), `time` being the station's stamp to the microsecond. A station takes one
report at a time, so a second report under the same identity is a redelivery of the same report: the store keeps
one (SQLite ignores the second, InfluxDB overwrites the points with the same content). A read returns the report
exactly as it was sent, every field (`seq` included: the delivery seq is part of the report).

The protocol `HealthStore` is part of `Store`; `SqliteStore` and `InfluxStore` implement it in `sqlite_health`
and `influx_health` (mixins), beside the readings.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from gateway.contract import StationHealth

#: The InfluxDB measurements (influx_health.py), also read by the Grafana dashboards (dashboards/).
HEALTH_MEASUREMENT = "health"
HEALTH_BUFFER_MEASUREMENT = "health_buffers"
HEALTH_SENSOR_MEASUREMENT = "health_sensors"
HEALTH_SENSOR_ERROR_MEASUREMENT = "health_sensor_errors"

#: StationHealth's scalar fields, in the order of the model: one column (SQLite) or field (InfluxDB) each.
SCALAR_FIELDS: tuple[str, ...] = tuple(
    name for name in StationHealth.model_fields if name not in ("schema_version", "site", "station", "time",
                                                                 "buffers", "sensors"))


class HealthStore(Protocol):
    """The health part of `Store` (every backend has it)."""

    def write_health(self, reports: list[StationHealth]) -> None:
        """Store the reports (a redelivery changes nothing); StoreUnavailable / StoreRejected when it could not.
        Safe to repeat."""

    def latest_health(self, *, station: str | None = None, site: str | None = None) -> list[StationHealth]:
        """The newest report of every (site, station), or of those matching `station`/`site`, ordered by site,
        station."""

    def query_health(self, station: str, start: datetime, end: datetime, *, site: str | None = None,
                     limit: int | None = None) -> list[StationHealth]:
        """The reports of a station taken in [start, end), oldest first; QueryTooLarge past `limit`."""
