"""Every session fleetway opens to a tenant's database to read is read-only for real: the server refuses a
write in it, autocommit or not, so a health probe (anyone who can start a rollout writes one) changes nothing."""

from __future__ import annotations

import psycopg
import pytest
from pydantic import ValidationError

from fleetway.activities.database_target import DatabaseTarget, libpq_conninfo
from fleetway.activities.servers.health import check_health
from fleetway.activities.servers.models import HealthState, ServerControls
from fleetway.worker.dev.stack import PostgresServer


def _canary(postgres: PostgresServer, schema: str) -> DatabaseTarget:
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}".canary (id int)')
        conn.execute(f'INSERT INTO "{schema}".canary VALUES (1), (2), (3)')
    return DatabaseTarget(
        host="127.0.0.1", port=postgres.port, database="postgres", schema_name=schema,
        user="postgres", password=postgres.superuser_password,
    )  # fmt: skip


def _rows(postgres: PostgresServer, schema: str) -> int:
    with psycopg.connect(postgres.dsn) as conn:
        row = conn.execute(f'SELECT count(*) FROM "{schema}".canary').fetchone()
    return int(row[0]) if row else -1


async def test_a_health_probe_that_writes_is_refused_by_the_server_and_changes_nothing(
    postgres: PostgresServer, schema: str
) -> None:
    target = _canary(postgres, schema)
    probe = f'WITH d AS (DELETE FROM "{schema}".canary RETURNING 1) SELECT count(*) FROM d'

    health = await check_health(target, ServerControls(probe_sql=probe, probe_max=10))

    assert health.state is HealthState.BROKEN and "25006" in health.why  # read_only_sql_transaction
    assert _rows(postgres, schema) == 3


async def test_a_read_session_refuses_writes_even_in_autocommit(
    postgres: PostgresServer, schema: str
) -> None:
    """What psycopg's ``set_read_only`` does not give in autocommit: every transaction starts read-only."""
    target = _canary(postgres, schema)
    async with await psycopg.AsyncConnection.connect(
        libpq_conninfo(target, application_name="t"), autocommit=True
    ) as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            await conn.execute(f'DELETE FROM "{schema}".canary')
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):  # nor from inside the statement
            await conn.execute(
                f"WITH o AS (SELECT set_config('transaction_read_only', 'off', true)) "
                f'DELETE FROM "{schema}".canary WHERE EXISTS (SELECT 1 FROM o)'
            )
    assert _rows(postgres, schema) == 3


@pytest.mark.parametrize(
    "probe", ["SELECT pg_terminate_backend(pg_backend_pid())", "select Set_Config('work_mem', '1GB', false)"]
)
def test_a_probe_calling_a_function_that_acts_on_the_server_is_refused_before_anything_runs(
    probe: str,
) -> None:
    with pytest.raises(ValidationError, match="may not call"):
        ServerControls(probe_sql=probe, probe_max=1)
