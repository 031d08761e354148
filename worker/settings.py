"""All worker and CLI settings: environment (``FLEETWAY_*``, ``__`` for nesting) or a TOML file.

Loaded once, in ``worker/``, and passed down as typed objects; ``activities/`` and ``workflows/``
never read the environment. Secret fields are ``SecretStr``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = [
    "AuditConfig",
    "AwsSecretsConfig",
    "FlywayConfig",
    "HttpTenantSourceConfig",
    "ProvisioningConfig",
    "QuiesceConfig",
    "SecretsConfig",
    "Settings",
    "TemporalConfig",
    "TenantSourceConfig",
    "VaultConfig",
    "WorkerConfig",
]

_SECTION = ConfigDict(extra="forbid")


class TemporalConfig(BaseModel):
    """Where the Temporal frontend is and how to authenticate to it."""

    model_config = _SECTION

    address: str = "127.0.0.1:7233"
    namespace: str = "default"
    task_queue: str = "fleetway"
    api_key: SecretStr | None = None
    tls: bool = False
    tls_client_cert: Path | None = None
    tls_client_key: Path | None = None
    tls_server_ca: Path | None = None


class FlywayConfig(BaseModel):
    """How the worker runs Flyway."""

    model_config = _SECTION

    locations: list[Path] = Field(default_factory=lambda: [Path("migrations/demo")])
    lib_dir: Path | None = None
    java: str = "java"
    timeout_s: int = Field(default=600, ge=1)
    lock_retry_count: int = Field(default=50, ge=-1)
    engine: Literal["cli"] = "cli"


class AwsSecretsConfig(BaseModel):
    """AWS Secrets Manager: secret ``<prefix><tenant id>``; credentials from the default AWS chain."""

    model_config = _SECTION

    prefix: str = "fleetway/migrate/"
    region: str | None = None
    endpoint_url: str | None = None
    profile: str | None = None


class VaultConfig(BaseModel):
    """Vault/OpenBao KV v2: secret ``<mount>/data/<prefix><tenant id>``; token or AppRole auth."""

    model_config = _SECTION

    url: str = "https://127.0.0.1:8200"
    mount: str = "secret"
    prefix: str = "fleetway/migrate/"
    namespace: str | None = None
    auth: Literal["token", "approle"] = "token"
    token: SecretStr | None = None
    token_file: Path | None = None
    role_id: str | None = None
    secret_id: SecretStr | None = None
    secret_id_file: Path | None = None
    approle_mount: str = "approle"
    ca_file: Path | None = None


class SecretsConfig(BaseModel):
    """The secret backend that resolves tenant credentials (registered as ``default``)."""

    model_config = _SECTION

    backend: Literal["file", "aws", "vault"] = "file"
    file: Path = Path(".fleetway/secrets.json")
    cache_ttl_s: float = Field(default=300.0, ge=0, le=86_400)
    aws: AwsSecretsConfig = AwsSecretsConfig()
    vault: VaultConfig = VaultConfig()


class HttpTenantSourceConfig(BaseModel):
    """The control-plane API (``GET <url>/tenants``); the token from here or a file, never argv."""

    model_config = _SECTION

    url: str | None = None
    token: SecretStr | None = None
    token_file: Path | None = None
    allow_http_loopback: bool = False
    timeout_s: float = Field(default=30.0, gt=0, le=600)
    max_response_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_attempts: int = Field(default=4, ge=1, le=20)
    ca_file: Path | None = None


class TenantSourceConfig(BaseModel):
    """Where the tenant list comes from (registered as ``default``)."""

    model_config = _SECTION

    kind: Literal["static", "file", "http"] = "static"
    tenants: list[str] = Field(default_factory=list)
    file: Path | None = None
    http: HttpTenantSourceConfig = HttpTenantSourceConfig()


class QuiesceConfig(BaseModel):
    """The quiesce flag's store: PostgreSQL when a DSN is set, else in-process memory."""

    model_config = _SECTION

    dsn: SecretStr | None = None
    table: str = "fleetway_quiesce"


class ProvisioningConfig(BaseModel):
    """Tenant provisioning: an admin login (CREATEROLE + CREATE on the database) and where tenants live."""

    model_config = _SECTION

    admin_dsn: SecretStr | None = None
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    database: str | None = None
    quiesce_poll_s: float = Field(default=10.0, ge=0.1, le=3600)


class AuditConfig(BaseModel):
    """The durable audit sink; spans and log records are always emitted."""

    model_config = _SECTION

    sink: Literal["none", "postgres", "jsonl"] = "none"
    dsn: SecretStr | None = None
    table: str = "fleetway_audit_events"
    path: Path = Path(".fleetway/audit.jsonl")
    queue_size: int = Field(default=256, ge=1, le=1_000_000)
    close_timeout_s: float = Field(default=5.0, ge=0, le=600)


class WorkerConfig(BaseModel):
    """Worker process limits."""

    model_config = _SECTION

    max_concurrent_activities: int = Field(default=8, ge=1, le=512)
    graceful_shutdown_s: int = Field(default=30, ge=0)


class Settings(BaseSettings):
    """Everything configurable. ``TEMPORAL_ADDRESS``/``TEMPORAL_NAMESPACE`` are honoured too."""

    model_config = SettingsConfigDict(
        env_prefix="FLEETWAY_", env_nested_delimiter="__", extra="forbid", populate_by_name=True
    )

    temporal: TemporalConfig = TemporalConfig()
    temporal_address: str | None = Field(
        default=None, validation_alias=AliasChoices("TEMPORAL_ADDRESS", "FLEETWAY_TEMPORAL_ADDRESS")
    )
    temporal_namespace: str | None = Field(
        default=None, validation_alias=AliasChoices("TEMPORAL_NAMESPACE", "FLEETWAY_TEMPORAL_NAMESPACE")
    )
    flyway: FlywayConfig = FlywayConfig()
    secrets: SecretsConfig = SecretsConfig()
    tenants: TenantSourceConfig = TenantSourceConfig()
    quiesce: QuiesceConfig = QuiesceConfig()
    audit: AuditConfig = AuditConfig()
    provisioning: ProvisioningConfig = ProvisioningConfig()
    worker: WorkerConfig = WorkerConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Precedence: explicit arguments, environment, then ``$FLEETWAY_CONFIG`` (TOML)."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config = os.environ.get("FLEETWAY_CONFIG")
        if config:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config)))
        return tuple(sources)

    def effective_temporal(self) -> TemporalConfig:
        """The Temporal section with the standard ``TEMPORAL_*`` variables applied."""
        updates = {
            k: v for k, v in (("address", self.temporal_address), ("namespace", self.temporal_namespace)) if v
        }
        return self.temporal.model_copy(update=updates)
