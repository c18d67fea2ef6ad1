"""The optional parts of an install (the extras of pyproject.toml) and a clear message when a command needs one that
is missing.

A station installs `sinkwatch[station]`, the central host `sinkwatch[central]`, a trial machine `sinkwatch[demo]`,
whoever renders site reports `sinkwatch[report]`, a host that fans reprocessing out on Dask `sinkwatch[cluster]`;
the base install holds what every role needs. A command that needs an extra calls `require_extra` before importing
anything from it, so it fails with the `pip install` line to run instead of an ImportError traceback.
`tests/test_packaging.py` checks that these module lists match the extras in pyproject.toml.
"""

from __future__ import annotations

import importlib.util

# The top-level modules each extra brings (import names, not distribution names).
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "station": ("pymodbus",),
    "central": ("fastapi", "uvicorn", "httptools", "uvloop", "influxdb_client", "httpx", "orjson", "msgpack"),
    "cluster": ("dask", "distributed"),
    "demo": ("pymodbus", "fastapi", "uvicorn", "httptools", "uvloop", "influxdb_client", "httpx", "orjson", "msgpack",
             "iotcore", "matplotlib"),
    "report": ("matplotlib",),
}


class MissingExtra(RuntimeError):
    """A command needs modules of an extra that is not installed; the message names the command and the fix."""

    def __init__(self, extra: str, missing: list[str], purpose: str) -> None:
        super().__init__(
            f"{purpose} needs Python packages that are not installed here ({', '.join(missing)}); install the "
            f"{extra} extra: pip install 'sinkwatch[{extra}]'"
        )
        self.extra = extra
        self.missing = missing


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_modules(extra: str) -> list[str]:
    """The modules of `extra` that cannot be imported here."""
    return [module for module in EXTRA_MODULES[extra] if not _importable(module)]


def require_extra(extra: str, purpose: str) -> None:
    """Raise MissingExtra when any module of `extra` is missing; `purpose` names what needs it (a command)."""
    missing = missing_modules(extra)
    if missing:
        raise MissingExtra(extra, missing, purpose)
