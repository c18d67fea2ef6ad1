"""The ingest's MQTT client: paho's, with the properties of an incoming PUBLISH decoded without paho's `Properties`
machinery when they are the ones our stations send.

Every signed item carries its signature in an MQTT v5 user property (`sinkwatch-sig`, about 400 characters) and a
message expiry interval (gateway/edge/delivery.py). paho 2.2 decodes them into a `Properties` object that checks
each character of a UTF-8 string in a Python loop (`readUTF`: a D800-DFFF code point, NUL, U+FEFF) and builds its
tables of property names at every construction: about 0.25 ms of CPU a message on this project's machine
(docs/performance.md, "INGEST — 2026-12-05/06"), in the network thread every message of the stream passes through.

`decode_publish_properties` takes the properties block of a PUBLISH when it holds only the properties a station
sends (`Message Expiry Interval`, `User Property`) in the form MQTT v5 requires; the same checks as paho's are
made in C: a strict UTF-8 decode refuses D800-DFFF (they cannot be encoded in valid UTF-8), `in` finds NUL and
U+FEFF. The result is a `Properties` object equal to paho's (same attributes, same values). Anything else — another
property, a length that does not fit, a string paho would refuse, a duplicate expiry interval — is left to paho's
own decoding (`None`), so whatever paho accepts or refuses stays paho's decision, errors and disconnects included.
"""

from __future__ import annotations

import struct

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

MESSAGE_EXPIRY_INTERVAL = 2
USER_PROPERTY = 38
# its name tables are shared by the objects made here (paho never changes them)
_EMPTY = Properties(PacketTypes.PUBLISH)
_UINT16 = struct.Struct("!H")
_UINT32 = struct.Struct("!L")


def _utf8(buffer: bytes, at: int, end: int) -> tuple[str, int] | None:
    """The UTF-8 string (2-byte length, bytes) at `at` within `end` and where it ends; None where paho's `readUTF`
    would refuse it or the bytes run out."""
    if at + 2 > end:
        return None
    (length,) = _UINT16.unpack_from(buffer, at)
    start = at + 2
    if start + length > end:
        return None
    try:
        text = buffer[start:start + length].decode("utf-8")  # strict: an encoded D800-DFFF is refused here
    except UnicodeDecodeError:
        return None
    if "\x00" in text or "\ufeff" in text:
        return None
    return text, start + length


def decode_publish_properties(buffer: bytes, at: int) -> tuple[Properties, int] | None:
    """The properties block of a PUBLISH starting at `at` of `buffer` (what follows the packet identifier) and
    where the payload starts, or None when paho must decode it (module doc)."""
    if at >= len(buffer):
        return None
    length = buffer[at]
    if length >= 0x80:  # a block of 128 bytes or more: its length takes more bytes
        if at + 1 >= len(buffer) or buffer[at + 1] >= 0x80 or buffer[at + 1] == 0:
            return None  # longer than 16 kB, or not the minimal encoding paho insists on
        length = (length & 0x7F) | buffer[at + 1] << 7
        at += 2
    else:
        at += 1
    end = at + length
    if end > len(buffer):
        return None
    values: dict[str, object] = {}
    pairs: list[tuple[str, str]] = []
    while at < end:
        identifier = buffer[at]
        at += 1
        if identifier == USER_PROPERTY:
            name = _utf8(buffer, at, end)
            if name is None:
                return None
            value = _utf8(buffer, name[1], end)
            if value is None:
                return None
            pairs.append((name[0], value[0]))
            at = value[1]
        elif identifier == MESSAGE_EXPIRY_INTERVAL and "MessageExpiryInterval" not in values and at + 4 <= end:
            (values["MessageExpiryInterval"],) = _UINT32.unpack_from(buffer, at)
            at += 4
        else:
            return None
    if pairs:
        values["UserProperty"] = pairs
    properties = Properties.__new__(Properties)
    properties.__dict__.update(_EMPTY.__dict__)  # set as paho's constructor sets them, without its checks per name
    properties.__dict__.update(values)
    return properties, end


#: What one read from the broker's socket may take: a catch-up's stream arrives in reads of this size, not in the
#: one-byte, one-byte, rest reads paho makes per packet.
RECEIVE_BYTES = 256 * 1024


class ReceivingClient(mqtt.Client):
    """paho's client whose incoming QoS 0 and 1 PUBLISH packets of MQTT v5 have their properties decoded by
    `decode_publish_properties` (module doc); everything else, and any packet it leaves alone, is paho's.

    It also reads the socket in large pieces: paho asks for a packet's first byte, then each byte of its length, then
    the rest, each a `recv` (and each a release of the interpreter lock the ingest's other threads were waiting
    for); here one `recv` takes whatever the socket holds (up to `RECEIVE_BYTES`) and paho's reads are served from
    it. `loop_read` returns only with nothing left over, so paho's `select` on the socket still tells when there
    is more to read; the bytes left over belong to the connection they came from and go with it.
    """

    _received = b""  # the last read from the socket; bytes from `_taken` on are not yet handed to paho
    _taken = 0
    _received_from: object = None  # the socket they came from

    def _left_over(self) -> bool:
        return self._taken < len(self._received) and self._received_from is self._sock

    def _sock_recv(self, bufsize: int) -> bytes:
        if not self._left_over():
            self._received = super()._sock_recv(max(bufsize, RECEIVE_BYTES))
            self._received_from, self._taken = self._sock, 0
        start = self._taken
        self._taken = min(start + bufsize, len(self._received))
        return self._received[start:self._taken]

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._left_over():
            rc = super().loop_read(max_packets)
        return rc

    def _handle_publish(self) -> MQTTErrorCode:
        header = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        if (self._protocol != MQTTProtocolVersion.MQTTv5 or qos == 2 or self._logger is not None
                or self.on_log is not None):
            return super()._handle_publish()  # paho's path logs each PUBLISH; QoS 2 keeps state
        packet = bytes(self._in_packet["packet"])
        if len(packet) < 2:
            return super()._handle_publish()
        (topic_length,) = _UINT16.unpack_from(packet, 0)
        at = 2 + topic_length
        mid = 0
        if qos:
            if at + 2 > len(packet):
                return super()._handle_publish()
            (mid,) = _UINT16.unpack_from(packet, at)
            at += 2
        decoded = decode_publish_properties(packet, at)
        if decoded is None:
            return super()._handle_publish()
        properties, at = decoded
        message = mqtt.MQTTMessage(mid=mid, topic=packet[2:2 + topic_length])
        message.dup = bool(header & 0x08)
        message.qos = qos
        message.retain = bool(header & 0x01)
        message.properties = properties
        message.payload = packet[at:]
        message.timestamp = mqtt.time_func()
        self._handle_on_message(message)
        if qos == 0 or self._manual_ack:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        return self._send_puback(mid)


__all__ = ["ReceivingClient", "decode_publish_properties"]
