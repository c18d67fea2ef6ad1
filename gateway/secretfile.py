"""Secrets in config files: broker passwords, InfluxDB credentials, keys (docs/security.md, "Secrets").

A secret is given one of three ways, checked before any connection is made:

    password_file: /etc/sinkwatch/mqtt-password     a file of its own, readable by its owner only (0600 or 0400)
    password: ${SINKWATCH_MQTT_PASSWORD}            the whole value taken from the environment (systemd
                                                    Environment=/EnvironmentFile=, a container's secret)
    password: s3cret                                inline: only in a config file readable by its owner only

File paths may use ${VAR} too (e.g. ${CREDENTIALS_DIRECTORY}/mqtt-password with systemd's LoadCredential=).
A secret never appears in an error message: errors name the key, the file and the variable, never the value.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from pydantic import BaseModel, ConfigDict, PrivateAttr, SecretStr

_WHOLE_ENV = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_ENV_IN_PATH = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class SecretError(ValueError):
    """A secret cannot be used: file missing, readable by others, variable unset. Names key and fix, not value."""


def private_mode_problem(path: Path) -> str | None:
    """Why `path` is not private to its owner (group or others may read or write it), or None when it is."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return (f"{path} is readable or writable by group/others (mode {mode:04o}); run: chmod 600 {path} "
                "(and chown it to the service's user)")
    return None


def expand_path(value: Path | str, key: str) -> Path:
    """`value` with each ${VAR} replaced from the environment; an unset variable is an error naming `key`."""
    text = str(value)

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise SecretError(f"{key}: environment variable {name} (in {text}) is not set")
        return os.environ[name]

    return Path(_ENV_IN_PATH.sub(replace, text))


def read_secret_file(path: Path | str, key: str) -> SecretStr:
    """The secret held in `path` (one line; surrounding whitespace and the final newline dropped). Refuses a file
    that group or others may read: a secret there is not a secret."""
    path = expand_path(path, key)
    try:
        problem = private_mode_problem(path)
    except FileNotFoundError:
        raise SecretError(f"{key}: {path} not found; write the secret into that file (mode 0600, owned by the "
                          f"service's user), or set {key} to the file that holds it") from None
    except OSError as exc:
        raise SecretError(f"{key}: cannot read {path}: {exc.strerror}") from None
    if problem is not None:
        raise SecretError(f"{key}: {problem}")
    if not path.is_file():
        raise SecretError(f"{key}: {path} is not a regular file")
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretError(f"{key}: cannot read {path} as UTF-8 text ({type(exc).__name__})") from None
    if not text:
        raise SecretError(f"{key}: {path} is empty")
    return SecretStr(text)


def is_env_reference(value: SecretStr | str | None) -> bool:
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    return raw is not None and _WHOLE_ENV.match(raw) is not None


def resolve_secret(inline: SecretStr | None, file: Path | None, key: str) -> SecretStr | None:
    """The secret of `key` from its inline value (maybe ${VAR}) or from `<key>_file`; both given is an error."""
    if inline is not None and file is not None:
        raise SecretError(f"{key} and {key}_file are both set; keep one")
    if file is not None:
        return read_secret_file(file, f"{key}_file")
    if inline is None:
        return None
    match = _WHOLE_ENV.match(inline.get_secret_value())
    if match is None:
        return inline
    name = match.group(1)
    value = os.environ.get(name)
    if not value:
        raise SecretError(f"{key}: environment variable {name} is not set (or empty)")
    return SecretStr(value)


def reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


def inline_secret_keys(value: SecretStr | None, key: str) -> list[str]:
    """[key] when the secret is written into the config file itself (not ${VAR}, not a file)."""
    return [key] if value is not None and not is_env_reference(value) else []


class SecretFields(BaseModel):
    """A config section with secrets: remembers which were written inline, for the loader's file-mode check."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, hide_input_in_errors=True)
    _inline_secrets: list[str] = PrivateAttr(default_factory=list)

    @property
    def inline_secrets(self) -> list[str]:
        return list(self._inline_secrets)
