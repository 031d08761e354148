import asyncio
import uuid

import psycopg
from psycopg import sql

from fleetway.activities.postgres.ddl import ensure_objects
from fleetway.worker.dev.stack import PostgresServer


async def test_concurrent_idempotent_ddl_never_races_on_the_catalog(postgres: PostgresServer) -> None:
    # 24 sessions released at once against fresh tables: bare CREATE TABLE IF NOT EXISTS fails here
    # intermittently with unique_violation/duplicate_object; under the advisory lock none may fail.
    for _ in range(4):
        table = f"ddl_{uuid.uuid4().hex[:10]}"
        gate = asyncio.Event()

        async def create(table: str = table, gate: asyncio.Event = gate) -> None:
            async with await psycopg.AsyncConnection.connect(postgres.dsn, autocommit=True) as conn:
                await gate.wait()
                await ensure_objects(
                    conn,
                    table,
                    sql.SQL("CREATE TABLE IF NOT EXISTS {} (id int PRIMARY KEY)").format(
                        sql.Identifier(table)
                    ),
                    sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (id)").format(
                        sql.Identifier(f"{table}_i"), sql.Identifier(table)
                    ),
                )

        tasks = [asyncio.create_task(create()) for _ in range(24)]
        await asyncio.sleep(0.3)
        gate.set()
        await asyncio.gather(*tasks)
        async with await psycopg.AsyncConnection.connect(postgres.dsn) as conn:
            row = await (
                await conn.execute("SELECT count(*) FROM pg_class WHERE relname = %s", (table,))
            ).fetchone()
        assert row == (1,)
