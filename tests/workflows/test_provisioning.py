"""ProvisionTenantWorkflow on the real stack: Temporal, PostgreSQL, Flyway, and OpenBao for the new
credentials. Failure cleanup, quiesce parking, attach-on-rerun, a killed worker, deprovisioning."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import hvac
import psycopg
import pytest
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Worker

from fleetway.activities.audit.events import Emitter
from fleetway.activities.audit.sinks import PostgresAuditSink
from fleetway.activities.flyway.contract import FlywayInstall
from fleetway.activities.postgres.provisioning import TenantRoles
from fleetway.activities.quiesce import MemoryQuiesceController
from fleetway.activities.secrets.cache import CachedSecretsProvider
from fleetway.activities.secrets.vault import VaultAuth, VaultSecretsProvider
from fleetway.worker.config.settings import (
    FlywayConfig,
    ProvisioningConfig,
    Settings,
    TemporalConfig,
    WorkerConfig,
)
from fleetway.worker.dev.secrets import OpenBaoDevServer
from fleetway.worker.dev.stack import PostgresServer, TemporalDevServer
from fleetway.worker.process.run import build_worker
from fleetway.workflows.provision_tenant import (
    ProvisionRequest,
    ProvisionResult,
    ProvisionState,
    ProvisionTenantWorkflow,
    provisioning_workflow_id,
)
from tests.fleet import FLEETWAY, fleetway
from tests.support import DEMO_MIGRATIONS, copy_migrations, history, schema_exists

FORWARD = ["requested", "schema_created", "roles_created", "migrated", "seeded", "ready"]


def vault_provider(openbao: OpenBaoDevServer, prefix: str) -> CachedSecretsProvider:
    return CachedSecretsProvider(
        VaultSecretsProvider(
            url=openbao.url, auth=VaultAuth(token=SecretStr(openbao.root_token)), prefix=prefix
        )
    )


def vault_secret(openbao: OpenBaoDevServer, path: str) -> dict[str, Any] | None:
    client = hvac.Client(url=openbao.url, token=openbao.root_token)
    try:
        return dict(
            client.secrets.kv.v2.read_secret_version(
                path=path, mount_point="secret", raise_on_deleted_version=True
            )["data"]["data"]
        )
    except hvac.exceptions.InvalidPath:
        return None


class Harness:
    def __init__(self, client: Client, postgres: PostgresServer, openbao: OpenBaoDevServer, install: FlywayInstall,
                 locations: Path = DEMO_MIGRATIONS) -> None:  # fmt: skip
        self.client, self.postgres, self.openbao, self.install = client, postgres, openbao, install
        self.task_queue = f"prov-{uuid.uuid4().hex[:8]}"
        self.prefix = f"prov{uuid.uuid4().hex[:6]}/"
        self.quiesce = MemoryQuiesceController()
        self.audit_table = f"audit_{uuid.uuid4().hex[:8]}"
        PostgresAuditSink(self.postgres.dsn, table=self.audit_table).install()  # the owner's step
        self.locations = locations

    def settings(self) -> Settings:
        return Settings(
            temporal=TemporalConfig(
                address=self.client.service_client.config.target_host, task_queue=self.task_queue
            ),
            flyway=FlywayConfig(locations=[self.locations]),
            worker=WorkerConfig(graceful_shutdown_s=0),
            provisioning=ProvisioningConfig(admin_dsn=SecretStr(self.postgres.dsn), quiesce_poll_s=0.2),
        )

    def worker(self) -> Worker:
        return build_worker(
            self.client, self.settings(), secrets={"default": vault_provider(self.openbao, self.prefix)},
            quiesce=self.quiesce, flyway_install=self.install,
            emitter=Emitter(PostgresAuditSink(self.postgres.dsn, table=self.audit_table)),
        )  # fmt: skip

    async def start(self, tenant: str, **request: Any) -> Any:
        return await self.client.start_workflow(
            ProvisionTenantWorkflow.run,
            ProvisionRequest(roles=TenantRoles(tenant_id=tenant), quiesce_poll_s=0.2, **request),
            id=provisioning_workflow_id(tenant), task_queue=self.task_queue,
        )  # fmt: skip

    def transitions(self, tenant: str) -> list[tuple[str, str, str]]:
        with psycopg.connect(self.postgres.dsn) as conn:
            rows = conn.execute(
                f"SELECT from_state, to_state, outcome FROM {self.audit_table} WHERE target = %s AND type = 'state.transitioned' ORDER BY completed_at, recorded_at",
                (tenant,),
            ).fetchall()
        return [(str(a), str(b), str(c)) for a, b, c in rows]


def tenant_id() -> str:
    return f"new_{uuid.uuid4().hex[:8]}"


def connect_as(postgres: PostgresServer, secret: dict[str, Any]) -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(host=secret["host"], port=secret["port"], dbname=secret["database"],
                           user=secret["user"], password=secret["password"], autocommit=True)  # fmt: skip


async def test_provision_reaches_ready_with_least_privilege_and_a_rerun_rotates_passwords(
    client: Client, postgres: PostgresServer, openbao: OpenBaoDevServer, flyway_install: FlywayInstall
) -> None:
    h = Harness(client, postgres, openbao, flyway_install)
    tenant = tenant_id()
    seed = "INSERT INTO accounts (email) VALUES ('first@example.com')"
    async with h.worker():
        result = await (await h.start(tenant, seed_sql=seed)).result()
        assert (result.state, [s.value for s in result.path]) == (ProvisionState.READY, FORWARD)
        assert [v for v, _ in history(postgres, tenant)] == ["1", "2", "3", "4", "5"]
        migrator, runtime = (
            vault_secret(openbao, h.prefix + tenant),
            vault_secret(openbao, h.prefix + tenant + "/runtime"),
        )
        assert (
            migrator
            and runtime
            and migrator["user"] == f"{tenant}_migrator"
            and runtime["user"] == f"{tenant}_app"
        )
        with connect_as(postgres, runtime) as app:
            assert ("first@example.com",) in app.execute(
                "SELECT email FROM accounts"
            ).fetchall()  # the seed ran
            app.execute("INSERT INTO accounts (email) VALUES ('second@example.com')")
            app.execute("UPDATE accounts SET email = 'x@example.com' WHERE email = 'second@example.com'")
            app.execute("DELETE FROM accounts WHERE email = 'x@example.com'")
            for denied in (
                "CREATE TABLE t (id int)",
                "ALTER TABLE accounts ADD COLUMN x int",
                "DROP TABLE accounts",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    app.execute(denied)
        with connect_as(postgres, migrator) as mig:
            for denied in ("CREATE ROLE sneaky", "CREATE DATABASE sneaky"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    mig.execute(denied)

        again = await (await h.start(tenant)).result()  # rerun: no-op migrate, passwords rotated
        assert again.state is ProvisionState.READY
        assert [v for v, _ in history(postgres, tenant)] == ["1", "2", "3", "4", "5"]
        rotated = vault_secret(openbao, h.prefix + tenant)
        assert rotated and rotated["password"] != migrator["password"]
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            connect_as(postgres, migrator)
        connect_as(postgres, rotated).close()
        events = await h.client.get_workflow_handle(provisioning_workflow_id(tenant)).fetch_history()
        material = b"".join(e.SerializeToString() for e in events.events)
        assert tenant.encode() in material
        for secret in (migrator, runtime, rotated):
            assert secret["password"].encode() not in material  # generated in the activity, never in history
    forward = [(a, b, "success") for a, b in itertools.pairwise(FORWARD)]
    assert h.transitions(tenant) == forward * 2  # one audited event per transition, two runs


async def test_a_failing_migration_cleans_up_to_failed_leaving_nothing(
    client: Client,
    postgres: PostgresServer,
    openbao: OpenBaoDevServer,
    flyway_install: FlywayInstall,
    tmp_path: Path,
) -> None:
    broken = copy_migrations(tmp_path / "broken")
    (broken / "V3__index_orders.sql").write_text("CREATE INDEX broken_idx ON no_such_table (id);")
    h = Harness(client, postgres, openbao, flyway_install, locations=broken)
    tenant = tenant_id()
    async with h.worker():
        result = await (await h.start(tenant)).result()
    assert result.state is ProvisionState.FAILED
    assert [s.value for s in result.path] == [
        "requested",
        "schema_created",
        "roles_created",
        "cleanup",
        "failed",
    ]
    assert "FAILED_VERSIONED_MIGRATION in V3__index_orders.sql" in result.last_error
    assert not schema_exists(postgres, tenant)
    with psycopg.connect(postgres.dsn) as conn:
        roles = conn.execute(
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE %s", (f"{tenant}%",)
        ).fetchone()
    assert roles == (0,)
    assert (
        vault_secret(openbao, h.prefix + tenant) is None
        and vault_secret(openbao, h.prefix + tenant + "/runtime") is None
    )
    assert h.transitions(tenant)[-2:] == [
        ("roles_created", "cleanup", "success"),
        ("cleanup", "failed", "failed"),
    ]


async def test_quiesce_parks_provisioning_until_cleared(
    client: Client, postgres: PostgresServer, openbao: OpenBaoDevServer, flyway_install: FlywayInstall
) -> None:
    h = Harness(client, postgres, openbao, flyway_install)
    tenant = tenant_id()
    await h.quiesce.set(principal="ops", reason="maintenance", ttl=timedelta(minutes=5))
    async with h.worker():
        handle = await h.start(tenant)
        for _ in range(100):
            progress = await handle.query(ProvisionTenantWorkflow.state)
            if progress.parked_on_quiesce:
                break
            await asyncio.sleep(0.1)
        assert progress.parked_on_quiesce and progress.state is ProvisionState.REQUESTED
        await asyncio.sleep(0.6)  # still parked after several re-checks
        assert (await handle.query(ProvisionTenantWorkflow.state)).state is ProvisionState.REQUESTED
        assert not schema_exists(postgres, tenant)
        await h.quiesce.clear(principal="ops")
        result = await handle.result()
    assert result.state is ProvisionState.READY


async def test_cli_provision_attaches_to_a_running_one_and_deprovision_is_guarded(
    client: Client, postgres: PostgresServer, openbao: OpenBaoDevServer, flyway_install: FlywayInstall,
    temporal_server: TemporalDevServer,
) -> None:  # fmt: skip
    h = Harness(client, postgres, openbao, flyway_install)
    tenant = tenant_id()
    env = {
        **os.environ,
        "FLEETWAY_TEMPORAL__ADDRESS": temporal_server.address,
        "FLEETWAY_TEMPORAL__TASK_QUEUE": h.task_queue,
    }
    await h.quiesce.set(principal="ops", reason="hold it running", ttl=timedelta(minutes=5))
    async with h.worker():
        started = await asyncio.to_thread(
            fleetway, "provision", tenant, "--detach", "--principal", "ci", env=env
        )
        assert started.returncode == 0, started.stderr
        second = asyncio.create_task(asyncio.to_thread(fleetway, "provision", tenant, "-o", "json", env=env))
        await asyncio.sleep(1.5)
        await h.quiesce.clear(principal="ops")
        attached = await second
        assert attached.returncode == 0, attached.stderr
        assert "attached to the running provisioning" in attached.stderr
        assert json.loads(attached.stdout)["state"] == "ready"

        refused = await asyncio.to_thread(fleetway, "deprovision", tenant, env=env)
        assert refused.returncode == 2 and "--confirm" in refused.stderr
        assert schema_exists(postgres, tenant)
        dropped = await asyncio.to_thread(fleetway, "deprovision", tenant, "--confirm", tenant, env=env)
        assert dropped.returncode == 0, dropped.stderr
        assert "deprovisioned" in dropped.stdout
    assert not schema_exists(postgres, tenant)
    assert vault_secret(openbao, h.prefix + tenant) is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (['bad"; DROP SCHEMA public; --'], "invalid_tenant_id"),
        (["ok_tenant", "--schema", "t\u0435nant"], "not a safe identifier"),
        (["ok_tenant", "--migrator-role", "x" * 64], "not a safe identifier"),
        (["ok_tenant", "--migrator-role", "same", "--runtime-role", "same"], "must differ"),
        (["ok-tenant"], "not a safe identifier"),  # a valid tenant id, but not a valid schema name
    ],
)
async def test_cli_rejects_injection_attempts_and_starts_nothing(
    args: list[str],
    message: str,
    client: Client,
    postgres: PostgresServer,
    temporal_server: TemporalDevServer,
) -> None:
    env = {**os.environ, "FLEETWAY_TEMPORAL__ADDRESS": temporal_server.address,
           "FLEETWAY_TEMPORAL__TASK_QUEUE": f"never-{uuid.uuid4().hex[:6]}"}  # fmt: skip
    done = await asyncio.to_thread(fleetway, "provision", *args, "--detach", env=env)
    assert done.returncode == 2 and message in done.stderr
    # Nothing was started (the workflow id is deterministic, describe is consistent) and nothing made.
    with pytest.raises(RPCError, match="not found"):
        await client.get_workflow_handle(provisioning_workflow_id(args[0])).describe()
    assert not schema_exists(postgres, args[0].strip())


async def test_worker_killed_mid_provisioning_reaches_ready_exactly_once(
    client: Client, postgres: PostgresServer, flyway_install: FlywayInstall, temporal_server: TemporalDevServer,
    tmp_path: Path,
) -> None:  # fmt: skip
    tenant = tenant_id()
    task_queue = f"kill-{uuid.uuid4().hex[:8]}"
    audit_table = f"audit_{uuid.uuid4().hex[:8]}"
    PostgresAuditSink(postgres.dsn, table=audit_table).install()  # the owner's step, once
    slow = copy_migrations(tmp_path / "slow")
    (slow / "V2__create_orders.sql").write_text(
        (DEMO_MIGRATIONS / "V2__create_orders.sql").read_text() + "\nSELECT pg_sleep(2);\n"
    )
    env = {
        **os.environ,
        "FLEETWAY_TEMPORAL__ADDRESS": temporal_server.address, "FLEETWAY_TEMPORAL__TASK_QUEUE": task_queue,
        "FLEETWAY_SECRETS__BACKEND": "file", "FLEETWAY_SECRETS__FILE": str(tmp_path / "secrets.json"),
        "FLEETWAY_PROVISIONING__ADMIN_DSN": postgres.dsn, "FLEETWAY_FLYWAY__LOCATIONS": json.dumps([str(slow)]),
        "FLEETWAY_FLYWAY__LIB_DIR": str(flyway_install.lib_dir), "FLEETWAY_WORKER__GRACEFUL_SHUTDOWN_S": "0",
        "FLEETWAY_AUDIT__SINK": "postgres", "FLEETWAY_AUDIT__DSN": postgres.dsn, "FLEETWAY_AUDIT__TABLE": audit_table,
    }  # fmt: skip
    first = subprocess.Popen([FLEETWAY, "worker"], env=env, start_new_session=True)
    try:
        started = await asyncio.to_thread(
            fleetway, "provision", tenant, "--detach", "--principal", "ci", env=env
        )
        assert started.returncode == 0, started.stderr
        handle = client.get_workflow_handle(provisioning_workflow_id(tenant), result_type=ProvisionResult)

        async def state() -> ProvisionState:
            return (await handle.query(ProvisionTenantWorkflow.state)).state

        for _ in range(300):
            if await state() is ProvisionState.ROLES_CREATED:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # Flyway is inside V2's pg_sleep now
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    second = subprocess.Popen([FLEETWAY, "worker"], env=env, start_new_session=True)
    try:
        result = await asyncio.wait_for(handle.result(), timeout=120)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
    assert result.state is ProvisionState.READY
    assert [v for v, _ in history(postgres, tenant)] == ["1", "2", "3", "4", "5"]
    with psycopg.connect(postgres.dsn) as conn:
        rows = conn.execute(f"SELECT to_state FROM {audit_table} WHERE target = %s", (tenant,)).fetchall()
    assert sorted(r[0] for r in rows) == sorted(FORWARD[1:])  # each transition recorded exactly once
