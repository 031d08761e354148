"""Invalid indexes a failed ``CREATE INDEX CONCURRENTLY`` leaves behind, found and dropped.

A concurrent index build that fails or is stopped (a lock wait given up, a timeout, a cancel)
leaves the index in the catalog marked invalid: no query uses it, writes still maintain it, and a
re-run's ``CREATE INDEX CONCURRENTLY IF NOT EXISTS`` skips it, so a repaired tenant would report
success with an index nothing can use. After a migrate fails, the indexes the set's concurrent
builds name that are invalid in the tenant's schema are dropped (only invalid ones, only those
names): the failure stays what it was, and the next run builds the index from scratch.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Final

import psycopg
from psycopg import sql

from fleetway.activities.database_target import DatabaseTarget, Vendor, libpq_conninfo

__all__ = ["concurrent_index_names", "drop_invalid_indexes"]

_log = logging.getLogger(__name__)

_IDENTIFIER: Final = r'"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*'
_CONCURRENT_BUILD: Final = re.compile(
    rf"\bCREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    rf"(?:(?:{_IDENTIFIER})\s*\.\s*)?({_IDENTIFIER})",
    re.IGNORECASE,
)
# Dropping may itself wait on the table's users: bounded, and never queued behind the application.
_DROP_BUDGET_MS: Final = 30_000
_DROP_LOCK_WAIT_MS: Final = 5_000


def _name(token: str) -> str:
    """PostgreSQL's reading of an identifier: quoted kept as written, unquoted folded to lower case."""
    if token.startswith('"'):
        return token[1:-1].replace('""', '"')
    return token.lower()


def concurrent_index_names(folder: Path) -> frozenset[str]:
    """The index names every ``CREATE INDEX CONCURRENTLY`` of the set's SQL files builds."""
    names: set[str] = set()
    for script in folder.rglob("*.sql"):
        text = script.read_text(encoding="utf-8", errors="replace")
        if "concurrently" in text.lower():
            names.update(_name(m.group(1)) for m in _CONCURRENT_BUILD.finditer(text))
    return frozenset(names)


async def drop_invalid_indexes(target: DatabaseTarget, names: frozenset[str]) -> list[str]:
    """Drop the invalid indexes named ``names`` in the target's schema; return what was dropped.

    Best effort: a failure is logged by type, never raised (the migrate's own failure is the story).
    """
    if target.vendor is not Vendor.POSTGRESQL or not names:
        return []
    dropped: list[str] = []
    try:
        conninfo = libpq_conninfo(
            target, application_name="fleetway-index-cleanup", connect_timeout=10, read_only=False
        )
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
            await conn.execute(f"SET statement_timeout = {_DROP_BUDGET_MS}")
            await conn.execute(f"SET lock_timeout = {_DROP_LOCK_WAIT_MS}")
            cursor = await conn.execute(
                "SELECT n.nspname, c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE NOT i.indisvalid AND c.relname = ANY(%s) "
                "AND n.nspname = coalesce(nullif(%s, ''), current_schema())",
                (sorted(names), target.schema_name),
            )
            for schema, index in await cursor.fetchall():
                await conn.execute(
                    sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(schema, index))
                )
                dropped.append(str(index))
    except psycopg.Error as exc:
        _log.warning(
            "invalid index left by a failed concurrent build could not be dropped",
            extra={"error_type": type(exc).__name__, "sql_state": exc.sqlstate or ""},
        )
    return dropped
