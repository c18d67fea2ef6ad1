"""The station's outboxes, one per channel, each an `OutboxSource` of the one delivery path (gateway/edge/delivery.py).

Every outbox keeps its items durably under a per-channel sequence number (`seq`) that never repeats, hands them out
oldest first, and deletes them only on a receipt (`confirm`). After a restart it hands out again, with the same seq,
whatever was not confirmed.

| channel | outbox | item | seq |
|---|---|---|---|
| readings | `ReadingsOutbox` (`ReadingBuffer`) | a `ReadingBatch` (<= batch_size readings) | `batches.seq`, at claim |
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.contract import Channel, readings_topic
from gateway.edge.buffer import ReadingBuffer
from gateway.edge.delivery import OutboxItem
from gateway.model import utc_now


class ReadingsOutbox:
    """Readings: the disk buffer, claimed in batches whose composition and seq are fixed at the first claim."""

    channel: Channel = "readings"
    unit = "readings"

    def __init__(self, buffer: ReadingBuffer, site: str, station: str, batch_size: int) -> None:
        self.buffer = buffer
        self.site = site
        self.station = station
        self.batch_size = batch_size
        self.topic = readings_topic(site, station)

    def claim(self, limit: int, exclude: set[int]) -> list[OutboxItem]:
        items: list[OutboxItem] = []
        skip = list(exclude)
        for _ in range(limit):
            batch = self.buffer.claim(self.batch_size, exclude=skip)
            if batch is None:
                break
            skip.append(batch.seq)
            items.append(OutboxItem(batch.seq, batch.payload(self.site, self.station, batch.formed_time or utc_now())))
        return items

    def reload(self, seq: int) -> bytes | None:
        batch = self.buffer.batch(seq)
        if batch is None:
            return None
        # the batch's formed time as its `sent`: a resend is the same bytes, the same signed item
        return batch.payload(self.site, self.station, batch.formed_time or utc_now())

    def confirm(self, ranges: Sequence[tuple[int, int]]) -> tuple[int, int]:
        return self.buffer.ack_ranges(ranges)

    def pending(self) -> int:
        return self.buffer.pending_readings()

    def oldest_time(self) -> float | None:
        return self.buffer.oldest_time()
