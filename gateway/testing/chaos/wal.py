"""Watching a SQLite database being written, and reading what a killed writer left in its write-ahead log.

`WriteWatch` reports, through inotify, the moment a process writes to the database or its WAL, so the chaos
harness can kill the station while its buffer is being written. `inspect_wal` reads the WAL the killed process left
(SQLite file format, section 4 "The Write-Ahead Log": a 32-byte header with the salts and a checksum, then frames of
a 24-byte header and one page; a frame belongs to the log only while its salts match the header's and the running
checksum holds; a frame with a non-zero "database size" field ends a committed transaction). Frames after the last
commit frame are a transaction the writer had begun and not committed when it died: SQLite ignores them on
recovery, which is exactly the case the harness wants to prove harmless.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import struct
import time
from dataclasses import dataclass
from pathlib import Path

_WAL_MAGIC_LE, _WAL_MAGIC_BE = 0x377F0682, 0x377F0683
_WAL_HEADER = 32
_FRAME_HEADER = 24


@dataclass(frozen=True, slots=True)
class WalState:
    frames: int  # valid frames in the log (salts and checksum hold)
    committed_frames: int  # of them, up to and including the last commit frame
    uncommitted_frames: int  # valid frames after the last commit frame: a transaction cut by the kill

    @property
    def torn(self) -> bool:
        return self.uncommitted_frames > 0


def _checksum(data: bytes, s0: int, s1: int, big_endian: bool) -> tuple[int, int]:
    for x0, x1 in struct.iter_unpack(">II" if big_endian else "<II", data):
        s0 = (s0 + x0 + s1) & 0xFFFFFFFF
        s1 = (s1 + x1 + s0) & 0xFFFFFFFF
    return s0, s1


def inspect_wal(path: Path) -> WalState:
    """The valid frames of the WAL file at `path` (an absent or empty file has none)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return WalState(0, 0, 0)
    if len(data) < _WAL_HEADER:
        return WalState(0, 0, 0)
    magic, _version, page_size, _checkpoint, salt1, salt2, c1, c2 = struct.unpack(">8I", data[:_WAL_HEADER])
    if magic not in (_WAL_MAGIC_LE, _WAL_MAGIC_BE):
        return WalState(0, 0, 0)
    big_endian = magic == _WAL_MAGIC_BE
    s0, s1 = _checksum(data[:24], 0, 0, big_endian)
    if (s0, s1) != (c1, c2):
        return WalState(0, 0, 0)
    frames = committed = 0
    offset = _WAL_HEADER
    frame_size = _FRAME_HEADER + page_size
    while offset + frame_size <= len(data):
        _page, db_size, f_salt1, f_salt2, f_c1, f_c2 = struct.unpack(">6I", data[offset:offset + _FRAME_HEADER])
        if (f_salt1, f_salt2) != (salt1, salt2):
            break
        s0, s1 = _checksum(data[offset:offset + 8], s0, s1, big_endian)
        s0, s1 = _checksum(data[offset + _FRAME_HEADER:offset + frame_size], s0, s1, big_endian)
        if (s0, s1) != (f_c1, f_c2):
            break
        frames += 1
        if db_size:
            committed = frames
        offset += frame_size
    return WalState(frames, committed, frames - committed)


# --- inotify ------------------------------------------------------------------------------------------------------

_IN_MODIFY = 0x00000002
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_EVENT_HEADER = struct.Struct("iIII")


class WriteWatch:
    """inotify on a folder: `wait_write(names, timeout)` returns when one of the named files is written."""

    def __init__(self, folder: Path) -> None:
        libc_name = ctypes.util.find_library("c")
        if libc_name is None:
            raise OSError("the C library was not found: inotify is needed to catch the buffer being written")
        self._libc = ctypes.CDLL(libc_name, use_errno=True)
        fd = self._libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self._fd = int(fd)
        if self._libc.inotify_add_watch(self._fd, os.fsencode(folder), _IN_MODIFY) < 0:
            errno = ctypes.get_errno()
            os.close(self._fd)
            raise OSError(errno, f"inotify_add_watch on {folder} failed")

    def close(self) -> None:
        os.close(self._fd)

    def drain(self) -> None:
        """Forget the events so far."""
        while True:
            try:
                if not os.read(self._fd, 65536):
                    return
            except BlockingIOError:
                return

    def wait_write(self, names: set[str], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ready, _, _ = select.select([self._fd], [], [], left)
            if not ready:
                return False
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                continue
            offset = 0
            while offset + _EVENT_HEADER.size <= len(data):
                _wd, _mask, _cookie, length = _EVENT_HEADER.unpack_from(data, offset)
                raw = data[offset + _EVENT_HEADER.size:offset + _EVENT_HEADER.size + length]
                offset += _EVENT_HEADER.size + length
                if raw.rstrip(b"\0").decode(errors="replace") in names:
                    return True
