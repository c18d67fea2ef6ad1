"""Typed configuration of the central service; `sample-central.yaml` next to this file documents every key."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from gateway.central.alerts_config import AlertsConfig
from gateway.central.budget_config import BudgetJobConfig
from gateway.central.soilstems_config import SoilJobConfig, StemsJobConfig
from gateway.configfile import ConfigError, check_inline_secrets, load_model, refuse_bool_for_number
from gateway.secretfile import SecretFields, expand_path, inline_secret_keys, private_mode_problem, resolve_secret
from gateway.tls import TlsClientFields, client_context

SAMPLE_CONFIG_PATH = Path(__file__).with_name("sample-central.yaml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, hide_input_in_errors=True)
    _refuse_bool_for_number = field_validator("*", mode="before")(refuse_bool_for_number)


class MqttSettings(TlsClientFields, SecretFields):
    """The broker connection; TLS keys (tls, ca_file, cert_file, key_file, check_hostname) from TlsClientFields."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, hide_input_in_errors=True)

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    # Fixed so the broker keeps our persistent session (and undelivered QoS 1 readings) across reconnects.
    client_id: str = Field(default="sinkwatch-central", min_length=1, max_length=64)
    username: str | None = None
    password: SecretStr | None = Field(default=None, description="inline, or ${ENV_VAR}; prefer password_file")
    password_file: Path | None = Field(default=None, description="file holding the broker password (mode 0600)")
    keepalive: int = Field(default=30, ge=5, le=3600)

    @model_validator(mode="after")
    def _resolve_password(self) -> MqttSettings:
        self._inline_secrets = inline_secret_keys(self.password, "mqtt.password")
        self.password = resolve_secret(self.password, self.password_file, "mqtt.password")
        return self


class StorageSettings(SecretFields):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, hide_input_in_errors=True)

    kind: Literal["influxdb", "sqlite", "victoriametrics"] = "sqlite"
    # InfluxDB
    url: str | None = Field(default=None, description="e.g. https://influx.example.org:8086")
    api: Literal["v1", "v2"] = "v1"
    database: str = Field(default="sinkwatch", min_length=1)
    retention_policy: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    token: SecretStr | None = None
    token_file: Path | None = None
    org: str | None = None
    bucket: str | None = None
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    ca_file: Path | None = Field(default=None, description="CA certificate (PEM) of an https:// url's server; "
                                                           "default: the system CA store")
    # InfluxDB: the hourly rollup (gateway/central/store/influx_rollup.py), its job run by the central service
    rollup: bool = Field(default=False, description="hourly reads from the hourly rollup, and flux records by "
                                                    "whole days from the packed flux copy, where they are current")
    rollup_every_s: float = Field(default=600.0, gt=0, le=86_400, description="seconds between rollup runs")
    # SQLite; for victoriametrics the side file of everything but the readings
    path: Path | None = None
    # VictoriaMetrics: `url` of a single node, or a cluster's vminsert/vmselect and its vmstorage nodes
    insert_url: str | None = Field(default=None, description="cluster: e.g. http://vminsert:8480/insert/0/influx")
    select_url: str | None = Field(default=None, description="cluster: e.g. http://vmselect:8481/select/0/prometheus")
    flush_urls: list[str] | None = Field(default=None, description="cluster: every vmstorage node, e.g. "
                                                                   "http://vmstorage-1:8482")

    @model_validator(mode="after")
    def _check_kind(self) -> StorageSettings:
        self._inline_secrets = (inline_secret_keys(self.password, "storage.password")
                                + inline_secret_keys(self.token, "storage.token"))
        self.password = resolve_secret(self.password, self.password_file, "storage.password")
        self.token = resolve_secret(self.token, self.token_file, "storage.token")
        if self.rollup and self.kind != "influxdb":
            raise ValueError(f"storage.rollup is for storage.kind influxdb (this is {self.kind}); remove "
                             "storage.rollup")
        for key in ("url", "insert_url", "select_url"):
            url = getattr(self, key)
            if url and not url.startswith(("http://", "https://")):  # `127.0.0.1:8086` was taken, then unreachable
                raise ValueError(f"storage.{key} ({url}) needs its scheme: http://{url} or https://{url}")
        if self.kind == "influxdb":
            if not self.url:
                raise ValueError("storage.url is required when storage.kind is influxdb, e.g. https://127.0.0.1:8086")
            if self.ca_file is not None:
                if not self.url.startswith("https://"):
                    raise ValueError(f"storage.ca_file is set but storage.url ({self.url}) is not https://; use "
                                     "https:// (and enable https in influxdb.conf, deploy/influxdb/README.md)")
                self.ca_file = expand_path(self.ca_file, "storage.ca_file")
                client_context(ca_file=self.ca_file, prefix="storage")  # readable PEM, now rather than at a write
            if self.api == "v2":
                missing = [key for key in ("token", "org", "bucket") if not getattr(self, key)]
                if missing:
                    raise ValueError(
                        f"storage.api v2 needs storage.{', storage.'.join(missing)} "
                        "(InfluxDB 2.x/3.x token, organisation and bucket)"
                    )
        elif self.kind == "victoriametrics":
            if not self.url and not (self.insert_url and self.select_url):
                raise ValueError("storage.url (a single node, e.g. http://127.0.0.1:8428) or storage.insert_url and "
                                 "storage.select_url (a cluster) are required when storage.kind is victoriametrics")
            if self.path is None:
                raise ValueError("storage.path is required when storage.kind is victoriametrics: the SQLite file "
                                 "that keeps what VictoriaMetrics cannot (flux records, budget runs, qc reasons, "
                                 "...), e.g. ./data/sinkwatch-side.sqlite")
        elif self.path is None:
            raise ValueError("storage.path is required when storage.kind is sqlite, e.g. ./data/sinkwatch.sqlite")
        return self


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535, description="0 picks a free port")
    auth: Literal["token", "development"] = Field(
        default="token", description="token: every request but /health needs a bearer token (sinkwatch central "
                                     "token create); development: no tokens, announced on every response; only "
                                     "on a loopback host")
    tls_cert_file: Path | None = Field(default=None, description="serve HTTPS with this certificate (PEM, chain)")
    tls_key_file: Path | None = Field(default=None, description="its private key (PEM, mode 0600)")
    status_page: Literal["operators", "public"] = Field(
        default="operators", description="who may open the status page at /: operators (a token of role operator, "
                                         "also as the password of the browser's sign-in) or public (anyone who can "
                                         "reach the service)")
    cors_origins: list[str] = Field(default_factory=list, description="web origins allowed to read the API from "
                                                                      "a browser, e.g. [https://grafana.example."
                                                                      "org]; empty: none (closed)")

    @model_validator(mode="after")
    def _check(self) -> ApiSettings:
        if self.auth == "development" and not _is_loopback(self.host):
            raise ValueError(f"api.auth development serves every request without a token and is refused on "
                             f"api.host {self.host}; use a loopback host (127.0.0.1) or api.auth: token")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("api.tls_cert_file and api.tls_key_file go together: give both to serve HTTPS")
        if self.tls_cert_file is not None and self.tls_key_file is not None:
            self.tls_cert_file = expand_path(self.tls_cert_file, "api.tls_cert_file")
            self.tls_key_file = expand_path(self.tls_key_file, "api.tls_key_file")
            for key, path in (("api.tls_cert_file", self.tls_cert_file), ("api.tls_key_file", self.tls_key_file)):
                if not path.is_file():
                    raise ValueError(f"{key}: {path} not found")
            problem = private_mode_problem(self.tls_key_file)
            if problem is not None:
                raise ValueError(f"api.tls_key_file: {problem}")
        for origin in self.cors_origins:
            if origin == "*" or not origin.startswith(("https://", "http://")):
                raise ValueError(f"api.cors_origins: {origin!r} is not an origin; list each one, e.g. "
                                 "https://grafana.example.org (a wildcard would let any web page read the data "
                                 "with a visitor's token)")
        return self

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert_file is not None else "http"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ProvisioningSettings(_Section):
    """`sinkwatch station provision|revoke` (gateway/central/provision.py): what a new station's station.yaml says
    about the broker, where the CA is, and the broker files to keep in step."""

    broker_host: str = Field(default="localhost", description="the broker's name as stations reach it (in its "
                                                              "TLS certificate)")
    broker_port: int = Field(default=8883, ge=1, le=65535, description="the broker's TLS listener for stations")
    broker_cert_port: int = Field(default=8884, ge=1, le=65535, description="its TLS listener that requires client "
                                                                           "certificates (--cert)")
    ca_dir: Path | None = Field(default=None, description="the private CA folder (sinkwatch central ca init); "
                                                          "needed for --cert, and gives each station ca.crt")
    broker_password_file: Path | None = Field(default=None, description="Mosquitto's password_file: station "
                                                                        "lines added and removed here")
    broker_acl_file: Path | None = Field(default=None, description="Mosquitto's acl_file: the station block "
                                                                   "between its markers rewritten")
    broker_crl_file: Path | None = Field(default=None, description="the broker's crlfile: the CA's CRL copied "
                                                                   "here on every revocation (--cert stations)")
    broker_reload: list[str] = Field(default_factory=list, description="command that makes the broker re-read "
                                                                       "both, e.g. [systemctl, reload, mosquitto]")
    out_dir: Path = Field(default=Path("./provisioned"), description="one folder per station, to copy onto it")
    station_template: Path | None = Field(default=None, description="your own station.yaml template; default: "
                                                                    "gateway/central/station-template.yaml")
    station_etc: str = Field(default="/etc/sinkwatch", description="where the folder's files live on the station")


class DeadLetterSettings(_Section):
    """Bounds of `<data_dir>/dead-letter.jsonl` (gateway/central/deadletter.py)."""

    max_file_bytes: int = Field(default=10 * 1024 * 1024, ge=4096, description="rotate the file past this size")
    keep_files: int = Field(default=5, ge=0, le=1000, description="rotated files kept (.1 newest); older are "
                                                                    "deleted, their records counted as dropped")
    max_payload_bytes: int = Field(default=64 * 1024, ge=256, description="payload bytes kept per dead letter "
                                                                          "(length and SHA-256 of the whole kept)")


class TrustSettings(_Section):
    """Station signatures (gateway/central/chain.py, docs/security.md); station keys live in
    `<data_dir>/trust/station-keys.json`."""

    signatures: Literal["required", "optional"] = Field(
        default="required", description="required: an unsigned item is dead-lettered and raises the alarm like a "
        "forged one; optional: unsigned items are stored (a migration), bad signatures are still refused")
    replay_after_s: float = Field(default=3600.0, gt=0, description="an item stored again later than this after "
                                  "its first arrival is recorded as a replay, not a duplicate (stored once either way)")


class CentralConfig(_Section):
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    storage: StorageSettings
    api: ApiSettings = Field(default_factory=ApiSettings)
    data_dir: Path = Field(default=Path("./data/central"), description="dead-letter file lives here")
    dead_letter: DeadLetterSettings = Field(default_factory=DeadLetterSettings)
    provisioning: ProvisioningSettings = Field(default_factory=ProvisioningSettings)
    budget: BudgetJobConfig = Field(default_factory=BudgetJobConfig)  # gateway/central/budget_config.py
    soil: SoilJobConfig = Field(default_factory=SoilJobConfig)  # gateway/central/soilstems_config.py
    stems: StemsJobConfig = Field(default_factory=StemsJobConfig)
    trust: TrustSettings = Field(default_factory=TrustSettings)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)  # gateway/central/alerts_config.py


def load_central_config(path: Path | str) -> CentralConfig:
    """Load and validate; raises gateway.configfile.ConfigError with a message naming the key (or the file and line
    of a tree list the config names, or, for a secret written into a file others may read, the file and the fix)."""
    config = load_model(path, CentralConfig, "start from `sinkwatch central sample-config > central.yaml`")
    check_inline_secrets(path, config.mqtt.inline_secrets + config.storage.inline_secrets)
    try:
        config.stems.load_files(Path(path).parent)
    except ValueError as exc:
        raise ConfigError(f"{path}: invalid configuration\n  {exc}") from None
    return config
