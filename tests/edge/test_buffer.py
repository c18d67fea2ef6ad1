"""The disk buffer forgets a reading only after its batch is acknowledged, and survives a restart."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.contract import ReadingBatch
from gateway.edge.buffer import ReadingBuffer
from gateway.model import QualityFlag
from gateway.testing.factories import make_readings


def values_of(payload: bytes) -> list[float | None]:
    return [r["value"] for r in json.loads(payload)["readings"]]


def test_claim_forms_batches_in_order_and_ack_deletes(tmp_path: Path) -> None:
    buffer = ReadingBuffer(tmp_path / "b.sqlite")
    buffer.append(make_readings(5))
    first = buffer.claim(2)
    second = buffer.claim(2, exclude=[first.seq] if first else [])
    assert first is not None and second is not None
    assert (first.seq, second.seq) == (0, 1)
    sent = datetime(2026, 11, 25, 11, 0, tzinfo=UTC)
    assert values_of(first.payload("site", "st01", sent)) == [400.0, 401.0]
    assert values_of(second.payload("site", "st01", sent)) == [402.0, 403.0]
    assert buffer.ack(first.seq) == 2
    assert buffer.pending_readings() == 3
    assert buffer.pending_batches() == 1


def test_unacknowledged_batch_is_handed_out_again_after_restart_with_same_seq(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    buffer = ReadingBuffer(path)
    buffer.append(make_readings(3))
    claimed = buffer.claim(10)
    assert claimed is not None
    buffer.close()

    reopened = ReadingBuffer(path)
    again = reopened.claim(10)
    assert again is not None
    assert again.seq == claimed.seq
    assert again.reading_bodies == claimed.reading_bodies
    # a new batch gets a fresh seq: sequence numbers are never reused, even across restarts
    reopened.append(make_readings(1, start=900.0))
    fresh = reopened.claim(10, exclude=[again.seq])
    assert fresh is not None and fresh.seq == claimed.seq + 1


def test_payload_is_a_valid_reading_batch(tmp_path: Path) -> None:
    buffer = ReadingBuffer(tmp_path / "b.sqlite")
    readings = make_readings(3)
    missing = readings[0].model_copy(update={"value": None, "qc": QualityFlag.MISSING, "qc_reason": "NaN"})
    buffer.append([missing, *readings[1:]])
    batch = buffer.claim(10)
    assert batch is not None
    sent = datetime(2026, 11, 25, 11, 0, tzinfo=UTC)
    parsed = ReadingBatch.model_validate_json(batch.payload("site-a", "st01", sent))
    assert parsed.seq == batch.seq
    assert parsed.sent == sent
    assert parsed.readings == [missing, *readings[1:]]


def test_ack_of_unknown_seq_releases_nothing(tmp_path: Path) -> None:
    buffer = ReadingBuffer(tmp_path / "b.sqlite")
    buffer.append(make_readings(2))
    assert buffer.ack(42) == 0
    assert buffer.pending_readings() == 2


def test_claim_on_empty_buffer_returns_none(tmp_path: Path) -> None:
    assert ReadingBuffer(tmp_path / "b.sqlite").claim(10) is None


def test_the_commits_that_leave_their_fsync_to_the_next_leave_appends_synchronous_full(tmp_path: Path) -> None:
    """A delete on a receipt (and a signed station's claim) commits without an fsync of its own (module doc of
    gateway/edge/buffer.py); the connection must be back at FULL for the appends, whose durability is the rule,
    also after a delete that failed."""
    buffer = ReadingBuffer(tmp_path / "b.sqlite", durable_claims=False)

    def synchronous() -> int:
        return int(buffer._db.execute("PRAGMA synchronous").fetchone()[0])

    assert synchronous() == 2  # FULL
    buffer.append(make_readings(4))
    first = buffer.claim(2)
    assert first is not None and synchronous() == 2
    assert buffer.ack(first.seq) == 2 and synchronous() == 2
    second = buffer.claim(2)
    assert second is not None
    assert buffer.ack_ranges([(second.seq, second.seq)]) == (1, 2) and synchronous() == 2
    buffer.append(make_readings(1))
    third = buffer.claim(2)
    assert third is not None
    with pytest.raises(ValueError):
        buffer.ack_ranges([(third.seq,)])  # type: ignore[list-item]
    assert synchronous() == 2 and buffer.pending_batches() == 1  # rolled back, nothing deleted
