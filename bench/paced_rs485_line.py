"""A paced half-duplex RS-485 line between two pseudo-terminals, for honest bus-throughput benchmarks.

A plain PTY pair moves bytes as fast as the kernel allows, so Modbus RTU over it runs about ten times faster than
any real line. This line gives every character its wire time (bits per character / baud: 11 for 8N2 or 8E1, 10 for
8N1), carries one burst at a time in either direction (half duplex: a burst that arrives while the line is busy waits
for it), and keeps the line silent for 3.5 character times after each burst, as a Modbus RTU master must.

    python3 bench/paced_rs485_line.py BAUD LINK_A LINK_B STATS_JSON [BITS_PER_CHAR]

LINK_A and LINK_B become symbolic links to the two PTY ends the devices open; STATS_JSON is rewritten (atomically)
every second with frame and byte counts per direction and the worst pacing lag in ms. Runs until killed.
"""

from __future__ import annotations

import heapq
import json
import os
import select
import sys
import time
import tty
from pathlib import Path


def open_end(link: Path) -> int:
    """A raw PTY whose device node `link` points to; returns the controlling (master) side we relay through."""
    master, device = os.openpty()
    tty.setraw(master)
    tty.setraw(device)
    link.unlink(missing_ok=True)
    link.symlink_to(os.ttyname(device))
    return master


def main(argv: list[str]) -> None:
    if len(argv) not in (4, 5):
        sys.exit(__doc__)
    baud = int(argv[0])
    link_a, link_b, stats_path = Path(argv[1]), Path(argv[2]), Path(argv[3])
    char_s = (float(argv[4]) if len(argv) == 5 else 11.0) / baud
    a, b = open_end(link_a), open_end(link_b)
    peer = {a: b, b: a}
    direction = {a: "a_to_b", b: "b_to_a"}
    stats: dict[str, float] = {"a_to_b_frames": 0, "b_to_a_frames": 0, "a_to_b_bytes": 0, "b_to_a_bytes": 0,
                               "max_lag_ms": 0.0}
    due: list[tuple[float, int, int, int]] = []  # (delivery time, order, destination fd, byte)
    order = 0
    line_free_at = 0.0
    last_dump = 0.0
    while True:
        now = time.monotonic()
        wait = max(0.0, due[0][0] - now) if due else 0.5
        readable, _, _ = select.select([a, b], [], [], wait)
        now = time.monotonic()
        for fd in readable:
            try:
                burst = os.read(fd, 4096)
            except OSError:  # the other side closed its end: keep the line up for the next open
                continue
            if not burst:
                continue
            stats[direction[fd] + "_frames"] += 1
            stats[direction[fd] + "_bytes"] += len(burst)
            start = max(now, line_free_at)
            for i, byte in enumerate(burst):
                order += 1
                heapq.heappush(due, (start + (i + 1) * char_s, order, peer[fd], byte))
            line_free_at = start + (len(burst) + 3.5) * char_s
        now = time.monotonic()
        ready: dict[int, bytearray] = {}
        while due and due[0][0] <= now:
            at, _, dst, byte = heapq.heappop(due)
            stats["max_lag_ms"] = max(stats["max_lag_ms"], (now - at) * 1000.0)
            ready.setdefault(dst, bytearray()).append(byte)
        for dst, chunk in ready.items():
            os.write(dst, bytes(chunk))
        if now - last_dump > 1.0:
            last_dump = now
            tmp = stats_path.with_name(stats_path.name + ".tmp")
            tmp.write_text(json.dumps({**stats, "t": time.time()}))
            os.replace(tmp, stats_path)


if __name__ == "__main__":
    main(sys.argv[1:])
