"""`sinkwatch audit verify` (gateway/central/audit.py) on a store filled through the real ingest path with signed
batches: a clean chain is intact; one altered value and one deleted batch among thousands of readings are found."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from gateway.central.audit import AuditReport, verify_station
from gateway.central.budget import run_station_budget
from gateway.central.config import MqttSettings
from gateway.central.ingest import Ingestor
from gateway.central.rawstore import RawArchive
from gateway.central.recompute import recompute
from gateway.central.store import InfluxStore, SqliteStore, Store
from gateway.central.store.base import to_ns
from gateway.cli import app
from gateway.contract import (
    FluxRecord,
    ReadingBatch,
    encode_flux_record,
    fluxes_topic,
    raw_payload,
    raw_topic,
    readings_topic,
)
from gateway.edge.fluxrunner import FluxOutbox, FluxRunner, FluxSetup
from gateway.edge.signer import ChainSigner
from gateway.flux.ec.settings import ProcessingSettings
from gateway.flux.metadata import site_metadata_from_headers
from gateway.model import utc_now
from gateway.rawarchive.archive import SUFFIX, read_archive
from gateway.trust.keys import KeyRegistry, generate_key

from ..flux.test_recompute import SITE_FACTS, write_station_archive
from ..flux.test_recompute import T0 as RAW_T0
from .budget_helpers import YEAR as BUDGET_YEAR
from .budget_helpers import after, fill_store, first_days, simulated_year
from .budget_helpers import job as budget_job
from .helpers import T0, series

BATCHES = 300
PER_BATCH = 10
TOPIC = readings_topic("site1", "st1")
BACKENDS = ["sqlite", pytest.param("influx", marks=pytest.mark.integration)]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        instance: Store = SqliteStore(tmp_path / "central.sqlite")
    else:
        instance = InfluxStore(request.getfixturevalue("influxd").url, database="audit")
    yield instance
    instance.close()


def fill(store: Store, data_dir: Path, tmp_path: Path, batches: int = BATCHES) -> None:
    """Signed batches of a station through Ingestor.handle, as the broker would hand them over."""
    key = generate_key(tmp_path / "st1.key")
    KeyRegistry(data_dir).register("site1", "st1", key.public_key())
    signer = ChainSigner(key, tmp_path / "st1.buffer")
    ingestor = Ingestor(MqttSettings(port=1), store, data_dir, signatures="required")
    for seq in range(batches):
        readings = series("st1", [400.0 + seq + i / 7 for i in range(PER_BATCH)],
                          start=T0 + seq * PER_BATCH * timedelta(seconds=10))
        payload = ReadingBatch(site="site1", station="st1", seq=seq, sent=T0, readings=readings
                               ).model_dump_json().encode()
        ingestor.handle(TOPIC, payload, signer.envelope("readings", TOPIC, seq, payload))
    assert ingestor.counters()["readings_stored"] == batches * PER_BATCH
    signer.close()


def audit(store: Store, data_dir: Path) -> AuditReport:
    now = utc_now()
    return verify_station(store, KeyRegistry(data_dir), RawArchive(data_dir / "raw"), "st1",
                          now - timedelta(days=1), now + timedelta(days=1))


def tamper(store: Store, altered_seq: int, deleted_seq: int) -> None:
    """An insider with write access to the database: one value changed, one batch deleted with its ledger item."""
    items = {i.seq: i for i in store.ledger_items("st1", 0, 2**62)}
    altered_time = to_ns(T0 + (altered_seq * PER_BATCH + 3) * timedelta(seconds=10))
    deleted = items[deleted_seq]
    if isinstance(store, SqliteStore):
        with sqlite3.connect(store.path) as db:
            assert db.execute("UPDATE readings SET value = value + 0.5 WHERE station='st1' AND time_ns=?",
                              (altered_time,)).rowcount == 1
            db.execute("DELETE FROM readings WHERE station='st1' AND time_ns BETWEEN ? AND ?",
                       (deleted.data_start, deleted.data_end))
            assert db.execute("DELETE FROM ledger WHERE at=?", (deleted.at,)).rowcount == 1
        return
    assert isinstance(store, InfluxStore)
    stored_value = 400.0 + altered_seq + 3 / 7
    line = (f"readings,site=site1,station=st1,sensor=gmp252,variable=CO2,unit=umol\\ mol-1,time_source=gateway "
            f"value={stored_value + 0.5} {altered_time}")
    httpx.post(f"{store.url}/write", params={"db": "audit"}, content=line).raise_for_status()
    for query in (f"DELETE FROM readings WHERE time >= {deleted.data_start} AND time <= {deleted.data_end}",
                  f"DELETE FROM ledger WHERE time = {deleted.at}"):
        httpx.post(f"{store.url}/query", data={"db": "audit", "q": query}).raise_for_status()


def test_the_audit_finds_one_altered_value_and_one_deleted_batch_among_thousands(store: Store,
                                                                                   tmp_path: Path) -> None:
    data_dir = tmp_path / "central"
    fill(store, data_dir, tmp_path)
    clean = audit(store, data_dir)
    assert clean.intact, clean.lines()
    assert clean.readings_checked == BATCHES * PER_BATCH and clean.items["readings"] == BATCHES

    tamper(store, altered_seq=120, deleted_seq=200)

    report = audit(store, data_dir)
    assert not report.intact
    assert sorted((f.kind, f.seq) for f in report.breaks) == [("altered_reading", 120), ("gap", 201)]
    text = "\n".join(report.lines())
    assert "VERDICT: BROKEN - 1 altered_reading, 1 gap" in text
    assert "its predecessor, item 200" in text


def test_the_audit_command_reports_intact_then_broken_and_exits_non_zero(tmp_path: Path) -> None:
    data_dir = tmp_path / "central"
    config = tmp_path / "central.yaml"
    config.write_text(f"storage:\n  kind: sqlite\n  path: {tmp_path / 'central.sqlite'}\ndata_dir: {data_dir}\n")
    store = SqliteStore(tmp_path / "central.sqlite")
    fill(store, data_dir, tmp_path, batches=20)
    now = utc_now()
    args = ["audit", "verify", "--station", "st1", "--from", (now - timedelta(hours=1)).isoformat(),
            "--to", (now + timedelta(hours=1)).isoformat(), "-c", str(config), "--sample", "0"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "VERDICT: INTACT" in result.output and "signatures verified: 20 of 20" in result.output

    tamper(store, altered_seq=5, deleted_seq=11)
    store.close()
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "BREAK altered_reading: readings item 5" in result.output
    assert "BREAK gap: readings item 12" in result.output


# --- step 4: fluxes recomputed from the archived raw files -------------------------------------------------------


def station_fluxes(data_dir: Path, store: Store, tmp_path: Path) -> list[FluxRecord]:
    """What a station with a sonic and an open-path analyzer sends: its raw archive files (channel raw) and the
    fluxes its flux runner computed from them (channel fluxes), signed, through the central ingest path."""
    station_archive = tmp_path / "station-archive"
    write_station_archive(tmp_path / "station-raw")
    station_archive.mkdir()
    for path in sorted((tmp_path / "station-raw").rglob(f"*{SUFFIX}")):
        shutil.copy(path, station_archive / path.name)  # the station's archive folder holds every sensor's files
    files = sorted(station_archive.iterdir())
    headers = {p.name.split("_")[0]: read_archive(p).header for p in files}
    setup = FluxSetup(sonic="sonic", analyzer="irga", settings=ProcessingSettings(), period_s=1800,
                      metadata=site_metadata_from_headers(SITE_FACTS, headers["sonic"], headers["irga"]))
    outbox = FluxOutbox(tmp_path / "station.buffer", "site1", "st1")
    runner = FluxRunner(setup, "site1", "st1", station_archive, outbox, started=RAW_T0.timestamp() - 10)
    records = runner.step(RAW_T0.timestamp() + 3600 + 60)
    outbox.close()
    assert [r.status for r in records] == ["ok", "ok"], [r.reasons for r in records]

    key = generate_key(tmp_path / "st1.key")
    KeyRegistry(data_dir).register("site1", "st1", key.public_key())
    signer = ChainSigner(key, tmp_path / "st1.buffer")
    ingestor = Ingestor(MqttSettings(port=1), store, data_dir, signatures="required")
    for seq, path in enumerate(files):
        payload = raw_payload("site1", "st1", path, seq=seq)
        ingestor.handle(raw_topic("site1", "st1"), payload,
                        signer.envelope("raw", raw_topic("site1", "st1"), seq, payload))
    for seq, record in enumerate(records):
        payload = encode_flux_record(record.model_copy(update={"seq": seq}))
        ingestor.handle(fluxes_topic("site1", "st1"), payload,
                        signer.envelope("fluxes", fluxes_topic("site1", "st1"), seq, payload))
    signer.close()
    counters = ingestor.counters()
    assert (counters["raw_files_archived"], counters["flux_records_stored"]) == (len(files), 2), counters
    return records


def alter_flux(store: Store, end: datetime, name: str, factor: float, settings_hash: str | None = None) -> None:
    """An insider edits one value of a stored flux record (of one result set when several are stored)."""
    [record] = store.query_fluxes("st1", end - timedelta(minutes=1), end, settings_hash)
    if isinstance(store, SqliteStore):
        values = {**record.values, name: float(record.values[name] or 0.0) * factor}
        with sqlite3.connect(store.path) as db:
            assert db.execute("UPDATE fluxes SET flux_values=? WHERE station='st1' AND end_ns=? AND settings_hash=?",
                              (json.dumps(values), to_ns(end), record.settings_hash)).rowcount == 1
        return
    assert isinstance(store, InfluxStore)
    value = float(record.values[name] or 0.0) * factor
    line = (f"fluxes,engine_version={record.engine_version.replace(' ', chr(92) + ' ')},settings_hash="
            f"{record.settings_hash},site=site1,station=st1 {name}={value!r} {to_ns(end)}")
    httpx.post(f"{store.url}/write", params={"db": store.database, "precision": "ns"}, content=line).raise_for_status()


def test_the_audit_recomputes_station_fluxes_from_the_raw_archive_and_finds_an_altered_one(
        store: Store, tmp_path: Path) -> None:
    data_dir = tmp_path / "central"
    station_fluxes(data_dir, store, tmp_path)
    config = tmp_path / "central.yaml"
    if isinstance(store, SqliteStore):
        storage = {"kind": "sqlite", "path": str(store.path)}
    else:
        assert isinstance(store, InfluxStore)
        storage = {"kind": "influxdb", "url": store.url, "database": store.database}
    config.write_text(yaml.safe_dump({"storage": storage, "data_dir": str(data_dir)}), encoding="utf-8")
    metadata = tmp_path / "site.yaml"
    metadata.write_text(yaml.safe_dump(SITE_FACTS), encoding="utf-8")
    now = utc_now()
    args = ["audit", "verify", "--station", "st1", "--from", (now - timedelta(hours=1)).isoformat(),
            "--to", (now + timedelta(hours=1)).isoformat(), "-c", str(config), "--sample", "2",
            "--metadata", str(metadata)]

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "fluxes recomputed from raw files: 2" in result.output
    assert "raw files compared with the archive: 4" in result.output
    assert "VERDICT: INTACT" in result.output

    alter_flux(store, RAW_T0 + timedelta(hours=1), "FC", 1.5)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "fluxes recomputed from raw files: 2" in result.output
    # the stored record no longer matches the one the station signed (step 3) nor its recomputation (step 4)
    assert re.search(r"BREAK flux_not_reproduced: fluxes: period ending 2026-11-25T11:00:00(\.0+)?Z: recomputed "
                     r"from the archived raw files, FC differ", result.output), result.output
    assert "BREAK altered_flux: fluxes item 1" in result.output
    assert "VERDICT: BROKEN - 1 altered_flux, 1 flux_not_reproduced" in result.output



# --- step 5: derived results against the inputs they keep ---------------------------------------------------------


def test_the_audit_checks_recomputed_fluxes_against_the_raw_files_they_came_from(store: Store,
                                                                                 tmp_path: Path) -> None:
    data_dir = tmp_path / "central"
    station_fluxes(data_dir, store, tmp_path)  # signed station fluxes and the raw files, archived centrally
    linear = ProcessingSettings.model_validate({"detrend_meth": "linear", "timeconst": 300})
    summary = recompute(RawArchive(data_dir / "raw"), store, "st1", RAW_T0, RAW_T0 + timedelta(hours=1),
                        site_metadata=SITE_FACTS, settings=linear)
    assert summary.stored == 2

    def audit_window() -> AuditReport:
        return verify_station(store, KeyRegistry(data_dir), RawArchive(data_dir / "raw"), "st1",
                              RAW_T0 - timedelta(hours=1), utc_now() + timedelta(hours=1))

    clean = audit_window()
    assert clean.intact, clean.lines()
    assert clean.recomputed_fluxes_checked == 2
    assert f"2 flux records of {summary.engine_version}, settings {summary.settings_hash}, recomputed from raw " \
           "files kept with them" in "\n".join(clean.lines())

    alter_flux(store, RAW_T0 + timedelta(minutes=30), "H", 0.5, settings_hash=summary.settings_hash)
    [irga] = (data_dir / "raw" / "site1" / "st1" / "irga").glob(f"irga_{RAW_T0:%Y%m%dT%H%M}Z.*")
    irga.write_bytes(irga.read_bytes()[:-100])  # a raw file truncated in the archive

    report = audit_window()
    kinds = sorted((f.kind, f.channel) for f in report.breaks)
    # the altered recomputed record (it carries no signature: its kept digest finds it), the truncated file as an
    # input of the first period, and as a file the station signed
    assert kinds == [("altered_flux", "fluxes"), ("missing_raw_file", "raw"), ("raw_input_changed", "raw")], kinds
    text = "\n".join(report.lines())
    assert "recomputed centrally: the stored record is not the one computed from its raw files" in text
    assert f"its input irga/{irga.name}" in text and "is changed since" in text


def test_the_audit_finds_a_budget_whose_flux_records_changed_after_it_was_computed(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "central.sqlite")
    try:
        year = first_days(simulated_year(), 30, skip_days=150)
        fill_store(store, year)
        budget = run_station_budget(store, "st1", BUDGET_YEAR, budget_job(), now=after(year))
        window = (budget.run.first_end - timedelta(days=1), budget.run.last_end + timedelta(days=1))
        registry = KeyRegistry(tmp_path / "central")

        clean = verify_station(store, registry, RawArchive(tmp_path / "raw"), "st1", *window)
        assert clean.intact, clean.lines()
        [line] = [line for line in clean.lines() if "derived: budget" in line]
        assert f"settings {budget.run.settings_hash}" in line and line.endswith("inputs unchanged")
        assert f"from {budget.run.inputs['fluxes']['records']} flux records" in line

        [record] = store.query_fluxes("st1", budget.run.first_end + timedelta(days=3),
                                      budget.run.first_end + timedelta(days=3, minutes=30))
        store.write_fluxes([record.model_copy(update={"values": {**record.values, "FC": -40.0}})])
        report = verify_station(store, registry, RawArchive(tmp_path / "raw"), "st1", *window)
    finally:
        store.close()
    assert [(f.kind, f.channel) for f in report.breaks] == [("budget_inputs_changed", "budget")]
    assert "its input fluxes" in report.breaks[0].detail and "sinkwatch flux budget --station st1" in \
        report.breaks[0].detail


def test_an_audit_of_a_station_the_store_never_held_is_refused_not_intact(tmp_path: Path) -> None:
    """First-day walkthrough (docs/reliability.md): a mistyped station (ST1 for st1) audited nothing and printed
    `VERDICT: INTACT - every item verified`, exit 0; `flux budget --station` said "no coordinates"."""
    data_dir = tmp_path / "central"
    config = tmp_path / "central.yaml"
    config.write_text(f"storage:\n  kind: sqlite\n  path: {tmp_path / 'central.sqlite'}\ndata_dir: {data_dir}\n")
    store = SqliteStore(tmp_path / "central.sqlite")
    fill(store, data_dir, tmp_path, batches=2)
    store.close()
    now = utc_now()
    window = ["--from", (now - timedelta(hours=1)).isoformat(), "--to", (now + timedelta(hours=1)).isoformat()]
    result = CliRunner().invoke(app, ["audit", "verify", "--station", "ST1", *window, "-c", str(config)])
    assert result.exit_code == 2, result.output
    assert "station 'ST1' is not in the store (nothing of it was ever stored); did you mean --station st1?" \
        in result.output
    assert "VERDICT" not in result.output
    budget = CliRunner().invoke(app, ["flux", "budget", "--station", "nowhere", "--year", "2025", "-c", str(config)])
    assert budget.exit_code == 2 and "station 'nowhere' is not in the store" in budget.output
    assert "the store holds st1" in budget.output
    report = CliRunner().invoke(app, ["report", "--station", "st01", "--year", "2025", "-c", str(config),
                                      "--out-dir", str(tmp_path / "report")])
    assert report.exit_code == 2 and "station 'st01' is not in the store" in report.output  # it said: compute its
    assert "did you mean --station st1?" in report.output                                  # budget first

    # a known station with nothing signed in the window: still no break, but said to have verified nothing
    earlier = ["--from", (now - timedelta(days=3)).isoformat(), "--to", (now - timedelta(days=2)).isoformat()]
    empty = CliRunner().invoke(app, ["audit", "verify", "--station", "st1", *earlier, "-c", str(config)])
    assert empty.exit_code == 0, empty.output
    assert "nothing of the station was signed in this window, so nothing was verified" in empty.output
