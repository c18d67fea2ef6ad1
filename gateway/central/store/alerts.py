"""What the alert rules read and write (gateway/central/alerts.py): alert state changes, and per-series statistics of
recent readings.

An alert event is one state change of one alert: an alert is identified by (rule, site, station, subject) — the
subject names what in the station the rule looked at (`station` for the station as a whole, `<sensor>/<variable>`
for a series, a channel or a flag variable) — and an event by the alert's identity + `time`. Writing an event
with a held identity replaces it. The newest event of an alert is its current state, so the service restores
every alert's state and `since` from the store when it starts; Grafana reads the same events (measurement
`alerts`) for its "alarms" panels.

`reading_stats` gives, per (site, sensor, variable) of one station, the count, minimum, maximum and mean of the
readings with a value and a qc at most `max_qc` in [start, end): one query per station for the stuck, range and
signal-strength rules, whatever the number of readings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

AlertState = Literal["firing", "ok"]
ALERT_MEASUREMENT = "alerts"
STATION_SUBJECT = "station"


@dataclass(frozen=True)
class AlertEvent:
    rule: str
    site: str
    station: str
    subject: str
    state: AlertState
    time: datetime  # when the central service saw the change (its clock)
    value: float | None  # what the rule measured (its unit in docs/operations.md), None when nothing could be
    threshold: float | None
    message: str

    @property
    def key(self) -> tuple[str, str, str, str]:
        return self.rule, self.site, self.station, self.subject


@dataclass(frozen=True)
class ReadingStats:
    site: str
    sensor: str
    variable: str
    unit: str
    count: int
    minimum: float
    maximum: float
    mean: float


class AlertStore(Protocol):
    """The alert part of `Store` (every backend has it)."""

    def write_alert_events(self, events: list[AlertEvent]) -> None:
        """Store the events (an event with a held identity replaces it); StoreUnavailable when it could not."""

    def alert_events(self, start: datetime, end: datetime, *, station: str | None = None) -> list[AlertEvent]:
        """The events with time in [start, end), oldest first (then by rule, site, station, subject)."""

    def latest_alert_events(self) -> list[AlertEvent]:
        """The newest event of every alert, ordered by rule, site, station, subject."""

    def reading_stats(self, station: str, variables: Sequence[str], start: datetime, end: datetime, *,
                      max_qc: int = 1) -> list[ReadingStats]:
        """Per (site, sensor, variable) of `station` with readings of one of `variables` in [start, end) that have
        a value and qc <= max_qc: their count, min, max, mean; sorted by site, sensor, variable."""
