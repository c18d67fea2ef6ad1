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

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

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


@dataclass(slots=True)
class HealthFields:
    """A health report as the fields of `StationHealth` in plain dicts and lists (its outboxes and sensors too, every
    field present, defaults filled in), checked as the model checks them (`gateway.central.healthjson`): what the
    InfluxDB store writes (`TakesHealthFields`) without a model object; other stores are given the model
    (`gateway.central.ingest`)."""

    site: str
    station: str
    seq: int | None
    time: datetime
    time_ns: int
    fields: dict[str, Any]


class TakesHealthFields(Protocol):
    """A store whose `write_health_fields` takes reports as `HealthFields` as well as models (the InfluxDB store)."""

    takes_health_fields: bool

    def write_health_fields(self, reports: list[HealthFields | StationHealth]) -> None: ...


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
