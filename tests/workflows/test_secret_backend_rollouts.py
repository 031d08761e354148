"""Rollouts whose credentials live in real secret stores (OpenBao, moto's AWS), wired from settings as
a deployed worker is, and the proof that no tenant password reaches history, results or logs."""

from __future__ import annotations

import json
import logging
import secrets
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import hvac
import psycopg
import pytest
from psycopg import sql
from pydantic import SecretStr
from temporalio.client import Client

from fleetway.activities.flyway.contract import FlywayInstall
from fleetway.activities.rollouts import Outcome
from fleetway.worker.client.connection import FleetwayClient
from fleetway.worker.config.settings import (
    AwsSecretsConfig,
    HttpTenantSourceConfig,
    SecretsConfig,
    Settings,
    TenantSourceConfig,
    VaultConfig,
)
from fleetway.worker.dev.secrets import AWS_TEST_ENV, MotoServer, OpenBaoDevServer
from fleetway.worker.dev.stack import PostgresServer
from fleetway.worker.process.run import build_worker
from fleetway.workflows.migrate_all_models import MigrateAllInput, MigrateAllResult, RolloutStatus
from tests.control_plane import control_plane, paged, tenants_body
from tests.fleet import Fleet, make_fleet
from tests.support import history


class Captured(logging.Handler):
    """Every log record of the process while a rollout runs, rendered with all its attributes."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.getMessage()} {record.__dict__!r} {record.exc_text or ''}")


@pytest.fixture
def captured_logs() -> Iterator[Captured]:
    handler, root = Captured(), logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def login_role(postgres: PostgresServer) -> tuple[str, str]:
    """A least-privilege login the tenants' secrets point at, with a fresh random password."""
    role, password = f"mig_{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(24)
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
        )
        conn.execute(sql.SQL("GRANT CREATE ON DATABASE postgres TO {}").format(sql.Identifier(role)))
    return role, password


async def rollout_and_collect(
    client: Client, fleet: Fleet, settings: Settings, install: FlywayInstall
) -> tuple[MigrateAllResult, bytes]:
    """Run a migrate rollout with a worker built from ``settings`` only; return the result and every
    history of the rollout (parent and children) as raw protobuf bytes plus JSON."""
    rollout_id = f"secrets-{uuid.uuid4().hex[:8]}"
    for handler in logging.getLogger().handlers:
        if isinstance(handler, Captured):
            handler.lines.clear()  # the test's own setup (creating secrets) is not the worker's doing
    async with build_worker(client, settings, flyway_install=install):
        result = await FleetwayClient(client, fleet.task_queue).run(
            MigrateAllInput(parallelism=4), rollout_id=rollout_id
        )
    blobs = []
    for workflow_id in [rollout_id, *(f"{rollout_id}/{t}" for t in fleet.tenants)]:
        events = await client.get_workflow_handle(workflow_id).fetch_history()
        blobs += [e.SerializeToString() for e in events.events] + [events.to_json().encode()]
    return result, b"\n".join(blobs)


def assert_secret_absent(
    password: str, fleet: Fleet, result: MigrateAllResult, material: bytes, logs: Captured
) -> None:
    assert all(t.encode() in material for t in fleet.tenants)  # the material is the decoded payloads
    assert password.encode() not in material
    assert password not in result.model_dump_json()
    assert logs.lines and not [line for line in logs.lines if password in line]


def assert_migrated(postgres: PostgresServer, fleet: Fleet, result: MigrateAllResult) -> None:
    assert result.status is RolloutStatus.SUCCEEDED, result.warnings
    assert result.counts == {Outcome.SUCCEEDED: len(fleet.tenants)}
    for tenant in fleet.tenants:
        assert [v for v, _ in history(postgres, tenant)] == ["1", "2", "3", "4", "5"]


async def test_rollout_with_credentials_in_openbao_approle(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer, openbao: OpenBaoDevServer,
    captured_logs: Captured,
) -> None:  # fmt: skip
    fleet = make_fleet(postgres, 4)
    role, password = login_role(postgres)
    root = hvac.Client(url=openbao.url, token=openbao.root_token)
    mount = f"kv_{uuid.uuid4().hex[:6]}"
    root.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
    root.sys.create_or_update_policy(
        name=mount, policy=f'path "{mount}/data/tenants/*" {{ capabilities = ["read"] }}'
    )
    if "approle/" not in root.sys.list_auth_methods():
        root.sys.enable_auth_method("approle")
    root.auth.approle.create_or_update_approle(role_name=mount, token_policies=[mount])
    for tenant in fleet.tenants:  # go-bricks' canonical shape
        root.secrets.kv.v2.create_or_update_secret(
            path=f"tenants/{tenant}", mount_point=mount,
            secret={"type": "postgresql", "host": "127.0.0.1", "port": postgres.port, "database": "postgres",
                    "username": role, "password": password, "postgresql": {"schema": tenant}},
        )  # fmt: skip
    vault = VaultConfig(
        url=openbao.url, mount=mount, prefix="tenants/", auth="approle",
        role_id=root.auth.approle.read_role_id(role_name=mount)["data"]["role_id"],
        secret_id=SecretStr(root.auth.approle.generate_secret_id(role_name=mount)["data"]["secret_id"]),
    )  # fmt: skip
    settings = fleet.settings(client.service_client.config.target_host).model_copy(
        update={
            "secrets": SecretsConfig(backend="vault", vault=vault),
            "tenants": TenantSourceConfig(tenants=fleet.tenants),
        }
    )
    result, material = await rollout_and_collect(client, fleet, settings, flyway_install)
    assert_migrated(postgres, fleet, result)
    assert_secret_absent(password, fleet, result, material, captured_logs)


async def test_rollout_with_rds_shaped_credentials_in_aws_secrets_manager_and_an_http_tenant_source(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer, moto_server: MotoServer,
    captured_logs: Captured, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    for key, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(key, value)
    fleet = make_fleet(postgres, 5)
    role, password = login_role(postgres)
    aws: Any = boto3.client("secretsmanager", endpoint_url=moto_server.endpoint_url)
    prefix = f"fleetway/{uuid.uuid4().hex[:6]}/"
    for tenant in fleet.tenants:  # the RDS rotation shape, plus the tenant's schema
        aws.create_secret(
            Name=prefix + tenant,
            SecretString=json.dumps({"engine": "postgres", "host": "127.0.0.1", "port": postgres.port,
                                     "dbname": "postgres", "username": role, "password": password,
                                     "schema": tenant}),
        )  # fmt: skip
    with control_plane() as plane:
        plane.handler = paged(fleet.tenants, server_cap=2)
        settings = fleet.settings(client.service_client.config.target_host).model_copy(
            update={
                "secrets": SecretsConfig(backend="aws", aws=AwsSecretsConfig(prefix=prefix, endpoint_url=moto_server.endpoint_url)),
                "tenants": TenantSourceConfig(kind="http", http=HttpTenantSourceConfig(url=plane.url + "/api", allow_http_loopback=True)),
            }
        )  # fmt: skip
        result, material = await rollout_and_collect(client, fleet, settings, flyway_install)
    assert len(plane.requests) == 3  # five tenants, two per page
    assert_migrated(postgres, fleet, result)
    assert_secret_absent(password, fleet, result, material, captured_logs)


@pytest.mark.parametrize("by_server", [True, False], ids=["by-server", "one-window"])
async def test_a_cycling_tenant_source_stops_the_rollout_and_duplicates_are_skipped(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer, by_server: bool
) -> None:
    """Dispatching by server lists a page ahead, so it sees the cycle one dispatch sooner: the
    second listing of b is still queued then, and is not run either way."""
    fleet = make_fleet(postgres, 3)
    a, b, c = fleet.tenants
    pages = {None: ([a, b], "p1"), "p1": ([b, c], "p2"), "p2": ([], "p1")}
    with control_plane() as plane:
        plane.handler = lambda path, q, h: (200, {}, tenants_body(*pages[q.get("cursor")]))
        settings = fleet.settings(client.service_client.config.target_host).model_copy(
            update={"tenants": TenantSourceConfig(kind="http", http=HttpTenantSourceConfig(url=plane.url, allow_http_loopback=True))}
        )  # fmt: skip
        from fleetway.activities.secrets.providers import StaticSecretsProvider

        worker = build_worker(
            client, settings, flyway_install=flyway_install,
            secrets={"default": StaticSecretsProvider({t: fleet.target(t) for t in fleet.tenants})},
        )  # fmt: skip
        async with worker:
            result = await FleetwayClient(client, fleet.task_queue).run(MigrateAllInput(
                    parallelism=1, continue_on_error=True, **({} if by_server else {"servers": None})
                ), rollout_id=f"cycle-{uuid.uuid4().hex[:8]}")  # fmt: skip
    assert result.status is RolloutStatus.FAILED
    assert any("repeated a cursor (cycle detected); dispatch stopped" in w for w in result.warnings)
    by_tenant = {(o.tenant_id, o.outcome) for o in result.outcomes}
    assert {(a, Outcome.SUCCEEDED), (b, Outcome.SUCCEEDED)} <= by_tenant
    if not by_server:
        assert (b, Outcome.SKIPPED) in by_tenant
    assert [o.tenant_id for o in result.outcomes].count(b) == (1 if by_server else 2)
    assert [v for v, ok in history(postgres, b)] == ["1", "2", "3", "4", "5"]  # b ran once
