"""Writes protocol-v1.json: the protocol test vectors both ends are checked against.

The semantic content of every vector (which request, which board state, which reply fields) is written here by
hand from docs/firmware-bridge-protocol.md; the byte sequences are derived with the Python encoders. The anchors
that do not depend on our code are the published ones: the CRC-16/CCITT-FALSE check value of "123456789" (0x29B1)
and the COBS examples of Cheshire & Baker (1999) as listed in the COBS literature. The C firmware, written
separately against the document, must reproduce every byte (firmware_bridge/firmware/test/test_host.c).

Run `python -m firmware_bridge.vectors.generate` after a deliberate protocol change, and review the diff.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from firmware_bridge import protocol as p

OUT = Path(__file__).with_name("protocol-v1.json")
BOARD = {"boot_id": 7, "reset_cause": 1, "millis": 1000}
CHANNELS = [[0, 1], [1, 1], [2, 1], [3, 1], [16, 2]]


def frame(type_: int, seq: int, body: bytes = b"", version: int = 1) -> dict[str, Any]:
    return {"version": version, "type": type_, "seq": seq, "body": body.hex()}


def send(type_: int, seq: int, body: bytes, reply_type: int | None, reply_fields: dict[str, Any] | None,
         reply_body: bytes | None, version: int = 1) -> dict[str, Any]:
    request = frame(type_, seq, body, version)
    step: dict[str, Any] = {"op": "send", "request": request,
                            "wire": p.Frame(type_, seq, body, version).encode().hex()}
    if reply_type is None:
        step["reply"] = None
        step["expect"] = ""
    else:
        assert reply_body is not None
        step["reply"] = {"type": reply_type, "seq": seq, "fields": reply_fields}
        step["expect"] = p.Frame(reply_type, seq, reply_body).encode().hex()
    return step


def ack(type_: int, seq: int, body: bytes, value: int | None = None) -> dict[str, Any]:
    reply = b"" if value is None else struct.pack("<I", value)
    return send(type_, seq, body, p.MsgType.ACK, {"body": reply.hex()}, reply)


def error(type_: int, seq: int, body: bytes, code: p.ErrorCode, argument: int, version: int = 1) -> dict[str, Any]:
    e = p.BoardError(int(code), type_, argument)
    return send(type_, seq, body, p.MsgType.ERROR, {"code": int(code), "request_type": type_, "argument": argument},
                e.encode(), version)


def reply(type_: int, seq: int, body: bytes, reply_type: p.MsgType, message: Any) -> dict[str, Any]:
    fields = json.loads(json.dumps(message, default=_plain))
    return send(type_, seq, body, reply_type, fields, message.encode())


def _plain(obj: Any) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        return {name: getattr(obj, name) for name in obj.__dataclass_fields__}
    raise TypeError(obj)


def exchanges() -> list[dict[str, Any]]:
    identity = p.Identity("SWFB0001", (1, 0, 0), 1, 7, tuple((c, p.ChannelKind(k)) for c, k in CHANNELS))
    image = bytes((i * 7 + 3) & 0xFF for i in range(100))
    good_crc = p.crc16_ccitt(image)
    config = p.BoardConfig(500, 0b0011, "01")
    bad_crc_wire = bytearray(p.Frame(p.MsgType.IDENTIFY, 3).encode())
    bad_crc_wire[-2] ^= 0x01
    r0 = p.Record(0, 0, 0, 1000, 409 * 16, 511 * 16)
    r1 = p.Record(1, 1, 0, 1000, 102 * 16, 511 * 16)
    r2 = p.Record(2, 0, 0, 1500, 410 * 16, 511 * 16)
    r3 = p.Record(3, 1, 0, 1500, 102 * 16, 511 * 16)
    return [
        {"name": "identify", "steps": [
            reply(p.MsgType.IDENTIFY, 1, b"", p.MsgType.IDENTIFY_REPLY, identity)]},
        {"name": "hello_at_boot", "steps": [
            {"op": "hello", "expect": "00" + p.Frame(p.MsgType.HELLO, 0, p.Hello(7, 1, 1).encode()).encode().hex(),
             "fields": {"boot_id": 7, "reset_cause": 1, "protocol": 1}}]},
        {"name": "time_query_and_set", "steps": [
            reply(p.MsgType.TIME, 2, b"", p.MsgType.TIME_REPLY, p.TimeReply(7, 1000)),
            {"op": "millis", "value": 1234},
            reply(p.MsgType.TIME, 3, b"", p.MsgType.TIME_REPLY, p.TimeReply(7, 1234)),
            reply(p.MsgType.TIME, 4, p.encode_time_request(0xFFFFFF00), p.MsgType.TIME_REPLY,
                  p.TimeReply(7, 0xFFFFFF00))]},
        {"name": "config_set_get", "steps": [
            reply(p.MsgType.CONFIG_GET, 1, b"", p.MsgType.CONFIG_REPLY, p.BoardConfig(1000, 0, "")),
            ack(p.MsgType.CONFIG_SET, 2, config.encode()),
            reply(p.MsgType.CONFIG_GET, 3, b"", p.MsgType.CONFIG_REPLY, config),
            error(p.MsgType.CONFIG_SET, 4, p.BoardConfig(10, 1, "").encode(), p.ErrorCode.BAD_ARGUMENT, 0),
            error(p.MsgType.CONFIG_SET, 5, p.BoardConfig(1000, 0x10, "").encode(), p.ErrorCode.BAD_ARGUMENT, 1),
            error(p.MsgType.CONFIG_SET, 6, p.BoardConfig(1000, 1, "0#").encode(), p.ErrorCode.BAD_ARGUMENT, 2),
            error(p.MsgType.CONFIG_SET, 7, b"\x01\x02", p.ErrorCode.BAD_LENGTH, 0)]},
        {"name": "records_sampled_fetched_acknowledged", "steps": [
            {"op": "adc", "channel": 0, "value": 409},
            {"op": "adc", "channel": 1, "value": 102},
            {"op": "adc", "channel": 7, "value": 511},
            ack(p.MsgType.CONFIG_SET, 1, config.encode()),
            {"op": "poll"},
            {"op": "millis", "value": 1499},
            {"op": "adc", "channel": 0, "value": 410},
            {"op": "poll"},
            {"op": "millis", "value": 1500},
            {"op": "poll"},
            reply(p.MsgType.RECORDS, 2, p.encode_records_request(None), p.MsgType.RECORDS_REPLY,
                  p.RecordsReply(7, 0, (r0, r1, r2, r3))),
            reply(p.MsgType.RECORDS, 3, p.encode_records_request(1, 1), p.MsgType.RECORDS_REPLY,
                  p.RecordsReply(7, 0, (r2,))),
            reply(p.MsgType.RECORDS, 4, p.encode_records_request(3), p.MsgType.RECORDS_REPLY,
                  p.RecordsReply(7, 0, ()))]},
        {"name": "records_flags_overrange_and_low_excitation", "steps": [
            {"op": "adc", "channel": 0, "value": 1023},
            {"op": "adc", "channel": 7, "value": 10},
            ack(p.MsgType.CONFIG_SET, 1, p.BoardConfig(1000, 1, "").encode()),
            {"op": "poll"},
            reply(p.MsgType.RECORDS, 2, p.encode_records_request(None), p.MsgType.RECORDS_REPLY,
                  p.RecordsReply(7, 0, (p.Record(0, 0, 3, 1000, 1023 * 16, 10 * 16),)))]},
        {"name": "sdi12_pass_through", "steps": [
            {"op": "sdi12", "status": 0, "reply": "0+2009.87+22.3+112FdQ\r\n"},
            reply(p.MsgType.SDI12, 1, p.encode_sdi12_request("0D0!", 500), p.MsgType.SDI12_REPLY,
                  p.Sdi12Reply(7, 1000, p.Sdi12Status.OK, "0+2009.87+22.3+112FdQ\r\n")),
            {"op": "sdi12", "status": 1, "reply": ""},
            reply(p.MsgType.SDI12, 2, p.encode_sdi12_request("5M!", 500), p.MsgType.SDI12_REPLY,
                  p.Sdi12Reply(7, 1000, p.Sdi12Status.NO_REPLY, "")),
            error(p.MsgType.SDI12, 3, b"\xf4\x01" + b"0M", p.ErrorCode.BAD_LENGTH, 0)]},
        {"name": "bad_input_counted_and_reported", "steps": [
            {"op": "send", "wire": "de ad be ef 00".replace(" ", ""), "expect": "", "note": "garbage"},
            {"op": "send", "wire": bad_crc_wire.hex(), "expect": "", "note": "CRC error"},
            {"op": "send", "wire": (p.Frame(p.MsgType.IDENTIFY, 4).encode()[:4] + b"\x00").hex(), "expect": "",
             "note": "truncated frame; the host's leading 0x00 ends it: a framing error"},
            error(0x55, 5, b"", p.ErrorCode.UNKNOWN_TYPE, 0),
            error(p.MsgType.IDENTIFY, 6, b"", p.ErrorCode.BAD_VERSION, 1, version=2),
            error(p.MsgType.IDENTIFY, 7, b"\x00", p.ErrorCode.BAD_LENGTH, 0),
            reply(p.MsgType.STATUS, 8, b"", p.MsgType.STATUS_REPLY, p.BoardStatus(7, 1, {
                "rx_frames": 4, "crc_errors": 1, "framing_errors": 2, "overflows": 0, "unknown_type": 1,
                "version_mismatch": 1, "records_dropped": 0}, 0))]},
        {"name": "firmware_update_verified_chunks", "steps": [
            ack(p.MsgType.FW_BEGIN, 1, p.encode_fw_begin(len(image), good_crc), 0),
            ack(p.MsgType.FW_CHUNK, 2, p.encode_fw_chunk(0, image[:64]), 64),
            error(p.MsgType.FW_CHUNK, 3, p.encode_fw_chunk(0, image[:64]), p.ErrorCode.FW_SEQUENCE, 64),
            error(p.MsgType.FW_CHUNK, 4, p.encode_fw_chunk(64, image[64:] + b"\x00"), p.ErrorCode.FW_SIZE, 100),
            ack(p.MsgType.FW_CHUNK, 5, p.encode_fw_chunk(64, image[64:]), 100),
            ack(p.MsgType.FW_COMMIT, 6, b"", 100)]},
        {"name": "firmware_update_rejects_corrupt_image", "steps": [
            ack(p.MsgType.FW_BEGIN, 1, p.encode_fw_begin(len(image), good_crc ^ 0x0100), 0),
            ack(p.MsgType.FW_CHUNK, 2, p.encode_fw_chunk(0, image[:64]), 64),
            ack(p.MsgType.FW_CHUNK, 3, p.encode_fw_chunk(64, image[64:]), 100),
            error(p.MsgType.FW_COMMIT, 4, b"", p.ErrorCode.FW_VERIFY, good_crc),
            error(p.MsgType.FW_CHUNK, 5, p.encode_fw_chunk(0, image[:64]), p.ErrorCode.FW_SEQUENCE, 100),
            error(p.MsgType.FW_BEGIN, 6, p.encode_fw_begin(40000, 0), p.ErrorCode.FW_SIZE, 28672)]},
    ]


def streams() -> list[dict[str, Any]]:
    a = p.Frame(p.MsgType.TIME_REPLY, 1, p.TimeReply(7, 1000).encode())
    b = p.Frame(p.MsgType.ACK, 2)
    bad = bytearray(a.encode())
    bad[3] ^= 0x40
    zero = dict.fromkeys(("frames", "crc_errors", "framing_errors", "short_frames", "overflows"), 0)

    def counters(**kw: int) -> dict[str, int]:
        return {**zero, **kw}

    return [
        {"name": "two_frames", "wire": (a.encode() + b.encode()).hex(),
         "frames": [a.payload().hex(), b.payload().hex()], "counters": counters(frames=2)},
        {"name": "garbage_then_frame", "wire": (b"\x13\x37\xff\x00\x02\x41" + b"\x00" + a.encode()).hex(),
         "frames": [a.payload().hex()], "counters": counters(frames=1, framing_errors=1, short_frames=1)},
        {"name": "crc_error_then_frame", "wire": (bytes(bad) + b.encode()).hex(),
         "frames": [b.payload().hex()], "counters": counters(frames=1, crc_errors=1)},
        {"name": "truncated_frame_resync", "wire": (a.encode()[:7] + b"\x00" + b.encode()).hex(),
         "frames": [b.payload().hex()], "counters": counters(frames=1, framing_errors=1)},
        {"name": "overlong_noise_then_frame", "wire": (bytes(range(1, 200)) + b"\x00" + b.encode()).hex(),
         "frames": [b.payload().hex()], "counters": counters(frames=1, overflows=1)},
        {"name": "empty_frames_ignored", "wire": (b"\x00\x00\x00" + b.encode() + b"\x00").hex(),
         "frames": [b.payload().hex()], "counters": counters(frames=1)},
    ]


def main() -> None:
    longest = bytes(range(1, 255))
    vectors = {
        "protocol_version": 1,
        "description": "firmware-bridge protocol v1 test vectors (docs/firmware-bridge-protocol.md); "
                       "all byte strings are hex. Regenerate with python -m firmware_bridge.vectors.generate.",
        "board": {**BOARD, "board_id": "SWFB0001", "channels": CHANNELS},
        "crc16": [
            {"data": b"123456789".hex(), "crc": 0x29B1, "note": "CRC-16/CCITT-FALSE check value"},
            {"data": "", "crc": 0xFFFF},
            {"data": "00", "crc": p.crc16_ccitt(b"\x00")},
            {"data": "01020304ff", "crc": p.crc16_ccitt(bytes.fromhex("01020304ff"))},
        ],
        "cobs": [
            {"decoded": "00", "encoded": "0101"},
            {"decoded": "0000", "encoded": "010101"},
            {"decoded": "11220033", "encoded": "0311220233"},
            {"decoded": "11223344", "encoded": "0511223344"},
            {"decoded": "11000000", "encoded": "0211010101"},
            {"decoded": longest.hex(), "encoded": "ff" + longest.hex()},
            {"decoded": (b"\x00" + longest).hex(), "encoded": "01ff" + longest.hex()},
            {"decoded": (longest + b"\xff").hex(), "encoded": "ff" + longest.hex() + "02ff"},
        ],
        "frames": [
            {**frame(t, s, body), "wire": p.Frame(t, s, body).encode().hex()}
            for t, s, body in [
                (p.MsgType.IDENTIFY, 1, b""),
                (p.MsgType.TIME, 255, struct.pack("<I", 0)),
                (p.MsgType.RECORDS_REPLY, 0, bytes(p.MAX_BODY)),
                (p.MsgType.SDI12, 9, p.encode_sdi12_request("0D0!", 1000)),
            ]
        ],
        "streams": streams(),
        "exchanges": exchanges(),
    }
    OUT.write_text(json.dumps(vectors, indent=1) + "\n")


if __name__ == "__main__":
    main()
