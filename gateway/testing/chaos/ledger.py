"""What the counting probes served against what InfluxDB holds: drain checks during a chaos run and the exact
reconciliation at its end.

Terms (docs/reliability.md, "What committed means"):

- *served poll*: a poll whose three replies (CO2, temperature, status) the probe wrote to the line; each becomes two
  readings, CO2 = `co2_of(n)` and T_PROBE = `temperature_of(n)`, stamped with one time by the station.
- *in flight at a station kill*: a served poll the killed station had not committed to its buffer. Provably so
  when both hold: its number is above the station's commit frontier for that sensor at the kill (the highest poll
  found in the buffer file the killed process left, or already stored) — the buffer writer commits a sensor's
  readings in the order they were read, so everything up to the frontier was committed —, and it was served at most
  `COMMIT_WINDOW_S` before the kill (a reading waits in memory at most its poll round's 0.5 s, `bus.ROUND_HOLD_S`,
  plus 50 ms plus one commit).
- *in flight at a serial pull*: a served poll whose last reply was written within `PULL_WINDOW_S` before the line
  was pulled (or after it was back) and that the station never stored: its bytes died with the PTY.
- *committed* = served - in flight (polls in flight that were stored anyway count as committed).
- *lost*: a reading of a committed poll that the store does not hold. *duplicated*: a stored reading whose identity
  (site, station, sensor, variable, time) or whose poll appears more than once. *altered*: a stored reading whose
  value, unit, site or pairing differs from what the probe served, or that no served poll explains.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from gateway.testing.chaos.archiveledger import ArchiveReconciliation
from gateway.testing.chaos.fluxledger import FluxReconciliation
from gateway.testing.chaos.site import DATABASE, SITE, STATION, STREAM_SENSOR, sensor_name
from gateway.testing.chaos.streamledger import StreamReconciliation, reconcile_stream
from gateway.testing.counting_sensor import ServedPoll, poll_of_co2, temperature_of

COMMIT_WINDOW_S = 2.0
PULL_WINDOW_S = 1.0
# more polls of one sensor than can be served within COMMIT_WINDOW_S (one poll takes at least a few ms)
_POLLS_PER_WINDOW = 500
CO2_UNIT, TEMPERATURE_UNIT = "umol mol-1", "degC"


class ReadingSource(Protocol):
    def readings(self, since_ns: int = 0) -> list[dict[str, Any]]: ...


class InfluxReader:
    """InfluxQL over HTTP straight to influxd, independent of the central service's store code."""

    def __init__(self, url: str, database: str = DATABASE) -> None:
        self.url = url
        self.database = database
        self._http = httpx.Client(timeout=30.0)

    def close(self) -> None:
        self._http.close()

    def rows(self, query: str) -> list[dict[str, Any]]:
        response = self._http.get(f"{self.url}/query", params={"db": self.database, "q": query, "epoch": "ns"})
        response.raise_for_status()
        rows: list[dict[str, Any]] = []
        for result in response.json().get("results", []):
            if "error" in result:
                if "database not found" in result["error"]:
                    return []
                raise RuntimeError(f"InfluxDB query failed: {result['error']}")
            for series in result.get("series", []) or []:
                tags = series.get("tags") or {}
                for values in series.get("values", []):
                    rows.append({**tags, **dict(zip(series["columns"], values, strict=True))})
        return rows

    def readings(self, since_ns: int = 0) -> list[dict[str, Any]]:
        """Every reading point of the chaos station from `since_ns` on, with all its tags and fields."""
        return self.rows(f"SELECT * FROM readings WHERE station = '{STATION}' AND time >= {int(since_ns)}")

    def fluxes(self) -> list[dict[str, Any]]:
        """Every flux record of the chaos station (one row per record: tags, status, reasons, values)."""
        return self.rows(f"SELECT * FROM fluxes WHERE station = '{STATION}'")

    def stream_readings(self) -> list[dict[str, Any]]:
        """Every reading point of the chaos station's stream instrument (its summaries)."""
        return self.rows(f"SELECT * FROM readings WHERE station = '{STATION}' AND sensor = '{STREAM_SENSOR}'")


@dataclass
class StationKill:
    at: float  # monotonic time by which the station was dead
    frontier: dict[str, int]  # sensor -> highest poll in the buffer the killed process left
    # monotonic time just before the next station process was started: a poll served between the kill and this
    # answered a request the dead process had sent, and its reply reached no one
    restarted: float = math.inf
    # the highest record of the stream instrument in the raw archive files as the killed process left them
    archive_frontier: int = 0


@dataclass(frozen=True)
class LinePull:
    start: float  # monotonic
    end: float


@dataclass
class Faults:
    kills: list[StationKill] = field(default_factory=list)
    pulls: list[LinePull] = field(default_factory=list)


class Ledger:
    """The served log and the store side by side; `refresh()` reads what is new in both."""

    def __init__(self, served_log: Path, reader: ReadingSource, faults: Faults) -> None:
        self.served_log = served_log
        self.reader = reader
        self.faults = faults
        self.served: dict[tuple[str, int], ServedPoll] = {}
        # (sensor, n) -> stored time of its CO2 reading; (sensor, time) of stored T_PROBE readings
        self.co2_at: dict[tuple[str, int], int] = {}
        self.temperature_times: set[tuple[str, int]] = set()
        self._log_offset = 0
        self._store_since_ns = 0

    # --- reading both sides ----------------------------------------------------------------------------------

    def read_served(self) -> None:
        if not self.served_log.exists():
            return
        with open(self.served_log, encoding="utf-8") as stream:
            stream.seek(self._log_offset)
            while True:
                line = stream.readline()
                if not line.endswith("\n"):
                    break
                self._log_offset = stream.tell()
                poll = ServedPoll.from_json(line)
                self.served[(sensor_name(poll.address), poll.n)] = poll

    def missing(self, until: float) -> list[tuple[str, int]]:
        """Committed polls served by monotonic time `until` whose two readings the store is not known to hold."""
        return [key for key, poll in self.served.items()
                if poll.monotonic <= until and not self._stored(key) and not self.in_flight(key, poll)]

    def _stored(self, key: tuple[str, int]) -> bool:
        time_ns = self.co2_at.get(key)
        return time_ns is not None and (key[0], time_ns) in self.temperature_times

    def refresh_store(self, missing: Iterable[tuple[str, int]]) -> None:
        """Read the store from shortly before the oldest missing poll on."""
        oldest = min((self.served[key].wall for key in missing), default=None)
        if oldest is None:
            return
        since_ns = int((oldest - 30.0) * 1e9)
        for row in self.reader.readings(since_ns):
            self._note(row)

    def _note(self, row: dict[str, Any]) -> None:
        sensor, variable, time_ns = str(row.get("sensor")), str(row.get("variable")), int(row["time"])
        if variable == "CO2":
            n = poll_of_co2(row.get("value"))
            if n is not None:
                self.co2_at.setdefault((sensor, n), time_ns)
        elif variable == "T_PROBE":
            self.temperature_times.add((sensor, time_ns))

    def drained(self, until: float) -> bool:
        self.read_served()
        missing = self.missing(until)
        if not missing:
            return True
        self.refresh_store(missing)
        return not self.missing(until)

    def fresh_stored(self, after: float) -> bool:
        """Whether a poll served after monotonic time `after` is stored."""
        self.read_served()
        fresh = [key for key, poll in self.served.items() if poll.monotonic > after]
        if any(self._stored(key) for key in fresh):
            return True
        self.refresh_store(fresh)
        return any(self._stored(key) for key in fresh)

    def wait_recovered(self, end: float, timeout_s: float, *, fresh_too: bool = True,
                       interval_s: float = 0.2) -> tuple[float | None, float | None]:
        """After a fault that ended at monotonic time `end`: (drain, fresh) in seconds from `end` until every
        committed poll served by then is stored, and until a poll served after it is stored (data flow end to end
        again; not waited for unless `fresh_too`); None where the timeout came first."""
        deadline = time.monotonic() + timeout_s
        drain = fresh = None
        while drain is None or (fresh_too and fresh is None):
            try:
                if drain is None and self.drained(end):
                    drain = max(0.0, time.monotonic() - end)
                if fresh_too and fresh is None and self.fresh_stored(end):
                    fresh = max(0.0, time.monotonic() - end)
            except (httpx.HTTPError, RuntimeError):
                pass  # influxd restarting: ask again
            if time.monotonic() > deadline:
                break
            time.sleep(interval_s)
        return drain, fresh

    # --- in flight ---------------------------------------------------------------------------------------------

    def in_flight(self, key: tuple[str, int], poll: ServedPoll) -> bool:
        return self.in_flight_at_kill(key, poll) is not None or self.in_flight_at_pull(poll)

    def in_flight_at_kill(self, key: tuple[str, int], poll: ServedPoll) -> StationKill | None:
        sensor, n = key
        for kill in self.faults.kills:
            if not kill.at - COMMIT_WINDOW_S <= poll.monotonic <= kill.restarted:
                continue
            if poll.monotonic > kill.at:
                return kill  # served to a process already dead
            if n <= kill.frontier.get(sensor, 0):
                continue
            # The frontier is also any later poll of this sensor served before the kill and stored: the buffer
            # writer commits in reading order, so a stored later poll proves this one was committed too.
            later = (self.served.get((sensor, m)) for m in range(n + 1, n + _POLLS_PER_WINDOW))
            if any(p is not None and p.monotonic <= kill.at and (sensor, p.n) in self.co2_at for p in later):
                continue
            return kill
        return None

    def in_flight_at_pull(self, poll: ServedPoll) -> bool:
        return any(pull.start - PULL_WINDOW_S <= poll.monotonic <= pull.end + PULL_WINDOW_S
                   for pull in self.faults.pulls)


@dataclass
class Reconciliation:
    served_polls: int = 0
    in_flight_at_kill: int = 0  # read by the station, not yet in its buffer when it was killed
    served_to_dead_station: int = 0  # the reply to a request of a station killed before it arrived
    in_flight_at_pull: int = 0
    oldest_in_flight_before_kill_s: float = 0.0
    committed_readings: int = 0
    stored_readings: int = 0
    lost: int = 0
    duplicated: int = 0
    altered: int = 0
    examples: list[str] = field(default_factory=list)
    stream: StreamReconciliation | None = None  # the stream instrument's summaries, when the site ran one
    archive: ArchiveReconciliation | None = None  # the stream instrument's raw archive files, when the site ran one
    flux: FluxReconciliation | None = None  # the station's flux records, when it ran the flux runner

    @property
    def readings_exact(self) -> bool:
        """The polled readings alone."""
        return (self.lost == 0 and self.duplicated == 0 and self.altered == 0
                and self.stored_readings == self.committed_readings)

    @property
    def exact(self) -> bool:
        return (self.readings_exact and (self.stream is None or self.stream.exact)
                and (self.archive is None or self.archive.exact) and (self.flux is None or self.flux.exact))

    def note(self, text: str) -> None:
        if len(self.examples) < 20:
            self.examples.append(text)


def reconcile(served_log: Path, reader: ReadingSource, faults: Faults, *, stream_log: Path | None = None,
              summary_interval_s: float = 0.0, faults_over: float | None = None) -> Reconciliation:
    """The exact account at the end of a run: every stored reading of the station is read back whole; with
    `stream_log`, the stream's summaries too (`streamledger.reconcile_stream`)."""
    ledger = Ledger(served_log, reader, faults)
    ledger.read_served()
    every = reader.readings(0)
    rows = every if stream_log is None else [row for row in every if row.get("sensor") != STREAM_SENSOR]
    result = Reconciliation(served_polls=len(ledger.served))
    if stream_log is not None:
        result.stream = reconcile_stream(stream_log, every, faults, summary_interval_s, faults_over)
    # identities: (site, station, sensor, variable, time) must each appear once
    identities = Counter((r.get("site"), r.get("station"), r.get("sensor"), r.get("variable"), int(r["time"]))
                         for r in rows)
    for identity, count in identities.items():
        if count > 1:
            result.duplicated += count - 1
            result.note(f"identity {identity} stored {count} times")
    by_poll: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    temperatures: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        ledger._note(row)
        sensor, variable = str(row.get("sensor")), str(row.get("variable"))
        if row.get("site") != SITE:
            result.altered += 1
            result.note(f"reading with site {row.get('site')!r}: {row}")
        elif variable == "CO2":
            n = poll_of_co2(row.get("value"))
            if n is None or (sensor, n) not in ledger.served:
                result.altered += 1
                result.note(f"CO2 value {row.get('value')!r} of {sensor} was never served: {row}")
                continue
            by_poll[(sensor, n)].append(row)
        elif variable == "T_PROBE":
            temperatures[(sensor, int(row["time"]))].append(row)
        else:
            result.altered += 1
            result.note(f"unexpected variable {variable!r}: {row}")
    paired_temperatures: set[tuple[str, int]] = set()
    for key, co2_rows in by_poll.items():
        poll = ledger.served[key]
        times = sorted({int(row["time"]) for row in co2_rows})
        if len(times) > 1:  # the same poll under several times (a repeat under one time counts as an identity)
            extra = (len(times) - 1) + sum(1 for t in times[1:] if (key[0], t) in temperatures)
            result.duplicated += extra
            result.note(f"poll {key} stored under {len(times)} times: {times}")
        for row in co2_rows:
            if row.get("unit") != CO2_UNIT or not _same(row.get("value"), poll.co2):
                result.altered += 1
                result.note(f"CO2 of poll {key} altered: {row} vs served {poll.co2!r}")
        for stamp in times:
            time_key = (key[0], stamp)
            paired_temperatures.add(time_key)
            for t_row in temperatures.get(time_key, []):
                if t_row.get("unit") != TEMPERATURE_UNIT or not _same(t_row.get("value"), temperature_of(key[1])):
                    result.altered += 1
                    result.note(f"T_PROBE of poll {key} altered: {t_row} vs served {temperature_of(key[1])!r}")
    for time_key, t_rows in temperatures.items():
        if time_key not in paired_temperatures:
            result.altered += len(t_rows)
            result.note(f"T_PROBE at {time_key} has no CO2 of the same poll: {t_rows[0]}")
    result.stored_readings = len(rows)
    committed = 0
    for key, poll in ledger.served.items():
        kill = ledger.in_flight_at_kill(key, poll)
        stored_co2 = key in by_poll
        stored_t = stored_co2 and (key[0], int(by_poll[key][0]["time"])) in temperatures
        if not stored_co2 and kill is not None:
            if poll.monotonic > kill.at:
                result.served_to_dead_station += 1
            else:
                result.in_flight_at_kill += 1
                result.oldest_in_flight_before_kill_s = max(result.oldest_in_flight_before_kill_s,
                                                            kill.at - poll.monotonic)
            continue
        if not stored_co2 and ledger.in_flight_at_pull(poll):
            result.in_flight_at_pull += 1
            continue
        committed += 2
        missing = (0 if stored_co2 else 1) + (0 if stored_t else 1)
        if missing:
            result.lost += missing
            near = [f"station kill {kill.at - poll.monotonic:+.3f} s after it (frontier {kill.frontier.get(key[0])})"
                    for kill in faults.kills if abs(kill.at - poll.monotonic) < 10]
            near += [f"serial pull {pull.start - poll.monotonic:+.3f} s after it" for pull in faults.pulls
                     if abs(pull.start - poll.monotonic) < 10]
            result.note(f"poll {key} served at {poll.wall:.3f} ({missing} reading(s)) not stored; "
                        f"{'; '.join(near) or 'no station kill or serial pull within 10 s'}")
    result.committed_readings = committed
    return result


def _same(stored: Any, served: float) -> bool:
    return isinstance(stored, int | float) and not math.isnan(float(stored)) and float(stored) == served
