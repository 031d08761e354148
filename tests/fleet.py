"""A fleet of real tenant schemas in the test PostgreSQL, and a worker wired to it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import psycopg
from temporalio.client import Client
from temporalio.worker import Worker

from activities.database_target import DatabaseTarget
from activities.flyway import FlywayInstall
from activities.quiesce import MemoryQuiesceController, QuiesceController
from activities.secrets import StaticSecretsProvider
from activities.tenant_source_static import StaticTenantLister
from tests.support import DEMO_MIGRATIONS
from worker.devstack import PostgresServer
from worker.run import build_worker
from worker.settings import FlywayConfig, Settings, TemporalConfig, WorkerConfig


@dataclass
class Fleet:
    """Tenant ids (each its own schema), their targets, and the task queue serving them."""

    postgres: PostgresServer
    tenants: list[str]
    task_queue: str = field(default_factory=lambda: f"tq-{uuid.uuid4().hex[:8]}")
    quiesce: QuiesceController = field(default_factory=MemoryQuiesceController)

    def target(self, tenant: str) -> DatabaseTarget:
        return DatabaseTarget(
            host="127.0.0.1",
            port=self.postgres.port,
            database="postgres",
            schema_name=tenant,
            user="postgres",
            password=self.postgres.superuser_password,
        )

    def break_tenant(self, tenant: str) -> None:
        """Make the tenant fail non-retryably: a non-empty schema without a Flyway history."""
        with psycopg.connect(self.postgres.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{tenant}"')
            conn.execute(f'CREATE TABLE "{tenant}".squatter (id int)')

    def settings(self, address: str, *, max_activities: int = 8) -> Settings:
        return Settings(
            temporal=TemporalConfig(address=address, task_queue=self.task_queue),
            flyway=FlywayConfig(locations=[DEMO_MIGRATIONS]),
            worker=WorkerConfig(max_concurrent_activities=max_activities, graceful_shutdown_s=0),
        )

    def worker(self, client: Client, install: FlywayInstall, **kw: int) -> Worker:
        settings = self.settings(client.service_client.config.target_host, **kw)
        return build_worker(
            client,
            settings,
            secrets={"default": StaticSecretsProvider({t: self.target(t) for t in self.tenants})},
            tenant_sources={"default": StaticTenantLister(self.tenants)},
            quiesce=self.quiesce,
            flyway_install=install,
        )


def make_fleet(postgres: PostgresServer, size: int) -> Fleet:
    prefix = f"f{uuid.uuid4().hex[:6]}"
    return Fleet(postgres=postgres, tenants=[f"{prefix}_{i:03d}" for i in range(size)])


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    async with worker:
        yield worker
