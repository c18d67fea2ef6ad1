"""Is the station's system clock synchronised? Every driver stamps `clock_synced` on its readings from this."""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import functools
from typing import Any

# adjtimex(2) returns TIME_ERROR while the kernel's STA_UNSYNC bit is set, i.e. no NTP/PPS discipline.
_TIME_ERROR = 5
_TIMEX_BUFFER_BYTES = 512  # struct timex is 208 bytes on 64-bit Linux; oversize so layout changes cannot overflow


@functools.cache
def _adjtimex() -> Any:
    # Looked up once: find_library runs ldconfig in a subprocess, far too slow for every call.
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).adjtimex
    except (OSError, AttributeError):
        return None


def kernel_clock_synced() -> bool:
    """Whether the Linux kernel considers the system clock synchronised (adjtimex read-only query).

    Chosen over `timedatectl` (a subprocess per call, systemd only) because it is one unprivileged syscall and is
    what chrony/ntpd/systemd-timesyncd all update. Where adjtimex is unavailable (not Linux) or fails this returns
    False: a reading must never claim a synchronised clock that nobody checked.
    """
    adjtimex = _adjtimex()
    if adjtimex is None:
        return False
    buffer = ctypes.create_string_buffer(_TIMEX_BUFFER_BYTES)  # modes = 0: read only
    state = adjtimex(buffer)
    if state < 0:
        return False
    return bool(state != _TIME_ERROR)


class _Timex(ctypes.Structure):
    """struct timex of adjtimex(2) (linux/timex.h); ctypes lays out `long` as the platform does (4 bytes on 32-bit
    ARM, 8 on 64-bit), so one declaration serves both. The kernel's trailing padding is reserved space."""

    _fields_ = [
        ("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
        ("constant", ctypes.c_long), ("precision", ctypes.c_long), ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long), ("time_usec", ctypes.c_long), ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long), ("shift", ctypes.c_int), ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long), ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int), ("reserved", ctypes.c_int * 11),
    ]


_STA_NANO = 0x2000  # offset in nanoseconds instead of microseconds


@dataclasses.dataclass(frozen=True)
class KernelClock:
    """The kernel's view of its clock discipline (adjtimex read-only query)."""

    synced: bool
    offset_s: float | None  # the offset the kernel is still slewing away (+ = clock ahead); None if unknown
    max_error_s: float | None  # the kernel's maximum error estimate


def kernel_clock() -> KernelClock:
    """`kernel_clock_synced` with the offset and error estimate the NTP daemon hands the kernel. A daemon that
    slews by other means (chrony's default) leaves `offset` near zero: the figure is what the kernel knows."""
    adjtimex = _adjtimex()
    if adjtimex is None:
        return KernelClock(False, None, None)
    timex = _Timex()
    state = adjtimex(ctypes.byref(timex))
    if state < 0:
        return KernelClock(False, None, None)
    scale = 1e-9 if timex.status & _STA_NANO else 1e-6
    return KernelClock(synced=state != _TIME_ERROR, offset_s=timex.offset * scale, max_error_s=timex.maxerror * 1e-6)
