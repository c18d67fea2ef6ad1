"""Station keys and the central key registry (gateway/trust/keys.py): real files, real Ed25519."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from gateway.trust.keys import (
    Ed25519PublicKey,
    KeyFileError,
    KeyRegistry,
    RegistryError,
    generate_key,
    key_id,
    load_private_key,
    public_key_from_text,
    public_key_text,
    verify,
)


def test_generated_key_is_private_and_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "station.key"
    key = generate_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = load_private_key(path)
    signature = loaded.sign(b"message")
    assert verify(key.public_key(), signature, b"message")
    assert not verify(key.public_key(), signature, b"messagE")


def test_generate_refuses_to_overwrite_a_key(tmp_path: Path) -> None:
    path = tmp_path / "station.key"
    first = generate_key(path)
    with pytest.raises(KeyFileError, match="exists already"):
        generate_key(path)
    assert key_id(load_private_key(path).public_key()) == key_id(first.public_key())


def test_a_key_others_can_read_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "station.key"
    generate_key(path)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match=r"mode 0644.*chmod 600"):
        load_private_key(path)


def test_missing_and_foreign_key_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="no such key file"):
        load_private_key(tmp_path / "absent.key")
    junk = tmp_path / "junk.key"
    junk.write_text("not a key\n")
    os.chmod(junk, 0o600)
    with pytest.raises(KeyFileError, match="not an unencrypted PEM"):
        load_private_key(junk)


def test_raw_seed_and_openssl_keys_load(tmp_path: Path) -> None:
    seed = tmp_path / "seed.key"
    key = generate_key(tmp_path / "pem.key")
    seed.write_bytes(key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                       serialization.NoEncryption()))
    os.chmod(seed, 0o600)
    assert key_id(load_private_key(seed).public_key()) == key_id(key.public_key())
    openssl = tmp_path / "openssl.key"
    try:
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(openssl)], check=True,
                       capture_output=True)
    except FileNotFoundError:
        pytest.skip("openssl command not installed")
    os.chmod(openssl, 0o600)
    assert load_private_key(openssl).sign(b"x")


def test_public_key_text_round_trips_and_rejects_garbage(tmp_path: Path) -> None:
    key = generate_key(tmp_path / "k").public_key()
    text = public_key_text(key)
    assert text.startswith("ed25519:")
    assert key_id(public_key_from_text(text)) == key_id(key)
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    assert key_id(public_key_from_text(pem)) == key_id(key)
    for bad, problem in (("rsa:AAAA", "is written"), ("ed25519:@@@", "not base64"), ("ed25519:AAAA", "3 bytes")):
        with pytest.raises(ValueError, match=problem):
            public_key_from_text(bad)


def _key(tmp_path: Path, name: str) -> Ed25519PublicKey:
    return generate_key(tmp_path / f"{name}.key").public_key()


def test_registry_register_lookup_revoke_list(tmp_path: Path) -> None:
    registry = KeyRegistry(tmp_path / "central")
    a, b = _key(tmp_path, "a"), _key(tmp_path, "b")
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    entry = registry.register("hainich", "plot-07", a, now=t0)
    assert entry.key_id == key_id(a)
    assert registry.register("hainich", "plot-07", a) == entry  # the same key again: its registration
    assert registry.active("hainich", "plot-07") == entry
    assert registry.active("hainich", "plot-08") is None
    with pytest.raises(RegistryError, match="has an active key"):
        registry.register("hainich", "plot-07", b)
    with pytest.raises(RegistryError, match="registered for hainich/plot-07"):
        registry.register("hainich", "plot-08", a)
    revoked = registry.revoke("hainich", "plot-07", now=t0 + timedelta(days=1))
    assert [r.key_id for r in revoked] == [entry.key_id]
    assert registry.active("hainich", "plot-07") is None
    old = registry.find("hainich", "plot-07", entry.key_id)
    assert old is not None and old.revoked == t0 + timedelta(days=1)
    assert old.valid_at(t0 + timedelta(hours=1)) and not old.valid_at(t0 + timedelta(days=2))
    with pytest.raises(RegistryError, match="no active key to revoke"):
        registry.revoke("hainich", "plot-07")
    with pytest.raises(RegistryError, match="cannot come back"):
        registry.register("hainich", "plot-07", a)
    registry.register("hainich", "plot-07", b)
    assert [e.key_id for e in registry.entries()] == [key_id(a), key_id(b)]
    # the file is what a verifier reads, and another process sees every change
    document = json.loads(registry.path.read_text())
    assert document["format"] == "sinkwatch-station-keys/1" and len(document["keys"]) == 2
    assert KeyRegistry(tmp_path / "central").active("hainich", "plot-07").key_id == key_id(b)  # type: ignore[union-attr]


def test_replace_active_revokes_the_old_key_at_the_same_instant(tmp_path: Path) -> None:
    registry = KeyRegistry(tmp_path)
    a, b = _key(tmp_path, "a"), _key(tmp_path, "b")
    registry.register("s", "n1", a)
    now = datetime(2026, 6, 1, tzinfo=UTC)
    new = registry.register("s", "n1", b, replace_active=True, now=now)
    old = registry.find("s", "n1", key_id(a))
    assert old is not None and old.revoked == now and new.registered == now
    assert registry.active("s", "n1") == new


def test_a_reader_sees_a_revocation_made_by_another_registry_object(tmp_path: Path) -> None:
    reader = KeyRegistry(tmp_path)
    writer = KeyRegistry(tmp_path)
    writer.register("s", "n1", _key(tmp_path, "a"))
    assert reader.active("s", "n1") is not None
    writer.revoke("s", "n1")
    assert reader.active("s", "n1") is None


def test_concurrent_registrations_lose_none(tmp_path: Path) -> None:
    keys = [_key(tmp_path, f"k{i}") for i in range(12)]
    errors: list[BaseException] = []

    def register(index: int) -> None:
        try:
            KeyRegistry(tmp_path / "c").register("s", f"n{index}", keys[index])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=register, args=(i,)) for i in range(len(keys))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(e.station for e in KeyRegistry(tmp_path / "c").entries()) == sorted(f"n{i}" for i in range(12))


def test_a_broken_registry_file_is_named(tmp_path: Path) -> None:
    registry = KeyRegistry(tmp_path)
    registry.path.parent.mkdir(parents=True)
    registry.path.write_text('{"format": "something-else"}')
    with pytest.raises(RegistryError, match="not a sinkwatch-station-keys/1 file"):
        registry.entries()
    key = _key(tmp_path, "a")
    entry = {"site": "s", "station": "n", "key_id": "0" * 16, "public_key": public_key_text(key),
             "registered": "2026-01-01T00:00:00.000000Z", "revoked": None}
    registry.path.write_text(json.dumps({"format": "sinkwatch-station-keys/1", "keys": [entry]}))
    with pytest.raises(RegistryError, match="key entry 1: key_id 0000000000000000 does not match"):
        registry.active("s", "n")


def test_a_device_folder_or_huge_file_as_the_key_is_refused_unread(tmp_path: Path) -> None:
    """Hostile inputs by hand (docs/reliability.md): `signing_key: /dev/zero` was read until memory ran out before
    its mode was checked."""
    with pytest.raises(KeyFileError, match="/dev/zero: not a regular file"):
        load_private_key("/dev/zero")
    with pytest.raises(KeyFileError, match="not a regular file"):
        load_private_key(tmp_path)
    huge = tmp_path / "huge.key"
    huge.write_bytes(b"-" * (1024 * 1024))
    os.chmod(huge, 0o600)
    with pytest.raises(KeyFileError, match="longer than 65536 bytes"):
        load_private_key(huge)
