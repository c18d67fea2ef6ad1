"""InfluxDB's times of a chunk of flux records, read from their text by numpy, are the integers `int` reads."""

from __future__ import annotations

import random

from gateway.central.store.influx_reads import _int_times


def test_chunk_times_read_as_int_reads_them() -> None:
    rng = random.Random(5)
    low, high = -(2**63), 2**63 - 1
    chunks = [
        [rng.randrange(10**18, high) for _ in range(1000)],  # 19 digits each: numpy's path
        [10**18, high, 10**18 + 1, 1_735_689_600_000_000_000],
        [rng.randrange(low, high) for _ in range(1000)],  # any width, negative: one int each
        [0, -1, 1, low, 10**18 - 1],
        [1_735_689_600_000_000_000, -(10**17)],  # 19 characters with a minus sign: not numpy's
    ]
    for chunk in chunks:
        assert _int_times([str(t).encode() for t in chunk]).tolist() == chunk
