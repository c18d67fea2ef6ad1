"""The ingest's PUBLISH properties decoded without paho's `Properties` machinery give what paho gives, and leave to
paho whatever they do not take (gateway/central/mqttreceive.py)."""

from __future__ import annotations

import queue
import struct
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt import _packet
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import MalformedPacket, Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.central.mqttreceive import RECEIVE_BYTES, ReceivingClient, decode_publish_properties
from gateway.testing.services import MosquittoInstance
from gateway.trust.keys import key_id
from gateway.trust.signing import NO_CONTENT, USER_PROPERTY, Link, envelope_text, sign

TOPIC = b"sinkwatch/v1/site/st01/readings"


def station_envelope() -> str:
    key = Ed25519PrivateKey.generate()
    link = Link("0123456789abcdef", 7, 1_800_000_000_000_000_000, 6, 1_799_999_999_000_000_000, "ab" * 32)
    signed = sign(key, TOPIC.decode(), "readings", link, b'{"seq":7}', NO_CONTENT, key_id=key_id(key.public_key()))
    return envelope_text(signed.envelope)


def utf8(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


def block(body: bytes) -> bytes:
    """A properties block: its length as a Variable Byte Integer, then the properties."""
    length, encoded = len(body), b""
    while True:
        digit, length = length % 128, length // 128
        encoded += bytes([digit | (0x80 if length else 0)])
        if not length:
            return encoded + body


def publish_body(properties: bytes, payload: bytes = b'{"seq":7}', mid: int = 4242) -> bytes:
    return utf8(TOPIC) + struct.pack("!H", mid) + properties + payload


def paho_decoded(body: bytes) -> _packet.PublishPacket:
    return _packet.decode_publish(0x32, bytearray(body), MQTTProtocolVersion.MQTTv5)


def ours(body: bytes) -> tuple[Properties, bytes] | None:
    decoded = decode_publish_properties(body, 2 + len(TOPIC) + 2)
    return None if decoded is None else (decoded[0], body[decoded[1]:])


def same_as_paho(body: bytes) -> None:
    """Where ours takes the block, paho decodes it to the same properties and payload."""
    mine = ours(body)
    if mine is None:
        return
    reference = paho_decoded(body)
    assert vars(mine[0]) == vars(reference.properties)
    assert mine[1] == reference.payload


def test_a_stations_properties_are_taken_and_equal_pahos() -> None:
    properties = Properties(PacketTypes.PUBLISH)
    properties.MessageExpiryInterval = 7 * 86400
    properties.UserProperty = (USER_PROPERTY, station_envelope())
    body = publish_body(properties.pack())
    mine = ours(body)
    assert mine is not None
    assert vars(mine[0]) == vars(paho_decoded(body).properties)
    assert vars(mine[0])["UserProperty"] == [(USER_PROPERTY, properties.UserProperty[0][1])]  # type: ignore[attr-defined]
    assert vars(mine[0])["MessageExpiryInterval"] == 7 * 86400
    assert str(mine[0]) == str(properties)
    assert mine[1] == b'{"seq":7}'


@pytest.mark.parametrize("properties", [b"", bytes([38]) + utf8(b"k") + utf8(b"v"),
                                        bytes([38]) + utf8(b"k") + utf8(b"x" * 300),  # a block of two length bytes
                                        bytes([2]) + struct.pack("!L", 0) + bytes([38]) + utf8(b"") + utf8(b"")])
def test_small_and_empty_blocks_equal_pahos(properties: bytes) -> None:
    body = publish_body(block(properties))
    assert ours(body) is not None
    same_as_paho(body)


@pytest.mark.parametrize("properties", [
    bytes([38]) + utf8(b"k") + utf8(b"a\x00b"),  # NUL
    bytes([38]) + utf8("a\ufeffb".encode()) + utf8(b"v"),  # U+FEFF
    bytes([38]) + utf8(b"k") + utf8(b"\xed\xa0\x80"),  # D800 encoded as UTF-8 would be
    bytes([38]) + utf8(b"k") + utf8(b"\xff"),  # not UTF-8
])
def test_strings_paho_refuses_are_left_to_paho(properties: bytes) -> None:
    body = publish_body(block(properties))
    assert ours(body) is None
    with pytest.raises((MalformedPacket, UnicodeDecodeError)):
        paho_decoded(body)


@pytest.mark.parametrize("body", [
    publish_body(block(bytes([2]) + struct.pack("!L", 1) + bytes([2]) + struct.pack("!L", 2))),  # expiry twice
    publish_body(block(bytes([1, 1]))),  # another property (payload format indicator)
    publish_body(block(bytes([35]) + struct.pack("!H", 3))),  # a topic alias
    publish_body(bytes([3, 38]) + utf8(b"k")),  # a pair cut off by the block's end
    publish_body(bytes([0x80, 0x00])),  # a length not in its shortest form
    publish_body(block(bytes([38]) + utf8(b"k") + utf8(b"v" * 20_000))),  # a block of three length bytes
    utf8(TOPIC) + b"\x10",  # cut off in the packet identifier
])
def test_anything_else_is_left_to_paho(body: bytes) -> None:
    assert ours(body) is None


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.just(38), st.text(max_size=40), st.text(max_size=40)),
    st.tuples(st.just(38), st.binary(max_size=12), st.binary(max_size=12)),
    st.tuples(st.just(2), st.integers(0, 2**32 - 1)),
    st.tuples(st.sampled_from([1, 3, 8, 35, 0, 200]), st.binary(max_size=6)),
), max_size=5), st.binary(max_size=30), st.integers(-3, 3))
def test_drawn_blocks_equal_pahos_where_taken(parts: list[tuple[Any, ...]], payload: bytes, skew: int) -> None:
    raw = b""
    for part in parts:
        if part[0] == 38:
            name, value = (p.encode() if isinstance(p, str) else p for p in part[1:])
            raw += bytes([38]) + utf8(name) + utf8(value)
        elif part[0] == 2:
            raw += bytes([2]) + struct.pack("!L", part[1])
        else:
            raw += bytes([part[0]]) + part[1]
    encoded = block(raw)
    # a block length that is off by a few bytes either way: ours must not take what does not fit
    if skew and len(raw) < 128:
        encoded = bytes([max(0, min(127, len(raw) + skew))]) + raw
    same_as_paho(publish_body(encoded, payload))


@pytest.mark.integration
def test_a_signed_message_through_mosquitto_arrives_with_pahos_properties(mosquitto: MosquittoInstance) -> None:
    """End to end: what a station publishes (expiry, signature) arrives at the ingest's client with the same
    properties paho's own client decodes, and the payload whole."""
    envelope = station_envelope()
    received: dict[str, queue.Queue[mqtt.MQTTMessage]] = {"ours": queue.Queue(), "paho": queue.Queue()}
    clients = []
    for name, kind in (("ours", ReceivingClient), ("paho", mqtt.Client)):
        client = kind(CallbackAPIVersion.VERSION2, client_id=f"receiver-{name}", protocol=MQTTProtocolVersion.MQTTv5)
        client.on_message = lambda _c, _u, message, into=received[name]: into.put(message)
        subscribed: queue.Queue[bool] = queue.Queue()
        client.on_subscribe = lambda *_args, done=subscribed: done.put(True)
        client.on_connect = lambda c, *_args: c.subscribe([(TOPIC.decode(), SubscribeOptions(qos=1))])
        client.connect(mosquitto.host, mosquitto.port)
        client.loop_start()
        subscribed.get(timeout=10)
        clients.append(client)
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="station", protocol=MQTTProtocolVersion.MQTTv5)
    publisher.connect(mosquitto.host, mosquitto.port)
    publisher.loop_start()
    properties = Properties(PacketTypes.PUBLISH)
    properties.MessageExpiryInterval = 3600
    properties.UserProperty = (USER_PROPERTY, envelope)
    payload = b'{"readings":[]}' * 500  # more than a TCP segment
    publisher.publish(TOPIC.decode(), payload, qos=1, properties=properties).wait_for_publish(10)
    try:
        mine, reference = received["ours"].get(timeout=10), received["paho"].get(timeout=10)
        assert mine.payload == reference.payload == payload
        assert (mine.topic, mine.qos, mine.retain) == (reference.topic, reference.qos, reference.retain)
        assert isinstance(mine.properties, Properties)
        mine_properties, paho_properties = vars(mine.properties), vars(reference.properties)
        assert mine_properties["UserProperty"] == paho_properties["UserProperty"] == [(USER_PROPERTY, envelope)]
        # the broker counts the expiry down: a second may have passed between the two deliveries
        assert abs(mine_properties["MessageExpiryInterval"] - paho_properties["MessageExpiryInterval"]) <= 1
    finally:
        for client in (*clients, publisher):
            client.disconnect()
            client.loop_stop()


@pytest.mark.integration
def test_a_burst_of_messages_of_every_size_arrives_whole_and_in_order(mosquitto: MosquittoInstance) -> None:
    """The socket read in large pieces (`ReceivingClient._sock_recv`): packets that end, start and span anywhere in
    a piece, one larger than a piece, all arrive whole and in order; the pieces read only when paho asks."""
    sizes = [0, 1, 127, 128, 16_383, 16_384, 70_000, RECEIVE_BYTES + 1, 5, 3 * RECEIVE_BYTES] + [200 + i for i in
                                                                                                  range(400)]
    payloads = [bytes([i % 251]) * size for i, size in enumerate(sizes)]
    got: queue.Queue[bytes] = queue.Queue()
    subscribed: queue.Queue[bool] = queue.Queue()
    receiver = ReceivingClient(CallbackAPIVersion.VERSION2, client_id="receiver", protocol=MQTTProtocolVersion.MQTTv5)
    receiver.on_message = lambda _c, _u, message: got.put(bytes(message.payload))
    receiver.on_subscribe = lambda *_args: subscribed.put(True)
    receiver.on_connect = lambda c, *_args: c.subscribe([(TOPIC.decode(), SubscribeOptions(qos=1))])
    receiver.connect(mosquitto.host, mosquitto.port)
    receiver.loop_start()
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="station", protocol=MQTTProtocolVersion.MQTTv5)
    publisher.connect(mosquitto.host, mosquitto.port)
    publisher.loop_start()
    try:
        subscribed.get(timeout=10)
        properties = Properties(PacketTypes.PUBLISH)
        properties.UserProperty = (USER_PROPERTY, "x" * 400)
        infos = [publisher.publish(TOPIC.decode(), payload, qos=1, properties=properties) for payload in payloads]
        for info in infos:
            info.wait_for_publish(30)
        arrived = [got.get(timeout=30) for _ in payloads]
        assert [len(p) for p in arrived] == sizes
        assert arrived == payloads
    finally:
        for client in (receiver, publisher):
            client.disconnect()
            client.loop_stop()
