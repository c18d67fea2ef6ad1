"""A private CA made inside a test, its server and client certificates as files, and Mosquitto listener lines that
use them (tests/test_tls.py, tests/test_provisioning.py). Built with the same code the operator's
`sinkwatch central ca` commands use (gateway/central/pki.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.central.pki import CertificateAuthority, write_private, write_public


@dataclass(frozen=True)
class CertFiles:
    cert: Path
    key: Path


@dataclass
class PkiFiles:
    ca: CertificateAuthority
    folder: Path

    @property
    def ca_file(self) -> Path:
        return self.ca.cert_path

    def server(self, name: str, hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> CertFiles:
        issued = self.ca.issue_server(hosts)
        files = CertFiles(self.folder / f"{name}.crt", self.folder / f"{name}.key")
        write_public(files.cert, issued.cert_pem)
        write_private(files.key, issued.key_pem)
        return files

    def client(self, name: str) -> CertFiles:
        issued = self.ca.issue_client(name)
        files = CertFiles(self.folder / f"client-{name}.crt", self.folder / f"client-{name}.key")
        write_public(files.cert, issued.cert_pem)
        write_private(files.key, issued.key_pem)
        return files


def make_pki(folder: Path, name: str = "test CA") -> PkiFiles:
    folder.mkdir(parents=True, exist_ok=True)
    return PkiFiles(CertificateAuthority.create(folder / "ca", name), folder)


def tls_listener_lines(port: int, pki: PkiFiles, server: CertFiles, *, client_certificates: bool = False,
                       crl: bool = False) -> list[str]:
    """A Mosquitto TLS listener on loopback (per_listener_settings off: auth options stay global)."""
    lines = [f"listener {port} 127.0.0.1", f"cafile {pki.ca_file}", f"certfile {server.cert}",
             f"keyfile {server.key}", "tls_version tlsv1.2"]
    if client_certificates:
        lines += ["require_certificate true", "use_identity_as_username true"]
    if crl:
        lines.append(f"crlfile {pki.ca.crl_path}")
    return lines
