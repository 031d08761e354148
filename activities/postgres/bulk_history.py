"""Many tenants' ``flyway_schema_history`` in few reads: the ground for "provably current" (issue 25).

Tenants that share a server, database and login are read over one connection with one query per
batch of schemas; tenants elsewhere are one short connection each, in parallel and bounded. The
credentials stay in this process: what leaves is compact per-tenant state and a server key
(``host:port``), never a login.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Final

import psycopg
from psycopg import sql
from pydantic import BaseModel, Field

from fleetway.activities.database_target import (
    DatabaseTarget,
    Vendor,
    check_pg_identifier,
    libpq_conninfo,
    server_key,
)
from fleetway.activities.errors import ConfigurationError, SchemaHistoryUnavailableError
from fleetway.activities.wire import WIRE_MODEL

__all__ = ["AppliedScript", "TenantHistory", "read_histories"]

_HISTORY: Final = "flyway_schema_history"
_BATCH: Final = 200  # schemas per query: one UNION ALL stays far below PostgreSQL's limits


class AppliedScript(BaseModel):
    """The latest row of one migration: ``V<version>`` or ``R <description>``."""

    model_config = WIRE_MODEL

    key: str
    checksum: int | None = None
    success: bool = True
    installed_by: str = ""
    description: str = ""
    type: str = "SQL"
    successes: int = 1  # successful rows of this migration (a versioned one has at most one)


class TenantHistory(BaseModel):
    """One tenant's history as the table holds it (installed order), without a credential.

    Attributes:
        server: ``host:port`` (tenants with the same key share a server).
        table_exists: false when Flyway never created its table there.
        version: the last successful versioned row's version ("" = none).
        applied: the latest row of each migration, in installed order.
    """

    model_config = WIRE_MODEL

    tenant_id: str
    server: str
    table_exists: bool
    version: str = ""
    applied: list[AppliedScript] = Field(default_factory=list)
    unreadable: str = ""  # why the table could not be read ("" when it was)

    @property
    def failed(self) -> list[str]:
        """Migrations whose latest row is a failed one."""
        return [a.key for a in self.applied if not a.success]


def _login(target: DatabaseTarget) -> tuple[object, ...]:
    """Targets read over one connection share this (kept in memory, never returned)."""
    return (
        target.host,
        target.port,
        target.database,
        target.user,
        target.password.get_secret_value(),
        target.tls,
    )


def _server(target: DatabaseTarget) -> str:
    return server_key(target)


def _summarize(tenant: str, server: str, rows: Sequence[tuple[object, ...]]) -> TenantHistory:
    latest: dict[str, AppliedScript] = {}
    version = ""
    for ver, description, checksum, success, installed_by, kind in rows:
        key = f"V{ver}" if ver is not None else f"R {description}"
        earlier = latest.pop(key, None)  # keep installed order of the latest row
        latest[key] = AppliedScript(
            key=key,
            checksum=checksum if isinstance(checksum, int) else None,
            success=bool(success),
            installed_by=str(installed_by),
            description=str(description),
            type=str(kind),
            successes=(earlier.successes if earlier else 0) + bool(success),
        )
        if ver is not None and success:
            version = str(ver)
    return TenantHistory(
        tenant_id=tenant, server=server, table_exists=True, version=version, applied=list(latest.values())
    )


async def _read_group(targets: Mapping[str, DatabaseTarget]) -> dict[str, TenantHistory]:
    """Every tenant of one login: which schemas have the table, then their rows, batch by batch."""
    first = next(iter(targets.values()))
    server = _server(first)
    schemas = {
        t: check_pg_identifier(target.schema_name or "public", field="schema")
        for t, target in targets.items()
    }
    result = {t: TenantHistory(tenant_id=t, server=server, table_exists=False) for t in targets}
    try:
        conninfo = libpq_conninfo(first, application_name="fleetway-bulk-history")
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
            await conn.set_read_only(True)
            cursor = await conn.execute(
                "SELECT s FROM unnest(%s::text[]) AS s "
                "WHERE to_regclass(quote_ident(s) || '.' || %s) IS NOT NULL",
                (sorted(set(schemas.values())), _HISTORY),
            )
            present = {row[0] for row in await cursor.fetchall()}
            wanted = sorted(present)
            rows: dict[str, list[tuple[object, ...]]] = defaultdict(list)
            for start in range(0, len(wanted), _BATCH):
                parts = [
                    sql.SQL(
                        "SELECT {s}, installed_rank, version, description, checksum, success, "
                        "installed_by, type FROM {table} WHERE type <> 'SCHEMA'"
                    ).format(s=sql.Literal(s), table=sql.Identifier(s, _HISTORY))
                    for s in wanted[start : start + _BATCH]
                ]
                query = sql.SQL(" UNION ALL ").join(parts) + sql.SQL(" ORDER BY 1, 2")
                for schema, _rank, *row in await (await conn.execute(query)).fetchall():
                    rows[str(schema)].append(tuple(row))
    except psycopg.Error as exc:
        # The SQLSTATE and type only: a libpq message can echo connection parameters.
        raise SchemaHistoryUnavailableError(
            f"schema histories on {server} unreadable: {type(exc).__name__} "
            f"(SQLSTATE {exc.sqlstate or 'none'})"
        ) from None
    for tenant, schema in schemas.items():
        if schema in present:
            result[tenant] = _summarize(tenant, server, rows.get(schema, []))
    return result


async def read_histories(
    targets: Mapping[str, DatabaseTarget], *, concurrency: int = 8, tolerate: bool = False
) -> dict[str, TenantHistory]:
    """Read every tenant's history: one connection per login, ``concurrency`` logins at a time.

    With ``tolerate``, a server that cannot be read marks its tenants ``unreadable`` (with the
    reason) instead of failing the whole read: one sick server must not hide the rest.

    Raises:
        ConfigurationError: a target is not PostgreSQL.
        UnsafeIdentifierError: an unsafe schema name.
        SchemaHistoryUnavailableError: a server could not be reached or refused the read.
    """
    groups: dict[tuple[object, ...], dict[str, DatabaseTarget]] = defaultdict(dict)
    for tenant, target in targets.items():
        if target.vendor is not Vendor.POSTGRESQL:
            raise ConfigurationError("bulk history reads support PostgreSQL targets only")
        groups[_login(target)][tenant] = target
    gate = asyncio.Semaphore(concurrency)

    async def bounded(group: Mapping[str, DatabaseTarget]) -> dict[str, TenantHistory]:
        async with gate:
            try:
                return await _read_group(group)
            except SchemaHistoryUnavailableError as exc:
                if not tolerate:
                    raise
                server = _server(next(iter(group.values())))
                return {
                    t: TenantHistory(tenant_id=t, server=server, table_exists=False, unreadable=str(exc))
                    for t in group
                }

    read: dict[str, TenantHistory] = {}
    for part in await asyncio.gather(*(bounded(g) for g in groups.values())):
        read |= part
    return read
