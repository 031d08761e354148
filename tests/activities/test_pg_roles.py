"""Least-privilege role provisioning on real PostgreSQL, and identifier hardening."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from pydantic import SecretStr

from fleetway.activities.errors import UnsafeEnvValueError, UnsafeIdentifierError
from fleetway.activities.postgres.roles import (
    PGRoleSpec,
    deprovision_pg_roles,
    pg_role_provisioning_sql,
    provision_pg_roles,
)
from fleetway.worker.dev.stack import PostgresServer

MIGRATOR_PW = "migrator-Passw0rd-1"
RUNTIME_PW = "runtime-Passw0rd-2"


@pytest.fixture
def spec(postgres: PostgresServer) -> Iterator[PGRoleSpec]:
    name = f"p_{uuid.uuid4().hex[:8]}"
    spec = PGRoleSpec(name, f"{name}_mig", f"{name}_app", SecretStr(MIGRATOR_PW), SecretStr(RUNTIME_PW))
    yield spec
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        deprovision_pg_roles(conn, spec)


def login(postgres: PostgresServer, user: str, password: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(host="127.0.0.1", port=postgres.port, dbname="postgres", user=user, password=password,
                           autocommit=True)  # fmt: skip


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("schema_name", 'x"; DROP SCHEMA public CASCADE; --'),
        ("schema_name", "tenant;drop"),
        ("schema_name", "t\u0435nant"),  # Cyrillic small ie: a look-alike of 'e'
        ("schema_name", "tenant\n"),
        ("schema_name", "a" * 64),
        ("schema_name", "1tenant"),
        ("schema_name", ""),
        ("migrator_role", "mig'or"),
        ("runtime_role", "app role"),
    ],
)
def test_unsafe_identifiers_are_rejected_before_anything_runs(field: str, value: str) -> None:
    names = {"schema_name": "ok", "migrator_role": "ok_mig", "runtime_role": "ok_app"} | {field: value}
    with pytest.raises(UnsafeIdentifierError, match="is not a safe identifier"):
        PGRoleSpec(names["schema_name"], names["migrator_role"], names["runtime_role"])


def test_roles_must_differ_and_passwords_must_be_single_line() -> None:
    with pytest.raises(UnsafeIdentifierError, match="must differ"):
        PGRoleSpec("s", "same", "same")
    with pytest.raises(UnsafeEnvValueError, match="runtime password contains") as err:
        PGRoleSpec("s", "m", "r", runtime_password=SecretStr("line1\nALTER ROLE x SUPERUSER"))
    assert "ALTER ROLE" not in str(err.value)
    assert "line1" not in repr(PGRoleSpec("s", "m", "r", SecretStr("line1-secret")))


def test_statements_carry_scram_verifiers_never_the_password(spec: PGRoleSpec) -> None:
    rendered = [s.as_string(None) for s in pg_role_provisioning_sql(spec)]
    assert not [s for s in rendered if MIGRATOR_PW in s or RUNTIME_PW in s]
    assert sum("PASSWORD 'SCRAM-SHA-256$4096:" in s for s in rendered) == 2
    assert rendered[0].startswith("DO $fleetway$ BEGIN CREATE ROLE")
    assert rendered[-1] == f'ALTER ROLE "{spec.runtime_role}" SET search_path = "{spec.schema_name}"'


def test_least_privilege_on_real_postgres(postgres: PostgresServer, spec: PGRoleSpec) -> None:
    with psycopg.connect(postgres.dsn, autocommit=True) as admin:
        provision_pg_roles(admin, spec)
        provision_pg_roles(admin, spec)  # a rerun converges
        attrs = admin.execute(
            "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolcanlogin "
            "FROM pg_roles WHERE rolname = ANY(%s) ORDER BY rolname", ([spec.migrator_role, spec.runtime_role],)
        ).fetchall()  # fmt: skip
        owner = admin.execute(
            "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = %s", (spec.schema_name,)
        ).fetchone()
    assert [a[1:] for a in attrs] == [(False, False, False, False, False, True)] * 2
    assert owner == (spec.migrator_role,)

    with login(postgres, spec.migrator_role, MIGRATOR_PW) as migrator:
        migrator.execute("CREATE TABLE accounts (id serial PRIMARY KEY, name text)")  # search_path = schema
        for denied in ("CREATE ROLE sneaky", "CREATE DATABASE sneaky"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                migrator.execute(denied)
    with login(postgres, spec.runtime_role, RUNTIME_PW) as runtime:
        runtime.execute("INSERT INTO accounts (name) VALUES ('a')")  # default privileges: a table made later
        runtime.execute("UPDATE accounts SET name = 'b'")
        assert runtime.execute("SELECT name FROM accounts").fetchall() == [("b",)]
        runtime.execute("DELETE FROM accounts")
        for denied in ("CREATE TABLE t (id int)", "ALTER TABLE accounts ADD COLUMN x int", "DROP TABLE accounts",
                       "CREATE ROLE sneaky", "TRUNCATE accounts"):  # fmt: skip
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                runtime.execute(denied)


def test_rerun_with_a_new_password_rotates_it(postgres: PostgresServer, spec: PGRoleSpec) -> None:
    with psycopg.connect(postgres.dsn, autocommit=True) as admin:
        provision_pg_roles(admin, spec)
        rotated = PGRoleSpec(
            spec.schema_name, spec.migrator_role, spec.runtime_role, SecretStr("rotated-Passw0rd-3")
        )
        provision_pg_roles(admin, rotated)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        login(postgres, spec.migrator_role, MIGRATOR_PW)
    login(postgres, spec.migrator_role, "rotated-Passw0rd-3").close()
    login(postgres, spec.runtime_role, RUNTIME_PW).close()  # no runtime password given: unchanged


def test_a_failure_midway_rolls_everything_back(postgres: PostgresServer, spec: PGRoleSpec) -> None:
    # An admin with CREATEROLE but no CREATE on the database: the roles are made, then CREATE SCHEMA
    # is refused. The one transaction must take the roles back with it.
    admin_role = f"adm_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as superuser:
        superuser.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEROLE PASSWORD 'admin-Passw0rd'").format(
                sql.Identifier(admin_role)
            )
        )
    try:
        with login(postgres, admin_role, "admin-Passw0rd") as admin:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                provision_pg_roles(admin, spec)
            present = admin.execute(
                "SELECT count(*) FROM pg_roles WHERE rolname = ANY(%s)",
                ([spec.migrator_role, spec.runtime_role],),
            ).fetchone()
        assert present == (0,)
    finally:
        with psycopg.connect(postgres.dsn, autocommit=True) as superuser:
            superuser.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(admin_role)))
