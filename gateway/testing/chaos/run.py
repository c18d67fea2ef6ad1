"""A chaos run: faults injected one after another into the running chain, the drain after each measured from the
store, and the exact reconciliation at the end (docs/reliability.md).

Fault kinds; a fault ends when the harness has undone it, and its drain is measured from there:

- station-kill: SIGKILL `sinkwatch station run`, keep it down for the outage, start it again.
- station-kill-midwrite: attach strace to the running station, which SIGKILLs it on entry to its N-th pwrite64
  system call (N random in 1..`midwrite_writes`; SQLite writes the buffer's WAL frames and checkpoints with
  pwrite64, nothing else in the station does); start it again at once. Without strace: SIGKILL on the first inotify
  write event of the buffer after a random moment.
- station-disk-full: the station's file-size limit (RLIMIT_FSIZE, through prlimit) lowered to one byte for the
  outage: every write it makes past a file's first byte fails with EFBIG (Python ignores SIGXFSZ) — its buffer's
  commits and deletes, its status file, its log lines — as on a disk that is full or has gone read-only; then
  the limit it had is given back.
- broker-term: SIGTERM Mosquitto (a clean shutdown: it saves its state), start it again after the outage.
- broker-kill: SIGKILL Mosquitto (what it received since its last autosave is gone), start it again.
- broker-kill-queued: SIGKILL the central service, let the broker queue the station's items for it (PUBACKed, so the
  station holds them only until their receipt), SIGKILL the broker before its autosave, start both again: the queue
  is gone and only the station's resends (after `receipt_timeout_s`) can bring those items to the store.
- central-kill: SIGKILL `sinkwatch central serve`, start it again.
- broker-freeze: SIGSTOP Mosquitto for the outage, then SIGCONT: connections open but never answered (no RST), as
  a network partition or a stalled host looks until the clients' keep-alive runs out.
- central-disk-full: the same file-size limit for `sinkwatch central serve` (its ledger, write guard, chain marks,
  dead letters and logs; influxd, a process of its own, writes on).
- central-freeze: SIGSTOP `sinkwatch central serve` for the outage (its session hangs; the broker queues for it and
  times its keep-alive out), then SIGCONT.
- station-freeze: SIGSTOP `sinkwatch station run` for the outage (no poll, no publish; its monotonic clocks jump by
  the outage when it wakes), then SIGCONT.
- influx-freeze: SIGSTOP influxd for the outage (connections accepted, never answered), then SIGCONT.
- influx-kill: SIGKILL influxd, start it again (it replays its WAL).
- serial-pull: stop socat: both PTYs and their links vanish under the station and the probes; start it again.
"""

from __future__ import annotations

import math
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx

from gateway.rawarchive.archive import FLUSH_AFTER_S as ARCHIVE_FLUSH_AFTER_S
from gateway.rawarchive.archive import FLUSH_EVERY as ARCHIVE_FLUSH_RECORDS
from gateway.testing.chaos.archiveledger import DiskRefusal, archive_frontier, kill_window, reconcile_archive
from gateway.testing.chaos.fluxledger import expected_ends, reconcile_fluxes
from gateway.testing.chaos.ledger import Faults, InfluxReader, Ledger, LinePull, Reconciliation, StationKill, reconcile
from gateway.testing.chaos.site import STREAM_SENSOR, ChaosSite, SiteSettings
from gateway.testing.chaos.streamledger import StreamLedger
from gateway.testing.chaos.wal import WalState, WriteWatch
from gateway.testing.counting_stream import read_served_records

FAULT_KINDS = ("station-kill", "station-freeze", "station-disk-full", "broker-term", "broker-kill",
               "broker-kill-queued", "broker-freeze", "central-kill", "central-freeze", "central-disk-full",
               "influx-freeze", "influx-kill", "serial-pull")
MIDWRITE = "station-kill-midwrite"


class Freezable(Protocol):
    def freeze(self) -> None: ...

    def thaw(self) -> None: ...


@dataclass(frozen=True)
class ChaosPlan:
    rounds: int = 5  # each round injects every kind of `kinds` once, in a shuffled order
    kinds: tuple[str, ...] = FAULT_KINDS
    midwrite_kills: int = 100  # spread between the other faults
    seed: int = 0
    outage_s: tuple[float, float] = (2.0, 6.0)  # how long a process stays down, frozen or the line unplugged
    settle_s: tuple[float, float] = (0.5, 3.0)  # normal running between a drain and the next fault
    midwrite_writes: int = 40  # the kill lands on one of the station's next this many buffer writes
    drain_timeout_s: float = 300.0
    midwrite_by: str | None = None  # "strace" or "inotify"; None: strace when it is installed
    site: SiteSettings = field(default_factory=SiteSettings)


@dataclass
class FaultRecord:
    kind: str
    started_wall: float
    duration_s: float  # from injecting the fault to having undone it
    drain_s: float | None  # from undoing it until every committed poll served by then was stored; None: timed out
    resume_s: float | None = None  # from undoing it until a poll served after that was stored
    detail: str = ""


@dataclass
class ChaosReport:
    plan: ChaosPlan
    faults: list[FaultRecord]
    reconciliation: Reconciliation
    midwrite_method: str
    midwrite_torn: int  # mid-write kills that left an uncommitted transaction in the WAL
    station_exit_code: int | None  # of the graceful stop at the end
    duration_s: float

    def by_kind(self) -> dict[str, list[FaultRecord]]:
        kinds: dict[str, list[FaultRecord]] = {}
        for record in self.faults:
            kinds.setdefault(record.kind, []).append(record)
        return kinds

    def render(self) -> str:
        r = self.reconciliation
        lines = [f"chaos run: {len(self.faults)} faults in {self.duration_s / 60:.1f} min (seed {self.plan.seed})",
                 "",
                 f"{'fault':<24}{'n':>4}{'fault s':>9}{'drain s median':>16}{'drain s max':>13}"
                 f"{'fresh s median':>16}{'fresh s max':>13}{'not drained':>13}"]
        for kind, records in self.by_kind().items():
            drains = [rec.drain_s for rec in records if rec.drain_s is not None]
            fresh = [rec.resume_s for rec in records if rec.resume_s is not None]
            lines.append(f"{kind:<24}{len(records):>4}{statistics.median(rec.duration_s for rec in records):>9.2f}"
                         f"{_median(drains):>16.2f}{_max(drains):>13.2f}{_median(fresh):>16.2f}{_max(fresh):>13.2f}"
                         f"{len(records) - len(drains):>13}")
        midwrite = len(self.by_kind().get(MIDWRITE, []))
        lines += ["",
                  f"mid-write kills: {midwrite} ({self.midwrite_method}); {self.midwrite_torn} left an uncommitted "
                  "transaction in the buffer's WAL",
                  f"polls served: {r.served_polls} ({2 * r.served_polls} readings); in flight, not stored: "
                  f"{r.in_flight_at_kill} read by a station then killed before committing them (oldest served "
                  f"{r.oldest_in_flight_before_kill_s:.3f} s before the kill), {r.served_to_dead_station} answered "
                  f"to a station already killed, {r.in_flight_at_pull} on a line being pulled",
                  f"readings committed: {r.committed_readings}  stored: {r.stored_readings}  lost: {r.lost}  "
                  f"duplicated: {r.duplicated}  altered: {r.altered}  -> "
                  f"{'EXACT' if r.readings_exact else 'MISMATCH'}",
                  f"station's graceful stop at the end: exit code {self.station_exit_code}"]
        s = r.stream
        if s is not None:
            lines += [f"stream records served: {s.served_records} ({self.plan.site.stream_hz:g} Hz, summaries every "
                      f"{self.plan.site.summary_interval_s:g} s); in flight, not stored: {s.in_flight_at_kill} in "
                      f"intervals {s.kills_that_cut_an_interval} station kills cut short, {s.served_to_dead_station} "
                      "sent to a station already killed",
                      f"stream summaries committed: {s.committed_summaries}  stored: {s.summaries_stored}  "
                      f"records committed: {s.committed_records}  counted by stored summaries: {s.records_counted}  "
                      f"lost: {s.lost_records} records ({s.lost_summaries} summaries)  duplicated: {s.duplicated}  "
                      f"altered: {s.altered}  -> {'EXACT' if s.exact else 'MISMATCH'}; a counted record's served "
                      f"time at most {s.largest_offset_s:.2f} s outside its interval; {s.counted_after_faults} "
                      f"records served after the last fault counted "
                      f"({'the stream came back' if s.counted_after_faults else 'THE STREAM DID NOT COME BACK'})"]
            lines += [f"  {example}" for example in s.examples]
        a = r.archive
        if a is not None:
            lines += [f"raw archive: {a.files} files ({a.files_closed} closed, {a.files_cut} left open by a killed or "
                      f"refused writer, {a.files_torn} of them ending in a torn block, {a.files_unreadable} refused "
                      f"by the reader); {a.archived_records} records archived; in flight, not archived: "
                      f"{a.in_flight_at_kill} unflushed at {a.kills_that_lost_records} station kills (at most "
                      f"{a.most_lost_at_one_kill} at one), {a.served_to_dead_station} sent to a station already "
                      f"killed, {a.refused_by_disk} refused by a full disk (the station counted "
                      f"{a.counted_unarchived})",
                      f"raw records committed: {a.committed_records}  lost: {a.lost}  duplicated: {a.duplicated}  "
                      f"altered: {a.altered}  out of order: {a.out_of_order}  -> "
                      f"{'EXACT' if a.exact else 'MISMATCH'}; largest stamp offset {a.largest_time_offset_s:.2f} s; "
                      f"{a.archived_after_faults} records served after the last fault archived"]
            lines += [f"  {example}" for example in a.examples]
        f = r.flux
        if f is not None:
            statuses = ", ".join(f"{n} {status}" for status, n in sorted(f.statuses.items())) or "none"
            lines += [f"flux records ({f.period_s:g}-s periods): expected {f.expected}  stored {f.stored} "
                      f"({statuses})  not computed, no raw data: {f.no_raw_data}  missing: {f.missing}  "
                      f"duplicated: {f.duplicated}  -> "
                      f"{'EXACT' if f.exact else 'MISMATCH'}; "
                      f"{f.outside} records outside the expected periods; raw data complete for {f.complete} "
                      f"periods, {f.complete_not_ok} of them not ok"]
            lines += [f"  {example}" for example in f.examples]
        lines += [f"  {example}" for example in r.examples]
        return "\n".join(lines)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def _max(values: list[float]) -> float:
    return max(values) if values else math.nan


def _seconds(value: float | None) -> str:
    return f"{value:.2f} s" if value is not None else "NOT REACHED"


def _schedule(plan: ChaosPlan, rng: random.Random) -> list[str]:
    regular: list[str] = []
    for _ in range(plan.rounds):
        kinds = list(plan.kinds)
        rng.shuffle(kinds)
        regular += kinds
    slots = len(regular) + 1
    # the mid-write kills spread evenly over the gaps before, between and after the other faults
    midwrite_per_slot = [plan.midwrite_kills // slots + (1 if i < plan.midwrite_kills % slots else 0)
                         for i in range(slots)]
    schedule: list[str] = []
    for i in range(slots):
        schedule += [MIDWRITE] * midwrite_per_slot[i]
        if i < len(regular):
            schedule.append(regular[i])
    return schedule


class ChaosRun:
    def __init__(self, folder: Path, plan: ChaosPlan, progress: Callable[[str], None] = print) -> None:
        self.folder = folder
        self.plan = plan
        self.progress = progress
        self.rng = random.Random(plan.seed)
        self.site = ChaosSite(folder, plan.site)
        self.faults = Faults()
        self.records: list[FaultRecord] = []
        self.midwrite_torn = 0
        self.midwrite_method = plan.midwrite_by or ("strace" if shutil.which("strace") else "inotify")
        self.midwrite_by: Counter[str] = Counter()
        self.refusals: list[DiskRefusal] = []  # station-disk-full faults: the stream's archive refused
        self._kills = 0

    def run(self) -> ChaosReport:
        began = time.monotonic()
        self.site.start()
        try:
            assert self.site.influx is not None
            reader = InfluxReader(self.site.influx.url)
            ledger = Ledger(self.site.served_log, reader, self.faults)
            self._warm_up(ledger)
            schedule = _schedule(self.plan, self.rng)
            for index, kind in enumerate(schedule, 1):
                record = self._inject(kind)
                record.drain_s, record.resume_s = ledger.wait_recovered(self._fault_end, self.plan.drain_timeout_s)
                self.records.append(record)
                self.progress(f"[{index}/{len(schedule)}] {kind}: {record.duration_s:.2f} s, drained in "
                              f"{_seconds(record.drain_s)}, fresh readings stored after {_seconds(record.resume_s)}"
                              f"{' (' + record.detail + ')' if record.detail else ''}")
                time.sleep(self.rng.uniform(*self.plan.settle_s))
            # the end: the probes and the stream stop, everything served must reach the store, then a graceful stop
            self.site.sensor.terminate()
            self.site.stream.terminate()
            ended = time.monotonic()
            # the instrument's last record: a period after it is not one the station could complete
            stream_stop_wall = max((r.wall for r in read_served_records(self.site.stream_log)[0]), default=0.0)
            final_drain, _ = ledger.wait_recovered(ended, self.plan.drain_timeout_s, fresh_too=False)
            self.progress(f"final drain after the probes stopped: "
                          f"{_seconds(final_drain)}")
            stream = self.plan.site.stream_hz > 0
            if stream:
                self.progress(f"final drain of the stream's summaries: "
                              f"{_seconds(self._stream_drain(reader, ended))}")
            if stream and self.plan.site.flux_period_s:
                self.progress(f"final drain of the flux records: "
                              f"{_seconds(self._flux_drain(reader, ended, stream_stop_wall))}")
            exit_code = self.site.station.terminate()
            self.site.central.terminate()
            result = reconcile(self.site.served_log, reader, self.faults,
                               stream_log=self.site.stream_log if stream else None,
                               summary_interval_s=self.plan.site.summary_interval_s,
                               faults_over=self._fault_end if self.records else None)
            if stream:
                result.archive = reconcile_archive(
                    self.site.stream_log, self.site.archive_dir, STREAM_SENSOR, self.faults,
                    kill_window_s=self.kill_window_s, refusals=self.refusals,
                    faults_over=self._fault_end if self.records else None)
            if stream and self.plan.site.flux_period_s:
                result.flux = reconcile_fluxes(reader.fluxes(), self.plan.site.flux_period_s, self.site.started_wall,
                                               stream_stop_wall, self.site.stream_log, self.site.archive_dir,
                                               STREAM_SENSOR)
            reader.close()
        finally:
            self.site.close()
        methods = ", ".join(f"{count} by {method}" for method, count in self.midwrite_by.items()) or "none"
        return ChaosReport(self.plan, self.records, result, methods, self.midwrite_torn, exit_code,
                           time.monotonic() - began)

    @property
    def kill_window_s(self) -> float:
        """Seconds of stream records a killed station may hold that its archive files do not (archiveledger)."""
        return kill_window(ARCHIVE_FLUSH_RECORDS, ARCHIVE_FLUSH_AFTER_S, self.plan.site.stream_hz)

    def _flux_drain(self, reader: InfluxReader, ended: float, stream_stop_wall: float) -> float | None:
        """Seconds from `ended` until every expected period has a stored flux record; None: timeout."""
        ends = {round(end) for end in expected_ends(self.plan.site.flux_period_s, self.site.started_wall,
                                                    stream_stop_wall)}
        deadline = time.monotonic() + self.plan.drain_timeout_s
        while time.monotonic() < deadline:
            try:
                if ends <= {round(int(row["time"]) / 1e9) for row in reader.fluxes()}:
                    return time.monotonic() - ended
            except (httpx.HTTPError, RuntimeError):
                pass
            time.sleep(0.5)
        return None

    def _stream_drain(self, reader: InfluxReader, ended: float) -> float | None:
        """Seconds from `ended` until a stored summary counts every committed record the stream served (the
        station closes the interval open when the instrument stopped half a second after its end); None: timeout."""
        stream = StreamLedger(self.site.stream_log, self.faults, self.plan.site.summary_interval_s)
        deadline = time.monotonic() + self.plan.drain_timeout_s
        while time.monotonic() < deadline:
            try:
                if stream.waiting(reader.stream_readings()) == 0:
                    return time.monotonic() - ended
            except (httpx.HTTPError, RuntimeError):
                pass
            time.sleep(0.5)
        return None

    def _warm_up(self, ledger: Ledger) -> None:
        """Return once the store holds the probes' first ten polls. Not "everything served until now": that waits
        for a moment with no poll on its way, which never comes where delivery takes longer than the probes'
        polling interval (a CI run on three workers failed so, with every poll but the last few stored)."""
        deadline = time.monotonic() + 120
        tenth: float | None = None
        while time.monotonic() < deadline:
            self.site.check_running()
            ledger.read_served()
            if tenth is None and len(ledger.served) >= 10:
                tenth = sorted(poll.monotonic for poll in ledger.served.values())[9]
            if tenth is not None and ledger.drained(tenth):
                return
            time.sleep(0.25)
        raise RuntimeError(f"the chain did not store its first readings within 120 s; see the logs in {self.folder}")

    # --- faults --------------------------------------------------------------------------------------------------

    _fault_end = 0.0

    def _inject(self, kind: str) -> FaultRecord:
        started_wall = time.time()
        started = time.monotonic()
        detail = getattr(self, "_" + kind.replace("-", "_"))()
        self._fault_end = time.monotonic()
        return FaultRecord(kind, started_wall, self._fault_end - started, None, detail=detail or "")

    def _outage(self) -> None:
        time.sleep(self.rng.uniform(*self.plan.outage_s))

    def _killed_station(self) -> WalState:
        """The station is dead: note its commit frontier; returns what its WAL holds."""
        at = time.monotonic()
        self._kills += 1
        frontier, wal = self.site.buffer_frontier(self.folder / "kills" / f"{self._kills:03d}")
        archived = archive_frontier(self.site.archive_dir, STREAM_SENSOR) if self.plan.site.stream_hz else 0
        self.faults.kills.append(StationKill(at, frontier, archive_frontier=archived))
        return wal

    def _restart_station(self) -> None:
        self.faults.kills[-1].restarted = time.monotonic()
        self.site.station.start()

    @staticmethod
    def _describe(wal: WalState) -> str:
        return f"WAL {wal.committed_frames} committed + {wal.uncommitted_frames} uncommitted frames"

    def _station_kill(self) -> str:
        self.site.station.kill()
        wal = self._killed_station()
        self._outage()
        self._restart_station()
        return self._describe(wal)

    def _station_kill_midwrite(self) -> str:
        time.sleep(self.rng.uniform(0.2, 2.0))  # a random moment of normal running
        process = self.site.station.process
        assert process is not None
        how = self._kill_by_strace(process) if self.midwrite_method == "strace" else None
        if how is None:
            how = self._kill_on_write_event(process)
        self.midwrite_by[self.midwrite_method] += 1
        self.site.station.kill()  # reaps it
        code = process.returncode
        wal = self._killed_station()
        self.midwrite_torn += wal.torn
        self._restart_station()
        return f"{how}, exit {code}; {self._describe(wal)}"

    def _kill_by_strace(self, process: subprocess.Popen[bytes]) -> str | None:
        """strace SIGKILLs the station on entry to one of its next buffer writes; None (and inotify from now on)
        when strace cannot attach here (no ptrace permission)."""
        strace = shutil.which("strace")
        assert strace is not None
        writes = self.rng.randint(1, self.plan.midwrite_writes)
        tracer = subprocess.Popen([strace, "-f", "-qq", "-o", os.devnull, "-e", "trace=pwrite64", "-e",
                                   f"inject=pwrite64:signal=KILL:when={writes}", "-p", str(process.pid)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while process.poll() is None and tracer.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        if process.poll() is None:
            tracer.kill()
            _, err = tracer.communicate(timeout=30)
            self.midwrite_method = "inotify"
            self.progress(f"strace could not kill the station ({err.decode(errors='replace').strip()[:200]}); "
                          "mid-write kills by inotify from now on")
            return None
        tracer.communicate(timeout=30)
        return f"SIGKILL on write {writes}"

    def _kill_on_write_event(self, process: subprocess.Popen[bytes]) -> str:
        watch = WriteWatch(self.site.buffer_path.parent)
        try:
            names = {self.site.buffer_path.name, f"{self.site.buffer_path.name}-wal"}
            hit = watch.wait_write(names, 60)
            process.send_signal(signal.SIGKILL)
        finally:
            watch.close()
        return "SIGKILL on a write event" if hit else "SIGKILL (no write seen in 60 s)"

    def _broker_term(self) -> str:
        assert self.site.broker is not None
        self.site.broker.stop()
        self._outage()
        self.site.broker.start()
        return ""

    def _broker_kill(self) -> str:
        assert self.site.broker is not None
        self.site.broker.kill()
        self._outage()
        self.site.broker.start()
        return ""

    def _broker_kill_queued(self) -> str:
        assert self.site.broker is not None
        self.site.central.kill()
        self._outage()  # the station keeps publishing; the broker PUBACKs and queues for the central's session
        self.site.broker.kill()
        self.site.broker.start()
        self.site.central.start()
        return ""

    def _central_kill(self) -> str:
        self.site.central.kill()
        self._outage()
        self.site.central.start()
        return ""

    def _station_freeze(self) -> str:
        return self._frozen(self.site.station)

    def _frozen(self, process: Freezable) -> str:
        """SIGSTOP for the outage, then SIGCONT."""
        process.freeze()
        try:
            self._outage()
        finally:
            process.thaw()
        return ""

    def _station_disk_full(self) -> str:
        start = time.monotonic()
        try:
            return self._disk_full(self.site.station.process)
        finally:
            self.refusals.append(DiskRefusal(start, time.monotonic()))

    def _central_disk_full(self) -> str:
        return self._disk_full(self.site.central.process)

    def _disk_full(self, process: subprocess.Popen[bytes] | None) -> str:
        assert process is not None
        soft, hard = resource.prlimit(process.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (1, hard))
        try:
            self._outage()
        finally:
            if process.poll() is None:
                resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (soft, hard))
        return ""

    def _broker_freeze(self) -> str:
        assert self.site.broker is not None
        return self._frozen(self.site.broker)

    def _central_freeze(self) -> str:
        return self._frozen(self.site.central)

    def _influx_freeze(self) -> str:
        assert self.site.influx is not None
        return self._frozen(self.site.influx)

    def _influx_kill(self) -> str:
        assert self.site.influx is not None
        self.site.influx.kill()
        self._outage()
        self.site.influx.start()
        return ""

    def _serial_pull(self) -> str:
        start = time.monotonic()
        self.site.line.stop()
        self._outage()
        self.site.line.start()
        self.faults.pulls.append(LinePull(start, time.monotonic()))
        return ""


def run_chaos(folder: Path, plan: ChaosPlan, progress: Callable[[str], None] = print) -> ChaosReport:
    return ChaosRun(folder, plan, progress).run()
