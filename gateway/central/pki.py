"""The deployment's private certificate authority: its key and certificate, server certificates (broker, InfluxDB,
API) and station client certificates, and the list of revoked ones (CRL). docs/security.md, "TLS".

One folder holds it (`sinkwatch central ca init --dir DIR`):

    ca.crt        the CA certificate every client and server trusts (mqtt.ca_file, storage.ca_file, the broker's
                  cafile); public
    ca.key        the CA's private key, mode 0600: whoever holds it can mint a station; keep this folder on the
                  operator's host, never on a station or the broker
    ca.crl        the certificate revocation list (the broker's crlfile), rewritten on every revocation
    serials.json  every certificate issued: serial, subject, kind, revoked

Keys are ECDSA P-256: small, fast on a Pi, supported by Mosquitto (OpenSSL), influxd (Go) and Python's ssl.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
CA_CRL = "ca.crl"
SERIALS = "serials.json"
CA_DAYS = 3650
LEAF_DAYS = 825  # the longest validity current TLS clients accept for a server certificate
CRL_DAYS = 3650  # the CRL is rewritten on every revocation; a short nextUpdate would need a job to refresh it


class PkiError(Exception):
    """The CA folder is missing, incomplete or unsafe; the message names the file and the fix."""


@dataclass(frozen=True)
class Issued:
    cert_pem: bytes
    key_pem: bytes
    serial: int


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file readable by its owner only, created with that mode (never briefly world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


class CertificateAuthority:
    """A CA folder (module doc). `create` makes a new one; the constructor opens an existing one."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)
        for name in (CA_CERT, CA_KEY):
            if not (self.folder / name).is_file():
                raise PkiError(f"{self.folder / name}: not found; create the CA first with "
                               f"`sinkwatch central ca init --dir {self.folder}`")
        mode = (self.folder / CA_KEY).stat().st_mode & 0o777
        if mode & 0o077:
            raise PkiError(f"{self.folder / CA_KEY}: the CA's private key is readable by others (mode {mode:04o}); "
                           f"run: chmod 600 {self.folder / CA_KEY}")
        self.cert = x509.load_pem_x509_certificate((self.folder / CA_CERT).read_bytes())
        key = serialization.load_pem_private_key((self.folder / CA_KEY).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise PkiError(f"{self.folder / CA_KEY}: not an EC private key")
        self.key = key

    @classmethod
    def create(cls, folder: Path | str, common_name: str = "sinkwatch CA", *, days: int = CA_DAYS,
               overwrite: bool = False) -> CertificateAuthority:
        folder = Path(folder)
        if (folder / CA_KEY).exists() and not overwrite:
            raise PkiError(f"{folder / CA_KEY}: a CA already exists here; every certificate it issued would stop "
                           "working if it were replaced: use it, or choose another --dir")
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        write_private(folder / CA_KEY, _key_pem(key))
        write_public(folder / CA_CERT, cert.public_bytes(serialization.Encoding.PEM))
        (folder / SERIALS).write_text("[]\n", encoding="utf-8")
        ca = cls(folder)
        ca.write_crl()
        return ca

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def cert_path(self) -> Path:
        return self.folder / CA_CERT

    @property
    def crl_path(self) -> Path:
        return self.folder / CA_CRL

    def _issue(self, common_name: str, kind: str, usage: x509.ObjectIdentifier, days: int,
               hosts: tuple[str, ...] = ()) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        serial = x509.random_serial_number()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject).public_key(key.public_key()).serial_number(serial)
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        if hosts:
            names: list[x509.GeneralName] = []
            for host in hosts:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    names.append(x509.DNSName(host))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        self._record(serial, common_name, kind)
        return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key), serial)

    def issue_server(self, hosts: tuple[str, ...] | list[str], *, days: int = LEAF_DAYS) -> Issued:
        """A server certificate valid for each host name or IP address in `hosts` (the first is its CN)."""
        hosts = tuple(hosts)
        if not hosts:
            raise PkiError("a server certificate needs at least one host name or address (--host)")
        return self._issue(hosts[0], "server", ExtendedKeyUsageOID.SERVER_AUTH, days, hosts)

    def issue_client(self, common_name: str, *, days: int = LEAF_DAYS) -> Issued:
        """A client certificate whose CN is the MQTT user name (Mosquitto's use_identity_as_username)."""
        return self._issue(common_name, "client", ExtendedKeyUsageOID.CLIENT_AUTH, days)

    # --- the register of issued certificates and the CRL ---------------------------------------------------------

    def issued(self) -> list[dict[str, object]]:
        path = self.folder / SERIALS
        if not path.exists():
            return []
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, list) else []

    def _record(self, serial: int, common_name: str, kind: str) -> None:
        entries = self.issued()
        entries.append({"serial": str(serial), "cn": common_name, "kind": kind, "issued": _now().isoformat(),
                        "revoked": None})
        write_public(self.folder / SERIALS, (json.dumps(entries, indent=1) + "\n").encode())

    def revoke_client(self, common_name: str) -> list[int]:
        """Revoke every unrevoked client certificate issued to `common_name`; rewrites the CRL. Returns serials."""
        entries = self.issued()
        revoked = []
        for entry in entries:
            if entry["kind"] == "client" and entry["cn"] == common_name and entry["revoked"] is None:
                entry["revoked"] = _now().isoformat()
                revoked.append(int(str(entry["serial"])))
        if revoked:
            write_public(self.folder / SERIALS, (json.dumps(entries, indent=1) + "\n").encode())
            self.write_crl()
        return revoked

    def write_crl(self) -> Path:
        now = _now()
        builder = (x509.CertificateRevocationListBuilder().issuer_name(self.cert.subject)
                   .last_update(now - dt.timedelta(minutes=5)).next_update(now + dt.timedelta(days=CRL_DAYS)))
        for entry in self.issued():
            if entry["revoked"] is not None:
                builder = builder.add_revoked_certificate(
                    x509.RevokedCertificateBuilder().serial_number(int(str(entry["serial"])))
                    .revocation_date(dt.datetime.fromisoformat(str(entry["revoked"]))).build())
        crl = builder.sign(self.key, hashes.SHA256())
        write_public(self.crl_path, crl.public_bytes(serialization.Encoding.PEM))
        return self.crl_path
