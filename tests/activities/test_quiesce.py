"""The quiesce flag's rules, on a real PostgreSQL control-plane table and in memory."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import timedelta

import psycopg
import pytest

from fleetway.activities.errors import (
    ConfigurationError,
    InvalidQuiesceTtlError,
    QuiesceNotSetError,
    QuiesceStoreNotWritableError,
)
from fleetway.activities.quiesce import (
    DEFAULT_TTL,
    MAX_TTL,
    MemoryQuiesceController,
    PostgresQuiesceController,
    QuiesceController,
    QuiesceStatus,
)
from fleetway.worker.dev.stack import PostgresServer


@pytest.fixture(params=["postgres", "memory"])
async def controller(request: pytest.FixtureRequest, postgres: PostgresServer) -> QuiesceController:
    if request.param == "memory":
        return MemoryQuiesceController()
    store = PostgresQuiesceController(postgres.dsn, table=f"q_{uuid.uuid4().hex[:10]}")
    await store.install()
    return store


def _ttl(state: QuiesceStatus) -> timedelta:
    assert state.expires_at is not None and state.set_at is not None
    return state.expires_at - state.set_at


async def test_quiesce_ttl_defaults_to_thirty_minutes_and_clamps_to_two_hours(
    controller: QuiesceController,
) -> None:
    assert _ttl(await controller.set(principal="ops", reason="r", ttl=timedelta(0))) == DEFAULT_TTL
    assert _ttl(await controller.set(principal="ops", reason="r", ttl=timedelta(hours=9))) == MAX_TTL
    with pytest.raises(InvalidQuiesceTtlError):
        await controller.set(principal="ops", reason="r", ttl=timedelta(seconds=-1))


async def test_quiesce_set_renews_and_clear_records_who(controller: QuiesceController) -> None:
    with pytest.raises(QuiesceNotSetError):
        await controller.clear(principal="bob")
    first = await controller.set(principal="alice", reason="deploy", ttl=timedelta(minutes=5))
    renewed = await controller.set(principal="", reason="longer", ttl=timedelta(minutes=50))
    assert first.active and renewed.active
    assert (renewed.set_by, renewed.reason) == ("<unspecified>", "longer")
    cleared = await controller.clear(principal="bob")
    assert (cleared.active, cleared.cleared, cleared.cleared_by) == (False, True, "bob")
    with pytest.raises(QuiesceNotSetError):
        await controller.clear(principal="bob")
    assert not (await controller.status()).active


async def test_quiesce_expired_flag_reads_released_and_stays_clearable_once(postgres: PostgresServer) -> None:
    table = f"ops.q_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS ops")
    controller = PostgresQuiesceController(postgres.dsn, table=table)
    await controller.install()
    await controller.set(principal="alice", reason="r", ttl=timedelta(minutes=5))
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f"UPDATE {table} SET expires_at = now() - interval '1 second'")

    state = await controller.status()
    assert (state.active, state.expired) == (False, True)
    assert (await controller.clear(principal="bob")).cleared
    with pytest.raises(QuiesceNotSetError):
        await controller.clear(principal="bob")


async def test_quiesce_concurrent_operators_never_leave_an_inconsistent_row(postgres: PostgresServer) -> None:
    table = f"q_{uuid.uuid4().hex[:10]}"
    operators = [PostgresQuiesceController(postgres.dsn, table=table) for _ in range(8)]

    async def flip(i: int, c: PostgresQuiesceController) -> None:
        await c.install()  # eight deploy steps at once: the DDL is serialised, never raced
        for _ in range(5):
            if i % 2:
                await c.set(principal=f"op{i}", reason="r", ttl=timedelta(minutes=5))
            else:
                with contextlib.suppress(QuiesceNotSetError):
                    await c.clear(principal=f"op{i}")

    await asyncio.gather(*(flip(i, c) for i, c in enumerate(operators)))
    with psycopg.connect(postgres.dsn) as conn:
        rows = conn.execute(f"SELECT active, cleared_by, cleared_at FROM {table}").fetchall()
    assert len(rows) == 1
    active, cleared_by, cleared_at = rows[0]
    assert (cleared_by is None and cleared_at is None) if active else (cleared_by and cleared_at)


@pytest.mark.parametrize("bad", ["bad name!", "a.b.c", "1leading", 'x"; DROP TABLE y; --'])
def test_quiesce_rejects_unsafe_table_names(postgres: PostgresServer, bad: str) -> None:
    with pytest.raises(ConfigurationError):
        PostgresQuiesceController(postgres.dsn, table=bad)


async def test_the_quiesce_table_is_created_once_and_each_login_gets_only_what_it_needs(
    postgres: PostgresServer,
) -> None:
    """Operators set and clear; workers only read; nobody but ``fleetway quiesce init`` runs DDL."""
    table = f"q_{uuid.uuid4().hex[:10]}"
    suffix = uuid.uuid4().hex[:6]
    operator, worker = f"op_{suffix}", f"wk_{suffix}"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        for role in (operator, worker):
            conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'a-long-enough-password'")

    def as_login(role: str) -> PostgresQuiesceController:
        dsn = (
            f"host=127.0.0.1 port={postgres.port} dbname=postgres user={role} password=a-long-enough-password"
        )
        return PostgresQuiesceController(dsn, table=table)

    with pytest.raises(QuiesceStoreNotWritableError, match="fleetway quiesce init"):
        await as_login(worker).status()  # no table yet, and the worker's login may not create one
    await PostgresQuiesceController(postgres.dsn, table=table).install(
        grant_to=operator, grant_read_to=worker
    )

    assert (await as_login(operator).set(principal="ops", reason="freeze", ttl=timedelta(minutes=5))).active
    assert (await as_login(worker).status()).active
    with pytest.raises(QuiesceStoreNotWritableError, match="operators need SELECT, INSERT, UPDATE"):
        await as_login(worker).set(principal="w", reason="no", ttl=timedelta(minutes=5))
    assert (await as_login(operator).clear(principal="ops")).cleared
