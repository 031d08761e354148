"""Idempotent DDL that is safe when many sessions run it at the same moment.

``CREATE TABLE IF NOT EXISTS`` is not atomic in PostgreSQL: two sessions can both pass the existence
check and one then fails on the catalog (``unique_violation`` on ``pg_type`` or ``duplicate_object``).
The CI caught exactly that with eight concurrent quiesce operators. Serialising the DDL behind a
transaction-scoped advisory lock keyed on the object's name removes the race instead of retrying it.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg import sql

from fleetway.activities.errors import ConfigurationError


async def ensure_objects(
    conn: psycopg.AsyncConnection[Any], lock_name: str, *ddl: sql.Composed | sql.SQL
) -> None:
    """Run ``ddl`` (each statement idempotent) in one transaction under an advisory lock on ``lock_name``."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (lock_name,))
        for statement in ddl:
            await conn.execute(statement)


def ensure_objects_sync(conn: psycopg.Connection[Any], lock_name: str, *ddl: sql.Composed | sql.SQL) -> None:
    """:func:`ensure_objects` for synchronous connections (sinks running on their own thread)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (lock_name,))
        for statement in ddl:
            conn.execute(statement)


def table_identifier(table: str, *, what: str, max_name: int = 63) -> sql.Identifier:
    """``table`` (optionally ``schema.table``) as a quoted identifier, after a strict pattern check.

    ``max_name`` lets a caller keep room for names it derives from the table's (triggers, indexes).

    Raises:
        ConfigurationError: naming ``what`` and the rule; nothing is executed.
    """
    pattern = rf"(?:[A-Za-z_][A-Za-z0-9_]{{0,62}}\.)?[A-Za-z_][A-Za-z0-9_]{{0,{max_name - 1}}}"
    if not re.fullmatch(pattern, table, re.ASCII):
        raise ConfigurationError(f"{what} table {table!r} is not a safe (schema-qualified) identifier")
    return sql.Identifier(*table.split("."))
