"""Where reprocessing runs: in this process, or fanned out on a Dask distributed cluster, by the same code.

    runner = runner_for(None)                      # this process, one task after the other
    runner = runner_for("tcp://10.0.0.5:8786")     # a running Dask scheduler and its workers
    runner = DaskRunner(client)                    # a Client you made (tests: a LocalCluster's)
    for result in runner.run(compute_piece, pieces, **common):
        store.write_fluxes(result.records)

`run` calls `function(item, **common)` for every item and yields the results as they are ready: in order in this
process, in completion order on a cluster. The functions run there are pure computations (raw files or arrays in,
records or tables out); the caller reads the store before and writes it after, in its own process, so workers need
no store credentials. Raw files are read by the workers at the paths the caller found: the workers must see the
central service's data directory at the same path (the central host itself, or a shared file system).

Dask (the `cluster` extra) is imported only when a cluster is used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

from gateway.extras import require_extra

T = TypeVar("T")
R = TypeVar("R")


class Runner(Protocol):
    def run(self, function: Callable[..., R], items: Iterable[T], **common: Any) -> Iterator[R]: ...

    def close(self) -> None: ...


class LocalRunner:
    """Every task in this process, in order."""

    def run(self, function: Callable[..., R], items: Iterable[T], **common: Any) -> Iterator[R]:
        for item in items:
            yield function(item, **common)

    def close(self) -> None:
        pass


class DaskRunner:
    """Tasks on a Dask distributed cluster: the common arguments are sent once (scattered), each item as its own
    task; results come back as they complete. At most `window` tasks are out at a time, so a long run does not hold
    every result in the scheduler's memory."""

    def __init__(self, client: Any, *, owned: bool = False, window: int = 64) -> None:
        self.client = client
        self.owned = owned
        self.window = window

    @classmethod
    def connect(cls, address: str) -> DaskRunner:
        require_extra("cluster", "reprocessing on a Dask cluster")
        from distributed import Client

        return cls(Client(address), owned=True)

    def run(self, function: Callable[..., R], items: Iterable[T], **common: Any) -> Iterator[R]:
        from distributed import as_completed

        shared = {name: self.client.scatter(value, broadcast=True) for name, value in common.items()}
        pending = iter(items)
        futures = [self.client.submit(function, item, pure=False, **shared)
                   for _, item in zip(range(self.window), pending, strict=False)]
        if not futures:
            return
        completed = as_completed(futures)
        for future in completed:
            try:
                result = future.result()
            finally:
                future.release()
            nxt = next(pending, None)
            if nxt is not None:
                completed.add(self.client.submit(function, nxt, pure=False, **shared))
            yield result

    def close(self) -> None:
        if self.owned:
            self.client.close()


def runner_for(scheduler: str | None) -> Runner:
    """This process (None) or the Dask scheduler at `scheduler` (e.g. tcp://10.0.0.5:8786)."""
    if scheduler is None:
        return LocalRunner()
    return DaskRunner.connect(scheduler)
