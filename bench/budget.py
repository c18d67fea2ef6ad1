"""Time of the budget chain for one site-year, against hesseflux 5.0 and diive measured in the same run.

    ours:       gateway.flux.budget.pipeline.run_budget, --ustar auto: met MDS, u* moving-point test with 100
                bootstrap draws, NEE MDS + random uncertainty, 3 u* scenarios filled again, nighttime and daytime
                partitioning, daily/monthly/annual aggregates (in process, numpy on one thread)
    hesseflux:  hesseflux 5.0 madspikes -> ustarfilter (1 draw) -> gapfill -> nee2gpp reichstein -> nee2gpp lasslop,
                in its own virtualenv (numpy 1.23.5, pandas 1.5.3, the only versions it runs on)
    diive:      diive's moving-point u* test (100 draws; UstarMovingPointDetection from 0.91, UstarDetectionMPT in
                0.90, the newest the index serves here) and FluxMDS, in its own virtualenv

Data: the two vendored site-years (tests/data/budget/, FR-Hes 2016 and DE-Tha 1998). The peers' virtualenvs are
created on first use under ~/.cache/sinkwatch-bench/ (override with SINKWATCH_BENCH_CACHE) by pip from the package
index; --no-peers skips them. Every process is limited to one thread (OMP/OPENBLAS/MKL_NUM_THREADS=1).

Run:

    .venv/bin/python bench/budget.py [--repeat 3] [--years 10] [--peer-repeat 1] [--no-peers]
    .venv/bin/python bench/budget.py --central [--repeat 3]

Prints seconds per site-year (median and best of --repeat) per tool and step, the time of --years site-years in a
row, and the ratios. No assertion: the figures go to docs/performance.md with date and machine.

--central: the central service's budget job (gateway/central/budget.py, `run_station_budget` with u* auto) on the
simulated station-year of tests/central/budget_helpers.py in a SqliteStore (storing it is not timed): the whole job
and its parts in CPU seconds — the science (`run_budget`) against the rest (flux records read back, their digest,
the met sources' half-hour means with theirs, the tables built, the run written) — and, in the same run, the
baselines of what the job's digest and stored rows must equal: the flux records' digest by its definition (a
`model_dump` and `json.dumps` per record) and the rows by `json.dumps` per row. Only functions main has had since
before this option, so the file copied into an older checkout times that checkout's code.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway.flux.budget.pipeline import BudgetSettings, run_budget  # noqa: E402
from tests.flux.budget.refdata import DATA, SITES, hesseflux_run, start_seconds  # noqa: E402

CACHE = Path(os.environ.get("SINKWATCH_BENCH_CACHE", Path.home() / ".cache" / "sinkwatch-bench"))
PEERS = {
    "hesseflux": ["numpy==1.23.5", "pandas==1.5.3", "scipy<1.12", "hesseflux==5.0"],
    "diive": ["diive"],
}

HESSEFLUX_RUNNER = r'''
import json, sys, time, gzip
import numpy as np, pandas as pd
import hesseflux as hf
path, repeat = sys.argv[1], int(sys.argv[2])
raw = pd.read_csv(path, compression="gzip")
idx = pd.to_datetime(raw["TIMESTAMP_END"].astype(str), format="%Y%m%d%H%M") - pd.Timedelta("30min")
undef = -9999.
df = pd.DataFrame({"FC": raw["NEE_in"].to_numpy(), "USTAR": raw["USTAR"].to_numpy(), "TA": raw["TA"].to_numpy(),
                   "SW_IN": raw["SW_IN"].to_numpy(), "VPD": raw["VPD"].to_numpy()}, index=idx)
df = df.fillna(undef)
times = {k: [] for k in ("madspikes", "ustarfilter", "gapfill", "nee2gpp_reichstein", "nee2gpp_lasslop", "total")}
for _ in range(repeat):
    dff = pd.DataFrame(np.where(df.to_numpy() == undef, 2, 0), columns=df.columns, index=df.index)
    isday = (df["SW_IN"] > 10.).to_numpy()
    t0 = time.process_time()
    s = hf.madspikes(df[["FC"]], flag=dff[["FC"]], isday=isday, undef=undef, nscan=15 * 48, nfill=48, z=7,
                     deriv=2, plot=False)
    dff.loc[s["FC"] == 2, "FC"] = 3
    t1 = time.process_time()
    ustars, flag = hf.ustarfilter(df[["FC", "USTAR", "TA"]], flag=dff[["FC", "USTAR", "TA"]], isday=isday,
                                  undef=undef, ustarmin=0.1, nboot=1, plateaucrit=0.95, seasonout=True)
    dff.loc[flag == 2, "FC"] = 5
    t2 = time.process_time()
    df_f, dff_f = hf.gapfill(df[["FC", "SW_IN", "TA", "VPD"]], flag=dff[["FC", "SW_IN", "TA", "VPD"]], sw_dev=50.,
                             ta_dev=2.5, vpd_dev=5., longgap=60, undef=undef, err=False, verbose=0)
    t3 = time.process_time()
    part = df_f[["FC", "SW_IN", "TA", "VPD"]].copy()
    pflag = dff[["FC", "SW_IN", "TA", "VPD"]].copy()
    hf.nee2gpp(part, flag=pflag, isday=isday, undef=undef, method="reichstein", nogppnight=False)
    t4 = time.process_time()
    hf.nee2gpp(part, flag=pflag, isday=isday, undef=undef, method="lasslop", nogppnight=False)
    t5 = time.process_time()
    for k, v in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t5 - t0)):
        times[k].append(v)
print(json.dumps(times))
'''

DIIVE_RUNNER = r'''
import inspect, json, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np, pandas as pd
try:  # diive >= 0.91: the ONEFlux port
    from diive.flux.lowres import UstarMovingPointDetection as MP
    from diive.gapfilling.mds import FluxMDS
    new_api = True
except ImportError:  # diive 0.90: its own moving-point test
    from diive.pkgs.flux.ustarthreshold import UstarDetectionMPT as MP
    from diive.pkgs.gapfilling.mds import FluxMDS
    new_api = False
path, repeat = sys.argv[1], int(sys.argv[2])
raw = pd.read_csv(path, compression="gzip")
idx = pd.DatetimeIndex(pd.to_datetime(raw["TIMESTAMP_END"].astype(str), format="%Y%m%d%H%M") - pd.Timedelta("15min"))
nee_all = raw["NEE_in"].where(raw["NEE_flag"].isin([0, 5]))
nee_used = raw["NEE_in"].where(raw["NEE_flag"] == 0)
df = pd.DataFrame({"NEE": nee_all.to_numpy(), "TA": raw["TA"].to_numpy(), "USTAR": raw["USTAR"].to_numpy(),
                   "SW_IN": raw["SW_IN"].to_numpy(), "VPD": raw["VPD"].to_numpy(),
                   "SEASON": ((idx.month - 1) // 3 + 1).to_numpy()}, index=idx)
df.index.name = "TIMESTAMP_MIDDLE"
df = df.asfreq("30min")
times = {"ustar_mp_100": [], "mds": [], "total": []}
for _ in range(repeat):
    t0 = time.process_time()
    if new_api:
        mp = MP(df=df[["NEE", "TA", "USTAR", "SW_IN"]], nee_col="NEE", ta_col="TA", ustar_col="USTAR",
                swin_col="SW_IN", bootstrapping_times=100, random_state=1, verbose=0)
        mp.detect()
        mp.bootstrap()
    else:  # night by SW_IN < 10 W m-2 (given as its "potential radiation" column)
        mp = MP(df=df[["NEE", "TA", "USTAR", "SW_IN", "SEASON"]], nee_col="NEE", ta_col="TA", ustar_col="USTAR",
                season_col="SEASON", n_bootstraps=100, swin_pot_col="SW_IN", nighttime_threshold=10)
        mp.run()
    t1 = time.process_time()
    fill = df.copy()
    fill["NEE"] = nee_used.to_numpy()
    kwargs = dict(df=fill[["NEE", "TA", "SW_IN", "VPD"]], flux="NEE", ta="TA", swin="SW_IN", vpd="VPD",
                  swin_tol=[20, 50], ta_tol=2.5, avg_min_n_vals=2, verbose=0)
    if "vpd_in_kpa" in inspect.signature(FluxMDS.__init__).parameters:
        kwargs.update(vpd_in_kpa=False, vpd_tol=5.0)
    else:
        kwargs["df"] = kwargs["df"].assign(VPD=fill["VPD"] / 10.0)
        kwargs.update(vpd_tol=0.5)
    mds = FluxMDS(**kwargs)
    mds.run()
    t2 = time.process_time()
    times["ustar_mp_100"].append(t1 - t0)
    times["mds"].append(t2 - t1)
    times["total"].append(t2 - t0)
print(json.dumps(times))
'''


def peer_python(name: str) -> Path | None:
    """The peer's virtualenv interpreter, created on first use; None if it cannot be installed here."""
    venv = CACHE / name
    py = venv / "bin" / "python"
    marker = venv / ".installed"
    if marker.exists():
        return py
    CACHE.mkdir(parents=True, exist_ok=True)
    print(f"# creating {venv} ({' '.join(PEERS[name])}) ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *PEERS[name]], check=True)
    except subprocess.CalledProcessError as exc:
        print(f"# {name}: could not be installed ({exc}); skipped")
        return None
    marker.write_text(" ".join(PEERS[name]) + "\n")
    return py


def run_peer(name: str, runner: str, site: str, repeat: int) -> dict[str, list[float]] | None:
    py = peer_python(name)
    if py is None:
        return None
    script = CACHE / f"run_{name}.py"
    script.write_text(runner)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([str(py), str(script), str(DATA / f"hf_{site}.csv.gz"), str(repeat)],
                          capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode != 0:
        print(f"# {name} failed on {site}: {proc.stderr.strip().splitlines()[-1] if proc.stderr else ''}")
        return None
    result: dict[str, list[float]] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def ours(site: str) -> float:
    run = hesseflux_run(site)
    s = SITES[site]
    nee = np.where(np.isin(run["NEE_flag"], (0, 5)), run["NEE_in"], np.nan)
    t0 = time.process_time()
    run_budget(start_seconds(site), nee, run["SW_IN"], run["TA"], run["VPD"], run["USTAR"], lat=s["lat"],
               lon=s["lon"], utc_offset_h=s["utc_offset"], settings=BudgetSettings(ustar="auto", n_bootstrap=100))
    return time.process_time() - t0


def steps(site: str) -> dict[str, float]:
    """CPU seconds of our main steps, for the table."""
    from gateway.flux.budget import partition_dt, partition_nt
    from gateway.flux.budget.mds import mds_fill
    from gateway.flux.budget.randunc import random_uncertainty
    from gateway.flux.budget.ustar import ustar_threshold

    run = hesseflux_run(site)
    s = SITES[site]
    t = start_seconds(site)
    nee = np.where(run["NEE_flag"] == 0, run["NEE_in"], np.nan)
    month = np.array([int(x[4:6]) for x in run["TIMESTAMP_START"]])
    out: dict[str, float] = {}
    c = time.process_time()
    ustar_threshold(np.where(np.isin(run["NEE_flag"], (0, 5)), run["NEE_in"], np.nan), run["TA"], run["USTAR"],
                    run["SW_IN"], month, n_bootstrap=100)
    out["ustar_mp_100"] = time.process_time() - c
    c = time.process_time()
    res = mds_fill(nee, run["SW_IN"], run["VPD"], run["TA"])
    out["mds_nee"] = time.process_time() - c
    c = time.process_time()
    random_uncertainty(res.filled, res.qc == 0, run["SW_IN"], run["TA"], run["VPD"])
    out["randunc"] = time.process_time() - c
    mid = t + 900.0 - s["utc_offset"] * 3600.0
    ta_f = mds_fill(run["TA"], run["SW_IN"], run["VPD"]).filled
    vpd_f = mds_fill(run["VPD"], run["SW_IN"], None, run["TA"]).filled
    sw_f = mds_fill(run["SW_IN"]).filled
    c = time.process_time()
    partition_nt.partition_nighttime(mid, nee, res.filled, ta_f, run["SW_IN"], s["lat"], s["lon"], s["utc_offset"])
    out["partition_nt"] = time.process_time() - c
    c = time.process_time()
    partition_dt.partition_daytime(mid, nee, ta_f, sw_f, vpd_f, s["lat"], s["lon"], s["utc_offset"])
    out["partition_dt"] = time.process_time() - c
    return out


def central(repeat: int) -> None:
    """The central budget job's CPU split (module doc, --central)."""
    import contextlib
    import tempfile
    from datetime import timedelta

    from gateway.central.budget import (
        _met_means,
        build_station_budget,
        met_input,
        prepare_station_budget,
        run_station_budget,
        year_bounds,
    )
    from gateway.central.store import SqliteStore
    from gateway.central.store.budget import clean, json_rows
    from gateway.central.store.provenance import canonical_sha256, lines_sha256, records_digest
    from tests.central.budget_helpers import STATION, YEAR, after, fill_store, job, simulated_year

    def digest_by_definition(records: list[Any]) -> str:
        ordered = sorted(records, key=lambda r: (r.end, r.settings_hash, r.engine_version, r.site))
        return lines_sha256(f"{r.model_dump(mode='json')['end']} "
                            f"{canonical_sha256(r.model_dump(mode='json', exclude={'seq'}))}" for r in ordered)

    parts: dict[str, list[float]] = {}

    @contextlib.contextmanager
    def clock(name: str, *, add: bool = False) -> Iterator[None]:
        t0 = time.process_time()
        yield
        spent = time.process_time() - t0
        if add:  # one figure per repeat, summed over the calls
            parts[name][-1] += spent
        else:
            parts.setdefault(name, []).append(spent)

    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "central.sqlite")
        year = simulated_year()
        fill_store(store, year)
        config, now = job(ustar="auto"), after(year)
        run_station_budget(store, STATION, YEAR, config, now=now)  # warm-up: imports, first calls
        for _ in range(repeat):
            with clock("whole job (run_station_budget)"):
                run_station_budget(store, STATION, YEAR, config, now=now)
            with clock("  inputs read (prepare_station_budget)"):
                task = prepare_station_budget(store, STATION, YEAR, config, now=now)
            data, chain, settings = task.data, task.chain, task.data.settings
            assert settings.latitude is not None and settings.longitude is not None
            start, end = year_bounds(YEAR, settings.utc_offset_h)
            with clock("    of it: flux records read (query_fluxes)"):
                records = [r for r in store.query_fluxes(STATION, start, end, data.flux_set.settings_hash,
                                                         limit=200_000) if r.end - r.start == timedelta(minutes=30)]
            with clock("    of it: their digest (records_digest)"):
                digest = records_digest(records)
            with clock("    baseline: the digest by its definition"):
                reference = digest_by_definition(records)
            assert digest == reference, "records_digest differs from its definition"
            parts.setdefault("    of it: met half-hour means + digests", []).append(0.0)
            for source in data.met.values():
                if not source.startswith("from "):
                    sensor, _, variable = source.partition("/")
                    with clock("    of it: met half-hour means + digests", add=True):
                        met_input(sensor, variable, _met_means(store, data.site, STATION, sensor, variable,
                                                               data.first_end, data.last_end))
            with clock("  science (run_budget)"):
                result = run_budget(data.ends_s - 1800 + settings.utc_offset_h * 3600.0, data.columns["NEE"],
                                    data.columns["SW_IN"], data.columns["TA"], data.columns["VPD"],
                                    data.columns["USTAR"], lat=settings.latitude, lon=settings.longitude,
                                    utc_offset_h=settings.utc_offset_h, settings=chain)
            with clock("  tables built (build_station_budget)"):
                budget = build_station_budget(data, result, chain, task.moment)
            with clock("  run written (write_budget)"):
                store.write_budget(budget)
            hh = budget.tables["HH"]
            columns = list(hh.values.values())
            with clock("    of it: HH rows as text (json_rows)"):
                rows = json_rows(columns, len(hh))
            with clock("    baseline: HH rows by json.dumps per row"):
                dumped = [json.dumps([clean(c[i]) for c in columns], allow_nan=False) for i in range(len(hh))]
            assert rows == dumped, "json_rows differs from json.dumps"
        store.close()
    print(f"# central budget job, simulated station-year ({len(records)} flux records) in SQLite, u* auto; "
          f"CPU s, median of {repeat} (best)")
    for name, values in parts.items():
        print(f"{name:50s} {statistics.median(values):7.2f} ({min(values):.2f})")
    whole = statistics.median(parts["whole job (run_station_budget)"])
    science = statistics.median(parts["  science (run_budget)"])
    print(f"whole job / science: {whole / science:.2f}x; outside the science: {whole - science:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--years", type=int, default=10)
    ap.add_argument("--peer-repeat", type=int, default=1, help="runs per peer and site (they take seconds to minutes)")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--central", action="store_true", help="the central budget job's CPU split instead (module doc)")
    args = ap.parse_args()
    if args.central:
        central(args.repeat)
        return
    print(f"# budget chain, one site-year, one core — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"numpy {np.__version__}")
    sites = list(SITES)
    ours(sites[0])  # warm-up: imports and first-call costs are not a site-year's
    table: dict[str, dict[str, list[float]]] = {}
    for site in sites:
        table[site] = {"ours": [ours(site) for _ in range(args.repeat)]}
        st = steps(site)
        print(f"{site}: ours {statistics.median(table[site]['ours']):.2f} s (best {min(table[site]['ours']):.2f}); "
              + ", ".join(f"{k} {v:.3f}" for k, v in st.items()))
    c = time.process_time()
    for i in range(args.years):
        ours(sites[i % len(sites)])
    many = time.process_time() - c
    print(f"{args.years} site-years in a row: {many:.1f} s CPU ({many / args.years:.2f} s each)")
    if args.no_peers:
        return
    for site in sites:
        for name, runner in (("hesseflux", HESSEFLUX_RUNNER), ("diive", DIIVE_RUNNER)):
            res = run_peer(name, runner, site, args.peer_repeat)
            if res is None:
                continue
            total = statistics.median(res["total"])
            mine = statistics.median(table[site]["ours"])
            detail = ", ".join(f"{k} {statistics.median(v):.2f}" for k, v in res.items() if k != "total")
            print(f"{site}: {name} {total:.2f} s ({detail}); ours {mine:.2f} s -> {total / mine:.1f}x")


if __name__ == "__main__":
    main()
