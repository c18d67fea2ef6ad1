"""The central copy of the stations' raw archive files (uplinked as `RawChunk` on `sinkwatch/v1/<s>/<st>/raw`).

Layout (one folder per station and sensor; the file names are the station's, docs/raw-archive.md)::

    <data_dir>/raw/<site>/<station>/<sensor>/<sensor>_<YYYYMMDDTHHMM>Z[_n].swr     (format 2; .csv.gz: format 1)

A file is written durably: to a temporary name in the same folder, fsync'd, renamed into place, and the folder
fsync'd, so after `store()` returns the file survives a power cut and a reader never sees half a file. Storing is
idempotent: the same name with the same bytes again (a redelivery) changes nothing. The same name with *other* bytes
(a station whose archive folder was wiped restarts within the same half hour) is kept beside the first as
`<stem>_c<sha256[:12]><suffix>`, so no data are lost; the recompute reader merges every file of a half hour.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from gateway.rawarchive.archive import archive_suffix

RAW_DIR = "raw"

#: `<sensor>_<YYYYMMDDTHHMM>Z` plus any suffix the station (`_1`) or this store (`_c<hash>`) added.
ARCHIVE_FILE_RE = re.compile(r"^(?P<sensor>.+?)_(?P<stamp>\d{8}T\d{4})Z(?P<suffix>_[A-Za-z0-9]+)?(\.swr|\.csv\.gz)$")

StoreOutcome = Literal["stored", "duplicate", "conflict"]


def file_half_hour(name: str) -> datetime | None:
    """The UTC start of the half hour an archive file name belongs to; None if the name is not an archive name."""
    match = ARCHIVE_FILE_RE.match(name)
    if match is None:
        return None
    return datetime.strptime(match["stamp"], "%Y%m%dT%H%M").replace(tzinfo=UTC)


class RawArchive:
    """The raw files of all stations under `root` (= `<data_dir>/raw`)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def folder(self, site: str, station: str, sensor: str) -> Path:
        return self.root / site / station / sensor

    def store(self, site: str, station: str, sensor: str, name: str, data: bytes) -> StoreOutcome:
        """Write one file durably (see the module doc); raises OSError when the disk refuses."""
        suffix = archive_suffix(name)
        if "/" in name or name.startswith(".") or suffix is None:
            raise ValueError(f"{name!r} is not an archive file name")
        folder = self.folder(site, station, sensor)
        digest = hashlib.sha256(data).hexdigest()
        beside = folder / f"{name.removesuffix(suffix)}_c{digest[:12]}{suffix}"
        temporary: Path | None = None
        try:
            # Placed with link(), which never replaces a file: two ingest workers may store the same name at once
            # (a resend reaching another worker), and what the first placed is then looked at like any held file.
            places: tuple[tuple[Path, StoreOutcome], ...] = ((folder / name, "stored"), (beside, "conflict"))
            for target, outcome in places:
                if not target.exists():
                    if temporary is None:
                        temporary = self._temporary(folder, name, data)
                    try:
                        os.link(temporary, target)
                    except FileExistsError:
                        pass  # placed by another writer this instant: compare with it below
                    else:
                        _fsync_dir(folder)
                        return outcome
                if _sha256(target) == digest:
                    return "duplicate"
            return "duplicate"  # the name and the name with this content's digest are both held: the same bytes
        finally:
            if temporary is not None:
                temporary.unlink(missing_ok=True)

    @staticmethod
    def _temporary(folder: Path, name: str, data: bytes) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
        with open(temporary, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        return temporary

    def sites_of(self, station: str) -> list[str]:
        """Sites under which `station` has raw files (normally one)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / station).is_dir())

    def sensors(self, site: str, station: str) -> list[str]:
        base = self.root / site / station
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []

    def files(self, site: str, station: str, sensor: str) -> dict[datetime, list[Path]]:
        """Closed archive files of one sensor by the half hour they belong to (each list sorted by name)."""
        out: dict[datetime, list[Path]] = {}
        folder = self.folder(site, station, sensor)
        if not folder.is_dir():
            return out
        for path in sorted(folder.iterdir()):
            start = file_half_hour(path.name)
            if start is not None and path.is_file():
                out.setdefault(start, []).append(path)
        return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
