"""What the central service has stored, gathered into receipts for the stations (gateway/contract/receipts.py).

The ingest worker notes every item right after the store confirmed it (or after its dead letter is on disk) and
sends what it gathered when its queue runs dry, after `max_delay_s`, or once `max_seqs` items are waiting, so a
burst of a thousand batches costs a few receipts, not a thousand. Ranges are built from whatever was stored, in
whatever order: a receipt never claims a seq that was not stored.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.contract import Channel, Receipt, seq_ranges
from gateway.contract.receipts import MAX_RANGES
from gateway.model import utc_now


@dataclass
class _Pending:
    stored: set[int] = field(default_factory=set)
    dead_lettered: set[int] = field(default_factory=set)


class ReceiptBook:
    """Not thread-safe: only the ingest worker uses it."""

    def __init__(self, max_delay_s: float = 0.2, max_seqs: int = 500,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_delay_s = max_delay_s
        self.max_seqs = max_seqs
        self._clock = clock
        self._pending: dict[tuple[str, str, Channel], _Pending] = {}
        self._count = 0
        self._since: float | None = None

    def add(self, site: str, station: str, channel: Channel, seq: int, *, dead_lettered: bool = False) -> None:
        entry = self._pending.setdefault((site, station, channel), _Pending())
        (entry.dead_lettered if dead_lettered else entry.stored).add(seq)
        self._count += 1
        if self._since is None:
            self._since = self._clock()

    def __len__(self) -> int:
        return self._count

    def due(self, queue_empty: bool) -> bool:
        if not self._count:
            return False
        return queue_empty or self._count >= self.max_seqs or self._clock() - (self._since or 0.0) >= self.max_delay_s

    def take(self) -> list[Receipt]:
        """Every gathered seq as receipts (one per station and channel, split when it has too many ranges)."""
        receipts: list[Receipt] = []
        sent = utc_now()
        for (site, station, channel), entry in self._pending.items():
            stored, dead = seq_ranges(entry.stored), seq_ranges(entry.dead_lettered)
            while stored or dead:
                receipts.append(Receipt(site=site, station=station, channel=channel, stored=stored[:MAX_RANGES],
                                        dead_lettered=dead[:MAX_RANGES], sent=sent))
                stored, dead = stored[MAX_RANGES:], dead[MAX_RANGES:]
        self._pending.clear()
        self._count = 0
        self._since = None
        return receipts
