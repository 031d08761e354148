"""Provisioning steps for one new tenant, each an idempotent activity the workflow drives.

A tenant is provisioned into a schema with two roles (``activities/postgres/roles.py``); the generated
passwords exist only inside ``create_roles`` (written to the secret backend, sent to PostgreSQL as
SCRAM verifiers) and never reach an activity result or history.

Ownership rule for cleanup: a schema this provisioning created carries the comment
``fleetway:provisioned-by:<workflow id>`` (set in the same transaction as ``CREATE SCHEMA``, so a
retry after a crash still recognises it). Cleanup drops the schema, both roles and both secrets
only for a schema so marked; a re-provisioning of an existing tenant (password rotation) never
drops anything.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from temporalio import activity

from fleetway.activities.database_target import DatabaseTarget
from fleetway.activities.errors import (
    ConfigurationError,
    FleetwayError,
    ProvisioningError,
    ProvisioningUnavailableError,
    to_application_error,
)
from fleetway.activities.postgres.roles import (
    PG_IDENTIFIER,
    PGRoleSpec,
    deprovision_pg_roles,
    provision_pg_roles,
)
from fleetway.activities.secrets.providers import SecretsProvider, SecretWriter, as_writer, provider_for
from fleetway.activities.wire import CLIENT_INPUT, WIRE_MODEL

__all__ = [
    "CleanupInput",
    "ProvisioningActivities",
    "ProvisioningTarget",
    "SchemaStep",
    "SeedInput",
    "TenantRoles",
]

_MARK: Final = "fleetway:provisioned-by:"
_PASSWORD_BYTES: Final = 24
T = TypeVar("T")


class TenantRoles(BaseModel):
    """The names provisioning creates for one tenant (defaults derive from the tenant id)."""

    model_config = CLIENT_INPUT

    tenant_id: str = Field(min_length=1, max_length=128)
    schema_name: str = ""
    migrator_role: str = ""
    runtime_role: str = ""
    secrets_backend: str = "default"

    @model_validator(mode="before")
    @classmethod
    def _default_names(cls, data: Any) -> Any:
        """Schema defaults to the tenant id, roles to ``<schema>_migrator`` and ``<schema>_app``."""
        if not isinstance(data, dict):
            return data
        schema = data.get("schema_name") or data.get("tenant_id", "")
        return {
            **data,
            "schema_name": schema,
            "migrator_role": data.get("migrator_role") or f"{schema}_migrator",
            "runtime_role": data.get("runtime_role") or f"{schema}_app",
        }

    @model_validator(mode="after")
    def _safe_names(self) -> TenantRoles:
        for name in ("schema_name", "migrator_role", "runtime_role"):
            value = getattr(self, name)
            if not PG_IDENTIFIER.fullmatch(value):
                raise ValueError(f"{name} {value[:80]!a} is not a safe identifier ({PG_IDENTIFIER.pattern})")
        if self.migrator_role == self.runtime_role:
            raise ValueError("migrator_role and runtime_role must differ")
        return self

    def spec(self, migrator_password: str | None = None, runtime_password: str | None = None) -> PGRoleSpec:
        """The role spec (validated again, raising named errors)."""
        return PGRoleSpec(
            schema_name=self.schema_name,
            migrator_role=self.migrator_role,
            runtime_role=self.runtime_role,
            migrator_password=SecretStr(migrator_password) if migrator_password else None,
            runtime_password=SecretStr(runtime_password) if runtime_password else None,
        )


class SchemaStep(BaseModel):
    """Whether the schema is this provisioning's own (created now or by an earlier attempt)."""

    model_config = WIRE_MODEL

    owned: bool


class SeedInput(BaseModel):
    """Seed SQL, run as the migrator role inside the tenant's schema, in one transaction."""

    model_config = WIRE_MODEL

    roles: TenantRoles
    sql: str = Field(max_length=256 * 1024)


class CleanupInput(BaseModel):
    """What to undo: everything when the schema is this provisioning's own, else nothing."""

    model_config = WIRE_MODEL

    roles: TenantRoles
    owned: bool


class ProvisioningTarget(BaseModel):
    """Where tenants' databases live as workers see them (written into the new secrets)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str
    port: int = 5432
    database: str

    @classmethod
    def from_dsn(cls, dsn: str) -> ProvisioningTarget:
        """Host, port and database of the admin connection string."""
        info = conninfo_to_dict(dsn)
        return cls(
            host=str(info.get("host") or "127.0.0.1"),
            port=int(info.get("port") or 5432),
            database=str(info.get("dbname") or "postgres"),
        )


class ProvisioningActivities:
    """The steps, bound to an admin DSN (CREATEROLE + CREATE on the database) and the secret backends."""

    def __init__(
        self,
        admin_dsn: str | None,
        secrets_backends: Mapping[str, SecretsProvider],
        *,
        target: ProvisioningTarget | None = None,
    ) -> None:
        self._dsn = admin_dsn
        self._backends = dict(secrets_backends)
        self._target = target or (ProvisioningTarget.from_dsn(admin_dsn) if admin_dsn else None)

    # ---- plumbing -----------------------------------------------------------------------------

    def _admin(self) -> psycopg.Connection[Any]:
        if not self._dsn:
            raise ConfigurationError("provisioning needs provisioning.admin_dsn")
        return psycopg.connect(self._dsn, autocommit=True, connect_timeout=10)

    def _writer(self, backend: str) -> SecretWriter:
        return as_writer(provider_for(self._backends, backend), backend)

    async def _guarded(self, step: Callable[[], T]) -> T:
        """Run a blocking step in a thread and map every failure to one named, safe error."""
        try:
            try:
                return await asyncio.to_thread(step)
            except psycopg.OperationalError as exc:
                raise ProvisioningUnavailableError(
                    f"provisioning database unreachable ({type(exc).__name__})"
                ) from None
            except psycopg.Error as exc:
                state = exc.sqlstate or "?"
                raise ProvisioningError(
                    f"PostgreSQL refused the step: SQLSTATE {state} ({type(exc).__name__})"
                ) from None
        except FleetwayError as exc:
            raise to_application_error(exc) from None

    # ---- steps ---------------------------------------------------------------------------------

    @activity.defn(name="provision_create_schema")
    async def create_schema(self, roles: TenantRoles) -> SchemaStep:
        """Create the schema, marked as this workflow's; report whether it is ours."""
        mark = _MARK + (activity.info().workflow_id or "")

        def run() -> SchemaStep:
            with self._admin() as conn, conn.transaction():
                conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                    (f"fleetway.provision.{roles.schema_name}",),
                )
                row = conn.execute(
                    "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s",
                    (roles.schema_name,),
                ).fetchone()
                if row is not None:
                    return SchemaStep(owned=row[0] == mark)
                schema = sql.Identifier(roles.schema_name)
                conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
                conn.execute(sql.SQL("COMMENT ON SCHEMA {} IS {}").format(schema, sql.Literal(mark)))
                return SchemaStep(owned=True)

        return await self._guarded(run)

    @activity.defn(name="provision_create_roles")
    async def create_roles(self, roles: TenantRoles) -> None:
        """Create or re-assert both roles with fresh passwords and store both secrets."""
        target = self._target
        if target is None:
            raise to_application_error(ConfigurationError("provisioning needs provisioning.admin_dsn"))
        migrator_pw, runtime_pw = (
            secrets.token_urlsafe(_PASSWORD_BYTES),
            secrets.token_urlsafe(_PASSWORD_BYTES),
        )

        def run() -> None:
            with self._admin() as conn:
                provision_pg_roles(conn, roles.spec(migrator_pw, runtime_pw))

        await self._guarded(run)
        try:
            writer = self._writer(roles.secrets_backend)
            where = target.model_dump() | {"schema_name": roles.schema_name}
            migrator = DatabaseTarget(**where, user=roles.migrator_role, password=SecretStr(migrator_pw))
            runtime = DatabaseTarget(**where, user=roles.runtime_role, password=SecretStr(runtime_pw))
            await writer.store(roles.tenant_id, migrator)
            await writer.store(roles.tenant_id, runtime, role="runtime")
        except FleetwayError as exc:
            raise to_application_error(exc) from None

    @activity.defn(name="provision_seed")
    async def seed(self, request: SeedInput) -> None:
        """Run the seed SQL as the migrator (credentials from the backend), in the tenant's schema."""
        try:
            provider = provider_for(self._backends, request.roles.secrets_backend)
            target = await provider.resolve(request.roles.tenant_id)
        except FleetwayError as exc:
            raise to_application_error(exc) from None

        def run() -> None:
            with psycopg.connect(
                host=target.host, port=target.port, dbname=target.database, user=target.user,
                password=target.password.get_secret_value(), connect_timeout=10,
            ) as conn, conn.transaction():  # fmt: skip
                conn.execute(
                    sql.SQL("SET LOCAL search_path = {}").format(sql.Identifier(request.roles.schema_name))
                )
                conn.execute(request.sql.encode())

        await self._guarded(run)

    @activity.defn(name="provision_cleanup")
    async def cleanup(self, request: CleanupInput) -> None:
        """Undo a failed provisioning of a schema it owns: schema, roles and secrets."""
        if not request.owned:
            activity.logger.warning("cleanup: schema not created by this provisioning; nothing dropped")
            return
        await self._drop(request.roles)

    @activity.defn(name="deprovision_tenant")
    async def deprovision(self, roles: TenantRoles) -> None:
        """Drop the tenant's schema (CASCADE), both roles and both secrets."""
        await self._drop(roles)

    async def _drop(self, roles: TenantRoles) -> None:
        def run() -> None:
            with self._admin() as conn:
                deprovision_pg_roles(conn, roles.spec())

        await self._guarded(run)
        try:
            writer = self._writer(roles.secrets_backend)
            await writer.delete(roles.tenant_id)
            await writer.delete(roles.tenant_id, role="runtime")
        except FleetwayError as exc:
            raise to_application_error(exc) from None
