"""The annual site carbon report rendered (issue 10 goal: ≤ 15 s), time per section, against a baseline in the
same run.

    input      the synthetic site-year of gateway.report.example (budget chain, a half-hourly soil profile, an hourly
               chamber, two trees at 10 min, one plot), written to CSV; `sinkwatch flux budget` output files
    ours       build the data object from the files (gateway.report.files), derive the table (summary), make the six
               figures with dense artists rasterised, write the HTML (inline SVG) and the PDF
    baseline   the same report with every artist as vector (matplotlib's default: no rasterisation), i.e. what
               the figures cost without the choice made in gateway.report.figures

Run (one core):

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/report.py [--repeat 3]

Prints wall and CPU seconds per section (median of the repeats) and the file sizes. The budget chain that makes
the input files is not timed (bench/budget.py measures it). No assertion: the figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from typer.testing import CliRunner

from gateway.cli import app
from gateway.report.example import LAT, LON, UTC_OFFSET_H, example_year, write_inputs
from gateway.report.figures import FIGURES, report_style
from gateway.report.files import ReportFiles, build_from_files
from gateway.report.html import write_html
from gateway.report.pdf import write_pdf
from gateway.report.summary import ReportSummary


def _timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w0, time.process_time() - c0, out


def _inputs(folder: Path) -> ReportFiles:
    ex = example_year(2021)
    p = write_inputs(ex, folder)
    names = {k: folder / f"{k}.csv" for k in ("hh", "dd", "mm", "yy", "draws")}
    result = CliRunner().invoke(app, ["flux", "budget", str(p["flux"]), "--lat", str(LAT), "--lon", str(LON),
                                      "--utc-offset", str(UTC_OFFSET_H), "--out", str(names["hh"]), "--daily",
                                      str(names["dd"]), "--monthly", str(names["mm"]), "--annual", str(names["yy"]),
                                      "--ustar-draws", str(names["draws"])])
    if result.exit_code != 0:
        raise SystemExit(result.output)
    return ReportFiles(names["hh"], names["dd"], names["mm"], names["yy"], names["draws"], p["soil"], p["stems"],
                       p["stem_carbon"])


def _run(files: ReportFiles, out: Path, rasterize: bool) -> dict[str, tuple[float, float]]:
    times: dict[str, tuple[float, float]] = {}
    w, c, data = _timed(lambda: build_from_files(files, site="BENCH", lat=LAT, lon=LON))
    times["read files → data object"] = (w, c)
    summary = ReportSummary(data)  # type: ignore[arg-type]
    w, c, _ = _timed(lambda: (summary.rows, summary.cumulative))
    times["table and cumulative band"] = (w, c)
    figures = {}
    with report_style():
        for key, (label, fn) in FIGURES.items():
            w, c, fig = _timed(lambda fn=fn: fn(summary, rasterize))  # type: ignore[misc]
            figures[key] = fig
            times[f"figure: {label}"] = (w, c)
    w, c, _ = _timed(lambda: write_html(data, out / "r.html", figures=figures))  # type: ignore[arg-type]
    times["HTML (SVG serialisation)"] = (w, c)
    w, c, _ = _timed(lambda: write_pdf(data, out / "r.pdf", figures=figures))  # type: ignore[arg-type]
    times["PDF"] = (w, c)
    times["total"] = (sum(v[0] for v in times.values()), sum(v[1] for v in times.values()))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = _inputs(folder / "in")
        runs: dict[str, list[dict[str, tuple[float, float]]]] = {"ours (dense artists rasterised)": [],
                                                                  "baseline (all vector)": []}
        sizes: dict[str, tuple[int, int]] = {}
        for _ in range(args.repeat):  # interleaved, so outside load hits both alike
            for name, rasterize in (("ours (dense artists rasterised)", True), ("baseline (all vector)", False)):
                out = folder / name.split()[0]
                out.mkdir(exist_ok=True)
                runs[name].append(_run(files, out, rasterize))
                sizes[name] = ((out / "r.html").stat().st_size, (out / "r.pdf").stat().st_size)
    sections = list(next(iter(runs.values()))[0])
    names = list(runs)
    print(f"\n{'section':44s}" + "".join(f"{n:>36s}" for n in names))
    print(f"{'':44s}" + "".join(f"{'wall s':>18s}{'CPU s':>18s}" for _ in names))
    for section in sections:
        cells = ""
        for n in names:
            wall = statistics.median(r[section][0] for r in runs[n])
            cpu = statistics.median(r[section][1] for r in runs[n])
            cells += f"{wall:18.3f}{cpu:18.3f}"
        print(f"{section:44s}{cells}")
    ours, base = (statistics.median(r["total"][0] for r in runs[n]) for n in names)
    print(f"\ntotal: ours {ours:.2f} s (goal ≤ 15 s), baseline {base:.2f} s, {base / ours:.1f}× ours")
    for n in names:
        html, pdf = sizes[n]
        print(f"{n}: HTML {html / 1e6:.2f} MB, PDF {pdf / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
