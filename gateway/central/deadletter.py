"""The central service's dead-letter file: what could never be stored, kept with its reason, bounded on disk.

One JSON object per line in `<data_dir>/dead-letter.jsonl`. Two kinds of record:

- a whole message that could not be used (not JSON, schema, topic mismatch, ...): `topic`, `reason`, `problem`
  and the payload, cut to `max_payload_bytes` (a hostile or broken station can send megabytes) with its full
  length (`payload_bytes`) and SHA-256 (`payload_sha256`) so the original can still be recognised;
- readings of a good batch that were set aside one by one (`conflict`, `rejected_by_store`, `implausible_time`):
  the batch context (site, station, seq, sent, size) and each reading with its index in the batch and, for a
  conflict, the reading the store already holds under that identity.

Bounded: when appending would take the file past `max_file_bytes` it is rotated (`dead-letter.jsonl.1`, `.2`, ...,
`keep_files` of them); the records of the file that falls off the end are counted (`dropped`) and logged, never
lost silently. Every append is fsynced before it returns, because the caller acknowledges the message after it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_MAX_FILE_BYTES = 10 * 1024 * 1024
DEFAULT_KEEP_FILES = 5
DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024


def payload_fields(payload: bytes, max_bytes: int) -> dict[str, Any]:
    """The payload as a dead letter keeps it: text when it is UTF-8 (else base64), at most `max_bytes` of it."""
    kept = payload[:max_bytes]
    try:
        payload.decode("utf-8")
        # a cut may split a multi-byte character: drop the partial one rather than store invalid text
        text, encoding = kept.decode("utf-8", errors="ignore"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(kept).decode("ascii"), "base64"
    return {
        "payload_encoding": encoding,
        "payload": text,
        "payload_bytes": len(payload),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
        "payload_truncated": len(kept) < len(payload),
    }


class DeadLetterFile:
    """Appends records durably to `path`, rotating it at `max_file_bytes` and keeping `keep_files` old files."""

    def __init__(self, path: Path, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
                 keep_files: int = DEFAULT_KEEP_FILES, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> None:
        if max_file_bytes <= 0 or keep_files < 0 or max_payload_bytes <= 0:
            raise ValueError("max_file_bytes and max_payload_bytes must be positive, keep_files not negative")
        self.path = path
        self.max_file_bytes = max_file_bytes
        self.keep_files = keep_files
        self.max_payload_bytes = max_payload_bytes
        self.dropped = 0  # records deleted by rotation since start
        self._lock = threading.Lock()

    def rotated(self, index: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{index}")

    def append(self, records: list[dict[str, Any]]) -> None:
        """Write `records` and fsync them; raises OSError when the disk refuses (the caller must not ack then)."""
        data = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records)
        encoded = data.encode("utf-8")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                size = 0
            if size and size + len(encoded) > self.max_file_bytes:
                self._rotate()
            with open(self.path, "ab") as out:
                out.write(encoded)
                out.flush()
                os.fsync(out.fileno())

    def _rotate(self) -> None:
        oldest = self.rotated(self.keep_files) if self.keep_files else self.path
        if oldest.exists():
            with open(oldest, "rb") as old:
                lost = sum(1 for _ in old)
            oldest.unlink()
            self.dropped += lost
            log.warning("dead-letter file rotation deleted %s with %d records (%d dropped since start); raise "
                        "dead_letter.keep_files or max_file_bytes to keep more", oldest, lost, self.dropped)
        for index in range(self.keep_files - 1, 0, -1):
            source = self.rotated(index)
            if source.exists():
                source.replace(self.rotated(index + 1))
        if self.keep_files and self.path.exists():
            self.path.replace(self.rotated(1))
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the renames must be on disk before the new file's records are acked
        finally:
            os.close(directory)
