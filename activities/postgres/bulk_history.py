"""Many tenants' ``flyway_schema_history`` in few reads: the ground for "provably current" (issue 25).

Tenants that share a server, database and login are read over one connection with one query per
batch of schemas; tenants elsewhere are one short connection each, in parallel and bounded. The
credentials stay in this process: what leaves is compact per-tenant state and a server key
(``host:port``), never a login.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, NamedTuple

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from fleetway.activities.database_target import (
    DatabaseTarget,
    Vendor,
    check_pg_identifier,
    libpq_conninfo,
    server_key,
)
from fleetway.activities.errors import ConfigurationError, SchemaHistoryUnavailableError

__all__ = ["HistoryRow", "TenantHistory", "read_histories"]

_HISTORY: Final = "flyway_schema_history"
_BATCH: Final = 200  # schemas per query: one UNION ALL stays far below PostgreSQL's limits
_CONNECTIONS: Final = 2  # per login and read, at most (the second only for more than one batch)


class HistoryRow(NamedTuple):
    """One row of ``flyway_schema_history`` as Flyway reads it (``installed_rank > -1``).

    A tuple, not a model: a fleet read holds every row of every tenant of a page at once.
    """

    rank: int
    version: str | None
    description: str
    type: str
    checksum: int | None
    success: bool
    installed_by: str


@dataclass(frozen=True)
class TenantHistory:
    """One tenant's table as it stands (installed order), without a credential.

    Attributes:
        server: ``host:port`` (tenants with the same key share a server).
        table_exists: false when Flyway never created its table there.
        rows: every row Flyway reads, in installed order.
        unreadable: why the table could not be read ("" when it was).
    """

    tenant_id: str
    server: str
    table_exists: bool
    rows: tuple[HistoryRow, ...] = ()
    unreadable: str = ""


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


async def _read_group(targets: Mapping[str, DatabaseTarget]) -> dict[str, TenantHistory]:
    """Every tenant of one login: which schemas have the table, then their rows, batch by batch."""
    first = next(iter(targets.values()))
    server = _server(first)
    result = {t: TenantHistory(tenant_id=t, server=server, table_exists=False) for t in targets}
    try:
        conninfo = libpq_conninfo(first, application_name="fleetway-bulk-history")
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
            # Where Flyway looks with no schema set: the login's current schema, not "public".
            default = await _current_schema(conn) if any(not t.schema_name for t in targets.values()) else ""
            schemas = {
                t: check_pg_identifier(target.schema_name or default, field="schema")
                for t, target in targets.items()
            }
            cursor = await conn.execute(
                "SELECT s FROM unnest(%s::text[]) AS s "
                "WHERE to_regclass(quote_ident(s) || '.' || %s) IS NOT NULL",
                (sorted(set(schemas.values())), _HISTORY),
            )
            present = {row[0] for row in await cursor.fetchall()}
            wanted = sorted(present)
            batches = [wanted[start : start + _BATCH] for start in range(0, len(wanted), _BATCH)]
            # A large read's batches run on a second backend too: the server does most of the work
            # (planning each table), and two backends halved it on the 2-core bench.
            extra = [
                await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
                for _ in range(min(_CONNECTIONS, len(batches)) - 1)
            ]
            try:
                connections = [conn, *extra]
                # Each read runs to its end (no sibling cancelled mid-query); the first failure is raised.
                parts = await asyncio.gather(
                    *(_read_batches(c, batches[n :: len(connections)]) for n, c in enumerate(connections)),
                    return_exceptions=True,
                )
            finally:
                for other in extra:
                    await other.close()
            rows: dict[str, list[HistoryRow]] = {}
            for part in parts:
                if isinstance(part, BaseException):
                    raise part
                rows |= part
    except psycopg.Error as exc:
        # The SQLSTATE and type only: a libpq message can echo connection parameters.
        raise SchemaHistoryUnavailableError(
            f"schema histories on {server} unreadable: {type(exc).__name__} "
            f"(SQLSTATE {exc.sqlstate or 'none'})"
        ) from None
    for tenant, schema in schemas.items():
        if schema in present:
            result[tenant] = TenantHistory(tenant, server, True, tuple(rows.get(schema, ())))
    return result


async def _read_batches(
    conn: psycopg.AsyncConnection[TupleRow], batches: list[list[str]]
) -> dict[str, list[HistoryRow]]:
    """The rows of each schema of ``batches`` (each holds its table), one query per batch."""
    rows: dict[str, list[HistoryRow]] = defaultdict(list)
    for batch in batches:
        parts = [
            sql.SQL(
                "SELECT {s}, installed_rank, version, description, type, checksum, success, "
                "installed_by FROM {table} WHERE installed_rank > -1"
            ).format(s=sql.Literal(s), table=sql.Identifier(s, _HISTORY))
            for s in batch
        ]
        query = sql.SQL(" UNION ALL ").join(parts) + sql.SQL(" ORDER BY 1, 2")
        for schema, rank, version, description, kind, checksum, success, by in await (
            await conn.execute(query)
        ).fetchall():
            rows[str(schema)].append(
                HistoryRow(rank, version, description or "", kind or "", checksum, bool(success), by or "")
            )
    return rows


async def _current_schema(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> str:
    """The login's ``current_schema()`` (its search path's first existing schema)."""
    row = await (await conn.execute("SELECT current_schema()")).fetchone()
    if not row or not row[0]:
        raise SchemaHistoryUnavailableError("the login has no current schema (an empty search_path)")
    return str(row[0])


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
                return {t: TenantHistory(t, server, False, unreadable=str(exc)) for t in group}

    read: dict[str, TenantHistory] = {}
    for part in await asyncio.gather(*(bounded(g) for g in groups.values())):
        read |= part
    return read
