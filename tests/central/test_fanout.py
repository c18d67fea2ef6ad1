"""Reprocessing fanned out on Dask distributed (gateway/central/fanout.py): `recompute` and `run_budgets` on a
LocalCluster (worker processes) store exactly what the same call stores when run in this process."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from gateway.central import recompute as recompute_module
from gateway.central.budget import run_budgets
from gateway.central.fanout import DaskRunner, LocalRunner, Runner
from gateway.central.rawstore import RawArchive
from gateway.central.recompute import recompute
from gateway.central.store import SqliteStore
from gateway.flux.ec.settings import ProcessingSettings

from ..flux.test_recompute import SITE_FACTS, T0, write_station_archive
from .budget_helpers import STATION, YEAR, after, fill_store, first_days, job, simulated_year

pytestmark = pytest.mark.slow

HALF_HOURS = 6


@pytest.fixture(scope="module")
def cluster_runner() -> Iterator[DaskRunner]:
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        yield DaskRunner(client)


@pytest.fixture(scope="module")
def raw_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fanout") / "raw"
    write_station_archive(root, half_hours=HALF_HOURS)
    return root


def test_recompute_on_a_local_cluster_stores_what_a_local_run_stores(
        raw_root: Path, tmp_path: Path, cluster_runner: DaskRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recompute_module, "WRITE_EVERY", 2)  # three tasks, so the workers share the run
    end = T0 + timedelta(minutes=30 * HALF_HOURS)
    runs: dict[str, SqliteStore] = {}
    summaries = {}
    runners: dict[str, Runner] = {"local": LocalRunner(), "dask": cluster_runner}
    for name, runner in runners.items():
        store = runs[name] = SqliteStore(tmp_path / f"{name}.sqlite")
        done: list[int] = []
        summaries[name] = recompute(RawArchive(raw_root), store, "st1", T0, end, site_metadata=SITE_FACTS,
                                    settings=ProcessingSettings(), runner=runner, progress=done.append)
        assert sum(done) == HALF_HOURS
    try:
        local = runs["local"].query_fluxes("st1", T0, end)
        distributed = runs["dask"].query_fluxes("st1", T0, end)
        assert len(local) == HALF_HOURS and all(r.status == "ok" for r in local)
        assert distributed == local  # every value of every record, to the last bit
        assert summaries["dask"] == summaries["local"]
        assert summaries["local"].stored == HALF_HOURS
    finally:
        for store in runs.values():
            store.close()


def test_budgets_on_a_local_cluster_store_what_a_local_run_stores(tmp_path: Path,
                                                                  cluster_runner: DaskRunner) -> None:
    year = first_days(simulated_year(), 40)
    runners: dict[str, Runner] = {"local": LocalRunner(), "dask": cluster_runner}
    tables = {}
    for name, runner in runners.items():
        store = SqliteStore(tmp_path / f"budget-{name}.sqlite")
        try:
            fill_store(store, year)
            outcomes = list(run_budgets(store, [(STATION, YEAR), ("nobody", YEAR)], job(ustar="auto"),
                                        runner=runner, now=after(year)))
            assert [(o.station, o.budget is not None) for o in outcomes] in (
                [(STATION, True), ("nobody", False)], [("nobody", False), (STATION, True)])
            assert "nobody" in str(next(o.error for o in outcomes if o.error is not None))
            (run,) = store.budget_runs(STATION, YEAR)
            # repr: a NaN scalar equals NaN there, and floats are compared to the last bit
            tables[name] = repr((run.settings_hash, sorted(run.scalars.items()), run.ustar_draws,
                                 [sorted(store.budget_table(run, r).values.items()) for r in ("HH", "DD", "YY")]))
        finally:
            store.close()
    assert tables["dask"] == tables["local"]
    assert "None" in tables["local"]  # the comparison did meet gaps
