"""Test helpers standing in for the stream runner (gateway/edge/streams/, not used here so these tests pin the
grammar alone): read frames from a real pyserial port or TCP socket, split at the driver's terminator, and check
each parsed frame against the simulator's served log."""

from __future__ import annotations

import collections
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import serial

from gateway.driver_api import BadRecord, StreamDriver
from gateway.simulation.stream_simulator import ServedFrame


class Closed(Exception):
    """The TCP peer closed the connection (the simulator's `disconnect` fault)."""


def read_frames(source: serial.Serial | socket.socket, terminator: bytes, count: int, timeout_s: float,
                pending: bytearray | None = None) -> list[bytes]:
    """Up to `count` whole frames (terminator included) or what arrived before `timeout_s`; a partial frame stays
    in `pending` for the next call (frames split across reads are normal on TCP)."""
    buffer = pending if pending is not None else bytearray()
    frames: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while len(frames) < count and time.monotonic() < deadline:
        if isinstance(source, serial.Serial):
            chunk = source.read(4096)
        else:
            try:
                chunk = source.recv(4096)
            except TimeoutError:
                chunk = b""
            except ConnectionResetError:
                raise Closed() from None
            else:
                if not chunk:
                    raise Closed()
        buffer.extend(chunk)
        while (cut := buffer.find(terminator)) >= 0 and len(frames) < count:
            frames.append(bytes(buffer[: cut + len(terminator)]))
            del buffer[: cut + len(terminator)]
    return frames


def connect(endpoint: str, timeout_s: float = 0.05) -> socket.socket:
    host, _, port = endpoint.removeprefix("tcp://").rpartition(":")
    return socket.create_connection((host, int(port)), timeout=timeout_s)


@dataclass
class Outcome:
    """What the driver made of each received frame, checked against the served log."""

    values: list[tuple[float | None, ...]] = field(default_factory=list)
    reasons: collections.Counter[str] = field(default_factory=collections.Counter)
    corrupted_seen: int = 0
    unserved: int = 0  # frames the simulator did not log as data (garbage, command replies)
    indices: list[int] = field(default_factory=list)  # served sample index of each data frame received


def check_frames(driver: StreamDriver, frames: Iterable[bytes], served: list[ServedFrame], *,
                 corrupt_reason: str, unserved_reasons: tuple[str, ...] = ("format",)) -> Outcome:
    """Parse every frame; intact served frames must give exactly the served values, corrupted ones must be
    refused with `corrupt_reason`, anything else (noise, replies) with one of `unserved_reasons`."""
    by_bytes = {f.data: f for f in served}
    outcome = Outcome()
    for frame in frames:
        source = by_bytes.get(frame)
        try:
            values = driver.parse(frame)
        except BadRecord as bad:
            outcome.reasons[bad.reason] += 1
            if source is None:
                outcome.unserved += 1
                assert bad.reason in unserved_reasons, (frame, bad.reason, bad.message)
            else:
                assert not source.intact, f"an intact frame was refused ({bad.reason}: {bad.message}): {frame!r}"
                assert bad.reason == corrupt_reason, (frame, bad.reason)
                outcome.corrupted_seen += 1
                outcome.indices.append(source.index)
            continue
        assert source is not None, f"a frame the simulator never served was accepted: {frame!r}"
        assert source.intact, f"a corrupted frame was accepted: {frame!r}"
        assert values == source.values, (frame, values, source.values)
        outcome.values.append(values)
        outcome.indices.append(source.index)
    return outcome
