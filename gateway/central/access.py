"""Who may use the HTTP API: bearer tokens with a role, stored hashed (docs/security.md, "API access").

    reader    every data route: stations, series, fluxes, budgets
    operator  reader + the service's counters in /api/v1/health (auth failures, TLS, ingest, budget), the stations'
              health reports and the alerts
    admin     operator + token management (/api/v1/tokens)

A token is `swt_<id>_<secret>`: `id` (12 hex digits) names it in lists and logs, `secret` is 256 random bits. The
store (`<data_dir>/api-tokens.sqlite`, mode 0600) keeps the SHA-256 of the whole token, never the token: a copy of
the file lets nobody in, and a 256-bit secret needs no slow hash (nothing to guess). Comparison is constant-time.
`sinkwatch central token create|list|revoke` works on the same file while the service runs: a revocation holds
from the next request on.

`api.auth: development` (the demo) lets every request in as admin and says so on every response (header
`X-Sinkwatch-Mode: development`, `/api/v1/health` → `auth: development`, the OpenAPI description). It is refused
on a host other than loopback (gateway/central/config.py).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

Role = Literal["reader", "operator", "admin"]
ROLES: tuple[Role, ...] = ("reader", "operator", "admin")
_RANK = {role: rank for rank, role in enumerate(ROLES)}
TOKEN_FILE = "api-tokens.sqlite"
_TOKEN_RE = re.compile(r"^swt_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@ -]{0,63}$")

FailureKind = Literal["missing", "malformed", "unknown", "revoked", "forbidden"]


class TokenError(ValueError):
    """A token command cannot be done (name taken or invalid, token unknown); the message says why."""


@dataclass(frozen=True)
class TokenInfo:
    id: str
    name: str
    role: Role
    created: str
    revoked: str | None

    def allows(self, role: Role) -> bool:
        return _RANK[self.role] >= _RANK[role]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class TokenStore:
    """The hashed tokens of one central service (module doc). Safe for the API's threads and for a CLI process
    working on the same file at once (SQLite, WAL)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if str(path) == ":memory:":  # for documents and tests that need none persisted
            pass
        elif not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # created private: the hashes are no secret a guess could use, but names and roles are nobody's business
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS tokens (id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, "
            "sha256 TEXT NOT NULL, created TEXT NOT NULL, revoked TEXT)")

    @classmethod
    def in_data_dir(cls, data_dir: Path | str) -> TokenStore:
        return cls(Path(data_dir) / TOKEN_FILE)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create(self, name: str, role: Role) -> tuple[TokenInfo, str]:
        """A new token; the token itself is returned once and never stored."""
        if role not in ROLES:
            raise TokenError(f"role {role!r} is not one of {', '.join(ROLES)}")
        if not _NAME_RE.match(name):
            raise TokenError(f"token name {name!r}: use 1-64 letters, digits, space, '_', '.', '@', '-' (e.g. the "
                             "person or system holding it)")
        with self._lock:
            taken = self._db.execute("SELECT id FROM tokens WHERE name = ? AND revoked IS NULL", (name,)).fetchone()
            if taken:
                raise TokenError(f"an active token named {name!r} exists ({taken[0]}); revoke it first or choose "
                                 "another name")
            token_id = secrets.token_hex(6)
            token = f"swt_{token_id}_{secrets.token_urlsafe(32)}"
            info = TokenInfo(token_id, name, role, _now(), None)
            self._db.execute("INSERT INTO tokens VALUES (?, ?, ?, ?, ?, NULL)",
                             (token_id, name, role, _digest(token), info.created))
        return info, token

    def list(self) -> list[TokenInfo]:
        with self._lock:
            rows = self._db.execute("SELECT id, name, role, created, revoked FROM tokens ORDER BY rowid")
            return [TokenInfo(*row) for row in rows.fetchall()]

    def revoke(self, id_or_name: str) -> TokenInfo:
        """Revoke the token with this id, or the one active token with this name."""
        with self._lock:
            rows = self._db.execute("SELECT id, name, role, created, revoked FROM tokens WHERE id = ? OR "
                                    "(name = ? AND revoked IS NULL)", (id_or_name, id_or_name)).fetchall()
            if not rows:
                raise TokenError(f"no token with id or active name {id_or_name!r} (sinkwatch central token list)")
            if len(rows) > 1:
                raise TokenError(f"{id_or_name!r} names several tokens; give the id")
            info = TokenInfo(*rows[0])
            if info.revoked is not None:
                return info
            revoked = _now()
            self._db.execute("UPDATE tokens SET revoked = ? WHERE id = ?", (revoked, info.id))
        return TokenInfo(info.id, info.name, info.role, info.created, revoked)

    def check(self, token: str) -> tuple[TokenInfo | None, FailureKind | None]:
        """The token's record, or why it lets nobody in."""
        match = _TOKEN_RE.match(token)
        if match is None:
            return None, "malformed"
        with self._lock:
            row = self._db.execute("SELECT id, name, role, created, revoked, sha256 FROM tokens WHERE id = ?",
                                   (match.group(1),)).fetchone()
        if row is None or not hmac.compare_digest(row[5], _digest(token)):
            return None, "unknown"
        info = TokenInfo(*row[:5])
        if info.revoked is not None:
            return None, "revoked"
        return info, None


class Denied(Exception):
    """A request the API refuses: 401 (who are you?) or 403 (not with this role)."""

    def __init__(self, status: int, kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


class AccessControl:
    """The API's gate: `authorize(header, role)` returns who is asking or raises `Denied`; counts every refusal."""

    def __init__(self, mode: Literal["token", "development"], tokens: TokenStore | None = None) -> None:
        if mode == "token" and tokens is None:
            raise ValueError("token mode needs a TokenStore")
        self.mode = mode
        self.tokens = tokens
        self._lock = threading.Lock()
        self.failures: Counter[str] = Counter()

    @classmethod
    def development(cls) -> AccessControl:
        return cls("development")

    @property
    def development_mode(self) -> bool:
        return self.mode == "development"

    def _deny(self, status: int, kind: FailureKind, message: str) -> Denied:
        with self._lock:
            self.failures[kind] += 1
        return Denied(status, kind, message)

    def identify(self, authorization: str | None) -> TokenInfo | None:
        """Who presents this Authorization header: None when no header (or development mode); a header that is
        there but wrong raises 401."""
        if self.development_mode:
            return TokenInfo("development", "development mode", "admin", "", None)
        if not authorization:
            return None
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise self._deny(401, "malformed", "the Authorization header must be 'Bearer <token>'")
        assert self.tokens is not None
        info, failure = self.tokens.check(credentials.strip())
        if info is None:
            assert failure is not None
            text = {"malformed": "this is not a sinkwatch API token (swt_<id>_<secret>)",
                    "unknown": "unknown token: it was never issued here, or it was mistyped",
                    "revoked": "this token has been revoked; ask the operator for a new one"}[failure]
            raise self._deny(401, failure, text)
        return info

    def authorize(self, authorization: str | None, role: Role) -> TokenInfo:
        info = self.identify(authorization)
        if info is None:
            raise self._deny(401, "missing", "this route needs an API token: send 'Authorization: Bearer <token>' "
                                              "(the operator issues one with `sinkwatch central token create`)")
        if not info.allows(role):
            raise self._deny(403, "forbidden", f"token {info.id} ({info.name}) has role {info.role}; this route "
                                               f"needs {role} or higher")
        return info

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {"mode": self.mode, "auth_failures": dict(self.failures)}
