"""The hourly rollup's job in the central service (`storage.rollup: true`, InfluxDB): `InfluxStore.roll_up` every
`storage.rollup_every_s` seconds (first at start) in a thread of its own. What the job does and why a read through
the rollup stays exact: gateway/central/store/influx_rollup.py. The same round packs the flux records' closed days
(`pack_fluxes`, gateway/central/store/influx_fluxpack.py; its counters under `last.flux`). The job is safe to stop
or kill at any point (the next run does again what was left), so stopping only ends it between stations."""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from gateway.central.periodic import PeriodicJob
from gateway.central.store.base import StoreError
from gateway.central.store.influx_rollup import RollupReport

if TYPE_CHECKING:
    from gateway.central.store.influx import InfluxStore

log = logging.getLogger(__name__)


class RollupScheduler(PeriodicJob):
    def __init__(self, store: InfluxStore, every_s: float) -> None:
        super().__init__("rollup", every_s)
        self.store = store
        self.every_s = every_s
        self.rounds = 0
        self.failures = 0
        self.last: RollupReport | None = None
        self._last_error = ""
        self._lock = threading.Lock()

    def run_round(self) -> RollupReport | None:
        """One run over every station; a store failure is logged (once per distinct message) and counted, and the
        next round tries again (reads stay exact meanwhile: they use only what the job finished)."""
        try:
            report = self.store.roll_up(stop=self.stopping)
        except StoreError as exc:
            with self._lock:
                self.failures += 1
            message = str(exc)
            if message != self._last_error:
                log.warning("hourly rollup: %s; next try in %.0f s", message, self.every_s)
                self._last_error = message
            return None
        self._last_error = ""
        with self._lock:
            self.last = report
            self.rounds += 1
        log.debug("hourly rollup: %s", asdict(report))
        return report

    def counters(self) -> dict[str, Any]:
        """For /api/v1/health (`counters.rollup`): the schedule, its rounds and failures, and the last round's work."""
        with self._lock:
            return {"every_s": self.every_s, "rounds": self.rounds, "failures": self.failures,
                    "last": asdict(self.last) if self.last is not None else None}
