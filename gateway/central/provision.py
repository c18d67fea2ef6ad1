"""Per-station identity: provisioning and revocation (`sinkwatch station provision|revoke`, docs/security.md).

Provisioning a station (on the operator's host, which holds the central data dir and the CA):

    out/<station>/station.yaml      from the template: site, station, broker, TLS, credentials' paths, buffer
    out/<station>/mqtt-password     the broker password (256 random bits), mode 0600      } one or the other
    out/<station>/client.crt, .key  a client certificate signed by the private CA (CN =   } (--cert)
                                    station id, Mosquitto's use_identity_as_username)     }
    out/<station>/ca.crt            the CA the station checks the broker against
    out/<station>/signing-key       the station's Ed25519 signing key (gateway.trust.keys), mode 0600
    out/<station>/broker-entries.txt  the broker's password line and ACL block, for a broker on another host

and on the central side: the public key registered (`KeyRegistry`), the station recorded in
`<data_dir>/provisioning/stations.json` (password stations by their Mosquitto hash, never the password), and, when
`provisioning.broker_password_file`/`broker_acl_file` are set, those files rewritten and the broker told to reload
(`provisioning.broker_reload`, e.g. `systemctl reload mosquitto`, which sends SIGHUP).

Revoking a station removes its password line and ACL block (a Mosquitto 2 reload disconnects a client whose
password entry is gone and refuses it from then on; other clients stay connected), revokes its client certificates
(the CA's CRL, which the broker re-reads on the same reload) and its signing key (the central service stores
nothing it signs from then on), and records the revocation: the ingestor dead-letters whatever still arrives on
the station's topics (`revoked_station`), a second line behind the broker.

The ACL gives each station its own topics at its own site only (`sinkwatch/v1/<site>/<station>/...`), between the
markers below in the broker's ACL file; every other line of that file (the central service's rules) is kept.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import string
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from gateway.central.pki import CertificateAuthority, PkiError, write_private, write_public
from gateway.trust.keys import KeyRegistry, RegistryError, generate_key

REGISTRY_FILE = Path("provisioning") / "stations.json"
TEMPLATE_PATH = Path(__file__).with_name("station-template.yaml")
ACL_BEGIN = "# BEGIN sinkwatch stations (written by `sinkwatch station provision|revoke`; edits here are replaced)"
ACL_END = "# END sinkwatch stations"
# the channels a station publishes and reads (docs/asyncapi.yaml)
STATION_WRITES: tuple[str, ...] = ("readings", "status", "fluxes", "raw", "health", "command_results")
STATION_READS: tuple[str, ...] = ("receipts", "commands")
MOSQUITTO_ITERATIONS = 101  # mosquitto_passwd's own; the password is 256 random bits, so no guessing to slow down

Auth = Literal["password", "certificate"]


class ProvisioningError(Exception):
    """Provisioning or revocation cannot be done; the message names the station, the file or the setting."""


@dataclass
class ProvisionedStation:
    site: str
    station: str
    auth: Auth
    provisioned: str
    password_hash: str | None = None  # Mosquitto's $7$ line for password stations
    cert_serial: str | None = None
    key_id: str | None = None
    revoked: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked is None


@dataclass(frozen=True)
class BrokerFiles:
    """Where the broker's password and ACL files are and how to make it re-read them (central.yaml
    `provisioning:`); unset paths leave the broker to the operator (broker-entries.txt)."""

    password_file: Path | None = None
    acl_file: Path | None = None
    reload: tuple[str, ...] = ()
    crl_file: Path | None = None  # where the broker reads the CA's revocation list (its crlfile)


@dataclass(frozen=True)
class ProvisionResult:
    station: ProvisionedStation
    folder: Path
    files: tuple[Path, ...]
    broker_updated: bool
    reloaded: bool


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def mosquitto_hash(password: str, *, salt: bytes | None = None, iterations: int = MOSQUITTO_ITERATIONS) -> str:
    """The password-file hash Mosquitto 2 writes with mosquitto_passwd: `$7$<iterations>$<salt>$<hash>`,
    PBKDF2-HMAC-SHA512 over a 12-byte salt, both in standard base64."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def acl_block(site: str, station: str) -> list[str]:
    lines = [f"user {station}"]
    lines += [f"topic write sinkwatch/v1/{site}/{station}/{channel}" for channel in STATION_WRITES]
    lines += [f"topic read sinkwatch/v1/{site}/{station}/{channel}" for channel in STATION_READS]
    return lines


class StationRegistry:
    """`<data_dir>/provisioning/stations.json`: every station provisioned here, revoked ones too."""

    def __init__(self, data_dir: Path | str) -> None:
        self.path = Path(data_dir) / REGISTRY_FILE
        self._seen: tuple[int, int, int] | None = None
        self._revoked: frozenset[tuple[str, str]] = frozenset()

    def is_revoked(self, site: str, station: str, *, recheck_file: bool = True) -> bool:
        """`revoked` for every message the ingestor handles: the file is re-read only when it changed.
        `recheck_file=False`: as the file was at the last `refresh` (the ingestor looks once for a group of messages
        that arrived together, not once a message)."""
        if recheck_file:
            self.refresh()
        return (site, station) in self._revoked

    def refresh(self) -> None:
        """Read the file again if it changed since the last look (its inode, size or mtime)."""
        try:
            info = self.path.stat()
            seen = (info.st_ino, info.st_size, info.st_mtime_ns)
        except (FileNotFoundError, NotADirectoryError):  # nothing provisioned here (yet)
            self._revoked, self._seen = frozenset(), None
            return
        if seen != self._seen:
            latest: dict[tuple[str, str], bool] = {}
            for entry in self.entries():
                latest[(entry.site, entry.station)] = entry.active
            self._revoked = frozenset(key for key, active in latest.items() if not active)
            self._seen = seen

    def entries(self) -> list[ProvisionedStation]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise ProvisioningError(f"{self.path}: unreadable ({exc}); restore it from a backup") from None
        return [ProvisionedStation(**item) for item in data]

    def revoked(self, site: str, station: str) -> bool:
        """Whether this site's station was revoked and not provisioned again since."""
        entries = [e for e in self.entries() if (e.site, e.station) == (site, station)]
        return bool(entries) and not entries[-1].active

    @contextlib.contextmanager
    def writing(self) -> Iterator[list[ProvisionedStation]]:
        """A locked read-modify-replace of the file (two operators provisioning at once do not lose an entry)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(".stations.lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entries = self.entries()
            yield entries
            write_public(self.path, (json.dumps([asdict(e) for e in entries], indent=1) + "\n").encode())


# --- the broker's files ------------------------------------------------------------------------------------------


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


def _replace_file(path: Path, lines: list[str], *, private: bool) -> None:
    data = ("\n".join(lines) + "\n").encode("utf-8")
    if private:
        write_private(path, data)
    else:
        write_public(path, data)


def write_broker_files(files: BrokerFiles, stations: Sequence[ProvisionedStation]) -> bool:
    """Rewrite the station part of the broker's password and ACL files from the registry; other users' lines are
    kept. Returns whether anything was written."""
    managed = {s.station for s in stations}
    active = [s for s in stations if s.active]
    written = False
    if files.password_file is not None:
        kept = [line for line in _read_lines(files.password_file) if line.split(":", 1)[0] not in managed]
        lines = kept + [f"{s.station}:{s.password_hash}" for s in active if s.auth == "password" and s.password_hash]
        _replace_file(files.password_file, lines, private=True)
        written = True
    if files.acl_file is not None:
        text = _read_lines(files.acl_file)
        if ACL_BEGIN in text and ACL_END in text:
            before, after = text[:text.index(ACL_BEGIN)], text[text.index(ACL_END) + 1:]
        else:
            before, after = [*text, ""], []
        block = [ACL_BEGIN]
        for s in active:
            block += ["", *acl_block(s.site, s.station)]
        block.append(ACL_END)
        _replace_file(files.acl_file, before + block + after, private=False)
        written = True
    return written


def reload_broker(files: BrokerFiles) -> bool:
    """Run `provisioning.broker_reload`; False when none is configured."""
    if not files.reload:
        return False
    try:
        result = subprocess.run(list(files.reload), capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProvisioningError(f"provisioning.broker_reload {list(files.reload)} failed: {exc}; reload the broker "
                                "by hand (systemctl reload mosquitto) or the change is not in force") from None
    if result.returncode != 0:
        raise ProvisioningError(f"provisioning.broker_reload {list(files.reload)} exited {result.returncode}: "
                                f"{(result.stderr or result.stdout).strip()[:300]}; reload the broker by hand "
                                "(systemctl reload mosquitto) or the change is not in force")
    return True


# --- provision and revoke ----------------------------------------------------------------------------------------


def provision_station(
    station: str, site: str, *, data_dir: Path, out_dir: Path, broker_host: str, broker_port: int,
    ca_dir: Path | None, broker: BrokerFiles, certificate: bool = False, template: Path | None = None,
    station_etc: str = "/etc/sinkwatch",
) -> ProvisionResult:
    """Create the station's credentials, signing key and station.yaml in `out_dir/<station>`, register it centrally
    and update the broker (module doc)."""
    registry = StationRegistry(data_dir)
    folder = out_dir / station
    ca = _open_ca(ca_dir, certificate)
    for entry in registry.entries():
        if entry.active and entry.station == station:
            where = "" if entry.site == site else f" at site {entry.site} (a broker user is a station id, so "
            where += "" if entry.site == site else "station ids must be unique across sites)"
            raise ProvisioningError(f"station {station} is provisioned already{where}; revoke it first "
                                    f"(sinkwatch station revoke {station} --site {entry.site})")
    if broker.password_file is not None:
        users = {line.split(":", 1)[0] for line in _read_lines(broker.password_file)}
        known = {e.station for e in registry.entries()}
        if station in users - known:
            raise ProvisioningError(f"{station} is a user of {broker.password_file} not made by provisioning (e.g. "
                                    "the central service's); choose another station id")
    if folder.exists() and any(folder.iterdir()):
        raise ProvisioningError(f"{folder}: exists and is not empty; it may hold this station's only copy of its "
                                "credentials: move it away first")
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    files: list[Path] = []
    record = ProvisionedStation(site=site, station=station, auth="certificate" if certificate else "password",
                                provisioned=_now())
    if certificate:
        assert ca is not None
        issued = ca.issue_client(station)
        write_public(folder / "client.crt", issued.cert_pem)
        write_private(folder / "client.key", issued.key_pem)
        files += [folder / "client.crt", folder / "client.key"]
        record.cert_serial = str(issued.serial)
    else:
        password = secrets.token_urlsafe(32)
        write_private(folder / "mqtt-password", password.encode() + b"\n")
        files.append(folder / "mqtt-password")
        record.password_hash = mosquitto_hash(password)
    if ca is not None:
        shutil.copyfile(ca.cert_path, folder / "ca.crt")
        os.chmod(folder / "ca.crt", 0o644)
        files.append(folder / "ca.crt")
    key = generate_key(folder / "signing-key")
    files.append(folder / "signing-key")
    try:
        registered = KeyRegistry(data_dir).register(site, station, key.public_key())
    except RegistryError as exc:
        raise ProvisioningError(f"registering the signing key of {site}/{station}: {exc}") from None
    record.key_id = registered.key_id
    text = render_template(template or TEMPLATE_PATH, site=site, station=station, broker_host=broker_host,
                           broker_port=broker_port, etc=station_etc, certificate=certificate,
                           ca_file=ca is not None)
    write_public(folder / "station.yaml", text.encode("utf-8"))
    files.insert(0, folder / "station.yaml")
    with registry.writing() as entries:
        entries.append(record)
        stations = list(entries)
    entries_text = _broker_entries_text(record)
    write_public(folder / "broker-entries.txt", entries_text.encode("utf-8"))
    files.append(folder / "broker-entries.txt")
    updated = write_broker_files(broker, stations)
    reloaded = reload_broker(broker) if updated else False
    return ProvisionResult(record, folder, tuple(files), updated, reloaded)


def revoke_station(station: str, site: str, *, data_dir: Path, ca_dir: Path | None,
                   broker: BrokerFiles) -> tuple[ProvisionedStation, bool, bool]:
    """Revoke everything provisioning gave the station; returns (record, broker files updated, reloaded)."""
    registry = StationRegistry(data_dir)
    with registry.writing() as entries:
        active = [e for e in entries if (e.site, e.station) == (site, station) and e.active]
        if not active:
            known = sorted({f"{e.station} ({e.site})" for e in entries if e.active})
            raise ProvisioningError(f"no active station {station} at site {site}; active: "
                                    f"{', '.join(known) or 'none'}")
        for entry in active:
            entry.revoked = _now()
        stations = list(entries)
    record = active[-1]
    if record.auth == "certificate":
        ca = _open_ca(ca_dir, True)
        assert ca is not None
        ca.revoke_client(station)
        if broker.crl_file is not None:
            write_public(broker.crl_file, ca.crl_path.read_bytes())
    with contextlib.suppress(RegistryError):  # a station provisioned before signing keys existed has none
        KeyRegistry(data_dir).revoke(site, station)
    updated = write_broker_files(broker, stations)
    reloaded = reload_broker(broker) if updated else False
    return record, updated, reloaded


def _open_ca(ca_dir: Path | None, required: bool) -> CertificateAuthority | None:
    if ca_dir is None:
        if required:
            raise ProvisioningError("a client certificate needs the private CA: set provisioning.ca_dir in "
                                    "central.yaml (sinkwatch central ca init --dir DIR)")
        return None
    try:
        return CertificateAuthority(ca_dir)
    except PkiError as exc:
        raise ProvisioningError(f"provisioning.ca_dir: {exc}") from None


def _broker_entries_text(record: ProvisionedStation) -> str:
    lines = [f"# broker entries for {record.site}/{record.station} ({record.auth}), provisioned {record.provisioned}",
             "# sinkwatch writes them itself when provisioning.broker_password_file/broker_acl_file are set; for a",
             "# broker on another host, add them there and reload it (systemctl reload mosquitto)."]
    if record.password_hash:
        lines += ["", "# password file (mosquitto's password_file):", f"{record.station}:{record.password_hash}"]
    else:
        lines += ["", "# no password line: the station logs in with its client certificate (the TLS listener with",
                  "# require_certificate and use_identity_as_username in deploy/mosquitto/sinkwatch.conf)"]
    lines += ["", "# ACL file (between the sinkwatch stations markers):", *acl_block(record.site, record.station)]
    return "\n".join(lines) + "\n"


def render_template(path: Path, *, site: str, station: str, broker_host: str, broker_port: int, etc: str,
                    certificate: bool, ca_file: bool) -> str:
    """The station.yaml template with $site, $station, $broker_host, $broker_port, $etc and $credentials (the
    credential keys of the chosen kind) filled in."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProvisioningError(f"station template {path}: {exc.strerror}") from None
    if certificate:
        credentials = [f"cert_file: {etc}/client.crt", f"key_file: {etc}/client.key"]
    else:
        credentials = [f"username: {station}", f"password_file: {etc}/mqtt-password"]
    tls = [f"ca_file: {etc}/ca.crt"] if ca_file else ["ca_file: null        # the system CA store"]
    values = {"site": site, "station": station, "broker_host": broker_host, "broker_port": str(broker_port),
              "etc": etc, "credentials": "\n  ".join(tls + credentials),
              "signing_key": f"signing_key: {etc}/signing-key"}  # every item is signed with it
    try:
        return string.Template(text).substitute(values)
    except (KeyError, ValueError) as exc:
        raise ProvisioningError(f"station template {path}: unknown or malformed placeholder {exc}; use $site, "
                                "$station, $broker_host, $broker_port, $etc, $credentials, $signing_key") from None
