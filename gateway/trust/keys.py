"""Station signing keys (Ed25519, RFC 8032): a station's private key on its own disk, and the central service's
registry of station public keys.

On a station (`signing_key:` in station.yaml names the file)::

    key = generate_key(path)                  # a new key, written with mode 0600 (PEM, PKCS #8); never overwrites
    key = load_private_key(path)              # PEM or the raw 32-byte seed; refuses a file others can read
    text = public_key_text(key.public_key())  # "ed25519:<base64>", what provisioning hands to the central service

On the central host (`KeyRegistry(data_dir)`, one JSON file `<data_dir>/trust/station-keys.json`)::

    registry.register(site, station, public_key)   # -> RegisteredKey; at most one active key per station
    registry.active(site, station)                 # the key items are verified against now, or None
    registry.find(site, station, key_id)           # any key the station ever had (the audit verifies old items)
    registry.revoke(site, station)                 # from now on nothing signed by it is stored
    registry.entries()                             # every registration, revoked ones too

A key is named by its `key_id`: the first 16 hex digits of the SHA-256 of its 32 raw public bytes, so an item can
say which key signed it and a station can rotate keys. A revoked key stays in the registry with its revocation
time: items it signed before then still verify in an audit. Writers (provisioning commands) replace the file
atomically under an exclusive lock; the ingestor re-reads it when it changes, so a registration or revocation takes
effect without restarting the central service.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.model import format_time

__all__ = [
    "KEY_TEXT_PREFIX",
    "REGISTRY_FILE",
    "Ed25519PrivateKey",
    "Ed25519PublicKey",
    "KeyFileError",
    "KeyRegistry",
    "RegisteredKey",
    "RegistryError",
    "generate_key",
    "key_id",
    "load_private_key",
    "public_key_from_text",
    "public_key_text",
    "verify",
]

KEY_TEXT_PREFIX = "ed25519:"
REGISTRY_FILE = Path("trust") / "station-keys.json"
_REGISTRY_FORMAT = "sinkwatch-station-keys/1"
_RAW_KEY_BYTES = 32


class KeyFileError(ValueError):
    """A key file that cannot be used; the message names the file, the problem and the fix."""


class RegistryError(ValueError):
    """A registry operation that cannot be done (unknown station, a second active key, a broken file)."""


def key_id(public_key: Ed25519PublicKey) -> str:
    """16 hex digits naming a public key (SHA-256 of its raw bytes)."""
    return hashlib.sha256(_raw_public(public_key)).hexdigest()[:16]


def _raw_public(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_text(public_key: Ed25519PublicKey) -> str:
    """`ed25519:<base64 of the 32 raw bytes>`: one line to paste, log or put in a registration."""
    return KEY_TEXT_PREFIX + base64.b64encode(_raw_public(public_key)).decode("ascii")


@functools.lru_cache(maxsize=100_000)
def _parsed_public_key(text: str) -> Ed25519PublicKey:
    """`public_key_from_text`, once per key: a registered key is used for every item its station sends."""
    return public_key_from_text(text)


def public_key_from_text(text: str) -> Ed25519PublicKey:
    """A public key from `ed25519:<base64>` or a PEM `PUBLIC KEY` block; ValueError naming what is wrong."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode("ascii"))
        except ValueError as exc:
            raise ValueError(f"not a PEM public key: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"the PEM public key is {type(key).__name__}, not Ed25519")
        return key
    if not text.startswith(KEY_TEXT_PREFIX):
        raise ValueError(f"a public key is written {KEY_TEXT_PREFIX}<base64 of 32 bytes> or as PEM, not {text[:20]!r}")
    try:
        raw = base64.b64decode(text[len(KEY_TEXT_PREFIX):], validate=True)
    except binascii.Error as exc:
        raise ValueError(f"public key {text[:20]!r}...: not base64 ({exc})") from None
    if len(raw) != _RAW_KEY_BYTES:
        raise ValueError(f"public key {text[:20]!r}...: {len(raw)} bytes, an Ed25519 key has {_RAW_KEY_BYTES}")
    return Ed25519PublicKey.from_public_bytes(raw)


def verify(public_key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    """True when `signature` is `public_key`'s signature of `message`."""
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


# --- the station's private key ------------------------------------------------------------------------------------


def generate_key(path: Path | str) -> Ed25519PrivateKey:
    """Create a new key in `path` (PEM, PKCS #8, unencrypted: the station starts unattended) with mode 0600, the
    folder created 0700 if missing. Refuses to overwrite an existing file: a station's key is its identity."""
    path = Path(path)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path}: a key file exists already; a station keeps its key (delete the file first "
                           "only if this station is to get a new identity, then register the new key)") from None
    try:
        os.fchmod(fd, 0o600)  # the umask cannot widen it, but make the mode explicit whatever it is
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


_MAX_KEY_FILE_BYTES = 64 * 1024


def load_private_key(path: Path | str) -> Ed25519PrivateKey:
    """The station's key from `path`: PEM (PKCS #8, as `generate_key` writes, or OpenSSL's `genpkey -algorithm
    ed25519`) or the raw 32-byte seed. Refused when group or others may read or write it (the fix: chmod 600)."""
    path = Path(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # before reading: /dev/zero would never end
            raise KeyFileError(f"{path}: not a regular file (a folder or a device); give the path of the station's "
                               "key file")
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(f"{path}: the signing key may be read or changed by others (mode "
                               f"{stat.S_IMODE(info.st_mode):04o}); run `chmod 600 {path}`")
        with path.open("rb") as fh:
            data = fh.read(_MAX_KEY_FILE_BYTES + 1)
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such key file (create one with `sinkwatch station provision`, or set "
                           "signing_key to the station's key file)") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the key file: {exc.strerror}") from None
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"{path}: longer than {_MAX_KEY_FILE_BYTES} bytes, which no key file is (a PEM key is "
                           "about 120): give the path of the station's key file")
    if len(data) == _RAW_KEY_BYTES and not data.startswith(b"-----"):
        return Ed25519PrivateKey.from_private_bytes(data)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not an unencrypted PEM private key or a 32-byte Ed25519 seed ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: the key is {type(key).__name__}; sinkwatch signs with Ed25519 "
                           "(`openssl genpkey -algorithm ed25519`)")
    return key


# --- the central registry -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegisteredKey:
    """One station key the central service knows: active while `revoked` is None."""

    site: str
    station: str
    key_id: str
    public_key: str  # ed25519:<base64>
    registered: datetime
    revoked: datetime | None = None

    @property
    def key(self) -> Ed25519PublicKey:
        return _parsed_public_key(self.public_key)

    def valid_at(self, when: datetime) -> bool:
        """Whether the key was registered and not yet revoked at `when`."""
        return self.registered <= when and (self.revoked is None or when < self.revoked)

    def to_json(self) -> dict[str, str | None]:
        return {"site": self.site, "station": self.station, "key_id": self.key_id, "public_key": self.public_key,
                "registered": format_time(self.registered),
                "revoked": format_time(self.revoked) if self.revoked is not None else None}

    @classmethod
    def from_json(cls, item: dict[str, str | None]) -> RegisteredKey:
        def when(name: str) -> datetime | None:
            value = item.get(name)
            return datetime.fromisoformat(value) if value else None

        registered = when("registered")
        if registered is None:
            raise ValueError("registered is missing")
        entry = cls(site=str(item["site"]), station=str(item["station"]), key_id=str(item["key_id"]),
                    public_key=str(item["public_key"]), registered=registered, revoked=when("revoked"))
        if key_id(entry.key) != entry.key_id:
            raise ValueError(f"key_id {entry.key_id} does not match its public key")
        return entry


class KeyRegistry:
    """The station public keys of one central service, in `<data_dir>/trust/station-keys.json`.

    Thread-safe. Reads are served from memory and refreshed when the file changes (its size, mtime or inode), so a
    provisioning command run beside the service takes effect at the next lookup."""

    def __init__(self, data_dir: Path | str) -> None:
        self.path = Path(data_dir) / REGISTRY_FILE
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._entries: list[RegisteredKey] = []
        # (site, station, key_id) -> its entry, rebuilt with _entries: every verified item looks its key up
        self._by_key: dict[tuple[str, str, str], RegisteredKey] = {}

    # reads

    def entries(self) -> list[RegisteredKey]:
        """Every registration, revoked ones too, in the order they were made."""
        return list(self._current())

    def active(self, site: str, station: str) -> RegisteredKey | None:
        return next((e for e in self._current() if (e.site, e.station) == (site, station) and e.revoked is None),
                    None)

    def find(self, site: str, station: str, key_id: str, *, recheck_file: bool = True) -> RegisteredKey | None:
        """The station's key named `key_id`, revoked or not. `recheck_file=False`: as the file was at the last
        look (`refresh`; the central ingest looks once for a group of items that arrived together, not once an
        item)."""
        if recheck_file:
            self._current()
        return self._by_key.get((site, station, key_id))

    def refresh(self) -> None:
        """Read the file again if it changed since the last look (RegistryError if it cannot be read)."""
        self._current()

    # writes (each one a locked read-modify-replace of the file)

    def register(self, site: str, station: str, public_key: Ed25519PublicKey, *, replace_active: bool = False,
                 now: datetime | None = None) -> RegisteredKey:
        """Register `public_key` for the station. The same key again returns its registration; a station with
        another active key is refused unless `replace_active`, which revokes that key at the same instant; a key
        registered once for a station cannot be registered for another one."""
        now = now or datetime.now(UTC)
        entry = RegisteredKey(site=site, station=station, key_id=key_id(public_key),
                              public_key=public_key_text(public_key), registered=now)
        with self._writing() as entries:
            for existing in entries:
                if existing.key_id == entry.key_id:
                    if (existing.site, existing.station) != (site, station):
                        raise RegistryError(f"key {entry.key_id} is registered for {existing.site}/{existing.station}; "
                                            "every station needs its own key")
                    if existing.revoked is not None:
                        raise RegistryError(f"key {entry.key_id} of {site}/{station} was revoked at "
                                            f"{format_time(existing.revoked)} and cannot come back; provision a new "
                                            "key")
                    return existing
            active = [i for i, e in enumerate(entries)
                      if (e.site, e.station) == (site, station) and e.revoked is None]
            if active and not replace_active:
                raise RegistryError(f"{site}/{station} has an active key ({entries[active[0]].key_id}); revoke it "
                                    "first or register with replace")
            for index in active:
                entries[index] = replace(entries[index], revoked=now)
            entries.append(entry)
        return entry

    def revoke(self, site: str, station: str, *, key_id: str | None = None,
               now: datetime | None = None) -> list[RegisteredKey]:
        """Revoke the station's active key (or the one named): from `now` on nothing it signs is stored. Returns
        the keys revoked; RegistryError when the station has no such key."""
        now = now or datetime.now(UTC)
        revoked: list[RegisteredKey] = []
        with self._writing() as entries:
            for index, existing in enumerate(entries):
                if (existing.site, existing.station) != (site, station) or existing.revoked is not None:
                    continue
                if key_id is not None and existing.key_id != key_id:
                    continue
                entries[index] = replace(existing, revoked=now)
                revoked.append(entries[index])
        if not revoked:
            which = f"key {key_id}" if key_id else "active key"
            raise RegistryError(f"{site}/{station} has no {which} to revoke (see the registered keys: "
                                f"{self.path})")
        return revoked

    # file handling

    def _current(self) -> list[RegisteredKey]:
        with self._lock:
            try:
                info = self.path.stat()
            except FileNotFoundError:
                self._seen, self._entries, self._by_key = None, [], {}
                return self._entries
            seen = (info.st_ino, info.st_size, info.st_mtime_ns)
            if seen != self._seen:
                self._entries = self._read()
                by_key: dict[tuple[str, str, str], RegisteredKey] = {}
                for entry in self._entries:
                    by_key.setdefault((entry.site, entry.station, entry.key_id), entry)  # the first, as a scan finds
                self._by_key = by_key
                self._seen = seen
            return self._entries

    def _read(self) -> list[RegisteredKey]:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise RegistryError(f"{self.path}: cannot read the station key registry: {exc}") from None
        if not isinstance(document, dict) or document.get("format") != _REGISTRY_FORMAT:
            raise RegistryError(f"{self.path}: not a {_REGISTRY_FORMAT} file")
        entries = []
        for number, item in enumerate(document.get("keys", []), start=1):
            try:
                entries.append(RegisteredKey.from_json(item))
            except (KeyError, TypeError, ValueError) as exc:
                raise RegistryError(f"{self.path}: key entry {number}: {exc}") from None
        return entries

    @contextlib.contextmanager
    def _writing(self) -> Iterator[list[RegisteredKey]]:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock_path = self.path.with_suffix(".lock")
        with open(lock_path, "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            entries = self._read()
            yield entries
            document = {"format": _REGISTRY_FORMAT, "keys": [e.to_json() for e in entries]}
            temporary = self.path.with_suffix(".tmp")
            with open(temporary, "w", encoding="utf-8") as out:
                json.dump(document, out, indent=1)
                out.write("\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        with self._lock:
            self._seen = None  # our own write: re-read on the next lookup
