"""`sinkwatch report` end to end on a synthetic site-year: `sinkwatch flux budget` makes the budget files from the
synthetic fluxes, `sinkwatch report` the HTML and PDF with soil and stems; the PDF is read back with poppler
(pages, plots as non-blank images, the annual table's numbers as text) and the HTML opened in headless chromium
(no console message, every section present). Bad input: exit 2 naming the file and the fix."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.report.example import LAT, LON, UTC_OFFSET_H, example_year, write_inputs
from gateway.report.files import ReportFiles, build_from_files
from gateway.report.html import SECTION_IDS
from gateway.report.summary import ReportSummary, fmt_pm
from tests.report import pdftools
from tests.report.browser import open_page

pytestmark = pytest.mark.slow
runner = CliRunner()
FIGURE_PAGES = 6  # cumulative NEE, fingerprint, gap fraction, u*, soil, stems


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("report")
    ex = example_year(2021)
    paths = write_inputs(ex, folder / "in")
    for name in ("hh", "dd", "mm", "yy", "draws"):
        paths[name] = folder / f"{name}.csv"
    result = runner.invoke(app, ["flux", "budget", str(paths["flux"]), "--lat", str(LAT), "--lon", str(LON),
                                 "--utc-offset", str(UTC_OFFSET_H), "--out", str(paths["hh"]), "--daily",
                                 str(paths["dd"]), "--monthly", str(paths["mm"]), "--annual", str(paths["yy"]),
                                 "--ustar-draws", str(paths["draws"])])
    assert result.exit_code == 0, result.output
    paths["out"] = folder / "out"
    result = runner.invoke(app, ["report", "--budget", str(paths["hh"]), "--daily", str(paths["dd"]), "--monthly",
                                 str(paths["mm"]), "--annual", str(paths["yy"]), "--ustar-draws", str(paths["draws"]),
                                 "--soil", str(paths["soil"]), "--stems", str(paths["stems"]), "--stem-carbon",
                                 str(paths["stem_carbon"]), "--site", "SYN", "--lat", str(LAT), "--lon", str(LON),
                                 "--station", "tower-1", "--out-dir", str(paths["out"])])
    assert result.exit_code == 0, result.output
    paths["pdf"] = paths["out"] / "SYN_2021_carbon_report.pdf"
    paths["html"] = paths["out"] / "SYN_2021_carbon_report.html"
    return paths


def _files(p: dict[str, Path], **without: bool) -> ReportFiles:
    return ReportFiles(p["hh"], p["dd"], p["mm"], p["yy"], p["draws"], None if without.get("soil") else p["soil"],
                       None if without.get("stems") else p["stems"],
                       None if without.get("stems") else p["stem_carbon"])


def _annual_csv(path: Path) -> dict[str, float]:
    with path.open(newline="") as fh:
        row = next(csv.DictReader(fh))
    out = {}
    for k, v in row.items():
        try:
            out[k] = float(v)
        except ValueError:
            continue
    return out


def test_the_pdf_has_its_pages_plots_and_the_annual_table(made: dict[str, Path], tmp_path: Path) -> None:
    pdf = made["pdf"]
    data = build_from_files(_files(made), site="SYN", lat=LAT, lon=LON, stations=["tower-1"])
    rows = ReportSummary(data).rows
    pages = pdftools.page_count(pdf)
    assert pages >= 1 + FIGURE_PAGES + 1  # table, plots, provenance
    images = pdftools.page_images(pdf, tmp_path)
    assert len(images) == pages
    for k in range(1, 1 + FIGURE_PAGES):  # every plot page carries a plot over the whole page
        assert pdftools.ink(images[k]) > 0.05, f"page {k + 1} looks blank"
        assert pdftools.inked_cells(images[k]) >= 12, f"page {k + 1} has no plot"
    text = pdftools.text(pdf, 1)
    for row in rows:
        assert row.status == "measured", row
        assert row.gc_text in text and row.tco2e_text in text, row
    # the numbers are the budget command's own annual file, read independently here
    annual = _annual_csv(made["yy"])
    assert fmt_pm(annual["NEE_F"], annual["NEE_F_UNC"]) in text
    assert fmt_pm(annual["NEE_F_TCO2E"], annual["NEE_F_UNC_TCO2E"], 2) in text
    for name in ("GPP_NT", "RECO_NT", "GPP_DT", "RECO_DT"):
        assert re.search(rf"{annual[name]:.1f} ± ", text), name
    with made["stem_carbon"].open(newline="") as fh:
        plot = next(csv.DictReader(fh))
    assert f"{float(plot['C_AGB_INC']) * 100:.1f} ± {float(plot['C_AGB_INC_SD']) * 100:.1f}" in text
    everything = pdftools.text(pdf)
    for digest in data.provenance.inputs:
        assert digest.sha256 in everything.replace("\n", " ")
    assert "Provenance" in everything and "tower-1" in everything


def test_a_report_without_soil_and_stems_says_not_measured(made: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "lean"
    result = runner.invoke(app, ["report", "--budget", str(made["hh"]), "--site", "SYN", "--out-dir", str(out),
                                 "--format", "pdf"])
    assert result.exit_code == 0, result.output
    assert "computed from the half-hourly budget file" in result.output
    pdf = out / "SYN_2021_carbon_report.pdf"
    assert not (out / "SYN_2021_carbon_report.html").exists()
    table = pdftools.text(pdf, 1)
    assert table.count("not measured") == 4  # gC and tCO2e of soil efflux and stem increment
    images = pdftools.page_images(pdf, tmp_path)
    for k in (5, 6):  # soil and stems pages: a sentence, no plot
        assert pdftools.ink(images[k]) < 0.02
        assert pdftools.inked_cells(images[k]) <= 4
        assert "not measured" in pdftools.text(pdf, k + 1)
    # the NEE sums recomputed from the half-hourly file equal the budget command's annual file
    annual = _annual_csv(made["yy"])
    assert fmt_pm(annual["NEE_F"], annual["NEE_F_UNC"]) in table


def test_the_html_opens_in_chromium_without_console_messages(made: dict[str, Path]) -> None:
    page = made["html"].read_text(encoding="utf-8")
    assert not re.search(r"""(?:src|href)\s*=\s*["'](?!#|data:)""", page), "a reference outside the page"
    load = open_page(made["html"])
    assert load.returncode == 0
    assert load.console == []
    dom = load.dom
    for section in SECTION_IDS:
        match = re.search(rf'<section id="{section}">(.*?)</section>', dom, flags=re.S)
        assert match, f"section {section} missing"
        if section not in ("budget", "provenance"):
            assert "<svg" in match.group(1), f"section {section} has no plot"
    data = build_from_files(_files(made), site="SYN", lat=LAT, lon=LON, stations=["tower-1"])
    for row in ReportSummary(data).rows:
        assert row.gc_text in dom and row.tco2e_text in dom
    assert data.content_digest() in dom


def test_the_browser_check_sees_script_errors_and_outside_requests(made: dict[str, Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken.html"
    page = made["html"].read_text(encoding="utf-8")
    broken.write_text(page.replace("</body>", '<img src="http://127.0.0.1:9/x.png"><script>nope()</script></body>'),
                      encoding="utf-8")
    load = open_page(broken)
    assert len(load.console) == 2, load.console
    assert any("img-src" in m for m in load.console)


@pytest.mark.parametrize(("args", "message"), [
    ([], "needs the carbon budget; give --budget"),
    (["--budget", "{missing}"], "cannot read the budget file"),
    (["--budget", "{no_randunc}"], "no NEE_F_RANDUNC column"),
    (["--budget", "{unsorted}"], "does not come after row"),
    (["--budget", "{hh}", "--soil", "{soil_no_unc}"], "no FC_SOIL_GRAD_UNC column"),
    (["--budget", "{hh}", "--year", "2022"], "no row for 2022"),
])
def test_bad_input_exits_2_naming_the_problem(made: dict[str, Path], tmp_path: Path, args: list[str],
                                              message: str) -> None:
    hh_lines = made["hh"].read_text().splitlines()
    header = hh_lines[0].split(",")
    drop = header.index("NEE_F_RANDUNC")
    no_randunc = tmp_path / "no_randunc.csv"
    no_randunc.write_text("\n".join(",".join(c for i, c in enumerate(line.split(",")) if i != drop)
                                    for line in hh_lines) + "\n")
    unsorted = tmp_path / "unsorted.csv"
    unsorted.write_text("\n".join([hh_lines[0], hh_lines[2], hh_lines[1], *hh_lines[3:]]) + "\n")
    soil_lines = made["soil"].read_text().splitlines()
    soil_no_unc = tmp_path / "soil.csv"
    soil_no_unc.write_text("\n".join(line.replace("FC_SOIL_GRAD_UNC", "X") for line in soil_lines[:50]) + "\n")
    names = {"missing": tmp_path / "nope.csv", "no_randunc": no_randunc, "unsorted": unsorted, "hh": made["hh"],
             "soil_no_unc": soil_no_unc}
    argv = ["report", *(a.format(**names) for a in args), "--site", "SYN", "--out-dir", str(tmp_path / "out")]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_without_draws_the_ustar_page_gives_the_percentiles(made: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "nodraws"
    result = runner.invoke(app, ["report", "--budget", str(made["hh"]), "--annual", str(made["yy"]), "--site", "SYN",
                                 "--out-dir", str(out), "--format", "pdf"])
    assert result.exit_code == 0, result.output
    annual = _annual_csv(made["yy"])
    page = pdftools.text(out / "SYN_2021_carbon_report.pdf", 5)
    assert "draws are not among the inputs" in page
    assert f"p95 {annual['USTAR_THRESHOLD_P95']:.3f}" in page
    assert "no u* filtering" not in page


def test_the_command_needs_no_matplotlib_until_it_renders(made: dict[str, Path], tmp_path: Path) -> None:
    def run(budget: Path) -> str:
        probe = ("import sys; import gateway.cli; assert 'matplotlib' not in sys.modules, 'imported at start'; "
                 "sys.modules['matplotlib'] = None; from typer.testing import CliRunner; "
                 f"r = CliRunner().invoke(gateway.cli.app, ['report', '--budget', {str(budget)!r}, "
                 f"'--site', 'S', '--out-dir', {str(tmp_path / 'out')!r}]); print(r.exit_code, r.output)")
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                              check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    bad = run(tmp_path / "none.csv")
    assert bad.startswith("2 ") and "cannot read the budget file" in bad  # the input is checked first
    good = run(made["hh"])
    assert good.startswith("2 ") and "sinkwatch report needs" in good and "pip install 'sinkwatch[report]'" in good
