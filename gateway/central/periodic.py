"""The central service's periodic jobs (budget, soil, stems, hourly rollup, alert rules): one round at start, then
one every `interval_s` in a daemon thread of the job's own, sooner (after `retry_s`) when a round found the store
unavailable. A stop ends the thread between rounds; a round in progress checks `stopping()` where it can break off."""

from __future__ import annotations

import threading


class PeriodicJob:
    """Subclasses implement `run_round`; it returns True when the store was unavailable (try again after
    `retry_s`), anything else to wait the full `interval_s`."""

    def __init__(self, thread_name: str, interval_s: float, retry_s: float | None = None) -> None:
        self.thread_name = thread_name
        self.interval_s = interval_s
        self.retry_s = interval_s if retry_s is None else min(retry_s, interval_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_round(self) -> object:
        raise NotImplementedError

    def stopping(self) -> bool:
        return self._stop.is_set()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            store_unavailable = self.run_round() is True
            self._stop.wait(self.retry_s if store_unavailable else self.interval_s)
