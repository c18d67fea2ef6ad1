"""Signed bytes, envelopes and the station's chain signer (gateway/trust/signing.py, gateway/edge/signer.py)."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path

import pytest

from gateway.edge.signer import ChainSigner
from gateway.trust.keys import generate_key, key_id, load_private_key
from gateway.trust.signing import (
    NO_CONTENT,
    EnvelopeError,
    Link,
    check,
    envelope_text,
    parse_envelope,
    sha256_hex,
    sign,
    signed_bytes,
)

TOPIC = "sinkwatch/v1/hainich/plot-07/readings"


def test_signed_bytes_name_every_field_and_the_signature_binds_them(tmp_path: Path) -> None:
    key = generate_key(tmp_path / "k")
    first = sign(key, TOPIC, "readings", Link("00" * 8, 0, 10), b'{"seq":0}')
    link = Link("00" * 8, 1, 20, 0, 10, first.digest)
    signed = sign(key, TOPIC, "readings", link, b'{"seq":1}')
    text = signed.message.decode()
    assert text.splitlines() == ["sinkwatch-sig/1", TOPIC, "readings", key_id(key.public_key()), "00" * 8, "1",
                                 f"0 10 {first.digest}", "20", sha256_hex(b'{"seq":1}'), "-"]
    public = key.public_key()
    envelope = parse_envelope(envelope_text(signed.envelope))
    assert envelope == signed.envelope
    assert check(public, TOPIC, "readings", envelope, sha256_hex(b'{"seq":1}')) == signed
    # any change of payload, topic (another station), channel or link breaks it
    assert check(public, TOPIC, "readings", envelope, sha256_hex(b'{"seq":2}')) is None
    assert check(public, TOPIC.replace("plot-07", "plot-08"), "readings", envelope, signed.payload_sha256) is None
    assert check(public, TOPIC, "fluxes", envelope, signed.payload_sha256) is None
    moved = parse_envelope(envelope_text(signed.envelope).replace("seq=1;", "seq=2;"))
    assert check(public, TOPIC, "readings", moved, signed.payload_sha256) is None
    # another key's signature is not this key's
    other = generate_key(tmp_path / "other")
    assert check(other.public_key(), TOPIC, "readings", envelope, signed.payload_sha256) is None


@pytest.mark.parametrize(("text", "problem"), [
    ("v=2;key=0123456789abcdef;epoch=0000000000000000;seq=1;prev=-;at=5;content=-;sig=AA==", "version"),
    ("v=1;key=xyz;epoch=0000000000000000;seq=1;prev=-;at=5;content=-;sig=AA==", "key id"),
    ("v=1;key=0123456789abcdef;epoch=0000000000000000;seq=-1;prev=-;at=5;content=-;sig=AA==", "whole number"),
    ("v=1;key=0123456789abcdef;epoch=0000000000000000;seq=1;prev=0:9:ab;at=5;content=-;sig=AA==", "prev digest"),
    ("v=1;key=0123456789abcdef;epoch=0000000000000000;seq=1;prev=-;at=5;content=-;sig=AA==", "64"),
    ("v=1;key=0123456789abcdef;seq=1;prev=-;at=5;content=-;sig=AA==", "expected"),
    ("nonsense", "name=value"),
])
def test_malformed_envelopes_are_named(text: str, problem: str) -> None:
    with pytest.raises(EnvelopeError, match=problem):
        parse_envelope(text)


def test_a_link_must_follow_its_predecessor_in_time() -> None:
    with pytest.raises(EnvelopeError, match="not after"):
        Link("00" * 8, 2, 10, 1, 10, "0" * 64)


def _signer(tmp_path: Path, clock: list[int]) -> ChainSigner:
    key_path = tmp_path / "station.key"
    key = load_private_key(key_path) if key_path.exists() else generate_key(key_path)
    return ChainSigner(key, tmp_path / "buffer.sqlite", clock_ns=lambda: clock[0])


def test_the_signer_chains_items_and_a_resend_is_the_same_signed_item(tmp_path: Path) -> None:
    clock = [1_000]
    signer = _signer(tmp_path, clock)
    public = signer.key.public_key()
    first = parse_envelope(signer.envelope("readings", TOPIC, 0, b"a"))
    second = parse_envelope(signer.envelope("readings", TOPIC, 1, b"b"))  # the clock stood still: at still rises
    assert first.link.prev_seq is None and second.link.prev_seq == 0
    assert second.link.at == first.link.at + 1
    first_signed = check(public, TOPIC, "readings", first, sha256_hex(b"a"))
    assert first_signed is not None and second.link.prev_digest == first_signed.digest
    clock[0] = 5_000
    assert parse_envelope(signer.envelope("readings", TOPIC, 0, b"a")) == first  # a resend: same link, same sig
    # another channel is another chain
    flux = parse_envelope(signer.envelope("fluxes", TOPIC.replace("readings", "fluxes"), 0, b"f"))
    assert flux.link.prev_seq is None
    # the links survive a restart, and the chain goes on after confirmed items are forgotten
    signer.forget("readings", [(0, 1)])
    signer.close()
    again = _signer(tmp_path, clock)
    third = parse_envelope(again.envelope("readings", TOPIC, 2, b"c"))
    assert third.link.epoch == first.link.epoch and third.link.prev_seq == 1 and third.link.at == 5_000
    assert again.health()["chains"] == {"readings": {"epoch": first.link.epoch, "seq": 2},
                                        "fluxes": {"epoch": flux.link.epoch, "seq": 0}}
    again.close()


def test_confirmed_links_are_dropped_with_the_next_link_or_at_close_not_in_a_commit_of_their_own(
        tmp_path: Path) -> None:
    signer = _signer(tmp_path, [10])
    for seq in range(3):
        signer.envelope("readings", TOPIC, seq, b"item %d" % seq)

    def links() -> list[int]:  # what the file holds, as another connection (a restart after a crash) sees it
        with sqlite3.connect(tmp_path / "buffer.sqlite") as db:
            return sorted(seq for (seq,) in db.execute("SELECT seq FROM chain_links WHERE channel='readings'"))

    signer.forget("readings", [(0, 1)])
    assert links() == [0, 1, 2]  # no commit (no fsync) of its own
    signer.envelope("readings", TOPIC, 1, b"item 1")  # a resend makes no new link: still nothing dropped
    assert links() == [0, 1, 2]
    signer.envelope("readings", TOPIC, 3, b"item 3")
    assert links() == [2, 3]  # dropped in the new link's transaction
    signer.forget("readings", [(2, 3)])
    signer.close()
    assert links() == []
    again = _signer(tmp_path, [20])  # the chain goes on from its head
    assert parse_envelope(again.envelope("readings", TOPIC, 4, b"item 4")).link.prev_seq == 3
    again.close()


def test_a_changed_payload_under_an_existing_link_is_counted(tmp_path: Path) -> None:
    signer = _signer(tmp_path, [10])
    signer.envelope("readings", TOPIC, 0, b"a")
    signer.envelope("readings", TOPIC, 0, b"a, changed")
    assert signer.payload_changes == 1
    signer.close()


def test_raw_items_sign_the_file_they_carry(tmp_path: Path) -> None:
    signer = _signer(tmp_path, [10])
    data = b"\x1f\x8b the archive file"
    payload = json.dumps({"site": "hainich", "station": "plot-07", "sensor": "sonic",
                          "file": "sonic_20260101T0000Z.csv.gz", "size": len(data),
                          "data": base64.b64encode(data).decode(), "seq": 0}).encode()
    envelope = parse_envelope(signer.envelope("raw", TOPIC.replace("readings", "raw"), 0, payload))
    assert envelope.content == sha256_hex(data)
    # a payload that is not a raw chunk signs no content, rather than a digest of something else
    garbled = parse_envelope(signer.envelope("raw", TOPIC.replace("readings", "raw"), 1, b'{"data": "AAAA"}'))
    assert garbled.content == NO_CONTENT
    message = signed_bytes(TOPIC.replace("readings", "raw"), "raw", envelope.key_id, envelope.link,
                           sha256_hex(payload), envelope.content)
    assert message.endswith(f"{sha256_hex(data)}\n".encode())
    signer.close()
