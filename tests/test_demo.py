"""`sinkwatch demo` runs the whole chain with nothing but Python: the installed console script, end to end."""

from __future__ import annotations

import html
import math
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from gateway.central.report_data import build_report_data
from gateway.central.store import SqliteStore
from gateway.central.store.base import to_ns
from gateway.cli import app
from gateway.contract import ReadingBatch
from gateway.demo import (
    AIR_PROBE,
    ANALYZER,
    DEMO_TURBULENCE,
    FLUX_AVERAGING_MIN,
    PROFILE,
    PYRANOMETER,
    SOIL_PROBE,
    SONIC,
    DemoRig,
    DemoSummary,
    run_demo,
)
from gateway.demo_budget import NEE_TOLERANCE_GC, NEE_TOLERANCE_SIGMA, PARTITION_TOLERANCE
from gateway.demo_soilstems import CARBON_TOLERANCE_SIGMA, CHAMBER_TOLERANCE, GRO_TOLERANCE_UM, SOIL_TOLERANCE
from gateway.edge.buffer import ReadingBuffer
from gateway.edge.config import load_station_config
from gateway.edge.live import StatusUnavailable, read_status
from gateway.report.html import SECTION_IDS
from gateway.report.summary import ReportSummary
from gateway.testing.services import InfluxInstance, MosquittoInstance
from tests.report import pdftools
from tests.report.browser import UrlLoad, open_page, open_url

REPORT_FIGURE_PAGES = 6  # cumulative NEE, fingerprint, gap fraction, u*, soil, stems

pytestmark = pytest.mark.slow


def sinkwatch_command() -> list[str]:
    script = Path(sys.executable).parent / "sinkwatch"
    return [str(script)] if script.exists() else [shutil.which("sinkwatch") or "sinkwatch"]


def test_demo_stops_by_itself_and_reports_stored_readings(tmp_path: Path) -> None:
    result = subprocess.run(
        [*sinkwatch_command(), "demo", "--duration", "4", "--interval", "0.5", "--data-dir", str(tmp_path),
         # the simulated years (budget, soil and stems: ~20 CPU-s) are the full demo's (full_demo below); that the
         # command computes them by default: test_the_demo_command_computes_the_simulated_years_by_default
         "--no-budget", "--no-soilstems"],
        capture_output=True, text=True, timeout=90, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    match = re.search(r"(\d+) readings read, (\d+) confirmed stored by the central service, (\d+) readings stored",
                      summary)
    assert match, summary
    read, confirmed, stored = (int(g) for g in match.groups())
    assert stored > 0
    assert read == confirmed == stored  # nothing lost between probe and API
    assert "/docs" in result.stdout
    assert re.search(r"^status: +http://127\.0\.0\.1:\d+/ ", result.stdout, flags=re.M)  # the status page's URL
    # the station ran from the station.yaml the demo wrote, and the banner says how to check it
    station_yaml = tmp_path / "station.yaml"
    assert f"sinkwatch station check -c {station_yaml}" in result.stdout
    assert f"sinkwatch live -c {station_yaml}" in result.stdout
    # and how to audit what it signed, on the store it kept
    assert "sinkwatch audit verify --station st01 --site demo-forest --from " in result.stdout
    assert len(load_station_config(station_yaml).sensors) == 11
    # the station's buffer is empty: everything read was confirmed stored, then forgotten
    buffer = ReadingBuffer(tmp_path / "station-buffer.sqlite")
    assert (buffer.pending_readings(), buffer.pending_batches()) == (0, 0)
    buffer.close()
    # --no-budget: no simulated year was computed, and none is claimed
    assert not [line for line in result.stdout.splitlines() if line.startswith("budget:")]


def test_the_demo_command_computes_the_simulated_years_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """What `sinkwatch demo` asks of run_demo (gateway/demo.py) with no flags and with the two opt-outs; the run
    itself is the full demo's (full_demo)."""
    import signal

    import gateway.demo
    import gateway.logs

    asked: list[dict[str, object]] = []

    class Summary:
        readings_stored = 1

        def line(self) -> str:
            return "summary"

    def recording_run_demo(duration_s: float | None, **options: object) -> Summary:
        asked.append({"duration_s": duration_s, **options})
        return Summary()

    monkeypatch.setattr(gateway.demo, "run_demo", recording_run_demo)
    monkeypatch.setattr(gateway.logs, "setup_logging", lambda level: None)  # the worker's logging stays as it is
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # and its signal handlers
    for flags in ([], ["--no-budget", "--no-soilstems"]):
        result = CliRunner().invoke(app, ["demo", "--duration", "2", *flags])
        assert result.exit_code == 0 and result.output.strip() == "summary", result.output
    (default, opted_out) = asked
    assert (default["budget"], default["soilstems"], default["duration_s"]) == (True, True, 2.0)
    assert (opted_out["budget"], opted_out["soilstems"]) == (False, False)


def test_demo_rejects_a_bad_broker_url() -> None:
    result = subprocess.run([*sinkwatch_command(), "demo", "--duration", "1", "--broker", "http://x"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "expected mqtt://HOST[:PORT]" in result.stderr


@pytest.mark.integration
def test_demo_flags_point_it_at_a_real_broker_and_influxdb(
    tmp_path: Path, mosquitto: MosquittoInstance, influxd: InfluxInstance
) -> None:
    summary = run_demo(3, broker_url=f"mqtt://{mosquitto.host}:{mosquitto.port}", influx_url=influxd.url,
                       data_dir=tmp_path, interval_s=0.5, echo=False, budget=False, soilstems=False)
    assert summary.readings_stored > 0
    assert summary.readings_read == summary.readings_confirmed == summary.readings_stored
    # the readings are in the real InfluxDB, not in an embedded store
    response = httpx.post(f"{influxd.url}/query", params={
        "db": "sinkwatch_demo", "q": 'SELECT count("qc") FROM "readings"'})
    count = response.json()["results"][0]["series"][0]["values"][0][1]
    assert count == summary.readings_stored
    assert not (tmp_path / "central.sqlite").exists()


def _wait_all_available(station_yaml: Path, timeout_s: float = 30.0) -> None:
    config = load_station_config(station_yaml)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if all(s["available"] for s in read_status(config)["sensors"]):
                return
        except StatusUnavailable:
            pass
        time.sleep(0.2)
    raise AssertionError("the demo station's sensors did not all become available")


def test_demo_station_check_passes_while_it_runs_and_names_a_stopped_sensor(tmp_path: Path) -> None:
    outputs: list[tuple[int, str]] = []

    def while_running(rig: DemoRig, station_yaml: Path) -> None:
        try:
            _wait_all_available(station_yaml)
            check = ["station", "check", "-c", str(station_yaml)]
            result = CliRunner().invoke(app, check)
            outputs.append((result.exit_code, result.output))
            rig.profile_line.unplug(PROFILE[1][1])  # the 30 cm probe goes quiet on the shared line
            config = load_station_config(station_yaml)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                sensors = read_status(config)["sensors"]
                if next(s for s in sensors if s["name"] == PROFILE[1][0])["available"] is False:
                    break
                time.sleep(0.2)
            result = CliRunner().invoke(app, check)
            outputs.append((result.exit_code, result.output))
        finally:
            stop.set()

    stop = threading.Event()
    summary = run_demo(None, data_dir=tmp_path, interval_s=0.5, echo=False, stop=stop, on_running=while_running,
                       budget=False, soilstems=False)
    (passing_code, passing), (failing_code, failing) = outputs
    assert passing_code == 0, passing
    assert "11 of 11 sensors pass" in passing and "daemon running" in passing
    assert failing_code == 1, failing
    fail_rows = [line for line in failing.splitlines() if " FAIL " in line]
    assert len(fail_rows) == 1 and fail_rows[0].split()[0] == PROFILE[1][0]
    assert f"no reply from address {PROFILE[1][1]}" in fail_rows[0]
    # every reading read was stored, and each kind of sensor is in the store under its own variables
    assert summary.readings_read == summary.readings_confirmed == summary.readings_stored > 0
    by_variable = summary.stored_by_variable
    assert sum(by_variable.values()) == summary.readings_stored
    for variable in ("CO2_1_1_1", "CO2_1_2_1", "CO2_1_3_1", f"SWC{SOIL_PROBE[2]}", "CO2_2_1_1"):
        assert by_variable.get(variable, 0) > 0, (variable, by_variable)
    # the met drivers the carbon budget needs: SW_IN, TA, RH and the derived VPD
    for variable in (f"SW_IN{PYRANOMETER[2]}", f"TA{AIR_PROBE[2]}", f"RH{AIR_PROBE[2]}", f"VPD{AIR_PROBE[2]}"):
        assert by_variable.get(variable, 0) > 0, (variable, by_variable)
    # the streams' summaries: means, SDs and counts of the sonic and the analyzer
    for variable in ("U", "U_SD", "U_N", "WS", "CO2", "CO2_SD", "H2O_N"):
        assert by_variable.get(variable, 0) > 0, (variable, by_variable)
    assert {SONIC, ANALYZER} <= {line.split()[0] for line in passing.splitlines()[2:]}


def _covariance_standard_error(a: str, b: str, n: int) -> float:
    """Sampling standard error of a covariance of two AR(1) series with the demo field's time scale (Bartlett's
    formula for the variance of a sample cross-covariance, with exponential auto-correlations)."""
    spec = DEMO_TURBULENCE
    rho = math.exp(-1.0 / (spec.frequency_hz * spec.time_scale_s))
    inflation = (1 + rho**2) / (1 - rho**2)
    return math.sqrt((spec.truth(a, a) * spec.truth(b, b) + spec.truth(a, b) ** 2) * inflation / n)


@dataclass
class FullDemo:
    summary: DemoSummary
    data_dir: Path
    page: UrlLoad  # the status page in chromium while the station ran
    firing: tuple[set[tuple[str, str, str]], set[tuple[str, str, str]]]  # alerts firing before and after the load


# the demo's simulated years (~80 s on a slow machine), then up to 150 s for the live station's first flux period
# (~60 s on a slow machine) and a page load in chromium: past the suite's 120-s guard, so a hang guard of its own
FULL_DEMO_TIMEOUT_S = 420


@pytest.fixture(scope="module")
def full_demo(tmp_path_factory: pytest.TempPathFactory) -> FullDemo:
    """One demo with everything on, shared by the tests that need a whole one (each would cost a minute or two on
    its own): the simulated budget year and soil and stems year through the central jobs, then the live station
    until its own health, alerts and first half-hourly (here 30-s) flux period are in the API, the status page
    loaded in Debian's headless chromium meanwhile. The screenshot is kept as test-artifacts/demo-status-page.png."""
    from datetime import timedelta

    from gateway.model import format_time, utc_now

    data_dir = tmp_path_factory.mktemp("demo")
    loads: list[UrlLoad] = []
    firing: list[set[tuple[str, str, str]]] = []
    stop = threading.Event()

    def while_running(rig: DemoRig, station_yaml: Path) -> None:
        try:
            deadline = time.monotonic() + 150
            with httpx.Client(base_url=rig.api_url, timeout=10) as client:
                while time.monotonic() < deadline:  # health stored, alerts evaluated, a flux period in
                    reports = client.get("/api/v1/station-health").json()
                    alerts = client.get("/api/v1/alerts").json()
                    now = utc_now()
                    fluxes = client.get("/api/v1/fluxes", params={
                        "station": "st01", "start": format_time(now - timedelta(hours=1)),
                        "end": format_time(now + timedelta(hours=1))}).json()["records"]
                    if reports and alerts["alerts"] and fluxes:  # the live station's own, not the simulated year's
                        break
                    time.sleep(1)
                artefacts = Path(__file__).resolve().parents[1] / "test-artifacts"
                firing.append(_firing(client))
                loads.append(open_url(f"{rig.api_url}/", virtual_time_ms=20_000,
                                      screenshot=artefacts / "demo-status-page.png"))
                firing.append(_firing(client))
        finally:
            stop.set()

    summary = run_demo(None, data_dir=data_dir, interval_s=0.5, echo=False, stop=stop, on_running=while_running)
    [page] = loads
    before, after = firing
    return FullDemo(summary, data_dir, page, (before, after))


@pytest.mark.timeout(FULL_DEMO_TIMEOUT_S)
def test_demo_station_computes_fluxes_that_match_the_prescribed_turbulence(full_demo: FullDemo) -> None:
    summary = full_demo.summary
    assert summary.flux_records, "no flux period of the live station reached the API"
    for record in summary.flux_records:
        assert record["status"] == "ok", record["reasons"]
        values = record["values"]
        n = values["N_RECORDS"]
        assert n >= 0.95 * FLUX_AVERAGING_MIN * 60 * DEMO_TURBULENCE.frequency_hz
        for name, (a, b) in {"W_T_SONIC_COV": ("w", "ts"), "W_CO2_COV": ("w", "co2"),
                             "W_H2O_COV": ("w", "h2o")}.items():
            tolerance = 4 * _covariance_standard_error(a, b, n)
            assert abs(values[name] - DEMO_TURBULENCE.truth(a, b)) < tolerance, (name, values[name], tolerance)
        # the analyzer's lag behind the sonic is exactly the field's
        assert values["CO2_TLAG"] == values["H2O_TLAG"] == DEMO_TURBULENCE.lag_s
    assert "flux periods (last w'Ts'" in summary.line()


@pytest.mark.integration
@pytest.mark.timeout(FULL_DEMO_TIMEOUT_S)
def test_the_status_page_shows_the_demo_station_live_in_chromium(full_demo: FullDemo) -> None:
    """`sinkwatch demo` prints the status page's URL; in Debian's headless chromium the page loads and refreshes
    itself without a console message and shows the demo station's health, its alarms (this machine's clock
    discipline decides clock_unsynchronised), a flux period and the simulated year's budget."""
    load = full_demo.page
    assert load.returncode == 0 and load.console == []
    assert "demo-forest/st01" in load.dom and 'id="detail">demo-forest/st01<' in load.dom
    assert "soil_co2_10cm" in load.dom and 'class="series"' in load.dom  # the station's sensors and a key series
    assert re.search(r'class="flux q[012n]"', load.dom)  # its own half-hourly (here 30 s) fluxes, by flag
    assert "NEE <b>" in load.dom and "the whole year" in load.dom  # the simulated year's budget
    assert re.search(r'<body data-updated="\d{4}-', load.dom)  # status.js refreshed the page
    assert load.screenshot is not None and load.screenshot.stat().st_size > 20_000
    # the alarms: the page lists what the central alert engine has firing (what fires here depends on this
    # machine's clock discipline; an alert that changed while the page loaded may be either way)
    before, after = full_demo.firing
    alarms = load.dom.split("<h2>Alerts</h2>", 1)[1].split("</table>", 1)[0]
    shown = {(rule, station, html.unescape(subject)) for rule, station, subject in
             re.findall(r"<tr><td>(\w+)</td><td>([^<]+)</td><td>([^<]*)</td>", alarms)}
    assert before & after <= shown <= before | after, (before, after, shown)
    assert shown or "No alert is firing." in alarms
    assert re.search(rf">{len(shown)} alerts? firing<", load.dom)


def _firing(client: httpx.Client) -> set[tuple[str, str, str]]:
    alerts = client.get("/api/v1/alerts").json()["alerts"]
    return {(a["rule"], f"{a['site']}/{a['station']}", a["subject"]) for a in alerts if a["state"] == "firing"}


@pytest.mark.timeout(FULL_DEMO_TIMEOUT_S)
def test_demo_budget_of_the_simulated_year_is_within_tolerance_of_its_truth(full_demo: FullDemo) -> None:
    summary, tmp_path = full_demo.summary, full_demo.data_dir
    budget = summary.budget
    assert budget is not None
    truth = budget.truth
    # read back through GET /api/v1/budget while the demo ran; the tolerances of gateway/demo_budget.py
    nee, sigma = budget.value("NEE_F"), budget.value("NEE_F_UNC")
    assert 0 < sigma < 20
    assert abs(nee - truth["NEE"]) <= max(NEE_TOLERANCE_SIGMA * sigma, NEE_TOLERANCE_GC), (nee, sigma, truth)
    assert budget.value("GPP_NT") == pytest.approx(truth["GPP"], rel=PARTITION_TOLERANCE)
    assert budget.value("RECO_NT") == pytest.approx(truth["RECO"], rel=PARTITION_TOLERANCE)
    assert budget.within_tolerance()
    # the u* filter found the simulation's prescribed threshold, with its bootstrap distribution
    assert budget.ustar["threshold"] == pytest.approx(budget.ustar_truth, abs=0.05)
    assert len(budget.ustar["draws"]) == 100 and budget.ustar["p05"] <= budget.ustar["p95"]
    assert budget.value("GAP_FRACTION") > 0.3  # the simulated year has gaps the job filled
    # what the demo prints of it (`budget:` lines): a simulated year, NEE beside its truth, where it is served
    lines = budget.lines()
    assert any("simulated year" in line and "gateway/simulation/fluxyear.py" in line for line in lines)
    assert any(re.search(r"NEE +-?\d+\.\d ± \d+\.\d gC m-2 +truth +-?\d+\.\d", line) for line in lines)
    assert any("/api/v1/budget?station=st01&year=" in line for line in lines)
    # the store holds it as a complete year of the demo station, beside the live readings
    store = SqliteStore(tmp_path / "central.sqlite")
    (run,) = store.budget_runs("st01", budget.year)
    store.close()
    assert run.complete and run.settings_hash == budget.settings_hash
    assert summary.readings_read == summary.readings_confirmed == summary.readings_stored > 0


@pytest.mark.timeout(FULL_DEMO_TIMEOUT_S)
def test_demo_soil_and_stems_of_the_simulated_year_are_within_tolerance_of_their_truth(full_demo: FullDemo) -> None:
    summary, data_dir = full_demo.summary, full_demo.data_dir
    soil = summary.soilstems
    assert soil is not None
    # read back through GET /api/v1/soil and /api/v1/stems while the demo ran; gateway/demo_soilstems.py's bars
    total, sigma = soil.soil_sum
    assert abs(total - soil.soil_truth) <= SOIL_TOLERANCE * soil.soil_truth, (total, soil.soil_truth)
    assert sigma > 0 and soil.soil_median_error < 0.05
    # the ± printed is told apart: the diffusivity models' spread dominates the probes' calibration, neither above it
    model_part, measurement_part = soil.soil_unc_parts
    assert 0 < measurement_part < model_part <= sigma
    assert any(line.startswith(f"  the ± is systematic: ± {model_part:.1f} the spread") for line in soil.lines())
    assert soil.chamber_closures >= 365 and soil.chamber_median_error <= CHAMBER_TOLERANCE
    assert set(soil.gro) == {"t1", "t2", "t3"}
    for tree, (gro, true) in soil.gro.items():
        assert abs(gro - true) <= GRO_TOLERANCE_UM, (tree, gro, true)
    carbon, carbon_sd, _co2e = soil.carbon
    assert abs(carbon - soil.carbon_truth) <= CARBON_TOLERANCE_SIGMA * carbon_sd
    assert soil.within_tolerance()
    # the store holds both products of the year, and the live year's attempt is reported, not silent
    store = SqliteStore(data_dir / "central.sqlite")
    assert [r.complete for r in store.product_runs("soil", "st01", soil.year)] == [True]
    assert [r.complete for r in store.product_runs("stems", "st01", soil.year)] == [True]
    store.close()
    assert any(line.startswith("live ") for line in soil.live)


@pytest.mark.timeout(FULL_DEMO_TIMEOUT_S)
def test_the_site_report_from_the_demos_data_has_every_section_filled(full_demo: FullDemo, tmp_path: Path) -> None:
    summary, data_dir = full_demo.summary, full_demo.data_dir
    assert summary.soilstems is not None and summary.central_yaml is not None
    year = summary.soilstems.year
    result = CliRunner().invoke(app, ["report", "--station", "st01", "--year", str(year), "-c",
                                      str(summary.central_yaml), "--out-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    pdf = tmp_path / f"demo-forest_{year}_carbon_report.pdf"
    html = tmp_path / f"demo-forest_{year}_carbon_report.html"
    # what the report must show, derived from the same store independently of the command
    store = SqliteStore(data_dir / "central.sqlite")
    data = build_report_data(store, "st01", year)
    store.close()
    rows = ReportSummary(data).rows
    assert {r.key for r in rows} >= {"NEE", "GPP_NT", "RECO_DT", "FC_SOIL_GRAD", "FC_SOIL_CH_1"}
    assert all(row.status == "measured" for row in rows), [(r.key, r.status, r.note) for r in rows]
    # the PDF: the table, one page per plot, each inked over the page (every section filled), the provenance
    pages = pdftools.page_count(pdf)
    assert pages >= 1 + REPORT_FIGURE_PAGES + 1
    images = pdftools.page_images(pdf, tmp_path)
    for k in range(1, 1 + REPORT_FIGURE_PAGES):
        assert pdftools.ink(images[k]) > 0.05, f"page {k + 1} looks blank"
        assert pdftools.inked_cells(images[k]) >= 12, f"page {k + 1} has no plot"
    table = pdftools.text(pdf, 1)
    assert "not measured" not in table and "not computed" not in table
    for row in rows:
        assert row.gc_text in table and row.tco2e_text in table, row
    everything = pdftools.text(pdf).replace("\n", " ")
    for digest in data.provenance.inputs:
        assert digest.sha256 in everything
    for engine in data.provenance.engines.values():
        assert engine.split()[0] in everything
    # the HTML in a real headless browser: no console message, every section with its plot, the numbers
    load = open_page(html)
    assert load.returncode == 0 and load.console == []
    for section in SECTION_IDS:
        match = re.search(rf'<section id="{section}">(.*?)</section>', load.dom, flags=re.S)
        assert match, f"section {section} missing"
        if section not in ("budget", "provenance"):
            assert "<svg" in match.group(1), f"section {section} has no plot"
    for row in rows:
        assert row.gc_text in load.dom
    assert data.content_digest() in load.dom


def test_the_audit_finds_the_demos_record_intact_and_then_a_deliberate_tamper(tmp_path: Path) -> None:
    """The issue's "done when": `sinkwatch audit verify` reports a clean chain for the demo, and a broken one after
    an insider edits one stored value and deletes one batch (its readings and its ledger entry)."""
    summary = run_demo(5, data_dir=tmp_path, interval_s=0.5, echo=False, budget=False, soilstems=False)
    assert summary.audit_args is not None and summary.readings_stored > 0

    intact = CliRunner().invoke(app, summary.audit_args)
    assert intact.exit_code == 0, intact.output
    assert "VERDICT: INTACT" in intact.output
    assert re.search(rf"readings compared with the store: {summary.readings_stored} ", intact.output), intact.output
    signed = re.search(r"signatures verified: (\d+) of (\d+)", intact.output)
    assert signed and signed[1] == signed[2] and int(signed[1]) > 3

    store = SqliteStore(tmp_path / "central.sqlite")
    batches = [i for i in store.ledger_items("st01", 0, 2**62) if i.channel == "readings"]
    store.close()
    assert len(batches) >= 3, "the demo sent too few batches to delete one in the middle"
    altered, deleted, successor = batches[0], batches[len(batches) // 2], batches[len(batches) // 2 + 1]
    altered_reading = next(r for r in ReadingBatch.model_validate_json(altered.payload_bytes() or b"").readings
                           if r.value is not None)
    with sqlite3.connect(tmp_path / "central.sqlite") as db:
        assert db.execute("UPDATE readings SET value = value + 0.5 WHERE station='st01' AND sensor=? AND "
                          "variable=? AND time_ns=?", (altered_reading.sensor, altered_reading.variable,
                                                       to_ns(altered_reading.time))).rowcount == 1
        for r in ReadingBatch.model_validate_json(deleted.payload_bytes() or b"").readings:
            db.execute("DELETE FROM readings WHERE station='st01' AND sensor=? AND variable=? AND time_ns=?",
                       (r.sensor, r.variable, to_ns(r.time)))
        assert db.execute("DELETE FROM ledger WHERE channel='readings' AND at=?", (deleted.at,)).rowcount == 1

    broken = CliRunner().invoke(app, summary.audit_args)
    assert broken.exit_code == 1, broken.output
    assert f"BREAK altered_reading: readings item {altered.seq}: {altered_reading.sensor} " \
           f"{altered_reading.variable}" in broken.output
    assert f"BREAK gap: readings item {successor.seq}: its predecessor, item {deleted.seq}" in broken.output
    assert "VERDICT: BROKEN - 1 altered_reading, 1 gap" in broken.output
