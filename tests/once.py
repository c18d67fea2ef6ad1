"""What several test modules compute alike, computed once per pytest run and handed to each of them.

The science stack's simulated station-years take seconds to tens of seconds to simulate, store and run through the
central jobs; modules that need the same one (same seed, same settings) take a copy of what the first of them made
instead of making it again. pytest-xdist's recipe for a session fixture shared by the workers: the first worker to
ask makes it under a lock in the run's own temporary root (`tmp_path_factory.getbasetemp().parent`, one per run,
shared by its workers), the others wait for the lock and read it. Nothing made here outlives the run or is committed:
the compute path runs in every pytest run, and the module that made it checks it as the others do.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest


def made_once(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]) -> Path:
    """The folder `name` that `make(folder)` filled, made by the first worker of this run to ask for it."""
    base = tmp_path_factory.getbasetemp()
    # under xdist each worker's basetemp is a folder of the run's root; without it basetemp is that run's own root
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = root / f"once-{name}"
    with (root / f"once-{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also when `make` raised
        if not (folder / ".complete").exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a failed attempt left
            folder.mkdir()
            make(folder)
            (folder / ".complete").touch()
    return folder
