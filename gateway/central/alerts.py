"""Alert rules evaluated by the central service, independently of Grafana (docs/operations.md, "Alert rules").

    AlertScheduler (thread `alerts`, every alerts.every_s inside `central serve`)
        └─ AlertEvaluator.evaluate(): every enabled rule over the stations' latest health reports and the store
              ├─ an Observation per (rule, site, station, subject): firing or not, the value, the threshold
              ├─ a change of state → an AlertEvent: logged once, counted, written to the store
              └─ the current alerts → GET /api/v1/alerts, the status page, Grafana (measurement `alerts`)

Rules are data (`alerts:` in central.yaml, gateway/central/alerts_config.py); each is a function of one station's
newest health report and what the store holds, so a rule never needs the broker or the station. The subject names
what a rule looked at: `station`, an outbox channel, `<sensor>/<variable>` or a flag variable.

A rule that cannot be evaluated (the store away, a bug) is counted per rule and logged once per distinct message;
its alerts keep their state until it can. An alert whose subject is not observed in a round keeps its state too:
no data is not "ok". State changes the store could not take are kept and written at the next round, so the stored
history catches up. At start the evaluator restores every alert's state and `since` from the store's newest events.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise

from gateway.central.alerts_config import RULE_NAMES, AlertsConfig, RuleName
from gateway.central.periodic import PeriodicJob
from gateway.central.store import AlertEvent, QueryTooLarge, Store, StoreError, StoreUnavailable
from gateway.central.store.alerts import STATION_SUBJECT, AlertState
from gateway.contract import StationHealth
from gateway.model import format_time, utc_now
from gateway.variables import VARIABLES, base_name

log = logging.getLogger(__name__)

MAX_FLUX_RECORDS = 100_000
MAX_HEALTH_REPORTS = 100_000


@dataclass(frozen=True)
class Observation:
    rule: RuleName
    site: str
    station: str
    subject: str
    firing: bool
    value: float | None
    threshold: float | None
    message: str

    @property
    def key(self) -> tuple[str, str, str, str]:
        return self.rule, self.site, self.station, self.subject


@dataclass(frozen=True)
class Alert:
    """One alert's current state."""

    rule: str
    site: str
    station: str
    subject: str
    state: AlertState
    since: datetime
    value: float | None
    threshold: float | None
    message: str
    evaluated: datetime | None  # the round that last observed it (None: restored from the store, not seen yet)

    @property
    def key(self) -> tuple[str, str, str, str]:
        return self.rule, self.site, self.station, self.subject


@dataclass(frozen=True)
class RuleContext:
    store: Store
    config: AlertsConfig
    now: datetime
    reports: list[StationHealth]  # the newest report of every station


def _variables(report: StationHealth) -> set[str]:
    return {v for sensor in report.sensors for v in sensor.variables}


# --- the rules: one station's facts -> observations ------------------------------------------------------------------


def station_silent(ctx: RuleContext) -> list[Observation]:
    limit = ctx.config.station_silent.after_s
    found = []
    for report in ctx.reports:
        age = (ctx.now - report.time).total_seconds()
        firing = age > limit
        message = (f"no health report for {age:.0f} s (last taken {format_time(report.time)}, limit {limit:.0f} s): "
                   "the station is down, cut off, or cannot write its disk (its reports queue there)"
                   if firing else f"reporting: last report {max(age, 0.0):.0f} s ago")
        found.append(Observation("station_silent", report.site, report.station, STATION_SUBJECT, firing,
                                 round(age, 3), limit, message))
    return found


def _history(ctx: RuleContext, report: StationHealth, window_s: float) -> list[StationHealth]:
    """The station's reports from `window_s` before now up to and with `report`, oldest first."""
    return ctx.store.query_health(report.station, ctx.now - timedelta(seconds=window_s),
                                  report.time + timedelta(microseconds=1), site=report.site, limit=MAX_HEALTH_REPORTS)


def buffer_growing(ctx: RuleContext) -> list[Observation]:
    rule = ctx.config.buffer_growing
    found = []
    for report in ctx.reports:
        history = _history(ctx, report, rule.window_s)
        first = history[0] if history else report
        for backlog in report.buffers:
            before = first.backlog(backlog.channel)
            then = before.pending if before is not None else backlog.pending
            age = backlog.oldest_age_s
            firing = age is not None and age > rule.min_oldest_age_s and backlog.pending > then
            if firing:
                message = (f"{backlog.channel}: {backlog.pending} {backlog.unit} waiting (was {then} at "
                           f"{format_time(first.time)}), the oldest {age:.0f} s old"
                           + (f"; the broker refuses: {backlog.refusing}" if backlog.refusing else ""))
            else:
                message = f"{backlog.channel}: {backlog.pending} {backlog.unit} waiting" + (
                    f", the oldest {age:.0f} s old" if age is not None else "")
            found.append(Observation("buffer_growing", report.site, report.station, backlog.channel, firing,
                                     None if age is None else round(age, 3), rule.min_oldest_age_s, message))
    return found


def clock_unsynchronised(ctx: RuleContext) -> list[Observation]:
    limit = ctx.config.clock_unsynchronised.max_offset_s
    found = []
    for report in ctx.reports:
        offset = report.clock_offset_s
        ahead = (report.time - ctx.now).total_seconds()  # a report cannot be taken after it arrived
        problems = []
        if not report.clock_synced:
            problems.append("the kernel says the clock is not synchronised (no NTP/PPS discipline)")
        if offset is not None and abs(offset) > limit:
            problems.append(f"the kernel is still correcting an offset of {offset:+.3f} s")
        if ahead > limit:
            problems.append(f"its report is stamped {ahead:.1f} s ahead of the central clock")
        value = offset if offset is not None and abs(offset) > limit else (ahead if ahead > limit else offset)
        message = "; ".join(problems) if problems else "synchronised" + (
            f", offset {offset:+.6f} s" if offset is not None else "")
        found.append(Observation("clock_unsynchronised", report.site, report.station, STATION_SUBJECT,
                                 bool(problems), value, limit, message))
    return found


def sensor_stuck(ctx: RuleContext) -> list[Observation]:
    rule = ctx.config.sensor_stuck
    ignore = [re.compile(p) for p in rule.ignore]
    slow = [(re.compile(p), window) for p, window in rule.slow.items()]
    # The slow variables' long windows are read once per `slow_every_s`, in the round that crosses a multiple of it;
    # in the other rounds they are not observed, and an alert keeps its state when its subject is not observed.
    slow_round = ctx.now.timestamp() % rule.slow_every_s < ctx.config.every_s
    found = []
    for report in ctx.reports:
        windows: dict[float, list[str]] = {}
        for name in _variables(report):
            if any(p.search(name) for p in ignore):
                continue
            window = next((w for p, w in slow if p.search(name)), None)
            if window is None:
                windows.setdefault(rule.window_s, []).append(name)
            elif slow_round:
                windows.setdefault(window, []).append(name)
        for window_s, names in windows.items():
            covered: set[tuple[str, str]] | None = None
            if window_s != rule.window_s:
                # A slow window is judged only where readings reach back into its first half: a station (or a
                # demo) that started an hour ago has no two days of equal soil temperatures to show
                early = ctx.store.reading_stats(report.station, names, ctx.now - timedelta(seconds=window_s),
                                                ctx.now - timedelta(seconds=window_s / 2))
                covered = {(s.sensor, s.variable) for s in early if s.site == report.site and s.count > 0}
            for stats in ctx.store.reading_stats(report.station, names, ctx.now - timedelta(seconds=window_s),
                                                 ctx.now):
                if stats.site != report.site:
                    continue
                if covered is not None and (stats.sensor, stats.variable) not in covered:
                    continue  # not observed: an alert keeps its state
                spread = stats.maximum - stats.minimum
                enough = stats.count >= rule.min_count
                firing = enough and spread <= rule.max_spread
                if firing:
                    message = (f"{stats.count} good readings in {window_s:.0f} s all {stats.minimum:g} {stats.unit}: "
                               "the sensor or its driver repeats a value")
                elif not enough:
                    message = f"{stats.count} good readings in {window_s:.0f} s, fewer than {rule.min_count}"
                else:
                    message = f"varies by {spread:g} {stats.unit} over {window_s:.0f} s"
                found.append(Observation("sensor_stuck", report.site, report.station,
                                         f"{stats.sensor}/{stats.variable}", firing, spread, rule.max_spread, message))
    return found


def sensor_out_of_range(ctx: RuleContext) -> list[Observation]:
    rule = ctx.config.sensor_out_of_range
    found = []
    for report in ctx.reports:
        names = [v for v in _variables(report) if base_name(v) in rule.ranges]
        for stats in ctx.store.reading_stats(report.station, names, ctx.now - timedelta(seconds=rule.window_s),
                                             ctx.now):
            if stats.site != report.site:
                continue
            known = VARIABLES.get(base_name(stats.variable))
            if known is not None and stats.unit != known.unit:
                continue  # the range is in the registry's unit (an LI-7500's CO2 in mmol m-3 is another quantity)
            low, high = rule.ranges[base_name(stats.variable)]
            below, above = stats.mean < low, stats.mean > high
            threshold = low if below else high
            message = (f"mean {stats.mean:g} {stats.unit} over {rule.window_s:.0f} s is "
                       + (f"below {low:g}" if below else f"above {high:g}" if above else f"within [{low:g}, {high:g}]"))
            found.append(Observation("sensor_out_of_range", report.site, report.station,
                                     f"{stats.sensor}/{stats.variable}", below or above, stats.mean, threshold,
                                     message))
    return found


def flag2_share(ctx: RuleContext) -> list[Observation]:
    rule = ctx.config.flag2_share
    found = []
    for report in ctx.reports:
        try:
            records = ctx.store.query_fluxes(report.station, ctx.now - timedelta(seconds=rule.window_s), ctx.now,
                                             limit=MAX_FLUX_RECORDS)
        except QueryTooLarge:
            continue
        records = [r for r in records if r.site == report.site]
        for flag in rule.flags:
            flags = [r.values[flag] for r in records if r.values.get(flag) is not None]
            if not flags:
                continue
            share = sum(1 for f in flags if f == 2) / len(flags)
            enough = len(flags) >= rule.min_periods
            firing = enough and share > rule.max_share
            message = (f"{share:.0%} of {len(flags)} periods in {rule.window_s / 3600:g} h have {flag} = 2"
                       + ("" if enough else f" (fewer than {rule.min_periods} periods: not judged)"))
            found.append(Observation("flag2_share", report.site, report.station, flag, firing, round(share, 6),
                                     rule.max_share, message))
    return found


def signal_strength_low(ctx: RuleContext) -> list[Observation]:
    rule = ctx.config.signal_strength_low
    found = []
    for report in ctx.reports:
        names = [v for v in _variables(report) if base_name(v) in rule.variables]
        for stats in ctx.store.reading_stats(report.station, names, ctx.now - timedelta(seconds=rule.window_s),
                                             ctx.now):
            if stats.site != report.site:
                continue
            percent = stats.mean * 100.0 if stats.unit in ("1", "") else stats.mean  # IRGASON reports 0..1
            firing = percent < rule.min_percent
            message = (f"mean signal strength {percent:.1f} % over {rule.window_s / 60:g} min"
                       + (f", below {rule.min_percent:g} %: clean the analyzer's windows" if firing else ""))
            found.append(Observation("signal_strength_low", report.site, report.station,
                                     f"{stats.sensor}/{stats.variable}", firing, round(percent, 6),
                                     rule.min_percent, message))
    return found


def disk_nearly_full(ctx: RuleContext) -> list[Observation]:
    rule = ctx.config.disk_nearly_full
    found = []
    for report in ctx.reports:
        free, total = report.disk_free_bytes, report.disk_total_bytes
        if free is None or not total:
            continue
        fraction = free / total
        firing = fraction < rule.min_free_fraction or free < rule.min_free_bytes
        message = f"{free / 1e9:.2f} GB free of {total / 1e9:.2f} GB ({fraction:.1%})" + (
            f": below {rule.min_free_fraction:.0%} or {rule.min_free_bytes / 1e9:g} GB" if firing else "")
        found.append(Observation("disk_nearly_full", report.site, report.station, STATION_SUBJECT, firing,
                                 round(fraction, 6), rule.min_free_fraction, message))
    return found


def buffer_unwritable(ctx: RuleContext) -> list[Observation]:
    """The station's disk buffer refused writes: now (readings held in memory) or within `window_s` (its count of
    failed writes rose between reports; a count that falls is a restarted daemon, whose count starts again). The
    reports of a station whose disk refuses queue in memory with the readings and arrive when it writes again, so
    mostly this fires afterwards, from the reports taken during the fault, and clears `window_s` later."""
    rule = ctx.config.buffer_unwritable
    found = []
    for report in ctx.reports:
        history = _history(ctx, report, rule.window_s)
        if not history or history[-1].time != report.time:
            history = [*history, report]
        failed = sum(b.buffer_write_errors - a.buffer_write_errors if b.buffer_write_errors >= a.buffer_write_errors
                     else b.buffer_write_errors for a, b in pairwise(history))
        held = report.readings_held_in_memory
        firing = held > 0 or failed > 0
        fix = ("check the station's free space and whether its file system went read-only (kernel log; an SD card "
               "at the end of its life)")
        if held > 0:
            message = (f"the station's disk buffer refuses writes: {held} readings held in memory (lost if the "
                       f"daemon stops), {report.buffer_write_errors} failed writes since it started; {fix}")
        elif failed > 0:
            message = (f"the station's disk buffer refused {failed} writes in the last {rule.window_s:.0f} s (its "
                       f"readings were held in memory and saved when it wrote again); {fix}")
        else:
            message = f"the disk buffer writes ({report.buffer_write_errors} failed writes since the daemon started)"
        found.append(Observation("buffer_unwritable", report.site, report.station, STATION_SUBJECT, firing,
                                 held if held > 0 else failed, 0, message))
    return found


RULES: dict[RuleName, Callable[[RuleContext], list[Observation]]] = {
    "station_silent": station_silent, "buffer_growing": buffer_growing, "clock_unsynchronised": clock_unsynchronised,
    "sensor_stuck": sensor_stuck, "sensor_out_of_range": sensor_out_of_range, "flag2_share": flag2_share,
    "signal_strength_low": signal_strength_low, "disk_nearly_full": disk_nearly_full,
    "buffer_unwritable": buffer_unwritable,
}


# --- state ------------------------------------------------------------------------------------------------------------


class AlertEvaluator:
    """Evaluates the rules and keeps every alert's state (module doc). Thread-safe for readers."""

    def __init__(self, store: Store, config: AlertsConfig, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.rounds = 0
        self.last_round: datetime | None = None
        self.fired: Counter[str] = Counter()
        self.cleared: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self._alerts: dict[tuple[str, str, str, str], Alert] = {}
        self._unwritten: list[AlertEvent] = []
        self._restored = False
        self._logged_errors: dict[str, str] = {}
        self._lock = threading.Lock()

    def restore(self) -> None:
        """Every alert's state and since from the store's newest events (once; retried while the store is away)."""
        if self._restored:
            return
        events = self.store.latest_alert_events()
        with self._lock:
            for event in events:
                self._alerts.setdefault(event.key, Alert(
                    rule=event.rule, site=event.site, station=event.station, subject=event.subject, state=event.state,
                    since=event.time, value=event.value, threshold=event.threshold, message=event.message,
                    evaluated=None))
        self._restored = True

    def evaluate(self) -> list[AlertEvent]:
        """One round over every enabled rule; returns the state changes it made."""
        now = self.clock()
        try:
            self.restore()
            reports = self.store.latest_health()
        except StoreError as exc:
            self._error("store", f"cannot read the stations' health reports: {exc}")
            return []
        self._logged_errors.pop("store", None)
        context = RuleContext(self.store, self.config, now, reports)
        changes: list[AlertEvent] = []
        for name in RULE_NAMES:
            if not self.config.enabled or not self.config.rule(name).enabled:
                continue
            try:
                observations = RULES[name](context)
            except (StoreUnavailable, StoreError) as exc:
                self._error(name, f"store: {exc}")
                continue
            except Exception as exc:  # a bug in one rule must not stop the others
                message = f"rule {name} failed: unexpected {type(exc).__name__}: {exc}"
                if self._logged_errors.get(name) != message:
                    log.exception("alerts: %s", message)  # the traceback once per distinct failure
                    self._logged_errors[name] = message
                with self._lock:
                    self.errors[name] += 1
                continue
            if name in self._logged_errors:
                log.info("alert rule %s evaluates again", name)
                del self._logged_errors[name]
            changes += self._apply(observations, now)
        self._write(changes)
        with self._lock:
            self.rounds += 1
            self.last_round = now
        return changes

    def _apply(self, observations: list[Observation], now: datetime) -> list[AlertEvent]:
        changes = []
        with self._lock:
            for seen in observations:
                state: AlertState = "firing" if seen.firing else "ok"
                old = self._alerts.get(seen.key)
                changed = (old.state != state) if old is not None else seen.firing
                since = now if changed or old is None else old.since
                self._alerts[seen.key] = Alert(rule=seen.rule, site=seen.site, station=seen.station,
                                               subject=seen.subject, state=state, since=since, value=seen.value,
                                               threshold=seen.threshold, message=seen.message, evaluated=now)
                if not changed:
                    continue
                (self.fired if seen.firing else self.cleared)[seen.rule] += 1
                changes.append(AlertEvent(rule=seen.rule, site=seen.site, station=seen.station, subject=seen.subject,
                                          state=state, time=now, value=seen.value, threshold=seen.threshold,
                                          message=seen.message))
        for event in changes:
            where = f"{event.site}/{event.station}" + ("" if event.subject == STATION_SUBJECT else f" {event.subject}")
            if event.state == "firing":
                log.warning("alert %s FIRING for %s: %s", event.rule, where, event.message)
            else:
                log.info("alert %s cleared for %s: %s", event.rule, where, event.message)
        return changes

    def _write(self, changes: list[AlertEvent]) -> None:
        pending = self._unwritten + changes
        if not pending:
            return
        try:
            self.store.write_alert_events(pending)
        except StoreError as exc:
            self._unwritten = pending
            self._error("write", f"cannot store {len(pending)} alert state change(s): {exc}; kept for the next round")
            return
        self._unwritten = []
        self._logged_errors.pop("write", None)

    def _error(self, key: str, message: str) -> None:
        with self._lock:
            self.errors[key] += 1
        if self._logged_errors.get(key) != message:
            log.warning("alerts: %s", message)
            self._logged_errors[key] = message

    # --- readers (API, status page) ---------------------------------------------------------------------------------

    def alerts(self, *, state: AlertState | None = None, station: str | None = None, site: str | None = None,
               rule: str | None = None) -> list[Alert]:
        with self._lock:
            found = list(self._alerts.values())
        found = [a for a in found if (state is None or a.state == state) and (station is None or a.station == station)
                 and (site is None or a.site == site) and (rule is None or a.rule == rule)]
        return sorted(found, key=lambda a: (a.state != "firing", a.site, a.station, a.rule, a.subject))

    def counters(self) -> dict[str, object]:
        with self._lock:
            firing = Counter(a.rule for a in self._alerts.values() if a.state == "firing")
            return {"rounds": self.rounds, "last_round": format_time(self.last_round) if self.last_round else None,
                    "firing": dict(firing), "fired": dict(self.fired), "cleared": dict(self.cleared),
                    "errors": dict(self.errors), "unwritten_changes": len(self._unwritten)}


class AlertScheduler(PeriodicJob):
    """Runs `AlertEvaluator.evaluate` every `alerts.every_s` (first at start) in the thread `alerts`."""

    def __init__(self, evaluator: AlertEvaluator) -> None:
        super().__init__("alerts", evaluator.config.every_s)
        self.evaluator = evaluator

    def run_round(self) -> None:
        self.evaluator.evaluate()

    def counters(self) -> dict[str, object]:
        return self.evaluator.counters()


__all__ = ["Alert", "AlertEvaluator", "AlertScheduler", "Observation", "RuleContext"]
