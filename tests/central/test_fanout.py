"""Reprocessing fanned out on Dask distributed (gateway/central/fanout.py): `recompute` and `run_budgets` on a
LocalCluster (worker processes) store exactly what the same call stores when run in this process."""

from __future__ import annotations

import os
import subprocess
import sys
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
REPO = Path(__file__).resolve().parents[2]

HALF_HOURS = 6


# Dask starts its workers with one BLAS thread (OPENBLAS_NUM_THREADS=1 and the like); a multi-threaded BLAS sums in
# another order, so the last bits of a covariance can differ. The local run below is made in a process with the
# same setting: the same numeric environment, so any difference would be the code path's (production:
# OPENBLAS_NUM_THREADS=1 for the central service and every worker, docs/scaling.md).
SINGLE_THREADED = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
LOCAL_RUN = """
import sys
from datetime import timedelta
from pathlib import Path
from gateway.central import recompute as module
from gateway.central.rawstore import RawArchive
from gateway.central.store import SqliteStore
from gateway.flux.ec.settings import ProcessingSettings
from tests.flux.test_recompute import SITE_FACTS, T0
raw, db, half_hours = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
module.WRITE_EVERY = 2
store = SqliteStore(db)
summary = module.recompute(RawArchive(raw), store, "st1", T0, T0 + timedelta(minutes=30 * half_hours),
                           site_metadata=SITE_FACTS, settings=ProcessingSettings())
store.close()
print(repr((summary.periods, summary.ok, summary.partial, summary.failed, summary.stored, summary.settings_hash)))
"""


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
    local_db, dask_db = tmp_path / "local.sqlite", tmp_path / "dask.sqlite"
    ran = subprocess.run([sys.executable, "-c", LOCAL_RUN, str(raw_root), str(local_db), str(HALF_HOURS)],
                         cwd=REPO, env={**os.environ, **SINGLE_THREADED}, capture_output=True, text=True,
                         timeout=300, check=False)
    assert ran.returncode == 0, ran.stderr[-2000:]
    done: list[int] = []
    store = SqliteStore(dask_db)
    try:
        summary = recompute(RawArchive(raw_root), store, "st1", T0, end, site_metadata=SITE_FACTS,
                            settings=ProcessingSettings(), runner=cluster_runner, progress=done.append)
    finally:
        store.close()
    assert sum(done) == HALF_HOURS
    local_store, dask_store = SqliteStore(local_db), SqliteStore(dask_db)
    try:
        local = local_store.query_fluxes("st1", T0, end)
        distributed = dask_store.query_fluxes("st1", T0, end)
        assert len(local) == HALF_HOURS and all(r.status == "ok" for r in local)
        assert distributed == local  # every value of every record, to the last bit
        assert ran.stdout.strip() == repr((summary.periods, summary.ok, summary.partial, summary.failed,
                                           summary.stored, summary.settings_hash))
        assert dask_store.flux_inputs("st1", T0, end) == local_store.flux_inputs("st1", T0, end)
    finally:
        local_store.close()
        dask_store.close()


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
