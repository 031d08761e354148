"""All worker and CLI settings: environment (``FLEETWAY_*``, ``__`` for nesting) or a TOML file.

Loaded once, in ``worker/``, and passed down as typed objects; ``activities/`` and ``workflows/``
never read the environment. Secret fields are ``SecretStr``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from fleetway.activities.errors import ConfigurationError
from fleetway.activities.flyway.contract import DEFAULT_JVM_OPTIONS

__all__ = [
    "AuditConfig",
    "AwsSecretsConfig",
    "FlywayConfig",
    "HttpTenantSourceConfig",
    "ProvisioningConfig",
    "QuiesceConfig",
    "RolloutConfig",
    "SecretsConfig",
    "SetsConfig",
    "Settings",
    "TemporalConfig",
    "TenantSourceConfig",
    "VaultConfig",
    "WorkerConfig",
    "load_settings",
]

# Attribute docstrings become field descriptions: docs/settings.md's table is generated from them.
_SECTION = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class TemporalConfig(BaseModel):
    """Where the Temporal frontend is and how to authenticate to it."""

    model_config = _SECTION

    address: str = "127.0.0.1:7233"
    """Temporal frontend host:port (`TEMPORAL_ADDRESS` also works)."""
    namespace: str = "default"
    """Temporal namespace (`TEMPORAL_NAMESPACE` also works)."""
    task_queue: str = "fleetway"
    """Task queue shared by workers, rollouts and schedules."""
    api_key: SecretStr | None = None
    """Temporal Cloud API key (implies TLS)."""
    tls: bool = False
    """Use TLS with the system CAs."""
    tls_client_cert: Path | None = None
    """mTLS client certificate (PEM file)."""
    tls_client_key: Path | None = None
    """mTLS client key (PEM file)."""
    tls_server_ca: Path | None = None
    """CA bundle for the server certificate (PEM file)."""


class FlywayConfig(BaseModel):
    """How the worker runs Flyway."""

    model_config = _SECTION

    locations: list[Path] = Field(default_factory=list)
    """JSON list of folders forming the worker's migration set; required (`[]` only with a set store)."""
    lib_dir: Path | None = None
    """Folder of the Flyway jars; required by a worker, which never fetches them (the image sets it)."""
    java: str = "java"
    """Java executable."""
    timeout_s: int = Field(default=600, ge=1)
    """Budget of a Flyway run whose caller names none; a rollout's runs use its `flyway_timeout_s`."""
    lock_timeout_s: float = Field(default=10.0, ge=0)
    """How long a migration statement waits for a table lock, then fails and is retried (0: forever)."""
    lock_retry_count: int = Field(default=50, ge=-1)
    """Seconds to wait for another runner's schema-history lock."""
    engine: Literal["auto", "cli", "jvm"] = "auto"
    """`auto` (jvm for PostgreSQL, cli for Oracle), `cli` (a process per run) or `jvm` (a JVM per worker)."""
    jvm_options: list[str] = Field(default_factory=lambda: list(DEFAULT_JVM_OPTIONS))
    """JSON list of options for the `jvm` engine's JVM (bounded heap keeps worker memory flat)."""


class SetsConfig(BaseModel):
    """Migration sets: the worker's digest-keyed snapshot cache and the set store it fetches from."""

    model_config = _SECTION

    cache: Path = Path(".fleetway/sets")
    """Folder of verified set snapshots, one per digest (Flyway reads only these)."""
    store: Literal["none", "dir", "s3"] = "none"
    """Where workers fetch sets they lack and `migrations push` uploads: `none`, `dir` or `s3`."""
    dir: Path | None = None
    """Folder of a `dir` set store (a shared volume)."""
    bucket: str | None = None
    """S3 bucket of an `s3` set store (credentials: the default AWS chain)."""
    prefix: str = "fleetway/sets/"
    """Key prefix in the bucket; must end with `/`."""
    region: str | None = None
    """AWS region of the bucket (default: the AWS chain's)."""
    endpoint_url: str | None = None
    """S3 endpoint override (MinIO, moto)."""
    profile: str | None = None
    """Shared-config profile for the bucket."""


class AwsSecretsConfig(BaseModel):
    """AWS Secrets Manager: secret ``<prefix><tenant id>``; credentials from the default AWS chain."""

    model_config = _SECTION

    prefix: str = "fleetway/migrate/"
    """Secret name prefix; must end with `/`."""
    region: str | None = None
    """AWS region (default: the AWS chain's)."""
    endpoint_url: str | None = None
    """Endpoint override (VPC endpoint, LocalStack, moto)."""
    profile: str | None = None
    """Shared-config profile."""


class VaultConfig(BaseModel):
    """Vault/OpenBao KV v2: secret ``<mount>/data/<prefix><tenant id>``; token or AppRole auth."""

    model_config = _SECTION

    url: str = "https://127.0.0.1:8200"
    """Vault/OpenBao address."""
    mount: str = "secret"
    """KV v2 mount."""
    prefix: str = "fleetway/migrate/"
    """Path prefix under the mount; must end with `/`."""
    namespace: str | None = None
    """Vault Enterprise namespace."""
    auth: Literal["token", "approle"] = "token"
    """`token` or `approle`."""
    token: SecretStr | None = None
    """Token (token auth)."""
    token_file: Path | None = None
    """File holding the token (instead of `token`)."""
    role_id: str | None = None
    """AppRole role id."""
    secret_id: SecretStr | None = None
    """AppRole secret id."""
    secret_id_file: Path | None = None
    """File holding the AppRole secret id (instead of `secret_id`)."""
    approle_mount: str = "approle"
    """Mount of the AppRole auth method."""
    ca_file: Path | None = None
    """CA bundle for Vault's TLS."""


class SecretsConfig(BaseModel):
    """The secret backend that resolves tenant credentials (registered as ``default``)."""

    model_config = _SECTION

    backend: Literal["file", "aws", "vault"] = "file"
    """Where tenant credentials come from: `file`, `aws` or `vault`."""
    file: Path = Path(".fleetway/secrets.json")
    """File backend: `{\"tenants\": {\"<id>\": {...}}}`."""
    cache_ttl_s: float = Field(default=300.0, ge=0, le=86_400)
    """Per-worker secret cache TTL in seconds (0: off)."""
    aws: AwsSecretsConfig = AwsSecretsConfig()
    vault: VaultConfig = VaultConfig()


class HttpTenantSourceConfig(BaseModel):
    """The control-plane API (``GET <url>/tenants``); the token from here or a file, never argv."""

    model_config = _SECTION

    url: str | None = None
    """Control-plane base URL (`/tenants` is appended)."""
    token: SecretStr | None = None
    """Bearer token."""
    token_file: Path | None = None
    """File holding the bearer token (instead of `token`)."""
    allow_http_loopback: bool = False
    """Permit plain http to a loopback host (development only)."""
    timeout_s: float = Field(default=30.0, gt=0, le=600)
    """Per-request timeout in seconds."""
    max_response_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    """Largest page accepted, enforced while streaming."""
    ca_file: Path | None = None
    """CA bundle for the control plane's TLS."""


class TenantSourceConfig(BaseModel):
    """Where the tenant list comes from (registered as ``default``)."""

    model_config = _SECTION

    kind: Literal["static", "file", "http"] = "static"
    """`static`, `file` or `http`."""
    tenants: list[str] = Field(default_factory=list)
    """Static list (JSON list of tenant ids)."""
    labels: dict[str, dict[str, str]] = Field(default_factory=dict)
    """Labels of the static list's tenants (JSON object: id → {key: value}), for wave selectors."""
    file: Path | None = None
    """Tenants file: txt (one id a line, optionally `key=value` labels after it), json or yaml."""
    http: HttpTenantSourceConfig = HttpTenantSourceConfig()


class QuiesceConfig(BaseModel):
    """The quiesce flag's store: PostgreSQL when a DSN is set, else in-process memory."""

    model_config = _SECTION

    dsn: SecretStr | None = None
    """Control-plane PostgreSQL for the quiesce flag (unset: workers see no flag; `quiesce set` refuses)."""
    table: str = "fleetway_quiesce"
    """Quiesce table (schema-qualified allowed)."""


class ProvisioningConfig(BaseModel):
    """Tenant provisioning: an admin login (CREATEROLE + CREATE on the database) and where tenants live."""

    model_config = _SECTION

    admin_dsn: SecretStr | None = None
    """Provisioning login: CREATEROLE and CREATE on the database (or superuser)."""
    host: str | None = None
    """Host written into provisioned tenants' secrets (default: the admin DSN's)."""
    port: int | None = Field(default=None, ge=1, le=65535)
    """Port written into provisioned tenants' secrets (default: the admin DSN's)."""
    database: str | None = None
    """Database written into provisioned tenants' secrets (default: the admin DSN's)."""
    quiesce_poll_s: float = Field(default=10.0, ge=0.1, le=3600)
    """How often a provisioning parked by the quiesce flag re-checks it."""


class AuditConfig(BaseModel):
    """The durable audit sink; spans and log records are always emitted."""

    model_config = _SECTION

    sink: Literal["none", "postgres", "jsonl"] = "none"
    """Durable audit sink: `none`, `postgres` or `jsonl` (spans and logs are always emitted)."""
    dsn: SecretStr | None = None
    """PostgreSQL sink connection string (use its own database or role)."""
    table: str = "fleetway_audit_events"
    """PostgreSQL sink table (schema-qualified allowed)."""
    path: Path = Path(".fleetway/audit.jsonl")
    """JSON-lines sink file."""
    queue_size: int = Field(default=256, ge=1, le=1_000_000)
    """Sink queue capacity; a full queue drops the newest event (counted)."""
    close_timeout_s: float = Field(default=5.0, ge=0, le=600)
    """Seconds to drain the sink queue at shutdown."""


class WorkerConfig(BaseModel):
    """Worker process limits."""

    model_config = _SECTION

    max_concurrent_activities: int = Field(default=8, ge=1, le=512)
    """Activities (Flyway runs) at once per worker."""
    graceful_shutdown_s: int = Field(default=30, ge=0)
    """SIGTERM grace for in-flight activities; set above the longest migration."""
    # Cancellation reaches an activity only in a heartbeat's reply, and the SDK otherwise flushes
    # heartbeats at 0.8x the heartbeat timeout (24 s at the default 30 s): a cancelled rollout's
    # JVMs ran on that long. Each in-flight activity costs one server call per interval.
    heartbeat_flush_s: float = Field(default=2.0, gt=0, le=60)
    """Most seconds between heartbeats reaching the server; bounds how fast a cancel kills Flyway."""
    deployment_name: str = Field(default="", pattern=r"^([A-Za-z0-9_-]{1,200})?$")
    """Worker Versioning: the Worker Deployment this worker joins (unset: unversioned workers)."""
    build_id: str = Field(default="", pattern=r"^([A-Za-z0-9._+-]{1,200})?$")
    """Worker Versioning: this worker's build id (unset: the installed fleetway's version)."""


class RolloutConfig(BaseModel):
    """Defaults of a rollout's per-server controls (a flag or the plan file overrides each)."""

    model_config = _SECTION

    per_server: int | None = Field(default=None, ge=1, le=256)
    """Most of a rollout's tenants in flight on one database server (unset: only the window)."""
    server_checks: bool = True
    """Check a server (reachable, under the thresholds) before dispatching to it; park or hold it."""
    max_lock_waiters: int | None = Field(default=None, ge=0)
    """Hold a server while more sessions than this wait on a lock (unset: not checked)."""
    min_free_connections: int | None = Field(default=None, ge=1)
    """Hold a server while fewer client connections than this are free (unset: not checked)."""
    park_limit_s: int | None = Field(default=None, ge=10)
    """A server parked this long ends its undispatched tenants unreachable (unset: the retry budget)."""


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
    sets: SetsConfig = SetsConfig()
    secrets: SecretsConfig = SecretsConfig()
    tenants: TenantSourceConfig = TenantSourceConfig()
    quiesce: QuiesceConfig = QuiesceConfig()
    audit: AuditConfig = AuditConfig()
    provisioning: ProvisioningConfig = ProvisioningConfig()
    worker: WorkerConfig = WorkerConfig()
    rollout: RolloutConfig = RolloutConfig()

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


def load_settings() -> Settings:
    """Settings from the environment and ``FLEETWAY_CONFIG``; invalid ones name fields, never values.

    Raises:
        ConfigurationError: a setting is invalid (``invalid settings: temporal.address, ...``).
    """
    try:
        return Settings()
    except ValidationError as exc:
        fields = ", ".join(sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()}))
        raise ConfigurationError(f"invalid settings: {fields}") from None
