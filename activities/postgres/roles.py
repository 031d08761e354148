"""Least-privilege PostgreSQL roles for one tenant schema (go-bricks' ``roles.go``, hardened).

The migrator role owns the schema and holds DDL; the runtime role gets DML only, on existing and
future tables and sequences (default privileges). Both are NOSUPERUSER NOCREATEDB NOCREATEROLE
NOREPLICATION NOBYPASSRLS, re-asserted on every run, with ``search_path`` set to the schema.

Beyond go-bricks: the statements run in one transaction under an advisory lock (a failure leaves
nothing half-applied; concurrent runs serialise), and passwords never reach the server in clear:
each is sent as a SCRAM-SHA-256 verifier computed here, so ``log_statement = 'ddl'``, ``pg_stat_activity``
and server error messages can only ever show the verifier. Identifiers go through ``sql.Identifier``
after a strict ASCII pattern check. Must not: log a statement that carries a password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg
from psycopg import sql
from pydantic import SecretStr

from fleetway.activities.errors import UnsafeEnvValueError, UnsafeIdentifierError

__all__ = [
    "PGRoleSpec",
    "deprovision_pg_roles",
    "pg_role_provisioning_sql",
    "provision_pg_roles",
    "scram_sha256_verifier",
]

PG_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}", re.ASCII)
_ATTRIBUTES: Final = sql.SQL("NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS")
_SCRAM_ITERATIONS: Final = 4096


def _identifier(value: str, field_name: str) -> str:
    if not PG_IDENTIFIER.fullmatch(value):
        raise UnsafeIdentifierError(
            f"{field_name} {value[:80]!a} is not a safe identifier (^[A-Za-z_][A-Za-z0-9_]{{0,62}}$)"
        )
    return value


@dataclass(frozen=True)
class PGRoleSpec:
    """One tenant's schema and its two roles. Validated on construction (nothing runs otherwise).

    Raises:
        UnsafeIdentifierError: a name breaks the pattern, or the two roles are the same.
        UnsafeEnvValueError: a password holds CR, LF or NUL (named, never echoed).
    """

    schema_name: str
    migrator_role: str
    runtime_role: str
    migrator_password: SecretStr | None = field(default=None, repr=False)
    runtime_password: SecretStr | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        _identifier(self.schema_name, "schema")
        _identifier(self.migrator_role, "migrator role")
        _identifier(self.runtime_role, "runtime role")
        if self.migrator_role == self.runtime_role:
            raise UnsafeIdentifierError("migrator role and runtime role must differ")
        for name, secret in (
            ("migrator password", self.migrator_password),
            ("runtime password", self.runtime_password),
        ):
            if secret is not None and any(c in secret.get_secret_value() for c in "\r\n\x00"):
                raise UnsafeEnvValueError(f"{name} contains a CR, LF or NUL character")


def scram_sha256_verifier(
    password: str, *, salt: bytes | None = None, iterations: int = _SCRAM_ITERATIONS
) -> str:
    """The ``SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`` string PostgreSQL stores (RFC 5802/7677).

    PostgreSQL accepts it in ``ALTER ROLE ... PASSWORD`` as is, so the clear password never leaves
    this process.
    """
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _create_role(role: str) -> sql.Composed:
    # Race-safe create-if-missing: no check-then-create window. The identifier is pattern-checked
    # and quoted, so it cannot close the dollar quote.
    return sql.SQL(
        "DO $fleetway$ BEGIN CREATE ROLE {} LOGIN {}; "
        "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $fleetway$"
    ).format(sql.Identifier(role), _ATTRIBUTES)


def pg_role_provisioning_sql(spec: PGRoleSpec) -> list[sql.Composed]:
    """The ordered, idempotent statements for ``spec`` (passwords as SCRAM verifiers)."""
    schema, migrator, runtime = (
        sql.Identifier(n) for n in (spec.schema_name, spec.migrator_role, spec.runtime_role)
    )
    statements: list[sql.Composed] = []
    for role, password in (
        (spec.migrator_role, spec.migrator_password),
        (spec.runtime_role, spec.runtime_password),
    ):
        statements.append(_create_role(role))
        statements.append(sql.SQL("ALTER ROLE {} LOGIN {}").format(sql.Identifier(role), _ATTRIBUTES))
        if password is not None and password.get_secret_value():
            verifier = scram_sha256_verifier(password.get_secret_value())
            statements.append(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(verifier))
            )
    statements += [
        # The provisioning login must be a member of the migrator to hand it the schema and to set
        # default privileges on its behalf (a no-op for a superuser).
        sql.SQL("GRANT {} TO CURRENT_USER").format(migrator),
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(schema, migrator),
        sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(schema, migrator),
        sql.SQL("REVOKE CREATE ON SCHEMA {} FROM PUBLIC").format(schema),
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, runtime),
        sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {} TO {}").format(
            schema, runtime
        ),
        sql.SQL("GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {} TO {}").format(schema, runtime),
        sql.SQL(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} "
            "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {}"
        ).format(migrator, schema, runtime),
        sql.SQL(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {}"
        ).format(migrator, schema, runtime),
        sql.SQL("ALTER ROLE {} SET search_path = {}").format(migrator, schema),
        sql.SQL("ALTER ROLE {} SET search_path = {}").format(runtime, schema),
    ]
    return statements


def _lock(conn: psycopg.Connection[Any], spec: PGRoleSpec) -> None:
    conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"fleetway.provision.{spec.schema_name}",)
    )


def provision_pg_roles(conn: psycopg.Connection[Any], spec: PGRoleSpec) -> None:
    """Apply ``spec`` in one transaction (all or nothing); rerunning converges, passwords rotate.

    ``conn`` needs CREATEROLE and CREATE on the database (or superuser).
    """
    with conn.transaction():
        _lock(conn, spec)
        for statement in pg_role_provisioning_sql(spec):
            conn.execute(statement)


def roles_exist(conn: psycopg.Connection[Any], *roles: str) -> dict[str, bool]:
    """Which of ``roles`` exist."""
    rows = conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(roles),)).fetchall()
    present = {r[0] for r in rows}
    return {r: r in present for r in roles}


def deprovision_pg_roles(
    conn: psycopg.Connection[Any], spec: PGRoleSpec, *, drop_schema: bool = True, drop_roles: bool = True
) -> None:
    """Drop the schema (CASCADE) and/or the roles, in one transaction; missing objects are fine."""
    with conn.transaction():
        _lock(conn, spec)
        if drop_schema:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(spec.schema_name)))
        if drop_roles:
            present = roles_exist(conn, spec.migrator_role, spec.runtime_role)
            for role in (spec.runtime_role, spec.migrator_role):
                if present[role]:
                    conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                    conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
