"""A tenant schema's fingerprint: what its catalogs say it holds, read-only, deterministic.

Adopting a brownfield tenant (``baseline``) records "this schema is at version V" without running
V's scripts; if the schema is not what V's scripts would have made, every later migration runs on
a lie. So before a baseline, the tenant's fingerprint must equal a reference tenant's.

The fingerprint is a sorted list of lines, one per catalog fact, schema name removed so tenants
compare:  ``table T`` (kind: table, view, …), ``column T.C TYPE [not null]``, ``index T.I DEF``,
``constraint T.N DEF`` (``pg_get_indexdef``/``pg_get_constraintdef``). Flyway's own table is left
out. The digest is ``sha256:`` of the lines joined by newlines. Column order and defaults are not
part of it (two tenants built by one set in a different order are the same schema).
"""

from __future__ import annotations

import hashlib
from typing import Final

import psycopg
from pydantic import BaseModel, Field

from fleetway.activities.database_target import DatabaseTarget, check_pg_identifier, libpq_conninfo
from fleetway.activities.errors import SchemaHistoryUnavailableError
from fleetway.activities.wire import WIRE_MODEL

__all__ = ["SchemaFingerprint", "differences", "read_fingerprint"]

_HISTORY: Final = "flyway_schema_history"
_KINDS: Final = {
    "r": "table",
    "p": "partitioned table",
    "v": "view",
    "m": "materialized view",
    "S": "sequence",
}
_RELATIONS: Final = """
SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(s)s AND c.relkind IN ('r', 'p', 'v', 'm', 'S') AND c.relname <> %(h)s"""
_COLUMNS: Final = """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(s)s AND c.relkind IN ('r', 'p', 'v', 'm') AND a.attnum > 0 AND NOT a.attisdropped
  AND c.relname <> %(h)s"""
_INDEXES: Final = """
SELECT t.relname, i.relname, pg_get_indexdef(i.oid)
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace WHERE n.nspname = %(s)s AND t.relname <> %(h)s"""
_CONSTRAINTS: Final = """
SELECT t.relname, con.conname, pg_get_constraintdef(con.oid)
FROM pg_constraint con JOIN pg_class t ON t.oid = con.conrelid
JOIN pg_namespace n ON n.oid = t.relnamespace WHERE n.nspname = %(s)s AND t.relname <> %(h)s"""
_SHOWN: Final = 10


class SchemaFingerprint(BaseModel):
    """What one schema holds (see the module docstring for the lines and the digest).

    Attributes:
        exists: the schema exists at all.
        has_history: it already has Flyway's table (it is under Flyway; nothing to adopt).
    """

    model_config = WIRE_MODEL

    exists: bool
    has_history: bool = False
    lines: list[str] = Field(default_factory=list)

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` of the lines joined by newlines."""
        return "sha256:" + hashlib.sha256("\n".join(self.lines).encode()).hexdigest()

    @property
    def empty(self) -> bool:
        """No relation at all besides Flyway's table: a new tenant, nothing to adopt."""
        return not self.lines


def differences(reference: SchemaFingerprint, actual: SchemaFingerprint) -> str:
    """The differences in words, bounded (``missing: …; unexpected: …``); "" when equal."""
    ref, act = set(reference.lines), set(actual.lines)
    missing, unexpected = sorted(ref - act), sorted(act - ref)
    parts = []
    for said, lines in (("missing", missing), ("unexpected", unexpected)):
        if lines:
            more = f" (+{len(lines) - _SHOWN} more)" if len(lines) > _SHOWN else ""
            parts.append(f"{said}: {' | '.join(lines[:_SHOWN])}{more}")
    return "; ".join(parts)


def _local(text: str, schema: str) -> str:
    """A catalog definition with the tenant's schema name removed, so tenants compare."""
    return text.replace(f'"{schema}".', "").replace(f"{schema}.", "")


async def read_fingerprint(target: DatabaseTarget) -> SchemaFingerprint:
    """The fingerprint of ``target``'s schema, read in a read-only transaction.

    Raises:
        UnsafeIdentifierError: unsafe schema name.
        SchemaHistoryUnavailableError: the database could not be reached or refused the read.
    """
    schema = check_pg_identifier(target.schema_name, field="schema") if target.schema_name else ""
    try:
        conninfo = libpq_conninfo(target, application_name="fleetway-fingerprint")
        async with await psycopg.AsyncConnection.connect(conninfo) as conn:
            if not schema:  # where Flyway works with no schema set: the login's current schema
                row = await (await conn.execute("SELECT current_schema()")).fetchone()
                schema = check_pg_identifier(str(row[0]) if row and row[0] else "", field="schema")
            params = {"s": schema, "h": _HISTORY}
            found = await (
                await conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
            ).fetchone()
            if found is None:
                return SchemaFingerprint(exists=False)
            history = await (
                await conn.execute("SELECT to_regclass(%s)", (f'"{schema}".{_HISTORY}',))
            ).fetchone()
            lines = [
                f"{_KINDS.get(k, k)} {r}"
                for r, k in await (await conn.execute(_RELATIONS, params)).fetchall()
            ]
            lines += [
                f"column {t}.{c} {_local(ty, schema)}{' not null' if nn else ''}"
                for t, c, ty, nn in await (await conn.execute(_COLUMNS, params)).fetchall()
            ]
            lines += [
                f"index {t}.{i} {_local(d, schema)}"
                for t, i, d in await (await conn.execute(_INDEXES, params)).fetchall()
            ]
            lines += [
                f"constraint {t}.{n} {_local(d, schema)}"
                for t, n, d in await (await conn.execute(_CONSTRAINTS, params)).fetchall()
            ]
    except psycopg.Error as exc:
        # The SQLSTATE and type only: a libpq message can echo connection parameters.
        raise SchemaHistoryUnavailableError(
            f"schema catalogs unreadable: {type(exc).__name__} (SQLSTATE {exc.sqlstate or 'none'})"
        ) from None
    return SchemaFingerprint(exists=True, has_history=bool(history and history[0]), lines=sorted(lines))
