"""Settings → the configured secret backend, tenant source and quiesce store.

The only place that turns configuration (including secret files on disk) into the objects the
activities receive. Tokens and secret ids are read here, once, into ``SecretStr``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import SecretStr

from fleetway.activities.audit.events import AuditSink, Emitter
from fleetway.activities.audit.sinks import JsonlAuditSink, PostgresAuditSink
from fleetway.activities.errors import ConfigurationError, QuiesceStoreMissingError
from fleetway.activities.postgres.provisioning import ProvisioningActivities, ProvisioningTarget
from fleetway.activities.quiesce import MemoryQuiesceController, PostgresQuiesceController, QuiesceController
from fleetway.activities.secrets.aws import AwsSecretsManagerProvider
from fleetway.activities.secrets.cache import CachedSecretsProvider
from fleetway.activities.secrets.providers import FileSecretsProvider, SecretsProvider
from fleetway.activities.secrets.vault import VaultAuth, VaultSecretsProvider
from fleetway.activities.sets.store import (
    DirectorySetStore,
    MigrationSets,
    MigrationSetStore,
    S3SetStore,
    SetCache,
)
from fleetway.activities.tenants.http import HttpTenantLister
from fleetway.activities.tenants.static import StaticTenantLister, TenantLister, load_tenant_entries
from fleetway.worker.config.settings import Settings

__all__ = [
    "audit_emitter",
    "migration_sets",
    "provisioning_activities",
    "quiesce_controller",
    "quiesce_store_named",
    "read_secret_file",
    "secrets_provider",
    "set_store",
    "shared_quiesce_controller",
    "tenant_lister",
]


def read_secret_file(path: Path, *, what: str) -> SecretStr:
    """Read a token-like secret from a file (trimmed); the value never appears in an error.

    Raises:
        ConfigurationError: the file is missing, unreadable or empty.
    """
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {what} file {str(path)!r}: {exc.strerror}") from None
    if not value:
        raise ConfigurationError(f"{what} file {str(path)!r} is empty")
    return SecretStr(value)


def _either(value: SecretStr | None, path: Path | None, *, what: str) -> SecretStr | None:
    if value is not None and path is not None:
        raise ConfigurationError(f"set either the {what} or the {what} file, not both")
    return read_secret_file(path, what=what) if path is not None else value


def secrets_provider(settings: Settings) -> SecretsProvider:
    """The configured backend, behind the TTL cache (``secrets.cache_ttl_s``; 0 disables it)."""
    config = settings.secrets
    inner: SecretsProvider
    if config.backend == "aws":
        aws = config.aws
        inner = AwsSecretsManagerProvider(
            prefix=aws.prefix, region=aws.region, endpoint_url=aws.endpoint_url, profile=aws.profile
        )
    elif config.backend == "vault":
        vault = config.vault
        try:
            auth = VaultAuth(
                method=vault.auth,
                token=_either(vault.token, vault.token_file, what="vault token"),
                role_id=vault.role_id,
                secret_id=_either(vault.secret_id, vault.secret_id_file, what="vault secret id"),
                approle_mount=vault.approle_mount,
            )
        except ValueError as exc:
            raise ConfigurationError(f"vault auth settings incomplete ({exc.__class__.__name__})") from None
        inner = VaultSecretsProvider(
            url=vault.url,
            auth=auth,
            mount=vault.mount,
            prefix=vault.prefix,
            namespace=vault.namespace,
            verify=str(vault.ca_file) if vault.ca_file else True,
        )
    else:
        inner = FileSecretsProvider(config.file.resolve())
    if config.cache_ttl_s == 0:
        return inner
    return CachedSecretsProvider(inner, ttl_s=config.cache_ttl_s)


def set_store(settings: Settings) -> MigrationSetStore | None:
    """The configured migration set store (None: ``sets.store = none``)."""
    config = settings.sets
    if config.store == "dir":
        if config.dir is None:
            raise ConfigurationError("sets.store = dir needs sets.dir")
        return DirectorySetStore(config.dir)
    if config.store == "s3":
        if not config.bucket:
            raise ConfigurationError("sets.store = s3 needs sets.bucket")
        return S3SetStore(
            config.bucket,
            prefix=config.prefix,
            region=config.region,
            endpoint_url=config.endpoint_url,
            profile=config.profile,
        )
    return None


def migration_sets(settings: Settings) -> MigrationSets:
    """The worker's set resolver: its own folders, its snapshot cache, its set store.

    Raises:
        MigrationSetInvalidError: the own folders are missing, unreadable or empty (checked now,
            at start, not at the first tenant) and there is no store; or the cache path is unusable.
    """
    store = set_store(settings)
    sets = MigrationSets(settings.flyway.locations, SetCache(settings.sets.cache), store)
    if settings.flyway.locations or store is None:
        sets.local_manifest()
    return sets


def tenant_lister(settings: Settings) -> TenantLister:
    """The configured tenant source."""
    tenants = settings.tenants
    if tenants.kind == "http":
        http = tenants.http
        if not http.url:
            raise ConfigurationError("tenants.kind = http needs tenants.http.url")
        return HttpTenantLister(
            http.url,
            token=_either(http.token, http.token_file, what="tenant source token"),
            allow_http_loopback=http.allow_http_loopback,
            timeout_s=http.timeout_s,
            max_response_bytes=http.max_response_bytes,
            verify=str(http.ca_file) if http.ca_file else True,
        )
    if tenants.kind == "file":
        if tenants.file is None:
            raise ConfigurationError("tenants.kind = file needs tenants.file")
        entries = load_tenant_entries(tenants.file)
        return StaticTenantLister(list(entries), entries)
    return StaticTenantLister(tenants.tenants, tenants.labels)


def audit_emitter(settings: Settings) -> Emitter:
    """An emitter with the configured durable sink (spans and logs always; a sink when configured)."""
    audit = settings.audit
    sink: AuditSink | None = None
    if audit.sink == "postgres":
        if audit.dsn is None:
            raise ConfigurationError("audit.sink = postgres needs audit.dsn")
        sink = PostgresAuditSink(audit.dsn.get_secret_value(), table=audit.table)
    elif audit.sink == "jsonl":
        sink = JsonlAuditSink(audit.path)
    return Emitter(sink, queue_size=audit.queue_size)


def provisioning_activities(
    settings: Settings, secrets: Mapping[str, SecretsProvider]
) -> ProvisioningActivities:
    """Provisioning steps bound to the admin DSN; target host/port/database default to the DSN's."""
    config = settings.provisioning
    dsn = config.admin_dsn.get_secret_value() if config.admin_dsn else None
    target = None
    if dsn is not None:
        base = ProvisioningTarget.from_dsn(dsn)
        target = ProvisioningTarget(
            host=config.host or base.host,
            port=config.port or base.port,
            database=config.database or base.database,
        )
    return ProvisioningActivities(dsn, secrets, target=target)


def quiesce_controller(settings: Settings) -> QuiesceController:
    """The flag store a worker checks: PostgreSQL, or (no ``quiesce.dsn``) a memory flag nobody sets."""
    if settings.quiesce.dsn is not None:
        dsn = settings.quiesce.dsn.get_secret_value()
        return PostgresQuiesceController(dsn, table=settings.quiesce.table)
    return MemoryQuiesceController()


def quiesce_store_named(settings: Settings) -> str:
    """The quiesce store a rollout started here is pinned to: this client's own ("" when unset).

    The store ``fleetway quiesce set`` writes from the same settings; workers reading another store
    (or none) refuse the rollout's checks, so the flag this client sets is the one that holds it.
    """
    if settings.quiesce.dsn is None:
        return ""
    return quiesce_controller(settings).description


def shared_quiesce_controller(settings: Settings) -> QuiesceController:
    """The store behind ``fleetway quiesce set|clear|status``: a shared one, never process memory.

    Raises:
        QuiesceStoreMissingError: ``quiesce.dsn`` is unset (a flag in the CLI's own memory would
            print ACTIVE and stop nothing).
    """
    if settings.quiesce.dsn is None:
        raise QuiesceStoreMissingError(
            "the deployment quiesce flag needs a shared store every worker reads: set quiesce.dsn "
            "(FLEETWAY_QUIESCE__DSN) to the control-plane PostgreSQL; nothing was changed"
        )
    return quiesce_controller(settings)
