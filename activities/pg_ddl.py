"""Idempotent DDL that is safe when many sessions run it at the same moment.

``CREATE TABLE IF NOT EXISTS`` is not atomic in PostgreSQL: two sessions can both pass the existence
check and one then fails on the catalog (``unique_violation`` on ``pg_type`` or ``duplicate_object``).
The CI caught exactly that with eight concurrent quiesce operators. Serialising the DDL behind a
transaction-scoped advisory lock keyed on the object's name removes the race instead of retrying it.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql


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
