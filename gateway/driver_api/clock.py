"""Is the station's system clock synchronised? Every driver stamps `clock_synced` on its readings from this."""

from __future__ import annotations

import ctypes
import ctypes.util
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
