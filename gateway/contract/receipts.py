"""The receipts channel: the central service's word that its store holds what a station sent.

Specified in docs/asyncapi.yaml (channel `receipts`).

A station keeps every item it sends (a reading batch, a flux record, a raw file) in a durable outbox under a
per-channel sequence number until a receipt names that number. The central service publishes a receipt on the
station's own downlink topic `sinkwatch/v1/<site>/<station>/receipts` (QoS 1) only after the store has confirmed
the write (`Store.write`, `Store.write_fluxes`, the raw archive's fsync). A receipt names sequence numbers as
inclusive ranges, in any order and with gaps, because several ingest workers may store one station's items out of
order; it says nothing about the numbers it does not name.

    {"schema_version": 1, "site": "hainich", "station": "plot-07", "channel": "readings",
     "stored": [[120, 131], [133, 133]], "dead_lettered": [], "sent": "2026-11-25T10:00:00.000000Z"}

`dead_lettered` names items the central service can never store (schema violation, rejected by the store): it has
written them with the reason to its dead-letter file (fsynced), so the station may forget them too, and counts them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_serializer, model_validator

from gateway.model import Identifier, UtcDatetime, format_time

RECEIPT_SCHEMA_VERSION: Literal[1] = 1
MAX_RANGES = 1000  # one receipt at most; a longer list is split over several receipts

Channel = Literal["readings", "fluxes", "raw", "health", "command_results"]
CHANNELS: tuple[Channel, ...] = ("readings", "fluxes", "raw", "health", "command_results")


def _ordered(value: tuple[int, int]) -> tuple[int, int]:
    if value[0] > value[1]:
        raise ValueError(f"range [{value[0]}, {value[1]}] runs backwards: write [first, last] with first <= last")
    return value


_Seq = Annotated[int, Field(ge=0, strict=True)]
SeqRange = Annotated[tuple[_Seq, _Seq], AfterValidator(_ordered)]


class Receipt(BaseModel):
    """One MQTT message on `sinkwatch/v1/<site>/<station>/receipts` (central -> station)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = RECEIPT_SCHEMA_VERSION
    site: Identifier
    station: Identifier
    channel: Channel
    stored: list[SeqRange] = Field(default_factory=list, max_length=MAX_RANGES,
                                   description="inclusive [first, last] ranges of seqs the store now holds")
    dead_lettered: list[SeqRange] = Field(default_factory=list, max_length=MAX_RANGES,
                                          description="seqs that can never be stored, kept in the dead-letter file")
    sent: UtcDatetime

    @model_validator(mode="after")
    def _names_something(self) -> Receipt:
        if not self.stored and not self.dead_lettered:
            raise ValueError("a receipt names at least one seq in stored or dead_lettered")
        return self

    @field_serializer("sent")
    def _serialize_sent(self, value: datetime) -> str:
        return format_time(value)

    def stored_seqs(self) -> Iterator[int]:
        return expand(self.stored)

    def dead_lettered_seqs(self) -> Iterator[int]:
        return expand(self.dead_lettered)


def seq_ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted, merged inclusive ranges: [5, 1, 2, 3, 7] -> [(1, 3), (5, 5), (7, 7)]."""
    ranges: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if ranges and seq == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], seq)
        else:
            ranges.append((seq, seq))
    return ranges


def expand(ranges: Iterable[tuple[int, int]]) -> Iterator[int]:
    for first, last in ranges:
        yield from range(first, last + 1)
