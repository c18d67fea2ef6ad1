"""The dead-letter file stays bounded: payloads capped with length and hash, files rotated, drops counted."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from pathlib import Path

import pytest

from gateway.central.config import DeadLetterSettings, MqttSettings
from gateway.central.deadletter import DeadLetterFile, payload_fields
from gateway.central.ingest import Ingestor
from gateway.central.store import SqliteStore
from gateway.contract import readings_topic


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_huge_payload_is_kept_cut_with_its_length_and_hash(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.sqlite")
    ingestor = Ingestor(MqttSettings(port=1), store, tmp_path / "data",
                        dead_letter=DeadLetterSettings(max_payload_bytes=1000))
    payload = b'{"junk": "' + b"x" * (5 * 1024 * 1024) + b'"}'

    ingestor.handle(readings_topic("site1", "st1"), payload)

    [record] = lines(ingestor.dead_letter_path)
    assert record["reason"] == "schema"
    assert record["payload"] == payload[:1000].decode()
    assert (record["payload_bytes"], record["payload_truncated"]) == (len(payload), True)
    assert record["payload_sha256"] == hashlib.sha256(payload).hexdigest()
    assert ingestor.dead_letter_path.stat().st_size < 3000
    store.close()


def test_cutting_never_splits_a_character_and_binary_stays_base64() -> None:
    text = payload_fields("ééé".encode(), 3)  # 6 bytes; a cut at 3 splits the second é
    assert (text["payload_encoding"], text["payload"], text["payload_truncated"]) == ("utf-8", "é", True)

    binary = payload_fields(b"\xff\xfe\x00\x01", 2)
    assert binary["payload_encoding"] == "base64"
    assert base64.b64decode(str(binary["payload"])) == b"\xff\xfe"
    assert binary["payload_bytes"] == 4

    whole = payload_fields(b"{}", 10)
    assert (whole["payload"], whole["payload_truncated"]) == ("{}", False)


def test_the_file_rotates_keeps_n_files_and_counts_what_it_drops(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "dead-letter.jsonl"
    dead = DeadLetterFile(path, max_file_bytes=200, keep_files=2)
    record = {"reason": "schema", "filler": "y" * 50}  # 93 bytes a line: two fit in one file

    with caplog.at_level(logging.WARNING, logger="gateway.central.deadletter"):
        for number in range(9):
            dead.append([{**record, "number": number}])

    files = [path, dead.rotated(1), dead.rotated(2)]
    assert not dead.rotated(3).exists()
    kept = [r["number"] for f in reversed(files) for r in lines(f)]
    assert kept == [4, 5, 6, 7, 8]  # the newest, oldest file first, in order
    assert dead.dropped == 4  # 0..3, two rotations of two records each
    assert all(f.stat().st_size <= 200 for f in files)
    assert any("dropped since start" in r.getMessage() for r in caplog.records)


def test_with_no_old_files_kept_rotation_starts_the_file_afresh(tmp_path: Path) -> None:
    path = tmp_path / "dead-letter.jsonl"
    dead = DeadLetterFile(path, max_file_bytes=100, keep_files=0)
    for number in range(3):
        dead.append([{"number": number, "filler": "z" * 60}])

    assert [r["number"] for r in lines(path)] == [2]
    assert dead.dropped == 2


def test_ingest_counters_report_dropped_dead_letters(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.sqlite")
    ingestor = Ingestor(MqttSettings(port=1), store, tmp_path / "data",
                        dead_letter=DeadLetterSettings(max_file_bytes=4096, keep_files=1, max_payload_bytes=256))
    for _ in range(40):
        ingestor.handle(readings_topic("site1", "st1"), b"not json " * 40)

    counters = ingestor.counters()
    assert counters["dead_lettered"] == 40
    kept = len(lines(ingestor.dead_letter_path)) + len(lines(ingestor.dead_letters.rotated(1)))
    assert counters["dead_letters_dropped"] == 40 - kept > 0
    store.close()
