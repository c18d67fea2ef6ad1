"""A mark per chain, shared by the ingest workers of one host: the newest signing time (`at`) of an entry the chain's
ledger holds or a worker is about to write. An item signed after its chain's mark is new and nothing after it is
stored, which a shared `ChainTracker` then knows without asking the ledger (gateway/central/chain.py).

The same file mechanics as the readings' write guard (`gateway.central.store.writeguard`: fixed slots, POSIX record
locks the kernel drops when a process dies, the file emptied when a process opens it and no other has it open), with
these rules, which make the mark an upper bound and never too low:

- a mark is learned from the ledger (its newest entry, one still being written included) under the slot's lock, the
  first time the chain is met while the file lives;
- every worker raises it under the lock before it writes an entry of the chain, whether it placed the item with or
  without asking the ledger (`ChainTracker.place`);
- a slot, once a chain's, is never taken over by another chain (the write guard evicts; here an evicted mark could
  be learned again while another worker's entry is on its way, i.e. too low): a chain that finds its slot taken
  has no mark while the file lives, and its items are looked up as before.

A write that fails, or a worker killed after raising the mark, leaves the mark too high: the items up to it are
looked up (the resend of the item that was lost among them), never wrongly called new.
"""

from __future__ import annotations

from pathlib import Path

from gateway.central.store.writeguard import Marks, WriteGuard, fingerprint

#: The file's name in the central service's data_dir.
CHAIN_MARKS_FILE = "chain-marks"


def chain_name(station: str, channel: str) -> str:
    """The 'station' a chain's slot is keyed by (with its site): station and channel, which cannot contain NUL."""
    return f"{station}\x00{channel}"


class ChainMarks(WriteGuard):
    """`hold([(site, chain_name(station, channel))])` locks a chain's slot; `get` is its mark (None: unknown, or the
    slot is another chain's: `taken`), `set` records one (never in another chain's slot)."""

    def __init__(self, path: Path | str | None = None) -> None:
        super().__init__(path)
        self._closed = False

    def close(self) -> None:
        self._closed = True  # from now on no chain has a mark (a mark of this process alone would be wrong)
        super().close()

    def taken(self, site: str, chain: str) -> bool:
        """Whether the chain's slot holds another chain's mark (then it has none while the file lives), or the
        marks are closed."""
        if self._closed:
            return True
        if self._fd is None:
            return False
        key = fingerprint(site, chain)
        found, _, flags = self._slot(key)
        return bool(flags & 1) and found != key

    def peek(self, site: str, chain: str) -> int | None:
        """The chain's mark without its lock: a hint only (it may rise meanwhile); decide under `hold`."""
        return self._read(site, chain)

    def _read(self, site: str, station: str) -> int | None:
        return None if self._closed else super()._read(site, station)

    def _write(self, site: str, station: str, mark: int) -> None:
        if self.taken(site, station):
            return
        super()._write(site, station, mark)


__all__ = ["CHAIN_MARKS_FILE", "ChainMarks", "Marks", "chain_name"]
