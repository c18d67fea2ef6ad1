"""Signed items and their chain: what a station signs, how it travels, and how anyone re-checks it later.

Every item a station delivers (a reading batch, a flux record, a raw file, a health report: one MQTT message of one
channel, under its per-channel delivery `seq`) is signed with the station's Ed25519 key (`gateway.trust.keys`) and
linked to the item before it on the same channel: a chain per station and channel.

**The signed bytes** are a few lines of ASCII, nothing in them ambiguous (every field is a number, a hex digest, an
identifier or a topic, none of which can hold a newline)::

    sinkwatch-sig/1
    <topic>                       sinkwatch/v1/<site>/<station>/<channel>: binds the item to its station
    <channel>
    <key_id>                      which of the station's keys signed (16 hex)
    <epoch>                       the chain (16 hex), new when a station's buffer file is new
    <seq>                         the item's delivery seq
    <prev_seq> <prev_at> <prev_digest>   the item before it on this channel ("- - -" for the first of a chain)
    <at>                          when it was first signed (ns since 1970, station clock; rises strictly per chain)
    <payload_sha256>              SHA-256 of the exact MQTT payload bytes
    <content_sha256>              raw channel: SHA-256 of the archive file the payload carries; else "-"

`digest` = SHA-256 of these bytes: the item's name in the chain, what the next item names as `prev_digest`. A
resend repeats the item byte for byte (payload, link and signature), so it has the same digest; Ed25519 is
deterministic, so even a re-signature after a restart is the same.

**On the wire** the signature travels beside the payload, not in it, as one MQTT v5 user property
`sinkwatch-sig` (`envelope_text`): `v=1;key=..;epoch=..;seq=..;prev=<seq>:<at>:<digest>;at=..;content=..;sig=..`.
The payload stays the channel's JSON document unchanged, so subscribers that do not verify read it as before.
The receiver recomputes `payload_sha256` itself; the content digest it checks against what it stores.

**What the central service keeps** (its ledger, gateway/central/store/ledger.py): every field of the signed bytes,
the signature and the digest, and for readings and fluxes the payload itself (compressed), so an audit can verify
the signature again years later, follow the chain, and compare every signed value with what the store holds now.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.trust.keys import key_id as key_id_of
from gateway.trust.keys import verify

SIGNATURE_FORMAT = "sinkwatch-sig/1"
USER_PROPERTY = "sinkwatch-sig"  # the MQTT v5 user property name
NO_CONTENT = "-"

_HEX16 = re.compile(r"^[0-9a-f]{16}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_TOPIC = re.compile(r"^[A-Za-z0-9_./+-]{1,300}$")
_CHANNEL = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class EnvelopeError(ValueError):
    """A `sinkwatch-sig` property that cannot be read; the message says which part."""


@dataclass(frozen=True)
class Link:
    """An item's place in its chain, fixed when the station first signs it."""

    epoch: str  # 16 hex
    seq: int
    at: int  # ns since 1970 on the station's clock, strictly rising within the chain
    prev_seq: int | None = None  # None: the first item of the chain
    prev_at: int | None = None
    prev_digest: str | None = None

    def __post_init__(self) -> None:
        if not _HEX16.match(self.epoch):
            raise EnvelopeError(f"epoch {self.epoch!r} is not 16 hex digits")
        if self.seq < 0 or self.at < 0:
            raise EnvelopeError("seq and at are not negative")
        previous = (self.prev_seq, self.prev_at, self.prev_digest)
        if any(p is None for p in previous) and any(p is not None for p in previous):
            raise EnvelopeError("prev names seq, at and digest together, or none of them")
        if self.prev_digest is not None and not _HEX64.match(self.prev_digest):
            raise EnvelopeError("prev digest is not 64 hex digits")
        if self.prev_at is not None and self.prev_at >= self.at:
            raise EnvelopeError(f"at {self.at} is not after the previous item's {self.prev_at}")


@dataclass(frozen=True)
class Envelope:
    """What travels beside a payload: the signer's key, the link, the content digest and the signature."""

    key_id: str
    link: Link
    content: str  # content digest (hex) or NO_CONTENT
    signature: bytes


def signed_bytes(topic: str, channel: str, key_id: str, link: Link, payload_sha256: str, content: str) -> bytes:
    """The exact bytes a station signs (module doc)."""
    if not _TOPIC.match(topic) or not _CHANNEL.match(channel) or not _HEX16.match(key_id):
        raise EnvelopeError(f"cannot sign for topic {topic!r}, channel {channel!r}, key {key_id!r}")
    if not _HEX64.match(payload_sha256) or not (content == NO_CONTENT or _HEX64.match(content)):
        raise EnvelopeError("payload and content digests are 64 hex digits (content may be '-')")
    previous = "- - -" if link.prev_seq is None else f"{link.prev_seq} {link.prev_at} {link.prev_digest}"
    lines = (SIGNATURE_FORMAT, topic, channel, key_id, link.epoch, str(link.seq), previous, str(link.at),
             payload_sha256, content)
    return ("\n".join(lines) + "\n").encode("ascii")


def item_digest(message: bytes) -> str:
    """An item's name in its chain: SHA-256 (hex) of its signed bytes."""
    return hashlib.sha256(message).hexdigest()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Signed:
    """A signed item: its envelope, the signed bytes and their digest."""

    envelope: Envelope
    message: bytes
    digest: str
    payload_sha256: str


def sign(key: Ed25519PrivateKey, topic: str, channel: str, link: Link, payload: bytes,
         content: str = NO_CONTENT, *, key_id: str | None = None) -> Signed:
    """Sign one item (station side)."""
    kid = key_id or key_id_of(key.public_key())
    payload_sha256 = sha256_hex(payload)
    message = signed_bytes(topic, channel, kid, link, payload_sha256, content)
    return Signed(Envelope(kid, link, content, key.sign(message)), message, item_digest(message), payload_sha256)


def check(public_key: Ed25519PublicKey, topic: str, channel: str, envelope: Envelope,
          payload_sha256: str) -> Signed | None:
    """The signed item when `envelope`'s signature holds for this topic, channel and payload digest, else None."""
    message = signed_bytes(topic, channel, envelope.key_id, envelope.link, payload_sha256, envelope.content)
    if not verify(public_key, envelope.signature, message):
        return None
    return Signed(envelope, message, item_digest(message), payload_sha256)


def envelope_text(envelope: Envelope) -> str:
    """The `sinkwatch-sig` user property's value."""
    link = envelope.link
    previous = "-" if link.prev_seq is None else f"{link.prev_seq}:{link.prev_at}:{link.prev_digest}"
    signature = base64.b64encode(envelope.signature).decode("ascii")
    return (f"v=1;key={envelope.key_id};epoch={link.epoch};seq={link.seq};prev={previous};at={link.at};"
            f"content={envelope.content};sig={signature}")


_FIELDS = ("v", "key", "epoch", "seq", "prev", "at", "content", "sig")


def parse_envelope(text: str) -> Envelope:
    """The inverse of `envelope_text`; EnvelopeError naming the part that is wrong."""
    if len(text) > 1024:
        raise EnvelopeError(f"{USER_PROPERTY} is {len(text)} characters long; a signature envelope has < 400")
    parts: dict[str, str] = {}
    for part in text.split(";"):
        name, sep, value = part.partition("=")
        if not sep or name in parts:
            raise EnvelopeError(f"{USER_PROPERTY}: {part[:40]!r} is not name=value (or repeats a name)")
        parts[name] = value
    if tuple(parts) != _FIELDS:
        raise EnvelopeError(f"{USER_PROPERTY} has the parts {', '.join(parts)}; expected {', '.join(_FIELDS)}")
    if parts["v"] != "1":
        raise EnvelopeError(f"{USER_PROPERTY} version {parts['v'][:8]!r}; this sinkwatch reads version 1")
    if not _HEX16.match(parts["key"]):
        raise EnvelopeError("key is not a 16 hex digit key id")
    try:
        seq, at = _whole(parts["seq"]), _whole(parts["at"])
        if parts["prev"] == "-":
            link = Link(parts["epoch"], seq, at)
        else:
            prev_seq, prev_at, prev_digest = parts["prev"].split(":")
            link = Link(parts["epoch"], seq, at, _whole(prev_seq), _whole(prev_at), prev_digest)
    except ValueError as exc:
        raise EnvelopeError(f"{USER_PROPERTY}: {exc}") from None
    content = parts["content"]
    if not (content == NO_CONTENT or _HEX64.match(content)):
        raise EnvelopeError("content is neither '-' nor a 64 hex digit digest")
    try:
        signature = base64.b64decode(parts["sig"], validate=True)
    except binascii.Error:
        raise EnvelopeError("sig is not base64") from None
    if len(signature) != 64:
        raise EnvelopeError(f"sig holds {len(signature)} bytes; an Ed25519 signature has 64")
    return Envelope(parts["key"], link, content, signature)


def _whole(text: str) -> int:
    if not text.isdigit() or len(text) > 20:
        raise ValueError(f"{text[:24]!r} is not a whole number")
    return int(text)
