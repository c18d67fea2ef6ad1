"""Time per 30-min, 20 Hz averaging period of the eddy-covariance engine, file reading included, against
baselines measured in the same run on the same file.

    ours:        read_raw_file (mapped columns) + process_period with the R1 settings of EDDYPRO-REFERENCE.md
                 (double rotation, block average, covariance-maximisation lags over 41 lags x 2 gases, fluxes,
                 Foken/Mauder-Foken tests, statistics)
    ours, V:     process_period with the ICOS-like run V project (despiking, planar fit, Fratini spectral
                 corrections with z/L iterated, Finkelstein & Sims random error, footprint)
    ours, archive: the same records as the station archives them (docs/raw-archive.md: a sonic file and an
                 analyzer file per half hour, format 2, binary columnar), read with the station's reader, put on
                 the common 20 Hz grid (gateway/flux/rawperiods.py) and processed with R1 — what the station's
                 flux runner and the central recompute do per period; the read alone also from format 1 (gzip'd
                 CSV, the same records) in the same run
    baseline 1:  np.loadtxt of the whole file + np.cov of u, v, w, Ts, CO2, H2O (the least any engine must do:
                 parse the file and form the covariance matrix once, no rotation, no lags, no tests)
    baseline 2:  a naive per-step implementation in pure Python (the same R1 chain with Python loops over the
                 records, as a straightforward port of a Fortran-style engine would do), on a 1/10 subsample and
                 scaled by 10 — it is linear in the record count

Run:

    .venv/bin/python bench/flux_ec.py [--repeat 15] [--raw tests/data/ec-raw/DE-HoH_EC_...csv.gz]
    .venv/bin/python bench/flux_ec.py --statistical-tests [--repeat 15]

``--statistical-tests`` measures only EddyPro's statistical tests (Vickers & Mahrt 1997, gateway/flux/ec/vm97.py):
each test's CPU time on the period's six series (u, v, w, Ts, CO2, H2O; the time-lag test on CO2 and H2O in R1's
lag window 0-2 s and in a wide one, -10..10 s, with 5 % of the gas records missing) and the whole process_period
with R1's settings, every test off and every test on.

A gzip-compressed file (the vendored reference is one) is decompressed to a temporary file first, so the reading
times stay those of plain text, comparable with earlier runs.

It prints the median and best times per period, the ratios to the baselines measured in the same run, and projects
a station-year (17,520 periods) on one core and on this machine's cores. EddyPro cannot run here: its figure is an
earlier measurement on this machine kind (issue 5), printed apart from the same-run baselines and marked so. No
assertion is made: the figures go to docs/performance.md with date and machine.
"""

from __future__ import annotations

import argparse
import gzip
import math
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from gateway.flux.ec.engine import process_period
from gateway.flux.ec.period import RawPeriod
from gateway.flux.files import load_metadata, load_method_files, load_settings, read_raw_file
from gateway.rawarchive import read_archive

REPO = Path(__file__).resolve().parents[1]
RAW = REPO / "tests" / "data" / "ec-raw" / "DE-HoH_EC_201907301200_v01.csv.gz"
EXAMPLES = REPO / "gateway" / "flux" / "examples"
PERIODS_PER_YEAR = 17_520
#: NOT measured by this script: EddyPro 7.0.9's time per period for R1, measured earlier on this machine kind
#: (issue 5). Printed apart from the baselines this script measures.
EDDYPRO_R1_EARLIER_S = 1.3
V_RUN = REPO / "tests" / "data" / "ec-raw" / "eddypro" / "V_icoslike_pf_fratini_30min"
DATA_DIR = REPO / "tests" / "data" / "ec-raw"


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    """Wall-clock seconds per call."""
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def cpu_timed(fn: Callable[[], object]) -> float:
    """CPU seconds of this process for one call (less sensitive than wall time to other processes' load)."""
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def naive_r1(rows: list[list[float]], fs: float) -> tuple[float, float, float]:
    """R1's arithmetic with Python loops: means, double rotation, lag search (0..2 s) for two gases, covariances."""
    n = len(rows)
    um = sum(r[0] for r in rows) / n
    vm = sum(r[1] for r in rows) / n
    yaw = math.atan2(vm, um)
    cy, sy = math.cos(yaw), math.sin(yaw)
    u1 = [r[0] * cy + r[1] * sy for r in rows]
    v1 = [-r[0] * sy + r[1] * cy for r in rows]
    w0 = [r[2] for r in rows]
    pitch = math.atan2(sum(w0) / n, sum(u1) / n)
    cp, sp = math.cos(pitch), math.sin(pitch)
    u = [a * cp + b * sp for a, b in zip(u1, w0, strict=True)]
    w = [-a * sp + b * cp for a, b in zip(u1, w0, strict=True)]

    def cov(a: list[float], b: list[float]) -> float:
        m = len(a)
        ma, mb = sum(a) / m, sum(b) / m
        return sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True)) / m

    best = []
    for col in (4, 5):
        g = [r[col] for r in rows]
        covs = [cov(w[: n - k], g[k:]) for k in range(round(2.0 * fs) + 1)]
        best.append(max(covs, key=abs))
    ustar = (cov(u, w) ** 2 + cov(v1, w) ** 2) ** 0.25
    return ustar, best[0], best[1]


def write_archives(raw: Path, folder: Path) -> tuple[list[Path], list[Path], datetime]:
    """The reference file's records as a station would archive them: a sonic and an analyzer file of one half hour,
    each in format 2 and format 1, stamped on a 20 Hz grid with a few ms of arrival jitter."""
    from gateway.rawarchive import ArchiveWriter, CsvArchiveWriter

    data = np.loadtxt(raw, delimiter=",", skiprows=1)
    start = datetime(2019, 7, 30, 11, 30, tzinfo=UTC)  # the file is named after the END of its half hour
    t0 = start.timestamp()
    stamps = t0 + np.arange(len(data)) / 20 + np.random.default_rng(1).uniform(0.002, 0.008, len(data))
    sonic_columns = [("U", "m s-1"), ("V", "m s-1"), ("W", "m s-1"), ("T_SONIC", "K")]
    irga_columns = [("CO2", "umol mol-1"), ("H2O", "mmol mol-1"), ("DIAG", "1")]
    sonic_rows = [tuple(float(x) for x in row) for row in data[:, :4]]
    irga_rows = [tuple(float(x) for x in row) for row in data[:, [4, 5, 7]]]
    paths: dict[type, list[Path]] = {}
    for writer_class in (ArchiveWriter, CsvArchiveWriter):
        for sensor, columns, rows, model in (("sonic", sonic_columns, sonic_rows, "HS-50"),
                                             ("irga", irga_columns, irga_rows, "LI-7200")):
            writer = writer_class(folder, sensor, int(t0), columns,
                                  {"site": "DE-HoH", "station": "bench", "frequency_hz": 20.0,
                                   "instrument": {"model": model, "driver": sensor}})
            for t, row in zip(stamps.tolist(), rows, strict=True):
                writer.write(t, row)
            paths.setdefault(writer_class, []).append(writer.close({"closed": "rotation"}))
    return paths[ArchiveWriter], paths[CsvArchiveWriter], start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw", type=Path, default=RAW)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--statistical-tests", action="store_true",
                        help="measure only the statistical tests (per test and the period with tests on/off)")
    args = parser.parse_args()
    if args.statistical_tests:
        statistical_tests(args.raw, args.repeat)
        return
    with tempfile.TemporaryDirectory() as tmp:
        if args.raw.suffix == ".gz":
            plain = Path(tmp) / args.raw.with_suffix("").name
            with gzip.open(args.raw, "rb") as src, plain.open("wb") as dst:
                shutil.copyfileobj(src, dst)
            args.raw = plain
        args.archive_v2, args.archive_v1, args.archive_start = write_archives(args.raw, Path(tmp) / "archive")
        run(args)


def run(args: argparse.Namespace) -> None:
    md = load_metadata(EXAMPLES / "DE-HoH.metadata.yaml")
    st = load_settings(EXAMPLES / "DE-HoH_R1.settings.yaml")
    fs = md.acquisition_frequency
    print(f"sinkwatch EC benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}, file {args.raw.name}")

    def ours() -> None:
        for p in read_raw_file(args.raw, md, st):
            process_period(p, st)

    def read_only() -> None:
        read_raw_file(args.raw, md, st)

    periods = read_raw_file(args.raw, md, st)

    def process_only() -> None:
        for p in periods:
            process_period(p, st)

    st_v = load_settings(V_RUN / "eddypro_settings_echo.eddypro")
    pf_v, sa_v = load_method_files(st_v, V_RUN / "eddypro_settings_echo.eddypro", DATA_DIR)
    periods_v = read_raw_file(args.raw, md, st_v)

    def process_v() -> None:
        for p in periods_v:
            process_period(p, st_v, planar_fit=pf_v, spectral_assessment=sa_v)

    from datetime import timedelta

    from gateway.flux.rawperiods import ArchiveReader, build_period

    start = args.archive_start
    end = start + timedelta(minutes=30)

    def archive_read(paths: list[Path]) -> Callable[[], object]:
        def read() -> object:
            reader = ArchiveReader()  # a fresh reader: no cache between repetitions
            sonic = reader.sensor_data("sonic", [paths[0]], start.timestamp(), end.timestamp(), 0.05)
            irga = reader.sensor_data("analyzer", [paths[1]], start.timestamp(), end.timestamp(), 0.05)
            return build_period(md, start, end, sonic, irga)
        return read

    read_v2, read_v1 = archive_read(args.archive_v2), archive_read(args.archive_v1)

    def from_archive() -> None:
        period = read_v2()
        assert isinstance(period, RawPeriod)
        process_period(period, st)

    def archive_files_only() -> None:
        for path in args.archive_v2:
            read_archive(path)

    archived = read_v2()
    assert isinstance(archived, RawPeriod) and not archived.issues, getattr(archived, "issues", None)

    def baseline_cov() -> None:
        d = np.loadtxt(args.raw, delimiter=",", skiprows=1)
        np.cov(d[:, :6].T, bias=True)

    data = np.loadtxt(args.raw, delimiter=",", skiprows=1)[:, :6]
    sub = data[: len(data) // 10].tolist()

    def naive() -> None:
        naive_r1(sub, fs)

    ours()  # warm-up (imports, caches)
    # interleaved: each round runs every variant once, so load from other processes hits all of them alike
    fns = {"ours": ours, "read": read_only, "proc": process_only, "proc_v": process_v, "base": baseline_cov,
           "archive": from_archive, "archive_read": read_v2, "archive_files": archive_files_only,
           "archive_read_v1": read_v1}
    times: dict[str, list[float]] = {k: [] for k in fns}
    times["naive"] = []
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for i in range(args.repeat):
        for name, fn in fns.items():
            times[name] += timed(fn, 1)
            cpu[name].append(cpu_timed(fn))
        if i % 3 == 0:
            times["naive"] += [10 * t for t in timed(naive, 1)]
    t_ours, t_read, t_proc, t_proc_v, t_base, t_naive = (times[k] for k in ("ours", "read", "proc", "proc_v", "base",
                                                                             "naive"))

    med = statistics.median
    names = {
        "ours": "ours: read_raw_file + process (R1)",
        "read": "  of which read_raw_file (EddyPro-style CSV)",
        "proc": "  of which process_period",
        "archive": "ours from the station archive: read + grid + process (R1)",
        "archive_read": "  of which read 2 files (format 2) + grid",
        "archive_files": "  of which read_archive of the 2 files (format 2)",
        "archive_read_v1": "same read + grid from format 1 (gzip'd CSV)",
        "proc_v": "process_period, run V (full ICOS-like chain)",
        "base": "baseline 1: loadtxt(all) + np.cov",
    }
    for key, name in names.items():
        print(f"  {name:<58} wall median {med(times[key]) * 1000:7.1f} ms   best {min(times[key]) * 1000:7.1f} ms"
              f"   CPU median {med(cpu[key]) * 1000:7.1f} ms")
    print(f"  {'baseline 2: naive pure-Python R1 (x10 of 1/10)':<58} wall median {med(t_naive) * 1000:7.1f} ms   "
          f"best {min(t_naive) * 1000:7.1f} ms")
    m = med(t_ours)
    c_archive = med(cpu["archive"])
    print("  (ratios and projections use CPU medians where the machine is shared; CPU time counts all threads, and"
          " numpy's BLAS threads spin while waiting -- set OPENBLAS_NUM_THREADS=1 when running periods in parallel)")
    print(f"  same run: ours/baseline 1: {m / med(t_base):.2f}   naive/ours (processing): "
          f"{med(t_naive) / med(t_proc):.1f}x   read + V chain: {(med(t_read) + med(t_proc_v)) * 1000:.1f} ms")
    print(f"  same run: archive read + grid, format 1 / format 2: "
          f"{med(cpu['archive_read_v1']) / med(cpu['archive_read']):.1f}x (CPU)")
    print(f"  NOT measured in this run -- EddyPro 7.0.9 R1, measured earlier (issue 5) on a 2-core VM: "
          f"{EDDYPRO_R1_EARLIER_S} s/period, i.e. {EDDYPRO_R1_EARLIER_S / m:.1f}x our R1 time from its CSV and "
          f"{EDDYPRO_R1_EARLIER_S / c_archive:.1f}x our R1 time from the station archive (CPU; indicative)")
    cores = os.cpu_count() or 1
    print(f"  station-year ({PERIODS_PER_YEAR} periods) from the archive: {c_archive * PERIODS_PER_YEAR / 60:.1f} "
          f"min on one core, ~{c_archive * PERIODS_PER_YEAR / 60 / cores:.1f} min on {cores} cores")


def statistical_tests(raw: Path, repeat: int) -> None:
    """Per-test CPU ms of the statistical tests on the DE-HoH period, and the period with every test off and on."""
    from gateway.flux.ec import vm97
    from gateway.flux.ec.settings import StatisticalTests

    run_dir = REPO / "tests" / "data" / "ec-raw" / "eddypro" / "R1_dr_ba_maxcov_wpl_30min"
    md = load_metadata(run_dir / "input_DE-HoH.metadata")
    st = load_settings(run_dir / "eddypro_settings_echo.eddypro")
    (period,) = read_raw_file(raw, md, st)
    fs = md.acquisition_frequency
    print(f"sinkwatch statistical-tests benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}")
    series = [np.asarray(period.data[k], dtype=np.float64) for k in ("u", "v", "w", "ts", "co2", "h2o")]
    w = series[2]
    gappy = [g.copy() for g in series[4:]]
    for g in gappy:
        g[np.random.default_rng(5).random(g.size) < 0.05] = np.nan
    both = getattr(vm97, "resolution_and_dropouts", None)
    cases: dict[str, Callable[[], object]] = {
        "amplitude resolution (6 series)": lambda: [vm97.amplitude_resolution(x) for x in series],
        "dropouts (6 series)": lambda: [vm97.dropouts(x) for x in series],
        "skewness/kurtosis (6 series)": lambda: [vm97.skewness_kurtosis(x) for x in series],
        "discontinuities (6 series)": lambda: [vm97.discontinuities(x, fs, mean_hf=4.0, mean_sf=2.7) for x in series],
        "time lag, 0..2 s (2 gases)": lambda: [vm97.time_lag(w, g, fs, expected_s=0.0, min_s=0.0, max_s=2.0)
                                               for g in series[4:]],
        "time lag, -10..10 s, 5 % missing (2 gases)": lambda: [
            vm97.time_lag(w, g, fs, expected_s=0.0, min_s=-10.0, max_s=10.0) for g in gappy],
        "angle of attack + horizontal wind": lambda: (vm97.angle_of_attack(*series[:3]),
                                                      vm97.horizontal_wind_steadiness(series[0], series[1], fs)),
    }
    if both is not None:
        cases["resolution + dropouts, one binning (6 series)"] = lambda: [both(x) for x in series]
    on = st.model_copy(update={"statistical_tests": StatisticalTests(
        **{f"test_{t}": True for t in ("al", "ar", "do", "sk", "ds", "tl", "aa", "ns")})})
    cases["process_period R1, every test off"] = lambda: process_period(period, st)
    cases["process_period R1, every test on"] = lambda: process_period(period, on)
    for fn in cases.values():
        fn()  # warm-up (imports)
    cpu: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeat):  # interleaved, so that load from other processes hits every case alike
        for name, fn in cases.items():
            cpu[name].append(cpu_timed(fn))
    for name, ts in cpu.items():
        print(f"  {name:<48} CPU median {statistics.median(ts) * 1000:7.1f} ms   best {min(ts) * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
