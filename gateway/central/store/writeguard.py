"""Write-once without a query per batch: a per-station lock and high-water mark, shared by every process on this host
that writes readings to one InfluxDB.

InfluxDB cannot refuse to overwrite a point, so the store must know, before it writes a reading, whether the
database already holds one with that identity (`base`: write once). Asking the database for every batch halved the
central hop. The guard answers most of these questions without asking:

- **The mark** of a station is an upper bound of the latest reading time the database holds for it. A reading
  stamped after the mark is new without a query; one at or before it is looked up as before (out-of-order
  delivery, resends, backfills). The mark is learned once per station from the database (`last()` of its
  readings) and then raised by every writer **before** its write is sent, so a write that fails or a writer
  killed half-way leaves the mark too high (a needless lookup later), never too low. Every write of a station's
  readings sets its mark, raised or not, so its slot changes (its write count) whenever anyone writes the station:
  the InfluxDB store relies on that to know the readings at its station's mark instant (`InfluxStore._raise_marks`).
- **The lock** of a station is held from the decision to the end of the write, so two processes can never both
  decide that the same identity is new (a redelivered batch that reached another worker, a conflicting reading).
  Stations in different slots proceed in parallel; a batch group takes its stations' locks in slot order, so two
  groups can never wait for each other in a circle.

With `path` set the state is a file of fixed slots (32 bytes each: a 16-byte BLAKE2b fingerprint of the site and
station, the mark, a valid flag) locked with POSIX record locks (`fcntl`) on each slot's bytes: the kernel drops
the locks of a process that dies, also under kill -9. A process reads and writes the slots through a shared memory map
of the file, not a `pread`/`pwrite` each: a look-up is then no system call (each one let another of the ingest's
busy threads take the interpreter lock, and getting it back was a wait), only taking and releasing a slot's lock
are. The file holds no data of its own: it is emptied whenever a
process opens it while no other process has it open (a shared lock on the header says who does), so marks left by
a crashed host are never trusted. Two stations sharing a slot evict each other's mark (a query, never a wrong
answer). Without `path` the same rules hold inside one process (threads), which is the single-writer case.

**Learning marks ahead** (`unknown`, then `Marks.learned`): the ingest worker's thread learns the marks of a group's
stations met the first time while the store thread writes the group before, so that the store thread does not wait
for those queries. It must not hold the stations' locks across its query (a hold excludes the process's other
holds), so it notes each slot's state (`unknown`: no lock) and asks the database without a lock; the store thread
sets such a mark under the lock of its next write of the station, and only if the slot is exactly as it was noted.
Every write of a slot counts up a version in the slot's flags, so a mark learned or raised meanwhile by any writer,
or another station's mark taking the slot, makes the answer stale and it is dropped (the store thread asks as
before). A slot unchanged since before the query holds no mark of the station, so nobody can have written its
readings meanwhile (a writer raises the mark first): the answer is as good as one asked under the lock.

Assumption, stated where the data path is documented (docs/architecture.md): every process writing readings to the
database runs on this host, uses the same guard file and the same release (an older writer does not set the mark of
a write that does not raise it; docs/scaling.md, "Horizontal ingest"). Writers on several hosts must split the
stations between them (e.g. by site in their subscriptions), or they lose the guarantee.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import mmap
import os
import struct
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

#: The guard file's name in the central service's data_dir.
GUARD_FILE = "influx-write-guard"
#: The mark of a station the database holds no reading of.
NOTHING = -(1 << 63)

SLOT_BYTES = 32
SLOTS = 1 << 18  # 8 MiB of slots; 10,000 stations share a slot with another with a chance of ~4 %
HEADER_BYTES = 4096
_SLOT = struct.Struct("<16sqQ")  # fingerprint, mark (ns), flags (bit 0: valid; the rest: the slot's write count)
_VERSIONS = 1 << 62

Station = tuple[str, str]  # site, station


def fingerprint(site: str, station: str) -> bytes:
    return hashlib.blake2b(f"{site}\x00{station}".encode(), digest_size=16).digest()


def slot_of(key: bytes) -> int:
    return int.from_bytes(key[:8], "little") % SLOTS


class Marks:
    """The marks of the stations a `hold` covers; valid only inside it."""

    def __init__(self, guard: WriteGuard, stations: list[Station]) -> None:
        self._guard = guard
        self._stations = set(stations)

    def get(self, site: str, station: str) -> int | None:
        """The station's mark in ns (`NOTHING`: no reading stored), or None when unknown (ask the database)."""
        self._check((site, station))
        return self._guard._read(site, station)

    def set(self, site: str, station: str, mark: int) -> None:
        """Record `mark`; call it before writing anything stamped up to it."""
        self._check((site, station))
        self._guard._write(site, station, mark)

    def learned(self, site: str, station: str, seen: object, mark: int) -> bool:
        """Record `mark`, learned from the database after `WriteGuard.unknown` saw the slot as `seen`, if the slot is
        still exactly so (nothing written to it since); else leave the mark unknown. Whether it was recorded."""
        self._check((site, station))
        if self._guard._state((site, station)) != seen:
            return False
        self._guard._write(site, station, mark)
        return True

    def state(self, site: str, station: str) -> object:
        """The station's slot as it is (a value that changes with every write of the slot, by any writer): what a
        writer notes after its `set` to tell later that nobody has written the slot since."""
        self._check((site, station))
        return self._guard._state((site, station))

    def _check(self, key: Station) -> None:
        if key not in self._stations:
            raise KeyError(f"station {key} is not held")


class _GuardFile:
    """One open guard file per process: POSIX record locks belong to the process, and closing any descriptor of the
    file drops all of them, so every `WriteGuard` of one path in a process shares this descriptor."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.users = 0
        self.thread_lock = threading.Lock()  # record locks do not exclude threads of one process
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
            except OSError:
                # another writer has it open: its marks are live, keep them
                fcntl.lockf(fd, fcntl.LOCK_SH, 1, 0)
            else:
                # nobody has it open: whatever it holds may predate a crash; start empty
                os.ftruncate(fd, 0)
                os.ftruncate(fd, HEADER_BYTES + SLOTS * SLOT_BYTES)
                fcntl.lockf(fd, fcntl.LOCK_SH, 1, 0)  # converted in place: no gap another process could use
            # the slots, shared with every process that maps the file (the page cache is one); the map keeps a
            # descriptor of its own, closed only with the file (closing it would drop this process's record locks)
            self.map = mmap.mmap(fd, HEADER_BYTES + SLOTS * SLOT_BYTES)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd


_open_files: dict[Path, _GuardFile] = {}
_open_files_lock = threading.Lock()


class WriteGuard:
    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path).resolve() if path is not None else None
        self._memory: dict[Station, int] = {}
        self._versions: dict[Station, int] = {}  # without a file: each station's write count (`_state`)
        self._file: _GuardFile | None = None
        self._thread_lock = threading.Lock()
        if self.path is not None:
            with _open_files_lock:
                shared = _open_files.get(self.path)
                if shared is None:
                    shared = _open_files[self.path] = _GuardFile(self.path)
                shared.users += 1
            self._file = shared
            self._thread_lock = shared.thread_lock

    @property
    def _fd(self) -> int | None:
        return self._file.fd if self._file is not None else None

    def _slot(self, key: bytes) -> tuple[bytes, int, int]:
        """The slot of fingerprint `key` in the file: (fingerprint found there, mark, flags)."""
        assert self._file is not None
        found, mark, flags = _SLOT.unpack_from(self._file.map, self._offset(key))
        return found, mark, flags

    @contextlib.contextmanager
    def hold(self, stations: Iterable[Station]) -> Iterator[Marks]:
        """Lock `stations` (across processes with a file, across threads always) until the block ends."""
        wanted = sorted(set(stations))
        with self._thread_lock:
            fd = self._fd
            if fd is None:
                yield Marks(self, wanted)
                return
            offsets = sorted({HEADER_BYTES + slot_of(fingerprint(*key)) * SLOT_BYTES for key in wanted})
            locked: list[int] = []
            try:
                for offset in offsets:
                    fcntl.lockf(fd, fcntl.LOCK_EX, SLOT_BYTES, offset)
                    locked.append(offset)
                yield Marks(self, wanted)
            finally:
                for offset in reversed(locked):
                    fcntl.lockf(fd, fcntl.LOCK_UN, SLOT_BYTES, offset)

    def unknown(self, stations: Iterable[Station]) -> dict[Station, object]:
        """The stations without a mark, each with its slot's state as it is now (no lock taken): what
        `Marks.learned` checks the slot against."""
        found: dict[Station, object] = {}
        for key in stations:
            if key not in found and self._read(*key) is None:
                found[key] = self._state(key)
        return found

    def _state(self, key: Station) -> object:
        """What changes with every write of the station's slot (`unknown`, `Marks.learned`)."""
        if self._file is None:
            return self._versions.get(key, 0)
        offset = self._offset(fingerprint(*key))
        return bytes(self._file.map[offset:offset + SLOT_BYTES])

    def _read(self, site: str, station: str) -> int | None:
        fd = self._fd
        if fd is None:
            return self._memory.get((site, station))
        key = fingerprint(site, station)
        found, mark, flags = self._slot(key)
        return mark if flags & 1 and found == key else None

    def _write(self, site: str, station: str, mark: int) -> None:
        fd = self._fd
        if fd is None:
            self._memory[(site, station)] = mark
            self._versions[(site, station)] = self._versions.get((site, station), 0) + 1
            return
        assert self._file is not None
        key = fingerprint(site, station)
        offset = self._offset(key)
        _, _, flags = _SLOT.unpack_from(self._file.map, offset)
        _SLOT.pack_into(self._file.map, offset, key, mark, 1 | ((((flags >> 1) + 1) % _VERSIONS) << 1))

    @staticmethod
    def _offset(key: bytes) -> int:
        return HEADER_BYTES + slot_of(key) * SLOT_BYTES

    def close(self) -> None:
        shared, self._file = self._file, None
        if shared is None:
            return
        with _open_files_lock, shared.thread_lock:
            shared.users -= 1
            if shared.users == 0:
                del _open_files[shared.path]
                shared.map.close()
                os.close(shared.fd)  # drops this process's record locks, the header's shared lock with them
