"""TLS for every client connection sinkwatch makes (station -> broker, central -> broker, central -> InfluxDB), with
errors that name the setting to fix (docs/security.md, "TLS").

    context = client_context(ca_file=..., cert_file=..., key_file=..., check_hostname=True, prefix="mqtt")
    watch_handshakes(context, on_failure)   # every failed handshake is reported, with its reason

Failing closed: a certificate that does not chain to the configured CA, or that is not valid for the host name
connected to, ends the handshake; nothing is sent. `check_hostname: false` exists for a broker reached by an
address its certificate does not name, and is logged as a warning at every start.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.configfile import refuse_bool_for_number
from gateway.secretfile import expand_path, private_mode_problem

FailureKind = Literal["unknown_ca", "hostname_mismatch", "expired", "revoked", "bad_certificate", "protocol"]


class TlsConfigError(ValueError):
    """A TLS setting cannot be used (file missing, not PEM, key not matching the certificate); names the key."""


@dataclass(frozen=True)
class TlsFailure:
    kind: FailureKind
    message: str  # for the log: names the peer, the reason and the setting to check


def client_context(*, ca_file: Path | None, cert_file: Path | None = None, key_file: Path | None = None,
                   check_hostname: bool = True, prefix: str) -> ssl.SSLContext:
    """A client SSLContext: the system CA store when `ca_file` is None, else that CA only; a client certificate
    when `cert_file` is given (with `key_file`, or a key in the same file). `prefix` is the config section named in
    errors, e.g. "mqtt" or "storage"."""
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
    except FileNotFoundError:
        raise TlsConfigError(f"{prefix}.ca_file: {ca_file} not found; give the CA certificate (PEM) that signed the "
                             "server's certificate (e.g. ca.crt from `sinkwatch central ca init`)") from None
    except (ssl.SSLError, OSError) as exc:
        raise TlsConfigError(f"{prefix}.ca_file: {ca_file} is not a readable PEM CA certificate "
                             f"({_reason(exc)})") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if key_file is not None and cert_file is None:
        raise TlsConfigError(f"{prefix}.key_file is set without {prefix}.cert_file; give both (the client "
                             "certificate and its private key) or neither")
    if cert_file is not None:
        try:
            context.load_cert_chain(str(cert_file), str(key_file) if key_file is not None else None)
        except FileNotFoundError as exc:
            missing = "key_file" if key_file is not None and not Path(key_file).exists() else "cert_file"
            raise TlsConfigError(f"{prefix}.{missing}: {exc.filename} not found") from None
        except (ssl.SSLError, OSError) as exc:
            raise TlsConfigError(f"{prefix}.cert_file/{prefix}.key_file: {cert_file} and "
                                 f"{key_file or '(key in the same file)'} are not a PEM certificate with its "
                                 f"matching private key ({_reason(exc)})") from None
    if not check_hostname:
        context.check_hostname = False  # the chain is still verified (CERT_REQUIRED stays)
    return context


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None)
    return str(reason) if reason else type(exc).__name__


def classify(exc: BaseException, *, host: str, port: int, prefix: str, ca_file: Path | None,
             host_key: str = "host") -> TlsFailure:
    """What a failed handshake means and which setting to check, for the log and the health counters."""
    peer = f"{host}:{port}"
    trusted = f"{prefix}.ca_file ({ca_file})" if ca_file is not None else \
        f"the system CA store ({prefix}.ca_file is not set)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = getattr(exc, "verify_code", None)
        text = str(getattr(exc, "verify_message", "") or exc)
        if code == 62 or "hostname" in text.lower() or "ip address mismatch" in text.lower():
            return TlsFailure("hostname_mismatch", f"TLS to {peer} refused: the server's certificate is not valid "
                              f"for {prefix}.{host_key} {host!r} ({text}); connect by a name the certificate lists, or "
                              "issue the server a certificate for this name")
        if code == 10 or "expired" in text.lower():
            return TlsFailure("expired", f"TLS to {peer} refused: the server's certificate has expired ({text}); "
                              "renew it")
        if code == 23 or "revoked" in text.lower():
            return TlsFailure("revoked", f"TLS to {peer} refused: the server's certificate is revoked ({text})")
        return TlsFailure("unknown_ca", f"TLS to {peer} refused: the server's certificate is not signed by a CA "
                          f"in {trusted} ({text}); check {prefix}.ca_file")
    text = _reason(exc)
    lowered = text.lower()
    if "certificate" in lowered or "alert" in lowered:
        # the server refused our certificate (unknown to its CA, revoked, or none sent)
        return TlsFailure("bad_certificate", f"TLS to {peer} refused by the server: {text}; check "
                          f"{prefix}.cert_file/{prefix}.key_file (a client certificate issued by the server's CA, "
                          "not revoked)")
    return TlsFailure("protocol", f"TLS to {peer} failed: {text} (is {peer} a TLS port? check {prefix}.port and "
                      f"{prefix}.tls)")


def watch_handshakes(context: ssl.SSLContext, on_failure: Callable[[BaseException], Any]) -> None:
    """Report every handshake that fails on sockets this context wraps (paho swallows the exception and retries,
    so without this a wrong CA would look like a broker that is simply away). Under TLS 1.3 the server checks the
    client's certificate after the client has finished its handshake: its refusal arrives as an alert on the first
    read, so a TLS error on the first read counts as a failed handshake too."""

    class _WatchedSocket(ssl.SSLSocket):
        _first_read_done = False

        def do_handshake(self, block: bool = False) -> None:
            try:
                super().do_handshake(block)
            except (ssl.SSLError, ssl.CertificateError, OSError) as exc:
                if not isinstance(exc, ssl.SSLWantReadError | ssl.SSLWantWriteError):
                    on_failure(exc)
                raise

        def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
            try:
                data = super().recv(buflen, flags)
            except ssl.SSLError as exc:
                if not self._first_read_done and not isinstance(exc, ssl.SSLWantReadError | ssl.SSLWantWriteError):
                    on_failure(exc)
                raise
            self._first_read_done = True
            return data

    context.sslsocket_class = _WatchedSocket


class TlsClientFields(BaseModel):
    """The TLS keys of a client section (`mqtt:` of station.yaml and central.yaml). The section's prefix for
    messages is `_tls_prefix`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, hide_input_in_errors=True)
    _tls_prefix: ClassVar[str] = "mqtt"
    _refuse_bool_for_number = field_validator("*", mode="before")(refuse_bool_for_number)

    tls: bool = Field(default=False, description="connect with TLS; the server's certificate is checked against "
                                                 "ca_file, or the system's CA store when ca_file is not set")
    ca_file: Path | None = Field(default=None, description="CA certificate (PEM) that signed the server's "
                                                           "certificate, e.g. the deployment's private CA")
    cert_file: Path | None = Field(default=None, description="client certificate (PEM), when the server "
                                                             "authenticates clients by certificate")
    key_file: Path | None = Field(default=None, description="the client certificate's private key (PEM, mode 0600)")
    check_hostname: bool = Field(default=True, description="the server's certificate must name the host connected "
                                                           "to; turn off only for a server reached by an address "
                                                           "its certificate does not list")

    @model_validator(mode="after")
    def _check_tls_files(self) -> TlsClientFields:
        prefix = self._tls_prefix
        given = [k for k in ("ca_file", "cert_file", "key_file") if getattr(self, k) is not None]
        if given and not self.tls:
            raise ValueError(f"{prefix}.{given[0]} is set but {prefix}.tls is false; set {prefix}.tls: true")
        if not self.tls:
            return self
        for key in given:
            setattr(self, key, expand_path(getattr(self, key), f"{prefix}.{key}"))
        if self.key_file is not None and self.key_file.exists():
            problem = private_mode_problem(self.key_file)
            if problem is not None:
                raise ValueError(f"{prefix}.key_file: {problem}")
        self.ssl_context()  # every file readable and consistent now, not at the first connection attempt
        return self

    def ssl_context(self) -> ssl.SSLContext:
        return client_context(ca_file=self.ca_file, cert_file=self.cert_file, key_file=self.key_file,
                              check_hostname=self.check_hostname, prefix=self._tls_prefix)


class HandshakeWatch:
    """Counts failed handshakes to one server by kind and logs each change of failure once (a station retrying
    every minute for a week logs one line, not ten thousand); `succeeded()` after a connection logs the recovery."""

    def __init__(self, logger: logging.Logger, *, host: str, port: int, prefix: str, ca_file: Path | None,
                 host_key: str = "host") -> None:
        self._log = logger
        self._host, self._port, self._prefix, self._ca_file = host, port, prefix, ca_file
        self._host_key = host_key
        self._lock = threading.Lock()
        self.failures: Counter[str] = Counter()
        self.last: TlsFailure | None = None

    def attach(self, context: ssl.SSLContext) -> ssl.SSLContext:
        if not context.check_hostname:
            self._log.warning("%s.check_hostname is false: the certificate of %s:%s is checked against the CA but "
                              "not against the host name", self._prefix, self._host, self._port)
        watch_handshakes(context, self.failed)
        return context

    def failed(self, exc: BaseException) -> None:
        failure = classify(exc, host=self._host, port=self._port, prefix=self._prefix, ca_file=self._ca_file,
                           host_key=self._host_key)
        with self._lock:
            self.failures[failure.kind] += 1
            changed = self.last is None or self.last.message != failure.message
            self.last = failure
        if changed:
            self._log.error("%s; retrying with backoff, nothing is sent until TLS succeeds",
                            failure.message)

    def succeeded(self) -> None:
        with self._lock:
            was, self.last = self.last, None
        if was is not None:
            self._log.info("TLS to %s:%s works again", self._host, self._port)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"failures": dict(self.failures), "failing": self.last.kind if self.last else None,
                    "last_error": self.last.message if self.last else None}
