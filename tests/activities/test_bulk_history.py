"""The bulk history read against real PostgreSQL and histories real Flyway wrote: one connection per
login (two for a read of more than one batch), what each table holds (versions, repeatables, failed rows, checksums, markers), no credential out."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from fleetway.activities.database_target import DatabaseTarget
from fleetway.activities.errors import FlywayReportedFailureError
from fleetway.activities.flyway.cli_engine import FlywayRunner
from fleetway.activities.flyway.contract import FlywayInstall, FlywaySettings
from fleetway.activities.flyway.options import FlywayOptions
from fleetway.activities.flyway.output import Action
from fleetway.activities.flyway.request import FlywayRequest
from fleetway.activities.postgres import bulk_history
from fleetway.activities.postgres.bulk_history import read_histories
from fleetway.worker.dev.stack import PostgresServer


def _target(postgres: PostgresServer, schema: str, database: str = "postgres") -> DatabaseTarget:
    return DatabaseTarget(
        host="127.0.0.1", port=postgres.port, database=database, schema_name=schema,
        user="postgres", password=postgres.superuser_password,
    )  # fmt: skip


def _table(postgres: PostgresServer, target: DatabaseTarget) -> list[tuple[Any, ...]]:
    with psycopg.connect(postgres.dsn_for(target.database)) as conn:
        return conn.execute(
            f'SELECT version, description, checksum, success, installed_by FROM "{target.schema_name}".'
            "flyway_schema_history WHERE type <> 'SCHEMA' ORDER BY installed_rank"
        ).fetchall()


def _counting_connects(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A list that gets an entry for every connection psycopg's async client opens from now on."""
    connects: list[str] = []
    real_connect = psycopg.AsyncConnection.connect

    async def counting(*args: Any, **kwargs: Any) -> psycopg.AsyncConnection[Any]:
        connects.append("x")
        return await real_connect(*args, **kwargs)

    monkeypatch.setattr(psycopg.AsyncConnection, "connect", counting)
    return connects


async def test_one_connection_per_login_reads_what_each_table_holds(
    flyway_install: FlywayInstall, postgres: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = f"b{uuid.uuid4().hex[:6]}"
    other_db = f"{prefix}_db"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {other_db}")
    targets = {
        "full": _target(postgres, f"{prefix}_full"),
        "held": _target(postgres, f"{prefix}_held"),
        "broken": _target(postgres, f"{prefix}_broken"),
        "never": _target(postgres, f"{prefix}_never"),
        "elsewhere": _target(postgres, f"{prefix}_else", database=other_db),
    }
    scripts = tmp_path / "set"
    scripts.mkdir()
    for name, text in {
        "V1__a.sql": "CREATE TABLE a (id int);",
        "V2__b.sql": "CREATE TABLE b (id int);",
        "R__view.sql": "CREATE OR REPLACE VIEW va AS SELECT id FROM a;",
    }.items():
        (scripts / name).write_text(text)
    engine = FlywayRunner(flyway_install, FlywaySettings(locations=(scripts,)))
    await engine.run(FlywayRequest(action=Action.MIGRATE, installed_by="fleetway:bulk:0"), targets["full"])
    await engine.run(FlywayRequest(action=Action.MIGRATE), targets["elsewhere"])
    await engine.run(FlywayRequest(action=Action.MIGRATE, flyway=FlywayOptions(target="1")), targets["held"])
    (broken := tmp_path / "broken").mkdir()
    (broken / "V1__a.sql").write_text("CREATE TABLE a (id int);")
    (broken / "V2__idx.sql").write_text("CREATE INDEX CONCURRENTLY i ON missing (id);")
    with pytest.raises(FlywayReportedFailureError):
        await engine.run(FlywayRequest(action=Action.MIGRATE), targets["broken"], locations=(broken,))

    connects = _counting_connects(monkeypatch)
    read = await read_histories(targets)

    assert len(connects) == 2  # four tenants share one login; the other database is a second one

    def migrations(tenant: str) -> list[tuple[str | None, str, bool]]:
        return [(r.version, r.description, r.success) for r in read[tenant].rows if r.type != "SCHEMA"]

    assert migrations("full") == [("1", "a", True), ("2", "b", True), (None, "view", True)]
    assert migrations("held") == [("1", "a", True), (None, "view", True)]  # repeatables ignore a target
    assert migrations("broken") == [("1", "a", True), ("2", "idx", False)]
    assert read["full"].rows[1].installed_by == "fleetway:bulk:0"
    assert not read["never"].table_exists and read["never"].rows == ()
    # Another database of the same server: its own login group and read, the same server key.
    assert read["elsewhere"].server == read["full"].server == f"127.0.0.1:{postgres.port}"
    assert migrations("elsewhere") == migrations("full")
    for tenant in ("full", "held", "broken", "elsewhere"):  # the table is the judge
        table = _table(postgres, targets[tenant])
        assert [(r.checksum, r.success) for r in read[tenant].rows if r.type != "SCHEMA"] == [
            (r[2], r[3]) for r in table
        ]
    assert postgres.superuser_password not in repr(read) and "postgres@" not in repr(read)


async def test_a_thousand_schemas_on_one_login_are_read_in_batches(
    postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Schemas without Flyway's table are answered from one catalog query, no per-schema read; the
    batches of the rest are shared by two connections of the login (the server plans each table)."""
    prefix = f"m{uuid.uuid4().hex[:6]}"
    targets = {f"t{i}": _target(postgres, f"{prefix}_{i}") for i in range(1000)}
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        for i in range(0, 1000, 3):  # a third have a history table with one row
            conn.execute(
                f'CREATE SCHEMA "{prefix}_{i}"; CREATE TABLE "{prefix}_{i}".flyway_schema_history '
                "(installed_rank int, version text, description text, type text, checksum int, "
                "success bool, installed_by text); "
                f"INSERT INTO \"{prefix}_{i}\".flyway_schema_history VALUES (1, '1', 'a', 'SQL', {i}, true, 'x')"
            )
    monkeypatch.setattr(bulk_history, "_BATCH", 100)
    connects = _counting_connects(monkeypatch)
    read = await read_histories(targets)

    assert len(connects) == 2  # 334 tables in 4 batches: the login's second connection reads two
    assert sum(h.table_exists for h in read.values()) == 334
    assert all(read[f"t{i}"].rows[0].checksum == i for i in range(0, 1000, 3))


async def test_a_login_without_a_schema_is_read_where_flyway_writes_its_current_schema(
    flyway_install: FlywayInstall, postgres: PostgresServer, tmp_path: Path
) -> None:
    """No schema set: Flyway uses the login's ``current_schema()``, and so does the read (not ``public``)."""
    role, password = f"r{uuid.uuid4().hex[:8]}", "a-long-enough-password"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        conn.execute(f"CREATE SCHEMA {role} AUTHORIZATION {role}")
        conn.execute(f"ALTER ROLE {role} SET search_path = {role}")
    login = DatabaseTarget(
        host="127.0.0.1", port=postgres.port, database="postgres", user=role, password=password
    )
    (scripts := tmp_path / "set").mkdir()
    (scripts / "V1__a.sql").write_text("CREATE TABLE a (id int);")
    await FlywayRunner(flyway_install, FlywaySettings(locations=(scripts,))).run(
        FlywayRequest(action=Action.MIGRATE), login
    )

    read = await read_histories({"acme": login})

    assert read["acme"].table_exists and [r.version for r in read["acme"].rows] == ["1"]
