"""Typed configuration of the central service; `sample-central.yaml` next to this file documents every key."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.central.budget_config import BudgetJobConfig
from gateway.central.soilstems_config import SoilJobConfig, StemsJobConfig
from gateway.configfile import ConfigError, load_model

SAMPLE_CONFIG_PATH = Path(__file__).with_name("sample-central.yaml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class MqttSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    # Fixed so the broker keeps our persistent session (and undelivered QoS 1 readings) across reconnects.
    client_id: str = Field(default="sinkwatch-central", min_length=1, max_length=64)
    username: str | None = None
    password: str | None = None
    keepalive: int = Field(default=30, ge=5, le=3600)


class StorageSettings(_Section):
    kind: Literal["influxdb", "sqlite"] = "sqlite"
    # InfluxDB
    url: str | None = Field(default=None, description="e.g. http://127.0.0.1:8086")
    api: Literal["v1", "v2"] = "v1"
    database: str = Field(default="sinkwatch", min_length=1)
    retention_policy: str | None = None
    username: str | None = None
    password: str | None = None
    token: str | None = None
    org: str | None = None
    bucket: str | None = None
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    # SQLite
    path: Path | None = None

    @model_validator(mode="after")
    def _check_kind(self) -> StorageSettings:
        if self.kind == "influxdb":
            if not self.url:
                raise ValueError("storage.url is required when storage.kind is influxdb, e.g. http://127.0.0.1:8086")
            if self.api == "v2":
                missing = [key for key in ("token", "org", "bucket") if not getattr(self, key)]
                if missing:
                    raise ValueError(
                        f"storage.api v2 needs storage.{', storage.'.join(missing)} "
                        "(InfluxDB 2.x/3.x token, organisation and bucket)"
                    )
        elif self.path is None:
            raise ValueError("storage.path is required when storage.kind is sqlite, e.g. ./data/sinkwatch.sqlite")
        return self


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535, description="0 picks a free port")


class DeadLetterSettings(_Section):
    """Bounds of `<data_dir>/dead-letter.jsonl` (gateway/central/deadletter.py)."""

    max_file_bytes: int = Field(default=10 * 1024 * 1024, ge=4096, description="rotate the file past this size")
    keep_files: int = Field(default=5, ge=0, le=1000, description="rotated files kept (.1 newest); older are "
                                                                    "deleted, their records counted as dropped")
    max_payload_bytes: int = Field(default=64 * 1024, ge=256, description="payload bytes kept per dead letter "
                                                                          "(length and SHA-256 of the whole kept)")


class CentralConfig(_Section):
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    storage: StorageSettings
    api: ApiSettings = Field(default_factory=ApiSettings)
    data_dir: Path = Field(default=Path("./data/central"), description="dead-letter file lives here")
    dead_letter: DeadLetterSettings = Field(default_factory=DeadLetterSettings)
    budget: BudgetJobConfig = Field(default_factory=BudgetJobConfig)  # gateway/central/budget_config.py
    soil: SoilJobConfig = Field(default_factory=SoilJobConfig)  # gateway/central/soilstems_config.py
    stems: StemsJobConfig = Field(default_factory=StemsJobConfig)


def load_central_config(path: Path | str) -> CentralConfig:
    """Load and validate; raises gateway.configfile.ConfigError with a message naming the key (or the file and line
    of a tree list the config names)."""
    config = load_model(path, CentralConfig)
    try:
        config.stems.load_files(Path(path).parent)
    except ValueError as exc:
        raise ConfigError(f"{path}: invalid configuration\n  {exc}") from None
    return config
