"""Engine versions of stored results: which run of a station-year a reader takes when an upgrade stored a second.

A settings hash (budget, soil, stems, flux records) covers the settings, not the engine: the same settings computed
again by a newer version of the engine keep their hash, so after an upgrade the store holds two runs of one hash
that only their engine version tells apart. Versions of one engine are compared as numbers (0.10 > 0.9).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar


def engine_order(engine_version: str) -> tuple[str, tuple[int, ...]] | None:
    """("sinkwatch-ec", (0, 4, 0)) of "sinkwatch-ec 0.4.0"; None when the text is no engine name and dotted number."""
    name, _, number = engine_version.rpartition(" ")
    parts = number.split(".")
    if not name or not all(p.isdigit() for p in parts):
        return None
    return name, tuple(int(p) for p in parts)


class _Run(Protocol):
    @property
    def site(self) -> str: ...
    @property
    def settings_hash(self) -> str: ...
    @property
    def engine_version(self) -> str: ...


RunT = TypeVar("RunT", bound=_Run)


def newest_engine_runs(runs: Iterable[RunT]) -> list[RunT]:
    """`runs` without those a newer version of the same engine superseded: of the runs of one site and settings
    hash made by versions of one engine (the settings hash leaves the engine out, so an upgrade stores its run beside
    the old one), only the newest version's is kept, in the order given. Runs whose engine text is no name and
    dotted number are all kept. Readers that pick one run (the API, the report) use this, so a year computed again
    after an upgrade is not two runs the settings hash cannot tell apart; `/sets` lists every stored run."""
    runs = list(runs)
    newest: dict[tuple[str, str, str], tuple[int, ...]] = {}
    for run in runs:
        order = engine_order(run.engine_version)
        if order is not None:
            key = (run.site, run.settings_hash, order[0])
            newest[key] = max(newest.get(key, order[1]), order[1])
    kept = []
    for run in runs:
        order = engine_order(run.engine_version)
        if order is None or newest[(run.site, run.settings_hash, order[0])] == order[1]:
            kept.append(run)
    return kept
