"""Both ends against the same vectors (firmware_bridge/vectors/protocol-v1.json): the Python host here, the C
firmware code through its host-gcc test program; plus the AVR build's size against the ATmega328P."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import pytest

from firmware_bridge import protocol as p
from firmware_bridge.simulator import FirmwareBuild, build_once

VECTORS = json.loads((Path(p.__file__).parent / "vectors" / "protocol-v1.json").read_text())
DECODERS: dict[int, Any] = {
    p.MsgType.IDENTIFY_REPLY: p.Identity, p.MsgType.TIME_REPLY: p.TimeReply, p.MsgType.CONFIG_REPLY: p.BoardConfig,
    p.MsgType.RECORDS_REPLY: p.RecordsReply, p.MsgType.SDI12_REPLY: p.Sdi12Reply,
    p.MsgType.STATUS_REPLY: p.BoardStatus, p.MsgType.ERROR: p.BoardError, p.MsgType.HELLO: p.Hello,
}


@pytest.fixture(scope="session")
def firmware_build() -> FirmwareBuild:
    return build_once()


def plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return int(value) if isinstance(value, int) else value


@pytest.mark.parametrize("vector", VECTORS["crc16"], ids=lambda v: v["data"][:16] or "empty")
def test_crc16(vector: dict[str, Any]) -> None:
    assert p.crc16_ccitt(bytes.fromhex(vector["data"])) == vector["crc"]


@pytest.mark.parametrize("vector", VECTORS["cobs"], ids=lambda v: v["encoded"][:12])
def test_cobs_both_ways(vector: dict[str, Any]) -> None:
    assert p.cobs_encode(bytes.fromhex(vector["decoded"])).hex() == vector["encoded"]
    assert p.cobs_decode(bytes.fromhex(vector["encoded"])).hex() == vector["decoded"]


@pytest.mark.parametrize("vector", VECTORS["frames"], ids=lambda v: f"type{v['type']:02x}")
def test_frame_encode_and_decode(vector: dict[str, Any]) -> None:
    frame = p.Frame(vector["type"], vector["seq"], bytes.fromhex(vector["body"]), vector["version"])
    assert frame.encode().hex() == vector["wire"]
    assert p.StreamDecoder().feed(bytes.fromhex(vector["wire"])) == [frame]


@pytest.mark.parametrize("vector", VECTORS["streams"], ids=lambda v: v["name"])
def test_stream_resynchronises_and_counts(vector: dict[str, Any]) -> None:
    decoder = p.StreamDecoder()
    wire = bytes.fromhex(vector["wire"])
    frames = [f for i in range(len(wire)) for f in decoder.feed(wire[i:i + 1])]  # byte by byte, as a UART delivers
    assert [f.payload().hex() for f in frames] == vector["frames"]
    assert vars(decoder.counters) == vector["counters"]


@pytest.mark.parametrize("exchange", VECTORS["exchanges"], ids=lambda v: v["name"])
def test_exchange_messages_match_the_host_codec(exchange: dict[str, Any]) -> None:
    checked = 0
    for step in exchange["steps"]:
        if "request" in step:
            r = step["request"]
            assert p.Frame(r["type"], r["seq"], bytes.fromhex(r["body"]), r["version"]).encode().hex() == step["wire"]
        if step["op"] not in ("send", "hello"):
            continue
        frames = p.StreamDecoder().feed(bytes.fromhex(step["expect"]))
        if step["op"] == "hello":
            assert frames[0].type == p.MsgType.HELLO
            assert plain(p.Hello.decode(frames[0].body)) == step["fields"]
            checked += 1
            continue
        if step.get("reply") is None:
            assert frames == []
            continue
        (frame,) = frames
        assert (frame.type, frame.seq) == (step["reply"]["type"], step["reply"]["seq"])
        decoder = DECODERS.get(frame.type)
        if decoder is None:  # ACK: the body is the spec
            assert frame.body.hex() == step["reply"]["fields"]["body"]
        else:
            assert plain(decoder.decode(frame.body)) == step["reply"]["fields"]
        checked += 1
    assert checked > 0


def test_c_firmware_code_passes_every_vector(firmware_build: FirmwareBuild) -> None:
    result = subprocess.run([str(firmware_build.test_host)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    checks, failures = map(int, re.search(r"(\d+) checks, (\d+) failures", result.stdout).groups())  # type: ignore[union-attr]
    expected = (len(VECTORS["crc16"]) + 2 * len(VECTORS["cobs"]) + 2 * len(VECTORS["frames"])
                + 2 * len(VECTORS["streams"])
                + sum(1 for e in VECTORS["exchanges"] for s in e["steps"] if s["op"] in ("send", "hello")))
    assert (checks, failures) == (expected, 0)


def test_firmware_fits_the_atmega328p(firmware_build: FirmwareBuild) -> None:
    match = re.search(r"flash (\d+) of 32768 bytes .*static RAM (\d+) of 2048 bytes", firmware_build.make_output)
    assert match, f"the build did not print the size line:\n{firmware_build.make_output}"
    flash, ram = map(int, match.groups())
    size = subprocess.run(["avr-size", "--format=berkeley", str(firmware_build.elf)], capture_output=True,
                          text=True, check=True).stdout.splitlines()[1].split()
    text, data, bss = map(int, size[:3])
    assert (flash, ram) == (text + data, data + bss)
    assert flash <= 32768 - 4096, "leave the 4 KB boot section free for a bootloader"
    assert ram <= 2048 - 512, "leave at least 512 bytes of the 2 KB RAM for the stack"
