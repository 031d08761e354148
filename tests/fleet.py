"""A fleet of real tenant schemas in the test PostgreSQL, and a worker wired to it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from temporalio.client import Client
from temporalio.runtime import Runtime, TelemetryConfig
from temporalio.worker import Worker

from fleetway.activities.audit.events import Emitter
from fleetway.activities.database_target import DatabaseTarget
from fleetway.activities.flyway.contract import FlywayInstall
from fleetway.activities.quiesce import MemoryQuiesceController, QuiesceController
from fleetway.activities.secrets.providers import StaticSecretsProvider
from fleetway.activities.tenants.static import StaticTenantLister
from fleetway.worker.config.client import DATA_CONVERTER
from fleetway.worker.config.settings import FlywayConfig, SetsConfig, Settings, TemporalConfig, WorkerConfig
from fleetway.worker.dev.stack import PostgresServer
from fleetway.worker.process.run import build_worker
from tests.support import DEMO_MIGRATIONS


@dataclass
class Fleet:
    """Tenant ids (each its own schema), their targets, and the task queue serving them."""

    postgres: PostgresServer
    tenants: list[str]
    task_queue: str = field(default_factory=lambda: f"tq-{uuid.uuid4().hex[:8]}")
    quiesce: QuiesceController = field(default_factory=MemoryQuiesceController)
    locations: Path = DEMO_MIGRATIONS
    labels: dict[str, dict[str, str]] = field(default_factory=dict)

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

    def settings(
        self,
        address: str,
        *,
        max_activities: int = 8,
        engine: str = "cli",
        locations: list[Path] | None = None,
        sets: SetsConfig | None = None,
        lock_timeout_s: float = 10.0,
    ) -> Settings:
        """Settings of a worker for this fleet; ``locations``/``sets`` give it its own set and cache."""
        return Settings(
            temporal=TemporalConfig(address=address, task_queue=self.task_queue),
            flyway=FlywayConfig(
                locations=[self.locations] if locations is None else locations,
                engine=engine,
                lock_timeout_s=lock_timeout_s,
            ),
            sets=sets or SetsConfig(),
            worker=WorkerConfig(max_concurrent_activities=max_activities, graceful_shutdown_s=0),
        )

    def worker(
        self, client: Client, install: FlywayInstall, *, emitter: Emitter | None = None, **kw: Any
    ) -> Worker:
        settings = self.settings(client.service_client.config.target_host, **kw)
        return build_worker(
            client,
            settings,
            secrets={"default": StaticSecretsProvider({t: self.target(t) for t in self.tenants})},
            tenant_sources={"default": StaticTenantLister(self.tenants, self.labels)},
            quiesce=self.quiesce,
            flyway_install=install,
            emitter=emitter,
        )

    def cli_env(self, address: str, secrets_dir: Path, install: FlywayInstall) -> dict[str, str]:
        """Environment for ``fleetway`` processes serving this fleet (settings by env, as deployed)."""
        secrets_file = secrets_dir / f"{self.task_queue}-secrets.json"
        secrets_file.write_text(
            json.dumps(
                {
                    "tenants": {
                        t: self.target(t).model_dump(mode="json")
                        | {"password": self.postgres.superuser_password}
                        for t in self.tenants
                    }
                }
            )
        )
        return {
            **os.environ,
            "FLEETWAY_TEMPORAL__ADDRESS": address,
            "FLEETWAY_TEMPORAL__TASK_QUEUE": self.task_queue,
            "FLEETWAY_SECRETS__FILE": str(secrets_file),
            "FLEETWAY_TENANTS__TENANTS": json.dumps(self.tenants),
            "FLEETWAY_TENANTS__LABELS": json.dumps(self.labels),
            "FLEETWAY_FLYWAY__LOCATIONS": json.dumps([str(self.locations)]),
            "FLEETWAY_FLYWAY__LIB_DIR": str(install.lib_dir),
            "FLEETWAY_WORKER__GRACEFUL_SHUTDOWN_S": "0",
        }


FLEETWAY = str(Path(sys.executable).parent / "fleetway")


def fleetway(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real ``fleetway`` CLI as a process."""
    return subprocess.run(
        [FLEETWAY, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def make_fleet(postgres: PostgresServer, size: int) -> Fleet:
    prefix = f"f{uuid.uuid4().hex[:6]}"
    return Fleet(postgres=postgres, tenants=[f"{prefix}_{i:03d}" for i in range(size)])


async def separate_client(client: Client) -> Client:
    """A client on its own Temporal runtime: the SDK allows one worker per task queue and runtime,
    and two in-process workers with different configurations must share one queue here."""
    return await Client.connect(
        client.service_client.config.target_host,
        data_converter=DATA_CONVERTER,
        runtime=Runtime(telemetry=TelemetryConfig()),
    )


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    async with worker:
        yield worker
