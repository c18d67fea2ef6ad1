"""The foreground loop every `sinkwatch simulate` device shares: serve until Ctrl-C, then say what was served."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable


def serve_until_stopped(stopped_line: Callable[[], str], each_second: Callable[[], None] | None = None) -> None:
    """Block until Ctrl-C (or SIGTERM, which `sinkwatch simulate` turns into the same), calling `each_second()`
    once a second, then print `stopped_line()`. "Ctrl-C to stop" is printed inside the guarded block: a caller that
    stops the simulator as soon as it has read that line still gets the closing line, not a traceback.

    Ctrl-C works also when the process was started with SIGINT ignored (a background job of a non-interactive shell,
    or a test run started as one, passes that on, and Python then installs no handler of its own): a simulator
    started through its module's `main` rather than `sinkwatch simulate` ignored Ctrl-C for good."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        print("Ctrl-C to stop", flush=True)
        while True:
            time.sleep(1)
            if each_second is not None:
                each_second()
    except KeyboardInterrupt:
        print(stopped_line(), flush=True)
