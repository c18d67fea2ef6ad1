"""`sinkwatch audit verify` (gateway/central/audit.py) on a store filled through the real ingest path with signed
batches: a clean chain is intact; one altered value and one deleted batch among thousands of readings are found."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from gateway.central.audit import AuditReport, verify_station
from gateway.central.config import MqttSettings
from gateway.central.ingest import Ingestor
from gateway.central.rawstore import RawArchive
from gateway.central.store import InfluxStore, SqliteStore, Store
from gateway.central.store.base import to_ns
from gateway.cli import app
from gateway.contract import ReadingBatch, readings_topic
from gateway.edge.signer import ChainSigner
from gateway.model import utc_now
from gateway.trust.keys import KeyRegistry, generate_key

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
